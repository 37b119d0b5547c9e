using DistTrain.Cluster.Hosting;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Optimization;

namespace DistTrain.Tests;

/// <summary>
/// A resume that would not continue the same run is refused before training, with a message that names the setting, both
/// values and the fix; a checkpoint that cannot be written fails the run naming the file.
/// </summary>
public sealed class ResumeRefusalTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-refusal-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>A 784-8-10 MLP, 2 workers x batch 50 over the 1,000-sample subset: 10 steps per epoch, SGD with momentum.</summary>
    private TrainingOptions Options(int epochs, bool resume, Action<TrainingOptions>? change = null)
    {
        var options = TestData.Options(TestData.Mlp(8, 10), workers: 2, batch: 50, epochs: epochs);
        options.Checkpoint = new CheckpointOptions { Directory = _directory, Keep = 10, Resume = resume };
        change?.Invoke(options);
        return options;
    }

    private static async Task<TrainingResult> Run(TrainingOptions options, List<string>? log = null)
    {
        var data = TestData.Normalized();
        return await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, log: log is null ? null : log.Add).WithTestTimeout();
    }

    /// <summary>One epoch with checkpoints: the directory then holds the checkpoint of step 10, positioned at epoch 2.</summary>
    private async Task<string> FirstEpoch()
    {
        await Run(Options(epochs: 1, resume: false));
        var newest = new CheckpointStore(_directory, 10).List()[0];
        Assert.EndsWith(CheckpointStore.FileName(10, 2, 0), newest);
        return newest;
    }

    [Fact]
    public async Task A_digest_the_caller_computed_is_the_one_the_checkpoints_record()
    {
        // The train command computes the digest once for its own resume check and hands it over (instead of a second
        // 0.1 s pass over the samples): the checkpoints record what it was given.
        var data = TestData.Normalized();
        await SingleNodeTrainer.RunAsync(Options(epochs: 1, resume: false), data.Train, data.Test, trainDigest: "0123456789abcdef").WithTestTimeout();
        var error = await Assert.ThrowsAsync<CheckpointResumeException>(() => Run(Options(epochs: 2, resume: true)));
        Assert.Contains($"{CheckpointResume.TrainDigestKey} = {data.Train.ContentDigest()}, the checkpoint's is 0123456789abcdef.", error.Message);
    }

    /// <summary>
    /// Each checkpoint records how its build shuffles shards (ShardPlanner.ReferenceDigest). One written by a build that shuffles
    /// otherwise is refused within an epoch, whose rest would be cut from another order, naming both digests and the fix; at
    /// an epoch's end it resumes with a line saying so. (The newest checkpoint is written again with another digest, as another
    /// build would have written it.)
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_checkpoint_of_a_build_that_shuffles_otherwise_is_refused_within_an_epoch_and_resumed_at_its_end(bool withinEpoch)
    {
        await Run(Options(epochs: 1, resume: false, o => o.Checkpoint.EverySteps = 4)); // steps 4 and 8 of 10 within epoch 1
        var store = new CheckpointStore(_directory, 10);
        foreach (var path in store.List().Where(p => p.EndsWith("-r000000.safetensors", StringComparison.Ordinal) == withinEpoch)) File.Delete(path);
        var newest = store.List()[0];
        var here = Core.Data.ShardPlanner.ReferenceDigest;
        Assert.Equal(here, TrainingCheckpoint.Read(newest, ModelLayout()).ShardShuffle);
        var source = TrainingCheckpoint.Read(newest, ModelLayout());
        new TrainingCheckpoint(source.Weights, source.OptimizerState, source.OptimizerKind, source.OptimizerSteps, source.Version, source.Epoch,
            source.Round, source.ShardSeed, source.Workers, source.BatchSizePerWorker, source.EpochSamples, source.EpochLossSum, source.JobId,
            source.OptimizerHyperparameters, source.Mode, source.TrainedAhead, source.TrainSamples)
        {
            DataSettings = source.DataSettings, ModelSettings = source.ModelSettings, RunEpochs = source.RunEpochs, ShardShuffle = "0123456789abcdef",
        }.Write(newest, source.WrittenAt!.Value);
        Assert.Equal("0123456789abcdef", TrainingCheckpoint.Read(newest, ModelLayout()).ShardShuffle);

        var differs = $"Checkpoint {newest} was written by a build that shuffles each epoch's shards otherwise (ShardShuffle 0123456789abcdef, " +
            $"this build's {here}: another DistTrain version or .NET runtime)";
        if (withinEpoch)
        {
            var error = await Assert.ThrowsAsync<CheckpointResumeException>(() => Run(Options(epochs: 2, resume: true)));
            Assert.Equal($"{differs}, and it was written within epoch 1 (round 8), whose rest would be cut from another order: some samples " +
                "trained twice, others never. Resume with the DistTrain version and .NET runtime that wrote it, or move the checkpoints written " +
                "within an epoch (names ending in -r and a round other than 000000) out of the folder, so that the newest left is at an epoch's end.",
                error.Message);
            return;
        }
        var log = new List<string>();
        var result = await Run(Options(epochs: 2, resume: true), log);
        Assert.Contains($"{differs}. It was written at an epoch's end, so it resumes, and the next epochs use this build's order: every sample is " +
            "still trained once per epoch, but the run will not repeat an uninterrupted one sample for sample.", log);
        Assert.Equal(2, result.FinalEpoch.Epoch);
    }

    public static TheoryData<string, string> ChangedDataOrder => new()
    {
        { "seed", "Training:Seed = 8, the checkpoint's is 7" },
        { "workers", "Training:Workers = 4, the checkpoint's is 2" },
        { "batch", "Training:BatchSizePerWorker = 25, the checkpoint's is 50" },
    };

    [Theory]
    [MemberData(nameof(ChangedDataOrder))]
    public async Task A_resume_with_another_seed_worker_count_or_batch_size_is_refused_naming_both_values(string changed, string expected)
    {
        var checkpoint = await FirstEpoch();
        var options = Options(epochs: 3, resume: true, o =>
        {
            if (changed == "seed") o.Training.Seed = 8;
            if (changed == "workers") o.Training.Workers = 4;
            if (changed == "batch") o.Training.BatchSizePerWorker = 25;
        });
        var error = await Assert.ThrowsAsync<CheckpointResumeException>(() => Run(options));
        Assert.StartsWith($"Checkpoint {checkpoint} does not fit the config: {expected}.", error.Message);
        Assert.Contains("resume with the checkpoint's values", error.Message);
    }

    /// <summary>
    /// The training samples' content is recorded in each checkpoint (a digest): a resume on data with one label or one
    /// pixel changed, or two samples swapped, used to continue without a word, since the count and the settings agree.
    /// </summary>
    [Theory]
    [InlineData("label")]
    [InlineData("pixel")]
    [InlineData("order")]
    public async Task A_resume_on_changed_training_samples_is_refused_naming_both_digests_and_the_fix(string change)
    {
        var checkpoint = await FirstEpoch();
        var data = TestData.Normalized();
        var (features, labels) = (data.Train.Features.ToArray(), data.Train.Labels.ToArray());
        var width = data.Train.FeatureCount;
        switch (change)
        {
            case "label": labels[17] = (byte)((labels[17] + 1) % 10); break;
            case "pixel": features[17 * width + 300] += 0.5f; break;
            default:
                var second = Array.FindIndex(labels, l => l != labels[0]); // two samples of different classes change places
                (labels[0], labels[second]) = (labels[second], labels[0]);
                var first = features.AsSpan(0, width).ToArray();
                features.AsSpan(second * width, width).CopyTo(features.AsSpan(0, width));
                first.CopyTo(features.AsSpan(second * width, width));
                break;
        }
        var changed = new Core.Data.LabeledDataset(features, labels, width, data.Train.ClassCount);

        var error = await Assert.ThrowsAsync<CheckpointResumeException>(() =>
            SingleNodeTrainer.RunAsync(Options(epochs: 3, resume: true), changed, data.Test).WithTestTimeout());

        Assert.NotEqual(data.Train.ContentDigest(), changed.ContentDigest());
        Assert.StartsWith($"Checkpoint {checkpoint} does not fit the config: {CheckpointResume.TrainDigestKey} = {changed.ContentDigest()}, " +
            $"the checkpoint's is {data.Train.ContentDigest()}.", error.Message);
        Assert.Contains("the data files its run read. To train on other data, start a new run, or fine-tune the checkpoint's model (disttrain finetune); " +
            "to go on with data changed on purpose, set Checkpoint:CheckTrainingData to false.", error.Message);
        // The same samples in new arrays resume.
        var copy = new Core.Data.LabeledDataset(data.Train.Features.ToArray(), data.Train.Labels.ToArray(), width, data.Train.ClassCount);
        Assert.Equal(3, (await SingleNodeTrainer.RunAsync(Options(epochs: 3, resume: true), copy, data.Test).WithTestTimeout()).Epochs[^1].Epoch);
        // Checkpoint:CheckTrainingData = false lets the changed data resume (here its last checkpoint: scored, not refused).
        var lenient = Options(epochs: 3, resume: true, o => o.Checkpoint.CheckTrainingData = false);
        await Assert.ThrowsAsync<CheckpointResumeException>(() => SingleNodeTrainer.RunAsync(Options(epochs: 3, resume: true), changed, data.Test).WithTestTimeout());
        Assert.Equal(3, (await SingleNodeTrainer.RunAsync(lenient, changed, data.Test).WithTestTimeout()).Epochs[^1].Epoch);
    }

    [Fact]
    public async Task A_resume_of_the_finished_training_scores_it_and_a_resume_past_it_is_refused()
    {
        // The checkpoint written when the last epoch's training ended: a resume trains nothing, scores those weights as the
        // last epoch's and returns them (how a run whose final save failed gets its model).
        var data = TestData.Normalized();
        var first = await SingleNodeTrainer.RunAsync(Options(epochs: 1, resume: false), data.Train, data.Test).WithTestTimeout();
        var checkpoint = new CheckpointStore(_directory, 10).List()[0];
        var log = new List<string>();
        var resumed = await Run(Options(epochs: 1, resume: true), log);
        Assert.Contains(log, line => line.EndsWith("the 1 epoch trained; epoch 1 is evaluated and the model written, then the run ends (raise Training:Epochs to train further)", StringComparison.Ordinal));
        var scored = Assert.Single(resumed.Epochs);
        Assert.Equal((1, first.Version, first.Epochs[0].TestAccuracy), (scored.Epoch, resumed.Version, scored.TestAccuracy));
        Assert.True(double.IsNaN(scored.TrainLoss));
        Compare.Identical(first.FinalWeights.Values, resumed.FinalWeights.Values, "weights");
        Assert.Equal(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"epoch  1/1  trained before this run   test acc {100 * scored.TestAccuracy:F2}%"),
            Cli.ConsoleProgress.Describe(scored, 1));

        // A second epoch trained on it, then a resume asking for 1 epoch: the checkpoint is past the run's end, refused.
        await Run(Options(epochs: 2, resume: true));
        var second = new CheckpointStore(_directory, 10).List()[0];
        Assert.NotEqual(checkpoint, second);
        var error = await Assert.ThrowsAsync<CheckpointResumeException>(() => Run(Options(epochs: 1, resume: true)));
        Assert.Equal($"Checkpoint {second} has completed all 2 epochs and Training:Epochs = 1. Raise Training:Epochs (--epochs) to train further.", error.Message);
    }

    public static TheoryData<string, string> ChangedOptimizer => new()
    {
        { "kind", "The checkpoint holds Sgd state, but Optimizer:Kind is Adam. Resume with the same optimizer, or start a new run." },
        { "momentum off", "The checkpoint's Sgd state has buffers [momentum_buffer], the optimizer has []" },
    };

    [Theory]
    [MemberData(nameof(ChangedOptimizer))]
    public async Task A_resume_with_another_optimizer_kind_or_state_is_refused_before_any_step(string changed, string expected)
    {
        await FirstEpoch();
        var observer = new RecordingObserver();
        var options = Options(epochs: 3, resume: true, o =>
        {
            if (changed == "kind") o.Optimizer.Kind = OptimizerKind.Adam;
            else o.Optimizer.Momentum = 0;
        });
        var data = TestData.Normalized();
        var error = await Assert.ThrowsAsync<CheckpointResumeException>(() =>
            SingleNodeTrainer.RunAsync(options, data.Train, data.Test, observer).WithTestTimeout());
        Assert.StartsWith($"Checkpoint {Path.Combine(_directory, CheckpointStore.FileName(10, 2, 0))} does not fit the config: {expected}", error.Message);
        Assert.Empty(observer.StepLosses);
    }

    /// <summary>
    /// Switching Cluster:Compression to TopK (momentum correction on by default) between the run and its resume moves the
    /// momentum from the parameter server to the workers, so the checkpoint's momentum buffer no longer fits, though
    /// Optimizer:Momentum did not change: the refusal names Cluster:MomentumCorrection and the fix, and the way back too.
    /// </summary>
    [Fact]
    public async Task A_resume_that_switches_momentum_correction_is_refused_naming_Cluster_MomentumCorrection_and_the_fix()
    {
        var checkpoint = await FirstEpoch();
        var error = await Assert.ThrowsAsync<CheckpointResumeException>(() => Run(Options(epochs: 3, resume: true,
            o => o.Cluster.Compression = Core.Compression.GradientCompression.TopK)));
        Assert.StartsWith($"Checkpoint {checkpoint} does not fit the config: The checkpoint's Sgd state has buffers [momentum_buffer], the optimizer has []", error.Message);
        Assert.EndsWith("but this checkpoint's run kept one: to continue it, set Cluster:MomentumCorrection to false.", error.Message);

        // The resume the message asks for goes through.
        var resumed = await Run(Options(epochs: 2, resume: true, o =>
        {
            o.Cluster.Compression = Core.Compression.GradientCompression.TopK;
            o.Cluster.MomentumCorrection = false;
        }));
        Assert.Equal([2], resumed.Epochs.Select(e => e.Epoch));
        Assert.Equal(20, resumed.Version);
    }

    /// <summary>
    /// A resume with compression and error feedback warns that the workers' residuals (and, with momentum correction, their
    /// momentum), which no checkpoint holds, start again from zero, so the run does not go on exactly; it said nothing before.
    /// Without compression, or without error feedback, there is no such state and no warning.
    /// </summary>
    [Fact]
    public async Task A_resume_with_compression_warns_that_the_workers_residuals_start_again_from_zero()
    {
        await Run(Options(epochs: 1, resume: false, o => o.Cluster.Compression = Core.Compression.GradientCompression.Float16));
        var log = new List<string>();
        await Run(Options(epochs: 2, resume: true, o => o.Cluster.Compression = Core.Compression.GradientCompression.Float16), log);
        Assert.Contains("Cluster:Compression Float16: each worker's error-feedback residual lives in the worker only, not in the checkpoint, and starts " +
            "again from zero, so the run does not go on exactly as it would have without the interruption (docs/reliability.md, \"What a resume restores\").", log);

        var topK = Options(epochs: 2, resume: true, o =>
        {
            o.Cluster.Compression = Core.Compression.GradientCompression.TopK;
            o.Optimizer.Momentum = 0.9;
        });
        Assert.Equal("Cluster:Compression TopK: each worker's error-feedback residual and momentum (Cluster:MomentumCorrection) live in the worker only, " +
            "not in the checkpoint, and start again from zero, so the run does not go on exactly as it would have without the interruption " +
            "(docs/reliability.md, \"What a resume restores\").", CheckpointResume.WorkerStateRestarts(topK));
        topK.Cluster.ErrorFeedback = false;
        Assert.Null(CheckpointResume.WorkerStateRestarts(topK));
        Assert.Null(CheckpointResume.WorkerStateRestarts(Options(epochs: 2, resume: true)));
    }

    [Fact]
    public async Task A_parameter_server_given_a_checkpoint_it_cannot_take_fails_the_job_with_its_own_reason()
    {
        // Past CheckpointResume's check (a caller that hands the checkpoint over directly), the parameter server's constructor
        // refuses it; the job must fail with that reason, not Akka's bare "Exception during creation".
        await FirstEpoch();
        var options = Options(epochs: 3, resume: false, o => o.Optimizer.Kind = OptimizerKind.RMSProp);
        var layout = Core.Models.ModelFactory.Build(options.Model).Layout;
        var checkpoint = TrainingCheckpoint.Read(Path.Combine(_directory, CheckpointStore.FileName(10, 2, 0)), layout);
        var data = TestData.Normalized();
        var error = await Assert.ThrowsAsync<InvalidDataException>(() =>
            SingleNodeTrainer.RunAsync(options, data.Train, data.Test, resumeFrom: checkpoint).WithTestTimeout());
        Assert.Equal("The checkpoint holds Sgd state, but Optimizer:Kind is RMSProp. Resume with the same optimizer, or start a new run.", error.Message);
    }

    [Fact]
    public async Task A_checkpoint_that_cannot_be_written_fails_the_run_with_an_error_naming_the_file()
    {
        // The first checkpoint's name is taken by a folder, so its rename fails as on a full or read-only disk (root, which
        // runs the suite, ignores permission bits, so a read-only folder would not do).
        var blocked = Path.Combine(_directory, CheckpointStore.FileName(10, 2, 0));
        Directory.CreateDirectory(blocked);
        var observer = new RecordingObserver();
        var data = TestData.Normalized();
        var error = await Assert.ThrowsAsync<CheckpointWriteException>(() =>
            SingleNodeTrainer.RunAsync(Options(epochs: 2, resume: false), data.Train, data.Test, observer).WithTestTimeout());
        Assert.StartsWith($"Could not write checkpoint {blocked}:", error.Message);
        Assert.Contains("Check Checkpoint:Directory and the free space.", error.Message);
        Assert.Equal(10, observer.StepLosses.Count); // it failed at the first checkpoint, after epoch 1's 10 steps, not later
        Assert.Empty(Directory.GetFiles(_directory, "*.tmp")); // no half-written file left behind
    }

    /// <summary>
    /// A cluster node has no --resume or --epochs (it takes Checkpoint:Resume and Training:Epochs from its config or
    /// DISTTRAIN_* variables): its resume messages name those settings, while train's keep naming its flags. Before, a
    /// parameter-server node told the user to "Drop --resume (Checkpoint:Resume)", an option neither `node` nor cluster.sh has.
    /// </summary>
    [Fact]
    public async Task A_cluster_nodes_resume_messages_name_its_settings_and_trains_name_its_flags()
    {
        var layout = ModelLayout();
        var empty = Assert.Throws<CheckpointResumeException>(() =>
            CheckpointResume.Find(Options(epochs: 1, resume: true), layout, _ => { }, matchWorkers: false, settings: ResumeSettings.ClusterNode));
        Assert.Equal($"No checkpoint to resume from in {Path.GetFullPath(_directory)}. Set Checkpoint:Resume to false " +
            "(DISTTRAIN_Checkpoint__Resume=false) to start a new run.", empty.Message);
        Assert.EndsWith(". Drop --resume (Checkpoint:Resume) to start a new run.",
            Assert.Throws<CheckpointResumeException>(() => CheckpointResume.Find(Options(epochs: 1, resume: true), layout, _ => { })).Message);

        await Run(Options(epochs: 2, resume: false)); // its newest checkpoint has completed both epochs
        var past = Assert.Throws<CheckpointResumeException>(() =>
            CheckpointResume.Find(Options(epochs: 1, resume: true), layout, _ => { }, matchWorkers: false, settings: ResumeSettings.ClusterNode));
        Assert.EndsWith("has completed all 2 epochs and Training:Epochs = 1. Raise Training:Epochs (DISTTRAIN_Training__Epochs) to train further.", past.Message);

        var reused = CheckpointResume.ReusedFolderWarning(Options(epochs: 1, resume: false), ResumeSettings.ClusterNode);
        Assert.Contains("and a later resume (Checkpoint:Resume = true, DISTTRAIN_Checkpoint__Resume=true) continues the run written last", reused);
        Assert.EndsWith("Give each run its own folder to keep them, or Checkpoint:Resume = true to continue that run.", reused);
        Assert.DoesNotContain("--resume", reused);
        Assert.Contains("or --resume to continue that run.", CheckpointResume.ReusedFolderWarning(Options(epochs: 1, resume: false)));
    }

    /// <summary>
    /// Two runs in one folder: a user's resume continues the run written last, not the other run's checkpoint of a higher
    /// version (which was refused as not fitting the config, or, with the same settings, would have continued the wrong run),
    /// and a new run in a folder that holds checkpoints is warned that they are another run's.
    /// </summary>
    [Fact]
    public async Task A_resume_in_a_folder_shared_by_two_runs_continues_the_run_written_last()
    {
        Assert.Null(CheckpointResume.ReusedFolderWarning(Options(epochs: 3, resume: false)));
        await Run(Options(epochs: 3, resume: false)); // run A, seed 7: checkpoints of versions 10, 20 and 30
        var warning = CheckpointResume.ReusedFolderWarning(Options(epochs: 1, resume: false, o => o.Training.Seed = 8));
        Assert.Contains("already holds 3 checkpoints of an earlier run", warning);
        Assert.Contains("count toward Checkpoint:Keep = 10", warning);
        var runA = TrainingCheckpoint.Read(new CheckpointStore(_directory, 10).List()[0], ModelLayout()).JobId;
        Assert.Matches("^[0-9a-f]{12}$", runA);

        await Run(Options(epochs: 1, resume: false, o => o.Training.Seed = 8)); // run B, seed 8: version 10, written last
        var runB = TrainingCheckpoint.Read(Path.Combine(_directory, CheckpointStore.FileName(10, 2, 0)), ModelLayout()).JobId;
        Assert.NotEqual(runA, runB);

        var log = new List<string>();
        var resumed = await Run(Options(epochs: 2, resume: true, o => o.Training.Seed = 8), log);
        Assert.Contains(log, l => l.Contains(CheckpointStore.FileName(30, 4, 0)) && l.Contains($"written by another job (job {runA}; this one is job {runB})"));
        Assert.Contains(log, l => l.StartsWith("Resuming from checkpoint ", StringComparison.Ordinal) && l.Contains("weights version 10, epoch 2 round 0"));
        var epoch = Assert.Single(resumed.Epochs);
        Assert.Equal((2, 20L), (epoch.Epoch, resumed.Version));
        // The resumed run keeps its id: its next checkpoint is run B's too.
        Assert.Equal(runB, TrainingCheckpoint.Read(Path.Combine(_directory, CheckpointStore.FileName(20, 3, 0)), ModelLayout()).JobId);
    }

    /// <summary>
    /// The same two runs, their folder then copied without its times (cp -r without -p), which dated run A's files after run
    /// B's: the resume still continues run B, the run written last, as the checkpoints record when they were written.
    /// </summary>
    [Fact]
    public async Task A_resume_of_a_folder_copied_without_its_times_continues_the_run_written_last()
    {
        await Run(Options(epochs: 3, resume: false)); // run A, seed 7: versions 10, 20 and 30
        await Run(Options(epochs: 1, resume: false, o => o.Training.Seed = 8)); // run B, seed 8: version 10, written last
        var store = new CheckpointStore(_directory, 10);
        var runB = Path.Combine(_directory, CheckpointStore.FileName(10, 2, 0));
        // The copy took run B's file first, then run A's, each stamped with the time it was copied.
        File.SetLastWriteTimeUtc(runB, DateTime.UtcNow.AddMinutes(-10));
        var copied = DateTime.UtcNow.AddMinutes(-9);
        foreach (var path in store.List().Where(p => p != runB))
            File.SetLastWriteTimeUtc(path, copied = copied.AddSeconds(1));

        var log = new List<string>();
        var resumed = await Run(Options(epochs: 2, resume: true, o => o.Training.Seed = 8), log);
        Assert.Contains(log, l => l.StartsWith("Resuming from checkpoint ", StringComparison.Ordinal) && l.Contains("weights version 10, epoch 2 round 0"));
        Assert.Contains(log, l => l.StartsWith($"Skipping checkpoint {Path.Combine(_directory, CheckpointStore.FileName(30, 4, 0))}: written by another job", StringComparison.Ordinal));
        Assert.Equal((2, 20L), (Assert.Single(resumed.Epochs).Epoch, resumed.Version));
    }

    /// <summary>Another model's run written last in the folder does not hide this model's run from a resume.</summary>
    [Fact]
    public async Task A_resume_continues_its_own_model_when_another_model_wrote_the_folder_last()
    {
        await Run(Options(epochs: 1, resume: false)); // this model, version 10
        var other = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 25, epochs: 1);
        other.Checkpoint = new CheckpointOptions { Directory = _directory, Keep = 10 };
        await Run(other); // another model, 20 steps an epoch: version 20, written last
        var log = new List<string>();
        var resumed = await Run(Options(epochs: 2, resume: true), log);
        Assert.Equal(20, resumed.Version);
        Assert.Contains(log, l => l.StartsWith("Resuming from checkpoint ", StringComparison.Ordinal) && l.Contains("weights version 10, epoch 2 round 0"));
        Assert.Contains(log, l => l.StartsWith("Skipping checkpoint ", StringComparison.Ordinal) && l.Contains(CheckpointStore.FileName(20, 2, 0)));
    }

    private static Core.Tensors.ParameterLayout ModelLayout() => Core.Models.ModelFactory.Build(TestData.Options(TestData.Mlp(8, 10), workers: 2, batch: 50, epochs: 1).Model).Layout;
}
