using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace DistTrain.Core.Compression;

/// <summary>
/// Reads a message written by <see cref="GradientEncoder"/> back into a dense float32 gradient, checking every field:
/// a message from the network is input, and a malformed one is refused with the reason, never half-applied.
/// </summary>
public static class GradientDecoder
{
    /// <summary>Decodes <paramref name="message"/> into <paramref name="destination"/>; TopK's unsent elements are
    /// zero.</summary>
    /// <param name="message">One whole message.</param>
    /// <param name="destination">The dense gradient, <c>[n]</c>, where n is this model's parameter count.</param>
    /// <returns>The message's compression kind.</returns>
    /// <exception cref="InvalidDataException">The message is truncated, too long, of an unknown kind, for another
    /// parameter count, or (TopK) its count or indices are out of range or not ascending. Nothing is written to
    /// <paramref name="destination"/> then.</exception>
    public static GradientCompression Decode(ReadOnlySpan<byte> message, Span<float> destination)
    {
        if (message.Length < GradientEncoder.HeaderBytes)
            throw Invalid($"it has {message.Length} bytes, fewer than its {GradientEncoder.HeaderBytes}-byte header");
        var kind = (GradientCompression)message[0];
        // Not Enum.IsDefined: the runtime caches its answer weakly, and rebuilding it after a garbage collection allocates
        // on a step that must not.
        if (kind is not (GradientCompression.None or GradientCompression.Float16 or GradientCompression.BFloat16 or GradientCompression.TopK))
            throw Invalid($"its compression kind {message[0]} is unknown (known: None, Float16, BFloat16, TopK); the sender may run another DistTrain version");
        var length = BinaryPrimitives.ReadInt32LittleEndian(message[1..]);
        if (length != destination.Length)
            throw Invalid($"it holds a gradient of {length} elements, and this model has {destination.Length} parameters; every node must use the same model config");
        var payload = message[GradientEncoder.HeaderBytes..];
        switch (kind)
        {
            case GradientCompression.None:
                RequireBytes(kind, payload.Length, 4L * length);
                MemoryMarshal.Cast<byte, float>(payload).CopyTo(destination);
                break;
            case GradientCompression.Float16:
                RequireBytes(kind, payload.Length, 2L * length);
                HalfPrecision.FromFloat16(MemoryMarshal.Cast<byte, Half>(payload), destination);
                break;
            case GradientCompression.BFloat16:
                RequireBytes(kind, payload.Length, 2L * length);
                HalfPrecision.FromBFloat16(MemoryMarshal.Cast<byte, ushort>(payload), destination);
                break;
            case GradientCompression.TopK:
                DecodeTopK(payload, destination);
                break;
        }
        return kind;
    }

    /// <summary>The dense length a message announces (its bytes 1-4), without checking the rest.</summary>
    /// <exception cref="InvalidDataException">The message is shorter than its header.</exception>
    public static int DenseLength(ReadOnlySpan<byte> message) => message.Length >= GradientEncoder.HeaderBytes
        ? BinaryPrimitives.ReadInt32LittleEndian(message[1..])
        : throw Invalid($"it has {message.Length} bytes, fewer than its {GradientEncoder.HeaderBytes}-byte header");

    private static void DecodeTopK(ReadOnlySpan<byte> payload, Span<float> destination)
    {
        if (payload.Length < 4) throw Invalid("its TopK count is missing");
        var count = BinaryPrimitives.ReadInt32LittleEndian(payload);
        if (count < 0 || count > destination.Length)
            throw Invalid($"its TopK count {count} is outside [0, {destination.Length}]");
        RequireBytes(GradientCompression.TopK, payload.Length, 4 + 8L * count);
        var indices = MemoryMarshal.Cast<byte, int>(payload.Slice(4, 4 * count));
        var values = MemoryMarshal.Cast<byte, float>(payload.Slice(4 + 4 * count, 4 * count));
        var previous = -1;
        foreach (var index in indices)
        {
            if (index <= previous || index >= destination.Length)
                throw Invalid($"its TopK index {index} is out of range or not ascending (after {previous}; the model has {destination.Length} parameters)");
            previous = index;
        }
        destination.Clear();
        for (var i = 0; i < count; i++) destination[indices[i]] = values[i];
    }

    private static void RequireBytes(GradientCompression kind, int actual, long expected)
    {
        if (actual != expected)
            throw Invalid($"its {kind} payload has {actual} bytes where {expected} were expected (truncated or padded in transit)");
    }

    private static InvalidDataException Invalid(string problem) => new($"A compressed gradient message was refused: {problem}.");
}
