using System.Numerics.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Core.Layers;

/// <summary>
/// Inverted dropout (Srivastava et al., 2014), as PyTorch's <c>torch.nn.Dropout(p)</c>: in training mode each
/// element is zeroed with probability p and the survivors are scaled by <c>1 / (1 − p)</c>, so evaluation mode is
/// the identity. Masks come from a generator seeded at construction, so a run is reproducible.
/// </summary>
/// <remarks>Shapes: input and output <c>[F, batch]</c>. No parameters.</remarks>
public sealed class Dropout : ILayer
{
    private Random _random;
    private MatrixBuffer? _output;
    private MatrixBuffer? _inputGradient;
    private MatrixBuffer? _mask;
    private bool _training = true;
    private bool _forwardTraining;
    private Matrix<float>? _lastMask;

    /// <summary>Creates the layer.</summary>
    /// <param name="rate">Probability p of zeroing an element, in [0, 1).</param>
    /// <param name="seed">Seed of the mask generator; give each replica its own.</param>
    /// <exception cref="ArgumentOutOfRangeException">The rate is outside [0, 1).</exception>
    public Dropout(double rate, int seed)
    {
        if (!(rate >= 0 && rate < 1)) throw new ArgumentOutOfRangeException(nameof(rate), rate, "Dropout rate must be in [0, 1).");
        Rate = rate;
        _random = new Random(seed);
    }

    /// <summary>
    /// Restarts the mask generator from <paramref name="seed"/>. Replicas reseed at every epoch start from (seed, worker,
    /// epoch), so a run resumed from an epoch-boundary checkpoint draws the same masks as an uninterrupted one.
    /// </summary>
    public void Reseed(int seed) => _random = new Random(seed);

    /// <summary>Probability of zeroing an element.</summary>
    public double Rate { get; }

    /// <summary>The mask <c>[F, batch]</c> of the last training-mode forward pass: 0 or <c>1 / (1 − p)</c> per element.</summary>
    public Matrix<float>? LastMask => _lastMask;

    /// <inheritdoc />
    public string Description => $"Dropout({Rate})";

    /// <inheritdoc />
    public IReadOnlyList<LayerParameter> Parameters => [];

    /// <inheritdoc />
    public TensorShape OutputShape(TensorShape input) => input;

    /// <inheritdoc />
    public void SetTraining(bool training) => _training = training;

    /// <inheritdoc />
    public Matrix<float> Forward(Matrix<float> input)
    {
        _forwardTraining = _training && Rate > 0;
        if (!_forwardTraining) return input;
        var mask = MatrixBuffer.Like(ref _mask, input);
        var m = mask.ColumnMajorValues();
        var keep = (float)(1 / (1 - Rate));
        var rate = (float)Rate;
        for (var i = 0; i < m.Length; i++) m[i] = _random.NextSingle() < rate ? 0f : keep;
        _lastMask = mask;
        return Apply(input, mask, ref _output);
    }

    /// <summary>Forward in training mode with a given mask (0 or <c>1 / (1 − p)</c> per element), for comparisons with other implementations.</summary>
    public Matrix<float> Forward(Matrix<float> input, Matrix<float> mask)
    {
        _forwardTraining = true;
        _lastMask = mask;
        return Apply(input, mask, ref _output);
    }

    /// <inheritdoc />
    public Matrix<float>? Backward(Matrix<float> outputGradient, bool needInputGradient = true)
    {
        if (!needInputGradient) return null;
        if (!_forwardTraining) return outputGradient;
        return Apply(outputGradient, _lastMask!, ref _inputGradient);
    }

    private static Matrix<float> Apply(Matrix<float> values, Matrix<float> mask, ref MatrixBuffer? target)
    {
        if (values.RowCount != mask.RowCount || values.ColumnCount != mask.ColumnCount)
            throw new ArgumentException($"Dropout: values [{values.RowCount}, {values.ColumnCount}] and mask [{mask.RowCount}, {mask.ColumnCount}] differ.");
        var result = MatrixBuffer.Like(ref target, values);
        TensorPrimitives.Multiply(values.ColumnMajorValues(), mask.ColumnMajorValues(), result.ColumnMajorValues());
        return result;
    }
}
