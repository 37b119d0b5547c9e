using System.Buffers.Binary;
using System.IO.Compression;

namespace DistTrain.Core.Data;

/// <summary>
/// Checks that a gzip file is complete before it is parsed. .NET's <see cref="GZipStream"/> ends quietly where a truncated
/// file ends, so a cut-off <c>.csv.gz</c> would train on the rows before the cut, or fail with a misleading column count.
/// A gzip member ends with ISIZE, the uncompressed size modulo 2^32 (RFC 1952, section 2.3.1): the whole file is
/// decompressed once and its size compared with the file's last four bytes.
/// </summary>
public static class GzipFile
{
    /// <summary>Decompresses <paramref name="path"/> once and compares its size with the trailer's.</summary>
    /// <param name="path">A gzip file (checked by the caller to end in <c>.gz</c>).</param>
    /// <exception cref="DataFormatException">The file is shorter than a gzip header and trailer, its gzip data is corrupt,
    /// or its uncompressed size differs from its trailer's (a truncated file; or several gzip files joined, whose trailer
    /// holds the last one's size only).</exception>
    /// <exception cref="IOException">The file could not be read.</exception>
    public static void CheckComplete(string path)
    {
        using var file = File.OpenRead(path);
        if (file.Length < 18) // a 10-byte header and an 8-byte trailer at least
            throw new DataFormatException($"{path}: {file.Length} bytes is too short for a gzip file. The file is truncated; download or write it again.");
        long size = 0;
        try
        {
            using var unzipped = new GZipStream(file, CompressionMode.Decompress, leaveOpen: true);
            var chunk = new byte[64 * 1024];
            int read;
            while ((read = unzipped.Read(chunk)) > 0) size += read;
        }
        catch (InvalidDataException e)
        {
            throw new DataFormatException($"{path}: the gzip data is corrupt ({e.Message}). Download or write the file again.");
        }
        Span<byte> trailer = stackalloc byte[4];
        file.Position = file.Length - 4;
        file.ReadExactly(trailer);
        var declared = BinaryPrimitives.ReadUInt32LittleEndian(trailer);
        if ((uint)size != declared)
            throw new DataFormatException($"{path}: the gzip data ends early: it decompresses to {size:N0} bytes, but its last four bytes, where a complete " +
                $"gzip file records that size (modulo 4 GiB), say {declared:N0}. The file is truncated; download or write it again. (Several gzip files " +
                "joined into one also fail this check: decompress it with gunzip and give the plain file.)");
    }
}
