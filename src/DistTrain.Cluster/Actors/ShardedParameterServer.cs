using System.Diagnostics;
using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Diagnostics;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Actors;

/// <summary>A shard's checkpoint of its slice, to the <see cref="ShardedParameterServer"/> (in process only).</summary>
internal sealed record ShardCheckpoint(int Shard, TrainingCheckpoint Checkpoint) : INoSerializationVerificationNeeded;

/// <summary>
/// Asks a parameter server for the weights it sent out as <see cref="Version"/>, if it still holds them; it answers with
/// <see cref="PublishedWeights"/>. In process only.
/// </summary>
internal sealed record GetPublishedWeights(long Version) : INoSerializationVerificationNeeded;

/// <summary>The answer to <see cref="GetPublishedWeights"/>: the weights of <see cref="Version"/>, or null when they are no longer held.</summary>
internal sealed record PublishedWeights(long Version, float[]? Weights) : INoSerializationVerificationNeeded;

/// <summary>A clipping shard's squared norm of its part of a round's averaged gradient, to the sharded server (in process only).</summary>
internal sealed record ShardNormPart(int Shard, double SquaredNorm) : INoSerializationVerificationNeeded;

/// <summary>A shard's per-tensor sums of squares of one measured step, over its slices of tensors (in process only).</summary>
internal sealed record ShardHealthPart(int Shard, long Step, TensorSquares[] Squares) : INoSerializationVerificationNeeded;

/// <summary>The whole averaged gradient's L2 norm, from the sharded server to every shard (in process only).</summary>
internal sealed record WholeGradientNorm(double Norm) : INoSerializationVerificationNeeded;

/// <summary>
/// A parameter server of K shards (Cluster:ParameterServerShards): K <see cref="ParameterServer"/> children, each owning a
/// contiguous slice of the flat vector (<see cref="ParameterShards"/>) with its own master weights, optimizer state and
/// update policy, and one <see cref="ShardJoin"/> per worker slot, which the shards take for the worker. To the coordinator
/// it is one parameter server: it hands each shard the epoch's parts and lost workers, and merges what the shards report
/// (each step once, each part once, one checkpoint of the whole model, one set of weights).
/// </summary>
/// <remarks>
/// <para>The shards step in parallel, each on its own thread of the compute dispatcher; a round ends when the slowest
/// has stepped (<c>disttrain_parameter_server_shard_round_seconds</c> per shard). In synchronous training every shard
/// waits for the same reports and applies the same element-wise arithmetic to its slice, so K shards give the same
/// weights as one, bit for bit (tested). Nothing is copied for them: each reads its slice of the workers' whole reports,
/// and all write their slices of each broadcast into one shared ring of arrays (<see cref="SharedWeights"/>).
/// Clipping by the global norm takes one more exchange per step: each shard's squared norm of its part of the average
/// comes here, and the whole norm goes back to every shard (equal to one server's up to the summation order).</para>
/// <para>Every mode is sharded. Everything a shard acts on (parts, lost workers, the workers' reports) comes from this
/// actor, so every shard sees it in one order and the asynchronous modes' shards make the same decisions. Local SGD's
/// messages carry the optimizer state after the weights; each shard reads and writes its slice of both.</para>
/// </remarks>
public sealed class ShardedParameterServer : ReceiveActor, IWithStash
{
    private static readonly TimeSpan LastGoodTimeout = TimeSpan.FromSeconds(5);

    private readonly ParameterShard[] _plan;
    private readonly IActorRef[] _shards;
    private readonly ParameterVector _initial;      // whole version-0 vector: the frozen tensors, and every join's first contents
    private readonly int _reportLength;
    private readonly CheckpointStore? _store;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly TagList[] _shardTags;
    private readonly List<IActorRef?> _joins = [];      // by worker slot; null until a worker takes it, and after its worker is lost
    private readonly HashSet<IActorRef> _retiredJoins = []; // joins of lost workers, stopped: a failure of theirs is not the job's
    private int _joinsCreated;                           // for unique names: a slot's new join may start before the old one ended
    private readonly ShardMerge<RoundApplied> _rounds;
    private readonly ShardMerge<EpochCompleted> _parts;
    private readonly ShardMerge<ShardCheckpoint> _checkpoints;
    private readonly ShardMerge<ShardNormPart> _norms;
    private readonly ShardMerge<ShardHealthPart> _healthParts;
    private readonly GradientHealthMonitor? _health;   // the whole tensors' diagnostics, from the shards' parts
    private readonly ShardHealthMerge? _healthSum;     // adds the shards' parts of each tensor
    private IActorRef _coordinator = ActorRefs.Nobody;
    private IActorRef? _snapshotFor;                // the requester of the snapshot being put together
    private WeightsSnapshot?[] _snapshot;
    private Exception? _failure;
    private readonly float[]?[] _lastGood;          // during a divergence: each shard's slice of the last good weights

    /// <summary>Creates the server and its shards; see <see cref="Props"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="shards"/> is outside 1..16, or too many for the model.</exception>
    /// <exception cref="ArgumentException">Gradient clipping at the parameter server (<paramref name="optimizer"/>'s, none under
    /// Cluster:Compression TopK, whose workers clip) in an asynchronous mode.</exception>
    public ShardedParameterServer(ParameterVector initialWeights, OptimizerOptions optimizer, int totalEpochs, MonitoringOptions? monitoring,
        CheckpointSettings? checkpoints, TrainingCheckpoint? resumeFrom, int scalingWorkers, UpdateSettings? update, int shards,
        OptimizerOptions? configuredOptimizer = null)
    {
        ArgumentNullException.ThrowIfNull(initialWeights);
        ArgumentNullException.ThrowIfNull(optimizer);
        update ??= UpdateSettings.Sync;
        // The server's own clipping only (TrainingOptions.ParameterServerOptimizer): under TopK the workers clip and this has none.
        if (optimizer.GradientClipNorm > 0 && update.Mode is Core.Configuration.TrainingMode.Async or Core.Configuration.TrainingMode.BoundedStaleness)
            throw new ArgumentException($"Cluster:ParameterServerShards = {shards} is not possible with Optimizer:GradientClipNorm in Training:Mode {update.Mode}: " +
                "clipping at the parameter server needs every shard's part of the norm, and these shards step on each gradient as it arrives. Use one shard, " +
                "no clipping, Training:Mode Sync or LocalSgd, or Cluster:Compression TopK (the workers clip).");
        _plan = ParameterShards.Plan(initialWeights.Layout, shards);
        _log.Info("Parameter server in {0}", Describe(_plan));
        _initial = new ParameterVector(initialWeights.Layout, (float[])(resumeFrom?.Weights.Values ?? initialWeights.Values).Clone());
        _store = checkpoints?.Store;
        _shardTags = [.. _plan.Select(p => new TagList { { "shard", p.Index.ToString(System.Globalization.CultureInfo.InvariantCulture) }, { "node", Metrics.DistTrainMetrics.Node } })];
        _shards = new IActorRef[shards];
        var layout = initialWeights.Layout;
        // The whole model's messages (in local SGD with the optimizer state after the weights, zero until a part starts).
        var wire = WireLayout.For(layout, update.Mode, optimizer);
        var first = new float[wire.WeightsLength];
        _initial.Values.CopyTo(first, 0);
        var shared = new SharedWeights(first);
        _reportLength = wire.ReportLength;
        for (var k = 0; k < shards; k++)
        {
            var shard = _plan[k];
            // Only shard 0 writes the sample trace. Each measures its slices of tensors on the same steps; this server judges.
            var shardMonitoring = new MonitoringOptions
            {
                GradientNormEverySteps = monitoring?.GradientNormEverySteps ?? 0,
                SampleTraceDirectory = k == 0 ? monitoring?.SampleTraceDirectory ?? "" : "",
            };
            var props = ParameterServer.ShardProps(shard.Slice(initialWeights), optimizer, totalEpochs, shardMonitoring, checkpoints,
                resumeFrom is null ? null : shard.Slice(resumeFrom), scalingWorkers, update, configuredOptimizer, new ShardRole(k, shard.Start, wire, shared, layout));
            _shards[k] = Context.ActorOf(props.WithDispatcher(Context.Props.Dispatcher), $"shard-{k}"); // this actor's: the compute dispatcher
        }
        if (monitoring is { GradientNormEverySteps: > 0 })
        {
            _health = new GradientHealthMonitor(layout, monitoring, optimizer.GradientClipNorm);
            Metrics.DistTrainMetrics.WatchLayerHealth(_health.Latest);
            _healthSum = new ShardHealthMerge(layout, shards);
        }
        _healthParts = new ShardMerge<ShardHealthPart>(shards);
        _rounds = new ShardMerge<RoundApplied>(shards);
        _parts = new ShardMerge<EpochCompleted>(shards);
        _checkpoints = new ShardMerge<ShardCheckpoint>(shards);
        _norms = new ShardMerge<ShardNormPart>(shards);
        _snapshot = new WeightsSnapshot?[shards];
        _lastGood = new float[]?[shards];
        Receive<StartEpoch>(OnStartEpoch);
        Receive<WorkerLost>(OnWorkerLost);
        // After the reports already forwarded, so every shard stops at the same step.
        Receive<StopStepping>(TellEveryShard);
        // A worker's report, from its join: to every shard, keeping the join as the sender the shards check.
        Receive<GradientComputed>(ForwardToEveryShard);
        Receive<RoundApplied>(OnRoundApplied);
        Receive<EpochCompleted>(OnPartCompleted);
        Receive<ShardCheckpoint>(OnShardCheckpoint);
        Receive<ShardNormPart>(OnNormPart);
        Receive<ShardHealthPart>(OnHealthPart);
        Receive<WorkerRemoved>(removed => FromLeadShard(removed));
        Receive<MinibatchesLeft>(left => FromLeadShard(left));
        Receive<GetWeights>(_ => _snapshotFor is not null, _ => Stash.Stash());
        Receive<GetWeights>(_ => StartSnapshot());
        Receive<WeightsSnapshot>(OnSnapshotPart);
        Receive<PublishedWeights>(OnPublished);
        Receive<ShardFailed>(OnShardFailed);
        Receive<ReceiveTimeout>(_ => _failure is not null, _ => Fail());
    }

    /// <inheritdoc />
    public IStash Stash { get; set; } = null!;

    /// <summary>Props of a server of <paramref name="shards"/> shards; the other arguments as <see cref="ParameterServer.Props"/>.</summary>
    public static Props Props(ParameterVector initialWeights, OptimizerOptions optimizer, int totalEpochs, MonitoringOptions? monitoring,
        CheckpointSettings? checkpoints, TrainingCheckpoint? resumeFrom, int scalingWorkers, UpdateSettings? update, int shards,
        OptimizerOptions? configuredOptimizer = null) =>
        Akka.Actor.Props.Create(() => new ShardedParameterServer(initialWeights, optimizer, totalEpochs, monitoring, checkpoints, resumeFrom,
            scalingWorkers, update, shards, configuredOptimizer));

    /// <summary>
    /// The shards for the start-up output: <c>2 shards of 117,568 and 117,578 weights, stepped in parallel</c>, or with
    /// <paramref name="onShardNodes"/> (Cluster:ShardNodes) <c>2 shards of 117,568 and 117,578 weights, each on a shard node of its own</c>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">As <see cref="ParameterShards.Plan"/>.</exception>
    public static string Describe(ParameterLayout layout, int shards, bool onShardNodes = false) =>
        Describe(ParameterShards.Plan(layout, shards), onShardNodes);

    private static string Describe(ParameterShard[] plan, bool onShardNodes = false)
    {
        var lengths = plan.Select(p => p.Length.ToString("N0", System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        var sizes = plan.Length == 1 ? $"1 shard of {lengths[0]} weights" : $"{plan.Length} shards of {string.Join(", ", lengths[..^1])} and {lengths[^1]} weights";
        return onShardNodes ? $"{sizes}, {(plan.Length == 1 ? "on a shard node" : "each on a shard node of its own")} (Cluster:ShardNodes)" : $"{sizes}, stepped in parallel";
    }

    /// <summary>A shard or a join failed: in <see cref="Fail"/>, the exception the coordinator gets.</summary>
    private sealed record ShardFailed(int Shard) : INoSerializationVerificationNeeded;

    /// <inheritdoc />
    /// <remarks>
    /// Not logged here: the coordinator takes an ERROR in the log for a failure, and must first learn the exception itself,
    /// which it does when this actor fails with it (and logs it then).
    /// </remarks>
    protected override SupervisorStrategy SupervisorStrategy() =>
        new OneForOneStrategy(-1, -1, exception =>
        {
            if (_retiredJoins.Contains(Sender)) return Directive.Stop; // it read a reused message as it was stopped
            var shard = Array.IndexOf(_shards, Sender);
            if (shard >= 0 && exception is TrainingDivergedException diverged) _lastGood[shard] = diverged.LastGoodWeights;
            _failure ??= exception;
            Self.Tell(new ShardFailed(shard));
            return Directive.Stop;
        }, loggingEnabled: false);

    private void TellEveryShard(object message)
    {
        foreach (var shard in _shards) shard.Tell(message, Self);
    }

    private void ForwardToEveryShard(object message)
    {
        foreach (var shard in _shards) shard.Forward(message);
    }

    private void FromLeadShard(object message)
    {
        // Every shard answers; shard 0's answer speaks for all (they run the same rounds).
        if (Sender.Equals(_shards[0])) _coordinator.Tell(message, Self);
    }

    private void OnStartEpoch(StartEpoch start)
    {
        _coordinator = Sender;
        var joins = new IActorRef[start.Workers.Length];
        for (var i = 0; i < joins.Length; i++)
        {
            if (start.Workers[i].IsNobody())
            {
                joins[i] = ActorRefs.Nobody;
                continue;
            }
            while (_joins.Count <= i) _joins.Add(null);
            var join = _joins[i] ??= Context.ActorOf(ShardJoin.Props(i, _shards, _reportLength)
                .WithDispatcher(Context.Props.Dispatcher), $"join-{i}-{_joinsCreated++}");
            join.Tell(new ShardJoin.Worker(start.Workers[i]), Self);
            joins[i] = join;
        }
        TellEveryShard(start with { Workers = joins });
    }

    /// <summary>
    /// A worker is gone: the shards stop sending to its join (from the same point of their sequence), and the join stops.
    /// A worker that takes the slot later gets a new join, which counts the shards' messages from zero.
    /// </summary>
    /// <remarks>
    /// Nothing holds a lost worker's join back any more (no report of its worker closes a round), so it could fall any
    /// number of broadcasts behind the shards, which reuse their messages after <see cref="Training.WeightsOutbox.SharedSlots"/>
    /// broadcasts: it would then read a later broadcast's position in an earlier message and take the shards for out of
    /// step. Stopped at once (a stop overtakes its queued messages), it reads none of them.
    /// </remarks>
    private void OnWorkerLost(WorkerLost lost)
    {
        TellEveryShard(lost);
        if (lost.WorkerIndex < 0 || lost.WorkerIndex >= _joins.Count || _joins[lost.WorkerIndex] is not { } join) return;
        _joins[lost.WorkerIndex] = null;
        _retiredJoins.Add(join);
        Context.Stop(join);
    }

    private void OnRoundApplied(RoundApplied round)
    {
        if (Sender.Equals(_coordinator))
        {
            // The coordinator returns the merged report, which is shard 0's pooled instance.
            _shards[0].Tell(round, Self);
            return;
        }
        var shard = Array.IndexOf(_shards, Sender);
        if (shard < 0) return;
        Metrics.DistTrainMetrics.ShardRoundSeconds.Record(round.Timing.RoundSeconds, _shardTags[shard]);
        if (!_rounds.Add(shard, round, out var step)) return;
        var lead = step[0];
        var timing = lead.Timing;
        for (var k = 1; k < step.Length; k++)
        {
            var t = step[k].Timing;
            timing = timing with
            {
                RoundSeconds = Math.Max(timing.RoundSeconds, t.RoundSeconds),
                UpdateSeconds = Math.Max(timing.UpdateSeconds, t.UpdateSeconds),
                ServerAllocatedBytes = timing.ServerAllocatedBytes + t.ServerAllocatedBytes,
            };
            _shards[k].Tell(step[k], Self); // back to its pool
        }
        _coordinator.Tell(lead.Reuse(lead.Epoch, lead.Round, lead.Version, lead.SampleCount, lead.LossSum, timing, lead.LearningRate), Self);
    }

    private void OnPartCompleted(EpochCompleted part)
    {
        var shard = Array.IndexOf(_shards, Sender);
        if (shard < 0 || !_parts.Add(shard, part, out var parts)) return;
        // Each shard's penalty covers its slice; the model's is their sum.
        double l1 = 0, l2 = 0;
        foreach (var p in parts)
        {
            l1 += p.L1Penalty;
            l2 += p.L2Penalty;
        }
        _coordinator.Tell(parts[0] with { L1Penalty = l1, L2Penalty = l2 }, Self);
    }

    private void OnHealthPart(ShardHealthPart part)
    {
        if (_health is null || !_healthParts.Add(part.Shard, part, out var parts)) return;
        // A tensor cut by a shard boundary has a part in each shard: its sums are the sums of the parts.
        foreach (var warning in _health.Judge(parts[0].Step, _healthSum!.Sum([.. parts.Select(p => p.Squares)]))) _log.Warning(warning);
    }

    private void OnNormPart(ShardNormPart part)
    {
        if (!_norms.Add(part.Shard, part, out var parts)) return;
        // The whole gradient's norm from the shards' parts, summed in shard order (as one server's norm up to rounding).
        var squares = 0.0;
        foreach (var p in parts) squares += p.SquaredNorm;
        TellEveryShard(new WholeGradientNorm(Math.Sqrt(squares)));
    }

    private void OnShardCheckpoint(ShardCheckpoint part)
    {
        if (!_checkpoints.Add(part.Shard, part, out var parts) || _store is null) return;
        var whole = ParameterShards.Assemble([.. parts.Select(p => p.Checkpoint)], _plan, _initial);
        _coordinator.Tell(ParameterServer.Save(_store, whole, _log), Self);
    }

    private void StartSnapshot()
    {
        _snapshotFor = Sender;
        Array.Clear(_snapshot);
        TellEveryShard(GetWeights.Instance);
    }

    private void OnSnapshotPart(WeightsSnapshot part)
    {
        var shard = Array.IndexOf(_shards, Sender);
        if (shard < 0 || _failure is not null || _snapshotFor is null) return;
        _snapshot[shard] = part;
        CompleteSnapshot();
    }

    private void OnPublished(PublishedWeights published)
    {
        var shard = Array.IndexOf(_shards, Sender);
        if (shard < 0) return;
        if (_failure is TrainingDivergedException diverged)
        {
            // Only the version the failed step started from completes the last good model.
            if (published.Weights is not null && published.Version == diverged.LastGoodVersion) _lastGood[shard] = published.Weights;
            if (_lastGood.All(w => w is not null)) Fail();
            return;
        }
        if (_snapshotFor is null) return;
        if (published.Weights is null)
            throw new InvalidOperationException($"Parameter-server shard {shard} no longer holds weights version {published.Version}, which another shard is at: the shards are out of step, so no whole model can be put together.");
        _snapshot[shard] = new WeightsSnapshot(published.Version, published.Weights);
        CompleteSnapshot();
    }

    /// <summary>Answers the snapshot's asker once every shard's slice is in, all of one version.</summary>
    private void CompleteSnapshot()
    {
        if (_snapshot.Any(s => s is null)) return;
        var oldest = _snapshot.Min(s => s!.Version);
        if (_snapshot.Any(s => s!.Version != oldest))
        {
            // Between two messages one shard may have stepped and another not yet: ask the newer ones for the older version,
            // which they still hold (they are never more than a step apart).
            for (var k = 0; k < _shards.Length; k++)
            {
                if (_snapshot[k]!.Version == oldest) continue;
                _snapshot[k] = null;
                _shards[k].Tell(new GetPublishedWeights(oldest), Self);
            }
            return;
        }
        _snapshotFor!.Tell(new WeightsSnapshot(oldest, Whole(_snapshot.Select(s => s!.Weights).ToArray())), Self);
        EndSnapshot();
    }

    private void EndSnapshot()
    {
        _snapshotFor = null;
        Stash.UnstashAll();
    }

    /// <summary>The whole vector of the shards' <paramref name="slices"/>, the frozen tensors from version 0.</summary>
    private float[] Whole(float[]?[] slices)
    {
        var whole = (float[])_initial.Values.Clone();
        for (var k = 0; k < _plan.Length; k++)
            slices[k]!.AsSpan(0, _plan[k].Length).CopyTo(whole.AsSpan(_plan[k].Start));
        return whole;
    }

    private void OnShardFailed(ShardFailed failed)
    {
        if (_failure is not TrainingDivergedException { LastGoodVersion: >= 0 } diverged)
        {
            Fail();
            return;
        }
        // The shards that did not diverge still hold the version the bad step started from: put the whole of it together.
        for (var k = 0; k < _shards.Length; k++)
            if (_lastGood[k] is null && k != failed.Shard) _shards[k].Tell(new GetPublishedWeights(diverged.LastGoodVersion), Self);
        Context.SetReceiveTimeout(LastGoodTimeout);
        if (_lastGood.All(w => w is not null)) Fail();
    }

    /// <summary>Fails this actor with the shard's exception, so the coordinator stops the job with it.</summary>
    private void Fail()
    {
        var failure = _failure!;
        if (failure is TrainingDivergedException diverged)
        {
            var whole = _lastGood.All(w => w is not null) ? Whole(_lastGood) : null;
            throw new TrainingDivergedException(diverged.Message, whole, whole is null ? -1 : diverged.LastGoodVersion, diverged.LossFinite, diverged.Epoch, diverged.Step);
        }
        System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failure).Throw(); // with the shard's own stack trace
    }
}

/// <summary>
/// Pairs up what K shards report: each shard reports the same sequence (the same steps, parts or checkpoints, in the same
/// order), so the n-th report of every shard belong together. <see cref="Add"/> yields a set, in shard order, once every
/// shard's n-th has come.
/// </summary>
/// <typeparam name="T">The report.</typeparam>
internal sealed class ShardMerge<T>(int shards) where T : class
{
    private readonly Queue<T>[] _pending = [.. Enumerable.Range(0, shards).Select(_ => new Queue<T>())];
    private readonly T[] _set = new T[shards];

    /// <summary>Adds shard <paramref name="shard"/>'s next report; true with the complete <paramref name="set"/> (valid until the next call) when it completes one.</summary>
    public bool Add(int shard, T report, out T[] set)
    {
        _pending[shard].Enqueue(report);
        set = _set;
        foreach (var queue in _pending)
            if (queue.Count == 0) return false;
        for (var k = 0; k < _pending.Length; k++) _set[k] = _pending[k].Dequeue();
        return true;
    }
}
