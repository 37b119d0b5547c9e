using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using Akka.Actor;
using Akka.Event;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// Replaces Akka.Remote's errors about a peer that does not speak its protocol (an address in Cluster:SeedNodes where
/// another program listens: an HTTP server, a parameter server's Cluster:DataPort or Metrics:Port) with one warning per
/// peer that names it and says it is not a DistTrain node. Akka.Remote logged each failed attempt as ERRORs carrying the
/// peer's first bytes as a hex dump (DotNetty's "not an SSL/TLS record: 485454..." twice over with Cluster:Tls, a frame
/// length over its limit or an undecodable Akka PDU with a stack trace without it), again at every retry. The causes
/// matched are DotNetty's <c>NotSslRecordException</c> and <c>TooLongFrameException</c> and Akka.Remote's
/// <c>PduCodecException</c>; any other error is kept. Akka.Remote's "Tried to associate with unreachable remote address"
/// warning that quotes one of them (with the hex dump) is replaced alike. A peer that accepts the TCP connection but never
/// answers (a silent program, or a node with Cluster:Tls off dialled with TLS on) is one warning naming it as well
/// (<see cref="SilentWarning"/>), in place of Akka.Remote's ERROR "No response from remote for outbound association" at every
/// attempt (about every 20 s), its unreachable-address warning quoting that <see cref="TimeoutException"/>, and at the node's
/// stop DotNetty's ERROR "TLS handshake failed ... Channel is closed" (ten lines) with the WARNING "Unable to REMOVE channel"
/// for each connection still waiting (dropped whether it comes before or after the peer's warning). The warning states how
/// long the peer was silent only when Akka.Remote's handshake timeout measured it. Until <see cref="LogThrough"/> is called (no actor system yet) the errors are kept as
/// they are.
/// </summary>
internal sealed partial class ForeignPeerLogFilter : LogFilterBase
{
    private readonly ConcurrentDictionary<string, byte> _reported = new(StringComparer.OrdinalIgnoreCase);
    private volatile Action<string>? _log;
    private int _capReached; // 1 once a peer beyond MaxReportedPeers was not reported one by one (TooManyPeers logged)
    private readonly HashSet<string> _seeds; // HOST:PORT of Cluster:SeedNodes: reported one by one whatever the count

    /// <summary>A filter that reports the peers at <paramref name="seeds"/> (Cluster:SeedNodes, Akka addresses) one by one even
    /// beyond <see cref="MaxReportedPeers"/>, so that a join timeout's message still names a seed where another program listens
    /// after junk connections filled the cap; a seed that is not an Akka address is left out.</summary>
    public ForeignPeerLogFilter(IEnumerable<string>? seeds = null)
    {
        _seeds = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var seed in seeds ?? [])
            try
            {
                if (Address.Parse(seed) is { Host: { } host, Port: { } port }) _seeds.Add($"{host.Trim('[', ']')}:{port}");
            }
            catch (UriFormatException) { }
    }

    /// <summary>Most peers warned about one by one: each inbound junk connection comes from a port of its own, so a port scanner
    /// or a load balancer's health check would otherwise add a warning and an entry per connection. Beyond it one line says
    /// so (<see cref="TooManyPeers"/>), and nothing more is kept, but for the seeds (Cluster:SeedNodes), which are reported
    /// one by one whatever the count.</summary>
    public const int MaxReportedPeers = 32;

    /// <summary>The one line logged when more than <see cref="MaxReportedPeers"/> peers were not DistTrain nodes.</summary>
    public static string TooManyPeers => $"More than {MaxReportedPeers} peers that are not DistTrain nodes connected to this node or were dialled by it; " +
        "the further ones are not reported one by one. Check what connects to this node's Cluster:Port (a port scanner, a health check or a " +
        "load balancer probing it) and what Cluster:SeedNodes names.";

    /// <summary>True if <paramref name="peer"/> is to be warned about now: not reported yet, and fewer than
    /// <see cref="MaxReportedPeers"/> peers reported so far (the first one beyond logs <see cref="TooManyPeers"/> through
    /// <paramref name="log"/>).</summary>
    private bool FirstReport(string peer, Action<string> log)
    {
        if (_reported.ContainsKey(peer)) return false;
        if (_reported.Count >= MaxReportedPeers && !_seeds.Contains(peer))
        {
            if (Interlocked.Exchange(ref _capReached, 1) == 0) log(TooManyPeers);
            return false;
        }
        return _reported.TryAdd(peer, 0);
    }

    /// <summary>Each peer warned about (<c>HOST:PORT</c>, or "" when unnamed) and what it was, for the join timeout's message.</summary>
    private readonly ConcurrentDictionary<string, string> _named = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The filter of each running actor system, for its join-timeout message, a worker's or a parameter-server node's (<see cref="Of"/>).</summary>
    private static readonly ConditionalWeakTable<ActorSystem, ForeignPeerLogFilter> Filters = new();

    /// <summary>Makes this filter the one <see cref="Of"/> returns for <paramref name="system"/>.</summary>
    public void Attach(ActorSystem system) => Filters.AddOrUpdate(system, this);

    /// <summary>The filter attached to <paramref name="system"/> (<see cref="Attach"/>), or null.</summary>
    public static ForeignPeerLogFilter? Of(ActorSystem system) => Filters.TryGetValue(system, out var filter) ? filter : null;

    /// <summary>
    /// The peers this filter has warned about so far, each as <c>HOST:PORT (what it was)</c>, ordered by peer: the seeds a
    /// join timeout's message names as the reason no parameter server accepted the node.
    /// </summary>
    public IReadOnlyList<string> Named =>
        [.. _named.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{(p.Key.Length == 0 ? "an address this node dialled" : p.Key)} ({p.Value})")];

    /// <summary>
    /// The sentence a join timeout's message gives for <paramref name="named"/> (<see cref="Named"/>), ending with a space;
    /// empty when none.
    /// </summary>
    public static string Sentence(IReadOnlyList<string> named) => named.Count == 0 ? ""
        : $"The peer{(named.Count == 1 ? "" : "s")} at {string.Join(", ", named)} did not answer as a DistTrain node{(named.Count == 1 ? "" : "s")}: " +
          "give Cluster:SeedNodes the host and Cluster:Port of a parameter-server node. ";

    /// <summary><see cref="LogFilterType.Content"/>, as <see cref="DepartedNodesLogFilter"/>'s (which says why).</summary>
    public override LogFilterType FilterType => LogFilterType.Content;

    /// <summary>Logs each peer's one warning through <paramref name="log"/> (called on the logger's thread: it must not block).</summary>
    public void LogThrough(Action<string> log) => _log = log;

    /// <inheritdoc />
    public override LogFilterDecision ShouldKeepMessage(LogEvent content, string? expandedMessage = null)
    {
        if (_log is { } note && content.Message?.ToString() is { } message && Silent(content, message) is { } silent)
        {
            if (silent.Peer is null) return LogFilterDecision.NoDecision;
            if (silent.Report && FirstReport(silent.Peer, note))
            {
                _named[silent.Peer] = silent.Tls
                    ? "it accepts connections but does not complete a TLS handshake: not a DistTrain node, or Cluster:Tls is off there"
                    : "it accepts connections but does not complete Akka.Remote's handshake";
                note(SilentWarning(silent.Peer, silent.Tls, silent.Seconds));
            }
            // A connection's "Unable to REMOVE channel" at the stop may come before its "TLS handshake failed" (another
            // thread), so it is dropped whether or not its peer was reported yet: it names nothing to act on.
            return LogFilterDecision.Drop;
        }
        if (content is Warning && _log is { } warn && content.Message?.ToString() is { } text
            && text.StartsWith(DepartedNodesLogFilter.UnreachableAddressWarning, StringComparison.Ordinal) && WhatIn(text) is { } said)
        {
            // Akka.Remote's "Tried to associate with unreachable remote address [...]" quoting the same cause, hex dump included
            // (also the departed-nodes watcher's shortened copy of it).
            var start = DepartedNodesLogFilter.UnreachableAddressWarning.Length;
            var end = text.IndexOf(']', start);
            var address = end < 0 ? null : AddressPeer().Match(text[start..end]) is { Success: true } m ? $"{m.Groups["host"].Value}:{m.Groups["port"].Value}" : null;
            if (FirstReport(address ?? "", warn))
            {
                _named[address ?? ""] = said;
                warn(Warning(address, said));
            }
            return LogFilterDecision.Drop;
        }
        if (content is not Error { Cause: { } cause } || _log is not { } log || What(cause) is not { } what) return LogFilterDecision.NoDecision;
        var peer = PeerOf(content.LogSource, expandedMessage ?? content.Message?.ToString() ?? "");
        if (FirstReport(peer ?? "", log))
        {
            _named[peer ?? ""] = what;
            log(Warning(peer, what));
        }
        return LogFilterDecision.Drop;
    }

    /// <summary>
    /// The one warning for <paramref name="peer"/> (<c>HOST:PORT</c>, null when Akka.Remote's lines did not name it) that
    /// answered with <paramref name="what"/>.
    /// </summary>
    internal static string Warning(string? peer, string what) =>
        $"The peer at {peer ?? "an address this node dialled"} is not a DistTrain node: it does not speak Akka.Remote's protocol ({what}). " +
        "If it is in Cluster:SeedNodes, give there the host and Cluster:Port of a parameter-server node (not its Cluster:DataPort or Metrics:Port, " +
        "nor another program's port), and the same Cluster:Tls on every node.";

    /// <summary>Akka.Remote's text (1.5.74, <c>ProtocolStateActor</c>) when a peer accepted the connection but did not answer its
    /// handshake within akka.remote's handshake timeout (15 s); with TLS, DotNetty's handshake waits behind it.</summary>
    internal const string NoResponse = "No response from remote for outbound association";

    /// <summary>
    /// The one warning for <paramref name="peer"/> (<c>HOST:PORT</c>) that accepts connections but never answers this node's
    /// handshake (<paramref name="tls"/>: the TLS handshake; otherwise Akka.Remote's).
    /// </summary>
    /// <param name="peer">The peer, <c>HOST:PORT</c>.</param>
    /// <param name="tls">The handshake it did not complete was TLS's (else Akka.Remote's).</param>
    /// <param name="seconds">How long the peer stayed silent, seconds, as Akka.Remote's handshake timeout measured it (15 s by
    /// default, akka.remote's handshake-timeout); null when the connection closed first (the node stopped before that
    /// timeout, as with a Cluster:JoinTimeoutSeconds under it), and then no time is stated.</param>
    internal static string SilentWarning(string peer, bool tls, double? seconds = 15) =>
        $"The peer at {peer} accepts connections but does not complete {(tls ? "a TLS" : "Akka.Remote's")} handshake " +
        (seconds is { } s ? $"(it sent nothing in {s.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)} s): " : "(it sent nothing before the connection closed): ") +
        $"it is not a DistTrain node{(tls ? ", or Cluster:Tls is off there" : "")}, or it is frozen. If it is in Cluster:SeedNodes, give there the host and " +
        "Cluster:Port of a parameter-server node (not another program's port), and the same Cluster:Tls on every node.";

    /// <summary>
    /// A log event about a peer that does not answer: Akka.Remote's handshake timeout (an ERROR of its protocol actor, or its
    /// unreachable-address warning quoting it), reported (<c>Report</c>); DotNetty's "TLS handshake failed" whose cause is
    /// <c>Channel is closed</c> (reported too: only a connection whose peer sent nothing closes mid-handshake that way), and
    /// its "Unable to REMOVE channel" warning (dropped, not reported). Null for any other event. <c>Peer</c> is null when the
    /// event does not name it (then it is kept). <c>Seconds</c> is the handshake timeout Akka.Remote's text states
    /// (<see cref="TimedOutSeconds"/>); null for DotNetty's lines, which come when the connection closes.
    /// </summary>
    private static (string? Peer, bool Tls, bool Report, double? Seconds)? Silent(LogEvent content, string text)
    {
        var source = content.LogSource ?? "";
        switch (content)
        {
            case Error when text.StartsWith(NoResponse, StringComparison.Ordinal) && source.Contains("akkaProtocol-", StringComparison.Ordinal):
                return (PeerOf(source, ""), source.Contains("akkaProtocol-ssl.", StringComparison.Ordinal), true, TimedOutSeconds(text));
            case Akka.Event.Warning when text.StartsWith(DepartedNodesLogFilter.UnreachableAddressWarning, StringComparison.Ordinal)
                              && text.Contains(NoResponse, StringComparison.Ordinal):
                var start = DepartedNodesLogFilter.UnreachableAddressWarning.Length;
                var end = text.IndexOf(']', start);
                var address = end < 0 ? "" : text[start..end];
                return (AddressPeer().Match(address) is { Success: true } m ? $"{m.Groups["host"].Value}:{m.Groups["port"].Value}" : null,
                    address.StartsWith("akka.ssl.", StringComparison.Ordinal), true, TimedOutSeconds(text));
            case Error { Cause: { } cause } when text.StartsWith("TLS handshake failed on channel", StringComparison.Ordinal)
                                                && cause is IOException { Message: "Channel is closed" }:
                return (PeerOf(source, text), true, true, null);
            case Akka.Event.Warning when text.StartsWith("Unable to REMOVE channel", StringComparison.Ordinal):
                return (PeerOf(source, text), true, false, null);
            default:
                return null;
        }
    }

    /// <summary>
    /// The seconds of Akka.Remote's handshake timeout as its text states them (<c>Associate timed out after [15000 ms]</c>, or
    /// <c>Handshake timed out after [15000] ms</c> when the connection was made but the peer never answered Akka's handshake);
    /// null when the text states none.
    /// </summary>
    internal static double? TimedOutSeconds(string text) =>
        TimedOut().Match(text) is { Success: true } m && long.TryParse(m.Groups["ms"].Value, System.Globalization.NumberStyles.None,
            System.Globalization.CultureInfo.InvariantCulture, out var ms) ? ms / 1000.0 : null;

    /// <summary>What the peer's bytes were, from the error's cause (any inner exception); null for an error of another kind.</summary>
    internal static string? What(Exception? cause)
    {
        for (var e = cause; e is not null; e = e.InnerException)
            switch (e.GetType().FullName)
            {
                case "DotNetty.Handlers.Tls.NotSslRecordException": return "what it sent is not TLS";
                case "DotNetty.Codecs.TooLongFrameException": return "what it sent is not an Akka.Remote frame";
                case "Akka.Remote.Transport.PduCodecException": return "what it sent is not an Akka.Remote message";
            }
        return null;
    }

    /// <summary>What the peer's bytes were, from a warning's text that quotes the cause by its type name; null when it quotes none of them.</summary>
    internal static string? WhatIn(string text) =>
        text.Contains("DotNetty.Handlers.Tls.NotSslRecordException", StringComparison.Ordinal) ? "what it sent is not TLS"
        : text.Contains("DotNetty.Codecs.TooLongFrameException", StringComparison.Ordinal) ? "what it sent is not an Akka.Remote frame"
        : text.Contains("Akka.Remote.Transport.PduCodecException", StringComparison.Ordinal) ? "what it sent is not an Akka.Remote message"
        : null;

    /// <summary>
    /// The peer as <c>HOST:PORT</c>: from DotNetty's channel (<c>[[::ffff:127.0.0.1]:55698-&gt;[::ffff:127.0.0.1]:25341]</c>,
    /// the remote end after the arrow) or from Akka.Remote's protocol actor's name (<c>akkaProtocol-tcp%3A%2F%2Fdisttrain%40HOST%3APORT-1</c>);
    /// null when neither names it.
    /// </summary>
    internal static string? PeerOf(string? source, string message)
    {
        if (ChannelPeer().Match(message) is { Success: true } channel)
        {
            var host = channel.Groups["host"].Value;
            return $"{(host.StartsWith("::ffff:", StringComparison.OrdinalIgnoreCase) ? host[7..] : host)}:{channel.Groups["port"].Value}";
        }
        if (source is not null && ProtocolPeer().Match(Uri.UnescapeDataString(source)) is { Success: true } protocol)
            return $"{protocol.Groups["host"].Value}:{protocol.Groups["port"].Value}";
        return null;
    }

    [GeneratedRegex(@"->\[?\[(?<host>[^\]]+)\]:(?<port>\d+)\]")]
    private static partial Regex ChannelPeer();

    // Both of Akka.Remote's forms: "Associate timed out after [15000 ms]" and "Handshake timed out after [15000] ms".
    [GeneratedRegex(@"timed out after \[(?<ms>\d+)(?: ?ms\]|\] ?ms)")]
    private static partial Regex TimedOut();

    [GeneratedRegex(@"^[a-z.]+://[^@/]+@(?<host>[^/]+?):(?<port>\d+)$")]
    private static partial Regex AddressPeer();

    [GeneratedRegex(@"akkaProtocol-[a-z.]+://[^@/]+@(?<host>[^/]+?):(?<port>\d+)-\d+")]
    private static partial Regex ProtocolPeer();
}
