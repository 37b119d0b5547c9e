using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Layers;
using SkiaSharp;

namespace DistTrain.Tests;

/// <summary>Image folders written from the Fashion-MNIST subset, read back through the ImageFolder loader.</summary>
public class ImageFolderTests : IDisposable
{
    /// <summary>Fashion-MNIST's class names, as folder names (sorted order differs from the label order).</summary>
    internal static readonly string[] FashionNames = ["T-shirt_top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-images-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>Writes a 28x28 (or <paramref name="scale"/> times larger, each pixel repeated) image of a subset sample.</summary>
    internal static void WriteImage(string path, ReadOnlySpan<float> pixels, SKEncodedImageFormat format = SKEncodedImageFormat.Png, bool rgb = false, int scale = 1)
    {
        var side = 28 * scale;
        using var bitmap = new SKBitmap(new SKImageInfo(side, side, rgb ? SKColorType.Rgba8888 : SKColorType.Gray8, SKAlphaType.Opaque));
        var target = bitmap.GetPixelSpan();
        for (var y = 0; y < side; y++)
        for (var x = 0; x < side; x++)
        {
            var value = (byte)Math.Round(pixels[y / scale * 28 + x / scale] * 255);
            if (!rgb) { target[y * side + x] = value; continue; }
            var p = 4 * (y * side + x);
            (target[p], target[p + 1], target[p + 2], target[p + 3]) = (value, value, value, 255);
        }
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var data = bitmap.Encode(format, 100);
        File.WriteAllBytes(path, data.ToArray());
    }

    /// <summary>Writes the first <paramref name="count"/> samples as class-folder/index.png; returns the folder.</summary>
    internal static string WriteFolder(string root, LabeledDataset source, int count, SKEncodedImageFormat format = SKEncodedImageFormat.Png, bool rgb = false, int scale = 1)
    {
        var extension = format == SKEncodedImageFormat.Png ? "png" : "jpg";
        for (var i = 0; i < count; i++)
            WriteImage(Path.Combine(root, FashionNames[source.Labels[i]], $"{i:D5}.{extension}"), source.Sample(i), format, rgb, scale);
        return root;
    }

    /// <summary>The subset index of each loaded sample, in the loader's order (classes sorted by name, then files).</summary>
    private static int[] LoadedOrder(LabeledDataset source, int count) =>
        [.. Enumerable.Range(0, count).OrderBy(i => FashionNames[source.Labels[i]], StringComparer.Ordinal).ThenBy(i => i)];

    [Fact]
    public void Png_images_read_back_exactly_with_classes_named_and_numbered_by_sorted_folder_name()
    {
        var source = TestData.RawTrain;
        var folder = WriteFolder(Path.Combine(_directory, "png"), source, 60);
        var data = ImageFolderDataset.Read(folder, new TensorShape(1, 28, 28), resize: false);
        var sorted = FashionNames.Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(sorted, data.ClassNames!);
        Assert.Equal(60, data.Count);
        var order = LoadedOrder(source, 60);
        for (var i = 0; i < order.Length; i++)
        {
            Assert.Equal(FashionNames[source.Labels[order[i]]], data.ClassNames![data.Labels[i]]);
            Assert.True(source.Sample(order[i]).SequenceEqual(data.Sample(i)), $"image {i} (subset sample {order[i]}) differs");
        }
    }

    [Fact]
    public void Hidden_folders_and_files_are_neither_classes_nor_images()
    {
        var source = TestData.RawTrain;
        var plain = ImageFolderDataset.Read(WriteFolder(Path.Combine(_directory, "plain"), source, 30), new TensorShape(1, 28, 28), resize: false);
        var folder = WriteFolder(Path.Combine(_directory, "with-hidden"), source, 30);
        var someClass = Directory.GetDirectories(folder).Order(StringComparer.Ordinal).First();
        WriteImage(Path.Combine(folder, ".ipynb_checkpoints", "00000-checkpoint.png"), source.Sample(0)); // a notebook's copy
        WriteImage(Path.Combine(someClass, ".thumbnails", "small.png"), source.Sample(1));
        File.WriteAllBytes(Path.Combine(someClass, "._00000.png"), [0, 5, 22, 7, 0, 2, 0, 0]); // a macOS resource file, not a PNG

        var data = ImageFolderDataset.Read(folder, new TensorShape(1, 28, 28), resize: false);
        Assert.Equal(plain.ClassNames!, data.ClassNames!);
        Assert.Equal(plain.Labels, data.Labels);
        Assert.Equal(plain.Features, data.Features);
    }

    [Fact]
    public void Images_of_formats_not_read_are_skipped_and_named_in_a_warning()
    {
        var source = TestData.RawTrain;
        var folder = WriteFolder(Path.Combine(_directory, "mixed"), source, 30);
        var classes = Directory.GetDirectories(folder).Order(StringComparer.Ordinal).ToArray();
        Assert.Null(Cli.TrainCommand.SkippedImages(folder));
        Assert.Empty(ImageFolderDataset.UnreadImages(Path.Combine(_directory, "missing")));

        File.WriteAllBytes(Path.Combine(classes[1], "scan.GIF"), [0x47, 0x49, 0x46, 0x38, 0x39, 0x61]);
        File.WriteAllBytes(Path.Combine(classes[0], "b.bmp"), [0x42, 0x4D]);
        File.WriteAllBytes(Path.Combine(classes[0], "a.bmp"), [0x42, 0x4D]);
        File.WriteAllBytes(Path.Combine(classes[0], "._c.bmp"), [0]);      // hidden: not counted
        File.WriteAllText(Path.Combine(classes[0], "README.txt"), "notes"); // not an image: skipped without a word
        var data = ImageFolderDataset.Read(folder, new TensorShape(1, 28, 28), resize: false);
        Assert.Equal(30, data.Count);

        Assert.Equal([Path.Combine(classes[0], "a.bmp"), Path.Combine(classes[0], "b.bmp"), Path.Combine(classes[1], "scan.GIF")], ImageFolderDataset.UnreadImages(folder));
        Assert.Equal($"{folder}: 3 images skipped, as only .png, .jpg, .jpeg files are read (2 .bmp, 1 .gif; the first is {Path.Combine(classes[0], "a.bmp")}). " +
            "Convert them to PNG to train on them, or remove them.", Cli.TrainCommand.SkippedImages(folder));
    }

    [Fact]
    public void A_symbolic_link_back_into_the_folder_is_refused_naming_it_and_one_to_a_folder_outside_is_followed()
    {
        var source = TestData.RawTrain;
        var shape = new TensorShape(1, 28, 28);
        var folder = WriteFolder(Path.Combine(_directory, "linked"), source, 30);
        var plain = ImageFolderDataset.Read(folder, shape, resize: false);
        var bag = Path.Combine(folder, "Bag");
        Assert.True(Directory.Exists(bag));

        // A loop (Bag/loop -> ..) was followed until the system's limit of nested links: the folder some 40 times over, as Bag.
        var loop = Path.Combine(bag, "loop");
        Directory.CreateSymbolicLink(loop, "..");
        var error = Assert.Throws<DataFormatException>(() => ImageFolderDataset.Read(folder, shape, resize: false));
        Assert.Equal($"{loop}: a symbolic link back to {folder}: a loop, which would read the same images again and again. " +
            $"Remove the link; links to folders outside {folder} are followed.", error.Message);
        Assert.Empty(ImageFolderDataset.UnreadImages(folder)); // Read reports it; the warning's search does not hang or throw
        // The test folder is read by the same rule, with the training folder's classes.
        Assert.Equal(error.Message, Assert.Throws<DataFormatException>(() => ImageFolderDataset.Read(folder, shape, resize: false, plain.ClassNames)).Message);
        File.Delete(loop);
        // A link to a folder that holds the image folder is a loop too.
        var up = Path.Combine(bag, "up");
        Directory.CreateSymbolicLink(up, Path.Combine("..", ".."));
        Assert.Equal($"{up}: a symbolic link to {_directory}, which holds {folder}: a loop, which would read the same images again and again. " +
            $"Remove the link; links to folders outside {folder} are followed.", Assert.Throws<DataFormatException>(() => ImageFolderDataset.Read(folder, shape, resize: false)).Message);
        File.Delete(up);

        // A link to another class's folder: its images would be read twice, once labelled as Bag.
        var coat = Path.Combine(folder, "Coat");
        var coats = Path.Combine(bag, "coats");
        Directory.CreateSymbolicLink(coats, Path.Combine("..", "Coat"));
        Assert.Equal($"{coats}: a symbolic link to {coat}, which is inside {folder}: its images would be read twice, once through the link. " +
            $"Remove the link (copy the images if they are meant to be read twice); links to folders outside {folder} are followed.",
            Assert.Throws<DataFormatException>(() => ImageFolderDataset.Read(folder, shape, resize: false)).Message);
        File.Delete(coats);

        // A hidden link is skipped, as every hidden entry is.
        Directory.CreateSymbolicLink(Path.Combine(bag, ".loop"), "..");
        Assert.Equal(plain.Labels, ImageFolderDataset.Read(folder, shape, resize: false).Labels);
        // A link into a hidden folder, which the walk skips, reads its images once: through the link.
        WriteImage(Path.Combine(folder, ".pool", "p.png"), source.Sample(2));
        var pool = Path.Combine(bag, "pool");
        Directory.CreateSymbolicLink(pool, Path.Combine("..", ".pool"));
        var pooled = ImageFolderDataset.Read(folder, shape, resize: false);
        Assert.Equal(plain.Count + 1, pooled.Count);
        Assert.Single(pooled.SampleNames!, n => n == Path.Combine(pool, "p.png"));
        File.Delete(pool);

        // A link to a folder outside is followed (as torchvision does), its images labelled as the class it is in; a second
        // link to the same folder would read them twice.
        var extra = Path.Combine(_directory, "extra");
        WriteImage(Path.Combine(extra, "more", "x.png"), source.Sample(0));
        WriteImage(Path.Combine(extra, "y.png"), source.Sample(1));
        var outside = Path.Combine(bag, "outside");
        Directory.CreateSymbolicLink(outside, extra);
        var data = ImageFolderDataset.Read(folder, shape, resize: false);
        Assert.Equal(plain.Count + 2, data.Count);
        var bagIndex = Array.IndexOf(plain.ClassNames!.ToArray(), "Bag");
        Assert.Equal([Path.Combine(outside, "more", "x.png"), Path.Combine(outside, "y.png")],
            data.SampleNames!.Where(n => n.StartsWith(outside + Path.DirectorySeparatorChar, StringComparison.Ordinal)).ToArray());
        Assert.Equal(plain.Labels.Count(l => l == bagIndex) + 2, data.Labels.Count(l => l == bagIndex));
        var again = Path.Combine(coat, "again");
        Directory.CreateSymbolicLink(again, Path.Combine(extra, "more"));
        Assert.Equal($"{again}: a symbolic link to {Path.Combine(extra, "more")}, inside {extra}, where {outside} leads: its images would be read twice. " +
            "Remove one of the two links.", Assert.Throws<DataFormatException>(() => ImageFolderDataset.Read(folder, shape, resize: false)).Message);
    }

    [Fact]
    public void Jpeg_and_rgb_images_read_as_their_pixels()
    {
        var source = TestData.RawTrain;
        var jpeg = ImageFolderDataset.Read(WriteFolder(Path.Combine(_directory, "jpeg"), source, 20, SKEncodedImageFormat.Jpeg), new TensorShape(1, 28, 28), resize: false);
        var order = LoadedOrder(source, 20);
        var meanError = order.Select((s, i) => source.Sample(s).ToArray().Zip(jpeg.Sample(i).ToArray()).Average(p => Math.Abs(p.First - p.Second))).Average();
        Assert.InRange(meanError, 0, 0.02); // JPEG at quality 100 is lossy by a few grey levels around edges

        var rgb = ImageFolderDataset.Read(WriteFolder(Path.Combine(_directory, "rgb"), source, 20, rgb: true), new TensorShape(3, 28, 28), resize: false);
        for (var i = 0; i < order.Length; i++)
        for (var channel = 0; channel < 3; channel++)
            Assert.True(source.Sample(order[i]).SequenceEqual(rgb.Sample(i).Slice(channel * 784, 784)), $"image {i} channel {channel}");
        // An RGB image read as grayscale: PIL's luma of equal R, G and B is the same grey.
        var gray = ImageFolderDataset.Read(Path.Combine(_directory, "rgb"), new TensorShape(1, 28, 28), resize: false);
        Assert.True(source.Sample(order[0]).SequenceEqual(gray.Sample(0)));
    }

    [Fact]
    public void Images_of_another_size_are_resized_when_asked_and_refused_otherwise()
    {
        var source = TestData.RawTrain;
        var folder = WriteFolder(Path.Combine(_directory, "large"), source, 10, scale: 2);
        var error = Assert.Throws<DataFormatException>(() => ImageFolderDataset.Read(folder, new TensorShape(1, 28, 28), resize: false));
        Assert.Contains("is 56x56 (width x height) but Model:InputShape [1, 28, 28] needs 28x28", error.Message);
        Assert.Contains("Data:ImageFolder:Resize", error.Message);
        Assert.Contains("--resize", error.Message); // the option predict and evaluate take
        var resized = ImageFolderDataset.Read(folder, new TensorShape(1, 28, 28), resize: true);
        var order = LoadedOrder(source, 10);
        var meanError = order.Select((s, i) => source.Sample(s).ToArray().Zip(resized.Sample(i).ToArray()).Average(p => Math.Abs(p.First - p.Second))).Average();
        Assert.InRange(meanError, 0, 0.03);
    }

    [Fact]
    public void Bad_folders_and_files_are_named_in_the_error()
    {
        var shape = new TensorShape(1, 28, 28);
        var train = WriteFolder(Path.Combine(_directory, "train"), TestData.RawTrain, 30);
        Assert.Contains("no such folder", Assert.Throws<DataFormatException>(() => ImageFolderDataset.Read(Path.Combine(_directory, "none"), shape, false)).Message);
        var flat = Directory.CreateDirectory(Path.Combine(_directory, "flat")).FullName;
        Assert.Contains("no class sub-folders", Assert.Throws<DataFormatException>(() => ImageFolderDataset.Read(flat, shape, false)).Message);

        var test = Path.Combine(_directory, "test");
        WriteImage(Path.Combine(test, "Hat", "0.png"), TestData.RawTest.Sample(0));
        var classes = ImageFolderDataset.Read(train, shape, false).ClassNames;
        Assert.Contains("sub-folder 'Hat' is not a class of the training folder", Assert.Throws<DataFormatException>(() => ImageFolderDataset.Read(test, shape, false, classes)).Message);
        WriteImage(Path.Combine(test, "Cap", "0.png"), TestData.RawTest.Sample(1));
        Assert.Contains("sub-folders 'Cap', 'Hat' are not classes of the training folder", Assert.Throws<DataFormatException>(() => ImageFolderDataset.Read(test, shape, false, classes)).Message);

        Directory.CreateDirectory(Path.Combine(train, "Empty"));
        File.WriteAllText(Path.Combine(train, "Empty", "notes.txt"), "not an image");
        Assert.Contains("class folder 'Empty' holds no .png, .jpg, .jpeg file", Assert.Throws<DataFormatException>(() => ImageFolderDataset.Read(train, shape, false)).Message);
        Directory.CreateDirectory(Path.Combine(train, "Void"));
        Assert.Contains("class folders 'Empty', 'Void' hold no .png, .jpg, .jpeg file", Assert.Throws<DataFormatException>(() => ImageFolderDataset.Read(train, shape, false)).Message);
        Directory.Delete(Path.Combine(train, "Empty"), recursive: true);
        Directory.Delete(Path.Combine(train, "Void"), recursive: true);

        var broken = Path.Combine(train, "Bag", "broken.png");
        File.WriteAllBytes(broken, [0x89, 0x50, 0x4E, 0x47, 1, 2, 3]);
        var error = Assert.Throws<DataFormatException>(() => ImageFolderDataset.Read(train, shape, false));
        Assert.Contains(broken, error.Message);

        // An empty file, and one of text: what is wrong in words, not the decoder's status name ("Unimplemented").
        var sample = new float[shape.Size];
        var empty = Path.Combine(_directory, "empty.png");
        File.WriteAllBytes(empty, []);
        Assert.Equal($"{empty}: the file is empty (0 bytes), not an image. Write or copy the image again.",
            Assert.Throws<DataFormatException>(() => ImageFile.Read(empty, shape, false, sample)).Message);
        var text = Path.Combine(_directory, "text.png");
        File.WriteAllText(text, "not an image at all");
        Assert.Equal($"{text}: not a PNG or JPEG image that can be decoded (its first bytes are neither a PNG nor a JPEG signature).",
            Assert.Throws<DataFormatException>(() => ImageFile.Read(text, shape, false, sample)).Message);
    }

    [Fact]
    public void An_image_folder_run_uses_the_same_split_class_filter_and_normalization_as_idx()
    {
        var folder = WriteFolder(Path.Combine(_directory, "all"), TestData.RawTrain, 200);
        var options = new TrainingOptions
        {
            Data = new DataOptions
            {
                Format = DataFormat.ImageFolder, ImageFolder = new ImageFolderOptions { TrainDirectory = folder }, TestFraction = 0.2,
                Classes = [9, 0], ValidationFraction = 0.1, Normalization = NormalizationKind.Global,
            },
            Model = new Core.Models.ModelOptions { InputShape = [1, 28, 28] },
        };
        var data = TrainingData.Load(options);
        // Sorted folder names: index 0 is "Ankle boot", 9 is "Trouser".
        Assert.Equal(["Trouser", "Ankle boot"], data.ClassNames!);
        Assert.True(data.LabelsAreNames);
        Assert.Equal(255f, data.InputDivisor);
        var all = ImageFolderDataset.Read(folder, new TensorShape(1, 28, 28), resize: false);
        var (train, test) = TestSplit.Split(all, 0.2, seed: 0, "folder");
        var kept = train.KeepClasses([9, 0]);
        Assert.Equal(kept.Count, data.Train.Count + data.Validation!.Count);
        Assert.Equal(test.KeepClasses([9, 0]).Count, data.Test.Count);
        Assert.Equal(NormalizationKind.Global, data.Train.Normalization!.Kind);
        Assert.InRange(data.Train.Features.Average(), -1e-4, 1e-4);
    }
}
