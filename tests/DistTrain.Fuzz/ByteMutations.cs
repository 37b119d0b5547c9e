using System.Buffers.Binary;
using CsCheck;

namespace DistTrain.Fuzz;

/// <summary>
/// Byte-level mutations of valid inputs, as a generator: bit flips, boundary bytes, boundary integers written over
/// length fields (little- and big-endian, 4 and 8 bytes), insertions, deletions, truncation and repeated ranges.
/// Positions are fractions of the current length, so one mutation list applies to inputs of any size, and CsCheck
/// shrinks a failing case towards fewer and simpler mutations.
/// </summary>
public static class ByteMutations
{
    /// <summary>Integers that sit on a boundary a length check must get right: zero, one, signs, powers of two, maxima.</summary>
    public static readonly long[] BoundaryIntegers =
    [
        0, 1, 2, 3, 4, 7, 8, 255, 256, 65_535, 65_536, 1 << 20, 1 << 24, 268_435_455, 268_435_456, int.MaxValue - 8,
        int.MaxValue, int.MinValue, -1, -2, uint.MaxValue, 1L << 32, 1L << 40, long.MaxValue, long.MinValue, 100_000_000, 100_000_001,
    ];

    private enum Kind { FlipBit, SetByte, WriteInt32, WriteInt64, WriteInt32BigEndian, Insert, Delete, Truncate, Repeat }

    private readonly record struct Mutation(Kind Kind, double Position, int Value, byte[] Bytes);

    private static readonly Gen<Mutation> OneMutation = Gen.Select(
        Gen.Enum<Kind>(), Gen.Double.Unit, Gen.Int[0, int.MaxValue], Gen.Byte.Array[1, 16],
        (kind, position, value, bytes) => new Mutation(kind, position, value, bytes));

    /// <summary>Inputs made by applying 1 to <paramref name="maxMutations"/> mutations to one of <paramref name="seeds"/>.</summary>
    public static Gen<byte[]> Of(Gen<byte[]> seeds, int maxMutations = 4) =>
        Gen.Select(seeds, OneMutation.Array[1, maxMutations], Apply);

    /// <summary>Applies the mutations in order to a copy of <paramref name="seed"/>.</summary>
    private static byte[] Apply(byte[] seed, Mutation[] mutations)
    {
        var bytes = new List<byte>(seed);
        foreach (var m in mutations)
        {
            var at = (int)(m.Position * bytes.Count);
            var boundary = BoundaryIntegers[m.Value % BoundaryIntegers.Length];
            switch (m.Kind)
            {
                case Kind.FlipBit when bytes.Count > 0:
                    at = Math.Min(at, bytes.Count - 1);
                    bytes[at] ^= (byte)(1 << (m.Value % 8));
                    break;
                case Kind.SetByte when bytes.Count > 0:
                    at = Math.Min(at, bytes.Count - 1);
                    bytes[at] = (byte)(m.Value % 3 == 0 ? 0xff : m.Value % 3 == 1 ? 0x00 : 0x7f + m.Value % 2);
                    break;
                case Kind.WriteInt32:
                    Overwrite(bytes, at, BitConverter.GetBytes((int)boundary));
                    break;
                case Kind.WriteInt64:
                    Overwrite(bytes, at, BitConverter.GetBytes(boundary));
                    break;
                case Kind.WriteInt32BigEndian:
                    var big = new byte[4];
                    BinaryPrimitives.WriteInt32BigEndian(big, (int)boundary);
                    Overwrite(bytes, at, big);
                    break;
                case Kind.Insert:
                    bytes.InsertRange(at, m.Bytes);
                    break;
                case Kind.Delete:
                    bytes.RemoveRange(at, Math.Min(m.Bytes.Length, bytes.Count - at));
                    break;
                case Kind.Truncate:
                    bytes.RemoveRange(at, bytes.Count - at);
                    break;
                case Kind.Repeat when bytes.Count > 0:
                    at = Math.Min(at, bytes.Count - 1);
                    var range = bytes.GetRange(at, Math.Min(m.Bytes.Length, bytes.Count - at));
                    for (var i = 0; i < 1 + m.Value % 64; i++) bytes.InsertRange(at, range);
                    break;
            }
        }
        return [.. bytes];
    }

    private static void Overwrite(List<byte> bytes, int at, byte[] value)
    {
        for (var i = 0; i < value.Length; i++)
        {
            if (at + i < bytes.Count) bytes[at + i] = value[i];
            else bytes.Add(value[i]);
        }
    }
}
