using DistTrain.Cluster.Hosting;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;

namespace DistTrain.Tests;

public sealed partial class NetworkLabProcessTests
{
    [NetworkLabFact]
    public async Task The_active_parameter_server_cut_off_from_everyone_leaves_and_only_the_standby_trains_on_to_the_undisturbed_weights()
    {
        // Node 1 the active parameter server, node 2 the standby, nodes 3 and 4 workers; checkpoints every 50 steps in a
        // folder both parameter servers share. The active one is cut off, not killed: it keeps running on its own side.
        var lab = Lab(4);
        var configPath = Config(epochs: 6, batch: 4); // 125 steps per epoch
        var settings = new Dictionary<string, string>(FastDowning) { ["DISTTRAIN_Checkpoint__EverySteps"] = "50" };
        var active = Start(lab, "ps", 1, configPath, settings);
        await active.WaitForOutputAsync("This node is the active parameter server", TimeSpan.FromSeconds(60));
        var standby = Start(lab, "ps-standby", 2, configPath, settings);
        await standby.WaitForOutputAsync("Standby parameter server: the active one is", TimeSpan.FromSeconds(60));
        var workers = new[] { Start(lab, "worker", 3, configPath, settings), Start(lab, "worker", 4, configPath, settings) };
        await WaitForStepsAsync(active, steps => steps.Length > 60, TimeSpan.FromSeconds(120), "a checkpoint (step 50) and a few steps more");

        var standbyIdleUntil = LastTimeBeforeFirstStepAsync(standby, TimeSpan.FromSeconds(180));
        lab.Partition(1);
        Event("node 1 cut off from every other node");
        // Its side is the active parameter server alone with a standby on the other side: it downs itself and exits.
        await AssertExitAsync(active, 1, TimeSpan.FromSeconds(60));
        Event("node 1's parameter server process exited with code 1");
        AssertDownedWithItsSide(active);
        // The other side downs it; the standby takes over from the newest checkpoint with both workers.
        await standby.WaitForOutputAsync("Training starts with 2 workers", TimeSpan.FromSeconds(60));
        Assert.Matches(@"Resuming from checkpoint \S+: weights version \d+", standby.Output);
        lab.Heal(1);
        Event("node 1 healed");

        await AssertExitAsync(standby, 0, TimeSpan.FromSeconds(180));
        Event("the standby finished the job (exit code 0)");
        foreach (var worker in workers) await AssertExitAsync(worker, 0, TimeSpan.FromSeconds(30));
        Assert.Contains("Test accuracy after 6 epochs", standby.Output);
        // Never two parameter servers training: the old one's steps file was last written (its last step) before a moment at
        // which the standby's had no step yet.
        var oldSteps = StepsFile(active);
        Assert.NotEmpty(StepWorkers(oldSteps));
        var lastOldStep = File.GetLastWriteTimeUtc(oldSteps);
        var standbyIdle = await standbyIdleUntil;
        Assert.True(lastOldStep < standbyIdle, $"the old parameter server applied a step at {lastOldStep:O}, when the standby may have been training (it had no step at {standbyIdle:O})");

        // Nothing lost or repeated: the job ends on an undisturbed run's weights (same seed, shard plan and summation order).
        var options = TrainingOptionsLoader.Load(configPath, new Dictionary<string, string?> { ["Data:Directory"] = TestData.SubsetDirectory },
            environment: new Dictionary<string, string?>());
        var data = TrainingData.Load(options.Data);
        var undisturbed = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout();
        var tensors = SafeTensors.Read(Directory.GetFiles(Path.Combine(_directory, "runs-node2"), "model.safetensors", SearchOption.AllDirectories).Single());
        foreach (var segment in undisturbed.FinalWeights.Layout.Segments)
            Compare.Close(undisturbed.FinalWeights.Segment(segment).ToArray(), tensors[segment.Name].Data, relative: 1e-4, absolute: 1e-6, segment.Name);
    }
}
