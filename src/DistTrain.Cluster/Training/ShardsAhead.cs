using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.Training;

/// <summary>
/// A worker's shards planned one epoch ahead. Planning an epoch from a <see cref="ShardRecipe"/> shuffles every training
/// sample's index (about 2 ms for 60,000 on the machine of <c>docs/benchmarks.md</c>), and a worker does it when the epoch's
/// <see cref="AssignShard"/> arrives, while its first step waits. So after each epoch's recipe this class starts planning the
/// next epoch on the thread pool with the same recipe (samples, workers, seed, the worker's place and slots), and the next
/// recipe takes that plan when it matches (no worker was lost or joined in between); else, or when planning ahead failed, it
/// plans as before. A further part of an epoch (pieces of its plan, after a worker was lost) is planned here, and leaves the plan
/// made ahead as it is. Either way the shards are checked against the recipe's digest (<see cref="AssignShard.Resolve"/>). It
/// keeps the worker's own shard only, or every shard when the recipe has slots (the asynchronous modes). One per worker;
/// not thread-safe.
/// </summary>
public sealed class ShardsAhead
{
    private (int Epoch, ShardRecipe Recipe, Task<int[][]> Plan)? _next;

    /// <summary>Recipes resolved from a plan made ahead.</summary>
    public int PlannedAhead { get; private set; }

    /// <summary>The 1-based epoch being planned ahead (or planned and not yet asked for); null for none.</summary>
    public int? PlanningEpoch => _next?.Epoch;

    /// <summary><paramref name="shard"/> with its sample indices in place (<see cref="AssignShard.Resolve"/>), from the plan made
    /// ahead when it fits; then starts planning the epoch after it, unless that is past the run's last (<see cref="AssignShard.Epochs"/>).</summary>
    /// <param name="shard">The shard message as it arrived.</param>
    /// <param name="trainingSamples">The worker's training samples.</param>
    /// <exception cref="ShardRecipeException">As <see cref="AssignShard.Resolve"/>.</exception>
    public AssignShard Resolve(AssignShard shard, int trainingSamples)
    {
        if (shard.Recipe is not { } recipe) return shard;
        // A further part's pieces may come from any shard of the plan, which this worker planned only its own of: plan here.
        if (recipe.Pieces is not null) return shard.Resolve(trainingSamples);
        int[][]? planned = null;
        if (_next is { } next && next.Epoch == shard.Epoch && SamePlan(next.Recipe, recipe))
        {
            try
            {
                planned = next.Plan.GetAwaiter().GetResult(); // done long since, but for an epoch shorter than a shuffle
            }
            catch (OutOfMemoryException)
            {
                // Planning ahead ran out of memory (a plan is 4 bytes per training sample): plan here, as without it.
            }
        }
        _next = null;
        var resolved = shard.Resolve(trainingSamples, planned);
        if (planned is not null) PlannedAhead++;
        var following = shard.Epoch + 1;
        if (shard.Epochs == 0 || following <= shard.Epochs) _next = (following, recipe, Task.Run(() => Plan(recipe, following)));
        return resolved;
    }

    /// <summary>What <see cref="AssignShard.Resolve"/> takes as planned: every shard, or (no slots) only the worker's own at its place.</summary>
    private static int[][] Plan(ShardRecipe recipe, int epoch)
    {
        var planner = recipe.Planner;
        if (recipe.Slots is not null) return planner.Plan(epoch);
        var own = new int[recipe.Workers][];
        own[recipe.Position] = planner.PlanShard(epoch, recipe.Position);
        return own;
    }

    /// <summary>True when two recipes plan the same shards for this worker in any one epoch (the digest aside).</summary>
    private static bool SamePlan(ShardRecipe a, ShardRecipe b) =>
        (a.SampleCount, a.Workers, a.Seed, a.Position, a.SlotCount) == (b.SampleCount, b.Workers, b.Seed, b.Position, b.SlotCount)
        && (a.Slots is null ? b.Slots is null : b.Slots is not null && a.Slots.AsSpan().SequenceEqual(b.Slots));
}
