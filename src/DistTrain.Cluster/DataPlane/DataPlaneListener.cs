using System.Net;
using System.Net.Sockets;
using Akka.Actor;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// Accepts workers' data-plane connections on the parameter server node. Each connection starts with a
/// hello frame naming the worker index; the socket then goes to <paramref name="owner"/> as
/// <see cref="Accepted"/>, which hands it to that worker's <see cref="WorkerLink"/>.
/// </summary>
/// <param name="port">TCP port (Cluster:DataPort).</param>
/// <param name="owner">Receives <see cref="Accepted"/> and <see cref="Rejected"/>.</param>
/// <param name="helloTimeout">How long a new connection may take to send its hello frame before it is refused; null for
/// <see cref="DefaultHelloTimeout"/>.</param>
public sealed class DataPlaneListener(int port, IActorRef owner, TimeSpan? helloTimeout = null) : IDisposable
{
    /// <summary>Time a new connection has to send its hello frame: 10 s, far more than a worker on any network needs.</summary>
    public static readonly TimeSpan DefaultHelloTimeout = TimeSpan.FromSeconds(10);

    /// <summary>A worker's connection, after its hello frame.</summary>
    public sealed record Accepted(int WorkerIndex, int ParameterCount, Socket Socket);

    /// <summary>A connection that did not start with a valid hello frame.</summary>
    public sealed record Rejected(string Reason);

    private readonly TcpListener _listener = new(IPAddress.Any, port);
    private readonly CancellationTokenSource _stop = new();

    /// <summary>The TCP port listened on: the one given, or the one the system chose for port 0. Valid after <see cref="Start"/>.</summary>
    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>Starts listening; accepting runs on a background task.</summary>
    /// <exception cref="SocketException">The port is taken.</exception>
    public void Start()
    {
        _listener.Start();
        _ = Task.Run(AcceptLoop);
    }

    private async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await _listener.AcceptSocketAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }
            // Each connection's hello is read on its own task, so one that sends nothing keeps no other worker out.
            _ = Task.Run(() => Handshake(socket));
        }
    }

    private void Handshake(Socket socket)
    {
        var timeout = helloTimeout ?? DefaultHelloTimeout;
        try
        {
            TensorFrame.Tune(socket);
            socket.ReceiveTimeout = (int)timeout.TotalMilliseconds;
            var hello = TensorFrame.ReadHeader(socket);
            socket.ReceiveTimeout = 0; // the link's reader waits as long as a round takes
            if (hello.Type != TensorFrame.HelloType)
                throw new IOException($"data plane: the first frame has type {hello.Type}, not hello.");
            owner.Tell(new Accepted(hello.WorkerIndex, hello.SampleCount, socket));
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            var reason = e is SocketException { SocketErrorCode: SocketError.TimedOut }
                ? $"data plane: no hello frame within {timeout.TotalSeconds:0.#} s; something else is connected to this port."
                : e.Message;
            owner.Tell(new Rejected($"{EndPoint(socket)}: {reason}"));
            socket.Dispose();
        }
    }

    private static string EndPoint(Socket socket)
    {
        try
        {
            return socket.RemoteEndPoint?.ToString() ?? "an unknown peer";
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return "an unknown peer";
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        _stop.Dispose();
    }
}
