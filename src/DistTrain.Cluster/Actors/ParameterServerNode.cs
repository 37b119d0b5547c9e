using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Tools.Singleton;
using Akka.Event;
using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// Runs on every node with the <c>parameter-server</c> role. The <see cref="JobHost"/> (and with it the coordinator
/// and the parameter server) is a cluster singleton among those nodes (Akka.Cluster.Tools'
/// <see cref="ClusterSingletonManager"/>, at <see cref="SingletonManagerPath"/>): it runs on the oldest one, the
/// active parameter server; the others are standbys. When the active node dies, the split-brain resolver downs it
/// and the singleton starts on the next oldest, which resumes from the newest checkpoint (a <em>takeover</em>).
/// </summary>
/// <remarks>
/// This actor tracks whether its node has been a standby (it saw an older parameter-server node up), which is what
/// makes the job host it may later start a takeover, and completes the node's run when the active parameter server
/// on another node reports the end of the job (<see cref="JobFinished"/>). As a standby it asks the active node's job
/// host whether its job and settings are the job's (<see cref="RegisterStandby"/>, every 2 s until answered, and again
/// whenever another node becomes the active one); refused, it fails the node's run with <see cref="NodeRefusedException"/>
/// (exit code 2) instead of standing by to take over a job it would run with other settings.
/// </remarks>
public sealed class ParameterServerNode : ReceiveActor, IWithTimers
{
    /// <summary>What a standby sends the active node's job host: this node's job, version and settings.</summary>
    /// <param name="Security">The job's identity, which proves the secret.</param>
    /// <param name="Fingerprint">This node's <see cref="Hosting.ModelFingerprint.Of"/> (with its samples), as its job host's.</param>
    /// <param name="ServerSettings">This node's <see cref="Hosting.ModelFingerprint.ServerSettingsOf"/>.</param>
    public sealed record StandbyRegistration(Security.ClusterSecurity Security, string Fingerprint, string ServerSettings);

    /// <summary>Sends <see cref="RegisterStandby"/> to the active node again.</summary>
    private sealed record RegisterAgain
    {
        public static readonly RegisterAgain Instance = new();
    }

    /// <summary>How often a standby asks the active node's job host again until it answers (it may not run yet).</summary>
    private static readonly TimeSpan RegisterEvery = TimeSpan.FromSeconds(2);

    /// <summary>Registrations a standby sends an active node that does not answer before it stops asking (one minute).</summary>
    private const int MaxUnansweredRegistrations = 30;

    /// <summary>Name under <c>/user</c>.</summary>
    public const string Name = "parameter-server-node";

    /// <summary>Name of the singleton manager under <c>/user</c>, the same on every parameter-server node.</summary>
    public const string SingletonManagerName = "job";

    /// <summary>Path of the singleton manager, which worker nodes' singleton proxies point at.</summary>
    public const string SingletonManagerPath = "/user/" + SingletonManagerName;

    /// <summary>Name of the job host under its singleton manager.</summary>
    public const string SingletonName = "host";

    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly FailoverState _state;
    private readonly TaskCompletionSource<JobFinished> _finishedElsewhere;
    private Address? _active;
    private readonly Dictionary<UniqueAddress, Member> _upParameterServers = [];
    private readonly StandbyRegistration? _registration;
    private bool _refused; // the active node refused this one as its standby
    private int _unanswered; // registrations sent to the current active node without an answer

    /// <summary>Creates the node actor; see <see cref="Props"/>.</summary>
    public ParameterServerNode(FailoverState state, TaskCompletionSource<JobFinished> finishedElsewhere, StandbyRegistration? registration = null)
    {
        _state = state;
        _finishedElsewhere = finishedElsewhere;
        _registration = registration;
        Receive<ClusterEvent.CurrentClusterState>(s =>
        {
            foreach (var member in s.Members) Update(member);
            Track();
        });
        Receive<ClusterEvent.IMemberEvent>(e =>
        {
            Update(e.Member);
            Track();
        });
        Receive<JobFinished>(finished =>
        {
            // Only another node's job host sends this (its own node completes through the job host). A host that the
            // singleton manager starts here afterwards, at the hand-over of a normal end, sees Finished and starts nothing.
            _state.Finished = true;
            _log.Info("The active parameter server reports the end of the job: {0}", finished.Summary);
            _finishedElsewhere.TrySetResult(finished);
        });
        Receive<RegisterAgain>(_ => RegisterWithActive());
        Receive<StandbyAccepted>(_ =>
        {
            if (Sender.Path.Address != _active) return; // the answer of a node that is no longer the active one
            Timers.Cancel(nameof(RegisterAgain));
            _state.StandbyChecked = true;
            _log.Debug("The active parameter server {0} accepted this node as its standby", _active);
        });
        Receive<RegistrationRefused>(refused =>
        {
            // Only the current active node's refusal counts: a late one from a node that is no longer active (or after this
            // node took over) is not about the job this node stands by for.
            if (_refused || _active is null || _active == _cluster.SelfAddress || Sender.Path.Address != _active) return;
            _refused = true;
            Timers.Cancel(nameof(RegisterAgain));
            // The node's run ends with the refusal (the CLI: one "refused:" line, exit code 2), and the node leaves the cluster.
            _finishedElsewhere.TrySetException(new NodeRefusedException(
                $"The active parameter server {Sender.Path.Address} refused this node as its standby: {refused.Reason}"));
        });
    }

    /// <inheritdoc />
    public ITimerScheduler Timers { get; set; } = null!;

    /// <summary>Props of the node actor.</summary>
    /// <param name="state">Shared with the job host this node's singleton manager may start.</param>
    /// <param name="finishedElsewhere">Completed when the job ends on another parameter-server node; failed with
    /// <see cref="NodeRefusedException"/> when the active parameter server refuses this node as its standby.</param>
    /// <param name="registration">What this node sends the active one as a standby; null sends nothing (the node stands by unchecked).</param>
    public static Props Props(FailoverState state, TaskCompletionSource<JobFinished> finishedElsewhere, StandbyRegistration? registration = null) =>
        Akka.Actor.Props.Create(() => new ParameterServerNode(state, finishedElsewhere, registration));

    /// <summary>
    /// Props of the singleton manager that runs <paramref name="jobHost"/> on the oldest parameter-server node. Create
    /// it on every such node under <see cref="SingletonManagerName"/>.
    /// </summary>
    /// <remarks>The termination message at a hand-over is <see cref="JobHostSupervisor.HandOver"/> for a <see cref="JobHostSupervisor"/>'s props
    /// (<see cref="PoisonPill"/> otherwise, as for a <see cref="JobHost"/> run alone): the supervisor passes it on behind the messages
    /// it forwarded, so none is dropped by a stop that overtakes them.</remarks>
    public static Props SingletonManagerProps(ActorSystem system, Props jobHost) =>
        ClusterSingletonManager.Props(jobHost, jobHost.Type == typeof(JobHostSupervisor) ? JobHostSupervisor.HandOver.Instance : PoisonPill.Instance,
            ClusterSingletonManagerSettings.Create(system).WithRole(NodeRoles.ParameterServer).WithSingletonName(SingletonName));

    /// <summary>Props of a proxy that forwards to the job host wherever it runs (buffering while it moves).</summary>
    public static Props SingletonProxyProps(ActorSystem system) =>
        ClusterSingletonProxy.Props(SingletonManagerPath,
            ClusterSingletonProxySettings.Create(system).WithRole(NodeRoles.ParameterServer).WithSingletonName(SingletonName)
                // Its "not found after 30 s" warning fires at start-up and while a standby takes over; the worker agent
                // reports both itself (Cluster:JoinTimeoutSeconds), in words that say what to do.
                .WithLogSingletonIdentificationFailure(false));

    /// <inheritdoc />
    protected override void PreStart() =>
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsSnapshot, typeof(ClusterEvent.IMemberEvent));

    /// <inheritdoc />
    protected override void PostStop() => _cluster.Unsubscribe(Self);

    /// <summary>Keeps the up parameter-server members from the events themselves (Cluster.State may lag them).</summary>
    private void Update(Member member)
    {
        if (member.UniqueAddress.Equals(_cluster.SelfUniqueAddress) && member.Status is MemberStatus.Leaving or MemberStatus.Exiting
                or MemberStatus.Down or MemberStatus.Removed)
            _leaving = true;
        if (!member.HasRole(NodeRoles.ParameterServer)) return;
        if (member.Status == MemberStatus.Up) _upParameterServers[member.UniqueAddress] = member;
        else if (member.Status is MemberStatus.Down or MemberStatus.Exiting or MemberStatus.Removed or MemberStatus.Leaving)
            _upParameterServers.Remove(member.UniqueAddress);
    }

    private bool _leaving; // this node is leaving the cluster, or was downed

    private void Track()
    {
        // The singleton runs on the oldest up member of the role (Member.AgeOrdering, as the singleton manager).
        var oldest = _upParameterServers.Values.OrderBy(m => m, Member.AgeOrdering).FirstOrDefault();
        if (oldest is null || oldest.Address == _active) return;
        // A node that is leaving (stopped, or at the end of the job) stands by for nothing: the next oldest is the active
        // one now, but this node will not take over from it, and saying so was wrong in the last lines of its log.
        if (_leaving && oldest.Address != _cluster.SelfAddress) return;
        _active = oldest.Address;
        if (oldest.Address == _cluster.SelfAddress)
        {
            Timers.Cancel(nameof(RegisterAgain));
            if (!_state.WasStandby) _log.Info("This node is the active parameter server");
            return;
        }
        _state.WasStandby = true;
        _state.StandbyChecked = false; // until this active node has compared the settings
        _unanswered = 0;
        _log.Info("Standby parameter server: the active one is {0}; this node takes over from the newest checkpoint if that node fails", oldest.Address);
        // Whichever node came second is the standby, so its settings are compared once both are up, whichever started first.
        if (_registration is not null && !_refused)
        {
            RegisterWithActive();
            Timers.StartPeriodicTimer(nameof(RegisterAgain), RegisterAgain.Instance, RegisterEvery);
        }
    }

    /// <summary>Asks the active node's job host (<see cref="RegisterStandby"/>) whether this node may stand by for its job.</summary>
    private void RegisterWithActive()
    {
        if (_registration is null || _active is null || _active == _cluster.SelfAddress || _leaving || _refused)
        {
            Timers.Cancel(nameof(RegisterAgain));
            return;
        }
        if (++_unanswered > MaxUnansweredRegistrations)
        {
            // An active node of an older DistTrain (protocol version 6) does not know the message: it stands by unchecked, as before.
            Timers.Cancel(nameof(RegisterAgain));
            _log.Warning("The active parameter server {0} has not answered this node's standby registration in {1:F0} s (another DistTrain version, " +
                "or its job host does not run): this node stands by without the check that its settings are the job's.", _active,
                MaxUnansweredRegistrations * RegisterEvery.TotalSeconds);
            return;
        }
        var name = _cluster.SelfAddress.ToString();
        var identity = _registration.Security.Identity;
        Context.ActorSelection(new RootActorPath(_active) / "user" / SingletonManagerName / SingletonName).Tell(new RegisterStandby(
            ClusterProtocolInfo.Version, _registration.Fingerprint, name, identity.Name,
            identity.RegistrationProof(name, ClusterProtocolInfo.Version, _registration.Fingerprint), _registration.ServerSettings));
    }
}

/// <summary>What a parameter-server node knows about failover, shared between its node actor and its job host.</summary>
public sealed class FailoverState
{
    private volatile bool _wasStandby;
    private volatile bool _hostsJob;
    private volatile bool _finished;
    private volatile bool _standbyChecked;

    /// <summary>
    /// True once this node saw an older parameter-server node up: a job host started here afterwards takes over a
    /// running job, so it resumes from the newest checkpoint.
    /// </summary>
    public bool WasStandby { get => _wasStandby; set => _wasStandby = value; }

    /// <summary>
    /// True once the active parameter server accepted this node as its standby (<see cref="StandbyAccepted"/>): its settings
    /// are the job's. False before that answer (the active node answers within about 2 s of the standby's start), and from
    /// when another node becomes the active one until that one answers. A job host that takes the job over unchecked compares
    /// its settings with those of the job's workers instead (<see cref="JobHost"/>).
    /// </summary>
    public bool StandbyChecked { get => _standbyChecked; set => _standbyChecked = value; }

    /// <summary>True once a job host started on this node.</summary>
    public bool HostsJob { get => _hostsJob; set => _hostsJob = value; }

    /// <summary>True once another parameter-server node reported the end of the job.</summary>
    public bool Finished { get => _finished; set => _finished = value; }
}
