using MathNet.Numerics.LinearAlgebra;
using DistTrain.Core.Layers;

namespace DistTrain.Core.Losses;

/// <summary>
/// Mean squared error <c>Σ (y - t)² / (outputs · batch)</c>, the mean over every element as PyTorch's
/// <c>F.mse_loss</c>; gradient <c>2 (y - t) / (outputs · batch)</c>.
/// </summary>
public sealed class MeanSquaredError : ILoss
{
    /// <inheritdoc />
    public string Name => "MeanSquaredError";

    /// <inheritdoc />
    public double Compute(Matrix<float> output, Matrix<float> target, Matrix<float> outputGradient)
    {
        LossShapes.Check(output, target, outputGradient);
        var y = output.ColumnMajorValues();
        var t = target.ColumnMajorValues();
        var gradient = outputGradient.ColumnMajorValues();
        var count = y.Length;
        var scale = 2f / count;
        var total = 0.0;
        for (var i = 0; i < count; i++)
        {
            var difference = y[i] - t[i];
            total += (double)difference * difference;
            gradient[i] = scale * difference;
        }
        return total / count;
    }
}

internal static class LossShapes
{
    public static void Check(Matrix<float> output, Matrix<float> target, Matrix<float> outputGradient)
    {
        if (output.RowCount != target.RowCount || output.ColumnCount != target.ColumnCount)
            throw new ArgumentException($"Loss: output is [{output.RowCount}, {output.ColumnCount}] but target is [{target.RowCount}, {target.ColumnCount}].");
        if (output.RowCount != outputGradient.RowCount || output.ColumnCount != outputGradient.ColumnCount)
            throw new ArgumentException($"Loss: output is [{output.RowCount}, {output.ColumnCount}] but the gradient buffer is [{outputGradient.RowCount}, {outputGradient.ColumnCount}].");
    }
}
