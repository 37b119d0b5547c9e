using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Training;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Models;

namespace DistTrain.Tests;

/// <summary>
/// Cluster mode: the active parameter server fails after the last epoch's training, when its end-of-epoch checkpoint is
/// written but before that epoch is evaluated and the model saved. The standby that takes over must score that checkpoint
/// and end the job with its weights, not refuse it as a run with nothing left to train.
/// </summary>
public sealed class TakeoverAfterTrainingTests() : TestKit(TestTimeouts.TestKitConfig), IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-takeover-end-").FullName;

    /// <summary>Hang guard for a training on a loaded 2-core machine; no assertion is about speed.</summary>
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(120);

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing) Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public async Task A_takeover_from_the_checkpoint_of_the_finished_training_scores_it_and_ends_with_its_weights()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(8, 10), workers: 2, batch: 50, epochs: 2);
        options.Checkpoint = new CheckpointOptions { Directory = _directory, Keep = 10 };
        var expected = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout();
        var layout = ModelFactory.Build(options.Model).Layout;

        // The newest checkpoint was written when epoch 2's training ended, before its evaluation: position epoch 3, round 0.
        var lines = new List<string>();
        var checkpoint = CheckpointResume.FindForTakeover(options, layout, lines.Add, jobId: null, trainSamples: data.Train.Count)!;
        Assert.Equal((3, 0, expected.Version), (checkpoint.Epoch, checkpoint.Round, checkpoint.Version));
        Assert.EndsWith("all 2 epochs trained; epoch 2 is evaluated and the model written, then the run ends (raise Training:Epochs to train further)", Assert.Single(lines));
        // A resume asked for by the user takes it too (ResumeRefusalTests runs one).
        options.Checkpoint.Resume = true;
        Assert.Equal(3, CheckpointResume.Find(options, layout, _ => { }, matchWorkers: false).Epoch);

        // The taken-over job: a parameter server resumed from that checkpoint and two workers that hold no weights yet.
        var loop = options.Training;
        var settings = new CoordinatorSettings(loop.Epochs, loop.MinibatchPerWorker, new ShardPlanner(data.Train.Count, 2, loop.Seed), data.Test.Count, layout,
            StallTimeout: TimeSpan.FromSeconds(20), FirstEpoch: checkpoint.Epoch, FirstRound: checkpoint.Round,
            PlannerFor: n => new ShardPlanner(data.Train.Count, n, loop.Seed), MinWorkers: 2, ResumedVersion: checkpoint.Version);
        var server = ParameterServer.Props(ModelFactory.StartingWeights(ModelFactory.Build(options.Model), options.Model, loop.Seed),
            options.ParameterServerOptimizer(), loop.Epochs, checkpoints: CheckpointResume.Settings(options, trainSamples: data.Train.Count), resumeFrom: checkpoint,
            update: UpdateSettings.From(loop), configuredOptimizer: options.Optimizer);
        var completion = new TaskCompletionSource<TrainingResult>();
        Sys.ActorOf(Coordinator.Props(settings, server,
            [.. Enumerable.Range(0, 2).Select(i => Worker.Props(i, options.Model, data.Train, data.Test, loop.EvaluationBatchSize, seed: loop.Seed))],
            NullTrainingObserver.Instance, completion));
        var result = await completion.Task.WaitAsync(Guard);

        // Epoch 2 is scored on the same weights as in the undisturbed run; its training loss is not known to the takeover.
        var scored = Assert.Single(result.Epochs);
        var last = expected.Epochs[^1];
        Assert.Equal((2, last.Version, last.TestSamples), (scored.Epoch, scored.Version, scored.TestSamples));
        Assert.Equal(last.TestAccuracy, scored.TestAccuracy);
        Compare.Close(last.TestLoss, scored.TestLoss, 1e-12, 0, "epoch 2's test loss");
        Assert.True(double.IsNaN(scored.TrainLoss));
        Assert.Equal(0, scored.TrainSamples);
        Assert.Equal(expected.Version, result.Version);
        Compare.Identical(expected.FinalWeights.Values, result.FinalWeights.Values, "final weights");
    }
}
