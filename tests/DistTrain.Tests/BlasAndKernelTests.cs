using DistTrain.Core.Layers;
using DistTrain.Core.LinearAlgebra;
using DistTrain.Core.Optimization;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Tests;

public class BlasAndKernelTests
{
    private static Matrix<float> Random(int rows, int columns, int seed)
    {
        var random = new Random(seed);
        return Matrix<float>.Build.Dense(rows, columns, (_, _) => (float)(random.NextDouble() * 2 - 1));
    }

    private static double[,] Reference(Operation opA, Operation opB, float alpha, Matrix<float> a, Matrix<float> b, float beta, Matrix<float> c)
    {
        var left = opA == Operation.None ? a : a.Transpose();
        var right = opB == Operation.None ? b : b.Transpose();
        var result = new double[c.RowCount, c.ColumnCount];
        for (var i = 0; i < c.RowCount; i++)
            for (var j = 0; j < c.ColumnCount; j++)
            {
                double sum = 0;
                for (var p = 0; p < left.ColumnCount; p++) sum += (double)left[i, p] * right[p, j];
                result[i, j] = alpha * sum + beta * c[i, j];
            }
        return result;
    }

    [Fact]
    public void OpenBLAS_loads_with_a_kernel_that_matches_the_CPU()
    {
        // tests/run.sh installs Debian's libopenblas0-pthread; without it the product falls back, but the suite must notice.
        Assert.True(Blas.IsNative, Blas.Description);
        Assert.Contains("kernel", Blas.Description);
        // The threads counted as words: "1 thread per call", "2 threads per call".
        Assert.Contains(OpenBlasLibrary.Threads == 1 ? ", 1 thread per call; " : $", {OpenBlasLibrary.Threads} threads per call; ", Blas.Description);
        // Never the Prescott-era fallback on a CPU with AVX2; without a user setting, the best kernel.
        if (OpenBlasLibrary.BestKernel() is { } best)
        {
            Assert.False(OpenBlasLibrary.IsPreAvx2(OpenBlasLibrary.CoreName), Blas.Description);
            if (Environment.GetEnvironmentVariable("OPENBLAS_CORETYPE") is null or "")
                Assert.Equal(best.ToUpperInvariant(), OpenBlasLibrary.CoreName.ToUpperInvariant());
        }
    }

    [Theory]
    [InlineData(Operation.None, Operation.None)]
    [InlineData(Operation.Transpose, Operation.None)]
    [InlineData(Operation.None, Operation.Transpose)]
    [InlineData(Operation.Transpose, Operation.Transpose)]
    public void Span_products_on_slices_with_leading_dimensions_match_the_reference_natively_and_managed(Operation opA, Operation opB)
    {
        // The convolution's form: operands are slices of larger buffers, read with a leading dimension larger than
        // their row count. A is the middle rows of a taller matrix; C is written into part of a larger one.
        const int m = 6, n = 4, k = 5, rowsA = 10, rowsC = 9;
        var (aRows, aColumns) = opA == Operation.None ? (m, k) : (k, m);
        var tall = Random(rowsA, aColumns, 4);
        var a = Matrix<float>.Build.Dense(aRows, aColumns, (i, j) => tall[i + 2, j]);
        var b = opB == Operation.None ? Random(k, n, 5) : Random(n, k, 5);
        var c0 = Random(m, n, 6);
        var expected = Reference(opA, opB, 0.5f, a, b, 2f, c0);
        foreach (var provider in new[] { BlasProvider.Auto, BlasProvider.Managed })
        {
            Blas.Select(provider);
            try
            {
                var big = new float[rowsC * n];
                for (var j = 0; j < n; j++)
                    for (var i = 0; i < m; i++) big[1 + i + j * rowsC] = c0[i, j];
                Blas.Gemm(opA, opB, m, n, k, 0.5f, tall.ColumnMajorValues().AsSpan(2), rowsA, b.ColumnMajorValues(), b.RowCount, 2f,
                    big.AsSpan(1), rowsC);
                for (var i = 0; i < m; i++)
                    for (var j = 0; j < n; j++)
                        Assert.True(Math.Abs(expected[i, j] - big[1 + i + j * rowsC]) < 1e-4, $"{provider} C[{i},{j}]");
                Assert.Equal(0f, big[0]); // nothing outside C's part was written
            }
            finally
            {
                Blas.Select(BlasProvider.Auto);
            }
        }
    }

    [Theory]
    [InlineData(Operation.None, Operation.None)]
    [InlineData(Operation.Transpose, Operation.None)]
    [InlineData(Operation.None, Operation.Transpose)]
    [InlineData(Operation.Transpose, Operation.Transpose)]
    public void Native_and_managed_products_match_a_double_precision_reference(Operation opA, Operation opB)
    {
        const int m = 7, n = 5, k = 9;
        var a = opA == Operation.None ? Random(m, k, 1) : Random(k, m, 1);
        var b = opB == Operation.None ? Random(k, n, 2) : Random(n, k, 2);
        var c0 = Random(m, n, 3);
        var expected = Reference(opA, opB, 0.5f, a, b, 2f, c0);

        var managed = c0.Clone();
        Blas.ManagedGemm(opA, opB, 0.5f, a, b, 2f, managed);
        var native = c0.Clone();
        Blas.NativeGemm(opA, opB, m, n, k, 0.5f, a.ColumnMajorValues(), a.RowCount, b.ColumnMajorValues(), b.RowCount, 2f, native.ColumnMajorValues());
        for (var i = 0; i < m; i++)
            for (var j = 0; j < n; j++)
            {
                Assert.True(Math.Abs(expected[i, j] - managed[i, j]) < 1e-4, $"managed C[{i},{j}] = {managed[i, j]} vs {expected[i, j]}");
                Assert.True(Math.Abs(expected[i, j] - native[i, j]) < 1e-4, $"native C[{i},{j}] = {native[i, j]} vs {expected[i, j]}");
            }
    }

    [Theory]
    [InlineData(Operation.None, Operation.None)]
    [InlineData(Operation.Transpose, Operation.None)]
    [InlineData(Operation.None, Operation.Transpose)]
    [InlineData(Operation.Transpose, Operation.Transpose)]
    public void Gemm_on_large_non_square_operands_matches_the_reference(Operation opA, Operation opB)
    {
        // Large enough for OpenBLAS's blocked kernels (not its small-matrix path); exercises Gemm's own lda/ldb.
        const int m = 300, n = 150, k = 200;
        var a = opA == Operation.None ? Random(m, k, 4) : Random(k, m, 4);
        var b = opB == Operation.None ? Random(k, n, 5) : Random(n, k, 5);
        var c = Random(m, n, 6);
        var expected = Reference(opA, opB, 1.5f, a, b, -0.5f, c);
        Blas.Gemm(opA, opB, 1.5f, a, b, -0.5f, c);
        for (var i = 0; i < m; i += 7)
            for (var j = 0; j < n; j += 3)
                Assert.True(Math.Abs(expected[i, j] - c[i, j]) < 1e-3, $"C[{i},{j}] = {c[i, j]} vs {expected[i, j]}");
    }

    [Fact]
    public void Gemm_rejects_shapes_that_do_not_fit()
    {
        var error = Assert.Throws<ArgumentException>(() =>
            Blas.Gemm(Operation.None, Operation.None, 1, Random(3, 4, 1), Random(5, 2, 2), 0, Matrix<float>.Build.Dense(3, 2)));
        Assert.Contains("op(A) [3, 4] · op(B) [5, 2]", error.Message);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    [InlineData(16)]
    [InlineData(37)]
    public void SIMD_kernels_match_their_scalar_definitions_including_the_tail(int length)
    {
        var random = new Random(length);
        // Zeros in x at other positions than in dy, so x > 0 versus x >= 0 makes a difference.
        float[] Values(int zeroEvery, int offset) =>
            Enumerable.Range(0, length).Select(i => i % zeroEvery == offset ? 0f : (float)(random.NextDouble() * 2 - 1)).ToArray();
        var x = Values(5, 0);
        var dy = Values(7, 3);
        var dx = new float[length];
        var y = new float[length];

        ElementWise.RectifierDerivative(x, dy, dx, 0.1f);
        Assert.Equal(x.Select((v, i) => v > 0 ? dy[i] : 0.1f * dy[i]), dx);
        ElementWise.LeakyRectifier(x, y, 0.1f);
        Assert.Equal(x.Select(v => v > 0 ? v : 0.1f * v), y);
        ElementWise.SigmoidDerivative(x, dy, dx);
        Assert.Equal(x.Select((v, i) => dy[i] * v * (1 - v)), dx);
        ElementWise.TanhDerivative(x, dy, dx);
        Assert.Equal(x.Select((v, i) => dy[i] * (1 - v * v)), dx);
        var g = (float[])dy.Clone();
        ElementWise.AddScaledSign(x, 0.5f, g);
        Assert.Equal(dy.Select((v, i) => v + 0.5f * MathF.Sign(x[i])), g);
    }

    [Fact]
    public void The_blocked_weighted_average_step_equals_averaging_first_then_stepping()
    {
        const int length = 3 * Optimizer.BlockLength + 123; // several blocks and a partial one
        var random = new Random(4);
        float[] Values() => Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var (g1, g2, w0) = (Values(), Values(), Values());
        var options = new OptimizerOptions { Momentum = 0.9, L2 = 0.01, L1 = 0.001 };

        var fused = Optimizer.Create(options, length);
        var wFused = (float[])w0.Clone();
        var copy = new float[length];
        for (var step = 0; step < 3; step++)
            Assert.True(fused.StepWeightedAverage(wFused, new[] { g1, g2 }, new[] { 0.25f, 0.75f }, 0.1f, copy));

        // An independent scalar loop of torch.optim.SGD's rule, in double: g += λ₂w + λ₁sign(w); v = μv + g; w -= ηv.
        var wPlain = w0.Select(v => (double)v).ToArray();
        var velocity = new double[length];
        for (var step = 0; step < 3; step++)
            for (var i = 0; i < length; i++)
            {
                var g = 0.25 * g1[i] + 0.75 * g2[i] + 0.01 * wPlain[i] + 0.001 * Math.Sign(wPlain[i]);
                velocity[i] = 0.9 * velocity[i] + g;
                wPlain[i] -= 0.1 * velocity[i];
            }

        Compare.Close(wPlain.Select(v => (float)v).ToArray(), wFused, 1e-5, 1e-6, "fused vs scalar reference");
        Assert.Equal(wFused, copy);
    }

    [Fact]
    public void A_NaN_or_infinite_gradient_is_reported()
    {
        foreach (var kind in Enum.GetValues<OptimizerKind>())
        {
            var optimizer = Optimizer.Create(new OptimizerOptions { Kind = kind }, 3);
            Assert.False(optimizer.Step(new float[3], [0f, float.NaN, 1f], 0.1f));
            Assert.False(optimizer.Step(new float[3], [float.PositiveInfinity, 0f, 1f], 0.1f));
            Assert.True(optimizer.Step(new float[3], [1f, 2f, 3f], 0.1f));
        }
    }
}

/// <summary>The managed fallback trains the same model as the native path (it is what runs without OpenBLAS).</summary>
public class BlasFallbackTests
{
    [Fact]
    public async Task Training_on_the_managed_provider_matches_the_native_provider()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(32, 10), workers: 2, batch: 50, epochs: 1);
        var native = await Cluster.Hosting.SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout();
        options.Compute.BlasProvider = BlasProvider.Managed;
        try
        {
            var managed = await Cluster.Hosting.SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout();
            Assert.False(Blas.IsNative);
            Assert.Contains("MathNet managed provider", Blas.Description);
            Compare.Close(native.FinalWeights.Values, managed.FinalWeights.Values, relative: 1e-3, absolute: 1e-5, "managed vs native weights");
        }
        finally
        {
            Blas.Select(BlasProvider.Auto); // the provider is process-wide: leave it as the other tests expect
        }
        Assert.True(Blas.IsNative);
    }
}
