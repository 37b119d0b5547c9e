using System.Numerics;

namespace DistTrain.Core.Layers;

/// <summary>
/// SIMD kernels for the activation derivatives that <see cref="System.Numerics.Tensors.TensorPrimitives"/>
/// has no single call for. Each processes <see cref="Vector{T}.Count"/> floats per instruction (8: .NET
/// keeps <see cref="Vector{T}"/> at 256 bits even on AVX-512 CPUs) and finishes the tail element by element.
/// </summary>
internal static class ElementWise
{
    /// <summary><c>dx = x &gt; 0 ? dy : slope·dy</c> (ReLU with slope 0, LeakyReLU otherwise).</summary>
    public static void RectifierDerivative(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx, float slope)
    {
        var i = 0;
        var width = Vector<float>.Count;
        var slopes = new Vector<float>(slope);
        for (; i <= x.Length - width; i += width)
        {
            var g = new Vector<float>(dy[i..]);
            Vector.ConditionalSelect(Vector.GreaterThan(new Vector<float>(x[i..]), Vector<float>.Zero), g, g * slopes).CopyTo(dx[i..]);
        }
        for (; i < x.Length; i++) dx[i] = x[i] > 0f ? dy[i] : slope * dy[i];
    }

    /// <summary><c>y = x &gt; 0 ? x : slope·x</c>.</summary>
    public static void LeakyRectifier(ReadOnlySpan<float> x, Span<float> y, float slope)
    {
        var i = 0;
        var width = Vector<float>.Count;
        var slopes = new Vector<float>(slope);
        for (; i <= x.Length - width; i += width)
        {
            var v = new Vector<float>(x[i..]);
            Vector.ConditionalSelect(Vector.GreaterThan(v, Vector<float>.Zero), v, v * slopes).CopyTo(y[i..]);
        }
        for (; i < x.Length; i++) y[i] = x[i] > 0f ? x[i] : slope * x[i];
    }

    /// <summary><c>dx = dy · y · (1 − y)</c>, the sigmoid derivative from its output.</summary>
    public static void SigmoidDerivative(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx)
    {
        var i = 0;
        var width = Vector<float>.Count;
        for (; i <= y.Length - width; i += width)
        {
            var v = new Vector<float>(y[i..]);
            (new Vector<float>(dy[i..]) * v * (Vector<float>.One - v)).CopyTo(dx[i..]);
        }
        for (; i < y.Length; i++) dx[i] = dy[i] * y[i] * (1f - y[i]);
    }

    /// <summary><c>dx = dy · (1 − y²)</c>, the tanh derivative from its output.</summary>
    public static void TanhDerivative(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx)
    {
        var i = 0;
        var width = Vector<float>.Count;
        for (; i <= y.Length - width; i += width)
        {
            var v = new Vector<float>(y[i..]);
            (new Vector<float>(dy[i..]) * (Vector<float>.One - v * v)).CopyTo(dx[i..]);
        }
        for (; i < y.Length; i++) dx[i] = dy[i] * (1f - y[i] * y[i]);
    }

    /// <summary><c>g += λ·sign(w)</c> with sign(0) = 0: the L1 subgradient.</summary>
    public static void AddScaledSign(ReadOnlySpan<float> w, float lambda, Span<float> g)
    {
        var i = 0;
        var width = Vector<float>.Count;
        var plus = new Vector<float>(lambda);
        var minus = new Vector<float>(-lambda);
        for (; i <= w.Length - width; i += width)
        {
            var v = new Vector<float>(w[i..]);
            var sign = Vector.ConditionalSelect(Vector.GreaterThan(v, Vector<float>.Zero), plus, Vector<float>.Zero)
                     + Vector.ConditionalSelect(Vector.LessThan(v, Vector<float>.Zero), minus, Vector<float>.Zero);
            (new Vector<float>(g[i..]) + sign).CopyTo(g[i..]);
        }
        for (; i < w.Length; i++) g[i] += w[i] > 0f ? lambda : w[i] < 0f ? -lambda : 0f; // MathF.Sign throws on NaN
    }
}
