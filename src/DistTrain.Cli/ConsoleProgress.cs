using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary>
/// Shows training progress: on a terminal, a Spectre.Console progress bar for the running epoch, with each
/// finished epoch's summary line printed above it; otherwise (CI, docker logs, pipes) plain lines at
/// every quarter of an epoch and the summary lines.
/// </summary>
internal static class ConsoleProgress
{
    public static async Task<TrainingResult> RunAsync(int epochs, Func<ITrainingObserver, Task<TrainingResult>> run)
    {
        if (!AnsiConsole.Profile.Capabilities.Interactive || Console.IsOutputRedirected)
            return await run(new PlainObserver(epochs));
        TrainingResult? result = null;
        await AnsiConsole.Progress()
            .AutoClear(true)
            .HideCompleted(true)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(),
                new RemainingTimeColumn(), new SpinnerColumn())
            .StartAsync(async context => result = await run(new BarObserver(context, epochs)));
        return result!;
    }

    /// <summary>One epoch in about 72 columns (test loss is in summary.json), so a terminal never wraps it (a wrapped line breaks the live display).</summary>
    internal static string Describe(EpochSummary s, int epochs) =>
        $"epoch {s.Epoch,2}/{epochs}  train loss {s.TrainLoss:F4}  test acc {100 * s.TestAccuracy:F2}%  " +
        $"{s.SamplesPerSecond,7:N0} samples/s  {s.TrainSeconds,5:F1} s";

    private sealed class BarObserver(ProgressContext context, int epochs) : ITrainingObserver
    {
        private ProgressTask? _task;
        private double _lossSum;
        private int _lossCount;

        public void EpochStarted(int epoch, int steps, int samples)
        {
            _task = context.AddTask($"epoch {epoch,2}/{epochs}", maxValue: steps);
            _lossSum = 0;
            _lossCount = 0;
        }

        public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, RoundTiming timing)
        {
            if (_task is null) return;
            _lossSum += meanLoss;
            _lossCount++;
            _task.Increment(1);
            if (step % 20 == 0)
                _task.Description = Markup.Escape($"epoch {epoch,2}/{epochs}  loss {_lossSum / _lossCount:F4}");
        }

        public void EpochCompleted(EpochSummary summary)
        {
            if (_task is null) return;
            _task.Value = _task.MaxValue;
            _task.StopTask();
            // Printed above the live progress display, so each epoch keeps one whole line at any width.
            AnsiConsole.WriteLine(Describe(summary, epochs));
        }
    }

    private sealed class PlainObserver(int epochs) : ITrainingObserver
    {
        private int _steps;
        private int _nextReport;
        private double _lossSum;
        private int _lossCount;

        public void EpochStarted(int epoch, int steps, int samples)
        {
            _steps = steps;
            _nextReport = 1;
            _lossSum = 0;
            _lossCount = 0;
        }

        public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, RoundTiming timing)
        {
            _lossSum += meanLoss;
            _lossCount++;
            if (_nextReport < 4 && step + 1 >= _steps * _nextReport / 4)
            {
                Console.WriteLine($"epoch {epoch,2}/{epochs}  {_nextReport * 25,3}%  step {step + 1}/{_steps}  loss {_lossSum / _lossCount:F4}");
                _nextReport++;
            }
        }

        public void EpochCompleted(EpochSummary summary) => Console.WriteLine(Describe(summary, epochs));
    }
}
