using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.Metrics;

/// <summary>Records the training figures the coordinator reports as metrics, then passes them on to another observer.</summary>
/// <param name="next">The observer that shows progress (console, tests).</param>
/// <param name="clock">The clock of the samples/s window; null for the system's.</param>
public sealed class MetricsObserver(ITrainingObserver next, TimeProvider? clock = null) : ITrainingObserver
{
    private readonly TimeProvider _clock = clock ?? TimeProvider.System;
    private static readonly KeyValuePair<string, object?> Round = new("phase", "round");
    private static readonly KeyValuePair<string, object?> Compute = new("phase", "compute");
    private static readonly KeyValuePair<string, object?> Update = new("phase", "update");
    private static readonly KeyValuePair<string, object?> Messaging = new("phase", "messaging");
    private static readonly KeyValuePair<string, object?> Waiting = new("phase", "waiting");
    // samples_per_second covers training time only: the window restarts at each epoch's start, so
    // evaluation pauses do not count, and closes after a second or at the epoch's last step (then, not after the
    // evaluation that follows: an epoch shorter than a second had read 0 until it was evaluated).
    private long _windowStart = (clock ?? TimeProvider.System).GetTimestamp();
    private int _stepsInEpoch;
    private long _lastStep;
    private long _windowSamples;

    /// <inheritdoc />
    public void EpochStarted(int epoch, int steps, int samples)
    {
        _windowStart = _clock.GetTimestamp();
        _windowSamples = 0;
        _stepsInEpoch = steps;
        DistTrainMetrics.Set("epoch", epoch);
        next.EpochStarted(epoch, steps, samples);
    }

    /// <inheritdoc />
    public void EpochStepsChanged(int epoch, int steps)
    {
        _stepsInEpoch = steps;
        next.EpochStepsChanged(epoch, steps);
    }

    /// <inheritdoc />
    public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing)
    {
        // The version first, then the count. A scrape reads the instruments one after another while steps go on, so the two
        // can be a few steps apart in either direction; compare them across scrapes, not within one.
        DistTrainMetrics.Set("weights_version", version);
        DistTrainMetrics.RecordSamplesApplied(samples);
        var node = DistTrainMetrics.NodeTag;
        DistTrainMetrics.Steps.Add(1, node);
        DistTrainMetrics.StepPhaseSeconds.Record(timing.RoundSeconds, Round, node);
        DistTrainMetrics.StepPhaseSeconds.Record(timing.MaxComputeSeconds, Compute, node);
        DistTrainMetrics.StepPhaseSeconds.Record(timing.UpdateSeconds, Update, node);
        DistTrainMetrics.StepPhaseSeconds.Record(timing.MessagingSeconds, Messaging, node);
        DistTrainMetrics.StepPhaseSeconds.Record(timing.WaitingForWeightsSeconds, Waiting, node);
        DistTrainMetrics.Set("train_loss", meanLoss);
        DistTrainMetrics.Set("learning_rate", learningRate);
        _windowSamples += samples;
        _lastStep = _clock.GetTimestamp();
        if (_clock.GetElapsedTime(_windowStart, _lastStep).TotalSeconds >= 1 || step + 1 == _stepsInEpoch)
            CloseWindow();
        next.StepApplied(epoch, step, version, samples, meanLoss, learningRate, timing);
    }

    private void CloseWindow()
    {
        var seconds = _clock.GetElapsedTime(_windowStart, _lastStep).TotalSeconds;
        if (seconds > 0) DistTrainMetrics.Set("samples_per_second", _windowSamples / seconds);
        _windowSamples = 0;
        _windowStart = _lastStep;
    }

    /// <inheritdoc />
    public void WorkersReported(ReadOnlySpan<double> losses, ReadOnlySpan<double> computeSeconds, ReadOnlySpan<double> queueingSeconds) =>
        next.WorkersReported(losses, computeSeconds, queueingSeconds);

    /// <inheritdoc />
    public void StalenessReported(ReadOnlySpan<double> versionsBehind)
    {
        var most = double.NaN;
        foreach (var staleness in versionsBehind)
        {
            if (double.IsNaN(staleness)) continue;
            DistTrainMetrics.Staleness.Record(staleness, DistTrainMetrics.NodeTag);
            most = double.IsNaN(most) ? staleness : Math.Max(most, staleness);
        }
        if (!double.IsNaN(most)) DistTrainMetrics.Set("staleness", most);
        next.StalenessReported(versionsBehind);
    }

    /// <inheritdoc />
    public void CheckpointSaved(Protocol.CheckpointSaved checkpoint) => next.CheckpointSaved(checkpoint);

    /// <inheritdoc />
    public void RunResumed(int epoch, int round, long version) => next.RunResumed(epoch, round, version);

    /// <inheritdoc />
    public void EpochCompleted(EpochSummary summary)
    {
        if (_windowSamples > 0) CloseWindow();
        DistTrainMetrics.Set("test_accuracy", summary.TestAccuracy);
        DistTrainMetrics.Set("test_loss", summary.TestLoss);
        next.EpochCompleted(summary);
    }
}
