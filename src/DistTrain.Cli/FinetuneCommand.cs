using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Models;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary>
/// <c>disttrain finetune</c>: transfer learning in single-node mode. Starts from a checkpoint's weights (matched by
/// <c>state_dict</c> name), optionally with a new head for another number of classes and frozen tensors, and trains
/// on the config's data. <c>--compare-scratch</c> then trains the same model from its initializer with the same
/// budget and prints both test accuracies.
/// </summary>
internal static class FinetuneCommand
{
    public static Command Create()
    {
        var config = CliOptions.File("--config", "JSON config of the fine-tuning job (data, model, optimizer).", CliOptions.ConfigTakes, required: true, "-c");
        var from = CliOptions.File("--from", "Pretrained checkpoint (.safetensors) written by DistTrain or exported from PyTorch.",
            $"a .safetensors checkpoint, such as a run's {DistTrain.Core.Checkpoints.RunFiles.Model}", required: true);
        var freeze = new Option<string[]>("--freeze") { Description = "Tensors to freeze: names (0.weight), layer indices (0) or prefixes ending in * (comma-separated or repeated).", AllowMultipleArgumentsPerToken = true, HelpName = "NAMES" };
        // Checked while parsing, so these problems come in the same report as the line's others and the config's
        // (ParseErrors.ConfigProblems), not one round later.
        freeze.Validators.Add(result =>
        {
            if (FreezeProblem([.. result.Tokens.Select(t => t.Value)]) is { } problem) result.AddError(problem);
        });
        var replaceHead = CliOptions.WholeNumber("--replace-head", "Replace the last Dense layer by a new one with this many classes (initialized afresh).", "the number of classes of the new head, a whole number from 2");
        replaceHead.Validators.Add(result =>
        {
            // A value that is not a whole number is the parser's error already (CliOptions.WholeNumber).
            if (result.Tokens.Count > 0 && int.TryParse(result.Tokens[^1].Value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var classes)
                && ReplaceHeadProblem(classes) is { } problem)
                result.AddError(problem);
        });
        var epochs = CliOptions.WholeNumber("--epochs", "Override Training:Epochs.", CliOptions.EpochsTakes, "-e");
        var workers = CliOptions.WholeNumber("--workers", "Override Training:Workers.", CliOptions.WorkersTakes, "-w");
        var data = CliOptions.Text("--data", "DIR", CliOptions.DataHelp, CliOptions.DataTakes);
        var output = CliOptions.Text("--output", "DIR", "Override Output:Directory.", CliOptions.OutputTakes, "-o");
        var compare = new Option<bool>("--compare-scratch") { Description = "Also train the same model from scratch with the same budget and compare test accuracy." };
        var command = new Command("finetune", "Fine-tune pretrained weights: load a checkpoint, freeze tensors, replace the head, train.")
        {
            config, from, freeze, replaceHead, epochs, workers, data, output, compare,
        };
        var sizes = new RunSizeOptions();
        sizes.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var overrides = new Dictionary<string, string?>();
            if (parse.GetValue(epochs) is { } e) overrides["Training:Epochs"] = e.ToString(CultureInfo.InvariantCulture);
            if (parse.GetValue(workers) is { } w) overrides["Training:Workers"] = w.ToString(CultureInfo.InvariantCulture);
            if (parse.GetValue(data) is { } d) overrides["Data:Directory"] = d;
            if (parse.GetValue(output) is { } o) overrides["Output:Directory"] = o;
            sizes.Read(parse, overrides);
            // An empty --freeze and a --replace-head below 2 did not parse (the validators above): the line's problems were reported.
            var frozen = FrozenNames(parse.GetValue(freeze) ?? []);
            var classes = parse.GetValue(replaceHead);
            string checkpoint;
            try
            {
                checkpoint = DistTrain.Core.Checkpoints.RunFiles.ModelIn(parse.GetValue(from)!.FullName); // a run folder stands for its model
                PretrainedWeights.RequireFile(checkpoint, "--from");
            }
            catch (Exception missing) when (missing is InvalidDataException or FileNotFoundException)
            {
                CliConsole.Fail("error", missing.Message);
                return 2;
            }
            void FineTune(TrainingOptions options)
            {
                options.Model.Pretrained = checkpoint;
                if (frozen.Count > 0) options.Model.Freeze = frozen;
                else frozen = options.Model.Freeze; // the config's, for the report
                if (classes is { } n) ReplaceHead(options.Model, n);
            }
            var configPath = parse.GetValue(config)!.FullName;
            var (exit, tuned, runDirectory) = await TrainCommand.RunJobAsync(configPath, overrides, FineTune, cancellationToken,
                (options, loaded) => { if (classes is { } n) CheckHeadFitsData(n, options, loaded.Train.ClassCount); },
                // Its --freeze and --replace-head are part of the model the checkpoints fit: train --resume, without them, is refused.
                resumeWith: "the same finetune command with DISTTRAIN_Checkpoint__Resume=true");
            if (exit != 0 || !parse.GetValue(compare)) return exit;

            AnsiConsole.MarkupLine("[bold]From scratch, same model and budget:[/]");
            DistTrain.Cluster.Metrics.DistTrainMetrics.StartAnotherRun(); // its gauges start empty, not at the fine-tuned run's values
            var (scratchExit, scratch, _) = await TrainCommand.RunJobAsync(configPath, overrides, options =>
            {
                options.Model.Pretrained = "";
                options.Model.Freeze = [];
                options.Model.ReplaceHead = false;
                if (classes is { } n) SetHeadUnits(options.Model, n);
                // Its own checkpoint folder: in the fine-tuned run's, files of the same steps replaced that run's.
                if (options.Checkpoint.Enabled)
                {
                    options.Checkpoint.Directory = Path.Combine(options.Checkpoint.Directory, "scratch");
                    options.Checkpoint.Resume = false;
                }
            }, cancellationToken);
            if (scratchExit != 0) return scratchExit;
            return CliConsole.SavedOr1(() => Report(tuned!, scratch!, checkpoint, frozen, runDirectory!), 0);
        });
        return command;
    }

    /// <summary>The tensor names, layer indices and prefixes of --freeze's values, split at commas, blanks dropped.</summary>
    private static List<string> FrozenNames(IEnumerable<string> given) =>
        [.. given.SelectMany(f => f.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))];

    /// <summary>
    /// The problem of --freeze's values, known from the command line alone: given, but naming no tensor (<c>--freeze ''</c>,
    /// <c>--freeze ,,</c>), which would otherwise be taken as "freeze nothing"; null when it names one or is not given.
    /// </summary>
    /// <param name="given">The option's values as given (each may hold several, comma-separated).</param>
    internal static string? FreezeProblem(IReadOnlyList<string> given) =>
        given.Count > 0 && FrozenNames(given).Count == 0
            ? $"--freeze '{string.Join(" ", given)}' names no tensor: give names (0.weight), layer indices (0) or prefixes (0.*), comma-separated."
            : null;

    /// <summary>
    /// The problem of --replace-head's number of classes, known from the command line alone: below 2 (as training refuses data
    /// of fewer than 2 classes: the softmax of one logit is always 1); null for 2 or more. Whether it fits the data is
    /// checked once the data is loaded (<see cref="CheckHeadFitsData"/>).
    /// </summary>
    /// <param name="classes">The value given.</param>
    internal static string? ReplaceHeadProblem(int classes) =>
        classes < 2
            ? $"--replace-head {classes}: a classifier needs 2 classes at least (with one, the softmax of its only logit is always 1, so there " +
              "is nothing to learn). Give the number of classes of the new head, 2 or more."
            : null;

    /// <summary>Sets the head's classes and marks it to be initialized afresh rather than loaded.</summary>
    private static void ReplaceHead(ModelOptions model, int classes)
    {
        SetHeadUnits(model, classes);
        model.ReplaceHead = true;
    }

    /// <summary>
    /// Refuses a --replace-head whose number of classes is not the data's, naming the option (the model's own check would
    /// blame the head's Model:Layers:N:Units, which the option set) and both ways out: the data's class count, or
    /// Data:Classes to train on that many classes of the data.
    /// </summary>
    /// <exception cref="ConfigurationException">The counts differ.</exception>
    internal static void CheckHeadFitsData(int classes, TrainingOptions options, int dataClasses)
    {
        if (classes == dataClasses) return;
        var head = options.Model.Layers.FindLastIndex(l => LayerTypes.Canonical(l.Type) == LayerTypes.Dense);
        var selected = options.Data.Classes.Count > 0 ? $" (Data:Classes selects [{string.Join(", ", options.Data.Classes)}])" : "";
        var keep = classes < dataClasses
            ? $", or keep {classes} classes by setting Data:Classes in the config to the {classes} class indices to train on, such as [{string.Join(", ", Enumerable.Range(0, classes))}]"
            : "";
        throw new ConfigurationException("--replace-head", [
            $"--replace-head {classes} gives the new head (Model:Layers:{head}) {classes} classes, but the data has {dataClasses}{selected}: " +
            $"give --replace-head {dataClasses}{keep}."]);
    }

    private static void SetHeadUnits(ModelOptions model, int classes)
    {
        var head = model.Layers.FindLastIndex(l => LayerTypes.Canonical(l.Type) == LayerTypes.Dense);
        if (head < 0) throw new ConfigurationException("--replace-head", [$"Model:Layers has no Dense layer to replace."]);
        model.Layers[head].Units = classes;
    }

    private static void Report(DistTrain.Cluster.Hosting.TrainingResult tuned, DistTrain.Cluster.Hosting.TrainingResult scratch,
        string checkpoint, IReadOnlyList<string> frozen, string runDirectory)
    {
        var table = new Table().AddColumns("run", "epochs", "train s", "test accuracy");
        void Row(string name, DistTrain.Cluster.Hosting.TrainingResult r) => table.AddLiteralRow(name,
            r.Epochs.Count.ToString(CultureInfo.InvariantCulture),
            r.Epochs.Sum(e => e.TrainSeconds).ToString("F1", CultureInfo.InvariantCulture),
            $"{100 * r.FinalEpoch.TestAccuracy:F2}%");
        Row($"fine-tuned ({(frozen.Count == 0 ? "nothing frozen" : "frozen " + string.Join(",", frozen))})", tuned);
        Row("from scratch", scratch);
        AnsiConsole.Write(table);
        var difference = 100 * (tuned.FinalEpoch.TestAccuracy - scratch.FinalEpoch.TestAccuracy);
        CliConsole.Out.WriteLiteralLine($"Fine-tuning from {Path.GetFileName(checkpoint)}: {difference:+0.00;-0.00} points of test accuracy against training from scratch with the same budget.", new Style(decoration: Decoration.Bold));
        RunOutputs.Writing(runDirectory, $"the comparison ({RunFiles.Comparison}; the fine-tuned run's outputs were written)",
            () => File.WriteAllText(Path.Combine(runDirectory, RunFiles.Comparison), JsonSerializer.Serialize(new
            {
                pretrained = checkpoint,
                frozen,
                fine_tuned_test_accuracy = tuned.FinalEpoch.TestAccuracy,
                scratch_test_accuracy = scratch.FinalEpoch.TestAccuracy,
                epochs = tuned.Epochs.Count,
            }, new JsonSerializerOptions { WriteIndented = true })));
    }
}
