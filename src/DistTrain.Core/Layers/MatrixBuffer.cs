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
    /// <summary>Distinct column counts kept; beyond that the least recently used matrix is replaced.</summary>
    public const int Capacity = 4;

    private readonly Matrix<float>?[] _matrices = new Matrix<float>?[Capacity];
    private readonly long[] _lastUse = new long[Capacity];
    private long _clock;

    /// <summary>A matrix of <c>[rows, columns]</c>; contents are stale and must be overwritten.</summary>
    public Matrix<float> Get(int columns)
    {
        _clock++;
        var victim = 0;
        for (var i = 0; i < Capacity; i++)
        {
            var matrix = _matrices[i];
            if (matrix is not null && matrix.ColumnCount == columns)
            {
                _lastUse[i] = _clock;
                return matrix;
            }
            if (matrix is null || (_matrices[victim] is not null && _lastUse[i] < _lastUse[victim])) victim = i;
        }
        _lastUse[victim] = _clock;
        return _matrices[victim] = Matrix<float>.Build.Dense(rows, columns);
    }
}
