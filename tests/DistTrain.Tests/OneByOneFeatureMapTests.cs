using DistTrain.Cluster.Hosting;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Layers;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

/// <summary>
/// A feature map shrunk to 1x1 (a convolution or pooling whose window covers the map) stays an image <c>[C, 1, 1]</c>,
/// as <c>[N, C, 1, 1]</c> does in PyTorch, until a Flatten or Dense layer: a 1x1 convolution or pooling may follow it,
/// BatchNorm on it is BatchNorm2d, LayerNorm's tensors are <c>[C, 1, 1]</c>, and a Dense head flattens it. Before, such a
/// map was taken for a flat vector <c>[C]</c>, and the next Conv2D or pooling layer was refused as if it followed a Dense layer.
/// </summary>
public class OneByOneFeatureMapTests
{
    /// <summary>The digits data's model section: 8x8 grayscale images, 10 classes.</summary>
    private static ModelOptions Digits(params LayerOptions[] layers) => new() { InputShape = [1, 8, 8], Layers = [.. layers] };

    private static LayerOptions Conv(int channels, int kernel, int stride = 1, int padding = 0) =>
        new() { Type = LayerTypes.Conv2D, Channels = channels, KernelSize = kernel, Stride = stride, Padding = padding };

    private static LayerOptions Layer(string type, int kernel = 0) => new() { Type = type, KernelSize = kernel };

    private static LayerOptions Dense(int units) => new() { Type = LayerTypes.Dense, Units = units };

    /// <summary>Each layer's output shape, as the error messages print it ([C, H, W] for an image, [n] when flat).</summary>
    private static string[] Shapes(Sequential model)
    {
        var shapes = new List<string>();
        var shape = model.InputShape;
        foreach (var layer in model.Layers) shapes.Add((shape = layer.OutputShape(shape)).ToString());
        return [.. shapes];
    }

    private static (string Name, int[] Shape)[] Tensors(Sequential model) =>
        [.. model.Layout.Segments.Select(s => (s.Name, s.Shape))];

    [Fact]
    public void Convolution_pooling_and_normalization_after_a_map_shrunk_to_1x1_build_with_PyTorchs_shapes()
    {
        // An 8x8 kernel on 8x8 images leaves 1x1 maps; then a 1x1 convolution (PyTorch accepts this network).
        var conv = ModelFactory.Build(Digits(Conv(4, 8), Conv(4, 1), Dense(10)));
        Assert.Equal(["[4, 1, 1]", "[4, 1, 1]", "[10]"], Shapes(conv));
        Assert.Equal([("0.weight", new[] { 4, 1, 8, 8 }), ("0.bias", [4]), ("1.weight", [4, 4, 1, 1]), ("1.bias", [4]), ("2.weight", [10, 4]), ("2.bias", [10])],
            Tensors(conv));

        // A 1x1 max pooling on them.
        var pool = ModelFactory.Build(Digits(Conv(4, 8), Layer(LayerTypes.MaxPool2D, 1), Dense(10)));
        Assert.Equal(["[4, 1, 1]", "[4, 1, 1]", "[10]"], Shapes(pool));

        // BatchNorm on them is BatchNorm2d over the 1x1 maps, not BatchNorm1d over flat features; its tensors are [C] either way.
        var norm = ModelFactory.Build(Digits(Conv(4, 8), Layer(LayerTypes.BatchNorm), Dense(10)));
        var batchNorm = Assert.IsType<BatchNorm>(norm.Layers[1]);
        Assert.False(batchNorm.Input.IsFlat);
        Assert.Equal(new TensorShape(4, 1, 1), batchNorm.Input);
        Assert.Equal([("1.weight", new[] { 4 }), ("1.bias", [4]), ("1.running_mean", [4]), ("1.running_var", [4])],
            Tensors(norm).Where(t => t.Name.StartsWith("1.", StringComparison.Ordinal)));

        // LayerNorm over the sample [4, 1, 1] has PyTorch's nn.LayerNorm([4, 1, 1]) tensors; Flatten then makes the maps flat.
        var layerNorm = ModelFactory.Build(Digits(Conv(4, 8), Layer(LayerTypes.LayerNorm), Layer(LayerTypes.Flatten), Dense(10)));
        Assert.Equal(["[4, 1, 1]", "[4, 1, 1]", "[4]", "[10]"], Shapes(layerNorm));
        Assert.Equal([("1.weight", new[] { 4, 1, 1 }), ("1.bias", [4, 1, 1])], Tensors(layerNorm).Where(t => t.Name.StartsWith("1.", StringComparison.Ordinal)));

        // An input of 1x1 images is an image too.
        Assert.Equal(["[2, 1, 1]", "[3]"], Shapes(ModelFactory.Build(new ModelOptions { InputShape = [5, 1, 1], Layers = [Conv(2, 1), Dense(3)] })));
    }

    [Fact]
    public void Only_flat_inputs_are_refused_by_convolution_and_pooling_and_a_window_larger_than_1x1_maps_is_named()
    {
        // The trial's config: stride 16 on 8x8 leaves 1x1 maps, and a 2x2 max pooling cannot fit them.
        var stride = Digits(Conv(8, 3, stride: 16, padding: 1), Layer(LayerTypes.BatchNorm), Layer(LayerTypes.ReLU),
            Layer(LayerTypes.MaxPool2D, 2), Layer(LayerTypes.Flatten), Dense(10));
        Assert.Equal("Model:Layers:3 (MaxPool2D) on input [8, 1, 1]: MaxPool2D: a 2x2 window does not fit the input [8, 1, 1], whose feature " +
            "maps are 1x1. Use a KernelSize of at most 1, remove the layer, or let the layers before it shrink the maps less (a smaller Stride " +
            "or KernelSize, or more Padding).", Assert.Throws<ArgumentException>(() => ModelFactory.Build(stride)).Message);
        Assert.StartsWith("Model:Layers:0 (AvgPool2D) on input [3, 2, 3]: AvgPool2D: a 3x3 window does not fit the input [3, 2, 3], whose feature maps are 2x3. Use a KernelSize of at most 2,",
            Assert.Throws<ArgumentException>(() => ModelFactory.Build(new ModelOptions { InputShape = [3, 2, 3], Layers = [Layer(LayerTypes.AvgPool2D, 3), Dense(2)] })).Message);

        // After Flatten or Dense the features are flat, also when there are as many as a 1x1 map's channels.
        foreach (var flat in new[] { Layer(LayerTypes.Flatten), Dense(4) })
            Assert.Equal("Model:Layers:2 (Conv2D) on input [4]: Conv2D needs an image input [channels, height, width]. Set Model:InputShape " +
                "(for example [1, 28, 28]) and put Conv2D before any Dense or Flatten layer.",
                Assert.Throws<ArgumentException>(() => ModelFactory.Build(Digits(Conv(4, 8), flat, Conv(4, 1), Dense(10)))).Message);
        Assert.StartsWith("Model:Layers:0 (MaxPool2D) on input [64]: MaxPool2D needs an image input",
            Assert.Throws<ArgumentException>(() => ModelFactory.Build(new ModelOptions { InputSize = 64, Layers = [Layer(LayerTypes.MaxPool2D, 1), Dense(10)] })).Message);
    }

    [Fact]
    public void The_one_sample_BatchNorm_warning_names_1x1_maps_for_a_BatchNorm_on_them()
    {
        var options = TestData.Options(new ModelOptions
        {
            InputShape = [1, 28, 28],
            Layers = [Conv(4, 28), Layer(LayerTypes.BatchNorm), Layer(LayerTypes.ReLU), Dense(10)],
        }, workers: 2, batch: 1, epochs: 1);
        Assert.Equal("Training:BatchSizePerWorker = 1: a minibatch of one sample has no batch statistics, so BatchNorm on 1x1 feature maps (one " +
            "value per channel) normalizes it with its running statistics and does not update them (PyTorch raises an error there); with every " +
            "minibatch of one sample they never change from their starting values. Use 2 or more samples per worker, or LayerNorm.",
            DistTrain.Cli.TrainCommand.BatchNormWithOneSample(options, trainSamples: 200, workers: 2));
    }

    [Fact]
    public async Task A_network_on_1x1_maps_trains_and_its_checkpoint_loads_with_the_same_logits()
    {
        // [1, 28, 28] -> 7x7 kernels at stride 7 give [4, 4, 4] -> a 4x4 max pooling gives [4, 1, 1] (global pooling) ->
        // a 1x1 convolution, BatchNorm2d, 1x1 pooling and LayerNorm on the 1x1 maps -> a Dense head that flattens them.
        var model = new ModelOptions
        {
            InputShape = [1, 28, 28],
            Layers = [Conv(4, 7, stride: 7), Layer(LayerTypes.MaxPool2D, 4), Conv(6, 1), Layer(LayerTypes.BatchNorm), Layer(LayerTypes.ReLU),
                Layer(LayerTypes.MaxPool2D, 1), Layer(LayerTypes.LayerNorm), Dense(10)],
        };
        var options = TestData.Options(model, workers: 2, batch: 32, epochs: 1);
        var initial = ModelFactory.StartingWeights(ModelFactory.Build(model), model, options.Training.Seed); // the run's version 0

        var outcome = await new Trainer(options).TrainAsync(TestData.Normalized()).WithTestTimeout();

        var trained = outcome.Model;
        Assert.True(double.IsFinite(outcome.History[^1].TrainLoss), $"train loss {outcome.History[^1].TrainLoss}");
        // The 1x1 convolution learned, and BatchNorm's running statistics moved from 0 and 1.
        var before = initial.Segment("2.weight").ToArray();
        var after = trained.Weights.Segment("2.weight").ToArray();
        Assert.Equal([6, 4, 1, 1], trained.Weights.Layout["2.weight"].Shape);
        Assert.True(before.Zip(after).Max(p => Math.Abs(p.First - p.Second)) > 1e-3, "the 1x1 convolution's weights did not change");
        Assert.True(trained.Weights.Segment("3.running_mean").ToArray().Max(Math.Abs) > 1e-3, "running_mean stayed 0");
        Assert.Equal([6, 1, 1], trained.Weights.Layout["6.weight"].Shape);

        var path = Path.Combine(Directory.CreateTempSubdirectory("disttrain-1x1-").FullName, "model.safetensors");
        try
        {
            trained.Save(path);
            var loaded = TrainedModel.Load(path);
            var sample = TestData.RawTest.Features.AsSpan(0, 20 * 784);
            Assert.Equal(trained.Logits(sample), loaded.Logits(sample));
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
    }

    /// <summary>
    /// A network whose LayerNorm (layer 1) runs on 1x1 maps [4, 1, 1], with every weight drawn at random (LayerNorm's too,
    /// so that a weight or bias left at its starting value would show), and the same weights laid out as versions before
    /// 1x1 maps stayed images wrote them: LayerNorm's weight and bias as [4], every other tensor as it is.
    /// </summary>
    private static (ModelOptions Model, ParameterVector Weights, ParameterLayout Earlier) LayerNormOn1x1Maps()
    {
        var model = Digits(Conv(4, 8), Layer(LayerTypes.LayerNorm), Layer(LayerTypes.ReLU), Dense(3));
        var layout = ModelFactory.Build(model).Layout;
        var random = new Random(5);
        var weights = new ParameterVector(layout, [.. Enumerable.Range(0, layout.TotalLength).Select(_ => (float)(random.NextDouble() * 2 - 1))]);
        // Written by hand, as the earlier code laid the tensors out (TensorShape took [4, 1, 1] for the flat [4]).
        var earlier = new ParameterLayout(layout.Segments.Select(s =>
            (s.Name, s.Name is "1.weight" or "1.bias" ? new[] { 4 } : s.Shape, s.Role, s.Frozen)));
        Assert.Equal([("1.weight", new[] { 4, 1, 1 }), ("1.bias", [4, 1, 1])], layout.Segments.Where(s => s.Name.StartsWith("1.", StringComparison.Ordinal)).Select(s => (s.Name, s.Shape)));
        return (model, weights, earlier);
    }

    [Fact]
    public void A_model_file_whose_LayerNorm_on_1x1_maps_holds_the_earlier_shape_C_loads_with_the_same_logits()
    {
        var (model, weights, earlier) = LayerNormOn1x1Maps();
        var trained = new TrainedModel(model, weights, Normalizer.FromStatistics(NormalizationKind.Global, [0.5f], [0.25f]));
        var directory = Directory.CreateTempSubdirectory("disttrain-1x1-earlier-").FullName;
        try
        {
            var current = Path.Combine(directory, "current.safetensors");
            var old = Path.Combine(directory, "old.safetensors");
            trained.Save(current);
            SafeTensors.Write(old, new ParameterVector(earlier, weights.Values), trained.Metadata);
            Assert.Equal([4], SafeTensors.Read(old)["1.weight"].Shape);
            Assert.Equal([4], SafeTensors.Read(old)["1.bias"].Shape);

            // predict, evaluate, export and inspect load through TrainedModel.Load; finetune --from and Model:Pretrained
            // through PretrainedWeights.Load, which it calls.
            var loaded = TrainedModel.Load(old);
            Assert.Equal(weights.Values, loaded.Weights.Values);
            Assert.Equal([4, 1, 1], loaded.Weights.Layout["1.weight"].Shape);
            var samples = Enumerable.Range(0, 5 * 64).Select(i => (float)Math.Sin(i * 0.37) * 0.5f + 0.5f).ToArray();
            var logits = TrainedModel.Load(current).Logits(samples);
            Assert.Equal(logits, loaded.Logits(samples));
            Assert.True(logits.Distinct().Count() > 10, "the logits are not all alike");

            // Fine-tuning with a new head loads the earlier LayerNorm too.
            var replica = ModelFactory.Build(model);
            var target = new ParameterVector(replica.Layout);
            var names = PretrainedWeights.Load(old, replica, target, replaceHead: true);
            Assert.Equal(["0.weight", "0.bias", "1.weight", "1.bias"], names);
            Assert.Equal(weights.Segment("1.bias").ToArray(), target.Segment("1.bias").ToArray());

            // A LayerNorm tensor of another size is still refused, naming both shapes.
            var other = new ParameterLayout(earlier.Segments.Select(s => (s.Name, s.Name == "1.bias" ? new[] { 2, 2 } : s.Shape, s.Role, s.Frozen)));
            SafeTensors.Write(old, new ParameterVector(other, weights.Values), trained.Metadata);
            Assert.Contains("'1.bias' is [2, 2] in the checkpoint but [4, 1, 1] in the model",
                Assert.Throws<InvalidDataException>(() => TrainedModel.Load(old)).Message);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void A_training_checkpoint_whose_LayerNorm_on_1x1_maps_holds_the_earlier_shape_C_resumes()
    {
        var (model, weights, earlier) = LayerNormOn1x1Maps();
        var layout = weights.Layout;
        var directory = Directory.CreateTempSubdirectory("disttrain-1x1-resume-").FullName;
        try
        {
            // The earlier version recorded the fingerprint of its own layout, with [4] for LayerNorm's tensors.
            float[] state = [.. Enumerable.Range(0, layout.TrainableLength).Select(i => i * 0.01f)];
            var checkpoint = new TrainingCheckpoint(new ParameterVector(earlier, weights.Values), [("momentum_buffer", state)], OptimizerKind.Sgd,
                optimizerSteps: 12, version: 12, epoch: 2, round: 0, shardSeed: 1, workers: 2, batchSizePerWorker: 32, jobId: "run-1");
            var store = new CheckpointStore(directory, keep: 3);
            var path = store.Save(checkpoint);
            Assert.Equal(TrainingCheckpoint.LayoutFingerprint(earlier), SafeTensors.ReadMetadata(path)["model_fingerprint"]);
            Assert.NotEqual(TrainingCheckpoint.LayoutFingerprint(earlier), TrainingCheckpoint.LayoutFingerprint(layout));

            var read = TrainingCheckpoint.Read(path, layout);
            Assert.Equal(weights.Values, read.Weights.Values);
            Assert.Equal([4, 1, 1], read.Weights.Layout["1.weight"].Shape);
            Assert.Equal((12L, 2), (read.Version, read.Epoch));
            Assert.Equal(path, store.FindNewestValid(layout).Path);
            Assert.Equal("run-1", store.LastWrittenJobId(layout));

            // Early stopping's best weights, kept beside the checkpoints in the earlier shapes, are restored too.
            var epoch1 = new EpochSummary(1, 12, 0.5, 0.4, 0.8, 100, 1000, 1, 0.1, 0.3, 0.7);
            DistTrain.Cluster.Training.EarlyStoppingRecord.Save(directory, [epoch1], bestEpoch: 1, (new ParameterVector(earlier, weights.Values), 12), validationSamples: 200);
            var restored = DistTrain.Cluster.Training.EarlyStoppingRecord.Restore(directory, firstEpoch: 2, firstRound: 0, resumedVersion: 12, minDelta: 0.01,
                layout, validationSamples: 200, out var problem);
            Assert.Null(problem);
            Assert.Equal(weights.Values, restored!.BestWeights);

            // A model that differs otherwise is still another model.
            var wider = ModelFactory.Build(Digits(Conv(5, 8), Layer(LayerTypes.LayerNorm), Layer(LayerTypes.ReLU), Dense(3))).Layout;
            Assert.Contains("the checkpoint holds another model", Assert.Throws<InvalidDataException>(() => TrainingCheckpoint.Read(path, wider)).Message);
            Assert.Equal("", store.LastWrittenJobId(wider));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
