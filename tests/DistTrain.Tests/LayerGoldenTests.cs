using System.Text.Json;
using DistTrain.Core.Layers;
using DistTrain.Core.Models;
using DistTrain.Core.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Tests;

/// <summary>A tensor of a golden fixture: row-major shape and base64 of little-endian float32.</summary>
internal sealed record GoldenTensor(int[] Shape, string Data)
{
    public float[] Values
    {
        get
        {
            var bytes = Convert.FromBase64String(Data);
            var values = new float[bytes.Length / sizeof(float)];
            Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length);
            return values;
        }
    }

    /// <summary>An activation tensor (N, ...) as DistTrain's column-major [features, N] matrix.</summary>
    public Matrix<float> AsBatch()
    {
        var values = Values;
        return Matrix<float>.Build.Dense(values.Length / Shape[0], Shape[0], values);
    }

    public static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
}

/// <summary>
/// Every image and normalization layer against PyTorch 1.13 (tests/golden/make_layer_golden.py writes
/// layer_golden.json): forward output, input gradient, parameter gradients and BatchNorm's running statistics for
/// the same inputs, parameters and upstream gradient; and a whole small CNN's loss and gradients.
/// </summary>
/// <remarks>
/// The fixture is computed in float64 from float32 inputs, so it is exact to float32 rounding and the tolerance
/// only has to cover DistTrain's float32 arithmetic: |a − e| ≤ 1e-4·|e| + 1e-4. The largest sums here have ~150
/// terms of magnitude ≲ 5, so float32 accumulation error is ≲ 150 · 6e-8 · 5 ≈ 5e-5.
/// </remarks>
public class LayerGoldenTests
{
    private const double Tolerance = 1e-4;

    private sealed record Case(string Name, LayerOptions Layer, int[] InputShape, bool Training, GoldenTensor X,
        Dictionary<string, GoldenTensor> Parameters, GoldenTensor Y, GoldenTensor Dy, GoldenTensor Dx,
        Dictionary<string, GoldenTensor> Gradients, Dictionary<string, GoldenTensor> RunningAfter, GoldenTensor? Mask);

    private sealed record ModelCase(int[] InputShape, List<LayerOptions> Layers, GoldenTensor X, int[] Labels,
        Dictionary<string, GoldenTensor> Parameters, double Loss, Dictionary<string, GoldenTensor> Gradients,
        Dictionary<string, GoldenTensor> RunningAfter);

    private sealed record Golden(Case[] Cases, ModelCase Model);

    private static readonly Golden Fixture = JsonSerializer.Deserialize<Golden>(
        File.ReadAllText(TestData.GoldenPath("layer_golden.json")), GoldenTensor.Json)!;

    public static TheoryData<string> CaseNames => new(Fixture.Cases.Select(c => c.Name));

    private static ModelOptions Options(int[] inputShape, List<LayerOptions> layers) => inputShape.Length == 1
        ? new ModelOptions { InputSize = inputShape[0], Layers = layers }
        : new ModelOptions { InputShape = [.. inputShape], Layers = layers };

    [Fact]
    public void The_fixture_has_every_case_of_the_brief()
    {
        Assert.Equal(
            ["conv2d_stride1_pad0", "conv2d_k5_stride1_pad2", "conv2d_stride2_pad1", "maxpool2d_k2", "maxpool2d_k3_stride2",
             "avgpool2d_k2", "batchnorm2d_train", "batchnorm2d_eval", "batchnorm1d_train", "layernorm_chw", "layernorm_flat", "dropout_p03",
             "conv2d_k1_on_1x1", "conv2d_k3_pad1_on_1x1", "maxpool2d_k1_on_1x1", "batchnorm2d_on_1x1_train", "layernorm_on_1x1"],
            Fixture.Cases.Select(c => c.Name));
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Layer_matches_PyTorch(string name)
    {
        var golden = Fixture.Cases.Single(c => c.Name == name);
        // Built through the factory, so the config mapping (default strides, momentum, epsilon) is under test too.
        var layer = ModelFactory.Build(Options(golden.InputShape, [golden.Layer])).Layers.Single();
        Assert.Equal(golden.Parameters.Keys.Order(), layer.Parameters.Select(p => p.Name).Order());
        foreach (var parameter in layer.Parameters)
        {
            Assert.Equal(golden.Parameters[parameter.Name].Shape, parameter.Shape);
            golden.Parameters[parameter.Name].Values.CopyTo(parameter.Value);
        }
        layer.SetTraining(golden.Training);
        var x = golden.X.AsBatch();
        var y = golden.Mask is { } mask ? ((Dropout)layer).Forward(x, mask.AsBatch()) : layer.Forward(x);
        Compare.Close(golden.Y.Values, y.ColumnMajorValues(), Tolerance, Tolerance, $"{name}: y");
        var dx = layer.Backward(golden.Dy.AsBatch())!;
        Compare.Close(golden.Dx.Values, dx.ColumnMajorValues(), Tolerance, Tolerance, $"{name}: dx");
        var trainable = layer.Parameters.Where(p => p.Role != ParameterRole.RunningStatistic).ToArray();
        Assert.Equal(golden.Gradients.Keys.Order(), trainable.Select(p => p.Name).Order());
        foreach (var parameter in trainable)
            Compare.Close(golden.Gradients[parameter.Name].Values, parameter.Gradient, Tolerance, Tolerance, $"{name}: d{parameter.Name}");
        var statistics = layer.Parameters.Where(p => p.Role == ParameterRole.RunningStatistic).ToArray();
        Assert.Equal(golden.RunningAfter.Keys.Order(), statistics.Select(p => p.Name).Order());
        foreach (var statistic in statistics)
        {
            var before = golden.Parameters[statistic.Name].Values;
            var after = golden.RunningAfter[statistic.Name].Values;
            // Training mode must move the statistics (eval must not), or this comparison proves nothing.
            Assert.Equal(golden.Training, !before.SequenceEqual(after));
            Compare.Close(after, statistic.Value, Tolerance, Tolerance, $"{name}: {statistic.Name} after the forward pass");
        }
    }

    [Fact]
    public void Small_CNN_loss_gradients_and_running_statistics_match_PyTorch()
    {
        var golden = Fixture.Model;
        var model = ModelFactory.Build(Options(golden.InputShape, golden.Layers));
        var weights = new ParameterVector(model.Layout);
        Assert.Equal(golden.Parameters.Keys.Order(), model.Layout.Segments.Select(s => s.Name).Order());
        foreach (var segment in model.Layout.Segments)
        {
            Assert.Equal(golden.Parameters[segment.Name].Shape, segment.Shape);
            golden.Parameters[segment.Name].Values.CopyTo(weights.Segment(segment));
        }
        model.LoadParameters(weights.Values);
        var x = golden.X.AsBatch();
        var target = Matrix<float>.Build.Dense(model.OutputSize, golden.Labels.Length);
        for (var sample = 0; sample < golden.Labels.Length; sample++) target[golden.Labels[sample], sample] = 1f;

        var loss = model.ComputeGradients(x, target, ModelFactory.BuildLoss(LossTypes.SoftmaxCrossEntropy));

        Assert.True(Math.Abs(golden.Loss - loss) <= Tolerance * Math.Abs(golden.Loss), $"loss {loss} vs PyTorch {golden.Loss}");
        var report = new float[model.Layout.WorkerReportLength];
        model.CopyGradientsTo(report);
        Assert.Equal(golden.Gradients.Count + golden.RunningAfter.Count, model.Layout.Segments.Count);
        foreach (var segment in model.Layout.Segments)
        {
            // The report holds the gradients of trainable tensors, then the running statistics' current values.
            var expected = segment.Role == ParameterRole.RunningStatistic ? golden.RunningAfter[segment.Name] : golden.Gradients[segment.Name];
            Compare.Close(expected.Values, report.AsSpan(segment.Offset, segment.Length), Tolerance, Tolerance, $"CNN: {segment.Name} ({segment.Role})");
        }
    }
}
