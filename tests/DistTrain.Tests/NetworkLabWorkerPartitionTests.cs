namespace DistTrain.Tests;

public sealed partial class NetworkLabProcessTests
{
    /// <summary>Seconds a partition lasts in these tests, as in the case docs/reliability.md records; failure detection plus stable-after (every decision) falls well inside it.</summary>
    private const int PartitionSeconds = 30;

    private static readonly Dictionary<string, string> FastDowning = new() { ["DISTTRAIN_Cluster__StableAfterSeconds"] = "3" };

    [NetworkLabFact]
    public async Task A_worker_partitioned_away_is_downed_the_job_goes_on_and_the_restarted_worker_rejoins_with_every_sample_trained_once_per_epoch()
    {
        // Node 1 the parameter server, nodes 2 and 3 workers. The job outlasts the test, which ends it once the rejoined
        // worker has trained through a whole epoch (its speed on a shared machine is not known in advance).
        var lab = Lab(3);
        var configPath = Config(epochs: 1000, batch: 8);
        var settings = new Dictionary<string, string>(FastDowning) { ["DISTTRAIN_Cluster__MinWorkers"] = "1" };
        var ps = Start(lab, "ps", 1, configPath, settings);
        Start(lab, "worker", 2, configPath, settings);
        var partitioned = Start(lab, "worker", 3, configPath, settings);
        await WaitForStepsAsync(ps, steps => steps.Any(workers => workers.Length == 2), TimeSpan.FromSeconds(120), "a step with both workers");

        lab.Partition(3);
        Event("node 3 cut off from every other node");
        var partitionedAt = DateTime.UtcNow;
        var index = partitioned.Output.Contains("Joined the job as worker 1", StringComparison.Ordinal) ? 1 : 0;
        // The parameter server's side downs the worker; the worker's side (the worker alone, the active parameter server
        // on the other side) downs itself, so the node exits and says to restart it.
        await ps.WaitForOutputAsync($"Worker {index} (node ", TimeSpan.FromSeconds(PartitionSeconds));
        var lostAt = ps.Output.IndexOf($"Worker {index} (node ", StringComparison.Ordinal);
        Assert.Contains("this side holds the active parameter server", ps.Output);
        await AssertExitAsync(partitioned, 4, TimeSpan.FromSeconds(PartitionSeconds)); // a lost worker, not a failed job
        Event("node 3's worker process exited with code 4");
        AssertDownedWithItsSide(partitioned);
        // The job goes on with the other worker while the partition lasts.
        var epochsAtLoss = CompletedEpochs(ps);
        await ps.WaitForOutputAsync("train loss", TimeSpan.FromSeconds(60), after: lostAt);

        var healIn = partitionedAt.AddSeconds(PartitionSeconds) - DateTime.UtcNow;
        if (healIn > TimeSpan.Zero) await Task.Delay(healIn);
        lab.Heal(3);
        Event("node 3 healed");
        var restarted = Start(lab, "worker", 3, configPath, settings);
        await restarted.WaitForOutputAsync("Joined the job as worker 2", TimeSpan.FromSeconds(60));
        // Once the rejoined worker took part in a whole epoch, every epoch so far can be checked.
        await WaitForStepsAsync(ps, steps => steps.Any(workers => workers.Contains(2)), TimeSpan.FromSeconds(60), "a step with the rejoined worker");
        var joinedEpoch = CompletedEpochs(ps) + 1;
        await ps.WaitForOutputAsync($"epoch {joinedEpoch + 1,2}/1000  train loss", TimeSpan.FromSeconds(120));
        ps.Kill();
        Event($"epoch {joinedEpoch + 1} completed with the rejoined worker; the test ends the job");

        Assert.True(epochsAtLoss + 1 < joinedEpoch, $"the loss came in epoch {epochsAtLoss + 1} and the rejoin in epoch {joinedEpoch}");
        // Killed mid-job, the parameter server may have begun a further epoch: the finished ones are checked.
        SampleTraceLog.AssertEverySampleOnceEachEpoch(Path.Combine(_directory, "trace"), sampleCount: 1000, epochs: joinedEpoch + 1, laterEpochsUnfinished: true);
    }

    [NetworkLabFact]
    public async Task The_parameter_server_cut_off_from_both_workers_downs_them_pauses_and_resumes_with_new_workers_every_sample_once()
    {
        // No standby, and both workers lost together behind one partition: the parameter server is alone against two
        // unreachable nodes (where keep-oldest with down-if-alone downed it). It must pause and wait for workers.
        // 250 steps per epoch, so the cut, made within a few steps of the first, lands mid-epoch: both workers lost during
        // an epoch's evaluation is a separate case, tested in process by EvaluationWorkerLossTests.
        var lab = Lab(3);
        var configPath = Config(epochs: 4, batch: 2);
        var ps = Start(lab, "ps", 1, configPath, FastDowning);
        var workers = new[] { Start(lab, "worker", 2, configPath, FastDowning), Start(lab, "worker", 3, configPath, FastDowning) };
        await WaitForStepsAsync(ps, steps => steps.Any(workers => workers.Length == 2), TimeSpan.FromSeconds(120), "a step with both workers");

        lab.Partition(1);
        Event("node 1 cut off from every other node");
        await ps.WaitForOutputAsync("the 2 unreachable nodes are downed and it waits for workers to join", TimeSpan.FromSeconds(PartitionSeconds));
        await ps.WaitForOutputAsync("Training is paused", TimeSpan.FromSeconds(30));
        var downedAt = ps.Output.IndexOf("unreachable nodes are downed", StringComparison.Ordinal);
        // Each worker, alone with the other one and the active parameter server unreachable, leaves: restart to rejoin.
        foreach (var worker in workers)
        {
            await AssertExitAsync(worker, 4, TimeSpan.FromSeconds(PartitionSeconds));
            Event("a worker process exited with code 4");
            AssertDownedWithItsSide(worker);
        }
        // Long enough after the decision for a wrong one to have shut the node down (stable-after 3 s, removal margin).
        await Task.Delay(TimeSpan.FromSeconds(8));
        Assert.False(ps.HasExited, $"the parameter server exited while paused. Output:\n{ps.Output}");

        lab.Heal(1);
        Event("node 1 healed");
        var replacements = new[] { Start(lab, "worker", 2, configPath, FastDowning), Start(lab, "worker", 3, configPath, FastDowning) };
        await ps.WaitForOutputAsync("Training resumes", TimeSpan.FromSeconds(90), after: downedAt);
        await AssertExitAsync(ps, 0, TimeSpan.FromSeconds(180));
        Event("the parameter server finished the job (exit code 0)");
        foreach (var worker in replacements) await AssertExitAsync(worker, 0, TimeSpan.FromSeconds(30));
        Assert.Contains("Test accuracy after 4 epochs", ps.Output);
        Assert.DoesNotContain("left the cluster before the job ended", ps.Output);
        SampleTraceLog.AssertEverySampleOnceEachEpoch(Path.Combine(_directory, "trace"), sampleCount: 1000, epochs: 4);
    }

    /// <summary>The node's exit message says its own side went down (the active parameter server was on the other side) and to restart it.</summary>
    private static void AssertDownedWithItsSide(DistTrainProcess node)
    {
        Assert.True(node.Output.Contains("this node's side went down: the active parameter server", StringComparison.Ordinal) &&
                    node.Output.Contains("restart the node to rejoin", StringComparison.Ordinal), node.Output);
    }
}
