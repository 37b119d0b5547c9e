using DistTrain.Core.Compression;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// What a shard node's links take from the workers under Cluster:Compression (<see cref="CompressedGradientReader.ForSlice"/>):
/// cuts of one kind of encoding, and under TopK at most the picks of a whole message.
/// </summary>
/// <param name="Kind">The run's Cluster:Compression (not <c>None</c>: without compression the slices are float32 frames).</param>
/// <param name="MostPicks">TopK: the picks of a whole message, <see cref="GradientCompressionSettings.TopKCount(ReadOnlySpan{int})"/>
/// of the model's trainable tensors; 0 for the other kinds.</param>
public sealed record CompressedSlices(GradientCompression Kind, int MostPicks)
{
    /// <summary>What a run with <paramref name="settings"/> sends a shard node of the model of <paramref name="layout"/>; null
    /// without compression.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The settings are out of range for the model (as <see cref="GradientEncoder"/>).</exception>
    public static CompressedSlices? Of(GradientCompressionSettings? settings, Core.Tensors.ParameterLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        if (settings is null || settings.Kind == GradientCompression.None) return null;
        return new CompressedSlices(settings.Kind, settings.Kind == GradientCompression.TopK ? settings.TopKCount(layout.TrainableTensorLengths) : 0);
    }
}
