using Akka.Actor;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Protocol;
using Akka.Event;
using DistTrain.Core.Diagnostics;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

/// <summary>
/// The sharded parameter server driven by test probes: what a worker receives and sends through its join, how the shards'
/// reports reach the coordinator, and a divergence in one shard only.
/// </summary>
public class ShardedParameterServerMessageTests() : TestKit(TestTimeouts.TestKitConfig)
{
    // 64 weights in two tensors: shard 0 owns [0, 32), shard 1 [32, 64), the second tensor's first 8 elements included.
    private static readonly ParameterLayout Layout = new([("a.weight", [40]), ("b.weight", [24])]);

    private static float[] Ramp() => [.. Enumerable.Range(0, 64).Select(i => (float)i)];

    /// <summary>Creates the server under a parent that passes on its failure, as the coordinator's supervision does.</summary>
    private sealed class Parent : ReceiveActor
    {
        private readonly IActorRef _failures;

        public Parent(Props child, IActorRef failures)
        {
            _failures = failures;
            var server = Context.ActorOf(child, "parameter-server");
            ReceiveAny(message => server.Forward(message));
        }

        protected override SupervisorStrategy SupervisorStrategy() =>
            new OneForOneStrategy(-1, -1, e =>
            {
                _failures.Tell(e);
                return Directive.Stop;
            }, loggingEnabled: false);
    }

    private (IActorRef Server, Akka.TestKit.TestProbe Worker, Akka.TestKit.TestProbe Coordinator, Akka.TestKit.TestProbe Failures) Start(OptimizerOptions optimizer,
        MonitoringOptions? monitoring = null)
    {
        var failures = CreateTestProbe();
        var props = ParameterServer.Props(new ParameterVector(Layout, Ramp()), optimizer, totalEpochs: 1, monitoring, shards: 2);
        var server = Sys.ActorOf(Props.Create(() => new Parent(props, failures.Ref)));
        var worker = CreateTestProbe();
        var coordinator = CreateTestProbe();
        server.Tell(new StartEpoch(1, [worker.Ref], [2]), coordinator.Ref);
        return (server, worker, coordinator, failures);
    }

    [Fact]
    public void A_worker_gets_whole_weights_and_its_report_is_stepped_by_both_shards()
    {
        var (_, worker, coordinator, _) = Start(new OptimizerOptions { LearningRate = 0.5 });
        var first = worker.ExpectMsg<WeightsUpdated>();
        Assert.Equal(0, first.Version);
        Assert.Equal(Ramp(), first.Weights);
        // Gradient 1 everywhere: every weight moves by -0.5, across the slice boundary at 32.
        worker.Reply(new GradientComputed(1, 0, 0, 0, 10, 5, [.. Enumerable.Repeat(1f, 64)]));
        var second = worker.ExpectMsg<WeightsUpdated>();
        Assert.Equal(1, second.Version);
        Assert.Equal(Ramp().Select(w => w - 0.5f), second.Weights);
        var applied = coordinator.ExpectMsg<RoundApplied>();
        Assert.Equal((1L, 10, 5.0), (applied.Version, applied.SampleCount, applied.LossSum));
        // Each step reaches the coordinator once, although two shards applied it.
        coordinator.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
    }

    /// <summary>
    /// A lost worker's join stops and gets nothing more; a worker that takes the slot later gets a new join. Left running, the
    /// join fell behind the shards with nothing to hold it back and read their reused messages of later broadcasts, which
    /// failed a job as "the shards are out of step" under load (the elastic test's two-shard case, about 1 run in 40 with
    /// two busy loops beside it).
    /// </summary>
    [Fact]
    public void A_lost_workers_join_stops_and_a_worker_taking_its_slot_later_gets_a_new_one()
    {
        var failures = CreateTestProbe();
        var props = ParameterServer.Props(new ParameterVector(Layout, Ramp()), new OptimizerOptions { LearningRate = 0.5 }, totalEpochs: 1, shards: 2);
        var server = Sys.ActorOf(Props.Create(() => new Parent(props, failures.Ref)));
        var (first, lost, coordinator) = (CreateTestProbe(), CreateTestProbe(), CreateTestProbe());
        server.Tell(new StartEpoch(1, [first.Ref, lost.Ref], [2, 2]), coordinator.Ref);
        Assert.Equal(0, first.ExpectMsg<WeightsUpdated>().Version);
        Assert.Equal(0, lost.ExpectMsg<WeightsUpdated>().Version);
        var lostJoin = lost.LastSender;
        Watch(lostJoin);
        coordinator.Send(server, new WorkerLost(1));
        ExpectTerminated(lostJoin);
        coordinator.ExpectMsg<WorkerRemoved>(r => r.WorkerIndex == 1);
        var gradient = Enumerable.Repeat(1f, 64).ToArray();
        for (var round = 0; round < 2; round++)
        {
            first.Reply(new GradientComputed(1, round, round, 0, 10, 5, gradient));
            Assert.Equal(round + 1, first.ExpectMsg<WeightsUpdated>().Version);
        }
        lost.ExpectNoMsg(TimeSpan.FromMilliseconds(300)); // neither round's weights went to the lost worker
        // A further part of the epoch with a new worker in slot 1: it gets the whole weights through a join of its own.
        var joined = CreateTestProbe();
        server.Tell(new StartEpoch(1, [first.Ref, joined.Ref], [3, 3], FirstRound: 2, Part: 1), coordinator.Ref);
        Assert.Equal(2, first.ExpectMsg<WeightsUpdated>().Version);
        var whole = joined.ExpectMsg<WeightsUpdated>();
        Assert.Equal((2L, 2), (whole.Version, whole.Round));
        Assert.Equal(Ramp().Select(w => w - 1f), whole.Weights);
        Assert.NotEqual(lostJoin, joined.LastSender);
        first.Reply(new GradientComputed(1, 2, 2, 0, 10, 5, gradient));
        joined.Reply(new GradientComputed(1, 2, 2, 1, 10, 5, gradient));
        Assert.Equal(3, joined.ExpectMsg<WeightsUpdated>().Version);
        failures.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public void A_report_of_the_wrong_length_is_rejected_and_the_round_still_waits()
    {
        var (_, worker, coordinator, _) = Start(new OptimizerOptions { LearningRate = 0.5 });
        worker.ExpectMsg<WeightsUpdated>();
        var join = worker.LastSender;
        worker.Send(join, new GradientComputed(1, 0, 0, 0, 10, 5, new float[63]));
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        worker.Send(join, new GradientComputed(1, 0, 0, 0, 10, 5, new float[64]));
        Assert.Equal(1, worker.ExpectMsg<WeightsUpdated>().Version);
        coordinator.ExpectMsg<RoundApplied>();
    }

    [Fact]
    public void A_divergence_in_one_shard_hands_over_the_whole_model_of_the_version_it_started_from()
    {
        var (_, worker, _, failures) = Start(new OptimizerOptions { LearningRate = 0.5 });
        worker.ExpectMsg<WeightsUpdated>();
        // The loss is finite and only shard 1's slice has a NaN: shard 0 steps to version 1, shard 1 diverges.
        var gradient = Enumerable.Repeat(1f, 64).ToArray();
        gradient[50] = float.NaN;
        worker.Reply(new GradientComputed(1, 0, 0, 0, 10, 5, gradient));
        var error = failures.ExpectMsg<TrainingDivergedException>();
        Assert.StartsWith("Training diverged at epoch 1, step 1 (weights version 0): a NaN or infinite averaged gradient", error.Message);
        Assert.Contains("First tensor with a non-finite gradient: b.weight", error.Message);
        Assert.Equal(0, error.LastGoodVersion);
        Assert.Equal(Ramp(), error.LastGoodWeights);
    }

    [Fact]
    public void The_gradient_diagnostics_judge_whole_tensors_from_the_shards_parts()
    {
        // a.weight has 32 elements in shard 0 and 8 in shard 1; a gradient of 1 everywhere gives it a norm of √40 = 6.32.
        var log = CreateTestProbe();
        Sys.EventStream.Subscribe(log.Ref, typeof(Warning));
        var monitoring = new MonitoringOptions { GradientNormEverySteps = 1, WarnAfterMeasurements = 1, ExplodingGradientNorm = 1 };
        var (_, worker, _, _) = Start(new OptimizerOptions { LearningRate = 0.5 }, monitoring);
        worker.ExpectMsg<WeightsUpdated>();
        worker.Reply(new GradientComputed(1, 0, 0, 0, 10, 5, [.. Enumerable.Repeat(1f, 64)]));
        worker.ExpectMsg<WeightsUpdated>();
        var warnings = log.ReceiveWhile(TimeSpan.FromSeconds(2), m => m is Warning w ? w.Message.ToString()! : null);
        var exploding = warnings.Where(w => w!.StartsWith("Exploding gradient", StringComparison.Ordinal)).Order().ToList();
        Assert.Equal(2, exploding.Count);
        Assert.Contains("a.weight has had a gradient norm above 1 for 1 measurements (now 6.32 at step 1)", exploding[0]);
        Assert.Contains("b.weight has had a gradient norm above 1 for 1 measurements (now 4.9 at step 1)", exploding[1]);
    }
}
