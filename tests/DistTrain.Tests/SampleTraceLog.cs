using System.Globalization;

namespace DistTrain.Tests;

/// <summary>
/// Reads a run's sample trace (Monitoring:SampleTraceDirectory, written by the workers and the parameter server) and
/// checks which samples each epoch trained on: the samples of every minibatch whose gradient a step applied, found by
/// joining the parameter server's steps with the workers' minibatches on (weights version, worker).
/// </summary>
internal static class SampleTraceLog
{
    /// <summary>One minibatch whose gradient a step applied.</summary>
    public sealed record AppliedMinibatch(int Epoch, int Round, long Version, int Worker, int[] Samples);

    /// <summary>Per epoch, the training-set indices of every applied minibatch, sorted (a sample used twice appears twice).</summary>
    public static SortedDictionary<int, int[]> SamplesByEpoch(string directory) =>
        new(Applied(directory).GroupBy(m => m.Epoch).ToDictionary(g => g.Key, g => g.SelectMany(m => m.Samples).Order().ToArray()));

    /// <summary>Every applied minibatch, in the order of the parameter server's steps.</summary>
    public static List<AppliedMinibatch> Applied(string directory)
    {
        var minibatches = new Dictionary<(long Version, int Worker), AppliedMinibatch>();
        foreach (var m in Computed(directory))
            Assert.True(minibatches.TryAdd((m.Version, m.Worker), m), $"worker {m.Worker} computed two gradients on weights version {m.Version} ({directory})");
        var applied = new List<AppliedMinibatch>();
        var versions = new HashSet<long>();
        foreach (var (epoch, round, version, workers) in Steps(directory))
        {
            Assert.True(versions.Add(version), $"two steps on weights version {version}");
            Assert.NotEmpty(workers);
            foreach (var worker in workers)
            {
                Assert.True(minibatches.TryGetValue((version, worker), out var minibatch),
                    $"the step on version {version} (epoch {epoch}, round {round}) applied worker {worker}'s gradient, but that worker recorded no minibatch for it");
                Assert.True((minibatch.Epoch, minibatch.Round) == (epoch, round),
                    $"worker {worker}'s minibatch on version {version} is epoch {minibatch.Epoch} round {minibatch.Round}, the step epoch {epoch} round {round}");
                applied.Add(new AppliedMinibatch(epoch, round, version, worker, minibatch.Samples));
            }
        }
        return applied;
    }

    /// <summary>
    /// Every applied minibatch of an Async run, in the order of the parameter server's steps. There a step applies one
    /// worker's gradient, on the version it was applied to, and a worker has one minibatch in flight, so each worker's steps
    /// pair with its minibatch lines in order (<see cref="DistTrain.Cluster.Metrics.SampleTrace"/>).
    /// </summary>
    public static List<AppliedMinibatch> AppliedAsync(string directory)
    {
        var computed = Computed(directory).GroupBy(m => m.Worker).ToDictionary(g => g.Key, g => new Queue<AppliedMinibatch>(g));
        var applied = new List<AppliedMinibatch>();
        foreach (var (epoch, round, version, workers) in Steps(directory))
        {
            var worker = Assert.Single(workers);
            AppliedMinibatch? minibatch = null;
            Assert.True(computed.TryGetValue(worker, out var queue) && queue.TryDequeue(out minibatch),
                $"the step on version {version} (epoch {epoch}, round {round}) applied worker {worker}'s gradient, but that worker recorded no minibatch left for it");
            Assert.True((minibatch.Epoch, minibatch.Round) == (epoch, round),
                $"worker {worker}'s next minibatch is epoch {minibatch.Epoch} round {minibatch.Round}, the step on version {version} epoch {epoch} round {round}");
            applied.Add(minibatch with { Version = version });
        }
        return applied;
    }

    /// <summary>
    /// Every applied minibatch of a BoundedStaleness run, in the order of the parameter server's steps. There each round is
    /// applied once, by one step that lists the workers of its minibatches (once each, also a worker that computed two of
    /// them), so every minibatch line of a worker pairs with the step of its (epoch, round)
    /// (<see cref="DistTrain.Cluster.Metrics.SampleTrace"/>).
    /// </summary>
    public static List<AppliedMinibatch> AppliedByRound(string directory)
    {
        var computed = Computed(directory).GroupBy(m => (m.Epoch, m.Round, m.Worker)).ToDictionary(g => g.Key, g => g.ToList());
        var applied = new List<AppliedMinibatch>();
        foreach (var (epoch, round, version, workers) in Steps(directory))
            foreach (var worker in workers.Distinct())
            {
                Assert.True(computed.Remove((epoch, round, worker), out var minibatches),
                    $"the step on version {version} (epoch {epoch}, round {round}) applied worker {worker}'s gradient, but that worker recorded no minibatch of that round left for it");
                applied.AddRange(minibatches.Select(m => m with { Version = version }));
            }
        return applied;
    }

    /// <summary>
    /// Every minibatch of a LocalSgd run, from the workers' lines alone: there each local step is a line with the version its
    /// period started from, and a period's models are all averaged (no worker lost), so every line was applied
    /// (<see cref="DistTrain.Cluster.Metrics.SampleTrace"/>).
    /// </summary>
    public static List<AppliedMinibatch> Computed(string directory) =>
        [.. Directory.GetFiles(directory, "minibatches-*.csv").SelectMany(Lines).Select(fields => new AppliedMinibatch(Int(fields[0]), Int(fields[1]),
            long.Parse(fields[2], CultureInfo.InvariantCulture), Int(fields[3]), fields[4].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(Int).ToArray()))];

    /// <summary>The parameter server's step lines, in order: epoch, round, weights version and the workers whose gradients it applied.</summary>
    private static IEnumerable<(int Epoch, int Round, long Version, int[] Workers)> Steps(string directory)
    {
        var stepFiles = Directory.GetFiles(directory, "steps-*.csv");
        Assert.True(stepFiles.Length == 1, $"expected the steps of one parameter server in {directory}, found {stepFiles.Length} files");
        return Lines(stepFiles[0]).Select(fields => (Int(fields[0]), Int(fields[1]), long.Parse(fields[2], CultureInfo.InvariantCulture),
            fields[3].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(Int).ToArray()));
    }

    /// <summary>Asserts that epochs 1 to <paramref name="epochs"/> each trained on samples 0 to <paramref name="sampleCount"/> − 1 exactly once.</summary>
    /// <param name="laterEpochsUnfinished">Allow steps of later epochs (a job ended mid-epoch); they are not checked.</param>
    /// <returns>The samples per epoch, for further checks.</returns>
    public static SortedDictionary<int, int[]> AssertEverySampleOnceEachEpoch(string directory, int sampleCount, int epochs, bool laterEpochsUnfinished = false)
    {
        var byEpoch = SamplesByEpoch(directory);
        if (laterEpochsUnfinished) Assert.Equal(Enumerable.Range(1, epochs), byEpoch.Keys.Take(epochs));
        else Assert.Equal(Enumerable.Range(1, epochs), byEpoch.Keys);
        foreach (var (epoch, samples) in byEpoch.Where(e => e.Key <= epochs))
        {
            var repeated = samples.GroupBy(s => s).Where(g => g.Count() > 1).Select(g => g.Key).Take(10).ToList();
            var missing = Enumerable.Range(0, sampleCount).Except(samples).Take(10).ToList();
            Assert.True(repeated.Count == 0 && missing.Count == 0 && samples.Length == sampleCount,
                $"epoch {epoch} trained on {samples.Length} samples; repeated: [{string.Join(", ", repeated)}], missing: [{string.Join(", ", missing)}] (first 10 of each)");
        }
        return byEpoch;
    }

    private static IEnumerable<string[]> Lines(string file) =>
        File.ReadLines(file).Skip(1).Where(line => line.Length > 0).Select(line => line.Split(','));

    private static int Int(string text) => int.Parse(text, CultureInfo.InvariantCulture);
}
