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

    /// <summary>Creates <paramref name="directory"/> if needed and takes it for this job until <see cref="Dispose"/>.</summary>
    /// <param name="directory">Checkpoint:Directory.</param>
    /// <exception cref="CheckpointDirectoryException">Another job (in this process or another) holds the directory
    /// (<see cref="CheckpointDirectoryException.InUse"/>), or the directory or its lock file cannot be created.</exception>
    /// <exception cref="ArgumentException"><paramref name="directory"/> is empty.</exception>
    public static CheckpointDirectoryLock Acquire(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        var path = Path.Combine(directory, FileName);
        if (File.Exists(directory))
            throw new CheckpointDirectoryException($"Checkpoint:Directory '{directory}' is a file, not a folder. Give a folder for the checkpoints (it is created if missing).");
        try
        {
            System.IO.Directory.CreateDirectory(directory);
            // OpenOrCreate, never truncated or deleted: the file holds nothing, and deleting it could race a job that is
            // opening it (it would lock a file no longer in the directory). Read access is enough for the exclusive lock,
            // which FileShare.None takes whatever the access, so a job of another user can open a file created 0644.
            return new CheckpointDirectoryLock(directory, new FileStream(path, FileMode.OpenOrCreate, FileAccess.Read, FileShare.None));
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
