using Akka.Actor;
using Akka.Cluster;
using DistTrain.Cluster.Hosting;

namespace DistTrain.Cluster.Membership;

/// <summary>
/// Akka.Cluster's downing provider for DistTrain (<c>akka.cluster.downing-provider-class</c>): a split-brain resolver
/// that decides with <see cref="ParameterServerSideRule"/> instead of one of Akka's generic strategies. Akka creates it
/// by reflection with the actor system and its cluster.
/// </summary>
/// <remarks>
/// Timing is Akka's split-brain resolver's: an unreachable member is downed once membership and reachability have been
/// stable for <c>akka.cluster.split-brain-resolver.stable-after</c> (Cluster:StableAfterSeconds); only the leader of
/// each side decides; the cluster singleton (the job host) starts on a surviving standby
/// <c>akka.cluster.down-removal-margin</c> after the old node's removal.
/// </remarks>
public sealed class JobDowningProvider : IDowningProvider
{
    private readonly TimeSpan _stableAfter;

    /// <summary>Called by Akka.Cluster when it loads the provider named in the configuration.</summary>
    /// <exception cref="Akka.Configuration.ConfigurationException">stable-after is not positive.</exception>
    public JobDowningProvider(ActorSystem system, Akka.Cluster.Cluster cluster)
    {
        _stableAfter = system.Settings.Config.GetTimeSpan("akka.cluster.split-brain-resolver.stable-after", TimeSpan.FromSeconds(20));
        if (_stableAfter <= TimeSpan.Zero)
            throw new Akka.Configuration.ConfigurationException(
                $"akka.cluster.split-brain-resolver.stable-after is {_stableAfter}; it must be positive (Cluster:StableAfterSeconds).");
        var margin = system.Settings.Config.GetString("akka.cluster.down-removal-margin", "off");
        DownRemovalMargin = margin is "off" or "" ? _stableAfter : system.Settings.Config.GetTimeSpan("akka.cluster.down-removal-margin");
    }

    /// <inheritdoc />
    /// <remarks><c>akka.cluster.down-removal-margin</c>, or stable-after when it is <c>off</c> (Akka's rule).</remarks>
    public TimeSpan DownRemovalMargin { get; }

    /// <inheritdoc />
    public Props DowningActorProps => Props.Create(() => new JobDowningActor(_stableAfter));
}
