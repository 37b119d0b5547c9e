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
        AssertPiecesAreTheShards(further);

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
        AssertPiecesAreTheShards(further);
        // The survivor's shard is four pieces of the epoch's plan (plan shard, from, to), in the order they were kept: worker 2's
        // from its sample 2 on, workers 0's and 1's cut rounds (from sample 4 on), then worker 1's round 1 (samples 2 and 3).
        Assert.Equal([2, 2, 10, 0, 4, 10, 1, 4, 10, 1, 2, 4], further.Pieces![0]);
        Assert.True(plan.PartTrained(22, 9.0));
        Assert.Equal(30, plan.EpochSamples);
    }

    /// <summary>
    /// An epoch resumed at round 2 with 2 of the 3 workers its checkpoint was planned for, in the asynchronous modes' form:
    /// the checkpoint's minibatches of later rounds already trained (round 3 of shard 0, round 4 of shard 2) are left out of
    /// what the plan had left, so they are not trained twice, and the pieces are still exactly the shards (a left-out
    /// minibatch splits its shard's rest in two pieces).
    /// </summary>
    [Fact]
    public void An_epoch_resumed_with_fewer_workers_leaves_out_the_minibatches_its_checkpoint_trained_ahead()
    {
        // 30 samples over 3 workers, 10 each, in minibatches of 2: 5 rounds.
        var planner = new ShardPlanner(30, 3, seed: 7);
        var settings = new EpochPlanSettings(planner, workers => new ShardPlanner(30, workers, seed: 7),
            BatchSizePerWorker: 2, GlobalBatchSize: 6, FirstEpoch: 1, FirstRound: 2, SharedShards: true, TrainedAhead: [(3, 0), (4, 2)]);
        var plan = new EpochPlan(settings);
        for (var i = 0; i < 2; i++) plan.AddWorker(i);

        var part = plan.StartNextEpoch();

        Assert.Equal((1, 1, 2), (part.Epoch, part.Part, part.FirstRound));
        var planned = planner.Plan(1);
        int[] expected = [.. planned[0][4..6], .. planned[0][8..10], .. planned[1][4..10], .. planned[2][4..8]];
        Assert.Equal(expected.Order(), part.Shards.SelectMany(shard => shard).Order());
        Assert.Equal(14, part.Shards.Sum(shard => shard.Length));
        Assert.Equal([[0, 4, 6, 0, 8, 10, 1, 4, 7], [1, 7, 10, 2, 4, 8]], Assert.IsType<int[][]>(part.Pieces));
        AssertPiecesAreTheShards(part);
    }

    /// <summary>
    /// Asserts that each receiver's pieces of a further part (<see cref="PlannedPart.Pieces"/>), cut from the epoch's plan by the
    /// worker as <see cref="DistTrain.Cluster.Protocol.AssignShard.Resolve"/> does from the coordinator's recipe, are its shard
    /// exactly, and that the recipe's digest checks; also in the asynchronous modes' form (every slot's shard).
    /// </summary>
    private static void AssertPiecesAreTheShards(PlannedPart part)
    {
        var planner = Assert.IsType<ShardPlanner>(part.PlannedBy);
        var pieces = Assert.IsType<int[][]>(part.Pieces);
        foreach (var i in part.Receivers)
        {
            var recipe = new DistTrain.Cluster.Protocol.ShardRecipe(planner.SampleCount, planner.Workers, 0, planner.Seed, null, 0,
                ShardPlanner.Digest(part.Shards[i]), [pieces[i]]);
            Assert.Null(recipe.OutOfRange());
            var message = new DistTrain.Cluster.Protocol.AssignShard(part.Epoch, [], part.BatchSize, part.FirstRound, Part: part.Part, Recipe: recipe);
            Assert.Equal(part.Shards[i], message.Resolve(planner.SampleCount).SampleIndices);

            var shared = recipe with { Position = i, SlotCount = part.Shards.Length, Digest = ShardPlanner.Digest(part.Shards), Pieces = pieces };
            Assert.Null(shared.OutOfRange());
            var resolved = (message with { Recipe = shared }).Resolve(planner.SampleCount);
            Assert.Equal(part.Shards, resolved.Shards);
            Assert.Equal(part.Shards[i], resolved.SampleIndices);
        }
    }

    /// <summary>
    /// Whatever losses, cuts and minibatches left a part ends with, over several further parts, the pieces of each further part
    /// are its shards: 300 random epochs of 2 to 5 workers over 20 to 80 samples, with and without the global minibatch kept.
    /// </summary>
    [Fact]
    public void The_pieces_of_every_further_part_are_its_shards_whatever_was_lost_and_when()
    {
        var random = new Random(11);
        var furtherParts = 0;
        for (var trial = 0; trial < 300; trial++)
        {
            var (workers, samples, batch) = (random.Next(2, 6), random.Next(20, 81), random.Next(1, 5));
            var keepGlobalBatch = random.Next(2) == 0;
            var settings = new EpochPlanSettings(new ShardPlanner(samples, workers, seed: trial), n => new ShardPlanner(samples, n, seed: trial),
                BatchSizePerWorker: batch, GlobalBatchSize: keepGlobalBatch ? batch * workers : 0, FirstEpoch: 1, FirstRound: 0);
            var plan = new EpochPlan(settings);
            for (var i = 0; i < workers; i++) plan.AddWorker(i);
            var part = plan.StartNextEpoch();
            Assert.Null(part.Pieces);
            while (plan.AliveCount > 1)
            {
                // A round inside the part: the workers alive lose one of them there; what each had before it is trained.
                var round = random.Next(part.FirstRound, part.FirstRound + Math.Max(1, part.Rounds));
                var lost = plan.AliveWorkers[random.Next(plan.AliveCount)];
                Assert.True(plan.Lose(lost));
                plan.WorkerRemoved(lost, round);
                if (keepGlobalBatch) plan.PartCut(round);
                if (!keepGlobalBatch && random.Next(3) == 0)
                {
                    // The asynchronous modes' report form: a minibatch of a worker alive that was never trained.
                    var other = plan.AliveWorkers[random.Next(plan.AliveCount)];
                    if (part.Batches[other] > round) plan.MinibatchesLeft([other], [part.Batches[other] - 1]);
                }
                if (round > part.FirstRound) plan.RoundApplied(round - 1);
                if (plan.OrphanCount == 0) break;
                part = plan.ContinueEpoch();
                furtherParts++;
                AssertPiecesAreTheShards(part);
                Assert.Equal(0, plan.OrphanCount);
                foreach (var shard in part.Shards) Assert.All(shard, index => Assert.InRange(index, 0, samples - 1));
                Assert.Equal(part.Shards.Sum(s => s.Length), part.Shards.SelectMany(s => s).Distinct().Count());
            }
        }
        Assert.True(furtherParts > 300, $"{furtherParts} further parts");
    }

    /// <summary>
    /// The coordinator's shard messages (<c>Coordinator.ShardMessages</c>) in the asynchronous modes, minibatches of 1: an
    /// epoch's first part goes as a recipe with slots; the minibatches a lost worker left, reported one by one and alternating
    /// between two shards, make one piece each, which would take more bytes than their indices, so that further part goes as
    /// indices. Either way each worker gets every slot's shard.
    /// </summary>
    [Fact]
    public void A_further_part_goes_as_indices_when_its_pieces_would_take_more_bytes()
    {
        var settings = new EpochPlanSettings(new ShardPlanner(60, 3, seed: 7), workers => new ShardPlanner(60, workers, seed: 7),
            BatchSizePerWorker: 1, GlobalBatchSize: 0, FirstEpoch: 1, FirstRound: 0, SharedShards: true);
        var plan = new EpochPlan(settings);
        for (var i = 0; i < 3; i++) plan.AddWorker(i);
        var first = plan.StartNextEpoch();
        var firstMessages = DistTrain.Cluster.Actors.Coordinator.ShardMessages(first, scaling: 3, epochs: 2, recipes: true);
        Assert.All(firstMessages, m => Assert.NotNull(m.Recipe!.Slots));
        Assert.Equal(first.Shards, firstMessages[2].Resolve(60).Shards);

        Assert.True(plan.Lose(2));
        plan.WorkerRemoved(2, -1); // the parameter server hands the lost worker's minibatches out itself
        // Ten minibatches of shards 0 and 1 (rounds 5 to 14) never trained, reported alternately.
        plan.MinibatchesLeft([.. Enumerable.Range(0, 20).Select(k => k % 2)], [.. Enumerable.Range(0, 20).Select(k => 5 + k / 2)]);
        var further = plan.ContinueEpoch();
        Assert.Equal(20, further.Pieces!.Sum(p => p.Length / 3)); // one piece per minibatch: none continues the one before
        AssertPiecesAreTheShards(further);
        var messages = DistTrain.Cluster.Actors.Coordinator.ShardMessages(further, scaling: 2, epochs: 2, recipes: true);
        Assert.Equal(2, messages.Length);
        foreach (var (message, worker) in messages.Zip(further.Receivers))
        {
            Assert.Null(message.Recipe);
            Assert.Equal(further.Shards, message.Shards);
            Assert.Equal(further.Shards[worker], message.SampleIndices);
            var asPieces = message with
            {
                SampleIndices = [], Shards = null, Recipe = new DistTrain.Cluster.Protocol.ShardRecipe(60, 3, worker, 7, null, 3,
                    ShardPlanner.Digest(further.Shards), further.Pieces),
            };
            Assert.True(asPieces.EncodedBytesAtMost() > message.EncodedBytesAtMost(), "the pieces must be the larger form here");
        }
    }
}
