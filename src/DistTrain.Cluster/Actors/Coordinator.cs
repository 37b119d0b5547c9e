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
public sealed record CoordinatorSettings(int Epochs, int BatchSizePerWorker, IShardPlanner Planner, int TestSampleCount,
    ParameterLayout Layout, TimeSpan StallTimeout, int ValidationSampleCount = 0, EarlyStoppingOptions? EarlyStopping = null,
    int FirstEpoch = 1, int FirstRound = 0)
{
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
/// </remarks>
public sealed class Coordinator : ReceiveActor
{
    private readonly CoordinatorSettings _settings;
    private readonly ITrainingObserver _observer;
    private readonly TaskCompletionSource<TrainingResult> _completion;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly System.Diagnostics.TagList _metricTags = Metrics.DistTrainMetrics.Tags(NodeRoles.Coordinator);
    private readonly IActorRef _parameterServer;
    private readonly IActorRef[] _workers;
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

    /// <summary>Creates the coordinator; see <see cref="Props(CoordinatorSettings, Akka.Actor.Props, IReadOnlyList{Akka.Actor.Props}, ITrainingObserver, TaskCompletionSource{TrainingResult})"/>.</summary>
    public Coordinator(CoordinatorSettings settings, Props parameterServer, IReadOnlyList<Props>? workerProps,
        IReadOnlyList<IActorRef>? workerRefs, ITrainingObserver observer, TaskCompletionSource<TrainingResult> completion)
    {
        _settings = settings;
        _observer = observer;
        _completion = completion;
        _epoch = settings.FirstEpoch - 1;
        _parameterServer = Context.Watch(Context.ActorOf(parameterServer, "parameter-server"));
        Metrics.DistTrainMetrics.WatchMailbox(NodeRoles.ParameterServer, _parameterServer);
        _workers = workerProps is not null
            ? workerProps.Select((props, i) => Context.Watch(Context.ActorOf(props, $"worker-{i}"))).ToArray()
            : (workerRefs ?? throw new ArgumentException("Give the workers as Props or as actor references.")).Select(w => Context.Watch(w)).ToArray();
        foreach (var worker in _workers) Metrics.DistTrainMetrics.WatchMailbox(NodeRoles.Worker, worker);

        Receive<RoundApplied>(OnRoundApplied);
        Receive<EpochCompleted>(OnEpochTrained);
        Receive<EvaluationResult>(OnEvaluationResult);
        Receive<WeightsSnapshot>(OnWeightsSnapshot);
        Receive<CheckpointSaved>(saved => _observer.CheckpointSaved(saved));
        Receive<Terminated>(OnChildTerminated);
        Receive<ReceiveTimeout>(_ => Fail(new TrainingStalledException(
            $"No progress for {_settings.StallTimeout.TotalSeconds:F0} s at epoch {_epoch}, after step {_lastStep} (weights version {_lastVersion}), " +
            $"{(_evaluationsPending > 0 ? $"waiting for {_evaluationsPending} evaluation result(s)" : "waiting for a round to complete")}. " +
            "A worker or a message was lost; see the log above. Raise Training:StallTimeoutSeconds if steps are legitimately this slow.")));
        // A child's failure is also logged as an ERROR by its supervisor (this actor): report the child's own exception.
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
            _childFailure ??= exception;
            return Directive.Stop;
        });

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
        foreach (var worker in _workers) Metrics.DistTrainMetrics.UnwatchMailbox(NodeRoles.Worker, worker);
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

    private void StartNextEpoch()
    {
        var firstRound = _epoch == _settings.FirstEpoch - 1 ? _settings.FirstRound : 0;
        _epoch++;
        var shards = _settings.Planner.Plan(_epoch);
        var batches = new int[_workers.Length];
        for (var i = 0; i < _workers.Length; i++)
        {
            _workers[i].Tell(new AssignShard(_epoch, shards[i], _settings.BatchSizePerWorker));
            batches[i] = (shards[i].Length + _settings.BatchSizePerWorker - 1) / _settings.BatchSizePerWorker;
        }
        _observer.EpochStarted(_epoch, batches.Max(), _settings.Planner.SampleCount);
        _clock.Restart();
        _parameterServer.Tell(new StartEpoch(_epoch, _workers, batches, firstRound));
    }

    private void OnRoundApplied(RoundApplied round)
    {
        _lastStep = round.Round;
        _lastVersion = round.Version;
        _observer.StepApplied(round.Epoch, round.Round, round.Version, round.SampleCount, round.LossSum / Math.Max(1, round.SampleCount), round.LearningRate, round.Timing);
        _observer.WorkersReported(round.WorkerLosses, round.WorkerComputeSeconds, round.WorkerQueueingSeconds);
        Sender.Tell(round); // back to the parameter server's pool
    }

    private void OnEpochTrained(EpochCompleted trained)
    {
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

    /// <summary>Splits <c>[0, total)</c> of a split evenly across the workers.</summary>
    private void RequestEvaluation(EvaluationSplit split, int total)
    {
        for (var i = 0; i < _workers.Length; i++)
        {
            var start = (int)((long)total * i / _workers.Length);
            var end = (int)((long)total * (i + 1) / _workers.Length);
            _workers[i].Tell(new Evaluate(_trained!.Version, start, end - start, split));
            _evaluationsPending++;
        }
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

    private void OnChildTerminated(Terminated terminated) =>
        Fail(_childFailure ?? new InvalidOperationException($"{terminated.ActorRef.Path.Name} stopped unexpectedly (see its log line above)."));

    private void Fail(Exception reason)
    {
        if (_finished) return;
        _finished = true;
        _completion.TrySetException(reason);
        _log.Warning("Training failed: {0}", reason.Message);
        Context.Stop(Self);
    }
}
