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

    /// <summary>
    /// Clip the averaged gradient to this global L2 norm before the update, once, at the parameter server
    /// (as <c>torch.nn.utils.clip_grad_norm_</c>); 0 turns clipping off. Default 0.
    /// </summary>
    public double GradientClipNorm { get; set; }
}

/// <summary>
/// Stochastic gradient descent with momentum, L1 and L2, applied once per update to the flat
/// parameter vector.
/// </summary>
/// <remarks>
/// Per element, as <c>torch.optim.SGD</c> with dampening 0 and Nesterov off:
/// <c>g ← g + λ₂ w + λ₁ sign(w)</c>; <c>v ← μ v + g</c>; <c>w ← w − η v</c>. The momentum buffer starts at
/// zero, so the first step uses <c>v = g</c> as PyTorch does.
/// <para>The update runs in blocks of <see cref="BlockLength"/> elements: each block's weighted
/// gradient average, regularization, momentum and weight update happen while the block sits in the L1
/// cache, so every input is read from memory once (SIMD through <c>TensorPrimitives</c>).</para>
/// </remarks>
public sealed class SgdOptimizer
{
    /// <summary>Elements per block: 4,096 floats = 16 KB, a fraction of any L1 data cache.</summary>
    public const int BlockLength = 4096;

    private readonly float[] _block = new float[BlockLength];
    private readonly float[][] _single = new float[1][];
    private readonly float[] _one = [1f];

    /// <summary>Creates the optimizer and its state for <paramref name="length"/> parameters.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is outside its range, or <paramref name="length"/> is negative.</exception>
    public SgdOptimizer(SgdOptions options, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
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
    }

    /// <summary>The settings.</summary>
    public SgdOptions Options { get; }

    /// <summary>Velocity <c>v</c>, one element per parameter.</summary>
    public float[] MomentumBuffer { get; }

    /// <summary>Applies one update to <paramref name="weights"/> in place from the averaged <paramref name="gradient"/>.</summary>
    /// <returns>False when the gradient holds NaN or ±Inf (see <see cref="StepWeightedAverage"/>).</returns>
    /// <exception cref="ArgumentException">The lengths differ from the optimizer's.</exception>
    public bool Step(Span<float> weights, float[] gradient)
    {
        _single[0] = gradient;
        try
        {
            return StepWeightedAverage(weights, _single, _one, []);
        }
        finally
        {
            _single[0] = null!;
        }
    }

    /// <summary>
    /// Applies one update from the weighted average <c>Σₖ scalesₖ · gradientsₖ</c> of several gradients
    /// (the parameter server passes <c>nₖ / Σ n</c>), and copies the new weights into <paramref name="copyTo"/>
    /// when it is not empty.
    /// </summary>
    /// <returns>False when the averaged gradient holds NaN or ±Inf. The update then stops at the first bad
    /// block of <see cref="BlockLength"/> elements, so the weights and momentum are partly updated: the
    /// caller must stop training and fall back to the last weights it published.</returns>
    /// <exception cref="ArgumentException">A length differs from the optimizer's, or the scales do not match the gradients.</exception>
    public bool StepWeightedAverage(Span<float> weights, ReadOnlySpan<float[]> gradients, ReadOnlySpan<float> scales, Span<float> copyTo)
    {
        var length = MomentumBuffer.Length;
        if (weights.Length != length || (copyTo.Length != 0 && copyTo.Length != length) || gradients.Length != scales.Length || gradients.Length == 0)
            throw new ArgumentException($"SGD expects {length} parameters and one scale per gradient; got weights {weights.Length}, copy target {copyTo.Length}, {gradients.Length} gradients and {scales.Length} scales.");
        foreach (var gradient in gradients)
            if (gradient.Length != length)
                throw new ArgumentException($"SGD expects gradients of {length} elements, got {gradient.Length}.");
        var l2 = (float)Options.L2;
        var l1 = (float)Options.L1;
        var momentum = (float)Options.Momentum;
        var negativeLearningRate = -(float)Options.LearningRate;
        for (var start = 0; start < length; start += BlockLength)
        {
            var count = Math.Min(BlockLength, length - start);
            var g = _block.AsSpan(0, count);
            var w = weights.Slice(start, count);
            TensorPrimitives.Multiply(gradients[0].AsSpan(start, count), scales[0], g);
            for (var k = 1; k < gradients.Length; k++)
                TensorPrimitives.MultiplyAdd(gradients[k].AsSpan(start, count), scales[k], g, g);
            if (!float.IsFinite(TensorPrimitives.Sum(g))) return false;
            if (l2 != 0f) TensorPrimitives.MultiplyAdd(w, l2, g, g);
            if (l1 != 0f) ElementWise.AddScaledSign(w, l1, g);
            var step = g;
            if (momentum != 0f)
            {
                var v = MomentumBuffer.AsSpan(start, count);
                TensorPrimitives.MultiplyAdd(v, momentum, g, v);
                step = v;
            }
            TensorPrimitives.MultiplyAdd(step, negativeLearningRate, w, w);
            if (copyTo.Length != 0) w.CopyTo(copyTo.Slice(start, count));
        }
        return true;
    }
}
