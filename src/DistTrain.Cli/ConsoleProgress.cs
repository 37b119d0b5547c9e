using System.Globalization;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Optimization;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary>
/// Shows training progress: on a terminal, a Spectre.Console progress bar for the running epoch, with each
/// finished epoch's summary line printed above it; otherwise (CI, docker logs, pipes) plain lines at
/// every quarter of an epoch and the summary lines.
/// </summary>
internal static class ConsoleProgress
{
    private static volatile bool _live;

    /// <summary>True while the live view owns the terminal: other lines must go above it (<see cref="WriteAbove"/>).</summary>
    public static bool LiveViewActive => _live;

    /// <summary>Runs <paramref name="run"/> with the observer that suits the console, and returns its result.</summary>
    /// <param name="epochs">The run's epochs, for the <c>epoch e/E</c> counts.</param>
    /// <param name="run">The training, given the observer.</param>
    /// <param name="optimizer">The run's optimizer: AdamW's Optimizer:L2 is a decoupled decay, named so in the epoch lines.</param>
    public static async Task<TrainingResult> RunAsync(int epochs, Func<ITrainingObserver, Task<TrainingResult>> run, OptimizerKind optimizer = OptimizerKind.Sgd)
    {
        if (!AnsiConsole.Profile.Capabilities.Interactive || Console.IsOutputRedirected)
            return await run(new PlainObserver(epochs, optimizer));
        var live = new LiveObserver(epochs, optimizer);
        TrainingResult? result = null;
        await AnsiConsole.Live(live.Render())
            .AutoClear(true)
            .StartAsync(async context =>
            {
                _live = true;
                live.Update = context.UpdateTarget;
                try
                {
                    var training = run(live);
                    while (!training.IsCompleted)
                    {
                        context.UpdateTarget(live.Render());
                        await Task.WhenAny(training, Task.Delay(TimeSpan.FromSeconds(1)));
                    }
                    result = await training;
                }
                finally
                {
                    live.Update = null;
                    _live = false;
                }
            });
        return result!;
    }

    /// <summary>
    /// One epoch in about 72 columns (test loss is in summary.json), so a terminal never wraps it (a wrapped line breaks
    /// the live display); a second line when the run holds out validation samples or regularizes.
    /// </summary>
    /// <param name="s">The finished epoch.</param>
    /// <param name="epochs">The run's epochs.</param>
    /// <param name="optimizer">The run's optimizer: with AdamW the L2 term <c>λ₂/2 Σw²</c> is that of its decoupled weight
    /// decay, not a term of the loss it minimizes, and is shown as <c>decay term</c>.</param>
    internal static string Describe(EpochSummary s, int epochs, OptimizerKind optimizer = OptimizerKind.Sgd)
    {
        if (s.TrainSamples == 0) // an epoch trained before a resume, only scored in this run
            return $"epoch {s.Epoch,2}/{epochs}  trained before this run   test acc {100 * s.TestAccuracy:F2}%";
        var line = $"epoch {s.Epoch,2}/{epochs}  train loss {Loss(s.TrainLoss)}  test acc {100 * s.TestAccuracy:F2}%  " +
                   $"{s.SamplesPerSecond,7:N0} samples/s  {s.TrainSeconds,5:F1} s" + (s.PausedSeconds > 0 ? $" (paused {s.PausedSeconds:F1} s)" : "");
        var extra = new List<string>();
        if (!double.IsNaN(s.ValidationLoss)) extra.Add($"val loss {Loss(s.ValidationLoss)}  val acc {100 * s.ValidationAccuracy:F2}%");
        if (s.L1Penalty > 0) extra.Add($"L1 term {s.L1Penalty:G3}");
        if (s.L2Penalty > 0) extra.Add($"{(optimizer == OptimizerKind.AdamW ? "decay" : "L2")} term {s.L2Penalty:G3}");
        return extra.Count == 0 ? line : line + "\n          " + string.Join("  ", extra);
    }

    /// <summary>
    /// The live view on a terminal, redrawn every second: one row per worker (steps/s, last loss, compute
    /// and queueing time), the parameter server's weights version and round time, and the epoch's progress.
    /// Finished epochs are printed above it as plain lines.
    /// </summary>
    private static string DescribeCheckpoint(DistTrain.Cluster.Protocol.CheckpointSaved c) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"checkpoint {c.Path}: version {c.Version}, next epoch {c.Epoch} round {c.Round}, {c.Bytes:N0} bytes in {c.Seconds * 1000:F1} ms");

    /// <summary>
    /// A loss for the console: four decimals (<c>0.4312</c>), or four significant digits in exponent form from a million
    /// on (<c>6.5134E+027</c>), where a diverging run's fixed-point figures ran to 40 digits.
    /// </summary>
    internal static string Loss(double value) =>
        Math.Abs(value) < 1e6 || !double.IsFinite(value) ? value.ToString("F4", CultureInfo.CurrentCulture) : value.ToString("E4", CultureInfo.CurrentCulture);

    /// <summary>
    /// Prints lines on a terminal, also while the live view runs. Spectre.Console writes them from the top row of the
    /// view without clearing that area first, so a line shorter than the row it lands on would keep the row's tail (a
    /// piece of the table); each line is therefore padded with spaces to the terminal width less one column.
    /// </summary>
    internal static void WriteAbove(string text)
    {
        var width = Math.Max(1, AnsiConsole.Profile.Width - 1);
        foreach (var line in text.Split('\n'))
            AnsiConsole.WriteLine(line.Length < width ? line.PadRight(width) : line);
    }

    /// <summary>
    /// The live view's state and its rendering. The view is redrawn every second and whenever a line is written above it;
    /// an epoch's start and end also set its content (<see cref="Update"/>), so a line written above it is never followed
    /// by a view older than that line (with epochs shorter than a second it showed the state before the first epoch,
    /// <c>epoch 0/N ... step 0/0</c>, under every epoch line).
    /// </summary>
    internal sealed class LiveObserver(int epochs, OptimizerKind optimizer) : ITrainingObserver
    {
        /// <summary>Sets the live view's content (the display's <c>UpdateTarget</c>) while the view is up; null otherwise.</summary>
        public Action<Spectre.Console.Rendering.IRenderable>? Update { get; set; }

        private readonly object _gate = new();
        private int _epoch, _step, _steps;
        private long _version;
        private double _roundSeconds, _lossSum, _learningRate;
        private int _lossCount;
        private double[] _loss = [], _compute = [], _queueing = [];
        private long[] _workerSteps = [], _stepsAtLastRender = [];
        private long _lastRender = System.Diagnostics.Stopwatch.GetTimestamp();

        /// <summary>
        /// The epoch's mean step loss so far and the last step's learning rate; a dash for each until the epoch's first step
        /// reports (it showed <c>loss 0.0000  lr 0</c>, figures no step had). Call under the lock.
        /// </summary>
        private string StepFigures() =>
            _lossCount > 0 ? string.Create(CultureInfo.CurrentCulture, $"loss {Loss(_lossSum / _lossCount)}  lr {_learningRate:G4}") : "loss -  lr -";

        public void EpochStarted(int epoch, int steps, int samples)
        {
            lock (_gate) { _epoch = epoch; _steps = steps; _step = 0; _lossSum = 0; _lossCount = 0; }
            Update?.Invoke(Render());
        }

        public void EpochStepsChanged(int epoch, int steps)
        {
            lock (_gate) _steps = steps;
        }

        public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing)
        {
            lock (_gate) { _step = step + 1; _version = version; _roundSeconds = timing.RoundSeconds; _lossSum += meanLoss; _lossCount++; _learningRate = learningRate; }
        }

        public void WorkersReported(ReadOnlySpan<double> losses, ReadOnlySpan<double> computeSeconds, ReadOnlySpan<double> queueingSeconds)
        {
            lock (_gate)
            {
                if (_loss.Length != losses.Length)
                {
                    (_loss, _compute, _queueing) = (new double[losses.Length], new double[losses.Length], new double[losses.Length]);
                    (_workerSteps, _stepsAtLastRender) = (new long[losses.Length], new long[losses.Length]);
                }
                for (var i = 0; i < losses.Length; i++)
                {
                    if (double.IsNaN(losses[i])) continue; // no minibatch this round
                    _loss[i] = losses[i];
                    _compute[i] = computeSeconds[i];
                    _queueing[i] = queueingSeconds[i];
                    _workerSteps[i]++;
                }
            }
        }

        public void EpochCompleted(EpochSummary summary)
        {
            Update?.Invoke(Render()); // the finished epoch's last step, not the view of up to a second ago
            WriteAbove(Describe(summary, epochs, optimizer));
        }

        public void CheckpointSaved(DistTrain.Cluster.Protocol.CheckpointSaved c) => WriteAbove(DescribeCheckpoint(c));

        /// <summary>The view now: a row per worker (steps/s since the last rendering), the parameter server's line and the epoch's bar.</summary>
        public Spectre.Console.Rendering.IRenderable Render()
        {
            lock (_gate)
            {
                var now = System.Diagnostics.Stopwatch.GetTimestamp();
                var seconds = Math.Max(1e-3, System.Diagnostics.Stopwatch.GetElapsedTime(_lastRender, now).TotalSeconds);
                _lastRender = now;
                var table = new Table().Border(TableBorder.Rounded)
                    .AddColumn("worker").AddColumn(new TableColumn("steps/s").RightAligned()).AddColumn(new TableColumn("last loss").RightAligned())
                    .AddColumn(new TableColumn("compute").RightAligned()).AddColumn(new TableColumn("queueing").RightAligned());
                for (var i = 0; i < _loss.Length; i++)
                {
                    var rate = (_workerSteps[i] - _stepsAtLastRender[i]) / seconds;
                    _stepsAtLastRender[i] = _workerSteps[i];
                    table.AddRow($"{i}", $"{rate:N0}", Loss(_loss[i]), $"{1000 * _compute[i]:F2} ms", $"{1000 * _queueing[i]:F2} ms");
                }
                var fraction = _steps == 0 ? 0 : (double)_step / _steps;
                const int width = 40;
                var filled = (int)Math.Round(fraction * width);
                var bar = new string('━', filled) + new string('─', width - filled);
                var progress = _epoch == 0 // before the first epoch's start: no step, loss or rate to show yet
                    ? "training is starting"
                    : $"epoch {_epoch,2}/{epochs} {bar} {100 * fraction,3:F0}%  step {_step}/{_steps}  {StepFigures()}";
                var status = new Text($"parameter server: weights version {_version}, round {1000 * _roundSeconds:F2} ms\n{progress}");
                return new Rows(table, status);
            }
        }
    }

    /// <summary>
    /// Plain lines for logs: one when the epoch passes each quarter (the first step at or past 25%, 50% and 75% of its
    /// steps, with the percentage that step really is), none for the epoch's last step, which the epoch line reports.
    /// An epoch of fewer than four steps prints fewer lines (a one-step epoch none).
    /// </summary>
    private sealed class PlainObserver(int epochs, OptimizerKind optimizer) : ITrainingObserver
    {
        private int _steps;
        private int _nextQuarter;
        private double _lossSum;
        private int _lossCount;

        public void EpochStarted(int epoch, int steps, int samples)
        {
            _steps = steps;
            _nextQuarter = 1;
            _lossSum = 0;
            _lossCount = 0;
        }

        public void EpochStepsChanged(int epoch, int steps) => _steps = steps;

        public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing)
        {
            _lossSum += meanLoss;
            _lossCount++;
            var done = step + 1;
            if (_nextQuarter > 3 || done >= _steps || 4L * done < (long)_steps * _nextQuarter) return;
            while (_nextQuarter <= 3 && 4L * done >= (long)_steps * _nextQuarter) _nextQuarter++;
            Console.WriteLine($"epoch {epoch,2}/{epochs}  {100.0 * done / _steps,3:F0}%  step {done}/{_steps}  loss {Loss(_lossSum / _lossCount)}  lr {learningRate:G4}");
        }

        public void EpochCompleted(EpochSummary summary) => Console.WriteLine(Describe(summary, epochs, optimizer));

        public void CheckpointSaved(DistTrain.Cluster.Protocol.CheckpointSaved c) => Console.WriteLine(DescribeCheckpoint(c));
    }
}
