using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Event;
using Akka.Hosting;
using Akka.Remote.Hosting;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Security;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.LinearAlgebra;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using AkkaClusterOptions = Akka.Cluster.Hosting.ClusterOptions;
using DistTrain.Core;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// Cluster mode: one node of an Akka.Cluster, started through Akka.Hosting. The active parameter-server node
/// runs the job host, coordinator and parameter server, and further parameter-server nodes stand by to take
/// over; each worker node runs one worker. Weights and
/// gradients travel on a TCP data plane beside Akka.Remote (docs/architecture.md says why).
/// </summary>
public static class ClusterNode
{
    /// <summary>
    /// Largest Akka.Remote frame, bytes: control messages only. Shards (<see cref="Protocol.AssignShard"/>) used to be the largest,
    /// at up to 5 bytes per sample index; in cluster mode they go as recipes (<see cref="Protocol.ShardRecipe"/>): about 100
    /// bytes for an epoch's first part, and up to 15 bytes more per piece of the epoch's plan for a further part. The
    /// coordinator refuses a larger shard message with the fix (<see cref="Actors.CoordinatorSettings.ShardMessageLimitBytes"/>).
    /// 4 MiB before 2026-12-06: a CSV of 1,000,000 rows trained by one worker node stalled on its dropped shard message, sent
    /// as indices then.
    /// </summary>
    public const long MaximumFrameSizeBytes = 16 * 1024 * 1024;

    /// <summary>
    /// Adds remoting (mutual TLS with the cluster's CA when <paramref name="security"/> has certificates), clustering and
    /// DistTrain's serializer, dispatcher and logging to an Akka.Hosting builder.
    /// </summary>
    /// <remarks>
    /// Split-brain resolution is DistTrain's own (<see cref="Membership.ParameterServerSideRule"/>): the side that holds the
    /// active parameter server (the oldest parameter-server node, where the job host singleton runs) stays and downs the
    /// unreachable nodes, however many workers are lost and in whatever order; if the active parameter server is alone and
    /// a standby is on the other side, the standby's side stays and takes over. Never two parameter servers accept
    /// gradients because a worker has one data-plane connection at a time and registers with a job host again only after
    /// it closed or the node at its other end was downed; an isolated old parameter server has no worker left to reach it
    /// (docs/reliability.md). Akka.Remote's reports about connections to nodes that left in order are dropped
    /// (<see cref="DepartedNodesLogFilter"/>).
    /// </remarks>
    public static AkkaConfigurationBuilder WithDistTrainNode(this AkkaConfigurationBuilder builder, TrainingOptions options, ClusterSecurity security,
        string role, int computeThreads)
    {
        var departed = new DepartedNodesLogFilter();
        var foreign = new ForeignPeerLogFilter(options.Cluster.SeedNodes);
        var quickJoin = AkkaSettings.RetriesJoinQuickly(options.Cluster, role);
        return builder
            // A Cluster:Port taken after the start-up check: the start fails with one line (StartAsync), not Akka's pages about it.
            // A seed where another program listens: one warning naming it, not Akka.Remote's errors with its bytes in hex.
            .AddSetup((quickJoin ? new LogFilterBuilder().Add(new JoinRetryLogFilter()) : new LogFilterBuilder())
                .Add(departed).Add(new BindFailureLogFilter()).Add(foreign).Build())
            .WithActors((system, _) =>
            {
                system.ActorOf(DepartedNodesLogFilter.WatcherProps(departed), "departed-nodes");
                var log = Logging.GetLogger(system, "seed-nodes");
                foreign.LogThrough(text => log.Warning("{0}", text));
                foreign.Attach(system); // the join-timeout message (a worker's, or a parameter-server node's) names the peers it warned about
                // A seed that refuses connections while this node joins is still starting (nodes started together): INFO.
                departed.NoteRefusedSeedsThrough(options.Cluster.SeedNodes.Select(security.SeedAddress), text => log.Info("{0}", text));
                Akka.Cluster.Cluster.Get(system).RegisterOnMemberUp(departed.Joined);
            })
            .AddHocon(AkkaSettings.Serialization()
                .WithFallback(AkkaSettings.Dispatchers(computeThreads))
                .WithFallback(AkkaSettings.Logging("INFO")), HoconAddMode.Prepend)
            .WithRemoting(Remoting(options.Cluster, security))
            .AddHocon(AkkaSettings.ExclusivePort(), HoconAddMode.Prepend)
            .AddHocon(AkkaSettings.Membership(options.Cluster), HoconAddMode.Prepend)
            .AddHocon(quickJoin ? AkkaSettings.JoinRetry() : Akka.Configuration.Config.Empty, HoconAddMode.Prepend)
            .WithClustering(new AkkaClusterOptions
            {
                Roles = [role],
                SeedNodes = [.. options.Cluster.SeedNodes.Select(security.SeedAddress)],
            });
    }

    /// <summary>
    /// Akka.Remote's settings for a node: the address, the frame size, and with certificates mutual TLS where each side
    /// presents its certificate and accepts only peers whose certificate <see cref="ClusterCertificates.Refusal"/> accepts
    /// (the cluster's CA, within validity). Host names are not checked: the CA is what decides membership.
    /// </summary>
    public static RemoteOptions Remoting(Core.Configuration.ClusterOptions cluster, ClusterSecurity security) => new()
    {
        HostName = cluster.Hostname,
        PublicHostName = string.IsNullOrWhiteSpace(cluster.PublicHostname) ? null : cluster.PublicHostname,
        Port = cluster.Port,
        MaxFrameSize = MaximumFrameSizeBytes,
        EnableSsl = security.Certificates is not null,
        Ssl = security.Certificates is { } certificates
            ? new SslOptions
            {
                X509Certificate = certificates.Certificate,
                SuppressValidation = false,
                RequireMutualAuthentication = true,
                ValidateCertificateHostname = false, // nodes connect by container name or IP; the CA pin decides (docs/security.md)
                CustomValidator = certificates.ValidateAkkaPeer,
            }
            : new SslOptions(),
    };

    /// <summary>
    /// Runs a parameter-server node until the job ends. The job host is a cluster singleton among the parameter-server
    /// nodes (<see cref="ParameterServerNode"/>): on the oldest it runs the job; on the others it waits as a standby and
    /// takes over from the newest checkpoint if the active node fails.
    /// </summary>
    /// <param name="options">The node's validated options.</param>
    /// <param name="security">The job's identity and the node's TLS certificates (<see cref="ClusterSecurity.Load"/>).</param>
    /// <param name="listener">The node's data-plane listener, bound at start-up (<see cref="DataPlaneListener.Start(string, int, ClusterCertificates?)"/>).</param>
    /// <param name="data">The job's data.</param>
    /// <param name="observer">Receives progress.</param>
    /// <param name="cancellationToken">Stops the node: it leaves the cluster, and the call ends with
    /// <see cref="OperationCanceledException"/> (a <see cref="TrainingCancelledException"/> with the weights at the stop, when the
    /// coordinator had them), unless the job finished while the node left (then its result).</param>
    /// <param name="saveOutputs">Writes the finished job's weights where the node keeps them, before the other nodes learn of
    /// the end (<see cref="JobHost.Props"/>); null tells them at once.</param>
    /// <returns>The final weights and per-epoch summaries.</returns>
    /// <exception cref="ConfigurationException">Settings a parameter-server node cannot run (<see cref="TrainingOptionsValidator.ParameterServerNodeProblems"/>).</exception>
    /// <exception cref="InvalidOperationException">The job failed; the message says why.</exception>
    /// <exception cref="JobFinishedOnAnotherNodeException">This node was a standby to the end: the job ended on another parameter-server node.</exception>
    /// <exception cref="NodeRefusedException">The active parameter server refused this node as its standby (another job, version or settings),
    /// or this node took the job over unchecked and the job's workers have other settings.</exception>
    /// <exception cref="UnresolvableHostException">Cluster:Hostname does not resolve to an address.</exception>
    /// <exception cref="AddressNotLocalException">Cluster:Hostname resolves, but not to an address of this machine.</exception>
    public static async Task<TrainingResult> RunParameterServerAsync(TrainingOptions options, ClusterSecurity security, DataPlaneListener listener,
        TrainingData data, ITrainingObserver observer, CancellationToken cancellationToken, Func<TrainingResult, Task>? saveOutputs = null)
    {
        if (TrainingOptionsValidator.ParameterServerNodeProblems(options) is { Count: > 0 } notOnNodes)
            throw new ConfigurationException("parameter server node options", notOnNodes);
        PortProbe.BindAddress(options.Cluster.Hostname, "Cluster:Hostname"); // a host that does not resolve is one line, not Akka.Remote's bind failure
        Blas.Configure(options.Compute, workersInProcess: 0); // the parameter server node computes no gradients
        var completion = new TaskCompletionSource<TrainingResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        var finishedElsewhere = new TaskCompletionSource<JobFinished>(TaskCreationOptions.RunContinuationsAsynchronously);
        var failover = new FailoverState();
        var dataHost = DataHost(options.Cluster);
        // The training split's digest once, for the checkpoints and the registration's comparison.
        var trainDigest = options.Checkpoint.Enabled || options.Cluster.CheckSamples ? data.Train.ContentDigest() : "";
        var samples = ModelFingerprint.SamplesOf(data, options.Cluster.CheckSamples, trainDigest);
        ActorSystem? actorSystem = null;
        using var host = BuildHost(options, security, NodeRoles.ParameterServer, Environment.ProcessorCount, (system, _) =>
        {
            actorSystem = system;
            system.ActorOf(ParameterServerNode.Props(failover, finishedElsewhere,
                new ParameterServerNode.StandbyRegistration(security, ModelFingerprint.Of(options, samples), ModelFingerprint.ServerSettingsOf(options))), ParameterServerNode.Name);
            // The host runs under a supervisor, which starts it again here after a lost shard node (Cluster:ShardNodes) with no standby up.
            var jobHost = JobHostSupervisor.Props(restart => JobHost.Props(options, security, listener, data.Train.Count, data.Test.Count, data.Validation?.Count ?? 0,
                dataHost, observer, completion, failover, saveOutputs: saveOutputs, trainDigest: options.Checkpoint.Enabled ? trainDigest : "", samples: samples,
                restartable: true, restartedAfter: restart));
            var manager = system.ActorOf(ParameterServerNode.SingletonManagerProps(system, jobHost), ParameterServerNode.SingletonManagerName);
            StopJobHostWhenNoParameterServerTakesOver(system, manager, completion.Task);
            FailWhenTerminated(system, security, options.Cluster.SeedNodes, completion);
            FailWhenNotJoined(system, security, options.Cluster, completion);
        });
        await StartAsync(host, options.Cluster, cancellationToken).ConfigureAwait(false);
        var stopped = false;
        try
        {
            var ended = await Task.WhenAny(completion.Task, finishedElsewhere.Task).WaitAsync(cancellationToken).ConfigureAwait(false);
            // Failed instead when the active node refused this one as its standby (NodeRefusedException, thrown as it is).
            if (ended == finishedElsewhere.Task) throw new JobFinishedOnAnotherNodeException(await finishedElsewhere.Task.ConfigureAwait(false));
            return await completion.Task.ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            stopped = true;
            // Stop stepping now, as the stop's notice says: leaving the cluster takes seconds, in which the job would train on.
            // The newest checkpoint stays the one to resume from; a standby, if any, takes the job over from it. A job whose
            // outputs are being written already is let end first, within Training:StallTimeoutSeconds: the leave would
            // stop its host mid-write, and the other nodes would never learn that the job ended.
            if (actorSystem is not null && await StopTrainingAsync(actorSystem).ConfigureAwait(false))
                await Task.WhenAny(completion.Task, Task.Delay(TimeSpan.FromSeconds(options.Training.StallTimeoutSeconds))).ConfigureAwait(false);
        }
        finally
        {
            // An orderly end: the other nodes leave once JobFinished reaches them, and this node, the cluster's oldest
            // and its leader, moves them out (Leaving, Exiting, Removed) before it leaves itself. Leaving together, a
            // node whose connection to another closed mid-leave logged the association as failed (WARNING, ERROR
            // "Disassociated" and a stack trace) on a job that had succeeded.
            // A job handed over to a standby is not over: the other nodes stay for it.
            // Nor is one this node refused to take over (NodeRefusedException): the workers wait for another parameter server.
            if (completion.Task.IsCompleted && completion.Task.Exception?.InnerException is not (JobHandedOverException or OperationCanceledException or NodeRefusedException)
                && actorSystem is not null)
                await WaitForOtherMembersToLeaveAsync(actorSystem, TimeSpan.FromSeconds(OtherMembersLeaveTimeoutSeconds)).ConfigureAwait(false);
            await host.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
        // The job may have ended as the node stopped, its outputs written: that end, not the stop, is the outcome (a stop
        // reported over a finished job's files would contradict them).
        if (stopped && completion.Task.IsCompletedSuccessfully) return completion.Task.Result;
        // Likewise a standby stopped as the job ended on the active node: that end is the outcome, as without the stop.
        if (stopped && finishedElsewhere.Task.IsCompletedSuccessfully) throw new JobFinishedOnAnotherNodeException(finishedElsewhere.Task.Result);
        // The weights at the stop, when the coordinator had them: the node keeps them with the finished epochs.
        if (completion.Task.Exception?.InnerException is TrainingCancelledException { Weights: not null } cancelled)
            throw new TrainingCancelledException(cancelled.Weights, cancellationToken);
        throw new OperationCanceledException(cancellationToken);
    }

    /// <summary>
    /// The host workers dial for this node's data plane, as they dial its Akka.Remote address: Cluster:PublicHostname
    /// when set; else Cluster:Hostname when that is one address or name (the data plane listens only there, as Akka.Remote
    /// does, and Akka.Remote advertises it); else, on every interface, the machine's host name.
    /// </summary>
    /// <param name="cluster">The node's Cluster options.</param>
    public static string DataHost(Core.Configuration.ClusterOptions cluster) =>
        !string.IsNullOrWhiteSpace(cluster.PublicHostname) ? cluster.PublicHostname
        : PortProbe.IsEveryInterface(cluster.Hostname) ? System.Net.Dns.GetHostName()
        : cluster.Hostname;

    /// <summary>
    /// Tells this node's job host, if it runs here, to stop training (<see cref="JobHost.StopTraining"/>): true when the job
    /// is ending already (its outputs being written, or only the last evaluation left), so the node waits for that end.
    /// False otherwise: when the run ended unfinished (cancelled, or failed), answered once the node's result is set; when
    /// the job had not started; on a node with no job host (a standby); or with no answer within the coordinator's stop
    /// timeout and 2 s. Then the node stops without waiting.
    /// </summary>
    private static async Task<bool> StopTrainingAsync(ActorSystem system)
    {
        try
        {
            var host = await system.ActorSelection($"/user/{ParameterServerNode.SingletonManagerName}/{ParameterServerNode.SingletonName}")
                .ResolveOne(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
            // The coordinator decides once the parameter server's weights are in, or gives up on them after StopSnapshotTimeout.
            return await host.Ask<bool>(JobHost.StopTraining.Instance, Coordinator.StopSnapshotTimeout + TimeSpan.FromSeconds(2)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is ActorNotFoundException or AskTimeoutException or TaskCanceledException)
        {
            return false;
        }
    }

    /// <summary>
    /// On the node that runs the job host, as it leaves the cluster (Akka's cluster-exiting phase): once no other
    /// parameter-server node is up and reachable to take the job host over (every other one leaving, exiting, downed,
    /// removed or unreachable, as when the active and the standby are stopped together), stops the singleton manager and
    /// with it the job host, so the leave goes on at once. Without this the manager kept offering the job host to the
    /// leaving standby, which no longer takes it, at every hand-over retry for 12 s (15.4 s now, AkkaSettings.Membership), and
    /// Akka's 10 s cluster-exiting phase timed out (its WARNING, and a stop 10 s longer). While another parameter-server
    /// node is up the hand-over goes on as before (the task ends when the job host has stopped), and on a node without a
    /// job host (a standby) the task does nothing.
    /// Nor does it on a node with no other parameter-server member at all: Akka's manager then stops the job host itself,
    /// one hand-over retry (0.2 s, AkkaSettings.Membership) after the node exits.
    /// <para>
    /// Two of Akka's tasks of the same phase ask the manager and its child, the oldest-changed buffer, <c>SelfExiting</c>, with
    /// the phase's 10 s as the time-out, and ignore the time-out: a manager or buffer stopped before it answered made the leave
    /// 10 s longer, with no warning (docs/reliability.md). Akka starts a phase's tasks one after another on one thread, in the
    /// order they were added, so this task is added as the shutdown begins (in its before-cluster-shutdown phase), behind theirs: both
    /// requests are queued before it runs. It then stops the manager only after the buffer has answered an
    /// <see cref="Identify"/> sent behind its request, and with a <see cref="PoisonPill"/>, a message queued behind the
    /// manager's own request (<c>system.Stop</c>, a system message, could overtake it).
    /// </para>
    /// </summary>
    private static void StopJobHostWhenNoParameterServerTakesOver(ActorSystem system, IActorRef manager, Task jobEnded)
    {
        var shutdown = CoordinatedShutdown.Get(system);
        shutdown.AddTask(CoordinatedShutdown.PhaseBeforeClusterShutdown, "add-stop-job-host-without-successor", () =>
        {
            shutdown.AddTask(CoordinatedShutdown.PhaseClusterExiting, "stop-job-host-without-successor", () => StopJobHostWithoutSuccessorAsync(system, manager, jobEnded));
            return Task.FromResult(Akka.Done.Instance);
        });
    }

    /// <summary>The task of <see cref="StopJobHostWhenNoParameterServerTakesOver"/>, in Akka's cluster-exiting phase.</summary>
    private static async Task<Akka.Done> StopJobHostWithoutSuccessorAsync(ActorSystem system, IActorRef manager, Task jobEnded)
    {
        IActorRef jobHost;
        try
        {
            jobHost = await system.ActorSelection(manager.Path / ParameterServerNode.SingletonName).ResolveOne(TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is ActorNotFoundException or AskTimeoutException)
        {
            return Akka.Done.Instance; // no job host here: nothing to hand over
        }
        var cluster = Akka.Cluster.Cluster.Get(system);
        IEnumerable<Akka.Cluster.Member> OtherParameterServers() =>
            cluster.State.Members.Where(m => !m.UniqueAddress.Equals(cluster.SelfUniqueAddress) && m.HasRole(NodeRoles.ParameterServer));
        if (!OtherParameterServers().Any(m => m.Status != Akka.Cluster.MemberStatus.Removed))
            return Akka.Done.Instance; // a lone parameter server: Akka's manager ends the job host itself
        var jobHostStopped = jobHost.WatchAsync();
        var managerStopped = manager.WatchAsync();
        bool SuccessorUp() => OtherParameterServers().Any(m => m.Status == Akka.Cluster.MemberStatus.Up && !cluster.State.Unreachable.Contains(m));
        while (!jobHostStopped.IsCompleted && !managerStopped.IsCompleted && !cluster.IsTerminated)
        {
            if (!SuccessorUp())
            {
                // Worth an INFO line only when a running job loses its job host; after the job's end (a finished job, or a stop that
                // saved the run) there is nothing to hand over, and every lone parameter server ends this way.
                if (jobEnded.IsCompleted) system.Log.Debug("No other parameter-server node is up to take the ended job's host over: stopping it.");
                else system.Log.Info("No other parameter-server node is up to take the job host over: stopping it without a hand-over.");
                // The buffer (the manager's one child with a name Akka made up) answers this Identify after Akka's SelfExiting,
                // queued before this task ran; no buffer (the node never came up) answers at once with no actor.
                try
                {
                    await system.ActorSelection(manager.Path.ToStringWithoutAddress() + "/$*").Ask<ActorIdentity>(new Identify(null), TimeSpan.FromSeconds(2)).ConfigureAwait(false);
                }
                catch (AskTimeoutException)
                {
                    // stopped by now, or too busy to answer: stop the manager anyway
                }
                manager.Tell(PoisonPill.Instance);
                await managerStopped.ConfigureAwait(false);
                break;
            }
            await Task.WhenAny(jobHostStopped, managerStopped, Task.Delay(TimeSpan.FromMilliseconds(100))).ConfigureAwait(false);
        }
        return Akka.Done.Instance;
    }

    /// <summary>Longest wait, seconds, for the other nodes to leave at the end of a job before this one leaves anyway.</summary>
    public const double OtherMembersLeaveTimeoutSeconds = 20;

    /// <summary>
    /// Waits until this node is the cluster's only member, counting neither removed members nor unreachable ones (a
    /// dead node does not leave; the split-brain resolver removes it), for at most <paramref name="timeout"/>.
    /// </summary>
    private static async Task WaitForOtherMembersToLeaveAsync(ActorSystem system, TimeSpan timeout)
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var deadline = DateTime.UtcNow + timeout;
        bool OthersRemain()
        {
            var state = cluster.State;
            return state.Members.Any(m => !m.UniqueAddress.Equals(cluster.SelfUniqueAddress) && m.Status != Akka.Cluster.MemberStatus.Removed
                                          && !state.Unreachable.Contains(m));
        }
        while (!system.WhenTerminated.IsCompleted && DateTime.UtcNow < deadline && OthersRemain())
            await Task.Delay(TimeSpan.FromMilliseconds(100)).ConfigureAwait(false);
    }

    /// <summary>Runs a worker node until the parameter server reports the end of the job.</summary>
    /// <param name="options">The node's validated options.</param>
    /// <param name="security">The job's identity and the node's TLS certificates (<see cref="ClusterSecurity.Load"/>).</param>
    /// <param name="data">The job's data.</param>
    /// <param name="cancellationToken">Stops the node.</param>
    /// <returns>The job's outcome as the parameter server reported it.</returns>
    /// <exception cref="ConfigurationException">The first of Cluster:SeedNodes is this node's own address (<see cref="TrainingOptionsValidator.WorkerSeedProblems"/>).</exception>
    /// <exception cref="NodeRefusedException">The job host refused the node (another job, model or version), or a host of another job answered.</exception>
    /// <exception cref="InvalidOperationException">The node's worker failed or the node left the cluster.</exception>
    /// <exception cref="TimeoutException">No parameter server accepted it within Cluster:JoinTimeoutSeconds.</exception>
    /// <exception cref="UnresolvableHostException">Cluster:Hostname does not resolve to an address.</exception>
    /// <exception cref="AddressNotLocalException">Cluster:Hostname resolves, but not to an address of this machine.</exception>
    public static async Task<JobFinished> RunWorkerAsync(TrainingOptions options, ClusterSecurity security, TrainingData data, CancellationToken cancellationToken)
    {
        if (TrainingOptionsValidator.WorkerSeedProblems(options) is { Count: > 0 } seeds) throw new ConfigurationException("worker node options", seeds);
        PortProbe.BindAddress(options.Cluster.Hostname, "Cluster:Hostname"); // a host that does not resolve is one line, not Akka.Remote's bind failure
        Blas.Configure(options.Compute, workersInProcess: 1);
        var completion = new TaskCompletionSource<JobFinished>(TaskCreationOptions.RunContinuationsAsynchronously);
        // The samples' digest for the registrations, before the node starts, as the parameter server's: not in the agent's
        // constructor, which it would block for about 0.1 s.
        var samples = ModelFingerprint.SamplesOf(data, options.Cluster.CheckSamples);
        ActorSystem? actorSystem = null;
        IActorRef agent = ActorRefs.Nobody;
        using var host = BuildHost(options, security, NodeRoles.Worker, computeThreads: 1, (system, _) =>
        {
            actorSystem = system;
            agent = system.ActorOf(WorkerAgent.Props(options, security, data, samples, completion), "agent");
            FailWhenTerminated(system, security, options.Cluster.SeedNodes, completion);
        });
        await StartAsync(host, options.Cluster, cancellationToken).ConfigureAwait(false);
        try
        {
            return await completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            if (cancellationToken.IsCancellationRequested && actorSystem is not null)
                await SkipLeaveIfItCannotFinishAsync(actorSystem, agent).ConfigureAwait(false);
            await host.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// The settings a shard node hosts its shard with (<see cref="ShardHost"/>), from its own options: the starting weights it
    /// builds as the parameter server does (Model, Training:Seed, Model:Pretrained), the optimizer and epochs it steps with,
    /// the settings a coordinator's request must match, and its data plane's address (Cluster:Hostname, Cluster:DataPort,
    /// advertised as <see cref="DataHost"/>).
    /// </summary>
    /// <param name="options">The node's validated options.</param>
    /// <param name="security">The job's identity and the node's TLS certificates.</param>
    /// <param name="log">Where the loading of a pretrained file is reported; null: nowhere.</param>
    /// <exception cref="ArgumentException">A layer does not fit (as <see cref="Core.Models.ModelFactory.Build"/>).</exception>
    /// <exception cref="IOException">Model:Pretrained cannot be read, or is not a weights file of this model.</exception>
    public static ShardHostSettings ShardHostSettingsOf(TrainingOptions options, ClusterSecurity security, Action<string>? log = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(security);
        var model = Core.Models.ModelFactory.Build(options.Model);
        var starting = Core.Models.ModelFactory.StartingWeights(model, options.Model, options.Training.Seed, log);
        // The shard steps with the parameter server's share of the optimizer: under TopK the workers clip (and, with momentum
        // correction, add the momentum, L1 and L2) before encoding, as with one parameter server.
        return new ShardHostSettings(security.Identity, starting, options.Optimizer, options.Training.Epochs, ModelFingerprint.ServerSettingsOf(options),
            options.Cluster.Hostname, options.Cluster.DataPort, DataHost(options.Cluster), security.Certificates,
            Training.ReplicaSettings.CompressionOf(options), options.ParameterServerOptimizer());
    }

    /// <summary>
    /// Runs a shard node (role <see cref="NodeRoles.ParameterShard"/>) until the active parameter server reports the job's end:
    /// it joins the cluster through Cluster:SeedNodes and hosts one parameter-server shard at a time (<see cref="ShardHost"/>,
    /// <c>/user/shard-host</c>) for the coordinator that asks. A stop (<paramref name="cancellationToken"/>) releases the shard,
    /// telling its owner, and leaves the cluster (or, with a member unreachable, skips the leave, as a worker does).
    /// </summary>
    /// <param name="settings">What the node hosts with (<see cref="ShardHostSettingsOf"/>).</param>
    /// <param name="options">The node's validated options.</param>
    /// <param name="security">The job's identity and the node's TLS certificates.</param>
    /// <param name="cancellationToken">Stops the node.</param>
    /// <returns>The job's end as the active parameter server reported it.</returns>
    /// <exception cref="ConfigurationException">The first of Cluster:SeedNodes is this node's own address.</exception>
    /// <exception cref="TimeoutException">The node was not let into a cluster within Cluster:JoinTimeoutSeconds, or no parameter-server
    /// member was up and reachable for that long after it joined (the parameter server left without reporting the job's end).</exception>
    /// <exception cref="NodeRefusedException">A peer refused this node's certificate, or it refused the peer's.</exception>
    /// <exception cref="Actors.NodeDownedException">The node was downed before the job ended.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> stopped the node.</exception>
    /// <exception cref="PortInUseException">Cluster:Port was taken after the start-up check.</exception>
    /// <param name="stopStay">How long a stop (<paramref name="cancellationToken"/>) that comes while this node hosts a shard, with every
    /// member reachable, waits for the job's end or the shard's release first (<see cref="ShardHost.StopStay"/> from the command
    /// line); zero: it stops at once.</param>
    public static async Task<JobFinished> RunShardHostAsync(ShardHostSettings settings, TrainingOptions options, ClusterSecurity security,
        CancellationToken cancellationToken, TimeSpan stopStay = default) => await RunShardHostWithTimeoutAsync(settings, options, security,
            TimeSpan.FromSeconds(options.Cluster.JoinTimeoutSeconds), cancellationToken, stopStay).ConfigureAwait(false);

    /// <summary>As <see cref="RunShardHostAsync(ShardHostSettings, TrainingOptions, ClusterSecurity, CancellationToken, TimeSpan)"/>, waiting
    /// <paramref name="parameterServerTimeout"/> without a parameter-server member (tests shorten it without shortening the join).</summary>
    internal static async Task<JobFinished> RunShardHostWithTimeoutAsync(ShardHostSettings settings, TrainingOptions options, ClusterSecurity security,
        TimeSpan parameterServerTimeout, CancellationToken cancellationToken, TimeSpan stopStay = default)
    {
        ArgumentNullException.ThrowIfNull(settings);
        if (TrainingOptionsValidator.WorkerSeedProblems(options, node: "shard") is { Count: > 0 } seeds) throw new ConfigurationException("shard node options", seeds);
        PortProbe.BindAddress(options.Cluster.Hostname, "Cluster:Hostname");
        var completion = new TaskCompletionSource<JobFinished>(TaskCreationOptions.RunContinuationsAsynchronously);
        ActorSystem? actorSystem = null;
        IActorRef shardHost = ActorRefs.Nobody;
        using var host = BuildHost(options, security, NodeRoles.ParameterShard, Environment.ProcessorCount, (system, _) =>
        {
            actorSystem = system;
            // A takeover's placement waits on this node for the old owner's end at most half the standby's placement time-out
            // (JobHost: the smaller of Cluster:JoinTimeoutSeconds and a third of Training:StallTimeoutSeconds), so its refusal
            // gets back before that time-out.
            var placementTimeout = Math.Min(options.Cluster.JoinTimeoutSeconds, options.Training.StallTimeoutSeconds / 3);
            var previousOwnerWait = placementTimeout > 0 && placementTimeout / 2 < ShardHost.DefaultPreviousOwnerWait.TotalSeconds
                ? TimeSpan.FromSeconds(placementTimeout / 2) : ShardHost.DefaultPreviousOwnerWait;
            shardHost = system.ActorOf(ShardHost.Props(settings, completion, parameterServerTimeout, previousOwnerWait), ShardHost.Name);
            FailWhenTerminated(system, security, options.Cluster.SeedNodes, completion);
            FailWhenNotJoined(system, security, options.Cluster, completion, shardNode: true);
        });
        await StartAsync(host, options.Cluster, cancellationToken).ConfigureAwait(false);
        try
        {
            try
            {
                return await completion.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested && actorSystem is not null && stopStay > TimeSpan.Zero)
            {
                if (await StayForTheJobsEndAsync(actorSystem, shardHost, completion.Task, stopStay).ConfigureAwait(false) is { } finished) return finished;
                throw;
            }
        }
        finally
        {
            // As a worker's: with a member unreachable (a parameter server killed or cut off) no leave can finish before it is
            // downed, so a stop skips the leave rather than wait for that. The skip starts the shutdown after the phase in which
            // the host releases its shard, so it is told first: its owner hears of the stop while the node's messages still go out.
            if (cancellationToken.IsCancellationRequested && actorSystem is not null && Akka.Cluster.Cluster.Get(actorSystem).State.Unreachable.Count > 0)
            {
                if (!shardHost.IsNobody()) await ShardHost.ReleaseForStopAsync(shardHost, TimeSpan.FromSeconds(3)).ConfigureAwait(false);
                await SkipLeaveAsync(actorSystem, null).ConfigureAwait(false);
            }
            await host.StopAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// A shard node stopped while it hosts a shard, with every member reachable: the whole cluster may be stopping, and then the
    /// parameter server gathers the stop's weights from its shards before it ends the job. Stays for that end, or until the shard
    /// is released (its owner gone) or a member becomes unreachable, for at most <paramref name="stopStay"/>, checking every
    /// 0.2 s. Returns the job's end as the parameter server reported it during the stay; null when the node did not stay, or the
    /// stay ended otherwise (a downing or a failure ends it as the stop it is).
    /// </summary>
    private static async Task<JobFinished?> StayForTheJobsEndAsync(ActorSystem system, IActorRef shardHost, Task<JobFinished> jobEnd, TimeSpan stopStay)
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var stay = System.Diagnostics.Stopwatch.StartNew();
        var stayed = false;
        while (!jobEnd.IsCompleted && stay.Elapsed < stopStay && cluster.State.Unreachable.Count == 0
            && await ShardHost.HostsShardAsync(shardHost).ConfigureAwait(false))
        {
            if (!stayed)
                Akka.Event.Logging.GetLogger(system, nameof(ClusterNode)).Info("Shard node: stopping once the job ends or the shard is released, for " +
                    "at most {0:F0} s, so that a parameter server that stops too can gather the stop's weights from this shard.", stopStay.TotalSeconds);
            stayed = true;
            await Task.WhenAny(jobEnd, Task.Delay(TimeSpan.FromMilliseconds(200), CancellationToken.None)).ConfigureAwait(false);
        }
        return stayed && jobEnd.IsCompletedSuccessfully ? jobEnd.Result : null;
    }

    /// <summary>
    /// A worker stopped (Ctrl-C, SIGTERM) while no graceful cluster leave can finish: it has no data plane to a parameter
    /// server (typically because the parameter server died), or a member is unreachable (a parameter server that froze or
    /// was cut off keeps the data plane's sockets open). A leave needs a leader to move this node out once the cluster
    /// converges; the leader may be the dead node, and an unreachable member blocks convergence until it is downed, so the
    /// leave waited until this node was downed itself (8.4-9.1 s measured, then reported as a failure). The shutdown then
    /// skips the leave and the cluster's own shutdown phase, which timed out after 5 s without a leader: it starts at
    /// <see cref="CoordinatedShutdown.PhaseBeforeActorSystemTerminate"/> (the node exits about 0.2 s after the signal,
    /// measured). The other members down this node as unreachable, as they would a killed one. With a live data plane and
    /// every member reachable, the worker leaves gracefully, as before.
    /// </summary>
    private static async Task SkipLeaveIfItCannotFinishAsync(ActorSystem system, IActorRef agent)
    {
        string? why;
        try
        {
            why = await agent.Ask<bool>(WorkerAgent.HasDataPlane.Instance, TimeSpan.FromSeconds(1)).ConfigureAwait(false)
                ? null
                : "no data plane to a parameter server";
        }
        catch (Exception e)
        {
            // An agent that cannot answer within a second (or is gone) has no live link to speak for; the node still stops.
            why = $"the worker agent did not say whether it has a data plane ({e.Message})";
        }
        await SkipLeaveAsync(system, why).ConfigureAwait(false);
    }

    /// <summary>
    /// Skips the cluster leave of a node being stopped (<see cref="SkipLeaveIfItCannotFinishAsync"/>) when <paramref name="why"/> is
    /// given or a member is unreachable (no leave can finish before it is downed); otherwise does nothing, and the node leaves.
    /// </summary>
    private static async Task SkipLeaveAsync(ActorSystem system, string? why)
    {
        var unreachable = Akka.Cluster.Cluster.Get(system).State.Unreachable.Count;
        why ??= unreachable > 0 ? $"{Counts.Of(unreachable, "member")} unreachable, so no leave could finish before {(unreachable == 1 ? "it is" : "they are")} downed" : null;
        if (why is null) return;
        system.Log.Info("Stopping without a cluster leave: {0}.", why);
        await CoordinatedShutdown.Get(system).Run(NoParameterServerReason.Instance, CoordinatedShutdown.PhaseBeforeActorSystemTerminate).ConfigureAwait(false);
    }

    /// <summary>Why a worker shut down without a cluster leave: stopped when no leave could finish (no parameter server to
    /// leave through, or an unreachable member).</summary>
    private sealed class NoParameterServerReason : CoordinatedShutdown.Reason
    {
        public static readonly NoParameterServerReason Instance = new();

        // Unused: Akka exits the process with it only under akka.coordinated-shutdown.exit-clr (off); the CLI sets the code.
        public override int ExitCode => 0;

        public override string ToString() => "stopped when no cluster leave could finish";
    }

    /// <summary>
    /// Bounds a parameter-server node's join: one whose own address is not the first of Cluster:SeedNodes (a standby, or an
    /// active node whose seeds name another address) does not start a cluster of its own, and Akka.Cluster tries to join
    /// through the seeds for ever. If the node is not up in a cluster within Cluster:JoinTimeoutSeconds, its run fails with
    /// a <see cref="TimeoutException"/> whose message (<see cref="NotJoined"/>) names the seeds, its own address and the fix,
    /// as a worker node's run fails when no parameter server accepts it (<see cref="WorkerAgent"/>). A node whose own address
    /// is the first seed always joins, after at most Akka's seed-node-timeout (5 s): it forms the cluster itself when no other
    /// seed answers, so it gets no bound (a Cluster:JoinTimeoutSeconds below 5 s would otherwise end it).
    /// </summary>
    private static void FailWhenNotJoined<T>(ActorSystem system, ClusterSecurity security, Core.Configuration.ClusterOptions options,
        TaskCompletionSource<T> completion, bool shardNode = false)
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        if (cluster.Settings.SeedNodes.Count > 0 && cluster.Settings.SeedNodes[0].Equals(cluster.SelfAddress)) return;
        var up = false;
        cluster.RegisterOnMemberUp(() => Volatile.Write(ref up, true));
        system.Scheduler.Advanced.ScheduleOnce(TimeSpan.FromSeconds(options.JoinTimeoutSeconds), () =>
        {
            if (Volatile.Read(ref up) || cluster.IsTerminated) return;
            // Off the scheduler's thread: the seeds' hosts are looked up (SeedHosts.Of), which can take seconds without a DNS server.
            string[] seeds = [.. options.SeedNodes.Select(security.SeedAddress)];
            var member = cluster.State.Members.Any(m => m.UniqueAddress.Equals(cluster.SelfUniqueAddress));
            _ = Task.Run(() =>
            {
                string message;
                try
                {
                    message = NotJoined(options.JoinTimeoutSeconds, seeds, cluster.SelfAddress.ToString(), options.Port, SeedHosts.Of(seeds),
                        ForeignPeerLogFilter.Of(system)?.Named, member ? [] : SilentSeeds.Connected(seeds), shardNode);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    // The causes are extras: a failure finding them must not keep the node from ending on its time-out.
                    message = NotJoined(options.JoinTimeoutSeconds, seeds, cluster.SelfAddress.ToString(), options.Port, shardNode: shardNode);
                }
                completion.TrySetException(new TimeoutException(message));
            });
        });
    }

    /// <summary>
    /// Why a parameter-server node gives up joining the cluster (<see cref="FailWhenNotJoined"/>): it was not let in through
    /// <paramref name="seeds"/> within <paramref name="seconds"/>, and, as its own address is not the first seed, it forms no
    /// cluster itself. The fix for an active parameter server (its own address first) and for a standby (the active one's).
    /// A first seed with the node's own port on another host (a loopback or host-name spelling of the node itself, which
    /// Akka does not take for it: it compares addresses as written) gets the Cluster:PublicHostname that would make it match.
    /// </summary>
    /// <param name="seconds">Cluster:JoinTimeoutSeconds.</param>
    /// <param name="seeds">Cluster:SeedNodes as the node dials them.</param>
    /// <param name="self">The node's own Akka address (<c>akka.tcp://disttrain@HOST:PORT</c>).</param>
    /// <param name="port">Cluster:Port.</param>
    /// <param name="unresolved">The seeds whose host does not resolve on this machine (<see cref="SeedHosts.Of"/>), named with the fix
    /// right after the seeds; none when null.</param>
    /// <param name="foreign">The peers found not to be DistTrain nodes (<see cref="ForeignPeerLogFilter.Named"/>), named after the
    /// unresolved seeds as in a worker's join-timeout message (<see cref="SeedHosts.JoinCauses"/>); none when null.</param>
    /// <param name="silent">The seeds that accepted this node's connection and did not let it join (<see cref="SilentSeeds.Connected"/>),
    /// named last; none when null.</param>
    /// <param name="shardNode">True for a shard node (<see cref="RunShardHostAsync"/>), which always joins through the active
    /// parameter server: the fix names that node alone.</param>
    internal static string NotJoined(double seconds, IReadOnlyList<string> seeds, string self, int port, IReadOnlyList<SeedHosts.Unresolved>? unresolved = null,
        IReadOnlyList<string>? foreign = null, IReadOnlyList<string>? silent = null, bool shardNode = false)
    {
        static Address? Parse(string address)
        {
            try
            {
                return Address.Parse(address);
            }
            catch (Exception e) when (e is UriFormatException or ArgumentException or FormatException)
            {
                return null;
            }
        }
        var own = Parse(self);
        var first = seeds.Count > 0 ? Parse(seeds[0]) : null;
        var itself = own is not null && first is not null && first.Port == own.Port && !string.Equals(first.Host, own.Host, StringComparison.OrdinalIgnoreCase)
            ? $" If the first seed, {seeds[0]}, is meant to be this node itself, set its Cluster:PublicHostname to {first.Host}: Akka takes a seed " +
              "for the node itself only when it is the node's address as written."
            : "";
        var joinFailed = $"could not join the cluster within {seconds:F0} s (Cluster:JoinTimeoutSeconds): no node at " +
            $"{(seeds.Count == 1 ? "its seed" : "its seeds")} {string.Join(", ", seeds)} (Cluster:SeedNodes) let it in. {SeedHosts.JoinCauses(unresolved ?? [], foreign, silent, seconds)}";
        if (shardNode)
            return $"This shard node {joinFailed}A shard node joins the cluster through the active parameter server: list that node's address " +
                "first, the same first seed on every node (DISTTRAIN_Cluster__SeedNodes__0=akka.tcp://disttrain@HOST:PORT, HOST being its " +
                "Cluster:PublicHostname and PORT its Cluster:Port), start it before this one, and check that it is reachable from here and " +
                "that Cluster:Tls is the same on every node.";
        return $"This parameter-server node {joinFailed}" +
            $"Its own address, {self}, is not the " +
            "first seed, so it starts no cluster of its own: it joins one through the seeds." + itself + " If this is the active parameter " +
            $"server (the first node started), list its own address first: DISTTRAIN_Cluster__SeedNodes__0=akka.tcp://disttrain@HOST:{port}, " +
            $"HOST being its Cluster:PublicHostname (the address the other nodes reach it at) and {port} its Cluster:Port, the same first seed on " +
            "every node. If it is a standby, list the active parameter server's address first, start that node before this one, and check that " +
            "it is reachable from here and that Cluster:Tls is the same on every node.";
    }

    /// <summary>
    /// An actor system that ends before the job did was shut down under the node, typically because it was downed
    /// (<see cref="Membership.DowningReport"/> says why): the node's run fails with that reason rather than waiting forever.
    /// </summary>
    /// <remarks>
    /// Akka.Remote (1.5.52 and later) shuts a node down when its own outbound TLS handshake fails. If this node refused the
    /// peer's certificate (<see cref="ClusterCertificates.AkkaPeersRefused"/>), the peer is a node of another cluster, not a
    /// crash: the run fails with <see cref="NodeRefusedException"/> (exit code 2). If it refused none, the peer closed the
    /// connection mid-handshake, typically a parameter-server node shutting down or being replaced: the run fails with
    /// <see cref="Actors.NodeDownedException"/> (a worker's exit code 4, a lost worker to restart), unless this node never
    /// joined the cluster: then what answered at the seed's address is most likely no DistTrain node's Cluster:Port (a
    /// data-plane or metrics port), and the run fails with <see cref="NodeRefusedException"/> naming Cluster:SeedNodes
    /// (exit code 2), as restarting would fail the same way. The refusals are counted
    /// over the process, not per peer: one earlier refusal of any peer (a stray node of another cluster) makes a later
    /// closed connection a refusal too, as before the count existed. A node whose own certificate has expired since
    /// start-up is refused (exit code 2), whatever it refused. If this node's side had already been downed, the run fails
    /// with the downing's reason instead.
    /// </remarks>
    private static void FailWhenTerminated<T>(ActorSystem system, ClusterSecurity security, IReadOnlyList<string> seedNodes, TaskCompletionSource<T> completion)
    {
        var certificates = security.Certificates;
        // Whether this node ever became a member (Up): one that never did has a seed to blame, not a peer that went away.
        var joined = false;
        Akka.Cluster.Cluster.Get(system).RegisterOnMemberUp(() => Volatile.Write(ref joined, true));
        system.WhenTerminated.ContinueWith(_ =>
        {
            // A TLS handshake that fails after this node was downed (a downed peer closing mid-handshake) is the downing's
            // consequence, not a certificate problem: the downing is the reason given.
            if (CoordinatedShutdown.Get(system).ShutdownReason is { } reason && reason.GetType().Name == "TlsHandshakeFailureReason"
                && Membership.DowningReport.Get(system).Reason is null)
            {
                // This node's own certificate may have expired since start-up: the peers refuse it, and this node refuses nothing.
                if (certificates?.Refusal(certificates.Certificate) is { } ownRefusal)
                {
                    completion.TrySetException(new NodeRefusedException($"{reason}, and Akka.Remote stops a node whose outbound TLS handshake fails: " +
                        $"this node's own certificate is refused now: {ownRefusal}. Make a new one (deploy/certs/make-certs.sh) and restart the node."));
                    return;
                }
                if (certificates is { AkkaPeersRefused: 0 } && !Volatile.Read(ref joined))
                {
                    // Something answered at the seed's address but closed the TLS handshake: a node of another cluster (its
                    // check refused this node's certificate first), no DistTrain node's Akka.Remote port (a data-plane or metrics
                    // port, another program), or a parameter server stopping. Not a lost worker: it was never in the job.
                    var seeds = string.Join(", ", seedNodes.Select(security.SeedAddress));
                    completion.TrySetException(new NodeRefusedException($"{reason}: this node never joined the cluster, and the peer at the " +
                        $"address it dialled (Cluster:SeedNodes: {seeds}) closed the TLS handshake. Either that peer does not trust this node's " +
                        "certificate (the two nodes do not trust each other's certificates: each node needs a certificate signed by the cluster's " +
                        "CA, and that CA as Cluster:CertificateAuthorityFile; deploy/certs/make-certs.sh), or it is no DistTrain node's Cluster:Port " +
                        "(a parameter server's Cluster:DataPort or Metrics:Port, or another program: check Cluster:SeedNodes, each entry the host " +
                        "and Cluster:Port of a parameter-server node), or it was a parameter-server node stopping at that moment: start this node " +
                        "again. If all of that is right, check that both nodes' clocks agree and that their certificates are within their " +
                        "validity dates (openssl x509 -noout -dates -in FILE)."));
                    return;
                }
                completion.TrySetException(certificates is { AkkaPeersRefused: 0 }
                    ? new Actors.NodeDownedException($"{reason}: the peer closed the connection mid-handshake, and Akka.Remote stops a node whose " +
                        "outbound TLS handshake fails. This node refused no certificate, so the peer most likely shut down (a parameter-server node " +
                        "stopping or being replaced) or is not a DistTrain node. Restart this node to rejoin; if it fails the same way again, check " +
                        "that both nodes' clocks agree and that their certificates are within their validity dates (openssl x509 -noout -dates -in FILE).")
                    : new NodeRefusedException($"{reason}, and Akka.Remote stops a node whose outbound TLS handshake fails: this node and that peer " +
                        "do not trust each other's certificates (the warning above names the certificate). Each node needs a certificate signed by the " +
                        "cluster's CA, and that CA as Cluster:CertificateAuthorityFile (deploy/certs/make-certs.sh)."));
                return;
            }
            var report = Membership.DowningReport.Get(system);
            // A node that learns from gossip that it was downed shuts down before any event reaches its downing actor.
            var downed = report.Reason ?? (CoordinatedShutdown.Get(system).ShutdownReason is CoordinatedShutdown.ClusterDowningReason
                ? report.ReasonIfDowned ?? "another member downed this node"
                : null);
            completion.TrySetException(downed is not null
                ? new Actors.NodeDownedException($"This node left the cluster before the job ended: {downed}. See the log above; restart the node to rejoin.")
                : new InvalidOperationException("This node's actor system stopped before the job ended (see the log above); restart the node to rejoin."));
        }, TaskScheduler.Default);
    }

    /// <summary>
    /// Starts a node's host. PortProbe checked Cluster:Port at start-up, but another process can take it in the moment
    /// before Akka.Remote binds it (a node started at the same moment on the same port passes the check too; with
    /// <see cref="AkkaSettings.ExclusivePort"/> only one of them can bind); Akka.Remote's bind failure (a <see cref="System.Net.Sockets.SocketException"/> under
    /// nested <see cref="AggregateException"/>s) is then the <see cref="PortInUseException"/> the probe would have thrown,
    /// one line naming the key and the port, not a fault of DistTrain's.
    /// </summary>
    /// <exception cref="PortInUseException">Akka.Remote could not bind Cluster:Port because another socket holds it.</exception>
    /// <exception cref="AddressNotLocalException">Akka.Remote could not bind Cluster:Hostname: it is not an address of this machine.</exception>
    private static async Task StartAsync(IHost host, Core.Configuration.ClusterOptions cluster, CancellationToken cancellationToken)
    {
        try
        {
            await host.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (AddressInUse(e) is { } taken)
        {
            throw new PortInUseException("Cluster:Port", cluster.Port, taken);
        }
        catch (Exception e) when (AddressNotLocal(e) is { } elsewhere)
        {
            // Cluster:Port 0 skips the start-up check, so a Cluster:Hostname of another machine first fails here.
            throw new AddressNotLocalException("Cluster:Hostname", cluster.Hostname, PortProbe.BindAddress(cluster.Hostname), elsewhere);
        }
    }

    /// <summary>
    /// The "cannot assign requested address" <see cref="System.Net.Sockets.SocketException"/> (EADDRNOTAVAIL: the address to
    /// bind is not this machine's) among <paramref name="exception"/>'s inner exceptions, as <see cref="AddressInUse"/> finds
    /// a taken port; null when there is none.
    /// </summary>
    /// <param name="exception">The failure to search, itself included.</param>
    internal static System.Net.Sockets.SocketException? AddressNotLocal(Exception? exception) => exception switch
    {
        System.Net.Sockets.SocketException { SocketErrorCode: System.Net.Sockets.SocketError.AddressNotAvailable } socket => socket,
        AggregateException aggregate => aggregate.InnerExceptions.Select(AddressNotLocal).FirstOrDefault(found => found is not null),
        null => null,
        _ => AddressNotLocal(exception.InnerException),
    };

    /// <summary>
    /// The "address already in use" <see cref="System.Net.Sockets.SocketException"/> among <paramref name="exception"/>'s
    /// inner exceptions (every one of each <see cref="AggregateException"/>, at any depth), or null when there is none.
    /// </summary>
    /// <param name="exception">The failure to search, itself included.</param>
    internal static System.Net.Sockets.SocketException? AddressInUse(Exception? exception) => exception switch
    {
        System.Net.Sockets.SocketException { SocketErrorCode: System.Net.Sockets.SocketError.AddressAlreadyInUse } socket => socket,
        AggregateException aggregate => aggregate.InnerExceptions.Select(AddressInUse).FirstOrDefault(found => found is not null),
        null => null,
        _ => AddressInUse(exception.InnerException),
    };

    private static IHost BuildHost(TrainingOptions options, ClusterSecurity security, string role, int computeThreads, Action<ActorSystem, IActorRegistry> start)
    {
        var builder = new HostBuilder();
        // NodeHostedService: a failed start is its exception alone (StartAsync names a taken port in one line), without
        // Akka.Hosting's copy of it, stack traces included, on standard output.
        builder.ConfigureServices(services => services.AddAkka<NodeHostedService>("disttrain", (akka, _) =>
            akka.WithDistTrainNode(options, security, role, computeThreads).WithActors((system, registry) =>
            {
                Metrics.DistTrainMetrics.WatchCluster(Akka.Cluster.Cluster.Get(system));
                system.EventStream.Subscribe(system.ActorOf(Props.Create(() => new Metrics.DeadLetterCounter()), "dead-letter-counter"), typeof(Akka.Event.DeadLetter));
                start(system, registry);
            })));
        return builder.Build();
    }
}

/// <summary>
/// This parameter-server node left the job to a standby parameter server instead of ending it, which takes it over from the
/// newest checkpoint in Checkpoint:Directory: the node trained the job to its end but could not write its outputs (the weights
/// and summary; the standby scores the trained weights and writes them on its own node), or its run on shard nodes lost a shard
/// node (the standby places the shards anew). A failure of this node, not of the job; the message names what failed and the standby.
/// </summary>
/// <param name="message">What failed, and which node goes on.</param>
/// <param name="cause">The error of the write, or the run's <see cref="Actors.ShardNodesException"/>.</param>
public sealed class JobHandedOverException(string message, Exception cause) : Exception(message, cause);

/// <summary>
/// This parameter-server node stood by until the job ended on another one (the active parameter server). Not a
/// failure: <see cref="Finished"/> says how the job ended; the results are on the node that finished it.
/// </summary>
/// <param name="finished">The end of the job as the active parameter server reported it.</param>
public sealed class JobFinishedOnAnotherNodeException(JobFinished finished)
    : Exception($"The job ended on another parameter-server node: {finished.Summary}")
{
    /// <summary>The end of the job as the active parameter server reported it.</summary>
    public JobFinished Finished { get; } = finished;
}
