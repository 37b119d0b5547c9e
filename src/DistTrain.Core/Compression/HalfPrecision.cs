using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace DistTrain.Core.Compression;

/// <summary>
/// float32 to and from the two 16-bit formats, element-wise and vectorized: IEEE binary16 through
/// <see cref="TensorPrimitives"/>, and bfloat16 by rounding the upper half of each float32.
/// </summary>
/// <remarks>
/// bfloat16 rounding is round to nearest, ties to even, on the float32 bit pattern: add <c>0x7FFF</c> plus the lowest
/// kept bit, then keep the upper 16 bits, as PyTorch's <c>c10::BFloat16</c> (<c>round_to_nearest_even</c>) does. A
/// NaN stays a (quiet) NaN with its sign; a finite value that rounds past the largest bfloat16 becomes infinity, as
/// in PyTorch.
/// </remarks>
public static class HalfPrecision
{
    /// <summary>Rounds each float32 to binary16 (round to nearest even), as <c>tensor.half()</c>.</summary>
    /// <param name="source">Values, <c>[n]</c>.</param>
    /// <param name="destination">binary16 values, <c>[n]</c>.</param>
    /// <exception cref="ArgumentException">The spans differ in length.</exception>
    public static void ToFloat16(ReadOnlySpan<float> source, Span<Half> destination)
    {
        RequireSameLength(source.Length, destination.Length);
        TensorPrimitives.ConvertToHalf(source, destination);
    }

    /// <summary>Widens binary16 values to float32 (exact).</summary>
    /// <exception cref="ArgumentException">The spans differ in length.</exception>
    public static void FromFloat16(ReadOnlySpan<Half> source, Span<float> destination)
    {
        RequireSameLength(source.Length, destination.Length);
        TensorPrimitives.ConvertToSingle(source, destination);
    }

    /// <summary>Rounds each float32 to bfloat16 (round to nearest even), as <c>tensor.bfloat16()</c>.</summary>
    /// <param name="source">Values, <c>[n]</c>.</param>
    /// <param name="destination">bfloat16 bit patterns, <c>[n]</c>.</param>
    /// <exception cref="ArgumentException">The spans differ in length.</exception>
    public static void ToBFloat16(ReadOnlySpan<float> source, Span<ushort> destination)
    {
        RequireSameLength(source.Length, destination.Length);
        var bits = MemoryMarshal.Cast<float, uint>(source);
        var i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var width = Vector<uint>.Count;
            var roundingBias = new Vector<uint>(0x7FFF);
            var one = Vector<uint>.One;
            var quietBit = new Vector<uint>(0x0040);
            for (; i <= bits.Length - 2 * width; i += 2 * width)
            {
                var low = Round(new Vector<uint>(bits.Slice(i, width)), roundingBias, one, quietBit);
                var high = Round(new Vector<uint>(bits.Slice(i + width, width)), roundingBias, one, quietBit);
                Vector.Narrow(low, high).CopyTo(destination.Slice(i, 2 * width));
            }
        }
        for (; i < bits.Length; i++) destination[i] = ToBFloat16(bits[i]);
    }

    /// <summary>Widens bfloat16 bit patterns to float32 (exact).</summary>
    /// <exception cref="ArgumentException">The spans differ in length.</exception>
    public static void FromBFloat16(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        RequireSameLength(source.Length, destination.Length);
        var bits = MemoryMarshal.Cast<float, uint>(destination);
        var i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            var width = Vector<ushort>.Count;
            for (; i <= source.Length - width; i += width)
            {
                Vector.Widen(new Vector<ushort>(source.Slice(i, width)), out var low, out var high);
                (low << 16).CopyTo(bits.Slice(i, width / 2));
                (high << 16).CopyTo(bits.Slice(i + width / 2, width / 2));
            }
        }
        for (; i < source.Length; i++) bits[i] = (uint)source[i] << 16;
    }

    /// <summary>One float32 bit pattern rounded to bfloat16 (round to nearest even; NaN stays quiet NaN).</summary>
    public static ushort ToBFloat16(uint bits)
    {
        if ((bits & 0x7FFF_FFFF) > 0x7F80_0000) return (ushort)((bits >> 16) | 0x0040); // NaN: keep sign, make quiet
        return (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector<uint> Round(Vector<uint> bits, Vector<uint> roundingBias, Vector<uint> one, Vector<uint> quietBit)
    {
        var rounded = (bits + roundingBias + ((bits >> 16) & one)) >> 16;
        var isNaN = Vector.GreaterThan(bits & new Vector<uint>(0x7FFF_FFFF), new Vector<uint>(0x7F80_0000));
        return Vector.ConditionalSelect(isNaN, (bits >> 16) | quietBit, rounded);
    }

    private static void RequireSameLength(int source, int destination)
    {
        if (source != destination)
            throw new ArgumentException($"The destination holds {destination} elements; the source has {source}.");
    }
}
