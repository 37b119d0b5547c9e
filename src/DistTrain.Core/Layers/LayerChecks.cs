using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Core.Layers;

/// <summary>
/// The shape checks every layer makes, with one wording for their errors. They take the layer, not its description:
/// a description is a formatted string, and building it on every forward pass would allocate in the step.
/// </summary>
internal static class LayerChecks
{
    /// <summary>Returns <paramref name="output"/> when <paramref name="input"/> is the shape the layer was built for.</summary>
    /// <exception cref="ArgumentException">It is not; the message names both shapes.</exception>
    public static TensorShape Fitting(ILayer layer, TensorShape builtFor, TensorShape input, TensorShape output) =>
        input == builtFor ? output : throw new ArgumentException($"{layer.Description} was built for input {builtFor} but receives {input}.");

    /// <summary>Checks that a forward input has one row per element of <paramref name="shape"/>.</summary>
    /// <exception cref="ArgumentException">It has another row count.</exception>
    public static void Input(ILayer layer, TensorShape shape, Matrix<float> input)
    {
        if (input.RowCount != shape.Size)
            throw new ArgumentException($"{layer.Description} expects {shape.Size} input rows ({shape}) but receives {input.RowCount}.");
    }

    /// <summary>Checks that dLoss/dOutput is <c>[rows, columns]</c>, the shape of the forward output.</summary>
    /// <exception cref="ArgumentException">It is not.</exception>
    public static void OutputGradient(ILayer layer, int rows, int columns, Matrix<float> outputGradient)
    {
        if (outputGradient.RowCount != rows || outputGradient.ColumnCount != columns)
            throw new ArgumentException($"{layer.Description}: the output gradient is [{outputGradient.RowCount}, {outputGradient.ColumnCount}] but the forward output was [{rows}, {columns}].");
    }
}
