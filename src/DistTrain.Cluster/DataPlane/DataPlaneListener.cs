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
public sealed class DataPlaneListener(int port, IActorRef owner) : IDisposable
{
    /// <summary>A worker's connection, after its hello frame.</summary>
    public sealed record Accepted(int WorkerIndex, int ParameterCount, Socket Socket);

    /// <summary>A connection that did not start with a valid hello frame.</summary>
    public sealed record Rejected(string Reason);

    private readonly TcpListener _listener = new(IPAddress.Any, port);
    private readonly CancellationTokenSource _stop = new();

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
            try
            {
                TensorFrame.Tune(socket);
                var hello = TensorFrame.ReadHeader(socket, TensorFrame.HelloType, expectedCount: 0);
                owner.Tell(new Accepted(hello.WorkerIndex, hello.SampleCount, socket));
            }
            catch (Exception e) when (e is IOException or SocketException)
            {
                owner.Tell(new Rejected(e is IOException ? e.Message : $"{TensorFrame.Peer(socket)}: {e.Message}"));
                socket.Dispose();
            }
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
