using DistTrain.Core.Configuration;
using DistTrain.Core.Data;

namespace DistTrain.Tests;

/// <summary>Data:Format, its keys, Data:ClassNames and Data:Augmentation are validated like every other key.</summary>
public class DataConfigurationTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-dataconfig-").FullName;
    private static readonly Dictionary<string, string?> NoEnvironment = [];

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string Config(string json)
    {
        var path = Path.Combine(_directory, $"{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return path;
    }

    private const string Model = """ "Model": { "InputSize": 2, "Layers": [{ "Type": "Dense", "Units": 2 }] } """;

    private static IReadOnlyList<string> Problems(string path) =>
        Assert.Throws<ConfigurationException>(() => TrainingOptionsLoader.Load(path, environment: NoEnvironment)).Problems;

    [Fact]
    public void A_csv_config_binds_its_keys()
    {
        var train = Path.Combine(_directory, "train.csv");
        File.WriteAllText(train, "a,b,label\n1,2,x\n");
        var options = TrainingOptionsLoader.Load(Config($$"""
            { "Data": { "Format": "csv", "Csv": { "TrainFile": "{{train}}", "LabelColumn": "label", "Separator": ";", "SkipRows": 2,
                        "HasHeader": false, "IgnoreColumns": ["id"] }, "TestFraction": 0.2, "TestSplitSeed": 4, "ClassNames": ["x", "y"] }, {{Model}} }
            """), environment: NoEnvironment);
        Assert.Equal(DataFormat.Csv, options.Data.Format);
        Assert.Equal(train, options.Data.Csv.TrainFile);
        Assert.Equal(("label", ";", 2, false), (options.Data.Csv.LabelColumn, options.Data.Csv.Separator, options.Data.Csv.SkipRows, options.Data.Csv.HasHeader));
        Assert.Equal(["id"], options.Data.Csv.IgnoreColumns);
        Assert.Equal((0.2, 4), (options.Data.TestFraction, options.Data.TestSplitSeed));
        Assert.Equal(["x", "y"], options.Data.ClassNames);
    }

    [Fact]
    public void Csv_keys_that_are_missing_wrong_or_in_conflict_are_each_named()
    {
        var problems = Problems(Config($$"""
            { "Data": { "Format": "Csv", "Csv": { "TrainFile": "{{_directory}}/none.csv", "Separator": ";;", "SkipRows": -1 }, "TestFraction": 0.95,
                        "ClassNames": ["a", "a"] }, {{Model}} }
            """));
        Assert.Contains(problems, p => p.StartsWith($"Data:Csv:TrainFile = '{_directory}/none.csv' (in ", StringComparison.Ordinal) && p.Contains("is not an existing file"));
        Assert.Contains(problems, p => p.Contains("Data:Csv:Separator = ';;'") && p.Contains("is not one character"));
        Assert.Contains(problems, p => p.Contains("Data:Csv:SkipRows = -1") && p.Contains("allowed [0, 1000000]"));
        Assert.Contains(problems, p => p.Contains("Data:TestFraction = 0.95") && p.Contains("allowed [0, 0.9]"));
        Assert.Contains(problems, p => p.Contains("Data:ClassNames:1 = 'a'") && p.Contains("repeated"));

        var noTest = Problems(Config($$"""{ "Data": { "Format": "Csv", "Csv": { "TrainFile": "" } }, {{Model}} }"""));
        Assert.Contains(noTest, p => p.StartsWith("Data:Csv:TrainFile is empty", StringComparison.Ordinal));
        Assert.Contains(noTest, p => p.Contains("leaves no test samples") && p.Contains("Data:Csv:TestFile"));

        var file = Path.Combine(_directory, "t.csv");
        File.WriteAllText(file, "1,0\n");
        var both = Problems(Config($$"""{ "Data": { "Format": "Csv", "Csv": { "TrainFile": "{{file}}", "TestFile": "{{file}}" }, "TestFraction": 0.2 }, {{Model}} }"""));
        Assert.Contains(both, p => p.Contains("conflicts with Data:Csv:TestFile"));
    }

    /// <summary>
    /// The separator's message lists what is accepted, and says so as one line: it held a literal tab ('\t' in an interpolated
    /// string), which the problem's one-line form turned into a space, so the list read "',', ';', ' ' or '|'". A quote or
    /// '#' passed the check and failed when the file was read, with the CSV library's "'\"':34 is not supported".
    /// </summary>
    [Fact]
    public void The_separator_message_lists_the_tab_and_refuses_what_the_reader_refuses()
    {
        var file = Path.Combine(_directory, "t.csv");
        File.WriteAllText(file, "1\t0\n1\t1\n");
        string Csv(string separator) => Config($$"""{ "Data": { "Format": "Csv", "Csv": { "TrainFile": "{{file}}", "HasHeader": false, "Separator": "{{separator}}" }, "TestFraction": 0.5 }, {{Model}} }""");
        const string takes = "use one character: a tab (\"\\t\" in JSON) or an ASCII character from ' ' to '~' other than '\"' and '#', such as ',', ';' or '|'.";
        var config = Csv("\\t\\t");
        Assert.Equal([$"Data:Csv:Separator = '\\t\\t' (in {config}) is not one character: {takes}"], Problems(config));
        config = Csv("\\\"");
        Assert.Equal([$"Data:Csv:Separator = '\"' (in {config}) is a character the CSV reader does not split at: {takes}"], Problems(config));
        config = Csv("#");
        Assert.Equal([$"Data:Csv:Separator = '#' (in {config}) is a character the CSV reader does not split at: {takes}"], Problems(config));
        Assert.Equal("\t", TrainingOptionsLoader.Load(Csv("\\t"), environment: NoEnvironment).Data.Csv.Separator);
        Assert.Equal(" ", TrainingOptionsLoader.Load(Csv(" "), environment: NoEnvironment).Data.Csv.Separator);
    }

    [Fact]
    public void A_missing_scikit_learn_data_file_names_the_Debian_package_that_installs_it()
    {
        const string missing = "/usr/lib/python3/dist-packages/sklearn/datasets/data/no-such-set.csv.gz";
        var problems = Problems(Config($$"""{ "Data": { "Format": "Csv", "Csv": { "TrainFile": "{{missing}}" }, "TestFraction": 0.25 }, {{Model}} }"""));
        Assert.Contains(problems, p => p.Contains($"Data:Csv:TrainFile = '{missing}'") && p.Contains("is not an existing file")
            && p.Contains("apt-get install python3-sklearn"));
        var elsewhere = Problems(Config($$"""{ "Data": { "Format": "Csv", "Csv": { "TrainFile": "{{_directory}}/none.csv" }, "TestFraction": 0.25 }, {{Model}} }"""));
        Assert.DoesNotContain(elsewhere, p => p.Contains("python3-sklearn"));
    }

    [Fact]
    public void An_unknown_format_or_key_is_named_with_the_allowed_values()
    {
        var format = Problems(Config($$"""{ "Data": { "Format": "Parquet" }, {{Model}} }"""));
        Assert.Contains(format, p => p.Contains("Data:Format = 'Parquet'") && p.Contains("one of Idx, Csv, ImageFolder"));
        var key = Problems(Config($$"""{ "Data": { "Format": "Csv", "Csv": { "LabelColum": "y" } }, {{Model}} }"""));
        Assert.Contains(key, p => p.Contains("Data:Csv:LabelColum is not a known key") && p.Contains("'Data:Csv:LabelColumn'"));
    }

    [Fact]
    public void Image_folders_need_an_image_input_shape_and_existing_folders()
    {
        var problems = Problems(Config($$"""
            { "Data": { "Format": "ImageFolder", "ImageFolder": { "TrainDirectory": "{{_directory}}/train", "TestDirectory": "{{_directory}}/test" } }, {{Model}} }
            """));
        Assert.Contains(problems, p => p.Contains($"Data:ImageFolder:TrainDirectory = '{_directory}/train'") && p.Contains("is not an existing folder"));
        Assert.Contains(problems, p => p.Contains("Data:ImageFolder:TestDirectory") && p.Contains("is not an existing folder"));
        Assert.Contains(problems, p => p.Contains("Data:Format = ImageFolder (in ") && p.Contains(") needs Model:InputShape, [channels, height, width] with 1 (grayscale) or 3 (RGB)"));
    }

    [Fact]
    public void Augmentation_needs_image_samples_and_a_padding_that_fits()
    {
        var flat = Problems(Config($$"""{ "Data": { "Directory": "{{TestData.SubsetDirectory}}", "Augmentation": { "HorizontalFlip": true } }, {{Model}} }"""));
        Assert.Contains(flat, p => p.Contains("Data:Augmentation = horizontal flip (in ") && p.Contains(") needs image samples") && p.Contains("Model:InputShape"));
        var large = Problems(Config($$"""
            { "Data": { "Directory": "{{TestData.SubsetDirectory}}", "Augmentation": { "CropPadding": 20, "MaxTranslation": 0.7 } },
              "Model": { "InputShape": [1, 28, 28], "Layers": [{ "Type": "Dense", "Units": 10 }] } }
            """));
        Assert.Contains(large, p => p.Contains("Data:Augmentation:MaxTranslation = 0.7") && p.Contains("allowed [0, 0.5]"));
        Assert.Contains(large, p => p.Contains("Data:Augmentation:CropPadding = 20") && p.Contains("allowed 0 to 14"));
    }

    [Fact]
    public void Class_names_must_fit_the_data_and_are_refused_when_the_data_names_its_classes()
    {
        var wrongCount = new DataOptions { Directory = TestData.SubsetDirectory, ClassNames = ["a", "b"] };
        Assert.Contains("Data:ClassNames lists 2 names but the data has 10 classes", Assert.Throws<DataFormatException>(() => TrainingData.Load(wrongCount)).Message);
        var one = new DataOptions { Directory = TestData.SubsetDirectory, ClassNames = ["a"] };
        Assert.Contains("Data:ClassNames lists 1 name but the data has 10 classes", Assert.Throws<DataFormatException>(() => TrainingData.Load(one)).Message);
        var csv = Path.Combine(_directory, "named.csv");
        File.WriteAllText(csv, "x,label\n1,cat\n2,dog\n3,cat\n4,dog\n");
        var named = new DataOptions { Format = DataFormat.Csv, Csv = new CsvOptions { TrainFile = csv }, TestFraction = 0.5, ClassNames = ["a", "b"] };
        Assert.Contains("the data names its classes already (cat, dog)", Assert.Throws<DataFormatException>(() => TrainingData.Load(named)).Message);
        var filtered = TrainingData.Load(new DataOptions { Directory = TestData.SubsetDirectory, ClassNames = [.. ImageFolderTests.FashionNames], Classes = [9, 1] });
        Assert.Equal(["Ankle boot", "Trouser"], filtered.ClassNames!);
    }

    /// <summary>
    /// Data:Classes takes class indices; with labels that are names, the message lists which index is which name (it said
    /// "Classes [0, 5] must be distinct values in [0, 3)", and a user with names had to work out the sorted order).
    /// </summary>
    [Fact]
    public void Classes_outside_the_data_are_refused_listing_the_classes_by_index()
    {
        var csv = Path.Combine(_directory, "wine-names.csv");
        File.WriteAllText(csv, "x,label\n1,barolo\n2,grignolino\n3,barbera\n4,barolo\n5,barbera\n6,grignolino\n");
        var named = new DataOptions { Format = DataFormat.Csv, Csv = new CsvOptions { TrainFile = csv }, TestFraction = 0.5, Classes = [0, 5] };
        Assert.Equal("Data:Classes = [0, 5] must list distinct class indices of this data, 0 to 2, each a label's place in the sorted label names: " +
            "0 = 'barbera', 1 = 'barolo', 2 = 'grignolino'.", Assert.Throws<DataFormatException>(() => TrainingData.Load(named)).Message);
        var indices = new DataOptions { Directory = TestData.SubsetDirectory, Classes = [3, 3] };
        Assert.Equal("Data:Classes = [3, 3] must list distinct class indices of this data, 0 to 9.",
            Assert.Throws<DataFormatException>(() => TrainingData.Load(indices)).Message);
    }
}
