using Akka.Serialization;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Data;
using SerializationException = System.Runtime.Serialization.SerializationException;

namespace DistTrain.Tests;

/// <summary>
/// The shards of a part travel as a <see cref="ShardRecipe"/> from which each worker plans them itself
/// (<see cref="AssignShard.Resolve"/>): what it plans must be exactly the coordinator's plan, and a recipe it cannot follow,
/// or a hostile one from the network, must stop it with an error that names the problem.
/// </summary>
public class ShardRecipeTests() : TestKit(AkkaSettings.Serialization())
{
    private const int Samples = 1_000, Seed = 5;

    /// <summary>The message the coordinator sends worker <paramref name="position"/> of <paramref name="planner"/>'s plan in a lock-step mode.</summary>
    private static AssignShard OwnShard(ShardPlanner planner, int epoch, int position) => new(epoch, [], 16, Rounds: 21,
        Recipe: new ShardRecipe(planner.SampleCount, planner.Workers, position, planner.Seed, null, 0, ShardPlanner.Digest(planner.Plan(epoch)[position])));

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 1)]
    [InlineData(3, 7)]
    [InlineData(7, 2)]
    public void Each_worker_plans_exactly_the_coordinators_shard_of_the_epoch(int workers, int epoch)
    {
        var planner = new ShardPlanner(Samples, workers, Seed);
        var plan = planner.Plan(epoch);
        for (var position = 0; position < workers; position++)
        {
            var resolved = OwnShard(planner, epoch, position).Resolve(Samples);
            Assert.Equal(plan[position], resolved.SampleIndices);
            Assert.Null(resolved.Shards);
            Assert.Null(resolved.Recipe);
            Assert.Equal((16, 21), (resolved.BatchSize, resolved.Rounds));
        }
        Assert.Equal(Enumerable.Range(0, Samples), plan.SelectMany(shard => shard).Order()); // every sample once
        Assert.NotEqual(plan[0], new ShardPlanner(Samples, workers, Seed).PlanShard(epoch + 1, 0)); // another epoch, another shard
    }

    /// <summary>
    /// The asynchronous modes: every worker gets every shard, by worker index. Worker slot 1 was lost, so the plan of 3
    /// shards goes to slots 0, 2 and 3, and slot 1's shard is empty, as the coordinator's part holds it.
    /// </summary>
    [Fact]
    public void In_the_asynchronous_modes_each_worker_plans_every_shard_by_worker_index_with_lost_slots_empty()
    {
        var planner = new ShardPlanner(Samples, 3, Seed);
        var plan = planner.Plan(4);
        int[][] bySlot = [plan[0], [], plan[1], plan[2]];
        int[] slots = [0, 2, 3];
        for (var position = 0; position < 3; position++)
        {
            var message = new AssignShard(4, [], 16, Recipe: new ShardRecipe(Samples, 3, position, Seed, slots, 4, ShardPlanner.Digest(bySlot)));
            var resolved = message.Resolve(Samples);
            Assert.Equal(plan[position], resolved.SampleIndices);
            Assert.Equal(bySlot, resolved.Shards!);
            Assert.Equal(plan[position], resolved.ShardIndices(slots[position]));
        }
    }

    /// <summary>
    /// A worker plans the next epoch while it trains this one (<see cref="Cluster.Training.ShardsAhead"/>): the shards it then
    /// takes are the epoch's own, and a recipe of another planner (a worker was lost), another place in the plan or another
    /// epoch is planned anew.
    /// </summary>
    [Fact]
    public void Shards_planned_ahead_are_the_epochs_own_and_another_planner_or_epoch_is_planned_anew()
    {
        var ahead = new Cluster.Training.ShardsAhead();
        var three = new ShardPlanner(Samples, 3, Seed);
        var two = new ShardPlanner(Samples, 2, Seed);
        (ShardPlanner Planner, int Epoch, int Position, int Ahead)[] epochs =
            [(three, 1, 1, 0), (three, 2, 1, 1), (three, 3, 1, 2), (two, 4, 0, 2), (two, 5, 0, 3), (two, 7, 0, 3), (two, 8, 0, 4), (two, 9, 1, 4)];
        foreach (var (planner, epoch, position, plannedAhead) in epochs)
        {
            Assert.Equal(planner.Plan(epoch)[position], ahead.Resolve(OwnShard(planner, epoch, position), Samples).SampleIndices);
            Assert.Equal(plannedAhead, ahead.PlannedAhead);
        }
        Assert.Equal(10, ahead.PlanningEpoch);
        var indices = new AssignShard(9, [4, 2], 16);
        Assert.Same(indices, ahead.Resolve(indices, Samples)); // indices pass as they are

        // The run's last epoch (AssignShard.Epochs): nothing is planned past it.
        Assert.Equal(two.Plan(10)[1], ahead.Resolve(OwnShard(two, 10, 1) with { Epochs = 10 }, Samples).SampleIndices);
        Assert.Equal(5, ahead.PlannedAhead);
        Assert.Null(ahead.PlanningEpoch);
    }

    /// <summary>A plan given from elsewhere that does not fit the recipe (another worker count, or shards missing where the
    /// recipe needs every one) is set aside and the shards are planned here.</summary>
    [Fact]
    public void A_plan_given_that_does_not_fit_the_recipe_is_planned_anew()
    {
        var planner = new ShardPlanner(Samples, 3, Seed);
        var plan = planner.Plan(2);
        var own = OwnShard(planner, 2, 1);
        Assert.Equal(plan[1], own.Resolve(Samples, [plan[0], plan[1]]).SampleIndices);                 // a plan of 2 shards
        Assert.Equal(plan[1], own.Resolve(Samples, [null!, null!, null!]).SampleIndices);              // without the worker's own
        var all = new AssignShard(2, [], 16, Recipe: new ShardRecipe(Samples, 3, 1, Seed, [0, 1, 2], 3, ShardPlanner.Digest(plan)));
        Assert.Equal(plan, all.Resolve(Samples, [null!, plan[1], null!]).Shards!);                    // sparse, where every shard is needed
    }

    [Fact]
    public void A_recipe_with_slots_round_trips_through_the_serializer_and_plans_the_same_shards()
    {
        var planner = new ShardPlanner(Samples, 3, Seed);
        int[] slots = [2, 0, 1];
        var plan = planner.Plan(2);
        var message = new AssignShard(2, [], 16, Recipe: new ShardRecipe(Samples, 3, 1, Seed, slots, 3, ShardPlanner.Digest(plan[1], plan[2], plan[0])));
        var serializer = (SerializerWithStringManifest)Sys.Serialization.FindSerializerFor(message);
        var bytes = serializer.ToBinary(message);
        Assert.True(bytes.Length < 100, $"a recipe took {bytes.Length} bytes");
        var back = Assert.IsType<AssignShard>(serializer.FromBinary(bytes, nameof(AssignShard)));
        Assert.Equal(slots, back.Recipe!.Slots!);
        Assert.Equal(message.Recipe! with { Slots = null }, back.Recipe with { Slots = null });
        Assert.Equal(message.Resolve(Samples).Shards!, back.Resolve(Samples).Shards!);
    }

    [Fact]
    public void A_worker_with_another_number_of_training_samples_stops_naming_both_counts_and_the_fix()
    {
        var error = Assert.Throws<ShardRecipeException>(() => OwnShard(new ShardPlanner(Samples, 2, Seed), 1, 0).Resolve(999));
        Assert.Equal("Epoch 1: the parameter server planned the shards over 1,000 training samples, and this worker holds 999. Give every node " +
            "of the job the same training data and the same Data settings (Data:TrainLimit, Data:ValidationFraction), and run the same DistTrain " +
            "version on each.", error.Message);
    }

    [Fact]
    public void A_worker_that_plans_other_shards_than_the_coordinator_stops_instead_of_training_on_them()
    {
        // As a node whose shuffle differed would: the digest is of the coordinator's shard, the plan here another seed's.
        var coordinators = OwnShard(new ShardPlanner(Samples, 2, Seed), 3, 1);
        var differing = coordinators with { Recipe = coordinators.Recipe! with { Seed = Seed + 1 } };
        var error = Assert.Throws<ShardRecipeException>(() => differing.Resolve(Samples));
        Assert.StartsWith("Epoch 3: the shards this worker planned from the parameter server's recipe (seed 6, 1,000 samples, 2 workers) differ " +
            "from the parameter server's (digest ", error.Message);
        Assert.EndsWith("run the same DistTrain version, on the same .NET runtime, on every node of the job.", error.Message);
    }

    [Fact]
    public void The_digest_tells_another_order_index_or_cut_from_the_shards_planned()
    {
        var digest = ShardPlanner.Digest([1, 2], [3]);
        Assert.Equal(digest, ShardPlanner.Digest([1, 2], [3]));
        Assert.NotEqual(digest, ShardPlanner.Digest([2, 1], [3]));
        Assert.NotEqual(digest, ShardPlanner.Digest([1, 2], [4]));
        Assert.NotEqual(digest, ShardPlanner.Digest([1], [2, 3]));
        Assert.NotEqual(digest, ShardPlanner.Digest([1, 2], [3], []));
    }

    /// <summary>The shard message's own fields are range-checked too: a minibatch of 0 samples would fail only at the worker's step.</summary>
    [Theory]
    [InlineData(0, 16, 0, 0, "Epoch 0 is below 1")]
    [InlineData(1, 0, 0, 0, "BatchSize 0 is below 1")]
    [InlineData(1, 16, -1, 0, "FirstRound -1 is below 0")]
    [InlineData(1, 16, 0, -2, "Steps -2 is below 0")]
    public void A_shard_message_out_of_range_is_refused_as_it_is_decoded_naming_the_field(int epoch, int batchSize, int firstRound, int steps, string problem)
    {
        var message = new AssignShard(epoch, [3, 1], batchSize, FirstRound: firstRound, Steps: steps);
        var serializer = (SerializerWithStringManifest)Sys.Serialization.FindSerializerFor(message);
        var error = Assert.Throws<SerializationException>(() => serializer.FromBinary(serializer.ToBinary(message), nameof(AssignShard)));
        Assert.Contains($"is out of range: {problem}.", error.Message);
    }

    /// <summary>A recipe from the network is range-checked as it is decoded, before a worker plans anything from it.</summary>
    [Theory]
    [InlineData(0, 3, 0, null, 0, "Recipe.SampleCount 0 is below 1")]
    [InlineData(1_000, 0, 0, null, 0, "Recipe.Workers 0 is outside 1 to 256")]
    [InlineData(1_000, 100_000, 0, null, 0, "Recipe.Workers 100000 is outside 1 to 256")]
    [InlineData(1_000, 3, 3, null, 0, "Recipe.Position 3 is outside 0 to 2")]
    [InlineData(1_000, 3, -1, null, 0, "Recipe.Position -1 is outside 0 to 2")]
    [InlineData(1_000, 3, 0, null, 4, "Recipe.SlotCount 4 is not 0 without Recipe.Slots")]
    [InlineData(1_000, 3, 0, new[] { 0, 1, 2 }, 2, "Recipe.SlotCount 2 is outside 3 to 256")]
    [InlineData(1_000, 3, 0, new[] { 0, 1 }, 3, "Recipe.Slots holds 2 worker indices for 3 workers")]
    [InlineData(1_000, 3, 0, new[] { 0, 1, 3 }, 3, "Recipe.Slots holds worker index 3, outside 0 to 2")]
    [InlineData(1_000, 3, 0, new[] { 0, 2, 0 }, 3, "Recipe.Slots holds worker index 0 twice")]
    public void A_recipe_out_of_range_is_refused_as_it_is_decoded_naming_the_field(int samples, int workers, int position, int[]? slots, int slotCount,
        string problem)
    {
        var message = new AssignShard(1, [], 16, Recipe: new ShardRecipe(samples, workers, position, Seed, slots, slotCount, 42));
        var serializer = (SerializerWithStringManifest)Sys.Serialization.FindSerializerFor(message);
        var error = Assert.Throws<SerializationException>(() => serializer.FromBinary(serializer.ToBinary(message), nameof(AssignShard)));
        Assert.Contains($"is out of range: {problem}.", error.Message);
    }

    /// <summary>
    /// A further part (the samples lost workers left) travels as pieces of the epoch's plan: the worker cuts them from the plan
    /// in order, after a round trip through the serializer, in its own-shard form and in the asynchronous modes' form (a shard
    /// per worker slot); EpochPlanTests checks that the coordinator's pieces are its shards.
    /// </summary>
    [Fact]
    public void A_further_parts_pieces_round_trip_and_are_cut_from_the_epochs_plan_in_order()
    {
        var planner = new ShardPlanner(Samples, 3, Seed);
        var plan = planner.Plan(2);
        int[] own = [1, 10, 20, 0, 0, 5];
        int[] expected = [.. plan[1][10..20], .. plan[0][..5]];
        var message = new AssignShard(2, [], 16, FirstRound: 40, Part: 1,
            Recipe: new ShardRecipe(Samples, 3, 0, Seed, null, 0, ShardPlanner.Digest(expected), [own]));
        var serializer = (SerializerWithStringManifest)Sys.Serialization.FindSerializerFor(message);
        var back = Assert.IsType<AssignShard>(serializer.FromBinary(serializer.ToBinary(message), nameof(AssignShard)));
        Assert.Equal(own, Assert.Single(back.Recipe!.Pieces!));
        var resolved = back.Resolve(Samples);
        Assert.Equal(expected, resolved.SampleIndices);
        Assert.Null(resolved.Shards);
        Assert.Null(resolved.Recipe);
        Assert.True(serializer.ToBinary(message).Length < 100);

        // Slots 0 and 2 alive, slot 1 lost (no pieces): the worker in slot 2 gets every slot's shard, its own at its slot.
        int[][] slots = [own, [], [2, 300, 333]];
        int[][] shards = [expected, [], plan[2][300..333]];
        var shared = message with { Recipe = new ShardRecipe(Samples, 3, 2, Seed, null, 3, ShardPlanner.Digest(shards), slots) };
        var sharedBack = Assert.IsType<AssignShard>(serializer.FromBinary(serializer.ToBinary(shared), nameof(AssignShard))).Resolve(Samples);
        Assert.Equal(shards, sharedBack.Shards!);
        Assert.Equal(shards[2], sharedBack.SampleIndices);
    }

    [Fact]
    public void A_piece_past_the_end_of_its_shard_here_stops_the_worker_naming_the_piece_and_the_fix()
    {
        // 1,000 samples over 3 shards: 334, 333, 333. A coordinator that cut 3 shards of 400 would name samples 300 to 340.
        var message = new AssignShard(2, [], 16, Part: 1, Recipe: new ShardRecipe(Samples, 3, 0, Seed, null, 0, 42, [[2, 300, 340]]));
        var error = Assert.Throws<ShardRecipeException>(() => message.Resolve(Samples));
        Assert.Equal("Epoch 2: a piece of the parameter server's recipe (seed 5, 1,000 samples, 3 workers) takes samples 300 to 340 of shard 2, which " +
            "holds 333 here. The nodes plan shards differently: run the same DistTrain version, on the same .NET runtime, on every node of the job.",
            error.Message);
        // In range, but not the coordinator's samples: the digest stops it.
        Assert.Throws<ShardRecipeException>(() => (message with { Recipe = message.Recipe! with { Pieces = [[2, 300, 333]] } }).Resolve(Samples));
    }

    /// <summary>A further part's pieces from the network are range-checked as they are decoded: a hostile message cannot make a worker
    /// build more indices than its training set holds, or read outside the plan.</summary>
    [Theory]
    [InlineData("two shards without slots", "Recipe.Pieces holds 2 shards for Recipe.SlotCount 0 (1 when 0, else as many, at most 256)")]
    [InlineData("one shard for two slots", "Recipe.Pieces holds 1 shards for Recipe.SlotCount 2 (1 when 0, else as many, at most 256)")]
    [InlineData("position past the shards", "Recipe.Position 1 is outside 0 to 0")]
    [InlineData("slots beside pieces", "Recipe.Slots is set beside Recipe.Pieces")]
    [InlineData("not triples", "Recipe.Pieces holds a shard that is not triples (plan shard, from, to)")]
    [InlineData("shard outside the plan", "Recipe.Pieces names plan shard 3, outside 0 to 2")]
    [InlineData("reversed", "Recipe.Pieces holds samples 20 to 10, outside 0 to 1000 or reversed")]
    [InlineData("past the samples", "Recipe.Pieces holds samples 0 to 1001, outside 0 to 1000 or reversed")]
    [InlineData("more than the samples", "Recipe.Pieces hold 1,200 samples in all, more than Recipe.SampleCount 1,000")]
    public void A_further_parts_pieces_out_of_range_are_refused_as_they_are_decoded_naming_the_field(string form, string problem)
    {
        var valid = new ShardRecipe(Samples, 3, 0, Seed, null, 0, 42, [[0, 0, 10]]);
        var recipe = form switch
        {
            "two shards without slots" => valid with { Pieces = [[0, 0, 10], []] },
            "one shard for two slots" => valid with { SlotCount = 2 },
            "position past the shards" => valid with { Position = 1 },
            "slots beside pieces" => valid with { Slots = [0, 1, 2], SlotCount = 3, Pieces = [[], [], []] },
            "not triples" => valid with { Pieces = [[0, 0, 10, 1]] },
            "shard outside the plan" => valid with { Pieces = [[3, 0, 10]] },
            "reversed" => valid with { Pieces = [[0, 20, 10]] },
            "past the samples" => valid with { Pieces = [[0, 0, 1_001]] },
            "more than the samples" => valid with { SlotCount = 2, Pieces = [[0, 0, 600], [1, 0, 600]] },
            _ => throw new ArgumentOutOfRangeException(nameof(form)),
        };
        Assert.Null(new AssignShard(1, [], 16, Recipe: valid).OutOfRange());
        var message = new AssignShard(1, [], 16, Recipe: recipe);
        var serializer = (SerializerWithStringManifest)Sys.Serialization.FindSerializerFor(message);
        var error = Assert.Throws<SerializationException>(() => serializer.FromBinary(serializer.ToBinary(message), nameof(AssignShard)));
        Assert.Contains($"is out of range: {problem}.", error.Message);
    }
}
