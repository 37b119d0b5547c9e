using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.Metrics;

/// <summary>Records the training figures the coordinator reports as metrics, then passes them on to another observer.</summary>
/// <param name="next">The observer that shows progress (console, tests).</param>
/// <param name="learningRate">The optimizer's learning rate, published as a gauge.</param>
public sealed class MetricsObserver(ITrainingObserver next, double learningRate) : ITrainingObserver
{
    private static readonly KeyValuePair<string, object?> Round = new("phase", "round");
    private static readonly KeyValuePair<string, object?> Compute = new("phase", "compute");
    private static readonly KeyValuePair<string, object?> Update = new("phase", "update");
    private static readonly KeyValuePair<string, object?> Messaging = new("phase", "messaging");
    private static readonly KeyValuePair<string, object?> Waiting = new("phase", "waiting");
    private long _windowStart = System.Diagnostics.Stopwatch.GetTimestamp();
    private long _windowSamples;

    /// <inheritdoc />
    public void EpochStarted(int epoch, int steps, int samples)
    {
        DistTrainMetrics.Set("epoch", epoch);
        DistTrainMetrics.Set("learning_rate", learningRate);
        next.EpochStarted(epoch, steps, samples);
    }

    /// <inheritdoc />
    public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, RoundTiming timing)
    {
        DistTrainMetrics.Samples.Add(samples);
        DistTrainMetrics.Steps.Add(1);
        DistTrainMetrics.StepPhaseSeconds.Record(timing.RoundSeconds, Round);
        DistTrainMetrics.StepPhaseSeconds.Record(timing.MaxComputeSeconds, Compute);
        DistTrainMetrics.StepPhaseSeconds.Record(timing.UpdateSeconds, Update);
        DistTrainMetrics.StepPhaseSeconds.Record(timing.MessagingSeconds, Messaging);
        DistTrainMetrics.StepPhaseSeconds.Record(timing.WaitingForWeightsSeconds, Waiting);
        DistTrainMetrics.Set("train_loss", meanLoss);
        DistTrainMetrics.Set("weights_version", version);
        // Synchronous mode: every gradient is computed on the current version.
        DistTrainMetrics.Set("staleness", 0);
        _windowSamples += samples;
        var elapsed = System.Diagnostics.Stopwatch.GetElapsedTime(_windowStart).TotalSeconds;
        if (elapsed >= 1)
        {
            DistTrainMetrics.Set("samples_per_second", _windowSamples / elapsed);
            _windowSamples = 0;
            _windowStart = System.Diagnostics.Stopwatch.GetTimestamp();
        }
        next.StepApplied(epoch, step, version, samples, meanLoss, timing);
    }

    /// <inheritdoc />
    public void WorkersReported(ReadOnlySpan<double> losses, ReadOnlySpan<double> computeSeconds, ReadOnlySpan<double> queueingSeconds) =>
        next.WorkersReported(losses, computeSeconds, queueingSeconds);

    /// <inheritdoc />
    public void EpochCompleted(EpochSummary summary)
    {
        DistTrainMetrics.Set("test_accuracy", summary.TestAccuracy);
        DistTrainMetrics.Set("test_loss", summary.TestLoss);
        next.EpochCompleted(summary);
    }
}
