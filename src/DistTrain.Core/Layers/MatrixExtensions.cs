using MathNet.Numerics.LinearAlgebra;
using MathNet.Numerics.LinearAlgebra.Storage;

namespace DistTrain.Core.Layers;

/// <summary>Access to the column-major storage behind MathNet's dense matrices.</summary>
public static class MatrixExtensions
{
    /// <summary>
    /// The column-major element array of a dense matrix (<c>rows * columns</c> elements; column
    /// <c>j</c> starts at <c>j * rows</c>).
    /// </summary>
    /// <exception cref="ArgumentException">The matrix is not dense.</exception>
    public static float[] ColumnMajorValues(this Matrix<float> matrix) =>
        matrix.Storage is DenseColumnMajorMatrixStorage<float> dense
            ? dense.Data
            : throw new ArgumentException("Only dense matrices are supported: build them with Matrix<float>.Build.Dense.");
}
