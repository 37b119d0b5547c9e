using Akka.Event;
using DistTrain.Cluster.Hosting;
using Xunit;

namespace DistTrain.Tests;

/// <summary>
/// A worker node sends its seeds InitJoin every 1.25 s (<see cref="AkkaSettings.WorkerJoinRetry"/>), not every 5 s (Akka's
/// seed-node-timeout default), so a worker started before its parameter server listens joins as soon as it does; Akka's
/// warning at each attempt is kept at every fifth attempt only (<see cref="JoinRetryLogFilter"/>).
/// </summary>
public sealed class WorkerJoinRetryTests
{
    /// <summary>
    /// A worker whose seed refuses connections (nothing listens there) for its whole 8 s join time-out: with a 5 s interval it
    /// makes two attempts and Akka warns at none; with 1.25 s it makes about seven (the fifth's warning about 6.25 s in), and
    /// of Akka's warnings at attempts 2 to 7 only the fifth's is printed.
    /// </summary>
    [Fact]
    public async Task A_worker_retries_its_join_every_1_25_s_and_prints_Akkas_retry_warning_only_at_every_fifth_attempt()
    {
        var port = TestPorts.Free(); // free, so nothing listens there: the seed refuses every connection
        using var process = new DistTrainProcess(["node", "--role", "worker", "--config", "configs/fashion-mnist-mlp.json", "--data", TestData.SubsetDirectory],
            new Dictionary<string, string>
            {
                ["DISTTRAIN_Cluster__Secret"] = "0123456789abcdef0123", ["DISTTRAIN_Cluster__Tls"] = "false", ["DISTTRAIN_Cluster__Hostname"] = "127.0.0.1",
                ["DISTTRAIN_Cluster__Port"] = "0", ["DISTTRAIN_Cluster__JoinTimeoutSeconds"] = "8",
                ["DISTTRAIN_Cluster__SeedNodes__0"] = $"akka.tcp://disttrain@127.0.0.1:{port}",
            });
        await process.AssertExitAsync(1, TimeSpan.FromSeconds(120));

        Assert.Contains("No parameter server accepted this worker within 8 s.", process.Output);
        var warned = System.Text.RegularExpressions.Regex.Matches(process.Output, @"Couldn't join seed nodes after \[(\d+)\] attempts")
            .Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Assert.True(warned is [5], $"Akka's retry warnings printed: [{string.Join(", ", warned)}], expected only the fifth attempt's:\n{process.Output}");
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
