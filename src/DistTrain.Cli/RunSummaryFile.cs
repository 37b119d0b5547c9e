using System.Text.Json;
using System.Text.Json.Serialization;
using DistTrain.Cluster.Hosting;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;

namespace DistTrain.Cli;

/// <summary>What a run writes beside its weights: <c>summary.json</c>, and the metadata stored in <c>model.safetensors</c>.</summary>
internal static class RunSummaryFile
{
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true, Converters = { new JsonStringEnumConverter() } };

    /// <summary>
    /// Safetensors metadata. The input standardization is part of the model: without it the weights
    /// see inputs on the wrong scale, so mean and std are stored (JSON arrays: one value for Global,
    /// one per feature for PerFeature), with what predict needs to read new inputs (<see cref="DataMetadata"/>).
    /// </summary>
    /// <param name="options">The run's options.</param>
    /// <param name="normalizer">The input standardization the weights expect.</param>
    /// <param name="data">What the run's data was (format, class names, label kind, CSV columns, input scaling), for predict.</param>
    /// <param name="result">The weights and the epochs trained (none when a run was cancelled during its first epoch).</param>
    /// <param name="stopped">For a run stopped before its end: where and why, e.g. "cancelled at epoch 3, step 120 of 235",
    /// "failed at ..." or (in <c>summary.json</c>, beside <c>last-good.safetensors</c>) "diverged at epoch 4, step 1 of 32"; null otherwise.</param>
    /// <remarks>Its <c>epochs</c> is the epoch whose weights are saved: with early stopping the kept epoch
    /// (<see cref="TrainingResult.FinalEpoch"/>), and then <see cref="DistTrain.Core.Models.ModelMetadata.EpochsTrained"/> holds
    /// the last epoch trained.</remarks>
    public static Dictionary<string, string> Metadata(TrainingOptions options, Normalizer normalizer, DataMetadata data, TrainingResult result, string? stopped = null)
    {
        // A cancelled run's weights are those of the step it stopped at: no test accuracy describes them.
        var lastEpoch = result.Epochs.Count == 0 ? 0 : result.Epochs[^1].Epoch; // the last epoch finished, also after a resume
        // The epochs the saved weights have been through: with early stopping, the kept (best) epoch's, not the last one trained.
        var weightsEpoch = stopped is null && result.Epochs.Count > 0 ? result.FinalEpoch.Epoch : lastEpoch;
        var metadata = DistTrain.Core.Models.ModelMetadata.Create(options.Model, normalizer, data, result.Version,
            epochs: weightsEpoch, stopped is null ? result.FinalEpoch.TestAccuracy : null, options.Training.Seed);
        if (weightsEpoch != lastEpoch) metadata[DistTrain.Core.Models.ModelMetadata.EpochsTrained] = lastEpoch.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (stopped is not null) metadata["stopped"] = stopped;
        return metadata;
    }

    /// <summary>
    /// Writes <c>summary.json</c>; <paramref name="stopped"/> as in <see cref="Metadata"/>. Its <c>resumed_at_epoch</c> is the
    /// first epoch this run trained when the run began from a checkpoint (a resume, <c>Checkpoint:Resume</c>, or a standby's
    /// takeover: the epochs or steps before it are in the run folder of the run that wrote the checkpoint): when that epoch is
    /// not epoch 1, or is epoch 1 with fewer samples trained in this run than the epoch's (resumed within it) or none (only
    /// scored); else null. With <paramref name="report"/>,
    /// it also records the staleness of the applied gradients (<c>staleness</c>: count, mean, p50, p90, max and the counts
    /// by versions behind; null when no step was applied) and each worker's reports and compute time (<c>workers</c>).
    /// Each of its <c>epochs</c> holds the epoch's <c>TrainSamples</c> (the whole epoch's), the <c>SamplesTrainedThisRun</c>
    /// of them (fewer in an epoch resumed from a mid-epoch checkpoint, 0 in one a resume only scored), <c>TrainSeconds</c>, the
    /// <c>PausedSeconds</c> of them and <c>SamplesPerSecond</c> (<see cref="EpochSummary.SamplesPerSecond"/>, as train printed it).
    /// </summary>
    public static void Write(string path, TrainingOptions options, Normalizer normalizer, TrainingResult result, string? stopped = null, RunReport? report = null) =>
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            options,
            stopped,
            resumed_at_epoch = result.Epochs.Count > 0 && (result.Epochs[0].Epoch > 1 || result.Epochs[0].TrainSamples == 0
                    || result.Epochs[0].SamplesTrainedThisRun < result.Epochs[0].TrainSamples)
                ? result.Epochs[0].Epoch : (int?)null,
            normalization = new { normalizer.Kind, normalizer.Mean, normalizer.Std },
            version = result.Version,
            best_epoch = result.BestEpoch,
            // The kept epoch's test accuracy, also when that epoch was trained before a resume (so is not in "epochs").
            best_epoch_test_accuracy = result.BestEpoch is null ? (double?)null : result.FinalEpoch.TestAccuracy,
            stopped_early = result.StoppedEarly,
            tensors = result.FinalWeights.Layout.Segments.Select(s => new { s.Name, s.Shape }),
            // A figure that is not known (no validation split; the training loss of an epoch a takeover only evaluated) or not
            // finite is null: JSON has no NaN.
            epochs = result.Epochs.Select(e => new
            {
                e.Epoch, e.Version, TrainLoss = Finite(e.TrainLoss), TestLoss = Finite(e.TestLoss), e.TestAccuracy, e.TestSamples, e.TrainSamples,
                // Of TrainSamples, those this run trained (fewer in an epoch resumed mid-way, none in one it only scored), and
                // of TrainSeconds, the time paused below Cluster:MinWorkers: SamplesPerSecond is the one over the other's rest.
                SamplesTrainedThisRun = e.SamplesTrainedThisRun ?? e.TrainSamples,
                e.TrainSeconds, e.PausedSeconds, e.EvaluationSeconds, SamplesPerSecond = Finite(e.SamplesPerSecond),
                ValidationLoss = Finite(e.ValidationLoss),
                ValidationAccuracy = Finite(e.ValidationAccuracy),
                L1Penalty = Finite(e.L1Penalty), L2Penalty = Finite(e.L2Penalty),
            }),
            staleness = report?.Staleness.Summarize() is { } summary
                ? new
                {
                    count = summary.Count, mean = summary.Mean, p50 = summary.P50, p90 = summary.P90, max = summary.Max,
                    counts = summary.Counts.ToDictionary(c => c.Key.ToString(System.Globalization.CultureInfo.InvariantCulture), c => c.Value),
                }
                : null,
            workers = report?.WorkerCompute.Summarize().Select(w => new
            {
                worker = w.Worker, reports = w.Reports, compute_seconds = w.ComputeSeconds, mean_compute_seconds = w.MeanComputeSeconds,
            }),
        }, Json));

    private static double? Finite(double value) => double.IsFinite(value) ? value : null;
}
