using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using DistTrain.Cluster.Hosting;
using DistTrain.Core;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Training;

/// <summary>Early stopping's state as restored for a run that resumes: the epochs evaluated before it, the best of them and its weights.</summary>
/// <param name="Epochs">The evaluated epochs before the resumed one, in order; not empty.</param>
/// <param name="Best">The best of them: the record's own when it is among them, else by <see cref="EarlyStoppingRecord.BestOf"/>.</param>
/// <param name="BestWeights">Its weights (version <c>Best.Version</c>): the model's flat parameter vector, <c>layout.TotalLength</c>
/// floats in the layout's order.</param>
public sealed record RestoredEarlyStopping(IReadOnlyList<EpochSummary> Epochs, EpochSummary Best, float[] BestWeights);

/// <summary>
/// Early stopping's state kept beside the checkpoints (Checkpoint:Directory), so that a run resumed from a checkpoint, by
/// <c>--resume</c> or by a standby parameter server's takeover, goes on with the best epoch so far and its weights instead
/// of starting over. PyTorch Lightning keeps the same state for the same reason: its <c>EarlyStopping</c> callback saves
/// its wait count and best score in the checkpoint, and <c>ModelCheckpoint(save_top_k=1)</c> keeps the best model's
/// file. Two files:
/// <list type="bullet">
/// <item><c>early-stopping.json</c>: every evaluated epoch's summary (its weights version, validation loss and test
/// accuracy among them) and the best epoch, rewritten after each evaluation;</item>
/// <item><c>early-stopping-best-v{version}.safetensors</c>: the best epoch's weights, written when an epoch improves on the
/// best, before the JSON that names it; the previous best's file is removed after that JSON is written, so a crash between
/// any two writes leaves a JSON whose best has its file.</item>
/// </list>
/// Every file is written atomically (<see cref="AtomicFile"/>). A training checkpoint is written when an epoch's training
/// ends and before its evaluation, so the record may lack the checkpoint's last epoch; the resumed run then scores that
/// epoch's weights first (the coordinator does), and nothing is missed.
/// </summary>
public static class EarlyStoppingRecord
{
    /// <summary>File name of the evaluated epochs.</summary>
    public const string StateFileName = "early-stopping.json";

    /// <summary>Start of the names of the best epoch's weights files.</summary>
    public const string BestWeightsPrefix = "early-stopping-best-v";

    /// <summary>File name of the best epoch's weights at <paramref name="version"/>.</summary>
    /// <param name="version">The weights version, ≥ 0.</param>
    public static string BestWeightsFileName(long version) =>
        string.Create(CultureInfo.InvariantCulture, $"{BestWeightsPrefix}{version:D12}.safetensors");

    private const string VersionKey = "version";
    private const string EpochKey = "epoch";
    private const string HashKey = "sha256";

    private static readonly JsonSerializerOptions Json = new()
    {
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals, // a diverged epoch's NaN loss
        WriteIndented = true,
    };

    private sealed record StateFile(
        [property: JsonPropertyName("epochs")] List<EpochSummary>? Epochs,
        [property: JsonPropertyName("best_epoch")] int BestEpoch,
        [property: JsonPropertyName("validation_samples")] int ValidationSamples);

    /// <summary>SHA-256 (hex) of the weights' float32 bytes in layout order, as the best-weights file's data section holds them.</summary>
    private static string HashOf(float[] values) =>
        Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan())));

    /// <summary>The line for a resumed run that goes on with <paramref name="restored"/>.</summary>
    /// <param name="restored">The restored state (its epochs are not empty).</param>
    /// <param name="patience">Training:EarlyStopping:Patience.</param>
    public static string GoesOn(RestoredEarlyStopping restored, int patience)
    {
        var last = restored.Epochs[^1].Epoch;
        return string.Create(CultureInfo.InvariantCulture,
            $"Training:EarlyStopping goes on from {StateFileName}: best epoch {restored.Best.Epoch} (validation loss {restored.Best.ValidationLoss:F4}), " +
            $"{last - restored.Best.Epoch} of {patience} {Counts.Noun(patience, "epoch")} of patience used by epoch {last}.");
    }

    /// <summary>The warning for a resumed run whose early stopping starts over.</summary>
    /// <param name="epoch">The epoch it starts over at.</param>
    /// <param name="problem">Why the record was not restored (<see cref="Restore"/>).</param>
    public static string StartsOver(int epoch, string problem) =>
        string.Create(CultureInfo.InvariantCulture, $"Training:EarlyStopping starts over at epoch {epoch}: {problem}; the weights kept are the best from here on.");

    /// <summary>
    /// The best of <paramref name="epochs"/> as early stopping decides it, epoch by epoch: the first is the best so far
    /// (even when its loss is not finite), and a later epoch becomes the best when its loss is below the best's by more
    /// than <paramref name="minDelta"/> (Keras' <c>EarlyStopping</c> rule with <c>min_delta</c>).
    /// </summary>
    /// <param name="epochs">Evaluated epochs in order; not empty.</param>
    /// <param name="minDelta">Training:EarlyStopping:MinDelta, ≥ 0.</param>
    /// <returns>The index in <paramref name="epochs"/> of the best.</returns>
    /// <exception cref="ArgumentException"><paramref name="epochs"/> is empty.</exception>
    public static int BestOf(IReadOnlyList<EpochSummary> epochs, double minDelta)
    {
        if (epochs.Count == 0) throw new ArgumentException("No evaluated epoch.", nameof(epochs));
        var best = 0;
        for (var i = 1; i < epochs.Count; i++)
            if (epochs[i].ValidationLoss < epochs[best].ValidationLoss - minDelta) best = i;
        return best;
    }

    /// <summary>
    /// Writes the record after an evaluation: <paramref name="newBest"/>'s weights first when the epoch just evaluated is the
    /// new best, then the evaluated epochs, then removes the weights files of earlier bests (and temporary files left by a
    /// crashed write).
    /// </summary>
    /// <param name="directory">Checkpoint:Directory; created when missing.</param>
    /// <param name="epochs">Every evaluated epoch of the run, resumed ones included, in order; <paramref name="bestEpoch"/> among them.</param>
    /// <param name="bestEpoch">The best epoch.</param>
    /// <param name="newBest">The best epoch's weights when it is the epoch just evaluated; null when the best did not change.</param>
    /// <param name="validationSamples">Validation samples the losses were measured on: a resume with another validation set
    /// starts early stopping over.</param>
    /// <exception cref="IOException">A file could not be written; the files before it are unchanged.</exception>
    /// <exception cref="UnauthorizedAccessException">The directory may not be written.</exception>
    public static void Save(string directory, IReadOnlyList<EpochSummary> epochs, int bestEpoch, (ParameterVector Weights, long Version)? newBest,
        int validationSamples)
    {
        Directory.CreateDirectory(directory);
        if (newBest is { } best)
            SafeTensors.Write(Path.Combine(directory, BestWeightsFileName(best.Version)), best.Weights, new Dictionary<string, string>
            {
                [VersionKey] = best.Version.ToString(CultureInfo.InvariantCulture),
                [EpochKey] = bestEpoch.ToString(CultureInfo.InvariantCulture),
                [HashKey] = HashOf(best.Weights.Values),
            });
        var json = JsonSerializer.SerializeToUtf8Bytes(new StateFile([.. epochs], bestEpoch, validationSamples), Json);
        AtomicFile.Write(Path.Combine(directory, StateFileName), stream => stream.Write(json));
        var keep = epochs.FirstOrDefault(e => e.Epoch == bestEpoch) is { } kept ? BestWeightsFileName(kept.Version) : null;
        RemoveFiles(directory, name => name != keep);
    }

    /// <summary>
    /// Removes the record of an earlier run from <paramref name="directory"/>, when a new run (not resumed) starts there: its
    /// epochs would otherwise pass for the new run's, whose weights versions are the same step counts.
    /// </summary>
    /// <exception cref="IOException">A file could not be removed.</exception>
    /// <exception cref="UnauthorizedAccessException">The directory may not be written.</exception>
    public static void Clear(string directory)
    {
        File.Delete(Path.Combine(directory, StateFileName)); // no error when it does not exist
        RemoveFiles(directory, _ => true);
    }

    /// <summary>Removes the best-weights files whose names <paramref name="remove"/> picks, and abandoned temporary files of the record.</summary>
    private static void RemoveFiles(string directory, Func<string, bool> remove)
    {
        foreach (var path in Directory.EnumerateFiles(directory, BestWeightsPrefix + "*"))
        {
            var name = Path.GetFileName(path);
            if (name.EndsWith(AtomicFile.TemporarySuffix, StringComparison.Ordinal) ? AtomicFile.IsAbandoned(path) : remove(name)) File.Delete(path);
        }
        foreach (var temporary in Directory.EnumerateFiles(directory, StateFileName + "*" + AtomicFile.TemporarySuffix))
            if (AtomicFile.IsAbandoned(temporary)) File.Delete(temporary);
    }

    /// <summary>
    /// The state to go on with for a run that resumes at <paramref name="firstEpoch"/> from a checkpoint of weights
    /// <paramref name="resumedVersion"/>: the recorded epochs before it, their best and its weights. Epochs recorded at or
    /// after <paramref name="firstEpoch"/> (a resume from an earlier checkpoint than the newest) are left out. The record may
    /// lack the epoch before <paramref name="firstEpoch"/> (its evaluation was cut off), but no earlier one.
    /// </summary>
    /// <param name="directory">Checkpoint:Directory.</param>
    /// <param name="firstEpoch">The epoch the run resumes at (&gt; 1).</param>
    /// <param name="firstRound">The round it resumes at: 0 when the checkpoint was written at an epoch's end.</param>
    /// <param name="resumedVersion">The checkpoint's weights version.</param>
    /// <param name="minDelta">Training:EarlyStopping:MinDelta, for the best of the epochs kept when the record's own best is
    /// not among them.</param>
    /// <param name="layout">The model's layout.</param>
    /// <param name="validationSamples">Validation samples of this run: the record's losses count only if measured on as many.</param>
    /// <param name="problem">Why nothing was restored, for a warning; null when the record was restored, or when nothing
    /// was to be restored (a run resumed at epoch 2 whose epoch 1 was never scored).</param>
    /// <returns>The restored state; null when there is none (see <paramref name="problem"/>).</returns>
    public static RestoredEarlyStopping? Restore(string directory, int firstEpoch, int firstRound, long resumedVersion, double minDelta,
        ParameterLayout layout, int validationSamples, out string? problem)
    {
        problem = null;
        var statePath = Path.Combine(directory, StateFileName);
        if (Directory.Exists(statePath))
        {
            problem = $"{statePath} is a folder, not the record early stopping writes there; remove it";
            return null;
        }
        if (!File.Exists(statePath))
        {
            if (firstEpoch > 2)
                problem = $"{statePath} does not exist (early stopping was off for the epochs before, the checkpoints were written by an earlier " +
                    "DistTrain, or the file was deleted)";
            return null;
        }
        StateFile state;
        try
        {
            state = JsonSerializer.Deserialize<StateFile>(File.ReadAllBytes(statePath), Json) is { Epochs: not null } read
                ? read : throw new JsonException("it has no \"epochs\" list");
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException or NotSupportedException)
        {
            problem = $"{statePath} could not be read ({e.Message})";
            return null;
        }
        if (state.ValidationSamples != validationSamples)
        {
            problem = state.ValidationSamples <= 0
                ? $"{statePath} does not say how many validation samples its losses were measured on (an earlier DistTrain wrote it)"
                : $"{statePath} holds validation losses measured on {state.ValidationSamples:N0} samples, and this run holds out " +
                  $"{validationSamples:N0} (Data:ValidationFraction, Data:TrainLimit or Data:Classes changed), so they do not compare";
            return null;
        }
        var kept = state.Epochs!.Where(e => e is not null && e.Epoch < firstEpoch).ToList();
        var last = kept.Count == 0 ? 0 : kept[^1].Epoch;
        if (last < firstEpoch - 2)
        {
            problem = $"{statePath} records epochs up to {last}, but the checkpoint resumes at epoch {firstEpoch}: epochs {last + 1} to " +
                $"{firstEpoch - 1} were trained without being scored for early stopping (it was off, or the record is another run's)";
            return null;
        }
        if (kept.Count == 0) return null; // resumed at epoch 2, epoch 1 never scored
        // The record belongs to the checkpoint's run when its epochs and versions lead to the checkpoint's version: epochs in
        // order, versions rising to at most the checkpoint's, and equal to it for the epoch just before an epoch-end checkpoint.
        for (var i = 0; i < kept.Count; i++)
        {
            var (epoch, version) = (kept[i].Epoch, kept[i].Version);
            var inOrder = epoch >= 1 && version >= 0 && version <= resumedVersion && (i == 0 || (epoch > kept[i - 1].Epoch && version > kept[i - 1].Version));
            var matchesCheckpoint = !(firstRound == 0 && epoch == firstEpoch - 1) || version == resumedVersion;
            if (!inOrder || !matchesCheckpoint)
            {
                problem = $"{statePath} records epoch {epoch} at weights version {version}, which does not lead to the checkpoint's " +
                    $"version {resumedVersion} at epoch {firstEpoch} (it belongs to another run in the same directory)";
                return null;
            }
        }
        // The record's own best when it is among the epochs kept (it was decided under the MinDelta of its time), else the best
        // of the epochs kept (a resume from an earlier checkpoint than the newest).
        var best = kept.FirstOrDefault(e => e.Epoch == state.BestEpoch) ?? kept[BestOf(kept, minDelta)];
        var weightsPath = Path.Combine(directory, BestWeightsFileName(best.Version));
        try
        {
            if (!File.Exists(weightsPath))
            {
                problem = $"{weightsPath}, the best epoch's weights (epoch {best.Epoch}), does not exist";
                return null;
            }
            var metadata = SafeTensors.ReadMetadata(weightsPath);
            if (!metadata.TryGetValue(VersionKey, out var text) || !long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var version) ||
                version != best.Version)
            {
                problem = $"{weightsPath} holds weights version {text ?? "(none)"}, not the best epoch's ({best.Epoch}, version {best.Version})";
                return null;
            }
            if (!metadata.TryGetValue(HashKey, out var expectedHash))
            {
                problem = $"{weightsPath} has no {HashKey} in its metadata, so its weights cannot be checked";
                return null;
            }
            var tensors = SafeTensors.Read(weightsPath);
            var weights = new ParameterVector(layout);
            foreach (var segment in layout.Segments)
            {
                if (!tensors.TryGetValue(segment.Name, out var tensor) || !EarlierShapes.Fits(tensor.Shape, segment))
                {
                    problem = $"{weightsPath} has no tensor '{segment.Name}' [{string.Join(", ", segment.Shape)}] (it was written for another model)";
                    return null;
                }
                tensor.Data.CopyTo(weights.Segment(segment));
            }
            if (tensors.Count != layout.Segments.Count)
            {
                problem = $"{weightsPath} has {tensors.Count} tensors, the model {layout.Segments.Count} (it was written for another model)";
                return null;
            }
            if (HashOf(weights.Values) != expectedHash)
            {
                problem = $"{weightsPath} is damaged: the SHA-256 of its weights differs from the one written with them";
                return null;
            }
            return new RestoredEarlyStopping(kept, best, weights.Values);
        }
        catch (InvalidDataException e)
        {
            // SafeTensors.Read's check of the file's data_sha256 or metadata_sha256 (written since it records them): the bytes
            // changed after writing. Its message names which part and both digests.
            problem = e.Message; // it starts with the file's path
            return null;
        }
        catch (Exception e) when (e is SafeTensorsFormatException or IOException or UnauthorizedAccessException)
        {
            problem = $"{weightsPath} could not be read ({e.Message})";
            return null;
        }
    }
}
