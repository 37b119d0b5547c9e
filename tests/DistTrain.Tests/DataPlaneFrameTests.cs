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
