using System.CommandLine;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Metrics;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.LinearAlgebra;
using DistTrain.Core.Models;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary>
/// <c>disttrain node --role parameter-server|worker</c>: one node of cluster mode. Settings come from the
/// config file and <c>DISTTRAIN_*</c> environment variables (the docker compose contract), e.g.
/// <c>DISTTRAIN_Cluster__SeedNodes__0=akka.tcp://disttrain@ps:4053</c>.
/// </summary>
internal static class NodeCommand
{
    public static Command Create()
    {
        var role = new Option<string>("--role", "-r") { Description = "parameter-server or worker.", Required = true };
        role.AcceptOnlyFromAmong(NodeRoles.ParameterServer, NodeRoles.Worker);
        var config = new Option<FileInfo>("--config", "-c") { Description = "JSON config, the same on every node.", Required = true };
        var data = new Option<string?>("--data") { Description = "Override Data:Directory." };
        var output = new Option<string?>("--output", "-o") { Description = "Override Output:Directory (parameter server only)." };
        var command = new Command("node", "Run one node of cluster mode (Akka.Cluster): the parameter server, or a worker.")
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

    private static async Task<int> RunAsync(string role, string configPath, Dictionary<string, string?> overrides, CancellationToken cancellationToken)
    {
        TrainingOptions options;
        TrainingData data;
        string? runDirectory = null;
        try
        {
            options = TrainingOptionsLoader.Load(configPath, overrides);
            data = TrainingData.Load(options);
            ModelFactory.CheckFitsData(options.Model, data.Train.FeatureCount, data.Train.ClassCount);
            var model = ModelFactory.Build(options.Model); // a layer that does not fit fails here, not inside an actor
            if (role == NodeRoles.ParameterServer)
            {
                ModelFactory.StartingWeights(model, options.Model, options.Training.Seed); // and so does a pretrained checkpoint
                runDirectory = RunDirectory.Create(options.Output.Directory);
            }
        }
        catch (Exception e) when (e is ConfigurationException or DataFormatException or RunDirectoryException or ArgumentException or InvalidDataException)
        {
            CliConsole.Fail("error", e.Message);
            return 2;
        }
        MetricsExporter? exporter;
        try
        {
            exporter = MetricsSetup.Start(options, $"{role}@{(string.IsNullOrWhiteSpace(options.Cluster.PublicHostname) ? System.Net.Dns.GetHostName() : options.Cluster.PublicHostname)}:{options.Cluster.Port}");
        }
        catch (MetricsPortException e)
        {
            CliConsole.Fail("error", e.Message);
            return 2;
        }
        using var metrics = exporter;
        using var heartbeat = new HealthHeartbeat(options.Output.HealthFile);
        AnsiConsole.MarkupLineInterpolated($"[bold]DistTrain[/] cluster node, role {role}, seeds {string.Join(", ", options.Cluster.SeedNodes)}, port {options.Cluster.Port}");
        Blas.Configure(options.Compute, role == NodeRoles.Worker ? 1 : 0); // as ClusterNode will, so the line below is true
        AnsiConsole.WriteLine(Blas.Description);
        if (ConvolutionKernels.UsedBy(options.Model)) AnsiConsole.WriteLine(ConvolutionKernels.Description);
        if (role == NodeRoles.Worker)
        {
            JobFinished? finished = null;
            var failed = await CliConsole.RunTrainingAsync(async () => finished = await ClusterNode.RunWorkerAsync(options, data, cancellationToken));
            if (failed is not null) return failed.Value;
            AnsiConsole.MarkupLineInterpolated($"Job finished: {finished!.Summary}");
            return finished.Succeeded ? 0 : 1;
        }
        var loop = options.Training;
        AnsiConsole.MarkupLineInterpolated($"Waiting for {options.Cluster.MinWorkers} worker(s); {loop.Epochs} epochs, batch {loop.BatchSizePerWorker} per worker");
        TrainingResult? result = null;
        RunReport? report = null;
        JobFinished? finishedElsewhere = null;
        var exit = await CliConsole.RunTrainingAsync(async () =>
            {
                try
                {
                    result = await ConsoleProgress.RunAsync(loop.Epochs,
                        observer => ClusterNode.RunParameterServerAsync(options, data, MetricsSetup.Wrap(report = new RunReport(observer), options), cancellationToken));
                }
                catch (JobFinishedOnAnotherNodeException e)
                {
                    finishedElsewhere = e.Finished;
                }
            },
            diverged => RunOutputs.SaveLastGood(runDirectory!, options, diverged));
        if (exit is not null) return exit.Value;
        if (finishedElsewhere is not null)
        {
            // A standby to the end: the results are in the active parameter server's output directory.
            AnsiConsole.MarkupLineInterpolated($"Standby parameter server: the job finished on the active one: {finishedElsewhere.Summary}");
            return finishedElsewhere.Succeeded ? 0 : 1;
        }
        RunOutputs.Save(runDirectory!, options, data.Normalizer, DataMetadata.Of(data, options.Data), result!, report);
        return 0;
    }
}
