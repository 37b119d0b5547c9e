using System.Globalization;
using System.Text.RegularExpressions;

namespace DistTrain.Tests;

/// <summary>
/// <c>disttrain_training_samples_total{role="worker"}</c> on a worker node counts the training samples of the minibatches
/// that node's worker computed a gradient on, and nothing else (no evaluation samples, no other worker's): checked against
/// the samples each worker wrote to its sample trace (Monitoring:SampleTraceDirectory), node by node, in a cluster of
/// worker processes with a metrics port each. One Prometheus run had shown 7,424 (116 minibatches of 64) on one worker
/// node against 640 (10) on the other; in Sync training both compute a minibatch every round, so such figures are the
/// counters of two processes read at different moments or started at different times (a replacement worker's counter
/// starts at 0), not a miscount.
/// </summary>
public sealed class WorkerSampleCounterTests : IDisposable
{
    private readonly string _directory = TestFolders.Create("disttrain-worker-samples-");
    private readonly List<DistTrainProcess> _processes = [];

    public void Dispose()
    {
        foreach (var process in _processes) process.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    /// <summary>
    /// Three worker nodes train with Cluster:MinWorkers 3; one is killed, so the job pauses and the other two stop computing.
    /// Each survivor's counter, scraped from its own endpoint, then equals the samples of every minibatch in its trace file.
    /// </summary>
    [Fact]
    public async Task Each_worker_nodes_samples_counter_equals_the_samples_its_worker_trained_on()
    {
        var ports = TestPorts.Free(6);
        var (remotePort, dataPort, psMetrics) = (ports[0], ports[1], ports[2]);
        int[] workerMetrics = [ports[3], ports[4], ports[5]];
        var trace = Path.Combine(_directory, "trace");
        Dictionary<string, string> Environment(bool worker, int metricsPort) => new()
        {
            ["DISTTRAIN_Cluster__Secret"] = "0123456789abcdef0123", ["DISTTRAIN_Cluster__Tls"] = "false",
            ["DISTTRAIN_Cluster__Hostname"] = "127.0.0.1", ["DISTTRAIN_Cluster__PublicHostname"] = "127.0.0.1",
            ["DISTTRAIN_Cluster__Port"] = worker ? "0" : $"{remotePort}", ["DISTTRAIN_Cluster__DataPort"] = $"{dataPort}",
            ["DISTTRAIN_Cluster__SeedNodes__0"] = $"akka.tcp://disttrain@127.0.0.1:{remotePort}", ["DISTTRAIN_Cluster__MinWorkers"] = "3",
            ["DISTTRAIN_Data__Directory"] = TestData.SubsetDirectory, ["DISTTRAIN_Output__Directory"] = Path.Combine(_directory, "runs"),
            ["DISTTRAIN_Training__Epochs"] = "200", ["DISTTRAIN_Monitoring__SampleTraceDirectory"] = trace,
            ["DISTTRAIN_Metrics__Hostname"] = "127.0.0.1", ["DISTTRAIN_Metrics__Port"] = $"{metricsPort}",
        };
        const string config = "configs/fashion-mnist-mlp.json";
        var ps = Start(DistTrainProcess.Node("parameter-server", config, Environment(false, psMetrics)));
        var workers = workerMetrics.Select(port => Start(DistTrainProcess.Node("worker", config, Environment(true, port)))).ToArray();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };

        // Every worker has trained a few minibatches; then the third is killed and the job pauses (2 workers alive, 3 needed).
        await Until(() => Task.FromResult(workers.All(w => TracedSamples(trace, w.Id) is { Lines: >= 3 })), "every worker traced 3 minibatches", ps);
        workers[2].Kill();
        await Until(async () => Gauge(await Scrape(http, psMetrics), "disttrain_training_paused") == 1, "the parameter server paused", ps);

        // A worker may still finish the round it was computing when the job paused: compared once its figures are still.
        var counted = new long[2];
        for (var i = 0; i < 2; i++)
        {
            var (worker, port) = (workers[i], workerMetrics[i]);
            long last = -1;
            await Until(async () =>
            {
                var now = WorkerSamples(await Scrape(http, port));
                var still = now == last;
                last = now;
                if (!still) await Task.Delay(500);
                return still;
            }, $"worker {i + 1}'s counter settled", ps);
            counted[i] = last;
            var (lines, samples) = TracedSamples(trace, worker.Id)!.Value;
            Assert.True(lines >= 3, $"worker {i + 1} traced {lines} minibatches");
            Assert.Equal(samples, last);
        }
        // Sync: both computed a minibatch in every round up to the pause, so their counts differ by at most one minibatch.
        Assert.InRange(Math.Abs(counted[0] - counted[1]), 0, 64);
    }

    private DistTrainProcess Start(DistTrainProcess process)
    {
        _processes.Add(process);
        return process;
    }

    /// <summary>Minibatch lines and their samples in the trace file(s) of process <paramref name="pid"/>; null before it wrote one.</summary>
    private static (int Lines, long Samples)? TracedSamples(string trace, int pid)
    {
        if (!Directory.Exists(trace)) return null;
        var files = Directory.GetFiles(trace, $"minibatches-{pid}-worker*.csv");
        if (files.Length == 0) return null;
        var lines = 0;
        long samples = 0;
        foreach (var file in files)
            foreach (var line in ReadShared(file).Split('\n').Skip(1).Where(l => l.Length > 0))
            {
                lines++;
                samples += line.Split(',')[4].Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;
            }
        return (lines, samples);
    }

    private static string ReadShared(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var reader = new StreamReader(stream);
        var text = reader.ReadToEnd();
        var end = text.LastIndexOf('\n'); // a line being written is left for the next read
        return end < 0 ? "" : text[..(end + 1)];
    }

    private static async Task<string> Scrape(HttpClient http, int port)
    {
        try
        {
            return await http.GetStringAsync($"http://127.0.0.1:{port}/metrics");
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return ""; // not serving yet
        }
    }

    private static long WorkerSamples(string scrape) =>
        Regex.Match(scrape, @"(?m)^disttrain_training_samples_total\{[^}]*role=""worker""[^}]*\} (\d+)$") is { Success: true } m
            ? long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : -1;

    private static double? Gauge(string scrape, string name) =>
        Regex.Match(scrape, $@"(?m)^{name}(\{{[^}}]*\}})? (\S+)$") is { Success: true } m ? double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture) : null;

    /// <summary>Polls <paramref name="condition"/> until it holds; fails with the parameter server's output after 180 s (a hang guard).</summary>
    private static async Task Until(Func<Task<bool>> condition, string what, DistTrainProcess ps)
    {
        var deadline = DateTime.UtcNow.AddSeconds(180);
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline && !ps.HasExited, $"not reached: {what}. Parameter server:\n{ps.Output}");
            await Task.Delay(200);
        }
    }
}
