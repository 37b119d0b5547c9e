using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// A single-node run was cancelled (its <see cref="CancellationToken"/>, e.g. Ctrl-C). It stopped at the next step and
/// carries the parameter server's weights at that point, so the caller can keep them.
/// </summary>
/// <param name="weights">The weights when training stopped (their version is the number of steps applied), or null when
/// the parameter server did not answer in time.</param>
/// <param name="token">The token that cancelled the run.</param>
public sealed class TrainingCancelledException(WeightsSnapshot? weights, CancellationToken token)
    : OperationCanceledException("Training was cancelled.", token)
{
    /// <summary>The parameter server's weights when training stopped; null when it did not answer in time.</summary>
    public WeightsSnapshot? Weights { get; } = weights;
}
