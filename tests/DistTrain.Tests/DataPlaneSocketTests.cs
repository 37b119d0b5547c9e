using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Akka.Actor;
using Akka.Event;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Security;
using DistTrain.Cluster.Training;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Models;

namespace DistTrain.Tests;

/// <summary>
/// The tensor data plane on real loopback sockets: the listener's hello (plain TCP, and inside TLS with the cluster's
/// certificates), refused first bytes and silent connections, the job host's token check, and both links' frames,
/// good and bad (a bad frame closes the connection, stops the link and logs why). The header check itself, as a pure
/// function, is in <see cref="DataPlaneFrameTests"/>.
/// </summary>
public sealed class DataPlaneSocketTests() : TestKit(Akka.Configuration.ConfigurationFactory.ParseString("akka.loglevel = INFO")
    .WithFallback(TestTimeouts.TestKitConfig))
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20); // a hang guard on a loaded machine, not a speed limit
    private readonly OwnedResources _owned = new("disttrain-dataplane-");

    protected override void Dispose(bool disposing)
    {
        if (disposing) _owned.Dispose();
        base.Dispose(disposing);
    }

    private DataPlaneListener StartListener(IActorRef owner, ClusterCertificates? certificates = null, TimeSpan? handshakeTimeout = null)
    {
        var listener = _owned.Own(handshakeTimeout is { } timeout
            ? DataPlaneListener.Start(0, certificates, timeout)
            : DataPlaneListener.Start(0, certificates));
        listener.Attach(owner);
        return listener;
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

    /// <summary>The 48 bytes of <paramref name="hello"/> as <see cref="DataPlaneHello.Write"/> sends them.</summary>
    private static byte[] Bytes(DataPlaneHello hello)
    {
        using var bytes = new MemoryStream();
        hello.Write(bytes);
        return bytes.ToArray();
    }

    private static byte[] Hello(int workerIndex, int parameterCount, byte[]? token = null) =>
        Bytes(new DataPlaneHello(workerIndex, parameterCount, token ?? DataPlaneHello.NewToken()));

    private Socket Connect(int port)
    {
        var client = _owned.Own(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveTimeout = (int)Wait.TotalMilliseconds });
        client.Connect(IPAddress.Loopback, port);
        return client;
    }

    private static string PeerOf(Socket client) => client.LocalEndPoint!.ToString()!;

    /// <summary>A connected loopback pair: (the side a link owns, as the listener hands it over after the hello; the side the test plays the peer on).</summary>
    private (DataPlaneConnection Link, Socket Peer) ConnectionPair()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try
        {
            var peer = Connect(((IPEndPoint)listener.LocalEndpoint).Port);
            var socket = listener.AcceptSocket();
            return (_owned.Own(new DataPlaneConnection(socket, new NetworkStream(socket, ownsSocket: false), PeerOf(peer))), peer);
        }
        finally
        {
            listener.Stop();
        }
    }

    /// <summary>True once the other end has closed the connection (a read returns 0 bytes or the connection was reset); false if it stays open for <see cref="Wait"/>.</summary>
    private static bool ClosedByPeer(Socket socket)
    {
        var buffer = new byte[4096];
        try
        {
            while (true)
                if (socket.Receive(buffer) == 0) return true; // drains anything still in flight
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            return true;
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut)
        {
            return false;
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

    /// <summary>A probe that gets every log event of <typeparamref name="TLevel"/> or above, as published in <paramref name="system"/>
    /// (null: the test kit's).</summary>
    private Akka.TestKit.TestProbe LogProbe<TLevel>(ActorSystem? system = null) where TLevel : LogEvent
    {
        var log = CreateTestProbe();
        var events = (system ?? Sys).EventStream;
        events.Subscribe(log.Ref, typeof(TLevel));
        if (typeof(TLevel) == typeof(Info)) events.Subscribe(log.Ref, typeof(Warning));
        return log;
    }

    private static string FishLog(Akka.TestKit.TestProbe log, string contains, string what) =>
        log.FishForMessage<LogEvent>(e => e.Message.ToString()!.Contains(contains, StringComparison.Ordinal), Wait, what).Message.ToString()!;

    /// <summary>
    /// A worker whose node leaves while the job runs is lost, and its link warns so. One that leaves after the job host was told
    /// the job is stopping (Ctrl-C to the cluster: the workers leave with the parameter server) is logged at INFO as leaving with
    /// the stop: every worker of a stopped job on shard nodes was warned of as lost before.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_worker_that_leaves_as_the_job_stops_is_not_warned_of_as_lost(bool stopping)
    {
        var log = LogProbe<Info>();
        var worker = CreateTestProbe();
        var link = Sys.ActorOf(WorkerLink.Props(3, worker.Ref, reportLength: 3));
        if (stopping) link.Tell(WorkerLink.JobStopping.Instance);
        Watch(link);
        Sys.Stop(worker.Ref);
        ExpectTerminated(link, Wait); // the link ends either way
        var line = FishLog(log, "Worker 3 (", "the link's line about its worker's end");
        Assert.EndsWith(stopping ? "left as the job stops." : "is gone (node left, crashed or was downed); the worker counts as lost.", line);
        log.ReceiveWhile(TimeSpan.FromMilliseconds(200), e => e is Warning w && stopping
            ? throw new Xunit.Sdk.XunitException($"a warning during the stop: {w.Message}") : e);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_listener_hands_over_the_hellos_worker_index_parameter_count_and_token_with_a_connection_that_carries_frames(bool tls)
    {
        var (parameterServer, worker) = _owned.Certificates(tls, "ps");
        var owner = CreateTestProbe();
        var listener = StartListener(owner.Ref, parameterServer);
        var token = DataPlaneHello.NewToken();
        var client = _owned.Own(DataPlaneConnection.Connect("127.0.0.1", listener.Port, worker, new DataPlaneHello(5, 235_146, token)));

        var accepted = owner.ExpectMsg<DataPlaneListener.Accepted>(Wait);
        _owned.Own(accepted.Connection);
        Assert.Equal((5, 235_146), (accepted.Hello.WorkerIndex, accepted.Hello.ParameterCount));
        Assert.Equal(token, accepted.Hello.Token);
        Assert.StartsWith("127.0.0.1:", accepted.Connection.Peer);

        // The connection handed over is the one past the hello (inside TLS when on): frames go both ways.
        var weights = new WeightsUpdated(3, 4, 17, [1f, -2f, 0.5f]);
        TensorFrame.Write(accepted.Connection.Stream, TensorFrame.For(weights), weights.Weights);
        var (header, values) = await Task.Run(() =>
        {
            var header = TensorFrame.ReadHeader(client.Stream, TensorFrame.WeightsType, 3, "the parameter server");
            var values = new float[3];
            TensorFrame.ReadValues(client.Stream, values, "the parameter server");
            return (header, values);
        }).WaitAsync(Wait);
        Assert.Equal((3, 4, 17L), (header.Epoch, header.Round, header.WeightsVersion));
        Assert.Equal([1f, -2f, 0.5f], values);

        var gradient = new GradientComputed(3, 4, 17, 5, 64, 12.5, [0.25f, 8f, -1f], computeSeconds: 0.125);
        TensorFrame.Write(client.Stream, TensorFrame.For(gradient), gradient.Gradient);
        header = await Task.Run(() => TensorFrame.ReadHeader(accepted.Connection.Stream, TensorFrame.GradientType, 3, accepted.Connection.Peer)).WaitAsync(Wait);
        Assert.Equal((5, 64, 12.5, 0.125), (header.WorkerIndex, header.SampleCount, header.LossSum, header.ComputeSeconds));
        owner.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // one connection, one message
    }

    public static TheoryData<string, byte[], string> BadFirstBytes => new()
    {
        { "a tensor frame instead of a hello", Bytes(Header(TensorFrame.WeightsType, 0)), $"its first bytes (0x{TensorFrame.Magic:X8}) are not a DistTrain data-plane hello" },
        { "bad magic", [.. "TTEG"u8, .. Hello(1, 10).AsSpan(4)], "its first bytes (0x47455454) are not a DistTrain data-plane hello" },
        { "another hello version", [.. Hello(1, 10).AsSpan(0, 4), DataPlaneHello.Version + 1, .. Hello(1, 10).AsSpan(5)],
            $"it speaks data-plane hello version {DataPlaneHello.Version + 1}, this node {DataPlaneHello.Version}" },
        { "an HTTP request", "GET /metrics HTTP/1.1\r\nHost: ps:4054\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"u8.ToArray(), "(0x20544547) are not a DistTrain data-plane hello" },
        { "closed before a whole hello", Hello(1, 10)[..20], "the peer closed the connection before its hello" },
        { "closed without a byte", [], "the peer closed the connection before its hello" },
    };

    [Theory]
    [MemberData(nameof(BadFirstBytes))]
    public void The_listener_refuses_a_connection_whose_first_bytes_are_not_a_hello_closes_it_and_keeps_accepting(string what, byte[] bytes, string reason)
    {
        var owner = CreateTestProbe();
        var listener = StartListener(owner.Ref);
        var stranger = Connect(listener.Port);
        stranger.Send(bytes);
        if (bytes.Length < DataPlaneHello.Size) stranger.Shutdown(SocketShutdown.Send);

        var rejected = owner.ExpectMsg<DataPlaneListener.Rejected>(Wait);
        Assert.Contains(reason, rejected.Reason);
        Assert.Equal(PeerOf(stranger), rejected.Peer);
        Assert.True(ClosedByPeer(stranger), $"{what}: the listener left the connection open");

        // The listener still serves the next worker.
        var worker = Connect(listener.Port);
        worker.Send(Hello(workerIndex: 2, parameterCount: 10));
        var accepted = owner.ExpectMsg<DataPlaneListener.Accepted>(Wait);
        _owned.Own(accepted.Connection);
        Assert.Equal(2, accepted.Hello.WorkerIndex);
    }

    [Fact]
    public void Connections_that_stall_before_or_inside_their_hello_do_not_keep_the_next_worker_out()
    {
        var owner = CreateTestProbe();
        // A handshake limit far beyond the wait below: the worker is accepted while the stalled connections are still pending.
        var listener = StartListener(owner.Ref, handshakeTimeout: TimeSpan.FromMinutes(10));
        Connect(listener.Port); // connects, sends nothing
        Connect(listener.Port).Send(Hello(0, 10)[..30]); // stops in the middle of its hello
        var worker = Connect(listener.Port);
        worker.Send(Hello(workerIndex: 1, parameterCount: 10));

        var accepted = owner.ExpectMsg<DataPlaneListener.Accepted>(Wait);
        _owned.Own(accepted.Connection);
        Assert.Equal((1, PeerOf(worker)), (accepted.Hello.WorkerIndex, accepted.Connection.Peer));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_connection_that_never_says_hello_is_refused_and_closed_after_the_handshake_timeout(bool tls)
    {
        var owner = CreateTestProbe();
        var timeout = TimeSpan.FromSeconds(0.5);
        var listener = StartListener(owner.Ref, _owned.Certificates(tls, "ps").Server, timeout);
        var clock = Stopwatch.StartNew();
        var silent = Connect(listener.Port); // no TLS handshake, no hello

        var rejected = owner.ExpectMsg<DataPlaneListener.Rejected>(Wait);
        // Not before the limit; .NET's timers run on the kernel's coarse clock, so they may fire a few milliseconds early.
        Assert.True(clock.Elapsed >= timeout - TimeSpan.FromMilliseconds(50),
            $"refused after {clock.Elapsed.TotalSeconds:F3} s, before the {timeout.TotalSeconds} s limit");
        Assert.Equal(PeerOf(silent), rejected.Peer);
        Assert.Equal("no TLS handshake and hello within 0.5 s", rejected.Reason);
        Assert.True(ClosedByPeer(silent), "the listener left the silent connection open");
    }

    /// <summary>
    /// A name lookup that outlasts the connect's deadline is named as the cause, with the time it took, whether it comes back
    /// late with the right address (as glibc's does once begun: the deadline cannot interrupt it) or ends on the deadline. It
    /// used to read as a node that "did not answer", which sent a reader of a container run's log after the wrong node. A lookup
    /// that takes half the deadline or more, and leaves a connect that then times out, is named beside the endpoint.
    /// </summary>
    [Fact]
    public async Task A_name_lookup_that_outlasts_the_connects_deadline_is_named_as_the_cause()
    {
        var listener = _owned.Own(DataPlaneListener.Start(0, certificates: null));
        var hello = new DataPlaneHello(0, 10, DataPlaneHello.NewToken());
        static async Task<IPAddress[]> ComesBackLate(string host, CancellationToken _)
        {
            await Task.Delay(700);
            return [IPAddress.Loopback];
        }
        static async Task<IPAddress[]> EndsOnTheDeadline(string host, CancellationToken deadline)
        {
            await Task.Delay(Timeout.Infinite, deadline);
            return [];
        }
        var unknown = new SocketException((int)SocketError.HostNotFound);
        async Task<IPAddress[]> FailsLate(string host, CancellationToken _)
        {
            await Task.Delay(700);
            throw unknown;
        }
        var late = @"(0\.[7-9]|[1-9](\.\d)?) s";
        foreach (var (lookUp, ended) in new (Func<string, CancellationToken, Task<IPAddress[]>>, string)[]
            { (ComesBackLate, late), (EndsOnTheDeadline, @"(0\.[2-9]|[1-9](\.\d)?) s"), (FailsLate, late + ": " + System.Text.RegularExpressions.Regex.Escape(unknown.Message)) })
        {
            var error = await Assert.ThrowsAnyAsync<IOException>(() => DataPlaneConnection.ConnectWithLookupAsync("ps-standby", listener.Port, null, hello,
                TimeSpan.FromMilliseconds(200), lookUp, CancellationToken.None));
            Assert.Matches($@"^data plane: the name lookup of ps-standby \(for ps-standby:{listener.Port}\) did not finish within 0\.2 s \(it ended after {ended}\), " +
                @"so no connection was tried: .*check it, or give that node's Cluster:PublicHostname as an IP address$", error.Message);
        }
        // A lookup that takes half the deadline or more, before a connect that then times out, is named beside the endpoint.
        using var owned = new OwnedResources("disttrain-slow-lookup-");
        var blackHole = LoopbackSockets.BlackHolePort(owned);
        static async Task<IPAddress[]> TakesMostOfTheDeadline(string host, CancellationToken _)
        {
            await Task.Delay(1200);
            return [IPAddress.Loopback];
        }
        var connectTimedOut = await Assert.ThrowsAsync<IOException>(() => DataPlaneConnection.ConnectWithLookupAsync("ps-standby", blackHole, null, hello,
            TimeSpan.FromSeconds(2), TakesMostOfTheDeadline, CancellationToken.None));
        // The lookup's time and what it left are read back from the line: anything from 1.0 s on (half the deadline) names the resolver.
        var timing = System.Text.RegularExpressions.Regex.Match(connectTimedOut.Message,
            $@"^data plane: ps-standby:{blackHole} did not answer in the (\d\.\d) s its 2 s deadline left after the name lookup of ps-standby took (\d\.\d) s " +
            @"\(TCP connect, TLS handshake and hello\): the resolver this node uses is slow \(in containers, the container network's DNS\), so check it or " +
            @"give that node's Cluster:PublicHostname as an IP address; or the node is down or stuck, or a firewall drops the packets, so check that it " +
            @"runs and listens on that port$");
        Assert.True(timing.Success, connectTimedOut.Message);
        var (left, took) = (double.Parse(timing.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture),
            double.Parse(timing.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.InRange(took, 1.2, 2.0);
        Assert.InRange(left + took, 1.9, 2.1); // each rounded to 0.1 s

        // A quick lookup connects as before.
        using var connected = await DataPlaneConnection.ConnectWithLookupAsync("localhost", listener.Port, null, hello, Wait, (_, _) => Task.FromResult(new[] { IPAddress.Loopback }),
            CancellationToken.None);
        Assert.NotNull(connected);
    }

    [Fact]
    public void A_worker_link_sends_weights_frames_and_delivers_gradient_frames_to_the_parameter_server()
    {
        var (linkSide, worker) = ConnectionPair();
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

        for (var i = 0; i < 3; i++) // more gradients than the link has buffers: each arrives whole and in order
        {
            worker.Send(Bytes(Header(TensorFrame.GradientType, 3, workerIndex: 1) with { Round = 4 + i }, 0.25f * i, -0.75f, 8f));
            var gradient = parameterServer.ExpectMsg<GradientComputed>(Wait);
            Assert.Equal((3, 4 + i, 17L, 1, 16, 35.25, 0.5), (gradient.Epoch, gradient.Round, gradient.Version, gradient.WorkerIndex,
                gradient.SampleCount, gradient.LossSum, gradient.ComputeSeconds));
            Assert.Equal([0.25f * i, -0.75f, 8f], gradient.Gradient);
            Assert.Equal(link, parameterServer.LastSender);
        }
    }

    public static TheoryData<string, byte[], string> BadGradientFrames => new()
    {
        { "a gradient of another length", Bytes(Header(TensorFrame.GradientType, 2), 9f, 9f), "announced a gradient of 2 floats; this model's tensors have 3" },
        { "bad magic", Bytes(Header(TensorFrame.GradientType, 3) with { Magic = 0xDEADBEEF }, 1f, 2f, 3f), "starting with 0xDEADBEEF" },
        { "another protocol version", Bytes(Header(TensorFrame.GradientType, 3) with { Version = 0 }, 1f, 2f, 3f), "speaks protocol version 0" },
        { "size above the limit", Bytes(Header(TensorFrame.GradientType, int.MaxValue)), $"announced a gradient of {int.MaxValue} floats (allowed 0 to {TensorFrame.MaxCount})" },
        { "negative size", Bytes(Header(TensorFrame.GradientType, -1)), "announced a gradient of -1 floats" },
        { "weights sent to the parameter server", Bytes(Header(TensorFrame.WeightsType, 3), 1f, 2f, 3f), "sent a weights frame where a gradient frame belongs" },
        { "closed in the middle of the floats", Bytes(Header(TensorFrame.GradientType, 3), 1f, 2f), "closed the connection" },
    };

    [Theory]
    [MemberData(nameof(BadGradientFrames))]
    public void A_bad_frame_from_a_worker_closes_its_connection_stops_its_link_and_logs_why(string what, byte[] frame, string reason)
    {
        var (linkSide, worker) = ConnectionPair();
        var parameterServer = CreateTestProbe();
        var link = Sys.ActorOf(WorkerLink.Props(1, CreateTestProbe().Ref, reportLength: 3));
        var watcher = CreateTestProbe();
        watcher.Watch(link);
        var log = LogProbe<Warning>();
        link.Tell(new WorkerLink.Attach(linkSide));
        parameterServer.Send(link, new WeightsUpdated(3, 4, 17, [1f, 2f, 3f])); // so gradients have somewhere to go
        ReceiveExactly(worker, new byte[TensorFrame.HeaderSize + 3 * sizeof(float)]);

        // A good frame first: the bad one ends a working connection.
        worker.Send(Bytes(Header(TensorFrame.GradientType, 3, workerIndex: 1), 0.5f, 0.5f, 0.5f));
        Assert.Equal([0.5f, 0.5f, 0.5f], parameterServer.ExpectMsg<GradientComputed>(Wait).Gradient);

        worker.Send(frame);
        if (what.StartsWith("closed", StringComparison.Ordinal)) worker.Shutdown(SocketShutdown.Send);
        var warning = FishLog(log, "Worker 1: data plane closed", $"the link's warning about {what}");
        Assert.Contains(reason, warning);
        Assert.Contains(PeerOf(worker), warning);
        watcher.ExpectTerminated(link, Wait);
        Assert.True(ClosedByPeer(worker), $"{what}: the link left the connection open");
        parameterServer.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // nothing of the bad frame was delivered
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_parameter_server_link_says_hello_with_its_token_delivers_weights_and_sends_gradients_through_the_listener(bool tls)
    {
        var (parameterServer, workerCertificates) = _owned.Certificates(tls, "ps");
        var owner = CreateTestProbe();
        var listener = StartListener(owner.Ref, parameterServer);
        var worker = CreateTestProbe();
        var token = DataPlaneHello.NewToken();
        var link = Sys.ActorOf(ParameterServerLink.Props("127.0.0.1", listener.Port, workerIndex: 2, worker.Ref, parameterCount: 3, token, workerCertificates));

        var accepted = owner.ExpectMsg<DataPlaneListener.Accepted>(Wait);
        var server = _owned.Own(accepted.Connection);
        Assert.Equal((2, 3), (accepted.Hello.WorkerIndex, accepted.Hello.ParameterCount));
        Assert.Equal(token, accepted.Hello.Token);

        for (var version = 17L; version < 21; version++) // more versions than the link has buffers
        {
            var sent = new WeightsUpdated(3, 4, version, [4f, 5f, -version]);
            TensorFrame.Write(server.Stream, TensorFrame.For(sent), sent.Weights);
            var weights = worker.ExpectMsg<WeightsUpdated>(Wait);
            Assert.Equal((3, 4, version), (weights.Epoch, weights.Round, weights.Version));
            Assert.Equal([4f, 5f, -version], weights.Weights);
        }

        worker.Reply(new GradientComputed(3, 4, 20, 2, 64, 12.5, [0.25f, 8f, -1f], computeSeconds: 0.125));
        var (header, values) = await Task.Run(() =>
        {
            var header = TensorFrame.ReadHeader(server.Stream, TensorFrame.GradientType, 3, server.Peer);
            var values = new float[3];
            TensorFrame.ReadValues(server.Stream, values, server.Peer);
            return (header, values);
        }).WaitAsync(Wait);
        Assert.Equal((3, 4, 20L, 2, 64, 12.5, 0.125), (header.Epoch, header.Round, header.WeightsVersion, header.WorkerIndex,
            header.SampleCount, header.LossSum, header.ComputeSeconds));
        Assert.Equal([0.25f, 8f, -1f], values);
    }

    public static TheoryData<string, byte[], string> BadWeightsFrames => new()
    {
        { "weights of another size", Bytes(Header(TensorFrame.WeightsType, 4), 1f, 2f, 3f, 4f), "announced a weights of 4 floats; this model's tensors have 3" },
        { "a gradient sent to a worker", Bytes(Header(TensorFrame.GradientType, 3), 1f, 2f, 3f), "sent a gradient frame where a weights frame belongs" },
        { "bad magic", Bytes(Header(TensorFrame.WeightsType, 3) with { Magic = 0x54544547 }, 1f, 2f, 3f), "starting with 0x54544547" },
    };

    [Theory]
    [MemberData(nameof(BadWeightsFrames))]
    public void A_parameter_server_link_closes_its_connection_and_stops_on_a_bad_frame(string what, byte[] frame, string reason)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var worker = CreateTestProbe();
        var log = LogProbe<Info>();
        IActorRef link;
        Socket server;
        try
        {
            link = Sys.ActorOf(ParameterServerLink.Props("127.0.0.1", ((IPEndPoint)listener.LocalEndpoint).Port, workerIndex: 2, worker.Ref,
                parameterCount: 3, DataPlaneHello.NewToken(), certificates: null));
            server = _owned.Own(listener.AcceptSocket());
        }
        finally
        {
            listener.Stop();
        }
        server.ReceiveTimeout = (int)Wait.TotalMilliseconds;
        ReceiveExactly(server, new byte[DataPlaneHello.Size]);
        var watcher = CreateTestProbe();
        watcher.Watch(link);

        server.Send(Bytes(Header(TensorFrame.WeightsType, 3), 4f, 5f, -6f));
        Assert.Equal([4f, 5f, -6f], worker.ExpectMsg<WeightsUpdated>(Wait).Weights);

        server.Send(frame);
        var line = FishLog(log, "Worker 2: data plane to the parameter server closed", $"the link's log line about {what}");
        Assert.Contains(reason, line);
        watcher.ExpectTerminated(link, Wait);
        Assert.True(ClosedByPeer(server), $"{what}: the link left the connection open");
        worker.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    /// <summary>
    /// A worker node's agent (a probe) registers with <paramref name="host"/> as a node of <paramref name="options"/>'s job
    /// would, with the job's proof (and, given <paramref name="lostParameterServerOfJob"/>, as one that lost that job's
    /// parameter server); returns the probe and the acceptance.
    /// </summary>
    private (Akka.TestKit.TestProbe Agent, WorkerAccepted Accepted) Register(IActorRef host, Core.Configuration.TrainingOptions options, JobIdentity identity,
        string? lostParameterServerOfJob = null, Akka.TestKit.TestProbe? agent = null, int round = 0)
    {
        agent ??= CreateTestProbe();
        const string node = "akka.tcp://disttrain@127.0.0.1:4100";
        agent.Send(host, Registration(options, identity, node, round) with
            { LostParameterServer = lostParameterServerOfJob is not null, JobId = lostParameterServerOfJob ?? "" });
        var accepted = agent.ExpectMsg<WorkerAccepted>(Wait);
        Assert.Equal(round, accepted.Round); // the answer names the round it answers, and its proof covers it
        Assert.True(JobIdentity.Matches(accepted.Proof!, identity.AcceptanceProof(node, accepted.WorkerIndex, accepted.DataHost, accepted.DataPort,
            accepted.DataToken!, round)));
        return (agent, accepted);
    }

    /// <summary>A worker node's registration as node <paramref name="node"/> of <paramref name="options"/>'s job, with the job's proof.</summary>
    private static RegisterWorker Registration(Core.Configuration.TrainingOptions options, JobIdentity identity, string node, int round = 0)
    {
        var fingerprint = ModelFingerprint.Of(options);
        return new RegisterWorker(ClusterProtocolInfo.Version, fingerprint, node, JobName: identity.Name,
            Proof: identity.RegistrationProof(node, ClusterProtocolInfo.Version, fingerprint), Round: round);
    }

    [Fact]
    public void The_job_host_attaches_only_the_connection_that_carries_its_registrations_token_and_parameter_count()
    {
        var options = TestData.Options(TestData.Mlp(10), workers: 2, batch: 8, epochs: 1);
        options.Cluster.SharedMemory = false; // the link's first frame is then a weights frame, not a shared-memory offer
        var parameterCount = ModelFactory.Build(options.Model).Layout.TotalLength;
        var identity = new JobIdentity(options.Cluster.JobName, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        var listener = _owned.Own(DataPlaneListener.Start(0, certificates: null));
        var log = LogProbe<Warning>();
        var host = Sys.ActorOf(JobHost.Props(options, new ClusterSecurity(identity, null), listener, 1000, 250, 0, "127.0.0.1",
            new NullTrainingObserver(), new TaskCompletionSource<TrainingResult>()));

        var (agent, accepted) = Register(host, options, identity);
        Assert.Equal((0, listener.Port, parameterCount), (accepted.WorkerIndex, accepted.DataPort, accepted.ParameterCount));
        var token = accepted.DataToken!;

        void Refused(byte[] hello, string reason)
        {
            var stranger = Connect(listener.Port);
            stranger.Send(hello);
            var warning = FishLog(log, $"Data plane: refused a connection from {PeerOf(stranger)}", $"the refusal of a hello that {reason}");
            Assert.Contains(reason, warning);
            Assert.True(ClosedByPeer(stranger), $"the job host left open a connection whose hello {reason}");
        }

        Refused(Hello(0, parameterCount), "it claims worker 0 without that registration's token");
        Refused(Hello(7, parameterCount, token), "it claims worker index 7, which no registered worker is waiting to connect as");
        Refused(Hello(0, parameterCount + 1, token), $"worker 0 announced {parameterCount + 1} parameters, this model has {parameterCount}");
        Refused(Hello(0, -4, token), $"worker 0 announced -4 parameters, this model has {parameterCount}");

        // Two connections with the registration's token: whichever reaches the job host first is kept, the other refused.
        Socket[] twins = [Connect(listener.Port), Connect(listener.Port)];
        foreach (var twin in twins) twin.Send(Hello(0, parameterCount, token));
        var duplicate = FishLog(log, "which is already connected", "the refusal of the second connection claiming worker 0");
        Assert.Contains("it claims worker 0, which is already connected; the existing connection is kept", duplicate);
        var refused = Assert.Single(twins, twin => duplicate.Contains($"from {PeerOf(twin)}:", StringComparison.Ordinal));
        var worker = Assert.Single(twins, twin => twin != refused);
        Assert.True(ClosedByPeer(refused), "the job host left the duplicate connection open");

        // Once the worker is ready, the kept connection is worker 0's link: a gradient of another length ends it there.
        agent.Send(host, new WorkerReady(0, CreateTestProbe().Ref));
        worker.Send(Bytes(Header(TensorFrame.GradientType, 5), 1f, 2f, 3f, 4f, 5f));
        var closed = FishLog(log, "Worker 0: data plane closed", "worker 0's link refusing the gradient");
        Assert.Contains($"{PeerOf(worker)} announced a gradient of 5 floats; this model's tensors have {parameterCount}", closed);
        Assert.True(ClosedByPeer(worker), "worker 0's link left the connection open");
    }

    /// <summary>
    /// A job host of a 784-10 model for Cluster:MinWorkers = 1 worker, without shared memory (a link's first frame is then a
    /// weights frame), waiting for its worker; with its model's parameter count, job identity and data-plane listener.
    /// </summary>
    private (Core.Configuration.TrainingOptions Options, int ParameterCount, JobIdentity Identity, DataPlaneListener Listener, IActorRef Host)
        StartJobOfOneWorker()
    {
        var options = TestData.Options(TestData.Mlp(10), workers: 1, batch: 8, epochs: 1);
        options.Cluster.MinWorkers = 1;
        options.Cluster.SharedMemory = false;
        var identity = new JobIdentity(options.Cluster.JobName, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        var listener = _owned.Own(DataPlaneListener.Start(0, certificates: null));
        var host = Sys.ActorOf(JobHost.Props(options, new ClusterSecurity(identity, null), listener, 1000, 250, 0, "127.0.0.1",
            new NullTrainingObserver(), new TaskCompletionSource<TrainingResult>()));
        return (options, ModelFactory.Build(options.Model).Layout.TotalLength, identity, listener, host);
    }

    /// <summary>
    /// Before training starts, a worker node whose data plane did not open registers again, in its second round, and keeps its
    /// index. The job host drops what the first round left (its link, its token) as the registration comes, so the new round's
    /// connection, which can reach the host before the new worker actor's WorkerReady, waits for that worker's link: it is
    /// attached to a link for the new worker actor, which that link watches. (Seen in containers: the WorkerReady was dropped, or
    /// the connection was attached to the stale link; either way it was closed, and the node had to register a third time.)
    /// </summary>
    [Fact]
    public void A_worker_node_that_registers_again_before_the_start_has_its_new_connection_linked_to_its_new_worker_actor_even_if_it_comes_first()
    {
        var log = LogProbe<Info>();
        var warnings = LogProbe<Warning>();
        var (options, parameterCount, identity, listener, host) = StartJobOfOneWorker();

        var (agent, first) = Register(host, options, identity, round: 1);
        var stale = CreateTestProbe();
        var fresh = CreateTestProbe();
        agent.Send(host, new WorkerReady(first.WorkerIndex, stale.Ref, Round: 1)); // its data plane never opened
        // A repeated send of round 1 changes nothing; the agent's second round keeps the index and gets a new token.
        var (_, repeated) = Register(host, options, identity, agent: agent, round: 1);
        Assert.Equal(first.DataToken, repeated.DataToken);
        var (_, again) = Register(host, options, identity, agent: agent, round: 2);
        Assert.Equal(first.WorkerIndex, again.WorkerIndex);
        Assert.NotEqual(first.DataToken, again.DataToken);
        FishLog(log, "Worker 0's node registered again before the start: the link of its earlier registration is dropped.", "the drop");
        // The first round's token opens nothing any more.
        Connect(listener.Port).Send(Hello(0, parameterCount, first.DataToken!));
        FishLog(warnings, "without that registration's token", "the refusal of the first round's token");
        // A late WorkerReady of round 1 (its worker actor has stopped) is ignored: it would link the stale actor, and the new
        // round's connection below would be attached to that link at once instead of waiting.
        agent.Send(host, new WorkerReady(first.WorkerIndex, stale.Ref, Round: 1));
        FishLog(log, "Worker 0's WorkerReady of registration round 1 came after its round 2 registered; ignored.", "the late WorkerReady ignored");
        // The new round's connection reaches the host before its worker's WorkerReady: it waits for the new worker's link.
        Connect(listener.Port).Send(Hello(0, parameterCount, again.DataToken!));
        FishLog(log, "Data plane: worker 0's connection from ", "the new connection, waiting for its WorkerReady");
        agent.Send(host, new WorkerReady(again.WorkerIndex, fresh.Ref, Round: 2));

        FishLog(log, "Data plane: worker 0 connected", "the new connection, attached");
        // Worker 0's link is the new worker actor's: it watches that actor, whose end it reports (and the stale one's it does not).
        Sys.Stop(stale.Ref);
        Sys.Stop(fresh.Ref);
        var gone = FishLog(warnings, "Worker 0 (", "the link's line about its worker's end");
        Assert.Contains($"Worker 0 ({fresh.Ref.Path}) is gone", gone);
    }

    /// <summary>
    /// After training started, a worker node that registers again in a new round (its data plane closed) joins as a new worker,
    /// and the job host stops its earlier round's link at once, closing that round's connection: the coordinator counts the old
    /// worker lost now, not when a half-open socket times out.
    /// </summary>
    [Fact]
    public void After_the_start_a_worker_node_that_registers_again_joins_as_a_new_worker_and_its_earlier_link_stops_at_once()
    {
        var log = LogProbe<Info>();
        var (options, parameterCount, identity, listener, host) = StartJobOfOneWorker();

        var (agent, first) = Register(host, options, identity, round: 1);
        agent.Send(host, new WorkerReady(first.WorkerIndex, CreateTestProbe().Ref, Round: 1));
        var connection = Connect(listener.Port);
        connection.Send(Hello(0, parameterCount, first.DataToken!));
        FishLog(log, "Training starts with 1 worker", "the start");

        var (_, again) = Register(host, options, identity, agent: agent, round: 2);
        Assert.Equal(1, again.WorkerIndex);
        Assert.NotEqual(first.DataToken, again.DataToken);
        FishLog(log, "Worker 0's node registered again: the link of its earlier registration stops, and the node joins as a new worker.", "the stop");
        // The earlier round's connection: the weights sent to it, then its end (a read of 0 bytes), well before its receive time-out.
        var buffer = new byte[1 << 16];
        while (connection.Receive(buffer) > 0) { }
    }

    /// <summary>
    /// A job host of a 784-10 model on shard nodes (Cluster:ShardNodes, 2 shards, Cluster:MinWorkers = 1, no shared memory, no
    /// checkpoints within an epoch) in a new actor system <paramref name="name"/> of the cluster provider, not joined to any
    /// cluster, so no shard node is ever found: the job starts, and its parameter server keeps looking for them. The test's
    /// owned resources dispose of the actor system.
    /// </summary>
    private (ActorSystem Cluster, Core.Configuration.TrainingOptions Options, int ParameterCount, JobIdentity Identity, DataPlaneListener Listener,
        TaskCompletionSource<TrainingResult> Completion, IActorRef Host) StartJobOnShardNodes(string name)
    {
        var cluster = _owned.Own(ActorSystem.Create(name, Akka.Configuration.ConfigurationFactory.ParseString(
            "akka.actor.provider = cluster\nakka.remote.dot-netty.tcp.hostname = 127.0.0.1\nakka.remote.dot-netty.tcp.port = 0\nakka.loglevel = INFO")));
        var options = TestData.Options(TestData.Mlp(10), workers: 1, batch: 8, epochs: 1);
        options.Cluster.MinWorkers = 1;
        options.Cluster.SharedMemory = false;
        options.Cluster.ShardNodes = true;
        options.Cluster.ParameterServerShards = 2;
        options.Checkpoint.EverySteps = 0;
        var identity = new JobIdentity(options.Cluster.JobName, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        var listener = _owned.Own(DataPlaneListener.Start(0, certificates: null));
        var completion = new TaskCompletionSource<TrainingResult>();
        var host = cluster.ActorOf(JobHost.Props(options, new ClusterSecurity(identity, null), listener, 1000, 250, 0, "127.0.0.1",
            new NullTrainingObserver(), completion));
        return (cluster, options, ModelFactory.Build(options.Model).Layout.TotalLength, identity, listener, completion, host);
    }

    /// <summary>
    /// With the shards on shard nodes (Cluster:ShardNodes), a worker that joined the running job and then fails alone (here its
    /// node reports that a shard node's data plane did not answer) is a lost worker, not the job's end: after the failure's grace
    /// the job host logs why, stops its link (the coordinator counts it lost) and refuses its node, now and when it registers
    /// again, instead of letting it join in another slot and fail alike. Two joiners failing within one grace point at a shard
    /// node, and a failure of a worker the job started with is the job's: either ends the job. (No shard node runs here: the job
    /// has started, and its parameter server is still looking for them, in an actor system of the cluster provider, not joined,
    /// which the test's probes talk to.)
    /// </summary>
    [Theory]
    [InlineData("a joiner alone")]
    [InlineData("two joiners together")]
    [InlineData("a starting worker")]
    public async Task On_shard_nodes_a_worker_that_joined_and_fails_alone_counts_as_lost_and_its_node_is_refused(string failing)
    {
        var (cluster, options, parameterCount, identity, listener, completion, host) = StartJobOnShardNodes("shard-join");
        var log = LogProbe<Info>(cluster);
        var warnings = LogProbe<Warning>(cluster);

        // Worker index's agent: registered, ready and connected.
        (Akka.TestKit.TestProbe Agent, Socket Connection) Join(int index)
        {
            var (agent, accepted) = Register(host, options, identity, agent: CreateTestProbe(), round: 1);
            Assert.Equal(index, accepted.WorkerIndex);
            agent.Send(host, new WorkerReady(index, CreateTestProbe().Ref, Round: 1));
            var connection = Connect(listener.Port);
            connection.Send(Hello(index, parameterCount, accepted.DataToken!));
            FishLog(log, $"Data plane: worker {index} connected", $"worker {index}'s connection, attached");
            return (agent, connection);
        }

        var (first, _) = Join(0);
        FishLog(log, "Training starts with 1 worker", "the start");
        var (joiner, connection) = Join(1);
        string Failure(int index) => $"Worker {index}: shard 0's data plane at 127.0.0.1:9 did not answer within 10 s";

        if (failing == "a joiner alone")
        {
            joiner.Send(host, new WorkerFailed(1, Failure(1)));
            var lost = FishLog(warnings, "Worker 1, which joined the running job, failed:", "the joiner's failure, as a loss");
            Assert.Contains("did not answer within 10 s. It counts as lost; the job goes on without it.", lost);
            Assert.StartsWith("worker 1 of this node joined the running job and failed: Worker 1: shard 0's data plane",
                joiner.ExpectMsg<RegistrationRefused>(Wait).Reason);
            Assert.True(ClosedByPeer(connection), "the failed joiner's link left its connection open");
            // Its node registers again (its data plane closed): refused, with the reason, rather than joining in a new slot.
            joiner.Send(host, Registration(options, identity, "akka.tcp://disttrain@127.0.0.1:4100", round: 2));
            Assert.StartsWith("worker 1 of this node joined the running job and failed:", joiner.ExpectMsg<RegistrationRefused>(Wait).Reason);
            Assert.False(completion.Task.IsCompleted, "the job ended on a joiner's failure");
        }
        else
        {
            if (failing == "two joiners together")
            {
                var (second, _) = Join(2);
                joiner.Send(host, new WorkerFailed(1, Failure(1)));
                second.Send(host, new WorkerFailed(2, Failure(2)));
            }
            else first.Send(host, new WorkerFailed(0, Failure(0)));
            await completion.Task.WaitAsync(Wait).ContinueWith(_ => { }, TaskScheduler.Default); // ends, either way
            Assert.True(completion.Task.IsCompleted, $"{failing}: the job did not end");
            warnings.ReceiveWhile(TimeSpan.FromMilliseconds(200), e => e is LogEvent w && w.Message.ToString()!.Contains("counts as lost", StringComparison.Ordinal)
                ? throw new Xunit.Sdk.XunitException($"{failing}: a failure was taken for a lost worker: {w.Message}") : e);
        }
        await cluster.Terminate();
    }

    /// <summary>
    /// With the shards on shard nodes, the job host gives out only the worker slots the shards are placed for (1 starting worker:
    /// 9 slots, 0 to 8). A worker that registers once they are all given out, a new one or a restarted one in its next round, is
    /// refused with the reason and the fix (its node exits with code 2), not accepted into a slot that no shard holds a token
    /// for, where it stayed idle until the job ended; its refusal gives it no index. (No shard node runs here, as above.)
    /// </summary>
    [Fact]
    public async Task On_shard_nodes_a_worker_beyond_the_placed_slots_is_refused_naming_the_slots_and_the_fix()
    {
        var (cluster, options, parameterCount, identity, listener, _, host) = StartJobOnShardNodes("shard-slots");
        var log = LogProbe<Info>(cluster);

        var (first, accepted) = Register(host, options, identity, agent: CreateTestProbe(), round: 1);
        first.Send(host, new WorkerReady(0, CreateTestProbe().Ref, Round: 1));
        Connect(listener.Port).Send(Hello(0, parameterCount, accepted.DataToken!));
        FishLog(log, "Training starts with 1 worker", "the start");
        Assert.Equal(9, RemoteShardSettings.WorkerSlotsFor(1));
        var joiners = new List<Akka.TestKit.TestProbe>();
        for (var index = 1; index < 9; index++)
        {
            var (joiner, joined) = Register(host, options, identity, agent: CreateTestProbe(), round: 1);
            Assert.Equal(index, joined.WorkerIndex);
            joiners.Add(joiner);
        }
        const string expected = "the shards of this job (Cluster:ShardNodes) were placed for 9 worker slots (0 to 8: those of the workers the job " +
            "started with, and as many more, at least 8 and at most 256 in all), and every one has been given out to a worker that joined or " +
            "restarted; a shard takes no worker beyond them. To train with more workers, or to restart more, restart the job (with " +
            "Checkpoint:Directory set, Checkpoint:Resume continues it from its newest checkpoint).";
        var late = CreateTestProbe();
        late.Send(host, Registration(options, identity, "akka.tcp://disttrain@127.0.0.1:4101", round: 1));
        Assert.Equal(expected, late.ExpectMsg<RegistrationRefused>(Wait).Reason);
        // A worker that restarts (its agent's next round) would take a new slot too: refused alike.
        joiners[^1].Send(host, Registration(options, identity, "akka.tcp://disttrain@127.0.0.1:4100", round: 2));
        Assert.Equal(expected, joiners[^1].ExpectMsg<RegistrationRefused>(Wait).Reason);
        // The first worker's repeated registration in its round keeps its index: not a new slot, so not refused.
        first.Send(host, Registration(options, identity, "akka.tcp://disttrain@127.0.0.1:4100", round: 1));
        Assert.Equal(0, first.ExpectMsg<WorkerAccepted>(Wait).WorkerIndex);
        await cluster.Terminate();
    }

    /// <summary>
    /// A job resumed from a checkpoint written within epoch 2 by 3 workers, with Cluster:MinWorkers = 2 and only 2 workers ready:
    /// the job host waits Cluster:ResumeWaitSeconds (here 2 s) for the third, saying so, then starts with the 2, and the
    /// coordinator keeps the checkpoint's plan for the rest of epoch 2 (its line names the 3 workers the plan was for). In
    /// Async the checkpoint's minibatches trained ahead (here round 4 of shard 0, 50 samples, and round 6 of shard 2, the
    /// last 33 of its 333) are left out of that rest: the job host hands them on from the checkpoint. The workers are probes:
    /// the test ends once training has started.
    /// </summary>
    [Theory]
    [InlineData(false, 550)]
    [InlineData(true, 467)]
    public async Task A_resume_within_an_epoch_short_of_its_workers_goes_on_with_fewer_after_the_resume_wait(bool asyncTrainedAhead, int left)
    {
        var options = TestData.Options(TestData.Mlp(8, 10), workers: 3, batch: 50, epochs: 2);
        options.Checkpoint = new Core.Configuration.CheckpointOptions { Directory = _owned.TemporaryDirectory("disttrain-resume-fewer-"), Keep = 10, EverySteps = 5 };
        var data = TestData.Normalized();
        await SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout(); // 7 rounds an epoch: a checkpoint at epoch 2, round 3
        // The run was interrupted there: the checkpoints written after it go.
        foreach (var later in new CheckpointStore(options.Checkpoint.Directory, 10).List().TakeWhile(p => !p.Contains("-e0002-r000003", StringComparison.Ordinal)))
            File.Delete(later);
        if (asyncTrainedAhead)
        {
            // The same position as an Async run's, with two minibatches of later rounds trained.
            options.Training.Mode = Core.Configuration.TrainingMode.Async;
            var path = new CheckpointStore(options.Checkpoint.Directory, 10).List()[0];
            var layout = ModelFactory.Build(options.Model).Layout;
            var source = TrainingCheckpoint.Read(path, layout);
            new TrainingCheckpoint(source.Weights, source.OptimizerState, source.OptimizerKind, source.OptimizerSteps, source.Version, source.Epoch,
                source.Round, source.ShardSeed, source.Workers, source.BatchSizePerWorker, source.EpochSamples, source.EpochLossSum, source.JobId,
                source.OptimizerHyperparameters, Core.Configuration.TrainingMode.Async, [(4, 0), (6, 2)], source.TrainSamples)
            {
                DataSettings = source.DataSettings, ModelSettings = source.ModelSettings, RunEpochs = source.RunEpochs, ShardShuffle = source.ShardShuffle,
            }.Write(path, source.WrittenAt!.Value);
        }
        options.Checkpoint.Resume = true;
        options.Cluster.MinWorkers = 2;
        options.Cluster.ResumeWaitSeconds = 2;
        options.Cluster.StartDelaySeconds = 0; // the job host looks at once, and waits the resume wait from its start
        var identity = new JobIdentity(options.Cluster.JobName, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        var listener = _owned.Own(DataPlaneListener.Start(0, certificates: null));
        // A system with the compute dispatcher the parameter server runs on, as a node has.
        var system = _owned.Own(ActorSystem.Create("resume-fewer", AkkaSettings.Dispatchers(1).WithFallback(AkkaSettings.Serialization())));
        var log = LogProbe<Warning>(system);
        var host = system.ActorOf(JobHost.Props(options, new ClusterSecurity(identity, null), listener, data.Train.Count, data.Test.Count, 0, "127.0.0.1",
            new NullTrainingObserver(), new TaskCompletionSource<TrainingResult>()));
        var parameterCount = ModelFactory.Build(options.Model).Layout.TotalLength;
        for (var index = 0; index < 2; index++)
        {
            var (agent, accepted) = Register(host, options, identity);
            Assert.Equal(index, accepted.WorkerIndex);
            agent.Send(host, new WorkerReady(index, CreateTestProbe().Ref));
            Connect(listener.Port).Send(Hello(index, parameterCount, accepted.DataToken!));
        }
        Assert.StartsWith("The checkpoint resumed from was written in the middle of epoch 2 (round 3), whose minibatches were planned for 3 workers: the " +
            "job waits up to 2 s (Cluster:ResumeWaitSeconds) until 3 are ready (2 are now)", FishLog(log, "whose minibatches were planned", "the wait"));
        Assert.Matches(@"^The checkpoint resumed from was written in the middle of epoch 2 \(round 3\), whose minibatches were planned for 3 workers, and 2 " +
            @"are ready after ([2-9]|\d\d+) s \(Cluster:ResumeWaitSeconds\): the job goes on with 2, which train the rest of that epoch's plan\.$",
            FishLog(log, "the job goes on with 2", "going on with fewer"));
        Assert.StartsWith($"Epoch 2 resumes at round 3 with 2 of the 3 workers its checkpoint was planned for: the {left} samples its plan had left",
            FishLog(log, "Epoch 2 resumes", "the coordinator's plan"));
        await system.Terminate();
    }

    /// <summary>
    /// A job host of a 784-10 model that waits for Cluster:MinWorkers = 2 workers for at most
    /// <paramref name="pauseTimeoutSeconds"/> seconds, with no worker registered yet.
    /// </summary>
    private (Core.Configuration.TrainingOptions Options, JobIdentity Identity, TaskCompletionSource<TrainingResult> Completion, IActorRef Host)
        StartJobWaitingForTwoWorkers(int pauseTimeoutSeconds)
    {
        var options = TestData.Options(TestData.Mlp(10), workers: 2, batch: 8, epochs: 1);
        options.Cluster.MinWorkers = 2;
        options.Cluster.PauseTimeoutSeconds = pauseTimeoutSeconds;
        var identity = new JobIdentity(options.Cluster.JobName, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        var listener = _owned.Own(DataPlaneListener.Start(0, certificates: null));
        var completion = new TaskCompletionSource<TrainingResult>();
        var host = Sys.ActorOf(JobHost.Props(options, new ClusterSecurity(identity, null), listener, 1000, 250, 0, "127.0.0.1",
            new NullTrainingObserver(), completion));
        return (options, identity, completion, host);
    }

    [Fact]
    public async Task A_job_whose_workers_are_not_ready_within_the_pause_timeout_ends_telling_its_workers_why()
    {
        var (options, identity, completion, host) = StartJobWaitingForTwoWorkers(pauseTimeoutSeconds: 2);

        // One worker registers (and then, say, dies before its data plane is up); the second never comes.
        var (agent, _) = Register(host, options, identity);

        var error = await Assert.ThrowsAsync<TrainingStalledException>(() => completion.Task.WaitAsync(Wait));
        var match = System.Text.RegularExpressions.Regex.Match(error.Message, @"^The job did not start: after (\d+) s \(Cluster:PauseTimeoutSeconds\) 0 of " +
            @"Cluster:MinWorkers = 2 workers are ready\. Start worker nodes within Cluster:PauseTimeoutSeconds, lower Cluster:MinWorkers, or set " +
            @"Cluster:PauseTimeoutSeconds = 0 to wait for ever\.$");
        Assert.True(match.Success, error.Message);
        // The time waited as measured: never under the timeout, and later only by the scheduler's lag on a loaded machine (CI saw 4 s).
        Assert.InRange(int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), 2, (int)Math.Ceiling(Wait.TotalSeconds));
        var finished = agent.FishForMessage<JobFinished>(_ => true, Wait);
        Assert.False(finished.Succeeded);
        Assert.Equal($"failed: {error.Message}", finished.Summary);
    }

    /// <summary>
    /// After the job has ended, a worker of this job that registers (one that lost its data plane at the very end) is told
    /// the end; a worker of another model is refused with the differences, as before the start: it used to be told this
    /// job's end as if its own had run.
    /// </summary>
    [Fact]
    public async Task After_the_end_a_late_worker_of_this_job_hears_the_end_and_one_of_another_model_is_refused()
    {
        var (options, identity, completion, host) = StartJobWaitingForTwoWorkers(pauseTimeoutSeconds: 1);
        Register(host, options, identity);
        await Assert.ThrowsAsync<TrainingStalledException>(() => completion.Task.WaitAsync(Wait)); // no second worker: the job ends

        var late = CreateTestProbe();
        var other = TestData.Options(TestData.Mlp(12), workers: 2, batch: 8, epochs: 1);
        foreach (var (agent, model) in new[] { (late, options), (CreateTestProbe(), other) })
        {
            agent.Send(host, Registration(model, identity, "akka.tcp://disttrain@127.0.0.1:4101"));
            if (model == options)
                Assert.StartsWith("failed: The job did not start", agent.ExpectMsg<JobFinished>(Wait).Summary);
            else
                Assert.StartsWith("model settings differ from the parameter server's (Model.Layers[0].Units: 12 vs 10", agent.ExpectMsg<RegistrationRefused>(Wait).Reason);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_jobs_end_reaches_the_workers_only_after_the_outputs_are_written(bool saveFails)
    {
        var options = TestData.Options(TestData.Mlp(10), workers: 1, batch: 8, epochs: 1);
        options.Cluster.MinWorkers = 1;
        var identity = new JobIdentity(options.Cluster.JobName, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        var listener = _owned.Own(DataPlaneListener.Start(0, certificates: null));
        var completion = new TaskCompletionSource<TrainingResult>();
        var writing = new TaskCompletionSource<TrainingResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        async Task Save(TrainingResult result)
        {
            writing.SetResult(result);
            await release.Task;
            if (saveFails) throw new IOException("No space left on device");
        }
        var host = Sys.ActorOf(JobHost.Props(options, new ClusterSecurity(identity, null), listener, 1000, 250, 0, "127.0.0.1",
            new NullTrainingObserver(), completion, saveOutputs: Save));
        var (agent, _) = Register(host, options, identity);

        // The job ends with a result (as the coordinator's completion does): the node's save starts, and until it has ended
        // neither the worker nor the node's run hears of the end; a second end is ignored.
        var layout = ModelFactory.Build(options.Model).Layout;
        var result = new TrainingResult(new Core.Tensors.ParameterVector(layout), 42, [new EpochSummary(1, 42, 0.5, 0.6, 0.75, 250, 1000, 1, 0.1)]);
        host.Tell(new JobHost.Done(result, null));
        Assert.Same(result, await writing.Task.WaitAsync(Wait));
        host.Tell(new JobHost.Done(null, new InvalidOperationException("a second end")));
        agent.ExpectNoMsg(TimeSpan.FromMilliseconds(500));
        Assert.False(completion.Task.IsCompleted);

        release.SetResult();
        var finished = agent.FishForMessage<JobFinished>(_ => true, Wait);
        Assert.Equal(!saveFails, finished.Succeeded);
        Assert.Equal(saveFails
            ? "failed: the parameter server could not write its outputs after training (test accuracy 75.00%): No space left on device"
            : "test accuracy 75.00% after 1 epoch", finished.Summary);
        Assert.Same(result, await completion.Task.WaitAsync(Wait)); // the node reports its own save's failure
        agent.ExpectNoMsg(TimeSpan.FromMilliseconds(300)); // told once
    }

    /// <summary>
    /// A job told to resume (Checkpoint:Resume) continues its checkpoint's job, so its first worker is accepted with the
    /// checkpoint's job id, not a new one: a worker keeps the id it was accepted with, and a standby that takes the job over
    /// later searches the checkpoints by the id its workers report (searched only once the workers were ready, the id came
    /// too late, and a takeover after a resume found none of the job's checkpoints).
    /// </summary>
    [Fact]
    public void A_resumed_job_accepts_its_first_worker_with_the_checkpoints_job_id()
    {
        var directory = Directory.CreateTempSubdirectory("disttrain-resume-id-").FullName;
        try
        {
            var options = TestData.Options(TestData.Mlp(10), workers: 2, batch: 8, epochs: 2);
            options.Checkpoint.Directory = directory;
            var weights = ModelFactory.StartingWeights(ModelFactory.Build(options.Model), options.Model, options.Training.Seed);
            var settings = CheckpointResume.Settings(options, "feedc0ffee12", trainSamples: 1000)!;
            var state = Core.Optimization.Optimizer.Create(options.Optimizer, weights.Layout.TrainableLength).State
                .Select(b => (b.Name, new float[weights.Layout.TrainableLength])).ToArray();
            settings.Store.Save(settings.Checkpoint(weights, state, options.Optimizer, 125, 125, new CheckpointPosition(2, 0, 0, 0, 2, [])));
            options.Checkpoint.Resume = true;
            var identity = new JobIdentity(options.Cluster.JobName, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
            var listener = _owned.Own(DataPlaneListener.Start(0, certificates: null));
            var log = LogProbe<Info>();
            var completion = new TaskCompletionSource<TrainingResult>();
            var host = Sys.ActorOf(JobHost.Props(options, new ClusterSecurity(identity, null), listener, 1000, 250, 0, "127.0.0.1",
                new NullTrainingObserver(), completion));

            var (_, accepted) = Register(host, options, identity);
            Assert.Equal("feedc0ffee12", accepted.JobId);
            Assert.Contains("weights version 125, epoch 2 round 0", FishLog(log, "Resuming from checkpoint", "the resume's line"));
            Watch(host);
            Sys.Stop(host);
            ExpectTerminated(host, Wait);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void A_takeover_that_found_the_checkpoint_directory_held_goes_on_and_takes_it_once_the_old_server_lets_go()
    {
        var directory = Directory.CreateTempSubdirectory("disttrain-takeover-lock-").FullName;
        try
        {
            var options = TestData.Options(TestData.Mlp(10), workers: 2, batch: 8, epochs: 1);
            options.Checkpoint.Directory = directory;
            var identity = new JobIdentity(options.Cluster.JobName, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
            var listener = _owned.Own(DataPlaneListener.Start(0, certificates: null));
            var log = LogProbe<Info>();
            var oldServer = CheckpointDirectoryLock.Acquire(directory); // the failed parameter server, still shutting down
            var host = Sys.ActorOf(JobHost.Props(options, new ClusterSecurity(identity, null), listener, 1000, 250, 0, "127.0.0.1",
                new NullTrainingObserver(), new TaskCompletionSource<TrainingResult>(), new FailoverState { WasStandby = true },
                retakeCheckpointDirectoryEvery: TimeSpan.FromMilliseconds(100)));

            // A worker that lost the old parameter server registers: the takeover searches the folder for its checkpoint.
            Register(host, options, identity, lostParameterServerOfJob: "job-1");
            Assert.Contains("goes on without the lock", FishLog(log, "is in use by another running job", "the takeover's warning about the held folder"));
            Assert.Null(CheckpointDirectoryLock.TryAcquire(directory)); // still the old server's

            oldServer.Dispose();
            FishLog(log, "is now held by this job", "the takeover taking the folder once the old server let it go");
            var second = Assert.Throws<CheckpointDirectoryException>(() => CheckpointDirectoryLock.Acquire(directory));
            Assert.True(second.InUse, second.Message);

            Watch(host);
            Sys.Stop(host);
            ExpectTerminated(host, Wait);
            using var free = CheckpointDirectoryLock.TryAcquire(directory);
            Assert.NotNull(free); // a stopped host lets the folder go
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
