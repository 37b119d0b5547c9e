using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using Akka.Actor;
using Akka.Actor.Internal;
using Akka.Cluster;
using Akka.Event;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Security;
using DistTrain.Cluster.Training;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;
using MessagePack;

namespace DistTrain.Cluster.Actors;

/// <summary>What a shard node brings to the shards it hosts: its job identity, its own settings and its data plane's address.</summary>
/// <param name="Identity">The job's identity (Cluster:JobName and the secret): requests and answers are signed with it.</param>
/// <param name="StartingWeights">The whole model's starting weights as this node builds them from its own settings
/// (<c>ModelFactory.StartingWeights</c>: Model, Training:Seed, Model:Pretrained); a request is taken only if its shard's slice
/// of them has the request's digest.</param>
/// <param name="Optimizer">This node's Optimizer settings: the shard steps with them unless <paramref name="ServerOptimizer"/> is
/// given, and reports their L1 and L2 penalties.</param>
/// <param name="TotalEpochs">This node's Training:Epochs, which the learning-rate schedule spans.</param>
/// <param name="ServerSettings">This node's <see cref="ModelFingerprint.ServerSettingsOf"/>: a request's must equal it.</param>
/// <param name="BindHost">Where the data plane listens (Cluster:Hostname, as <see cref="DataPlaneListener.Start(string, int, ClusterCertificates?)"/> takes it).</param>
/// <param name="DataPort">Cluster:DataPort; 0 picks a free port (tests).</param>
/// <param name="AdvertisedHost">The host name or address the workers connect to (Cluster:PublicHostname, or the node's address).</param>
/// <param name="Certificates">The node's TLS identity; null for plain TCP.</param>
/// <param name="Compression">This node's Cluster:Compression settings (<see cref="ReplicaSettings.CompressionOf"/>): the workers send the
/// trainable part of their slices encoded so (<see cref="ShardDataPlane.Props"/>); null: float32. The node's
/// <see cref="ModelFingerprint.ServerSettingsOf"/>, which a request's must equal, holds them.</param>
/// <param name="ServerOptimizer">The parameter server's share of <paramref name="Optimizer"/>, which the shard steps with
/// (<see cref="Core.Configuration.TrainingOptions.ParameterServerOptimizer"/>: under Cluster:Compression TopK the workers clip,
/// and with momentum correction add the momentum and L1/L2, before encoding); null: <paramref name="Optimizer"/> itself.</param>
public sealed record ShardHostSettings(
    JobIdentity Identity,
    ParameterVector StartingWeights,
    OptimizerOptions Optimizer,
    int TotalEpochs,
    string ServerSettings,
    string BindHost,
    int DataPort,
    string AdvertisedHost,
    ClusterCertificates? Certificates,
    Core.Compression.GradientCompressionSettings? Compression = null,
    OptimizerOptions? ServerOptimizer = null);

/// <summary>
/// The actor of a shard node that hosts one <see cref="ParameterShardActor"/> of a run at a time, with its data plane
/// (<see cref="DataPlaneListener"/> and <see cref="ShardDataPlane"/>), for the coordinator that asks with a
/// <see cref="HostShard"/>. The request's sender becomes the shard's owner, the only actor that starts its parts.
/// </summary>
/// <remarks>
/// <para>A request is refused (<see cref="ShardHostRefused"/>, and a warning here naming the reason) when it is not signed with
/// this node's job secret for its sender and this host (checked first: an actor without the secret learns nothing else), when the settings the parameter server decides for the whole job differ from this
/// node's (listed), when this node's starting slice of the shard is not the coordinator's (another model, seed or pretrained
/// file; a resumed run's request carries its starting slice's digest too, and its owner sends the checkpoint's slice to the shard
/// afterwards), when the model has too few parameters for K
/// shards, when two worker slots share a token, when the data port cannot be bound, and while this node hosts a shard, with
/// one exception. A request of the hosted shard's job from another owner (a standby that took the job over and placed its
/// shards before this node heard of the old owner's end), for any shard, and one this node could serve, is not refused at
/// once: it waits up to 10 s (<see cref="DefaultPreviousOwnerWait"/>; less on a node whose job has a shorter placement time-out)
/// for the hosted shard to be released (its owner gone, the shard failed, or the node stopping), and is then taken as if it had
/// just come. One request waits at a time: a third owner's is refused at once, the waiting owner's next one replaces it (the
/// replaced one is refused), and a waiting owner that stops is forgotten. The same request (every field and the proof) from
/// the same owner is answered again with the same <see cref="ShardHosted"/>. Over plain TCP a captured request could be replayed with a forged sender path to keep a node busy;
/// with Cluster:Tls (mutual TLS, the default) only the job's nodes reach it.</para>
/// <para>The host watches the owner: when it stops (or its node leaves) the shard and its data plane stop and the port is freed,
/// so the node can host the next run's shard. A shard that fails (it throws <see cref="TrainingDivergedException"/> on a
/// divergence) is stopped, not restarted (a restarted shard would hold its starting weights and refuse every slice), and the
/// owner is told with <see cref="ShardFailed"/>, as it is when the host itself stops. After a divergence the message carries its
/// epoch, step and last good version, and the shard's slice of the last good weights follows it when the shard held them (<see cref="ShardSliceChunk.LastGoodRequestId"/>).</para>
/// <para>On a shard node (<c>disttrain node --role parameter-shard</c>, <see cref="Hosting.ClusterNode.RunShardHostAsync"/>) the host
/// also takes the job's end (<see cref="JobFinished"/>) from a parameter-server member of the cluster (the active parameter server
/// sends it), which ends the node's run; a <see cref="JobFinished"/> from any other member, or from outside the cluster, is ignored
/// with a warning naming the sender. Unsigned, like the standby's: with mutual TLS only the job's nodes reach the node. And once
/// the node is up, it fails the run (<see cref="TimeoutException"/>) when no parameter-server member has been up and reachable
/// for the given time (Cluster:JoinTimeoutSeconds): a parameter server that left without reporting the end (stopped with a
/// Checkpoint:Directory and no standby) would otherwise leave the node waiting for ever in a cluster of its own.</para>
/// <para>The coordinator's side is <see cref="RemoteShardedParameterServer"/> (Cluster:ShardNodes; docs/architecture.md, "Where the
/// shards run").</para>
/// </remarks>
public sealed class ShardHost : ReceiveActor, IWithTimers
{
    /// <summary>The host's actor name on a shard node: <c>/user/shard-host</c>.</summary>
    public const string Name = "shard-host";

    private readonly ShardHostSettings _settings;
    private readonly TaskCompletionSource<JobFinished>? _jobEnded;
    private readonly TimeSpan _parameterServerTimeout;
    private Akka.Cluster.Cluster? _cluster;  // on a shard node: watched for a parameter-server member
    // On a shard node, the membership as the events this actor received say (Cluster.State is updated by another actor, so
    // it may lag or lead them): the members by address, and those unreachable.
    private readonly Dictionary<UniqueAddress, Member> _members = [];
    private readonly HashSet<UniqueAddress> _unreachable = [];
    private bool _stopping; // the node is stopping: it hosts nothing more

    private sealed record NoParameterServer;
    private sealed record PreviousOwnerWaitOver;
    private readonly TimeSpan _previousOwnerWait;
    // A signed request of the hosted shard's job from another owner (a takeover), waiting for the hosted shard's owner to be gone.
    private (IActorRef Owner, HostShard Request)? _waiting;

    /// <summary>The shard node is stopping (its coordinated shutdown's first phase, or a stop that skips the cluster leave):
    /// release the shard and tell its owner now, while the node's messages still go out, and host nothing more; answered with
    /// <see cref="Akka.Done"/>.</summary>
    internal sealed record NodeStopping : INoSerializationVerificationNeeded
    {
        /// <summary>The message.</summary>
        public static readonly NodeStopping Instance = new();
    }

    /// <summary>Asks whether the host holds a shard for an owner (answered with a <see cref="bool"/>).</summary>
    internal sealed record IsHosting : INoSerializationVerificationNeeded
    {
        /// <summary>The message.</summary>
        public static readonly IsHosting Instance = new();
    }

    /// <summary>
    /// How long a shard node stopped by a signal (Ctrl-C, SIGTERM) while it hosts a shard stays for the job's end or the shard's
    /// release: when every node stops at once (Ctrl-C of <c>deploy/local/cluster.sh</c>), the parameter server gathers the stop's
    /// weights from its shards and saves them, and only then ends the job; a shard node that left at once took its slice with it.
    /// 10 s: the parameter server's own wait for the stop's weights (docker gives a container 10 s by default before SIGKILL;
    /// <c>deploy/docker-compose.yml</c> gives 40 s). A shard node stopped alone leaves that much later.
    /// </summary>
    public static readonly TimeSpan StopStay = TimeSpan.FromSeconds(10);

    /// <summary>True when <paramref name="host"/> holds a shard; false when it holds none, is gone or does not answer within 1 s.</summary>
    internal static async Task<bool> HostsShardAsync(IActorRef host)
    {
        try
        {
            return await host.Ask<bool>(IsHosting.Instance, TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
        {
            return false;
        }
    }

    /// <summary>Tells a shard node's host that the node is stopping (<see cref="NodeStopping"/>) and waits up to
    /// <paramref name="timeout"/> for it to have released its shard and told the owner; a host that is gone or does not answer
    /// in time is not waited for (its PostStop tells the owner).</summary>
    internal static async Task ReleaseForStopAsync(IActorRef host, TimeSpan timeout)
    {
        try
        {
            await host.Ask<Akka.Done>(NodeStopping.Instance, timeout).ConfigureAwait(false);
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
        {
        }
    }

    /// <inheritdoc />
    public ITimerScheduler Timers { get; set; } = null!;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private HostedShard? _hosting;
    private int _hosted; // shards hosted so far: each one's actors get names of their own, as a released one's may still be stopping
    private readonly Dictionary<IActorRef, Exception> _failures = []; // what each failed child failed with, reported when it has stopped

    /// <summary>A shard being hosted: the request, its owner, the actors and listener, and the answer once the links are known.</summary>
    private sealed class HostedShard(HostShard request, IActorRef owner, ParameterShard shard, DataPlaneListener listener, IActorRef plane)
    {
        public HostShard Request { get; } = request;
        public IActorRef Owner { get; } = owner;
        public ParameterShard Shard { get; } = shard;
        public DataPlaneListener Listener { get; } = listener;
        public IActorRef Plane { get; } = plane;
        public IActorRef ShardActor { get; set; } = ActorRefs.Nobody;
        public ShardHosted? Answer { get; set; }
    }

    /// <summary>How long a takeover's request waits for the previous owner of the hosted shard to be gone: 10 s. A stopped
    /// owner's shard is released as its node hears of the stop; a dead one's as its node hears of the removal from the cluster,
    /// which the standby waits for too before it takes over, so the two come within a gossip round or so of each other.</summary>
    public static readonly TimeSpan DefaultPreviousOwnerWait = TimeSpan.FromSeconds(10);

    /// <summary>Creates the host; see <see cref="Props"/>.</summary>
    public ShardHost(ShardHostSettings settings, TaskCompletionSource<JobFinished>? jobEnded = null, TimeSpan? parameterServerTimeout = null,
        TimeSpan? previousOwnerWait = null)
    {
        _settings = settings;
        _jobEnded = jobEnded;
        _parameterServerTimeout = parameterServerTimeout ?? TimeSpan.FromSeconds(60);
        _previousOwnerWait = previousOwnerWait ?? DefaultPreviousOwnerWait;
        Receive<PreviousOwnerWaitOver>(_ => OnPreviousOwnerWaitOver());
        Receive<HostShard>(OnRequest);
        Receive<JobFinished>(OnJobFinished);
        Receive<ClusterEvent.CurrentClusterState>(state =>
        {
            _members.Clear();
            foreach (var member in state.Members) _members[member.UniqueAddress] = member;
            _unreachable.Clear();
            foreach (var member in state.Unreachable) _unreachable.Add(member.UniqueAddress);
            WatchParameterServers();
        });
        Receive<ClusterEvent.IMemberEvent>(e =>
        {
            if (e is ClusterEvent.MemberRemoved)
            {
                _members.Remove(e.Member.UniqueAddress);
                _unreachable.Remove(e.Member.UniqueAddress);
            }
            else _members[e.Member.UniqueAddress] = e.Member;
            WatchParameterServers();
        });
        Receive<ClusterEvent.UnreachableMember>(e =>
        {
            _unreachable.Add(e.Member.UniqueAddress);
            WatchParameterServers();
        });
        Receive<ClusterEvent.ReachableMember>(e =>
        {
            _unreachable.Remove(e.Member.UniqueAddress);
            WatchParameterServers();
        });
        Receive<NoParameterServer>(_ => OnNoParameterServer());
        Receive<NodeStopping>(_ =>
        {
            _stopping = true;
            if (_hosting is { } hosting)
            {
                hosting.Owner.Tell(Failed(hosting, "the shard node is stopping"));
                Release(hosting);
            }
            Sender.Tell(Akka.Done.Instance);
        });
        Receive<IsHosting>(_ => Sender.Tell(_hosting is not null));
        Receive<ShardDataPlane.Links>(OnLinks);
        Receive<Terminated>(OnTerminated);
    }

    /// <summary>Props of a shard node's host.</summary>
    /// <param name="settings">The node's identity, settings and data-plane address.</param>
    /// <param name="jobEnded">On a shard node: completed with the job's end when a parameter-server member reports it, or failed with a
    /// <see cref="TimeoutException"/> when no parameter-server member is up and reachable for <paramref name="parameterServerTimeout"/>;
    /// null: such reports are ignored and nothing is watched.</param>
    /// <param name="parameterServerTimeout">How long a shard node that is up waits without a parameter-server member (Cluster:JoinTimeoutSeconds);
    /// null: 60 s.</param>
    /// <param name="previousOwnerWait">How long a request of the job whose shard this node hosts, from another owner (a standby
    /// that took the job over), waits for the hosted shard's owner to be gone before it is refused; null:
    /// <see cref="DefaultPreviousOwnerWait"/>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="settings"/> or one of its members but the certificates is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">Training:Epochs below 1, a data port outside 0 to 65535, or a time-out that is not positive.</exception>
    public static Props Props(ShardHostSettings settings, TaskCompletionSource<JobFinished>? jobEnded = null, TimeSpan? parameterServerTimeout = null,
        TimeSpan? previousOwnerWait = null)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(settings.Identity);
        ArgumentNullException.ThrowIfNull(settings.StartingWeights);
        ArgumentNullException.ThrowIfNull(settings.Optimizer);
        ArgumentNullException.ThrowIfNull(settings.ServerSettings);
        ArgumentNullException.ThrowIfNull(settings.BindHost);
        ArgumentNullException.ThrowIfNull(settings.AdvertisedHost);
        ArgumentOutOfRangeException.ThrowIfLessThan(settings.TotalEpochs, 1);
        if (settings.DataPort is < 0 or > 65535) throw new ArgumentOutOfRangeException(nameof(settings), $"Cluster:DataPort = {settings.DataPort}: allowed 0 to 65535.");
        if (parameterServerTimeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(parameterServerTimeout), parameterServerTimeout, "The time-out must be positive.");
        if (previousOwnerWait <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(previousOwnerWait), previousOwnerWait, "The time-out must be positive.");
        return Akka.Actor.Props.Create(() => new ShardHost(settings, jobEnded, parameterServerTimeout, previousOwnerWait));
    }

    /// <summary>SHA-256 of <paramref name="shard"/>'s slice of <paramref name="weights"/>, the floats' bytes as they lie in memory (little-endian).</summary>
    public static byte[] StartingDigest(ParameterShard shard, ParameterVector weights)
    {
        ArgumentNullException.ThrowIfNull(shard);
        ArgumentNullException.ThrowIfNull(weights);
        return SHA256.HashData(MemoryMarshal.AsBytes(weights.Values.AsSpan(shard.Start, shard.Length)));
    }

    /// <summary>
    /// The coordinator's request that a shard node host shard <paramref name="shard"/> of <paramref name="shardCount"/>, signed for
    /// <paramref name="owner"/> (an actor of <paramref name="system"/>, which must send it).
    /// </summary>
    /// <param name="identity">The job's identity.</param>
    /// <param name="system">The owner's actor system: its address goes into the proof, as the shard node sees the sender.</param>
    /// <param name="owner">The coordinator, which sends the request and starts the shard's parts.</param>
    /// <param name="host">The shard node's <see cref="ShardHost"/> the request goes to: a request is taken only by that host.</param>
    /// <param name="jobId">The run's job id.</param>
    /// <param name="shard">The shard's index.</param>
    /// <param name="shardCount">K.</param>
    /// <param name="workerTokens">The worker slots' tokens, slot w's at index w.</param>
    /// <param name="startingWeights">The run's starting weights (whole model).</param>
    /// <param name="serverSettings">The coordinator's <see cref="ModelFingerprint.ServerSettingsOf"/>.</param>
    /// <exception cref="ArgumentException">A token is not <see cref="DataPlaneHello.TokenBytes"/> bytes, or as <see cref="ParameterShards.Plan"/>.</exception>
    public static HostShard Request(JobIdentity identity, ActorSystem system, IActorRef owner, IActorRef host, string jobId, int shard, int shardCount,
        IReadOnlyList<byte[]> workerTokens, ParameterVector startingWeights, string serverSettings)
    {
        ArgumentNullException.ThrowIfNull(identity);
        ArgumentNullException.ThrowIfNull(workerTokens);
        var plan = ParameterShards.Plan(startingWeights.Layout, shardCount);
        if (shard < 0 || shard >= shardCount) throw new ArgumentOutOfRangeException(nameof(shard), $"Shard {shard} of {shardCount}: shards are numbered from 0.");
        var tokens = new byte[workerTokens.Count * DataPlaneHello.TokenBytes];
        for (var w = 0; w < workerTokens.Count; w++)
        {
            if (workerTokens[w] is not { Length: DataPlaneHello.TokenBytes } token)
                throw new ArgumentException($"Worker slot {w}'s data-plane token is not {DataPlaneHello.TokenBytes} bytes.", nameof(workerTokens));
            token.CopyTo(tokens, w * DataPlaneHello.TokenBytes);
        }
        var digest = StartingDigest(plan[shard], startingWeights);
        var proof = identity.ShardRequestProof(PathOf(owner, system), PathOf(host, system), jobId, shard, shardCount, tokens, digest, serverSettings);
        return new HostShard(jobId, shard, shardCount, tokens, digest, serverSettings, proof, ClusterProtocolInfo.Version);
    }

    /// <summary>True if <paramref name="answer"/> is signed with the job's secret as the answer to <paramref name="request"/>, sent by
    /// <paramref name="owner"/>: the shard, its actor, its links and its data plane are a node's of this job, hosted for this request
    /// (an answer to an earlier request, or to another owner's, is not genuine).</summary>
    public static bool IsGenuine(JobIdentity identity, ActorSystem system, IActorRef owner, HostShard request, ShardHosted answer)
    {
        ArgumentNullException.ThrowIfNull(identity);
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(answer);
        var expected = identity.ShardHostedProof(PathOf(owner, system), request.Proof, request.JobId, answer.Shard, PathOf(answer.ShardActor, system),
            answer.DataHost, answer.DataPort, answer.Links.Select(link => PathOf(link, system)));
        return answer.JobId == request.JobId && answer.Shard == request.Shard && JobIdentity.Matches(answer.Proof, expected);
    }

    /// <summary>True if <paramref name="refused"/> is signed with the job's secret as a refusal of <paramref name="request"/> (an
    /// unsigned refusal may come from any actor that can reach the coordinator over plain TCP, or answer another request).</summary>
    public static bool IsGenuine(JobIdentity identity, HostShard request, ShardHostRefused refused)
    {
        ArgumentNullException.ThrowIfNull(identity);
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(refused);
        return refused.Shard == request.Shard && JobIdentity.Matches(refused.Proof, identity.ShardRefusalProof(request.Proof, refused.Shard, refused.Reason));
    }

    /// <summary>True if <paramref name="failed"/> is signed with the job's secret by the host of <paramref name="request"/>'s shard.</summary>
    public static bool IsGenuine(JobIdentity identity, HostShard request, ShardFailed failed)
    {
        ArgumentNullException.ThrowIfNull(identity);
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(failed);
        return failed.Shard == request.Shard && failed.JobId == request.JobId
            && JobIdentity.Matches(failed.Proof, identity.ShardFailureProof(request.Proof, failed.Shard, failed.Reason, failed.DivergenceFields));
    }

    /// <summary>An actor's path with its node's address and its uid, as every node names it (a local actor's with
    /// <paramref name="system"/>'s address): a later actor at the same path (a new incarnation) has another.</summary>
    private static string PathOf(IActorRef actor, ActorSystem system) =>
        actor.Path.ToSerializationFormatWithAddress(((ExtendedActorSystem)system).Provider.DefaultAddress);

    /// <inheritdoc />
    protected override SupervisorStrategy SupervisorStrategy() => new StoppingStrategy((child, failure) =>
    {
        _failures[child] = failure is ActorInitializationException { InnerException: { } inner } ? inner : failure;
        Metrics.DistTrainMetrics.RecordFailure(NodeRoles.ParameterShard); // the shard or its data plane
    });

    /// <summary>Stops a failed child, never restarts it (a restarted shard would hold its starting weights and refuse every
    /// slice), and records which child failed with what.</summary>
    private sealed class StoppingStrategy(Action<IActorRef, Exception> record) : OneForOneStrategy(_ => Directive.Stop)
    {
        /// <inheritdoc />
        public override void ProcessFailure(IActorContext context, bool restart, IActorRef child, Exception cause, ChildRestartStats stats,
            IReadOnlyCollection<ChildRestartStats> children)
        {
            record(child, cause);
            base.ProcessFailure(context, restart, child, cause, stats, children);
        }
    }

    private void OnRequest(HostShard request)
    {
        var owner = Sender;
        // Who asks first: an actor without the job's secret learns nothing of what this node hosts or for whom.
        if (Unsigned(request, owner) is { } unsigned)
        {
            Refuse(owner, request, unsigned, signed: false);
            return;
        }
        if (_stopping)
        {
            Refuse(owner, request, "the shard node is stopping: place the shard on another shard node");
            return;
        }
        if (_hosting is { } hosting)
        {
            if (hosting.Owner.Equals(owner) && JobIdentity.Matches(hosting.Request.Proof, request.Proof)) // the same request, every field
            {
                if (hosting.Answer is { } answer) owner.Tell(answer); // else the answer goes out once the links are known
                return;
            }
            if (!hosting.Owner.Equals(owner) && hosting.Request.JobId == request.JobId && (_waiting is null || _waiting.Value.Owner.Equals(owner)))
            {
                // A takeover of the job: the standby places its shards once the old parameter server is out of the cluster, and this
                // node may not have heard of it yet. A request this node could serve waits for the old owner to be gone (Release
                // takes it then); one it could not is refused now, with its own reason.
                if (Problem(request) is { } unservable)
                {
                    Refuse(owner, request, unservable);
                    return;
                }
                if (_waiting is { } earlier)
                {
                    if (JobIdentity.Matches(earlier.Request.Proof, request.Proof)) return; // the same request again: it waits already
                    Refuse(owner, earlier.Request, "the same owner sent another request while this one waited; the other one waits instead");
                }
                else
                {
                    Context.Watch(owner); // a waiting owner that stops is forgotten (OnTerminated)
                    Timers.StartSingleTimer(nameof(PreviousOwnerWaitOver), new PreviousOwnerWaitOver(), _previousOwnerWait);
                    _log.Info("Shard host: {0} asks for shard {1} of job {2}, whose shard {3} this node still hosts for {4}: the request waits up to {5:F0} s " +
                        "for that owner to be gone (a takeover).", owner.Path, request.Shard, request.JobId, hosting.Request.Shard, hosting.Owner.Path,
                        _previousOwnerWait.TotalSeconds);
                }
                _waiting = (owner, request);
                return;
            }
            Refuse(owner, request, AlreadyHosts(hosting));
            return;
        }
        if (Problem(request) is { } problem)
        {
            Refuse(owner, request, problem);
            return;
        }
        var shard = ParameterShards.Plan(_settings.StartingWeights.Layout, request.ShardCount)[request.Shard];
        byte[][] tokens = [.. Enumerable.Range(0, request.WorkerSlots)
            .Select(w => request.WorkerTokens.AsSpan(w * DataPlaneHello.TokenBytes, DataPlaneHello.TokenBytes).ToArray())];
        Props plane;
        try
        {
            plane = ShardDataPlane.Props(shard, request.ShardCount, tokens, CompressedSlices.Of(_settings.Compression, _settings.StartingWeights.Layout));
        }
        catch (ArgumentException e)
        {
            Refuse(owner, request, e.Message.TrimEnd('.'));
            return;
        }
        DataPlaneListener listener;
        try
        {
            listener = DataPlaneListener.Start(_settings.BindHost, _settings.DataPort, _settings.Certificates);
        }
        catch (Exception e) when (e is PortInUseException or AddressNotLocalException or UnresolvableHostException or System.Net.Sockets.SocketException)
        {
            Refuse(owner, request, $"its data plane cannot listen: {e.Message.TrimEnd('.')}");
            return;
        }
        var planeActor = Context.Watch(Context.ActorOf(plane, $"data-plane-{request.Shard}-{++_hosted}"));
        listener.Attach(planeActor);
        _hosting = new HostedShard(request, Context.Watch(owner), shard, listener, planeActor);
        planeActor.Tell(new ShardDataPlane.GetLinks());
    }

    /// <summary>Why <paramref name="request"/> from <paramref name="owner"/> cannot be trusted (no sender, or not signed with this
    /// node's job secret for its sender and this host), or null.</summary>
    private string? Unsigned(HostShard request, IActorRef owner)
    {
        if (owner.IsNobody()) return "the request has no sender, and the sender owns the shard: send it from the coordinator";
        var identity = _settings.Identity;
        var expected = identity.ShardRequestProof(PathOf(owner, Context.System), PathOf(Self, Context.System), request.JobId, request.Shard,
            request.ShardCount, request.WorkerTokens, request.StartingDigest, request.ServerSettings);
        return JobIdentity.Matches(request.Proof, expected) ? null
            : $"the request is not signed with this node's job secret for its sender and this node (job '{identity.Name}'): the coordinator " +
              "belongs to another job, or its Cluster:JobName or secret differs from this node's";
    }

    /// <summary>Why a signed <paramref name="request"/> is not served here, or null.</summary>
    private string? Problem(HostShard request)
    {
        if (request.OutOfRange() is { } range) return range;
        if (request.ProtocolVersion != ClusterProtocolInfo.Version)
            return ClusterProtocolInfo.Mismatch("the parameter server", request.ProtocolVersion, "this shard node");
        IReadOnlyList<string> differences;
        try
        {
            differences = ModelFingerprint.ServerSettingDifferences(request.ServerSettings, _settings.ServerSettings, limit: 10,
                workerIs: "on the parameter server", serverIs: "on this node");
        }
        catch (Exception e) when (e is JsonException or ArgumentException or InvalidOperationException)
        {
            return "the request's server settings are not the JSON this version writes: every node of a job must run the same DistTrain version";
        }
        if (differences.Count > 0)
            return "the parameter server decides these settings for the whole job, and this shard node steps with its own, which differ" +
                $": {string.Join("; ", differences)}. Give every node of the job the same settings";
        ParameterShard[] plan;
        try
        {
            plan = ParameterShards.Plan(_settings.StartingWeights.Layout, request.ShardCount);
        }
        catch (ArgumentOutOfRangeException e)
        {
            return e.Message.TrimEnd('.');
        }
        var shard = plan[request.Shard];
        if (!JobIdentity.Matches(StartingDigest(shard, _settings.StartingWeights), request.StartingDigest))
            return $"this node's starting weights of shard {shard.Index} [{shard.Start}, {shard.End}) are not the parameter server's: give every node the " +
                "same Model settings, Training:Seed and Model:Pretrained file";
        return null;
    }

    /// <summary>The waiting request, if any, no longer waiting: its time-out cancelled and its owner no longer watched.</summary>
    private (IActorRef Owner, HostShard Request)? TakeWaiting()
    {
        if (_waiting is not { } waiting) return null;
        _waiting = null;
        Timers.Cancel(nameof(PreviousOwnerWaitOver));
        Context.Unwatch(waiting.Owner);
        return waiting;
    }

    private static string AlreadyHosts(HostedShard hosting) =>
        $"this node already hosts shard {hosting.Request.Shard} of {hosting.Request.ShardCount} of job {hosting.Request.JobId} for {hosting.Owner.Path}, " +
        "and a shard node hosts one shard, for one request, at a time: start one shard node per shard";

    /// <summary>The hosted shard's owner was not gone within the wait: the waiting request is refused, as any request while the
    /// node hosts a shard is.</summary>
    private void OnPreviousOwnerWaitOver()
    {
        if (TakeWaiting() is not { } waiting) return;
        if (_hosting is { } hosting)
            Refuse(waiting.Owner, waiting.Request, $"{AlreadyHosts(hosting)} (its owner was still there after {_previousOwnerWait.TotalSeconds:F0} s)");
        else Self.Tell(waiting.Request, waiting.Owner);
    }

    /// <summary>Refuses <paramref name="request"/>, signing the refusal when the request was signed (<paramref name="signed"/>).</summary>
    private void Refuse(IActorRef owner, HostShard request, string reason, bool signed = true)
    {
        _log.Warning("Shard host: refused to host shard {0} of {1} of job {2} for {3}: {4}.", request.Shard, request.ShardCount, request.JobId, owner.Path, reason);
        reason += ".";
        owner.Tell(new ShardHostRefused(request.Shard, reason, signed ? _settings.Identity.ShardRefusalProof(request.Proof, request.Shard, reason) : []));
    }

    /// <summary>
    /// Tells the owner that <paramref name="hosting"/>'s shard diverged, signed, with the divergence's epoch, step and last good
    /// version, and then, when the shard held them, sends its slice of the last good weights as pieces of request
    /// <see cref="ShardSliceChunk.LastGoodRequestId"/> (after the failure, which Akka delivers first: the owner starts the
    /// gathering on it), so the owner puts the job's last good weights together with the other shards' slices.
    /// </summary>
    private void TellDivergence(HostedShard hosting, TrainingDivergedException diverged)
    {
        var slice = diverged.LastGoodVersion >= 0 ? diverged.LastGoodWeights : null;
        var lastGood = slice is null ? -1 : diverged.LastGoodVersion;
        var request = hosting.Request;
        var failed = new ShardFailed(request.JobId, request.Shard, diverged.Message, [], Math.Max(1, diverged.Epoch), Math.Max(1, diverged.Step),
            diverged.LossFinite, lastGood);
        hosting.Owner.Tell(failed with { Proof = _settings.Identity.ShardFailureProof(request.Proof, request.Shard, failed.Reason, failed.DivergenceFields) });
        if (slice is null) return;
        foreach (var piece in ShardSliceChunk.Pieces(ShardSliceChunk.LastGoodRequestId, request.Shard, lastGood, 0, slice, 0, 0))
            hosting.Owner.Tell(piece, Self);
    }

    /// <summary>A <see cref="ShardFailed"/> of <paramref name="hosting"/>'s shard, signed.</summary>
    private ShardFailed Failed(HostedShard hosting, string reason) => new(hosting.Request.JobId, hosting.Request.Shard, reason,
        _settings.Identity.ShardFailureProof(hosting.Request.Proof, hosting.Request.Shard, reason));

    private void OnLinks(ShardDataPlane.Links links)
    {
        if (_hosting is not { Answer: null } hosting || !Sender.Equals(hosting.Plane)) return; // a released plane's late answer
        var request = hosting.Request;
        var shardActor = Context.Watch(Context.ActorOf(ParameterShardActor.Props(hosting.Shard, _settings.StartingWeights,
            _settings.ServerOptimizer ?? _settings.Optimizer, _settings.TotalEpochs, hosting.Owner, configuredOptimizer: _settings.Optimizer), $"shard-{request.Shard}-{_hosted}"));
        hosting.ShardActor = shardActor;
        Metrics.DistTrainMetrics.WatchMailbox(NodeRoles.ParameterShard, shardActor);
        var system = Context.System;
        var port = hosting.Listener.Port;
        var proof = _settings.Identity.ShardHostedProof(PathOf(hosting.Owner, system), request.Proof, request.JobId, request.Shard, PathOf(shardActor, system),
            _settings.AdvertisedHost, port, links.ByWorker.Select(link => PathOf(link, system)));
        hosting.Answer = new ShardHosted(request.JobId, request.Shard, shardActor, _settings.AdvertisedHost, port, links.ByWorker, proof, ClusterProtocolInfo.Version);
        _log.Info($"Shard host: hosting shard {request.Shard} of {request.ShardCount} ([{hosting.Shard.Start}, {hosting.Shard.End}), " +
            $"{hosting.Shard.Length:N0} values) of job {request.JobId} for {hosting.Owner.Path}; data plane on {hosting.Answer.Endpoint} " +
            $"({(_settings.Certificates is null ? "plain TCP" : "TLS")}), {request.WorkerSlots} worker slots, " +
            $"{(_settings.Compression is { } compression ? $"gradient slices encoded as {compression.Kind}" : "float32 gradient slices")}");
        hosting.Owner.Tell(hosting.Answer);
    }

    /// <inheritdoc />
    protected override void PreStart()
    {
        if (_jobEnded is null || ((ExtendedActorSystem)Context.System).Provider is not Akka.Cluster.ClusterActorRefProvider) return;
        _cluster = Akka.Cluster.Cluster.Get(Context.System);
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsSnapshot, typeof(ClusterEvent.IMemberEvent),
            typeof(ClusterEvent.IReachabilityEvent));
        // The owner hears of a stop before the node leaves the cluster: told from PostStop, at the actor system's end, the
        // message could be lost with the node's connections.
        // (3 s: below the phase's 5 s time-out, so a slow host does not also make Akka warn of the phase.) A restarted host adds
        // the task again; the second finds nothing hosted.
        var self = Self;
        CoordinatedShutdown.Get(Context.System).AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "release-hosted-shard", async () =>
        {
            await ReleaseForStopAsync(self, TimeSpan.FromSeconds(3)).ConfigureAwait(false);
            return Akka.Done.Instance;
        });
    }

    /// <summary>Whether a parameter-server member is up and reachable, as the events received say.</summary>
    private bool ParameterServerUp() =>
        _members.Values.Any(m => m.HasRole(NodeRoles.ParameterServer) && m.Status == MemberStatus.Up && !_unreachable.Contains(m.UniqueAddress));

    /// <summary>On a membership change: runs the time-out while this node is up and no parameter-server member is, else stops it.</summary>
    private void WatchParameterServers()
    {
        if (_cluster is null || _jobEnded!.Task.IsCompleted) return;
        var selfUp = _members.TryGetValue(_cluster.SelfUniqueAddress, out var self) && self.Status == MemberStatus.Up;
        if (ParameterServerUp() || !selfUp)
        {
            Timers.Cancel(nameof(NoParameterServer)); // a time-out message already queued is dropped too
            return;
        }
        if (!Timers.IsTimerActive(nameof(NoParameterServer)))
            Timers.StartSingleTimer(nameof(NoParameterServer), new NoParameterServer(), _parameterServerTimeout);
    }

    private void OnNoParameterServer()
    {
        if (_cluster is null || ParameterServerUp()) return;
        _jobEnded!.TrySetException(new TimeoutException($"No parameter-server node has been up and reachable in this cluster for " +
            $"{_parameterServerTimeout.TotalSeconds:F0} s (Cluster:JoinTimeoutSeconds): the job's parameter server left without reporting the job's " +
            "end (stopped with Checkpoint:Directory set and no standby, or the job ended before this node joined), so this shard node has no job " +
            "to serve. Start it again with the job's other nodes; a job resumed with Checkpoint:Resume forms a new cluster."));
    }

    /// <summary>The job's end, taken only from a member of the cluster with the parameter-server role: the node's run ends with it.</summary>
    private void OnJobFinished(JobFinished finished)
    {
        if (_jobEnded is null) return;
        var member = _members.Values.FirstOrDefault(m => m.Address.Equals(Sender.Path.Address));
        if (member is null || !member.HasRole(NodeRoles.ParameterServer))
        {
            _log.Warning("Shard host: ignored a report of the job's end from {0}, which is not a parameter-server member of this cluster.", Sender.Path);
            return;
        }
        _log.Info("The active parameter server reports the end of the job: {0}", finished.Summary);
        _log.Info("Data plane of this shard node: {0:N0} bytes received (the workers' gradient slices) and {1:N0} sent (the shard's weights), frame headers included.",
            TensorFrame.BytesReceived, TensorFrame.BytesSent);
        _jobEnded.TrySetResult(finished);
    }

    private void OnTerminated(Terminated terminated)
    {
        if (_waiting is { } waiting && terminated.ActorRef.Equals(waiting.Owner))
        {
            _log.Info("Shard host: {0}, whose request waited for the hosted shard's owner to be gone, is gone itself; its request is dropped.", waiting.Owner.Path);
            TakeWaiting();
            return;
        }
        if (_hosting is not { } hosting) return; // a released shard's actors, stopping
        var request = hosting.Request;
        if (terminated.ActorRef.Equals(hosting.Owner))
        {
            _log.Info("Shard host: the owner of shard {0} of job {1} ({2}) is gone; the shard and its data plane stop, and this node can host another.",
                request.Shard, request.JobId, hosting.Owner.Path);
        }
        else if (terminated.ActorRef.Equals(hosting.ShardActor) || terminated.ActorRef.Equals(hosting.Plane))
        {
            var what = terminated.ActorRef.Equals(hosting.Plane) ? "its data plane" : "the shard";
            _failures.TryGetValue(terminated.ActorRef, out var failure);
            var reason = failure is not null ? $"{what} failed: {failure.Message}" : $"{what} stopped";
            _log.Warning("Shard host: shard {0} of job {1}: {2}; the shard and its data plane stop.", request.Shard, request.JobId, reason);
            Metrics.DistTrainMetrics.UnwatchMailbox(NodeRoles.ParameterShard, hosting.ShardActor); // gone before its owner hears of it (Release again)
            if (failure is TrainingDivergedException diverged) TellDivergence(hosting, diverged);
            else hosting.Owner.Tell(Failed(hosting, reason));
        }
        else return;
        Release(hosting);
    }

    private void Release(HostedShard hosting)
    {
        _hosting = null;
        _failures.Clear();
        Context.Unwatch(hosting.Owner);
        hosting.Listener.Detach(hosting.Plane);
        hosting.Listener.Dispose();
        Metrics.DistTrainMetrics.UnwatchMailbox(NodeRoles.ParameterShard, hosting.ShardActor);
        foreach (var actor in new[] { hosting.ShardActor, hosting.Plane })
            if (!actor.IsNobody())
            {
                Context.Unwatch(actor);
                Context.Stop(actor);
            }
        // The takeover's request, taken now as if it came now (a stopping node refuses it).
        if (TakeWaiting() is { } waiting) Self.Tell(waiting.Request, waiting.Owner);
    }

    /// <inheritdoc />
    protected override void PostStop()
    {
        _cluster?.Unsubscribe(Self);
        if (_hosting is { } hosting)
        {
            Metrics.DistTrainMetrics.UnwatchMailbox(NodeRoles.ParameterShard, hosting.ShardActor);
            hosting.Listener.Dispose();
            hosting.Owner.Tell(Failed(hosting, "the shard node's host stopped (the node is shutting down)"));
            if (_waiting is { } waiting) Refuse(waiting.Owner, waiting.Request, "the shard node is stopping: place the shard on another shard node");
        }
        base.PostStop();
    }
}
