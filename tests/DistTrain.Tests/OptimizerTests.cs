using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

public class OptimizerTests
{
    [Fact]
    public void Sgd_momentum_L1_and_L2_follow_the_torch_update_rule()
    {
        // Hand computation, lr 0.1, momentum 0.9, L2 0.01, L1 0.001, w = 2, g = 0.5 then 0.5:
        // step 1: g' = 0.5 + 0.01·2 + 0.001 = 0.521; v = 0.521; w = 2 − 0.0521 = 1.9479
        // step 2: g' = 0.5 + 0.019479 + 0.001 = 0.520479; v = 0.9·0.521 + 0.520479 = 0.989379; w = 1.9479 − 0.0989379 = 1.8489621
        var sgd = (Sgd)Optimizer.Create(new OptimizerOptions { Momentum = 0.9, L2 = 0.01, L1 = 0.001 }, 1);
        var w = new[] { 2f };
        sgd.Step(w, [0.5f], 0.1f);
        Assert.Equal(1.9479f, w[0], 5);
        sgd.Step(w, [0.5f], 0.1f);
        Assert.Equal(1.8489621f, w[0], 5);
        Assert.Equal(0.989379f, sgd.MomentumBuffer[0], 5);
        Assert.Equal(2, sgd.StepCount);
        Assert.Equal("momentum_buffer", Assert.Single(sgd.State).Name);
    }

    [Fact]
    public void L1_pushes_towards_zero_from_both_sides_and_leaves_zero_alone()
    {
        var sgd = Optimizer.Create(new OptimizerOptions { L1 = 0.1 }, 3);
        var w = new[] { 1f, -1f, 0f };
        sgd.Step(w, [0f, 0f, 0f], 1f);
        Assert.Equal([0.9f, -0.9f, 0f], w);
    }

    [Fact]
    public void Nesterov_differs_from_plain_momentum_as_torch_defines_it()
    {
        // lr 0.1, μ 0.9, w = 2, g = 0.5 twice. Plain: v = 0.5, w = 1.95; v = 0.95, w = 1.855.
        // Nesterov: v = 0.5, w = 2 − 0.1·(0.5 + 0.45) = 1.905; v = 0.95, w = 1.905 − 0.1·(0.5 + 0.855) = 1.7695.
        var plain = Optimizer.Create(new OptimizerOptions { Momentum = 0.9 }, 1);
        var nesterov = Optimizer.Create(new OptimizerOptions { Momentum = 0.9, Nesterov = true }, 1);
        var (w1, w2) = (new[] { 2f }, new[] { 2f });
        plain.Step(w1, [0.5f], 0.1f);
        nesterov.Step(w2, [0.5f], 0.1f);
        Assert.Equal(1.95f, w1[0], 6);
        Assert.Equal(1.905f, w2[0], 6);
        plain.Step(w1, [0.5f], 0.1f);
        nesterov.Step(w2, [0.5f], 0.1f);
        Assert.Equal(1.855f, w1[0], 6);
        Assert.Equal(1.7695f, w2[0], 6);
    }

    [Fact]
    public void AdamW_decays_the_weights_directly_while_Adam_puts_L2_into_the_normalized_gradient()
    {
        // w = 2, gradient 0, lr 0.1, L2 0.1, one step.
        // AdamW: w ← 2·(1 − 0.1·0.1) = 1.98, then the Adam step of a zero gradient moves nothing.
        // Adam: g = 0.1·2 = 0.2; m̂ = 0.2, v̂ = 0.04; w ← 2 − 0.1·0.2/(0.2 + 1e-8) ≈ 1.9: the decay is rescaled to a full step.
        var adamW = Optimizer.Create(new OptimizerOptions { Kind = OptimizerKind.AdamW, L2 = 0.1 }, 1);
        var adam = Optimizer.Create(new OptimizerOptions { Kind = OptimizerKind.Adam, L2 = 0.1 }, 1);
        var (w1, w2) = (new[] { 2f }, new[] { 2f });
        adamW.Step(w1, [0f], 0.1f);
        adam.Step(w2, [0f], 0.1f);
        Assert.Equal(1.98f, w1[0], 6);
        Assert.Equal(1.9f, w2[0], 5);
        Assert.IsType<AdamW>(adamW);
        Assert.Equal(["exp_avg", "exp_avg_sq"], adamW.State.Select(s => s.Name));
        Assert.Equal(0f, adamW.State[0].Values[0]);
    }

    /// <summary>The step reports its copy target's written prefix block by block, in order, so another thread can copy it on
    /// during the step: at every call the prefix already holds the step's final weights, and the last call covers them all.</summary>
    [Fact]
    public void The_fused_step_reports_each_written_prefix_of_its_copy_target_and_every_reported_float_is_final()
    {
        const int length = 3 * Optimizer.BlockLength + 300; // 12,588
        ParameterGroupRange[] groups = [new(0, 5000, true), new(5000, length - 5000, false)];
        var options = new OptimizerOptions { Momentum = 0.9, L2 = 0.01 };
        var random = new Random(11);
        var weights = Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var gradient = Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var expected = (float[])weights.Clone();
        Optimizer.Create(options, length, groups).StepWeightedAverage(expected, [gradient], [1f], 0.1f, []);

        var copy = new float[length];
        copy.AsSpan().Fill(float.NaN);
        var ends = new List<int>();
        var optimizer = Optimizer.Create(options, length, groups);
        Assert.True(optimizer.StepWeightedAverage(weights, [gradient], [1f], 0.1f, copy, written: end =>
        {
            ends.Add(end);
            Assert.Equal(expected.AsSpan(0, end).ToArray(), copy.AsSpan(0, end).ToArray());
            Assert.True(end == length || float.IsNaN(copy[end]), "a float past the reported prefix was already written");
        }));
        // Blocks end at the group boundary (5,000) and every 4,096 floats inside a group.
        Assert.Equal([4096, 5000, 9096, length], ends);
        Assert.Equal(expected, copy);
        optimizer.StepWeightedAverage(weights, [gradient], [1f], 0.1f, [], written: _ => Assert.Fail("no copy target, no calls"));
    }

    /// <summary>
    /// The fused, blocked step of every kind against a naive per-element loop in double of the torch rule, over
    /// a vector of several blocks whose group boundaries fall in the middle of blocks at odd offsets; the
    /// gradients are longer than the parameters, with NaN after the trainable prefix.
    /// </summary>
    [Theory]
    [InlineData(OptimizerKind.Sgd, false)]
    [InlineData(OptimizerKind.Sgd, true)]
    [InlineData(OptimizerKind.Adam, false)]
    [InlineData(OptimizerKind.AdamW, false)]
    [InlineData(OptimizerKind.RMSProp, false)]
    public void Groups_split_blocks_at_their_boundaries_and_the_fused_step_matches_a_naive_reference(OptimizerKind kind, bool nesterov)
    {
        const int length = 3 * Optimizer.BlockLength + 777;
        ParameterGroupRange[] groups = [new(0, 5001, true), new(5001, 4001, false), new(9002, length - 9002, true)];
        var options = new OptimizerOptions { Kind = kind, Momentum = 0.9, Nesterov = nesterov, L1 = 0.001, L2 = 0.05, Alpha = 0.9, Beta2 = 0.99 };
        var random = new Random(5);
        float[] Values(int count) => Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var w0 = Values(length);
        var gradients = new[] { Values(length + 9), Values(length + 9) };
        foreach (var g in gradients) g.AsSpan(length).Fill(float.NaN);
        float[] rates = [0.05f, 0.02f, 0.01f];

        var fused = Optimizer.Create(options, length, groups);
        var weights = (float[])w0.Clone();
        var copy = new float[length];
        foreach (var rate in rates)
            Assert.True(fused.StepWeightedAverage(weights, gradients, new[] { 0.25f, 0.75f }, rate, copy));
        Assert.Equal(weights, copy);

        var reference = w0.Select(v => (double)v).ToArray();
        var (s1, s2) = (new double[length], new double[length]);
        for (var t = 1; t <= rates.Length; t++)
        {
            double lr = rates[t - 1];
            for (var i = 0; i < length; i++)
            {
                var decay = i < 5001 || i >= 9002;
                var w = reference[i];
                var g = 0.25 * gradients[0][i] + 0.75 * gradients[1][i];
                if (decay) g += 0.001 * Math.Sign(w) + (kind == OptimizerKind.AdamW ? 0 : 0.05 * w);
                if (decay && kind == OptimizerKind.AdamW) w *= 1 - lr * 0.05;
                switch (kind)
                {
                    case OptimizerKind.Sgd:
                        s1[i] = 0.9 * s1[i] + g;
                        w -= lr * (nesterov ? g + 0.9 * s1[i] : s1[i]);
                        break;
                    case OptimizerKind.RMSProp:
                        s1[i] = 0.9 * s1[i] + 0.1 * g * g;
                        s2[i] = 0.9 * s2[i] + g / (Math.Sqrt(s1[i]) + 1e-8);
                        w -= lr * s2[i];
                        break;
                    default:
                        s1[i] = 0.9 * s1[i] + 0.1 * g;
                        s2[i] = 0.99 * s2[i] + 0.01 * g * g;
                        w -= lr / (1 - Math.Pow(0.9, t)) * s1[i] / (Math.Sqrt(s2[i]) / Math.Sqrt(1 - Math.Pow(0.99, t)) + 1e-8);
                        break;
                }
                reference[i] = w;
            }
        }
        Compare.Close(reference.Select(v => (float)v).ToArray(), weights, 1e-4, 1e-6, $"{kind} fused vs naive reference");
        // The boundary elements on both sides differ in decay: a group split wrongly would show there first.
        foreach (var i in new[] { 5000, 5001, 9001, 9002, Optimizer.BlockLength - 1, Optimizer.BlockLength })
            Assert.True(Math.Abs(reference[i] - weights[i]) <= 1e-4 * Math.Abs(reference[i]) + 1e-6, $"element {i}");
    }

    [Theory]
    [InlineData("LearningRate", 0.0, "Optimizer:LearningRate = 0 is out of range: allowed (0, 10]")]
    [InlineData("Momentum", 1.0, "Optimizer:Momentum = 1 is out of range: allowed [0, 1)")]
    [InlineData("L2", -0.1, "Optimizer:L2 = -0.1 is out of range: allowed [0, 1]")]
    [InlineData("Beta1", 1.0, "Optimizer:Beta1 = 1 is out of range: allowed [0, 1)")]
    [InlineData("Beta2", double.NaN, "Optimizer:Beta2 = NaN is out of range: allowed [0, 1)")]
    [InlineData("Epsilon", 0.0, "Optimizer:Epsilon = 0 is out of range: allowed (0, 0.1]")]
    [InlineData("Alpha", 1.5, "Optimizer:Alpha = 1.5 is out of range: allowed [0, 1)")]
    [InlineData("Gamma", 0.0, "Optimizer:Schedule:Gamma = 0 is out of range: allowed (0, 1]")]
    [InlineData("WarmupStartFactor", 0.0, "Optimizer:Schedule:WarmupStartFactor = 0 is out of range: allowed (0, 1]")]
    [InlineData("MinLearningRate", 0.5, "Optimizer:Schedule:MinLearningRate = 0.5 is out of range: allowed [0, 0.01]")]
    public void Invalid_settings_are_rejected_naming_the_option_and_its_range(string option, double value, string message)
    {
        var options = new OptimizerOptions();
        var property = typeof(OptimizerOptions).GetProperty(option);
        if (property is not null) property.SetValue(options, value);
        else typeof(LearningRateScheduleOptions).GetProperty(option)!.SetValue(options.Schedule, value);
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Optimizer.Create(options, 4));
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void Nesterov_without_momentum_and_bad_groups_steps_or_rates_are_rejected()
    {
        var nesterov = Assert.Throws<ArgumentOutOfRangeException>(() => Optimizer.Create(new OptimizerOptions { Nesterov = true }, 4));
        Assert.Contains("Optimizer:Nesterov = true is not allowed here: it needs Optimizer:Kind Sgd and Optimizer:Momentum in (0, 1)", nesterov.Message);
        var gap = Assert.Throws<ArgumentException>(() => Optimizer.Create(new OptimizerOptions(), 10, [new(0, 4, true), new(5, 5, false)]));
        Assert.Contains("Parameter group 1 covers [5, 10)", gap.Message);
        var short_ = Assert.Throws<ArgumentException>(() => Optimizer.Create(new OptimizerOptions(), 10, [new(0, 4, true)]));
        Assert.Contains("cover [0, 4), but must cover all 10", short_.Message);
        var optimizer = Optimizer.Create(new OptimizerOptions(), 3);
        Assert.Throws<ArgumentOutOfRangeException>(() => optimizer.Step(new float[3], new float[3], -0.1f));
        Assert.Throws<ArgumentException>(() => optimizer.Step(new float[3], new float[2], 0.1f));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LearningRateSchedule(new() { StepEpochs = 0 }).At(new(0, 0, 0, 1), 1, 0.1));
        Assert.Throws<ArgumentOutOfRangeException>(() => new LearningRateSchedule(new()).At(new(0, 0, 0, 0), 1, 0.1));
    }

    [Fact]
    public void Biases_form_their_own_not_decayed_groups_unless_asked()
    {
        var layout = new ParameterLayout([("0.weight", [3, 2]), ("0.bias", [3]), ("2.weight", [2, 3]), ("2.bias", [2])]);
        Assert.Equal([new(0, 6, true), new(6, 3, false), new(9, 6, true), new(15, 2, false)], ParameterGroups.Ranges(layout, 17, decayBiasAndNorm: false));
        Assert.Equal([new ParameterGroupRange(0, 17, true)], ParameterGroups.Ranges(layout, 17, decayBiasAndNorm: true));
        Assert.Equal([new(0, 6, true), new(6, 3, false), new(9, 3, true)], ParameterGroups.Ranges(layout, 12, decayBiasAndNorm: false));
    }

    [Fact]
    public void The_schedule_is_a_pure_function_of_the_position_so_a_resumed_run_gets_the_same_rate()
    {
        var options = new LearningRateScheduleOptions { Kind = LearningRateScheduleKind.Cosine, MinLearningRate = 0.001, WarmupSteps = 7 };
        var first = new LearningRateSchedule(options);
        var rates = Enumerable.Range(0, 30).Select(s => first.At(SchedulePosition.Uniform(s, 10), 3, 0.1)).ToArray();
        var resumed = new LearningRateSchedule(options);
        Assert.Equal(rates[17], resumed.At(new(17, 1, 7, 10), 3, 0.1));
        Assert.Equal(0.01, rates[0], 12);                                   // 0.1 · start factor 0.1
        Assert.True(rates[29] > 0.001 && rates[29] < 0.0015, $"{rates[29]}"); // close to the minimum at the end
    }
}
