using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Akka.Actor;
using Akka.Event;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;

namespace DistTrain.Tests;

/// <summary>
/// The tensor data plane's frames on real loopback sockets: the listener's hello check, and both links' handling of good
/// frames and of a bad magic number, protocol version, type or size (the connection closes with a log line that says so).
/// </summary>
public sealed class DataPlaneFrameTests() : TestKit(TestTimeouts.TestKitConfig)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20); // a hang guard on a loaded machine, not a speed limit
    private readonly List<IDisposable> _resources = [];

    protected override void Dispose(bool disposing)
    {
        if (disposing)
            foreach (var resource in _resources) resource.Dispose();
        base.Dispose(disposing);
    }

    private T Own<T>(T resource) where T : IDisposable
    {
        _resources.Add(resource);
        return resource;
    }

    private static TensorFrame.Header Header(byte type, int count, int workerIndex = 0) => new()
    {
        Magic = TensorFrame.Magic, Type = type, Version = TensorFrame.ProtocolVersion, Epoch = 3, Round = 4, WeightsVersion = 17,
        WorkerIndex = workerIndex, SampleCount = 16, LossSum = 35.25, ComputeSeconds = 0.5, Count = count,
    };

    /// <summary>The bytes of one frame as the wire carries them: the header, then the floats (not necessarily <c>Count</c> of them).</summary>
    private static byte[] Bytes(TensorFrame.Header header, params float[] values)
    {
        var bytes = new byte[TensorFrame.HeaderSize + values.Length * sizeof(float)];
        MemoryMarshal.Write(bytes, in header);
        MemoryMarshal.AsBytes(values.AsSpan()).CopyTo(bytes.AsSpan(TensorFrame.HeaderSize));
        return bytes;
    }

    private Socket Connect(int port)
    {
        var client = Own(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveTimeout = (int)Wait.TotalMilliseconds });
        client.Connect(IPAddress.Loopback, port);
        return client;
    }

    /// <summary>A connected loopback pair: (the side a link owns, the side the test plays the peer on).</summary>
    private (Socket Link, Socket Peer) SocketPair()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try
        {
            var peer = Connect(((IPEndPoint)listener.LocalEndpoint).Port);
            return (Own(listener.AcceptSocket()), peer);
        }
        finally
        {
            listener.Stop();
        }
    }

    /// <summary>True once the peer has closed the connection (a read returns 0 bytes or the connection was reset).</summary>
    private static bool ClosedByPeer(Socket socket)
    {
        var buffer = new byte[4096];
        try
        {
            while (true)
                if (socket.Receive(buffer) == 0) return true; // drains anything still in flight, such as the hello
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            return true;
        }
    }

    private static void ReceiveExactly(Socket socket, Span<byte> bytes)
    {
        while (!bytes.IsEmpty)
        {
            var read = socket.Receive(bytes);
            Assert.True(read > 0, "the link closed the connection");
            bytes = bytes[read..];
        }
    }

    private static TensorFrame.Header ReceiveHeader(Socket socket)
    {
        var bytes = new byte[TensorFrame.HeaderSize];
        ReceiveExactly(socket, bytes);
        return MemoryMarshal.Read<TensorFrame.Header>(bytes);
    }

    private DataPlaneListener StartListener(IActorRef owner)
    {
        var listener = Own(new DataPlaneListener(0, owner));
        listener.Start();
        return listener;
    }

    [Fact]
    public void The_listener_accepts_a_hello_and_names_the_worker_and_parameter_count()
    {
        var owner = CreateTestProbe();
        var listener = StartListener(owner.Ref);
        var client = Connect(listener.Port);
        client.Send(Bytes(TensorFrame.Hello(workerIndex: 5, parameterCount: 235_146)));
        var accepted = owner.ExpectMsg<DataPlaneListener.Accepted>(Wait);
        Own(accepted.Socket);
        Assert.Equal((5, 235_146), (accepted.WorkerIndex, accepted.ParameterCount));
    }

    public static TheoryData<string, byte[], string> BadFirstFrames => new()
    {
        { "bad magic", Bytes(Header(TensorFrame.HelloType, 0) with { Magic = 0x54544547 }), "starts with 0x54544547, not DistTrain's 0x50445444" },
        { "other protocol version", Bytes(Header(TensorFrame.HelloType, 0) with { Version = TensorFrame.ProtocolVersion + 1 }),
            $"the peer speaks protocol version {TensorFrame.ProtocolVersion + 1}, this node {TensorFrame.ProtocolVersion}" },
        { "size above the limit", Bytes(Header(TensorFrame.HelloType, TensorFrame.MaxCount + 1)), $"announces {TensorFrame.MaxCount + 1} floats" },
        { "negative size", Bytes(Header(TensorFrame.HelloType, -4)), "announces -4 floats" },
        { "not a hello", Bytes(Header(TensorFrame.WeightsType, 0)), "the first frame has type 1, not hello" },
        { "an HTTP request", "GET /metrics HTTP/1.1\r\nHost: ps:4054\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"u8.ToArray(), "not DistTrain's 0x50445444" },
        { "closed before a whole header", Bytes(TensorFrame.Hello(1, 10))[..20], "the peer closed the connection" },
    };

    [Theory]
    [MemberData(nameof(BadFirstFrames))]
    public void The_listener_refuses_a_connection_whose_first_frame_is_bad_closes_it_and_keeps_accepting(string what, byte[] frame, string reason)
    {
        var owner = CreateTestProbe();
        var listener = StartListener(owner.Ref);
        var stranger = Connect(listener.Port);
        stranger.Send(frame);
        if (frame.Length < TensorFrame.HeaderSize) stranger.Shutdown(SocketShutdown.Send);
        var rejected = owner.ExpectMsg<DataPlaneListener.Rejected>(Wait);
        Assert.Contains(reason, rejected.Reason);
        Assert.True(ClosedByPeer(stranger), $"{what}: the listener left the connection open");

        // The listener still serves the next worker.
        var worker = Connect(listener.Port);
        worker.Send(Bytes(TensorFrame.Hello(workerIndex: 2, parameterCount: 10)));
        Own(owner.ExpectMsg<DataPlaneListener.Accepted>(Wait).Socket);
    }

    [Fact]
    public void A_connection_that_never_says_hello_does_not_keep_the_next_worker_out_and_is_refused_after_the_hello_timeout()
    {
        var owner = CreateTestProbe();
        var listener = Own(new DataPlaneListener(0, owner.Ref, helloTimeout: TimeSpan.FromSeconds(1)));
        listener.Start();
        var silent = Connect(listener.Port); // connects, sends nothing
        var worker = Connect(listener.Port);
        worker.Send(Bytes(TensorFrame.Hello(workerIndex: 1, parameterCount: 10)));
        // Both answers come, in either order (a loaded machine may take more than the second to read the worker's hello).
        var answers = owner.ReceiveN(2, Wait);
        var accepted = Assert.Single(answers.OfType<DataPlaneListener.Accepted>());
        Own(accepted.Socket);
        Assert.Equal(1, accepted.WorkerIndex);
        Assert.Contains("no hello frame within 1 s", Assert.Single(answers.OfType<DataPlaneListener.Rejected>()).Reason);
        Assert.True(ClosedByPeer(silent), "the listener left the silent connection open");
    }

    [Fact]
    public void A_worker_link_sends_weights_frames_delivers_gradient_frames_and_passes_on_a_gradient_of_the_wrong_length()
    {
        var (linkSide, worker) = SocketPair();
        var parameterServer = CreateTestProbe();
        var link = Sys.ActorOf(WorkerLink.Props(1, CreateTestProbe().Ref, reportLength: 3));
        link.Tell(new WorkerLink.Attach(linkSide));

        parameterServer.Send(link, new WeightsUpdated(3, 4, 17, [1f, -2f, 0.5f]));
        var weights = ReceiveHeader(worker);
        Assert.Equal((TensorFrame.Magic, TensorFrame.WeightsType, TensorFrame.ProtocolVersion, 3, 4, 17L, 3),
            (weights.Magic, weights.Type, weights.Version, weights.Epoch, weights.Round, weights.WeightsVersion, weights.Count));
        var values = new float[3];
        ReceiveExactly(worker, MemoryMarshal.AsBytes(values.AsSpan()));
        Assert.Equal([1f, -2f, 0.5f], values);

        worker.Send(Bytes(Header(TensorFrame.GradientType, 3, workerIndex: 1), 0.25f, -0.75f, 8f));
        var gradient = parameterServer.ExpectMsg<GradientComputed>(Wait);
        Assert.Equal((3, 4, 17L, 1, 16, 35.25, 0.5), (gradient.Epoch, gradient.Round, gradient.Version, gradient.WorkerIndex,
            gradient.SampleCount, gradient.LossSum, gradient.ComputeSeconds));
        Assert.Equal([0.25f, -0.75f, 8f], gradient.Gradient);
        Assert.Equal(link, parameterServer.LastSender);

        // A gradient of the wrong length still reaches the parameter server, which rejects and counts it.
        worker.Send(Bytes(Header(TensorFrame.GradientType, 2, workerIndex: 1), 9f, 9f));
        Assert.Equal([9f, 9f], parameterServer.ExpectMsg<GradientComputed>(Wait).Gradient);
    }

    public static TheoryData<string, byte[], string> BadGradientFrames => new()
    {
        { "bad magic", Bytes(Header(TensorFrame.GradientType, 3) with { Magic = 0xDEADBEEF }, 1f, 2f, 3f), "starts with 0xDEADBEEF" },
        { "other protocol version", Bytes(Header(TensorFrame.GradientType, 3) with { Version = 0 }, 1f, 2f, 3f), "the peer speaks protocol version 0" },
        { "size above the limit", Bytes(Header(TensorFrame.GradientType, int.MaxValue)), $"announces {int.MaxValue} floats" },
        { "negative size", Bytes(Header(TensorFrame.GradientType, -1)), "announces -1 floats" },
        { "weights sent to the parameter server", Bytes(Header(TensorFrame.WeightsType, 3), 1f, 2f, 3f), "expected a gradient frame, got type 1" },
    };

    [Theory]
    [MemberData(nameof(BadGradientFrames))]
    public void A_bad_frame_from_a_worker_closes_its_connection_stops_its_link_and_logs_why(string what, byte[] frame, string reason)
    {
        var (linkSide, worker) = SocketPair();
        var parameterServer = CreateTestProbe();
        var link = Sys.ActorOf(WorkerLink.Props(1, CreateTestProbe().Ref, reportLength: 3));
        var watcher = CreateTestProbe();
        watcher.Watch(link);
        var log = CreateTestProbe();
        Sys.EventStream.Subscribe(log.Ref, typeof(Warning));
        link.Tell(new WorkerLink.Attach(linkSide));
        parameterServer.Send(link, new WeightsUpdated(3, 4, 17, [1f, 2f, 3f])); // so gradients would have somewhere to go

        worker.Send(frame);
        var warning = log.FishForMessage<Warning>(w => w.Message.ToString()!.Contains("data plane closed", StringComparison.Ordinal), Wait,
            $"the link's warning about the {what}");
        Assert.Contains(reason, warning.Message.ToString());
        watcher.ExpectTerminated(link, Wait);
        Assert.True(ClosedByPeer(worker), $"{what}: the link left the connection open");
        parameterServer.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // nothing of the bad frame was delivered
    }

    [Fact]
    public void A_parameter_server_link_says_hello_delivers_weights_and_closes_on_a_frame_of_another_size()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var worker = CreateTestProbe();
        IActorRef link;
        Socket server;
        try
        {
            link = Sys.ActorOf(ParameterServerLink.Props("127.0.0.1", ((IPEndPoint)listener.LocalEndpoint).Port, workerIndex: 2, worker.Ref, parameterCount: 3));
            server = Own(listener.AcceptSocket());
        }
        finally
        {
            listener.Stop();
        }
        server.ReceiveTimeout = (int)Wait.TotalMilliseconds;
        var hello = ReceiveHeader(server);
        Assert.Equal((TensorFrame.Magic, TensorFrame.HelloType, TensorFrame.ProtocolVersion, 2, 3, 0),
            (hello.Magic, hello.Type, hello.Version, hello.WorkerIndex, hello.SampleCount, hello.Count));

        server.Send(Bytes(Header(TensorFrame.WeightsType, 3), 4f, 5f, -6f));
        var weights = worker.ExpectMsg<WeightsUpdated>(Wait);
        Assert.Equal((3, 4, 17L), (weights.Epoch, weights.Round, weights.Version));
        Assert.Equal([4f, 5f, -6f], weights.Weights);

        var watcher = CreateTestProbe();
        watcher.Watch(link);
        server.Send(Bytes(Header(TensorFrame.WeightsType, 4), 1f, 2f, 3f, 4f)); // the model has 3 parameters
        watcher.ExpectTerminated(link, Wait);
        Assert.True(ClosedByPeer(server), "the link left the connection open");
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }
}
