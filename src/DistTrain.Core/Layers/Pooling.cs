using SimdVector = System.Numerics.Vector;
using SimdFloats = System.Numerics.Vector<float>;
using System.Numerics.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Core.Layers;

/// <summary>
/// Base of 2-D pooling over each channel with a square window, no padding and floor rounding, as PyTorch's
/// <c>MaxPool2d</c> / <c>AvgPool2d</c> with their defaults: output <c>[C, OH, OW]</c> with
/// <c>OH = ⌊(H − k) / stride⌋ + 1</c>. No parameters.
/// </summary>
public abstract class Pooling2D : ILayer
{
    private readonly MatrixBuffer _output;
    private readonly MatrixBuffer _inputGradient;
    private Matrix<float>? _input;

    /// <summary>Creates the pooling layer.</summary>
    /// <param name="input">Shape of one input sample <c>[C, H, W]</c>.</param>
    /// <param name="kernelSize">Window height and width k.</param>
    /// <param name="stride">Step between windows; PyTorch's default is the kernel size.</param>
    /// <exception cref="ArgumentException">A size is not positive or the window does not fit the input; the message names
    /// the layer type, the window, the feature maps' size and the largest window that fits.</exception>
    protected Pooling2D(TensorShape input, int kernelSize, int stride)
    {
        if (kernelSize <= 0 || stride <= 0)
            throw new ArgumentException($"Pooling needs a positive kernel size ({kernelSize}) and stride ({stride}).");
        if (input.Height < kernelSize || input.Width < kernelSize)
            throw new ArgumentException($"{GetType().Name}: a {kernelSize}x{kernelSize} window does not fit the input {input}, whose feature maps are " +
                $"{input.Height}x{input.Width}. Use a KernelSize of at most {Math.Min(input.Height, input.Width)}, remove the layer, or let the layers " +
                "before it shrink the maps less (a smaller Stride or KernelSize, or more Padding).");
        Input = input;
        KernelSize = kernelSize;
        Stride = stride;
        Output = new TensorShape(input.Channels, (input.Height - kernelSize) / stride + 1, (input.Width - kernelSize) / stride + 1);
        _output = new MatrixBuffer(Output.Size);
        _inputGradient = new MatrixBuffer(input.Size);
    }

    /// <summary>Shape of one input sample.</summary>
    public TensorShape Input { get; }

    /// <summary>Shape of one output sample.</summary>
    public TensorShape Output { get; }

    /// <summary>Window height and width.</summary>
    public int KernelSize { get; }

    /// <summary>Step between windows.</summary>
    public int Stride { get; }

    /// <inheritdoc />
    public abstract string Description { get; }

    /// <inheritdoc />
    public IReadOnlyList<LayerParameter> Parameters => [];

    /// <inheritdoc />
    public TensorShape OutputShape(TensorShape input) =>
        LayerChecks.Fitting(this, Input, input, Output);

    /// <inheritdoc />
    public virtual long ForwardBytesPerSample(TensorShape input) => sizeof(float) * (long)Output.Size;

    /// <inheritdoc />
    public Matrix<float> Forward(Matrix<float> input)
    {
        LayerChecks.Input(this, Input, input);
        _input = input;
        var output = _output.Get(input.ColumnCount);
        Pool(input.ColumnMajorValues(), output.ColumnMajorValues(), input.ColumnCount);
        return output;
    }

    /// <inheritdoc />
    public Matrix<float>? Backward(Matrix<float> outputGradient, bool needInputGradient = true)
    {
        var input = _input ?? throw new InvalidOperationException($"{Description}: Backward called before Forward.");
        LayerChecks.OutputGradient(this, Output.Size, input.ColumnCount, outputGradient);
        if (!needInputGradient) return null;
        var inputGradient = _inputGradient.Get(input.ColumnCount);
        var dx = inputGradient.ColumnMajorValues();
        Array.Clear(dx);
        Unpool(outputGradient.ColumnMajorValues(), dx, input.ColumnCount);
        return inputGradient;
    }

    /// <summary>Pools <paramref name="batch"/> samples of <paramref name="x"/> into <paramref name="y"/>.</summary>
    protected abstract void Pool(float[] x, float[] y, int batch);

    /// <summary>Adds the input gradient of <paramref name="batch"/> samples into the zeroed <paramref name="dx"/>.</summary>
    protected abstract void Unpool(float[] dy, float[] dx, int batch);
}

/// <summary>
/// Max pooling (PyTorch's <c>torch.nn.MaxPool2d(kernel_size, stride)</c>): each output is the largest input of its
/// window; backward routes the gradient to that input (the first one on ties, as PyTorch's CPU kernel).
/// </summary>
public sealed class MaxPool2D : Pooling2D
{
    private int[] _argmax = [];
    private float[] _pairMaxima = [];
    private int[] _bottomWins = [];  // per input column of a row pair: -1 where the lower row is larger, else 0

    /// <inheritdoc cref="Pooling2D(TensorShape, int, int)" />
    public MaxPool2D(TensorShape input, int kernelSize, int stride) : base(input, kernelSize, stride) { }

    /// <inheritdoc />
    public override string Description => $"MaxPool2D({KernelSize}x{KernelSize}, stride {Stride})";

    /// <inheritdoc />
    /// <remarks>The output and the index of each output's winning input (an int per output).</remarks>
    public override long ForwardBytesPerSample(TensorShape input) => (sizeof(float) + sizeof(int)) * (long)Output.Size;

    /// <inheritdoc />
    protected override void Pool(float[] x, float[] y, int batch)
    {
        if (KernelSize == 2 && Stride == 2)
        {
            PoolTwoByTwo(x, y, batch);
            return;
        }
        if (_argmax.Length < y.Length) _argmax = new int[y.Length];
        var (width, planes) = (Input.Width, batch * Input.Channels);
        var (outHeight, outWidth, k, stride) = (Output.Height, Output.Width, KernelSize, Stride);
        for (var plane = 0; plane < planes; plane++)
        {
            var planeStart = plane * Input.Positions; // samples are [C, H, W] back to back, so planes are too
            var outStart = plane * Output.Positions;
            for (var oh = 0; oh < outHeight; oh++)
            {
                var outputs = y.AsSpan(outStart + oh * outWidth, outWidth);
                var winners = _argmax.AsSpan(outStart + oh * outWidth, outWidth);
                var top = planeStart + oh * stride * width;
                for (var ow = 0; ow < outWidth; ow++)
                {
                    var corner = top + ow * stride;
                    var best = x[corner];
                    var bestIndex = corner;
                    for (var i = 0; i < k; i++)
                    {
                        var rowStart = corner + i * width;
                        for (var index = rowStart; index < rowStart + k; index++)
                        {
                            var v = x[index];
                            // NaN wins and stays, as in PyTorch's max pooling.
                            if (v > best || (float.IsNaN(v) && !float.IsNaN(best))) { best = v; bestIndex = index; }
                        }
                    }
                    outputs[ow] = best;
                    winners[ow] = bestIndex;
                }
            }
        }
    }

    /// <inheritdoc />
    protected override void Unpool(float[] dy, float[] dx, int batch)
    {
        var count = batch * Output.Size;
        for (var o = 0; o < count; o++) dx[_argmax[o]] += dy[o];
    }

    /// <summary>
    /// The common 2x2, stride 2 window, without data-dependent branches: the larger of each two rows (SIMD), then of
    /// each two neighbours, recording which of the four won. Branchy comparisons on unordered activations mispredict
    /// about half the time, which made this layer a tenth of a CNN step. NaN propagates as in PyTorch, and the gradient
    /// goes to the first maximum in row order, as PyTorch's.
    /// </summary>
    private void PoolTwoByTwo(float[] x, float[] y, int batch)
    {
        var (width, planes) = (Input.Width, batch * Input.Channels);
        var (outHeight, outWidth) = (Output.Height, Output.Width);
        if (_argmax.Length < y.Length) _argmax = new int[y.Length];
        if (_pairMaxima.Length < 2 * outWidth) (_pairMaxima, _bottomWins) = (new float[2 * outWidth], new int[2 * outWidth]);
        var pair = _pairMaxima.AsSpan(0, 2 * outWidth);
        var bottomWins = _bottomWins.AsSpan(0, 2 * outWidth);
        for (var plane = 0; plane < planes; plane++)
        {
            var planeStart = plane * Input.Positions;
            for (var oh = 0; oh < outHeight; oh++)
            {
                var top = planeStart + 2 * oh * width;
                var upper = x.AsSpan(top, 2 * outWidth);
                var lower = x.AsSpan(top + width, 2 * outWidth);
                TensorPrimitives.Max(upper, lower, pair);
                var column = 0;
                for (; column <= pair.Length - SimdFloats.Count; column += SimdFloats.Count)
                    SimdVector.GreaterThan(new SimdFloats(lower[column..]), new SimdFloats(upper[column..])).CopyTo(bottomWins[column..]);
                for (; column < pair.Length; column++)
                    bottomWins[column] = lower[column] > upper[column] ? -1 : 0;
                var o = plane * Output.Positions + oh * outWidth;
                for (var ow = 0; ow < outWidth; ow++, o++)
                {
                    var (left, rightMax) = (pair[2 * ow], pair[2 * ow + 1]);
                    var right = rightMax > left ? 1 : 0;
                    y[o] = MathF.Max(left, rightMax);
                    var offset = right + (bottomWins[2 * ow + right] & width);
                    // Equal columns whose maxima sit bottom-left and top-right: the top-right comes first in row order.
                    if (rightMax == left && bottomWins[2 * ow] != 0 && bottomWins[2 * ow + 1] == 0) offset = 1;
                    _argmax[o] = top + 2 * ow + offset;
                }
            }
        }
    }
}

/// <summary>
/// Average pooling (PyTorch's <c>torch.nn.AvgPool2d(kernel_size, stride)</c>, no padding): each output is the mean
/// of its <c>k·k</c> window; backward spreads <c>dy / k²</c> over the window.
/// </summary>
public sealed class AvgPool2D : Pooling2D
{
    /// <inheritdoc cref="Pooling2D(TensorShape, int, int)" />
    public AvgPool2D(TensorShape input, int kernelSize, int stride) : base(input, kernelSize, stride) { }

    /// <inheritdoc />
    public override string Description => $"AvgPool2D({KernelSize}x{KernelSize}, stride {Stride})";

    /// <inheritdoc />
    protected override void Pool(float[] x, float[] y, int batch) => Visit(x, y, batch, backward: false);

    /// <inheritdoc />
    protected override void Unpool(float[] dy, float[] dx, int batch) => Visit(dx, dy, batch, backward: true);

    /// <summary>
    /// Forward: <c>outputs[o] = mean(window)</c>; backward: adds <c>outputs[o] / k²</c> to each input of the window.
    /// </summary>
    private void Visit(float[] inputs, float[] outputs, int batch, bool backward)
    {
        var scale = 1f / (KernelSize * KernelSize);
        for (var sample = 0; sample < batch; sample++)
            for (var c = 0; c < Input.Channels; c++)
            {
                var planeStart = sample * Input.Size + c * Input.Positions;
                var outStart = sample * Output.Size + c * Output.Positions;
                for (var oh = 0; oh < Output.Height; oh++)
                    for (var ow = 0; ow < Output.Width; ow++)
                    {
                        var corner = planeStart + oh * Stride * Input.Width + ow * Stride;
                        var o = outStart + oh * Output.Width + ow;
                        var share = backward ? outputs[o] * scale : 0f;
                        var sum = 0f;
                        for (var i = 0; i < KernelSize; i++)
                            for (var j = 0; j < KernelSize; j++)
                            {
                                var index = corner + i * Input.Width + j;
                                if (backward) inputs[index] += share;
                                else sum += inputs[index];
                            }
                        if (!backward) outputs[o] = sum * scale;
                    }
            }
    }
}

/// <summary>
/// Flattens <c>[C, H, W]</c> to <c>[C·H·W]</c>, as PyTorch's <c>torch.nn.Flatten</c>. Each sample is already stored
/// channel-major in one column (see <see cref="TensorShape"/>), so forward and backward pass their matrix through.
/// </summary>
public sealed class Flatten : ILayer
{
    /// <inheritdoc />
    public string Description => "Flatten";

    /// <inheritdoc />
    public IReadOnlyList<LayerParameter> Parameters => [];

    /// <inheritdoc />
    public TensorShape OutputShape(TensorShape input) => TensorShape.Flat(input.Size);

    /// <inheritdoc />
    /// <remarks>Nothing: the output is the input, viewed flat.</remarks>
    public long ForwardBytesPerSample(TensorShape input) => 0;

    /// <inheritdoc />
    public Matrix<float> Forward(Matrix<float> input) => input;

    /// <inheritdoc />
    public Matrix<float>? Backward(Matrix<float> outputGradient, bool needInputGradient = true) =>
        needInputGradient ? outputGradient : null;
}
