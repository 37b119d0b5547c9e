using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// Passes every report on to another observer and counts, step by step, the workers that computed a gradient: the
/// data plane's least traffic is the weights to and the gradient from each of them, so when workers are lost or join
/// the minimum per step follows the workers of each step, not the count at the end.
/// </summary>
/// <param name="next">The observer that receives every report.</param>
public sealed class WorkerStepCounter(ITrainingObserver next) : ITrainingObserver
{
    private long _steps;
    private long _workerSteps;

    /// <summary>Steps reported so far.</summary>
    public long Steps => Interlocked.Read(ref _steps);

    /// <summary>The sum over the steps reported of the workers that computed each.</summary>
    public long WorkerSteps => Interlocked.Read(ref _workerSteps);

    /// <summary>
    /// The least data-plane traffic per step, bytes: <c>2 x 4 x parameters x</c> the mean workers per step (float32 weights to
    /// each worker and a gradient back); 0 before any step.
    /// </summary>
    /// <param name="parameters">Floats in the model (weights on the wire).</param>
    public long MinimumBytesPerStep(int parameters) =>
        Steps == 0 ? 0 : 2L * sizeof(float) * parameters * WorkerSteps / Steps;

    /// <inheritdoc />
    public void EpochStarted(int epoch, int steps, int samples) => next.EpochStarted(epoch, steps, samples);

    /// <inheritdoc />
    public void EpochStepsChanged(int epoch, int steps) => next.EpochStepsChanged(epoch, steps);

    /// <inheritdoc />
    public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing) =>
        next.StepApplied(epoch, step, version, samples, meanLoss, learningRate, timing);

    /// <inheritdoc />
    public void EpochCompleted(EpochSummary summary) => next.EpochCompleted(summary);

    /// <inheritdoc />
    public void CheckpointSaved(CheckpointSaved checkpoint) => next.CheckpointSaved(checkpoint);

    /// <inheritdoc />
    public void RunResumed(int epoch, int round, long version) => next.RunResumed(epoch, round, version);

    /// <inheritdoc />
    public void WorkersReported(ReadOnlySpan<double> losses, ReadOnlySpan<double> computeSeconds, ReadOnlySpan<double> queueingSeconds)
    {
        var computed = 0;
        foreach (var loss in losses)
            if (!double.IsNaN(loss)) computed++; // NaN: no minibatch this step
        Interlocked.Add(ref _workerSteps, computed);
        Interlocked.Increment(ref _steps);
        next.WorkersReported(losses, computeSeconds, queueingSeconds);
    }

    /// <inheritdoc />
    public void StalenessReported(ReadOnlySpan<double> versionsBehind) => next.StalenessReported(versionsBehind);
}
