using System.Net;
using System.Net.Sockets;

namespace DistTrain.Tests;

/// <summary>TCP connections on loopback for data-plane tests, on a port the system picks.</summary>
internal static class LoopbackSockets
{
    /// <summary>A connected pair: the end that connected and the end the listener accepted. The caller disposes both.</summary>
    public static (Socket Connected, Socket Accepted) Pair()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var connected = new Socket(SocketType.Stream, ProtocolType.Tcp);
        connected.Connect(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
        return (connected, listener.AcceptSocket());
    }

    /// <summary>
    /// A loopback port whose listener's accept queue is full (backlog 0, filled by connections nobody accepts): the kernel drops
    /// every further connection request, so a connect to it neither completes nor fails, as to a black-holed endpoint. The
    /// listener and the fillers are <paramref name="owned"/>'s.
    /// </summary>
    public static int BlackHolePort(OwnedResources owned)
    {
        var listener = owned.Own(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(0);
        var at = (IPEndPoint)listener.LocalEndPoint!;
        for (var i = 0; i < 64; i++)
        {
            var filler = owned.Own(new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp));
            using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(2)); // a loopback connect that is answered takes microseconds
            try
            {
                filler.ConnectAsync(at, patience.Token).AsTask().GetAwaiter().GetResult();
            }
            catch (OperationCanceledException)
            {
                return at.Port; // not answered: the queue is full
            }
        }
        Assert.Fail($"the accept queue of 127.0.0.1:{at.Port} (backlog 0) still took connections after 64");
        return 0;
    }
}
