using Akka.Actor;
using Akka.Cluster;
using Akka.Event;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// Finds the shard nodes a run places its K shards on (docs/architecture.md, "Where the shards run"): K members of the cluster
/// with the role <see cref="NodeRoles.ParameterShard"/> that are up and reachable and whose <see cref="ShardHost"/>
/// (<c>/user/shard-host</c>) answers Akka's <see cref="Identify"/>. It tells its parent <see cref="Found"/> with the K hosts,
/// oldest member first, or <see cref="NotFound"/> once <c>timeout</c> has passed, and stops either way. The parent, the shards'
/// owner, then places the shards itself (<see cref="ShardPlacement"/>): the hosts take the sender of a request as its owner.
/// </summary>
/// <remarks>
/// Candidates are asked as they come up, so a shard node started after the parameter server is found when it joins. A member
/// that answers without a host (a node of another role layout, or one whose host has stopped) is passed over and named in
/// <see cref="NotFound"/>'s reason; one that leaves, is removed or becomes unreachable before the search ends is dropped, and
/// a member that comes back (reachable again) is asked again. Membership is taken from the events this actor receives, not
/// from <c>Cluster.State</c>, which another actor updates.
/// </remarks>
public sealed class ShardNodeFinder : ReceiveActor, IWithTimers
{
    /// <summary>K shard hosts found, by shard index: host k is to host shard k. To the parent; in process only.</summary>
    /// <param name="Hosts">The hosts' actors, oldest member first.</param>
    public sealed record Found(IReadOnlyList<IActorRef> Hosts) : INoSerializationVerificationNeeded;

    /// <summary>Not enough shard hosts were found in time. To the parent; in process only.</summary>
    /// <param name="Reason">What was found and what was not, with the fix.</param>
    public sealed record NotFound(string Reason) : INoSerializationVerificationNeeded;

    private sealed record SearchTimeout;

    private readonly int _shards;
    private readonly TimeSpan _timeout;
    private readonly Akka.Cluster.Cluster _cluster;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Dictionary<UniqueAddress, Member> _candidates = [];       // up, reachable, of the role, not yet answered
    private readonly Dictionary<UniqueAddress, (Member Member, IActorRef Host)> _hosts = []; // answered with a host
    private readonly Dictionary<UniqueAddress, string> _hostless = [];         // answered without a host
    // The unreachable members as the events received say (Cluster.State is updated by another actor, so it may lag or lead them).
    private readonly HashSet<UniqueAddress> _unreachable = [];
    private readonly Dictionary<int, UniqueAddress> _questions = []; // each Identify's id, and the member asked
    private int _asked;

    /// <inheritdoc />
    public ITimerScheduler Timers { get; set; } = null!;

    /// <summary>Creates the finder; see <see cref="Props"/>.</summary>
    public ShardNodeFinder(int shards, TimeSpan timeout)
    {
        _shards = shards;
        _timeout = timeout;
        _cluster = Akka.Cluster.Cluster.Get(Context.System);
        Receive<ClusterEvent.CurrentClusterState>(state =>
        {
            foreach (var member in state.Unreachable) _unreachable.Add(member.UniqueAddress);
            foreach (var member in state.Members) Consider(member);
            Done();
        });
        Receive<ClusterEvent.IMemberEvent>(e =>
        {
            if (e is ClusterEvent.MemberRemoved) _unreachable.Remove(e.Member.UniqueAddress);
            Consider(e.Member);
            Done();
        });
        Receive<ClusterEvent.UnreachableMember>(e =>
        {
            _unreachable.Add(e.Member.UniqueAddress);
            Drop(e.Member.UniqueAddress);
        });
        Receive<ClusterEvent.ReachableMember>(e =>
        {
            _unreachable.Remove(e.Member.UniqueAddress);
            Consider(e.Member);
            Done();
        });
        Receive<ActorIdentity>(OnIdentity);
        Receive<SearchTimeout>(_ =>
        {
            Context.Parent.Tell(new NotFound(Shortfall()));
            Context.Stop(Self);
        });
    }

    /// <summary>Props of a search for <paramref name="shards"/> shard hosts within <paramref name="timeout"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="shards"/> outside 1 to <see cref="Training.ParameterShards.MaxShards"/>,
    /// or <paramref name="timeout"/> not positive.</exception>
    public static Props Props(int shards, TimeSpan timeout)
    {
        if (shards < 1 || shards > Training.ParameterShards.MaxShards)
            throw new ArgumentOutOfRangeException(nameof(shards), shards, $"A run places 1 to {Training.ParameterShards.MaxShards} shards.");
        if (timeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "The search needs a positive time-out.");
        return Akka.Actor.Props.Create(() => new ShardNodeFinder(shards, timeout));
    }

    /// <inheritdoc />
    protected override void PreStart()
    {
        Timers.StartSingleTimer(nameof(SearchTimeout), new SearchTimeout(), _timeout);
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsSnapshot, typeof(ClusterEvent.IMemberEvent),
            typeof(ClusterEvent.IReachabilityEvent));
    }

    /// <inheritdoc />
    protected override void PostStop() => _cluster.Unsubscribe(Self);

    /// <summary>Asks an up, reachable member of the role for its host (again after it was dropped); drops any other.</summary>
    private void Consider(Member member)
    {
        if (!member.HasRole(NodeRoles.ParameterShard)) return;
        var address = member.UniqueAddress;
        if (member.Status != MemberStatus.Up || _unreachable.Contains(address))
        {
            Drop(address);
            return;
        }
        if (_candidates.ContainsKey(address) || _hosts.ContainsKey(address) || _hostless.ContainsKey(address)) return;
        _candidates[address] = member;
        foreach (var stale in _questions.Where(q => q.Value.Equals(address)).Select(q => q.Key).ToList()) _questions.Remove(stale);
        var id = ++_asked;
        _questions[id] = address;
        Context.ActorSelection(new RootActorPath(member.Address) / "user" / ShardHost.Name).Tell(new Identify(id));
    }

    private void Drop(UniqueAddress address)
    {
        _candidates.Remove(address);
        _hosts.Remove(address);
        _hostless.Remove(address);
    }

    private void OnIdentity(ActorIdentity identity)
    {
        if (identity.MessageId is not int id || !_questions.Remove(id, out var address) || !_candidates.Remove(address, out var member)) return;
        if (identity.Subject is { } host) _hosts[address] = (member, host);
        else _hostless[address] = $"{member.Address} has no {ShardHost.Name} actor";
        Done();
    }

    /// <summary>Tells the parent and stops once K hosts have answered.</summary>
    private void Done()
    {
        if (_hosts.Count < _shards) return;
        var hosts = _hosts.Values.Select(h => h.Member).OrderBy(m => m, Member.AgeOrdering).Take(_shards)
            .Select(m => _hosts[m.UniqueAddress].Host).ToArray();
        _log.Info("Found {0} for the run's shards: {1}", Core.Counts.Of(hosts.Length, "shard node"), string.Join(", ", hosts.Select(h => h.Path.Address)));
        Context.Parent.Tell(new Found(hosts));
        Context.Stop(Self);
    }

    /// <summary>What was found when the search ran out of time, and the fix.</summary>
    private string Shortfall()
    {
        var found = _hosts.Values.Select(h => h.Member.Address.ToString()).Order(StringComparer.Ordinal).ToList();
        var text = $"Found {found.Count} of the {_shards} shard nodes the run needs (Cluster:ParameterServerShards = {_shards}) within " +
            $"{_timeout.TotalSeconds:F0} s: {(found.Count == 0 ? "none" : string.Join(", ", found))}.";
        if (_candidates.Count > 0)
            text += $" No answer from {string.Join(", ", _candidates.Values.Select(m => m.Address.ToString()).Order(StringComparer.Ordinal))}.";
        if (_hostless.Count > 0)
            text += $" Passed over: {string.Join("; ", _hostless.Values.Order(StringComparer.Ordinal))}.";
        return text + $" Start {Core.Counts.Of(_shards - found.Count, "more shard node")} (disttrain node --role {NodeRoles.ParameterShard}, with this job's config, " +
            "secret and seeds), one per shard, and check that every node runs the same DistTrain version.";
    }
}
