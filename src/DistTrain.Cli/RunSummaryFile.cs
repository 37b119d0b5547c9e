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
    /// one per feature for PerFeature).
    /// </summary>
    public static Dictionary<string, string> Metadata(TrainingOptions options, Normalizer normalizer, TrainingResult result) =>
        DistTrain.Core.Models.ModelMetadata.Create(options.Model, normalizer, result.Version,
            epochs: result.Epochs[^1].Epoch, // the last epoch trained, also after a resume
            result.FinalEpoch.TestAccuracy, options.Training.Seed);

    public static void Write(string path, TrainingOptions options, Normalizer normalizer, TrainingResult result) =>
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            options,
            normalization = new { normalizer.Kind, normalizer.Mean, normalizer.Std },
            version = result.Version,
            best_epoch = result.BestEpoch,
            stopped_early = result.StoppedEarly,
            tensors = result.FinalWeights.Layout.Segments.Select(s => new { s.Name, s.Shape }),
            epochs = result.Epochs.Select(e => new
            {
                e.Epoch, e.Version, e.TrainLoss, e.TestLoss, e.TestAccuracy, e.TestSamples, e.TrainSamples,
                e.TrainSeconds, e.EvaluationSeconds, e.SamplesPerSecond,
                ValidationLoss = double.IsNaN(e.ValidationLoss) ? (double?)null : e.ValidationLoss,
                ValidationAccuracy = double.IsNaN(e.ValidationAccuracy) ? (double?)null : e.ValidationAccuracy,
                e.L1Penalty, e.L2Penalty,
            }),
        }, Json));
}
