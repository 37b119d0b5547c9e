using DistTrain.Core.Tensors;

namespace DistTrain.Core.Optimization;

/// <summary>
/// A contiguous range <c>[Offset, Offset + Length)</c> of the flat parameter vector that shares one regularization
/// setting, like a <c>torch.optim</c> parameter group.
/// </summary>
/// <param name="Offset">First element, in elements of the flat vector.</param>
/// <param name="Length">Elements in the range, ≥ 0.</param>
/// <param name="Decay">Whether L1 and L2 (weight decay) apply to the range.</param>
public readonly record struct ParameterGroupRange(int Offset, int Length, bool Decay);

/// <summary>Splits a model's parameters into decayed and not-decayed groups.</summary>
public static class ParameterGroups
{
    /// <summary>
    /// Ranges that partition <c>[0, trainableLength)</c> in layout order, neighbouring segments with the same
    /// setting merged. Only weights (<see cref="DistTrain.Core.Layers.ParameterRole.Weight"/>) are decayed: biases and
    /// normalization scales and shifts are not, unless <paramref name="decayBiasAndNorm"/> is set.
    /// </summary>
    /// <param name="layout">The model's parameter layout.</param>
    /// <param name="trainableLength">Length of the trainable prefix of the layout's vector, in elements.</param>
    /// <param name="decayBiasAndNorm"><see cref="OptimizerOptions.DecayBiasAndNormParameters"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="trainableLength"/> is negative or longer than the layout.</exception>
    public static IReadOnlyList<ParameterGroupRange> Ranges(ParameterLayout layout, int trainableLength, bool decayBiasAndNorm)
    {
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentOutOfRangeException.ThrowIfNegative(trainableLength);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(trainableLength, layout.TotalLength);
        var ranges = new List<ParameterGroupRange>();
        foreach (var segment in layout.Segments)
        {
            if (segment.Offset >= trainableLength) break;
            var length = Math.Min(segment.Length, trainableLength - segment.Offset);
            var decay = decayBiasAndNorm || segment.Role == DistTrain.Core.Layers.ParameterRole.Weight;
            if (ranges.Count > 0 && ranges[^1].Decay == decay)
                ranges[^1] = ranges[^1] with { Length = ranges[^1].Length + length };
            else
                ranges.Add(new ParameterGroupRange(segment.Offset, length, decay));
        }
        return ranges;
    }
}
