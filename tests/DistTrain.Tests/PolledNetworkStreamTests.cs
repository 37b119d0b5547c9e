using System.Diagnostics;
using System.Net.Sockets;
using Akka.Actor;
using DistTrain.Cluster.DataPlane;

namespace DistTrain.Tests;

/// <summary>
/// The data plane's stream (<see cref="PolledNetworkStream"/>), also on a socket that an asynchronous operation made
/// non-blocking: reads return what was sent, the end of the connection and failures as a <see cref="NetworkStream"/> does;
/// and on a connection made as production makes one, a frame wakes only the thread that reads it, not the runtime's socket
/// event thread as well. The count of that thread's wake-ups covers every socket of the process; the suite runs its test
/// classes one at a time (xunit.runner.json), so other tests' sockets are idle meanwhile.
/// </summary>
public sealed class PolledNetworkStreamTests
{
    /// <summary>A connected pair whose accepted end has done one asynchronous receive (of the byte 42), which made its socket non-blocking.</summary>
    private static async Task<(Socket Peer, Socket Reader)> NonBlockingPair()
    {
        var (peer, reader) = LoopbackSockets.Pair();
        peer.Send([42]);
        var first = new byte[1];
        Assert.Equal(1, await reader.ReceiveAsync(first, SocketFlags.None));
        Assert.Equal(42, first[0]);
        return (peer, reader);
    }

    [Fact]
    public async Task A_read_that_waits_returns_the_bytes_sent_later_and_0_at_the_end_of_the_connection()
    {
        var (peer, reader) = await NonBlockingPair();
        using var _ = peer;
        using var __ = reader;
        using var stream = new PolledNetworkStream(reader);
        var buffer = new byte[8];
        var read = Task.Run(() => stream.Read(buffer, 2, 5));
        await Task.Delay(100);
        Assert.False(read.IsCompleted); // nothing sent yet: the read waits
        peer.Send([1, 2, 3]);
        Assert.Equal(3, await read.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(new byte[] { 0, 0, 1, 2, 3, 0, 0, 0 }, buffer);
        peer.Send([7]);
        Assert.Equal(7, stream.ReadByte());
        peer.Shutdown(SocketShutdown.Send);
        Assert.Equal(0, stream.Read(buffer));
        Assert.Equal(-1, stream.ReadByte());
    }

    [Fact]
    public async Task A_read_blocked_on_a_connection_that_is_closed_ends_at_once()
    {
        var (peer, reader) = await NonBlockingPair();
        using var _ = peer;
        var connection = new DataPlaneConnection(reader, new PolledNetworkStream(reader), "test peer");
        var read = Task.Run(() => connection.Stream.Read(new byte[4]));
        await Task.Delay(100);
        Assert.False(read.IsCompleted);
        var closed = Stopwatch.StartNew();
        connection.Dispose();
        int? count = null;
        var ended = await Record.ExceptionAsync(async () => count = await read.WaitAsync(TimeSpan.FromSeconds(10)));
        // The shutdown in Dispose wakes the poll: the reader sees the end (0 bytes) or an error, well before the poll's 1 s bound.
        Assert.True(ended is null ? count == 0 : ended is IOException or ObjectDisposedException, $"the read ended with {ended?.ToString() ?? $"{count} bytes"}");
        Assert.True(closed.Elapsed < TimeSpan.FromSeconds(0.9), $"the read took {closed.Elapsed.TotalSeconds:0.00} s to end: the poll was not woken");
    }

    /// <summary>
    /// A connect whose endpoint never answers (a full accept queue) blocks in the kernel on a thread of its own: the caller's
    /// cancellation ends it at once with <see cref="OperationCanceledException"/>, and its deadline with the
    /// <see cref="IOException"/> that names the endpoint and the time.
    /// </summary>
    [Fact]
    public async Task A_blocked_connect_ends_at_once_when_the_caller_cancels_and_at_its_deadline_otherwise()
    {
        using var owned = new OwnedResources("disttrain-polled-");
        var port = LoopbackSockets.BlackHolePort(owned);
        var hello = new DataPlaneHello(0, 10, DataPlaneHello.NewToken());

        using var caller = new CancellationTokenSource();
        var cancelled = DataPlaneConnection.ConnectAsync("127.0.0.1", port, null, hello, TimeSpan.FromSeconds(60), caller.Token);
        await Task.Delay(200);
        Assert.False(cancelled.IsCompleted); // the connect waits
        var clock = Stopwatch.StartNew();
        caller.Cancel();
        var error = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(caller.Token, error.CancellationToken);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"the cancelled connect took {clock.Elapsed.TotalSeconds:0.0} s to end");

        var timedOut = await Assert.ThrowsAsync<IOException>(() => DataPlaneConnection.ConnectAsync("127.0.0.1", port, null, hello, TimeSpan.FromSeconds(0.5),
            CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.StartsWith($"data plane: 127.0.0.1:{port} did not answer within 0.5 s (TCP connect, TLS handshake and hello)", timedOut.Message);
    }

    /// <summary>
    /// A data-plane connection as production makes one (<see cref="DataPlaneConnection.ConnectAsync"/> to a
    /// <see cref="DataPlaneListener"/>, plain or TLS): frames in either direction wake only the thread that reads them. The
    /// runtime's socket event threads (<c>.NET Sockets</c>) stay asleep, because neither end's socket ever waited in an
    /// asynchronous call, which would register it with them for good. The control: a plain <see cref="NetworkStream"/> on a
    /// socket that did wait in one wakes them about once per read, so the count can tell the two apart.
    /// </summary>
    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Frames_on_a_data_plane_connection_wake_only_their_reader_not_the_socket_event_threads(bool tls)
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "the count is read from Linux's /proc");
        const int Reads = 200;
        var directory = Directory.CreateTempSubdirectory("disttrain-polled-").FullName;
        try
        {
            var authority = new TestCertificates(directory, "cluster-ca");
            using var server = tls ? authority.Load("ps") : null;
            using var client = tls ? authority.Load("worker") : null;
            using var listener = DataPlaneListener.Start(0, server);
            using var system = ActorSystem.Create("polled-stream-test", Cluster.Hosting.AkkaSettings.Logging("WARNING"));
            var accepted = new TaskCompletionSource<object>(TaskCreationOptions.RunContinuationsAsynchronously);
            listener.Attach(system.ActorOf(Props.Create(() => new ForwardActor(accepted))));
            using var workerSide = await DataPlaneConnection.ConnectAsync("127.0.0.1", listener.Port, client, new DataPlaneHello(0, 10, DataPlaneHello.NewToken()),
                TimeSpan.FromSeconds(10), CancellationToken.None);
            using var serverSide = Assert.IsType<DataPlaneListener.Accepted>(await accepted.Task.WaitAsync(TimeSpan.FromSeconds(15))).Connection;

            var toWorker = await EventThreadSwitchesDuring(serverSide.Stream, workerSide.Stream, Reads);
            var toServer = await EventThreadSwitchesDuring(workerSide.Stream, serverSide.Stream, Reads);

            var (peer, registered) = LoopbackSockets.Pair();
            using var _ = peer;
            using var __ = registered;
            var first = registered.ReceiveAsync(new byte[1], SocketFlags.None); // waits: the socket is registered
            await Task.Delay(50);
            peer.Send([42]);
            await first.WaitAsync(TimeSpan.FromSeconds(10));
            using var plainStream = new NetworkStream(registered, ownsSocket: false);
            using var peerStream = new NetworkStream(peer, ownsSocket: false);
            var control = await EventThreadSwitchesDuring(peerStream, plainStream, Reads);

            Assert.True(control >= Reads / 2, $"a plain NetworkStream on a registered socket woke the socket event threads {control} times in {Reads} reads");
            Assert.True(toWorker < Reads / 10, $"frames to the worker's end woke the socket event threads {toWorker} times in {Reads} reads (the control: {control})");
            Assert.True(toServer < Reads / 10, $"frames to the server's end woke the socket event threads {toServer} times in {Reads} reads (the control: {control})");
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>The context switches of the runtime's socket event threads (<c>.NET Sockets</c>) while <paramref name="reader"/>
    /// reads <paramref name="reads"/> bytes that <paramref name="writer"/> sends one by one, about 1 ms apart.</summary>
    private static async Task<long> EventThreadSwitchesDuring(Stream writer, Stream reader, int reads)
    {
        var before = EventThreadSwitches();
        var sender = Task.Run(() =>
        {
            for (var i = 0; i < reads; i++)
            {
                Thread.Sleep(1);
                writer.Write([(byte)i]);
                writer.Flush();
            }
        });
        var receiver = Task.Run(() =>
        {
            var one = new byte[1];
            for (var i = 0; i < reads; i++)
            {
                reader.ReadExactly(one);
                Assert.Equal((byte)i, one[0]);
            }
        });
        await Task.WhenAll(sender, receiver).WaitAsync(TimeSpan.FromSeconds(30)); // a failed sender cannot leave the reader waiting forever
        return EventThreadSwitches() - before;
    }

    private sealed class ForwardActor : ReceiveActor
    {
        public ForwardActor(TaskCompletionSource<object> received) => ReceiveAny(message => received.TrySetResult(message));
    }

    /// <summary>Voluntary and involuntary context switches so far of this process's threads named <c>.NET Sockets</c> (Linux's <c>/proc</c>).</summary>
    private static long EventThreadSwitches()
    {
        long total = 0;
        foreach (var task in Directory.GetDirectories("/proc/self/task"))
        {
            try
            {
                if (File.ReadAllText(Path.Combine(task, "comm")).Trim() != ".NET Sockets") continue;
                foreach (var line in File.ReadLines(Path.Combine(task, "status")))
                    if (line.StartsWith("voluntary_ctxt_switches:", StringComparison.Ordinal) || line.StartsWith("nonvoluntary_ctxt_switches:", StringComparison.Ordinal))
                        total += long.Parse(line[(line.IndexOf(':') + 1)..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
            }
            catch (IOException) { } // a thread that ended meanwhile
        }
        return total;
    }
}
