using DistTrain.Core;

namespace DistTrain.Cluster.Membership;

/// <summary>One cluster member as the downing rule sees it.</summary>
/// <param name="Name">The member's address, for logs.</param>
/// <param name="IsParameterServer">True for a node with the <c>parameter-server</c> role (the active one or a standby).</param>
/// <param name="IsReachable">True when the member is on this side: reachable from the node that decides.</param>
public sealed record MemberSide(string Name, bool IsParameterServer, bool IsReachable);

/// <summary>Which side of an unreachability split goes down.</summary>
public enum DowningDecision
{
    /// <summary>This side stays; every unreachable member is downed.</summary>
    DownUnreachable,

    /// <summary>This side goes down (the deciding node included); the other side stays.</summary>
    DownReachable,
}

/// <summary>A decision and the reason, in words for the log and for the exit message of a downed node.</summary>
/// <param name="Decision">Which side goes down.</param>
/// <param name="Reason">Why, naming the active parameter server and the sides.</param>
public sealed record DowningOutcome(DowningDecision Decision, string Reason);

/// <summary>
/// DistTrain's split-brain rule: keep the side that holds the active parameter server, except when the active parameter
/// server is alone and a standby is on the other side, which then takes over. A pure function of one node's view, so
/// both sides of a clean partition reach complementary decisions.
/// </summary>
/// <remarks>
/// <para>The active parameter server is the oldest member with the <c>parameter-server</c> role (the cluster singleton
/// runs there). Akka's keep-oldest with <c>down-if-alone</c> downs the oldest node whenever it is alone against two or
/// more unreachable members; counted over all members it therefore downed a parameter server whose two workers died
/// together, and counted over the role only it downs a lone standby (with all the workers) when the active one dies.
/// A synchronous job needs neither: workers are replaceable and carry no state, so losing any number of them must leave
/// the parameter server paused, waiting for new ones (docs/reliability.md).</para>
/// <list type="bullet">
/// <item>The active parameter server is on this side: this side stays, unless it is that node alone and a standby is on
/// the other side (it was isolated; the standby and the workers with it continue the job).</item>
/// <item>The active parameter server is on the other side: this side goes down, unless that node is alone there and a
/// standby is on this side (it died or was isolated; the standby takes over).</item>
/// <item>No parameter-server node at all: this side stays, so worker nodes keep waiting for one
/// (Cluster:JoinTimeoutSeconds ends them).</item>
/// </list>
/// </remarks>
public static class ParameterServerSideRule
{
    /// <summary>Decides which side goes down.</summary>
    /// <param name="membersOldestFirst">Every member that is not down, exiting or removed, oldest first (Akka's
    /// <c>Member.AgeOrdering</c>, which is how the cluster singleton picks its node), each flagged reachable or not.</param>
    /// <returns>The decision and its reason.</returns>
    /// <exception cref="ArgumentException">No member is reachable: the deciding node is always on its own side.</exception>
    public static DowningOutcome Decide(IReadOnlyList<MemberSide> membersOldestFirst)
    {
        ArgumentNullException.ThrowIfNull(membersOldestFirst);
        var reachable = membersOldestFirst.Count(m => m.IsReachable);
        if (reachable == 0) throw new ArgumentException("The deciding node is reachable to itself: at least one member must be reachable.", nameof(membersOldestFirst));
        var unreachable = membersOldestFirst.Count - reachable;
        var active = membersOldestFirst.FirstOrDefault(m => m.IsParameterServer);
        if (active is null)
            return new(DowningDecision.DownUnreachable,
                reachable == 1 ? "no parameter-server node is left; the 1 reachable node stays and waits for one"
                    : $"no parameter-server node is left; the {Counts.Number(reachable)} reachable nodes stay and wait for one");
        var standbyHere = membersOldestFirst.Any(m => m.IsParameterServer && m.IsReachable && !ReferenceEquals(m, active));
        var standbyThere = membersOldestFirst.Any(m => m.IsParameterServer && !m.IsReachable && !ReferenceEquals(m, active));
        if (active.IsReachable)
            return reachable == 1 && standbyThere
                ? new(DowningDecision.DownReachable,
                    $"the active parameter server {active.Name} is alone, cut off from the {Counts.Of(unreachable, "other node")}, which {(unreachable == 1 ? "is" : "include")} a standby parameter server that takes over")
                : new(DowningDecision.DownUnreachable,
                    $"this side holds the active parameter server {active.Name}; the {Counts.Of(unreachable, "unreachable node")} {(unreachable == 1 ? "is" : "are")} downed" +
                    (reachable == 1 ? " and it waits for workers to join" : ""));
        return unreachable == 1 && standbyHere
            ? new(DowningDecision.DownUnreachable,
                $"the active parameter server {active.Name} is unreachable and alone; a standby parameter server on this side takes over")
            : new(DowningDecision.DownReachable,
                $"the active parameter server {active.Name} is on the other side with {Counts.Of(unreachable - 1, "other node")}; this side's {Counts.Of(reachable, "node")} {(reachable == 1 ? "leaves" : "leave")} the cluster");
    }
}
