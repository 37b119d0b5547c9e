using DistTrain.Core.Data;

namespace DistTrain.Tests;

public sealed class MinibatchPlanTests
{
    [Theory]
    [InlineData(4000, 43, 94)]   // the shard of 3 workers after a join: fixed minibatches of 43 leave a last one of 1
    [InlineData(334, 4, 84)]
    [InlineData(10, 3, 4)]
    [InlineData(0, 8, 0)]
    public void Fixed_minibatches_cover_the_shard_in_order_with_a_shorter_last_one(int samples, int batch, int count)
    {
        var plan = MinibatchPlan.Fixed(samples, batch);
        Assert.Equal(count, plan.Count);
        for (var k = 0; k < plan.Count; k++)
        {
            Assert.Equal(k * batch, plan.Start(k));
            Assert.Equal(k < plan.Count - 1 ? batch : samples - k * batch, plan.Length(k));
        }
        Assert.Equal(samples, plan.Start(plan.Count));
    }

    [Theory]
    [InlineData(4000, 94)]
    [InlineData(333, 100)]
    [InlineData(500, 21)]
    [InlineData(7, 10)]   // fewer samples than steps: one sample per step, 7 steps
    [InlineData(0, 5)]
    public void Balanced_minibatches_cover_the_shard_once_with_sizes_differing_by_at_most_one(int samples, int steps)
    {
        var plan = MinibatchPlan.Balanced(samples, steps);
        Assert.Equal(Math.Min(samples, steps), plan.Count);
        var lengths = Enumerable.Range(0, plan.Count).Select(plan.Length).ToArray();
        Assert.Equal(samples, lengths.Sum());
        Assert.Equal(0, plan.Start(0));
        Assert.Equal(samples, plan.Start(plan.Count));
        if (samples > 0)
        {
            Assert.True(lengths.Max() - lengths.Min() <= 1, string.Join(",", lengths));
            Assert.Equal(lengths.Max(), plan.BatchSize);
            Assert.All(Enumerable.Range(0, plan.Count), k => Assert.Equal(plan.Start(k) + plan.Length(k), plan.Start(k + 1)));
        }
    }

    [Fact]
    public void Positions_outside_the_plan_are_refused()
    {
        var plan = MinibatchPlan.Balanced(10, 3);
        Assert.Throws<ArgumentOutOfRangeException>(() => plan.Start(4));
        Assert.Throws<ArgumentOutOfRangeException>(() => plan.Length(3));
        Assert.Throws<ArgumentOutOfRangeException>(() => MinibatchPlan.Fixed(10, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => MinibatchPlan.Balanced(10, 0));
    }
}
