using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using DistTrain.Cluster.Hosting;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Training;

/// <summary>Early stopping's state as restored for a run that resumes: the epochs evaluated before it, the best of them and its weights.</summary>
/// <param name="Epochs">The evaluated epochs before the resumed one, in order.</param>
/// <param name="Best">The best of them by <see cref="EarlyStoppingRecord.BestOf"/>.</param>
/// <param name="BestWeights">Its weights (version <c>Best.Version</c>), in the model's layout.</param>
public sealed record RestoredEarlyStopping(IReadOnlyList<EpochSummary> Epochs, EpochSummary Best, float[] BestWeights);

/// <summary>
/// Early stopping's state kept beside the checkpoints (Checkpoint:Directory), so that a run resumed from a checkpoint, by
/// <c>--resume</c> or by a standby parameter server's takeover, goes on with the best epoch so far and its weights instead
/// of starting over. PyTorch Lightning keeps the same state for the same reason: its <c>EarlyStopping</c> callback saves
/// its wait count and best score in the checkpoint, and <c>ModelCheckpoint(save_top_k=1)</c> keeps the best model's
/// file. Two files:
/// <list type="bullet">
/// <item><c>early-stopping.json</c>: every evaluated epoch's summary (its weights version, validation loss and test
/// accuracy among them), rewritten after each evaluation;</item>
/// <item><c>early-stopping-best.safetensors</c>: the best epoch's weights, with its version in the metadata, rewritten
/// when an epoch improves on the best (before the JSON that names it).</item>
/// </list>
/// Both are written atomically (<see cref="AtomicFile"/>). A training checkpoint is written when an epoch's training ends
/// and before its evaluation, so the record may hold one epoch fewer than the checkpoint: that epoch is then not a
/// candidate for the best, which costs at most one epoch of patience.
/// </summary>
public static class EarlyStoppingRecord
{
    /// <summary>File name of the evaluated epochs.</summary>
    public const string StateFileName = "early-stopping.json";

    /// <summary>File name of the best epoch's weights.</summary>
    public const string BestWeightsFileName = "early-stopping-best.safetensors";

    private const string VersionKey = "version";
    private const string EpochKey = "epoch";

    private static readonly JsonSerializerOptions Json = new()
    {
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals, // a diverged epoch's NaN loss
        WriteIndented = true,
    };

    private sealed record StateFile(
        [property: JsonPropertyName("epochs")] List<EpochSummary>? Epochs,
        [property: JsonPropertyName("best_epoch")] int BestEpoch);

    /// <summary>The line for a resumed run that goes on with <paramref name="restored"/> under Training:EarlyStopping:Patience <paramref name="patience"/>.</summary>
    public static string GoesOn(RestoredEarlyStopping restored, int patience)
    {
        var last = restored.Epochs[^1].Epoch;
        return string.Create(CultureInfo.InvariantCulture,
            $"Training:EarlyStopping goes on from {StateFileName}: best epoch {restored.Best.Epoch} (validation loss {restored.Best.ValidationLoss:F4}), " +
            $"{last - restored.Best.Epoch} of {patience} epochs of patience used by epoch {last}.");
    }

    /// <summary>The warning for a resumed run whose early stopping starts over at <paramref name="epoch"/> because of <paramref name="problem"/>.</summary>
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
    /// new best, then the evaluated epochs.
    /// </summary>
    /// <param name="directory">Checkpoint:Directory; it exists (the checkpoints are written there).</param>
    /// <param name="epochs">Every evaluated epoch of the run, resumed ones included, in order.</param>
    /// <param name="bestEpoch">The best epoch among them.</param>
    /// <param name="newBest">The best epoch's weights when it is the epoch just evaluated; null when the best did not change.</param>
    /// <exception cref="IOException">A file could not be written; the files before it are unchanged.</exception>
    public static void Save(string directory, IReadOnlyList<EpochSummary> epochs, int bestEpoch, (ParameterVector Weights, long Version)? newBest)
    {
        if (newBest is { } best)
            SafeTensors.Write(Path.Combine(directory, BestWeightsFileName), best.Weights, new Dictionary<string, string>
            {
                [VersionKey] = best.Version.ToString(CultureInfo.InvariantCulture),
                [EpochKey] = bestEpoch.ToString(CultureInfo.InvariantCulture),
            });
        var json = JsonSerializer.SerializeToUtf8Bytes(new StateFile([.. epochs], bestEpoch), Json);
        AtomicFile.Write(Path.Combine(directory, StateFileName), stream => stream.Write(json));
    }

    /// <summary>
    /// Removes the record of an earlier run from <paramref name="directory"/>, when a new run (not resumed) starts there: its
    /// epochs would otherwise pass for the new run's, whose weights versions are the same step counts.
    /// </summary>
    /// <exception cref="IOException">A file could not be removed.</exception>
    public static void Clear(string directory)
    {
        File.Delete(Path.Combine(directory, StateFileName)); // no error when it does not exist
        File.Delete(Path.Combine(directory, BestWeightsFileName));
    }

    /// <summary>
    /// The state to go on with for a run that resumes at <paramref name="firstEpoch"/> from a checkpoint of weights
    /// <paramref name="resumedVersion"/>: the recorded epochs before it, their best (by <see cref="BestOf"/>) and its
    /// weights. Epochs recorded at or after <paramref name="firstEpoch"/> (a resume from an earlier checkpoint than the
    /// newest) are left out.
    /// </summary>
    /// <param name="directory">Checkpoint:Directory.</param>
    /// <param name="firstEpoch">The epoch the run resumes at (&gt; 1).</param>
    /// <param name="firstRound">The round it resumes at: 0 when the checkpoint was written at an epoch's end.</param>
    /// <param name="resumedVersion">The checkpoint's weights version.</param>
    /// <param name="minDelta">Training:EarlyStopping:MinDelta.</param>
    /// <param name="layout">The model's layout.</param>
    /// <param name="problem">Why nothing was restored, for a warning; null when the record was restored or the run had
    /// no evaluated epoch before <paramref name="firstEpoch"/> to restore.</param>
    /// <returns>The restored state; null when there is none (see <paramref name="problem"/>).</returns>
    public static RestoredEarlyStopping? Restore(string directory, int firstEpoch, int firstRound, long resumedVersion, double minDelta,
        ParameterLayout layout, out string? problem)
    {
        problem = null;
        var statePath = Path.Combine(directory, StateFileName);
        if (!File.Exists(statePath))
        {
            problem = $"{statePath} does not exist (the checkpoints were written by a version of DistTrain that did not keep it, or it was deleted)";
            return null;
        }
        List<EpochSummary> epochs;
        try
        {
            epochs = JsonSerializer.Deserialize<StateFile>(File.ReadAllBytes(statePath), Json)?.Epochs
                ?? throw new JsonException("it has no \"epochs\" list");
        }
        catch (Exception e) when (e is JsonException or IOException or UnauthorizedAccessException)
        {
            problem = $"{statePath} could not be read ({e.Message})";
            return null;
        }
        var kept = epochs.Where(e => e is not null && e.Epoch < firstEpoch).ToList();
        if (kept.Count == 0) return null;
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
        var best = kept[BestOf(kept, minDelta)];
        var weightsPath = Path.Combine(directory, BestWeightsFileName);
        try
        {
            if (!File.Exists(weightsPath))
            {
                problem = $"{weightsPath} does not exist";
                return null;
            }
            var metadata = SafeTensors.ReadMetadata(weightsPath);
            if (!metadata.TryGetValue(VersionKey, out var text) || !long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var version) ||
                version != best.Version)
            {
                problem = $"{weightsPath} holds weights version {text ?? "(none)"}, not the best epoch's ({best.Epoch}, version {best.Version})";
                return null;
            }
            var tensors = SafeTensors.Read(weightsPath);
            var weights = new ParameterVector(layout);
            foreach (var segment in layout.Segments)
            {
                if (!tensors.TryGetValue(segment.Name, out var tensor) || !tensor.Shape.SequenceEqual(segment.Shape))
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
            return new RestoredEarlyStopping(kept, best, weights.Values);
        }
        catch (Exception e) when (e is SafeTensorsFormatException or IOException or UnauthorizedAccessException)
        {
            problem = $"{weightsPath} could not be read ({e.Message})";
            return null;
        }
    }
}
