using Akka.Actor;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.DataPlane;

namespace DistTrain.Tests;

/// <summary>Data-plane frame headers are checked before anything is allocated for their floats, and refusals name the peer.</summary>
public class DataPlaneFrameTests() : TestKit("akka.loglevel = INFO")
{
    private const string Peer = "192.0.2.7:40411";

    private static byte[] Bytes(TensorFrame.Header header)
    {
        var bytes = new byte[TensorFrame.HeaderSize];
        MemoryMarshal.Write(bytes, in header);
        return bytes;
    }

    private static TensorFrame.Header Gradient(int count, int sampleCount = 16) => new()
    {
        Magic = TensorFrame.Magic, Version = TensorFrame.ProtocolVersion, Type = TensorFrame.GradientType, Epoch = 1, Round = 2,
        WeightsVersion = 3, WorkerIndex = 1, SampleCount = sampleCount, LossSum = 4.5, Count = count,
    };

    private static string Refusal(TensorFrame.Header header, byte expectedType = TensorFrame.GradientType, int expectedCount = 1000)
    {
        var error = Assert.Throws<IOException>(() => TensorFrame.ParseHeader(Bytes(header), expectedType, expectedCount, Peer));
        Assert.Contains(Peer, error.Message);
        return error.Message;
    }

    /// <summary>
    /// A watched worker link made from <paramref name="props"/>, attached to one end of a loopback connection as the
    /// listener hands it over after the hello (plain TCP, as with Cluster:Tls false); the other end is returned for the
    /// test to play the worker on.
    /// </summary>
    private (IActorRef Link, Socket Client) AttachedLink(Props props)
    {
        var (client, server) = LoopbackSockets.Pair();
        var link = Sys.ActorOf(props);
        Watch(link);
        link.Tell(new WorkerLink.Attach(new DataPlaneConnection(server, new NetworkStream(server, ownsSocket: false), server.RemoteEndPoint!.ToString()!)), TestActor);
        return (link, client);
    }

    /// <summary>
    /// A peer that closes its socket with bytes of ours unread resets the connection (TCP RST) instead of ending it, which
    /// timing alone tells from a plain close; either reads "closed the connection", so a worker's error about a lost shard
    /// says the same whichever came. The reset is forced here with a zero linger.
    /// </summary>
    [Theory]
    [InlineData(false, "data plane: 192.0.2.7:40411 closed the connection.")]
    [InlineData(true, "data plane: 192.0.2.7:40411 closed the connection (reset).")]
    public void A_connection_closed_or_reset_by_the_peer_reads_closed_the_connection(bool reset, string expected)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        client.Connect(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
        using (var server = listener.AcceptSocket())
        {
            if (reset)
            {
                client.Send(new byte[64]); // unread by the server when it closes, as a frame the peer had not read yet
                server.LingerState = new LingerOption(true, 0);
            }
            server.Close();
        }
        using var stream = new NetworkStream(client);
        var error = Assert.Throws<IOException>(() => TensorFrame.ReadBytes(stream, new byte[16], Peer));
        Assert.Equal(expected, error.Message);
    }

    [Fact]
    public void A_header_of_the_expected_type_and_the_models_length_is_accepted()
    {
        var header = TensorFrame.ParseHeader(Bytes(Gradient(1000)), TensorFrame.GradientType, 1000, Peer);
        Assert.Equal((1, 2, 3L, 1, 16, 4.5, 1000), (header.Epoch, header.Round, header.WeightsVersion, header.WorkerIndex, header.SampleCount, header.LossSum, header.Count));
    }

    [Fact]
    public void Counts_above_the_maximum_other_than_the_models_or_negative_are_refused()
    {
        Assert.Contains("268435456 floats (allowed 0 to 268435455)", Refusal(Gradient(268_435_456)));
        Assert.Contains("268435456 floats (allowed", Refusal(Gradient(268_435_456), expectedCount: 268_435_456));
        Assert.Contains("of 999 floats; this model's tensors have 1000", Refusal(Gradient(999)));
        Assert.Contains("-1 floats", Refusal(Gradient(-1)));
        Assert.Contains("sample count -16", Refusal(Gradient(1000, sampleCount: -16)));
        Assert.Contains("of 5 floats; this model's tensors have 4", Refusal(Gradient(5) with { Type = TensorFrame.WeightsType }, TensorFrame.WeightsType, 4));
    }

    [Fact]
    public void Bad_magic_version_or_type_are_refused()
    {
        Assert.Contains("0x54544547, not DistTrain's", Refusal(Gradient(1000) with { Magic = 0x54544547 }));
        Assert.Contains("protocol version 9", Refusal(Gradient(1000) with { Version = 9 }));
        Assert.Contains("sent a weights frame where a gradient frame belongs", Refusal(Gradient(1000) with { Type = TensorFrame.WeightsType }));
        Assert.Contains("type-77", Refusal(Gradient(1000) with { Type = 77 }));
        Assert.Contains("3-byte frame header", Assert.Throws<IOException>(() => TensorFrame.ParseHeader([1, 2, 3], 2, 0, Peer)).Message);
    }

    [Fact]
    public void A_compressed_gradient_must_announce_exactly_the_encoded_length_of_this_nodes_setting_and_other_frames_none()
    {
        var compressed = Gradient(1000) with { Type = TensorFrame.CompressedGradientType, PayloadBytes = 809 };
        Assert.Equal(809, TensorFrame.ParseHeader(Bytes(compressed), TensorFrame.CompressedGradientType, 1000, Peer, expectedPayloadBytes: 809).PayloadBytes);
        var other = Assert.Throws<IOException>(() => TensorFrame.ParseHeader(Bytes(compressed with { PayloadBytes = 1 << 30 }),
            TensorFrame.CompressedGradientType, 1000, Peer, expectedPayloadBytes: 809)).Message;
        Assert.Contains("with 1073741824 encoded bytes where 809 belong", other);
        Assert.Contains("every node must use the same Cluster:Compression, Cluster:TopKRatio and Cluster:TopKScope", other);
        Assert.Contains("with 5 encoded bytes where 0 belong", Refusal(Gradient(1000) with { PayloadBytes = 5 }));
        // A compressed frame where float32 gradients belong (or the reverse) names the setting to align.
        Assert.Contains("sent a compressed gradient frame where a gradient frame belongs; the connection is closed. Every node must use the same Cluster:Compression",
            Refusal(compressed));
    }

    [Fact]
    public void A_compressed_gradient_with_a_malformed_encoding_stops_the_link_naming_the_problem_and_delivers_nothing()
    {
        var settings = new Core.Compression.GradientCompressionSettings(Core.Compression.GradientCompression.TopK, TopKRatio: 0.2);
        var (link, client) = AttachedLink(WorkerLink.Props(0, TestActor, reportLength: 10, settings, trainableTensorLengths: [10]));
        using var _ = client;
        link.Tell(new Cluster.Protocol.WeightsUpdated(1, 0, 5, new float[10]), TestActor); // gradients now go to this test
        // A TopK message of the right size (k = 2 of 10) whose indices are not ascending.
        var message = new byte[Core.Compression.GradientEncoder.EncodedBytes(settings, 10)];
        message[0] = (byte)Core.Compression.GradientCompression.TopK;
        BitConverter.TryWriteBytes(message.AsSpan(1), 10);
        BitConverter.TryWriteBytes(message.AsSpan(5), 2);
        BitConverter.TryWriteBytes(message.AsSpan(9), 7);
        BitConverter.TryWriteBytes(message.AsSpan(13), 3);
        var header = Gradient(10) with { Type = TensorFrame.CompressedGradientType, PayloadBytes = message.Length };
        EventFilter.Warning(contains: "its TopK index 3 is out of range or not ascending (after 7").ExpectOne(() =>
        {
            client.Send([.. Bytes(header), .. message]);
            ExpectTerminated(link, TimeSpan.FromSeconds(10));
        });
        ExpectNoMsg(TimeSpan.FromMilliseconds(100)); // nothing reached the parameter server
    }

    /// <summary>
    /// A shard node's link under Cluster:Compression takes a worker's cuts of its slice (<see cref="Core.Compression.GradientMessageSlice"/>)
    /// of the run's kind, each of the size its frame announces (exactly the slice's share for Float16, up to the most for TopK),
    /// and delivers the decoded slice with the floats after the trainable part as sent. A frame announcing another size (for
    /// TopK: more than the whole message's picks could take, or less than a message's header) is refused before anything is
    /// read, naming the slice; a cut of another kind is refused naming both kinds; either way the link stops.
    /// </summary>
    [Theory]
    [InlineData(Core.Compression.GradientCompression.Float16, "a larger cut")]
    [InlineData(Core.Compression.GradientCompression.Float16, "another kind")]
    [InlineData(Core.Compression.GradientCompression.TopK, "a larger cut")]
    [InlineData(Core.Compression.GradientCompression.TopK, "shorter than a header")]
    [InlineData(Core.Compression.GradientCompression.TopK, "another kind")]
    public void A_shard_nodes_link_takes_cuts_of_its_slice_of_the_runs_kind_and_size_and_refuses_others(Core.Compression.GradientCompression kind, string refused)
    {
        // Shard 1 of a model of 32 trainable values and 8 running statistics: [16, 40), its first 16 values trainable. TopK
        // 25% of 32 picks 8 in all, so a cut of 16 holds at most 8: 9 + 8 x 8 = 73 bytes.
        var shard = new Cluster.Training.ParameterShard(1, 16, 40, 32);
        var settings = new Core.Compression.GradientCompressionSettings(kind, TopKRatio: 0.25);
        var slices = new CompressedSlices(kind, kind == Core.Compression.GradientCompression.TopK ? 8 : 0);
        var (link, client) = AttachedLink(WorkerLink.ForShard(0, shard, slices));
        using var _ = client;
        link.Tell(new Cluster.Protocol.ShardWeights(1, 1, -1, 0, 0, new float[24]), TestActor); // the worker's slices now come to this test
        // Once its frame reaches the worker's end, the link has taken this test as the shard (a slice read before would go nowhere).
        var frame = new byte[TensorFrame.HeaderSize + 24 * sizeof(float)];
        for (var read = 0; read < frame.Length;) read += client.Receive(frame, read, frame.Length - read, SocketFlags.None);
        Assert.Equal(TensorFrame.ShardWeightsType, MemoryMarshal.Read<TensorFrame.Header>(frame).Type);

        var statistics = Enumerable.Range(0, 8).Select(i => 100f + i).ToArray();
        var gradient = Enumerable.Range(0, 32).Select(i => (i % 7 - 3) * 0.3f + i * 1e-3f).ToArray();
        var message = new byte[Core.Compression.GradientEncoder.EncodedBytes(settings, 32)];
        new Core.Compression.GradientEncoder(settings, 32).Encode(gradient, message);
        var whole = new float[32];
        Core.Compression.GradientDecoder.Decode(message, whole);
        var cut = Core.Compression.GradientMessageSlice.Cut(message, 16, 16);
        var header = Gradient(24) with { Type = TensorFrame.CompressedGradientType, PayloadBytes = cut.Length };
        client.Send([.. Bytes(header), .. cut, .. MemoryMarshal.AsBytes(statistics.AsSpan()).ToArray()]);
        var received = ExpectMsg<Cluster.Protocol.GradientComputed>(TimeSpan.FromSeconds(10));
        Assert.Equal([.. whole[16..], .. statistics], received.Gradient);
        Assert.Equal((1, 2, 3L, 16), (received.Epoch, received.Round, received.Version, received.SampleCount));

        var most = kind == Core.Compression.GradientCompression.TopK ? 73 : 5 + 2 * 16;
        var (bytes, expected) = refused switch
        {
            "a larger cut" => (Bytes(header with { PayloadBytes = most + 1 }), kind == Core.Compression.GradientCompression.TopK
                ? "announced a compressed gradient with 74 encoded bytes where 5 to 73 belong for shard 1's slice [16, 40)"
                : "announced a compressed gradient with 38 encoded bytes where 37 belong"),
            "shorter than a header" => (Bytes(header with { PayloadBytes = 4 }), "with 4 encoded bytes where 5 to 73 belong"),
            _ => (Another(kind), $"sent a gradient slice encoded as {(kind == Core.Compression.GradientCompression.TopK ? "Float16" : "BFloat16")}, " +
                $"and this shard node's Cluster:Compression is {kind}"),
        };
        EventFilter.Warning(contains: expected).ExpectOne(() =>
        {
            client.Send(bytes);
            ExpectTerminated(link, TimeSpan.FromSeconds(10));
        });
        ExpectNoMsg(TimeSpan.FromMilliseconds(100)); // nothing reached the shard

        // A frame whose cut is of another kind but fits the link's size: BFloat16 for Float16 (the same size), a Float16 cut of
        // 16 values (37 bytes, within TopK's 73) for TopK.
        byte[] Another(Core.Compression.GradientCompression linkKind)
        {
            var other = linkKind == Core.Compression.GradientCompression.TopK ? Core.Compression.GradientCompression.Float16 : Core.Compression.GradientCompression.BFloat16;
            var otherMessage = new byte[Core.Compression.GradientEncoder.EncodedBytes(new Core.Compression.GradientCompressionSettings(other), 32)];
            new Core.Compression.GradientEncoder(new Core.Compression.GradientCompressionSettings(other), 32).Encode(gradient, otherMessage);
            var otherCut = Core.Compression.GradientMessageSlice.Cut(otherMessage, 16, 16);
            return [.. Bytes(header with { PayloadBytes = otherCut.Length }), .. otherCut, .. MemoryMarshal.AsBytes(statistics.AsSpan()).ToArray()];
        }
    }

    [Fact]
    public void A_worker_link_refuses_a_gradient_of_another_length_before_allocating_and_logs_the_peer()
    {
        var (link, client) = AttachedLink(WorkerLink.Props(0, TestActor, reportLength: 10));
        using var _ = client;
        var before = GC.GetTotalAllocatedBytes(precise: true);
        EventFilter.Warning(contains: $":{((IPEndPoint)client.LocalEndPoint!).Port} announced a gradient of {TensorFrame.MaxCount} floats").ExpectOne(() =>
        {
            client.Send(Bytes(Gradient(TensorFrame.MaxCount)));
            ExpectTerminated(link, TimeSpan.FromSeconds(10));
        });
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        Assert.True(allocated < 10 << 20, $"{allocated:N0} bytes allocated for a refused 1 GiB gradient header");
    }
}
