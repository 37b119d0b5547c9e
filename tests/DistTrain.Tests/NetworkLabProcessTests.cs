using System.Text.RegularExpressions;
using Xunit.Abstractions;
using DistTrain.Cluster.Hosting;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;

namespace DistTrain.Tests;

/// <summary>
/// Cluster mode across real links: every node a <c>disttrain node</c> process in its own network namespace with its own
/// address, as on separate machines (tests/netns/lab.sh), and partitions that drop packets without resetting anything,
/// as a pulled cable or a failed switch port does. The deploy/docker-compose.yml services run here with their own ports
/// (4053, 4054) on their own addresses. Needs root; skipped with the reason elsewhere.
/// </summary>
public sealed partial class NetworkLabProcessTests : IDisposable
{
    private readonly string _directory;
    private readonly TestCertificates _certificates;
    private readonly List<DistTrainProcess> _nodes = [];
    private readonly List<NetworkLab> _labs = [];
    private readonly List<(DistTrainProcess Node, string Name)> _names = [];
    private readonly List<(DateTime Time, string Text)> _events = [];
    private readonly ITestOutputHelper _output;

    public NetworkLabProcessTests(ITestOutputHelper output)
    {
        _output = output;
        _directory = Directory.CreateTempSubdirectory("disttrain-lab-").FullName;
        _certificates = new TestCertificates(_directory, "lab-ca");
    }

    public void Dispose()
    {
        WriteTimeline();
        foreach (var node in _nodes) node.Dispose();
        foreach (var lab in _labs) lab.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    /// <summary>784-64-10 MLP on the 1,000-sample subset, 2 workers of <paramref name="batch"/>.</summary>
    private string Config(int epochs, int batch) => WriteConfig($$"""
        {
          "Data": { "Normalization": "Global" },
          "Model": { "InputSize": 784, "Layers": [ { "Type": "Dense", "Units": 64 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 } ] },
          "Optimizer": { "LearningRate": 0.01, "Momentum": 0.5 },
          "Training": { "Workers": 2, "Epochs": {{epochs}}, "BatchSizePerWorker": {{batch}}, "Seed": 3, "StallTimeoutSeconds": 90 }
        }
        """);

    private string WriteConfig(string json)
    {
        var path = Path.Combine(_directory, $"{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return path;
    }

    private NetworkLab Lab(int nodes)
    {
        var lab = NetworkLab.Create(nodes);
        _labs.Add(lab);
        return lab;
    }

    /// <summary>
    /// Starts compose service <paramref name="service"/> (ps, ps-standby or worker) as a process in lab node
    /// <paramref name="node"/>: the compose file's variables, with the service names as the lab's addresses (ps is node 1,
    /// ps-standby node 2), this test's CA, data and folders, and the sample trace on in <paramref name="traceDirectory"/>
    /// (one per parameter server: the trace is joined within one parameter server's steps).
    /// </summary>
    private DistTrainProcess Start(NetworkLab lab, string service, int node, string configPath, Dictionary<string, string> settings,
        string traceDirectory = "trace")
    {
        // Compose's ${NAME:-default} take their defaults (as docker-compose does with NAME unset).
        var environment = ClusterProcessTests.ComposeEnvironment(service)
            .ToDictionary(kv => kv.Key, kv => Regex.Replace(kv.Value, @"\$\{\w+:-([^}]*)\}", "$1"));
        foreach (var (key, value) in new Dictionary<string, string>
                 {
                     ["DISTTRAIN_Cluster__PublicHostname"] = lab.Address(node),
                     ["DISTTRAIN_Cluster__SeedNodes__0"] = $"akka.tcp://disttrain@{lab.Address(1)}:4053",
                     ["DISTTRAIN_Data__Directory"] = TestData.SubsetDirectory,
                     ["DISTTRAIN_Output__Directory"] = Path.Combine(_directory, $"runs-node{node}"),
                     ["DISTTRAIN_Output__HealthFile"] = Path.Combine(_directory, $"alive-node{node}"),
                     ["DISTTRAIN_Monitoring__SampleTraceDirectory"] = Path.Combine(_directory, traceDirectory),
                     ["DISTTRAIN_Checkpoint__Directory"] = Path.Combine(_directory, "checkpoints"),
                     ["DISTTRAIN_Metrics__Port"] = "0",
                     // Namespaces share /dev/shm: shared memory would carry the tensors past the shaped links.
                     ["DISTTRAIN_Cluster__SharedMemory"] = "false",
                 })
            environment[key] = value;
        if (environment.ContainsKey("DISTTRAIN_Cluster__SeedNodes__1"))
            environment["DISTTRAIN_Cluster__SeedNodes__1"] = $"akka.tcp://disttrain@{lab.Address(2)}:4053";
        foreach (var (key, value) in _certificates.Environment($"{service}-{node}")) environment[key] = value;
        foreach (var (key, value) in settings) environment[key] = value;
        var process = DistTrainProcess.Node(service == "worker" ? "worker" : "parameter-server", configPath, environment, lab.Namespace(node));
        _nodes.Add(process);
        _names.Add((process, $"node {node} ({service}, process {process.Id})"));
        Event($"started node {node} ({service}, process {process.Id})");
        return process;
    }

    /// <summary>Waits for <paramref name="node"/> to exit and asserts its exit code; a wrong one fails with the node's output.</summary>
    private static async Task AssertExitAsync(DistTrainProcess node, int expected, TimeSpan timeout)
    {
        var exit = await node.WaitAsync(timeout);
        Assert.True(exit == expected, $"the node exited with {exit}, not {expected}. Output:\n{node.Output}");
    }

    /// <summary>Notes a step of the test itself (a partition, a heal) for the timeline.</summary>
    private void Event(string text) => _events.Add((DateTime.UtcNow, $"test: {text}"));


    /// <summary>
    /// Polls <paramref name="parameterServer"/>'s steps file every 50 ms until it holds a step; returns the last time (UTC) it
    /// was seen without one, a moment before that parameter server's first step.
    /// </summary>
    private Task<DateTime> LastTimeBeforeFirstStepAsync(DistTrainProcess parameterServer, TimeSpan timeout) => Task.Run(async () =>
    {
        var path = StepsFile(parameterServer);
        var deadline = DateTime.UtcNow + timeout;
        var idle = DateTime.MinValue;
        while (DateTime.UtcNow < deadline)
        {
            var now = DateTime.UtcNow; // taken before looking: a step written after the look came after this moment
            if (File.Exists(path) && StepWorkers(path).Length > 0) return idle;
            idle = now;
            await Task.Delay(50);
        }
        Assert.Fail($"the parameter server applied no step within {timeout.TotalSeconds} s. Output:\n{parameterServer.Output}");
        return idle;
    });

    private static readonly string[] TimelineMarks =
    [
        "Marking node(s) as UNREACHABLE", "Downing akka", "Marking unreachable node", "is lost", "Node has been marked as DOWN", "Training is paused",
        "Training resumes", "Joined the job", "Taking over", "Resuming from checkpoint", "Training starts", "Lost the data plane",
    ];

    /// <summary>
    /// Writes what each node logged about membership and training (timed as the test read each line), merged in time with
    /// the test's own steps, to the test output (dotnet test --logger "console;verbosity=detailed"): the record docs/reliability.md quotes.
    /// </summary>
    private void WriteTimeline()
    {
        var lines = new List<(DateTime Time, string Text)>(_events);
        foreach (var (node, name) in _names)
            foreach (var (time, line) in node.TimedLines)
            {
                if (!TimelineMarks.Any(m => line.Contains(m, StringComparison.Ordinal))) continue;
                var text = line.Trim();
                lines.Add((time, $"{name}: {(text.Length > 220 ? text[..220] + "..." : text)}"));
            }
        if (lines.Count == 0) return;
        var start = lines.Min(l => l.Time);
        foreach (var (time, text) in lines.OrderBy(l => l.Time))
            _output.WriteLine($"{(time - start).TotalSeconds,7:F2} s  {text}");
    }

    private static int CompletedEpochs(DistTrainProcess parameterServer) =>
        EpochLine().Matches(parameterServer.Output).Select(m => int.Parse(m.Groups[1].Value)).DefaultIfEmpty(0).Max();

    [GeneratedRegex(@"^epoch\s+(\d+)/\d+\s+train loss", RegexOptions.Multiline)]
    private static partial Regex EpochLine();

    /// <summary>The sample trace's steps file of <paramref name="parameterServer"/> in <paramref name="traceDirectory"/> (the process id is the node's).</summary>
    private string StepsFile(DistTrainProcess parameterServer, string traceDirectory = "trace") =>
        Path.Combine(_directory, traceDirectory, $"steps-{parameterServer.Id}.csv");

    /// <summary>
    /// Waits until <paramref name="condition"/> holds on the workers of each step <paramref name="parameterServer"/> applied
    /// so far (from its sample trace, polled).
    /// </summary>
    private async Task WaitForStepsAsync(DistTrainProcess parameterServer, Func<int[][], bool> condition, TimeSpan timeout, string what,
        string traceDirectory = "trace")
    {
        var deadline = DateTime.UtcNow + timeout;
        var path = StepsFile(parameterServer, traceDirectory);
        while (!(File.Exists(path) && condition(StepWorkers(path))))
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"{what} did not happen within {timeout.TotalSeconds} s. Output:\n{parameterServer.Output}");
            await Task.Delay(200);
        }
    }

    /// <summary>The contributing workers of every step in a steps file (a last line still being written is left out).</summary>
    private static int[][] StepWorkers(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var text = new StreamReader(stream).ReadToEnd();
        return [.. text[..(text.LastIndexOf('\n') + 1)].Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Select(line => line.Split(',')[3].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToArray())];
    }
}
