using DistTrain.Cli;
using DistTrain.Cluster.Hosting;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Models;

namespace DistTrain.Tests;

/// <summary>
/// The real CSV files Debian's python3-sklearn ships (tests/run.sh installs it), read with configs/sklearn-*.json: their
/// shapes and values, a short training run on each, and evaluate on the held-out rows against what training reported.
/// </summary>
public class SklearnCsvTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-sklearn-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    internal static string Config(string name) => Path.Combine(AppContext.BaseDirectory, "configs", $"sklearn-{name}.json");

    [Theory]
    [InlineData("iris", 111, 39, 4, 3, "setosa")]
    [InlineData("wine", 133, 45, 13, 3, "class_0")]
    [InlineData("breast-cancer", 427, 142, 30, 2, "malignant")]
    [InlineData("digits", 1346, 451, 64, 10, null)]
    public void The_bundled_files_load_with_their_configs(string name, int train, int test, int features, int classes, string? firstClass)
    {
        var options = TrainingOptionsLoader.Load(Config(name), environment: new Dictionary<string, string?>());
        Assert.True(File.Exists(options.Data.Csv.TrainFile), $"{options.Data.Csv.TrainFile} is missing: install python3-sklearn (tests/run.sh does)");
        var data = TrainingData.Load(options);
        Assert.Equal((train, test, features, classes), (data.Train.Count, data.Test.Count, data.Train.FeatureCount, data.Train.ClassCount));
        Assert.Equal(firstClass, data.ClassNames?[0]);
        Assert.Equal(1f, data.InputDivisor);
        Assert.Equal(NormalizationKind.PerFeature, data.Normalizer.Kind);
        // Standardized with the training rows' statistics: every feature column has mean 0 there.
        for (var f = 0; f < features; f++)
            Assert.InRange(Enumerable.Range(0, data.Train.Count).Average(i => data.Train.Features[i * features + f]), -1e-4, 1e-4);
    }

    [Fact]
    public async Task Digits_train_past_90_percent_and_the_saved_model_scores_the_held_out_rows_as_training_did()
    {
        var overrides = new Dictionary<string, string?> { ["Training:Epochs"] = "40", ["Training:Workers"] = "2", ["Training:BatchSizePerWorker"] = "100", ["Output:Directory"] = _directory };
        var (exit, result, run) = await TrainCommand.RunJobAsync(Config("digits"), overrides, null, CancellationToken.None).WithTestTimeout();
        Assert.Equal(0, exit);
        Assert.InRange(result!.FinalEpoch.TestAccuracy, 0.9, 1);

        // The held-out rows, written back as a CSV in the file's own layout, evaluate to the reported accuracy.
        var options = TrainingOptionsLoader.Load(Config("digits"), environment: new Dictionary<string, string?>());
        var rows = Lines(options.Data.Csv.TrainFile);
        var labels = rows.Select(r => (byte)int.Parse(r[(r.LastIndexOf(',') + 1)..])).ToArray();
        var heldOut = Path.Combine(_directory, "held-out.csv");
        File.WriteAllLines(heldOut, TestSplit.TestIndices(labels, options.Data.TestFraction, options.Data.TestSplitSeed).Select(i => rows[i]));
        var model = TrainedModel.Load(Path.Combine(run!, "model.safetensors"));
        Assert.Equal(64, model.Data.FeatureNames!.Count);
        var (data, dividedBy) = ModelInputs.ReadLabeled(heldOut, model, resize: false);
        Assert.Equal(451, data.Count);
        Assert.Equal(result.FinalEpoch.TestAccuracy, EvaluateCommand.Evaluate(model, data, dividedBy).Accuracy, precision: 10);
    }

    [Fact]
    public async Task Iris_predictions_carry_the_class_names_from_the_config()
    {
        var overrides = new Dictionary<string, string?> { ["Training:Epochs"] = "60", ["Optimizer:LearningRate"] = "0.01", ["Output:Directory"] = _directory };
        var (exit, result, run) = await TrainCommand.RunJobAsync(Config("iris"), overrides, null, CancellationToken.None).WithTestTimeout();
        Assert.Equal(0, exit);
        Assert.InRange(result!.FinalEpoch.TestAccuracy, 0.85, 1);
        var model = TrainedModel.Load(Path.Combine(run!, "model.safetensors"));
        var rows = Path.Combine(_directory, "flowers.csv");
        // Without the label column, after the summary line the config skips: one of each species.
        File.WriteAllLines(rows, ["150,4,setosa,versicolor,virginica", "5.1,3.5,1.4,0.2", "7.0,3.2,4.7,1.4", "6.3,3.3,6.0,2.5"]);
        var predictions = PredictCommand.Predict(model, ModelInputs.Read(rows, model, resize: false), k: 3).ToArray();
        Assert.Equal(["setosa", "versicolor", "virginica"], predictions.Select(p => p.Name));
        Assert.Equal($"{rows}:line 2", predictions[0].Input);
        Assert.All(predictions, p => Assert.Equal(1, p.Top.Sum(t => t.Probability), precision: 5));
    }

    internal static string IrisFile => TrainingOptionsLoader.Load(Config("iris"), environment: new Dictionary<string, string?>()).Data.Csv.TrainFile;

    /// <summary>iris.csv's 150 rows under a header, each row's cells in <paramref name="order"/>; the rows where <paramref name="keep"/> holds.</summary>
    private string IrisWithHeader(string name, string[] header, int[] order, Func<int, bool> keep)
    {
        var rows = Lines(IrisFile)[1..].Where((_, i) => keep(i)).Select(r => string.Join(',', order.Select(c => r.Split(',')[c])));
        var path = Path.Combine(_directory, name);
        File.WriteAllLines(path, [string.Join(',', order.Select(c => header[c])), .. rows]);
        return path;
    }

    [Fact]
    public async Task Evaluate_and_a_test_file_match_a_header_by_name_so_swapped_columns_score_the_same_and_renamed_ones_are_refused()
    {
        string[] names = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"];
        int[] inOrder = [0, 1, 2, 3, 4], swappedOrder = [1, 0, 2, 3, 4];
        var train = IrisWithHeader("train.csv", names, inOrder, i => i % 4 != 0);
        var test = IrisWithHeader("test.csv", names, inOrder, i => i % 4 == 0);
        var swapped = IrisWithHeader("swapped.csv", names, swappedOrder, i => i % 4 == 0);
        var renamed = IrisWithHeader("renamed.csv", ["a", "b", "c", "d", "species"], inOrder, i => i % 4 == 0);
        Dictionary<string, string?> Overrides(string testFile) => new()
        {
            ["Data:Csv:TrainFile"] = train, ["Data:Csv:TestFile"] = testFile, ["Data:Csv:HasHeader"] = "true", ["Data:Csv:SkipRows"] = "0",
            ["Data:TestFraction"] = "0", ["Training:Epochs"] = "60", ["Optimizer:LearningRate"] = "0.01", ["Output:Directory"] = _directory,
        };

        // Training's test file: the swapped file loads to the same test samples.
        TrainingData Load(string testFile) => TrainingData.Load(TrainingOptionsLoader.Load(Config("iris"), Overrides(testFile), environment: new Dictionary<string, string?>()));
        var original = Load(test);
        Assert.Equal(38, original.Test.Count);
        Assert.Equal(original.Test.Features, Load(swapped).Test.Features);
        Assert.Equal(original.Test.Labels, Load(swapped).Test.Labels);
        Assert.Contains("the header lacks 'sepal_length', 'sepal_width', 'petal_length', 'petal_width'", Assert.Throws<DataFormatException>(() => Load(renamed)).Message);

        // evaluate and predict: the swapped file scores exactly as the original, which scores as training reported.
        var (exit, result, run) = await TrainCommand.RunJobAsync(Config("iris"), Overrides(test), null, CancellationToken.None).WithTestTimeout();
        Assert.Equal(0, exit);
        Assert.InRange(result!.FinalEpoch.TestAccuracy, 0.85, 1);
        var model = TrainedModel.Load(Path.Combine(run!, "model.safetensors"));
        Assert.Equal(names[..4], model.Data.FeatureNames!);
        var matrix = EvaluateCommand.Evaluate(model, ModelInputs.ReadLabeled(test, model, resize: false).Data, 1f);
        var swappedMatrix = EvaluateCommand.Evaluate(model, ModelInputs.ReadLabeled(swapped, model, resize: false).Data, 1f);
        Assert.Equal(result.FinalEpoch.TestAccuracy, matrix.Accuracy, precision: 10);
        Assert.Equal(matrix.ToRows(), swappedMatrix.ToRows());
        Assert.Equal(PredictCommand.Predict(model, ModelInputs.Read(test, model, resize: false), 3).Select(p => p.Class),
            PredictCommand.Predict(model, ModelInputs.Read(swapped, model, resize: false), 3).Select(p => p.Class));
        var error = Assert.Throws<DataFormatException>(() => ModelInputs.ReadLabeled(renamed, model, resize: false));
        Assert.Equal($"{renamed}: columns are matched by name with the training file's, and the header lacks 'sepal_length', 'sepal_width', " +
            "'petal_length', 'petal_width'; 'a', 'b', 'c', 'd' are not among its columns. Name the columns as the training file does ('sepal_length', " +
            "'sepal_width', 'petal_length', 'petal_width', then the label; in any order) and remove the others.", error.Message);
    }

    /// <summary>The problem loading iris.csv with <paramref name="edit"/> applied to each line (1-based) gives, with a model of 3 outputs.</summary>
    private string ClassProblem(string name, Func<int, string, string> edit, bool classNames)
    {
        var path = Path.Combine(_directory, name);
        File.WriteAllLines(path, File.ReadAllLines(IrisFile).Select((line, i) => i == 0 ? line : edit(i + 1, line)));
        var overrides = new Dictionary<string, string?> { ["Data:Csv:TrainFile"] = path };
        var options = TrainingOptionsLoader.Load(Config("iris"), overrides, environment: new Dictionary<string, string?>());
        if (!classNames) options.Data.ClassNames = [];
        try
        {
            ModelFactory.CheckFitsData(options.Model, TrainingData.Load(options));
        }
        catch (Exception e) when (e is ConfigurationException or DataFormatException)
        {
            return e.Message;
        }
        throw new Xunit.Sdk.XunitException($"{name} loaded without a problem");
    }

    private static string WithLabel(string line, string label) => line[..(line.LastIndexOf(',') + 1)] + label;

    [Fact]
    public void A_class_count_that_does_not_fit_names_the_labels_found_their_lines_and_both_fixes()
    {
        var path = Path.Combine(_directory, "stray.csv");
        var stray = ClassProblem("stray.csv", (n, line) => n == 100 ? WithLabel(line, "7") : line, classNames: false);
        Assert.Contains($"Model:Layers:2:Units = 3 does not match the data: the last Dense layer outputs one logit per class and the data has 8 classes: " +
            $"{path}, column 'column 4', holds the labels 0 to 2 and 7 (line 100). If that label is stray, correct or remove line 100; " +
            "if the data has 8 classes, set Units to 8.", stray);
        // With the config's Data:ClassNames, that count is the first to disagree; the same labels are named.
        Assert.Contains("Data:ClassNames lists 3 names but the data has 8 classes: " + $"{path}, column 'column 4', holds the labels 0 to 2 and 7 (line 100). " +
            "If that label is stray, correct or remove line 100; if the data has 8 classes, give Data:ClassNames 8 names, in label order.",
            ClassProblem("stray.csv", (n, line) => n == 100 ? WithLabel(line, "7") : line, classNames: true));

        var fraction = ClassProblem("fraction.csv", (n, line) => n == 152 - 1 ? WithLabel(line, "1.5") : line, classNames: false);
        Assert.Contains("the data has 4 classes: " + Path.Combine(_directory, "fraction.csv") + ", column 'column 4', holds the labels 0 to 2 and '1.5' (line 151); " +
            "'1.5' is not a whole number, so every label was read as a name. If that label is stray, correct or remove line 151; if the data has 4 classes, set Units to 4.", fraction);

        // Without its label column the last feature (petal width, 22 values) is read as the label.
        var noLabel = ClassProblem("no-label.csv", (_, line) => line[..line.LastIndexOf(',')], classNames: false);
        Assert.Contains("the data has 22 classes: " + Path.Combine(_directory, "no-label.csv") + ", column 'column 3' (chosen by default, Data:Csv:LabelColumn not being set: the column headed 'label', else the last), " +
            "holds 22 distinct labels, read as names: '0.1' (5 rows), '0.2' (29 rows), ", noLabel);
        Assert.Contains("If that is not the label column, set Data:Csv:LabelColumn to it; if the data has 22 classes, set Units to 22.", noLabel);
    }

    [Fact]
    public void Data_of_one_class_is_refused_rather_than_trained_to_a_constant_100_percent()
    {
        var path = Path.Combine(_directory, "one-class.csv");
        var problem = ClassProblem("one-class.csv", (_, line) => WithLabel(line, "0"), classNames: false);
        Assert.Contains($"The data has 1 class ({path}, column 'column 4'): a classifier needs 2 at least; with one, the softmax of its only logit is " +
            "always 1, so there is nothing to learn and every prediction is right. Set Data:Csv:LabelColumn to the column that holds the classes, " +
            "or give data of 2 classes or more.", problem);
        Assert.DoesNotContain("Units", problem); // the model's size is not the fix
    }

    [Fact]
    public void The_label_column_chosen_by_default_is_named_at_start_up()
    {
        string Note(string[] header, int[] order)
        {
            var path = IrisWithHeader("named.csv", header, order, _ => true);
            var overrides = new Dictionary<string, string?> { ["Data:Csv:TrainFile"] = path, ["Data:Csv:HasHeader"] = "true", ["Data:Csv:SkipRows"] = "0" };
            var options = TrainingOptionsLoader.Load(Config("iris"), overrides, environment: new Dictionary<string, string?>());
            return TrainingData.Load(options).Labels!.DefaultColumnNote!;
        }
        var file = Path.Combine(_directory, "named.csv");
        Assert.Equal($"labels from {file}'s last column, 'species', as none is headed 'label' (Data:Csv:LabelColumn not being set; set it to read another)",
            Note(["a", "b", "c", "d", "species"], [0, 1, 2, 3, 4]));
        // A column headed 'label' wins over the last, wherever it is (here the first, with the species): the line says so.
        Assert.Equal($"labels from {file}'s column 'Label', the one headed 'label' (Data:Csv:LabelColumn not being set; set it to read another)",
            Note(["a", "b", "c", "d", "Label"], [4, 0, 1, 2, 3]));
        var set = TrainingOptionsLoader.Load(Config("iris"), new Dictionary<string, string?> { ["Data:Csv:LabelColumn"] = "4" }, environment: new Dictionary<string, string?>());
        Assert.Null(TrainingData.Load(set).Labels!.DefaultColumnNote);
    }

    internal static string[] Lines(string path)
    {
        using var stream = path.EndsWith(".gz", StringComparison.Ordinal)
            ? (Stream)new System.IO.Compression.GZipStream(File.OpenRead(path), System.IO.Compression.CompressionMode.Decompress)
            : File.OpenRead(path);
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }
}
