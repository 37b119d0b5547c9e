using System.Text.Json;

namespace DistTrain.Tests;

/// <summary>
/// Which training samples went into the weights, from the sample logs (Output:SampleLogFile) of a parameter server and
/// its workers: every <c>applied</c> contribution is matched to the one <c>computed</c> line with the same epoch, round,
/// weights version and worker and the same loss sum to the bit, and its sample indices counted for that epoch.
/// </summary>
internal static class SampleAudit
{
    private sealed record Computed(int Epoch, int Round, long Version, int Worker, double LossSum, int[] Samples, DateTime Time);

    /// <summary>Times of the parameter server's applied steps, in file order.</summary>
    public static List<DateTime> AppliedTimes(string parameterServerLog) =>
        [.. Lines(parameterServerLog).Where(l => l.GetProperty("event").GetString() == "applied").Select(l => l.GetProperty("time").GetDateTime())];

    /// <summary>
    /// For each epoch with applied steps, how many times each sample index was trained on (the union over the applied
    /// contributions). Fails when a contribution has no computed line, or more than one, or their sample counts differ.
    /// </summary>
    public static SortedDictionary<int, Dictionary<int, int>> TrainedSamplesByEpoch(string parameterServerLog, IEnumerable<string> workerLogs)
    {
        var computed = workerLogs.Where(File.Exists).SelectMany(Lines)
            .Where(l => l.GetProperty("event").GetString() == "computed")
            .Select(l => new Computed(l.GetProperty("epoch").GetInt32(), l.GetProperty("round").GetInt32(), l.GetProperty("version").GetInt64(),
                l.GetProperty("worker").GetInt32(), l.GetProperty("lossSum").GetDouble(),
                [.. l.GetProperty("samples").EnumerateArray().Select(s => s.GetInt32())], l.GetProperty("time").GetDateTime()))
            .ToLookup(c => (c.Epoch, c.Round, c.Version, c.Worker));
        var trained = new SortedDictionary<int, Dictionary<int, int>>();
        foreach (var step in Lines(parameterServerLog).Where(l => l.GetProperty("event").GetString() == "applied"))
        {
            var epoch = step.GetProperty("epoch").GetInt32();
            var round = step.GetProperty("round").GetInt32();
            var version = step.GetProperty("version").GetInt64();
            if (!trained.TryGetValue(epoch, out var counts)) trained[epoch] = counts = [];
            foreach (var contribution in step.GetProperty("contributions").EnumerateArray())
            {
                var worker = contribution.GetProperty("worker").GetInt32();
                var lossSum = contribution.GetProperty("lossSum").GetDouble();
                var matches = computed[(epoch, round, version, worker)].Where(c => c.LossSum.Equals(lossSum)).ToList();
                Assert.True(matches.Count == 1,
                    $"epoch {epoch} round {round} version {version}: worker {worker}'s applied gradient (loss sum {lossSum:R}) matches {matches.Count} computed lines");
                Assert.Equal(contribution.GetProperty("samples").GetInt32(), matches[0].Samples.Length);
                foreach (var sample in matches[0].Samples) counts[sample] = counts.GetValueOrDefault(sample) + 1;
            }
        }
        return trained;
    }

    /// <summary>Asserts that in every epoch before <paramref name="lastEpoch"/> (inclusive) every one of <paramref name="sampleCount"/> samples trained exactly once.</summary>
    public static void AssertEverySampleOncePerEpoch(SortedDictionary<int, Dictionary<int, int>> trained, int sampleCount, int firstEpoch, int lastEpoch)
    {
        for (var epoch = firstEpoch; epoch <= lastEpoch; epoch++)
        {
            Assert.True(trained.TryGetValue(epoch, out var counts), $"epoch {epoch} has no applied step in the sample log");
            var missing = Enumerable.Range(0, sampleCount).Where(s => !counts.ContainsKey(s)).ToList();
            var twice = counts.Where(kv => kv.Value > 1).Select(kv => $"{kv.Key} ({kv.Value}x)").ToList();
            var foreign = counts.Keys.Where(s => s < 0 || s >= sampleCount).ToList();
            Assert.True(missing.Count == 0 && twice.Count == 0 && foreign.Count == 0,
                $"epoch {epoch}: {missing.Count} samples never trained (first: {string.Join(", ", missing.Take(10))}), " +
                $"{twice.Count} trained more than once (first: {string.Join(", ", twice.Take(10))}), {foreign.Count} out of range");
        }
    }

    private static IEnumerable<JsonElement> Lines(string path) =>
        File.ReadAllLines(path).Where(l => l.Length > 0).Select(l => JsonDocument.Parse(l).RootElement);
}
