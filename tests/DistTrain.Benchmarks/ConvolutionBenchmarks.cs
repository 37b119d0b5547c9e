using BenchmarkDotNet.Attributes;
using DistTrain.Core.Layers;
using DistTrain.Core.LinearAlgebra;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Benchmarks;

/// <summary>
/// Forward and backward of the CNN's second convolution (32→64 channels, 5x5, padding 2, on 14x14 maps, batch 64:
/// 1.28 GFLOP forward, 2.57 GFLOP backward) on one BLAS thread, with the default L2-sized chunks against one
/// product over the whole batch. GFLOP/s = 3.85 / (mean in seconds).
/// </summary>
[MemoryDiagnoser]
public class ConvolutionBenchmarks
{
    private static readonly TensorShape Input = new(32, 14, 14);
    private Conv2D _layer = null!;
    private Matrix<float> _x = null!, _dy = null!;

    /// <summary>Floats of unfolded patches per chunk: the default (2 MiB) or the whole batch (one product).</summary>
    [Params(Conv2D.DefaultChunkFloats, 64 * 196 * 800)]
    public int ChunkFloats { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        Blas.Select(BlasProvider.Auto);
        Blas.SetThreadsPerCall(1);
        Console.WriteLine(Blas.Description);
        _layer = new Conv2D(Input, 64, 5, 1, 2, ChunkFloats);
        var random = new Random(1);
        foreach (var p in _layer.Parameters)
            for (var i = 0; i < p.Value.Length; i++) p.Value[i] = (float)(random.NextDouble() - 0.5) * 0.1f;
        _x = Matrix<float>.Build.Dense(Input.Size, 64, (_, _) => (float)random.NextDouble());
        _dy = Matrix<float>.Build.Dense(_layer.Output.Size, 64, (_, _) => (float)random.NextDouble() - 0.5f);
    }

    [Benchmark]
    public void ForwardBackward()
    {
        _layer.Forward(_x);
        _layer.Backward(_dy);
    }
}
