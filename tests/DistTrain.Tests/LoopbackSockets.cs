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
}
