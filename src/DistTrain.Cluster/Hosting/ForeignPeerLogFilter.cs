using System.Collections.Concurrent;
using System.Text.RegularExpressions;
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
/// warning that quotes one of them (with the hex dump) is replaced alike. Until <see cref="LogThrough"/> is called (no actor system yet) the
/// errors are kept as they are.
/// </summary>
internal sealed partial class ForeignPeerLogFilter : LogFilterBase
{
    private readonly ConcurrentDictionary<string, byte> _reported = new(StringComparer.OrdinalIgnoreCase);
    private volatile Action<string>? _log;

    /// <summary><see cref="LogFilterType.Content"/>, as <see cref="DepartedNodesLogFilter"/>'s (which says why).</summary>
    public override LogFilterType FilterType => LogFilterType.Content;

    /// <summary>Logs each peer's one warning through <paramref name="log"/> (called on the logger's thread: it must not block).</summary>
    public void LogThrough(Action<string> log) => _log = log;

    /// <inheritdoc />
    public override LogFilterDecision ShouldKeepMessage(LogEvent content, string? expandedMessage = null)
    {
        if (content is Warning && _log is { } warn && content.Message?.ToString() is { } text
            && text.StartsWith(DepartedNodesLogFilter.UnreachableAddressWarning, StringComparison.Ordinal) && WhatIn(text) is { } said)
        {
            // Akka.Remote's "Tried to associate with unreachable remote address [...]" quoting the same cause, hex dump included
            // (also the departed-nodes watcher's shortened copy of it).
            var start = DepartedNodesLogFilter.UnreachableAddressWarning.Length;
            var end = text.IndexOf(']', start);
            var address = end < 0 ? null : AddressPeer().Match(text[start..end]) is { Success: true } m ? $"{m.Groups["host"].Value}:{m.Groups["port"].Value}" : null;
            if (_reported.TryAdd(address ?? "", 0)) warn(Warning(address, said));
            return LogFilterDecision.Drop;
        }
        if (content is not Error { Cause: { } cause } || _log is not { } log || What(cause) is not { } what) return LogFilterDecision.NoDecision;
        var peer = PeerOf(content.LogSource, expandedMessage ?? content.Message?.ToString() ?? "");
        if (_reported.TryAdd(peer ?? "", 0)) log(Warning(peer, what));
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

    [GeneratedRegex(@"^[a-z.]+://[^@/]+@(?<host>[^/]+?):(?<port>\d+)$")]
    private static partial Regex AddressPeer();

    [GeneratedRegex(@"akkaProtocol-[a-z.]+://[^@/]+@(?<host>[^/]+?):(?<port>\d+)-\d+")]
    private static partial Regex ProtocolPeer();
}
