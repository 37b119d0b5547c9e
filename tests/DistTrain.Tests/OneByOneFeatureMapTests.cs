using DistTrain.Cluster.Hosting;
using DistTrain.Core.Configuration;
using DistTrain.Core.Layers;
using DistTrain.Core.Models;

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
}
