using Akka.Event;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// Drops Akka's log lines about a Cluster:Port that another process took between the node's start-up check
/// (<see cref="PortProbe.EnsureFree"/>) and Akka.Remote's own bind, and every line after them: the transport's ERROR
/// "Failed to bind to HOST:PORT; shutting down DotNetty transport." with its stack trace, then the actor system's
/// shutdown (CoordinatedShutdown's and the remoting terminator's INFO lines, and the ERROR "Remoting system has been
/// terminated abruptly"). The start then fails, and <see cref="ClusterNode"/> reports it as the check does: one
/// <see cref="PortInUseException"/> line naming the port and the fix. A Cluster:Hostname that is not this machine's
/// address (with Cluster:Port 0, which the check does not bind) fails Akka.Remote's bind the same way, and its lines are
/// dropped alike for the one <see cref="AddressNotLocalException"/> line. Any other bind failure (and anything logged
/// before one) is kept.
/// </summary>
internal sealed class BindFailureLogFilter : LogFilterBase
{
    private volatile bool _bindFailed;

    /// <summary>True once Akka.Remote has logged that Cluster:Port is in use, or that Cluster:Hostname is not this machine's.</summary>
    public bool BindFailed => _bindFailed;

    /// <summary><see cref="LogFilterType.Content"/>, as <see cref="DepartedNodesLogFilter"/>'s (which says why).</summary>
    public override LogFilterType FilterType => LogFilterType.Content;

    /// <inheritdoc />
    public override LogFilterDecision ShouldKeepMessage(LogEvent content, string? expandedMessage = null)
    {
        if (_bindFailed) return LogFilterDecision.Drop;
        // Akka.Remote's listener only ("Failed to bind to HOST:PORT; shutting down DotNetty transport."): an address in use
        // elsewhere (an outbound connection out of ephemeral ports) must not silence the node's log from then on.
        if (content is not Error { Cause: { } cause } || (ClusterNode.AddressInUse(cause) ?? ClusterNode.AddressNotLocal(cause)) is null
            || !(expandedMessage ?? content.Message?.ToString() ?? "").Contains("Failed to bind", StringComparison.Ordinal)) return LogFilterDecision.NoDecision;
        _bindFailed = true;
        return LogFilterDecision.Drop;
    }
}
