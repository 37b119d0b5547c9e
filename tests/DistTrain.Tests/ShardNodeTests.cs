using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Akka.Actor;
using Akka.Hosting;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Security;
using DistTrain.Core.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace DistTrain.Tests;

/// <summary>
/// The shard node (<c>disttrain node --role parameter-shard</c>, <see cref="ClusterNode.RunShardHostAsync"/>): it joins the
/// cluster through the parameter server, hosts a shard for a coordinator on a parameter-server member, and ends with the job
/// only when a parameter-server member reports the end.
/// </summary>
public sealed class ShardNodeTests : IDisposable
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(90); // a hang guard on a loaded machine, not a speed limit

    private readonly List<IHost> _hosts = [];
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-shard-node-").FullName;

    public void Dispose()
    {
        foreach (var host in _hosts)
        {
            host.StopAsync().Wait(Guard);
            host.Dispose();
        }
        Directory.Delete(_directory, recursive: true);
    }

    private static readonly JobIdentity Identity = new("shard-node", Encoding.UTF8.GetBytes(new string('s', 64)));

    private static TrainingOptions Options(string seed, int port, int dataPort) => new()
    {
        Model = ParameterShardActorTests.Model,
        Optimizer = ParameterShardActorTests.Sgd(),
        Training = { Epochs = 2, Seed = 7 },
        Cluster = { Hostname = "127.0.0.1", PublicHostname = "127.0.0.1", Port = port, DataPort = dataPort, Tls = false, SeedNodes = [seed], JoinTimeoutSeconds = 60 },
    };

    /// <summary>
    /// Cluster:ShardNodes is refused by a parameter-server node with another mode than Sync, naming the settings and the fix (single-node
    /// train, which does not use it, takes the config); synchronous training is
    /// valid, with checkpoints at epoch ends and within epochs (Checkpoint:EverySteps) alike, and with every Cluster:Compression.
    /// </summary>
    [Fact]
    public void Shard_nodes_are_refused_with_another_mode_naming_the_fix_and_take_every_compression()
    {
        var options = Options("akka.tcp://disttrain@127.0.0.1:4053", 4053, 4054);
        options.Cluster.ShardNodes = true;
        options.Cluster.ParameterServerShards = 2;
        Assert.DoesNotContain(TrainingOptionsValidator.Validate(options, checkDataDirectory: false), p => p.Contains("ShardNodes", StringComparison.Ordinal));
        options.Checkpoint.Directory = "checkpoints"; // a checkpoint at each epoch's end is written
        options.Checkpoint.EverySteps = 100; // and within epochs
        Assert.DoesNotContain(TrainingOptionsValidator.Validate(options, checkDataDirectory: false), p => p.Contains("ShardNodes", StringComparison.Ordinal)
            || p.Contains("EverySteps", StringComparison.Ordinal));
        foreach (var compression in Enum.GetValues<Core.Compression.GradientCompression>())
        {
            options.Cluster.Compression = compression;
            Assert.DoesNotContain(TrainingOptionsValidator.Validate(options, checkDataDirectory: false), p => p.Contains("ShardNodes", StringComparison.Ordinal));
        }
        Assert.Empty(TrainingOptionsValidator.ParameterServerNodeProblems(options));
        options.Training.Mode = TrainingMode.LocalSgd;
        // Single-node train does not use Cluster:ShardNodes (it warns so), so the config is valid; a parameter-server node refuses it.
        Assert.DoesNotContain(TrainingOptionsValidator.Validate(options, checkDataDirectory: false), p => p.Contains("ShardNodes", StringComparison.Ordinal));
        Assert.Equal([
            "Cluster:ShardNodes = true takes synchronous training only, and Training:Mode is LocalSgd: set Training:Mode to Sync, or Cluster:ShardNodes " +
            "to false (the shards then run in the parameter server's process, in every mode).",
        ], TrainingOptionsValidator.ParameterServerNodeProblems(options));
        options.Cluster.ShardNodes = false;
        Assert.Empty(TrainingOptionsValidator.ParameterServerNodeProblems(options));
    }

    /// <summary>
    /// A shard node's settings as the CLI builds them: under Cluster:Compression TopK with momentum correction, L2 and a clip
    /// norm, the shard steps with the parameter server's share of the optimizer (no momentum, L2 or clipping: the workers apply
    /// them before encoding) and reports the configured penalties; its data plane takes the run's encoding. Without
    /// compression the shard steps with the optimizer as configured and takes float32 slices.
    /// </summary>
    [Fact]
    public void A_shard_node_steps_with_the_parameter_servers_share_of_the_optimizer_and_takes_the_runs_encoding()
    {
        var security = new ClusterSecurity(Identity, null);
        var options = Options("akka.tcp://disttrain@127.0.0.1:4053", 0, 0);
        options.Optimizer.Momentum = 0.9;
        options.Optimizer.L2 = 1e-3;
        options.Optimizer.GradientClipNorm = 5;
        var plain = ClusterNode.ShardHostSettingsOf(options, security);
        Assert.Null(plain.Compression);
        Assert.Equal((0.9, 1e-3, 5.0), (plain.ServerOptimizer!.Momentum, plain.ServerOptimizer.L2, plain.ServerOptimizer.GradientClipNorm));

        options.Cluster.Compression = Core.Compression.GradientCompression.TopK;
        var topK = ClusterNode.ShardHostSettingsOf(options, security);
        Assert.Equal(new Core.Compression.GradientCompressionSettings(Core.Compression.GradientCompression.TopK, 0.01, ErrorFeedback: true, Momentum: 0.9),
            topK.Compression);
        Assert.Equal((0.0, 0.0, 0.0), (topK.ServerOptimizer!.Momentum, topK.ServerOptimizer.L2, topK.ServerOptimizer.GradientClipNorm));
        Assert.Equal((0.9, 1e-3, 5.0), (topK.Optimizer.Momentum, topK.Optimizer.L2, topK.Optimizer.GradientClipNorm)); // the penalties reported
        // The data plane's cuts: TopK, at most 1% of the trainable values (rounded up) in all.
        var trainable = topK.StartingWeights.Layout.TrainableLength;
        Assert.Equal(new CompressedSlices(Core.Compression.GradientCompression.TopK, (trainable + 99) / 100), CompressedSlices.Of(topK.Compression, topK.StartingWeights.Layout));
    }

    /// <summary>
    /// A receive on <paramref name="inbox"/> that throws <see cref="TimeoutException"/> when nothing comes within
    /// <paramref name="timeout"/>. Akka's own time-out of <see cref="Inbox.ReceiveAsync(TimeSpan)"/> did not always fire: once in a
    /// full suite run it never completed, and the test, with the suite, hung until stopped 25 minutes later. So the wait is
    /// bounded here too, 5 s after the inbox's own.
    /// </summary>
    private static Task<object> NothingWithin(Inbox inbox, TimeSpan timeout) => inbox.ReceiveAsync(timeout).WaitAsync(timeout + TimeSpan.FromSeconds(5));

    /// <summary>A node of <paramref name="role"/> built as the CLI builds it (<see cref="ClusterNode.WithDistTrainNode"/>), started.</summary>
    private async Task<ActorSystem> StartNodeAsync(TrainingOptions options, string role)
    {
        var host = new HostBuilder()
            .ConfigureServices(services => services.AddAkka("disttrain", (akka, _) =>
                akka.WithDistTrainNode(options, new ClusterSecurity(Identity, null), role, computeThreads: 1)))
            .Build();
        _hosts.Add(host);
        await host.StartAsync().WaitAsync(Guard);
        return host.Services.GetRequiredService<ActorSystem>();
    }

    private static async Task<Akka.Cluster.Member> UpMemberAsync(ActorSystem system, string role)
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var deadline = DateTime.UtcNow + Guard;
        while (DateTime.UtcNow < deadline)
        {
            if (cluster.State.Members.FirstOrDefault(m => m.HasRole(role) && m.Status == Akka.Cluster.MemberStatus.Up) is { } member) return member;
            await Task.Delay(100);
        }
        throw new TimeoutException($"no {role} member was up within {Guard.TotalSeconds} s");
    }

    /// <summary>
    /// A shard node joins a parameter server's cluster, hosts shard 0 of 2 for an owner on the parameter-server member (the
    /// answer is genuine, on the configured data port, which then accepts connections), ignores a report of the job's end from a
    /// worker member, and ends with the report from the parameter-server member, whose summary its run returns; as it stops,
    /// the owner is told, signed, that the shard node is stopping (before it leaves the cluster).
    /// </summary>
    [Fact]
    public async Task A_shard_node_hosts_a_shard_for_its_parameter_server_and_ends_with_the_job() =>
        await WithAParameterServerAndAShardNodeAsync(async up =>
        {
            var (ps, psOptions, seed, dataPort, member, host, run) = up;
            var owner = Inbox.Create(ps);
            byte[][] tokens = [RandomNumberGenerator.GetBytes(32), RandomNumberGenerator.GetBytes(32)];
            var starting = ClusterNode.ShardHostSettingsOf(psOptions, new ClusterSecurity(Identity, null)).StartingWeights; // the parameter server's own
            var request = ShardHost.Request(Identity, ps, owner.Receiver, host, "job-1", 0, 2, tokens, starting, ModelFingerprint.ServerSettingsOf(psOptions));
            owner.Send(host, request);
            var hosted = Assert.IsType<ShardHosted>(await owner.ReceiveAsync(Guard));
            Assert.True(ShardHost.IsGenuine(Identity, ps, owner.Receiver, request, hosted));
            Assert.Equal(("127.0.0.1", dataPort), (hosted.DataHost, hosted.DataPort));
            Assert.Equal(member.Address, hosted.ShardActor.Path.Address);
            using (var client = new TcpClient())
                await client.ConnectAsync("127.0.0.1", dataPort).WaitAsync(Guard); // the shard's data plane listens

            // A worker member's report of the job's end is ignored: its refusal, sent after it on the same link, comes back
            // while the shard node's run goes on.
            var workerOptions = Options(seed, 0, 0);
            var worker = await StartNodeAsync(workerOptions, NodeRoles.Worker);
            var stranger = Inbox.Create(worker);
            var strangerHost = await worker.ActorSelection(new RootActorPath(member.Address) / "user" / ShardHost.Name).ResolveOne(Guard);
            stranger.Send(strangerHost, new JobFinished(true, "not from the parameter server"));
            var other = new JobIdentity("shard-node", Encoding.UTF8.GetBytes(new string('x', 64)));
            stranger.Send(strangerHost, ShardHost.Request(other, worker, stranger.Receiver, strangerHost, "job-2", 1, 2, tokens, starting,
                ModelFingerprint.ServerSettingsOf(psOptions)));
            Assert.Contains("not signed with this node's job secret", Assert.IsType<ShardHostRefused>(await stranger.ReceiveAsync(Guard)).Reason);

            owner.Send(host, new JobFinished(true, "test accuracy 81.25% after 2 epochs"));
            var finished = await run.WaitAsync(Guard);
            Assert.Equal(new JobFinished(true, "test accuracy 81.25% after 2 epochs"), finished); // not the worker member's report
            var failed = Assert.IsType<ShardFailed>(await owner.ReceiveAsync(Guard));
            Assert.True(ShardHost.IsGenuine(Identity, request, failed));
            Assert.Equal("the shard node is stopping", failed.Reason);
        });

    /// <summary>A parameter-server node and a shard node (<see cref="ClusterNode.RunShardHostAsync"/>, its run) of one cluster, each
    /// in an actor system of this process, with the shard node up and its <see cref="ShardHost"/> found.</summary>
    private sealed record ShardNodeUp(ActorSystem Ps, TrainingOptions PsOptions, string Seed, int DataPort, Akka.Cluster.Member Member, IActorRef Host,
        Task<JobFinished> Run);

    /// <summary>Starts a parameter-server node and a shard node with its data plane on a free port, runs <paramref name="body"/> once
    /// the shard node is up, and stops the shard node's run afterwards.</summary>
    private async Task WithAParameterServerAndAShardNodeAsync(Func<ShardNodeUp, Task> body)
    {
        var ports = TestPorts.Free(2);
        var seed = $"akka.tcp://disttrain@127.0.0.1:{ports[0]}";
        var psOptions = Options(seed, ports[0], 0);
        var ps = await StartNodeAsync(psOptions, NodeRoles.ParameterServer);
        var shardOptions = Options(seed, 0, ports[1]);
        var security = new ClusterSecurity(Identity, null);
        using var stop = new CancellationTokenSource();
        var run = ClusterNode.RunShardHostAsync(ClusterNode.ShardHostSettingsOf(shardOptions, security), shardOptions, security, stop.Token);
        try
        {
            var member = await UpMemberAsync(ps, NodeRoles.ParameterShard);
            var host = await ps.ActorSelection(new RootActorPath(member.Address) / "user" / ShardHost.Name).ResolveOne(Guard);
            await body(new ShardNodeUp(ps, psOptions, seed, ports[1], member, host, run));
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAny(run, Task.Delay(Guard));
        }
    }

    /// <summary>
    /// A shard node's metrics: while it hosts a shard, the shard's actor has a mailbox-depth series with role
    /// <c>parameter-shard</c> and counts the messages it handles under that role; a shard that fails (here on a piece of a checkpoint
    /// that is not its own) counts as a failure of that role, and its mailbox series goes with it. Without them a shard node
    /// exported none of its shard's actor series.
    /// </summary>
    [Fact]
    public async Task A_shard_nodes_shard_has_actor_metrics_and_its_failure_counts_under_its_role() =>
        await WithAParameterServerAndAShardNodeAsync(async up =>
        {
            var (ps, psOptions, host) = (up.Ps, up.PsOptions, up.Host);
            var owner = Inbox.Create(ps);
            byte[][] tokens = [RandomNumberGenerator.GetBytes(32)];
            var starting = ClusterNode.ShardHostSettingsOf(psOptions, new ClusterSecurity(Identity, null)).StartingWeights;
            var request = ShardHost.Request(Identity, ps, owner.Receiver, host, "job-1", 0, 2, tokens, starting, ModelFingerprint.ServerSettingsOf(psOptions));
            owner.Send(host, request);
            var hosted = Assert.IsType<ShardHosted>(await owner.ReceiveAsync(Guard));
            var shardPath = hosted.ShardActor.Path.ToStringWithoutAddress();
            var (mailboxes, failuresBefore) = ShardActorMeasurements();
            Assert.Contains(mailboxes, path => path.EndsWith(shardPath, StringComparison.Ordinal));

            // Two requests for its weights from an actor that is not the run's owner: handled (refused with a warning), and counted.
            var messages = 0L;
            using (var listener = new System.Diagnostics.Metrics.MeterListener())
            {
                listener.InstrumentPublished = (instrument, l) =>
                {
                    if (instrument.Meter.Name == DistTrain.Cluster.Metrics.DistTrainMetrics.Meter.Name && instrument.Name == "actor.messages")
                        l.EnableMeasurementEvents(instrument);
                };
                listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
                {
                    foreach (var tag in tags)
                        if (tag.Key == "role" && tag.Value as string == NodeRoles.ParameterShard) Interlocked.Add(ref messages, value);
                });
                listener.Start();
                var stranger = Inbox.Create(ps);
                for (var i = 0; i < 2; i++) stranger.Send(hosted.ShardActor, new ShardSliceRequest(i));
                var counted = Task.Run(async () =>
                {
                    while (Interlocked.Read(ref messages) < 2) await Task.Delay(20);
                });
                await counted.WaitAsync(Guard);
            }

            // A piece of shard 1's checkpoint to shard 0: the shard stops on it, and its host tells the owner.
            owner.Send(hosted.ShardActor, new ShardSliceChunk(0, 1, 3, 0, 10, new float[10]));
            var failed = Assert.IsType<ShardFailed>(await owner.ReceiveAsync(Guard));
            Assert.Contains("cannot be taken: it is shard 1's", failed.Reason);
            var (after, failuresAfter) = ShardActorMeasurements();
            Assert.True(failuresAfter >= failuresBefore + 1, $"parameter-shard failures {failuresBefore} before, {failuresAfter} after");
            Assert.DoesNotContain(after, path => path.EndsWith(shardPath, StringComparison.Ordinal));
        });

    /// <summary>What this process's meter reports of role <c>parameter-shard</c> now: the actors with a mailbox-depth series,
    /// and the failures (summed over nodes).</summary>
    private static (List<string> Mailboxes, long Failures) ShardActorMeasurements()
    {
        var (mailboxes, failures) = (new List<string>(), 0L);
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == DistTrain.Cluster.Metrics.DistTrainMetrics.Meter.Name
                && instrument.Name is "actor.mailbox.depth" or "actor.failures")
                l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            string? role = null, actor = null;
            foreach (var tag in tags)
                if (tag.Key == "role") role = tag.Value as string;
                else if (tag.Key == "actor") actor = tag.Value as string;
            if (role != NodeRoles.ParameterShard) return;
            if (instrument.Name == "actor.failures") failures += value;
            else mailboxes.Add(actor!);
        });
        listener.Start();
        listener.RecordObservableInstruments();
        return (mailboxes, failures);
    }

    /// <summary>
    /// A parameter server that leaves without reporting the job's end (as one stopped with a Checkpoint:Directory and no standby
    /// does) leaves the shard node alone in the cluster: its run fails after Cluster:JoinTimeoutSeconds with a message that says
    /// so, instead of waiting for ever.
    /// </summary>
    [Fact]
    public async Task A_shard_node_whose_parameter_server_leaves_without_the_jobs_end_fails_after_the_join_timeout()
    {
        var ports = TestPorts.Free(2);
        var seed = $"akka.tcp://disttrain@127.0.0.1:{ports[0]}";
        var ps = await StartNodeAsync(Options(seed, ports[0], 0), NodeRoles.ParameterServer);
        var shardOptions = Options(seed, 0, ports[1]);
        var security = new ClusterSecurity(Identity, null);
        using var stop = new CancellationTokenSource();
        // 3 s without a parameter server, as Cluster:JoinTimeoutSeconds = 3 would give, without bounding the join by it too.
        var run = ClusterNode.RunShardHostWithTimeoutAsync(ClusterNode.ShardHostSettingsOf(shardOptions, security), shardOptions, security,
            TimeSpan.FromSeconds(3), stop.Token);
        try
        {
            await UpMemberAsync(ps, NodeRoles.ParameterShard);
            var host = _hosts.Single();
            await host.StopAsync().WaitAsync(Guard); // a graceful leave, with no JobFinished
            var failure = await Assert.ThrowsAsync<TimeoutException>(() => run.WaitAsync(Guard));
            Assert.StartsWith("No parameter-server node has been up and reachable in this cluster for 3 s (Cluster:JoinTimeoutSeconds): the job's " +
                "parameter server left without reporting the job's end", failure.Message);
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAny(run, Task.Delay(Guard));
        }
    }

    /// <summary>Forwards what its child (<paramref name="child"/>) tells it to <paramref name="to"/>: the parent a finder reports to.</summary>
    private sealed class Parent : ReceiveActor
    {
        public Parent(IActorRef to, Props child)
        {
            Context.ActorOf(child, "finder");
            ReceiveAny(message => to.Tell(message));
        }
    }

    /// <summary>Starts one child, reports it to <paramref name="to"/> first, then its failures (the child stops) and what it sends.</summary>
    private sealed class Supervisor : ReceiveActor
    {
        private readonly IActorRef _to;

        public Supervisor(IActorRef to, Props child)
        {
            _to = to;
            to.Tell(Context.ActorOf(child, "child"));
            ReceiveAny(message => to.Tell(message));
        }

        protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(e =>
        {
            _to.Tell(e);
            return Directive.Stop;
        });
    }

    /// <summary>
    /// The parameter server of Cluster:ShardNodes (<see cref="RemoteShardedParameterServer"/>) on a parameter-server node with two
    /// shard nodes up. It places its 2 shards and gives each worker slot (here a probe standing for the worker's link) its signed
    /// endpoints, own token and the starting weights' digest; it answers a weights request with the starting weights gathered
    /// from the shard nodes. A worker lost between parts that leaves Cluster:MinWorkers is left out; one lost during a part is
    /// decided by the part's loss arbiter with the shard nodes, and the coordinator is told which of its minibatches a further part
    /// trains; a loss that leaves fewer than Cluster:MinWorkers with every worker slot taken fails the job after a short grace (no
    /// worker can join it), unless a stop comes within it. With slots free (by default as many more as the run starts with, at
    /// least 8) the same loss fails nothing, and a worker that joins is given the shard nodes, signed for a slot of its own, with
    /// the first part it is in; one beyond the slots fails the job. Each failure names the fix.
    /// </summary>
    [Fact]
    public async Task The_shard_nodes_parameter_server_places_its_shards_tells_each_worker_and_decides_its_lost_workers()
    {
        var ports = TestPorts.Free(3);
        var seed = $"akka.tcp://disttrain@127.0.0.1:{ports[0]}";
        var psOptions = Options(seed, ports[0], 0);
        var ps = await StartNodeAsync(psOptions, NodeRoles.ParameterServer);
        var security = new ClusterSecurity(Identity, null);
        using var stop = new CancellationTokenSource();
        var runs = new List<Task<JobFinished>>();
        var starting = ClusterNode.ShardHostSettingsOf(psOptions, security).StartingWeights;

        // A server for slots workers, placed on the shard nodes: its supervisor, itself, the probe standing for its coordinator
        // (one per server: a receive that timed out on an inbox may swallow the inbox's next message), and those for its workers.
        string[] placedTokens = []; // the last placement's workers' tokens, by slot
        // The shards are placed for workerSlots slots (null: RemoteShardSettings.WorkerSlotsFor(slots)).
        async Task<(IActorRef Supervisor, IActorRef Server, Inbox Owner, Inbox[] Workers)> PlaceAsync(int slots, int minWorkers, int? workerSlots)
        {
            var owner = Inbox.Create(ps);
            Inbox[] workers = [.. Enumerable.Range(0, slots).Select(_ => Inbox.Create(ps))];
            var settings = new RemoteShardSettings(Identity, "job-1", 2, starting, ModelFingerprint.ServerSettingsOf(psOptions),
                [.. workers.Select(w => w.Receiver)], Guard, minWorkers, WorkerSlots: workerSlots);
            var supervisor = ps.ActorOf(Props.Create(() => new Supervisor(owner.Receiver, RemoteShardedParameterServer.Props(settings))));
            var server = Assert.IsAssignableFrom<IActorRef>(await owner.ReceiveAsync(Guard));
            var assigned = new ShardServersAssigned[slots];
            for (var w = 0; w < slots; w++)
            {
                assigned[w] = Assert.IsType<ShardServersAssigned>(await workers[w].ReceiveAsync(Guard));
                Assert.True(assigned[w].IsGenuine(Identity));
                Assert.Equal(("job-1", w), (assigned[w].JobId, assigned[w].WorkerIndex));
                Assert.Equal(ports[1..].Order(), assigned[w].Ports.Order()); // shard k on the k-th node to join: either order
                Assert.Equal(ShardServersAssigned.DigestOf(starting), assigned[w].StartingDigest);
            }
            Assert.Equal(slots, assigned.Select(a => Convert.ToHexString(a.Token)).Distinct().Count());
            placedTokens = [.. assigned.Select(a => Convert.ToHexString(a.Token))];
            return (supervisor, server, owner, workers);
        }

        // Once a server is gone its shard nodes release their shards: their data ports close.
        async Task ReleasedAsync()
        {
            var deadline = DateTime.UtcNow + Guard;
            foreach (var port in ports[1..])
                while (true)
                {
                    using var client = new TcpClient();
                    try
                    {
                        await client.ConnectAsync("127.0.0.1", port).WaitAsync(Guard);
                    }
                    catch (SocketException)
                    {
                        break;
                    }
                    Assert.True(DateTime.UtcNow < deadline, $"the shard node's data port {port} stayed open");
                    await Task.Delay(100);
                }
        }

        try
        {
            foreach (var dataPort in ports[1..])
            {
                var options = Options(seed, 0, dataPort);
                runs.Add(ClusterNode.RunShardHostAsync(ClusterNode.ShardHostSettingsOf(options, security), options, security, stop.Token));
            }

            // 3 slots, Cluster:MinWorkers 2: a worker lost between parts is left out, and the server goes on (it answers).
            var (supervisor, server, owner, workers) = await PlaceAsync(3, minWorkers: 2, workerSlots: 3);
            owner.Send(server, new WorkerLost(0));
            owner.Send(server, GetWeights.Instance);
            var snapshot = Assert.IsType<WeightsSnapshot>(await owner.ReceiveAsync(Guard));
            Assert.Equal(0, snapshot.Version);
            Assert.Equal(starting.Values, snapshot.Weights);
            // One lost during a part that leaves fewer than Cluster:MinWorkers, then a stop within the grace: the loss is the stop's,
            // nothing fails.
            owner.Send(server, new StartEpoch(1, [ActorRefs.Nobody, workers[1].Receiver, workers[2].Receiver], [0, 3, 3]));
            owner.Send(server, new WorkerLost(1));
            owner.Send(server, StopStepping.Instance);
            await Assert.ThrowsAsync<TimeoutException>(() => NothingWithin(owner, RemoteShardedParameterServer.LossGrace * 2));
            ps.Stop(supervisor);
            await ReleasedAsync();

            // One lost during a part, before any slice of round 0 came: the part's arbiter asks both shard nodes, the round goes on
            // without it, and the coordinator learns that its minibatches from round 0 on are left for a further part of the epoch,
            // and (Training:KeepGlobalBatch) that the other worker's are too from round 1, as one parameter server would cut the part.
            (supervisor, server, owner, workers) = await PlaceAsync(2, minWorkers: 1, workerSlots: 2);
            owner.Send(server, new StartEpoch(1, [workers[0].Receiver, workers[1].Receiver], [3, 3], KeepGlobalBatch: true));
            owner.Send(server, new WorkerLost(1));
            Assert.Equal(new WorkerRemoved(1, 0, OthersCutFrom: 1), await owner.ReceiveAsync(Guard));
            // The other one lost too leaves fewer than Cluster:MinWorkers = 1, with both slots taken: the job fails after the grace.
            owner.Send(server, new WorkerLost(0));
            var lost = Assert.IsType<ShardNodesException>(await owner.ReceiveAsync(Guard));
            Assert.StartsWith("Worker 0 was lost, leaving 0 workers of the Cluster:MinWorkers = 1 the job needs, and every one of the 2 worker slots the " +
                "shards were placed for is taken, so no worker can join this job: restart the job (it starts from the beginning: this run writes no " +
                "checkpoints; with Checkpoint:Directory set, a run can be resumed). Or set Cluster:ShardNodes to false", lost.Message);
            await ReleasedAsync();

            // One lost between parts that leaves fewer than Cluster:MinWorkers, with both slots taken: the job fails.
            (_, server, owner, _) = await PlaceAsync(2, minWorkers: 2, workerSlots: 2);
            owner.Send(server, new WorkerLost(0));
            var tooFew = Assert.IsType<ShardNodesException>(await owner.ReceiveAsync(Guard));
            Assert.StartsWith("Worker 0 was lost, leaving 1 worker of the Cluster:MinWorkers = 2 the job needs, and every one of the 2 worker slots",
                tooFew.Message);
            await ReleasedAsync();

            // The same loss with the default slots (2 + 8) fails nothing: the server answers. A worker that joins (slot 2, the next
            // index the job host gives) is given the shard nodes with its first part, signed for its own slot with a token of its own.
            Assert.Equal(10, RemoteShardSettings.WorkerSlotsFor(2));
            (supervisor, server, owner, workers) = await PlaceAsync(2, minWorkers: 2, workerSlots: null);
            owner.Send(server, new WorkerLost(0));
            // A failure would come after the loss's grace (3 s), before the answer to a request sent 4 s after the loss. (Not a receive
            // that times out: it may swallow the inbox's next message.)
            await Task.Delay(RemoteShardedParameterServer.LossGrace * 2);
            owner.Send(server, GetWeights.Instance);
            Assert.Equal(starting.Values, Assert.IsType<WeightsSnapshot>(await owner.ReceiveAsync(Guard)).Weights);
            var joiner = Inbox.Create(ps);
            owner.Send(server, new StartEpoch(1, [ActorRefs.Nobody, workers[1].Receiver, joiner.Receiver], [0, 3, 3]));
            var joined = Assert.IsType<ShardServersAssigned>(await joiner.ReceiveAsync(Guard));
            Assert.True(joined.IsGenuine(Identity));
            Assert.Equal(("job-1", 2), (joined.JobId, joined.WorkerIndex));
            Assert.Equal(ports[1..].Order(), joined.Ports.Order());
            Assert.Equal(ShardServersAssigned.DigestOf(starting), joined.StartingDigest);
            Assert.DoesNotContain(Convert.ToHexString(joined.Token), placedTokens);
            // Only the joining worker is told: the one that has its shard nodes already gets nothing more.
            await Assert.ThrowsAsync<TimeoutException>(() => NothingWithin(workers[1], TimeSpan.FromMilliseconds(500)));
            // A worker lost that is not in the running part (slot 3, say one that joined and was lost before its first part) has
            // nothing pending at the shards: no question to them, no WorkerRemoved; the server answers as before.
            owner.Send(server, new WorkerLost(3));
            await Task.Delay(TimeSpan.FromSeconds(1));
            owner.Send(server, GetWeights.Instance);
            Assert.IsType<WeightsSnapshot>(await owner.ReceiveAsync(Guard));
            // A worker beyond the 10 slots would get no shard nodes: the job fails, naming the fix.
            Inbox[] many = [.. Enumerable.Range(0, 11).Select(_ => Inbox.Create(ps))];
            owner.Send(server, new StartEpoch(2, [.. many.Select(w => w.Receiver)], [.. Enumerable.Repeat(1, 11)]));
            var beyond = Assert.IsType<ShardNodesException>(await owner.ReceiveAsync(Guard));
            Assert.StartsWith("Worker 10 joined the running job, and the shards were placed for 10 worker slots (0 to 9): its worker would get no shard " +
                "nodes.", beyond.Message);
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAny(Task.WhenAll(runs), Task.Delay(Guard));
        }
    }

    /// <summary>
    /// A shard node that never answers a lost worker's question (here a host that places its shard, signed as a shard host
    /// signs, and a shard that takes every message and answers none) would hold the part's end for ever: the decision times
    /// out after <see cref="RemoteShardSettings.Timeout"/>, and after the loss grace the job fails, naming the worker, the
    /// epoch, the time-out and what to check. The real shard node's answer alone decides nothing.
    /// </summary>
    [Fact]
    public async Task A_lost_workers_decision_that_a_silent_shard_node_never_answers_fails_the_job_after_the_time_out_naming_the_worker()
    {
        var timeout = TimeSpan.FromSeconds(5);
        await WithARealAndAFakeShardNodeAsync((_, _) => Props.Create(() => new SilentShardHost(Identity, null, null)), timeout, async placed =>
        {
            var (server, owner, workers) = (placed.Server, placed.Owner, placed.Workers);
            owner.Send(server, new StartEpoch(1, [workers[0].Receiver, workers[1].Receiver], [3, 3]));
            var lostAt = DateTime.UtcNow;
            owner.Send(server, new WorkerLost(1));
            var failure = Assert.IsType<ShardNodesException>(await owner.ReceiveAsync(Guard));
            Assert.True(DateTime.UtcNow - lostAt >= timeout, $"the job failed {(DateTime.UtcNow - lostAt).TotalSeconds:F1} s after the loss, before the time-out");
            Assert.Equal("Worker 1 was lost in epoch 1, and the shard nodes did not all answer the question which of its slices count within 5 s (the " +
                "smaller of Cluster:JoinTimeoutSeconds and a third of Training:StallTimeoutSeconds): a shard node is overloaded, cut off, or missed the " +
                "part's start (its log says so). Restart the job.", failure.Message);
        });
    }

    /// <summary>
    /// A shard lost (here the fake shard node's shard actor stops; the server watches it): after the loss's grace the job fails,
    /// naming the shard and its node, and saying how to go on: this run writes no checkpoints, so from the start. The advice's
    /// other cases: from the newest checkpoint (a resumed run's until it writes one), or none written yet.
    /// </summary>
    [Fact]
    public async Task A_lost_shard_fails_the_job_naming_it_and_how_to_go_on()
    {
        await WithARealAndAFakeShardNodeAsync((_, _) => Props.Create(() => new SilentShardHost(Identity, null, null)), Guard, async placed =>
        {
            placed.FakeNode.ActorSelection($"/user/{ShardHost.Name}/silent-shard").Tell(PoisonPill.Instance);
            var failure = Assert.IsType<ShardNodesException>(await placed.Owner.ReceiveAsync(Guard));
            Assert.Matches(new Regex(@"^Shard [01] of 2 is gone: its shard node akka\.tcp://disttrain@127\.0\.0\.1:\d+ left, crashed or was downed\. A run " +
                @"whose shards run on shard nodes cannot go on without one \(a shard holds its slice of the weights and optimizer state\); restart the " +
                @"job \(it starts from the beginning: this run writes no checkpoints; with Checkpoint:Directory set, a run can be resumed\)\.$"), failure.Message);
        });
        Assert.Equal("start it again with Checkpoint:Resume = true and 2 shard nodes up: it resumes from the checkpoint of epoch 3's end in " +
            "Checkpoint:Directory.", RemoteShardedParameterServer.RestartAdviceFor(true, "epoch 3's end", 2));
        Assert.Equal("restart the job (it starts from the beginning: no checkpoint was written yet).",
            RemoteShardedParameterServer.RestartAdviceFor(true, null, 2));
    }

    /// <summary>
    /// A worker's report that its connection to a shard closed (<see cref="WorkerFailed.LostShard"/>, which the coordinator
    /// forwards): the job fails at once (the job host held the report already) with that shard's loss, naming the shard, its node
    /// and how to go on, not as a worker's failure; a shard index out of range fails it with the worker's reason as it is.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task A_workers_lost_shard_connection_fails_the_job_as_that_shards_loss(int lostShard)
    {
        await WithARealAndAFakeShardNodeAsync((_, _) => Props.Create(() => new SilentShardHost(Identity, null, null)), Guard, async placed =>
        {
            const string reason = "Worker 0: the data plane to shard 1 of 2 at 127.0.0.1:9 closed: Connection reset by peer. The worker stops: " +
                "without every shard's slice it can put no weights together, and a worker cannot take its slot at a shard again.";
            placed.Owner.Send(placed.Server, new WorkerFailed(0, reason, lostShard));
            var failure = Assert.IsType<ShardNodesException>(await placed.Owner.ReceiveAsync(Guard));
            if (lostShard == 2) Assert.Equal(reason, failure.Message);
            else
                Assert.Matches(new Regex(@"^Shard 1 of 2 cannot be reached: Worker 0: the data plane to shard 1 of 2 at 127\.0\.0\.1:9 closed: Connection " +
                    @"reset by peer\. Its shard node akka\.tcp://disttrain@127\.0\.0\.1:\d+ may have left, crashed or been cut off\. A run whose shards run on " +
                    @"shard nodes cannot go on without one \(a shard holds its slice of the weights and optimizer state\); restart the job \(it starts " +
                    @"from the beginning: this run writes no checkpoints; with Checkpoint:Directory set, a run can be resumed\)\.$"), failure.Message);
        });
    }

    /// <summary>
    /// With every worker slot taken, the workers lost leave none (Cluster:MinWorkers 1), which fails the job after the workers'
    /// grace; a worker's report that its shard connection closed, arriving within that grace, replaces that failure: the workers
    /// stopped because the shard node went, so the job ends with the shard's loss.
    /// </summary>
    [Fact]
    public async Task A_lost_shard_connection_replaces_the_pending_failure_of_the_workers_it_stopped()
    {
        await WithARealAndAFakeShardNodeAsync((_, _) => Props.Create(() => new SilentShardHost(Identity, null, null)), Guard, async placed =>
        {
            var (server, owner, workers) = (placed.Server, placed.Owner, placed.Workers);
            owner.Send(server, new StartEpoch(1, [workers[0].Receiver, workers[1].Receiver], [3, 3]));
            owner.Send(server, new WorkerLost(0));
            owner.Send(server, new WorkerLost(1));
            owner.Send(server, new WorkerFailed(1, "Worker 1: the data plane to shard 0 of 2 at 127.0.0.1:9 closed: Connection reset by peer", 0));
            var failure = Assert.IsType<ShardNodesException>(await owner.ReceiveAsync(Guard));
            Assert.StartsWith("Shard 0 of 2 cannot be reached: Worker 1: the data plane to shard 0 of 2 at 127.0.0.1:9 closed", failure.Message);
        }, workerSlots: 2);
    }

    /// <summary>What <see cref="WithARealAndAFakeShardNodeAsync"/> gives its body.</summary>
    /// <param name="Starting">The run's starting weights.</param>
    /// <param name="FakeNode">The fake shard node's actor system.</param>
    /// <param name="Server">The <see cref="RemoteShardedParameterServer"/>, placed on both shard nodes.</param>
    /// <param name="Owner">The probe standing for its coordinator; it also receives the server's failure.</param>
    /// <param name="Workers">The probes standing for its 2 workers' links.</param>
    private sealed record PlacedOnAFakeNode(DistTrain.Core.Tensors.ParameterVector Starting, ActorSystem FakeNode, IActorRef Server, Inbox Owner, Inbox[] Workers);

    /// <summary>
    /// A parameter-server node, a real shard node and a fake one whose <see cref="ShardHost"/> is made by <paramref name="fakeHost"/>
    /// (given the parameter-server node and the run's starting weights), both up; a <see cref="RemoteShardedParameterServer"/> of
    /// 2 workers (placed for the default 10 worker slots) with <paramref name="timeout"/>, placed on both. Runs <paramref name="body"/>, then stops the real shard node.
    /// </summary>
    private async Task WithARealAndAFakeShardNodeAsync(Func<ActorSystem, DistTrain.Core.Tensors.ParameterVector, Props> fakeHost, TimeSpan timeout,
        Func<PlacedOnAFakeNode, Task> body, int? workerSlots = null)
    {
        var ports = TestPorts.Free(2);
        var seed = $"akka.tcp://disttrain@127.0.0.1:{ports[0]}";
        var psOptions = Options(seed, ports[0], 0);
        var ps = await StartNodeAsync(psOptions, NodeRoles.ParameterServer);
        var security = new ClusterSecurity(Identity, null);
        var starting = ClusterNode.ShardHostSettingsOf(psOptions, security).StartingWeights;
        using var stop = new CancellationTokenSource();
        var shardOptions = Options(seed, 0, ports[1]);
        var run = ClusterNode.RunShardHostAsync(ClusterNode.ShardHostSettingsOf(shardOptions, security), shardOptions, security, stop.Token);
        try
        {
            var fakeNode = await StartNodeAsync(Options(seed, 0, 0), NodeRoles.ParameterShard);
            fakeNode.ActorOf(fakeHost(ps, starting), ShardHost.Name);
            var cluster = Akka.Cluster.Cluster.Get(ps);
            var deadline = DateTime.UtcNow + Guard;
            while (cluster.State.Members.Count(m => m.HasRole(NodeRoles.ParameterShard) && m.Status == Akka.Cluster.MemberStatus.Up) < 2)
            {
                Assert.True(DateTime.UtcNow < deadline, "the two shard nodes did not come up");
                await Task.Delay(100);
            }

            var owner = Inbox.Create(ps);
            Inbox[] workers = [Inbox.Create(ps), Inbox.Create(ps)];
            var settings = new RemoteShardSettings(Identity, "job-1", 2, starting, ModelFingerprint.ServerSettingsOf(psOptions),
                [.. workers.Select(w => w.Receiver)], timeout, 1, WorkerSlots: workerSlots);
            ps.ActorOf(Props.Create(() => new Supervisor(owner.Receiver, RemoteShardedParameterServer.Props(settings))));
            var server = Assert.IsAssignableFrom<IActorRef>(await owner.ReceiveAsync(Guard));
            foreach (var worker in workers) Assert.IsType<ShardServersAssigned>(await worker.ReceiveAsync(Guard)); // placed on both
            await body(new PlacedOnAFakeNode(starting, fakeNode, server, owner, workers));
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAny(run, Task.Delay(Guard));
        }
    }

    /// <summary>A shard node's host that places a shard as <see cref="ShardHost"/> does (a signed <see cref="ShardHosted"/>), on a
    /// shard actor and worker links that take every message and answer none, or, given <c>slowSlice</c>, a shard that answers
    /// the first gathering of the weights with its slice of those weights (version 0) in 6 pieces, one every <c>pieceGap</c>,
    /// and no later one. <c>placed</c>, if given, is told each request it hosts.</summary>
    private sealed class SilentShardHost : ReceiveActor
    {
        public SilentShardHost(JobIdentity identity, Akka.Actor.Props? slowSlice = null, IActorRef? placed = null)
        {
            var silent = Context.ActorOf(slowSlice ?? Props.Create(() => new Silent()), "silent-shard");
            Receive<HostShard>(request =>
            {
                placed?.Tell(request);
                silent.Tell(request);
                IActorRef[] links = [.. Enumerable.Repeat(silent, request.WorkerSlots)];
                string PathOf(IActorRef actor) => actor.Path.ToSerializationFormatWithAddress(((ExtendedActorSystem)Context.System).Provider.DefaultAddress);
                var proof = identity.ShardHostedProof(PathOf(Sender), request.Proof, request.JobId, request.Shard, PathOf(silent), "127.0.0.1", 1,
                    links.Select(PathOf));
                Sender.Tell(new ShardHosted(request.JobId, request.Shard, silent, "127.0.0.1", 1, links, proof, ClusterProtocolInfo.Version));
            });
        }

        private sealed class Silent : ReceiveActor
        {
            public Silent() => ReceiveAny(_ => { });
        }
    }

    /// <summary>The slow shard of <see cref="SilentShardHost"/>: its slice of <c>weights</c> in 6 pieces, one every <c>pieceGap</c>, for the
    /// first <see cref="ShardSliceRequest"/>; nothing for any later one, nor for anything else.</summary>
    private sealed class SlowSliceShard : ReceiveActor
    {
        public SlowSliceShard(DistTrain.Core.Tensors.ParameterVector weights, TimeSpan pieceGap)
        {
            HostShard? placed = null;
            var answered = false;
            Receive<HostShard>(request => placed = request);
            Receive<ShardSliceRequest>(request =>
            {
                if (answered || placed is null) return;
                answered = true;
                var slice = DistTrain.Cluster.Training.ParameterShards.Plan(weights.Layout, placed.ShardCount)[placed.Shard];
                var piece = (slice.Length + 5) / 6;
                for (int offset = 0, i = 1; offset < slice.Length; offset += piece, i++)
                {
                    var values = weights.Values.AsSpan(slice.Start + offset, Math.Min(piece, slice.Length - offset)).ToArray();
                    Context.System.Scheduler.ScheduleTellOnce(pieceGap * i, Sender,
                        new ShardSliceChunk(request.RequestId, placed.Shard, 0, offset, slice.Length, values, 0, 0, 0), Self);
                }
            });
            ReceiveAny(_ => { });
        }
    }

    /// <summary>
    /// A gathering of the weights from shard nodes (the final weights, early stopping's best, a stop's) fails when no shard sends
    /// a piece of its slice for <see cref="RemoteShardSettings.Timeout"/>, naming the shard still missing and its node, and
    /// takes as long as it must while pieces keep coming: here one shard node answers at once and the other sends its slice in
    /// 6 pieces 0.7 s apart, 4.2 s in all against a 3 s time-out, and the gathered weights are the starting ones; the next
    /// gathering, which that node never answers, fails after the 3 s.
    /// </summary>
    [Fact]
    public async Task A_weights_gathering_waits_while_pieces_keep_coming_and_fails_naming_the_shard_that_sends_none()
    {
        var pieceGap = TimeSpan.FromMilliseconds(700);
        var timeout = TimeSpan.FromSeconds(3);
        Inbox? placedOnSlowNode = null;
        Props SlowHost(ActorSystem ps, DistTrain.Core.Tensors.ParameterVector starting)
        {
            placedOnSlowNode = Inbox.Create(ps);
            var placed = placedOnSlowNode.Receiver;
            return Props.Create(() => new SilentShardHost(Identity, Props.Create(() => new SlowSliceShard(starting, pieceGap)), placed));
        }
        await WithARealAndAFakeShardNodeAsync(SlowHost, timeout, async placed =>
        {
            var (server, owner, starting) = (placed.Server, placed.Owner, placed.Starting);
            var slowShard = Assert.IsType<HostShard>(await placedOnSlowNode!.ReceiveAsync(Guard)).Shard;

            var asked = DateTime.UtcNow;
            owner.Send(server, GetWeights.Instance);
            var snapshot = Assert.IsType<WeightsSnapshot>(await owner.ReceiveAsync(Guard));
            Assert.True(DateTime.UtcNow - asked >= pieceGap * 6, $"the slow shard's 6 pieces came within {(DateTime.UtcNow - asked).TotalSeconds:F1} s");
            Assert.Equal(0, snapshot.Version);
            Assert.Equal(starting.Values, snapshot.Weights);

            asked = DateTime.UtcNow;
            owner.Send(server, GetWeights.Instance);
            var failure = Assert.IsType<ShardNodesException>(await owner.ReceiveAsync(Guard));
            Assert.True(DateTime.UtcNow - asked >= timeout, $"the gathering failed {(DateTime.UtcNow - asked).TotalSeconds:F1} s after the request, before the time-out");
            var slowAddress = Akka.Cluster.Cluster.Get(placed.FakeNode).SelfAddress;
            Assert.Equal($"For 3 s (the smaller of Cluster:JoinTimeoutSeconds and a third of Training:StallTimeoutSeconds), no shard node sent a " +
                $"piece of its slice of the weights; still missing: shard {slowShard} on {slowAddress}. A shard node is overloaded, cut off, or " +
                "stopped answering (its log says so). Restart the job; if those nodes are only slow, raise that setting.", failure.Message);
        });
    }

    /// <summary>
    /// The coordinator's search for shard nodes (<see cref="ShardNodeFinder"/>): with two shard nodes up, a search for 2 finds
    /// both, oldest member first, and the placement on the hosts it found succeeds with each node's configured data port; a
    /// search for 3 ends at its time-out naming the 2 found and the one more to start.
    /// </summary>
    [Fact]
    public async Task The_coordinator_finds_the_shard_nodes_and_places_its_shards_on_them()
    {
        var ports = TestPorts.Free(3);
        var seed = $"akka.tcp://disttrain@127.0.0.1:{ports[0]}";
        var psOptions = Options(seed, ports[0], 0);
        var ps = await StartNodeAsync(psOptions, NodeRoles.ParameterServer);
        var security = new ClusterSecurity(Identity, null);
        using var stop = new CancellationTokenSource();
        var runs = new List<Task<JobFinished>>();
        try
        {
            var members = new List<Akka.Cluster.Member>();
            foreach (var dataPort in ports[1..])
            {
                var options = Options(seed, 0, dataPort);
                runs.Add(ClusterNode.RunShardHostAsync(ClusterNode.ShardHostSettingsOf(options, security), options, security, stop.Token));
                var cluster = Akka.Cluster.Cluster.Get(ps);
                var deadline = DateTime.UtcNow + Guard;
                while (cluster.State.Members.Count(m => m.HasRole(NodeRoles.ParameterShard) && m.Status == Akka.Cluster.MemberStatus.Up) < members.Count + 1)
                {
                    Assert.True(DateTime.UtcNow < deadline, "the shard node did not join");
                    await Task.Delay(100);
                }
                members.Add(cluster.State.Members.Single(m => m.HasRole(NodeRoles.ParameterShard) && !members.Contains(m)));
            }

            var owner = Inbox.Create(ps);
            ps.ActorOf(Props.Create(() => new Parent(owner.Receiver, ShardNodeFinder.Props(2, Guard))));
            var found = Assert.IsType<ShardNodeFinder.Found>(await owner.ReceiveAsync(Guard));
            Assert.Equal(members.Select(m => m.Address), found.Hosts.Select(h => h.Path.Address)); // the first to join first

            var starting = ClusterNode.ShardHostSettingsOf(psOptions, security).StartingWeights;
            var placement = new ShardPlacement(Identity, ps, owner.Receiver, "job-1", found.Hosts, workerSlots: 2, starting, ModelFingerprint.ServerSettingsOf(psOptions));
            for (var k = 0; k < 2; k++) owner.Send(found.Hosts[k], placement.Requests[k]);
            while (!placement.Placed && placement.Failure is null)
            {
                var answer = await owner.ReceiveAsync(Guard);
                Assert.Null(placement.Take(found.Hosts.Single(h => h.Path.Address == ((ShardHosted)answer).ShardActor.Path.Address), answer));
            }
            Assert.Null(placement.Failure);
            Assert.Equal(ports[1..].Select(p => ("127.0.0.1", p)), placement.ServersFor(0, null).Endpoints.Select(e => (e.Host, e.Port)));

            ps.ActorOf(Props.Create(() => new Parent(owner.Receiver, ShardNodeFinder.Props(3, TimeSpan.FromSeconds(3)))));
            var notFound = Assert.IsType<ShardNodeFinder.NotFound>(await owner.ReceiveAsync(Guard));
            Assert.Equal($"Found 2 of the 3 shard nodes the run needs (Cluster:ParameterServerShards = 3) within 3 s: " +
                $"{string.Join(", ", members.Select(m => m.Address.ToString()).Order(StringComparer.Ordinal))}. Start 1 more shard node " +
                "(disttrain node --role parameter-shard, with this job's config, secret and seeds), one per shard, and check that every node runs " +
                "the same DistTrain version.", notFound.Reason);
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAny(Task.WhenAll(runs), Task.Delay(Guard));
        }
    }

    /// <summary>
    /// The CLI's shard node in a real job: a parameter server, a shard node and a worker, each its own process. The shard node
    /// joins, waits, and ends with the job's end as the parameter server reports it (exit code 0, the worker's summary), and
    /// the parameter server ends too.
    /// </summary>
    [Fact]
    public async Task A_shard_node_process_ends_with_the_job_its_parameter_server_reports()
    {
        var ports = TestPorts.Free(3);
        var common = new Dictionary<string, string>
        {
            ["DISTTRAIN_Cluster__Secret"] = "0123456789abcdef0123", ["DISTTRAIN_Cluster__Tls"] = "false", ["DISTTRAIN_Cluster__Hostname"] = "127.0.0.1",
            ["DISTTRAIN_Cluster__SeedNodes__0"] = $"akka.tcp://disttrain@127.0.0.1:{ports[0]}", ["DISTTRAIN_Cluster__MinWorkers"] = "1",
            ["DISTTRAIN_Training__Epochs"] = "1", ["DISTTRAIN_Data__Directory"] = TestData.SubsetDirectory,
            ["DISTTRAIN_Output__Directory"] = Path.Combine(_directory, "runs"),
        };
        Dictionary<string, string> With(int port, int dataPort) => new(common)
        {
            ["DISTTRAIN_Cluster__Port"] = $"{port}", ["DISTTRAIN_Cluster__DataPort"] = $"{dataPort}",
        };
        const string config = "configs/fashion-mnist-mlp.json";
        using var ps = DistTrainProcess.Node(NodeRoles.ParameterServer, config, With(ports[0], ports[1]));
        using var shard = DistTrainProcess.Node(NodeRoles.ParameterShard, config, With(0, ports[2]));
        await shard.WaitForOutputAsync("Welcome from", Guard);
        using var worker = DistTrainProcess.Node(NodeRoles.Worker, config, With(0, ports[1]));
        await worker.AssertExitAsync(0, Guard, [ps, shard]);
        await shard.AssertExitAsync(0, Guard, [ps]);
        await ps.AssertExitAsync(0, Guard);

        var summary = worker.Output.Split('\n').Single(l => l.StartsWith("Job finished: ", StringComparison.Ordinal)).TrimEnd();
        Assert.Matches(@"^Job finished: test accuracy \d+\.\d\d% after 1 epoch$", summary);
        Assert.Contains(summary, shard.Output);
        Assert.Contains($"data plane on 127.0.0.1:{ports[2]}", shard.Output);
    }

    /// <summary>A shard node whose first seed is its own address would start a cluster of its own: refused before it starts,
    /// exit code 2, naming the key and the fix. Its <c>--data</c>, which a shard node does not use, is named in a warning first.</summary>
    [Fact]
    public async Task A_shard_node_whose_first_seed_is_itself_is_refused()
    {
        var port = TestPorts.Free();
        using var shard = new DistTrainProcess(["node", "--role", NodeRoles.ParameterShard, "--config", "configs/fashion-mnist-mlp.json", "--data", TestData.SubsetDirectory],
            new Dictionary<string, string>
        {
            ["DISTTRAIN_Cluster__Secret"] = "0123456789abcdef0123", ["DISTTRAIN_Cluster__Tls"] = "false", ["DISTTRAIN_Cluster__Hostname"] = "127.0.0.1",
            ["DISTTRAIN_Cluster__Port"] = $"{port}", ["DISTTRAIN_Cluster__SeedNodes__0"] = $"akka.tcp://disttrain@127.0.0.1:{port}",
        });
        await shard.AssertExitAsync(2, Guard);
        Assert.Contains("warning: --data is not used by a shard node: it reads no data", shard.Output);
        Assert.Contains($"Cluster:SeedNodes:0 = 'akka.tcp://disttrain@127.0.0.1:{port}' is this shard node's own address", shard.Output);
        Assert.Contains("A shard node joins the cluster through a parameter server", shard.Output);
        Assert.Contains("give this shard node another port", shard.Output);
    }
}
