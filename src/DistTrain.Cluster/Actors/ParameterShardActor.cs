using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;
using MessagePack;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// One parameter-server shard that runs on its own (docs/architecture.md, "Where the shards run"): it owns one slice of the
/// weights and its optimizer state, takes the workers' slices of every gradient straight from the workers (refusing, with a warning naming the reason, a
/// slice of another epoch, sender or length, or one computed on another version than the weights it sent for the round, a part
/// of the gradient's norm from any actor but the shard of this run whose index it claims, and a loss question or decision from any
/// actor but the part's loss arbiter, and a part's start from any actor but the run's owner it was made with), and follows a
/// <see cref="ShardRoundLedger{TReport}"/> to know when a round closes and what a lost worker's decision undoes.
/// </summary>
/// <remarks>
/// <para>Workers send <see cref="GradientComputed"/> whose gradient is their slice <c>[Start, End)</c> of the report
/// (<see cref="ShardedReplicaLink.Split"/>): the slice of the trainable gradient and, to the last shard, of the running
/// statistics. When the ledger closes a round, the shard keeps its slice of the weights, optimizer state and step count
/// (and the run's first step's loss, which a divergence's advice quotes),
/// steps with <see cref="ServerModel"/> as one synchronous server does (the sample-weighted average in worker order, one
/// optimizer step, the running statistics merged) and sends every live worker its slice of the result
/// (<see cref="ShardWeights"/>). A redo puts the kept inputs back and steps on the remaining reports.</para>
/// <para>Every optimizer is element-wise, so without clipping K shards give one server's weights bit for bit. With
/// Optimizer:GradientClipNorm each shard sends its part of the squared norm to every shard (<see cref="ShardNormShare"/>)
/// and steps when it holds all K parts of the round and stamp, summed in shard order.</para>
/// <para>A round whose loss, averaged gradient or running statistics are not finite stops the shard with the
/// <see cref="TrainingDivergedException"/> one parameter server gives (<see cref="UpdatePolicy.Divergence"/>): epoch, step,
/// workers, first tensor, advice, and as <see cref="TrainingDivergedException.LastGoodWeights"/> this shard's slice of the
/// last good weights (the newest it sent before the version the reports were computed on, else that version's own).
/// The actor throws it from its message handler, so its parent must stop it on that exception (a supervisor strategy
/// whose decider gives Stop): under Akka's default strategy (Restart) the shard would come back with its starting weights
/// and no round open, refuse every slice, and the run would wait instead of ending.</para>
/// <para>On a node of its own the workers' slices and the results travel on that node's data plane
/// (<see cref="DataPlane.ShardDataPlane"/>, whose links the part names as the workers).</para>
/// <para>Checkpoints: the owner gathers the shards' slices of the weights and optimizer state at each epoch's end
/// (<see cref="ShardSliceRequest"/>) and writes the checkpoint. Within a part that asks for them
/// (<see cref="ShardPartStart.CheckpointEverySteps"/>) each shard sends its slices unasked at every multiple of Checkpoint:EverySteps,
/// as the next round closes (not the part's last round's version, and none after a lost worker's decision). A resumed run's owner sends each shard its slice of the checkpoint
/// (<see cref="ShardSliceChunk"/>, the same pieces in the other direction) before the first part.</para>
/// <para>A part may start after round 0: an epoch's further part, which trains the samples a lost worker left
/// (<see cref="ShardPartStart.FirstRound"/>); its results carry its part (<see cref="ShardWeights.Part"/>). A part with no minibatch
/// (a resumed run that first scores its checkpoint's weights) broadcasts the slice and reports its end at once, as a round
/// without a step (<see cref="ShardRoundApplied.PartFinished"/>). With a part's <see cref="ShardPartStart.GradientNormEverySteps"/>
/// the shard measures its slices of the per-tensor norms on those steps and sends them to the owner
/// (<see cref="ShardHealthSquares"/>), which judges the whole tensors. Only a <see cref="ShardHost"/> starts this actor, on a shard node, for the
/// <see cref="RemoteShardedParameterServer"/> of a run with Cluster:ShardNodes.</para>
/// </remarks>
public sealed class ParameterShardActor : ReceiveActor
{
    private readonly ParameterShard _shard;
    private readonly IActorRef _owner;
    private readonly ServerModel _model;
    private int _lastRoundFrom; // the part's first round that can be its last (its workers' lowest last round)
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly float[] _heldWeights;
    private readonly float[][] _heldState;
    private long _heldStepCount;
    private long _heldVersion;
    private double? _heldFirstStepLoss; // the first step's loss before the kept step: a redone first step sets it anew
    private ShardRoundLedger<GradientComputed>? _ledger;
    private EpochPart? _part;
    private int _scalingWorkers; // the part's ShardPartStart.ScalingWorkers: 0 scales the learning rate by the workers in the part
    private bool _keepGlobalBatch; // the part's ShardPartStart.KeepGlobalBatch: a loss with minibatches left cuts the part for every worker
    private (int Round, int Stamp)? _partEndReported; // the part's end without a step last reported, so no decision reports it twice
    private IActorRef[] _workers = [];
    private IActorRef[] _receivers = [];
    private IActorRef[] _shards = [];
    private IActorRef _arbiter = ActorRefs.Nobody;
    private LedgerAction<GradientComputed>? _awaitingNorm;
    private int? _partEndAfterStep; // a part's end without a step (its round), told once the step awaiting the norm is reported
    private bool _awaitingPartFinished; // whether the part was over when the step awaiting the norm closed its round
    private float[][] _reports = [];
    private float[] _scales = [];
    private readonly Dictionary<(int Round, int Stamp), double?[]> _normParts = [];
    private int _sentRound = -1;      // the round of the last broadcast: the next round's slices are computed on its weights
    private long _sentVersion;        // the version of the last broadcast
    private long _sentTimestamp;      // when the last broadcast went out (Stopwatch): the next round's start
    private long _heldSentTimestamp;  // that of the kept inputs' broadcast, which a redo's round starts from
    private readonly System.Diagnostics.TagList _metricTags = Metrics.DistTrainMetrics.Tags(NodeRoles.ParameterShard);
    // The three newest broadcasts' slices by version (arrays the shard never writes again): the last good weights on a divergence,
    // this shard's, or another's (ShardSliceRequest.Version) after this one stepped the round that diverged elsewhere.
    private readonly List<(long Version, float[] Weights)> _sent = [];
    private double? _firstStepLoss;   // this run's first step's mean loss, set once that step is applied (the divergence advice)
    private int _restoreBuffer;       // a resume's slice of a checkpoint: the buffer being received (0 the weights, b + 1 state buffer b)
    private int _restoreReceived;     // values of that buffer received so far
    private bool _restoring;          // a checkpoint's slice has begun to arrive and is not whole yet
    private (long Version, long Steps) _restoreOf; // the version and optimizer step count its first piece named
    private int _checkpointEvery;     // the running part's Checkpoint:EverySteps (0: no checkpoint within it)
    private int _checkpointRequest;   // the request number its checkpoint slices carry
    private long _partStartVersion;   // the version the running part started at: no checkpoint of it within the part
    private long _checkpointSent = -1; // the newest version whose checkpoint slice went to the owner
    private ShardHealthSquares? _pendingHealth; // the newest measured step's slices of the per-tensor norms, until the step is final

    /// <summary>Creates the shard over its slice of the starting weights; see <see cref="Props"/>.</summary>
    /// <exception cref="ArgumentException"><paramref name="shard"/> does not lie within <paramref name="wholeWeights"/>' report prefix.</exception>
    /// <exception cref="ArgumentException"><paramref name="owner"/> is <see cref="ActorRefs.Nobody"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">As <see cref="ServerModel"/>.</exception>
    public ParameterShardActor(ParameterShard shard, ParameterVector wholeWeights, OptimizerOptions optimizer, int totalEpochs, IActorRef owner,
        OptimizerOptions? configuredOptimizer = null)
    {
        ArgumentNullException.ThrowIfNull(shard);
        ArgumentNullException.ThrowIfNull(wholeWeights);
        ArgumentNullException.ThrowIfNull(optimizer);
        ArgumentNullException.ThrowIfNull(owner);
        if (owner.IsNobody())
            throw new ArgumentException($"Shard {shard.Index} needs the actor that starts its parts (the coordinator) as its owner; Nobody " +
                "would leave it refusing every part's start.", nameof(owner));
        _owner = owner;
        if (shard.Start < 0 || shard.End > wholeWeights.Layout.WorkerReportLength || shard.Length <= 0)
            throw new ArgumentException($"Shard {shard.Index} covers [{shard.Start}, {shard.End}), outside the model's report prefix [0, " +
                $"{wholeWeights.Layout.WorkerReportLength}): make the shard with ParameterShards.Plan of this model's layout.", nameof(shard));
        _shard = shard;
        var whole = wholeWeights.Layout;
        _model = new ServerModel(shard.Slice(wholeWeights), optimizer, totalEpochs, configuredOptimizer: configuredOptimizer)
        {
            // A measured step's slices of the per-tensor norms wait until the step is final (SendDueHealth), then go to the owner.
            HealthSink = (step, squares) => _pendingHealth = ShardHealthSquares.Of(shard.Index, step, squares),
            ClipsByShardedNorm = optimizer.GradientClipNorm > 0,
            CountsClippedSteps = shard.Index == 0, // every shard's slice starts at its own 0: count each clipped step once
            Whole = (whole.TotalLength, whole.WorkerReportLength, whole.TrainableLength),
        };
        _heldWeights = new float[shard.Length];
        _heldState = [.. _model.Optimizer.State.Select(s => new float[s.Values.Length])];
        Receive<ShardPartStart>(OnPartStart);
        Receive<GradientComputed>(OnSlice);
        Receive<ShardLossQuery>(OnQuery);
        Receive<ShardLossDecision>(OnDecision);
        Receive<ShardNormShare>(OnNormShare);
        Receive<ShardSliceRequest>(OnSliceRequest);
        Receive<ShardSliceChunk>(OnCheckpointSlice);
    }

    /// <summary>Props of the shard <paramref name="shard"/> of <paramref name="wholeWeights"/>.</summary>
    /// <param name="shard">The shard's slice, from <see cref="ParameterShards.Plan"/> of the model's layout.</param>
    /// <param name="wholeWeights">The whole model's starting weights (version 0); the shard copies its slice.</param>
    /// <param name="optimizer">Update rule, regularization, clipping and learning-rate schedule, as for one server.</param>
    /// <param name="totalEpochs">Epochs of the run, which the schedule spans.</param>
    /// <param name="owner">The run's owner: the only actor whose <see cref="ShardPartStart"/> the shard takes (the coordinator,
    /// which starts every part). A part's start resets the ledger, the workers, the other shards and the loss arbiter, so one
    /// from any other actor is refused with a warning naming its sender, and nothing changes. The owner is fixed when the
    /// shard is made rather than taken from the first part's start because the coordinator makes the shards (or has their
    /// nodes make them) before it starts any part, so it knows itself then; and on a node of its own a fresh shard is
    /// reachable by every member of the cluster, so the first start to arrive could be anyone's (a forged one, or one of
    /// an earlier run's coordinator), and would own the run. A takeover starts the shards anew with the new coordinator
    /// as their owner (docs/architecture.md, "Where the shards run"), so a shard's owner never changes.</param>
    /// <param name="configuredOptimizer">The run's optimizer settings as configured, when <paramref name="optimizer"/> is the
    /// parameter server's share of them (<see cref="Core.Configuration.TrainingOptions.ParameterServerOptimizer"/>): the shard
    /// reports their L1 and L2 penalties, as one server does (<see cref="ServerModel"/>). Null: <paramref name="optimizer"/>'s.</param>
    /// <exception cref="ArgumentException"><paramref name="owner"/> is <see cref="ActorRefs.Nobody"/> (when the props are used).</exception>
    public static Props Props(ParameterShard shard, ParameterVector wholeWeights, OptimizerOptions optimizer, int totalEpochs, IActorRef owner,
        OptimizerOptions? configuredOptimizer = null) =>
        Akka.Actor.Props.Create(() => new ParameterShardActor(shard, wholeWeights, optimizer, totalEpochs, owner, configuredOptimizer));

    /// <inheritdoc />
    protected override bool AroundReceive(Receive receive, object message)
    {
        // The shard node's actor metrics (role parameter-shard), as the parameter server's own actor records them.
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var handled = base.AroundReceive(receive, message);
        Metrics.DistTrainMetrics.Handled(_metricTags, started);
        return handled;
    }

    private void OnPartStart(ShardPartStart start)
    {
        // A part's start resets everything the shard acts on: it counts only from the run's owner.
        if (!Sender.Equals(_owner))
        {
            _log.Warning("Shard {0}: a part's start of epoch {1} is not taken: it came from {2}, not from the run's owner {3}. Ignored.", _shard.Index, start.Epoch, Sender.Path, _owner.Path);
            return;
        }
        if (start.Workers.Length != start.RoundsPerWorker.Length || start.Workers.Length is 0 or > UpdatePolicy.MaxWorkers)
        {
            _log.Warning("Shard {0}: a part of epoch {1} names {2} workers and {3} round counts; they must match and be 1..{4}. Ignored.",
                _shard.Index, start.Epoch, start.Workers.Length, start.RoundsPerWorker.Length, UpdatePolicy.MaxWorkers);
            return;
        }
        if (_restoring)
            throw new InvalidOperationException($"Shard {_shard.Index}: a part of epoch {start.Epoch} starts before the checkpoint's slice it resumes from " +
                $"is whole ({_restoreReceived} values of buffer {_restoreBuffer} have come): the run's owner sent it incompletely. Resume the run again.");
        if (start.Shards.Length <= _shard.Index || !start.Shards[_shard.Index].Equals(Self))
        {
            _log.Warning("Shard {0}: a part of epoch {1} lists {2} shards without this one at index {0}; every shard must get the same list, " +
                "by shard index. Ignored.", _shard.Index, start.Epoch, start.Shards.Length);
            return;
        }
        if (start.OutOfRange() is { } outOfRange)
        {
            // Decoding refuses such a start from another node; one made in this process is refused here alike.
            _log.Warning("Shard {0}: a part of epoch {1} is not started: {2}. Ignored.", _shard.Index, start.Epoch, outOfRange);
            return;
        }
        SendDueHealth(); // the last part's steps are final
        _ledger = new ShardRoundLedger<GradientComputed>(start.RoundsPerWorker, start.FirstRound);
        // The first round that can be the part's last: the lowest last round of its workers (the others may be lost by then).
        _lastRoundFrom = start.RoundsPerWorker.Where(r => r > 0).DefaultIfEmpty(start.FirstRound + 1).Min() - 1;
        _scalingWorkers = start.ScalingWorkers;
        _keepGlobalBatch = start.KeepGlobalBatch;
        _partEndReported = null;
        _part = new EpochPart(start.Epoch, [.. start.Workers.Select(w => !w.IsNobody())], start.RoundsPerWorker, start.FirstRound, start.StepsPerEpoch,
            false, start.Part);
        _workers = start.Workers;
        _receivers = (IActorRef[])start.Workers.Clone();
        _shards = start.Shards;
        _arbiter = start.Arbiter;
        _reports = new float[start.Workers.Length][];
        _scales = new float[start.Workers.Length];
        _awaitingNorm = null;
        _partEndAfterStep = null;
        _normParts.Clear();
        (_checkpointEvery, _checkpointRequest, _partStartVersion) = (start.CheckpointEverySteps, start.CheckpointRequestId, _model.Version);
        _model.MeasureEverySteps = start.GradientNormEverySteps;
        Broadcast(start.FirstRound - 1, 0); // the weights the part's first round is computed on
        // A part with no minibatch only hands out the weights (a resumed run scoring its checkpoint's): nothing else ends it.
        if (_ledger.PartFinished) ReportPartEndWithoutStep(start.FirstRound);
    }

    private void OnSliceRequest(ShardSliceRequest request)
    {
        if (!Sender.Equals(_owner))
        {
            _log.Warning("Shard {0}: a request for its weights came from {1}, not from the run's owner {2}; not answered.", _shard.Index, Sender.Path, _owner.Path);
            return;
        }
        if (request.Version < 0)
        {
            SendSlices(Sender, request.RequestId, request.WithOptimizerState);
            return;
        }
        // A past version (the last good weights after another shard diverged): weights only, from the newest broadcasts.
        var held = _sent.FindIndex(s => s.Version == request.Version);
        if (held < 0)
        {
            _log.Warning("Shard {0}: its slice of version {1} was asked for, and it holds only versions {2} (the newest it sent); not answered.",
                _shard.Index, request.Version, string.Join(", ", _sent.Select(s => s.Version)));
            return;
        }
        foreach (var piece in ShardSliceChunk.Pieces(request.RequestId, _shard.Index, request.Version, 0, _sent[held].Weights, 0, 0)) Sender.Tell(piece, Self);
    }

    /// <summary>Sends <paramref name="to"/> this shard's slice of the current weights and, with <paramref name="withOptimizerState"/>,
    /// of every optimizer state buffer, in pieces (<see cref="ShardSliceChunk.Pieces"/>, copies) of request <paramref name="requestId"/>.</summary>
    private void SendSlices(IActorRef to, int requestId, bool withOptimizerState)
    {
        var steps = _model.Optimizer.StepCount;
        var state = withOptimizerState ? _model.Optimizer.State : [];
        Send(0, _model.Weights.Values.AsMemory(0, _shard.Length));
        for (var b = 0; b < state.Count; b++) Send(b + 1, state[b].Values.AsMemory(0, _shard.TrainableLength));

        void Send(int buffer, ReadOnlyMemory<float> values)
        {
            foreach (var piece in ShardSliceChunk.Pieces(requestId, _shard.Index, _model.Version, buffer, values, steps, state.Count)) to.Tell(piece, Self);
        }
    }

    /// <summary>
    /// Sends the owner the checkpoint slice of the current version when the running part asks for checkpoints within it
    /// (<see cref="ShardPartStart.CheckpointEverySteps"/>), the version is a multiple of that above the part's starting one, and
    /// its slice has not gone yet. Called as a new round closes, before its step: the current weights are final then, since a lost
    /// worker's decision can redo only the newest step, which is this one from now on. So the slice follows this shard's report of
    /// the step that made the version, and the owner has that report when the slice comes.
    /// </summary>
    private void SendDueCheckpointSlice()
    {
        var version = _model.Version;
        if (_checkpointEvery <= 0 || version <= _partStartVersion || version % _checkpointEvery != 0 || version == _checkpointSent) return;
        _checkpointSent = version;
        SendSlices(_owner, _checkpointRequest, withOptimizerState: true);
    }

    /// <summary>
    /// Sends the owner the newest measured step's slices of the per-tensor norms once that step is final: as a new round closes,
    /// before its step (a lost worker's decision can redo only the newest step, which is this one from now on), or as the next part
    /// starts. A measurement whose step a decision undid (the version is back below it) is dropped; a redo that measures the step
    /// again replaces it first. So the owner puts each step together from one measurement per shard, of the same reports.
    /// </summary>
    private void SendDueHealth()
    {
        if (_pendingHealth is not { } health) return;
        _pendingHealth = null;
        if (health.Step == _model.Version) _owner.Tell(health, Self);
    }

    /// <summary>
    /// Takes a piece of the checkpoint a resumed run starts from (<see cref="ShardSliceChunk"/>, from the run's owner only, before
    /// the first part): this shard's slice of the weights, then of each optimizer state buffer in the optimizer's order, each whole
    /// before the next. With the last piece the shard takes the checkpoint's version and optimizer step count, so it steps on
    /// exactly as the parameter server that wrote the checkpoint would have.
    /// </summary>
    /// <exception cref="InvalidOperationException">A piece from the owner that does not fit: another shard's, buffer, length or
    /// position, another number of state buffers than this shard's optimizer has, or one after a part started. The shard stops
    /// with it (its host tells the owner), since taking part of a checkpoint would train on torn weights.</exception>
    private void OnCheckpointSlice(ShardSliceChunk chunk)
    {
        if (!Sender.Equals(_owner))
        {
            _log.Warning("Shard {0}: a piece of a checkpoint came from {1}, not from the run's owner {2}. Ignored.", _shard.Index, Sender.Path, _owner.Path);
            return;
        }
        var state = _model.Optimizer.State;
        var length = chunk.Buffer == 0 ? _shard.Length : _shard.TrainableLength;
        string? problem = null;
        if (_part is not null) problem = $"epoch {_part.Epoch} has started, and a shard takes a checkpoint only before its first part";
        else if (chunk.Shard != _shard.Index) problem = $"it is shard {chunk.Shard}'s";
        else if (chunk.StateBuffers != state.Count)
            problem = $"it carries {chunk.StateBuffers} optimizer state buffers, and this shard's optimizer has {state.Count} (other Optimizer settings)";
        else if (chunk.Buffer != _restoreBuffer || chunk.Buffer > state.Count) problem = $"it is of buffer {chunk.Buffer}, and buffer {_restoreBuffer} is due";
        else if (chunk.Total != length) problem = $"its buffer holds {chunk.Total} values, and this shard's slice of it {length}";
        else if (chunk.Offset != _restoreReceived || chunk.Values.Length == 0 || (long)chunk.Offset + chunk.Values.Length > length)
            problem = $"it holds values {chunk.Offset} to {(long)chunk.Offset + chunk.Values.Length}, and value {_restoreReceived} of {length} is due";
        else if (chunk.Version < 0 || chunk.OptimizerSteps < 0) problem = $"it names version {chunk.Version} after {chunk.OptimizerSteps} optimizer steps";
        else if (_restoring && (chunk.Version, chunk.OptimizerSteps) != _restoreOf)
            problem = $"it is of version {chunk.Version} after {chunk.OptimizerSteps} optimizer steps, and the first piece of {_restoreOf.Version} after {_restoreOf.Steps}";
        if (problem is not null)
            throw new InvalidOperationException($"Shard {_shard.Index}: a piece of the checkpoint the run resumes from cannot be taken: {problem}. Resume " +
                "the run again, with the same settings on every node.");
        if (!_restoring) _restoreOf = (chunk.Version, chunk.OptimizerSteps);
        _restoring = true;
        chunk.Values.CopyTo(chunk.Buffer == 0 ? _model.Weights.Values : state[chunk.Buffer - 1].Values, chunk.Offset);
        _restoreReceived += chunk.Values.Length;
        if (_restoreReceived < length) return;
        (_restoreBuffer, _restoreReceived) = (_restoreBuffer + 1, 0);
        if (_restoreBuffer <= state.Count) return;
        (_model.Version, _model.Optimizer.StepCount) = (chunk.Version, chunk.OptimizerSteps);
        (_restoring, _restoreBuffer) = (false, 0); // whole: a second resume's pieces before any part would start again from buffer 0
        _log.Info("Shard {0}: resumes from the checkpoint's slice, version {1} after {2} optimizer steps.", _shard.Index, chunk.Version, chunk.OptimizerSteps);
    }

    private void OnSlice(GradientComputed slice)
    {
        if (_ledger is null || _part is null)
        {
            _log.Warning("Shard {0}: a slice from worker {1} of epoch {2} round {3} came before any part started. Dropped.",
                _shard.Index, slice.WorkerIndex, slice.Epoch, slice.Round);
            return;
        }
        string? problem = null;
        if (slice.Epoch != _part.Epoch) problem = $"it is of epoch {slice.Epoch}, and this part is of epoch {_part.Epoch}";
        else if (slice.WorkerIndex < 0 || slice.WorkerIndex >= _workers.Length) problem = $"worker slot {slice.WorkerIndex} is not in this part (0 to {_workers.Length - 1})";
        else if (!Sender.Equals(_workers[slice.WorkerIndex])) problem = $"it came from {Sender.Path}, not from the slot's worker {_workers[slice.WorkerIndex].Path}";
        else if (slice.SampleCount <= 0) problem = $"it counts {slice.SampleCount} samples; a slice averages by its minibatch's sample count, at least 1";
        else if (slice.Gradient.Length != _shard.Length) problem = $"it holds {slice.Gradient.Length} values, and this shard's slice [{_shard.Start}, {_shard.End}) has {_shard.Length}";
        else if (slice.Round == _sentRound + 1 && slice.Version != _sentVersion)
            problem = $"it was computed on weights version {slice.Version}, and this shard's weights for round {slice.Round} are version {_sentVersion} " +
                "(a stale slice, or the worker took weights of another stamp)";
        LedgerAction<GradientComputed> action = LedgerAction<GradientComputed>.None;
        if (problem is null) action = _ledger.Add(slice.WorkerIndex, slice.Round, slice, out problem);
        if (problem is not null)
        {
            _log.Warning("Shard {0}: worker {1}'s slice of epoch {2} round {3} is not used: {4}.", _shard.Index, slice.WorkerIndex, slice.Epoch, slice.Round, problem);
            return;
        }
        Act(action);
    }

    private void OnQuery(ShardLossQuery query)
    {
        // As a slice's sender is checked: answered, a question would make the ledger refuse the worker's slices from then on.
        if (NotFromArbiter() is { } notFromArbiter)
        {
            _log.Warning("Shard {0}: a question about lost worker {1} is not answered: {2}.", _shard.Index, query.Worker, notFromArbiter);
            return;
        }
        if (OtherPart(query.Epoch, query.Part) is { } otherPart)
        {
            _log.Warning("Shard {0}: a question about lost worker {1} is not answered: {2}.", _shard.Index, query.Worker, otherPart);
            return;
        }
        if (_ledger is null || query.Worker < 0 || query.Worker >= _workers.Length)
        {
            _log.Warning("Shard {0}: asked about lost worker {1}, but {2}. Not answered.", _shard.Index, query.Worker,
                _ledger is null ? "no part has started" : $"this part's worker slots are 0 to {_workers.Length - 1}");
            return;
        }
        Sender.Tell(new ShardLossAnswer(_shard.Index, _ledger.Query(query.Worker)));
        // From the question on the ledger refuses the worker's slices, so it gets no further result either: a worker declared lost
        // while still alive (cut off from the coordinator only) would otherwise compute the next round on this one and send it to
        // the shards not yet asked, which would close that round with it while this one closes it without.
        _receivers[query.Worker] = ActorRefs.Nobody;
    }

    private void OnDecision(ShardLossDecision message)
    {
        var decision = message.Decision;
        if (NotFromArbiter() is { } notFromArbiter)
        {
            _log.Warning("Shard {0}: a decision about worker {1} in round {2} is not applied: {3}.", _shard.Index, decision.Worker, decision.Round, notFromArbiter);
            return;
        }
        if (OtherPart(message.Epoch, message.Part) is { } otherPart)
        {
            _log.Warning("Shard {0}: a decision about worker {1} in round {2} is not applied: {3}.", _shard.Index, decision.Worker, decision.Round, otherPart);
            return;
        }
        if (_ledger is null || decision.Worker < 0 || decision.Worker >= _workers.Length)
        {
            _log.Warning("Shard {0}: a decision about worker {1}, but {2}. Ignored.", _shard.Index, decision.Worker,
                _ledger is null ? "no part has started" : $"this part's worker slots are 0 to {_workers.Length - 1}");
            return;
        }
        // Thrown when the shards are out of step; the actor fails with it, as a shard of one process does.
        var (wasFinished, openRound) = (_ledger.PartFinished, _ledger.OpenRound);
        var action = _ledger.ApplyLoss(decision, _keepGlobalBatch);
        foreach (var leftOut in _ledger.LeftOutAtCut)
            _log.Warning("Shard {0}: worker {1}'s slice of round {2} is left out: Training:KeepGlobalBatch ended this part at round {3} after worker {4} was lost, " +
                "and this minibatch is trained in the epoch's further part.", _shard.Index, leftOut, openRound, _ledger.CutFrom, decision.Worker);
        _checkpointEvery = 0; // the owner writes no checkpoint within a part after a loss: sending the slices would only load the link
        _receivers[decision.Worker] = ActorRefs.Nobody; // it gets nothing more
        Act(action);
        // A decision that ends the part without closing a round (the lost worker was the last with a minibatch in the open
        // round) is reported as that round without a step, so the owner learns the part's end, which no step would report.
        // Every shard applies every decision, so those that did not redo or close the round report it so too.
        // With clipping, the previous round's step may still wait for the other shards' parts of the norm (a norm share and the
        // decision come from different actors, in no set order): the report then follows that step's, at the version after it.
        if (action.Kind == LedgerActionKind.None && !wasFinished && _ledger.PartFinished)
        {
            if (_awaitingNorm is null) ReportPartEndWithoutStep(openRound);
            else _partEndAfterStep = openRound;
        }
    }

    /// <summary>Reports <paramref name="round"/>, the part's last, as applied without a step: the part is over (see <see cref="OnDecision"/>).</summary>
    private void ReportPartEndWithoutStep(int round)
    {
        // A cut part's end may be due from a decision and again after the step that waited for the norm: once per stamp.
        if (_partEndReported == (round, _ledger!.Stamp)) return;
        _partEndReported = (round, _ledger.Stamp);
        var (l1, l2) = Penalties(round, 0, partFinished: true);
        _owner.Tell(new ShardRoundApplied(_shard.Index, _part!.Epoch, _part.Part, round, _ledger!.Stamp, _model.Version, 0, 0, 0, 0, PartFinished: true, l1, l2));
    }

    /// <summary>Why a loss question or decision of <paramref name="epoch"/>'s part <paramref name="part"/> is not about the part
    /// the shard runs (a late one of an earlier part, or one of a part not started here), else null.</summary>
    private string? OtherPart(int epoch, int part) =>
        _part is null || (epoch == _part.Epoch && part == _part.Part) ? null // before any part: refused as such
        : $"it is about epoch {epoch} part {part}, and this shard runs epoch {_part.Epoch} part {_part.Part}";

    /// <summary>Why a loss question or decision is not taken from its sender (it is not the part's arbiter), else null.</summary>
    private string? NotFromArbiter() =>
        _ledger is null ? null // refused as coming before any part
        : _arbiter.IsNobody() ? $"it came from {Sender.Path}, and this part names no loss arbiter"
        : !Sender.Equals(_arbiter) ? $"it came from {Sender.Path}, not from the part's loss arbiter {_arbiter.Path}"
        : null;

    private void Act(LedgerAction<GradientComputed> action)
    {
        switch (action.Kind)
        {
            case LedgerActionKind.Close:
                SendDueCheckpointSlice();
                SendDueHealth();
                KeepInputs();
                Step(action);
                break;
            case LedgerActionKind.Redo:
                RestoreInputs();
                Step(action);
                break;
        }
    }

    private void KeepInputs()
    {
        _model.Weights.Values.CopyTo(_heldWeights, 0);
        var state = _model.Optimizer.State;
        for (var b = 0; b < state.Count; b++) state[b].Values.CopyTo(_heldState[b], 0);
        _heldStepCount = _model.Optimizer.StepCount;
        _heldVersion = _model.Version;
        _heldFirstStepLoss = _firstStepLoss;
        _heldSentTimestamp = _sentTimestamp;
    }

    private void RestoreInputs()
    {
        // A step that waits for the norm has changed nothing yet; restoring is then a no-op, and its wait ends here.
        _awaitingNorm = null;
        _heldWeights.CopyTo(_model.Weights.Values, 0);
        var state = _model.Optimizer.State;
        for (var b = 0; b < state.Count; b++) _heldState[b].CopyTo(state[b].Values, 0);
        _model.Optimizer.StepCount = _heldStepCount;
        _model.Version = _heldVersion;
        _firstStepLoss = _heldFirstStepLoss;
        _sentTimestamp = _heldSentTimestamp;
    }

    private void Step(LedgerAction<GradientComputed> action)
    {
        // Whether the part is over as the round closes: what the report says, read now, as every shard reads it at this point of
        // the decisions; a clipped step reports later, after further decisions may have ended the part.
        var partFinished = _ledger!.PartFinished;
        if (action.Reports.Count == 0)
        {
            // Redone without any report: the round makes no step (its weights are the inputs, put back).
            Broadcast(action.Round, action.Stamp);
            ReportRound(action, 0, 0, 0, 0, 0, partFinished);
            ReportDeferredPartEnd();
            return;
        }
        var (lossSum, samples) = Totals(action);
        if (!double.IsFinite(lossSum)) throw Diverged("a NaN or infinite loss", action, lossFiniteOnIt: false);
        Array.Clear(_reports);
        for (var i = 0; i < action.Reports.Count; i++)
        {
            _reports[i] = action.Reports[i].Report.Gradient;
            _scales[i] = (float)action.Reports[i].Report.SampleCount / samples; // as GradientRound.Contributors
        }
        if (_model.ClipsByShardedNorm)
        {
            _awaitingNorm = action;
            _awaitingPartFinished = partFinished;
            var part = _model.AverageSquaredNorm(_reports.AsSpan(0, action.Reports.Count), _scales.AsSpan(0, action.Reports.Count));
            foreach (var shard in _shards) shard.Tell(new ShardNormShare(_shard.Index, action.Round, action.Stamp, part));
            return;
        }
        Finish(action, null, partFinished);
    }

    private void OnNormShare(ShardNormShare share)
    {
        // As a slice's sender is checked: a part counts only from the shard of this run whose index it claims.
        string? problem = null;
        if (_part is null) problem = "no part has started";
        else if (share.Shard < 0 || share.Shard >= _shards.Length) problem = $"shard {share.Shard} is not one of this run's shards (0 to {_shards.Length - 1})";
        else if (!Sender.Equals(_shards[share.Shard])) problem = $"it came from {Sender.Path}, not from shard {share.Shard}'s actor {_shards[share.Shard].Path}";
        if (problem is not null)
        {
            _log.Warning("Shard {0}: a norm part claiming shard {1} of round {2} stamp {3} is not used: {4}.", _shard.Index, share.Shard, share.Round,
                share.Stamp, problem);
            return;
        }
        if (!_normParts.TryGetValue((share.Round, share.Stamp), out var parts)) _normParts[(share.Round, share.Stamp)] = parts = new double?[_shards.Length];
        parts[share.Shard] = share.SquaredNorm;
        TryFinishClipped();
    }

    private void TryFinishClipped()
    {
        if (_awaitingNorm is not { } action || !_normParts.TryGetValue((action.Round, action.Stamp), out var parts) || parts.Any(p => p is null)) return;
        // The whole gradient's norm from the shards' parts, summed in shard order (as ShardedParameterServer sums them).
        var squares = 0.0;
        foreach (var p in parts) squares += p!.Value;
        // Parts of earlier rounds, or of steps that were redone, are never needed again.
        foreach (var key in _normParts.Keys.Where(k => k.Round <= action.Round).ToArray()) _normParts.Remove(key);
        _awaitingNorm = null;
        Finish(action, Math.Sqrt(squares), _awaitingPartFinished);
    }

    private void Finish(LedgerAction<GradientComputed> action, double? globalNorm, bool partFinished)
    {
        var part = _part!;
        var count = action.Reports.Count;
        var reports = _reports.AsSpan(0, count);
        var scales = _scales.AsSpan(0, count);
        // With Training:KeepGlobalBatch the global minibatch stays the plan's after a loss, and so does the scaled rate, as one
        // parameter server keeps it (its scalingWorkers).
        var scheduledRate = _model.LearningRate(part.Epoch, action.Round, part.PlannedSteps, _scalingWorkers > 0 ? _scalingWorkers : part.ActiveWorkers);
        var learningRate = (float)scheduledRate;
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var finite = _model.Step(reports, scales, learningRate, null, warning => _log.Warning("Shard {0}: {1}", _shard.Index, warning), globalNorm)
            && _model.MergeRunningStatistics(reports, scales, null);
        if (!finite) throw Diverged("a NaN or infinite averaged gradient or BatchNorm running statistic", action, lossFiniteOnIt: true);
        _model.Version++;
        var (roundLoss, roundSamples) = Totals(action);
        if (_firstStepLoss is null)
        {
            // Once the run's first step is applied, as one parameter server sets it (its AfterStep); a redo of that step
            // puts the kept null back first, so it is the step as decided, without a dropped slice's loss.
            _firstStepLoss = roundLoss / roundSamples;
        }
        var finished = System.Diagnostics.Stopwatch.GetTimestamp();
        var updateSeconds = System.Diagnostics.Stopwatch.GetElapsedTime(started, finished).TotalSeconds;
        var roundSeconds = System.Diagnostics.Stopwatch.GetElapsedTime(_sentTimestamp, finished).TotalSeconds;
        Broadcast(action.Round, action.Stamp);
        ReportRound(action, roundSamples, roundLoss, scheduledRate, updateSeconds, roundSeconds, partFinished);
        ReportDeferredPartEnd();
    }

    /// <summary>Sends the part's end without a step that waited for the step just reported (<see cref="OnDecision"/>), if any.</summary>
    private void ReportDeferredPartEnd()
    {
        if (_partEndAfterStep is not { } partEnd) return;
        _partEndAfterStep = null;
        ReportPartEndWithoutStep(partEnd);
    }

    /// <summary>The summed loss and the samples of a closed round's reports.</summary>
    private static (double LossSum, int Samples) Totals(LedgerAction<GradientComputed> action)
    {
        var (lossSum, samples) = (0.0, 0);
        foreach (var (_, report) in action.Reports) (lossSum, samples) = (lossSum + report.LossSum, samples + report.SampleCount);
        return (lossSum, samples);
    }

    /// <summary>Tells the owner the round is applied (<see cref="ShardRoundApplied"/>), after its result went to the workers.</summary>
    // partFinished: whether the part was over when the round closed (Step), not when the report goes out.
    // After Training:KeepGlobalBatch's cut every shard reports the part's end as the cut round without a step, whether it closed
    // the round before the cut before the decision (not knowing the part ends there) or after it, so the owner's merge gets one
    // end from every shard, each with its slice's L1 and L2 terms.
    private void ReportRound(LedgerAction<GradientComputed> action, int samples, double lossSum, double learningRate, double updateSeconds,
        double roundSeconds, bool partFinished)
    {
        var endsAtCut = partFinished && _ledger!.CutFrom > action.Round;
        var (l1, l2) = Penalties(action.Round, samples, partFinished && !endsAtCut);
        _owner.Tell(new ShardRoundApplied(_shard.Index, _part!.Epoch, _part.Part, action.Round, action.Stamp, _model.Version, samples, lossSum,
            learningRate, updateSeconds, partFinished && !endsAtCut, l1, l2, roundSeconds));
        if (endsAtCut) ReportPartEndWithoutStep(_ledger!.CutFrom);
    }

    /// <summary>
    /// The slice's L1 and L2 terms after a round that can be the part's last (from <see cref="_lastRoundFrom"/> on, one without a
    /// step, or any that closed with the part over here: every worker lost earlier), else zeros: a pass over the slice, spared on the rounds
    /// before. Every shard's report of a part's final round carries them, even one that closed the round before a decision ended
    /// the part, so the owner's sum is the model's. (Below <see cref="_lastRoundFrom"/> a part ends only when every worker is
    /// lost, the last by a decision that drops its slice, after which every shard reports the round, all with the part over.)
    /// </summary>
    private (double L1, double L2) Penalties(int round, int samples, bool partFinished) =>
        round >= _lastRoundFrom || samples == 0 || partFinished ? _model.RegularizationPenalties() : (0, 0);

    /// <summary>
    /// The exception the shard stops with, as one parameter server's (<see cref="UpdatePolicy.Divergence"/>): the epoch, step,
    /// workers and first tensor, and this shard's slice of the last good weights: the newest it sent of a version before the
    /// one the reports were computed on, else that version's own.
    /// </summary>
    private TrainingDivergedException Diverged(string what, LedgerAction<GradientComputed> action, bool lossFiniteOnIt)
    {
        var computedOn = _model.Version; // nothing stepped yet, or the failed step's version was not counted
        (float[]? Weights, long Version, bool Older) good = (null, -1, false);
        foreach (var (version, weights) in _sent)
        {
            if (version < computedOn && (good.Weights is null || !good.Older || version > good.Version)) good = ((float[])weights.Clone(), version, true);
            else if (version == computedOn && good.Weights is null) good = ((float[])weights.Clone(), version, false);
        }
        return UpdatePolicy.Divergence(what, _part!.Epoch, action.Round, _model, computedOn, action.Reports, good, _firstStepLoss, lossFiniteOnIt,
            $"Shard {_shard.Index}: ");
    }

    private void Broadcast(int round, int stamp)
    {
        var message = new ShardWeights(_shard.Index, _part!.Epoch, round, stamp, _model.Version, (float[])_model.Weights.Values.Clone(), _part.Part,
            _ledger!.EndRound);
        _sentRound = round;
        _sentVersion = _model.Version;
        _sentTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();
        // A redo replaces the results of its version and of any later one. Two versions are enough for this shard's last good
        // weights; a third lets it answer for the version before a round it stepped while another shard diverged on that round.
        _sent.RemoveAll(s => s.Version >= _model.Version);
        _sent.Add((_model.Version, message.Weights));
        if (_sent.Count > 3) _sent.RemoveAt(0);
        foreach (var receiver in _receivers)
            if (!receiver.IsNobody()) receiver.Tell(message, Self);
    }
}
