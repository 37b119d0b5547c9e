using System.Numerics.Tensors;
using DistTrain.Core.Layers;

namespace DistTrain.Core.Optimization;

/// <summary>
/// The coupled L1 and L2 terms added to a gradient: <c>g ← g + λ₁ sign(w) + λ₂ w</c>, the gradient of
/// <c>λ₁ Σ|w| + λ₂/2 Σw²</c> (L2 as PyTorch's <c>weight_decay</c>; sign(0) = 0). The optimizer adds them at the parameter
/// server; under Deep Gradient Compression's momentum correction each worker adds them before its momentum instead.
/// </summary>
public static class Regularization
{
    /// <summary>Adds <c>λ₁ sign(w) + λ₂ w</c> to <paramref name="gradient"/>, element by element; a λ of 0 skips its term.</summary>
    /// <param name="weights">The weights <c>w</c>, <c>[n]</c>.</param>
    /// <param name="gradient">The gradient, <c>[n]</c>, updated in place.</param>
    /// <param name="l1">λ₁ (Optimizer:L1).</param>
    /// <param name="l2">λ₂ (Optimizer:L2).</param>
    /// <exception cref="ArgumentException">The spans differ in length.</exception>
    public static void AddToGradient(ReadOnlySpan<float> weights, Span<float> gradient, float l1, float l2)
    {
        if (weights.Length != gradient.Length)
            throw new ArgumentException($"The weights have {weights.Length} elements and the gradient {gradient.Length}; they must match.");
        if (l1 != 0f) ElementWise.AddScaledSign(weights, l1, gradient);
        if (l2 != 0f) TensorPrimitives.MultiplyAdd(weights, l2, gradient, gradient);
    }

    /// <summary>
    /// Adds <c>λ₁ sign(w) + λ₂ w</c> to <paramref name="gradient"/> over the decayed groups only (<see cref="ParameterGroups.Ranges"/>,
    /// which follow Optimizer:DecayBiasAndNormParameters), as the optimizer does.
    /// </summary>
    /// <param name="weights">The trainable weights, <c>[n]</c>.</param>
    /// <param name="gradient">Their gradient, <c>[n]</c>, updated in place.</param>
    /// <param name="groups">Ranges that lie within <c>[0, n)</c>.</param>
    /// <param name="l1">λ₁ (Optimizer:L1).</param>
    /// <param name="l2">λ₂ (Optimizer:L2).</param>
    /// <exception cref="ArgumentException">The spans differ in length.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A group lies outside <c>[0, n)</c>.</exception>
    public static void AddToGradient(ReadOnlySpan<float> weights, Span<float> gradient, IReadOnlyList<ParameterGroupRange> groups, float l1, float l2)
    {
        ArgumentNullException.ThrowIfNull(groups);
        if (weights.Length != gradient.Length)
            throw new ArgumentException($"The weights have {weights.Length} elements and the gradient {gradient.Length}; they must match.");
        for (var i = 0; i < groups.Count; i++) // indexed: foreach over the interface would allocate an enumerator per push
            if (groups[i] is { Decay: true } group)
                AddToGradient(weights.Slice(group.Offset, group.Length), gradient.Slice(group.Offset, group.Length), l1, l2);
    }
}
