using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

public class SafeTensorsTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-st-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>
    /// A model file this process may not read (mode 000, or another user's of mode 600) gave predict, inspect, evaluate and
    /// export .NET's bare "Access to the path ... is denied."; it now names the file, the cause, its mode and the user, and
    /// says to check its permissions, as an unreadable config file does. (Tests run as root, which reads any file, so the
    /// denial is thrown by the read given to <see cref="SafeTensors.Readable{T}"/>, the wrapper every reader goes through.)
    /// </summary>
    [Fact]
    public void An_unreadable_file_is_named_with_the_cause_its_mode_and_to_check_its_permissions()
    {
        if (OperatingSystem.IsWindows()) return; // file modes are Unix's
        var path = Path.Combine(_directory, "model.safetensors");
        System.IO.File.WriteAllBytes(path, [0]);
        System.IO.File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var denied = new UnauthorizedAccessException($"Access to the path '{path}' is denied.");
        var error = Assert.Throws<UnreadableFileException>(() => SafeTensors.Readable<byte[]>(path, () => throw denied));
        Assert.Equal($"'{path}' cannot be read (Access to the path '{path}' is denied). Check its permissions: it has mode 600 and disttrain runs as " +
            $"user '{Environment.UserName}', which must be able to read the file and open each folder above it.", error.Message);
        Assert.Same(denied, error.InnerException);
        Assert.Equal(path, error.Path);
        // An input error: train, finetune and node (a Model:Pretrained they may not read) report it with exit code 2; they crashed.
        Assert.True(DistTrain.Cli.CliConsole.IsInputError(error));
        Assert.False(DistTrain.Cli.CliConsole.IsInputError(denied));
        // Other failures pass through unchanged, and a read that works returns its value.
        var io = new IOException("disk error");
        Assert.Same(io, Assert.Throws<IOException>(() => SafeTensors.Readable<byte[]>(path, () => throw io)));
        Assert.Equal(7, SafeTensors.Readable(path, () => 7));
        // A folder on the path that cannot be looked at: no mode.
        Assert.Equal($"'{path}/x' cannot be read (denied). Check its permissions: disttrain runs as user '{Environment.UserName}', which must be able to " +
            "read the file and open each folder above it.", SafeTensors.Unreadable(path + "/x", new UnauthorizedAccessException("denied")).Message);
    }

    private static ParameterVector Sample()
    {
        var layout = new ParameterLayout([("0.weight", [3, 2]), ("0.bias", [3])]);
        return new ParameterVector(layout, [1, 2, 3, 4, 5, 6, -1, -2, -3]);
    }

    [Fact]
    public void Tensors_round_trip_with_names_shapes_and_values()
    {
        var path = Path.Combine(_directory, "m.safetensors");
        SafeTensors.Write(path, Sample(), new Dictionary<string, string> { ["format"] = "pt" });
        var tensors = SafeTensors.Read(path);
        Assert.Equal(new[] { 3, 2 }, tensors["0.weight"].Shape);
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 6 }, tensors["0.weight"].Data);
        Assert.Equal(new float[] { -1, -2, -3 }, tensors["0.bias"].Data);
        // Header length (8 bytes) + header padded to 8 + 9 floats.
        var length = new FileInfo(path).Length;
        Assert.Equal(0, (length - 36) % 8);
    }

    [Fact]
    public void A_truncated_file_is_reported_with_its_name()
    {
        var path = Path.Combine(_directory, "cut.safetensors");
        SafeTensors.Write(path, Sample());
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^8]);
        var error = Assert.Throws<SafeTensorsFormatException>(() => SafeTensors.Read(path));
        Assert.Contains(path, error.Message);
        Assert.Contains("truncated", error.Message);
    }

    /// <summary>The data section of a safetensors file: every byte after the 8-byte length and the header.</summary>
    internal static byte[] DataSection(byte[] bytes) => bytes[(8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes))..];

    /// <summary>Overwrites 4 bytes in the middle of the file's data section with "XXXX", as a damaged copy would.</summary>
    internal static void DamageData(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var start = bytes.Length - DataSection(bytes).Length;
        "XXXX"u8.CopyTo(bytes.AsSpan(start + (bytes.Length - start) / 2));
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>Blanks the <c>data_sha256</c> and <c>metadata_sha256</c> entries of the file's header with spaces (valid
    /// JSON, same length), as a file written before the entries existed or by another tool has none.</summary>
    internal static void RemoveDataChecksum(string path)
    {
        foreach (var key in new[] { SafeTensors.DataSha256Key, SafeTensors.MetadataSha256Key })
            EditHeader(path, header => Regex.Replace(header, $"\"{key}\":\"[0-9a-f]{{64}}\",|,\"{key}\":\"[0-9a-f]{{64}}\"|\"{key}\":\"[0-9a-f]{{64}}\"",
                m => new string(' ', m.Length)));
    }

    /// <summary>Rewrites the file's header text with <paramref name="edit"/>, which must keep its length in bytes (the data
    /// stays where it is), and checks that it changed something.</summary>
    internal static void EditHeader(string path, Func<string, string> edit)
    {
        var bytes = File.ReadAllBytes(path);
        var headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        var header = Encoding.UTF8.GetString(bytes, 8, headerLength);
        var edited = edit(header);
        Assert.NotEqual(header, edited);
        Assert.Equal(headerLength, Encoding.UTF8.GetByteCount(edited));
        Encoding.UTF8.GetBytes(edited).CopyTo(bytes, 8);
        File.WriteAllBytes(path, bytes);
    }

    /// <summary>The SHA-256 the docs define for <c>metadata_sha256</c>, written out independently of the reader: every other
    /// entry, keys in ordinal order, each as <c>{key length}:{key}{value length}:{value}</c>, as UTF-8.</summary>
    internal static string MetadataDigest(IReadOnlyDictionary<string, string> metadata) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Concat(metadata
            .Where(m => m.Key != "metadata_sha256").OrderBy(m => m.Key, StringComparer.Ordinal)
            .Select(m => $"{m.Key.Length}:{m.Key}{m.Value.Length}:{m.Value}")))));

    [Fact]
    public void Write_records_the_SHA256_of_the_data_section_replacing_a_stale_one()
    {
        var path = Path.Combine(_directory, "m.safetensors");
        SafeTensors.Write(path, Sample(), new Dictionary<string, string> { ["format"] = "pt", [SafeTensors.DataSha256Key] = new string('0', 64) });
        var metadata = SafeTensors.ReadMetadata(path);
        Assert.Equal("pt", metadata["format"]);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(DataSection(File.ReadAllBytes(path)))), metadata[SafeTensors.DataSha256Key]);
        // The 9 floats' bytes, as PyTorch would write them: 1, 2, ... -3 little-endian.
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(Sample().Values.AsSpan()))),
            metadata[SafeTensors.DataSha256Key]);
        // The metadata's own checksum covers every other entry, the data's included, keys in ordinal order:
        // the SHA-256 of "11:data_sha25664:<hex>6:format2:pt".
        Assert.Equal(MetadataDigest(metadata), metadata[SafeTensors.MetadataSha256Key]);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"11:data_sha25664:{metadata[SafeTensors.DataSha256Key]}6:format2:pt"))),
            metadata[SafeTensors.MetadataSha256Key]);
        // Without metadata the checksums are the only entries.
        SafeTensors.Write(path, Sample());
        Assert.Equal([SafeTensors.DataSha256Key, SafeTensors.MetadataSha256Key], SafeTensors.ReadMetadata(path).Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Damaged_data_is_refused_as_corrupt_naming_the_file_and_what_to_do()
    {
        var path = Path.Combine(_directory, "m.safetensors");
        SafeTensors.Write(path, Sample(), new Dictionary<string, string> { ["format"] = "pt" });
        var recorded = SafeTensors.ReadMetadata(path)[SafeTensors.DataSha256Key];
        DamageData(path);
        var actual = Convert.ToHexStringLower(SHA256.HashData(DataSection(File.ReadAllBytes(path))));
        var error = Assert.Throws<InvalidDataException>(() => SafeTensors.Read(path));
        Assert.Equal($"{path}: checksum mismatch: the data section's SHA-256 is {actual}, the header records {recorded}. " +
            "The file is corrupt (damaged on disk or in a copy), so its weights cannot be trusted: copy it again from where its run wrote it, " +
            "or write a model anew from one of the run's checkpoints (Checkpoint:Directory) with 'train --resume' (for a damaged checkpoint, resume from an earlier one). If another tool rewrote the file on purpose and kept DistTrain's " +
            "metadata (safetensors' save_file(..., metadata=...) lays the tensors out anew), remove data_sha256 and metadata_sha256 from its metadata.", error.Message);
        // Pretrained weights (Model:Pretrained, finetune --from) read the tensors the same way.
        var model = new DistTrain.Core.Models.Sequential(2, [new DistTrain.Core.Layers.Dense(2, 3)]);
        var weights = new ParameterVector(model.Layout);
        Assert.Equal(error.Message, Assert.Throws<InvalidDataException>(() => DistTrain.Core.Models.PretrainedWeights.Load(path, model, weights, replaceHead: false)).Message);
    }

    [Fact]
    public void An_edited_metadata_entry_is_refused_by_both_readers_naming_the_file_and_what_to_do()
    {
        // data_sha256 covers only the tensors: a model file whose normalization mean had a changed byte loaded and predicted wrongly.
        var path = Path.Combine(_directory, "m.safetensors");
        SafeTensors.Write(path, Sample(), new Dictionary<string, string> { ["format"] = "pt", ["input_mean"] = "0.2860" });
        var recorded = SafeTensors.ReadMetadata(path)[SafeTensors.MetadataSha256Key];
        EditHeader(path, header => header.Replace("\"0.2860\"", "\"0.7860\"", StringComparison.Ordinal));
        var edited = new Dictionary<string, string> { ["format"] = "pt", ["input_mean"] = "0.7860", [SafeTensors.DataSha256Key] = DataChecksum(path) };
        var expected = $"{path}: checksum mismatch: the header's metadata has SHA-256 {MetadataDigest(edited)}, the header records {recorded}. " +
            "The metadata (the network, the input standardization, the class names, ...) was edited or is damaged, so the file would load as " +
            "a model that predicts wrongly: copy it again from where its run wrote it, or write a model anew from one of the run's checkpoints (Checkpoint:Directory) with 'train --resume' (for a damaged checkpoint, resume from an earlier one). " +
            "If the metadata was changed on purpose, remove metadata_sha256 from it.";
        Assert.Equal(expected, Assert.Throws<InvalidDataException>(() => SafeTensors.ReadMetadata(path)).Message);
        Assert.Equal(expected, Assert.Throws<InvalidDataException>(() => SafeTensors.Read(path)).Message);
        var model = new DistTrain.Core.Models.Sequential(2, [new DistTrain.Core.Layers.Dense(2, 3)]);
        Assert.Equal(expected, Assert.Throws<InvalidDataException>(() =>
            DistTrain.Core.Models.PretrainedWeights.Load(path, model, new ParameterVector(model.Layout), replaceHead: false)).Message);
        // The entry removed as the message says: the edit is taken as meant.
        EditHeader(path, header => Regex.Replace(header, ",\"metadata_sha256\":\"[0-9a-f]{64}\"", m => new string(' ', m.Length)));
        Assert.Equal("0.7860", SafeTensors.ReadMetadata(path)["input_mean"]);
        Assert.Equal(new float[] { -1, -2, -3 }, SafeTensors.Read(path)["0.bias"].Data);
    }

    private static string DataChecksum(string path) => Convert.ToHexStringLower(SHA256.HashData(DataSection(File.ReadAllBytes(path))));

    [Fact]
    public void A_file_without_the_checksum_reads_as_before()
    {
        var path = Path.Combine(_directory, "m.safetensors");
        SafeTensors.Write(path, Sample(), new Dictionary<string, string> { ["format"] = "pt" });
        RemoveDataChecksum(path);
        Assert.Equal(["format"], SafeTensors.ReadMetadata(path).Keys);
        Assert.Equal(new float[] { -1, -2, -3 }, SafeTensors.Read(path)["0.bias"].Data);
        // Nothing to check it against: damaged data reads as it is, as before the checksum existed.
        DamageData(path);
        Assert.Equal(new[] { 3, 2 }, SafeTensors.Read(path)["0.weight"].Shape);
    }
}
