using System.Buffers.Binary;
using System.IO.Compression;
using DistTrain.Core.Data;

namespace DistTrain.Tests;

public class IdxFileTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-idx-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static byte[] Idx(byte type, int[] dims, int dataLength)
    {
        var bytes = new byte[4 + 4 * dims.Length + dataLength];
        bytes[2] = type;
        bytes[3] = (byte)dims.Length;
        for (var i = 0; i < dims.Length; i++) BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4 + 4 * i), dims[i]);
        for (var i = 0; i < dataLength; i++) bytes[4 + 4 * dims.Length + i] = (byte)(i % 10);
        return bytes;
    }

    private string Write(string name, byte[] bytes)
    {
        var path = Path.Combine(_directory, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public void Raw_idx_files_beside_their_gz_files_are_named_as_ignored_before_training()
    {
        foreach (var file in Directory.GetFiles(TestData.SubsetDirectory)) File.Copy(file, Path.Combine(_directory, Path.GetFileName(file)));
        var options = new DistTrain.Core.Configuration.TrainingOptions();
        options.Data.Directory = _directory;
        var train = FashionMnist.LoadSplit(_directory, "train");
        Assert.Null(FashionMnist.IgnoredRawFilesNotice(_directory));
        Assert.Empty(DistTrain.Cli.TrainCommand.RunWarnings(options, train));

        // Unpacked beside the .gz files (gunzip -k): the .gz files are still read, and the raw ones named as ignored.
        foreach (var name in new[] { "train-images-idx3-ubyte", "train-labels-idx1-ubyte" })
        {
            using var gz = new GZipStream(File.OpenRead(Path.Combine(_directory, name + ".gz")), CompressionMode.Decompress);
            using var raw = File.Create(Path.Combine(_directory, name));
            gz.CopyTo(raw);
        }
        var notice = $"{_directory} holds train-images-idx3-ubyte, train-labels-idx1-ubyte both gzip-compressed (.gz) and raw: the .gz files are read " +
                     "and the raw ones ignored. Delete or move the copies you do not mean to use.";
        Assert.Equal(notice, FashionMnist.IgnoredRawFilesNotice(_directory));
        Assert.Equal([notice], DistTrain.Cli.TrainCommand.RunWarnings(options, train));
        File.Delete(Path.Combine(_directory, "train-labels-idx1-ubyte.gz"));
        Assert.Equal($"{_directory} holds train-images-idx3-ubyte both gzip-compressed (.gz) and raw: the .gz file is read and the raw one ignored. " +
                     "Delete or move the copy you do not mean to use.", FashionMnist.IgnoredRawFilesNotice(_directory));
    }

    [Fact]
    public void The_committed_subset_reads_as_Fashion_MNIST()
    {
        var (train, test) = FashionMnist.Load(TestData.SubsetDirectory);
        Assert.Equal(1000, train.Count);
        Assert.Equal(250, test.Count);
        Assert.Equal(784, train.FeatureCount);
        // First labels of the Fashion-MNIST training set: ankle boot, T-shirt, T-shirt, dress, T-shirt.
        Assert.Equal(new byte[] { 9, 0, 0, 3, 0 }, train.Labels[..5]);
        Assert.InRange(train.Features.Max(), 0.99f, 1f);
        Assert.Equal(0f, train.Features.Min());
    }

    [Fact]
    public void Raw_and_gzip_files_give_the_same_data()
    {
        var bytes = Idx(0x08, [3, 2, 2], 12);
        Write("raw", bytes);
        using (var gz = new GZipStream(File.Create(Path.Combine(_directory, "packed.gz")), CompressionLevel.Fastest))
            gz.Write(bytes);
        var raw = IdxFile.Read(Path.Combine(_directory, "raw"), 3);
        var packed = IdxFile.Read(Path.Combine(_directory, "packed.gz"), 3);
        Assert.Equal(new[] { 3, 2, 2 }, raw.Dimensions);
        Assert.Equal(raw.Data, packed.Data);
        Assert.Equal(4, raw.ItemLength);
    }

    [Fact]
    public void A_truncated_file_names_the_file_and_the_missing_bytes()
    {
        var path = Write("short", Idx(0x08, [3, 2, 2], 10));
        var error = Assert.Throws<DataFormatException>(() => IdxFile.Read(path, 3));
        Assert.Contains(path, error.Message);
        Assert.Contains("12 bytes of data but only 10 follow", error.Message);
    }

    [Fact]
    public void Extra_bytes_after_the_data_are_an_error()
    {
        var path = Write("long", Idx(0x08, [2], 3));
        Assert.Contains("2 bytes of data but 3 follow", Assert.Throws<DataFormatException>(() => IdxFile.Read(path, 1)).Message);
    }

    [Fact]
    public void A_wrong_magic_number_is_an_error()
    {
        var bytes = Idx(0x08, [2], 2);
        bytes[0] = 0x50; // 'P', as in a PNG or a text file
        var path = Write("notidx", bytes);
        Assert.Contains("not an IDX file", Assert.Throws<DataFormatException>(() => IdxFile.Read(path, 1)).Message);
    }

    [Fact]
    public void An_unsupported_element_type_is_an_error()
    {
        var path = Write("floats", Idx(0x0D, [2], 8));
        Assert.Contains("element type 0x0D", Assert.Throws<DataFormatException>(() => IdxFile.Read(path, 1)).Message);
    }

    [Fact]
    public void Labels_given_where_images_are_expected_are_an_error()
    {
        var path = Write("labels", Idx(0x08, [4], 4));
        Assert.Contains("declares 1 dimensions but 3 are expected", Assert.Throws<DataFormatException>(() => IdxFile.Read(path, 3)).Message);
    }

    [Fact]
    public void A_zero_dimension_is_an_error()
    {
        var path = Write("zero", Idx(0x08, [0, 28, 28], 0));
        Assert.Contains("dimension 0 has size 0", Assert.Throws<DataFormatException>(() => IdxFile.Read(path, 3)).Message);
    }

    [Fact]
    public void A_corrupt_or_cut_gzip_stream_is_an_error_that_names_the_file()
    {
        var buffer = new MemoryStream();
        using (var gz = new GZipStream(buffer, CompressionLevel.Fastest, leaveOpen: true))
            gz.Write(Idx(0x08, [100, 28, 28], 78_400));
        var packed = buffer.ToArray();
        var cut = Write("cut.gz", packed[..(packed.Length / 2)]);
        var cutError = Assert.Throws<DataFormatException>(() => IdxFile.Read(cut, 3));
        Assert.Contains(cut, cutError.Message);
        Assert.Matches("truncated|corrupt", cutError.Message);
        packed[packed.Length / 2] ^= 0xFF;
        packed[packed.Length / 2 + 1] ^= 0xFF;
        var flipped = Write("flipped.gz", packed);
        var flippedError = Assert.Throws<DataFormatException>(() => IdxFile.Read(flipped, 3));
        Assert.Contains(flipped, flippedError.Message);
    }

    [Fact]
    public void A_gzip_file_is_checked_whole_so_bytes_after_its_member_or_a_cut_trailer_are_refused()
    {
        // .NET's GZipStream stops without an error at bytes after a member that do not start another, and the IDX reader
        // read such a file as if the bytes were not there; it now goes through GzipFile's check, as a .csv.gz does.
        var content = Idx(0x08, [3, 2, 2], 12);
        var packed = Gzip(content);
        var good = IdxFile.Read(Write("good-idx3-ubyte.gz", packed), 3);
        Assert.Equal(new[] { 3, 2, 2 }, good.Dimensions);
        Assert.Equal(content[16..], good.Data);

        var appended = Write("appended-idx3-ubyte.gz", [.. packed, .. "junk"u8]);
        foreach (var read in new Action[] { () => IdxFile.Read(appended, 3), () => IdxFile.ReadAsSingles(appended, 3, 255f) })
            Assert.StartsWith($"{appended}: the data at byte offset {packed.Length} follows the file's first gzip member but does not start " +
                "another member: its first byte is 0x6a, not gzip's 0x1f. The 4 bytes from there to the end of the file cannot be read as gzip",
                Assert.Throws<DataFormatException>(read).Message);

        // Cut inside the 8-byte trailer: the deflate data is whole, so only the check sees that the file is short.
        var cut = Write("cut-idx3-ubyte.gz", packed[..^3]);
        Assert.Equal($"{cut}: the gzip data ends early, inside member 1 (which starts at byte 0). The file is truncated; download or write it again.",
            Assert.Throws<DataFormatException>(() => IdxFile.Read(cut, 3)).Message);
    }

    /// <summary>
    /// Images and labels of different splits are refused, also when a limit reads only the first items of each (a user
    /// who put the training labels beside the test images trained on wrong labels without a word while
    /// Data:TestLimit was set); gzip files as the dataset ships them.
    /// </summary>
    [Theory]
    [InlineData(0, false)]
    [InlineData(2, false)]
    [InlineData(2, true)]
    public void Image_and_label_counts_must_match(int limit, bool gzip)
    {
        if (gzip)
        {
            WriteGzip("train-images-idx3-ubyte.gz", Idx(0x08, [3, 2, 2], 12));
            WriteGzip("train-labels-idx1-ubyte.gz", Idx(0x08, [4], 4));
        }
        else
        {
            Write("train-images-idx3-ubyte", Idx(0x08, [3, 2, 2], 12));
            Write("train-labels-idx1-ubyte", Idx(0x08, [4], 4));
        }
        var error = Assert.Throws<DataFormatException>(() => FashionMnist.LoadSplit(_directory, "train", limit));
        Assert.Contains("holds 3 images but", error.Message);
        Assert.Contains("holds 4 labels", error.Message);
    }

    [Fact]
    public void The_declared_count_is_read_from_the_header_of_raw_and_gzip_files_and_a_short_file_is_an_error()
    {
        Assert.Equal(3, IdxFile.DeclaredCount(Write("images", Idx(0x08, [3, 2, 2], 12))));
        Assert.Equal(70_000, IdxFile.DeclaredCount(WriteGzip("labels.gz", Idx(0x08, [70_000], 70_000))));
        var shortFile = Write("short", [0, 0, 8, 1, 0]);
        Assert.Contains("too short for an IDX header", Assert.Throws<DataFormatException>(() => IdxFile.DeclaredCount(shortFile)).Message);
    }

    private string WriteGzip(string name, byte[] content)
    {
        var buffer = new MemoryStream();
        using (var gz = new GZipStream(buffer, CompressionLevel.Fastest, leaveOpen: true))
            gz.Write(content);
        return Write(name, buffer.ToArray());
    }

    [Fact]
    public void Labels_outside_the_classes_are_an_error()
    {
        Write("train-images-idx3-ubyte", Idx(0x08, [1, 2, 2], 4));
        var labels = Idx(0x08, [1], 1);
        labels[^1] = 12;
        Write("train-labels-idx1-ubyte", labels);
        Assert.Contains("label 12 of item 0", Assert.Throws<DataFormatException>(() => FashionMnist.LoadSplit(_directory, "train")).Message);
    }

    [Fact]
    public void A_missing_file_or_folder_says_how_to_install_the_data()
    {
        Assert.Contains("apt-get install dataset-fashion-mnist", Assert.Throws<DataFormatException>(() => FashionMnist.LoadSplit(_directory, "train")).Message);
        Assert.Contains("does not exist", Assert.Throws<DataFormatException>(() => FashionMnist.Load(Path.Combine(_directory, "nope"))).Message);
    }

    /// <summary>Reads with <paramref name="read"/>, which must refuse the file; returns the message and the bytes this thread allocated.</summary>
    private static (string Message, long Allocated) RefuseMeasured(Action read)
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        var error = Assert.Throws<DataFormatException>(read);
        return (error.Message, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    [Fact]
    public void A_header_that_claims_more_data_than_the_file_holds_is_refused_before_allocating()
    {
        // 16 bytes of file whose header declares 10,000 x 100 x 100 = 100,000,000 bytes of pixels: before, the reader
        // allocated the 100 MB (400 MB as floats) and only then found the data missing.
        var raw = Write("claims-idx3-ubyte", Idx(0x08, [10_000, 100, 100], 0));
        var gzip = Write("claims-idx3-ubyte.gz", Gzip(Idx(0x08, [10_000, 100, 100], 4)));
        foreach (var path in new[] { raw, gzip })
        {
            var (bytes, bytesAllocated) = RefuseMeasured(() => IdxFile.Read(path, 3));
            Assert.Contains(path, bytes);
            Assert.Contains("[10000, 100, 100] = 100000000 bytes of data but only", bytes);
            Assert.True(bytesAllocated < 10 << 20, $"{bytesAllocated:N0} bytes allocated: {bytes}");
            var (floats, floatsAllocated) = RefuseMeasured(() => IdxFile.ReadAsSingles(path, 3, 255f));
            Assert.Contains("truncated", floats);
            Assert.True(floatsAllocated < 10 << 20, $"{floatsAllocated:N0} bytes allocated: {floats}");
        }
    }

    [Fact]
    public void Dimensions_whose_product_overflows_are_refused()
    {
        var path = Write("overflow-idx3-ubyte", Idx(0x08, [65_536, 65_536, 2], 0));
        Assert.Contains("more than 2147483647 bytes of data", Assert.Throws<DataFormatException>(() => IdxFile.Read(path, 3)).Message);
    }

    private static byte[] Gzip(byte[] bytes)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest)) gzip.Write(bytes);
        return output.ToArray();
    }
}
