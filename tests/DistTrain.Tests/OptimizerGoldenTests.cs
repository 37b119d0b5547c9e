using System.Text.Json;
using System.Text.Json.Serialization;
using DistTrain.Core.Optimization;

namespace DistTrain.Tests;

/// <summary>
/// Sgd (momentum, Nesterov), Adam, AdamW and RMSProp over 20 steps, and every learning-rate schedule, against
/// PyTorch 1.13 (tests/golden/make_optimizer_golden.py writes optimizer_golden.json). Two parameter groups, the
/// first decayed (L2 and L1) and the second not; a scheduled learning rate per step; a loss whose gradient
/// depends on the weights, so any error compounds over the steps.
/// </summary>
public class OptimizerGoldenTests
{
    private static readonly JsonElement Fixture = JsonDocument.Parse(File.ReadAllText(TestData.GoldenPath("optimizer_golden.json"))).RootElement;

    private static readonly JsonSerializerOptions Json = new() { Converters = { new JsonStringEnumConverter() } };

    private static float[] Floats(JsonElement element)
    {
        var bytes = Convert.FromBase64String(element.GetString()!);
        var values = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length);
        return values;
    }

    private static double[] Doubles(JsonElement element) => element.EnumerateArray().Select(e => e.GetDouble()).ToArray();

    public static TheoryData<string> Cases() => [.. Fixture.GetProperty("cases").EnumerateArray().Select(c => c.GetProperty("name").GetString()!)];

    public static TheoryData<string> Schedules() => [.. Fixture.GetProperty("schedules").EnumerateArray().Select(c => c.GetProperty("name").GetString()!)];

    private static JsonElement Named(string list, string name) =>
        Fixture.GetProperty(list).EnumerateArray().Single(c => c.GetProperty("name").GetString() == name);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Twenty_steps_with_two_parameter_groups_and_a_schedule_match_PyTorch_within_1e_5(string name)
    {
        var fixture = Named("cases", name);
        var options = fixture.GetProperty("options").Deserialize<OptimizerOptions>(Json)!;
        var groups = Fixture.GetProperty("groups").EnumerateArray()
            .Select(g => new ParameterGroupRange(g.GetProperty("offset").GetInt32(), g.GetProperty("length").GetInt32(), g.GetProperty("decay").GetBoolean()))
            .ToArray();
        var (stepsPerEpoch, epochs) = (Fixture.GetProperty("steps_per_epoch").GetInt32(), Fixture.GetProperty("epochs").GetInt32());
        var nonlinearity = (float)Fixture.GetProperty("nonlinearity").GetDouble();
        var weights = Floats(fixture.GetProperty("initial"));
        var targets = Floats(fixture.GetProperty("targets"));
        var coefficients = Floats(fixture.GetProperty("coefficients"));
        var rates = Doubles(fixture.GetProperty("learning_rates"));
        var losses = Doubles(fixture.GetProperty("losses"));
        var length = weights.Length;
        var optimizer = Optimizer.Create(options, length, groups);
        var schedule = new LearningRateSchedule(options.Schedule);
        // Longer than the parameters, with NaN after the trainable prefix: only [0, length) may be read.
        var gradient = Enumerable.Repeat(float.NaN, length + 3).ToArray();
        for (var step = 0; step < rates.Length; step++)
        {
            var rate = schedule.At(SchedulePosition.Uniform(step, stepsPerEpoch), epochs, options.LearningRate);
            Assert.True(Math.Abs(rate - rates[step]) <= 1e-12 * rates[step], $"step {step}: learning rate {rate:R} vs PyTorch {rates[step]:R}");
            var loss = 0.0;
            for (var i = 0; i < length; i++)
            {
                // The fixture's loss Σ c (w − t)² + K Σ sin w and its gradient, in its float32 order of operations.
                loss += coefficients[i] * (double)(weights[i] - targets[i]) * (weights[i] - targets[i]) + nonlinearity * Math.Sin(weights[i]);
                gradient[i] = 2f * coefficients[i] * (weights[i] - targets[i]) + nonlinearity * MathF.Cos(weights[i]);
            }
            Assert.True(Math.Abs(loss - losses[step]) <= 1e-5 * Math.Abs(losses[step]) + 1e-5, $"step {step}: loss {loss:R} vs PyTorch {losses[step]:R}");
            Assert.True(optimizer.Step(weights, gradient, (float)rate));
        }
        Assert.Equal(rates.Length, optimizer.StepCount);
        Compare.Close(Floats(fixture.GetProperty("final")), weights, relative: 1e-5, absolute: 1e-5, $"{name}: weights after {rates.Length} steps vs PyTorch");
        var state = fixture.GetProperty("state");
        Assert.Equal(state.EnumerateObject().Select(p => p.Name).Order(), optimizer.State.Select(s => s.Name).Order());
        foreach (var (stateName, values) in optimizer.State)
            Compare.Close(Floats(state.GetProperty(stateName)), values, relative: 1e-5, absolute: 1e-5, $"{name}: {stateName} vs PyTorch");
    }

    [Theory]
    [MemberData(nameof(Schedules))]
    public void Each_schedule_matches_the_PyTorch_scheduler_sequence(string name)
    {
        var fixture = Named("schedules", name);
        var options = fixture.GetProperty("schedule").Deserialize<LearningRateScheduleOptions>(Json)!;
        var schedule = new LearningRateSchedule(options);
        var baseRate = Fixture.GetProperty("schedule_base_learning_rate").GetDouble();
        var (stepsPerEpoch, epochs) = (Fixture.GetProperty("schedule_steps_per_epoch").GetInt32(), Fixture.GetProperty("schedule_epochs").GetInt32());
        var expected = Doubles(fixture.GetProperty("learning_rates"));
        Assert.Equal(stepsPerEpoch * epochs, expected.Length);
        for (var step = 0; step < expected.Length; step++)
        {
            var actual = schedule.At(SchedulePosition.Uniform(step, stepsPerEpoch), epochs, baseRate);
            // torch steps CosineAnnealingLR recursively, which drifts from its closed form by rounding only.
            Assert.True(Math.Abs(actual - expected[step]) <= 1e-9 * baseRate, $"{name}, step {step}: {actual:R} vs PyTorch {expected[step]:R}");
        }
    }
}
