using System.IO.Compression;
using CsCheck;
using DistTrain.Core.Data;

namespace DistTrain.Fuzz.Targets;

/// <summary>
/// The check a <c>.csv.gz</c> file passes before it is read (<see cref="GzipFile.CheckComplete(string, Stream)"/>): inputs
/// are files of one to three gzip members of CSV text, cut at random lengths or not, and mutations of them (flipped bits in
/// headers, deflate data and trailers, boundary integers, bytes inserted and removed). Every input is accepted or refused
/// with a <see cref="DataFormatException"/> that names the file; none may throw anything else.
/// </summary>
public static class GzipTarget
{
    private const string FileName = "fuzz.csv.gz";

    private static byte[] Member(string text, CompressionLevel level)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, level)) gzip.Write(System.Text.Encoding.ASCII.GetBytes(text));
        return output.ToArray();
    }

    private static readonly Gen<byte[]> Members = Gen.Select(Gen.Int[1, 3], Gen.Int[0, 400], Gen.Bool, (count, rows, fast) =>
        Enumerable.Range(0, count).SelectMany(m => Member(string.Concat(Enumerable.Range(0, rows + m).Select(i => $"{i % 7},{(i * 31) % 11},c{i % 3}\n")),
            fast ? CompressionLevel.Fastest : CompressionLevel.Optimal)).ToArray());

    private static readonly Gen<byte[]> Cut = Gen.Select(Members, Gen.Double[0, 1], (file, fraction) => file[..(int)(file.Length * fraction)]);

    /// <summary>The target.</summary>
    public static FuzzTarget Create() => new(
        "gzip",
        Gen.Frequency((3, ByteMutations.Of(Members)), (1, Cut), (1, Members)),
        input =>
        {
            using var stream = new MemoryStream(input, writable: false);
            GzipFile.CheckComplete(FileName, stream);
        },
        e => e is DataFormatException,
        // The check keeps nothing it decompresses: its buffers, whatever the input.
        _ => 4 << 20,
        (_, e) =>
        {
            if (!e.Message.Contains(FileName, StringComparison.Ordinal))
                throw new FuzzFinding("message", $"the refusal does not name the file: {e.Message}");
        });
}
