namespace DistTrain.Cluster.Actors;

/// <summary>
/// A loss or gradient became NaN or infinite. The message names the epoch, the step, the workers and
/// the first tensor affected; <see cref="LastGoodWeights"/> holds the latest weights whose loss was finite.
/// </summary>
public sealed class TrainingDivergedException(string message, float[]? lastGoodWeights = null, long lastGoodVersion = -1, bool lossFinite = true,
    int epoch = 0, int step = 0) : Exception(message)
{
    /// <summary>The epoch the failed step belongs to; 0 when unknown.</summary>
    public int Epoch { get; } = epoch;

    /// <summary>The failed step within its epoch, counted from 1 as the message counts; 0 when unknown.</summary>
    public int Step { get; } = step;

    /// <summary>
    /// True when a finite loss was computed on <see cref="LastGoodWeights"/>; false when they are the weights the failed step
    /// itself computed on, handed over because no earlier ones were held (the run's first step failed, as with weights
    /// initialized too large).
    /// </summary>
    public bool LossFinite { get; } = lossFinite;

    /// <summary>The latest weights on which every worker's loss was finite (flat, layout order), or null when unknown.</summary>
    public float[]? LastGoodWeights { get; } = lastGoodWeights;

    /// <summary>The version of <see cref="LastGoodWeights"/>; -1 when unknown.</summary>
    public long LastGoodVersion { get; } = lastGoodVersion;
}
