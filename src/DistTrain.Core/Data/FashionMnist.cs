namespace DistTrain.Core.Data;

/// <summary>
/// Loads MNIST-format data sets (Fashion-MNIST, MNIST) from a folder holding the four standard IDX
/// files, gzip-compressed (<c>train-images-idx3-ubyte.gz</c>) or raw (<c>train-images-idx3-ubyte</c>).
/// Pixels become floats in [0, 1]; apply a <see cref="Normalizer"/> afterwards.
/// </summary>
public static class FashionMnist
{
    /// <summary>Number of classes in MNIST and Fashion-MNIST.</summary>
    public const int ClassCount = 10;

    /// <summary>Debian's <c>dataset-fashion-mnist</c> package installs the files here.</summary>
    public const string DebianDirectory = "/usr/share/datasets/fashion-mnist";

    /// <summary>Loads the training and test splits.</summary>
    /// <exception cref="DataFormatException">The folder or a file is missing, malformed, or images and labels disagree.</exception>
    /// <param name="directory">Folder with the four IDX files.</param>
    /// <param name="trainLimit">Keep only the first N training samples (0 = all).</param>
    /// <param name="testLimit">Keep only the first N test samples (0 = all).</param>
    public static (LabeledDataset Train, LabeledDataset Test) Load(string directory, int trainLimit = 0, int testLimit = 0)
    {
        if (!Directory.Exists(directory))
            throw new DataFormatException($"Data directory '{directory}' does not exist. Install Fashion-MNIST with 'apt-get install dataset-fashion-mnist' (it lands in {DebianDirectory}) or set Data:Directory / --data to the folder with the IDX files.");
        return (LoadSplit(directory, "train", trainLimit), LoadSplit(directory, "t10k", testLimit));
    }

    /// <summary>Loads one split (<c>train</c> or <c>t10k</c>) and checks that images and labels match.</summary>
    /// <exception cref="DataFormatException">A file is missing or malformed, or the counts differ.</exception>
    public static LabeledDataset LoadSplit(string directory, string prefix, int limit = 0)
    {
        var imagesPath = Find(directory, ImagesFile(prefix));
        var labelsPath = Find(directory, LabelsFile(prefix));
        // Pixels go straight into floats in [0, 1]: the 47 MB byte form of the training images never exists whole.
        var (imageDimensions, features) = IdxFile.ReadAsSingles(imagesPath, expectedDimensions: 3, divisor: 255f, maxItems: limit);
        var labels = IdxFile.Read(labelsPath, expectedDimensions: 1, maxItems: limit);
        if (limit == 0 && imageDimensions[0] != labels.Count)
            throw new DataFormatException($"{imagesPath} holds {imageDimensions[0]} images but {labelsPath} holds {labels.Count} labels; the two files must come from the same split.");
        if (limit > 0)
        {
            // Only the first items were read: the headers still say whether the two files belong together.
            var (declaredImages, declaredLabels) = (IdxFile.DeclaredCount(imagesPath), IdxFile.DeclaredCount(labelsPath));
            if (declaredImages != declaredLabels)
                throw new DataFormatException($"{imagesPath} holds {declaredImages} images but {labelsPath} holds {declaredLabels} labels; the two files must come from the same split.");
            if (imageDimensions[0] != labels.Count)
                throw new DataFormatException($"{imagesPath} and {labelsPath} do not both hold {limit} items (Data:TrainLimit/TestLimit): {imageDimensions[0]} images, {labels.Count} labels.");
        }
        for (var i = 0; i < labels.Data.Length; i++)
            if (labels.Data[i] >= ClassCount)
                throw new DataFormatException($"{labelsPath}: label {labels.Data[i]} of item {i} is outside 0..{ClassCount - 1}.");
        return new LabeledDataset(features, labels.Data, imageDimensions[1] * imageDimensions[2], ClassCount);
    }

    /// <summary>The four IDX files' names without <c>.gz</c>, training split first.</summary>
    public static readonly IReadOnlyList<string> FileNames =
        [ImagesFile("train"), LabelsFile("train"), ImagesFile("t10k"), LabelsFile("t10k")];

    /// <summary>The images file of split <paramref name="prefix"/> (<c>train</c> or <c>t10k</c>), without <c>.gz</c>.</summary>
    private static string ImagesFile(string prefix) => $"{prefix}-images-idx3-ubyte";

    /// <summary>The labels file of split <paramref name="prefix"/>, without <c>.gz</c>.</summary>
    private static string LabelsFile(string prefix) => $"{prefix}-labels-idx1-ubyte";

    /// <summary>
    /// The IDX files of <paramref name="directory"/> held both gzip-compressed and raw (<c>train-images-idx3-ubyte.gz</c>
    /// beside <c>train-images-idx3-ubyte</c>), by their raw names, in <see cref="FileNames"/> order: the loader reads the
    /// <c>.gz</c> file of each and ignores the raw one, which callers say once.
    /// </summary>
    /// <param name="directory">Folder with the IDX files; a missing folder has none.</param>
    public static IReadOnlyList<string> IgnoredRawFiles(string directory) =>
        [.. FileNames.Where(name => File.Exists(Path.Combine(directory, name + ".gz")) && File.Exists(Path.Combine(directory, name)))];

    /// <summary>
    /// One line naming the raw IDX files of <paramref name="directory"/> that are ignored because their <c>.gz</c>
    /// files are read (<see cref="IgnoredRawFiles"/>), with the fix; null when there are none.
    /// </summary>
    /// <param name="directory">Folder with the IDX files.</param>
    public static string? IgnoredRawFilesNotice(string directory)
    {
        var ignored = IgnoredRawFiles(directory);
        if (ignored.Count == 0) return null;
        var one = ignored.Count == 1;
        return $"{directory} holds {string.Join(", ", ignored)} both gzip-compressed (.gz) and raw: the .gz file{(one ? " is" : "s are")} read " +
            $"and the raw {(one ? "one" : "ones")} ignored. Delete or move the cop{(one ? "y" : "ies")} you do not mean to use.";
    }

    private static string Find(string directory, string baseName)
    {
        var gz = Path.Combine(directory, baseName + ".gz");
        if (File.Exists(gz)) return gz;
        var raw = Path.Combine(directory, baseName);
        if (File.Exists(raw)) return raw;
        foreach (var folder in new[] { gz, raw }.Where(Directory.Exists))
            throw new DataFormatException($"{folder}: a folder, where the IDX file of that name is expected. Move the folder out of the way and put the file there.");
        throw new DataFormatException($"{gz}: file not found (nor {raw}). The data directory must hold the IDX files of MNIST/Fashion-MNIST (training reads all four, evaluate the two t10k ones); install them with 'apt-get install dataset-fashion-mnist'.");
    }
}
