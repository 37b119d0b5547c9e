using DistTrain.Core.Layers;
using DistTrain.Core.LinearAlgebra;
using MathNet.Numerics.LinearAlgebra;
using static DistTrain.Tests.GradientCheckTests;

namespace DistTrain.Tests;

/// <summary>
/// The oneDNN convolution backend against DistTrain's im2col backend on random inputs (forward, input gradient, weight
/// and bias gradients) over strides, paddings, odd sizes, bias on and off, and batch sizes that are not multiples of
/// oneDNN's 8- or 16-wide blocks; both oneDNN layouts; the fallbacks; no allocation per step. Not timed.
/// </summary>
public class OneDnnConvolutionTests
{
    private const double Relative = 1e-4, Absolute = 2e-5;

    /// <summary>
    /// Close within float rounding of sums: the two backends add up to thousands of terms (a weight gradient sums over
    /// batch × positions) in different orders, so an element that cancels to near zero is off by a few 1e-5 of the
    /// tensor's largest element, not of itself.
    /// </summary>
    private static void Close(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        var largest = expected.Length == 0 ? 0f : System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(expected);
        Compare.Close(expected, actual, Relative, Absolute + 1e-5 * Math.Abs(largest), what);
    }

    [Fact]
    public void OneDnn_loads_where_the_suite_runs_so_the_other_convolution_tests_exercise_it()
    {
        // tests/run.sh installs libdnnl2; without it every Auto layer would silently test im2col only.
        Assert.True(ConvolutionKernels.IsOneDnnAvailable, ConvolutionKernels.OneDnnFailure);
        Assert.Equal(ConvolutionBackend.OneDnn, new Conv2D(new TensorShape(1, 4, 4), 2, 3).Backend);
        Assert.StartsWith("Convolutions: oneDNN 2.", ConvolutionKernels.Description);
    }

    // channels, height, width, out channels, kernel, stride, padding, bias, batch
    public static TheoryData<int, int, int, int, int, int, int, bool, int> Shapes => new()
    {
        { 1, 28, 28, 32, 5, 1, 2, true, 3 },    // the CNN's first layer (one input channel)
        { 32, 14, 14, 64, 5, 1, 2, true, 17 },  // its second, batch not a multiple of 8 or 16
        { 3, 9, 7, 5, 3, 2, 1, true, 1 },        // stride 2, odd sizes, batch 1
        { 4, 8, 8, 6, 3, 2, 0, false, 5 },       // stride 2, padding 0, no bias
        { 2, 5, 6, 3, 3, 1, 0, true, 2 },
        { 5, 7, 7, 3, 3, 1, 1, false, 9 },       // channels not multiples of 8 or 16
        { 16, 6, 6, 16, 1, 1, 0, true, 4 },      // 1x1
        { 3, 10, 11, 4, 4, 2, 2, true, 3 },      // even kernel, stride 2, padding 2, a last row/column skipped
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void OneDnn_matches_im2col(int channels, int height, int width, int outChannels, int kernel, int stride, int padding, bool bias, int batch)
    {
        var input = new TensorShape(channels, height, width);
        foreach (var preferred in new[] { true, false })
        {
            var reference = new Conv2D(input, outChannels, kernel, stride, padding, bias: bias, backend: ConvolutionBackend.Im2Col);
            var oneDnn = new Conv2D(input, outChannels, kernel, stride, padding, bias: bias, backend: ConvolutionBackend.OneDnn)
                { PreferredLayouts = preferred };
            var what = $"{oneDnn.Description}, batch {batch}, {(preferred ? "preferred" : "plain")} layouts";
            CompareStep(reference, oneDnn, batch, seed: 1, what);
            // A second step with other weights and data: reused primitives and buffers see the new values.
            CompareStep(reference, oneDnn, batch, seed: 2, what + ", second step");
        }
    }

    [Fact]
    public void OneDnn_handles_alternating_batch_sizes_and_more_sizes_than_it_caches()
    {
        var input = new TensorShape(3, 8, 8);
        var reference = new Conv2D(input, 8, 3, 1, 1, backend: ConvolutionBackend.Im2Col);
        var oneDnn = new Conv2D(input, 8, 3, 1, 1, backend: ConvolutionBackend.OneDnn);
        var seed = 10;
        foreach (var batch in new[] { 16, 5, 16, 5, 1, 2, 3, 7, 16, 5 }) // six sizes: more than MatrixBuffer.Capacity
            CompareStep(reference, oneDnn, batch, seed++, $"batch {batch}");
    }

    [Fact]
    public void OneDnn_skips_the_input_gradient_of_a_first_layer_and_honours_frozen_tensors()
    {
        var input = new TensorShape(2, 6, 6);
        var reference = new Conv2D(input, 4, 3, 1, 1, backend: ConvolutionBackend.Im2Col);
        var oneDnn = new Conv2D(input, 4, 3, 1, 1, backend: ConvolutionBackend.OneDnn);
        Randomize(reference, oneDnn, 3, out var x, out var dy, batch: 5);
        reference.Forward(x);
        oneDnn.Forward(x);
        Assert.Null(reference.Backward(dy, needInputGradient: false));
        Assert.Null(oneDnn.Backward(dy, needInputGradient: false));
        CompareGradients(reference, oneDnn, "first layer");

        // A frozen kernel with a trainable bias (oneDNN computes no weight gradient then; the bias is summed directly).
        foreach (var layer in new[] { reference, oneDnn }) layer.Weight.Frozen = true;
        Array.Fill(oneDnn.Weight.Gradient, 7f);
        reference.Forward(x);
        oneDnn.Forward(x);
        Close(reference.Backward(dy)!.ColumnMajorValues(), oneDnn.Backward(dy)!.ColumnMajorValues(), "frozen kernel: dx");
        Close(reference.Bias.Gradient, oneDnn.Bias.Gradient, "frozen kernel: dbias");
        Assert.All(oneDnn.Weight.Gradient, g => Assert.Equal(7f, g)); // not written

        // A frozen bias with a trainable kernel: the bias gradient is left alone, the kernel's is computed.
        foreach (var layer in new[] { reference, oneDnn }) (layer.Weight.Frozen, layer.Bias.Frozen) = (false, true);
        Array.Fill(oneDnn.Bias.Gradient, 7f);
        reference.Forward(x);
        oneDnn.Forward(x);
        reference.Backward(dy);
        oneDnn.Backward(dy);
        Close(reference.Weight.Gradient, oneDnn.Weight.Gradient, "frozen bias: dweight");
        Assert.All(oneDnn.Bias.Gradient, g => Assert.Equal(7f, g));
    }

    [Theory]
    [InlineData(1, 0)]
    [InlineData(1, 1)]
    [InlineData(2, 1)]
    [InlineData(2, 0)]
    public void OneDnn_matches_finite_differences(int stride, int padding)
    {
        var input = new TensorShape(2, 5, 6);
        CheckLayer(new Conv2D(input, 3, 3, stride, padding, backend: ConvolutionBackend.OneDnn), input.Size, 3, awayFromZero: false);
        CheckLayer(new Conv2D(input, 3, 3, stride, padding, backend: ConvolutionBackend.OneDnn) { PreferredLayouts = false }, input.Size, 3, awayFromZero: false);
    }

    [Fact]
    public void Without_oneDNN_Auto_resolves_to_im2col_and_an_explicit_request_says_what_to_install()
    {
        Assert.Equal(ConvolutionBackend.Im2Col, ConvolutionKernels.Resolve(ConvolutionBackend.Auto, () => false));
        Assert.Equal(ConvolutionBackend.Im2Col, ConvolutionKernels.Resolve(ConvolutionBackend.Im2Col, () => true));
        Assert.Throws<InvalidOperationException>(() => ConvolutionKernels.Resolve(ConvolutionBackend.OneDnn, () => false));
        var missing = Path.Combine(Path.GetTempPath(), $"disttrain-no-onednn-{Guid.NewGuid():N}", "libdnnl.so.2"); // a folder that does not exist
        Assert.False(OneDnnLibrary.TryLoad(out var failure, [missing]));
        Assert.Contains("libdnnl2", failure);
    }

    [Fact]
    public void Selecting_Im2Col_process_wide_makes_Auto_layers_use_im2col_with_the_same_results()
    {
        var input = new TensorShape(3, 7, 7);
        var oneDnn = new Conv2D(input, 5, 3, 2, 1, backend: ConvolutionBackend.OneDnn);
        try
        {
            ConvolutionKernels.Select(ConvolutionBackend.Im2Col);
            var auto = new Conv2D(input, 5, 3, 2, 1);
            Assert.Equal(ConvolutionBackend.Im2Col, auto.Backend);
            Assert.Contains("Compute:ConvolutionBackend is Im2Col", ConvolutionKernels.Description);
            CompareStep(auto, oneDnn, 6, seed: 4, "Auto under Im2Col");
        }
        finally
        {
            ConvolutionKernels.Select(ConvolutionBackend.Auto); // process-wide: leave it as the other tests expect
        }
    }

    [Fact]
    public void A_primitive_oneDNN_refuses_makes_an_Auto_layer_fall_back_to_im2col()
    {
        var input = new TensorShape(2, 6, 6);
        var reference = new Conv2D(input, 3, 3, 1, 1, backend: ConvolutionBackend.Im2Col);
        var failing = new Conv2D(input, 3, 3, 1, 1) { SimulatedOneDnnFailure = 3 }; // dnnl_unimplemented
        Assert.Equal(ConvolutionBackend.OneDnn, failing.Backend);
        CompareStep(reference, failing, 4, seed: 5, "after the fallback");
        Assert.Equal(ConvolutionBackend.Im2Col, failing.Backend);
        // A refusal at the first backward pass (its primitives are made on first use), after a forward pass in oneDNN:
        // backward continues on im2col, unfolding the patches the oneDNN forward pass did not keep.
        var late = new Conv2D(input, 3, 3, 1, 1);
        Randomize(reference, late, 6, out var x, out var dy, batch: 3);
        Close(reference.Forward(x).ColumnMajorValues(), late.Forward(x).ColumnMajorValues(), "late fallback: y");
        Assert.Equal(ConvolutionBackend.OneDnn, late.Backend);
        late.SimulatedOneDnnFailure = 2; // dnnl_invalid_arguments
        Close(reference.Backward(dy)!.ColumnMajorValues(), late.Backward(dy)!.ColumnMajorValues(), "late fallback: dx");
        CompareGradients(reference, late, "late fallback");
        Assert.Equal(ConvolutionBackend.Im2Col, late.Backend);

        // Asked for explicitly, the failure is an error naming the call and the status.
        var strict = new Conv2D(input, 3, 3, 1, 1, backend: ConvolutionBackend.OneDnn) { SimulatedOneDnnFailure = 3 };
        var error = Assert.Throws<OneDnnException>(() => strict.Forward(Matrix<float>.Build.Dense(input.Size, 2)));
        Assert.Contains("dnnl_unimplemented", error.Message);
        Assert.Contains("dnnl_primitive_desc_create", error.Message);
    }

    [Fact]
    public void OneDnn_calls_use_the_BLAS_threads_per_call_on_the_calling_thread()
    {
        var layer = new Conv2D(new TensorShape(2, 6, 6), 3, 3, backend: ConvolutionBackend.OneDnn);
        var threads = Blas.ThreadsPerCall;
        layer.Forward(Matrix<float>.Build.Dense(layer.Input.Size, 2));
        Assert.Equal(threads, OneDnnLibrary.MaxThreads);
    }

    [Fact]
    public void A_thread_count_change_between_forward_and_backward_remakes_the_primitives_and_keeps_the_gradients_right()
    {
        // A new thread count remakes every primitive, so the plan backward finds never saw a forward pass. Where backward
        // shares forward's reordered x and w (when oneDNN picks the same layouts for both, which depends on the CPU) it
        // must reorder them itself; new buffers start as NaN, so a missed reorder fails here. On this machine's layouts
        // the test also passes without that reorder: it checks the remade primitives, not the sharing.
        var input = new TensorShape(32, 14, 14); // the CNN's second layer, where backward shares forward's blocked x and w
        var reference = new Conv2D(input, 64, 5, 1, 2, backend: ConvolutionBackend.Im2Col);
        var oneDnn = new Conv2D(input, 64, 5, 1, 2, backend: ConvolutionBackend.OneDnn);
        var threads = Blas.ThreadsPerCall;
        try
        {
            foreach (var (first, second) in new[] { (1, 2), (2, 1) })
            {
                Blas.SetThreadsPerCall(first);
                Randomize(reference, oneDnn, seed: 40 + first, out var x, out var dy, batch: 16);
                foreach (var p in oneDnn.Parameters) Array.Fill(p.Gradient, float.NaN);
                Close(reference.Forward(x).ColumnMajorValues(), oneDnn.Forward(x).ColumnMajorValues(), $"{first} thread(s): y");
                Blas.SetThreadsPerCall(second);
                Assert.Equal(second, Blas.ThreadsPerCall);
                Close(reference.Backward(dy)!.ColumnMajorValues(), oneDnn.Backward(dy)!.ColumnMajorValues(), $"{first} -> {second} threads: dx");
                CompareGradients(reference, oneDnn, $"{first} -> {second} threads");
                Assert.Equal(second, OneDnnLibrary.MaxThreads);
            }
        }
        finally
        {
            Blas.SetThreadsPerCall(threads);
        }
    }

    [Fact]
    public void A_oneDNN_step_allocates_nothing_after_warm_up()
    {
        var input = new TensorShape(4, 10, 10);
        var layer = new Conv2D(input, 8, 3, 1, 1, backend: ConvolutionBackend.OneDnn);
        var random = new Random(6);
        var batches = new[] { 16, 5 }.Select(b => (X: RandomMatrix(input.Size, b, random), Dy: RandomMatrix(layer.Output.Size, b, random))).ToArray();
        void Step(int i)
        {
            var (x, dy) = batches[i % 2];
            layer.Forward(x);
            layer.Backward(dy);
        }
        for (var i = 0; i < 60; i++) Step(i);
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 20; i++) Step(i);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    private static void Randomize(Conv2D reference, Conv2D other, int seed, out Matrix<float> x, out Matrix<float> dy, int batch)
    {
        var random = new Random(seed);
        for (var p = 0; p < reference.Parameters.Count; p++)
            for (var i = 0; i < reference.Parameters[p].Value.Length; i++)
                reference.Parameters[p].Value[i] = other.Parameters[p].Value[i] = (float)(random.NextDouble() - 0.5);
        x = RandomMatrix(reference.Input.Size, batch, random);
        dy = RandomMatrix(reference.Output.Size, batch, random);
    }

    private static void CompareStep(Conv2D reference, Conv2D other, int batch, int seed, string what)
    {
        Randomize(reference, other, seed, out var x, out var dy, batch);
        foreach (var p in other.Parameters) Array.Fill(p.Gradient, float.NaN); // gradients are overwritten, never accumulated
        Close(reference.Forward(x).ColumnMajorValues(), other.Forward(x).ColumnMajorValues(), what + ": y");
        Close(reference.Backward(dy)!.ColumnMajorValues(), other.Backward(dy)!.ColumnMajorValues(), what + ": dx");
        CompareGradients(reference, other, what);
    }

    private static void CompareGradients(Conv2D reference, Conv2D other, string what)
    {
        for (var p = 0; p < reference.Parameters.Count; p++)
            Close(reference.Parameters[p].Gradient, other.Parameters[p].Gradient, $"{what}: d{reference.Parameters[p].Name}");
    }
}
