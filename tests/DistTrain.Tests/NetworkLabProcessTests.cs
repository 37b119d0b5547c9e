using System.Globalization;
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
    private readonly List<NodeProcess> _nodes = [];
    private readonly List<NetworkLab> _labs = [];
    private readonly Dictionary<NodeProcess, string> _sampleLogs = [];
    private readonly List<(NodeProcess Node, string Name)> _names = [];
    private readonly List<(DateTime Time, string Text)> _events = [];
    private readonly ITestOutputHelper _output;
    private int _processes;

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
    /// ps-standby node 2), this test's CA, data and folders, and a sample log per process.
    /// </summary>
    private NodeProcess Start(NetworkLab lab, string service, int node, string configPath, Dictionary<string, string> settings)
    {
        // Compose's ${NAME:-default} take their defaults (as docker-compose does with NAME unset).
        var environment = ClusterProcessTests.ComposeEnvironment(service)
            .ToDictionary(kv => kv.Key, kv => Regex.Replace(kv.Value, @"\$\{\w+:-([^}]*)\}", "$1"));
        var sampleLog = Path.Combine(_directory, $"samples-{Interlocked.Increment(ref _processes)}.jsonl");
        foreach (var (key, value) in new Dictionary<string, string>
                 {
                     ["DISTTRAIN_Cluster__PublicHostname"] = lab.Address(node),
                     ["DISTTRAIN_Cluster__SeedNodes__0"] = $"akka.tcp://disttrain@{lab.Address(1)}:4053",
                     ["DISTTRAIN_Data__Directory"] = TestData.SubsetDirectory,
                     ["DISTTRAIN_Output__Directory"] = Path.Combine(_directory, $"runs-node{node}"),
                     ["DISTTRAIN_Output__HealthFile"] = Path.Combine(_directory, $"alive-node{node}"),
                     ["DISTTRAIN_Output__SampleLogFile"] = sampleLog,
                     ["DISTTRAIN_Checkpoint__Directory"] = Path.Combine(_directory, "checkpoints"),
                     ["DISTTRAIN_Metrics__Port"] = "0",
                 })
            environment[key] = value;
        if (environment.ContainsKey("DISTTRAIN_Cluster__SeedNodes__1"))
            environment["DISTTRAIN_Cluster__SeedNodes__1"] = $"akka.tcp://disttrain@{lab.Address(2)}:4053";
        foreach (var (key, value) in _certificates.Environment($"{service}-{node}")) environment[key] = value;
        foreach (var (key, value) in settings) environment[key] = value;
        var process = new NodeProcess(service == "worker" ? "worker" : "parameter-server", configPath, environment, lab.Namespace(node));
        _nodes.Add(process);
        _sampleLogs[process] = sampleLog;
        _names.Add((process, $"node {node} ({service}, process {process.Id})"));
        Event($"started node {node} ({service}, process {process.Id})");
        return process;
    }

    /// <summary>Notes a step of the test itself (a partition, a heal) for the timeline.</summary>
    private void Event(string text) => _events.Add((DateTime.UtcNow, $"test: {text}"));

    [GeneratedRegex(@"^\[\w+\]\[(\d\d/\d\d/\d{4} \d\d:\d\d:\d\d\.\d{3})Z\]")]
    private static partial Regex AkkaTime();

    private static readonly string[] TimelineMarks =
    [
        "Marking node(s) as UNREACHABLE", "Downing akka", "Marking unreachable node", "is lost", "Node has been marked as DOWN", "Training is paused",
        "Training resumes", "Joined the job", "Taking over", "Resuming from checkpoint", "Training starts", "Lost the data plane",
    ];

    /// <summary>
    /// Writes what each node logged about membership and training, merged in time with the test's own steps, to the test
    /// output (dotnet test --logger "console;verbosity=detailed"): the record docs/reliability.md quotes.
    /// </summary>
    private void WriteTimeline()
    {
        var lines = new List<(DateTime Time, string Text)>(_events);
        foreach (var (node, name) in _names)
            foreach (var line in node.Output.Split('\n'))
            {
                var time = AkkaTime().Match(line);
                if (!time.Success || !TimelineMarks.Any(m => line.Contains(m, StringComparison.Ordinal))) continue;
                var at = DateTime.ParseExact(time.Groups[1].Value, "MM/dd/yyyy HH:mm:ss.fff", CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal);
                var text = line[(line.IndexOf("] ", time.Length, StringComparison.Ordinal) + 2)..].Trim();
                lines.Add((at, $"{name}: {(text.Length > 220 ? text[..220] + "..." : text)}"));
            }
        if (lines.Count == 0) return;
        var start = lines.Min(l => l.Time);
        foreach (var (time, text) in lines.OrderBy(l => l.Time))
            _output.WriteLine($"{(time - start).TotalSeconds,7:F2} s  {text}");
    }

    private static int CompletedEpochs(NodeProcess parameterServer) =>
        EpochLine().Matches(parameterServer.Output).Select(m => int.Parse(m.Groups[1].Value)).DefaultIfEmpty(0).Max();

    [GeneratedRegex(@"^epoch\s+(\d+)/\d+\s+train loss", RegexOptions.Multiline)]
    private static partial Regex EpochLine();

    /// <summary>Waits until <paramref name="condition"/> holds on the parameter server's sample log, polling it.</summary>
    private async Task WaitForSampleLogAsync(NodeProcess parameterServer, Func<string[], bool> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!(File.Exists(_sampleLogs[parameterServer]) && condition(ReadShared(_sampleLogs[parameterServer]))))
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"{what} did not happen within {timeout.TotalSeconds} s. Output:\n{parameterServer.Output}");
            await Task.Delay(200);
        }
    }

    private static string[] ReadShared(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(stream).ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    private static bool HasStepWithWorkers(string[] lines, int workers) =>
        lines.Any(l => Regex.Matches(l, "\"worker\":").Count >= workers);
}
