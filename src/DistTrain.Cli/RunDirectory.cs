using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using DistTrain.Core.Checkpoints;

namespace DistTrain.Cli;

/// <summary>The output folder cannot be created or written.</summary>
internal sealed class RunDirectoryException(string message, Exception inner) : Exception(message, inner);

/// <summary>
/// Creates a run's own folder, <c>Output:Directory/&lt;UTC time&gt;</c>, before training and proves it is writable, so a bad
/// path fails in a second, not after the run. The folder is created exclusively: a run started in the same second as
/// another (or finding a folder of that name) takes <c>&lt;UTC time&gt;-2</c>, <c>-3</c>, and so on, never a folder it shares.
/// Creating one also removes the temporary <c>epochs.csv.*.tmp</c> and <c>steps.csv.*.tmp</c> files that killed runs left in
/// the other run folders there (<see cref="RemoveLeftoverSeriesWrites"/>).
/// </summary>
internal static class RunDirectory
{
    /// <summary>Most runs that can start in one second under one output folder.</summary>
    private const int MaxPerSecond = 1000;

    /// <summary>The folder this process created last, which a second Ctrl-C removes if it is still empty.</summary>
    private static volatile string? _created;

    /// <summary>
    /// How long a temporary <c>epochs.csv</c> of a process that no longer exists must have lain unchanged before it is taken
    /// as left by a killed run: a write of that file takes milliseconds (a run warns after 1 s), so a minute is far above a
    /// live one's, also one of a process this machine cannot see (another container sharing the folder).
    /// </summary>
    internal static readonly TimeSpan LeftoverEpochsWriteAfter = TimeSpan.FromMinutes(1);

    /// <summary>Creates the run folder; returns its path.</summary>
    /// <exception cref="RunDirectoryException">The output folder cannot be created or written, or already holds <see cref="MaxPerSecond"/> runs of this second.</exception>
    public static string Create(string outputDirectory)
    {
        var name = DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture);
        var path = Path.Combine(outputDirectory, name);
        // .NET's "The file '...' already exists." or "Could not find a part of the path" named neither the cause nor the fix.
        if (FileInTheWayProblem(outputDirectory) is { } problem) throw new RunDirectoryException(problem, new IOException($"{FileInTheWay(outputDirectory)} is a file"));
        try
        {
            Directory.CreateDirectory(outputDirectory);
            for (var attempt = 1; attempt <= MaxPerSecond; attempt++)
            {
                path = Path.Combine(outputDirectory, attempt == 1 ? name : $"{name}-{attempt}");
                if (!TryCreateNew(path)) continue;
                var probe = Path.Combine(path, ".write-test");
                File.WriteAllText(probe, "");
                File.Delete(probe);
                _created = path;
                RemoveLeftoverSeriesWrites(outputDirectory);
                return path;
            }
            throw new IOException($"{MaxPerSecond} run folders named {name}* exist already");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RunDirectoryException($"Output:Directory = '{outputDirectory}': cannot create or write '{path}' ({e.Message}). Pass --output with a writable folder.", e);
        }
    }

    /// <summary>
    /// The problem when Output:Directory (<paramref name="outputDirectory"/>) is a file, or below one, so no run folder can be made
    /// in it; null otherwise. Looks only: <c>disttrain config</c> checks it too, before any node starts.
    /// </summary>
    internal static string? FileInTheWayProblem(string outputDirectory)
    {
        if (FileInTheWay(outputDirectory) is not { } file) return null;
        var where = file == Path.TrimEndingDirectorySeparator(Path.GetFullPath(outputDirectory)) ? "is a file, not a folder" : $"is below {file}, which is a file, not a folder";
        return $"Output:Directory = '{outputDirectory}' {where}: each run is written to a new folder inside " +
            "Output:Directory. Pass --output with a folder (it is created when missing), or move the file away.";
    }

    /// <summary>The full path of <paramref name="outputDirectory"/>, or of the folder above it nearest to it that exists, when that
    /// is a file (a folder cannot be created there); null when it is a folder or nothing of the path exists.</summary>
    private static string? FileInTheWay(string outputDirectory)
    {
        for (var path = Path.TrimEndingDirectorySeparator(Path.GetFullPath(outputDirectory)); !string.IsNullOrEmpty(path); path = Path.GetDirectoryName(path))
        {
            if (Directory.Exists(path)) return null;
            if (File.Exists(path)) return path;
        }
        return null;
    }

    /// <summary>
    /// Deletes the temporary files <c>epochs.csv.PID-RANDOM.tmp</c> and <c>steps.csv.PID-RANDOM.tmp</c> (<see cref="AtomicFile"/>)
    /// in the run folders directly under <paramref name="outputDirectory"/> that a run killed during its per-epoch write of
    /// those files left there: those of a process that no longer exists, unchanged for <see cref="LeftoverEpochsWriteAfter"/>, and, as
    /// checkpoints' are (<see cref="AtomicFile.IsAbandoned"/>), any unchanged for an hour (a process id taken again since).
    /// A write still in progress is never deleted. Best effort: a file or folder that cannot be read or deleted is left as
    /// it is, and nothing is said; returns how many were deleted.
    /// </summary>
    internal static int RemoveLeftoverSeriesWrites(string outputDirectory)
    {
        var removed = 0;
        try
        {
            foreach (var folder in Directory.EnumerateDirectories(outputDirectory))
            {
                try
                {
                    foreach (var temporary in new[] { RunFiles.Epochs, RunFiles.Steps }
                        .SelectMany(name => Directory.EnumerateFiles(folder, name + ".*" + AtomicFile.TemporarySuffix)))
                    {
                        if (!IsLeftover(temporary)) continue;
                        File.Delete(temporary);
                        removed++;
                    }
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    // another folder may still be cleaned
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        return removed;
    }

    /// <summary>True when the temporary file <paramref name="temporary"/> (<c>NAME.PID-RANDOM.tmp</c>) is a killed writer's.</summary>
    private static bool IsLeftover(string temporary)
    {
        if (AtomicFile.IsAbandoned(temporary)) return true;
        var name = Path.GetFileName(temporary);
        var series = name.StartsWith(RunFiles.Steps + ".", StringComparison.Ordinal) ? RunFiles.Steps : RunFiles.Epochs;
        var tail = name[(series.Length + 1)..^AtomicFile.TemporarySuffix.Length]; // PID-RANDOM
        var dash = tail.IndexOf('-', StringComparison.Ordinal);
        if (dash <= 0 || !int.TryParse(tail.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) return false;
        return !IsRunning(pid) && DateTime.UtcNow - File.GetLastWriteTimeUtc(temporary) > LeftoverEpochsWriteAfter;
    }

    /// <summary>True when a process with the id <paramref name="pid"/> runs on this machine (in this PID namespace).</summary>
    private static bool IsRunning(int pid)
    {
        if (pid == Environment.ProcessId) return true;
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException)
        {
            return false; // no such process
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or NotSupportedException)
        {
            return true; // cannot tell: keep its file
        }
    }

    /// <summary>Removes <paramref name="runDirectory"/> if it is empty; false when it is not, or cannot be removed.</summary>
    internal static bool TryRemoveEmpty(string runDirectory)
    {
        try
        {
            Directory.Delete(runDirectory, recursive: false); // fails on a folder that is not empty
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>True once this process created a run folder.</summary>
    internal static bool AnyCreated => _created is not null;

    /// <summary>The run folder this process created last; null before it created one.</summary>
    internal static string? Created => _created;

    /// <summary>
    /// For a process about to end at once (a second Ctrl-C): removes the run folder it created if nothing was written
    /// into it yet, as a failed run's is; returns its path when removed, null otherwise.
    /// </summary>
    internal static string? RemoveCreatedIfEmpty() => _created is { } path && TryRemoveEmpty(path) ? path : null;

    /// <summary>
    /// Creates <paramref name="path"/> only if nothing of that name exists: false when it does. On Linux and macOS this is
    /// mkdir(2), which fails with EEXIST atomically, so two processes can never both get the same folder; .NET's
    /// <see cref="Directory.CreateDirectory(string)"/> succeeds on an existing folder. On Windows, a check then create.
    /// </summary>
    private static bool TryCreateNew(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            if (Directory.Exists(path) || File.Exists(path)) return false;
            Directory.CreateDirectory(path);
            return true;
        }
        if (mkdir(path, 0b111_111_111 /* 0777, less the umask */) == 0) return true;
        var errno = Marshal.GetLastPInvokeError();
        if (errno == 17 /* EEXIST */) return false;
        throw new IOException($"mkdir failed: {Marshal.GetPInvokeErrorMessage(errno)}");
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int mkdir([MarshalAs(UnmanagedType.LPUTF8Str)] string path, uint mode);
}
