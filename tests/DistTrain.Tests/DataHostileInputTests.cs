using System.Buffers.Binary;
using System.IO.Compression;
using System.IO.Hashing;
using System.Text;
using System.Text.Json;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Layers;
using DistTrain.Core.Models;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

/// <summary>
/// The readers of users' files (PNG and JPEG images, image folders, CSV files, a saved model's metadata) check the sizes
/// those files claim before allocating for them, and refuse what they cannot hold with a <see cref="DataFormatException"/>
/// or <see cref="InvalidDataException"/> naming the file, instead of allocating gigabytes or crashing.
/// </summary>
public class DataHostileInputTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-data-hostile-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>A PNG chunk: length, type, data and the CRC-32 of type and data (PNG specification, section 5.3).</summary>
    private static byte[] Chunk(string type, byte[] data)
    {
        var typeAndData = Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
        var chunk = new byte[8 + data.Length + 4];
        BinaryPrimitives.WriteInt32BigEndian(chunk, data.Length);
        typeAndData.CopyTo(chunk, 4);
        BinaryPrimitives.WriteUInt32BigEndian(chunk.AsSpan(8 + data.Length), Crc32.HashToUInt32(typeAndData));
        return chunk;
    }

    /// <summary>
    /// A grayscale PNG whose header declares <paramref name="width"/> x <paramref name="height"/> pixels, followed by the
    /// compressed first row only: about 100 bytes that a decoder would allocate the whole declared bitmap for.
    /// </summary>
    private static byte[] PngClaiming(int width, int height)
    {
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        header[8] = 8; // bit depth; colour type 0 (gray), deflate, filter 0, no interlace
        using var compressed = new MemoryStream();
        using (var zlib = new ZLibStream(compressed, CompressionLevel.SmallestSize, leaveOpen: true))
            zlib.Write(new byte[1 + width]);
        byte[] signature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
        return [.. signature, .. Chunk("IHDR", header), .. Chunk("IDAT", compressed.ToArray())];
    }

    [Fact]
    public void An_image_whose_header_claims_gigapixels_is_refused_before_its_bitmap_is_allocated()
    {
        var path = Path.Combine(_directory, "huge.png");
        File.WriteAllBytes(path, PngClaiming(100_000, 100_000)); // 10^10 pixels: 40 GB as RGBA
        var sample = new float[28 * 28];
        var before = GC.GetTotalAllocatedBytes(precise: true);
        var error = Assert.Throws<DataFormatException>(() => ImageFile.Read(path, new TensorShape(1, 28, 28), resize: true, sample));
        Assert.Contains($"{path}: the header claims 100000x100000 pixels", error.Message);
        Assert.Contains("at most 67,108,864 pixels", error.Message);
        Assert.True(GC.GetTotalAllocatedBytes(precise: true) - before < 1 << 20, "allocated a megabyte or more before refusing");

        // Within the limit the same kind of file is decoded as far as it goes and refused as truncated, not as too large.
        File.WriteAllBytes(path, PngClaiming(64, 64));
        Assert.Contains("the file is truncated", Assert.Throws<DataFormatException>(() => ImageFile.Read(path, new TensorShape(1, 28, 28), resize: true, sample)).Message);
    }

    [Fact]
    public void An_image_folder_larger_than_one_array_is_refused_before_decoding()
    {
        var folder = ImageFolderTests.WriteFolder(Path.Combine(_directory, "images"), TestData.RawTrain, 4);
        var shape = new TensorShape(3, 16_384, 16_384); // 805,306,368 values per image; 4 images exceed Array.MaxLength
        var error = Assert.Throws<DataFormatException>(() => ImageFolderDataset.Read(folder, shape, resize: true));
        Assert.Contains($"{folder}: 4 images of {shape} would be 3,221,225,472 values", error.Message);
        Assert.Contains("Use fewer or smaller images", error.Message);
    }

    [Fact]
    public void A_csv_file_with_more_values_than_the_limit_is_refused_at_the_line_that_passes_it()
    {
        var path = Path.Combine(_directory, "rows.csv");
        File.WriteAllText(path, "a,b,label\n" + string.Concat(Enumerable.Range(0, 10).Select(i => $"{i},{i},0\n")));
        Assert.Equal(10, CsvDataset.Read(path, new CsvOptions(), null, maxValues: 20).Data.Count);
        var error = Assert.Throws<DataFormatException>(() => CsvDataset.Read(path, new CsvOptions(), null, maxValues: 19));
        Assert.Contains($"{path}: line 11: the file holds more than 19 feature values", error.Message);
    }

    /// <summary>A small valid model file whose 'model_config' metadata entry is replaced by <paramref name="modelConfig"/>.</summary>
    private string ModelFileDescribing(ModelOptions modelConfig)
    {
        var small = new ModelOptions { InputSize = 4, Layers = [new LayerOptions { Type = "Dense", Units = 2 }] };
        var weights = new ParameterVector(ModelFactory.Build(small).Layout);
        var path = Path.Combine(_directory, "model.safetensors");
        SafeTensors.Write(path, weights, new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["model_config"] = JsonSerializer.Serialize(modelConfig),
            ["input_normalization"] = "Global",
            ["input_mean"] = "[0]",
            ["input_std"] = "[1]",
        });
        return path;
    }

    [Fact]
    public void A_model_file_whose_metadata_describes_a_network_larger_than_the_file_is_refused_before_allocating_its_weights()
    {
        // 2^20 units on 2^10 inputs: 2^30 weights, 4.3 GB, described by a file of a few hundred bytes.
        var path = ModelFileDescribing(new ModelOptions { InputSize = 1 << 10, Layers = [new LayerOptions { Type = "Dense", Units = 1 << 20 }] });
        var before = GC.GetTotalAllocatedBytes(precise: true);
        var error = Assert.Throws<InvalidDataException>(() => TrainedModel.Load(path));
        Assert.Contains($"{path}: the 'model_config' entry describes at least 1,073,741,824 weights (4,294,967,296 bytes of float32) but the file has", error.Message);
        Assert.True(GC.GetTotalAllocatedBytes(precise: true) - before < 64 << 20, "allocated 64 MiB or more before refusing");

        // More weights than an array index reaches (2^31): refused as a config's model is, not an unhandled OverflowException.
        path = ModelFileDescribing(new ModelOptions { InputSize = 1 << 11, Layers = [new LayerOptions { Type = "Dense", Units = 1 << 20 }] });
        Assert.Contains($"{path}: the network in the 'model_config' entry is not valid: Model:Layers:0 (Dense, 1,048,576 units) has 2,148,532,224 parameters, " +
            "more than one array holds (2,147,483,591)", Assert.Throws<InvalidDataException>(() => TrainedModel.Load(path)).Message);
    }

    [Fact]
    public void The_weight_count_lower_bound_equals_the_built_networks_weight_tensors_for_every_shipped_config()
    {
        var configs = Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "configs"), "*.json");
        Assert.NotEmpty(configs);
        foreach (var config in configs)
        {
            var options = TrainingOptionsLoader.Load(config, checkDataDirectory: false).Model;
            options.Pretrained = "";
            var model = ModelFactory.Build(options);
            var weights = model.Layout.Segments.Where(s => s.Name.EndsWith(".weight", StringComparison.Ordinal))
                .Where(s => LayerTypes.Canonical(options.Layers[int.Parse(s.Name.Split('.')[0])].Type) is LayerTypes.Dense or LayerTypes.Conv2D)
                .Sum(s => (long)s.Length);
            Assert.True(weights == ModelFactory.WeightCountLowerBound(options), $"{config}: {weights} weights built, {ModelFactory.WeightCountLowerBound(options)} counted");
            Assert.InRange(weights, 1, model.Layout.TotalLength);
            // Every parameter, counted from the shapes as the validator counts them, is what Build allocates.
            var parameters = ModelFactory.ParameterCounts(options);
            Assert.Equal(options.Layers.Count, parameters.Count);
            Assert.True(parameters.Sum() == model.Layout.TotalLength, $"{config}: {model.Layout.TotalLength} parameters built, {parameters.Sum()} counted");
        }
    }

    [Theory]
    [InlineData("MaxPool2D", 4, 0, 0)]  // a 4x4 window in 3x3 maps, stride 4: (3 - 4) / 4 + 1 is 1 in integer division
    [InlineData("AvgPool2D", 5, 3, 0)]  // stride 3: (3 - 5) / 3 + 1 is 1 too
    [InlineData("Conv2D", 4, 2, 0)]     // (3 + 0 - 4) / 2 + 1 is 1
    [InlineData("Conv2D", 6, 3, 1)]     // (3 + 2 - 6) / 3 + 1 is 1
    public void A_window_that_does_not_fit_ends_the_count_at_its_layer_as_Build_refuses_it(string type, int kernel, int stride, int padding)
    {
        var options = new ModelOptions
        {
            InputShape = [1, 3, 3],
            Layers = [new() { Type = type, KernelSize = kernel, Stride = stride, Padding = padding, Channels = 2 }, new() { Type = "Flatten" }, new() { Type = "Dense", Units = 10 }],
        };
        Assert.Throws<ArgumentException>(() => ModelFactory.Build(options));
        // The layer that does not fit is the last counted, with an empty output; nothing after it is counted as if it had 1x1 maps.
        var weights = type == "Conv2D" ? 2L * kernel * kernel : 0;
        Assert.Equal([weights + (type == "Conv2D" ? 2 : 0)], ModelFactory.ParameterCounts(options));
        Assert.Equal(weights, ModelFactory.WeightCountLowerBound(options));
    }

    [Fact]
    public void A_model_file_whose_metadata_describes_an_invalid_network_names_the_problem_as_a_config_would()
    {
        var path = ModelFileDescribing(new ModelOptions { InputSize = 4, Layers = [new LayerOptions { Type = "Dense", Units = 0 }] });
        var error = Assert.Throws<InvalidDataException>(() => TrainedModel.Load(path));
        Assert.Contains($"{path}: the network in the 'model_config' entry is not valid: Model:Layers:0:Units = 0 is out of range", error.Message);
    }
}
