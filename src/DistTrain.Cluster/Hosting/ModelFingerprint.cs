using System.Text.Json;
using System.Text.Json.Serialization;
using DistTrain.Core.Configuration;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// The settings every node of a job must share, as canonical JSON: the whole model section (shapes, layers
/// and their settings, loss, initializer, pretrained checkpoint, frozen tensors) and what decides which
/// samples a shard index means and how they are fed (data format, test split, normalization, class filter,
/// training limit, validation split and the seed that draws it, augmentation), and how the workers encode gradients
/// (Cluster:Compression, TopKRatio, TopKScope, ErrorFeedback, and the momentum, L1, L2 and clipping the workers apply under TopK and
/// MomentumCorrection, which the parameter server then leaves out of its own step). File and folder paths are left out: each node reads the data at
/// its own paths. Two nodes whose fingerprints differ would compute gradients of different models or on different
/// samples, or would apply momentum twice or not at all, so the parameter server refuses such a worker.
/// </summary>
public static class ModelFingerprint
{
    private static readonly JsonSerializerOptions Json = new() { Converters = { new JsonStringEnumConverter() } };

    /// <summary>The fingerprint of <paramref name="options"/>.</summary>
    public static string Of(TrainingOptions options) => JsonSerializer.Serialize(new
    {
        options.Model,
        options.Data.Format,
        options.Data.TestFraction,
        options.Data.TestSplitSeed,
        options.Data.Normalization,
        options.Data.Classes,
        options.Data.TrainLimit,
        options.Data.ValidationFraction,
        options.Data.Augmentation,
        options.Training.Seed,
        GradientEncoding = Training.ReplicaSettings.CompressionOf(options),
        LocalGradient = Training.LocalGradientSettings.Of(options),
    }, Json);
}
