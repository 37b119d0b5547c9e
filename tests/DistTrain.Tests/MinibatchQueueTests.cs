using DistTrain.Cluster.Training;

namespace DistTrain.Tests;

/// <summary>The asynchronous modes' minibatch queue, driven by hand: who gets which minibatch, in which order.</summary>
public class MinibatchQueueTests
{
    [Fact]
    public void Without_a_round_bound_a_free_worker_gets_its_own_shards_earliest_minibatch()
    {
        // int.MaxValue is how the asynchronous mode asks for "any round": the end of the search must not overflow.
        var queue = new MinibatchQueue();
        queue.Start([3, 2], firstRound: 0, workers: 2);
        Assert.Equal(5, queue.Count);
        Assert.Equal((0, 0), queue.Assign(0, int.MaxValue));
        Assert.Equal((0, 1), queue.Assign(1, int.MaxValue));
    }

    [Fact]
    public void A_fast_worker_takes_the_slow_workers_minibatches_and_every_minibatch_is_done_once()
    {
        var queue = new MinibatchQueue();
        queue.Start([2, 2], firstRound: 0, workers: 2);
        Assert.Equal((0, 0), queue.Assign(0, int.MaxValue));
        Assert.Equal((0, 1), queue.Assign(1, int.MaxValue));
        queue.Complete(0);
        Assert.Equal((1, 0), queue.Assign(0, int.MaxValue));
        queue.Complete(0);
        Assert.Equal((1, 1), queue.Assign(0, int.MaxValue)); // worker 1 is still on round 0: worker 0 takes shard 1's round 1
        queue.Complete(0);
        Assert.Null(queue.Assign(0, int.MaxValue));
        Assert.False(queue.AllDone);
        Assert.Equal(0, queue.FirstRoundNotDone());
        queue.Complete(1);
        Assert.True(queue.AllDone);
        Assert.Equal(2, queue.FirstRoundNotDone());
    }

    [Fact]
    public void A_round_bound_holds_a_fast_worker_back_until_the_oldest_round_is_done()
    {
        var queue = new MinibatchQueue();
        queue.Start([4, 4], firstRound: 0, workers: 2);
        queue.Assign(0, 1);
        queue.Assign(1, 1);
        queue.Complete(0);
        Assert.Equal((1, 0), queue.Assign(0, 1));
        queue.Complete(0);
        Assert.Equal((1, 1), queue.Assign(0, 1));
        queue.Complete(0);
        Assert.Null(queue.Assign(0, 1)); // round 2 is beyond the bound while round 0 waits for worker 1
        Assert.Equal((2, 0), queue.Assign(0, 2));
    }

    [Fact]
    public void A_lost_workers_minibatch_goes_back_and_a_resumed_checkpoints_minibatches_are_skipped()
    {
        var queue = new MinibatchQueue();
        queue.Start([2, 2], firstRound: 0, workers: 2, done: [(0, 1)]);
        Assert.Equal(3, queue.Remaining);
        Assert.Equal((0, 0), queue.Assign(0, int.MaxValue));
        Assert.Equal((1, 1), queue.Assign(1, int.MaxValue));
        Assert.Equal((1, 1), queue.Release(1));
        queue.Complete(0);
        Assert.Equal((1, 0), queue.Assign(0, int.MaxValue));
        queue.Complete(0);
        Assert.Equal((1, 1), queue.Assign(0, int.MaxValue));
        queue.Complete(0);
        Assert.True(queue.AllDone);
    }
}
