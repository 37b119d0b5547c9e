using System.Numerics.Tensors;

namespace DistTrain.Core.Optimization;

/// <summary>
/// An update rule over the flat parameter vector, applied once per synchronous step at the parameter server,
/// with its per-parameter state (as a <c>torch.optim.Optimizer</c> over one tensor).
/// </summary>
/// <remarks>
/// Each step, per block of at most <see cref="BlockLength"/> elements that lies inside one parameter group:
/// the weighted average of the workers' gradients; then, for a decayed group, L1 (<c>g ← g + λ₁ sign(w)</c>) and
/// coupled L2 (<c>g ← g + λ₂ w</c>, PyTorch's <c>weight_decay</c>) or, for AdamW, decoupled decay
/// (<c>w ← w (1 − η λ₂)</c>); then the rule's own update of the weights and its state. All of it runs while the
/// block sits in the L1 cache, so every input is read from memory once; the arithmetic is SIMD through
/// <c>TensorPrimitives</c>, and a step allocates nothing.
/// </remarks>
public abstract class Optimizer
{
    /// <summary>Elements per block: 4,096 floats = 16 KB, a fraction of any L1 data cache.</summary>
    public const int BlockLength = 4096;

    private readonly Block[] _blocks;
    private readonly float[] _average = new float[BlockLength];
    private readonly float[][] _single = new float[1][];
    private readonly float[] _one = [1f];
    private readonly float _l1;
    private readonly float _l2;
    private readonly bool _decoupled;
    private long _stepCount;

    /// <summary>Scratch of <see cref="BlockLength"/> floats a rule may overwrite inside <see cref="UpdateBlock"/>.</summary>
    private protected float[] Scratch { get; } = new float[BlockLength];

    private readonly record struct Block(int Start, int Length, bool Decay);

    /// <summary>Validates the settings and lays out the blocks.</summary>
    /// <param name="options">Settings; validated here (see <see cref="OptimizerOptions.Problems"/>).</param>
    /// <param name="length">Parameters updated: the trainable prefix <c>[0, length)</c> of the flat vector.</param>
    /// <param name="groups">Ranges that partition <c>[0, length)</c> in order; null is one decayed group.</param>
    /// <param name="decoupledWeightDecay">True for AdamW: L2 decays the weights, not the gradient.</param>
    /// <exception cref="ArgumentOutOfRangeException">A setting is outside its range (the message names the option and the allowed range), or <paramref name="length"/> is negative.</exception>
    /// <exception cref="ArgumentException">The groups do not partition <c>[0, length)</c> in order.</exception>
    private protected Optimizer(OptimizerOptions options, int length, IReadOnlyList<ParameterGroupRange>? groups, bool decoupledWeightDecay)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        var problems = options.Problems();
        if (problems.Count > 0) throw new ArgumentOutOfRangeException(nameof(options), string.Join(" ", problems));
        Options = options;
        Length = length;
        _l1 = (float)options.L1;
        _l2 = (float)options.L2;
        _decoupled = decoupledWeightDecay;
        _blocks = LayOutBlocks(length, groups ?? [new ParameterGroupRange(0, length, Decay: true)]);
    }

    /// <summary>
    /// Creates the optimizer <see cref="OptimizerOptions.Kind"/> names, with zeroed state for <paramref name="length"/> parameters.
    /// </summary>
    /// <param name="options">Settings.</param>
    /// <param name="length">Parameters updated: the trainable prefix of the flat vector, in elements.</param>
    /// <param name="groups">Ranges that partition <c>[0, length)</c> in order (see <see cref="ParameterGroups.Ranges"/>); null is one decayed group.</param>
    /// <exception cref="ArgumentOutOfRangeException">A setting is outside its range (the message names the option and the allowed range), or <paramref name="length"/> is negative.</exception>
    /// <exception cref="ArgumentException">The groups do not partition <c>[0, length)</c> in order.</exception>
    public static Optimizer Create(OptimizerOptions options, int length, IReadOnlyList<ParameterGroupRange>? groups = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Kind switch
        {
            OptimizerKind.Sgd => new Sgd(options, length, groups),
            OptimizerKind.Adam => new Adam(options, length, groups),
            OptimizerKind.AdamW => new AdamW(options, length, groups),
            OptimizerKind.RMSProp => new RMSProp(options, length, groups),
            _ => throw new ArgumentOutOfRangeException(nameof(options), options.Kind,
                $"Optimizer:Kind = {(int)options.Kind} is unknown: allowed {string.Join(", ", Enum.GetNames<OptimizerKind>())}."),
        };
    }

    /// <summary>The settings, read at construction.</summary>
    public OptimizerOptions Options { get; }

    /// <summary>Parameters updated: the trainable prefix <c>[0, Length)</c> of the weights and gradients.</summary>
    public int Length { get; }

    /// <summary>
    /// Steps taken, PyTorch's <c>state['step']</c> (Adam's bias correction uses it). It counts every call of
    /// <see cref="StepWeightedAverage"/> that got past argument checks. Set it, with <see cref="State"/>'s values,
    /// when restoring from a checkpoint.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Set to a negative value.</exception>
    public long StepCount
    {
        get => _stepCount;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            _stepCount = value;
        }
    }

    /// <summary>
    /// The per-parameter state, named as in PyTorch's <c>state_dict</c> (<c>momentum_buffer</c>, <c>exp_avg</c>,
    /// <c>exp_avg_sq</c>, <c>square_avg</c>), each <see cref="Length"/> floats in layout order. The arrays are the
    /// live state: write them to restore a checkpoint.
    /// </summary>
    public abstract IReadOnlyList<(string Name, float[] Values)> State { get; }

    /// <summary>Applies one update to <paramref name="weights"/> in place from one gradient.</summary>
    /// <param name="weights">The <see cref="Length"/> parameters.</param>
    /// <param name="gradient">At least <see cref="Length"/> elements; only the first <see cref="Length"/> are read.</param>
    /// <param name="learningRate">η of this step, finite and ≥ 0.</param>
    /// <returns>False when the gradient holds NaN or ±Inf (see <see cref="StepWeightedAverage"/>).</returns>
    /// <exception cref="ArgumentException">A length does not fit the optimizer's.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="learningRate"/> is negative or not finite.</exception>
    public bool Step(Span<float> weights, float[] gradient, float learningRate)
    {
        _single[0] = gradient;
        try
        {
            return StepWeightedAverage(weights, _single, _one, learningRate, []);
        }
        finally
        {
            _single[0] = null!;
        }
    }

    /// <summary>
    /// Applies one update from the weighted average <c>Σₖ scalesₖ · gradientsₖ</c> of several gradients (the
    /// parameter server passes <c>nₖ / Σ n</c>), and copies the new weights into <paramref name="copyTo"/> when it
    /// is not empty.
    /// </summary>
    /// <param name="weights">The <see cref="Length"/> parameters, updated in place.</param>
    /// <param name="gradients">One or more gradients of at least <see cref="Length"/> elements each; elements past
    /// <see cref="Length"/> (non-gradient data a message carries after the trainable prefix) are not read.</param>
    /// <param name="scales">One weight per gradient.</param>
    /// <param name="learningRate">η of this step (already scheduled), finite and ≥ 0.</param>
    /// <param name="copyTo">Empty, or <see cref="Length"/> floats that receive the new weights.</param>
    /// <param name="gradientOffset">Where in each gradient array this optimizer's parameters start (a parameter-server
    /// shard reads its slice of the workers' whole reports); 0 by default.</param>
    /// <param name="written">Called after each block's new weights are in <paramref name="copyTo"/>, with the floats of
    /// <paramref name="copyTo"/> written so far from its start (the blocks go in order, so the written part is always a
    /// prefix; the last call gives <see cref="Length"/>); null: no calls. A reader on another thread can copy the prefix on
    /// while the step runs (the cluster's data-plane links do). Not called when <paramref name="copyTo"/> is empty.</param>
    /// <returns>False when the averaged gradient holds NaN or ±Inf. The update then stops at the first bad block,
    /// so the weights and state are partly updated: the caller must stop training and fall back to the last
    /// weights it published.</returns>
    /// <exception cref="ArgumentException">A length does not fit the optimizer's, or the scales do not match the gradients.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="learningRate"/> is negative or not finite, or <paramref name="gradientOffset"/> is negative.</exception>
    public bool StepWeightedAverage(Span<float> weights, ReadOnlySpan<float[]> gradients, ReadOnlySpan<float> scales, float learningRate, Span<float> copyTo,
        int gradientOffset = 0, Action<int>? written = null)
    {
        var length = Length;
        ArgumentOutOfRangeException.ThrowIfNegative(gradientOffset);
        if (weights.Length != length || (copyTo.Length != 0 && copyTo.Length != length) || gradients.Length != scales.Length || gradients.Length == 0)
            throw new ArgumentException($"{GetType().Name} expects {length} parameters and one scale per gradient; got weights {weights.Length}, copy target {copyTo.Length}, {gradients.Length} gradients and {scales.Length} scales.");
        foreach (var gradient in gradients)
            if (gradient.Length < (long)gradientOffset + length)
                throw new ArgumentException($"{GetType().Name} expects gradients of at least {(long)gradientOffset + length} elements, got {gradient.Length}.");
        if (!float.IsFinite(learningRate) || learningRate < 0)
            throw new ArgumentOutOfRangeException(nameof(learningRate), learningRate, "The learning rate must be finite and >= 0.");
        _stepCount++;
        BeginStep(_stepCount, learningRate);
        // AdamW: torch.optim.AdamW multiplies by (1 − lr·weight_decay), computed in double, once per step.
        var keep = (float)(1 - (double)learningRate * _l2);
        foreach (var block in _blocks)
        {
            var (start, count) = (block.Start, block.Length);
            var g = _average.AsSpan(0, count);
            var w = weights.Slice(start, count);
            TensorPrimitives.Multiply(gradients[0].AsSpan(gradientOffset + start, count), scales[0], g);
            for (var k = 1; k < gradients.Length; k++)
                TensorPrimitives.MultiplyAdd(gradients[k].AsSpan(gradientOffset + start, count), scales[k], g, g);
            if (!float.IsFinite(TensorPrimitives.Sum(g))) return false;
            if (block.Decay)
            {
                Regularization.AddToGradient(w, g, _l1, _decoupled ? 0f : _l2);
                if (_decoupled && _l2 != 0f) TensorPrimitives.Multiply(w, keep, w);
            }
            UpdateBlock(w, g, start, learningRate);
            if (copyTo.Length == 0) continue;
            w.CopyTo(copyTo.Slice(start, count));
            written?.Invoke(start + count);
        }
        return true;
    }

    /// <summary>Called once per step before the blocks, with the step's number (from 1) and learning rate; the place for per-step scalars.</summary>
    private protected virtual void BeginStep(long step, float learningRate) { }

    /// <summary>
    /// The rule's update of one block: <paramref name="weights"/> and the state at
    /// <c>[offset, offset + weights.Length)</c> from the regularized averaged <paramref name="gradient"/>, which
    /// the rule may overwrite.
    /// </summary>
    private protected abstract void UpdateBlock(Span<float> weights, Span<float> gradient, int offset, float learningRate);

    private static Block[] LayOutBlocks(int length, IReadOnlyList<ParameterGroupRange> groups)
    {
        var blocks = new List<Block>();
        var next = 0;
        for (var i = 0; i < groups.Count; i++)
        {
            var group = groups[i];
            if (group.Offset != next || group.Length < 0 || (long)group.Offset + group.Length > length)
                throw new ArgumentException(
                    $"Parameter group {i} covers [{group.Offset}, {(long)group.Offset + group.Length}), but the groups must partition [0, {length}) in order: it should start at {next}.",
                    nameof(groups));
            for (var start = group.Offset; start < group.Offset + group.Length; start += BlockLength)
                blocks.Add(new Block(start, Math.Min(BlockLength, group.Offset + group.Length - start), group.Decay));
            next = group.Offset + group.Length;
        }
        if (next != length)
            throw new ArgumentException($"The parameter groups cover [0, {next}), but must cover all {length} parameters.", nameof(groups));
        return [.. blocks];
    }
}
