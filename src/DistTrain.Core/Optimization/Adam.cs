using System.Numerics.Tensors;

namespace DistTrain.Core.Optimization;

/// <summary>Adam (Kingma &amp; Ba 2015, "Adam: A Method for Stochastic Optimization"), as <c>torch.optim.Adam</c> without AMSGrad.</summary>
/// <remarks>
/// Per element at step t (from 1), after the averaging and regularization of <see cref="Optimizer"/> (L2 is
/// coupled: added to the gradient): <c>m ← β₁ m + (1 − β₁) g</c>; <c>v ← β₂ v + (1 − β₂) g²</c>;
/// <c>w ← w − (η / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)</c>, in PyTorch's order of operations.
/// </remarks>
public class Adam : Optimizer
{
    private readonly float _beta1;
    private readonly float _beta2;
    private readonly float _oneMinusBeta1;
    private readonly float _oneMinusBeta2;
    private readonly float _epsilon;
    private readonly float[] _expAvg;
    private readonly float[] _expAvgSq;
    private float _stepSize;
    private float _biasCorrection2Sqrt;

    /// <summary>Creates the optimizer; see <see cref="Optimizer.Create"/> for the arguments and exceptions.</summary>
    public Adam(OptimizerOptions options, int length, IReadOnlyList<ParameterGroupRange>? groups = null)
        : this(options, length, groups, decoupledWeightDecay: false) { }

    private protected Adam(OptimizerOptions options, int length, IReadOnlyList<ParameterGroupRange>? groups, bool decoupledWeightDecay)
        : base(options, length, groups, decoupledWeightDecay)
    {
        _beta1 = (float)options.Beta1;
        _beta2 = (float)options.Beta2;
        _oneMinusBeta1 = (float)(1 - options.Beta1); // in double first, as PyTorch's Python floats
        _oneMinusBeta2 = (float)(1 - options.Beta2);
        _epsilon = (float)options.Epsilon;
        _expAvg = new float[length];
        _expAvgSq = new float[length];
        State = [("exp_avg", _expAvg), ("exp_avg_sq", _expAvgSq)];
    }

    /// <inheritdoc />
    public override IReadOnlyList<(string Name, float[] Values)> State { get; }

    private protected override void BeginStep(long step, float learningRate)
    {
        // PyTorch forms these in double (Python floats) and applies them as float32 scalars.
        var biasCorrection1 = 1 - Math.Pow(Options.Beta1, step);
        var biasCorrection2 = 1 - Math.Pow(Options.Beta2, step);
        _stepSize = (float)(learningRate / biasCorrection1);
        _biasCorrection2Sqrt = (float)Math.Sqrt(biasCorrection2);
    }

    private protected override void UpdateBlock(Span<float> weights, Span<float> gradient, int offset, float learningRate)
    {
        var m = _expAvg.AsSpan(offset, weights.Length);
        var v = _expAvgSq.AsSpan(offset, weights.Length);
        var denominator = Scratch.AsSpan(0, weights.Length);
        TensorPrimitives.Multiply(m, _beta1, m);
        TensorPrimitives.MultiplyAdd(gradient, _oneMinusBeta1, m, m);
        TensorPrimitives.Multiply(v, _beta2, v);
        TensorPrimitives.Multiply(gradient, gradient, denominator);
        TensorPrimitives.MultiplyAdd(denominator, _oneMinusBeta2, v, v);
        TensorPrimitives.Sqrt(v, denominator);
        TensorPrimitives.Divide(denominator, _biasCorrection2Sqrt, denominator);
        TensorPrimitives.Add(denominator, _epsilon, denominator);
        TensorPrimitives.Divide(m, denominator, denominator);
        TensorPrimitives.MultiplyAdd(denominator, -_stepSize, weights, weights);
    }
}

/// <summary>
/// AdamW (Loshchilov &amp; Hutter 2019, "Decoupled Weight Decay Regularization"), as <c>torch.optim.AdamW</c>:
/// <see cref="OptimizerOptions.L2"/> decays the weights, <c>w ← w (1 − η λ₂)</c>, before the <see cref="Adam"/>
/// step, instead of entering the gradient and its moment estimates.
/// </summary>
public sealed class AdamW : Adam
{
    /// <summary>Creates the optimizer; see <see cref="Optimizer.Create"/> for the arguments and exceptions.</summary>
    public AdamW(OptimizerOptions options, int length, IReadOnlyList<ParameterGroupRange>? groups = null)
        : base(options, length, groups, decoupledWeightDecay: true) { }
}
