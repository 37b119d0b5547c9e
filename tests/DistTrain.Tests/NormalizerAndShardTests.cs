using DistTrain.Core.Data;

namespace DistTrain.Tests;

public class NormalizerTests
{
    [Fact]
    public void Global_normalization_gives_the_training_set_mean_zero_and_std_one_and_reuses_it_on_test()
    {
        var data = TestData.Normalized();
        var values = data.Train.Features;
        var mean = values.Average(v => (double)v);
        var std = Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / values.Length);
        Assert.InRange(mean, -1e-4, 1e-4);
        Assert.InRange(std, 0.9999, 1.0001);
        // The test split is transformed with the training statistics, not its own.
        var expected = (TestData.RawTest.Features[300] - data.Normalizer.Mean[0]) / data.Normalizer.Std[0];
        Compare.Close(expected, data.Test.Features[300], relative: 0, absolute: 1e-5, "test feature 300");
    }

    [Fact]
    public void Per_feature_normalization_standardizes_each_pixel()
    {
        var train = TestData.RawTrain.Take(1000);
        var normalizer = Normalizer.Fit(train, NormalizationKind.PerFeature);
        normalizer.Apply(train);
        const int pixel = 14 * 28 + 14; // centre pixel, never constant
        var column = Enumerable.Range(0, train.Count).Select(i => (double)train.Features[i * 784 + pixel]).ToArray();
        Assert.InRange(column.Average(), -1e-4, 1e-4);
        Assert.InRange(Math.Sqrt(column.Average(v => v * v)), 0.999, 1.001);
        // Corner pixel is (almost) always 0: it is centred, not blown up by a zero std.
        Assert.All(Enumerable.Range(0, train.Count), i => Assert.True(float.IsFinite(train.Features[i * 784])));
    }
}

public class ShardPlannerTests
{
    [Theory]
    [InlineData(1000, 4)]
    [InlineData(1003, 4)]
    [InlineData(7, 3)]
    public void Every_epoch_the_shards_are_disjoint_and_cover_every_sample_once(int samples, int workers)
    {
        var planner = new ShardPlanner(samples, workers, seed: 5);
        for (var epoch = 1; epoch <= 3; epoch++)
        {
            var shards = planner.Plan(epoch);
            Assert.Equal(workers, shards.Length);
            var all = shards.SelectMany(s => s).OrderBy(i => i).ToArray();
            Assert.Equal(Enumerable.Range(0, samples), all);
            Assert.InRange(shards.Max(s => s.Length) - shards.Min(s => s.Length), 0, 1);
        }
    }

    [Fact]
    public void Shards_are_reshuffled_every_epoch_and_reproducible_from_the_seed()
    {
        var planner = new ShardPlanner(1000, 4, seed: 5);
        Assert.NotEqual(planner.Plan(1)[0], planner.Plan(2)[0]);
        Assert.Equal(planner.Plan(2)[3], new ShardPlanner(1000, 4, seed: 5).Plan(2)[3]);
        Assert.NotEqual(planner.Plan(1)[0], new ShardPlanner(1000, 4, seed: 6).Plan(1)[0]);
    }

    [Fact]
    public void Weighted_shards_are_uneven_in_proportion_and_still_cover_everything()
    {
        var planner = new ShardPlanner(1000, 3, seed: 1, weights: [1, 2, 2]);
        Assert.Equal(new[] { 200, 400, 400 }, planner.ShardSizes());
        Assert.Equal(Enumerable.Range(0, 1000), planner.Plan(1).SelectMany(s => s).OrderBy(i => i));
        Assert.Equal(new[] { 334, 333, 333 }, new ShardPlanner(1000, 3, seed: 1).ShardSizes());
    }

    [Fact]
    public void Bad_arguments_are_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ShardPlanner(0, 2, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ShardPlanner(10, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ShardPlanner(10, 2, 1, weights: [1, -1]));
    }
}
