using DistTrain.Cluster.Hosting;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;

namespace DistTrain.Tests;

/// <summary>
/// Checkpoints and resume in the modes other than <see cref="TrainingMode.Sync"/> (single-node mode, the subset): a run
/// resumed from a checkpoint in the middle of its second epoch trains every sample of that epoch once and ends on the
/// uninterrupted run's version; in LocalSgd, whose rounds are lock-step, on its weights too.
/// </summary>
public class ModeResumeTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-mode-resume-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static TrainingOptions Options(TrainingMode mode, string checkpoints, int everySteps = 0, bool resume = false)
    {
        var options = TestData.Options(TestData.Mlp(32, 10), workers: 2, batch: 50, epochs: 2, momentum: 0.5);
        options.Training.Mode = mode;
        options.Training.StalenessBound = 1;
        options.Training.LocalSteps = 2;
        options.Compute.BlasThreads = 1;
        options.Checkpoint = new CheckpointOptions { Directory = checkpoints, EverySteps = everySteps, Keep = 100, Resume = resume };
        return options;
    }

    private static async Task<TrainingResult> Run(TrainingOptions options)
    {
        var data = TestData.Normalized();
        return await SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout();
    }

    [Theory]
    [InlineData(TrainingMode.Async)]
    [InlineData(TrainingMode.BoundedStaleness)]
    [InlineData(TrainingMode.LocalSgd)]
    public async Task A_run_resumed_in_the_middle_of_an_epoch_trains_every_sample_once_and_ends_on_the_same_version(TrainingMode mode)
    {
        var all = Path.Combine(_directory, "all");
        var uninterrupted = await Run(Options(mode, all, everySteps: 3));
        var checkpoints = new CheckpointStore(all, 100).List();
        var layout = uninterrupted.FinalWeights.Layout;
        var middle = checkpoints.Select(p => (Path: p, Checkpoint: TrainingCheckpoint.Read(p, layout)))
            .Where(c => c.Checkpoint.Epoch == 2 && c.Checkpoint.Round > 0)
            .OrderBy(c => c.Checkpoint.Version).First();
        Assert.Equal(mode, middle.Checkpoint.Mode);

        var kept = Path.Combine(_directory, "kept");
        Directory.CreateDirectory(kept);
        File.Copy(middle.Path, Path.Combine(kept, Path.GetFileName(middle.Path)));
        var resumed = await Run(Options(mode, kept, resume: true));

        Assert.Equal(uninterrupted.Version, resumed.Version);
        Assert.Equal([2], resumed.Epochs.Select(e => e.Epoch));
        Assert.Equal(1000, resumed.Epochs[0].TrainSamples); // the checkpoint's part of the epoch plus the rest, each sample once
        if (mode == TrainingMode.LocalSgd)
            // Lock-step rounds in a fixed order: the same operations as the uninterrupted run. (In Async and in
            // BoundedStaleness with s > 0 the weights a gradient is computed on depend on arrival order.)
            Compare.Close(uninterrupted.FinalWeights.Values, resumed.FinalWeights.Values, relative: 1e-5, absolute: 1e-6, "weights after the resume");
    }

    [Fact]
    public async Task A_checkpoint_of_another_mode_is_refused_by_name()
    {
        await Run(Options(TrainingMode.Sync, _directory));
        var error = await Assert.ThrowsAsync<CheckpointResumeException>(() => Run(Options(TrainingMode.LocalSgd, _directory, resume: true)));
        Assert.Contains("Training:Mode = LocalSgd, the checkpoint's is Sync", error.Message);
    }
}
