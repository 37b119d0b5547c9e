using Akka.Actor;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// The cluster singleton of the parameter-server nodes (<see cref="ParameterServerNode.SingletonName"/>): runs the
/// <see cref="JobHost"/> as its child and forwards it every message, with its sender, so the workers, the standbys and the
/// node reach the host at the singleton's path as before. When a run on shard nodes loses a shard node and no standby can take
/// the job over, the host asks to be started again here (<see cref="JobHost.RestartHere"/>): this actor forwards it nothing
/// more but a <see cref="StopAfterQueued"/>, keeps what comes meanwhile (the host passes back up what reached it after it
/// asked), and once the host has stopped starts a new one with the restart (<see cref="JobHost.ShardLossRestart"/>), which
/// takes the job over from the newest checkpoint as a standby would, placing the shards anew on the shard nodes up then. The
/// new host then gets the kept messages, in order; none is lost on the way.
/// </summary>
/// <remarks>
/// A new actor instead of a reset of the old one's state: the host holds dozens of fields about its workers and run, and a
/// fresh instance starts from none of them, as a standby's host does. The old host's children (the coordinator, the server
/// and the worker links) stop with it, which closes the workers' data planes, so the workers register again, and releases
/// the shards, whose hosts watch their owner. A host that stops for another reason stops this actor too, as the singleton
/// it used to be would have stayed stopped.
/// </remarks>
public sealed class JobHostSupervisor : ReceiveActor, IWithUnboundedStash
{
    /// <summary>
    /// To a host that asked for a restart, behind every message forwarded to it: the host has passed everything before it back
    /// up, and stops. In process only.
    /// </summary>
    public sealed class StopAfterQueued : INoSerializationVerificationNeeded
    {
        /// <summary>The only instance.</summary>
        public static readonly StopAfterQueued Instance = new();

        private StopAfterQueued() { }
    }

    /// <summary>
    /// The singleton manager's termination message (<see cref="ParameterServerNode.SingletonManagerProps"/>), at a hand-over to
    /// another node or the node's leave: passed to the host as a <see cref="PoisonPill"/>, behind every message forwarded to it,
    /// as the pill reached the host when it was the singleton itself; this actor stops once the host has.
    /// </summary>
    public sealed class HandOver : INoSerializationVerificationNeeded
    {
        /// <summary>The only instance.</summary>
        public static readonly HandOver Instance = new();

        private HandOver() { }
    }

    private readonly Func<JobHost.ShardLossRestart?, Props> _hostProps;
    private IActorRef _host = ActorRefs.Nobody;
    private JobHost.ShardLossRestart? _restart;
    private bool _handingOver; // the singleton manager's HandOver came: no host is started any more
    private int _started;

    /// <summary>Creates the supervisor; see <see cref="Props"/>.</summary>
    public JobHostSupervisor(Func<JobHost.ShardLossRestart?, Props> hostProps)
    {
        _hostProps = hostProps;
        Running();
    }

    /// <inheritdoc />
    public IStash Stash { get; set; } = null!;

    /// <summary>Props of the supervisor.</summary>
    /// <param name="hostProps">The job host's props: given null for the first host, then each restart in turn.</param>
    public static Props Props(Func<JobHost.ShardLossRestart?, Props> hostProps) =>
        Akka.Actor.Props.Create(() => new JobHostSupervisor(hostProps));

    /// <inheritdoc />
    protected override void PreStart() => _host = StartHost(null);

    private IActorRef StartHost(JobHost.ShardLossRestart? restart) =>
        Context.Watch(Context.ActorOf(_hostProps(restart), $"run-{++_started}"));

    private void Running()
    {
        // After a hand-over the host is on its way out, and a restart it asked for meanwhile starts nothing.
        Receive<JobHost.RestartHere>(_ => Sender.Equals(_host) && !_handingOver, restart =>
        {
            _restart = restart.Restart;
            _host.Tell(StopAfterQueued.Instance);
            Become(Restarting);
        });
        Receive<JobHost.RestartHere>(_ => Sender.Equals(_host), _ => { });
        Receive<Terminated>(t => t.ActorRef.Equals(_host), _ => Context.Stop(Self));
        Receive<HandOver>(_ =>
        {
            _handingOver = true;
            _host.Tell(PoisonPill.Instance);
        });
        ReceiveAny(message => _host.Forward(message));
    }

    private void Restarting()
    {
        Receive<Terminated>(t => t.ActorRef.Equals(_host), _ =>
        {
            // A hand-over while the old host stopped: no new host (it would start, count a restart and take registrations only to be
            // stopped); this actor stops, as the singleton manager expects, and what was kept goes to dead letters with it.
            if (_handingOver)
            {
                Context.Stop(Self);
                return;
            }
            _host = StartHost(_restart);
            Become(Running);
            Stash.UnstashAll();
        });
        Receive<HandOver>(_ => _handingOver = true);
        ReceiveAny(_ => Stash.Stash());
    }
}
