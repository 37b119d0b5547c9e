using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Cluster.Hosting.SBR;
using Akka.Hosting;
using Akka.Remote.Hosting;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.LinearAlgebra;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using AkkaClusterOptions = Akka.Cluster.Hosting.ClusterOptions;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// Cluster mode: one node of an Akka.Cluster, started through Akka.Hosting. The parameter-server node
/// runs the job host, coordinator and parameter server; each worker node runs one worker. Weights and
/// gradients travel on a TCP data plane beside Akka.Remote (docs/architecture.md says why).
/// </summary>
public static class ClusterNode
{
    /// <summary>Largest Akka.Remote frame: control messages only (a shard's indices are the largest, 5 bytes per sample).</summary>
    public const long MaximumFrameSizeBytes = 4 * 1024 * 1024;

    /// <summary>
    /// Adds remoting, clustering and DistTrain's serializer, dispatcher and logging to an Akka.Hosting builder.
    /// </summary>
    /// <remarks>
    /// Split-brain resolver: keep-oldest with down-if-alone. The parameter server node is the first
    /// member (the seed) and so the oldest; in a partition the side with it survives and workers cut off
    /// from it down themselves, which is what a synchronous job needs: a side without the parameter
    /// server cannot train, and keep-majority would let a majority of workers keep a cluster that has no
    /// parameter server. down-if-alone covers the case where the oldest node itself is isolated.
    /// </remarks>
    public static AkkaConfigurationBuilder WithDistTrainNode(this AkkaConfigurationBuilder builder, TrainingOptions options, string role, int computeThreads) =>
        builder
            .AddHocon(AkkaSettings.Serialization()
                .WithFallback(AkkaSettings.Dispatchers(computeThreads))
                .WithFallback(AkkaSettings.Logging("INFO")), HoconAddMode.Prepend)
            .WithRemoting(new RemoteOptions
            {
                HostName = options.Cluster.Hostname,
                PublicHostName = string.IsNullOrWhiteSpace(options.Cluster.PublicHostname) ? null : options.Cluster.PublicHostname,
                Port = options.Cluster.Port,
                MaxFrameSize = MaximumFrameSizeBytes,
            })
            .WithClustering(new AkkaClusterOptions
            {
                Roles = [role],
                SeedNodes = [.. options.Cluster.SeedNodes],
                SplitBrainResolver = new KeepOldestOption { DownIfAlone = true },
            });

    /// <summary>Runs the parameter-server node until the job ends.</summary>
    /// <returns>The final weights and per-epoch summaries.</returns>
    /// <exception cref="InvalidOperationException">The job failed; the message says why.</exception>
    public static async Task<TrainingResult> RunParameterServerAsync(TrainingOptions options, TrainingData data, ITrainingObserver observer,
        CancellationToken cancellationToken)
    {
        Blas.Configure(options.Compute, workersInProcess: 0); // the parameter server node computes no gradients
        var completion = new TaskCompletionSource<TrainingResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        var dataHost = string.IsNullOrWhiteSpace(options.Cluster.PublicHostname) ? System.Net.Dns.GetHostName() : options.Cluster.PublicHostname;
        using var host = BuildHost(options, NodeRoles.ParameterServer, Environment.ProcessorCount, (system, _) =>
            system.ActorOf(JobHost.Props(options, data.Train.Count, data.Test.Count, data.Validation?.Count ?? 0, dataHost, observer, completion), JobHost.Name));
        await host.StartAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            // Give the JobFinished messages a moment to reach the worker nodes before leaving the cluster.
            await Task.Delay(TimeSpan.FromSeconds(1), CancellationToken.None).ConfigureAwait(false);
            await host.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>Runs a worker node until the parameter server reports the end of the job.</summary>
    /// <returns>The job's outcome as the parameter server reported it.</returns>
    /// <exception cref="InvalidOperationException">The node was refused or lost its connection.</exception>
    /// <exception cref="TimeoutException">No parameter server accepted it within Cluster:JoinTimeoutSeconds.</exception>
    public static async Task<JobFinished> RunWorkerAsync(TrainingOptions options, TrainingData data, CancellationToken cancellationToken)
    {
        Blas.Configure(options.Compute, workersInProcess: 1);
        var completion = new TaskCompletionSource<JobFinished>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var host = BuildHost(options, NodeRoles.Worker, computeThreads: 1, (system, _) =>
            system.ActorOf(WorkerAgent.Props(options, data, completion), "agent"));
        await host.StartAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return await completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await host.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    private static IHost BuildHost(TrainingOptions options, string role, int computeThreads, Action<ActorSystem, IActorRegistry> start)
    {
        var builder = new HostBuilder();
        builder.ConfigureServices(services => services.AddAkka("disttrain", (akka, _) =>
            akka.WithDistTrainNode(options, role, computeThreads).WithActors((system, registry) =>
            {
                Metrics.DistTrainMetrics.WatchCluster(Akka.Cluster.Cluster.Get(system));
                system.EventStream.Subscribe(system.ActorOf(Props.Create(() => new Metrics.DeadLetterCounter()), "dead-letter-counter"), typeof(Akka.Event.DeadLetter));
                start(system, registry);
            })));
        return builder.Build();
    }
}
