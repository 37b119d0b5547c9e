using System.Numerics.Tensors;

namespace DistTrain.Core.Layers;

/// <summary>Rectified linear unit <c>max(0, x)</c>; the derivative at 0 is taken as 0, as in PyTorch.</summary>
public sealed class ReLU : Activation
{
    /// <inheritdoc />
    public override string Description => "ReLU";

    /// <inheritdoc />
    protected override void Apply(ReadOnlySpan<float> input, Span<float> output) => TensorPrimitives.Max(input, 0f, output);

    /// <inheritdoc />
    protected override void Derivative(ReadOnlySpan<float> input, ReadOnlySpan<float> output,
        ReadOnlySpan<float> outputGradient, Span<float> inputGradient)
        => ElementWise.RectifierDerivative(input, outputGradient, inputGradient, 0f);
}

/// <summary>
/// Leaky ReLU <c>x</c> for <c>x &gt; 0</c>, else <c>slope · x</c> (Maas et al., 2013, "Rectifier
/// nonlinearities improve neural network acoustic models"); PyTorch's default slope is 0.01.
/// </summary>
/// <param name="negativeSlope">Slope for negative inputs; must be finite and non-negative.</param>
public sealed class LeakyReLU(float negativeSlope = 0.01f) : Activation
{
    /// <summary>Slope for negative inputs.</summary>
    public float NegativeSlope { get; } = float.IsFinite(negativeSlope) && negativeSlope >= 0
        ? negativeSlope
        : throw new ArgumentOutOfRangeException(nameof(negativeSlope), negativeSlope, "The negative slope must be finite and >= 0.");

    /// <inheritdoc />
    public override string Description => $"LeakyReLU({NegativeSlope})";

    /// <inheritdoc />
    protected override void Apply(ReadOnlySpan<float> input, Span<float> output) =>
        ElementWise.LeakyRectifier(input, output, NegativeSlope);

    /// <inheritdoc />
    protected override void Derivative(ReadOnlySpan<float> input, ReadOnlySpan<float> output,
        ReadOnlySpan<float> outputGradient, Span<float> inputGradient)
        => ElementWise.RectifierDerivative(input, outputGradient, inputGradient, NegativeSlope);
}

/// <summary>Logistic sigmoid <c>1 / (1 + e^-x)</c>; derivative <c>y (1 - y)</c>.</summary>
public sealed class Sigmoid : Activation
{
    /// <inheritdoc />
    public override string Description => "Sigmoid";

    /// <inheritdoc />
    protected override void Apply(ReadOnlySpan<float> input, Span<float> output) => TensorPrimitives.Sigmoid(input, output);

    /// <inheritdoc />
    protected override void Derivative(ReadOnlySpan<float> input, ReadOnlySpan<float> output,
        ReadOnlySpan<float> outputGradient, Span<float> inputGradient)
        => ElementWise.SigmoidDerivative(output, outputGradient, inputGradient);
}

/// <summary>Hyperbolic tangent; derivative <c>1 - y²</c>.</summary>
public sealed class Tanh : Activation
{
    /// <inheritdoc />
    public override string Description => "Tanh";

    /// <inheritdoc />
    protected override void Apply(ReadOnlySpan<float> input, Span<float> output) => TensorPrimitives.Tanh(input, output);

    /// <inheritdoc />
    protected override void Derivative(ReadOnlySpan<float> input, ReadOnlySpan<float> output,
        ReadOnlySpan<float> outputGradient, Span<float> inputGradient)
        => ElementWise.TanhDerivative(output, outputGradient, inputGradient);
}
