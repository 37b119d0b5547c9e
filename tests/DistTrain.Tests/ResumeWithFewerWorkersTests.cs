using Akka.Event;
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
/// Cluster mode in Sync resumed from a checkpoint written within an epoch, with fewer workers than that epoch was planned
/// for: the epoch's plan stays the checkpoint's, and what it had left from the checkpoint's round goes to the workers there
/// (as pieces of the plan), so every sample of the epoch is trained once, before the interruption or after it. It used to
/// wait for as many workers as the plan had, and end at Cluster:PauseTimeoutSeconds.
/// </summary>
public sealed class ResumeWithFewerWorkersTests() : TestKit(TestTimeouts.TestKitConfig), IDisposable
{
    private readonly string _checkpoints = Directory.CreateTempSubdirectory("disttrain-fewer-").FullName;
    private readonly string _before = Directory.CreateTempSubdirectory("disttrain-fewer-trace-").FullName;
    private readonly string _after = Directory.CreateTempSubdirectory("disttrain-fewer-trace-").FullName;

    /// <summary>Hang guard for a training on a loaded 2-core machine; no assertion is about speed.</summary>
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(120);

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (!disposing) return;
        foreach (var directory in new[] { _checkpoints, _before, _after }) Directory.Delete(directory, recursive: true);
    }

    [Fact]
    public async Task An_epoch_resumed_within_with_fewer_workers_trains_the_rest_of_its_plan_once_on_those_there()
    {
        // 3 workers x 50 over the 1,000-sample subset: 7 rounds an epoch; a checkpoint every 5 steps, the second inside epoch 2.
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(8, 10), workers: 3, batch: 50, epochs: 2);
        options.Checkpoint = new CheckpointOptions { Directory = _checkpoints, Keep = 10, EverySteps = 5 };
        options.Monitoring.SampleTraceDirectory = _before;
        var uninterrupted = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout();
        var layout = ModelFactory.Build(options.Model).Layout;
        var path = Assert.Single(new CheckpointStore(_checkpoints, 10).List(), p => p.Contains("-e0002-", StringComparison.Ordinal) &&
            !p.EndsWith("-r000000.safetensors", StringComparison.Ordinal));
        var checkpoint = TrainingCheckpoint.Read(path, layout);
        Assert.Equal((2, 3, 3), (checkpoint.Epoch, checkpoint.Round, checkpoint.Workers));

        // Resumed on 2 workers, the global minibatch of 150 kept, with shard messages limited to 300 bytes (the rest of the
        // plan goes as pieces of it).
        var loop = options.Training;
        var samples = data.Train.Count;
        var settings = new CoordinatorSettings(loop.Epochs, loop.MinibatchPerWorker, new ShardPlanner(samples, 3, loop.Seed), data.Test.Count, layout,
            StallTimeout: TimeSpan.FromSeconds(30), FirstEpoch: checkpoint.Epoch, FirstRound: checkpoint.Round,
            PlannerFor: n => new ShardPlanner(samples, n, loop.Seed), MinWorkers: 2, GlobalBatchSize: 3 * 50, ResumedVersion: checkpoint.Version,
            ShardMessageLimitBytes: 300, ShardRecipes: true);
        var monitoring = new Core.Diagnostics.MonitoringOptions { GradientNormEverySteps = 0, SampleTraceDirectory = _after };
        var server = ParameterServer.Props(ModelFactory.StartingWeights(ModelFactory.Build(options.Model), options.Model, loop.Seed),
            options.ParameterServerOptimizer(), loop.Epochs, monitoring, resumeFrom: checkpoint, scalingWorkers: 3, update: UpdateSettings.From(loop),
            configuredOptimizer: options.Optimizer);
        var log = CreateTestProbe();
        Sys.EventStream.Subscribe(log.Ref, typeof(Warning));
        var completion = new TaskCompletionSource<TrainingResult>();
        Sys.ActorOf(Coordinator.Props(settings, server,
            [.. Enumerable.Range(0, 2).Select(i => Worker.Props(i, options.Model, data.Train, data.Test, loop.EvaluationBatchSize,
                settings: new ReplicaSettings(SampleTraceDirectory: _after), seed: loop.Seed))],
            NullTrainingObserver.Instance, completion));
        var result = await completion.Task.WaitAsync(Guard);

        // Epoch 2's plan for 3 workers had 3 rounds of 50 trained per shard: the rest, 334 - 150 + 2 x (333 - 150) = 550 samples,
        // goes to the 2 workers at 75 each per round, from round 3 on.
        var warning = log.FishForMessage<Warning>(w => w.Message.ToString()!.StartsWith("Epoch 2 resumes", StringComparison.Ordinal), Guard);
        Assert.Equal("Epoch 2 resumes at round 3 with 2 of the 3 workers its checkpoint was planned for: the 550 samples its plan had left from that " +
            "round go to them, in 4 steps of up to 75 samples per worker (Training:KeepGlobalBatch). Every sample is still trained once this epoch; " +
            "the next epochs are planned for the workers alive.", warning.Message.ToString());
        var plan = new ShardPlanner(samples, 3, loop.Seed).Plan(2);
        int[] rest = [.. plan.SelectMany(shard => shard[(3 * 50)..]).Order()];
        var resumed = SampleTraceLog.SamplesByEpoch(_after);
        Assert.Equal([2], resumed.Keys);
        Assert.Equal(rest, resumed[2]); // each once, and none trained before the checkpoint
        var before = SampleTraceLog.Applied(_before).Where(m => m.Epoch == 2 && m.Round < checkpoint.Round).SelectMany(m => m.Samples);
        Assert.Equal(Enumerable.Range(0, samples), before.Concat(rest).Order()); // with the rounds before it: the epoch, each sample once
        var epoch = Assert.Single(result.Epochs);
        Assert.Equal((2, samples), (epoch.Epoch, epoch.TrainSamples));
        // The epoch's training loss (the checkpoint's rounds and these) is close to the uninterrupted run's, whose rest trained the
        // same samples on 3 workers, in other minibatches of the same global size at the same learning rate.
        var expected = uninterrupted.Epochs[^1];
        Assert.InRange(epoch.TrainLoss, expected.TrainLoss * 0.97, expected.TrainLoss * 1.03);
        Assert.InRange(epoch.TestAccuracy, expected.TestAccuracy - 0.05, expected.TestAccuracy + 0.05);
    }
}
