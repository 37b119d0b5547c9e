using Akka.Actor;
using Akka.Serialization;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Serialization;
using DistTrain.Cluster.Training;
using DistTrain.Core.Layers;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;
using MessagePack;
using SerializationException = System.Runtime.Serialization.SerializationException;

namespace DistTrain.Tests;

/// <summary>
/// The wire format of the messages shards that run on their own exchange across nodes (<see cref="ShardPartStart"/>,
/// <see cref="ShardLossQuery"/>, <see cref="ShardLossAnswer"/>, <see cref="ShardLossDecision"/>, <see cref="ShardLossDecided"/>,
/// <see cref="ShardNormShare"/>, and
/// <see cref="ShardWeightsHeader"/>, <see cref="ShardWeights"/> without its slice): through the project's Akka serializer and
/// back with real values, and bad bytes (truncated, of another type, out of range) refused with a
/// <see cref="SerializationException"/> that names the message and the problem.
/// </summary>
public class ShardMessageWireTests() : TestKit(AkkaSettings.Serialization())
{
    private SerializerWithStringManifest Serializer => (SerializerWithStringManifest)Sys.Serialization.FindSerializerForType(typeof(ShardNormShare));

    private T RoundTrip<T>(T message) where T : notnull
    {
        var serializer = Sys.Serialization.FindSerializerFor(message);
        Assert.IsType<MessagePackMessageSerializer>(serializer);
        var bytes = serializer.ToBinary(message);
        return Assert.IsType<T>(Serializer.FromBinary(bytes, typeof(T).Name));
    }

    private SerializationException Refuse(byte[] bytes, string manifest)
    {
        var error = Assert.Throws<SerializationException>(() => Serializer.FromBinary(bytes, manifest));
        Assert.Contains(manifest, error.Message);
        return error;
    }

    /// <summary>The values a lost worker's decision really carries: the ledgers' answers and the decision formed of them.</summary>
    [Fact]
    public void A_loss_question_its_answers_and_the_decision_of_real_ledgers_round_trip()
    {
        // Two shards' ledgers of 3 workers, 4 rounds each; worker 2's slice of round 0 reached shard 0 only.
        var ledgers = new[] { new ShardRoundLedger<string>([4, 4, 4]), new ShardRoundLedger<string>([4, 4, 4]) };
        ledgers[0].Add(2, 0, "worker 2", out _);
        foreach (var ledger in ledgers) ledger.Add(1, 0, "worker 1", out _);
        var query = RoundTrip(new ShardLossQuery(2, 4, 1));
        Assert.Equal((2, 4, 1), (query.Worker, query.Epoch, query.Part));
        var answers = ledgers.Select((ledger, k) => RoundTrip(new ShardLossAnswer(k, ledger.Query(query.Worker)))).ToArray();
        Assert.Equal([new LossAnswer(2, 0, HasOpen: true), new LossAnswer(2, 0, HasOpen: false)], answers.Select(a => a.Answer));
        Assert.Equal([0, 1], answers.Select(a => a.Shard));
        var decision = RoundTrip(new ShardLossDecision(LossDecision.From([.. answers.Select(a => a.Answer)]), query.Epoch, query.Part));
        Assert.Equal(new LossDecision(2, 0, Keep: false), decision.Decision);
        Assert.Equal((4, 1), (decision.Epoch, decision.Part));
        // The same decision, as the arbiter tells it to the loss's reporter.
        Assert.Equal(new LossDecision(2, 0, Keep: false), RoundTrip(new ShardLossDecided(decision.Decision)).Decision);
    }

    /// <summary>
    /// A part's start as the coordinator would send it to a shard on another node: the workers', shards' and loss arbiter's
    /// actors, an empty slot (<see cref="ActorRefs.Nobody"/>, as an empty slot and an absent shard are named), the rounds and
    /// the epoch's planned steps come back as they were, and the actors resolve to the same actors.
    /// </summary>
    [Fact]
    public void A_part_start_round_trips_with_its_actors_and_an_empty_slot()
    {
        var workers = new[] { CreateTestProbe(), CreateTestProbe() };
        var shard = CreateTestProbe();
        var arbiter = CreateTestProbe();
        var start = new ShardPartStart(3, [workers[0].Ref, ActorRefs.Nobody, workers[1].Ref], [15, 0, 14], 11, [shard.Ref, ActorRefs.Nobody], arbiter.Ref,
            Part: 2, FirstRound: 10, CheckpointEverySteps: 200, CheckpointRequestId: 6);
        var back = RoundTrip(start);
        Assert.Equal((3, 11, 2, 10, 200, 6), (back.Epoch, back.StepsPerEpoch, back.Part, back.FirstRound, back.CheckpointEverySteps, back.CheckpointRequestId));
        Assert.Equal([15, 0, 14], back.RoundsPerWorker);
        Assert.Equal(workers[0].Ref, back.Workers[0]);
        Assert.True(back.Workers[1].IsNobody(), $"the empty slot came back as {back.Workers[1]}");
        Assert.Equal(workers[1].Ref, back.Workers[2]);
        Assert.Equal(shard.Ref, back.Shards[0]);
        Assert.True(back.Shards[1].IsNobody(), $"the absent shard came back as {back.Shards[1]}");
        Assert.Equal(arbiter.Ref, back.Arbiter);
        Assert.True(RoundTrip(start with { Arbiter = ActorRefs.Nobody }).Arbiter.IsNobody(), "a part without an arbiter came back with one");
        // The arbiter is named, as Nobody when there is none: nil is refused.
        Assert.Contains("has no Arbiter (nil where the type needs a value)", Refuse(Part(3, 2, [5, 4], 11, 2, arbiter: null), nameof(ShardPartStart)).Message);
        // The refs are the actors: a message told to one reaches it.
        back.Workers[2].Tell("hello");
        workers[1].ExpectMsg("hello");
    }

    /// <summary>
    /// An empty slot and an absent arbiter (<see cref="ActorRefs.Nobody"/>) come back as Nobody also when the message is written as
    /// Akka.Remote writes it, with the sending node's address at hand: a version that wrote Nobody's path with that address had
    /// the receiving shard node resolve it to an actor on the sender's node, and a shard then sent its whole slice of the weights
    /// to it over Akka.Remote every round (seen with a worker lost on shard nodes: 4.98 MB a round, refused as oversized).
    /// </summary>
    [Fact]
    public async Task Nobody_comes_back_as_nobody_when_written_with_the_senders_address_as_remoting_writes_it()
    {
        // The receiving node resolves paths as remoting does (a remote provider), and the sender's address is another node's.
        var node = ActorSystem.Create("disttrain", AkkaSettings.Serialization().WithFallback(Akka.Configuration.ConfigurationFactory.ParseString(
            "akka.actor.provider = remote\nakka.remote.dot-netty.tcp { hostname = \"127.0.0.1\", port = 0 }")));
        var worker = CreateTestProbe();
        var start = new ShardPartStart(1, [worker.Ref, ActorRefs.Nobody], [9, 0], 4, [TestActor], ActorRefs.Nobody, Part: 1, FirstRound: 5);
        var serializer = (SerializerWithStringManifest)node.Serialization.FindSerializerFor(start);
        var sender = new Address("akka.tcp", "disttrain", "10.0.0.7", 4053);
#pragma warning disable CS0618 // the transport scope Akka.Remote sets while it serializes (its replacement takes a remote system)
        var bytes = Akka.Serialization.Serialization.WithTransport(node, sender, () => serializer.ToBinary(start));
#pragma warning restore CS0618
        var back = Assert.IsType<ShardPartStart>(serializer.FromBinary(bytes, nameof(ShardPartStart)));
        Assert.True(back.Workers[1].IsNobody(), $"the empty slot came back as {back.Workers[1]}");
        Assert.True(back.Arbiter.IsNobody(), $"the absent arbiter came back as {back.Arbiter}");
        Assert.False(back.Workers[0].IsNobody(), "the worker's actor came back as Nobody");
        await node.Terminate().WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void A_norm_share_keeps_every_bit_of_its_squared_norm_and_passes_nan_and_infinity()
    {
        // A real shard's part: the squared norm of an averaged gradient slice (ServerModel.AverageSquaredNorm's arithmetic).
        var slice = Enumerable.Range(0, 1000).Select(i => MathF.Sin(i) * 1e-3f).ToArray();
        var squared = System.Numerics.Tensors.TensorPrimitives.SumOfSquares<float>(slice);
        foreach (var norm in new[] { squared, 0.0, double.NaN, double.PositiveInfinity, double.Epsilon })
        {
            var back = RoundTrip(new ShardNormShare(15, 1_234_567, 256, norm));
            Assert.Equal((15, 1_234_567, 256), (back.Shard, back.Round, back.Stamp));
            Assert.Equal(BitConverter.DoubleToInt64Bits(norm), BitConverter.DoubleToInt64Bits(back.SquaredNorm));
        }
    }

    [Fact]
    public void A_shards_result_crosses_as_its_header_and_is_put_back_together_with_its_slice()
    {
        var model = new ModelOptions { InputSize = 784, Layers = [new() { Type = LayerTypes.Dense, Units = 10 }] };
        var initial = ModelFactory.StartingWeights(ModelFactory.Build(model), model, seed: 3);
        var plan = ParameterShards.Plan(initial.Layout, 3);
        var slice = plan[2].Slice(initial).Values;
        var result = new ShardWeights(2, 4, -1, 3, 1_000_000_007L, slice);
        var header = RoundTrip(result.Header);
        Assert.Equal(new ShardWeightsHeader(2, 4, -1, 3, 1_000_000_007L, plan[2].Length), header);
        var bytes = Serializer.ToBinary(result.Header);
        Assert.True(bytes.Length < 32, $"the header is {bytes.Length} bytes: no tensor travels with it");
        var back = ShardWeights.Of(header, (float[])slice.Clone());
        Assert.Equal((result.Shard, result.Epoch, result.Round, result.Stamp, result.Version), (back.Shard, back.Epoch, back.Round, back.Stamp, back.Version));
        Assert.Equal(slice, back.Weights);
        var error = Assert.Throws<ArgumentException>(() => ShardWeights.Of(header, slice[1..]));
        Assert.StartsWith($"Shard 2's result of epoch 4 round -1 announces {plan[2].Length} values, and {plan[2].Length - 1} came with it", error.Message);
    }

    [Fact]
    public void Truncated_messages_are_refused_naming_the_message()
    {
        object[] messages =
        [
            new ShardLossQuery(7, 1, 0), new ShardLossAnswer(1, new LossAnswer(7, 12, true)), new ShardLossDecision(new LossDecision(7, 12, false), 1, 0),
            new ShardNormShare(1, 12, 0, 0.25), new ShardWeightsHeader(1, 2, 12, 0, 13, 4096), new ShardLossDecided(new LossDecision(7, 12, true)),
            new ShardPartStart(2, [TestActor, ActorRefs.Nobody], [12, 0], 12, [TestActor], TestActor, Part: 3),
        ];
        foreach (var message in messages)
        {
            var bytes = Serializer.ToBinary(message);
            for (var cut = 0; cut < bytes.Length; cut++)
            {
                var error = Refuse(bytes[..cut], message.GetType().Name);
                Assert.DoesNotContain("Failed to deserialize", error.Message);
            }
        }
    }

    [Fact]
    public void A_message_of_another_type_is_refused_naming_what_is_missing()
    {
        // A ShardLossQuery's three fields are not a ShardNormShare's four, nor a ShardWeightsHeader's six.
        var query = Serializer.ToBinary(new ShardLossQuery(3, 1, 0));
        Assert.Contains("has 3 fields; the type needs at least 4", Refuse(query, nameof(ShardNormShare)).Message);
        Assert.Contains("has 3 fields; the type needs at least 6", Refuse(query, nameof(ShardWeightsHeader)).Message);
        Assert.Contains("has 3 fields; the type needs at least 6", Refuse(query, nameof(ShardPartStart)).Message);
        // A question or decision without the part it is about (the worker slot, or the decision, alone) is refused, not taken
        // for any part.
        Assert.Contains("has 1 fields; the type needs at least 3", Refuse(Bytes(3), nameof(ShardLossQuery)).Message);
        Assert.Contains("has 1 fields; the type needs at least 3", Refuse(Bytes((object)new object[] { 3, 0, false }), nameof(ShardLossDecision)).Message);
        // A ShardLossQuery's worker slot where a ShardLossDecided's decision (an array) belongs.
        Assert.Contains("could not be decoded", Refuse(query, nameof(ShardLossDecided)).Message);
        // A ShardWeightsHeader read as a ShardPartStart: a number where the workers' actors (an array) belong.
        Assert.Contains("could not be decoded", Refuse(Serializer.ToBinary(new ShardWeightsHeader(1, 2, 12, 0, 13, 4096)), nameof(ShardPartStart)).Message);
        // A ShardNormShare read as a ShardLossAnswer: its second field, the round, is where the answer (an array) belongs.
        var share = Serializer.ToBinary(new ShardNormShare(1, 12, 0, 0.25));
        Assert.Contains("could not be decoded", Refuse(share, nameof(ShardLossAnswer)).Message);
        // A string where the worker slot belongs.
        var text = MessagePackSerializer.Serialize(new object[] { "worker 3", 1, 0 });
        Assert.Contains("could not be decoded", Refuse(text, nameof(ShardLossQuery)).Message);
    }

    public static TheoryData<string, byte[], string> OutOfRange => new()
    {
        { nameof(ShardLossQuery), Bytes(256, 1, 0), "Worker 256 is outside 0 to 255" },
        { nameof(ShardLossQuery), Bytes(-1, 1, 0), "Worker -1 is outside 0 to 255" },
        { nameof(ShardLossQuery), Bytes(3, 0, 0), "Epoch 0 is below 1" },
        { nameof(ShardLossQuery), Bytes(3, 1, -1), "Part -1 is below 0" },
        { nameof(ShardLossAnswer), Bytes(16, new object[] { 1, 0, true }), "Shard 16 is outside 0 to 15" },
        { nameof(ShardLossAnswer), Bytes(0, new object[] { 300, 0, true }), "Worker 300 is outside 0 to 255" },
        { nameof(ShardLossAnswer), Bytes(0, new object[] { 1, -2, true }), "OpenRound -2 is below 0" },
        { nameof(ShardLossDecision), Bytes(new object[] { -5, 3, false }, 1, 0), "Worker -5 is outside 0 to 255" },
        { nameof(ShardLossDecision), Bytes(new object[] { 1, -1, false }, 1, 0), "Round -1 is below 0" },
        { nameof(ShardLossDecision), Bytes(new object[] { 1, 3, false }, -2, 0), "Epoch -2 is below 1" },
        { nameof(ShardLossDecision), Bytes(new object[] { 1, 3, false }, 1, -3), "Part -3 is below 0" },
        { nameof(ShardNormShare), Bytes(-1, 0, 0, 0.5), "Shard -1 is outside 0 to 15" },
        { nameof(ShardNormShare), Bytes(0, -1, 0, 0.5), "Round -1 is below 0" },
        { nameof(ShardNormShare), Bytes(0, 0, 257, 0.5), "Stamp 257 is outside 0 to 256" },
        { nameof(ShardNormShare), Bytes(0, 0, 0, -0.5), "SquaredNorm -0.5 is negative" },
        { nameof(ShardWeightsHeader), Bytes(99, 1, 0, 0, 1L, 10), "Shard 99 is outside 0 to 15" },
        { nameof(ShardWeightsHeader), Bytes(0, 0, 0, 0, 1L, 10), "Epoch 0 is below 1" },
        { nameof(ShardWeightsHeader), Bytes(0, 1, -2, 0, 1L, 10), "Round -2 is below -1" },
        { nameof(ShardWeightsHeader), Bytes(0, 1, 0, -1, 1L, 10), "Stamp -1 is outside 0 to 256" },
        { nameof(ShardWeightsHeader), Bytes(0, 1, 0, 0, -1L, 10), "Version -1 is below 0" },
        { nameof(ShardWeightsHeader), Bytes(0, 1, 0, 0, 1L, 0), "Length 0 is outside 1 to 268435455" },
        { nameof(ShardWeightsHeader), Bytes(0, 1, 0, 0, 1L, 1 << 28), "Length 268435456 is outside 1 to 268435455" },
        { nameof(ShardWeightsHeader), Bytes(0, 1, 5, 0, 1L, 10, 0, 5), "EndRound 5 is below 6" },
        { nameof(ShardWeightsHeader), Bytes(0, 1, int.MaxValue, 0, 1L, 10, 0, int.MaxValue), "EndRound 2147483647 is below 2147483648" },
        { nameof(ShardLossDecided), Bytes((object)new object[] { 256, 3, false }), "Worker 256 is outside 0 to 255" },
        { nameof(ShardLossDecided), Bytes((object)new object[] { 1, -1, true }), "Round -1 is below 0" },
        { nameof(ShardPartStart), Part(0, 2, [3, 3], 0, 1), "Epoch 0 is below 1" },
        { nameof(ShardPartStart), Part(1, 0, [], 0, 1), "Workers holds 0 worker slots, outside 1 to 256" },
        { nameof(ShardPartStart), Part(1, 257, [.. Enumerable.Repeat(1, 257)], 0, 1), "Workers holds 257 worker slots, outside 1 to 256" },
        { nameof(ShardPartStart), Part(1, 2, [3], 0, 1), "RoundsPerWorker holds 1 round counts for 2 worker slots; it needs one per slot" },
        { nameof(ShardPartStart), Part(1, 2, [3, -1], 0, 1), "RoundsPerWorker[1] -1 is below 0" },
        { nameof(ShardPartStart), Part(1, 2, [3, 3], -4, 1), "StepsPerEpoch -4 is below 0" },
        { nameof(ShardPartStart), Part(1, 2, [3, 3], 0, 0), "Shards holds 0 shards, outside 1 to 16" },
        { nameof(ShardPartStart), Part(1, 2, [3, 3], 0, 17), "Shards holds 17 shards, outside 1 to 16" },
        { nameof(ShardPartStart), Part(1, 2, [3, 3], 0, 1, part: -1), "Part -1 is below 0" },
        { nameof(ShardPartStart), Part(1, 2, [9, 0], 0, 1, part: 1, firstRound: -1), "FirstRound -1 is below 0" },
        { nameof(ShardPartStart), Part(1, 2, [9, 5], 0, 1, part: 1, firstRound: 5),
            "RoundsPerWorker[1] is 5, which does not end after the part's FirstRound 5: a slot's end round is 0 or after it" },
        { nameof(ShardPartStart), Part(1, 2, [3, 3], 0, 1, checkpointEvery: -5), "CheckpointEverySteps -5 is below 0" },
        { nameof(ShardPartStart), Part(1, 2, [3, 3], 0, 1, checkpointEvery: 5, checkpointRequest: -1), "CheckpointRequestId -1 is below 0" },
        { nameof(HostShard), Host(shard: 0, count: 0), "ShardCount 0 is outside 1 to 16" },
        { nameof(HostShard), Host(shard: 0, count: 17), "ShardCount 17 is outside 1 to 16" },
        { nameof(HostShard), Host(shard: 2, count: 2), "Shard 2 is outside 0 to 1" },
        { nameof(HostShard), Host(shard: -1, count: 2), "Shard -1 is outside 0 to 1" },
        { nameof(HostShard), Host(tokens: 33), "WorkerTokens holds 33 bytes, not 1 to 256 tokens of 32 bytes" },
        { nameof(HostShard), Host(tokens: 0), "WorkerTokens holds 0 bytes, not 1 to 256 tokens of 32 bytes" },
        { nameof(HostShard), Host(tokens: 257 * 32), "WorkerTokens holds 8224 bytes, not 1 to 256 tokens of 32 bytes" },
        { nameof(HostShard), Host(digest: 31), "StartingDigest holds 31 bytes, not 32" },
        { nameof(HostShard), Host(proof: 0), "Proof holds 0 bytes, not 32" },
        { nameof(ShardHosted), Hosted(shard: 16), "Shard 16 is outside 0 to 15" },
        { nameof(ShardHosted), Hosted(port: 0), "DataPort 0 is outside 1 to 65535" },
        { nameof(ShardHosted), Hosted(port: 65536), "DataPort 65536 is outside 1 to 65535" },
        { nameof(ShardHosted), Hosted(host: " "), "DataHost is empty" },
        { nameof(ShardHosted), Hosted(links: 0), "Links holds 0 links, outside 1 to 256" },
        { nameof(ShardHosted), Hosted(proof: 31), "Proof holds 31 bytes, not 32" },
        { nameof(ShardSliceRequest), Bytes(-1, false), "RequestId -1 is below 0" },
        { nameof(ShardSliceRequest), Bytes(-1), "RequestId -1 is below 0" }, // the short form of an earlier version: the new key's default
        { nameof(ShardSliceRequest), Bytes(1, false, -2L), "Version -2 is below -1" },
        { nameof(ShardRoundApplied), Bytes(16, 1, 0, 0, 0, 1L, 10, 1.0, 0.1, 0.001, false), "Shard 16 is outside 0 to 15" },
        { nameof(ShardRoundApplied), Bytes(0, 1, 0, -1, 0, 1L, 10, 1.0, 0.1, 0.001, false), "Round -1 is below 0" },
        { nameof(ShardRoundApplied), Bytes(0, 1, 0, 0, 300, 1L, 10, 1.0, 0.1, 0.001, false), "Stamp 300 is outside 0 to 256" },
        { nameof(ShardRoundApplied), Bytes(0, 1, 0, 0, 0, 1L, -10, 1.0, 0.1, 0.001, false), "SampleCount -10 is below 0" },
        { nameof(ShardRoundApplied), Bytes(0, 1, 0, 0, 0, 1L, 10, 1.0, 0.1, 0.001, true, double.NaN, 0.5),
            "L1Penalty NaN or L2Penalty 0.5 is not a sum of non-negative terms" },
        { nameof(ShardRoundApplied), Bytes(0, 1, 0, 0, 0, 1L, 10, 1.0, 0.1, 0.001, false, 0.0, 0.0, -0.5),
            "UpdateSeconds 0.001 or RoundSeconds -0.5 is not a finite duration of at least 0" },
        { nameof(ShardRoundApplied), Bytes(0, 1, 0, 0, 0, 1L, 10, 1.0, 0.1, double.NaN, false, 0.0, 0.0, 0.002),
            "UpdateSeconds NaN or RoundSeconds 0.002 is not a finite duration of at least 0" },
        { nameof(ShardServersAssigned), Servers(worker: 256), "Worker 256 is outside 0 to 255" },
        { nameof(ShardServersAssigned), Servers(hosts: []), "Hosts holds 0 shard endpoints, outside 1 to 16" },
        { nameof(ShardServersAssigned), Servers(hosts: [.. Enumerable.Repeat("a", 17)], ports: [.. Enumerable.Repeat(1, 17)]), "Hosts holds 17 shard endpoints, outside 1 to 16" },
        { nameof(ShardServersAssigned), Servers(hosts: ["a", "b"]), "Ports holds 1 ports for 2 hosts; it needs one per host" },
        { nameof(ShardServersAssigned), Servers(hosts: ["a", " "], ports: [1, 2]), "Hosts[1] is empty" },
        { nameof(ShardServersAssigned), Servers(hosts: ["a", "b"], ports: [1, 65536]), "Ports[1] 65536 is outside 1 to 65535" },
        { nameof(ShardServersAssigned), Servers(ports: [0]), "Ports[0] 0 is outside 1 to 65535" },
        { nameof(ShardServersAssigned), Servers(token: 31), "Token holds 31 bytes, not 32" },
        { nameof(ShardServersAssigned), Servers(digest: 0), "StartingDigest holds 0 bytes, not 32" },
        { nameof(ShardServersAssigned), Servers(proof: 0), "Proof holds 0 bytes, not 32" },
        { nameof(ShardHostRefused), Bytes(-1, "busy", new byte[32]), "Shard -1 is outside 0 to 15" },
        { nameof(ShardHostRefused), Bytes(1, "busy", new byte[31]), "Proof holds 31 bytes, not 0 or 32" },
        { nameof(ShardFailed), Bytes("job", 16, "diverged", new byte[32]), "Shard 16 is outside 0 to 15" },
        { nameof(ShardFailed), Bytes("job", 1, "diverged", Array.Empty<byte>()), "Proof holds 0 bytes, not 32" },
        { nameof(ShardFailed), Bytes("job", 1, "diverged", new byte[32], -1, 0, true, -1L), "DivergedEpoch -1 is below 0" },
        { nameof(ShardFailed), Bytes("job", 1, "diverged", new byte[32], 1, -3, true, 2L), "DivergedStep -3 is below 0" },
        { nameof(ShardFailed), Bytes("job", 1, "diverged", new byte[32], 1, 3, true, -2L), "LastGoodVersion -2 is below -1" },
        { nameof(ShardFailed), Bytes("job", 1, "failed", new byte[32], 0, 3, true, 2L), "DivergedStep, LossFinite and LastGoodVersion are set without a DivergedEpoch" },
        { nameof(ShardFailed), Bytes("job", 1, "failed", new byte[32], 0, 0, false, -1L), "DivergedStep, LossFinite and LastGoodVersion are set without a DivergedEpoch" },
        { nameof(ShardFailed), Bytes("job", 1, "diverged", new byte[32], 2, 0, true, 2L), "DivergedStep is 0 for a divergence; a step counts from 1" },
        { nameof(ShardHealthSquares), Bytes(16, 1L, new double[1], new double[1], new double[1]), "Shard 16 is outside 0 to 15" },
        { nameof(ShardHealthSquares), Bytes(1, 0L, new double[1], new double[1], new double[1]), "Step 0 is below 1" },
        { nameof(ShardHealthSquares), Bytes(1, 5L, new double[2], new double[1], new double[2]),
            "Gradient, Weight and Update hold 2, 1 and 2 values; they need one per tensor, the same number, at most 65536" },
        { nameof(ShardHealthSquares), Bytes(1, 5L, new[] { 1.0, double.NaN }, new double[2], new double[2]), "Gradient[1] NaN is not a finite sum of squares" },
        { nameof(ShardHealthSquares), Bytes(1, 5L, new double[2], new double[2], new[] { -1.0, 0 }), "Update[0] -1 is not a finite sum of squares" },
    };

    /// <summary>A ShardServersAssigned's bytes with the given slot, endpoints and lengths of token, digest and proof.</summary>
    private static byte[] Servers(int worker = 0, string[]? hosts = null, int[]? ports = null, int token = 32, int digest = 32, int proof = 32) =>
        Bytes("job", worker, hosts ?? ["a"], ports ?? [1], new byte[token], new byte[digest], new byte[proof]);

    /// <summary>A HostShard's bytes with <paramref name="tokens"/> bytes of tokens, a digest and a proof of the given lengths.</summary>
    private static byte[] Host(int shard = 1, int count = 2, int tokens = 64, int digest = 32, int proof = 32) =>
        Bytes("job", shard, count, new byte[tokens], new byte[digest], "{}", new byte[proof]);

    /// <summary>A ShardHosted's bytes with actors as paths.</summary>
    private static byte[] Hosted(int shard = 1, string host = "10.0.0.9", int port = 4055, int links = 2, int proof = 32) =>
        Bytes("job", shard, "akka://test/user/shard", host, port, Enumerable.Repeat<object>("akka://test/user/link", links).ToArray(), new byte[proof]);

    /// <summary>A ShardPartStart's bytes with <paramref name="workers"/> and <paramref name="shards"/> actors (a path each) and
    /// <paramref name="arbiter"/>'s path (nil for null).</summary>
    private static byte[] Part(int epoch, int workers, int[] rounds, int steps, int shards, string? arbiter = "akka://test/user/arbiter", int part = 0,
        int firstRound = 0, int checkpointEvery = 0, int checkpointRequest = 0) =>
        Bytes(epoch, Enumerable.Repeat<object>("akka://test/user/worker", workers).ToArray(), rounds, steps,
            Enumerable.Repeat<object>("akka://test/user/shard", shards).ToArray(), arbiter!, part, firstRound, checkpointEvery, checkpointRequest);

    private static byte[] Bytes(params object[] fields) => MessagePackSerializer.Serialize(fields);

    [Theory]
    [MemberData(nameof(OutOfRange))]
    public void A_field_out_of_its_range_is_refused_naming_the_field_and_the_range(string manifest, byte[] bytes, string problem)
    {
        var error = Refuse(bytes, manifest);
        Assert.Contains($"is out of range: {problem}.", error.Message);
    }

    /// <summary>
    /// Worker 0's whole weights after round 0 of two shards that clip by the global norm, with worker 1 lost after writing its
    /// slice to shard 0 only: the norm parts, the loss question, both answers and the decision pass between the actors of
    /// <paramref name="system"/>, and shard 0 redoes its step under stamp 1.
    /// </summary>
    private float[] LossWithClipping(ActorSystem system)
    {
        var model = new ModelOptions { InputSize = 784, Layers = [new() { Type = LayerTypes.Dense, Units = 10 }] };
        var initial = ModelFactory.StartingWeights(ModelFactory.Build(model), model, seed: 3);
        var plan = ParameterShards.Plan(initial.Layout, 2);
        var optimizer = new OptimizerOptions { LearningRate = 0.05, Momentum = 0.9, GradientClipNorm = 0.05 };
        var coordinator = CreateTestProbe(system);
        coordinator.IgnoreMessages<ShardRoundApplied>(); // the shards' step reports: the test reads the loss's decision
        var shards = plan.Select(p => system.ActorOf(ParameterShardActor.Props(p, initial, optimizer, totalEpochs: 1, coordinator.Ref))).ToArray();
        var arbiter = system.ActorOf(ShardLossArbiter.Props(shards, 2, epoch: 1, part: 0, coordinator.Ref));
        var workers = new[] { CreateTestProbe(system), CreateTestProbe(system) };
        var link = new ShardedReplicaLink(initial, shards, worker: 0);
        foreach (var shard in shards) shard.Tell(new ShardPartStart(1, [.. workers.Select(w => w.Ref)], [1, 1], 0, shards, arbiter), coordinator.Ref);
        while (!link.Offer(workers[0].ExpectMsg<ShardWeights>())) { }
        var random = new Random(5);
        float[] Report() => [.. Enumerable.Range(0, initial.Layout.WorkerReportLength).Select(_ => (float)(random.NextDouble() - 0.5))];
        var lost = link.Split(Report());
        shards[0].Tell(new GradientComputed(1, 0, 0, 1, 30, 60.5, lost[0]), workers[1].Ref);
        link.Send(1, 0, link.Version, 20, 41.25, Report(), workers[0].Ref);
        arbiter.Tell(new WorkerLost(1), coordinator.Ref);
        Assert.Equal(new LossDecision(1, 0, Keep: false), coordinator.ExpectMsg<ShardLossDecided>().Decision);
        while (!link.Offer(workers[0].ExpectMsg<ShardWeights>())) { }
        Assert.Equal((1, 1L), (link.Stamp, link.Version));
        return (float[])link.Weights.Clone();
    }

    /// <summary>
    /// With serialize-messages on, every one of the shards' messages between the actors goes through the serializer (the part's
    /// start and the decision told to the reporter too; a message
    /// that does not round-trip is dropped with an error, and the round would never close): the weights are those of the
    /// same run without it, bit for bit, so the norms and the decision crossed unchanged.
    /// </summary>
    [Fact]
    public async Task A_lost_worker_with_clipping_gives_the_same_weights_when_every_message_goes_through_the_serializer()
    {
        var verified = ActorSystem.Create("verified", AkkaSettings.Serialization(verifyEveryMessage: true)
            .WithFallback(Akka.Configuration.ConfigurationFactory.ParseString("akka.test.single-expect-default = 30s")));
        try
        {
            var plain = LossWithClipping(Sys);
            var serialized = LossWithClipping(verified);
            Assert.Equal(plain.Select(BitConverter.SingleToInt32Bits), serialized.Select(BitConverter.SingleToInt32Bits));
        }
        finally
        {
            await verified.Terminate().WaitAsync(TimeSpan.FromSeconds(10));
        }
    }

    [Fact]
    public void The_shards_messages_at_the_ends_of_their_ranges_are_accepted()
    {
        Assert.Equal(255, RoundTrip(new ShardLossQuery(255, 1, 0)).Worker);
        Assert.Equal(0, RoundTrip(new ShardLossQuery(0, 1, 0)).Worker);
        Assert.Equal(new ShardLossQuery(0, int.MaxValue, int.MaxValue), RoundTrip(new ShardLossQuery(0, int.MaxValue, int.MaxValue)));
        Assert.Equal(new ShardWeightsHeader(15, 1, -1, 256, 0, (1 << 28) - 1), RoundTrip(new ShardWeightsHeader(15, 1, -1, 256, 0, (1 << 28) - 1)));
        Assert.Equal(new LossDecision(255, 0, true), RoundTrip(new ShardLossDecision(new LossDecision(255, 0, true), 1, 0)).Decision);
        Assert.Equal((int.MaxValue, int.MaxValue), RoundTrip(new ShardLossDecision(new LossDecision(0, 0, true), int.MaxValue, int.MaxValue)) is var d ? (d.Epoch, d.Part) : default);
        Assert.Equal(new LossDecision(0, int.MaxValue, false), RoundTrip(new ShardLossDecided(new LossDecision(0, int.MaxValue, false))).Decision);
        var widest = RoundTrip(new ShardPartStart(1, [.. Enumerable.Repeat(TestActor, 256)], [.. Enumerable.Repeat(0, 256)], 0, [.. Enumerable.Repeat(TestActor, 16)], TestActor, int.MaxValue));
        Assert.Equal((256, 256, 16, 0, int.MaxValue), (widest.Workers.Length, widest.RoundsPerWorker.Length, widest.Shards.Length, widest.StepsPerEpoch, widest.Part));
    }
}
