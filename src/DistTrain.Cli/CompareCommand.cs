using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using DistTrain.Core;

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
        var runs = new Argument<string[]>("runs") { Description = "Run folders (each with the summary.json a training run wrote, or the epochs.csv of a run stopped before it).", Arity = ArgumentArity.OneOrMore };
        var labels = new Option<string[]>("--label") { Description = "A name for each run, in order (default: the folder's name).", HelpName = "NAME", AllowMultipleArgumentsPerToken = true };
        var target = CliOptions.Fraction("--target", "The test accuracy to time each run to.", "a test accuracy as a fraction in (0, 1], e.g. 0.88", 0.88);
        var plot = CliOptions.NotEmptyPath(new Option<string>("--plot") { Description = "Where to draw test accuracy against time (PNG).", DefaultValueFactory = _ => "accuracy-vs-time.png", HelpName = "FILE" });
        var command = new Command("compare", "Compare finished runs: final accuracy, time to a target accuracy, samples/s; drawn as accuracy against time (PNG).")
        {
            runs, labels, target, plot,
        };
        command.SetAction(CliConsole.Cancellable((parse, cancellationToken) =>
        {
            var folders = parse.GetValue(runs)!;
            var names = parse.GetValue(labels) ?? [];
            if (names.Length > 0 && names.Length != folders.Length)
            {
                CliConsole.Fail("error", $"{Counts.Of(names.Length, "--label value")} for {Counts.Of(folders.Length, "run")}: give one label per run, in the runs' order, or none.");
                return 1;
            }
            var goal = parse.GetValue(target);
            var plotPath = Path.GetFullPath(parse.GetValue(plot)!);
            // Each folder read once. One that holds no finished epoch (no summary.json nor epochs.csv, as a second Ctrl-C in the
            // first epoch leaves a run folder that runs/* matches, or a summary of no finished epoch) is skipped with a warning
            // while another run is left; alone, it is refused below with the others' problems. A run killed after an epoch has
            // its epochs.csv, which RunHistory reads: it is compared, marked unfinished.
            var read = new List<(string Folder, RunHistory? History, Exception? Problem)>();
            for (var i = 0; i < folders.Length; i++)
            {
                try
                {
                    read.Add((folders[i], RunHistory.Read(folders[i], names.Length > 0 ? names[i] : null), null));
                }
                catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
                {
                    read.Add((folders[i], null, e));
                }
            }
            var finished = read.Where(r => r.Problem is not UnfinishedRunException).ToList();
            if (finished.Count > 0)
                foreach (var (_, _, unfinished) in read.Where(r => r.Problem is UnfinishedRunException))
                    CliConsole.Fail("warning", $"{((UnfinishedRunException)unfinished!).Reason}: skipped. Leave it out of the runs to compare.");
            else finished = read;
            if (finished.FirstOrDefault(r => r.Problem is not null).Problem is { } problem)
            {
                CliConsole.Fail("error", problem.Message);
                return 2;
            }
            // The runs are checked first (a folder without summary.json is named as such, not by where the plot would go), then
            // the plot's path: a PNG may go into a run folder (cd runs/<time>; disttrain compare .) but not over one of its files.
            if ((CliOptions.BadPngOutput("--plot", plotPath) ?? CliOptions.OverwritesRunFile("--plot", plotPath, "compares", folders)) is { } badPlot)
            {
                CliConsole.Fail("error", badPlot);
                return 2;
            }
            var histories = finished.Select(r => r.History!).ToList();
            cancellationToken.ThrowIfCancellationRequested(); // no plot, no table after a Ctrl-C
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
        }));
        return command;
    }

    /// <summary>The table's epochs: their count, or a resumed run's first and last ("4-6"; the one epoch, "6", for a run resumed
    /// within its last epoch or one that only scored it); "(resumed)", "(stopped)", "(unfinished)" (a run read from its
    /// epochs.csv, stopped before its summary) or more than one after it.</summary>
    internal static string EpochsColumn(RunHistory run)
    {
        int first = run.Epochs[0].Epoch, last = run.Epochs[^1].Epoch;
        var epochs = !run.Resumed ? run.Epochs.Count.ToString(CultureInfo.InvariantCulture)
            : first == last ? last.ToString(CultureInfo.InvariantCulture) : $"{first}-{last}";
        var marks = new List<string>();
        if (run.Resumed) marks.Add("resumed");
        if (run.Stopped is not null) marks.Add("stopped");
        if (run.FromEpochsCsv) marks.Add("unfinished");
        return marks.Count == 0 ? epochs : $"{epochs} ({string.Join(", ", marks)})";
    }

    private static void Print(IReadOnlyList<RunHistory> histories, double target, string plotPath)
    {
        var inv = CultureInfo.InvariantCulture;
        var table = new Table().AddColumns("run", "epochs", "final test accuracy", "best", $"seconds to {100 * target:0.##}%", "seconds in all", "samples/s");
        foreach (var run in histories)
            table.AddLiteralRow(run.Label,
                EpochsColumn(run),
                (100 * run.FinalAccuracy).ToString("F2", inv) + "%" + (run.KeptEarlierEpoch ? $" (epoch {run.KeptEpoch} kept)" : ""),
                (100 * run.Epochs.Max(e => e.TestAccuracy)).ToString("F2", inv) + "%",
                run.SecondsTo(target)?.ToString("F1", inv) ?? "not reached", run.Epochs[^1].Seconds.ToString("F1", inv),
                run.SamplesPerSecond?.ToString("N0", inv) ?? "-");
        AnsiConsole.Write(table);
        CliConsole.Out.WriteLiteralLine($"Seconds are training plus evaluation, summed over epochs. Plot: {plotPath}");
        if (histories.Any(run => run.KeptEarlierEpoch))
            AnsiConsole.WriteLine("\"epoch k kept\": early stopping kept that epoch's weights, so the final test accuracy is that epoch's, the accuracy of the saved model.");
        foreach (var run in histories.Where(run => run.Stopped is not null))
            CliConsole.Out.WriteLiteralLine($"{run.Label} stopped before its end ({run.Stopped}): its figures are those of the epochs it finished.");
        foreach (var run in histories.Where(run => run.FromEpochsCsv))
            CliConsole.Out.WriteLiteralLine($"{run.Label} is unfinished: it was stopped before it wrote its summary.json (killed, a second Ctrl-C), so its figures are those of the epochs in its epochs.csv, and its samples/s is each epoch's weighted by its training seconds.");
        foreach (var run in histories.Where(run => run.TrainedNothing))
            CliConsole.Out.WriteLiteralLine($"{run.Label} trained nothing: it was resumed from the checkpoint of a finished run and only scored epoch {run.Epochs[^1].Epoch}'s weights, so its seconds are that scoring's and it has no samples/s.");
        if (histories.Any(run => run.Resumed && !run.TrainedNothing))
            AnsiConsole.WriteLine("A run resumed from a checkpoint holds only the epochs it trained: its seconds start at the resume, and the epochs " +
                "before it are in the run folder of the run that wrote the checkpoint.");
    }
}
