using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using DistTrain.Core.Tensors;

namespace DistTrain.Core.Checkpoints;

/// <summary>A float32 tensor read from or written to a safetensors file.</summary>
/// <param name="Shape">Row-major shape.</param>
/// <param name="Data">Elements, row-major.</param>
public sealed record NamedTensor(int[] Shape, float[] Data);

/// <summary>
/// The safetensors format (Hugging Face, <c>safetensors/README.md</c>): an 8-byte little-endian header
/// length N, N bytes of JSON mapping each tensor name to <c>{"dtype", "shape", "data_offsets"}</c>
/// (offsets relative to the end of the header), an optional <c>__metadata__</c> map of strings, then the
/// raw little-endian tensor bytes. Only F32 is written and read here.
/// </summary>
public static class SafeTensors
{
    private const long MaxHeaderBytes = 100 * 1024 * 1024;

    /// <summary>Writes every segment of <paramref name="parameters"/> as an F32 tensor named as in its layout.</summary>
    /// <param name="path">Target file; written to a temporary file first, then renamed.</param>
    /// <param name="parameters">Flat weights and their layout.</param>
    /// <param name="metadata">Optional string metadata stored under <c>__metadata__</c>.</param>
    public static void Write(string path, ParameterVector parameters, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var header = new Dictionary<string, object>(StringComparer.Ordinal);
        if (metadata is { Count: > 0 }) header["__metadata__"] = metadata;
        long offset = 0;
        foreach (var segment in parameters.Layout.Segments)
        {
            var bytes = (long)segment.Length * sizeof(float);
            header[segment.Name] = new { dtype = "F32", shape = segment.Shape, data_offsets = new[] { offset, offset + bytes } };
            offset += bytes;
        }
        var json = JsonSerializer.SerializeToUtf8Bytes(header);
        // Pad the header with spaces so the data starts 8-byte aligned, as the reference writer does.
        var padded = (json.Length + 7) / 8 * 8;
        var temporary = path + ".tmp";
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write))
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)padded);
            stream.Write(length);
            stream.Write(json);
            for (var i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
            foreach (var segment in parameters.Layout.Segments)
                stream.Write(MemoryMarshal.AsBytes((ReadOnlySpan<float>)parameters.Segment(segment)));
            stream.Flush(flushToDisk: true);
        }
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>The <c>__metadata__</c> string map of a safetensors file (empty when it has none).</summary>
    /// <exception cref="InvalidDataException">The header is truncated or not valid JSON; the message names the file.</exception>
    public static IReadOnlyDictionary<string, string> ReadMetadata(string path)
    {
        using var stream = File.OpenRead(path);
        Span<byte> length = stackalloc byte[8];
        if (stream.ReadAtLeast(length, 8, throwOnEndOfStream: false) < 8)
            throw new InvalidDataException($"{path}: too short for a safetensors file (8-byte header length missing).");
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(length);
        if (headerLength > MaxHeaderBytes || 8 + (long)headerLength > stream.Length)
            throw new InvalidDataException($"{path}: header length {headerLength} exceeds the file ({stream.Length} bytes). The file is truncated or not safetensors.");
        var header = new byte[headerLength];
        stream.ReadExactly(header);
        try
        {
            using var document = JsonDocument.Parse(header);
            if (!document.RootElement.TryGetProperty("__metadata__", out var metadata)) return new Dictionary<string, string>();
            return metadata.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "", StringComparer.Ordinal);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            throw new InvalidDataException($"{path}: the safetensors header is not valid JSON ({e.Message}).");
        }
    }

    /// <summary>Reads every tensor of a safetensors file.</summary>
    /// <exception cref="InvalidDataException">The file is truncated, its header is not valid JSON, a dtype is not F32, or offsets do not match shapes; the message names the file.</exception>
    public static IReadOnlyDictionary<string, NamedTensor> Read(string path) => Read(path, File.ReadAllBytes(path));

    /// <summary>Reads every tensor of a safetensors file already in memory; <paramref name="path"/> only names it in errors.</summary>
    internal static IReadOnlyDictionary<string, NamedTensor> Read(string path, byte[] bytes)
    {
        if (bytes.Length < 8)
            throw new InvalidDataException($"{path}: {bytes.Length} bytes is too short for a safetensors file (8-byte header length missing).");
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength > MaxHeaderBytes || 8 + (long)headerLength > bytes.Length)
            throw new InvalidDataException($"{path}: header length {headerLength} exceeds the file ({bytes.Length} bytes). The file is truncated or not safetensors.");
        var dataStart = 8 + (int)headerLength;
        var result = new Dictionary<string, NamedTensor>(StringComparer.Ordinal);
        try
        {
            using var document = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength));
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__") continue;
                var dtype = property.Value.GetProperty("dtype").GetString();
                // PyTorch's BatchNorm counter (int64); DistTrain keeps no such counter (it matters only with momentum None).
                if (dtype != "F32" && property.Name.EndsWith(".num_batches_tracked", StringComparison.Ordinal)) continue;
                if (dtype != "F32")
                    throw new InvalidDataException($"{path}: tensor '{property.Name}' has dtype {dtype}; only F32 is supported. Save float32 weights.");
                var shape = property.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray();
                var offsets = property.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                var count = shape.Aggregate(1L, (p, d) => d < 0 || p > int.MaxValue ? -1 : p * d);
                if (count < 0 || count > int.MaxValue / sizeof(float))
                    throw new InvalidDataException($"{path}: tensor '{property.Name}' has shape [{string.Join(", ", shape)}], which is negative or too large to load.");
                if (offsets.Length != 2 || offsets[1] - offsets[0] != count * sizeof(float) || offsets[0] < 0 || dataStart + offsets[1] > bytes.Length)
                    throw new InvalidDataException($"{path}: tensor '{property.Name}' with shape [{string.Join(", ", shape)}] has data_offsets [{string.Join(", ", offsets)}] that do not fit the shape or the file ({bytes.Length} bytes). The file is truncated or corrupt.");
                var data = new float[count];
                bytes.AsSpan(dataStart + (int)offsets[0], (int)(count * sizeof(float))).CopyTo(MemoryMarshal.AsBytes(data.AsSpan()));
                if (!BitConverter.IsLittleEndian)
                    throw new PlatformNotSupportedException("safetensors data is little-endian; big-endian hosts are not supported.");
                result[property.Name] = new NamedTensor(shape, data);
            }
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or FormatException or InvalidOperationException)
        {
            throw new InvalidDataException($"{path}: the safetensors header is not valid JSON with dtype/shape/data_offsets per tensor ({e.Message}).");
        }
        return result;
    }
}
