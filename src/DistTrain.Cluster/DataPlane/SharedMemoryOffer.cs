using System.Buffers.Binary;
using System.Text;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// What a parameter server offers a worker, as the first frame on a new data-plane connection (Cluster:SharedMemory):
/// a <see cref="SharedMemoryRegion"/> to exchange tensor bodies through. The body of a
/// <see cref="TensorFrame.SharedMemoryOfferType"/> frame, a fixed <see cref="Size"/> bytes, little-endian: weight slots,
/// gradient slots (int32 each), weight slot bytes, gradient slot bytes (int64 each), the 32-byte nonce, the path's
/// length (int32) and the path in ASCII, zero-padded.
/// </summary>
/// <param name="WeightSlots">Slots for weights, parameter server → worker.</param>
/// <param name="GradientSlots">Slots for gradients, worker → parameter server.</param>
/// <param name="WeightSlotBytes">Bytes of one weight slot: the model's floats × 4.</param>
/// <param name="GradientSlotBytes">Bytes of one gradient slot.</param>
/// <param name="Nonce">The nonce in the region's header, <see cref="SharedMemoryRegion.NonceBytes"/> bytes.</param>
/// <param name="Path">The region's file.</param>
internal sealed record SharedMemoryOffer(int WeightSlots, int GradientSlots, long WeightSlotBytes, long GradientSlotBytes, byte[] Nonce, string Path)
{
    /// <summary>Bytes of an offer's body.</summary>
    public const int Size = 128;

    private const int PathOffset = 60;

    /// <summary>The offer of <paramref name="region"/>.</summary>
    public static SharedMemoryOffer Of(SharedMemoryRegion region) => new(region.Weights.Count, region.Gradients.Count, region.Weights.SlotBytes,
        region.Gradients.SlotBytes, region.Nonce, region.Path);

    /// <summary>The body's bytes.</summary>
    /// <exception cref="ArgumentException">The path is longer than the body holds, or not ASCII.</exception>
    public byte[] ToBytes()
    {
        var bytes = new byte[Size];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, WeightSlots);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4), GradientSlots);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(8), WeightSlotBytes);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(16), GradientSlotBytes);
        Nonce.AsSpan(0, SharedMemoryRegion.NonceBytes).CopyTo(bytes.AsSpan(24));
        if (Path.Length > Size - PathOffset || !Ascii.IsValid(Path)) throw new ArgumentException($"a region path must be ASCII of at most {Size - PathOffset} characters: '{Path}'");
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(56), Path.Length);
        Encoding.ASCII.GetBytes(Path, bytes.AsSpan(PathOffset));
        return bytes;
    }

    /// <summary>Decodes an offer's body; the fields are checked by <see cref="SharedMemoryRegion.Open"/>.</summary>
    /// <exception cref="IOException">The body is not <see cref="Size"/> bytes, or its path length or characters are impossible.</exception>
    public static SharedMemoryOffer Parse(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Size) throw new IOException($"a shared-memory offer has {Size} bytes, not {bytes.Length}");
        var pathLength = BinaryPrimitives.ReadInt32LittleEndian(bytes[56..]);
        if (pathLength is < 1 or > Size - PathOffset) throw new IOException($"a shared-memory offer announced a path of {pathLength} bytes (1 to {Size - PathOffset})");
        var path = bytes.Slice(PathOffset, pathLength);
        if (!Ascii.IsValid(path)) throw new IOException("a shared-memory offer's path is not ASCII");
        return new SharedMemoryOffer(BinaryPrimitives.ReadInt32LittleEndian(bytes), BinaryPrimitives.ReadInt32LittleEndian(bytes[4..]),
            BinaryPrimitives.ReadInt64LittleEndian(bytes[8..]), BinaryPrimitives.ReadInt64LittleEndian(bytes[16..]),
            bytes.Slice(24, SharedMemoryRegion.NonceBytes).ToArray(), Encoding.ASCII.GetString(path));
    }
}

/// <summary>
/// A worker's answer to a <see cref="SharedMemoryOffer"/>, the body of a <see cref="TensorFrame.SharedMemoryAnswerType"/>
/// frame: a fixed <see cref="Size"/> bytes, the first 1 if the worker mapped the region (0 if not), the second the
/// length of the reason in UTF-8 (why not, for the parameter server's log), then the reason.
/// </summary>
/// <param name="Accepted">The worker mapped the region: from now on both directions use its slots.</param>
/// <param name="Reason">Why the worker declined; empty when accepted.</param>
internal sealed record SharedMemoryAnswer(bool Accepted, string Reason)
{
    /// <summary>Bytes of an answer's body.</summary>
    public const int Size = 128;

    /// <summary>The body's bytes; a reason longer than the body holds is cut.</summary>
    public byte[] ToBytes()
    {
        var bytes = new byte[Size];
        bytes[0] = Accepted ? (byte)1 : (byte)0;
        var reason = Encoding.UTF8.GetBytes(Reason);
        var length = Math.Min(reason.Length, Size - 2);
        bytes[1] = (byte)length;
        reason.AsSpan(0, length).CopyTo(bytes.AsSpan(2));
        return bytes;
    }

    /// <summary>Reads a whole answer frame from <paramref name="stream"/>: its header (checked by
    /// <see cref="TensorFrame.ParseHeader"/>), then its body.</summary>
    /// <param name="stream">The connection, where the next frame must be an answer.</param>
    /// <param name="peer">The remote address, for messages.</param>
    /// <exception cref="IOException">The connection closed, the next frame is not an answer, or its body is malformed.</exception>
    public static SharedMemoryAnswer ReadFrame(Stream stream, string peer)
    {
        TensorFrame.ReadHeader(stream, TensorFrame.SharedMemoryAnswerType, 0, peer);
        var body = new byte[Size];
        TensorFrame.ReadBytes(stream, body, peer);
        return Parse(body);
    }

    /// <summary>Decodes an answer's body.</summary>
    /// <exception cref="IOException">The body is not <see cref="Size"/> bytes, or its flag or reason length is impossible.</exception>
    public static SharedMemoryAnswer Parse(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length != Size) throw new IOException($"a shared-memory answer has {Size} bytes, not {bytes.Length}");
        if (bytes[0] > 1) throw new IOException($"a shared-memory answer's flag is {bytes[0]} (0 or 1)");
        if (bytes[1] > Size - 2) throw new IOException($"a shared-memory answer announced a reason of {bytes[1]} bytes (at most {Size - 2})");
        return new SharedMemoryAnswer(bytes[0] == 1, Encoding.UTF8.GetString(bytes.Slice(2, bytes[1])));
    }
}
