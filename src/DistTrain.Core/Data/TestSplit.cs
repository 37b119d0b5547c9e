namespace DistTrain.Core.Data;

/// <summary>
/// Holds out a test split from a data set that has none (a single CSV file, one image folder): per class, the
/// <c>round(fraction · n_c)</c> samples (halves rounded up) whose key <c>SplitMix64.Mix(SplitMix64.Mix(seed) ^ index)</c>
/// is smallest go to the test split, so every class keeps its share. The rule needs no random-number library, so other
/// tools can reproduce the split exactly (<c>tests/baselines/test_split.py</c> does, for scikit-learn).
/// </summary>
public static class TestSplit
{
    /// <summary>The indices of the test samples, ascending.</summary>
    /// <param name="labels">Class of each sample.</param>
    /// <param name="fraction">Share of each class held out, in (0, 1).</param>
    /// <param name="seed">Data:TestSplitSeed.</param>
    /// <exception cref="ArgumentOutOfRangeException">The fraction is not in (0, 1).</exception>
    public static int[] TestIndices(ReadOnlySpan<byte> labels, double fraction, int seed)
    {
        if (!(fraction is > 0 and < 1)) throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "The test fraction must be in (0, 1).");
        var seedKey = SplitMix64.Mix(unchecked((ulong)seed));
        var byClass = new Dictionary<byte, List<(ulong Key, int Index)>>();
        for (var i = 0; i < labels.Length; i++)
        {
            if (!byClass.TryGetValue(labels[i], out var members)) byClass[labels[i]] = members = [];
            members.Add((SplitMix64.Mix(seedKey ^ (ulong)i), i));
        }
        var test = new List<int>();
        foreach (var members in byClass.Values)
        {
            var count = (int)Math.Floor(fraction * members.Count + 0.5);
            test.AddRange(members.OrderBy(m => m.Key).ThenBy(m => m.Index).Take(count).Select(m => m.Index));
        }
        test.Sort();
        return [.. test];
    }

    /// <summary>Splits <paramref name="all"/> into training and test samples by <see cref="TestIndices"/>, both in their original order.</summary>
    /// <param name="all">Every sample.</param>
    /// <param name="fraction">Share of each class held out, in (0, 1).</param>
    /// <param name="seed">Data:TestSplitSeed.</param>
    /// <param name="source">Names the data in the error message.</param>
    /// <exception cref="DataFormatException">A side would be empty.</exception>
    public static (LabeledDataset Train, LabeledDataset Test) Split(LabeledDataset all, double fraction, int seed, string source)
    {
        var test = TestIndices(all.Labels, fraction, seed);
        if (test.Length == 0 || test.Length == all.Count)
        {
            // The share is held out of each class: with many classes of one or two samples (a column of measurements read as the
            // labels), none gives a test sample, and the classes, not the amount of data, are the cause.
            var classSizes = all.Labels.GroupBy(l => l).Select(g => g.Count()).DefaultIfEmpty(0).ToList();
            var mostlySingles = classSizes.Count(c => c == 1) * 2 > classSizes.Count;
            var largest = classSizes.Max();
            var hint = mostlySingles ? "; that many classes for so few samples suggests the labels were read from a column that is not the label " +
                "column: for a CSV file, check Data:Csv:LabelColumn" : "";
            var classes = test.Length == 0
                ? $" (the share is held out of each class, and none of its {classSizes.Count} classes is large enough for one: the largest has {largest} " +
                  $"sample{(largest == 1 ? "" : "s")}{hint})"
                : $" (the share is held out of each class, rounded, which takes every sample of its {classSizes.Count} classes of at most {largest} " +
                  $"sample{(largest == 1 ? "" : "s")}{hint})";
            throw new DataFormatException($"Data:TestFraction = {fraction} of the {all.Count} samples of {source} leaves {(test.Length == 0 ? "no test" : "no training")} " +
                $"samples{classes}: give more data, change the fraction or give a test file or folder.");
        }
        var isTest = new bool[all.Count];
        foreach (var index in test) isTest[index] = true;
        var train = Enumerable.Range(0, all.Count).Where(i => !isTest[i]).ToArray();
        return (all.Subset(train), all.Subset(test));
    }
}
