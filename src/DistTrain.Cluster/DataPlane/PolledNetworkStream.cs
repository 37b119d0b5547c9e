using System.Net.Sockets;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// The data plane's <see cref="NetworkStream"/>: a blocking read first waits for bytes with <c>poll(2)</c> on the reading
/// thread (<see cref="Socket.Poll(int, SelectMode)"/>), so the kernel wakes that thread itself when a frame arrives.
/// </summary>
/// <remarks>
/// .NET switches a socket to non-blocking mode for good at its first asynchronous operation, here the connect or accept,
/// the TLS handshake and the hello. A blocking <see cref="NetworkStream.Read(Span{byte})"/> of such a socket that finds no
/// bytes queues itself and waits on an event that the runtime's socket event thread (<c>.NET Sockets</c>, an epoll loop)
/// sets when the socket becomes readable: two threads woken per frame instead of one, on every hop of every step. With
/// the poll first, the read finds its bytes and returns at once. Asynchronous reads (the handshake's) are unchanged.
/// docs/benchmarks.md, "Readers woken by the kernel", has the measurements.
/// </remarks>
/// <param name="socket">The connected socket; the caller owns it (the stream does not close it).</param>
internal sealed class PolledNetworkStream(Socket socket) : NetworkStream(socket, ownsSocket: false)
{
    /// <summary>Microseconds one poll waits before it polls again (1 s). Closing the connection shuts the socket down first
    /// (<see cref="DataPlaneConnection.Dispose"/>), which wakes a poll at once; the bound only keeps a reader from waiting
    /// forever on a socket closed without a shutdown.</summary>
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
            while (!Socket.Poll(PollMicroseconds, SelectMode.SelectRead)) { }
        }
        catch (SocketException e)
        {
            throw ReadFailed(e);
        }
    }

    /// <summary>The <see cref="IOException"/> NetworkStream throws for a failed read, with the socket's error inside.</summary>
    private static IOException ReadFailed(SocketException e) => new($"Unable to read data from the transport connection: {e.Message}.", e);
}
