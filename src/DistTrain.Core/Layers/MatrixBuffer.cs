using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Core.Layers;

/// <summary>
/// A reusable dense matrix with a fixed row count whose column count follows the batch size.
/// It reallocates only when the batch size changes (for example at the short last minibatch of
/// an epoch), so the steady-state step allocates nothing here.
/// </summary>
/// <param name="rows">Fixed row count (features).</param>
public sealed class MatrixBuffer(int rows)
{
    private Matrix<float>? _matrix;

    /// <summary>A matrix of <c>[rows, columns]</c>; contents are stale and must be overwritten.</summary>
    public Matrix<float> Get(int columns)
    {
        if (_matrix is null || _matrix.ColumnCount != columns)
            _matrix = Matrix<float>.Build.Dense(rows, columns);
        return _matrix;
    }
}
