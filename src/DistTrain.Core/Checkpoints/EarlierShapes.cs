using DistTrain.Core.Layers;
using DistTrain.Core.Tensors;

namespace DistTrain.Core.Checkpoints;

/// <summary>
/// Tensor shapes that earlier DistTrain versions wrote differently for the same weights, so that their checkpoints
/// still load. Versions before a feature map shrunk to 1x1 stayed an image took such a map for a flat vector: a LayerNorm
/// on it had <c>weight</c> and <c>bias</c> of shape <c>[C]</c>, where the model now has <c>[C, 1, 1]</c>, as PyTorch's
/// <c>nn.LayerNorm([C, 1, 1])</c>. The C values are the same, in the same order (LayerNorm over the same C features), so
/// such a tensor is loaded as it is; only the unit dimensions differ.
/// </summary>
public static class EarlierShapes
{
    /// <summary>
    /// True when a tensor stored with shape <paramref name="stored"/> holds the values of <paramref name="segment"/>: the
    /// same shape, or a LayerNorm's <c>weight</c> or <c>bias</c> on 1x1 feature maps (roles
    /// <see cref="ParameterRole.NormScale"/> and <see cref="ParameterRole.NormShift"/> with shape <c>[C, 1, 1]</c>, which
    /// BatchNorm's one-dimensional tensors never have) stored as <c>[C]</c> by an earlier version.
    /// </summary>
    /// <param name="stored">The tensor's shape in the file.</param>
    /// <param name="segment">The model's tensor.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    public static bool Fits(int[] stored, ParameterSegment segment)
    {
        ArgumentNullException.ThrowIfNull(stored);
        ArgumentNullException.ThrowIfNull(segment);
        return stored.AsSpan().SequenceEqual(segment.Shape) || Earlier(segment) is { } earlier && stored.AsSpan().SequenceEqual(earlier);
    }

    /// <summary>
    /// <paramref name="layout"/> as earlier versions laid it out: a LayerNorm's tensors on 1x1 feature maps <c>[C, 1, 1]</c>
    /// as <c>[C]</c>, every other tensor as it is (names, roles, frozen flags and offsets unchanged); null when no tensor
    /// differs, that is when the model has no LayerNorm on 1x1 feature maps.
    /// </summary>
    /// <param name="layout">The model's layout.</param>
    /// <exception cref="ArgumentNullException"><paramref name="layout"/> is null.</exception>
    public static ParameterLayout? EarlierLayout(ParameterLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        if (!layout.Segments.Any(s => Earlier(s) is not null)) return null;
        // The segments are in the layout's region order already, so the layout keeps their order and offsets.
        return new ParameterLayout(layout.Segments.Select(s => (s.Name, Earlier(s) ?? s.Shape, s.Role, s.Frozen)));
    }

    /// <summary>The shape an earlier version wrote for <paramref name="segment"/>, or null when it wrote the same shape.</summary>
    private static int[]? Earlier(ParameterSegment segment) =>
        segment is { Role: ParameterRole.NormScale or ParameterRole.NormShift, Shape: [var channels, 1, 1] } ? [channels] : null;
}
