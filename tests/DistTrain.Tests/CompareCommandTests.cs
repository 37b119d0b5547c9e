using DistTrain.Cli;

namespace DistTrain.Tests;

/// <summary><c>disttrain compare</c> reads what a run wrote: its epochs' test accuracies and times, the time to a target
/// accuracy, the table and the plot, and refuses what is not a run.</summary>
public sealed class CompareCommandTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-compare-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task A_runs_history_is_its_epochs_accuracies_and_cumulative_seconds_and_the_command_draws_and_prints_them()
    {
        var config = Path.Combine(_directory, "config.json");
        File.WriteAllText(config, $$"""
            {
              "Data": { "Directory": "{{TestData.SubsetDirectory}}" },
              "Model": { "InputSize": 784, "Layers": [{ "Type": "Dense", "Units": 32 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 }] },
              "Optimizer": { "LearningRate": 0.05, "Momentum": 0.9 },
              "Training": { "Workers": 2, "Epochs": 4, "BatchSizePerWorker": 32, "EvaluationBatchSize": 100 },
              "Output": { "Directory": "{{Path.Combine(_directory, "runs")}}" }
            }
            """);
        var (exit, result, runDirectory) = await TrainCommand.RunJobAsync(config, [], null, CancellationToken.None).WithTestTimeout();
        Assert.Equal(0, exit);

        var history = RunHistory.Read(runDirectory!);
        Assert.Equal(Path.GetFileName(runDirectory), history.Label);
        Assert.Equal(result!.Epochs.Select(e => e.Epoch), history.Epochs.Select(e => e.Epoch));
        Assert.Equal(result.Epochs.Select(e => e.TestAccuracy), history.Epochs.Select(e => e.TestAccuracy));
        var seconds = 0.0;
        for (var i = 0; i < result.Epochs.Count; i++)
        {
            seconds += result.Epochs[i].TrainSeconds + result.Epochs[i].EvaluationSeconds;
            Assert.Equal(seconds, history.Epochs[i].Seconds, precision: 9);
        }
        var second = result.Epochs[1].TestAccuracy; // a target first met at epoch 2 or earlier
        var firstReaching = result.Epochs.First(e => e.TestAccuracy >= second);
        Assert.Equal(history.Epochs[firstReaching.Epoch - 1].Seconds, history.SecondsTo(second));
        Assert.Null(history.SecondsTo(Math.Min(1, result.Epochs.Max(e => e.TestAccuracy) + 1e-6)));
        var samples = result.Epochs.Sum(e => (double)(e.SamplesTrainedThisRun ?? e.TrainSamples));
        Assert.Equal(samples / result.Epochs.Sum(e => e.TrainSeconds - e.PausedSeconds), history.SamplesPerSecond!.Value, precision: 6);

        var plot = Path.Combine(_directory, "compare.png");
        var (code, output, error) = CliProcess.Run(["compare", runDirectory!, runDirectory!, "--label", "first", "second", "--target", "0.5", "--plot", plot]);
        Assert.True(code == 0, error);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(plot)[..4]);
        Assert.Contains("first", output);
        Assert.Contains("second", output);
        Assert.Contains($"{100 * history.FinalAccuracy:F2}%", output);
        Assert.DoesNotContain("resumed", output);

        // A run resumed at epoch 3 holds epochs 3 to 6 only: the table says so instead of "4 epochs".
        var resumed = Path.Combine(_directory, "resumed");
        Directory.CreateDirectory(resumed);
        var summary = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(runDirectory!, "summary.json")))!;
        foreach (var epoch in summary["epochs"]!.AsArray()) epoch!["Epoch"] = epoch["Epoch"]!.GetValue<int>() + 2;
        File.WriteAllText(Path.Combine(resumed, "summary.json"), summary.ToJsonString());
        var (resumedCode, resumedOutput, resumedError) = CliProcess.Run(["compare", runDirectory!, resumed, "--plot", plot]);
        Assert.True(resumedCode == 0, resumedError);
        Assert.Contains("3-6 (resumed)", resumedOutput);
        Assert.Contains("A run resumed from a checkpoint holds only the epochs it trained", resumedOutput);

        // Early stopping kept epoch 2's weights: the final accuracy is that epoch's, the saved model's, not the last epoch's.
        var stopped = Path.Combine(_directory, "stopped");
        Directory.CreateDirectory(stopped);
        summary = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(runDirectory!, "summary.json")))!;
        summary["best_epoch"] = 2;
        File.WriteAllText(Path.Combine(stopped, "summary.json"), summary.ToJsonString());
        var kept = RunHistory.Read(stopped);
        Assert.Equal(result.Epochs[1].TestAccuracy, kept.FinalAccuracy);
        Assert.True(kept.KeptEarlierEpoch);
        Assert.False(history.KeptEarlierEpoch);
        var (stoppedCode, stoppedOutput, stoppedError) = CliProcess.Run(["compare", stopped, "--plot", plot]);
        Assert.True(stoppedCode == 0, stoppedError);
        Assert.Contains($"{100 * result.Epochs[1].TestAccuracy:F2}%", stoppedOutput);
        Assert.Contains("early stopping kept that epoch's weights", stoppedOutput);
        // Resumed after its best epoch (1, trained before the resume and so not among its epochs 3 to 6): the kept accuracy
        // comes from best_epoch_test_accuracy.
        summary = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(resumed, "summary.json")))!;
        summary["best_epoch"] = 1;
        summary["best_epoch_test_accuracy"] = 0.5;
        File.WriteAllText(Path.Combine(resumed, "summary.json"), summary.ToJsonString());
        var keptBefore = RunHistory.Read(resumed);
        Assert.Equal((0.5, true), (keptBefore.FinalAccuracy, keptBefore.KeptEarlierEpoch));
        // runs/* after a second Ctrl-C: the empty run folder it left is skipped with a warning; the finished runs are compared.
        var interrupted = Directory.CreateDirectory(Path.Combine(_directory, "interrupted")).FullName;
        var (skipCode, skipOutput, skipError) = CliProcess.Run(["compare", runDirectory!, interrupted, stopped, "--label", "a", "b", "c", "--plot", plot]);
        Assert.True(skipCode == 0, skipError);
        Assert.Equal($"warning: {interrupted}: no summary.json there (a run stopped before it wrote one, or not a run folder): " +
            "skipped. Leave it out of the runs to compare.", skipError.Trim());
        Assert.Contains("│ a ", skipOutput);
        Assert.Contains("│ c ", skipOutput);
        Assert.DoesNotContain("│ b ", skipOutput);
        // A run cancelled during its first epoch wrote a summary with no epoch: skipped the same way beside finished runs.
        var cancelled = Directory.CreateDirectory(Path.Combine(_directory, "cancelled")).FullName;
        var noEpoch = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(runDirectory!, "summary.json")))!;
        noEpoch["epochs"] = new System.Text.Json.Nodes.JsonArray();
        File.WriteAllText(Path.Combine(cancelled, "summary.json"), noEpoch.ToJsonString());
        var (cancelledCode, cancelledOutput, cancelledError) = CliProcess.Run(["compare", cancelled, stopped, "--plot", plot]);
        Assert.True(cancelledCode == 0, cancelledError);
        Assert.Contains($"warning: {Path.Combine(cancelled, "summary.json")}: the run finished no epoch, so it has no test accuracy to compare: skipped.", cancelledError);
        Assert.Contains("early stopping kept that epoch's weights", cancelledOutput);
        // Alone, it is still refused, naming why.
        var (aloneCode, _, aloneError) = CliProcess.Run(["compare", cancelled, "--plot", plot]);
        Assert.Equal(2, aloneCode);
        Assert.Contains("the run finished no epoch", aloneError);
        // A run that diverged in its first epoch says so, from its summary's "stopped" (it was "holds no finished run ...: an
        // interrupted run?").
        noEpoch["stopped"] = "training diverged: at epoch 1, step 11 (weights version 10), a NaN or infinite loss.";
        File.WriteAllText(Path.Combine(cancelled, "summary.json"), noEpoch.ToJsonString());
        (cancelledCode, _, cancelledError) = CliProcess.Run(["compare", cancelled, stopped, "--plot", plot]);
        Assert.True(cancelledCode == 0, cancelledError);
        Assert.Contains($"warning: {Path.Combine(cancelled, "summary.json")}: the run finished no epoch (it stopped: training diverged: at epoch 1, step 11 " +
            "(weights version 10), a NaN or infinite loss), so it has no test accuracy to compare: skipped. Leave it out of the runs to compare.", cancelledError);

        // The run's model file stands for its folder.
        Assert.Equal(history.Epochs, RunHistory.Read(Path.Combine(runDirectory!, "model.safetensors")).Epochs);
    }

    /// <summary>
    /// A run that diverged (as <c>train</c> leaves it: summary.json marked stopped, its finished epochs, no model.safetensors)
    /// is compared on the epochs it finished, and the table marks it as stopped and says why, instead of showing it as a
    /// finished run.
    /// </summary>
    [Fact]
    public void A_diverged_run_is_compared_on_its_finished_epochs_and_marked_as_stopped()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 5);
        var report = new RunReport(DistTrain.Cluster.Hosting.NullTrainingObserver.Instance);
        for (var epoch = 1; epoch <= 3; epoch++)
        {
            report.EpochStarted(epoch, 4, 350);
            for (var step = 0; step < (epoch < 3 ? 4 : 1); step++) report.StepApplied(epoch, step, 4 * (epoch - 1) + step + 1, 100, 0.5, 0.05, default);
            if (epoch < 3) report.EpochCompleted(new DistTrain.Cluster.Hosting.EpochSummary(epoch, 4 * epoch, 0.5, 0.6, 0.6 + epoch / 10.0, 100, 350, 2, 0.5));
        }
        var run = Directory.CreateDirectory(Path.Combine(_directory, "diverged")).FullName;
        var layout = Core.Models.ModelFactory.Build(options.Model).Layout;
        RunOutputs.KeepDiverged(run, options, data.Normalizer, Core.Data.DataMetadata.Of(data, options.Data),
            new DistTrain.Cluster.Actors.TrainingDivergedException("diverged", new float[layout.TotalLength], lastGoodVersion: 9), report);

        var history = RunHistory.Read(run);
        Assert.Equal("diverged at epoch 3, step 2 of 4", history.Stopped);
        Assert.Equal([1, 2], history.Epochs.Select(e => e.Epoch));
        Assert.Equal(0.8, history.FinalAccuracy, 12);
        Assert.Equal("2 (stopped)", CompareCommand.EpochsColumn(history));
        Assert.Equal("2-3 (resumed, stopped)", CompareCommand.EpochsColumn(history with { Epochs = [(2, 0.7, 2.5), (3, 0.8, 5)] }));
        Assert.Equal("2", CompareCommand.EpochsColumn(history with { Stopped = null }));

        var (code, output, error) = CliProcess.Run(["compare", run, "--plot", Path.Combine(_directory, "compare.png")]);
        Assert.True(code == 0, error);
        Assert.Contains("2 (stopped)", output);
        Assert.Contains("80.00%", output);
        Assert.Contains("diverged stopped before its end (diverged at epoch 3, step 2 of 4): its figures are those of the epochs it finished.", output);
    }

    /// <summary>
    /// The runs are checked before the plot's path: <c>cd /tmp/x; disttrain compare /tmp/x</c> (no summary.json there) was
    /// refused for its default plot, "inside /tmp/x, which this command reads", instead of for the missing summary. And a plot
    /// in a run folder (<c>cd runs/&lt;time&gt;; disttrain compare .</c>) is drawn, as it changes none of the run's files;
    /// only a path that would replace one of them (its curves.png) is refused.
    /// </summary>
    [Fact]
    public void The_runs_are_checked_before_the_plot_and_a_plot_may_go_into_a_run_folder_but_not_over_its_files()
    {
        var empty = Directory.CreateDirectory(Path.Combine(_directory, "empty")).FullName;
        var (code, _, error) = CliProcess.Run(["compare", empty, "--plot", Path.Combine(empty, "accuracy-vs-time.png")]);
        Assert.Equal(2, code);
        Assert.Equal($"error: {empty}: no summary.json there. Pass the folder a training run wrote (it holds model.safetensors and summary.json).",
            error.ReplaceLineEndings(" ").Replace("  ", " ", StringComparison.Ordinal).Trim());

        var run = Directory.CreateDirectory(Path.Combine(_directory, "run")).FullName;
        File.WriteAllText(Path.Combine(run, "summary.json"),
            """{ "epochs": [{ "Epoch": 1, "TrainSeconds": 1.5, "EvaluationSeconds": 0.5, "TrainSamples": 300, "TestAccuracy": 0.75 }] }""");
        var curves = Path.Combine(run, "curves.png");
        File.WriteAllText(curves, "the run's curves");
        var plot = Path.Combine(run, "accuracy-vs-time.png");
        (code, var output, error) = CliProcess.Run(["compare", run, "--plot", plot]);
        Assert.True(code == 0, error);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(plot)[..4]);
        Assert.Contains("75.00%", output);
        // Drawn again over the earlier plot, which is not one of the run's files.
        (code, _, error) = CliProcess.Run(["compare", run, "--plot", plot]);
        Assert.True(code == 0, error);

        (code, _, error) = CliProcess.Run(["compare", run, "--plot", curves]);
        Assert.Equal(2, code);
        Assert.Equal($"error: --plot {curves} is the curves.png of the run in {run}, which this command compares: writing it would replace that file. " +
            "Give --plot another path (another name in that folder will do).", error.ReplaceLineEndings(" ").Replace("  ", " ", StringComparison.Ordinal).Trim());
        Assert.Equal("the run's curves", File.ReadAllText(curves));
    }

    /// <summary>
    /// The folder of a run killed before its end holds only the epochs.csv written after each epoch (by RunReport, as a
    /// run writes it): compare reads its finished epochs from that file (given as the folder or as the file) and marks the
    /// run unfinished in the table and under it. It was named as "stopped before it could write its summary" and skipped.
    /// A killed run's epochs.csv of no epoch is still an unfinished run that is skipped, or refused alone.
    /// </summary>
    [Fact]
    public void A_killed_runs_folder_with_only_epochs_csv_is_compared_on_its_epochs_and_marked_unfinished()
    {
        var killed = Directory.CreateDirectory(Path.Combine(_directory, "killed")).FullName;
        var report = new RunReport(DistTrain.Cluster.Hosting.NullTrainingObserver.Instance, killed);
        report.EpochStarted(1, 4, 1000);
        report.EpochCompleted(new DistTrain.Cluster.Hosting.EpochSummary(1, 4, 0.9, 0.8, 0.6, 100, 1000, TrainSeconds: 2.0, EvaluationSeconds: 0.5));
        report.EpochStarted(2, 4, 1800);
        report.EpochCompleted(new DistTrain.Cluster.Hosting.EpochSummary(2, 8, 0.7, 0.6, 0.75, 100, 1800, TrainSeconds: 3.0, EvaluationSeconds: 0.5));
        // The per-epoch write runs on its own thread: wait until both rows are on disk, as a kill would find them.
        var csv = Path.Combine(killed, Core.Checkpoints.RunFiles.Epochs);
        for (var i = 0; i < 200 && !(File.Exists(csv) && File.ReadAllText(csv) == report.EpochsCsv()); i++) Thread.Sleep(50);
        Assert.Equal(report.EpochsCsv(), File.ReadAllText(csv));
        Assert.False(File.Exists(Path.Combine(killed, Core.Checkpoints.RunFiles.Summary)));

        var history = RunHistory.Read(killed);
        Assert.True(history.FromEpochsCsv);
        Assert.Null(history.Stopped);
        Assert.Equal("killed", history.Label);
        Assert.Equal([(1, 0.6, 2.5), (2, 0.75, 6.0)], history.Epochs);
        Assert.Equal(0.75, history.FinalAccuracy);
        Assert.Equal((1000 + 1800) / 5.0, history.SamplesPerSecond!.Value, precision: 9); // 500/s for 2 s and 600/s for 3 s
        Assert.Equal(6.0, history.SecondsTo(0.7));
        Assert.Equal("2 (unfinished)", CompareCommand.EpochsColumn(history));
        Assert.Equal(history.Epochs, RunHistory.Read(csv).Epochs); // the file itself stands for its folder

        var plot = Path.Combine(_directory, "compare.png");
        var (code, output, error) = CliProcess.Run(["compare", killed, "--target", "0.7", "--plot", plot]);
        Assert.True(code == 0, error);
        Assert.Equal("", error.Trim());
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(plot)[..4]);
        var row = output.Split('\n').Single(line => line.Contains("│ killed ", StringComparison.Ordinal));
        Assert.Equal(["killed", "2 (unfinished)", "75.00%", "75.00%", "6.0", "6.0", "560"],
            row.Split('│', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.Contains("killed is unfinished: it was stopped before it wrote its summary.json (killed, a second Ctrl-C), so its figures are those of the epochs in its epochs.csv",
            output.ReplaceLineEndings(" ").Replace("  ", " ", StringComparison.Ordinal));

        // Killed in its first epoch: the file lists no epoch, so there is nothing to compare.
        var first = Directory.CreateDirectory(Path.Combine(_directory, "first")).FullName;
        File.WriteAllText(Path.Combine(first, Core.Checkpoints.RunFiles.Epochs), new RunReport(DistTrain.Cluster.Hosting.NullTrainingObserver.Instance).EpochsCsv());
        var error2 = Assert.Throws<UnfinishedRunException>(() => RunHistory.Read(first));
        Assert.Equal($"{Path.Combine(first, Core.Checkpoints.RunFiles.Epochs)}: no summary.json beside it, and the run finished no epoch (its epochs.csv lists none), " +
            "so it has no test accuracy to compare.", error2.Message);
        (code, output, error) = CliProcess.Run(["compare", first, killed, "--plot", plot]);
        Assert.True(code == 0, error);
        Assert.StartsWith($"warning: {Path.Combine(first, Core.Checkpoints.RunFiles.Epochs)}: no summary.json beside it, and the run finished no epoch", error.Trim());
        Assert.Contains("2 (unfinished)", output);

        // An empty epochs.csv (a run that wrote none, or a write cut short by a power loss) is such a run too, not a failure.
        File.WriteAllText(Path.Combine(first, Core.Checkpoints.RunFiles.Epochs), "");
        Assert.Equal($"{Path.Combine(first, Core.Checkpoints.RunFiles.Epochs)}: no summary.json beside it, and its epochs.csv is empty, so it has no test " +
            "accuracy to compare.", Assert.Throws<UnfinishedRunException>(() => RunHistory.Read(first)).Message);
    }

    /// <summary>
    /// A run resumed from a mid-epoch checkpoint: its summary.json holds the whole epoch's TrainSamples (60,000) but only
    /// the training seconds of this run, so compare divided the one by the other and showed several times the samples/s
    /// train printed (96,177 for 28,468). Its samples/s is now that of the samples this run trained over its training
    /// seconds outside pauses: train's figure for a run of one epoch, and the same from the summary and from epochs.csv.
    /// A summary written before it held SamplesTrainedThisRun is read from the epochs' SamplesPerSecond, and one without
    /// that either from TrainSamples, as before.
    /// </summary>
    [Fact]
    public void A_run_resumed_within_an_epoch_is_compared_at_the_samples_per_second_train_printed()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 3);
        var layout = Core.Models.ModelFactory.Build(options.Model).Layout;
        // Epoch 2 resumed after 45,000 of its 60,000 samples: 15,000 in 1.5 s, 10,000/s. Epoch 3: 60,000 in 4 s of which 1 s
        // paused below Cluster:MinWorkers, 20,000/s.
        var resumedEpoch = new DistTrain.Cluster.Hosting.EpochSummary(2, 300, 0.4, 0.45, 0.85, 10000, 60000, TrainSeconds: 1.5, EvaluationSeconds: 0.5,
            SamplesTrainedThisRun: 15000);
        var pausedEpoch = new DistTrain.Cluster.Hosting.EpochSummary(3, 470, 0.35, 0.4, 0.86, 10000, 60000, TrainSeconds: 4.0, EvaluationSeconds: 0.5,
            PausedSeconds: 1.0);
        Assert.Equal((10000, 20000), (resumedEpoch.SamplesPerSecond, pausedEpoch.SamplesPerSecond)); // as train prints them
        string Run(string name, params DistTrain.Cluster.Hosting.EpochSummary[] epochs)
        {
            var folder = Directory.CreateDirectory(Path.Combine(_directory, name)).FullName;
            RunSummaryFile.Write(Path.Combine(folder, Core.Checkpoints.RunFiles.Summary), options, data.Normalizer,
                new DistTrain.Cluster.Hosting.TrainingResult(new Core.Tensors.ParameterVector(layout), epochs[^1].Version, epochs));
            return folder;
        }

        var resumed = Run("resumed", resumedEpoch);
        Assert.Equal(10000, RunHistory.Read(resumed).SamplesPerSecond!.Value, precision: 6); // was 40,000: 60,000 in 1.5 s
        var both = Run("both", resumedEpoch, pausedEpoch);
        Assert.Equal(75000 / 4.5, RunHistory.Read(both).SamplesPerSecond!.Value, precision: 6); // 15,000 + 60,000 in 1.5 + 3 s

        var plot = Path.Combine(_directory, "compare.png");
        var (code, output, error) = CliProcess.Run(["compare", resumed, "--plot", plot]);
        Assert.True(code == 0, error);
        var row = output.Split('\n').Single(line => line.Contains("│ resumed ", StringComparison.Ordinal));
        Assert.Equal(["resumed", "2 (resumed)", "85.00%", "85.00%", "not reached", "2.0", "10,000"],
            row.Split('│', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.Contains("A run resumed from a checkpoint holds only the epochs it trained", output);

        // The same epochs in the epochs.csv of a run killed before its summary: the same figure.
        var killed = Directory.CreateDirectory(Path.Combine(_directory, "killed")).FullName;
        var report = new RunReport(DistTrain.Cluster.Hosting.NullTrainingObserver.Instance);
        report.EpochCompleted(resumedEpoch);
        report.EpochCompleted(pausedEpoch);
        var csv = Path.Combine(killed, Core.Checkpoints.RunFiles.Epochs);
        File.WriteAllText(csv, report.EpochsCsv());
        Assert.Equal(75000 / 4.5, RunHistory.Read(killed).SamplesPerSecond!.Value, precision: 6);
        // An epochs.csv written before it had paused_seconds: each epoch's samples/s weighted by its training seconds, which
        // is exact for the epoch resumed mid-way (its samples/s counts only this run's samples), not for the paused one.
        File.WriteAllLines(csv, File.ReadAllLines(csv).Select(line => line[..line.LastIndexOf(',')]));
        Assert.Equal((10000 * 1.5 + 20000 * 4.0) / 5.5, RunHistory.Read(killed).SamplesPerSecond!.Value, precision: 6);

        // Older summaries: without SamplesTrainedThisRun and PausedSeconds, each epoch's SamplesPerSecond weighted by its
        // training seconds; without SamplesPerSecond too, the epochs' TrainSamples over their training seconds.
        var summary = Path.Combine(both, Core.Checkpoints.RunFiles.Summary);
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(summary))!;
        foreach (var epoch in json["epochs"]!.AsArray())
        {
            epoch!.AsObject().Remove("SamplesTrainedThisRun");
            epoch.AsObject().Remove("PausedSeconds");
        }
        File.WriteAllText(summary, json.ToJsonString());
        Assert.Equal((10000 * 1.5 + 20000 * 4.0) / 5.5, RunHistory.Read(both).SamplesPerSecond!.Value, precision: 6);
        foreach (var epoch in json["epochs"]!.AsArray()) epoch!.AsObject().Remove("SamplesPerSecond");
        File.WriteAllText(summary, json.ToJsonString());
        Assert.Equal(120000 / 5.5, RunHistory.Read(both).SamplesPerSecond!.Value, precision: 6);

        // A value no run writes: more paused seconds than training seconds.
        File.WriteAllText(summary, """{ "epochs": [{ "Epoch": 1, "TrainSeconds": 1.5, "PausedSeconds": 2, "EvaluationSeconds": 0.5, "TrainSamples": 300, "TestAccuracy": 0.75 }] }""");
        Assert.Equal($"{summary}: epoch 1's PausedSeconds is 2, more than its TrainSeconds (1.5), which no run writes. Pass the summary.json a training run wrote, unedited.",
            Assert.Throws<InvalidDataException>(() => RunHistory.Read(both)).Message);
    }

    /// <summary>
    /// A resume from the checkpoint of a finished run trains nothing: it scores the last epoch's weights. compare showed it
    /// as "5-5 (resumed)" at 0 samples/s under a line saying it "holds only the epochs it trained"; now "5 (resumed)", a dash
    /// for its samples/s, and a line that says it trained nothing. A run resumed within its last epoch reads "6 (resumed)".
    /// </summary>
    [Fact]
    public void A_run_that_only_scored_a_finished_runs_checkpoint_shows_no_samples_per_second_and_says_it_trained_nothing()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 5);
        var layout = Core.Models.ModelFactory.Build(options.Model).Layout;
        var scored = Directory.CreateDirectory(Path.Combine(_directory, "scored")).FullName;
        // As the coordinator reports the epoch it only scores: no training loss, samples or seconds.
        var epoch = new DistTrain.Cluster.Hosting.EpochSummary(5, 470, double.NaN, 0.39, 0.8565, 10000, 0, 0, 0.5, SamplesTrainedThisRun: 0);
        RunSummaryFile.Write(Path.Combine(scored, Core.Checkpoints.RunFiles.Summary), options, data.Normalizer,
            new DistTrain.Cluster.Hosting.TrainingResult(new Core.Tensors.ParameterVector(layout), 470, [epoch]));

        var history = RunHistory.Read(scored);
        Assert.Null(history.SamplesPerSecond);
        Assert.Equal("5 (resumed)", CompareCommand.EpochsColumn(history));
        Assert.Equal("3 (resumed, stopped)", CompareCommand.EpochsColumn(history with { Epochs = [(3, 0.8, 5)], Stopped = "cancelled" }));
        Assert.Equal("5-6 (resumed)", CompareCommand.EpochsColumn(history with { Epochs = [(5, 0.8, 5), (6, 0.8, 9)] }));

        var (code, output, error) = CliProcess.Run(["compare", scored, "--plot", Path.Combine(_directory, "compare.png")]);
        Assert.True(code == 0, error);
        var row = output.Split('\n').Single(line => line.Contains("│ scored ", StringComparison.Ordinal));
        Assert.Equal(["scored", "5 (resumed)", "85.65%", "85.65%", "not reached", "0.5", "-"],
            row.Split('│', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        var text = output.ReplaceLineEndings(" ").Replace("  ", " ", StringComparison.Ordinal);
        Assert.Contains("scored trained nothing: it was resumed from the checkpoint of a finished run and only scored epoch 5's weights, " +
            "so its seconds are that scoring's and it has no samples/s.", text);
        Assert.DoesNotContain("holds only the epochs it trained", text);
    }

    [Fact]
    public void What_is_not_a_finished_run_is_refused_naming_the_file_and_the_fix()
    {
        var empty = Directory.CreateDirectory(Path.Combine(_directory, "empty")).FullName;
        var (code, _, error) = CliProcess.Run(["compare", empty]);
        Assert.Equal(2, code);
        Assert.Contains("no summary.json there", error);

        // A path that does not exist is named as such, not as a folder without summary.json.
        foreach (var missing in new[] { Path.Combine(_directory, "nonexistent"), Path.Combine(empty, "summary.json") })
        {
            (code, _, error) = CliProcess.Run(["compare", missing]);
            Assert.Equal(2, code);
            Assert.Equal($"error: {missing}: no such folder or file. Pass the folder a training run wrote (it holds model.safetensors and summary.json).",
                error.ReplaceLineEndings(" ").Replace("  ", " ", StringComparison.Ordinal).Trim());
        }

        var broken = Directory.CreateDirectory(Path.Combine(_directory, "broken")).FullName;
        File.WriteAllText(Path.Combine(broken, "summary.json"), """{ "epochs": [ { "Epoch": 1 } ] }""");
        (code, _, error) = CliProcess.Run(["compare", broken]);
        Assert.Equal(2, code);
        Assert.Contains("not a readable DistTrain run summary", error);

        // Values no run writes (an accuracy above 1, negative seconds) are refused, not shown as 500.00% or -2.9 s.
        File.WriteAllText(Path.Combine(broken, "summary.json"),
            """{ "epochs": [{ "Epoch": 6, "TrainSeconds": 1.5, "EvaluationSeconds": 0.1, "TrainSamples": 100, "TestAccuracy": 5.0 }] }""");
        Assert.Contains("epoch 6's TestAccuracy is 5, which no run writes (a fraction from 0 to 1)", Assert.Throws<InvalidDataException>(() => RunHistory.Read(broken)).Message);
        File.WriteAllText(Path.Combine(broken, "summary.json"),
            """{ "epochs": [{ "Epoch": 1, "TrainSeconds": -2.9, "EvaluationSeconds": 0.1, "TrainSamples": 100, "TestAccuracy": 0.5 }] }""");
        Assert.Contains("epoch 1's TrainSeconds is -2.9, which no run writes (a number of at least 0)", Assert.Throws<InvalidDataException>(() => RunHistory.Read(broken)).Message);

        File.WriteAllText(Path.Combine(broken, "summary.json"), """{ "epochs": [] }""");
        (code, _, error) = CliProcess.Run(["compare", broken]);
        Assert.Equal(2, code);
        Assert.Contains("the run finished no epoch", error);

        (code, _, error) = CliProcess.Run(["compare", broken, broken, "--label", "only-one"]);
        Assert.Equal(1, code);
        Assert.Contains("1 --label value for 2 runs: give one label per run", error);

        (code, _, error) = CliProcess.Run(["compare", broken, "--target", "88"]);
        Assert.Equal(1, code);
        Assert.Contains("--target '88' is not a fraction in (0, 1]", error);
    }

    /// <summary>
    /// A plot (compare's --plot, evaluate's --heatmap, inspect's figures) into a folder that does not exist was written only at the
    /// end, after the command's table, and failed there with .NET's "Could not find a part of the path". It is refused before any
    /// work now, naming the folder, as export's --onnx is (InspectFiguresTests runs inspect so).
    /// </summary>
    [Fact]
    public void A_plot_path_in_a_folder_that_does_not_exist_is_refused_before_any_work()
    {
        var missing = Path.Combine(_directory, "no-such-folder");
        var plot = Path.Combine(missing, "p.png");
        Assert.Equal($"--plot {plot}: the folder {missing} does not exist. Create it or choose another path.", DistTrain.Cli.CliOptions.BadPngOutput("--plot", plot));
        Assert.Null(DistTrain.Cli.CliOptions.BadPngOutput("--plot", Path.Combine(_directory, "p.png")));
    }
}
