using BenchmarkDotNet.Attributes;
using DistTrain.Core.Layers;
using DistTrain.Core.LinearAlgebra;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Benchmarks;

/// <summary>
/// C[512, 256] = A[512, 784] · B[784, 256] (205.5 MFLOP per product): the project's provider against a
/// direct cblas_sgemm call with the same kernel, and against MathNet's managed provider.
/// GFLOP/s = 0.2055 / (mean in seconds).
/// </summary>
[MemoryDiagnoser]
public class SgemmBenchmarks
{
    private const int M = 512, K = 784, N = 256;
    private Matrix<float> _a = null!, _b = null!, _c = null!;

    [Params(1, 2)]
    public int Threads { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(1);
        _a = Matrix<float>.Build.Dense(M, K, (_, _) => (float)random.NextDouble());
        _b = Matrix<float>.Build.Dense(K, N, (_, _) => (float)random.NextDouble());
        _c = Matrix<float>.Build.Dense(M, N);
        Blas.Select(BlasProvider.Auto);
        Blas.SetThreadsPerCall(Threads);
        Console.WriteLine(Blas.Description);
    }

    [Benchmark(Baseline = true)]
    public unsafe void DirectCblasSgemm()
    {
        fixed (float* a = _a.ColumnMajorValues(), b = _b.ColumnMajorValues(), c = _c.ColumnMajorValues())
            OpenBlasLibrary.Sgemm(OpenBlasLibrary.ColumnMajor, OpenBlasLibrary.NoTranspose, OpenBlasLibrary.NoTranspose,
                M, N, K, 1f, a, M, b, K, 0f, c, M);
    }

    [Benchmark]
    public void ProviderGemm() => Blas.Gemm(Operation.None, Operation.None, 1f, _a, _b, 0f, _c);

    [Benchmark]
    public void MathNetManaged() => Blas.ManagedGemm(Operation.None, Operation.None, 1f, _a, _b, 0f, _c);
}
