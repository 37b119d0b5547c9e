using System.Buffers.Binary;
using System.IO.Compression;
using System.Numerics.Tensors;

namespace DistTrain.Core.Data;

/// <summary>An IDX tensor of unsigned bytes: its dimensions (first = item count) and row-major data.</summary>
/// <param name="Dimensions">Sizes, big-endian in the file; <c>[count, rows, columns]</c> for images, <c>[count]</c> for labels.</param>
/// <param name="Data">Product-of-dimensions bytes, row-major.</param>
public sealed record IdxArray(int[] Dimensions, byte[] Data)
{
    /// <summary>Number of items: the first dimension.</summary>
    public int Count => Dimensions[0];

    /// <summary>Bytes per item: the product of the remaining dimensions.</summary>
    public int ItemLength => Dimensions.Skip(1).Aggregate(1, (p, d) => p * d);
}

/// <summary>
/// Reader of the IDX format used by MNIST and Fashion-MNIST (LeCun et al., "THE MNIST DATABASE of
/// handwritten digits", file formats section): a 4-byte magic <c>0x00 0x00 type ndim</c>, then
/// <c>ndim</c> big-endian 32-bit sizes, then the data. Raw or gzip-compressed files are accepted.
/// Only the unsigned-byte type (0x08) is supported, which is what both data sets use.
/// </summary>
public static class IdxFile
{
    private const byte UnsignedByteType = 0x08;

    /// <summary>Reads and validates an IDX file of unsigned bytes.</summary>
    /// <param name="path">A <c>.gz</c> or raw IDX file (gzip is detected from its content, not its name).</param>
    /// <param name="expectedDimensions">Required number of dimensions (3 for images, 1 for labels).</param>
    /// <param name="maxItems">Read at most this many items (0 = all); the rest of the file is still checked for its length.</param>
    /// <exception cref="DataFormatException">The file is missing, truncated, has extra bytes, a wrong magic number or bad sizes;
    /// or it is gzip-compressed and its gzip data is truncated, corrupt, or followed by bytes that do not start another gzip
    /// member (the message names the byte offset where they start; see <see cref="GzipFile.CheckComplete(string)"/>).</exception>
    /// <remarks>The data is read straight into one array of its exact size: no intermediate copies, so
    /// loading Fashion-MNIST's 47 MB of training pixels needs 47 MB.</remarks>
    public static IdxArray Read(string path, int expectedDimensions, int maxItems = 0) =>
        Open(path, file => Read(path, file, expectedDimensions, maxItems));

    /// <summary>
    /// Reads an IDX file of unsigned bytes straight into floats divided by <paramref name="divisor"/>
    /// (255 gives pixels in [0, 1], rounded exactly as <c>x / 255f</c>), in 64 KB chunks, so the byte form
    /// of the data never exists whole.
    /// </summary>
    /// <returns>The dimensions (first = items kept) and the values, row-major.</returns>
    /// <exception cref="DataFormatException">As <see cref="Read(string, int, int)"/>.</exception>
    public static (int[] Dimensions, float[] Values) ReadAsSingles(string path, int expectedDimensions, float divisor, int maxItems = 0) =>
        Open(path, file => ReadAsSingles(path, file, expectedDimensions, divisor, maxItems));

    /// <summary>As <see cref="ReadAsSingles(string, int, float, int)"/>, from a seekable stream; <paramref name="name"/> appears in the errors.</summary>
    /// <exception cref="DataFormatException">As <see cref="Read(string, int, int)"/>.</exception>
    internal static (int[] Dimensions, float[] Values) ReadAsSingles(string name, Stream seekable, int expectedDimensions, float divisor, int maxItems = 0)
    {
        float[]? values = null;
        var dimensions = ReadSeekable(name, seekable, expectedDimensions, maxItems, length => values = GC.AllocateUninitializedArray<float>(checked((int)length)),
            (chunk, offset) =>
            {
                var target = values.AsSpan((int)offset, chunk.Length);
                TensorPrimitives.ConvertChecked<byte, float>(chunk, target);
                TensorPrimitives.Divide(target, divisor, target);
            });
        return (dimensions, values!);
    }

    /// <summary>
    /// True when <paramref name="path"/> starts as an IDX file: <c>0x00 0x00</c>, one of the format's element types (unsigned
    /// byte 0x08 to double 0x0E, though the readers take unsigned bytes only) and a dimension count of 1 to 4, read through gzip when the file is compressed (detected from its content, as the readers do). Reads at
    /// most a few bytes; false for a file that cannot be read (the reader that follows reports it).
    /// </summary>
    public static bool StartsWithMagic(string path)
    {
        if (InputFile.PipeProblem(path, "data file") is not null) return false; // the reader refuses it by name
        try
        {
            using var file = File.OpenRead(path);
            Span<byte> magic = stackalloc byte[4];
            var read = file.ReadAtLeast(magic, 2, throwOnEndOfStream: false);
            if (read >= 2 && magic[0] == 0x1f && magic[1] == 0x8b)
            {
                file.Position = 0;
                using var unzipped = new GZipStream(file, CompressionMode.Decompress);
                read = unzipped.ReadAtLeast(magic, 4, throwOnEndOfStream: false);
            }
            else if (read < 4) read += file.ReadAtLeast(magic[read..], 4 - read, throwOnEndOfStream: false);
            return read == 4 && magic[0] == 0 && magic[1] == 0 && IsElementType(magic[2]) && magic[3] is >= 1 and <= 4;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            return false;
        }
    }

    /// <summary>The IDX element types (LeCun et al.'s format): unsigned and signed byte, short, int, float, double.</summary>
    private static bool IsElementType(byte type) => type is UnsignedByteType or 0x09 or 0x0B or 0x0C or 0x0D or 0x0E;

    /// <summary>
    /// The item count an IDX file's header declares (its first dimension), read through gzip when the file is compressed;
    /// reads only the header. For checking that two files match when only the first items of each are read.
    /// </summary>
    /// <param name="path">A <c>.gz</c> or raw IDX file.</param>
    /// <exception cref="DataFormatException">The file is missing, unreadable, or too short for a header.</exception>
    public static long DeclaredCount(string path) => Open(path, file =>
    {
        Stream stream = file;
        Span<byte> header = stackalloc byte[8];
        var read = file.ReadAtLeast(header[..2], 2, throwOnEndOfStream: false);
        GZipStream? unzipped = null;
        try
        {
            if (read == 2 && header[0] == 0x1f && header[1] == 0x8b)
            {
                file.Position = 0;
                stream = unzipped = new GZipStream(file, CompressionMode.Decompress);
                read = 0;
            }
            read += stream.ReadAtLeast(header[read..], header.Length - read, throwOnEndOfStream: false);
        }
        catch (InvalidDataException e)
        {
            throw new DataFormatException($"{path}: not a valid gzip file ({e.Message}). Download it again.");
        }
        finally
        {
            unzipped?.Dispose();
        }
        if (read < header.Length)
            throw new DataFormatException($"{path}: {read} bytes, too short for an IDX header (8 bytes at least). Is this the right file?");
        return BinaryPrimitives.ReadUInt32BigEndian(header[4..]);
    });

    private delegate void ChunkSink(ReadOnlySpan<byte> chunk, long offset);

    private static T Open<T>(string path, Func<Stream, T> read)
    {
        if (Directory.Exists(path))
            throw new DataFormatException($"{path}: a folder, where an IDX file is expected. Give the file's path, or move the folder out of the way.");
        if (!File.Exists(path))
            throw new DataFormatException($"{path}: file not found. Install the data (apt-get install dataset-fashion-mnist) or point Data:Directory at a folder that holds it.");
        if (InputFile.PipeProblem(path, "data file") is { } pipe) throw new DataFormatException(pipe);
        try
        {
            using var file = File.OpenRead(path);
            return read(file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException($"{path}: cannot be read ({e.Message}). Check the file's permissions and the disk.");
        }
    }

    /// <summary>As <see cref="Read(string, int, int)"/>, from a seekable stream; <paramref name="name"/> appears in the errors.</summary>
    /// <exception cref="DataFormatException">As <see cref="Read(string, int, int)"/>.</exception>
    internal static IdxArray Read(string name, Stream seekable, int expectedDimensions, int maxItems = 0)
    {
        byte[]? data = null;
        var dimensions = ReadSeekable(name, seekable, expectedDimensions, maxItems, length => data = new byte[length],
            (chunk, offset) => chunk.CopyTo(data.AsSpan((int)offset)));
        return new IdxArray(dimensions, data!);
    }

    /// <summary>
    /// Reads a raw or gzip-compressed IDX file. The data's length is known before anything is allocated for it: a raw
    /// file's from its size, a gzip file's from a first pass that decompresses without keeping the bytes. So a header that
    /// declares more data than the file holds is refused at once, instead of allocating up to 2 GiB of bytes (8 GiB of
    /// floats) for a few bytes of file; a gzip file costs a second decompression. The first pass is
    /// <see cref="GzipFile.CheckComplete(string, Stream)"/>'s, as for a <c>.csv.gz</c>: a truncated or corrupt file, or bytes
    /// after a member that do not start another (where .NET's <see cref="GZipStream"/> stops without an error), are refused
    /// with their byte offset.
    /// </summary>
    private static int[] ReadSeekable(string name, Stream file, int expectedDimensions, int maxItems, Action<long> allocate, ChunkSink sink)
    {
        try
        {
            var first = file.ReadByte();
            var second = file.ReadByte();
            file.Position = 0;
            if (first != 0x1f || second != 0x8b)
                return ReadStream(name, file, file.Length, expectedDimensions, maxItems, allocate, sink);
            var length = GzipFile.Check(name, file);
            file.Position = 0;
            using var stream = new GZipStream(file, CompressionMode.Decompress, leaveOpen: true);
            return ReadStream(name, stream, length, expectedDimensions, maxItems, allocate, sink);
        }
        catch (InvalidDataException e)
        {
            throw new DataFormatException($"{name}: the gzip stream is corrupt ({e.Message}). Download or reinstall the file.");
        }
    }

    /// <summary>Reads the header and data from <paramref name="stream"/>, which holds <paramref name="length"/> bytes (header included).</summary>
    private static int[] ReadStream(string name, Stream stream, long length, int expectedDimensions, int maxItems, Action<long> allocate, ChunkSink sink)
    {
        Span<byte> magic = stackalloc byte[4];
        var headerRead = stream.ReadAtLeast(magic, 4, throwOnEndOfStream: false);
        var header = new byte[4 + 4 * Math.Min((int)(headerRead == 4 ? magic[3] : 0), 8)];
        magic[..headerRead].CopyTo(header);
        var more = headerRead == 4 ? stream.ReadAtLeast(header.AsSpan(4), header.Length - 4, throwOnEndOfStream: false) : 0;
        var (dimensions, dataLength) = ParseHeader(name, header.AsSpan(0, headerRead + more), expectedDimensions, out var headerLength);
        CheckDataLength(name, dimensions, dataLength, length - headerLength);
        var itemLength = dataLength / dimensions[0];
        var keep = maxItems > 0 ? Math.Min(maxItems, dimensions[0]) : dimensions[0];
        var wanted = (long)keep * itemLength;
        allocate(wanted);
        var chunk = new byte[64 * 1024];
        long total = 0;
        int read;
        while ((read = stream.Read(chunk)) > 0)
        {
            if (total < wanted)
            {
                var useful = (int)Math.Min(read, wanted - total);
                sink(chunk.AsSpan(0, useful), total);
            }
            total += read;
        }
        CheckDataLength(name, dimensions, dataLength, total); // the file changed between the two passes
        dimensions[0] = keep;
        return dimensions;
    }

    /// <exception cref="DataFormatException">The data that follows the header is shorter or longer than the header declares.</exception>
    private static void CheckDataLength(string name, int[] dimensions, long declared, long present)
    {
        if (present < declared)
            throw new DataFormatException($"{name}: the header declares [{string.Join(", ", dimensions)}] = {declared} bytes of data but only {present} follow. The file is truncated; download it again.");
        if (present > declared)
            throw new DataFormatException($"{name}: the header declares [{string.Join(", ", dimensions)}] = {declared} bytes of data but {present} follow. The header and data disagree.");
    }

    /// <summary>Validates and splits the bytes of an IDX file; <paramref name="name"/> appears in the errors.</summary>
    /// <exception cref="DataFormatException">See <see cref="Read(string, int, int)"/>.</exception>
    public static IdxArray Parse(string name, ReadOnlySpan<byte> bytes, int expectedDimensions)
    {
        var (sizes, expectedLength) = ParseHeader(name, bytes, expectedDimensions, out var headerLength);
        CheckDataLength(name, sizes, expectedLength, bytes.Length - headerLength);
        return new IdxArray(sizes, bytes[headerLength..].ToArray());
    }

    private static (int[] Sizes, long DataLength) ParseHeader(string name, ReadOnlySpan<byte> bytes, int expectedDimensions, out int headerLength)
    {
        if (bytes.Length < 4)
            throw new DataFormatException($"{name}: {bytes.Length} bytes is too short for an IDX header (needs at least 4). The file is truncated.");
        if (bytes[0] != 0 || bytes[1] != 0)
            throw new DataFormatException($"{name}: magic number 0x{BinaryPrimitives.ReadUInt32BigEndian(bytes):X8} does not start with two zero bytes; this is not an IDX file.");
        if (bytes[2] != UnsignedByteType)
            throw new DataFormatException($"{name}: element type 0x{bytes[2]:X2} is not supported; only unsigned bytes (0x08) are, as in MNIST and Fashion-MNIST.");
        int dimensions = bytes[3];
        if (dimensions != expectedDimensions)
            throw new DataFormatException($"{name}: magic number 0x{BinaryPrimitives.ReadUInt32BigEndian(bytes):X8} declares {dimensions} dimensions but {expectedDimensions} are expected (3 for images, 1 for labels). Is this the right file?");
        headerLength = 4 + 4 * dimensions;
        if (bytes.Length < headerLength)
            throw new DataFormatException($"{name}: the header needs {headerLength} bytes but the file has {bytes.Length}. The file is truncated.");
        var sizes = new int[dimensions];
        long expectedLength = 1;
        for (var i = 0; i < dimensions; i++)
        {
            var size = BinaryPrimitives.ReadUInt32BigEndian(bytes[(4 + 4 * i)..]);
            if (size == 0 || size > int.MaxValue)
                throw new DataFormatException($"{name}: dimension {i} has size {size}; sizes must be between 1 and {int.MaxValue}.");
            sizes[i] = (int)size;
            expectedLength *= size;
            if (expectedLength > int.MaxValue)
                throw new DataFormatException($"{name}: the header declares [{string.Join(", ", sizes.Take(i + 1))}...], more than {int.MaxValue} bytes of data; this is not a data set this reader can hold.");
        }
        return (sizes, expectedLength);
    }
}
