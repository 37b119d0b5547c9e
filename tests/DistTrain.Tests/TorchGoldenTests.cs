using System.Text.Json;
using DistTrain.Cluster.Hosting;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Tests;

/// <summary>
/// 10 SGD steps against PyTorch 1.13 (tests/golden/make_sgd_golden.py writes sgd_golden.json):
/// same initial weights (PyTorch's, loaded by state_dict name), same minibatches, same
/// learning rate, momentum, L2 (weight_decay) and L1.
/// </summary>
public class TorchGoldenTests
{
    private sealed record Tensor(int[] Shape, string Data)
    {
        public float[] Values
        {
            get
            {
                var bytes = Convert.FromBase64String(Data);
                var values = new float[bytes.Length / 4];
                Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length);
                return values;
            }
        }
    }

    private sealed record Golden(double LearningRate, double Momentum, double L2, double L1, int BatchSize, int[] Layers,
        int[][] Steps, double[] Losses, Dictionary<string, Tensor> Initial, Dictionary<string, Tensor> Final);

    private static readonly Golden Fixture = JsonSerializer.Deserialize<Golden>(
        File.ReadAllText(TestData.GoldenPath("sgd_golden.json")),
        new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower })!;

    private static ModelOptions Model => TestData.Mlp(Fixture.Layers);

    // Plain torch.optim.SGD decays every parameter, biases included.
    private static OptimizerOptions Sgd => new() { LearningRate = Fixture.LearningRate, Momentum = Fixture.Momentum, L2 = Fixture.L2, L1 = Fixture.L1, DecayBiasAndNormParameters = true };

    private static ParameterVector Load(ParameterLayout layout, Dictionary<string, Tensor> tensors)
    {
        var vector = new ParameterVector(layout);
        foreach (var segment in layout.Segments)
        {
            Assert.Equal(segment.Shape, tensors[segment.Name].Shape);
            tensors[segment.Name].Values.CopyTo(vector.Segment(segment));
        }
        return vector;
    }

    [Fact]
    public void Ten_SGD_steps_match_PyTorch_within_1e_4()
    {
        var model = ModelFactory.Build(Model);
        var weights = Load(model.Layout, Fixture.Initial).Values;
        var expected = Load(model.Layout, Fixture.Final).Values;
        var optimizer = Optimizer.Create(Sgd, weights.Length, ParameterGroups.Ranges(model.Layout, weights.Length, Sgd.DecayBiasAndNormParameters));
        var gradient = new float[weights.Length];
        var loss = ModelFactory.BuildLoss("SoftmaxCrossEntropy");
        var train = TestData.RawTrain;
        for (var step = 0; step < Fixture.Steps.Length; step++)
        {
            var indices = Fixture.Steps[step];
            var x = Matrix<float>.Build.Dense(784, indices.Length);
            var t = Matrix<float>.Build.Dense(10, indices.Length);
            train.Gather(indices, x, t);
            model.LoadParameters(weights);
            var value = model.ComputeGradients(x, t, loss);
            Assert.True(Math.Abs(Fixture.Losses[step] - value) < 1e-5, $"step {step}: loss {value} vs PyTorch {Fixture.Losses[step]}");
            model.CopyGradientsTo(gradient);
            optimizer.Step(weights, gradient, (float)Fixture.LearningRate);
        }
        Compare.Close(expected, weights, relative: 0, absolute: 1e-4, "weights after 10 steps vs PyTorch");
        AssertUpdatesMatch(model.Layout, weights);
    }

    /// <summary>
    /// The change of the weights over the 10 steps, (final − initial), against PyTorch's within 1% of its
    /// largest element: this catches a missing or doubled L1 or L2 term, which moves the weights by
    /// about lr·λ·|w| per step.
    /// </summary>
    private static void AssertUpdatesMatch(ParameterLayout layout, float[] weights)
    {
        var initial = Load(layout, Fixture.Initial).Values;
        var final = Load(layout, Fixture.Final).Values;
        var expected = final.Select((v, i) => v - initial[i]).ToArray();
        var actual = weights.Select((v, i) => v - initial[i]).ToArray();
        var scale = expected.Max(Math.Abs);
        Assert.True(scale > 1e-3, $"the fixture's steps barely move the weights ({scale})");
        Compare.Close(expected, actual, relative: 0, absolute: 0.01 * scale, "weight updates vs PyTorch");
    }

    [Fact]
    public async Task Four_workers_through_the_parameter_server_match_PyTorch_within_1e_4()
    {
        // Worker i gets the i-th quarter of every PyTorch minibatch; the weighted average is PyTorch's batch mean.
        const int workers = 4;
        var quarter = Fixture.BatchSize / workers;
        var shards = Enumerable.Range(0, workers)
            .Select(w => Fixture.Steps.SelectMany(step => step.Skip(w * quarter).Take(quarter)).ToArray())
            .ToArray();
        var options = TestData.Options(Model, workers, quarter, epochs: 1, Fixture.LearningRate, Fixture.Momentum, Fixture.L2, Fixture.L1);
        options.Data.Normalization = Core.Data.NormalizationKind.None;
        options.Optimizer.DecayBiasAndNormParameters = true;
        var layout = ModelFactory.Build(Model).Layout;
        var losses = new RecordingObserver();
        var result = await SingleNodeTrainer.RunAsync(options, TestData.RawTrain, TestData.RawTest, losses,
            planner: new FixedShardPlan(shards.Sum(s => s.Length), shards), initialWeights: Load(layout, Fixture.Initial)).WithTestTimeout();
        Assert.Equal(Fixture.Steps.Length, result.Version);
        Assert.Equal(Fixture.Losses.Length, losses.StepLosses.Count);
        for (var step = 0; step < Fixture.Losses.Length; step++)
            Assert.True(Math.Abs(Fixture.Losses[step] - losses.StepLosses[step]) < 1e-5, $"step {step}: loss {losses.StepLosses[step]} vs PyTorch {Fixture.Losses[step]}");
        Compare.Close(Load(layout, Fixture.Final).Values, result.FinalWeights.Values, relative: 0, absolute: 1e-4, "distributed weights vs PyTorch");
        AssertUpdatesMatch(layout, result.FinalWeights.Values);
    }
}
