using Akka.Actor;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

/// <summary>The parameter server driven by test probes in place of workers.</summary>
public class ParameterServerTests() : TestKit(TestTimeouts.TestKitConfig)
{
    private static readonly ParameterLayout OneWeight = new([("w", [1])]);

    /// <summary>Cluster mode with shared memory: each synchronous step's broadcast is announced to the workers first.</summary>
    private static readonly UpdateSettings Announced = new(AnnounceBroadcastWrites: true);

    private (IActorRef Server, TestProbe[] Workers, TestProbe Coordinator) Start(float[] weights, OptimizerOptions optimizer, int[] batches,
        UpdateSettings? update = null)
    {
        var server = Sys.ActorOf(ParameterServer.Props(new ParameterVector(new ParameterLayout([("w", [weights.Length])]), weights), optimizer,
            totalEpochs: 1, update: update));
        var workers = batches.Select(_ => CreateTestProbe()).ToArray();
        var coordinator = CreateTestProbe();
        server.Tell(new StartEpoch(1, workers.Select(w => w.Ref).ToArray(), batches), coordinator.Ref);
        foreach (var worker in workers)
            Assert.Equal(0, worker.ExpectMsg<WeightsUpdated>().Version);
        return (server, workers, coordinator);
    }

    /// <summary>
    /// After <see cref="StopStepping"/> (a run stopping at its snapshot) reports are dropped and the snapshot keeps the last
    /// step, but a part that only sends the weights (the coordinator's ShareEpochWeights, when every worker holding an
    /// epoch's weights was lost and others score them) still goes out and completes: dropped, it left the evaluation the
    /// stop waits for hanging, and a stop after the last step failed the finished run on the stall timeout.
    /// </summary>
    [Fact]
    public void After_stop_stepping_reports_are_dropped_but_a_weights_only_part_still_goes_out()
    {
        var (server, workers, coordinator) = Start([1f], new OptimizerOptions { LearningRate = 1 }, [2, 2]);
        for (var i = 0; i < workers.Length; i++)
            workers[i].Send(server, new GradientComputed(1, 0, 0, i, 16, 0, [0.5f]));
        foreach (var worker in workers)
            Assert.Equal(1, worker.ExpectMsg<WeightsUpdated>().Version);

        server.Tell(StopStepping.Instance);
        for (var i = 0; i < workers.Length; i++)
            workers[i].Send(server, new GradientComputed(1, 1, 1, i, 16, 0, [0.5f]));
        server.Tell(GetWeights.Instance, coordinator.Ref);
        var snapshot = coordinator.FishForMessage<WeightsSnapshot>(_ => true);
        Assert.Equal(1, snapshot.Version);
        Assert.Equal(0.5f, snapshot.Weights[0]); // 1 - 1 * 0.5: the step before the stop, not the one after
        foreach (var worker in workers) worker.ExpectNoMsg(TimeSpan.FromMilliseconds(200));

        server.Tell(new StartEpoch(1, workers.Select(w => w.Ref).ToArray(), [0, 0], FirstRound: 3, Part: 1), coordinator.Ref);
        foreach (var worker in workers)
        {
            var shared = worker.ExpectMsg<WeightsUpdated>();
            Assert.Equal((1L, 0.5f), (shared.Version, shared.Weights[0]));
        }
        var completed = coordinator.FishForMessage<EpochCompleted>(_ => true);
        Assert.Equal((1, 1L, 0), (completed.Epoch, completed.Version, completed.SampleCount));
    }

    [Fact]
    public void Weight_decay_is_applied_once_per_update_not_once_per_worker()
    {
        // w = 1, gradient 0, L2 0.1, learning rate 1, 4 workers: one update gives 1 − 1·0.1·1 = 0.9 (not 0.6 or 0.6561).
        var (server, workers, _) = Start([1f], new OptimizerOptions { LearningRate = 1, L2 = 0.1 }, [1, 1, 1, 1]);
        for (var i = 0; i < workers.Length; i++)
            workers[i].Send(server, new GradientComputed(1, 0, 0, i, 16, 0, [0f]));
        foreach (var worker in workers)
        {
            var update = worker.ExpectMsg<WeightsUpdated>();
            Assert.Equal(1, update.Version);
            Assert.Equal(0.9f, update.Weights[0], 6);
        }
    }

    /// <summary>With <see cref="UpdateSettings.AnnounceBroadcastWrites"/> (cluster mode with shared memory), every worker is
    /// told of each synchronous step's broadcast before the optimizer writes it, and the broadcast that follows carries the
    /// announced array, whole and finished; the part's first weights, written before any step, go out unannounced.</summary>
    [Fact]
    public void With_broadcast_writes_announced_each_step_tells_every_worker_of_its_array_before_the_broadcast()
    {
        var weights = new float[3 * Optimizer.BlockLength];
        var (server, workers, _) = Start(weights, new OptimizerOptions { LearningRate = 0.5 }, [2, 2], Announced);
        for (var round = 0; round < 2; round++)
        {
            for (var i = 0; i < 2; i++)
                workers[i].Send(server, new GradientComputed(1, round, round, i, 8, 0, Enumerable.Repeat(1f + i, weights.Length).ToArray()));
            foreach (var worker in workers)
            {
                var announced = worker.ExpectMsg<WeightsInProgress>();
                var update = worker.ExpectMsg<WeightsUpdated>();
                Assert.Same(announced.Weights, update.Weights);
                var target = new float[weights.Length];
                Assert.True(announced.CopyTo(target, out _, out var version)); // finished: returns at once
                Assert.Equal(update.Version, version);
                Assert.Equal(-0.75f * (round + 1), target[^1], 6); // w − 0.5 · (1 + 2) / 2 per step
                Assert.Equal(update.Weights, target);
            }
        }
    }

    /// <summary>Announcing the broadcasts keeps the server's steps free of allocations (notices are reused, and sending them
    /// is left out of the count as any send is).</summary>
    [Fact]
    public void Announced_steps_allocate_nothing_on_the_server()
    {
        var weights = new float[3 * Optimizer.BlockLength];
        const int rounds = 40;
        var (server, workers, coordinator) = Start(weights, new OptimizerOptions { LearningRate = 0.01 }, [rounds, rounds], Announced);
        var gradients = new[] { new float[weights.Length], new float[weights.Length] };
        var allocated = new List<long>();
        for (var round = 0; round < rounds; round++)
        {
            for (var i = 0; i < 2; i++)
                workers[i].Send(server, new GradientComputed(1, round, round, i, 8, 0, gradients[i]));
            foreach (var worker in workers)
            {
                worker.ExpectMsg<WeightsInProgress>();
                worker.ExpectMsg<WeightsUpdated>();
            }
            var report = coordinator.ExpectMsg<RoundApplied>();
            allocated.Add(report.Timing.ServerAllocatedBytes);
            server.Tell(report, coordinator.Ref); // back to the pool, as the coordinator does
        }
        Assert.All(allocated.Skip(10), bytes => Assert.Equal(0, bytes));
    }

    /// <summary>A step whose averaged gradient is not finite abandons its notice: a link copying it gives up at once, and no
    /// broadcast follows.</summary>
    [Fact]
    public void A_step_that_is_not_finite_abandons_its_announced_broadcast()
    {
        var weights = new float[3 * Optimizer.BlockLength];
        var (server, workers, _) = Start(weights, new OptimizerOptions { LearningRate = 0.5 }, [2, 2], Announced);
        var bad = new float[weights.Length];
        bad[^1] = float.NaN; // a finite loss, a gradient whose last block is not
        workers[0].Send(server, new GradientComputed(1, 0, 0, 0, 8, 0, new float[weights.Length]));
        workers[1].Send(server, new GradientComputed(1, 0, 0, 1, 8, 0, bad));
        var notice = workers[0].ExpectMsg<WeightsInProgress>();
        Assert.False(notice.CopyTo(new float[weights.Length], out _, out _));
        workers[0].ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // no broadcast follows
    }

    [Fact]
    public void Gradients_are_averaged_weighted_by_sample_count()
    {
        // (16·1 + 48·3) / 64 = 2.5; lr 0.1 → w = 10 − 0.25
        var (server, workers, coordinator) = Start([10f], new OptimizerOptions { LearningRate = 0.1 }, [1, 1]);
        workers[0].Send(server, new GradientComputed(1, 0, 0, 0, 16, 8, [1f]));
        workers[1].Send(server, new GradientComputed(1, 0, 0, 1, 48, 24, [3f]));
        Assert.Equal(9.75f, workers[0].ExpectMsg<WeightsUpdated>().Weights[0], 6);
        var applied = coordinator.ExpectMsg<RoundApplied>();
        Assert.Equal(64, applied.SampleCount);
        Assert.Equal(32, applied.LossSum);
        coordinator.ExpectMsg<EpochCompleted>(e => e.Version == 1 && e.SampleCount == 64);
    }

    [Fact]
    public void Stale_duplicate_misaddressed_and_wrong_length_gradients_are_rejected_not_applied()
    {
        var (server, workers, coordinator) = Start([10f], new OptimizerOptions { LearningRate = 1 }, [2, 1]);
        workers[0].Send(server, new GradientComputed(1, 0, 0, 0, 10, 0, [1f, 1f])); // wrong length
        workers[0].Send(server, new GradientComputed(1, 0, 5, 0, 10, 0, [1f]));     // wrong version
        workers[0].Send(server, new GradientComputed(1, 0, 0, 1, 10, 0, [1f]));     // claims to be worker 1
        workers[0].Send(server, new GradientComputed(1, 0, 0, 0, 10, 0, [1f]));     // valid
        workers[0].Send(server, new GradientComputed(1, 0, 0, 0, 10, 0, [100f]));   // duplicate
        workers[0].ExpectNoMsg(TimeSpan.FromMilliseconds(200));                     // round still waits for worker 1
        workers[1].Send(server, new GradientComputed(1, 0, 0, 1, 10, 0, [3f]));
        Assert.Equal(8f, workers[0].ExpectMsg<WeightsUpdated>().Weights[0], 6);     // 10 − (1 + 3) / 2
        coordinator.ExpectMsg<RoundApplied>();
        // Round 1: only worker 0 has a minibatch; worker 1's gradient is not expected.
        workers[1].ExpectMsg<WeightsUpdated>(u => u.Round == 1);
        workers[1].Send(server, new GradientComputed(1, 1, 1, 1, 10, 0, [3f]));
        workers[0].Send(server, new GradientComputed(1, 1, 1, 0, 10, 0, [2f]));
        Assert.Equal(6f, workers[1].ExpectMsg<WeightsUpdated>(u => u.Round == 2).Weights[0], 6);
        coordinator.ExpectMsg<RoundApplied>();
        coordinator.ExpectMsg<EpochCompleted>(e => e.Version == 2);
    }

    [Fact]
    public void By_default_biases_are_not_decayed_and_the_learning_rate_is_scheduled_and_scaled_by_the_workers()
    {
        // w = (1, 1): "0.weight" and "0.bias"; zero gradients; L2 0.1; base lr 0.5 × 2 workers (linear scaling)
        // × warmup factor 0.5 at step 0 = 0.5: the weight becomes 1 − 0.5·0.1·1 = 0.95, the bias stays 1.
        var layout = new ParameterLayout([("0.weight", [1]), ("0.bias", [1])]);
        var options = new OptimizerOptions
        {
            LearningRate = 0.5, L2 = 0.1, ScaleLearningRateByWorkers = true,
            Schedule = new() { WarmupSteps = 2, WarmupStartFactor = 0.5 },
        };
        var server = Sys.ActorOf(ParameterServer.Props(new ParameterVector(layout, [1f, 1f]), options, totalEpochs: 1));
        var workers = new[] { CreateTestProbe(), CreateTestProbe() };
        var coordinator = CreateTestProbe();
        server.Tell(new StartEpoch(1, workers.Select(w => w.Ref).ToArray(), [2, 2]), coordinator.Ref);
        foreach (var worker in workers) worker.ExpectMsg<WeightsUpdated>();
        for (var i = 0; i < 2; i++)
            workers[i].Send(server, new GradientComputed(1, 0, 0, i, 8, 0, [0f, 0f]));
        var update = workers[0].ExpectMsg<WeightsUpdated>();
        Assert.Equal(0.95f, update.Weights[0], 6);
        Assert.Equal(1f, update.Weights[1]);
        Assert.Equal(0.5, coordinator.ExpectMsg<RoundApplied>().LearningRate, 12);
        for (var i = 0; i < 2; i++)
            workers[i].Send(server, new GradientComputed(1, 1, 1, i, 8, 0, [0f, 0f]));
        Assert.Equal(0.75, coordinator.ExpectMsg<RoundApplied>().LearningRate, 12); // warmup 0.5 + 0.5·1/2
    }

    [Fact]
    public void A_worker_lost_mid_round_is_no_longer_awaited_or_sent_weights_and_one_lost_after_the_last_round_ends_nothing_twice()
    {
        var (server, workers, coordinator) = Start([10f], new OptimizerOptions { LearningRate = 0.1 }, [2, 2, 1]);
        workers[0].Send(server, new GradientComputed(1, 0, 0, 0, 16, 8, [1f]));
        coordinator.Send(server, new WorkerLost(1)); // round 0 now completes with workers 0 and 2
        Assert.Equal(new WorkerRemoved(1, 0), coordinator.ExpectMsg<WorkerRemoved>());
        workers[2].Send(server, new GradientComputed(1, 0, 0, 2, 16, 8, [3f]));
        Assert.Equal(10f - 0.1f * 2f, workers[0].ExpectMsg<WeightsUpdated>().Weights[0], 6);
        coordinator.ExpectMsg<RoundApplied>(r => r.SampleCount == 32);
        workers[0].Send(server, new GradientComputed(1, 1, 1, 0, 16, 8, [1f])); // round 1: worker 0 alone
        coordinator.ExpectMsg<RoundApplied>(r => r.SampleCount == 16);
        coordinator.ExpectMsg<EpochCompleted>(e => e.SampleCount == 48);
        coordinator.Send(server, new WorkerLost(2)); // after the last round: reported, nothing else happens
        Assert.Equal(new WorkerRemoved(2, 1), coordinator.ExpectMsg<WorkerRemoved>());
        coordinator.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        workers[1].ExpectNoMsg(TimeSpan.FromMilliseconds(100)); // no weights went to the lost worker after its loss
    }
}
