using DistTrain.Cli;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Models;

namespace DistTrain.Tests;

/// <summary>
/// predict, evaluate, finetune and inspect name the real problem and its fix: an image format predict does not read, a
/// CSV file without its label column, an IDX folder without the test split, a --replace-head that does not fit the data,
/// and inspect options that cannot go together (a bad command line, exit 1, before anything is printed).
/// </summary>
public class CommandMessageTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-messages-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static TrainedModel Model(int features, int classes, DataMetadata metadata)
    {
        var options = new ModelBuilder(features).Dense(classes).Build();
        var weights = ModelFactory.InitialWeights(ModelFactory.Build(options), options.Initializer, seed: 1);
        var normalizer = Normalizer.FromStatistics(NormalizationKind.Global, [0.5f], [0.25f]);
        return new TrainedModel(options, weights, normalizer, ModelMetadata.Create(options, normalizer, metadata, version: 0, epochs: 0, testAccuracy: null, seed: 0));
    }

    private static TrainedModel IdxModel() => Model(784, 10, new DataMetadata(DataFormat.Idx, 255f, null, LabelsAreNames: false, null, null, false, []));

    [Fact]
    public void Predict_on_a_bmp_names_the_formats_it_reads()
    {
        var bitmap = Path.Combine(_directory, "x.bmp");
        File.WriteAllBytes(bitmap, [(byte)'B', (byte)'M', 58, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0]);
        var expected = $"{bitmap}: predict reads PNG and JPEG images (.png, .jpg, .jpeg), CSV files (.csv, .csv.gz) and IDX image files " +
            "(such as t10k-images-idx3-ubyte[.gz]); a '.bmp' file is none of them, and its content is not IDX. Convert it to PNG, or give one of those files.";
        var model = IdxModel();
        Assert.Equal(expected, Assert.Throws<DataFormatException>(() => ModelInputs.Read(bitmap, model, resize: false)).Message);

        var path = Path.Combine(_directory, "model.safetensors");
        model.Save(path);
        var (exit, output, error) = CliProcess.Run(["predict", "-m", path, bitmap]);
        Assert.Equal(2, exit);
        Assert.Equal("", output);
        Assert.Contains($"error: {expected}", error.ReplaceLineEndings(" ").Replace("  ", " ", StringComparison.Ordinal));
        // An IDX file without an extension is still read as one.
        Assert.Equal(250, ModelInputs.Read(Path.Combine(TestData.SubsetDirectory, "t10k-images-idx3-ubyte.gz"), model, resize: false).Names.Count);
    }

    [Fact]
    public void Predict_on_a_float_idx_file_names_its_element_type_not_a_foreign_format()
    {
        var floats = Path.Combine(_directory, "images.idx");
        // IDX of float32 (type 0x0D), [1, 2, 2]: a header the format allows, with an element type DistTrain does not read.
        File.WriteAllBytes(floats, [0, 0, 0x0D, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, .. new byte[16]]);
        Assert.Equal($"{floats}: element type 0x0D is not supported; only unsigned bytes (0x08) are, as in MNIST and Fashion-MNIST.",
            Assert.Throws<DataFormatException>(() => ModelInputs.Read(floats, IdxModel(), resize: false)).Message);
    }

    [Fact]
    public void A_folder_where_an_idx_file_belongs_is_named_as_a_folder()
    {
        var data = Path.Combine(_directory, "data");
        Directory.CreateDirectory(data);
        foreach (var name in FashionMnist.FileNames.Skip(1))
            File.Copy(Path.Combine(TestData.SubsetDirectory, name + ".gz"), Path.Combine(data, name + ".gz"));
        var folder = Path.Combine(data, FashionMnist.FileNames[0] + ".gz");
        Directory.CreateDirectory(folder);
        Assert.Equal($"{folder}: a folder, where the IDX file of that name is expected. Move the folder out of the way and put the file there.",
            Assert.Throws<DataFormatException>(() => FashionMnist.Load(data)).Message);
        Assert.Equal($"{folder}: a folder, where an IDX file is expected. Give the file's path, or move the folder out of the way.",
            Assert.Throws<DataFormatException>(() => IdxFile.DeclaredCount(folder)).Message);
    }

    [Fact]
    public void A_model_whose_label_kind_is_neither_name_nor_index_is_refused()
    {
        var entries = new Dictionary<string, string> { ["label_kind"] = "weird" };
        Assert.Equal("the model's metadata entry 'label_kind' = 'weird' is malformed (it must be 'name' (labels written as class names) or 'index' " +
            "(labels written as class indices)).", Assert.Throws<InvalidDataException>(() => DataMetadata.FromMetadata(entries)).Message);
        Assert.True(DataMetadata.FromMetadata(new Dictionary<string, string> { ["label_kind"] = "name" }).LabelsAreNames);
        Assert.False(DataMetadata.FromMetadata(new Dictionary<string, string>()).LabelsAreNames);
    }

    [Fact]
    public void Evaluate_on_a_headerless_csv_without_the_label_column_says_the_label_seems_missing()
    {
        var csv = new CsvOptions { HasHeader = false };
        var model = Model(4, 3, new DataMetadata(DataFormat.Csv, 1f, null, LabelsAreNames: false, null, csv, false, []));
        var rows = Path.Combine(_directory, "rows.csv");
        File.WriteAllLines(rows, ["5,1,2,0", "4,3,1,2", "6,2,2,1"]); // four features, no label
        var error = Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(rows, model, resize: false));
        Assert.Equal($"{rows}: rows have 4 columns, one fewer than the model's 4 features plus the label column, so the label column seems to be missing " +
            "(the model's Data:Csv:LabelColumn is not set: the column headed 'label', else the last, Data:Csv:HasHeader false). evaluate needs each row's label in that column: add it, " +
            "or score unlabeled rows with predict.", error.Message);
        // With the label the same rows read.
        File.WriteAllLines(rows, ["5,1,2,0,1", "4,3,1,2,0", "6,2,2,1,2"]);
        Assert.Equal(3, ModelInputs.ReadLabeled(rows, model, resize: false).Data.Count);
    }

    [Fact]
    public void Predict_on_a_folder_named_like_a_csv_file_for_a_csv_model_says_what_evaluate_says()
    {
        var model = Model(4, 3, new DataMetadata(DataFormat.Csv, 1f, ["a", "b", "c", "d"], LabelsAreNames: false, ["a", "b", "c", "d"], new CsvOptions(), false, []));
        var folder = Path.Combine(_directory, "rows.csv");
        Directory.CreateDirectory(folder);
        var expected = $"{folder}: the model was trained on CSV data (4 feature columns: a, b, c, d) and reads CSV files only, not images or IDX files. " +
            "Give it a CSV file with the training file's columns.";
        // It was "the folder holds no .png, .jpg, .jpeg file", as if an image model had been given an empty folder.
        Assert.Equal(expected, Assert.Throws<DataFormatException>(() => ModelInputs.Read(folder, model, resize: false)).Message);
        Assert.Equal(expected, Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(folder, model, resize: false)).Message);
        // An image model still gets the image folder's message for an empty folder of that name.
        Assert.Equal($"{folder}: the folder holds no .png, .jpg, .jpeg file.",
            Assert.Throws<DataFormatException>(() => ModelInputs.Read(folder, IdxModel(), resize: false)).Message);
    }

    [Fact]
    public void Evaluate_on_a_folder_of_train_idx_files_only_names_the_missing_test_files()
    {
        var folder = Path.Combine(_directory, "train-only");
        Directory.CreateDirectory(folder);
        foreach (var name in new[] { "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz" })
            File.Copy(Path.Combine(TestData.SubsetDirectory, name), Path.Combine(folder, name));
        var error = Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(folder, IdxModel(), resize: false));
        Assert.Equal($"{folder}: evaluate reads the t10k test split of a folder of IDX files, t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz], " +
            "and this folder has none of them; it has train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz. Add the t10k files to the folder " +
            "(the test split the model did not train on), or give a folder that has them.", error.Message);
    }

    [Fact]
    public void Finetune_replace_head_that_does_not_fit_the_data_names_the_option_and_data_classes()
    {
        var options = new TrainingOptions();
        options.Model = new ModelBuilder(784).Dense(32).ReLU().Dense(5).Build();
        var error = Assert.Throws<ConfigurationException>(() => FinetuneCommand.CheckHeadFitsData(5, options, 10));
        Assert.Equal(["--replace-head 5 gives the new head (Model:Layers:2) 5 classes, but the data has 10: give --replace-head 10, or keep 5 classes " +
            "by setting Data:Classes in the config to the 5 class indices to train on, such as [0, 1, 2, 3, 4]."], error.Problems);
        FinetuneCommand.CheckHeadFitsData(10, options, 10); // fits: no error

        // The real command: a checkpoint of the same model on the 10-class subset.
        var model = IdxModel();
        var checkpoint = Path.Combine(_directory, "pretrained.safetensors");
        model.Save(checkpoint);
        var config = Path.Combine(_directory, "config.json");
        File.WriteAllText(config, $$"""
            { "Data": { "Directory": "{{TestData.SubsetDirectory}}" }, "Model": { "InputSize": 784, "Layers": [{ "Type": "Dense", "Units": 10 }] },
              "Training": { "Workers": 1, "Epochs": 1 }, "Output": { "Directory": "{{Path.Combine(_directory, "runs")}}" } }
            """);
        var (exit, _, errors) = CliProcess.Run(["finetune", "-c", config, "--from", checkpoint, "--replace-head", "5"]);
        Assert.Equal(2, exit);
        Assert.Contains("--replace-head 5 gives the new head (Model:Layers:0) 5 classes, but the data has 10: give --replace-head 10, or keep 5 classes " +
            "by setting Data:Classes", errors);
        Assert.DoesNotContain("Set it to 10", errors);
    }

    /// <summary>
    /// An option's value out of its range is a bad command line (exit 1), for predict's --top-k and finetune's --replace-head
    /// alike (--replace-head 0 exited 2), refused before any file is read; and --replace-head 1 is refused as training refuses
    /// data of one class (it was let through to fail later with another message).
    /// </summary>
    [Theory]
    [InlineData("predict --top-k 0 MISSING.csv", "--top-k 0: list at least 1 class.")]
    [InlineData("finetune -c MISSING.json --from MISSING.safetensors --replace-head 0", "--replace-head 0: a classifier needs 2 classes at least")]
    [InlineData("finetune -c MISSING.json --from MISSING.safetensors --replace-head -3", "--replace-head -3: a classifier needs 2 classes at least")]
    [InlineData("finetune -c MISSING.json --from MISSING.safetensors --replace-head 1", "--replace-head 1: a classifier needs 2 classes at least (with one, " +
        "the softmax of its only logit is always 1, so there is nothing to learn). Give the number of classes of the new head, 2 or more.")]
    public void An_option_value_out_of_range_is_a_bad_command_line_exit_1(string line, string message)
    {
        var arguments = line.Replace("MISSING", Path.Combine(_directory, "missing"), StringComparison.Ordinal).Split(' ');
        if (arguments[0] == "predict") arguments = [.. arguments[..1], "-m", Path.Combine(_directory, "missing.safetensors"), .. arguments[1..]];
        var (exit, output, error) = CliProcess.Run(arguments);
        Assert.True(exit == 1, $"disttrain {string.Join(' ', arguments)}: exit {exit}\n{error}");
        Assert.Equal("", output);
        Assert.Contains($"error: {message}", error.ReplaceLineEndings(" ").Replace("  ", " ", StringComparison.Ordinal));
    }

    [Fact]
    public void Inspect_says_where_a_stopped_run_stopped()
    {
        // A cancelled (or failed) run's model.safetensors carries "stopped"; inspect showed the epochs, not that they were partial.
        var model = IdxModel();
        var metadata = new Dictionary<string, string>(model.Metadata) { ["stopped"] = "cancelled at epoch 3, step 120 of 235" };
        var path = Path.Combine(_directory, "stopped.safetensors");
        new TrainedModel(model.Model, model.Weights, model.Normalizer, metadata).Save(path);
        var (exit, output, _) = CliProcess.Run(["inspect", path]);
        Assert.Equal(0, exit);
        Assert.Contains("  stopped: cancelled at epoch 3, step 120 of 235", output.ReplaceLineEndings("\n"));
    }

    [Fact]
    public void Inspect_with_compare_and_compare_initialization_is_a_bad_command_line_refused_before_the_table()
    {
        var model = IdxModel();
        var path = Path.Combine(_directory, "model.safetensors");
        model.Save(path);
        var (exit, output, error) = CliProcess.Run(["inspect", path, "--compare", path, "--compare-initialization", "--filters", Path.Combine(_directory, "f.png")]);
        Assert.Equal(1, exit);
        Assert.Equal("", output);
        Assert.Contains("error: --compare and --compare-initialization cannot be used together: the figures draw one set of weights beside the checkpoint's. " +
            "Give either --compare CHECKPOINT or --compare-initialization.", error.ReplaceLineEndings(" ").Replace("  ", " ", StringComparison.Ordinal));
        (exit, output, error) = CliProcess.Run(["inspect", path, "--compare-initialization"]);
        Assert.Equal(1, exit);
        Assert.Equal("", output);
        Assert.Contains("--compare-initialization draws beside --filters or --histograms, and neither is given", error);
        Assert.False(File.Exists(Path.Combine(_directory, "f.png")));
    }
}
