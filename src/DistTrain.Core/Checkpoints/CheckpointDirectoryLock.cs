namespace DistTrain.Core.Checkpoints;

/// <summary>
/// A job cannot take its checkpoint directory (<see cref="CheckpointDirectoryLock"/>): another running job holds it, or
/// it or its lock file cannot be created. The message names the directory and the fix.
/// </summary>
public sealed class CheckpointDirectoryException(string message, Exception? inner = null) : IOException(message, inner)
{
    /// <summary>True when another running job holds the directory; false when it or its lock file could not be created.</summary>
    public bool InUse { get; init; }
}

/// <summary>
/// One running job's hold on a checkpoint directory, for as long as it writes there: an exclusive lock on the file
/// <see cref="FileName"/> in it. A second job given the same Checkpoint:Directory is refused at its start, instead of
/// writing checkpoints of the same names over the first job's and pruning them (<see cref="CheckpointStore.Save"/> keeps
/// the directory's newest files, whoever wrote them).
/// </summary>
/// <remarks>
/// The lock is the operating system's advisory file lock, which .NET takes for <see cref="FileShare.None"/> (on Linux
/// and macOS <c>flock(LOCK_EX | LOCK_NB)</c>; on Windows a sharing mode). It is one per open file, so two jobs in one
/// process exclude each other as two processes do, and it goes with the process: a job that crashed or was killed
/// leaves nothing to clean up, and the lock file that stays behind takes no lock by itself. Processes on several hosts
/// exclude each other through a shared file system only where it carries these locks (NFSv4 does; see flock(2)).
/// Readers of checkpoints (<c>--resume</c>'s search, <c>evaluate</c>, <c>inspect</c>) take no lock.
/// </remarks>
public sealed class CheckpointDirectoryLock : IDisposable
{
    /// <summary>The lock file's name in the checkpoint directory.</summary>
    public const string FileName = ".disttrain.lock";

    private readonly FileStream _file;

    private CheckpointDirectoryLock(string directory, FileStream file)
    {
        Directory = directory;
        _file = file;
    }

    /// <summary>The directory held.</summary>
    public string Directory { get; }

    /// <summary>
    /// The problem when <paramref name="directory"/> is a file, or below one (a/file/sub, where .NET said only "Could not find a
    /// part of the path"), so the folder cannot be created; null otherwise.
    /// </summary>
    private static string? FileInTheWay(string directory)
    {
        if (File.Exists(directory))
            return $"Checkpoint:Directory '{directory}' is a file, not a folder. Give a folder for the checkpoints (it is created if missing).";
        for (var above = Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory))); !string.IsNullOrEmpty(above) &&
             !System.IO.Directory.Exists(above); above = Path.GetDirectoryName(above))
            if (File.Exists(above))
                return $"Checkpoint:Directory '{directory}' is below {above}, which is a file, not a folder, so it cannot be created. Give a folder " +
                    "for the checkpoints (it is created if missing), or move the file away.";
        return null;
    }

    /// <summary>Creates <paramref name="directory"/> if needed and takes it for this job until <see cref="Dispose"/>.</summary>
    /// <param name="directory">Checkpoint:Directory.</param>
    /// <exception cref="CheckpointDirectoryException">Another job (in this process or another) holds the directory
    /// (<see cref="CheckpointDirectoryException.InUse"/>), or the directory or its lock file cannot be created, or no file can
    /// be created in it (<see cref="CheckWritable"/>'s check, also when the lock file exists already).</exception>
    /// <exception cref="ArgumentException"><paramref name="directory"/> is empty.</exception>
    public static CheckpointDirectoryLock Acquire(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        var path = Path.Combine(directory, FileName);
        if (FileInTheWay(directory) is { } problem) throw new CheckpointDirectoryException(problem);
        try
        {
            System.IO.Directory.CreateDirectory(directory);
            // OpenOrCreate, never truncated or deleted: the file holds nothing, and deleting it could race a job that is
            // opening it (it would lock a file no longer in the directory). Read access is enough for the exclusive lock,
            // which FileShare.None takes whatever the access, so a job of another user can open a file created 0644.
            var file = new FileStream(path, FileMode.OpenOrCreate, FileAccess.Read, FileShare.None);
            try
            {
                // A lock file left by an earlier job opens for reading in a folder that can no longer be written (a read-only
                // mount): the checkpoints would fail only at the first write, after training.
                ProbeWrite(directory);
            }
            catch
            {
                file.Dispose();
                throw;
            }
            return new CheckpointDirectoryLock(directory, file);
        }
        catch (CheckpointDirectoryException)
        {
            throw;
        }
        catch (IOException e) when (IsLockConflict(e))
        {
            throw new CheckpointDirectoryException(
                $"Checkpoint:Directory '{directory}' is in use by another running job (it holds the lock file {path}). Two jobs in one folder " +
                "would write checkpoints of the same names over each other's and delete each other's as old ones. Give this job its own " +
                "Checkpoint:Directory, or wait until that job ends (resume it there with --resume).", e) { InUse = true };
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointDirectoryException($"Could not create the checkpoint lock file {path}: {e.Message.TrimEnd('.')}. Check Checkpoint:Directory and its permissions.", e);
        }
    }

    /// <summary>
    /// Takes <paramref name="directory"/> as <see cref="Acquire"/> does, or returns null while another job holds it: for a
    /// holder that waits for the directory to be let go (a parameter server that took over from one that may still be
    /// shutting down).
    /// </summary>
    /// <param name="directory">Checkpoint:Directory.</param>
    /// <exception cref="CheckpointDirectoryException">The directory or its lock file cannot be created.</exception>
    /// <exception cref="ArgumentException"><paramref name="directory"/> is empty.</exception>
    public static CheckpointDirectoryLock? TryAcquire(string directory)
    {
        try
        {
            return Acquire(directory);
        }
        catch (CheckpointDirectoryException e) when (e.InUse)
        {
            return null;
        }
    }

    /// <summary>
    /// Checks at start-up, before anything waits or trains, that the checkpoints of <paramref name="options"/> can be written:
    /// the folder exists or can be created, and a file can be created in it. Takes no lock and leaves the lock file alone, so a
    /// standby parameter server may check the folder the active one holds. Does nothing when checkpoints are off, or when a
    /// resume (Checkpoint:Resume) names a folder that does not exist (that resume fails with its own error).
    /// </summary>
    /// <param name="options">The run's checkpoint settings.</param>
    /// <exception cref="CheckpointDirectoryException">The folder is a file, cannot be created, or cannot be written (a read-only
    /// mount, no permission); the message names it and the fix.</exception>
    public static void CheckWritable(Configuration.CheckpointOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!options.Enabled || (options.Resume && !System.IO.Directory.Exists(options.Directory))) return;
        var directory = options.Directory;
        if (FileInTheWay(directory) is { } problem) throw new CheckpointDirectoryException(problem);
        try
        {
            System.IO.Directory.CreateDirectory(directory);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointDirectoryException($"Could not create Checkpoint:Directory '{directory}': {e.Message.TrimEnd('.')}. Check Checkpoint:Directory and its permissions.", e);
        }
        ProbeWrite(directory);
    }

    /// <summary>
    /// Creates and deletes an empty file of a name no other writer uses (<c>.disttrain.write-check-</c> and a GUID) in
    /// <paramref name="directory"/>: whether checkpoints can be written there, without touching <see cref="FileName"/>.
    /// </summary>
    /// <exception cref="CheckpointDirectoryException">The file could not be created.</exception>
    private static void ProbeWrite(string directory)
    {
        var probe = Path.Combine(directory, $".disttrain.write-check-{Guid.NewGuid():N}");
        try
        {
            using var file = new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointDirectoryException($"Could not write in Checkpoint:Directory '{directory}': {e.Message.TrimEnd('.')}. Check Checkpoint:Directory " +
                $"and its permissions: the checkpoints and the lock file {FileName} are written there.", e);
        }
    }

    /// <summary>
    /// True for the refusal of the lock itself: flock's EWOULDBLOCK, which .NET reports as an <see cref="IOException"/>
    /// whose HResult is the errno (11 on Linux, 35 on macOS; measured on Linux with .NET 10), or Windows' sharing and lock
    /// violations. Any other failure (a read-only or stale mount, no file descriptors left) is not another job's doing.
    /// </summary>
    private static bool IsLockConflict(IOException e) =>
        e.GetType() == typeof(IOException) && e.HResult is 11 or 35 or unchecked((int)0x80070020) or unchecked((int)0x80070021);

    /// <summary>
    /// Takes the directory of <paramref name="options"/>. Null when checkpoints are off (no Checkpoint:Directory), and when
    /// a resume (Checkpoint:Resume) names a directory that does not exist: that resume fails with its own error, which
    /// names the directory, and nothing is created.
    /// </summary>
    /// <exception cref="CheckpointDirectoryException">As <see cref="Acquire"/>.</exception>
    public static CheckpointDirectoryLock? For(Configuration.CheckpointOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!options.Enabled || (options.Resume && !System.IO.Directory.Exists(options.Directory))) return null;
        return Acquire(options.Directory);
    }

    /// <summary>Releases the directory (closes the lock file, which stays).</summary>
    public void Dispose() => _file.Dispose();
}
