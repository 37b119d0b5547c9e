using ICSharpCode.SharpZipLib;
using ICSharpCode.SharpZipLib.GZip;

namespace DistTrain.Core.Data;

/// <summary>
/// Checks that a gzip file is complete and intact before it is parsed. .NET's <see cref="System.IO.Compression.GZipStream"/>
/// ends quietly where a truncated file ends, so a cut-off <c>.csv.gz</c> would train on the rows before the cut, or fail
/// with a misleading column count. SharpZipLib's <see cref="GZipInputStream"/> reads the file once, member by member, and
/// checks each member's trailer, its CRC-32 and its uncompressed size modulo 2^32 (RFC 1952, section 2.3.1), so a file of
/// several members joined (<c>cat a.gz b.gz</c>, <c>pigz</c>, <c>bgzip</c>), which gzip itself reads, is accepted whole.
/// </summary>
public static class GzipFile
{
    /// <summary>Decompresses <paramref name="path"/> once, checking every member's header, data and trailer.</summary>
    /// <param name="path">A gzip file (checked by the caller to end in <c>.gz</c>).</param>
    /// <exception cref="DataFormatException">The file is shorter than a gzip header and trailer, it ends inside a member (a
    /// truncated file), or a member is corrupt: a bad header, bad deflate data, or a CRC-32 or size that differs from its
    /// trailer's.</exception>
    /// <exception cref="IOException">The file could not be read.</exception>
    public static void CheckComplete(string path)
    {
        using var file = File.OpenRead(path);
        CheckComplete(path, file);
    }

    /// <summary>Checks the gzip data of <paramref name="file"/> from its position to its end, as <see cref="CheckComplete(string)"/> does.</summary>
    /// <param name="path">The file's name, for the messages.</param>
    /// <param name="file">The gzip data: a seekable stream (its length is read), left open.</param>
    /// <exception cref="DataFormatException">As <see cref="CheckComplete(string)"/>.</exception>
    public static void CheckComplete(string path, Stream file)
    {
        ArgumentNullException.ThrowIfNull(file);
        var length = file.Length - file.Position;
        if (length < 18) // a 10-byte header and an 8-byte trailer at least
            throw new DataFormatException($"{path}: {length} bytes is too short for a gzip file. The file is truncated; download or write it again.");
        try
        {
            using var unzipped = new GZipInputStream(file) { IsStreamOwner = false };
            var chunk = new byte[64 * 1024];
            while (unzipped.Read(chunk, 0, chunk.Length) > 0) { }
        }
        catch (Exception e) when (e is EndOfStreamException || (e is SharpZipBaseException && e.Message.Contains("EOF", StringComparison.Ordinal)))
        {
            throw new DataFormatException($"{path}: the gzip data ends early, inside a compressed member ({e.Message}). The file is truncated; download or write it again.");
        }
        // SharpZipLib 1.4.2's inflater indexes past its Huffman tables on some invalid code lengths (found by fuzzing,
        // tests/DistTrain.Fuzz gzip) instead of throwing its own exception: that too is corrupt data.
        catch (Exception e) when (e is SharpZipBaseException or IndexOutOfRangeException)
        {
            throw new DataFormatException($"{path}: the gzip data is corrupt ({e.Message}). Download or write the file again.");
        }
    }
}
