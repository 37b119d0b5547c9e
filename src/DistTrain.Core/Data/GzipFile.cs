using System.Buffers.Binary;
using ICSharpCode.SharpZipLib;
using ICSharpCode.SharpZipLib.Checksum;
using ICSharpCode.SharpZipLib.Zip.Compression;
using ICSharpCode.SharpZipLib.Zip.Compression.Streams;

namespace DistTrain.Core.Data;

/// <summary>
/// Checks that a gzip file is complete and intact before it is parsed. .NET's <see cref="System.IO.Compression.GZipStream"/>
/// ends quietly where a truncated file ends, and also where the data after a member is not another member (trailing
/// bytes, or a later member whose header is damaged), so such a <c>.csv.gz</c> would train on the rows before that point,
/// or fail with a misleading column count (the CSV and IDX readers both check their gzip files with it). The check reads the file once, member by member, with SharpZipLib's raw
/// <see cref="Inflater"/>, checks each member's header and its trailer, its CRC-32 and its uncompressed size modulo 2^32
/// (RFC 1952, sections 2.3 and 2.3.1), and requires the members to fill the file: a file of several members joined
/// (<c>cat a.gz b.gz</c>, <c>pigz</c>, <c>bgzip</c>), which gzip itself reads, is accepted whole. After the last member
/// only zero bytes may follow (padding, as tar and some tape tools add; gzip itself ignores it with a warning, and .NET's
/// reader ignores it).
/// </summary>
public static class GzipFile
{
    private const int BufferSize = 64 * 1024;

    /// <summary>Decompresses <paramref name="path"/> once, checking every member's header, data and trailer, and that the
    /// members fill the file.</summary>
    /// <param name="path">A gzip file (checked by the caller to end in <c>.gz</c>).</param>
    /// <exception cref="DataFormatException">The file is shorter than a gzip header and trailer, it ends inside a member (a
    /// truncated file), a member is corrupt (a bad header, bad deflate data, or a CRC-32 or size that differs from its
    /// trailer's), or bytes other than zeros follow a complete member without being a gzip member (trailing data, or a
    /// later member whose header is damaged): the message names the byte offset where that data starts.</exception>
    /// <exception cref="IOException">The file could not be read.</exception>
    public static void CheckComplete(string path)
    {
        using var file = File.OpenRead(path);
        CheckComplete(path, file);
    }

    /// <summary>Checks the gzip data of <paramref name="file"/> from its position to its end, as <see cref="CheckComplete(string)"/> does.</summary>
    /// <param name="path">The file's name, for the messages.</param>
    /// <param name="file">The gzip data: a seekable stream (its length is read), left open. Offsets in messages are positions in it.</param>
    /// <exception cref="DataFormatException">As <see cref="CheckComplete(string)"/>.</exception>
    public static void CheckComplete(string path, Stream file) => Check(path, file);

    /// <summary><see cref="CheckComplete(string, Stream)"/>, returning the number of bytes the members decompress to, in all
    /// (for the fuzz target's oracle).</summary>
    internal static long Check(string path, Stream file)
    {
        ArgumentNullException.ThrowIfNull(file);
        var end = file.Length;
        var length = end - file.Position;
        if (length < 18) // a 10-byte header and an 8-byte trailer at least
            throw new DataFormatException($"{path}: {length} bytes is too short for a gzip file. The file is truncated; download or write it again.");
        var input = new InflaterInputBuffer(file, BufferSize);
        var inflater = new Inflater(noHeader: true);
        var output = new byte[BufferSize];
        Span<byte> trailer = stackalloc byte[8];
        long uncompressed = 0;
        for (var member = 1; ; member++)
        {
            // The offset of the next byte not yet read: exact here, between members, where the inflater holds no input.
            var start = file.Position - input.Available;
            var first = NextByte(input);
            if (first < 0) return uncompressed;
            if (member > 1 && first == 0)
            {
                // Zero padding after the last member (tar, tape tools): allowed, if only zeros follow.
                int b;
                while ((b = NextByte(input)) == 0) { }
                if (b > 0)
                {
                    var at = file.Position - input.Available - 1;
                    throw Unreadable(path, start, end, member - 1,
                        $"it is zero bytes up to byte {at - 1}, then 0x{b:x2} at byte {at}, and only zero bytes (padding) may follow the last member");
                }
                return uncompressed;
            }
            string? damaged;
            try
            {
                damaged = ReadHeader(input, first);
            }
            catch (EndOfStreamException)
            {
                throw Truncated(path, member, start);
            }
            if (damaged is not null)
                throw member == 1 ? Corrupt(path, member, start, $"a bad header: {damaged}") : Unreadable(path, start, end, member - 1, damaged);
            var crc = new Crc32();
            try
            {
                while (!inflater.IsFinished)
                {
                    var count = inflater.Inflate(output);
                    if (count > 0)
                    {
                        crc.Update(new ArraySegment<byte>(output, 0, count));
                        continue;
                    }
                    if (inflater.IsFinished) break;
                    if (!inflater.IsNeedingInput) throw new SharpZipBaseException("the inflater makes no progress");
                    if (input.Available <= 0) input.Fill();
                    if (input.Available <= 0) throw Truncated(path, member, start);
                    input.SetInflaterInput(inflater);
                }
            }
            // SharpZipLib 1.4.2's inflater indexes past its Huffman tables on some invalid code lengths (found by fuzzing,
            // tests/DistTrain.Fuzz gzip) instead of throwing its own exception: that too is corrupt data.
            catch (Exception e) when (e is SharpZipBaseException or IndexOutOfRangeException)
            {
                throw Corrupt(path, member, start, $"bad deflate data: {e.Message}");
            }
            // The bytes the inflater was given but did not use follow the deflate data: the trailer, and any more members.
            input.Available += inflater.RemainingInput;
            var size = inflater.TotalOut;
            uncompressed += size;
            inflater.Reset();
            for (var i = 0; i < trailer.Length; i++)
            {
                var b = NextByte(input);
                if (b < 0) throw Truncated(path, member, start);
                trailer[i] = (byte)b;
            }
            // RFC 1952: CRC32, then ISIZE, both least significant byte first.
            var storedCrc = BinaryPrimitives.ReadUInt32LittleEndian(trailer);
            var storedSize = BinaryPrimitives.ReadUInt32LittleEndian(trailer[4..]);
            if (storedCrc != (uint)crc.Value)
                throw Corrupt(path, member, start, $"the CRC-32 of its data is 0x{crc.Value:x8} but its trailer says 0x{storedCrc:x8}");
            if (storedSize != (uint)size)
                throw Corrupt(path, member, start, $"it decompresses to {size} bytes but its trailer says {storedSize} (modulo 2^32)");
        }
    }

    /// <summary>The next byte of the file, or -1 at its end.</summary>
    private static int NextByte(InflaterInputBuffer input)
    {
        if (input.Available <= 0) input.Fill();
        return input.Available <= 0 ? -1 : input.ReadLeByte();
    }

    /// <summary>
    /// Reads a member's header (RFC 1952, section 2.3) after its first byte, <paramref name="first"/>. Returns null for a
    /// good header, or what is wrong with it.
    /// </summary>
    /// <exception cref="EndOfStreamException">The file ends inside the header.</exception>
    private static string? ReadHeader(InflaterInputBuffer input, int first)
    {
        var crc = new Crc32();
        crc.Update(first);
        int Next()
        {
            var b = NextByte(input);
            if (b < 0) throw new EndOfStreamException();
            crc.Update(b);
            return b;
        }
        if (first != 0x1f) return $"its first byte is 0x{first:x2}, not gzip's 0x1f";
        if (Next() is var second and not 0x8b) return $"its first two bytes are 0x1f 0x{second:x2}, not gzip's 0x1f 0x8b";
        if (Next() is var method and not 8) return $"its header gives compression method {method}, not deflate (8)";
        var flags = Next();
        if ((flags & 0xe0) != 0) return $"its header sets reserved flag bits (flags 0x{flags:x2})";
        for (var i = 0; i < 6; i++) Next(); // modification time, extra flags, operating system
        if ((flags & 0x04) != 0) // FEXTRA: a 2-byte length, then that many bytes
        {
            var extra = Next() | (Next() << 8);
            for (var i = 0; i < extra; i++) Next();
        }
        if ((flags & 0x08) != 0) while (Next() != 0) { } // FNAME, zero-terminated
        if ((flags & 0x10) != 0) while (Next() != 0) { } // FCOMMENT, zero-terminated
        if ((flags & 0x02) != 0) // FHCRC: the low 16 bits of the CRC-32 of the header's bytes before it
        {
            var expected = (int)(crc.Value & 0xffff);
            var stored = Next() | (Next() << 8);
            if (stored != expected) return $"its header's CRC-16 is 0x{stored:x4} where the header's bytes give 0x{expected:x4}";
        }
        return null;
    }

    private static DataFormatException Unreadable(string path, long offset, long end, int members, string what)
    {
        var after = members == 1 ? "the file's first gzip member" : $"the file's {members} gzip members";
        var bytes = end - offset == 1 ? "The 1 byte" : $"The {end - offset} bytes";
        return new($"{path}: the data at byte offset {offset} follows {after} but does not start another member: {what}. {bytes} from " +
            "there to the end of the file cannot be read as gzip: .NET's gzip reader would stop there without an error, and any data after " +
            "that point would be lost. Compress the original file again with gzip (gzip -c FILE > FILE.gz), rather than appending to " +
            "the .gz file or editing it.");
    }

    private static DataFormatException Corrupt(string path, int member, long start, string what) =>
        new($"{path}: the gzip data is corrupt (member {member}, at byte {start}: {what}). Download or write the file again.");

    private static DataFormatException Truncated(string path, int member, long start) =>
        new($"{path}: the gzip data ends early, inside member {member} (which starts at byte {start}). The file is truncated; download or write it again.");
}
