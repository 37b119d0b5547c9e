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
        _output ??= new MatrixBuffer(input.RowCount);
        var output = _output.Get(input.ColumnCount);
        if (output.RowCount != input.RowCount)
            output = (_output = new MatrixBuffer(input.RowCount)).Get(input.ColumnCount);
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
        if (outputGradient.RowCount != _input.RowCount || outputGradient.ColumnCount != _input.ColumnCount)
            throw new ArgumentException($"{Description}: the output gradient is [{outputGradient.RowCount}, {outputGradient.ColumnCount}] but the forward output was [{_input.RowCount}, {_input.ColumnCount}].");
        _inputGradient ??= new MatrixBuffer(outputGradient.RowCount);
        var inputGradient = _inputGradient.Get(outputGradient.ColumnCount);
        if (inputGradient.RowCount != outputGradient.RowCount)
            inputGradient = (_inputGradient = new MatrixBuffer(outputGradient.RowCount)).Get(outputGradient.ColumnCount);
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
