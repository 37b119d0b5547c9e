using Akka.Event;
using DistTrain.Cluster.Hosting;
using Xunit;

namespace DistTrain.Tests;

/// <summary>
/// A worker node, and a parameter-server node that is not its first seed (a standby), send their seeds InitJoin every
/// 1.25 s (<see cref="AkkaSettings.JoinRetry"/>), not every 5 s (Akka's seed-node-timeout default), so a node started
/// before its seed listens joins as soon as it does; Akka's warning at each attempt is kept at every fifth attempt only
/// (<see cref="JoinRetryLogFilter"/>).
/// </summary>
public sealed class JoinRetryTests : IDisposable
{
    private readonly string _directory = TestFolders.Create("disttrain-join-retry-");

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>
    /// A node whose seed refuses connections (nothing listens there) for its whole 8 s join time-out: with a 5 s interval it
    /// makes two attempts and Akka warns at none; with 1.25 s it makes about seven (the fifth's warning about 6.25 s in), and
    /// of Akka's warnings at attempts 2 to 7 only the fifth's is printed. The parameter-server node has Cluster:Port 0, so
    /// it is not its first seed, as a standby is not.
    /// </summary>
    [Theory]
    [InlineData("worker", "No parameter server accepted this worker within 8 s.")]
    [InlineData("parameter-server", "This parameter-server node could not join the cluster within 8 s (Cluster:JoinTimeoutSeconds)")]
    public async Task A_node_that_is_not_its_first_seed_retries_its_join_every_1_25_s_and_prints_Akkas_retry_warning_only_at_every_fifth_attempt(string role, string timedOut)
    {
        var port = TestPorts.Free(); // free, so nothing listens there: the seed refuses every connection
        using var process = DistTrainProcess.WithOneSeed(role, port, joinTimeoutSeconds: 8, new Dictionary<string, string>
        {
            ["DISTTRAIN_Cluster__DataPort"] = TestPorts.Free().ToString(System.Globalization.CultureInfo.InvariantCulture), ["DISTTRAIN_Metrics__Port"] = "0",
            ["DISTTRAIN_Output__Directory"] = _directory,
        });
        await process.AssertExitAsync(1, TimeSpan.FromSeconds(120));

        Assert.Contains(timedOut, process.Output);
        var warned = System.Text.RegularExpressions.Regex.Matches(process.Output, @"Couldn't join seed nodes after \[(\d+)\] attempts")
            .Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Assert.True(warned is [5], $"Akka's retry warnings printed: [{string.Join(", ", warned)}], expected only the fifth attempt's:\n{process.Output}");
    }

    /// <summary>Only the first seed keeps Akka's 5 s, which is also its wait for the other seeds before it forms a cluster.</summary>
    [Fact]
    public void Only_a_parameter_server_whose_own_address_is_the_first_seed_keeps_Akkas_interval()
    {
        static Core.Configuration.ClusterOptions Node(int port, string publicHostname = "") =>
            new() { Hostname = "0.0.0.0", PublicHostname = publicHostname, Port = port, SeedNodes = ["akka.tcp://disttrain@ps:4053", "akka.tcp://disttrain@ps2:4053"] };

        Assert.False(AkkaSettings.RetriesJoinQuickly(Node(4053, "PS"), "parameter-server")); // the first seed (hosts without case)
        Assert.True(AkkaSettings.RetriesJoinQuickly(Node(4053, "ps2"), "parameter-server")); // a standby listed as a later seed
        Assert.True(AkkaSettings.RetriesJoinQuickly(Node(4060, "ps"), "parameter-server")); // another port
        Assert.True(AkkaSettings.RetriesJoinQuickly(Node(0), "parameter-server")); // a free port: no seed names it
        Assert.True(AkkaSettings.RetriesJoinQuickly(Node(0), "worker"));
        Assert.Equal(1250, AkkaSettings.JoinRetry().GetTimeSpan("akka.cluster.seed-node-timeout").TotalMilliseconds);
    }

    /// <summary>The filter reads the attempt count from Akka's text and keeps the warning only when it is a multiple of five.</summary>
    [Theory]
    [InlineData(2, false)]
    [InlineData(4, false)]
    [InlineData(5, true)]
    [InlineData(6, false)]
    [InlineData(10, true)]
    public void Akkas_retry_warning_is_kept_at_every_fifth_attempt(int attempts, bool kept)
    {
        var text = $"Couldn't join seed nodes after [{attempts}] attempts, will try again. seed-nodes=[akka.tcp://disttrain@127.0.0.1:25101]";
        Assert.Equal(attempts, JoinRetryLogFilter.Attempts(text));
        var decision = new JoinRetryLogFilter().ShouldKeepMessage(new Warning("Cluster (akka://disttrain)", typeof(object), text), "[WARNING][12/04/2026 17:41:50.182Z][Thread 0003][joinSeedNodeProcess-1] " + text);
        Assert.Equal(kept ? LogFilterDecision.NoDecision : LogFilterDecision.Drop, decision);
        // The same text at another level, and any other warning, are left alone.
        Assert.Equal(LogFilterDecision.NoDecision, new JoinRetryLogFilter().ShouldKeepMessage(new Info("Cluster (akka://disttrain)", typeof(object), text), text));
        Assert.Equal(LogFilterDecision.NoDecision, new JoinRetryLogFilter().ShouldKeepMessage(
            new Warning("Cluster (akka://disttrain)", typeof(object), "Couldn't join"), "Couldn't join"));
    }
}
