using System.CommandLine;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Security;
using DistTrain.Cluster.Metrics;
using DistTrain.Cluster.Protocol;
using DistTrain.Core;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.LinearAlgebra;
using DistTrain.Core.Models;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary>
/// <c>disttrain node --role parameter-server|worker|parameter-shard</c>: one node of cluster mode. Settings come from the
/// config file and <c>DISTTRAIN_*</c> environment variables (the docker compose contract), e.g.
/// <c>DISTTRAIN_Cluster__SeedNodes__0=akka.tcp://disttrain@ps:4053</c>.
/// </summary>
internal static class NodeCommand
{
    public static Command Create()
    {
        var role = CliOptions.OneOf("--role", "The node's role.", [NodeRoles.ParameterServer, NodeRoles.Worker, NodeRoles.ParameterShard], "-r");
        var config = CliOptions.File("--config", "JSON config, the same on every node.", CliOptions.ConfigTakes, required: true, "-c");
        var data = CliOptions.Text("--data", "DIR", CliOptions.DataHelp, CliOptions.DataTakes);
        var output = CliOptions.Text("--output", "DIR", "Override Output:Directory (parameter server only).", CliOptions.OutputTakes, "-o");
        var command = new Command("node", "Run one node of cluster mode (Akka.Cluster): the parameter server, a worker, or a shard node that hosts a parameter-server shard.")
        {
            role, config, data, output,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var overrides = new Dictionary<string, string?>();
            if (parse.GetValue(data) is { } d) overrides["Data:Directory"] = d;
            if (parse.GetValue(output) is { } o) overrides["Output:Directory"] = o;
            return await RunAsync(parse.GetValue(role)!, parse.GetValue(config)!.FullName, overrides, cancellationToken);
        });
        return command;
    }

    /// <summary>
    /// How a cluster job continues after an internal error on a node of <paramref name="role"/> (<see cref="CliConsole.InternalError"/>):
    /// a node has no <c>--resume</c>. A failed parameter server ends the job for every node, and the nodes started again with
    /// Checkpoint:Resume continue it from the newest checkpoint; a worker keeps no checkpoints (the parameter server writes
    /// them), and started again it joins the job as a new worker, which the others carry on meanwhile.
    /// </summary>
    /// <param name="role"><see cref="NodeRoles.ParameterServer"/>, <see cref="NodeRoles.Worker"/> or <see cref="NodeRoles.ParameterShard"/>.</param>
    internal static string AfterInternalError(string role) => role == NodeRoles.ParameterShard
        ? "a shard node keeps no state between runs: start it again"
        : role == NodeRoles.Worker
        ? "a worker keeps no checkpoints (the parameter server writes them): start this worker node again and it joins the job as a new worker, " +
          "while the job goes on with the other workers if its parameter server is still up (paused below Cluster:MinWorkers)"
        : "with Checkpoint:Directory set, starting the nodes again with Checkpoint:Resume = true (DISTTRAIN_Checkpoint__Resume=true) continues the job " +
          "from the newest checkpoint";

    private static async Task<int> RunAsync(string role, string configPath, Dictionary<string, string?> overrides, CancellationToken cancellationToken)
    {
        TrainingOptions options;
        TrainingData data;
        ClusterSecurity security;
        string? runDirectory = null;
        string? shards = null; // the parameter server's shards, as train describes them
        try
        {
            options = TrainingOptionsLoader.Load(configPath, overrides, CliOptions.OptionOfKey);
            if (options.Cluster.SeedNodes.Count == 0)
            {
                // With no seed a node forms no cluster with the others: a parameter server would wait for workers that can
                // never join it, and a worker for Cluster:JoinTimeoutSeconds.
                CliConsole.Fail("error", "Cluster:SeedNodes is empty, so this node has no address to join the cluster through. Give the parameter " +
                    "server's address, the same on every node: DISTTRAIN_Cluster__SeedNodes__0=akka.tcp://disttrain@HOST:PORT (PORT is its Cluster:Port, " +
                    "4053 by default), or \"SeedNodes\": [\"akka.tcp://disttrain@HOST:PORT\"] in the config's Cluster section.");
                return 2;
            }
            if (role == NodeRoles.ParameterShard)
            {
                // A shard node reads no data and writes no run folder: options for those are said to be unused, not silently dropped.
                string[] unused = [.. new[] { ("--data", "Data:Directory"), ("--output", "Output:Directory") }
                    .Where(option => overrides.ContainsKey(option.Item2)).Select(option => option.Item1)];
                if (unused.Length > 0)
                    CliConsole.Fail("warning", $"{string.Join(" and ", unused)} {(unused.Length == 1 ? "is" : "are")} not used by a shard node: it reads no data " +
                        "(its starting weights come from the config's Model, Training:Seed and Model:Pretrained) and writes no run folder.");
                return await RunShardNodeAsync(configPath, options, cancellationToken);
            }
            // Two of this node's listeners on one port: refused before anything binds (the second bind would fail only
            // once the first listener had started).
            // Likewise a worker whose first seed is itself, which would start a cluster of its own.
            // And a parameter server whose settings its node cannot run (those single-node train ignores).
            if (TrainingOptionsValidator.NodePortProblems(options, parameterServer: role == NodeRoles.ParameterServer)
                    .Concat(role == NodeRoles.Worker ? TrainingOptionsValidator.WorkerSeedProblems(options) : [])
                    .Concat(role == NodeRoles.ParameterServer ? TrainingOptionsValidator.ParameterServerNodeProblems(options) : []).ToList() is { Count: > 0 } problems)
                throw new ConfigurationException(configPath, problems);
            // A Cluster:Hostname that does not resolve: one line naming it, before the data is read (Akka.Remote's bind would
            // fail on it with pages of stack traces, and on a node with Cluster:Port 0 no port check resolves it first).
            PortProbe.BindAddress(options.Cluster.Hostname, "Cluster:Hostname");
            security = ClusterSecurity.Load(options.Cluster);
            data = TrainingData.Load(options);
            ModelFactory.CheckFitsData(options.Model, data);
            // Before anything is allocated: a model too large for this node is one line, not minutes of growing to a crash.
            if (!CliConsole.FitsInMemory(TrainingMemory.Node(options, parameterServer: role == NodeRoles.ParameterServer))) return 2;
            var model = ModelFactory.Build(options.Model); // a layer that does not fit fails here, not inside an actor
            OutputSettings.Check(options);
            if (role == NodeRoles.ParameterServer)
            {
                var starting = ModelFactory.StartingWeights(model, options.Model, options.Training.Seed, line => AnsiConsole.WriteLine(line)); // and so does a pretrained checkpoint
                if (options.Cluster.ParameterServerShards > 1 || options.Cluster.ShardNodes) // refuses, before training, more shards than the model has slices for
                    shards = ShardedParameterServer.Describe(starting.Layout, options.Cluster.ParameterServerShards, options.Cluster.ShardNodes);
                // A checkpoint folder that cannot be written, before the wait for workers (the job takes its lock only when
                // training starts). No lock here: a standby checks the folder the active parameter server holds.
                CheckpointDirectoryLock.CheckWritable(options.Checkpoint);
                runDirectory = RunDirectory.Create(options.Output.Directory);
                GracefulCancellation.ResumeHint = () => RunOutputs.ResumeHint(options, "starting the nodes again with Checkpoint:Resume = true (DISTTRAIN_Checkpoint__Resume=true)");
            }
        }
        catch (Exception e) when (CliConsole.IsInputError(e))
        {
            CliConsole.Fail("error", e.Message);
            return 2;
        }
        using var securityScope = security;
        MetricsExporter? exporter;
        DataPlaneListener? dataPlane = null;
        try
        {
            // Every port this node listens on, checked before anything starts: a taken one is one line and exit code 2.
            PortProbe.EnsureFree("Cluster:Port", options.Cluster.Hostname, options.Cluster.Port);
            PortProbe.EnsureFree("Metrics:Port", options.Metrics.Hostname, options.Metrics.Port);
            if (role == NodeRoles.ParameterServer) dataPlane = DataPlaneListener.Start(options.Cluster.Hostname, options.Cluster.DataPort, security.Certificates);
            exporter = MetricsSetup.Start(options, MetricsSetup.NodeLabel(role, options.Cluster, Environment.ProcessId));
        }
        catch (Exception e) when (e is MetricsPortException or PortInUseException or UnresolvableHostException or AddressNotLocalException)
        {
            dataPlane?.Dispose();
            CliConsole.Fail("error", e.Message);
            if (runDirectory is not null) RunOutputs.RemoveIfEmptyAfterFailure(runDirectory);
            return 2;
        }
        using var dataPlaneScope = dataPlane;
        using var metrics = exporter;
        using var heartbeat = new HealthHeartbeat(options.Output.HealthFile);
        CliConsole.Out.WriteLiteralLine("DistTrain", new Style(decoration: Decoration.Bold), $" cluster node, role {role}, job {security.Identity.Name}, seeds {string.Join(", ", options.Cluster.SeedNodes.Select(security.SeedAddress))}, port {options.Cluster.Port}");
        PrintTransport(security);
        if (role == NodeRoles.ParameterServer) // the job's settings: the parameter server's to state and warn of, once, not every worker's
        {
            foreach (var line in TrainCommand.SettingsLines(options, workers: "the epoch's", shards, data.Validation?.Count))
                CliConsole.Out.WriteLiteralLine($"{line}");
            if (data.Labels?.DefaultColumnNote is { } labelColumn) CliConsole.Out.WriteLiteralLine($"{labelColumn}");
            foreach (var warning in TrainCommand.RunWarnings(options, data.Train, options.Cluster.MinWorkers, data.Labels)) CliConsole.Fail("warning", warning);
        }
        Blas.Configure(options.Compute, role == NodeRoles.Worker ? 1 : 0); // as ClusterNode will, so the line below is true
        if (data.NormalizationNote.Length > 0) CliConsole.Out.WriteLiteralLine($"{data.NormalizationNote}");
        AnsiConsole.WriteLine(Blas.Description);
        if (ConvolutionKernels.UsedBy(options.Model)) AnsiConsole.WriteLine(ConvolutionKernels.Description);
        if (role == NodeRoles.Worker)
        {
            // A lost worker is not a failed job: the job goes on without it (paused below Cluster:MinWorkers), if its parameter
            // server's side is up; this node cannot tell, as it was cut off from it.
            return await RunUntilJobEndsAsync(() => ClusterNode.RunWorkerAsync(options, security, data, cancellationToken), options, NodeRoles.Worker,
                stopped: "this worker node stopped and is out of the job; a worker keeps no results.",
                removed: "The job goes on without this worker if its parameter server is still up; a worker keeps no results.", node: "worker node");
        }
        var loop = options.Training;
        CliConsole.Out.WriteLiteralLine($"Waiting for {Counts.Of(options.Cluster.MinWorkers, "worker")}; {Counts.Of(loop.Epochs, "epoch")}, batch {loop.BatchSizePerWorker} per worker");
        TrainingResult? result = null;
        RunReport? report = null;
        JobFinished? finishedElsewhere = null;
        JobHandedOverException? handedOver = null;
        NodeRefusedException? refusedHere = null;
        // The weights and summary are written before the job's end goes out to the other nodes, so that if this node dies
        // before they are on disk a standby takes over instead of the job ending without them.
        System.Runtime.ExceptionServices.ExceptionDispatchInfo? saveFailure = null;
        var saved = false;
        Task SaveWeightsAndSummary(TrainingResult finished)
        {
            try
            {
                RunOutputs.SaveWeightsAndSummary(runDirectory!, options, data.Normalizer, DataMetadata.Of(data, options.Data), finished, report);
                saved = true;
            }
            catch (Exception e)
            {
                saveFailure = System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e);
                throw;
            }
            return Task.CompletedTask;
        }
        var exit = await CliConsole.RunTrainingAsync(async () =>
            {
                try
                {
                    result = await ConsoleProgress.RunAsync(loop.Epochs,
                        observer => ClusterNode.RunParameterServerAsync(options, security, dataPlane!, data, MetricsSetup.Wrap(report = new RunReport(observer, runDirectory), options),
                            cancellationToken, SaveWeightsAndSummary), options.Optimizer.Kind);
                }
                catch (JobFinishedOnAnotherNodeException e)
                {
                    finishedElsewhere = e.Finished;
                }
                catch (JobHandedOverException e)
                {
                    handedOver = e;
                }
                catch (NodeRefusedException e)
                {
                    refusedHere = e;
                }
            },
            diverged => RunOutputs.KeepDiverged(runDirectory!, options, data.Normalizer, DataMetadata.Of(data, options.Data), diverged, report),
            cancelled => RunOutputs.KeepOrRemoveCancelled(runDirectory!, options, data.Normalizer, DataMetadata.Of(data, options.Data), cancelled, report,
                resumeWith: "a standby parameter-server node, if one is up, or else starting the nodes again with Checkpoint:Resume = true (DISTTRAIN_Checkpoint__Resume=true),"),
            model: options,
            onFailed: failure => RunOutputs.KeepAfterFailure(runDirectory!, options, data.Normalizer, DataMetadata.Of(data, options.Data),
                (failure as TrainingStalledException)?.Weights, report,
                resumeWith: "starting the nodes again with Checkpoint:Resume = true (DISTTRAIN_Checkpoint__Resume=true)"),
            afterInternalError: AfterInternalError(NodeRoles.ParameterServer));
        if (exit is 1 or 2) RunOutputs.RemoveIfEmptyAfterFailure(runDirectory!); // 2: a checkpoint refused once the job started
        if (exit is not null) return exit.Value;
        if (refusedHere is not null)
        {
            // Refused as a standby: the run folder made at start-up in case this node took over goes, as a standby's to the end.
            RunDirectory.RemoveCreatedIfEmpty();
            CliConsole.Fail("refused", refusedHere.Message);
            return 2;
        }
        if (handedOver is not null)
        {
            RunOutputs.RemoveIfEmptyAfterFailure(runDirectory!);
            CliConsole.Fail("failed", handedOver.Message);
            return 1;
        }
        if (finishedElsewhere is not null)
        {
            // A standby to the end: the results are in the active parameter server's run folder, and this node's own, made at
            // start-up in case it took over, goes (beside the active node's in a shared output folder it was one more empty
            // folder, the newest, which `ls runs | tail -n 1` then picked).
            RunDirectory.RemoveCreatedIfEmpty();
            CliConsole.Out.WriteLiteralLine($"Standby parameter server: the job finished on the active one: {finishedElsewhere.Summary}");
            return finishedElsewhere.Succeeded ? 0 : 1;
        }
        return CliConsole.SavedOr1(() =>
        {
            saveFailure?.Throw();
            RunOutputs.Save(runDirectory!, options, data.Normalizer, DataMetadata.Of(data, options.Data), result!, report, weightsAndSummaryWritten: saved, classCount: data.Train.ClassCount);
        }, 0);
    }

    /// <summary>
    /// A shard node (<see cref="NodeRoles.ParameterShard"/>): joins the cluster through Cluster:SeedNodes and hosts one
    /// parameter-server shard at a time for the coordinator that asks (<see cref="ShardHost"/>), until the active parameter
    /// server reports the job's end. It reads no data: it builds the starting weights from Model, Training:Seed and
    /// Model:Pretrained, as the parameter server does, and a request whose starting slice differs is refused.
    /// Exit codes: the job's (0 succeeded, 1 failed), 2 a setting or certificate refused, 4 downed, 130 stopped.
    /// </summary>
    private static async Task<int> RunShardNodeAsync(string configPath, TrainingOptions options, CancellationToken cancellationToken)
    {
        ClusterSecurity security;
        ShardHostSettings settings;
        try
        {
            if (TrainingOptionsValidator.NodePortProblems(options, parameterServer: false, shardNode: true)
                    .Concat(TrainingOptionsValidator.WorkerSeedProblems(options, node: "shard")).ToList() is { Count: > 0 } problems)
                throw new ConfigurationException(configPath, problems);
            PortProbe.BindAddress(options.Cluster.Hostname, "Cluster:Hostname");
            if (!CliConsole.FitsInMemory(TrainingMemory.ShardNode(options))) return 2;
            security = ClusterSecurity.Load(options.Cluster);
            settings = ClusterNode.ShardHostSettingsOf(options, security, line => AnsiConsole.WriteLine(line));
        }
        catch (Exception e) when (CliConsole.IsInputError(e))
        {
            CliConsole.Fail("error", e.Message);
            return 2;
        }
        using var securityScope = security;
        MetricsExporter? exporter;
        try
        {
            // The data port is bound only when a shard is placed here: a taken one is found now, not then.
            PortProbe.EnsureFree("Cluster:Port", options.Cluster.Hostname, options.Cluster.Port);
            PortProbe.EnsureFree("Cluster:DataPort", options.Cluster.Hostname, options.Cluster.DataPort);
            PortProbe.EnsureFree("Metrics:Port", options.Metrics.Hostname, options.Metrics.Port);
            exporter = MetricsSetup.Start(options, MetricsSetup.NodeLabel(NodeRoles.ParameterShard, options.Cluster, Environment.ProcessId));
        }
        catch (Exception e) when (e is MetricsPortException or PortInUseException or UnresolvableHostException or AddressNotLocalException)
        {
            CliConsole.Fail("error", e.Message);
            return 2;
        }
        using var metrics = exporter;
        using var heartbeat = new HealthHeartbeat(options.Output.HealthFile);
        CliConsole.Out.WriteLiteralLine("DistTrain", new Style(decoration: Decoration.Bold), $" cluster node, role {NodeRoles.ParameterShard}, job {security.Identity.Name}, seeds {string.Join(", ", options.Cluster.SeedNodes.Select(security.SeedAddress))}, port {options.Cluster.Port}");
        PrintTransport(security);
        Blas.Configure(options.Compute, workersInProcess: 0);
        CliConsole.Out.WriteLiteralLine($"Shard node: hosts one parameter-server shard at a time for the coordinator that asks, data plane on {settings.AdvertisedHost}:{(options.Cluster.DataPort == 0 ? "a free port" : options.Cluster.DataPort)} ({settings.StartingWeights.Layout.TotalLength:N0} parameters); it runs until the job ends. A parameter server places its shards on shard nodes with Cluster:ShardNodes = true, one per node.");
        return await RunUntilJobEndsAsync(() => ClusterNode.RunShardHostAsync(settings, options, security, cancellationToken, ShardHost.StopStay), options, NodeRoles.ParameterShard,
            stopped: "this shard node stopped; a shard node keeps no results.", removed: "A shard node keeps no results.", node: "shard node");
    }

    /// <summary>The node's transport: mutual TLS with its certificate and CA, or the plain-TCP warning.</summary>
    private static void PrintTransport(ClusterSecurity security)
    {
        if (security.Certificates is { } certificates)
            CliConsole.Out.WriteLiteralLine($"TLS: mutual, certificate '{certificates.Certificate.Subject}' (valid to {certificates.Certificate.NotAfter:yyyy-MM-dd}), peers must be signed by '{certificates.Authority.Subject}'");
        else
            CliConsole.Fail("warning", ClusterSecurity.PlainTcpWarning);
    }

    /// <summary>
    /// Runs a node that ends with the job as the parameter server reports it (a worker node, a shard node) and maps its end to
    /// the exit code: the job's (0 succeeded, 1 failed, 130 cancelled), 2 refused (its settings or certificate do not fit the
    /// job), 4 removed from the cluster, or <see cref="CliConsole.RunTrainingAsync"/>'s for a stop or a failure.
    /// </summary>
    /// <param name="run">The node's run, as <see cref="ClusterNode.RunWorkerAsync"/>.</param>
    /// <param name="options">The node's options (an out-of-memory message names the model's).</param>
    /// <param name="role">The node's role, for the internal-error line (<see cref="AfterInternalError"/>).</param>
    /// <param name="stopped">The <c>cancelled:</c> line when this node was stopped.</param>
    /// <param name="removed">What follows a downing's message on the <c>removed:</c> line.</param>
    /// <param name="node">The node's kind in the line of a job the parameter server cancelled ("worker node").</param>
    private static async Task<int> RunUntilJobEndsAsync(Func<Task<JobFinished>> run, TrainingOptions options, string role, string stopped, string removed,
        string node)
    {
        JobFinished? finished = null;
        NodeRefusedException? refused = null;
        NodeDownedException? downed = null;
        var failed = await CliConsole.RunTrainingAsync(async () =>
        {
            try
            {
                finished = await run();
            }
            catch (NodeRefusedException e)
            {
                refused = e;
            }
            catch (NodeDownedException e)
            {
                downed = e;
            }
        }, onCancelled: _ => CliConsole.Fail("cancelled", stopped), model: options, afterInternalError: AfterInternalError(role));
        if (failed is not null) return failed.Value;
        if (refused is not null)
        {
            CliConsole.Fail("refused", refused.Message);
            return 2; // the node's settings do not fit this job: a config problem
        }
        if (downed is not null)
        {
            CliConsole.Fail("removed", $"{downed.Message} {removed}");
            return 4;
        }
        if (finished!.Cancelled)
        {
            CliConsole.Fail("cancelled", $"{finished.Summary.Replace("cancelled: ", "", StringComparison.Ordinal)}; this {node} leaves.");
            return 130;
        }
        CliConsole.Out.WriteLiteralLine($"Job finished: {finished.Summary}");
        return finished.Succeeded ? 0 : 1;
    }
}
