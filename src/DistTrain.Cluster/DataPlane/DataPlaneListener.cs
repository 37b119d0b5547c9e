using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Authentication;
using Akka.Actor;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Security;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// Accepts workers' data-plane connections on a parameter-server node. Bound when the node starts (so a taken port
/// stops it at once), on the address Akka.Remote binds (Cluster:Hostname), it accepts from then on; each connection
/// gets its TLS handshake (with Cluster:Tls, the client certificate checked against the cluster's CA) and its
/// <see cref="DataPlaneHello"/> within <see cref="HandshakeTimeoutSeconds"/>, on its own thread, and then goes to the attached job host as
/// <see cref="Accepted"/>, which checks the hello's token. A connection that fails is closed and reported once as
/// <see cref="Rejected"/>; none of its bytes past the fixed-size hello is read.
/// </summary>
public sealed class DataPlaneListener : IDisposable
{
    /// <summary>Seconds a new connection has for its TLS handshake and hello before it is closed; a worker's link gives its
    /// TCP connect, TLS handshake and hello as long (<see cref="DataPlaneConnection.ConnectAsync"/>).</summary>
    public const double HandshakeTimeoutSeconds = 10;

    /// <summary>Connections in their handshake at once, each on a thread of its own; more are closed unread, so a flood holds
    /// bounded memory and threads.</summary>
    public const int MaxPendingHandshakes = 64;

    /// <summary>A connection whose handshake and hello passed; the job host checks the hello's token.</summary>
    internal sealed record Accepted(DataPlaneHello Hello, DataPlaneConnection Connection);

    /// <summary>A connection that was closed before its hello was complete, with the peer's address and the reason.</summary>
    public sealed record Rejected(string Peer, string Reason);

    private readonly TcpListener _listener;
    private readonly ClusterCertificates? _certificates;
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _pending = new(MaxPendingHandshakes);
    private readonly TimeSpan _handshakeTimeout;
    private volatile IActorRef _owner = ActorRefs.Nobody;

    private DataPlaneListener(TcpListener listener, ClusterCertificates? certificates, TimeSpan handshakeTimeout)
    {
        _listener = listener;
        _certificates = certificates;
        _handshakeTimeout = handshakeTimeout;
    }

    /// <summary>The bound port.</summary>
    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>The address the listener is bound to: <see cref="IPAddress.Any"/> (or <see cref="IPAddress.IPv6Any"/>) for every interface.</summary>
    public IPAddress Address => ((IPEndPoint)_listener.LocalEndpoint).Address;

    /// <summary>Where the listener accepts, for the log: <c>on 127.0.0.1</c>, <c>on every IPv4 interface</c> (0.0.0.0) or <c>on every interface</c> (::).</summary>
    public string Interfaces => Address.Equals(IPAddress.Any) ? "on every IPv4 interface"
        : Address.Equals(IPAddress.IPv6Any) ? "on every interface"
        : $"on {Address}";

    /// <summary>
    /// Binds <paramref name="port"/> where Akka.Remote binds Cluster:Port, <paramref name="host"/> (Cluster:Hostname,
    /// resolved by <see cref="PortProbe.BindAddress"/>), and starts accepting: a node that Akka.Remote keeps to one
    /// address (<c>127.0.0.1</c> on loopback) keeps its data plane there too; <c>0.0.0.0</c> (the default) binds every
    /// IPv4 interface, <c>::</c> every interface of both families.
    /// </summary>
    /// <param name="host">Cluster:Hostname.</param>
    /// <param name="port">Cluster:DataPort (0 picks a free port, for tests).</param>
    /// <param name="certificates">The node's TLS identity; null for plain TCP.</param>
    /// <exception cref="PortInUseException">The port is taken.</exception>
    /// <exception cref="AddressNotLocalException"><paramref name="host"/> is not an address of this machine.</exception>
    /// <exception cref="UnresolvableHostException"><paramref name="host"/> does not resolve to an address.</exception>
    public static DataPlaneListener Start(string host, int port, ClusterCertificates? certificates) =>
        Start(PortProbe.BindAddress(host), port, certificates, TimeSpan.FromSeconds(HandshakeTimeoutSeconds), host);

    /// <summary>Binds <paramref name="port"/> on every IPv4 interface and starts accepting.</summary>
    /// <param name="port">The port (0 picks a free port, for tests).</param>
    /// <param name="certificates">The node's TLS identity; null for plain TCP.</param>
    /// <exception cref="PortInUseException">The port is taken.</exception>
    public static DataPlaneListener Start(int port, ClusterCertificates? certificates) =>
        Start(IPAddress.Any, port, certificates, TimeSpan.FromSeconds(HandshakeTimeoutSeconds), "0.0.0.0");

    /// <summary>
    /// As <see cref="Start(int, ClusterCertificates?)"/>, with <paramref name="handshakeTimeout"/> instead of
    /// <see cref="HandshakeTimeoutSeconds"/> for each connection's TLS handshake and hello (tests use a short one).
    /// </summary>
    /// <exception cref="PortInUseException">The port is taken.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="handshakeTimeout"/> is not positive.</exception>
    internal static DataPlaneListener Start(int port, ClusterCertificates? certificates, TimeSpan handshakeTimeout) =>
        Start(IPAddress.Any, port, certificates, handshakeTimeout, "0.0.0.0");

    private static DataPlaneListener Start(IPAddress address, int port, ClusterCertificates? certificates, TimeSpan handshakeTimeout, string host)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(handshakeTimeout, TimeSpan.Zero);
        var listener = new TcpListener(address, port);
        if (address.Equals(IPAddress.IPv6Any)) listener.Server.DualMode = true; // ::, every interface: IPv4 too, as Akka.Remote
        PortProbe.AllowTimeWait(listener.Server);
        try
        {
            listener.Start();
        }
        catch (SocketException e)
        {
            listener.Server.Dispose();
            throw PortProbe.BindFailure("Cluster:DataPort", host, address, port, e);
        }
        var started = new DataPlaneListener(listener, certificates, handshakeTimeout);
        _ = Task.Run(started.AcceptLoop);
        return started;
    }

    /// <summary>Sends accepted and rejected connections to <paramref name="owner"/> (the job host); before this, connections are closed unread.</summary>
    public void Attach(IActorRef owner) => _owner = owner;

    /// <summary>Stops sending to <paramref name="owner"/> if it is the attached one.</summary>
    public void Detach(IActorRef owner)
    {
        if (_owner.Equals(owner)) _owner = ActorRefs.Nobody;
    }

    private async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptSocketAsync(_stop.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stop.IsCancellationRequested) return;
                continue;
            }
            if (_owner.IsNobody() || !_pending.Wait(0))
            {
                socket.Dispose(); // no job host yet, or too many handshakes in flight
                continue;
            }
            // A thread of its own, for blocking calls (Handshake): at most MaxPendingHandshakes at once, each for at most the timeout.
            try
            {
                new Thread(() => Handshake(socket)) { IsBackground = true, Name = "dataplane-handshake" }.Start();
            }
            catch (Exception e) when (e is OutOfMemoryException or ThreadStartException)
            {
                // No thread to be had (a process limit during a flood): this connection is closed, and the loop goes on.
                socket.Dispose();
                _pending.Release();
            }
        }
    }

    /// <summary>
    /// The TLS handshake and the hello of one accepted connection, as blocking calls; closing the socket at the deadline (or
    /// when the listener stops) ends them. Blocking, because a socket that waited in an asynchronous call stays registered
    /// with the runtime's socket event thread for good, and that thread would then wake on every frame that arrives
    /// (<see cref="PolledNetworkStream"/>).
    /// </summary>
    private void Handshake(Socket socket)
    {
        var peer = "unknown peer";
        Stream? stream = null;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        try
        {
            peer = socket.RemoteEndPoint?.ToString() ?? peer;
            TensorFrame.Tune(socket);
            timeout.CancelAfter(_handshakeTimeout);
            DataPlaneHello hello;
            using (timeout.Token.Register(socket.Dispose))
            {
                stream = new PolledNetworkStream(socket);
                if (_certificates is not null) stream = _certificates.AuthenticateAsServer(stream);
                hello = DataPlaneHello.Read(stream);
            } // waits for a closing already under way
            timeout.Token.ThrowIfCancellationRequested();
            var owner = _owner;
            if (owner.IsNobody()) throw new IOException("no job host runs on this node any more.");
            owner.Tell(new Accepted(hello, new DataPlaneConnection(socket, stream, peer)));
            stream = null; // the job host owns it now
        }
        catch (Exception e)
        {
            // Every failure is caught: one left on this thread would end the process. The connection is refused and closed.
            var reason = _stop.IsCancellationRequested ? "the data-plane listener stopped (the node is shutting down)"
                : timeout.IsCancellationRequested ? string.Create(CultureInfo.InvariantCulture, $"no TLS handshake and hello within {_handshakeTimeout.TotalSeconds:0.###} s")
                : e is IOException or SocketException or AuthenticationException or ObjectDisposedException ? e.Message
                : $"{e.GetType().Name}: {e.Message}";
            _owner.Tell(new Rejected(peer, reason));
            new DataPlaneConnection(socket, stream ?? Stream.Null, peer).Dispose();
        }
        finally
        {
            _pending.Release();
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
    }
}
