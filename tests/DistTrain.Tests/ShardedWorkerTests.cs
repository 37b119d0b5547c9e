using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Akka.Actor;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Security;
using DistTrain.Core.Configuration;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Core.Layers;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

/// <summary>
/// The <see cref="Worker"/> actor in its shard mode (<see cref="ShardServers"/>), over real loopback TCP in one process: real
/// workers with real data shards of the Fashion-MNIST subset train against K <see cref="ParameterShardActor"/>s, each behind its
/// own <see cref="DataPlaneListener"/> and <see cref="ShardDataPlane"/>, and end with the weights the same workers end with
/// against one <see cref="ParameterServer"/>, bit for bit. A shard that refuses the worker or closes its connection mid-run
/// stops the worker with an error naming the shard and its endpoint. The shards also run hosted by <see cref="ShardHost"/>s in
/// actor systems of their own, reached over Akka.Remote on loopback as a coordinator reaches shard nodes.
/// </summary>
public sealed class ShardedWorkerTests : TestKit
{
    /// <summary>The shards report every round to their owner, the test actor in most tests here; those tests read other messages.</summary>
    public ShardedWorkerTests() : base(RemoteConfig) => IgnoreMessages<ShardRoundApplied>();

    /// <summary>Remoting on loopback (any free port), so that shard nodes in actor systems of their own are reached as over a network.</summary>
    private static Akka.Configuration.Config RemoteConfig => Akka.Configuration.ConfigurationFactory.ParseString("""
        akka.loglevel = INFO
        akka.actor.provider = remote
        akka.remote.dot-netty.tcp { hostname = "127.0.0.1", port = 0 }
        """).WithFallback(TestTimeouts.TestKitConfig);

    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30); // a hang guard on a loaded machine, not a speed limit
    private const int Workers = 2;
    private const int Epochs = 2;
    private const int BatchSize = 20;
    private const int Rounds = 4; // worker 0's 70 samples and worker 1's 65 in minibatches of 20: 4 each, the last shorter

    private static ModelOptions Model => ParameterShardActorTests.Model;

    private static readonly Lazy<Core.Data.TrainingData> Data = new(TestData.Normalized);

    private static readonly OptimizerOptions Sgd = new() { LearningRate = 0.05, Momentum = 0.9, L2 = 1e-3 };

    private readonly OwnedResources _owned = new("disttrain-sharded-worker-");

    /// <summary>The settings every worker of a test starts with (Cluster:Compression, say); null: the defaults.</summary>
    private ReplicaSettings? _replicaSettings;

    /// <summary>What the parameter server or the shards step with: <see cref="Sgd"/>, or its parameter-server share when the
    /// workers apply part of it (<see cref="Core.Configuration.TrainingOptions.ParameterServerOptimizer"/>).</summary>
    private OptimizerOptions _serverOptimizer = Sgd;

    protected override void Dispose(bool disposing)
    {
        if (disposing) _owned.Dispose();
        base.Dispose(disposing);
    }

    private static ParameterVector Initial() => ModelFactory.StartingWeights(ModelFactory.Build(Model), Model, seed: 7);

    /// <summary>Worker <paramref name="worker"/>'s data shard of <paramref name="epoch"/>: 70 or 65 samples of a shuffle of the training set.</summary>
    private static AssignShard Shard(int epoch, int worker)
    {
        var order = Enumerable.Range(0, Data.Value.Train.Count).ToArray();
        new Random(epoch).Shuffle(order);
        return new AssignShard(epoch, order[(worker * 70)..(worker * 70 + 70 - 5 * worker)], BatchSize);
    }

    /// <summary>Stops its one child on any failure and reports the failure (and, first, the child) to a probe.</summary>
    private sealed class Supervising : ReceiveActor
    {
        private readonly IActorRef _report;

        public Supervising(Props child, IActorRef report)
        {
            _report = report;
            report.Tell(Context.ActorOf(child, "worker"));
        }

        protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(e =>
        {
            _report.Tell(e);
            return Directive.Stop;
        });
    }

    /// <summary>Real workers 0 to <paramref name="workers"/> - 1, each under a parent that stops it on a failure and reports the
    /// failure to <paramref name="failures"/>; worker w trains against <paramref name="shards"/>(w), or one server's broadcasts for null.</summary>
    private IActorRef[] StartWorkers(int workers, Func<int, ShardServers?> shards, TestProbe failures) =>
        [.. Enumerable.Range(0, workers).Select(w => StartWorker(w, shards(w), failures))];

    /// <summary>Real worker <paramref name="index"/> under a parent that stops it on a failure and reports the failure to <paramref name="failures"/>.</summary>
    private IActorRef StartWorker(int index, ShardServers? shards, TestProbe failures)
    {
        var data = Data.Value;
        Sys.ActorOf(Props.Create(() => new Supervising(Worker.Props(index, Model, data.Train, data.Test, 64, null, 7, _replicaSettings, shards), failures.Ref)));
        return failures.ExpectMsg<IActorRef>(Wait);
    }

    /// <summary>Worker's weights once it holds version <paramref name="version"/> or a later one (asked until then).</summary>
    private WeightsSnapshot WeightsAt(IActorRef worker, long version)
    {
        var deadline = DateTime.UtcNow + Wait; // a hang guard, not a speed limit
        while (true)
        {
            worker.Tell(GetWeights.Instance, TestActor);
            var snapshot = ExpectMsg<WeightsSnapshot>(Wait);
            if (snapshot.Version >= version) return snapshot;
            Assert.True(DateTime.UtcNow < deadline, $"the worker still holds version {snapshot.Version}, not {version}");
            Thread.Sleep(10);
        }
    }

    /// <summary>The workers' final weights against one <see cref="ParameterServer"/> (driven as the coordinator drives it).</summary>
    /// <param name="checkpoints">Where the server writes a checkpoint at each epoch's end; null: none.</param>
    private float[][] AgainstOneServer(Core.Checkpoints.CheckpointStore? checkpoints = null)
    {
        var server = Sys.ActorOf(ParameterServer.Props(Initial(), _serverOptimizer, totalEpochs: Epochs,
            checkpoints: checkpoints is null ? null : new CheckpointSettings(checkpoints, EverySteps: 0, ShardSeed: 1, BatchSizePerWorker: BatchSize),
            configuredOptimizer: Sgd));
        var failures = CreateTestProbe();
        var workers = StartWorkers(Workers, _ => null, failures);
        var coordinator = CreateTestProbe();
        for (var epoch = 1; epoch <= Epochs; epoch++)
        {
            for (var w = 0; w < Workers; w++) workers[w].Tell(Shard(epoch, w), coordinator.Ref);
            server.Tell(new StartEpoch(epoch, workers, [.. workers.Select(_ => Rounds)]), coordinator.Ref);
            var e = epoch;
            coordinator.FishForMessage<EpochCompleted>(c => c.Epoch == e, Wait);
        }
        var final = workers.Select(w => WeightsAt(w, Epochs * Rounds)).ToArray();
        server.Tell(GetWeights.Instance, TestActor);
        var served = ExpectMsg<WeightsSnapshot>(Wait);
        foreach (var snapshot in final)
        {
            Assert.Equal(Epochs * Rounds, snapshot.Version);
            Assert.Equal(served.Weights, snapshot.Weights);
        }
        failures.ExpectNoMsg(TimeSpan.Zero);
        Sys.Stop(server);
        return [.. final.Select(s => s.Weights)];
    }

    /// <summary>
    /// Cluster:Compression TopK 1% as the main job's config runs it, with momentum correction: the workers clip their gradients
    /// (to 0.5), add L2 and apply the momentum before encoding, and the server or the shards step with the rest of
    /// <see cref="Sgd"/> (its parameter-server share, as <see cref="Core.Configuration.TrainingOptions.ParameterServerOptimizer"/> gives it).
    /// </summary>
    private void UseTopKWithMomentumCorrection()
    {
        _replicaSettings = new ReplicaSettings(Compression: new Core.Compression.GradientCompressionSettings(Core.Compression.GradientCompression.TopK,
            TopKRatio: 0.01, Momentum: Sgd.Momentum), LocalGradient: new LocalGradientSettings(ClipNorm: 0.5, L1: 0, L2: Sgd.L2, DecayBiasAndNormParameters: false));
        _serverOptimizer = Sgd.WithoutMomentum().WithoutRegularization();
    }

    /// <summary>One shard node: its shard actor, its data plane, its listener's port and the plane's links by worker slot.</summary>
    private sealed record ShardNode(IActorRef Shard, IActorRef DataPlane, int Port, IActorRef[] Links);

    /// <param name="compressed">Under Cluster:Compression, what the workers send; null: float32 slices.</param>
    private ShardNode[] StartShards(ParameterVector initial, int shards, byte[][] tokens, CompressedSlices? compressed = null)
    {
        var plan = ParameterShards.Plan(initial.Layout, shards);
        var nodes = new ShardNode[shards];
        for (var k = 0; k < shards; k++)
        {
            var shard = Sys.ActorOf(ParameterShardActor.Props(plan[k], initial, _serverOptimizer, totalEpochs: Epochs, TestActor, configuredOptimizer: Sgd));
            var plane = Sys.ActorOf(ShardDataPlane.Props(plan[k], shards, tokens, compressed));
            var listener = DataPlaneListener.Start(0, null);
            _owned.Own(listener);
            listener.Attach(plane);
            plane.Tell(new ShardDataPlane.GetLinks(), TestActor);
            nodes[k] = new ShardNode(shard, plane, listener.Port, ExpectMsg<ShardDataPlane.Links>(Wait).ByWorker);
        }
        return nodes;
    }

    private static void StartPart(ShardNode[] nodes, int epoch, int workers)
    {
        foreach (var node in nodes)
            node.Shard.Tell(new ShardPartStart(epoch, node.Links, [.. Enumerable.Repeat(Rounds, workers)], 0, [.. nodes.Select(n => n.Shard)], ActorRefs.Nobody));
    }

    /// <summary>What worker <paramref name="token"/>'s holder is given to train against <paramref name="nodes"/>.</summary>
    private static ShardServers Servers(ShardNode[] nodes, byte[] token, ParameterVector initial) =>
        new([.. nodes.Select(n => new ShardEndpoint("127.0.0.1", n.Port))], token, initial, null);

    /// <summary>
    /// Real workers train against 2 or 3 shards over TCP and end with the weights they end with against one server, bit for
    /// bit: with float32 slices, and under Cluster:Compression, where each worker encodes its whole gradient once (its one
    /// error-feedback residual) and sends each shard its cut of the message (Float16: a fixed share; TopK 1% over the whole
    /// gradient: the picks inside the slice, as many as fall there). TopK runs as the main job's config runs it, with momentum
    /// correction: the workers clip their gradients, add L2 and apply the momentum before encoding, and the server and the
    /// shards step with the rest of the optimizer (its parameter-server share).
    /// </summary>
    [Theory]
    [InlineData(2, Core.Compression.GradientCompression.None)]
    [InlineData(3, Core.Compression.GradientCompression.None)]
    [InlineData(2, Core.Compression.GradientCompression.Float16)]
    [InlineData(3, Core.Compression.GradientCompression.TopK)]
    public void Real_workers_against_shards_over_tcp_end_with_one_servers_weights_bit_for_bit(int shards, Core.Compression.GradientCompression compression)
    {
        if (compression == Core.Compression.GradientCompression.Float16)
            _replicaSettings = new ReplicaSettings(Compression: new Core.Compression.GradientCompressionSettings(compression));
        if (compression == Core.Compression.GradientCompression.TopK) UseTopKWithMomentumCorrection();
        var expected = AgainstOneServer();
        var initial = Initial();
        var tokens = ShardDataPlaneTests.Tokens(Workers);
        var nodes = StartShards(initial, shards, tokens, CompressedSlices.Of(_replicaSettings?.Compression, initial.Layout));
        TrainAgainstShardsAndCompare(nodes, tokens, initial, expected);
    }

    /// <summary>Two shards over TCP, a loss arbiter of epoch 1's first part that reports to the test actor, and real workers
    /// that train against the shards, supervised under <paramref name="failures"/>.</summary>
    private (ParameterVector Initial, ShardNode[] Nodes, IActorRef[] Shards, IActorRef[] Workers, IActorRef Arbiter) TwoShardsOverTcp(TestProbe failures)
    {
        var initial = Initial();
        var tokens = ShardDataPlaneTests.Tokens(Workers);
        var nodes = StartShards(initial, 2, tokens);
        var shards = nodes.Select(n => n.Shard).ToArray();
        var workers = StartWorkers(Workers, w => Servers(nodes, tokens[w], initial), failures);
        return (initial, nodes, shards, workers, Sys.ActorOf(ShardLossArbiter.Props(shards, Workers, 1, 0, TestActor)));
    }

    /// <summary>
    /// A worker lost during a part, and the further part of the epoch that trains the samples it left: worker 1 never computes
    /// (it is given no data shard) and is reported lost in round 0; over TCP, the part's <see cref="ShardLossArbiter"/> asks
    /// both shards, which close round 0 without its slice (decision: round 0, not kept), and worker 0 trains its 4 rounds alone.
    /// The further part (part 1, rounds 5 to 8, as the coordinator plans it after a loss) gives worker 0 worker 1's 65
    /// samples; its shards' starting weights reach worker 0 before its data shard does, so they wait for it. Worker 0 ends with
    /// the weights the same steps give against one <see cref="ParameterServer"/> that is told of the same loss, bit for bit.
    /// </summary>
    [Fact]
    public void A_worker_lost_mid_part_leaves_its_samples_to_a_further_part_that_ends_on_one_servers_weights_bit_for_bit()
    {
        const int FurtherFirstRound = Rounds + 1; // the coordinator skips one round between parts (EpochPlan.ContinueEpoch)
        var lostSamples = Shard(1, 1).SampleIndices;
        var further = new AssignShard(1, lostSamples, BatchSize, FurtherFirstRound, Rounds, StepsPerEpoch: Rounds, Part: 1);
        const int FurtherEnd = FurtherFirstRound + Rounds;    // 65 samples in minibatches of 20: 4 rounds

        // One server, driven as the coordinator drives it through the loss.
        var server = Sys.ActorOf(ParameterServer.Props(Initial(), Sgd, totalEpochs: 1));
        var failures = CreateTestProbe();
        var reference = StartWorkers(Workers, _ => null, failures);
        var coordinator = CreateTestProbe();
        reference[0].Tell(Shard(1, 0), coordinator.Ref);
        server.Tell(new StartEpoch(1, reference, [Rounds, Rounds]), coordinator.Ref);
        server.Tell(new WorkerLost(1), coordinator.Ref);
        Assert.Equal(new WorkerRemoved(1, 0), coordinator.FishForMessage<WorkerRemoved>(_ => true, Wait));
        coordinator.FishForMessage<EpochCompleted>(_ => true, Wait);
        reference[0].Tell(further, coordinator.Ref);
        server.Tell(new StartEpoch(1, [reference[0], ActorRefs.Nobody], [FurtherEnd, 0], FurtherFirstRound, Rounds, false, Part: 1), coordinator.Ref);
        coordinator.FishForMessage<EpochCompleted>(_ => true, Wait);
        var expected = WeightsAt(reference[0], 2 * Rounds).Weights;
        Sys.Stop(server);

        var (initial, nodes, shards, workers, arbiter) = TwoShardsOverTcp(failures);
        workers[0].Tell(Shard(1, 0));
        foreach (var node in nodes) node.Shard.Tell(new ShardPartStart(1, node.Links, [Rounds, Rounds], 0, shards, arbiter));
        arbiter.Tell(new WorkerLost(1));
        Assert.Equal(new LossDecision(1, 0, Keep: false), ExpectMsg<ShardLossDecided>(Wait).Decision);
        Assert.Equal(Rounds, WeightsAt(workers[0], Rounds).Version);
        foreach (var node in nodes)
            node.Shard.Tell(new ShardPartStart(1, [node.Links[0], ActorRefs.Nobody], [FurtherEnd, 0], Rounds, shards, ActorRefs.Nobody, Part: 1,
                FirstRound: FurtherFirstRound));
        Thread.Sleep(200); // the further part's starting weights come first, and wait for the data shard
        workers[0].Tell(further);
        var actual = WeightsAt(workers[0], 2 * Rounds);
        Assert.Equal(2 * Rounds, actual.Version);
        Assert.NotEqual(initial.Values, expected);
        Compare.Identical(expected, actual.Weights, "final weights against 2 shards with a lost worker, against one server's");
        failures.ExpectNoMsg(TimeSpan.Zero);
        foreach (var worker in workers.Concat(reference)) Sys.Stop(worker);
    }

    /// <summary>
    /// Training:KeepGlobalBatch on shard nodes: worker 1 never computes and is reported lost in round 0, so the shards close
    /// round 0 without it (not kept) and, as its minibatches are left, cut the part for every worker from round 1, where one
    /// <see cref="ParameterServer"/> cuts it (<see cref="WorkerRemoved.OthersCutFrom"/> 1 there; <see cref="LossDecision.ApplyTo"/>
    /// gives the shards' owner the same). Worker 0 takes the round's results with that end and computes no further round
    /// (no slice of it reaches a shard, which would refuse it with a warning). The further part, at the global minibatch of 40,
    /// trains worker 0's 50 samples left and worker 1's 65, and worker 0 ends with the weights it ends with against one server
    /// told of the same loss, bit for bit.
    /// </summary>
    [Fact]
    public void With_keep_global_batch_a_lost_worker_cuts_the_part_on_shard_nodes_where_one_server_cuts_it()
    {
        const int CutFrom = 1;
        const int FurtherFirstRound = CutFrom + 1;
        var left = Shard(1, 0).SampleIndices[(CutFrom * BatchSize)..].Concat(Shard(1, 1).SampleIndices).ToArray();
        var further = new AssignShard(1, left, 2 * BatchSize, FurtherFirstRound, StepsPerEpoch: Rounds, Part: 1);
        var furtherEnd = FurtherFirstRound + (left.Length + 2 * BatchSize - 1) / (2 * BatchSize); // 115 samples in minibatches of 40: 3 rounds

        // One server, driven as the coordinator drives it through the loss.
        var server = Sys.ActorOf(ParameterServer.Props(Initial(), Sgd, totalEpochs: 1));
        var failures = CreateTestProbe();
        var reference = StartWorkers(Workers, _ => null, failures);
        var coordinator = CreateTestProbe();
        reference[0].Tell(Shard(1, 0), coordinator.Ref);
        server.Tell(new StartEpoch(1, reference, [Rounds, Rounds], KeepGlobalBatch: true), coordinator.Ref);
        server.Tell(new WorkerLost(1), coordinator.Ref);
        Assert.Equal(new WorkerRemoved(1, 0, CutFrom), coordinator.FishForMessage<WorkerRemoved>(_ => true, Wait));
        Assert.Equal(1, coordinator.FishForMessage<EpochCompleted>(_ => true, Wait).Version);
        reference[0].Tell(further, coordinator.Ref);
        server.Tell(new StartEpoch(1, [reference[0], ActorRefs.Nobody], [furtherEnd, 0], FurtherFirstRound, Rounds, false, Part: 1, KeepGlobalBatch: true), coordinator.Ref);
        coordinator.FishForMessage<EpochCompleted>(_ => true, Wait);
        var expected = WeightsAt(reference[0], 1 + furtherEnd - FurtherFirstRound).Weights;
        Sys.Stop(server);

        var (initial, nodes, shards, workers, arbiter) = TwoShardsOverTcp(failures);
        EventFilter.Warning(contains: "Training:KeepGlobalBatch ended this part").Expect(0, () =>
        {
            workers[0].Tell(Shard(1, 0));
            foreach (var node in nodes) node.Shard.Tell(new ShardPartStart(1, node.Links, [Rounds, Rounds], 0, shards, arbiter, KeepGlobalBatch: true));
            arbiter.Tell(new WorkerLost(1));
            var decision = ExpectMsg<ShardLossDecided>(Wait).Decision;
            Assert.Equal(new LossDecision(1, 0, Keep: false), decision);
            Assert.Equal((0, CutFrom), decision.ApplyTo([Rounds, Rounds], keepGlobalBatch: true)); // what the shards' owner tells the coordinator
            Assert.Equal(1, WeightsAt(workers[0], 1).Version);
            Thread.Sleep(300); // time for a round past the cut to be computed and sent, were the end not kept
        });
        Assert.Equal(1, WeightsAt(workers[0], 1).Version);
        foreach (var node in nodes)
            node.Shard.Tell(new ShardPartStart(1, [node.Links[0], ActorRefs.Nobody], [furtherEnd, 0], Rounds, shards, ActorRefs.Nobody, Part: 1,
                FirstRound: FurtherFirstRound, KeepGlobalBatch: true));
        workers[0].Tell(further);
        var actual = WeightsAt(workers[0], 1 + furtherEnd - FurtherFirstRound);
        Assert.Equal(1 + furtherEnd - FurtherFirstRound, actual.Version);
        Compare.Identical(expected, actual.Weights, "final weights against 2 shards with a part cut after a lost worker, against one server's");
        failures.ExpectNoMsg(TimeSpan.Zero);
        foreach (var worker in workers.Concat(reference)) Sys.Stop(worker);
    }

    /// <summary>
    /// A worker of the run that claims another worker's slot (worker 1's) with its own token (worker 0's) is refused by the shard
    /// node with the reason, and stops; the slot stays free, and the real workers 0 and 1 then train against the shards and end
    /// with one server's weights bit for bit.
    /// </summary>
    [Fact]
    public void A_worker_that_claims_another_workers_slot_with_its_own_token_is_refused_and_the_real_worker_still_trains()
    {
        var expected = AgainstOneServer();
        var initial = Initial();
        var tokens = ShardDataPlaneTests.Tokens(Workers);
        var nodes = StartShards(initial, shards: 2, tokens);
        var failures = CreateTestProbe();
        var impostor = StartWorker(1, Servers(nodes, tokens[0], initial), failures);
        Watch(impostor);
        var error = failures.ExpectMsg<IOException>(Wait);
        Assert.StartsWith("Worker 1: the data plane to shard ", error.Message);
        Assert.Contains(" refused this connection: shard ", error.Message);
        Assert.Contains(" of 2: it claims worker slot 1 with another worker slot's token: each worker's hello carries its own slot's token, " +
            "and only the worker of that slot was given it (check the worker's index)", error.Message);
        foreach (var token in tokens) Assert.DoesNotContain(Convert.ToHexString(token[..8]), error.Message, StringComparison.OrdinalIgnoreCase);
        ExpectTerminated(impostor, Wait);

        TrainAgainstShardsAndCompare(nodes, tokens, initial, expected);
    }

    /// <summary>Real workers 0 to <see cref="Workers"/> - 1, each with its own token, train <see cref="Epochs"/> epochs against
    /// <paramref name="nodes"/>, and end with <paramref name="expected"/> (one server's weights) bit for bit.</summary>
    private void TrainAgainstShardsAndCompare(ShardNode[] nodes, byte[][] tokens, ParameterVector initial, float[][] expected) =>
        TrainAgainstShardsAndCompare(nodes.Length, w => Servers(nodes, tokens[w], initial), epoch => StartPart(nodes, epoch, Workers), initial, expected);

    /// <summary>Real workers 0 to <see cref="Workers"/> - 1, worker w given <paramref name="servers"/>(w), train <see cref="Epochs"/>
    /// epochs against <paramref name="shards"/> shards whose parts <paramref name="startPart"/>(epoch) starts, and end with
    /// <paramref name="expected"/> (one server's weights) bit for bit.</summary>
    /// <param name="started">Workers already started (and told their shards otherwise), with the probe their failures go to; null:
    /// workers started here, given <paramref name="servers"/>.</param>
    private void TrainAgainstShardsAndCompare(int shards, Func<int, ShardServers?> servers, Action<int> startPart, ParameterVector initial, float[][] expected,
        (IActorRef[] Workers, TestProbe Failures)? started = null)
    {
        var failures = started?.Failures ?? CreateTestProbe();
        var workers = started?.Workers ?? StartWorkers(Workers, servers, failures);
        var received = TensorFrame.BytesReceived;
        for (var epoch = 1; epoch <= Epochs; epoch++)
        {
            for (var w = 0; w < Workers; w++) workers[w].Tell(Shard(epoch, w));
            // Each epoch starts once every worker holds the last one's final weights, so every shard has finished it.
            startPart(epoch);
            foreach (var worker in workers) Assert.Equal(epoch * Rounds, WeightsAt(worker, epoch * Rounds).Version);
        }
        received = TensorFrame.BytesReceived - received;
        for (var w = 0; w < Workers; w++)
        {
            var actual = WeightsAt(workers[w], Epochs * Rounds).Weights;
            Assert.Equal(expected[w].Length, actual.Length);
            for (var i = 0; i < actual.Length; i++)
                if (BitConverter.SingleToInt32Bits(expected[w][i]) != BitConverter.SingleToInt32Bits(actual[i]))
                    Assert.Fail($"Worker {w} against {shards} shards over TCP: final weight {i} is {actual[i]:R}, against one server {expected[w][i]:R}");
        }
        Assert.NotEqual(initial.Values, expected[0]); // it trains
        // The slices went through the sockets: at least every step's result down and, in float32, every step's report up, for
        // every worker; encoded, the reports took less than float32 would.
        var report = (long)initial.Layout.WorkerReportLength * sizeof(float);
        var float32 = Workers * report * 2L * Epochs * Rounds;
        if (_replicaSettings?.Compression is null) Assert.True(received >= float32, $"{received:N0} bytes read from data-plane sockets");
        else Assert.InRange(received, float32 / 2, float32 - 1);
        failures.ExpectNoMsg(TimeSpan.Zero);
        foreach (var worker in workers) Sys.Stop(worker);
    }

    /// <summary>
    /// Cluster workers (given <see cref="ShardDialing"/>) told the shard nodes by message, as Cluster:ShardNodes tells them
    /// (<see cref="ShardServersAssigned"/>): a message without the job's proof, one for another run and one for another slot are
    /// ignored with a warning naming why; a worker whose starting weights are not the message's (another seed) stops, naming the
    /// settings; and with the genuine messages 2 workers enter their shard mode and end with one server's weights bit for bit.
    /// </summary>
    [Fact]
    public void Workers_told_the_shard_nodes_by_message_take_only_their_runs_genuine_one_and_train_to_one_servers_weights()
    {
        var expected = AgainstOneServer();
        var initial = Initial();
        var tokens = ShardDataPlaneTests.Tokens(Workers);
        var nodes = StartShards(initial, shards: 2, tokens);
        var identity = new JobIdentity("sharded-worker", System.Text.Encoding.UTF8.GetBytes(new string('w', 32)));
        ShardEndpoint[] endpoints = [.. nodes.Select(n => new ShardEndpoint("127.0.0.1", n.Port))];
        var failures = CreateTestProbe();
        var data = Data.Value;
        IActorRef Start(int worker, int seed)
        {
            Sys.ActorOf(Props.Create(() => new Supervising(Worker.Props(worker, Model, data.Train, data.Test, 64, null, seed, null, null,
                new ShardDialing(identity, "job-1", null)), failures.Ref)));
            return failures.ExpectMsg<IActorRef>(Wait);
        }

        var otherSeed = Start(0, seed: 8);
        otherSeed.Tell(ShardServersAssigned.Signed(identity, "job-1", 0, endpoints, tokens[0], initial));
        var refused = failures.ExpectMsg<ShardModeRefusedException>(Wait);
        Assert.StartsWith("Worker 0: this node builds other starting weights than the parameter server (Model:Initializer, Training:Seed or the " +
            "Model:Pretrained file differ)", refused.Message);

        IActorRef[] workers = [Start(0, seed: 7), Start(1, seed: 7)];
        var other = new JobIdentity("sharded-worker", System.Text.Encoding.UTF8.GetBytes(new string('x', 32)));
        EventFilter.Warning(contains: "does not carry the job's proof").ExpectOne(Wait, () =>
            workers[0].Tell(ShardServersAssigned.Signed(other, "job-1", 0, endpoints, tokens[0], initial)));
        EventFilter.Warning(contains: "it is for run job-2, and this worker belongs to run job-1").ExpectOne(Wait, () =>
            workers[0].Tell(ShardServersAssigned.Signed(identity, "job-2", 0, endpoints, tokens[0], initial)));
        EventFilter.Warning(contains: "it is for worker slot 1").ExpectOne(Wait, () =>
            workers[0].Tell(ShardServersAssigned.Signed(identity, "job-1", 1, endpoints, tokens[1], initial)));
        for (var w = 0; w < Workers; w++) workers[w].Tell(ShardServersAssigned.Signed(identity, "job-1", w, endpoints, tokens[w], initial));
        TrainAgainstShardsAndCompare(2, _ => null, epoch => StartPart(nodes, epoch, Workers), initial, expected, (workers, failures));
    }

    /// <summary>
    /// A shard node that refuses the worker's hello (the endpoint given for shard 1 is shard 0's), or one whose data plane
    /// stops after the first step (its connections close): the worker stops with an <see cref="IOException"/> naming the
    /// shard, its endpoint and the reason, and nothing hangs.
    /// </summary>
    [Theory]
    [InlineData("refuses")]
    [InlineData("closes")]
    public void A_shard_that_refuses_or_closes_stops_the_worker_with_an_error_naming_the_shard_and_its_endpoint(string what)
    {
        var initial = Initial();
        var tokens = ShardDataPlaneTests.Tokens(1);
        var nodes = StartShards(initial, shards: 2, tokens);
        var shard1At = what == "refuses" ? nodes[0].Port : nodes[1].Port;
        var servers = new ShardServers([new ShardEndpoint("127.0.0.1", nodes[0].Port), new ShardEndpoint("127.0.0.1", shard1At)], tokens[0], initial, null);
        var failures = CreateTestProbe();
        var worker = StartWorker(0, servers, failures);
        Watch(worker);
        worker.Tell(Shard(1, 0));
        StartPart(nodes, 1, workers: 1);
        if (what == "closes")
        {
            Assert.True(WeightsAt(worker, 1).Version >= 1); // it trained on both shards' results
            Sys.Stop(nodes[1].DataPlane);
        }

        var error = failures.ExpectMsg<IOException>(Wait);
        Assert.StartsWith($"Worker 0: the data plane to shard 1 of 2 at 127.0.0.1:{shard1At} closed: ", error.Message);
        Assert.Contains(what == "refuses"
            ? $"127.0.0.1:{shard1At} refused this connection: shard 0 of 2: the hello is for shard 1, and this node serves shard 0: connect to shard 1's data port"
            : "closed the connection", error.Message);
        Assert.EndsWith("The worker stops: without every shard's slice it can put no weights together, and a worker cannot take its slot at a shard again.",
            error.Message);
        ExpectTerminated(worker, Wait);
    }
    /// <summary>A loopback port whose listener never accepts and never writes, with room in its queue: the kernel completes a
    /// connection's TCP handshake, and a TLS handshake then waits for an answer that never comes.</summary>
    private int SilentPort()
    {
        var listener = _owned.Own(new TcpListener(IPAddress.Loopback, 0));
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>
    /// Shard endpoints that never answer: over TCP, listeners whose accept queue is full (the connect is never answered); with
    /// TLS, listeners that take the connection and never answer the handshake. Each shard link's connect and handshake run off
    /// its actor's thread with a bounded time, so the worker does not hang: it stops with the <see cref="IOException"/> of a
    /// shard it cannot connect to, naming the shard, its endpoint and "did not answer within 0.5 s".
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_shard_endpoint_that_never_answers_stops_the_worker_naming_the_shard_its_endpoint_and_the_time(bool tls)
    {
        var initial = Initial();
        var (_, workerIdentity) = _owned.Certificates(tls, "shard");
        int[] ports = tls ? [SilentPort(), SilentPort()] : [LoopbackSockets.BlackHolePort(_owned), LoopbackSockets.BlackHolePort(_owned)];
        var servers = new ShardServers([.. ports.Select(p => new ShardEndpoint("127.0.0.1", p))], DataPlaneHello.NewToken(), initial, workerIdentity)
        {
            ConnectTimeout = TimeSpan.FromSeconds(0.5),
        };
        var failures = CreateTestProbe();
        var worker = StartWorker(0, servers, failures);
        Watch(worker);

        var error = failures.ExpectMsg<IOException>(Wait).Message;
        var named = Regex.Match(error, @"^Worker 0: the data plane to shard (\d) of 2 at 127\.0\.0\.1:(\d+) closed: cannot open the connection: " +
            @"data plane: 127\.0\.0\.1:(\d+) did not answer within 0\.5 s \(TCP connect, TLS handshake and hello\): ");
        Assert.True(named.Success, error);
        var shard = int.Parse(named.Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.Equal((ports[shard], ports[shard]), (int.Parse(named.Groups[2].Value, CultureInfo.InvariantCulture), int.Parse(named.Groups[3].Value, CultureInfo.InvariantCulture)));
        Assert.EndsWith("The worker stops: without every shard's slice it can put no weights together, and a worker cannot take its slot at a shard again.", error);
        ExpectTerminated(worker, Wait);
    }

    private static void ReadExactly(Socket socket, Span<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            var read = socket.Receive(bytes);
            Assert.True(read > 0, "the worker closed its connection early");
            bytes = bytes[read..];
        }
    }

    /// <summary>Writes shard <paramref name="shard"/>'s result as a shard node's data plane does (a frame of type 6).</summary>
    private static void SendResult(Socket socket, int shard, int epoch, int round, long version, float[] slice)
    {
        var header = TensorFrame.For(new ShardWeights(shard, epoch, round, 0, version, slice));
        var bytes = new byte[TensorFrame.HeaderSize + slice.Length * sizeof(float)];
        MemoryMarshal.Write(bytes, in header);
        MemoryMarshal.AsBytes(slice.AsSpan()).CopyTo(bytes.AsSpan(TensorFrame.HeaderSize));
        socket.Send(bytes);
    }

    /// <summary>Reads the worker's next slice frame: its (epoch, round, version) and its floats.</summary>
    private static ((int Epoch, int Round, long Version) At, float[] Slice) ReadSlice(Socket socket)
    {
        var head = new byte[TensorFrame.HeaderSize];
        ReadExactly(socket, head);
        var header = MemoryMarshal.Read<TensorFrame.Header>(head);
        Assert.Equal(TensorFrame.GradientType, header.Type);
        var slice = new float[header.Count];
        ReadExactly(socket, MemoryMarshal.AsBytes(slice.AsSpan()));
        return ((header.Epoch, header.Round, header.WeightsVersion), slice);
    }

    /// <summary>
    /// Two shards, played by the test over real sockets: shard 0 sends the result of epoch 1's last round and then epoch 2's
    /// starting weights before shard 1's result of epoch 1's last round reaches the worker. The worker still puts epoch 1's
    /// last weights together and computes its round on them (a worker that started epoch 2 at shard 0's first result of it
    /// would drop shard 1's, and never compute that round), then epoch 2's first round on epoch 2's starting weights.
    /// </summary>
    [Fact]
    public void A_shard_that_starts_the_next_epoch_before_another_ends_this_one_loses_the_worker_no_round()
    {
        var initial = Initial();
        var plan = ParameterShards.Plan(initial.Layout, 2);
        var listeners = new[] { new TcpListener(IPAddress.Loopback, 0), new TcpListener(IPAddress.Loopback, 0) };
        foreach (var listener in listeners)
        {
            listener.Start();
            _owned.Own(listener);
        }
        var servers = new ShardServers([.. listeners.Select(l => new ShardEndpoint("127.0.0.1", ((IPEndPoint)l.LocalEndpoint).Port))], DataPlaneHello.NewToken(),
            initial, null);
        var failures = CreateTestProbe();
        var worker = StartWorker(0, servers, failures);
        var sockets = listeners.Select(l =>
        {
            var socket = l.AcceptSocket();
            _owned.Own(socket);
            socket.ReceiveTimeout = (int)Wait.TotalMilliseconds; // a hang guard
            ReadExactly(socket, new byte[DataPlaneHello.Size]);
            return socket;
        }).ToArray();
        float[] Slice(int k, float[] whole) => whole.AsSpan(plan[k].Start, plan[k].Length).ToArray();
        worker.Tell(new AssignShard(1, [.. Enumerable.Range(0, 40)], BatchSize)); // 2 rounds
        for (var k = 0; k < 2; k++) SendResult(sockets[k], k, 1, -1, 0, Slice(k, initial.Values));
        for (var k = 0; k < 2; k++) Assert.Equal((1, 0, 0L), ReadSlice(sockets[k]).At);

        // A step's result (any weights will do: what is checked is which round the worker computes on which).
        var stepped = initial.Values.Select(v => v * 0.5f).ToArray();
        SendResult(sockets[0], 0, 1, 0, 1, Slice(0, stepped));
        SendResult(sockets[0], 0, 2, -1, 1, Slice(0, stepped));
        // Lets shard 0's two frames reach the worker first, the order this test is about; what is checked holds in any order.
        Thread.Sleep(200);
        SendResult(sockets[1], 1, 1, 0, 1, Slice(1, stepped));
        SendResult(sockets[1], 1, 2, -1, 1, Slice(1, stepped));

        for (var k = 0; k < 2; k++) Assert.Equal((1, 1, 1L), ReadSlice(sockets[k]).At); // epoch 1's round 1, on version 1
        worker.Tell(new AssignShard(2, [.. Enumerable.Range(40, 40)], BatchSize));
        for (var k = 0; k < 2; k++) Assert.Equal((2, 0, 1L), ReadSlice(sockets[k]).At); // epoch 2's round 0
        var held = WeightsAt(worker, 1);
        // The trainable weights are epoch 2's starting weights; the running statistics after them are the replica's own once
        // it has run a minibatch forward.
        var trainable = initial.Layout.TrainableLength;
        Assert.Equal(stepped[..trainable], held.Weights[..trainable]);
        failures.ExpectNoMsg(TimeSpan.Zero);
        Sys.Stop(worker);
    }

    // Shards hosted by shard nodes (ShardHost), each node an actor system of its own reached over Akka.Remote on loopback.

    private static readonly JobIdentity Job = new("shard-test", "0123456789abcdef0123456789abcdef"u8);
    private const string JobId = "job-0001";

    /// <summary>The settings a parameter server decides for the whole job, for <paramref name="optimizer"/> and this class's epochs.</summary>
    private static string ServerSettings(OptimizerOptions optimizer) =>
        ModelFingerprint.ServerSettingsOf(new TrainingOptions { Optimizer = optimizer, Training = { Epochs = Epochs } });

    /// <summary>Terminates an actor system when disposed, waiting at most 30 s (ActorSystem.Dispose waits without a bound).</summary>
    private sealed class Terminating(ActorSystem system) : IDisposable
    {
        public void Dispose() => system.Terminate().Wait(Wait);
    }

    /// <summary>A shard node: an actor system of its own with remoting on loopback, running a <see cref="ShardHost"/> with this
    /// class's optimizer and epochs and <paramref name="startingWeights"/>; returns the host as <see cref="TestKit.Sys"/> reaches it.</summary>
    private IActorRef StartShardNode(string name, ParameterVector startingWeights, TimeSpan? previousOwnerWait = null)
    {
        var node = ActorSystem.Create(name, RemoteConfig);
        _owned.Own(new Terminating(node));
        // The node's own settings, as ClusterNode.ShardHostSettingsOf builds them: the optimizer as configured, its parameter-server
        // share (the test's server optimizer) and Cluster:Compression (the workers' settings).
        var settings = new ShardHostSettings(Job, startingWeights, Sgd, Epochs, ServerSettings(Sgd), "127.0.0.1", 0, "127.0.0.1", null,
            _replicaSettings?.Compression, _serverOptimizer);
        node.ActorOf(ShardHost.Props(settings, previousOwnerWait: previousOwnerWait), "shard-host");
        var address = ((ExtendedActorSystem)node).Provider.DefaultAddress;
        var host = Sys.ActorSelection(new RootActorPath(address) / "user" / "shard-host").ResolveOne(Wait).Result;
        Assert.Equal(address, host.Path.Address); // a remote actor, not one of this system
        return host;
    }

    /// <summary>
    /// Two shard nodes, each an actor system of its own, host shards 0 and 1 for the coordinator (the test actor) over
    /// Akka.Remote: each answer carries the job's proof and names a shard and links of its own node, and an answer checked for
    /// another owner, another job or another port is not genuine. Real workers then train 2 epochs against the hosted shards
    /// (the parts' starts cross to the nodes as MessagePack, the slices go on the nodes' data planes) and end with one
    /// server's weights bit for bit.
    /// </summary>
    [Fact]
    public void Shards_hosted_by_shard_nodes_of_their_own_train_real_workers_to_one_servers_weights_bit_for_bit()
    {
        var checkpoints = new Core.Checkpoints.CheckpointStore(_owned.TemporaryDirectory("disttrain-shard-checkpoints-"), keep: 3);
        var expected = AgainstOneServer(checkpoints);
        var initial = Initial();
        var tokens = ShardDataPlaneTests.Tokens(Workers);
        IActorRef[] hosts = [StartShardNode("shard-node-0", initial), StartShardNode("shard-node-1", initial)];
        var requests = hosts.Select((host, k) => ShardHost.Request(Job, Sys, TestActor, host, JobId, k, hosts.Length, tokens, initial, ServerSettings(Sgd))).ToArray();
        for (var k = 0; k < hosts.Length; k++) hosts[k].Tell(requests[k], TestActor);
        var nodes = new ShardNode[hosts.Length];
        for (var k = 0; k < hosts.Length; k++)
        {
            var hosted = ExpectMsg<ShardHosted>(Wait);
            var request = requests[hosted.Shard];
            Assert.True(ShardHost.IsGenuine(Job, Sys, TestActor, request, hosted), $"shard {hosted.Shard}'s answer does not carry the job's proof");
            Assert.False(ShardHost.IsGenuine(Job, Sys, CreateTestProbe().Ref, request, hosted), "an answer to another owner passed as genuine");
            Assert.False(ShardHost.IsGenuine(Job, Sys, TestActor, requests[1 - hosted.Shard], hosted), "an answer to another request passed as genuine");
            Assert.False(ShardHost.IsGenuine(Job, Sys, TestActor, request with { JobId = "job-0002" }, hosted), "an answer of another job passed as genuine");
            Assert.False(ShardHost.IsGenuine(Job, Sys, TestActor, request, hosted with { DataPort = hosted.DataPort + 1 }), "an altered answer passed as genuine");
            Assert.False(ShardHost.IsGenuine(new JobIdentity("shard-test", "another secret of this job name!"u8), Sys, TestActor, request, hosted),
                "an answer passed as genuine under another secret");
            Assert.Equal(hosts[hosted.Shard].Path.Address, hosted.ShardActor.Path.Address);
            Assert.All(hosted.Links, link => Assert.Equal(hosts[hosted.Shard].Path.Address, link.Path.Address));
            Assert.Equal(Workers, hosted.Links.Length);
            nodes[hosted.Shard] = new ShardNode(hosted.ShardActor, ActorRefs.Nobody, hosted.DataPort, hosted.Links);
        }
        Assert.All(nodes, node => Assert.NotNull(node));
        TrainAgainstShardsAndCompare(nodes, tokens, initial, expected);

        // The owner reads the whole weights back from the shard nodes over Akka.Remote: one server's, bit for bit; anyone else gets nothing.
        var stranger = CreateTestProbe();
        foreach (var node in nodes) stranger.Send(node.Shard, new ShardSliceRequest(0));
        stranger.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        var gathered = Gather(initial, [.. nodes.Select(n => n.Shard)], requestId: 7);
        Assert.Equal((long)Epochs * Rounds, gathered.Version);
        AssertSameBits(expected[0], gathered.Weights, "the weights gathered from the shard nodes");
        stranger.ExpectNoMsg(TimeSpan.Zero); // the owner's answers came over the same connections, after any answer to the stranger

        // What a checkpoint needs, gathered the same way: the weights, the optimizer state (SGD's momentum buffer) and the step
        // count equal the checkpoint one server wrote at the end of the last epoch, bit for bit.
        var reference = checkpoints.FindNewestValid(initial.Layout).Checkpoint!;
        Assert.Equal((long)Epochs * Rounds, reference.Version);
        var shards = nodes.Select(n => n.Shard).ToArray();
        var withState = new ShardWeightsGather(initial, shards, requestId: 8, [.. reference.OptimizerState.Select(s => s.Name)]);
        foreach (var shard in shards) shard.Tell(new ShardSliceRequest(8, WithOptimizerState: true), TestActor);
        while (!withState.Complete)
        {
            Assert.Null(withState.Take(LastSenderOf(ExpectMsg<ShardSliceChunk>(Wait), out var chunk), chunk));
            Assert.Null(withState.Failure);
        }
        AssertSameBits(reference.Weights.Values, withState.Result.Weights, "the weights of the checkpoint gathered from the shard nodes");
        Assert.Equal(reference.OptimizerSteps, withState.OptimizerSteps);
        Assert.Equal(reference.OptimizerState.Select(s => s.Name), withState.OptimizerState.Select(s => s.Name));
        Assert.Equal("momentum_buffer", Assert.Single(withState.OptimizerState).Name);
        for (var b = 0; b < reference.OptimizerState.Count; b++)
            AssertSameBits(reference.OptimizerState[b].Values, withState.OptimizerState[b].Values, $"optimizer state {reference.OptimizerState[b].Name}");
    }

    private IActorRef LastSenderOf(ShardSliceChunk received, out ShardSliceChunk chunk)
    {
        chunk = received;
        return LastSender;
    }

    /// <summary>The whole weights, gathered by the test actor (the shards' owner) from <paramref name="shards"/>.</summary>
    private WeightsSnapshot Gather(ParameterVector initial, IActorRef[] shards, int requestId)
    {
        var gather = new ShardWeightsGather(initial, shards, requestId);
        foreach (var shard in shards) shard.Tell(new ShardSliceRequest(requestId), TestActor);
        while (!gather.Complete)
        {
            var chunk = ExpectMsg<ShardSliceChunk>(Wait);
            Assert.Null(gather.Take(LastSender, chunk));
            Assert.Null(gather.Failure);
        }
        return gather.Result;
    }

    private static void AssertSameBits(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < actual.Length; i++)
            if (BitConverter.SingleToInt32Bits(expected[i]) != BitConverter.SingleToInt32Bits(actual[i]))
                Assert.Fail($"{what}: value {i} is {actual[i]:R}, expected {expected[i]:R}");
    }

    /// <summary>
    /// A shard node refuses, with the reason, a request signed with another secret or job name, one signed for another owner
    /// or another host (replayed), one whose whole-job settings differ from the node's (listed), and one whose starting slice is
    /// not the node's. While it hosts a shard it refuses the owner's own request when any field differs; the same request from
    /// the same owner gets the same answer again, and an unsigned request learns nothing of what the node hosts. Another owner's
    /// request of the same job (a standby's takeover, which may come before this node hears of the old owner's end) waits for
    /// the owner to be gone: refused after the wait if the owner stays, hosted as soon as the owner stops (its data port freed)
    /// if not; a third owner's meanwhile is refused at once.
    /// </summary>
    [Fact]
    public void A_shard_node_refuses_requests_it_cannot_trust_or_serve_and_hosts_again_once_the_owner_is_gone()
    {
        var initial = Initial();
        var tokens = ShardDataPlaneTests.Tokens(Workers);
        var host = StartShardNode("shard-node-refusals", initial, previousOwnerWait: TimeSpan.FromSeconds(1));
        var otherHost = StartShardNode("shard-node-other", initial);
        var first = CreateTestProbe();
        var second = CreateTestProbe();
        HostShard For(TestProbe owner, JobIdentity? identity = null, OptimizerOptions? optimizer = null, ParameterVector? weights = null,
            IActorRef? to = null, byte[][]? slotTokens = null) =>
            ShardHost.Request(identity ?? Job, Sys, owner.Ref, to ?? host, JobId, 1, 2, slotTokens ?? tokens, weights ?? initial, ServerSettings(optimizer ?? Sgd));
        string Refused(TestProbe sender, HostShard request)
        {
            sender.Send(host, request);
            var refused = sender.ExpectMsg<ShardHostRefused>(Wait);
            Assert.Equal(1, refused.Shard);
            return refused.Reason;
        }

        const string unsigned = "the request is not signed with this node's job secret for its sender and this node (job 'shard-test'): the coordinator " +
            "belongs to another job, or its Cluster:JobName or secret differs from this node's.";
        Assert.Equal(unsigned, Refused(first, For(first, identity: new JobIdentity("shard-test", "another secret of this job name!"u8))));
        Assert.Equal(unsigned, Refused(first, For(first, identity: new JobIdentity("another-job", "0123456789abcdef0123456789abcdef"u8))));
        Assert.Equal(unsigned, Refused(second, For(first))); // signed for the first owner, sent by the second
        Assert.Equal(unsigned, Refused(first, For(first, to: otherHost))); // signed for another shard node
        var settings = Refused(first, For(first, optimizer: new OptimizerOptions { LearningRate = 0.5, Momentum = 0.9, L2 = 1e-3 }));
        Assert.StartsWith("the parameter server decides these settings for the whole job, and this shard node steps with its own, which differ: " +
            "Optimizer:LearningRate = 0.5 on the parameter server, 0.05 on this node", settings);
        var plan = ParameterShards.Plan(initial.Layout, 2);
        var otherWeights = ModelFactory.StartingWeights(ModelFactory.Build(Model), Model, seed: 8);
        Assert.Equal($"this node's starting weights of shard 1 [{plan[1].Start}, {plan[1].End}) are not the parameter server's: give every node the same " +
            "Model settings, Training:Seed and Model:Pretrained file.",
            Refused(first, For(first, weights: otherWeights)));

        var firstRequest = For(first);
        first.Send(host, firstRequest);
        var hosted = first.ExpectMsg<ShardHosted>(Wait);
        Assert.True(ShardHost.IsGenuine(Job, Sys, first.Ref, firstRequest, hosted));
        first.Send(host, firstRequest); // the same request again: the same answer
        var again = first.ExpectMsg<ShardHosted>(Wait);
        Assert.Equal((hosted.ShardActor, hosted.DataPort), (again.ShardActor, again.DataPort));
        Assert.Equal(hosted.Proof, again.Proof);
        var afterWait = Refused(second, For(second));
        Assert.StartsWith($"this node already hosts shard 1 of 2 of job {JobId} for ", afterWait);
        Assert.EndsWith("(its owner was still there after 1 s).", afterWait);
        // The owner's own request with other tokens is another request; its unsigned copy learns nothing of what the node hosts.
        Assert.StartsWith($"this node already hosts shard 1 of 2 of job {JobId} for ", Refused(first, For(first, slotTokens: ShardDataPlaneTests.Tokens(Workers))));
        Assert.Equal(unsigned, Refused(first, firstRequest with { Proof = new byte[32] }));

        // A node that waits longer than the test needs: the second owner's request waits for the first owner, and a third owner's
        // is refused at once meanwhile. The waiting second owner stops: its request is forgotten, and the third owner's next one
        // waits instead, until the first owner's end lets it through.
        var takeoverHost = StartShardNode("shard-node-takeover", initial, previousOwnerWait: Wait);
        first.Send(takeoverHost, For(first, to: takeoverHost));
        hosted = first.ExpectMsg<ShardHosted>(Wait);
        second.Send(takeoverHost, For(second, to: takeoverHost));
        second.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        var third = CreateTestProbe();
        third.Send(takeoverHost, For(third, to: takeoverHost));
        Assert.EndsWith("one shard node per shard.", third.ExpectMsg<ShardHostRefused>(Wait).Reason);
        Sys.Stop(second.Ref);
        AwaitAssert(() =>
        {
            third.Send(takeoverHost, For(third, to: takeoverHost));
            third.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        }, Wait / 3, TimeSpan.FromMilliseconds(100)); // well before the node's own wait (Wait) would end the second owner's
        Sys.Stop(first.Ref);
        var next = third.ExpectMsg<ShardHosted>(Wait);
        Assert.True(ShardHost.IsGenuine(Job, Sys, third.Ref, For(third, to: takeoverHost), next));
        // The first owner's shard was released first: its data port closed (unless the new shard's listener got the same port).
        Assert.True(next.DataPort == hosted.DataPort || !Accepts(hosted.DataPort), "the first owner's data port is still open");
        Assert.True(Accepts(next.DataPort), "the next shard's data plane does not accept connections");
    }

    /// <summary>True if a TCP connection to <paramref name="port"/> on loopback is accepted.</summary>
    private static bool Accepts(int port)
    {
        using var client = new TcpClient();
        try
        {
            client.Connect(IPAddress.Loopback, port);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>
    /// A hosted shard whose round diverges (a NaN loss) is stopped, not restarted, and its owner is told with a signed
    /// <see cref="ShardFailed"/> naming the divergence and carrying its fields, followed by the shard's slice of the last good
    /// weights; the node then hosts the owner's next request.
    /// </summary>
    [Fact]
    public void A_hosted_shard_that_diverges_is_stopped_its_owner_told_why_and_the_node_hosts_again()
    {
        var initial = Initial();
        var host = StartShardNode("shard-node-failure", initial);
        var request = ShardHost.Request(Job, Sys, TestActor, host, JobId, 0, 2, ShardDataPlaneTests.Tokens(1), initial, ServerSettings(Sgd));
        host.Tell(request, TestActor);
        var hosted = ExpectMsg<ShardHosted>(Wait);
        var worker = CreateTestProbe();
        var slice = new float[ParameterShards.Plan(initial.Layout, 2)[0].Length];
        hosted.ShardActor.Tell(new ShardPartStart(1, [worker.Ref], [1], 0, [hosted.ShardActor, ActorRefs.Nobody], ActorRefs.Nobody), TestActor);
        worker.Send(hosted.ShardActor, new GradientComputed(1, 0, 0, 0, 10, double.NaN, slice));
        var failed = ExpectMsg<ShardFailed>(Wait);
        Assert.Equal((JobId, 0), (failed.JobId, failed.Shard));
        Assert.StartsWith("Shard 0: Training diverged at epoch 1, step 1 (weights version 0): a NaN or infinite loss", failed.Reason);
        // The divergence's fields, signed: a loss that was not finite on the starting weights, whose slice is the last good one.
        Assert.Equal((1, 1, false, 0L), (failed.DivergedEpoch, failed.DivergedStep, failed.LossFinite, failed.LastGoodVersion));
        Assert.True(ShardHost.IsGenuine(Job, request, failed));
        Assert.False(ShardHost.IsGenuine(Job, request, failed with { LastGoodVersion = 1 }));
        Assert.False(ShardHost.IsGenuine(Job, request, failed with { DivergedStep = 2 }));
        // Then the shard's slice of the last good weights, which the owner puts together with the other shards'.
        var lastGood = new float[slice.Length];
        for (var received = 0; received < lastGood.Length;)
        {
            var chunk = ExpectMsg<ShardSliceChunk>(Wait);
            Assert.Equal((ShardSliceChunk.LastGoodRequestId, 0, 0L, 0, slice.Length), (chunk.RequestId, chunk.Shard, chunk.Version, chunk.Buffer, chunk.Total));
            chunk.Values.CopyTo(lastGood, chunk.Offset);
            received += chunk.Values.Length;
        }
        Compare.Identical(initial.Values[..slice.Length], lastGood, "the last good slice");
        host.Tell(request, TestActor); // released: the same request is served again
        Assert.True(ShardHost.IsGenuine(Job, Sys, TestActor, request, ExpectMsg<ShardHosted>(Wait)));
    }

    /// <summary>
    /// The coordinator's side through <see cref="ShardPlacement"/>: three shard nodes, each an actor system of its own, are asked
    /// for shards 0 to 2; answers from an actor that is not a host, from the wrong host and of another request are refused with
    /// the reason; the placement names the hosts still missing until all have answered. The workers it equips (every shard's
    /// endpoint, each worker its own slot's token) and the parts it starts (each shard its own node's links) then train 2
    /// epochs to one server's weights bit for bit: with float32 slices, and under TopK with momentum correction, where each node
    /// takes the workers' cuts and steps with the parameter server's share of the optimizer, as its settings give them.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_placement_on_three_shard_nodes_equips_the_workers_and_starts_the_parts_to_one_servers_weights_bit_for_bit(bool topK)
    {
        if (topK) UseTopKWithMomentumCorrection();
        var expected = AgainstOneServer();
        var initial = Initial();
        IActorRef[] hosts = [.. Enumerable.Range(0, 3).Select(k => StartShardNode($"placement-node-{k}", initial))];
        var placement = new ShardPlacement(Job, Sys, TestActor, JobId, hosts, Workers, initial, ServerSettings(Sgd));
        Assert.Equal(3, placement.Missing.Count);
        Assert.StartsWith("Not every shard is hosted yet: waiting for shard 0 (akka.tcp://placement-node-0@127.0.0.1:",
            Assert.Throws<InvalidOperationException>(() => placement.ServersFor(0, null)).Message);
        for (var k = 0; k < hosts.Length; k++) hosts[k].Tell(placement.Requests[k], TestActor);
        var answers = new List<(IActorRef Host, ShardHosted Answer)>();
        for (var k = 0; k < hosts.Length; k++)
        {
            var answer = ExpectMsg<ShardHosted>(Wait);
            answers.Add((LastSender, answer));
        }
        var (firstHost, first) = answers[0];
        var otherHost = hosts.First(h => !h.Equals(firstHost));
        Assert.EndsWith("which is not one of the run's shard hosts; ignored", placement.Take(CreateTestProbe().Ref, first));
        Assert.EndsWith($"which was asked for shard {Array.IndexOf(hosts, otherHost)}; ignored", placement.Take(otherHost, first));
        var stale = new ShardPlacement(Job, Sys, TestActor, JobId, hosts, Workers, initial, ServerSettings(Sgd)); // new tokens: another request
        Assert.Contains("without the job's proof for this run's request", stale.Take(firstHost, first));
        Assert.Null(placement.Take(firstHost, first));
        Assert.EndsWith($"which already hosts shard {first.Shard}; ignored", placement.Take(firstHost, first));
        Assert.Equal(2, placement.Missing.Count);
        Assert.DoesNotContain($"shard {first.Shard} (", string.Join(", ", placement.Missing));
        foreach (var (host, answer) in answers.Skip(1)) Assert.Null(placement.Take(host, answer));
        Assert.True(placement.Placed);
        Assert.Empty(placement.Missing);
        Assert.Null(placement.Failure);

        var everyWorker = Enumerable.Repeat(true, Workers).ToArray();
        var rounds = Enumerable.Repeat(Rounds, Workers).ToArray();
        TrainAgainstShardsAndCompare(3, w => placement.ServersFor(w, null),
            epoch => { for (var k = 0; k < 3; k++) placement.Shards[k].Tell(placement.PartStart(k, epoch, everyWorker, rounds, 0, ActorRefs.Nobody), TestActor); },
            initial, expected);
    }

    /// <summary>A shard node whose starting weights are not the coordinator's refuses its shard, and the placement fails naming the
    /// shard, the node and its reason; a later answer changes nothing. Refusals that are not the asked host's own for this request
    /// (from another actor, for another shard, unsigned, of another request) are ignored before it.</summary>
    [Fact]
    public void A_placement_fails_naming_the_shard_node_that_refused_and_its_reason()
    {
        var initial = Initial();
        IActorRef[] hosts = [StartShardNode("refusing-node-0", initial),
            StartShardNode("refusing-node-1", ModelFactory.StartingWeights(ModelFactory.Build(Model), Model, seed: 8))];
        var placement = new ShardPlacement(Job, Sys, TestActor, JobId, hosts, Workers, initial, ServerSettings(Sgd));
        hosts[1].Tell(placement.Requests[1], TestActor);
        var refused = ExpectMsg<ShardHostRefused>(Wait);
        Assert.EndsWith("which is not one of the run's shard hosts; ignored", placement.Take(CreateTestProbe().Ref, refused));
        Assert.EndsWith("which was asked for shard 1; ignored", placement.Take(hosts[1], refused with { Shard = 0 }));
        Assert.Contains("without the job's proof for this run's request", placement.Take(hosts[1], refused with { Proof = [] }));
        Assert.Contains("without the job's proof for this run's request", placement.Take(hosts[1], refused with { Reason = "another reason." }));
        var earlier = new ShardPlacement(Job, Sys, TestActor, JobId, hosts, Workers, initial, ServerSettings(Sgd)); // another request
        Assert.Contains("without the job's proof for this run's request", earlier.Take(hosts[1], refused));
        Assert.Null(placement.Failure);
        Assert.Equal(2, placement.Missing.Count);
        Assert.Null(placement.Take(hosts[1], refused));
        Assert.Equal(["shard 0 ("], placement.Missing.Select(m => m[..9]));
        Assert.False(placement.Placed);
        Assert.StartsWith("Shard 1 of 2 could not be placed: the shard node akka.tcp://refusing-node-1@127.0.0.1:", placement.Failure);
        var slice = ParameterShards.Plan(initial.Layout, 2)[1];
        Assert.Contains($" refused it: this node's starting weights of shard 1 [{slice.Start}, {slice.End}) are not the parameter server's", placement.Failure);
        hosts[0].Tell(placement.Requests[0], TestActor);
        Assert.EndsWith("after the placement failed; ignored", placement.Take(hosts[0], ExpectMsg<ShardHosted>(Wait)));
        Assert.False(placement.Placed);
    }

    /// <summary>
    /// Nodes of another DistTrain version do not host a shard together: a shard node refuses a request of another cluster protocol
    /// (here one that says 10), and a parameter server's placement fails on an answer of another one (here none, as a version
    /// before 11 sends), each naming both versions and the fix. Such a node could host the shard and still not do what the run
    /// needs of it (version 10 sends no checkpoint within an epoch).
    /// </summary>
    [Fact]
    public void Shard_nodes_and_parameter_servers_of_another_protocol_version_refuse_each_other_naming_both()
    {
        var initial = Initial();
        IActorRef[] hosts = [StartShardNode("version-node-0", initial), StartShardNode("version-node-1", initial)];
        var placement = new ShardPlacement(Job, Sys, TestActor, JobId, hosts, Workers, initial, ServerSettings(Sgd));
        Assert.Equal([ClusterProtocolInfo.Version, ClusterProtocolInfo.Version], placement.Requests.Select(r => r.ProtocolVersion));
        hosts[0].Tell(placement.Requests[0] with { ProtocolVersion = ClusterProtocolInfo.Version - 1 }, TestActor);
        var refused = ExpectMsg<ShardHostRefused>(Wait);
        Assert.Equal($"the parameter server runs DistTrain's cluster protocol {ClusterProtocolInfo.Version - 1}, and this shard node {ClusterProtocolInfo.Version}: " +
            "run the same DistTrain version on every node of the job.", refused.Reason);
        hosts[1].Tell(placement.Requests[1], TestActor);
        var hosted = ExpectMsg<ShardHosted>(Wait);
        Assert.Equal(ClusterProtocolInfo.Version, hosted.ProtocolVersion);
        Assert.Null(placement.Take(hosts[1], hosted with { ProtocolVersion = 0 }));
        Assert.False(placement.Placed);
        Assert.StartsWith("Shard 1 of 2 could not be placed: the shard node akka.tcp://version-node-1@127.0.0.1:", placement.Failure);
        Assert.EndsWith($" hosts it, but it runs DistTrain's cluster protocol 0 (older than 11), and this parameter server {ClusterProtocolInfo.Version}: " +
            "run the same DistTrain version on every node of the job", placement.Failure);
    }

    /// <summary>A hosted shard that fails before every shard is placed fails the placement with the host's reason, if the host
    /// signed it for this request; one that fails after is the owner's to handle, and the placement ignores it.</summary>
    [Fact]
    public void A_shard_that_fails_before_the_placement_is_done_fails_it_and_one_after_is_ignored()
    {
        var initial = Initial();
        IActorRef[] hosts = [CreateTestProbe().Ref, CreateTestProbe().Ref]; // the hosts' messages are made here, signed as a host signs them
        var placement = new ShardPlacement(Job, Sys, TestActor, JobId, hosts, Workers, initial, ServerSettings(Sgd));
        ShardFailed Failed(int k, JobIdentity identity) => new(JobId, k, "the shard failed: boom.", identity.ShardFailureProof(placement.Requests[k].Proof, k, "the shard failed: boom."));
        Assert.Contains("without the job's proof for this run's request", placement.Take(hosts[0], Failed(0, new JobIdentity("shard-test", "another secret of this job name!"u8))));
        Assert.Null(placement.Failure);
        Assert.Null(placement.Take(hosts[0], Failed(0, Job)));
        Assert.StartsWith("Shard 0 of 2 could not be placed: the shard node ", placement.Failure);
        Assert.EndsWith(" stopped it: the shard failed: boom.", placement.Failure);
        Assert.Throws<ArgumentException>(() => placement.Take(hosts[0], new WorkerLost(0)));

        // Placed, then a shard fails: the owner's to handle (it is the shard's owner), not the placement's.
        var placed = new ShardPlacement(Job, Sys, TestActor, JobId, hosts, Workers, initial, ServerSettings(Sgd));
        string PathOf(IActorRef actor) => actor.Path.ToSerializationFormatWithAddress(((ExtendedActorSystem)Sys).Provider.DefaultAddress);
        for (var k = 0; k < hosts.Length; k++)
        {
            IActorRef[] links = [CreateTestProbe().Ref, CreateTestProbe().Ref];
            var proof = Job.ShardHostedProof(PathOf(TestActor), placed.Requests[k].Proof, JobId, k, PathOf(hosts[k]), "127.0.0.1", 4000 + k, links.Select(PathOf));
            Assert.Null(placed.Take(hosts[k], new ShardHosted(JobId, k, hosts[k], "127.0.0.1", 4000 + k, links, proof, ClusterProtocolInfo.Version)));
        }
        Assert.True(placed.Placed);
        var late = new ShardFailed(JobId, 1, "the shard failed: boom.", Job.ShardFailureProof(placed.Requests[1].Proof, 1, "the shard failed: boom."));
        Assert.EndsWith("after the placement was done: the owner handles it; ignored", placed.Take(hosts[1], late));
        Assert.Null(placed.Failure);
        Assert.Equal(["127.0.0.1:4000", "127.0.0.1:4001"], placed.ServersFor(1, null).Endpoints.Select(e => e.ToString()));
        Assert.Throws<ArgumentOutOfRangeException>(() => placed.PartStart(2, 1, [true, true], [4, 4], 0, ActorRefs.Nobody));
        Assert.Contains("Worker slot 1 is not in the part but has 4 rounds",
            Assert.Throws<ArgumentException>(() => placed.PartStart(0, 1, [true, false], [4, 4], 0, ActorRefs.Nobody)).Message);
        var start = placed.PartStart(1, 1, [true, false], [4, 0], 0, ActorRefs.Nobody);
        Assert.True(start.Workers[1].IsNobody());
        Assert.Equal(hosts, start.Shards);
        Assert.Throws<ArgumentException>(() => new ShardPlacement(Job, Sys, TestActor, JobId, [hosts[0], hosts[0]], Workers, initial, ServerSettings(Sgd)));
        Assert.Throws<ArgumentException>(() => new ShardPlacement(Job, Sys, TestActor, JobId, [hosts[0], ActorRefs.Nobody], Workers, initial, ServerSettings(Sgd)));
    }

    /// <summary>
    /// A shard node that is stopping releases the shard it hosts, telling the owner with a signed <see cref="ShardFailed"/>, and
    /// refuses, signed and with the reason, every request from then on (the owner's repeated one included), so no shard is placed
    /// on a node that is leaving.
    /// </summary>
    [Fact]
    public async Task A_stopping_shard_node_releases_its_shard_and_refuses_further_requests()
    {
        var initial = Initial();
        var tokens = ShardDataPlaneTests.Tokens(Workers);
        var host = StartShardNode("stopping-shard-node", initial);
        var request = ShardHost.Request(Job, Sys, TestActor, host, JobId, 0, 2, tokens, initial, ServerSettings(Sgd));
        host.Tell(request, TestActor);
        ExpectMsg<ShardHosted>(Wait);
        await ShardHost.ReleaseForStopAsync(host, Wait);
        var failed = ExpectMsg<ShardFailed>(Wait);
        Assert.True(ShardHost.IsGenuine(Job, request, failed));
        Assert.Equal("the shard node is stopping", failed.Reason);
        host.Tell(request, TestActor);
        var refused = ExpectMsg<ShardHostRefused>(Wait);
        Assert.True(ShardHost.IsGenuine(Job, request, refused));
        Assert.Equal("the shard node is stopping: place the shard on another shard node.", refused.Reason);
    }

    /// <summary>
    /// A shard's weights cross to its owner in pieces of at most <see cref="ShardSliceChunk.MaxValues"/> floats (a model whose
    /// trainable part is two slices of 25,120 values: two pieces per shard), through the serializer, and
    /// <see cref="ShardWeightsGather"/> puts them into a copy of the weights it is given, whose frozen tensors (the output layer
    /// here) no shard holds. It ignores, with the reason, a piece of another request, from another actor than its shard, of a
    /// shard index out of range, of another slice length, empty, out of order, of another version than its shard's first piece,
    /// or beyond the slice; shards at different versions fail the gathering.
    /// </summary>
    [Fact]
    public void A_shards_weights_come_in_pieces_below_the_remote_frame_and_are_put_together_only_in_order_from_their_shard()
    {
        var model = new ModelOptions { InputSize = 784, Layers = [new() { Type = LayerTypes.Dense, Units = 64 }, new() { Type = LayerTypes.ReLU },
            new() { Type = LayerTypes.Dense, Units = 10 }], Freeze = ["2.*"] };
        var initial = ModelFactory.StartingWeights(ModelFactory.Build(model), model, seed: 5);
        Assert.Equal(650, initial.Layout.TotalLength - initial.Layout.WorkerReportLength); // the frozen output layer: in no shard
        var plan = ParameterShards.Plan(initial.Layout, 2);
        Assert.All(plan, shard => Assert.True(shard.Length > ShardSliceChunk.MaxValues, $"shard {shard.Index} has {shard.Length} values: one piece"));
        IActorRef[] shards = [.. plan.Select(p => Sys.ActorOf(ParameterShardActor.Props(p, initial, Sgd, totalEpochs: 1, TestActor)))];
        var serializer = Sys.Serialization.FindSerializerForType(typeof(ShardSliceChunk));
        var pieces = new List<(IActorRef From, ShardSliceChunk Chunk)>();
        foreach (var shard in shards) shard.Tell(new ShardSliceRequest(3), TestActor);
        for (var n = 0; n < 4; n++)
        {
            var chunk = ExpectMsg<ShardSliceChunk>(Wait);
            var bytes = serializer.ToBinary(chunk);
            Assert.True(bytes.Length < 128_000, $"a piece of {bytes.Length:N0} bytes would not fit Akka.Remote's frame");
            pieces.Add((LastSender, (ShardSliceChunk)Sys.Serialization.Deserialize(bytes, serializer.Identifier, nameof(ShardSliceChunk))));
        }
        ExpectNoMsg(TimeSpan.FromMilliseconds(200));

        // Given the starting weights with their trainable part zeroed: the result's trainable part can only come from the shards.
        var seed = (float[])initial.Values.Clone();
        Array.Clear(seed, 0, initial.Layout.WorkerReportLength);
        var gather = new ShardWeightsGather(new ParameterVector(initial.Layout, seed), shards, requestId: 3);
        Assert.Equal([0, 1], gather.Waiting);
        var (from, first) = pieces[0];
        Assert.EndsWith("is of another request than 3; ignored", gather.Take(from, first with { RequestId = 4 }));
        Assert.EndsWith("which is not that shard; ignored", gather.Take(shards[1 - first.Shard], first));
        Assert.Contains($"and shard {first.Shard}'s has {plan[first.Shard].Length}; ignored", gather.Take(from, first with { Total = 5 }));
        var second = pieces.First(p => p.Chunk.Shard == first.Shard && p.Chunk.Offset > 0).Chunk;
        Assert.EndsWith("is not the next piece: 0 values of shard " + first.Shard + " have come; ignored", gather.Take(from, second));
        Assert.Contains("does not lie within shard", gather.Take(from, first with { Values = new float[plan[first.Shard].Length + 1] }));
        Assert.Contains("does not lie within shard", gather.Take(from, first with { Values = [] }));
        Assert.EndsWith("which is not that shard; ignored", gather.Take(from, first with { Shard = 2 }));
        Assert.Null(gather.Take(from, first));
        Assert.EndsWith($"is of version 4 after 0 optimizer steps, and its first piece of {first.Version} after 0; ignored", gather.Take(from, second with { Version = 4 }));
        Assert.EndsWith("is not of the buffer shard " + first.Shard + " is sending (the weights); ignored", gather.Take(from, second with { Buffer = 1 }));
        Assert.Equal([0, 1], gather.Waiting); // a shard with pieces still to come waits
        foreach (var (sender, chunk) in pieces.Where(p => p.Chunk != first && p.Chunk.Shard == first.Shard)) Assert.Null(gather.Take(sender, chunk));
        Assert.Equal([1 - first.Shard], gather.Waiting);
        foreach (var (sender, chunk) in pieces.Where(p => p.Chunk.Shard != first.Shard)) Assert.Null(gather.Take(sender, chunk));
        Assert.Empty(gather.Waiting);
        Assert.True(gather.Complete);
        Assert.Equal(0L, gather.Result.Version);
        AssertSameBits(initial.Values, gather.Result.Weights, "the gathered starting weights");

        // A gathering that expects optimizer state from shards that send none fails at the first piece, naming both counts.
        var expectsState = new ShardWeightsGather(initial, shards, requestId: 3, ["momentum_buffer"]);
        Assert.Null(expectsState.Take(from, first));
        Assert.Equal($"Shard {first.Shard} sends 0 optimizer state buffers, and this gathering expects 1 (momentum_buffer): the shard and its owner run " +
            "other optimizers or DistTrain versions.", expectsState.Failure);
        Assert.EndsWith("came after the gathering failed; ignored", expectsState.Take(from, first));

        var torn = new ShardWeightsGather(initial, shards, requestId: 3);
        foreach (var (sender, chunk) in pieces) Assert.Null(torn.Take(sender, chunk.Shard == 1 ? chunk with { Version = 9 } : chunk));
        Assert.False(torn.Complete);
        Assert.Equal("The shards' slices are of different versions (shard 0: 0, shard 1: 9): gather between parts, when every shard has applied the same " +
            "rounds, or the weights would be torn.", torn.Failure);

        // The ranges OutOfRange checks a decoded piece's head against (the serializer refuses a message out of its ranges, naming the field).
        Assert.Equal("Offset 5 is outside 0 to 4", new ShardSliceChunk(0, 1, 0, 5, 5, []).OutOfRange());
        Assert.Equal("Total 0 is outside 1 to 268435455", new ShardSliceChunk(0, 1, 0, 0, 0, []).OutOfRange());
        Assert.Equal("Version -1 is below 0", new ShardSliceChunk(0, 1, -1, 0, 5, []).OutOfRange());
        Assert.Equal("Buffer 5 is outside 0 to 4", new ShardSliceChunk(0, 1, 0, 0, 5, [], Buffer: 5).OutOfRange());
        Assert.Equal("OptimizerSteps -1 is below 0", new ShardSliceChunk(0, 1, 0, 0, 5, [], OptimizerSteps: -1).OutOfRange());
        Assert.Equal("StateBuffers 5 is outside 0 to 4", new ShardSliceChunk(0, 1, 0, 0, 5, [], StateBuffers: 5).OutOfRange());
        Assert.Null(first.OutOfRange());
    }
}
