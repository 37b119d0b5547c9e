namespace DistTrain.Core.Data;

/// <summary>Decides which training samples each worker consumes in an epoch, and in what order.</summary>
public interface IShardPlanner
{
    /// <summary>Training samples per epoch.</summary>
    int SampleCount { get; }

    /// <summary>Number of shards (one per worker).</summary>
    int Workers { get; }

    /// <summary>The shards of <paramref name="epoch"/>: <see cref="Workers"/> arrays of training-set indices, disjoint, covering the epoch's samples once.</summary>
    int[][] Plan(int epoch);
}
