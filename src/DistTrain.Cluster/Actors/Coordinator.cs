using System.Diagnostics;
using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Core;
using DistTrain.Core.Data;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// The job made no progress within <see cref="CoordinatorSettings.StallTimeout"/> (a message or an actor was lost), or it
/// stayed paused below Cluster:MinWorkers, or waited for its first workers, longer than Cluster:PauseTimeoutSeconds.
/// </summary>
public sealed class TrainingStalledException(string message, WeightsSnapshot? weights = null) : Exception(message)
{
    /// <summary>
    /// The parameter server's weights when the job ended, for the caller to keep with the finished epochs; null when they
    /// are not to be had (a stall, where the parameter server itself may be stuck).
    /// </summary>
    public WeightsSnapshot? Weights { get; } = weights;
}

/// <summary>
/// Runs one job: starts the parameter server and the workers as its children, plans every epoch's
/// shards, evaluates after every epoch (each test sample scored exactly once, split across the
/// workers), reports progress to an <see cref="ITrainingObserver"/>, and completes a task with the
/// final weights or the failure.
/// </summary>
/// <remarks>
/// <para>The bookkeeping lives in <see cref="EpochPlan"/> (shards, lost workers' samples, parts of an epoch) and
/// <see cref="EvaluationPlan"/> (test and validation ranges); the actor receives, asks them, and sends. Its phase is one
/// value (<see cref="Phase"/>): a part of an epoch is training, the epoch is being evaluated, training is paused for
/// want of workers, the run waits for its final weights, or it is over.</para>
/// The job never hangs and never restarts silently:
/// <list type="bullet">
/// <item>a child that throws is stopped, not restarted (a restarted replica would lose its place in the
/// round), and the job fails with that child's exception;</item>
/// <item>an exception in the coordinator itself (or in the observer it calls) fails the job with that exception;</item>
/// <item>no progress for <see cref="CoordinatorSettings.StallTimeout"/> fails the job with a
/// <see cref="TrainingStalledException"/> naming the epoch and step;</item>
/// <item>any ERROR that Akka logs during training (for example a message that could not be serialized
/// and was dropped) fails the job, because a dropped message would otherwise stall a round.</item>
/// </list>
/// In cluster mode (<see cref="CoordinatorSettings.ToleratesWorkerLoss"/>) a worker that stops is a lost node, not a
/// bug: the job goes on without it (its unfinished samples go to the others in a further part of the epoch), workers
/// may join (<see cref="AddWorker"/>), below <see cref="CoordinatorSettings.MinWorkers"/> training pauses, and ERRORs
/// from the remoting layer (which a lost node causes) are not fatal. docs/reliability.md describes it.
/// </remarks>
public sealed class Coordinator : ReceiveActor, IWithTimers
{
    /// <summary>Where the run is.</summary>
    private enum Phase
    {
        /// <summary>A part of an epoch runs at the parameter server.</summary>
        Training,

        /// <summary>The epoch is trained; the workers score it.</summary>
        Evaluating,

        /// <summary>Fewer than Cluster:MinWorkers are alive; <see cref="_onResume"/> runs once enough are.</summary>
        Paused,

        /// <summary>The last epoch is done; the final (or best) weights are awaited.</summary>
        Finishing,

        /// <summary>The result or the failure is out; the actor stops.</summary>
        Finished,
    }

    private readonly CoordinatorSettings _settings;
    private readonly ITrainingObserver _observer;
    private readonly TaskCompletionSource<TrainingResult> _completion;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly TagList _metricTags = Metrics.DistTrainMetrics.Tags(NodeRoles.Coordinator);
    private readonly IActorRef _parameterServer;
    private readonly List<IActorRef> _workers;
    private readonly EpochPlan _plan;
    private readonly EvaluationPlan _evaluation = new();
    private readonly List<EpochSummary> _summaries = [];
    private readonly Stopwatch _clock = new();
    private readonly Queue<SnapshotFor> _snapshots = new(); // what each requested WeightsSnapshot is for, in the order asked
    private Phase _phase = Phase.Training;
    private Phase _pausedFrom;                            // the phase a pause returns to
    private Action? _onResume;                            // what a pause waits to do
    private WeightsSnapshot? _best;
    private int _bestEpoch;
    private double _bestValidationLoss = double.PositiveInfinity;
    private readonly List<EpochSummary> _validations = []; // every evaluated epoch, resumed ones included (early stopping)
    private bool _stoppedEarly;
    private Exception? _childFailure;
    private long _lastVersion;
    private int _lastStep = -1;
    // Round numbers of the current epoch that no step used: each further part of an epoch starts one round after the last
    // applied (EpochPlan.ContinueEpoch). The observers count steps, so their step numbers and totals leave these out.
    private int _skippedRounds;
    private int _asyncStep; // Async: steps applied this epoch, one per minibatch (the observer's step index)
    private EpochCompleted? _trained;
    private double _trainSeconds;
    private double _pausedSeconds;      // of _clock's time, paused below MinWorkers
    private double _trainPausedSeconds; // of _trainSeconds, paused
    private long _pauseStarted;         // Stopwatch timestamp of the pause in progress
    private (int Epoch, int Samples) _stepSamples; // samples of the steps applied in this run, in the epoch they belong to
    private string _pausedWork = "";
    private int _weightsOnlyParts; // parts started by ShareEpochWeights whose EpochCompleted has not come back yet
    private bool _stopRequested;   // the caller asked to stop (StopRequested)
    private string? _pauseTimedOut; // Cluster:PauseTimeoutSeconds ran out: the failure, sent once the weights are in
    private readonly List<IActorRef> _stopReplyTo = []; // await the stop's decision (StopRequested.ReplyTo)
    private WeightsSnapshot? _stopAfterEvaluation; // a stop's weights, held while the epoch they end is scored
    private bool _evaluatedForStop;                // that epoch's score is in; the stop waits only for early stopping's snapshot
    private int _reportedEpoch;                    // the last epoch given to the observer (EpochCompleted); 0 before the first
    private CheckpointSaved? _epochEndCheckpoint;  // the checkpoint of the end of an epoch not yet reported, held until it is

    /// <summary>What a requested <see cref="WeightsSnapshot"/> is for.</summary>
    private enum SnapshotFor
    {
        /// <summary>The run's final weights (without early stopping).</summary>
        Final,

        /// <summary>A new best epoch's weights (early stopping).</summary>
        Best,

        /// <summary>The weights to stop with, after <see cref="StopRequested"/>.</summary>
        Stop,

        /// <summary>The weights to fail with, after Cluster:PauseTimeoutSeconds ran out (<see cref="_pauseTimedOut"/>).</summary>
        Failure,
    }

    /// <summary>
    /// The caller asks the job to stop (single-node mode: its cancellation token, as Ctrl-C cancels it; cluster mode: the
    /// parameter-server node stopping, through <see cref="JobHost.StopTraining"/>). While anything is left to train, the job
    /// ends with a <see cref="TrainingCancelledException"/> that holds the parameter server's weights between two steps.
    /// Once the last epoch is trained (only its evaluation, or the final weights, remain) the job finishes instead: the
    /// evaluation is short, and cutting it off would leave a finished training without its score.
    /// </summary>
    /// <param name="ReplyTo">Told the decision once it is made: true when the job finishes, false when it ends cancelled;
    /// null tells nobody.</param>
    internal sealed record StopRequested(IActorRef? ReplyTo) : INoSerializationVerificationNeeded
    {
        /// <summary>A stop whose decision nobody awaits.</summary>
        public static readonly StopRequested Instance = new((IActorRef?)null);
    }

    /// <summary>Creates the coordinator; see <see cref="Props(CoordinatorSettings, Akka.Actor.Props, IReadOnlyList{Akka.Actor.Props}, ITrainingObserver, TaskCompletionSource{TrainingResult})"/>.</summary>
    public Coordinator(CoordinatorSettings settings, Props parameterServer, IReadOnlyList<Props>? workerProps,
        IReadOnlyList<IActorRef>? workerRefs, ITrainingObserver observer, TaskCompletionSource<TrainingResult> completion)
    {
        _settings = settings;
        _observer = observer;
        _completion = completion;
        _plan = new EpochPlan(settings.PlanSettings);
        _parameterServer = Context.Watch(Context.ActorOf(parameterServer, "parameter-server"));
        Metrics.DistTrainMetrics.WatchMailbox(NodeRoles.ParameterServer, _parameterServer);
        _workers = workerProps is not null
            ? [.. workerProps.Select((props, i) => Context.Watch(Context.ActorOf(props, $"worker-{i}")))]
            : [.. (workerRefs ?? throw new ArgumentException("Give the workers as Props or as actor references.")).Select(w => Context.Watch(w))];
        for (var i = 0; i < _workers.Count; i++) _plan.AddWorker(i);
        foreach (var worker in _workers) Metrics.DistTrainMetrics.WatchMailbox(NodeRoles.Worker, worker);

        Receive<RoundApplied>(OnRoundApplied);
        Receive<EpochCompleted>(OnEpochTrained);
        Receive<MinibatchesLeft>(left => _plan.MinibatchesLeft(left.Shards, left.Rounds));
        Receive<EvaluationResult>(OnEvaluationResult);
        Receive<WeightsSnapshot>(OnWeightsSnapshot);
        Receive<StopRequested>(OnStopRequested);
        Receive<StopSnapshotTimedOut>(_ => OnStopSnapshotTimedOut());
        Receive<StopEvaluationTimedOut>(_ => OnStopEvaluationTimedOut());
        Receive<CheckpointSaved>(OnCheckpointSaved);
        Receive<Terminated>(OnChildTerminated);
        Receive<WorkerRemoved>(removed =>
        {
            _plan.WorkerRemoved(removed.WorkerIndex, removed.FirstUnusedRound);
            _plan.PartCut(removed.OthersCutFrom);
        });
        Receive<AddWorker>(OnAddWorker);
        // A worker's lost shard connection (Cluster:ShardNodes): the parameter server ends the job with the shard's loss. The job
        // host passes LostShard on only in a job on shard nodes, whose parameter server (RemoteShardedParameterServer) takes it.
        Receive<WorkerFailed>(failed => failed.LostShard >= 0, failed => _parameterServer.Forward(failed));
        Receive<WorkerFailed>(failed => Fail(new InvalidOperationException(failed.Reason)));
        Receive<PausedStatus>(_ => _phase == Phase.Paused, _ => _log.Warning(
            "Training is paused at epoch {0}: {1} of Cluster:MinWorkers = {2} workers; {3} when enough are alive. Start worker nodes to continue.",
            _plan.Epoch, _plan.AliveCount, _settings.MinWorkers, _pausedWork));
        Receive<PausedStatus>(_ => { });
        // Not after a stop request: the stop has asked for the weights already, and ends the run as cancelled.
        Receive<PauseTimedOut>(_ => _phase == Phase.Paused && _pauseTimedOut is null && !_stopRequested, _ =>
        {
            _pauseTimedOut = string.Format(System.Globalization.CultureInfo.InvariantCulture,
                "Training was paused for {0:F0} s at epoch {1} with {2} of Cluster:MinWorkers = {3} workers alive, and no worker joined in that time; the job ends. " +
                "Start worker nodes within Cluster:PauseTimeoutSeconds, lower Cluster:MinWorkers, or set Cluster:PauseTimeoutSeconds = 0 to wait for ever. " +
                "With Checkpoint:Directory set, Checkpoint:Resume = true continues from the newest checkpoint.",
                _settings.PauseTimeout!.Value.TotalSeconds, _plan.Epoch, _plan.AliveCount, _settings.MinWorkers);
            // The parameter server is idle and holds what the run trained: the job fails with it, so the finished epochs are kept.
            RequestSnapshot(SnapshotFor.Failure);
            Timers.StartSingleTimer(nameof(StopSnapshotTimedOut), StopSnapshotTimedOut.Instance, StopSnapshotTimeout);
        });
        Receive<PauseTimedOut>(_ => { });
        Receive<ReceiveTimeout>(_ => Fail(new TrainingStalledException(
            $"No progress for {_settings.StallTimeout.TotalSeconds:F0} s at epoch {_plan.Epoch}, after step {_lastStep} (weights version {_lastVersion}), " +
            $"{(_evaluation.Pending > 0 ? $"waiting for {Counts.Of(_evaluation.Pending, "evaluation result")}" : "waiting for a round to complete")}. " +
            "A worker or a message was lost; see the log above. Raise Training:StallTimeoutSeconds if steps are legitimately this slow.")));
        // A child's failure is also logged as an ERROR by its supervisor (this actor): report the child's own exception.
        // In cluster mode a lost node makes the remoting layer log errors about its association; those are expected.
        Receive<Error>(error => _settings.ToleratesWorkerLoss && IsRemotingNoise(error), _ => { });
        Receive<Error>(error => Fail(_childFailure ?? new InvalidOperationException(
            $"Akka reported an error during training, so a message may have been lost: {error.Message}" +
            (error.Cause is null ? "" : $" ({error.Cause.GetType().Name}: {error.Cause.Message})"), error.Cause)));
    }

    /// <summary>Props of a single-node job: the workers start as children. <paramref name="completion"/> receives the result or the failure.</summary>
    public static Props Props(CoordinatorSettings settings, Props parameterServer, IReadOnlyList<Props> workers,
        ITrainingObserver observer, TaskCompletionSource<TrainingResult> completion) =>
        Akka.Actor.Props.Create(() => new Coordinator(settings, parameterServer, workers, null, observer, completion));

    /// <summary>
    /// Props of a job whose workers already run elsewhere (cluster mode: each reference is the local link to
    /// a remote worker). The coordinator watches them; a worker that stops fails the job.
    /// </summary>
    public static Props Props(CoordinatorSettings settings, Props parameterServer, IReadOnlyList<IActorRef> workers,
        ITrainingObserver observer, TaskCompletionSource<TrainingResult> completion) =>
        Akka.Actor.Props.Create(() => new Coordinator(settings, parameterServer, null, workers, observer, completion));

    /// <inheritdoc />
    /// <remarks>
    /// A child's failure is logged as an ERROR with its stack trace, and the coordinator, which receives that <see cref="Error"/>,
    /// fails the job. A divergence is an outcome of training rather than a fault, and a checkpoint that could not be
    /// written is told in full by its message: neither is logged here, the message is the job's error (the caller prints it
    /// once), and the child's termination fails the job.
    /// </remarks>
    protected override SupervisorStrategy SupervisorStrategy() => new DivergenceQuietStrategy(exception =>
    {
        Metrics.DistTrainMetrics.RecordFailure(Sender.Equals(_parameterServer) ? NodeRoles.ParameterServer : NodeRoles.Worker);
        _childFailure ??= CreationCause(exception);
        return Directive.Stop;
    });

    /// <summary>
    /// One-for-one supervision that logs every failure but a <see cref="TrainingDivergedException"/>, a
    /// <see cref="Core.Checkpoints.CheckpointWriteException"/>, an <see cref="OutOfMemoryException"/> (a model too large
    /// for the machine, which <c>disttrain train</c> reports in one line with the model's size) and a
    /// <see cref="Core.Compression.GradientOverflowException"/> (the tensor, the value and the fixes) and a
    /// <see cref="ShardNodesException"/> (shards on shard nodes that cannot go on), whose messages say all there is and become the
    /// job's error.
    /// </summary>
    private sealed class DivergenceQuietStrategy(Func<Exception, Directive> decider) : OneForOneStrategy(decider)
    {
        protected override void LogFailure(IActorContext context, IActorRef child, Exception cause, Directive directive)
        {
            if (CreationCause(cause) is not (TrainingDivergedException or Core.Checkpoints.CheckpointWriteException or OutOfMemoryException
                or Core.Compression.GradientOverflowException or ShardNodesException))
                base.LogFailure(context, child, cause, directive);
        }
    }

    /// <summary>
    /// A child that threw in its constructor arrives as Akka's "Exception during creation", around "Error while creating actor
    /// instance": the child's own exception, which says what was wrong, is inside those wrappers.
    /// </summary>
    private static Exception CreationCause(Exception exception)
    {
        var cause = exception;
        while (cause is ActorInitializationException or TypeLoadException or System.Reflection.TargetInvocationException && cause.InnerException is { } inner)
            cause = inner;
        return cause;
    }

    /// <inheritdoc />
    protected override void PreStart()
    {
        Context.System.EventStream.Subscribe(Self, typeof(Error));
        Context.SetReceiveTimeout(_settings.StallTimeout);
        Metrics.DistTrainMetrics.Set("paused", 0); // published from the start on the node that trains, for alerts on it
        Guard(() =>
        {
            if (_settings is { ResumedVersion: 0, FirstEpoch: 1, FirstRound: 0, EarlyStoppingDirectory: { } directory } && Directory.Exists(directory))
                EarlyStoppingRecord.Clear(directory); // a new run: an earlier run's record is not its own
            // Every run says where it starts (a new one at epoch 1, version 0): a report that recorded a run on this node before (a job
            // restarted after a lost shard node) drops what is trained again, also when the restart found no checkpoint.
            _observer.RunResumed(_settings.FirstEpoch, _settings.FirstRound, _settings.ResumedVersion);
            var start = _settings.StopsEarly && _settings.FirstEpoch > 1 ? RestoreEarlyStopping() : EarlyStoppingStart.AsNew;
            var resumed = $"epoch {_plan.Epoch}'s weights (version {_settings.ResumedVersion})";
            var keeps = _settings.StopsEarly ? "the best epoch's weights" : "them";
            if (_plan.Epoch >= _settings.Epochs)
                ScoreResumedWeights($"{(_settings.Epochs == 1 ? "The 1 epoch was" : $"All {Counts.Number(_settings.Epochs)} epochs were")} trained before this run started: the workers score {resumed}, and the run " +
                    $"ends with {keeps}. Raise Training:Epochs to train further.", warning: true);
            else if (start == EarlyStoppingStart.AlreadyStopped)
                ScoreResumedWeights($"Early stopping ends the run at epoch {_plan.Epoch}, trained before this run started: its validation loss has not " +
                    $"improved on epoch {_bestEpoch}'s for {Counts.Of(_plan.Epoch - _bestEpoch, "epoch")}, at least Training:EarlyStopping:Patience = " +
                    $"{_settings.EarlyStopping!.Patience}. The workers score {resumed}, and the run ends with {keeps}. Raise the patience to train further.",
                    warning: true);
            else if (start == EarlyStoppingStart.ScoreResumedEpoch)
                ScoreResumedWeights($"Epoch {_plan.Epoch} was trained but not scored before this run started: the workers score {resumed} for early " +
                    "stopping first, then training goes on.", warning: false);
            else StartNextEpoch();
        });
    }

    /// <summary>How early stopping starts in a run: see <see cref="RestoreEarlyStopping"/>.</summary>
    private enum EarlyStoppingStart
    {
        /// <summary>With no epoch before it (a new run, or one whose early stopping starts over).</summary>
        AsNew,

        /// <summary>With the recorded epochs, the best of them and its weights.</summary>
        GoesOn,

        /// <summary>As <see cref="GoesOn"/>, but the record lacks the epoch before the checkpoint (its evaluation was cut off):
        /// the run scores the checkpoint's weights as that epoch first.</summary>
        ScoreResumedEpoch,

        /// <summary>Early stopping had already ended the run at the epoch before the checkpoint (a takeover while the results
        /// were saved): the run only scores the checkpoint's weights again and ends.</summary>
        AlreadyStopped,
    }

    /// <summary>
    /// A run resumed from a checkpoint with early stopping goes on with the best epoch so far and its weights, from
    /// <see cref="EarlyStoppingRecord"/> in the checkpoint directory; without it (or when it does not fit the checkpoint)
    /// early stopping starts over, and says why.
    /// </summary>
    private EarlyStoppingStart RestoreEarlyStopping()
    {
        var stopping = _settings.EarlyStopping!;
        var resumedEpoch = _settings.FirstEpoch - 1;
        var epochEnd = _settings.FirstRound == 0; // the checkpoint holds the weights epoch FirstEpoch - 1 ended with
        string? problem = "Checkpoint:Directory is not set, so nothing records the best epoch before it";
        var restored = _settings.EarlyStoppingDirectory is { } directory
            ? EarlyStoppingRecord.Restore(directory, _settings.FirstEpoch, _settings.FirstRound, _settings.ResumedVersion, stopping.MinDelta, _settings.Layout,
                _settings.ValidationSampleCount, out problem)
            : null;
        if (restored is null)
        {
            if (problem is not null)
            {
                _log.Warning(EarlyStoppingRecord.StartsOver(Math.Min(_settings.FirstEpoch, _settings.Epochs), problem));
                return EarlyStoppingStart.AsNew;
            }
            // Resumed at epoch 2 with epoch 1 never scored.
            return epochEnd ? EarlyStoppingStart.ScoreResumedEpoch : EarlyStoppingStart.AsNew;
        }
        _validations.AddRange(restored.Epochs);
        _bestEpoch = restored.Best.Epoch;
        _bestValidationLoss = restored.Best.ValidationLoss;
        _best = new WeightsSnapshot(restored.Best.Version, restored.BestWeights);
        var last = restored.Epochs[^1].Epoch;
        _log.Info(EarlyStoppingRecord.GoesOn(restored, stopping.Patience));
        if (epochEnd && last < resumedEpoch) return EarlyStoppingStart.ScoreResumedEpoch;
        return epochEnd && last == resumedEpoch && last - _bestEpoch >= stopping.Patience ? EarlyStoppingStart.AlreadyStopped : EarlyStoppingStart.GoesOn;
    }

    /// <summary>
    /// The workers score the weights the run resumed from (<see cref="CoordinatorSettings.ResumedVersion"/>) as the epoch
    /// before the checkpoint's, and the run goes on from that evaluation as after any other
    /// (<see cref="EpochEvaluated"/>): it ends when that was the last epoch or early stopping ends it there, else it trains
    /// the next. For a checkpoint written when the last epoch's training ended, or after the epoch at which early stopping
    /// ended the run (a standby that took over before that epoch was evaluated or its model written, or a user's resume of a
    /// finished run), and for an epoch whose evaluation for early stopping was cut off. The parameter server, which resumed
    /// from that checkpoint, sends its weights to the workers (<see cref="ShareEpochWeights"/>). That epoch's training loss
    /// is not known here (NaN).
    /// </summary>
    /// <param name="line">What the log says about it.</param>
    /// <param name="warning">True to log it as a warning (the run trains nothing), false as information.</param>
    private void ScoreResumedWeights(string line, bool warning)
    {
        if (_settings.ResumedVersion <= 0)
            throw new InvalidOperationException($"The run starts at epoch {_settings.FirstEpoch} and first scores the weights it resumed from, " +
                "but CoordinatorSettings.ResumedVersion does not name their version.");
        WhenEnoughWorkers(() =>
        {
            if (warning) _log.Warning(line);
            else _log.Info(line);
            _trained = new EpochCompleted(_plan.Epoch, _settings.ResumedVersion, 0, double.NaN);
            _trainSeconds = 0;
            RestartClock();
            _phase = Phase.Evaluating;
            BeginEvaluation(ShareEpochWeights());
        }, $"the evaluation of epoch {_plan.Epoch} goes on");
    }

    /// <inheritdoc />
    protected override bool AroundReceive(Receive receive, object message)
    {
        var started = Stopwatch.GetTimestamp();
        var handled = true;
        Guard(() => handled = base.AroundReceive(receive, message));
        Metrics.DistTrainMetrics.Handled(_metricTags, started);
        return handled;
    }

    /// <inheritdoc />
    protected override void PostStop()
    {
        Metrics.DistTrainMetrics.UnwatchMailbox(NodeRoles.ParameterServer, _parameterServer);
        for (var i = 0; i < _workers.Count; i++)
            if (_plan.IsAlive(i)) Metrics.DistTrainMetrics.UnwatchMailbox(NodeRoles.Worker, _workers[i]);
        Context.System.EventStream.Unsubscribe(Self);
        TellStopDecision(finishes: false); // a stop still waiting for the weights is not left to its timeout
        _completion.TrySetException(new CoordinatorStoppedException("The coordinator stopped before training completed."));
    }

    private void Guard(Action action)
    {
        try
        {
            action();
        }
        catch (Exception e)
        {
            Fail(e);
        }
    }

    /// <inheritdoc />
    public ITimerScheduler Timers { get; set; } = null!;

    private sealed record PausedStatus;

    /// <summary>The pause has lasted Cluster:PauseTimeoutSeconds.</summary>
    private sealed record PauseTimedOut;

    /// <summary>The workers for a StartEpoch: lost ones are <see cref="ActorRefs.Nobody"/>, so nothing is sent to them.</summary>
    private IActorRef[] WorkerSlots => [.. Enumerable.Range(0, _workers.Count).Select(i => _plan.IsAlive(i) ? _workers[i] : ActorRefs.Nobody)];

    private static bool IsRemotingNoise(Error error) =>
        error.LogSource.Contains("/system/", StringComparison.Ordinal) || error.LogSource.Contains("Remot", StringComparison.Ordinal) ||
        error.LogClass.Namespace?.StartsWith("Akka.Remote", StringComparison.Ordinal) == true ||
        error.Message?.ToString()?.Contains("data plane closed", StringComparison.Ordinal) == true;

    /// <summary>Runs <paramref name="action"/> now if Cluster:MinWorkers workers are alive, else pauses until they are.</summary>
    /// <param name="action">The work to start.</param>
    /// <param name="work">What waits during a pause, for the log ("epoch 4 starts"): the plan's epoch is the one finished
    /// before a new epoch, and the current one before a further part.</param>
    private void WhenEnoughWorkers(Action action, string work)
    {
        if (_plan.AliveCount >= Math.Max(1, _settings.MinWorkers))
        {
            action();
            return;
        }
        if (_stopRequested)
        {
            // A stop let the last evaluation finish, but the workers went too (a whole cluster stopped at once): nothing is
            // left to wait for, and a pause would hold the stopping node until Training:StallTimeoutSeconds.
            _log.Info("The workers left after the stop, before {0}: the run ends cancelled.", work);
            Cancel(null);
            return;
        }
        _pausedFrom = _phase;
        _pausedWork = work;
        _pauseStarted = Stopwatch.GetTimestamp();
        _phase = Phase.Paused;
        _onResume = action;
        Context.SetReceiveTimeout(null); // a pause is not a stall
        Metrics.DistTrainMetrics.Set("paused", 1);
        Self.Tell(new PausedStatus());
        Timers.StartPeriodicTimer("paused-status", new PausedStatus(), TimeSpan.FromSeconds(10));
        StartPauseTimeout();
    }

    /// <summary>Starts the clock of a phase (training or evaluation) over, with no pause counted in it yet.</summary>
    private void RestartClock()
    {
        _clock.Restart();
        _pausedSeconds = 0;
    }

    /// <summary>Starts (or starts again) the wait of Cluster:PauseTimeoutSeconds, when there is one.</summary>
    private void StartPauseTimeout()
    {
        if (_settings.PauseTimeout is { } timeout) Timers.StartSingleTimer("pause-timeout", new PauseTimedOut(), timeout);
    }

    private void StartNextEpoch() => WhenEnoughWorkers(() =>
    {
        var part = _plan.StartNextEpoch();
        _skippedRounds = 0;
        _observer.EpochStarted(part.Epoch, ObservedStepsPerEpoch(part), _settings.Planner.SampleCount);
        if (part.Part > 0)
        {
            // Resumed within the epoch with fewer workers than its checkpoint's plan (EpochPlan.StartNextEpoch).
            var left = part.Shards.Sum(shard => shard.Length);
            _log.Warning(string.Format(System.Globalization.CultureInfo.InvariantCulture,
                "Epoch {0} resumes at round {1} with {2} of the {3} workers its checkpoint was planned for: the {4} its plan had left from that " +
                "round {5} to them, in {6} of up to {7} per worker{8}. Every sample is still trained once this epoch; the next epochs are planned " +
                "for the workers alive.",
                part.Epoch, part.FirstRound, part.Receivers.Length, _settings.Planner.Workers, Counts.Of(left, "sample"), left == 1 ? "goes" : "go",
                Counts.Of(part.Steps, "step"), Counts.Of(part.BatchSize, "sample"), _settings.GlobalBatchSize > 0 ? " (Training:KeepGlobalBatch)" : ""));
            _observer.EpochStepsChanged(part.Epoch, ObservedEpochEnd(part));
        }
        RestartClock();
        RunPart(part);
    }, $"epoch {_plan.Epoch + 1} starts");

    /// <summary>
    /// A further part of the epoch: the samples the lost workers did not train on, split evenly across the workers
    /// alive (see <see cref="EpochPlan.ContinueEpoch"/>). Every sample of the epoch is still used exactly once.
    /// </summary>
    private void ContinueEpoch() => WhenEnoughWorkers(() =>
    {
        var orphans = _plan.OrphanCount;
        var part = _plan.ContinueEpoch();
        _log.Warning(string.Format(System.Globalization.CultureInfo.InvariantCulture, part.KeepGlobalBatch
                ? "Epoch {0}: the {1} left untrained when a worker was lost {6} to {2}, from round {3}, in {4} of up to {5} per worker (Training:KeepGlobalBatch)."
                : "Epoch {0}: the {1} lost workers had left {6} to {2}, from round {3}, in {4} of up to {5} per worker.",
            part.Epoch, Counts.Of(orphans, "sample"), Counts.Of(part.Receivers.Length, "worker"), part.FirstRound, Counts.Of(part.Steps, "step"),
            Counts.Of(part.BatchSize, "sample"), orphans == 1 ? "goes" : "go"));
        if (_settings.Mode != Core.Configuration.TrainingMode.Async) _skippedRounds++;
        _observer.EpochStepsChanged(part.Epoch, ObservedEpochEnd(part));
        RunPart(part);
    }, $"the rest of epoch {_plan.Epoch} goes on");

    /// <summary>
    /// The step the epoch now ends after, as the observer counts steps, once further part <paramref name="part"/> is planned:
    /// its rounds, numbered on from the earlier parts but for the round numbers skipped between parts, so after this part's
    /// last round; in Async its minibatches, those applied so far (or the resumed position's) and this part's.
    /// </summary>
    private int ObservedEpochEnd(PlannedPart part) => _settings.Mode == Core.Configuration.TrainingMode.Async
        ? _asyncStep + part.Batches.Sum(end => Math.Max(0, end - part.FirstRound))
        : part.FirstRound - _skippedRounds + part.Rounds;

    /// <summary>Runs a part of an epoch: training until the parameter server reports it done (<see cref="SendPart"/>).</summary>
    private void RunPart(PlannedPart part)
    {
        _phase = Phase.Training;
        SendPart(part);
    }

    /// <summary>Sends each worker of the part its shard (every shard, in the asynchronous modes) and starts the part at the parameter server.</summary>
    private void SendPart(PlannedPart part)
    {
        var shards = ShardMessages(part, _settings.ScalingWorkersFor(part.Receivers.Length), _settings.Epochs, _settings.ShardRecipes);
        // Checked before any is sent: a part is sent whole or not at all.
        for (var k = 0; _settings.ShardMessageLimitBytes > 0 && k < shards.Length; k++)
        {
            if (shards[k].EncodedBytesAtMost() <= _settings.ShardMessageLimitBytes) continue;
            Fail(new InvalidOperationException(TooLargeForOneMessage(shards[k], part.Receivers[k], part.Receivers.Length, part.SharedShards)));
            return;
        }
        for (var k = 0; k < shards.Length; k++) _workers[part.Receivers[k]].Tell(shards[k]);
        _parameterServer.Tell(new StartEpoch(part.Epoch, WorkerSlots, part.Batches, part.StartRound, part.StepsPerEpoch, part.MidEpochResumable,
            part.Part, part.KeepGlobalBatch));
    }

    /// <summary>
    /// The shard message of each of the part's receivers, in <see cref="PlannedPart.Receivers"/> order. With
    /// <paramref name="recipes"/> (cluster mode) the shards go as a recipe that each worker plans them from: an epoch's first part
    /// in about 100 bytes per worker, where the indices take up to 5 bytes per sample and held the first step of every epoch
    /// back while they crossed; a further part as pieces of the epoch's plan, where the indices of millions of samples would not
    /// fit in a message, or as indices when those take fewer bytes (in the asynchronous modes the minibatches lost workers left
    /// can be many small pieces, one per minibatch). A part whose planner is not even, or that only hands out the weights, goes
    /// as indices.
    /// </summary>
    /// <param name="part">The part as planned.</param>
    /// <param name="scaling">Local SGD's scaling workers (<see cref="AssignShard.ScalingWorkers"/>).</param>
    /// <param name="epochs">Training:Epochs (<see cref="AssignShard.Epochs"/>).</param>
    /// <param name="recipes"><see cref="CoordinatorSettings.ShardRecipes"/>.</param>
    internal static AssignShard[] ShardMessages(PlannedPart part, int scaling, int epochs, bool recipes)
    {
        var planner = recipes && part.PlannedBy is ShardPlanner { IsEven: true } even
            && (part.Pieces is not null || even.Workers == part.Receivers.Length) ? even : null;
        var sharedDigest = planner is not null && part.SharedShards ? ShardPlanner.Digest(part.Shards) : 0;
        return [.. part.Receivers.Select((i, j) =>
        {
            var indices = new AssignShard(part.Epoch, part.Shards[i], part.BatchSize, part.FirstRound, part.Rounds, part.Steps,
                part.SharedShards ? part.Shards : null, part.StepsPerEpoch, scaling, part.Part, Epochs: epochs);
            if (planner is null) return indices;
            var (samples, workers, seed) = (planner.SampleCount, planner.Workers, planner.Seed);
            var recipe = (part.Pieces, part.SharedShards) switch
            {
                (null, true) => new ShardRecipe(samples, workers, j, seed, part.Receivers, part.Shards.Length, sharedDigest),
                (null, false) => new ShardRecipe(samples, workers, j, seed, null, 0, ShardPlanner.Digest(part.Shards[i])),
                ({ } pieces, true) => new ShardRecipe(samples, workers, i, seed, null, part.Shards.Length, sharedDigest, pieces),
                ({ } pieces, false) => new ShardRecipe(samples, workers, 0, seed, null, 0, ShardPlanner.Digest(part.Shards[i]), [pieces[i]]),
            };
            var planned = indices with { SampleIndices = [], Shards = null, Recipe = recipe };
            return part.Pieces is null || planned.EncodedBytesAtMost() <= indices.EncodedBytesAtMost() ? planned : indices;
        })];
    }

    /// <summary>
    /// Why a part cannot start: worker <paramref name="worker"/>'s shard message is larger than Akka.Remote carries
    /// (<see cref="CoordinatorSettings.ShardMessageLimitBytes"/>), with the ways out. <paramref name="shared"/>: every worker gets
    /// every shard (the asynchronous modes).
    /// </summary>
    private string TooLargeForOneMessage(AssignShard shard, int worker, int receivers, bool shared)
    {
        var pieces = shard.Recipe?.Pieces;
        var carried = pieces is null
            ? string.Format(System.Globalization.CultureInfo.InvariantCulture, "{0:N0} sample indices",
                shard.SampleIndices.LongLength + (shard.Shards?.Sum(s => (long)s.Length) ?? 0))
            : $"{Counts.Of(pieces.Sum(p => p.Length / 3), "piece")} of the epoch's plan " +
              $"({Counts.Of(ShardRecipe.PieceSamples(pieces), "sample")}, whose indices would take more)";
        var text = string.Format(System.Globalization.CultureInfo.InvariantCulture,
            "Epoch {0}: worker {1}'s shard message would carry {2}, up to {3:N0} bytes, and one may take at most {4:N0} " +
            "bytes (Akka.Remote's frame, less room for its envelope; Akka.Remote would drop it, and the job would wait until " +
            "Training:StallTimeoutSeconds). ",
            shard.Epoch, worker, carried, shard.EncodedBytesAtMost(), _settings.ShardMessageLimitBytes);
        return text + (shared
            ? $"In Training:Mode {_settings.Mode} every worker gets every shard, so more workers do not help: train in Training:Mode Sync or " +
              "LocalSgd (each worker then gets its own shard only) with enough workers, in single-node mode (disttrain train), or on fewer " +
              "samples (Data:TrainLimit)."
            : $"The part's samples are shared among its {receivers} worker{(receivers == 1 ? "" : "s")}, each of which gets its own shard: " +
              "start more worker nodes (Cluster:MinWorkers, so that the job waits for them), train in single-node mode (disttrain train), or " +
              "on fewer samples (Data:TrainLimit).");
    }

    private void OnAddWorker(AddWorker added)
    {
        var index = added.WorkerIndex;
        if (_pauseTimedOut is not null)
        {
            // The pause timed out and the job ends once the weights are in: a worker that comes now does not resume it.
            _log.Warning("Worker {0} joined after Cluster:PauseTimeoutSeconds ran out; the job is ending and does not resume.", index);
            return;
        }
        if (index < 0 || index >= ParameterServer.MaxWorkers || _plan.IsAlive(index))
        {
            _log.Warning("Ignored a worker joining as index {0}: out of range or already taken.", index);
            return;
        }
        // Positions are worker indices: fill any gap with lost placeholders (a worker that joined later comes first).
        while (_workers.Count <= index) _workers.Add(ActorRefs.Nobody);
        _workers[index] = Context.Watch(added.Worker);
        _plan.AddWorker(index);
        Metrics.DistTrainMetrics.WatchMailbox(NodeRoles.Worker, added.Worker);
        _log.Info("Worker {0} joined: it takes part from the next epoch, or from the next part of this one ({1} alive).", index, Counts.Of(_plan.AliveCount, "worker"));
        if (_phase == Phase.Paused && _plan.AliveCount >= Math.Max(1, _settings.MinWorkers))
        {
            var resume = _onResume!;
            _onResume = null;
            _phase = _pausedFrom;
            Timers.Cancel("paused-status");
            Timers.Cancel("pause-timeout");
            Metrics.DistTrainMetrics.Set("paused", 0);
            Context.SetReceiveTimeout(_settings.StallTimeout);
            _pausedSeconds += Stopwatch.GetElapsedTime(_pauseStarted).TotalSeconds;
            _log.Info("Training resumes with {0}: {1}.", Counts.Of(_plan.AliveCount, "worker"), _pausedWork);
            resume();
        }
        else if (_phase == Phase.Paused)
            StartPauseTimeout(); // a join is progress: the wait starts again
    }

    /// <summary>
    /// The steps the observers are told an epoch has: its rounds, except in Async, which steps once per minibatch, so an
    /// epoch has its rounds times its shards of steps (as the parameter server's schedule counts them); a resumed part
    /// starts that far in.
    /// </summary>
    private int ObservedStepsPerEpoch(PlannedPart part)
    {
        if (_settings.Mode != Core.Configuration.TrainingMode.Async) return part.StepsPerEpoch;
        var shards = Math.Max(1, part.Batches.Count(b => b > part.FirstRound));
        _asyncStep = part.StartRound * shards;
        return part.StepsPerEpoch * shards;
    }

    private void OnRoundApplied(RoundApplied round)
    {
        _plan.RoundApplied(round.Round);
        _stepSamples = (round.Epoch, (_stepSamples.Epoch == round.Epoch ? _stepSamples.Samples : 0) + round.SampleCount);
        _lastVersion = round.Version;
        // Async applies the minibatches of a round one by one, in any order: the observers count steps, not rounds.
        var step = _settings.Mode == Core.Configuration.TrainingMode.Async ? _asyncStep++ : round.Round - _skippedRounds;
        _lastStep = step;
        _observer.StepApplied(round.Epoch, step, round.Version, round.SampleCount, round.LossSum / Math.Max(1, round.SampleCount), round.LearningRate, round.Timing);
        _observer.WorkersReported(round.WorkerLosses, round.WorkerComputeSeconds, round.WorkerQueueingSeconds);
        _observer.StalenessReported(round.WorkerStaleness);
        Sender.Tell(round); // back to the parameter server's pool
    }

    private void OnEpochTrained(EpochCompleted part)
    {
        // The end of a part that only sent the weights to evaluate (ShareEpochWeights): during that evaluation, or after it
        // when the next epoch has already started (the part's epoch is then an earlier one).
        if (_weightsOnlyParts > 0 && part.SampleCount == 0 && (_phase != Phase.Training || part.Epoch != _plan.Epoch))
        {
            _weightsOnlyParts--;
            return;
        }
        if (_phase != Phase.Training)
        {
            _log.Warning("Ignored an EpochCompleted for epoch {0} (weights version {1}) that arrived while no part of an epoch was running.", part.Epoch, part.Version);
            return;
        }
        if (!_plan.PartTrained(part.SampleCount, part.LossSum))
        {
            ContinueEpoch();
            return;
        }
        _trained = part with { SampleCount = _plan.EpochSamples, LossSum = _plan.EpochLossSum };
        _trainSeconds = _clock.Elapsed.TotalSeconds;
        _trainPausedSeconds = _pausedSeconds;
        RestartClock();
        _phase = Phase.Evaluating;
        if (_plan.EvaluatingWorkers is { Length: > 0 } holders)
        {
            BeginEvaluation(holders);
            return;
        }
        // Every worker that held these weights was lost after its last gradient, before the epoch's end came here.
        WhenEnoughWorkers(() => BeginEvaluation(ShareWeightsOfLostHolders()), $"the evaluation of epoch {_plan.Epoch} goes on");
    }

    /// <summary>Sends <paramref name="holders"/>, which hold the finished epoch's weights, their ranges of the test (and validation) split.</summary>
    private void BeginEvaluation(int[] holders)
    {
        foreach (var (worker, request) in _evaluation.Begin(_trained!.Version, _settings.TestSampleCount, _settings.ValidationSampleCount, holders))
            _workers[worker].Tell(request);
    }

    /// <summary>
    /// Sends the unanswered evaluation ranges of lost workers to the workers alive, at once or, below MinWorkers, when
    /// enough have joined. The ranges are collected when they are sent, so every worker lost during a pause is covered.
    /// </summary>
    private void ReassignEvaluations()
    {
        if (!_evaluation.HasOrphaned(_plan.IsAlive)) return;
        WhenEnoughWorkers(() =>
        {
            if (!_evaluation.HasOrphaned(_plan.IsAlive)) return;
            var alive = _plan.EvaluatingWorkers;
            if (alive.Length == 0) alive = ShareWeightsOfLostHolders();
            foreach (var (worker, request) in _evaluation.Reassign(_plan.IsAlive, alive))
                _workers[worker].Tell(request);
        }, $"the evaluation of epoch {_plan.Epoch} goes on");
    }

    /// <summary><see cref="ShareEpochWeights"/> after every worker that held the epoch's weights was lost, saying so.</summary>
    private int[] ShareWeightsOfLostHolders()
    {
        _log.Warning("Every worker that held epoch {0}'s weights was lost before it was scored: the parameter server sends them (version {1}) to the " +
            "{2} alive, which score the rest.", _plan.Epoch, _trained!.Version, Counts.Of(_plan.AliveCount, "worker"));
        return ShareEpochWeights();
    }

    /// <summary>
    /// Every worker that held the finished epoch's weights is lost (after its last gradient, or during the evaluation): the
    /// workers alive joined after those weights went out.
    /// The parameter server still holds them (the next epoch starts only after this evaluation), so it sends them in a
    /// part of the epoch with no minibatches: an empty shard for each worker alive, one round after the last, which the
    /// parameter server broadcasts and closes at once (<see cref="EpochCompleted"/> with no samples, ignored here).
    /// Nothing is trained twice. Returns the workers alive, which now hold the weights.
    /// </summary>
    private int[] ShareEpochWeights()
    {
        var part = _plan.ShareWeights();
        _weightsOnlyParts++;
        SendPart(part);
        return part.Receivers;
    }

    private void OnEvaluationResult(EvaluationResult result)
    {
        if (_evaluation.Problem(result) is { } problem)
        {
            Fail(new InvalidOperationException(problem));
            return;
        }
        var outcome = _evaluation.Record(result);
        if (outcome == EvaluationOutcome.Duplicate)
        {
            _log.Warning("Ignored a second evaluation result for {0} samples from {1} (worker {2}).", result.Split, result.Start, result.WorkerIndex);
            return;
        }
        if (outcome == EvaluationOutcome.Pending) return;
        var coverage = _evaluation.Coverage(EvaluationSplit.Test, _settings.TestSampleCount)
            ?? _evaluation.Coverage(EvaluationSplit.Validation, _settings.ValidationSampleCount);
        if (coverage is not null)
        {
            Fail(new InvalidOperationException(coverage));
            return;
        }
        EpochEvaluated();
    }

    /// <summary>Every test (and validation) sample is scored: report the epoch, apply early stopping, go on or finish.</summary>
    private void EpochEvaluated()
    {
        var trained = _trained!;
        var epoch = _plan.Epoch;
        var scored = _settings.TestSampleCount;
        var validation = _settings.ValidationSampleCount;
        var validationLoss = validation > 0 ? _evaluation.LossSum(EvaluationSplit.Validation) / validation : double.NaN;
        var summary = new EpochSummary(epoch, trained.Version,
            TrainLoss: trained.LossSum / Math.Max(1, trained.SampleCount),
            TestLoss: _evaluation.LossSum(EvaluationSplit.Test) / Math.Max(1, scored),
            TestAccuracy: (double)_evaluation.Correct(EvaluationSplit.Test) / Math.Max(1, scored),
            TestSamples: scored,
            TrainSamples: trained.SampleCount,
            TrainSeconds: _trainSeconds,
            EvaluationSeconds: _clock.Elapsed.TotalSeconds,
            ValidationLoss: validationLoss,
            ValidationAccuracy: validation > 0 ? (double)_evaluation.Correct(EvaluationSplit.Validation) / validation : double.NaN,
            L1Penalty: trained.L1Penalty,
            L2Penalty: trained.L2Penalty,
            SamplesTrainedThisRun: _stepSamples.Epoch == epoch ? _stepSamples.Samples : 0,
            PausedSeconds: _trainPausedSeconds);
        _summaries.Add(summary);
        _log.Info("Epoch {0}: train loss {1:F4}, test accuracy {2:P2}", summary.Epoch, summary.TrainLoss, summary.TestAccuracy);
        _reportedEpoch = epoch;
        _observer.EpochCompleted(summary);
        ReportHeldCheckpoint(); // the epoch's checkpoint after its line
        if (_settings.StopsEarly)
        {
            var stopping = _settings.EarlyStopping!;
            _validations.RemoveAll(v => v.Epoch >= epoch); // a resumed epoch scored again
            _validations.Add(summary);
            // The first epoch is the best so far even when its loss is not finite, so there are always weights to keep.
            if (_bestEpoch == 0 || validationLoss < _bestValidationLoss - stopping.MinDelta)
            {
                _bestValidationLoss = validationLoss;
                _bestEpoch = epoch;
                RequestSnapshot(SnapshotFor.Best); // the parameter server answers before it starts the next epoch; the record is saved then
            }
            else
            {
                SaveEarlyStopping(newBest: null);
                if (epoch - _bestEpoch >= stopping.Patience)
                {
                    _stoppedEarly = epoch < _settings.Epochs;
                    _log.Info("Early stopping after epoch {0}: validation loss has not improved on {1:F4} (epoch {2}) for {3}; restoring epoch {2}'s weights.",
                        epoch, _bestValidationLoss, _bestEpoch, Counts.Of(epoch - _bestEpoch, "epoch"));
                    Finish();
                    return;
                }
            }
        }
        if (_stopAfterEvaluation is { } stop && epoch < _settings.Epochs)
        {
            // Early stopping's new best weights, when asked for above, come first: the record a resume reads is saved with them.
            _evaluatedForStop = true;
            if (_snapshots.Count == 0) Cancel(stop);
            return;
        }
        if (epoch < _settings.Epochs)
            StartNextEpoch();
        else
            Finish();
    }

    /// <summary>
    /// Reports a checkpoint the parameter server wrote (<see cref="ITrainingObserver.CheckpointSaved"/>). The one written at
    /// the end of an epoch (position: the next epoch, round 0) is written while the workers score that epoch, so it reached
    /// this actor before or after the evaluation's last result, and its line came before or after the epoch's, whichever
    /// was first. It is held until the epoch's line is out, so the order is fixed: the epoch, then its checkpoint. A run
    /// that ends before the epoch is reported still reports it (<see cref="ReportHeldCheckpoint"/>).
    /// </summary>
    private void OnCheckpointSaved(CheckpointSaved saved)
    {
        if (saved.Round == 0 && saved.Epoch == _plan.Epoch + 1 && _reportedEpoch < _plan.Epoch && _phase != Phase.Finished)
        {
            ReportHeldCheckpoint(); // one held already (the same position written again): in the order written
            _epochEndCheckpoint = saved;
            return;
        }
        _observer.CheckpointSaved(saved);
    }

    /// <summary>Reports the epoch-end checkpoint held by <see cref="OnCheckpointSaved"/>, if any: after the epoch's line, or as the run ends.</summary>
    private void ReportHeldCheckpoint()
    {
        if (_epochEndCheckpoint is not { } held) return;
        _epochEndCheckpoint = null;
        _observer.CheckpointSaved(held);
    }

    /// <summary>With a checkpoint directory, records the evaluated epochs and, when <paramref name="newBest"/> is given, the best
    /// epoch's weights, for a run resumed from a checkpoint (<see cref="EarlyStoppingRecord"/>).</summary>
    /// <exception cref="IOException">A file could not be written: the job fails, as when a checkpoint cannot be written.</exception>
    private void SaveEarlyStopping(WeightsSnapshot? newBest)
    {
        if (_settings.EarlyStoppingDirectory is not { } directory) return;
        EarlyStoppingRecord.Save(directory, _validations, _bestEpoch,
            newBest is null ? null : (new ParameterVector(_settings.Layout, newBest.Weights), newBest.Version), _settings.ValidationSampleCount);
    }

    private void RequestSnapshot(SnapshotFor purpose)
    {
        _snapshots.Enqueue(purpose);
        _parameterServer.Tell(GetWeights.Instance);
    }

    /// <summary>Ends the run: with early stopping, on the best epoch's weights once their snapshot is in; else on the current weights.</summary>
    private void Finish()
    {
        _phase = Phase.Finishing;
        if (!_settings.StopsEarly) RequestSnapshot(SnapshotFor.Final);
        else if (_snapshots.Count == 0) Complete(_best!);
    }

    private void OnWeightsSnapshot(WeightsSnapshot snapshot)
    {
        if (_snapshots.Count == 0)
        {
            Fail(new InvalidOperationException($"The parameter server sent weights version {snapshot.Version} that nobody asked for."));
            return;
        }
        var purpose = _snapshots.Dequeue();
        if (purpose == SnapshotFor.Best)
        {
            _best = snapshot;
            SaveEarlyStopping(newBest: snapshot);
            if (_evaluatedForStop && _stopAfterEvaluation is { } stop && _snapshots.Count == 0)
            {
                Cancel(stop);
                return;
            }
        }
        else if (purpose == SnapshotFor.Failure)
        {
            Fail(new TrainingStalledException(_pauseTimedOut!, snapshot));
            return;
        }
        else if (purpose == SnapshotFor.Stop)
        {
            if (!OnlyEvaluationLeft)
            {
                if (_phase == Phase.Evaluating)
                {
                    // These weights end the epoch being scored: its test accuracy belongs in the run's record (without it a
                    // resume starts at the next epoch and the score is in no file), and scoring is short. Bounded all the same.
                    _stopAfterEvaluation = snapshot;
                    _log.Info("Stop requested while epoch {0} is scored: the run stops once its evaluation is done (at most {1:F0} s).",
                        _plan.Epoch, StopEvaluationWait.TotalSeconds);
                    Timers.StartSingleTimer(nameof(StopEvaluationTimedOut), StopEvaluationTimedOut.Instance, StopEvaluationWait);
                    return;
                }
                Cancel(snapshot);
                return;
            }
            LogStopAfterTraining(); // the last epoch's training ended while its weights were on their way
        }
        if (_phase != Phase.Finishing || _snapshots.Count > 0) return;
        Complete(_settings.StopsEarly ? _best! : snapshot);
    }

    private void Complete(WeightsSnapshot weights)
    {
        TellStopDecision(finishes: true); // a stop held for an evaluation after which early stopping ended the run
        ReportHeldCheckpoint();
        _phase = Phase.Finished;
        _completion.TrySetResult(new TrainingResult(new ParameterVector(_settings.Layout, weights.Weights), weights.Version, _summaries,
            _settings.StopsEarly ? _bestEpoch : null, _stoppedEarly,
            _settings.StopsEarly && _summaries.All(e => e.Epoch != _bestEpoch) ? _validations.Find(v => v.Epoch == _bestEpoch) : null));
        Context.Stop(Self);
    }

    /// <summary>True once nothing is left to train: the last epoch (or the one early stopping ended the run at) is being
    /// evaluated, or the final weights are awaited.</summary>
    private bool OnlyEvaluationLeft => _phase == Phase.Finishing || (_phase == Phase.Evaluating && _plan.Epoch >= _settings.Epochs);

    /// <summary>
    /// See <see cref="StopRequested"/>. The decision waits for the parameter server's weights: it answers between two
    /// steps, after it sent the end of a part it just finished, so a stop that comes after the last step but before that end
    /// reached this actor still finds the run evaluating its last epoch, and lets it finish.
    /// </summary>
    private void OnStopRequested(StopRequested stop)
    {
        if (_phase == Phase.Finished)
        {
            stop.ReplyTo?.Tell(_completion.Task.IsCompletedSuccessfully);
            return;
        }
        if (_stopRequested)
        {
            // Decided already (the run finishes), or awaiting the parameter server's weights: then this caller is told too.
            if (!_snapshots.Contains(SnapshotFor.Stop)) stop.ReplyTo?.Tell(true);
            else if (stop.ReplyTo is not null) _stopReplyTo.Add(stop.ReplyTo);
            return;
        }
        _stopRequested = true;
        if (stop.ReplyTo is not null) _stopReplyTo.Add(stop.ReplyTo);
        if (OnlyEvaluationLeft) LogStopAfterTraining();
        else
        {
            // The parameter server steps no further once it has this: the stop's weights are the last the run trains, and
            // no checkpoint is written past them (before, it went on stepping, and checkpointing, until the job stopped it).
            _parameterServer.Tell(StopStepping.Instance);
            RequestSnapshot(SnapshotFor.Stop);
            // A parameter server that does not answer (stuck writing a checkpoint to a hung disk) must not hold the stop:
            // the run then ends cancelled without the weights, as before this message existed.
            Timers.StartSingleTimer(nameof(StopSnapshotTimedOut), StopSnapshotTimedOut.Instance, StopSnapshotTimeout);
        }
    }

    /// <summary>How long a stop waits for the parameter server's weights before it ends the run without them.</summary>
    internal static readonly TimeSpan StopSnapshotTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a stop whose weights end an epoch waits for that epoch's evaluation before it ends the run without the
    /// epoch's score. Below the callers' wait for the stop's answer (<see cref="StopSnapshotTimeout"/> and 2 s).
    /// </summary>
    internal static readonly TimeSpan StopEvaluationWait = TimeSpan.FromSeconds(5);

    /// <summary>The evaluation a stop waits for did not finish within <see cref="StopEvaluationWait"/>.</summary>
    private sealed class StopEvaluationTimedOut
    {
        public static readonly StopEvaluationTimedOut Instance = new();
    }

    private void OnStopEvaluationTimedOut()
    {
        if (_phase == Phase.Finished || _stopAfterEvaluation is not { } stop) return;
        _log.Warning("The evaluation of epoch {0} did not finish within {1:F0} s of the stop; the run stops without its score.", _plan.Epoch,
            StopEvaluationWait.TotalSeconds);
        Cancel(stop);
    }

    /// <summary>The parameter server did not answer a stop's request for its weights within <see cref="StopSnapshotTimeout"/>.</summary>
    private sealed class StopSnapshotTimedOut
    {
        public static readonly StopSnapshotTimedOut Instance = new();
    }

    private void OnStopSnapshotTimedOut()
    {
        if (_phase != Phase.Finished && _snapshots.Contains(SnapshotFor.Failure))
        {
            _log.Warning("The parameter server did not send its weights within {0:F0} s; the run fails without them.", StopSnapshotTimeout.TotalSeconds);
            Fail(new TrainingStalledException(_pauseTimedOut!));
            return;
        }
        if (_phase == Phase.Finished || !_snapshots.Contains(SnapshotFor.Stop)) return;
        _log.Warning("The parameter server did not send its weights within {0:F0} s of the stop; the run ends cancelled without them.", StopSnapshotTimeout.TotalSeconds);
        Cancel(null);
    }

    private void LogStopAfterTraining()
    {
        _log.Info("Stop requested after the last training step: the evaluation of epoch {0} finishes and the run ends as completed.", _plan.Epoch);
        TellStopDecision(finishes: true);
    }

    private void TellStopDecision(bool finishes)
    {
        foreach (var caller in _stopReplyTo) caller.Tell(finishes);
        _stopReplyTo.Clear();
    }

    /// <summary>Ends the job as cancelled, with the weights at the stop.</summary>
    private void Cancel(WeightsSnapshot? weights)
    {
        ReportHeldCheckpoint(); // written before the stop: a resume continues from it
        TellStopDecision(finishes: false);
        _phase = Phase.Finished;
        _completion.TrySetException(new TrainingCancelledException(weights, CancellationToken.None));
        Context.Stop(Self);
    }

    private void OnChildTerminated(Terminated terminated)
    {
        var index = _workers.IndexOf(terminated.ActorRef);
        if (!_settings.ToleratesWorkerLoss || index < 0 || _childFailure is not null)
        {
            Fail(_childFailure ?? new InvalidOperationException($"{terminated.ActorRef.Path.Name} stopped unexpectedly (see its log line above)."));
            return;
        }
        if (!_plan.Lose(index)) return;
        Metrics.DistTrainMetrics.RecordWorkerLost();
        Metrics.DistTrainMetrics.UnwatchMailbox(NodeRoles.Worker, terminated.ActorRef);
        var alive = _plan.AliveCount;
        // With nobody left, the samples wait for a worker to join (WhenEnoughWorkers pauses at the next part or epoch).
        _log.Warning("Worker {0} is lost ({1}) at epoch {2} after step {3}; {4}",
            $"{index}{_settings.NodeOfWorker(index)}", terminated.ActorRef.Path.Name, _plan.Epoch, _lastStep,
            alive == 0
                ? "no worker is left. Any samples it had left wait for a worker to join."
                : $"{alive} of {Counts.Of(_workers.Count, "worker")} remain. Any samples it had left go to the others.");
        _parameterServer.Tell(new WorkerLost(index));
        ReassignEvaluations();
    }

    private void Fail(Exception reason)
    {
        if (_phase == Phase.Finished) return;
        TellStopDecision(finishes: false);
        _phase = Phase.Finished;
        try
        {
            ReportHeldCheckpoint(); // written before the failure: a resume continues from it
        }
        catch (Exception e)
        {
            _log.Warning("The checkpoint line could not be reported: {0}", e.Message); // the failure is the run's outcome
        }
        _completion.TrySetException(reason);
        // The caller reports the failure (the exception completes the run; the command line prints it as `training failed:`),
        // so the log has it as information: a warning printed it a second time in single-node mode (`warning: Training failed`).
        // A divergence is likewise an outcome the caller reports, with its last good weights.
        if (reason is TrainingDivergedException) _log.Info("Training stopped: {0}", reason.Message);
        else _log.Info("Training failed: {0}", reason.Message);
        Context.Stop(Self);
    }
}

/// <summary>The coordinator stopped before its training completed (its node stopping, or its parent stopping it).</summary>
/// <param name="message">What happened.</param>
public sealed class CoordinatorStoppedException(string message) : InvalidOperationException(message);
