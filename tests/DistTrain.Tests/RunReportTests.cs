using DistTrain.Cli;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Training;
using DistTrain.Core.Configuration;
using DistTrain.Core.Optimization;

namespace DistTrain.Tests;

public class RunReportTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-report-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>
    /// The last good weights of a run that diverged before finishing an epoch record the epochs they have been through:
    /// those of the run before it when it was resumed (its checkpoint's epoch − 1), not 0; and they load as a model.
    /// </summary>
    [Fact]
    public void Last_good_weights_of_a_resumed_run_that_diverged_in_its_first_epoch_record_the_epochs_before_it()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 5);
        var layout = Core.Models.ModelFactory.Build(options.Model).Layout;
        var weights = Enumerable.Range(0, layout.TotalLength).Select(i => i * 1e-4f).ToArray();
        var diverged = new Cluster.Actors.TrainingDivergedException("diverged", weights, lastGoodVersion: 60);
        RunOutputs.SaveLastGood(_directory, options, data.Normalizer, Core.Data.DataMetadata.Of(data, options.Data), diverged,
            new RunReport(NullTrainingObserver.Instance), epochsBefore: 3);
        var model = Core.Models.TrainedModel.Load(Path.Combine(_directory, Core.Checkpoints.RunFiles.LastGood));
        Assert.Equal("3", model.Metadata["epochs"]);
        Assert.Equal("60", model.Metadata["version"]);
        Assert.Equal(weights, model.Weights.Values);
    }

    /// <summary>
    /// Tells <paramref name="report"/> of epochs 1 and 2, 4 steps each, finished (test accuracy 0.7 + epoch / 100), then of
    /// the first <paramref name="stepsOfEpoch3"/> steps of epoch 3 of 4, unfinished: 100 samples and loss 0.5 / epoch a step.
    /// Returns the version of the last step.
    /// </summary>
    private static long TwoEpochsAndPartOfTheThird(RunReport report, int stepsOfEpoch3)
    {
        long version = 0;
        for (var epoch = 1; epoch <= 3; epoch++)
        {
            report.EpochStarted(epoch, 4, 350);
            for (var step = 0; step < (epoch < 3 ? 4 : stepsOfEpoch3); step++)
                report.StepApplied(epoch, step, ++version, 100, 0.5 / epoch, 0.05, default);
            if (epoch < 3) report.EpochCompleted(new EpochSummary(epoch, version, 0.5 / epoch, 0.6 / epoch, 0.7 + epoch / 100.0, 100, 350, 1, 0.1));
        }
        return version;
    }

    /// <summary>
    /// A job restarted on its parameter-server node after a lost shard node trains again from its newest checkpoint, and the
    /// same report sees the redone steps and epochs a second time. <see cref="RunReport.RunResumed"/> drops what the first go
    /// recorded past the checkpoint: steps.csv holds each version once and epochs.csv each epoch once, from the second go,
    /// also after the files were formatted mid-run. A report that recorded nothing (a new resume) is unchanged by it.
    /// </summary>
    [Fact]
    public void A_run_resumed_within_the_same_report_records_the_steps_and_epochs_trained_again_once()
    {
        var report = new RunReport(NullTrainingObserver.Instance);
        var version = TwoEpochsAndPartOfTheThird(report, stepsOfEpoch3: 3); // versions 1 to 11; epochs 1 and 2 finished
        Assert.Equal(11, version);
        _ = report.StepsCsv(); // formatted up to version 11, as a per-epoch write does
        _ = report.EpochsCsv();
        // Back to the checkpoint of epoch 2's end (version 8): epoch 3 starts again, with other losses this time.
        report.RunResumed(3, 0, 8);
        report.EpochStarted(3, 4, 350);
        for (var step = 0; step < 4; step++) report.StepApplied(3, step, 9 + step, 100, 0.1, 0.05, default);
        report.EpochCompleted(new EpochSummary(3, 12, 0.1, 0.2, 0.9, 100, 350, 1, 0.1));

        var steps = report.StepsCsv().Split('\n', StringSplitOptions.RemoveEmptyEntries)[1..];
        Assert.Equal(Enumerable.Range(1, 12).Select(v => (long)v), steps.Select(row => long.Parse(row.Split(',')[2], System.Globalization.CultureInfo.InvariantCulture)));
        Assert.Equal(["0.1", "0.1", "0.1", "0.1"], steps[8..].Select(row => row.Split(',')[4]));
        Assert.Equal(["1", "2", "3"], report.EpochsCsv().Split('\n', StringSplitOptions.RemoveEmptyEntries)[1..].Select(row => row.Split(',')[0]));
        Assert.Equal("0.9", report.EpochsCsv().Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1].Split(',')[4]);

        // Back into the middle of a finished epoch (a checkpoint at epoch 2 round 2, version 6): epochs 2 and 3 are dropped too.
        report.RunResumed(2, 2, 6);
        Assert.Equal(6, report.StepsCsv().Split('\n', StringSplitOptions.RemoveEmptyEntries).Length - 1);
        Assert.Equal(["1"], report.EpochsCsv().Split('\n', StringSplitOptions.RemoveEmptyEntries)[1..].Select(row => row.Split(',')[0]));

        var fresh = new RunReport(NullTrainingObserver.Instance);
        fresh.RunResumed(3, 0, 8);
        fresh.EpochStarted(3, 4, 350);
        fresh.StepApplied(3, 0, 9, 100, 0.1, 0.05, default);
        Assert.Equal(2, fresh.StepsCsv().Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    /// <summary>
    /// A run that diverged keeps what it finished, as a cancelled run does: beside last-good.safetensors (and no
    /// model.safetensors), summary.json records the divergence and the finished epochs, and steps.csv, epochs.csv and
    /// curves.png hold every step applied. Before, the folder held only last-good.safetensors.
    /// </summary>
    [Fact]
    public void A_diverged_run_keeps_its_finished_epochs_in_the_summary_and_the_report_beside_the_last_good_weights()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 5);
        var layout = Core.Models.ModelFactory.Build(options.Model).Layout;
        // Epochs 1 and 2 of 4 steps finished; epoch 3 diverged at its third step, after two were applied.
        var report = new RunReport(NullTrainingObserver.Instance);
        var version = TwoEpochsAndPartOfTheThird(report, stepsOfEpoch3: 2);
        var weights = Enumerable.Range(0, layout.TotalLength).Select(i => i * 1e-4f).ToArray();
        // Epoch 3's two steps are drawn in epoch 3, not spread as if every step of the run belonged to a finished epoch.
        Assert.Equal([0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2.25, 2.5], report.StepPositions());
        // The summary names the failed step as the divergence does (a run resumed part-way through epoch 3 applied fewer).
        Assert.Equal("diverged at epoch 3, step 3 of 4", report.DivergedAt());
        Assert.Equal("diverged at epoch 3, step 4 of 4", report.DivergedAt(epoch: 3, step: 4));
        var diverged = new Cluster.Actors.TrainingDivergedException("diverged", weights, lastGoodVersion: version);

        RunOutputs.KeepDiverged(_directory, options, data.Normalizer, Core.Data.DataMetadata.Of(data, options.Data), diverged, report);

        string In(string file) => Path.Combine(_directory, file);
        Assert.False(File.Exists(In(Core.Checkpoints.RunFiles.Model)), "a diverged run must not leave model.safetensors");
        var lastGood = Core.Models.TrainedModel.Load(In(Core.Checkpoints.RunFiles.LastGood));
        Assert.Equal(weights, lastGood.Weights.Values);
        Assert.Equal("2", lastGood.Metadata["epochs"]);

        using var summary = System.Text.Json.JsonDocument.Parse(File.ReadAllText(In(Core.Checkpoints.RunFiles.Summary)));
        var root = summary.RootElement;
        Assert.Equal("diverged at epoch 3, step 3 of 4", root.GetProperty("stopped").GetString());
        Assert.Equal(10, root.GetProperty("version").GetInt64()); // last-good.safetensors' version
        Assert.Equal([1, 2], root.GetProperty("epochs").EnumerateArray().Select(e => e.GetProperty("Epoch").GetInt32()));
        Assert.Equal([0.71, 0.72], root.GetProperty("epochs").EnumerateArray().Select(e => e.GetProperty("TestAccuracy").GetDouble()));

        var steps = File.ReadAllLines(In(Core.Checkpoints.RunFiles.Steps));
        Assert.Equal(11, steps.Length); // the header and the 10 steps applied, those of the diverged epoch included
        Assert.StartsWith("3,1,10,", steps[^1]);
        var epochs = File.ReadAllLines(In(Core.Checkpoints.RunFiles.Epochs));
        Assert.Equal(3, epochs.Length);
        Assert.StartsWith("2,8,", epochs[2]);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, File.ReadAllBytes(In(Core.Checkpoints.RunFiles.Curves))[..4]);
    }

    [Fact]
    public void The_curves_of_a_run_that_finished_no_epoch_draw_its_steps_only_without_empty_series_or_an_accuracy_axis()
    {
        // Before, a run that diverged in its first epoch drew a right axis "test accuracy (%)" from -11 to 11 and listed
        // three series without a point in its legend.
        static string[] Legends(ScottPlot.Plot plot) =>
            [.. plot.GetPlottables().OfType<ScottPlot.Plottables.Scatter>().Select(s => s.LegendText)];
        var unfinished = new RunReport(NullTrainingObserver.Instance);
        unfinished.EpochStarted(1, 4, 350);
        for (var step = 0; step < 3; step++) unfinished.StepApplied(1, step, step + 1, 100, 2.0 / (step + 1), 0.05, default);
        var plot = unfinished.CurvesPlot("CrossEntropy", stopped: "diverged at epoch 1, step 4 of 4");
        Assert.Equal(["train loss (per step)"], Legends(plot));
        Assert.Equal("", plot.Axes.Right.Label.Text);

        var finished = new RunReport(NullTrainingObserver.Instance);
        TwoEpochsAndPartOfTheThird(finished, stepsOfEpoch3: 1);
        plot = finished.CurvesPlot("CrossEntropy");
        Assert.Contains("test accuracy (%, right axis)", Legends(plot));
        Assert.Equal("test accuracy (%)", plot.Axes.Right.Label.Text);
        Assert.True(Legends(plot).Length >= 3, string.Join(", ", Legends(plot)));
    }

    /// <summary>
    /// A run that failed in training without its weights coming back (a worker's error, such as a Float16 overflow) keeps
    /// its finished epochs: summary.json records the failure and the epochs, and steps.csv, epochs.csv and curves.png hold
    /// every step applied, with no model.safetensors. Before, the folder was removed as empty, and the epochs were lost.
    /// A failure before any step keeps nothing.
    /// </summary>
    [Fact]
    public void A_run_that_failed_without_its_weights_keeps_its_finished_epochs_in_the_summary_and_the_report()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 5);
        var description = Core.Data.DataMetadata.Of(data, options.Data);
        var report = new RunReport(NullTrainingObserver.Instance);
        RunOutputs.KeepAfterFailure(_directory, options, data.Normalizer, description, weights: null, report, "train --resume");
        Assert.Empty(Directory.EnumerateFileSystemEntries(_directory));

        TwoEpochsAndPartOfTheThird(report, stepsOfEpoch3: 1);
        RunOutputs.KeepAfterFailure(_directory, options, data.Normalizer, description, weights: null, report, "train --resume");

        string In(string file) => Path.Combine(_directory, file);
        Assert.False(File.Exists(In(Core.Checkpoints.RunFiles.Model)));
        using var summary = System.Text.Json.JsonDocument.Parse(File.ReadAllText(In(Core.Checkpoints.RunFiles.Summary)));
        Assert.Equal("failed at epoch 3, step 2 of 4", summary.RootElement.GetProperty("stopped").GetString());
        Assert.Equal([1, 2], summary.RootElement.GetProperty("epochs").EnumerateArray().Select(e => e.GetProperty("Epoch").GetInt32()));
        Assert.Equal(10, File.ReadAllLines(In(Core.Checkpoints.RunFiles.Steps)).Length); // the header and the 9 steps applied
        Assert.Equal(3, File.ReadAllLines(In(Core.Checkpoints.RunFiles.Epochs)).Length);
        Assert.True(File.Exists(In(Core.Checkpoints.RunFiles.Curves)));
    }

    /// <summary>
    /// A run that diverged at its very first step has no report to write: summary.json still records the divergence, with
    /// no epoch, beside last-good.safetensors; where it diverged is given as a cancelled run's stop is.
    /// </summary>
    [Fact]
    public void A_run_that_diverged_at_its_first_step_records_it_in_the_summary_without_curves()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 5);
        var layout = Core.Models.ModelFactory.Build(options.Model).Layout;
        var report = new RunReport(NullTrainingObserver.Instance);
        Assert.Equal("diverged before the first epoch", report.DivergedAt());
        report.EpochStarted(1, 4, 350);
        var diverged = new Cluster.Actors.TrainingDivergedException("diverged", new float[layout.TotalLength], lastGoodVersion: 0);

        RunOutputs.KeepDiverged(_directory, options, data.Normalizer, Core.Data.DataMetadata.Of(data, options.Data), diverged, report);

        using var summary = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(_directory, Core.Checkpoints.RunFiles.Summary)));
        Assert.Equal("diverged at epoch 1, step 1 of 4", summary.RootElement.GetProperty("stopped").GetString());
        Assert.Empty(summary.RootElement.GetProperty("epochs").EnumerateArray());
        Assert.True(File.Exists(Path.Combine(_directory, Core.Checkpoints.RunFiles.LastGood)));
        Assert.False(File.Exists(Path.Combine(_directory, Core.Checkpoints.RunFiles.Curves)));
        Assert.False(File.Exists(Path.Combine(_directory, Core.Checkpoints.RunFiles.Steps)));
    }

    /// <summary>
    /// An early-stopped run's model.safetensors is labelled with the epoch whose weights it keeps (epoch 10 of 12 here), as
    /// its test accuracy and the final line are; the last epoch trained is kept apart as epochs_trained.
    /// </summary>
    [Fact]
    public void Early_stopped_weights_record_the_kept_epoch_not_the_last_one_trained()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 20);
        var layout = Core.Models.ModelFactory.Build(options.Model).Layout;
        var epochs = Enumerable.Range(1, 12).Select(e => new EpochSummary(e, 20L * e, 0.5, 0.6, 0.80 + e / 1000.0, 250, 1000, 1, 0.1)).ToList();
        var result = new TrainingResult(new Core.Tensors.ParameterVector(layout), 200, epochs, BestEpoch: 10, StoppedEarly: true);
        var metadata = RunSummaryFile.Metadata(options, data.Normalizer, Core.Data.DataMetadata.Of(data, options.Data), result);
        Assert.Equal("10", metadata["epochs"]);
        Assert.Equal("12", metadata[Core.Models.ModelMetadata.EpochsTrained]);
        Assert.Equal("0.8100", metadata[Core.Models.ModelMetadata.TestAccuracy]);
        Assert.Equal("200", metadata["version"]);

        // Without early stopping, or cancelled (the weights at the stop), the last epoch trained, and no epochs_trained.
        var plain = RunSummaryFile.Metadata(options, data.Normalizer, Core.Data.DataMetadata.Of(data, options.Data), result with { BestEpoch = null, StoppedEarly = false });
        Assert.Equal("12", plain["epochs"]);
        Assert.False(plain.ContainsKey(Core.Models.ModelMetadata.EpochsTrained));
        var cancelled = RunSummaryFile.Metadata(options, data.Normalizer, Core.Data.DataMetadata.Of(data, options.Data), result, "cancelled at epoch 13, step 5 of 20");
        Assert.Equal("12", cancelled["epochs"]);
        Assert.False(cancelled.ContainsKey(Core.Models.ModelMetadata.EpochsTrained));
    }

    /// <summary>
    /// A resumed run's summary.json (a resume, or a standby's takeover) says at which epoch it started: its epochs list
    /// starts there, and nothing said why epochs 1 and 2 were missing. A run resumed within epoch 1 says so too (it said
    /// nothing, and compare showed it as a run of its own from the start), and compare marks both as resumed.
    /// </summary>
    [Fact]
    public void A_resumed_runs_summary_names_the_epoch_it_resumed_at()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 5);
        var layout = Core.Models.ModelFactory.Build(options.Model).Layout;
        int? ResumedAt(int firstEpoch, int? firstEpochSamplesThisRun = null, int firstEpochSamples = 1000)
        {
            var epochs = Enumerable.Range(firstEpoch, 6 - firstEpoch).Select(e => new EpochSummary(e, 20L * e, 0.5, 0.6, 0.8, 250,
                e == firstEpoch ? firstEpochSamples : 1000, 1, 0.1, SamplesTrainedThisRun: e == firstEpoch ? firstEpochSamplesThisRun : null)).ToList();
            var folder = Directory.CreateDirectory(Path.Combine(_directory, $"run-{firstEpoch}-{firstEpochSamplesThisRun}-{firstEpochSamples}")).FullName;
            var path = Path.Combine(folder, "summary.json");
            RunSummaryFile.Write(path, options, data.Normalizer, new TrainingResult(new Core.Tensors.ParameterVector(layout), 100, epochs));
            var resumed = System.Text.Json.JsonDocument.Parse(File.ReadAllText(path)).RootElement.GetProperty("resumed_at_epoch");
            int? at = resumed.ValueKind == System.Text.Json.JsonValueKind.Null ? null : resumed.GetInt32();
            Assert.Equal(at is not null, RunHistory.Read(folder).Resumed); // compare's "(resumed)"
            return at;
        }
        Assert.Equal(3, ResumedAt(3));
        Assert.Null(ResumedAt(1));
        Assert.Null(ResumedAt(1, firstEpochSamplesThisRun: 1000));
        Assert.Equal(1, ResumedAt(1, firstEpochSamplesThisRun: 200)); // resumed at epoch 1's round 200 of 250, say
        Assert.Equal(2, ResumedAt(2, firstEpochSamplesThisRun: 200));
        Assert.Equal(1, ResumedAt(1, firstEpochSamplesThisRun: 0, firstEpochSamples: 0)); // epoch 1 only scored (a takeover before its evaluation)
    }

    /// <summary>
    /// Weights that cannot be written (here the run folder is a file, as a full disk or a lost permission would fail the
    /// write) are reported with the folder, the cause and the fix, and the newest checkpoint when there is one; not as a
    /// stack trace.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Weights_that_cannot_be_written_fail_with_the_folder_the_cause_and_the_newest_checkpoint(bool checkpoints)
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 5);
        var runDirectory = Path.Combine(_directory, "run");
        File.WriteAllText(runDirectory, "a file where the run folder should be");
        string? newest = null;
        if (checkpoints)
        {
            options.Checkpoint.Directory = Path.Combine(_directory, "checkpoints");
            Directory.CreateDirectory(options.Checkpoint.Directory);
            foreach (var version in new[] { 40, 120, 80 })
                File.WriteAllText(Path.Combine(options.Checkpoint.Directory, Core.Checkpoints.CheckpointStore.FileName(version, version / 40, 0)), "");
            newest = Path.Combine(options.Checkpoint.Directory, Core.Checkpoints.CheckpointStore.FileName(120, 3, 0));
        }
        var layout = Core.Models.ModelFactory.Build(options.Model).Layout;
        var diverged = new Cluster.Actors.TrainingDivergedException("diverged", new float[layout.TotalLength], lastGoodVersion: 60);

        var error = Assert.Throws<RunOutputsException>(() => RunOutputs.SaveLastGood(runDirectory, options, data.Normalizer,
            Core.Data.DataMetadata.Of(data, options.Data), diverged, new RunReport(NullTrainingObserver.Instance)));
        Assert.StartsWith($"training ended, but the last good weights ({Core.Checkpoints.RunFiles.LastGood}) could not be written to {runDirectory}: ", error.Message);
        Assert.Contains("Free space on that disk, or check its permissions, or set Output:Directory to another folder.", error.Message);
        Assert.IsAssignableFrom<IOException>(error.InnerException);
        if (checkpoints) Assert.EndsWith($"The newest checkpoint is {newest}; a resume (train --resume, or Checkpoint:Resume) continues from it, and from one written after the last epoch it only evaluates the weights and writes the model.", error.Message);
        else Assert.EndsWith("No checkpoint holds them (Checkpoint:Directory keeps some for the next run).", error.Message);
    }

    [Fact]
    public void A_run_folder_left_empty_by_a_failed_write_is_removed_and_one_that_holds_files_is_kept()
    {
        var empty = Directory.CreateDirectory(Path.Combine(_directory, "empty")).FullName;
        var kept = Directory.CreateDirectory(Path.Combine(_directory, "kept")).FullName;
        File.WriteAllText(Path.Combine(kept, "model.safetensors"), "written before the failure");
        static void Full() => throw new IOException("No space left on device");

        var removed = Assert.Throws<RunOutputsException>(() => RunOutputs.Writing(empty, "the weights", Full));
        Assert.Equal($"training ended, but the weights could not be written to {empty}: No space left on device. Free space on that disk, or check its " +
            "permissions, or set Output:Directory to another folder. The run folder, left empty, was removed.", removed.Message);
        Assert.False(Directory.Exists(empty));

        var notRemoved = Assert.Throws<RunOutputsException>(() => RunOutputs.Writing(kept, "the summary", Full));
        Assert.DoesNotContain("removed", notRemoved.Message);
        Assert.True(File.Exists(Path.Combine(kept, "model.safetensors")));
    }

    [Theory]
    [InlineData(100_000, 1, "Optimizer:Schedule:WarmupSteps = 100,000 is not less than this run's 4 steps (1 epoch of 4), so the learning rate stays below Optimizer:LearningRate for the whole run. Lower WarmupSteps, or train longer.")]
    [InlineData(12, 3, "Optimizer:Schedule:WarmupSteps = 12 is not less than this run's 12 steps (3 epochs of 4), so the learning rate stays below Optimizer:LearningRate for the whole run. Lower WarmupSteps, or train longer.")]
    [InlineData(11, 3, null)]
    [InlineData(0, 1, null)]
    public void A_warmup_as_long_as_the_run_is_warned_of(int warmupSteps, int epochs, string? expected)
    {
        // 350 samples in minibatches of 2 x 50: 4 steps per epoch, the last one short.
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: epochs);
        options.Optimizer.Schedule.WarmupSteps = warmupSteps;
        Assert.Equal(expected, TrainCommand.WarmupOutlastsRun(options, trainSamples: 350));
    }

    [Fact]
    public void Shard_nodes_in_a_single_node_run_are_warned_of_as_unused()
    {
        var cluster = new ClusterOptions();
        Assert.Null(TrainCommand.ShardNodesUnused(cluster));
        cluster.ShardNodes = true;
        cluster.ParameterServerShards = 2;
        Assert.Equal("Cluster:ShardNodes = true is not used by single-node disttrain train, which has no shard nodes: its 2 parameter-server shards run " +
            "in this process. Shard nodes serve a cluster (deploy/local/cluster.sh starts them, or disttrain node --role parameter-shard); remove ShardNodes for this run.",
            TrainCommand.ShardNodesUnused(cluster));
        cluster.ParameterServerShards = 1;
        Assert.StartsWith("Cluster:ShardNodes = true is not used by single-node disttrain train, which has no shard nodes: its parameter server runs in this process.",
            TrainCommand.ShardNodesUnused(cluster));
    }

    [Theory]
    // 1,000 samples over 2 workers: shards of 500, 8 micro-batches of 64. 1,024 × 64 = 65,536 samples per minibatch.
    [InlineData(TrainingMode.Sync, 1024, 64, "Training:AccumulationSteps = 1,024 makes each worker's minibatch 65,536 samples (Training:BatchSizePerWorker 64 × 1,024), " +
        "but a worker's shard of the epoch has 500 samples (8 micro-batches): every epoch is a single step over the whole training set, so the run takes 3 steps. " +
        "Lower AccumulationSteps to 4 (minibatches of 256 samples) for 2 steps per epoch, or lower still for more.")]
    [InlineData(TrainingMode.Async, 8, 64, "Training:AccumulationSteps = 8 makes each worker's minibatch 512 samples (Training:BatchSizePerWorker 64 × 8), " +
        "but a worker's shard of the epoch has 500 samples (8 micro-batches): each worker pushes once per epoch, its whole shard, so the run takes 6 steps. " +
        "Lower AccumulationSteps to 4 (minibatches of 256 samples) for 2 steps per epoch, or lower still for more.")]
    // 2 micro-batches: the fix is no accumulation, with the steps it makes; "Lower AccumulationSteps to 1 or less" before.
    [InlineData(TrainingMode.Sync, 2, 400, "Training:AccumulationSteps = 2 makes each worker's minibatch 800 samples (Training:BatchSizePerWorker 400 × 2), " +
        "but a worker's shard of the epoch has 500 samples (2 micro-batches): every epoch is a single step over the whole training set, so the run takes 3 steps. " +
        "Set AccumulationSteps to 1 (no accumulation: minibatches of 400 samples) for 2 steps per epoch.")]
    [InlineData(TrainingMode.Sync, 3, 200, "Training:AccumulationSteps = 3 makes each worker's minibatch 600 samples (Training:BatchSizePerWorker 200 × 3), " +
        "but a worker's shard of the epoch has 500 samples (3 micro-batches): every epoch is a single step over the whole training set, so the run takes 3 steps. " +
        "Lower AccumulationSteps to 2 (minibatches of 400 samples) for 2 steps per epoch, or lower still for more.")]
    [InlineData(TrainingMode.Sync, 16, 50, "Training:AccumulationSteps = 16 makes each worker's minibatch 800 samples (Training:BatchSizePerWorker 50 × 16), " +
        "but a worker's shard of the epoch has 500 samples (10 micro-batches): every epoch is a single step over the whole training set, so the run takes 3 steps. " +
        "Lower AccumulationSteps to 5 (minibatches of 250 samples) for 2 steps per epoch, or lower still for more.")]
    [InlineData(TrainingMode.Sync, 2, 500, "Training:AccumulationSteps = 2 makes each worker's minibatch 1,000 samples (Training:BatchSizePerWorker 500 × 2), " +
        "but a worker's shard of the epoch has 500 samples (1 micro-batch): every epoch is a single step over the whole training set, so the run takes 3 steps. " +
        "Set AccumulationSteps to 1 (one micro-batch already holds the shard), and lower Training:BatchSizePerWorker below 500 for more than one step per epoch.")]
    // 5 micro-batches: half rounded up, 3, for 2 steps; rounded down (2) it made 3 steps, the last of 100 samples.
    [InlineData(TrainingMode.Sync, 5, 100, "Training:AccumulationSteps = 5 makes each worker's minibatch 500 samples (Training:BatchSizePerWorker 100 × 5), " +
        "but a worker's shard of the epoch has 500 samples (5 micro-batches): every epoch is a single step over the whole training set, so the run takes 3 steps. " +
        "Lower AccumulationSteps to 3 (minibatches of 300 samples) for 2 steps per epoch, or lower still for more.")]
    [InlineData(TrainingMode.Sync, 7, 64, null)] // 448 samples per minibatch: 2 steps per epoch
    [InlineData(TrainingMode.Sync, 1, 1000, null)] // one step per epoch, but not from accumulation
    public void An_accumulation_that_makes_each_epoch_one_step_is_warned_of(TrainingMode mode, int accumulation, int batch, string? expected)
    {
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: batch, epochs: 3);
        options.Training.Mode = mode;
        options.Training.AccumulationSteps = accumulation;
        Assert.Equal(expected, TrainCommand.AccumulationCoversShard(options, trainSamples: 1000, workers: 2));
        var train = new Core.Data.LabeledDataset(new float[1000 * 784], [.. Enumerable.Range(0, 1000).Select(i => (byte)(i % 10))], 784, classCount: 10, null);
        Assert.Equal(expected is not null, TrainCommand.RunWarnings(options, train).Contains(expected));
        // The plan agrees: with accumulation, one round per epoch exactly when warned of.
        Assert.Equal(expected is not null || accumulation == 1, EpochPlanSettings.StepsPerEpoch(1000, 2, options.Training.MinibatchPerWorker) == 1);
        // The fix's numbers are the plan's: the AccumulationSteps it names, at least 1, make the minibatch and the steps it says.
        if (System.Text.RegularExpressions.Regex.Match(expected ?? "", @"AccumulationSteps to (\d+) .*minibatches of (\d+) samples\) for (\d+) steps") is { Success: true } fix)
        {
            var (fewer, minibatch, steps) = (int.Parse(fix.Groups[1].Value), int.Parse(fix.Groups[2].Value), int.Parse(fix.Groups[3].Value));
            Assert.InRange(fewer, 1, accumulation - 1);
            Assert.Equal(batch * fewer, minibatch);
            Assert.Equal(steps, EpochPlanSettings.StepsPerEpoch(1000, 2, minibatch));
            Assert.Equal(2, steps);
        }
    }

    /// <summary>
    /// More workers than training samples leave some with an empty shard: 16 workers on 10 samples trained with 6 idle
    /// workers, and nothing said so.
    /// </summary>
    [Theory]
    [InlineData(10, 16, "16 workers share 10 training samples: 6 of them get no sample and compute nothing in any epoch. " +
        "Use at most 10 workers (Training:Workers; in cluster mode, fewer worker nodes), or more training data.")]
    [InlineData(1, 2, "2 workers share 1 training sample: 1 of them gets no sample and computes nothing in any epoch. " +
        "Use at most 1 worker (Training:Workers; in cluster mode, fewer worker nodes), or more training data.")]
    [InlineData(10, 10, null)]
    [InlineData(1, 1, null)]
    public void More_workers_than_training_samples_are_warned_of(int samples, int workers, string? expected)
    {
        Assert.Equal(expected, TrainCommand.WorkersOutnumberSamples(samples, workers));
        var options = TestData.Options(TestData.Mlp(16, 10), workers: workers, batch: 64, epochs: 1);
        var train = new Core.Data.LabeledDataset(new float[samples * 784], [.. Enumerable.Range(0, samples).Select(i => (byte)(i % 10))], 784, classCount: 10, null);
        Assert.Equal(expected is not null, TrainCommand.RunWarnings(options, train).Contains(expected));
        // The plan agrees: that many workers have no minibatch in the epoch.
        Assert.Equal(Math.Max(0, workers - samples), new Core.Data.ShardPlanner(samples, workers, 1).Plan(1).Count(shard => shard.Length == 0));
    }

    /// <summary>
    /// A minibatch per worker as large as its shard makes every epoch one step, of fewer samples than configured: 16 workers
    /// with 64 each on 105 samples trained one step of about 7 samples per worker each epoch, and nothing said so. The
    /// minibatch it suggests makes at least 2 steps: 3 samples over 2 workers (shards of at most 2) were told "Set
    /// BatchSizePerWorker to 1 or less", which allows 0.
    /// </summary>
    [Theory]
    [InlineData(TrainingMode.Sync, 105, 16, 64, 4, "Training:BatchSizePerWorker = 64 is at least a worker's shard of the epoch (at most 7 of the 105 training samples, " +
        "over 16 workers): every epoch is a single step over the whole training set, so the run takes 3 steps, each minibatch a worker's whole shard, smaller than configured. " +
        "Set BatchSizePerWorker to 4 for 2 steps per epoch (minibatches of 4 and 3 samples in the largest shard), or lower for more steps, or use fewer workers (Training:Workers; in cluster mode, fewer worker nodes; 1 for full-batch gradient descent).")]
    [InlineData(TrainingMode.Async, 1000, 2, 500, 250, "Training:BatchSizePerWorker = 500 is at least a worker's shard of the epoch (500 of the 1,000 training samples, " +
        "over 2 workers): each worker pushes once per epoch, its whole shard, so the run takes 6 steps, each minibatch a worker's whole shard, as configured. " +
        "Set BatchSizePerWorker to 250 for 2 steps per epoch (minibatches of 250 samples), or lower for more steps, or use fewer workers (Training:Workers; in cluster mode, fewer worker nodes; 1 for full-batch gradient descent).")]
    [InlineData(TrainingMode.Sync, 3, 2, 16, 1, "Training:BatchSizePerWorker = 16 is at least a worker's shard of the epoch (at most 2 of the 3 training samples, " +
        "over 2 workers): every epoch is a single step over the whole training set, so the run takes 3 steps, each minibatch a worker's whole shard, smaller than configured. " +
        "Set BatchSizePerWorker to 1 for 2 steps per epoch (minibatches of 1 sample in the largest shard), or use fewer workers (Training:Workers; in cluster mode, fewer worker nodes; 1 for full-batch gradient descent).")]
    [InlineData(TrainingMode.Sync, 6, 2, 8, 2, "Training:BatchSizePerWorker = 8 is at least a worker's shard of the epoch (3 of the 6 training samples, " +
        "over 2 workers): every epoch is a single step over the whole training set, so the run takes 3 steps, each minibatch a worker's whole shard, smaller than configured. " +
        "Set BatchSizePerWorker to 2 for 2 steps per epoch (minibatches of 2 and 1 sample), or lower for more steps, or use fewer workers (Training:Workers; in cluster mode, fewer worker nodes; 1 for full-batch gradient descent).")]
    [InlineData(TrainingMode.Sync, 7, 2, 8, 2, "Training:BatchSizePerWorker = 8 is at least a worker's shard of the epoch (at most 4 of the 7 training samples, " +
        "over 2 workers): every epoch is a single step over the whole training set, so the run takes 3 steps, each minibatch a worker's whole shard, smaller than configured. " +
        "Set BatchSizePerWorker to 2 for 2 steps per epoch (minibatches of 2 samples in the largest shard), or lower for more steps, or use fewer workers (Training:Workers; in cluster mode, fewer worker nodes; 1 for full-batch gradient descent).")]
    // A minibatch of exactly the shard is as configured: 1,346 samples over 2 workers in minibatches of 673 were said to be
    // "smaller than configured". With shards of 4 and 3, only the smaller one is.
    [InlineData(TrainingMode.Sync, 1346, 2, 673, 337, "Training:BatchSizePerWorker = 673 is at least a worker's shard of the epoch (673 of the 1,346 training samples, " +
        "over 2 workers): every epoch is a single step over the whole training set, so the run takes 3 steps, each minibatch a worker's whole shard, as configured. " +
        "Set BatchSizePerWorker to 337 for 2 steps per epoch (minibatches of 337 and 336 samples), or lower for more steps, or use fewer workers (Training:Workers; in cluster mode, fewer worker nodes; 1 for full-batch gradient descent).")]
    [InlineData(TrainingMode.Sync, 7, 2, 4, 2, "Training:BatchSizePerWorker = 4 is at least a worker's shard of the epoch (at most 4 of the 7 training samples, " +
        "over 2 workers): every epoch is a single step over the whole training set, so the run takes 3 steps, each minibatch a worker's whole shard: 4 samples as configured, " +
        "or 3 on 1 of the 2 workers. " +
        "Set BatchSizePerWorker to 2 for 2 steps per epoch (minibatches of 2 samples in the largest shard), or lower for more steps, or use fewer workers (Training:Workers; in cluster mode, fewer worker nodes; 1 for full-batch gradient descent).")]
    [InlineData(TrainingMode.Sync, 11, 4, 3, 2, "Training:BatchSizePerWorker = 3 is at least a worker's shard of the epoch (at most 3 of the 11 training samples, " +
        "over 4 workers): every epoch is a single step over the whole training set, so the run takes 3 steps, each minibatch a worker's whole shard: 3 samples as configured, " +
        "or 2 on 1 of the 4 workers. " +
        "Set BatchSizePerWorker to 2 for 2 steps per epoch (minibatches of 2 and 1 sample in the largest shard), or lower for more steps, or use fewer workers (Training:Workers; in cluster mode, fewer worker nodes; 1 for full-batch gradient descent).")]
    // An epoch of 30 samples over 2 workers in minibatches of 15: "7 or less" before, which cuts each shard into 7, 7 and 1
    // (3 steps, the last of one sample); 8 cuts it into 8 and 7.
    [InlineData(TrainingMode.Sync, 30, 2, 15, 8, "Training:BatchSizePerWorker = 15 is at least a worker's shard of the epoch (15 of the 30 training samples, " +
        "over 2 workers): every epoch is a single step over the whole training set, so the run takes 3 steps, each minibatch a worker's whole shard, as configured. " +
        "Set BatchSizePerWorker to 8 for 2 steps per epoch (minibatches of 8 and 7 samples), or lower for more steps, or use fewer workers (Training:Workers; in cluster mode, fewer worker nodes; 1 for full-batch gradient descent).")]
    [InlineData(TrainingMode.Sync, 120, 1, 200, 0, null)] // full-batch gradient descent, as configs/sklearn-iris.json chooses
    [InlineData(TrainingMode.Sync, 1000, 2, 499, 0, null)] // 2 steps per epoch
    [InlineData(TrainingMode.Sync, 3, 4, 64, 0, null)] // a shard of one sample: no smaller minibatch to suggest (more workers than samples is warned of)
    public void A_minibatch_as_large_as_the_shard_is_warned_of(TrainingMode mode, int samples, int workers, int batch, int suggested, string? expected)
    {
        var options = TestData.Options(TestData.Mlp(16, 10), workers: workers, batch: batch, epochs: 3);
        options.Training.Mode = mode;
        Assert.Equal(expected, TrainCommand.MinibatchCoversShard(options, samples, workers));
        var train = new Core.Data.LabeledDataset(new float[samples * 784], [.. Enumerable.Range(0, samples).Select(i => (byte)(i % 10))], 784, classCount: 10, null);
        Assert.Equal(expected is not null, TrainCommand.RunWarnings(options, train).Contains(expected));
        // The plan agrees with the fix: the minibatch suggested is a valid one (at least 1), makes the 2 steps per epoch it says,
        // and is the smallest that does (one fewer makes 3 or more, the last a runt), so the two are even; the minibatches it
        // names are the largest of the planner's shards cut at it.
        if (expected is not null)
        {
            Assert.Equal(suggested.ToString(System.Globalization.CultureInfo.InvariantCulture),
                System.Text.RegularExpressions.Regex.Match(expected, @"Set BatchSizePerWorker to (\d+)").Groups[1].Value);
            Assert.InRange(suggested, 1, batch - 1);
            Assert.Equal(2, EpochPlanSettings.StepsPerEpoch(samples, workers, suggested));
            if (suggested > 1) Assert.InRange(EpochPlanSettings.StepsPerEpoch(samples, workers, suggested - 1), 3, int.MaxValue);
            var largest = new Core.Data.ShardPlanner(samples, workers, 1).Plan(1).Max(shard => shard.Length);
            var split = System.Text.RegularExpressions.Regex.Match(expected, @"\(minibatches of (\d+)(?: and (\d+))? samples?");
            var first = int.Parse(split.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            var second = split.Groups[2].Success ? int.Parse(split.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture) : first;
            Assert.Equal((suggested, largest - suggested), (first, second));
        }
        options.Training.AccumulationSteps = 2; // accumulation's own warning covers it then
        Assert.Null(TrainCommand.MinibatchCoversShard(options, samples, workers));
        options.Training.AccumulationSteps = 1;
        options.Training.Mode = TrainingMode.LocalSgd; // and local SGD's LocalSteps warning (4 local steps outlast the one-step epoch)
        options.Training.LocalSteps = 4;
        if (expected is not null) Assert.NotNull(TrainCommand.LocalStepsOutlastEpoch(options, samples, workers));
        Assert.Null(TrainCommand.MinibatchCoversShard(options, samples, workers));
    }

    [Theory]
    // 1,000 samples over 4 workers in minibatches of 16: 250 each, 16 steps per epoch (the last of 10 samples).
    [InlineData(10_000, 1, 16, "Training:LocalSteps = 10,000 is more than the 16 steps of an epoch (250 samples per worker in minibatches of 16): a worker's local " +
        "steps end with its shard, so the models are averaged only at each epoch's end, and LocalSteps above 16 changes nothing. Set LocalSteps below 16 to " +
        "average within epochs too, or to 16 to average once per epoch as now.")]
    // Accumulation counts: minibatches of 16 × 4 = 64 make 4 steps per epoch.
    [InlineData(5, 4, 16, "Training:LocalSteps = 5 is more than the 4 steps of an epoch (250 samples per worker in minibatches of 64): a worker's local " +
        "steps end with its shard, so the models are averaged only at each epoch's end, and LocalSteps above 4 changes nothing. Set LocalSteps below 4 to " +
        "average within epochs too, or to 4 to average once per epoch as now.")]
    [InlineData(2, 1, 250, "Training:LocalSteps = 2 is more than the 1 step of an epoch (250 samples per worker in minibatches of 250): a worker's local " +
        "steps end with its shard, so the models are averaged only at each epoch's end, and LocalSteps above 1 changes nothing. Set LocalSteps to 1: with " +
        "one step per epoch, every step is averaged.")]
    [InlineData(16, 1, 16, null)]
    [InlineData(4, 4, 16, null)]
    public void Local_steps_that_outlast_the_epoch_are_warned_of(int localSteps, int accumulation, int batch, string? expected)
    {
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 4, batch: batch, epochs: 2);
        options.Training.Mode = TrainingMode.LocalSgd;
        options.Training.LocalSteps = localSteps;
        options.Training.AccumulationSteps = accumulation;
        Assert.Equal(expected, TrainCommand.LocalStepsOutlastEpoch(options, trainSamples: 1000, workers: 4));
        options.Training.Mode = TrainingMode.Sync; // LocalSteps is then unused, which UnusedSettings says
        Assert.Null(TrainCommand.LocalStepsOutlastEpoch(options, trainSamples: 1000, workers: 4));
    }

    [Fact]
    public void A_warmup_counts_the_steps_that_gradient_accumulation_leaves()
    {
        // 1,000 samples over 2 workers in minibatches of 50 × 4 = 200: 3 steps per epoch, 9 in 3 epochs. Counting micro-batches
        // of 50 (10 per epoch) gave 30 steps, and a warmup of 20 went unwarned.
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 3);
        options.Training.AccumulationSteps = 4;
        options.Optimizer.Schedule.WarmupSteps = 20;
        Assert.Equal("Optimizer:Schedule:WarmupSteps = 20 is not less than this run's 9 steps (3 epochs of 3), so the learning rate stays below " +
            "Optimizer:LearningRate for the whole run. Lower WarmupSteps, or train longer.", TrainCommand.WarmupOutlastsRun(options, trainSamples: 1000));
        options.Optimizer.Schedule.WarmupSteps = 8;
        Assert.Null(TrainCommand.WarmupOutlastsRun(options, trainSamples: 1000));
    }

    [Theory]
    [InlineData(5, 5, "Training:EarlyStopping:Patience = 5 is not less than Training:Epochs = 5: the earliest early stop comes after epoch 6, so it cannot end this run early. Lower Patience, or train longer.")]
    [InlineData(9, 5, "Training:EarlyStopping:Patience = 9 is not less than Training:Epochs = 5: the earliest early stop comes after epoch 10, so it cannot end this run early. Lower Patience, or train longer.")]
    [InlineData(4, 5, null)]
    [InlineData(0, 5, null)]
    public void A_patience_as_long_as_the_run_is_warned_of(int patience, int epochs, string? expected)
    {
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 1, batch: 50, epochs: epochs);
        options.Training.EarlyStopping.Patience = patience;
        Assert.Equal(expected, TrainCommand.PatienceOutlastsRun(options.Training));
    }

    [Theory]
    [InlineData(30, 10, "Optimizer:Schedule:StepEpochs = 30 is not less than Training:Epochs = 10: the first decay by Gamma would come at the start of epoch 31, so the Step schedule keeps Optimizer:LearningRate for the whole run. Lower StepEpochs (such as 3), or train longer.")]
    [InlineData(5, 5, "Optimizer:Schedule:StepEpochs = 5 is not less than Training:Epochs = 5: the first decay by Gamma would come at the start of epoch 6, so the Step schedule keeps Optimizer:LearningRate for the whole run. Lower StepEpochs (such as 1), or train longer.")]
    [InlineData(1, 1, "Optimizer:Schedule:Kind = Step cannot decay within a single epoch (Training:Epochs = 1): it changes the rate only at the start of an epoch, the first time at the start of epoch 2, so the run keeps Optimizer:LearningRate throughout. Train for more epochs than StepEpochs, or set Kind to Cosine, which decays step by step within the epoch (Exponential, like Step, changes the rate only from one epoch to the next).")]
    [InlineData(4, 5, null)]
    public void A_Step_schedule_that_never_decays_in_the_run_is_warned_of(int stepEpochs, int epochs, string? expected)
    {
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 1, batch: 50, epochs: epochs);
        options.Optimizer.Schedule.Kind = LearningRateScheduleKind.Step;
        options.Optimizer.Schedule.StepEpochs = stepEpochs;
        Assert.Equal(expected, TrainCommand.StepScheduleNeverDecays(options));
        // The warning agrees with the schedule: the run's last epoch has the base rate exactly when it is given.
        var schedule = new LearningRateSchedule(options.Optimizer.Schedule);
        Assert.Equal(expected is not null, schedule.At(SchedulePosition.Uniform(epochs - 1, stepsPerEpoch: 1), epochs, 0.1) == 0.1);
        if (epochs == 1)
        {
            // What the one-epoch message says of the other schedules: at the last of 10 steps Cosine has decayed, Exponential has not.
            var lastStep = SchedulePosition.Uniform(9, stepsPerEpoch: 10);
            options.Optimizer.Schedule.Kind = LearningRateScheduleKind.Cosine;
            Assert.Equal(0.1 * (1 + Math.Cos(Math.PI * 0.9)) / 2, new LearningRateSchedule(options.Optimizer.Schedule).At(lastStep, epochs, 0.1), 12);
            options.Optimizer.Schedule.Kind = LearningRateScheduleKind.Exponential;
            Assert.Equal(0.1, new LearningRateSchedule(options.Optimizer.Schedule).At(lastStep, epochs, 0.1));
        }
        options.Optimizer.Schedule.Kind = LearningRateScheduleKind.Exponential;
        Assert.Null(TrainCommand.StepScheduleNeverDecays(options));
    }

    [Fact]
    public void A_momentum_that_Adam_ignores_and_classes_without_a_training_sample_are_warned_of()
    {
        var options = TestData.Options(TestData.Mlp(16, 4), workers: 2, batch: 50, epochs: 2); // SGD, momentum 0.9: no warning
        var oneBased = new Core.Data.LabeledDataset(new float[600 * 784], [.. Enumerable.Range(0, 600).Select(i => (byte)(1 + i % 3))], 784, classCount: 4, null);
        var complete = new Core.Data.LabeledDataset(new float[400 * 784], [.. Enumerable.Range(0, 400).Select(i => (byte)(i % 4))], 784, classCount: 4, null); // 4 steps an epoch
        Assert.Empty(TrainCommand.RunWarnings(options, complete));
        Assert.Equal(["1 of the 4 classes has no training sample (class 0): the model keeps an output for each, which training only pushes down. " +
            "Labels that start at 1 leave class 0 empty: write them from 0 (subtract 1), as class indices are 0-based."], TrainCommand.RunWarnings(options, oneBased));
        // One sample of class 3: classes 0 to 2 are empty, which is a small subset, not labels written from 1.
        var one = new Core.Data.LabeledDataset(new float[784], [3], 784, classCount: 4, null);
        Assert.Equal(["3 of the 4 classes have no training sample (classes 0, 1, 2): the model keeps an output for each, which training only pushes down."],
            TrainCommand.RunWarnings(options, one).Where(w => !w.StartsWith("2 workers share 1 training sample", StringComparison.Ordinal)));
        var named = new Core.Data.LabeledDataset(new float[2 * 784], [0, 0], 784, classCount: 3, ["cat", "dog", "emu"]);
        Assert.Equal(["2 of the 3 classes have no training sample (classes 'dog', 'emu'): the model keeps an output for each, which training only pushes down."],
            TrainCommand.RunWarnings(options, named));

        options.Optimizer.Kind = OptimizerKind.Adam;
        options.Optimizer.LearningRate = 0.001;
        Assert.Equal(["Optimizer:Momentum = 0.9 is not used by Optimizer:Kind Adam, whose first moment decays by Optimizer:Beta1 (0.9) instead. Remove Momentum, or set Kind Sgd to use it."],
            TrainCommand.RunWarnings(options, complete));
        options.Optimizer.Momentum = 0;
        Assert.Empty(TrainCommand.RunWarnings(options, complete));

        // Schedule settings the schedule's kind does not use.
        options.Optimizer.Schedule.Gamma = 0.5;
        options.Optimizer.Schedule.MinLearningRate = 1e-5;
        Assert.Equal(["Optimizer:Schedule:Gamma = 0.5 is not used by Optimizer:Schedule:Kind Constant, only by Step or Exponential. Set Kind to Step or Exponential, or remove Gamma.",
            "Optimizer:Schedule:MinLearningRate = 1E-05 is not used by Optimizer:Schedule:Kind Constant, only by Cosine. Set Kind to Cosine, or remove MinLearningRate."],
            TrainCommand.RunWarnings(options, complete));
        options.Optimizer.Schedule.Kind = LearningRateScheduleKind.Exponential;
        options.Optimizer.Schedule.StepEpochs = 1; // below the 2 epochs, so Step decays in the run
        Assert.Equal(["Optimizer:Schedule:StepEpochs = 1 is not used by Optimizer:Schedule:Kind Exponential, only by Step. Set Kind to Step, or remove StepEpochs.",
            "Optimizer:Schedule:MinLearningRate = 1E-05 is not used by Optimizer:Schedule:Kind Exponential, only by Cosine. Set Kind to Cosine, or remove MinLearningRate."],
            TrainCommand.RunWarnings(options, complete));
        options.Optimizer.Schedule.Kind = LearningRateScheduleKind.Step;
        options.Optimizer.Schedule.MinLearningRate = 0;
        Assert.Empty(TrainCommand.RunWarnings(options, complete));
    }

    [Fact]
    public void Settings_that_the_mode_the_optimizer_or_the_compression_does_not_use_are_warned_of()
    {
        var options = TestData.Options(TestData.Mlp(16, 4), workers: 2, batch: 50, epochs: 2, momentum: 0); // Sync, Sgd, no compression
        var complete = new Core.Data.LabeledDataset(new float[400 * 784], [.. Enumerable.Range(0, 400).Select(i => (byte)(i % 4))], 784, classCount: 4, null); // 4 steps an epoch
        Assert.Empty(TrainCommand.RunWarnings(options, complete));

        // Each of these trained as if it were not set, without a word.
        options.Training.LocalSteps = 8;
        options.Training.StalenessBound = 5;
        options.Training.StalenessAwareLearningRate = true;
        options.Cluster.TopKRatio = 0.5;
        options.Cluster.TopKScope = Core.Compression.TopKScope.PerTensor;
        options.Cluster.MomentumCorrection = false;
        options.Cluster.ErrorFeedback = false;
        options.Optimizer.Beta1 = 0.5;
        options.Optimizer.Beta2 = 0.9;
        options.Optimizer.Epsilon = 1e-6;
        options.Optimizer.Alpha = 0.9;
        Assert.Equal([
            "Optimizer:Beta1 = 0.5 is not used by Optimizer:Kind Sgd, only by Adam or AdamW. Set Kind to Adam or AdamW, or remove Beta1.",
            "Optimizer:Beta2 = 0.9 is not used by Optimizer:Kind Sgd, only by Adam or AdamW. Set Kind to Adam or AdamW, or remove Beta2.",
            "Optimizer:Epsilon = 1E-06 is not used by Optimizer:Kind Sgd, only by Adam, AdamW or RMSProp. Set Kind to Adam, AdamW or RMSProp, or remove Epsilon.",
            "Optimizer:Alpha = 0.9 is not used by Optimizer:Kind Sgd, only by RMSProp. Set Kind to RMSProp, or remove Alpha.",
            "Training:StalenessBound = 5 is not used by Training:Mode Sync, only by BoundedStaleness. Set Mode to BoundedStaleness, or remove StalenessBound.",
            "Training:StalenessAwareLearningRate = true is not used by Training:Mode Sync, only by Async or BoundedStaleness. Set Mode to Async or BoundedStaleness, or remove StalenessAwareLearningRate.",
            "Training:LocalSteps = 8 is not used by Training:Mode Sync, only by LocalSgd. Set Mode to LocalSgd, or remove LocalSteps.",
            "Cluster:TopKRatio = 0.5 is not used by Cluster:Compression None, only by TopK. Set Compression to TopK, or remove TopKRatio.",
            "Cluster:TopKScope = PerTensor is not used by Cluster:Compression None, only by TopK. Set Compression to TopK, or remove TopKScope.",
            "Cluster:MomentumCorrection = false is not used by Cluster:Compression None, only by TopK. Set Compression to TopK, or remove MomentumCorrection.",
            "Cluster:ErrorFeedback = false is not used by Cluster:Compression None, only by Float16, BFloat16 or TopK. Set Compression to Float16, BFloat16 or TopK, or remove ErrorFeedback.",
        ], TrainCommand.RunWarnings(options, complete));

        // Where they are used, none is warned of: BoundedStaleness uses the bound and the staleness-aware rate, TopK its settings,
        // RMSProp Alpha and Epsilon, Adam the betas (Alpha and LocalSteps are left over, each in its own line).
        options.Training.Mode = Core.Configuration.TrainingMode.BoundedStaleness;
        options.Cluster.Compression = Core.Compression.GradientCompression.TopK;
        options.Optimizer.Kind = OptimizerKind.RMSProp;
        Assert.Equal([
            "Optimizer:Beta1 = 0.5 is not used by Optimizer:Kind RMSProp, only by Adam or AdamW. Set Kind to Adam or AdamW, or remove Beta1.",
            "Optimizer:Beta2 = 0.9 is not used by Optimizer:Kind RMSProp, only by Adam or AdamW. Set Kind to Adam or AdamW, or remove Beta2.",
            "Training:LocalSteps = 8 is not used by Training:Mode BoundedStaleness, only by LocalSgd. Set Mode to LocalSgd, or remove LocalSteps.",
        ], TrainCommand.RunWarnings(options, complete));
        options.Optimizer.Kind = OptimizerKind.Adam;
        options.Optimizer.LearningRate = 0.001;
        options.Training.LocalSteps = 4;
        Assert.Equal(["Optimizer:Alpha = 0.9 is not used by Optimizer:Kind Adam, only by RMSProp. Set Kind to RMSProp, or remove Alpha."],
            TrainCommand.RunWarnings(options, complete));

        // The linear scaling rule in Async, where a step applies one worker's minibatch.
        var scaled = TestData.Options(TestData.Mlp(16, 4), workers: 2, batch: 50, epochs: 2, momentum: 0);
        scaled.Optimizer.ScaleLearningRateByWorkers = true;
        Assert.Empty(TrainCommand.RunWarnings(scaled, complete));
        scaled.Training.Mode = Core.Configuration.TrainingMode.Async;
        Assert.Equal(["Optimizer:ScaleLearningRateByWorkers = true is not used by Training:Mode Async, whose steps each apply one worker's minibatch, " +
            "only by Sync, BoundedStaleness or LocalSgd. Set Training:Mode to one of those, or remove ScaleLearningRateByWorkers."],
            TrainCommand.RunWarnings(scaled, complete));
    }

    /// <summary>
    /// TopK with error feedback and Nesterov momentum SGD: Cluster:MomentumCorrection (on by default) does not cover Nesterov, so
    /// the parameter server applies the momentum to the sparse updates, which costs accuracy. That was said only in the start-up
    /// line on the compression; it is a warning, and only where the correction would otherwise apply.
    /// </summary>
    [Fact]
    public void TopK_with_Nesterov_momentum_warns_that_momentum_correction_is_off()
    {
        var complete = new Core.Data.LabeledDataset(new float[400 * 784], [.. Enumerable.Range(0, 400).Select(i => (byte)(i % 4))], 784, classCount: 4, null); // 4 steps an epoch
        var options = TestData.Options(TestData.Mlp(16, 4), workers: 2, batch: 50, epochs: 2, momentum: 0.9);
        options.Optimizer.Nesterov = true;
        Assert.Empty(TrainCommand.RunWarnings(options, complete)); // no compression: nothing to correct
        options.Cluster.Compression = Core.Compression.GradientCompression.TopK;
        Assert.Equal(["Cluster:MomentumCorrection is off in this run: it does not support Optimizer:Nesterov, so the parameter server applies Nesterov " +
            "momentum 0.9 to the sparse TopK updates, whose elements held back in the error-feedback residual it then keeps applying for many steps; " +
            "this costs accuracy (TopK 1% without the correction ended 1.5 points lower on the Fashion-MNIST MLP). Set Optimizer:Nesterov to false " +
            "to use the correction, or Cluster:Compression to None, Float16 or BFloat16."], TrainCommand.RunWarnings(options, complete));
        Assert.EndsWith("with error feedback; momentum correction off: it does not support Optimizer:Nesterov", options.DescribeCompression());
        options.Optimizer.Nesterov = false; // the correction applies
        Assert.Empty(TrainCommand.RunWarnings(options, complete));
        options.Optimizer.Nesterov = true;
        options.Cluster.MomentumCorrection = false; // turned off on purpose: nothing to warn of
        Assert.Empty(TrainCommand.RunWarnings(options, complete));
    }

    /// <summary>
    /// The initializer's settings its kind does not read, a warmup start factor without warmup, an early-stopping MinDelta
    /// with early stopping off and gradient-norm thresholds with the measurements off trained as if unset, without a word.
    /// </summary>
    [Fact]
    public void Initializer_warmup_early_stopping_and_monitoring_settings_that_are_not_used_are_warned_of()
    {
        var options = TestData.Options(TestData.Mlp(16, 4), workers: 2, batch: 50, epochs: 2, momentum: 0);
        var complete = new Core.Data.LabeledDataset(new float[400 * 784], [.. Enumerable.Range(0, 400).Select(i => (byte)(i % 4))], 784, classCount: 4, null); // 4 steps an epoch
        Assert.Empty(TrainCommand.RunWarnings(options, complete));

        var init = options.Model.Initializer; // HeNormal
        init.NormalStd = 0.1;
        init.UniformRange = 0.2;
        init.Constant = 0.5;
        Assert.Equal([
            "Model:Initializer:NormalStd = 0.1 is not used by Model:Initializer:Kind HeNormal, only by Normal; HeNormal scales its spread by each layer's fans and Model:Initializer:Gain instead. Set Kind to Normal, or remove NormalStd.",
            "Model:Initializer:UniformRange = 0.2 is not used by Model:Initializer:Kind HeNormal, only by Uniform; HeNormal scales its spread by each layer's fans and Model:Initializer:Gain instead. Set Kind to Uniform, or remove UniformRange.",
            "Model:Initializer:Constant = 0.5 is not used by Model:Initializer:Kind HeNormal, only by Constant; HeNormal scales its spread by each layer's fans and Model:Initializer:Gain instead. Set Kind to Constant, or remove Constant.",
        ], TrainCommand.RunWarnings(options, complete));
        options.Model.Initializer = new() { Kind = Core.Initialization.InitializerKind.Normal, Gain = 2, NormalStd = 0.1 };
        Assert.Equal(["Model:Initializer:Gain = 2 is not used by Model:Initializer:Kind Normal, only by HeNormal, HeUniform, XavierNormal or XavierUniform. " +
            "Set Kind to HeNormal, HeUniform, XavierNormal or XavierUniform, or remove Gain."], TrainCommand.RunWarnings(options, complete));
        options.Model.Initializer = new() { Kind = Core.Initialization.InitializerKind.Zeros, Gain = 2, NormalStd = 0.1 };
        Assert.Equal([
            "Model:Initializer:Gain = 2 is not used by Model:Initializer:Kind Zeros, only by HeNormal, HeUniform, XavierNormal or XavierUniform; Zeros sets every weight to 0. " +
                "Set Kind to HeNormal, HeUniform, XavierNormal or XavierUniform, or remove Gain.",
            "Model:Initializer:NormalStd = 0.1 is not used by Model:Initializer:Kind Zeros, only by Normal; Zeros sets every weight to 0. Set Kind to Normal, or remove NormalStd.",
            TrainCommand.SymmetricInitializer(options.Model)!, // a hidden layer: its own warning (LayerWarningTests)
        ], TrainCommand.RunWarnings(options, complete));
        // Each kind's own setting is used: none is warned of.
        options.Model.Initializer = new() { Kind = Core.Initialization.InitializerKind.XavierUniform, Gain = 2 };
        Assert.Empty(TrainCommand.RunWarnings(options, complete));
        options.Model.Initializer = new() { Kind = Core.Initialization.InitializerKind.Uniform, UniformRange = 0.2 };
        Assert.Empty(TrainCommand.RunWarnings(options, complete));
        options.Model.Initializer = new() { Kind = Core.Initialization.InitializerKind.Constant, Constant = 0.5 };
        Assert.Equal([TrainCommand.SymmetricInitializer(options.Model)!], TrainCommand.RunWarnings(options, complete)); // Constant is used; the hidden layer is warned of
        options.Model.Initializer = new();

        options.Optimizer.Schedule.WarmupStartFactor = 0.5;
        options.Training.EarlyStopping.MinDelta = 0.01;
        options.Monitoring.GradientNormEverySteps = 0;
        options.Monitoring.VanishingGradientNorm = 1e-9;
        options.Monitoring.ExplodingGradientNorm = 100;
        options.Monitoring.WarnAfterMeasurements = 5;
        Assert.Equal([
            "Optimizer:Schedule:WarmupStartFactor = 0.5 is not used: Optimizer:Schedule:WarmupSteps is 0, which turns warmup off. Set WarmupSteps to the steps the warmup lasts (such as 100), or remove WarmupStartFactor.",
            "Training:EarlyStopping:MinDelta = 0.01 is not used: Training:EarlyStopping:Patience is 0, which turns early stopping off. Set Patience to the epochs to wait for an improvement (such as 5, with Data:ValidationFraction such as 0.1), or remove MinDelta.",
            "Monitoring:VanishingGradientNorm = 1E-09 is not used: Monitoring:GradientNormEverySteps is 0, which turns the gradient norms and their vanishing and exploding warnings off. Set GradientNormEverySteps (default 10), or remove VanishingGradientNorm.",
            "Monitoring:ExplodingGradientNorm = 100 is not used: Monitoring:GradientNormEverySteps is 0, which turns the gradient norms and their vanishing and exploding warnings off. Set GradientNormEverySteps (default 10), or remove ExplodingGradientNorm.",
            "Monitoring:WarnAfterMeasurements = 5 is not used: Monitoring:GradientNormEverySteps is 0, which turns the gradient norms and their vanishing and exploding warnings off. Set GradientNormEverySteps (default 10), or remove WarnAfterMeasurements.",
        ], TrainCommand.RunWarnings(options, complete));
        // With warmup, early stopping and the measurements on, each is used.
        options.Optimizer.Schedule.WarmupSteps = 1;
        options.Training.EarlyStopping.Patience = 1;
        options.Monitoring.GradientNormEverySteps = 5;
        Assert.Empty(TrainCommand.RunWarnings(options, complete));
    }

    /// <summary>AdamW's Optimizer:L2 is a decoupled decay, not a loss term: the start-up line and the epoch lines say so.</summary>
    [Fact]
    public void AdamW_shows_its_L2_as_weight_decay_in_the_start_up_and_epoch_lines()
    {
        var options = TestData.Options(TestData.Mlp(16, 4), workers: 1, batch: 50, epochs: 2);
        options.Optimizer.L2 = 0.01;
        string Optimizer() => TrainCommand.SettingsLines(options, "1", null, null).Single(line => line.StartsWith("optimizer ", StringComparison.Ordinal));
        var epoch = new EpochSummary(1, 10, 0.5, 0.6, 0.8, 100, 500, 1, 0.1, L2Penalty: 0.0435);
        Assert.Contains(" L1 0 L2 0.01", Optimizer());
        Assert.EndsWith("L2 term 0.0435", Cli.ConsoleProgress.Describe(epoch, 2, options.Optimizer.Kind));
        options.Optimizer.Kind = OptimizerKind.AdamW;
        Assert.Contains(" L1 0 weight decay 0.01", Optimizer());
        Assert.DoesNotContain("L2", Optimizer());
        Assert.EndsWith("decay term 0.0435", Cli.ConsoleProgress.Describe(epoch, 2, options.Optimizer.Kind));
    }

    /// <summary>
    /// The start-up line's schedule gives its counts as the warnings beside it do: warmup steps with thousands separators
    /// ("100,000", as the warmup warning says; it said "100000"), and a Step schedule that decays every epoch says "every epoch"
    /// (it said "every 1 epochs").
    /// </summary>
    [Fact]
    public void The_start_up_line_on_the_schedule_writes_its_counts_as_counts()
    {
        var options = TestData.Options(TestData.Mlp(16, 4), workers: 1, batch: 50, epochs: 2);
        string Schedule() => TrainCommand.SettingsLines(options, "1", null, null).Single(line => line.StartsWith("optimizer ", StringComparison.Ordinal)).Split("; schedule ")[1];
        options.Optimizer.Schedule.WarmupSteps = 100_000;
        Assert.Equal("Constant after 100,000 warmup steps from 0.1×", Schedule());
        options.Optimizer.Schedule.WarmupSteps = 1;
        Assert.Equal("Constant after 1 warmup step from 0.1×", Schedule());
        options.Optimizer.Schedule = new() { Kind = LearningRateScheduleKind.Step, StepEpochs = 1, Gamma = 0.5 };
        Assert.Equal("Step ×0.5 every epoch", Schedule());
        options.Optimizer.Schedule.StepEpochs = 1_500;
        Assert.Equal("Step ×0.5 every 1,500 epochs", Schedule());
    }

    /// <summary>The start-up line names the initializer's own setting when it differs from its default; not the others.</summary>
    [Fact]
    public void The_start_up_line_on_the_initializer_names_the_setting_its_kind_reads_when_changed()
    {
        var options = TestData.Options(TestData.Mlp(16, 4), workers: 2, batch: 50, epochs: 2);
        string Init() => TrainCommand.SettingsLines(options, "2", null, null).Single(line => line.StartsWith("init ", StringComparison.Ordinal)).Split(';')[0];
        Assert.Equal("init HeNormal", Init());
        options.Model.Initializer = new() { Kind = Core.Initialization.InitializerKind.HeNormal, Gain = 2, NormalStd = 0.1 };
        Assert.Equal("init HeNormal, Gain 2", Init());
        options.Model.Initializer = new() { Kind = Core.Initialization.InitializerKind.XavierUniform, Gain = 1.5 };
        Assert.Equal("init XavierUniform, Gain 1.5", Init());
        options.Model.Initializer = new() { Kind = Core.Initialization.InitializerKind.Normal, NormalStd = 0.1, Gain = 2 };
        Assert.Equal("init Normal, NormalStd 0.1", Init());
        options.Model.Initializer = new() { Kind = Core.Initialization.InitializerKind.Normal };
        Assert.Equal("init Normal", Init());
        options.Model.Initializer = new() { Kind = Core.Initialization.InitializerKind.Uniform, UniformRange = 0.2 };
        Assert.Equal("init Uniform, UniformRange 0.2", Init());
        options.Model.Initializer = new() { Kind = Core.Initialization.InitializerKind.Constant, Constant = 0.5 };
        Assert.Equal("init Constant, Constant 0.5", Init());
        options.Model.Initializer = new() { Kind = Core.Initialization.InitializerKind.Constant }; // 0, the default: still named
        Assert.Equal("init Constant, Constant 0", Init());
        options.Model.Initializer = new() { Kind = Core.Initialization.InitializerKind.Zeros, Constant = 0.5 };
        Assert.Equal("init Zeros", Init());
    }

    [Fact]
    public void The_start_up_line_on_the_mode_names_its_own_settings_and_is_left_out_for_Sync()
    {
        var loop = new Core.Configuration.TrainingLoopOptions { StalenessBound = 5, LocalSteps = 8, StalenessAwareLearningRate = true };
        Assert.Null(TrainCommand.DescribeMode(loop));
        loop.Mode = Core.Configuration.TrainingMode.Async;
        Assert.Equal("mode Async, StalenessAwareLearningRate", TrainCommand.DescribeMode(loop));
        loop.Mode = Core.Configuration.TrainingMode.BoundedStaleness;
        Assert.Equal("mode BoundedStaleness, StalenessBound 5, StalenessAwareLearningRate", TrainCommand.DescribeMode(loop));
        loop.Mode = Core.Configuration.TrainingMode.LocalSgd;
        Assert.Equal("mode LocalSgd, LocalSteps 8", TrainCommand.DescribeMode(loop));
    }

    /// <summary>The weights and the summary are written before the report, and a report that cannot be written costs neither.</summary>
    [Fact]
    public async Task A_report_that_cannot_be_written_leaves_the_weights_and_summary_written()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 1);
        var report = new RunReport(NullTrainingObserver.Instance);
        var result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, report).WithTestTimeout();
        Directory.CreateDirectory(Path.Combine(_directory, Core.Checkpoints.RunFiles.Steps)); // a folder where the series should go

        RunOutputs.Save(_directory, options, data.Normalizer, Core.Data.DataMetadata.Of(data, options.Data), result, report);

        Assert.Equal(result.FinalWeights.Values, Core.Models.TrainedModel.Load(Path.Combine(_directory, Core.Checkpoints.RunFiles.Model)).Weights.Values);
        Assert.True(File.Exists(Path.Combine(_directory, Core.Checkpoints.RunFiles.Summary)));

        // In a folder that takes everything, the weights and the summary are written before the curves' plot.
        var whole = Directory.CreateDirectory(Path.Combine(_directory, "whole")).FullName;
        RunOutputs.Save(whole, options, data.Normalizer, Core.Data.DataMetadata.Of(data, options.Data), result, report);
        DateTime Written(string file) => File.GetLastWriteTimeUtc(Path.Combine(whole, file));
        Assert.True(Written(Core.Checkpoints.RunFiles.Model) <= Written(Core.Checkpoints.RunFiles.Summary), "the summary was written before the weights");
        Assert.True(Written(Core.Checkpoints.RunFiles.Summary) <= Written(Core.Checkpoints.RunFiles.Curves), "the curves were written before the summary");
    }

    [Fact]
    public async Task A_run_writes_its_step_and_epoch_series_and_a_png_of_the_curves()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 3);
        options.Optimizer.Schedule = new() { Kind = LearningRateScheduleKind.Exponential, Gamma = 0.5 };
        var report = new RunReport(NullTrainingObserver.Instance);
        var result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, report).WithTestTimeout();
        var png = report.Write(_directory, options.Model.Loss, result);

        var steps = File.ReadAllLines(Path.Combine(_directory, "steps.csv"));
        Assert.Equal("epoch,step,version,samples,train_loss,learning_rate,round_seconds,compute_seconds,update_seconds,messaging_seconds,waiting_seconds", steps[0]);
        Assert.Equal(result.Version, steps.Length - 1); // one row per optimizer step
        // The rate each step used: 0.05 · 0.5^(epoch − 1).
        Assert.All(steps.Skip(1), row => Assert.Equal(0.05 * Math.Pow(0.5, int.Parse(row.Split(',')[0]) - 1), double.Parse(row.Split(',')[5], System.Globalization.CultureInfo.InvariantCulture), 12));
        var epochs = File.ReadAllLines(Path.Combine(_directory, "epochs.csv"));
        Assert.Equal(4, epochs.Length);
        Assert.StartsWith($"3,{result.Version},", epochs[3]);
        var bytes = File.ReadAllBytes(png);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);
        Assert.True(bytes.Length > 10_000, "the plot is suspiciously small");
    }

    /// <summary>An epoch's summary with the figures the plot reads; the others are fixed.</summary>
    private static EpochSummary Epoch(int epoch, double testAccuracy, double validationLoss = double.NaN, double trainLoss = 0.5) =>
        new(epoch, 20L * epoch, trainLoss, 0.6, testAccuracy, 500, 1000, 1, 0.1, ValidationLoss: validationLoss);

    /// <summary>
    /// The plot's title describes the weights the run kept, as the final console line does: after early stopping, the kept
    /// epoch and its test accuracy, not the last epoch's; "1 epoch" in the singular; a resumed run's epochs by number; a
    /// stopped run says why and whose accuracy it gives.
    /// </summary>
    [Fact]
    public void The_curves_title_names_the_kept_epoch_and_its_accuracy_and_counts_epochs_in_the_singular()
    {
        var layout = Core.Models.ModelFactory.Build(TestData.Mlp(16, 10)).Layout;
        var weights = new Core.Tensors.ParameterVector(layout);
        // 13 epochs, early stopping kept epoch 11 (77.20%); the last epoch scored 77.00%.
        var epochs = Enumerable.Range(1, 13).Select(e => Epoch(e, e == 11 ? 0.772 : e == 13 ? 0.77 : 0.75)).ToList();
        var stopped = new TrainingResult(weights, 260, epochs, BestEpoch: 11, StoppedEarly: true);
        Assert.Equal("DistTrain run: 13 epochs, kept epoch 11: test accuracy 77.20%", RunReport.Title(epochs, stopped, stopped: null));
        // Early stopping that kept the last epoch, and a run without it: the final epoch's accuracy.
        Assert.Equal("DistTrain run: 13 epochs, final test accuracy 77.00%", RunReport.Title(epochs, stopped with { BestEpoch = 13 }, stopped: null));
        Assert.Equal("DistTrain run: 13 epochs, final test accuracy 77.00%", RunReport.Title(epochs, stopped with { BestEpoch = null }, stopped: null));

        var one = new List<EpochSummary> { Epoch(1, 0.8123) };
        Assert.Equal("DistTrain run: 1 epoch, final test accuracy 81.23%", RunReport.Title(one, new TrainingResult(weights, 20, one), stopped: null));
        var resumed = new List<EpochSummary> { Epoch(4, 0.8), Epoch(5, 0.81), Epoch(6, 0.825) };
        Assert.Equal("DistTrain run: epochs 4 to 6, final test accuracy 82.50%", RunReport.Title(resumed, new TrainingResult(weights, 120, resumed), stopped: null));
        // A stopped run leads with why; its accuracy is the last finished epoch's, also with early stopping on.
        Assert.Equal("Diverged at epoch 4, step 1 of 32: 3 epochs, test accuracy 20.40% after epoch 3",
            RunReport.Title([Epoch(1, 0.102), Epoch(2, 0.1), Epoch(3, 0.204)], null, "diverged at epoch 4, step 1 of 32"));
        Assert.Equal("Cancelled at epoch 1, step 3 of 5: no epoch finished", RunReport.Title([], null, "cancelled at epoch 1, step 3 of 5"));
    }

    [Theory]
    [InlineData("SoftmaxCrossEntropy", false, "cross-entropy loss")]
    [InlineData("MeanSquaredError", false, "mean squared error")]
    [InlineData("meansquarederror", false, "mean squared error")]
    [InlineData("SoftmaxCrossEntropy", true, "cross-entropy loss (log scale)")]
    public void The_curves_loss_axis_is_named_after_Model_Loss(string loss, bool logScale, string label) =>
        Assert.Equal(label, RunReport.LossAxisLabel(loss, logScale));

    /// <summary>Losses over a million-fold range (a diverging run's) go on a log axis; a converging run's stay linear.</summary>
    [Fact]
    public void Losses_over_many_decades_are_drawn_on_a_log_scale()
    {
        Assert.False(RunReport.UsesLogScale([2.5, 1.2, 0.3, 0.004])); // an ordinary run, down to a small loss
        Assert.False(RunReport.UsesLogScale([0.5, 0, double.NaN, 4e5])); // 0 and NaN do not count: 8e5 apart
        Assert.True(RunReport.UsesLogScale([2.3, 10909.47, 4.05e14, 3.4e35, double.PositiveInfinity]));
        Assert.False(RunReport.UsesLogScale([]));
    }

    /// <summary>
    /// The validation loss, which early stopping decides on, is one of the plot's lines when the run holds out a validation
    /// split (and only its finite points); without one there is no such line.
    /// </summary>
    [Fact]
    public void The_curves_plot_the_validation_loss_when_the_run_has_a_validation_split()
    {
        var validated = new List<EpochSummary> { Epoch(1, 0.7, 0.9), Epoch(2, 0.75, 0.7), Epoch(3, 0.76, 0.8) };
        var lines = RunReport.LossSeries(validated);
        Assert.Equal(["train loss (epoch mean)", "test loss", "validation loss"], lines.Select(l => l.Legend));
        Assert.Equal([1.0, 2, 3], lines[2].Epochs);
        Assert.Equal([0.9, 0.7, 0.8], lines[2].Values);

        var plain = new List<EpochSummary> { Epoch(1, 0.7), Epoch(2, 0.75) };
        Assert.Equal(["train loss (epoch mean)", "test loss"], RunReport.LossSeries(plain).Select(l => l.Legend));
        // An epoch a takeover only evaluated has no train loss: that line skips it rather than carry a NaN.
        var takenOver = RunReport.LossSeries([Epoch(1, 0.7, trainLoss: double.NaN), Epoch(2, 0.75)]);
        Assert.Equal([2.0], takenOver[0].Epochs);
        Assert.Equal([1.0, 2], takenOver[1].Epochs);
    }

    /// <summary>A real early-stopped run with a validation split: epochs.csv holds the validation loss the plot draws.</summary>
    [Fact]
    public async Task An_early_stopped_run_with_a_validation_split_writes_and_plots_its_validation_loss()
    {
        var data = Core.Data.TrainingData.Load(new Core.Configuration.DataOptions { Directory = TestData.SubsetDirectory, ValidationFraction = 0.2 }, seed: 7);
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 2);
        options.Data.ValidationFraction = 0.2;
        options.Training.EarlyStopping.Patience = 1;
        var report = new RunReport(NullTrainingObserver.Instance);
        var result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, report, validation: data.Validation).WithTestTimeout();
        report.Write(_directory, options.Model.Loss, result);

        var rows = File.ReadAllLines(Path.Combine(_directory, Core.Checkpoints.RunFiles.Epochs)).Skip(1)
            .Select(r => double.Parse(r.Split(',')[5], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(result.Epochs.Select(e => e.ValidationLoss), rows);
        Assert.All(rows, loss => Assert.True(double.IsFinite(loss) && loss > 0, $"validation loss {loss}"));
        var validation = Assert.Single(RunReport.LossSeries(report.Epochs), l => l.Legend == "validation loss");
        Assert.Equal(rows, validation.Values);
    }

    /// <summary>An observer that reads the run folder's epochs.csv when an epoch is passed on to it, as the console prints the epoch's line.</summary>
    private sealed class EpochsFileReader(string path) : ITrainingObserver
    {
        public List<(int Epoch, string[]? Lines)> Seen { get; } = [];

        /// <summary>steps.csv beside epochs.csv as each epoch was passed on: its lines, or null when there was none.</summary>
        public List<string[]?> StepsSeen { get; } = [];

        public void EpochStarted(int epoch, int steps, int samples) { }

        public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, DistTrain.Cluster.Protocol.RoundTiming timing) { }

        public void EpochCompleted(EpochSummary summary)
        {
            Seen.Add((summary.Epoch, File.Exists(path) ? File.ReadAllLines(path) : null));
            var steps = Path.Combine(Path.GetDirectoryName(path)!, Core.Checkpoints.RunFiles.Steps);
            StepsSeen.Add(File.Exists(steps) ? File.ReadAllLines(steps) : null);
        }
    }

    /// <summary>
    /// Given the run folder, the report writes epochs.csv and steps.csv after each epoch, before the epoch goes on to the
    /// console, so a process killed after an epoch's line leaves that epoch's rows and steps on disk; each file is the one
    /// the end of the run writes for the same epochs, byte for byte, and no temporary file is left. Before, epochs.csv was
    /// written only at the end, and steps.csv was until later still.
    /// </summary>
    [Fact]
    public void Epochs_and_steps_csv_are_on_disk_after_each_epoch_before_its_line_is_printed_as_the_end_of_the_run_writes_them()
    {
        var run = Directory.CreateDirectory(Path.Combine(_directory, "run")).FullName;
        var path = Path.Combine(run, Core.Checkpoints.RunFiles.Epochs);
        var console = new EpochsFileReader(path);
        var warnings = new List<string>();
        var report = new RunReport(console, run, warnings.Add);

        TwoEpochsAndPartOfTheThird(report, stepsOfEpoch3: 2);

        Assert.Equal([1, 2], console.Seen.Select(s => s.Epoch));
        Assert.Equal(RunReport.EpochsHeader, console.Seen[0].Lines![0]);
        Assert.Equal(["1", "2"], console.Seen[1].Lines!.Skip(1).Select(l => l.Split(',')[0])); // epoch 2's row was there as its line went out
        Assert.Equal(2, console.Seen[0].Lines!.Length); // and epoch 1's alone after epoch 1
        Assert.Equal(report.EpochsCsv(), File.ReadAllText(path));
        // steps.csv: the header and each finished epoch's 4 steps as its line went out (epoch 3's 2 steps came after).
        Assert.Equal([5, 9], console.StepsSeen.Select(lines => lines!.Length));
        Assert.Equal(RunReport.StepsHeader, console.StepsSeen[1]![0]);
        Assert.Equal(["1,0,1,100", "1,3,4,100", "2,0,5,100", "2,3,8,100"],
            console.StepsSeen[1]!.Where((_, i) => i is 1 or 4 or 5 or 8).Select(l => string.Join(',', l.Split(',')[..4])));
        var stepsPath = Path.Combine(run, Core.Checkpoints.RunFiles.Steps);
        var end = Directory.CreateDirectory(Path.Combine(_directory, "end")).FullName;
        report.Write(end, Core.Models.LossTypes.SoftmaxCrossEntropy);
        Assert.Equal(File.ReadAllBytes(Path.Combine(end, Core.Checkpoints.RunFiles.Epochs)), File.ReadAllBytes(path));
        var endSteps = File.ReadAllLines(Path.Combine(end, Core.Checkpoints.RunFiles.Steps));
        Assert.Equal(11, endSteps.Length); // the end adds epoch 3's 2 steps to what epoch 2's write held
        Assert.Equal(console.StepsSeen[1], endSteps[..9]);
        report.Write(run, Core.Models.LossTypes.SoftmaxCrossEntropy); // the end of the run in the same folder: the same files
        Assert.Equal(File.ReadAllBytes(Path.Combine(end, Core.Checkpoints.RunFiles.Epochs)), File.ReadAllBytes(path));
        Assert.Equal(File.ReadAllBytes(Path.Combine(end, Core.Checkpoints.RunFiles.Steps)), File.ReadAllBytes(stepsPath));
        Assert.Empty(Directory.GetFiles(run, "*" + Core.Checkpoints.AtomicFile.TemporarySuffix));
        Assert.Empty(warnings);

        // Without a run folder (as before, and in the tests that build reports) nothing is written until the end.
        var quiet = new EpochsFileReader(Path.Combine(_directory, "none", Core.Checkpoints.RunFiles.Epochs));
        TwoEpochsAndPartOfTheThird(new RunReport(quiet), stepsOfEpoch3: 0);
        Assert.All(quiet.Seen, s => Assert.Null(s.Lines));
        Assert.All(quiet.StepsSeen, Assert.Null);
    }

    /// <summary>
    /// A per-epoch write of epochs.csv that does not finish (a stuck disk, here a writer held up) holds an epoch's report
    /// for at most <see cref="RunReport.EpochsWriteWait"/>, with one warning; the epochs after it do not wait at all, and
    /// once the disk is back the file gets every epoch, and the end of the run's write comes after the held one. The first
    /// version wrote on the reporting thread, which is the coordinator's: a stuck disk held up its stall and stop timeouts.
    /// </summary>
    [Fact]
    public void A_stuck_epochs_csv_write_holds_an_epoch_at_most_the_bounded_wait_and_later_epochs_not_at_all()
    {
        var run = Directory.CreateDirectory(Path.Combine(_directory, "slow")).FullName;
        var path = Path.Combine(run, Core.Checkpoints.RunFiles.Epochs);
        using var disk = new ManualResetEventSlim(initialState: true);
        var warnings = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var report = new RunReport(new EpochsFileReader(path), run, warnings.Enqueue) { EpochsWriteStarting = () => disk.Wait() };
        EpochSummary Epoch(int epoch) => new(epoch, epoch * 10, 0.2, 0.3, 0.75, 100, 350, 1, 0.1);

        report.EpochCompleted(Epoch(1)); // a working disk: written before the report returns
        Assert.Equal(2, File.ReadAllLines(path).Length);
        disk.Reset();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        report.EpochCompleted(Epoch(2));
        var held = clock.Elapsed;
        Assert.InRange(held, RunReport.EpochsWriteWait * 0.9, RunReport.EpochsWriteWait * 20);
        var warning = Assert.Single(warnings);
        Assert.StartsWith($"warning: writing {path} and steps.csv after epoch 2 takes longer than 1 s; training goes on without waiting for it", warning);
        clock.Restart();
        report.EpochCompleted(Epoch(3));
        report.EpochCompleted(Epoch(4));
        Assert.True(clock.Elapsed < RunReport.EpochsWriteWait * 0.5, $"epochs 3 and 4 waited {clock.Elapsed.TotalMilliseconds:F0} ms for a stuck write");
        Assert.Equal(2, File.ReadAllLines(path).Length); // still epoch 1's file
        disk.Set();
        var end = Directory.CreateDirectory(Path.Combine(_directory, "slow-end")).FullName;
        report.Write(end, Core.Models.LossTypes.SoftmaxCrossEntropy); // waits for the held write, which writes epochs 1-4
        Assert.Equal(["1", "2", "3", "4"], File.ReadAllLines(path).Skip(1).Select(l => l.Split(',')[0]));
        Assert.Equal(File.ReadAllBytes(Path.Combine(end, Core.Checkpoints.RunFiles.Epochs)), File.ReadAllBytes(path));
        Assert.Single(warnings);
    }

    /// <summary>
    /// A per-epoch write of epochs.csv that fails (here its folder is gone) does not stop training: every epoch still goes on
    /// to the console, one warning line names the file, the epoch and the cause, later failures add none until a write
    /// succeeded in between, and the next epoch whose write can succeed writes every epoch so far.
    /// </summary>
    [Fact]
    public void A_per_epoch_epochs_csv_that_cannot_be_written_is_one_warning_and_training_goes_on()
    {
        var run = Path.Combine(_directory, "gone");
        var path = Path.Combine(run, Core.Checkpoints.RunFiles.Epochs);
        var console = new EpochsFileReader(path);
        var warnings = new List<string>();
        var report = new RunReport(console, run, warnings.Add);

        var version = TwoEpochsAndPartOfTheThird(report, stepsOfEpoch3: 4);

        Assert.Equal([1, 2], console.Seen.Select(s => s.Epoch));
        var warning = Assert.Single(warnings);
        Assert.StartsWith($"warning: {path} could not be written after epoch 1 (", warning);
        Assert.Contains("does not exist", warning); // the cause
        Assert.Contains("training goes on. Free space on that disk or check its permissions", warning);

        Directory.CreateDirectory(run); // the problem is fixed: epoch 3 writes all three
        report.EpochCompleted(new EpochSummary(3, version, 0.2, 0.3, 0.75, 100, 350, 1, 0.1));
        Assert.Equal(["1", "2", "3"], File.ReadAllLines(path).Skip(1).Select(l => l.Split(',')[0]));
        Assert.Single(warnings);

        Directory.Delete(run, recursive: true); // and fails again: a new warning, for epoch 4
        report.EpochCompleted(new EpochSummary(4, version, 0.2, 0.3, 0.75, 100, 350, 1, 0.1));
        Assert.Equal(2, warnings.Count);
        Assert.StartsWith($"warning: {path} could not be written after epoch 4 (", warnings[1]);
        Assert.Equal([1, 2, 3, 4], console.Seen.Select(s => s.Epoch));
    }

    /// <summary>
    /// A per-epoch steps.csv holds the steps up to the end of the newest finished epoch, also when its write starts late (a
    /// slow disk) and steps of the next epoch were applied meanwhile: those are not the finished epochs' records.
    /// </summary>
    [Fact]
    public void A_late_per_epoch_steps_csv_write_holds_the_finished_epochs_steps_only()
    {
        var run = Directory.CreateDirectory(Path.Combine(_directory, "late")).FullName;
        var steps = Path.Combine(run, Core.Checkpoints.RunFiles.Steps);
        using var disk = new ManualResetEventSlim(initialState: false);
        var report = new RunReport(NullTrainingObserver.Instance, run, _ => { }) { EpochsWriteStarting = () => disk.Wait() };
        report.EpochStarted(1, 4, 400);
        for (var step = 0; step < 4; step++) report.StepApplied(1, step, step + 1, 100, 0.5, 0.05, default);
        report.EpochCompleted(new EpochSummary(1, 4, 0.5, 0.6, 0.7, 100, 400, 1, 0.1)); // the write waits for the disk
        report.EpochStarted(2, 4, 400);
        for (var step = 0; step < 2; step++) report.StepApplied(2, step, step + 5, 100, 0.4, 0.05, default);
        disk.Set();
        for (var i = 0; i < 200 && !File.Exists(steps); i++) Thread.Sleep(50);
        Assert.Equal(["1,0", "1,1", "1,2", "1,3"], File.ReadAllLines(steps).Skip(1).Select(l => string.Join(',', l.Split(',')[..2])));
    }

    /// <summary>
    /// A per-epoch steps.csv that cannot be written (a folder of that name is in the way) is one warning that names
    /// steps.csv, not epochs.csv, which is still written after each epoch.
    /// </summary>
    [Fact]
    public void A_per_epoch_steps_csv_that_cannot_be_written_is_one_warning_naming_it_and_epochs_csv_is_still_written()
    {
        var run = Directory.CreateDirectory(Path.Combine(_directory, "steps-blocked")).FullName;
        var steps = Directory.CreateDirectory(Path.Combine(run, Core.Checkpoints.RunFiles.Steps)).FullName;
        var path = Path.Combine(run, Core.Checkpoints.RunFiles.Epochs);
        var console = new EpochsFileReader(path);
        var warnings = new List<string>();

        TwoEpochsAndPartOfTheThird(new RunReport(console, run, warnings.Add), stepsOfEpoch3: 0);

        var warning = Assert.Single(warnings);
        Assert.StartsWith($"warning: {steps} could not be written after epoch 1 (", warning);
        Assert.EndsWith("a run that is killed leaves no record of its finished steps there.", warning);
        Assert.Equal(3, console.Seen[1].Lines!.Length); // epochs.csv: the header and epochs 1 and 2
        Assert.Empty(Directory.EnumerateFileSystemEntries(steps));
    }
}
