using System.Buffers.Binary;
using System.Runtime.InteropServices;
using CsCheck;
using DistTrain.Cluster.DataPlane;

namespace DistTrain.Fuzz.Targets;

/// <summary>
/// The data plane's frame header check, <see cref="TensorFrame.ParseHeader"/>: an input is the type and float count the
/// reader expects (1 + 4 bytes) followed by the received header bytes. Inputs are valid headers of every type, headers with
/// boundary counts and sample counts, random bytes, and mutations of all three.
/// </summary>
public static class FrameHeaderTarget
{
    private const string Peer = "198.51.100.4:50000";

    private static byte[] Input(byte expectedType, int expectedCount, TensorFrame.Header header)
    {
        var bytes = new byte[5 + TensorFrame.HeaderSize];
        bytes[0] = expectedType;
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(1), expectedCount);
        MemoryMarshal.Write(bytes.AsSpan(5), in header);
        return bytes;
    }

    private static readonly Gen<byte[]> Valid = Gen.Select(Gen.Byte[TensorFrame.WeightsType, TensorFrame.GradientType], Gen.Int[0, 1 << 20], Gen.Int, Gen.Int,
        Gen.Long, Gen.Int, Gen.Double,
        (type, count, epoch, round, version, samples, loss) => Input(type, count, new TensorFrame.Header
        {
            Magic = TensorFrame.Magic, Version = TensorFrame.ProtocolVersion, Type = type, Epoch = epoch, Round = round, WeightsVersion = version,
            WorkerIndex = samples % 256, SampleCount = Math.Abs(samples % 4096), LossSum = loss, Count = count,
        }));

    private static readonly Gen<byte[]> Boundary = Gen.Select(Gen.Byte[0, 3], Gen.OneOf(ByteMutations.BoundaryIntegers), Gen.OneOf(ByteMutations.BoundaryIntegers),
        Gen.OneOf(ByteMutations.BoundaryIntegers), (type, expected, count, samples) => Input(type, (int)expected, new TensorFrame.Header
        {
            Magic = TensorFrame.Magic, Version = TensorFrame.ProtocolVersion, Type = type, SampleCount = (int)samples, Count = (int)count,
        }));

    /// <summary>The target.</summary>
    public static FuzzTarget Create() => new(
        "frame-header",
        Gen.Frequency((3, ByteMutations.Of(Gen.Frequency((1, Valid), (1, Boundary)))), (2, Boundary), (1, Valid), (1, Gen.Byte.Array[0, 70])),
        input =>
        {
            var expectedType = input.Length > 0 ? input[0] : (byte)0;
            var expectedCount = input.Length >= 5 ? BinaryPrimitives.ReadInt32LittleEndian(input.AsSpan(1)) : 0;
            var header = TensorFrame.ParseHeader(input.AsSpan(Math.Min(5, input.Length)), expectedType, expectedCount, Peer);
            if (header.Magic != TensorFrame.Magic || header.Version != TensorFrame.ProtocolVersion || header.Type != expectedType
                || header.Count != expectedCount || header.Count is < 0 or > TensorFrame.MaxCount || header.SampleCount < 0)
                throw new FuzzFinding("accepted", $"a header the reader must refuse: type {header.Type} (expected {expectedType}), {header.Count} floats (expected {expectedCount}), sample count {header.SampleCount}");
        },
        e => e is IOException,
        _ => 64 << 10,
        (_, e) =>
        {
            if (!e.Message.Contains(Peer, StringComparison.Ordinal))
                throw new FuzzFinding("message", $"the refusal does not name the peer: {e.Message}");
        });
}
