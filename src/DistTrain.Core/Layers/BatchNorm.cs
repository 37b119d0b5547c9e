using System.Numerics.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Core.Layers;

/// <summary>
/// Batch normalization (Ioffe &amp; Szegedy, 2015) per channel, as PyTorch's <c>BatchNorm2d</c> on image inputs
/// <c>[C, H, W]</c> (statistics over batch and positions; 1x1 feature maps <c>[C, 1, 1]</c> included, whose statistics
/// are over the batch alone) and <c>BatchNorm1d</c> on flat inputs <c>[F]</c> (statistics over the batch, one per feature).
/// </summary>
/// <remarks>
/// <para>Training mode: <c>y = γ (x − μ_B) / √(σ²_B + ε) + β</c> with the minibatch mean and biased variance, and
/// the running statistics move as PyTorch's: <c>running_mean ← (1 − m)·running_mean + m·μ_B</c>,
/// <c>running_var ← (1 − m)·running_var + m·σ²_B·N/(N − 1)</c> (unbiased), momentum m = 0.1 by default.
/// Evaluation mode uses the running statistics.</para>
/// <para>Tensors, named as PyTorch's <c>state_dict</c>: <c>weight</c> (γ) and <c>bias</c> (β) <c>[C]</c>,
/// <c>running_mean</c> and <c>running_var</c> <c>[C]</c>. PyTorch's <c>num_batches_tracked</c> is not kept: it
/// only matters when momentum is None.</para>
/// <para>In data-parallel training every replica normalizes with the statistics of its own minibatch, as PyTorch
/// DDP does without SyncBatchNorm. See docs/architecture.md for how the replicas' running statistics are merged.</para>
/// <para>When γ and β are frozen (transfer learning) the layer stays in evaluation mode, so its running statistics
/// stay those of the pretrained model.</para>
/// </remarks>
public sealed class BatchNorm : ILayer
{
    private readonly MatrixBuffer _output;
    private readonly MatrixBuffer _normalized;    // x̂, kept for backward
    private readonly MatrixBuffer _inputGradient;
    private readonly float[] _mean;
    private readonly float[] _inverseDeviation;   // 1 / √(σ² + ε), of the batch or the running statistics
    private readonly float[] _sum;
    private readonly float[] _sumProduct;
    private bool _training = true;
    private bool _forwardTraining;
    private Matrix<float>? _input;

    /// <summary>Creates the layer with γ = 1, β = 0, running mean 0 and running variance 1.</summary>
    /// <param name="input">Shape of one input sample; statistics are per <see cref="TensorShape.Channels"/>.</param>
    /// <param name="momentum">Weight m of the newest batch in the running statistics, in (0, 1]. PyTorch's default 0.1.</param>
    /// <param name="epsilon">ε added to the variance, &gt; 0. PyTorch's default 1e-5.</param>
    /// <exception cref="ArgumentException">A setting is out of range.</exception>
    public BatchNorm(TensorShape input, double momentum = 0.1, double epsilon = 1e-5)
    {
        if (!(momentum > 0 && momentum <= 1) || !(epsilon > 0))
            throw new ArgumentException($"BatchNorm needs momentum in (0, 1] (got {momentum}) and epsilon > 0 (got {epsilon}).");
        Input = input;
        Momentum = (float)momentum;
        Epsilon = (float)epsilon;
        var channels = input.Channels;
        Weight = new LayerParameter("weight", [channels], channels, channels, ParameterRole.NormScale);
        Bias = new LayerParameter("bias", [channels], channels, channels, ParameterRole.NormShift);
        RunningMean = new LayerParameter("running_mean", [channels], channels, channels, ParameterRole.RunningStatistic);
        RunningVariance = new LayerParameter("running_var", [channels], channels, channels, ParameterRole.RunningStatistic);
        Weight.Value.AsSpan().Fill(1f);
        RunningVariance.Value.AsSpan().Fill(1f);
        Parameters = [Weight, Bias, RunningMean, RunningVariance];
        _output = new MatrixBuffer(input.Size);
        _normalized = new MatrixBuffer(input.Size);
        _inputGradient = new MatrixBuffer(input.Size);
        _mean = new float[channels];
        _inverseDeviation = new float[channels];
        _sum = new float[input.Size];
        _sumProduct = new float[input.Size];
    }

    /// <summary>Shape of one sample (input and output).</summary>
    public TensorShape Input { get; }

    /// <summary>Weight of the newest batch in the running statistics.</summary>
    public float Momentum { get; }

    /// <summary>ε added to the variance.</summary>
    public float Epsilon { get; }

    /// <summary>Scale γ <c>[C]</c>.</summary>
    public LayerParameter Weight { get; }

    /// <summary>Shift β <c>[C]</c>.</summary>
    public LayerParameter Bias { get; }

    /// <summary>Running mean <c>[C]</c>.</summary>
    public LayerParameter RunningMean { get; }

    /// <summary>Running (unbiased) variance <c>[C]</c>.</summary>
    public LayerParameter RunningVariance { get; }

    /// <inheritdoc />
    public string Description => $"BatchNorm({Input.Channels})";

    /// <inheritdoc />
    public IReadOnlyList<LayerParameter> Parameters { get; }

    /// <inheritdoc />
    public TensorShape OutputShape(TensorShape input) =>
        LayerChecks.Fitting(this, Input, input, input);

    /// <inheritdoc />
    public void SetTraining(bool training) => _training = training;

    /// <inheritdoc />
    /// <remarks>Two buffers of the output's size: the output and the normalized input x̂ kept for backward.</remarks>
    public long ForwardBytesPerSample(TensorShape input) => 2L * sizeof(float) * OutputShape(input).Size;

    /// <inheritdoc />
    public Matrix<float> Forward(Matrix<float> input)
    {
        LayerChecks.Input(this, Input, input);
        _input = input;
        var batch = input.ColumnCount;
        // Frozen (transfer learning): evaluation mode. One value per channel (a 1-sample batch after a Dense layer)
        // has no variance; PyTorch raises there, this layer normalizes that batch with the running statistics.
        _forwardTraining = _training && !Weight.Frozen && (long)input.ColumnCount * Input.Positions > 1;
        var x = input.ColumnMajorValues();
        var output = _output.Get(batch);
        var normalized = _normalized.Get(batch);
        var xhat = normalized.ColumnMajorValues();
        var count = (double)batch * Input.Positions;
        if (_forwardTraining)
        {
            ChannelSums(x, null, batch, _sum);
            for (var c = 0; c < Input.Channels; c++) _mean[c] = (float)(_sum[c] / count);
            // Two passes: the variance of (x − μ), not E[x²] − μ², which loses digits when |μ| ≫ σ.
            Center(x, xhat, batch);
            ChannelSums(xhat, xhat, batch, _sumProduct);
            for (var c = 0; c < Input.Channels; c++)
            {
                var variance = _sumProduct[c] / count;
                _inverseDeviation[c] = (float)(1 / Math.Sqrt(variance + Epsilon));
                RunningMean.Value[c] = (1 - Momentum) * RunningMean.Value[c] + Momentum * _mean[c];
                RunningVariance.Value[c] = (float)((1 - Momentum) * RunningVariance.Value[c] + Momentum * variance * count / (count - 1));
            }
        }
        else
        {
            for (var c = 0; c < Input.Channels; c++)
            {
                _mean[c] = RunningMean.Value[c];
                _inverseDeviation[c] = 1 / MathF.Sqrt(RunningVariance.Value[c] + Epsilon);
            }
            Center(x, xhat, batch);
        }
        var y = output.ColumnMajorValues();
        var positions = Input.Positions;
        for (var sample = 0; sample < batch; sample++)
            for (var c = 0; c < Input.Channels; c++)
            {
                var offset = sample * Input.Size + c * positions;
                var run = xhat.AsSpan(offset, positions);
                TensorPrimitives.Multiply(run, _inverseDeviation[c], run);
                var target = y.AsSpan(offset, positions);
                TensorPrimitives.Multiply(run, Weight.Value[c], target);
                TensorPrimitives.Add(target, Bias.Value[c], target);
            }
        return output;
    }

    /// <inheritdoc />
    public Matrix<float>? Backward(Matrix<float> outputGradient, bool needInputGradient = true)
    {
        var input = _input ?? throw new InvalidOperationException($"{Description}: Backward called before Forward.");
        var batch = input.ColumnCount;
        LayerChecks.OutputGradient(this, Input.Size, batch, outputGradient);
        var dy = outputGradient.ColumnMajorValues();
        var xhat = _normalized.Get(batch).ColumnMajorValues();
        ChannelSums(dy, null, batch, _sum);          // Σ dy = dβ
        ChannelSums(dy, xhat, batch, _sumProduct);   // Σ dy·x̂ = dγ
        if (!Weight.Frozen) _sumProduct.AsSpan(0, Input.Channels).CopyTo(Weight.Gradient);
        if (!Bias.Frozen) _sum.AsSpan(0, Input.Channels).CopyTo(Bias.Gradient);
        if (!needInputGradient) return null;
        var inputGradient = _inputGradient.Get(batch);
        var dx = inputGradient.ColumnMajorValues();
        var positions = Input.Positions;
        var count = (float)batch * positions;
        for (var sample = 0; sample < batch; sample++)
            for (var c = 0; c < Input.Channels; c++)
            {
                var offset = sample * Input.Size + c * positions;
                var scale = Weight.Value[c] * _inverseDeviation[c];
                var target = dx.AsSpan(offset, positions);
                if (_forwardTraining)
                {
                    // dx = γ/σ · (dy − mean(dy) − x̂·mean(dy·x̂)), the batch statistics' own gradient included.
                    TensorPrimitives.MultiplyAdd(xhat.AsSpan(offset, positions), -_sumProduct[c] / count, dy.AsSpan(offset, positions), target);
                    TensorPrimitives.Add(target, -_sum[c] / count, target);
                    TensorPrimitives.Multiply(target, scale, target);
                }
                else
                    TensorPrimitives.Multiply(dy.AsSpan(offset, positions), scale, target);
            }
        return inputGradient;
    }

    /// <summary>Per channel, <c>Σ a</c> (b null) or <c>Σ a·b</c> over samples and positions, into <paramref name="sums"/>[0..C).</summary>
    private void ChannelSums(float[] a, float[]? b, int batch, float[] sums)
    {
        var positions = Input.Positions;
        Array.Clear(sums);
        if (positions == 1)
        {
            // Flat input: one feature per channel; add whole columns (vectorized across features).
            for (var sample = 0; sample < batch; sample++)
            {
                var column = a.AsSpan(sample * Input.Size, Input.Size);
                if (b is null) TensorPrimitives.Add(sums, column, sums);
                else TensorPrimitives.MultiplyAdd(column, b.AsSpan(sample * Input.Size, Input.Size), sums, sums);
            }
            return;
        }
        for (var sample = 0; sample < batch; sample++)
            for (var c = 0; c < Input.Channels; c++)
            {
                var offset = sample * Input.Size + c * positions;
                sums[c] += b is null
                    ? TensorPrimitives.Sum(a.AsSpan(offset, positions))
                    : TensorPrimitives.Dot(a.AsSpan(offset, positions), b.AsSpan(offset, positions));
            }
    }

    /// <summary>Writes <c>x − μ_c</c> into <paramref name="centered"/>.</summary>
    private void Center(float[] x, float[] centered, int batch)
    {
        var positions = Input.Positions;
        for (var sample = 0; sample < batch; sample++)
            for (var c = 0; c < Input.Channels; c++)
            {
                var offset = sample * Input.Size + c * positions;
                TensorPrimitives.Subtract(x.AsSpan(offset, positions), _mean[c], centered.AsSpan(offset, positions));
            }
    }
}
