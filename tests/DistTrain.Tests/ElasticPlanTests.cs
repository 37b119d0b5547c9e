using Akka.Actor;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Data;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;

namespace DistTrain.Tests;

/// <summary>
/// A worker joins a running job (cluster mode, in one process): the learning-rate schedule stays continuous in optimizer
/// steps, and the epochs planned for the new worker count have no runt step.
/// </summary>
public sealed class ElasticPlanTests() : TestKit(AkkaSettings.Serialization())
{
    private static readonly ModelOptions Model = TestData.Mlp(8, 10);

    /// <summary>Records every step; when epoch 1 ends it adds a third worker, which takes part from epoch 3 (epoch 2 is
    /// planned in the same message as epoch 1's end).</summary>
    private sealed class JoiningObserver(Func<IActorRef> coordinator, IActorRef joiner) : ITrainingObserver
    {
        public List<(int Epoch, long Version, int Samples, double LearningRate)> Steps { get; } = [];
        public List<(int Epoch, int Steps)> EpochSteps { get; } = [];
        public void EpochStarted(int epoch, int steps, int samples) => EpochSteps.Add((epoch, steps));
        public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing) =>
            Steps.Add((epoch, version, samples, learningRate));
        public void EpochCompleted(EpochSummary summary)
        {
            if (summary.Epoch == 1) coordinator().Tell(new AddWorker(joiner, 2));
        }
    }

    /// <summary>Trains 3 epochs on the 1,000-sample subset with 2 workers of <paramref name="batch"/>; a third joins for epoch 3.</summary>
    private async Task<(JoiningObserver Observer, TrainingResult Result)> TrainWithAJoin(string name, int batch, bool keepGlobalBatch,
        LearningRateScheduleOptions schedule)
    {
        var data = TestData.Normalized();
        var model = ModelFactory.Build(Model);
        var weights = ModelFactory.InitialWeights(model, Model.Initializer, seed: 1);
        var workers = Enumerable.Range(0, 2).Select(i => Sys.ActorOf(Worker.Props(i, Model, data.Train, data.Test, 100), $"{name}-{i}")).ToArray();
        var joiner = Sys.ActorOf(Worker.Props(2, Model, data.Train, data.Test, 100), $"{name}-2");
        IActorRef coordinator = ActorRefs.Nobody;
        var observer = new JoiningObserver(() => coordinator, joiner);
        var completion = new TaskCompletionSource<TrainingResult>();
        var settings = new CoordinatorSettings(3, batch, new ShardPlanner(data.Train.Count, 2, 1), data.Test.Count, model.Layout,
            StallTimeout: TimeSpan.FromSeconds(30), PlannerFor: n => new ShardPlanner(data.Train.Count, n, 1), MinWorkers: 2,
            GlobalBatchSize: keepGlobalBatch ? 2 * batch : 0);
        var optimizer = new OptimizerOptions { LearningRate = 0.05, Momentum = 0.9, Schedule = schedule };
        coordinator = Sys.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, optimizer, totalEpochs: 3, scalingWorkers: 2),
            workers, observer, completion));
        var result = await completion.Task.WaitAsync(TimeSpan.FromSeconds(90));
        return (observer, result);
    }

    [Fact]
    public async Task Warmup_counts_optimizer_steps_so_the_learning_rate_never_goes_back_when_a_worker_joins()
    {
        // 2 workers of 16: 32 steps in epochs 1 and 2; with the third worker (KeepGlobalBatch off) epoch 3 has 21 steps.
        // Warmup lasts 80 steps, so it spans the join: planned per (epoch, round), epoch 3's first step was step 42, not 64.
        var warmup = new LearningRateScheduleOptions { WarmupSteps = 80, WarmupStartFactor = 0.1 };
        var (observer, result) = await TrainWithAJoin("warmup-join", batch: 16, keepGlobalBatch: false, warmup);
        Assert.Equal([(1, 32), (2, 32), (3, 21)], observer.EpochSteps);
        Assert.All(result.Epochs, e => Assert.Equal(1000, e.TrainSamples));
        for (var i = 0; i < observer.Steps.Count; i++)
        {
            // Step i updates version i; LinearLR's factor at optimizer step t = i.
            Assert.Equal(i, observer.Steps[i].Version - 1);
            var expected = 0.05 * (0.1 + 0.9 * Math.Min(i, 80) / 80.0);
            Assert.True(Math.Abs(observer.Steps[i].LearningRate - expected) <= 1e-15,
                $"step {i} (epoch {observer.Steps[i].Epoch}): learning rate {observer.Steps[i].LearningRate:R}, expected {expected:R}");
        }
    }

    [Fact]
    public async Task A_cosine_schedule_stays_monotone_across_a_join_that_changes_the_steps_per_epoch()
    {
        var cosine = new LearningRateScheduleOptions { Kind = LearningRateScheduleKind.Cosine, WarmupSteps = 10 };
        var (observer, _) = await TrainWithAJoin("cosine-join", batch: 16, keepGlobalBatch: false, cosine);
        var rates = observer.Steps.Select(s => s.LearningRate).ToArray();
        // Up through warmup, then down: never a jump back at the epoch where the steps per epoch changed.
        for (var i = 1; i < rates.Length; i++)
            if (i <= 10) Assert.True(rates[i] >= rates[i - 1], $"warmup step {i}: {rates[i]:R} after {rates[i - 1]:R}");
            else Assert.True(rates[i] <= rates[i - 1], $"step {i}: {rates[i]:R} after {rates[i - 1]:R}");
        // Epoch 3 starts two thirds of the way through the run's epochs, whatever its steps: cos(2π/3) gives a quarter of the base rate.
        var epoch3First = observer.Steps.First(s => s.Epoch == 3).LearningRate;
        Assert.Equal(0.05 * (1 + Math.Cos(2 * Math.PI / 3)) / 2, epoch3First, 12);
    }

    [Fact]
    public async Task With_the_global_minibatch_kept_epochs_after_a_join_have_the_planned_steps_and_no_runt_step()
    {
        // 2 workers of 5 (global 10) over 1,000 samples: 100 steps per epoch. With 3 workers, minibatches of ⌈10/3⌉ = 4
        // over shards of 333-334 samples left a last step of 1 + 1 + 2 = 4 samples (BatchNorm's statistics over one sample
        // per replica wrecked a CNN in such a step). Balanced, every step has 10 ± 2 samples and there are still 100 steps.
        var (observer, result) = await TrainWithAJoin("runt-join", batch: 5, keepGlobalBatch: true, new LearningRateScheduleOptions());
        Assert.Equal([(1, 100), (2, 100), (3, 100)], observer.EpochSteps);
        Assert.All(result.Epochs, e => Assert.Equal(1000, e.TrainSamples));
        var samples = observer.Steps.Where(s => s.Epoch == 3).Select(s => s.Samples).ToArray();
        Assert.Equal(100, samples.Length);
        Assert.All(samples, n => Assert.InRange(n, 9, 12)); // 3 workers of 3 or 4 samples
    }
}
