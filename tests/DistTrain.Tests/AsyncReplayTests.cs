using System.Globalization;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Training;
using DistTrain.Core.Configuration;
using DistTrain.Core.Models;

namespace DistTrain.Tests;

/// <summary>
/// The asynchronous mode checked against references outside the actors: with one worker it is synchronous training, and
/// with several its final weights are those of a single-process replay of the order in which its gradients arrived (read
/// from the sample trace), each computed on the weights version the worker held. Both hold with momentum 0.9, so what
/// momentum does to asynchronous training is the method's effect, not a fault of the implementation.
/// </summary>
public class AsyncReplayTests
{
    private static ModelOptions MlpWithBatchNorm() => new()
    {
        InputSize = 784,
        Layers =
        [
            new() { Type = LayerTypes.Dense, Units = 32 }, new() { Type = LayerTypes.BatchNorm }, new() { Type = LayerTypes.ReLU },
            new() { Type = LayerTypes.Dense, Units = 10 },
        ],
    };

    private static Task<TrainingResult> Run(TrainingOptions options)
    {
        options.Compute.BlasThreads = 1;
        var data = TestData.Normalized();
        return SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout();
    }

    [Fact]
    public async Task Async_with_one_worker_gives_the_synchronous_weights_bit_for_bit()
    {
        // One worker never computes on stale weights: each minibatch is one step on the latest version, as in Sync.
        var sync = TestData.Options(MlpWithBatchNorm(), workers: 1, batch: 50, epochs: 2);
        var async = TestData.Options(MlpWithBatchNorm(), workers: 1, batch: 50, epochs: 2);
        async.Training.Mode = TrainingMode.Async;
        var expected = await Run(sync);
        var actual = await Run(async);
        Assert.Equal(40, expected.Version);
        Assert.Equal(expected.Version, actual.Version);
        Assert.Equal(expected.FinalWeights.Values, actual.FinalWeights.Values);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task Async_with_three_workers_and_momentum_equals_a_single_process_replay_of_its_arrival_order(int parameterServerShards)
    {
        var directory = Path.Combine(Path.GetTempPath(), $"disttrain-async-replay-{Guid.NewGuid():N}");
        try
        {
            var options = TestData.Options(MlpWithBatchNorm(), workers: 3, batch: 20, epochs: 2, momentum: 0.9);
            options.Training.Mode = TrainingMode.Async;
            options.Monitoring.SampleTraceDirectory = directory;
            // With two shards each applies the gradients in the order the sharded server hands them on (shard 0 traces it):
            // a shard that applied them in another order would end on other weights than the replay's.
            options.Cluster.ParameterServerShards = parameterServerShards;
            var result = await Run(options);
            var steps = ReadTrace(directory);
            Assert.Equal(102, steps.Count); // 3 shards of 333 or 334 samples in minibatches of 20: 17 each, 2 epochs
            Assert.Contains(steps, s => s.ComputedOn < s.AppliedTo);
            Assert.All(steps.Select((s, i) => (s, i)), p => Assert.Equal(p.i, p.s.AppliedTo));

            var replayed = Replay(options, steps);
            Assert.Equal(result.Version, steps.Count);
            Assert.Equal(result.FinalWeights.Values, replayed);
        }
        finally
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task Async_progress_counts_one_step_per_minibatch_in_order()
    {
        // 3 shards of 333 or 334 samples in minibatches of 20: 17 rounds, but 51 asynchronous steps an epoch.
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 3, batch: 20, epochs: 2, momentum: 0);
        options.Training.Mode = TrainingMode.Async;
        options.Compute.BlasThreads = 1;
        var data = TestData.Normalized();
        var progress = new ProgressRecorder();
        await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, progress).WithTestTimeout();
        Assert.Equal([(1, 51), (2, 51)], progress.Epochs);
        Assert.Equal([.. Enumerable.Range(0, 51), .. Enumerable.Range(0, 51)], progress.Steps);
    }

    /// <summary>Records what a progress display is told: each epoch's planned steps and each applied step's index.</summary>
    private sealed class ProgressRecorder : ITrainingObserver
    {
        public List<(int Epoch, int Steps)> Epochs { get; } = [];
        public List<int> Steps { get; } = [];
        public void EpochStarted(int epoch, int steps, int samples) => Epochs.Add((epoch, steps));
        public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, Cluster.Protocol.RoundTiming timing) =>
            Steps.Add(step);
        public void EpochCompleted(EpochSummary summary) { }
    }

    /// <summary>One applied step: the version it was applied to, the version its gradient was computed on, its samples.</summary>
    private sealed record TracedStep(int Epoch, long AppliedTo, long ComputedOn, int[] Samples);

    /// <summary>
    /// The parameter server's steps in order, each paired with the minibatch its worker traced. A worker has one minibatch
    /// in flight at a time, so its steps come in the order of its minibatch lines (the round alone is not a key: a worker
    /// also takes minibatches of other shards, which have the same round numbers).
    /// </summary>
    private static List<TracedStep> ReadTrace(string directory)
    {
        static int Int(string s) => int.Parse(s, CultureInfo.InvariantCulture);
        static string[][] Rows(string path) => [.. File.ReadLines(path).Skip(1).Select(line => line.Split(','))];
        var minibatches = new Dictionary<int, Queue<(int Epoch, int Round, long Version, int[] Samples)>>();
        foreach (var path in Directory.GetFiles(directory, "minibatches-*.csv"))
            foreach (var row in Rows(path))
            {
                if (!minibatches.TryGetValue(Int(row[3]), out var queue)) minibatches[Int(row[3])] = queue = new();
                queue.Enqueue((Int(row[0]), Int(row[1]), long.Parse(row[2], CultureInfo.InvariantCulture), [.. row[4].Split(' ').Select(Int)]));
            }
        var steps = new List<TracedStep>();
        foreach (var row in Rows(Assert.Single(Directory.GetFiles(directory, "steps-*.csv"))))
        {
            var minibatch = minibatches[Int(row[3])].Dequeue();
            Assert.Equal((Int(row[0]), Int(row[1])), (minibatch.Epoch, minibatch.Round));
            steps.Add(new TracedStep(minibatch.Epoch, long.Parse(row[2], CultureInfo.InvariantCulture), minibatch.Version, minibatch.Samples));
        }
        Assert.All(minibatches.Values, queue => Assert.Empty(queue));
        return steps;
    }

    /// <summary>
    /// The run replayed in one process: every version's weights kept, each step's gradient computed on the version its
    /// worker held, applied in the traced order with the server's own update (<see cref="ServerModel"/>).
    /// </summary>
    private static float[] Replay(TrainingOptions options, List<TracedStep> steps)
    {
        var data = TestData.Normalized();
        var replica = ModelFactory.Build(options.Model, dropoutSeed: 1);
        var server = new ServerModel(ModelFactory.StartingWeights(replica, options.Model, options.Training.Seed), options.Optimizer, options.Training.Epochs);
        var trainer = new ReplicaTrainer(replica, ModelFactory.BuildLoss(options.Model.Loss), data.Train, ReplicaSettings.Default, options.Training.Seed);
        var versions = new List<float[]> { (float[])server.Weights.Values.Clone() };
        var report = new float[replica.Layout.WorkerReportLength];
        foreach (var step in steps)
        {
            replica.LoadParameters(versions[(int)step.ComputedOn]);
            trainer.ComputeGradient(step.Samples, report, step.Epoch);
            var rate = (float)server.LearningRate(step.Epoch, 0, 1, options.Training.Workers);
            Assert.True(server.Step([report], [1f], rate, null, _ => { }));
            Assert.True(server.MergeRunningStatistics([report], [1f], null));
            server.Version++;
            versions.Add((float[])server.Weights.Values.Clone());
        }
        return versions[^1];
    }
}
