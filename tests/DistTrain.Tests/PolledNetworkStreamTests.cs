using System.Diagnostics;
using System.Net.Sockets;
using DistTrain.Cluster.DataPlane;

namespace DistTrain.Tests;

/// <summary>
/// The data plane's stream (<see cref="PolledNetworkStream"/>) on a socket that an asynchronous operation made non-blocking,
/// as every data-plane socket is after its connect, handshake and hello: reads return what was sent, the end of the
/// connection and failures as a <see cref="NetworkStream"/> does, and a read that waits is woken by the kernel on the
/// reading thread, not through the runtime's socket event thread.
/// </summary>
[Collection(AllocationMeasurements.Name)] // alone: the event threads' context switches count every socket of the process
public sealed class PolledNetworkStreamTests
{
    /// <summary>A connected pair whose accepted end has done one asynchronous receive (of the byte 42), as a handshake does.</summary>
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
    public async Task A_read_blocked_on_a_connection_that_is_closed_ends_with_an_error_at_once()
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

    [Fact]
    public async Task A_read_that_waits_is_woken_on_its_own_thread_not_through_the_socket_event_thread()
    {
        const int Reads = 200;
        var plain = await EventThreadSwitchesDuring(reader => new NetworkStream(reader, ownsSocket: false), Reads);
        var polled = await EventThreadSwitchesDuring(reader => new PolledNetworkStream(reader), Reads);
        // A plain NetworkStream's blocking read of a non-blocking socket waits for the event thread's signal: the event thread
        // wakes about once per read. If it does not, this measurement cannot tell the two streams apart.
        Assert.True(plain >= Reads / 2, $"a plain NetworkStream woke the socket event threads {plain} times in {Reads} reads");
        Assert.True(polled < Reads / 10, $"the polled stream woke the socket event threads {polled} times in {Reads} reads (a plain one: {plain})");
    }

    /// <summary>The context switches of the runtime's socket event threads (<c>.NET Sockets</c>) while a reader reads
    /// <paramref name="reads"/> bytes that a peer sends one by one, about 1 ms apart.</summary>
    private static async Task<long> EventThreadSwitchesDuring(Func<Socket, Stream> streamOf, int reads)
    {
        var (peer, reader) = await NonBlockingPair();
        using var _ = peer;
        using var __ = reader;
        using var stream = streamOf(reader);
        var before = EventThreadSwitches();
        var sender = Task.Run(() =>
        {
            for (var i = 0; i < reads; i++)
            {
                Thread.Sleep(1);
                peer.Send([(byte)i]);
            }
        });
        var one = new byte[1];
        for (var i = 0; i < reads; i++)
        {
            Assert.Equal(1, stream.Read(one));
            Assert.Equal((byte)i, one[0]);
        }
        await sender;
        return EventThreadSwitches() - before;
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
