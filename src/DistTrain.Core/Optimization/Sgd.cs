using System.Numerics.Tensors;

namespace DistTrain.Core.Optimization;

/// <summary>Stochastic gradient descent with momentum or Nesterov momentum, as <c>torch.optim.SGD</c> with dampening 0.</summary>
/// <remarks>
/// Per element, after the averaging and regularization of <see cref="Optimizer"/>: with momentum μ,
/// <c>v ← μ v + g</c>, then <c>w ← w − η v</c>, or with Nesterov <c>w ← w − η (g + μ v)</c> (Sutskever et al.
/// 2013 as PyTorch writes it); without momentum <c>w ← w − η g</c>. The buffer starts at zero, so the first
/// step has <c>v = g</c>, as PyTorch's first step clones the gradient.
/// </remarks>
public sealed class Sgd : Optimizer
{
    private readonly float _momentum;
    private readonly bool _nesterov;
    private readonly float[] _velocity;

    /// <summary>Creates the optimizer; see <see cref="Optimizer.Create"/> for the arguments and exceptions.</summary>
    public Sgd(OptimizerOptions options, int length, IReadOnlyList<ParameterGroupRange>? groups = null)
        : base(options, length, groups, decoupledWeightDecay: false)
    {
        _momentum = (float)options.Momentum;
        _nesterov = options.Nesterov;
        _velocity = _momentum != 0f ? new float[length] : [];
        State = _momentum != 0f ? [("momentum_buffer", _velocity)] : [];
    }

    /// <summary>Velocity <c>v</c> (<c>momentum_buffer</c>, <see cref="Optimizer.Length"/> floats), or empty without momentum.</summary>
    public float[] MomentumBuffer => _velocity;

    /// <inheritdoc />
    public override IReadOnlyList<(string Name, float[] Values)> State { get; }

    private protected override void UpdateBlock(Span<float> weights, Span<float> gradient, int offset, float learningRate)
    {
        var step = gradient;
        if (_momentum != 0f)
        {
            var v = _velocity.AsSpan(offset, weights.Length);
            TensorPrimitives.MultiplyAdd(v, _momentum, gradient, v);
            if (_nesterov) TensorPrimitives.MultiplyAdd(v, _momentum, gradient, gradient);
            else step = v;
        }
        TensorPrimitives.MultiplyAdd(step, -learningRate, weights, weights);
    }
}
