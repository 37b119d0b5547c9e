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

    internal static string[] Lines(string path)
    {
        using var stream = path.EndsWith(".gz", StringComparison.Ordinal)
            ? (Stream)new System.IO.Compression.GZipStream(File.OpenRead(path), System.IO.Compression.CompressionMode.Decompress)
            : File.OpenRead(path);
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }
}
