using System.IO.Compression;
using CsCheck;
using DistTrain.Core.Data;

namespace DistTrain.Fuzz.Targets;

/// <summary>
/// The check a <c>.csv.gz</c> file passes before it is read (<see cref="GzipFile.CheckComplete(string, Stream)"/>): inputs
/// are files of one to three gzip members of CSV text, cut at random lengths or not, followed by bytes that are not a member
/// (zero padding, random bytes, a member whose header is damaged) or not, and mutations of them (flipped bits in headers,
/// deflate data and trailers, boundary integers, bytes inserted and removed). Every input is accepted or refused with a
/// <see cref="DataFormatException"/> that names the file; none may throw anything else. An accepted input must be read
/// whole by what reads the rows afterwards, .NET's <see cref="GZipStream"/>, which stops without an error at bytes after a
/// member that do not start another: the oracle appends a member after the input (less any zero padding) and requires
/// .NET to read the input's content, then the appended member's, and the input's content to be as long as the check found.
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

    /// <summary>Whole members, then bytes that are not a member: zeros (padding, accepted), random bytes, or a member whose
    /// first header byte is changed.</summary>
    private static readonly Gen<byte[]> Trailing = Gen.Select(Members, Gen.Int[0, 2], Gen.Byte.Array[1, 64], (file, kind, bytes) => (byte[])(kind switch
    {
        0 => [.. file, .. new byte[bytes.Length]],
        1 => [.. file, .. bytes],
        _ => [.. file, (byte)(0x1f ^ (bytes[0] | 1)), .. Member("9,9,c9\n", CompressionLevel.Fastest)[1..]],
    }));

    /// <summary>A member the oracle appends to an accepted input, and its text.</summary>
    private static readonly byte[] Appended = Member("appended,row,z\n", CompressionLevel.Optimal);

    private static readonly byte[] AppendedText = System.Text.Encoding.ASCII.GetBytes("appended,row,z\n");

    /// <summary>What .NET's <see cref="GZipStream"/> reads from <paramref name="file"/>, or null when it throws.</summary>
    private static byte[]? DotNetReads(byte[] file)
    {
        try
        {
            using var gzip = new GZipStream(new MemoryStream(file, writable: false), CompressionMode.Decompress);
            using var content = new MemoryStream();
            gzip.CopyTo(content);
            return content.ToArray();
        }
        catch (InvalidDataException)
        {
            return null;
        }
    }

    /// <summary>
    /// The oracle for an accepted input: .NET reads it, and as many bytes as the check decompressed; and for some length
    /// that leaves out only zero bytes at the end (padding; the last trailer may end in zeros too, so up to 8 of them are
    /// tried as part of it), the input cut there and followed by <see cref="Appended"/> reads as the input's content, then
    /// the appended text: .NET reads every member of the input and stops at no bytes within it.
    /// </summary>
    private static void CheckReadWhole(byte[] input, long uncompressedBytes)
    {
        var content = DotNetReads(input)
            ?? throw new FuzzFinding("accepted unreadable", ".NET's GZipStream throws InvalidDataException on an input the check accepted");
        if (content.Length != uncompressedBytes)
            throw new FuzzFinding("accepted different content", $"the check decompressed {uncompressedBytes} bytes, .NET's GZipStream {content.Length}");
        var zeros = input.Length - 1 - Array.FindLastIndex(input, b => b != 0);
        byte[] expected = [.. content, .. AppendedText];
        for (var padding = zeros; padding >= Math.Max(0, zeros - 8); padding--)
            if (DotNetReads([.. input.AsSpan(0, input.Length - padding), .. Appended]) is { } read && read.AsSpan().SequenceEqual(expected))
                return;
        throw new FuzzFinding("accepted not whole", $"the check accepted the input, but .NET's GZipStream does not read a member appended after it " +
            $"(less up to {zeros} zero bytes at its end): it stops before the input's end, and whatever follows that point would be lost");
    }

    /// <summary>The target.</summary>
    public static FuzzTarget Create() => new(
        "gzip",
        Gen.Frequency((3, ByteMutations.Of(Gen.Frequency((3, Members), (1, Trailing)))), (1, Cut), (1, Members), (1, Trailing)),
        input =>
        {
            using var stream = new MemoryStream(input, writable: false);
            CheckReadWhole(input, GzipFile.Check(FileName, stream));
        },
        e => e is DataFormatException,
        // The check keeps nothing it decompresses: its buffers, whatever the input. The oracle keeps what .NET decompresses
        // from an accepted input (its trailers' CRC-32s match: the CSV text generated, a few kilobytes) a few times over.
        _ => 4 << 20,
        (_, e) =>
        {
            if (!e.Message.Contains(FileName, StringComparison.Ordinal))
                throw new FuzzFinding("message", $"the refusal does not name the file: {e.Message}");
        });
}
