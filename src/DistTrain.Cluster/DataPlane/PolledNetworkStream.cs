using System.Net.Sockets;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// The data plane's <see cref="NetworkStream"/>: a blocking read first waits for bytes with <c>poll(2)</c> on the reading
/// thread (<see cref="Socket.Poll(int, SelectMode)"/>), so the kernel wakes that thread itself when a frame arrives.
/// </summary>
/// <remarks>
/// A socket that once waits in an asynchronous call is registered with the runtime's socket event thread (<c>.NET
/// Sockets</c>, an epoll loop) for good, and that thread then wakes on every frame that arrives; a blocking read of a
/// non-blocking socket that finds no bytes is such a wait (it queues itself, and the event thread signals it). The data
/// plane therefore makes its connections with blocking calls (<see cref="DataPlaneConnection.ConnectAsync"/>,
/// <see cref="DataPlaneListener"/>), and reads through this stream, whose poll finds the bytes before the read: each frame
/// wakes the thread that reads it and no other. Asynchronous reads are NetworkStream's, unchanged: the data plane
/// makes none, since one would register the socket. docs/benchmarks.md, "Kept: frames that wake only their reader", has the measurements.
/// </remarks>
/// <param name="socket">The connected socket; the caller owns it (the stream does not close it).</param>
internal sealed class PolledNetworkStream(Socket socket) : NetworkStream(socket, ownsSocket: false)
{
    /// <summary>Microseconds one poll waits before it polls again (1 s). Closing the connection shuts the socket down first
    /// (<see cref="DataPlaneConnection.Dispose"/>), which wakes a poll at once, and on Linux a close alone does too; the bound
    /// is for systems where it does not, on which the closing thread may wait up to that long for the poll to let go.</summary>
    private const int PollMicroseconds = 1_000_000;

    /// <inheritdoc />
    /// <exception cref="ObjectDisposedException">The socket was closed.</exception>
    /// <exception cref="IOException">The connection failed.</exception>
    public override int Read(Span<byte> buffer)
    {
        if (buffer.IsEmpty) return 0;
        WaitReadable();
        try
        {
            // The socket's own receive, as NetworkStream's: its base Read(Span) of a derived stream would call back into
            // Read(byte[], int, int) through a rented array.
            return Socket.Receive(buffer, SocketFlags.None);
        }
        catch (SocketException e)
        {
            throw ReadFailed(e);
        }
    }

    /// <inheritdoc />
    /// <exception cref="ObjectDisposedException">The socket was closed.</exception>
    /// <exception cref="IOException">The connection failed.</exception>
    public override int Read(byte[] buffer, int offset, int count)
    {
        ValidateBufferArguments(buffer, offset, count);
        return Read(buffer.AsSpan(offset, count));
    }

    /// <inheritdoc />
    /// <exception cref="ObjectDisposedException">The socket was closed.</exception>
    /// <exception cref="IOException">The connection failed.</exception>
    public override int ReadByte()
    {
        Span<byte> one = stackalloc byte[1];
        return Read(one) == 0 ? -1 : one[0];
    }

    /// <summary>Returns once the socket has bytes to read, has reached its end, or has failed (the read that follows tells which).</summary>
    private void WaitReadable()
    {
        try
        {
            // An error alone does not make the socket readable: checked too, so that a failed socket cannot spin this loop.
            while (!Socket.Poll(PollMicroseconds, SelectMode.SelectRead) && !Socket.Poll(0, SelectMode.SelectError)) { }
        }
        catch (SocketException e)
        {
            throw ReadFailed(e);
        }
    }

    /// <summary>The <see cref="IOException"/> NetworkStream throws for a failed read, with the socket's error inside.</summary>
    private static IOException ReadFailed(SocketException e) => new($"Unable to read data from the transport connection: {e.Message}.", e);
}
