using System.Numerics.Tensors;

namespace DistTrain.Core.Optimization;

/// <summary>
/// RMSProp (Hinton, Srivastava &amp; Swersky, Neural Networks for Machine Learning, lecture 6e), as
/// <c>torch.optim.RMSprop</c> with <c>centered=False</c>.
/// </summary>
/// <remarks>
/// Per element, after the averaging and regularization of <see cref="Optimizer"/> (L2 coupled):
/// <c>s ← α s + (1 − α) g²</c>; <c>d = √s + ε</c>; with momentum μ, <c>b ← μ b + g / d</c> and <c>w ← w − η b</c>,
/// otherwise <c>w ← w − η g / d</c>.
/// </remarks>
public sealed class RMSProp : Optimizer
{
    private readonly float _alpha;
    private readonly float _oneMinusAlpha;
    private readonly float _epsilon;
    private readonly float _momentum;
    private readonly float[] _squareAverage;
    private readonly float[] _momentumBuffer;

    /// <summary>Creates the optimizer; see <see cref="Optimizer.Create"/> for the arguments and exceptions.</summary>
    public RMSProp(OptimizerOptions options, int length, IReadOnlyList<ParameterGroupRange>? groups = null)
        : base(options, length, groups, decoupledWeightDecay: false)
    {
        _alpha = (float)options.Alpha;
        _oneMinusAlpha = (float)(1 - options.Alpha); // in double first, as PyTorch's Python floats
        _epsilon = (float)options.Epsilon;
        _momentum = (float)options.Momentum;
        _squareAverage = new float[length];
        _momentumBuffer = _momentum != 0f ? new float[length] : [];
        State = _momentum != 0f ? [("square_avg", _squareAverage), ("momentum_buffer", _momentumBuffer)] : [("square_avg", _squareAverage)];
    }

    /// <inheritdoc />
    public override IReadOnlyList<(string Name, float[] Values)> State { get; }

    private protected override void UpdateBlock(Span<float> weights, Span<float> gradient, int offset, float learningRate)
    {
        var s = _squareAverage.AsSpan(offset, weights.Length);
        var scratch = Scratch.AsSpan(0, weights.Length);
        TensorPrimitives.Multiply(s, _alpha, s);
        TensorPrimitives.Multiply(gradient, gradient, scratch);
        TensorPrimitives.MultiplyAdd(scratch, _oneMinusAlpha, s, s);
        TensorPrimitives.Sqrt(s, scratch);
        TensorPrimitives.Add(scratch, _epsilon, scratch);
        TensorPrimitives.Divide(gradient, scratch, scratch);
        if (_momentum != 0f)
        {
            var b = _momentumBuffer.AsSpan(offset, weights.Length);
            TensorPrimitives.MultiplyAdd(b, _momentum, scratch, b);
            scratch = b;
        }
        TensorPrimitives.MultiplyAdd(scratch, -learningRate, weights, weights);
    }
}
