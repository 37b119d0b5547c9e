using System.Numerics.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Core.Layers;

/// <summary>
/// Layer normalization (Ba, Kiros &amp; Hinton, 2016) over all features of each sample, as PyTorch's
/// <c>torch.nn.LayerNorm(normalized_shape = the sample's shape)</c>:
/// <c>y = (x − μ) / √(σ² + ε) ⊙ weight + bias</c> with the sample's mean and biased variance. The same in training
/// and evaluation; no running statistics.
/// </summary>
/// <remarks>Shapes: input and output <c>[F, batch]</c>; <c>weight</c> and <c>bias</c> have the sample's shape
/// (<c>[C, H, W]</c>, <c>[C, 1, 1]</c> on 1x1 feature maps, or <c>[F]</c> when flat), as in PyTorch's <c>state_dict</c>.</remarks>
public sealed class LayerNorm : ILayer
{
    private readonly MatrixBuffer _output;
    private readonly MatrixBuffer _normalized;
    private readonly MatrixBuffer _inputGradient;
    private readonly float[] _scratch;
    private float[] _inverseDeviation = [];
    private Matrix<float>? _input;

    /// <summary>Creates the layer with weight 1 and bias 0.</summary>
    /// <param name="input">Shape of one sample.</param>
    /// <param name="epsilon">ε added to the variance, &gt; 0. PyTorch's default 1e-5.</param>
    /// <exception cref="ArgumentException">ε is not positive.</exception>
    public LayerNorm(TensorShape input, double epsilon = 1e-5)
    {
        if (!(epsilon > 0)) throw new ArgumentException($"LayerNorm needs epsilon > 0 (got {epsilon}).");
        Input = input;
        Epsilon = (float)epsilon;
        Weight = new LayerParameter("weight", input.Dimensions, input.Size, input.Size, ParameterRole.NormScale);
        Bias = new LayerParameter("bias", input.Dimensions, input.Size, input.Size, ParameterRole.NormShift);
        Weight.Value.AsSpan().Fill(1f);
        Parameters = [Weight, Bias];
        _output = new MatrixBuffer(input.Size);
        _normalized = new MatrixBuffer(input.Size);
        _inputGradient = new MatrixBuffer(input.Size);
        _scratch = new float[input.Size];
    }

    /// <summary>Shape of one sample (input and output).</summary>
    public TensorShape Input { get; }

    /// <summary>ε added to the variance.</summary>
    public float Epsilon { get; }

    /// <summary>Element-wise scale, the sample's shape.</summary>
    public LayerParameter Weight { get; }

    /// <summary>Element-wise shift, the sample's shape.</summary>
    public LayerParameter Bias { get; }

    /// <inheritdoc />
    public string Description => $"LayerNorm({Input})";

    /// <inheritdoc />
    public IReadOnlyList<LayerParameter> Parameters { get; }

    /// <inheritdoc />
    public TensorShape OutputShape(TensorShape input) =>
        LayerChecks.Fitting(this, Input, input, input);

    /// <inheritdoc />
    /// <remarks>Two buffers of the output's size: the output and the normalized input x̂ kept for backward.</remarks>
    public long ForwardBytesPerSample(TensorShape input) => 2L * sizeof(float) * OutputShape(input).Size;

    /// <inheritdoc />
    public Matrix<float> Forward(Matrix<float> input)
    {
        LayerChecks.Input(this, Input, input);
        _input = input;
        var batch = input.ColumnCount;
        if (_inverseDeviation.Length < batch) _inverseDeviation = new float[batch];
        var x = input.ColumnMajorValues();
        var xhat = _normalized.Get(batch).ColumnMajorValues();
        var output = _output.Get(batch);
        var y = output.ColumnMajorValues();
        var size = Input.Size;
        for (var sample = 0; sample < batch; sample++)
        {
            var column = x.AsSpan(sample * size, size);
            var normalized = xhat.AsSpan(sample * size, size);
            var mean = TensorPrimitives.Sum(column) / size;
            TensorPrimitives.Subtract(column, mean, normalized);
            var variance = TensorPrimitives.Dot(normalized, normalized) / size;
            var inverse = 1 / MathF.Sqrt(variance + Epsilon);
            _inverseDeviation[sample] = inverse;
            TensorPrimitives.Multiply(normalized, inverse, normalized);
            TensorPrimitives.MultiplyAdd(normalized, Weight.Value, Bias.Value, y.AsSpan(sample * size, size));
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
        var size = Input.Size;
        if (!Weight.Frozen) Array.Clear(Weight.Gradient);
        if (!Bias.Frozen) Array.Clear(Bias.Gradient);
        var inputGradient = needInputGradient ? _inputGradient.Get(batch) : null;
        var dx = inputGradient?.ColumnMajorValues();
        for (var sample = 0; sample < batch; sample++)
        {
            var g = dy.AsSpan(sample * size, size);
            var normalized = xhat.AsSpan(sample * size, size);
            if (!Weight.Frozen) TensorPrimitives.MultiplyAdd(g, normalized, Weight.Gradient, Weight.Gradient);
            if (!Bias.Frozen) TensorPrimitives.Add(Bias.Gradient, g, Bias.Gradient);
            if (dx is null) continue;
            // dx̂ = dy ⊙ weight; dx = (dx̂ − mean(dx̂) − x̂·mean(dx̂ ⊙ x̂)) / σ.
            var dxhat = _scratch.AsSpan();
            TensorPrimitives.Multiply(g, Weight.Value, dxhat);
            var meanGradient = TensorPrimitives.Sum(dxhat) / size;
            var meanProduct = TensorPrimitives.Dot(dxhat, normalized) / size;
            var target = dx.AsSpan(sample * size, size);
            TensorPrimitives.MultiplyAdd(normalized, -meanProduct, dxhat, target);
            TensorPrimitives.Add(target, -meanGradient, target);
            TensorPrimitives.Multiply(target, _inverseDeviation[sample], target);
        }
        return inputGradient;
    }
}
