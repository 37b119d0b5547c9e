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
/// <para>Computed as im2col plus one sgemm per chunk of samples (Chellapilla et al., 2006, "High Performance
/// Convolutional Neural Networks for Document Processing"): the patches of all positions of all samples in the
/// chunk are unfolded into <c>U [P·n, C·k·k]</c> (P = OH·OW positions, n samples), so the whole chunk is one
/// product <c>U · Wᵀ → [P·n, OC]</c> on the BLAS path. Backward is <c>dWᵀ = Uᵀ · dY</c> and
/// <c>dU = dY · W</c>, folded back (col2im) into the input gradient. Chunks hold at most
/// the constructor's unfold budget in floats of patches (<see cref="DefaultUnfoldBudget"/>), so large evaluation batches do not need gigabytes.</para>
/// </remarks>
public sealed class Conv2D : ILayer
{
    /// <summary>Default for the most floats of unfolded patches held at once: 4 Mi floats = 16 MiB.</summary>
    public const int DefaultUnfoldBudget = 1 << 22;

    private readonly Matrix<float> _weightTransposed;         // [K, OC] over Weight.Value (row-major [OC, K])
    private readonly Matrix<float> _weightGradientTransposed; // [K, OC] over Weight.Gradient
    private readonly MatrixBuffer _patches;         // U: [P·n, K]
    private readonly MatrixBuffer _patchGradients;  // dU: [P·n, K]
    private readonly MatrixBuffer _products;        // [P·n, OC]: U·Wᵀ, then dY in the same order
    private readonly MatrixBuffer _output;
    private readonly MatrixBuffer _inputGradient;
    private Matrix<float>? _input;
    private Matrix<float>? _lastPatches; // the forward pass's patches, when the batch was one chunk

    /// <summary>Creates a convolution with zero weights; initialize them through <see cref="Parameters"/>.</summary>
    /// <param name="input">Shape of one input sample <c>[C, H, W]</c>.</param>
    /// <param name="outChannels">Output channels OC (kernels).</param>
    /// <param name="kernelSize">Kernel height and width k.</param>
    /// <param name="stride">Step between positions, ≥ 1.</param>
    /// <param name="padding">Zeros added on every side, ≥ 0.</param>
    /// <param name="unfoldBudget">Most floats of unfolded patches held at once (memory bound of a chunk); at least one sample is unfolded.</param>
    /// <exception cref="ArgumentException">A size is not positive, or the kernel does not fit the padded input.</exception>
    public Conv2D(TensorShape input, int outChannels, int kernelSize, int stride = 1, int padding = 0, int unfoldBudget = DefaultUnfoldBudget)
    {
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
        Parameters = [Weight, Bias];
        _weightTransposed = Matrix<float>.Build.Dense(PatchLength, outChannels, Weight.Value);
        _weightGradientTransposed = Matrix<float>.Build.Dense(PatchLength, outChannels, Weight.Gradient);
        ChunkSamples = Math.Max(1, unfoldBudget / (Output.Positions * PatchLength));
        _patches = MatrixBuffer.Tall(Output.Positions, PatchLength);
        _patchGradients = MatrixBuffer.Tall(Output.Positions, PatchLength);
        _products = MatrixBuffer.Tall(Output.Positions, outChannels);
        _output = new MatrixBuffer(Output.Size);
        _inputGradient = new MatrixBuffer(input.Size);
    }

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

    /// <summary>Samples unfolded at once (so that patches stay within the unfold budget).</summary>
    public int ChunkSamples { get; }

    /// <summary>Kernels <c>[OC, C, k, k]</c>.</summary>
    public LayerParameter Weight { get; }

    /// <summary>Bias <c>[OC]</c>.</summary>
    public LayerParameter Bias { get; }

    /// <inheritdoc />
    public string Description => $"Conv2D({Input.Channels}→{OutChannels}, {KernelSize}x{KernelSize}, stride {Stride}, padding {Padding})";

    /// <inheritdoc />
    public IReadOnlyList<LayerParameter> Parameters { get; }

    /// <inheritdoc />
    public TensorShape OutputShape(TensorShape input) =>
        input == Input ? Output : throw new ArgumentException($"{Description} was built for input {Input} but receives {input}.");

    /// <inheritdoc />
    public Matrix<float> Forward(Matrix<float> input)
    {
        if (input.RowCount != Input.Size)
            throw new ArgumentException($"{Description} expects {Input.Size} input rows ({Input}) but receives {input.RowCount}.");
        _input = input;
        var batch = input.ColumnCount;
        var output = _output.Get(batch);
        var x = input.ColumnMajorValues();
        var y = output.ColumnMajorValues();
        var positions = Output.Positions;
        for (var start = 0; start < batch; start += ChunkSamples)
        {
            var count = Math.Min(ChunkSamples, batch - start);
            var patches = _patches.Get(count);
            Unfold(x, start, count, patches.ColumnMajorValues());
            var products = _products.Get(count);
            Blas.Gemm(Operation.None, Operation.None, 1f, patches, _weightTransposed, 0f, products);
            var p = products.ColumnMajorValues();
            var rows = count * positions;
            for (var sample = 0; sample < count; sample++)
                for (var channel = 0; channel < OutChannels; channel++)
                    TensorPrimitives.Add(p.AsSpan(channel * rows + sample * positions, positions), Bias.Value[channel],
                        y.AsSpan((start + sample) * Output.Size + channel * positions, positions));
            _lastPatches = batch <= ChunkSamples ? patches : null;
        }
        return output;
    }

    /// <inheritdoc />
    public Matrix<float>? Backward(Matrix<float> outputGradient, bool needInputGradient = true)
    {
        var input = _input ?? throw new InvalidOperationException($"{Description}: Backward called before Forward.");
        var batch = input.ColumnCount;
        if (outputGradient.RowCount != Output.Size || outputGradient.ColumnCount != batch)
            throw new ArgumentException($"{Description}: the output gradient is [{outputGradient.RowCount}, {outputGradient.ColumnCount}] but the forward output was [{Output.Size}, {batch}].");
        var x = input.ColumnMajorValues();
        var dy = outputGradient.ColumnMajorValues();
        var positions = Output.Positions;
        var inputGradient = needInputGradient ? _inputGradient.Get(batch) : null;
        var dx = inputGradient?.ColumnMajorValues();
        if (dx is not null) Array.Clear(dx);
        if (!Bias.Frozen) Array.Clear(Bias.Gradient);
        for (var start = 0; start < batch; start += ChunkSamples)
        {
            var count = Math.Min(ChunkSamples, batch - start);
            var rows = count * positions;
            var products = _products.Get(count);
            var p = products.ColumnMajorValues();
            for (var sample = 0; sample < count; sample++)
                for (var channel = 0; channel < OutChannels; channel++)
                    dy.AsSpan((start + sample) * Output.Size + channel * positions, positions)
                        .CopyTo(p.AsSpan(channel * rows + sample * positions, positions));
            if (!Bias.Frozen)
                for (var channel = 0; channel < OutChannels; channel++)
                    Bias.Gradient[channel] += TensorPrimitives.Sum(p.AsSpan(channel * rows, rows));
            if (!Weight.Frozen)
            {
                var patches = _lastPatches is not null && batch <= ChunkSamples ? _lastPatches : _patches.Get(count);
                if (!ReferenceEquals(patches, _lastPatches)) Unfold(x, start, count, patches.ColumnMajorValues());
                Blas.Gemm(Operation.Transpose, Operation.None, 1f, patches, products, start == 0 ? 0f : 1f, _weightGradientTransposed);
            }
            if (dx is not null)
            {
                var patchGradients = _patchGradients.Get(count);
                Blas.Gemm(Operation.None, Operation.Transpose, 1f, products, _weightTransposed, 0f, patchGradients);
                Fold(patchGradients.ColumnMajorValues(), start, count, dx);
            }
        }
        return inputGradient;
    }

    /// <summary>
    /// im2col: writes the patches of samples <c>start .. start+count</c> into <paramref name="patches"/>, column-major
    /// <c>[P·count, C·k·k]</c>: row <c>sample·P + oh·OW + ow</c>, column <c>(c·k + i)·k + j</c> holds
    /// <c>x[sample, c, oh·stride − padding + i, ow·stride − padding + j]</c>, or 0 in the padding.
    /// </summary>
    private void Unfold(float[] x, int start, int count, float[] patches)
    {
        var (channels, height, width) = (Input.Channels, Input.Height, Input.Width);
        var (outHeight, outWidth) = (Output.Height, Output.Width);
        var rows = count * Output.Positions;
        for (var c = 0; c < channels; c++)
            for (var i = 0; i < KernelSize; i++)
                for (var j = 0; j < KernelSize; j++)
                {
                    var column = patches.AsSpan(((c * KernelSize + i) * KernelSize + j) * rows, rows);
                    for (var sample = 0; sample < count; sample++)
                    {
                        var plane = x.AsSpan((start + sample) * Input.Size + c * height * width, height * width);
                        for (var oh = 0; oh < outHeight; oh++)
                        {
                            var target = column.Slice(sample * Output.Positions + oh * outWidth, outWidth);
                            var ih = oh * Stride - Padding + i;
                            if ((uint)ih >= (uint)height)
                            {
                                target.Clear();
                                continue;
                            }
                            var row = plane.Slice(ih * width, width);
                            var (first, last) = ValidColumns(j, width, outWidth);
                            target[..first].Clear();
                            target[last..].Clear();
                            if (Stride == 1)
                                row.Slice(first - Padding + j, last - first).CopyTo(target[first..last]);
                            else
                                for (var ow = first; ow < last; ow++) target[ow] = row[ow * Stride - Padding + j];
                        }
                    }
                }
    }

    /// <summary>col2im: adds each patch gradient back onto the input positions it was read from (the adjoint of <see cref="Unfold"/>).</summary>
    private void Fold(float[] patchGradients, int start, int count, float[] dx)
    {
        var (channels, height, width) = (Input.Channels, Input.Height, Input.Width);
        var (outHeight, outWidth) = (Output.Height, Output.Width);
        var rows = count * Output.Positions;
        for (var c = 0; c < channels; c++)
            for (var i = 0; i < KernelSize; i++)
                for (var j = 0; j < KernelSize; j++)
                {
                    var column = patchGradients.AsSpan(((c * KernelSize + i) * KernelSize + j) * rows, rows);
                    var (first, last) = ValidColumns(j, width, outWidth);
                    if (first >= last) continue;
                    for (var sample = 0; sample < count; sample++)
                    {
                        var plane = dx.AsSpan((start + sample) * Input.Size + c * height * width, height * width);
                        for (var oh = 0; oh < outHeight; oh++)
                        {
                            var ih = oh * Stride - Padding + i;
                            if ((uint)ih >= (uint)height) continue;
                            var source = column.Slice(sample * Output.Positions + oh * outWidth, outWidth);
                            var row = plane.Slice(ih * width, width);
                            if (Stride == 1)
                            {
                                var target = row.Slice(first - Padding + j, last - first);
                                TensorPrimitives.Add(target, source[first..last], target);
                            }
                            else
                                for (var ow = first; ow < last; ow++) row[ow * Stride - Padding + j] += source[ow];
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
        return (Math.Min(first, outWidth), Math.Max(Math.Min(first, outWidth), last));
    }
}
