using System.Runtime.InteropServices;
using MessagePack;
using MessagePack.Formatters;

namespace DistTrain.Cluster.Serialization;

/// <summary>
/// Writes a <c>float[]</c> as one MessagePack <c>bin</c> of its little-endian bytes (one memory copy),
/// instead of MessagePack's default array of per-element float32 values (5 bytes and a branch each).
/// </summary>
public sealed class RawFloatArrayFormatter : IMessagePackFormatter<float[]?>
{
    /// <summary>The shared instance.</summary>
    public static readonly RawFloatArrayFormatter Instance = new();

    static RawFloatArrayFormatter()
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("DistTrain sends tensors as little-endian bytes; big-endian hosts are not supported.");
    }

    /// <inheritdoc />
    public void Serialize(ref MessagePackWriter writer, float[]? value, MessagePackSerializerOptions options)
    {
        if (value is null) { writer.WriteNil(); return; }
        writer.Write(MemoryMarshal.AsBytes(value.AsSpan()));
    }

    /// <inheritdoc />
    /// <exception cref="MessagePackSerializationException">The byte length is not a multiple of 4.</exception>
    public float[]? Deserialize(ref MessagePackReader reader, MessagePackSerializerOptions options)
    {
        var bytes = reader.ReadBytes();
        if (bytes is null) return null;
        var sequence = bytes.Value;
        if (sequence.Length % sizeof(float) != 0)
            throw new MessagePackSerializationException($"A float tensor arrived with {sequence.Length} bytes, not a multiple of 4; the message is corrupt.");
        var result = new float[sequence.Length / sizeof(float)];
        var target = MemoryMarshal.AsBytes(result.AsSpan());
        foreach (var segment in sequence)
        {
            segment.Span.CopyTo(target);
            target = target[segment.Length..];
        }
        return result;
    }
}
