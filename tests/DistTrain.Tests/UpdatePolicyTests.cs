using DistTrain.Core.Checkpoints;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Core.Configuration;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

/// <summary>
/// The update policies without actors: hand-made gradients for a 3-parameter model (Dense 2 → 1: two weights and a
/// bias), given in chosen arrival orders, and the weights, versions, staleness and messages that come out.
/// </summary>
public class UpdatePolicyTests
{
    private const float Rate = 0.5f;

    private static (ServerModel Model, WeightsOutbox Outbox, Recorder Output, WireLayout Wire) Server(double momentum = 0, bool scaleByWorkers = false,
        LearningRateScheduleKind schedule = LearningRateScheduleKind.Constant)
    {
        var options = new ModelOptions { InputSize = 2, Layers = [new() { Type = LayerTypes.Dense, Units = 1 }] };
        var layout = ModelFactory.Build(options).Layout;
        var weights = new ParameterVector(layout, new float[layout.TotalLength]); // all zero: the steps are easy to follow
        var optimizer = new OptimizerOptions { LearningRate = Rate, Momentum = momentum, L2 = 0, ScaleLearningRateByWorkers = scaleByWorkers,
            Schedule = new() { Kind = schedule } };
        var model = new ServerModel(weights, optimizer, totalEpochs: 1);
        var wire = WireLayout.For(layout, TrainingMode.Sync, optimizer);
        return (model, new WeightsOutbox((float[])weights.Values.Clone(), layout.TotalLength), new Recorder(), wire);
    }

    private static EpochPart TwoWorkers(int batchesEach) => new(1, [true, true], [batchesEach, batchesEach], 0, 0, MidEpochResumable: false);

    private static GradientComputed Gradient(int worker, int round, long version, int samples, params float[] values) =>
        new(1, round, version, worker, samples, lossSum: samples, values);

    [Fact]
    public void Sync_waits_for_every_worker_and_averages_by_sample_count_whatever_the_arrival_order()
    {
        foreach (var firstWorker in new[] { 0, 1 })
        {
            var (model, outbox, output, wire) = Server();
            var policy = new SyncPolicy(model, outbox, output, wire);
            policy.Start(TwoWorkers(1));
            Assert.Single(output.Broadcasts); // version 0 to both
            var reports = new[] { Gradient(0, 0, 0, 30, 1, 2, 3), Gradient(1, 0, 0, 10, 5, 6, 7) };
            Assert.Null(policy.Accept(reports[firstWorker]));
            Assert.Empty(output.Steps); // waits for the other worker
            Assert.Null(policy.Accept(reports[1 - firstWorker]));
            // (30·g0 + 10·g1) / 40 = (2, 3, 4); w = 0 − 0.5·(2, 3, 4)
            Assert.Equal([-1f, -1.5f, -2f], model.Weights.Values);
            Assert.Equal(1, model.Version);
            Assert.Single(output.Steps);
            Assert.Equal([0d, 0d], output.Steps[0].Staleness);
            Assert.Single(output.Completed);
        }
    }

    [Fact]
    public void Sync_rejects_a_report_of_the_wrong_round_or_twice_and_never_applies_it()
    {
        var (model, outbox, output, wire) = Server();
        var policy = new SyncPolicy(model, outbox, output, wire);
        policy.Start(TwoWorkers(2));
        Assert.NotNull(policy.Accept(Gradient(0, 1, 0, 10, 1, 1, 1)));
        Assert.Null(policy.Accept(Gradient(0, 0, 0, 10, 1, 1, 1)));
        Assert.NotNull(policy.Accept(Gradient(0, 0, 0, 10, 1, 1, 1)));
        Assert.Equal(0, model.Version);
    }

    /// <summary>
    /// An Async checkpoint's minibatches trained ahead are done from the start of the part that resumes it (part 0, on the
    /// checkpoint's plan), and not in a further part that starts at the same round (a resume with fewer workers, whose
    /// minibatches are others: the coordinator left the trained-ahead ones out of it). Either way the epoch's totals go on
    /// from the checkpoint's.
    /// </summary>
    [Theory]
    [InlineData(0, 2)]
    [InlineData(1, 0)]
    public void Async_resumed_takes_the_minibatches_trained_ahead_as_done_only_in_the_part_of_the_checkpoints_plan(int part, int done)
    {
        var (model, outbox, output, wire) = Server();
        var checkpoint = new TrainingCheckpoint(model.Weights, [], OptimizerKind.Sgd, optimizerSteps: 4, version: 4, epoch: 1, round: 1, shardSeed: 7,
            workers: 2, batchSizePerWorker: 1, epochSamples: 4, epochLossSum: 4, mode: TrainingMode.Async, trainedAhead: [(2, 0), (3, 1)]);
        var policy = new AsyncPolicy(model, outbox, output, wire, stalenessAwareRate: false, resumeFrom: checkpoint);

        policy.Start(new EpochPart(1, [true, true], [4, 4], 1, 0, MidEpochResumable: part == 0, Part: part));

        Assert.Equal(6, policy.Queue.Count); // rounds 1 to 3 of 2 shards
        Assert.Equal(done, policy.Queue.Count - policy.Queue.Remaining);
        Assert.Equal(4, policy.EpochSamples);
    }

    [Fact]
    public void Async_applies_each_gradient_as_it_arrives_and_records_its_staleness()
    {
        var (model, outbox, output, wire) = Server();
        var policy = new AsyncPolicy(model, outbox, output, wire, stalenessAwareRate: false);
        policy.Start(TwoWorkers(2));
        Assert.Equal([(0, 0L), (1, 0L)], output.Sent.Select(s => (s.Worker, s.Version)));
        // Worker 1 answers first: applied alone at once, and worker 1 alone gets version 1 and its next minibatch.
        Assert.Null(policy.Accept(Gradient(1, 0, 0, 10, 2, 2, 2)));
        Assert.Equal([-1f, -1f, -1f], model.Weights.Values);
        Assert.Equal((1, 1L), (output.Sent[^1].Worker, output.Sent[^1].Version));
        // Worker 0's gradient was computed on version 0 and is applied at version 1: staleness 1.
        Assert.Null(policy.Accept(Gradient(0, 0, 0, 10, 4, 0, 0)));
        Assert.Equal([-3f, -1f, -1f], model.Weights.Values);
        Assert.Equal(2, model.Version);
        Assert.Equal([double.NaN, 0d], output.Steps[0].Staleness);
        Assert.Equal([1d, double.NaN], output.Steps[1].Staleness);
    }

    /// <summary>
    /// A checkpoint every step, in Async: the first step of an epoch applies worker 1's round-0 minibatch while worker 0's is in
    /// flight, so the position would be round 0 with a minibatch trained, which a resume would take for the epoch's start. No
    /// checkpoint is due there (one used to be); the next step, which completes round 0, gives one at round 1.
    /// </summary>
    [Fact]
    public void Async_writes_no_checkpoint_at_round_0_within_an_epoch()
    {
        var (model, outbox, output, wire) = Server();
        var policy = new AsyncPolicy(model, outbox, output, wire, stalenessAwareRate: false, checkpointEverySteps: 1);
        policy.Start(new EpochPart(1, [true, true], [3, 3], 0, 0, MidEpochResumable: true));
        Assert.Null(policy.Accept(Gradient(1, 0, 0, 10, 2, 2, 2)));
        Assert.Null(policy.TakeDueCheckpoint());
        Assert.Null(policy.Accept(Gradient(0, 0, 0, 10, 4, 0, 0)));
        var due = policy.TakeDueCheckpoint();
        Assert.NotNull(due);
        Assert.Equal((1, 1, 20), (due.Epoch, due.Round, due.EpochSamples));
        Assert.Empty(due.TrainedAhead);
    }

    [Fact]
    public void Async_with_the_staleness_aware_rate_divides_a_stale_gradients_step_by_staleness_plus_one()
    {
        var (model, outbox, output, wire) = Server();
        var policy = new AsyncPolicy(model, outbox, output, wire, stalenessAwareRate: true);
        policy.Start(TwoWorkers(2));
        policy.Accept(Gradient(1, 0, 0, 10, 2, 2, 2));
        policy.Accept(Gradient(0, 0, 0, 10, 4, 0, 0)); // staleness 1: rate 0.25
        Assert.Equal([-2f, -1f, -1f], model.Weights.Values);
    }

    [Fact]
    public void The_linear_scaling_rule_multiplies_a_lock_step_rate_by_the_workers_but_not_an_Async_step_of_one_workers_minibatch()
    {
        var (syncModel, syncOutbox, syncOutput, syncWire) = Server(scaleByWorkers: true);
        var sync = new SyncPolicy(syncModel, syncOutbox, syncOutput, syncWire);
        sync.Start(TwoWorkers(1));
        sync.Accept(Gradient(0, 0, 0, 10, 2, 2, 2));
        sync.Accept(Gradient(1, 0, 0, 10, 2, 2, 2));
        Assert.Equal([-2f, -2f, -2f], syncModel.Weights.Values); // rate 0.5 × 2 workers on the average (2, 2, 2)

        var (model, outbox, output, wire) = Server(scaleByWorkers: true);
        var policy = new AsyncPolicy(model, outbox, output, wire, stalenessAwareRate: false);
        policy.Start(TwoWorkers(2));
        policy.Accept(Gradient(1, 0, 0, 10, 2, 2, 2));
        Assert.Equal([-1f, -1f, -1f], model.Weights.Values); // rate 0.5: one worker's minibatch
    }

    [Fact]
    public void Async_gives_a_lost_workers_minibatch_to_a_free_worker_and_every_minibatch_is_applied_once()
    {
        var (model, outbox, output, wire) = Server();
        var policy = new AsyncPolicy(model, outbox, output, wire, stalenessAwareRate: false);
        policy.Start(TwoWorkers(1)); // (round 0, shard 0) to worker 0, (0, 1) to worker 1
        policy.Accept(Gradient(0, 0, 0, 10, 1, 1, 1));
        policy.RemoveWorker(1);
        // Worker 0 is free and takes shard 1's minibatch, on the newest weights.
        Assert.Equal((0, 1L, 0, 1), (output.Sent[^1].Worker, output.Sent[^1].Version, output.Sent[^1].Round, output.Sent[^1].Shard));
        Assert.Null(policy.Accept(Gradient(0, 0, 1, 10, 1, 1, 1)));
        Assert.Equal(2, model.Version);
        Assert.Single(output.Completed);
        Assert.Equal(20, policy.EpochSamples);
    }

    /// <summary>Cosine over one epoch at position p (η_min = 0): η (1 + cos πp) / 2.</summary>
    private static double CosineAt(double p) => Rate * (1 + Math.Cos(Math.PI * p)) / 2;

    /// <summary>
    /// Async, Cosine over one epoch of 2 shards × 2 minibatches (4 steps). Two steps are applied, then both workers are lost;
    /// the 2 minibatches left go to one worker in a further part, as <paramref name="minibatches"/> minibatches (1: the
    /// global minibatch kept, so one of twice the samples). The further part starts where the epoch stood (step 2 of 4)
    /// and its minibatches share the 2 steps left, so its last ends the epoch where the plan's last would have. Before,
    /// it started at its first round's share of an epoch of its own shard count (3 of 2: the schedule's end, rate 0).
    /// </summary>
    [Theory]
    [InlineData(1, new[] { 0.5 })]
    [InlineData(2, new[] { 0.5, 0.75 })]
    [InlineData(4, new[] { 0.5, 0.625, 0.75, 0.875 })]
    public void Async_further_part_after_every_worker_was_lost_goes_on_from_the_epochs_schedule_position(int minibatches, double[] positions)
    {
        var (model, outbox, output, wire) = Server(schedule: LearningRateScheduleKind.Cosine);
        var policy = new AsyncPolicy(model, outbox, output, wire, stalenessAwareRate: false);
        policy.Start(TwoWorkers(2));
        Assert.Null(policy.Accept(Gradient(0, 0, 0, 10, 1, 1, 1)));
        Assert.Null(policy.Accept(Gradient(1, 0, 0, 10, 1, 1, 1)));
        policy.RemoveWorker(0);
        policy.RemoveWorker(1);
        Assert.Single(output.Completed); // the part ends without workers, its minibatches left for a further part
        // The further part: worker 0 again, from round 3 (the coordinator skips one after the last applied).
        policy.Start(new EpochPart(1, [true, false], [3 + minibatches, 0], 3, StepsPerEpoch: 2, MidEpochResumable: false, Part: 1));
        for (var i = 0; i < minibatches; i++)
            Assert.Null(policy.Accept(Gradient(0, 3 + i, model.Version, 20 / minibatches, 1, 1, 1)));
        Assert.Equal(2, output.Completed.Count);
        double[] expected = [CosineAt(0), CosineAt(0.25), .. positions.Select(CosineAt)];
        Assert.Equal(expected.Length, output.Rates.Count);
        for (var i = 0; i < expected.Length; i++) Assert.Equal(expected[i], output.Rates[i], 1e-12);
    }

    /// <summary>
    /// The same further part on a policy that applied none of the epoch (a resume with fewer workers, or a new parameter
    /// server): it starts at its first round's share of the epoch (round 1 of 2: halfway) and its 3 minibatches share the
    /// half left.
    /// </summary>
    [Fact]
    public void Async_further_part_on_a_new_policy_starts_at_its_first_rounds_share_of_the_epoch()
    {
        var (model, outbox, output, wire) = Server(schedule: LearningRateScheduleKind.Cosine);
        var policy = new AsyncPolicy(model, outbox, output, wire, stalenessAwareRate: false);
        policy.Start(new EpochPart(1, [true], [4], 1, StepsPerEpoch: 2, MidEpochResumable: false, Part: 1));
        for (var i = 0; i < 3; i++) Assert.Null(policy.Accept(Gradient(0, 1 + i, model.Version, 10, 1, 1, 1)));
        double[] expected = [CosineAt(0.5), CosineAt(0.5 + 0.5 / 3), CosineAt(0.5 + 1.0 / 3)];
        Assert.Equal(expected.Length, output.Rates.Count);
        for (var i = 0; i < expected.Length; i++) Assert.Equal(expected[i], output.Rates[i], 1e-6);
    }

    [Fact]
    public void BoundedStaleness_lets_a_fast_worker_run_the_bound_ahead_then_makes_it_wait()
    {
        var (model, outbox, output, wire) = Server();
        var policy = new BoundedStalenessPolicy(model, outbox, output, wire, stalenessBound: 1, stalenessAwareRate: false);
        policy.Start(TwoWorkers(3));
        Assert.Equal(2, output.Sent.Count);
        policy.Accept(Gradient(0, 0, 0, 10, 1, 1, 1));
        // Round 0 waits for worker 1, but worker 0 may compute round 1 (the bound) on version 0.
        Assert.Equal(0, model.Version);
        Assert.Equal((0, 1, 0L), (output.Sent[^1].Worker, output.Sent[^1].Round, output.Sent[^1].Version));
        policy.Accept(Gradient(0, 1, 0, 10, 1, 1, 1));
        // Still within the bound: worker 0 takes shard 1's round-1 minibatch too; round 2 is beyond it.
        Assert.Equal((0, 1, 1, 0L), (output.Sent[^1].Worker, output.Sent[^1].Round, output.Sent[^1].Shard, output.Sent[^1].Version));
        Assert.Equal(4, output.Sent.Count);
        policy.Accept(Gradient(1, 0, 0, 10, 1, 1, 1));
        // Round 0 is applied (version 1); worker 1 now gets round 2 on version 1.
        Assert.Equal(1, model.Version);
        Assert.Equal((1, 2, 1L), (output.Sent[^1].Worker, output.Sent[^1].Round, output.Sent[^1].Version));
        policy.Accept(Gradient(0, 1, 0, 10, 1, 1, 1));
        // Round 1 (both minibatches from worker 0, computed on version 0) is applied at version 1: staleness 1.
        Assert.Equal(2, model.Version);
        Assert.Equal([1d, double.NaN], output.Steps[^1].Staleness);
    }

    [Fact]
    public void BoundedStaleness_records_the_position_of_the_last_round_when_one_report_completes_two()
    {
        // Checkpoints every 2 steps. Worker 0 runs ahead through rounds 1 and 2 (shard 1's round-2 minibatch too) while
        // worker 1 computes round 1; its report then completes round 1 (version 2: a checkpoint is due) and round 2
        // (version 3) in one message. The checkpoint is written after the message, of the weights at version 3, so it must
        // name round 3 as the next: naming round 2 would have a resume apply round 2 a second time.
        var (model, outbox, output, wire) = Server();
        var policy = new BoundedStalenessPolicy(model, outbox, output, wire, stalenessBound: 1, stalenessAwareRate: false, checkpointEverySteps: 2);
        policy.Start(new EpochPart(1, [true, true], [4, 4], 0, 0, MidEpochResumable: true));
        Assert.Null(policy.Accept(Gradient(0, 0, 0, 10, 1, 1, 1)));
        Assert.Null(policy.Accept(Gradient(1, 0, 0, 10, 1, 1, 1))); // round 0: version 1
        Assert.Null(policy.Accept(Gradient(0, 1, 0, 10, 1, 1, 1))); // worker 0's round 1, computed on version 0
        Assert.Null(policy.Accept(Gradient(0, 2, 1, 10, 1, 1, 1))); // its round 2
        Assert.Null(policy.Accept(Gradient(0, 2, 1, 10, 1, 1, 1))); // shard 1's round 2: round 2 is complete, round 1 is not
        Assert.Equal(1, model.Version);
        Assert.Null(policy.TakeDueCheckpoint());
        Assert.Null(policy.Accept(Gradient(1, 1, 1, 10, 1, 1, 1))); // rounds 1 and 2
        Assert.Equal(3, model.Version);
        var due = policy.TakeDueCheckpoint();
        Assert.NotNull(due);
        Assert.Equal((1, 3), (due.Epoch, due.Round));
    }

    [Fact]
    public void LocalSgd_averages_the_workers_models_by_sample_count()
    {
        var options = new ModelOptions { InputSize = 2, Layers = [new() { Type = LayerTypes.Dense, Units = 1 }] };
        var layout = ModelFactory.Build(options).Layout;
        var optimizer = new OptimizerOptions { LearningRate = Rate, Momentum = 0, L2 = 0 };
        var model = new ServerModel(new ParameterVector(layout, new float[layout.TotalLength]), optimizer, totalEpochs: 1);
        var wire = WireLayout.For(layout, TrainingMode.LocalSgd, optimizer);
        var initial = new float[wire.WeightsLength];
        var output = new Recorder();
        var policy = new LocalSgdPolicy(model, new WeightsOutbox(initial, layout.TotalLength), output, wire, localSteps: 2);
        policy.Start(TwoWorkers(2));
        // Each report is the worker's model after its 2 local steps (plain SGD: no optimizer state).
        var zeros = new float[wire.ReportLength - 3];
        Assert.Null(policy.Accept(Gradient(0, 0, 0, 30, [1, 2, 3, .. zeros])));
        Assert.Null(policy.Accept(Gradient(1, 0, 0, 10, [5, 6, 7, .. zeros])));
        Assert.Equal([2f, 3f, 4f], model.Weights.Values);
        Assert.Equal(2, model.Version); // two optimizer steps per averaging
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void LocalSgd_with_the_global_minibatch_kept_ends_the_part_after_the_period_in_progress_when_a_worker_is_lost(bool keepGlobalBatch)
    {
        // 3 workers with 6 minibatches each, periods of 2 local steps; worker 2 is lost before reporting the first period.
        var options = new ModelOptions { InputSize = 2, Layers = [new() { Type = LayerTypes.Dense, Units = 1 }] };
        var layout = ModelFactory.Build(options).Layout;
        var optimizer = new OptimizerOptions { LearningRate = Rate, Momentum = 0, L2 = 0 };
        var model = new ServerModel(new ParameterVector(layout, new float[layout.TotalLength]), optimizer, totalEpochs: 1);
        var wire = WireLayout.For(layout, TrainingMode.LocalSgd, optimizer);
        var output = new Recorder();
        var policy = new LocalSgdPolicy(model, new WeightsOutbox(new float[wire.WeightsLength], layout.TotalLength), output, wire, localSteps: 2);
        policy.Start(new EpochPart(1, [true, true, true], [6, 6, 6], 0, 0, MidEpochResumable: true, Part: 3, KeepGlobalBatch: keepGlobalBatch));
        Assert.Equal((0, 3, 6), output.BroadcastRounds[0]);
        policy.RemoveWorker(2);
        var removed = Assert.Single(output.Removed);
        Assert.Equal((2, 0, keepGlobalBatch ? 2 : -1), (removed.WorkerIndex, removed.FirstUnusedRound, removed.OthersCutFrom));
        if (!keepGlobalBatch)
            Assert.Equal("Worker 2 lost in epoch 1 round 0: the round continues without it, a smaller global minibatch for this step; its rounds from 0 go to " +
                "the workers alive in a further part of the epoch, after round 6. Until then each step carries only the other workers' minibatches, a smaller " +
                "global minibatch.", output.Warnings[^1]);
        var zeros = new float[wire.ReportLength - 3];
        Assert.Null(policy.Accept(Gradient(0, 0, 0, 10, [1, 2, 3, .. zeros])));
        Assert.Null(policy.Accept(Gradient(1, 0, 0, 10, [3, 4, 5, .. zeros])));
        Assert.Equal(2, model.Version);
        if (keepGlobalBatch)
        {
            // The period after it is the part's closing broadcast: it says the part ends there, and the part is complete.
            Assert.Equal((2, 3, 2), output.BroadcastRounds[^1]);
            Assert.Single(output.Completed);
        }
        else
        {
            // The two others go on with their own minibatches: round 2 is a period of 2 more steps each.
            Assert.Equal((2, 3, 6), output.BroadcastRounds[^1]);
            Assert.Empty(output.Completed);
        }
    }

    [Fact]
    public void With_the_global_minibatch_kept_losing_a_worker_with_nothing_left_in_the_part_cuts_nothing()
    {
        // Slot 2 is not in the part (a worker that joined after it began, or whose shard was empty): its loss leaves no
        // sample behind, so the others keep their minibatches and the part its end.
        var (model, outbox, output, wire) = Server();
        var policy = new SyncPolicy(model, outbox, output, wire);
        policy.Start(new EpochPart(1, [true, true, false], [6, 6, 0], 0, 0, MidEpochResumable: false, KeepGlobalBatch: true));
        policy.RemoveWorker(2);
        Assert.Equal((2, 0, -1), (output.Removed[0].WorkerIndex, output.Removed[0].FirstUnusedRound, output.Removed[0].OthersCutFrom));
        Assert.Equal("Worker 2 lost in epoch 1 round 0: it had no minibatch left in this part of the epoch, so nothing of it is planned again; " +
            "the others go on as planned.", output.Warnings[^1]);
        Assert.Null(policy.Accept(Gradient(0, 0, 0, 10, 1, 1, 1)));
        Assert.Null(policy.Accept(Gradient(1, 0, 0, 10, 1, 1, 1)));
        Assert.Equal((1, 0, 6), output.BroadcastRounds[^1]);
        Assert.Empty(output.Completed);

        // A worker of the part that is lost with minibatches left does cut: the part ends after the open round.
        policy.RemoveWorker(1);
        Assert.Equal(2, output.Removed[1].OthersCutFrom);
        Assert.Equal("Worker 1 lost in epoch 1 round 1: the round continues without it, a smaller global minibatch for this step. Training:KeepGlobalBatch: " +
            "this part of the epoch ends at round 2; its rounds from 1 and the other workers' from 2 are planned again over the workers alive, at the global minibatch.",
            output.Warnings[^1]);
    }

    [Theory]
    [InlineData(0.9, 3, "Optimizer:Momentum = 0.23 (0.9 - 0.67)")]
    [InlineData(0.9, 2, "Optimizer:Momentum = 0.4 (0.9 - 0.5)")]
    [InlineData(0.5, 2, "Optimizer:Momentum = 0 (0.5 - 0.5)")]
    [InlineData(0.4, 2, null)]  // below 1/N: the sum stays under 1
    [InlineData(0.2, 3, null)]
    [InlineData(0.9, 1, null)]  // one worker is synchronous training
    [InlineData(0.0, 8, null)]
    public void Async_warns_of_momentum_that_asynchrony_pushes_to_1_and_names_the_value_to_use(double momentum, int workers, string? expected)
    {
        var advice = AsyncPolicy.MomentumAdvice(momentum, workers);
        if (expected is null) Assert.Null(advice);
        else Assert.Contains(expected, advice);
    }

    [Fact]
    public void Async_with_momentum_0_9_and_two_workers_warns_once_at_the_first_part()
    {
        var (model, outbox, output, wire) = Server(momentum: 0.9);
        var policy = new AsyncPolicy(model, outbox, output, wire, stalenessAwareRate: false);
        policy.Start(TwoWorkers(1));
        Assert.Contains("Mitliagkas", Assert.Single(output.Warnings));
    }

    [Theory]
    [InlineData(0.9, 3, 2, "Optimizer:Momentum = 0.5 (0.9 - 0.4)")]  // τ = 2/3: 0.4 of implicit momentum
    [InlineData(0.9, 3, 1, "Optimizer:Momentum = 0.5 (0.9 - 0.4)")]
    [InlineData(0.9, 2, 2, "Optimizer:Momentum = 0.57 (0.9 - 0.33)")] // τ = 1/2: 1/3
    [InlineData(0.7, 3, 2, "Optimizer:Momentum = 0.3 (0.7 - 0.4)")]
    [InlineData(0.5, 3, 2, null)]                                     // 0.9: below 1
    [InlineData(0.6, 2, 2, null)]
    [InlineData(0.9, 3, 0, null)]                                     // s = 0 is synchronous training
    [InlineData(0.9, 1, 2, null)]                                     // so is one worker
    [InlineData(0.0, 8, 2, null)]
    public void BoundedStaleness_warns_of_momentum_that_staleness_pushes_to_1_and_names_the_value_to_use(double momentum, int workers,
        int bound, string? expected)
    {
        var advice = BoundedStalenessPolicy.MomentumAdvice(momentum, workers, bound);
        if (expected is null) Assert.Null(advice);
        else Assert.Contains(expected, advice);
    }

    [Theory]
    [InlineData(0.9, 1, true)]
    [InlineData(0.9, 0, false)]
    [InlineData(0.5, 1, false)]
    public void BoundedStaleness_with_momentum_warns_once_at_the_first_part_when_due(double momentum, int bound, bool warns)
    {
        var (model, outbox, output, wire) = Server(momentum: momentum);
        var policy = new BoundedStalenessPolicy(model, outbox, output, wire, stalenessBound: bound, stalenessAwareRate: false);
        policy.Start(TwoWorkers(1));
        policy.Start(TwoWorkers(1));
        if (warns) Assert.Contains("Mitliagkas", Assert.Single(output.Warnings));
        else Assert.Empty(output.Warnings);
    }

    /// <summary>Records what a policy asks the actor to send.</summary>
    private sealed class Recorder : IServerOutput
    {
        public List<(int Worker, long Version, int Round, int Shard)> Sent { get; } = [];
        public List<long> Broadcasts { get; } = [];
        public List<(int Round, int Part, int EndRound)> BroadcastRounds { get; } = [];
        public List<WorkerRemoved> Removed { get; } = [];
        public List<(long Version, double[] Staleness)> Steps { get; } = [];
        public List<EpochCompleted> Completed { get; } = [];

        public void Broadcast(WeightsUpdated weights)
        {
            Broadcasts.Add(weights.Version);
            BroadcastRounds.Add((weights.Round, weights.Part, weights.EndRound));
        }
        public void Send(int worker, WeightsUpdated weights) => Sent.Add((worker, weights.Version, weights.Round, weights.Shard));
        public RoundApplied TakeReport(int workers) => new RoundApplied(0, 0, 0, 0, 0, default, 0).ForWorkers(workers);
        public List<double> Rates { get; } = [];
        public void StepApplied(RoundApplied report)
        {
            Steps.Add((report.Version, (double[])report.WorkerStaleness.Clone()));
            Rates.Add(report.LearningRate);
        }
        public void WorkerRemoved(WorkerRemoved removed) => Removed.Add(removed);
        public void PartCompleted(EpochCompleted completed) => Completed.Add(completed);
        public void MinibatchesLeft(MinibatchesLeft left) { }
        public List<string> Warnings { get; } = [];
        public void Warning(string message) => Warnings.Add(message);
    }
}
