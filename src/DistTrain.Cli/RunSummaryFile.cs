using System.Text.Json;
using DistTrain.Cluster.Hosting;
using DistTrain.Core.Configuration;

namespace DistTrain.Cli;

/// <summary>Writes <c>summary.json</c> beside the weights: the options used and every epoch's figures.</summary>
internal static class RunSummaryFile
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public static void Write(string path, TrainingOptions options, TrainingResult result) =>
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            options,
            version = result.Version,
            tensors = result.FinalWeights.Layout.Segments.Select(s => new { s.Name, s.Shape }),
            epochs = result.Epochs.Select(e => new
            {
                e.Epoch, e.Version, e.TrainLoss, e.TestLoss, e.TestAccuracy, e.TestSamples, e.TrainSamples,
                e.TrainSeconds, e.EvaluationSeconds, e.SamplesPerSecond,
            }),
        }, Indented));
}
