using System.Diagnostics;
using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using DistTrain.Cluster.Actors;
using DistTrain.Core;

namespace DistTrain.Cluster.Membership;

/// <summary>
/// The downing actor of <see cref="JobDowningProvider"/>: keeps the members and the unreachable ones from cluster events,
/// and when this node is its side's leader and the view has been stable for stable-after, downs one side as
/// <see cref="ParameterServerSideRule"/> decides, with a log line that names the nodes and the reason.
/// </summary>
/// <remarks>
/// A view that keeps changing (nodes flapping between reachable and unreachable) is decided anyway after three times
/// stable-after, on the view of that moment: a training job that waits forever is worse than one that loses a node.
/// </remarks>
internal sealed class JobDowningActor : ReceiveActor, IWithTimers
{
    private const string TickKey = "tick";
    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly DowningReport _report = DowningReport.Get(Context.System);
    private readonly TimeSpan _stableAfter;
    private readonly Dictionary<UniqueAddress, Member> _members = [];
    private readonly HashSet<UniqueAddress> _unreachable = [];
    private long _lastChange = Stopwatch.GetTimestamp();
    private long _unstableSince; // 0 while every member is reachable
    private bool _leader;
    private bool _selfUp;

    /// <summary>Creates the actor; Akka.Cluster starts it through <see cref="JobDowningProvider.DowningActorProps"/>.</summary>
    public JobDowningActor(TimeSpan stableAfter)
    {
        _stableAfter = stableAfter;
        Receive<ClusterEvent.MemberRemoved>(e => Change(() => Forget(e.Member)));
        Receive<ClusterEvent.MemberExited>(e => Change(() => Forget(e.Member)));
        Receive<ClusterEvent.MemberDowned>(e =>
        {
            if (e.Member.UniqueAddress.Equals(_cluster.SelfUniqueAddress)) RecordDownedSelf();
            Change(() => Forget(e.Member));
        });
        Receive<ClusterEvent.IMemberEvent>(e => Change(() =>
        {
            _members[e.Member.UniqueAddress] = e.Member;
            if (e.Member.UniqueAddress.Equals(_cluster.SelfUniqueAddress) && e.Member.Status == MemberStatus.Up) _selfUp = true;
        }));
        Receive<ClusterEvent.UnreachableMember>(e => Change(() => _unreachable.Add(e.Member.UniqueAddress)));
        Receive<ClusterEvent.ReachableMember>(e => Change(() => _unreachable.Remove(e.Member.UniqueAddress)));
        Receive<ClusterEvent.LeaderChanged>(e => _leader = e.Leader is not null && e.Leader.Equals(_cluster.SelfAddress));
        Receive<Tick>(_ => OnTick());
        ReceiveAny(_ => { });
    }

    /// <inheritdoc />
    public ITimerScheduler Timers { get; set; } = null!;

    private sealed class Tick
    {
        public static readonly Tick Instance = new();
    }

    /// <inheritdoc />
    protected override void PreStart()
    {
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
            typeof(ClusterEvent.IMemberEvent), typeof(ClusterEvent.IReachabilityEvent), typeof(ClusterEvent.LeaderChanged));
        // Check often enough that a decision comes within a small part of stable-after of its deadline.
        var interval = TimeSpan.FromTicks(Math.Clamp(_stableAfter.Ticks / 10, TimeSpan.FromMilliseconds(100).Ticks, TimeSpan.FromSeconds(1).Ticks));
        Timers.StartPeriodicTimer(TickKey, Tick.Instance, interval);
    }

    /// <inheritdoc />
    protected override void PostStop() => _cluster.Unsubscribe(Self);

    private void Forget(Member member)
    {
        _members.Remove(member.UniqueAddress);
        _unreachable.Remove(member.UniqueAddress);
    }

    /// <summary>Applies a change of the view and restarts the stable-after wait.</summary>
    private void Change(Action apply)
    {
        var pending = PendingUnreachable();
        var before = pending.Count;
        apply();
        var after = PendingUnreachable().Count;
        _lastChange = Stopwatch.GetTimestamp();
        if (after > 0)
        {
            var (reason, ownDecision) = ReasonIfDownedNow();
            _report.Expect(reason, ownDecision);
        }
        else _report.Expect(null, false);
        if (after == 0)
        {
            // Only when they came back: members that left the count because they were downed (or left) are not reachable.
            if (before > 0 && pending.All(m => _members.TryGetValue(m.UniqueAddress, out var now) && now.Status is not (MemberStatus.Down or MemberStatus.Exiting)))
                _log.Info("Every cluster member is reachable again; no node is downed.");
            _unstableSince = 0;
            return;
        }
        if (_unstableSince == 0) _unstableSince = _lastChange;
        if (after != before && _leader && _selfUp)
            _log.Info("{0} unreachable: {1}. A downing decision follows if this lasts {2:0.#} s (Cluster:StableAfterSeconds).",
                Counts.Of(after, "cluster member"), string.Join(", ", PendingUnreachable().Select(Describe)), _stableAfter.TotalSeconds);
    }

    /// <summary>Unreachable members the rule has yet to decide on (not already down or leaving through the exit path).</summary>
    private List<Member> PendingUnreachable() =>
        [.. _unreachable.Where(_members.ContainsKey).Select(a => _members[a]).Where(m => m.Status is not (MemberStatus.Down or MemberStatus.Exiting))];

    private static string Describe(Member member) =>
        $"{member.Address} ({(member.HasRole(NodeRoles.ParameterServer) ? NodeRoles.ParameterServer : string.Join(",", member.Roles))})";

    /// <summary>The rule's decision on this node's current view: the members not down, exiting or removed, oldest first.</summary>
    private (List<Member> View, DowningOutcome Outcome) Decide()
    {
        var view = _members.Values
            .Where(m => m.Status is not (MemberStatus.Down or MemberStatus.Exiting or MemberStatus.Removed))
            .OrderBy(m => m, Member.AgeOrdering)
            .ToList();
        return (view, ParameterServerSideRule.Decide(
            [.. view.Select(m => new MemberSide(m.Address.ToString(), m.HasRole(NodeRoles.ParameterServer), !_unreachable.Contains(m.UniqueAddress)))]));
    }

    /// <summary>This node was downed: records why (<see cref="ReasonIfDownedNow"/>).</summary>
    private void RecordDownedSelf()
    {
        var (reason, ownDecision) = ReasonIfDownedNow();
        _report.Record(reason, ownDecision);
    }

    /// <summary>
    /// Why this node would be downed now: if its own view has unreachable members and the rule, applied to that view, takes
    /// this side down, its side's leader downs it with the rest of the side (a node of the losing side sees the same
    /// split); otherwise the other side downs it after it was unreachable there.
    /// </summary>
    private (string Reason, bool OwnDecision) ReasonIfDownedNow() =>
        _members.ContainsKey(_cluster.SelfUniqueAddress) && PendingUnreachable().Count > 0 && Decide().Outcome is { Decision: DowningDecision.DownReachable } outcome
            ? (outcome.Reason, true)
            : ($"another member downed this node: it was unreachable from the side that kept the active parameter server for " +
               $"{_stableAfter.TotalSeconds:0.#} s (Cluster:StableAfterSeconds)", false);

    private void OnTick()
    {
        if (!_leader) return;
        var pending = PendingUnreachable();
        if (pending.Count == 0) return;
        var now = Stopwatch.GetTimestamp();
        var stable = Stopwatch.GetElapsedTime(_lastChange, now) >= _stableAfter;
        var unstableTooLong = _unstableSince != 0 && Stopwatch.GetElapsedTime(_unstableSince, now) >= 3 * _stableAfter;
        if (!stable && !unstableTooLong) return;
        var (view, outcome) = Decide();
        // A node not yet Up (Joining, WeaklyUp) only ever downs its own side: it may not down members it barely knows, but
        // cut off before it was moved to Up, it would otherwise stay alone forever instead of leaving to be restarted.
        if (!_selfUp && outcome.Decision != DowningDecision.DownReachable) return;
        var down = outcome.Decision == DowningDecision.DownUnreachable
            ? view.Where(m => _unreachable.Contains(m.UniqueAddress)).ToList()
            : view.Where(m => !_unreachable.Contains(m.UniqueAddress)).ToList();
        _log.Warning("Downing {0}: {1}{2}.", string.Join(", ", down.Select(Describe)), outcome.Reason,
            stable ? "" : $" (membership kept changing for {3 * _stableAfter.TotalSeconds:0.#} s; decided on the latest view)");
        if (outcome.Decision == DowningDecision.DownReachable) _report.Record(outcome.Reason, ownDecision: true);
        // This node last, so that it can still tell the others.
        foreach (var member in down.OrderBy(m => m.UniqueAddress.Equals(_cluster.SelfUniqueAddress)))
            _cluster.Down(member.Address);
        _lastChange = now; // wait for the downing to take effect before deciding again
    }
}
