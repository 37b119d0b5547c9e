using System.Collections.Concurrent;
using Akka.Actor;
using Akka.Cluster;
using Akka.Event;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// Drops Akka.Remote's reports about connections to nodes that left the cluster in order (Leaving, Exiting, Removed), and
/// all of them once this node itself is leaving. At the end of a job every node leaves; the TCP connection between two
/// of them then closes while one side still holds it, and Akka.Remote logs that as a failed association (a WARNING, an
/// ERROR "Disassociated" and a stack trace) although nothing failed. A node that is lost without leaving (killed,
/// partitioned, downed) is not in the set: what Akka.Remote says about it is still logged.
/// </summary>
public sealed class DepartedNodesLogFilter : LogFilterBase
{
    private readonly ConcurrentDictionary<string, byte> _departed = new(StringComparer.OrdinalIgnoreCase);
    private volatile bool _leaving;

    /// <inheritdoc />
    public override LogFilterType FilterType => LogFilterType.Source;

    /// <summary><paramref name="address"/> left the cluster in order: its connection's closing is expected.</summary>
    public void Departed(Address address) => _departed.TryAdd(Uri.EscapeDataString(address.ToString()), 0);

    /// <summary>This node is leaving: every connection's closing is expected from now on.</summary>
    public void Leaving() => _leaving = true;

    /// <inheritdoc />
    public override LogFilterDecision ShouldKeepMessage(LogEvent content, string? expandedMessage = null)
    {
        // Endpoint actors are named after the remote address, URL-encoded: .../endpointManager/reliableEndpointWriter-akka.tcp%3A%2F%2F...
        var source = content.LogSource;
        if (source is null || !source.Contains("/endpointManager/", StringComparison.Ordinal)) return LogFilterDecision.NoDecision;
        if (_leaving) return LogFilterDecision.Drop;
        foreach (var address in _departed.Keys)
            if (source.Contains(address, StringComparison.OrdinalIgnoreCase)) return LogFilterDecision.Drop;
        return LogFilterDecision.NoDecision;
    }

    /// <summary>Props of the actor that feeds <paramref name="filter"/> from the cluster's membership events.</summary>
    public static Props WatcherProps(DepartedNodesLogFilter filter) => Props.Create(() => new Watcher(filter));

    private sealed class Watcher : ReceiveActor
    {
        private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);

        public Watcher(DepartedNodesLogFilter filter)
        {
            Receive<ClusterEvent.MemberLeft>(e => Mark(filter, e.Member));
            Receive<ClusterEvent.MemberExited>(e => Mark(filter, e.Member));
            Receive<ClusterEvent.MemberRemoved>(e =>
            {
                if (e.PreviousStatus is MemberStatus.Leaving or MemberStatus.Exiting) Mark(filter, e.Member);
            });
        }

        private void Mark(DepartedNodesLogFilter filter, Member member)
        {
            if (member.Address.Equals(_cluster.SelfAddress)) filter.Leaving();
            else filter.Departed(member.Address);
        }

        protected override void PreStart() => _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.MemberLeft), typeof(ClusterEvent.MemberExited), typeof(ClusterEvent.MemberRemoved));

        protected override void PostStop() => _cluster.Unsubscribe(Self);
    }
}
