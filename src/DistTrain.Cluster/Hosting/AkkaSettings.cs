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

    /// <summary>Seconds between an old parameter server's removal and a standby's start (Akka's <c>down-removal-margin</c>).</summary>
    public const double RemovalMarginSeconds = 3;

    /// <summary>
    /// Split-brain resolution: DistTrain's own downing provider (<see cref="Membership.JobDowningProvider"/>, which keeps
    /// the side of the active parameter server, see <see cref="Membership.ParameterServerSideRule"/>). An unreachable
    /// node is downed after <paramref name="stableAfterSeconds"/> of stable membership, and a singleton (the job host)
    /// starts on the surviving side <see cref="RemovalMarginSeconds"/> after the old node's removal. Akka's default margin
    /// equals stable-after; DistTrain shortens it to speed up a takeover, since its one-parameter-server guarantee rests on
    /// each worker's single data-plane connection, not on the margin.
    /// </summary>
    public static Config Downing(double stableAfterSeconds) => ConfigurationFactory.ParseString($$"""
        akka.cluster.downing-provider-class = "{{typeof(Membership.JobDowningProvider).FullName}}, {{typeof(Membership.JobDowningProvider).Assembly.GetName().Name}}"
        akka.cluster.split-brain-resolver.stable-after = {{(long)(stableAfterSeconds * 1000)}}ms
        akka.cluster.down-removal-margin = {{(long)(RemovalMarginSeconds * 1000)}}ms
        """);

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
