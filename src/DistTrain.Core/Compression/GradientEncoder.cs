using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace DistTrain.Core.Compression;

/// <summary>
/// A worker's gradient encoder: turns a float32 gradient into the wire message of its
/// <see cref="GradientCompressionSettings"/>, and owns the worker's error-feedback residual.
/// </summary>
/// <remarks>
/// <para>Message layout (little-endian): byte 0 the <see cref="GradientCompression"/> value; bytes 1-4 the dense
/// length <c>n</c> as int32; then for <c>None</c> <c>n</c> float32, for <c>Float16</c> and <c>BFloat16</c> <c>n</c>
/// 16-bit values, and for <c>TopK</c> the count <c>k</c> as int32, <c>k</c> int32 indices in ascending order and
/// <c>k</c> float32 values. <see cref="GradientDecoder"/> reads it back.</para>
/// <para>With error feedback, each push encodes <c>a = g + r</c> (the gradient plus the residual) and keeps
/// <c>r = a − decode(encode(a))</c>, so nothing the encoding drops is lost: over any number of pushes, what was sent
/// plus the last residual equals what was computed (Karimireddy et al., ICML 2019, Algorithm 2; for TopK,
/// Stich et al., NeurIPS 2018). TopK picks the <c>k</c> largest magnitudes of <c>a</c> exactly (a selection, not
/// DGC's sampled threshold), ties in index order; a NaN counts as the largest, so a non-finite gradient is always
/// sent and the parameter server reports it. With <see cref="TopKScope.PerTensor"/> the same exact selection runs within
/// each tensor (<c>⌈ratio·length⌉</c> of it, at least 1), and the message holds every tensor's picks in one ascending list:
/// the wire format does not change, only which indices it carries.</para>
/// <para>Not thread-safe: one encoder per worker replica. Encoding allocates nothing.</para>
/// </remarks>
public sealed class GradientEncoder
{
    /// <summary>Bytes before the payload: the format byte and the dense length.</summary>
    public const int HeaderBytes = 5;

    private readonly float[] _residual;
    private readonly float[] _accumulated;
    private readonly float[] _magnitudes;
    private readonly int[] _candidates;          // TopK: indices that may be among the k largest
    private readonly float[] _candidateMagnitudes;
    private readonly float[] _sample;            // TopK: strided sample of the magnitudes, for a lower bound of the k-th
    private const int SampleSize = 4096;
    private readonly float[] _velocity; // momentum correction: u = m·u + g
    private readonly float _momentum;
    private readonly int _topK;
    private readonly (int Start, int Length, int Count)[] _selections; // TopK: each range selected within and its count (one range under Global)

    /// <summary>Creates an encoder for gradients of <paramref name="length"/> elements, with a zero residual; the gradient is
    /// one tensor, so <see cref="TopKScope.PerTensor"/> selects as <see cref="TopKScope.Global"/> does.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The length is not positive, the kind is unknown, the TopK
    /// ratio is not in (0, 1], or a momentum correction is asked for outside TopK with error feedback or outside [0, 1).</exception>
    public GradientEncoder(GradientCompressionSettings settings, int length) : this(settings, [length]) { }

    /// <summary>Creates an encoder for gradients made of tensors of <paramref name="tensorLengths"/> elements laid out back to
    /// back (a model's trainable tensors, <see cref="Tensors.ParameterLayout.TrainableTensorLengths"/>), with a zero residual.
    /// Only <see cref="TopKScope.PerTensor"/> uses the tensor boundaries.</summary>
    /// <exception cref="ArgumentOutOfRangeException">There is no tensor, a length is not positive, the kind or TopK scope is
    /// unknown, the TopK ratio is not in (0, 1], or a momentum correction is asked for outside TopK with error feedback or
    /// outside [0, 1).</exception>
    public GradientEncoder(GradientCompressionSettings settings, ReadOnlySpan<int> tensorLengths)
    {
        ArgumentNullException.ThrowIfNull(settings);
        if (tensorLengths.IsEmpty) throw new ArgumentOutOfRangeException(nameof(tensorLengths), "A gradient has at least one tensor.");
        var total = 0L;
        foreach (var tensorLength in tensorLengths)
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(tensorLength, nameof(tensorLengths));
            total += tensorLength;
        }
        ArgumentOutOfRangeException.ThrowIfGreaterThan(total, int.MaxValue, nameof(tensorLengths));
        var length = (int)total;
        if (!Enum.IsDefined(settings.Kind))
            throw new ArgumentOutOfRangeException(nameof(settings), settings.Kind, "Unknown gradient compression.");
        if (!(settings.Momentum >= 0 && settings.Momentum < 1))
            throw new ArgumentOutOfRangeException(nameof(settings), settings.Momentum, "The momentum correction's coefficient must be in [0, 1).");
        if (settings.Momentum > 0 && !(settings.Kind == GradientCompression.TopK && settings.ErrorFeedback))
            throw new ArgumentOutOfRangeException(nameof(settings), settings.Momentum, "Momentum correction applies to TopK with error feedback only.");
        Settings = settings;
        Length = length;
        var keepsResidual = settings.ErrorFeedback && settings.Kind != GradientCompression.None;
        _residual = keepsResidual ? new float[length] : [];
        _accumulated = keepsResidual || settings.Kind == GradientCompression.TopK ? new float[length] : [];
        _topK = settings.Kind == GradientCompression.TopK ? settings.TopKCount(tensorLengths) : 0;
        _selections = settings.Kind == GradientCompression.TopK ? Selections(settings, tensorLengths, length) : [];
        _magnitudes = settings.Kind == GradientCompression.TopK ? new float[length] : [];
        _candidates = settings.Kind == GradientCompression.TopK ? new int[length] : [];
        _candidateMagnitudes = settings.Kind == GradientCompression.TopK ? new float[length] : [];
        _sample = settings.Kind == GradientCompression.TopK ? new float[Math.Min(length, SampleSize)] : [];
        MessageBytes = EncodedBytes(settings, tensorLengths);
        _momentum = (float)settings.Momentum;
        _velocity = _momentum > 0 ? new float[length] : [];
    }

    /// <summary>The settings this encoder was made with.</summary>
    public GradientCompressionSettings Settings { get; }

    /// <summary>Elements per gradient.</summary>
    public int Length { get; }

    /// <summary>Bytes of every message this encoder writes (fixed for a kind and length).</summary>
    public int MessageBytes { get; }

    /// <summary>Elements TopK sends per push (0 for the dense kinds).</summary>
    public int TopKCount => _topK;

    /// <summary>The error-feedback residual, <c>[Length]</c>; empty when the settings keep none. Training checkpoints do
    /// not store it (nor the momentum correction's velocity): a resumed worker starts from zero.</summary>
    public ReadOnlySpan<float> Residual => _residual;

    /// <summary>Replaces the residual (for callers that keep it themselves; the velocity is not restored).</summary>
    /// <exception cref="ArgumentException">The length differs from the encoder's residual.</exception>
    public void RestoreResidual(ReadOnlySpan<float> residual)
    {
        if (residual.Length != _residual.Length)
            throw new ArgumentException($"The residual has {residual.Length} elements; this encoder keeps {_residual.Length}.", nameof(residual));
        residual.CopyTo(_residual);
    }

    /// <summary>Bytes of a message for a gradient of one tensor of <paramref name="length"/> elements with
    /// <paramref name="settings"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The length is not positive or the ratio is out of range.</exception>
    public static int EncodedBytes(GradientCompressionSettings settings, int length) => EncodedBytes(settings, [length]);

    /// <summary>Bytes of a message for a gradient made of tensors of <paramref name="tensorLengths"/> elements with
    /// <paramref name="settings"/>: for TopK, 9 + 8·<see cref="GradientCompressionSettings.TopKCount(ReadOnlySpan{int})"/>, the
    /// count of the settings' <see cref="TopKScope"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">For TopK: there is no tensor, a length is not positive, or the ratio or
    /// scope is out of range. For any kind: the kind is unknown.</exception>
    public static int EncodedBytes(GradientCompressionSettings settings, ReadOnlySpan<int> tensorLengths)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var length = 0L;
        foreach (var tensorLength in tensorLengths) length += tensorLength;
        return settings.Kind switch
        {
            GradientCompression.None => checked(HeaderBytes + 4 * (int)length),
            GradientCompression.Float16 or GradientCompression.BFloat16 => checked(HeaderBytes + 2 * (int)length),
            GradientCompression.TopK => HeaderBytes + 4 + 8 * settings.TopKCount(tensorLengths),
            _ => throw new ArgumentOutOfRangeException(nameof(settings), settings.Kind, "Unknown gradient compression."),
        };
    }

    /// <summary>The ranges TopK selects within, with the count each sends: the whole gradient under Global, each tensor
    /// under PerTensor (their counts sum to <see cref="GradientCompressionSettings.TopKCount(ReadOnlySpan{int})"/>).</summary>
    private static (int Start, int Length, int Count)[] Selections(GradientCompressionSettings settings, ReadOnlySpan<int> tensorLengths, int length)
    {
        if (settings.Scope == TopKScope.Global) return [(0, length, settings.TopKCount(length))];
        var selections = new (int Start, int Length, int Count)[tensorLengths.Length];
        for (int t = 0, start = 0; t < tensorLengths.Length; start += tensorLengths[t], t++)
            selections[t] = (start, tensorLengths[t], settings.TopKCount(tensorLengths[t]));
        return selections;
    }

    /// <summary>Encodes one gradient (plus the residual, with error feedback) and updates the residual.</summary>
    /// <param name="gradient">The gradient, <c>[Length]</c>.</param>
    /// <param name="destination">At least <see cref="MessageBytes"/> bytes.</param>
    /// <returns>Bytes written: <see cref="MessageBytes"/>.</returns>
    /// <exception cref="ArgumentException">The gradient's length differs, or the destination is too small.</exception>
    /// <exception cref="GradientOverflowException">Float16: a finite element (plus its residual) is at least
    /// <see cref="Float16OverflowThreshold"/> in magnitude and would become infinity; nothing is sent, and the encoder is not
    /// to be used again.</exception>
    public int Encode(ReadOnlySpan<float> gradient, Span<byte> destination)
    {
        if (gradient.Length != Length)
            throw new ArgumentException($"The gradient has {gradient.Length} elements; this encoder was made for {Length}.", nameof(gradient));
        if (destination.Length < MessageBytes)
            throw new ArgumentException($"The destination holds {destination.Length} bytes; the message needs {MessageBytes}.", nameof(destination));
        destination[0] = (byte)Settings.Kind;
        BinaryPrimitives.WriteInt32LittleEndian(destination[1..], Length);
        var payload = destination[HeaderBytes..MessageBytes];
        var input = gradient;
        if (_velocity.Length > 0)
        {
            TensorPrimitives.MultiplyAdd(_velocity, _momentum, gradient, _velocity);
            TensorPrimitives.Add(_velocity, _residual, _accumulated);
            input = _accumulated;
        }
        else if (_residual.Length > 0)
        {
            TensorPrimitives.Add(gradient, _residual, _accumulated);
            input = _accumulated;
        }
        switch (Settings.Kind)
        {
            case GradientCompression.None:
                MemoryMarshal.AsBytes(gradient).CopyTo(payload);
                break;
            case GradientCompression.Float16:
                RefuseFloat16Overflow(input);
                var halves = MemoryMarshal.Cast<byte, Half>(payload);
                HalfPrecision.ToFloat16(input, halves);
                if (_residual.Length > 0) KeepRoundingError(halves);
                break;
            case GradientCompression.BFloat16:
                var bfloats = MemoryMarshal.Cast<byte, ushort>(payload);
                HalfPrecision.ToBFloat16(input, bfloats);
                if (_residual.Length > 0) KeepRoundingError(bfloats);
                break;
            case GradientCompression.TopK:
                if (_residual.Length == 0) gradient.CopyTo(_accumulated);
                EncodeTopK(payload);
                break;
        }
        return MessageBytes;
    }

    /// <summary>Smallest float32 magnitude binary16 rounds to infinity: halfway between its largest finite value, 65,504, and 2^16.</summary>
    public const float Float16OverflowThreshold = 65_520f;

    /// <summary>Throws <see cref="GradientOverflowException"/> for the first finite element that binary16 would turn into
    /// infinity. A NaN or infinite element passes: it is the model's own, and the parameter server reports it with the tensor.</summary>
    private void RefuseFloat16Overflow(ReadOnlySpan<float> input)
    {
        if (Math.Abs(TensorPrimitives.MaxMagnitude(input)) < Float16OverflowThreshold) return; // false for NaN: then look
        for (var i = 0; i < input.Length; i++)
            if (float.IsFinite(input[i]) && Math.Abs(input[i]) >= Float16OverflowThreshold)
                throw new GradientOverflowException(GradientOverflowException.Describe(
                    string.Create(System.Globalization.CultureInfo.InvariantCulture, $"element {i:N0}"), input[i], _residual.Length > 0), i, input[i]);
    }

    private void KeepRoundingError(ReadOnlySpan<Half> sent)
    {
        HalfPrecision.FromFloat16(sent, _residual);
        TensorPrimitives.Subtract(_accumulated, _residual, _residual);
    }

    private void KeepRoundingError(ReadOnlySpan<ushort> sent)
    {
        HalfPrecision.FromBFloat16(sent, _residual);
        TensorPrimitives.Subtract(_accumulated, _residual, _residual);
    }

    private void EncodeTopK(Span<byte> payload)
    {
        var k = _topK;
        BinaryPrimitives.WriteInt32LittleEndian(payload, k);
        var indices = MemoryMarshal.Cast<byte, int>(payload.Slice(4, 4 * k));
        var values = MemoryMarshal.Cast<byte, float>(payload.Slice(4 + 4 * k, 4 * k));
        TensorPrimitives.Abs(_accumulated, _magnitudes);
        if (float.IsNaN(TensorPrimitives.Sum(_magnitudes)))
            for (var i = 0; i < _magnitudes.Length; i++) _magnitudes[i] = Magnitude(_magnitudes[i]);
        // Ranges in ascending order, each selection's indices ascending: the whole list is ascending.
        var written = 0;
        foreach (var (start, rangeLength, count) in _selections)
        {
            SelectLargest(start, rangeLength, indices.Slice(written, count), values.Slice(written, count));
            written += count;
        }
        if (_residual.Length == 0) return;
        _accumulated.CopyTo(_residual, 0);
        foreach (var index in indices) _residual[index] = 0f;
        if (_velocity.Length > 0) MaskVelocity(indices);
    }

    /// <summary>
    /// Momentum factor masking (Lin et al., ICLR 2018, section 3.2): clears the velocity of the sent elements, which stops
    /// the momentum of updates that waited in the residual. A range that sends all its elements at every push (the whole
    /// gradient at k = n; under PerTensor, a tensor with ⌈ratio·length⌉ = length, such as a 1-element bias) has nothing
    /// waiting, and masking would clear its whole velocity each time, leaving plain SGD for it: its velocity is kept, so its
    /// values are momentum SGD's (as DGC's reference does for what it does not compress).
    /// </summary>
    private void MaskVelocity(ReadOnlySpan<int> indices)
    {
        var written = 0;
        foreach (var (_, rangeLength, count) in _selections)
        {
            if (count < rangeLength)
                foreach (var index in indices.Slice(written, count)) _velocity[index] = 0f;
            written += count;
        }
    }

    /// <summary>Writes the indices (ascending) and values of the <c>indices.Length</c> largest magnitudes of
    /// <c>[start, start + length)</c>, exactly, ties in index order.</summary>
    private void SelectLargest(int start, int length, Span<int> indices, Span<float> values)
    {
        var k = indices.Length;
        // The k-th largest magnitude exactly, selected among the candidates (in ascending index order) that are at least a
        // lower bound of it; the selection then runs over about 2k values instead of all of them.
        var candidates = Candidates(start, length, k);
        var candidateMagnitudes = _candidateMagnitudes.AsSpan(0, candidates.Length);
        for (var j = 0; j < candidates.Length; j++) candidateMagnitudes[j] = _magnitudes[candidates[j]];
        var threshold = Selection.KthLargest(candidateMagnitudes, k);
        var above = 0;
        foreach (var index in candidates)
            if (_magnitudes[index] > threshold) above++;
        var tiesToTake = k - above;
        var written = 0;
        foreach (var index in candidates)
        {
            var magnitude = _magnitudes[index];
            if (magnitude < threshold || (magnitude == threshold && tiesToTake-- <= 0)) continue;
            indices[written] = index;
            values[written] = _accumulated[index];
            if (++written == k) break;
        }
    }

    /// <summary>
    /// The indices, ascending, of every magnitude in <c>[start, start + n)</c> at least a lower bound of its k-th largest: the
    /// bound is the (2k·s/n + 8)-th largest of s evenly strided samples, so about 2k indices qualify; if fewer than k do (an
    /// unlucky sample), every index of the range. Either way the k largest are all among them, so the selection stays exact.
    /// </summary>
    private ReadOnlySpan<int> Candidates(int start, int n, int k)
    {
        var magnitudes = _magnitudes.AsSpan(start, n);
        var stride = (n + SampleSize - 1) / SampleSize; // at most SampleSize samples
        var samples = _sample.AsSpan(0, (n + stride - 1) / stride);
        for (int i = 0, j = 0; j < samples.Length; i += stride, j++) samples[j] = magnitudes[i];
        var rank = (int)Math.Min(samples.Length, 2L * k * samples.Length / n + 8);
        var bound = rank < samples.Length ? Selection.KthLargest(samples, rank) : float.NegativeInfinity;
        var count = 0;
        if (bound > float.NegativeInfinity)
        {
            for (var i = 0; i < n; i++)
                if (magnitudes[i] >= bound) _candidates[count++] = start + i;
            if (count >= k) return _candidates.AsSpan(0, count);
        }
        for (var i = 0; i < n; i++) _candidates[i] = start + i;
        return _candidates.AsSpan(0, n);
    }

    /// <summary>|value|, with NaN as +infinity so that a NaN is always among the largest.</summary>
    private static float Magnitude(float value) => float.IsNaN(value) ? float.PositiveInfinity : Math.Abs(value);
}
