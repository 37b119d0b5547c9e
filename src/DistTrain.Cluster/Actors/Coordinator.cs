using System.Diagnostics;
using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Actors;

/// <summary>What the coordinator needs to run a job.</summary>
/// <param name="Epochs">Epochs to train.</param>
/// <param name="BatchSizePerWorker">Samples per worker minibatch.</param>
/// <param name="Planner">Shard planner over the training set, one shard per worker.</param>
/// <param name="TestSampleCount">Size of the test set; evaluation must score exactly this many.</param>
/// <param name="Layout">Layout of the weights, for the result.</param>
/// <param name="StallTimeout">Longest time without any progress message (a step, an evaluation result) before the job fails.</param>
/// <param name="ValidationSampleCount">Samples held out for validation, scored after every epoch; 0 for none.</param>
/// <param name="EarlyStopping">Stop when the validation loss has not improved for this many epochs (Patience 0 = off).</param>
/// <param name="FirstEpoch">1-based epoch to start at: 1, or a resumed checkpoint's epoch.</param>
/// <param name="FirstRound">Round to start <paramref name="FirstEpoch"/> at: 0, or a resumed checkpoint's round. Later epochs start at 0.</param>
/// <param name="PlannerFor">Cluster mode: a shard planner for a given number of workers, used when workers are lost or
/// join. Null (single-node mode): a worker that stops fails the job.</param>
/// <param name="MinWorkers">Cluster mode: with fewer workers, training pauses until enough join again.</param>
/// <param name="GlobalBatchSize">Cluster mode: samples per step to keep when the number of workers alive differs from
/// the planned one (Training:KeepGlobalBatch): each worker's shard is then cut into the plan's steps per epoch
/// (<see cref="PlannedStepsPerEpoch"/>) as balanced minibatches of about GlobalBatchSize / alive samples, so steps per
/// epoch stay and no step is a runt. 0: every worker keeps <paramref name="BatchSizePerWorker"/>, so the global minibatch
/// shrinks or grows with the workers.</param>
public sealed record CoordinatorSettings(int Epochs, int BatchSizePerWorker, IShardPlanner Planner, int TestSampleCount,
    ParameterLayout Layout, TimeSpan StallTimeout, int ValidationSampleCount = 0, EarlyStoppingOptions? EarlyStopping = null,
    int FirstEpoch = 1, int FirstRound = 0, Func<int, IShardPlanner>? PlannerFor = null, int MinWorkers = 1, int GlobalBatchSize = 0)
{
    /// <summary>Each worker's (largest) minibatch when <paramref name="aliveWorkers"/> take part (see <see cref="GlobalBatchSize"/>).</summary>
    public int BatchSizeFor(int aliveWorkers) =>
        GlobalBatchSize > 0 && aliveWorkers > 0 ? (GlobalBatchSize + aliveWorkers - 1) / aliveWorkers : BatchSizePerWorker;

    /// <summary>Optimizer steps of an epoch as planned: the largest of the planner's even shards in minibatches of <see cref="BatchSizePerWorker"/>.</summary>
    public int PlannedStepsPerEpoch =>
        ((Planner.SampleCount + Planner.Workers - 1) / Planner.Workers + BatchSizePerWorker - 1) / BatchSizePerWorker;

    /// <summary>
    /// Balanced minibatches for an epoch of <paramref name="aliveWorkers"/> workers: the plan's steps per epoch when the
    /// global minibatch is kept and the worker count differs from the plan's; 0 (fixed minibatches) otherwise.
    /// </summary>
    public int BalancedStepsFor(int aliveWorkers) =>
        GlobalBatchSize > 0 && aliveWorkers != Planner.Workers ? PlannedStepsPerEpoch : 0;

    /// <summary>True when the job survives losing workers (cluster mode).</summary>
    public bool ToleratesWorkerLoss => PlannerFor is not null;

    /// <summary>True when early stopping is on (it needs validation samples).</summary>
    public bool StopsEarly => EarlyStopping is { Patience: > 0 } && ValidationSampleCount > 0;
}

/// <summary>The job made no progress within <see cref="CoordinatorSettings.StallTimeout"/>: a message or an actor was lost.</summary>
public sealed class TrainingStalledException(string message) : Exception(message);

/// <summary>
/// Runs one job: starts the parameter server and the workers as its children, plans every epoch's
/// shards, evaluates after every epoch (each test sample scored exactly once, split across the
/// workers), reports progress to an <see cref="ITrainingObserver"/>, and completes a task with the
/// final weights or the failure.
/// </summary>
/// <remarks>
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
    private readonly CoordinatorSettings _settings;
    private readonly ITrainingObserver _observer;
    private readonly TaskCompletionSource<TrainingResult> _completion;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly System.Diagnostics.TagList _metricTags = Metrics.DistTrainMetrics.Tags(NodeRoles.Coordinator);
    private readonly IActorRef _parameterServer;
    private readonly List<IActorRef> _workers;
    private readonly List<bool> _alive;
    private readonly List<bool> _inEpoch; // sent this epoch's weights (a worker that joined mid-epoch has none yet)
    // The epoch's current part: each worker's shard (indexed by worker) and the round its first minibatch runs in.
    private int[][] _segmentShards = [];
    private int _segmentFirstRound;
    private int _batchSize; // each worker's minibatch in the current part of the epoch
    private int _segmentSteps; // balanced minibatches per worker in the current part (AssignShard.Steps); 0 = fixed _batchSize
    private int _epochSteps;
    private int _nextRound;
    private readonly List<int> _orphans = [];         // samples of lost workers not yet trained on this epoch
    private int _epochSampleCount;
    private double _epochLossSum;
    private readonly List<EvaluationRequest> _evaluations = [];
    private Action? _onResume;                        // what a pause waits to do
    private bool _training; // a part of an epoch is running at the parameter server
    private readonly List<EpochSummary> _summaries = [];
    private readonly Stopwatch _clock = new();
    private readonly List<(int Start, int Count)>[] _scoredRanges = [[], []]; // by EvaluationSplit
    private readonly int[] _correctBySplit = new int[2];
    private readonly double[] _lossBySplit = new double[2];
    private readonly Queue<bool> _snapshotIsBest = new(); // what each requested WeightsSnapshot is for
    private WeightsSnapshot? _best;
    private int _bestEpoch;
    private double _bestValidationLoss = double.PositiveInfinity;
    private bool _finishing;
    private bool _stoppedEarly;
    private Exception? _childFailure;
    private bool _finished;
    private int _epoch;
    private long _lastVersion;
    private int _lastStep = -1;
    private EpochCompleted? _trained;
    private double _trainSeconds;
    private int _evaluationsPending;
    private int _weightsOnlyParts; // parts started by ShareEpochWeights whose EpochCompleted has not come back yet

    /// <summary>Creates the coordinator; see <see cref="Props(CoordinatorSettings, Akka.Actor.Props, IReadOnlyList{Akka.Actor.Props}, ITrainingObserver, TaskCompletionSource{TrainingResult})"/>.</summary>
    public Coordinator(CoordinatorSettings settings, Props parameterServer, IReadOnlyList<Props>? workerProps,
        IReadOnlyList<IActorRef>? workerRefs, ITrainingObserver observer, TaskCompletionSource<TrainingResult> completion)
    {
        _settings = settings;
        _batchSize = settings.BatchSizePerWorker;
        _observer = observer;
        _completion = completion;
        _epoch = settings.FirstEpoch - 1;
        _parameterServer = Context.Watch(Context.ActorOf(parameterServer, "parameter-server"));
        Metrics.DistTrainMetrics.WatchMailbox(NodeRoles.ParameterServer, _parameterServer);
        _workers = workerProps is not null
            ? [.. workerProps.Select((props, i) => Context.Watch(Context.ActorOf(props, $"worker-{i}")))]
            : [.. (workerRefs ?? throw new ArgumentException("Give the workers as Props or as actor references.")).Select(w => Context.Watch(w))];
        _alive = [.. _workers.Select(_ => true)];
        _inEpoch = [.. _workers.Select(_ => false)];
        foreach (var worker in _workers) Metrics.DistTrainMetrics.WatchMailbox(NodeRoles.Worker, worker);

        Receive<RoundApplied>(OnRoundApplied);
        Receive<EpochCompleted>(OnEpochTrained);
        Receive<EvaluationResult>(OnEvaluationResult);
        Receive<WeightsSnapshot>(OnWeightsSnapshot);
        Receive<CheckpointSaved>(saved => _observer.CheckpointSaved(saved));
        Receive<Terminated>(OnChildTerminated);
        Receive<WorkerRemoved>(OnWorkerRemoved);
        Receive<AddWorker>(OnAddWorker);
        Receive<PausedStatus>(_ => _log.Warning("Training is paused at epoch {0}: {1} of Cluster:MinWorkers = {2} workers. Start worker nodes to continue.",
            _epoch, AliveCount, _settings.MinWorkers));
        Receive<ReceiveTimeout>(_ => Fail(new TrainingStalledException(
            $"No progress for {_settings.StallTimeout.TotalSeconds:F0} s at epoch {_epoch}, after step {_lastStep} (weights version {_lastVersion}), " +
            $"{(_evaluationsPending > 0 ? $"waiting for {_evaluationsPending} evaluation result(s)" : "waiting for a round to complete")}. " +
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
    protected override SupervisorStrategy SupervisorStrategy() =>
        new OneForOneStrategy(exception =>
        {
            Metrics.DistTrainMetrics.RecordFailure(Sender.Equals(_parameterServer) ? NodeRoles.ParameterServer : NodeRoles.Worker);
            _childFailure ??= CreationCause(exception);
            return Directive.Stop;
        });

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
        Guard(StartNextEpoch);
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
            if (_alive[i]) Metrics.DistTrainMetrics.UnwatchMailbox(NodeRoles.Worker, _workers[i]);
        Context.System.EventStream.Unsubscribe(Self);
        _completion.TrySetException(new InvalidOperationException("The coordinator stopped before training completed."));
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

    /// <summary>One evaluation range sent to a worker; re-sent to another worker if that one is lost first.</summary>
    private sealed class EvaluationRequest(int worker, Evaluate request)
    {
        public int Worker { get; set; } = worker;
        public Evaluate Request { get; } = request;
        public bool Done { get; set; }
    }

    private int AliveCount => _alive.Count(a => a);

    private int[] AliveWorkers => [.. Enumerable.Range(0, _workers.Count).Where(i => _alive[i])];

    /// <summary>Workers alive that hold this epoch's weights: the ones evaluation can use.</summary>
    private int[] EvaluatingWorkers => [.. Enumerable.Range(0, _workers.Count).Where(i => _alive[i] && _inEpoch[i])];

    /// <summary>The workers for a StartEpoch: lost ones are <see cref="ActorRefs.Nobody"/>, so nothing is sent to them.</summary>
    private IActorRef[] WorkerSlots => [.. Enumerable.Range(0, _workers.Count).Select(i => _alive[i] ? _workers[i] : ActorRefs.Nobody)];

    private static bool IsRemotingNoise(Error error) =>
        error.LogSource.Contains("/system/", StringComparison.Ordinal) || error.LogSource.Contains("Remot", StringComparison.Ordinal) ||
        error.LogClass.Namespace?.StartsWith("Akka.Remote", StringComparison.Ordinal) == true ||
        error.Message?.ToString()?.Contains("data plane closed", StringComparison.Ordinal) == true;

    /// <summary>Runs <paramref name="action"/> now if enough workers are alive, else pauses until they are.</summary>
    private void WhenEnoughWorkers(Action action)
    {
        if (AliveCount >= Math.Max(1, _settings.MinWorkers))
        {
            action();
            return;
        }
        _onResume = action;
        Context.SetReceiveTimeout(null); // a pause is not a stall
        Metrics.DistTrainMetrics.Set("paused", 1);
        Self.Tell(new PausedStatus());
        Timers.StartPeriodicTimer("paused-status", new PausedStatus(), TimeSpan.FromSeconds(10));
    }

    private void StartNextEpoch() => WhenEnoughWorkers(() =>
    {
        var firstRound = _epoch == _settings.FirstEpoch - 1 ? _settings.FirstRound : 0;
        _epoch++;
        var alive = AliveWorkers;
        var planner = alive.Length == _settings.Planner.Workers ? _settings.Planner : _settings.PlannerFor!(alive.Length);
        var planned = planner.Plan(_epoch);
        _batchSize = _settings.BatchSizeFor(alive.Length);
        _segmentSteps = _settings.BalancedStepsFor(alive.Length);
        _segmentShards = [.. _workers.Select(_ => Array.Empty<int>())];
        for (var j = 0; j < alive.Length; j++) _segmentShards[alive[j]] = planned[j];
        var batches = Batches(_segmentShards, 0);
        _epochSteps = Math.Max(1, batches.Max());
        for (var i = 0; i < _workers.Count; i++)
        {
            _inEpoch[i] = _alive[i];
            if (_alive[i]) _workers[i].Tell(new AssignShard(_epoch, _segmentShards[i], _batchSize, 0, _epochSteps, _segmentSteps));
        }
        _segmentFirstRound = 0;
        _nextRound = firstRound;
        _orphans.Clear();
        _epochSampleCount = 0;
        _epochLossSum = 0;
        _observer.EpochStarted(_epoch, _epochSteps, _settings.Planner.SampleCount);
        _clock.Restart();
        _training = true;
        var resumable = alive.Length == _settings.Planner.Workers && alive.Length == _workers.Count && _batchSize == _settings.BatchSizePerWorker;
        _parameterServer.Tell(new StartEpoch(_epoch, WorkerSlots, batches, firstRound, _epochSteps, resumable));
    });

    /// <summary>Each worker's last round + 1 (absolute), for shards whose first minibatch runs in <paramref name="firstRound"/>.</summary>
    private int[] Batches(int[][] shards, int firstRound) =>
        [.. shards.Select(s => s.Length == 0 ? 0 : firstRound + Minibatches(s).Count)];

    /// <summary>How the current part cuts a worker's shard into minibatches (as <see cref="AssignShard.Minibatches"/>).</summary>
    private MinibatchPlan Minibatches(int[] shard) =>
        _segmentSteps > 0 ? MinibatchPlan.Balanced(shard.Length, _segmentSteps) : MinibatchPlan.Fixed(shard.Length, _batchSize);

    /// <summary>
    /// A further part of the epoch: the samples the lost workers did not train on, split evenly across the workers
    /// alive now, in the rounds after the last one applied, as balanced minibatches of up to the workers' minibatch (so
    /// the part has no runt step). Every sample of the epoch is still used exactly once.
    /// </summary>
    private void ContinueEpoch() => WhenEnoughWorkers(() =>
    {
        var alive = AliveWorkers;
        var orphans = _orphans.ToArray();
        _orphans.Clear();
        _batchSize = _settings.BatchSizeFor(alive.Length);
        _segmentShards = [.. _workers.Select(_ => Array.Empty<int>())];
        for (var j = 0; j < alive.Length; j++)
        {
            var from = (int)((long)orphans.Length * j / alive.Length);
            var to = (int)((long)orphans.Length * (j + 1) / alive.Length);
            _segmentShards[alive[j]] = orphans[from..to];
        }
        var largest = (orphans.Length + alive.Length - 1) / alive.Length;
        _segmentSteps = Math.Max(1, (largest + _batchSize - 1) / _batchSize);
        // One round number is skipped: the previous part's closing broadcast used _nextRound, and a worker that has not
        // received its new shard yet must not mistake the new part's first weights for it.
        _segmentFirstRound = _nextRound + 1;
        var batches = Batches(_segmentShards, _segmentFirstRound);
        var rounds = Math.Max(1, batches.Max() - _segmentFirstRound);
        foreach (var i in alive)
        {
            _inEpoch[i] = true;
            _workers[i].Tell(new AssignShard(_epoch, _segmentShards[i], _batchSize, _segmentFirstRound, rounds, _segmentSteps));
        }
        _log.Warning("Epoch {0}: the {1} samples lost workers had left go to {2} worker(s), from round {3}.",
            _epoch, orphans.Length, alive.Length, _segmentFirstRound);
        _training = true;
        _parameterServer.Tell(new StartEpoch(_epoch, WorkerSlots, batches, _segmentFirstRound, _epochSteps, MidEpochResumable: false));
    });

    private void OnWorkerRemoved(WorkerRemoved removed)
    {
        var index = removed.WorkerIndex;
        if (index < 0 || index >= _segmentShards.Length) return;
        var shard = _segmentShards[index];
        var plan = Minibatches(shard);
        var from = plan.Start(Math.Clamp(removed.FirstUnusedRound - _segmentFirstRound, 0, plan.Count));
        if (from < shard.Length) _orphans.AddRange(shard[from..]);
        _segmentShards[index] = [];
    }

    private void OnAddWorker(AddWorker added)
    {
        var index = added.WorkerIndex;
        if (index < 0 || index >= ParameterServer.MaxWorkers || (index < _workers.Count && _alive[index]))
        {
            _log.Warning("Ignored a worker joining as index {0}: out of range or already taken.", index);
            return;
        }
        // Positions are worker indices: fill any gap with lost placeholders (a worker that joined later comes first).
        while (_workers.Count <= index)
        {
            _workers.Add(ActorRefs.Nobody);
            _alive.Add(false);
            _inEpoch.Add(false);
        }
        _workers[index] = Context.Watch(added.Worker);
        _alive[index] = true;
        Metrics.DistTrainMetrics.WatchMailbox(NodeRoles.Worker, added.Worker);
        _log.Info("Worker {0} joined: it takes part from the next epoch ({1} workers alive).", index, AliveCount);
        if (_onResume is { } resume && AliveCount >= Math.Max(1, _settings.MinWorkers))
        {
            _onResume = null;
            Timers.Cancel("paused-status");
            Metrics.DistTrainMetrics.Set("paused", 0);
            Context.SetReceiveTimeout(_settings.StallTimeout);
            _log.Info("Training resumes at epoch {0} with {1} workers.", _epoch, AliveCount);
            resume();
        }
    }

    private void OnRoundApplied(RoundApplied round)
    {
        _nextRound = round.Round + 1;
        _lastStep = round.Round;
        _lastVersion = round.Version;
        _observer.StepApplied(round.Epoch, round.Round, round.Version, round.SampleCount, round.LossSum / Math.Max(1, round.SampleCount), round.LearningRate, round.Timing);
        _observer.WorkersReported(round.WorkerLosses, round.WorkerComputeSeconds, round.WorkerQueueingSeconds);
        Sender.Tell(round); // back to the parameter server's pool
    }

    private void OnEpochTrained(EpochCompleted part)
    {
        if (!_training && _weightsOnlyParts > 0 && part.SampleCount == 0)
        {
            _weightsOnlyParts--; // the end of a part that only sent the weights to evaluate (ShareEpochWeights)
            return;
        }
        if (!_training)
        {
            _log.Warning("Ignored an EpochCompleted for epoch {0} (weights version {1}) that arrived while no part of an epoch was running.", part.Epoch, part.Version);
            return;
        }
        _training = false;
        _epochSampleCount += part.SampleCount;
        _epochLossSum += part.LossSum;
        if (_orphans.Count > 0)
        {
            ContinueEpoch();
            return;
        }
        var trained = part with { SampleCount = _epochSampleCount, LossSum = _epochLossSum };
        _trained = trained;
        _trainSeconds = _clock.Elapsed.TotalSeconds;
        _clock.Restart();
        _evaluationsPending = 0;
        foreach (var ranges in _scoredRanges) ranges.Clear();
        Array.Clear(_correctBySplit);
        Array.Clear(_lossBySplit);
        RequestEvaluation(EvaluationSplit.Test, _settings.TestSampleCount);
        if (_settings.ValidationSampleCount > 0) RequestEvaluation(EvaluationSplit.Validation, _settings.ValidationSampleCount);
    }

    /// <summary>Splits <c>[0, total)</c> of a split evenly across the workers alive.</summary>
    private void RequestEvaluation(EvaluationSplit split, int total)
    {
        if (split == EvaluationSplit.Test) _evaluations.Clear();
        var alive = EvaluatingWorkers;
        for (var j = 0; j < alive.Length; j++)
        {
            var start = (int)((long)total * j / alive.Length);
            var end = (int)((long)total * (j + 1) / alive.Length);
            var request = new Evaluate(_trained!.Version, start, end - start, split);
            _evaluations.Add(new EvaluationRequest(alive[j], request));
            _workers[alive[j]].Tell(request);
            _evaluationsPending++;
        }
    }

    /// <summary>
    /// Sends the unanswered evaluation ranges of lost workers to the workers alive, at once or, below MinWorkers, when
    /// enough have joined. The ranges are collected when they are sent, so every worker lost during a pause is covered.
    /// </summary>
    private void ReassignEvaluations()
    {
        if (!_evaluations.Any(e => !e.Done && !_alive[e.Worker])) return;
        WhenEnoughWorkers(() =>
        {
            var orphaned = _evaluations.Where(e => !e.Done && !_alive[e.Worker]).ToList();
            if (orphaned.Count == 0) return;
            var alive = EvaluatingWorkers;
            if (alive.Length == 0) alive = ShareEpochWeights();
            for (var k = 0; k < orphaned.Count; k++)
            {
                orphaned[k].Worker = alive[k % alive.Length];
                _workers[orphaned[k].Worker].Tell(orphaned[k].Request);
            }
        });
    }

    /// <summary>
    /// Every worker that held the finished epoch's weights is lost: the workers alive joined after those weights went out.
    /// The parameter server still holds them (the next epoch starts only after this evaluation), so it sends them in a
    /// part of the epoch with no minibatches: an empty shard for each worker alive, one round after the last, which the
    /// parameter server broadcasts and closes at once (<see cref="EpochCompleted"/> with no samples, ignored here).
    /// Nothing is trained twice. Returns the workers alive, which now hold the weights.
    /// </summary>
    private int[] ShareEpochWeights()
    {
        var alive = AliveWorkers;
        _segmentShards = [.. _workers.Select(_ => Array.Empty<int>())];
        _segmentSteps = 0;
        _segmentFirstRound = _nextRound + 1;
        _nextRound = _segmentFirstRound;
        foreach (var i in alive)
        {
            _inEpoch[i] = true;
            _workers[i].Tell(new AssignShard(_epoch, [], _batchSize, _segmentFirstRound, Rounds: 1));
        }
        _log.Warning("Every worker that held epoch {0}'s weights was lost during its evaluation: the parameter server sends them (version {1}) to the {2} worker(s) alive, which score the rest.",
            _epoch, _trained!.Version, alive.Length);
        _weightsOnlyParts++;
        _parameterServer.Tell(new StartEpoch(_epoch, WorkerSlots, new int[_workers.Count], _segmentFirstRound, _epochSteps, MidEpochResumable: false));
        return alive;
    }

    private void OnEvaluationResult(EvaluationResult result)
    {
        if (_trained is null || result.Version != _trained.Version)
        {
            Fail(new InvalidOperationException($"Worker {result.WorkerIndex} scored weights version {result.Version}, but version {_trained?.Version} was requested."));
            return;
        }
        var split = (int)result.Split;
        if (split >= _scoredRanges.Length)
        {
            Fail(new InvalidOperationException($"Worker {result.WorkerIndex} scored an unknown split {split}."));
            return;
        }
        var request = _evaluations.FirstOrDefault(e => !e.Done && (int)e.Request.Split == split && e.Request.Start == result.Start);
        if (request is null)
        {
            _log.Warning("Ignored a second evaluation result for {0} samples from {1} (worker {2}).", result.Split, result.Start, result.WorkerIndex);
            return;
        }
        request.Done = true;
        _scoredRanges[split].Add((result.Start, result.SampleCount));
        _correctBySplit[split] += result.Correct;
        _lossBySplit[split] += result.LossSum;
        if (--_evaluationsPending > 0) return;
        var coverage = CheckCoverage(EvaluationSplit.Test, _settings.TestSampleCount)
            ?? CheckCoverage(EvaluationSplit.Validation, _settings.ValidationSampleCount);
        if (coverage is not null)
        {
            Fail(new InvalidOperationException(coverage));
            return;
        }
        var trained = _trained;
        var scored = _settings.TestSampleCount;
        var validation = _settings.ValidationSampleCount;
        var validationLoss = validation > 0 ? _lossBySplit[(int)EvaluationSplit.Validation] / validation : double.NaN;
        var summary = new EpochSummary(_epoch, trained.Version,
            TrainLoss: trained.LossSum / Math.Max(1, trained.SampleCount),
            TestLoss: _lossBySplit[(int)EvaluationSplit.Test] / Math.Max(1, scored),
            TestAccuracy: (double)_correctBySplit[(int)EvaluationSplit.Test] / Math.Max(1, scored),
            TestSamples: scored,
            TrainSamples: trained.SampleCount,
            TrainSeconds: _trainSeconds,
            EvaluationSeconds: _clock.Elapsed.TotalSeconds,
            ValidationLoss: validationLoss,
            ValidationAccuracy: validation > 0 ? (double)_correctBySplit[(int)EvaluationSplit.Validation] / validation : double.NaN,
            L1Penalty: trained.L1Penalty,
            L2Penalty: trained.L2Penalty);
        _summaries.Add(summary);
        _log.Info("Epoch {0}: train loss {1:F4}, test accuracy {2:P2}", summary.Epoch, summary.TrainLoss, summary.TestAccuracy);
        _observer.EpochCompleted(summary);
        if (_settings.StopsEarly)
        {
            var stopping = _settings.EarlyStopping!;
            // The first epoch is the best so far even when its loss is not finite, so there are always weights to keep.
            if (_bestEpoch == 0 || validationLoss < _bestValidationLoss - stopping.MinDelta)
            {
                _bestValidationLoss = validationLoss;
                _bestEpoch = _epoch;
                RequestSnapshot(best: true); // the parameter server answers before it starts the next epoch
            }
            else if (_epoch - _bestEpoch >= stopping.Patience)
            {
                _stoppedEarly = _epoch < _settings.Epochs;
                _log.Info("Early stopping after epoch {0}: validation loss has not improved on {1:F4} (epoch {2}) for {3} epochs; restoring epoch {2}'s weights.",
                    _epoch, _bestValidationLoss, _bestEpoch, _epoch - _bestEpoch);
                Finish();
                return;
            }
        }
        if (_epoch < _settings.Epochs)
            StartNextEpoch();
        else
            Finish();
    }

    private void RequestSnapshot(bool best)
    {
        _snapshotIsBest.Enqueue(best);
        _parameterServer.Tell(GetWeights.Instance);
    }

    /// <summary>Ends the run: with early stopping, on the best epoch's weights once their snapshot is in; else on the current weights.</summary>
    private void Finish()
    {
        _finishing = true;
        if (!_settings.StopsEarly) RequestSnapshot(best: false);
        else if (_snapshotIsBest.Count == 0) Complete(_best!);
    }

    /// <summary>The scored ranges of a split must tile [0, total) with no gap and no overlap.</summary>
    private string? CheckCoverage(EvaluationSplit split, int total)
    {
        var next = 0;
        foreach (var (start, count) in _scoredRanges[(int)split].OrderBy(r => r.Start))
        {
            if (start != next)
                return $"Evaluation scored {split} samples [{start}, {start + count}) after [0, {next}): {(start < next ? "an overlap" : "a gap")}.";
            next = start + count;
        }
        return next == total
            ? null
            : $"Evaluation scored {next} {split} samples, expected {total}.";
    }

    private void OnWeightsSnapshot(WeightsSnapshot snapshot)
    {
        if (_snapshotIsBest.Count == 0)
        {
            Fail(new InvalidOperationException($"The parameter server sent weights version {snapshot.Version} that nobody asked for."));
            return;
        }
        var best = _snapshotIsBest.Dequeue();
        if (best) _best = snapshot;
        if (!_finishing || _snapshotIsBest.Count > 0) return;
        Complete(_settings.StopsEarly ? _best! : snapshot);
    }

    private void Complete(WeightsSnapshot weights)
    {
        _finished = true;
        _completion.TrySetResult(new TrainingResult(new ParameterVector(_settings.Layout, weights.Weights), weights.Version, _summaries,
            _settings.StopsEarly ? _bestEpoch : null, _stoppedEarly));
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
        if (!_alive[index]) return;
        _alive[index] = false;
        Metrics.DistTrainMetrics.RecordWorkerLost();
        Metrics.DistTrainMetrics.UnwatchMailbox(NodeRoles.Worker, terminated.ActorRef);
        _log.Warning("Worker {0} is lost ({1}) at epoch {2} after step {3}; {4} of {5} workers remain. Its unfinished samples go to the others.",
            index, terminated.ActorRef.Path.Name, _epoch, _lastStep, AliveCount, _workers.Count);
        _parameterServer.Tell(new WorkerLost(index));
        ReassignEvaluations();
    }

    private void Fail(Exception reason)
    {
        if (_finished) return;
        _finished = true;
        _completion.TrySetException(reason);
        _log.Warning("Training failed: {0}", reason.Message);
        Context.Stop(Self);
    }
}
