using DistTrain.Cluster.Protocol;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Hosting;

/// <summary>Results of one epoch.</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="Version">Weights version after the epoch (optimizer steps so far).</param>
/// <param name="TrainLoss">Mean training loss over the epoch's samples, each on the weights it was computed with.</param>
/// <param name="TestLoss">Mean test loss at the end of the epoch.</param>
/// <param name="TestAccuracy">Fraction of test samples classified correctly, 0 to 1.</param>
/// <param name="TestSamples">Test samples scored (the whole test set, each once).</param>
/// <param name="TrainSamples">Training samples used.</param>
/// <param name="TrainSeconds">Wall time of the training part, seconds.</param>
/// <param name="EvaluationSeconds">Wall time of the evaluation, seconds.</param>
/// <param name="ValidationLoss">Mean loss on the validation samples (NaN when the run holds none out).</param>
/// <param name="ValidationAccuracy">Fraction of validation samples classified correctly (NaN when none).</param>
/// <param name="L1Penalty">L1 term <c>λ₁ Σ|w|</c> at the end of the epoch, reported apart from the data loss.</param>
/// <param name="L2Penalty">L2 term <c>λ₂/2 Σw²</c> at the end of the epoch, reported apart from the data loss.</param>
/// <param name="SamplesTrainedThisRun">Of <paramref name="TrainSamples"/>, those trained in <paramref name="TrainSeconds"/>:
/// fewer in an epoch resumed from a mid-epoch checkpoint, whose earlier samples were trained before; null for all of them.</param>
/// <param name="PausedSeconds">Of <paramref name="TrainSeconds"/>, the time training was paused below Cluster:MinWorkers
/// (cluster mode), seconds; 0 when it never paused.</param>
public sealed record EpochSummary(
    int Epoch, long Version, double TrainLoss, double TestLoss, double TestAccuracy, int TestSamples,
    int TrainSamples, double TrainSeconds, double EvaluationSeconds,
    double ValidationLoss = double.NaN, double ValidationAccuracy = double.NaN, double L1Penalty = 0, double L2Penalty = 0,
    int? SamplesTrainedThisRun = null, double PausedSeconds = 0)
{
    /// <summary>Training throughput, samples per second of training wall time outside pauses (<see cref="PausedSeconds"/>):
    /// the samples trained in that time, so an epoch resumed mid-way is not credited with the samples trained before the
    /// resume, nor an epoch that waited for workers charged with the wait.</summary>
    public double SamplesPerSecond => (SamplesTrainedThisRun ?? TrainSamples) / Math.Max(TrainSeconds - PausedSeconds, 1e-9);
}

/// <summary>The end of a run: the parameter server's final weights and every epoch's summary.</summary>
/// <param name="FinalWeights">Final weights with the model's layout.</param>
/// <param name="Version">Their version.</param>
/// <param name="Epochs">One summary per epoch trained.</param>
/// <param name="BestEpoch">With early stopping: the epoch of the lowest validation loss, whose weights
/// <paramref name="FinalWeights"/> are (restored); null without early stopping.</param>
/// <param name="StoppedEarly">True when early stopping ended the run before Training:Epochs.</param>
/// <param name="BestEpochBefore">With early stopping in a run resumed from a checkpoint: the summary of
/// <paramref name="BestEpoch"/> when that epoch was trained before this run, so is not in <paramref name="Epochs"/>
/// (restored from the checkpoint directory's <c>early-stopping.json</c>); null otherwise.</param>
public sealed record TrainingResult(ParameterVector FinalWeights, long Version, IReadOnlyList<EpochSummary> Epochs,
    int? BestEpoch = null, bool StoppedEarly = false, EpochSummary? BestEpochBefore = null)
{
    /// <summary>The summary that describes <see cref="FinalWeights"/>: the best epoch's with early stopping, else the last.</summary>
    /// <exception cref="InvalidOperationException">The best epoch's summary is neither in <see cref="Epochs"/> nor <see cref="BestEpochBefore"/>.</exception>
    public EpochSummary FinalEpoch => BestEpoch is { } best
        ? Epochs.FirstOrDefault(e => e.Epoch == best) ?? (BestEpochBefore?.Epoch == best ? BestEpochBefore
            : throw new InvalidOperationException($"The summary of best epoch {best} is missing from the result."))
        : Epochs[^1];
}

/// <summary>
/// Receives progress from the coordinator. Called from actor threads, one call at a time per run;
/// implementations must be thread-safe with respect to their own readers and must return quickly.
/// </summary>
public interface ITrainingObserver
{
    /// <summary>An epoch starts with <paramref name="steps"/> synchronous steps over <paramref name="samples"/> samples.</summary>
    void EpochStarted(int epoch, int steps, int samples);

    /// <summary>
    /// The epoch now ends after <paramref name="steps"/> steps instead of the number <see cref="EpochStarted"/> gave: a worker
    /// was lost, and the samples it had left were planned anew over the workers alive (more steps when they keep their own
    /// minibatch size, Training:KeepGlobalBatch off; about as many when it is on). In the Async mode, whose steps are
    /// minibatches, after every worker was lost: the minibatches left may be cut anew for the workers that join.
    /// </summary>
    void EpochStepsChanged(int epoch, int steps) { }

    /// <summary>
    /// One optimizer step was applied; <paramref name="meanLoss"/> is the mean loss of its samples and
    /// <paramref name="learningRate"/> the rate the step used (after the schedule and the worker scaling).
    /// </summary>
    void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing);

    /// <summary>An epoch was trained and evaluated.</summary>
    void EpochCompleted(EpochSummary summary);

    /// <summary>
    /// Per-worker figures of the step just reported, by worker index: mean loss (NaN for a worker without a
    /// minibatch), compute seconds and queueing seconds. The spans are only valid during the call.
    /// </summary>
    void WorkersReported(ReadOnlySpan<double> losses, ReadOnlySpan<double> computeSeconds, ReadOnlySpan<double> queueingSeconds) { }

    /// <summary>
    /// Staleness of each worker's gradient in the step just reported, by worker index: how many versions older than the
    /// weights it updated the weights it was computed on were (0 in synchronous training; NaN for a worker without a
    /// gradient in the step). The span is only valid during the call.
    /// </summary>
    void StalenessReported(ReadOnlySpan<double> versionsBehind) { }

    /// <summary>The parameter server wrote a checkpoint (only when Checkpoint:Directory is set).</summary>
    void CheckpointSaved(CheckpointSaved checkpoint) { }

    /// <summary>
    /// Where the run starts: its next step is <paramref name="epoch"/>'s round <paramref name="round"/>, on weights
    /// <paramref name="version"/> (1, 0 and 0 for a new run; a checkpoint's position for a resumed one). Called once, before the
    /// run's first step. An observer that already recorded steps past that version, or epochs from <paramref name="epoch"/> on,
    /// recorded work that is now trained again (a job restarted on its parameter-server node after a lost shard node) and drops
    /// them, so each step and epoch is recorded once.
    /// </summary>
    void RunResumed(int epoch, int round, long version) { }
}

/// <summary>An observer that ignores everything.</summary>
public sealed class NullTrainingObserver : ITrainingObserver
{
    /// <summary>The shared instance.</summary>
    public static readonly NullTrainingObserver Instance = new();

    /// <inheritdoc />
    public void EpochStarted(int epoch, int steps, int samples) { }

    /// <inheritdoc />
    public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing) { }

    /// <inheritdoc />
    public void EpochCompleted(EpochSummary summary) { }
}
