using BenchmarkDotNet.Attributes;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Layers;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Benchmarks;

/// <summary>
/// Augmenting one worker's minibatch of 64 Fashion-MNIST images (28x28, globally normalized) on one thread, as the
/// worker does before every CNN step: flip only, and crop with padding 2 plus flip. Compare with the CNN step (about
/// 50 ms on a quiet machine, docs/benchmarks.md).
/// </summary>
[MemoryDiagnoser]
public class AugmentationBenchmarks
{
    private readonly int[] _indices = Enumerable.Range(0, 64).ToArray();
    private Matrix<float> _inputs = null!;
    private ImageAugmenter _flip = null!;
    private ImageAugmenter _cropAndFlip = null!;
    private int _epoch;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(1);
        var pixels = Enumerable.Range(0, 64 * 784).Select(_ => (float)random.NextDouble()).ToArray();
        var data = new LabeledDataset(pixels, new byte[64], 784, 10);
        var normalizer = Normalizer.Fit(data, NormalizationKind.Global);
        normalizer.Apply(data);
        _inputs = Matrix<float>.Build.Dense(784, 64, data.Features);
        var shape = new TensorShape(1, 28, 28);
        _flip = new ImageAugmenter(new AugmentationOptions { HorizontalFlip = true }, shape, normalizer, seed: 1);
        _cropAndFlip = new ImageAugmenter(new AugmentationOptions { CropPadding = 2, HorizontalFlip = true }, shape, normalizer, seed: 1);
    }

    [Benchmark]
    public void FlipBatchOf64() => _flip.Apply(_inputs, _indices, ++_epoch);

    [Benchmark]
    public void CropAndFlipBatchOf64() => _cropAndFlip.Apply(_inputs, _indices, ++_epoch);
}
