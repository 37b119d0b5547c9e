using System.CommandLine;
using DistTrain.Cli;
using DistTrain.Cluster.Hosting;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Export;
using DistTrain.Core.Layers;
using DistTrain.Core.Models;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace DistTrain.Tests;

/// <summary>
/// ONNX export: the exported graph, run by ONNX Runtime on 100 test images given as raw pixels / 255, gives DistTrain's
/// evaluation logits within 1e-4, for the MLP and the CNN configs trained briefly and for a model using every other layer.
/// </summary>
public class OnnxExportTests(Xunit.Abstractions.ITestOutputHelper log)
{
    private const double Tolerance = 1e-4;
    private const int Images = 100;

    private static string Config(string name) => Path.Combine(AppContext.BaseDirectory, "configs", name);

    private static async Task<TrainedModel> TrainConfig(string config)
    {
        var options = TrainingOptionsLoader.Load(Config(config), new Dictionary<string, string?>
        {
            ["Data:Directory"] = TestData.SubsetDirectory,
            ["Training:Epochs"] = "1",
            ["Training:Workers"] = "2",
            ["Training:EvaluationBatchSize"] = "250",
            ["Optimizer:Schedule:WarmupSteps"] = "0",
        });
        return (await new Trainer(options).TrainAsync(TrainingData.Load(options.Data, options.Training.Seed)).WithTestTimeout()).Model;
    }

    /// <summary>Runs the exported bytes in ONNX Runtime on the first <see cref="Images"/> raw test images.</summary>
    private static float[] OnnxRuntimeLogits(byte[] onnx, TrainedModel model, out InferenceSession session)
    {
        session = new InferenceSession(onnx);
        var raw = TestData.RawTest.Features.AsSpan(0, Images * 784).ToArray();
        int[] dimensions = model.Model.InputShape.Count == 3 ? [Images, .. model.Model.InputShape] : [Images, 784];
        var input = new DenseTensor<float>(raw, dimensions);
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(OnnxExporter.InputName, input)]);
        return results.Single(r => r.Name == OnnxExporter.OutputName).AsEnumerable<float>().ToArray();
    }

    private void AssertSameLogits(TrainedModel model, string what)
    {
        var expected = model.Logits(TestData.RawTest.Features.AsSpan(0, Images * 784));
        var actual = OnnxRuntimeLogits(OnnxExporter.ToBytes(model), model, out var session);
        using (session)
        {
            Assert.Equal(Images * model.ClassCount, actual.Length);
            var worst = expected.Zip(actual).Max(p => Math.Abs(p.First - p.Second));
            log.WriteLine($"{what}: largest |ONNX Runtime - DistTrain| over {Images} images x {model.ClassCount} logits = {worst:G3}; largest |logit| {expected.Max(Math.Abs):G3}");
            Compare.Close(expected, actual, Tolerance, Tolerance, $"{what}: ONNX Runtime vs DistTrain (largest difference {worst:G3})");
            Assert.Equal("batch", session.InputMetadata[OnnxExporter.InputName].SymbolicDimensions[0]);
            var metadata = session.ModelMetadata.CustomMetadataMap;
            Assert.Equal(model.Normalizer.Kind.ToString(), metadata[DistTrain.Core.Models.ModelMetadata.InputNormalization]);
            Assert.StartsWith("folded into the graph", metadata["input_standardization"]);
        }
    }

    [Fact]
    public async Task The_MLP_config_exported_to_ONNX_gives_DistTrains_logits_in_ONNX_Runtime() =>
        AssertSameLogits(await TrainConfig("fashion-mnist-mlp.json"), "MLP");

    [Fact]
    public async Task The_CNN_config_exported_to_ONNX_gives_DistTrains_logits_in_ONNX_Runtime()
    {
        var model = await TrainConfig("fashion-mnist-cnn.json");
        Assert.NotEqual(0f, model.Weights.Segment("1.running_mean")[0]); // trained statistics, not the initial zeros
        AssertSameLogits(model, "CNN");
    }

    [Fact]
    public void Every_other_layer_and_per_feature_standardization_export_with_the_same_logits()
    {
        var model = EveryLayerModel();

        AssertSameLogits(model, "every layer");
        Assert.Equal(["Sub", "Mul", "Conv", "LayerNormalization", "LeakyRelu", "AveragePool", "MaxPool", "Conv", "Tanh", "Flatten", "Gemm",
            "BatchNormalization", "Sigmoid", "Gemm"], OnnxExporterOperators(model));
    }

    [Fact]
    public void A_network_on_1x1_maps_exports_with_the_same_logits()
    {
        var model = OneByOneMapModel();

        AssertSameLogits(model, "1x1 maps");
        Assert.Equal(["Sub", "Mul", "Conv", "MaxPool", "Conv", "BatchNormalization", "Relu", "MaxPool", "LayerNormalization", "Flatten", "Gemm"],
            OnnxExporterOperators(model));
    }

    /// <summary>
    /// Global pooling to [4, 1, 1], then a 1x1 convolution, BatchNorm, 1x1 pooling and LayerNorm on the 1x1 maps, and a Dense
    /// head, which flattens them (Flatten before Gemm): the graph stays NCHW until then, as PyTorch's would.
    /// </summary>
    private static TrainedModel OneByOneMapModel() => WithRandomStatistics(new ModelBuilder(channels: 1, height: 28, width: 28)
        .Conv2D(4, kernelSize: 7, stride: 7).MaxPool2D(4).Conv2D(6, kernelSize: 1).BatchNorm().ReLU().MaxPool2D(1).LayerNorm().Dense(10)
        .Build(), NormalizationKind.Global);

    /// <summary>Every layer type the MLP and CNN configs do not use, on per-feature standardization, with random statistics.</summary>
    private static TrainedModel EveryLayerModel()
    {
        var options = new ModelBuilder(channels: 1, height: 28, width: 28)
            .Conv2D(4, kernelSize: 3, stride: 2, padding: 1).LayerNorm().LeakyReLU(0.2)
            .AvgPool2D(2, stride: 1).MaxPool2D(3, stride: 2)
            .Conv2D(3, kernelSize: 2).Tanh()
            .Dense(16).BatchNorm().Sigmoid().Dropout(0.5).Dense(10)
            .Build();
        return WithRandomStatistics(options, NormalizationKind.PerFeature);
    }

    /// <summary>The model's initial weights with biases, norm scales and shifts, and running statistics drawn at random.</summary>
    private static TrainedModel WithRandomStatistics(ModelOptions options, NormalizationKind normalization)
    {
        var weights = ModelFactory.InitialWeights(ModelFactory.Build(options), options.Initializer, seed: 3);
        // Biases, norm scales and shifts, and running statistics away from their initial 0 and 1, so a misplaced one shows.
        var random = new Random(3);
        foreach (var segment in weights.Layout.Segments.Where(s => s.Role != ParameterRole.Weight))
            foreach (ref var value in weights.Segment(segment))
                value = segment.Name.EndsWith("running_var", StringComparison.Ordinal)
                    ? 0.5f + (float)random.NextDouble()
                    : (float)(random.NextDouble() - 0.5);
        return new TrainedModel(options, weights, Normalizer.Fit(TestData.RawTrain, normalization));
    }

    [Fact]
    public void The_exported_graphs_pass_the_ONNX_checker_with_shape_inference()
    {
        var directory = Directory.CreateTempSubdirectory("disttrain-onnx-check-").FullName;
        try
        {
            var cnn = TrainingOptionsLoader.Load(Config("fashion-mnist-cnn.json"),
                new Dictionary<string, string?> { ["Data:Directory"] = TestData.SubsetDirectory }).Model;
            OnnxExporter.Export(new TrainedModel(cnn, ModelFactory.InitialWeights(ModelFactory.Build(cnn), cnn.Initializer, seed: 1),
                Normalizer.FromStatistics(NormalizationKind.Global, [0.286f], [0.353f])), Path.Combine(directory, "cnn.onnx"));
            OnnxExporter.Export(EveryLayerModel(), Path.Combine(directory, "every-layer.onnx"));
            OnnxExporter.Export(OneByOneMapModel(), Path.Combine(directory, "1x1-maps.onnx"));

            // Debian's python3-onnx (1.12): the checker with full_check also runs strict shape inference over every node.
            const string script =
                "import sys, onnx\n" +
                "for path in sys.argv[1:]:\n" +
                "    model = onnx.load(path)\n" +
                "    onnx.checker.check_model(model, full_check=True)\n" +
                "    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)\n" +
                "    dims = [d.dim_param or d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]\n" +
                "    print(path.split('/')[-1], 'opset', model.opset_import[0].version, 'ir', model.ir_version, 'logits', dims)\n";
            var (exit, output) = TorchInteropTests.RunPython("-c", script, Path.Combine(directory, "cnn.onnx"), Path.Combine(directory, "every-layer.onnx"),
                Path.Combine(directory, "1x1-maps.onnx"));

            Assert.True(exit == 0, output);
            Assert.Contains("cnn.onnx opset 17 ir 8 logits ['batch', 10]", output);
            Assert.Contains("every-layer.onnx opset 17 ir 8 logits ['batch', 10]", output);
            Assert.Contains("1x1-maps.onnx opset 17 ir 8 logits ['batch', 10]", output);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private static IReadOnlyList<string> OnnxExporterOperators(TrainedModel model)
    {
        var path = Path.Combine(Directory.CreateTempSubdirectory("disttrain-onnx-").FullName, "model.onnx");
        try
        {
            return OnnxExporter.Export(model, path).Operators;
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
    }

    [Fact]
    public async Task The_export_command_writes_the_file_and_refuses_a_checkpoint_without_DistTrain_metadata_with_exit_2()
    {
        var directory = Directory.CreateTempSubdirectory("disttrain-export-").FullName;
        try
        {
            var checkpoint = Path.Combine(directory, "model.safetensors");
            (await TrainConfig("fashion-mnist-mlp.json")).Save(checkpoint);
            var onnx = Path.Combine(directory, "model.onnx");
            int Run(params string[] args) => new RootCommand { ExportCommand.Create() }.Parse(args).Invoke();

            Assert.Equal(0, Run("export", checkpoint, "--onnx", onnx));
            var loaded = TrainedModel.Load(checkpoint);
            Assert.Equal(OnnxExporter.ToBytes(loaded), File.ReadAllBytes(onnx));

            Assert.Equal(2, Run("export", TestData.GoldenPath("torch_cnn.safetensors"), "--onnx", onnx));
            Assert.Equal(2, Run("export", Path.Combine(directory, "missing.safetensors"), "--onnx", onnx));
            Assert.Equal(2, Run("export", checkpoint, "--onnx", Path.Combine(directory, "no-such-folder", "model.onnx")));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
