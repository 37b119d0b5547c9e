using Akka.Actor;
using Akka.Event;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Core.Data;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

/// <summary>Messages that arrive out of order, and jobs that fail: they must fail fast with a named cause, never hang.</summary>
public class FailureAndOrderingTests() : TestKit(TestTimeouts.TestKitConfig)
{
    private static readonly ModelOptions Model = TestData.Mlp(8, 10);

    /// <summary>Hang guard for a training on a loaded 2-core machine; no assertion is about speed.</summary>
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(120);

    private readonly List<string> _directories = [];

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing)
            foreach (var directory in _directories) Directory.Delete(directory, recursive: true);
    }

    /// <summary>A fresh folder for a run's sample trace (Monitoring:SampleTraceDirectory), deleted after the test.</summary>
    private string TraceDirectory()
    {
        var directory = Directory.CreateTempSubdirectory("disttrain-trace-").FullName;
        _directories.Add(directory);
        return directory;
    }

    /// <summary>A worker that swallows everything: the round it belongs to can never complete.</summary>
    private sealed class SilentWorker : ReceiveActor
    {
        public SilentWorker() => ReceiveAny(_ => { });
    }

    private sealed class ThrowingObserver : ITrainingObserver
    {
        public void EpochStarted(int epoch, int steps, int samples) { }
        public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing) =>
            throw new IOException("the progress sink broke");
        public void EpochCompleted(EpochSummary summary) { }
    }

    [Fact]
    public void A_worker_stashes_weights_that_arrive_before_its_shard_and_evaluations_that_arrive_before_their_weights()
    {
        var data = TestData.Normalized();
        var worker = Sys.ActorOf(Worker.Props(0, Model, data.Train, data.Test, evaluationBatchSize: 100));
        var weights = ModelFactory.InitialWeights(ModelFactory.Build(Model), Model.Initializer, seed: 1).Values;

        worker.Tell(new WeightsUpdated(1, 0, 0, weights));
        ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // no shard yet: nothing to compute on
        worker.Tell(new AssignShard(1, [.. Enumerable.Range(0, 20)], 16));
        var gradient = ExpectMsg<GradientComputed>();
        Assert.Equal((1, 0, 0L, 16), (gradient.Epoch, gradient.Round, gradient.Version, gradient.SampleCount));

        worker.Tell(new Evaluate(1, 0, 30));
        ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // holds version 0, version 1 was asked for
        worker.Tell(new WeightsUpdated(1, 1, 1, weights));
        Assert.Equal(4, ExpectMsg<GradientComputed>().SampleCount); // round 1: the last 4 samples of 20
        var scored = ExpectMsg<EvaluationResult>();
        Assert.Equal((1L, 0, 30), (scored.Version, scored.Start, scored.SampleCount));
    }

    [Fact]
    public void A_worker_never_trains_a_cut_short_shard_past_the_parts_end_nor_on_the_next_parts_weights()
    {
        // Part 0: 20 samples in minibatches of 4 (rounds 0-4). A loss elsewhere ends the part at round 1 for everybody
        // (Training:KeepGlobalBatch): round 1's broadcast says the part ends there, so the worker computes nothing, though
        // its shard still has a minibatch 1. Part 1's weights (round 2) arrive before its shard: they wait, and are then
        // computed on the new shard (6 samples in one minibatch), never on the old shard's minibatch 2.
        var data = TestData.Normalized();
        var worker = Sys.ActorOf(Worker.Props(0, Model, data.Train, data.Test, evaluationBatchSize: 100));
        var weights = ModelFactory.InitialWeights(ModelFactory.Build(Model), Model.Initializer, seed: 1).Values;
        worker.Tell(new AssignShard(1, [.. Enumerable.Range(0, 20)], 4, Part: 0));
        worker.Tell(new WeightsUpdated(1, 0, 0, weights, part: 0, endRound: 5));
        var first = ExpectMsg<GradientComputed>();
        Assert.Equal((0, 4), (first.Round, first.SampleCount));

        worker.Tell(new WeightsUpdated(1, 1, 1, weights, part: 0, endRound: 1));
        ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        worker.Tell(new WeightsUpdated(1, 2, 1, weights, part: 1, endRound: 3));
        ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        worker.Tell(new AssignShard(1, [.. Enumerable.Range(100, 6)], 6, FirstRound: 2, Part: 1));
        var gradient = ExpectMsg<GradientComputed>();
        Assert.Equal((1, 2, 1L, 6), (gradient.Epoch, gradient.Round, gradient.Version, gradient.SampleCount));
    }

    /// <summary>
    /// The test data, the model and its seed-1 weights, three workers named <paramref name="name"/>-0..2 that record their
    /// minibatches in <paramref name="trace"/>, and an observer that stops worker 1 after epoch 1; or, with
    /// <paramref name="dieAt"/>, worker 1 dies itself when the weights of that round arrive, before computing it; or, with
    /// <paramref name="loseNone"/>, no worker is lost (the same job as a baseline). The workers encode their gradients with
    /// <paramref name="compression"/> (null: float32).
    /// </summary>
    private (TrainingData Data, Sequential Model, ParameterVector Weights, IActorRef[] Workers, KillingObserver Observer) ThreeWorkersLosingOne(string name,
        string trace, (int Epoch, int Round)? dieAt = null, Core.Compression.GradientCompressionSettings? compression = null, bool loseNone = false)
    {
        var data = TestData.Normalized();
        var model = ModelFactory.Build(Model);
        var weights = ModelFactory.InitialWeights(model, Model.Initializer, seed: 1);
        var workers = Enumerable.Range(0, 3).Select(i =>
        {
            var props = Worker.Props(i, Model, data.Train, data.Test, 100, settings: new ReplicaSettings(SampleTraceDirectory: trace, Compression: compression));
            return Sys.ActorOf(i == 1 && dieAt is { } at ? Props.Create(() => new MortalWorker(props, at.Epoch, at.Round)) : props, $"{name}-{i}");
        }).ToArray();
        return (data, model, weights, workers, new KillingObserver(workers[1], stopAfterEpoch1: dieAt is null && !loseNone));
    }

    /// <summary>
    /// A worker that dies when the weights of (<paramref name="epoch"/>, <paramref name="round"/>) arrive, as a node killed in
    /// the middle of an epoch: the parameter server is waiting for its gradient of that round. Until then it relays, as
    /// cluster mode's link does: requests to the real worker inside, its gradients to the parameter server and its
    /// evaluation results to the coordinator, with itself as the sender the parameter server checks.
    /// </summary>
    private sealed class MortalWorker : ReceiveActor
    {
        private IActorRef _parameterServer = ActorRefs.Nobody;
        private IActorRef _coordinator = ActorRefs.Nobody;

        public MortalWorker(Props worker, int epoch, int round)
        {
            var replica = Context.ActorOf(worker, "replica");
            Receive<WeightsUpdated>(w => w.Epoch == epoch && w.Round == round, _ => Context.Stop(Self));
            Receive<WeightsUpdated>(w =>
            {
                _parameterServer = Sender;
                replica.Tell(w);
            });
            Receive<GradientComputed>(g => _parameterServer.Tell(g));
            Receive<EvaluationResult>(r => _coordinator.Tell(r));
            ReceiveAny(message =>
            {
                _coordinator = Sender;
                replica.Tell(message);
            });
        }
    }

    /// <summary>The parameter server's settings that record its steps in <paramref name="trace"/> (no gradient diagnostics).</summary>
    private static Core.Diagnostics.MonitoringOptions Traced(string trace) => new() { GradientNormEverySteps = 0, SampleTraceDirectory = trace };

    /// <summary>Records the steps and epochs; with <paramref name="stopAfterEpoch1"/>, after epoch 1 it stops a worker, as a node that died between epochs.</summary>
    private sealed class KillingObserver(IActorRef victim, bool stopAfterEpoch1) : ITrainingObserver
    {
        public List<EpochSummary> Epochs { get; } = [];
        /// <summary>By epoch: the steps it was last said to have (EpochStarted, then EpochStepsChanged), and the last step applied.</summary>
        public Dictionary<int, (int Said, int Last)> EpochSteps { get; } = [];
        public void EpochStarted(int epoch, int steps, int samples) => EpochSteps[epoch] = (steps, -1);
        public void EpochStepsChanged(int epoch, int steps) => EpochSteps[epoch] = (steps, EpochSteps[epoch].Last);
        public List<(int Epoch, int Samples)> Steps { get; } = [];
        public List<CheckpointSaved> Checkpoints { get; } = [];
        public void CheckpointSaved(CheckpointSaved checkpoint) => Checkpoints.Add(checkpoint);
        /// <summary>By epoch: the step numbers applied, in order.</summary>
        public Dictionary<int, List<int>> StepNumbers { get; } = [];
        public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing)
        {
            Steps.Add((epoch, samples));
            EpochSteps[epoch] = (EpochSteps[epoch].Said, step);
            if (!StepNumbers.TryGetValue(epoch, out var numbers)) StepNumbers[epoch] = numbers = [];
            numbers.Add(step);
        }

        public void EpochCompleted(EpochSummary summary)
        {
            Epochs.Add(summary);
            // Stopping it here, inside the coordinator's handler, is deliberate: the Terminate system message is in the
            // victim's mailbox before epoch 2's shard and weights, and a mailbox takes system messages first, so epoch 2
            // starts with a worker that never trains in it. Waiting for the stop (GracefulStop(...).Wait()) would block
            // the coordinator's thread on a task whose continuation needs a pool thread.
            if (stopAfterEpoch1 && summary.Epoch == 1) ((IInternalActorRef)victim).Stop();
        }
    }

    /// <summary>
    /// Asserts from the sample trace that every epoch trained on every sample exactly once, and that the sample counts the
    /// run reported agree with it.
    /// </summary>
    private static void AssertEverySampleOnce(string trace, TrainingResult result, int samples)
    {
        var used = SampleTraceLog.AssertEverySampleOnceEachEpoch(trace, samples, result.Epochs.Count);
        Assert.Equal(used.Values.Select(s => s.Length), result.Epochs.Select(e => e.TrainSamples));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task In_cluster_mode_a_lost_worker_is_covered_training_pauses_below_MinWorkers_and_resumes_when_one_joins(int parameterServerShards)
    {
        var trace = TraceDirectory();
        var (data, model, weights, workers, observer) = ThreeWorkersLosingOne("elastic-worker", trace);
        var completion = new TaskCompletionSource<TrainingResult>();
        var settings = new CoordinatorSettings(3, 16, new ShardPlanner(data.Train.Count, 3, 1), data.Test.Count, model.Layout,
            StallTimeout: TimeSpan.FromSeconds(20), PlannerFor: n => new ShardPlanner(data.Train.Count, n, 1), MinWorkers: 3);
        var log = CreateTestProbe();
        Sys.EventStream.Subscribe(log.Ref, typeof(Warning));
        var coordinator = Sys.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.05 }, totalEpochs: 3,
            Traced(trace), shards: parameterServerShards), workers, observer, completion));
        // Epoch 2 was planned for 3 workers; the rounds go on without the dead one, and its samples wait for a further
        // part of the epoch, which needs MinWorkers = 3: training pauses there, and says so. A pause is not a stall (the
        // timeout is 20 s, the pause lasts until a worker joins), and nothing completes while it lasts.
        // The job's end ends the wait too, whether or not any warning follows it (a failure is logged at INFO), and a
        // failure is the assertion's message: a hang guard's timeout would hide why.
        using var stopWaiting = new CancellationTokenSource();
        var pausing = log.FishForMessageAsync<Warning>(w => w.Message.ToString()!.StartsWith("Training is paused", StringComparison.Ordinal),
            Guard, "the pause below MinWorkers", stopWaiting.Token).AsTask();
        if (await Task.WhenAny(pausing, completion.Task) == completion.Task)
        {
            await stopWaiting.CancelAsync();
            Assert.Fail(completion.Task.IsFaulted
                ? $"the job failed instead of pausing: {completion.Task.Exception!.InnerException!.Message}"
                : $"the job ended instead of pausing ({completion.Task.Status})");
        }
        var pause = await pausing;
        Assert.False(completion.Task.IsFaulted, $"the job failed as it paused: {completion.Task.Exception?.InnerException?.Message}");
        Assert.StartsWith("Training is paused at epoch 2: 2 of Cluster:MinWorkers = 3 workers; the rest of epoch 2 goes on when enough are alive.", pause.Message.ToString());
        Assert.Equal(1, DistTrain.Cluster.Metrics.DistTrainMetrics.Get("paused"));
        Assert.False(completion.Task.IsCompleted);
        Assert.Equal([1], observer.Epochs.Select(e => e.Epoch));
        await Task.Delay(500); // the pause lasts at least this long
        coordinator.Tell(new AddWorker(Sys.ActorOf(Worker.Props(3, Model, data.Train, data.Test, 100, settings: new ReplicaSettings(SampleTraceDirectory: trace)), "elastic-worker-3"), 3));
        var result = await completion.Task.WaitAsync(Guard);
        Assert.Equal(0, DistTrain.Cluster.Metrics.DistTrainMetrics.Get("paused"));
        Assert.Equal(3, result.Epochs.Count);
        // Epoch 2's training time holds the pause, and its samples/s leaves it out; the other epochs never paused.
        Assert.Equal([0d, 0d], new[] { result.Epochs[0].PausedSeconds, result.Epochs[2].PausedSeconds });
        var paused = result.Epochs[1];
        Assert.InRange(paused.PausedSeconds, 0.45, paused.TrainSeconds);
        Assert.Equal(paused.TrainSamples / (paused.TrainSeconds - paused.PausedSeconds), paused.SamplesPerSecond, precision: 6);
        Assert.EndsWith($" s (paused {paused.PausedSeconds:F1} s)", DistTrain.Cli.ConsoleProgress.Describe(paused, 3).Split('\n')[0]);
        Assert.DoesNotContain("paused", DistTrain.Cli.ConsoleProgress.Describe(result.Epochs[0], 3));
        AssertEverySampleOnce(trace, result, data.Train.Count); // also epoch 2, whose second part ran after the pause
        Assert.All(result.Epochs, e => Assert.Equal(data.Test.Count, e.TestSamples));
        Assert.True(result.FinalEpoch.TestAccuracy > 0.5, $"accuracy {result.FinalEpoch.TestAccuracy:P1}");
    }

    /// <summary>
    /// An epoch's first part travels as recipes (AssignShard.Recipe), 100-170 bytes per worker whatever the training set's
    /// size, so a limit far below the shards' indices (3 shards of 333-334 indices below 1,000, 2 or 3 bytes each) still
    /// trains, in the lock-step and the asynchronous modes alike. In Sync every sample is trained once per epoch (the sample
    /// trace), and the weights are bit for bit those of the same job sent as indices.
    /// </summary>
    [Theory]
    [InlineData(Core.Configuration.TrainingMode.Sync, false)]
    [InlineData(Core.Configuration.TrainingMode.Async, false)]
    [InlineData(Core.Configuration.TrainingMode.Async, true)]
    public async Task An_epochs_first_part_goes_as_recipes_that_fit_a_limit_the_indices_would_exceed(Core.Configuration.TrainingMode mode, bool loseOne)
    {
        // With loseOne, worker 1 stops after epoch 1: epoch 2 was planned for 3 workers already, and epoch 3's recipes map the
        // plan's 2 shards to worker slots 0 and 2 of 3 (slot 1's shard empty).
        var epochs = loseOne ? 3 : 2;
        async Task<TrainingResult> Run(string name, string trace, bool recipes)
        {
            var (data, model, weights, workers, observer) = ThreeWorkersLosingOne(name, trace, loseNone: !loseOne);
            var completion = new TaskCompletionSource<TrainingResult>();
            var settings = new CoordinatorSettings(epochs, 16, new ShardPlanner(data.Train.Count, 3, 1), data.Test.Count, model.Layout,
                StallTimeout: TimeSpan.FromSeconds(60), PlannerFor: n => new ShardPlanner(data.Train.Count, n, 1), MinWorkers: loseOne ? 2 : 3, Mode: mode,
                ShardMessageLimitBytes: recipes ? 300 : 0, ShardRecipes: recipes);
            Sys.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.05 }, totalEpochs: epochs,
                Traced(trace), update: new UpdateSettings(mode)), workers, observer, completion));
            return await completion.Task.WaitAsync(Guard);
        }

        var samples = TestData.Normalized().Train.Count;
        Assert.True(new AssignShard(1, new ShardPlanner(samples, 3, 1).Plan(1)[0], 16).EncodedBytesAtMost() > 300, "the indices alone must exceed the limit");
        var trace = TraceDirectory();
        var withRecipes = await Run($"recipes-{mode}-{loseOne}", trace, recipes: true);
        Assert.Equal(Enumerable.Repeat(samples, epochs), withRecipes.Epochs.Select(e => e.TrainSamples));
        // The asynchronous modes: which worker trains which minibatch, on which weights, depends on timing.
        if (mode != Core.Configuration.TrainingMode.Sync) return;
        AssertEverySampleOnce(trace, withRecipes, samples);
        var withIndices = await Run($"indices-{mode}", TraceDirectory(), recipes: false);
        Assert.Equal(withIndices.FinalWeights.Values, withRecipes.FinalWeights.Values);
    }

    /// <summary>
    /// A further part (the samples a lost worker left) travels as pieces of the epoch's plan (ShardRecipe.Pieces), so it fits a
    /// limit its indices exceed, as an epoch's first part does. Worker 1 dies at epoch 1's round 1, leaving about 317 samples
    /// for the other two: about 160 indices each, more than the 300 bytes allowed here; a CSV of millions of rows on two worker
    /// nodes met the same at Akka.Remote's frame. Every sample is trained once per epoch, and the weights are bit for bit those
    /// of the same job sent as indices, also with the global minibatch kept, where the survivors' rest of the part goes too (two
    /// pieces per worker instead of one). (In Async the parameter server hands a lost worker's minibatches to the others itself,
    /// so no further part arises here; EpochPlanTests checks the asynchronous modes' form of the pieces.)
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_further_part_goes_as_pieces_of_the_epochs_plan_that_fit_a_limit_its_indices_would_exceed(bool keepGlobalBatch)
    {
        async Task<TrainingResult> Run(string name, string trace, bool recipes)
        {
            var (data, model, weights, workers, observer) = ThreeWorkersLosingOne(name, trace, dieAt: (1, 1));
            var completion = new TaskCompletionSource<TrainingResult>();
            var settings = new CoordinatorSettings(2, 16, new ShardPlanner(data.Train.Count, 3, 1), data.Test.Count, model.Layout,
                StallTimeout: TimeSpan.FromSeconds(60), PlannerFor: n => new ShardPlanner(data.Train.Count, n, 1), MinWorkers: 2,
                GlobalBatchSize: keepGlobalBatch ? 48 : 0, ShardMessageLimitBytes: recipes ? 300 : 0, ShardRecipes: recipes);
            Sys.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.05 }, totalEpochs: 2,
                Traced(trace)), workers, observer, completion));
            return await completion.Task.WaitAsync(Guard);
        }

        var samples = TestData.Normalized().Train.Count;
        Assert.True(new AssignShard(1, [.. Enumerable.Range(samples - 160, 160)], 16).EncodedBytesAtMost() > 300, "160 indices alone must exceed the limit");
        var trace = TraceDirectory();
        var withRecipes = await Run($"pieces-{keepGlobalBatch}", trace, recipes: true);
        Assert.Equal([samples, samples], withRecipes.Epochs.Select(e => e.TrainSamples));
        AssertEverySampleOnce(trace, withRecipes, samples);
        var withIndices = await Run($"pieces-indices-{keepGlobalBatch}", TraceDirectory(), recipes: false);
        Assert.Equal(withIndices.FinalWeights.Values, withRecipes.FinalWeights.Values);
    }

    /// <summary>
    /// A further part whose pieces are still larger than the limit (here 110 bytes: an epoch's first part as a recipe takes at most
    /// 108, the survivor's one piece about 120, and its indices more) fails the job at once, naming the pieces, their samples and the
    /// fix, before any of the part's shards is sent.
    /// </summary>
    [Fact]
    public async Task A_further_part_whose_pieces_exceed_the_limit_too_fails_the_job_naming_the_pieces_and_the_fix()
    {
        var (data, model, weights, workers, observer) = ThreeWorkersLosingOne("oversized-pieces", TraceDirectory(), dieAt: (1, 1));
        var completion = new TaskCompletionSource<TrainingResult>();
        var settings = new CoordinatorSettings(2, 16, new ShardPlanner(data.Train.Count, 3, 1), data.Test.Count, model.Layout,
            StallTimeout: TimeSpan.FromSeconds(60), PlannerFor: n => new ShardPlanner(data.Train.Count, n, 1), MinWorkers: 2,
            ShardMessageLimitBytes: 110, ShardRecipes: true);
        Sys.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.05 }, totalEpochs: 2),
            workers, observer, completion));
        var failure = await Assert.ThrowsAsync<InvalidOperationException>(() => completion.Task.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Matches(@"^Epoch 1: worker [02]'s shard message would carry 1 piece of the epoch's plan \(1[0-9]{2} samples, whose indices would take more\), " +
            @"up to 1[12][0-9] bytes, and one may take at most 110 bytes \(Akka.Remote's frame", failure.Message);
        Assert.Contains("shared among its 2 workers", failure.Message);
        Assert.Empty(observer.Epochs);
    }

    /// <summary>
    /// A shard message larger than Akka.Remote's frame (sample indices, where a part cannot go as a recipe) fails the job at
    /// once, naming the sizes and the fix, before any of the part's shards is sent. Akka.Remote drops such a message (an
    /// OversizedPayloadException in the log), and the job used to wait for Training:StallTimeoutSeconds: a CSV of 1,000,000
    /// rows on one worker node.
    /// </summary>
    [Fact]
    public async Task A_shard_message_larger_than_akka_remote_carries_fails_the_job_at_once_naming_the_fix()
    {
        var (data, model, weights, workers, observer) = ThreeWorkersLosingOne("oversized", TraceDirectory(), loseNone: true);
        var completion = new TaskCompletionSource<TrainingResult>();
        var settings = new CoordinatorSettings(3, 16, new ShardPlanner(data.Train.Count, 3, 1), data.Test.Count, model.Layout,
            StallTimeout: TimeSpan.FromSeconds(60), PlannerFor: n => new ShardPlanner(data.Train.Count, n, 1), MinWorkers: 2,
            ShardMessageLimitBytes: 300);
        Sys.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.05 }, totalEpochs: 3),
            workers, observer, completion));
        var failure = await Assert.ThrowsAsync<InvalidOperationException>(() => completion.Task.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Matches(@"^Epoch 1: worker 0's shard message would carry [\d,]+ sample indices, up to [\d,]+ bytes, and one may take at most 300 bytes \(Akka.Remote's frame", failure.Message);
        Assert.Contains("shared among its 3 workers", failure.Message);
        Assert.Contains("start more worker nodes", failure.Message);
        Assert.Empty(observer.Epochs);
    }

    [Fact]
    public async Task A_pause_below_MinWorkers_that_outlasts_the_pause_timeout_ends_the_job_saying_what_to_change()
    {
        var (data, model, weights, workers, observer) = ThreeWorkersLosingOne("timed-out-worker", TraceDirectory());
        var completion = new TaskCompletionSource<TrainingResult>();
        var settings = new CoordinatorSettings(3, 16, new ShardPlanner(data.Train.Count, 3, 1), data.Test.Count, model.Layout,
            StallTimeout: TimeSpan.FromSeconds(20), PlannerFor: n => new ShardPlanner(data.Train.Count, n, 1), MinWorkers: 3,
            PauseTimeout: TimeSpan.FromSeconds(1));
        Sys.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.05 }, totalEpochs: 3),
            workers, observer, completion));
        // Paused in epoch 2 (as in the test above), no worker joins: the job fails after 1 s, not after the 20 s stall timeout.
        var failure = await Assert.ThrowsAsync<TrainingStalledException>(() => completion.Task.WaitAsync(Guard));
        Assert.StartsWith("Training was paused for 1 s at epoch 2 with 2 of Cluster:MinWorkers = 3 workers alive, and no worker joined in that time; the job ends. " +
            "Start worker nodes within Cluster:PauseTimeoutSeconds, lower Cluster:MinWorkers, or set Cluster:PauseTimeoutSeconds = 0", failure.Message);
        Assert.Equal([1], observer.Epochs.Select(e => e.Epoch));
        // It carries the parameter server's weights, past epoch 1 (for the run folder to keep with that epoch).
        var kept = Assert.IsType<WeightsSnapshot>(failure.Weights);
        Assert.True(kept.Version > observer.Epochs[0].Version, $"version {kept.Version}, epoch 1 ended at {observer.Epochs[0].Version}");
        Assert.Equal(model.Layout.TotalLength, kept.Weights.Length);
        Assert.NotEqual(weights.Values, kept.Weights);
    }

    [Theory]
    [InlineData(2, 3, 1, true)]
    [InlineData(2, 20, 1, true)]
    [InlineData(1, 0, 1, true)]
    [InlineData(2, 3, 2, true)]
    [InlineData(2, 3, 1, false)]
    public async Task A_worker_lost_in_the_middle_of_an_epoch_leaves_every_sample_of_every_epoch_trained_exactly_once(int epoch, int round,
        int parameterServerShards, bool keepGlobalBatch)
    {
        // 3 workers of 16 (shards of 333 or 334 samples: 21 rounds per epoch); worker 1 dies when round (epoch, round)'s
        // weights arrive, so that round completes without it and its samples from that round on go to the two others in
        // a further part of the epoch (round 20 is its shard's last; round 0 of epoch 1 is before it trained at all).
        var trace = TraceDirectory();
        var (data, model, weights, workers, observer) = ThreeWorkersLosingOne($"mid-epoch-worker-{epoch}-{round}-{parameterServerShards}-{keepGlobalBatch}", trace,
            dieAt: (epoch, round));
        var completion = new TaskCompletionSource<TrainingResult>();
        var settings = new CoordinatorSettings(3, 16, new ShardPlanner(data.Train.Count, 3, 1), data.Test.Count, model.Layout,
            StallTimeout: TimeSpan.FromSeconds(60), PlannerFor: n => new ShardPlanner(data.Train.Count, n, 1), MinWorkers: 2,
            GlobalBatchSize: keepGlobalBatch ? 48 : 0);
        Sys.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.05 }, totalEpochs: 3, Traced(trace),
            shards: parameterServerShards), workers, observer, completion));
        var result = await completion.Task.WaitAsync(Guard);
        Assert.Equal(3, result.Epochs.Count);
        AssertEverySampleOnce(trace, result, data.Train.Count);
        // Worker 1 trained every round before the one it died at, and nothing from there on.
        var trained = SampleTraceLog.Applied(trace).Where(m => m.Worker == 1).Select(m => (m.Epoch, m.Round)).ToList();
        var expected = Enumerable.Range(1, epoch).SelectMany(e => Enumerable.Range(0, e < epoch ? 21 : round).Select(r => (e, r))).ToList();
        Assert.Equal(expected, trained);
        // The progress lines' "step n/total" ends at its total in every epoch, the one with the loss too: the observers were
        // told the steps of the epoch as planned anew. Without KeepGlobalBatch that epoch has more of them than planned.
        Assert.All(observer.EpochSteps, e => Assert.True(e.Value.Said == e.Value.Last + 1, $"epoch {e.Key}: said {e.Value.Said} steps, its last was step {e.Value.Last + 1}"));
        if (!keepGlobalBatch && round < 20) Assert.True(observer.EpochSteps[epoch].Said > 21, $"epoch {epoch}: {observer.EpochSteps[epoch].Said} steps");
        // And the steps are numbered 0, 1, ... up to that total, one per step applied, across the further part too: the round
        // number skipped between the parts is not a step (before, the epoch said one step more than it applied).
        Assert.All(observer.StepNumbers, e => Assert.Equal(Enumerable.Range(0, observer.EpochSteps[e.Key].Said), e.Value));
    }

    /// <summary>
    /// Async: both workers die in the middle of epoch 2, and one joins. The minibatches left are cut anew for it (a
    /// further part of the epoch), and the observers are told the epoch's new number of steps: its last step is that total.
    /// </summary>
    [Fact]
    public async Task In_Async_the_epoch_the_workers_were_lost_in_ends_at_the_steps_the_observers_were_told()
    {
        var data = TestData.Normalized();
        var model = ModelFactory.Build(Model);
        var weights = ModelFactory.InitialWeights(model, Model.Initializer, seed: 1);
        Props WorkerProps(int i) => Worker.Props(i, Model, data.Train, data.Test, 100);
        var workers = Enumerable.Range(0, 2).Select(i =>
        {
            var props = WorkerProps(i);
            return Sys.ActorOf(Props.Create(() => new MortalWorker(props, 2, 3)), $"async-mortal-{i}");
        }).ToArray();
        var observer = new KillingObserver(workers[0], stopAfterEpoch1: false);
        var completion = new TaskCompletionSource<TrainingResult>();
        var settings = new CoordinatorSettings(3, 16, new ShardPlanner(data.Train.Count, 2, 1), data.Test.Count, model.Layout,
            StallTimeout: TimeSpan.FromSeconds(60), PlannerFor: n => new ShardPlanner(data.Train.Count, n, 1), MinWorkers: 1, Mode: Core.Configuration.TrainingMode.Async);
        var log = CreateTestProbe();
        Sys.EventStream.Subscribe(log.Ref, typeof(Warning));
        var coordinator = Sys.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.05 }, totalEpochs: 3,
            update: new UpdateSettings(Core.Configuration.TrainingMode.Async)), workers, observer, completion));
        var losses = new List<string>();
        log.FishForMessage<Warning>(w =>
        {
            var text = w.Message.ToString()!;
            if (text.Contains(" is lost (", StringComparison.Ordinal)) losses.Add(text);
            return text.StartsWith("Training is paused", StringComparison.Ordinal);
        }, Guard, "the pause with no worker");
        // The loss lines count the workers left, and the last one says that nobody is left to take the samples.
        Assert.Equal(2, losses.Count);
        Assert.EndsWith("; 1 of 2 workers remain. Any samples it had left go to the others.", losses[0]);
        Assert.EndsWith("; no worker is left. Any samples it had left wait for a worker to join.", losses[1]);
        coordinator.Tell(new AddWorker(Sys.ActorOf(WorkerProps(2), "async-joiner"), 2));
        var result = await completion.Task.WaitAsync(Guard);
        Assert.All(result.Epochs, e => Assert.Equal(data.Train.Count, e.TrainSamples));
        Assert.All(observer.EpochSteps, e => Assert.True(e.Value.Said == e.Value.Last + 1, $"epoch {e.Key}: said {e.Value.Said} steps, its last was step {e.Value.Last + 1}"));
    }

    /// <summary>
    /// A worker lost in the middle of an epoch with Cluster:Compression TopK (10%, error feedback, momentum correction at 0.9,
    /// so the parameter server steps without momentum): the job goes on as without compression. The lost worker's residual
    /// and velocity, what it had computed but not yet sent, are gone with it; the two others keep theirs and train its
    /// samples in a further part of the epoch, every sample once, and the model comes out about as good as the same job's
    /// without the loss.
    /// </summary>
    [Fact]
    public async Task With_TopK_a_worker_lost_in_the_middle_of_an_epoch_leaves_the_job_training_every_sample_once()
    {
        var topK = new Core.Compression.GradientCompressionSettings(Core.Compression.GradientCompression.TopK, TopKRatio: 0.1, Momentum: 0.9);
        async Task<(TrainingResult Result, string Trace, int Samples)> Run(string name, (int Epoch, int Round)? dieAt)
        {
            var trace = TraceDirectory();
            var (data, model, weights, workers, observer) = ThreeWorkersLosingOne(name, trace, dieAt, topK, loseNone: dieAt is null);
            var completion = new TaskCompletionSource<TrainingResult>();
            var settings = new CoordinatorSettings(3, 16, new ShardPlanner(data.Train.Count, 3, 1), data.Test.Count, model.Layout,
                StallTimeout: TimeSpan.FromSeconds(60), PlannerFor: n => new ShardPlanner(data.Train.Count, n, 1), MinWorkers: 2, GlobalBatchSize: 48);
            Sys.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.05 }, totalEpochs: 3, Traced(trace)),
                workers, observer, completion));
            return (await completion.Task.WaitAsync(Guard), trace, data.Train.Count);
        }

        var (result, trace, samples) = await Run("topk-worker", dieAt: (2, 5));
        Assert.Equal(3, result.Epochs.Count);
        AssertEverySampleOnce(trace, result, samples);
        Assert.DoesNotContain(SampleTraceLog.Applied(trace), m => m.Worker == 1 && (m.Epoch, m.Round).CompareTo((2, 5)) >= 0);
        Assert.True(result.Epochs[^1].TrainLoss < result.Epochs[0].TrainLoss, $"train loss {result.Epochs[0].TrainLoss:F3} then {result.Epochs[^1].TrainLoss:F3}");

        // Compared with the same job (seed, workers, TopK, minibatches) that loses no worker, the loss costs little. After 3
        // epochs the test accuracy is a coarse measure: it swings by 10 points or more with small changes (the run with the
        // loss reaches 58.4% at learning rate 0.04 instead of 0.05, and still 43.2% at 0.005) and with the BLAS kernels'
        // rounding through TopK's sparse steps (46.4% with the loss on an AMD EPYC (AVX-512) VM, over 50% on the machines
        // before it). So it may be at most 15 points below the baseline's and must be above 3x chance (10%); the test loss,
        // a mean over the same 250 samples that moves smoothly, must be within 10% of the baseline's (1.3485 and 1.3279 on
        // that VM; the run with the loss at learning rate 0.01 gives 1.5672 at 44.4% accuracy, which the accuracy bounds pass).
        var (baseline, baselineTrace, _) = await Run("topk-baseline-worker", dieAt: null);
        AssertEverySampleOnce(baselineTrace, baseline, samples);
        Assert.Contains(SampleTraceLog.Applied(baselineTrace), m => m.Worker == 1 && m.Epoch == 3); // the baseline kept worker 1
        var (lost, kept) = (result.FinalEpoch, baseline.FinalEpoch);
        var figures = $"test accuracy {lost.TestAccuracy:P1}, test loss {lost.TestLoss:F4} after losing a worker; {kept.TestAccuracy:P1} and {kept.TestLoss:F4} without the loss";
        Assert.True(lost.TestAccuracy >= kept.TestAccuracy - 0.15, figures);
        Assert.True(lost.TestAccuracy > 0.3, figures);
        Assert.True(lost.TestLoss <= 1.1 * kept.TestLoss, figures);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task After_a_worker_is_lost_the_global_minibatch_is_kept_unless_turned_off(bool keepGlobalBatch)
    {
        var trace = TraceDirectory();
        var (data, model, weights, workers, observer) = ThreeWorkersLosingOne($"batch-worker-{keepGlobalBatch}", trace);
        var completion = new TaskCompletionSource<TrainingResult>();
        // 3 workers of 16: a global minibatch of 48. Worker 1 dies after epoch 1; epoch 3 is planned for the 2 left.
        var settings = new CoordinatorSettings(3, 16, new ShardPlanner(data.Train.Count, 3, 1), data.Test.Count, model.Layout,
            StallTimeout: TimeSpan.FromSeconds(20), PlannerFor: n => new ShardPlanner(data.Train.Count, n, 1), MinWorkers: 2,
            GlobalBatchSize: keepGlobalBatch ? 48 : 0);
        Sys.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.05 }, totalEpochs: 3, Traced(trace)),
            workers, observer, completion));
        var result = await completion.Task.WaitAsync(Guard);

        AssertEverySampleOnce(trace, result, data.Train.Count);
        var epoch1 = observer.Steps.Where(s => s.Epoch == 1).Select(s => s.Samples).ToArray();
        var epoch3 = observer.Steps.Where(s => s.Epoch == 3).Select(s => s.Samples).ToArray();
        Assert.All(epoch1[..^1], samples => Assert.Equal(48, samples));
        if (keepGlobalBatch)
        {
            // The planned 21 steps, as with 3 workers of 16, each cut from 2 shards of 500 in balanced minibatches of
            // 23 or 24: every step, the last included, has about the 48 samples of the starting global minibatch.
            Assert.Equal(Rounds(data.Train.Count, workers: 3, batch: 16), epoch3.Length);
            Assert.All(epoch3, samples => Assert.InRange(samples, 46, 48));
        }
        else
        {
            Assert.All(epoch3[..^1], samples => Assert.Equal(32, samples));
            Assert.Equal(Rounds(data.Train.Count, workers: 2, batch: 16), epoch3.Length);
        }

        // Steps of an epoch: the rounds of the largest shard.
        static int Rounds(int samples, int workers, int batch) => ((samples + workers - 1) / workers + batch - 1) / batch;
    }

    [Theory]
    [InlineData(true, 1)]
    [InlineData(true, 2)]
    [InlineData(false, 1)]
    public async Task A_worker_lost_in_the_middle_of_an_epoch_leaves_the_global_minibatch_kept_from_the_next_step_on_unless_turned_off(bool keepGlobalBatch,
        int parameterServerShards)
    {
        // 3 workers of 16 (a global minibatch of 48, 21 rounds per epoch); worker 1 dies when epoch 2's round 3 arrives, so
        // round 3 is a step of the other two workers' 32 samples.
        var trace = TraceDirectory();
        var (data, model, weights, workers, observer) = ThreeWorkersLosingOne($"kept-batch-worker-{keepGlobalBatch}-{parameterServerShards}", trace,
            dieAt: (2, 3));
        var completion = new TaskCompletionSource<TrainingResult>();
        var settings = new CoordinatorSettings(3, 16, new ShardPlanner(data.Train.Count, 3, 1), data.Test.Count, model.Layout,
            StallTimeout: TimeSpan.FromSeconds(60), PlannerFor: n => new ShardPlanner(data.Train.Count, n, 1), MinWorkers: 2,
            GlobalBatchSize: keepGlobalBatch ? 48 : 0);
        Sys.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.05 }, totalEpochs: 3, Traced(trace),
            shards: parameterServerShards), workers, observer, completion));
        var result = await completion.Task.WaitAsync(Guard);

        AssertEverySampleOnce(trace, result, data.Train.Count);
        var epoch2 = observer.Steps.Where(s => s.Epoch == 2).Select(s => s.Samples).ToArray();
        Assert.Equal([48, 48, 48, 32], epoch2[..4]);
        if (keepGlobalBatch)
        {
            // The part ends at round 4 for everybody; the 824 samples left (the lost worker's and the others') go to the
            // two alive in 18 balanced minibatches of up to 24 each: every later step has 44 to 46 samples, none 32.
            Assert.Equal(4 + 18, epoch2.Length);
            Assert.All(epoch2[4..], samples => Assert.InRange(samples, 44, 48));
        }
        else
        {
            // The others finish their shards with their own minibatches (rounds 4-20: 32 samples, the last smaller), then
            // train the lost worker's rest.
            Assert.All(epoch2[4..20], samples => Assert.Equal(32, samples));
        }
        Assert.True(result.FinalEpoch.TestAccuracy > 0.5, $"accuracy {result.FinalEpoch.TestAccuracy:P1}");
    }

    [Fact]
    public async Task After_a_worker_is_lost_checkpoints_are_written_only_where_a_resume_is_exact()
    {
        var (data, model, weights, workers, observer) = ThreeWorkersLosingOne("checkpoint-worker", trace: "");
        var completion = new TaskCompletionSource<TrainingResult>();
        var directory = Directory.CreateTempSubdirectory("disttrain-lost-checkpoints-").FullName;
        try
        {
            var settings = new CoordinatorSettings(3, 16, new ShardPlanner(data.Train.Count, 3, 1), data.Test.Count, model.Layout,
                StallTimeout: TimeSpan.FromSeconds(20), PlannerFor: n => new ShardPlanner(data.Train.Count, n, 1), MinWorkers: 2, GlobalBatchSize: 48);
            var checkpoints = new CheckpointSettings(new Core.Checkpoints.CheckpointStore(directory, 1000), EverySteps: 1, ShardSeed: 1, BatchSizePerWorker: 16);
            Sys.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.05 }, totalEpochs: 3,
                checkpoints: checkpoints, scalingWorkers: 3), workers, observer, completion));
            var result = await completion.Task.WaitAsync(Guard);

            // Epoch 1 (3 workers, undisturbed): a checkpoint after every step. Epoch 2 lost worker 1 and epoch 3 was planned
            // for the 2 left with larger minibatches: a mid-epoch position there would not resume exactly, so each of them
            // has only its end-of-epoch checkpoint, written once the lost worker's samples were trained too.
            var epoch1Steps = observer.Steps.Count(st => st.Epoch == 1);
            Assert.Equal(epoch1Steps, observer.Checkpoints.Count(c => c.Epoch == 1 || (c.Epoch == 2 && c.Round == 0)));
            Assert.DoesNotContain(observer.Checkpoints, c => c.Epoch >= 2 && c.Round != 0);
            Assert.Equal(new[] { 2, 3, 4 }, observer.Checkpoints.Where(c => c.Round == 0).Select(c => c.Epoch));
            Assert.Equal(result.Version, observer.Checkpoints[^1].Version);
            Assert.Equal(observer.Steps.Count(st => st.Epoch <= 2), observer.Checkpoints.Single(c => c.Epoch == 3).Version);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task A_lost_worker_fails_the_job_with_a_stall_error_instead_of_hanging()
    {
        var data = TestData.Normalized();
        var model = ModelFactory.Build(Model);
        var weights = ModelFactory.InitialWeights(model, Model.Initializer, seed: 1);
        var completion = new TaskCompletionSource<TrainingResult>();
        var settings = new CoordinatorSettings(1, 16, new ShardPlanner(data.Train.Count, 2, 1), data.Test.Count, model.Layout,
            StallTimeout: TimeSpan.FromSeconds(1));
        Sys.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.1 }, totalEpochs: 1),
            [Worker.Props(0, Model, data.Train, data.Test, 100), Props.Create(() => new SilentWorker())],
            NullTrainingObserver.Instance, completion));
        var error = await Assert.ThrowsAsync<TrainingStalledException>(() => completion.Task.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("No progress for 1 s at epoch 1, after step -1", error.Message);
        Assert.Contains("waiting for a round to complete", error.Message);
    }

    [Fact]
    public async Task An_exception_in_the_coordinator_fails_the_job_with_that_exception()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(Model, workers: 2, batch: 32, epochs: 1);
        var error = await Assert.ThrowsAsync<IOException>(() =>
            SingleNodeTrainer.RunAsync(options, data.Train, data.Test, new ThrowingObserver()).WithTestTimeout());
        Assert.Equal("the progress sink broke", error.Message);
    }

    [Fact]
    public async Task Divergence_stops_training_with_an_error_that_names_where_it_happened()
    {
        var data = TestData.Normalized();
        // Weights of 1e20 overflow float32 in the second layer: the logits become infinite and the loss NaN.
        var model = TestData.Mlp(8, 10);
        model.Initializer = new() { Kind = Core.Initialization.InitializerKind.Constant, Constant = 1e20 };
        var options = TestData.Options(model, workers: 2, batch: 32, epochs: 1);
        var error = await Assert.ThrowsAsync<TrainingDivergedException>(() =>
            SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout());
        Assert.StartsWith("Training diverged at epoch 1, step 1 (weights version 0): a NaN or infinite loss.", error.Message);
        Assert.Contains("Workers affected: 0 (loss NaN), 1 (loss NaN)", error.Message);
        Assert.Contains("First tensor with a non-finite gradient: 0.weight", error.Message);
        // No update had been applied: the fix named is the initialization, not the learning rate.
        Assert.EndsWith("It was computed on the starting weights, before any update, so the learning rate is not the cause: check Model:Initializer " +
            "(weights that start too large overflow, as a large Constant does) and the input normalization.", error.Message);
        // The last good weights are the version-0 weights (the first step already diverged).
        Assert.Equal(0, error.LastGoodVersion);
        Assert.All(error.LastGoodWeights!.Take(100), w => Assert.Equal(1e20f, w));
    }

    /// <summary>Records each step's mean loss.</summary>
    private sealed class StepLosses : ITrainingObserver
    {
        public List<double> Losses { get; } = [];
        public void EpochStarted(int epoch, int steps, int samples) { }
        public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing) => Losses.Add(meanLoss);
        public void EpochCompleted(EpochSummary summary) { }
    }

    /// <summary>
    /// Three ReLU layers of 256 started from Normal, std 100, with a mean squared error: the first step's loss was 1.9E+25,
    /// finite, and the second step's NaN. The advice named the learning rate, clipping and the input normalization only;
    /// it names Model:Initializer first, with the first step's loss.
    /// </summary>
    [Fact]
    public async Task A_divergence_after_an_astronomical_first_loss_names_the_initializer()
    {
        var data = TestData.Normalized();
        var layers = new List<LayerOptions>();
        for (var i = 0; i < 3; i++) layers.AddRange([new LayerOptions { Type = LayerTypes.Dense, Units = 256 }, new LayerOptions { Type = LayerTypes.ReLU }]);
        layers.Add(new LayerOptions { Type = LayerTypes.Dense, Units = 10 });
        var model = new ModelOptions { InputSize = 784, Layers = layers, Loss = LossTypes.MeanSquaredError };
        model.Initializer = new() { Kind = Core.Initialization.InitializerKind.Normal, NormalStd = 100 };
        var options = TestData.Options(model, workers: 2, batch: 50, epochs: 1, learningRate: 0.1, momentum: 0);
        var steps = new StepLosses();
        var error = await Assert.ThrowsAsync<TrainingDivergedException>(() =>
            SingleNodeTrainer.RunAsync(options, data.Train, data.Test, steps).WithTestTimeout());
        var first = Assert.Single(steps.Losses);
        Assert.True(first >= 1e10, $"first step's loss {first}");
        Assert.StartsWith("Training diverged at epoch 1, step 2 (weights version 1): a NaN or infinite loss.", error.Message);
        Assert.EndsWith(FormattableString.Invariant($"The first step's loss was already {first:G3}, before the learning rate could do harm: the weights ") +
            "started far too large, so check Model:Initializer first (a large NormalStd, UniformRange, Gain or Constant; HeNormal for ReLU, XavierUniform for Tanh) " +
            "and the input normalization, then Optimizer:LearningRate and Optimizer:GradientClipNorm.", error.Message);

        // A usual start (HeNormal) that diverges later, from a learning rate of 10 with momentum, is told of the learning rate as before.
        model.Initializer = new() { Kind = Core.Initialization.InitializerKind.HeNormal };
        options = TestData.Options(model, workers: 2, batch: 50, epochs: 3, learningRate: 10, momentum: 0.9);
        var late = await Assert.ThrowsAsync<TrainingDivergedException>(() => SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout());
        Assert.EndsWith("Lower Optimizer:LearningRate, set Optimizer:GradientClipNorm, or check the input normalization.", late.Message);
    }

    [Fact]
    public async Task A_model_that_does_not_fit_the_data_is_rejected_before_training()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(8, 5), workers: 2, batch: 32, epochs: 1);
        var error = await Assert.ThrowsAsync<Core.Configuration.ConfigurationException>(() =>
            SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout());
        Assert.Contains("Model:Layers:2:Units = 5 does not match the data", error.Message);
        Assert.Contains("Set it to 10", error.Message);
    }
}
