using BenchmarkDotNet.Attributes;
using DistTrain.Core.Layers;
using DistTrain.Core.LinearAlgebra;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Benchmarks;

/// <summary>
/// Forward and backward of the CNN's second convolution (32→64 channels, 5x5, padding 2, on 14x14 maps, batch 64:
/// 1.28 GFLOP forward, 2.57 GFLOP backward) on one thread, by backend: im2col with the default L2-sized chunks or one
/// product over the whole batch, and oneDNN with its preferred (blocked) layouts or on the plain NCHW/OIHW layouts.
/// GFLOP/s = 3.85 / (mean in seconds).
/// </summary>
[MemoryDiagnoser]
public class ConvolutionBenchmarks
{
    /// <summary>The implementations compared.</summary>
    public enum Kernel
    {
        /// <summary>im2col + sgemm, 1 MiB chunks of patches (the im2col default).</summary>
        Im2Col,
        /// <summary>im2col + sgemm, one product over the whole batch (40 MB of patches).</summary>
        Im2ColWholeBatch,
        /// <summary>oneDNN, its preferred blocked layouts with reorders in and out (the default).</summary>
        OneDnnBlocked,
        /// <summary>oneDNN on the plain layouts.</summary>
        OneDnnPlain,
    }

    private static readonly TensorShape Input = new(32, 14, 14);
    private Conv2D _layer = null!;
    private Matrix<float> _x = null!, _dy = null!;

    /// <summary>The backend and its variant.</summary>
    [Params(Kernel.Im2Col, Kernel.Im2ColWholeBatch, Kernel.OneDnnBlocked, Kernel.OneDnnPlain)]
    public Kernel Backend { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        Blas.Select(BlasProvider.Auto);
        Blas.SetThreadsPerCall(1);
        Console.WriteLine(Blas.Description);
        Console.WriteLine(ConvolutionKernels.Description);
        _layer = new Conv2D(Input, 64, 5, 1, 2, Backend == Kernel.Im2ColWholeBatch ? 64 * 196 * 800 : Conv2D.DefaultChunkFloats,
            backend: Backend is Kernel.Im2Col or Kernel.Im2ColWholeBatch ? ConvolutionBackend.Im2Col : ConvolutionBackend.OneDnn)
            { PreferredLayouts = Backend == Kernel.OneDnnBlocked };
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
