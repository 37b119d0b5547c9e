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
/// input's class, its name when the model knows it, and the top-k probabilities (or JSON with <c>--json</c>).
/// </summary>
internal static class PredictCommand
{
    /// <summary>One scored sample as printed with <c>--json</c>.</summary>
    internal sealed record Prediction(string Input, int Class, string? Name, IReadOnlyList<ClassProbability> Top);

    /// <summary>A class and its probability.</summary>
    internal sealed record ClassProbability(int Class, string? Name, double Probability);

    /// <summary>What --model takes.</summary>
    internal const string ModelTakes = "the model.safetensors a training run wrote (runs/<time>/model.safetensors)";

    public static Command Create()
    {
        var model = CliOptions.File("--model", "The model.safetensors a training run wrote.", ModelTakes, required: true, "-m");
        var inputs = new Argument<string[]>("inputs") { Description = "Image files (PNG, JPEG) or folders of them, CSV files, or IDX image files.", Arity = ArgumentArity.OneOrMore };
        var top = CliOptions.WholeNumber("--top-k", "How many of the most probable classes to list per input.", "a whole number of classes to list per input, at least 1", 3, "-k");
        var json = new Option<bool>("--json") { Description = "Print the predictions as a JSON array instead of a table." };
        var resize = new Option<bool>("--resize") { Description = "Resize images of another size to the model's input (as if trained with Data:ImageFolder:Resize)." };
        var command = new Command("predict", "Predict the class of images, CSV rows or IDX images with a trained model.") { model, inputs, top, json, resize };
        command.SetAction(parse =>
        {
            var k = parse.GetValue(top);
            if (k < 1)
            {
                CliConsole.Fail("error", $"--top-k {k}: list at least 1 class.");
                return 1;
            }
            List<Prediction> predictions;
            try
            {
                var trained = TrainedModel.Load(parse.GetValue(model)!.FullName);
                predictions = [.. parse.GetValue(inputs)!.SelectMany(input =>
                    Predict(trained, ModelInputs.Read(input, trained, parse.GetValue(resize) || trained.Data.ResizeImages), k))];
            }
            catch (Exception e) when (CliConsole.IsInputError(e) || e is IOException or UnauthorizedAccessException)
            {
                CliConsole.Fail("error", e.Message);
                return 2;
            }
            if (parse.GetValue(json)) Console.WriteLine(JsonSerializer.Serialize(predictions, Json));
            else Print(predictions);
            return 0;
        });
        return command;
    }

    internal static readonly JsonSerializerOptions Json = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    /// <summary>The predictions for one batch of inputs: per sample the most probable class and the top <paramref name="k"/>.</summary>
    internal static IEnumerable<Prediction> Predict(TrainedModel model, InputBatch batch, int k)
    {
        var scores = model.Score(batch.Values, batch.DividedBy);
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

    private static void Print(IReadOnlyList<Prediction> predictions)
    {
        var table = new Table().AddColumns("input", "class", "name", "top probabilities");
        foreach (var p in predictions)
            table.AddRow(Markup.Escape(p.Input), p.Class.ToString(CultureInfo.InvariantCulture), Markup.Escape(p.Name ?? "-"),
                Markup.Escape(string.Join(", ", p.Top.Select(t => $"{t.Name ?? t.Class.ToString(CultureInfo.InvariantCulture)} {100 * t.Probability:F1}%"))));
        AnsiConsole.Write(table);
    }
}
