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
/// partitioned, downed) is not in the set: what Akka.Remote says about it is still logged, except that same pair about
/// the closed connection (<c>EndpointDisassociatedException</c>), whose two stack traces made a recovery DistTrain handles
/// look like a crash. In their place the <see cref="WatcherProps">watcher</see> logs one INFO line when a connection closes
/// unexpectedly (from Akka.Remote's <see cref="Akka.Remote.DisassociatedEvent"/>; once per address until it connects
/// again). A killed node's loss has its own lines as well (<c>data plane closed</c>, <c>Worker 1 is lost</c>,
/// Akka.Cluster's <c>Marking node(s) as UNREACHABLE</c>); a connection to a live node that drops has only this one, and
/// messages sent to that node while Akka.Remote gates its address are dropped. Akka.Remote's warning that it <c>Tried to
/// associate with unreachable remote address</c>, which it repeats every second or two for a dead node until the node is
/// downed, is kept once per address and reason until that address connects again, and dropped for a node that left in order
/// (its address is simply gone); once this node is leaving, that warning and Akka.Cluster's <c>Marking node(s) as
/// UNREACHABLE</c> are dropped, as the job has ended. When that warning quotes its cause with a stack trace (Akka.Remote
/// appends <c>Caused by: [exception]</c>, its <see cref="Exception.ToString"/>, for a TLS handshake or socket failure), the
/// watcher logs it in its place with the cause's exception lines only (<see cref="WithoutStackTrace"/>): the failure is news,
/// Akka.Remote's internals are not. A seed node that refuses the connection (<c>Connection refused</c>) while this node has
/// not yet joined the cluster is one INFO line per seed (<see cref="JoiningNote"/>) in place of that warning: a worker or
/// standby started at the same time as its parameter server tries the seed before that node listens, which is no fault (the
/// join is retried until Cluster:JoinTimeoutSeconds, whose error names the seeds). Once this node is up, a refused
/// connection to any address, a seed included, is the warning again.
/// </summary>
public sealed class DepartedNodesLogFilter : LogFilterBase
{
    private readonly ConcurrentDictionary<string, byte> _departed = new(StringComparer.OrdinalIgnoreCase);
    private volatile bool _leaving;
    private readonly ConcurrentDictionary<string, byte> _reportedUnreachable = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Akka.Remote's warning (1.5.74, <c>EndpointManager</c>) when a connection to an address fails: it repeats at each
    /// attempt while the address is down.</summary>
    internal const string UnreachableAddressWarning = "Tried to associate with unreachable remote address [";

    /// <summary>Where Akka.Remote's unreachable-address warning goes when its cause carries a stack trace: the watcher, which
    /// logs it without one. Null (no watcher yet): such a warning is printed as Akka.Remote wrote it.</summary>
    private volatile Action<string>? _shortened;

    /// <summary>
    /// Sends Akka.Remote's unreachable-address warnings whose cause carries a stack trace to <paramref name="log"/>, which logs
    /// their text without it (<see cref="WithoutStackTrace"/>), instead of printing them as they are.
    /// </summary>
    /// <param name="log">Logs one warning's shortened text; called on the logger's thread, so it must not block.</param>
    public void LogShortenedThrough(Action<string> log) => _shortened = log;

    /// <summary>
    /// <paramref name="warning"/> on one line, without the stack trace of the exception it quotes: its first line, then each
    /// inner exception's line (<c>---&gt; Type: message</c>), without the <c>at ...</c> lines and the <c>--- End of ...</c>
    /// markers. A closing <c>]</c> of Akka.Remote's <c>Caused by: [...]</c> is kept.
    /// </summary>
    /// <param name="warning">The warning's text.</param>
    public static string WithoutStackTrace(string warning)
    {
        var lines = warning.Replace("\r", "", StringComparison.Ordinal).Split('\n');
        var kept = new List<string> { lines[0].TrimEnd() };
        foreach (var line in lines.Skip(1))
            if (line.TrimStart().StartsWith("--->", StringComparison.Ordinal)) kept.Add(line.Trim());
        var text = string.Join(" ", kept);
        return warning.TrimEnd().EndsWith(']') && !text.EndsWith(']') ? text + "]" : text;
    }

    /// <summary>The seed nodes' addresses as Akka.Remote writes them (<c>akka.tcp://disttrain@HOST:PORT</c>).</summary>
    private volatile string[] _seeds = [];

    /// <summary>This node is up in the cluster: from now on a refused seed is Akka.Remote's warning.</summary>
    private volatile bool _joined;

    /// <summary>Where the INFO line for a seed that refuses connections before this node joined goes; null: the warning is kept.</summary>
    private volatile Action<string>? _joining;

    private readonly ConcurrentDictionary<string, byte> _notedSeeds = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// Sets the seed nodes (<paramref name="seeds"/>, Cluster:SeedNodes as this node dials them) and where the INFO line goes
    /// (<paramref name="log"/>, called on the logger's thread, so it must not block) for a seed that refuses the connection
    /// before this node has joined.
    /// </summary>
    /// <param name="seeds">The seed nodes' Akka addresses (<c>akka.tcp://disttrain@HOST:PORT</c>, or <c>akka.ssl.tcp://...</c>).</param>
    /// <param name="log">Logs one line of text at INFO level.</param>
    public void NoteRefusedSeedsThrough(IEnumerable<string> seeds, Action<string> log)
    {
        _seeds = [.. seeds.Select(s => s.TrimEnd('/'))];
        _joining = log;
    }

    /// <summary>This node is up in the cluster (Akka.Cluster's member-up for itself): a seed that refuses connections from now
    /// on is reported with Akka.Remote's warning.</summary>
    public void Joined() => _joined = true;

    /// <summary>
    /// The INFO line for the seed node at <paramref name="seed"/> that refused this node's connection before it joined.
    /// </summary>
    /// <param name="seed">The seed's Akka address.</param>
    internal static string JoiningNote(string seed) =>
        $"The seed node {seed} does not accept connections yet (connection refused; it may still be starting): this node tries again " +
        "until it joins, or until Cluster:JoinTimeoutSeconds runs out.";

    /// <summary>Akka.Cluster's warning when its failure detector marks members unreachable.</summary>
    internal const string MarkingUnreachableWarning = "Marking node(s) as UNREACHABLE";

    /// <summary>
    /// <see cref="LogFilterType.Content"/>, although only the source is read: Akka.NET (1.5.74) prints what its filter
    /// evaluator returns, and an evaluator whose filters are all <see cref="LogFilterType.Source"/> returns the bare message,
    /// without the standard-out logger's <c>[LEVEL][time][Thread n][source]</c> prefix and without the exception of an error.
    /// With a content filter it expands the whole event (<see cref="LogEvent.ToString"/>), which is printed as it is.
    /// </summary>
    public override LogFilterType FilterType => LogFilterType.Content;

    /// <summary><paramref name="address"/> left the cluster in order: its connection's closing is expected.</summary>
    public void Departed(Address address) => _departed.TryAdd(Uri.EscapeDataString(address.ToString()), 0);

    /// <summary>This node is leaving: every connection's closing is expected from now on.</summary>
    public void Leaving() => _leaving = true;

    /// <summary>
    /// <paramref name="address"/> connected: a later failure to reach it is reported again, also when a node at that address
    /// had left in order before (a parameter server or a worker restarted at the same host and port is not a departed node).
    /// </summary>
    public void Associated(Address address)
    {
        _departed.TryRemove(Uri.EscapeDataString(address.ToString()), out _);
        var prefix = address + "\n";
        foreach (var key in _reportedUnreachable.Keys)
            if (key.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) _reportedUnreachable.TryRemove(key, out _);
    }

    /// <summary>True when the closing of a connection to <paramref name="address"/> is expected: it left in order, or this node is leaving.</summary>
    public bool IsExpectedClose(Address address) => _leaving || _departed.ContainsKey(Uri.EscapeDataString(address.ToString()));

    /// <inheritdoc />
    public override LogFilterDecision ShouldKeepMessage(LogEvent content, string? expandedMessage = null)
    {
        // Endpoint actors are named after the remote address, URL-encoded: .../endpointManager/reliableEndpointWriter-akka.tcp%3A%2F%2F...
        var source = content.LogSource;
        if (content is Warning && content.Message?.ToString() is { } warning)
        {
            if (warning.StartsWith(UnreachableAddressWarning, StringComparison.Ordinal))
            {
                // The watcher's shortened copy of Akka.Remote's warning (Akka.Remote logs as "remoting (akka://...)"): counted
                // and checked as the original, printed.
                if (content.LogSource?.StartsWith("remoting", StringComparison.Ordinal) != true) return LogFilterDecision.NoDecision;
                // Kept once per address and reason (the reason's first line, without a stack trace): a new reason for the same
                // address, such as a refused certificate after "Connection refused", is news.
                var end = warning.IndexOf(']', UnreachableAddressWarning.Length);
                var address = end < 0 ? warning : warning[UnreachableAddressWarning.Length..end];
                var reasonAt = warning.IndexOf("Reason:", StringComparison.Ordinal);
                var reason = reasonAt < 0 ? "" : warning[reasonAt..].Split('\n', 2)[0].Trim();
                // A seed not listening yet while this node joins (started with it): one INFO line, not a warning.
                if (!_joined && _joining is { } joining && reason.Contains("Connection refused", StringComparison.OrdinalIgnoreCase)
                    && _seeds.Contains(address, StringComparer.OrdinalIgnoreCase))
                {
                    if (_notedSeeds.TryAdd(address, 0)) joining(JoiningNote(address));
                    return LogFilterDecision.Drop;
                }
                if (_leaving || _departed.ContainsKey(Uri.EscapeDataString(address)) || !_reportedUnreachable.TryAdd($"{address}\n{reason}", 0))
                    return LogFilterDecision.Drop;
                if (warning.Contains('\n') && _shortened is { } shortened)
                {
                    shortened(WithoutStackTrace(warning));
                    return LogFilterDecision.Drop;
                }
                return LogFilterDecision.NoDecision;
            }
            if (_leaving && warning.Contains(MarkingUnreachableWarning, StringComparison.Ordinal)) return LogFilterDecision.Drop;
        }
        if (source is null || !source.Contains("/endpointManager/", StringComparison.Ordinal)) return LogFilterDecision.NoDecision;
        if (_leaving || ReportsClosedConnection(content, expandedMessage)) return LogFilterDecision.Drop;
        foreach (var address in _departed.Keys)
            if (source.Contains(address, StringComparison.OrdinalIgnoreCase)) return LogFilterDecision.Drop;
        return LogFilterDecision.NoDecision;
    }

    /// <summary>Akka.Remote's exception for a connection its peer closed (internal to Akka.Remote, so matched by name).</summary>
    private const string ClosedConnectionException = "Akka.Remote.EndpointDisassociatedException";

    /// <summary>
    /// True for Akka.Remote's two reports that a connection closed: the endpoint writer's failure (an ERROR whose cause is
    /// <see cref="ClosedConnectionException"/>) and its supervisor's WARNING "Association with remote system ... has failed",
    /// which quotes that exception with its stack trace. Other association failures (a refused certificate, a peer that
    /// cannot be reached) are kept.
    /// </summary>
    private static bool ReportsClosedConnection(LogEvent content, string? expandedMessage) => content switch
    {
        Error { Cause: { } cause } => cause.GetType().FullName == ClosedConnectionException,
        Warning => (expandedMessage ?? content.Message?.ToString())?.Contains(ClosedConnectionException + ": Disassociated", StringComparison.Ordinal) == true,
        _ => false,
    };

    /// <summary>
    /// Props of the actor that feeds <paramref name="filter"/> from the cluster's membership events, and logs one INFO line
    /// for each connection that closed unexpectedly (the filter drops Akka.Remote's own reports of it).
    /// </summary>
    public static Props WatcherProps(DepartedNodesLogFilter filter) => Props.Create(() => new Watcher(filter));

    /// <summary>Akka.Remote's unreachable-address warning without its stack trace, for the watcher to log.</summary>
    private sealed record ShortenedWarning(string Text);

    private sealed class Watcher : ReceiveActor
    {
        private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
        private readonly ILoggingAdapter _log = Context.GetLogger();
        private readonly HashSet<Address> _closed = []; // reported closed, not connected again since

        public Watcher(DepartedNodesLogFilter filter)
        {
            // akka.remote.retry-gate-closed-for (AkkaSettings.Remoting): how long messages to the address are dropped.
            var gate = Context.System.Settings.Config.GetTimeSpan("akka.remote.retry-gate-closed-for", TimeSpan.FromSeconds(5), allowInfinite: false);
            var self = Self;
            filter.LogShortenedThrough(text => self.Tell(new ShortenedWarning(text)));
            // Once per address until it connects again: a dead node's address closes again on every reconnection attempt.
            Receive<Akka.Remote.AssociatedEvent>(e =>
            {
                _closed.Remove(e.RemoteAddress);
                filter.Associated(e.RemoteAddress);
            });
            Receive<Akka.Remote.DisassociatedEvent>(e =>
            {
                if (filter.IsExpectedClose(e.RemoteAddress) || !_closed.Add(e.RemoteAddress)) return;
                _log.Info("The connection to {0} closed ({1}); messages sent to that node in the next {2:0.#} s are dropped.", e.RemoteAddress,
                    e.IsInbound ? "it had connected to this node" : "this node had connected to it", gate.TotalSeconds);
            });
            Receive<ShortenedWarning>(w => _log.Warning("{0}", w.Text));
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

        protected override void PreStart()
        {
            _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents,
                typeof(ClusterEvent.MemberLeft), typeof(ClusterEvent.MemberExited), typeof(ClusterEvent.MemberRemoved));
            Context.System.EventStream.Subscribe(Self, typeof(Akka.Remote.DisassociatedEvent));
            Context.System.EventStream.Subscribe(Self, typeof(Akka.Remote.AssociatedEvent));
        }

        protected override void PostStop()
        {
            _cluster.Unsubscribe(Self);
            Context.System.EventStream.Unsubscribe(Self);
        }
    }
}
