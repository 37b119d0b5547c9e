using System.Numerics.Tensors;
using DistTrain.Core.Data;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Core.Layers;

/// <summary>
/// Inverted dropout (Srivastava et al., 2014), as PyTorch's <c>torch.nn.Dropout(p)</c>: in training mode each
/// element is zeroed with probability p and the survivors are scaled by <c>1 / (1 − p)</c>, so evaluation mode is
/// the identity.
/// </summary>
/// <remarks>
/// <para>Shapes: input and output <c>[F, batch]</c>, one column per sample. No parameters.</para>
/// <para>Where the masks come from: after <see cref="SetMaskKeys"/> (training does this before every pass, through
/// <see cref="Models.Sequential.SetDropoutKeys"/>), column j's mask is drawn from
/// <see cref="SplitMix64.For"/>(layer seed, epoch, sample index j), so a sample's mask depends only on the run's seed,
/// the layer, the epoch and the sample, not on the worker, the minibatch or what ran before: a run resumed in the middle
/// of an epoch draws the masks the uninterrupted run drew. Without keys (the layer used on its own) the masks come from a
/// generator seeded at construction.</para>
/// </remarks>
public sealed class Dropout : ILayer
{
    /// <summary>Mixed into the run's seed for the dropout layers' streams, so they differ from the augmentation's, which
    /// uses (seed, epoch, sample) directly: the ASCII bytes of "DROPOUT".</summary>
    private const ulong DropoutStream = 0x44524F504F5554UL;

    private Random _random;
    private int[] _keys = [];      // sample index of each column, after SetMaskKeys
    private int _keyCount = -1;    // columns keyed; -1: draw from _random
    private long _keySeed;
    private int _keyEpoch;
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

    /// <summary>Restarts the generator that draws the masks of unkeyed passes (see <see cref="SetMaskKeys"/>) from <paramref name="seed"/>.</summary>
    public void Reseed(int seed) => _random = new Random(seed);

    /// <summary>
    /// The seed of the masks of the dropout layer at <paramref name="layerIndex"/> in the model (its index in
    /// <see cref="Models.Sequential.Layers"/>) in a run seeded with <paramref name="runSeed"/> (Training:Seed): a 64-bit
    /// hash of both, so every layer draws its own masks.
    /// </summary>
    public static long LayerSeed(int runSeed, int layerIndex) =>
        unchecked((long)SplitMix64.Mix(SplitMix64.Mix(unchecked((ulong)runSeed) ^ DropoutStream) ^ (uint)layerIndex));

    /// <summary>
    /// Keys the masks of the following training-mode forward passes: column j of their input holds training sample
    /// <paramref name="sampleIndices"/>[j], whose mask is drawn from <see cref="SplitMix64.For"/>(<paramref name="layerSeed"/>,
    /// <paramref name="epoch"/>, that index). The keys hold until the next call. Allocates only when the batch is larger
    /// than any keyed before.
    /// </summary>
    /// <param name="layerSeed">This layer's seed in the run (<see cref="LayerSeed"/>).</param>
    /// <param name="epoch">The epoch (1-based).</param>
    /// <param name="sampleIndices">One training-split index per column of the next inputs.</param>
    public void SetMaskKeys(long layerSeed, int epoch, ReadOnlySpan<int> sampleIndices)
    {
        if (_keys.Length < sampleIndices.Length) _keys = new int[sampleIndices.Length];
        sampleIndices.CopyTo(_keys);
        _keyCount = sampleIndices.Length;
        _keySeed = layerSeed;
        _keyEpoch = epoch;
    }

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
    /// <exception cref="ArgumentException">In training mode, after <see cref="SetMaskKeys"/> for another number of samples than the input's columns.</exception>
    public Matrix<float> Forward(Matrix<float> input)
    {
        _forwardTraining = _training && Rate > 0;
        if (!_forwardTraining) return input;
        var mask = MatrixBuffer.Like(ref _mask, input);
        var m = mask.ColumnMajorValues();
        var keep = (float)(1 / (1 - Rate));
        if (_keyCount >= 0)
        {
            if (_keyCount != input.ColumnCount)
                throw new ArgumentException($"Dropout: the input has {input.ColumnCount} columns but the masks were keyed for {_keyCount} samples. Call SetMaskKeys with one sample index per column before the pass.", nameof(input));
            // Drop when 32 random bits fall below p·2³² (a drop probability within 2⁻³³ of p); two elements per 64-bit draw.
            var threshold = (uint)Math.Min(uint.MaxValue, Math.Round(Rate * 4294967296.0));
            var rows = input.RowCount;
            for (var j = 0; j < _keyCount; j++)
            {
                var random = SplitMix64.For(_keySeed, _keyEpoch, _keys[j]);
                var column = m.AsSpan(j * rows, rows);
                var i = 0;
                for (; i + 1 < column.Length; i += 2)
                {
                    var bits = random.Next();
                    column[i] = (uint)bits < threshold ? 0f : keep;
                    column[i + 1] = (uint)(bits >> 32) < threshold ? 0f : keep;
                }
                if (i < column.Length) column[i] = (uint)random.Next() < threshold ? 0f : keep;
            }
        }
        else
        {
            var rate = (float)Rate;
            for (var i = 0; i < m.Length; i++) m[i] = _random.NextSingle() < rate ? 0f : keep;
        }
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
