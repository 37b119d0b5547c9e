using Akka.Actor;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Core.Layers;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

/// <summary>
/// Parameter-server shards that run on their own (<see cref="ParameterShardActor"/>, <see cref="ShardLossArbiter"/>,
/// <see cref="ShardedReplicaLink"/>), in one actor system: test probes stand for the workers and compute real gradients of
/// a small MLP with BatchNorm on the Fashion-MNIST subset, on the weights their links put together. Every round's weights
/// are checked against the existing parameter server (one <see cref="ParameterServer"/>, or the in-process
/// <see cref="ShardedParameterServer"/> where clipping makes the summation order matter) driven by the same kind of
/// probes on the same minibatches.
/// </summary>
public sealed class ParameterShardActorTests : TestKit
{
    /// <summary>The shards report every round to their owner, the test actor in most tests here; those tests read other messages.</summary>
    public ParameterShardActorTests() : base(TestTimeouts.TestKitConfig) => IgnoreMessages<ShardRoundApplied>();

    internal const int Rounds = 5;

    /// <summary>The model of the shard tests: 784-16-10 with BatchNorm (running statistics to merge).</summary>
    internal static readonly ModelOptions Model = new()
    {
        InputSize = 784,
        Layers =
        [
            new() { Type = LayerTypes.Dense, Units = 16 }, new() { Type = LayerTypes.BatchNorm }, new() { Type = LayerTypes.ReLU },
            new() { Type = LayerTypes.Dense, Units = 10 },
        ],
    };

    private static readonly Lazy<Core.Data.TrainingData> Data = new(TestData.Normalized);

    internal static OptimizerOptions Sgd(double clip = 0) => new() { LearningRate = 0.05, Momentum = 0.9, L2 = 1e-3, L1 = 1e-5, GradientClipNorm = clip };

    private static OptimizerOptions Adam() => new() { Kind = OptimizerKind.Adam, LearningRate = 0.01, L2 = 1e-3 };

    /// <summary>A worker lost in <see cref="Round"/>: its slice of that round reached the shards in <see cref="SentTo"/> only.</summary>
    internal sealed record Loss(int Worker, int Round, int[] SentTo);

    /// <summary>Computes workers' reports on given weights; worker w's minibatch of round r is fixed, of 20 + 7w samples.</summary>
    internal sealed class Replica
    {
        private readonly Sequential _model = ModelFactory.Build(Model);
        private readonly ReplicaTrainer _trainer;

        public Replica() => _trainer = new ReplicaTrainer(_model, ModelFactory.BuildLoss(Model.Loss), Data.Value.Train, ReplicaSettings.Default, seed: 7);

        public static ParameterVector Initial() => ModelFactory.StartingWeights(ModelFactory.Build(Model), Model, seed: 7);

        public (float[] Report, int Samples, double LossSum) Compute(float[] weights, int worker, int round)
        {
            var size = 20 + 7 * worker;
            var start = (round * 4 + worker) * 45 % (1000 - size);
            int[] indices = [.. Enumerable.Range(start, size)];
            _model.LoadParameters(weights);
            var report = new float[_model.Layout.WorkerReportLength];
            var lossSum = _trainer.ComputeGradient(indices, report, epoch: 1);
            return (report, size, lossSum);
        }
    }

    private static bool Keeps(Loss loss, int shards) => loss.SentTo.Length == shards;

    /// <summary>
    /// The existing parameter server (<paramref name="serverShards"/> 1: one <see cref="ParameterServer"/>; more: the
    /// in-process <see cref="ShardedParameterServer"/>) over <see cref="Rounds"/> rounds: the whole weights after each round
    /// (index 0: the start), as worker 0 receives them. A lost worker's report of its round is in it when the sharded run
    /// keeps it (all shards got it), else not.
    /// </summary>
    private List<float[]> Reference(OptimizerOptions optimizer, int workers, int serverShards, Loss? loss, int shards) =>
        Reference(this, optimizer, workers, serverShards, loss, shards);

    /// <summary><see cref="Reference(OptimizerOptions, int, int, Loss?, int)"/> in the actor system of <paramref name="kit"/>.</summary>
    /// <param name="steps">When given, gets the server's step reports (<see cref="RoundApplied"/>), one per round.</param>
    /// <param name="parts">When given, gets the server's report of the part's end (<see cref="EpochCompleted"/>).</param>
    internal static List<float[]> Reference(TestKitBase kit, OptimizerOptions optimizer, int workers, int serverShards, Loss? loss, int shards,
        List<RoundApplied>? steps = null, List<EpochCompleted>? parts = null)
    {
        var replica = new Replica();
        var server = kit.Sys.ActorOf(ParameterServer.Props(Replica.Initial(), optimizer, totalEpochs: 1, shards: serverShards));
        var probes = Enumerable.Range(0, workers).Select(_ => kit.CreateTestProbe()).ToArray();
        var coordinator = kit.CreateTestProbe();
        server.Tell(new StartEpoch(1, [.. probes.Select(p => p.Ref)], [.. probes.Select(_ => Rounds)]), coordinator.Ref);
        var weights = new float[workers][];
        var versions = new long[workers];
        var replyTo = new IActorRef[workers];
        var alive = Enumerable.Repeat(true, workers).ToArray();
        void Receive(int w, int round)
        {
            var update = probes[w].ExpectMsg<WeightsUpdated>();
            Assert.Equal(round, update.Round);
            weights[w] = (float[])update.Weights.Clone(); // the server's ring array: copied before the next step rewrites it
            versions[w] = update.Version;
            replyTo[w] = probes[w].LastSender;
        }
        void Report(int w, int round)
        {
            var (report, samples, lossSum) = replica.Compute(weights[w], w, round);
            probes[w].Send(replyTo[w], new GradientComputed(1, round, versions[w], w, samples, lossSum, report));
        }
        for (var w = 0; w < workers; w++) Receive(w, 0);
        List<float[]> history = [weights[0]];
        for (var round = 0; round < Rounds; round++)
        {
            var lostNow = loss is not null && loss.Round == round;
            var dropped = lostNow && !Keeps(loss!, shards);
            for (var w = workers - 1; w >= 0; w--)
                if (alive[w] && !(dropped && w == loss!.Worker)) Report(w, round);
            if (dropped)
            {
                server.Tell(new WorkerLost(loss!.Worker), coordinator.Ref);
                alive[loss.Worker] = false;
            }
            for (var w = 0; w < workers; w++)
                if (alive[w]) Receive(w, round + 1);
            if (lostNow && !dropped)
            {
                // A kept report is in its round: the loss is told after the round closed. (Told before, it could overtake
                // the report on its way through the in-process sharded server's join.)
                server.Tell(new WorkerLost(loss!.Worker), coordinator.Ref);
                alive[loss.Worker] = false;
            }
            history.Add(weights[0]);
        }
        while ((steps is not null && steps.Count < Rounds) || parts is { Count: 0 })
        {
            var message = coordinator.ReceiveOne(TimeSpan.FromSeconds(30));
            Assert.True(message is not null, $"the server sent {steps?.Count} step reports and {parts?.Count} part ends in 30 s");
            if (message is RoundApplied step) steps?.Add(step);
            if (message is EpochCompleted part) parts?.Add(part);
        }
        kit.Sys.Stop(server);
        return history;
    }

    /// <summary>
    /// The shards that run on their own over <see cref="Rounds"/> rounds: each surviving worker's whole weights after each
    /// round (index 0: the start), put together by its <see cref="ShardedReplicaLink"/>. With <paramref name="loss"/>, the
    /// lost worker sends its slice of that round to some shards only, and the survivors get the round's results in the
    /// order that tempts a worker most to mix stamps.
    /// </summary>
    /// <param name="owner">The shards' owner, which starts the part and gets their round reports; null: the test actor.</param>
    /// <param name="shardActors">When given, gets the shards' actors, by shard index.</param>
    /// <param name="checkpointEvery">The part's <see cref="ShardPartStart.CheckpointEverySteps"/> (request <see cref="CheckpointRequest"/>); 0: none.</param>
    private List<float[]>[] Sharded(OptimizerOptions optimizer, int workers, int shards, Loss? loss, TestProbe? owner = null, List<IActorRef>? shardActors = null,
        int checkpointEvery = 0)
    {
        var replica = new Replica();
        var initial = Replica.Initial();
        var plan = ParameterShards.Plan(initial.Layout, shards);
        var ownerRef = owner?.Ref ?? TestActor;
        var actors = plan.Select(p => Sys.ActorOf(ParameterShardActor.Props(p, initial, optimizer, totalEpochs: 1, ownerRef))).ToArray();
        shardActors?.AddRange(actors);
        var coordinator = CreateTestProbe();
        var arbiter = Sys.ActorOf(ShardLossArbiter.Props(actors, workers, epoch: 1, part: 0, coordinator.Ref));
        var probes = Enumerable.Range(0, workers).Select(_ => CreateTestProbe()).ToArray();
        var links = probes.Select((_, w) => new ShardedReplicaLink(initial, actors, w)).ToArray();
        foreach (var shard in actors)
            shard.Tell(new ShardPartStart(1, [.. probes.Select(p => p.Ref)], [.. probes.Select(_ => Rounds)], 0, actors, arbiter)
                { CheckpointEverySteps = checkpointEvery, CheckpointRequestId = CheckpointRequest }, ownerRef);
        var alive = Enumerable.Repeat(true, workers).ToArray();
        var histories = probes.Select(_ => new List<float[]>()).ToArray();
        void Assemble(int w)
        {
            while (!links[w].Offer(probes[w].ExpectMsg<ShardWeights>())) { }
            histories[w].Add((float[])links[w].Weights.Clone());
        }
        void Report(int w, int round)
        {
            var (report, samples, lossSum) = replica.Compute(links[w].Weights, w, round);
            Assert.Equal(round, links[w].Version); // one step per round here: no round ran without a report
            links[w].Send(1, round, links[w].Version, samples, lossSum, report, probes[w].Ref);
        }
        for (var w = 0; w < workers; w++) Assemble(w);
        for (var round = 0; round < Rounds; round++)
        {
            if (loss is not null && loss.Round == round)
            {
                LoseMidRound(loss, round, workers, shards, optimizer.GradientClipNorm > 0, actors, arbiter, probes, links, coordinator, replica, Report,
                    histories, alive);
                continue;
            }
            for (var w = workers - 1; w >= 0; w--)
                if (alive[w]) Report(w, round);
            for (var w = 0; w < workers; w++)
                if (alive[w]) Assemble(w);
        }
        foreach (var actor in actors.Append(arbiter)) Sys.Stop(actor);
        return [.. histories.Where((_, w) => alive[w])];
    }

    /// <summary>The request number of the checkpoint slices in <see cref="Sharded"/>'s parts.</summary>
    private const int CheckpointRequest = 7;

    /// <summary>
    /// With <see cref="ShardPartStart.CheckpointEverySteps"/> 2 over 5 rounds, each shard sends its owner, unasked, its slice of the
    /// weights and of the optimizer state at versions 2 and 4: once each, not at the part's starting version 0, and not at 5
    /// (no round closes after it in the part). Put together, each is the weights every worker got at that version, bit for
    /// bit, after as many optimizer steps; with clipping too, where a step waits for the other shards' parts of the norm. With a
    /// worker lost between its slices of round 2 (sent to shard 0 only), shard 0 closes the round early and sends version 2's
    /// slices then, and its redo of the round sends nothing more; after the decision no shard sends any (the owner writes no
    /// checkpoint within a part after a loss), so shard 1's slice of version 2 and version 4 never come.
    /// </summary>
    [Theory]
    [InlineData(false, "sgd")]
    [InlineData(false, "adam")]
    [InlineData(false, "clip")]
    [InlineData(true, "sgd")]
    public void Shards_send_their_checkpoint_slices_at_each_multiple_of_the_parts_interval_once_that_version_is_final(bool lost, string kind)
    {
        const int workers = 3, shards = 2;
        var optimizer = kind switch { "adam" => Adam(), "clip" => Sgd(clip: 0.05), _ => Sgd() };
        var actors = new List<IActorRef>();
        var histories = Sharded(optimizer, workers, shards, lost ? new Loss(Worker: 2, Round: 2, SentTo: [0]) : null, shardActors: actors, checkpointEvery: 2);
        var names = Optimizer.Create(optimizer, 1).State.Select(b => b.Name).ToArray();
        var gathers = new SortedDictionary<long, ShardWeightsGather>();
        while (ReceiveOne(TimeSpan.FromMilliseconds(500)) is { } message)
        {
            var chunk = Assert.IsType<ShardSliceChunk>(message);
            Assert.Equal(CheckpointRequest, chunk.RequestId);
            if (!gathers.TryGetValue(chunk.Version, out var gather))
                gathers[chunk.Version] = gather = new ShardWeightsGather(Replica.Initial(), actors, CheckpointRequest, names);
            Assert.Null(gather.Take(LastSender, chunk)); // a slice sent twice is refused here
        }
        if (lost)
        {
            Assert.Equal([2L], gathers.Keys);
            Assert.Equal([1], gathers[2].Waiting);
            return;
        }
        Assert.Equal([2L, 4L], gathers.Keys);
        foreach (var (version, gather) in gathers)
        {
            Assert.True(gather.Complete, $"version {version}: waiting for shards {string.Join(", ", gather.Waiting)}");
            Assert.Equal((version, version), (gather.Result.Version, gather.OptimizerSteps));
            Assert.Equal(names, gather.OptimizerState.Select(b => b.Name));
            foreach (var history in histories) Compare.Identical(history[(int)version], gather.Result.Weights, $"version {version}");
        }
    }

    private static void LoseMidRound(Loss loss, int round, int workers, int shards, bool clips, IActorRef[] actors, IActorRef arbiter, TestProbe[] probes,
        ShardedReplicaLink[] links, TestProbe coordinator, Replica replica, Action<int, int> report, List<float[]>[] histories, bool[] alive)
    {
        var lost = loss.Worker;
        var keeps = Keeps(loss, shards);
        // The lost worker writes its slices to some shards and dies; the others (but worker 0, when it keeps) send theirs.
        var (lostReport, samples, lossSum) = replica.Compute(links[lost].Weights, lost, round);
        var slices = links[lost].Split(lostReport);
        foreach (var k in loss.SentTo)
            actors[k].Tell(new GradientComputed(1, round, links[lost].Version, lost, samples, lossSum, slices[k]), probes[lost].Ref);
        for (var w = workers - 1; w >= 1; w--)
            if (w != lost) report(w, round);
        alive[lost] = false;
        if (!keeps)
        {
            // The shards that got every slice close the round with the lost worker's and send their results (stamp 0); when
            // clipping, they wait for the other shards' parts of the norm instead, which cannot come before the decision.
            var early = clips ? 0 : loss.SentTo.Length;
            report(0, round);
            var before = Enumerable.Range(0, workers).Where(w => alive[w]).ToDictionary(w => w, w => Enumerable.Range(0, early)
                .Select(_ => probes[w].ExpectMsg<ShardWeights>()).ToList());
            Assert.All(before.Values.SelectMany(list => list), r => Assert.Equal((round, 0), (r.Round, r.Stamp)));
            if (clips)
                foreach (var probe in probes.Where((_, w) => alive[w])) probe.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
            arbiter.Tell(new WorkerLost(lost), coordinator.Ref);
            Assert.Equal(new LossDecision(lost, round, Keep: false), coordinator.ExpectMsg<ShardLossDecided>().Decision);
            foreach (var (w, results) in before)
            {
                // Then one result of every shard with the new stamp (a redo from those that stepped).
                results.AddRange(Enumerable.Range(0, shards).Select(_ => probes[w].ExpectMsg<ShardWeights>()));
                // Delivered as links may deliver them (in order per shard): the stale ones, then the fresh ones of the shards
                // that never had the lost worker's slice, then the redone ones. Only the last completes the round.
                var ordered = results.OrderBy(r => r.Stamp).ThenBy(r => loss.SentTo.Contains(r.Shard) ? 1 : 0).ToList();
                for (var i = 0; i < ordered.Count - 1; i++)
                    Assert.False(links[w].Offer(ordered[i]), $"worker {w} put weights together from shard {ordered[i].Shard}'s result of stamp {ordered[i].Stamp} and others");
                Assert.True(links[w].Offer(ordered[^1]));
                Assert.Equal(1, links[w].Stamp);
                histories[w].Add((float[])links[w].Weights.Clone());
            }
            return;
        }
        // Every shard holds the lost worker's slice and waits for worker 0: the round keeps the slice, and closes on worker 0's.
        arbiter.Tell(new WorkerLost(lost), coordinator.Ref);
        Assert.Equal(new LossDecision(lost, round, Keep: true), coordinator.ExpectMsg<ShardLossDecided>().Decision);
        report(0, round);
        for (var w = 0; w < workers; w++)
            if (alive[w])
            {
                while (!links[w].Offer(probes[w].ExpectMsg<ShardWeights>())) { }
                Assert.Equal(0, links[w].Stamp);
                histories[w].Add((float[])links[w].Weights.Clone());
            }
    }

    internal static void AssertSameWeights(List<float[]> expected, List<float[]> actual, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (var round = 0; round < expected.Count; round++)
        {
            var e = expected[round];
            var a = actual[round];
            Assert.Equal(e.Length, a.Length);
            for (var i = 0; i < e.Length; i++)
                if (BitConverter.SingleToInt32Bits(e[i]) != BitConverter.SingleToInt32Bits(a[i]))
                    Assert.Fail($"{what}: after round {round - 1} weight {i} is {a[i]:R}, one server's {e[i]:R}");
        }
    }

    [Theory]
    [InlineData(2, 2, false)]
    [InlineData(3, 3, false)]
    [InlineData(2, 3, true)]
    [InlineData(3, 2, true)]
    public void Shards_on_their_own_give_one_servers_weights_bit_for_bit_with_sgd_momentum_and_adam(int shards, int workers, bool adam)
    {
        var optimizer = adam ? Adam() : Sgd();
        var expected = Reference(optimizer, workers, serverShards: 1, loss: null, shards);
        var actual = Sharded(optimizer, workers, shards, loss: null);
        Assert.Equal(workers, actual.Length);
        foreach (var history in actual) AssertSameWeights(expected, history, $"{shards} shards, {workers} workers");
        // The run trains: the weights moved at every round.
        for (var round = 1; round <= Rounds; round++) Assert.NotEqual(expected[round - 1], expected[round]);
    }

    /// <summary>
    /// With Optimizer:GradientClipNorm every shard's step waits for all K parts of the squared norm, summed in shard order:
    /// the in-process sharded server's arithmetic, so its weights bit for bit. The clip norm is small enough that every step
    /// clips.
    /// </summary>
    [Theory]
    [InlineData(2, 3)]
    [InlineData(3, 2)]
    public void With_clipping_by_the_global_norm_shards_on_their_own_give_the_in_process_sharded_servers_weights_bit_for_bit(int shards, int workers)
    {
        var optimizer = Sgd(clip: 0.05);
        var expected = Reference(optimizer, workers, serverShards: shards, loss: null, shards);
        var actual = Sharded(optimizer, workers, shards, loss: null);
        foreach (var history in actual) AssertSameWeights(expected, history, $"{shards} shards clipping");
        // Clipping changed the steps: without it the weights after the first round differ.
        var unclipped = Reference(Sgd(), workers, serverShards: 1, loss: null, shards);
        Assert.NotEqual(unclipped[1], expected[1]);
    }

    /// <summary>
    /// The clipped-steps metric counts each clipped step once, as the in-process sharded server does: every shard that runs
    /// on its own steps over a slice that starts at its own 0, so only shard 0 counts. The clip norm is small enough that
    /// every step clips. (The metric is process-wide; test classes do not run in parallel.)
    /// </summary>
    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void With_clipping_each_clipped_step_counts_once_not_once_per_shard(int shards)
    {
        var before = Cluster.Metrics.DistTrainMetrics.ClippedSteps;
        Reference(Sgd(clip: 0.05), workers: 2, serverShards: shards, loss: null, shards);
        var inProcess = Cluster.Metrics.DistTrainMetrics.ClippedSteps - before;
        before = Cluster.Metrics.DistTrainMetrics.ClippedSteps;
        Sharded(Sgd(clip: 0.05), workers: 2, shards, loss: null);
        var onTheirOwn = Cluster.Metrics.DistTrainMetrics.ClippedSteps - before;
        Assert.Equal((long)Rounds, inProcess);
        Assert.Equal((long)Rounds, onTheirOwn);
    }

    /// <summary>
    /// A worker lost between its slices: the shards that stepped with its slice redo the step without it, the others close
    /// the round without it, every survivor puts together the redone weights only (the results are offered in the order
    /// that would mix stamps), and every survivor's weights at every round equal one server's on the rounds as decided. A
    /// worker lost after all its slices arrived is kept in its round.
    /// </summary>
    /// <remarks>With clipping the reference is the in-process sharded server (the same summation of the norm), and the
    /// shards that redo a step also redo its norm exchange, under the new stamp.</remarks>
    [Theory]
    [InlineData(2, "sgd", new[] { 0 })]
    [InlineData(2, "adam", new[] { 1 })]
    [InlineData(3, "sgd", new[] { 1, 2 })]
    [InlineData(3, "adam", new[] { 0 })]
    [InlineData(3, "clip", new[] { 0 })]
    [InlineData(2, "clip", new[] { 1 })]
    [InlineData(3, "sgd", new[] { 0, 1, 2 })]
    [InlineData(2, "adam", new[] { 0, 1 })]
    [InlineData(2, "clip", new[] { 0, 1 })]
    public void A_worker_lost_mid_round_leaves_every_survivor_with_one_servers_weights_on_the_rounds_as_decided(int shards, string kind, int[] sentTo)
    {
        const int workers = 3;
        var optimizer = kind switch { "adam" => Adam(), "clip" => Sgd(clip: 0.05), _ => Sgd() };
        var loss = new Loss(Worker: 2, Round: 1, sentTo);
        var expected = Reference(optimizer, workers, serverShards: kind == "clip" ? shards : 1, loss, shards);
        var actual = Sharded(optimizer, workers, shards, loss);
        Assert.Equal(2, actual.Length);
        foreach (var history in actual) AssertSameWeights(expected, history, $"{shards} shards, worker 2 lost after writing to [{string.Join(", ", sentTo)}]");
        // The decision mattered: the round without the lost worker's slice is not the round with it.
        var other = Reference(optimizer, workers, serverShards: 1, loss with { SentTo = Keeps(loss, shards) ? [0] : [.. Enumerable.Range(0, shards)] }, shards);
        Assert.NotEqual(other[2], expected[2]);
    }
    /// <summary>
    /// The shards report every round they apply to their owner, and <see cref="ShardRoundMerge"/> makes one step report of each
    /// round that equals one <see cref="ParameterServer"/>'s: round, version, samples, loss sum and learning rate, the last round
    /// marked as the part's end. With a worker lost between its slices, the shard that stepped with its slice reports the round
    /// again under the new stamp, and the merge reports the round once, as decided (without the slice), as the server that
    /// never got the report does; a worker lost after all its slices arrived is kept, and nothing is reported twice.
    /// </summary>
    [Theory]
    [InlineData(2, "none")]
    [InlineData(3, "none")]
    [InlineData(3, "drop")]
    [InlineData(2, "drop")]
    [InlineData(2, "keep")]
    public void The_owner_merges_the_shards_round_reports_into_one_servers_step_reports(int shards, string lost)
    {
        const int workers = 3;
        var lose = lost == "drop";
        var loss = lost switch { "drop" => new Loss(Worker: 2, Round: 1, SentTo: [0]), "keep" => new Loss(2, 1, [.. Enumerable.Range(0, shards)]), _ => null };
        var expected = new List<RoundApplied>();
        var partEnd = new List<EpochCompleted>();
        Reference(this, Sgd(), workers, serverShards: 1, loss, shards, expected, partEnd);
        var owner = CreateTestProbe();
        var actors = new List<IActorRef>();
        Sharded(Sgd(), workers, shards, loss, owner, actors);
        var merge = new ShardRoundMerge(actors);
        var merged = new List<ShardRoundApplied>();
        var reports = 0;
        while (merged.Count < Rounds)
        {
            var report = owner.ExpectMsg<ShardRoundApplied>();
            reports++;
            Assert.Null(merge.Take(owner.LastSender, report, out var step));
            if (step is not null) merged.Add(step);
        }
        Assert.Equal(shards * Rounds + (lose ? 1 : 0), reports); // the redone round: once more, from the shard that stepped with the slice
        for (var i = 0; i < Rounds; i++)
        {
            var (step, server) = (merged[i], expected[i]);
            Assert.Equal((server.Epoch, server.Round, server.Version, server.SampleCount), (step.Epoch, step.Round, step.Version, step.SampleCount));
            Assert.True(Math.Abs(step.LossSum - server.LossSum) <= 1e-12 * Math.Abs(server.LossSum), $"round {i}: loss sum {step.LossSum:R}, server {server.LossSum:R}");
            Assert.Equal(server.LearningRate, step.LearningRate);
            Assert.Equal(i == Rounds - 1, step.PartFinished);
            Assert.True(step.UpdateSeconds > 0, $"round {i}: update {step.UpdateSeconds} s");
        }
        Assert.Equal(lose ? 1 : 0, merged[1].Stamp);
        // The part's last merged report carries the model's L1 and L2 terms, the shards' sums: the server's at its part's end within
        // 1e-6 relative (the terms are summed per tensor in single precision, in another grouping); the rounds before it (none of
        // which can be the part's last here) carry none.
        var serverEnd = Assert.Single(partEnd);
        Assert.True(serverEnd.L1Penalty > 0 && serverEnd.L2Penalty > 0);
        Assert.True(Math.Abs(merged[^1].L1Penalty - serverEnd.L1Penalty) <= 1e-6 * serverEnd.L1Penalty, $"L1 {merged[^1].L1Penalty:R}, server {serverEnd.L1Penalty:R}");
        Assert.True(Math.Abs(merged[^1].L2Penalty - serverEnd.L2Penalty) <= 1e-6 * serverEnd.L2Penalty, $"L2 {merged[^1].L2Penalty:R}, server {serverEnd.L2Penalty:R}");
        Assert.All(merged.Take(Rounds - 1), step => Assert.Equal((0.0, 0.0), (step.L1Penalty, step.L2Penalty)));
        owner.ExpectNoMsg(TimeSpan.FromMilliseconds(100)); // no report beyond those
        // A report from an actor that is not its shard, or of a round already reported, changes nothing.
        var late = merged[^1] with { Shard = 1 };
        Assert.EndsWith("which is not that shard; ignored", merge.Take(owner.Ref, late, out _));
        Assert.EndsWith("is of a round already reported; ignored", merge.Take(actors[1], late, out _));
        // A fresh merge: an older stamp does not replace a newer one, and reports that disagree are the shards out of step.
        var fresh = new ShardRoundMerge(actors);
        var round = merged[0] with { Round = 0, Stamp = 1, Shard = 0 };
        Assert.Null(fresh.Take(actors[0], round, out var none));
        Assert.Null(none);
        Assert.EndsWith("does not replace its report under stamp 1; ignored", fresh.Take(actors[0], round with { Stamp = 0 }, out _));
        for (var k = 1; k < shards - 1; k++) Assert.Null(fresh.Take(actors[k], round with { Shard = k }, out _));
        Assert.EndsWith("disagree (shard 0: version 1, " + round.SampleCount + " samples, loss sum " + round.LossSum.ToString("R", System.Globalization.CultureInfo.InvariantCulture) +
            $"; shard {shards - 1}: version 2, " + round.SampleCount + " samples, loss sum " + round.LossSum.ToString("R", System.Globalization.CultureInfo.InvariantCulture) +
            "): the shards are out of step", fresh.Take(actors[shards - 1], round with { Shard = shards - 1, Version = 2 }, out var torn));
        Assert.Null(torn);
    }

    /// <summary>
    /// A shard's report of a round gives the round's time, from its slice of the round's weights going out to its step
    /// (<see cref="ShardRoundApplied.RoundSeconds"/>, which the parameter server records per shard): at least the 150 ms the
    /// workers here wait before they compute, and at least the update itself; the merged report gives the slowest shard's.
    /// Without it a shard node's round was recorded as its update alone.
    /// </summary>
    [Fact]
    public void A_shards_round_report_gives_the_time_from_its_weights_going_out_to_its_step()
    {
        var run = new TwoShardPart(this, [2, 2]);
        Thread.Sleep(150); // the workers hold round 0's weights and compute only now
        for (var w = 0; w < 2; w++) run.Report(w, 0);
        var reports = new[] { run.Owner.ExpectMsg<ShardRoundApplied>(), run.Owner.ExpectMsg<ShardRoundApplied>() };
        foreach (var report in reports)
        {
            Assert.True(report.RoundSeconds >= 0.15, $"shard {report.Shard}: round {report.RoundSeconds} s");
            Assert.True(report.RoundSeconds >= report.UpdateSeconds && report.UpdateSeconds > 0, $"shard {report.Shard}: round {report.RoundSeconds} s, update {report.UpdateSeconds} s");
        }
        var merge = new ShardRoundMerge(run.Shards);
        Assert.Null(merge.Take(run.Shards[reports[0].Shard], reports[0], out _));
        Assert.Null(merge.Take(run.Shards[reports[1].Shard], reports[1], out var merged));
        Assert.Equal(reports.Max(r => r.RoundSeconds), merged!.RoundSeconds);
        run.Stop();
    }

    /// <summary>
    /// Two shards that run on their own and two workers (probes with a <see cref="ShardedReplicaLink"/> each) in one part of
    /// epoch 1 with <paramref name="rounds"/> per worker, the starting weights taken: the setting of the loss tests below.
    /// The shards report to <see cref="Owner"/>; the arbiter is a real <see cref="ShardLossArbiter"/> reporting to
    /// <see cref="Coordinator"/>, or <paramref name="arbiterProbe"/> when given.
    /// </summary>
    private sealed class TwoShardPart
    {
        private readonly ParameterShardActorTests _kit;
        private readonly Replica _replica = new();

        public TwoShardPart(ParameterShardActorTests kit, int[] rounds, TestProbe? arbiterProbe = null, bool keepGlobalBatch = false,
            OptimizerOptions? optimizer = null)
        {
            _kit = kit;
            var initial = Replica.Initial();
            Owner = kit.CreateTestProbe();
            Coordinator = kit.CreateTestProbe();
            Shards = [.. ParameterShards.Plan(initial.Layout, 2).Select(p => kit.Sys.ActorOf(ParameterShardActor.Props(p, initial, optimizer ?? Sgd(), totalEpochs: 1, Owner.Ref)))];
            Arbiter = arbiterProbe?.Ref ?? kit.Sys.ActorOf(ShardLossArbiter.Props(Shards, 2, epoch: 1, part: 0, Coordinator.Ref));
            Workers = [kit.CreateTestProbe(), kit.CreateTestProbe()];
            Links = [.. Workers.Select((_, w) => new ShardedReplicaLink(initial, Shards, w))];
            foreach (var shard in Shards)
                shard.Tell(new ShardPartStart(1, [.. Workers.Select(p => p.Ref)], rounds, 0, Shards, Arbiter, KeepGlobalBatch: keepGlobalBatch), Owner.Ref);
            for (var w = 0; w < 2; w++) Assemble(w);
            Merge = new ShardRoundMerge(Shards);
        }

        public TestProbe Owner { get; }
        public TestProbe Coordinator { get; }
        public IActorRef[] Shards { get; }
        public IActorRef Arbiter { get; }
        public TestProbe[] Workers { get; }
        public ShardedReplicaLink[] Links { get; }
        public ShardRoundMerge Merge { get; }

        /// <summary>Worker <paramref name="w"/> takes the shards' next results of one round.</summary>
        public void Assemble(int w)
        {
            while (!Links[w].Offer(Workers[w].ExpectMsg<ShardWeights>())) { }
        }

        /// <summary>Worker <paramref name="w"/>'s report of <paramref name="round"/> on its current weights, and its slices.</summary>
        public (float[] Report, int Samples, double LossSum, float[][] Slices) Compute(int w, int round)
        {
            var (report, samples, lossSum) = _replica.Compute(Links[w].Weights, w, round);
            return (report, samples, lossSum, Links[w].Split(report));
        }

        /// <summary>Worker <paramref name="w"/> sends its slices of <paramref name="round"/> to every shard.</summary>
        public int Report(int w, int round)
        {
            var (report, samples, lossSum, _) = Compute(w, round);
            Links[w].Send(1, round, Links[w].Version, samples, lossSum, report, Workers[w].Ref);
            return samples;
        }

        /// <summary>Worker <paramref name="w"/> sends its slice of <paramref name="round"/> to shard <paramref name="k"/> only.</summary>
        public int ReportTo(int k, int w, int round)
        {
            var (_, samples, lossSum, slices) = Compute(w, round);
            Shards[k].Tell(new GradientComputed(1, round, Links[w].Version, w, samples, lossSum, slices[k]), Workers[w].Ref);
            return samples;
        }

        /// <summary>The shards' reports taken by <see cref="Merge"/> until it merges a round.</summary>
        public ShardRoundApplied NextMerged()
        {
            ShardRoundApplied? step = null;
            while (step is null)
            {
                var report = Owner.ExpectMsg<ShardRoundApplied>();
                Assert.Null(Merge.Take(Owner.LastSender, report, out step));
            }
            return step;
        }

        public void Stop()
        {
            foreach (var actor in Shards.Append(Arbiter)) _kit.Sys.Stop(actor);
        }
    }

    /// <summary>
    /// A part whose last rounds only a lost worker had minibatches in ends without a step, and the owner learns it. Mid-slice:
    /// the worker (2 rounds, the other worker 1) sends its slice of round 1 to shard 0 only, which closes the round on it and
    /// steps, and the decision drops it: shard 0 redoes the round without any report (its step undone), and shard 1, left with
    /// nobody in the round, reports it so. Between rounds: the worker (3 rounds) finishes round 1 and is lost before round 2,
    /// which both shards then report without a step. Either way both report the round under the decision's stamp with no
    /// samples, and the merge makes of them the part's end: the version of the last real step, no samples, the part finished.
    /// The rounds before it, which the lost worker still had a minibatch after, are not the part's end.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_parts_last_rounds_dropped_with_their_lost_worker_are_merged_as_the_parts_end_without_a_step(bool betweenRounds)
    {
        var run = new TwoShardPart(this, [1, betweenRounds ? 3 : 2]);
        for (var w = 0; w < 2; w++) run.Report(w, 0);
        var first = run.NextMerged();
        Assert.Equal((0, 1L, false), (first.Round, first.Version, first.PartFinished));
        Assert.True(first.SampleCount > 0);
        run.Assemble(1);
        if (betweenRounds)
        {
            run.Report(1, 1);
            var second = run.NextMerged();
            Assert.Equal((1, 2L, false), (second.Round, second.Version, second.PartFinished));
        }
        else
        {
            // Worker 1's slice of round 1 reaches shard 0 only, which closes the round on it and steps.
            var lastSamples = run.ReportTo(0, 1, 1);
            var stepped = run.Owner.ExpectMsg<ShardRoundApplied>();
            Assert.Equal((0, 1, 0, 2L, lastSamples), (stepped.Shard, stepped.Round, stepped.Stamp, stepped.Version, stepped.SampleCount));
            Assert.Null(run.Merge.Take(run.Owner.LastSender, stepped, out var early));
            Assert.Null(early); // shard 1 has not closed round 1
        }
        run.Arbiter.Tell(new WorkerLost(1), run.Coordinator.Ref);
        var lastRound = betweenRounds ? 2 : 1;
        Assert.Equal(new LossDecision(1, lastRound, Keep: false), run.Coordinator.ExpectMsg<ShardLossDecided>().Decision);
        var end = run.NextMerged();
        Assert.Equal((lastRound, 1, (long)lastRound, 0, 0.0, true), (end.Round, end.Stamp, end.Version, end.SampleCount, end.LossSum, end.PartFinished));
        Assert.True(end.L1Penalty > 0 && end.L2Penalty > 0, "the part's end carries no regularization terms"); // both shards' slices
        run.Owner.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
        run.Stop();
    }

    /// <summary>
    /// Training:KeepGlobalBatch, two shards and two workers of five rounds: in round 1 worker 1's slices reach both shards and
    /// worker 0's shard 0 only, so shard 0 closes the round (reporting it as not the part's end) and shard 1 waits. Worker 1
    /// is lost: every shard still at round 1 holds its slice, so the decision keeps it, and as worker 1 had minibatches after
    /// round 1 the part is cut for both from round 2 (the owner's <see cref="LossDecision.ApplyTo"/> gives the same). Shard 0,
    /// already at round 2 with nobody left in it, reports round 2 as the part's end without a step; shard 1 closes round 1 with
    /// worker 0's slice, reports it as not the end, then reports round 2 alike. The merge makes round 1 one step (both
    /// workers' samples, the part not over) and round 2 the part's end with both slices' L1 and L2 terms. Worker 0 puts round
    /// 1's weights together with the end round 2 (the lowest of the results', shard 0's sent before the decision), and a slice
    /// of round 2 is refused, naming the cut.
    /// </summary>
    [Fact]
    public void With_keep_global_batch_a_loss_cuts_the_part_after_the_decisions_round_and_every_shard_reports_the_end_once()
    {
        var run = new TwoShardPart(this, [Rounds, Rounds], keepGlobalBatch: true);
        for (var w = 0; w < 2; w++) run.Report(w, 0);
        Assert.False(run.NextMerged().PartFinished);
        for (var w = 0; w < 2; w++) run.Assemble(w);
        var samples1 = run.Report(1, 1);
        var samples0 = run.ReportTo(0, 0, 1);
        var closedEarly = run.Owner.ExpectMsg<ShardRoundApplied>();
        Assert.Equal((0, 1, samples0 + samples1, false), (closedEarly.Shard, closedEarly.Round, closedEarly.SampleCount, closedEarly.PartFinished));
        Assert.Null(run.Merge.Take(run.Owner.LastSender, closedEarly, out var none));
        Assert.Null(none);

        run.Arbiter.Tell(new WorkerLost(1), run.Coordinator.Ref);
        var decision = run.Coordinator.ExpectMsg<ShardLossDecided>().Decision;
        Assert.Equal(new LossDecision(1, 1, Keep: true), decision);
        Assert.Equal((2, 2), decision.ApplyTo([Rounds, Rounds], keepGlobalBatch: true));
        // Worker 0's slice of round 1 reaches shard 1 now, after the decision.
        var (_, _, lossSum0, slices0) = run.Compute(0, 1);
        run.Shards[1].Tell(new GradientComputed(1, 1, run.Links[0].Version, 0, samples0, lossSum0, slices0[1]), run.Workers[0].Ref);
        var step = run.NextMerged();
        Assert.Equal((1, 0, 2L, samples0 + samples1, false), (step.Round, step.Stamp, step.Version, step.SampleCount, step.PartFinished));
        Assert.Equal((0.0, 0.0), (step.L1Penalty, step.L2Penalty));
        var end = run.NextMerged();
        Assert.Equal((2, 0, 2L, 0, true), (end.Round, end.Stamp, end.Version, end.SampleCount, end.PartFinished));

        run.Assemble(0);
        Assert.Equal((1, 2L, 2), (run.Links[0].AwaitedRound - 1, run.Links[0].Version, run.Links[0].EndRound));
        AssertWholeModelsPenalties(end, run.Links[0].Weights, Sgd());
        EventFilter.Warning(contains: "Training:KeepGlobalBatch ended this part at round 2 after a lost worker").Expect(2, () => run.Report(0, 2));
        run.Owner.ExpectNoMsg(TimeSpan.FromMilliseconds(100)); // each shard reported the end once
        run.Stop();
    }

    /// <summary>The part's end carries the L1 and L2 terms of the whole model at <paramref name="weights"/> (the shards' slices summed),
    /// as one server computes them, within 1e-6 relative (summed per tensor in single precision, in another grouping).</summary>
    private static void AssertWholeModelsPenalties(ShardRoundApplied end, float[] weights, OptimizerOptions optimizer)
    {
        var (l1, l2) = new ServerModel(new ParameterVector(Replica.Initial().Layout, (float[])weights.Clone()), optimizer, totalEpochs: 1).RegularizationPenalties();
        Assert.True(l1 > 0 && l2 > 0);
        Assert.True(Math.Abs(end.L1Penalty - l1) <= 1e-6 * l1, $"L1 {end.L1Penalty:R}, whole model {l1:R}");
        Assert.True(Math.Abs(end.L2Penalty - l2) <= 1e-6 * l2, $"L2 {end.L2Penalty:R}, whole model {l2:R}");
    }

    /// <summary>
    /// Training:KeepGlobalBatch with clipping by the global norm: shard 0 closes round 1 on both workers' slices and waits for
    /// shard 1's part of the norm when worker 1 is lost (kept; the cut at 2 ends shard 0's part while its step waits). Shard 0
    /// reports round 1 once the norm is whole and then the end at round 2; shard 1 closes round 1 on worker 0's late slice and
    /// reports it, then the end alike. The merge makes one step of round 1 and one end with the whole model's L1 and L2 terms,
    /// and no shard reports anything twice.
    /// </summary>
    [Fact]
    public void With_keep_global_batch_and_clipping_a_cut_while_a_step_waits_for_the_norm_reports_the_step_then_the_end()
    {
        var optimizer = Sgd(clip: 0.05);
        var run = new TwoShardPart(this, [Rounds, Rounds], keepGlobalBatch: true, optimizer: optimizer);
        for (var w = 0; w < 2; w++) run.Report(w, 0);
        Assert.False(run.NextMerged().PartFinished);
        for (var w = 0; w < 2; w++) run.Assemble(w);
        var samples1 = run.Report(1, 1);
        var samples0 = run.ReportTo(0, 0, 1); // shard 0 closes round 1 and waits for shard 1's part of the norm
        run.Owner.ExpectNoMsg(TimeSpan.FromMilliseconds(200));

        run.Arbiter.Tell(new WorkerLost(1), run.Coordinator.Ref);
        Assert.Equal(new LossDecision(1, 1, Keep: true), run.Coordinator.ExpectMsg<ShardLossDecided>().Decision);
        var (_, _, lossSum0, slices0) = run.Compute(0, 1);
        run.Shards[1].Tell(new GradientComputed(1, 1, run.Links[0].Version, 0, samples0, lossSum0, slices0[1]), run.Workers[0].Ref);
        var step = run.NextMerged();
        Assert.Equal((1, 0, 2L, samples0 + samples1, false), (step.Round, step.Stamp, step.Version, step.SampleCount, step.PartFinished));
        var end = run.NextMerged();
        Assert.Equal((2, 0, 2L, 0, true), (end.Round, end.Stamp, end.Version, end.SampleCount, end.PartFinished));
        run.Owner.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // each shard: round 1 once, the end once
        run.Assemble(0);
        Assert.Equal((2L, 2), (run.Links[0].Version, run.Links[0].EndRound));
        AssertWholeModelsPenalties(end, run.Links[0].Weights, optimizer);
        run.Stop();
    }

    /// <summary>
    /// Two shards and two workers of five rounds: in round 0 worker 0's slices reach both shards and worker 1's shard 0 only, so
    /// shard 0 closes the round. Worker 0 is lost (every shard holds its slice: kept), then worker 1 (shard 1 lacks its slice:
    /// dropped), so the part ends at round 0, below the rounds that can be a part's last with a worker alive. Both shards report
    /// round 0 under the second decision's stamp, shard 0 redoing it, with the part over and their L1 and L2 terms, which the
    /// merge sums into the part's end.
    /// </summary>
    [Fact]
    public void A_part_that_ends_early_because_every_worker_is_lost_still_reports_the_regularization_terms()
    {
        var run = new TwoShardPart(this, [Rounds, Rounds]);
        var samples0 = run.Report(0, 0);
        var samples1 = run.ReportTo(0, 1, 0);
        var closed = run.Owner.ExpectMsg<ShardRoundApplied>();
        Assert.Equal((0, 0, samples0 + samples1, 0.0), (closed.Shard, closed.Stamp, closed.SampleCount, closed.L1Penalty)); // round 0 cannot end the part here

        run.Arbiter.Tell(new WorkerLost(0), run.Coordinator.Ref);
        Assert.Equal(new LossDecision(0, 0, Keep: true), run.Coordinator.ExpectMsg<ShardLossDecided>().Decision);
        run.Arbiter.Tell(new WorkerLost(1), run.Coordinator.Ref);
        Assert.Equal(new LossDecision(1, 0, Keep: false), run.Coordinator.ExpectMsg<ShardLossDecided>().Decision);
        var end = run.NextMerged();
        Assert.Equal((0, 1, 1L, samples0, true), (end.Round, end.Stamp, end.Version, end.SampleCount, end.PartFinished));
        Assert.True(end.L1Penalty > 0 && end.L2Penalty > 0, $"the part's end carries L1 {end.L1Penalty}, L2 {end.L2Penalty}");
        run.Stop();
    }

    /// <summary>
    /// A shard asked about a lost worker sends it no further result, even one of a round that closes with its slice before the
    /// decision: a worker declared lost while alive (cut off from the coordinator only) would compute the next round on it and
    /// send that to the shards not yet asked. The shard not asked still sends the worker its result.
    /// </summary>
    [Fact]
    public void A_shard_asked_about_a_lost_worker_sends_it_no_further_result()
    {
        var arbiter = CreateTestProbe();
        var run = new TwoShardPart(this, [Rounds, Rounds], arbiter);
        run.Report(1, 0);
        arbiter.Send(run.Shards[0], new ShardLossQuery(1, 1, 0));
        Assert.Equal(0, arbiter.ExpectMsg<ShardLossAnswer>().Shard);
        run.Report(0, 0);
        Assert.Equal([0, 1], new[] { run.Workers[0].ExpectMsg<ShardWeights>(), run.Workers[0].ExpectMsg<ShardWeights>() }.Select(r => r.Shard).Order());
        Assert.Equal(1, run.Workers[1].ExpectMsg<ShardWeights>().Shard); // shard 1, not asked, sends it; shard 0 does not
        run.Workers[1].ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        run.Stop();
    }

    /// <summary>
    /// Optimizer:ScaleLearningRateByWorkers with Training:KeepGlobalBatch: one parameter server scales the rate by the workers the
    /// global minibatch was planned for, also when fewer take part (after a loss, or a resume with fewer workers). A shard scaled
    /// by the workers in the part, so a run on shard nodes stepped at half the rate after one of 2 workers was lost. The part's
    /// ScalingWorkers now sets it; 0 keeps the workers in the part.
    /// </summary>
    [Theory]
    [InlineData(2, 0.1f)]
    [InlineData(0, 0.05f)]
    public void A_shard_scales_the_learning_rate_by_the_parts_scaling_workers_when_it_names_them(int scalingWorkers, float rate)
    {
        var initial = Replica.Initial();
        var plan = ParameterShards.Plan(initial.Layout, 2);
        var plain = new OptimizerOptions { LearningRate = 0.05, ScaleLearningRateByWorkers = true };
        var shard = Sys.ActorOf(ParameterShardActor.Props(plan[0], initial, plain, totalEpochs: 1, TestActor));
        var worker = CreateTestProbe();
        shard.Tell(new ShardPartStart(1, [worker.Ref], [1], 0, [shard, ActorRefs.Nobody], ActorRefs.Nobody, ScalingWorkers: scalingWorkers));
        worker.ExpectMsg<ShardWeights>();
        var slice = Enumerable.Repeat(0.5f, plan[0].Length).ToArray();
        worker.Send(shard, new GradientComputed(1, 0, 0, 0, 10, 1, slice));
        var result = worker.ExpectMsg<ShardWeights>();
        Assert.Equal(initial.Values[3] - rate * 0.5f, result.Weights[3], 6); // plain SGD: w - rate * g, the rate 0.05 times the scaling workers
    }

    /// <summary>
    /// A slice that does not belong (another sender than the slot's worker, the wrong length, the wrong epoch, computed on
    /// another version than the weights the shard sent for its round) is logged
    /// with the reason and never counted: the round waits for the real one and steps on it alone.
    /// </summary>
    [Fact]
    public void A_slice_that_does_not_belong_is_refused_with_the_reason_and_the_round_waits_for_the_real_one()
    {
        var initial = Replica.Initial();
        var plan = ParameterShards.Plan(initial.Layout, 2);
        var shard = Sys.ActorOf(ParameterShardActor.Props(plan[0], initial, Sgd(), totalEpochs: 1, TestActor));
        var worker = CreateTestProbe();
        var intruder = CreateTestProbe();
        shard.Tell(new ShardPartStart(1, [worker.Ref], [2], 0, [shard, ActorRefs.Nobody], ActorRefs.Nobody));
        var start = worker.ExpectMsg<ShardWeights>();
        Assert.Equal((0, -1, 0, 0L), (start.Shard, start.Round, start.Stamp, start.Version));
        Assert.Equal(initial.Values.AsSpan(0, plan[0].Length).ToArray(), start.Weights);

        var slice = Enumerable.Repeat(0.5f, plan[0].Length).ToArray();
        EventFilter.Warning(contains: $"came from {intruder.Ref.Path}, not from the slot's worker").ExpectOne(() =>
            intruder.Send(shard, new GradientComputed(1, 0, 0, 0, 10, 1, slice)));
        EventFilter.Warning(contains: $"it holds {plan[0].Length - 1} values, and this shard's slice [0, {plan[0].End}) has {plan[0].Length}").ExpectOne(() =>
            worker.Send(shard, new GradientComputed(1, 0, 0, 0, 10, 1, slice[1..])));
        EventFilter.Warning(contains: "it is of epoch 2, and this part is of epoch 1").ExpectOne(() =>
            worker.Send(shard, new GradientComputed(2, 0, 0, 0, 10, 1, slice)));
        // This part names no loss arbiter: no question about its worker is answered, from any actor.
        EventFilter.Warning(contains: $"a question about lost worker 0 is not answered: it came from {intruder.Ref.Path}, and this part names no loss arbiter")
            .ExpectOne(() => intruder.Send(shard, new ShardLossQuery(0, 1, 0)));
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        intruder.ExpectNoMsg(TimeSpan.FromMilliseconds(200));

        worker.Send(shard, new GradientComputed(1, 0, 0, 0, 10, 1, slice));
        var result = worker.ExpectMsg<ShardWeights>();
        Assert.Equal((0, 0, 1L), (result.Round, result.Stamp, result.Version));
        // SGD with momentum 0.9 from zero velocity, L1 1e-5 and L2 1e-3 (decayed: the slice is inside 0.weight): one step of
        // w - 0.05 (0.5 + 1e-3 w + 1e-5 sign w).
        var w = initial.Values[3];
        Assert.Equal(w - 0.05f * (0.5f + 1e-3f * w + 1e-5f * MathF.Sign(w)), result.Weights[3], 6);

        // Round 1 is computed on version 1: a slice computed on version 0 (stale) is refused, and the round steps on the real one.
        EventFilter.Warning(contains: "it was computed on weights version 0, and this shard's weights for round 1 are version 1").ExpectOne(() =>
            worker.Send(shard, new GradientComputed(1, 1, 0, 0, 10, 1, slice)));
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        worker.Send(shard, new GradientComputed(1, 1, 1, 0, 10, 1, slice));
        Assert.Equal((1, 0, 2L), (worker.ExpectMsg<ShardWeights>() is var next ? (next.Round, next.Stamp, next.Version) : default));
    }

    /// <summary>
    /// With clipping, a part of the gradient's norm counts only from the shard of this run whose index it claims, as a
    /// slice counts only from its slot's worker: one from another actor, one from a shard claiming another's index, one of
    /// a shard index outside the run, and one before any part started are refused with the reason, and the step waits for
    /// the real part and equals the step of a shard that never saw them, bit for bit.
    /// </summary>
    [Fact]
    public void With_clipping_a_norm_part_from_another_actor_than_the_shard_it_names_is_refused_and_the_step_waits_for_the_real_one()
    {
        var initial = Replica.Initial();
        var plan = ParameterShards.Plan(initial.Layout, 2);
        var slice = Enumerable.Range(0, plan[0].Length).Select(i => MathF.Sin(i) * 0.1f).ToArray();
        const double otherPart = 0.75; // shard 1's part of the squared norm: the global norm is above the clip norm of 0.05

        float[] Step(bool intruders)
        {
            var shard = Sys.ActorOf(ParameterShardActor.Props(plan[0], initial, Sgd(clip: 0.05), totalEpochs: 1, TestActor));
            var other = CreateTestProbe(); // shard 1
            var worker = CreateTestProbe();
            var intruder = CreateTestProbe();
            if (intruders)
                EventFilter.Warning(contains: "a norm part claiming shard 1 of round 0 stamp 0 is not used: no part has started").ExpectOne(() =>
                    other.Send(shard, new ShardNormShare(1, 0, 0, otherPart)));
            shard.Tell(new ShardPartStart(1, [worker.Ref], [1], 0, [shard, other.Ref], ActorRefs.Nobody));
            worker.ExpectMsg<ShardWeights>();
            worker.Send(shard, new GradientComputed(1, 0, 0, 0, 10, 1, slice));
            var own = other.ExpectMsg<ShardNormShare>();
            Assert.Equal((0, 0, 0), (own.Shard, own.Round, own.Stamp));
            Assert.True(own.SquaredNorm > 0);
            if (intruders)
            {
                EventFilter.Warning(contains: $"a norm part claiming shard 1 of round 0 stamp 0 is not used: it came from {intruder.Ref.Path}, " +
                    $"not from shard 1's actor {other.Ref.Path}").ExpectOne(() => intruder.Send(shard, new ShardNormShare(1, 0, 0, 1e6)));
                EventFilter.Warning(contains: $"a norm part claiming shard 0 of round 0 stamp 0 is not used: it came from {other.Ref.Path}, " +
                    $"not from shard 0's actor {shard.Path}").ExpectOne(() => other.Send(shard, new ShardNormShare(0, 0, 0, 1e6)));
                EventFilter.Warning(contains: "a norm part claiming shard 2 of round 0 stamp 0 is not used: shard 2 is not one of this run's shards (0 to 1)")
                    .ExpectOne(() => other.Send(shard, new ShardNormShare(2, 0, 0, 1e6)));
                worker.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // no step on a forged part
            }
            other.Send(shard, new ShardNormShare(1, 0, 0, otherPart));
            var result = worker.ExpectMsg<ShardWeights>();
            Assert.Equal((0, 0, 1L), (result.Round, result.Stamp, result.Version));
            Sys.Stop(shard);
            return result.Weights;
        }

        var clean = SameWithAndWithoutRefused(intruders => Step(intruders));
        Assert.NotEqual(initial.Values.AsSpan(0, plan[0].Length).ToArray(), clean); // the step moved the weights
    }

    /// <summary>
    /// With clipping, a shard whose round 0 waits for the other shard's part of the norm while the decisions that drop both
    /// workers (round 1) end the part reports round 0, once the part comes, as it stood when the round closed: not the part's
    /// end, no regularization terms, as the other shard reported it; then round 1 without a step, at the version after round 0,
    /// as the part's end with its terms. (Read when the report went out, round 0 said the part was over with this shard's
    /// terms alone, and the merge took it for the part's end.)
    /// </summary>
    [Fact]
    public void With_clipping_a_part_ended_while_a_step_waits_for_the_norm_reports_the_step_as_it_closed_then_the_end()
    {
        var initial = Replica.Initial();
        var plan = ParameterShards.Plan(initial.Layout, 2);
        var owner = CreateTestProbe();
        var shard = Sys.ActorOf(ParameterShardActor.Props(plan[0], initial, Sgd(clip: 0.05), totalEpochs: 1, owner.Ref));
        var other = CreateTestProbe(); // shard 1
        var arbiter = CreateTestProbe();
        TestProbe[] workers = [CreateTestProbe(), CreateTestProbe()];
        shard.Tell(new ShardPartStart(1, [.. workers.Select(w => w.Ref)], [Rounds, Rounds], 0, [shard, other.Ref], arbiter.Ref), owner.Ref);
        foreach (var worker in workers) worker.ExpectMsg<ShardWeights>();
        for (var w = 0; w < 2; w++)
            workers[w].Send(shard, new GradientComputed(1, 0, 0, w, 10, 1, [.. Enumerable.Range(0, plan[0].Length).Select(i => MathF.Sin(i + w) * 0.1f)]));
        var own = other.ExpectMsg<ShardNormShare>();
        Assert.Equal((0, 0, 0), (own.Shard, own.Round, own.Stamp));
        arbiter.Send(shard, new ShardLossDecision(new LossDecision(0, 1, Keep: false), 1, 0));
        arbiter.Send(shard, new ShardLossDecision(new LossDecision(1, 1, Keep: false), 1, 0));
        owner.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // round 0 still waits for the norm, and the part's end behind it
        other.Send(shard, new ShardNormShare(1, 0, 0, 0.75));
        var step = owner.ExpectMsg<ShardRoundApplied>();
        Assert.Equal((0, 0, 1L, 20, false, 0.0, 0.0), (step.Round, step.Stamp, step.Version, step.SampleCount, step.PartFinished, step.L1Penalty, step.L2Penalty));
        var end = owner.ExpectMsg<ShardRoundApplied>();
        Assert.Equal((1, 2, 1L, 0, true), (end.Round, end.Stamp, end.Version, end.SampleCount, end.PartFinished));
        Assert.True(end.L1Penalty > 0 && end.L2Penalty > 0, $"the part's end carries L1 {end.L1Penalty}, L2 {end.L2Penalty}");
        owner.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
        Sys.Stop(shard);
    }

    /// <summary>
    /// A loss question or decision counts only from the loss arbiter the part's start names, as a norm part only from its
    /// shard: a question from another actor is not answered (answered, it would make the shard refuse worker 1's slices from
    /// then on) and a decision from another actor is not applied (it would close round 0 on worker 0's slice alone), each
    /// with one warning naming the sender and the reason. The step waits for the real message (worker 1's slice, or the
    /// arbiter's question and decision when worker 1 is lost) and equals that of a shard that never saw the forged ones,
    /// bit for bit.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_loss_question_or_decision_from_another_actor_than_the_parts_arbiter_is_refused_and_the_step_waits_for_the_real_one(bool lost)
    {
        var initial = Replica.Initial();
        var plan = ParameterShards.Plan(initial.Layout, 2);
        float[] Slice(Func<int, float> f) => [.. Enumerable.Range(0, plan[0].Length).Select(f)];

        float[] Step(bool lost, bool intruders)
        {
            var shard = Sys.ActorOf(ParameterShardActor.Props(plan[0], initial, Sgd(), totalEpochs: 1, TestActor));
            var workers = new[] { CreateTestProbe(), CreateTestProbe() };
            var arbiter = CreateTestProbe();
            var intruder = CreateTestProbe();
            shard.Tell(new ShardPartStart(1, [workers[0].Ref, workers[1].Ref], [1, 1], 0, [shard, ActorRefs.Nobody], arbiter.Ref));
            foreach (var worker in workers) worker.ExpectMsg<ShardWeights>();
            workers[0].Send(shard, new GradientComputed(1, 0, 0, 0, 10, 1, Slice(i => MathF.Sin(i) * 0.1f)));
            if (intruders)
            {
                var notArbiter = $"not from the part's loss arbiter {arbiter.Ref.Path}";
                EventFilter.Warning(contains: $"Shard 0: a question about lost worker 1 is not answered: it came from {intruder.Ref.Path}, {notArbiter}")
                    .ExpectOne(() => intruder.Send(shard, new ShardLossQuery(1, 1, 0)));
                EventFilter.Warning(contains: $"Shard 0: a decision about worker 1 in round 0 is not applied: it came from {intruder.Ref.Path}, {notArbiter}")
                    .ExpectOne(() => intruder.Send(shard, new ShardLossDecision(new LossDecision(1, 0, Keep: false), 1, 0)));
                EventFilter.Warning(contains: $"Shard 0: a decision about worker 1 in round 0 is not applied: it came from {workers[1].Ref.Path}, {notArbiter}")
                    .ExpectOne(() => workers[1].Send(shard, new ShardLossDecision(new LossDecision(1, 0, Keep: false), 1, 0)));
                intruder.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // no answer to the forged question
                workers[0].ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // no step on the forged decision
            }
            if (lost)
            {
                shard.Tell(new ShardLossQuery(1, 1, 0), arbiter.Ref);
                Assert.Equal(new LossAnswer(1, 0, HasOpen: false), arbiter.ExpectMsg<ShardLossAnswer>().Answer);
                shard.Tell(new ShardLossDecision(new LossDecision(1, 0, Keep: false), 1, 0), arbiter.Ref);
            }
            else workers[1].Send(shard, new GradientComputed(1, 0, 0, 1, 17, 2, Slice(i => MathF.Cos(i) * 0.1f)));
            var result = workers[0].ExpectMsg<ShardWeights>();
            Assert.Equal((0, lost ? 1 : 0, 1L), (result.Round, result.Stamp, result.Version));
            Sys.Stop(shard);
            return result.Weights;
        }

        var clean = SameWithAndWithoutRefused(intruders => Step(lost, intruders));
        // The real message mattered: the round with worker 1's slice is not the round without it.
        Assert.NotEqual(Step(!lost, intruders: false), clean);
    }

    /// <summary>
    /// A part's start counts only from the run's owner the shard was made with: a forged one (another actor naming itself as
    /// the only worker, which would reset the ledger, the workers, the shards and the arbiter) is one warning naming its
    /// sender, and nothing changes: the part's worker gets no new starting weights, the intruder none, the round closes on
    /// the real worker's slice, and the weights equal those of a shard that never saw the forged start, bit for bit.
    /// </summary>
    [Fact]
    public void A_part_start_from_another_actor_than_the_runs_owner_is_refused_and_the_part_goes_on()
    {
        var initial = Replica.Initial();
        var plan = ParameterShards.Plan(initial.Layout, 2);
        float[] Slice(Func<int, float> f) => [.. Enumerable.Range(0, plan[0].Length).Select(f)];

        float[] Run(bool forged)
        {
            var owner = CreateTestProbe();
            var shard = Sys.ActorOf(ParameterShardActor.Props(plan[0], initial, Sgd(), totalEpochs: 1, owner.Ref));
            var workers = new[] { CreateTestProbe(), CreateTestProbe() };
            var arbiter = CreateTestProbe();
            var intruder = CreateTestProbe();
            owner.Send(shard, new ShardPartStart(1, [workers[0].Ref, workers[1].Ref], [2, 2], 0, [shard, ActorRefs.Nobody], arbiter.Ref));
            foreach (var worker in workers) Assert.Equal(-1, worker.ExpectMsg<ShardWeights>().Round);
            workers[0].Send(shard, new GradientComputed(1, 0, 0, 0, 10, 1, Slice(i => MathF.Sin(i) * 0.1f)));
            if (forged)
            {
                EventFilter.Warning(contains: $"Shard 0: a part's start of epoch 2 is not taken: it came from {intruder.Ref.Path}, not from the run's owner {owner.Ref.Path}")
                    .ExpectOne(() => intruder.Send(shard, new ShardPartStart(2, [intruder.Ref], [1], 0, [shard, ActorRefs.Nobody], intruder.Ref)));
                intruder.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // no starting weights for the forged part's worker
                foreach (var worker in workers) worker.ExpectNoMsg(TimeSpan.FromMilliseconds(100)); // nor new ones for the part's
            }
            // Worker 1's slice of epoch 1 still counts (a reset ledger of epoch 2 would refuse it) and closes round 0 with worker 0's.
            workers[1].Send(shard, new GradientComputed(1, 0, 0, 1, 17, 2, Slice(i => MathF.Cos(i) * 0.1f)));
            var first = workers[0].ExpectMsg<ShardWeights>();
            Assert.Equal((0, 0, 1L), (first.Round, first.Stamp, first.Version));
            foreach (var (worker, w) in workers.Select((p, w) => (p, w)))
                worker.Send(shard, new GradientComputed(1, 1, 1, w, 10 + w, 1, Slice(i => MathF.Sin(i + w) * 0.1f)));
            var second = workers[0].ExpectMsg<ShardWeights>();
            Assert.Equal((1, 0, 2L), (second.Round, second.Stamp, second.Version));
            Sys.Stop(shard);
            return second.Weights;
        }

        var clean = SameWithAndWithoutRefused(forged => Run(forged));
        Assert.NotEqual(initial.Values.AsSpan(0, plan[0].Length).ToArray(), clean); // the steps moved the weights
    }

    /// <summary>
    /// A resumed run's shard takes its slice of the checkpoint from the run's owner before its first part (Adam: two state
    /// buffers, and the step count its bias correction uses): asked again, it sends back exactly the weights, state, version and
    /// step count it was sent, and the part's first weights are the checkpoint's (in a part with no minibatch, as a resumed
    /// finished run scores them, the part also ends at once). A piece from another actor is one warning,
    /// and nothing changes; a piece out of order from the owner, or a part's start before the slice is whole, stops the shard
    /// naming the problem (it would train on torn weights).
    /// </summary>
    [Fact]
    public void A_shard_resumes_from_its_owners_checkpoint_slice_hands_it_out_in_a_part_without_minibatches_and_stops_on_a_torn_one()
    {
        var initial = Replica.Initial();
        var plan = ParameterShards.Plan(initial.Layout, 2);
        var slice = plan[1];
        float[] Values(int length, float scale) => [.. Enumerable.Range(0, length).Select(i => MathF.Sin(i * scale) * 0.5f)];
        var weights = Values(slice.Length, 0.37f);
        float[][] state = [Values(slice.TrainableLength, 0.11f), Values(slice.TrainableLength, 0.05f).Select(MathF.Abs).ToArray()];
        ShardSliceChunk Piece(int buffer, int offset, float[] values, int take) =>
            new(0, 1, 40, offset, values.Length, values[offset..(offset + take)], buffer, 40, state.Length);
        IEnumerable<ShardSliceChunk> Pieces(int buffer, float[] values)
        {
            for (var offset = 0; offset < values.Length; offset += ShardSliceChunk.MaxValues)
                yield return Piece(buffer, offset, values, Math.Min(ShardSliceChunk.MaxValues, values.Length - offset));
        }
        (IActorRef Shard, TestProbe Owner, TestProbe Failures) Start()
        {
            var owner = CreateTestProbe();
            var failures = CreateTestProbe();
            Sys.ActorOf(Props.Create(() => new Catching(ParameterShardActor.Props(slice, initial, Adam(), 1, owner.Ref), failures.Ref)));
            return (failures.ExpectMsg<IActorRef>(), owner, failures);
        }

        var (shard, owner, failures) = Start();
        var intruder = CreateTestProbe();
        EventFilter.Warning(contains: $"Shard 1: a piece of a checkpoint came from {intruder.Ref.Path}, not from the run's owner {owner.Ref.Path}. Ignored.")
            .ExpectOne(() => intruder.Send(shard, Pieces(0, Values(slice.Length, 9f)).First()));
        EventFilter.Info(contains: "Shard 1: resumes from the checkpoint's slice, version 40 after 40 optimizer steps.").ExpectOne(() =>
        {
            foreach (var piece in Pieces(0, weights).Concat(Pieces(1, state[0])).Concat(Pieces(2, state[1]))) owner.Send(shard, piece);
        });
        owner.Send(shard, new ShardSliceRequest(3, WithOptimizerState: true));
        var back = new[] { new float[slice.Length], new float[slice.TrainableLength], new float[slice.TrainableLength] };
        for (var received = 0; received < back.Sum(b => b.Length);)
        {
            var chunk = owner.ExpectMsg<ShardSliceChunk>();
            Assert.Equal((3, 1, 40L, 40L, 2), (chunk.RequestId, chunk.Shard, chunk.Version, chunk.OptimizerSteps, chunk.StateBuffers));
            chunk.Values.CopyTo(back[chunk.Buffer], chunk.Offset);
            received += chunk.Values.Length;
        }
        Compare.Identical(weights, back[0], "weights");
        Compare.Identical(state[0], back[1], "first moment");
        Compare.Identical(state[1], back[2], "second moment");
        var worker = CreateTestProbe();
        owner.Send(shard, new ShardPartStart(2, [worker.Ref], [1], 0, [ActorRefs.Nobody, shard], ActorRefs.Nobody));
        var first = worker.ExpectMsg<ShardWeights>();
        Assert.Equal((-1, 40L), (first.Round, first.Version));
        Compare.Identical(weights, first.Weights, "the part's first weights");
        failures.ExpectNoMsg(TimeSpan.FromMilliseconds(100));

        // Resumed from the checkpoint of a finished run, which is only scored: a part with no minibatch hands out the checkpoint's
        // weights and ends at once, reported as a round without a step (nothing else would end it).
        (shard, owner, failures) = Start();
        foreach (var piece in Pieces(0, weights).Concat(Pieces(1, state[0])).Concat(Pieces(2, state[1]))) owner.Send(shard, piece);
        owner.Send(shard, new ShardPartStart(2, [worker.Ref], [0], 0, [ActorRefs.Nobody, shard], ActorRefs.Nobody, Part: 1, FirstRound: 1));
        var handedOut = worker.ExpectMsg<ShardWeights>();
        Assert.Equal((0, 40L, 1), (handedOut.Round, handedOut.Version, handedOut.Part));
        Compare.Identical(weights, handedOut.Weights, "the weights handed out");
        var end = owner.ExpectMsg<ShardRoundApplied>();
        Assert.Equal((1, 2, 1, 1, 0, 40L, 0, true), (end.Shard, end.Epoch, end.Part, end.Round, end.Stamp, end.Version, end.SampleCount, end.PartFinished));
        failures.ExpectNoMsg(TimeSpan.FromMilliseconds(100));

        // A state buffer's piece before the weights: the shard stops, naming the buffer due.
        (shard, owner, failures) = Start();
        owner.Send(shard, Pieces(1, state[0]).First());
        var outOfOrder = failures.ExpectMsg<InvalidOperationException>();
        Assert.Equal("Shard 1: a piece of the checkpoint the run resumes from cannot be taken: it is of buffer 1, and buffer 0 is due. Resume the run " +
            "again, with the same settings on every node.", outOfOrder.Message);

        // Half the weights, then a part's start: the shard stops rather than train on torn weights.
        (shard, owner, failures) = Start();
        owner.Send(shard, Piece(0, 0, weights, slice.Length / 2));
        owner.Send(shard, new ShardPartStart(2, [worker.Ref], [1], 0, [ActorRefs.Nobody, shard], ActorRefs.Nobody));
        var torn = failures.ExpectMsg<InvalidOperationException>();
        Assert.Equal($"Shard 1: a part of epoch 2 starts before the checkpoint's slice it resumes from is whole ({slice.Length / 2} values of buffer 0 " +
            "have come): the run's owner sent it incompletely. Resume the run again.", torn.Message);
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
    }

    /// <summary>
    /// A loss question or decision counts only in the part it names: the arbiter's question and decision about worker 1 in
    /// round 0 of epoch 1, arriving late, after the next part (epoch 2) started and worker 0 sent its slice of that part's
    /// round 0, are each one warning naming both parts; so are ones of a later part of epoch 2. Applied, the late decision
    /// would close epoch 2's round 0 on worker 0's slice alone; refused, the round waits for worker 1's slice and equals that
    /// of a shard that never saw them, bit for bit.
    /// </summary>
    [Fact]
    public void A_loss_question_or_decision_of_another_part_is_refused_naming_both_parts_and_the_round_waits_for_its_slices()
    {
        var initial = Replica.Initial();
        var plan = ParameterShards.Plan(initial.Layout, 2);
        float[] Slice(Func<int, float> f) => [.. Enumerable.Range(0, plan[0].Length).Select(f)];

        float[] Run(bool late)
        {
            var shard = Sys.ActorOf(ParameterShardActor.Props(plan[0], initial, Sgd(), totalEpochs: 2, TestActor));
            var workers = new[] { CreateTestProbe(), CreateTestProbe() };
            var arbiter = CreateTestProbe();
            float[] last = [];
            foreach (var epoch in new[] { 1, 2 })
            {
                shard.Tell(new ShardPartStart(epoch, [workers[0].Ref, workers[1].Ref], [1, 1], 0, [shard, ActorRefs.Nobody], arbiter.Ref));
                foreach (var worker in workers) Assert.Equal(-1, worker.ExpectMsg<ShardWeights>().Round);
                var version = epoch - 1L;
                workers[0].Send(shard, new GradientComputed(epoch, 0, version, 0, 10, 1, Slice(i => MathF.Sin(i * epoch) * 0.1f)));
                if (late && epoch == 2)
                {
                    const string runs = "this shard runs epoch 2 part 0";
                    EventFilter.Warning(contains: $"Shard 0: a question about lost worker 1 is not answered: it is about epoch 1 part 0, and {runs}")
                        .ExpectOne(() => shard.Tell(new ShardLossQuery(1, 1, 0), arbiter.Ref));
                    EventFilter.Warning(contains: $"Shard 0: a decision about worker 1 in round 0 is not applied: it is about epoch 1 part 0, and {runs}")
                        .ExpectOne(() => shard.Tell(new ShardLossDecision(new LossDecision(1, 0, Keep: false), 1, 0), arbiter.Ref));
                    EventFilter.Warning(contains: $"Shard 0: a question about lost worker 1 is not answered: it is about epoch 2 part 1, and {runs}")
                        .ExpectOne(() => shard.Tell(new ShardLossQuery(1, 2, 1), arbiter.Ref));
                    EventFilter.Warning(contains: $"Shard 0: a decision about worker 1 in round 0 is not applied: it is about epoch 2 part 1, and {runs}")
                        .ExpectOne(() => shard.Tell(new ShardLossDecision(new LossDecision(1, 0, Keep: false), 2, 1), arbiter.Ref));
                    arbiter.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // no answer
                    workers[0].ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // no step on the late decision
                }
                workers[1].Send(shard, new GradientComputed(epoch, 0, version, 1, 17, 2, Slice(i => MathF.Cos(i * epoch) * 0.1f)));
                foreach (var worker in workers)
                {
                    var result = worker.ExpectMsg<ShardWeights>();
                    Assert.Equal((0, 0, epoch, version + 1), (result.Round, result.Stamp, result.Epoch, result.Version));
                    last = result.Weights;
                }
            }
            // A question of the part it runs is still answered: worker 1 sent its slice of epoch 2's round 0, which closed.
            shard.Tell(new ShardLossQuery(1, 2, 0), arbiter.Ref);
            Assert.Equal(1, arbiter.ExpectMsg<ShardLossAnswer>().Answer.Worker);
            Sys.Stop(shard);
            return last;
        }

        var clean = SameWithAndWithoutRefused(late => Run(late));
        Assert.NotEqual(initial.Values.AsSpan(0, plan[0].Length).ToArray(), clean); // the steps moved the weights
    }

    /// <summary>
    /// A bad part start (round counts not one per worker, a list of shards without this one at its index), and a loss question
    /// or decision before any part started or about a worker slot outside the part, are bad input from outside: each is one
    /// warning (not an error) naming the problem, and the shard goes on: the next good part starts, and its round steps.
    /// </summary>
    [Fact]
    public void A_bad_part_start_loss_question_or_decision_is_one_warning_and_the_shard_goes_on()
    {
        var initial = Replica.Initial();
        var plan = ParameterShards.Plan(initial.Layout, 2);
        var shard = Sys.ActorOf(ParameterShardActor.Props(plan[0], initial, Sgd(), totalEpochs: 1, TestActor));
        var worker = CreateTestProbe();
        var arbiter = CreateTestProbe();
        EventFilter.Warning(contains: "Shard 0: asked about lost worker 0, but no part has started. Not answered.")
            .ExpectOne(() => shard.Tell(new ShardLossQuery(0, 1, 0), arbiter.Ref));
        EventFilter.Warning(contains: "Shard 0: a decision about worker 0, but no part has started. Ignored.")
            .ExpectOne(() => shard.Tell(new ShardLossDecision(new LossDecision(0, 0, Keep: false), 1, 0), arbiter.Ref));
        EventFilter.Warning(contains: "Shard 0: a part of epoch 1 names 1 workers and 2 round counts; they must match and be 1..256. Ignored.")
            .ExpectOne(() => shard.Tell(new ShardPartStart(1, [worker.Ref], [1, 1], 0, [shard, ActorRefs.Nobody], arbiter.Ref)));
        EventFilter.Warning(contains: "Shard 0: a part of epoch 1 lists 2 shards without this one at index 0; every shard must get the same list")
            .ExpectOne(() => shard.Tell(new ShardPartStart(1, [worker.Ref], [1], 0, [ActorRefs.Nobody, shard], arbiter.Ref)));
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // no part started

        shard.Tell(new ShardPartStart(1, [worker.Ref], [1], 0, [shard, ActorRefs.Nobody], arbiter.Ref));
        Assert.Equal(-1, worker.ExpectMsg<ShardWeights>().Round);
        EventFilter.Warning(contains: "Shard 0: asked about lost worker 1, but this part's worker slots are 0 to 0. Not answered.")
            .ExpectOne(() => shard.Tell(new ShardLossQuery(1, 1, 0), arbiter.Ref));
        EventFilter.Warning(contains: "Shard 0: a decision about worker 1, but this part's worker slots are 0 to 0. Ignored.")
            .ExpectOne(() => shard.Tell(new ShardLossDecision(new LossDecision(1, 0, Keep: false), 1, 0), arbiter.Ref));
        arbiter.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // no answer
        worker.Send(shard, new GradientComputed(1, 0, 0, 0, 10, 1, new float[plan[0].Length]));
        var result = worker.ExpectMsg<ShardWeights>();
        Assert.Equal((0, 0, 0, 1L), (result.Round, result.Stamp, result.Shard, result.Version));
    }

    /// <summary>Parent of one shard: tells the test its child, and every exception the child fails with (then stops it).</summary>
    private sealed class Catching : ReceiveActor
    {
        private readonly IActorRef _report;

        public Catching(Props child, IActorRef report)
        {
            _report = report;
            report.Tell(Context.ActorOf(child));
        }

        protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(e =>
        {
            _report.Tell(e);
            return Directive.Stop;
        });
    }

    /// <summary>
    /// One <see cref="ParameterServer"/> (<see cref="Sgd"/>) under a parent that reports its failure, fed whole reports round by
    /// round in the order given: after every round but the last each live worker gets its weights, and at the last the server
    /// must stop. <paramref name="lost"/> is told before the reports of its round. Returns the exception it stops with.
    /// </summary>
    private TrainingDivergedException ServerStops(int workers, int rounds, (int Round, int Worker, int Samples, double LossSum, float[] Report)[] reports,
        (int Worker, int Round)? lost = null)
    {
        var failures = CreateTestProbe();
        Sys.ActorOf(Props.Create(() => new Catching(ParameterServer.Props(Replica.Initial(), Sgd(), 1), failures.Ref)));
        var server = failures.ExpectMsg<IActorRef>();
        var probes = Enumerable.Range(0, workers).Select(_ => CreateTestProbe()).ToArray();
        var coordinator = CreateTestProbe();
        server.Tell(new StartEpoch(1, [.. probes.Select(p => p.Ref)], [.. probes.Select(_ => rounds)]), coordinator.Ref);
        var alive = Enumerable.Repeat(true, workers).ToArray();
        var versions = new long[workers];
        var replyTo = new IActorRef[workers];
        void Receive()
        {
            for (var w = 0; w < workers; w++)
                if (alive[w])
                {
                    versions[w] = probes[w].ExpectMsg<WeightsUpdated>().Version;
                    replyTo[w] = probes[w].LastSender;
                }
        }
        Receive();
        var last = reports.Max(r => r.Round);
        foreach (var round in reports.Select(r => r.Round).Distinct().Order())
        {
            if (lost is { } gone && gone.Round == round)
            {
                server.Tell(new WorkerLost(gone.Worker), coordinator.Ref);
                alive[gone.Worker] = false;
            }
            foreach (var r in reports.Where(r => r.Round == round))
                probes[r.Worker].Send(replyTo[r.Worker], new GradientComputed(1, round, versions[r.Worker], r.Worker, r.Samples, r.LossSum, r.Report));
            if (round < last) Receive();
        }
        var diverged = failures.ExpectMsg<TrainingDivergedException>();
        foreach (var probe in probes) probe.ExpectNoMsg(TimeSpan.FromMilliseconds(100)); // no weights of the failed round
        return diverged;
    }

    /// <summary>
    /// A shard's divergence is one parameter server's over the same reports: the same message after the shard's index, the
    /// same epoch, step, version and judgement of the last good weights' loss, and its slice of the same last good weights.
    /// </summary>
    private static void AssertSameDivergence(TrainingDivergedException server, TrainingDivergedException shard, ParameterShard slice)
    {
        Assert.Equal($"Shard {slice.Index}: {server.Message}", shard.Message);
        Assert.Equal((server.Epoch, server.Step, server.LastGoodVersion, server.LossFinite), (shard.Epoch, shard.Step, shard.LastGoodVersion, shard.LossFinite));
        Assert.Equal(server.LastGoodWeights.AsSpan(slice.Start, slice.Length).ToArray(), shard.LastGoodWeights);
    }

    /// <summary>A whole report of <paramref name="value"/> everywhere (trainable gradients and running statistics).</summary>
    private static float[] Whole(float value) => Enumerable.Repeat(value, Replica.Initial().Layout.WorkerReportLength).ToArray();

    /// <summary>
    /// A round whose averaged gradient is not finite (a NaN in worker 0's report), or whose loss is not, in round 0 or round
    /// 1: the shard stops with what one parameter server gives over the same reports (<see cref="UpdatePolicy.Divergence"/>),
    /// its slice of the last good weights included. They are the newest it sent before the version the round was computed on
    /// (the start, version 0, for a failure in round 1), or that version's own when none is older (a failure in round 0);
    /// a non-finite loss in round 0 was computed on the starting weights themselves, so they are not known to be good
    /// (<see cref="TrainingDivergedException.LossFinite"/> false) and the advice is Model:Initializer's.
    /// </summary>
    [Theory]
    [InlineData(1, false)]
    [InlineData(0, false)]
    [InlineData(1, true)]
    [InlineData(0, true)]
    public void A_diverged_round_stops_the_shard_with_its_slice_of_the_last_good_weights(int failingRound, bool badLoss)
    {
        var initial = Replica.Initial();
        var plan = ParameterShards.Plan(initial.Layout, 2);
        var report = Whole(0.5f);
        var bad = (float[])report.Clone();
        if (!badLoss) bad[5] = float.NaN;
        var reports = Enumerable.Range(0, failingRound).Select(round => (round, 0, 10, 1.0, report))
            .Append((failingRound, 0, 10, badLoss ? double.NaN : 1, bad)).ToArray();
        var expected = ServerStops(workers: 1, rounds: 3, reports);

        var worker = CreateTestProbe();
        Sys.ActorOf(Props.Create(() => new Catching(ParameterShardActor.Props(plan[0], initial, Sgd(), 1, TestActor), TestActor)));
        var shard = ExpectMsg<IActorRef>();
        shard.Tell(new ShardPartStart(1, [worker.Ref], [3], 0, [shard, ActorRefs.Nobody], ActorRefs.Nobody));
        var start = worker.ExpectMsg<ShardWeights>();
        foreach (var (round, _, samples, lossSum, whole) in reports)
        {
            worker.Send(shard, new GradientComputed(1, round, round, 0, samples, lossSum, whole[plan[0].Start..plan[0].End]));
            if (round < failingRound) worker.ExpectMsg<ShardWeights>();
        }
        var diverged = ExpectMsg<TrainingDivergedException>();
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // no result of the failed round
        AssertSameDivergence(expected, diverged, plan[0]);
        Assert.Equal(start.Weights, diverged.LastGoodWeights);
        Assert.Equal(0L, diverged.LastGoodVersion);
        Assert.Equal((1, failingRound + 1), (diverged.Epoch, diverged.Step));
        Assert.Equal(failingRound > 0 || !badLoss, diverged.LossFinite);
        Assert.StartsWith($"Shard 0: Training diverged at epoch 1, step {failingRound + 1} (weights version {failingRound}): " +
            (badLoss ? "a NaN or infinite loss" : "a NaN or infinite averaged gradient or BatchNorm running statistic"), diverged.Message);
        Assert.Contains(badLoss ? "Workers affected: 0 (loss NaN)" : "Workers affected: 0 (loss 0.1)", diverged.Message);
        Assert.Contains(badLoss ? "First tensor with a non-finite gradient: none (the loss overflowed first)" : "First tensor with a non-finite gradient: 0.weight",
            diverged.Message);
        if (failingRound == 0 && badLoss)
            Assert.EndsWith("It was computed on the starting weights, before any update, so the learning rate is not the cause: check Model:Initializer " +
                "(weights that start too large overflow, as a large Constant does) and the input normalization.", diverged.Message);
    }

    /// <summary>
    /// With a part's GradientNormEverySteps 2, every shard sends its owner its slices of the per-tensor sums of squares (gradient,
    /// weights, update) of steps 2 and 4, each once the step is final: step 2's as round 2 closes, step 4's, the part's last, as
    /// the next part starts. Put together (<see cref="ShardHealthMerge"/>: a tensor cut by the boundary adds its two
    /// parts), 2 shards' slices give what 1 shard over the whole model measures, for every trainable tensor, within float
    /// summation's rounding; a part that names another number of tensors than its shard's slice is refused, naming both.
    /// </summary>
    [Fact]
    public void Shards_slices_of_the_per_tensor_norms_add_up_to_those_of_one_shard_over_the_whole_model()
    {
        var initial = Replica.Initial();
        var layout = initial.Layout;
        var random = new Random(5);
        var reports = Enumerable.Range(0, 4).Select(_ => Enumerable.Range(0, layout.WorkerReportLength).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray()).ToArray();
        List<ShardHealthSquares> Run(int shards)
        {
            var plan = ParameterShards.Plan(layout, shards);
            var owner = CreateTestProbe();
            owner.IgnoreMessages(m => m is ShardRoundApplied);
            var worker = CreateTestProbe();
            var actors = plan.Select(p => Sys.ActorOf(ParameterShardActor.Props(p, initial, Sgd(), 1, owner.Ref))).ToArray();
            foreach (var shard in actors) owner.Send(shard, new ShardPartStart(1, [worker.Ref], [5], 0, actors, ActorRefs.Nobody, GradientNormEverySteps: 2));
            for (var round = 0; round < 4; round++)
            {
                worker.ReceiveN(shards); // the weights the round is computed on, from each shard
                for (var k = 0; k < shards; k++)
                    worker.Send(actors[k], new GradientComputed(1, round, round, 0, 10, 1.0, reports[round][plan[k].Start..plan[k].End]));
            }
            // Step 2's slices go once round 2 closes (the step is final then); step 4's wait for the next part's start.
            var early = owner.ReceiveN(shards).Cast<ShardHealthSquares>().ToArray();
            Assert.All(early, m => Assert.Equal(2L, m.Step));
            owner.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
            foreach (var shard in actors) owner.Send(shard, new ShardPartStart(2, [worker.Ref], [3], 0, actors, ActorRefs.Nobody, GradientNormEverySteps: 2));
            return [.. early.Concat(owner.ReceiveN(shards).Cast<ShardHealthSquares>()).OrderBy(m => m.Step).ThenBy(m => m.Shard)];
        }

        var whole = Run(1);
        Assert.Equal([2L, 4], whole.Select(m => m.Step));
        var names = layout.Segments.Where(s => s.Trainable).Select(s => s.Name).ToArray();
        Assert.All(whole, m => Assert.Equal(names.Length, m.Gradient.Length));
        var parts = Run(2);
        Assert.Equal([(2L, 0), (2L, 1), (4L, 0), (4L, 1)], parts.Select(m => (m.Step, m.Shard)));
        var merge = new ShardHealthMerge(layout, 2);
        Assert.Equal((null, "per-tensor norms of shard 1 name 1 tensors, and its slice has " +
            $"{ParameterShards.Plan(layout, 2)[1].SliceLayout(layout).Segments.Count(s => s.Trainable)}; ignored."),
            merge.Add(parts[1] with { Gradient = [1], Weight = [1], Update = [1] }));
        for (var m = 0; m < 2; m++)
        {
            Assert.Equal((null, null), merge.Add(parts[2 * m]));
            var (sums, refused) = merge.Add(parts[2 * m + 1]);
            Assert.Null(refused);
            var expected = whole[m].Squares.ToArray();
            for (var i = 0; i < names.Length; i++)
            {
                Assert.True(expected[i].Gradient > 0 && expected[i].Weight > 0 && expected[i].Update > 0, $"step {whole[m].Step}, {names[i]}: nothing measured");
                foreach (var (a, b, what) in new[] { (expected[i].Gradient, sums![i].Gradient, "gradient"), (expected[i].Weight, sums[i].Weight, "weights"),
                    (expected[i].Update, sums[i].Update, "update") })
                    Assert.True(Math.Abs(a - b) <= 1e-5 * a, $"step {whole[m].Step}, {names[i]}'s {what}: {b:R} from the shards, {a:R} from one");
            }
        }
        Assert.Equal((null, null), merge.Add(parts[0])); // a redo's part of a step already put together is dropped
    }

    /// <summary>
    /// After another shard diverged, its owner asks this one for its slice of the last good version
    /// (<see cref="ShardSliceRequest.Version"/>): a shard answers from the three newest versions it sent, with exactly the weights it
    /// sent for that version (no optimizer state even when asked for it, step count 0), even after it stepped on; an older version
    /// is not answered, and
    /// the warning names the versions it holds.
    /// </summary>
    [Fact]
    public void A_shard_hands_its_owner_its_slice_of_any_of_the_three_newest_versions_it_sent()
    {
        var initial = Replica.Initial();
        var slice = ParameterShards.Plan(initial.Layout, 2)[1];
        var owner = CreateTestProbe();
        var worker = CreateTestProbe();
        owner.IgnoreMessages(m => m is ShardRoundApplied); // the shard's step reports
        var shard = Sys.ActorOf(ParameterShardActor.Props(slice, initial, Sgd(), 1, owner.Ref));
        owner.Send(shard, new ShardPartStart(1, [worker.Ref], [5], 0, [ActorRefs.Nobody, shard], ActorRefs.Nobody));
        var sent = new List<ShardWeights> { worker.ExpectMsg<ShardWeights>() };
        for (var round = 0; round < 4; round++)
        {
            worker.Send(shard, new GradientComputed(1, round, round, 0, 10, 1.0, Whole(0.25f * (round + 1))[slice.Start..slice.End]));
            sent.Add(worker.ExpectMsg<ShardWeights>());
        }
        Assert.Equal([0L, 1, 2, 3, 4], sent.Select(w => w.Version));
        foreach (var version in new long[] { 3, 2, 4 })
        {
            owner.Send(shard, new ShardSliceRequest(ShardSliceChunk.LastGoodRequestId, WithOptimizerState: version == 3, Version: version)); // weights only, asked with the state or not
            var back = new float[slice.Length];
            for (var received = 0; received < back.Length;)
            {
                var chunk = owner.ExpectMsg<ShardSliceChunk>();
                Assert.Equal((ShardSliceChunk.LastGoodRequestId, 1, version, 0, slice.Length, 0L, 0), (chunk.RequestId, chunk.Shard, chunk.Version, chunk.Buffer,
                    chunk.Total, chunk.OptimizerSteps, chunk.StateBuffers));
                chunk.Values.CopyTo(back, chunk.Offset);
                received += chunk.Values.Length;
            }
            Compare.Identical(sent[(int)version].Weights, back, $"version {version}");
        }
        Assert.NotEqual(sent[2].Weights, sent[4].Weights); // the versions differ, so each answer is its own version's
        EventFilter.Warning(contains: "Shard 1: its slice of version 1 was asked for, and it holds only versions 2, 3, 4 (the newest it sent); not answered.")
            .ExpectOne(() => owner.Send(shard, new ShardSliceRequest(ShardSliceChunk.LastGoodRequestId, Version: 1)));
        owner.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    /// <summary>
    /// The first step's loss, which the advice of a later divergence quotes when it is astronomical, is that of the first
    /// step as applied, as one parameter server sets it: worker 1's loss of 1e12 over its 27 samples makes the first step's
    /// mean loss 2.7e10 when the step keeps it. When worker 1 is lost after writing its slice of round 0 to shard 0 only,
    /// shard 0 steps with it, then redoes the step without it (the decision drops the slice): the first step applied is
    /// worker 0's alone, of mean loss 0.3, as one server's that never got worker 1's report, and round 1's NaN loss gives the
    /// learning-rate advice, not Model:Initializer's.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_first_steps_loss_in_a_divergences_advice_is_that_of_the_first_step_as_applied(bool lostMidRound)
    {
        var initial = Replica.Initial();
        var plan = ParameterShards.Plan(initial.Layout, 2);
        var report = Whole(0.5f);
        (int, int, int, double, float[]) first = (0, 0, 10, 3.0, report), huge = (0, 1, 27, 1e12, report), nan = (1, 0, 10, double.NaN, report);
        var expected = lostMidRound
            ? ServerStops(workers: 2, rounds: 2, [first, nan], lost: (1, 0))
            : ServerStops(workers: 2, rounds: 2, [huge, first, nan, nan with { Item2 = 1 }]);

        var failures = plan.Select(_ => CreateTestProbe()).ToArray();
        var shards = plan.Select((p, k) =>
        {
            Sys.ActorOf(Props.Create(() => new Catching(ParameterShardActor.Props(p, initial, Sgd(), 1, TestActor), failures[k].Ref)));
            return failures[k].ExpectMsg<IActorRef>();
        }).ToArray();
        var workers = new[] { CreateTestProbe(), CreateTestProbe() };
        var coordinator = CreateTestProbe();
        var arbiter = Sys.ActorOf(ShardLossArbiter.Props(shards, 2, epoch: 1, part: 0, coordinator.Ref));
        foreach (var shard in shards) shard.Tell(new ShardPartStart(1, [.. workers.Select(w => w.Ref)], [2, 2], 0, shards, arbiter));
        foreach (var worker in workers) Assert.All(worker.ReceiveN(2).Cast<ShardWeights>(), r => Assert.Equal(-1, r.Round));
        void Send(int k, (int Round, int Worker, int Samples, double LossSum, float[] Report) r) =>
            shards[k].Tell(new GradientComputed(1, r.Round, r.Round, r.Worker, r.Samples, r.LossSum, r.Report[plan[k].Start..plan[k].End]), workers[r.Worker].Ref);
        if (lostMidRound)
        {
            Send(0, huge);
            foreach (var k in new[] { 0, 1 }) Send(k, first);
            Assert.Equal((0, 0, 1L), workers[0].ExpectMsg<ShardWeights>() is var early ? (early.Shard, early.Stamp, early.Version) : default);
            arbiter.Tell(new WorkerLost(1), coordinator.Ref);
            Assert.Equal(new LossDecision(1, 0, Keep: false), coordinator.ExpectMsg<ShardLossDecided>().Decision);
            Assert.All(workers[0].ReceiveN(2).Cast<ShardWeights>(), r => Assert.Equal((0, 1, 1L), (r.Round, r.Stamp, r.Version)));
            foreach (var k in new[] { 0, 1 }) Send(k, nan);
        }
        else
        {
            foreach (var k in new[] { 0, 1 }) { Send(k, huge); Send(k, first); }
            foreach (var worker in workers) Assert.All(worker.ReceiveN(2).Cast<ShardWeights>(), r => Assert.Equal((0, 0, 1L), (r.Round, r.Stamp, r.Version)));
            foreach (var k in new[] { 0, 1 }) { Send(k, nan); Send(k, nan with { Item2 = 1 }); }
        }
        for (var k = 0; k < 2; k++) AssertSameDivergence(expected, failures[k].ExpectMsg<TrainingDivergedException>(), plan[k]);
        Assert.EndsWith(lostMidRound
            ? "Lower Optimizer:LearningRate, set Optimizer:GradientClipNorm, or check the input normalization."
            : "and the input normalization, then Optimizer:LearningRate and Optimizer:GradientClipNorm.", expected.Message);
        if (!lostMidRound) Assert.Contains(FormattableString.Invariant($"The first step's loss was already {(1e12 + 3) / 37:G3}"), expected.Message);
        Sys.Stop(arbiter);
    }

    [Fact]
    public void A_link_refuses_a_short_report_and_a_result_of_another_cut_naming_the_fix()
    {
        var initial = Replica.Initial();
        var link = new ShardedReplicaLink(initial, [ActorRefs.Nobody, ActorRefs.Nobody], worker: 0);
        var end = initial.Layout.WorkerReportLength;
        var error = Assert.Throws<ArgumentException>(() => link.Split(new float[end - 1]));
        Assert.StartsWith($"A report of {end - 1} values cannot be cut into the shards' slices, which reach to {end}: send the whole report prefix", error.Message);
        error = Assert.Throws<ArgumentException>(() => link.Offer(new ShardWeights(1, 1, -1, 0, 0, new float[3])));
        Assert.StartsWith($"Worker 0: shard 1's result holds 3 values; its slice has {link.Plan[1].Length}: the shards and the workers cut the model differently.", error.Message);
        error = Assert.Throws<ArgumentException>(() => link.Offer(new ShardWeights(2, 1, -1, 0, 0, new float[3])));
        Assert.StartsWith("Worker 0: a result from shard 2; this worker's link has shards 0 to 1.", error.Message);
        // The slices are the plan's, side by side: put back together they are the report.
        var report = Enumerable.Range(0, end).Select(i => (float)i).ToArray();
        var slices = link.Split(report);
        Assert.Equal(report, slices.SelectMany(x => x));
        Assert.Equal([link.Plan[0].Length, link.Plan[1].Length], slices.Select(x => x.Length));
    }

    /// <summary>
    /// A link sends each shard its slice of every push, from two sets of slice arrays of its own used in turn (a set is written
    /// again two pushes later), with, under Cluster:Compression, the shard's cut of the encoded gradient; a short report is
    /// refused before anything is sent, and the sets keep alternating after it.
    /// </summary>
    [Fact]
    public void A_link_sends_each_push_from_two_sets_of_slice_arrays_in_turn_with_each_shards_cut()
    {
        var initial = Replica.Initial();
        TestProbe[] shards = [CreateTestProbe(), CreateTestProbe()];
        var link = new ShardedReplicaLink(initial, [.. shards.Select(p => p.Ref)], worker: 1);
        var end = initial.Layout.WorkerReportLength;
        var settings = new Core.Compression.GradientCompressionSettings(Core.Compression.GradientCompression.Float16);
        var encoder = new Core.Compression.GradientEncoder(settings, initial.Layout.TrainableLength);
        var received = new List<GradientComputed[]>();
        for (var push = 0; push < 4; push++)
        {
            if (push == 2)
                Assert.Throws<ArgumentException>(() => link.Send(1, push, push, 20, 1.5, new float[end - 1], TestActor));
            var report = Enumerable.Range(0, end).Select(i => (float)(push * 1000 + i % 977)).ToArray();
            var message = new byte[encoder.MessageBytes];
            encoder.Encode(report.AsSpan(0, initial.Layout.TrainableLength), message);
            var bytes = link.Send(1, push, push, 20, 1.5, report, TestActor, push % 2 == 1 ? message : null);
            var slices = shards.Select(p => p.ExpectMsg<GradientComputed>()).ToArray();
            for (var k = 0; k < 2; k++)
            {
                var plan = link.Plan[k];
                Assert.Equal((1, push, (long)push, 1, 20), (slices[k].Epoch, slices[k].Round, slices[k].Version, slices[k].WorkerIndex, slices[k].SampleCount));
                Assert.Equal(report[plan.Start..plan.End], slices[k].Gradient); // as sent, before the next push reuses any array
                Assert.Equal(push % 2 == 1 ? Core.Compression.GradientMessageSlice.Cut(message, plan.Start, plan.TrainableLength) : null, slices[k].Encoded);
            }
            Assert.Equal(push % 2 == 1 ? slices.Sum(g => g.Encoded!.Length + 4L * (g.Gradient.Length - Core.Compression.GradientDecoder.DenseLength(g.Encoded))) : 4L * end, bytes);
            received.Add(slices);
        }
        for (var k = 0; k < 2; k++)
        {
            Assert.Same(received[0][k].Gradient, received[2][k].Gradient);
            Assert.Same(received[1][k].Gradient, received[3][k].Gradient);
            Assert.NotSame(received[0][k].Gradient, received[1][k].Gradient);
        }
    }

    /// <summary>
    /// The K results of one round and stamp carry one version (every shard steps once per round) and one epoch (the shards
    /// run one part at a time). Results that do not are of shards out of step, or running different parts: the link
    /// refuses to put them together, naming the worker's slot and every shard's version or epoch, and keeps the weights it had; a result of the
    /// right version and epoch then completes the round.
    /// </summary>
    [Theory]
    [InlineData(2, "version")]
    [InlineData(3, "version")]
    [InlineData(2, "epoch")]
    [InlineData(3, "epoch")]
    public void A_link_refuses_to_put_together_results_of_one_round_and_stamp_at_different_versions_or_epochs(int shards, string differs)
    {
        var initial = Replica.Initial();
        var link = new ShardedReplicaLink(initial, [.. Enumerable.Repeat(ActorRefs.Nobody, shards)], worker: 3);
        var epochs = differs == "epoch";
        // Round 2 of epoch 1, stamp 1, version 5; the odd one out is of epoch 2 or version 6.
        ShardWeights Result(int shard, bool odd, float value) =>
            new(shard, odd && epochs ? 2 : 1, 2, 1, odd && !epochs ? 6 : 5, Enumerable.Repeat(value, link.Plan[shard].Length).ToArray());
        Assert.False(link.Offer(Result(0, false, 0))); // round -1 is awaited: a result of round 2 is ignored
        // Put together the starting weights, then await round 2 (as after sending round 2's slices).
        for (var k = 0; k < shards; k++) Assert.Equal(k == shards - 1, link.Offer(new ShardWeights(k, 1, -1, 0, 4, link.Plan[k].Slice(initial).Values)));
        link.Send(1, 2, 4, 10, 1, new float[initial.Layout.WorkerReportLength], ActorRefs.Nobody);
        var before = (float[])link.Weights.Clone();
        for (var k = 0; k < shards - 1; k++) Assert.False(link.Offer(Result(k, false, k + 1)));
        var error = Assert.Throws<InvalidOperationException>(() => link.Offer(Result(shards - 1, true, shards)));
        var named = string.Join(", ", Enumerable.Range(0, shards).Select(k =>
            epochs ? $"shard {k}: epoch {(k == shards - 1 ? 2 : 1)} part 0" : $"shard {k}: version {(k == shards - 1 ? 6 : 5)}"));
        Assert.StartsWith(epochs
            ? $"Worker 3: the shards' results of round 2 stamp 1 are of different parts ({named}): the shards are running different parts"
            : $"Worker 3: the shards' results of epoch 1 round 2 stamp 1 carry different versions ({named}): the shards are out of step", error.Message);
        Assert.Equal(before, link.Weights);
        Assert.Equal((2, 4L, 0), (link.AwaitedRound, link.Version, link.Stamp));
        // The last shard's result of the same version and epoch completes the round.
        Assert.True(link.Offer(Result(shards - 1, false, shards)));
        Assert.Equal((3, 5L, 1), (link.AwaitedRound, link.Version, link.Stamp));
        for (var k = 0; k < shards; k++) Assert.All(link.Weights.AsSpan(link.Plan[k].Start, link.Plan[k].Length).ToArray(), w => Assert.Equal(k + 1, w));
    }

    /// <summary>
    /// A link takes a round's end as the lowest of its K results' (<see cref="ShardWeights.EndRound"/>), in whichever order they
    /// come: a shard that closed the round before a loss's decision sent the end it knew then (none), the others the cut. With
    /// no cut the end stays open, and the next part's results bring its own.
    /// </summary>
    [Theory]
    [InlineData(2, true)]
    [InlineData(2, false)]
    [InlineData(3, true)]
    [InlineData(3, false)]
    public void A_link_takes_the_lowest_end_round_of_a_rounds_results_in_either_order(int shards, bool cutFirst)
    {
        var initial = Replica.Initial();
        var link = new ShardedReplicaLink(initial, [.. Enumerable.Repeat(ActorRefs.Nobody, shards)], worker: 1);
        ShardWeights Result(int shard, int round, long version, int endRound) =>
            new(shard, 1, round, 0, version, link.Plan[shard].Slice(initial).Values, EndRound: endRound);
        for (var k = 0; k < shards; k++) link.Offer(Result(k, -1, 0, int.MaxValue));
        Assert.Equal((0, int.MaxValue), (link.AwaitedRound, link.EndRound));
        // Round 0's results: shard 0 (first or last) sent its result before the decision, the others after it, with the cut at 1.
        int[] order = cutFirst ? [.. Enumerable.Range(1, shards - 1), 0] : [0, .. Enumerable.Range(1, shards - 1)];
        foreach (var k in order) link.Offer(Result(k, 0, 1, k == 0 ? int.MaxValue : 1));
        Assert.Equal((1, 1L, 1), (link.AwaitedRound, link.Version, link.EndRound));
        // A new part's starting weights (no cut) open the end again.
        link.StartPart(4);
        for (var k = 0; k < shards; k++) link.Offer(new ShardWeights(k, 1, 4, 0, 1, link.Plan[k].Slice(initial).Values, Part: 1));
        Assert.Equal((5, int.MaxValue), (link.AwaitedRound, link.EndRound));
    }

    /// <summary>
    /// The arbiter takes a lost worker only from the run's owner it is made with, and only in the part's worker slots: a loss
    /// reported by another actor, and one of a slot outside the part, are each one warning (bad input from outside, not an
    /// error) naming the problem, and nothing is asked; the owner's report of the same worker is then decided, once.
    /// </summary>
    [Fact]
    public void The_arbiter_refuses_a_loss_from_another_actor_or_outside_the_slots_and_decides_each_lost_worker_once()
    {
        var shard = CreateTestProbe();
        var coordinator = CreateTestProbe();
        var intruder = CreateTestProbe();
        var arbiter = Sys.ActorOf(ShardLossArbiter.Props([shard.Ref], workerSlots: 2, epoch: 3, part: 1, coordinator.Ref));
        EventFilter.Warning(contains: $"Worker 1 reported lost by {intruder.Ref.Path}, not by the run's owner {coordinator.Ref.Path}, which alone reports lost workers. Ignored.")
            .ExpectOne(() => arbiter.Tell(new WorkerLost(1), intruder.Ref));
        shard.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // no question about the forged loss
        // Bad input is never an error. Expect(0) watches for its whole window, which is single-expect-default (30 s) unless
        // given; the report of worker 2 after the one of -1 is the mark that -1's is handled: the arbiter takes its messages
        // in order, and an error from -1 (a crash, logged by its supervisor before the restarted arbiter takes the next
        // message) reaches the event stream before the warning about 2 does. The short window then only adds margin.
        EventFilter.Error().Expect(0, TimeSpan.FromMilliseconds(200), () =>
        {
            arbiter.Tell(new WorkerLost(-1), coordinator.Ref);
            EventFilter.Warning(contains: "Worker 2 reported lost, but the worker slots are 0 to 1. Ignored.").ExpectOne(() => arbiter.Tell(new WorkerLost(2), coordinator.Ref));
        });
        shard.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        arbiter.Tell(new WorkerLost(1), coordinator.Ref);
        arbiter.Tell(new WorkerLost(1), coordinator.Ref);
        Assert.Equal(new ShardLossQuery(1, 3, 1), shard.ExpectMsg<ShardLossQuery>()); // about the arbiter's part
        shard.Reply(new ShardLossAnswer(0, new LossAnswer(1, 3, HasOpen: false)));
        Assert.Equal(new ShardLossDecision(new LossDecision(1, 3, Keep: false), 3, 1), shard.ExpectMsg<ShardLossDecision>());
        Assert.Equal(new LossDecision(1, 3, Keep: false), coordinator.ExpectMsg<ShardLossDecided>().Decision);
        shard.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // the second report of worker 1 asks nothing
        intruder.ExpectNoMsg(TimeSpan.FromMilliseconds(100)); // and the intruder was told no decision
    }

    /// <summary>
    /// Runs <paramref name="run"/> without (false) and with (true) the messages a test expects a shard to refuse, asserts
    /// that the shard's resulting weights are the same bit for bit, and returns them.
    /// </summary>
    private static float[] SameWithAndWithoutRefused(Func<bool, float[]> run)
    {
        var clean = run(false);
        var refused = run(true);
        Assert.Equal(clean.Select(BitConverter.SingleToInt32Bits), refused.Select(BitConverter.SingleToInt32Bits));
        return clean;
    }
}
