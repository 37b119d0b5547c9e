using Akka.Actor;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Data;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

/// <summary>Messages that arrive out of order, and jobs that fail: they must fail fast with a named cause, never hang.</summary>
public class FailureAndOrderingTests() : TestKit(AkkaSettings.Serialization())
{
    private static readonly ModelOptions Model = TestData.Mlp(8, 10);

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

    /// <summary>
    /// The test data, the model and its seed-1 weights, three workers named <paramref name="name"/>-0..2, and an observer
    /// that stops worker 1 after epoch 1.
    /// </summary>
    private (TrainingData Data, Sequential Model, ParameterVector Weights, IActorRef[] Workers, KillingObserver Observer) ThreeWorkersLosingOne(string name)
    {
        var data = TestData.Normalized();
        var model = ModelFactory.Build(Model);
        var weights = ModelFactory.InitialWeights(model, Model.Initializer, seed: 1);
        var workers = Enumerable.Range(0, 3).Select(i => Sys.ActorOf(Worker.Props(i, Model, data.Train, data.Test, 100), $"{name}-{i}")).ToArray();
        return (data, model, weights, workers, new KillingObserver(workers[1]));
    }

    /// <summary>Records the epochs; after epoch 1 it stops a worker and waits until it is gone, as a node that died.</summary>
    private sealed class KillingObserver(IActorRef victim) : ITrainingObserver
    {
        public List<EpochSummary> Epochs { get; } = [];
        public void EpochStarted(int epoch, int steps, int samples) { }
        public List<(int Epoch, int Samples)> Steps { get; } = [];
        public List<CheckpointSaved> Checkpoints { get; } = [];
        public void CheckpointSaved(CheckpointSaved checkpoint) => Checkpoints.Add(checkpoint);
        public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing) =>
            Steps.Add((epoch, samples));
        public void EpochCompleted(EpochSummary summary)
        {
            Epochs.Add(summary);
            // Blocking the coordinator here is deliberate: epoch 2 then starts with a worker that is already dead.
            if (summary.Epoch == 1) victim.GracefulStop(TimeSpan.FromSeconds(10)).Wait();
        }
    }

    [Fact]
    public async Task In_cluster_mode_a_lost_worker_is_covered_training_pauses_below_MinWorkers_and_resumes_when_one_joins()
    {
        var (data, model, weights, workers, observer) = ThreeWorkersLosingOne("elastic-worker");
        var completion = new TaskCompletionSource<TrainingResult>();
        var settings = new CoordinatorSettings(3, 16, new ShardPlanner(data.Train.Count, 3, 1), data.Test.Count, model.Layout,
            StallTimeout: TimeSpan.FromSeconds(20), PlannerFor: n => new ShardPlanner(data.Train.Count, n, 1), MinWorkers: 3);
        var coordinator = Sys.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.05 }, totalEpochs: 3),
            workers, observer, completion));
        // Epoch 2 was planned for 3 workers; the rounds go on without the dead one, and its samples wait for a further
        // part of the epoch, which needs MinWorkers = 3: training pauses there. A pause is not a stall (the timeout is
        // 20 s), and nothing completes while it lasts.
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.False(completion.Task.IsCompleted);
        Assert.Single(observer.Epochs);
        coordinator.Tell(new AddWorker(Sys.ActorOf(Worker.Props(3, Model, data.Train, data.Test, 100), "elastic-worker-3"), 3));
        var result = await completion.Task.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(3, result.Epochs.Count);
        Assert.All(result.Epochs, e => Assert.Equal(data.Train.Count, e.TrainSamples)); // every sample once, also in epoch 2
        Assert.All(result.Epochs, e => Assert.Equal(data.Test.Count, e.TestSamples));
        Assert.True(result.FinalEpoch.TestAccuracy > 0.5, $"accuracy {result.FinalEpoch.TestAccuracy:P1}");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task After_a_worker_is_lost_the_global_minibatch_is_kept_unless_turned_off(bool keepGlobalBatch)
    {
        var (data, model, weights, workers, observer) = ThreeWorkersLosingOne($"batch-worker-{keepGlobalBatch}");
        var completion = new TaskCompletionSource<TrainingResult>();
        // 3 workers of 16: a global minibatch of 48. Worker 1 dies after epoch 1; epoch 3 is planned for the 2 left.
        var settings = new CoordinatorSettings(3, 16, new ShardPlanner(data.Train.Count, 3, 1), data.Test.Count, model.Layout,
            StallTimeout: TimeSpan.FromSeconds(20), PlannerFor: n => new ShardPlanner(data.Train.Count, n, 1), MinWorkers: 2,
            GlobalBatchSize: keepGlobalBatch ? 48 : 0);
        Sys.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.05 }, totalEpochs: 3),
            workers, observer, completion));
        var result = await completion.Task.WaitAsync(TimeSpan.FromSeconds(60));

        Assert.All(result.Epochs, e => Assert.Equal(data.Train.Count, e.TrainSamples)); // every sample once
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

    [Fact]
    public async Task After_a_worker_is_lost_checkpoints_are_written_only_where_a_resume_is_exact()
    {
        var (data, model, weights, workers, observer) = ThreeWorkersLosingOne("checkpoint-worker");
        var completion = new TaskCompletionSource<TrainingResult>();
        var directory = Directory.CreateTempSubdirectory("disttrain-lost-checkpoints-").FullName;
        try
        {
            var settings = new CoordinatorSettings(3, 16, new ShardPlanner(data.Train.Count, 3, 1), data.Test.Count, model.Layout,
                StallTimeout: TimeSpan.FromSeconds(20), PlannerFor: n => new ShardPlanner(data.Train.Count, n, 1), MinWorkers: 2, GlobalBatchSize: 48);
            var checkpoints = new CheckpointSettings(new Core.Checkpoints.CheckpointStore(directory, 1000), EverySteps: 1, ShardSeed: 1, BatchSizePerWorker: 16);
            Sys.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.05 }, totalEpochs: 3,
                checkpoints: checkpoints, scalingWorkers: 3), workers, observer, completion));
            var result = await completion.Task.WaitAsync(TimeSpan.FromSeconds(60));

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
        Assert.StartsWith("Training diverged at epoch 1, step 0 (weights version 0): a NaN or infinite loss.", error.Message);
        Assert.Contains("Workers affected: 0 (loss NaN), 1 (loss NaN)", error.Message);
        Assert.Contains("First tensor with a non-finite gradient: 0.weight", error.Message);
        Assert.Contains("Lower Optimizer:LearningRate", error.Message);
        // The last good weights are the version-0 weights (the first step already diverged).
        Assert.Equal(0, error.LastGoodVersion);
        Assert.All(error.LastGoodWeights!.Take(100), w => Assert.Equal(1e20f, w));
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
