using System.Globalization;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using DistTrain.Cluster.Security;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// One data-plane connection: the TCP socket and the stream frames travel on (TLS over the socket, or the socket
/// itself with Cluster:Tls false). One thread may read while another writes.
/// </summary>
/// <param name="socket">The connected socket.</param>
/// <param name="stream">The stream over <paramref name="socket"/> that frames are read from and written to.</param>
/// <param name="peer">The other end's address, for logs.</param>
internal sealed class DataPlaneConnection(Socket socket, Stream stream, string peer) : IDisposable
{
    /// <summary>The stream frames travel on.</summary>
    public Stream Stream { get; } = stream;

    /// <summary>The other end's address (<c>IP:port</c>), for logs.</summary>
    public string Peer { get; } = peer;

    /// <summary>
    /// True if the other end connected from loopback or from the very address it connected to (Linux uses a local
    /// destination address as the source): a worker on this machine, which may share memory with this process. A
    /// container with a network of its own connects from its own address and is not; host networking, or a port
    /// forwarded by a proxy, looks local (the offer is then declined by the worker's own checks).
    /// </summary>
    public bool PeerIsOnThisHost
    {
        get
        {
            try
            {
                if (socket.RemoteEndPoint is not IPEndPoint { Address: var remote } || socket.LocalEndPoint is not IPEndPoint { Address: var local })
                    return false;
                if (remote.IsIPv4MappedToIPv6) remote = remote.MapToIPv4();
                if (local.IsIPv4MappedToIPv6) local = local.MapToIPv4();
                return IPAddress.IsLoopback(remote) || remote.Equals(local);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                return false;
            }
        }
    }

    /// <summary>
    /// What protects the connection, for logs: <c>TLS Tls13, TLS_AES_128_GCM_SHA256, peer 'CN=worker'</c> (the
    /// negotiated protocol, cipher suite and the certificate the other end presented) or <c>plain TCP</c>.
    /// </summary>
    public string Security => Stream is SslStream tls
        ? $"TLS {tls.SslProtocol}, {tls.NegotiatedCipherSuite}, peer '{tls.RemoteCertificate?.Subject ?? "no certificate"}'"
        : "plain TCP";

    /// <summary>
    /// <see cref="ConnectAsync"/> with <see cref="DataPlaneListener.HandshakeTimeoutSeconds"/>, waited for on the calling thread.
    /// </summary>
    /// <exception cref="SocketException">The connection failed.</exception>
    /// <exception cref="System.Security.Authentication.AuthenticationException">The TLS handshake failed; the message says why.</exception>
    /// <exception cref="IOException">The other end did not answer in time.</exception>
    public static DataPlaneConnection Connect(string host, int port, ClusterCertificates? certificates, DataPlaneHello hello) =>
        ConnectAsync(host, port, certificates, hello, TimeSpan.FromSeconds(DataPlaneListener.HandshakeTimeoutSeconds), CancellationToken.None)
            .GetAwaiter().GetResult();

    /// <summary>
    /// Connects to a parameter server's or a shard node's data plane, with TLS when <paramref name="certificates"/> is given,
    /// and sends the hello that names this worker and proves its registration. The name lookup, the TCP connect, the TLS
    /// handshake and the hello together have <paramref name="timeout"/> (the listener gives a connection as long for its handshake and hello,
    /// <see cref="DataPlaneListener.HandshakeTimeoutSeconds"/>), so an endpoint that does not accept the connection (a
    /// node that is down behind a firewall that drops packets) or, with TLS, does not answer the handshake (a stuck one)
    /// fails the connect instead of holding it forever. Without TLS a stuck node's kernel still accepts and buffers the hello,
    /// and the connect succeeds. After the name lookup, the connect and the handshake are blocking calls on a thread of
    /// their own, which the deadline ends by closing the socket: the socket is never registered with the runtime's socket event
    /// thread, so frames wake only the thread that reads them (<see cref="PolledNetworkStream"/>).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="timeout"/> is not positive.</exception>
    /// <exception cref="SocketException">The connection failed (refused, no route, an unknown host).</exception>
    /// <exception cref="System.Security.Authentication.AuthenticationException">The TLS handshake failed; the message says why.</exception>
    /// <exception cref="IOException">The other end did not answer within <paramref name="timeout"/>, or the name lookup of
    /// <paramref name="host"/> took longer than that; the message names the endpoint, the time and which of the two it was.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired first (the caller gave up).</exception>
    public static Task<DataPlaneConnection> ConnectAsync(string host, int port, ClusterCertificates? certificates, DataPlaneHello hello,
        TimeSpan timeout, CancellationToken cancellationToken) =>
        ConnectWithLookupAsync(host, port, certificates, hello, timeout, Dns.GetHostAddressesAsync, cancellationToken);

    /// <summary>As <see cref="ConnectAsync(string, int, ClusterCertificates?, DataPlaneHello, TimeSpan, CancellationToken)"/>, looking
    /// the host up with <paramref name="lookUp"/> (tests give a slow one).</summary>
    internal static async Task<DataPlaneConnection> ConnectWithLookupAsync(string host, int port, ClusterCertificates? certificates, DataPlaneHello hello,
        TimeSpan timeout, Func<string, CancellationToken, Task<IPAddress[]>> lookUp, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(timeout);
        var lookupStarted = System.Diagnostics.Stopwatch.GetTimestamp();
        var lookupSeconds = 0.0;
        try
        {
            IPAddress[] addresses;
            try
            {
                addresses = await lookUp(host, deadline.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (deadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                throw SlowLookup(host, port, timeout, lookupStarted, e);
            }
            // A lookup that glibc has begun is not interrupted by the deadline: it may come back, even with addresses, after it.
            if (deadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested) throw SlowLookup(host, port, timeout, lookupStarted, null);
            lookupSeconds = System.Diagnostics.Stopwatch.GetElapsedTime(lookupStarted).TotalSeconds;
            if (addresses.Length == 0) throw new SocketException((int)SocketError.HostNotFound);
            // On a thread of its own: the blocking calls may wait until the deadline, and a thread-pool thread held that long
            // (one per link, K links per worker with shards) would be taken from the actors that share the pool.
            return await Task.Factory.StartNew(() => ConnectBlocking(addresses, host, port, certificates, hello, deadline.Token), CancellationToken.None,
                TaskCreationOptions.LongRunning, TaskScheduler.Default).ConfigureAwait(false);
        }
        catch (Exception e) when (deadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested && e is not SlowLookupException)
        {
            // A lookup that took half the deadline or more left the connect little time: the resolver is named first then.
            if (lookupSeconds >= timeout.TotalSeconds / 2)
                throw new IOException(string.Format(CultureInfo.InvariantCulture,
                    "data plane: {0}:{1} did not answer in the {2:0.0} s its {3:0.###} s deadline left after the name lookup of {0} took {4:0.0} s " +
                    "(TCP connect, TLS handshake and hello): the resolver this node uses is slow (in containers, the container network's DNS), so check " +
                    "it or give that node's Cluster:PublicHostname as an IP address; or the node is down or stuck, or a firewall drops the packets, so " +
                    "check that it runs and listens on that port", host, port, timeout.TotalSeconds - lookupSeconds, timeout.TotalSeconds, lookupSeconds), e);
            throw new IOException(string.Create(CultureInfo.InvariantCulture, $"data plane: {host}:{port} did not answer within {timeout.TotalSeconds:0.###} s") +
                " (TCP connect, TLS handshake and hello): the node is down or stuck, or a firewall drops the packets; check that it runs and listens on that port", e);
        }
        catch (Exception e) when (cancellationToken.IsCancellationRequested && !(e is OperationCanceledException o && o.CancellationToken == cancellationToken))
        {
            // The blocking calls end with the closed socket's error: said as the cancellation it was.
            throw new OperationCanceledException(cancellationToken);
        }
    }

    /// <summary>The name lookup alone outlasted the connect's deadline: said as such, with the time it took.</summary>
    private static SlowLookupException SlowLookup(string host, int port, TimeSpan timeout, long started, Exception? inner)
    {
        var took = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds;
        // A lookup that failed late (glibc gives up on an unknown name only after its retries) keeps its own error in the line.
        var failed = inner is null or OperationCanceledException ? "" : $": {inner.Message}";
        return new(string.Create(CultureInfo.InvariantCulture,
            $"data plane: the name lookup of {host} (for {host}:{port}) did not finish within {timeout.TotalSeconds:0.###} s (it ended after {took:0.#} s{failed})") +
            ", so no connection was tried: the resolver this node uses is slow or does not answer (in containers, the container network's DNS); " +
            "check it, or give that node's Cluster:PublicHostname as an IP address", inner);
    }

    /// <summary>The name lookup of a data plane's host took longer than the connect's whole deadline.</summary>
    private sealed class SlowLookupException(string message, Exception? inner) : IOException(message, inner);

    /// <summary>
    /// The TCP connect (each of <paramref name="addresses"/> in turn, each on a socket of its own), the TLS handshake and the
    /// hello, as blocking calls, so that the socket is never registered with the runtime's socket event thread
    /// (<see cref="PolledNetworkStream"/>); <paramref name="cancel"/> ends them by closing the socket.
    /// </summary>
    /// <exception cref="SocketException">The connection failed (the last address's error).</exception>
    /// <exception cref="System.Security.Authentication.AuthenticationException">The TLS handshake failed.</exception>
    /// <exception cref="IOException">Writing the hello failed.</exception>
    /// <exception cref="ObjectDisposedException">The socket was closed by <paramref name="cancel"/>.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancel"/> fired.</exception>
    private static DataPlaneConnection ConnectBlocking(IPAddress[] addresses, string host, int port, ClusterCertificates? certificates, DataPlaneHello hello,
        CancellationToken cancel)
    {
        for (var i = 0; ; i++)
        {
            cancel.ThrowIfCancellationRequested();
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            Stream? stream = null;
            try
            {
                DataPlaneConnection connection;
                using (cancel.Register(socket.Dispose))
                {
                    TensorFrame.Tune(socket);
                    try
                    {
                        socket.Connect(addresses[i], port);
                    }
                    catch (SocketException) when (i + 1 < addresses.Length && !cancel.IsCancellationRequested)
                    {
                        socket.Dispose();
                        continue; // the next address, on a fresh socket
                    }
                    stream = new PolledNetworkStream(socket);
                    if (certificates is not null) stream = certificates.AuthenticateAsClient(stream, host);
                    connection = new DataPlaneConnection(socket, stream, $"{host}:{port}");
                    hello.Write(connection.Stream); // 48 bytes into a fresh connection's send buffer: never waits for the peer
                } // waits for a closing already under way
                cancel.ThrowIfCancellationRequested();
                return connection;
            }
            catch
            {
                try { stream?.Dispose(); } catch (IOException) { } catch (ObjectDisposedException) { }
                socket.Dispose();
                throw;
            }
        }
    }

    /// <summary>Seconds a refused peer has to close its end after the refusal before the connection is closed anyway.</summary>
    public const double RefusalLingerSeconds = 5;

    /// <summary>Refused connections that may linger at once in this process (<see cref="RefusalLingerSeconds"/> each), as
    /// <see cref="DataPlaneListener.MaxPendingHandshakes"/> caps the connections in their handshake: beyond it a refused
    /// connection is closed as soon as its refusal is written, so junk connections cannot hold sockets for seconds each.</summary>
    public const int MaxLingeringRefusals = 64;

    private static int _lingering; // refused connections lingering now, process-wide

    /// <summary>
    /// Sends the peer a refusal frame naming <paramref name="reason"/> (<see cref="TensorFrame.RefusalType"/>) and closes the
    /// connection. The sending direction is shut at once; bytes the peer still sends are read and dropped until it closes its
    /// end, for at most <see cref="RefusalLingerSeconds"/>: closed with unread bytes, the socket would reset the connection,
    /// and the peer could lose the refusal before reading it. At most <see cref="MaxLingeringRefusals"/> linger at once; a
    /// refusal beyond them closes its connection at once. Returns at once; the rest runs on its own task. Nothing else may
    /// read or write the connection from the call on.
    /// </summary>
    public void Refuse(string reason)
    {
        ArgumentNullException.ThrowIfNull(reason);
        if (TensorFrame.TryWriteRefusal(this, reason) is not null)
        {
            Dispose();
            return;
        }
        if (Interlocked.Increment(ref _lingering) > MaxLingeringRefusals)
        {
            // Too many refused peers hold on already: this one gets its refusal and the close at once (bytes it still
            // sends may reset the connection before it reads the refusal).
            Interlocked.Decrement(ref _lingering);
            Dispose();
            return;
        }
        _ = Task.Run(async () =>
        {
            try
            {
                socket.Shutdown(SocketShutdown.Send);
                using var linger = new CancellationTokenSource(TimeSpan.FromSeconds(RefusalLingerSeconds));
                var buffer = new byte[16 * 1024];
                while (await socket.ReceiveAsync(buffer, SocketFlags.None, linger.Token).ConfigureAwait(false) > 0) { }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException) { }
            finally
            {
                Interlocked.Decrement(ref _lingering);
                Dispose();
            }
        });
    }

    /// <summary>Shuts the connection down (a reader blocked on it wakes with an error) and releases it; safe to call twice.</summary>
    public void Dispose()
    {
        try { socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
        try { Stream.Dispose(); } catch (IOException) { } catch (ObjectDisposedException) { }
        socket.Dispose();
    }
}
