using System.Buffers.Binary;
using System.IO.Compression;
using CsCheck;
using DistTrain.Core.Data;

namespace DistTrain.Fuzz.Targets;

/// <summary>
/// The IDX reader (Fashion-MNIST images and labels), raw and gzip: an input's first byte picks images (3 dimensions) or
/// labels (1), all items or a limit, bytes or floats; the rest is the file. Inputs are valid files of random sizes, headers
/// whose dimensions overflow or claim far more data than follows, both gzip-compressed or not, and mutations of all.
/// </summary>
public static class IdxTarget
{
    private const string FileName = "fuzz-idx3-ubyte";

    private static byte[] Idx(int[] dimensions, int dataBytes, byte type = 0x08)
    {
        var bytes = new byte[4 + 4 * dimensions.Length + Math.Max(0, dataBytes)];
        bytes[2] = type;
        bytes[3] = (byte)dimensions.Length;
        for (var i = 0; i < dimensions.Length; i++) BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4 + 4 * i), dimensions[i]);
        new Random(dataBytes).NextBytes(bytes.AsSpan(4 + 4 * dimensions.Length));
        return bytes;
    }

    private static byte[] Gzip(byte[] bytes)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest)) gzip.Write(bytes);
        return output.ToArray();
    }

    private static readonly Gen<byte[]> Valid = Gen.Select(Gen.Bool, Gen.Int[1, 40], Gen.Int[1, 6], Gen.Int[1, 6], (images, n, rows, columns) =>
        images ? Idx([n, rows, columns], n * rows * columns) : Idx([n], n));

    private static readonly Gen<byte[]> Claims = Gen.Select(Gen.OneOf(ByteMutations.BoundaryIntegers).Array[1, 4], Gen.Int[-3, 3],
        (dimensions, slack) =>
        {
            var declared = dimensions.Aggregate(1L, (p, d) => unchecked(p * d));
            return Idx([.. dimensions.Select(d => (int)d)], (int)Math.Clamp(declared + slack, 0, 4096));
        });

    /// <summary>The target.</summary>
    public static FuzzTarget Create() => new(
        "idx",
        Gen.Select(Gen.Byte, Gen.Frequency((3, ByteMutations.Of(Gen.Frequency((1, Valid), (1, Claims)))), (2, Claims), (1, Valid)), Gen.Int[0, 3],
            (mode, file, compress) => (byte[])[mode, .. compress == 0 ? Gzip(file) : file]),
        input =>
        {
            if (input.Length == 0) return;
            var mode = input[0];
            var dimensions = (mode & 1) == 0 ? 3 : 1;
            var maxItems = (mode & 2) == 0 ? 0 : 1 + (mode >> 4);
            using var stream = new MemoryStream(input, 1, input.Length - 1, writable: false);
            if ((mode & 4) == 0) IdxFile.Read(FileName, stream, dimensions, maxItems);
            else IdxFile.ReadAsSingles(FileName, stream, dimensions, 255f, maxItems);
        },
        e => e is DataFormatException,
        input => (1 << 20) + 4 * (input.Length + DecompressedLength(input)),
        (_, e) =>
        {
            if (!e.Message.Contains(FileName, StringComparison.Ordinal))
                throw new FuzzFinding("message", $"the refusal does not name the file: {e.Message}");
        });

    /// <summary>The bytes a gzip input decompresses to (what a reader may allocate for), capped at 256 MiB; 0 when not gzip or corrupt.</summary>
    private static long DecompressedLength(byte[] input)
    {
        if (input.Length < 3 || input[1] != 0x1f || input[2] != 0x8b) return 0;
        try
        {
            using var gzip = new GZipStream(new MemoryStream(input, 1, input.Length - 1), CompressionMode.Decompress);
            var buffer = new byte[64 * 1024];
            long total = 0;
            int read;
            while (total < 256 << 20 && (read = gzip.Read(buffer)) > 0) total += read;
            return total;
        }
        catch (InvalidDataException)
        {
            return 0;
        }
    }
}
