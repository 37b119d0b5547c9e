using System.Net;
using System.Net.Sockets;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Security;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;

namespace DistTrain.Tests;

/// <summary>
/// The data plane listens where Akka.Remote does (Cluster:Hostname): it listened on every interface, also for a cluster
/// kept to loopback (<c>deploy/local/cluster.sh</c>, Cluster:Hostname 127.0.0.1).
/// </summary>
public sealed class DataPlaneAddressTests
{
    private static int FreePort() => TestPorts.Free();

    /// <summary>Null when a TCP connection to <paramref name="address"/>:<paramref name="port"/> is accepted, else the error.</summary>
    private static SocketError? Connect(IPAddress address, int port)
    {
        using var client = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            client.Connect(new IPEndPoint(address, port));
            return null;
        }
        catch (SocketException e)
        {
            return e.SocketErrorCode;
        }
    }

    /// <summary>127.0.0.2 is this machine too (Linux routes 127.0.0.0/8 to loopback), but not the address 127.0.0.1.</summary>
    private static readonly IPAddress OtherLoopback = IPAddress.Parse("127.0.0.2");

    [Fact]
    public async Task A_parameter_server_on_cluster_hostname_127_0_0_1_accepts_data_plane_connections_there_only()
    {
        if (!OperatingSystem.IsLinux()) return; // 127.0.0.2 is a local address on Linux only
        var dataPort = FreePort();
        var port = FreePort();
        var options = TestData.Options(new DistTrain.Core.Models.ModelBuilder(784).Dense(10).Build(), workers: 1, batch: 32, epochs: 1);
        options.Cluster = new ClusterOptions
        {
            Hostname = "127.0.0.1", Port = port, DataPort = dataPort, Tls = false, JobName = "test-job", MinWorkers = 1,
            SeedNodes = [$"akka.tcp://disttrain@127.0.0.1:{port}"],
        };
        using var security = new ClusterSecurity(new JobIdentity("test-job", "0123456789abcdef0123"u8), Certificates: null);
        var data = TrainingData.FromArrays(
            TestData.RawTrain.Features, TestData.RawTrain.Labels.Select(l => (int)l).ToArray(),
            TestData.RawTest.Features, TestData.RawTest.Labels.Select(l => (int)l).ToArray(), featureCount: 784, classCount: 10);
        using var stop = new CancellationTokenSource();
        var node = new Trainer(options) { Security = security }.RunParameterServerAsync(data, cancellationToken: stop.Token);
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (Connect(IPAddress.Loopback, dataPort) is not null && !node.IsCompleted && DateTime.UtcNow < deadline) await Task.Delay(50);
            Assert.False(node.IsCompleted, $"the node ended: {node.Exception}");
            Assert.Null(Connect(IPAddress.Loopback, dataPort));
            // Bound to every interface, as before, it accepted this too.
            Assert.Equal(SocketError.ConnectionRefused, Connect(OtherLoopback, dataPort));
        }
        finally
        {
            await stop.CancelAsync();
            await node.ContinueWith(_ => { }, TaskScheduler.Default).WaitAsync(TimeSpan.FromSeconds(60));
        }
    }

    /// <summary>Each form of Cluster:Hostname binds where Akka.Remote would: every interface, one address, a name's IPv4 address.</summary>
    [Fact]
    public void The_listener_binds_every_interface_for_0_0_0_0_and_colons_and_the_one_address_otherwise()
    {
        if (!OperatingSystem.IsLinux()) return;
        using (var every = DataPlaneListener.Start("0.0.0.0", 0, certificates: null))
        {
            Assert.Equal(IPAddress.Any, every.Address);
            Assert.Equal("on every IPv4 interface", every.Interfaces);
            Assert.Null(Connect(OtherLoopback, every.Port));
        }
        using (var both = DataPlaneListener.Start("::", 0, certificates: null))
        {
            Assert.Equal(IPAddress.IPv6Any, both.Address);
            Assert.Equal("on every interface", both.Interfaces);
            Assert.Null(Connect(OtherLoopback, both.Port)); // dual-stack: IPv4 too
            Assert.Null(Connect(IPAddress.IPv6Loopback, both.Port));
        }
        foreach (var host in new[] { "127.0.0.1", "localhost" })
        {
            using var one = DataPlaneListener.Start(host, 0, certificates: null);
            Assert.Equal(IPAddress.Loopback, one.Address);
            Assert.Equal("on 127.0.0.1", one.Interfaces);
            Assert.Null(Connect(IPAddress.Loopback, one.Port));
            Assert.Equal(SocketError.ConnectionRefused, Connect(OtherLoopback, one.Port));
        }
    }

    /// <summary>Workers dial the data plane where it listens: Cluster:PublicHostname, else Cluster:Hostname when that is
    /// one address (it was the machine's host name, which need not resolve to that address), else the host name.</summary>
    [Fact]
    public void Workers_are_sent_the_public_host_else_the_one_bound_address_else_the_machines_host_name()
    {
        Assert.Equal("ps", ClusterNode.DataHost(new ClusterOptions { Hostname = "0.0.0.0", PublicHostname = "ps" }));
        Assert.Equal("ps", ClusterNode.DataHost(new ClusterOptions { Hostname = "127.0.0.1", PublicHostname = "ps" }));
        Assert.Equal("127.0.0.1", ClusterNode.DataHost(new ClusterOptions { Hostname = "127.0.0.1" }));
        Assert.Equal("10.1.2.3", ClusterNode.DataHost(new ClusterOptions { Hostname = "10.1.2.3", PublicHostname = " " }));
        foreach (var every in new[] { "0.0.0.0", "::", "[::]" })
            Assert.Equal(Dns.GetHostName(), ClusterNode.DataHost(new ClusterOptions { Hostname = every }));
    }
}
