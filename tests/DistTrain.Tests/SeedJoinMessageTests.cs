using Akka.Actor;
using DistTrain.Cluster.Hosting;

namespace DistTrain.Tests;

/// <summary>
/// A parameter-server node that cannot join through Cluster:SeedNodes gives up after Cluster:JoinTimeoutSeconds with
/// <see cref="ClusterNode.NotJoined"/>: the seeds, its own address and the fix for an active node and for a standby. A first
/// seed that spells the node itself another way (its port, another host: 127.0.0.1 for a node whose address is 0.0.0.0
/// when Cluster:PublicHostname is unset) is not the node for Akka, and the message names the Cluster:PublicHostname to set.
/// </summary>
public class SeedJoinMessageTests
{
    [Fact]
    public void A_seed_elsewhere_is_named_with_the_fix_for_an_active_node_and_for_a_standby()
    {
        var message = ClusterNode.NotJoined(120, ["akka.tcp://disttrain@10.0.0.5:4053", "akka.tcp://disttrain@10.0.0.6:4053"],
            "akka.tcp://disttrain@10.0.0.7:4055", 4055);

        Assert.StartsWith("This parameter-server node could not join the cluster within 120 s (Cluster:JoinTimeoutSeconds): no node at its seeds " +
            "akka.tcp://disttrain@10.0.0.5:4053, akka.tcp://disttrain@10.0.0.6:4053 (Cluster:SeedNodes) let it in. Its own address, " +
            "akka.tcp://disttrain@10.0.0.7:4055, is not the first seed, so it starts no cluster of its own", message);
        Assert.Contains("list its own address first: DISTTRAIN_Cluster__SeedNodes__0=akka.tcp://disttrain@HOST:4055", message);
        Assert.Contains("If it is a standby, list the active parameter server's address first", message);
        Assert.DoesNotContain("is meant to be this node itself", message);
    }

    [Fact]
    public void A_first_seed_with_the_nodes_port_on_another_host_names_the_public_host_name_to_set()
    {
        var message = ClusterNode.NotJoined(5, ["akka.tcp://disttrain@127.0.0.1:30880"], "akka.tcp://disttrain@0.0.0.0:30880", 30880);

        Assert.Contains("no node at its seed akka.tcp://disttrain@127.0.0.1:30880 (Cluster:SeedNodes) let it in. Its own address, " +
            "akka.tcp://disttrain@0.0.0.0:30880, is not the first seed", message);
        Assert.Contains("If the first seed, akka.tcp://disttrain@127.0.0.1:30880, is meant to be this node itself, set its Cluster:PublicHostname " +
            "to 127.0.0.1: Akka takes a seed for the node itself only when it is the node's address as written.", message);
    }

    /// <summary>
    /// A worker whose seed's host does not resolve timed out with "No parameter server accepted this worker within N s.
    /// Check Cluster:SeedNodes, ...", naming no seed: Akka.Cluster retries the seed for ever and logs only that it could not
    /// associate with it. The time-out now names the seed, its host and the resolver's answer. (".invalid" never resolves:
    /// RFC 6761.)
    /// </summary>
    [Fact]
    public async Task A_worker_whose_seed_does_not_resolve_names_that_seed_when_it_times_out()
    {
        var options = TestData.Options(new DistTrain.Core.Models.ModelBuilder(784).Dense(10).Build(), workers: 1, batch: 32, epochs: 1);
        options.Cluster = new DistTrain.Core.Configuration.ClusterOptions
        {
            Hostname = "127.0.0.1", PublicHostname = "127.0.0.1", Port = 0, Tls = false, JobName = "test-job", JoinTimeoutSeconds = 2,
            SeedNodes = ["akka.tcp://disttrain@no-such-host.invalid:25106"],
        };
        using var security = new DistTrain.Cluster.Security.ClusterSecurity(
            new DistTrain.Cluster.Security.JobIdentity("test-job", "0123456789abcdef0123"u8), Certificates: null);
        var data = DistTrain.Core.Data.TrainingData.FromArrays(
            TestData.RawTrain.Features, TestData.RawTrain.Labels.Select(l => (int)l).ToArray(),
            TestData.RawTest.Features, TestData.RawTest.Labels.Select(l => (int)l).ToArray(), featureCount: 784, classCount: 10);

        var failure = await Assert.ThrowsAsync<TimeoutException>(() => ClusterNode.RunWorkerAsync(options, security, data, CancellationToken.None).WithTestTimeout(90));
        Assert.Matches(@"^No parameter server accepted this worker within 2 s\. Its seed akka\.tcp://disttrain@no-such-host\.invalid:25106 \(Cluster:SeedNodes\) " +
            @"does not resolve on this machine \('no-such-host\.invalid': [^)]+\): give the parameter server's address, or a host name this machine resolves\. " +
            @"Check Cluster:SeedNodes, that the parameter server node runs, and that Cluster:Tls is the same on every node\.$", failure.Message);
    }

    /// <summary>Only the seeds whose host does not resolve are named, with each host's answer; addresses are never looked up.</summary>
    [Fact]
    public void Only_the_seeds_whose_host_does_not_resolve_are_named_each_with_its_answer()
    {
        var looked = new List<string>();
        System.Net.IPAddress[] Resolve(string host)
        {
            looked.Add(host);
            return host switch
            {
                "ps" => [System.Net.IPAddress.Parse("10.0.0.5")],
                "empty" => [],
                _ => throw new System.Net.Sockets.SocketException((int)System.Net.Sockets.SocketError.HostNotFound),
            };
        }
        var unresolved = SeedHosts.Of(["akka.tcp://disttrain@ps:4053", "akka.tcp://disttrain@10.0.0.6:4053", "akka.tcp://disttrain@[::1]:4053",
            "akka.tcp://disttrain@gone:4053", "akka.tcp://disttrain@empty:4053", "not an address"], Resolve);

        Assert.Equal(["ps", "gone", "empty"], looked);
        Assert.Equal(["akka.tcp://disttrain@gone:4053", "akka.tcp://disttrain@empty:4053"], unresolved.Select(u => u.Seed));
        Assert.Equal("no address", unresolved[1].Reason);
        Assert.Equal($"Its seeds akka.tcp://disttrain@gone:4053 ('gone': {unresolved[0].Reason}), akka.tcp://disttrain@empty:4053 ('empty': no address) " +
            "(Cluster:SeedNodes) do not resolve on this machine: give the parameter servers' addresses, or host names this machine resolves. ",
            SeedHosts.Sentence(unresolved));
        Assert.Equal("", SeedHosts.Sentence([]));
        Assert.Equal("No parameter server accepted this worker within 120 s. Check Cluster:SeedNodes, that the parameter server node runs, and that " +
            "Cluster:Tls is the same on every node.", DistTrain.Cluster.Actors.WorkerAgent.NotAccepted(120, []));

        var standby = ClusterNode.NotJoined(120, ["akka.tcp://disttrain@gone:4053"], "akka.tcp://disttrain@10.0.0.7:4053", 4053, [unresolved[0]]);
        Assert.Contains("(Cluster:SeedNodes) let it in. Its seed akka.tcp://disttrain@gone:4053 (Cluster:SeedNodes) does not resolve on this machine " +
            $"('gone': {unresolved[0].Reason}): give the parameter server's address, or a host name this machine resolves. Its own address, " +
            "akka.tcp://disttrain@10.0.0.7:4053, is not the first seed", standby);
    }

    /// <summary>
    /// The worker agent looked the seeds' hosts up on its own actor thread when its join timed out: a lookup that takes
    /// seconds (no DNS server) blocked the agent, which then answered nothing. The lookup now runs off the actor's thread:
    /// while it hangs, the agent still answers, and once it ends the run fails with the same message as before.
    /// </summary>
    [Fact]
    public async Task A_slow_seed_lookup_at_the_join_timeout_does_not_block_the_worker_agent()
    {
        var options = TestData.Options(new DistTrain.Core.Models.ModelBuilder(784).Dense(10).Build(), workers: 1, batch: 32, epochs: 1);
        options.Cluster = new DistTrain.Core.Configuration.ClusterOptions
        {
            Hostname = "127.0.0.1", PublicHostname = "127.0.0.1", Port = 0, Tls = false, JobName = "test-job", JoinTimeoutSeconds = 1,
            SeedNodes = ["akka.tcp://disttrain@slow-host:25107"],
        };
        using var security = new DistTrain.Cluster.Security.ClusterSecurity(
            new DistTrain.Cluster.Security.JobIdentity("test-job", "0123456789abcdef0123"u8), Certificates: null);
        var data = DistTrain.Core.Data.TrainingData.FromArrays(
            TestData.RawTrain.Features, TestData.RawTrain.Labels.Select(l => (int)l).ToArray(),
            TestData.RawTest.Features, TestData.RawTest.Labels.Select(l => (int)l).ToArray(), featureCount: 784, classCount: 10);
        var lookupStarted = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var release = new ManualResetEventSlim();
        System.Net.IPAddress[] SlowLookup(string host)
        {
            lookupStarted.TrySetResult(host);
            release.Wait(TimeSpan.FromSeconds(60));
            throw new System.Net.Sockets.SocketException((int)System.Net.Sockets.SocketError.HostNotFound);
        }
        var config = Akka.Configuration.ConfigurationFactory.ParseString("""
            akka.actor.provider = cluster
            akka.remote.dot-netty.tcp { hostname = 127.0.0.1, port = 0 }
            akka.loglevel = WARNING
            """);
        var system = Akka.Actor.ActorSystem.Create("disttrain", config);
        try
        {
            var completion = new TaskCompletionSource<DistTrain.Cluster.Protocol.JobFinished>(TaskCreationOptions.RunContinuationsAsynchronously);
            var agent = system.ActorOf(DistTrain.Cluster.Actors.WorkerAgent.Props(options, security, data,
                DistTrain.Cluster.Hosting.ModelFingerprint.SamplesOf(data, options.Cluster.CheckSamples), completion, SlowLookup), "agent");

            Assert.Equal("slow-host", await lookupStarted.Task.WithTestTimeout(60));
            try
            {
                // The lookup hangs: an agent blocked by it would not answer within the 10 s.
                Assert.False(await agent.Ask<bool>(DistTrain.Cluster.Actors.WorkerAgent.HasDataPlane.Instance, TimeSpan.FromSeconds(10)));
                Assert.False(completion.Task.IsCompleted);
            }
            finally
            {
                release.Set();
            }
            var failure = await Assert.ThrowsAsync<TimeoutException>(() => completion.Task.WithTestTimeout(60));
            Assert.StartsWith("No parameter server accepted this worker within 1 s. Its seed akka.tcp://disttrain@slow-host:25107 (Cluster:SeedNodes) " +
                "does not resolve on this machine ('slow-host': ", failure.Message);
        }
        finally
        {
            await system.Terminate();
        }
    }

    /// <summary>
    /// The seeds' lookup runs off the agent's thread, so the agent goes on while it runs: a parameter server that accepted
    /// the worker between the join timeout and the lookup's end gets no time-out message, nor does a later registration round
    /// (accepted, then lost again) from an earlier round's lookup; an unaccepted worker in the same round gets it.
    /// </summary>
    [Fact]
    public void The_seed_lookups_result_fails_the_run_only_if_the_worker_is_still_unaccepted_in_the_same_round()
    {
        SeedHosts.Unresolved[] gone = [new("akka.tcp://disttrain@gone:4053", "gone", "Name or service not known")];

        Assert.Null(DistTrain.Cluster.Actors.WorkerAgent.AfterSeedLookup(accepted: true, round: 1, currentRound: 1, 120, gone));
        Assert.Null(DistTrain.Cluster.Actors.WorkerAgent.AfterSeedLookup(accepted: false, round: 1, currentRound: 2, 120, gone));
        Assert.Equal("No parameter server accepted this worker within 120 s. Its seed akka.tcp://disttrain@gone:4053 (Cluster:SeedNodes) does not " +
            "resolve on this machine ('gone': Name or service not known): give the parameter server's address, or a host name this machine resolves. " +
            "Check Cluster:SeedNodes, that the parameter server node runs, and that Cluster:Tls is the same on every node.",
            DistTrain.Cluster.Actors.WorkerAgent.AfterSeedLookup(accepted: false, round: 2, currentRound: 2, 120, gone));
    }
}
