using System.Runtime.InteropServices;

namespace DistTrain.Core;

/// <summary>
/// Checks that an input file (a config, a model or checkpoint, a data file) can be read as DistTrain reads them: by size, with
/// seeks, and some of them twice (a CSV file's check pass, then its read). A pipe (<c>&lt;(...)</c>, <c>/dev/stdin</c>, a
/// named FIFO) cannot: reading its length threw .NET's "Stream does not support seeking" as a crash, a second read of a CSV
/// file lost its start, and opening a named FIFO that nothing writes to blocked for ever. Such a file is now refused by name
/// before it is opened for reading.
/// </summary>
/// <remarks>
/// The check opens the path with <c>O_NONBLOCK</c> (which never blocks on a FIFO) and <c>O_NOCTTY</c> and asks for the read position with
/// <c>lseek(2)</c>, which fails with <c>ESPIPE</c> on a pipe, a FIFO, a socket or a terminal. Linux only; elsewhere, and when
/// the path cannot be opened at all (missing, denied), it says nothing, and the reader's own open reports that.
/// </remarks>
public static class InputFile
{
    // O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY on Linux (x86_64 and arm64): a terminal opened to be looked at never becomes
    // the controlling terminal of a process that has none (a service).
    private const int OpenFlags = 0x800 | 0x80000 | 0x100;
    private const int SeekCurrent = 1;
    private const int NotSeekable = 29; // ESPIPE

    /// <summary>
    /// The problem with reading <paramref name="path"/> as a file, or null when it is a file that can be read by size (or the
    /// check cannot tell): "'PATH' is a pipe, FIFO or terminal, not a file: ...", naming <paramref name="what"/> and the fix.
    /// </summary>
    /// <param name="path">The path as the user gave it.</param>
    /// <param name="what">What the file is for, in the message: "config file", "model or checkpoint file", "data file".</param>
    public static string? PipeProblem(string path, string what)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            var descriptor = Native.open(path, OpenFlags);
            if (descriptor < 0) return null;
            try
            {
                if (Native.lseek(descriptor, 0, SeekCurrent) >= 0 || Marshal.GetLastPInvokeError() != NotSeekable) return null;
            }
            finally
            {
                _ = Native.close(descriptor);
            }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
        return $"'{path}' is a pipe, FIFO or terminal (such as <(...) or /dev/stdin), not a file: DistTrain reads a {what} by its size and seeks in it. " +
            "Write it to a file first (for example cat ... > file) and give that file's path.";
    }

    private static class Native
    {
        [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false)]
        public static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

        [DllImport("libc", SetLastError = true)]
        public static extern long lseek(int descriptor, long offset, int whence);

        [DllImport("libc", SetLastError = true)]
        public static extern int close(int descriptor);
    }
}
