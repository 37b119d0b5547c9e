using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;

namespace DistTrain.Tests;

/// <summary>
/// Cluster mode with real OS processes on loopback: one parameter-server node and worker nodes, started
/// with the environment variables deploy/docker-compose.yml gives its services (host names and ports
/// mapped to loopback), every run bounded in time.
/// </summary>
public sealed partial class ClusterProcessTests : IDisposable
{
    /// <summary>Hang guard for one stage of a multi-process job on a loaded 2-core machine; no assertion is about speed.</summary>
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(180);

    private readonly string _directory;
    private readonly List<DistTrainProcess> _nodes = [];
    private readonly TestCertificates _certificates; // this test's job: its CA, node certificates and secret

    public ClusterProcessTests()
    {
        _directory = Directory.CreateTempSubdirectory("disttrain-cluster-").FullName;
        _certificates = new TestCertificates(_directory, "cluster-ca");
    }

    public void Dispose()
    {
        foreach (var node in _nodes) node.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    /// <summary>The DISTTRAIN_* entries of one service's environment list in the compose file.</summary>
    internal static Dictionary<string, string> ComposeEnvironment(string service)
    {
        var text = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "deploy", "docker-compose.yml"));
        var block = Regex.Match(text, $@"^  {service}:\n(.*?)(?=^  \S|\z)", RegexOptions.Multiline | RegexOptions.Singleline);
        Assert.True(block.Success, $"service '{service}' not found in docker-compose.yml");
        // A variable with a default (${NAME:-default}) takes its default, as compose gives it when NAME is unset.
        return Regex.Matches(block.Groups[1].Value, @"^\s+- (DISTTRAIN_\w+)=(.*)$", RegexOptions.Multiline)
            .ToDictionary(m => m.Groups[1].Value, m => Regex.Replace(m.Groups[2].Value.Trim(), @"\$\{\w+:-([^}]*)\}", "$1"));
    }

    /// <summary>One free port; <see cref="FreePorts"/> for several that must differ (<see cref="TestPorts"/>).</summary>
    private static int FreePort() => TestPorts.Free();

    /// <summary><paramref name="count"/> distinct free ports (<see cref="TestPorts"/>).</summary>
    private static int[] FreePorts(int count) => TestPorts.Free(count);

    private (Dictionary<string, string> Ps, Dictionary<string, string> Worker) Environments(int workers, string configPath,
        Dictionary<string, string>? settings = null, TestCertificates? job = null)
    {
        var (ps, _, worker) = EnvironmentsWithStandby(workers, settings, job);
        return (ps, worker);
    }

    /// <summary>The compose file's ps, ps-standby and worker services mapped to loopback, each node with its own ports.</summary>
    /// <param name="workers">Cluster:MinWorkers.</param>
    /// <param name="settings">Further DISTTRAIN_* variables for every node.</param>
    /// <param name="job">The job's CA and secret; default this test's.</param>
    private (Dictionary<string, string> Ps, Dictionary<string, string> Standby, Dictionary<string, string> Worker) EnvironmentsWithStandby(int workers,
        Dictionary<string, string>? settings = null, TestCertificates? job = null)
    {
        job ??= _certificates;
        var ports = FreePorts(5);
        var (remotePort, dataPort, metricsPort, standbyRemotePort, standbyDataPort) = (ports[0], ports[1], ports[2], ports[3], ports[4]);
        var seed = $"akka.tcp://disttrain@127.0.0.1:{remotePort}";
        // The compose file's names, with docker's values mapped to one machine: the service name "ps"
        // becomes 127.0.0.1, each node gets its own ports, data and output are local folders.
        string Map(string key, string value, bool isWorker) => key switch
        {
            "DISTTRAIN_Cluster__Hostname" => "127.0.0.1",
            "DISTTRAIN_Cluster__PublicHostname" => "127.0.0.1",
            "DISTTRAIN_Cluster__Port" => isWorker ? "0" : remotePort.ToString(),
            "DISTTRAIN_Cluster__DataPort" => dataPort.ToString(),
            "DISTTRAIN_Cluster__SeedNodes__0" => seed,
            "DISTTRAIN_Cluster__SeedNodes__1" => $"akka.tcp://disttrain@127.0.0.1:{standbyRemotePort}",
            "DISTTRAIN_Cluster__MinWorkers" => workers.ToString(),
            "DISTTRAIN_Data__Directory" => TestData.SubsetDirectory,
            "DISTTRAIN_Output__Directory" => Path.Combine(_directory, "runs"),
            "DISTTRAIN_Output__HealthFile" => Path.Combine(_directory, isWorker ? "worker-alive" : "ps-alive"),
            "DISTTRAIN_Checkpoint__Directory" => Path.Combine(_directory, "checkpoints"),
            // Worker processes share this machine, so only the parameter server gets a metrics port.
            "DISTTRAIN_Metrics__Port" => isWorker ? "0" : metricsPort.ToString(),
            _ => value,
        };
        var ps = ComposeEnvironment("ps").ToDictionary(kv => kv.Key, kv => Map(kv.Key, kv.Value, false));
        var worker = ComposeEnvironment("worker").ToDictionary(kv => kv.Key, kv => Map(kv.Key, kv.Value, true));
        var standby = ComposeEnvironment("ps-standby").ToDictionary(kv => kv.Key, kv => Map(kv.Key, kv.Value, false));
        standby["DISTTRAIN_Cluster__Port"] = standbyRemotePort.ToString();
        standby["DISTTRAIN_Cluster__DataPort"] = standbyDataPort.ToString();
        standby["DISTTRAIN_Metrics__Port"] = "0";
        standby["DISTTRAIN_Output__HealthFile"] = Path.Combine(_directory, "standby-alive");
        // Workers advertise the address the entrypoint script would give them; on loopback that is 127.0.0.1.
        worker["DISTTRAIN_Cluster__PublicHostname"] = "127.0.0.1";
        worker["DISTTRAIN_Cluster__DataPort"] = dataPort.ToString();
        // The compose file's certificate and secret paths, mapped to this test's CA: each node its own certificate.
        foreach (var (key, value) in job.Environment("ps")) ps[key] = value;
        foreach (var (key, value) in job.Environment("ps-standby")) standby[key] = value;
        foreach (var (key, value) in job.Environment("worker")) worker[key] = value;
        foreach (var (key, value) in settings ?? [])
        {
            ps[key] = value;
            standby[key] = value;
            worker[key] = value;
        }
        return (ps, standby, worker);
    }

    /// <summary>A <c>disttrain node</c> process with the given environment; with <paramref name="defaultInterrupt"/>, SIGINT at its
    /// default action (<see cref="DistTrainProcess.Node"/>), for a test that sends it.</summary>
    private DistTrainProcess Start(string role, string configPath, Dictionary<string, string> environment, bool defaultInterrupt = false)
    {
        var node = DistTrainProcess.Node(role, configPath, environment, defaultInterrupt: defaultInterrupt);
        _nodes.Add(node);
        return node;
    }

    private string Config(string json)
    {
        var path = Path.Combine(_directory, $"{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return path;
    }

    /// <summary>
    /// A small MLP job. Compute:BlasThreads is 1 on every node and in the single-process runs it is compared with: a worker
    /// node alone in its process would otherwise give each product every core, single-node mode half of them each, and
    /// OpenBLAS's Haswell kernel (which OPENBLAS_CORETYPE selects on some machines) rounds a product differently with
    /// another thread count, so the weights would differ in the last bits there.
    /// </summary>
    private static string MlpConfig(int hidden, int epochs, int trainLimit = 0, int testLimit = 0) => $$"""
        {
          "Compute": { "BlasThreads": 1 },
          "Data": { "Normalization": "Global", "TrainLimit": {{trainLimit}}, "TestLimit": {{testLimit}} },
          "Model": { "InputSize": 784, "Layers": [ { "Type": "Dense", "Units": {{hidden}} }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 } ] },
          "Optimizer": { "LearningRate": 0.05, "Momentum": 0.9, "L2": 0.0001 },
          "Training": { "Workers": 2, "Epochs": {{epochs}}, "BatchSizePerWorker": 32, "Seed": 3, "StallTimeoutSeconds": 60 }
        }
        """;

    /// <summary>
    /// A 784-64-10 MLP, 3 workers in the config, batch 2 per worker, 30 epochs: thousands of short steps over the
    /// 1,000-sample subset, so a process killed early lands inside a running job that still has most of its work left.
    /// </summary>
    private const string ManyShortStepsConfig = """
        {
          "Compute": { "BlasThreads": 1 },
          "Data": { "Normalization": "Global" },
          "Model": { "InputSize": 784, "Layers": [ { "Type": "Dense", "Units": 64 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 } ] },
          "Optimizer": { "LearningRate": 0.01, "Momentum": 0.5 },
          "Training": { "Workers": 3, "Epochs": 30, "BatchSizePerWorker": 2, "Seed": 3, "StallTimeoutSeconds": 60 }
        }
        """;

    /// <summary>
    /// Most test samples (of 250) the killed-worker run may score differently from the undisturbed one. After the kill the
    /// remaining epochs run on another shard plan, so the trajectory, not only the samples' count, changes: measured in
    /// process with worker 0 lost at 69 points of epochs 1 and 2 (rounds 84-164 and 2-164), the final accuracy differed
    /// by −5 to +2 samples (mean −1.3, standard deviation 1.4). 8 samples (3.2 points) is 4.6 standard deviations from that
    /// mean; a tighter bound would fail by chance. docs/reliability.md's +0.03 to +0.39 points were measured on 10,000 test
    /// samples, which this 250-sample test cannot resolve.
    /// </summary>
    private const int MaxAccuracyDifferenceSamples = 8;

    private string FinalWeightsPath(string runs = "runs") =>
        Directory.GetFiles(Path.Combine(_directory, runs), "model.safetensors", SearchOption.AllDirectories).Single();

    /// <summary>
    /// Cluster:Compression on the wire: TopK at 10% with error feedback. The workers send encoded gradients (the data
    /// plane's bytes per step show it) and the parameter server decodes exactly what single-node mode, which applies the
    /// same encoding in process, trains on: the final weights are bit-identical. They differ from uncompressed training's.
    /// Cluster:SharedMemory is off on the parameter server, so here every byte crosses loopback TCP.
    /// </summary>
    [Fact]
    public async Task Compressed_gradients_cross_processes_as_their_encoding_and_train_to_the_same_weights_as_single_node_mode()
    {
        var configPath = Config(MlpConfig(hidden: 32, epochs: 1).Replace("\"Optimizer\"", "\"Cluster\": { \"Compression\": \"TopK\", \"TopKRatio\": 0.1 },\n  \"Optimizer\""));
        var (psEnvironment, workerEnvironment) = Environments(workers: 2, configPath);
        psEnvironment["DISTTRAIN_Cluster__SharedMemory"] = "false";
        var ps = Start("parameter-server", configPath, psEnvironment);
        var workers = new[] { Start("worker", configPath, workerEnvironment), Start("worker", configPath, workerEnvironment) };
        await ps.AssertExitAsync(0, Guard);
        foreach (var worker in workers) await worker.AssertExitAsync(0, Guard);
        Assert.DoesNotContain("shared memory", ps.Output);

        var single = await SingleProcessWeightsAsync(configPath);
        var tensors = SafeTensors.Read(FinalWeightsPath());
        foreach (var segment in single.Layout.Segments)
            Compare.Identical(single.Segment(segment).ToArray(), tensors[segment.Name].Data, segment.Name);
        var uncompressed = await SingleProcessWeightsAsync(Config(MlpConfig(hidden: 32, epochs: 1)));
        Assert.NotEqual(uncompressed.Values, single.Values);

        // Per step each of the 2 workers sends a 56-byte header and k = ceil(0.1 x 25,450) = 2,545 (index, value) pairs
        // with a 9-byte preamble: 2 x 20,425 = 40,850 bytes, against 203,712 as float32. The hellos add a few bytes per step.
        var received = Regex.Match(ps.Output, @"per step [\d,]+ sent \(weights\) and ([\d,]+) received");
        Assert.True(received.Success, ps.Output);
        Assert.InRange(long.Parse(received.Groups[1].Value.Replace(",", "")), 40_850, 40_850 + 64);
    }

    /// <summary>
    /// Cluster:ParameterServerShards = 2 in the parameter server's process, behind the data plane, with TopK gradients
    /// decoded on the way in: the final weights are bit-identical to single-node mode with one shard.
    /// </summary>
    [Fact]
    public async Task Two_parameter_server_shards_across_processes_train_to_the_weights_of_one_shard_in_single_node_mode()
    {
        var configPath = Config(MlpConfig(hidden: 32, epochs: 1).Replace("\"Optimizer\"", "\"Cluster\": { \"Compression\": \"TopK\", \"TopKRatio\": 0.1 },\n  \"Optimizer\""));
        var (psEnvironment, workerEnvironment) = Environments(workers: 2, configPath);
        psEnvironment["DISTTRAIN_Cluster__ParameterServerShards"] = "2";
        var ps = Start("parameter-server", configPath, psEnvironment);
        var workers = new[] { Start("worker", configPath, workerEnvironment), Start("worker", configPath, workerEnvironment) };
        await ps.AssertExitAsync(0, Guard);
        foreach (var worker in workers) await worker.AssertExitAsync(0, Guard);
        Assert.Contains("Parameter server in 2 shards of 12,720 and 12,730 weights, stepped in parallel", ps.Output);

        var single = await SingleProcessWeightsAsync(configPath); // one shard: the environment variable is the cluster's alone
        var tensors = SafeTensors.Read(FinalWeightsPath());
        foreach (var segment in single.Layout.Segments)
            Compare.Identical(single.Segment(segment).ToArray(), tensors[segment.Name].Data, segment.Name);
    }

    /// <summary>
    /// Cluster:ShardNodes with a worker killed (SIGKILL) mid-epoch, 3 workers and Cluster:MinWorkers 2: the part's loss arbiter
    /// decides with both shard nodes which of the lost worker's slices count, the other two finish their minibatches, and a
    /// further part of the epoch gives them the lost worker's rest, and with Training:KeepGlobalBatch their own minibatches after the
    /// decided round. Training completes on every surviving node; every epoch, the
    /// lost one included, trained on each of the 1,000 samples exactly once (the workers' sample traces, the lost worker's only up
    /// to the round the parameter server names), and each epoch's checkpoint is written once, at the end of its last part.
    /// </summary>
    [Fact]
    public async Task A_worker_killed_mid_epoch_on_shard_nodes_leaves_its_samples_to_a_further_part_and_every_sample_is_used_once()
    {
        var configPath = Config(ManyShortStepsConfig.Replace("\"Epochs\": 30", "\"Epochs\": 2", StringComparison.Ordinal));
        var settings = OnShardNodes;
        settings["DISTTRAIN_Cluster__StartDelaySeconds"] = "3"; // all three in the job from its start, not one joining at epoch 2
        var (psEnvironment, workerEnvironment) = Environments(workers: 2, configPath, settings);
        var trace = Path.Combine(_directory, "sample-trace");
        psEnvironment["DISTTRAIN_Monitoring__SampleTraceDirectory"] = workerEnvironment["DISTTRAIN_Monitoring__SampleTraceDirectory"] = trace;
        psEnvironment["DISTTRAIN_Checkpoint__Directory"] = Path.Combine(_directory, "checkpoints");
        psEnvironment["DISTTRAIN_Checkpoint__EverySteps"] = "20"; // and within epochs, until the loss
        var ps = Start(NodeRoles.ParameterServer, configPath, psEnvironment);
        var shards = StartShardNodes(configPath, workerEnvironment, 2);
        var workers = new[] { Start(NodeRoles.Worker, configPath, workerEnvironment), Start(NodeRoles.Worker, configPath, workerEnvironment),
            Start(NodeRoles.Worker, configPath, workerEnvironment) };
        await ps.WaitForOutputAsync("Training starts with 3 workers", Guard);
        // At a quarter or half of an epoch, not three quarters: that is about 1 s before the epoch's end, and a progress line
        // read late can let the kill land after the worker's last minibatch, which leaves nothing for a further part (the likely
        // cause of one failure, after 18 s, in about 20 runs).
        await ps.WaitForMatchAsync(new Regex(@"epoch +\d+/2 +(25|50)%"), Guard);
        var victim = workers.First(w => w.Output.Contains("Joined the job as worker 0", StringComparison.Ordinal));
        victim.Kill(); // SIGKILL: the shards wait for its next slice until the membership reports it lost
        var lostAt = await ps.WaitForOutputAsync("Worker 0 lost in epoch ", Guard);
        await ps.AssertExitAsync(0, Guard);
        foreach (var node in workers.Where(w => w != victim).Concat(shards)) await node.AssertExitAsync(0, Guard);
        Assert.Contains("Test accuracy after 2 epochs", ps.Output);

        // Where the lost worker's minibatches stopped counting: from round `from` of its epoch.
        var lost = Regex.Match(ps.Output[lostAt..], @"^Worker 0 lost in epoch (\d+) round (\d+): (?:its slice of that round (?:counts|does not count), and its " +
            @"minibatches from round (\d+) go to a further part|it had no minibatch left)", RegexOptions.Multiline);
        Assert.True(lost.Success, ps.Output[lostAt..]);
        var lostEpoch = int.Parse(lost.Groups[1].Value, CultureInfo.InvariantCulture);
        // Killed at a quarter or half of an epoch, it had minibatches left: they are what this test is about.
        Assert.True(lost.Groups[3].Success, $"the lost worker left no minibatches: {lost.Value}");
        var from = int.Parse(lost.Groups[3].Value, CultureInfo.InvariantCulture);
        // Training:KeepGlobalBatch (the default): the survivors' minibatches are cut too, after the decided round, as one server
        // cuts them after its open round; the sample traces below show they were trained once, in the further part.
        var decidedRound = int.Parse(lost.Groups[2].Value, CultureInfo.InvariantCulture);
        Assert.Contains($"Training:KeepGlobalBatch: this part of the epoch ends at round {decidedRound + 1}", ps.Output[lostAt..]);
        // A survivor may have computed the cut round before it learned of the cut; such a slice was left out (its shard says so), and
        // the further part, which starts after the cut round, trains that minibatch again.
        AssertEachSampleOncePerEpoch(trace, 2, lostEpoch, from, leftOutRound: decidedRound + 1);
        // The coordinator planned a further part of that epoch for the 2 workers alive.
        Assert.Matches(new Regex($@"Epoch {lostEpoch}: the [\d,]+ samples? (left untrained when a worker was lost|lost workers had left) go(es)? to 2 workers"), ps.Output);
        // One checkpoint per epoch, each once its epoch's last part ended: none at the end of the part the worker was lost in.
        var gathered = Regex.Matches(ps.Output, @"epoch (\d+)'s end gathered from the shard nodes for its checkpoint").Select(m => int.Parse(m.Groups[1].Value,
            CultureInfo.InvariantCulture));
        Assert.Equal(Enumerable.Range(1, 2), gathered);
        // Within epochs, a checkpoint every 20 steps until the loss, none after it: one written after it could miss the lost worker's
        // minibatches. (Epoch 2 is planned over the survivors, so a loss in epoch 1 leaves it none within either.)
        var written = Regex.Matches(ps.Output, @"Checkpoint \S+: version (\d+), next epoch (\d+) round (\d+),")
            .Select(m => (Version: long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), Epoch: int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture),
                Round: int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture))).ToArray();
        var within = written.Where(c => c.Round > 0).ToArray();
        Assert.NotEmpty(within);
        Assert.All(within, c => Assert.True(c.Version % 20 == 0 && (c.Epoch < lostEpoch || (c.Epoch == lostEpoch && c.Round <= from)),
            $"a checkpoint of version {c.Version} (epoch {c.Epoch} round {c.Round}) was written, and worker 0's minibatches from epoch {lostEpoch} round {from} on did not count"));
        Assert.Contains($"Parameter server: worker 0 was lost in epoch {lostEpoch}; the next checkpoint comes at the epoch's end, not within it", ps.Output);
    }

    /// <summary>
    /// Checks the workers' sample traces in <paramref name="trace"/>: each of <paramref name="epochs"/> epochs trained each of the
    /// 1,000 samples once, counting worker 0's minibatches of <paramref name="lostEpoch"/> only before round
    /// <paramref name="from"/> (its slices from there on did not count) and none of a later epoch, and no worker's minibatch of
    /// <paramref name="lostEpoch"/>'s round <paramref name="leftOutRound"/> (the round a Training:KeepGlobalBatch cut on shard nodes
    /// ends the part of the loss at, whose slices did not count; -1: none). Returns the worker slots that trained minibatches that
    /// counted, by epoch.
    /// </summary>
    private static SortedDictionary<int, SortedSet<int>> AssertEachSampleOncePerEpoch(string trace, int epochs, int lostEpoch, int from, int leftOutRound = -1)
    {
        var samples = new SortedDictionary<int, List<int>>();
        var workers = new SortedDictionary<int, SortedSet<int>>();
        foreach (var file in Directory.GetFiles(trace, "minibatches-*.csv"))
            foreach (var line in File.ReadLines(file).Skip(1).Where(l => l.Length > 0))
            {
                var fields = line.Split(',');
                var (epoch, round, worker) = (int.Parse(fields[0], CultureInfo.InvariantCulture), int.Parse(fields[1], CultureInfo.InvariantCulture),
                    int.Parse(fields[3], CultureInfo.InvariantCulture));
                if (worker == 0) Assert.True(epoch <= lostEpoch, $"the lost worker computed a minibatch of epoch {epoch}, after it was lost in epoch {lostEpoch}");
                if (worker == 0 && epoch == lostEpoch && round >= from) continue; // computed, but its slice did not count
                if (epoch == lostEpoch && round == leftOutRound) continue; // computed before the cut was known, left out
                if (!samples.TryGetValue(epoch, out var list)) samples[epoch] = list = [];
                list.AddRange(fields[4].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(t => int.Parse(t, CultureInfo.InvariantCulture)));
                if (!workers.TryGetValue(epoch, out var slots)) workers[epoch] = slots = [];
                slots.Add(worker);
            }
        Assert.Equal(Enumerable.Range(1, epochs), samples.Keys);
        foreach (var (epoch, list) in samples)
            Assert.True(list.Order().SequenceEqual(Enumerable.Range(0, 1000)),
                $"epoch {epoch} trained {list.Count} samples, {list.Distinct().Count()} of them distinct; every one of the 1,000 once is right");
        return workers;
    }

    /// <summary>
    /// Cluster:ShardNodes, 2 workers and Cluster:MinWorkers 2, worker 0 killed (SIGKILL) mid-epoch and a worker process started
    /// in its place, as a container's restart policy would: the loss leaves too few workers, but the shards were placed with
    /// spare worker slots, so the job goes on. The new process joins as worker 2, is given the shard nodes for a slot of its own,
    /// and trains the lost worker's rest of the epoch with worker 1 (in a further part) and the next epoch. Every node exits 0,
    /// and every epoch trained each of the 1,000 samples once. The job runs with Cluster:Compression TopK, as every node's
    /// setting: the shard nodes, started from the command line, take the workers' cuts of each encoded gradient, and receive
    /// under a tenth of the bytes float32 slices of the job's rounds would take (about a fiftieth at TopK's 1%).
    /// </summary>
    [Fact]
    public async Task A_worker_restarted_after_a_loss_on_shard_nodes_joins_in_a_spare_slot_and_the_job_completes()
    {
        var configPath = Config(ManyShortStepsConfig.Replace("\"Epochs\": 30", "\"Epochs\": 2", StringComparison.Ordinal));
        var settings = OnShardNodes;
        settings["DISTTRAIN_Cluster__Compression"] = "TopK";
        var (psEnvironment, workerEnvironment) = Environments(workers: 2, configPath, settings);
        var trace = Path.Combine(_directory, "sample-trace");
        psEnvironment["DISTTRAIN_Monitoring__SampleTraceDirectory"] = workerEnvironment["DISTTRAIN_Monitoring__SampleTraceDirectory"] = trace;
        var ps = Start(NodeRoles.ParameterServer, configPath, psEnvironment);
        var shards = StartShardNodes(configPath, workerEnvironment, 2);
        var workers = new[] { Start(NodeRoles.Worker, configPath, workerEnvironment), Start(NodeRoles.Worker, configPath, workerEnvironment) };
        await ps.WaitForOutputAsync("Training starts with 2 workers", Guard);
        await ps.WaitForOutputAsync("8 worker slots for workers that join", Guard);
        Assert.Matches(new Regex(@"2 shards placed on .*; 8 worker slots for workers that join"), ps.Output);
        await ps.WaitForMatchAsync(new Regex(@"epoch +1/2 +(25|50)%"), Guard);
        var victim = workers.First(w => w.Output.Contains("Joined the job as worker 0", StringComparison.Ordinal));
        victim.Kill();
        var lostAt = await ps.WaitForOutputAsync("Worker 0 lost in epoch ", Guard);
        var replacement = Start(NodeRoles.Worker, configPath, workerEnvironment);
        await ps.WaitForOutputAsync("joins as worker 2", Guard);
        await ps.AssertExitAsync(0, Guard);
        foreach (var node in workers.Where(w => w != victim).Append(replacement).Concat(shards)) await node.AssertExitAsync(0, Guard);
        Assert.Contains("Test accuracy after 2 epochs", ps.Output);
        Assert.Contains("worker 0 was lost, leaving 1 worker of the Cluster:MinWorkers = 2 the job needs; 8 worker slots still free", ps.Output);
        Assert.Contains("worker 2 joined; it is given the shard nodes for its first part", ps.Output);
        Assert.Contains("Worker 2 trains against 2 shard nodes: 127.0.0.1:", replacement.Output);

        var lost = Regex.Match(ps.Output[lostAt..], @"^Worker 0 lost in epoch 1 round \d+: its slice of that round (?:counts|does not count), and its " +
            @"minibatches from round (\d+) go to a further part", RegexOptions.Multiline);
        Assert.True(lost.Success, ps.Output[lostAt..]);
        var trainedBy = AssertEachSampleOncePerEpoch(trace, 2, 1, int.Parse(lost.Groups[1].Value, CultureInfo.InvariantCulture));
        // The rest of epoch 1 went to workers 1 and 2, and epoch 2 to them alone.
        Assert.Matches(new Regex(@"Epoch 1: the [\d,]+ samples? (left untrained when a worker was lost|lost workers had left) go(es)? to 2 workers"), ps.Output);
        Assert.Equal([0, 1, 2], trainedBy[1]);
        Assert.Equal([1, 2], trainedBy[2]);

        // Each shard node took TopK cuts: 2 epochs of 250 rounds, 2 workers' slices each (the lost worker's last ones aside),
        // as float32 would be 4 bytes per value of its slice.
        foreach (var shard in shards)
        {
            var hosting = Regex.Match(shard.Output, @"Shard host: hosting shard \d of 2 \(\[\d+, \d+\), ([\d,]+) values\).*, gradient slices encoded as TopK");
            Assert.True(hosting.Success, shard.Output);
            var received = Regex.Match(shard.Output, @"Data plane of this shard node: ([\d,]+) bytes received");
            Assert.True(received.Success, shard.Output);
            var float32 = 2L * 250 * 2 * 4 * long.Parse(hosting.Groups[1].Value, NumberStyles.AllowThousands, CultureInfo.InvariantCulture);
            var bytes = long.Parse(received.Groups[1].Value, NumberStyles.AllowThousands, CultureInfo.InvariantCulture);
            Assert.True(bytes < float32 / 10, $"the shard node received {bytes:N0} bytes; float32 slices of the job's rounds take about {float32:N0}");
        }
    }

    /// <summary>
    /// Cluster:ShardNodes with an active and a standby parameter server sharing a checkpoint folder: the active one is stopped
    /// (SIGTERM, as docker stop sends) in epoch 2, after epoch 1's checkpoint. Its shards are released as it stops, before its
    /// own data plane closes, so the workers lose their shard connections first; they take that for the server's loss, not
    /// the job's end, and register again. The standby takes over: it resumes from the newest epoch-end checkpoint, places new
    /// shards on the same shard nodes, which start from the checkpoint's slices, and trains the job to its end on every node.
    /// Resuming from an epoch's end is exact, so the job ends on the weights of an undisturbed single-process run. (A SIGKILL
    /// closes the server's data plane first, the path of the standby test without shard nodes.)
    /// </summary>
    [Fact]
    public async Task The_standby_takes_over_a_job_on_shard_nodes_placing_new_shards_from_the_newest_checkpoint_and_ends_on_the_undisturbed_weights()
    {
        // 1,000 samples, 2 workers of batch 2: 250 rounds per epoch, 1,000 in all; a stop in epoch 2 leaves epochs to train.
        var configPath = Config(ManyShortStepsConfig.Replace("\"Epochs\": 30", "\"Epochs\": 4", StringComparison.Ordinal));
        var (psEnvironment, standbyEnvironment, workerEnvironment) = EnvironmentsWithStandby(workers: 2, OnShardNodes);
        var checkpoints = Path.Combine(_directory, "checkpoints");
        psEnvironment["DISTTRAIN_Checkpoint__Directory"] = standbyEnvironment["DISTTRAIN_Checkpoint__Directory"] = checkpoints;
        var active = Start(NodeRoles.ParameterServer, configPath, psEnvironment);
        await active.WaitForOutputAsync("This node is the active parameter server", Guard);
        var standby = Start(NodeRoles.ParameterServer, configPath, standbyEnvironment);
        await standby.WaitForOutputAsync("Standby parameter server: the active one is", Guard);
        var shards = StartShardNodes(configPath, workerEnvironment, 2);
        var workers = new[] { Start(NodeRoles.Worker, configPath, workerEnvironment), Start(NodeRoles.Worker, configPath, workerEnvironment) };
        await active.WaitForOutputAsync("epoch 1's end gathered from the shard nodes for its checkpoint", Guard);
        await active.WaitForMatchAsync(new Regex(@"epoch +[23]/4 +(25|50)%"), Guard);
        active.Terminate();
        await active.AssertExitAsync(130, Guard);
        var kept = Regex.Match(active.Output, @"Kept the run folder (\S+):").Groups[1].Value; // its weights at the stop, as train keeps them
        Assert.True(File.Exists(Path.Combine(kept, "model.safetensors")), active.Output);
        // The newest checkpoint the active server wrote, at an epoch's end: the takeover resumes from it, not from an earlier one.
        var checkpointed = Regex.Matches(active.Output, @"epoch (\d+)'s end gathered from the shard nodes for its checkpoint")
            .Max(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)) + 1;

        var takeover = await standby.WaitForOutputAsync("Taking over the job as the parameter server", Guard);
        var resumedAt = await standby.WaitForOutputAsync("Resuming from checkpoint", Guard, after: takeover);
        await standby.WaitForOutputAsync("Training starts with 2 workers", Guard, after: resumedAt);
        var version = 250 * (checkpointed - 1);
        Assert.Matches($@"^Resuming from checkpoint \S+: weights version {version}, epoch {checkpointed} round 0", standby.Output[resumedAt..]);
        await standby.AssertExitAsync(0, Guard);
        foreach (var node in workers.Concat(shards)) await node.AssertExitAsync(0, Guard);
        Assert.Contains($"Parameter server: the shards start from the checkpoint of epoch {checkpointed} round 0 (version {version}, {version} optimizer steps).",
            standby.Output);
        Assert.Contains("Test accuracy after 4 epochs", standby.Output);
        foreach (var shard in shards)
        {
            // The lost server's shard released when it was gone, then the standby's placed on the same node.
            var released = shard.Output.IndexOf("Shard host: the owner of shard ", StringComparison.Ordinal);
            Assert.True(released >= 0, shard.Output);
            Assert.Contains($"resumes from the checkpoint's slice, version {version} after {version} optimizer steps.", shard.Output[released..]);
        }
        foreach (var worker in workers)
        {
            // The shard connections closed before the server's data plane, and the worker took that for the server's loss.
            Assert.Matches(new Regex(@"(as the parameter server was lost too|The parameter server was lost too, which released its shards)"), worker.Output);
            Assert.Contains("Lost the data plane to the parameter server (", worker.Output);
            Assert.DoesNotContain("[ERROR]", worker.Output);
        }
        await AssertFinalWeightsAreAnUndisturbedRunsAsync(configPath, workers: 2, besides: kept);
    }

    /// <summary>
    /// A shard node killed mid-run, with a standby parameter server and a checkpoint folder: the active parameter server leaves
    /// the job to the standby instead of failing it (exit 1, naming the lost shard and the standby), the standby takes it over
    /// from the newest epoch-end checkpoint and places the 2 shards anew on the shard nodes up then, the spare one (a third
    /// shard node, started with the job) in place of the killed one, and the workers, whose shard connections closed, register
    /// with it. The job ends on every remaining node, on the weights of an undisturbed single-process run (resuming from an
    /// epoch's end is exact). Before, the job failed with the advice to restart it by hand.
    /// </summary>
    [Fact]
    public async Task A_shard_node_killed_with_a_standby_and_checkpoints_is_replaced_by_a_spare_through_a_takeover()
    {
        var configPath = Config(ManyShortStepsConfig.Replace("\"Epochs\": 30", "\"Epochs\": 4", StringComparison.Ordinal));
        var (psEnvironment, standbyEnvironment, workerEnvironment) = EnvironmentsWithStandby(workers: 2, OnShardNodes);
        psEnvironment["DISTTRAIN_Checkpoint__Directory"] = standbyEnvironment["DISTTRAIN_Checkpoint__Directory"] = Path.Combine(_directory, "checkpoints");
        var active = Start(NodeRoles.ParameterServer, configPath, psEnvironment);
        await active.WaitForOutputAsync("This node is the active parameter server", Guard);
        var standby = Start(NodeRoles.ParameterServer, configPath, standbyEnvironment);
        await standby.WaitForOutputAsync("Standby parameter server: the active one is", Guard);
        var shards = StartShardNodes(configPath, workerEnvironment, 3);
        var workers = new[] { Start(NodeRoles.Worker, configPath, workerEnvironment), Start(NodeRoles.Worker, configPath, workerEnvironment) };
        await active.WaitForOutputAsync("epoch 1's end gathered from the shard nodes for its checkpoint", Guard);
        await active.WaitForMatchAsync(new Regex(@"epoch +[23]/4 +(25|50)%"), Guard);
        // Two of the three host the shards (the first two to join); one of those is killed, the third is the spare.
        var hosting = shards.Where(node => node.Output.Contains("Shard host: hosting shard", StringComparison.Ordinal)).ToArray();
        Assert.Equal(2, hosting.Length);
        var (killed, spare) = (hosting[1], Assert.Single(shards, node => !hosting.Contains(node)));
        killed.Kill();
        await active.AssertExitAsync(1, Guard);
        Assert.Matches(new Regex(@"failed: Shard [01] of 2 (is gone|cannot be reached).* The job is left to the standby parameter server at " +
            @"akka\.ssl\.tcp://disttrain@127\.0\.0\.1:\d+, which takes it over from the newest checkpoint \(of epoch \d+'s end\) in \S+ and places the 2 shards anew on the " +
            "shard nodes up then: start a shard node in place of the lost one, unless a spare one is up."), active.Output);
        var checkpointed = Regex.Matches(active.Output, @"epoch (\d+)'s end gathered from the shard nodes for its checkpoint")
            .Max(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)) + 1;

        var takeover = await standby.WaitForOutputAsync("Taking over the job as the parameter server", Guard);
        var resumedAt = await standby.WaitForOutputAsync("Resuming from checkpoint", Guard, after: takeover);
        var version = 250 * (checkpointed - 1);
        Assert.Matches($@"^Resuming from checkpoint \S+: weights version {version}, epoch {checkpointed} round 0", standby.Output[resumedAt..]);
        await standby.AssertExitAsync(0, Guard);
        foreach (var node in workers.Append(spare).Append(hosting[0])) await node.AssertExitAsync(0, Guard);
        Assert.Contains("Test accuracy after 4 epochs", standby.Output);
        // The spare hosts a shard of the standby's run, from the checkpoint's slice.
        Assert.Contains($"resumes from the checkpoint's slice, version {version} after {version} optimizer steps.", spare.Output);
        foreach (var worker in workers) Assert.Contains("Lost the data plane to the parameter server (", worker.Output);
        await AssertFinalWeightsAreAnUndisturbedRunsAsync(configPath, workers: 2);
    }

    /// <summary>
    /// A shard node killed mid-run with a checkpoint folder and no standby: the parameter server starts the job again on its own
    /// node from the newest epoch-end checkpoint instead of failing it, placing the 2 shards anew on the shard nodes up then, the
    /// spare one (a third shard node, started with the job) in place of the killed one; the workers, whose data planes to the
    /// server closed with the old run, register again. Every remaining node exits 0, on the weights of an undisturbed
    /// single-process run (resuming from an epoch's end is exact). Before, the job failed with the advice to resume it by hand.
    /// </summary>
    [Fact]
    public async Task A_shard_node_killed_with_checkpoints_and_no_standby_is_replaced_by_a_spare_in_a_restart_on_the_same_parameter_server()
    {
        var configPath = Config(ManyShortStepsConfig.Replace("\"Epochs\": 30", "\"Epochs\": 4", StringComparison.Ordinal));
        var (psEnvironment, workerEnvironment) = Environments(workers: 2, configPath, OnShardNodes);
        psEnvironment["DISTTRAIN_Checkpoint__Directory"] = Path.Combine(_directory, "checkpoints");
        var ps = Start(NodeRoles.ParameterServer, configPath, psEnvironment);
        var shards = StartShardNodes(configPath, workerEnvironment, 3);
        var workers = new[] { Start(NodeRoles.Worker, configPath, workerEnvironment), Start(NodeRoles.Worker, configPath, workerEnvironment) };
        await ps.WaitForOutputAsync("epoch 1's end gathered from the shard nodes for its checkpoint", Guard);
        await ps.WaitForMatchAsync(new Regex(@"epoch +[23]/4 +(25|50)%"), Guard);
        var hosting = shards.Where(node => node.Output.Contains("Shard host: hosting shard", StringComparison.Ordinal)).ToArray();
        Assert.Equal(2, hosting.Length);
        var (killed, spare) = (hosting[1], Assert.Single(shards, node => !hosting.Contains(node)));
        var killedAt = ps.Output.Length;
        killed.Kill();

        var restartAt = await ps.WaitForOutputAsync("The job starts again on this node from the newest checkpoint (of epoch ", Guard, after: killedAt);
        var checkpointed = Regex.Matches(ps.Output[..restartAt], @"epoch (\d+)'s end gathered from the shard nodes for its checkpoint")
            .Max(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)) + 1;
        Assert.Matches(new Regex(@"Shard [01] of 2 (is gone|cannot be reached).*\. The job starts again on this node from the newest checkpoint \(of epoch " +
            $@"{checkpointed - 1}'s end\) in \S+, placing the 2 shards anew on the shard nodes up then: start a shard node in place of the lost one, " +
            @"unless a spare one is up\."), ps.Output[killedAt..]);
        var resumedAt = await ps.WaitForOutputAsync("Resuming from checkpoint", Guard, after: restartAt);
        var version = 250 * (checkpointed - 1);
        Assert.Matches($@"^Resuming from checkpoint \S+: weights version {version}, epoch {checkpointed} round 0", ps.Output[resumedAt..]);
        await ps.AssertExitAsync(0, Guard);
        foreach (var node in workers.Append(spare).Append(hosting[0])) await node.AssertExitAsync(0, Guard);
        Assert.Contains("Test accuracy after 4 epochs", ps.Output);
        Assert.Contains($"Restarting the job on this node from the newest checkpoint (of epoch {checkpointed - 1}'s end; restart 1 of at most 3 from that " +
            "checkpoint) after the lost shard node", ps.Output);
        // The spare hosts a shard of the restarted run, from the checkpoint's slice; so does the surviving node, once the old run let its shard go.
        foreach (var node in new[] { spare, hosting[0] })
            Assert.Contains($"resumes from the checkpoint's slice, version {version} after {version} optimizer steps.", node.Output);
        foreach (var worker in workers)
        {
            Assert.Contains("Lost the data plane to the parameter server (", worker.Output);
            Assert.DoesNotContain("[ERROR]", worker.Output);
        }
        // The run folder records each step and epoch once, the redone ones from the second go; summary.json the run that ended.
        var folder = Regex.Match(ps.Output, @"Curves: (\S+)/curves\.png").Groups[1].Value;
        var stepVersions = File.ReadAllLines(Path.Combine(folder, "steps.csv")).Skip(1).Select(row => long.Parse(row.Split(',')[2], CultureInfo.InvariantCulture));
        Assert.Equal(Enumerable.Range(1, 1000).Select(v => (long)v), stepVersions);
        Assert.Equal(["1", "2", "3", "4"], File.ReadAllLines(Path.Combine(folder, "epochs.csv")).Skip(1).Select(row => row.Split(',')[0]));
        using (var summary = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(folder, "summary.json"))))
            Assert.Equal(checkpointed, summary.RootElement.GetProperty("resumed_at_epoch").GetInt32());
        await AssertFinalWeightsAreAnUndisturbedRunsAsync(configPath, workers: 2);
    }

    /// <summary>
    /// As above without a spare shard node: the restarted run looks for 2 shard nodes for its placement time-out (here
    /// Cluster:JoinTimeoutSeconds = 8 s), finds only the survivor, and the job fails (exit 1 on every node) naming the shard node
    /// to start and how to continue the job from its newest checkpoint; it does not hang or restart again.
    /// </summary>
    [Fact]
    public async Task A_restart_after_a_lost_shard_node_without_a_spare_fails_naming_the_shard_node_to_start_and_the_resume()
    {
        var configPath = Config(ManyShortStepsConfig.Replace("\"Epochs\": 30", "\"Epochs\": 300", StringComparison.Ordinal));
        var settings = OnShardNodes;
        settings["DISTTRAIN_Cluster__JoinTimeoutSeconds"] = "8";
        var (psEnvironment, workerEnvironment) = Environments(workers: 2, configPath, settings);
        var checkpoints = Path.Combine(_directory, "checkpoints");
        psEnvironment["DISTTRAIN_Checkpoint__Directory"] = checkpoints;
        var ps = Start(NodeRoles.ParameterServer, configPath, psEnvironment);
        var shards = StartShardNodes(configPath, workerEnvironment, 2);
        var workers = new[] { Start(NodeRoles.Worker, configPath, workerEnvironment), Start(NodeRoles.Worker, configPath, workerEnvironment) };
        await ps.WaitForOutputAsync("epoch 1's end gathered from the shard nodes for its checkpoint", Guard);
        await ps.WaitForMatchAsync(new Regex(@"epoch +2/300 +(25|50)%"), Guard);
        shards[1].Kill();
        await ps.AssertExitAsync(1, Guard);
        foreach (var node in workers.Append(shards[0])) await node.AssertExitAsync(1, Guard);
        Assert.Contains("Restarting the job on this node from the newest checkpoint (of epoch ", ps.Output);
        Assert.Matches(new Regex(@"failed: Found 1 of the 2 shard nodes the run needs \(Cluster:ParameterServerShards = 2\) within 8 s: \S+\. Start 1 more shard " +
            @"node .* The job had started again on this node from the checkpoint of epoch \d+'s end after a lost shard node; to continue it, start the nodes " +
            $@"again with Checkpoint:Resume = true \(DISTTRAIN_Checkpoint__Resume=true\), which resumes from the newest checkpoint in {Regex.Escape(checkpoints)}\."), ps.Output);
        Assert.Single(Regex.Matches(ps.Output, "Restarting the job on this node"));
    }

    /// <summary>A job on 2 shard nodes with <paramref name="workerCount"/> workers, each node a process, run to its end: every node exits 0.</summary>
    private async Task<(DistTrainProcess Ps, DistTrainProcess[] Shards, DistTrainProcess[] Workers)> RunJobOnShardNodesAsync(string configPath,
        Dictionary<string, string> psEnvironment, Dictionary<string, string> workerEnvironment, int workerCount = 2)
    {
        var ps = Start(NodeRoles.ParameterServer, configPath, psEnvironment);
        var shards = StartShardNodes(configPath, workerEnvironment, 2);
        DistTrainProcess[] workers = [.. Enumerable.Range(0, workerCount).Select(_ => Start(NodeRoles.Worker, configPath, workerEnvironment))];
        await ps.AssertExitAsync(0, Guard);
        foreach (var node in workers.Concat(shards)) await node.AssertExitAsync(0, Guard);
        return (ps, shards, workers);
    }

    /// <summary>The settings of a job whose 2 shards run on shard nodes, without checkpoints (a test that wants them sets the folder).</summary>
    private static Dictionary<string, string> OnShardNodes => new()
    {
        ["DISTTRAIN_Cluster__ParameterServerShards"] = "2", ["DISTTRAIN_Cluster__ShardNodes"] = "true", ["DISTTRAIN_Checkpoint__Directory"] = "",
        ["DISTTRAIN_Checkpoint__EverySteps"] = "0",
    };

    /// <summary>Shard-node processes, one per data port, with the worker nodes' settings and a certificate of their own.</summary>
    private DistTrainProcess[] StartShardNodes(string configPath, Dictionary<string, string> workerEnvironment, int count, bool defaultInterrupt = false) =>
        [.. FreePorts(count).Select((dataPort, k) =>
        {
            var environment = new Dictionary<string, string>(workerEnvironment)
            {
                ["DISTTRAIN_Cluster__DataPort"] = $"{dataPort}", ["DISTTRAIN_Output__HealthFile"] = Path.Combine(_directory, $"shard-{k}-alive"),
            };
            foreach (var (key, value) in _certificates.Environment($"shard-{k}")) environment[key] = value;
            return Start(NodeRoles.ParameterShard, configPath, environment, defaultInterrupt);
        })];

    /// <summary>A job of many short steps on 2 shard nodes with 2 workers, each node a process, once the parameter server reports
    /// progress within an epoch. 300 epochs, minutes of training, so the nodes are still mid-run when a stop or kill arrives,
    /// however late the test sees the progress line; every node takes SIGINT at its default action, however the suite was started.</summary>
    private async Task<(DistTrainProcess Ps, DistTrainProcess[] Shards, DistTrainProcess[] Workers)> StartJobOnShardNodesUntilMidEpochAsync()
    {
        var configPath = Config(ManyShortStepsConfig.Replace("\"Epochs\": 30", "\"Epochs\": 300", StringComparison.Ordinal));
        var (psEnvironment, workerEnvironment) = Environments(workers: 2, configPath, OnShardNodes);
        var ps = Start(NodeRoles.ParameterServer, configPath, psEnvironment, defaultInterrupt: true);
        var shards = StartShardNodes(configPath, workerEnvironment, 2, defaultInterrupt: true);
        var workers = new[] { Start(NodeRoles.Worker, configPath, workerEnvironment, true), Start(NodeRoles.Worker, configPath, workerEnvironment, true) };
        await ps.WaitForMatchAsync(new Regex(@"epoch +\d+/300 +(25|50|75)%"), Guard);
        return (ps, shards, workers);
    }

    /// <summary>
    /// Cluster:ShardNodes without any shard node: the job fails once Cluster:JoinTimeoutSeconds has passed, naming how many shard
    /// nodes it found of how many, and how to start them; every node exits 1 rather than waiting.
    /// </summary>
    [Fact]
    public async Task A_job_on_shard_nodes_without_any_fails_after_the_join_timeout_naming_the_shard_nodes_to_start()
    {
        var configPath = Config(MlpConfig(hidden: 32, epochs: 1));
        var settings = OnShardNodes;
        settings["DISTTRAIN_Cluster__JoinTimeoutSeconds"] = "8";
        var (psEnvironment, workerEnvironment) = Environments(workers: 2, configPath, settings);
        var ps = Start(NodeRoles.ParameterServer, configPath, psEnvironment);
        var workers = new[] { Start(NodeRoles.Worker, configPath, workerEnvironment), Start(NodeRoles.Worker, configPath, workerEnvironment) };
        await ps.AssertExitAsync(1, Guard);
        foreach (var worker in workers) await worker.AssertExitAsync(1, Guard);
        Assert.Contains("Found 0 of the 2 shard nodes the run needs (Cluster:ParameterServerShards = 2) within 8 s", ps.Output);
        Assert.Contains("Start 2 more shard nodes (disttrain node --role parameter-shard", ps.Output);
    }

    /// <summary>
    /// A shard node killed mid-run: the job does not hang. The workers lose their connection to it and the parameter server
    /// the shard, and the job fails (exit 1) with an error naming the node's shard and how to go on, whichever comes first: the
    /// parameter server's loss of the shard's actor, or a worker's report of its closed connection (then with its data port).
    /// </summary>
    [Fact]
    public async Task A_shard_node_killed_mid_run_fails_the_job_naming_the_shard()
    {
        var (ps, shards, workers) = await StartJobOnShardNodesUntilMidEpochAsync();
        shards[1].Kill();
        await ps.AssertExitAsync(1, Guard);
        foreach (var node in workers.Append(shards[0])) await node.AssertExitAsync(1, Guard);
        // The killed node's shard: the parameter server placed shard k on the k-th shard node to join, whichever process that was.
        var port = Regex.Match(shards[1].Output, @"data plane on 127\.0\.0\.1:(\d+)").Groups[1].Value;
        var shard = Regex.Match(ps.Output, $@"shard (\d) at \S+ \(data plane 127\.0\.0\.1:{port}\)").Groups[1].Value;
        Assert.NotEqual("", shard);
        // The workers' connections to it close first, or the membership downs it first: either way the error is the shard's.
        var named = new Regex($@"training failed: Shard {shard} of 2 (is gone: its shard node akka\.ssl\.tcp://disttrain@127\.0\.0\.1:\d+ left|" +
            $@"cannot be reached: Worker \d: the data plane to shard {shard} of 2 at 127\.0\.0\.1:{port} closed: .*\. Its shard node " +
            @"akka\.ssl\.tcp://disttrain@127\.0\.0\.1:\d+ may have left, crashed or been cut off\.)");
        Assert.True(named.IsMatch(ps.Output), string.Join("\n", ps.Output.Split('\n').Where(line => line.Contains("failed", StringComparison.Ordinal)
            || line.Contains("Parameter server:", StringComparison.Ordinal) || line.Contains("Worker", StringComparison.Ordinal))));
        Assert.DoesNotContain("internal error", ps.Output);
        // The workers take the job's end as it comes, after the parameter server's data plane closed: none registers again with
        // the failed job (a worker used to, when the closed data plane beat the job's end, and logged that it waited for a standby).
        foreach (var worker in workers) Assert.DoesNotContain("registering again", worker.Output);
        // The error says how to go on: this run writes no checkpoints, so from the start.
        Assert.Contains("cannot go on without one (a shard holds its slice of the weights and optimizer state); restart the job (it starts from the " +
                "beginning: this run writes no checkpoints; with Checkpoint:Directory set, a run can be resumed).", ps.Output);
    }

    /// <summary>
    /// A job on shard nodes stopped as Ctrl-C stops a whole cluster (SIGINT to every node at once): the shard nodes and workers
    /// leave as the parameter server stops the job, and the job ends cancelled (exit code 130 on every node), not failed. The
    /// shard nodes stay for the job's end (up to 10 s), so the parameter server gathers the stop's weights from them and keeps
    /// them, as it does without shard nodes (they used to leave at once, and the run ended without weights after 10 s).
    /// </summary>
    [Fact]
    public async Task A_job_on_shard_nodes_stopped_on_every_node_at_once_ends_cancelled_not_failed()
    {
        var (ps, shards, workers) = await StartJobOnShardNodesUntilMidEpochAsync();
        foreach (var node in shards.Concat(workers).Append(ps)) node.Interrupt();
        await ps.AssertExitAsync(130, Guard);
        foreach (var node in workers.Concat(shards)) await node.AssertExitAsync(130, Guard);
        Assert.DoesNotContain("training failed", ps.Output);
        // The shard nodes stay for the job's end, so the parameter server gathers the stop's weights from them and keeps them.
        foreach (var shard in shards) Assert.Contains("Shard node: stopping once the job ends or the shard is released, for at most 10 s", shard.Output);
        Assert.Matches(@"cancelled: stopped at epoch \d+, step \d+ of \d+\. Kept the run folder \S+: model\.safetensors holds the weights of that step", ps.Output);
    }

    [Fact]
    public async Task A_successful_job_ends_in_order_each_worker_joins_once_and_no_node_logs_an_error()
    {
        var configPath = Config(MlpConfig(hidden: 32, epochs: 2, trainLimit: 400, testLimit: 100));
        var (psEnvironment, workerEnvironment) = Environments(workers: 2, configPath);
        // Workers first, as deploy/local/cluster.sh starts them: they register every 2 s, and their singleton proxies hold
        // each registration until the parameter server is up, then deliver them all.
        var workers = new[] { Start("worker", configPath, workerEnvironment), Start("worker", configPath, workerEnvironment) };
        foreach (var worker in workers) await worker.WaitForOutputAsync("Started up successfully", TimeSpan.FromSeconds(60));
        await Task.Delay(TimeSpan.FromSeconds(5));
        var ps = Start("parameter-server", configPath, psEnvironment);

        await ps.AssertExitAsync(0, TimeSpan.FromSeconds(120));
        foreach (var worker in workers) await worker.AssertExitAsync(0, TimeSpan.FromSeconds(60));
        Assert.Contains("Test accuracy after 2 epochs", ps.Output);
        for (var index = 0; index < 2; index++)
            Assert.Single(Regex.Matches(ps.Output, $@"joins as worker {index}\b"));
        // Leaving in order (workers out first, then the parameter server) leaves nothing to report as failed.
        foreach (var node in workers.Append(ps))
        {
            var problems = node.Output.Split('\n').Where(line => line.Contains("[ERROR]") || line.Contains("Disassociated") || line.StartsWith("   at ")).ToList();
            Assert.True(problems.Count == 0, string.Join("\n", problems) + "\n---\n" + node.Output);
        }
    }

    [Fact]
    public async Task A_ten_million_parameter_model_completes_synchronous_steps_across_processes()
    {
        // 784-12288-10: 9.8M weights in the first layer; 40 MB per weights or gradient message.
        var configPath = Config(MlpConfig(hidden: 12_288, epochs: 1, trainLimit: 128, testLimit: 64));
        var (psEnvironment, workerEnvironment) = Environments(workers: 2, configPath);
        var ps = Start("parameter-server", configPath, psEnvironment);
        var workers = new[] { Start("worker", configPath, workerEnvironment), Start("worker", configPath, workerEnvironment) };
        await ps.AssertExitAsync(0, Guard);
        foreach (var worker in workers) await worker.AssertExitAsync(0, Guard);
        var tensors = SafeTensors.Read(FinalWeightsPath());
        Assert.Equal(new[] { 12_288, 784 }, tensors["0.weight"].Shape);
        Assert.True(tensors.Values.Sum(t => (long)t.Data.Length) > 9_000_000);
        Assert.Contains("(version 2,", ps.Output); // 128 samples / (2 workers x 32) = 2 steps
    }

    [Fact]
    public async Task A_worker_with_a_different_model_is_refused_with_a_clear_message_on_both_sides()
    {
        var psConfig = Config(MlpConfig(hidden: 32, epochs: 1));
        var workerConfig = Config(MlpConfig(hidden: 48, epochs: 1));
        var (psEnvironment, workerEnvironment) = Environments(workers: 1, psConfig);
        var ps = Start("parameter-server", psConfig, psEnvironment);
        var worker = Start("worker", workerConfig, workerEnvironment);
        await worker.AssertExitAsync(2, Guard);
        Assert.Contains("refused this worker: model settings differ", worker.Output);
        Assert.DoesNotContain("\"Units\":48", worker.Output); // the differences only, not both settings as JSON
        Assert.Matches(@"Model\.Layers\[\d\]\.Units: 48 vs 32", worker.Output); // the differing setting is named first
        await ps.WaitForOutputAsync("Refused worker node", Guard);
    }

    /// <summary>
    /// A worker whose seed is the parameter server's data-plane port, which answers but is no Akka.Remote port, never joins:
    /// it exits 2 naming Cluster:SeedNodes and the address it dialled. Before, it exited 4 (a lost worker to restart) with
    /// advice about clocks and certificates, and a restart failed the same way.
    /// </summary>
    [Fact]
    public async Task A_worker_whose_seed_is_not_an_Akka_port_exits_2_naming_Cluster_SeedNodes()
    {
        var configPath = Config(MlpConfig(hidden: 32, epochs: 1));
        var (psEnvironment, workerEnvironment) = Environments(workers: 1, configPath);
        var ps = Start("parameter-server", configPath, psEnvironment);
        await ps.WaitForOutputAsync("This node is the active parameter server", Guard);
        var wrongSeed = $"akka.tcp://disttrain@127.0.0.1:{workerEnvironment["DISTTRAIN_Cluster__DataPort"]}";
        workerEnvironment["DISTTRAIN_Cluster__SeedNodes__0"] = wrongSeed;
        workerEnvironment["DISTTRAIN_Cluster__SeedNodes__1"] = wrongSeed;
        var worker = Start("worker", configPath, workerEnvironment);
        await worker.AssertExitAsync(2, Guard);
        var output = worker.Output.ReplaceLineEndings(" ");
        Assert.Contains("this node never joined the cluster, and the peer at the address it dialled (Cluster:SeedNodes: akka.ssl.tcp://disttrain@127.0.0.1:" +
            workerEnvironment["DISTTRAIN_Cluster__DataPort"], output);
        Assert.Contains("check Cluster:SeedNodes, each entry the host and Cluster:Port of a parameter-server node", output);
        Assert.DoesNotContain("Restart this node to rejoin", output);
    }

    /// <summary>
    /// A parameter-server node that cannot join through its seeds gives up after Cluster:JoinTimeoutSeconds (exit code 1, as a
    /// worker that no parameter server accepts) with the seeds, its own address and the fix: an active one whose seed names
    /// an address where nothing listens, and a standby started while its active parameter server is not up. Both used to
    /// log Akka's "Couldn't join seed nodes" every 5 s for ever; the job host, and with it Cluster:PauseTimeoutSeconds,
    /// never started.
    /// </summary>
    [Fact]
    public async Task A_parameter_server_that_cannot_join_through_its_seeds_exits_1_after_the_join_timeout_naming_them()
    {
        var configPath = Config(MlpConfig(hidden: 16, epochs: 1));
        var (psEnvironment, standbyEnvironment, _) = EnvironmentsWithStandby(workers: 1,
            new Dictionary<string, string> { ["DISTTRAIN_Cluster__JoinTimeoutSeconds"] = "3", ["DISTTRAIN_Cluster__PauseTimeoutSeconds"] = "5" });
        // The standby's seed is the active parameter server's address, where no node listens: the other node runs on a port of
        // its own, and its seed is another port where nothing listens.
        var activeSeed = standbyEnvironment["DISTTRAIN_Cluster__SeedNodes__0"];
        var ports = FreePorts(2);
        var nowhere = $"akka.tcp://disttrain@127.0.0.1:{ports[0]}";
        psEnvironment["DISTTRAIN_Cluster__Port"] = ports[1].ToString();
        psEnvironment["DISTTRAIN_Cluster__SeedNodes__0"] = nowhere;
        psEnvironment.Remove("DISTTRAIN_Cluster__SeedNodes__1");
        var ps = Start("parameter-server", configPath, psEnvironment);
        var standby = Start("parameter-server", configPath, standbyEnvironment);
        await ps.AssertExitAsync(1, Guard, [standby]);
        await standby.AssertExitAsync(1, Guard, [ps]);
        var psOutput = ps.Output.ReplaceLineEndings(" ");
        Assert.Contains("training failed: This parameter-server node could not join the cluster within 3 s (Cluster:JoinTimeoutSeconds): no node at its seed " +
            $"{nowhere.Replace("akka.tcp", "akka.ssl.tcp", StringComparison.Ordinal)} (Cluster:SeedNodes) let it in. Its own address, " +
            $"akka.ssl.tcp://disttrain@127.0.0.1:{psEnvironment["DISTTRAIN_Cluster__Port"]}, is not the first seed", psOutput);
        Assert.Contains($"list its own address first: DISTTRAIN_Cluster__SeedNodes__0=akka.tcp://disttrain@HOST:{psEnvironment["DISTTRAIN_Cluster__Port"]}", psOutput);
        var standbyOutput = standby.Output.ReplaceLineEndings(" ");
        Assert.Contains("could not join the cluster within 3 s (Cluster:JoinTimeoutSeconds): no node at its seed " +
            $"{activeSeed.Replace("akka.tcp", "akka.ssl.tcp", StringComparison.Ordinal)} (Cluster:SeedNodes) let it in. Its own address, " +
            $"akka.ssl.tcp://disttrain@127.0.0.1:{standbyEnvironment["DISTTRAIN_Cluster__Port"]}, is not the first seed", standbyOutput);
        Assert.Contains("If it is a standby, list the active parameter server's address first, start that node before this one", standbyOutput);
        Assert.DoesNotContain("Job host waiting", psOutput + standbyOutput);
        Assert.False(Directory.Exists(Path.Combine(_directory, "runs")) && Directory.EnumerateFileSystemEntries(Path.Combine(_directory, "runs")).Any(),
            "a node that never joined left a run folder");
    }

    /// <summary>
    /// A worker that reads other samples under the same settings (here one training label changed) is refused with the
    /// counts and digests of both: it used to be accepted and train the model apart without a word (other labels, another
    /// order), or fail at its first step with an ArgumentOutOfRangeException (fewer rows).
    /// </summary>
    [Fact]
    public async Task A_worker_that_read_other_samples_is_refused_naming_the_samples()
    {
        var otherData = Path.Combine(_directory, "other-data");
        Directory.CreateDirectory(otherData);
        foreach (var file in Directory.GetFiles(TestData.SubsetDirectory)) File.Copy(file, Path.Combine(otherData, Path.GetFileName(file)));
        var labelsPath = Path.Combine(otherData, "train-labels-idx1-ubyte.gz");
        byte[] labels;
        using (var input = new System.IO.Compression.GZipStream(File.OpenRead(labelsPath), System.IO.Compression.CompressionMode.Decompress))
        using (var buffer = new MemoryStream())
        {
            input.CopyTo(buffer);
            labels = buffer.ToArray();
        }
        labels[8 + 500] = (byte)((labels[8 + 500] + 1) % 10); // sample 500's label, after the 8-byte IDX header
        using (var output = new System.IO.Compression.GZipStream(File.Create(labelsPath), System.IO.Compression.CompressionLevel.Fastest))
            output.Write(labels);

        var configPath = Config(MlpConfig(hidden: 32, epochs: 1));
        var (psEnvironment, workerEnvironment) = Environments(workers: 1, configPath);
        workerEnvironment["DISTTRAIN_Data__Directory"] = otherData;
        var ps = Start("parameter-server", configPath, psEnvironment);
        var worker = Start("worker", configPath, workerEnvironment);
        await worker.AssertExitAsync(2, Guard);
        var refusal = new System.Text.RegularExpressions.Regex(@"refused this worker: model settings differ from the parameter server's \(Samples: ""train 1000 " +
            @"\([0-9a-f]{16}\), validation 0, test 250 \(([0-9a-f]{16})\)"" vs ""train 1000 \([0-9a-f]{16}\), validation 0, test 250 \(\1\)""; worker's value");
        Assert.True(refusal.IsMatch(worker.Output), $"no refusal naming the samples. Worker's output:\n{worker.Output}");
        await ps.WaitForOutputAsync("Refused worker node", Guard);
    }

    /// <summary>
    /// A node whose model does not fit its memory is refused before it allocates anything, in one line naming the node,
    /// as train refuses a single-node run; it used to grow until the machine ran out. Both roles, under a 256 MiB GC heap
    /// limit, with a 238,500,010-parameter model (954 MB a copy).
    /// </summary>
    [Theory]
    [InlineData("worker", "this worker node holds about 12 copies of them and ")]
    [InlineData("parameter-server", "this parameter-server node holds about 16 copies of them: ")]
    public async Task A_node_whose_model_does_not_fit_its_memory_is_refused_at_once_naming_the_node(string role, string expected)
    {
        var config = Config(MlpConfig(hidden: 300_000, epochs: 1));
        var (psEnvironment, workerEnvironment) = Environments(workers: 1, config);
        var environment = role == "worker" ? workerEnvironment : psEnvironment;
        environment["DOTNET_GCHeapHardLimit"] = "0x10000000";
        var node = Start(role, config, environment);
        await node.AssertExitAsync(2, Guard);
        Assert.True(node.Output.Contains("error: not enough memory to build the model: it has 238,500,010 parameters, 954,000,040 bytes (0.9 GiB) as float32, and " + expected,
            StringComparison.Ordinal), node.Output);
        Assert.Contains("or a machine (or container memory limit) with more memory.", node.Output);
    }

    /// <summary>
    /// A parameter server told to resume (Checkpoint:Resume, as cluster.sh passes it on) from a folder with no checkpoint
    /// ends with exit 2 and one error line that names the node's setting. It used to say "Drop --resume (Checkpoint:Resume)",
    /// an option of train that `node` does not have, and to print it twice: an [ERROR] log line and the error: line.
    /// </summary>
    [Fact]
    public async Task A_parameter_server_told_to_resume_from_an_empty_folder_says_so_once_naming_the_nodes_setting()
    {
        var configPath = Config(MlpConfig(hidden: 32, epochs: 1));
        var (psEnvironment, workerEnvironment) = Environments(workers: 1, configPath);
        psEnvironment["DISTTRAIN_Checkpoint__Resume"] = "true"; // the worker's environment has no Checkpoint:Directory to resume from
        var checkpoints = psEnvironment["DISTTRAIN_Checkpoint__Directory"];
        Directory.CreateDirectory(checkpoints);
        var ps = Start("parameter-server", configPath, psEnvironment);
        var worker = Start("worker", configPath, workerEnvironment);
        await ps.AssertExitAsync(2, Guard, [worker]);
        await worker.WaitAsync(Guard, [ps]);
        var expected = $"No checkpoint to resume from in {Path.GetFullPath(checkpoints)}. Set Checkpoint:Resume to false (DISTTRAIN_Checkpoint__Resume=false) to start a new run.";
        Assert.Single(Regex.Matches(ps.Output, "No checkpoint to resume from"));
        Assert.Contains("error: " + expected, ps.Output.ReplaceLineEndings(" ").Replace("  ", " ", StringComparison.Ordinal));
        Assert.DoesNotContain("--resume", ps.Output);
        Assert.DoesNotContain("--resume", worker.Output);
        Assert.DoesNotContain("Training starts", ps.Output);
    }

    /// <summary>
    /// Asserts that <paramref name="actualFolder"/> holds the checkpoint files of <paramref name="expectedFolder"/>, by name (version,
    /// epoch and round), each with the same position, settings, weights and optimizer state, bit for bit; returns their names, in
    /// order. The epoch's loss sum is left out: the shards' reports sum it in another order.
    /// </summary>
    private static string[] AssertSameCheckpoints(string expectedFolder, string actualFolder, Core.Tensors.ParameterLayout layout)
    {
        var names = Directory.GetFiles(expectedFolder, "*.safetensors").Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(names, Directory.GetFiles(actualFolder, "*.safetensors").Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).ToArray());
        foreach (var name in names)
        {
            var expected = TrainingCheckpoint.Read(Path.Combine(expectedFolder, name), layout);
            var actual = TrainingCheckpoint.Read(Path.Combine(actualFolder, name), layout);
            Assert.Equal((expected.Version, expected.Epoch, expected.Round, expected.Workers, expected.OptimizerSteps, expected.ShardSeed, expected.BatchSizePerWorker,
                expected.EpochSamples, expected.Mode, expected.TrainSamples, expected.DataSettings, expected.ModelSettings, expected.RunEpochs),
                (actual.Version, actual.Epoch, actual.Round, actual.Workers, actual.OptimizerSteps, actual.ShardSeed, actual.BatchSizePerWorker,
                actual.EpochSamples, actual.Mode, actual.TrainSamples, actual.DataSettings, actual.ModelSettings, actual.RunEpochs));
            Compare.Identical(expected.Weights.Values, actual.Weights.Values, $"{name}: weights");
            Assert.Equal(expected.OptimizerState.Select(b => b.Name), actual.OptimizerState.Select(b => b.Name));
            for (var b = 0; b < expected.OptimizerState.Count; b++)
                Compare.Identical(expected.OptimizerState[b].Values, actual.OptimizerState[b].Values, $"{name}: {expected.OptimizerState[b].Name}");
        }
        return names;
    }

    /// <summary>
    /// Cluster:ShardNodes: the parameter server places its 2 shards on 2 shard-node processes, and the 2 worker processes send
    /// each shard its slice of every gradient and take each round's weights from the shard nodes, over mutual TLS: after 2
    /// epochs of 16 steps the final weights are bit-identical to single-node mode with one shard, and every node exits 0. With
    /// Checkpoint:EverySteps 5, within each epoch (versions 5, 10, 15, 20, 25, 30) and at each end, the parameter server puts
    /// checkpoints together from the shards' slices, the files single-node mode writes, bit for bit (position, weights,
    /// optimizer state). Resumed on fresh shard nodes from the end of epoch 1 (the later ones removed), and then from version 30
    /// within epoch 2, the job trains to single-node mode's final weights each time, writes the later checkpoints again as
    /// single-node mode does, and reports epoch 2's training loss over all of its rounds, those before the interruption too.
    /// Resumed from the checkpoint of the finished training, it trains nothing, and the shards only hand out its weights, which
    /// score as the first run's and are written as the model. Resumed from version 20 (epoch 2 round 4) with 1 worker, it goes on
    /// with it after Cluster:ResumeWaitSeconds and ends on the weights of the same resume without shard nodes, bit for bit (it
    /// used to wait for the second worker until Cluster:PauseTimeoutSeconds). The shards measure their slices of the per-tensor gradient norms, and
    /// the parameter server judges the whole tensors from them: with every gradient counted as exploding, one warning per tensor.
    /// </summary>
    [Fact]
    public async Task Two_shards_on_shard_nodes_train_and_checkpoint_within_and_at_epoch_ends_as_single_node_mode_and_resume_from_either()
    {
        // Every gradient counts as exploding, so the per-tensor diagnostics the shards measure (every 4 steps) warn of each tensor.
        var configPath = Config(MlpConfig(hidden: 32, epochs: 2).Replace("\"Compute\"", "\"Checkpoint\": { \"Keep\": 100 }, \"Monitoring\": { " +
            "\"GradientNormEverySteps\": 4, \"VanishingGradientNorm\": 1e-12, \"ExplodingGradientNorm\": 1e-9, \"WarnAfterMeasurements\": 2 }, \"Compute\"",
            StringComparison.Ordinal));
        var (psEnvironment, workerEnvironment) = Environments(workers: 2, configPath, OnShardNodes);
        var checkpoints = Path.Combine(_directory, "checkpoints");
        psEnvironment["DISTTRAIN_Checkpoint__Directory"] = checkpoints;
        psEnvironment["DISTTRAIN_Checkpoint__EverySteps"] = "5";
        var (ps, shards, workers) = await RunJobOnShardNodesAsync(configPath, psEnvironment, workerEnvironment);
        var firstRun = ps.Output;
        // The shards' slices put together (0.weight is cut by the shards' boundary): one warning per tensor at the second measurement.
        foreach (var tensor in new[] { "0.weight", "0.bias", "2.weight", "2.bias" })
            Assert.Matches($@"Exploding gradient: {Regex.Escape(tensor)} has had a gradient norm above 1E-09 for 2 measurements \(now [0-9.]+(E[-+]\d+)? at step 8\)", ps.Output);
        Assert.Contains("parameter server in 2 shards of 12,720 and 12,730 weights, each on a shard node of its own (Cluster:ShardNodes)", ps.Output);
        Assert.Contains("Parameter server: 2 shards placed on ", ps.Output);
        foreach (var worker in workers) Assert.Contains("trains against 2 shard nodes: 127.0.0.1:", worker.Output);
        // An orderly end: the shards stop with their owner before the workers hear of the end, which is no failure of theirs,
        // nor worth a warning.
        foreach (var node in workers.Concat(shards).Append(ps)) Assert.DoesNotContain("[ERROR]", node.Output);
        foreach (var worker in workers) Assert.DoesNotMatch(@"\[WARNING\][^\n]*data plane to shard", worker.Output);
        // The parameter server's data plane carried no tensor: it says where the bytes are, not a per-step figure of nothing.
        Assert.Contains("Data plane: the workers exchanged every tensor with the shard nodes directly; each shard node's log gives its bytes.", ps.Output);
        Assert.DoesNotContain("bytes per step (the minimum", ps.Output);

        var singleCheckpoints = Path.Combine(_directory, "single-checkpoints");
        var single = await SingleProcessWeightsAsync(configPath, singleCheckpoints, everySteps: 5);
        void AssertSingleNodeWeights(string runs)
        {
            var tensors = SafeTensors.Read(FinalWeightsPath(runs));
            foreach (var segment in single.Layout.Segments)
                Compare.Identical(single.Segment(segment).ToArray(), tensors[segment.Name].Data, $"{runs}: {segment.Name}");
        }
        AssertSingleNodeWeights("runs");
        var names = AssertSameCheckpoints(singleCheckpoints, checkpoints, single.Layout);
        Assert.Equal([CheckpointStore.FileName(5, 1, 5), CheckpointStore.FileName(10, 1, 10), CheckpointStore.FileName(15, 1, 15), CheckpointStore.FileName(16, 2, 0),
            CheckpointStore.FileName(20, 2, 4), CheckpointStore.FileName(25, 2, 9), CheckpointStore.FileName(30, 2, 14), CheckpointStore.FileName(32, 3, 0)], names);
        Assert.Contains(", next epoch 3 round 0, ", ps.Output); // the parameter server's line of the last

        // Resumed from the end of epoch 1 (version 16; the later checkpoints removed), on new shard-node and worker processes.
        foreach (var later in names[4..]) File.Delete(Path.Combine(checkpoints, later));
        psEnvironment["DISTTRAIN_Checkpoint__Resume"] = "true";
        psEnvironment["DISTTRAIN_Output__Directory"] = Path.Combine(_directory, "runs-from-epoch-end");
        (ps, shards, workers) = await RunJobOnShardNodesAsync(configPath, psEnvironment, workerEnvironment);
        Assert.Contains($"Resuming from checkpoint {Path.Combine(checkpoints, names[3])}", ps.Output);
        Assert.Contains("Parameter server: the shards start from the checkpoint of epoch 2 round 0 (version 16, 16 optimizer steps).", ps.Output);
        foreach (var shard in shards) Assert.Contains("resumes from the checkpoint's slice, version 16 after 16 optimizer steps.", shard.Output);
        foreach (var node in workers.Concat(shards).Append(ps)) Assert.DoesNotContain("[ERROR]", node.Output);
        AssertSingleNodeWeights("runs-from-epoch-end");
        Assert.Equal(names, AssertSameCheckpoints(singleCheckpoints, checkpoints, single.Layout)); // versions 20 to 32 written again

        // Resumed from version 30, within epoch 2.
        File.Delete(Path.Combine(checkpoints, CheckpointStore.FileName(32, 3, 0)));
        psEnvironment["DISTTRAIN_Output__Directory"] = Path.Combine(_directory, "runs-resumed");
        (ps, shards, workers) = await RunJobOnShardNodesAsync(configPath, psEnvironment, workerEnvironment);
        Assert.Contains("Parameter server: the shards start from the checkpoint of epoch 2 round 14 (version 30, 30 optimizer steps).", ps.Output);
        foreach (var shard in shards) Assert.Contains("resumes from the checkpoint's slice, version 30 after 30 optimizer steps.", shard.Output);
        foreach (var node in workers.Concat(shards).Append(ps)) Assert.DoesNotContain("[ERROR]", node.Output);
        AssertSingleNodeWeights("runs-resumed");
        Assert.Equal(names, AssertSameCheckpoints(singleCheckpoints, checkpoints, single.Layout));
        // Epoch 2's training loss counts the rounds before the interruption: the resumed run reports the first run's, to the last digit.
        string EpochTwo(string runs) => File.ReadLines(Directory.GetFiles(Path.Combine(_directory, runs), "epochs.csv", SearchOption.AllDirectories).Single())
            .Single(line => line.StartsWith("2,", StringComparison.Ordinal)).Split(',')[2];
        Assert.Equal(EpochTwo("runs"), EpochTwo("runs-resumed"));

        // Resumed once more, from the checkpoint written when the last epoch's training ended (epoch 3 round 0): nothing is left to
        // train, so the shards only hand the checkpoint's weights to the workers, which score them as epoch 2's, and the run writes
        // the model. The score is the first run's (the same weights on the same test samples).
        var accuracy = new Regex(@"Test accuracy after 2 epochs: [\d.]+%");
        psEnvironment["DISTTRAIN_Output__Directory"] = Path.Combine(_directory, "runs-scored");
        (ps, shards, workers) = await RunJobOnShardNodesAsync(configPath, psEnvironment, workerEnvironment);
        Assert.Contains("weights version 32, all 2 epochs trained", ps.Output);
        Assert.Contains("All 2 epochs were trained before this run started: the workers score epoch 2's weights (version 32)", ps.Output);
        Assert.Matches(accuracy, ps.Output);
        Assert.Equal(accuracy.Match(firstRun).Value, accuracy.Match(ps.Output).Value);
        Assert.DoesNotContain("gathered from the shard nodes for its checkpoint", ps.Output); // nothing new to checkpoint
        foreach (var node in workers.Concat(shards).Append(ps)) Assert.DoesNotContain("[ERROR]", node.Output);
        // The workers were done with the part once they held its weights: the shards' stop at the run's end is no failure of theirs.
        foreach (var worker in workers) Assert.DoesNotContain("The job ends with this", worker.Output);
        AssertSingleNodeWeights("runs-scored");

        // Resumed from version 20 (epoch 2 round 4) with only 1 of the 2 workers epoch 2 was planned for: after
        // Cluster:ResumeWaitSeconds the job goes on with it, which trains the rest of epoch 2's plan. The final weights are those of
        // the same resume with the shards in the parameter server's process, bit for bit, and so is epoch 2's training loss.
        var fewer = new Dictionary<string, string> { ["DISTTRAIN_Cluster__MinWorkers"] = "1", ["DISTTRAIN_Cluster__ResumeWaitSeconds"] = "1" };
        foreach (var (key, value) in fewer) psEnvironment[key] = value;
        void KeepUpToVersion20()
        {
            foreach (var later in new CheckpointStore(checkpoints, 100).List().TakeWhile(p => !p.EndsWith(CheckpointStore.FileName(20, 2, 4), StringComparison.Ordinal)))
                File.Delete(later);
        }
        KeepUpToVersion20();
        psEnvironment["DISTTRAIN_Output__Directory"] = Path.Combine(_directory, "runs-fewer-shard-nodes");
        (ps, shards, workers) = await RunJobOnShardNodesAsync(configPath, psEnvironment, workerEnvironment, workerCount: 1);
        const string goesOn = "Epoch 2 resumes at round 4 with 1 of the 2 workers its checkpoint was planned for";
        Assert.Contains("the job goes on with 1, which train the rest of that epoch's plan.", ps.Output);
        Assert.Contains(goesOn, ps.Output);
        Assert.Contains("Parameter server: the shards start from the checkpoint of epoch 2 round 4 (version 20, 20 optimizer steps).", ps.Output);
        foreach (var node in workers.Concat(shards).Append(ps)) Assert.DoesNotContain("[ERROR]", node.Output);

        KeepUpToVersion20();
        var inProcess = new Dictionary<string, string>(psEnvironment)
        {
            ["DISTTRAIN_Cluster__ShardNodes"] = "false", ["DISTTRAIN_Output__Directory"] = Path.Combine(_directory, "runs-fewer-in-process"),
        };
        var loneEnvironment = new Dictionary<string, string>(workerEnvironment) { ["DISTTRAIN_Cluster__ShardNodes"] = "false" };
        ps = Start(NodeRoles.ParameterServer, configPath, inProcess);
        var lone = Start(NodeRoles.Worker, configPath, loneEnvironment);
        await ps.AssertExitAsync(0, Guard);
        await lone.AssertExitAsync(0, Guard);
        Assert.Contains(goesOn, ps.Output);
        var onShardNodes = SafeTensors.Read(FinalWeightsPath("runs-fewer-shard-nodes"));
        var inOneProcess = SafeTensors.Read(FinalWeightsPath("runs-fewer-in-process"));
        foreach (var segment in single.Layout.Segments)
            Compare.Identical(inOneProcess[segment.Name].Data, onShardNodes[segment.Name].Data, $"resumed with fewer workers: {segment.Name}");
        Assert.Equal(EpochTwo("runs-fewer-in-process"), EpochTwo("runs-fewer-shard-nodes"));
    }

    /// <summary>
    /// Cluster:ShardNodes with a learning rate of 2 on a linear model: the loss overflows after 15 steps, and the shards diverge at the step one
    /// parameter server does. The parameter server puts the last good weights together from the shard nodes (the diverged shard's
    /// host sends its slice, the other shards theirs of the same version): exit code 3, <c>last-good.safetensors</c> bit-identical
    /// to single-node mode's last good weights, and a summary.json that records the divergence with their version. Before, the job
    /// failed with the shard's reason and no weights.
    /// </summary>
    [Fact]
    public async Task A_job_on_shard_nodes_that_diverges_leaves_single_node_modes_last_good_weights()
    {
        // Two Dense layers without an activation between them, every weight 0.1: the weights grow geometrically at this rate.
        var configPath = Config(MlpConfig(hidden: 32, epochs: 1).Replace("{ \"Type\": \"ReLU\" }, ", "", StringComparison.Ordinal)
            .Replace("\"Layers\"", "\"Initializer\": { \"Kind\": \"Constant\", \"Constant\": 0.1 }, \"Layers\"", StringComparison.Ordinal)
            .Replace("\"LearningRate\": 0.05", "\"LearningRate\": 2", StringComparison.Ordinal));
        var (psEnvironment, workerEnvironment) = Environments(workers: 2, configPath, OnShardNodes);
        var ps = Start(NodeRoles.ParameterServer, configPath, psEnvironment);
        var shards = StartShardNodes(configPath, workerEnvironment, 2);
        DistTrainProcess[] workers = [Start(NodeRoles.Worker, configPath, workerEnvironment), Start(NodeRoles.Worker, configPath, workerEnvironment)];
        await ps.AssertExitAsync(3, Guard, [.. workers, .. shards]);
        foreach (var node in workers.Concat(shards)) await node.WaitAsync(Guard);

        var options = TrainingOptionsLoader.Load(configPath, new Dictionary<string, string?> { ["Data:Directory"] = TestData.SubsetDirectory },
            environment: new Dictionary<string, string?>());
        var data = TrainingData.Load(options.Data);
        var single = await Assert.ThrowsAsync<TrainingDivergedException>(() => SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout());
        Assert.True(single.LastGoodVersion > 0, $"single-node mode diverged at version {single.LastGoodVersion}: raise the learning rate's steps before it");
        // The shard's message is one server's after the shard's index: "Training diverged at epoch 1, step 16 (weights version 15)".
        Assert.Matches($"training diverged: Shard [01]: {Regex.Escape(single.Message[..single.Message.IndexOf(':', StringComparison.Ordinal)])}: ", ps.Output);
        Assert.Contains($"putting the last good weights (version {single.LastGoodVersion}) together from the shard nodes", ps.Output);
        Assert.Contains($"saved: the last good weights (version {single.LastGoodVersion}) are in ", ps.Output);
        Assert.DoesNotContain("could not be put together", ps.Output);
        var run = Assert.Single(Directory.GetDirectories(Path.Combine(_directory, "runs")));
        var lastGood = SafeTensors.Read(Path.Combine(run, RunFiles.LastGood));
        var expected = new Core.Tensors.ParameterVector(Core.Models.ModelFactory.Build(options.Model).Layout, single.LastGoodWeights!);
        foreach (var segment in expected.Layout.Segments)
            Compare.Identical(expected.Segment(segment).ToArray(), lastGood[segment.Name].Data, segment.Name);
        using var summary = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(run, RunFiles.Summary)));
        Assert.Equal(single.LastGoodVersion, summary.RootElement.GetProperty("version").GetInt64());
    }

    /// <summary>
    /// The parameter server takes Checkpoint:Directory when its job starts: a folder another running job holds (here this
    /// test process) ends the job before training, with the reason on the parameter server and on the worker, and
    /// nothing is written into it.
    /// </summary>
    [Fact]
    public async Task A_job_whose_checkpoint_folder_another_job_holds_ends_before_training_naming_the_folder()
    {
        var configPath = Config(MlpConfig(hidden: 32, epochs: 1));
        var (psEnvironment, workerEnvironment) = Environments(workers: 1, configPath);
        var checkpoints = psEnvironment["DISTTRAIN_Checkpoint__Directory"];
        using var otherJob = CheckpointDirectoryLock.Acquire(checkpoints);
        var ps = Start("parameter-server", configPath, psEnvironment);
        var worker = Start("worker", configPath, workerEnvironment);
        var psExit = await ps.WaitAsync(Guard);
        var workerExit = await worker.WaitAsync(Guard);
        Assert.True(psExit == 1 && workerExit == 1, $"exit codes {psExit} and {workerExit}\n{ps.Output}\n{worker.Output}");
        Assert.Contains($"Checkpoint:Directory '{checkpoints}' is in use by another running job", ps.Output);
        Assert.Contains("is in use by another running job", worker.Output);
        Assert.DoesNotContain("Training starts", ps.Output);
        Assert.Empty(new CheckpointStore(checkpoints, 10).List());
    }

    /// <summary>
    /// A checkpoint folder that cannot be created (its path goes through a regular file, which stops root too, as a read-only
    /// mount does) is refused at the parameter-server node's start-up, exit code 2 as another bad setting, before it waits for
    /// workers. It used to be found only once the workers were ready and the job took the folder, as a failed job (exit code 1).
    /// </summary>
    [Fact]
    public async Task A_parameter_server_whose_checkpoint_folder_cannot_be_written_exits_2_at_start_up_before_waiting_for_workers()
    {
        var configPath = Config(MlpConfig(hidden: 16, epochs: 1));
        var file = Path.Combine(_directory, "a-file");
        File.WriteAllText(file, "not a folder");
        var checkpoints = Path.Combine(file, "checkpoints");
        var (psEnvironment, _) = Environments(workers: 1, configPath, new Dictionary<string, string> { ["DISTTRAIN_Checkpoint__Directory"] = checkpoints });
        var ps = Start("parameter-server", configPath, psEnvironment);
        await ps.AssertExitAsync(2, Guard);
        Assert.Contains($"error: Checkpoint:Directory '{checkpoints}' is below {file}, which is a file, not a folder, so it cannot be created. " +
            "Give a folder for the checkpoints (it is created if missing), or move the file away.", ps.Output);
        Assert.DoesNotContain("Waiting for", ps.Output);
        Assert.False(Directory.Exists(Path.Combine(_directory, "runs")) && Directory.EnumerateFileSystemEntries(Path.Combine(_directory, "runs")).Any(),
            "the refused node left a run folder");
    }

    [Fact]
    public async Task A_worker_killed_mid_epoch_is_covered_by_the_others_every_sample_is_used_and_training_completes()
    {
        // Batch 2 over 1,000 samples and 3 workers: 167 rounds per epoch, so the kill usually lands inside an epoch (if the
        // output is read late, at its end or inside a later one: the in-process tests lose a worker at chosen rounds), and
        // 30 epochs leave time for it to land well before the end.
        var configPath = Config(ManyShortStepsConfig);
        var (psEnvironment, workerEnvironment) = Environments(workers: 3, configPath);
        psEnvironment["DISTTRAIN_Cluster__MinWorkers"] = "2"; // start with 3, carry on with 2
        workerEnvironment["DISTTRAIN_Cluster__MinWorkers"] = "2";
        // Every node records which samples its minibatches held and the parameter server which gradients each step used.
        var trace = Path.Combine(_directory, "sample-trace");
        psEnvironment["DISTTRAIN_Monitoring__SampleTraceDirectory"] = workerEnvironment["DISTTRAIN_Monitoring__SampleTraceDirectory"] = trace;
        var ps = Start("parameter-server", configPath, psEnvironment);
        var workers = new[] { Start("worker", configPath, workerEnvironment), Start("worker", configPath, workerEnvironment), Start("worker", configPath, workerEnvironment) };
        // The first progress line within an epoch, of whichever epoch (epoch 1's, unless the output is read late).
        await ps.WaitForMatchAsync(new Regex(@"epoch +\d+/30 +(25|50|75)%"), Guard);
        // All three in the job first (a slow third process joins at the start of a later epoch), so that losing worker 0
        // leaves the two that Cluster:MinWorkers asks for: killed while only two were in, the job rightly pauses.
        try
        {
            await ps.WaitForOutputAsync("joins as worker 2", Guard);
        }
        catch (Exception e)
        {
            // Once seen in a loaded suite run: the third worker never registered. Its own output says why.
            throw new Xunit.Sdk.XunitException($"{e.Message}\nThe worker nodes' output:\n{string.Join("\n---\n", workers.Select(w => w.Output))}");
        }
        // Kill worker 0: it is always among the workers training starts with.
        var victim = workers.First(w => w.Output.Contains("Joined the job as worker 0", StringComparison.Ordinal));
        victim.Kill(); // SIGKILL: no goodbye on any channel
        // In this order: the loss is detected, then training goes on (a further epoch line or the end).
        var lostAt = await ps.WaitForOutputAsync("Worker 0 (node ", Guard);
        await ps.WaitForOutputAsync("train loss", Guard, after: lostAt);

        await ps.AssertExitAsync(0, Guard);
        foreach (var survivor in workers.Where(w => w != victim))
            await survivor.AssertExitAsync(0, Guard);
        Assert.Contains("Test accuracy after 30 epochs", ps.Output);
        // The data plane's least traffic counts the workers of each step (3, 2, or 1 while a part of an epoch is left to
        // one), so it is not the figure for the 2 workers left at the end, which it was before.
        var minimum = Regex.Match(ps.Output, @"bytes per step \(the minimum, 2 x model x [^,]*?, is ([\d,]+)\)");
        Assert.True(minimum.Success, ps.Output);
        const long perWorker = 2 * sizeof(float) * (784 * 64 + 64 + 64 * 10 + 10);
        var minimumBytes = long.Parse(minimum.Groups[1].Value.Replace(",", ""));
        Assert.InRange(minimumBytes, perWorker + 1, 3 * perWorker - 1);
        // With all three training from the start some steps had 3 workers; a third that joined late may have taken worker
        // 0's place before any step had three.
        if (ps.Output.Contains("Training starts with 3 workers", StringComparison.Ordinal)) Assert.NotEqual(2 * perWorker, minimumBytes);

        // Which samples ran: every epoch, including the one with the kill, trained on each of the 1,000 exactly once, and
        // the run's own per-epoch counts say the same.
        var used = SampleTraceLog.AssertEverySampleOnceEachEpoch(trace, 1000, 30);
        var summary = System.Text.Json.JsonDocument.Parse(File.ReadAllText(
            Directory.GetFiles(Path.Combine(_directory, "runs"), "summary.json", SearchOption.AllDirectories).Single()));
        var epochs = summary.RootElement.GetProperty("epochs").EnumerateArray().ToList();
        Assert.Equal(used.Values.Select(s => s.Length), epochs.Select(e => e.GetProperty("TrainSamples").GetInt32()));
        // Worker 0 trained until the epoch it was lost in, and never after.
        // The line names the node (its address, which the node's own log lines carry), as worker numbers follow registration.
        var lostLine = Regex.Match(ps.Output[lostAt..], @"^Worker 0 \(node ([^)]*)\) is lost \([^)]*\) at epoch (\d+)");
        Assert.True(lostLine.Success, ps.Output[lostAt..]);
        Assert.Contains($"[{lostLine.Groups[1].Value}/user/agent] Joined the job as worker 0", victim.Output);
        var lostEpoch = int.Parse(lostLine.Groups[2].Value);
        var victimRounds = SampleTraceLog.Applied(trace).Where(m => m.Worker == 0).ToList();
        Assert.NotEmpty(victimRounds);
        Assert.DoesNotContain(victimRounds, m => m.Epoch > lostEpoch);
        var accuracy = epochs[^1].GetProperty("TestAccuracy").GetDouble();

        // The same job undisturbed (one process, 3 workers): the lost worker costs little accuracy.
        var options = TrainingOptionsLoader.Load(configPath, new Dictionary<string, string?> { ["Data:Directory"] = TestData.SubsetDirectory },
            environment: new Dictionary<string, string?>());
        var data = TrainingData.Load(options.Data);
        var undisturbed = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout();
        var differentSamples = Math.Abs(Math.Round(250 * (undisturbed.FinalEpoch.TestAccuracy - accuracy)));
        Assert.True(differentSamples <= MaxAccuracyDifferenceSamples,
            $"test accuracy {accuracy:P1} with a worker killed, {undisturbed.FinalEpoch.TestAccuracy:P1} undisturbed: {differentSamples} of 250 test samples apart");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)] // SIGTERM (Ctrl-C, docker stop): the active node stops stepping at once and ends nothing, so the standby goes on
    public async Task The_standby_parameter_server_takes_over_from_the_newest_checkpoint_when_the_active_one_is_killed_or_stopped(bool stopped)
    {
        // 1,000 samples, 2 worker nodes of batch 2: 250 steps per epoch, 7,500 in all; a checkpoint every 100 steps.
        // Training:Workers (3) differs from the worker nodes on purpose: in cluster mode the nodes decide, and the
        // takeover must resume with the checkpoint's worker count, not the config's.
        var configPath = Config(ManyShortStepsConfig);
        // The compose file's checkpoint folder, shared by both parameter servers (here a local folder).
        var (psEnvironment, standbyEnvironment, workerEnvironment) = EnvironmentsWithStandby(workers: 2);
        psEnvironment["DISTTRAIN_Checkpoint__EverySteps"] = standbyEnvironment["DISTTRAIN_Checkpoint__EverySteps"] = "100";
        // An earlier job's checkpoint left in the shared folder, newer by version and by write time: a takeover must
        // not resume it (it is past the last epoch, so resuming it would fail), and pruning must not favour it: it goes
        // before the job's own. (Skipping another job's checkpoint on resume: ResumeRefusalTests.)
        var stalePath = WriteStaleCheckpoint(configPath, psEnvironment["DISTTRAIN_Checkpoint__Directory"]);
        var active = Start("parameter-server", configPath, psEnvironment);
        await active.WaitForOutputAsync("This node is the active parameter server", Guard);
        var standby = Start("parameter-server", configPath, standbyEnvironment);
        await standby.WaitForOutputAsync("Standby parameter server: the active one is", Guard);
        var workers = new[] { Start("worker", configPath, workerEnvironment), Start("worker", configPath, workerEnvironment) };

        await active.WaitForOutputAsync("epoch  3/30", Guard);
        string? kept = null;
        if (stopped)
        {
            active.Terminate();
            await active.AssertExitAsync(130, Guard);
            Assert.Contains("cancelled: ", active.Output);
            Assert.DoesNotContain("Job finished", active.Output);
            // As it left, the standby became the oldest: the stopped node did not call itself a standby of it.
            Assert.DoesNotContain("Standby parameter server: the active one is", active.Output);
            // The stopped active keeps its run folder with the weights at the stop, as train does; the job goes on elsewhere.
            kept = Regex.Match(active.Output, @"Kept the run folder (\S+):").Groups[1].Value;
            Assert.True(File.Exists(Path.Combine(kept, "model.safetensors")), active.Output);
        }
        else active.Kill(); // SIGKILL: no goodbye on any channel
        var checkpointed = Regex.Matches(active.Output, @"Checkpoint \S+: version (\d+)").Select(m => long.Parse(m.Groups[1].Value)).Max();

        // In this order on the standby: it takes over, resumes from a checkpoint, then training starts again with the workers.
        var takeover = await standby.WaitForOutputAsync("Taking over the job as the parameter server", Guard);
        var resumedAt = await standby.WaitForOutputAsync("Resuming from checkpoint", Guard, after: takeover);
        await standby.WaitForOutputAsync("Training starts with 2 workers", Guard, after: resumedAt);
        var resumed = Regex.Match(standby.Output[resumedAt..], @"^Resuming from checkpoint \S+: weights version (\d+), epoch (\d+) round (\d+)");
        Assert.True(resumed.Success, standby.Output);
        // Pruning removed it before the job's own (both nodes keep this job's checkpoints first, by version), and it was never resumed.
        Assert.False(File.Exists(stalePath), $"the earlier job's checkpoint {stalePath} outlived the job's own newer ones");
        Assert.DoesNotContain($"checkpoint {stalePath}: weights version", standby.Output);
        // The step counter never goes backwards past the newest checkpoint the active server wrote before it died.
        Assert.True(long.Parse(resumed.Groups[1].Value) >= checkpointed,
            $"resumed at version {resumed.Groups[1].Value}, but the active server had written version {checkpointed}");

        await standby.AssertExitAsync(0, Guard);
        foreach (var worker in workers) await worker.AssertExitAsync(0, Guard);
        Assert.Contains("Lost the data plane to the parameter server (", workers[0].Output);
        Assert.Contains("Test accuracy after 30 epochs", standby.Output);
        Assert.Contains("(version 7500,", standby.Output); // every step of the job, each once

        // Nothing was lost or repeated: the job ends on the weights of an undisturbed run (same seed, shard plan and summation order).
        await AssertFinalWeightsAreAnUndisturbedRunsAsync(configPath, workers: 2, besides: kept);
    }

    /// <summary>
    /// The active parameter server trains the job to its end but cannot write its outputs (here its run folder already
    /// holds a directory named model.safetensors; in life a full or failing disk). With a standby up, it leaves the job to
    /// the standby instead of ending it for every node: the standby takes over from the checkpoint of the finished training,
    /// scores it and writes the model, which is the undisturbed run's.
    /// </summary>
    [Fact]
    public async Task An_active_parameter_server_that_cannot_write_its_outputs_leaves_the_job_to_the_standby_which_writes_them()
    {
        var configPath = Config(MlpConfig(hidden: 16, epochs: 2));
        var (psEnvironment, standbyEnvironment, workerEnvironment) = EnvironmentsWithStandby(workers: 2);
        var activeRuns = Path.Combine(_directory, "runs-active");
        psEnvironment["DISTTRAIN_Output__Directory"] = activeRuns;
        var (active, standby) = await StartActiveThenStandbyAsync(configPath, psEnvironment, standbyEnvironment,
            whileAlone: () => Directory.CreateDirectory(Path.Combine(Directory.GetDirectories(activeRuns).Single(), "model.safetensors")));
        var workers = new[] { Start("worker", configPath, workerEnvironment), Start("worker", configPath, workerEnvironment) };

        await active.AssertExitAsync(1, Guard);
        Assert.Contains("could not write its outputs after training", active.Output);
        Assert.Matches(@"The job is left to the standby parameter server at akka\.(ssl\.)?tcp://disttrain@127\.0\.0\.1:\d+, which takes it over from the newest checkpoint in ", active.Output);
        Assert.DoesNotContain("Job finished", active.Output);
        var takeover = await standby.WaitForOutputAsync("Taking over the job as the parameter server", Guard);
        await standby.WaitForOutputAsync("Resuming from checkpoint", Guard, after: takeover);
        await standby.AssertExitAsync(0, Guard);
        foreach (var worker in workers) await worker.AssertExitAsync(0, Guard);
        Assert.Contains("Test accuracy after 2 epochs", standby.Output);

        await AssertFinalWeightsAreAnUndisturbedRunsAsync(configPath, workers: 2);
    }

    /// <summary>
    /// A standby parameter server whose settings differ from the active one's (here its hidden layer, set by a DISTTRAIN_*
    /// variable on the standby alone) is refused as soon as both are up, whichever started first: it exits with code 2 and
    /// one line naming the setting (the standby's value vs the active's) and the fix, the active node logs one WARNING
    /// naming it, and the job finishes. Before, it joined without a word and, at a takeover, refused every worker of the
    /// job (model settings differ) and waited Cluster:PauseTimeoutSeconds for workers that never came.
    /// </summary>
    [Theory]
    [InlineData(false)] // the active node first, as deploy/local/failover-demo.sh starts them
    [InlineData(true)]  // the standby first: it joins once the active node (its seed) is up, and is compared then
    public async Task A_standby_parameter_server_with_other_settings_is_refused_when_it_joins_and_the_job_finishes(bool standbyFirst)
    {
        var configPath = Config(MlpConfig(hidden: 16, epochs: 1));
        var (psEnvironment, standbyEnvironment, workerEnvironment) = EnvironmentsWithStandby(workers: 1);
        standbyEnvironment["DISTTRAIN_Model__Layers__0__Units"] = "24";
        DistTrainProcess active, standby;
        if (standbyFirst)
        {
            standby = Start("parameter-server", configPath, standbyEnvironment);
            await standby.WaitForOutputAsync("cluster node, role parameter-server", Guard);
            active = Start("parameter-server", configPath, psEnvironment);
        }
        else
        {
            active = Start("parameter-server", configPath, psEnvironment);
            await active.WaitForOutputAsync("This node is the active parameter server", Guard);
            standby = Start("parameter-server", configPath, standbyEnvironment);
        }

        await standby.AssertExitAsync(2, Guard);
        var refusal = Regex.Match(standby.Output, @"^refused: The active parameter server akka\.(ssl\.)?tcp://disttrain@127\.0\.0\.1:(\d+) refused this node as its standby: " +
            @"its settings differ from the active parameter server's \(Model\.Layers\[0\]\.Units: 24 vs 16; the standby's value vs the active's\).*" +
            "Start the standby with the same config and DISTTRAIN_\\* variables as the active parameter-server node", RegexOptions.Multiline);
        Assert.True(refusal.Success, standby.Output);
        Assert.Equal(psEnvironment["DISTTRAIN_Cluster__Port"], refusal.Groups[2].Value);
        Assert.DoesNotContain("Taking over the job", standby.Output);
        // The run folder it made at start-up, in case it took over, is gone: only the active node's is left below.
        var runs = Path.Combine(_directory, "runs");
        await active.WaitForOutputAsync("Refused standby parameter-server node", Guard);
        Assert.Matches(@"WARNING.*Refused standby parameter-server node akka\.(ssl\.)?tcp://disttrain@127\.0\.0\.1:" + standbyEnvironment["DISTTRAIN_Cluster__Port"] +
            @": its settings differ .*Units: 24 vs 16", active.Output);
        Assert.Single(Regex.Matches(active.Output, "Refused standby parameter-server node"));

        var worker = Start("worker", configPath, workerEnvironment);
        await worker.AssertExitAsync(0, Guard);
        await active.AssertExitAsync(0, Guard);
        Assert.Contains("Test accuracy after 1 epoch", active.Output);
        Assert.Single(Directory.GetDirectories(runs));
    }

    /// <summary>
    /// Starts a parameter-server node and waits until it is the active one; runs <paramref name="whileAlone"/>, if given;
    /// then starts a second one and waits until it is its standby.
    /// </summary>
    private async Task<(DistTrainProcess Active, DistTrainProcess Standby)> StartActiveThenStandbyAsync(string configPath,
        Dictionary<string, string> psEnvironment, Dictionary<string, string> standbyEnvironment, Action? whileAlone = null)
    {
        var active = Start("parameter-server", configPath, psEnvironment);
        await active.WaitForOutputAsync("This node is the active parameter server", Guard);
        whileAlone?.Invoke();
        var standby = Start("parameter-server", configPath, standbyEnvironment);
        await standby.WaitForOutputAsync("Standby parameter server: the active one is", Guard);
        return (active, standby);
    }

    /// <summary>
    /// The active and the standby parameter server stopped together (SIGTERM to both at once, as Ctrl-C reaches every node
    /// of deploy/local/cluster.sh's process group, or <c>docker compose stop</c>) both end promptly. Before, the active
    /// node's singleton manager kept offering the job host to the standby, which was leaving too and no longer takes it,
    /// about once a second for 12 s: Akka's cluster-exiting phase logged "Coordinated shutdown phase [cluster-exiting] timed
    /// out after 00:00:10" and the active node ended 11.4 s after the signal (3.0 s with the fix, measured on this 2-core VM).
    /// </summary>
    [Fact]
    public async Task The_active_and_the_standby_parameter_server_stopped_together_end_promptly_without_a_shutdown_timeout()
    {
        var configPath = Config(ManyShortStepsConfig);
        var (psEnvironment, standbyEnvironment, workerEnvironment) = EnvironmentsWithStandby(workers: 1);
        var (active, standby) = await StartActiveThenStandbyAsync(configPath, psEnvironment, standbyEnvironment);
        Start("worker", configPath, workerEnvironment); // left to the class's Dispose: with no parameter server left it waits to rejoin
        await active.WaitForOutputAsync("epoch  1/30", Guard);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        active.Terminate();
        standby.Terminate();
        await active.AssertExitAsync(130, Guard);
        await standby.AssertExitAsync(130, Guard);
        var seconds = clock.Elapsed.TotalSeconds;
        Assert.DoesNotContain("timed out", active.Output);
        Assert.DoesNotContain("timed out", standby.Output);
        Assert.Contains("cancelled: ", active.Output);
        Assert.True(seconds < 9, $"the nodes took {seconds:F1} s to end (the old wait alone was 10 s)\n{active.Output}");
    }

    /// <summary>
    /// A standby to the end leaves no run folder: it made one at start-up, for a takeover, and left it empty beside the
    /// active node's, the newest folder in the compose file's shared runs volume.
    /// </summary>
    [Fact]
    public async Task A_standby_that_never_took_over_leaves_no_empty_run_folder()
    {
        var configPath = Config(MlpConfig(hidden: 16, epochs: 1));
        var (psEnvironment, standbyEnvironment, workerEnvironment) = EnvironmentsWithStandby(workers: 1);
        var standbyRuns = Path.Combine(_directory, "runs-standby");
        standbyEnvironment["DISTTRAIN_Output__Directory"] = standbyRuns;
        var (active, standby) = await StartActiveThenStandbyAsync(configPath, psEnvironment, standbyEnvironment);
        Assert.Single(Directory.GetDirectories(standbyRuns)); // made at start-up, for a takeover
        var worker = Start("worker", configPath, workerEnvironment);
        await active.AssertExitAsync(0, Guard);
        await worker.AssertExitAsync(0, Guard);
        await standby.AssertExitAsync(0, Guard);
        Assert.Contains("Standby parameter server: the job finished on the active one", standby.Output);
        Assert.Empty(Directory.GetDirectories(standbyRuns));
        Assert.Single(Directory.GetFiles(Path.Combine(_directory, "runs"), "model.safetensors", SearchOption.AllDirectories));
    }

    /// <summary>
    /// The model.safetensors of the job (<see cref="FinalWeightsPath"/>) holds, bit for bit, the weights single-node mode
    /// trains from <paramref name="configPath"/> with <paramref name="workers"/> workers on the test subset.
    /// </summary>
    /// <param name="besides">A run folder to leave out: a stopped parameter server's, which holds the weights at its stop.</param>
    private async Task AssertFinalWeightsAreAnUndisturbedRunsAsync(string configPath, int workers, string? besides = null)
    {
        var options = TrainingOptionsLoader.Load(configPath,
            new Dictionary<string, string?> { ["Data:Directory"] = TestData.SubsetDirectory, ["Training:Workers"] = workers.ToString() },
            environment: new Dictionary<string, string?>());
        var data = TrainingData.Load(options.Data);
        var undisturbed = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout();
        var tensors = SafeTensors.Read(besides is null ? FinalWeightsPath()
            : Directory.GetFiles(Path.Combine(_directory, "runs"), "model.safetensors", SearchOption.AllDirectories)
                .Single(f => Path.GetFullPath(Path.GetDirectoryName(f)!) != Path.GetFullPath(besides)));
        foreach (var segment in undisturbed.FinalWeights.Layout.Segments)
            Compare.Identical(undisturbed.FinalWeights.Segment(segment).ToArray(), tensors[segment.Name].Data, segment.Name);
    }

    /// <summary>
    /// A worker node stopped (SIGTERM) while its parameter server runs leaves the cluster and exits as cancelled (130)
    /// without reporting a lost parameter server. As the node left, Akka reported every other member removed, and the
    /// worker took its parameter server's removal for a loss: it logged "Lost the data plane to the parameter server
    /// (... (Removed)); registering again and waiting up to 120 s ... (a standby takes over ...)", though the parameter
    /// server ran on and the worker waited for nothing.
    /// </summary>
    [Fact]
    public async Task A_worker_stopped_while_its_parameter_server_runs_exits_as_cancelled_without_reporting_a_lost_parameter_server()
    {
        var (ps, worker) = await OneWorkerMidEpochAsync();
        worker.Terminate();
        var exit = await worker.WaitAsync(Guard, [ps]);
        Assert.True(exit == 130, $"the worker exited with {exit}, not 130 (cancelled). Output:\n{worker.Output}");
        // A second SIGTERM exits at once too, so the line does not offer Ctrl-C alone (a process started by a service has no terminal).
        Assert.Contains("SIGTERM: stopping at the next step (send SIGTERM again, or press Ctrl-C, to exit at once", worker.Output);
        Assert.DoesNotContain("Lost the data plane", worker.Output);
        Assert.DoesNotContain("registering again", worker.Output);
        Assert.DoesNotContain("takes over", worker.Output);
        Assert.False(ps.HasExited, $"the parameter server exited with the worker:\n{ps.Output}");
    }

    /// <summary>
    /// A worker node stopped (SIGTERM) right after its parameter server died. A graceful cluster leave needs a leader to
    /// move the node out, and the only other member is gone, so the leave waited until the node downed itself (8.4-9.1 s
    /// after the signal, measured) and the node then reported a failure (exit code 1) or its cancellation. It now skips
    /// the leave and exits as cancelled (about 0.2 s, measured; docs/reliability.md).
    /// </summary>
    [Fact]
    public async Task A_worker_stopped_after_its_parameter_server_died_skips_the_cluster_leave_and_exits_as_cancelled()
    {
        var (ps, worker) = await OneWorkerMidEpochAsync();
        ps.Kill(); // SIGKILL: no goodbye on any channel
        await worker.WaitForOutputAsync("data plane to the parameter server closed", Guard);

        await AssertStopsWithoutLeaveAsync(worker);
        Assert.Contains("cancelled: this worker node stopped", worker.Output);
    }

    /// <summary>
    /// The parameter-server node killed outright (SIGKILL: the OOM killer, a node crash) after its second epoch's line
    /// leaves its run folder with epochs.csv holding exactly the epochs it finished, as it printed them, and steps.csv
    /// with their steps, beside the checkpoints. Before, the folder was left empty: every record of a node's run was
    /// written when the run ends.
    /// </summary>
    [Fact]
    public async Task A_parameter_server_killed_with_SIGKILL_leaves_epochs_csv_and_steps_csv_with_the_epochs_it_finished()
    {
        var configPath = Config(ManyShortStepsConfig);
        var (psEnvironment, workerEnvironment) = Environments(workers: 1, configPath);
        var ps = Start("parameter-server", configPath, psEnvironment);
        var worker = Start("worker", configPath, workerEnvironment);
        await ps.WaitForMatchAsync(new Regex(@"epoch +2/30  train loss"), Guard);
        ps.Kill();
        Assert.Equal(137, await ps.WaitAsync(Guard)); // 128 + SIGKILL
        worker.Kill();

        var folder = Directory.GetDirectories(Path.Combine(_directory, "runs")).Single();
        // Only epochs.csv and steps.csv (a kill in the middle of a later write could leave that write's temporary file too).
        Assert.Equal([RunFiles.Epochs, RunFiles.Steps], Directory.GetFiles(folder).Select(Path.GetFileName)
            .Where(f => !f!.EndsWith(AtomicFile.TemporarySuffix, StringComparison.Ordinal)).Order(StringComparer.Ordinal));
        var rows = File.ReadAllLines(Path.Combine(folder, RunFiles.Epochs));
        var epochs = rows.Skip(1).Select(r => int.Parse(r.Split(',')[0], System.Globalization.CultureInfo.InvariantCulture)).ToList();
        var printed = Regex.Matches(ps.StandardOutput, @"epoch +(\d+)/30  train loss \S+  test acc (\S+)%").ToList();
        // The finished epochs, 1 to n: those printed, and one more if the kill came between its row's write and its line.
        Assert.Equal(Enumerable.Range(1, epochs.Count), epochs);
        Assert.True(epochs.Count >= 2 && epochs.Count - printed.Count is 0 or 1, $"{epochs.Count} rows, {printed.Count} epoch lines:\n{ps.Output}");
        foreach (var line in printed)
            Assert.Equal(line.Groups[2].Value, (100 * double.Parse(rows[int.Parse(line.Groups[1].Value)].Split(',')[4], System.Globalization.CultureInfo.InvariantCulture))
                .ToString("F2", System.Globalization.CultureInfo.CurrentCulture));
        // steps.csv: the steps up to the last finished epoch's end (or the one before, if the kill came between the files).
        var stepEpochs = File.ReadAllLines(Path.Combine(folder, RunFiles.Steps)).Skip(1)
            .Select(r => int.Parse(r.Split(',')[0], System.Globalization.CultureInfo.InvariantCulture)).Distinct().ToList();
        Assert.True(stepEpochs.SequenceEqual(Enumerable.Range(1, epochs.Count)) || stepEpochs.SequenceEqual(Enumerable.Range(1, epochs.Count - 1)),
            $"steps.csv holds epochs {string.Join(", ", stepEpochs)} for {epochs.Count} finished");
        Assert.NotEmpty(new CheckpointStore(Path.Combine(_directory, "checkpoints"), 3).List()); // and the checkpoints survive, as before
    }

    /// <summary>
    /// A worker node stopped while its parameter server is unreachable but its sockets stay open (a frozen machine, a
    /// partition): the data plane still looks connected, but no leave can finish while a member is unreachable, so the
    /// worker skips the leave here too instead of waiting for its side to be downed.
    /// </summary>
    [Fact]
    public async Task A_worker_stopped_while_its_parameter_server_is_unreachable_skips_the_cluster_leave_and_exits_as_cancelled()
    {
        var (ps, worker) = await OneWorkerMidEpochAsync();
        ps.Suspend();
        try
        {
            await worker.WaitForOutputAsync("Marking node(s) as UNREACHABLE", Guard);
            await AssertStopsWithoutLeaveAsync(worker);
        }
        finally
        {
            ps.Resume();
        }
    }

    /// <summary>
    /// The parameter-server node stopped (SIGTERM) with no standby and no Checkpoint:Directory: nothing can continue the
    /// job, so its worker ends at once, cancelled (130), as the parameter server does. It used to wait
    /// Cluster:JoinTimeoutSeconds (120 s by default) "for a standby" and then exit 1, failed.
    /// </summary>
    [Fact]
    public async Task A_parameter_server_stopped_with_no_standby_and_no_checkpoints_ends_its_workers_at_once_as_cancelled()
    {
        var configPath = Config(ManyShortStepsConfig);
        var (psEnvironment, workerEnvironment) = Environments(workers: 1, configPath);
        psEnvironment.Remove("DISTTRAIN_Checkpoint__Directory");
        psEnvironment["DISTTRAIN_Checkpoint__EverySteps"] = "0";
        var ps = Start("parameter-server", configPath, psEnvironment);
        var worker = Start("worker", configPath, workerEnvironment);
        await ps.WaitForMatchAsync(new Regex(@"epoch +1/30 +(25|50|75)%"), Guard);
        ps.Terminate();
        await ps.AssertExitAsync(130, Guard, [worker]);
        var exit = await worker.WaitAsync(TimeSpan.FromSeconds(30), [ps]);
        Assert.True(exit == 130, $"the worker exited with {exit}, not 130 (cancelled). Output:\n{worker.Output}");
        Assert.Contains("cancelled: the parameter-server node was stopped, and no other parameter-server node is in the cluster and " +
            "Checkpoint:Directory is not set, so nothing can continue the job; this worker node leaves.", worker.Output);
        Assert.DoesNotContain("waiting up to", worker.Output);
    }

    /// <summary>A parameter server and one worker node of <see cref="ManyShortStepsConfig"/>, once epoch 1 is under way.</summary>
    private async Task<(DistTrainProcess Ps, DistTrainProcess Worker)> OneWorkerMidEpochAsync()
    {
        var configPath = Config(ManyShortStepsConfig);
        var (psEnvironment, workerEnvironment) = Environments(workers: 1, configPath);
        var ps = Start("parameter-server", configPath, psEnvironment);
        var worker = Start("worker", configPath, workerEnvironment);
        await ps.WaitForMatchAsync(new Regex(@"epoch +1/30 +(25|50|75)%"), Guard);
        return (ps, worker);
    }

    /// <summary>Sends the worker SIGTERM: it exits as cancelled (130), its shutdown started past the leave for the node's own
    /// reason, and no leave began.</summary>
    private static async Task AssertStopsWithoutLeaveAsync(DistTrainProcess worker)
    {
        worker.Terminate();
        var exit = await worker.WaitAsync(Guard);
        Assert.True(exit == 130, $"the worker exited with {exit}, not 130 (cancelled). Output:\n{worker.Output}");
        Assert.Contains("CoordinatedShutdown invoked due to [Reason:DistTrain.Cluster.Hosting.ClusterNode+NoParameterServerReason]", worker.Output);
        Assert.DoesNotContain("as [Leaving]", worker.Output);
    }

    [Fact]
    public async Task The_parameter_server_stays_paused_when_every_worker_dies_at_once_and_resumes_with_new_workers()
    {
        // No standby, two workers killed together: the parameter server is the oldest node and alone against two
        // unreachable ones, where Akka's keep-oldest with down-if-alone downed it. It must pause and wait instead.
        // 12 epochs of about 0.1-0.4 s: on a fast machine 4 ended before the kill of both workers took effect.
        var configPath = Config(ManyShortStepsConfig.Replace("\"Epochs\": 30", "\"Epochs\": 12"));
        var (psEnvironment, workerEnvironment) = Environments(workers: 2, configPath,
            new Dictionary<string, string> { ["DISTTRAIN_Cluster__StableAfterSeconds"] = "2" });
        var ps = Start("parameter-server", configPath, psEnvironment);
        var workers = new[] { Start("worker", configPath, workerEnvironment), Start("worker", configPath, workerEnvironment) };
        await ps.WaitForOutputAsync("epoch  1/12", Guard);
        foreach (var worker in workers) worker.Kill();

        // Both unreachable workers are downed by the parameter server's side, and the job pauses.
        await ps.WaitForOutputAsync("the 2 unreachable nodes are downed and it waits for workers to join", Guard);
        await ps.WaitForOutputAsync("Training is paused", Guard);
        var downedAt = ps.Output.IndexOf("unreachable nodes are downed", StringComparison.Ordinal);
        // Long enough after the decision for a wrong one to have shut the node down: the decision has been taken (stable-after
        // 2 s), its downing acts after Cluster:RemovalMarginSeconds (1 s by default), and a downed node's shutdown takes a
        // second or two.
        await Task.Delay(TimeSpan.FromSeconds(6));
        Assert.False(ps.HasExited, $"the parameter server exited while paused. Output:\n{ps.Output}");

        var replacements = new[] { Start("worker", configPath, workerEnvironment), Start("worker", configPath, workerEnvironment) };
        await ps.WaitForOutputAsync("Training resumes", Guard, after: downedAt);
        var exit = await ps.WaitAsync(Guard);
        Assert.True(exit == 0, $"the parameter server exited with {exit}. Output:\n{ps.Output}");
        foreach (var worker in replacements) await worker.AssertExitAsync(0, Guard);
        Assert.Contains("Test accuracy after 12 epochs", ps.Output);
        Assert.DoesNotContain("left the cluster before the job ended", ps.Output);
    }

    [Fact]
    public async Task A_worker_frozen_until_it_is_downed_exits_4_as_a_lost_worker_and_the_job_goes_on_with_a_replacement()
    {
        // A long GC pause, a stalled VM, `docker pause`: the others down the frozen worker, the job pauses below
        // Cluster:MinWorkers, and the worker, woken, finds itself out of the cluster. That is a lost worker (exit 4),
        // not a failed job (exit 1, which cluster.sh took as the end of the run).
        var configPath = Config(ManyShortStepsConfig);
        var (psEnvironment, workerEnvironment) = Environments(workers: 2, configPath,
            new Dictionary<string, string> { ["DISTTRAIN_Cluster__StableAfterSeconds"] = "2" });
        var ps = Start("parameter-server", configPath, psEnvironment);
        var workers = new[] { Start("worker", configPath, workerEnvironment), Start("worker", configPath, workerEnvironment) };
        // Once in a full suite run the job did not start here (0 of 2 workers ready in 180 s): the wait names the workers'
        // own output if that happens again.
        try
        {
            await ps.WaitForOutputAsync("epoch  1/30", Guard);
        }
        catch (Xunit.Sdk.XunitException e)
        {
            Assert.Fail($"{e.Message}\n--- worker 0:\n{workers[0].Output}\n--- worker 1:\n{workers[1].Output}");
        }
        var frozen = workers[0];
        frozen.Suspend();
        int pausedAt;
        try
        {
            pausedAt = await ps.WaitForOutputAsync("Training is paused", Guard);
        }
        finally
        {
            frozen.Resume();
        }
        // The frozen worker is out of the cluster once the job pauses: its replacement starts while it wakes and exits.
        var replacement = Start("worker", configPath, workerEnvironment);
        await frozen.AssertExitAsync(4, Guard);
        Assert.Contains("removed: This node left the cluster before the job ended:", frozen.Output);
        Assert.Contains("The job goes on without this worker", frozen.Output);
        Assert.False(ps.HasExited, $"the parameter server exited. Output:\n{ps.Output}");

        await ps.WaitForOutputAsync("Training resumes", Guard, after: pausedAt);
        await ps.AssertExitAsync(0, Guard);
        await replacement.AssertExitAsync(0, Guard);
        await workers[1].AssertExitAsync(0, Guard);
    }

    [Fact]
    public async Task A_job_that_fails_on_the_pause_timeout_keeps_the_weights_and_the_finished_epochs()
    {
        // Before, the run folder was "empty" (nothing is written before the end) and removed: every finished epoch was lost.
        // The pause timeout also bounds the wait for the first worker at start-up: 20 s, where that wait took 3.3-7.1 s
        // (measured at load averages of 7-29 on 2 cores).
        var configPath = Config(ManyShortStepsConfig);
        var (psEnvironment, workerEnvironment) = Environments(workers: 1, configPath,
            new Dictionary<string, string> { ["DISTTRAIN_Cluster__PauseTimeoutSeconds"] = "20", ["DISTTRAIN_Cluster__StableAfterSeconds"] = "2" });
        var ps = Start("parameter-server", configPath, psEnvironment);
        var worker = Start("worker", configPath, workerEnvironment);
        await ps.WaitForOutputAsync("test acc", Guard); // epoch 1 finished
        worker.Kill();
        await ps.AssertExitAsync(1, Guard);
        Assert.Contains("training failed: Training was paused for 20 s at epoch", ps.Output);
        var run = Assert.Single(Directory.GetDirectories(Path.Combine(_directory, "runs")));
        Assert.Contains($"kept: the run folder {run}: model.safetensors holds the weights of the last step, epoch", ps.Output);
        Assert.DoesNotContain("removed: the empty run folder", ps.Output);
        var model = Core.Models.TrainedModel.Load(Path.Combine(run, RunFiles.Model));
        Assert.Matches(@"^failed at epoch \d+, step \d+ of \d+$", model.Metadata["stopped"]);
        var epochs = File.ReadAllLines(Path.Combine(run, RunFiles.Epochs)).Length - 1; // under a header
        Assert.InRange(epochs, 1, 29);
        Assert.Contains($"hold the {epochs} finished epoch{(epochs == 1 ? "" : "s")}.", ps.Output); // "the 1 finished epoch", "the 2 finished epochs"
    }

    [Fact]
    public async Task A_diverged_job_leaves_the_last_good_weights_and_a_summary_that_records_the_divergence_on_the_parameter_server()
    {
        // Weights of 1e20 overflow at the first step: exit 3, and the run folder holds last-good.safetensors and, as train's
        // does, a summary.json that says where the job diverged (before, last-good.safetensors alone).
        var configPath = Config(ManyShortStepsConfig);
        var (psEnvironment, workerEnvironment) = Environments(workers: 1, configPath,
            new Dictionary<string, string> { ["DISTTRAIN_Model__Initializer__Kind"] = "Constant", ["DISTTRAIN_Model__Initializer__Constant"] = "1e20" });
        // A learning rate given to the worker alone is not used (the parameter server steps): its node is told so, by name.
        workerEnvironment["DISTTRAIN_Optimizer__LearningRate"] = "0.5";
        var ps = Start("parameter-server", configPath, psEnvironment);
        var worker = Start("worker", configPath, workerEnvironment);
        await ps.AssertExitAsync(3, Guard, [worker]);
        Assert.Contains("training diverged: at epoch 1, step 1", ps.Output);
        Assert.Matches(@"Worker node \S+ was given other values of settings that this parameter-server node decides for the whole job: " +
            @"Optimizer:LearningRate = 0\.5 on the worker, [0-9.]+ here\. The job uses this node's", ps.Output);
        var run = Assert.Single(Directory.GetDirectories(Path.Combine(_directory, "runs")));
        Assert.True(File.Exists(Path.Combine(run, RunFiles.LastGood)), ps.Output);
        Assert.False(File.Exists(Path.Combine(run, RunFiles.Model)), "a diverged job must not leave model.safetensors");
        using var summary = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(run, RunFiles.Summary)));
        Assert.Matches(@"^diverged at epoch 1, step 1 of \d+$", summary.RootElement.GetProperty("stopped").GetString());
        Assert.Equal(0, summary.RootElement.GetProperty("version").GetInt64());
        Assert.Contains($"kept: the run folder {run}: {RunFiles.Summary} records the divergence", ps.Output);
        await worker.WaitAsync(Guard);
        // The worker's own log says so too: a user reading only the worker's would not know otherwise.
        Assert.Matches(@"The parameter-server node decides these settings for the whole job, and this node was given other values of them: " +
            @"Optimizer:LearningRate = 0\.5 on the worker, [0-9.]+ here\. The job uses the parameter-server node's", worker.Output);
    }

    [Fact]
    public async Task A_Float16_overflow_on_a_worker_node_ends_the_job_naming_the_tensor_on_the_parameter_server()
    {
        // The job's settings fail every worker alike, so the job ends with the cause. Before, the worker left with "The
        // worker actor stopped: it failed (see the log)", and the parameter server lost a worker "after step -1" and waited
        // Cluster:PauseTimeoutSeconds for another, never naming Float16.
        var configPath = Config(ManyShortStepsConfig);
        var overflow = new Dictionary<string, string>
        {
            ["DISTTRAIN_Cluster__Compression"] = "Float16", ["DISTTRAIN_Model__Initializer__Kind"] = "Constant", ["DISTTRAIN_Model__Initializer__Constant"] = "10000",
        };
        var (psEnvironment, workerEnvironment) = Environments(workers: 1, configPath, overflow);
        var ps = Start("parameter-server", configPath, psEnvironment);
        var worker = Start("worker", configPath, workerEnvironment);
        await ps.AssertExitAsync(1, Guard, [worker]);
        Assert.Matches(@"training failed: Worker 0, epoch 1, its minibatch \d+ \(round \d+, weights version \d+\): Gradient element [\d,]+ of tensor '\d\.(weight|bias)' is", ps.Output);
        Assert.Contains("Set Cluster:Compression to BFloat16", ps.Output);
        await worker.AssertExitAsync(1, Guard);
        // The job's end usually reaches the worker node before its own grace for a lost worker actor runs out; either way it says why.
        Assert.Matches("(Job finished: failed|The worker failed): Worker 0, epoch 1, its minibatch", worker.Output);
        Assert.DoesNotContain("GradientOverflowException", worker.Output); // one line, no stack trace
    }

    /// <summary>A valid checkpoint of the config's model from another job (id <c>earlier-job</c>), at version 999,999, dated tomorrow
    /// (the write time it records and its file time).</summary>
    private static string WriteStaleCheckpoint(string configPath, string directory)
    {
        var options = TrainingOptionsLoader.Load(configPath, new Dictionary<string, string?> { ["Data:Directory"] = TestData.SubsetDirectory },
            environment: new Dictionary<string, string?>());
        var model = Core.Models.ModelFactory.Build(options.Model);
        var weights = Core.Models.ModelFactory.InitialWeights(model, options.Model.Initializer, seed: 99);
        var stale = new TrainingCheckpoint(weights, [("momentum_buffer", new float[model.Layout.TrainableLength])], Core.Optimization.OptimizerKind.Sgd,
            optimizerSteps: 999_999, version: 999_999, epoch: 31, round: 0, shardSeed: options.Training.Seed, workers: 2,
            batchSizePerWorker: options.Training.BatchSizePerWorker, jobId: "earlier-job");
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, CheckpointStore.FileName(stale.Version, stale.Epoch, stale.Round));
        stale.Write(path, DateTimeOffset.UtcNow.AddDays(1));
        File.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddDays(1));
        return path;
    }
}
