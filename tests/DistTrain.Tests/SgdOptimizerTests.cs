using DistTrain.Core.Optimization;

namespace DistTrain.Tests;

public class SgdOptimizerTests
{
    [Fact]
    public void Momentum_L1_and_L2_follow_the_torch_update_rule()
    {
        // Hand computation, lr 0.1, momentum 0.9, L2 0.01, L1 0.001, w = 2, g = 0.5 then 0.5:
        // step 1: g' = 0.5 + 0.01·2 + 0.001 = 0.521; v = 0.521; w = 2 − 0.0521 = 1.9479
        // step 2: g' = 0.5 + 0.019479 + 0.001 = 0.520479; v = 0.9·0.521 + 0.520479 = 0.989379; w = 1.9479 − 0.0989379 = 1.8489621
        var sgd = new SgdOptimizer(new SgdOptions { LearningRate = 0.1, Momentum = 0.9, L2 = 0.01, L1 = 0.001 }, 1);
        var w = new[] { 2f };
        sgd.Step(w, [0.5f]);
        Assert.Equal(1.9479f, w[0], 5);
        sgd.Step(w, [0.5f]);
        Assert.Equal(1.8489621f, w[0], 5);
        Assert.Equal(0.989379f, sgd.MomentumBuffer[0], 5);
    }

    [Fact]
    public void L1_pushes_towards_zero_from_both_sides_and_leaves_zero_alone()
    {
        var sgd = new SgdOptimizer(new SgdOptions { LearningRate = 1, L1 = 0.1 }, 3);
        var w = new[] { 1f, -1f, 0f };
        sgd.Step(w, [0f, 0f, 0f]);
        Assert.Equal([0.9f, -0.9f, 0f], w);
    }

    [Theory]
    [InlineData(-0.1, 0.0)]
    [InlineData(0.0, 0.0)]
    [InlineData(double.NaN, 0.0)]
    [InlineData(0.1, 1.0)]
    public void Invalid_settings_are_rejected(double learningRate, double momentum)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() =>
            new SgdOptimizer(new SgdOptions { LearningRate = learningRate, Momentum = momentum }, 1));
        Assert.Contains(learningRate is > 0 ? "Momentum" : "LearningRate", error.Message);
    }
}
