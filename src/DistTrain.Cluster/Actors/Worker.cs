using System.Diagnostics;
using System.Numerics.Tensors;
using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Core.Data;
using DistTrain.Core.Layers;
using DistTrain.Core.Losses;
using DistTrain.Core.Models;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// One data-parallel replica. Holds a copy of the model; on every <see cref="WeightsUpdated"/> it loads
/// the weights and, if it has minibatch <c>Round</c> of its shard, answers with the gradient of that
/// minibatch. It also scores a range of the test set on request.
/// </summary>
/// <remarks>
/// Replicas never initialize their own weights: they start from version 0 sent by the parameter server.
/// Messages that arrive ahead of what they depend on (weights of an epoch whose shard has not come yet,
/// an evaluation of a version not yet received) are stashed, so no ordering between senders is assumed.
/// <para>Given <see cref="ShardServers"/> (the shard mode, synchronous training only), the worker trains against K
/// parameter-server shards that run on their own (<see cref="ParameterShardActor"/> behind a <see cref="DataPlane.ShardDataPlane"/>)
/// instead of one parameter server: it opens one <see cref="DataPlane.ParameterServerLink.ForShard"/> per shard (its
/// children), puts each round's whole weights together from the K <see cref="ShardWeights"/> with a
/// <see cref="ShardedReplicaLink"/> (result of round r: the weights round r + 1 is computed on; the part's first round - 1: the
/// part's starting weights), computes its minibatch of the round as with one server and sends each shard its slice of the report
/// (under Cluster:Compression, its cut of the encoded gradient, <see cref="Core.Compression.GradientMessageSlice"/>).
/// A shard connection that cannot be opened (also one whose endpoint does not answer the TCP connect, TLS handshake and hello
/// within <see cref="DataPlane.DataPlaneListener.HandshakeTimeoutSeconds"/>), is refused or closes fails the worker with a
/// <see cref="ShardConnectionLostException"/> (an <see cref="IOException"/>) naming the shard, its endpoint and the reason (a worker
/// cannot take its slot at a shard again); one that closes once the worker holds the weights after its part's last round (the
/// shards stop with their owner at a run's end) fails only the next part's <see cref="AssignShard"/>. So its parent must
/// stop it on that exception (as <see cref="WorkerAgent"/>'s strategy does): restarted, as under Akka's default
/// supervision, it would dial the shards again and be refused in a loop. A cluster worker (given <see cref="ShardDialing"/>) enters
/// the shard mode when its run's parameter server sends it <see cref="ShardServersAssigned"/> (Cluster:ShardNodes), before any
/// weights. Without either, nothing of this exists and the worker is the one-server worker.</para>
/// </remarks>
public sealed class Worker : ReceiveActor, IWithStash
{
    private readonly int _workerIndex;
    private readonly LabeledDataset _test;
    private readonly LabeledDataset? _validation;
    private readonly int _evaluationBatchSize; // samples per evaluation pass: Training:EvaluationBatchSize within the memory budget
    private readonly Sequential _model;
    private readonly ILoss _loss;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly System.Diagnostics.TagList _metricTags = Metrics.DistTrainMetrics.Tags(NodeRoles.Worker);
    private readonly ReplicaTrainer _trainer;
    private readonly ReplicaSettings _settings;
    // Gradients are sent in loaned messages and arrays (see TrainingProtocol.cs): two, used in turn, so a
    // message is rewritten two rounds later, long after the parameter server has averaged it.
    private readonly GradientComputed[] _gradientMessages;
    private readonly GradientWireCodec? _codec; // Cluster:Compression
    private int _stashed;
    private int _nextGradientBuffer;
    // Evaluation has its own replica and buffers (batch Training:EvaluationBatchSize), so switching between
    // training and evaluation never reallocates: in steady state a worker allocates no large arrays.
    private readonly Lazy<(Sequential Model, MatrixBuffer Inputs, MatrixBuffer Targets, MatrixBuffer Sink, int[] Indices)> _evaluation;
    private AssignShard? _shard;
    private long _version = -1;
    private readonly float[] _weightsForEvaluation; // staging for copying the training replica into the evaluation replica
    private readonly string _sampleTraceDirectory;
    private Metrics.SampleTrace? _sampleTrace;
    // Shard mode (null without ShardServers): the shards' links (children, by shard index), the link that puts their results
    // together, the message the put-together weights are trained through (its array is the link's live vector), the epoch and
    // part whose results the link takes, and which shards have already sent a result of a later part.
    private ShardServers? _shardServers;
    private readonly ShardDialing? _shardDialing;   // a cluster worker: may be given shard nodes (ShardServersAssigned)
    private readonly ModelOptions _modelOptions;   // for the starting weights of a shard mode entered on a message
    private readonly int _seed;
    private readonly int _trainingSamples;          // for shards planned here from the coordinator's recipe (AssignShard.Resolve)
    private readonly ShardsAhead _shardsAhead = new();
    private IActorRef[] _shardLinks = [];
    private ShardedReplicaLink? _sharded;
    private WeightsUpdated? _assembled;
    private (int Epoch, int Part) _shardPart;
    private bool[] _movedOn = [];
    // A shard connection that closed once the worker held the last weights of its part: the run is ending (the shards' owner
    // stopped), or the next part will find the shard gone, and only then is it the worker's failure.
    private ShardConnectionLostException? _shardClosedBetweenParts;

    /// <summary>Creates the worker; see <see cref="Props"/>.</summary>
    /// <exception cref="ArgumentException">With <paramref name="shards"/>: a mode other than synchronous, or
    /// starting weights of another length than the model's; the message names the problem.</exception>
    public Worker(int workerIndex, ModelOptions model, LabeledDataset train, LabeledDataset test, int evaluationBatchSize,
        LabeledDataset? validation = null, int seed = 0, ReplicaSettings? settings = null, ShardServers? shards = null, ShardDialing? shardDialing = null)
    {
        _modelOptions = model;
        _seed = seed;
        _trainingSamples = train.Count;
        _shardDialing = shardDialing;
        _settings = settings ?? ReplicaSettings.Default;
        _workerIndex = workerIndex;
        _sampleTraceDirectory = _settings.SampleTraceDirectory;
        _test = test;
        _validation = validation;
        _model = ModelFactory.Build(model, dropoutSeed: workerIndex + 1);
        _evaluationBatchSize = EvaluationPassSize(evaluationBatchSize, _model.ForwardBytesPerSample);
        if (_evaluationBatchSize < evaluationBatchSize && workerIndex == 0)
            _log.Warning("Training:EvaluationBatchSize = {0} would hold {1:N0} MB of buffers ({2:N0} bytes per sample); evaluation runs in passes of {3} samples ({4} MiB).",
                evaluationBatchSize, evaluationBatchSize * _model.ForwardBytesPerSample / 1_000_000, _model.ForwardBytesPerSample, _evaluationBatchSize,
                EvaluationMemoryBytes / (1024 * 1024));
        _loss = ModelFactory.BuildLoss(model.Loss);
        var augmenter = _settings.Augmentation is { Enabled: true } augmentation
            ? new ImageAugmenter(augmentation, _model.InputShape, train.Normalization, seed)
            : null;
        _trainer = new ReplicaTrainer(_model, _loss, train, _settings, seed, augmenter);
        _gradientMessages = [.. Enumerable.Range(0, 2).Select(_ => new GradientComputed(0, 0, 0, workerIndex, 0, 0, new float[_trainer.Wire.ReportLength]))];
        _codec = _settings.Compression is { } compression && !_trainer.IsLocalSgd
            ? new GradientWireCodec(compression, _model.Layout, _settings.LocalGradient, workerIndex == 0 ? _settings.ClippedPushesToWarn : 0)
            : null;
        _evaluation = new(() => (EvaluationReplica(model), new MatrixBuffer(test.FeatureCount), new MatrixBuffer(test.ClassCount),
            new MatrixBuffer(test.ClassCount), new int[_evaluationBatchSize]));
        _weightsForEvaluation = new float[_model.Layout.TotalLength];
        Receive<AssignShard>(OnAssignShard);
        Receive<WeightsUpdated>(OnWeights);
        Receive<Evaluate>(OnEvaluate);
        Receive<GetWeights>(OnGetWeights);
        Receive<ShardServersAssigned>(OnShardServersAssigned);
        // Sent only by the shard mode's links, which exist only in the shard mode.
        Receive<ShardWeights>(OnShardWeights);
        Receive<DataPlane.ShardConnectionClosed>(OnShardConnectionClosed);
        Receive<Terminated>(OnShardLinkStopped);
        if (shards is not null)
        {
            if (ShardModeProblem(shards) is { } problem) throw new ArgumentException(problem, nameof(shards));
            _shardServers = shards;
        }
    }

    /// <summary>Why this worker cannot train against <paramref name="shards"/>, or null.</summary>
    private string? ShardModeProblem(ShardServers shards)
    {
        if (_settings.Mode != Core.Configuration.TrainingMode.Sync)
            return $"Worker {_workerIndex}: parameter-server shards that run on their own take synchronous training only, " +
                $"and Training:Mode is {_settings.Mode}: use Training:Mode = Sync, or one parameter server.";
        if (shards.StartingWeights.Layout.TotalLength != _model.Layout.TotalLength || shards.StartingWeights.Layout.WorkerReportLength != _model.Layout.WorkerReportLength)
            return $"Worker {_workerIndex}: the shards' starting weights hold {shards.StartingWeights.Layout.TotalLength} values " +
                $"({shards.StartingWeights.Layout.WorkerReportLength} reported), and this worker's model has {_model.Layout.TotalLength} " +
                $"({_model.Layout.WorkerReportLength}): give the starting weights of this model.";
        return null;
    }

    /// <summary>
    /// The shard nodes this cluster worker's run placed its shards on: taken once, with the job's proof for this run and worker
    /// slot, before the worker holds any weights; the worker then opens its shard links and trains in the shard mode. The frozen
    /// tensors come from this node's own starting weights (Model:Initializer, Training:Seed, Model:Pretrained), which must be the
    /// parameter server's (the message's digest).
    /// </summary>
    /// <exception cref="ShardModeRefusedException">This worker cannot train against shards (its mode), its starting
    /// weights are not the parameter server's, or Model:Pretrained cannot be loaded on this node; the worker stops, naming the
    /// problem, and its node reports it to the job.</exception>
    private void OnShardServersAssigned(ShardServersAssigned assigned)
    {
        string? ignored = null;
        if (_shardDialing is null) ignored = "this worker is not a cluster worker";
        else if (!assigned.IsGenuine(_shardDialing.Identity)) ignored = "the message does not carry the job's proof (another job's node, or a forgery)";
        else if (assigned.JobId != _shardDialing.JobId) ignored = $"it is for run {assigned.JobId}, and this worker belongs to run {_shardDialing.JobId}";
        else if (assigned.WorkerIndex != _workerIndex) ignored = $"it is for worker slot {assigned.WorkerIndex}";
        else if (_shardServers is not null) ignored = "the worker already trains against shards";
        else if (_version >= 0) ignored = $"the worker already holds the parameter server's weights (version {_version})";
        if (ignored is not null)
        {
            _log.Warning("Worker {0} ignored shard endpoints from {1}: {2}.", _workerIndex, Sender.Path, ignored);
            return;
        }
        Core.Tensors.ParameterVector starting;
        try
        {
            starting = ModelFactory.StartingWeights(ModelFactory.Build(_modelOptions), _modelOptions, _seed);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException or Core.Checkpoints.SafeTensorsFormatException)
        {
            throw new ShardModeRefusedException($"Worker {_workerIndex}: with shards on shard nodes a worker node builds the starting weights " +
                $"itself (the frozen tensors come from them), and Model:Pretrained cannot be loaded here: {e.Message}");
        }
        if (!ShardServersAssigned.DigestOf(starting).AsSpan().SequenceEqual(assigned.StartingDigest))
            throw new ShardModeRefusedException($"Worker {_workerIndex}: this node builds other starting weights than the parameter server " +
                "(Model:Initializer, Training:Seed or the Model:Pretrained file differ), and with shards on shard nodes a worker takes the frozen " +
                "tensors from its own: give every node the same settings and the same pretrained file.");
        var servers = new ShardServers(assigned.Endpoints, assigned.Token, starting, _shardDialing!.Certificates);
        if (ShardModeProblem(servers) is { } problem) throw new ShardModeRefusedException(problem);
        _shardServers = servers;
        StartShardLinks(servers);
        _log.Info("Worker {0} trains against {1} shard nodes: {2}.", _workerIndex, servers.Count, string.Join(", ", servers.Endpoints));
        UnstashAll();
    }

    /// <inheritdoc />
    public IStash Stash { get; set; } = null!;

    /// <summary>Most bytes an evaluation pass's buffers may hold on one replica: 256 MiB (<see cref="Sequential.EvaluationMemoryBytes"/>).</summary>
    public const long EvaluationMemoryBytes = Sequential.EvaluationMemoryBytes;

    /// <summary>
    /// Samples per evaluation forward pass: <paramref name="evaluationBatchSize"/> (Training:EvaluationBatchSize), or fewer
    /// so that <paramref name="bytesPerSample"/> (<see cref="Sequential.ForwardBytesPerSample"/>) times it stays within
    /// <see cref="EvaluationMemoryBytes"/>; at least 1 (<see cref="Sequential.EvaluationPassSize"/>).
    /// </summary>
    public static int EvaluationPassSize(int evaluationBatchSize, long bytesPerSample) =>
        Sequential.EvaluationPassSize(evaluationBatchSize, bytesPerSample);

    /// <inheritdoc />
    protected override void PreStart()
    {
        _sampleTrace = Metrics.SampleTrace.ForWorker(_sampleTraceDirectory, _workerIndex);
        if (_shardServers is { } servers) StartShardLinks(servers);
    }

    /// <summary>The shard mode's links (children, one per shard) and the link that puts their results together.</summary>
    private void StartShardLinks(ShardServers servers)
    {
        _shardLinks = [.. servers.Plan.Select(shard => Context.Watch(Context.ActorOf(DataPlane.ParameterServerLink.ForShard(servers.Endpoints[shard.Index].Host,
            servers.Endpoints[shard.Index].Port, _workerIndex, Self, shard, servers.Count, servers.WorkerToken, servers.Certificates, reportClosure: true, servers.ConnectTimeout),
            $"shard-{shard.Index}")))];
        _sharded = new ShardedReplicaLink(servers.StartingWeights, _shardLinks, _workerIndex);
        _assembled = new WeightsUpdated(0, 0, 0, _sharded.Weights);
        _movedOn = new bool[servers.Count];
    }

    /// <inheritdoc />
    /// <remarks>The shard mode's links stop on any failure of theirs (never restarted: a shard refuses a slot taken again), and
    /// the worker, which watches them, stops with it (<see cref="OnShardLinkStopped"/>).</remarks>
    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(_ => Directive.Stop); // its only children are those links

    /// <inheritdoc />
    protected override void PostStop()
    {
        _sampleTrace?.Dispose();
        // Weights stashed in place in a data-plane slot (waiting for their shard) go back to the parameter server, and with
        // them the lease that keeps the region mapped: a worker stopped after a failover must not keep the old one.
        foreach (var envelope in Stash.ClearStash())
            (envelope.Message as WeightsUpdated)?.ReleaseShared();
    }

    private static Sequential EvaluationReplica(ModelOptions options)
    {
        var replica = ModelFactory.Build(options);
        replica.SetTraining(false); // dropout off, BatchNorm on running statistics
        return replica;
    }

    /// <inheritdoc />
    protected override bool AroundReceive(Receive receive, object message)
    {
        var started = Stopwatch.GetTimestamp();
        var handled = base.AroundReceive(receive, message);
        Metrics.DistTrainMetrics.Handled(_metricTags, started);
        return handled;
    }

    /// <summary>
    /// Props of worker <paramref name="workerIndex"/>; the data sets are shared read-only within the process.
    /// <paramref name="validation"/> holds the samples held out of training, when the run has any. <paramref name="seed"/>
    /// (Training:Seed) seeds each training sample's dropout masks, from (seed, layer, epoch, sample index), and its
    /// augmentation (<see cref="ReplicaSettings.Augmentation"/>), from (seed, epoch, sample index): neither depends on the
    /// worker that holds the sample, and a resumed run draws them as the uninterrupted one did.
    /// <paramref name="settings"/> says what the worker does with a minibatch in the run's mode, and where it traces its
    /// minibatches' samples (null: synchronous, in one pass, no augmentation, no trace). <paramref name="shards"/> is the shard
    /// mode: the parameter-server shards the worker connects to and trains against (see the class remarks); null (the default):
    /// the worker answers whoever sends it <see cref="WeightsUpdated"/>, one parameter server. <paramref name="shardDialing"/>
    /// (a cluster worker's) lets the worker take <see cref="ShardServersAssigned"/> from its job and enter the shard mode then.
    /// </summary>
    /// <exception cref="ArgumentException">When the actor is created, as the constructor.</exception>
    public static Props Props(int workerIndex, ModelOptions model, LabeledDataset train, LabeledDataset test, int evaluationBatchSize,
        LabeledDataset? validation = null, int seed = 0, ReplicaSettings? settings = null, ShardServers? shards = null, ShardDialing? shardDialing = null) =>
        Akka.Actor.Props.Create(() => new Worker(workerIndex, model, train, test, evaluationBatchSize, validation, seed, settings, shards, shardDialing));

    /// <exception cref="ShardConnectionLostException">Shard mode: a shard's connection closed after the last part (the shard is
    /// gone, and this part cannot be trained).</exception>
    /// <exception cref="ShardRecipeException">The shard came as a recipe this worker cannot plan the coordinator's shards from.</exception>
    private void OnAssignShard(AssignShard shard)
    {
        if (_shardClosedBetweenParts is { } closed) throw closed;
        _shard = _shardsAhead.Resolve(shard, _trainingSamples);
        UnstashAll();
    }

    /// <summary>Shard mode: true once the worker holds the weights after its part's last round (nothing more is computed or
    /// awaited until the next part's shard comes).</summary>
    private bool ShardPartDone => _shard is { } shard && _sharded is { } sharded && _shardPart == (shard.Epoch, shard.Part)
        && sharded.AwaitedRound >= shard.FirstRound + shard.Rounds;

    /// <summary>Shard mode: a shard's connection is gone. Mid-part the worker stops with <paramref name="lost"/>; after the part's
    /// last round (a run that ends: the shards stop with their owner) it only remembers it, for the next part.</summary>
    private void ShardConnectionGone(ShardConnectionLostException lost)
    {
        if (!ShardPartDone) throw lost;
        if (_shardClosedBetweenParts is not null) return;
        _shardClosedBetweenParts = lost;
        _log.Info("{0} (after the part's last round: the run is ending, or the next part fails with this).", lost.Message.Split(". The worker stops", 2)[0]);
    }

    private void StashCurrent()
    {
        Stash.Stash();
        _stashed++;
    }

    private void UnstashAll()
    {
        if (_stashed == 0) return;
        _stashed = 0;
        Stash.UnstashAll();
    }

    private void OnWeights(WeightsUpdated update)
    {
        // Weights of a later epoch, or of a later part of this one (a lost worker's samples), wait for their shard.
        if (_shard is null || update.IsAfter(_shard))
        {
            StashCurrent();
            return;
        }
        try
        {
            Train(update, _shard);
        }
        finally
        {
            update.ReleaseShared(); // weights read in place from a data-plane slot: the parameter server may write it again
        }
    }

    /// <summary>
    /// Shard mode: one shard's result. Results of a part (an epoch's first, or a further part that trains the samples a lost worker
    /// left) whose shard (<see cref="AssignShard"/>) has not come yet wait for it; a result of a later part than the link's waits
    /// until every shard has sent one (each connection delivers in order, so then no result of the link's part is still on its
    /// way), and the link then starts the new part at that result's round, the round of the part's starting weights, which every
    /// shard sends first. A result of an earlier part than the link's is dropped. When the link puts a round's whole weights
    /// together, the worker trains on them as on one server's <see cref="WeightsUpdated"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The shards' results of one round carry different versions (<see cref="ShardedReplicaLink.Offer"/>).</exception>
    private void OnShardWeights(ShardWeights result)
    {
        if (_sharded is null) return; // only the shard mode's links send these
        var part = (result.Epoch, result.Part);
        if (part.CompareTo(_shardPart) < 0)
        {
            // A late result of a finished part (a round redone without a step as a lost worker's part ended) is nothing to train on.
            if (result.Epoch < _shardPart.Epoch)
                _log.Warning("Worker {0}: dropped shard {1}'s result of epoch {2} round {3}: the shards have all moved on to epoch {4}.", _workerIndex,
                    result.Shard, result.Epoch, result.Round, _shardPart.Epoch);
            return;
        }
        if (_shardPart.Epoch == 0)
        {
            _shardPart = part;
            _sharded!.StartPart(result.Round); // the first result of a run is its part's starting weights, as every shard sends first
        }
        else if (part.CompareTo(_shardPart) > 0)
        {
            _movedOn[result.Shard] = true;
            if (_movedOn.Any(moved => !moved))
            {
                StashCurrent();
                return;
            }
            Array.Clear(_movedOn);
            _shardPart = part;
            _sharded!.StartPart(result.Round); // this shard's first result of the part: its starting weights
            UnstashAll(); // the other shards' results of the new part, held back until now
        }
        if (_shard is null || part.CompareTo((_shard.Epoch, _shard.Part)) > 0)
        {
            StashCurrent();
            return;
        }
        if (!_sharded!.Offer(result)) return;
        // The link's vector now holds the weights of the round after the result's; with one server they would be its broadcast.
        // Its end: a part cut for every worker after a loss (Training:KeepGlobalBatch) trains none of its rounds from there.
        Train(_assembled!.Reuse(result.Epoch, _sharded.AwaitedRound, _sharded.Version, 0, -1, result.Part, _sharded.EndRound), _shard);
    }

    /// <exception cref="ShardConnectionLostException">Mid-part: the worker stops, naming the shard, its endpoint and the reason.</exception>
    private void OnShardConnectionClosed(DataPlane.ShardConnectionClosed closed)
    {
        if (_shardServers is not null) ShardConnectionGone(ShardLost(closed.Shard, closed.Reason));
    }

    /// <exception cref="ShardConnectionLostException">A shard's link stopped mid-part: the worker stops, naming the shard and its endpoint.</exception>
    private void OnShardLinkStopped(Terminated terminated)
    {
        var shard = Array.IndexOf(_shardLinks, terminated.ActorRef);
        if (shard >= 0) ShardConnectionGone(ShardLost(shard, "its link stopped (the line before this one in the log says why)"));
    }

    private ShardConnectionLostException ShardLost(int shard, string reason)
    {
        var servers = _shardServers!;
        var endpoint = shard >= 0 && shard < servers.Count ? servers.Endpoints[shard].ToString() : "an unknown endpoint";
        return new ShardConnectionLostException($"Worker {_workerIndex}: the data plane to shard {shard} of {servers.Count} at {endpoint} closed: {reason.TrimEnd('.')}. " +
            "The worker stops: without every shard's slice it can put no weights together, and a worker cannot take its slot at a shard again.", shard);
    }

    /// <summary>Sends a report: to every shard its slice (shard mode), else back to the sender of the weights (one parameter server).</summary>
    private void Reply(GradientComputed report)
    {
        if (_sharded is null)
        {
            Sender.Tell(report);
            return;
        }
        var bytes = _sharded.Send(report.Epoch, report.Round, report.Version, report.SampleCount, report.LossSum, report.Gradient, Self, report.Encoded);
        Metrics.DistTrainMetrics.RecordGradientBytes(bytes);
    }

    /// <summary>Loads the weights of <paramref name="update"/> and computes the report of its round of <paramref name="current"/>, if this worker has one.</summary>
    private void Train(WeightsUpdated update, AssignShard current)
    {
        if (update.Version < _version)
        {
            _log.Warning("Worker {0} ignored weights version {1}: it already holds version {2}.", _workerIndex, update.Version, _version);
            return;
        }
        var started = Stopwatch.GetTimestamp();
        var queueing = update.SentTimestamp > 0 ? Stopwatch.GetElapsedTime(update.SentTimestamp, started).TotalSeconds : 0;
        // Metrics are outside the measured step: with an exporter listening they may allocate, the step must not.
        if (update.SentTimestamp > 0 && Metrics.DistTrainMetrics.QueueingSeconds.Enabled)
            Metrics.DistTrainMetrics.QueueingSeconds.Record(queueing, _metricTags);
        var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        _model.LoadParameters(update.Values()[.._model.Layout.TotalLength]);
        _version = update.Version;
        var minibatch = update.Round - current.FirstRound;
        var shard = current.ShardIndices(update.Shard);
        var plan = current.MinibatchesOf(shard.Length);
        // Weights of an earlier part, or past the part's end (a part cut short when a worker was lost), are only loaded.
        if (update.IsTrainedWith(current) && minibatch >= 0 && minibatch < plan.Count)
        {
            var report = _trainer.IsLocalSgd ? LocalSteps(update, shard, plan, minibatch) : ComputeGradient(update, shard.AsSpan(plan.Start(minibatch), plan.Length(minibatch)));
            report.Measured(Stopwatch.GetElapsedTime(started).TotalSeconds, GC.GetAllocatedBytesForCurrentThread() - allocatedBefore, queueing);
            Reply(report);
        }
        UnstashAll();
    }

    /// <summary>The next loaned report message: reused two reports later, after the parameter server has combined it.</summary>
    private GradientComputed NextReport()
    {
        var message = _gradientMessages[_nextGradientBuffer];
        _nextGradientBuffer ^= 1;
        return message.InSlot(null);
    }

    private GradientComputed ComputeGradient(WeightsUpdated update, ReadOnlySpan<int> indices)
    {
        // A NaN or infinite loss is sent on like any other: the parameter server stops training, names every
        // worker and tensor affected, and keeps the last good weights, which only it holds.
        var message = NextReport();
        // Uncompressed through shared memory: the report is computed straight into the data-plane slot that carries it.
        var slot = _codec is null && _sharded is null ? (Sender as DataPlane.IGradientSlotLender)?.TryLend(message.Gradient.Length) : null;
        try
        {
            var lossSum = _trainer.ComputeGradient(indices, slot is null ? message.Gradient : slot.Values, update.Epoch);
            message.WithEncoded(Encode(message.Gradient, update));
            Metrics.DistTrainMetrics.RecordSamplesComputed(indices.Length);
            // With shards, Reply counts the bytes of the slices it sends.
            if (_sharded is null) Metrics.DistTrainMetrics.RecordGradientBytes(_codec?.WireBytes(message.Gradient.Length) ?? 4L * message.Gradient.Length);
            // Before sending: a gradient the parameter server applies always has its line, even if this node dies next.
            _sampleTrace?.Minibatch(update.Epoch, update.Round, update.Version, _workerIndex, indices);
            return message.InSlot(slot).Reuse(update.Epoch, update.Round, update.Version, indices.Length, lossSum);
        }
        catch
        {
            slot?.Abandon(); // never announced: the next report takes the slot again
            throw;
        }
    }

    /// <summary>Cluster:Compression's encoding of <paramref name="gradient"/>; null without compression.</summary>
    /// <exception cref="Core.Compression.GradientOverflowException">An element does not fit the encoding; the message names this worker's step.</exception>
    private byte[]? Encode(float[] gradient, WeightsUpdated update)
    {
        if (_codec is null) return null;
        // Gradients one step averages, for local clipping: the round's workers, or one in Async.
        var workersPerStep = _settings.Mode == Core.Configuration.TrainingMode.Async ? 1 : _shard!.ScalingWorkers;
        try
        {
            var encoded = _codec.Encode(gradient, update.Values(), workersPerStep);
            // Worker 0's alone (the others' codecs count nothing): the workers' gradients are alike, one line says it for all.
            if (_codec.TakeClippingWarning(_workerIndex) is { } clipping) _log.Warning("{0}", clipping);
            return encoded;
        }
        catch (Core.Compression.GradientOverflowException e)
        {
            // Fails this worker, and with it the job in single-node mode, with the cause instead of a divergence report.
            throw new Core.Compression.GradientOverflowException(
                // The worker's minibatch of the epoch, counted from 1 as steps are, and the round (from 0) the logs name.
                $"Worker {_workerIndex}, epoch {update.Epoch}, its minibatch {update.Round + 1} (round {update.Round}, weights version {update.Version}): {e.Message}", e.Index, e.Value, e);
        }
    }

    /// <summary>
    /// Local SGD: up to Training:LocalSteps optimizer steps on this replica from minibatch <paramref name="first"/> on (fewer
    /// where the shard ends), starting from the weights and optimizer state just received; the report is the model after them.
    /// </summary>
    private GradientComputed LocalSteps(WeightsUpdated update, int[] shard, MinibatchPlan plan, int first)
    {
        _trainer.LoadLocalState(update.Values(), update.Version);
        var steps = Math.Min(Math.Min(_settings.LocalSteps, plan.Count - first), update.EndRound - update.Round);
        var samples = 0;
        var lossSum = 0.0;
        for (var j = 0; j < steps; j++)
        {
            var indices = shard.AsSpan(plan.Start(first + j), plan.Length(first + j));
            var (loss, _) = _trainer.LocalStep(indices, update.Version + j, (update.Epoch, update.Round + j, _shard!.StepsPerEpoch), _shard.ScalingWorkers);
            _sampleTrace?.Minibatch(update.Epoch, update.Round + j, update.Version, _workerIndex, indices);
            lossSum += loss;
            samples += indices.Length;
        }
        var message = NextReport();
        _trainer.CopyLocalModel(message.Gradient);
        Metrics.DistTrainMetrics.RecordSamplesComputed(samples);
        return message.Reuse(update.Epoch, update.Round, update.Version, samples, lossSum);
    }

    /// <summary>Answers with a copy of the replica's weights and their version (-1 before any weights came). The trainable weights
    /// are those of the version; BatchNorm running statistics are the replica's own once it has run a minibatch forward on them.</summary>
    private void OnGetWeights(GetWeights _)
    {
        var weights = new float[_model.Layout.TotalLength];
        _model.CopyParametersTo(weights);
        Sender.Tell(new WeightsSnapshot(_version, weights));
    }

    private void OnEvaluate(Evaluate request)
    {
        if (_version < request.Version)
        {
            StashCurrent();
            return;
        }
        var data = request.Split == EvaluationSplit.Validation ? _validation : _test;
        if (data is null || request.Start < 0 || request.Count < 0 || (long)request.Start + request.Count > data.Count)
        {
            _log.Error("Worker {0} cannot score {1} samples [{2}, {3}): it holds {4}.", _workerIndex, request.Split, request.Start,
                (long)request.Start + request.Count, data is null ? "no such split" : $"{data.Count} samples");
            return;
        }
        var correct = 0;
        var scored = 0;
        var lossSum = 0.0;
        var (model, inputBuffer, targetBuffer, sinkBuffer, indexBuffer) = _evaluation.Value;
        // The training replica holds version _version (backward only writes gradients); copy it across.
        _model.CopyParametersTo(_weightsForEvaluation);
        model.LoadParameters(_weightsForEvaluation);
        // Balanced passes (sizes differing by at most one), so a range uses at most two batch sizes and their buffers.
        var passes = MinibatchPlan.Balanced(request.Count, Math.Max(1, (request.Count + _evaluationBatchSize - 1) / _evaluationBatchSize));
        for (var pass = 0; pass < passes.Count; pass++)
        {
            var start = request.Start + passes.Start(pass);
            var count = passes.Length(pass);
            var indices = indexBuffer.AsSpan(0, count);
            for (var i = 0; i < count; i++) indices[i] = start + i;
            var inputs = inputBuffer.Get(count);
            var targets = targetBuffer.Get(count);
            data.Gather(indices, inputs, targets);
            var output = model.Forward(inputs);
            lossSum += _loss.Compute(output, targets, sinkBuffer.Get(count)) * count;
            var logits = output.ColumnMajorValues();
            for (var column = 0; column < count; column++)
                if (TensorPrimitives.IndexOfMax(logits.AsSpan(column * output.RowCount, output.RowCount)) == data.Labels[start + column])
                    correct++;
            scored += count;
        }
        _log.Debug("Worker {0} scored {1} test samples at version {2}", _workerIndex, scored, _version);
        Sender.Tell(new EvaluationResult(_version, _workerIndex, request.Start, scored, correct, lossSum, request.Split));
    }
}

/// <summary>A shard-mode worker lost its data plane to a shard (it cannot put weights together without every shard's slice);
/// the message names the worker, the shard, its endpoint and the reason. A cluster worker's node reports it to the job
/// (<see cref="WorkerFailed"/>): with shards on shard nodes the job cannot go on without the worker or the shard, unless the worker
/// joined the running job and fails alone (the job host then counts it lost).</summary>
public sealed class ShardConnectionLostException(string message, int shard = -1) : IOException(message)
{
    /// <summary>The shard whose connection was lost, from 0; -1 when unknown.</summary>
    public int Shard { get; } = shard;
}

/// <summary>A cluster worker cannot train against the shard nodes its run placed (its starting weights differ from the parameter
/// server's, Model:Pretrained cannot be loaded on its node, or its mode); the message names the problem and the
/// fix. Its node reports it to the job (<see cref="WorkerFailed"/>), which ends with it, unless the worker joined the running job and fails
/// alone (the job host then counts it lost).</summary>
public sealed class ShardModeRefusedException(string message) : InvalidOperationException(message);
