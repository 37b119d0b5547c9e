using System.Numerics.Tensors;
using DistTrain.Core.Layers;

namespace DistTrain.Core.Optimization;

/// <summary>Settings of <see cref="SgdOptimizer"/>. Names follow ML.NET; the update follows <c>torch.optim.SGD</c>.</summary>
public sealed class SgdOptions
{
    /// <summary>Step size η. Must be finite and &gt; 0. Default 0.01.</summary>
    public double LearningRate { get; set; } = 0.01;

    /// <summary>Momentum μ in [0, 1). 0 turns momentum off. Default 0.</summary>
    public double Momentum { get; set; }

    /// <summary>L1 strength λ₁ ≥ 0: adds <c>λ₁ · sign(w)</c> to the gradient (the subgradient of <c>λ₁ ‖w‖₁</c>). Default 0.</summary>
    public double L1 { get; set; }

    /// <summary>
    /// L2 strength λ₂ ≥ 0, PyTorch's <c>weight_decay</c>: adds <c>λ₂ · w</c> to the gradient (the gradient of
    /// <c>λ₂/2 ‖w‖²</c>). Default 0.
    /// </summary>
    public double L2 { get; set; }
}

/// <summary>
/// Stochastic gradient descent with momentum, L1 and L2, applied once per update to the flat
/// parameter vector.
/// </summary>
/// <remarks>
/// Per element, as <c>torch.optim.SGD</c> with dampening 0 and Nesterov off:
/// <c>g ← g + λ₂ w + λ₁ sign(w)</c>; <c>v ← μ v + g</c>; <c>w ← w − η v</c>. The momentum buffer starts at
/// zero, so the first step uses <c>v = g</c> as PyTorch does.
/// </remarks>
public sealed class SgdOptimizer
{
    private readonly float[] _regularized;

    /// <summary>Creates the optimizer and its state for <paramref name="length"/> parameters.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is outside its range.</exception>
    public SgdOptimizer(SgdOptions options, int length)
    {
        if (!double.IsFinite(options.LearningRate) || options.LearningRate <= 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.LearningRate, "LearningRate must be finite and > 0.");
        if (!double.IsFinite(options.Momentum) || options.Momentum < 0 || options.Momentum >= 1)
            throw new ArgumentOutOfRangeException(nameof(options), options.Momentum, "Momentum must be in [0, 1).");
        if (!double.IsFinite(options.L1) || options.L1 < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.L1, "L1 must be finite and >= 0.");
        if (!double.IsFinite(options.L2) || options.L2 < 0)
            throw new ArgumentOutOfRangeException(nameof(options), options.L2, "L2 must be finite and >= 0.");
        Options = options;
        MomentumBuffer = new float[length];
        _regularized = new float[length];
    }

    /// <summary>The settings.</summary>
    public SgdOptions Options { get; }

    /// <summary>Velocity <c>v</c>, one element per parameter.</summary>
    public float[] MomentumBuffer { get; }

    /// <summary>Updates applied so far.</summary>
    public long Steps { get; private set; }

    /// <summary>Applies one update to <paramref name="weights"/> in place from the averaged <paramref name="gradient"/>.</summary>
    /// <exception cref="ArgumentException">The lengths differ from the optimizer's.</exception>
    public void Step(Span<float> weights, ReadOnlySpan<float> gradient)
    {
        if (weights.Length != MomentumBuffer.Length || gradient.Length != MomentumBuffer.Length)
            throw new ArgumentException($"SGD expects {MomentumBuffer.Length} parameters, got weights {weights.Length} and gradient {gradient.Length}.");
        var g = _regularized.AsSpan();
        var l2 = (float)Options.L2;
        if (l2 != 0f) TensorPrimitives.MultiplyAdd(weights, l2, gradient, g);
        else gradient.CopyTo(g);
        var l1 = (float)Options.L1;
        if (l1 != 0f) ElementWise.AddScaledSign(weights, l1, g);
        var momentum = (float)Options.Momentum;
        var step = g;
        if (momentum != 0f)
        {
            TensorPrimitives.MultiplyAdd(MomentumBuffer, momentum, g, MomentumBuffer);
            step = MomentumBuffer;
        }
        TensorPrimitives.MultiplyAdd(step, -(float)Options.LearningRate, weights, weights);
        Steps++;
    }
}
