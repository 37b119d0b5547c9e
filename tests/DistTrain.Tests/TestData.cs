using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Models;

namespace DistTrain.Tests;

/// <summary>The committed Fashion-MNIST subset (tests/data, cut by make_subset.py) and small model configs.</summary>
internal static class TestData
{
    public static string SubsetDirectory => Path.Combine(AppContext.BaseDirectory, "data", "fashion-mnist-subset");

    public static string GoldenPath(string name) => Path.Combine(AppContext.BaseDirectory, "golden", name);

    private static readonly Lazy<(LabeledDataset Train, LabeledDataset Test)> Raw = new(() => FashionMnist.Load(SubsetDirectory));

    /// <summary>Pixels / 255, no other normalization (what the PyTorch golden script sees). Shared: do not modify.</summary>
    public static LabeledDataset RawTrain => Raw.Value.Train;

    /// <summary>Test split, pixels / 255. Shared: do not modify.</summary>
    public static LabeledDataset RawTest => Raw.Value.Test;

/// <summary>A small CNN with BatchNorm for [1, 28, 28] inputs: conv (0), BN (1), ReLU, pool, flatten, dense head (5) with <paramref name="classes"/> logits.</summary>
    public static ModelOptions SmallCnn(int classes) => new()
    {
        InputShape = [1, 28, 28],
        Layers =
        [
            new() { Type = LayerTypes.Conv2D, Channels = 4, KernelSize = 3, Padding = 1 }, new() { Type = LayerTypes.BatchNorm },
            new() { Type = LayerTypes.ReLU }, new() { Type = LayerTypes.MaxPool2D, KernelSize = 4 },
            new() { Type = LayerTypes.Flatten }, new() { Type = LayerTypes.Dense, Units = classes },
        ],
    };

    /// <summary>Fresh, globally normalized copies (1000 train, 250 test samples).</summary>
    public static TrainingData Normalized() =>
        TrainingData.Load(new DataOptions { Directory = SubsetDirectory, Normalization = NormalizationKind.Global });

    public static ModelOptions Mlp(params int[] widths)
    {
        var layers = new List<LayerOptions>();
        for (var i = 0; i < widths.Length; i++)
        {
            layers.Add(new LayerOptions { Type = LayerTypes.Dense, Units = widths[i] });
            if (i < widths.Length - 1) layers.Add(new LayerOptions { Type = LayerTypes.ReLU });
        }
        return new ModelOptions { InputSize = 784, Layers = layers };
    }

    public static TrainingOptions Options(ModelOptions model, int workers, int batch, int epochs, double learningRate = 0.05,
        double momentum = 0.9, double l2 = 1e-4, double l1 = 0) => new()
    {
        Data = new DataOptions { Directory = SubsetDirectory },
        Model = model,
        Optimizer = new() { LearningRate = learningRate, Momentum = momentum, L2 = l2, L1 = l1 },
        Training = new TrainingLoopOptions { Workers = workers, BatchSizePerWorker = batch, Epochs = epochs, Seed = 7, EvaluationBatchSize = 100 },
    };
}

/// <summary>A shard plan given in full, the same for every epoch.</summary>
internal sealed class FixedShardPlan(int sampleCount, int[][] shards) : IShardPlanner
{
    public int SampleCount => sampleCount;
    public int Workers => shards.Length;
    public int[][] Plan(int epoch) => shards;
}

/// <summary>Records what the coordinator reports.</summary>
internal sealed class RecordingObserver : ITrainingObserver
{
    public List<double> StepLosses { get; } = [];
    public List<(int Epoch, RoundTiming Timing)> Timings { get; } = [];
    public List<EpochSummary> Epochs { get; } = [];
    public void EpochStarted(int epoch, int steps, int samples) { }
    public List<double> LearningRates { get; } = [];
    public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing)
    {
        StepLosses.Add(meanLoss);
        LearningRates.Add(learningRate);
        Timings.Add((epoch, timing));
    }
    public void EpochCompleted(EpochSummary summary) => Epochs.Add(summary);
}

internal static class TestTimeouts
{
    /// <summary>
    /// The actor-system config of the TestKit tests: DistTrain's serializer, and 30 s (instead of TestKit's 3 s) as the
    /// default time an ExpectMsg waits, a hang guard that a loaded 2-core machine does not reach. Negative checks
    /// (ExpectNoMsg) give their own short windows.
    /// </summary>
    public static Akka.Configuration.Config TestKitConfig =>
        Akka.Configuration.ConfigurationFactory.ParseString("akka.test.single-expect-default = 30s")
            .WithFallback(DistTrain.Cluster.Hosting.AkkaSettings.Serialization());

    /// <summary>Every training in the suite is bounded: a hang fails the test instead of stalling CI.</summary>
    public static Task<T> WithTestTimeout<T>(this Task<T> task, int seconds = 120) => task.WaitAsync(TimeSpan.FromSeconds(seconds));
}

internal static class Compare
{
    /// <summary>
    /// Asserts |a − b| ≤ relative·|b| + absolute for every element, reporting the worst one. A NaN or infinite element on
    /// either side fails (a NaN difference compares false with every bound, so it is tested as "not within", never as
    /// "beyond"): a layer, backend or run that produced NaN must not pass as close.
    /// </summary>
    public static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, double relative, double absolute, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
            if (!float.IsFinite(expected[i]) || !float.IsFinite(actual[i]))
                Assert.Fail($"{what}: element {i} expected {expected[i]:R} but was {actual[i]:R} (not finite)");
        var worst = -1;
        var worstExcess = 0.0;
        for (var i = 0; i < expected.Length; i++)
        {
            var excess = Math.Abs(expected[i] - actual[i]) - (relative * Math.Abs(expected[i]) + absolute);
            if (!(excess <= worstExcess)) { worstExcess = excess; worst = i; }
        }
        Assert.True(worst < 0, worst < 0 ? "" : $"{what}: element {worst} expected {expected[worst]:R} but was {actual[worst]:R}");
    }

    /// <summary>Asserts |a − b| ≤ relative·|b| + absolute for two scalars; a NaN or infinity on either side fails.</summary>
    public static void Close(double expected, double actual, double relative, double absolute, string what)
    {
        Assert.True(double.IsFinite(expected) && double.IsFinite(actual), $"{what}: expected {expected:R} but was {actual:R} (not finite)");
        Assert.True(Math.Abs(expected - actual) <= relative * Math.Abs(expected) + absolute, $"{what}: expected {expected:R} but was {actual:R}");
    }

    /// <summary>
    /// Asserts bit-identical float arrays (every element's bits equal, so +0 and −0 differ) that are all finite: equal NaNs
    /// would otherwise pass as identical. Reports the first differing element.
    /// </summary>
    public static void Identical(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            if (!float.IsFinite(expected[i]) || !float.IsFinite(actual[i]))
                Assert.Fail($"{what}: element {i} expected {expected[i]:R} but was {actual[i]:R} (not finite)");
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: element {i} expected {expected[i]:R} but was {actual[i]:R} (not bit-identical)");
        }
    }
}
