using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Akka.Actor;
using Akka.Event;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Security;
using DistTrain.Cluster.Training;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

/// <summary>
/// The data plane of shards that run on their own, over real loopback sockets in one process: each
/// <see cref="ParameterShardActor"/> behind its own <see cref="DataPlaneListener"/> and <see cref="ShardDataPlane"/>, each
/// worker with one <see cref="ParameterServerLink"/> per shard under a <see cref="ShardedReplicaLink"/>, computing real
/// gradients (<see cref="ParameterShardActorTests.Replica"/>). Every round's weights are checked bit for bit against one
/// <see cref="ParameterServer"/>; a hello for another shard, run, shard count or slice length or with another worker slot's token, a slice of another length and
/// truncated frames are refused with the reason, at both ends where the peer can still read it, and nothing hangs.
/// </summary>
public sealed class ShardDataPlaneTests : TestKit
{
    /// <summary>The shards report every round to their owner, the test actor here; the tests read other messages.</summary>
    public ShardDataPlaneTests() : base(Akka.Configuration.ConfigurationFactory.ParseString("akka.loglevel = INFO").WithFallback(TestTimeouts.TestKitConfig)) =>
        IgnoreMessages<ShardRoundApplied>();

    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30); // a hang guard on a loaded machine, not a speed limit
    private readonly OwnedResources _owned = new("disttrain-shard-dataplane-");

    protected override void Dispose(bool disposing)
    {
        if (disposing) _owned.Dispose();
        base.Dispose(disposing);
    }

    /// <summary>A probe that gets every line logged at INFO or above.</summary>
    private TestProbe LogProbe()
    {
        var log = CreateTestProbe();
        Sys.EventStream.Subscribe(log.Ref, typeof(Info));
        Sys.EventStream.Subscribe(log.Ref, typeof(Warning));
        Sys.EventStream.Subscribe(log.Ref, typeof(Error));
        return log;
    }

    private static string FishLog(TestProbe log, string contains) =>
        log.FishForMessage<LogEvent>(e => e.Message.ToString()!.Contains(contains, StringComparison.Ordinal), Wait, $"a log line containing '{contains}'")
            .Message.ToString()!;

    /// <summary>One shard node: its shard actor, its data plane (the owner of its listener) and the listener's port.</summary>
    private sealed record ShardNode(IActorRef Shard, IActorRef DataPlane, int Port, IActorRef[] Links);

    /// <summary>A fresh data-plane token for each of <paramref name="workers"/> worker slots, slot w's at index w.</summary>
    internal static byte[][] Tokens(int workers) => [.. Enumerable.Range(0, workers).Select(_ => DataPlaneHello.NewToken())];

    private ShardNode[] StartShards(ParameterVector initial, int shards, byte[][] tokens, ClusterCertificates? certificates)
    {
        var plan = ParameterShards.Plan(initial.Layout, shards);
        var nodes = new ShardNode[shards];
        for (var k = 0; k < shards; k++)
        {
            var shard = Sys.ActorOf(ParameterShardActor.Props(plan[k], initial, ParameterShardActorTests.Sgd(), totalEpochs: 1, TestActor));
            var plane = Sys.ActorOf(ShardDataPlane.Props(plan[k], shards, tokens));
            var listener = _owned.Own(DataPlaneListener.Start(0, certificates));
            listener.Attach(plane);
            plane.Tell(new ShardDataPlane.GetLinks(), TestActor);
            nodes[k] = new ShardNode(shard, plane, listener.Port, ExpectMsg<ShardDataPlane.Links>(Wait).ByWorker);
        }
        return nodes;
    }

    /// <summary>
    /// K shards behind their own listeners and <paramref name="workers"/> workers, each with K connections, over
    /// <see cref="ParameterShardActorTests.Rounds"/> rounds: every worker's whole weights after each round (index 0: the
    /// start), as its <see cref="ShardedReplicaLink"/> put them together from the frames it received.
    /// </summary>
    private List<float[]>[] OverTcp(int shards, int workers, bool tls)
    {
        var replica = new ParameterShardActorTests.Replica();
        var initial = ParameterShardActorTests.Replica.Initial();
        var tokens = Tokens(workers);
        var (shardIdentity, workerIdentity) = _owned.Certificates(tls, "shard");
        var nodes = StartShards(initial, shards, tokens, shardIdentity);
        var plan = ParameterShards.Plan(initial.Layout, shards);
        var probes = Enumerable.Range(0, workers).Select(_ => CreateTestProbe()).ToArray();
        var connections = probes.Select((probe, w) => plan.Select(p =>
            Sys.ActorOf(ParameterServerLink.ForShard("127.0.0.1", nodes[p.Index].Port, w, probe.Ref, p, shards, tokens[w], workerIdentity))).ToArray()).ToArray();
        var links = connections.Select((c, w) => new ShardedReplicaLink(initial, c, w)).ToArray();
        foreach (var node in nodes)
            node.Shard.Tell(new ShardPartStart(1, node.Links, [.. probes.Select(_ => ParameterShardActorTests.Rounds)], 0, [.. nodes.Select(n => n.Shard)], ActorRefs.Nobody));
        var histories = probes.Select(_ => new List<float[]>()).ToArray();
        void Assemble(int w)
        {
            while (!links[w].Offer(probes[w].ExpectMsg<ShardWeights>(Wait))) { }
            histories[w].Add((float[])links[w].Weights.Clone());
        }
        for (var w = 0; w < workers; w++) Assemble(w);
        for (var round = 0; round < ParameterShardActorTests.Rounds; round++)
        {
            for (var w = workers - 1; w >= 0; w--)
            {
                var (report, samples, lossSum) = replica.Compute(links[w].Weights, w, round);
                links[w].Send(1, round, links[w].Version, samples, lossSum, report, probes[w].Ref);
            }
            for (var w = 0; w < workers; w++) Assemble(w);
        }
        foreach (var actor in connections.SelectMany(c => c).Concat(nodes.SelectMany(n => new[] { n.Shard, n.DataPlane }))) Sys.Stop(actor);
        return histories;
    }

    [Theory]
    [InlineData(2, false)]
    [InlineData(3, false)]
    [InlineData(2, true)]
    public void Shards_behind_their_own_listeners_give_one_servers_weights_bit_for_bit_over_tcp(int shards, bool tls)
    {
        const int workers = 2;
        var expected = ParameterShardActorTests.Reference(this, ParameterShardActorTests.Sgd(), workers, serverShards: 1, loss: null, shards);
        var received = TensorFrame.BytesReceived;
        var actual = OverTcp(shards, workers, tls);
        received = TensorFrame.BytesReceived - received;
        Assert.Equal(workers, actual.Length);
        foreach (var history in actual) ParameterShardActorTests.AssertSameWeights(expected, history, $"{shards} shards over TCP");
        for (var round = 1; round <= ParameterShardActorTests.Rounds; round++) Assert.NotEqual(expected[round - 1], expected[round]); // it trains
        // The tensors went through the sockets: every round's slices up and results down, for every worker (at least the floats,
        // beside the headers). Both ends are in this process, so each is counted once, by its reader.
        var model = (long)ParameterShardActorTests.Replica.Initial().Layout.WorkerReportLength * sizeof(float);
        Assert.True(received >= workers * model * (2L * ParameterShardActorTests.Rounds + 1),
            $"{received:N0} bytes read from data-plane sockets; the run moves at least {workers * model * (2L * ParameterShardActorTests.Rounds + 1):N0}");
    }

    public static TheoryData<string, string> BadHellos => new()
    {
        { "another shard", "the hello is for shard 0, and this node serves shard 1: connect to shard 0's data port" },
        { "another run", "the hello does not carry a token of this run (a worker of another run, or of a run that has ended)" },
        { "another slot's token", "it claims worker slot 1 with another worker slot's token: each worker's hello carries its own slot's token, " +
            "and only the worker of that slot was given it (check the worker's index)" },
        { "another shard count", "the worker cuts the model into 3 shards, and this run has 2: every worker and shard of a run must use the same shard count" },
        { "another slice length", "the worker announces a slice of {0} values, and shard 1's slice [{1}, {2}) has {3}: the worker and the shard cut the model differently (another model or shard count)" },
        { "a slot outside the run", "it claims worker slot 2, and this run's slots are 0 to 1" },
    };

    /// <summary>
    /// A worker whose hello does not fit the shard node is refused: the node logs the problem and sends it to the worker,
    /// whose link logs it and stops. The slot stays free, and the right worker then connects and gets the shard's weights (the
    /// slot claimed, or slot 0 for a slot outside the run). A worker of the run that claims another worker's slot with its own
    /// token is refused like a stranger; no refusal quotes a token.
    /// </summary>
    [Theory]
    [MemberData(nameof(BadHellos))]
    public void A_hello_that_does_not_fit_the_shard_is_refused_with_the_problem_at_both_ends_and_the_slot_stays_free(string what, string problem)
    {
        var initial = ParameterShardActorTests.Replica.Initial();
        var tokens = Tokens(2);
        var nodes = StartShards(initial, shards: 2, tokens, null);
        var plan = ParameterShards.Plan(initial.Layout, 2);
        var node = nodes[1];
        problem = string.Format(problem, plan[1].Length - 1, plan[1].Start, plan[1].End, plan[1].Length);
        var (slot, shard, count, token) = what switch
        {
            "another shard" => (0, plan[0], 2, tokens[0]),
            "another run" => (0, plan[1], 2, DataPlaneHello.NewToken()),
            "another slot's token" => (1, plan[1], 2, tokens[0]),
            "another shard count" => (0, ParameterShards.Plan(initial.Layout, 3)[1], 3, tokens[0]),
            "another slice length" => (0, plan[1] with { End = plan[1].End - 1 }, 2, tokens[0]),
            _ => (2, plan[1], 2, tokens[0]),
        };
        var log = LogProbe();
        var worker = CreateTestProbe();
        var link = Sys.ActorOf(ParameterServerLink.ForShard("127.0.0.1", node.Port, slot, worker.Ref, shard, count, token, null));
        Watch(link);

        var refused = FishLog(log, "Shard 1: data plane: refused a connection from");
        Assert.EndsWith($": {problem}; closed.", refused);
        var told = FishLog(log, $"Worker {slot}: data plane to shard {shard.Index} closed:");
        Assert.Contains($" refused this connection: shard 1 of 2: {problem}.", told);
        foreach (var slotToken in tokens) Assert.DoesNotContain(Convert.ToHexString(slotToken[..8]), refused + told, StringComparison.OrdinalIgnoreCase);
        ExpectTerminated(link, Wait);

        // The slot is not taken: its worker with the right hello connects and gets the shard's starting weights.
        var rightSlot = slot < tokens.Length ? slot : 0;
        var right = CreateTestProbe();
        Sys.ActorOf(ParameterServerLink.ForShard("127.0.0.1", node.Port, rightSlot, right.Ref, plan[1], 2, tokens[rightSlot], null));
        node.Shard.Tell(new ShardPartStart(1, node.Links, [1, 1], 0, [.. nodes.Select(n => n.Shard)], ActorRefs.Nobody));
        var start = right.ExpectMsg<ShardWeights>(Wait);
        Assert.Equal((1, -1, 0L), (start.Shard, start.Round, start.Version));
        Assert.Equal(initial.Values.AsSpan(plan[1].Start, plan[1].Length).ToArray(), start.Weights);
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // the refused worker got nothing
    }

    /// <summary>A worker's hello to one parameter server, at a shard node: refused with the fix in the node's log.</summary>
    [Fact]
    public void A_hello_to_a_parameter_server_at_a_shard_node_is_refused_naming_the_fix()
    {
        var initial = ParameterShardActorTests.Replica.Initial();
        var nodes = StartShards(initial, shards: 2, Tokens(2), null);
        var log = LogProbe();
        var worker = CreateTestProbe();
        var link = Sys.ActorOf(ParameterServerLink.Props("127.0.0.1", nodes[0].Port, 0, worker.Ref, initial.Layout.TotalLength, DataPlaneHello.NewToken(), null));
        Watch(link);
        Assert.EndsWith(": the hello is a worker's to a parameter server, and this is the data plane of shard 0 of 2: connect to the parameter server's data port; closed.",
            FishLog(log, "Shard 0: data plane: refused a connection from"));
        ExpectTerminated(link, Wait);
    }

    /// <summary>
    /// A slice of another length than the shard's: the shard node refuses its header before reading the floats, sends the
    /// worker the reason, and closes that worker's connection; the shard itself keeps running (it still answers).
    /// </summary>
    [Fact]
    public void A_slice_of_another_length_is_refused_with_the_reason_to_the_worker_and_the_shard_runs_on()
    {
        var initial = ParameterShardActorTests.Replica.Initial();
        var tokens = Tokens(1);
        var nodes = StartShards(initial, shards: 2, tokens, null);
        var plan = ParameterShards.Plan(initial.Layout, 2);
        var worker = CreateTestProbe();
        var link = Sys.ActorOf(ParameterServerLink.ForShard("127.0.0.1", nodes[0].Port, 0, worker.Ref, plan[0], 2, tokens[0], null));
        Watch(link);
        nodes[0].Shard.Tell(new ShardPartStart(1, nodes[0].Links, [2], 0, [.. nodes.Select(n => n.Shard)], TestActor));
        Assert.Equal(-1, worker.ExpectMsg<ShardWeights>(Wait).Round);
        var log = LogProbe();

        link.Tell(new GradientComputed(1, 0, 0, 0, 10, 1, new float[plan[0].Length + 5]), worker.Ref);

        var problem = $"announced a gradient of {plan[0].Length + 5} floats; shard 0's slice [0, {plan[0].End}) has {plan[0].Length}. " +
            "Refused before allocating, the connection is closed: the worker and the shard cut the model differently (another model or shard count).";
        Assert.EndsWith(problem, FishLog(log, "Shard 0: worker 0's data plane closed:"));
        Assert.Contains(" refused this connection: data plane: ", FishLog(log, "Worker 0: data plane to shard 0 closed:"));
        ExpectTerminated(link, Wait);
        nodes[0].Shard.Tell(new ShardLossQuery(0, 1, 0), TestActor);
        var answer = ExpectMsg<ShardLossAnswer>(Wait);
        Assert.Equal((0, 0, 0), (answer.Shard, answer.Answer.Worker, answer.Answer.OpenRound)); // alive, round 0 still open
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    private static byte[] Bytes(TensorFrame.Header header, int values)
    {
        var bytes = new byte[TensorFrame.HeaderSize + values * sizeof(float)];
        MemoryMarshal.Write(bytes, in header);
        return bytes;
    }

    private static byte[] Bytes(DataPlaneHello hello)
    {
        using var bytes = new MemoryStream();
        hello.Write(bytes);
        return bytes.ToArray();
    }

    /// <summary>
    /// A worker's frame cut short (a header, or a slice's floats, and then the worker's end closes): the shard node logs
    /// that the worker closed the connection, stops only that worker's link (the peer, which can still read, gets the reason
    /// as a refusal) and the shard runs on.
    /// </summary>
    [Theory]
    [InlineData(30, 0)]
    [InlineData(64, 100)]
    public void A_truncated_frame_from_a_worker_closes_only_its_connection_with_the_reason(int headerBytes, int floats)
    {
        var initial = ParameterShardActorTests.Replica.Initial();
        var tokens = Tokens(1);
        var nodes = StartShards(initial, shards: 2, tokens, null);
        var plan = ParameterShards.Plan(initial.Layout, 2);
        var log = LogProbe();
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveTimeout = (int)Wait.TotalMilliseconds };
        socket.Connect(IPAddress.Loopback, nodes[1].Port);
        socket.Send(Bytes(new DataPlaneHello(0, plan[1].Length, tokens[0], 1, 2)));
        nodes[1].Shard.Tell(new ShardPartStart(1, nodes[1].Links, [2], 0, [.. nodes.Select(n => n.Shard)], TestActor));
        var start = new byte[TensorFrame.HeaderSize + plan[1].Length * sizeof(float)];
        Receive(socket, start);
        Assert.Equal(TensorFrame.ShardWeightsType, MemoryMarshal.Read<TensorFrame.Header>(start).Type);

        var slice = new GradientComputed(1, 0, 0, 0, 10, 1, new float[plan[1].Length]);
        socket.Send(Bytes(TensorFrame.For(slice), floats).AsSpan(0, headerBytes + floats * sizeof(float)));
        socket.Shutdown(SocketShutdown.Send);

        Assert.EndsWith("closed the connection.", FishLog(log, "Shard 1: worker 0's data plane closed: data plane: "));
        Assert.EndsWith("closed the connection.", ReadRefusal(socket));
        Assert.Equal(0, socket.Receive(new byte[1])); // then the node closes its end
        nodes[1].Shard.Tell(new ShardLossQuery(0, 1, 0), TestActor);
        Assert.Equal(1, ExpectMsg<ShardLossAnswer>(Wait).Shard);
    }

    /// <summary>Reads a refusal frame from <paramref name="socket"/> (checked to be one) and returns its reason.</summary>
    private static string ReadRefusal(Socket socket)
    {
        var refusal = new byte[TensorFrame.HeaderSize];
        Receive(socket, refusal);
        var header = MemoryMarshal.Read<TensorFrame.Header>(refusal);
        Assert.Equal(TensorFrame.RefusalType, header.Type);
        var text = new byte[header.PayloadBytes];
        Receive(socket, text);
        return Encoding.UTF8.GetString(text);
    }

    private static void Receive(Socket socket, Span<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            var read = socket.Receive(bytes);
            Assert.True(read > 0, "the connection closed early");
            bytes = bytes[read..];
        }
    }

    public static TheoryData<string, string> BadShardFrames => new()
    {
        { "truncated header", "closed the connection." },
        { "truncated slice", "closed the connection." },
        { "another length", "announced a shard weights of 7 floats; shard 0's slice [0, 5) has 5. Refused before allocating" },
        { "another shard's", "sent shard 1's weights on the connection to shard 0; the connection is closed." },
        { "stamp out of range", "sent shard weights whose Stamp 999 is outside 0 to 256; the connection is closed." },
        { "part out of range", "sent shard weights whose Part -1 is" },
        { "a refusal without text", "sent a refusal of 0 floats and 0 bytes of text" },
    };

    /// <summary>
    /// A shard node that sends a worker a bad frame (cut short, of another length, of another shard, with a field out of its
    /// range, a malformed refusal): the worker's link stops with the reason in its log, delivers nothing, and does not hang.
    /// </summary>
    [Theory]
    [MemberData(nameof(BadShardFrames))]
    public void A_bad_frame_from_a_shard_stops_the_workers_link_with_the_reason(string what, string reason)
    {
        var shard = new ParameterShard(0, 0, 5, 5);
        using var server = new TcpListener(IPAddress.Loopback, 0);
        server.Start();
        var log = LogProbe();
        var worker = CreateTestProbe();
        var link = Sys.ActorOf(ParameterServerLink.ForShard("127.0.0.1", ((IPEndPoint)server.LocalEndpoint).Port, 0, worker.Ref, shard, 2,
            DataPlaneHello.NewToken(), null));
        Watch(link);
        using var accepted = server.AcceptSocket();
        Receive(accepted, new byte[DataPlaneHello.Size]);
        var good = new ShardWeights(0, 1, -1, 0, 0, new float[5]);
        var header = TensorFrame.For(good);
        var bytes = what switch
        {
            "truncated header" => Bytes(header, 0)[..40],
            "truncated slice" => Bytes(header, 5)[..(TensorFrame.HeaderSize + 8)],
            "another length" => Bytes(header with { Count = 7 }, 7),
            "another shard's" => Bytes(header with { WorkerIndex = 1 }, 5),
            "stamp out of range" => Bytes(header with { EndRound = 999 }, 5),
            "part out of range" => Bytes(header with { Part = -1 }, 5),
            _ => Bytes(new TensorFrame.Header { Magic = TensorFrame.Magic, Type = TensorFrame.RefusalType, Version = TensorFrame.ProtocolVersion }, 0),
        };
        accepted.Send(bytes);
        if (what.StartsWith("truncated", StringComparison.Ordinal)) accepted.Shutdown(SocketShutdown.Send);
        Assert.Contains(reason, FishLog(log, "Worker 0: data plane to shard 0 closed: data plane: 127.0.0.1:"));
        ExpectTerminated(link, Wait);
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    /// <summary>A shard's result's frame header carries every field of its <see cref="ShardWeightsHeader"/> (the shard in the worker
    /// field, the part in the part field, the stamp in the end-round field, the part's end round in the sample-count field) and
    /// reads back as written: an end cut by Training:KeepGlobalBatch, and the uncut end.</summary>
    [Theory]
    [InlineData(9)]
    [InlineData(int.MaxValue)]
    public void A_shard_weights_frame_header_carries_shard_epoch_round_stamp_version_length_part_and_end(int endRound)
    {
        var result = new ShardWeights(2, 3, 4, 5, 6, new float[7], Part: 8, EndRound: endRound);
        var header = TensorFrame.For(result);
        Assert.Equal((TensorFrame.ShardWeightsType, endRound, 0.0), (header.Type, header.SampleCount, header.LossSum));
        var bytes = Bytes(header, 0);
        var parsed = TensorFrame.ParseHeader(bytes, TensorFrame.ShardWeightsType, 7, "a shard", expectedCountIs: "shard 2's slice [10, 17)");
        Assert.Equal(new ShardWeightsHeader(2, 3, 4, 5, 6, 7, 8, endRound), TensorFrame.ShardWeightsOf(parsed));
        Assert.Equal(result.Header, TensorFrame.ShardWeightsOf(parsed));
    }

    /// <summary>A hello to one parameter server is the bytes it was before shards had a data plane (bytes 5 to 7 zero); a
    /// shard's hello carries the shard count and index there, and reads back as written.</summary>
    [Fact]
    public async Task A_shard_hello_names_the_shard_and_count_and_a_parameter_servers_hello_is_unchanged()
    {
        var token = DataPlaneHello.NewToken();
        var plain = Bytes(new DataPlaneHello(3, 1000, token));
        Assert.Equal(new byte[3], plain[5..8]);
        Assert.Equal([0x44, 0x54, 0x48, 0x53, 1], plain[..5]);
        var read = DataPlaneHello.Read(new MemoryStream(plain));
        Assert.Equal((3, 1000, -1, 0, false), (read.WorkerIndex, read.ParameterCount, read.Shard, read.ShardCount, read.ToShard));

        var sharded = Bytes(new DataPlaneHello(3, 500, token, 2, 3));
        Assert.Equal(new byte[] { 3, 2, 0 }, sharded[5..8]);
        read = DataPlaneHello.Read(new MemoryStream(sharded));
        Assert.Equal((3, 500, 2, 3, true), (read.WorkerIndex, read.ParameterCount, read.Shard, read.ShardCount, read.ToShard));
        Assert.Equal(token, read.Token);

        Assert.Throws<ArgumentOutOfRangeException>(() => Bytes(new DataPlaneHello(0, 1, token, 3, 3)));
        Assert.Throws<ArgumentOutOfRangeException>(() => Bytes(new DataPlaneHello(0, 1, token, 0, ParameterShards.MaxShards + 1)));
    }

    /// <summary>
    /// Refused peers that keep their end open linger (up to <see cref="DataPlaneConnection.RefusalLingerSeconds"/> each, so that
    /// they read the refusal), but at most <see cref="DataPlaneConnection.MaxLingeringRefusals"/> at once: of 8 more refused
    /// connections than that, opened one after another, every one gets its refusal, the lingering ones still read and drop what the peer
    /// sends, and at least 8 are closed as soon as their refusal is written, so the peer's writes are reset (a few more if other
    /// tests' refused connections still linger in this process).
    /// </summary>
    [Fact]
    public void Refused_connections_beyond_the_linger_cap_are_closed_at_once_after_their_refusal()
    {
        var initial = ParameterShardActorTests.Replica.Initial();
        var nodes = StartShards(initial, shards: 1, Tokens(1), null);
        var plan = ParameterShards.Plan(initial.Layout, 1);
        var hello = Bytes(new DataPlaneHello(0, plan[0].Length, DataPlaneHello.NewToken(), 0, 1)); // a token of no run
        var sockets = new List<Socket>();
        try
        {
            // One after another, each refusal read before the next connects: at once, more than the listener's 64 pending
            // handshakes would be closed unread.
            for (var i = 0; i < DataPlaneConnection.MaxLingeringRefusals + 8; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveTimeout = (int)Wait.TotalMilliseconds };
                sockets.Add(socket);
                socket.Connect(IPAddress.Loopback, nodes[0].Port);
                socket.Send(hello);
                Assert.Contains("the hello does not carry a token of this run", ReadRefusal(socket));
            }
            // The node has shut its sending side on every one. A lingering connection still reads and drops what the peer
            // sends; one closed at once answers it with a reset, and the peer's next write fails.
            var junk = new byte[16];
            foreach (var socket in sockets) socket.Send(junk);
            Thread.Sleep(300);
            var closed = sockets.Count(socket =>
            {
                try
                {
                    socket.Send(junk);
                    socket.Send(junk);
                    return false;
                }
                catch (SocketException)
                {
                    return true;
                }
            });
            Assert.True(closed >= 8, $"{closed} of {sockets.Count} refused connections were closed at once; at least 8 are beyond the cap");
            Assert.True(closed <= 8 + 16, $"{closed} of {sockets.Count} refused connections were closed at once: hardly any lingers");
        }
        finally
        {
            foreach (var socket in sockets) socket.Dispose();
        }
    }
}
