using DistTrain.Core.Layers;
using DistTrain.Core.LinearAlgebra;
using DistTrain.Core.Models;
using MathNet.Numerics.LinearAlgebra;
using static DistTrain.Tests.GradientCheckTests;

namespace DistTrain.Tests;

/// <summary>
/// The image and normalization layers: backward against central finite differences, forward against direct
/// definitions (a naive convolution loop, explicit statistics). PyTorch comparisons are in LayerGoldenTests.
/// </summary>
public class ConvolutionAndNormalizationTests
{
    /// <summary>Distinct values spaced 0.05 apart in random order, so a ±1e-2 step never changes which input is the maximum.</summary>
    private static Matrix<float> DistinctValues(int rows, int columns, int seed)
    {
        var values = Enumerable.Range(0, rows * columns).Select(i => -1f + 0.05f * i).ToArray();
        new Random(seed).Shuffle(values);
        return Matrix<float>.Build.Dense(rows, columns, values);
    }

    [Theory]
    [InlineData(1, 0)]
    [InlineData(1, 1)]
    [InlineData(2, 1)]
    [InlineData(2, 0)]
    public void Conv2D_matches_finite_differences(int stride, int padding)
    {
        var input = new TensorShape(2, 5, 6);
        // The im2col backend; OneDnnConvolutionTests checks oneDNN's the same way.
        CheckLayer(new Conv2D(input, 3, 3, stride, padding, backend: ConvolutionBackend.Im2Col), input.Size, 3, awayFromZero: false);
    }

    [Fact]
    public void Layers_without_bias_have_only_a_weight_and_match_finite_differences()
    {
        var input = new TensorShape(2, 4, 4);
        var conv = new Conv2D(input, 3, 3, 1, 1, bias: false);
        Assert.Equal(["weight"], conv.Parameters.Select(p => p.Name));
        CheckLayer(conv, input.Size, 2, awayFromZero: false);
        Assert.All(conv.Bias.Value, v => Assert.Equal(0f, v));
        var dense = new Dense(5, 3, bias: false);
        Assert.Equal(["weight"], dense.Parameters.Select(p => p.Name));
        CheckLayer(dense, 5, 2, awayFromZero: false);
    }

    [Fact]
    public void Conv2D_with_one_product_per_sample_matches_finite_differences()
    {
        var input = new TensorShape(2, 24, 24);
        var conv = new Conv2D(input, 2, 3, 1, 1, chunkFloats: 2 * 576 * 18, backend: ConvolutionBackend.Im2Col);
        Assert.True(conv.PerSampleProducts);
        CheckLayer(conv, input.Size, 3, awayFromZero: false); // 3 samples, 2 per chunk: both chunk paths
    }

    [Theory]
    [InlineData(ConvolutionBackend.Im2Col)]
    [InlineData(ConvolutionBackend.OneDnn)]
    public void Conv2D_forward_matches_the_definition_of_cross_correlation(ConvolutionBackend backend)
    {
        var input = new TensorShape(2, 6, 5);
        var conv = new Conv2D(input, 3, 3, stride: 2, padding: 1, backend: backend);
        var random = new Random(4);
        foreach (var p in conv.Parameters) for (var i = 0; i < p.Value.Length; i++) p.Value[i] = (float)(random.NextDouble() - 0.5);
        var x = RandomMatrix(input.Size, 2, random);
        var y = conv.Forward(x);
        var o = conv.Output;
        Assert.Equal(new TensorShape(3, 3, 3), o);
        for (var b = 0; b < 2; b++)
            for (var oc = 0; oc < 3; oc++)
                for (var oh = 0; oh < o.Height; oh++)
                    for (var ow = 0; ow < o.Width; ow++)
                    {
                        double sum = conv.Bias.Value[oc];
                        for (var c = 0; c < 2; c++)
                            for (var i = 0; i < 3; i++)
                                for (var j = 0; j < 3; j++)
                                {
                                    int ih = oh * 2 - 1 + i, iw = ow * 2 - 1 + j;
                                    if (ih < 0 || ih >= 6 || iw < 0 || iw >= 5) continue;
                                    sum += conv.Weight.Value[((oc * 2 + c) * 3 + i) * 3 + j] * x[(c * 6 + ih) * 5 + iw, b];
                                }
                        Assert.Equal(sum, y[(oc * o.Height + oh) * o.Width + ow, b], 5);
                    }
    }

    [Fact]
    public void Conv2D_in_chunks_equals_Conv2D_in_one_piece()
    {
        var input = new TensorShape(2, 6, 6);
        var whole = new Conv2D(input, 4, 3, 1, 1, backend: ConvolutionBackend.Im2Col);
        var chunked = new Conv2D(input, 4, 3, 1, 1, chunkFloats: 2 * 36 * 18, backend: ConvolutionBackend.Im2Col); // two samples per chunk
        Assert.Equal(2, chunked.ChunkSamples);
        var random = new Random(8);
        for (var p = 0; p < 2; p++)
            for (var i = 0; i < whole.Parameters[p].Value.Length; i++)
                whole.Parameters[p].Value[i] = chunked.Parameters[p].Value[i] = (float)(random.NextDouble() - 0.5);
        var x = RandomMatrix(input.Size, 5, random);
        var dy = RandomMatrix(whole.Output.Size, 5, random);
        AssertClose(whole.Forward(x), chunked.Forward(x));
        AssertClose(whole.Backward(dy)!, chunked.Backward(dy)!);
        for (var p = 0; p < 2; p++)
            Compare.Close(whole.Parameters[p].Gradient, chunked.Parameters[p].Gradient, relative: 0, absolute: 1e-4, $"gradient of parameter {p}");
        CheckLayer(new Conv2D(input, 2, 3, 1, 1, chunkFloats: 36 * 18, backend: ConvolutionBackend.Im2Col), input.Size, 3, awayFromZero: false);
    }

    private static void AssertClose(Matrix<float> expected, Matrix<float> actual)
    {
        Assert.Equal(expected.RowCount, actual.RowCount);
        Assert.Equal(expected.ColumnCount, actual.ColumnCount);
        Compare.Close(expected.ColumnMajorValues(), actual.ColumnMajorValues(), relative: 0, absolute: 1e-4, "chunked against whole");
    }

    [Fact]
    public void MaxPool2D_matches_finite_differences()
    {
        var input = new TensorShape(2, 4, 6);
        CheckLayer(new MaxPool2D(input, 2, 2), input.Size, 3, false, input: DistinctValues(input.Size, 3, 1));
        CheckLayer(new MaxPool2D(input, 3, 1), input.Size, 2, false, input: DistinctValues(input.Size, 2, 2));
    }

    [Fact]
    public void MaxPool2D_2x2_sends_the_gradient_of_a_tied_window_to_its_first_input_as_PyTorch()
    {
        var pool = new MaxPool2D(new TensorShape(1, 2, 2), 2, 2);
        pool.Forward(Matrix<float>.Build.DenseOfColumnMajor(4, 2, [0, 0, 0, 0, 1, 3, 3, -1]));
        var dx = pool.Backward(Matrix<float>.Build.DenseOfColumnMajor(1, 2, [5, 7]))!.ColumnMajorValues();
        Assert.Equal([5f, 0, 0, 0, 0, 7f, 0, 0], dx);
    }

    [Fact]
    public void MaxPool2D_takes_each_window_maximum()
    {
        var pool = new MaxPool2D(new TensorShape(1, 2, 4), 2, 2);
        var y = pool.Forward(Matrix<float>.Build.DenseOfColumnMajor(8, 1, [1, 5, 2, 0, 3, -1, 7, 4]));
        Assert.Equal([5f, 7f], y.ColumnMajorValues());
    }

    [Fact]
    public void AvgPool2D_matches_finite_differences_and_the_window_means()
    {
        var input = new TensorShape(2, 4, 5);
        CheckLayer(new AvgPool2D(input, 2, 2), input.Size, 3, false);
        var pool = new AvgPool2D(new TensorShape(1, 2, 4), 2, 2);
        var y = pool.Forward(Matrix<float>.Build.DenseOfColumnMajor(8, 1, [1, 5, 2, 0, 3, -1, 7, 4]));
        Assert.Equal([2f, 3.25f], y.ColumnMajorValues());
    }

    [Theory]
    [InlineData(3, 2, 3)] // BatchNorm2d: [C, H, W]
    [InlineData(5, 1, 1)] // BatchNorm2d on 1x1 maps [C, 1, 1]: one value per channel and sample, as BatchNorm1d
    [InlineData(5, 0, 0)] // BatchNorm1d: flat [F]
    public void BatchNorm_in_training_mode_matches_finite_differences(int channels, int height, int width)
    {
        var input = height == 0 ? TensorShape.Flat(channels) : new TensorShape(channels, height, width);
        CheckLayer(new BatchNorm(input), input.Size, 4, false, tolerance: 5e-3);
    }

    [Fact]
    public void BatchNorm_in_evaluation_mode_matches_finite_differences()
    {
        var input = new TensorShape(2, 2, 2);
        var norm = new BatchNorm(input);
        norm.RunningMean.Value[0] = 0.3f;
        norm.RunningVariance.Value[1] = 2.5f;
        norm.SetTraining(false);
        CheckLayer(norm, input.Size, 3, false);
    }

    [Fact]
    public void BatchNorm_normalizes_each_channel_and_updates_running_statistics_as_PyTorch()
    {
        var input = new TensorShape(2, 1, 2);
        var norm = new BatchNorm(input, momentum: 0.1);
        // Channel 0 sees 1, 2, 3, 6 (mean 3, biased variance 3.5, unbiased 14/3); channel 1 sees 0, 0, 4, 4.
        var x = Matrix<float>.Build.DenseOfColumnMajor(4, 2, [1, 2, 0, 0, 3, 6, 4, 4]);
        var y = norm.Forward(x);
        Assert.Equal((1 - 3) / Math.Sqrt(3.5 + 1e-5), y[0, 0], 5);
        Assert.Equal((4 - 2) / Math.Sqrt(4 + 1e-5), y[2, 1], 5);
        Assert.Equal(0.3, norm.RunningMean.Value[0], 6);
        Assert.Equal(0.9 + 0.1 * 14.0 / 3, norm.RunningVariance.Value[0], 5);
        Assert.Equal(0.9 + 0.1 * 16.0 / 3, norm.RunningVariance.Value[1], 5);
        norm.SetTraining(false);
        var evaluated = norm.Forward(x);
        Assert.Equal((1 - 0.3) / Math.Sqrt(0.9 + 0.1 * 14.0 / 3 + 1e-5), evaluated[0, 0], 5);
    }

    [Theory]
    [InlineData(2, 2, 3)]
    [InlineData(6, 1, 1)] // 1x1 maps
    [InlineData(6, 0, 0)] // flat
    public void LayerNorm_matches_finite_differences(int channels, int height, int width)
    {
        var input = height == 0 ? TensorShape.Flat(channels) : new TensorShape(channels, height, width);
        CheckLayer(new LayerNorm(input), input.Size, 3, false, tolerance: 5e-3);
    }

    [Fact]
    public void A_keyed_dropout_mask_depends_on_the_sample_epoch_and_layer_not_on_the_column_or_the_batch()
    {
        var dropout = new Dropout(0.3, seed: 5);
        var seed = Dropout.LayerSeed(7, layerIndex: 2);
        float[] MaskOf(int sample, int epoch, long layerSeed, int[] batch)
        {
            dropout.SetMaskKeys(layerSeed, epoch, batch);
            var mask = dropout.Forward(Matrix<float>.Build.Dense(99, batch.Length, 1f)).ColumnMajorValues();
            var column = Array.IndexOf(batch, sample);
            return mask[(column * 99)..((column + 1) * 99)];
        }
        var alone = MaskOf(42, 2, seed, [42]);
        Assert.Equal(alone, MaskOf(42, 2, seed, [3, 5, 42, 8])); // the third column of another batch
        Assert.Equal(alone, MaskOf(42, 2, seed, [42, 42]));
        Assert.NotEqual(alone, MaskOf(42, 3, seed, [42]));                                  // another epoch
        Assert.NotEqual(alone, MaskOf(42, 2, Dropout.LayerSeed(7, layerIndex: 4), [42]));   // another layer
        Assert.NotEqual(alone, MaskOf(43, 2, seed, [43]));                                  // another sample
        Assert.NotEqual(Dropout.LayerSeed(7, 2), Dropout.LayerSeed(8, 2));

        // Over 200 samples x 99 features (odd: the last element of a column takes a draw of its own) about p are dropped.
        dropout.SetMaskKeys(seed, 1, [.. Enumerable.Range(0, 200)]);
        var y = dropout.Forward(Matrix<float>.Build.Dense(99, 200, 2f)).ColumnMajorValues();
        Assert.InRange(y.Count(v => v == 0f) / 19800.0, 0.28, 0.32); // 0.3 ± 6 standard deviations
        Assert.All(y.Where(v => v != 0f), v => Assert.Equal(2f / 0.7f, v, 5));
        Assert.InRange(Enumerable.Range(0, 200).Count(j => y[j * 99 + 98] == 0f), 35, 85); // the odd last row too (0.3 · 200 = 60)
        var wrong = Assert.Throws<ArgumentException>(() => dropout.Forward(Matrix<float>.Build.Dense(99, 3, 1f)));
        Assert.Contains("3 columns but the masks were keyed for 200 samples", wrong.Message);
    }

    [Fact]
    public void Dropout_zeroes_about_p_scales_survivors_and_is_the_identity_in_evaluation()
    {
        var dropout = new Dropout(0.3, seed: 5);
        var x = Matrix<float>.Build.Dense(100, 50, 2f);
        var y = dropout.Forward(x).ColumnMajorValues();
        var zeros = y.Count(v => v == 0f);
        Assert.InRange(zeros / 5000.0, 0.27, 0.33); // 0.3 ± 4.6 standard deviations
        Assert.All(y.Where(v => v != 0f), v => Assert.Equal(2f / 0.7f, v, 5));
        var dy = Matrix<float>.Build.Dense(100, 50, 1f);
        var dx = dropout.Backward(dy)!.ColumnMajorValues();
        Compare.Close(y.Select(v => v / 2f).ToArray(), dx, relative: 0, absolute: 1e-6, "dx against y / 2 (the same mask)");
        var again = new Dropout(0.3, seed: 5).Forward(x).ColumnMajorValues();
        Assert.Equal(y, again); // seeded
        dropout.SetTraining(false);
        Assert.Same(x, dropout.Forward(x));
    }

    [Fact]
    public void A_CNN_built_from_config_matches_finite_differences_of_the_loss()
    {
        var options = new ModelOptions
        {
            InputShape = [1, 6, 6],
            Layers =
            [
                new() { Type = LayerTypes.Conv2D, Channels = 2, KernelSize = 3, Padding = 1 }, new() { Type = LayerTypes.BatchNorm },
                new() { Type = LayerTypes.Tanh }, new() { Type = LayerTypes.AvgPool2D, KernelSize = 2 },
                new() { Type = LayerTypes.Flatten }, new() { Type = LayerTypes.LayerNorm },
                new() { Type = LayerTypes.Dense, Units = 3 },
            ],
        };
        var model = ModelFactory.Build(options);
        Assert.Equal(["0.weight", "0.bias", "1.weight", "1.bias", "5.weight", "5.bias", "6.weight", "6.bias", "1.running_mean", "1.running_var"],
            model.Layout.Segments.Select(s => s.Name));
        Assert.Equal(new[] { 3, 1, 1 }, new[] { model.OutputShape.Channels, model.OutputShape.Height, model.OutputShape.Width });
        var weights = ModelFactory.InitialWeights(model, new() { Kind = Core.Initialization.InitializerKind.HeNormal }, seed: 3);
        Assert.All(weights.Segment("1.weight").ToArray(), v => Assert.Equal(1f, v));
        Assert.All(weights.Segment("1.running_var").ToArray(), v => Assert.Equal(1f, v));
        CheckModelGradients(model, weights, batch: 4, seed: 2);
    }

    /// <summary>
    /// The gradient of the mean cross-entropy over a random batch (labels 0, 1, 2, ... in turn) with respect to every
    /// trainable element of <paramref name="weights"/>, against central differences with a step of 1e-2.
    /// </summary>
    private static void CheckModelGradients(Sequential model, Core.Tensors.ParameterVector weights, int batch, int seed)
    {
        var classes = model.OutputSize;
        var random = new Random(seed);
        var x = RandomMatrix(model.InputSize, batch, random);
        var target = Matrix<float>.Build.Dense(classes, batch);
        for (var j = 0; j < batch; j++) target[j % classes, j] = 1;
        var loss = new Core.Losses.SoftmaxCrossEntropy();
        model.ComputeGradients(x, target, loss);
        var analytic = new float[model.Layout.WorkerReportLength];
        model.CopyGradientsTo(analytic);
        var scratch = Matrix<float>.Build.Dense(classes, batch);
        var w = weights.Values;
        const float epsilon = 1e-2f;
        for (var i = 0; i < model.Layout.TrainableLength; i++)
        {
            var original = w[i];
            w[i] = original + epsilon; model.LoadParameters(w);
            var plus = loss.Compute(model.Forward(x), target, scratch);
            w[i] = original - epsilon; model.LoadParameters(w);
            var minus = loss.Compute(model.Forward(x), target, scratch);
            w[i] = original;
            var numeric = (plus - minus) / (2 * epsilon);
            Assert.True(Math.Abs(numeric - analytic[i]) <= 2e-4 + 1e-2 * Math.Abs(numeric), $"{i}: {numeric:G6} vs {analytic[i]:G6}");
        }
        model.LoadParameters(w);
    }

    [Theory]
    [InlineData(ConvolutionBackend.Im2Col)]
    [InlineData(ConvolutionBackend.OneDnn)]
    public void Conv2D_on_1x1_maps_matches_finite_differences(ConvolutionBackend backend)
    {
        var input = new TensorShape(3, 1, 1);
        var conv = new Conv2D(input, 4, 1, backend: backend);
        Assert.Equal(new TensorShape(4, 1, 1), conv.Output);
        CheckLayer(conv, input.Size, 5, awayFromZero: false);
        // Padding 1 around one position: a 3x3 kernel sees it only through its centre.
        CheckLayer(new Conv2D(input, 2, 3, padding: 1, backend: backend), input.Size, 3, awayFromZero: false);
    }

    [Fact]
    public void A_network_on_1x1_maps_matches_finite_differences_of_the_loss()
    {
        // [2, 3, 3] -> a 3x3 kernel leaves 1x1 maps [3, 1, 1], which stay images through a 1x1 convolution, BatchNorm2d,
        // 1x1 pooling and LayerNorm([4, 1, 1]); the Dense head flattens them. Before, [3, 1, 1] was taken for a flat
        // vector [3] and the second Conv2D was refused.
        var options = new ModelOptions
        {
            InputShape = [2, 3, 3],
            Layers =
            [
                new() { Type = LayerTypes.Conv2D, Channels = 3, KernelSize = 3 }, new() { Type = LayerTypes.BatchNorm },
                new() { Type = LayerTypes.Tanh }, new() { Type = LayerTypes.Conv2D, Channels = 4, KernelSize = 1 },
                new() { Type = LayerTypes.MaxPool2D, KernelSize = 1 }, new() { Type = LayerTypes.AvgPool2D, KernelSize = 1 },
                new() { Type = LayerTypes.LayerNorm }, new() { Type = LayerTypes.Dense, Units = 3 },
            ],
        };
        var model = ModelFactory.Build(options);
        var shapes = new List<string>();
        var shape = model.InputShape;
        foreach (var layer in model.Layers) shapes.Add((shape = layer.OutputShape(shape)).ToString());
        Assert.Equal(["[3, 1, 1]", "[3, 1, 1]", "[3, 1, 1]", "[4, 1, 1]", "[4, 1, 1]", "[4, 1, 1]", "[4, 1, 1]", "[3]"], shapes);
        Assert.Equal([4, 1, 1], model.Layout["6.weight"].Shape); // nn.LayerNorm([4, 1, 1]).weight
        var weights = ModelFactory.InitialWeights(model, new() { Kind = Core.Initialization.InitializerKind.HeNormal }, seed: 4);
        // Norm scales and shifts away from 1 and 0, so a gradient that ignores them shows.
        var random = new Random(4);
        foreach (var segment in model.Layout.Segments.Where(s => s.Role is ParameterRole.NormScale or ParameterRole.NormShift or ParameterRole.Bias))
            foreach (ref var value in weights.Segment(segment))
                value += (float)(random.NextDouble() - 0.5);
        model.LoadParameters(weights.Values);
        CheckModelGradients(model, weights, batch: 5, seed: 3);
    }

    [Fact]
    public void Frozen_tensors_get_no_gradient_and_sit_after_the_reported_prefix()
    {
        var options = new ModelOptions
        {
            InputShape = [1, 4, 4],
            Layers =
            [
                new() { Type = LayerTypes.Conv2D, Channels = 2, KernelSize = 3 }, new() { Type = LayerTypes.BatchNorm },
                new() { Type = LayerTypes.ReLU }, new() { Type = LayerTypes.Flatten }, new() { Type = LayerTypes.Dense, Units = 3 },
            ],
        };
        var model = ModelFactory.Build(options, isFrozen: name => name.StartsWith("0.") || name.StartsWith("1."));
        Assert.Equal(["4.weight", "4.bias", "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"],
            model.Layout.Segments.Select(s => s.Name));
        Assert.Equal(3 * 8 + 3, model.Layout.TrainableLength);
        Assert.Equal(model.Layout.TrainableLength, model.Layout.WorkerReportLength); // frozen BN keeps its statistics
        var conv = (Conv2D)model.Layers[0];
        Array.Fill(conv.Weight.Gradient, 42f);
        var weights = ModelFactory.InitialWeights(model, new(), seed: 1);
        var x = RandomMatrix(16, 3, new Random(1));
        var target = Matrix<float>.Build.Dense(3, 3, (i, j) => i == j ? 1 : 0);
        var before = weights.Segment("1.running_mean").ToArray();
        model.ComputeGradients(x, target, new Core.Losses.SoftmaxCrossEntropy());
        Assert.All(conv.Weight.Gradient, g => Assert.Equal(42f, g)); // never computed
        Assert.Equal(before, ((BatchNorm)model.Layers[1]).RunningMean.Value); // frozen BN runs in evaluation mode
        Assert.Contains(((Dense)model.Layers[4]).Weight.Gradient, g => g != 0f);
    }
}
