using System.Diagnostics;
using System.Globalization;
using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Security;
using DistTrain.Cluster.Training;
using DistTrain.Core;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Diagnostics;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// What the parameter server of a run whose shards run on shard nodes (Cluster:ShardNodes) is given by the job host.
/// </summary>
/// <param name="Identity">The job's identity: it signs the hosting requests and the workers' <see cref="ShardServersAssigned"/>.</param>
/// <param name="JobId">The run's job id.</param>
/// <param name="Shards">Cluster:ParameterServerShards, K: one shard node per shard.</param>
/// <param name="StartingWeights">The run's starting weights (whole model): the hosts check their slices' digests, and a gathering of
/// the weights takes the frozen tensors from them.</param>
/// <param name="ServerSettings">The parameter server's <see cref="Hosting.ModelFingerprint.ServerSettingsOf"/>: every shard node's must
/// equal it.</param>
/// <param name="Workers">The run's workers when it starts (their links on this node), by worker slot: each is given the shard nodes
/// once they are placed. A worker that joins later is given them with the first part it is in (<see cref="StartEpoch.Workers"/>).</param>
/// <param name="Timeout">How long the search for K shard nodes may take, again how long their answers may take, how long the decision
/// about a lost worker may take, and the longest a gathering of the weights may go without a piece from any shard, positive:
/// the smaller of Cluster:JoinTimeoutSeconds and a third of Training:StallTimeoutSeconds (the coordinator counts the placement as
/// time without progress).</param>
/// <param name="MinWorkers">Cluster:MinWorkers: a lost worker that leaves fewer fails the job when every worker slot placed with the
/// shards is taken, since no worker could join it (the coordinator would otherwise pause, waiting for one); while one is free the
/// coordinator pauses for a worker to join, as with one parameter server.</param>
/// <param name="Checkpoints">Where to write a checkpoint at the end of every epoch and, with its <see cref="CheckpointSettings.EverySteps"/>
/// above 0, within epochs (Checkpoint:Directory, Checkpoint:EverySteps); null writes none.</param>
/// <param name="Optimizer">The parameter server's optimizer settings (<see cref="Core.Configuration.TrainingOptions.ParameterServerOptimizer"/>),
/// as the shards step with them: a checkpoint records their kind, state buffers and hyperparameters. Needed with
/// <paramref name="Checkpoints"/> and <paramref name="ResumeFrom"/>.</param>
/// <param name="ResumeFrom">The checkpoint a resumed run starts from, of an epoch's end or within an epoch, whose layout is the model's:
/// each shard is sent its slice of the weights and optimizer state before the first part, and the part that resumes it counts
/// the samples and loss its epoch trained before; null starts from <paramref name="StartingWeights"/>.</param>
/// <param name="WorkerSlots">The worker slots the shards are placed for, each with a data-plane token of its own: at least
/// <c>Workers.Count</c>, at most <see cref="UpdatePolicy.MaxWorkers"/>; null (the default): <see cref="WorkerSlotsFor"/>. The
/// slots beyond <c>Workers.Count</c> are for workers that join the running job (a restarted worker joins as a new one).</param>
/// <param name="ScalingWorkers">The workers of Optimizer:ScaleLearningRateByWorkers' rule, sent with every part's start
/// (<see cref="ShardPartStart.ScalingWorkers"/>): with Training:KeepGlobalBatch the first epoch's planned workers, as one parameter
/// server scales by them; 0 (the default) scales by the workers in each part.</param>
/// <param name="Monitoring">The gradient diagnostics (<see cref="Core.Configuration.TrainingOptions.ParameterServerMonitoring"/>): with
/// GradientNormEverySteps above 0 every shard measures its slices of the per-tensor norms on those steps, and this server judges the
/// whole tensors and serves them as metrics, as one parameter server does; null measures nothing.</param>
public sealed record RemoteShardSettings(JobIdentity Identity, string JobId, int Shards, ParameterVector StartingWeights, string ServerSettings,
    IReadOnlyList<IActorRef> Workers, TimeSpan Timeout, int MinWorkers = 1, CheckpointSettings? Checkpoints = null, OptimizerOptions? Optimizer = null,
    TrainingCheckpoint? ResumeFrom = null, int? WorkerSlots = null, MonitoringOptions? Monitoring = null, int ScalingWorkers = 0)
{
    /// <summary>The fewest slots kept for workers that join a running job on shard nodes: 8.</summary>
    public const int MinSpareWorkerSlots = 8;

    /// <summary>
    /// The worker slots a job on shard nodes that starts with <paramref name="startingWorkers"/> workers places its shards for:
    /// those workers' and as many again for workers that join later, at least <see cref="MinSpareWorkerSlots"/>, at most
    /// <see cref="UpdatePolicy.MaxWorkers"/> in all. A slot costs a shard node one idle link (no buffers until its worker
    /// connects), and the hosting request its 32-byte token. 3 workers: 11 slots; 20 workers: 40.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="startingWorkers"/> is not 1 to <see cref="UpdatePolicy.MaxWorkers"/>.</exception>
    public static int WorkerSlotsFor(int startingWorkers)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(startingWorkers, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(startingWorkers, UpdatePolicy.MaxWorkers);
        return Math.Min(UpdatePolicy.MaxWorkers, startingWorkers + Math.Max(MinSpareWorkerSlots, startingWorkers));
    }

    /// <summary>The worker slots the shards are placed for: <see cref="WorkerSlots"/>, or <see cref="WorkerSlotsFor"/> of <c>Workers.Count</c>.</summary>
    public int Slots => WorkerSlots ?? WorkerSlotsFor(Workers.Count);
}

/// <summary>
/// The parameter server of a run whose K shards run on shard nodes (Cluster:ShardNodes; docs/architecture.md, "Where the shards
/// run"). To the coordinator it is one parameter server (<see cref="StartEpoch"/>, <see cref="WorkerLost"/>, <see cref="GetWeights"/>
/// and a worker's lost shard connection, <see cref="WorkerFailed"/> with <see cref="WorkerFailed.LostShard"/>, in; <see cref="RoundApplied"/>, <see cref="EpochCompleted"/>, <see cref="WeightsSnapshot"/> and, with
/// checkpoints, <see cref="CheckpointSaved"/> out),
/// but it holds no weights and steps nothing: it finds K shard nodes (<see cref="ShardNodeFinder"/>), places one shard on each
/// (<see cref="ShardPlacement"/>; it is the shards' owner), gives every worker the shard nodes' data planes
/// (<see cref="ShardServersAssigned"/>, through the worker's link), starts each part at every shard (<see cref="ShardPartStart"/>),
/// merges the shards' <see cref="ShardRoundApplied"/> into one step report per round (<see cref="ShardRoundMerge"/>) and gathers
/// the whole weights from the shards when asked (<see cref="ShardWeightsGather"/>). The coordinator's <see cref="RoundApplied"/>,
/// returned as to a parameter server, is dropped (these are not pooled). The workers send their slices to the shards and take
/// the weights from them directly; nothing of a round passes through here.
/// </summary>
/// <remarks>
/// <para>Until the shards are placed, every message from the coordinator waits. No K shard nodes within
/// <see cref="RemoteShardSettings.Timeout"/>, a refusal, no answers within it again, a gathering of the weights (or of an epoch end's
/// checkpoint; one within a part holds nothing up, and has no time-out) to which no shard sends a piece for that long, a shard node that fails or leaves, the
/// shards' reports disagreeing, and a lost worker that leaves fewer than <see cref="RemoteShardSettings.MinWorkers"/> with no
/// worker slot free (<see cref="RemoteShardSettings.Slots"/>) each fail this actor with <see cref="ShardNodesException"/>, whose message names the problem and the fix, so the coordinator ends the
/// job with it. A shard that diverges fails it with the shard's <see cref="TrainingDivergedException"/> instead, carrying the last good
/// weights put together from the shards (<see cref="LastGoodTimeout"/>). Any other lost worker is covered: during a part, the part's <see cref="ShardLossArbiter"/> (a child, made
/// anew for each part) decides with every shard which of its slices count, this actor tells the coordinator the first round
/// whose minibatch is left (<see cref="WorkerRemoved"/>, before the part's end, which waits for every decision, each for up to
/// <see cref="RemoteShardSettings.Timeout"/>), and the coordinator gives those samples to the others in a further part of the
/// epoch (<see cref="StartEpoch.FirstRound"/> above 0); between parts (during an evaluation) the coordinator plans the next part
/// without it. The others keep their minibatches in the part of the loss, unless Training:KeepGlobalBatch cuts it for every worker
/// after the decision's round (<see cref="LossDecision.ApplyTo"/>), as one parameter server cuts it after its open round. A failing loss waits a grace of 2 s (a worker's 3 s), in which a
/// stop (<see cref="StopStepping"/>) makes it the stop's: stopping the whole cluster stops the shard nodes and workers too,
/// and the job then ends cancelled, not failed.</para>
/// <para>The shards are placed for more worker slots than the run starts with (<see cref="RemoteShardSettings.WorkerSlotsFor"/>), each
/// with its own token at every shard: a worker that joins the running job (a new one, or a lost one restarted, which joins as a new
/// worker) takes the slot of its index, and is given the shard nodes with the first part it is in. A worker that would join beyond the slots is
/// refused by the job host at its registration, naming the slots and the fix.</para>
/// <para>A part with no minibatch (a resumed run that first scores its checkpoint's weights: every epoch was trained, or early
/// stopping's record asks for the resumed epoch's score) only hands out the weights: every shard broadcasts its slice and reports
/// the part's end, and its <see cref="EpochCompleted"/> (no samples) comes without a checkpoint.</para>
/// <para>A stop (<see cref="StopStepping"/>) does not stop the shards mid-part: the shards step on while the workers finish their
/// round, and a gathering of the weights that finds the shards at different versions (one has stepped, another not yet) is asked
/// again every 50 ms, for up to 10 s, so every <see cref="GetWeights"/> is answered once.</para>
/// </remarks>
public sealed class RemoteShardedParameterServer : ReceiveActor, IWithStash, IWithTimers
{
    private sealed record PlacementTimedOut;

    private sealed record GatherTimedOut(int RequestId);

    /// <summary>How soon a gathering that found the shards at different versions is asked again: 50 ms, up to <see cref="GatherRetries"/> times.</summary>
    private static readonly TimeSpan GatherRetryDelay = TimeSpan.FromMilliseconds(50);

    private const int GatherRetries = 200;

    /// <summary>The name of the timer that bounds an epoch end's checkpoint gathering (the weights' gathering has its own).</summary>
    private const string CheckpointGatherTimer = "checkpoint-gather-timed-out";

    private sealed record GatherAgain;

    /// <summary>The last good weights' slices did not all come within <see cref="LastGoodTimeout"/> of a shard's divergence.</summary>
    private sealed record LastGoodTimedOut;

    /// <summary>How long the last good weights' slices may take to come after a shard diverged: 1.5 s, within the
    /// <see cref="LossGrace"/> for which the job host holds the workers' reports of the diverged shard's closed connection, so the
    /// divergence, not those, ends the job.</summary>
    internal static readonly TimeSpan LastGoodTimeout = TimeSpan.FromSeconds(1.5);

    private sealed record FailNow;

    /// <summary>The decision about a worker lost in a part did not come within <see cref="RemoteShardSettings.Timeout"/>.</summary>
    private sealed record DecisionTimedOut(int Worker, (int Epoch, int Part) Part);

    /// <summary>How long a loss (a worker's, a shard node's) waits before it fails the job: 2 s, in which a stop of the whole
    /// cluster (Ctrl-C to every node, whose shard nodes and workers leave first) reaches this node and makes it the stop's.</summary>
    internal static readonly TimeSpan LossGrace = TimeSpan.FromSeconds(2);

    /// <summary>The grace of a worker's loss: 1 s longer than <see cref="LossGrace"/>, for which the job host holds a worker's own report of
    /// its failure (naming a lost shard, or the settings to align), so that the worker's reason, not this generic one, ends the job.</summary>
    private static readonly TimeSpan WorkerLossGrace = LossGrace + TimeSpan.FromSeconds(1);

    private readonly RemoteShardSettings _settings;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private ShardPlacement? _placement;
    private IActorRef[] _shards = [];
    private ShardRoundMerge? _merge;
    private IActorRef _coordinator = ActorRefs.Nobody;
    private int _partSamples;
    private double _partLoss;
    private long _roundStarted;
    private bool _stopping;
    private ShardWeightsGather? _gather;
    private IActorRef? _gatherFor;
    private int _nextRequest;
    private int _gatherAttempts;
    private bool _partRunning;
    private readonly HashSet<int> _lost = [];
    private bool[] _taken = [];                      // by worker slot: its worker was given the shard nodes (ShardServersAssigned), or was lost
    private IActorRef _arbiter = ActorRefs.Nobody;   // the running part's ShardLossArbiter (a child), which decides its lost workers
    private int _arbiters;                           // arbiters made so far, for unique names
    private (int Epoch, int Part) _part;             // the running (or last) part: its epoch, and its index within the epoch
    private int[] _partEnds = [];                    // by worker slot: the round after its last minibatch in the running part (0: none)
    private bool[] _inPart = [];                     // by worker slot: it has a worker in the running part
    private readonly HashSet<int> _undecided = [];   // workers lost in the running part whose decision has not come back yet
    private bool _partLeftSamples;                   // a worker lost in the running part left minibatches: a further part of the epoch follows
    private bool _partKeepsGlobalBatch;              // the running part's StartEpoch.KeepGlobalBatch: a loss cuts it for every worker
    private ShardRoundApplied? _heldPartEnd;         // the part's end, held until every loss in it is decided
    private ShardNodesException? _pendingFailure;
    private int _pendingFailureShard = -1;       // the shard whose loss _pendingFailure is, or -1 (another failure)
    private bool _pendingWorkerLoss;             // _pendingFailure is a lost worker's, which a shard's loss replaces
    private string? _stopDivergence;             // a shard's divergence during a stop, which the stop's gathering cannot get past
    private bool _partTrainsNothing; // the running part has no minibatch: it only hands out the weights, and writes no checkpoint
    private int _partSlots;                      // the running part's worker slots, present or not: a checkpoint records them
    private ShardWeightsGather? _checkpointGather; // an epoch end's weights and optimizer state, being gathered for its checkpoint
    private int _checkpointEpoch;                // the epoch that gathering's checkpoint starts (the one after the epoch that ended)
    private EpochCompleted? _heldEpochEnd;       // the epoch's end, told the coordinator once its checkpoint is written
    private long _checkpointStarted;             // Stopwatch timestamp of the checkpoint's request to the shards
    private string? _newestCheckpoint;           // the newest checkpoint's position, "epoch 3's end" or "epoch 4 round 200" (the resumed one's, at first)
    private TrainingCheckpoint? _resumeFrom;     // the checkpoint resumed from, until the part it resumes starts
    private int _partCheckpointEvery;            // the running part's Checkpoint:EverySteps (0: no checkpoint within it, as after a lost worker)
    private int _partCheckpointRequest;          // the request number the shards' checkpoint slices of the running part carry
    private readonly Dictionary<long, ShardWeightsGather> _partCheckpoints = []; // checkpoints within the running part being gathered, by version
    private readonly Dictionary<long, (int NextRound, int Samples, double LossSum)> _partRounds = []; // by version: the position after each round of the part
    private readonly string[] _stateNames;       // the shards' optimizer state buffers, in its order (none without the optimizer settings)
    private System.Diagnostics.TagList[] _shardTags = [];
    private readonly GradientHealthMonitor? _health;  // the whole tensors' diagnostics, from the shards' slices of the norms
    private readonly ShardHealthMerge? _healthParts;  // the shards' slices of each measured step, until every shard's has come
    private ShardFailed? _divergence;            // the first shard's divergence, which the job fails with
    private ShardWeightsGather? _lastGoodGather; // after it: the last good weights, put together from every shard's slice

    /// <summary>Creates the server; see <see cref="Props"/>.</summary>
    public RemoteShardedParameterServer(RemoteShardSettings settings)
    {
        _settings = settings;
        _stateNames = settings.Optimizer is { } optimizer ? [.. Optimizer.Create(optimizer, 1).State.Select(s => s.Name)] : [];
        _resumeFrom = settings.ResumeFrom;
        _newestCheckpoint = settings.ResumeFrom is { } resumed ? Position(resumed.Epoch, resumed.Round) : null;
        if (settings.Monitoring is { GradientNormEverySteps: > 0 } monitoring)
        {
            var layout = settings.StartingWeights.Layout;
            _health = new GradientHealthMonitor(layout, monitoring, settings.Optimizer?.GradientClipNorm ?? 0);
            Metrics.DistTrainMetrics.WatchLayerHealth(_health.Latest);
            _healthParts = new ShardHealthMerge(layout, settings.Shards);
        }
        Become(Finding);
    }

    /// <inheritdoc />
    public IStash Stash { get; set; } = null!;

    /// <inheritdoc />
    public ITimerScheduler Timers { get; set; } = null!;

    /// <summary>Props of the server.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="settings"/> or one of its references is null.</exception>
    /// <exception cref="ArgumentException">No worker, a shard count outside 1 to <see cref="ParameterShards.MaxShards"/>, worker
    /// slots fewer than the workers or more than <see cref="UpdatePolicy.MaxWorkers"/>, a time-out that is not positive, or checkpoints
    /// without the optimizer settings.</exception>
    public static Props Props(RemoteShardSettings settings)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(settings.Identity);
        ArgumentNullException.ThrowIfNull(settings.StartingWeights);
        ArgumentNullException.ThrowIfNull(settings.Workers);
        if (settings.Workers.Count is 0 or > UpdatePolicy.MaxWorkers)
            throw new ArgumentException($"A run has 1 to {UpdatePolicy.MaxWorkers} worker slots; {settings.Workers.Count} were given.", nameof(settings));
        if (settings.Shards is < 1 or > ParameterShards.MaxShards)
            throw new ArgumentException($"A run places 1 to {ParameterShards.MaxShards} shards; {settings.Shards} were given.", nameof(settings));
        if (settings.WorkerSlots is { } slots && (slots < settings.Workers.Count || slots > UpdatePolicy.MaxWorkers))
            throw new ArgumentException($"The shards are placed for {slots} worker slots, fewer than the {settings.Workers.Count} workers the run starts with or " +
                $"more than {UpdatePolicy.MaxWorkers}.", nameof(settings));
        if (settings.Timeout <= TimeSpan.Zero) throw new ArgumentException("The search for shard nodes needs a positive time-out.", nameof(settings));
        if ((settings.Checkpoints ?? (object?)settings.ResumeFrom) is not null && settings.Optimizer is null)
            throw new ArgumentException("A run on shard nodes that writes or resumes from checkpoints needs the parameter server's optimizer settings.", nameof(settings));
        return Akka.Actor.Props.Create(() => new RemoteShardedParameterServer(settings));
    }

    /// <inheritdoc />
    protected override void PreStart()
    {
        _log.Info("Parameter server: looking for {0} (Cluster:ShardNodes), up to {1:F0} s", Counts.Of(_settings.Shards, "shard node"),
            _settings.Timeout.TotalSeconds);
        Context.ActorOf(ShardNodeFinder.Props(_settings.Shards, _settings.Timeout), "shard-node-finder");
    }

    private void Finding()
    {
        Receive<ShardNodeFinder.Found>(found => Place(found.Hosts));
        Receive<ShardNodeFinder.NotFound>(notFound => throw new ShardNodesException(notFound.Reason));
        ReceiveAny(_ => Stash.Stash());
    }

    private void Place(IReadOnlyList<IActorRef> hosts)
    {
        _placement = new ShardPlacement(_settings.Identity, Context.System, Self, _settings.JobId, hosts, _settings.Slots,
            _settings.StartingWeights, _settings.ServerSettings);
        for (var k = 0; k < hosts.Count; k++) hosts[k].Tell(_placement.Requests[k], Self);
        Timers.StartSingleTimer(nameof(PlacementTimedOut), new PlacementTimedOut(), _settings.Timeout);
        Become(Placing);
    }

    private void Placing()
    {
        Receive<ShardHosted>(TakeAnswer);
        Receive<ShardHostRefused>(TakeAnswer);
        Receive<ShardFailed>(TakeAnswer);
        Receive<PlacementTimedOut>(_ => throw new ShardNodesException(string.Format(CultureInfo.InvariantCulture,
            "The shard nodes did not all answer within {0:F0} s (the smaller of Cluster:JoinTimeoutSeconds and a third of Training:StallTimeoutSeconds): no answer from {1}. Check that those nodes run, reach this " +
            "node, and run the same DistTrain version.", _settings.Timeout.TotalSeconds, string.Join(", ", _placement!.Missing))));
        ReceiveAny(_ => Stash.Stash());
    }

    private void TakeAnswer(object answer)
    {
        var placement = _placement!;
        if (placement.Take(Sender, answer) is { } ignored)
        {
            _log.Warning("Parameter server: {0}", ignored);
            return;
        }
        if (placement.Failure is { } failure) throw new ShardNodesException(failure);
        if (!placement.Placed) return;
        Timers.Cancel(nameof(PlacementTimedOut));
        _shards = placement.Shards;
        foreach (var shard in _shards) Context.Watch(shard);
        _merge = new ShardRoundMerge(_shards);
        _shardTags = [.. Enumerable.Range(0, _shards.Length).Select(k => new System.Diagnostics.TagList
            { { "shard", k.ToString(CultureInfo.InvariantCulture) }, { "node", Metrics.DistTrainMetrics.Node } })];
        if (_settings.ResumeFrom is { } checkpoint) SendCheckpointSlices(checkpoint);
        var endpoints = placement.ServersFor(0, null).Endpoints;
        _taken = new bool[placement.WorkerSlots];
        for (var w = 0; w < _settings.Workers.Count; w++) AssignShardServers(w, _settings.Workers[w]);
        _log.Info("Parameter server: {0} placed on {1}; {2} for workers that join", Counts.Of(_shards.Length, "shard"), string.Join(", ", endpoints.Select((e, k) =>
            $"shard {k} at {placement.Hosts[k].Path.Address} (data plane {e})")), Counts.Of(placement.WorkerSlots - _settings.Workers.Count, "worker slot"));
        Become(Running);
        Stash.UnstashAll();
    }

    /// <summary>How to go on after the loss of a shard (<see cref="RestartAdviceFor"/>).</summary>
    private string RestartAdvice => RestartAdviceFor(_settings.Checkpoints is not null, _newestCheckpoint, _settings.Shards);

    /// <summary>A checkpoint's position as the restart advice names it: "epoch 3's end" for round 0 of epoch 4, else "epoch 4 round 200".</summary>
    private static string Position(int epoch, int round) => round == 0
        ? $"epoch {(epoch - 1).ToString(CultureInfo.InvariantCulture)}'s end"
        : $"epoch {epoch.ToString(CultureInfo.InvariantCulture)} round {round.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>
    /// How to go on after the loss of a shard: start the job again, from the newest checkpoint when there is one
    /// (Checkpoint:Resume), else from the start.
    /// </summary>
    /// <param name="writesCheckpoints">The run writes checkpoints (Checkpoint:Directory).</param>
    /// <param name="newestCheckpoint">The newest checkpoint's position ("epoch 3's end", "epoch 4 round 200"; a resumed run's, until it
    /// writes one), or null: none.</param>
    /// <param name="shards">Cluster:ParameterServerShards: the shard nodes a resume needs.</param>
    internal static string RestartAdviceFor(bool writesCheckpoints, string? newestCheckpoint, int shards) => !writesCheckpoints
        ? "restart the job (it starts from the beginning: this run writes no checkpoints; with Checkpoint:Directory set, a run can be resumed)."
        : newestCheckpoint is not null
            ? $"start it again with Checkpoint:Resume = true and {Counts.Of(shards, "shard node")} up: it resumes from the checkpoint of " +
              $"{newestCheckpoint} in Checkpoint:Directory."
            : "restart the job (it starts from the beginning: no checkpoint was written yet).";

    /// <summary>Gives worker slot <paramref name="slot"/>'s worker (its link on this node) the shard nodes' endpoints and the slot's own
    /// token, signed (<see cref="ShardServersAssigned"/>).</summary>
    private void AssignShardServers(int slot, IActorRef worker)
    {
        var placement = _placement!;
        var servers = placement.ServersFor(slot, null);
        worker.Tell(ShardServersAssigned.Signed(_settings.Identity, _settings.JobId, slot, servers.Endpoints, servers.WorkerToken, _settings.StartingWeights), Self);
        _taken[slot] = true;
    }

    /// <summary>The worker slots placed with the shards that no worker has taken yet: what workers that join can still take.</summary>
    private int FreeSlots => _taken.Count(taken => !taken);

    private void Running()
    {
        Receive<StartEpoch>(OnStartEpoch);
        Receive<ShardRoundApplied>(OnRoundApplied);
        Receive<RoundApplied>(_ => { }); // the coordinator returns each report; these are not pooled
        Receive<WorkerLost>(OnWorkerLost);
        Receive<ShardLossDecided>(OnLossDecided);
        Receive<DecisionTimedOut>(timedOut => _undecided.Contains(timedOut.Worker) && timedOut.Part == _part,
            timedOut => FailSoon(new ShardNodesException(string.Format(CultureInfo.InvariantCulture, "Worker {0} was lost in epoch {1}, and the shard " +
                "nodes did not all answer the question which of its slices count within {2:F0} s (the smaller of Cluster:JoinTimeoutSeconds and a third " +
                "of Training:StallTimeoutSeconds): a shard node is overloaded, cut off, or missed the part's start (its log says so). Restart the job.",
                timedOut.Worker, timedOut.Part.Epoch, _settings.Timeout.TotalSeconds)), workerLoss: true));
        Receive<DecisionTimedOut>(_ => { });
        Receive<StopStepping>(_ =>
        {
            _stopping = true;
            if (_pendingFailure is { } pending)
                _log.Info("Parameter server: the job is stopping, so this ends with the stop: {0}", pending.Message);
            _pendingFailure = null;
            _log.Info("Parameter server: the stop's weights are gathered from the shard nodes once every shard is at one version.");
        });
        Receive<FailNow>(_ => _pendingFailure is not null, _ => throw _pendingFailure!);
        Receive<FailNow>(_ => { });
        Receive<GetWeights>(_ => _gatherFor is not null, _ => Stash.Stash());
        Receive<GetWeights>(_ =>
        {
            _gatherFor = Sender;
            _gatherAttempts = 0;
            StartGather();
        });
        Receive<GatherAgain>(_ => _gatherFor is not null, _ => StartGather());
        Receive<ShardSliceChunk>(OnSliceChunk);
        Receive<GatherTimedOut>(_ => _divergence is not null, _ => { }); // the divergence ends the job, with or without the last good weights
        Receive<GatherTimedOut>(timedOut => timedOut.RequestId == _gather?.RequestId, _ => throw GatherStalled(_gather!, "weights"));
        Receive<GatherTimedOut>(timedOut => timedOut.RequestId == _checkpointGather?.RequestId, _ => throw GatherStalled(_checkpointGather!,
            $"weights and optimizer state that epoch {_checkpointEpoch - 1}'s checkpoint needs"));
        Receive<GatherTimedOut>(_ => { });
        Receive<ShardFailed>(OnShardFailed);
        Receive<ShardHealthSquares>(OnHealthSquares);
        Receive<LastGoodTimedOut>(_ => _lastGoodGather is not null, _ => FailDiverged(null, string.Format(CultureInfo.InvariantCulture,
            "the slices of {0} did not come within {1:0.#} s", string.Join(", ", _lastGoodGather!.Waiting.Select(k => $"shard {k}")), LastGoodTimeout.TotalSeconds)));
        Receive<ShardHosted>(_ => { }); // a host's repeated answer
        Receive<ShardHostRefused>(refused => _log.Warning("Parameter server: a refusal of shard {0} came from {1} after the shards were placed; ignored.",
            refused.Shard, Sender.Path));
        Receive<WorkerFailed>(OnShardConnectionLost);
        Receive<Terminated>(terminated =>
        {
            var k = Array.IndexOf(_shards, terminated.ActorRef);
            if (k < 0) return;
            FailSoon(ShardLost(k, $"Shard {k} of {_shards.Length} is gone: its shard node {terminated.ActorRef.Path.Address} left, crashed or was downed"), shard: k);
        });
    }

    /// <summary>
    /// A worker lost its connection to a shard (<see cref="WorkerFailed.LostShard"/>; the job host held the report for
    /// <see cref="LossGrace"/>): the job fails with that shard's loss and how to go on, as when the shard's node is seen gone. The
    /// first loss is the one reported, and a divergence or a stop wins (<see cref="FailSoon"/>).
    /// </summary>
    private void OnShardConnectionLost(WorkerFailed failed)
    {
        var k = failed.LostShard;
        if (k < 0 || k >= _shards.Length)
        {
            FailSoon(new ShardNodesException(failed.Reason), TimeSpan.Zero);
            return;
        }
        var reason = failed.Reason.Split(". The worker stops", 2)[0].TrimEnd('.');
        FailSoon(ShardLost(k, $"Shard {k} of {_shards.Length} cannot be reached: {reason}. Its shard node " +
            $"{_placement!.Hosts[k].Path.Address} may have left, crashed or been cut off"), TimeSpan.Zero, shard: k);
    }

    /// <summary>The run's failure for the loss of shard <paramref name="k"/> (<paramref name="loss"/>, one sentence without its full
    /// stop), with why the run cannot go on and how to go on.</summary>
    private ShardNodesException ShardLost(int k, string loss) => new(loss + ". A run whose shards run on shard nodes cannot go on without one " +
        "(a shard holds its slice of the weights and optimizer state); " + RestartAdvice, k, loss + ".", _newestCheckpoint);

    /// <summary>
    /// Fails the job with <paramref name="failure"/> after <paramref name="grace"/> (<see cref="LossGrace"/> by default), unless a stop
    /// comes first: a loss during a stop of the whole cluster is the stop's (the job then ends cancelled, not failed). The first
    /// loss is the one reported, but for a lost worker's (<paramref name="workerLoss"/>), which a shard's loss replaces: the workers
    /// of a shard node that is gone stop, and their losses are its consequence. <paramref name="shard"/> names the shard whose loss
    /// it is, if it is one.
    /// </summary>
    private void FailSoon(ShardNodesException failure, TimeSpan? grace = null, int shard = -1, bool workerLoss = false)
    {
        if (_stopping)
        {
            _log.Info("Parameter server: the job is stopping, so this ends with the stop: {0}", failure.Message);
            return;
        }
        if (_divergence is not null) return; // the divergence ends the job (its shard's node is gone by now, as planned)
        if (_pendingFailure is not null && !(_pendingWorkerLoss && shard >= 0)) return;
        (_pendingFailure, _pendingFailureShard, _pendingWorkerLoss) = (failure, shard, workerLoss);
        Timers.StartSingleTimer(nameof(FailNow), new FailNow(), grace ?? LossGrace);
    }

    private void OnStartEpoch(StartEpoch start)
    {
        _coordinator = Sender;
        var slots = _placement!.WorkerSlots;
        for (var w = slots; w < start.Workers.Length; w++)
            if (!start.Workers[w].IsNobody())
                throw new ShardNodesException($"Worker {w} joined the running job, and the shards were placed for {slots} worker slots (0 to {slots - 1}): " +
                    "its worker would get no shard nodes. The job host adds no worker beyond the slots, so this is a fault in DistTrain; " + RestartAdvice);
        // A worker that joined the running job (a restarted one joins as a new worker) is given the shard nodes with its first part: it
        // connects to each shard's data plane with its slot's token, and each shard sends it the part's starting weights once it has.
        for (var w = 0; w < Math.Min(slots, start.Workers.Length); w++)
        {
            if (start.Workers[w].IsNobody() || _taken[w]) continue;
            AssignShardServers(w, start.Workers[w]);
            _log.Info("Parameter server: worker {0} joined; it is given the shard nodes for its first part (epoch {1}); {2} left for workers that join.",
                w, start.Epoch, Counts.Of(FreeSlots, "worker slot"));
        }
        var inPart = new bool[slots];
        var rounds = new int[slots];
        for (var w = 0; w < Math.Min(slots, start.Workers.Length); w++)
        {
            inPart[w] = !start.Workers[w].IsNobody();
            rounds[w] = inPart[w] ? start.BatchesPerWorker[w] : 0;
        }
        _partSamples = 0;
        _partLoss = 0;
        if (_resumeFrom is { } resumed && resumed.Epoch == start.Epoch && resumed.Round == start.FirstRound)
        {
            // The rounds before the checkpoint ran before the interruption: their samples and loss count in this epoch, as one
            // parameter server counts them (UpdatePolicy.Start).
            _partSamples = resumed.EpochSamples;
            _partLoss = resumed.EpochLossSum;
        }
        _resumeFrom = null;
        _partRunning = true;
        _partSlots = start.Workers.Length;
        _part = (start.Epoch, start.Part);
        _partEnds = (int[])rounds.Clone(); // a loss's decision changes them (LossDecision.ApplyTo), as every shard's ledger changes its own
        _partKeepsGlobalBatch = start.KeepGlobalBatch;
        _inPart = inPart;
        _partLeftSamples = false;
        // A part with no minibatch only hands out the weights (a resumed run that first scores its checkpoint's, or early
        // stopping's record asking for the resumed epoch's score): each shard broadcasts its slice and reports the part's end.
        _partTrainsNothing = start.BatchesPerWorker.All(batches => batches <= start.FirstRound);
        // Checkpoints within the part only where a resume from one continues exactly, as one parameter server writes them: in an
        // epoch's first part planned over all the job's workers (StartEpoch.MidEpochResumable), until a worker is lost in it.
        _partCheckpointEvery = _settings.Checkpoints is { EverySteps: > 0 } every && start.MidEpochResumable && !_partTrainsNothing && !_stopping
            ? every.EverySteps : 0;
        _partCheckpointRequest = _nextRequest++;
        _partCheckpoints.Clear();
        _partRounds.Clear();
        _undecided.Clear();
        _heldPartEnd = null;
        _roundStarted = Stopwatch.GetTimestamp();
        // Each part has an arbiter of its own: its questions and decisions name the part, and the shards take them only from it.
        if (!_arbiter.IsNobody()) Context.Stop(_arbiter);
        _arbiter = Context.ActorOf(ShardLossArbiter.Props(_shards, slots, start.Epoch, start.Part, Self), $"loss-arbiter-{_arbiters++}");
        for (var k = 0; k < _shards.Length; k++)
            _shards[k].Tell(_placement!.PartStart(k, start.Epoch, inPart, rounds, start.StepsPerEpoch, _arbiter, start.Part, start.FirstRound)
                with { CheckpointEverySteps = _partCheckpointEvery, CheckpointRequestId = _partCheckpointRequest, ScalingWorkers = _settings.ScalingWorkers,
                    GradientNormEverySteps = _health is null ? 0 : _settings.Monitoring!.GradientNormEverySteps, KeepGlobalBatch = start.KeepGlobalBatch }, Self);
    }

    /// <summary>
    /// A worker is lost. During a part its arbiter asks every shard and decides whether the worker's slice of the open round counts
    /// (<see cref="OnLossDecided"/>); between parts (an evaluation, the run's end) nothing of it is pending at the shards, and the
    /// coordinator plans the next part without it. Either way a loss that leaves fewer than Cluster:MinWorkers, with every worker
    /// slot placed with the shards taken, fails the job: no worker could join it, and the coordinator would pause for one. While a
    /// slot is free, the coordinator pauses for a worker to join, as with one parameter server.
    /// </summary>
    private void OnWorkerLost(WorkerLost lost)
    {
        if (lost.WorkerIndex < 0 || lost.WorkerIndex >= _taken.Length || !_lost.Add(lost.WorkerIndex)) return;
        _taken[lost.WorkerIndex] = true; // one lost before its first part keeps its slot too: the job host never gives an index again
        // The workers given the shard nodes and not lost (one the coordinator added, not yet in a part, is not counted: the count
        // may be one low, and then a slot is free, so nothing fails on it).
        var alive = _taken.Count(taken => taken) - _lost.Count;
        if (alive < Math.Max(1, _settings.MinWorkers))
        {
            if (FreeSlots == 0)
            {
                FailSoon(new ShardNodesException($"Worker {lost.WorkerIndex} was lost, leaving {Counts.Of(alive, "worker")} of the Cluster:MinWorkers = " +
                    $"{_settings.MinWorkers} the job needs, and every one of the {_taken.Length} worker slots the shards were placed for is taken, so no " +
                    "worker can join this job: " + RestartAdvice + " Or set Cluster:ShardNodes to false (the shards then run in the parameter server's " +
                    $"process, which takes joining workers up to {UpdatePolicy.MaxWorkers} in all)."), WorkerLossGrace, workerLoss: true);
                return;
            }
            _log.Warning("Parameter server: worker {0} was lost, leaving {1} of the Cluster:MinWorkers = {2} the job needs; {3} still free " +
                "for a worker that joins.", lost.WorkerIndex, Counts.Of(alive, "worker"), _settings.MinWorkers, Counts.Of(FreeSlots, "worker slot"));
        }
        if (!_partRunning)
        {
            _log.Info("Parameter server: worker {0} was lost between parts; the next part runs without it.", lost.WorkerIndex);
            return;
        }
        if (!_inPart[lost.WorkerIndex])
        {
            // One that joined and was lost before its first part (or one not in this part): nothing of it is pending at the shards.
            _log.Info("Parameter server: worker {0}, not in the running part, was lost; the next part runs without it.", lost.WorkerIndex);
            return;
        }
        _undecided.Add(lost.WorkerIndex);
        // A checkpoint within the part from here on could miss the lost worker's minibatches: the epoch's end writes the next.
        if (_partCheckpointEvery > 0)
            _log.Info("Parameter server: worker {0} was lost in epoch {1}; the next checkpoint comes at the epoch's end, not within it (Checkpoint:EverySteps).",
                lost.WorkerIndex, _part.Epoch);
        _partCheckpointEvery = 0;
        _partCheckpoints.Clear();
        _arbiter.Tell(lost, Self);
        // An arbiter waits for every shard's answer: a shard that never gives one would hold the part's end for ever.
        Timers.StartSingleTimer($"decision-{lost.WorkerIndex}", new DecisionTimedOut(lost.WorkerIndex, _part), _settings.Timeout);
    }

    /// <summary>
    /// Every shard has applied the decision about a worker lost in the running part: its minibatches from the first round whose
    /// slice did not count go to a further part of the epoch, which the coordinator plans from <see cref="WorkerRemoved"/> (sent
    /// before the part's end, which waits for it). The other workers keep their minibatches, and the steps in which the lost
    /// worker had one carry only theirs; with Training:KeepGlobalBatch the part ends for every worker after the decision's round
    /// instead (<see cref="LossDecision.ApplyTo"/>, which every shard applies alike), and the others' minibatches from there go to
    /// the further part too (<see cref="WorkerRemoved.OthersCutFrom"/>), as one parameter server cuts the part.
    /// </summary>
    private void OnLossDecided(ShardLossDecided decided)
    {
        var decision = decided.Decision;
        if (!Sender.Equals(_arbiter) || !_undecided.Remove(decision.Worker))
        {
            _log.Warning("Parameter server: a decision about worker {0} came from {1}, {2}; ignored.", decision.Worker, Sender.Path,
                Sender.Equals(_arbiter) ? "about a worker whose decision is not awaited" : "not from the running part's loss arbiter");
            return;
        }
        Timers.Cancel($"decision-{decision.Worker}");
        var end = decision.Worker < _partEnds.Length ? _partEnds[decision.Worker] : 0;
        var (firstUnused, cutFrom) = decision.Worker < _partEnds.Length ? decision.ApplyTo(_partEnds, _partKeepsGlobalBatch) : (0, -1);
        if (firstUnused < end) _partLeftSamples = true;
        _log.Warning("Worker {0} lost in epoch {1} round {2}: {3}", decision.Worker, _part.Epoch, decision.Round, firstUnused >= end
            ? "it had no minibatch left in this part of the epoch; the others go on as planned."
            : $"its slice of that round {(decision.Keep ? "counts" : "does not count")}, and its minibatches from round {firstUnused} go to a further part of " +
              "the epoch over the workers alive. " + (cutFrom >= 0
                ? $"Training:KeepGlobalBatch: this part of the epoch ends at round {cutFrom}, and the other workers' minibatches from there are planned " +
                  "again with them, at the global minibatch."
                : "Until this part ends, each step carries only the other workers' minibatches."));
        _coordinator.Tell(new WorkerRemoved(decision.Worker, firstUnused, cutFrom), Self);
        if (_undecided.Count == 0 && _heldPartEnd is { } held)
        {
            _heldPartEnd = null;
            EndPart(held);
        }
    }

    private void OnRoundApplied(ShardRoundApplied report)
    {
        if (_merge!.Take(Sender, report, out var merged) is { } problem)
        {
            if (problem.EndsWith("out of step", StringComparison.Ordinal)) throw new ShardNodesException($"Parameter server: {problem}.");
            _log.Warning("Parameter server: {0}", problem);
            return;
        }
        if (report.SampleCount > 0 && report.Shard >= 0 && report.Shard < _shardTags.Length) // a round with a step
            Metrics.DistTrainMetrics.ShardRoundSeconds.Record(report.RoundSeconds, _shardTags[report.Shard]);
        if (merged is null) return;
        if (merged.SampleCount > 0)
        {
            var now = Stopwatch.GetTimestamp();
            var timing = new RoundTiming(Stopwatch.GetElapsedTime(_roundStarted, now).TotalSeconds, 0, 0, merged.UpdateSeconds);
            _roundStarted = now;
            _partSamples += merged.SampleCount;
            _partLoss += merged.LossSum;
            if (_partCheckpointEvery > 0 && merged.Version % _partCheckpointEvery == 0 && (merged.Epoch, merged.Part) == _part)
                _partRounds[merged.Version] = (merged.Round + 1, _partSamples, _partLoss);
            _coordinator.Tell(new RoundApplied(merged.Epoch, merged.Round, merged.Version, merged.SampleCount, merged.LossSum, timing, merged.LearningRate), Self);
        }
        if (!merged.PartFinished) return;
        if ((merged.Epoch, merged.Part) != _part)
        {
            // A part that only handed out the weights, which the coordinator does not wait for, ended after the next part started:
            // its end goes to the coordinator as one server's would, and changes nothing of the running part.
            _coordinator.Tell(new EpochCompleted(merged.Epoch, merged.Version, 0, 0, merged.L1Penalty, merged.L2Penalty), Self);
            return;
        }
        // The coordinator plans a further part from the losses' WorkerRemoved, so the end waits for every decision of the part.
        if (_undecided.Count > 0)
        {
            _heldPartEnd = merged;
            return;
        }
        EndPart(merged);
    }

    /// <summary>The running part ended with <paramref name="merged"/>, its last round: tells the coordinator, after the epoch's
    /// checkpoint when the part ends the epoch.</summary>
    private void EndPart(ShardRoundApplied merged)
    {
        _partRunning = false;
        var end = new EpochCompleted(merged.Epoch, merged.Version, _partSamples, _partLoss, merged.L1Penalty, merged.L2Penalty);
        // A part whose lost worker left minibatches is followed by a further part of the epoch; any other ends its epoch. With
        // checkpoints, the coordinator hears of an epoch's end only once its checkpoint is written, as from one parameter server,
        // which writes it in the same message: every shard answers at the epoch's last version (nothing can start the next part
        // before), a request for the epoch's weights (early stopping's best, the final ones) comes after it, and a run that ends at
        // this epoch has its checkpoint.
        if (_settings.Checkpoints is not null && !_stopping && !_partLeftSamples && !_partTrainsNothing)
        {
            _heldEpochEnd = end;
            StartCheckpoint(merged.Epoch + 1);
            return;
        }
        _coordinator.Tell(end, Self);
    }

    /// <summary>Asks every shard for its slice of the weights, for <see cref="_gatherFor"/>.</summary>
    private void StartGather()
    {
        _gatherAttempts++;
        _gather = new ShardWeightsGather(_settings.StartingWeights, _shards, _nextRequest++);
        foreach (var shard in _shards) shard.Tell(new ShardSliceRequest(_gather.RequestId), Self);
        ArmGatherTimer(nameof(GatherTimedOut), _gather.RequestId);
    }

    /// <summary>(Re)starts the timer <paramref name="key"/> that fails gathering <paramref name="requestId"/> after
    /// <see cref="RemoteShardSettings.Timeout"/> without a piece (<see cref="GatherStalled"/>).</summary>
    private void ArmGatherTimer(string key, int requestId) => Timers.StartSingleTimer(key, new GatherTimedOut(requestId), _settings.Timeout);

    /// <summary>
    /// The failure of a gathering to which no shard sent a piece for <see cref="RemoteShardSettings.Timeout"/>: each piece taken
    /// restarts that time, so a big model's slices are not cut off while they keep coming (the coordinator still allows a
    /// gathering at most Training:StallTimeoutSeconds without progress). Names the shards still missing and their nodes.
    /// </summary>
    private ShardNodesException GatherStalled(ShardWeightsGather gather, string what) => new(string.Format(CultureInfo.InvariantCulture,
        "For {0:F0} s (the smaller of Cluster:JoinTimeoutSeconds and a third of Training:StallTimeoutSeconds), no shard node sent a piece of " +
        "its slice of the {1}; still missing: {2}. A shard node is overloaded, cut off, or stopped answering (its log says so). Restart the " +
        "job; if those nodes are only slow, raise that setting.{3}", _settings.Timeout.TotalSeconds, what,
        string.Join(", ", gather.Waiting.Select(k => $"shard {k} on {_placement!.Hosts[k].Path.Address}")),
        _stopDivergence is null ? "" : $" Here {_stopDivergence.TrimEnd('.')}, and a diverged shard sends nothing."));

    /// <summary>
    /// Sends every shard its slice of the checkpoint the run resumes from: the weights, then each optimizer state buffer in the
    /// shards' optimizer's order, in pieces of at most <see cref="ShardSliceChunk.MaxValues"/>. Sent before the workers learn of the
    /// shards and before any part starts, so each shard holds the checkpoint's slice before its first broadcast.
    /// </summary>
    /// <exception cref="ShardNodesException">The checkpoint lacks a state buffer the shards' optimizer keeps.</exception>
    private void SendCheckpointSlices(TrainingCheckpoint checkpoint)
    {
        var names = _stateNames;
        var state = new float[names.Length][];
        for (var b = 0; b < names.Length; b++)
            state[b] = checkpoint.OptimizerState.FirstOrDefault(s => s.Name == names[b]).Values
                ?? throw new ShardNodesException($"The checkpoint of epoch {checkpoint.Epoch} holds no optimizer state '{names[b]}', which the shards' " +
                    $"optimizer ({_settings.Optimizer!.Kind}) keeps: resume with the Optimizer settings that wrote it.");
        var plan = ParameterShards.Plan(_settings.StartingWeights.Layout, _shards.Length);
        for (var k = 0; k < _shards.Length; k++)
        {
            var shard = plan[k];
            Send(k, 0, checkpoint.Weights.Values.AsMemory(shard.Start, shard.Length));
            for (var b = 0; b < names.Length; b++) Send(k, b + 1, state[b].AsMemory(shard.Start, shard.TrainableLength));
        }
        _log.Info("Parameter server: the shards start from the checkpoint of epoch {0} round {1} (version {2}, {3} optimizer steps).", checkpoint.Epoch,
            checkpoint.Round, checkpoint.Version, checkpoint.OptimizerSteps);

        void Send(int k, int buffer, ReadOnlyMemory<float> values)
        {
            foreach (var piece in ShardSliceChunk.Pieces(0, k, checkpoint.Version, buffer, values, checkpoint.OptimizerSteps, names.Length)) _shards[k].Tell(piece, Self);
        }
    }

    /// <summary>Asks every shard for its slice of the weights and optimizer state, for the checkpoint that starts <paramref name="nextEpoch"/>.</summary>
    private void StartCheckpoint(int nextEpoch)
    {
        _checkpointGather = new ShardWeightsGather(_settings.StartingWeights, _shards, _nextRequest++, _stateNames);
        _checkpointEpoch = nextEpoch;
        _checkpointStarted = Stopwatch.GetTimestamp();
        foreach (var shard in _shards) shard.Tell(new ShardSliceRequest(_checkpointGather.RequestId, WithOptimizerState: true), Self);
        ArmGatherTimer(CheckpointGatherTimer, _checkpointGather.RequestId);
    }

    /// <summary>Takes a piece of the checkpoint's gathering; once every shard's slices have come, writes the checkpoint (as one
    /// parameter server writes an epoch end's) and tells the coordinator.</summary>
    private void OnCheckpointChunk(ShardSliceChunk chunk)
    {
        var gather = _checkpointGather!;
        if (gather.Take(Sender, chunk) is { } ignored)
        {
            _log.Warning("Parameter server: {0}", ignored);
            return;
        }
        // Asked between parts, every shard is at the epoch's last version: any disagreement means the shards are out of step.
        if (gather.Failure is { } failure) throw new ShardNodesException($"Parameter server: the checkpoint of epoch {_checkpointEpoch - 1}'s end cannot be put together: {failure}");
        if (!gather.Complete)
        {
            ArmGatherTimer(CheckpointGatherTimer, gather.RequestId); // the time since the last piece
            return;
        }
        Timers.Cancel(CheckpointGatherTimer);
        _checkpointGather = null;
        _log.Info("Parameter server: epoch {0}'s end gathered from the shard nodes for its checkpoint in {1:F1} ms", _checkpointEpoch - 1,
            Stopwatch.GetElapsedTime(_checkpointStarted).TotalMilliseconds);
        WriteCheckpoint(gather, new CheckpointPosition(_checkpointEpoch, 0, 0, 0, _partSlots, []));
        _coordinator.Tell(_heldEpochEnd!, Self);
        _heldEpochEnd = null;
    }

    /// <summary>
    /// Takes a piece of a checkpoint within the running part, which each shard sends unasked at every multiple of
    /// Checkpoint:EverySteps (<see cref="ShardPartStart.CheckpointEverySteps"/>); once every shard's slices of a version have come,
    /// writes the checkpoint with the position after the round that made the version, as one parameter server writes it. Each
    /// shard sends a version's slices after its report of that round, so the position is known once every slice has come. Pieces that come after a
    /// worker was lost in the part, or after the stop, are dropped: such a checkpoint could miss minibatches, or be newer than the
    /// stop's weights.
    /// </summary>
    private void OnPartCheckpointChunk(ShardSliceChunk chunk)
    {
        if (_partCheckpointEvery <= 0 || _stopping) return;
        if (!_partCheckpoints.TryGetValue(chunk.Version, out var gather))
        {
            if (chunk.Version % _partCheckpointEvery != 0)
            {
                _log.Warning("Parameter server: a piece of a checkpoint of version {0} came from {1}, which is not a version of this part at a " +
                    "multiple of Checkpoint:EverySteps = {2}; ignored.", chunk.Version, Sender.Path, _partCheckpointEvery);
                return;
            }
            _partCheckpoints[chunk.Version] = gather = new ShardWeightsGather(_settings.StartingWeights, _shards, _partCheckpointRequest, _stateNames);
        }
        if (gather.Take(Sender, chunk) is { } ignored)
        {
            _log.Warning("Parameter server: {0}", ignored);
            return;
        }
        if (gather.Failure is { } failure)
            throw new ShardNodesException($"Parameter server: the checkpoint of version {chunk.Version} cannot be put together: {failure}");
        if (!gather.Complete) return;
        _partCheckpoints.Remove(chunk.Version);
        // Every shard sent its slices after its report of the round that made the version, so the merged report has come.
        if (!_partRounds.TryGetValue(chunk.Version, out var position))
        {
            _log.Warning("Parameter server: the shards sent a checkpoint of version {0}, which no round of epoch {1}'s running part made; not written.",
                chunk.Version, _part.Epoch);
            return;
        }
        foreach (var version in _partRounds.Keys.Where(v => v <= chunk.Version).ToArray()) _partRounds.Remove(version);
        WriteCheckpoint(gather, new CheckpointPosition(_part.Epoch, position.NextRound, position.Samples, position.LossSum, _partSlots, []));
    }

    /// <summary>Writes the checkpoint of a complete gathering of the weights and optimizer state at <paramref name="position"/> (as one
    /// parameter server writes it), tells the coordinator, and makes it the newest the restart advice names.</summary>
    /// <exception cref="IOException">The file could not be written.</exception>
    private void WriteCheckpoint(ShardWeightsGather gather, CheckpointPosition position)
    {
        var settings = _settings.Checkpoints!;
        var weights = gather.Result;
        var checkpoint = settings.Checkpoint(new ParameterVector(_settings.StartingWeights.Layout, weights.Weights), gather.OptimizerState,
            _settings.Optimizer!, gather.OptimizerSteps, weights.Version, position);
        _coordinator.Tell(ParameterServer.Save(settings.Store, checkpoint, _log), Self);
        _newestCheckpoint = Position(position.Epoch, position.Round);
    }

    private void OnSliceChunk(ShardSliceChunk chunk)
    {
        if (chunk.RequestId == ShardSliceChunk.LastGoodRequestId)
        {
            OnLastGoodChunk(chunk);
            return;
        }
        if (_checkpointGather?.RequestId == chunk.RequestId)
        {
            OnCheckpointChunk(chunk);
            return;
        }
        if (chunk.RequestId == _partCheckpointRequest && _partRunning)
        {
            OnPartCheckpointChunk(chunk);
            return;
        }
        if (_gather is null) return;
        if (_gather.Take(Sender, chunk) is { } ignored)
        {
            _log.Warning("Parameter server: {0}", ignored);
            return;
        }
        if (_gather.Failure is { } failure)
        {
            // Mid-round one shard may have stepped and another not yet: asked again, they are at one version between rounds.
            Timers.Cancel(nameof(GatherTimedOut));
            var torn = _gather.TornVersions;
            _gather = null;
            if (torn && _gatherAttempts < GatherRetries)
            {
                Timers.StartSingleTimer(nameof(GatherAgain), new GatherAgain(), GatherRetryDelay);
                return;
            }
            throw new ShardNodesException(torn
                ? string.Format(CultureInfo.InvariantCulture, "Parameter server: the shards' weights cannot be put together after {0} attempts over " +
                    "{1:F0} s: {2}", GatherRetries, GatherRetries * GatherRetryDelay.TotalSeconds, failure)
                : $"Parameter server: the shards' weights cannot be put together: {failure}");
        }
        if (!_gather.Complete)
        {
            ArmGatherTimer(nameof(GatherTimedOut), _gather.RequestId); // the time since the last piece
            return;
        }
        _gatherFor!.Tell(_gather.Result, Self);
        EndGather();
    }

    private void EndGather()
    {
        Timers.Cancel(nameof(GatherTimedOut));
        _gather = null;
        _gatherFor = null;
        Stash.UnstashAll();
    }

    /// <summary>
    /// Takes a shard's slices of a measured step's per-tensor norms, from that shard's actor only (<see cref="ShardHealthMerge"/>),
    /// and once every shard's have come judges the whole tensors as one parameter server does, logging its warnings.
    /// </summary>
    private void OnHealthSquares(ShardHealthSquares part)
    {
        if (_health is null) return;
        if (part.Shard < 0 || part.Shard >= _shards.Length || !Sender.Equals(_shards[part.Shard]))
        {
            _log.Warning("Parameter server: per-tensor norms of shard {0} came from {1}, which is not that shard; ignored.", part.Shard, Sender.Path);
            return;
        }
        var (whole, refused) = _healthParts!.Add(part);
        if (refused is not null) _log.Warning("Parameter server: {0}", refused);
        if (whole is null) return;
        foreach (var warning in _health.Judge(part.Step, whole)) _log.Warning(warning);
    }

    private void OnShardFailed(ShardFailed failed)
    {
        var placement = _placement!;
        if (failed.Shard < 0 || failed.Shard >= placement.ShardCount || !ShardHost.IsGenuine(_settings.Identity, placement.Requests[failed.Shard], failed))
        {
            _log.Warning("Parameter server: a failure of shard {0} came from {1} without the job's proof for this run; ignored.", failed.Shard, Sender.Path);
            return;
        }
        if (failed.Diverged)
        {
            OnShardDiverged(failed, placement);
            return;
        }
        var loss = $"Shard {failed.Shard} of {placement.ShardCount} on the shard node {placement.Hosts[failed.Shard].Path.Address} stopped: {failed.Reason.TrimEnd('.')}";
        // The node's own stop is the shard node's loss, which a standby's takeover can replace; a fault of the shard (an exception, its
        // node still up) is not, and would repeat there.
        var nodeLost = failed.Reason.StartsWith("the shard node", StringComparison.Ordinal);
        FailSoon(new ShardNodesException($"{loss}. A run whose shards run on shard nodes cannot go on without one; {RestartAdvice}", nodeLost ? failed.Shard : -1,
            loss + ".", _newestCheckpoint), shard: nodeLost ? failed.Shard : -1);
    }

    /// <summary>
    /// A shard diverged (its host's signed <see cref="ShardFailed"/>): the job fails with the shard's <see cref="TrainingDivergedException"/>,
    /// as with one parameter server, and with the whole model's last good weights once they are put together. The diverged shard's
    /// host sends its slice right after the failure; every other shard is asked for its slice of the same version
    /// (<see cref="ShardSliceRequest.Version"/>), which it still holds among its newest broadcasts; a further shard that diverged on
    /// the same round sends its own through its host. Within <see cref="LastGoodTimeout"/> the job fails with the whole weights;
    /// after it, or when the slices cannot be put together, without them, and the log says why.
    /// </summary>
    private void OnShardDiverged(ShardFailed failed, ShardPlacement placement)
    {
        var host = placement.Hosts[failed.Shard];
        if (_divergence is not null)
        {
            // Another shard diverged on the same round: its host sends its slice (the request to its actor found it stopped).
            if (failed.LastGoodVersion == _divergence.LastGoodVersion) _lastGoodGather?.ExpectFrom(failed.Shard, host);
            else if (_lastGoodGather is not null)
                FailDiverged(null, $"shard {failed.Shard} diverged too, with last good version {failed.LastGoodVersion}, and shard {_divergence.Shard} with {_divergence.LastGoodVersion}");
            return;
        }
        if (_stopping)
        {
            // The shards step on during a stop: a divergence then ends with the stop, as one parameter server stops taking reports.
            // The stop's gathering of the weights cannot get the diverged shard's slice: its time-out says why.
            _stopDivergence ??= $"shard {failed.Shard} diverged during the stop: {failed.Reason}";
            FailSoon(new ShardNodesException($"Shard {failed.Shard} diverged: {failed.Reason}"));
            return;
        }
        _divergence = failed;
        // The diverged shard's node drops it, and its actor's end would fail the job as a lost shard: the divergence ends it
        // instead. A pending loss of another shard or worker is dropped too only when it is that shard's.
        if (_pendingFailure is not null && _pendingFailureShard == failed.Shard)
        {
            _pendingFailure = null;
            Timers.Cancel(nameof(FailNow));
        }
        if (failed.LastGoodVersion < 0) FailDiverged(null, $"shard {failed.Shard} held no last good weights");
        _log.Info("Parameter server: shard {0} diverged; putting the last good weights (version {1}) together from the shard nodes.", failed.Shard,
            failed.LastGoodVersion);
        _lastGoodGather = new ShardWeightsGather(_settings.StartingWeights, _shards, ShardSliceChunk.LastGoodRequestId);
        _lastGoodGather.ExpectFrom(failed.Shard, host);
        for (var k = 0; k < _shards.Length; k++)
            if (k != failed.Shard) _shards[k].Tell(new ShardSliceRequest(ShardSliceChunk.LastGoodRequestId, false, failed.LastGoodVersion), Self);
        Timers.StartSingleTimer(nameof(LastGoodTimedOut), new LastGoodTimedOut(), LastGoodTimeout);
    }

    private void OnLastGoodChunk(ShardSliceChunk chunk)
    {
        if (_lastGoodGather is null) return;
        if (_lastGoodGather.Take(Sender, chunk) is { } ignored)
        {
            _log.Warning("Parameter server: {0}", ignored);
            return;
        }
        if (_lastGoodGather.Failure is { } failure) FailDiverged(null, failure);
        if (!_lastGoodGather.Complete) return;
        var lastGood = _lastGoodGather.Result;
        if (lastGood.Version != _divergence!.LastGoodVersion)
            FailDiverged(null, $"the slices are of version {lastGood.Version}, and the last good one is {_divergence.LastGoodVersion}");
        FailDiverged(lastGood, null);
    }

    /// <summary>Fails this actor with the first shard's divergence, so the coordinator stops the job with it: with the whole model's
    /// last good weights when given, else without them, saying <paramref name="why"/> in the log.</summary>
    /// <exception cref="TrainingDivergedException">Always.</exception>
    private void FailDiverged(WeightsSnapshot? lastGood, string? why)
    {
        var diverged = _divergence!;
        Timers.Cancel(nameof(LastGoodTimedOut));
        _lastGoodGather = null;
        if (lastGood is null)
            _log.Warning("Parameter server: the last good weights could not be put together from the shard nodes ({0}); the job fails without them.", why);
        throw new TrainingDivergedException(diverged.Reason, lastGood?.Weights, lastGood is null ? -1 : diverged.LastGoodVersion, diverged.LossFinite,
            diverged.DivergedEpoch, diverged.DivergedStep);
    }
}

/// <summary>A run whose shards run on shard nodes (Cluster:ShardNodes) cannot go on; the message names the problem and the fix.
/// An <see cref="InvalidOperationException"/>, so the CLI reports it as the job's failure (exit code 1), not as a fault in DistTrain.</summary>
/// <param name="message">The problem and the fix.</param>
/// <param name="lostShard">The shard whose loss this is (its node gone, cut off or stopped), or -1 for another problem: a standby
/// parameter server can then take the job over from the newest checkpoint and place the shards anew (<see cref="JobHost"/>).</param>
/// <param name="loss">The loss alone, without the advice of <paramref name="message"/>; null: the message.</param>
/// <param name="newestCheckpoint">For a lost shard, the newest checkpoint of the run ("epoch 3's end", "epoch 4 round 200": the one it
/// resumed from until it writes one), or null when there is none.</param>
public sealed class ShardNodesException(string message, int lostShard = -1, string? loss = null, string? newestCheckpoint = null) : InvalidOperationException(message)
{
    /// <summary>For a lost shard, the position of the run's newest checkpoint, which a takeover would resume from; null: none.</summary>
    public string? NewestCheckpoint { get; } = newestCheckpoint;

    /// <summary>The shard whose loss ended the run, 0 to K - 1, or -1 when the run ended for another reason.</summary>
    public int LostShard { get; } = lostShard;

    /// <summary>What was lost, without the advice on how to go on (the whole message for another problem).</summary>
    public string Loss { get; } = loss ?? message;
}

/// <summary>
/// Puts the whole tensors' diagnostics of measured steps together from K shards' slices (<see cref="ShardHealthSquares"/>): a
/// tensor cut by a shard boundary has a part in each shard, and its sums of squares are the sums of the parts, added in shard
/// order. Each shard sends a step's slices only once the step is final (<see cref="ParameterShardActor"/>), so a step redone after a
/// lost worker's decision is put together from the redo's slices alone. A plain class; the owner checks the sender.
/// </summary>
/// <param name="layout">The whole model's layout.</param>
/// <param name="shards">K, as <see cref="ParameterShards.Plan"/> cuts the model.</param>
internal sealed class ShardHealthMerge(ParameterLayout layout, int shards)
{
    private readonly int[][] _index = Index(layout, shards);
    private readonly int _tensors = layout.Segments.Count(s => s.Trainable);
    private readonly Dictionary<long, ShardHealthSquares?[]> _pending = [];
    private long _judged; // the newest step put together

    /// <summary>Most measured steps kept waiting for other shards' slices: 8.</summary>
    internal const int MaxPendingSteps = 8;

    private static List<string> Trainable(ParameterLayout layout) => [.. layout.Segments.Where(s => s.Trainable).Select(s => s.Name)];

    /// <summary>Per shard: each trainable tensor of its slice, as the whole model's trainable tensor index.</summary>
    private static int[][] Index(ParameterLayout layout, int shards)
    {
        var whole = Trainable(layout).Select((name, i) => (name, i)).ToDictionary(t => t.name, t => t.i, StringComparer.Ordinal);
        return [.. ParameterShards.Plan(layout, shards).Select(p => p.SliceLayout(layout).Segments.Where(s => s.Trainable).Select(s => whole[s.Name]).ToArray())];
    }

    /// <summary>Takes shard <c>part.Shard</c>'s slices: the whole step's sums per trainable tensor, in layout order, once every shard's
    /// have come (else null), and why the part was refused (another number of tensors than the shard's slice has), or null.</summary>
    public (TensorSquares[]? Whole, string? Refused) Add(ShardHealthSquares part)
    {
        ArgumentNullException.ThrowIfNull(part);
        var k = part.Shard;
        if (k < 0 || k >= _index.Length) return (null, $"per-tensor norms of shard {k}, which is not a shard of this run (0 to {_index.Length - 1}); ignored.");
        if (part.Gradient.Length != _index[k].Length)
            return (null, $"per-tensor norms of shard {k} name {part.Gradient.Length} tensors, and its slice has {_index[k].Length}; ignored.");
        if (part.Step <= _judged) return (null, null);
        if (!_pending.TryGetValue(part.Step, out var parts))
        {
            // A shard that sends no slices (stopped, or of a build without them) leaves steps pending: only the newest few are kept.
            if (_pending.Count >= MaxPendingSteps) _pending.Remove(_pending.Keys.Min());
            _pending[part.Step] = parts = new ShardHealthSquares?[_index.Length];
        }
        parts[k] = part;
        if (parts.Any(p => p is null)) return (null, null);
        _judged = part.Step;
        foreach (var step in _pending.Keys.Where(s => s <= part.Step).ToArray()) _pending.Remove(step);
        return (Sum([.. parts.Select(p => p!.Squares)]), null);
    }

    /// <summary>
    /// The whole model's sums per trainable tensor, in layout order, from every shard's slices of one step (shard k's in its
    /// slice's order, as <see cref="GradientHealthMonitor.Squares"/> gives them), added in shard order. Also the in-process
    /// sharded server's (<see cref="ShardedParameterServer"/>).
    /// </summary>
    /// <param name="parts">K shards' slices, by shard index.</param>
    /// <exception cref="IndexOutOfRangeException">A shard's slices name more tensors than its slice has.</exception>
    public TensorSquares[] Sum(IReadOnlyList<IEnumerable<TensorSquares>> parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        var whole = new TensorSquares[_tensors];
        for (var shard = 0; shard < parts.Count; shard++)
        {
            var i = 0;
            foreach (var (g, w, u) in parts[shard])
            {
                var index = _index[shard][i++];
                var sum = whole[index];
                whole[index] = new TensorSquares(sum.Gradient + g, sum.Weight + w, sum.Update + u);
            }
        }
        return whole;
    }
}
