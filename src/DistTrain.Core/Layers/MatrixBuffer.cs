using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Core.Layers;

/// <summary>
/// Reusable dense matrices with a fixed row count whose column count follows the batch size. An epoch
/// uses two batch sizes (the full minibatch and the short last one; the same for evaluation batches),
/// so the buffer keeps one matrix per size, up to <see cref="Capacity"/>, and a steady-state step
/// allocates nothing here.
/// </summary>
/// <param name="rows">Fixed row count (features).</param>
public sealed class MatrixBuffer(int rows)
{
    private int _rowsPerSample;
    private int _fixedColumns;

    /// <summary>
    /// A buffer of tall matrices <c>[rowsPerSample · batch, columns]</c> whose row count follows the batch size,
    /// such as a convolution's unfolded patches <c>[positions · batch, in_channels · kH · kW]</c>.
    /// </summary>
    public static MatrixBuffer Tall(int rowsPerSample, int columns) => new(0) { _rowsPerSample = rowsPerSample, _fixedColumns = columns };

    /// <summary>Distinct column counts kept; beyond that the least recently used matrix is replaced.</summary>
    public const int Capacity = 4;

    private readonly Matrix<float>?[] _matrices = new Matrix<float>?[Capacity];
    private readonly long[] _lastUse = new long[Capacity];
    private long _clock;

    /// <summary>
    /// A matrix shaped like <paramref name="like"/> from <paramref name="buffer"/>, for layers that learn their row
    /// count from their first input (activations, dropout): the buffer is made, or made again, for that row count.
    /// </summary>
    public static Matrix<float> Like(ref MatrixBuffer? buffer, Matrix<float> like)
    {
        var matrix = (buffer ??= new MatrixBuffer(like.RowCount)).Get(like.ColumnCount);
        return matrix.RowCount == like.RowCount ? matrix : (buffer = new MatrixBuffer(like.RowCount)).Get(like.ColumnCount);
    }

    /// <summary>
    /// A matrix of <c>[rows, columns]</c> (for <see cref="Tall"/>: <c>[rowsPerSample · columns, fixed columns]</c>,
    /// where the argument is the batch size); contents are stale and must be overwritten.
    /// </summary>
    public Matrix<float> Get(int columns)
    {
        var (shapeRows, shapeColumns) = _rowsPerSample > 0 ? (_rowsPerSample * columns, _fixedColumns) : (rows, columns);
        _clock++;
        var victim = 0;
        for (var i = 0; i < Capacity; i++)
        {
            var matrix = _matrices[i];
            if (matrix is not null && matrix.ColumnCount == shapeColumns && matrix.RowCount == shapeRows)
            {
                _lastUse[i] = _clock;
                return matrix;
            }
            if (matrix is null || (_matrices[victim] is not null && _lastUse[i] < _lastUse[victim])) victim = i;
        }
        _lastUse[victim] = _clock;
        return _matrices[victim] = Matrix<float>.Build.Dense(shapeRows, shapeColumns);
    }
}
