using System.Numerics.Tensors;
using MathNet.Numerics.LinearAlgebra;
using DistTrain.Core.LinearAlgebra;

namespace DistTrain.Core.Layers;

/// <summary>
/// Fully connected layer <c>Y = W X + b</c>, as PyTorch's <c>torch.nn.Linear</c>.
/// </summary>
/// <remarks>
/// <para>Shapes: input <c>[in_features, batch]</c>, output <c>[out_features, batch]</c>;
/// <c>weight</c> is <c>[out_features, in_features]</c> row-major and <c>bias</c> is <c>[out_features]</c>,
/// the same tensors and layout as PyTorch's <c>state_dict</c>.</para>
/// <para>A row-major <c>[out, in]</c> array is, read column-major, the matrix <c>Wᵀ</c> of shape
/// <c>[in, out]</c>. The layer keeps that view, so forward is <c>Y = (Wᵀ)ᵀ X</c>, the weight
/// gradient is <c>dWᵀ = X dYᵀ</c> and the input gradient is <c>dX = Wᵀ dY</c>, with no copies.</para>
/// </remarks>
public sealed class Dense : ILayer
{
    private readonly Matrix<float> _weightTransposed;       // [in, out], bound to Weight.Value
    private readonly Matrix<float> _weightGradientTransposed; // [in, out], bound to Weight.Gradient
    private readonly MatrixBuffer _output;
    private readonly MatrixBuffer _inputGradient;
    private Matrix<float>? _input;

    /// <summary>Creates a dense layer with zero weights; initialize them through <see cref="Parameters"/>.</summary>
    /// <param name="inFeatures">Input features per sample.</param>
    /// <param name="outFeatures">Output features per sample.</param>
    /// <param name="bias">False for no bias (PyTorch's <c>bias=False</c>), as before a BatchNorm.</param>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive.</exception>
    public Dense(int inFeatures, int outFeatures, bool bias = true)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inFeatures);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(outFeatures);
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Weight = new LayerParameter("weight", [outFeatures, inFeatures], fanIn: inFeatures, fanOut: outFeatures);
        Bias = new LayerParameter("bias", [outFeatures], fanIn: inFeatures, fanOut: outFeatures);
        HasBias = bias;
        Parameters = bias ? [Weight, Bias] : [Weight];
        _weightTransposed = Matrix<float>.Build.Dense(inFeatures, outFeatures, Weight.Value);
        _weightGradientTransposed = Matrix<float>.Build.Dense(inFeatures, outFeatures, Weight.Gradient);
        _output = new MatrixBuffer(outFeatures);
        _inputGradient = new MatrixBuffer(inFeatures);
    }

    /// <summary>Input features per sample.</summary>
    public int InFeatures { get; }

    /// <summary>Output features per sample.</summary>
    public int OutFeatures { get; }

    /// <summary>Weight <c>[out_features, in_features]</c>.</summary>
    public LayerParameter Weight { get; }

    /// <summary>Bias <c>[out_features]</c>; stays zero and is not a parameter when <see cref="HasBias"/> is false.</summary>
    public LayerParameter Bias { get; }

    /// <summary>True when the layer has a trainable bias.</summary>
    public bool HasBias { get; }

    /// <inheritdoc />
    public string Description => $"Dense({InFeatures}→{OutFeatures})";

    /// <inheritdoc />
    public IReadOnlyList<LayerParameter> Parameters { get; }

    /// <inheritdoc />
    public TensorShape OutputShape(TensorShape input) =>
        input.Size == InFeatures
            ? TensorShape.Flat(OutFeatures)
            : throw new ArgumentException($"{Description} expects {InFeatures} input features but receives {input} = {input.Size}.");

    /// <inheritdoc />
    public Matrix<float> Forward(Matrix<float> input)
    {
        if (input.RowCount != InFeatures)
            throw new ArgumentException($"{Description} expects {InFeatures} input rows but receives {input.RowCount}.");
        _input = input;
        var output = _output.Get(input.ColumnCount);
        Blas.Gemm(Operation.Transpose, Operation.None, 1f, _weightTransposed, input, 0f, output);
        var values = output.ColumnMajorValues();
        for (var column = 0; column < output.ColumnCount; column++)
        {
            var span = values.AsSpan(column * OutFeatures, OutFeatures);
            TensorPrimitives.Add(span, Bias.Value, span);
        }
        return output;
    }

    /// <inheritdoc />
    public Matrix<float>? Backward(Matrix<float> outputGradient, bool needInputGradient = true)
    {
        var input = _input ?? throw new InvalidOperationException($"{Description}: Backward called before Forward.");
        LayerChecks.OutputGradient(this, OutFeatures, input.ColumnCount, outputGradient);
        if (!Weight.Frozen)
            Blas.Gemm(Operation.None, Operation.Transpose, 1f, input, outputGradient, 0f, _weightGradientTransposed);
        if (HasBias && !Bias.Frozen)
        {
            var gradientValues = outputGradient.ColumnMajorValues();
            var biasGradient = Bias.Gradient.AsSpan();
            biasGradient.Clear();
            for (var column = 0; column < outputGradient.ColumnCount; column++)
                TensorPrimitives.Add(biasGradient, gradientValues.AsSpan(column * OutFeatures, OutFeatures), biasGradient);
        }
        if (!needInputGradient) return null;
        var inputGradient = _inputGradient.Get(outputGradient.ColumnCount);
        Blas.Gemm(Operation.None, Operation.None, 1f, _weightTransposed, outputGradient, 0f, inputGradient);
        return inputGradient;
    }
}
