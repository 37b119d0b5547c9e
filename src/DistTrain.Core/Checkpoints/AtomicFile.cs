using System.Runtime.InteropServices;

namespace DistTrain.Core.Checkpoints;

/// <summary>
/// Replaces a file so that a reader sees either the old content or the whole new one, also across a crash or a
/// power loss: write a temporary file in the same directory, flush it to the disk, rename it over the target
/// (atomic within one file system), then flush the directory so the rename itself is durable. Each write has a
/// temporary file of its own (<c>name.pid-random.tmp</c>), so writers of the same path, in one process or in several
/// sharing a folder, never write into or rename each other's: the last rename wins, whole.
/// </summary>
public static class AtomicFile
{
    /// <summary>Suffix of the temporary files; a file with it is an unfinished write and is never read as a checkpoint.</summary>
    public const string TemporarySuffix = ".tmp";

    /// <summary>
    /// Age (by last write) after which a temporary file is taken as left by a crashed writer and may be deleted
    /// (<see cref="IsAbandoned"/>). A write in progress keeps writing its file; an hour is far above any checkpoint's.
    /// </summary>
    public static readonly TimeSpan AbandonedAfter = TimeSpan.FromHours(1);

    /// <summary>The temporary files of writes of <paramref name="path"/>: this write's own name.</summary>
    public static string TemporaryPath(string path) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{path}.{Environment.ProcessId}-{Random.Shared.Next():x8}{TemporarySuffix}");

    /// <summary>True when the temporary file <paramref name="temporary"/> was last written more than <see cref="AbandonedAfter"/> ago.</summary>
    public static bool IsAbandoned(string temporary) => DateTime.UtcNow - File.GetLastWriteTimeUtc(temporary) > AbandonedAfter;

    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/>, atomically and durably.</summary>
    /// <exception cref="DirectoryNotFoundException">The folder of <paramref name="path"/> does not exist; the message names
    /// <paramref name="path"/> and the folder, not the temporary file.</exception>
    /// <exception cref="IOException"><paramref name="path"/> is a folder (the message says so), or the write, flush or rename
    /// failed; the temporary file is removed and the target is unchanged. The message names <paramref name="path"/>, never
    /// the temporary file.</exception>
    /// <exception cref="UnauthorizedAccessException">The folder of <paramref name="path"/> or the file may not be written; the
    /// message names <paramref name="path"/>, never the temporary file.</exception>
    /// <param name="path">The file to replace.</param>
    /// <param name="write">Writes the new content.</param>
    /// <param name="durable">True (the default) flushes the file and the folder to the disk, so the new content survives a
    /// power loss too; false leaves that to the operating system: the replace is still whole against a killed process
    /// (SIGKILL, the OOM killer), at a fraction of the cost (for files rewritten often, such as a run's <c>epochs.csv</c>).</param>
    public static void Write(string path, Action<FileStream> write, bool durable = true) => Write(path, write, TemporaryPath(path), durable);

    /// <summary>As <see cref="Write(string, Action{FileStream}, bool)"/>, through the temporary file <paramref name="temporary"/>.</summary>
    /// <exception cref="IOException">As there; also when <paramref name="temporary"/> exists already, which is then left alone
    /// (it is another write's).</exception>
    internal static void Write(string path, Action<FileStream> write, string temporary, bool durable = true)
    {
        CheckTarget(path);
        // Created here or not at all: a failure to create it must not delete a file of the same name that another writer owns.
        FileStream stream;
        try
        {
            stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 16);
        }
        catch (IOException) when (File.Exists(temporary))
        {
            throw; // another write's temporary file: the error names it, as it is the one in the way
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw ForTarget(e, path, temporary, creating: true);
        }
        try
        {
            using (stream)
            {
                write(stream);
                stream.Flush(flushToDisk: durable);
            }
            File.Move(temporary, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temporary);
            throw ForTarget(e, path, temporary, creating: false);
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }
        if (durable) FlushDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>
    /// The failure <paramref name="e"/> of a write through <paramref name="temporary"/>, told of <paramref name="path"/>: the
    /// same kind of exception (<see cref="UnauthorizedAccessException"/> or <see cref="IOException"/>), with the temporary
    /// file's name, an internal detail the user never gave, replaced by the target's ("Access to the path 'model.safetensors'
    /// is denied", not "... 'model.safetensors.4711-0c1d2e3f.tmp' ..."). A file that cannot be found while it is
    /// <paramref name="creating"/> in a folder that exists is a folder that takes no new files, such as /proc, and is said so;
    /// a folder gone by then stays a <see cref="DirectoryNotFoundException"/>, and a file or folder that vanished later, mid-write,
    /// keeps its exception type.
    /// </summary>
    private static Exception ForTarget(Exception e, string path, string temporary, bool creating)
    {
        var message = e.Message.Replace(Path.GetFullPath(temporary), Path.GetFullPath(path), StringComparison.Ordinal)
            .Replace(temporary, path, StringComparison.Ordinal);
        var folder = Path.GetDirectoryName(Path.GetFullPath(path))!;
        return e switch
        {
            UnauthorizedAccessException => new UnauthorizedAccessException(message, e),
            FileNotFoundException or DirectoryNotFoundException when creating && Directory.Exists(folder) => new IOException(
                $"Could not create '{Path.GetFullPath(path)}': the folder {folder} takes no new files.", e),
            DirectoryNotFoundException => new DirectoryNotFoundException(message, e),
            FileNotFoundException => new FileNotFoundException(message, e),
            _ => new IOException(message, e),
        };
    }

    /// <summary>
    /// Refuses a target that cannot be written, naming it as the caller gave it: otherwise the failure would come from
    /// creating the temporary file (a missing folder, named by the temporary file's name) or from the rename ("Is a
    /// directory").
    /// </summary>
    private static void CheckTarget(string path)
    {
        if (Directory.Exists(path))
            throw new IOException($"{path} is a folder, not a file: give the path of the file to write, with a file name inside that folder.");
        var folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null && File.Exists(folder))
            throw new DirectoryNotFoundException($"{path}: {folder} is a file, not a folder. Give a path in an existing folder.");
        if (folder is not null && !Directory.Exists(folder))
            throw new DirectoryNotFoundException($"{path}: the folder {folder} does not exist. Create it first, or give a path in an existing folder.");
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // The original failure is the one to report.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    /// <summary>
    /// fsync(2) on the directory, so the rename survives a power loss (ext4 and XFS need it). .NET cannot open a
    /// directory as a stream, so this goes to libc; on Windows, and if libc refuses, it is skipped (best effort).
    /// </summary>
    private static void FlushDirectory(string directory)
    {
        if (OperatingSystem.IsWindows()) return;
        try
        {
            var descriptor = Native.open(directory, 0 /* O_RDONLY */);
            if (descriptor < 0) return;
            Native.fsync(descriptor);
            Native.close(descriptor);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }
    }

    private static class Native
    {
        [DllImport("libc", SetLastError = true, CharSet = CharSet.Ansi, BestFitMapping = false)]
        public static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

        [DllImport("libc", SetLastError = true)]
        public static extern int fsync(int descriptor);

        [DllImport("libc", SetLastError = true)]
        public static extern int close(int descriptor);
    }
}
