using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using DistTrain.Cluster.Hosting;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;

namespace DistTrain.Tests;

/// <summary>Strangers on a running cluster's ports, with real processes: each is refused and the job ends undisturbed.</summary>
public sealed partial class ClusterProcessTests
{
    /// <summary>784-64-10, 2 workers of batch 2, 20 epochs over the 1,000-sample subset: 5,000 short steps, so strangers land in a running job.</summary>
    private const string ShortStepsConfig = """
        {
          "Data": { "Normalization": "Global" },
          "Model": { "InputSize": 784, "Layers": [ { "Type": "Dense", "Units": 64 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 } ] },
          "Optimizer": { "LearningRate": 0.01, "Momentum": 0.5 },
          "Training": { "Workers": 2, "Epochs": 20, "BatchSizePerWorker": 2, "Seed": 3, "StallTimeoutSeconds": 60 }
        }
        """;

    /// <summary>
    /// Connects to the data plane at <paramref name="port"/> as a stranger, sends <paramref name="hello"/>, and returns the
    /// local port it used and how many bytes the parameter server sent back before closing (at most 10 s).
    /// </summary>
    private static async Task<(int LocalPort, int BytesReceived)> IntrudeAsync(int port, byte[] hello)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, port);
        var localPort = ((IPEndPoint)client.Client.LocalEndPoint!).Port;
        var stream = client.GetStream();
        await stream.WriteAsync(hello);
        var received = 0;
        var buffer = new byte[1 << 16];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            int read;
            while ((read = await stream.ReadAsync(buffer, timeout.Token)) > 0) received += read;
        }
        catch (Exception e) when (e is IOException or OperationCanceledException)
        {
        }
        return (localPort, received);
    }

    /// <summary>The data-plane hello before job security: the 56-byte frame header (magic "DTDP", type 0) naming a worker index.</summary>
    private static byte[] HeaderOnlyHello(int workerIndex, int parameterCount)
    {
        var bytes = new byte[56];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, 0x50445444);
        bytes[5] = 1; // frame protocol version
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(24), workerIndex);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(28), parameterCount);
        return bytes;
    }

    /// <summary>A well-formed hello of this version ("DTHS") for <paramref name="workerIndex"/> with a made-up token.</summary>
    private static byte[] GuessedTokenHello(int workerIndex, int parameterCount)
    {
        var bytes = new byte[48];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, 0x53485444);
        bytes[4] = 1;
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), workerIndex);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(12), parameterCount);
        Random.Shared.NextBytes(bytes.AsSpan(16));
        return bytes;
    }

    [Fact]
    public async Task Data_plane_hellos_that_claim_a_connected_worker_or_an_unknown_index_are_closed_logged_once_and_the_job_ends_undisturbed()
    {
        const int parameters = 784 * 64 + 64 + 64 * 10 + 10;
        var configPath = Config(ShortStepsConfig);
        // Plain TCP: what is tested here is the hello itself, the only check left when TLS is off.
        var (psEnvironment, workerEnvironment) = Environments(workers: 2, configPath,
            new Dictionary<string, string> { ["DISTTRAIN_Cluster__Tls"] = "false" });
        var dataPort = int.Parse(psEnvironment["DISTTRAIN_Cluster__DataPort"]);
        var ps = Start("parameter-server", configPath, psEnvironment);
        var workers = new[] { Start("worker", configPath, workerEnvironment), Start("worker", configPath, workerEnvironment) };
        await ps.WaitForOutputAsync("epoch  1/20", TimeSpan.FromSeconds(90));

        // Worker 0 and 1 are connected and training. Strangers claim them, and an index nobody has.
        var intruders = new List<int>();
        foreach (var hello in new[] { HeaderOnlyHello(0, parameters), GuessedTokenHello(1, parameters), GuessedTokenHello(7, parameters), HeaderOnlyHello(7, parameters) })
        {
            var (localPort, received) = await IntrudeAsync(dataPort, hello);
            Assert.True(received == 0, $"the intruder from port {localPort} received {received} bytes (weights) from the parameter server");
            intruders.Add(localPort);
        }

        await ps.AssertExitAsync(0, TimeSpan.FromSeconds(120));
        foreach (var worker in workers) await worker.AssertExitAsync(0, TimeSpan.FromSeconds(30));
        foreach (var localPort in intruders)
        {
            // Logged once: one line for the connection, no retries.
            var lines = ps.Output.Split('\n').Count(line => line.Contains($"refused a connection from 127.0.0.1:{localPort}", StringComparison.Ordinal));
            Assert.True(lines == 1, $"the intruder from port {localPort} was logged {lines} times. Output:\n{ps.Output}");
        }
        Assert.Contains("Test accuracy after 20 epochs", ps.Output);

        // Workers 0 and 1 were not disturbed: the job ends on the weights of the same job in one process.
        await AssertUndisturbedAsync(configPath, FinalWeightsPath());
    }
}
