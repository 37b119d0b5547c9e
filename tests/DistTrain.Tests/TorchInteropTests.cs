using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Initialization;
using DistTrain.Core.Layers;
using DistTrain.Core.Models;
using DistTrain.Core.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Tests;

/// <summary>
/// safetensors checkpoints both ways between DistTrain and PyTorch 1.13 (tests/golden/torch_interop.py): a torch CNN's
/// state_dict loads by name into the DistTrain model its config describes, and DistTrain's own checkpoint loads into
/// torch; in evaluation mode both give the same logits within 1e-4.
/// </summary>
public class TorchInteropTests
{
    private const double Tolerance = 1e-4;

    private sealed record Fixture(int[] InputShape, List<LayerOptions> Layers, GoldenTensor X, GoldenTensor Logits)
    {
        [JsonIgnore]
        public ModelOptions Model => new() { InputShape = [.. InputShape], Layers = Layers };
    }

    private static Fixture TorchExport => JsonSerializer.Deserialize<Fixture>(
        File.ReadAllText(TestData.GoldenPath("torch_cnn.json")), GoldenTensor.Json)!;

    private static string Repository => Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", ".."));

    [Fact]
    public void A_PyTorch_export_loads_by_name_and_gives_PyTorchs_evaluation_logits()
    {
        var fixture = TorchExport;
        var options = fixture.Model;
        options.Pretrained = TestData.GoldenPath("torch_cnn.safetensors");
        var model = ModelFactory.Build(options);
        // The real path of Model:Pretrained: every tensor by name, shapes checked, and torch's int64
        // '1.num_batches_tracked' left out by SafeTensors.Read.
        var tensors = SafeTensors.Read(options.Pretrained);
        Assert.Equal(model.Layout.Segments.Select(s => s.Name).Order(), tensors.Keys.Order());
        var weights = ModelFactory.StartingWeights(model, options, seed: 1);
        foreach (var segment in model.Layout.Segments)
            Assert.Equal(tensors[segment.Name].Data, weights.Segment(segment).ToArray());
        AssertMovedStatistics(weights);
        model.SetTraining(false);

        var logits = model.Forward(fixture.X.AsBatch());

        Compare.Close(fixture.Logits.Values, logits.ColumnMajorValues(), Tolerance, Tolerance, "logits vs PyTorch");
    }

    [Fact]
    public void A_DistTrain_checkpoint_loads_into_PyTorch_and_gives_the_same_evaluation_logits() => AssertSameLogitsInPyTorch(TorchExport);

    [Fact]
    public void A_DistTrain_checkpoint_of_a_network_on_1x1_maps_loads_into_PyTorch_and_gives_the_same_evaluation_logits()
    {
        // A 6x6 kernel on 6x6 images leaves 1x1 maps [4, 1, 1]: BatchNorm2d, a 1x1 convolution and a 1x1 max pooling run on
        // them as in PyTorch, whose nn.Sequential of the same layers takes the checkpoint's tensors by name and shape.
        List<LayerOptions> layers =
        [
            new() { Type = LayerTypes.Conv2D, Channels = 4, KernelSize = 6 }, new() { Type = LayerTypes.BatchNorm }, new() { Type = LayerTypes.ReLU },
            new() { Type = LayerTypes.Conv2D, Channels = 5, KernelSize = 1 }, new() { Type = LayerTypes.MaxPool2D, KernelSize = 1 },
            new() { Type = LayerTypes.Flatten }, new() { Type = LayerTypes.Dense, Units = 3 },
        ];
        var random = new Random(9);
        var x = Enumerable.Range(0, 4 * 2 * 6 * 6).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        AssertSameLogitsInPyTorch(new Fixture([2, 6, 6], layers, Encode([4, 2, 6, 6], x), Encode([4, 3], new float[12])));
    }

    /// <summary>
    /// Gives the model of <paramref name="export"/> random weights and moved running statistics, writes its checkpoint and
    /// has torch_interop.py load it into PyTorch's nn.Sequential of the same layers and compare the evaluation logits of the
    /// fixture's input with DistTrain's.
    /// </summary>
    private static void AssertSameLogitsInPyTorch(Fixture export)
    {
        var model = ModelFactory.Build(export.Model);
        var weights = ModelFactory.InitialWeights(model, new InitializerOptions(), seed: 5);
        // Biases and normalization start at 0 and 1; draw them too, so a misplaced one changes the logits.
        var random = new Random(5);
        foreach (var segment in model.Layout.Segments.Where(s => s.Role is ParameterRole.Bias or ParameterRole.NormScale or ParameterRole.NormShift))
            foreach (ref var value in weights.Segment(segment))
                value += (float)(0.5 * (random.NextDouble() - 0.5));
        model.LoadParameters(weights.Values);
        // Ten training-mode forwards on inputs of mean 1 move BatchNorm's running statistics away from 0 and 1.
        for (var pass = 0; pass < 10; pass++)
            model.Forward(Matrix<float>.Build.Dense(model.InputSize, 8, (_, _) => (float)(1 + 4 * (random.NextDouble() - 0.5))));
        model.SetTraining(false);
        var logits = model.Forward(export.X.AsBatch()).ColumnMajorValues().ToArray();
        var checkpoint = new ParameterVector(model.Layout);
        model.CopyParametersTo(checkpoint.Values);
        AssertMovedStatistics(checkpoint);

        var directory = Directory.CreateTempSubdirectory("disttrain-interop-");
        try
        {
            var checkpointPath = Path.Combine(directory.FullName, "weights.safetensors");
            var fixturePath = Path.Combine(directory.FullName, "fixture.json");
            SafeTensors.Write(checkpointPath, checkpoint);
            var fixture = export with { Logits = Encode([export.X.Shape[0], model.OutputSize], logits) };
            File.WriteAllText(fixturePath, JsonSerializer.Serialize(fixture, GoldenTensor.Json));

            var (exitCode, output) = RunPython(Path.Combine(Repository, "tests", "golden", "torch_interop.py"), "check", checkpointPath, fixturePath);

            Assert.True(exitCode == 0, $"torch_interop.py check exited with {exitCode}:\n{output}");
            Assert.StartsWith("ok:", output);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    /// <summary>BatchNorm's statistics are far from their start (0 and 1), so evaluation-mode logits depend on them.</summary>
    private static void AssertMovedStatistics(ParameterVector weights)
    {
        var mean = weights.Segment("1.running_mean").ToArray();
        var variance = weights.Segment("1.running_var").ToArray();
        Assert.True(mean.Max(Math.Abs) > 0.1, $"running_mean [{string.Join(", ", mean)}] stayed near 0");
        Assert.True(variance.Max(v => Math.Abs(v - 1)) > 0.1, $"running_var [{string.Join(", ", variance)}] stayed near 1");
    }

    private static GoldenTensor Encode(int[] shape, float[] values)
    {
        var bytes = new byte[values.Length * sizeof(float)];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        return new GoldenTensor(shape, Convert.ToBase64String(bytes));
    }

    /// <summary>Runs Debian's python3 (with python3-torch and python3-onnx, which tests/run.sh installs); returns the exit code and all output.</summary>
    internal static (int ExitCode, string Output) RunPython(params string[] arguments)
    {
        var start = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(120_000))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"/usr/bin/python3 {string.Join(' ', arguments)} did not finish within 120 s");
        }
        return (process.ExitCode, stdout.Result + stderr.Result);
    }
}
