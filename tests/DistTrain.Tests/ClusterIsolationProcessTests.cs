using System.Net;
using System.Net.Sockets;
using DistTrain.Cluster.Hosting;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;

namespace DistTrain.Tests;

/// <summary>Only the job's own nodes get in, with real processes: rogue nodes, taken ports, two clusters side by side.</summary>
public sealed partial class ClusterProcessTests
{
    /// <summary>The final weights of the job in <paramref name="configPath"/> trained in one process (same seed, shard plan and summation order).</summary>
    /// <param name="configPath">The job's config file.</param>
    /// <param name="checkpoints">Checkpoint:Directory for the run; null writes none.</param>
    /// <param name="everySteps">Checkpoint:EverySteps for the run.</param>
    private static async Task<Core.Tensors.ParameterVector> SingleProcessWeightsAsync(string configPath, string? checkpoints = null, int everySteps = 0)
    {
        var overrides = new Dictionary<string, string?> { ["Data:Directory"] = TestData.SubsetDirectory, ["Checkpoint:EverySteps"] = $"{everySteps}" };
        if (checkpoints is not null) overrides["Checkpoint:Directory"] = checkpoints;
        var options = TrainingOptionsLoader.Load(configPath, overrides, environment: new Dictionary<string, string?>());
        var data = TrainingData.Load(options.Data);
        return (await SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout()).FinalWeights;
    }

    /// <summary>Asserts that the job's final weights equal the same job's in one process, within float summation noise.</summary>
    private static async Task AssertUndisturbedAsync(string configPath, string weightsPath)
    {
        var single = await SingleProcessWeightsAsync(configPath);
        var tensors = SafeTensors.Read(weightsPath);
        foreach (var segment in single.Layout.Segments)
            Compare.Close(single.Segment(segment).ToArray(), tensors[segment.Name].Data, relative: 1e-5, absolute: 1e-7, segment.Name);
    }

    /// <summary>
    /// Rogue worker nodes are refused; then the job's own two worker processes and the parameter-server process train to the
    /// same weights as single-node mode, bit for bit (the job of one parameter server and two workers against single-node
    /// mode: this run is that job, with the rogues before it).
    /// </summary>
    [Fact]
    public async Task Rogue_nodes_with_another_jobs_secret_another_CA_no_certificate_or_an_expired_one_are_refused_and_the_job_ends_undisturbed()
    {
        var configPath = Config(MlpConfig(hidden: 32, epochs: 2));
        var (psEnvironment, workerEnvironment) = Environments(workers: 2, configPath);
        var ps = Start("parameter-server", configPath, psEnvironment);
        await ps.WaitForOutputAsync("Job host waiting for 2 worker(s)", TimeSpan.FromSeconds(60));

        var otherJob = new TestCertificates(_directory, "other-job");
        Dictionary<string, string> Rogue(Dictionary<string, string> changes)
        {
            var environment = new Dictionary<string, string>(workerEnvironment) { ["DISTTRAIN_Cluster__JoinTimeoutSeconds"] = "8" };
            foreach (var (key, value) in changes) environment[key] = value;
            return environment;
        }
        // The cluster's CA and job name, but another job's secret.
        var wrongSecret = Start("worker", configPath, Rogue(new() { ["DISTTRAIN_Cluster__SecretFile"] = otherJob.SecretFile }));
        // A whole other job: its own CA, certificate and secret.
        var otherCa = Start("worker", configPath, Rogue(otherJob.Environment("rogue")));
        // No certificate at all: plain TCP against the cluster's TLS port.
        var noCertificate = Start("worker", configPath, Rogue(new() { ["DISTTRAIN_Cluster__Tls"] = "false" }));
        // A certificate of the cluster's CA that has expired.
        var (expiredCertificate, expiredKey) = _certificates.Node("expired", DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddDays(-1));
        var expired = Start("worker", configPath, Rogue(new()
        {
            ["DISTTRAIN_Cluster__CertificateFile"] = expiredCertificate, ["DISTTRAIN_Cluster__CertificateKeyFile"] = expiredKey,
        }));

        await wrongSecret.AssertExitAsync(2, TimeSpan.FromSeconds(90));
        Assert.Contains("refused this worker: its job secret differs from the secret of job 'test-job' (", wrongSecret.Output);
        // Once on the worker's screen, however many of its registrations were answered.
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(wrongSecret.Output, "its job secret differs"));
        await ps.WaitForOutputAsync("Refused worker node", TimeSpan.FromSeconds(10));
        await expired.AssertExitAsync(2, TimeSpan.FromSeconds(60));
        Assert.Contains($"Cluster:CertificateFile = '{expiredCertificate}' would be refused by the other nodes", expired.Output);
        // The node of another CA refuses the cluster's certificate as the cluster refuses its own; Akka.Remote then stops it.
        await otherCa.AssertExitAsync(2, TimeSpan.FromSeconds(90));
        Assert.True(otherCa.Output.Contains("do not trust each other's certificates", StringComparison.Ordinal), otherCa.Output);
        // Plain TCP never gets through the cluster's TLS port; the node gives up after its join timeout.
        await noCertificate.AssertExitAsync(1, TimeSpan.FromSeconds(90));
        Assert.True(noCertificate.Output.Contains("No parameter server accepted this worker within 8 s", StringComparison.Ordinal), noCertificate.Output);
        Assert.Contains("Rejected incoming connection from", ps.Output); // Akka.Remote: the plain-TCP handshake, and the other CA's
        Assert.DoesNotContain("joins as worker", ps.Output); // none of them ever counted as a worker

        // The health file: the config check writes it once at start-up, so only its coming back once deleted shows the node's
        // heartbeat (every 5 s) touching it while the node runs.
        var health = Path.Combine(_directory, "ps-alive");
        File.Delete(health);
        for (var waited = System.Diagnostics.Stopwatch.StartNew(); !File.Exists(health) && waited.Elapsed < TimeSpan.FromSeconds(30);) await Task.Delay(100);
        Assert.True(File.Exists(health), "the running parameter server did not touch its health file within 30 s (its heartbeat is every 5 s)");

        // The job's own workers join and the job ends on the undisturbed run's weights.
        var workers = new[] { Start("worker", configPath, workerEnvironment), Start("worker", configPath, workerEnvironment) };
        await ps.AssertExitAsync(0, TimeSpan.FromSeconds(120));
        foreach (var worker in workers) await worker.AssertExitAsync(0, TimeSpan.FromSeconds(30));
        Assert.Contains("Training starts with 2 workers", ps.Output);
        Assert.DoesNotContain("joins as worker 2", ps.Output);
        // One warning for the one rogue that reached registration, however many of its registrations arrived.
        Assert.Single(ps.Output.Split('\n'), line => line.Contains("Refused worker node", StringComparison.Ordinal));
        Assert.Contains("Test accuracy after 2 epochs", ps.Output);
        // Cluster:SharedMemory, on by default: both workers run on this host, so their tensors went through shared memory.
        Assert.Equal(2, System.Text.RegularExpressions.Regex.Matches(ps.Output, @"Worker \d: weights and gradients go through shared memory \(/proc/\d+/fd/\d+").Count);

        // The job ends on the weights of the same job in one process, bit for bit (same config, seed, shard plan and summation order).
        var single = await SingleProcessWeightsAsync(configPath);
        var tensors = SafeTensors.Read(FinalWeightsPath());
        foreach (var segment in single.Layout.Segments)
            Compare.Identical(single.Segment(segment).ToArray(), tensors[segment.Name].Data, segment.Name);
    }

    [Fact]
    public async Task A_worker_whose_seed_closes_the_connection_mid_handshake_before_it_joined_exits_2_naming_the_seed_not_as_refused()
    {
        // Something at the seed's address closes connections mid-handshake (a port that is no Akka.Remote port, or a
        // parameter-server node shutting down at that moment); Akka.Remote then stops the worker. No certificate was refused
        // on either side, so it is not told the certificates differ; and as it never joined, it is not a lost worker (exit 4,
        // "restart it") either: it exits 2 naming Cluster:SeedNodes, and says to start it again if the seed is right.
        using var closer = new TcpListener(IPAddress.Loopback, 0);
        closer.Start();
        using var stop = new CancellationTokenSource();
        var accepting = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var socket = await closer.AcceptSocketAsync(stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        });
        var configPath = Config(MlpConfig(hidden: 16, epochs: 1));
        var (_, workerEnvironment) = Environments(workers: 1, configPath);
        workerEnvironment["DISTTRAIN_Cluster__SeedNodes__0"] = $"akka.tcp://disttrain@127.0.0.1:{((IPEndPoint)closer.LocalEndpoint).Port}";
        workerEnvironment.Remove("DISTTRAIN_Cluster__SeedNodes__1");
        workerEnvironment["DISTTRAIN_Cluster__JoinTimeoutSeconds"] = "30";
        var worker = Start("worker", configPath, workerEnvironment);

        await worker.AssertExitAsync(2, TimeSpan.FromSeconds(60));
        Assert.Contains("this node never joined the cluster, and the peer at the address it dialled (Cluster:SeedNodes: akka.ssl.tcp://disttrain@127.0.0.1:" +
            ((IPEndPoint)closer.LocalEndpoint).Port, worker.Output.ReplaceLineEndings(" "));
        Assert.Contains("a parameter-server node stopping at that moment: start this node again", worker.Output.ReplaceLineEndings(" "));
        Assert.DoesNotContain("the warning above names the certificate", worker.Output); // this node refused no certificate
        await stop.CancelAsync();
        await accepting;
    }

    [Fact]
    public async Task Two_clusters_run_side_by_side_each_ending_on_its_undisturbed_result_and_a_node_on_a_taken_port_exits_2()
    {
        var configA = Config(MlpConfig(hidden: 32, epochs: 2));
        var configB = Config(MlpConfig(hidden: 24, epochs: 2).Replace("\"Seed\": 3", "\"Seed\": 5", StringComparison.Ordinal));
        var (psA, workerA) = Environments(workers: 2, configA);
        var (psB, workerB) = Environments(workers: 2, configB,
            new Dictionary<string, string>
            {
                ["DISTTRAIN_Output__Directory"] = Path.Combine(_directory, "runs-b"), ["DISTTRAIN_Checkpoint__Directory"] = Path.Combine(_directory, "checkpoints-b"),
            }, new TestCertificates(_directory, "second-job"));
        var parameterServers = new[] { Start("parameter-server", configA, psA), Start("parameter-server", configB, psB) };
        await parameterServers[0].WaitForOutputAsync("Job host waiting", TimeSpan.FromSeconds(60));

        // A second parameter server on the first one's Akka port, then on its data plane port: one line each, exit 2.
        var akkaPortTaken = Start("parameter-server", configA, new Dictionary<string, string>(psA) { ["DISTTRAIN_Metrics__Port"] = "0" });
        await akkaPortTaken.AssertExitAsync(2, TimeSpan.FromSeconds(60));
        Assert.Contains($"Cluster:Port = {psA["DISTTRAIN_Cluster__Port"]}: the port is in use", akkaPortTaken.Output);
        var dataPortTaken = Start("parameter-server", configA, new Dictionary<string, string>(psA)
        {
            ["DISTTRAIN_Cluster__Port"] = FreePort().ToString(), ["DISTTRAIN_Metrics__Port"] = "0",
        });
        await dataPortTaken.AssertExitAsync(2, TimeSpan.FromSeconds(60));
        Assert.Contains($"Cluster:DataPort = {psA["DISTTRAIN_Cluster__DataPort"]}: the port is in use", dataPortTaken.Output);
        var metricsPortTaken = Start("parameter-server", configA, new Dictionary<string, string>(psA)
        {
            ["DISTTRAIN_Cluster__Port"] = FreePort().ToString(), ["DISTTRAIN_Cluster__DataPort"] = FreePort().ToString(),
        });
        await metricsPortTaken.AssertExitAsync(2, TimeSpan.FromSeconds(60));
        Assert.Contains($"Metrics:Port = {psA["DISTTRAIN_Metrics__Port"]}: the port is in use", metricsPortTaken.Output);

        var workers = new[]
        {
            Start("worker", configA, workerA), Start("worker", configA, workerA), Start("worker", configB, workerB), Start("worker", configB, workerB),
        };
        foreach (var ps in parameterServers) await ps.AssertExitAsync(0, TimeSpan.FromSeconds(180), alongside: workers);
        foreach (var worker in workers) await worker.AssertExitAsync(0, TimeSpan.FromSeconds(30));
        foreach (var ps in parameterServers) Assert.Contains("Training starts with 2 workers", ps.Output);
        await AssertUndisturbedAsync(configA, FinalWeightsPath());
        await AssertUndisturbedAsync(configB, FinalWeightsPath("runs-b"));
    }
}
