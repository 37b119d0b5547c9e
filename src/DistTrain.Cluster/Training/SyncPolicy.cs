using DistTrain.Core.Checkpoints;

namespace DistTrain.Cluster.Training;

/// <summary>
/// Synchronous data parallelism (<see cref="Core.Configuration.TrainingMode.Sync"/>): each round waits for one gradient from
/// every worker with a minibatch in it, averages them weighted by sample count, applies one optimizer step (learning
/// rate, momentum, L1 and L2 exactly once) and sends the new weights to every worker.
/// </summary>
/// <remarks>
/// The average is <c>Σᵢ nᵢ gᵢ / Σᵢ nᵢ</c>, where <c>gᵢ</c> is worker i's mean gradient over <c>nᵢ</c> samples, so N workers
/// with batch b give the gradient of one batch of N·b samples, also for uneven shards. The step is one cache-blocked pass
/// that writes the new trainable weights into the master copy and the next broadcast together; the running statistics
/// after the gradients become the replicas' sample-weighted average.
/// </remarks>
public sealed class SyncPolicy(ServerModel model, WeightsOutbox outbox, IServerOutput output, WireLayout wire, int checkpointEverySteps = -1,
    TrainingCheckpoint? resumeFrom = null)
    : LockStepPolicy(model, outbox, output, wire, checkpointEverySteps, resumeFrom)
{
    /// <inheritdoc />
    protected override int Span(int round) => 1;

    /// <inheritdoc />
    protected override void FillBroadcast(float[] message) => Model.Weights.Values.CopyTo(message, Model.Offset);

    /// <inheritdoc />
    protected override string NonFiniteResult => "a NaN or infinite averaged gradient or BatchNorm running statistic";

    /// <inheritdoc />
    protected override bool Combine(ReadOnlySpan<float[]> reports, ReadOnlySpan<float> scales, float learningRate, int steps, double? globalNorm)
    {
        var next = Outbox.NextShared;
        var progress = Output.WritingBroadcast(next, Model.Version + steps);
        bool finite;
        try
        {
            finite = Model.Step(reports, scales, learningRate, next, Warn, globalNorm, progress?.Advance);
            if (finite) finite = Model.MergeRunningStatistics(reports, scales, next);
        }
        catch
        {
            progress?.Abandon();
            throw;
        }
        if (finite) progress?.Finish();
        else progress?.Abandon();
        return finite;
    }
}
