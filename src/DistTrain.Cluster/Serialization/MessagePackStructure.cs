using MessagePack;

namespace DistTrain.Cluster.Serialization;

/// <summary>
/// A walk over one MessagePack value's tokens, without decoding it, that bounds its nesting and finds where it ends.
/// MessagePack's own depth limit applies to the formatters it runs, not to fields a formatter skips (a message type's
/// unknown trailing fields); this walk covers both. Its stack is a fixed array: a hostile message cannot make it allocate.
/// </summary>
internal static class MessagePackStructure
{
    /// <summary>Walks the value at the start of <paramref name="bytes"/>.</summary>
    /// <returns>The bytes the value takes.</returns>
    /// <exception cref="MessagePackSerializationException">The value nests deeper than <paramref name="maxDepth"/>, or a token is invalid.</exception>
    /// <exception cref="EndOfStreamException">A token or a length prefix runs past the end of <paramref name="bytes"/>.</exception>
    public static long ValueLength(ReadOnlyMemory<byte> bytes, int maxDepth)
    {
        var reader = new MessagePackReader(bytes);
        Span<long> open = stackalloc long[maxDepth + 1]; // elements still to read in each open array or map
        var depth = 0;
        open[0] = 1;
        while (depth >= 0)
        {
            if (open[depth] == 0)
            {
                depth--;
                continue;
            }
            open[depth]--;
            // ReadArrayHeader and ReadMapHeader refuse a count larger than the bytes that remain (one byte per element at least).
            long children = reader.NextMessagePackType switch
            {
                MessagePackType.Array => reader.ReadArrayHeader(),
                MessagePackType.Map => 2L * reader.ReadMapHeader(),
                _ => -1,
            };
            if (children < 0)
            {
                SkipScalar(ref reader);
                continue;
            }
            if (++depth > maxDepth)
                throw new MessagePackSerializationException($"it nests deeper than {maxDepth} levels, more than any DistTrain message");
            open[depth] = children;
        }
        return reader.Consumed;
    }

    /// <summary>
    /// Skips one value that is not an array or map. Strings, bins and extensions have their length read here and checked
    /// against the remaining bytes as a 64-bit number: MessagePack's own <c>Skip</c>, <c>ReadBytes</c> and
    /// <c>ReadStringSequence</c> throw <see cref="ArgumentOutOfRangeException"/> for a 32-bit length of 2^31 or more.
    /// </summary>
    private static void SkipScalar(ref MessagePackReader reader)
    {
        var code = reader.NextCode;
        var (header, lengthBytes, fixedLength) = code switch
        {
            >= MessagePackCode.MinFixStr and <= MessagePackCode.MaxFixStr => (1, 0, code & 0x1f),
            MessagePackCode.Str8 or MessagePackCode.Bin8 => (2, 1, 0),
            MessagePackCode.Str16 or MessagePackCode.Bin16 => (3, 2, 0),
            MessagePackCode.Str32 or MessagePackCode.Bin32 => (5, 4, 0),
            MessagePackCode.FixExt1 => (2, 0, 1),
            MessagePackCode.FixExt2 => (2, 0, 2),
            MessagePackCode.FixExt4 => (2, 0, 4),
            MessagePackCode.FixExt8 => (2, 0, 8),
            MessagePackCode.FixExt16 => (2, 0, 16),
            MessagePackCode.Ext8 => (3, 1, 0),
            MessagePackCode.Ext16 => (4, 2, 0),
            MessagePackCode.Ext32 => (6, 4, 0),
            _ => (0, 0, 0),
        };
        if (header == 0)
        {
            reader.Skip(); // a number, boolean or nil: fixed size, checked by the reader
            return;
        }
        var remaining = reader.Sequence.Length - reader.Consumed;
        if (remaining < header) throw new EndOfStreamException();
        Span<byte> prefix = stackalloc byte[header];
        System.Buffers.BuffersExtensions.CopyTo(reader.CreatePeekReader().ReadRaw(header), prefix);
        long length = fixedLength;
        for (var i = 1; i <= lengthBytes; i++) length = (length << 8) | prefix[i]; // big-endian, after the code byte
        if (header + length > remaining) throw new EndOfStreamException();
        reader.ReadRaw(header + length);
    }
}
