using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Unicode;

namespace DistTrain.Core.Checkpoints;

/// <summary>One tensor of a safetensors header: its dtype, shape and byte range in the data section.</summary>
/// <param name="Name">The tensor's name.</param>
/// <param name="Dtype">Element type (<c>F32</c>, <c>I64</c>, ...).</param>
/// <param name="Shape">Row-major shape; every dimension non-negative.</param>
/// <param name="Start">First byte, relative to the start of the data section.</param>
/// <param name="End">One past the last byte; <c>End - Start</c> is the product of the shape times the dtype's size.</param>
internal sealed record SafeTensorsEntry(string Name, string Dtype, long[] Shape, long Start, long End)
{
    /// <summary>The shape as text, <c>[3, 2]</c>.</summary>
    public string ShapeText => $"[{string.Join(", ", Shape)}]";
}

/// <summary>
/// A safetensors header, parsed and validated with the rules of Hugging Face's reference reader (the <c>safetensors</c>
/// crate, <c>safetensors/src/tensor.rs</c>, <c>read_metadata</c> and <c>Metadata::validate</c>): a header length of at
/// most 100,000,000 bytes inside the file; UTF-8 JSON whose top level is an object; <c>__metadata__</c> a map of strings;
/// per tensor a known dtype, a shape of non-negative integers and two <c>data_offsets</c>; the tensors, in offset order,
/// contiguous from byte 0 (no overlap, no alias, no gap), each spanning exactly its shape times its dtype's size without
/// overflow, and together covering the data section to its last byte. Also refused here: duplicate names and nesting
/// deeper than a header needs.
/// </summary>
internal sealed class SafeTensorsHeader
{
    /// <summary>The reference reader's limit on the header length, bytes.</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private static readonly Dictionary<string, int> DtypeSizes = new(StringComparer.Ordinal)
    {
        ["BOOL"] = 1, ["U8"] = 1, ["I8"] = 1, ["F8_E5M2"] = 1, ["F8_E4M3"] = 1, ["I16"] = 2, ["U16"] = 2, ["F16"] = 2,
        ["BF16"] = 2, ["I32"] = 4, ["U32"] = 4, ["F32"] = 4, ["F64"] = 8, ["I64"] = 8, ["U64"] = 8,
    };

    private SafeTensorsHeader(long dataStart, IReadOnlyList<SafeTensorsEntry> tensors, IReadOnlyDictionary<string, string> metadata)
    {
        DataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
    }

    /// <summary>Offset of the data section in the file: 8 + the header length.</summary>
    public long DataStart { get; }

    /// <summary>The tensors in offset order.</summary>
    public IReadOnlyList<SafeTensorsEntry> Tensors { get; }

    /// <summary>The <c>__metadata__</c> map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Reads the 8-byte little-endian header length and checks it against the limit and the file.</summary>
    /// <param name="path">Names the file in errors.</param>
    /// <param name="start">The file's first bytes (at least 9 when the file has them: the 9th tells a header length from a
    /// pickle's or zip archive's signature).</param>
    /// <param name="fileLength">The file's length, bytes.</param>
    /// <exception cref="SafeTensorsFormatException">The file is shorter than 8 bytes or the length is over the limit or past the end.</exception>
    public static int ReadHeaderLength(string path, ReadOnlySpan<byte> start, long fileLength)
    {
        if (fileLength < 8 || start.Length < 8)
            throw Fail(path, null, $"{fileLength} bytes is too short for a safetensors file (the 8-byte header length is missing). The file is truncated or not safetensors.");
        // torch.save writes a zip archive (PyTorch 1.6 and later) or, with _use_new_zipfile_serialization=False, a pickle.
        // A safetensors header is JSON, so its first byte (byte 8) is '{': a header length whose low bytes read as a
        // pickle's start (0x80, then protocol 2 to 5: 640, 896, 1,152 or 1,408 bytes, plus any multiple of 65,536) is still safetensors.
        var jsonFollows = start.Length > 8 && start[8] == (byte)'{';
        if (!jsonFollows && (start[0] == (byte)'P' && start[1] == (byte)'K' && start[2] == 3 && start[3] == 4 || start[0] == 0x80 && start[1] is >= 2 and <= 5))
            throw Fail(path, null, $"the file is {(start[0] == 0x80 ? "a Python pickle" : "a zip archive")}, as torch.save writes, not safetensors. " +
                "In PyTorch, save the state_dict with safetensors instead: safetensors.torch.save_file(model.state_dict(), \"model.safetensors\").");
        var length = BinaryPrimitives.ReadUInt64LittleEndian(start);
        // A JSON file (summary.json, config.json) given for a model: its first bytes read as an absurd length.
        // Text in all eight bytes: a real length is at most 100,000,000, so its high bytes are zero.
        if ((length > MaxHeaderBytes || 8 + (long)length > fileLength) && FirstNonBlank(start) is (byte)'{' or (byte)'[' && AllText(start[..8]))
            throw Fail(path, null, $"the file starts with '{(char)FirstNonBlank(start)}': it is JSON text, not safetensors (which starts with an 8-byte header length).{SiblingModel(path)}");
        if (length > MaxHeaderBytes)
            throw Fail(path, null, $"the header length field says {length:N0} bytes, over the {MaxHeaderBytes:N0}-byte limit safetensors readers apply. The file is corrupt or not safetensors.");
        if (8 + (long)length > fileLength)
            throw Fail(path, null, $"the header length field says {length:N0} bytes, but the file has only {fileLength:N0} (8 + header + data). The file is truncated or not safetensors.");
        return (int)length;
    }

    /// <summary>True when every byte is printable ASCII or JSON whitespace, as the start of a JSON text is.</summary>
    private static bool AllText(ReadOnlySpan<byte> bytes)
    {
        foreach (var b in bytes)
            if (b is not ((>= (byte)' ' and <= (byte)'~') or (byte)'\t' or (byte)'\r' or (byte)'\n')) return false;
        return true;
    }

    /// <summary>The first byte of <paramref name="start"/> that is not JSON whitespace; 0 when there is none.</summary>
    private static byte FirstNonBlank(ReadOnlySpan<byte> start)
    {
        foreach (var b in start)
            if (b is not ((byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n')) return b;
        return 0;
    }

    /// <summary>" Use FOLDER/model.safetensors ..." when the file's folder holds one (a run folder), else empty.</summary>
    private static string SiblingModel(string path)
    {
        var sibling = Path.Combine(Path.GetDirectoryName(path) ?? "", "model.safetensors");
        return !string.Equals(Path.GetFileName(path), "model.safetensors", StringComparison.Ordinal) && File.Exists(sibling)
            ? $" The model of this folder is {sibling}: give that path."
            : " Give the model.safetensors file a training run wrote (runs/<UTC time>/model.safetensors).";
    }

    /// <summary>Parses and validates the header JSON.</summary>
    /// <param name="path">Names the file in errors.</param>
    /// <param name="json">The header bytes (after the 8-byte length).</param>
    /// <param name="fileLength">The file's length, bytes: the tensors must cover everything after the header.</param>
    /// <exception cref="SafeTensorsFormatException">The header breaks one of the rules above; the message names the tensor and bytes.</exception>
    public static SafeTensorsHeader Parse(string path, ReadOnlyMemory<byte> json, long fileLength)
    {
        var dataStart = 8L + json.Length;
        var dataLength = fileLength - dataStart;
        if (!Utf8.IsValid(json.Span))
            throw Fail(path, null, $"the {json.Length:N0}-byte header is not valid UTF-8 text. The file is corrupt or not safetensors.");
        var tensors = new List<SafeTensorsEntry>();
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            // A valid header nests three deep ({ name: { shape: [ ] } }); duplicate names would let two entries alias one name.
            using var document = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 8, AllowDuplicateProperties = false });
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw Fail(path, null, $"the header is a JSON {document.RootElement.ValueKind}, not an object mapping tensor names to dtype, shape and data_offsets.");
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__") ReadMetadata(path, property.Value, metadata);
                else tensors.Add(ReadEntry(path, property.Name, property.Value));
            }
        }
        catch (JsonException e)
        {
            throw Fail(path, null, $"the header is not valid JSON ({e.Message}). The file is corrupt or not safetensors.");
        }
        tensors.Sort((a, b) => a.Start != b.Start ? a.Start.CompareTo(b.Start) : a.End.CompareTo(b.End));
        CheckLayout(path, tensors, dataLength);
        return new SafeTensorsHeader(dataStart, tensors, metadata);
    }

    private static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind == JsonValueKind.Null) return;
        if (value.ValueKind != JsonValueKind.Object)
            throw Fail(path, null, $"__metadata__ is a JSON {value.ValueKind}; it must be an object of strings.");
        foreach (var item in value.EnumerateObject())
            metadata[item.Name] = item.Value.ValueKind == JsonValueKind.String
                ? item.Value.GetString()!
                : throw Fail(path, null, $"__metadata__ entry {Quote(item.Name)} is a JSON {item.Value.ValueKind}; metadata values must be strings.");
    }

    private static SafeTensorsEntry ReadEntry(string path, string name, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
            throw Fail(path, name, $"tensor {Quote(name)} is a JSON {value.ValueKind}, not an object with dtype, shape and data_offsets.");
        if (!value.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw Fail(path, name, $"tensor {Quote(name)} has no dtype string.");
        var dtype = dtypeElement.GetString()!;
        if (!DtypeSizes.ContainsKey(dtype))
            throw Fail(path, name, $"tensor {Quote(name)} has dtype {Quote(dtype)}, which safetensors does not define (known: {string.Join(", ", DtypeSizes.Keys)}).");
        if (!value.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw Fail(path, name, $"tensor {Quote(name)} has no shape array.");
        var shape = new long[shapeElement.GetArrayLength()];
        for (var i = 0; i < shape.Length; i++)
        {
            var dimension = shapeElement[i];
            shape[i] = dimension.ValueKind == JsonValueKind.Number && dimension.TryGetInt64(out var size) && size >= 0
                ? size
                : throw Fail(path, name, $"tensor {Quote(name)} has shape dimension {i} = {Raw(dimension)}; dimensions must be whole numbers from 0 to {long.MaxValue}.");
        }
        if (!value.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2)
            throw Fail(path, name, $"tensor {Quote(name)} needs data_offsets [start, end]; it has {(value.TryGetProperty("data_offsets", out var o) ? Raw(o) : "none")}.");
        long Offset(int index) => offsets[index].ValueKind == JsonValueKind.Number && offsets[index].TryGetInt64(out var offset) && offset >= 0
            ? offset
            : throw Fail(path, name, $"tensor {Quote(name)} has data_offsets {Raw(offsets)}; offsets must be whole numbers from 0 to {long.MaxValue}.");
        return new SafeTensorsEntry(name, dtype, shape, Offset(0), Offset(1));
    }

    /// <summary>The tensors (sorted by offset) must tile the data section exactly, each spanning its shape times its dtype.</summary>
    private static void CheckLayout(string path, List<SafeTensorsEntry> tensors, long dataLength)
    {
        long at = 0;
        SafeTensorsEntry? previous = null;
        foreach (var t in tensors)
        {
            var offsets = $"data_offsets [{t.Start}, {t.End}]";
            if (t.End < t.Start)
                throw Fail(path, t.Name, $"tensor {Quote(t.Name)} has {offsets}: the end is before the start.");
            if (t.Start < at)
                throw Fail(path, t.Name, $"tensor {Quote(t.Name)} has {offsets}, but tensor {Quote(previous!.Name)} already holds bytes [{previous.Start}, {previous.End}): the two overlap in bytes [{t.Start}, {Math.Min(at, t.End)}). Each byte of the data section must belong to one tensor.");
            if (t.Start > at)
                throw Fail(path, t.Name, $"bytes [{at}, {t.Start}) of the data section belong to no tensor (tensor {Quote(t.Name)} has {offsets}{(previous is null ? "" : $", the one before ends at {at}")}). The file is corrupt.");
            if (t.End > dataLength)
                throw Fail(path, t.Name, $"tensor {Quote(t.Name)} has {offsets}, past the end of the {dataLength:N0}-byte data section. The file is truncated or corrupt.");
            var size = DtypeSizes[t.Dtype];
            long elements = 1;
            foreach (var d in t.Shape)
                if (d != 0 && elements > long.MaxValue / d)
                    throw Fail(path, t.Name, $"tensor {Quote(t.Name)} has shape {t.ShapeText}, whose element count overflows.");
                else elements *= d;
            if (elements > long.MaxValue / size || elements * size != t.End - t.Start)
                throw Fail(path, t.Name, $"tensor {Quote(t.Name)} is {t.Dtype} with shape {t.ShapeText}, {(elements > long.MaxValue / size ? "too many bytes to count" : $"{elements * size:N0} bytes")}, but its {offsets} span {t.End - t.Start:N0} bytes.");
            at = t.End;
            previous = t;
        }
        if (at != dataLength)
            throw Fail(path, previous?.Name, $"the data section has {dataLength:N0} bytes but the tensors cover only [0, {at}): bytes [{at}, {dataLength}) belong to no tensor. The file is corrupt (trailing bytes).");
    }

    /// <summary>A name as it appears in messages: quoted, control characters escaped, at most 80 characters.</summary>
    internal static string Quote(string name)
    {
        var escaped = string.Concat(name.Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString()));
        return $"'{(escaped.Length <= 80 ? escaped : escaped[..80] + "...")}'";
    }

    private static string Raw(JsonElement element)
    {
        var text = string.Concat(element.GetRawText().Select(c => char.IsControl(c) ? " " : c.ToString()));
        return text.Length <= 40 ? text : text[..40] + "...";
    }

    private static SafeTensorsFormatException Fail(string path, string? tensor, string problem) => new(path, tensor, $"{path}: {problem}");
}
