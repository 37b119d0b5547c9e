using System.Text.Json;
using System.Text.Json.Serialization;
using DistTrain.Core.Configuration;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// The settings every node of a job must share, as canonical JSON: the model (input size, layers, loss)
/// and the input normalization. Two nodes whose fingerprints differ would compute gradients of
/// different models, so the parameter server refuses such a worker.
/// </summary>
public static class ModelFingerprint
{
    private static readonly JsonSerializerOptions Json = new() { Converters = { new JsonStringEnumConverter() } };

    /// <summary>The fingerprint of <paramref name="options"/>.</summary>
    public static string Of(TrainingOptions options) => JsonSerializer.Serialize(new
    {
        options.Model.InputSize,
        Layers = options.Model.Layers.Select(l => new { l.Type, l.Units, l.NegativeSlope }),
        options.Model.Loss,
        options.Data.Normalization,
    }, Json);
}
