using System.Globalization;
using System.Text.RegularExpressions;
using DistTrain.Core.Tensors;

namespace DistTrain.Core.Checkpoints;

/// <summary>
/// A checkpoint could not be written (a full disk, no permission): the run stops rather than go on without the
/// checkpoints it was asked to keep. The message names the file, the cause and the fix; it is the run's error, printed
/// once, not logged with a stack trace.
/// </summary>
public sealed class CheckpointWriteException(string message, Exception inner) : IOException(message, inner);

/// <summary>A checkpoint file that <see cref="CheckpointStore.FindNewestValid"/> passed over, and why.</summary>
/// <param name="Path">The file.</param>
/// <param name="Reason">The verification error (truncated, checksum mismatch, another model, ...), without the path, which
/// <paramref name="Path"/> gives.</param>
public sealed record SkippedCheckpoint(string Path, string Reason);

/// <summary>The result of looking for a checkpoint to resume from.</summary>
/// <param name="Path">The newest valid checkpoint; null when none is valid.</param>
/// <param name="Checkpoint">Its content; null when none is valid.</param>
/// <param name="Skipped">Newer checkpoints that failed verification, newest first.</param>
public sealed record CheckpointSearch(string? Path, TrainingCheckpoint? Checkpoint, IReadOnlyList<SkippedCheckpoint> Skipped);

/// <summary>
/// A directory of checkpoints named <c>checkpoint-v{version:D10}-e{epoch:D4}-r{round:D6}.safetensors</c>: writes
/// them atomically, keeps the newest <see cref="Keep"/>, and finds the newest one that verifies.
/// </summary>
/// <remarks>
/// <para>Newest means highest weights version (the number in the name). Most recently written means the write time the
/// file records (<see cref="TrainingCheckpoint.WrittenAtKey"/>, covered by its header checksum); only a checkpoint that
/// records none (written by an earlier version), or whose header cannot be read or fails its checksum, is dated by its file
/// time. A folder copied without its times (<c>cp -r</c> without <c>-p</c>, rsync without <c>-t</c>, a restore from
/// backup) therefore keeps the order its runs wrote it in.</para>
/// <para>A file being written has a name of its own ending in
/// <c>.tmp</c> until it is complete (see <see cref="AtomicFile"/>), so a crash mid-write leaves a <c>.tmp</c> that is never
/// read, and the previous checkpoints stay intact; a <see cref="Save"/> removes those last written over an hour ago
/// (<see cref="AtomicFile.AbandonedAfter"/>), never a write still in progress.</para>
/// </remarks>
public sealed partial class CheckpointStore
{
    private const string Prefix = "checkpoint-";
    private const string Extension = ".safetensors";

    /// <summary>Opens (and later creates) the directory.</summary>
    /// <param name="directory">Checkpoint directory (Checkpoint:Directory); created on the first save.</param>
    /// <param name="keep">Checkpoints kept; older ones are deleted after each save. At least 1.</param>
    /// <exception cref="ArgumentException">The directory is empty.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="keep"/> is below 1.</exception>
    public CheckpointStore(string directory, int keep)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ArgumentOutOfRangeException.ThrowIfLessThan(keep, 1);
        Directory = directory;
        Keep = keep;
    }

    /// <summary>The checkpoint directory.</summary>
    public string Directory { get; }

    /// <summary>How many checkpoints are kept.</summary>
    public int Keep { get; }

    private readonly Lock _clockGate = new();

    /// <summary>The write time this store last recorded; the next is later even if the system clock stepped back.</summary>
    private DateTimeOffset _lastWrittenAt = DateTimeOffset.MinValue;

    /// <summary>The file name of the checkpoint at weights version <paramref name="version"/> and position (epoch, round).</summary>
    public static string FileName(long version, int epoch, int round) =>
        string.Create(CultureInfo.InvariantCulture, $"{Prefix}v{version:D10}-e{epoch:D4}-r{round:D6}{Extension}");

    [GeneratedRegex(@"^checkpoint-v(\d+)-e(\d+)-r(\d+)\.safetensors$", RegexOptions.CultureInvariant)]
    private static partial Regex NamePattern();

    /// <summary>
    /// The position a checkpoint's file name (<see cref="FileName"/>) gives: where a resume from it continues; null for
    /// another name. Read from the name alone, so the file is not opened or verified.
    /// </summary>
    public static (long Version, int Epoch, int Round)? PositionOf(string path)
    {
        var match = NamePattern().Match(Path.GetFileName(path));
        return match.Success && long.TryParse(match.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var version)
            && int.TryParse(match.Groups[2].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var epoch)
            && int.TryParse(match.Groups[3].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var round)
            ? (version, epoch, round)
            : null;
    }

    /// <summary>
    /// Writes <paramref name="checkpoint"/> atomically with the current UTC time as its <see cref="TrainingCheckpoint.WrittenAtKey"/>
    /// (at least one 100 ns tick after the time this store recorded before, so its own checkpoints stay in order if the
    /// system clock steps back), then deletes all but the <see cref="Keep"/> most recently written (see the remarks) and
    /// any abandoned temporary file.
    /// </summary>
    /// <returns>The path written.</returns>
    /// <exception cref="CheckpointWriteException">The directory or the file could not be written; the message names it.</exception>
    public string Save(TrainingCheckpoint checkpoint)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        var path = Path.Combine(Directory, FileName(checkpoint.Version, checkpoint.Epoch, checkpoint.Round));
        DateTimeOffset writtenAt;
        lock (_clockGate)
        {
            var now = DateTimeOffset.UtcNow;
            _lastWrittenAt = writtenAt = now > _lastWrittenAt ? now : _lastWrittenAt.AddTicks(1);
        }
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            checkpoint.Write(path, writtenAt);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointWriteException($"Could not write checkpoint {path}: {e.Message.TrimEnd('.')}. Check Checkpoint:Directory and the free space.", e);
        }
        // This job's own checkpoints are kept first, highest version first: the version orders them whichever node wrote
        // them, while the times two parameter-server nodes record (an active one and the standby that took over) come from
        // two clocks that may disagree. Other jobs' files follow, most recently written first (ties: highest version), so an
        // earlier job's files with higher versions in a reused folder are pruned before this job's own.
        var own = checkpoint.JobId;
        var files = ByWriteTime();
        var keptFirst = own.Length == 0
            ? files
            : [.. files.Where(f => f.Metadata?.GetValueOrDefault(TrainingCheckpoint.JobIdKey) == own).OrderByDescending(f => PositionOf(f.Path)?.Version ?? -1),
               .. files.Where(f => f.Metadata?.GetValueOrDefault(TrainingCheckpoint.JobIdKey) != own)];
        foreach (var old in keptFirst.Skip(Keep))
            File.Delete(old.Path);
        // Another writer's temporary file may be in flight (a second job given the same folder): only abandoned ones go.
        foreach (var temporary in System.IO.Directory.EnumerateFiles(Directory, Prefix + "*" + Extension + "*" + AtomicFile.TemporarySuffix))
            if (AtomicFile.IsAbandoned(temporary)) File.Delete(temporary);
        return path;
    }

    /// <summary>The checkpoint files in the directory, newest (highest version) first; temporary files are not listed. Empty when the directory does not exist.</summary>
    public IReadOnlyList<string> List()
    {
        if (!System.IO.Directory.Exists(Directory)) return [];
        return [.. System.IO.Directory.EnumerateFiles(Directory, Prefix + "*" + Extension)
            .Select(path => (Path: path, Position: PositionOf(path)))
            .Where(f => f.Position is not null)
            .OrderByDescending(f => f.Position!.Value.Version)
            .Select(f => f.Path)];
    }

    /// <summary>
    /// The checkpoint files, most recently written first: by the write time each records (<see cref="TrainingCheckpoint.WrittenAtKey"/>),
    /// or its file time when it records none or its header cannot be read or fails its checksum; ties: the higher version.
    /// Reads each file's header only.
    /// </summary>
    /// <returns>Each file with its header's metadata (null when it could not be read or failed its checksum) and the time it is ordered by (UTC).</returns>
    private List<(string Path, IReadOnlyDictionary<string, string>? Metadata, DateTime WrittenAt)> ByWriteTime()
    {
        var files = new List<(string, IReadOnlyDictionary<string, string>?, DateTime)>();
        foreach (var path in List())
        {
            IReadOnlyDictionary<string, string>? metadata = null;
            DateTime? recorded = null;
            try
            {
                metadata = SafeTensors.ReadMetadata(path);
                // An edited or damaged header (its own checksum does not match) must not decide which run is resumed or kept.
                if (!TrainingCheckpoint.HeaderChecksumMatches(metadata)) metadata = null;
                else recorded = TrainingCheckpoint.WrittenAtOf(path, metadata)?.UtcDateTime;
            }
            catch (Exception e) when (e is InvalidDataException or SafeTensorsFormatException or IOException or UnauthorizedAccessException)
            {
                // unreadable, or a malformed written_at: dated by its file time, as a checkpoint of an earlier version
            }
            DateTime writtenAt;
            try
            {
                writtenAt = recorded ?? File.GetLastWriteTimeUtc(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                writtenAt = DateTime.MinValue; // gone or closed meanwhile: the oldest
            }
            files.Add((path, metadata, writtenAt));
        }
        // List() is highest version first and OrderByDescending is stable, so ties go to the higher version.
        return [.. files.OrderByDescending(f => f.Item3)];
    }

    /// <summary>
    /// The job (or single-node run) id of the checkpoint of <paramref name="layout"/>'s model written last (the write time it
    /// records, <see cref="TrainingCheckpoint.WrittenAtKey"/>; its file time only when it records none, as checkpoints of
    /// earlier versions; ties: the higher version) whose metadata can be read and passes its header checksum; empty when it
    /// has none (written by an earlier version) or the directory holds no readable checkpoint of that model. As the time is
    /// recorded in the file, a folder copied without its times (<c>cp -r</c> without <c>-p</c>) still names the run written last.
    /// </summary>
    /// <param name="layout">The model's layout; checkpoints of other models (another <c>model_fingerprint</c>) are passed over.</param>
    public string LastWrittenJobId(ParameterLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        foreach (var (_, metadata, _) in ByWriteTime())
        {
            // Unreadable or edited (null), or another model's: the one written before it decides.
            if (metadata is null || !TrainingCheckpoint.FingerprintMatches(metadata.GetValueOrDefault("model_fingerprint"), layout)) continue;
            return metadata.GetValueOrDefault(TrainingCheckpoint.JobIdKey, "");
        }
        return "";
    }

    /// <summary>
    /// The newest checkpoint that verifies against <paramref name="layout"/> (see <see cref="TrainingCheckpoint.Read"/>),
    /// with every newer one that did not and the reason.
    /// </summary>
    /// <param name="layout">The model's layout; a checkpoint of another model does not verify.</param>
    /// <param name="jobId">When set, a valid checkpoint of another job (<see cref="TrainingCheckpoint.JobId"/>) is skipped too.</param>
    public CheckpointSearch FindNewestValid(ParameterLayout layout, string? jobId = null)
    {
        ArgumentNullException.ThrowIfNull(layout);
        var skipped = new List<SkippedCheckpoint>();
        foreach (var path in List())
        {
            try
            {
                var checkpoint = TrainingCheckpoint.Read(path, layout);
                // The newest is chosen by name: a name that tells another position than the header would pick the wrong one.
                if (PositionOf(path) is { } named && named != (checkpoint.Version, checkpoint.Epoch, checkpoint.Round))
                {
                    skipped.Add(new SkippedCheckpoint(path, $"its name says version {named.Version}, epoch {named.Epoch}, round {named.Round}, but its " +
                        $"header says version {checkpoint.Version}, epoch {checkpoint.Epoch}, round {checkpoint.Round}: the file was renamed. Give it its " +
                        $"own name back ({FileName(checkpoint.Version, checkpoint.Epoch, checkpoint.Round)}) or remove it."));
                    continue;
                }
                if (!string.IsNullOrEmpty(jobId) && checkpoint.JobId != jobId)
                {
                    skipped.Add(new SkippedCheckpoint(path, $"written by another job ({(checkpoint.JobId.Length == 0 ? "no job id" : "job " + checkpoint.JobId)}; this one is job {jobId})."));
                    continue;
                }
                return new CheckpointSearch(path, checkpoint, skipped);
            }
            catch (Exception e) when (e is InvalidDataException or SafeTensorsFormatException or IOException or UnauthorizedAccessException)
            {
                // The reader's errors start with the file's path.
                var reason = e.Message.StartsWith(path + ": ", StringComparison.Ordinal) ? e.Message[(path.Length + 2)..] : e.Message;
                // The safetensors reader's layout errors (a tensor without a dtype, ...) name the defect but not what it means here.
                if (e is SafeTensorsFormatException && !reason.Contains("corrupt", StringComparison.Ordinal) && !reason.Contains("truncated", StringComparison.Ordinal)
                    && !reason.Contains("not safetensors", StringComparison.Ordinal))
                    reason += " The file is corrupt or not a checkpoint.";
                skipped.Add(new SkippedCheckpoint(path, reason));
            }
        }
        return new CheckpointSearch(null, null, skipped);
    }
}
