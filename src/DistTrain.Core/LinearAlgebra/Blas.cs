using MathNet.Numerics.LinearAlgebra;
using DistTrain.Core.Layers;

namespace DistTrain.Core.LinearAlgebra;

/// <summary>Which implementation runs matrix products.</summary>
public enum BlasProvider
{
    /// <summary>Native OpenBLAS when it loads, else the managed provider (logged).</summary>
    Auto,
    /// <summary>MathNet's managed provider (about 3 GFLOP/s on 2 cores; for comparisons and machines without OpenBLAS).</summary>
    Managed,
}

/// <summary>Whether <c>Blas.Gemm</c> reads an operand as stored or transposed.</summary>
public enum Operation
{
    /// <summary>Use the matrix as stored.</summary>
    None,
    /// <summary>Use its transpose (no copy is made).</summary>
    Transpose,
}

/// <summary>
/// Matrix products for the layers: <c>C ← α·op(A)·op(B) + β·C</c> on MathNet dense (column-major)
/// matrices, through native OpenBLAS <c>cblas_sgemm</c> when it loads and through MathNet's managed
/// provider otherwise. The choice is made once per process; <see cref="Description"/> names it for
/// the start-up log line.
/// </summary>
/// <remarks>The native path allocates nothing.</remarks>
public static unsafe class Blas
{
    private static readonly Lazy<string> NativeLoad = new(LoadNative, LazyThreadSafetyMode.ExecutionAndPublication);
    private static volatile int _selected = -1; // -1: not chosen yet (Auto on first use), else (int)BlasProvider
    private static bool _native;

    /// <summary>True when products run in OpenBLAS.</summary>
    public static bool IsNative
    {
        get
        {
            if (_selected < 0) Select(BlasProvider.Auto);
            return _native;
        }
    }

    /// <summary>
    /// One line naming the provider, the library, the kernel (<c>openblas_get_corename</c>) and the
    /// threads per call, or the reason for the managed fallback.
    /// </summary>
    public static string Description => IsNative
        ? $"BLAS: OpenBLAS ({OpenBlasLibrary.LoadedFrom}), kernel {OpenBlasLibrary.CoreName}, {Counts.Of(OpenBlasLibrary.Threads, "thread")} per call; {OpenBlasLibrary.KernelChoice}; config: {OpenBlasLibrary.Config.Trim()}"
        : $"BLAS: MathNet managed provider ({(_selected == (int)BlasProvider.Managed ? "Compute:BlasProvider is Managed" : NativeLoad.Value)})";

    /// <summary>
    /// Chooses the provider for this process: <see cref="BlasProvider.Auto"/> loads OpenBLAS and falls
    /// back to MathNet's managed provider when it is missing; <see cref="BlasProvider.Managed"/> always
    /// uses the managed provider. Products use <see cref="BlasProvider.Auto"/> if nothing was selected.
    /// </summary>
    public static void Select(BlasProvider provider)
    {
        _native = provider == BlasProvider.Auto && NativeLoad.Value.Length == 0;
        _selected = (int)provider;
    }
    /// <summary>
    /// Sets how many threads one product may use. Call it with <c>max(1, cores / workers)</c> so
    /// that workers × threads never exceeds the cores. The setting is process-wide: call it before
    /// training starts, never while products run on other threads.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="threads"/> is below 1.</exception>
    public static void SetThreadsPerCall(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(threads);
        ThreadsPerCall = threads;
        // openblas_set_num_threads resizes OpenBLAS's thread pool: never call it while a product may be
        // running on another thread, and skip it when nothing changes.
        if (IsNative)
        {
            if (OpenBlasLibrary.Threads != threads) OpenBlasLibrary.SetThreads(threads);
        }
        else if (threads == 1) MathNet.Numerics.Control.UseSingleThread();
        else MathNet.Numerics.Control.UseMultiThreading();
    }

    /// <summary>
    /// Threads one product (and one oneDNN convolution call, see <see cref="ConvolutionKernels"/>) may use: the last
    /// <see cref="SetThreadsPerCall"/>, 1 before any.
    /// </summary>
    public static int ThreadsPerCall { get; private set; } = 1;

    /// <summary>
    /// Applies a run's compute settings: selects <see cref="DistTrain.Core.Configuration.ComputeOptions.BlasProvider"/> and sets the threads
    /// per call to <see cref="DistTrain.Core.Configuration.ComputeOptions.BlasThreads"/>, or when that is 0 to
    /// <see cref="ThreadsFor"/>(<paramref name="workersInProcess"/>). The one place this rule lives: trainers
    /// call it before starting, and the CLI before printing <see cref="Description"/>. It also selects
    /// <see cref="DistTrain.Core.Configuration.ComputeOptions.ConvolutionBackend"/> (<see cref="ConvolutionKernels.Select"/>),
    /// whose oneDNN calls use the same threads per call. Calling it again with the same settings changes nothing.
    /// </summary>
    /// <param name="compute">The run's Compute section.</param>
    /// <param name="workersInProcess">Worker replicas that call products concurrently in this process.</param>
    public static void Configure(DistTrain.Core.Configuration.ComputeOptions compute, int workersInProcess)
    {
        Select(compute.BlasProvider);
        ConvolutionKernels.Select(compute.ConvolutionBackend);
        SetThreadsPerCall(compute.BlasThreads > 0 ? compute.BlasThreads : ThreadsFor(workersInProcess));
    }

    /// <summary>Threads per BLAS call that keep <paramref name="concurrentCallers"/> callers within the cores.</summary>
    public static int ThreadsFor(int concurrentCallers) => Math.Max(1, Environment.ProcessorCount / Math.Max(1, concurrentCallers));

    /// <summary>
    /// <c>C ← α·op(A)·op(B) + β·C</c>. Shapes: op(A) is <c>[m, k]</c>, op(B) is <c>[k, n]</c>, C is <c>[m, n]</c>.
    /// </summary>
    /// <exception cref="ArgumentException">The shapes do not fit, a matrix is not dense, or C aliases A or B.</exception>
    public static void Gemm(Operation opA, Operation opB, float alpha, Matrix<float> a, Matrix<float> b, float beta, Matrix<float> c)
    {
        var m = opA == Operation.None ? a.RowCount : a.ColumnCount;
        var k = opA == Operation.None ? a.ColumnCount : a.RowCount;
        var kB = opB == Operation.None ? b.RowCount : b.ColumnCount;
        var n = opB == Operation.None ? b.ColumnCount : b.RowCount;
        if (k != kB || c.RowCount != m || c.ColumnCount != n)
            throw new ArgumentException($"Gemm shapes do not fit: op(A) [{m}, {k}] · op(B) [{kB}, {n}] into C [{c.RowCount}, {c.ColumnCount}].");
        var aValues = a.ColumnMajorValues();
        var bValues = b.ColumnMajorValues();
        var cValues = c.ColumnMajorValues();
        if (ReferenceEquals(cValues, aValues) || ReferenceEquals(cValues, bValues))
            throw new ArgumentException("Gemm: C must not share storage with A or B.");
        if (m == 0 || n == 0) return;
        if (IsNative) NativeGemm(opA, opB, m, n, k, alpha, aValues, a.RowCount, bValues, b.RowCount, beta, cValues);
        else ManagedGemm(opA, opB, alpha, a, b, beta, c);
    }

    /// <summary>
    /// <c>C ← α·op(A)·op(B) + β·C</c> on column-major storage given as spans with leading dimensions, so operands can be
    /// slices of larger buffers (a chunk of a convolution's patches). Shapes: op(A) <c>[m, k]</c>, op(B) <c>[k, n]</c>,
    /// C <c>[m, n]</c>; element (i, j) of a stored matrix X is <c>X[i + j·ldX]</c>.
    /// </summary>
    /// <exception cref="ArgumentException">A span is too short for its shape and leading dimension.</exception>
    public static void Gemm(Operation opA, Operation opB, int m, int n, int k, float alpha, ReadOnlySpan<float> a, int lda,
        ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        var (aRows, aColumns) = opA == Operation.None ? (m, k) : (k, m);
        var (bRows, bColumns) = opB == Operation.None ? (k, n) : (n, k);
        static bool Fits(int length, int rows, int columns, int ld) =>
            rows == 0 || columns == 0 || (ld >= rows && (long)ld * (columns - 1) + rows <= length);
        if (m < 0 || n < 0 || k < 0 || !Fits(a.Length, aRows, aColumns, lda) || !Fits(b.Length, bRows, bColumns, ldb) || !Fits(c.Length, m, n, ldc))
            throw new ArgumentException($"Gemm: spans do not hold op(A) [{m}, {k}] (ld {lda}, {a.Length} elements), op(B) [{k}, {n}] (ld {ldb}, {b.Length}) and C [{m}, {n}] (ld {ldc}, {c.Length}).");
        if (m == 0 || n == 0) return;
        if (!IsNative)
        {
            ManagedGemm(opA, opB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
            return;
        }
        NativeGemm(opA, opB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }

    /// <summary>The span form's managed fallback: a plain loop in double precision (only used without OpenBLAS).</summary>
    private static void ManagedGemm(Operation opA, Operation opB, int m, int n, int k, float alpha, ReadOnlySpan<float> a, int lda,
        ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        for (var j = 0; j < n; j++)
            for (var i = 0; i < m; i++)
            {
                double sum = 0;
                for (var p = 0; p < k; p++)
                    sum += (double)(opA == Operation.None ? a[i + p * lda] : a[p + i * lda]) * (opB == Operation.None ? b[p + j * ldb] : b[j + p * ldb]);
                ref var target = ref c[i + j * ldc];
                target = (float)(alpha * sum + (beta == 0f ? 0.0 : beta * (double)target));
            }
    }

    internal static void NativeGemm(Operation opA, Operation opB, int m, int n, int k, float alpha, ReadOnlySpan<float> a, int lda,
        ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc = 0)
    {
        // A null function pointer would crash the process, not throw: load first (IsNative does) and check.
        if (!IsNative || OpenBlasLibrary.Sgemm == null)
            throw new InvalidOperationException("OpenBLAS is not loaded: " + Description);
        fixed (float* pa = a, pb = b, pc = c)
            OpenBlasLibrary.Sgemm(OpenBlasLibrary.ColumnMajor,
                opA == Operation.None ? OpenBlasLibrary.NoTranspose : OpenBlasLibrary.Transpose,
                opB == Operation.None ? OpenBlasLibrary.NoTranspose : OpenBlasLibrary.Transpose,
                m, n, k, alpha, pa, Math.Max(1, lda), pb, Math.Max(1, ldb), beta, pc, Math.Max(1, ldc > 0 ? ldc : m));
    }

    internal static void ManagedGemm(Operation opA, Operation opB, float alpha, Matrix<float> a, Matrix<float> b, float beta, Matrix<float> c)
    {
        var product = beta == 0f && alpha == 1f ? c : Matrix<float>.Build.Dense(c.RowCount, c.ColumnCount);
        switch (opA, opB)
        {
            case (Operation.None, Operation.None): a.Multiply(b, product); break;
            case (Operation.Transpose, Operation.None): a.TransposeThisAndMultiply(b, product); break;
            case (Operation.None, Operation.Transpose): a.TransposeAndMultiply(b, product); break;
            default: a.Transpose().TransposeAndMultiply(b, product); break;
        }
        if (ReferenceEquals(product, c)) return;
        var result = c.ColumnMajorValues();
        var values = product.ColumnMajorValues();
        for (var i = 0; i < result.Length; i++)
            result[i] = alpha * values[i] + (beta == 0f ? 0f : beta * result[i]);
    }

    private static string LoadNative()
    {
        if (!OpenBlasLibrary.TryLoad(out var failure))
            return failure;
        OpenBlasLibrary.SetThreads(1);
        if (OpenBlasLibrary.BestKernel() is not null && OpenBlasLibrary.IsPreAvx2(OpenBlasLibrary.CoreName))
            Console.Error.WriteLine($"warning: OpenBLAS runs its {OpenBlasLibrary.CoreName} kernel although this CPU has AVX2; products will be several times slower. ({OpenBlasLibrary.KernelChoice})");
        return "";
    }
}
