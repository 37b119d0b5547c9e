using System.Numerics.Tensors;
using MathNet.Numerics.LinearAlgebra;
using DistTrain.Core.LinearAlgebra;

namespace DistTrain.Core.Layers;

/// <summary>
/// 2-D convolution (cross-correlation, as PyTorch's <c>torch.nn.Conv2d</c> with dilation 1 and groups 1): one
/// kernel per output channel shared across every position of the input (weight sharing), with stride, zero
/// padding and a bias per output channel.
/// </summary>
/// <remarks>
/// <para>Shapes: input <c>[C·H·W, batch]</c> (each sample <c>[C, H, W]</c>, see <see cref="TensorShape"/>), output
/// <c>[OC·OH·OW, batch]</c> with <c>OH = ⌊(H + 2·padding − k) / stride⌋ + 1</c> (likewise OW). <c>weight</c> is
/// <c>[OC, C, k, k]</c> and <c>bias</c> <c>[OC]</c>, PyTorch's tensors and layout, so fan_in = <c>C·k·k</c> and
/// fan_out = <c>OC·k·k</c> as in <c>torch.nn.init._calculate_fan_in_and_fan_out</c>.</para>
/// <para>Two backends compute it (<see cref="Backend"/>, chosen by the constructor's <c>backend</c> argument, else
/// process-wide by <see cref="ConvolutionKernels.Select"/> from <c>Compute:ConvolutionBackend</c>):</para>
/// <para><b>oneDNN</b> (the default when Debian's <c>libdnnl2</c> loads; <see cref="ConvolutionBackend.OneDnn"/>):
/// oneDNN 2.x's direct convolution primitives through its C API, the library PyTorch's CPU convolutions run in. The
/// activations' memory is NCHW as it stands (a column per sample) and the weights are OIHW, so oneDNN reads and writes
/// them in place or, with its preferred blocked layouts (the default: about 2x faster than plain NCHW here), reorders
/// them into buffers of its own. Primitives and buffers are made per batch size on first use and reused: a steady
/// step allocates nothing. Each call uses <see cref="Blas.ThreadsPerCall"/> OpenMP threads. The weight and bias
/// gradients are overwritten, as on the im2col path; backward data is skipped when the input gradient is not needed.
/// If oneDNN refuses to make a primitive, a layer built with <see cref="ConvolutionBackend.Auto"/> warns on standard
/// error (naming the call and the <c>dnnl_status_t</c>) and continues on im2col.</para>
/// <para><b>im2col</b> (<see cref="ConvolutionBackend.Im2Col"/>, the fallback): computed as im2col plus one sgemm per chunk of samples (Chellapilla et al., 2006, "High Performance
/// Convolutional Neural Networks for Document Processing"): the patches of all positions of the chunk's samples are
/// unfolded into <c>U [P·n, C·k·k]</c> (P = OH·OW positions, n samples), so the chunk is one product
/// <c>U · Wᵀ → [P·n, OC]</c> on the BLAS path. Backward is <c>dWᵀ = Σ Uᵀ · dY</c> and <c>dU = dY · W</c>, folded
/// back (col2im) into the input gradient. A chunk's patches are about <see cref="DefaultChunkFloats"/> floats, so
/// the product reads them from the L2 cache (docs/benchmarks.md has the measurements). Feature maps of at least
/// <see cref="PerSampleMinimumPositions"/> positions use one product per sample instead, written straight into the
/// output. The forward pass keeps the whole batch's patches for backward when they fit in
/// the keep limit (<see cref="DefaultKeepFloats"/>); otherwise (large evaluation batches) it keeps one chunk and backward unfolds again.</para>
/// <para>The CNN's 32→64 5x5 layer on 14x14 maps, batch 64, forward and backward on one core: oneDNN 31-32 ms,
/// im2col 54 ms, PyTorch 1.13 33 ms (docs/benchmarks.md).</para>
/// </remarks>
public sealed unsafe class Conv2D : ILayer
{
    /// <summary>Default floats of patches per chunk: 256 Ki floats = 1 MiB, about one core's L2 cache.</summary>
    public const int DefaultChunkFloats = 1 << 18;

    /// <summary>Default for the most floats of patches kept from forward for backward: 16 Mi floats = 64 MiB.</summary>
    public const int DefaultKeepFloats = 1 << 24;

    private readonly long _keepFloats;

    private float[] _patches = [];         // U of every chunk (when kept) or of one chunk: [P·n, K] per chunk, back to back
    private float[] _patchGradients = [];  // dU of one chunk
    private float[] _products = [];        // [P·n, OC] of one chunk: U·Wᵀ, then dY in the same order
    private readonly MatrixBuffer _output;
    private readonly MatrixBuffer _inputGradient;
    private Matrix<float>? _input;
    private bool _keptAllPatches;
    private readonly ConvolutionBackend _requestedBackend;
    private ConvolutionBackend? _backend;   // resolved on the first forward pass
    private OneDnnConvolution? _oneDnn;
    private readonly float[] _frozenBiasGradient; // oneDNN's bias gradient when the bias is frozen but the weight trains

    /// <summary>Creates a convolution with zero weights; initialize them through <see cref="Parameters"/>.</summary>
    /// <param name="input">Shape of one input sample <c>[C, H, W]</c>.</param>
    /// <param name="outChannels">Output channels OC (kernels).</param>
    /// <param name="kernelSize">Kernel height and width k.</param>
    /// <param name="stride">Step between positions, ≥ 1.</param>
    /// <param name="padding">Zeros added on every side, ≥ 0.</param>
    /// <param name="chunkFloats">im2col: floats of patches per chunk (at least one sample per chunk).</param>
    /// <param name="keepFloats">im2col: most floats of patches kept from forward for backward; beyond that backward unfolds again, chunk by chunk.</param>
    /// <param name="bias">False for no bias (PyTorch's <c>bias=False</c>), the usual choice before a BatchNorm, which
    /// cancels a per-channel bias: its gradient is exactly zero there.</param>
    /// <param name="backend">Which implementation computes the layer; <see cref="ConvolutionBackend.Auto"/> (default)
    /// follows <see cref="ConvolutionKernels.Selected"/>, resolved on the first forward pass (see <see cref="Backend"/>).</param>
    /// <exception cref="ArgumentException">A size is not positive, or the kernel does not fit the padded input.</exception>
    public Conv2D(TensorShape input, int outChannels, int kernelSize, int stride = 1, int padding = 0, int chunkFloats = DefaultChunkFloats,
        bool bias = true, long keepFloats = DefaultKeepFloats, ConvolutionBackend backend = ConvolutionBackend.Auto)
    {
        _keepFloats = keepFloats;
        _requestedBackend = backend;
        if (outChannels <= 0 || kernelSize <= 0 || stride <= 0 || padding < 0 || input.Size <= 0)
            throw new ArgumentException($"Conv2D needs positive channels ({outChannels}), kernel size ({kernelSize}) and stride ({stride}), and padding >= 0 ({padding}).");
        if (input.Height + 2 * padding < kernelSize || input.Width + 2 * padding < kernelSize)
            throw new ArgumentException($"Conv2D: a {kernelSize}x{kernelSize} kernel does not fit the input {input} with padding {padding}.");
        Input = input;
        OutChannels = outChannels;
        KernelSize = kernelSize;
        Stride = stride;
        Padding = padding;
        Output = new TensorShape(outChannels,
            (input.Height + 2 * padding - kernelSize) / stride + 1,
            (input.Width + 2 * padding - kernelSize) / stride + 1);
        PatchLength = input.Channels * kernelSize * kernelSize;
        Weight = new LayerParameter("weight", [outChannels, input.Channels, kernelSize, kernelSize],
            fanIn: PatchLength, fanOut: outChannels * kernelSize * kernelSize);
        Bias = new LayerParameter("bias", [outChannels], fanIn: PatchLength, fanOut: outChannels * kernelSize * kernelSize);
        HasBias = bias;
        Parameters = bias ? [Weight, Bias] : [Weight];
        ChunkSamples = Math.Max(1, chunkFloats / (Output.Positions * PatchLength));
        _output = new MatrixBuffer(Output.Size);
        _inputGradient = new MatrixBuffer(input.Size);
        _frozenBiasGradient = bias ? new float[outChannels] : [];
    }

    /// <summary>
    /// The backend computing this layer: <see cref="ConvolutionBackend.OneDnn"/> or <see cref="ConvolutionBackend.Im2Col"/>
    /// (never Auto). Resolved from the constructor's choice and <see cref="ConvolutionKernels.Selected"/> on the first
    /// forward pass (reading it earlier resolves it then); it becomes Im2Col when oneDNN refuses to create the layer's
    /// primitives under <see cref="ConvolutionBackend.Auto"/> (a warning on standard error names the status).
    /// </summary>
    /// <exception cref="InvalidOperationException">The layer asked for <see cref="ConvolutionBackend.OneDnn"/> and oneDNN does not load.</exception>
    public ConvolutionBackend Backend => _backend ??= ConvolutionKernels.Resolve(_requestedBackend);

    /// <summary>Shape of one input sample.</summary>
    public TensorShape Input { get; }

    /// <summary>Shape of one output sample <c>[OC, OH, OW]</c>.</summary>
    public TensorShape Output { get; }

    /// <summary>Output channels.</summary>
    public int OutChannels { get; }

    /// <summary>Kernel height and width.</summary>
    public int KernelSize { get; }

    /// <summary>Stride.</summary>
    public int Stride { get; }

    /// <summary>Zero padding on every side.</summary>
    public int Padding { get; }

    /// <summary>Elements of one patch: <c>C·k·k</c>.</summary>
    public int PatchLength { get; }

    /// <summary>Samples unfolded and multiplied at once on the im2col path.</summary>
    public int ChunkSamples { get; }

    /// <summary>Kernels <c>[OC, C, k, k]</c>.</summary>
    public LayerParameter Weight { get; }

    /// <summary>Bias <c>[OC]</c>; stays zero and is not a parameter when <see cref="HasBias"/> is false.</summary>
    public LayerParameter Bias { get; }

    /// <summary>True when the layer has a trainable bias.</summary>
    public bool HasBias { get; }

    /// <inheritdoc />
    public string Description => $"Conv2D({Input.Channels}→{OutChannels}, {KernelSize}x{KernelSize}, stride {Stride}, padding {Padding})";

    /// <inheritdoc />
    public IReadOnlyList<LayerParameter> Parameters { get; }

    /// <inheritdoc />
    public TensorShape OutputShape(TensorShape input) =>
        LayerChecks.Fitting(this, Input, input, Output);

    /// <inheritdoc />
    /// <remarks>The output, and oneDNN's copies of the input and output in its blocked layouts. im2col's patches are
    /// not counted: they are kept for at most 64 MiB in all, and unfolded again in chunks beyond that.</remarks>
    public long ForwardBytesPerSample(TensorShape input) => sizeof(float) * (2L * Output.Size + Input.Size);

    private static void Ensure(ref float[] buffer, long length)
    {
        if (buffer.Length < length) buffer = new float[checked((int)length)];
    }

    /// <inheritdoc />
    public Matrix<float> Forward(Matrix<float> input)
    {
        LayerChecks.Input(this, Input, input);
        _input = input;
        var batch = input.ColumnCount;
        var output = _output.Get(batch);
        var x = input.ColumnMajorValues();
        var y = output.ColumnMajorValues();
        if (OneDnnFor(batch, needInputGradient: false, needWeightGradient: false) is { } kernel)
        {
            _keptAllPatches = false; // nothing unfolded: an im2col backward (after a fallback) unfolds again
            fixed (float* px = x, pw = Weight.Value, pb = Bias.Value, py = y)
                kernel.Forward(px, pw, pb, py, batch, Blas.ThreadsPerCall);
            return output;
        }
        var positions = Output.Positions;
        var samplePatches = (long)positions * PatchLength;
        _keptAllPatches = batch * samplePatches <= _keepFloats;
        Ensure(ref _patches, (_keptAllPatches ? batch : Math.Min(batch, ChunkSamples)) * samplePatches);
        Ensure(ref _products, (long)Math.Min(batch, ChunkSamples) * positions * OutChannels);
        for (var start = 0; start < batch; start += ChunkSamples)
        {
            var count = Math.Min(ChunkSamples, batch - start);
            var rows = count * positions;
            var patches = _patches.AsSpan(_keptAllPatches ? (int)(start * samplePatches) : 0, rows * PatchLength);
            Unfold(x, start, count, patches);
            if (PerSampleProducts)
            {
                // Each sample's product lands in its own output column in place: [P, OC] with leading dimension P is
                // the sample's [OC, OH, OW] layout, so nothing is copied afterwards.
                for (var sample = 0; sample < count; sample++)
                {
                    var outputs = y.AsSpan((start + sample) * Output.Size, Output.Size);
                    Blas.Gemm(Operation.None, Operation.None, positions, OutChannels, PatchLength, 1f, patches[(sample * positions)..], rows,
                        Weight.Value, PatchLength, 0f, outputs, positions);
                    if (HasBias)
                        for (var channel = 0; channel < OutChannels; channel++)
                        {
                            var run = outputs.Slice(channel * positions, positions);
                            TensorPrimitives.Add(run, Bias.Value[channel], run);
                        }
                }
                continue;
            }
            Blas.Gemm(Operation.None, Operation.None, rows, OutChannels, PatchLength, 1f, patches, rows,
                Weight.Value, PatchLength, 0f, _products, rows);
            for (var sample = 0; sample < count; sample++)
                for (var channel = 0; channel < OutChannels; channel++)
                    TensorPrimitives.Add(_products.AsSpan(channel * rows + sample * positions, positions), Bias.Value[channel],
                        y.AsSpan((start + sample) * Output.Size + channel * positions, positions));
        }
        return output;
    }

    /// <inheritdoc />
    public Matrix<float>? Backward(Matrix<float> outputGradient, bool needInputGradient = true)
    {
        var input = _input ?? throw new InvalidOperationException($"{Description}: Backward called before Forward.");
        var batch = input.ColumnCount;
        LayerChecks.OutputGradient(this, Output.Size, batch, outputGradient);
        var x = input.ColumnMajorValues();
        var dy = outputGradient.ColumnMajorValues();
        var positions = Output.Positions;
        var samplePatches = (long)positions * PatchLength;
        var inputGradient = needInputGradient ? _inputGradient.Get(batch) : null;
        var dx = inputGradient?.ColumnMajorValues();
        var biasGradient = HasBias && !Bias.Frozen;
        if (OneDnnFor(batch, dx is not null, !Weight.Frozen) is { } kernel)
        {
            BackwardOneDnn(kernel, x, dy, dx, batch, biasGradient); // overwrites dx, dW and db
            return inputGradient;
        }
        if (dx is not null)
        {
            Array.Clear(dx); // col2im accumulates into it
            Ensure(ref _patchGradients, Math.Min(batch, ChunkSamples) * samplePatches);
        }
        if (biasGradient) Array.Clear(Bias.Gradient);
        // Forward may have run in oneDNN before a fallback: then nothing was kept, and chunks are unfolded again here.
        Ensure(ref _patches, Math.Min(batch, ChunkSamples) * samplePatches);
        Ensure(ref _products, (long)Math.Min(batch, ChunkSamples) * positions * OutChannels);
        for (var start = 0; start < batch; start += ChunkSamples)
        {
            var count = Math.Min(ChunkSamples, batch - start);
            var rows = count * positions;
            if (PerSampleProducts)
            {
                BackwardPerSample(x, dy, dx, start, count, biasGradient);
                continue;
            }
            for (var sample = 0; sample < count; sample++)
                for (var channel = 0; channel < OutChannels; channel++)
                    dy.AsSpan((start + sample) * Output.Size + channel * positions, positions)
                        .CopyTo(_products.AsSpan(channel * rows + sample * positions, positions));
            if (biasGradient)
                for (var channel = 0; channel < OutChannels; channel++)
                    Bias.Gradient[channel] += TensorPrimitives.Sum(_products.AsSpan(channel * rows, rows));
            if (!Weight.Frozen)
            {
                var patches = _patches.AsSpan(_keptAllPatches ? (int)(start * samplePatches) : 0, rows * PatchLength);
                if (!_keptAllPatches) Unfold(x, start, count, patches);
                Blas.Gemm(Operation.Transpose, Operation.None, PatchLength, OutChannels, rows, 1f, patches, rows,
                    _products, rows, start == 0 ? 0f : 1f, Weight.Gradient, PatchLength);
            }
            if (dx is not null)
            {
                var patchGradients = _patchGradients.AsSpan(0, rows * PatchLength);
                Blas.Gemm(Operation.None, Operation.Transpose, rows, PatchLength, OutChannels, 1f, _products, rows,
                    Weight.Value, PatchLength, 0f, patchGradients, rows);
                Fold(patchGradients, start, count, dx);
            }
        }
        return inputGradient;
    }

    /// <summary>
    /// The layer's oneDNN primitives for <paramref name="batch"/> samples with the named backward passes ready, or null
    /// on the im2col path. Under <see cref="ConvolutionBackend.Auto"/> a primitive oneDNN cannot create switches the
    /// layer to im2col for good, with one warning.
    /// </summary>
    private OneDnnConvolution? OneDnnFor(int batch, bool needInputGradient, bool needWeightGradient)
    {
        if (Backend != ConvolutionBackend.OneDnn || batch == 0) return null;
        try
        {
            if (SimulatedOneDnnFailure != 0) throw new OneDnnException("dnnl_primitive_desc_create (simulated by a test)", SimulatedOneDnnFailure);
            _oneDnn ??= new OneDnnConvolution(Input, Output, KernelSize, Stride, Padding, HasBias, PreferredLayouts ?? ConvolutionKernels.OneDnnPreferredLayouts);
            _oneDnn.Prepare(batch, needInputGradient, needWeightGradient, Blas.ThreadsPerCall);
            return _oneDnn;
        }
        catch (OneDnnException e) when (_requestedBackend != ConvolutionBackend.OneDnn)
        {
            Console.Error.WriteLine($"warning: {Description}: {e.Message} This layer falls back to im2col + sgemm.");
            _oneDnn?.Dispose();
            _oneDnn = null;
            _backend = ConvolutionBackend.Im2Col;
            return null;
        }
    }

    /// <summary>For tests and benchmarks: oneDNN's preferred (true) or plain (false) layouts for this layer; null follows <see cref="ConvolutionKernels.OneDnnPreferredLayouts"/>.</summary>
    internal bool? PreferredLayouts { get; init; }

    /// <summary>For tests: a <c>dnnl_status_t</c> the layer pretends oneDNN returned when creating its primitives (0: none).</summary>
    internal int SimulatedOneDnnFailure { get; set; }

    /// <summary>Backward in oneDNN: input gradient when wanted, weight and bias gradients unless frozen (overwritten).</summary>
    private void BackwardOneDnn(OneDnnConvolution kernel, float[] x, float[] dy, float[]? dx, int batch, bool biasGradient)
    {
        var biasTarget = biasGradient ? Bias.Gradient : _frozenBiasGradient;
        fixed (float* px = x, pw = Weight.Value, pdy = dy, pdx = dx, pdw = Weight.Gradient, pdb = biasTarget)
            kernel.Backward(px, pw, pdy, pdx, Weight.Frozen ? null : pdw, HasBias ? pdb : null, batch, Blas.ThreadsPerCall);
        if (!Weight.Frozen || !biasGradient) return;
        // A frozen kernel with a trainable bias: the bias gradient is the sum of dy over samples and positions.
        Array.Clear(Bias.Gradient);
        var positions = Output.Positions;
        for (var sample = 0; sample < batch; sample++)
            for (var channel = 0; channel < OutChannels; channel++)
                Bias.Gradient[channel] += TensorPrimitives.Sum(dy.AsSpan(sample * Output.Size + channel * positions, positions));
    }

    /// <summary>Backward of one chunk with one product per sample, reading each sample's output gradient in place.</summary>
    private void BackwardPerSample(float[] x, float[] dy, float[]? dx, int start, int count, bool biasGradient)
    {
        var positions = Output.Positions;
        var rows = count * positions;
        var samplePatches = (long)positions * PatchLength;
        var patches = _patches.AsSpan(_keptAllPatches ? (int)(start * samplePatches) : 0, rows * PatchLength);
        if (!_keptAllPatches && !Weight.Frozen) Unfold(x, start, count, patches);
        var patchGradients = _patchGradients.AsSpan(0, dx is null ? 0 : rows * PatchLength);
        for (var sample = 0; sample < count; sample++)
        {
            var gradients = dy.AsSpan((start + sample) * Output.Size, Output.Size);
            if (biasGradient)
                for (var channel = 0; channel < OutChannels; channel++)
                    Bias.Gradient[channel] += TensorPrimitives.Sum(gradients.Slice(channel * positions, positions));
            if (!Weight.Frozen)
                Blas.Gemm(Operation.Transpose, Operation.None, PatchLength, OutChannels, positions, 1f, patches[(sample * positions)..], rows,
                    gradients, positions, start == 0 && sample == 0 ? 0f : 1f, Weight.Gradient, PatchLength);
            if (dx is not null)
                Blas.Gemm(Operation.None, Operation.Transpose, positions, PatchLength, OutChannels, 1f, gradients, positions,
                    Weight.Value, PatchLength, 0f, patchGradients[(sample * positions)..], rows);
        }
        if (dx is not null) Fold(patchGradients, start, count, dx);
    }

    /// <summary>
    /// True when each sample gets its own product, written straight into the output (large feature maps: at least
    /// <see cref="PerSampleMinimumPositions"/> positions); otherwise one product per chunk is scattered afterwards.
    /// </summary>
    public bool PerSampleProducts => Output.Positions >= PerSampleMinimumPositions;

    /// <summary>Output positions from which one product per sample beats one per chunk plus a scatter (measured, docs/benchmarks.md).</summary>
    public const int PerSampleMinimumPositions = 512;

    /// <summary>
    /// im2col: writes the patches of samples <c>start .. start+count</c> into <paramref name="patches"/>, column-major
    /// <c>[P·count, C·k·k]</c>: row <c>sample·P + oh·OW + ow</c>, column <c>(c·k + i)·k + j</c> holds
    /// <c>x[sample, c, oh·stride − padding + i, ow·stride − padding + j]</c>, or 0 in the padding.
    /// </summary>
    private void Unfold(float[] x, int start, int count, Span<float> patches) => Transfer(x, start, count, patches, fold: false);

    /// <summary>col2im: adds each patch gradient back onto the input position it was read from (the adjoint of <see cref="Unfold"/>).</summary>
    private void Fold(Span<float> patchGradients, int start, int count, float[] dx) => Transfer(dx, start, count, patchGradients, fold: true);

    /// <summary>
    /// The index map shared by <see cref="Unfold"/> (copy input → patches, zeros in the padding) and <see cref="Fold"/>
    /// (add patches → input). Each (channel, i, j, sample, output row) moves one run of output columns; with stride 1
    /// the run is contiguous on both sides.
    /// </summary>
    private unsafe void Transfer(float[] image, int start, int count, Span<float> patches, bool fold)
    {
        var (channels, height, width) = (Input.Channels, Input.Height, Input.Width);
        var (outHeight, outWidth) = (Output.Height, Output.Width);
        var rows = count * Output.Positions;
        if (patches.Length < (long)rows * PatchLength || image.Length < (long)(start + count) * Input.Size)
            throw new ArgumentException($"{Description}: patch or image buffer too small for {count} samples.");
        // Pointer arithmetic below stays inside the two buffers: every index is bounded by the checks above and the
        // valid column range of ValidColumns. This loop moves 700k short runs per batch in a 32→64 5x5 layer,
        // so span slicing per run costs as much as the copy itself.
        fixed (float* imageStart = image, patchStart = patches)
            for (var c = 0; c < channels; c++)
                for (var i = 0; i < KernelSize; i++)
                    for (var j = 0; j < KernelSize; j++)
                    {
                        var column = patchStart + (long)((c * KernelSize + i) * KernelSize + j) * rows;
                        var (first, last) = ValidColumns(j, width, outWidth);
                        var inputColumn = first * Stride - Padding + j;
                        var runLength = last - first;
                        for (var sample = 0; sample < count; sample++)
                        {
                            var plane = imageStart + (long)(start + sample) * Input.Size + c * height * width;
                            var patchRows = column + sample * Output.Positions;
                            for (var oh = 0; oh < outHeight; oh++)
                            {
                                var ih = oh * Stride - Padding + i;
                                var run = patchRows + oh * outWidth;
                                if ((uint)ih >= (uint)height)
                                {
                                    if (!fold) new Span<float>(run, outWidth).Clear();
                                    continue;
                                }
                                var row = plane + ih * width;
                                if (!fold)
                                {
                                    for (var ow = 0; ow < first; ow++) run[ow] = 0f;
                                    for (var ow = last; ow < outWidth; ow++) run[ow] = 0f;
                                }
                                if (runLength <= 0) continue;
                                if (Stride == 1)
                                {
                                    if (fold)
                                    {
                                        var target = new Span<float>(row + inputColumn, runLength);
                                        TensorPrimitives.Add(target, new ReadOnlySpan<float>(run + first, runLength), target);
                                    }
                                    else
                                        Buffer.MemoryCopy(row + inputColumn, run + first, runLength * sizeof(float), runLength * sizeof(float));
                                }
                                else
                                    for (var ow = first; ow < last; ow++)
                                    {
                                        var pixel = row + ow * Stride - Padding + j;
                                        if (fold) *pixel += run[ow];
                                        else run[ow] = *pixel;
                                    }
                            }
                        }
                    }
    }

    /// <summary>The output columns <c>[first, last)</c> whose input column <c>ow·stride − padding + j</c> lies inside the input.</summary>
    private (int First, int Last) ValidColumns(int j, int width, int outWidth)
    {
        var offset = j - Padding;
        var first = offset >= 0 ? 0 : (-offset + Stride - 1) / Stride;
        var last = width - offset <= 0 ? 0 : Math.Min(outWidth, (width - 1 - offset) / Stride + 1);
        first = Math.Min(first, outWidth);
        return (first, Math.Max(first, last));
    }
}
