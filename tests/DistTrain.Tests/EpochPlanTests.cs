using DistTrain.Cluster.Training;
using DistTrain.Core.Data;

namespace DistTrain.Tests;

public sealed class EpochPlanTests
{
    // 30 samples over 3 workers in minibatches of 2, keeping the global minibatch of 6 when a worker is lost: an epoch
    // planned for 2 workers has balanced minibatches (5 steps of 3).
    private static EpochPlan ThreeWorkers()
    {
        var settings = new EpochPlanSettings(new ShardPlanner(30, 3, seed: 7), workers => new ShardPlanner(30, workers, seed: 7),
            BatchSizePerWorker: 2, GlobalBatchSize: 6, FirstEpoch: 1, FirstRound: 0);
        var plan = new EpochPlan(settings);
        for (var i = 0; i < 3; i++) plan.AddWorker(i);
        return plan;
    }

    [Fact]
    public void A_removal_reported_after_the_next_epoch_was_planned_without_the_worker_keeps_nothing()
    {
        // The worker is lost in the closing broadcast of epoch 1; the next epoch is planned for the two left before the
        // parameter server's removal notice (for round 5, the end of epoch 1) arrives.
        var plan = ThreeWorkers();
        var first = plan.StartNextEpoch();
        Assert.Equal(5, first.Rounds);
        plan.RoundApplied(4);
        Assert.True(plan.PartTrained(30, 12.0));
        Assert.True(plan.Lose(0));
        var second = plan.StartNextEpoch();
        Assert.Equal(5, second.Steps); // balanced: the worker count differs from the plan's
        Assert.Empty(second.Shards[0]);

        plan.WorkerRemoved(0, 5);

        Assert.Equal(0, plan.OrphanCount);
        Assert.Equal(30, second.Shards[1].Length + second.Shards[2].Length);
    }

    [Fact]
    public void A_lost_workers_untrained_samples_go_to_the_others_once_even_when_its_removal_is_reported_again()
    {
        var plan = ThreeWorkers();
        var part = plan.StartNextEpoch();
        var shard = part.Shards[2].ToArray();
        Assert.Equal(10, shard.Length);
        plan.RoundApplied(1); // rounds 0 and 1 applied: worker 2 trained 4 of its 10 samples
        Assert.True(plan.Lose(2));
        plan.WorkerRemoved(2, 2);
        Assert.Equal(6, plan.OrphanCount);
        Assert.False(plan.PartTrained(24, 10.0)); // 10 + 10 + 4

        var further = plan.ContinueEpoch();
        Assert.Equal(shard[4..].Order(), further.Shards.SelectMany(s => s).Order());
        Assert.Equal([0, 1], further.Receivers);
        Assert.Equal(1, further.Steps); // 3 samples each: one minibatch, of the global 6 over 2 workers
        Assert.Equal(3, further.FirstRound); // round 2, after the last one applied, closed the first part

        // A second notice for the same worker (its shard in this part is empty) keeps nothing more.
        plan.WorkerRemoved(2, 2);
        Assert.Equal(0, plan.OrphanCount);
        Assert.True(plan.PartTrained(6, 2.0));
        Assert.Equal(30, plan.EpochSamples);
    }

    [Fact]
    public void A_part_cut_at_a_loss_replans_the_survivors_rest_with_the_lost_workers_at_the_global_minibatch_without_a_sample_twice()
    {
        // Training:KeepGlobalBatch: worker 2 is lost while round 1 is open (it had trained round 0); the parameter server ends
        // the part at round 2 for everybody. Workers 0 and 1 trained rounds 0 and 1 (4 samples each), worker 2 round 0 (2).
        var plan = ThreeWorkers();
        var part = plan.StartNextEpoch();
        Assert.True(part.KeepGlobalBatch);
        Assert.Equal(0, part.Part);
        int[][] shards = [.. part.Shards.Select(s => s.ToArray())];
        Assert.True(plan.Lose(2));
        plan.WorkerRemoved(2, 1);
        plan.PartCut(2);
        Assert.Equal(8 + 6 + 6, plan.OrphanCount);

        // Worker 1 is lost too, before its report of round 1: only that minibatch is added, not its cut rounds again.
        Assert.True(plan.Lose(1));
        plan.WorkerRemoved(1, 1);
        Assert.Equal(22, plan.OrphanCount);
        plan.RoundApplied(1);
        Assert.False(plan.PartTrained(8, 4.0));

        var further = plan.ContinueEpoch();
        Assert.Equal(1, further.Part);
        Assert.Equal(3, further.FirstRound); // round 2 is the cut part's closing broadcast
        Assert.Equal([0], further.Receivers);
        Assert.Equal(6, further.BatchSize);  // the global 6, on the one worker alive
        Assert.Equal(4, further.Steps);      // 22 samples in 4 balanced minibatches of 5 or 6
        int[] expected = [.. shards[2][2..], .. shards[0][4..], .. shards[1][2..]];
        Assert.Equal(expected.Order(), further.Shards.SelectMany(s => s).Order());
        Assert.True(plan.PartTrained(22, 9.0));
        Assert.Equal(30, plan.EpochSamples);
    }
}
