using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
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
/// <remarks>
/// Files written here record <see cref="DataSha256Key"/>, the SHA-256 of their data section, and <see cref="MetadataSha256Key"/>,
/// that of the other metadata entries (<see cref="MetadataDigest"/>), in <c>__metadata__</c> (training checkpoints record the
/// same, see <see cref="TrainingCheckpoint"/>). <see cref="Read(string)"/> refuses a file whose data does not match the first,
/// and <see cref="Read(string)"/> and <see cref="ReadMetadata"/> one whose metadata does not match the second: damaged bytes
/// in a tensor would otherwise load as weights, and in the metadata (the network, the input standardization, the class
/// names) as a model that predicts wrongly. A file without an entry (written by PyTorch, another tool or an older
/// DistTrain) is read without that check.
/// </remarks>
public static class SafeTensors
{
    /// <summary>Metadata key of the SHA-256 (lower-case hex) of the data section: every byte after the header.</summary>
    public const string DataSha256Key = "data_sha256";

    /// <summary>Metadata key of the SHA-256 (lower-case hex) of every other metadata entry, <see cref="MetadataDigest"/>.</summary>
    public const string MetadataSha256Key = "metadata_sha256";

    /// <summary>
    /// The SHA-256 (lower-case hex) of every entry of <paramref name="metadata"/> but <see cref="MetadataSha256Key"/>, as
    /// <see cref="MetadataSha256Key"/> records it: in ordinal order of their keys, each as <c>{key length}:{key}{value length}:{value}</c>
    /// (lengths in UTF-16 code units, decimal), hashed as UTF-8, so no two different sets of entries hash the same text.
    /// Keys and values are the JSON strings as decoded, so how the header escapes or orders them does not matter.
    /// </summary>
    /// <param name="metadata">A <c>__metadata__</c> map.</param>
    internal static string MetadataDigest(IReadOnlyDictionary<string, string> metadata)
    {
        var text = new StringBuilder();
        foreach (var key in metadata.Keys.Where(k => k != MetadataSha256Key).Order(StringComparer.Ordinal))
        {
            var value = metadata[key];
            text.Append(CultureInfo.InvariantCulture, $"{key.Length}:{key}{value.Length}:{value}");
        }
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
    }

    /// <summary>
    /// Refuses <paramref name="metadata"/> when it records <see cref="MetadataSha256Key"/> and its other entries do not
    /// hash to it (<see cref="MetadataDigest"/>); a map without the entry passes.
    /// </summary>
    /// <exception cref="InvalidDataException">The digests differ; the message names the file, both SHA-256s and what to do.</exception>
    private static void CheckMetadata(string path, IReadOnlyDictionary<string, string> metadata)
    {
        if (!metadata.TryGetValue(MetadataSha256Key, out var recorded)) return;
        var digest = MetadataDigest(metadata);
        if (!string.Equals(digest, recorded, StringComparison.Ordinal))
            throw new InvalidDataException($"{path}: checksum mismatch: the header's metadata has SHA-256 {digest}, the header records {recorded}. " +
                "The metadata (the network, the input standardization, the class names, ...) was edited or is damaged, so the file would load as " +
                "a model that predicts wrongly: copy it again from where its run wrote it, or write a model anew from one of the run's checkpoints (Checkpoint:Directory) with 'train --resume' (for a damaged checkpoint, resume from an earlier one). " +
                $"If the metadata was changed on purpose, remove {MetadataSha256Key} from it.");
    }

    /// <summary>Writes every segment of <paramref name="parameters"/> as an F32 tensor named as in its layout, with the
    /// data section's SHA-256 under <see cref="DataSha256Key"/> and then the metadata's own under <see cref="MetadataSha256Key"/>
    /// in <c>__metadata__</c> (replacing any such entries of <paramref name="metadata"/>).</summary>
    /// <param name="path">Target file; replaced atomically (<see cref="AtomicFile"/>): a reader sees the old file or the whole new one.</param>
    /// <param name="parameters">Flat weights and their layout.</param>
    /// <param name="metadata">Optional string metadata stored under <c>__metadata__</c>.</param>
    /// <exception cref="IOException">The file could not be written; the target is unchanged.</exception>
    public static void Write(string path, ParameterVector parameters, IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var segment in parameters.Layout.Segments)
            hash.AppendData(MemoryMarshal.AsBytes((ReadOnlySpan<float>)parameters.Segment(segment)));
        var entries = new Dictionary<string, string>(StringComparer.Ordinal);
        if (metadata is not null)
            foreach (var (key, value) in metadata) entries[key] = value;
        entries[DataSha256Key] = Convert.ToHexStringLower(hash.GetHashAndReset());
        entries.Remove(MetadataSha256Key);
        entries[MetadataSha256Key] = MetadataDigest(entries);
        var header = new Dictionary<string, object>(StringComparer.Ordinal) { ["__metadata__"] = entries };
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
        AtomicFile.Write(path, stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)padded);
            stream.Write(length);
            stream.Write(json);
            for (var i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
            foreach (var segment in parameters.Layout.Segments)
                stream.Write(MemoryMarshal.AsBytes((ReadOnlySpan<float>)parameters.Segment(segment)));
        });
    }

    /// <summary>The <c>__metadata__</c> string map of a safetensors file (empty when it has none); reads only the header,
    /// but validates it whole (see <see cref="SafeTensorsHeader"/>), and when it records <see cref="MetadataSha256Key"/>, checks
    /// the other entries against it.</summary>
    /// <exception cref="SafeTensorsFormatException">The header is malformed; the message names the file, the tensor and the bytes.</exception>
    /// <exception cref="InvalidDataException">The metadata's SHA-256 is not the recorded <see cref="MetadataSha256Key"/>: the
    /// header was edited or is damaged; the message names the file and says what to do.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="UnreadableFileException">This process may not read the file; the message names it and says to
    /// check its permissions (<see cref="Unreadable"/>).</exception>
    public static IReadOnlyDictionary<string, string> ReadMetadata(string path)
    {
        using var stream = Readable(path, () => File.OpenRead(path));
        Span<byte> start = stackalloc byte[9];
        var read = stream.ReadAtLeast(start, 9, throwOnEndOfStream: false);
        var headerLength = SafeTensorsHeader.ReadHeaderLength(path, start[..read], stream.Length);
        var header = new byte[headerLength];
        stream.Position = 8;
        stream.ReadExactly(header);
        var metadata = SafeTensorsHeader.Parse(path, header, stream.Length).Metadata;
        CheckMetadata(path, metadata);
        return metadata;
    }

    /// <summary>Reads every tensor of a safetensors file; when its metadata records <see cref="MetadataSha256Key"/>, checks the
    /// other entries against it, and when it records <see cref="DataSha256Key"/>, the data section (one SHA-256 pass over the
    /// bytes read).</summary>
    /// <exception cref="SafeTensorsFormatException">The file breaks the format (see <see cref="SafeTensorsHeader"/>: header length,
    /// JSON, overlapping, aliased or uncovered bytes, offsets past the end), or a tensor is not F32 (an int64
    /// <c>*.num_batches_tracked</c> counter is skipped) or too large for one array; the message names the file, the tensor and the bytes.</exception>
    /// <exception cref="InvalidDataException">The data section's SHA-256 is not the recorded <see cref="DataSha256Key"/>, or the
    /// metadata's not the recorded <see cref="MetadataSha256Key"/>: the file is corrupt; the message names it and says what to do.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="UnreadableFileException">This process may not read the file; the message names it and says to
    /// check its permissions (<see cref="Unreadable"/>).</exception>
    public static IReadOnlyDictionary<string, NamedTensor> Read(string path) => Read(path, Readable(path, () => File.ReadAllBytes(path)));

    /// <summary>
    /// Runs <paramref name="read"/>, which reads <paramref name="path"/>; a denied access (a model file of mode 000, or another
    /// user's of mode 600) becomes <see cref="Unreadable"/>'s exception instead of .NET's bare "Access to the path is denied".
    /// </summary>
    /// <exception cref="UnreadableFileException"><paramref name="read"/> threw an <see cref="UnauthorizedAccessException"/>; the
    /// message is <see cref="Unreadable"/>'s.</exception>
    internal static T Readable<T>(string path, Func<T> read)
    {
        if (InputFile.PipeProblem(path, "model or checkpoint file") is { } pipe)
            throw new UnreadableFileException(path, pipe, new IOException("not a file that can be read by size"));
        try
        {
            return read();
        }
        catch (UnauthorizedAccessException e) when (e is not UnreadableFileException)
        {
            throw Unreadable(path, e);
        }
    }

    /// <summary>
    /// The error for a safetensors file this process may not read, as an unreadable config file's: the file, the cause,
    /// its mode when it can be looked at, the user this process runs as, and to check its permissions.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="denied">The error reading it gave; kept as the inner exception.</param>
    /// <returns>The exception, which the commands report as an <c>error:</c> line with exit code 2.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="denied"/> is null.</exception>
    public static UnreadableFileException Unreadable(string path, Exception denied)
    {
        ArgumentNullException.ThrowIfNull(denied);
        string mode;
        try
        {
            mode = OperatingSystem.IsWindows() ? "" : $"it has mode {Convert.ToString((int)File.GetUnixFileMode(path) & 0b111_111_111, 8).PadLeft(3, '0')} and ";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or PlatformNotSupportedException)
        {
            mode = ""; // a folder on its path is closed to this user: nothing more to say about the file
        }
        var user = string.IsNullOrEmpty(Environment.UserName) ? "a user without a name" : $"user '{Environment.UserName}'";
        return new UnreadableFileException(path, $"'{path}' cannot be read ({denied.Message.TrimEnd('.')}). Check its permissions: {mode}disttrain " +
            $"runs as {user}, which must be able to read the file and open each folder above it.", denied);
    }

    /// <summary>Reads every tensor of a safetensors file already in memory and checks its recorded checksum, as
    /// <see cref="Read(string)"/>; <paramref name="path"/> only names it in errors.</summary>
    /// <exception cref="SafeTensorsFormatException">As <see cref="Read(string)"/>.</exception>
    /// <exception cref="InvalidDataException">As <see cref="Read(string)"/>.</exception>
    internal static IReadOnlyDictionary<string, NamedTensor> Read(string path, byte[] bytes)
    {
        var (tensors, metadata, dataStart) = ReadWithMetadata(path, bytes);
        CheckMetadata(path, metadata);
        if (metadata.TryGetValue(DataSha256Key, out var recorded))
        {
            var checksum = Convert.ToHexStringLower(SHA256.HashData(bytes.AsSpan(dataStart)));
            if (!string.Equals(checksum, recorded, StringComparison.Ordinal))
                throw new InvalidDataException($"{path}: checksum mismatch: the data section's SHA-256 is {checksum}, the header records {recorded}. " +
                    "The file is corrupt (damaged on disk or in a copy), so its weights cannot be trusted: copy it again from where its run wrote it, " +
                    $"or write a model anew from one of the run's checkpoints (Checkpoint:Directory) with 'train --resume' (for a damaged checkpoint, resume from an earlier one). If another tool rewrote the file on purpose and kept DistTrain's " +
                    $"metadata (safetensors' save_file(..., metadata=...) lays the tensors out anew), remove {DataSha256Key} and {MetadataSha256Key} from its metadata.");
        }
        return tensors;
    }

    /// <summary>Reads every tensor and the metadata of a safetensors file already in memory, and where its data section starts;
    /// does not check <see cref="DataSha256Key"/> nor <see cref="MetadataSha256Key"/> (the caller does: <see cref="TrainingCheckpoint.Read"/>, <see cref="Read(string, byte[])"/>).</summary>
    /// <exception cref="SafeTensorsFormatException">As <see cref="Read(string)"/>.</exception>
    internal static (IReadOnlyDictionary<string, NamedTensor> Tensors, IReadOnlyDictionary<string, string> Metadata, int DataStart) ReadWithMetadata(string path, byte[] bytes)
    {
        if (!BitConverter.IsLittleEndian)
            throw new PlatformNotSupportedException("safetensors data is little-endian; big-endian hosts are not supported.");
        var headerLength = SafeTensorsHeader.ReadHeaderLength(path, bytes, bytes.Length);
        var header = SafeTensorsHeader.Parse(path, bytes.AsMemory(8, headerLength), bytes.Length);
        var data = bytes.AsSpan((int)header.DataStart);
        var result = new Dictionary<string, NamedTensor>(StringComparer.Ordinal);
        foreach (var t in header.Tensors)
        {
            // PyTorch's BatchNorm counter (int64); DistTrain keeps no such counter (it matters only with momentum None).
            if (t.Dtype == "I64" && t.Name.EndsWith(".num_batches_tracked", StringComparison.Ordinal)) continue;
            if (t.Dtype != "F32")
                throw new SafeTensorsFormatException(path, t.Name, $"{path}: tensor {SafeTensorsHeader.Quote(t.Name)} (bytes [{t.Start}, {t.End}) of the data section) has dtype {t.Dtype}; DistTrain loads only F32. Save float32 weights (tensor.float()).");
            if (t.Shape.Any(d => d > int.MaxValue))
                throw new SafeTensorsFormatException(path, t.Name, $"{path}: tensor {SafeTensorsHeader.Quote(t.Name)} has shape {t.ShapeText}, a dimension too large to load.");
            var values = new float[(t.End - t.Start) / sizeof(float)];
            data[(int)t.Start..(int)t.End].CopyTo(MemoryMarshal.AsBytes(values.AsSpan()));
            result[t.Name] = new NamedTensor([.. t.Shape.Select(d => (int)d)], values);
        }
        return (result, header.Metadata, (int)header.DataStart);
    }
}
