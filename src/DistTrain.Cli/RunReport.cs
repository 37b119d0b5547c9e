using System.Globalization;
using System.Text;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Metrics;
using DistTrain.Cluster.Protocol;
using DistTrain.Core;
using DistTrain.Core.Checkpoints;

namespace DistTrain.Cli;

/// <summary>
/// Records every step and epoch a run reports (passing them on to the console), and at the end writes
/// <c>steps.csv</c>, <c>epochs.csv</c> and <c>curves.png</c> (train loss per step and per epoch, test loss, validation
/// loss when the run holds out a validation split, test accuracy) into the run folder. It also keeps the staleness of the applied gradients and each worker's compute
/// time, which <c>summary.json</c> records. Given the run folder, it also writes <c>epochs.csv</c> and <c>steps.csv</c>
/// after each epoch's evaluation (<see cref="EpochCompleted"/>), on a thread of its own, so a process killed outright
/// (SIGKILL, the OOM killer) leaves the finished epochs and their steps on disk while a slow or stuck disk never holds up
/// training.
/// </summary>
/// <param name="next">The observer every report is passed on to (the console).</param>
/// <param name="runDirectory">The run folder that <c>epochs.csv</c> and <c>steps.csv</c> are written into after each epoch;
/// null writes them only at the end (<see cref="Write"/>).</param>
/// <param name="warn">Where the warning line of a per-epoch write that failed goes; null for <see cref="CliConsole.Notice"/>.</param>
/// <param name="clippedCount">The gradients clipped so far in this process, read when the report is created and by
/// <see cref="NotLearning"/> (the difference is this run's); null for <see cref="DistTrainMetrics.ClippedSteps"/>.</param>
internal sealed class RunReport(ITrainingObserver next, string? runDirectory = null, Action<string>? warn = null, Func<long>? clippedCount = null) : ITrainingObserver
{
    private readonly Func<long> _clippedCount = clippedCount ?? (() => DistTrainMetrics.ClippedSteps);
    private readonly long _clippedAtStart = (clippedCount ?? (() => DistTrainMetrics.ClippedSteps))();

    /// <summary>The header of <c>steps.csv</c>.</summary>
    internal const string StepsHeader = "epoch,step,version,samples,train_loss,learning_rate,round_seconds,compute_seconds,update_seconds,messaging_seconds,waiting_seconds";

    /// <summary>The header of <c>epochs.csv</c>. Its <c>samples_per_second</c> is the one train prints
    /// (<see cref="EpochSummary.SamplesPerSecond"/>: the samples this run trained over <c>train_seconds</c> less
    /// <c>paused_seconds</c>, the time paused below Cluster:MinWorkers).</summary>
    internal const string EpochsHeader = "epoch,version,train_loss,test_loss,test_accuracy,validation_loss,validation_accuracy,l1_penalty,l2_penalty,samples_per_second,train_seconds,evaluation_seconds,paused_seconds";

    /// <summary>
    /// How long an epoch waits for its <c>epochs.csv</c> write before it goes on without it (and warns once): normally the
    /// row is on disk before the epoch's line is printed, but a slow or stuck disk must not hold up the training actors that
    /// report the epoch (their stall and stop timeouts run on the same thread).
    /// </summary>
    internal static readonly TimeSpan EpochsWriteWait = TimeSpan.FromSeconds(1);

    // The per-epoch writes of epochs.csv: one background writer at a time, which writes until no newer epoch is waiting,
    // so the newest content is always written last. Fields guarded by _epochsFile (taken before _gate).
    private readonly object _epochsFile = new();
    private Task _epochsWriter = Task.CompletedTask;
    private bool _epochsWriterRunning;
    private bool _epochsDirty;       // an epoch finished since the writer took the file's content
    private int _epochsNewest;       // that epoch, for the warnings
    private bool _epochsClosed;      // the end of the run writes the file now: no further background write
    private bool _epochsFileFailing; // the last per-epoch write of epochs.csv failed and was warned of
    private bool _stepsFileFailing;  // the same for steps.csv
    private bool _epochsSlow;        // a write outlasted EpochsWriteWait and was warned of: epochs no longer wait for it
    private readonly StringBuilder _epochRows = new(); // epochs.csv's rows so far, formatted once each (under _gate)
    private readonly StringBuilder _stepRows = new();  // steps.csv's rows of _steps[.._stepRowCount], formatted once each (under _gate)
    private int _stepRowCount;
    private int _stepsAtEpochEnd;                      // _steps.Count when the newest epoch finished: what a per-epoch steps.csv holds (under _gate)

    /// <summary>Called on the background writer before each per-epoch write of <c>epochs.csv</c> and <c>steps.csv</c>: tests hold it up there, as a slow disk would.</summary>
    internal Action? EpochsWriteStarting { get; init; }

    private readonly List<(int Epoch, int Step, long Version, int Samples, double Loss, double LearningRate, RoundTiming Timing)> _steps = [];
    private readonly List<EpochSummary> _epochs = [];
    private readonly object _gate = new();
    private readonly Dictionary<int, int> _stepsOfEpoch = [];
    private readonly List<string> _vanishing = []; // tensors a vanishing-gradient warning named, in the order warned

    /// <summary>
    /// Takes note of a warning the training actors logged (<see cref="CommandLineLogger.WarningLogged"/>): a vanishing-gradient
    /// one (<see cref="DistTrain.Core.Diagnostics.GradientHealthMonitor.VanishingWarningStart"/>) makes <see cref="NotLearning"/>
    /// name vanishing gradients and the initializer as the cause. Others are ignored.
    /// </summary>
    public void ActorWarned(string message)
    {
        const string start = DistTrain.Core.Diagnostics.GradientHealthMonitor.VanishingWarningStart;
        // A bias before a BatchNorm has a zero gradient by design (its warning says so), and every gradient vanishes when the
        // loss is about 0 (a model that fits its minibatches): neither is a sign of a dying signal.
        if (!message.StartsWith(start, StringComparison.Ordinal) || message.Contains("is a BatchNorm", StringComparison.Ordinal)
            || message.Contains(DistTrain.Core.Diagnostics.GradientHealthMonitor.LossAboutZero, StringComparison.Ordinal)) return;
        var end = message.IndexOf(' ', start.Length);
        var tensor = end < 0 ? message[start.Length..] : message[start.Length..end];
        lock (_gate)
            if (!_vanishing.Contains(tensor)) _vanishing.Add(tensor);
    }

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

    /// <summary>
    /// Where a run that diverged stopped, for <c>summary.json</c>'s <c>stopped</c> and the plot's title, in the form a
    /// cancelled run's has: "diverged at epoch 4, step 13 of 32". The step is the failed one as the divergence names it
    /// (<paramref name="epoch"/>, <paramref name="step"/>, 1-based), which counts the steps a resumed run or a takeover did
    /// not apply itself; when those are unknown (0), the step after the last one applied in the epoch in progress;
    /// "diverged before the first epoch" when none had started.
    /// </summary>
    public string DivergedAt(int epoch = 0, int step = 0)
    {
        lock (_gate)
        {
            if (epoch > 0 && step > 0)
                return _stepsOfEpoch.TryGetValue(epoch, out var planned)
                    ? $"diverged at epoch {epoch}, step {step} of {planned}"
                    : $"diverged at epoch {epoch}, step {step}";
            return StoppedInProgress("diverged");
        }
    }

    /// <summary>
    /// Where a run that failed (not diverged: a worker's error, a lost node) stopped, in the same form as
    /// <see cref="DivergedAt"/>: "failed at epoch 4, step 13 of 32", the step after the last one applied in the epoch in
    /// progress; "failed before the first epoch" when none had started.
    /// </summary>
    public string FailedAt()
    {
        lock (_gate) return StoppedInProgress("failed");
    }

    private string StoppedInProgress(string how)
    {
        if (_stepsOfEpoch.Count == 0) return $"{how} before the first epoch";
        var current = _stepsOfEpoch.Keys.Max(); // the epoch in progress
        var applied = _steps.Count(s => s.Epoch == current);
        return $"{how} at epoch {current}, step {applied + 1} of {_stepsOfEpoch[current]}";
    }

    /// <summary>
    /// Where the plot puts each step on its epochs axis: epoch E's step s (from 0) of its S planned at E − 1 + (s + 1) / S,
    /// so the end of epoch E is at E, where the epoch's own points are drawn.
    /// </summary>
    internal double[] StepPositions()
    {
        lock (_gate)
            return [.. _steps.Select(s => s.Epoch - 1 + (s.Step + 1) / (double)Math.Max(1, _stepsOfEpoch.GetValueOrDefault(s.Epoch, 1)))];
    }

    /// <summary>How many times the first step's loss the last epoch's mean training loss must be for <see cref="BlewUp"/>.</summary>
    internal const double BlownUpFactor = 1000;

    /// <summary>
    /// A warning for a run that diverged without reaching NaN (a NaN or infinite loss stops the run with an error): the mean
    /// training loss of its last epoch is finite and at least <see cref="BlownUpFactor"/> times the loss of this run's first
    /// step. It names both losses and the last epoch's test loss, and the fixes: a smaller Optimizer:LearningRate, and
    /// Optimizer:GradientClipNorm when it is off. Null otherwise (no step or epoch yet, or a first loss of 0).
    /// </summary>
    /// <param name="options">The run's options (the learning rate and clipping are named).</param>
    public string? BlewUp(DistTrain.Core.Configuration.TrainingOptions options)
    {
        EpochSummary last;
        double firstLoss;
        lock (_gate)
        {
            if (_epochs.Count == 0 || _steps.Count == 0) return null;
            (last, firstLoss) = (_epochs[^1], _steps[0].Loss);
        }
        if (!(firstLoss > 0) || !double.IsFinite(last.TrainLoss) || last.TrainLoss < BlownUpFactor * firstLoss) return null;
        var o = options.Optimizer;
        return FormattableString.Invariant(
                $"the training loss rose to {ConsoleProgress.Loss(last.TrainLoss)} (epoch {last.Epoch}'s mean), {last.TrainLoss / firstLoss:G2} times the first step's ") +
            FormattableString.Invariant(
                $"{ConsoleProgress.Loss(firstLoss)}, and the test loss is {ConsoleProgress.Loss(last.TestLoss)}: the run diverged without reaching NaN, and its ") +
            FormattableString.Invariant($"final weights are of little use. Lower Optimizer:LearningRate = {o.LearningRate:G4}") +
            (o.GradientClipNorm > 0 ? "." : " or set Optimizer:GradientClipNorm to bound each update.");
    }

    /// <summary>
    /// A warning for a run that plainly learned nothing: it trained at least two epochs from its first (not a resume), the
    /// mean training loss of its last epoch is not 1% below that of its first (each the mean over the same samples), and
    /// the final test accuracy is at most 1.5 times chance (1 / <paramref name="classCount"/>). A loss that rose by 1% or more
    /// is called a rise, and the one cause named is then a learning rate too large (the updates overshoot), with
    /// Optimizer:GradientClipNorm when it is off; a smaller change is told as a rise or fall by less than 1%, or as none when
    /// the two losses print alike. Otherwise it names the likely causes:
    /// vanishing gradients and the initializer when vanishing-gradient warnings fired during the run (<see cref="ActorWarned"/>);
    /// Optimizer:GradientClipNorm when it clipped every step (under Cluster:Compression TopK every push), so that the clip, not
    /// the gradient, set each update; a learning rate the steps used (<see cref="StepApplied"/>: the schedule's, with warmup
    /// and scaling) below the usual range for the optimizer while the configured one is not; a configured learning rate
    /// outside that range. Without any of these, a learning rate inside the range is said not to be the likely cause. It
    /// also names labels that do not depend on the inputs. Null otherwise.
    /// </summary>
    /// <param name="options">The run's options (the optimizer, its learning rate, schedule and clipping, and the initializer are named).</param>
    /// <param name="classCount">The model's outputs (classes); below 2 gives null.</param>
    /// <param name="testAccuracy">The final test accuracy, as a fraction.</param>
    public string? NotLearning(DistTrain.Core.Configuration.TrainingOptions options, int classCount, double testAccuracy)
    {
        EpochSummary first, last;
        string[] vanishing;
        double[] rates;
        lock (_gate)
        {
            if (classCount < 2 || _epochs.Count < 2 || _epochs[0].Epoch != 1 || _epochs[0].TrainSamples == 0) return null;
            (first, last, vanishing, rates) = (_epochs[0], _epochs[^1], [.. _vanishing], [.. _steps.Select(s => s.LearningRate)]);
        }
        var chance = 1.0 / classCount;
        // A NaN loss is the divergence's to report; a loss that fell means it learned, however slowly.
        if (!(last.TrainLoss >= 0.99 * first.TrainLoss) || testAccuracy > 1.5 * chance) return null;
        var o = options.Optimizer;
        var (low, high, typical) = o.Kind == Core.Optimization.OptimizerKind.Sgd ? (0.01, 0.1, "0.01 to 0.1") : (1e-4, 1e-2, "1e-4 to 1e-2");
        var usualRate = o.LearningRate >= low && o.LearningRate <= high;
        var rose = last.TrainLoss >= 1.01 * first.TrainLoss && last.TrainLoss > first.TrainLoss;
        // Losses that print alike (weights that did not move, up to the order of the sums) did not change, to the reader's eye.
        var trend = rose ? "rose"
            : ConsoleProgress.Loss(last.TrainLoss) == ConsoleProgress.Loss(first.TrainLoss) ? "did not change"
            : last.TrainLoss > first.TrainLoss ? "rose by less than 1%" : "fell by less than 1%";
        var text = new StringBuilder(FormattableString.Invariant(
                $"the model learned nothing: the training loss {trend} (epoch 1: {ConsoleProgress.Loss(first.TrainLoss)}, epoch {last.Epoch}: {ConsoleProgress.Loss(last.TrainLoss)}) ") +
            FormattableString.Invariant(
                $"and the test accuracy ({100 * testAccuracy:F2}%) is near chance ({100 * chance:F2}% for {classCount} classes). "));
        if (rose)
        {
            // A loss that rose over the run is no stall: the updates overshot, whatever else the run warned of.
            text.Append(CultureInfo.InvariantCulture, $"A rising training loss means the updates overshoot: lower Optimizer:LearningRate = {o.LearningRate:G4} ")
                .Append(usualRate
                    ? FormattableString.Invariant($"(within the usual range for {o.Kind}, {typical}, but too large for this model and data)")
                    : FormattableString.Invariant($"(for {o.Kind} it is usually {typical})"))
                .Append(o.GradientClipNorm > 0 ? "." : ", or set Optimizer:GradientClipNorm to bound each update.");
            return text.ToString();
        }
        if (vanishing.Length > 0)
            text.Append(
                $"The gradients vanished (the vanishing-gradient warnings named {string.Join(", ", vanishing.Take(4))}{(vanishing.Length > 4 ? ", ..." : "")}), so the weights barely moved: " +
                $"with Model:Initializer:Kind = {TrainCommand.DescribeInitializer(options.Model.Initializer)} the signal dies out through the layers. " +
                (options.Model.Initializer.Kind is Core.Initialization.InitializerKind.HeNormal or Core.Initialization.InitializerKind.HeUniform
                    or Core.Initialization.InitializerKind.XavierNormal or Core.Initialization.InitializerKind.XavierUniform
                    ? "The initializer is already scaled to fan_in/fan_out: use fewer saturating activations (Sigmoid, Tanh) in a row, or BatchNorm between the layers. "
                    : "Use HeNormal for ReLU or XavierUniform for Tanh and Sigmoid (Model:Initializer:Kind), or fewer saturating activations (Sigmoid, Tanh) in a row. "));
        // The rate the steps used: half of them used at most the median. Below the usual range while the configured rate is
        // not, the schedule (or the staleness-aware rate) kept the steps too small.
        var used = rates.Order().ToArray();
        var median = used.Length > 0 ? used[(used.Length - 1) / 2] : o.LearningRate;
        var clipped = ClippedEveryStep(options, rates.Length, median);
        if (clipped is not null) text.Append(clipped);
        var lowered = used.Length > 0 && median < low && o.LearningRate >= low;
        if (lowered)
        {
            var schedule = o.Schedule;
            var scheduled = schedule.Kind != Core.Optimization.LearningRateScheduleKind.Constant || schedule.WarmupSteps > 0;
            var by = scheduled
                ? $"Optimizer:Schedule ({Core.Optimization.LearningRateSchedule.Describe(schedule)}) lowered it"
                : options.Training.StalenessAwareLearningRate
                    ? "Training:StalenessAwareLearningRate divided it by the gradients' staleness"
                    : "it was lowered";
            text.Append(FormattableString.Invariant(
                $"The steps used a learning rate below the usual range for {o.Kind} ({typical}): {median:G3} at the median of the run's {Counts.Of(used.Length, "step")} ") +
                FormattableString.Invariant($"and {rates[^1]:G3} at the last, where Optimizer:LearningRate = {o.LearningRate:G4}; {by}, so the weights barely moved. ") +
                (scheduled ? "Check Optimizer:Schedule's Gamma, MinLearningRate, WarmupSteps and WarmupStartFactor against the run's length. " : ""));
        }
        else if (!usualRate)
            text.Append(CultureInfo.InvariantCulture,
                $"Check Optimizer:LearningRate = {o.LearningRate:G4}: for {o.Kind} it is usually {typical}; much smaller does not move the weights, much larger can stall them. ");
        else if (vanishing.Length == 0 && clipped is null)
            text.Append(FormattableString.Invariant(
                $"Optimizer:LearningRate = {o.LearningRate:G4} is within the usual range for {o.Kind} ({typical}), so it is an unlikely cause; check Model:Initializer:Kind = ") +
                $"{TrainCommand.DescribeInitializer(options.Model.Initializer)} and the layers. ");
        var causeNamed = vanishing.Length > 0 || clipped is not null || lowered || !usualRate;
        text.Append(causeNamed ? "Otherwise check" : "Check also").Append(" that the labels belong to their inputs (the label column, the class folders).");
        return text.ToString();
    }

    /// <summary>
    /// The sentence naming Optimizer:GradientClipNorm as the cause when it clipped every step of the run (at least 99% of
    /// them, a step in flight at either end aside): the parameter server's clipped steps against <paramref name="steps"/>, or
    /// under Cluster:Compression TopK the workers' clipped pushes against the pushes applied. Null when clipping is off or
    /// left steps unclipped. The counts are this process's (<c>clippedCount</c>): in cluster mode under TopK the workers on
    /// other nodes are not counted, and nothing is said.
    /// </summary>
    /// <param name="options">The run's options.</param>
    /// <param name="steps">The steps this run applied.</param>
    /// <param name="rate">The learning rate the steps typically used (the median), for the update's size.</param>
    private string? ClippedEveryStep(DistTrain.Core.Configuration.TrainingOptions options, int steps, double rate)
    {
        var o = options.Optimizer;
        if (o.GradientClipNorm <= 0 || steps == 0) return null;
        var clipped = _clippedCount() - _clippedAtStart;
        var onWorkers = options.ClipsOnWorkers;
        var gradients = onWorkers ? WorkerCompute.Summarize().Sum(w => w.Reports) : steps;
        if (gradients == 0 || clipped < 0.99 * gradients) return null;
        var what = onWorkers
            ? $"every worker's push ({Counts.Number(clipped)} clipped, {Counts.Of(gradients, "push", "pushes")} applied; under Cluster:Compression TopK each worker clips its own to GradientClipNorm / sqrt(gradients per step))"
            : $"every step's gradient ({Counts.Number(Math.Min(clipped, steps))} of {Counts.Of(steps, "step")})";
        return string.Create(CultureInfo.InvariantCulture,
            $"Optimizer:GradientClipNorm = {o.GradientClipNorm:G3} clipped {what}, so the clip, not the gradient, set each update: ") +
            (o.Kind == Core.Optimization.OptimizerKind.Sgd
                ? string.Create(CultureInfo.InvariantCulture,
                    $"the learning rate times a vector of norm {o.GradientClipNorm:G3}, at most {rate * o.GradientClipNorm:G3} a step at the steps' median learning rate {rate:G3} (before momentum), likely too small to move the weights. ")
                : string.Create(CultureInfo.InvariantCulture,
                    $"{o.Kind} stepped on a gradient of norm {o.GradientClipNorm:G3}, whose elements can fall below Optimizer:Epsilon and then move the weights too little. ")) +
            "Raise GradientClipNorm above the usual gradient norm (disttrain_training_gradient_norm gives it per tensor) or set it to 0. ";
    }

    /// <summary>True once a step of this run was applied: there is a report to write.</summary>
    public bool AnyStep
    {
        get { lock (_gate) return _steps.Count > 0; }
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

    /// <summary>
    /// The run starts from a checkpoint of weights <paramref name="version"/>, next epoch <paramref name="epoch"/>. In a run
    /// this report has recorded before (a job restarted on its parameter-server node after a lost shard node), the steps past
    /// that version and the epochs from <paramref name="epoch"/> on are trained again: they are dropped, so <c>steps.csv</c>,
    /// <c>epochs.csv</c> and the plot hold each once, from the second go. A new or resumed run has recorded nothing.
    /// </summary>
    public void RunResumed(int epoch, int round, long version)
    {
        lock (_gate)
        {
            var firstAgain = _steps.FindIndex(s => s.Version > version);
            if (firstAgain >= 0) _steps.RemoveRange(firstAgain, _steps.Count - firstAgain);
            var epochsBefore = _epochs.Count;
            _epochs.RemoveAll(e => e.Epoch >= epoch);
            foreach (var later in _stepsOfEpoch.Keys.Where(e => e > epoch).ToList()) _stepsOfEpoch.Remove(later);
            // A per-epoch steps.csv holds the steps of the finished epochs: those before the resumed one.
            _stepsAtEpochEnd = Math.Min(_stepsAtEpochEnd, _steps.FindLastIndex(s => s.Epoch < epoch) + 1);
            if (_stepRowCount > _steps.Count)
            {
                _stepRows.Clear(); // formatted again up to the steps kept when next written
                _stepRowCount = 0;
            }
            if (_epochs.Count < epochsBefore)
            {
                _epochRows.Clear();
                foreach (var e in _epochs) AppendEpochRow(e);
            }
        }
        next.RunResumed(epoch, round, version);
    }

    /// <summary>Appends <paramref name="e"/>'s row of <c>epochs.csv</c> (under _gate).</summary>
    private void AppendEpochRow(EpochSummary e) => _epochRows.Append(CultureInfo.InvariantCulture,
        $"{e.Epoch},{e.Version},{e.TrainLoss:R},{e.TestLoss:R},{e.TestAccuracy:R},{e.ValidationLoss:R},{e.ValidationAccuracy:R},{e.L1Penalty:R},{e.L2Penalty:R},{e.SamplesPerSecond:R},{e.TrainSeconds:R},{e.EvaluationSeconds:R},{e.PausedSeconds:R}\n");

    /// <summary>
    /// Records the finished (evaluated) epoch and, given the run folder, has <c>epochs.csv</c> written with it
    /// (<see cref="WriteEpochsSoFar"/>) before passing it on: the epoch's console line shows after its row is on disk,
    /// unless the write takes longer than <see cref="EpochsWriteWait"/>.
    /// </summary>
    public void EpochCompleted(EpochSummary summary)
    {
        lock (_gate)
        {
            _epochs.Add(summary);
            _stepsAtEpochEnd = _steps.Count;
            AppendEpochRow(summary);
        }
        if (runDirectory is not null) WriteEpochsSoFar(runDirectory, summary.Epoch);
        next.EpochCompleted(summary);
    }

    /// <summary>
    /// Has <c>epochs.csv</c> written with the epochs finished so far, as the end of the run writes it, by the background
    /// writer (<see cref="WriteEpochsInBackground"/>), and waits for it at most <see cref="EpochsWriteWait"/>. A write that
    /// takes longer is one warning; the epochs after it do not wait until a write has finished again.
    /// </summary>
    /// <param name="directory">The run folder.</param>
    /// <param name="epoch">The epoch just finished, named in the warnings.</param>
    private void WriteEpochsSoFar(string directory, int epoch)
    {
        var path = Path.Combine(directory, RunFiles.Epochs);
        Task writer;
        lock (_epochsFile)
        {
            if (_epochsClosed) return;
            _epochsDirty = true;
            _epochsNewest = epoch;
            if (!_epochsWriterRunning)
            {
                _epochsWriterRunning = true;
                _epochsWriter = Task.Run(() => WriteEpochsInBackground(path));
            }
            if (_epochsSlow) return;
            writer = _epochsWriter;
        }
        if (writer.Wait(EpochsWriteWait)) return;
        lock (_epochsFile)
        {
            if (_epochsSlow) return;
            _epochsSlow = true;
        }
        (warn ?? CliConsole.Notice)($"warning: writing {path} and {RunFiles.Steps} after epoch {epoch} takes longer than {EpochsWriteWait.TotalSeconds:0} s; training goes on " +
            "without waiting for it, and each epoch's row reaches the file when the disk takes it. Check that disk (a slow network share, a stuck " +
            "volume): a run killed meanwhile may leave its last epochs out of that file.");
    }

    /// <summary>
    /// The background writer: replaces <c>epochs.csv</c>, then <c>steps.csv</c> (<see cref="AtomicFile"/>, not flushed to the
    /// disk: whole against a killed process, which is what it is for) until no newer epoch waits. A process killed mid-write
    /// leaves the previous whole files (and at most a temporary <c>NAME.*.tmp</c> beside them), never a torn row. A failure
    /// (a full disk, no permission) does not stop training: one warning line names the file, the cause and the fix, and the
    /// next epoch tries again (warning again only after a write succeeded in between); the end of the run writes the files as
    /// always.
    /// </summary>
    private void WriteEpochsInBackground(string path)
    {
        while (true)
        {
            int epoch;
            lock (_epochsFile)
            {
                if (!_epochsDirty || _epochsClosed)
                {
                    _epochsWriterRunning = false;
                    return;
                }
                _epochsDirty = false;
                epoch = _epochsNewest;
            }
            EpochsWriteStarting?.Invoke();
            // steps.csv holds the steps up to the newest finished epoch's end, not those of the epoch in progress since.
            int upTo;
            lock (_gate) upTo = _stepsAtEpochEnd;
            var steps = Path.Combine(Path.GetDirectoryName(path)!, RunFiles.Steps);
            // steps.csv only after epochs.csv was written: a failure of both (a folder gone, a full disk) is one warning.
            var written = WriteSeries(path, () => WriteEpochsFile(path, durable: false), epoch, isSteps: false)
                && WriteSeries(steps, () => WriteStepsFile(steps, durable: false, upTo), epoch, isSteps: true);
            if (written) lock (_epochsFile) _epochsSlow = false;
        }
    }

    /// <summary>
    /// One per-epoch write of <paramref name="file"/> (<c>epochs.csv</c> or <c>steps.csv</c>); false when it failed. A failure
    /// is one warning line naming the file, until a write of that file succeeds again.
    /// </summary>
    private bool WriteSeries(string file, Action write, int epoch, bool isSteps)
    {
        try
        {
            write();
            lock (_epochsFile) (isSteps ? ref _stepsFileFailing : ref _epochsFileFailing) = false;
            return true;
        }
        catch (Exception e) // IOException, UnauthorizedAccessException, or anything else: a record, never a crash of the run
        {
            lock (_epochsFile)
            {
                ref var failing = ref isSteps ? ref _stepsFileFailing : ref _epochsFileFailing;
                if (failing) return false;
                failing = true;
            }
            (warn ?? CliConsole.Notice)($"warning: {file} could not be written after epoch {epoch} ({e.Message.TrimEnd('.')}); training goes on. " +
                "Free space on that disk or check its permissions: it is tried again after each epoch and written at the run's end, " +
                $"but until then a run that is killed leaves no record of its finished {(isSteps ? "steps" : "epochs")} there.");
            return false;
        }
    }

    /// <summary>The text of <c>epochs.csv</c>: <see cref="EpochsHeader"/> and a row per epoch finished so far.</summary>
    internal string EpochsCsv()
    {
        lock (_gate) return EpochsHeader + "\n" + _epochRows;
    }

    /// <summary>
    /// The text of <c>steps.csv</c>: <see cref="StepsHeader"/> and a row per step applied so far. Each row is formatted once,
    /// here (on the writer's thread, not the one that reports the steps).
    /// </summary>
    /// <param name="upTo">How many of the steps applied so far to write; null for all of them.</param>
    internal string StepsCsv(int? upTo = null)
    {
        lock (_gate)
        {
            var inv = CultureInfo.InvariantCulture;
            for (var end = Math.Min(upTo ?? _steps.Count, _steps.Count); _stepRowCount < end; _stepRowCount++)
            {
                var s = _steps[_stepRowCount];
                _stepRows.Append(inv, $"{s.Epoch},{s.Step},{s.Version},{s.Samples},{s.Loss:R},{s.LearningRate:R},{s.Timing.RoundSeconds:R},{s.Timing.MaxComputeSeconds:R},{s.Timing.UpdateSeconds:R},{s.Timing.MessagingSeconds:R},{s.Timing.WaitingForWeightsSeconds:R}\n");
            }
            return StepsHeader + "\n" + _stepRows;
        }
    }

    /// <summary>Replaces <paramref name="path"/> with <see cref="StepsCsv"/>, atomically (and, when <paramref name="durable"/>, flushed to the disk).</summary>
    /// <exception cref="IOException">The write failed; <paramref name="path"/> is unchanged.</exception>
    /// <exception cref="UnauthorizedAccessException">The folder or the file may not be written.</exception>
    private void WriteStepsFile(string path, bool durable, int? upTo = null)
    {
        var bytes = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(StepsCsv(upTo));
        AtomicFile.Write(path, stream => stream.Write(bytes), durable);
    }

    /// <summary>Replaces <paramref name="path"/> with <see cref="EpochsCsv"/>, atomically (and, when <paramref name="durable"/>, flushed to the disk).</summary>
    /// <exception cref="IOException">The write failed; <paramref name="path"/> is unchanged.</exception>
    /// <exception cref="UnauthorizedAccessException">The folder or the file may not be written.</exception>
    private void WriteEpochsFile(string path, bool durable)
    {
        var bytes = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(EpochsCsv());
        AtomicFile.Write(path, stream => stream.Write(bytes), durable);
    }

    /// <summary>Writes the CSV files and the plot; returns the plot's path.</summary>
    /// <param name="runDirectory">The run folder.</param>
    /// <param name="loss">The run's Model:Loss (<see cref="DistTrain.Core.Models.LossTypes"/>), which names the loss axis.</param>
    /// <param name="result">The saved weights' result: with early stopping its kept epoch is what the title describes;
    /// null describes the last epoch.</param>
    /// <param name="stopped">Why the run stopped before its end (cancelled, failed, diverged), put in the title; null for a
    /// finished run.</param>
    public string Write(string runDirectory, string loss, TrainingResult? result = null, string? stopped = null)
    {
        // No background write starts from now on, and one in progress finishes first: it must not rename an older file over this one.
        Task writer;
        lock (_epochsFile)
        {
            _epochsClosed = true;
            writer = _epochsWriter;
        }
        writer.Wait();
        lock (_gate)
        {
            // Atomically, as after each epoch: a kill during these writes leaves the files of the last epoch, not truncated ones.
            WriteStepsFile(Path.Combine(runDirectory, RunFiles.Steps), durable: true);
            WriteEpochsFile(Path.Combine(runDirectory, RunFiles.Epochs), durable: true);

            var path = Path.Combine(runDirectory, RunFiles.Curves);
            CurvesPlot(loss, result, stopped).SavePng(path, 1000, 600);
            return path;
        }
    }

    /// <summary>
    /// The chart of <c>curves.png</c>: the losses on the left axis, per step and per epoch, and the test accuracy on the
    /// right. A series with no point (no finished epoch, as in a run that diverged in its first epoch) is left out, legend
    /// entry included, and so is the right axis when no epoch was scored: it would otherwise show a made-up range.
    /// </summary>
    /// <param name="loss">The loss axis' label (the loss function).</param>
    /// <param name="result">The saved weights' result; null for the last epoch.</param>
    /// <param name="stopped">Why the run stopped early; null for a finished run.</param>
    internal ScottPlot.Plot CurvesPlot(string loss, TrainingResult? result = null, string? stopped = null)
    {
        lock (_gate)
        {
            var inv = CultureInfo.InvariantCulture;
            // One chart: losses on the left axis, test accuracy on the right.
            var plot = new ScottPlot.Plot();
            var series = LossSeries(_epochs);
            // Losses over many decades (a run that diverged) are drawn on a log scale, or all but the largest lie on zero.
            var logScale = UsesLogScale(_steps.Select(s => s.Loss).Concat(series.SelectMany(l => l.Values)));
            (double[] X, double[] Y) Points(IEnumerable<(double X, double Y)> points)
            {
                var drawn = points.Select(p => (p.X, Y: logScale ? Math.Log10(p.Y) : p.Y)).Where(p => double.IsFinite(p.Y)).ToList();
                return ([.. drawn.Select(p => p.X)], [.. drawn.Select(p => p.Y)]);
            }
            // Each step at its place in its own epoch, on the epochs' axis: an unfinished epoch's steps (a diverged or cancelled
            // run) and a resumed run's, which start part-way, land where they belong.
            var (stepX, stepY) = Points(StepPositions().Zip(_steps, (x, s) => (x, s.Loss)));
            var stepLoss = plot.Add.ScatterLine(stepX, stepY);
            stepLoss.LegendText = "train loss (per step)";
            stepLoss.LineWidth = 1;
            stepLoss.Color = ScottPlot.Colors.LightSteelBlue;
            ScottPlot.Color[] lossColors = [ScottPlot.Colors.Navy, ScottPlot.Colors.OrangeRed, ScottPlot.Colors.DarkViolet];
            for (var i = 0; i < series.Count; i++)
            {
                var (x, y) = Points(series[i].Epochs.Zip(series[i].Values));
                if (x.Length == 0) continue;
                var line = plot.Add.Scatter(x, y);
                line.LegendText = series[i].Legend;
                line.Color = lossColors[i % lossColors.Length];
            }
            if (logScale)
                plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic
                {
                    IntegerTicksOnly = true,
                    MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
                    LabelFormatter = y => "1e" + y.ToString("0", inv),
                };
            if (_epochs.Count > 0)
            {
                var epochX = _epochs.Select(e => (double)e.Epoch).ToArray();
                var testAccuracy = plot.Add.Scatter(epochX, _epochs.Select(e => 100 * e.TestAccuracy).ToArray());
                testAccuracy.LegendText = "test accuracy (%, right axis)";
                testAccuracy.Color = ScottPlot.Colors.ForestGreen;
                testAccuracy.Axes.YAxis = plot.Axes.Right;
                plot.Axes.Right.Label.Text = "test accuracy (%)";
            }
            if (KeptEarlierEpoch(_epochs, result) is { } kept)
            {
                var line = plot.Add.VerticalLine(kept);
                line.LinePattern = ScottPlot.LinePattern.Dashed;
                line.Color = ScottPlot.Colors.Gray;
                line.LegendText = $"kept epoch {kept} (early stopping)";
            }
            plot.Title(Title(_epochs, result, stopped));
            plot.XLabel("epoch");
            plot.YLabel(LossAxisLabel(loss, logScale));
            plot.ShowLegend(ScottPlot.Alignment.UpperCenter);
            return plot;
        }
    }

    /// <summary>
    /// The title of <c>curves.png</c>: the epochs trained and the test accuracy of the weights the run kept, as the final
    /// console line gives it. With early stopping that kept an earlier epoch, "13 epochs, kept epoch 11: test accuracy
    /// 77.20%"; a resumed run names its epochs ("epochs 4 to 6"); a run stopped before its end (<paramref name="stopped"/>)
    /// leads with why, "Diverged at epoch 4, step 1 of 32: 3 epochs, test accuracy 20.40% after epoch 3".
    /// </summary>
    /// <param name="epochs">The epochs this run finished, in order.</param>
    /// <param name="result">The saved weights' result (its kept epoch); null for the last epoch.</param>
    /// <param name="stopped">Why the run stopped early, e.g. "diverged at epoch 4, step 1 of 32"; null for a finished run.</param>
    internal static string Title(IReadOnlyList<EpochSummary> epochs, TrainingResult? result, string? stopped)
    {
        var inv = CultureInfo.InvariantCulture;
        // A stopped run leads with why ("Diverged at epoch 4, step 1 of 32"), which keeps the title to the plot's width.
        var run = stopped is { Length: > 0 } ? char.ToUpperInvariant(stopped[0]) + stopped[1..] : "DistTrain run";
        if (epochs.Count == 0) return $"{run}: no epoch finished";
        int first = epochs[0].Epoch, last = epochs[^1].Epoch;
        var trained = first == 1 ? $"{epochs.Count} epoch{(epochs.Count == 1 ? "" : "s")}"
            : first == last ? $"epoch {last}" : $"epochs {first} to {last}";
        string Accuracy(EpochSummary e) => (100 * e.TestAccuracy).ToString("F2", inv) + "%";
        if (stopped is not null) return $"{run}: {trained}, test accuracy {Accuracy(epochs[^1])} after epoch {last}";
        if (KeptEarlierEpoch(epochs, result) is { } kept) return $"{run}: {trained}, kept epoch {kept}: test accuracy {Accuracy(result!.FinalEpoch)}";
        return $"{run}: {trained}, final test accuracy {Accuracy(epochs[^1])}";
    }

    /// <summary>The epoch early stopping kept when it is not the last one trained; null otherwise (also without a result).</summary>
    private static int? KeptEarlierEpoch(IReadOnlyList<EpochSummary> epochs, TrainingResult? result) =>
        result?.BestEpoch is { } best && epochs.Count > 0 && best != epochs[^1].Epoch ? best : null;

    /// <summary>The loss axis's label for Model:Loss <paramref name="loss"/>: "cross-entropy loss" or "mean squared error"
    /// (a name it does not know is given as it is), with " (log scale)" when <paramref name="logScale"/>.</summary>
    internal static string LossAxisLabel(string loss, bool logScale = false) => DistTrain.Core.Models.LossTypes.Canonical(loss) switch
    {
        DistTrain.Core.Models.LossTypes.SoftmaxCrossEntropy => "cross-entropy loss",
        DistTrain.Core.Models.LossTypes.MeanSquaredError => "mean squared error",
        _ => loss,
    } + (logScale ? " (log scale)" : "");

    /// <summary>
    /// True when the finite, positive <paramref name="losses"/> span <see cref="LogScaleRatio"/> or more (largest over
    /// smallest), as a diverging run's do: the loss axis is then a log scale.
    /// </summary>
    internal static bool UsesLogScale(IEnumerable<double> losses)
    {
        double min = double.PositiveInfinity, max = 0;
        foreach (var loss in losses)
            if (double.IsFinite(loss) && loss > 0)
            {
                min = Math.Min(min, loss);
                max = Math.Max(max, loss);
            }
        return max > 0 && max / min >= LogScaleRatio;
    }

    /// <summary>The span of losses (largest over smallest) from which the loss axis is a log scale: a million.</summary>
    internal const double LogScaleRatio = 1e6;

    /// <summary>
    /// The per-epoch loss lines of <c>curves.png</c>: the train loss (epoch mean), the test loss, and the validation loss,
    /// which early stopping decides on, when the run held out a validation split. Each line's points are the epochs whose
    /// figure is finite (a takeover's only-evaluated epoch has no train loss).
    /// </summary>
    /// <param name="epochs">The epochs finished.</param>
    internal static IReadOnlyList<(string Legend, double[] Epochs, double[] Values)> LossSeries(IReadOnlyList<EpochSummary> epochs)
    {
        var lines = new List<(string, double[], double[])>();
        void Add(string legend, Func<EpochSummary, double> value, bool onlyIfAny = false)
        {
            var points = epochs.Where(e => double.IsFinite(value(e))).ToList();
            if (points.Count > 0 || !onlyIfAny) lines.Add((legend, [.. points.Select(e => (double)e.Epoch)], [.. points.Select(value)]));
        }
        Add("train loss (epoch mean)", e => e.TrainLoss);
        Add("test loss", e => e.TestLoss);
        Add("validation loss", e => e.ValidationLoss, onlyIfAny: true); // NaN in every epoch without a validation split
        return lines;
    }
}
