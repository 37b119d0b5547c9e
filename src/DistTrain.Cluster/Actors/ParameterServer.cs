using System.Diagnostics;
using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Diagnostics;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Actors;

/// <summary>Where and how often the parameter server writes checkpoints, and what fixes the data order they record.</summary>
/// <param name="Store">The checkpoint directory and its retention (Checkpoint:Directory, Checkpoint:Keep).</param>
/// <param name="EverySteps">Optimizer steps between checkpoints; 0 writes only at each epoch end (Checkpoint:EverySteps).</param>
/// <param name="JobId">The cluster job's identity, written into each checkpoint (<see cref="TrainingCheckpoint.JobId"/>); empty in single-node mode.</param>
/// <param name="ShardSeed">Seed of the shard planner (Training:Seed), recorded so a resume can check it.</param>
/// <param name="BatchSizePerWorker">Samples per worker minibatch (a push: Training:BatchSizePerWorker × Training:AccumulationSteps), recorded likewise.</param>
/// <param name="Mode">The training mode, recorded likewise (a resume in another mode is refused).</param>
/// <param name="TrainSamples">Training samples of the run, recorded likewise (<see cref="TrainingCheckpoint.TrainSamples"/>); 0 records none.</param>
/// <param name="DataSettings">The run's data settings as canonical JSON, recorded likewise (<see cref="TrainingCheckpoint.DataSettings"/>); empty records none.</param>
/// <param name="ModelSettings">The run's layers and loss as canonical JSON, recorded likewise (<see cref="TrainingCheckpoint.ModelSettings"/>); empty records none.</param>
/// <param name="RunEpochs">Training:Epochs, recorded likewise (<see cref="TrainingCheckpoint.RunEpochs"/>); 0 records none.</param>
/// <param name="UpdateSettings">The learning rate, its schedule, L1, L2, clipping and the like as canonical JSON
/// (<see cref="Hosting.CheckpointResume.UpdateSettingsOf"/>), recorded for a resume to name the ones it changes
/// (<see cref="TrainingCheckpoint.UpdateSettings"/>); empty records none.</param>
public sealed record CheckpointSettings(CheckpointStore Store, int EverySteps, int ShardSeed, int BatchSizePerWorker, string JobId = "",
    TrainingMode Mode = TrainingMode.Sync, int TrainSamples = 0, string DataSettings = "", string ModelSettings = "", int RunEpochs = 0,
    string UpdateSettings = "")
{
    /// <summary>The checkpoint of <paramref name="weights"/> and the optimizer's state at <paramref name="position"/>, with this run's
    /// settings recorded for a resume to check.</summary>
    /// <param name="weights">All weights, in layout order.</param>
    /// <param name="optimizerState">The optimizer's state buffers, each <c>[TrainableLength]</c>, in the optimizer's order.</param>
    /// <param name="optimizer">The parameter server's optimizer settings: their kind and state hyperparameters are recorded.</param>
    /// <param name="optimizerSteps">The optimizer's step count.</param>
    /// <param name="version">The weights' version.</param>
    /// <param name="position">Where a resume continues: epoch, round, the epoch's samples and loss so far, its worker slots.</param>
    public TrainingCheckpoint Checkpoint(ParameterVector weights, IReadOnlyList<(string Name, float[] Values)> optimizerState, OptimizerOptions optimizer,
        long optimizerSteps, long version, CheckpointPosition position) =>
        new(weights, optimizerState, optimizer.Kind, optimizerSteps, version, position.Epoch, position.Round, ShardSeed, position.Workers, BatchSizePerWorker,
            position.EpochSamples, position.EpochLossSum, JobId, optimizer.StateHyperparameters(), Mode, position.TrainedAhead, TrainSamples)
            { DataSettings = DataSettings, ModelSettings = ModelSettings, RunEpochs = RunEpochs, UpdateSettings = UpdateSettings };
}

/// <summary>What makes a parameter server one shard of a <see cref="ShardedParameterServer"/>.</summary>
/// <param name="Index">The shard's index.</param>
/// <param name="Offset">Its slice's first element in the whole vector (<see cref="ParameterShard.Start"/>).</param>
/// <param name="Wire">The whole model's message lengths: the shard reads its slice of the workers' whole reports.</param>
/// <param name="Shared">The weights arrays all the shards share, each writing its slice.</param>
/// <param name="WholeLayout">The whole model's layout, which places the optimizer state in local SGD's messages.</param>
public sealed record ShardRole(int Index, int Offset, WireLayout Wire, SharedWeights Shared, ParameterLayout WholeLayout);

/// <summary>
/// Tells a parameter server (or every shard of a <see cref="ShardedParameterServer"/>) to take no further report, start no
/// further part of an epoch that trains and write no further checkpoint: the coordinator sends it just before it asks for
/// a stop's weights (<see cref="GetWeights"/>), so those weights are the last the run trains and no checkpoint is newer
/// than them. Reports that arrive afterwards are dropped without a warning; snapshots are still answered, and a part that
/// only sends the weights to workers that score them (the coordinator's ShareEpochWeights) still goes out, so an
/// evaluation the stop waits for can finish. A worker lost afterwards may still close an open round (its step is after
/// the snapshot, and never checkpointed). Local only.
/// </summary>
internal sealed record StopStepping : INoSerializationVerificationNeeded
{
    /// <summary>The only instance.</summary>
    public static readonly StopStepping Instance = new();
}

/// <summary>How the parameter server combines the workers' reports: the mode and its settings (Training:*).</summary>
/// <param name="Mode">Training:Mode.</param>
/// <param name="StalenessBound">Training:StalenessBound (BoundedStaleness).</param>
/// <param name="StalenessAwareLearningRate">Training:StalenessAwareLearningRate (Async, BoundedStaleness).</param>
/// <param name="LocalSteps">Training:LocalSteps (LocalSgd).</param>
/// <param name="AnnounceBroadcastWrites">Tell the workers a <see cref="WeightsInProgress"/> before each synchronous step writes
/// the next broadcast, so their data-plane links (<see cref="DataPlane.WorkerLink"/>) copy it into shared memory during the
/// update: set by the cluster's job host when Cluster:SharedMemory is on. Ignored by parameter-server shards. Receivers
/// that are not links (single-node workers, test probes) would get messages they do not expect, so it is off by default.</param>
public sealed record UpdateSettings(TrainingMode Mode = TrainingMode.Sync, int StalenessBound = 0, bool StalenessAwareLearningRate = false,
    int LocalSteps = 1, bool AnnounceBroadcastWrites = false)
{
    /// <summary>Synchronous training.</summary>
    public static readonly UpdateSettings Sync = new();

    /// <summary>The settings of a run configured by <paramref name="loop"/> (Training:*).</summary>
    public static UpdateSettings From(TrainingLoopOptions loop)
    {
        ArgumentNullException.ThrowIfNull(loop);
        return new UpdateSettings(loop.Mode, loop.StalenessBound, loop.StalenessAwareLearningRate, loop.LocalSteps);
    }
}

/// <summary>
/// Owns the master weights and the optimizer state, and runs the update policy of the training mode
/// (<see cref="UpdatePolicy"/>, in <c>Training/</c>): it receives the coordinator's parts of epochs and the workers'
/// reports, checks who sent them, hands them to the policy, and sends what the policy decides. In synchronous mode
/// (<see cref="SyncPolicy"/>) each round waits for the gradient of every worker that has a minibatch in it, averages them
/// weighted by sample count in worker order, applies one optimizer step and sends the new weights to every worker.
/// </summary>
/// <remarks>
/// A report for the wrong epoch, round or version, from an unexpected worker or sender, twice, or of the wrong length is
/// logged, counted and never applied; whatever waits for it keeps waiting, and the coordinator's stall timeout ends the
/// job if nothing valid comes. The loaned messages (weights in <see cref="WeightsOutbox"/>, the pooled step reports) and
/// the step's allocation count are kept here, around the handlers, not in the policies.
/// </remarks>
public sealed class ParameterServer : ReceiveActor, IServerOutput
{
    private readonly ServerModel _model;
    private readonly UpdatePolicy _policy;
    private readonly OptimizerOptions _optimizerOptions;
    private readonly CheckpointSettings? _checkpoints;
    // Step reports are pooled: the coordinator sends each one back when it has handled it, so a slow
    // coordinator never sees a report rewritten under it; the pool only grows if it lags.
    private readonly Stack<RoundApplied> _freeReports = new(RoundApplied.PoolSize);
    // Managed bytes allocated by this actor's gradient handlers: the step in progress, and the whole of the
    // previous step (reported, since the current one is still running when its report goes out).
    private long _roundAllocatedBytes;
    private long _lastRoundAllocatedBytes;
    private bool _roundClosed;
    private long _dispatchAllocatedBytes; // inside Akka's Tell: left out of the step's count, as the worker's own send is
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly TagList _metricTags = Metrics.DistTrainMetrics.Tags(NodeRoles.ParameterServer);
    private IActorRef[] _workers = [];
    // Who the part's weights go to: _workers without the workers lost since it started. A lost worker's slot gets nothing
    // more, so nothing queues up for it (a shard's join of a lost worker would read pooled messages after they were reused).
    private IActorRef[] _receivers = [];
    private IActorRef _coordinator = ActorRefs.Nobody;
    private long _rejectedGradients;
    private readonly string _sampleTraceDirectory;
    private Metrics.SampleTrace? _sampleTrace;
    private readonly int[] _traceWorkers = new int[MaxWorkers];
    private long _versionBeforeStep; // the weights version the next step is applied to, for the sample trace
    private readonly int _shardIndex; // -1: the whole vector; else this server is that shard of a ShardedParameterServer
    // UpdateSettings.AnnounceBroadcastWrites: used in turn, as many as the outbox's broadcast ring has arrays.
    private readonly WeightsInProgress[] _broadcastsInProgress = [];
    private int _nextInProgress;
    private bool _steppingStopped; // StopStepping came: the run is stopping at the weights its snapshot took

    /// <summary>
    /// Creates the server with a copy of the version-0 weights, or of a checkpoint's; see <see cref="Props"/>. With
    /// <paramref name="shard"/>, the weights and checkpoint are one shard's slice (<see cref="ShardedParameterServer"/>).
    /// </summary>
    /// <exception cref="InvalidDataException"><paramref name="resumeFrom"/> does not fit the layout or the optimizer.</exception>
    public ParameterServer(ParameterVector initialWeights, OptimizerOptions optimizer, int totalEpochs, MonitoringOptions? monitoring = null,
        CheckpointSettings? checkpoints = null, TrainingCheckpoint? resumeFrom = null, int scalingWorkers = 0, UpdateSettings? update = null,
        OptimizerOptions? configuredOptimizer = null, ShardRole? shard = null)
    {
        update ??= UpdateSettings.Sync;
        _shardIndex = shard?.Index ?? -1;
        _checkpoints = checkpoints;
        _optimizerOptions = optimizer;
        var whole = shard?.WholeLayout ?? initialWeights.Layout;
        var parent = Context.Parent;
        var self = Self;
        _model = new ServerModel(initialWeights, optimizer, totalEpochs, monitoring, resumeFrom, scalingWorkers, configuredOptimizer, shard?.Offset ?? 0)
        {
            // Only Sync clips at the server with shards (local SGD clips on the workers; the asynchronous modes refuse it).
            ClipsByShardedNorm = shard is not null && optimizer.GradientClipNorm > 0 && update.Mode == TrainingMode.Sync,
            Whole = (whole.TotalLength, whole.WorkerReportLength, whole.TrainableLength),
            HealthSink = shard is null ? null : (step, squares) => parent.Tell(new ShardHealthPart(shard.Index, step, squares), self),
        };
        _versionBeforeStep = _model.Version;
        _sampleTraceDirectory = monitoring?.SampleTraceDirectory ?? "";
        if (monitoring is { GradientNormEverySteps: > 0 } && shard is null) Metrics.DistTrainMetrics.WatchLayerHealth(_model.Health);
        var wire = shard?.Wire ?? WireLayout.For(_model.Layout, update.Mode, optimizer);
        WeightsOutbox outbox;
        if (shard is not null) outbox = new WeightsOutbox(shard.Shared, shard.Offset, _model.Layout.TotalLength);
        else
        {
            var first = new float[wire.WeightsLength];
            _model.Weights.Values.CopyTo(first, 0);
            // Every message starts as the full version-0 vector: frozen tensors are never rewritten after this.
            outbox = new WeightsOutbox(first, _model.Layout.TotalLength);
        }
        var every = checkpoints?.EverySteps ?? -1;
        if (update.AnnounceBroadcastWrites && shard is null)
            _broadcastsInProgress = [.. Enumerable.Range(0, WeightsOutbox.SharedSlots).Select(_ => new WeightsInProgress())];
        _policy = update.Mode switch
        {
            TrainingMode.Async => new AsyncPolicy(_model, outbox, this, wire, update.StalenessAwareLearningRate, every, resumeFrom),
            TrainingMode.BoundedStaleness => new BoundedStalenessPolicy(_model, outbox, this, wire, update.StalenessBound,
                update.StalenessAwareLearningRate, every, resumeFrom),
            TrainingMode.LocalSgd => new LocalSgdPolicy(_model, outbox, this, wire, update.LocalSteps, every, resumeFrom),
            _ => new SyncPolicy(_model, outbox, this, wire, every, resumeFrom),
        };
        for (var i = 0; i < RoundApplied.PoolSize; i++) _freeReports.Push(new RoundApplied(0, 0, 0, 0, 0, default, 0));
        // After StopStepping no report is taken and no checkpoint written: the stop's snapshot is the run's end (a worker lost
        // afterwards may still close an open round, after the snapshot; see StopStepping).
        Receive<StopStepping>(_ => StopSteppingNow());
        Receive<StartEpoch>(start => _steppingStopped && !TrainsNothing(start), _ => { });
        Receive<GradientComputed>(_ => _steppingStopped, _ => { });
        Receive<WholeGradientNorm>(_ => _steppingStopped, _ => { });
        Receive<StartEpoch>(OnStartEpoch);
        Receive<GradientComputed>(OnGradient);
        Receive<WholeGradientNorm>(OnWholeGradientNorm);
        Receive<WorkerLost>(OnWorkerLost);
        Receive<RoundApplied>(returned => _freeReports.Push(returned));
        Receive<GetWeights>(_ => Sender.Tell(new WeightsSnapshot(_model.Version, (float[])_model.Weights.Values.Clone())));
        Receive<GetPublishedWeights>(get => Sender.Tell(new PublishedWeights(get.Version, _policy.PublishedWeights(get.Version))));
    }

    /// <summary>True for a part with no minibatch in it: it only sends the current weights (to workers that score them).</summary>
    private static bool TrainsNothing(StartEpoch start) => start.BatchesPerWorker.All(batches => batches <= start.FirstRound);

    private void StopSteppingNow()
    {
        if (_steppingStopped) return;
        _steppingStopped = true;
        if (_shardIndex <= 0) _log.Debug("The run is stopping: no report is taken after version {0}.", _model.Version);
    }

    /// <summary>Most workers one server accepts (the validated range of Training:Workers).</summary>
    public const int MaxWorkers = UpdatePolicy.MaxWorkers;

    /// <inheritdoc />
    protected override void PreStart() => _sampleTrace = Metrics.SampleTrace.ForParameterServer(_sampleTraceDirectory);

    /// <inheritdoc />
    protected override void PostStop() => _sampleTrace?.Dispose();

    /// <inheritdoc />
    protected override bool AroundReceive(Receive receive, object message)
    {
        var started = Stopwatch.GetTimestamp();
        var handled = base.AroundReceive(receive, message);
        Metrics.DistTrainMetrics.Handled(_metricTags, started);
        return handled;
    }

    /// <summary>Props of a parameter server that starts from <paramref name="initialWeights"/> (version 0), or from a checkpoint.</summary>
    /// <param name="initialWeights">Version-0 weights (copied); their layout names the model.</param>
    /// <param name="optimizer">Update rule, regularization and learning-rate schedule.</param>
    /// <param name="totalEpochs">Epochs of the run, which the schedule spans (Cosine anneals over all of them).</param>
    /// <param name="monitoring">Gradient diagnostics; null turns them off.</param>
    /// <param name="checkpoints">Where to write checkpoints; null writes none (and the step path stays allocation-free).</param>
    /// <param name="resumeFrom">A verified checkpoint to start from: its weights, optimizer state and version replace
    /// version 0, and the first epoch started at its position takes over its partial epoch's loss. Null starts fresh.</param>
    /// <param name="scalingWorkers">The worker count of the linear scaling rule (Optimizer:ScaleLearningRateByWorkers) when
    /// the global minibatch is kept constant as workers come and go (Training:KeepGlobalBatch): the workers the job started with.
    /// 0 scales by the workers taking part in the epoch.</param>
    /// <param name="update">The training mode and its settings; null is synchronous training.</param>
    /// <param name="configuredOptimizer">The run's optimizer settings as configured, when <paramref name="optimizer"/> is the
    /// parameter server's share of them (<see cref="TrainingOptions.ParameterServerOptimizer"/>): the epoch summaries report its
    /// L1 and L2 penalties. Null: <paramref name="optimizer"/>'s.</param>
    /// <param name="shards">Cluster:ParameterServerShards: above 1, a <see cref="ShardedParameterServer"/> whose shards each
    /// own a slice of the vector; else one server for the whole vector.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="shards"/> is outside 1..16, or too many for the model.</exception>
    public static Props Props(ParameterVector initialWeights, OptimizerOptions optimizer, int totalEpochs, MonitoringOptions? monitoring = null,
        CheckpointSettings? checkpoints = null, TrainingCheckpoint? resumeFrom = null, int scalingWorkers = 0, UpdateSettings? update = null,
        OptimizerOptions? configuredOptimizer = null, int shards = 1) =>
        shards > 1
            ? ShardedParameterServer.Props(initialWeights, optimizer, totalEpochs, monitoring, checkpoints, resumeFrom, scalingWorkers, update, shards,
                configuredOptimizer)
            : Akka.Actor.Props.Create(() => new ParameterServer(initialWeights, optimizer, totalEpochs, monitoring, checkpoints, resumeFrom, scalingWorkers, update,
                configuredOptimizer, null));

    /// <summary>Props of a shard of a <see cref="ShardedParameterServer"/>, over its slice's weights and checkpoint.</summary>
    internal static Props ShardProps(ParameterVector sliceWeights, OptimizerOptions optimizer, int totalEpochs, MonitoringOptions? monitoring,
        CheckpointSettings? checkpoints, TrainingCheckpoint? resumeFrom, int scalingWorkers, UpdateSettings? update, OptimizerOptions? configuredOptimizer,
        ShardRole shard) =>
        Akka.Actor.Props.Create(() => new ParameterServer(sliceWeights, optimizer, totalEpochs, monitoring, checkpoints, resumeFrom, scalingWorkers, update,
            configuredOptimizer, shard));

    private void OnStartEpoch(StartEpoch start)
    {
        if (start.Workers.Length != start.BatchesPerWorker.Length || start.Workers.Length is 0 or > MaxWorkers || start.FirstRound < 0)
        {
            _log.Error("StartEpoch {0} names {1} workers and {2} batch counts from round {3}; they must match and be 1..{4}, the round >= 0. Ignored.",
                start.Epoch, start.Workers.Length, start.BatchesPerWorker.Length, start.FirstRound, MaxWorkers);
            return;
        }
        _workers = start.Workers;
        _receivers = (IActorRef[])start.Workers.Clone(); // its own: the shards of one server share the message
        _coordinator = Sender;
        // Size every pooled report for this worker count now, not in a step: a report the coordinator has not returned
        // yet makes a step take a fresh one from the pool, and sizing it there would allocate inside the step.
        foreach (var report in _freeReports) report.ForWorkers(start.Workers.Length);
        _policy.Start(new EpochPart(start.Epoch, [.. start.Workers.Select(w => !w.IsNobody())], start.BatchesPerWorker, start.FirstRound,
            start.StepsPerEpoch, start.MidEpochResumable, start.Part, start.KeepGlobalBatch));
        WriteDueCheckpoint();
    }

    private void OnGradient(GradientComputed gradient)
    {
        var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            var problem = _policy.Part is null ? "no epoch is running"
                : gradient.WorkerIndex < 0 || gradient.WorkerIndex >= _workers.Length ? $"worker index {gradient.WorkerIndex} is outside 0..{_workers.Length - 1}"
                : !_workers[gradient.WorkerIndex].Equals(Sender) ? $"the sender is not worker {gradient.WorkerIndex}"
                : _policy.Accept(gradient);
            if (problem is not null)
            {
                _rejectedGradients++;
                _log.Warning("Rejected gradient from worker {0} ({1}): {2}. Rejected so far: {3}. The round still waits for a valid one.",
                    gradient.WorkerIndex, Sender.Path, problem, _rejectedGradients);
            }
        }
        finally
        {
            CountStepAllocations(allocatedBefore);
        }
        // Outside the measured step: a checkpoint allocates (its header, the hash) and takes I/O time.
        WriteDueCheckpoint();
    }

    private void OnWorkerLost(WorkerLost lost)
    {
        // Before the policy hears of it: weights its removal sends out (a round it closes) no longer go to the lost worker.
        if (lost.WorkerIndex >= 0 && lost.WorkerIndex < _receivers.Length) _receivers[lost.WorkerIndex] = ActorRefs.Nobody;
        _policy.RemoveWorker(lost.WorkerIndex);
    }

    /// <summary>A clipping shard's held-back step goes on with the whole gradient's norm.</summary>
    private void OnWholeGradientNorm(WholeGradientNorm norm)
    {
        var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            _policy.ApplyGlobalNorm(norm.Norm);
        }
        finally
        {
            CountStepAllocations(allocatedBefore);
        }
        WriteDueCheckpoint();
    }

    /// <summary>Adds what a step handler allocated since <paramref name="allocatedBefore"/> to the step's count.</summary>
    private void CountStepAllocations(long allocatedBefore)
    {
        _roundAllocatedBytes += GC.GetAllocatedBytesForCurrentThread() - allocatedBefore - _dispatchAllocatedBytes;
        _dispatchAllocatedBytes = 0;
        if (_roundClosed)
        {
            _lastRoundAllocatedBytes = _roundAllocatedBytes;
            _roundAllocatedBytes = 0;
            _roundClosed = false;
        }
    }

    /// <summary>
    /// Writes the checkpoint the policy asked for after the step just applied. The next weights have already gone out, so
    /// the workers compute while the file is written; the weights change only in this actor.
    /// </summary>
    private void WriteDueCheckpoint()
    {
        if (_steppingStopped) return; // the run is stopping at its snapshot: nothing newer is checkpointed
        if (_policy.TakeDueCheckpoint() is not { } position || _checkpoints is not { } settings) return;
        // A shard's slice goes to the sharded server, which writes the whole model once every shard's has come; copied,
        // since this shard steps on before that.
        var sharded = _shardIndex >= 0;
        var weights = sharded ? new ParameterVector(_model.Layout, (float[])_model.Weights.Values.Clone()) : _model.Weights;
        IReadOnlyList<(string Name, float[] Values)> state = sharded
            ? [.. _model.Optimizer.State.Select(s => (s.Name, (float[])s.Values.Clone()))]
            : _model.Optimizer.State;
        var checkpoint = settings.Checkpoint(weights, state, _optimizerOptions, _model.Optimizer.StepCount, _model.Version, position);
        if (sharded) Context.Parent.Tell(new ShardCheckpoint(_shardIndex, checkpoint));
        else _coordinator.Tell(Save(settings.Store, checkpoint, _log), Self);
    }

    /// <summary>Writes <paramref name="checkpoint"/> into <paramref name="store"/>, logs it, and returns the coordinator's notice of it.</summary>
    /// <exception cref="IOException">The file could not be written.</exception>
    internal static CheckpointSaved Save(CheckpointStore store, TrainingCheckpoint checkpoint, ILoggingAdapter log)
    {
        var started = Stopwatch.GetTimestamp();
        var path = store.Save(checkpoint);
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var bytes = new FileInfo(path).Length;
        log.Info("Checkpoint {0}: version {1}, next epoch {2} round {3}, {4:N0} bytes in {5:F1} ms", path, checkpoint.Version,
            checkpoint.Epoch, checkpoint.Round, bytes, seconds * 1000);
        return new CheckpointSaved(path, checkpoint.Version, checkpoint.Epoch, checkpoint.Round, bytes, seconds);
    }

    /// <summary>
    /// Sends a message. The bytes Akka's dispatch allocates (mailbox enqueue, scheduling the receiver; a few
    /// dozen bytes, rarely) are kept out of the step's allocation count, as for the worker's send.
    /// </summary>
    private void Send(IActorRef to, object message)
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        to.Tell(message, Self);
        _dispatchAllocatedBytes += GC.GetAllocatedBytesForCurrentThread() - before;
    }

    void IServerOutput.Broadcast(WeightsUpdated weights)
    {
        foreach (var worker in _receivers)
            Send(worker, weights);
    }

    void IServerOutput.Send(int worker, WeightsUpdated weights) => Send(_receivers[worker], weights);

    WeightsInProgress? IServerOutput.WritingBroadcast(float[] weights, long version)
    {
        if (_broadcastsInProgress.Length == 0 || _receivers.Length == 0) return null;
        var progress = _broadcastsInProgress[_nextInProgress];
        _nextInProgress = (_nextInProgress + 1) % _broadcastsInProgress.Length;
        progress.Begin(weights, version);
        foreach (var worker in _receivers)
            Send(worker, progress);
        return progress;
    }

    RoundApplied IServerOutput.TakeReport(int workers) =>
        (_freeReports.Count > 0 ? _freeReports.Pop() : new RoundApplied(0, 0, 0, 0, 0, default, 0)).ForWorkers(workers);

    void IServerOutput.StepApplied(RoundApplied report)
    {
        if (_sampleTrace is not null) TraceStep(report);
        _versionBeforeStep = report.Version;
        _roundClosed = true;
        report.Reuse(report.Epoch, report.Round, report.Version, report.SampleCount, report.LossSum,
            report.Timing with { ServerAllocatedBytes = _lastRoundAllocatedBytes }, report.LearningRate);
        Send(_coordinator, report);
    }

    /// <summary>
    /// Writes the step just applied: the weights version it was applied to (the step made <paramref name="report"/>'s
    /// version) and the workers whose reports it combined (those with a loss in the report).
    /// </summary>
    private void TraceStep(RoundApplied report)
    {
        var count = 0;
        for (var i = 0; i < report.WorkerLosses.Length; i++)
            if (!double.IsNaN(report.WorkerLosses[i])) _traceWorkers[count++] = i;
        _sampleTrace!.Step(report.Epoch, report.Round, _versionBeforeStep, _traceWorkers.AsSpan(0, count));
    }

    void IServerOutput.PartCompleted(EpochCompleted completed) => Send(_coordinator, completed);

    void IServerOutput.MinibatchesLeft(MinibatchesLeft left) => Send(_coordinator, left);

    void IServerOutput.WorkerRemoved(WorkerRemoved removed) => Sender.Tell(removed);

    void IServerOutput.ShardSquaredNorm(double squaredNorm) => Send(Context.Parent, new ShardNormPart(_shardIndex, squaredNorm));

    void IServerOutput.Warning(string message)
    {
        // Every shard sees the same rounds and workers, so shard 0's warnings speak for all.
        if (_shardIndex > 0) _log.Debug("Shard {0}: {1}", _shardIndex, message);
        else _log.Warning(message);
    }
}
