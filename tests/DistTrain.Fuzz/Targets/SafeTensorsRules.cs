using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace DistTrain.Fuzz.Targets;

/// <summary>
/// The test oracle for the safetensors target: the rules Hugging Face's reference reader (the <c>safetensors</c> crate,
/// <c>safetensors/src/tensor.rs</c>: <c>read_metadata</c> and <c>Metadata::validate</c>) applies, written independently of
/// DistTrain's reader. A file DistTrain accepts must pass them; a file that passes them and holds only F32 tensors (and
/// int64 <c>num_batches_tracked</c> counters) must be accepted.
/// </summary>
internal static class SafeTensorsRules
{
    private static readonly Dictionary<string, int> DtypeSizes = new(StringComparer.Ordinal)
    {
        ["BOOL"] = 1, ["U8"] = 1, ["I8"] = 1, ["F8_E5M2"] = 1, ["F8_E4M3"] = 1, ["I16"] = 2, ["U16"] = 2, ["F16"] = 2, ["BF16"] = 2,
        ["I32"] = 4, ["U32"] = 4, ["F32"] = 4, ["F64"] = 8, ["I64"] = 8, ["U64"] = 8,
    };

    /// <summary>Null when the file is valid safetensors; otherwise the first rule it breaks.</summary>
    /// <param name="bytes">The whole file.</param>
    /// <param name="loadable">Set when valid, every tensor is F32 or an int64 <c>*.num_batches_tracked</c>, and every dimension
    /// fits an <c>int</c> (DistTrain's shapes are <c>int[]</c>).</param>
    public static string? Violation(byte[] bytes, out bool loadable)
    {
        loadable = false;
        if (bytes.Length < 8) return "HeaderTooSmall";
        var n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (n > 100_000_000) return "HeaderTooLarge";
        if (8 + (long)n > bytes.Length) return "InvalidHeaderLength";
        string text;
        try
        {
            text = new UTF8Encoding(false, true).GetString(bytes, 8, (int)n);
        }
        catch (DecoderFallbackException)
        {
            return "InvalidHeader (not UTF-8)";
        }
        var tensors = new List<(string Name, string Dtype, ulong Start, ulong End, ulong Elements)>();
        var allLoadable = true;
        try
        {
            using var document = JsonDocument.Parse(text, new JsonDocumentOptions { AllowDuplicateProperties = false });
            if (document.RootElement.ValueKind != JsonValueKind.Object) return "InvalidHeaderDeserialization (not an object)";
            foreach (var property in document.RootElement.EnumerateObject())
            {
                var value = property.Value;
                if (property.Name == "__metadata__")
                {
                    // Option<HashMap<String, String>>: null is None.
                    if (value.ValueKind == JsonValueKind.Null) continue;
                    if (value.ValueKind != JsonValueKind.Object || value.EnumerateObject().Any(p => p.Value.ValueKind != JsonValueKind.String))
                        return "InvalidHeaderDeserialization (__metadata__ not a map of strings)";
                    continue;
                }
                if (value.ValueKind != JsonValueKind.Object) return "InvalidHeaderDeserialization (tensor not an object)";
                if (!value.TryGetProperty("dtype", out var dtype) || dtype.ValueKind != JsonValueKind.String || !DtypeSizes.ContainsKey(dtype.GetString()!))
                    return "InvalidHeaderDeserialization (dtype)";
                if (!value.TryGetProperty("shape", out var shape) || shape.ValueKind != JsonValueKind.Array) return "InvalidHeaderDeserialization (shape)";
                if (!value.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2)
                    return "InvalidHeaderDeserialization (data_offsets)";
                if (!offsets[0].TryGetUInt64(out var start) || !offsets[1].TryGetUInt64(out var end)) return "InvalidHeaderDeserialization (offset)";
                ulong elements = 1;
                foreach (var d in shape.EnumerateArray())
                {
                    if (d.ValueKind != JsonValueKind.Number || !d.TryGetUInt64(out var size)) return "InvalidHeaderDeserialization (dimension)";
                    allLoadable &= size <= int.MaxValue;
                    if (elements != 0 && size > ulong.MaxValue / elements) return "ValidationOverflow";
                    elements *= size;
                }
                var name = dtype.GetString()!;
                if (elements > ulong.MaxValue / (ulong)DtypeSizes[name]) return "ValidationOverflow";
                tensors.Add((property.Name, name, start, end, elements));
                allLoadable &= name == "F32" || (name == "I64" && property.Name.EndsWith(".num_batches_tracked", StringComparison.Ordinal));
            }
        }
        catch (JsonException)
        {
            return "InvalidHeaderDeserialization";
        }
        ulong at = 0;
        foreach (var t in tensors.OrderBy(t => t.Start).ThenBy(t => t.End))
        {
            if (t.Start != at || t.End < t.Start) return $"InvalidOffset({t.Name})";
            if (t.End - t.Start != t.Elements * (ulong)DtypeSizes[t.Dtype]) return $"TensorInvalidInfo({t.Name})";
            at = t.End;
        }
        if (at + 8 + n != (ulong)bytes.Length) return "MetadataIncompleteBuffer";
        loadable = allLoadable;
        return null;
    }

    /// <summary>
    /// For a valid file (<see cref="Violation"/> null): null when its <c>__metadata__</c> has no <c>data_sha256</c> or that
    /// entry is the lower-case hex SHA-256 of the data section (every byte after the header), and has no <c>metadata_sha256</c>
    /// or that entry is <see cref="MetadataDigest"/> of the other entries, as DistTrain writes them; otherwise what differs.
    /// DistTrain must refuse a file with such a mismatch, and only such a file, as corrupt.
    /// </summary>
    public static string? ChecksumMismatch(byte[] bytes)
    {
        var n = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        using var document = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, n));
        if (!document.RootElement.TryGetProperty("__metadata__", out var metadata) || metadata.ValueKind != JsonValueKind.Object)
            return null;
        if (metadata.TryGetProperty("metadata_sha256", out var recordedMetadata))
        {
            var digest = MetadataDigest([.. metadata.EnumerateObject().Select(p => (p.Name, p.Value.GetString()!))]);
            if (recordedMetadata.GetString() != digest)
                return $"metadata_sha256 '{recordedMetadata.GetString()}', the other metadata entries' SHA-256 {digest}";
        }
        if (!metadata.TryGetProperty("data_sha256", out var recorded))
            return null;
        var actual = Convert.ToHexStringLower(SHA256.HashData(bytes.AsSpan(8 + n)));
        return recorded.GetString() == actual ? null : $"data_sha256 '{recorded.GetString()}', data section's SHA-256 {actual}";
    }

    /// <summary>
    /// <c>metadata_sha256</c> as the docs define it, written out here independently of the reader: the lower-case hex SHA-256
    /// of the UTF-8 text of every entry but <c>metadata_sha256</c>, keys in ordinal order, each <c>{key length}:{key}{value
    /// length}:{value}</c> (lengths in UTF-16 code units).
    /// </summary>
    public static string MetadataDigest(IEnumerable<(string Key, string Value)> entries)
    {
        var text = new StringBuilder();
        foreach (var (key, value) in entries.Where(e => e.Key != "metadata_sha256").OrderBy(e => e.Key, StringComparer.Ordinal))
            text.Append(key.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)).Append(':').Append(key)
                .Append(value.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)).Append(':').Append(value);
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
    }
}
