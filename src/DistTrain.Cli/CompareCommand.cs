using System.CommandLine;
using System.Globalization;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary>
/// <c>disttrain compare</c>: puts finished runs side by side: final test accuracy, the time each took to reach a target
/// accuracy, and its training speed, printed as a table and drawn as test accuracy against time (a PNG, one line per
/// run), as when comparing training modes, compression settings or augmentation.
/// </summary>
internal static class CompareCommand
{
    public static Command Create()
    {
        var runs = new Argument<string[]>("runs") { Description = "Run folders (each with the summary.json a training run wrote).", Arity = ArgumentArity.OneOrMore };
        var labels = new Option<string[]>("--label") { Description = "A name for each run, in order (default: the folder's name).", HelpName = "NAME", AllowMultipleArgumentsPerToken = true };
        var target = CliOptions.Fraction("--target", "The test accuracy to time each run to.", "a test accuracy as a fraction in (0, 1], e.g. 0.88", 0.88);
        var plot = CliOptions.NotEmptyPath(new Option<string>("--plot") { Description = "Where to draw test accuracy against time (PNG).", DefaultValueFactory = _ => "accuracy-vs-time.png", HelpName = "FILE" });
        var command = new Command("compare", "Compare finished runs: final accuracy, time to a target accuracy, samples/s; drawn as accuracy against time (PNG).")
        {
            runs, labels, target, plot,
        };
        command.SetAction(parse =>
        {
            var folders = parse.GetValue(runs)!;
            var names = parse.GetValue(labels) ?? [];
            if (names.Length > 0 && names.Length != folders.Length)
            {
                CliConsole.Fail("error", $"{names.Length} --label value(s) for {folders.Length} run(s): give one label per run, in the runs' order, or none.");
                return 1;
            }
            var goal = parse.GetValue(target);
            var plotPath = Path.GetFullPath(parse.GetValue(plot)!);
            if ((CliOptions.OverwritesInput("--plot", plotPath, [.. folders.Select(f => Path.Combine(f, Core.Checkpoints.RunFiles.Summary))])
                 ?? CliOptions.BadPngOutput("--plot", plotPath, folders)) is { } overwrite)
            {
                CliConsole.Fail("error", overwrite);
                return 2;
            }
            // A run folder without summary.json (a run interrupted before it wrote one, as a second Ctrl-C leaves it, matched
            // by runs/*), or with one of no finished epoch (a run cancelled in its first), is skipped with a warning while
            // another run is left; alone, it is refused below as before.
            var finished = Enumerable.Range(0, folders.Length).Where(i => !Unfinished(folders[i])).ToList();
            if (finished.Count > 0)
                foreach (var i in Enumerable.Range(0, folders.Length).Except(finished))
                    CliConsole.Fail("warning", $"{folders[i]} holds no finished run (no summary.json, or one with no finished epoch: an interrupted run?): skipped. Leave it out of the runs to compare.");
            else finished = [.. Enumerable.Range(0, folders.Length)];
            List<RunHistory> histories;
            try
            {
                histories = finished.Select(i => RunHistory.Read(folders[i], names.Length > 0 ? names[i] : null)).ToList();
            }
            catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
            {
                CliConsole.Fail("error", e.Message);
                return 2;
            }
            try
            {
                AccuracyTimePlot.Write(histories, goal, plotPath);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                CliConsole.Fail("error", $"{plotPath}: the plot could not be written ({e.Message}). Pass --plot with a writable path.");
                return 2;
            }
            Print(histories, goal, plotPath);
            return 0;
        });
        return command;
    }

    /// <summary>
    /// True for a folder without the summary.json a finished run writes, or whose summary lists no epoch (a run cancelled
    /// during its first epoch): nothing of it can be compared. A summary that cannot be read counts as finished, so that
    /// <see cref="RunHistory.Read"/> reports what is wrong with it.
    /// </summary>
    private static bool Unfinished(string folder)
    {
        if (!Directory.Exists(folder)) return false;
        var summary = Path.Combine(folder, Core.Checkpoints.RunFiles.Summary);
        if (!File.Exists(summary)) return true;
        try
        {
            using var document = System.Text.Json.JsonDocument.Parse(File.ReadAllText(summary));
            return document.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object
                   && document.RootElement.TryGetProperty("epochs", out var epochs) && epochs.ValueKind == System.Text.Json.JsonValueKind.Array
                   && epochs.GetArrayLength() == 0;
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static void Print(IReadOnlyList<RunHistory> histories, double target, string plotPath)
    {
        var inv = CultureInfo.InvariantCulture;
        var table = new Table().AddColumns("run", "epochs", "final test accuracy", "best", $"seconds to {100 * target:0.##}%", "seconds in all", "samples/s");
        foreach (var run in histories)
            table.AddRow(Markup.Escape(run.Label),
                run.Resumed ? $"{run.Epochs[0].Epoch}-{run.Epochs[^1].Epoch} (resumed)" : run.Epochs.Count.ToString(inv),
                (100 * run.FinalAccuracy).ToString("F2", inv) + "%" + (run.KeptEarlierEpoch ? $" (epoch {run.KeptEpoch} kept)" : ""),
                (100 * run.Epochs.Max(e => e.TestAccuracy)).ToString("F2", inv) + "%",
                run.SecondsTo(target)?.ToString("F1", inv) ?? "not reached", run.Epochs[^1].Seconds.ToString("F1", inv),
                run.SamplesPerSecond.ToString("N0", inv));
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLineInterpolated($"Seconds are training plus evaluation, summed over epochs. Plot: {plotPath}");
        if (histories.Any(run => run.KeptEarlierEpoch))
            AnsiConsole.WriteLine("\"epoch k kept\": early stopping kept that epoch's weights, so the final test accuracy is that epoch's, the accuracy of the saved model.");
        if (histories.Any(run => run.Resumed))
            AnsiConsole.WriteLine("A run resumed from a checkpoint holds only the epochs it trained: its seconds start at the resume, and the epochs " +
                "before it are in the run folder of the run that wrote the checkpoint.");
    }
}
