namespace DistTrain.Core.Compression;

/// <summary>How a gradient is encoded for the wire (<c>Cluster:Compression</c>).</summary>
public enum GradientCompression
{
    /// <summary>float32 as computed, 4 bytes per element; lossless.</summary>
    None = 0,

    /// <summary>IEEE 754 binary16, 2 bytes per element, round to nearest even (as <c>tensor.half()</c> and PyTorch
    /// DDP's <c>fp16_compress_hook</c>). Range ±65504: a finite element that would round to ±infinity (magnitude 65,520 or
    /// more) stops the worker with a <see cref="GradientOverflowException"/> naming it and the fixes, rather than reaching the
    /// parameter server as a divergence. Magnitudes below about 6e-8 become zero.</summary>
    Float16 = 1,

    /// <summary>bfloat16 (the upper 16 bits of a float32, round to nearest even, as <c>tensor.bfloat16()</c>),
    /// 2 bytes per element: float32's range with 8 significant bits.</summary>
    BFloat16 = 2,

    /// <summary>The <c>k = ⌈ratio·n⌉</c> elements of largest magnitude (of the whole gradient, or of each tensor:
    /// <see cref="TopKScope"/>), as (index, float32 value) pairs, 8 bytes per sent element; the rest stays in the worker's error-feedback residual (Lin et al., "Deep Gradient
    /// Compression", ICLR 2018; Stich et al., "Sparsified SGD with Memory", NeurIPS 2018).</summary>
    TopK = 3,
}

/// <summary>The settings of a gradient encoder.</summary>
/// <param name="Kind">The encoding.</param>
/// <param name="TopKRatio">For <see cref="GradientCompression.TopK"/>: the fraction of elements sent per push, in
/// (0, 1]; 0.01 sends 1%.</param>
/// <param name="ErrorFeedback">Whether what the encoding drops (TopK's unsent elements, a half-precision rounding
/// error) is kept in a per-worker residual and added to the next gradient before encoding (Karimireddy et al.,
/// "Error Feedback Fixes SignSGD and other Gradient Compression Schemes", ICML 2019). Without it TopK loses the
/// unsent elements for good.</param>
/// <param name="Momentum">For <see cref="GradientCompression.TopK"/> with error feedback: the momentum coefficient of Deep
/// Gradient Compression's momentum correction (Lin et al., ICLR 2018, section 3.2), in [0, 1); 0 turns it off. The worker
/// keeps a velocity <c>u = m·u + g</c>, the residual accumulates <c>u</c> instead of <c>g</c>, and each sent element is
/// cleared from both (momentum factor masking; not where a selection sends all its elements, <c>k</c> the whole length or,
/// under <see cref="TopKScope.PerTensor"/>, a tensor whose count is its length, where the messages are then momentum SGD's
/// velocity exactly). The parameter server must then step without momentum of its own.</param>
/// <param name="Scope">For <see cref="GradientCompression.TopK"/>: whether the ratio applies to the whole gradient or to each
/// trainable tensor on its own (<see cref="TopKScope"/>).</param>
public sealed record GradientCompressionSettings(GradientCompression Kind, double TopKRatio = 0.01, bool ErrorFeedback = true, double Momentum = 0,
    TopKScope Scope = TopKScope.Global)
{
    /// <summary>No compression: float32 on the wire.</summary>
    public static GradientCompressionSettings None { get; } = new(GradientCompression.None, ErrorFeedback: false);

    /// <summary>The number of elements TopK sends for a vector of <paramref name="length"/> elements:
    /// <c>max(1, ⌈ratio·length⌉)</c>, at most <paramref name="length"/>. The product is taken in decimal, from the ratio as
    /// written (C#'s conversion keeps 15 significant digits), so a ratio of 0.07 on 100 elements sends 7: in binary
    /// floating point 0.07·100 is 7.000000000000001, whose ceiling is 8.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The length is not positive, or the ratio is not in (0, 1].</exception>
    public int TopKCount(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        if (!(TopKRatio > 0 && TopKRatio <= 1))
            throw new ArgumentOutOfRangeException(nameof(TopKRatio), TopKRatio, "The TopK ratio must be in (0, 1], e.g. 0.01 to send 1% of the elements.");
        return (int)Math.Min(length, Math.Max(1m, Math.Ceiling((decimal)TopKRatio * length)));
    }

    /// <summary>The number of elements TopK sends for a gradient made of tensors of <paramref name="tensorLengths"/>
    /// elements, in order: <see cref="TopKCount(int)"/> of their total under <see cref="TopKScope.Global"/>, the sum of
    /// <see cref="TopKCount(int)"/> of each length under <see cref="TopKScope.PerTensor"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">There is no tensor, a length is not positive, the total exceeds
    /// <see cref="int.MaxValue"/>, the ratio is not in (0, 1], or the scope is unknown.</exception>
    public int TopKCount(ReadOnlySpan<int> tensorLengths)
    {
        if (tensorLengths.IsEmpty) throw new ArgumentOutOfRangeException(nameof(tensorLengths), "A gradient has at least one tensor.");
        var total = 0L;
        var perTensor = 0;
        foreach (var length in tensorLengths)
        {
            perTensor += TopKCount(length);
            total += length;
        }
        if (total > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(tensorLengths), total, "The tensors hold more than int.MaxValue elements.");
        return Scope switch
        {
            TopKScope.Global => TopKCount((int)total),
            TopKScope.PerTensor => perTensor,
            _ => throw new ArgumentOutOfRangeException(nameof(Scope), Scope, "Unknown TopK scope: allowed Global, PerTensor."),
        };
    }
}
