using DistTrain.Cluster.Hosting;
using DistTrain.Core.Data;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Tests;

/// <summary>Synchronous data parallelism against single-process training on the same samples.</summary>
public class DistributedEquivalenceTests
{
    private static readonly ModelOptions Model = TestData.Mlp(32, 16, 10);

    /// <summary>
    /// The single-process reference: one model, one optimizer; step r trains on the concatenation of
    /// every worker's minibatch r — one worker whose minibatch is the union.
    /// </summary>
    private static float[] SingleProcess(ModelOptions modelOptions, LabeledDataset train, int[][] shards, int batch, int epochs, ParameterVector initial,
        OptimizerOptions options, int seed)
    {
        var model = ModelFactory.Build(modelOptions);
        var weights = (float[])initial.Values.Clone();
        // One optimizer: momentum carries across epochs. Biases are not decayed, as at the parameter server.
        var optimizer = Optimizer.Create(options, weights.Length,
            ParameterGroups.Ranges(initial.Layout, weights.Length, options.DecayBiasAndNormParameters));
        var gradient = new float[weights.Length];
        var loss = ModelFactory.BuildLoss(modelOptions.Loss);
        var rounds = shards.Max(s => (s.Length + batch - 1) / batch);
        for (var epoch = 0; epoch < epochs; epoch++)
        for (var round = 0; round < rounds; round++)
        {
            var indices = shards.SelectMany(s => s.Skip(round * batch).Take(batch)).ToArray();
            var x = Matrix<float>.Build.Dense(train.FeatureCount, indices.Length);
            var t = Matrix<float>.Build.Dense(train.ClassCount, indices.Length);
            train.Gather(indices, x, t);
            model.LoadParameters(weights);
            model.SetDropoutKeys(seed, epoch + 1, indices); // each sample's masks, as the workers key them
            model.ComputeGradients(x, t, loss);
            model.CopyGradientsTo(gradient);
            optimizer.Step(weights, gradient, (float)options.LearningRate);
        }
        return weights;
    }

    private static async Task<(float[] Distributed, float[] Reference, long Version)> TrainBothWays(int[] shardSizes, int batch, int epochs = 1,
        ModelOptions? modelOptions = null)
    {
        var model = modelOptions ?? Model;
        var data = TestData.Normalized();
        var order = Enumerable.Range(0, data.Train.Count).ToArray();
        new Random(3).Shuffle(order);
        var shards = new int[shardSizes.Length][];
        var start = 0;
        for (var i = 0; i < shardSizes.Length; i++) { shards[i] = order[start..(start + shardSizes[i])]; start += shardSizes[i]; }
        var options = TestData.Options(model, workers: shardSizes.Length, batch: batch, epochs: epochs);
        var initial = ModelFactory.InitialWeights(ModelFactory.Build(model), model.Initializer, seed: 7);
        var result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test,
            planner: new FixedShardPlan(shardSizes.Sum(), shards), initialWeights: initial).WithTestTimeout();
        var reference = SingleProcess(model, data.Train, shards, batch, epochs, initial, options.Optimizer, options.Training.Seed);
        return (result.FinalWeights.Values, reference, result.Version);
    }

    [Fact]
    public async Task Four_workers_of_batch_16_match_one_worker_of_batch_64_after_5_steps()
    {
        var (distributed, reference, version) = await TrainBothWays([80, 80, 80, 80], batch: 16);
        Assert.Equal(5, version);
        Compare.Close(reference, distributed, relative: 1e-5, absolute: 1e-7, "weights after 5 steps");
    }

    /// <summary>
    /// A sample's dropout masks depend on (seed, layer, epoch, sample) only, so with dropout too N workers equal one worker
    /// whose minibatch is their union (they used to draw from one generator per worker, so the masks depended on the worker).
    /// </summary>
    [Fact]
    public async Task With_dropout_three_workers_match_one_worker_of_their_union_over_two_epochs()
    {
        var model = TestData.Mlp(32, 10);
        model.Layers.Insert(2, new LayerOptions { Type = LayerTypes.Dropout, Rate = 0.3 });
        var (distributed, reference, version) = await TrainBothWays([100, 100, 100], batch: 20, epochs: 2, model);
        Assert.Equal(10, version);
        Compare.Close(reference, distributed, relative: 2e-5, absolute: 2e-7, "weights after 2 epochs with dropout");
    }

    [Fact]
    public async Task Uneven_shards_match_too_because_the_average_is_weighted_by_sample_count()
    {
        // Minibatches per round: (16,16,16,16), ..., then worker 3 runs out; the last round has 16 + 5 + 0 + 0 samples.
        var (distributed, reference, version) = await TrainBothWays([96, 85, 64, 50], batch: 16);
        Assert.Equal(6, version);
        Compare.Close(reference, distributed, relative: 1e-5, absolute: 1e-7, "weights after 6 uneven steps");
    }

    [Fact]
    public async Task Momentum_carries_across_epochs_as_in_single_process_training()
    {
        var (distributed, reference, version) = await TrainBothWays([96, 85, 64, 50], batch: 16, epochs: 2);
        Assert.Equal(12, version);
        Compare.Close(reference, distributed, relative: 2e-5, absolute: 2e-7, "weights after 2 epochs of uneven steps");
    }

    [Fact]
    public async Task Evaluation_scores_every_test_sample_exactly_once_across_workers()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(Model, workers: 3, batch: 32, epochs: 2);
        var result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout();
        Assert.All(result.Epochs, e => Assert.Equal(250, e.TestSamples));

        // Score the final weights in one pass over the whole test set: the split evaluation must agree.
        var model = ModelFactory.Build(Model);
        model.LoadParameters(result.FinalWeights.Values);
        var indices = Enumerable.Range(0, data.Test.Count).ToArray();
        var x = Matrix<float>.Build.Dense(784, indices.Length);
        var t = Matrix<float>.Build.Dense(10, indices.Length);
        data.Test.Gather(indices, x, t);
        var output = model.Forward(x);
        var correct = indices.Count(i => output.Column(i).MaximumIndex() == data.Test.Labels[i]);
        var testLoss = ModelFactory.BuildLoss(Model.Loss).Compute(output, t, Matrix<float>.Build.Dense(10, indices.Length));
        Assert.Equal(correct / 250.0, result.Epochs[^1].TestAccuracy, 10);
        Compare.Close(testLoss, result.Epochs[^1].TestLoss, relative: 0, absolute: 1e-5, "test loss");
    }

    [Fact]
    public async Task Training_on_the_real_subset_learns_to_classify()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(64, 10), workers: 2, batch: 32, epochs: 4);
        var result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout();
        Assert.True(result.Epochs[^1].TrainLoss < result.Epochs[0].TrainLoss * 0.7,
            $"train loss {result.Epochs[0].TrainLoss:F3} -> {result.Epochs[^1].TrainLoss:F3}");
        // Chance is 10%; 1,000 samples and 4 epochs give about 75–80% on this subset.
        Assert.InRange(result.Epochs[^1].TestAccuracy, 0.70, 1.0);
    }

    [Fact]
    public async Task Every_message_round_trips_through_the_serializer_during_a_whole_training()
    {
        // serialize-messages = on: Akka serializes and deserializes every message, even local ones. A message
        // that does not round-trip is dropped with an ERROR log, which fails the run (the coordinator treats
        // any Akka error as lost training). The weights must not change.
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 3, batch: 50, epochs: 2);
        var verified = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, verifySerialization: true).WithTestTimeout();
        var plain = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, verifySerialization: false).WithTestTimeout();
        Assert.Equal(plain.Version, verified.Version);
        Compare.Identical(plain.FinalWeights.Values, verified.FinalWeights.Values, "weights with and without serialize-messages");
        Assert.Equal(plain.Epochs.Select(e => e.TestAccuracy), verified.Epochs.Select(e => e.TestAccuracy));
    }
}
