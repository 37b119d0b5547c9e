using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using CsCheck;
using DistTrain.Core.Checkpoints;

namespace DistTrain.Fuzz.Targets;

/// <summary>
/// safetensors files (pretrained weights and checkpoints): valid files with random tensors, dtypes, shapes and metadata,
/// some recording the SHA-256 of their data (<c>data_sha256</c>) and some that of their metadata too (<c>metadata_sha256</c>),
/// as DistTrain writes them; headers whose offsets overlap,
/// alias, leave gaps, run past the end or overflow, with wrong dtypes and JSON types; and byte mutations of both.
/// </summary>
public static class SafeTensorsTarget
{
    private const string FileName = "fuzz.safetensors";

    private static readonly string[] Names = ["0.weight", "0.bias", "1.running_mean", "1.num_batches_tracked", "optimizer.exp_avg", "a", "", "__metadata__"];
    private static readonly string[] Dtypes = ["F32", "F32", "F32", "I64", "F16", "BF16", "F64", "U8", "BOOL", "f32", "X"];

    /// <summary>One tensor entry of a header; offsets are either consistent (null) or given.</summary>
    private sealed record Entry(string Name, string Dtype, long[] Shape, long[]? Offsets, string? RawValue);

    private static readonly Gen<long> Dimension = Gen.Frequency(
        (8, Gen.Long[0, 5]),
        (1, Gen.OneOf(ByteMutations.BoundaryIntegers)));

    private static readonly Gen<string> RawJsonValue = Gen.OneOf(
        Gen.Const("null"), Gen.Const("1e400"), Gen.Const("-0.5"), Gen.Const("\"F32\""), Gen.Const("[]"), Gen.Const("{}"),
        Gen.Const("[0, 4, 8]"), Gen.Const("[1.5, 2]"), Gen.Const("[\"0\", \"4\"]"), Gen.Const("true"),
        Gen.Const("18446744073709551616"), Gen.Const("[-4, 0]"));

    private static readonly Gen<Entry> Entries = Gen.Select(
        Gen.OneOf(Names), Gen.OneOf(Dtypes), Dimension.Array[0, 3],
        Gen.Frequency((6, Gen.Const((long[]?)null)), (3, Gen.Long[-8, 64].Array[2, 2].Select(a => (long[]?)a)),
            (1, Gen.OneOf(ByteMutations.BoundaryIntegers).Array[1, 3].Select(a => (long[]?)a))),
        Gen.Frequency((9, Gen.Const((string?)null)), (1, RawJsonValue.Select(s => (string?)s))),
        (name, dtype, shape, offsets, raw) => new Entry(name, dtype, shape, offsets, raw));

    /// <summary>A file from entries: consistent offsets unless given, the data section as long as they claim or off by a little.</summary>
    private static readonly Gen<byte[]> Structured = Gen.Select(Entries.Array[0, 5], Gen.Bool, Gen.Int[-6, 6], Gen.Int[0, 3],
        (entries, withMetadata, dataSlack, headerSlack) => Build(entries, withMetadata, dataSlack, headerSlack, checksums: 0));

    /// <summary>Valid files as DistTrain writes them (with the data's SHA-256 and the metadata's, as an older build with the
    /// data's only, or, as PyTorch's, without), including a PyTorch-style int64 counter.</summary>
    private static readonly Gen<byte[]> Valid = Gen.Select(
        Gen.Int[0, 4].SelectMany(n => Gen.Long[0, 4].Array[0, 3].Array[n, n]), Gen.Int[0, 3], Gen.Bool,
        (shapes, metadata, withCounter) =>
        {
            var entries = shapes.Select((shape, i) => new Entry($"{i}.weight", "F32", shape, null, null)).ToList();
            if (withCounter) entries.Add(new Entry("9.num_batches_tracked", "I64", [], null, null));
            return Build([.. entries], withMetadata: metadata > 0, 0, 0, checksums: Math.Max(0, metadata - 1));
        });

    /// <summary>The target: <see cref="SafeTensors.Read(string, byte[])"/> and the metadata reader over the same bytes.</summary>
    public static FuzzTarget Create() => new(
        "safetensors",
        Gen.Frequency((3, ByteMutations.Of(Gen.Frequency((1, Valid), (1, Structured)))), (2, Structured), (1, Valid)),
        bytes =>
        {
            var violation = SafeTensorsRules.Violation(bytes, out var loadable);
            var mismatch = violation is null && loadable ? SafeTensorsRules.ChecksumMismatch(bytes) : null;
            try
            {
                SafeTensors.Read(FileName, bytes);
            }
            catch (SafeTensorsFormatException) when (violation is not null || !loadable)
            {
                throw;
            }
            catch (SafeTensorsFormatException e)
            {
                throw new FuzzFinding("refused", $"a valid safetensors file of F32 tensors: {e.Message}");
            }
            catch (InvalidDataException) when (mismatch is not null)
            {
                throw; // corrupt: its data does not match its data_sha256, or its metadata its metadata_sha256
            }
            catch (InvalidDataException e) when (violation is not null || !loadable)
            {
                throw new FuzzFinding("accepted", $"a file the reference reader refuses or DistTrain cannot load ({violation ?? "not F32"}), refused only as corrupt: {e.Message}");
            }
            catch (InvalidDataException e)
            {
                throw new FuzzFinding("refused", $"a valid file whose data and metadata match their checksums or that has none: {e.Message}");
            }
            if (violation is not null)
                throw new FuzzFinding("accepted", $"a file the reference reader refuses ({violation})");
            if (mismatch is not null)
                throw new FuzzFinding("accepted", $"a file whose data does not match its checksum ({mismatch})");
        },
        e => e is SafeTensorsFormatException or InvalidDataException,
        bytes => (1 << 20) + 8L * bytes.Length,
        (_, e) =>
        {
            if (!e.Message.Contains(FileName, StringComparison.Ordinal))
                throw new FuzzFinding("message", $"the refusal does not name the file: {e.Message}");
        });

    /// <summary>The value <c>data_sha256</c> and <c>metadata_sha256</c> hold until the data is written: as long as a SHA-256 in hex.</summary>
    private static readonly string ChecksumPlaceholder = new('0', 64);

    /// <param name="checksums">0: none; 1: <c>data_sha256</c>; 2: that and <c>metadata_sha256</c>.</param>
    private static byte[] Build(Entry[] entries, bool withMetadata, int dataSlack, int headerSlack, int checksums)
    {
        var json = new StringBuilder("{");
        if (checksums > 0)
            json.Append("\"__metadata__\":{\"format\":\"pt\",\"data_sha256\":\"").Append(ChecksumPlaceholder)
                .Append(checksums > 1 ? "\",\"metadata_sha256\":\"" + ChecksumPlaceholder : "").Append("\"},");
        else if (withMetadata) json.Append("\"__metadata__\":{\"format\":\"pt\"},");
        long offset = 0;
        foreach (var e in entries)
        {
            var elements = e.Shape.Aggregate(1L, (p, d) => unchecked(p * d));
            var size = e.Dtype switch { "F32" or "f32" => 4, "I64" or "F64" => 8, "F16" or "BF16" => 2, _ => 1 };
            var end = offset + Math.Clamp(unchecked(elements * size), 0, 1 << 16);
            var offsets = e.Offsets ?? [offset, end];
            offset = e.Offsets is null ? end : offset;
            json.Append('"').Append(e.Name).Append("\":");
            if (e.RawValue is not null) json.Append(e.RawValue);
            else
                json.Append("{\"dtype\":\"").Append(e.Dtype).Append("\",\"shape\":[").AppendJoin(',', e.Shape.Select(Invariant))
                    .Append("],\"data_offsets\":[").AppendJoin(',', offsets.Select(Invariant)).Append("]}");
            json.Append(',');
        }
        if (json[^1] == ',') json.Length--;
        json.Append('}');
        var header = Encoding.UTF8.GetBytes(json.ToString());
        var padded = (header.Length + 7) / 8 * 8 + headerSlack;
        var data = (int)Math.Max(0, offset + dataSlack);
        var bytes = new byte[8 + padded + data];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)padded);
        header.CopyTo(bytes, 8);
        bytes.AsSpan(8 + header.Length, padded - header.Length).Fill((byte)' ');
        new Random(data).NextBytes(bytes.AsSpan(8 + padded));
        if (checksums > 0)
        {
            var at = json.ToString().IndexOf(ChecksumPlaceholder, StringComparison.Ordinal); // ASCII up to there: chars are bytes
            var dataSha256 = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes.AsSpan(8 + padded)));
            Encoding.ASCII.GetBytes(dataSha256).CopyTo(bytes, 8 + at);
            if (checksums > 1)
                Encoding.ASCII.GetBytes(SafeTensorsRules.MetadataDigest([("format", "pt"), ("data_sha256", dataSha256)]))
                    .CopyTo(bytes, 8 + json.ToString().IndexOf(ChecksumPlaceholder, at + 64, StringComparison.Ordinal));
        }
        return bytes;
    }

    private static string Invariant(long value) => value.ToString(CultureInfo.InvariantCulture);
}
