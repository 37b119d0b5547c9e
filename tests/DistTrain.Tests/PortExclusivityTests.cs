using System.Globalization;
using System.Net;
using System.Net.Sockets;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Metrics;
using DistTrain.Cluster.Security;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;

namespace DistTrain.Tests;

/// <summary>
/// No two sockets listen on one of a node's ports, in any start-up order. Akka.Remote's transport set .NET's
/// <c>ReuseAddress</c>, which on Linux is <c>SO_REUSEPORT</c> too: two nodes started at the same moment both passed the
/// start-up check and both listened on one Cluster:Port, the kernel sharing the connections between two jobs.
/// </summary>
public sealed class PortExclusivityTests
{
    private static int FreePort() => TestPorts.Free();

    /// <summary>
    /// The sockets listening on TCP <paramref name="port"/> in this network namespace, by inode, from /proc/net/tcp and
    /// /proc/net/tcp6 (state 0A is LISTEN; a dual-stack socket appears once, in tcp6).
    /// </summary>
    private static HashSet<string> Listeners(int port)
    {
        var inodes = new HashSet<string>();
        foreach (var table in new[] { "/proc/net/tcp", "/proc/net/tcp6" }.Where(File.Exists))
        {
            foreach (var line in File.ReadLines(table).Skip(1))
            {
                var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length < 10 || fields[3] != "0A") continue;
                var local = fields[1];
                if (int.Parse(local[(local.LastIndexOf(':') + 1)..], NumberStyles.HexNumber, CultureInfo.InvariantCulture) == port) inodes.Add(fields[9]);
            }
        }
        return inodes;
    }

    private static (TrainingOptions Options, ClusterSecurity Security, TrainingData Data) WorkerOnPort(int port)
    {
        var options = TestData.Options(new DistTrain.Core.Models.ModelBuilder(784).Dense(10).Build(), workers: 1, batch: 32, epochs: 1);
        // A seed where nothing listens: the node keeps trying to join, for its 300 s join time-out (its own address as the
        // first seed, which this test used, is refused before the node starts).
        options.Cluster = new ClusterOptions
        {
            Hostname = "127.0.0.1", PublicHostname = "127.0.0.1", Port = port, Tls = false, JobName = "test-job", JoinTimeoutSeconds = 300,
            SeedNodes = [$"akka.tcp://disttrain@127.0.0.1:{FreePort()}"],
        };
        var security = new ClusterSecurity(new JobIdentity("test-job", "0123456789abcdef0123"u8), Certificates: null);
        var data = TrainingData.FromArrays(
            TestData.RawTrain.Features, TestData.RawTrain.Labels.Select(l => (int)l).ToArray(),
            TestData.RawTest.Features, TestData.RawTest.Labels.Select(l => (int)l).ToArray(), featureCount: 784, classCount: 10);
        return (options, security, data);
    }

    /// <summary>Starts a worker node on <paramref name="port"/> and returns once its Akka.Remote socket listens there.</summary>
    private static async Task<Task<Cluster.Protocol.JobFinished>> StartListeningNodeAsync(int port, ClusterSecurity security, TrainingOptions options,
        TrainingData data, CancellationToken stop)
    {
        var node = ClusterNode.RunWorkerAsync(options, security, data, stop);
        var deadline = DateTime.UtcNow.AddSeconds(90);
        while (Listeners(port).Count == 0 && !node.IsCompleted && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.False(node.IsCompleted, $"the first node ended before it listened: {node.Exception}");
        Assert.Single(Listeners(port));
        return node;
    }

    /// <summary>
    /// Two nodes started at the same moment: both start-up checks pass (nothing listens yet), then both actor systems bind
    /// Cluster:Port. Before the fix the second bind succeeded too (both sockets had SO_REUSEPORT), so two nodes listened on
    /// the port; now exactly one listens and the other stops with the taken-port error (exit code 2 on the command line).
    /// </summary>
    [Fact]
    public async Task Two_nodes_started_together_on_one_cluster_port_never_both_listen_and_the_second_stops_with_the_port_in_use()
    {
        if (!OperatingSystem.IsLinux()) return; // SO_REUSEPORT, and /proc/net/tcp, are Linux's
        var port = FreePort();
        var (options, security, data) = WorkerOnPort(port);
        using var _ = security;
        // Both nodes' start-up checks, before either binds.
        PortProbe.EnsureFree("Cluster:Port", "127.0.0.1", port);
        PortProbe.EnsureFree("Cluster:Port", "127.0.0.1", port);

        using var stopFirst = new CancellationTokenSource();
        using var stopSecond = new CancellationTokenSource();
        var first = await StartListeningNodeAsync(port, security, options, data, stopFirst.Token);
        var second = ClusterNode.RunWorkerAsync(options, security, data, stopSecond.Token);
        try
        {
            // Without the fix the second node listened too, and ran on.
            var deadline = DateTime.UtcNow.AddSeconds(90);
            while (!second.IsCompleted && Listeners(port).Count == 1 && DateTime.UtcNow < deadline) await Task.Delay(50);
            Assert.Single(Listeners(port));
            var failure = await Assert.ThrowsAsync<PortInUseException>(() => second);
            Assert.Equal(("Cluster:Port", port), (failure.Key, failure.Port));
            Assert.StartsWith($"Cluster:Port = {port}: the port is in use (Address already in use), probably by another DistTrain cluster or node", failure.Message);
            Assert.False(first.IsCompleted, $"the first node stopped: {first.Exception}");
        }
        finally
        {
            await stopSecond.CancelAsync();
            await stopFirst.CancelAsync();
            await Task.WhenAll(first, second).ContinueWith(_ => { }, TaskScheduler.Default).WaitAsync(TimeSpan.FromSeconds(60));
        }
        Assert.Empty(Listeners(port));
    }

    /// <summary>
    /// Another program that sets SO_REUSEPORT (as .NET's <c>ReuseAddress</c> does on Linux) and binds after the node has
    /// started, which no start-up check of the node can see, cannot listen on any of the node's ports: Cluster:Port (it
    /// could before the fix), Cluster:DataPort and Metrics:Port, on the node's address, every IPv4 address or every
    /// address of both families.
    /// </summary>
    [Fact]
    public async Task A_program_with_SO_REUSEPORT_started_after_a_node_cannot_listen_on_its_cluster_data_plane_or_metrics_port()
    {
        if (!OperatingSystem.IsLinux()) return;
        var port = FreePort();
        var (options, security, data) = WorkerOnPort(port);
        using var _ = security;
        using var dataPlane = DataPlaneListener.Start(FreePort(), certificates: null);
        var metricsPort = FreePort();
        using var metrics = new MetricListener("+", metricsPort);
        metrics.Start();
        using var stop = new CancellationTokenSource();
        var node = await StartListeningNodeAsync(port, security, options, data, stop.Token);
        try
        {
            foreach (var (key, taken) in new[] { ("Cluster:Port", port), ("Cluster:DataPort", dataPlane.Port), ("Metrics:Port", metricsPort) })
            {
                foreach (var address in new[] { IPAddress.Loopback, IPAddress.Any, IPAddress.IPv6Any })
                {
                    using var other = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                    if (address.AddressFamily == AddressFamily.InterNetworkV6) other.DualMode = true;
                    other.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true); // SO_REUSEADDR and SO_REUSEPORT
                    var refused = Record.Exception(() =>
                    {
                        other.Bind(new IPEndPoint(address, taken));
                        other.Listen();
                    });
                    Assert.True(refused is SocketException { SocketErrorCode: SocketError.AddressAlreadyInUse },
                        $"{key} {taken}: another socket listened on {address} beside the node's ({refused?.Message ?? "no error"})");
                }
                Assert.Single(Listeners(taken));
            }
        }
        finally
        {
            await stop.CancelAsync();
            await node.ContinueWith(_ => { }, TaskScheduler.Default).WaitAsync(TimeSpan.FromSeconds(60));
        }
    }

    /// <summary>
    /// Cluster:Port taken by another process after the node's start-up check passed and before Akka.Remote binds it (the
    /// listener here opens when the node prints its start-up line, which comes after the check and before the actor system
    /// starts). The node ended with the right error line, exit code 2, but after about 80 lines: Akka.Remote's ERROR "Failed
    /// to bind" with its stack trace, Akka.Hosting's copy of the whole exception on standard output, and the shutdown's INFO
    /// and ERROR lines. Now the error line is the only line after Akka's "Starting remoting", as the start-up check gives it.
    /// </summary>
    [Theory]
    [InlineData("worker")]
    [InlineData("parameter-server")]
    public async Task A_cluster_port_taken_between_the_check_and_akkas_bind_is_one_error_line_without_akkas_stack_traces(string role)
    {
        for (var attempt = 1; ; attempt++)
        {
            var port = FreePort();
            // A parameter server is its own first seed; a worker whose own address is the first seed is refused before it starts.
            var seedPort = role == "worker" ? FreePort() : port;
            var output = Path.Combine(Path.GetTempPath(), $"disttrain-bindrace-{Guid.NewGuid():N}");
            try
            {
                using var node = new DistTrainProcess(["node", "--role", role, "--config", "configs/fashion-mnist-mlp.json", "--data", TestData.SubsetDirectory,
                    "--output", output], new Dictionary<string, string>
                    {
                        ["DISTTRAIN_Cluster__Secret"] = "0123456789abcdef0123", ["DISTTRAIN_Cluster__Tls"] = "false", ["DISTTRAIN_Cluster__Hostname"] = "127.0.0.1",
                        ["DISTTRAIN_Cluster__PublicHostname"] = "127.0.0.1", ["DISTTRAIN_Cluster__Port"] = port.ToString(CultureInfo.InvariantCulture),
                        ["DISTTRAIN_Cluster__DataPort"] = FreePort().ToString(CultureInfo.InvariantCulture), ["DISTTRAIN_Cluster__SeedNodes__0"] = $"akka.tcp://disttrain@127.0.0.1:{seedPort}",
                    });
                var deadline = DateTime.UtcNow.AddSeconds(90);
                while (!node.Output.Contains("DistTrain cluster node", StringComparison.Ordinal) && !node.HasExited && DateTime.UtcNow < deadline)
                    await Task.Delay(2);
                Assert.True(node.Output.Contains("DistTrain cluster node", StringComparison.Ordinal), $"no start-up line:\n{node.Output}");
                using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                try
                {
                    taken.Bind(new IPEndPoint(IPAddress.Loopback, port));
                    taken.Listen();
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse && attempt < 5)
                {
                    continue; // Akka.Remote bound it first (a slow poll here): the node runs; dispose ends it, and the next attempt tries again
                }
                await node.AssertExitAsync(2, TimeSpan.FromSeconds(90));
                Assert.Equal($"error: Cluster:Port = {port}: the port is in use (Address already in use), probably by another DistTrain cluster or node on " +
                    $"this machine. Pick a free port (DISTTRAIN_Cluster__Port=...) or stop that process.",
                    Assert.Single(node.StandardError.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                        line => !line.StartsWith("warning: Cluster:Tls is false", StringComparison.Ordinal) && !line.StartsWith("removed: the empty run folder", StringComparison.Ordinal)));
                Assert.EndsWith("] Starting remoting", node.StandardOutput.TrimEnd()); // Akka's line before the bind, and nothing after it
                foreach (var text in new[] { "Failed to bind", "Unable to start AkkaHostedService", "[ERROR]", "   at ", "AggregateException", "internal error" })
                    Assert.DoesNotContain(text, node.Output);
                return;
            }
            finally
            {
                if (Directory.Exists(output)) Directory.Delete(output, recursive: true);
            }
        }
    }

    /// <summary>
    /// A Metrics:Port taken after the node's start-up check passed (by a node started at the same moment on the same
    /// port) is named as the check names a taken port; it was "cannot listen on HOST", unlike the other two ports.
    /// </summary>
    [Fact]
    public void A_metrics_port_taken_after_the_start_up_check_is_named_as_the_port_in_use()
    {
        var port = FreePort();
        using var taken = new TcpListener(IPAddress.Loopback, port);
        PortProbe.EnsureFree("Metrics:Port", "localhost", port); // the node's check passes
        taken.Start(); // then another node's endpoint listens
        var options = new TrainingOptions { Metrics = { Hostname = "localhost", Port = port } };
        var failure = Assert.Throws<DistTrain.Cli.MetricsPortException>(() => DistTrain.Cli.MetricsSetup.Start(options, DistTrainMetrics.Node));
        Assert.Equal($"Metrics:Port = {port}: the port is in use (Address already in use), probably by another DistTrain cluster or node on this machine. " +
            "Pick a free port (DISTTRAIN_Metrics__Port=...) or stop that process.", failure.Message);
    }
}
