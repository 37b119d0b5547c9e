using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace DistTrain.Core.Compression;

/// <summary>
/// Cuts a message written by <see cref="GradientEncoder"/> into the message of one contiguous range of its gradient, for a
/// parameter-server shard that owns that range: what the shard decodes is, value for value, the range of what the whole
/// message decodes to (<see cref="GradientDecoder"/>), so K shards that each get their cut step exactly as one server that
/// gets the whole message. Nothing is encoded again and no residual changes: the worker encodes once, with its one
/// error-feedback residual over the whole gradient.
/// </summary>
/// <remarks>
/// A cut is a message of the same layout (<see cref="GradientEncoder"/>) whose dense length is the range's. <c>Float16</c>,
/// <c>BFloat16</c> and <c>None</c> keep the range's values, so a cut has a fixed size; <c>TopK</c> keeps the picks inside the
/// range, with their indices made relative to its start, so a cut's size varies from push to push (from
/// <c>HeaderBytes + 4</c> with no pick to <see cref="MostBytes"/>). Under <see cref="TopKScope.Global"/> a shard's share of the
/// k picks follows the gradient, as the whole message's does.
/// </remarks>
public static class GradientMessageSlice
{
    /// <summary>
    /// The most bytes a cut of <paramref name="length"/> elements of <paramref name="kind"/> can take: exactly
    /// <c>HeaderBytes + 4·length</c> for <c>None</c> and <c>HeaderBytes + 2·length</c> for the 16-bit kinds; for <c>TopK</c>,
    /// whose cuts vary in size, <c>HeaderBytes + 4 + 8·min(length, mostPicks)</c>.
    /// </summary>
    /// <param name="kind">The encoding.</param>
    /// <param name="length">Elements of the range, at least 0.</param>
    /// <param name="mostPicks">TopK: the picks of the whole message (<see cref="GradientEncoder.TopKCount"/>), of which a cut holds
    /// some; ignored for the other kinds.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> or <paramref name="mostPicks"/> is negative, the kind
    /// is unknown, or the size exceeds int.MaxValue.</exception>
    public static int MostBytes(GradientCompression kind, int length, int mostPicks)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfNegative(mostPicks);
        var bytes = kind switch
        {
            GradientCompression.None => GradientEncoder.HeaderBytes + 4L * length,
            GradientCompression.Float16 or GradientCompression.BFloat16 => GradientEncoder.HeaderBytes + 2L * length,
            GradientCompression.TopK => GradientEncoder.HeaderBytes + 4 + 8L * Math.Min(length, mostPicks),
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Unknown gradient compression."),
        };
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bytes, int.MaxValue, nameof(length));
        return (int)bytes;
    }

    /// <summary>Cuts the message of elements <c>[start, start + length)</c> out of <paramref name="message"/>.</summary>
    /// <param name="message">One whole message from <see cref="GradientEncoder.Encode"/>.</param>
    /// <param name="start">First element of the range, 0-based.</param>
    /// <param name="length">Elements in the range, at least 0.</param>
    /// <returns>A new message of dense length <paramref name="length"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The range is not inside the message's dense length.</exception>
    /// <exception cref="InvalidDataException">The message is malformed (as <see cref="GradientDecoder.Decode"/> refuses it).</exception>
    public static byte[] Cut(ReadOnlySpan<byte> message, int start, int length)
    {
        var dense = GradientDecoder.DenseLength(message);
        ArgumentOutOfRangeException.ThrowIfNegative(start);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if ((long)start + length > dense)
            throw new ArgumentOutOfRangeException(nameof(length), $"The range [{start}, {(long)start + length}) is not inside the message's {dense} elements.");
        var kind = (GradientCompression)message[0];
        var payload = message[GradientEncoder.HeaderBytes..];
        return kind switch
        {
            GradientCompression.None => Dense(kind, payload, 4, dense, start, length),
            GradientCompression.Float16 or GradientCompression.BFloat16 => Dense(kind, payload, 2, dense, start, length),
            GradientCompression.TopK => TopK(payload, dense, start, length),
            _ => throw new InvalidDataException($"A compressed gradient message was refused: its compression kind {message[0]} is unknown (known: None, Float16, BFloat16, TopK)."),
        };
    }

    private static byte[] Dense(GradientCompression kind, ReadOnlySpan<byte> payload, int elementBytes, int dense, int start, int length)
    {
        if (payload.Length != (long)elementBytes * dense)
            throw new InvalidDataException($"A compressed gradient message was refused: its {kind} payload has {payload.Length} bytes where {(long)elementBytes * dense} were expected.");
        var cut = new byte[GradientEncoder.HeaderBytes + elementBytes * length];
        WriteHeader(cut, kind, length);
        payload.Slice(elementBytes * start, elementBytes * length).CopyTo(cut.AsSpan(GradientEncoder.HeaderBytes));
        return cut;
    }

    private static byte[] TopK(ReadOnlySpan<byte> payload, int dense, int start, int length)
    {
        if (payload.Length < 4) throw new InvalidDataException("A compressed gradient message was refused: its TopK count is missing.");
        var count = BinaryPrimitives.ReadInt32LittleEndian(payload);
        if (count < 0 || count > dense || payload.Length != 4 + 8L * count)
            throw new InvalidDataException($"A compressed gradient message was refused: its TopK count {count} does not fit its {payload.Length}-byte payload and {dense} elements.");
        var indices = MemoryMarshal.Cast<byte, int>(payload.Slice(4, 4 * count));
        var values = MemoryMarshal.Cast<byte, float>(payload.Slice(4 + 4 * count, 4 * count));
        // The indices are ascending (the decoder checks it; a cut of a message that is not would be refused by the shard's).
        var first = LowerBound(indices, start);
        var end = LowerBound(indices, start + length);
        var picks = Math.Max(0, end - first);
        var cut = new byte[GradientEncoder.HeaderBytes + 4 + 8 * picks];
        WriteHeader(cut, GradientCompression.TopK, length);
        var body = cut.AsSpan(GradientEncoder.HeaderBytes);
        BinaryPrimitives.WriteInt32LittleEndian(body, picks);
        var cutIndices = MemoryMarshal.Cast<byte, int>(body.Slice(4, 4 * picks));
        for (var i = 0; i < picks; i++) cutIndices[i] = indices[first + i] - start;
        values.Slice(first, picks).CopyTo(MemoryMarshal.Cast<byte, float>(body.Slice(4 + 4 * picks, 4 * picks)));
        return cut;
    }

    /// <summary>The first position in <paramref name="sorted"/> whose value is at least <paramref name="value"/>.</summary>
    private static int LowerBound(ReadOnlySpan<int> sorted, int value)
    {
        int low = 0, high = sorted.Length;
        while (low < high)
        {
            var middle = (low + high) >>> 1;
            if (sorted[middle] < value) low = middle + 1;
            else high = middle;
        }
        return low;
    }

    private static void WriteHeader(Span<byte> cut, GradientCompression kind, int length)
    {
        cut[0] = (byte)kind;
        BinaryPrimitives.WriteInt32LittleEndian(cut[1..], length);
    }
}
