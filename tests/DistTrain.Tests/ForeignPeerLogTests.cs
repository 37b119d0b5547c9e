using System.Net;
using System.Net.Sockets;
using Akka.Event;
using DistTrain.Cluster.Hosting;

namespace DistTrain.Tests;

/// <summary>
/// A seed address where another program listens (an HTTP server, a plain TCP server that sends something else) made a
/// worker node log Akka.Remote's errors at every attempt, with the peer's first bytes as hex dumps ("not an SSL/TLS record:
/// 485454...", "Adjusted frame length exceeds 4194304", an undecodable PDU with its stack trace). Now it logs one warning
/// naming the peer and saying it is not a DistTrain node, with what to give in Cluster:SeedNodes.
/// </summary>
public class ForeignPeerLogTests
{
    /// <summary>A worker whose seed is a loopback listener that answers every connection with an HTTP response.</summary>
    [Fact]
    public async Task A_seed_where_an_http_server_listens_is_named_once_as_not_a_DistTrain_node_without_hex_dumps()
    {
        using var server = new TcpListener(IPAddress.Loopback, 0);
        server.Start();
        var port = ((IPEndPoint)server.LocalEndpoint).Port;
        using var stop = new CancellationTokenSource();
        var serving = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                using var client = await server.AcceptTcpClientAsync(stop.Token);
                var stream = client.GetStream();
                await stream.WriteAsync("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"u8.ToArray(), stop.Token);
                await Task.Delay(200, stop.Token);
            }
        });
        try
        {
            using var process = new DistTrainProcess(["node", "--role", "worker", "--config", "configs/fashion-mnist-mlp.json", "--data", TestData.SubsetDirectory],
                new Dictionary<string, string>
                {
                    ["DISTTRAIN_Cluster__Secret"] = "0123456789abcdef0123", ["DISTTRAIN_Cluster__Tls"] = "false", ["DISTTRAIN_Cluster__Hostname"] = "127.0.0.1",
                    ["DISTTRAIN_Cluster__Port"] = "0", ["DISTTRAIN_Cluster__JoinTimeoutSeconds"] = "12",
                    ["DISTTRAIN_Cluster__SeedNodes__0"] = $"akka.tcp://disttrain@127.0.0.1:{port}",
                });
            await process.AssertExitAsync(1, TimeSpan.FromSeconds(120));

            var line = $"The peer at 127.0.0.1:{port} is not a DistTrain node: it does not speak Akka.Remote's protocol (what it sent is not an Akka.Remote frame). " +
                       "If it is in Cluster:SeedNodes, give there the host and Cluster:Port of a parameter-server node (not its Cluster:DataPort or Metrics:Port, " +
                       "nor another program's port), and the same Cluster:Tls on every node.";
            Assert.Single(process.Output.Split('\n'), l => l.Contains(line, StringComparison.Ordinal));
            Assert.DoesNotContain("TooLongFrameException", process.Output);
            Assert.DoesNotContain("Error caught channel", process.Output);
            Assert.Contains("No parameter server accepted this worker within 12 s.", process.Output);
        }
        finally
        {
            await stop.CancelAsync();
            server.Stop();
            await Task.WhenAny(serving, Task.Delay(5000));
        }
    }

    /// <summary>Akka.Remote's PDU decoding failure (an internal type of Akka.Remote).</summary>
    private static Exception PduCodecException(string message, Exception inner) =>
        (Exception)Activator.CreateInstance(typeof(Akka.Remote.Transport.AkkaProtocolException).Assembly.GetType("Akka.Remote.Transport.PduCodecException", throwOnError: true)!,
            System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance, null, [message, inner], null)!;

    [Fact]
    public void Each_peer_is_reported_once_and_other_errors_are_kept()
    {
        var filter = new ForeignPeerLogFilter();
        var logged = new List<string>();
        var notTls = new DotNetty.Handlers.Tls.NotSslRecordException("not an SSL/TLS record: 485454502f312e31");
        Error Channel(Exception cause, int port) =>
            new(cause, "TcpClientHandler (akka://disttrain)", typeof(object), $"Error caught channel [[::ffff:127.0.0.1]:55698->[::ffff:127.0.0.1]:{port}](Id=099b1691)");

        // No actor system to log through yet: kept as Akka.Remote wrote it.
        Assert.Equal(LogFilterDecision.NoDecision, filter.ShouldKeepMessage(Channel(notTls, 25341)));
        filter.LogThrough(logged.Add);

        Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(Channel(notTls, 25341)));
        Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(Channel(new InvalidOperationException("wrapped", notTls), 25341)));
        Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(new Warning("remoting (akka://disttrain)", typeof(object),
            "Tried to associate with unreachable remote address [akka.ssl.tcp://disttrain@127.0.0.1:25341]. Address is now gated for 1000 ms. Reason: " +
            "[Association failed] Caused by: [DotNetty.Handlers.Tls.NotSslRecordException: not an SSL/TLS record: 4854]")));
        Assert.Equal(["The peer at 127.0.0.1:25341 is not a DistTrain node: it does not speak Akka.Remote's protocol (what it sent is not TLS). If it is " +
            "in Cluster:SeedNodes, give there the host and Cluster:Port of a parameter-server node (not its Cluster:DataPort or Metrics:Port, nor another " +
            "program's port), and the same Cluster:Tls on every node."], logged);

        // Another peer, named by Akka.Remote's protocol actor (URL-encoded), is reported once too.
        Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(new Error(
            new Akka.Remote.Transport.AkkaProtocolException("Error while decoding incoming Akka PDU of length 8",
                PduCodecException("Decoding PDU failed", new InvalidDataException("bad tag"))),
            "akka://disttrain/system/transports/akkaprotocolmanager.tcp.0/akkaProtocol-tcp%3A%2F%2Fdisttrain%40ps.example%3A4053-2", typeof(object),
            "Error while decoding incoming Akka PDU of length 8")));
        Assert.Equal(2, logged.Count);
        Assert.StartsWith("The peer at ps.example:4053 is not a DistTrain node: it does not speak Akka.Remote's protocol (what it sent is not an Akka.Remote message).", logged[1]);

        // Other failures are not a foreign peer's: kept, nothing logged.
        Assert.Equal(LogFilterDecision.NoDecision, filter.ShouldKeepMessage(Channel(new IOException("Channel is closed"), 25341)));
        Assert.Equal(LogFilterDecision.NoDecision, filter.ShouldKeepMessage(new Warning("remoting (akka://disttrain)", typeof(object),
            "Tried to associate with unreachable remote address [akka.tcp://disttrain@127.0.0.1:4053]. Reason: [Association failed] Caused by: [Connection refused]")));
        Assert.Equal(2, logged.Count);
    }
}
