namespace DistTrain.Core.Data;

/// <summary>
/// How one worker's shard of <see cref="Samples"/> samples is cut into consecutive minibatches: either fixed minibatches
/// of <see cref="BatchSize"/> with a shorter last one (PyTorch's <c>DataLoader</c> with <c>drop_last=False</c>), or
/// exactly <see cref="Steps"/> balanced minibatches whose sizes differ by at most one sample.
/// </summary>
/// <remarks>
/// Balanced minibatches serve a job whose worker count changed while it keeps its starting global minibatch
/// (Training:KeepGlobalBatch): with fixed minibatches of <c>⌈global / workers⌉</c>, the remainder can leave a last step of
/// one sample per worker, and BatchNorm's statistics over one sample (a near-zero variance divides the gradient, and
/// enters the running variance) wrecked a CNN's weights in such a step (docs/reliability.md). Minibatch k of a balanced
/// plan is <c>[⌊k·n/s⌋, ⌊(k+1)·n/s⌋)</c> with <c>s = min(Steps, n)</c>.
/// </remarks>
/// <param name="Samples">Samples in the shard, ≥ 0.</param>
/// <param name="BatchSize">Fixed plan: samples per minibatch, ≥ 1. Balanced plan: the largest minibatch.</param>
/// <param name="Steps">0 for the fixed plan; otherwise the number of balanced minibatches (fewer when the shard has
/// fewer samples than that).</param>
public readonly record struct MinibatchPlan(int Samples, int BatchSize, int Steps = 0)
{
    /// <summary>Fixed minibatches of <paramref name="batchSize"/> over <paramref name="samples"/>, the last one shorter.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="samples"/> is negative or <paramref name="batchSize"/> below 1.</exception>
    public static MinibatchPlan Fixed(int samples, int batchSize)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(samples);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        return new(samples, batchSize);
    }

    /// <summary><paramref name="steps"/> balanced minibatches over <paramref name="samples"/> (fewer if there are fewer samples).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="samples"/> is negative or <paramref name="steps"/> below 1.</exception>
    public static MinibatchPlan Balanced(int samples, int steps)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(samples);
        ArgumentOutOfRangeException.ThrowIfLessThan(steps, 1);
        var count = Math.Min(steps, samples);
        return new(samples, count == 0 ? 1 : (samples + count - 1) / count, steps);
    }

    /// <summary>Minibatches in the shard (0 for an empty shard).</summary>
    public int Count => Steps > 0 ? Math.Min(Steps, Samples) : (Samples + BatchSize - 1) / BatchSize;

    /// <summary>Offset in the shard of minibatch <paramref name="k"/>; <see cref="Samples"/> for <c>k = Count</c>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="k"/> is outside <c>[0, Count]</c>.</exception>
    public int Start(int k)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(k, Count);
        if (Steps > 0) return Count == 0 ? 0 : (int)((long)k * Samples / Count);
        return Math.Min(Samples, k * BatchSize);
    }

    /// <summary>Samples in minibatch <paramref name="k"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="k"/> is outside <c>[0, Count)</c>.</exception>
    public int Length(int k)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(k, Count);
        return Start(k + 1) - Start(k);
    }
}
