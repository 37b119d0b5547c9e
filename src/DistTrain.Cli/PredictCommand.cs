using System.CommandLine;
using System.Globalization;
using System.Numerics.Tensors;
using System.Text.Json;
using DistTrain.Core.Data;
using DistTrain.Core.Models;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary>
/// <c>disttrain predict</c>: scores image files or folders, CSV rows or IDX images with a trained model and prints each
/// input's class, its name when the model knows it, and the top-k probabilities (or JSON with <c>--json</c>); for a model
/// trained with MeanSquaredError, whose outputs are no probabilities, the top-k scores (<see cref="GivesScores"/>).
/// </summary>
internal static class PredictCommand
{
    /// <summary>One scored sample as printed with <c>--json</c>.</summary>
    internal sealed record Prediction(string Input, int Class, string? Name, IReadOnlyList<ClassProbability> Top);

    /// <summary>A class and its probability: the softmax of the logits; for a model trained with MeanSquaredError
    /// (<see cref="GivesScores"/>) its raw output, a score, which <c>--json</c> prints as <see cref="ClassScore"/>.</summary>
    internal sealed record ClassProbability(int Class, string? Name, double Probability);

    /// <summary>A class and its score, the raw network output of a model trained with MeanSquaredError, as <c>--json</c> prints it.</summary>
    internal sealed record ClassScore(int Class, string? Name, double Score);

    /// <summary>One sample scored by a model trained with MeanSquaredError, as <c>--json</c> prints it: the top classes by score.</summary>
    internal sealed record ScoredPrediction(string Input, int Class, string? Name, IReadOnlyList<ClassScore> Top);

    /// <summary>
    /// True for a model whose outputs are scores, not probabilities: one trained with MeanSquaredError against one-hot
    /// targets, whose outputs are fitted to 0 and 1 without being made to sum to 1 (they can be negative, or sum far above
    /// 1; a softmax of them is no probability either). predict prints them as scores, not percentages.
    /// </summary>
    internal static bool GivesScores(TrainedModel model) => LossTypes.Canonical(model.Model.Loss) != LossTypes.SoftmaxCrossEntropy;

    /// <summary>What --model takes.</summary>
    internal const string ModelTakes = "the model.safetensors a training run wrote (runs/<time>/model.safetensors), or its run folder";

    public static Command Create()
    {
        var model = CliOptions.File("--model", "The model.safetensors a training run wrote, or its run folder.", ModelTakes, required: true, "-m");
        var inputs = new Argument<string[]>("inputs") { Description = "Image files (PNG, JPEG) or folders of them, CSV files, or IDX image files.", Arity = ArgumentArity.OneOrMore };
        var top = CliOptions.WholeNumber("--top-k", "How many of the most probable classes to list per input, with their probabilities " +
            "(for a model trained with Model:Loss MeanSquaredError: the highest-scoring, with their scores, its raw outputs, which are no probabilities).",
            "a whole number of classes to list per input, at least 1", 3, "-k");
        var json = new Option<bool>("--json") { Description = "Print the predictions as a JSON array instead of a table (each class with its \"probability\", or its \"score\" for a MeanSquaredError model)." };
        var resize = new Option<bool>("--resize") { Description = "Resize images of another size to the model's input (as if trained with Data:ImageFolder:Resize)." };
        var skipRows = SkipRowsOption();
        var command = new Command("predict", "Predict the class of images, CSV rows or IDX images with a trained model.") { model, inputs, top, json, resize, skipRows };
        command.SetAction(CliConsole.Cancellable((parse, cancellationToken) =>
        {
            var k = parse.GetValue(top);
            if (k < 1)
            {
                CliConsole.Fail("error", $"--top-k {k}: list at least 1 class.");
                return 1; // a bad command line, as finetune's --replace-head 0
            }
            var skip = parse.GetValue(skipRows);
            if (SkipRowsError(skip) is { } badSkip)
            {
                CliConsole.Fail("error", badSkip);
                return 1;
            }
            List<Prediction> predictions;
            bool scores;
            try
            {
                var modelPath = parse.GetValue(model)!.FullName;
                var trained = TrainedModel.Load(modelPath);
                scores = GivesScores(trained);
                if (OverflowingWeightsWarning(modelPath, trained) is { } overflowing) CliConsole.Fail("warning", overflowing);
                // The default (3) for a model of fewer classes lists them all without a word: only a --top-k the user gave is warned of.
                if (k > trained.ClassCount && parse.GetResult(top) is { Implicit: false })
                    CliConsole.Fail("warning", $"--top-k {k} is more than the model's {trained.ClassCount} classes: each input lists all {trained.ClassCount}.");
                predictions = [.. parse.GetValue(inputs)!.SelectMany(input =>
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    if (ModelInputs.SkippedDataRowsWarning(input, trained, skip) is { } skippedData) CliConsole.Fail("warning", skippedData);
                    var batch = ModelInputs.Read(input, trained, parse.GetValue(resize) || trained.Data.ResizeImages, skip);
                    if (ModelInputs.AlreadyScaledWarning(input, batch.Values, batch.DividedBy, trained) is { } scaled) CliConsole.Fail("warning", scaled);
                    return Predict(trained, batch, k, cancellationToken);
                })];
            }
            catch (Exception e) when (CliConsole.IsInputError(e) || e is IOException or UnauthorizedAccessException)
            {
                CliConsole.Fail("error", e.Message);
                return 2;
            }
            cancellationToken.ThrowIfCancellationRequested(); // nothing printed after a Ctrl-C
            if (parse.GetValue(json)) Console.WriteLine(JsonReport(predictions, scores));
            else Print(predictions, scores);
            return 0;
        }));
        return command;
    }

    /// <summary>The most lines <c>--skip-rows</c> skips, as Data:Csv:SkipRows allows.</summary>
    internal const int MaxSkipRows = 1_000_000;

    /// <summary>
    /// <c>--skip-rows N</c> of predict and evaluate: the lines skipped at the top of each CSV file for this command, instead
    /// of the model's Data:Csv:SkipRows (a file without the title or line of counts its training files started with).
    /// </summary>
    internal static Option<int?> SkipRowsOption() => CliOptions.WholeNumber("--skip-rows",
        "Lines to skip at the top of each CSV file, before the header or the first row, instead of the model's Data:Csv:SkipRows " +
        "(the training files' setting, applied by default): 0 reads a file that lacks the line(s) its training files started with.",
        $"a whole number of lines, 0 to {MaxSkipRows.ToString("N0", CultureInfo.InvariantCulture)}");

    /// <summary>The error for a <c>--skip-rows</c> out of range (a bad command line, exit code 1); null when it is fine or not given.</summary>
    internal static string? SkipRowsError(int? skipRows) => skipRows is { } n and (< 0 or > MaxSkipRows)
        ? $"--skip-rows {n}: give a whole number of lines from 0 to {MaxSkipRows.ToString("N0", CultureInfo.InvariantCulture)} (0 skips none)."
        : null;

    /// <summary>
    /// The <c>--json</c> array: per input its class, name and top classes, each with its "probability", or with its "score"
    /// when <paramref name="scores"/> (a model trained with MeanSquaredError, <see cref="GivesScores"/>).
    /// </summary>
    internal static string JsonReport(IReadOnlyList<Prediction> predictions, bool scores) => scores
        ? JsonSerializer.Serialize(predictions.Select(p => new ScoredPrediction(p.Input, p.Class, p.Name, [.. p.Top.Select(t => new ClassScore(t.Class, t.Name, t.Probability))])), Json)
        : JsonSerializer.Serialize(predictions, Json);

    internal static readonly JsonSerializerOptions Json = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    /// <summary>The predictions for one batch of inputs: per sample the most probable class and the top <paramref name="k"/>.</summary>
    /// <exception cref="DataFormatException">Some samples' outputs are not finite; the message names them (<see cref="CheckedScores"/>).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while scoring.</exception>
    internal static IEnumerable<Prediction> Predict(TrainedModel model, InputBatch batch, int k, CancellationToken cancellationToken = default)
    {
        var scores = CheckedScores(model, batch.Values, batch.DividedBy, i => batch.Names[i], cancellationToken);
        var classes = model.ClassCount;
        for (var i = 0; i < batch.Names.Count; i++)
        {
            var sample = scores.AsSpan(i * classes, classes).ToArray();
            var top = Enumerable.Range(0, classes).OrderByDescending(c => sample[c]).ThenBy(c => c).Take(k)
                .Select(c => new ClassProbability(c, model.ClassName(c), sample[c])).ToArray();
            var best = TensorPrimitives.IndexOfMax(sample);
            yield return new Prediction(batch.Names[i], best, model.ClassName(best), top);
        }
    }

    /// <summary>
    /// <see cref="TrainedModel.Score"/>, with every sample's outputs checked: samples whose logits are not finite get no
    /// prediction but an error that names them and the likely cause. Shared by predict and evaluate.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="values">The samples, as <see cref="TrainedModel.Score"/> takes them.</param>
    /// <param name="dividedBy">What the raw values were divided by when read.</param>
    /// <param name="name">The name of sample <c>i</c> (a file, <c>file:line N</c>, <c>file[i]</c>).</param>
    /// <param name="cancellationToken">Checked between passes through the network (<see cref="TrainedModel.Score"/>).</param>
    /// <exception cref="DataFormatException">Some samples' outputs are NaN or infinite.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled while scoring.</exception>
    internal static float[] CheckedScores(TrainedModel model, ReadOnlySpan<float> values, float dividedBy, Func<int, string> name,
        CancellationToken cancellationToken = default)
    {
        var scores = model.Score(values, dividedBy, cancellationToken);
        var bad = model.NonFiniteSamples(scores);
        if (bad.Count == 0) return scores;
        const int Listed = 5;
        var names = string.Join(", ", bad.Take(Listed).Select(name)) + (bad.Count > Listed ? $" and {bad.Count - Listed:N0} more" : "");
        // Weights whose squares overflow float32 overflow on inputs of any scale, the model's own training rows too: then
        // those tensors are named, not the inputs (TrainedModel.OverflowingTensors says why that bound).
        // The weights of a diverged run's last-good file can overflow on any input: then the model is the cause, not the data.
        var cause = OverflowingWeights(model) is { } overflowing
            ? $"The model's weights are the likely cause, not the inputs: {overflowing}, and the network overflows on inputs of any scale. {OverflowingWeightsFix}"
            : model.Metadata.TryGetValue("stopped", out var stopped) && stopped.Contains("diverged", StringComparison.Ordinal)
            ? $"The model comes from a run that diverged ({stopped}): its weights are likely large enough to overflow on any input. " +
              (stopped.Contains("first step", StringComparison.Ordinal)
                  ? "They are the weights the run started from: train again with another Model:Initializer."
                  : "Use a checkpoint from before the divergence, or train again with a lower Optimizer:LearningRate or Optimizer:GradientClipNorm set.")
            : "The input values are likely far outside the range of the training data (a value such as 3e38 overflows the network); give " +
              "values on the training data's scale or leave these samples out.";
        throw new DataFormatException($"{names}: the model's outputs for {(bad.Count == 1 ? "this sample are" : $"these {bad.Count:N0} samples are")} " +
            $"not finite (NaN or infinity), so there is no prediction. {cause}");
    }

    /// <summary>
    /// The tensors whose float32 L2 norm overflows (<see cref="TrainedModel.OverflowingTensors"/>), as the messages name
    /// them: "tensor '2.weight' holds a value of magnitude 3.4E+38, so large that its float32 L2 norm overflows to infinity
    /// (...)"; null when there are none.
    /// </summary>
    internal static string? OverflowingWeights(TrainedModel model)
    {
        var overflowing = model.OverflowingTensors();
        if (overflowing.Count == 0) return null;
        return string.Join(", ", overflowing.Select(t => $"tensor '{t.Name}' holds a value of magnitude {t.LargestMagnitude.ToString("G3", CultureInfo.InvariantCulture)}")) +
               $", so large that {(overflowing.Count == 1 ? "its" : "their")} float32 L2 norm overflows to infinity (trained weights are many orders of magnitude smaller)";
    }

    /// <summary>What to do about a model with weights that overflow (<see cref="OverflowingWeights"/>).</summary>
    internal const string OverflowingWeightsFix = "The file is damaged or was edited, or its run diverged: use the model.safetensors its training run " +
        "wrote, a checkpoint from before the divergence, or train again.";

    /// <summary>
    /// The warning predict and evaluate give for a model with weights that overflow (<see cref="OverflowingWeights"/>), even
    /// where its outputs stay finite (a Sigmoid after the tensor, or inputs that happen to meet it with small values): those
    /// outputs mean nothing. Null when there are none.
    /// </summary>
    internal static string? OverflowingWeightsWarning(string path, TrainedModel model) =>
        OverflowingWeights(model) is { } overflowing ? $"{path}: {overflowing}: the model's predictions mean little or nothing. {OverflowingWeightsFix}" : null;

    /// <summary>The table: input, class, name and the top classes with their probabilities as percentages, or, when
    /// <paramref name="scores"/>, with their scores as numbers (a MeanSquaredError model's outputs are no probabilities).</summary>
    private static void Print(IReadOnlyList<Prediction> predictions, bool scores)
    {
        var table = new Table().AddColumns("input", "class", "name", scores ? "top scores" : "top probabilities");
        foreach (var p in predictions)
            table.AddLiteralRow(p.Input, p.Class.ToString(CultureInfo.InvariantCulture), p.Name ?? "-", TopText(p, scores));
        AnsiConsole.Write(table);
    }

    /// <summary>A prediction's top classes as the table shows them: "Sneaker 99.2%, Sandal 0.5%", or with
    /// <paramref name="scores"/> "2 0.881, 9 0.603" (three decimals, invariant culture).</summary>
    internal static string TopText(Prediction prediction, bool scores) =>
        string.Join(", ", prediction.Top.Select(t => $"{t.Name ?? t.Class.ToString(CultureInfo.InvariantCulture)} " +
            (scores ? t.Probability.ToString("F3", CultureInfo.InvariantCulture) : $"{100 * t.Probability:F1}%")));
}
