using System.Net;
using System.Net.Sockets;
using System.Security.Authentication;
using Akka.Actor;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Security;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// Accepts workers' data-plane connections on a parameter-server node. Bound when the node starts (so a taken port
/// stops it at once), it accepts from then on; each connection gets its TLS handshake (with Cluster:Tls, the client
/// certificate checked against the cluster's CA) and its <see cref="DataPlaneHello"/> within
/// <see cref="HandshakeTimeoutSeconds"/>, on its own task, and then goes to the attached job host as
/// <see cref="Accepted"/>, which checks the hello's token. A connection that fails is closed and reported once as
/// <see cref="Rejected"/>; none of its bytes past the fixed-size hello is read.
/// </summary>
public sealed class DataPlaneListener : IDisposable
{
    /// <summary>Seconds a new connection has for its TLS handshake and hello before it is closed.</summary>
    public const double HandshakeTimeoutSeconds = 10;

    /// <summary>Connections in their handshake at once; more are closed unread, so a flood holds bounded memory.</summary>
    public const int MaxPendingHandshakes = 64;

    /// <summary>A connection whose handshake and hello passed; the job host checks the hello's token.</summary>
    internal sealed record Accepted(DataPlaneHello Hello, DataPlaneConnection Connection);

    /// <summary>A connection that was closed before its hello was complete, with the peer's address and the reason.</summary>
    public sealed record Rejected(string Peer, string Reason);

    private readonly TcpListener _listener;
    private readonly ClusterCertificates? _certificates;
    private readonly CancellationTokenSource _stop = new();
    private readonly SemaphoreSlim _pending = new(MaxPendingHandshakes);
    private volatile IActorRef _owner = ActorRefs.Nobody;

    private DataPlaneListener(TcpListener listener, ClusterCertificates? certificates)
    {
        _listener = listener;
        _certificates = certificates;
    }

    /// <summary>The bound port.</summary>
    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>Binds <paramref name="port"/> on every interface and starts accepting.</summary>
    /// <param name="port">Cluster:DataPort (0 picks a free port, for tests).</param>
    /// <param name="certificates">The node's TLS identity; null for plain TCP.</param>
    /// <exception cref="PortInUseException">The port is taken.</exception>
    public static DataPlaneListener Start(int port, ClusterCertificates? certificates)
    {
        var listener = new TcpListener(IPAddress.Any, port);
        PortProbe.AllowTimeWait(listener.Server);
        try
        {
            listener.Start();
        }
        catch (SocketException e)
        {
            listener.Server.Dispose();
            throw new PortInUseException("Cluster:DataPort", port, e);
        }
        var started = new DataPlaneListener(listener, certificates);
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
            _ = Task.Run(() => HandshakeAsync(socket));
        }
    }

    private async Task HandshakeAsync(Socket socket)
    {
        var peer = socket.RemoteEndPoint?.ToString() ?? "unknown peer";
        Stream? stream = null;
        try
        {
            TensorFrame.Tune(socket);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            timeout.CancelAfter(TimeSpan.FromSeconds(HandshakeTimeoutSeconds));
            stream = new NetworkStream(socket, ownsSocket: false);
            if (_certificates is not null) stream = await _certificates.AuthenticateAsServerAsync(stream, timeout.Token).ConfigureAwait(false);
            var hello = await DataPlaneHello.ReadAsync(stream, timeout.Token).ConfigureAwait(false);
            var owner = _owner;
            if (owner.IsNobody()) throw new IOException("no job host runs on this node any more.");
            owner.Tell(new Accepted(hello, new DataPlaneConnection(socket, stream, peer)));
            stream = null; // the job host owns it now
        }
        catch (Exception e) when (e is IOException or SocketException or AuthenticationException or OperationCanceledException or ObjectDisposedException)
        {
            var reason = e is OperationCanceledException ? $"no TLS handshake and hello within {HandshakeTimeoutSeconds:F0} s" : e.Message;
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
