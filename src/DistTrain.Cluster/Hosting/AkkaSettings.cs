using Akka.Configuration;
using DistTrain.Cluster.Serialization;

namespace DistTrain.Cluster.Hosting;

/// <summary>HOCON for DistTrain's actor systems, one concern per method, reused by the tests.</summary>
public static class AkkaSettings
{
    /// <summary>Name of the dispatcher that runs workers and the parameter server.</summary>
    public const string ComputeDispatcher = "disttrain-compute-dispatcher";

    /// <summary>Registers <see cref="MessagePackMessageSerializer"/> for every DistTrain message.</summary>
    /// <param name="verifyEveryMessage">Turn on <c>serialize-messages</c>: every message, even a local one, is serialized and deserialized (tests only; slow).</param>
    public static Config Serialization(bool verifyEveryMessage = false) => ConfigurationFactory.ParseString($$"""
        akka.actor {
          serializers.disttrain-msgpack = "{{typeof(MessagePackMessageSerializer).AssemblyQualifiedName}}"
          serialization-bindings {
            "{{typeof(Protocol.IDistTrainMessage).FullName}}, {{typeof(Protocol.IDistTrainMessage).Assembly.GetName().Name}}" = disttrain-msgpack
          }
          serialize-messages = {{(verifyEveryMessage ? "on" : "off")}}
        }
        """);

    /// <summary>
    /// A dedicated-thread dispatcher for the compute-heavy actors, so Akka's own work (scheduler,
    /// logging, later cluster heartbeats) keeps its threads. <paramref name="threads"/> should not exceed the cores.
    /// </summary>
    public static Config Dispatchers(int threads) => ConfigurationFactory.ParseString($$"""
        {{ComputeDispatcher}} {
          type = ForkJoinDispatcher
          throughput = 1
          dedicated-thread-pool.thread-count = {{Math.Max(1, threads)}}
        }
        """);

    /// <summary>
    /// Failure detection and split-brain resolution from Cluster options. Akka.Cluster's phi-accrual failure detector
    /// gets <see cref="Core.Configuration.ClusterOptions.HeartbeatIntervalSeconds"/> and
    /// <see cref="Core.Configuration.ClusterOptions.AcceptableHeartbeatPauseSeconds"/>; downing is DistTrain's own provider
    /// (<see cref="Membership.JobDowningProvider"/>, which keeps the side of the active parameter server, see
    /// <see cref="Membership.ParameterServerSideRule"/>): an unreachable node is downed after
    /// <see cref="Core.Configuration.ClusterOptions.StableAfterSeconds"/> of stable membership, and a singleton (the job
    /// host) starts on the surviving side <see cref="Core.Configuration.ClusterOptions.RemovalMarginSeconds"/> after the old
    /// node's removal. Akka's default margin equals stable-after; DistTrain's is shorter, since its one-parameter-server
    /// guarantee rests on each worker's single data-plane connection, not on the margin.
    /// </summary>
    public static Config Membership(Core.Configuration.ClusterOptions cluster) => ConfigurationFactory.ParseString($$"""
        akka.cluster.failure-detector.heartbeat-interval = {{Milliseconds(cluster.HeartbeatIntervalSeconds)}}ms
        akka.cluster.failure-detector.acceptable-heartbeat-pause = {{Milliseconds(cluster.AcceptableHeartbeatPauseSeconds)}}ms
        akka.cluster.failure-detector.expected-response-after = {{Milliseconds(cluster.HeartbeatIntervalSeconds)}}ms
        akka.cluster.downing-provider-class = "{{typeof(Membership.JobDowningProvider).FullName}}, {{typeof(Membership.JobDowningProvider).Assembly.GetName().Name}}"
        akka.cluster.split-brain-resolver.stable-after = {{Milliseconds(cluster.StableAfterSeconds)}}ms
        akka.cluster.down-removal-margin = {{Milliseconds(cluster.RemovalMarginSeconds)}}ms
        # Membership moves at the leader's pace: a joined node becomes Up, and a node that leaves at a job's end becomes
        # Exiting and then Removed, only once gossip has converged and the leader's next action comes. With Akka's
        # defaults (both every 1 s) a job's end took 3.8-6.3 s on loopback, 1.4-1.5 s with these (docs/reliability.md,
        # "The end of a job and cancelling"). These are the intervals of Akka.NET's own multi-node cluster tests (MultiNodeClusterSpec).
        # A DistTrain cluster is small (tens of nodes), so five rounds of gossip a second stay a few small messages per
        # node. The reaper, which marks a node unreachable once its failure detector says so, looks every 0.5 s, not 1 s.
        akka.cluster.gossip-interval = 200ms
        akka.cluster.leader-actions-interval = 200ms
        akka.cluster.unreachable-nodes-reaper-interval = 500ms
        akka.cluster.periodic-tasks-initial-delay = 300ms
        # The job host is a cluster singleton. Its manager on a leaving parameter server with no standby waited one hand-over
        # retry (Akka's default 1 s) before it stopped the job host, as the last step of every job's end. Akka counts its
        # limits in retries (ClusterSingletonManager: hand-over max(minimum, margin / interval + 3), take-over 3 fewer), so
        # the minimum grows with the shorter interval: with DistTrain's default down-removal margin (1 s) the new oldest
        # asks for the job host for 16.2 s (Akka's defaults: 16 s) and a leaving oldest offers it for 15.4 s (12 s). With a
        # margin over 12 s the asking ends sooner than with 1 s retries (the margin + 0.8 s, against the margin + 4 s).
        akka.cluster.singleton.hand-over-retry-interval = 200ms
        akka.cluster.singleton.min-number-of-hand-over-retries = 80
        # A worker started a moment before its parameter server finds no one at the seed address; Akka then gates that
        # address for 5 s, which swallowed the join's next InitJoin (then sent after Akka's seed-node-timeout, 5 s): measured,
        # such workers joined 9 s after the parameter server was up. With a 1 s gate that InitJoin got through (4.2-4.4 s).
        # A worker now retries every 1.25 s (JoinRetry), a little longer than the gate, so that each retry finds it open.
        akka.remote.retry-gate-closed-for = 1s
        # A node that shuts down keeps its remoting port open while its endpoints flush (Akka's default: up to 2 s). The other
        # nodes' gate on its address opens 1 s after its connections closed; a message sent to it then (seen: 1.9 s after
        # a refused worker left) opened a connection that the closing port accepted and dropped mid-handshake, and
        # Akka.Remote (1.5.74) shuts down any node whose outbound TLS handshake fails: a refused worker stopped the
        # parameter server. Flushing for at most 0.3 s closes the port well before the gate opens, so such a late
        # connection is refused by the operating system instead, which Akka.Remote only logs.
        akka.remote.flush-wait-on-shutdown = 300ms
        # The command running the node decides how it stops (ClusterNode): a graceful leave, or none when no parameter
        # server is left to leave through. Run from process exit, Akka's hook would start a leave of its own and hold
        # the process until it ends (until the node is downed, when the parameter server is gone).
        akka.coordinated-shutdown.run-by-clr-shutdown-hook = off
        """);

    /// <summary>
    /// How often a node that is not in a cluster yet, and is not its first seed, sends its seeds Akka.Cluster's InitJoin
    /// again: every <see cref="JoinRetrySeconds"/> s, not Akka's seed-node-timeout default of 5 s. For worker nodes, and for
    /// parameter-server nodes whose own address is not the first seed (a standby). A worker started a moment before its
    /// parameter server listens (cluster.sh and docker compose start them together, and the parameter server's process
    /// takes longer to start) finds no one at the seed address, and with 5 s it then joined 3-5 s after the parameter server
    /// was up, the wait measured in every local start; a standby started with the active parameter server (as compose
    /// starts them) likewise. Not for the first seed (the active parameter server): Akka.Cluster uses the same setting as the
    /// time the first seed waits for the other seeds before it forms a cluster of its own, and a shorter one there could make
    /// a restarted first seed start a second cluster beside a running one. Which node is the first seed is read from the
    /// options (<see cref="Core.Configuration.TrainingOptionsValidator.FirstSeedIsOwnAddress"/>, which errs towards "it is"),
    /// as the setting is needed before Akka starts; a worker node never is (<see cref="Core.Configuration.TrainingOptionsValidator.WorkerSeedProblems"/>
    /// refuses one before it starts). The interval is a little longer than Akka.Remote's 1 s gate on a refused seed: a retry
    /// sent while the gate is closed is dropped, and with 1 s every other retry was (connection attempts to a refused seed,
    /// counted with an nft rule, came about 2 s apart; with 1.25 s, 1.24 s apart). So such a node's next retry reaches its
    /// seed within about 1.25 s of the seed being up (docs/architecture.md has join times measured end to end). The retries' warning is thinned to every fifth on these nodes (<see cref="JoinRetryLogFilter"/>).
    /// </summary>
    public static Config JoinRetry() => ConfigurationFactory.ParseString($$"""
        akka.cluster.seed-node-timeout = {{Milliseconds(JoinRetrySeconds)}}ms
        """);

    /// <summary>The interval of a joining node's InitJoin attempts, seconds (<see cref="JoinRetry"/>).</summary>
    public const double JoinRetrySeconds = 1.25;

    /// <summary>True when a node of <paramref name="role"/> with these options retries its join every
    /// <see cref="JoinRetrySeconds"/> s (<see cref="JoinRetry"/>): a worker, or a parameter-server node that is not its first seed.</summary>
    /// <param name="cluster">The node's Cluster options.</param>
    /// <param name="role">The node's role (<see cref="Actors.NodeRoles"/>).</param>
    /// <exception cref="ArgumentNullException"><paramref name="cluster"/> is null.</exception>
    public static bool RetriesJoinQuickly(Core.Configuration.ClusterOptions cluster, string role) =>
        role == Actors.NodeRoles.Worker || !Core.Configuration.TrainingOptionsValidator.FirstSeedIsOwnAddress(cluster);

    /// <summary>
    /// Akka.Remote's listening socket (Cluster:Port) kept to this node alone. With <c>tcp-reuse-addr</c> on (Akka's default
    /// off Windows), DotNetty sets .NET's <c>ReuseAddress</c>, which on Linux sets <c>SO_REUSEPORT</c> as well as
    /// <c>SO_REUSEADDR</c>: any other socket of the same user with <c>SO_REUSEPORT</c> could then listen on the same port,
    /// and the kernel shared the incoming connections between them. Two nodes started at the same moment both passed the
    /// start-up check (<see cref="PortProbe"/>) and both listened on one Cluster:Port, each node taking some of the
    /// other job's connections. Off, the socket has no <c>SO_REUSEPORT</c> and the second bind fails (the node stops with
    /// <see cref="PortInUseException"/>), whatever the order. .NET still sets <c>SO_REUSEADDR</c> alone on every TCP bind
    /// on Linux (Windows allows that bind without it), so a node restarted on its port after a <c>kill -9</c>, while that port's
    /// connections of the killed run are in TIME_WAIT, binds at once (measured; with no <c>SO_REUSEADDR</c> at all such a
    /// bind failed for 61 s).
    /// </summary>
    public static Config ExclusivePort() => ConfigurationFactory.ParseString("""
        akka.remote.dot-netty.tcp.tcp-reuse-addr = off
        """);

    private static long Milliseconds(double seconds) => (long)Math.Round(seconds * 1000);

    /// <summary>Logging through Akka's standard-out logger at <paramref name="level"/> (DEBUG, INFO, WARNING, ERROR, OFF).</summary>
    public static Config Logging(string level) => ConfigurationFactory.ParseString($$"""
        akka.loglevel = {{level}}
        akka.stdout-loglevel = {{level}}
        akka.log-dead-letters = off
        akka.log-dead-letters-during-shutdown = off
        # Nodes leave at the end of every cluster job; their disassociation is expected, not an error.
        akka.remote.log-remote-lifecycle-events = off
        """);
}
