using Akka.Actor;
using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// The owner's merge of K shards' <see cref="ShardRoundApplied"/> reports into one step report per round, as one parameter
/// server reports a step (samples, summed loss, learning rate, version) and as the in-process sharded server merges its shards'
/// (the round's update time is the slowest shard's). A plain class: the shards' owner hands it every report.
/// </summary>
/// <remarks>
/// A round is reported once every shard has reported it under one stamp: a shard that stepped with a lost worker's slice and
/// then redid the round without it reports it again under a higher stamp, and the round is final only when all K agree (a
/// decision that keeps the slice changes no stamp; one that drops it makes every shard close the round under the new one). The
/// K reports of a final round must agree on the version, samples, loss and learning rate, since every shard applies the same
/// reports; a mismatch is the shards out of step, and <see cref="Take"/> says so. A report from an actor that is not the
/// shard it names, or of a round already merged, is ignored with the reason. A round whose last reports were dropped with a lost
/// worker (every shard redoes or closes it without any report) is merged too, as a report of no samples: no step, which the
/// owner does not pass on as one (one parameter server reports no step there), but the round is the part's last, and its
/// <see cref="ShardRoundApplied.PartFinished"/> is the part's end, which nothing else would signal.
/// The merged report says the part is finished when any shard says so: a shard that closed the round before a decision that
/// kept a lost worker's slice still expected the worker's next round, and every shard applies every decision.
/// </remarks>
public sealed class ShardRoundMerge
{
    private readonly IActorRef[] _shards;
    private readonly Dictionary<(int Epoch, int Part, int Round), ShardRoundApplied?[]> _open = [];
    private (int Epoch, int Part, int Round) _lastMerged = (0, 0, -1);

    /// <summary>A merge of the reports of <paramref name="shards"/> (by shard index).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="shards"/> is null.</exception>
    /// <exception cref="ArgumentException">No shard.</exception>
    public ShardRoundMerge(IReadOnlyList<IActorRef> shards)
    {
        ArgumentNullException.ThrowIfNull(shards);
        if (shards.Count == 0) throw new ArgumentException("A merge needs at least one shard.", nameof(shards));
        _shards = [.. shards];
    }

    /// <summary>
    /// Takes <paramref name="sender"/>'s report. <paramref name="merged"/> is the round's step report when this report made the
    /// round final (the shard-0 report's position, the slowest shard's update time, finished when any shard says so, the shards'
    /// L1 and L2 terms summed), else null;
    /// one of no samples is a round without a step (see the remarks).
    /// Returns null when taken, else why it was ignored, or the shards' disagreement (then nothing is merged).
    /// </summary>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    public string? Take(IActorRef sender, ShardRoundApplied report, out ShardRoundApplied? merged)
    {
        ArgumentNullException.ThrowIfNull(sender);
        ArgumentNullException.ThrowIfNull(report);
        merged = null;
        var what = $"shard {report.Shard}'s report of epoch {report.Epoch} part {report.Part} round {report.Round} (stamp {report.Stamp})";
        if (report.Shard < 0 || report.Shard >= _shards.Length || !sender.Equals(_shards[report.Shard]))
            return $"{what} came from {sender.Path}, which is not that shard; ignored";
        var key = (report.Epoch, report.Part, report.Round);
        if (key.CompareTo(_lastMerged) <= 0) return $"{what} is of a round already reported; ignored";
        if (!_open.TryGetValue(key, out var reports)) _open[key] = reports = new ShardRoundApplied?[_shards.Length];
        if (reports[report.Shard] is { } earlier && earlier.Stamp >= report.Stamp)
            return $"{what} does not replace its report under stamp {earlier.Stamp}; ignored";
        reports[report.Shard] = report;
        if (reports.Any(r => r is null || r.Stamp != report.Stamp)) return null;
        var lead = reports[0]!;
        foreach (var other in reports)
            if (other!.Version != lead.Version || other.SampleCount != lead.SampleCount || other.LossSum != lead.LossSum || other.LearningRate != lead.LearningRate)
                return $"the shards' reports of epoch {lead.Epoch} part {lead.Part} round {lead.Round} disagree (shard 0: version {lead.Version}, " +
                    $"{lead.SampleCount} samples, loss sum {lead.LossSum:R}; shard {other.Shard}: version {other.Version}, {other.SampleCount} samples, " +
                    $"loss sum {other.LossSum:R}): the shards are out of step";
        _open.Remove(key);
        foreach (var stale in _open.Keys.Where(k => k.CompareTo(key) < 0).ToArray()) _open.Remove(stale); // rounds before it are final too
        _lastMerged = key;
        // The model's regularization terms: the sum of the slices', in shard order (each shard reports them on a part's possible last rounds).
        double l1 = 0, l2 = 0;
        foreach (var r in reports)
        {
            l1 += r!.L1Penalty;
            l2 += r.L2Penalty;
        }
        merged = lead with { UpdateSeconds = reports.Max(r => r!.UpdateSeconds), RoundSeconds = reports.Max(r => r!.RoundSeconds), PartFinished = reports.Any(r => r!.PartFinished), L1Penalty = l1, L2Penalty = l2 };
        return null;
    }
}
