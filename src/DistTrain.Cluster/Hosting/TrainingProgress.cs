using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.Hosting;

/// <summary>What a <see cref="TrainingProgress"/> report is about.</summary>
public enum TrainingProgressKind
{
    /// <summary>An epoch begins; <see cref="TrainingProgress.StepsInEpoch"/> says how many steps it has.</summary>
    EpochStarted,
    /// <summary>One synchronous optimizer step was applied.</summary>
    Step,
    /// <summary>An epoch was trained and evaluated; <see cref="TrainingProgress.Epoch"/>'s figures are in <see cref="TrainingProgress.Summary"/>.</summary>
    EpochCompleted,
}

/// <summary>One progress report of a run, as sent to an <see cref="IProgress{T}"/> given to <see cref="Trainer"/>.</summary>
/// <param name="Kind">What happened.</param>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="Epochs">Epochs the run trains (Training:Epochs).</param>
/// <param name="Step">Steps done in this epoch (1-based after a step; 0 when the epoch starts).</param>
/// <param name="StepsInEpoch">Synchronous steps of this epoch.</param>
/// <param name="Version">Weights version: optimizer steps applied since the start of the run.</param>
/// <param name="Loss">Mean training loss of the step's samples (NaN for epoch reports).</param>
/// <param name="LearningRate">Learning rate the step used, after the schedule and worker scaling (NaN for epoch reports).</param>
/// <param name="Summary">The epoch's figures (test and validation accuracy, loss, seconds); null except for <see cref="TrainingProgressKind.EpochCompleted"/>.</param>
public sealed record TrainingProgress(TrainingProgressKind Kind, int Epoch, int Epochs, int Step, int StepsInEpoch, long Version,
    double Loss, double LearningRate, EpochSummary? Summary)
{
    /// <summary>Fraction of the whole run done, 0 to 1, counting steps of the current epoch.</summary>
    public double FractionDone => Epochs <= 0 ? 0 : Math.Clamp((Epoch - 1 + (StepsInEpoch == 0 ? 0 : (double)Step / StepsInEpoch)) / Epochs, 0, 1);
}

/// <summary>Passes the coordinator's reports to an <see cref="IProgress{T}"/>, then to another observer.</summary>
internal sealed class ProgressObserver(IProgress<TrainingProgress>? progress, int epochs, ITrainingObserver next) : ITrainingObserver
{
    private int _steps;

    public void EpochStarted(int epoch, int steps, int samples)
    {
        _steps = steps;
        progress?.Report(new TrainingProgress(TrainingProgressKind.EpochStarted, epoch, epochs, 0, steps, 0, double.NaN, double.NaN, null));
        next.EpochStarted(epoch, steps, samples);
    }

    public void EpochStepsChanged(int epoch, int steps)
    {
        _steps = steps;
        next.EpochStepsChanged(epoch, steps);
    }

    public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing)
    {
        progress?.Report(new TrainingProgress(TrainingProgressKind.Step, epoch, epochs, step + 1, _steps, version, meanLoss, learningRate, null));
        next.StepApplied(epoch, step, version, samples, meanLoss, learningRate, timing);
    }

    public void EpochCompleted(EpochSummary summary)
    {
        progress?.Report(new TrainingProgress(TrainingProgressKind.EpochCompleted, summary.Epoch, epochs, _steps, _steps, summary.Version,
            double.NaN, double.NaN, summary));
        next.EpochCompleted(summary);
    }

    public void WorkersReported(ReadOnlySpan<double> losses, ReadOnlySpan<double> computeSeconds, ReadOnlySpan<double> queueingSeconds) =>
        next.WorkersReported(losses, computeSeconds, queueingSeconds);

    public void CheckpointSaved(CheckpointSaved checkpoint) => next.CheckpointSaved(checkpoint);

    public void RunResumed(int epoch, int round, long version) => next.RunResumed(epoch, round, version);
}
