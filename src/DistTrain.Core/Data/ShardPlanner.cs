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

    /// <summary>True when every shard gets the same share (no weights given, or all equal): the planner is then fully described
    /// by (<see cref="SampleCount"/>, <see cref="Workers"/>, <see cref="Seed"/>), so another process can plan the same shards.</summary>
    public bool IsEven => _weights.All(w => w == _weights[0]);

    /// <summary>The shards of one epoch (1-based epochs by convention; any int works): <c>Workers</c> arrays of sample indices.</summary>
    public int[][] Plan(int epoch)
    {
        var order = Order(epoch);
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

    /// <summary>Shard <paramref name="worker"/> of <paramref name="epoch"/> alone: <c>Plan(epoch)[worker]</c>, without copying the others.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="worker"/> is not 0 to <see cref="Workers"/> − 1.</exception>
    public int[] PlanShard(int epoch, int worker)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(worker);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(worker, Workers);
        var sizes = ShardSizes();
        var start = 0;
        for (var w = 0; w < worker; w++) start += sizes[w];
        return Order(epoch).AsSpan(start, sizes[worker]).ToArray();
    }

    /// <summary>The epoch's order of every sample index: 0 to <see cref="SampleCount"/> − 1 shuffled by a generator seeded from (seed, epoch).</summary>
    private int[] Order(int epoch)
    {
        var order = new int[SampleCount];
        for (var i = 0; i < order.Length; i++) order[i] = i;
        // HashCode.Combine is randomized per process, so mix the seed and epoch by hand.
        new Random(unchecked(Seed * 1_000_003 + epoch)).Shuffle(order);
        return order;
    }

    /// <summary>
    /// <see cref="Digest"/> of a fixed plan (1,000 samples, 3 shards, seed 1, epoch 1), as 16 hex digits: the same on every
    /// node whose build and .NET runtime shuffle alike, which is what a worker planning its own shards from the coordinator's
    /// recipe relies on. Nodes compare it when a worker registers (the cluster's model fingerprint).
    /// </summary>
    public static string ReferenceDigest { get; } = Digest(new ShardPlanner(1_000, 3, 1).Plan(1)).ToString("x16", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// A 64-bit digest of a sequence of sample indices (FNV-1a over the indices as 32-bit words, each shard's length mixed in
    /// first), the same in every process: two processes that planned the same shards get the same digest, and a different
    /// order, a different index or a different cut almost surely changes it. A check against accidents (another build, another
    /// training set), not against forgery.
    /// </summary>
    /// <param name="shards">The shards, in order.</param>
    public static ulong Digest(params ReadOnlySpan<int[]> shards)
    {
        const ulong offset = 14695981039346656037, prime = 1099511628211;
        var digest = offset;
        foreach (var shard in shards)
        {
            digest = (digest ^ (uint)shard.Length) * prime;
            foreach (var index in shard) digest = (digest ^ (uint)index) * prime;
        }
        return digest;
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
