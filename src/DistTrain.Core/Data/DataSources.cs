using DistTrain.Core.Configuration;
using DistTrain.Core.Layers;

namespace DistTrain.Core.Data;

/// <summary>The <see cref="IDataSource"/> of each <see cref="DataFormat"/>, made from the Data section.</summary>
public static class DataSources
{
    /// <summary>The source <paramref name="options"/> describe.</summary>
    /// <param name="options">The Data section.</param>
    /// <param name="inputShape">Model:InputShape; image folders need it (channels 1 or 3, height, width).</param>
    /// <exception cref="DataFormatException">An image folder without an image input shape.</exception>
    public static IDataSource For(DataOptions options, TensorShape? inputShape = null) => options.Format switch
    {
        DataFormat.Csv => new CsvSource(options.Csv, options.TestFraction, options.TestSplitSeed),
        DataFormat.ImageFolder => new ImageFolderSource(options.ImageFolder, options.TestFraction, options.TestSplitSeed,
            inputShape is { IsFlat: false } shape ? shape : throw new DataFormatException("Data:Format = ImageFolder needs Model:InputShape [channels, height, width], such as [1, 28, 28] (grayscale) or [3, 32, 32] (RGB).")),
        _ => new IdxSource(options.Directory),
    };

    private static (LabeledDataset, LabeledDataset) Limit(LabeledDataset train, LabeledDataset test, int trainLimit, int testLimit) =>
        (trainLimit > 0 ? train.Take(trainLimit) : train, testLimit > 0 ? test.Take(testLimit) : test);

    private sealed class IdxSource(string directory) : IDataSource
    {
        public string Description => directory;
        public float InputDivisor => 255f;
        public IReadOnlyList<string>? FeatureNames => null;
        public (LabeledDataset Train, LabeledDataset Test) Load(int trainLimit, int testLimit) => FashionMnist.Load(directory, trainLimit, testLimit);
    }

    private sealed class CsvSource(CsvOptions csv, double testFraction, int splitSeed) : IDataSource
    {
        public string Description => csv.TestFile.Length > 0 ? $"{csv.TrainFile} and {csv.TestFile}" : $"{csv.TrainFile} ({testFraction:0.###} held out for testing)";
        public float InputDivisor => 1f;
        public IReadOnlyList<string>? FeatureNames { get; private set; }
        public LabelSummary? Labels { get; private set; }
        public (LabeledDataset Train, LabeledDataset Test) Load(int trainLimit, int testLimit)
        {
            var (train, layout, vocabulary, labels, _) = CsvDataset.ReadFile(csv.TrainFile, csv, null, null, Array.MaxLength);
            (FeatureNames, Labels) = (layout.FeatureColumns, labels);
            // The test file's columns are the training file's: by name with a header row, else by position.
            var test = csv.TestFile.Length > 0
                ? CsvDataset.Read(csv.TestFile, csv, vocabulary, layout.FeatureColumns).Data
                : null;
            if (test is null) (train, test) = TestSplit.Split(train, testFraction, splitSeed, csv.TrainFile);
            return Limit(train, test, trainLimit, testLimit);
        }
    }

    private sealed class ImageFolderSource(ImageFolderOptions folders, double testFraction, int splitSeed, TensorShape shape) : IDataSource
    {
        public string Description => folders.TestDirectory.Length > 0 ? $"{folders.TrainDirectory} and {folders.TestDirectory}" : $"{folders.TrainDirectory} ({testFraction:0.###} held out for testing)";
        public float InputDivisor => 255f;
        public IReadOnlyList<string>? FeatureNames => null;
        public (LabeledDataset Train, LabeledDataset Test) Load(int trainLimit, int testLimit)
        {
            var train = ImageFolderDataset.Read(folders.TrainDirectory, shape, folders.Resize);
            var test = folders.TestDirectory.Length > 0
                ? ImageFolderDataset.Read(folders.TestDirectory, shape, folders.Resize, train.ClassNames)
                : null;
            if (test is null) (train, test) = TestSplit.Split(train, testFraction, splitSeed, folders.TrainDirectory);
            return Limit(train, test, trainLimit, testLimit);
        }
    }
}
