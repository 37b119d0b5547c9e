using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Training;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Models;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

/// <summary>
/// Early stopping across a resume: a run resumed from a checkpoint goes on with the best epoch so far and its weights
/// (<see cref="EarlyStoppingRecord"/> in the checkpoint directory), so it stops where the undisturbed run stops and keeps
/// the same weights.
/// </summary>
public sealed class EarlyStoppingResumeTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-early-stop-resume-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static readonly TrainingData Data =
        TrainingData.Load(new DataOptions { Directory = TestData.SubsetDirectory, ValidationFraction = 0.2 }, seed: 7);

    /// <summary>An early-stopping run of 15 epochs with patience 3 (the tests read its best and stop epochs from an undisturbed
    /// run), with checkpoints in <paramref name="checkpoints"/>.</summary>
    private static TrainingOptions Options(int epochs, string checkpoints, bool resume = false)
    {
        var options = TestData.Options(TestData.Mlp(32, 10), workers: 2, batch: 32, epochs: epochs);
        options.Data.ValidationFraction = 0.2;
        options.Training.EarlyStopping = new EarlyStoppingOptions { Patience = 3 };
        options.Checkpoint = new CheckpointOptions { Directory = checkpoints, Keep = 20, Resume = resume };
        return options;
    }

    private static Task<TrainingResult> Run(TrainingOptions options) =>
        SingleNodeTrainer.RunAsync(options, Data.Train, Data.Test, validation: Data.Validation).WithTestTimeout();

    private string Folder(string name) => Directory.CreateDirectory(Path.Combine(_directory, name)).FullName;

    [Fact]
    public async Task A_run_resumed_after_its_best_epoch_stops_where_the_undisturbed_run_does_with_the_same_weights()
    {
        var reference = await Run(Options(15, Folder("reference")));
        Assert.True(reference.StoppedEarly);
        var best = reference.BestEpoch!.Value;
        var stop = reference.Epochs[^1].Epoch;
        Assert.True(best >= 2 && stop == best + 3 && stop < 15, $"best epoch {best}, stopped after {stop}: the run no longer tests a resume between them");

        // The same run cut after the epoch following its best one, then resumed to 15 epochs: the best epoch is before the resume.
        var checkpoints = Folder("cut");
        var cut = await Run(Options(best + 1, checkpoints));
        Assert.False(cut.StoppedEarly);
        Assert.Equal(best, cut.BestEpoch);
        var resumed = await Run(Options(15, checkpoints, resume: true));

        Assert.Equal(Enumerable.Range(best + 2, stop - best - 1), resumed.Epochs.Select(e => e.Epoch));
        Assert.True(resumed.StoppedEarly);
        Assert.Equal(best, resumed.BestEpoch);
        Assert.Equal(reference.Version, resumed.Version);
        Compare.Identical(reference.FinalWeights.Values, resumed.FinalWeights.Values, "weights kept after the resume");
        // The kept epoch's summary comes from the record: the reference's test accuracy and validation loss.
        Assert.Equal(best, resumed.BestEpochBefore!.Epoch);
        var kept = reference.FinalEpoch;
        Assert.Equal((kept.Epoch, kept.Version, kept.TestAccuracy, kept.ValidationLoss),
            (resumed.FinalEpoch.Epoch, resumed.FinalEpoch.Version, resumed.FinalEpoch.TestAccuracy, resumed.FinalEpoch.ValidationLoss));
        Assert.Equal(reference.Epochs.Select(e => e.ValidationLoss), [.. cut.Epochs.Select(e => e.ValidationLoss), .. resumed.Epochs.Select(e => e.ValidationLoss)]);

        // A new run in the same folder, not resumed, starts a record of its own: the earlier run's epochs are gone.
        await Run(Options(1, checkpoints));
        var record = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(checkpoints, EarlyStoppingRecord.StateFileName)))!;
        Assert.Equal([1], record["epochs"]!.AsArray().Select(e => e!["Epoch"]!.GetValue<int>()));
    }

    [Fact]
    public async Task A_run_resumed_after_early_stopping_had_ended_it_trains_nothing_and_keeps_the_best_epochs_weights()
    {
        var reference = await Run(Options(15, Folder("reference")));
        var (best, stop) = (reference.BestEpoch!.Value, reference.Epochs[^1].Epoch);

        // Cut at its stop epoch: that run ends there with the best weights, as a job whose parameter server then died while
        // writing its model; its newest checkpoint is the next epoch's start.
        var checkpoints = Folder("stopped");
        var cut = await Run(Options(stop, checkpoints));
        Assert.Equal((best, stop), (cut.BestEpoch, cut.Epochs[^1].Epoch));
        var resumed = await Run(Options(15, checkpoints, resume: true));

        // The resume scores the stop epoch's weights again (as the takeover after training does) and ends: nothing is trained.
        var scored = Assert.Single(resumed.Epochs);
        Assert.Equal((stop, reference.Epochs[^1].Version, 0), (scored.Epoch, scored.Version, scored.TrainSamples));
        Assert.Equal(reference.Epochs[^1].ValidationLoss, scored.ValidationLoss);
        Assert.True(resumed.StoppedEarly);
        Assert.Equal(best, resumed.BestEpoch);
        Compare.Identical(reference.FinalWeights.Values, resumed.FinalWeights.Values, "weights kept");
    }

    [Fact]
    public async Task A_resume_whose_record_lacks_the_checkpoints_last_epoch_scores_it_first_and_stops_where_the_undisturbed_run_does()
    {
        var reference = await Run(Options(15, Folder("reference")));
        var (best, stop) = (reference.BestEpoch!.Value, reference.Epochs[^1].Epoch);

        // A run killed while it scored its best epoch: its checkpoint (written when the epoch's training ended) is at epoch
        // best + 1, its record still the one before (as a run cut after epoch best - 1 wrote it).
        var before = Folder("before");
        await Run(Options(best - 1, before));
        var checkpoints = Folder("cut");
        await Run(Options(best, checkpoints));
        File.Delete(Path.Combine(checkpoints, EarlyStoppingRecord.StateFileName));
        foreach (var file in Directory.EnumerateFiles(checkpoints, EarlyStoppingRecord.BestWeightsPrefix + "*")) File.Delete(file);
        foreach (var file in Directory.EnumerateFiles(before, "early-stopping*")) File.Copy(file, Path.Combine(checkpoints, Path.GetFileName(file)));
        var resumed = await Run(Options(15, checkpoints, resume: true));

        // Epoch best is scored first (nothing trained), becomes the best, and the run stops where the undisturbed one does.
        Assert.Equal((best, 0), (resumed.Epochs[0].Epoch, resumed.Epochs[0].TrainSamples));
        Assert.Equal(reference.Epochs[best - 1].ValidationLoss, resumed.Epochs[0].ValidationLoss);
        Assert.Equal((best, stop, true), (resumed.BestEpoch!.Value, resumed.Epochs[^1].Epoch, resumed.StoppedEarly));
        Compare.Identical(reference.FinalWeights.Values, resumed.FinalWeights.Values, "weights kept");
    }

    [Fact]
    public void A_record_that_does_not_fit_the_checkpoint_is_not_restored_and_says_why()
    {
        var layout = new ParameterLayout([("dense.weight", [2, 3]), ("dense.bias", [2])]);
        var weights = new ParameterVector(layout, [1, 2, 3, 4, 5, 6, 7, 8]);
        EpochSummary Epoch(int epoch, long version, double validationLoss) =>
            new(epoch, version, 0.5, 0.4, 0.8, 100, 1000, 1, 0.1, validationLoss, 0.7);
        var directory = Folder("record");
        RestoredEarlyStopping? Restore(int firstEpoch, long version, out string? problem, int firstRound = 0) =>
            EarlyStoppingRecord.Restore(directory, firstEpoch, firstRound, version, minDelta: 0.01, layout, validationSamples: 200, out problem);

        Assert.Null(Restore(3, 20, out var missing));
        Assert.Contains("early-stopping.json does not exist (early stopping was off", missing);
        // At epoch 2 a missing record is epoch 1's evaluation cut off: nothing to restore, nothing to warn about.
        Assert.Null(Restore(2, 10, out var notScored));
        Assert.Null(notScored);

        // Epochs 1 to 4 at versions 10, 20, 30, 40; epoch 2 is the best (epoch 4 improves by less than MinDelta).
        EpochSummary[] epochs = [Epoch(1, 10, 0.9), Epoch(2, 20, 0.5), Epoch(3, 30, 0.6), Epoch(4, 40, 0.495)];
        EarlyStoppingRecord.Save(directory, epochs[..1], bestEpoch: 1, (weights, 10), validationSamples: 200);
        EarlyStoppingRecord.Save(directory, epochs[..2], bestEpoch: 2, (weights, 20), validationSamples: 200);
        EarlyStoppingRecord.Save(directory, epochs, bestEpoch: 2, newBest: null, validationSamples: 200);
        // Only the best's weights file is left, once the record names it.
        Assert.Equal([EarlyStoppingRecord.BestWeightsFileName(20)],
            Directory.EnumerateFiles(directory, EarlyStoppingRecord.BestWeightsPrefix + "*").Select(Path.GetFileName));

        var restored = Restore(5, 40, out var none)!;
        Assert.Null(none);
        Assert.Equal(4, restored.Epochs.Count);
        Assert.Equal(epochs[1], restored.Best);
        Assert.Equal(weights.Values, restored.BestWeights);
        // The record's own best, even where this run's MinDelta would pick another (0.5: epoch 2 is no improvement on epoch 1).
        Assert.Equal(2, EarlyStoppingRecord.Restore(directory, 5, 0, 40, minDelta: 0.5, layout, 200, out _)!.Best.Epoch);
        // A resume from an earlier checkpoint leaves out the later epochs; from a mid-epoch checkpoint, its epoch's versions are below.
        Assert.Equal(3, Restore(4, 30, out _)!.Epochs.Count);
        Assert.Equal(3, Restore(4, 35, out _, firstRound: 5)!.Epochs.Count);
        // The checkpoint's last epoch (5, version 50) not scored yet: the record is restored without it, and the run scores it.
        Assert.Equal(4, Restore(6, 50, out _)!.Epochs.Count);
        // Epochs 5 and 6 trained without being scored (early stopping was off): not restored.
        Assert.Null(Restore(7, 60, out var gap));
        Assert.Contains("records epochs up to 4, but the checkpoint resumes at epoch 7: epochs 5 to 6 were trained without being scored", gap);

        // Losses measured on another validation set (the split changed) do not compare with this run's.
        Assert.Null(EarlyStoppingRecord.Restore(directory, 5, 0, 40, 0.01, layout, validationSamples: 150, out var otherValidation));
        Assert.Contains("holds validation losses measured on 200 samples, and this run holds out 150", otherValidation);
        // A best-weights file whose bytes were changed in place (same size, same header) is found by its SHA-256.
        var bestPath = Path.Combine(directory, EarlyStoppingRecord.BestWeightsFileName(20));
        var intact = File.ReadAllBytes(bestPath);
        var damagedBytes = intact.ToArray();
        damagedBytes[^5] ^= 0x40;
        File.WriteAllBytes(bestPath, damagedBytes);
        Assert.Null(Restore(5, 40, out var changed));
        Assert.Contains($"{bestPath}: checksum mismatch: the data section's SHA-256 is ", changed);
        File.WriteAllBytes(bestPath, intact);
        Assert.NotNull(Restore(5, 40, out _));

        // Another run's record: epoch 4 at version 40, but this checkpoint's epoch 5 starts at version 44.
        Assert.Null(Restore(5, 44, out var otherRun));
        Assert.Contains("records epoch 4 at weights version 40, which does not lead to the checkpoint's version 44 at epoch 5", otherRun);
        // The best before epoch 2 is epoch 1, whose weights file was removed when epoch 2 became the best.
        Assert.Null(Restore(2, 10, out var removed));
        Assert.Contains("early-stopping-best-v000000000010.safetensors, the best epoch's weights (epoch 1), does not exist", removed);
        // A file that holds another version, and weights of another model.
        File.Copy(Path.Combine(directory, EarlyStoppingRecord.BestWeightsFileName(20)), Path.Combine(directory, EarlyStoppingRecord.BestWeightsFileName(10)));
        Assert.Null(Restore(2, 10, out var otherVersion));
        Assert.Contains("holds weights version 20, not the best epoch's (1, version 10)", otherVersion);
        SafeTensors.Write(Path.Combine(directory, EarlyStoppingRecord.BestWeightsFileName(20)), new ParameterVector(new ParameterLayout([("dense.weight", [3, 2]), ("dense.bias", [2])])),
            new Dictionary<string, string> { ["version"] = "20", ["sha256"] = "0" });
        Assert.Null(Restore(5, 40, out var otherModel));
        Assert.Contains("has no tensor 'dense.weight' [2, 3] (it was written for another model)", otherModel);
        // A folder where the record should be.
        var folderRecord = Folder("folder-record");
        Directory.CreateDirectory(Path.Combine(folderRecord, EarlyStoppingRecord.StateFileName));
        Assert.Null(EarlyStoppingRecord.Restore(folderRecord, 5, 0, 40, 0.01, layout, 200, out var folder));
        Assert.Contains("early-stopping.json is a folder, not the record early stopping writes there; remove it", folder);
        // A damaged record.
        File.WriteAllText(Path.Combine(directory, EarlyStoppingRecord.StateFileName), "{ \"epochs\": [ { \"Epoch\": ");
        Assert.Null(Restore(5, 40, out var damaged));
        Assert.Contains("early-stopping.json could not be read", damaged);
    }

    /// <summary>The line of a resumed run that goes on counts its patience in the singular for one epoch.</summary>
    [Fact]
    public void The_line_of_a_run_that_goes_on_counts_the_patience_in_epochs()
    {
        EpochSummary Epoch(int epoch, double validationLoss) => new(epoch, 4 * epoch, 0.5, 0.6, 0.7, 100, 1000, 1, 0.1, ValidationLoss: validationLoss);
        var restored = new RestoredEarlyStopping([Epoch(1, 0.5), Epoch(2, 0.6)], Epoch(1, 0.5), []);
        Assert.EndsWith("best epoch 1 (validation loss 0.5000), 1 of 1 epoch of patience used by epoch 2.", EarlyStoppingRecord.GoesOn(restored, patience: 1));
        Assert.EndsWith("best epoch 1 (validation loss 0.5000), 1 of 3 epochs of patience used by epoch 2.", EarlyStoppingRecord.GoesOn(restored, patience: 3));
    }
}
