using System.Text.Json;
using DistTrain.Cli;
using DistTrain.Core;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Data;
using DistTrain.Core.Models;

namespace DistTrain.Tests;

/// <summary>
/// <c>disttrain predict</c> and <c>evaluate</c> on a model trained on the subset: its saved weights and metadata score the
/// test images as the training run's workers did, from IDX files, PNG files and folders alike, and the commands' exit codes.
/// </summary>
public class PredictEvaluateTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-predict-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private async Task<(string Model, double TestAccuracy)> TrainAsync(string modelJson, int epochs)
    {
        var config = Path.Combine(_directory, "config.json");
        File.WriteAllText(config, $$"""
            {
              "Data": { "Directory": "{{TestData.SubsetDirectory}}", "Normalization": "PerFeature",
                        "ClassNames": [{{string.Join(", ", ImageFolderTests.FashionNames.Select(n => $"\"{n}\""))}}] },
              "Model": {{modelJson}},
              "Optimizer": { "LearningRate": 0.05, "Momentum": 0.9 },
              "Training": { "Workers": 2, "Epochs": {{epochs}}, "BatchSizePerWorker": 32, "EvaluationBatchSize": 100 },
              "Output": { "Directory": "{{Path.Combine(_directory, "runs")}}" }
            }
            """);
        var (exit, result, runDirectory) = await TrainCommand.RunJobAsync(config, [], null, CancellationToken.None).WithTestTimeout();
        Assert.Equal(0, exit);
        return (Path.Combine(runDirectory!, "model.safetensors"), result!.FinalEpoch.TestAccuracy);
    }

    private const string Mlp = """{ "InputSize": 784, "Layers": [{ "Type": "Dense", "Units": 32 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 }] }""";

    private const string Cnn = """
        { "InputShape": [1, 28, 28], "Layers": [{ "Type": "Conv2D", "Channels": 4, "KernelSize": 3, "Padding": 1 }, { "Type": "BatchNorm" },
          { "Type": "ReLU" }, { "Type": "MaxPool2D", "KernelSize": 2 }, { "Type": "Flatten" }, { "Type": "Dropout", "Rate": 0.2 }, { "Type": "Dense", "Units": 10 }] }
        """;

    [Theory]
    [InlineData(Mlp)]
    [InlineData(Cnn)]
    public async Task Evaluating_the_saved_model_on_the_test_files_gives_the_accuracy_training_reported(string model)
    {
        var (path, trainingAccuracy) = await TrainAsync(model, epochs: 3);
        var trained = TrainedModel.Load(path);
        Assert.Equal(ImageFolderTests.FashionNames, trained.Data.ClassNames!);
        var (data, dividedBy) = ModelInputs.ReadLabeled(TestData.SubsetDirectory, trained, resize: false);
        var matrix = EvaluateCommand.Evaluate(trained, data, dividedBy);
        Assert.Equal(250, matrix.Total);
        Assert.Equal(trainingAccuracy, matrix.Accuracy, precision: 10);
        Assert.InRange(trainingAccuracy, 0.5, 1); // trained, not chance
        for (var c = 0; c < 10; c++)
        {
            Assert.Equal(data.Labels.Count(l => l == c), matrix.Support(c));
            Assert.Equal(matrix.Support(c) == 0 ? 0 : matrix[c, c] / (double)matrix.Support(c), matrix.Recall(c));
        }
    }

    /// <summary>
    /// A model trained on image folders numbers its classes by sub-folder name (Ankle boot first); IDX labels number them
    /// in the dataset's order (T-shirt/top first). Scoring one against the other gave 28.59% on a 73% model, with no
    /// word: it is refused, naming why and what to give instead. A model trained on IDX data still reads IDX files.
    /// </summary>
    [Fact]
    public void Evaluate_refuses_idx_labels_for_a_model_whose_classes_are_names_from_image_folders()
    {
        var fromFolders = FashionImageFolderModel();
        var error = Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(TestData.SubsetDirectory, fromFolders, resize: false));
        Assert.Contains("IDX labels are class numbers without names, but the model's classes are names (Ankle boot, Bag, Coat, Dress, ...) from its ImageFolder training data", error.Message);
        Assert.Contains("a folder of class sub-folders of images", error.Message);

        var fromIdx = DenseModel(new DataMetadata(DataFormat.Idx, 255f, ImageFolderTests.FashionNames, LabelsAreNames: false, null, null, false, []));
        Assert.Equal(250, ModelInputs.ReadLabeled(TestData.SubsetDirectory, fromIdx, resize: false).Data.Count);
    }

    /// <summary>
    /// Fashion-MNIST's own class names (Data:ClassNames) hold "T-shirt/top", which no folder can be named: a folder of class
    /// sub-folders, as deploy/local/write-image-folder.py writes it ("T-shirt_top"), was refused for that class. Such a name
    /// is matched by the name with '_' for '/', so the folder scores as the IDX files do.
    /// </summary>
    [Fact]
    public void An_idx_models_class_name_with_a_slash_is_matched_by_a_sub_folder_with_an_underscore()
    {
        string[] names = ["T-shirt/top", .. ImageFolderTests.FashionNames[1..]];
        var fromIdx = DenseModel(new DataMetadata(DataFormat.Idx, 255f, names, LabelsAreNames: false, null, null, false, []));
        var test = TestData.RawTest;
        var folder = ImageFolderTests.WriteFolder(Path.Combine(_directory, "fashion-folders"), test, 60);
        Assert.Contains(test.Labels.Take(60), l => l == 0); // a T-shirt/top among them
        var (data, _) = ModelInputs.ReadLabeled(folder, fromIdx, resize: false);
        Assert.Equal(60, data.Count);
        // Each image keeps its IDX label: the sub-folder 'T-shirt_top' is class 0.
        Assert.Equal(test.Labels.Take(60).Order(), data.Labels.Order());
        Assert.Equal(["T-shirt_top", "Trouser"], ModelInputs.FolderNames(["T-shirt/top", "Trouser"]));
        Assert.Equal(["a/b", "a_b"], ModelInputs.FolderNames(["a/b", "a_b"])); // '_' would give two classes one folder: names as they are
    }

    /// <summary>A 784-input model of one Dense layer to 10 outputs (seed 1), with <paramref name="data"/> as its training data's metadata.</summary>
    private static TrainedModel DenseModel(DataMetadata data)
    {
        var options = new ModelBuilder(784).Dense(10).Build();
        return new TrainedModel(options, ModelFactory.InitialWeights(ModelFactory.Build(options), options.Initializer, seed: 1),
            Normalizer.FromStatistics(NormalizationKind.Global, [0.5f], [0.25f]), data.ToMetadata());
    }

    /// <summary><see cref="DenseModel"/> trained on image folders of Fashion-MNIST's classes: its classes are their names, in ordinal order.</summary>
    private static TrainedModel FashionImageFolderModel() =>
        DenseModel(new DataMetadata(DataFormat.ImageFolder, 255f, [.. ImageFolderTests.FashionNames.Order(StringComparer.Ordinal)], LabelsAreNames: true,
            null, null, false, []));

    /// <summary>A CSV file of another width for a model trained on image folders (the 65 columns of scikit-learn's digits for a
    /// 784-feature model) is named by its column count, not by its first label that is not one of the model's class names; a
    /// file of the right width with such labels is still named by its first such label.</summary>
    [Fact]
    public void Evaluate_names_the_column_count_of_a_csv_of_another_width_for_an_image_folder_model()
    {
        var fromFolders = FashionImageFolderModel();
        var narrow = Path.Combine(_directory, "digits.csv");
        File.WriteAllLines(narrow, Enumerable.Range(0, 3).Select(row => string.Join(",", Enumerable.Repeat("1", 64).Append($"{row}"))));
        Assert.Equal($"{narrow}: rows have 65 columns, but the model reads 784 features ([784]), so evaluate needs 785 columns: the features and the label. " +
            "Give a file written for this model.", Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(narrow, fromFolders, resize: false)).Message);
        var wide = Path.Combine(_directory, "numbered.csv");
        File.WriteAllLines(wide, Enumerable.Range(0, 3).Select(row => string.Join(",", Enumerable.Repeat("1", 784).Append($"{row}"))));
        Assert.Equal($"{wide}: line 1, column 'column 784': label '0' is not one of the class names 'Ankle boot', 'Bag', 'Coat', 'Dress', 'Pullover', " +
            "'Sandal', 'Shirt', 'Sneaker', 'T-shirt_top', 'Trouser', the training data's classes.",
            Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(wide, fromFolders, resize: false)).Message);
    }

    /// <summary>
    /// A model trained on IDX data numbers its classes without names. Evaluating it on a folder of named class sub-folders
    /// said the sub-folders "are not classes of the training folder", a folder the model never had: the message now says
    /// that the model's classes are numbers and the folder's names, and the fixes that apply. Sub-folders named by class
    /// number are read, by the data's label: with Data:Classes [5, 6, 7], sub-folder '5' is output 0 (sub-folder '0' was
    /// read as output 0 before, which stands for label 5).
    /// </summary>
    [Fact]
    public void Evaluate_refuses_named_sub_folders_for_a_model_of_numbered_idx_classes_saying_so()
    {
        var options = new ModelBuilder(784).Dense(10).Build();
        var weights = ModelFactory.InitialWeights(ModelFactory.Build(options), options.Initializer, seed: 1);
        var normalizer = Normalizer.FromStatistics(NormalizationKind.Global, [0.5f], [0.25f]);
        var fromIdx = new TrainedModel(options, weights, normalizer, new DataMetadata(DataFormat.Idx, 255f, null, LabelsAreNames: false, null, null, false, []).ToMetadata());
        var folder = ImageFolderTests.WriteFolder(Path.Combine(_directory, "images"), TestData.RawTest, 60);
        var present = Directory.GetDirectories(folder).Select(d => Path.GetFileName(d)).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(10, present.Count);
        Assert.Equal($"{folder}: the model's classes are numbers without names (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), from its Idx training data, but sub-folders " +
            $"{string.Join(", ", present.Take(8).Select(n => $"'{n}'"))} and 2 more are names, not class numbers, so their images cannot be matched to the model's " +
            "classes. Name each class sub-folder by its class number (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), or evaluate it on a folder with the IDX test files " +
            "(t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]).",
            Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(folder, fromIdx, resize: false)).Message);

        // Named by class number: read, each image labelled with its sub-folder's number.
        for (var c = 0; c < 10; c++) Directory.Move(Path.Combine(folder, ImageFolderTests.FashionNames[c]), Path.Combine(folder, $"{c}"));
        var (data, _) = ModelInputs.ReadLabeled(folder, fromIdx, resize: false);
        Assert.Equal(60, data.Count);
        for (var i = 0; i < data.Count; i++)
            Assert.Equal(int.Parse(Path.GetFileName(Path.GetDirectoryName(data.SampleNames![i]))!), data.Labels[i]);

        // Data:Classes [5, 6, 7]: sub-folders 5, 6 and 7 are outputs 0, 1 and 2; sub-folder 0 is none of them.
        var some = new ModelBuilder(784).Dense(3).Build();
        var fromSome = new TrainedModel(some, ModelFactory.InitialWeights(ModelFactory.Build(some), some.Initializer, seed: 1), normalizer,
            new DataMetadata(DataFormat.Idx, 255f, null, LabelsAreNames: false, null, null, false, [5, 6, 7]).ToMetadata());
        var kept = Directory.CreateDirectory(Path.Combine(_directory, "kept")).FullName;
        foreach (var c in new[] { 5, 6, 7 }) Directory.Move(Path.Combine(folder, $"{c}"), Path.Combine(kept, $"{c}"));
        var (someData, _) = ModelInputs.ReadLabeled(kept, fromSome, resize: false);
        Assert.Equal(Directory.GetFiles(kept, "*.png", SearchOption.AllDirectories).Length, someData.Count);
        for (var i = 0; i < someData.Count; i++)
            Assert.Equal(int.Parse(Path.GetFileName(Path.GetDirectoryName(someData.SampleNames![i]))!) - 5, someData.Labels[i]);
        // Sub-folder 0 is a class outside Data:Classes: left out and counted, as an IDX test split's images of label 0 are.
        Directory.Move(Path.Combine(folder, "0"), Path.Combine(kept, "0"));
        var zeros = Directory.GetFiles(Path.Combine(kept, "0")).Length;
        var withZero = ModelInputs.ReadLabeled(kept, fromSome, resize: false, skipRows: null);
        Assert.Equal(someData.Labels, withZero.Data.Labels);
        Assert.Equal(zeros, withZero.LeftOut);
        Assert.Equal($"{kept}: {zeros} of {someData.Count + zeros} images are left out, as training leaves them out: their label, 0 ({Counts.Of(zeros, "image")}), " +
            $"is not among the model's classes, the Data:Classes it was trained on (5, 6, 7). The figures count the other {someData.Count}.", withZero.LeftOutNotice);
        // A sub-folder written with a leading zero, or by name, is not a class number and cannot be matched: still refused.
        Directory.Move(Path.Combine(kept, "5"), Path.Combine(kept, "05"));
        Assert.Equal($"{kept}: the model's classes are numbers without names (5, 6, 7: the Data:Classes it kept), from its Idx training data, but sub-folder " +
            "'05' is not among those numbers, so its images cannot be matched to the model's classes. Name each class sub-folder by its class number (5, 6, 7), " +
            "or evaluate it on a folder with the IDX test files (t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]).",
            Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(kept, fromSome, resize: false)).Message);
        Directory.Move(Path.Combine(kept, "05"), Path.Combine(kept, "Sandal"));
        Assert.Contains("but sub-folder 'Sandal' is a name, not class numbers,", Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(kept, fromSome, resize: false)).Message);
    }

    [Fact]
    public void A_model_of_some_classes_only_names_each_output_by_the_original_label_it_stands_for()
    {
        // Before, predict's name column read "-" and evaluate's "0", "1", "2": nothing said that output 0 is label 5.
        var options = new ModelBuilder(784).Dense(3).Build();
        var weights = ModelFactory.InitialWeights(ModelFactory.Build(options), options.Initializer, seed: 1);
        var normalizer = Normalizer.FromStatistics(NormalizationKind.Global, [0.5f], [0.25f]);
        var some = new TrainedModel(options, weights, normalizer,
            new DataMetadata(DataFormat.Idx, 255f, null, LabelsAreNames: false, null, null, false, [5, 6, 7]).ToMetadata());
        Assert.Equal(["label 5", "label 6", "label 7"], Enumerable.Range(0, 3).Select(some.ClassName));
        var named = new TrainedModel(options, weights, normalizer,
            new DataMetadata(DataFormat.Idx, 255f, ["Sandal", "Shirt", "Sneaker"], LabelsAreNames: false, null, null, false, [5, 6, 7]).ToMetadata());
        Assert.Equal("Shirt", named.ClassName(1));
        var all = new TrainedModel(options, weights, normalizer, new DataMetadata(DataFormat.Idx, 255f, null, LabelsAreNames: false, null, null, false, []).ToMetadata());
        Assert.Null(all.ClassName(0));
    }

    /// <summary>
    /// A symbolic link back into a folder given to predict or evaluate (Bag/loop -&gt; ..) was followed until the system's
    /// limit of nested links: predict listed 4,920 inputs for 120 images. Both refuse it, naming the link, with exit code 2.
    /// </summary>
    [Fact]
    public void Predict_and_evaluate_refuse_a_symbolic_link_loop_in_a_folder_naming_the_link()
    {
        var options = new ModelBuilder(784).Dense(10).Build();
        var weights = ModelFactory.InitialWeights(ModelFactory.Build(options), options.Initializer, seed: 1);
        var sorted = ImageFolderTests.FashionNames.Order(StringComparer.Ordinal).ToArray();
        var normalizer = Normalizer.FromStatistics(NormalizationKind.Global, [0.5f], [0.25f]);
        var trained = new TrainedModel(options, weights, normalizer, ModelMetadata.Create(options, normalizer,
            new DataMetadata(DataFormat.ImageFolder, 255f, sorted, LabelsAreNames: true, null, null, false, []), version: 0, epochs: 0, testAccuracy: null, seed: 0));
        var folder = ImageFolderTests.WriteFolder(Path.Combine(_directory, "images"), TestData.RawTest, 20);
        Assert.Equal(20, ModelInputs.Read(folder, trained, resize: false).Names.Count);
        var someClass = Directory.GetDirectories(folder).Order(StringComparer.Ordinal).First();
        var loop = Path.Combine(someClass, "loop");
        Directory.CreateSymbolicLink(loop, "..");
        var message = $"{loop}: a symbolic link back to {folder}: a loop, which would read the same images again and again. " +
            $"Remove the link; links to folders outside {folder} are followed.";

        Assert.Equal(message, Assert.Throws<DataFormatException>(() => ModelInputs.Read(folder, trained, resize: false)).Message);
        Assert.Equal(message, Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(folder, trained, resize: false)).Message);
        var model = Path.Combine(_directory, "model.safetensors");
        trained.Save(model);
        var (exit, output, error) = CliProcess.Run(["predict", "--model", model, folder]);
        Assert.Equal(2, exit);
        Assert.Equal("", output);
        Assert.True(error.Contains(loop + ": a symbolic link back to", StringComparison.Ordinal), error);
    }

    [Fact]
    public void A_model_trained_on_idx_files_reads_csv_files_with_or_without_a_header_and_with_the_label_first()
    {
        var options = new ModelBuilder(784).Dense(10).Build();
        var weights = ModelFactory.InitialWeights(ModelFactory.Build(options), options.Initializer, seed: 1);
        var fromIdx = new TrainedModel(options, weights, Normalizer.FromStatistics(NormalizationKind.Global, [0.5f], [0.25f]),
            new DataMetadata(DataFormat.Idx, 255f, ImageFolderTests.FashionNames, LabelsAreNames: false, null, null, false, []).ToMetadata());
        var test = TestData.RawTest;
        string Row(int i) => string.Join(",", test.Sample(i).ToArray().Select(v => v.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        var pixels = string.Join(",", Enumerable.Range(1, 784).Select(i => $"pixel{i}"));
        var headerless = Path.Combine(_directory, "no-header.csv");
        File.WriteAllText(headerless, string.Concat(Enumerable.Range(0, 5).Select(i => Row(i) + "\n")));
        var named = Path.Combine(_directory, "header.csv");
        File.WriteAllText(named, pixels + "\n" + string.Concat(Enumerable.Range(0, 5).Select(i => Row(i) + "\n")));
        var expected = Enumerable.Range(0, 5).SelectMany(i => test.Sample(i).ToArray()).ToArray();

        // Before, a first row of numbers was read as a header and refused with advice (Data:Csv:HasHeader) predict cannot take.
        Assert.Equal(expected, ModelInputs.Read(headerless, fromIdx, resize: false).Values);
        Assert.Equal(expected, ModelInputs.Read(named, fromIdx, resize: false).Values);
        // pandas' header for a frame without column names, 0 to 783, is a header, not a row of data.
        var numbered = Path.Combine(_directory, "numbered.csv");
        File.WriteAllText(numbered, string.Join(",", Enumerable.Range(0, 784)) + "\n" + string.Concat(Enumerable.Range(0, 5).Select(i => Row(i) + "\n")));
        Assert.Equal(expected, ModelInputs.Read(numbered, fromIdx, resize: false).Values);

        // Kaggle's layout, the label first: each row's label is its test label, not its last pixel.
        var kaggle = Path.Combine(_directory, "kaggle.csv");
        File.WriteAllText(kaggle, "label," + pixels + "\n" + string.Concat(Enumerable.Range(0, 5).Select(i => $"{test.Labels[i]},{Row(i)}\n")));
        var (labeled, _) = ModelInputs.ReadLabeled(kaggle, fromIdx, resize: false);
        Assert.Equal(test.Labels.Take(5), labeled.Labels);
        Assert.Equal(expected, labeled.Features);

        // Pixels of 0 to 255 are what the model divides by 255; the same pixels written divided already get a warning, as
        // the model would divide them twice. A CSV-trained model takes any values as written.
        // (TestData.RawTest holds bytes / 255, so the files above hold pixels divided already.)
        Assert.Equal(1f, expected.Max());
        Assert.Null(ModelInputs.AlreadyScaledWarning(headerless, [.. expected.Select(v => MathF.Round(v * 255))], 1f, fromIdx));
        var scaled = headerless;
        var batch = ModelInputs.Read(scaled, fromIdx, resize: false);
        Assert.Equal($"{scaled}: every value is within [-1, 1] (the largest in magnitude is 1), but the model was trained on pixels of 0 to 255 from its Idx files, " +
            "divided by 255 as they were read, and divides a CSV's values by 255 in the same way. These look divided already, so they would be divided twice " +
            "and the predictions would mean little. Write the pixels as 0 to 255 (multiply these values by 255).",
            ModelInputs.AlreadyScaledWarning(scaled, batch.Values, batch.DividedBy, fromIdx));
        Assert.Null(ModelInputs.AlreadyScaledWarning(scaled, new float[784], 1f, fromIdx)); // all zero: nothing to tell
        Assert.Null(ModelInputs.AlreadyScaledWarning(scaled, [-3f, 0.5f], 1f, fromIdx)); // -3 is outside [-1, 1]
        Assert.Contains("(the largest in magnitude is 0.75)", ModelInputs.AlreadyScaledWarning(scaled, [-0.75f, 0.5f], 1f, fromIdx));
        var fromCsv = new TrainedModel(options, weights, Normalizer.FromStatistics(NormalizationKind.Global, [0.5f], [0.25f]),
            new DataMetadata(DataFormat.Csv, 1f, null, LabelsAreNames: false, null, null, false, []).ToMetadata());
        Assert.Null(ModelInputs.AlreadyScaledWarning(scaled, batch.Values, batch.DividedBy, fromCsv));
    }

    [Fact]
    public void Evaluate_warns_of_raw_idx_files_that_it_ignores_for_their_gz_copies()
    {
        var options = new ModelBuilder(784).Dense(10).Build();
        var weights = ModelFactory.InitialWeights(ModelFactory.Build(options), options.Initializer, seed: 1);
        var model = Path.Combine(_directory, "model.safetensors");
        new TrainedModel(options, weights, Normalizer.FromStatistics(NormalizationKind.Global, [0.5f], [0.25f])).Save(model);
        var folder = Directory.CreateDirectory(Path.Combine(_directory, "both")).FullName;
        foreach (var name in new[] { "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz" })
            File.Copy(Path.Combine(TestData.SubsetDirectory, name), Path.Combine(folder, name));
        using (var labels = new System.IO.Compression.GZipStream(File.OpenRead(Path.Combine(folder, "t10k-labels-idx1-ubyte.gz")), System.IO.Compression.CompressionMode.Decompress))
        using (var raw = File.Create(Path.Combine(folder, "t10k-labels-idx1-ubyte")))
            labels.CopyTo(raw);

        var (exit, output, error) = CliProcess.Run(["evaluate", "--model", model, "--data", folder, "--heatmap", Path.Combine(_directory, "heatmap.png")]);

        Assert.True(exit == 0, error);
        Assert.Contains("Accuracy:", output);
        Assert.Contains($"warning: {folder} holds t10k-labels-idx1-ubyte both gzip-compressed (.gz) and raw: the .gz file is read and the raw one ignored.", error);

        // predict, asked for more classes than the model has, says it lists them all.
        (exit, output, error) = CliProcess.Run(["predict", "--model", model, "--top-k", "11", "--json", Path.Combine(folder, "t10k-images-idx3-ubyte.gz")]);
        Assert.True(exit == 0, error);
        Assert.Equal("warning: --top-k 11 is more than the model's 10 classes: each input lists all 10.", error.Trim());
        Assert.Equal(10, System.Text.RegularExpressions.Regex.Matches(output.Split("\"input\"")[1], "\"probability\"").Count);
    }

    [Fact]
    public async Task Png_files_and_folders_score_as_the_same_images_in_the_idx_file()
    {
        var (path, _) = await TrainAsync(Mlp, epochs: 2);
        var trained = TrainedModel.Load(path);
        var test = TestData.RawTest;
        var files = Enumerable.Range(0, 12).Select(i => Path.Combine(_directory, "images", ImageFolderTests.FashionNames[test.Labels[i]], $"{i:D3}.png")).ToArray();
        for (var i = 0; i < files.Length; i++) ImageFolderTests.WriteImage(files[i], test.Sample(i));

        var idx = Path.Combine(TestData.SubsetDirectory, "t10k-images-idx3-ubyte.gz");
        var fromIdx = PredictCommand.Predict(trained, ModelInputs.Read(idx, trained, resize: false), k: 3).Take(12).ToArray();
        var fromPng = files.SelectMany(f => PredictCommand.Predict(trained, ModelInputs.Read(f, trained, resize: false), k: 3)).ToArray();
        for (var i = 0; i < files.Length; i++)
        {
            Assert.Equal(fromIdx[i].Class, fromPng[i].Class);
            Assert.Equal(ImageFolderTests.FashionNames[fromIdx[i].Class], fromPng[i].Name);
            Assert.Equal(3, fromPng[i].Top.Count);
            Assert.Equal(fromPng[i].Class, fromPng[i].Top[0].Class);
            Assert.True(fromPng[i].Top[0].Probability >= fromPng[i].Top[1].Probability);
            // One image alone against a batch of 250: BLAS sums in another order, so the last bits differ.
            for (var j = 0; j < 3; j++) Assert.InRange(Math.Abs(fromIdx[i].Top[j].Probability - fromPng[i].Top[j].Probability), 0, 1e-5);
        }
        // A folder of class sub-folders evaluates with the model's class names; its accuracy is that of the same IDX images.
        var (folderData, dividedBy) = ModelInputs.ReadLabeled(Path.Combine(_directory, "images"), trained, resize: false);
        var folderMatrix = EvaluateCommand.Evaluate(trained, folderData, dividedBy);
        Assert.Equal(Enumerable.Range(0, 12).Count(i => fromIdx[i].Class == test.Labels[i]) / 12.0, folderMatrix.Accuracy, precision: 10);
    }

    private static async Task<(int Exit, string Output, string Error)> Cli(params string[] arguments)
    {
        using var process = new DistTrainProcess(arguments);
        var exit = await process.WaitAsync(TimeSpan.FromSeconds(120));
        return (exit, process.StandardOutput, process.StandardError);
    }

    [Fact]
    public void Precision_and_recall_of_a_class_without_samples_or_predictions_read_n_a_and_null_not_0()
    {
        // Class 2 has no sample and is never predicted; class 1 is predicted once, wrongly.
        var matrix = new DistTrain.Core.Evaluation.ConfusionMatrix(3);
        matrix.Add(0, 0);
        matrix.Add(0, 1);
        matrix.Add(1, 0);
        Assert.Equal(["50.00%", "0.00%", "n/a"], Enumerable.Range(0, 3).Select(c => EvaluateCommand.Percent(EvaluateCommand.Defined(matrix.Precision(c), matrix.Predicted(c)))));
        Assert.Equal(["50.00%", "0.00%", "n/a"], Enumerable.Range(0, 3).Select(c => EvaluateCommand.Percent(EvaluateCommand.Defined(matrix.Recall(c), matrix.Support(c)))));
        var classes = JsonDocument.Parse(EvaluateCommand.JsonReport(matrix, ["a", "b", "c"], "h.png")).RootElement.GetProperty("classes");
        Assert.Equal(0.5, classes[0].GetProperty("recall").GetDouble());
        Assert.Equal(0.0, classes[1].GetProperty("precision").GetDouble());
        Assert.Equal(JsonValueKind.Null, classes[2].GetProperty("precision").ValueKind);
        Assert.Equal(JsonValueKind.Null, classes[2].GetProperty("recall").ValueKind);
    }

    [Fact]
    public async Task The_commands_print_json_draw_the_heatmap_and_exit_2_on_bad_input()
    {
        var (path, trainingAccuracy) = await TrainAsync(Mlp, epochs: 2);
        var image = Path.Combine(_directory, "one.png");
        ImageFolderTests.WriteImage(image, TestData.RawTest.Sample(0));
        var (exit, output, error) = await Cli("predict", "--model", path, "--json", "--top-k", "2", image);
        Assert.True(exit == 0, error);
        var predictions = JsonDocument.Parse(output).RootElement;
        Assert.Equal(1, predictions.GetArrayLength());
        var first = predictions[0];
        Assert.Equal(image, first.GetProperty("input").GetString());
        Assert.Equal(ImageFolderTests.FashionNames[first.GetProperty("class").GetInt32()], first.GetProperty("name").GetString());
        Assert.Equal(2, first.GetProperty("top").GetArrayLength());

        var heatmap = Path.Combine(_directory, "confusion.png");
        (exit, output, error) = await Cli("evaluate", "--model", path, "--data", TestData.SubsetDirectory, "--heatmap", heatmap, "--json");
        Assert.True(exit == 0, error);
        var report = JsonDocument.Parse(output).RootElement;
        Assert.Equal(trainingAccuracy, report.GetProperty("accuracy").GetDouble(), precision: 10);
        Assert.Equal(250, report.GetProperty("confusion").EnumerateArray().Sum(row => row.EnumerateArray().Sum(c => c.GetInt64())));
        using (var png = SkiaSharp.SKBitmap.Decode(heatmap))
            Assert.True(png is { Width: > 500, Height: > 500 }, "the heatmap is a PNG");

        (exit, _, error) = await Cli("predict", "--model", Path.Combine(_directory, "missing.safetensors"), image);
        Assert.Equal(2, exit);
        Assert.Contains("missing.safetensors: no such file", error);
        var corrupt = Path.Combine(_directory, "corrupt.safetensors");
        File.WriteAllBytes(corrupt, File.ReadAllBytes(path)[..100]); // a safetensors reader's refusal, not only the model's own checks
        (exit, _, error) = await Cli("evaluate", "--model", corrupt, "--data", TestData.SubsetDirectory);
        Assert.True(exit == 2, error);
        Assert.Contains(corrupt, error);
        var csv = Path.Combine(_directory, "three-columns.csv");
        File.WriteAllText(csv, "1,2,3\n");
        (exit, _, error) = await Cli("predict", "--model", path, csv);
        Assert.Equal(2, exit);
        Assert.Contains("the model reads 784 feature columns", error);
        (exit, _, error) = await Cli("evaluate", "--model", path, "--data", Path.Combine(_directory, "nowhere"));
        Assert.Equal(2, exit);
        Assert.Contains("give a folder with the IDX files", error);
        (exit, _, _) = await Cli("predict", "--model", path);
        Assert.Equal(1, exit); // no input: a bad command line
    }

    /// <summary>
    /// predict and evaluate read CSV files with the model's training settings. A file without a column the training run
    /// ignored (an id) used to be refused, though the column is not used; and the reader's messages told the user to set
    /// Data:Csv keys, which these commands do not take.
    /// </summary>
    [Fact]
    public async Task A_csv_file_without_an_ignored_column_is_scored_and_csv_errors_give_the_models_settings()
    {
        var rows = File.ReadAllLines("/usr/lib/python3/dist-packages/sklearn/datasets/data/iris.csv").Skip(1).ToArray();
        var training = Path.Combine(_directory, "with-id.csv");
        File.WriteAllLines(training, ["id,a,b,c,d,species", .. rows.Select((row, i) => $"{1000 + i},{row}")]);
        var overrides = new Dictionary<string, string?>
        {
            ["Data:Csv:TrainFile"] = training, ["Data:Csv:HasHeader"] = "true", ["Data:Csv:SkipRows"] = "0", ["Data:Csv:LabelColumn"] = "species",
            ["Data:Csv:IgnoreColumns:0"] = "id", ["Training:Epochs"] = "5", ["Output:Directory"] = _directory,
        };
        var (trainExit, _, run) = await TrainCommand.RunJobAsync(SklearnCsvTests.Config("iris"), overrides, null, CancellationToken.None).WithTestTimeout();
        Assert.Equal(0, trainExit);
        var path = Path.Combine(run!, "model.safetensors");
        var model = TrainedModel.Load(path);

        var withoutId = Path.Combine(_directory, "without-id.csv");
        File.WriteAllLines(withoutId, ["a,b,c,d,species", .. rows]);
        Assert.Equal(ModelInputs.Read(training, model, resize: false).Values, ModelInputs.Read(withoutId, model, resize: false).Values);
        var (data, _) = ModelInputs.ReadLabeled(withoutId, model, resize: false);
        Assert.Equal(ModelInputs.ReadLabeled(training, model, resize: false).Data.Labels, data.Labels);
        var (exit, output, error) = await Cli("evaluate", "--model", path, "--data", withoutId);
        Assert.True(exit == 0, error);
        Assert.Contains("150", output);

        var semicolons = Path.Combine(_directory, "semicolons.csv");
        File.WriteAllLines(semicolons, ["a;b;c;d", "5.1;3.5;1.4;0.2"]);
        (exit, _, error) = await Cli("predict", "--model", path, semicolons);
        Assert.Equal(2, exit);
        var message = string.Join(" ", error.Split('\n', StringSplitOptions.TrimEntries));
        Assert.Contains("Is that the separator? Set Data:Csv:Separator to \";\" (it is ','). Here the Data:Csv settings are the model's, from its training run " +
            "(Separator ',', HasHeader true, LabelColumn 'species', IgnoreColumns id): predict and evaluate read every CSV file with them and take no " +
            "config keys, so write the file to match them.", message);
    }

    /// <summary>
    /// An infinity or stray text in a CSV file predict and evaluate read was told to "list non-numeric columns in
    /// Data:Csv:IgnoreColumns", a key these commands do not take, for a column the model reads. The error names the value,
    /// line and column and says to correct the value or drop the line; no Data:Csv key is offered, so none of the model's
    /// settings are listed after it, except for text on the first row, which may be a column of text throughout.
    /// </summary>
    [Fact]
    public async Task An_infinity_or_stray_text_in_a_file_to_score_is_told_to_be_corrected_without_data_csv_keys()
    {
        var modelPath = CsvModel(hasHeader: true, "values.safetensors");
        var model = TrainedModel.Load(modelPath);
        const string header = "sepal_length\tsepal_width\tpetal_length\tpetal_width\tlabel";
        var inf = Path.Combine(_directory, "inf.tsv");
        File.WriteAllLines(inf, [header, "5.1\t3.5\t1.4\t0.2\t0", "4.9\tinf\t1.4\t0.2\t0"]);
        var expected = $"{inf}: line 3, column 'sepal_width' (index 1): 'inf' is an infinite value, and features must be finite numbers. Replace it in a " +
            "copy of the file (for example with the column's largest finite value), or drop line 3; the model reads 'sepal_width' as one of its features.";
        Assert.Equal(expected, Assert.Throws<DataFormatException>(() => ModelInputs.Read(inf, model, resize: false)).Message);
        Assert.Equal(expected, Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(inf, model, resize: false)).Message);

        var stray = Path.Combine(_directory, "stray.tsv");
        File.WriteAllLines(stray, [header, "5.1\t3.5\t1.4\t0.2\t0", "4.9\t3.0\t1.4\t0.2\t0", "6.3\t3.3\tsix\t2.5\t2"]);
        var strayError = $"{stray}: line 4, column 'petal_length' (index 2): 'six' is not a number, in a column that held numbers on the 2 rows before it: " +
            "a stray value. Correct it in a copy of the file, or drop line 4; the model reads 'petal_length' as one of its features.";
        Assert.Equal(strayError, Assert.Throws<DataFormatException>(() => ModelInputs.Read(stray, model, resize: false)).Message);
        var (exit, _, error) = await Cli("evaluate", "--model", modelPath, "--data", stray);
        Assert.Equal(2, exit);
        Assert.Equal($"error: {strayError}", string.Join(" ", error.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)));

        var text = Path.Combine(_directory, "text-first.tsv");
        File.WriteAllLines(text, [header, "5.1\tn.a.\t1.4\t0.2\t0"]);
        // Text on the first row may be a column of text throughout (a file laid out unlike the training file): the model's
        // settings follow, as for a header that does not match.
        Assert.Equal($"{text}: line 2, column 'sepal_width' (index 1): 'n.a.' is not a number, and the model reads 'sepal_width' as one of its features. " +
            "If the column holds text throughout, the file is not laid out as the model's training file was (its Data:Csv:Separator, HasHeader and LabelColumn, below); if not, " +
            "correct the value in a copy of the file, or drop line 2. Here the Data:Csv settings are the model's, from its training run (Separator '\\t', " +
            "HasHeader true, the label in the column headed 'label', else the last): predict and evaluate read every CSV file with them and take no config " +
            "keys, so write the file to match them.", Assert.Throws<DataFormatException>(() => ModelInputs.Read(text, model, resize: false)).Message);
    }

    /// <summary>
    /// A missing value in a file predict or evaluate read for a model trained with Data:Csv:SkipRows 1 ended "the copy has no
    /// lines to skip at its top (Data:Csv:SkipRows 0)", then listed the model's settings with "SkipRows 1" and "only the lines
    /// skipped at the top can be set for the file, with --skip-rows": the key is not one these commands take. The copy is
    /// to be read with --skip-rows 0, and the message says so, and only that.
    /// </summary>
    [Fact]
    public async Task A_missing_value_in_a_file_to_score_names_skip_rows_0_for_the_copy_not_the_data_csv_key()
    {
        var modelPath = CsvModel(hasHeader: false, "missing-skip-one.safetensors", skipRows: 1);
        var model = TrainedModel.Load(modelPath);
        var counts = Path.Combine(_directory, "missing-counts.tsv");
        File.WriteAllLines(counts, ["150\t4\tsetosa\tversicolor\tvirginica", "5.1\t3.5\t1.4\t0.2\t0", "4.9\tNA\t1.4\t0.2\t0"]);
        var copy = Path.Combine(_directory, "missing-counts-complete.csv");
        var to = $".to_csv('{copy}', index=False, header=False, sep='\\t')";
        var expected = $"{counts}: line 3, column 'column 1' (index 1): 'NA' marks a missing value: every feature needs a value, and DistTrain has no setting " +
            "that drops or fills rows with missing values. Drop those rows, or fill the missing cells (for example with the column's mean), in a copy of the " +
            $"file; with pandas: df = pandas.read_csv('{counts}', sep='\\t', header=None, skiprows=1), then df.dropna(){to} drops them, or " +
            $"df.fillna(df.mean(numeric_only=True)){to} fills them, and the copy has no lines to skip at its top: read it with --skip-rows 0.";
        Assert.Equal(expected, Assert.Throws<DataFormatException>(() => ModelInputs.Read(counts, model, resize: false)).Message);
        Assert.Equal(expected, Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(counts, model, resize: false)).Message);
        foreach (var command in new[] { new[] { "predict", "--model", modelPath, counts }, ["evaluate", "--model", modelPath, "--data", counts] })
        {
            var (exit, _, error) = await Cli(command);
            Assert.Equal(2, exit);
            Assert.Equal($"error: {expected}", string.Join(" ", error.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)));
        }
        // --skip-rows 2 given for the file: the copy is read with --skip-rows 0 all the same.
        var twoLines = Path.Combine(_directory, "missing-two.tsv");
        File.WriteAllLines(twoLines, ["a title", "150\t4\tsetosa\tversicolor\tvirginica", "5.1\tNA\t1.4\t0.2\t0"]);
        var message = Assert.Throws<DataFormatException>(() => ModelInputs.Read(twoLines, model, resize: false, skipRows: 2)).Message;
        Assert.Contains("header=None, skiprows=2)", message);
        Assert.EndsWith("fills them, and the copy has no lines to skip at its top: read it with --skip-rows 0.", message);
        Assert.DoesNotContain("Data:Csv", message);
    }

    /// <summary>A model of 4 CSV features and 3 classes, trained (as its metadata says) on files with or without a header row,
    /// with <paramref name="skipRows"/> lines skipped at their top (Data:Csv:SkipRows); with <paramref name="classes"/>, one
    /// of those classes only (Data:Classes), named <paramref name="classNames"/> when its labels were names; trained with
    /// Model:Loss <paramref name="loss"/>.</summary>
    private string CsvModel(bool hasHeader, string name, int skipRows = 0, int[]? classes = null, string[]? classNames = null,
        string loss = LossTypes.SoftmaxCrossEntropy)
    {
        var options = new ModelBuilder(4).Dense(classes?.Length ?? 3).Build();
        options.Loss = loss;
        var weights = ModelFactory.InitialWeights(ModelFactory.Build(options), options.Initializer, seed: 1);
        var normalizer = Normalizer.FromStatistics(NormalizationKind.Global, [0f], [1f]);
        var csv = new DistTrain.Core.Configuration.CsvOptions { HasHeader = hasHeader, Separator = "\t", SkipRows = skipRows };
        var metadata = new DataMetadata(DataFormat.Csv, 1f, classNames, LabelsAreNames: classNames is not null,
            hasHeader ? ["sepal_length", "sepal_width", "petal_length", "petal_width"] : null, csv, false, classes ?? []);
        var path = Path.Combine(_directory, name);
        new TrainedModel(options, weights, normalizer, ModelMetadata.Create(options, normalizer, metadata, version: 0, epochs: 0, testAccuracy: null, seed: 0)).Save(path);
        return path;
    }

    /// <summary>
    /// A model trained with Data:Csv:SkipRows 1 (scikit-learn's iris.csv starts with a line of counts) skips the first line
    /// of every file predict and evaluate read. A new file without that line lost its first data row with no word: predict
    /// listed 4 of 5 rows, evaluate scored 4. The skip stays the rule, but a skipped line that looks like a data row is named
    /// in a warning with the fix, and --skip-rows sets the lines to skip for the file. A skipped line of counts is not warned of.
    /// </summary>
    [Fact]
    public async Task A_skipped_line_that_looks_like_data_is_warned_of_and_skip_rows_keeps_it()
    {
        var modelPath = CsvModel(hasHeader: false, "skip-one.safetensors", skipRows: 1);
        var model = TrainedModel.Load(modelPath);
        string[] rows = ["5.1\t3.5\t1.4\t0.2\t0", "4.9\t3.0\t1.4\t0.2\t0", "7.0\t3.2\t4.7\t1.4\t1", "6.4\t3.2\t4.5\t1.5\t1", "6.3\t3.3\t6.0\t2.5\t2"];
        var noCounts = Path.Combine(_directory, "five.tsv");
        File.WriteAllLines(noCounts, rows);
        var withCounts = Path.Combine(_directory, "counts.tsv");
        File.WriteAllLines(withCounts, ["150\t4\tsetosa\tversicolor\tvirginica", .. rows]);

        // The model's skip applies: line 1 is not read, and the warning names it and the fix.
        Assert.Equal([$"{noCounts}:line 2", $"{noCounts}:line 3", $"{noCounts}:line 4", $"{noCounts}:line 5"], ModelInputs.Read(noCounts, model, resize: false).Names);
        var warning = $"{noCounts}: line 1 ('5.1', '3.5', '1.4', '0.2', '0') looks like a data row, but it is not read: the model's training files had their " +
            "first line skipped (Data:Csv:SkipRows 1), and predict and evaluate skip the first line of every CSV file alike. If it is data, keep it with --skip-rows 0.";
        Assert.Equal(warning, ModelInputs.SkippedDataRowsWarning(noCounts, model, skipRows: null));
        // --skip-rows 0 reads it, by predict and evaluate alike, and then nothing is skipped to warn of.
        var all = ModelInputs.Read(noCounts, model, resize: false, skipRows: 0);
        Assert.Equal(5, all.Names.Count);
        Assert.Equal([5.1f, 3.5f, 1.4f, 0.2f], all.Values[..4]);
        Assert.Null(ModelInputs.SkippedDataRowsWarning(noCounts, model, skipRows: 0));
        Assert.Equal([0, 0, 1, 1, 2], ModelInputs.ReadLabeled(noCounts, model, resize: false, skipRows: 0).Data.Labels.Select(l => (int)l));
        // A file laid out as the training files: its line of counts is skipped without a warning, and the rows read are the same.
        Assert.Null(ModelInputs.SkippedDataRowsWarning(withCounts, model, skipRows: null));
        Assert.Equal(all.Values, ModelInputs.Read(withCounts, model, resize: false).Values);
        // A skipped row whose label is a name is a data row too: numbers where the first data row has them.
        var named = Path.Combine(_directory, "named-labels.tsv");
        File.WriteAllLines(named, ["5.1\t3.5\t1.4\t0.2\tsetosa", "4.9\t3.0\t1.4\t0.2\tsetosa"]);
        Assert.StartsWith($"{named}: line 1 ('5.1', '3.5', '1.4', '0.2', 'setosa') looks like a data row", ModelInputs.SkippedDataRowsWarning(named, model, skipRows: null));
        // --skip-rows 2 skips two lines: both look like data, and 0 keeps them.
        Assert.Equal($"{noCounts}: lines 1 and 2 look like data rows, but they are not read: --skip-rows 2 skips the first 2 lines. If they are data, keep them with --skip-rows 0.",
            ModelInputs.SkippedDataRowsWarning(noCounts, model, skipRows: 2));

        // On the command line: the warning on standard error, the rows on standard output; --skip-rows 0 scores all five.
        var (exit, output, error) = await Cli("predict", "--model", modelPath, "--json", noCounts);
        Assert.True(exit == 0, error);
        Assert.Equal(4, JsonDocument.Parse(output).RootElement.GetArrayLength());
        Assert.Equal($"warning: {warning}", string.Join(" ", error.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)));
        (exit, output, error) = await Cli("predict", "--model", modelPath, "--json", "--skip-rows", "0", noCounts);
        Assert.True(exit == 0, error);
        Assert.Equal("", error);
        Assert.Equal($"{noCounts}:line 1", JsonDocument.Parse(output).RootElement[0].GetProperty("input").GetString());
        Assert.Equal(5, JsonDocument.Parse(output).RootElement.GetArrayLength());
        var heatmap = Path.Combine(_directory, "skip.png");
        (exit, output, error) = await Cli("evaluate", "--model", modelPath, "--data", noCounts, "--json", "--heatmap", heatmap);
        Assert.True(exit == 0, error);
        Assert.Equal(4, JsonDocument.Parse(output).RootElement.GetProperty("samples").GetInt64());
        Assert.Contains("keep it with --skip-rows 0.", error);
        (exit, output, error) = await Cli("evaluate", "--model", modelPath, "--data", noCounts, "--json", "--heatmap", heatmap, "--skip-rows", "0");
        Assert.True(exit == 0, error);
        Assert.Equal(5, JsonDocument.Parse(output).RootElement.GetProperty("samples").GetInt64());
        (exit, _, error) = await Cli("evaluate", "--model", modelPath, "--data", noCounts, "--skip-rows", "-1");
        Assert.Equal(1, exit); // a bad command line
        Assert.Contains("--skip-rows -1: give a whole number of lines from 0 to 1,000,000 (0 skips none).", error);

        // A model trained on files with a header row after the skipped line: a file whose header row is its first line reads
        // its first data row as the header, and the error says to read the header with --skip-rows 0.
        var headerModel = TrainedModel.Load(CsvModel(hasHeader: true, "skip-one-header.safetensors", skipRows: 1));
        var headerFirst = Path.Combine(_directory, "header-first.tsv");
        File.WriteAllLines(headerFirst, ["sepal_length\tsepal_width\tpetal_length\tpetal_width\tlabel", .. rows]);
        Assert.EndsWith("If line 1 ('sepal_length', 'sepal_width', 'petal_length', 'petal_width', 'label'), which is skipped, is the header row, read it with --skip-rows 0.",
            Assert.Throws<DataFormatException>(() => ModelInputs.Read(headerFirst, headerModel, resize: false)).Message);
        Assert.Equal(5, ModelInputs.Read(headerFirst, headerModel, resize: false, skipRows: 0).Names.Count);
    }

    /// <summary>
    /// A model trained on some classes only (Data:Classes) scores rows of those classes. Rows of other labels were left out
    /// with no word when labels were numbers (300 digits rows scored as "148 samples"), and refused with an error when they
    /// were names. Both now leave them out, as training leaves them out, and say how many, of which labels and why: a
    /// warning, the accuracy line and the JSON's leftOut. A model of all its classes still refuses a label it does not know.
    /// </summary>
    [Fact]
    public async Task Rows_of_labels_outside_the_models_data_classes_are_left_out_and_counted_for_numbers_and_names_alike()
    {
        string[] features = ["5.1\t3.5\t1.4\t0.2", "7.0\t3.2\t4.7\t1.4", "6.3\t3.3\t6.0\t2.5", "5.8\t2.7\t5.1\t1.9", "6.4\t3.2\t4.5\t1.5"];
        // Numbers: Data:Classes [0, 1] of labels 0, 1 and 2.
        var numbered = CsvModel(hasHeader: false, "classes-01.safetensors", classes: [0, 1]);
        var numbers = Path.Combine(_directory, "numbers.tsv");
        File.WriteAllLines(numbers, features.Zip(["0", "1", "2", "2", "1"], (f, l) => $"{f}\t{l}"));
        var read = ModelInputs.ReadLabeled(numbers, TrainedModel.Load(numbered), resize: false, skipRows: null);
        Assert.Equal([0, 1, 1], read.Data.Labels.Select(l => (int)l));
        Assert.Equal([$"{numbers}:line 1", $"{numbers}:line 2", $"{numbers}:line 5"], read.Data.SampleNames!);
        Assert.Equal(2, read.LeftOut);
        Assert.Equal($"{numbers}: 2 of 5 rows are left out, as training leaves them out: their label, 2 (2 rows), is not among the model's classes, " +
            "the Data:Classes it was trained on (0, 1). The figures count the other 3.", read.LeftOutNotice);

        // Names: Data:Classes [0, 1] of setosa, versicolor and virginica; the model knows the names it kept.
        var named = TrainedModel.Load(CsvModel(hasHeader: false, "classes-named.safetensors", classes: [0, 1], classNames: ["setosa", "versicolor"]));
        var names = Path.Combine(_directory, "names.tsv");
        File.WriteAllLines(names, features.Zip(["setosa", "versicolor", "virginica", "virginica", "versicolor"], (f, l) => $"{f}\t{l}"));
        read = ModelInputs.ReadLabeled(names, named, resize: false, skipRows: null);
        Assert.Equal([0, 1, 1], read.Data.Labels.Select(l => (int)l));
        Assert.Equal(features[4].Split('\t').Select(float.Parse), read.Data.Sample(2).ToArray());
        Assert.Equal([$"{names}:line 1", $"{names}:line 2", $"{names}:line 5"], read.Data.SampleNames!);
        Assert.Equal(2, read.LeftOut);
        Assert.Equal($"{names}: 2 of 5 rows are left out, as training leaves them out: their label, 'virginica' (2 rows), is not among the model's classes, " +
            "the Data:Classes it was trained on ('setosa', 'versicolor'). The figures count the other 3.", read.LeftOutNotice);
        // Every row of other labels: the error says why there is nothing to score.
        var onlyOthers = Path.Combine(_directory, "only-virginica.tsv");
        File.WriteAllLines(onlyOthers, [$"{features[2]}\tvirginica"]);
        Assert.Equal($"{onlyOthers}: no samples of the model's classes: 1 of 1 row is left out, as training leaves them out: their label, 'virginica' (1 row), " +
            "is not among the model's classes, the Data:Classes it was trained on ('setosa', 'versicolor'). The figures count the other 0.",
            Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(onlyOthers, named, resize: false)).Message);
        // A model of all its classes: a label it does not know is refused, as a test file's is in training.
        var all = TrainedModel.Load(CsvModel(hasHeader: false, "all-named.safetensors", classNames: ["setosa", "versicolor", "virginica"]));
        var unknown = Path.Combine(_directory, "unknown.tsv");
        File.WriteAllLines(unknown, [$"{features[0]}\tsetosa", $"{features[1]}\tversicolour"]);
        Assert.Contains("line 2, column 'column 4': label 'versicolour' is not", Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(unknown, all, resize: false)).Message);

        // On the command line: the warning, the accuracy line and the JSON say it, for numbers and names alike.
        var heatmap = Path.Combine(_directory, "classes.png");
        var (exit, output, error) = await Cli("evaluate", "--model", numbered, "--data", numbers, "--heatmap", heatmap);
        Assert.True(exit == 0, error);
        Assert.Contains("(3 samples; 2 left out, labels not among Data:Classes)", output);
        Assert.Contains("warning: " + read.LeftOutNotice!.Replace(names, numbers).Replace("'virginica'", "2").Replace("'setosa', 'versicolor'", "0, 1"),
            string.Join(" ", error.Split('\n', StringSplitOptions.TrimEntries)));
        (exit, output, error) = await Cli("evaluate", "--model", Path.Combine(_directory, "classes-named.safetensors"), "--data", names, "--heatmap", heatmap, "--json");
        Assert.True(exit == 0, error);
        var report = JsonDocument.Parse(output).RootElement;
        Assert.Equal(3, report.GetProperty("samples").GetInt64());
        Assert.Equal(2, report.GetProperty("leftOut").GetInt32());
        Assert.Contains("'virginica' (2 rows), is not among the model's classes", error);
    }

    /// <summary>
    /// A model trained on an image folder with Data:Classes scores the images of those classes. evaluate refused a test folder
    /// that also held the other classes' sub-folders ("sub-folders 'Ankle boot', ... are not classes of the training folder"),
    /// though training had read that same folder and left their images out; CSV rows of other labels were already left out.
    /// Those sub-folders are now left out too, and counted: the warning by label, the accuracy line and the JSON's leftOut.
    /// </summary>
    [Fact]
    public async Task Sub_folders_outside_the_models_data_classes_are_left_out_and_counted_as_csv_rows_are()
    {
        var options = new ModelBuilder(784).Dense(3).Build();
        var weights = ModelFactory.InitialWeights(ModelFactory.Build(options), options.Initializer, seed: 1);
        var normalizer = Normalizer.FromStatistics(NormalizationKind.Global, [0.5f], [0.25f]);
        // Data:Classes [1, 7, 9] of the sorted sub-folder names: Bag, Sneaker and Trouser, the names the model keeps.
        var sorted = ImageFolderTests.FashionNames.Order(StringComparer.Ordinal).ToArray();
        string[] kept = [sorted[1], sorted[7], sorted[9]];
        Assert.Equal(["Bag", "Sneaker", "Trouser"], kept);
        var trained = new TrainedModel(options, weights, normalizer, ModelMetadata.Create(options, normalizer,
            new DataMetadata(DataFormat.ImageFolder, 255f, kept, LabelsAreNames: true, null, null, false, [1, 7, 9]), version: 0, epochs: 0, testAccuracy: null, seed: 0));
        var folder = ImageFolderTests.WriteFolder(Path.Combine(_directory, "images"), TestData.RawTest, 60);
        int Images(string name) => Directory.Exists(Path.Combine(folder, name)) ? Directory.GetFiles(Path.Combine(folder, name)).Length : 0;
        var keptImages = kept.Sum(Images);
        var others = sorted.Except(kept).Where(n => Images(n) > 0).ToArray();
        Assert.True(keptImages > 0 && others.Length >= 5, $"{keptImages} images of the kept classes, {others.Length} other classes");

        var read = ModelInputs.ReadLabeled(folder, trained, resize: false, skipRows: null);
        Assert.Equal(keptImages, read.Data.Count);
        for (var i = 0; i < read.Data.Count; i++)
            Assert.Equal(kept[read.Data.Labels[i]], Path.GetFileName(Path.GetDirectoryName(read.Data.SampleNames![i])));
        Assert.Equal(60 - keptImages, read.LeftOut);
        var listed = others.Select((n, i) => $"'{n}' ({(i == 0 ? Counts.Of(Images(n), "image") : Counts.Number(Images(n)))})").ToList();
        Assert.Equal($"{folder}: {60 - keptImages} of 60 images are left out, as training leaves them out: their labels, " +
            $"{string.Join(", ", listed.Take(listed.Count - 1))} and {listed[^1]}, are not among the model's classes, the Data:Classes it was trained on " +
            $"('Bag', 'Sneaker', 'Trouser'). The figures count the other {keptImages}.", read.LeftOutNotice);

        // The same on the command line: the warning, the accuracy line and the JSON.
        var model = Path.Combine(_directory, "image-classes.safetensors");
        trained.Save(model);
        var heatmap = Path.Combine(_directory, "image-classes.png");
        var (exit, output, error) = await Cli("evaluate", "--model", model, "--data", folder, "--heatmap", heatmap);
        Assert.True(exit == 0, error);
        Assert.Contains($"({keptImages} samples; {60 - keptImages} left out, labels not among Data:Classes)", output);
        Assert.Contains("warning: " + read.LeftOutNotice, string.Join(" ", error.Split('\n', StringSplitOptions.TrimEntries)));
        (exit, output, error) = await Cli("evaluate", "--model", model, "--data", folder, "--heatmap", heatmap, "--json");
        Assert.True(exit == 0, error);
        var report = JsonDocument.Parse(output).RootElement;
        Assert.Equal(keptImages, report.GetProperty("samples").GetInt64());
        Assert.Equal(60 - keptImages, report.GetProperty("leftOut").GetInt32());

        // Only other classes: nothing to score, and the error says why.
        var onlyOthers = Directory.CreateDirectory(Path.Combine(_directory, "only-others")).FullName;
        Directory.Move(Path.Combine(folder, others[0]), Path.Combine(onlyOthers, others[0]));
        var moved = Directory.GetFiles(Path.Combine(onlyOthers, others[0])).Length;
        Assert.StartsWith($"{onlyOthers}: no samples of the model's classes: {moved} of {Counts.Of(moved, "image")} {(moved == 1 ? "is" : "are")} left out, as training leaves them out: " +
            $"their label, '{others[0]}' ({Counts.Of(moved, "image")}), is not among the model's classes,",
            Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(onlyOthers, trained, resize: false)).Message);

        // A model of all its classes still refuses a sub-folder it does not know.
        var all = new TrainedModel(new ModelBuilder(784).Dense(10).Build(), ModelFactory.InitialWeights(ModelFactory.Build(new ModelBuilder(784).Dense(10).Build()),
            options.Initializer, seed: 1), normalizer, ModelMetadata.Create(options, normalizer,
            new DataMetadata(DataFormat.ImageFolder, 255f, sorted, LabelsAreNames: true, null, null, false, []), version: 0, epochs: 0, testAccuracy: null, seed: 0));
        Directory.CreateDirectory(Path.Combine(folder, "Hat"));
        ImageFolderTests.WriteImage(Path.Combine(folder, "Hat", "0.png"), TestData.RawTest.Sample(0));
        Assert.Contains("sub-folder 'Hat' is not a class of the training folder", Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(folder, all, resize: false)).Message);
    }

    /// <summary>
    /// A model trained with MeanSquaredError outputs scores fitted to one-hot targets, not probabilities: predict printed
    /// them as "top probabilities" in percent ("2 88.1%, 9 60.3%", summing far above 100%, or negative) and as "probability"
    /// in JSON. They are labelled scores now: the table's "top scores" as numbers, JSON's "score"; a softmax model keeps its
    /// probabilities.
    /// </summary>
    [Fact]
    public async Task A_mean_squared_error_model_lists_scores_not_probabilities()
    {
        var path = CsvModel(hasHeader: false, "mse.safetensors", loss: LossTypes.MeanSquaredError);
        var model = TrainedModel.Load(path);
        var rows = Path.Combine(_directory, "mse-rows.tsv");
        File.WriteAllLines(rows, ["5.1\t3.5\t1.4\t0.2", "6.3\t3.3\t6.0\t2.5"]);
        var outputs = model.Logits([5.1f, 3.5f, 1.4f, 0.2f, 6.3f, 3.3f, 6.0f, 2.5f]);
        Assert.True(PredictCommand.GivesScores(model));
        Assert.False(PredictCommand.GivesScores(TrainedModel.Load(CsvModel(hasHeader: false, "softmax.safetensors"))));

        var (exit, output, error) = await Cli("predict", "--model", path, "--json", "--top-k", "3", rows);
        Assert.True(exit == 0, error);
        var predictions = JsonDocument.Parse(output).RootElement;
        for (var i = 0; i < 2; i++)
        {
            var top = predictions[i].GetProperty("top");
            var expected = outputs.AsSpan(i * 3, 3).ToArray().OrderDescending().ToArray();
            for (var j = 0; j < 3; j++)
            {
                Assert.Equal(expected[j], top[j].GetProperty("score").GetDouble(), precision: 5); // the raw output, not a softmax of it
                Assert.False(top[j].TryGetProperty("probability", out _));
            }
        }
        (exit, output, error) = await Cli("predict", "--model", path, rows);
        Assert.True(exit == 0, error);
        Assert.Contains("top scores", output);
        Assert.DoesNotContain("probabilit", output);
        Assert.DoesNotContain("%", output);
        var first = PredictCommand.Predict(model, ModelInputs.Read(rows, model, resize: false), k: 2).First();
        Assert.Equal(string.Join(", ", first.Top.Select(t => $"{t.Class} {t.Probability.ToString("F3", System.Globalization.CultureInfo.InvariantCulture)}")),
            PredictCommand.TopText(first, scores: true));
        Assert.Contains(PredictCommand.TopText(first, scores: true), output);
        // A softmax model: probabilities, as before.
        (exit, output, error) = await Cli("predict", "--model", Path.Combine(_directory, "softmax.safetensors"), rows);
        Assert.True(exit == 0, error);
        Assert.Contains("top probabilities", output);
        Assert.Contains("%", output);
        // A 2-class model with --top-k left at its default (3) lists both classes without a warning; a --top-k given is warned of.
        var twoClasses = CsvModel(hasHeader: false, "two-classes.safetensors", classes: [0, 1]);
        (exit, _, error) = await Cli("predict", "--model", twoClasses, rows);
        Assert.True(exit == 0, error);
        Assert.Equal("", error.Trim());
        (exit, _, error) = await Cli("predict", "--model", twoClasses, "--top-k", "3", rows);
        Assert.True(exit == 0, error);
        Assert.Equal("warning: --top-k 3 is more than the model's 2 classes: each input lists all 2.", error.Trim());
    }

    /// <summary>
    /// A CSV file of a header row alone: evaluate refused it ("no data rows", exit code 2) while predict printed an empty
    /// table and exited 0. predict now gives the same error and exit code, for a file with blank lines after the header too.
    /// </summary>
    [Fact]
    public async Task Predict_refuses_a_csv_file_of_a_header_row_alone_as_evaluate_does()
    {
        var path = CsvModel(hasHeader: true, "header-only.safetensors");
        var headerOnly = Path.Combine(_directory, "header-only.tsv");
        File.WriteAllText(headerOnly, "sepal_length\tsepal_width\tpetal_length\tpetal_width\tlabel\n\n\n");
        Assert.Equal($"{headerOnly}: no data rows. The file needs at least one row of features.",
            Assert.Throws<DataFormatException>(() => ModelInputs.Read(headerOnly, TrainedModel.Load(path), resize: false)).Message);

        var (exit, output, error) = await Cli("predict", "--model", path, headerOnly);
        Assert.Equal(2, exit);
        Assert.Equal("", output);
        Assert.Equal($"error: {headerOnly}: no data rows. The file needs at least one row of features.",
            string.Join(" ", error.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)));
        (exit, _, error) = await Cli("evaluate", "--model", path, "--data", headerOnly, "--heatmap", Path.Combine(_directory, "empty.png"));
        Assert.Equal(2, exit);
        Assert.Contains($"error: {headerOnly}: no data rows.", error);
        // With another input that has rows: nothing is printed for either, as for any input predict cannot read.
        var rows = Path.Combine(_directory, "with-rows.tsv");
        File.WriteAllLines(rows, ["sepal_length\tsepal_width\tpetal_length\tpetal_width", "5.1\t3.5\t1.4\t0.2"]);
        (exit, output, _) = await Cli("predict", "--model", path, rows, headerOnly);
        Assert.Equal(2, exit);
        Assert.Equal("", output);
    }

    /// <summary>
    /// A CSV file with a header row for a model trained on files without one was refused as "'sepal_length' is not a finite
    /// number ... list non-numeric columns in Data:Csv:IgnoreColumns", a key these commands do not take; the reverse as "the
    /// header lacks 'sepal_length', ...; '5.1', '3.5' ... are not among its columns". Each now says what the first row is,
    /// how the model's training files were, and the fix; a file that matches is read as before.
    /// </summary>
    [Fact]
    public async Task A_header_row_the_model_was_not_trained_with_or_a_missing_one_is_named_with_the_fix()
    {
        var headerless = TrainedModel.Load(CsvModel(hasHeader: false, "headerless.safetensors"));
        var withHeader = TrainedModel.Load(CsvModel(hasHeader: true, "header.safetensors"));
        var rows = new[] { "5.1\t3.5\t1.4\t0.2\t0", "6.3\t3.3\t6.0\t2.5\t2" };
        var noHeaderFile = Path.Combine(_directory, "rows.tsv");
        File.WriteAllLines(noHeaderFile, rows);
        var headerFile = Path.Combine(_directory, "named.tsv");
        File.WriteAllLines(headerFile, ["sepal_length\tsepal_width\tpetal_length\tpetal_width\tlabel", .. rows]);
        const string howRead = "and predict and evaluate read every CSV file as the training files were read (they take no config keys)";

        var removeHeader = $"{headerFile}: its first row ('sepal_length', 'sepal_width', 'petal_length', 'petal_width', 'label') is a header row of column " +
            $"names, but the model was trained on CSV files without one (Data:Csv:HasHeader false), {howRead}. Remove the header row from {headerFile}.";
        Assert.Equal(removeHeader, Assert.Throws<DataFormatException>(() => ModelInputs.Read(headerFile, headerless, resize: false)).Message);
        Assert.Equal(removeHeader, Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(headerFile, headerless, resize: false)).Message);

        var addHeader = $"{noHeaderFile}: its first row ('5.1', '3.5', '1.4', '0.2', '0') is a row of numbers, not a header row, but the model was trained " +
            $"on CSV files with one (Data:Csv:HasHeader true), {howRead}, matching the columns by name. Add a header row at the top of {noHeaderFile} naming " +
            "the columns as the training file did: 'sepal_length', 'sepal_width', 'petal_length', 'petal_width' (in any order), and 'label' over the labels when the file has them.";
        Assert.Equal(addHeader, Assert.Throws<DataFormatException>(() => ModelInputs.Read(noHeaderFile, withHeader, resize: false)).Message);
        Assert.Equal(addHeader, Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(noHeaderFile, withHeader, resize: false)).Message);

        // Files that match their model are read as before.
        Assert.Equal(new[] { 5.1f, 3.5f, 1.4f, 0.2f }, ModelInputs.Read(noHeaderFile, headerless, resize: false).Values.Take(4).ToArray());
        Assert.Equal(new[] { 0, 2 }, ModelInputs.ReadLabeled(headerFile, withHeader, resize: false).Data.Labels.Select(l => (int)l).ToArray());

        // On the command line, the one error line with exit code 2.
        var (exit, _, error) = await Cli("evaluate", "--model", Path.Combine(_directory, "headerless.safetensors"), "--data", headerFile);
        Assert.Equal(2, exit);
        Assert.Equal($"error: {removeHeader}", string.Join(" ", error.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)));
    }

    /// <summary>
    /// One huge but finite weight (3.4e38 in '2.weight') makes every output overflow, even for inputs on the training
    /// scale: predict and evaluate blamed the inputs ("far outside the range of the training data"). The tensor whose
    /// float32 L2 norm overflows is named, with its largest |value|; a large weight whose norm stays finite is not.
    /// </summary>
    [Fact]
    public async Task A_huge_finite_weight_that_overflows_the_outputs_is_named_instead_of_the_inputs()
    {
        var options = new ModelBuilder(4).Dense(8).ReLU().Dense(3).Build();
        var weights = ModelFactory.InitialWeights(ModelFactory.Build(options), options.Initializer, seed: 1);
        weights.Segment("0.bias").Fill(1f); // every hidden unit is at least about 1 on these inputs, so the huge weight overflows
        var normalizer = Normalizer.FromStatistics(NormalizationKind.Global, [0f], [1f]);
        var model = new TrainedModel(options, weights, normalizer, ModelMetadata.Create(options, normalizer,
            new DataMetadata(DataFormat.Csv, 1f, null, LabelsAreNames: false, null, null, false, []), version: 0, epochs: 0, testAccuracy: null, seed: 0));
        Assert.Empty(model.OverflowingTensors());
        model.Weights.Segment("2.weight")[0] = 1e6f; // large, but its square fits float32: not named
        Assert.Empty(model.OverflowingTensors());
        model.Weights.Segment("2.weight")[0] = 3.4e38f;
        var path = Path.Combine(_directory, "huge-weight.safetensors");
        model.Save(path);
        var loaded = TrainedModel.Load(path); // finite, so it loads
        Assert.Equal([("2.weight", 3.4e38f)], loaded.OverflowingTensors());

        var rows = Path.Combine(_directory, "rows.csv");
        File.WriteAllLines(rows, ["0.1,0.2,0.3,0.4", "0.5,0.5,0.5,0.5"]);
        var error = Assert.Throws<DataFormatException>(() => PredictCommand.Predict(loaded, ModelInputs.Read(rows, loaded, resize: false), k: 1).ToArray());
        Assert.Equal($"{rows}:line 1, {rows}:line 2: the model's outputs for these 2 samples are not finite (NaN or infinity), so there is no prediction. " +
            "The model's weights are the likely cause, not the inputs: tensor '2.weight' holds a value of magnitude 3.4E+38, so large that its float32 " +
            "L2 norm overflows to infinity (trained weights are many orders of magnitude smaller), and the network overflows on inputs of any scale. " +
            "The file is damaged or was edited, or its run diverged: use the model.safetensors its training run wrote, a checkpoint from before the " +
            "divergence, or train again.", error.Message);
        Assert.DoesNotContain("far outside the range of the training data", error.Message);

        var (exit, output, errors) = await Cli("predict", "--model", path, "--json", rows);
        Assert.Equal(2, exit);
        Assert.Equal("", output);
        Assert.Contains($"warning: {path}: tensor '2.weight' holds a value of magnitude 3.4E+38, so large that its float32 L2 norm overflows to infinity " +
            "(trained weights are many orders of magnitude smaller): the model's predictions mean little or nothing.", errors.ReplaceLineEndings(" "));
        Assert.Contains("The model's weights are the likely cause, not the inputs: tensor '2.weight'", errors.ReplaceLineEndings(" "));
        Assert.DoesNotContain("far outside the range of the training data", errors);

        // Inputs that meet the huge weight with zeros (every hidden unit 0 after ReLU) give finite outputs, which mean
        // nothing all the same: evaluate scores them, with the warning.
        model.Weights.Segment("0.bias").Fill(-1f);
        model.Save(path);
        var labeled = Path.Combine(_directory, "labeled.csv");
        File.WriteAllLines(labeled, ["0.1,0.2,0.3,0.4,0", "0.5,0.5,0.5,0.5,1"]);
        (exit, _, errors) = await Cli("evaluate", "--model", path, "--data", labeled, "--heatmap", Path.Combine(_directory, "h.png"));
        Assert.True(exit == 0, errors);
        Assert.Contains($"warning: {path}: tensor '2.weight' holds a value of magnitude 3.4E+38", errors.ReplaceLineEndings(" "));
    }

    [Fact]
    public async Task A_model_file_with_damaged_weights_is_refused_as_corrupt_by_every_reader_and_one_without_a_checksum_still_loads()
    {
        var overrides = new Dictionary<string, string?> { ["Training:Epochs"] = "5", ["Output:Directory"] = _directory };
        var (trainExit, _, run) = await TrainCommand.RunJobAsync(SklearnCsvTests.Config("iris"), overrides, null, CancellationToken.None).WithTestTimeout();
        Assert.Equal(0, trainExit);
        var path = Path.Combine(run!, "model.safetensors");
        var recorded = SafeTensors.ReadMetadata(path)[SafeTensors.DataSha256Key];
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(SafeTensorsTests.DataSection(File.ReadAllBytes(path)))), recorded);
        var model = TrainedModel.Load(path);
        // The checksums describe the file, not the model: not in the loaded metadata (nor an ONNX export's), and Save records its own.
        Assert.False(model.Metadata.ContainsKey(SafeTensors.DataSha256Key));
        Assert.False(model.Metadata.ContainsKey(SafeTensors.MetadataSha256Key));
        var saved = Path.Combine(_directory, "saved.safetensors");
        model.Save(saved);
        Assert.Equal(recorded, SafeTensors.ReadMetadata(saved)[SafeTensors.DataSha256Key]);
        Assert.Equal(SafeTensors.ReadMetadata(path)[SafeTensors.MetadataSha256Key], SafeTensors.ReadMetadata(saved)[SafeTensors.MetadataSha256Key]);

        // 4 bytes overwritten in the middle of the weights, as in a damaged copy: refused, never scored.
        var damaged = Path.Combine(_directory, "damaged.safetensors");
        File.Copy(path, damaged);
        SafeTensorsTests.DamageData(damaged);
        var message = $"{damaged}: checksum mismatch: the data section's SHA-256 is ";
        var error = Assert.Throws<InvalidDataException>(() => TrainedModel.Load(damaged));
        Assert.StartsWith(message, error.Message);
        Assert.Contains($", the header records {recorded}. The file is corrupt (damaged on disk or in a copy), so its weights cannot be trusted: " +
            "copy it again from where its run wrote it, or write a model anew from one of the run's checkpoints (Checkpoint:Directory) with 'train --resume' (for a damaged checkpoint, resume from an earlier one).", error.Message);
        var rows = Path.Combine(_directory, "pred.csv");
        File.WriteAllLines(rows, ["150,4,setosa,versicolor,virginica", "5.1,3.5,1.4,0.2"]);
        foreach (var command in new[] { new[] { "predict", "--model", damaged, rows }, ["inspect", damaged], ["inspect", path, "--compare", damaged, "--histograms", Path.Combine(_directory, "h.png")] })
        {
            var (exit, output, errors) = await Cli(command);
            Assert.True(exit == 2, $"{command[0]}: {exit} {errors}");
            Assert.Contains($"error: {message}", errors.ReplaceLineEndings(""));
            Assert.DoesNotContain("setosa", output);
        }

        // One digit of the first feature's mean changed in the header: the weights match their checksum, but the model would
        // standardize its inputs wrongly. Refused by every reader too.
        var edited = Path.Combine(_directory, "edited.safetensors");
        File.Copy(path, edited);
        var mean = SafeTensors.ReadMetadata(path)[ModelMetadata.InputMean];
        var digit = mean.IndexOfAny("123456789".ToCharArray());
        var editedMean = mean[..digit] + (mean[digit] == '9' ? '8' : (char)(mean[digit] + 1)) + mean[(digit + 1)..];
        SafeTensorsTests.EditHeader(edited, header => header.Replace(System.Text.Json.JsonSerializer.Serialize(mean)[1..^1],
            System.Text.Json.JsonSerializer.Serialize(editedMean)[1..^1], StringComparison.Ordinal));
        var headerMessage = $"{edited}: checksum mismatch: the header's metadata has SHA-256 ";
        var headerError = Assert.Throws<InvalidDataException>(() => TrainedModel.Load(edited));
        Assert.StartsWith(headerMessage, headerError.Message);
        Assert.Contains($", the header records {SafeTensors.ReadMetadata(path)[SafeTensors.MetadataSha256Key]}. The metadata (the network, the input standardization", headerError.Message);
        foreach (var command in new[] { new[] { "predict", "--model", edited, rows }, ["evaluate", "--model", edited, "--data", SklearnCsvTests.IrisFile], ["inspect", edited], ["export", edited, "--onnx", Path.Combine(_directory, "e.onnx")] })
        {
            var (exit, output, errors) = await Cli(command);
            Assert.True(exit == 2, $"{command[0]}: {exit} {errors}");
            Assert.Contains($"error: {headerMessage}", errors.ReplaceLineEndings(""));
            Assert.DoesNotContain("setosa", output);
        }
        Assert.False(File.Exists(Path.Combine(_directory, "e.onnx")));

        // A model file without the entries (an older build's) loads as before, with the same weights.
        var older = Path.Combine(_directory, "older.safetensors");
        File.Copy(path, older);
        SafeTensorsTests.RemoveDataChecksum(older);
        Assert.Equal(model.Weights.Values, TrainedModel.Load(older).Weights.Values);
        var (olderExit, olderOutput, olderErrors) = await Cli("predict", "--model", older, rows);
        Assert.True(olderExit == 0, olderErrors);
        Assert.Contains("setosa", olderOutput);
    }

    [Fact]
    public async Task Outputs_that_are_not_finite_and_weights_that_are_not_finite_exit_2_naming_the_rows_or_the_tensor_never_a_prediction()
    {
        var overrides = new Dictionary<string, string?> { ["Training:Epochs"] = "60", ["Optimizer:LearningRate"] = "0.01", ["Output:Directory"] = _directory };
        var (trainExit, _, run) = await TrainCommand.RunJobAsync(SklearnCsvTests.Config("iris"), overrides, null, CancellationToken.None).WithTestTimeout();
        Assert.Equal(0, trainExit);
        var path = Path.Combine(run!, "model.safetensors");
        var model = TrainedModel.Load(path);
        // The config skips iris.csv's summary line: a normal row (line 2), one whose logits overflow (3e38 standardizes to
        // infinity), and one far out whose logits stay finite (about 1e21: probabilities, not the NaN of an unshifted softmax).
        var rows = Path.Combine(_directory, "pred.csv");
        File.WriteAllLines(rows, ["150,4,setosa,versicolor,virginica", "5.1,3.5,1.4,0.2", "5.1,3e38,1.4,0.2", "1e20,3.5,1.4,0.2"]);
        var error = Assert.Throws<DataFormatException>(() => PredictCommand.Predict(model, ModelInputs.Read(rows, model, resize: false), k: 3).ToArray());
        Assert.True(CliConsole.IsInputError(error));
        Assert.StartsWith($"{rows}:line 3: the model's outputs for this sample are not finite (NaN or infinity), so there is no prediction.", error.Message);
        Assert.Contains("far outside the range of the training data (a value such as 3e38", error.Message);
        // The same model saved as a diverged run's last-good file: its weights are named as the likely cause, not the data.
        var lastGood = Path.Combine(_directory, "last-good.safetensors");
        SafeTensors.Write(lastGood, model.Weights, new Dictionary<string, string>(model.Metadata) { ["stopped"] = "training diverged; these are the last weights with a finite loss" });
        var diverged = TrainedModel.Load(lastGood);
        var blamed = Assert.Throws<DataFormatException>(() => PredictCommand.Predict(diverged, ModelInputs.Read(rows, diverged, resize: false), k: 3).ToArray());
        Assert.EndsWith("so there is no prediction. The model comes from a run that diverged (training diverged; these are the last weights with a finite loss): " +
            "its weights are likely large enough to overflow on any input. Use a checkpoint from before the divergence, or train again with a lower " +
            "Optimizer:LearningRate or Optimizer:GradientClipNorm set.", blamed.Message);
        // A run that failed at its first step saved its starting weights: the initializer is named instead.
        SafeTensors.Write(lastGood, model.Weights, new Dictionary<string, string>(model.Metadata)
            { ["stopped"] = "training diverged at its first step; these are the weights it started from, whose loss was not finite either" });
        diverged = TrainedModel.Load(lastGood);
        blamed = Assert.Throws<DataFormatException>(() => PredictCommand.Predict(diverged, ModelInputs.Read(rows, diverged, resize: false), k: 3).ToArray());
        Assert.EndsWith("They are the weights the run started from: train again with another Model:Initializer.", blamed.Message);
        Assert.Equal([1], model.NonFiniteSamples(model.Score(ModelInputs.Read(rows, model, resize: false).Values, dividedBy: 1)));
        // The C# API: no class for that sample (-1), and it counts as wrong in the accuracy.
        var samples = new[] { 5.1f, 3.5f, 1.4f, 0.2f, 5.1f, 3e38f, 1.4f, 0.2f };
        Assert.Equal([0, -1], model.Predict(samples));
        Assert.Equal(0.5, model.Accuracy(new LabeledDataset(samples, [0, 0], 4, 3, null), standardized: false));

        var (exit, output, errors) = await Cli("predict", "--model", path, rows);
        Assert.Equal(2, exit);
        Assert.Contains($"error: {rows}:line 3: the model's outputs for this sample are not finite", errors);
        Assert.DoesNotContain("NaN%", output);
        (exit, output, errors) = await Cli("predict", "--model", path, "--json", rows);
        Assert.Equal(2, exit);
        Assert.Equal("", output);
        Assert.Contains($"{rows}:line 3:", errors);
        Assert.DoesNotContain("Unhandled exception", errors);

        // Without the overflowing row the same file predicts, and the normal row as the model's own logits say.
        File.WriteAllLines(rows, ["150,4,setosa,versicolor,virginica", "5.1,3.5,1.4,0.2", "1e20,3.5,1.4,0.2"]);
        (exit, output, errors) = await Cli("predict", "--model", path, "--json", rows);
        Assert.True(exit == 0, errors);
        var predictions = JsonDocument.Parse(output).RootElement;
        var expected = model.Probabilities([5.1f, 3.5f, 1.4f, 0.2f]);
        Assert.Equal("setosa", predictions[0].GetProperty("name").GetString());
        Assert.Equal(model.Predict([5.1f, 3.5f, 1.4f, 0.2f])[0], predictions[0].GetProperty("class").GetInt32());
        Assert.Equal(expected.Max(), predictions[0].GetProperty("top")[0].GetProperty("probability").GetDouble(), precision: 6);
        Assert.Equal(1, predictions[1].GetProperty("top")[0].GetProperty("probability").GetDouble(), precision: 6);
        // The same rows in a file of another extension (a model trained on CSV reads any file but an image as CSV), and the
        // run folder given for the model it holds: the same predictions.
        var text = Path.Combine(_directory, "pred.txt");
        File.Copy(rows, text);
        var (textExit, textOutput, textErrors) = await Cli("predict", "--model", run!, "--json", text);
        Assert.True(textExit == 0, textErrors);
        Assert.Equal(output.Replace(rows, text), textOutput);

        // evaluate: the labeled rows, one of them overflowing, name that row's line and exit 2 with --json too.
        var labeled = Path.Combine(_directory, "labeled.csv");
        File.WriteAllLines(labeled, ["150,4,setosa,versicolor,virginica", "5.1,3.5,1.4,0.2,0", "7.0,3.2,4.7,1.4,1", "6.3,3.3,6.0,3e38,2"]);
        (exit, output, errors) = await Cli("evaluate", "--model", path, "--data", labeled, "--json", "--heatmap", Path.Combine(_directory, "h.png"));
        Assert.Equal(2, exit);
        Assert.Equal("", output);
        Assert.Contains($"error: {labeled}:line 4: the model's outputs for this sample are not finite", errors);

        // A model with one NaN weight: refused when loaded, naming the tensor, by predict and evaluate alike.
        model.Weights.Segment("0.weight")[5] = float.NaN;
        var broken = Path.Combine(_directory, "nan-weight.safetensors");
        model.Save(broken);
        var message = $"{broken}: tensor '0.weight' holds 1 value that is not finite (NaN, at index 5)";
        Assert.StartsWith(message, Assert.Throws<InvalidDataException>(() => TrainedModel.Load(broken)).Message);
        (exit, output, errors) = await Cli("evaluate", "--model", broken, "--data", labeled, "--json");
        Assert.Equal(2, exit);
        Assert.Equal("", output);
        Assert.Contains(message, errors);
        (exit, _, errors) = await Cli("predict", "--model", broken, "--json", rows);
        Assert.Equal(2, exit);
        Assert.Contains(message, errors);

        // A CSV-trained model reads CSV files only: an image (4 features would read as a 2x2 one) or a folder is refused.
        var image = Path.Combine(_directory, "x.png");
        ImageFolderTests.WriteImage(image, TestData.RawTest.Sample(0));
        (exit, output, errors) = await Cli("predict", "--model", path, image);
        Assert.Equal(2, exit);
        Assert.Equal("", output);
        Assert.Contains($"{image}: the model was trained on CSV data (4 feature columns", errors);
        Assert.Contains("Give it a CSV file with the training file's columns.", errors);
        (exit, _, errors) = await Cli("evaluate", "--model", path, "--data", TestData.SubsetDirectory);
        Assert.Equal(2, exit);
        Assert.Contains($"{TestData.SubsetDirectory}: the model was trained on CSV data", errors);
        // An IDX file is not read as CSV, whatever its name (here a copy without the usual one, found by its magic number);
        // a path that does not exist is reported as such.
        var idx = Path.Combine(_directory, "images.bin");
        using (var gzip = new System.IO.Compression.GZipStream(File.OpenRead(Path.Combine(TestData.SubsetDirectory, "t10k-images-idx3-ubyte.gz")), System.IO.Compression.CompressionMode.Decompress))
        using (var copy = File.Create(idx))
            gzip.CopyTo(copy);
        (exit, _, errors) = await Cli("predict", "--model", path, idx);
        Assert.Equal(2, exit);
        Assert.Contains($"{idx}: the model was trained on CSV data", errors);
        var gzipped = Path.Combine(TestData.SubsetDirectory, "t10k-images-idx3-ubyte.gz"); // compressed: found through gzip
        (exit, _, errors) = await Cli("predict", "--model", path, gzipped);
        Assert.Equal(2, exit);
        Assert.Contains($"{gzipped}: the model was trained on CSV data", errors);
        var typo = Path.Combine(_directory, "rows-typo.txt");
        (exit, _, errors) = await Cli("predict", "--model", path, typo);
        Assert.Equal(2, exit);
        Assert.Contains($"{typo}: no such file or folder.", errors);
    }
}
