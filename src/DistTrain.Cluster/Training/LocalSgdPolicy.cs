using DistTrain.Core.Checkpoints;

namespace DistTrain.Cluster.Training;

/// <summary>
/// Local SGD (<see cref="Core.Configuration.TrainingMode.LocalSgd"/>; Stich, ICLR 2019; Lin et al., ICLR 2020): the weights
/// and optimizer state go to every worker, each takes up to k = Training:LocalSteps optimizer steps on its own minibatches,
/// and reports its model; the round waits for every worker with a minibatch in the period and makes the sample-weighted
/// average of the models (weights, running statistics and optimizer state) the new master, k versions on.
/// </summary>
/// <remarks>
/// Averaging the optimizer state as well (as Yu, Jin and Yang's parallel restarted momentum SGD, ICML 2019) keeps one
/// state, so a checkpoint holds all of it and a resume continues exactly; and for an optimizer linear in its state (SGD,
/// with or without momentum) one local step per period gives the synchronous step in exact arithmetic: the average of
/// <c>w − η(μv + gᵢ)</c> is <c>w − η(μv + ḡ)</c>. In float32 the two round differently (models summed, not gradients), so
/// the weights agree to rounding, not bit for bit, and drift apart slowly over training. A report is <c>[weights | running statistics | state]</c>
/// (<see cref="WireLayout"/>).
/// </remarks>
public sealed class LocalSgdPolicy(ServerModel model, WeightsOutbox outbox, IServerOutput output, WireLayout wire, int localSteps,
    int checkpointEverySteps = -1, TrainingCheckpoint? resumeFrom = null)
    : LockStepPolicy(model, outbox, output, wire, checkpointEverySteps, resumeFrom)
{
    /// <inheritdoc />
    protected override int Span(int round) => Math.Max(1, Math.Min(localSteps, Round.EndRound - round));

    /// <inheritdoc />
    protected override string ReportContents => "trainable weights, running statistics, then optimizer state";

    /// <inheritdoc />
    protected override string NonFiniteResult => "a NaN or infinite averaged model or optimizer state";

    /// <inheritdoc />
    protected override void FillBroadcast(float[] message)
    {
        Model.Weights.Values.CopyTo(message, Model.Offset);
        CopyState(message);
    }

    /// <inheritdoc />
    protected override bool Combine(ReadOnlySpan<float[]> reports, ReadOnlySpan<float> scales, float learningRate, int steps, double? globalNorm)
    {
        var finite = Model.AverageModels(reports, scales, steps);
        var next = Outbox.NextShared;
        Model.Weights.Values.AsSpan(0, Model.Layout.WorkerReportLength).CopyTo(next.AsSpan(Model.Offset));
        CopyState(next);
        return finite;
    }

    private void CopyState(float[] message)
    {
        // After the whole weights vector, one whole-trainable-length buffer after another (a shard writes its slice of each).
        var buffer = 0;
        foreach (var (_, values) in Model.Optimizer.State)
            values.CopyTo(message, Model.StateOffset(Model.Whole.TotalLength, buffer++));
    }
}
