namespace DistTrain.Cluster.Metrics;

/// <summary>
/// The distribution of the staleness of applied gradients over a run: how many gradients were applied at each number of
/// weights versions behind (the versions between the weights a gradient was computed on and the weights it updated, as
/// <see cref="Hosting.ITrainingObserver.StalenessReported"/> gives them). Thread-safe.
/// </summary>
public sealed class StalenessDistribution
{
    private readonly SortedDictionary<long, long> _counts = [];
    private readonly object _gate = new();

    /// <summary>Adds one step's report: one staleness per worker, in versions; NaN (a worker without a gradient) is skipped.</summary>
    /// <param name="versionsBehind">The step's staleness by worker index; whole, non-negative numbers of versions.</param>
    public void Add(ReadOnlySpan<double> versionsBehind)
    {
        lock (_gate)
            foreach (var staleness in versionsBehind)
                if (!double.IsNaN(staleness)) _counts[(long)staleness] = _counts.GetValueOrDefault((long)staleness) + 1;
    }

    /// <summary>Gradients applied, by staleness in versions, in increasing order of staleness.</summary>
    public IReadOnlyDictionary<long, long> Counts
    {
        get { lock (_gate) return new SortedDictionary<long, long>(_counts); }
    }

    /// <summary>The summary of what was added so far; null when no gradient was.</summary>
    public StalenessSummary? Summarize()
    {
        lock (_gate)
        {
            var count = _counts.Values.Sum();
            if (count == 0) return null;
            return new StalenessSummary(count, _counts.Sum(c => (double)c.Key * c.Value) / count,
                Percentile(0.5, count), Percentile(0.9, count), _counts.Keys.Max(), new SortedDictionary<long, long>(_counts));
        }
    }

    /// <summary>
    /// The nearest-rank percentile: the smallest staleness s such that at least ⌈p · count⌉ gradients had staleness ≤ s
    /// (the nearest-rank method, e.g. NIST/SEMATECH e-Handbook of Statistical Methods, 7.2.6.2).
    /// </summary>
    private long Percentile(double p, long count)
    {
        var rank = Math.Max(1, (long)Math.Ceiling(p * count));
        long seen = 0;
        foreach (var (staleness, n) in _counts)
        {
            seen += n;
            if (seen >= rank) return staleness;
        }
        return _counts.Keys.Max();
    }
}

/// <summary>The staleness of a run's applied gradients, in weights versions (see <see cref="StalenessDistribution"/>).</summary>
/// <param name="Count">Gradients applied (one per worker per step it contributed to).</param>
/// <param name="Mean">Their mean staleness, versions.</param>
/// <param name="P50">Median staleness (nearest rank), versions.</param>
/// <param name="P90">90th percentile (nearest rank), versions.</param>
/// <param name="Max">Largest staleness, versions.</param>
/// <param name="Counts">Gradients applied by staleness, in increasing order.</param>
public sealed record StalenessSummary(long Count, double Mean, long P50, long P90, long Max, IReadOnlyDictionary<long, long> Counts);
