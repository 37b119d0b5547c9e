using System.Net;
using DistTrain.Cli;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;

namespace DistTrain.Tests;

/// <summary>
/// A Cluster:Hostname that resolves, but to an address that is not this machine's (the address other nodes dial, given
/// where the node's own belongs), failed the bind with EADDRNOTAVAIL, which the start-up check reported as "Cluster:Port = P:
/// the port is in use (Cannot assign requested address), probably by another DistTrain cluster", the data-plane listener as
/// Cluster:DataPort in use, and Akka.Remote's own bind (Cluster:Port 0, which the check skips) as an internal error with a
/// stack trace. Each now says the address is not this machine's and what to set: Cluster:Hostname to an address of this
/// machine or 0.0.0.0, and Cluster:PublicHostname for the address others dial; exit code 2.
/// 203.0.113.1 is TEST-NET-3 (RFC 5737), on no machine's interface.
/// </summary>
public class NotLocalHostnameTests
{
    private const string Elsewhere = "203.0.113.1";

    private static void SkipIfLocal() =>
        Skip.If(PortProbe.LocalAddresses().Contains(IPAddress.Parse(Elsewhere)), $"{Elsewhere} is an address of this machine");

    [SkippableFact]
    public void The_start_up_check_says_the_host_is_not_this_machines_not_that_the_port_is_in_use()
    {
        SkipIfLocal();
        var failure = Assert.Throws<AddressNotLocalException>(() => PortProbe.EnsureFree("Cluster:Port", Elsewhere, 25331));

        Assert.Equal(("Cluster:Hostname", Elsewhere), (failure.Key, failure.Host));
        Assert.StartsWith($"Cluster:Hostname = '{Elsewhere}' is not an address of this machine (Cannot assign requested address), so this node " +
            "cannot listen on it. Set Cluster:Hostname (DISTTRAIN_Cluster__Hostname=...) to an address of this machine (127.0.0.1", failure.Message);
        Assert.EndsWith(", or 0.0.0.0 for every interface; the address the other nodes reach this node at goes in Cluster:PublicHostname " +
            "(DISTTRAIN_Cluster__PublicHostname=...).", failure.Message);
        Assert.DoesNotContain("in use", failure.Message);
        Assert.Equal(System.Net.Sockets.SocketError.AddressNotAvailable, Assert.IsType<System.Net.Sockets.SocketException>(failure.InnerException).SocketErrorCode);

        var metrics = Assert.Throws<AddressNotLocalException>(() => PortProbe.EnsureFree("Metrics:Port", Elsewhere, 25332));
        Assert.Equal("Metrics:Hostname", metrics.Key);
        Assert.StartsWith($"Metrics:Hostname = '{Elsewhere}' is not an address of this machine (Cannot assign requested address), so the metrics " +
            "endpoint cannot listen on it. Set Metrics:Hostname (DISTTRAIN_Metrics__Hostname=...) to + for every interface, localhost for this machine " +
            "only, or an address of this machine (127.0.0.1", metrics.Message);
    }

    [SkippableFact]
    public void The_data_plane_listener_says_the_host_is_not_this_machines()
    {
        SkipIfLocal();
        var failure = Assert.Throws<AddressNotLocalException>(() => DataPlaneListener.Start(Elsewhere, 0, certificates: null));

        Assert.Equal(("Cluster:Hostname", Elsewhere), (failure.Key, failure.Host));
        Assert.StartsWith($"Cluster:Hostname = '{Elsewhere}' is not an address of this machine", failure.Message);
    }

    /// <summary>With Cluster:Port 0 the start-up check binds nothing, so Akka.Remote's bind is the first to fail.</summary>
    [SkippableFact]
    public async Task A_node_with_port_0_fails_with_the_same_line_and_exit_2_not_an_internal_error()
    {
        SkipIfLocal();
        var options = TestData.Options(new DistTrain.Core.Models.ModelBuilder(784).Dense(10).Build(), workers: 1, batch: 32, epochs: 1);
        options.Cluster = new DistTrain.Core.Configuration.ClusterOptions
        {
            Hostname = Elsewhere, Port = 0, Tls = false, JobName = "test-job", JoinTimeoutSeconds = 30,
            SeedNodes = ["akka.tcp://disttrain@127.0.0.1:25108"],
        };
        using var security = new DistTrain.Cluster.Security.ClusterSecurity(
            new DistTrain.Cluster.Security.JobIdentity("test-job", "0123456789abcdef0123"u8), Certificates: null);
        var data = DistTrain.Core.Data.TrainingData.FromArrays(
            TestData.RawTrain.Features, TestData.RawTrain.Labels.Select(l => (int)l).ToArray(),
            TestData.RawTest.Features, TestData.RawTest.Labels.Select(l => (int)l).ToArray(), featureCount: 784, classCount: 10);

        var failure = await Assert.ThrowsAsync<AddressNotLocalException>(() =>
            ClusterNode.RunWorkerAsync(options, security, data, CancellationToken.None).WithTestTimeout(60));
        Assert.Equal(("Cluster:Hostname", Elsewhere), (failure.Key, failure.Host));
        Assert.StartsWith($"Cluster:Hostname = '{Elsewhere}' is not an address of this machine (Cannot assign requested address)", failure.Message);
        Assert.DoesNotContain('\n', failure.Message);

        Assert.Equal(2, await CliConsole.RunTrainingAsync(() => throw failure));
    }

    /// <summary>
    /// Metrics:Hostname through the CLI, as Cluster:Hostname is above: a node (parameter server, and a worker with Cluster:Port 0,
    /// whose start-up check binds nothing for the cluster) and train each exit 2 with the one line naming Metrics:Hostname, its
    /// value and the fix, without a stack trace, and leave no run folder.
    /// </summary>
    [SkippableTheory]
    [InlineData("node", "parameter-server")]
    [InlineData("node", "worker")]
    [InlineData("train", null)]
    public async Task A_non_local_metrics_hostname_exits_2_through_the_cli_with_one_line_naming_it(string command, string? role)
    {
        SkipIfLocal();
        var output = Directory.CreateTempSubdirectory("disttrain-metrics-elsewhere-").FullName;
        try
        {
            string[] arguments = role is null
                ? [command, "--config", "configs/fashion-mnist-mlp.json", "--data", TestData.SubsetDirectory, "--output", output]
                : [command, "--role", role, "--config", "configs/fashion-mnist-mlp.json", "--data", TestData.SubsetDirectory, "--output", output];
            using var process = new DistTrainProcess(arguments, new Dictionary<string, string>
            {
                ["DISTTRAIN_Cluster__Secret"] = "0123456789abcdef0123", ["DISTTRAIN_Cluster__Tls"] = "false", ["DISTTRAIN_Cluster__Hostname"] = "127.0.0.1",
                ["DISTTRAIN_Cluster__Port"] = "0", ["DISTTRAIN_Cluster__SeedNodes__0"] = "akka.tcp://disttrain@127.0.0.1:25109",
                ["DISTTRAIN_Metrics__Hostname"] = Elsewhere, ["DISTTRAIN_Metrics__Port"] = "25110",
            });
            await process.AssertExitAsync(2, TimeSpan.FromSeconds(60));

            // A parameter server made its run folder before the check: it says it removed it ("removed: the empty run folder ...").
            var line = Assert.Single(process.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                l => !l.StartsWith("removed: the empty run folder ", StringComparison.Ordinal));
            Assert.StartsWith($"error: Metrics:Hostname = '{Elsewhere}' is not an address of this machine (Cannot assign requested address), so the metrics " +
                "endpoint cannot listen on it. Set Metrics:Hostname (DISTTRAIN_Metrics__Hostname=...) to + for every interface, localhost for this machine " +
                "only, or an address of this machine (127.0.0.1", line);
            Assert.DoesNotContain("Cluster:Hostname", line);
            Assert.DoesNotContain("in use", line);
            Assert.DoesNotContain("   at ", process.Output + process.Error);
            Assert.Empty(Directory.GetFileSystemEntries(output)); // no run folder left
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }

    /// <summary>A host name is named with the address it resolved to; this machine's addresses are listed (at most six).</summary>
    [Fact]
    public void A_host_name_is_named_with_the_address_it_resolves_to_and_this_machines_addresses()
    {
        var bind = new System.Net.Sockets.SocketException((int)System.Net.Sockets.SocketError.AddressNotAvailable);
        Assert.Equal($"Cluster:Hostname = 'ps.example' is not an address of this machine (it resolves to {Elsewhere}; {bind.Message}), so this node " +
            "cannot listen on it. Set Cluster:Hostname (DISTTRAIN_Cluster__Hostname=...) to an address of this machine (127.0.0.1, 10.0.0.7), or 0.0.0.0 " +
            "for every interface; the address the other nodes reach this node at goes in Cluster:PublicHostname (DISTTRAIN_Cluster__PublicHostname=...).",
            AddressNotLocalException.Describe("Cluster:Hostname", "ps.example", IPAddress.Parse(Elsewhere), bind, [IPAddress.Loopback, IPAddress.Parse("10.0.0.7")]));
        Assert.Equal($"Cluster:Hostname = '{Elsewhere}' is not an address of this machine ({bind.Message}), so this node cannot listen on it. Set " +
            "Cluster:Hostname (DISTTRAIN_Cluster__Hostname=...) to an address of this machine, or 0.0.0.0 for every interface; the address the other " +
            "nodes reach this node at goes in Cluster:PublicHostname (DISTTRAIN_Cluster__PublicHostname=...).",
            AddressNotLocalException.Describe("Cluster:Hostname", Elsewhere, IPAddress.Parse(Elsewhere), bind, []));
        Assert.IsType<PortInUseException>(PortProbe.BindFailure("Cluster:Port", "127.0.0.1", IPAddress.Loopback, 4053,
            new System.Net.Sockets.SocketException((int)System.Net.Sockets.SocketError.AddressAlreadyInUse)));
    }
}
