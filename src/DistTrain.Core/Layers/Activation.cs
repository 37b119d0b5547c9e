using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Core.Layers;

/// <summary>
/// Base of element-wise activations: the output has the input's shape <c>[features, batch]</c>
/// and there are no parameters.
/// </summary>
public abstract class Activation : ILayer
{
    private MatrixBuffer? _output;
    private MatrixBuffer? _inputGradient;
    private Matrix<float>? _input;
    private Matrix<float>? _lastOutput;

    /// <inheritdoc />
    public abstract string Description { get; }

    /// <inheritdoc />
    public IReadOnlyList<LayerParameter> Parameters => [];

    /// <inheritdoc />
    public TensorShape OutputShape(TensorShape input) => input;

    /// <inheritdoc />
    public Matrix<float> Forward(Matrix<float> input)
    {
        var output = MatrixBuffer.Like(ref _output, input);
        Apply(input.ColumnMajorValues(), output.ColumnMajorValues());
        _input = input;
        _lastOutput = output;
        return output;
    }

    /// <inheritdoc />
    public Matrix<float>? Backward(Matrix<float> outputGradient, bool needInputGradient = true)
    {
        if (!needInputGradient) return null;
        if (_input is null || _lastOutput is null)
            throw new InvalidOperationException($"{Description}: Backward called before Forward.");
        LayerChecks.OutputGradient(this, _input.RowCount, _input.ColumnCount, outputGradient);
        var inputGradient = MatrixBuffer.Like(ref _inputGradient, outputGradient);
        Derivative(_input.ColumnMajorValues(), _lastOutput.ColumnMajorValues(), outputGradient.ColumnMajorValues(),
            inputGradient.ColumnMajorValues());
        return inputGradient;
    }

    /// <summary>Writes <c>f(x)</c> element-wise into <paramref name="output"/>.</summary>
    protected abstract void Apply(ReadOnlySpan<float> input, Span<float> output);

    /// <summary>Writes <c>dL/dx = dL/dy · f'(x)</c>, given x, y = f(x) and dL/dy.</summary>
    protected abstract void Derivative(ReadOnlySpan<float> input, ReadOnlySpan<float> output,
        ReadOnlySpan<float> outputGradient, Span<float> inputGradient);
}
