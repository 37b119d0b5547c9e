using System.CommandLine;
using System.Globalization;
using System.Numerics.Tensors;
using System.Text.Json;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Data;
using DistTrain.Core.Evaluation;
using DistTrain.Core.Models;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary>
/// <c>disttrain evaluate</c>: scores a labeled data set with a trained model and prints the accuracy, each class's
/// precision and recall, and the confusion matrix, which it also draws as a PNG heatmap.
/// </summary>
internal static class EvaluateCommand
{
    public static Command Create()
    {
        var model = CliOptions.File("--model", "The model.safetensors a training run wrote, or its run folder.", PredictCommand.ModelTakes, required: true, "-m");
        var data = new Option<string>("--data", "-d") { Description = "A folder with IDX files (its t10k test split), a folder of class sub-folders of images, or a labeled CSV file.", Required = true, HelpName = "PATH" };
        var heatmap = CliOptions.NotEmptyPath(new Option<string>("--heatmap") { Description = "Where to draw the confusion matrix (PNG).", DefaultValueFactory = _ => "confusion-matrix.png", HelpName = "FILE" });
        var json = new Option<bool>("--json") { Description = "Print the results as JSON instead of tables." };
        var resize = new Option<bool>("--resize") { Description = "Resize images of another size to the model's input." };
        var skipRows = PredictCommand.SkipRowsOption();
        var command = new Command("evaluate", "Score a labeled data set: accuracy, per-class precision and recall, confusion matrix (printed and drawn as a PNG).")
        {
            model, data, heatmap, json, resize, skipRows,
        };
        command.SetAction(CliConsole.Cancellable((parse, cancellationToken) =>
        {
            var skip = parse.GetValue(skipRows);
            if (PredictCommand.SkipRowsError(skip) is { } badSkip)
            {
                CliConsole.Fail("error", badSkip);
                return 1; // a bad command line, as predict's --top-k 0
            }
            TrainedModel trained;
            ConfusionMatrix matrix;
            LabeledInputs read;
            string dataPath = parse.GetValue(data)!;
            try
            {
                var modelFile = RunFiles.ModelIn(parse.GetValue(model)!.FullName);
                var heatmapFile = parse.GetValue(heatmap)!;
                if ((CliOptions.OverwritesInput("--heatmap", heatmapFile, modelFile, File.Exists(dataPath) ? dataPath : null)
                     ?? CliOptions.BadPngOutput("--heatmap", heatmapFile, dataPath)
                     ?? CliOptions.OverwritesRunFile("--heatmap", Path.GetFullPath(heatmapFile), "reads", [modelFile])) is { } overwrite)
                {
                    CliConsole.Fail("error", overwrite);
                    return 2;
                }
                trained = TrainedModel.Load(modelFile);
                if (PredictCommand.OverflowingWeightsWarning(modelFile, trained) is { } overflowing) CliConsole.Fail("warning", overflowing);
                if (ModelInputs.SkippedDataRowsWarning(dataPath, trained, skip) is { } skippedData) CliConsole.Fail("warning", skippedData);
                var (samples, dividedBy) = read = ModelInputs.ReadLabeled(dataPath, trained, parse.GetValue(resize) || trained.Data.ResizeImages, skip);
                // Samples of labels outside the model's Data:Classes are left out, as training leaves them out: said, not silent.
                if (read.LeftOutNotice is { } leftOut) CliConsole.Fail("warning", leftOut);
                if (ModelInputs.AlreadyScaledWarning(dataPath, samples.Features, dividedBy, trained) is { } scaled) CliConsole.Fail("warning", scaled);
                // As train warns: raw IDX files beside their .gz copies are not read.
                if (Directory.Exists(dataPath) && FashionMnist.IgnoredRawFilesNotice(dataPath) is { } ignored) CliConsole.Fail("warning", ignored);
                cancellationToken.ThrowIfCancellationRequested();
                matrix = Evaluate(trained, samples, dividedBy, cancellationToken);
            }
            catch (Exception e) when (CliConsole.IsInputError(e) || e is IOException or UnauthorizedAccessException)
            {
                CliConsole.Fail("error", e.Message);
                return 2;
            }
            var names = Enumerable.Range(0, trained.ClassCount).Select(c => trained.ClassName(c) ?? c.ToString(CultureInfo.InvariantCulture)).ToArray();
            var heatmapPath = Path.GetFullPath(parse.GetValue(heatmap)!);
            cancellationToken.ThrowIfCancellationRequested(); // no heatmap, no tables after a Ctrl-C
            try
            {
                ConfusionMatrixPlot.Write(matrix, names, $"{Path.GetFileName(dataPath.TrimEnd('/'))}: accuracy {100 * matrix.Accuracy:F2}% ({matrix.Total:N0} samples)", heatmapPath);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or DirectoryNotFoundException)
            {
                CliConsole.Fail("error", $"{heatmapPath}: the heatmap could not be written ({e.Message}). Pass --heatmap with a writable path.");
                return 2;
            }
            if (parse.GetValue(json)) PrintJson(matrix, names, heatmapPath, read.LeftOut);
            else Print(matrix, names, heatmapPath, read.LeftOut);
            return 0;
        }));
        return command;
    }

    /// <summary>The confusion matrix of <paramref name="model"/> on <paramref name="data"/> (labels in the model's classes).</summary>
    /// <exception cref="DataFormatException">Some samples' outputs are not finite; the message names them (<see cref="PredictCommand.CheckedScores"/>).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while scoring.</exception>
    internal static ConfusionMatrix Evaluate(TrainedModel model, LabeledDataset data, float dividedBy, CancellationToken cancellationToken = default)
    {
        var scores = PredictCommand.CheckedScores(model, data.Features, dividedBy,
            i => data.SampleNames?[i] ?? $"sample {i.ToString(CultureInfo.InvariantCulture)}", cancellationToken);
        var matrix = new ConfusionMatrix(model.ClassCount);
        for (var i = 0; i < data.Count; i++)
            matrix.Add(data.Labels[i], TensorPrimitives.IndexOfMax(scores.AsSpan(i * model.ClassCount, model.ClassCount)));
        return matrix;
    }

    private static void Print(ConfusionMatrix matrix, string[] names, string heatmapPath, int leftOut)
    {
        var inv = CultureInfo.InvariantCulture;
        var perClass = new Table().AddColumns("class", "name", "samples", "precision", "recall");
        for (var c = 0; c < matrix.ClassCount; c++)
            perClass.AddLiteralRow(c.ToString(inv), names[c], matrix.Support(c).ToString("N0", inv),
                Percent(Defined(matrix.Precision(c), matrix.Predicted(c))), Percent(Defined(matrix.Recall(c), matrix.Support(c))));
        AnsiConsole.Write(perClass);
        var confusion = new Table { Title = new TableTitle("confusion matrix: rows true class, columns predicted") };
        confusion.AddColumn("true \\ predicted");
        foreach (var name in names) confusion.AddColumn(new TableColumn(new Text(name)).RightAligned());
        for (var actual = 0; actual < matrix.ClassCount; actual++)
            confusion.AddLiteralRow([names[actual], .. Enumerable.Range(0, matrix.ClassCount).Select(p => matrix[actual, p].ToString(inv))]);
        AnsiConsole.Write(confusion);
        CliConsole.Out.WriteLiteralLine(FormattableString.Invariant($"Accuracy: {100 * matrix.Accuracy:F2}%"), new Style(Color.Green, decoration: Decoration.Bold),
            FormattableString.Invariant($" ({matrix.Total:N0} samples{AccuracyNote(leftOut)})"));
        CliConsole.Out.WriteLiteralLine($"Heatmap: {heatmapPath}");
    }

    /// <summary>A precision or recall, or null when nothing was counted for it (<paramref name="of"/> = 0): no sample of the
    /// class, or none predicted as it. <see cref="ConfusionMatrix"/> gives 0 there, scikit-learn's default.</summary>
    internal static double? Defined(double fraction, long of) => of == 0 ? null : fraction;

    /// <summary>A <see cref="Defined"/> fraction as a percentage with two decimals, or "n/a".</summary>
    internal static string Percent(double? fraction) =>
        fraction is { } value ? (100 * value).ToString("F2", CultureInfo.InvariantCulture) + "%" : "n/a";

    /// <summary>What the accuracy line adds for samples left out (<see cref="LabeledInputs.LeftOut"/>): "; 152 left out, labels
    /// not among Data:Classes"; empty when none were.</summary>
    internal static string AccuracyNote(int leftOut) =>
        leftOut == 0 ? "" : $"; {leftOut.ToString("N0", CultureInfo.InvariantCulture)} left out, labels not among Data:Classes";

    private static void PrintJson(ConfusionMatrix matrix, string[] names, string heatmapPath, int leftOut) =>
        Console.WriteLine(JsonReport(matrix, names, heatmapPath, leftOut));

    /// <summary>The <c>--json</c> report: accuracy, samples scored and samples left out (labels not among the model's
    /// Data:Classes), per class samples, precision and recall (null where undefined), the matrix's rows, the heatmap's path.</summary>
    internal static string JsonReport(ConfusionMatrix matrix, string[] names, string heatmapPath, int leftOut = 0) =>
        JsonSerializer.Serialize(new
        {
            accuracy = matrix.Accuracy,
            samples = matrix.Total,
            leftOut,
            classes = Enumerable.Range(0, matrix.ClassCount).Select(c => new
            {
                @class = c, name = names[c], samples = matrix.Support(c),
                precision = Defined(matrix.Precision(c), matrix.Predicted(c)), recall = Defined(matrix.Recall(c), matrix.Support(c)),
            }),
            confusion = matrix.ToRows(),
            heatmap = heatmapPath,
        }, PredictCommand.Json);
}
