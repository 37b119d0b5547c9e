using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Training;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Layers;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

/// <summary>
/// Cluster:ParameterServerShards: the shard plan, and synchronous training with K shards against one shard on the
/// 1,000-sample subset (single-node mode, real actors): the same weights bit for bit, the same checkpoints, a checkpoint
/// of one resumed by the other, and a divergence that still hands over the whole model's last good weights.
/// </summary>
public sealed class ShardedParameterServerTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "disttrain-shards-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_directory)) Directory.Delete(_directory, recursive: true);
    }

    private static ModelOptions MlpWithBatchNorm() => new()
    {
        InputSize = 784,
        Layers =
        [
            new() { Type = LayerTypes.Dense, Units = 32 }, new() { Type = LayerTypes.BatchNorm }, new() { Type = LayerTypes.ReLU },
            new() { Type = LayerTypes.Dense, Units = 10 },
        ],
    };

    private static TrainingOptions Options(ModelOptions model, int shards, int workers = 2, int batch = 50, int epochs = 2)
    {
        var options = TestData.Options(model, workers, batch, epochs);
        options.Cluster.ParameterServerShards = shards;
        options.Compute.BlasThreads = 1;
        return options;
    }

    private static async Task<TrainingResult> Run(TrainingOptions options, RecordingObserver? observer = null)
    {
        var data = TestData.Normalized();
        return await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, observer).WithTestTimeout();
    }

    [Fact]
    public void The_plan_cuts_the_trainable_prefix_into_aligned_nearly_equal_slices_and_gives_the_statistics_to_the_last()
    {
        var layout = ModelFactory.Build(MlpWithBatchNorm()).Layout; // 784·32 + 32 + 32 + 32 + 32·10 + 10 trainable, 64 statistics
        Assert.Equal(25_514, layout.TrainableLength);
        Assert.Equal(25_578, layout.WorkerReportLength);
        var plan = ParameterShards.Plan(layout, 3);
        Assert.Equal([(0, 0, 8_496, 8_496), (1, 8_496, 17_008, 17_008), (2, 17_008, 25_578, 25_514)],
            plan.Select(p => (p.Index, p.Start, p.End, p.TrainableEnd)));
        Assert.All(plan[..^1], p => Assert.Equal(0, p.End % ParameterShards.Alignment));
        // Shard 1 starts inside 0.weight and ends inside it; shard 2 holds the rest of it, the BatchNorm and the output layer.
        Assert.Equal(["0.weight"], plan[1].SliceLayout(layout).Segments.Select(s => s.Name));
        var last = plan[2].SliceLayout(layout);
        Assert.Equal(["0.weight", "0.bias", "1.weight", "1.bias", "3.weight", "3.bias", "1.running_mean", "1.running_var"],
            last.Segments.Select(s => s.Name));
        Assert.Equal(plan[2].TrainableLength, last.TrainableLength);
        Assert.Equal(plan[2].Length, last.WorkerReportLength);
        Assert.Equal(ParameterRole.Bias, last["0.bias"].Role);
        Assert.Equal(ParameterRole.RunningStatistic, last["1.running_var"].Role);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(17)]
    public void The_plan_refuses_a_shard_count_outside_1_to_16(int shards)
    {
        var layout = ModelFactory.Build(MlpWithBatchNorm()).Layout;
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => ParameterShards.Plan(layout, shards));
        Assert.Equal($"Cluster:ParameterServerShards = {shards}: allowed 1 to 16.", error.Message);
    }

    [Fact]
    public void The_plan_refuses_more_shards_than_the_model_has_16_element_slices_for()
    {
        var layout = new ParameterLayout([("w", new[] { 40 })]);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => ParameterShards.Plan(layout, 3));
        Assert.Equal("Cluster:ParameterServerShards = 3 is too many for a model with 40 trainable parameters: each shard needs at least 16 " +
            "parameters, since the slices are cut at 16-parameter (64-byte) boundaries. Set Cluster:ParameterServerShards to at most 2, " +
            "the largest count this model allows.", error.Message);
        Assert.Equal(2, ParameterShards.Plan(layout, 2).Length);
        // Iris with one Dense 3 layer: 4·3 + 3 = 15 parameters, less than one slice.
        var iris = new ParameterLayout([("0.weight", new[] { 3, 4 }), ("0.bias", new[] { 3 })]);
        error = Assert.Throws<ArgumentOutOfRangeException>(() => ParameterShards.Plan(iris, 2));
        Assert.Equal("Cluster:ParameterServerShards = 2 is too many for a model with 15 trainable parameters: each shard needs at least 16 " +
            "parameters, since the slices are cut at 16-parameter (64-byte) boundaries. Set Cluster:ParameterServerShards to 1: this model " +
            "is too small to shard.", error.Message);
        Assert.Equal((1, 1, 16), (ParameterShards.MaxShardsFor(15), ParameterShards.MaxShardsFor(16), ParameterShards.MaxShardsFor(1_000_000)));
    }

    [Fact]
    public void A_checkpoint_cut_into_slices_and_put_back_together_is_the_same_checkpoint()
    {
        var layout = ModelFactory.Build(MlpWithBatchNorm()).Layout;
        var random = new Random(3);
        var weights = new ParameterVector(layout, [.. Enumerable.Range(0, layout.TotalLength).Select(_ => random.NextSingle())]);
        var velocity = Enumerable.Range(0, layout.TrainableLength).Select(_ => random.NextSingle()).ToArray();
        var checkpoint = new TrainingCheckpoint(weights, [("velocity", velocity)], OptimizerKind.Sgd, 17, 17, 2, 3, 7, 2, 50, 300, 12.5);
        var plan = ParameterShards.Plan(layout, 3);
        var whole = ParameterShards.Assemble([.. plan.Select(p => p.Slice(checkpoint))], plan, new ParameterVector(layout));
        Assert.Equal(weights.Values, whole.Weights.Values);
        Assert.Equal(velocity, whole.OptimizerState.Single().Values);
        Assert.Equal((17L, 17L, 2, 3, 300, 12.5), (whole.Version, whole.OptimizerSteps, whole.Epoch, whole.Round, whole.EpochSamples, whole.EpochLossSum));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public async Task Synchronous_training_with_K_shards_gives_one_shards_weights_bit_for_bit(int shards)
    {
        // SGD with momentum and L2, BatchNorm statistics merged by the last shard, per-tensor diagnostics on with one shard.
        var one = new RecordingObserver();
        var many = new RecordingObserver();
        var expected = await Run(Options(MlpWithBatchNorm(), 1), one);
        // Each shard's round time is recorded once per step, tagged with its index.
        var rounds = new System.Collections.Concurrent.ConcurrentDictionary<string, int>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == Cluster.Metrics.DistTrainMetrics.MeterName && instrument.Name == "parameter_server.shard.round.seconds")
                l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<double>((_, seconds, tags, _) =>
        {
            foreach (var tag in tags)
                if (tag.Key == "shard" && seconds > 0) rounds.AddOrUpdate((string)tag.Value!, 1, (_, n) => n + 1);
        });
        listener.Start();
        var actual = await Run(Options(MlpWithBatchNorm(), shards), many);
        listener.Dispose();
        Assert.Equal(Enumerable.Range(0, shards).Select(k => (k.ToString(System.Globalization.CultureInfo.InvariantCulture), 20)),
            rounds.OrderBy(r => r.Key).Select(r => (r.Key, r.Value)));
        Assert.Equal(20, expected.Version);
        Assert.Equal(expected.Version, actual.Version);
        Compare.Identical(expected.FinalWeights.Values, actual.FinalWeights.Values, "final weights");
        Assert.Equal(one.StepLosses, many.StepLosses);
        Assert.Equal(one.LearningRates, many.LearningRates);
        // The epoch's penalty is the sum of the shards' float sums, added in another order: equal to float32 rounding, a few
        // units in the last place (about 4e-7 relative seen), not bit for bit.
        Assert.Equal(expected.Epochs[^1].L2Penalty, actual.Epochs[^1].L2Penalty, expected.Epochs[^1].L2Penalty * 2e-6);
        Assert.True(actual.Epochs[^1].L2Penalty > 0);
        Assert.Equal(expected.Epochs[^1].TestAccuracy, actual.Epochs[^1].TestAccuracy);
    }

    [Fact]
    public async Task Adam_a_schedule_uneven_worker_shards_and_frozen_layers_are_sharded_bit_for_bit_too()
    {
        // 3 workers of 40 (a short last minibatch), Adam with L1 and a cosine schedule, the first layer frozen.
        TrainingOptions Adam(int shards)
        {
            var options = Options(TestData.Mlp(24, 16, 10), shards, workers: 3, batch: 40);
            options.Model.Freeze = ["0"];
            options.Optimizer.Kind = OptimizerKind.Adam;
            options.Optimizer.LearningRate = 0.003;
            options.Optimizer.L1 = 1e-5;
            options.Optimizer.Schedule = new LearningRateScheduleOptions { Kind = LearningRateScheduleKind.Cosine, WarmupSteps = 3 };
            return options;
        }
        var expected = await Run(Adam(1));
        var actual = await Run(Adam(2));
        Assert.Equal(18, expected.Version);
        Compare.Identical(expected.FinalWeights.Values, actual.FinalWeights.Values, "final weights");
    }

    [Fact]
    public async Task Local_SGD_with_two_shards_averages_to_one_shards_models_bit_for_bit()
    {
        // Each report carries the model and the momentum buffer after it; each shard averages its slice of both.
        TrainingOptions Local(int shards)
        {
            var options = Options(MlpWithBatchNorm(), shards);
            options.Training.Mode = TrainingMode.LocalSgd;
            options.Training.LocalSteps = 3;
            return options;
        }
        var expected = await Run(Local(1));
        var actual = await Run(Local(2));
        Assert.Equal(20, expected.Version);
        Compare.Identical(expected.FinalWeights.Values, actual.FinalWeights.Values, "final weights");
        Assert.Equal(expected.Epochs[^1].TestAccuracy, actual.Epochs[^1].TestAccuracy);
    }

    [Theory]
    [InlineData(TrainingMode.Async, 1)]
    [InlineData(TrainingMode.BoundedStaleness, 2)]
    public async Task The_asynchronous_modes_with_two_shards_reduce_to_one_synchronous_server_weights_and_evaluations_alike(TrainingMode mode, int workers)
    {
        // Async with one worker and BoundedStaleness with bound 0 are synchronous training (ModeEquivalenceTests); with two
        // shards they must still be, and the weights the workers evaluate (the part's last broadcast) must be whole.
        var sync = await Run(Options(MlpWithBatchNorm(), 1, workers: workers));
        var options = Options(MlpWithBatchNorm(), 2, workers: workers);
        options.Training.Mode = mode;
        options.Training.StalenessBound = 0;
        var sharded = await Run(options);
        Assert.Equal(sync.Version, sharded.Version);
        Compare.Identical(sync.FinalWeights.Values, sharded.FinalWeights.Values, "final weights");
        Assert.Equal(sync.Epochs.Select(e => (e.TestAccuracy, e.TestLoss)), sharded.Epochs.Select(e => (e.TestAccuracy, e.TestLoss)));
    }

    [Fact]
    public async Task Two_shards_write_one_shards_checkpoints_and_a_run_resumed_on_the_other_count_matches()
    {
        TrainingOptions WithCheckpoints(int shards, string directory, int epochs, bool resume = false)
        {
            var options = Options(MlpWithBatchNorm(), shards, epochs: epochs);
            options.Checkpoint = new CheckpointOptions { Directory = directory, EverySteps = 7, Keep = 100, Resume = resume };
            return options;
        }
        var one = Path.Combine(_directory, "one");
        var two = Path.Combine(_directory, "two");
        var uninterrupted = await Run(WithCheckpoints(1, one, epochs: 3));
        await Run(WithCheckpoints(2, two, epochs: 2));
        var layout = uninterrupted.FinalWeights.Layout;
        var fromOne = new CheckpointStore(one, 100).List().Select(p => TrainingCheckpoint.Read(p, layout)).Where(c => c.Version <= 20).OrderBy(c => c.Version).ToList();
        var fromTwo = new CheckpointStore(two, 100).List().Select(p => TrainingCheckpoint.Read(p, layout)).OrderBy(c => c.Version).ToList();
        Assert.Equal([7L, 10, 14, 20], fromTwo.Select(c => c.Version));
        Assert.Equal(fromOne.Select(c => (c.Version, c.Epoch, c.Round, c.EpochSamples)), fromTwo.Select(c => (c.Version, c.Epoch, c.Round, c.EpochSamples)));
        for (var i = 0; i < fromOne.Count; i++)
        {
            Compare.Identical(fromOne[i].Weights.Values, fromTwo[i].Weights.Values, $"weights of checkpoint {fromOne[i].Version}");
            Compare.Identical(fromOne[i].OptimizerState.Single().Values, fromTwo[i].OptimizerState.Single().Values, $"velocity of checkpoint {fromOne[i].Version}");
        }
        // Two shards' checkpoint at version 20, resumed by one shard for a third epoch, ends where the uninterrupted run did.
        var resumed = await Run(WithCheckpoints(1, two, epochs: 3, resume: true));
        Assert.Equal(30, resumed.Version);
        Compare.Identical(uninterrupted.FinalWeights.Values, resumed.FinalWeights.Values, "weights after 2 + 1 epochs");
    }

    [Fact]
    public async Task A_divergence_with_two_shards_names_where_it_happened_and_hands_over_the_whole_last_good_model()
    {
        // Weights of 1e20 overflow float32: the loss is NaN at the first step, in every shard.
        var model = TestData.Mlp(8, 10);
        model.Initializer = new() { Kind = Core.Initialization.InitializerKind.Constant, Constant = 1e20 };
        var options = Options(model, 2, batch: 32, epochs: 1);
        var data = TestData.Normalized();
        var error = await Assert.ThrowsAsync<TrainingDivergedException>(() =>
            SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout());
        Assert.StartsWith("Training diverged at epoch 1, step 1 (weights version 0): a NaN or infinite loss.", error.Message);
        Assert.Equal(0, error.LastGoodVersion);
        var layout = ModelFactory.Build(model).Layout;
        Assert.Equal(layout.TotalLength, error.LastGoodWeights!.Length);
        Assert.All(error.LastGoodWeights.Take(layout["0.weight"].Length), w => Assert.Equal(1e20f, w));
    }

    [Theory]
    [InlineData(TrainingMode.Async)]
    [InlineData(TrainingMode.BoundedStaleness)]
    public void Shards_with_clipping_are_refused_in_the_modes_that_apply_each_gradient_as_it_arrives(TrainingMode mode)
    {
        var options = Options(MlpWithBatchNorm(), 2);
        options.Training.Mode = mode;
        options.Optimizer.GradientClipNorm = 1;
        var problems = TrainingOptionsValidator.Validate(options, checkDataDirectory: false);
        Assert.Contains($"Cluster:ParameterServerShards = 2 is not possible with Optimizer:GradientClipNorm = 1 in Training:Mode {mode}: the parameter " +
            "server clips each gradient by its global norm, which needs every shard's part of that norm before any shard steps, and in " +
            $"{mode} each shard steps on a gradient as it arrives, without waiting for the others (Sync waits for them; in LocalSgd each worker " +
            "clips its own steps). Set Optimizer:GradientClipNorm to 0, Cluster:ParameterServerShards to 1, Training:Mode to Sync or LocalSgd, or " +
            "Cluster:Compression to TopK (each worker then clips its own gradient, and the parameter server clips none).", problems);
        // Under TopK each worker clips its own gradient and the parameter server clips nothing: nothing to refuse.
        options.Cluster.Compression = Core.Compression.GradientCompression.TopK;
        Assert.DoesNotContain(TrainingOptionsValidator.Validate(options, checkDataDirectory: false), p => p.StartsWith("Cluster:ParameterServerShards", StringComparison.Ordinal));
        options.Cluster.Compression = Core.Compression.GradientCompression.None;
        options.Optimizer.GradientClipNorm = 0;
        Assert.DoesNotContain(TrainingOptionsValidator.Validate(options, checkDataDirectory: false), p => p.StartsWith("Cluster:ParameterServerShards", StringComparison.Ordinal));
        // LocalSgd: each worker clips its own local steps, and the shards average models.
        options.Training.Mode = TrainingMode.LocalSgd;
        options.Optimizer.GradientClipNorm = 1;
        Assert.DoesNotContain(TrainingOptionsValidator.Validate(options, checkDataDirectory: false), p => p.StartsWith("Cluster:ParameterServerShards", StringComparison.Ordinal));
    }

    /// <summary>
    /// Under TopK each worker clips its own gradient before encoding it (Deep Gradient Compression's local clipping) and the
    /// parameter server clips nothing, so the asynchronous modes can be sharded with clipping: with Async on one worker and
    /// BoundedStaleness at bound 0 (both step for step as Sync, so runs are repeatable) two shards give one shard's weights
    /// bit for bit, and the clipping changed them. Before, the validator refused the combination.
    /// </summary>
    [Theory]
    [InlineData(TrainingMode.Async, 1)]
    [InlineData(TrainingMode.BoundedStaleness, 2)]
    public async Task The_asynchronous_modes_with_TopK_clip_on_the_workers_and_shard_bit_for_bit(TrainingMode mode, int workers)
    {
        TrainingOptions TopK(int shards, double clip)
        {
            var options = Options(MlpWithBatchNorm(), shards, workers: workers);
            options.Training.Mode = mode;
            options.Training.StalenessBound = 0;
            options.Cluster.Compression = Core.Compression.GradientCompression.TopK;
            options.Cluster.TopKRatio = 0.1;
            options.Optimizer.GradientClipNorm = clip;
            return options;
        }
        Assert.Empty(TrainingOptionsValidator.Validate(TopK(2, 0.5), checkDataDirectory: false));
        var one = await Run(TopK(1, 0.5));
        var two = await Run(TopK(2, 0.5));
        var unclipped = await Run(TopK(2, 0));
        Assert.Equal(one.Version, two.Version);
        Compare.Identical(one.FinalWeights.Values, two.FinalWeights.Values, "final weights, 1 and 2 shards");
        Assert.Equal(one.Epochs.Select(e => (e.TestAccuracy, e.TestLoss)), two.Epochs.Select(e => (e.TestAccuracy, e.TestLoss)));
        var largest = two.FinalWeights.Values.Zip(unclipped.FinalWeights.Values, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(largest > 1e-3, $"clipping changed no weight by more than {largest}");
        // It trains: above chance (0.1) on 10 classes. Measured 0.332 for BoundedStaleness (20 steps of TopK 10%).
        Assert.True(two.Epochs[^1].TestAccuracy > 0.2, $"test accuracy {two.Epochs[^1].TestAccuracy}");
    }

    [Fact]
    public async Task Clipping_by_the_global_norm_with_two_shards_uses_the_whole_gradients_norm()
    {
        // Clipping at 0.5 scales most steps down (the averaged gradient's norm starts near 2). Each shard gives the squared
        // norm of its part, and every shard scales by the norm of the sum: one server's scale up to the summation order.
        TrainingOptions Clipped(int shards, double clip)
        {
            var options = Options(MlpWithBatchNorm(), shards);
            options.Optimizer.GradientClipNorm = clip;
            return options;
        }
        var one = await Run(Clipped(1, 0.5));
        var two = await Run(Clipped(2, 0.5));
        var unclipped = await Run(Clipped(2, 0));
        Assert.Equal(20, two.Version);
        Compare.Close(one.FinalWeights.Values, two.FinalWeights.Values, relative: 1e-4, absolute: 1e-5, "clipped weights, 1 and 2 shards");
        var largest = one.FinalWeights.Values.Zip(unclipped.FinalWeights.Values, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(largest > 1e-2, $"clipping changed no weight by more than {largest}");
    }
}
