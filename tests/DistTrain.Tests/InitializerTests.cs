using DistTrain.Core.Initialization;

namespace DistTrain.Tests;

/// <summary>Sample statistics of each initializer against its published variance (200,000 draws: the variance's standard error is 0.3%).</summary>
public class InitializerTests
{
    private const int FanIn = 100, FanOut = 50, Count = 200_000;

    private static (double Mean, double Variance, double MaxAbs) Stats(Action<float[]> fill)
    {
        var values = new float[Count];
        fill(values);
        var mean = values.Average(v => (double)v);
        var variance = values.Sum(v => (v - mean) * (v - mean)) / Count;
        return (mean, variance, values.Max(v => Math.Abs((double)v)));
    }

    private static void AssertVariance(double expected, (double Mean, double Variance, double MaxAbs) stats)
    {
        Assert.InRange(stats.Mean, -0.01 * Math.Sqrt(expected), 0.01 * Math.Sqrt(expected));
        Assert.InRange(stats.Variance, expected * 0.98, expected * 1.02);
    }

    [Fact]
    public void HeNormal_has_variance_two_over_fan_in()
        => AssertVariance(2.0 / FanIn, Stats(v => Initializers.HeNormal(v, FanIn, Math.Sqrt(2), new Random(1))));

    [Fact]
    public void HeUniform_has_variance_two_over_fan_in_and_bound_sqrt_six_over_fan_in()
    {
        var stats = Stats(v => Initializers.HeUniform(v, FanIn, Math.Sqrt(2), new Random(2)));
        AssertVariance(2.0 / FanIn, stats);
        Assert.True(stats.MaxAbs <= Math.Sqrt(6.0 / FanIn));
    }

    [Fact]
    public void XavierNormal_has_variance_two_over_fan_in_plus_fan_out()
        => AssertVariance(2.0 / (FanIn + FanOut), Stats(v => Initializers.XavierNormal(v, FanIn, FanOut, 1, new Random(3))));

    [Fact]
    public void XavierUniform_has_variance_two_over_fan_sum_and_bound_sqrt_six_over_fan_sum()
    {
        var stats = Stats(v => Initializers.XavierUniform(v, FanIn, FanOut, 1, new Random(4)));
        AssertVariance(2.0 / (FanIn + FanOut), stats);
        Assert.True(stats.MaxAbs <= Math.Sqrt(6.0 / (FanIn + FanOut)));
    }

    [Fact]
    public void Xavier_gain_scales_the_standard_deviation()
        => AssertVariance(9 * 2.0 / (FanIn + FanOut), Stats(v => Initializers.XavierNormal(v, FanIn, FanOut, 3, new Random(5))));

    [Fact]
    public void Uniform_and_Normal_use_their_small_scales()
    {
        AssertVariance(0.05 * 0.05 / 3, Stats(v => Initializers.Uniform(v, 0.05, new Random(6))));
        AssertVariance(0.01 * 0.01, Stats(v => Initializers.Normal(v, 0.01, new Random(7))));
    }

    [Fact]
    public void Zeros_and_Constant_fill_exactly()
    {
        var values = new float[10];
        Initializers.Fill(values, FanIn, FanOut, new InitializerOptions { Kind = InitializerKind.Constant, Constant = 0.25 }, new Random(1));
        Assert.All(values, v => Assert.Equal(0.25f, v));
        Initializers.Fill(values, FanIn, FanOut, new InitializerOptions { Kind = InitializerKind.Zeros }, new Random(1));
        Assert.All(values, v => Assert.Equal(0f, v));
    }

    [Fact]
    public void The_same_seed_gives_the_same_weights_and_another_seed_does_not()
    {
        var options = new InitializerOptions { Kind = InitializerKind.HeNormal };
        float[] Draw(int seed) { var v = new float[1000]; Initializers.Fill(v, FanIn, FanOut, options, new Random(seed)); return v; }
        Assert.Equal(Draw(42), Draw(42));
        Assert.NotEqual(Draw(42), Draw(43));
    }

    [Fact]
    public void HeNormal_default_gain_is_the_ReLU_gain()
        => AssertVariance(2.0 / FanIn, Stats(v => Initializers.Fill(v, FanIn, FanOut, new InitializerOptions { Kind = InitializerKind.HeNormal }, new Random(8))));
}
