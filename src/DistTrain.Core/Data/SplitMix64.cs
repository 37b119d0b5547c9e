namespace DistTrain.Core.Data;

/// <summary>
/// SplitMix64, a small pseudorandom generator whose whole state is one 64-bit counter (Steele, Lea and Flood,
/// "Fast splittable pseudorandom number generators", OOPSLA 2014; constants of Vigna's <c>splitmix64.c</c>). A value
/// type that allocates nothing, and whose draws are the same in every process and language, so per-sample draws can be
/// seeded from (seed, epoch, sample) and reproduced elsewhere (the CSV test split is reproduced in Python).
/// </summary>
public struct SplitMix64
{
    private ulong _state;

    /// <summary>Starts the sequence at <paramref name="seed"/>.</summary>
    public SplitMix64(ulong seed) => _state = seed;

    /// <summary>A generator seeded by a hash of the three values: one independent sequence per (seed, epoch, sample).</summary>
    public static SplitMix64 For(long seed, long epoch, long sample) =>
        new(Mix(Mix(Mix(unchecked((ulong)seed)) ^ unchecked((ulong)epoch)) ^ unchecked((ulong)sample)));

    /// <summary>The SplitMix64 output function applied to <paramref name="value"/> + the golden-ratio increment: a 64-bit hash.</summary>
    public static ulong Mix(ulong value)
    {
        var z = unchecked(value + 0x9E3779B97F4A7C15UL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        return z ^ (z >> 31);
    }

    /// <summary>The next 64 random bits.</summary>
    public ulong Next()
    {
        _state = unchecked(_state + 0x9E3779B97F4A7C15UL);
        var z = _state;
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        return z ^ (z >> 31);
    }

    /// <summary>A double uniform in [0, 1), from the top 53 bits.</summary>
    public double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));

    /// <summary>An integer uniform in [<paramref name="min"/>, <paramref name="max"/>] (both included).</summary>
    public int NextInt(int min, int max) => min + (int)Math.Min(max - min, Math.Floor(NextDouble() * (max - min + 1.0)));
}
