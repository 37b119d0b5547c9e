using System.Buffers.Binary;
using System.IO.Compression;

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
    /// <exception cref="DataFormatException">The file is missing, truncated, has extra bytes, a wrong magic number or bad sizes.</exception>
    public static IdxArray Read(string path, int expectedDimensions)
    {
        if (!File.Exists(path))
            throw new DataFormatException($"{path}: file not found. Install the data (apt-get install dataset-fashion-mnist) or point Data:Directory at a folder that holds it.");
        byte[] bytes;
        try
        {
            bytes = ReadAllBytesMaybeGzip(path);
        }
        catch (InvalidDataException e)
        {
            throw new DataFormatException($"{path}: the gzip stream is corrupt ({e.Message}). Download or reinstall the file.");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException($"{path}: cannot be read ({e.Message}). Check the file's permissions and the disk.");
        }
        return Parse(path, bytes, expectedDimensions);
    }

    /// <summary>Validates and splits the bytes of an IDX file; <paramref name="name"/> appears in the errors.</summary>
    /// <exception cref="DataFormatException">See <see cref="Read"/>.</exception>
    public static IdxArray Parse(string name, ReadOnlySpan<byte> bytes, int expectedDimensions)
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
        var headerLength = 4 + 4 * dimensions;
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
        var dataLength = bytes.Length - headerLength;
        if (dataLength < expectedLength)
            throw new DataFormatException($"{name}: the header declares [{string.Join(", ", sizes)}] = {expectedLength} bytes of data but only {dataLength} follow. The file is truncated; download it again.");
        if (dataLength > expectedLength)
            throw new DataFormatException($"{name}: the header declares [{string.Join(", ", sizes)}] = {expectedLength} bytes of data but {dataLength} follow. The header and data disagree.");
        return new IdxArray(sizes, bytes[headerLength..].ToArray());
    }

    private static byte[] ReadAllBytesMaybeGzip(string path)
    {
        using var file = File.OpenRead(path);
        var first = file.ReadByte();
        var second = file.ReadByte();
        file.Position = 0;
        using var buffer = new MemoryStream();
        if (first == 0x1f && second == 0x8b)
        {
            using var gzip = new GZipStream(file, CompressionMode.Decompress);
            gzip.CopyTo(buffer);
        }
        else
        {
            file.CopyTo(buffer);
        }
        return buffer.ToArray();
    }
}
