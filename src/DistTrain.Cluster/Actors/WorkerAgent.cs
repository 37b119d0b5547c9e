using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Cluster.Security;
using DistTrain.Core;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// Runs on a worker node in cluster mode: registers with the <see cref="JobHost"/> through a cluster-singleton proxy
/// (so it reaches the active parameter server wherever it runs), and once accepted starts the <see cref="Worker"/> and
/// the data-plane link. If the data plane to the parameter server is lost while the job runs, it stops its worker and
/// registers again: a standby parameter server that takes over accepts it and sends the checkpoint's weights. It
/// completes the task it was given with the job's outcome, or fails it with the refusal, a failed worker, or a
/// (re-)join timeout.
/// </summary>
public sealed class WorkerAgent : ReceiveActor, IWithTimers
{
    private sealed record JoinTimeout;

    /// <summary>The seeds' lookup begun at the join timeout of registration round <paramref name="Round"/> has ended: the seeds
    /// whose host did not resolve (<see cref="SeedHosts.Of"/>).</summary>
    private sealed record SeedsLookedUp(IReadOnlyList<SeedHosts.Unresolved> Unresolved, int Round, IReadOnlyList<string>? Silent = null);

    private sealed record RegisterAgain;

    /// <summary>The data plane of acceptance <paramref name="Generation"/> is lost (<paramref name="Name"/> says how); a Lost of an
    /// earlier acceptance (a timer started before this worker was accepted again) is stale and ignored.</summary>
    private sealed record Lost(string Name, int Generation);

    /// <summary>Asks whether this worker has a data-plane link to a parameter server now; the answer is a <see cref="bool"/>
    /// (false from the moment the link closes, before the end-of-job grace, and while registering).</summary>
    public sealed record HasDataPlane : INoSerializationVerificationNeeded
    {
        /// <summary>The message.</summary>
        public static readonly HasDataPlane Instance = new();
    }

    /// <summary>Seconds between registration attempts while no parameter server has accepted this worker.</summary>
    public const double RegisterIntervalSeconds = 2;

    /// <summary>
    /// Seconds a closed data plane may precede the job's end: at the end of a job the parameter server closes it while
    /// JobFinished is still on its way over Akka.Remote, so only after this is the parameter server taken as lost.
    /// </summary>
    public const double EndOfJobGraceSeconds = 2;

    /// <summary>
    /// Seconds a worker on shard nodes that lost a shard connection while its parameter server was up waits, at most, to learn
    /// whether the server is lost too (its data plane closes, or its node exits or becomes unreachable) before it ends as failed.
    /// A parameter server stopped by a signal releases its shards first and leaves only after writing its outputs; a job that
    /// fails for the lost shard ends sooner, with its JobFinished.
    /// </summary>
    public const double ShardLossDecisionSeconds = 30;

    private readonly TrainingOptions _options;
    private readonly ClusterSecurity _security;
    private readonly TrainingData _data;
    private readonly string _samples; // ModelFingerprint.SamplesOf(_data), computed by the caller; sent in every registration
    private readonly TaskCompletionSource<JobFinished> _completion;
    private readonly Func<string, System.Net.IPAddress[]>? _resolve; // the seeds' lookup (SeedHosts.Of's default when null)
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
    private IActorRef _jobHost = ActorRefs.Nobody;
    private IActorRef? _worker;
    private IActorRef? _link;
    private bool _linkOpen; // _link runs: it has not stopped (its data plane did not close)
    private int _generation;
    private int _round; // registration rounds begun (StartRegistering): a seeds' lookup of an earlier round is stale
    private bool _accepted;
    private bool _finished;
    private bool _lostParameterServer;
    private bool _workerFailed;
    private bool _shardsLostWithServer; // this acceptance's worker stopped on a lost shard connection as its parameter server was lost
    private bool _shardLossPending;     // it stopped on a lost shard connection with its parameter server up: decided at OnLost
    private long _shardLossAt;          // when (Stopwatch timestamp)
    private bool _serverLossSeen;       // OnLost found the parameter server lost too after it, and waited for the job's end
    private string? _failure;        // the worker's failure, when it says all there is (WorkerFailed)
    private int _workerIndex;
    private Address? _hostNode; // the node of the job host that accepted this worker
    private string _jobId = "";

    /// <summary>Creates the agent; see <see cref="Props(TrainingOptions, ClusterSecurity, TrainingData, string, TaskCompletionSource{JobFinished})"/>.</summary>
    public WorkerAgent(TrainingOptions options, ClusterSecurity security, TrainingData data, string samples, TaskCompletionSource<JobFinished> completion)
        : this(options, security, data, samples, completion, resolve: null)
    {
    }

    /// <summary>Creates the agent with the host lookup <paramref name="resolve"/> for the seeds named at the join timeout
    /// (<see cref="System.Net.Dns.GetHostAddresses(string)"/> when null).</summary>
    internal WorkerAgent(TrainingOptions options, ClusterSecurity security, TrainingData data, string samples, TaskCompletionSource<JobFinished> completion,
        Func<string, System.Net.IPAddress[]>? resolve)
    {
        _resolve = resolve;
        _options = options;
        _security = security;
        _data = data;
        _samples = samples;
        _completion = completion;
        Receive<RegisterAgain>(_ => Register());
        Receive<WorkerAccepted>(OnAccepted);
        Receive<RegistrationRefused>(refused =>
        {
            // The caller reports the exception (the CLI: one "refused:" line); the registrations sent again while the first
            // was answered get the same refusal, logged at debug level only.
            if (!_completion.TrySetException(new NodeRefusedException("The parameter server refused this worker: " + refused.Reason)))
                _log.Debug("The parameter server refused this worker again: {0}", refused.Reason);
        });
        Receive<JobFinished>(finished =>
        {
            _finished = true;
            _completion.TrySetResult(finished);
        });
        Receive<JoinTimeout>(_ =>
        {
            if (_accepted) return;
            if (_lostParameterServer)
            {
                _completion.TrySetException(new TimeoutException(
                    TakeoverTimedOut(_options.Cluster.JoinTimeoutSeconds, ParameterServersUp(Akka.Cluster.Cluster.Get(Context.System).State))));
                return;
            }
            // The seeds' hosts are looked up off the actor's thread: without a DNS server a lookup can take seconds, which would
            // block this actor (and its dispatcher's thread). A parameter server may accept this worker meanwhile: the result
            // is checked again when it comes back (AfterSeedLookup).
            string[] seeds = [.. _options.Cluster.SeedNodes.Select(_security.SeedAddress)];
            var round = _round;
            var resolve = _resolve;
            // In no cluster, a seed this node holds a connection to accepted it and did not let it join (SilentSeeds).
            var member = _cluster.State.Members.Any(m => m.UniqueAddress.Equals(_cluster.SelfUniqueAddress));
            Task.Run(() => new SeedsLookedUp(SeedHosts.Of(seeds, resolve), round, member ? [] : SilentSeeds.Connected(seeds, resolve)))
                .PipeTo(Self, failure: _ => new SeedsLookedUp([], round)); // a failed lookup names no seed; the time-out still ends the run
        });
        Receive<SeedsLookedUp>(looked =>
        {
            if (AfterSeedLookup(_accepted, looked.Round, _round, _options.Cluster.JoinTimeoutSeconds, looked.Unresolved,
                    ForeignPeerLogFilter.Of(Context.System)?.Named, looked.Silent) is { } message)
                _completion.TrySetException(new TimeoutException(message));
        });
        Receive<Terminated>(OnTerminated);
        Receive<Lost>(OnLost);
        Receive<HasDataPlane>(_ => Sender.Tell(_linkOpen));
        // A parameter-server node that vanishes without closing its sockets (power loss, a partition) is noticed
        // through membership: once the split-brain resolver downs it, its data plane counts as lost.
        Receive<ClusterEvent.MemberDowned>(e => HostNodeGone(e.Member));
        Receive<ClusterEvent.MemberRemoved>(e => HostNodeGone(e.Member));
        Receive<ClusterEvent.IMemberEvent>(_ => { });
        Receive<ClusterEvent.CurrentClusterState>(_ => { });
    }

    /// <inheritdoc />
    public ITimerScheduler Timers { get; set; } = null!;

    /// <summary>Props of the agent of a worker node holding <paramref name="data"/>.</summary>
    /// <param name="options">The node's validated options.</param>
    /// <param name="security">The job's identity (proved at registration) and the node's TLS certificates (data plane).</param>
    /// <param name="data">The node's copy of the data.</param>
    /// <param name="samples"><see cref="ModelFingerprint.SamplesOf"/> of <paramref name="data"/> with the node's Cluster:CheckSamples,
    /// sent in every registration. The caller computes it before the agent is created: it takes about 0.1 s for Fashion-MNIST,
    /// which the agent's constructor would spend blocking its own creation.</param>
    /// <param name="completion">Completed with the job's end; failed with a <see cref="NodeRefusedException"/>, a failed worker or a timeout.</param>
    public static Props Props(TrainingOptions options, ClusterSecurity security, TrainingData data, string samples, TaskCompletionSource<JobFinished> completion) =>
        Akka.Actor.Props.Create(() => new WorkerAgent(options, security, data, samples, completion));

    /// <summary><see cref="Props(TrainingOptions, ClusterSecurity, TrainingData, string, TaskCompletionSource{JobFinished})"/> with the host
    /// lookup <paramref name="resolve"/> for the seeds named at the join timeout (<see cref="System.Net.Dns.GetHostAddresses(string)"/> when null).</summary>
    internal static Props Props(TrainingOptions options, ClusterSecurity security, TrainingData data, string samples, TaskCompletionSource<JobFinished> completion,
        Func<string, System.Net.IPAddress[]>? resolve) =>
        Akka.Actor.Props.CreateBy(new Producer(() => new WorkerAgent(options, security, data, samples, completion, resolve)));

    /// <summary>Creates the agent through its internal constructor, which <c>Props.Create</c> does not find (it looks for public ones).</summary>
    private sealed class Producer(Func<WorkerAgent> create) : IIndirectActorProducer
    {
        public Type ActorType => typeof(WorkerAgent);

        public ActorBase Produce() => create();

        public void Release(ActorBase actor)
        {
        }
    }

    /// <inheritdoc />
    protected override void PreStart()
    {
        _jobHost = Context.ActorOf(ParameterServerNode.SingletonProxyProps(Context.System), "job-host-proxy");
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsSnapshot, typeof(ClusterEvent.IMemberEvent));
        StartRegistering();
    }

    /// <inheritdoc />
    protected override void PostStop() => _cluster.Unsubscribe(Self);

    /// <summary>
    /// The parameter-server nodes that are up and reachable in <paramref name="state"/>: a lost active node stays Up until it
    /// is downed, and must not be named as one that could still take over.
    /// </summary>
    internal static IReadOnlyCollection<string> ParameterServersUp(ClusterEvent.CurrentClusterState state) =>
        [.. state.Members.Where(m => m.HasRole(NodeRoles.ParameterServer) && m.Status == MemberStatus.Up && !state.Unreachable.Contains(m))
            .Select(m => m.Address.ToString())];

    /// <summary>
    /// Why a worker gives up when no parameter server accepted it within <paramref name="seconds"/> (Cluster:JoinTimeoutSeconds)
    /// of its start: with the seeds whose host does not resolve on this machine named first, as Akka.Cluster retries them for
    /// ever and its log says only that it could not associate with them.
    /// </summary>
    /// <param name="seconds">Cluster:JoinTimeoutSeconds.</param>
    /// <param name="unresolved">The seeds whose host did not resolve (<see cref="SeedHosts.Of"/>).</param>
    /// <param name="foreign">The peers found not to be DistTrain nodes (<see cref="ForeignPeerLogFilter.Named"/>), named after the
    /// unresolved seeds so that the message alone says why; none when null.</param>
    /// <param name="silent">The seeds that accepted this node's connection and did not let it join (<see cref="SilentSeeds.Connected"/>),
    /// named last; none when null.</param>
    internal static string NotAccepted(double seconds, IReadOnlyList<SeedHosts.Unresolved> unresolved, IReadOnlyList<string>? foreign = null,
        IReadOnlyList<string>? silent = null) =>
        $"No parameter server accepted this worker within {seconds:F0} s. {SeedHosts.JoinCauses(unresolved, foreign, silent, seconds)}" +
        "Check Cluster:SeedNodes, that the parameter " +
        "server node runs, and that Cluster:Tls is the same on every node.";

    /// <summary>
    /// The agent's decision when the seeds' lookup begun at a join timeout ends (it runs off the actor's thread, so the agent
    /// went on meanwhile): the <see cref="NotAccepted"/> message to fail the run with, or null when a parameter server
    /// accepted this worker in the meantime (<paramref name="accepted"/>), or the lookup belongs to an earlier registration
    /// round than <paramref name="currentRound"/> (accepted and lost again since: that round's own timeout decides).
    /// </summary>
    /// <param name="accepted">Whether a parameter server has accepted this worker now.</param>
    /// <param name="round">The registration round whose join timeout began the lookup.</param>
    /// <param name="currentRound">The registration round now.</param>
    /// <param name="seconds">Cluster:JoinTimeoutSeconds.</param>
    /// <param name="unresolved">The lookup's result (<see cref="SeedHosts.Of"/>).</param>
    /// <param name="foreign">The peers found not to be DistTrain nodes (<see cref="ForeignPeerLogFilter.Named"/>); none when null.</param>
    /// <param name="silent">The seeds that accepted this node's connection and did not let it join (<see cref="SilentSeeds.Connected"/>); none when null.</param>
    internal static string? AfterSeedLookup(bool accepted, int round, int currentRound, double seconds, IReadOnlyList<SeedHosts.Unresolved> unresolved,
        IReadOnlyList<string>? foreign = null, IReadOnlyList<string>? silent = null) =>
        accepted || round != currentRound ? null : NotAccepted(seconds, unresolved, foreign, silent);

    /// <summary>
    /// Why a worker gives up after losing its parameter server: no parameter server took over within
    /// <paramref name="seconds"/> (Cluster:JoinTimeoutSeconds). With <paramref name="parameterServersUp"/> empty no
    /// parameter-server node is left (a standby that ran was stopped or lost too, as when every node but the workers is
    /// stopped), so the way on is a restart from the checkpoints; otherwise the nodes named did not take over.
    /// </summary>
    /// <param name="seconds">Cluster:JoinTimeoutSeconds.</param>
    /// <param name="parameterServersUp">The addresses of the parameter-server nodes up in the cluster, as this node sees it.</param>
    internal static string TakeoverTimedOut(double seconds, IReadOnlyCollection<string> parameterServersUp) =>
        parameterServersUp.Count == 0
            ? $"No parameter server took over within {seconds:F0} s of losing the active one, and no parameter-server node is left in the " +
              "cluster (a standby, if one ran, was stopped or lost as well). With Checkpoint:Directory set, start the nodes again, the " +
              "parameter server with Checkpoint:Resume = true (DISTTRAIN_Checkpoint__Resume=true), to continue from the newest checkpoint. " +
              "To ride out the loss of the active one, run a standby parameter-server node with the same config and a Checkpoint:Directory " +
              "shared with the active one, and stop it only with the job."
            : $"No parameter server took over within {seconds:F0} s of losing the active one, although {Counts.Noun(parameterServersUp.Count, "parameter-server node")} " +
              $"{string.Join(", ", parameterServersUp)} {(parameterServersUp.Count == 1 ? "is" : "are")} up: {(parameterServersUp.Count == 1 ? "its log says" : "their logs say")} why (a standby takes over only with the same config and a " +
              "Checkpoint:Directory shared with the active one).";

    private void HostNodeGone(Member member)
    {
        if (_accepted && !_finished && member.Address.Equals(_hostNode))
            Self.Tell(new Lost($"the parameter-server node {member.Address} ({member.Status})", _generation));
    }

    /// <summary>
    /// True once this node itself is stopping: its coordinated shutdown has begun (a stop signal, a downing, a failed TLS
    /// handshake), or it is leaving or out of the cluster. As a node leaves, Akka reports every other member removed and
    /// the data plane closes with the node: that is this node's own stop, not a lost parameter server, and the node will
    /// not register again.
    /// </summary>
    private bool NodeStopping =>
        CoordinatedShutdown.Get(Context.System).ShutdownReason is not null || _cluster.IsTerminated
        || _cluster.SelfMember.Status is MemberStatus.Leaving or MemberStatus.Exiting or MemberStatus.Down or MemberStatus.Removed;

    /// <inheritdoc />
    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(e =>
    {
        if (e is ShardConnectionLostException && NodeStopping) _log.Info("Worker stopped as this node stops: {0}", e.Message);
        else if (e is ShardConnectionLostException && _finished) _log.Info("Worker stopped after the job's end: {0}", e.Message.Split(". The worker stops", 2)[0]);
        else if (e is ShardConnectionLostException && _accepted && ParameterServerLost())
        {
            // The shards of a lost parameter server stop with it (their hosts watch it), so a worker on shard nodes loses them as
            // it loses the server; this node registers again as for the server's loss (a standby, if one runs, places new shards).
            _shardsLostWithServer = true;
            _log.Info("Worker stopped: {0}, as the parameter server was lost too", e.Message.Split(". The worker stops", 2)[0]);
        }
        else if (e is ShardConnectionLostException && _accepted)
        {
            // Reported now, as the parameter server holds a worker's report for a moment to take it as the job's reason. But a
            // parameter server that stops (a stop signal to its node) releases its shards before its data plane closes and its
            // node leaves: the decision waits (OnLost) for the server's loss, the job's end, or ShardLossDecisionSeconds.
            _failure = e.Message;
            _shardLossPending = true;
            _shardLossAt = System.Diagnostics.Stopwatch.GetTimestamp();
            _serverLossSeen = false;
            _log.Warning("Worker stopped: {0} The job ends with this, unless this worker joined the running job and fails alone (it then counts as " +
                "lost, and the job goes on without this node), or the parameter server turns out to be lost too, or closes its data plane to restart the " +
                "job from its newest checkpoint (then this node registers again).", e.Message);
            _jobHost.Tell(new WorkerFailed(_workerIndex, e.Message, ((ShardConnectionLostException)e).Shard));
        }
        else if (e is Core.Compression.GradientOverflowException or ShardModeRefusedException or ShardRecipeException && _accepted)
        {
            // The job's settings, not this node: every worker would fail alike (a gradient too large for its encoding; a shard
            // recipe this node cannot plan, which the registration's fingerprint all but rules out), so the job ends with the
            // reason, which says all there is (no stack trace). With shards on shard nodes (Cluster:ShardNodes) a worker that cannot take the shards
            // ends the job too (the reason names the settings to align), unless it joined the running job and fails alone: the job
            // host then counts it lost and refuses this node.
            _failure = e.Message;
            _log.Error("Worker failed: {0}", e.Message);
            _jobHost.Tell(new WorkerFailed(_workerIndex, e.Message));
        }
        else _log.Error(e, "Worker node failure: {0}", e.Message);
        return Directive.Stop;
    }, loggingEnabled: false);

    /// <summary>True if the parameter server that accepted this worker is lost as this node sees it: its data plane closed, or its
    /// node is unreachable, or exiting, down or gone from the cluster. A node that is only leaving still hosts the job's
    /// singleton, which would answer a registration.</summary>
    private bool ParameterServerLost()
    {
        if (!_linkOpen) return true;
        var state = _cluster.State;
        return !state.Members.Any(m => m.Address.Equals(_hostNode) && m.Status is MemberStatus.Up or MemberStatus.Leaving)
               || state.Unreachable.Any(m => m.Address.Equals(_hostNode));
    }

    private void StartRegistering()
    {
        _round++;
        Register();
        Timers.StartPeriodicTimer("register", new RegisterAgain(), TimeSpan.FromSeconds(RegisterIntervalSeconds));
        Timers.StartSingleTimer("join-timeout", new JoinTimeout(), TimeSpan.FromSeconds(_options.Cluster.JoinTimeoutSeconds));
    }

    /// <summary>The proxy buffers while no parameter server is known and forwards with this agent as the sender.</summary>
    private void Register()
    {
        if (_accepted) return;
        var node = _cluster.SelfAddress.ToString();
        var fingerprint = ModelFingerprint.Of(_options, _samples);
        _jobHost.Tell(new RegisterWorker(ClusterProtocolInfo.Version, fingerprint, node, _lostParameterServer, _jobId, _security.Identity.Name,
            _security.Identity.RegistrationProof(node, ClusterProtocolInfo.Version, fingerprint), ModelFingerprint.ServerSettingsOf(_options), _round));
    }

    private void OnAccepted(WorkerAccepted accepted)
    {
        if (_accepted || _finished) return; // a repeated registration's answer
        if (accepted.Round != _round) return; // a late answer to an earlier round: its token was spent when this round registered
        if (accepted.DataToken is not { Length: DataPlaneHello.TokenBytes } token || accepted.Proof is null || !JobIdentity.Matches(accepted.Proof,
                _security.Identity.AcceptanceProof(_cluster.SelfAddress.ToString(), accepted.WorkerIndex, accepted.DataHost, accepted.DataPort, token,
                    accepted.Round)))
        {
            var reason = $"a job host at {Sender.Path.Address} accepted this worker without proving it knows job '{_security.Identity.Name}''s secret: " +
                         "it belongs to another job. Check Cluster:SeedNodes, Cluster:JobName and the secret.";
            _log.Error(reason);
            _completion.TrySetException(new NodeRefusedException(reason));
            return;
        }
        _accepted = true;
        if (accepted.IgnoredSettings.Length > 0)
            _log.Warning("The parameter-server node decides these settings for the whole job, and this node was given other values of them: {0}. " +
                "The job uses the parameter-server node's; this node's are ignored. Set them on the parameter-server node (or the same on every node).",
                accepted.IgnoredSettings);
        _hostNode = Sender.Path.Address;
        _jobId = accepted.JobId;
        _workerIndex = accepted.WorkerIndex;
        Timers.Cancel("register");
        Timers.Cancel("join-timeout");
        _generation++;
        _shardsLostWithServer = _shardLossPending = false;
        var loop = _options.Training;
        _worker = Context.Watch(Context.ActorOf(Worker.Props(accepted.WorkerIndex, _options.Model, _data.Train, _data.Test, loop.EvaluationBatchSize, _data.Validation, loop.Seed,
                ReplicaSettings.From(_options), shardDialing: new ShardDialing(_security.Identity, accepted.JobId, _security.Certificates))
            .WithDispatcher(AkkaSettings.ComputeDispatcher), $"worker-{_generation}"));
        _linkOpen = true;
        _link = Context.Watch(Context.ActorOf(ParameterServerLink.Props(accepted.DataHost, accepted.DataPort, accepted.WorkerIndex, _worker, accepted.ParameterCount,
                token, _security.Certificates, _options.Cluster.SharedMemory),
            $"parameter-server-link-{_generation}"));
        Sender.Tell(new WorkerReady(accepted.WorkerIndex, _worker, _round));
        _log.Info("Joined the job as worker {0}", accepted.WorkerIndex);
    }

    private void OnTerminated(Terminated terminated)
    {
        if (_finished || (!terminated.ActorRef.Equals(_worker) && !terminated.ActorRef.Equals(_link))) return; // an earlier generation's
        // The worker's own failure wins over the link closing after it (the parameter server drops a dead worker's link).
        if (terminated.ActorRef.Equals(_worker)) _workerFailed = !_shardsLostWithServer;
        else _linkOpen = false;
        Timers.StartSingleTimer("lost", new Lost(terminated.ActorRef.Path.Name, _generation), TimeSpan.FromSeconds(EndOfJobGraceSeconds));
    }

    private void OnLost(Lost lost)
    {
        // A standby accepted this worker again before the grace timer of the old link ran out (the old parameter server
        // closed its sockets only as its process exited, after a graceful stop): that loss is over, the new link is not lost.
        if (_finished || lost.Generation != _generation) return;
        if (NodeStopping)
        {
            // The node's own stop closed the data plane or removed the parameter server from its view; the caller reports the stop.
            _log.Debug("The data plane to the parameter server ended ({0}) as this node stops; not registering again.", lost.Name);
            return;
        }
        if (_shardLossPending && _workerFailed)
        {
            if (ParameterServerLost() && !_serverLossSeen)
            {
                // A parameter server that failed the job for the lost shard closes its data plane as it tells the workers the job's end
                // (JobFinished, over Akka.Remote): that end may still be on its way, so it is waited for as at any job's end.
                _serverLossSeen = true;
                Timers.StartSingleTimer("lost", lost, TimeSpan.FromSeconds(EndOfJobGraceSeconds));
                return;
            }
            if (ParameterServerLost())
            {
                _log.Info("The parameter server was lost too, which released its shards (or it restarts the job after the lost shard node); the job is not " +
                    "ended by the lost shard connection.");
                _workerFailed = false;
                _failure = null;
            }
            else if (System.Diagnostics.Stopwatch.GetElapsedTime(_shardLossAt) < TimeSpan.FromSeconds(ShardLossDecisionSeconds))
            {
                // Not yet: a stopping server's data plane closes, and its node exits, only once it has written its outputs.
                // The job's end (JobFinished, which a failing job sends too) also ends the wait.
                Timers.StartSingleTimer("lost", lost, TimeSpan.FromSeconds(0.5));
                return;
            }
        }
        if (_workerFailed)
        {
            // A failure on this node, not a lost parameter server: registering again would repeat it.
            _log.Error("The worker stopped; this worker node leaves the job.");
            _completion.TrySetException(new InvalidOperationException(_failure is null ? "The worker actor stopped: it failed (see the log)." : $"The worker failed: {_failure}"));
            return;
        }
        if (!_accepted) return; // already registering again
        _log.Warning("Lost the data plane to the parameter server ({0}); registering again and waiting up to {1:F0} s for a parameter server " +
                     "(a standby takes over from the newest checkpoint, as does a parameter server that restarts the job after a lost shard node)", lost.Name, _options.Cluster.JoinTimeoutSeconds);
        _lostParameterServer = true;
        _accepted = false;
        _linkOpen = false; // also when the loss came through membership, with the old link's socket still open
        if (_worker is not null) Context.Stop(_worker);
        if (_link is not null) Context.Stop(_link);
        _worker = _link = null;
        StartRegistering();
    }
}

/// <summary>
/// This node and the cluster do not belong together: the job host refused this worker (another job, model or protocol),
/// a job host of another job answered it, or a TLS handshake with a peer failed (certificates of different CAs). The
/// message names what differs and the fix; the node exits with code 2, as for a bad config.
/// </summary>
/// <param name="message">What differs and what to do.</param>
public sealed class NodeRefusedException(string message) : Exception(message);

/// <summary>
/// This node was downed before the job ended, by the others or by its own side's decision (it and they could not reach
/// each other for longer than the split-brain resolver waits: a frozen process or machine, a cut link). The job goes on
/// without it if the active parameter server's side is up, which the downed node cannot tell. A worker node exits with
/// code 4 for it: a lost worker, which <c>cluster.sh</c> does not take for a failed job.
/// </summary>
/// <param name="message">What happened (the downing's reason) and what to do.</param>
public sealed class NodeDownedException(string message) : InvalidOperationException(message);

/// <summary>Cluster roles of DistTrain nodes.</summary>
public static class NodeRoles
{
    /// <summary>Tag of the coordinator actor in metrics (not a cluster role: it runs on the parameter-server node).</summary>
    public const string Coordinator = "coordinator";

    /// <summary>The node that runs the parameter server, the coordinator and the job host.</summary>
    public const string ParameterServer = "parameter-server";

    /// <summary>A node that runs one worker replica.</summary>
    public const string Worker = "worker";

    /// <summary>A shard node: it hosts one parameter-server shard (<see cref="ShardHost"/>) for the coordinator that asks.</summary>
    public const string ParameterShard = "parameter-shard";
}
