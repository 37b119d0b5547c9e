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
/// Cluster mode in every training mode resumed from a checkpoint written within an epoch, with fewer workers than that epoch was planned
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

    /// <summary>
    /// In Sync the checkpoint's round is where every shard stopped. In Async a checkpoint also records the minibatches of
    /// later rounds already trained (<see cref="TrainingCheckpoint.TrainedAhead"/>), which the rest leaves out. Async's order
    /// of minibatches depends on timing, so the checkpoint's round and those minibatches differ from run to run; the test
    /// derives what it expects from the checkpoint.
    /// </summary>
    [Theory]
    [InlineData(TrainingMode.Sync)]
    [InlineData(TrainingMode.Async)]
    [InlineData(TrainingMode.BoundedStaleness)]
    [InlineData(TrainingMode.LocalSgd)]
    public async Task An_epoch_resumed_within_with_fewer_workers_trains_the_rest_of_its_plan_once_on_those_there(TrainingMode mode)
    {
        // 3 workers x 50 over the 1,000-sample subset: 7 rounds an epoch (21 minibatches); one checkpoint inside epoch 2: every
        // 5 steps in Sync and BoundedStaleness, where a step applies a round (the second of epoch 2), every 30 minibatches in
        // Async, where it applies one (the 9th of epoch 2); in LocalSgd at the first averaging at or after version 10 (11, at
        // epoch 2's round 4).
        var data = TestData.Normalized();
        // Async with 3 workers adds about 1 - 1/3 of momentum of its own: 0.23 instead of 0.9 (AsyncPolicy.MomentumAdvice).
        var options = TestData.Options(TestData.Mlp(8, 10), workers: 3, batch: 50, epochs: 2, momentum: mode == TrainingMode.Async ? 0.23 : 0.9);
        options.Training.Mode = mode;
        options.Training.LocalSteps = 2; // LocalSgd: averagings at rounds 2, 4, 6 and 7 of each epoch
        options.Checkpoint = new CheckpointOptions { Directory = _checkpoints, Keep = 10, EverySteps = mode == TrainingMode.Async ? 30 : 5 };
        options.Monitoring.SampleTraceDirectory = _before;
        var uninterrupted = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout();
        var layout = ModelFactory.Build(options.Model).Layout;
        var path = Assert.Single(new CheckpointStore(_checkpoints, 10).List(), p => p.Contains("-e0002-", StringComparison.Ordinal) &&
            !p.EndsWith("-r000000.safetensors", StringComparison.Ordinal));
        var checkpoint = TrainingCheckpoint.Read(path, layout);
        Assert.Equal((2, 3), (checkpoint.Epoch, checkpoint.Workers));
        if (mode == TrainingMode.LocalSgd) Assert.Equal((4, 0), (checkpoint.Round, checkpoint.TrainedAhead.Count)); // the averaging at version 11
        else if (mode != TrainingMode.Async) Assert.Equal((3, 0), (checkpoint.Round, checkpoint.TrainedAhead.Count));
        else Assert.InRange(checkpoint.Round, 1, 3); // 9 minibatches trained: 3 rounds of 3, or fewer whole rounds and some ahead

        // Resumed on 2 workers, the global minibatch of 150 kept, with shard messages limited to 300 bytes (the rest of the
        // plan goes as pieces of it).
        var loop = options.Training;
        var samples = data.Train.Count;
        var settings = new CoordinatorSettings(loop.Epochs, loop.MinibatchPerWorker, new ShardPlanner(samples, 3, loop.Seed), data.Test.Count, layout,
            StallTimeout: TimeSpan.FromSeconds(30), FirstEpoch: checkpoint.Epoch, FirstRound: checkpoint.Round,
            PlannerFor: n => new ShardPlanner(samples, n, loop.Seed), MinWorkers: 2, GlobalBatchSize: 3 * 50, Mode: mode, ResumedVersion: checkpoint.Version,
            ShardMessageLimitBytes: 300, ShardRecipes: true, TrainedAhead: checkpoint.TrainedAhead);
        var monitoring = new Core.Diagnostics.MonitoringOptions { GradientNormEverySteps = 0, SampleTraceDirectory = _after };
        var server = ParameterServer.Props(ModelFactory.StartingWeights(ModelFactory.Build(options.Model), options.Model, loop.Seed),
            options.ParameterServerOptimizer(), loop.Epochs, monitoring, resumeFrom: checkpoint, scalingWorkers: 3, update: UpdateSettings.From(loop),
            configuredOptimizer: options.Optimizer);
        var log = CreateTestProbe();
        Sys.EventStream.Subscribe(log.Ref, typeof(Warning));
        var completion = new TaskCompletionSource<TrainingResult>();
        Sys.ActorOf(Coordinator.Props(settings, server,
            [.. Enumerable.Range(0, 2).Select(i => Worker.Props(i, options.Model, data.Train, data.Test, loop.EvaluationBatchSize,
                settings: ReplicaSettings.From(options) with { SampleTraceDirectory = _after }, seed: loop.Seed))],
            NullTrainingObserver.Instance, completion));
        var result = await completion.Task.WaitAsync(Guard);

        // Epoch 2's plan for 3 workers: its shards of 334, 333 and 333 samples in minibatches of 50; the rest is every minibatch
        // from the checkpoint's round on, but those trained ahead (Sync: 334 - 150 + 2 x (333 - 150) = 550 samples). It goes to
        // the 2 workers at 75 each per step (the global minibatch of 150 kept), from the checkpoint's round on.
        var plan = new ShardPlanner(samples, 3, loop.Seed).Plan(2);
        var ahead = checkpoint.TrainedAhead.ToHashSet();
        int[] rest = [.. plan.SelectMany((shard, s) => Enumerable.Range(checkpoint.Round, Math.Max(0, (shard.Length + 49) / 50 - checkpoint.Round))
            .Where(round => !ahead.Contains((round, s))).SelectMany(round => shard[(round * 50)..Math.Min(shard.Length, round * 50 + 50)])).Order()];
        if (mode is TrainingMode.Sync or TrainingMode.BoundedStaleness) Assert.Equal(550, rest.Length);
        var steps = ((rest.Length + 1) / 2 + 74) / 75;
        var warning = log.FishForMessage<Warning>(w => w.Message.ToString()!.StartsWith("Epoch 2 resumes", StringComparison.Ordinal), Guard);
        Assert.Equal($"Epoch 2 resumes at round {checkpoint.Round} with 2 of the 3 workers its checkpoint was planned for: the {rest.Length} samples its " +
            $"plan had left from that round go to them, in {steps} steps of up to 75 samples per worker (Training:KeepGlobalBatch). Every sample is " +
            "still trained once this epoch; the next epochs are planned for the workers alive.", warning.Message.ToString());
        Func<string, List<SampleTraceLog.AppliedMinibatch>> applied = mode switch
        {
            TrainingMode.Sync => SampleTraceLog.Applied,
            TrainingMode.Async => SampleTraceLog.AppliedAsync,
            TrainingMode.BoundedStaleness => SampleTraceLog.AppliedByRound,
            _ => SampleTraceLog.Computed,
        };
        var after = applied(_after);
        Assert.Equal([2], after.Select(m => m.Epoch).Distinct());
        Assert.Equal(rest, after.SelectMany(m => m.Samples).Order()); // each once, and none trained before the checkpoint
        // The uninterrupted run's steps of epoch 2 before the checkpoint's version: with the rest, the epoch, each sample once.
        var before = applied(_before).Where(m => m.Epoch == 2 && m.Version < checkpoint.Version).SelectMany(m => m.Samples);
        Assert.Equal(Enumerable.Range(0, samples), before.Concat(rest).Order());
        var epoch = Assert.Single(result.Epochs);
        Assert.Equal((2, samples), (epoch.Epoch, epoch.TrainSamples));
        // The epoch's training loss (the checkpoint's rounds and these) is close to the uninterrupted run's, whose rest trained the
        // same samples on 3 workers, in other minibatches of the same global size at the same learning rate: within 3% in
        // Sync; within 5% in Async, whose steps each apply one worker's gradient, of 75 samples here against 50 there, in
        // an order that timing decides (0.986-1.011 of it in 10 runs).
        var expected = uninterrupted.Epochs[^1];
        var tolerance = mode == TrainingMode.Sync ? 0.03 : 0.05;
        Assert.InRange(epoch.TrainLoss, expected.TrainLoss * (1 - tolerance), expected.TrainLoss * (1 + tolerance));
        // Test accuracy after 2 epochs of this small network is 0.15-0.3 in Async, where it differs by up to 0.08 from run to run
        // of the same job; only Sync's is compared.
        if (mode == TrainingMode.Sync) Assert.InRange(epoch.TestAccuracy, expected.TestAccuracy - 0.05, expected.TestAccuracy + 0.05);
    }
}
