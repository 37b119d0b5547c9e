using System.Globalization;
using System.Text;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Metrics;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Checkpoints;

namespace DistTrain.Cli;

/// <summary>
/// Records every step and epoch a run reports (passing them on to the console), and at the end writes
/// <c>steps.csv</c>, <c>epochs.csv</c> and <c>curves.png</c> (train loss per step and per epoch, test loss,
/// test accuracy) into the run folder. It also keeps the staleness of the applied gradients and each worker's compute
/// time, which <c>summary.json</c> records.
/// </summary>
internal sealed class RunReport(ITrainingObserver next) : ITrainingObserver
{
    private readonly List<(int Epoch, int Step, long Version, int Samples, double Loss, double LearningRate, RoundTiming Timing)> _steps = [];
    private readonly List<EpochSummary> _epochs = [];
    private readonly object _gate = new();
    private readonly Dictionary<int, int> _stepsOfEpoch = [];

    /// <summary>
    /// The step that produced weights <paramref name="version"/>: its epoch, its 1-based number and the steps of that
    /// epoch; null when no step of this run did (none applied yet).
    /// </summary>
    public (int Epoch, int Step, int Steps)? StepOf(long version)
    {
        lock (_gate)
        {
            var index = _steps.FindLastIndex(s => s.Version == version);
            return index < 0 ? null : (_steps[index].Epoch, _steps[index].Step + 1, _stepsOfEpoch.GetValueOrDefault(_steps[index].Epoch));
        }
    }

    /// <summary>The epochs finished so far.</summary>
    public IReadOnlyList<EpochSummary> Epochs
    {
        get { lock (_gate) return [.. _epochs]; }
    }

    public void EpochStarted(int epoch, int steps, int samples)
    {
        lock (_gate) _stepsOfEpoch[epoch] = steps;
        next.EpochStarted(epoch, steps, samples);
    }

    public void EpochStepsChanged(int epoch, int steps)
    {
        lock (_gate) _stepsOfEpoch[epoch] = steps;
        next.EpochStepsChanged(epoch, steps);
    }

    public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing)
    {
        lock (_gate) _steps.Add((epoch, step, version, samples, meanLoss, learningRate, timing));
        next.StepApplied(epoch, step, version, samples, meanLoss, learningRate, timing);
    }

    public void WorkersReported(ReadOnlySpan<double> losses, ReadOnlySpan<double> computeSeconds, ReadOnlySpan<double> queueingSeconds)
    {
        WorkerCompute.Add(losses, computeSeconds);
        next.WorkersReported(losses, computeSeconds, queueingSeconds);
    }

    public void StalenessReported(ReadOnlySpan<double> versionsBehind)
    {
        Staleness.Add(versionsBehind);
        next.StalenessReported(versionsBehind);
    }

    /// <summary>The staleness of the gradients this process applied, in versions.</summary>
    public StalenessDistribution Staleness { get; } = new();

    /// <summary>Each worker's gradient reports applied and their compute seconds.</summary>
    public WorkerComputeTally WorkerCompute { get; } = new();

    public void CheckpointSaved(DistTrain.Cluster.Protocol.CheckpointSaved checkpoint) => next.CheckpointSaved(checkpoint);

    public void EpochCompleted(EpochSummary summary)
    {
        lock (_gate) _epochs.Add(summary);
        next.EpochCompleted(summary);
    }

    /// <summary>Writes the CSV files and the plot; returns the plot's path.</summary>
    public string Write(string runDirectory)
    {
        lock (_gate)
        {
            var inv = CultureInfo.InvariantCulture;
            var steps = new StringBuilder("epoch,step,version,samples,train_loss,learning_rate,round_seconds,compute_seconds,update_seconds,messaging_seconds,waiting_seconds\n");
            foreach (var s in _steps)
                steps.Append(inv, $"{s.Epoch},{s.Step},{s.Version},{s.Samples},{s.Loss:R},{s.LearningRate:R},{s.Timing.RoundSeconds:R},{s.Timing.MaxComputeSeconds:R},{s.Timing.UpdateSeconds:R},{s.Timing.MessagingSeconds:R},{s.Timing.WaitingForWeightsSeconds:R}\n");
            File.WriteAllText(Path.Combine(runDirectory, RunFiles.Steps), steps.ToString());
            var epochs = new StringBuilder("epoch,version,train_loss,test_loss,test_accuracy,validation_loss,validation_accuracy,l1_penalty,l2_penalty,samples_per_second,train_seconds,evaluation_seconds\n");
            foreach (var e in _epochs)
                epochs.Append(inv, $"{e.Epoch},{e.Version},{e.TrainLoss:R},{e.TestLoss:R},{e.TestAccuracy:R},{e.ValidationLoss:R},{e.ValidationAccuracy:R},{e.L1Penalty:R},{e.L2Penalty:R},{e.SamplesPerSecond:R},{e.TrainSeconds:R},{e.EvaluationSeconds:R}\n");
            File.WriteAllText(Path.Combine(runDirectory, RunFiles.Epochs), epochs.ToString());

            // One chart: losses on the left axis, test accuracy on the right.
            var plot = new ScottPlot.Plot();
            var stepsPerEpoch = _epochs.Count > 0 ? _steps.Count / (double)_epochs.Count : 1;
            var xs = _steps.Select((_, i) => (i + 1) / stepsPerEpoch).ToArray();
            var stepLoss = plot.Add.ScatterLine(xs, _steps.Select(s => s.Loss).ToArray());
            stepLoss.LegendText = "train loss (per step)";
            stepLoss.LineWidth = 1;
            stepLoss.Color = ScottPlot.Colors.LightSteelBlue;
            var epochX = _epochs.Select(e => (double)e.Epoch).ToArray();
            var trainLoss = plot.Add.Scatter(epochX, _epochs.Select(e => e.TrainLoss).ToArray());
            trainLoss.LegendText = "train loss (epoch mean)";
            trainLoss.Color = ScottPlot.Colors.Navy;
            var testLoss = plot.Add.Scatter(epochX, _epochs.Select(e => e.TestLoss).ToArray());
            testLoss.LegendText = "test loss";
            testLoss.Color = ScottPlot.Colors.OrangeRed;
            var testAccuracy = plot.Add.Scatter(epochX, _epochs.Select(e => 100 * e.TestAccuracy).ToArray());
            testAccuracy.LegendText = "test accuracy (%, right axis)";
            testAccuracy.Color = ScottPlot.Colors.ForestGreen;
            testAccuracy.Axes.YAxis = plot.Axes.Right;
            plot.Axes.Right.Label.Text = "test accuracy (%)";
            plot.Title($"DistTrain run: {_epochs.Count} epochs, final test accuracy {(_epochs.Count > 0 ? 100 * _epochs[^1].TestAccuracy : 0):F2}%");
            plot.XLabel("epoch");
            plot.YLabel("cross-entropy loss");
            plot.ShowLegend(ScottPlot.Alignment.UpperCenter);
            var path = Path.Combine(runDirectory, RunFiles.Curves);
            plot.SavePng(path, 1000, 600);
            return path;
        }
    }
}
