using System.Text.RegularExpressions;
using DistTrain.Core.Checkpoints;

namespace DistTrain.Tests;

/// <summary>The <c>disttrain</c> executable run as a user runs it: its output in logs, Ctrl-C, its run folders.</summary>
public sealed class CliRunTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-cli-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string Config(string json)
    {
        var path = Path.Combine(_directory, $"{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return path;
    }

    private static string Mlp(int hidden, int workers, int batch, int epochs, int trainLimit = 0) => $$"""
        {
          "Data": { "Normalization": "Global", "TrainLimit": {{trainLimit}} },
          "Model": { "InputSize": 784, "Layers": [ { "Type": "Dense", "Units": {{hidden}} }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 } ] },
          "Optimizer": { "LearningRate": 0.01, "Momentum": 0.5, "L2": 0.0001 },
          "Training": { "Workers": {{workers}}, "Epochs": {{epochs}}, "BatchSizePerWorker": {{batch}}, "Seed": 3, "StallTimeoutSeconds": 60 }
        }
        """;

    private string[] Train(string config, string data) => ["train", "--config", config, "--data", data, "--output", Path.Combine(_directory, "runs")];

    [Fact]
    public async Task Logged_output_is_not_wrapped_a_one_step_epoch_prints_no_quarter_line_and_a_missing_from_names_the_file_runs_write()
    {
        // A data folder whose path alone is longer than the 240 columns output used to be wrapped at.
        var data = Path.Combine(_directory, new string('d', 120), new string('e', 120));
        Directory.CreateDirectory(data);
        foreach (var file in Directory.GetFiles(TestData.SubsetDirectory)) File.Copy(file, Path.Combine(data, Path.GetFileName(file)));
        using var train = new DistTrainProcess(Train(Config(Mlp(hidden: 16, workers: 1, batch: 100, epochs: 2, trainLimit: 100)), data));
        await train.AssertExitAsync(0, TimeSpan.FromSeconds(120));

        Assert.Contains($"training / 250 test samples from {data}\n", train.Output.ReplaceLineEndings("\n")); // one line, unbroken
        Assert.DoesNotContain("step 1/1", train.Output); // an epoch of one step: the epoch line says it all
        Assert.Contains("epoch  2/2  train loss", train.Output);
        var weights = Regex.Match(train.Output, @"Final weights \(version 2, [\d,]+ parameters\): (\S+)").Groups[1].Value;
        Assert.True(File.Exists(weights), train.Output);

        using var finetune = new DistTrainProcess(["finetune", "--config", Config(Mlp(16, 1, 100, 1)), "--from", Path.Combine(_directory, "missing.safetensors")]);
        await finetune.AssertExitAsync(2, TimeSpan.FromSeconds(60));
        Assert.Contains($"a run's {Path.GetFileName(weights)}", finetune.Error);
    }

    [Fact]
    public async Task One_training_and_one_test_sample_are_counted_in_the_singular()
    {
        using var train = new DistTrainProcess([.. Train(Config(Mlp(hidden: 4, workers: 1, batch: 1, epochs: 1)), TestData.SubsetDirectory),
            "--train-limit", "1", "--test-limit", "1"]);
        await train.AssertExitAsync(0, TimeSpan.FromSeconds(120));
        var output = train.Output.ReplaceLineEndings("\n");
        Assert.Contains($"1 worker x batch 1, 1 epoch, 1 training / 1 test sample from {TestData.SubsetDirectory}\n", output);
        Assert.Matches(@"Test accuracy after 1 epoch: \d+\.\d\d% \(1 test sample\)\n", output);
    }

    [Fact]
    public async Task Parameter_server_shards_are_named_at_start_up()
    {
        var sharded = Mlp(hidden: 16, workers: 2, batch: 50, epochs: 1, trainLimit: 200).Replace("\"Optimizer\"", "\"Cluster\": { \"ParameterServerShards\": 2 },\n  \"Optimizer\"");
        using var train = new DistTrainProcess(Train(Config(sharded), TestData.SubsetDirectory));
        await train.AssertExitAsync(0, TimeSpan.FromSeconds(120));
        // 784·16 + 16 + 16·10 + 10 = 12,730 weights: 6,352 (a multiple of 16) and 6,378.
        Assert.Contains("parameter server in 2 shards of 6,352 and 6,378 weights, stepped in parallel\n", train.Output.ReplaceLineEndings("\n"));

    }

    [Fact]
    public async Task A_first_Ctrl_C_stops_at_the_next_step_says_so_and_keeps_the_weights_of_that_step()
    {
        // 1,000 samples in steps of 2 x 2: 250 steps per epoch, so Ctrl-C lands in the middle of a later epoch. 5,000 epochs:
        // a quiet machine trains this model at about 110,000 samples/s, so 50 epochs ended before the signal arrived.
        using var train = new DistTrainProcess(Train(Config(Mlp(hidden: 32, workers: 2, batch: 2, epochs: 5000)), TestData.SubsetDirectory), defaultInterrupt: true);
        await train.WaitForMatchAsync(new Regex(@"epoch +1/5000  train loss"), TimeSpan.FromSeconds(90));
        train.Interrupt();

        await train.AssertExitAsync(130, TimeSpan.FromSeconds(30));
        Assert.Contains("Ctrl-C: stopping at the next step (press Ctrl-C again to exit at once, without writing this run's files).", train.Error);
        var cancelled = Regex.Match(train.Error, @"cancelled: stopped at epoch (\d+), step (\d+) of 250\. Kept the run folder (\S+): model\.safetensors holds the weights of that step \(version (\d+)\)");
        Assert.True(cancelled.Success, train.Output);
        var (epoch, step, folder, version) = (int.Parse(cancelled.Groups[1].Value), int.Parse(cancelled.Groups[2].Value), cancelled.Groups[3].Value, long.Parse(cancelled.Groups[4].Value));
        Assert.Equal((epoch - 1) * 250L + step, version);
        Assert.DoesNotContain("epoch 5000/5000", train.Output);
        var metadata = SafeTensors.ReadMetadata(Path.Combine(folder, RunFiles.Model));
        Assert.Equal(version.ToString(), metadata["version"]);
        Assert.Equal($"cancelled at epoch {epoch}, step {step} of 250", metadata["stopped"]);
        Assert.Equal(784 * 32 + 32 + 32 * 10 + 10, SafeTensors.Read(Path.Combine(folder, RunFiles.Model)).Values.Sum(t => t.Data.Length));
        var summary = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, RunFiles.Summary))).RootElement;
        // The finished epochs: those before the stopped one, and the stopped one too if it stopped after its last step and evaluation.
        var finished = summary.GetProperty("epochs").GetArrayLength();
        Assert.True(finished == epoch - 1 || (step == 250 && finished == epoch), $"{finished} epochs in summary.json, stopped at epoch {epoch} step {step}");
        Assert.True(File.Exists(Path.Combine(folder, RunFiles.Epochs)));
    }

    /// <summary>
    /// A run killed outright (SIGKILL, as the OOM killer or a node crash ends it) after its second epoch's line leaves
    /// epochs.csv with exactly the epochs it finished, each as printed and as an uninterrupted run of the same seed writes
    /// it, and steps.csv with those epochs' steps. Before, the run folder was left empty: every record was written at the
    /// run's end, which a SIGKILL never reaches; later steps.csv still was.
    /// </summary>
    [Fact]
    public async Task A_run_killed_with_SIGKILL_leaves_epochs_csv_and_steps_csv_with_the_epochs_it_finished()
    {
        // 1,000 samples in 200 steps of 5 through 814,090 weights: about half a second to a second an epoch, so the kill,
        // a tenth of a second after the line of epoch 2, lands in epoch 3.
        var config = Config(Mlp(hidden: 1024, workers: 1, batch: 5, epochs: 4));
        var killedRuns = Path.Combine(_directory, "killed");
        using var killed = new DistTrainProcess(["train", "--config", config, "--data", TestData.SubsetDirectory, "--output", killedRuns]);
        await killed.WaitForMatchAsync(new Regex(@"epoch +2/4  train loss"), TimeSpan.FromSeconds(120));
        killed.Kill();
        Assert.Equal(137, await killed.WaitAsync(TimeSpan.FromSeconds(30))); // 128 + SIGKILL: no end of run, nothing written then
        var folder = Directory.GetDirectories(killedRuns).Single();
        // No summary: the end never came (a kill in the middle of a later write could leave that write's temporary file too).
        Assert.Equal([RunFiles.Epochs, RunFiles.Steps], Directory.GetFiles(folder).Select(Path.GetFileName)
            .Where(f => !f!.EndsWith(AtomicFile.TemporarySuffix, StringComparison.Ordinal)).Order(StringComparer.Ordinal));

        var rows = File.ReadAllLines(Path.Combine(folder, RunFiles.Epochs));
        var printed = Regex.Matches(killed.StandardOutput, @"epoch +(\d+)/4  train loss (\S+)  test acc (\S+)%").ToList();
        var epochs = rows.Skip(1).Select(r => int.Parse(r.Split(',')[0])).ToList();
        // The finished epochs, 1 to n: those printed, and one more if the kill came between its row's write and its line.
        Assert.Equal(Enumerable.Range(1, epochs.Count), epochs);
        Assert.True(epochs.Count >= 2 && epochs.Count - printed.Count is 0 or 1, $"{epochs.Count} rows, {printed.Count} epoch lines:\n{killed.Output}");
        foreach (var line in printed)
        {
            var row = rows[int.Parse(line.Groups[1].Value)].Split(',');
            var inv = System.Globalization.CultureInfo.InvariantCulture;
            Assert.Equal(line.Groups[2].Value, DistTrain.Cli.ConsoleProgress.Loss(double.Parse(row[2], inv))); // as the line prints it, in the culture both processes share
            Assert.Equal(line.Groups[3].Value, (100 * double.Parse(row[4], inv)).ToString("F2", System.Globalization.CultureInfo.CurrentCulture));
        }

        // The same run to its end: its first rows are the killed run's, but for the timings (the last four columns).
        var fullRuns = Path.Combine(_directory, "full");
        using (var full = new DistTrainProcess(["train", "--config", config, "--data", TestData.SubsetDirectory, "--output", fullRuns]))
            await full.AssertExitAsync(0, TimeSpan.FromSeconds(120));
        var fullFolder = Directory.GetDirectories(fullRuns).Single();
        var fullRows = File.ReadAllLines(Path.Combine(fullFolder, RunFiles.Epochs));
        Assert.Equal(5, fullRows.Length);
        static string Figures(string row) => string.Join(',', row.Split(',')[..^4]);
        Assert.Equal(fullRows.Take(rows.Length).Select(Figures), rows.Select(Figures));
        // steps.csv: the 200 steps of each finished epoch (of one epoch fewer if the kill came between the two files'
        // writes), as the whole run has them but for the timings (the last five columns).
        var steps = File.ReadAllLines(Path.Combine(folder, RunFiles.Steps));
        Assert.True(steps.Length - 1 == 200 * epochs.Count || steps.Length - 1 == 200 * (epochs.Count - 1), $"{steps.Length - 1} steps for {epochs.Count} epochs");
        var fullSteps = File.ReadAllLines(Path.Combine(fullFolder, RunFiles.Steps));
        Assert.Equal(801, fullSteps.Length);
        static string StepFigures(string row) => string.Join(',', row.Split(',')[..^5]);
        Assert.Equal(fullSteps.Take(steps.Length).Select(StepFigures), steps.Select(StepFigures));
    }

    [Fact]
    public async Task An_actors_warning_in_single_node_mode_is_a_warning_line_as_the_commands_own_not_an_Akka_log_line()
    {
        // A resume from the checkpoint of a finished run: the coordinator warns that it only scores those weights. Before,
        // that came as "[WARNING][12/02/2026 14:02:49.993Z][Thread 0005][akka://disttrain/user/coordinator] All 1 epochs ...".
        var config = Config(Mlp(hidden: 8, workers: 1, batch: 100, epochs: 1, trainLimit: 200));
        string[] arguments = [.. Train(config, TestData.SubsetDirectory), "--checkpoint-dir", Path.Combine(_directory, "checkpoints")];
        using (var first = new DistTrainProcess(arguments)) await first.AssertExitAsync(0, TimeSpan.FromSeconds(120));
        using var resumed = new DistTrainProcess([.. arguments, "--resume"]);
        await resumed.AssertExitAsync(0, TimeSpan.FromSeconds(120));
        Assert.Contains("warning: The 1 epoch was trained before this run started: the workers score epoch 1's weights (version 2)", resumed.Error);
        Assert.DoesNotContain("[WARNING]", resumed.Output + resumed.Error);
    }

    [Fact]
    public async Task A_Ctrl_C_before_the_first_checkpoint_does_not_point_to_a_resume_that_has_nothing_to_resume_from()
    {
        // 5.8M parameters and 1,000 steps of 1 sample per epoch (the subset's 1,000 training samples): the first epoch's
        // checkpoint is seconds away when the signal comes, right after the run's first line (with 10 steps of 100 samples an
        // epoch took well under a second, and a checkpoint was sometimes written before the signal landed).
        var checkpoints = Path.Combine(_directory, "checkpoints");
        using var train = new DistTrainProcess([.. Train(Config("""
            {
              "Data": { "Normalization": "Global" },
              "Model": { "InputSize": 784, "Layers": [ { "Type": "Dense", "Units": 2048 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 2048 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 } ] },
              "Optimizer": { "LearningRate": 0.01 },
              "Training": { "Workers": 1, "Epochs": 1000, "BatchSizePerWorker": 1, "Seed": 3, "StallTimeoutSeconds": 60 }
            }
            """), TestData.SubsetDirectory), "--checkpoint-dir", checkpoints], defaultInterrupt: true);
        await train.WaitForOutputAsync("DistTrain single-node", TimeSpan.FromSeconds(120));
        train.Interrupt();

        await train.AssertExitAsync(130, TimeSpan.FromSeconds(60));
        Assert.Empty(new CheckpointStore(checkpoints, 3).List());
        Assert.Contains($"No checkpoint was written to {checkpoints} yet, so a new run starts from the beginning.", train.Error);
        Assert.DoesNotContain("--resume", train.Error);
    }

    /// <summary>
    /// A second Ctrl-C after the graceful stop wrote the weights but not the summary: the exit line named only the epochs' records
    /// and said none of the run's files were written, though model.safetensors (written atomically, so whole) held the stop's
    /// weights. It names them now; without them the line is as before.
    /// </summary>
    [Fact]
    public void A_second_Ctrl_C_after_the_weights_were_written_names_them()
    {
        var folder = Directory.CreateDirectory(Path.Combine(_directory, "run")).FullName;
        File.WriteAllText(Path.Combine(folder, RunFiles.Epochs), "epoch\n1\n");
        var epochs = Path.Combine(folder, RunFiles.Epochs);
        Assert.Equal($"at once, without writing this run's files; {epochs} holds the epochs finished and steps.csv their steps, written after each. Resume.",
            DistTrain.Cli.GracefulCancellation.ExitedWithRecords(folder, " Resume."));
        File.WriteAllBytes(Path.Combine(folder, RunFiles.Model), [1]);
        Assert.Equal($"at once, without writing the rest of this run's files; {Path.Combine(folder, RunFiles.Model)} holds the weights at the stop, " +
            $"written before the exit, and {epochs} holds the epochs finished and steps.csv their steps, written after each. Resume.",
            DistTrain.Cli.GracefulCancellation.ExitedWithRecords(folder, " Resume."));
    }

    [Fact]
    public async Task A_second_Ctrl_C_exits_at_once_without_waiting_for_the_first_to_finish()
    {
        // 5.8M parameters and one 1,000-sample minibatch per step: a step takes a good part of a second, so the clean stop
        // (finish the step, save 23 MB of weights and the report) is still under way when the second Ctrl-C comes.
        var checkpoints = Path.Combine(_directory, "checkpoints");
        using var train = new DistTrainProcess(Train(Config($$"""
            {
              "Data": { "Normalization": "Global" },
              "Model": { "InputSize": 784, "Layers": [ { "Type": "Dense", "Units": 2048 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 2048 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 } ] },
              "Optimizer": { "LearningRate": 0.01 },
              "Training": { "Workers": 1, "Epochs": 1000, "BatchSizePerWorker": 1000, "Seed": 3, "StallTimeoutSeconds": 60 },
              "Checkpoint": { "Directory": "{{checkpoints}}" }
            }
            """), TestData.SubsetDirectory), defaultInterrupt: true);
        await train.WaitForOutputAsync("epoch  1/1000  train loss", TimeSpan.FromSeconds(120));
        // The epoch-end checkpoint is written by the parameter server beside the evaluation: wait for its line, so that the
        // exit line below has a checkpoint to name.
        await train.WaitForOutputAsync($"checkpoint {checkpoints}", TimeSpan.FromSeconds(60));
        train.Interrupt();
        // The first Ctrl-C's line says what a second one gives up.
        await train.WaitForOutputAsync("stopping at the next step (press Ctrl-C again to exit at once, without writing this run's files).", TimeSpan.FromSeconds(10));
        train.Interrupt();
        await train.AssertExitAsync(130, TimeSpan.FromSeconds(10)); // killed by SIGINT: 128 + 2
        Assert.DoesNotContain("cancelled: stopped", train.Output); // the clean stop never finished
        // The run folder is kept: epochs.csv was written after epoch 1 (before, the folder was removed as empty, or held
        // only what a save that had begun wrote), and the last line names it.
        var folder = Assert.Single(Directory.GetDirectories(Path.Combine(_directory, "runs")));
        var epochs = Path.Combine(folder, RunFiles.Epochs);
        Assert.Equal("1", File.ReadAllLines(epochs)[1].Split(',')[0]);
        var error = train.Error.ReplaceLineEndings(" ");
        Assert.Contains($"exited: at once, without writing this run's files; {epochs} holds the epochs finished and steps.csv their steps, written after each.", error);
        // The epoch-end checkpoints survive the exit: the last line names them and how to go on from them.
        Assert.Matches($@"exited:? at once, without writing this run's files.* Checkpoints are in {Regex.Escape(checkpoints)}: train --resume continues " +
            @"from the newest, at epoch \d+ round 0 \(weights version \d+\)\.", error);
    }

    /// <summary>
    /// The CPU time (user and system, all threads) process <paramref name="pid"/> has used, from fields 14 and 15 of
    /// /proc/PID/stat (in USER_HZ, 100 a second); null once the process is gone.
    /// </summary>
    private static TimeSpan? CpuTime(int pid)
    {
        string stat;
        try { stat = File.ReadAllText($"/proc/{pid}/stat"); }
        catch (IOException) { return null; }
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' '); // from field 3, the state: the name may hold spaces
        return TimeSpan.FromSeconds((long.Parse(fields[11], System.Globalization.CultureInfo.InvariantCulture) +
            long.Parse(fields[12], System.Globalization.CultureInfo.InvariantCulture)) / 100.0);
    }

    /// <summary>
    /// Sends <paramref name="process"/> its Ctrl-C and samples the CPU time it uses from then until it exits (every 20 ms,
    /// for at most 60 s). "At once" means at the next pass of up to 1,024 samples, not after the rest of the scoring: told by
    /// that CPU time (a pass, about 0.2 s, and the exit) and not by the wall-clock time, which a loaded machine stretches
    /// many times over (the rest of the scoring is 6 s or more of CPU time).
    /// </summary>
    /// <returns>The CPU time after the signal, and the wall-clock time from the signal to the end of the sampling.</returns>
    private static async Task<(TimeSpan Cpu, TimeSpan Wall)> InterruptAndMeasureAsync(DistTrainProcess process)
    {
        var interrupted = DateTime.UtcNow;
        var cpuAtInterrupt = CpuTime(process.Id)!.Value;
        process.Interrupt();
        var cpuAfter = TimeSpan.Zero;
        while (!process.HasExited && DateTime.UtcNow - interrupted < TimeSpan.FromSeconds(60))
        {
            if (CpuTime(process.Id) is { } cpu) cpuAfter = cpu - cpuAtInterrupt;
            await Task.Delay(20);
        }
        return (cpuAfter, DateTime.UtcNow - interrupted);
    }

    /// <summary>The 5.8M-parameter model of the Ctrl-C tests, trained for one quick epoch; the path of its run folder.</summary>
    private async Task<string> TrainLargeModelAsync()
    {
        var runs = Path.Combine(_directory, "runs");
        using var train = new DistTrainProcess(Train(Config("""
            {
              "Data": { "Normalization": "Global", "TrainLimit": 100 },
              "Model": { "InputSize": 784, "Layers": [ { "Type": "Dense", "Units": 2048 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 2048 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 } ] },
              "Optimizer": { "LearningRate": 0.01 },
              "Training": { "Workers": 1, "Epochs": 1, "BatchSizePerWorker": 100, "Seed": 3, "StallTimeoutSeconds": 60 }
            }
            """), TestData.SubsetDirectory));
        await train.AssertExitAsync(0, TimeSpan.FromSeconds(120));
        return Directory.GetDirectories(runs).Single();
    }

    [Fact]
    public async Task A_first_Ctrl_C_stops_predict_at_once_with_exit_130_and_prints_no_predictions()
    {
        var model = await TrainLargeModelAsync();
        // The subset's 1,000 training images given 100 times: 100,000 samples, many seconds of scoring for this model.
        var images = Path.Combine(TestData.SubsetDirectory, "train-images-idx3-ubyte.gz");
        using var predict = new DistTrainProcess(["predict", "--model", model, "--top-k", "20", .. Enumerable.Repeat(images, 100)], defaultInterrupt: true);
        await predict.WaitForOutputAsync("--top-k 20 is more than", TimeSpan.FromSeconds(60)); // the model is loaded: scoring begins
        var (cpuAfter, wall) = await InterruptAndMeasureAsync(predict);
        await predict.AssertExitAsync(130, TimeSpan.FromSeconds(60));
        Assert.True(cpuAfter < TimeSpan.FromSeconds(3), $"predict used {cpuAfter.TotalSeconds:F2} s of CPU time after the Ctrl-C " +
            $"({wall.TotalSeconds:F1} s on the clock) before it stopped");
        Assert.Contains("cancelled: stopped before the end; nothing was written.", predict.Error);
        Assert.DoesNotContain(".gz[", predict.StandardOutput); // no table of predictions
    }

    [Fact]
    public async Task A_first_Ctrl_C_stops_evaluate_at_once_with_exit_130_and_draws_no_heatmap()
    {
        var model = await TrainLargeModelAsync();
        // An IDX test split of 60,000 images (random pixels, labels 0-9): many seconds of scoring for this model.
        const int count = 60_000;
        var data = Directory.CreateDirectory(Path.Combine(_directory, "large")).FullName;
        var random = new Random(1);
        var pixels = new byte[count * 784];
        random.NextBytes(pixels);
        var labels = Enumerable.Range(0, count).Select(i => (byte)(i % 10)).ToArray();
        static byte[] Header(int magic, params int[] dims) =>
            [.. new[] { magic }.Concat(dims).SelectMany(v => new[] { (byte)(v >> 24), (byte)(v >> 16), (byte)(v >> 8), (byte)v })];
        File.WriteAllBytes(Path.Combine(data, "t10k-images-idx3-ubyte"), [.. Header(0x803, count, 28, 28), .. pixels]);
        byte[] labelFile = [.. Header(0x801, count), .. labels];
        File.WriteAllBytes(Path.Combine(data, "t10k-labels-idx1-ubyte"), labelFile);
        // The labels gzip-compressed too: evaluate reads the .gz copy and warns about the raw one it ignores, the last thing it
        // does before scoring, so that warning is the sign that the model and the data are loaded and scoring begins.
        using (var gz = new System.IO.Compression.GZipStream(File.Create(Path.Combine(data, "t10k-labels-idx1-ubyte.gz")), System.IO.Compression.CompressionLevel.Fastest))
            gz.Write(labelFile);
        var heatmap = Path.Combine(_directory, "heatmap.png");
        using var evaluate = new DistTrainProcess(["evaluate", "--model", model, "--data", data, "--heatmap", heatmap], defaultInterrupt: true);
        await evaluate.WaitForOutputAsync("t10k-labels-idx1-ubyte both gzip-compressed (.gz) and raw", TimeSpan.FromSeconds(120));
        // Into the scoring, which takes about 9 s of CPU time (about 0.15 ms a sample here).
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.False(evaluate.HasExited, evaluate.Output);
        var (cpuAfter, wall) = await InterruptAndMeasureAsync(evaluate);
        await evaluate.AssertExitAsync(130, TimeSpan.FromSeconds(60));
        Assert.True(cpuAfter < TimeSpan.FromSeconds(3), $"evaluate used {cpuAfter.TotalSeconds:F2} s of CPU time after the Ctrl-C " +
            $"({wall.TotalSeconds:F1} s on the clock) before it stopped");
        Assert.Contains("cancelled: stopped before the end; nothing was written.", evaluate.Error);
        Assert.False(File.Exists(heatmap));
        Assert.DoesNotContain("Accuracy", evaluate.StandardOutput);
    }
}
