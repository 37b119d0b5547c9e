using System.Globalization;
using System.Text.RegularExpressions;
using Akka.Event;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// Keeps one in five of Akka.Cluster's WARNING "Couldn't join seed nodes after [N] attempts, will try again" (those whose N
/// is a multiple of five) and drops the others. A worker node, or a parameter-server node that is not its first seed,
/// sends its seeds InitJoin every <see cref="AkkaSettings.JoinRetrySeconds"/> s (<see cref="AkkaSettings.JoinRetry"/>), and
/// Akka warns at every attempt from the second on: a worker started a moment before its parameter server would print the
/// warning in a normal start, and one waiting for a parameter server that is down would print it every 1.25 s. Kept, it
/// comes about as often as it did with Akka's default of 5 s between attempts. Every other line is left alone. On those
/// nodes only (<see cref="AkkaSettings.RetriesJoinQuickly"/>): the first seed keeps 5 s between attempts, and every warning.
/// </summary>
internal sealed partial class JoinRetryLogFilter : LogFilterBase
{
    /// <summary>Every how many attempts the warning is kept.</summary>
    internal const int KeepEvery = 5;

    /// <summary><see cref="LogFilterType.Content"/>, as <see cref="DepartedNodesLogFilter"/>'s (which says why).</summary>
    public override LogFilterType FilterType => LogFilterType.Content;

    /// <inheritdoc />
    public override LogFilterDecision ShouldKeepMessage(LogEvent content, string? expandedMessage = null)
    {
        if (content is not Warning) return LogFilterDecision.NoDecision;
        // The message alone: expandedMessage is the whole line, level, time and source first.
        var text = content.Message?.ToString() ?? "";
        if (Attempts(text) is not { } attempts) return LogFilterDecision.NoDecision;
        return attempts % KeepEvery == 0 ? LogFilterDecision.NoDecision : LogFilterDecision.Drop;
    }

    /// <summary>The N of "Couldn't join seed nodes after [N] attempts"; null for any other text.</summary>
    internal static int? Attempts(string text) =>
        CouldNotJoin().Match(text) is { Success: true } m
        && int.TryParse(m.Groups["n"].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : null;

    [GeneratedRegex(@"^Couldn't join seed nodes after \[(?<n>\d+)\] attempts")]
    private static partial Regex CouldNotJoin();
}
