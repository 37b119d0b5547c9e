using System.Buffers.Binary;
using System.Text;
using DistTrain.Core.Checkpoints;

namespace DistTrain.Tests;

/// <summary>
/// Malformed safetensors files are refused as the reference reader (the <c>safetensors</c> crate) refuses them, with a
/// <see cref="SafeTensorsFormatException"/> naming the file, the tensor and the bytes.
/// </summary>
public class SafeTensorsHostileTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-st-hostile-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>A file with the given header JSON (padded to 8 bytes) and <paramref name="dataBytes"/> bytes of data.</summary>
    private static byte[] File(string header, int dataBytes)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var padded = (json.Length + 7) / 8 * 8;
        var bytes = new byte[8 + padded + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)padded);
        json.CopyTo(bytes, 8);
        bytes.AsSpan(8 + json.Length, padded - json.Length).Fill((byte)' ');
        return bytes;
    }

    private static SafeTensorsFormatException Refuse(byte[] bytes) =>
        Assert.Throws<SafeTensorsFormatException>(() => SafeTensors.Read("hostile.safetensors", bytes));

    private static void AssertMentions(Exception error, params string[] parts)
    {
        Assert.StartsWith("hostile.safetensors: ", error.Message);
        foreach (var part in parts) Assert.Contains(part, error.Message);
    }

    [Fact]
    public void A_file_torch_save_wrote_is_named_as_such_with_how_to_save_safetensors()
    {
        // torch.save's zip archive (PyTorch 1.6 and later) and its older pickle: before, "the header length field says
        // 578,712,552,184,433,488 bytes ... corrupt or not safetensors".
        byte[] zip = [(byte)'P', (byte)'K', 3, 4, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        byte[] pickle = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e];
        AssertMentions(Refuse(zip), "the file is a zip archive, as torch.save writes, not safetensors", "safetensors.torch.save_file(model.state_dict(), \"model.safetensors\")");
        AssertMentions(Refuse(pickle), "the file is a Python pickle, as torch.save writes, not safetensors");
    }

    [Theory]
    [InlineData(640)] // 0x0280: the length field starts 0x80 0x02, as a protocol-2 pickle does
    [InlineData(896)] // 0x0380
    [InlineData(1408)] // 0x0580
    public void A_valid_file_whose_header_length_starts_like_a_pickle_is_read_both_whole_and_header_only(int headerBytes)
    {
        // Before, these were refused as "a Python pickle, as torch.save writes": a checkpoint whose metadata grew to 896
        // bytes could not be resumed from.
        const string tensor = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"__metadata__\":{\"note\":\"";
        var header = tensor + new string('x', headerBytes - tensor.Length - 3) + "\"}}";
        Assert.Equal(headerBytes, Encoding.UTF8.GetByteCount(header));
        var bytes = File(header, 4);
        Assert.Equal(0x80, bytes[0]);
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(8 + headerBytes), 2.5f);
        Assert.Equal([2.5f], SafeTensors.Read("valid.safetensors", bytes)["a"].Data);
        var path = Path.Combine(_directory, "valid.safetensors");
        System.IO.File.WriteAllBytes(path, bytes);
        Assert.Equal(headerBytes - tensor.Length - 3, SafeTensors.ReadMetadata(path)["note"].Length);
    }

    [Fact]
    public void A_JSON_file_given_for_a_model_is_named_as_JSON_pointing_at_the_model_of_its_folder()
    {
        // predict --model runs/<run>/summary.json: before, "the header length field says 8,390,328,298,149,775,995 bytes".
        var summary = Path.Combine(_directory, "summary.json");
        System.IO.File.WriteAllText(summary, "{\n  \"version\": \"1.0.0\",\n  \"epochs\": []\n}\n");
        var alone = Assert.Throws<SafeTensorsFormatException>(() => SafeTensors.Read(summary));
        Assert.Equal($"{summary}: the file starts with '{{': it is JSON text, not safetensors (which starts with an 8-byte header length). " +
            "Give the model.safetensors file a training run wrote (runs/<UTC time>/model.safetensors).", alone.Message);
        var model = Path.Combine(_directory, "model.safetensors");
        System.IO.File.WriteAllBytes(model, File("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 4));
        var error = Assert.Throws<SafeTensorsFormatException>(() => SafeTensors.ReadMetadata(summary));
        Assert.Equal($"{summary}: the file starts with '{{': it is JSON text, not safetensors (which starts with an 8-byte header length). " +
            $"The model of this folder is {model}: give that path.", error.Message);
        AssertMentions(Refuse(Encoding.UTF8.GetBytes("  [1, 2, 3, 4, 5]")), "the file starts with '[': it is JSON text, not safetensors");
        // A truncated safetensors file whose length (31,520: bytes 20 7B 00 ...) starts like text is still called truncated.
        var cut = new byte[100];
        BinaryPrimitives.WriteUInt64LittleEndian(cut, 31_520);
        AssertMentions(Refuse(cut), "the header length field says 31,520 bytes, but the file has only 100", "truncated");
    }

    [Fact]
    public void A_valid_file_whose_header_length_byte_is_an_open_brace_still_reads()
    {
        // A header of 123 bytes: the length field's first byte is '{' (0x7B), the rest zero.
        var json = """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""".PadRight(123);
        var bytes = new byte[8 + 123 + 4];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, 123);
        Encoding.UTF8.GetBytes(json).CopyTo(bytes, 8);
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(8 + 123), 2.5f);
        Assert.Equal((byte)'{', bytes[0]);
        Assert.Equal(new[] { 2.5f }, SafeTensors.Read("brace.safetensors", bytes)["a"].Data);
    }

    [Fact]
    public void Overlapping_data_offsets_are_refused_naming_both_tensors_and_the_bytes()
    {
        var error = Refuse(File("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12));
        Assert.Equal("b", error.Tensor);
        AssertMentions(error, "'b'", "[4, 12]", "'a'", "overlap in bytes [4, 8)");
    }

    [Fact]
    public void Aliased_data_offsets_are_refused()
    {
        var error = Refuse(File("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8));
        AssertMentions(error, "[0, 8]", "overlap");
    }

    [Fact]
    public void Bytes_no_tensor_covers_are_refused_between_tensors_and_at_the_end()
    {
        var gap = Refuse(File("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""", 12));
        AssertMentions(gap, "bytes [4, 8)", "belong to no tensor", "'b'");
        // Found by the fuzzer: an empty header followed by one byte was accepted (smallest input, 17 bytes).
        var trailing = Refuse(Convert.FromHexString("08000000000000007B7D20202020202020"));
        AssertMentions(trailing, "1 bytes", "bytes [0, 1) belong to no tensor");
        var afterTensor = Refuse(File("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 6));
        AssertMentions(afterTensor, "6 bytes", "[4, 6)");
    }

    [Fact]
    public void Offsets_past_the_end_and_a_header_length_beyond_the_file_are_refused()
    {
        var past = Refuse(File("""{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""", 8));
        AssertMentions(past, "'a'", "[0, 16]", "past the end of the 8-byte data section", "truncated");
        var header = File("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 4);
        BinaryPrimitives.WriteUInt64LittleEndian(header, 1000);
        AssertMentions(Refuse(header), "1,000 bytes", $"only {header.Length} ");
        BinaryPrimitives.WriteUInt64LittleEndian(header, ulong.MaxValue);
        AssertMentions(Refuse(header), "over the 100,000,000-byte limit");
        AssertMentions(Refuse([1, 2, 3]), "3 bytes is too short");
    }

    [Fact]
    public void A_dtype_other_than_F32_is_refused_naming_the_tensor_and_its_bytes_and_an_int64_counter_is_skipped()
    {
        var error = Refuse(File("""{"w":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}""", 4));
        Assert.Equal("w", error.Tensor);
        AssertMentions(error, "'w'", "bytes [0, 4)", "dtype F16", "only F32");
        var unknown = Refuse(File("""{"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}""", 4));
        AssertMentions(unknown, "'w'", "'F33'");
        var counter = SafeTensors.Read("ok.safetensors", File("""{"0.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"1.num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[4,12]}}""", 12));
        Assert.Equal(["0.weight"], counter.Keys);
    }

    [Fact]
    public void A_header_that_is_not_JSON_or_not_UTF8_or_not_the_right_shape_is_refused()
    {
        AssertMentions(Refuse(File("not json at all", 0)), "not valid JSON");
        AssertMentions(Refuse(File("[1, 2]", 0)), "JSON Array, not an object");
        // Found by the fuzzer: a byte that is not UTF-8 inside a metadata string was accepted (smallest input, 112 bytes).
        AssertMentions(Refuse(Convert.FromHexString(
            "68000000000000007B225F5F6D657461646174615F5F223A7B22666F726D6174223A22F074227D2C22392E6E756D5F626174636865735F747261636B6564223A7B226474797065223A22493634222C227368617065223A5B5D2C22646174615F6F666673657473223A5B302C385D7D7D")),
            "not valid UTF-8");
        AssertMentions(Refuse(File("""{"__metadata__":{"n":1}}""", 0)), "__metadata__ entry 'n'", "must be strings");
        AssertMentions(Refuse(File("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8)), "not valid JSON");
        AssertMentions(Refuse(File("""{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 4)), "'a'", "dimension 0 = -1");
        AssertMentions(Refuse(File("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}""", 4)), "'a'", "needs data_offsets [start, end]");
        AssertMentions(Refuse(File(new string('[', 100_000), 0)), "not valid JSON");
    }

    [Fact]
    public void A_shape_that_does_not_match_its_bytes_or_overflows_is_refused()
    {
        AssertMentions(Refuse(File("""{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8)), "'a'", "F32 with shape [3], 12 bytes", "span 8 bytes");
        AssertMentions(Refuse(File("""{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}""", 0)), "'a'", "overflows");
    }

    [Fact]
    public void Inspect_exits_with_code_2_naming_the_tensor_and_the_bytes()
    {
        var path = Path.Combine(_directory, "overlap.safetensors");
        System.IO.File.WriteAllBytes(path, File("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 12));
        var (exit, _, error) = CliProcess.Run(["inspect", path]);
        Assert.Equal(2, exit);
        Assert.Contains(path, error);
        Assert.Contains("'b'", error);
        Assert.Contains("overlap in bytes [4, 8)", error);
    }
}
