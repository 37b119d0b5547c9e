using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Configuration;
using DistTrain.Core.Models;

namespace DistTrain.Tests;

/// <summary>
/// The training modes end to end on the 1,000-sample subset (single-node mode, real actors): the settings in which a mode
/// must reduce to synchronous training do so, gradient accumulation equals one large minibatch, and the asynchronous modes
/// train every sample once while recording real staleness.
/// </summary>
public class ModeEquivalenceTests
{
    private static ModelOptions MlpWithBatchNorm() => new()
    {
        InputSize = 784,
        Layers =
        [
            new() { Type = LayerTypes.Dense, Units = 32 }, new() { Type = LayerTypes.BatchNorm }, new() { Type = LayerTypes.ReLU },
            new() { Type = LayerTypes.Dense, Units = 10 },
        ],
    };

    private static async Task<(TrainingResult Result, StalenessRecorder Staleness)> Run(TrainingOptions options)
    {
        options.Compute.BlasThreads = 1;
        var data = TestData.Normalized();
        var staleness = new StalenessRecorder();
        var result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, staleness).WithTestTimeout();
        return (result, staleness);
    }

    [Fact]
    public async Task BoundedStaleness_with_bound_0_gives_the_synchronous_weights_bit_for_bit()
    {
        var sync = TestData.Options(MlpWithBatchNorm(), workers: 2, batch: 50, epochs: 2);
        var bounded = TestData.Options(MlpWithBatchNorm(), workers: 2, batch: 50, epochs: 2);
        bounded.Training.Mode = TrainingMode.BoundedStaleness;
        bounded.Training.StalenessBound = 0;
        var (expected, _) = await Run(sync);
        var (actual, staleness) = await Run(bounded);
        Assert.Equal(20, expected.Version);
        Assert.Equal(expected.Version, actual.Version);
        Assert.Equal(expected.FinalWeights.Values, actual.FinalWeights.Values);
        Assert.Equal([0L], staleness.Seen.Keys);
    }

    [Fact]
    public async Task LocalSgd_with_one_local_step_and_plain_SGD_gives_the_synchronous_weights_to_float_rounding()
    {
        // With k = 1 each worker takes one SGD step from the shared weights and the server averages the models by sample
        // count: w − lr·Σ nᵢgᵢ/Σ nᵢ, the synchronous step in exact arithmetic. In float32 the two sum in different orders
        // (the models after the step, against the gradients before it), so they differ by rounding: measured, at most
        // 2.98e-7 apart after these 20 steps (5 float32 ulps of the weight it is at, 0.51; 20,906 of 25,450 weights differ),
        // and 2.4e-7 to 7.2e-7 with 2 to 4 workers, other minibatches or 2 BLAS threads. The bound, 2e-6, is a few times
        // that, so a difference beyond rounding fails. The README quotes it; the gap grows over longer training.
        var sync = TestData.Options(TestData.Mlp(32, 10), workers: 2, batch: 50, epochs: 2, momentum: 0, l2: 0);
        var local = TestData.Options(TestData.Mlp(32, 10), workers: 2, batch: 50, epochs: 2, momentum: 0, l2: 0);
        local.Training.Mode = TrainingMode.LocalSgd;
        local.Training.LocalSteps = 1;
        var (expected, _) = await Run(sync);
        var (actual, _) = await Run(local);
        Assert.Equal(expected.Version, actual.Version);
        Compare.Close(expected.FinalWeights.Values, actual.FinalWeights.Values, relative: 0, absolute: 2e-6, "final weights");
        Assert.Equal(20, expected.Version);
    }

    [Fact]
    public async Task LocalSgd_with_four_local_steps_averages_less_often_and_still_learns()
    {
        var options = TestData.Options(TestData.Mlp(32, 10), workers: 2, batch: 25, epochs: 2);
        options.Training.Mode = TrainingMode.LocalSgd;
        options.Training.LocalSteps = 4;
        var (result, _) = await Run(options);
        // 500 samples per shard in minibatches of 25: 20 local steps per worker per epoch, averaged every 4; the version
        // counts optimizer steps, so each averaging moves it 4 on.
        Assert.Equal(40, result.Version);
        Assert.All(result.Epochs, e => Assert.Equal(1000, e.TrainSamples));
        Assert.True(result.Epochs[^1].TestAccuracy > 0.6, $"test accuracy {result.Epochs[^1].TestAccuracy}");
    }

    [Fact]
    public async Task Four_accumulated_micro_batches_of_25_equal_one_minibatch_of_100()
    {
        var large = TestData.Options(TestData.Mlp(32, 10), workers: 2, batch: 100, epochs: 2);
        var accumulated = TestData.Options(TestData.Mlp(32, 10), workers: 2, batch: 25, epochs: 2);
        accumulated.Training.AccumulationSteps = 4;
        var (expected, _) = await Run(large);
        var (actual, _) = await Run(accumulated);
        Assert.Equal(10, expected.Version);
        Assert.Equal(expected.Version, actual.Version);
        Compare.Close(expected.FinalWeights.Values, actual.FinalWeights.Values, relative: 0, absolute: 1e-5, "final weights");
        Assert.Equal(expected.Epochs[^1].TrainLoss, actual.Epochs[^1].TrainLoss, 1e-5);
    }

    /// <summary>
    /// With BatchNorm the micro-batches are normalized each on its own statistics, so accumulation is not one large minibatch
    /// (as in PyTorch): the same run as above with a BatchNorm layer ends on other weights, and train warns of it before training,
    /// naming the layer and both fixes. Without BatchNorm, or without accumulation, there is no warning.
    /// </summary>
    [Fact]
    public async Task With_BatchNorm_accumulated_micro_batches_are_not_one_minibatch_and_are_warned_of()
    {
        static TrainingOptions WithBatchNorm(int batch, int accumulation)
        {
            var model = TestData.Mlp(32, 10);
            model.Layers.Insert(1, new LayerOptions { Type = LayerTypes.BatchNorm });
            var options = TestData.Options(model, workers: 2, batch: batch, epochs: 2);
            options.Training.AccumulationSteps = accumulation;
            return options;
        }
        var (large, _) = await Run(WithBatchNorm(100, 1));
        var (accumulated, _) = await Run(WithBatchNorm(25, 4));
        Assert.Equal(large.Version, accumulated.Version);
        var largest = large.FinalWeights.Values.Zip(accumulated.FinalWeights.Values, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(largest > 1e-3, $"the largest difference of the final weights is {largest}: as if the micro-batches were one minibatch");
        Assert.Equal("Training:AccumulationSteps = 4 with BatchNorm (Model:Layers:1): each micro-batch of Training:BatchSizePerWorker = 25 samples " +
            "is normalized with its own batch statistics, so a push is not the gradient of one minibatch of 100 samples, as it is without BatchNorm " +
            "(PyTorch's accumulation behaves the same), and its weights differ from such a run's. For one minibatch of 100, set BatchSizePerWorker to " +
            "100 and AccumulationSteps to 1, memory permitting, or use LayerNorm, which normalizes each sample on its own.",
            DistTrain.Cli.TrainCommand.AccumulationWithBatchNorm(WithBatchNorm(25, 4)));
        Assert.Null(DistTrain.Cli.TrainCommand.AccumulationWithBatchNorm(WithBatchNorm(100, 1)));
        var plain = TestData.Options(TestData.Mlp(32, 10), workers: 2, batch: 25, epochs: 2);
        plain.Training.AccumulationSteps = 4;
        Assert.Null(DistTrain.Cli.TrainCommand.AccumulationWithBatchNorm(plain));
    }

    [Theory]
    [InlineData(TrainingMode.Async)]
    [InlineData(TrainingMode.BoundedStaleness)]
    [InlineData(TrainingMode.LocalSgd)]
    public async Task Accumulation_works_in_every_mode(TrainingMode mode)
    {
        var options = TestData.Options(TestData.Mlp(32, 10), workers: 2, batch: 25, epochs: 1);
        options.Training.Mode = mode;
        options.Training.AccumulationSteps = 2;
        var (result, _) = await Run(options);
        Assert.Equal(1000, result.Epochs[0].TrainSamples);
        Assert.True(double.IsFinite(result.Epochs[0].TrainLoss));
    }

    [Fact]
    public async Task Async_applies_every_minibatch_once_and_records_staleness()
    {
        // Plain SGD: asynchrony adds momentum of its own (Mitliagkas et al., 2016), and with Momentum 0.9 on top this run
        // stalls near chance where synchronous training does not.
        var options = TestData.Options(TestData.Mlp(32, 10), workers: 3, batch: 20, epochs: 2, momentum: 0);
        options.Training.Mode = TrainingMode.Async;
        var (result, staleness) = await Run(options);
        // 3 shards of 333 or 334 samples in minibatches of 20: 17 each, 51 per epoch, one version per minibatch.
        Assert.Equal(102, result.Version);
        Assert.All(result.Epochs, e => Assert.Equal(1000, e.TrainSamples));
        Assert.Equal(102, staleness.Seen.Values.Sum());
        // Three workers compute at once, so some gradient is applied after another worker's step; how stale depends on the
        // scheduling (a starved worker's gradient can be many versions behind), never more than the steps applied.
        Assert.Contains(staleness.Seen.Keys, s => s > 0);
        Assert.All(staleness.Seen.Keys, s => Assert.InRange(s, 0, 101));
        Assert.True(result.Epochs[^1].TestAccuracy > 0.5, $"test accuracy {result.Epochs[^1].TestAccuracy}");
    }

    [Fact]
    public async Task BoundedStaleness_never_applies_a_gradient_more_than_the_bound_stale()
    {
        var options = TestData.Options(TestData.Mlp(32, 10), workers: 3, batch: 20, epochs: 2);
        options.Training.Mode = TrainingMode.BoundedStaleness;
        options.Training.StalenessBound = 1;
        var (result, staleness) = await Run(options);
        Assert.Equal(34, result.Version); // rounds are still combined: 17 per epoch
        Assert.All(result.Epochs, e => Assert.Equal(1000, e.TrainSamples));
        // One staleness per worker and step (a worker that computed two minibatches of a round shows the staler one).
        Assert.InRange(staleness.Seen.Values.Sum(), 34, 102);
        Assert.All(staleness.Seen.Keys, s => Assert.InRange(s, 0, 1));
    }

    /// <summary>Counts the applied gradients by staleness.</summary>
    private sealed class StalenessRecorder : ITrainingObserver
    {
        public SortedDictionary<long, long> Seen { get; } = [];
        public void EpochStarted(int epoch, int steps, int samples) { }
        public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing) { }
        public void EpochCompleted(EpochSummary summary) { }
        public void StalenessReported(ReadOnlySpan<double> versionsBehind)
        {
            lock (Seen)
                foreach (var s in versionsBehind)
                    if (!double.IsNaN(s)) Seen[(long)s] = Seen.GetValueOrDefault((long)s) + 1;
        }
    }
}
