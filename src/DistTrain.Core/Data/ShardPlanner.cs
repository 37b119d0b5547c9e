namespace DistTrain.Core.Data;

/// <summary>
/// Plans each epoch's shards: the sample indices are shuffled by a generator seeded from
/// (seed, epoch), then cut into one contiguous piece per worker. In every epoch the shards are
/// disjoint and together cover every index exactly once; they are even to within one sample, or
/// proportional to the given worker weights, and so may be uneven.
/// </summary>
public sealed class ShardPlanner : IShardPlanner
{
    private readonly double[] _weights;

    /// <summary>Creates a planner for <paramref name="sampleCount"/> samples and <paramref name="workers"/> shards.</summary>
    /// <param name="sampleCount">Training samples per epoch.</param>
    /// <param name="workers">Number of shards (worker replicas).</param>
    /// <param name="seed">Seed of the per-epoch shuffles.</param>
    /// <param name="weights">Optional relative shard sizes, one positive value per worker (for example, faster workers get more).</param>
    /// <exception cref="ArgumentOutOfRangeException">A count is not positive, or a weight is not positive.</exception>
    public ShardPlanner(int sampleCount, int workers, int seed, IReadOnlyList<double>? weights = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(sampleCount);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(workers);
        if (weights is not null && (weights.Count != workers || weights.Any(w => !(w > 0) || !double.IsFinite(w))))
            throw new ArgumentOutOfRangeException(nameof(weights), $"Give one finite weight > 0 per worker ({workers}).");
        SampleCount = sampleCount;
        Workers = workers;
        Seed = seed;
        _weights = weights?.ToArray() ?? Enumerable.Repeat(1.0, workers).ToArray();
    }

    /// <summary>Samples per epoch.</summary>
    public int SampleCount { get; }

    /// <summary>Number of shards.</summary>
    public int Workers { get; }

    /// <summary>Seed of the shuffles.</summary>
    public int Seed { get; }

    /// <summary>The shards of one epoch (1-based epochs by convention; any int works): <c>Workers</c> arrays of sample indices.</summary>
    public int[][] Plan(int epoch)
    {
        var order = new int[SampleCount];
        for (var i = 0; i < order.Length; i++) order[i] = i;
        // HashCode.Combine is randomized per process, so mix the seed and epoch by hand.
        new Random(unchecked(Seed * 1_000_003 + epoch)).Shuffle(order);
        var sizes = ShardSizes();
        var shards = new int[Workers][];
        var start = 0;
        for (var w = 0; w < Workers; w++)
        {
            shards[w] = order.AsSpan(start, sizes[w]).ToArray();
            start += sizes[w];
        }
        return shards;
    }

    /// <summary>Shard sizes that sum to <see cref="SampleCount"/>, proportional to the weights (largest remainders get the spare samples).</summary>
    public int[] ShardSizes()
    {
        var total = _weights.Sum();
        var exact = _weights.Select(w => SampleCount * w / total).ToArray();
        var sizes = exact.Select(e => (int)Math.Floor(e)).ToArray();
        var spare = SampleCount - sizes.Sum();
        foreach (var w in Enumerable.Range(0, Workers).OrderByDescending(w => exact[w] - sizes[w]).ThenBy(w => w).Take(spare))
            sizes[w]++;
        return sizes;
    }
}
