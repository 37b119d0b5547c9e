using Akka.Actor;

namespace DistTrain.Cluster.Membership;

/// <summary>
/// Why this node was downed, if it was: written by <see cref="JobDowningActor"/> when this node's side goes down or
/// another member downs it, read by the node's exit message, so that the message says what really happened.
/// </summary>
public sealed class DowningReport : IExtension
{
    private volatile string? _reason;
    private volatile string? _expected;

    /// <summary>The reason this node was downed, or null while it has not been.</summary>
    public string? Reason => _reason;

    /// <summary>
    /// Why this node was downed, for a node that learned it only from the cluster's gossip and shut down at once (a
    /// non-leader of the side that went down gets no event first): the recorded reason, else the reason its own view of
    /// the last split gave; null when it saw no split.
    /// </summary>
    public string? ReasonIfDowned => _reason ?? _expected;

    /// <summary>Keeps the first reason recorded: this node's own decision comes before the event that it was downed.</summary>
    /// <param name="reason">What happened, in words.</param>
    /// <param name="ownDecision">True when this node's side decided to go down; false when another member downed it.</param>
    internal void Record(string reason, bool ownDecision) => Interlocked.CompareExchange(ref _reason, Describe(reason, ownDecision), null);

    /// <summary>The reason this node would give if it were downed now, from its current view; null when it sees no split.</summary>
    internal void Expect(string? reason, bool ownDecision) => _expected = reason is null ? null : Describe(reason, ownDecision);

    private static string Describe(string reason, bool ownDecision) => ownDecision ? $"this node's side went down: {reason}" : reason;

    /// <summary>The report of <paramref name="system"/>.</summary>
    public static DowningReport Get(ActorSystem system) => system.WithExtension<DowningReport, DowningReportProvider>();
}

/// <summary>Creates the one <see cref="DowningReport"/> of an actor system.</summary>
public sealed class DowningReportProvider : ExtensionIdProvider<DowningReport>
{
    /// <inheritdoc />
    public override DowningReport CreateExtension(ExtendedActorSystem system) => new();
}
