using System.Globalization;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Layers;
using DistTrain.Core.Models;
using Xunit.Abstractions;

namespace DistTrain.Tests;

/// <summary>
/// Bounded-staleness training (stale synchronous parallel) checked against a single-process replay outside the actors and
/// the parameter server's code: the sample trace records, for every applied round, which minibatches went into it (worker,
/// samples, the weights version each was computed on); the replay recomputes each of those gradients on that version's
/// weights, averages them by sample count in shard order and takes the SGD step with momentum and L2 written out per
/// element, and must reach the run's final weights bit for bit. So a gradient applied to the wrong round, computed on other
/// weights than recorded, overwritten, or weighted wrongly would show, and what the mode does to training with momentum
/// is the method's effect.
/// </summary>
public class BoundedStalenessReplayTests(ITestOutputHelper output)
{
    private const int Workers = 3, Batch = 20, Epochs = 2;

    private static ModelOptions MlpWithBatchNorm() => new()
    {
        InputSize = 784,
        Layers =
        [
            new() { Type = LayerTypes.Dense, Units = 32 }, new() { Type = LayerTypes.BatchNorm }, new() { Type = LayerTypes.ReLU },
            new() { Type = LayerTypes.Dense, Units = 10 },
        ],
    };

    /// <summary>One gradient of a round: who computed it, which shard's minibatch, on which version, from which samples.</summary>
    private sealed record RecordedGradient(int Worker, int Shard, long ComputedOn, int[] Samples);

    /// <summary>One applied round: the version it was applied to (it made version + 1) and its gradients in shard order.</summary>
    private sealed record RecordedRound(int Epoch, int Round, long AppliedTo, RecordedGradient[] Gradients);

    [Theory]
    [InlineData(1, false, 1)]
    [InlineData(2, false, 1)]
    [InlineData(2, true, 1)]
    [InlineData(2, false, 2)]
    public async Task BoundedStaleness_equals_a_single_process_replay_of_its_recorded_rounds(int bound, bool stalenessAwareRate, int parameterServerShards)
    {
        var directory = Path.Combine(Path.GetTempPath(), $"disttrain-bs-replay-{Guid.NewGuid():N}");
        try
        {
            var options = TestData.Options(MlpWithBatchNorm(), workers: Workers, batch: Batch, epochs: Epochs, momentum: 0.9);
            options.Cluster.ParameterServerShards = parameterServerShards; // every shard applies the same rounds, or the replay differs
            options.Training.Mode = TrainingMode.BoundedStaleness;
            options.Training.StalenessBound = bound;
            options.Training.StalenessAwareLearningRate = stalenessAwareRate;
            options.Monitoring.SampleTraceDirectory = directory;
            options.Compute.BlasThreads = 1;
            var data = TestData.Normalized();
            var planner = new ShardPlanner(data.Train.Count, Workers, options.Training.Seed);
            var result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, planner: planner).WithTestTimeout();

            var rounds = ReadRounds(directory, planner);
            // 3 shards of 334, 333 and 333 samples in minibatches of 20: 17 rounds of 3 minibatches, applied in order.
            Assert.Equal(Epochs * 17, rounds.Count);
            Assert.Equal(
                [.. Enumerable.Range(1, Epochs).SelectMany(e => Enumerable.Range(0, 17).Select(r => (e, r)))],
                rounds.Select(r => (r.Epoch, r.Round)).ToArray());
            Assert.Equal(Enumerable.Range(0, rounds.Count).Select(v => (long)v), rounds.Select(r => r.AppliedTo));
            Assert.All(rounds, r => Assert.Equal([0, 1, 2], r.Gradients.Select(g => g.Shard)));
            // Every gradient within the bound, and the run really was stale somewhere (else this would only re-test Sync).
            var staleness = rounds.SelectMany(r => r.Gradients.Select(g => r.AppliedTo - g.ComputedOn)).ToList();
            output.WriteLine($"gradients by versions behind: {string.Join(", ", staleness.CountBy(s => s).OrderBy(p => p.Key).Select(p => $"{p.Key}: {p.Value}"))}");
            Assert.All(staleness, s => Assert.InRange(s, 0, bound));
            Assert.Contains(staleness, s => s > 0);
            // Every sample exactly once per epoch.
            foreach (var epoch in rounds.GroupBy(r => r.Epoch))
                Assert.Equal(Enumerable.Range(0, data.Train.Count),
                    epoch.SelectMany(r => r.Gradients.SelectMany(g => g.Samples)).Order());

            Assert.Equal(rounds.Count, result.Version);
            Assert.Equal(result.FinalWeights.Values, Replay(options, data.Train, rounds));
        }
        finally
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
    }

    [SkippableFact]
    public async Task BoundedStaleness_on_the_main_job_equals_its_replay()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("DISTTRAIN_MAIN_JOB_REPLAY") == "1",
            "Set DISTTRAIN_MAIN_JOB_REPLAY=1 to replay the main job (configs/fashion-mnist-mlp.json, all 60,000 images, 3 workers, s = 2, 10 epochs; Debian's dataset-fashion-mnist): about 30 s.");
        var directory = Path.Combine(Path.GetTempPath(), $"disttrain-bs-replay-{Guid.NewGuid():N}");
        try
        {
            var options = TrainingOptionsLoader.Load(Path.Combine(AppContext.BaseDirectory, "configs", "fashion-mnist-mlp.json"),
                new Dictionary<string, string?> { ["Training:Workers"] = "3", ["Training:Mode"] = "BoundedStaleness", ["Training:StalenessBound"] = "2" },
                environment: new Dictionary<string, string?>());
            options.Monitoring.SampleTraceDirectory = directory;
            var data = TrainingData.Load(options);
            var planner = new ShardPlanner(data.Train.Count, Workers, options.Training.Seed);
            var result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, planner: planner).WithTestTimeout(600);

            var rounds = ReadRounds(directory, planner, options.Training.BatchSizePerWorker);
            Assert.Equal(options.Training.Epochs * 313, rounds.Count); // 3 shards of 20,000 in minibatches of 64
            var staleness = rounds.SelectMany(r => r.Gradients.Select(g => r.AppliedTo - g.ComputedOn)).ToList();
            output.WriteLine($"gradients by versions behind: {string.Join(", ", staleness.CountBy(s => s).OrderBy(p => p.Key).Select(p => $"{p.Key}: {p.Value}"))}");
            Assert.All(staleness, s => Assert.InRange(s, 0, 2));
            foreach (var epoch in rounds.GroupBy(r => r.Epoch))
                Assert.Equal(Enumerable.Range(0, data.Train.Count), epoch.SelectMany(r => r.Gradients.SelectMany(g => g.Samples)).Order());
            Assert.Equal(result.FinalWeights.Values, Replay(options, data.Train, rounds));
        }
        finally
        {
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void BoundedStaleness_with_a_slow_worker_equals_the_replay_with_gradients_two_versions_old()
    {
        // The policy driven directly, the test acting as the workers in a fixed order: workers 0 and 1 answer at once,
        // worker 2 only when the bound stops the others. So every third round is applied two versions after its
        // gradients were computed, which the threads of a real run produce only now and then.
        var options = TestData.Options(MlpWithBatchNorm(), workers: Workers, batch: Batch, epochs: Epochs, momentum: 0.9);
        options.Training.Mode = TrainingMode.BoundedStaleness;
        options.Training.StalenessBound = 2;
        var data = TestData.Normalized();
        var planner = new ShardPlanner(data.Train.Count, Workers, options.Training.Seed);
        var replica = ModelFactory.Build(options.Model);
        var trainer = new ReplicaTrainer(replica, ModelFactory.BuildLoss(options.Model.Loss), data.Train, ReplicaSettings.Default, options.Training.Seed);
        var model = new ServerModel(ModelFactory.StartingWeights(replica, options.Model, options.Training.Seed), options.Optimizer, Epochs);
        var wire = WireLayout.For(model.Layout, TrainingMode.BoundedStaleness, options.Optimizer);
        var server = new ScriptedWorkers();
        var policy = new BoundedStalenessPolicy(model, new WeightsOutbox((float[])model.Weights.Values.Clone(), model.Layout.TotalLength), server,
            wire, options.Training.StalenessBound, stalenessAwareRate: false);
        var gradients = new Dictionary<(int Epoch, int Round), List<RecordedGradient>>();
        for (var epoch = 1; epoch <= Epochs; epoch++)
        {
            var shards = planner.Plan(epoch);
            policy.Start(new EpochPart(epoch, [true, true, true], [17, 17, 17], 0, 17, MidEpochResumable: false));
            while (server.Completed < epoch)
            {
                var worker = server.InFlight[0] is not null ? 0 : server.InFlight[1] is not null ? 1 : 2;
                // The worker reads the loaned weights message only now, as a real one does when it handles it.
                var weights = server.InFlight[worker] ?? throw new InvalidOperationException("no worker has a minibatch in flight");
                server.InFlight[worker] = null;
                int[] samples = [.. shards[weights.Shard].Skip(weights.Round * Batch).Take(Batch)];
                replica.LoadParameters(weights.Weights.AsSpan(0, model.Layout.TotalLength));
                var report = new float[wire.ReportLength];
                var lossSum = trainer.ComputeGradient(samples, report, epoch);
                var key = (epoch, weights.Round);
                if (!gradients.TryGetValue(key, out var list)) gradients[key] = list = [];
                list.Add(new RecordedGradient(worker, weights.Shard, weights.Version, samples));
                Assert.Null(policy.Accept(new GradientComputed(epoch, weights.Round, weights.Version, worker, samples.Length, lossSum, report)));
            }
        }
        var rounds = server.Steps.Select(step => new RecordedRound(step.Epoch, step.Round, step.AppliedTo,
            [.. gradients[(step.Epoch, step.Round)].OrderBy(g => g.Shard)])).ToList();
        Assert.Equal(Epochs * 17, rounds.Count);
        // Worker 2's minibatch holds up round r; the others compute rounds r + 1 and r + 2 on the same weights meanwhile.
        Assert.All(rounds, r => Assert.All(r.Gradients, g => Assert.Equal(r.Round % 3, r.AppliedTo - g.ComputedOn)));
        Assert.Equal(model.Weights.Values, Replay(options, data.Train, rounds));
    }

    /// <summary>The parameter server's side of <see cref="BoundedStalenessPolicy"/>: the weights each worker was sent and not yet answered, and the steps.</summary>
    private sealed class ScriptedWorkers : IServerOutput
    {
        public WeightsUpdated?[] InFlight { get; } = new WeightsUpdated?[Workers];
        public List<(int Epoch, int Round, long AppliedTo)> Steps { get; } = [];
        public int Completed { get; private set; }
        public void Broadcast(WeightsUpdated weights) { }
        public void Send(int worker, WeightsUpdated weights) => InFlight[worker] = weights;
        public RoundApplied TakeReport(int workers) => new RoundApplied(0, 0, 0, 0, 0, default, 0).ForWorkers(workers);
        public void StepApplied(RoundApplied report) => Steps.Add((report.Epoch, report.Round, report.Version - 1));
        public void WorkerRemoved(WorkerRemoved removed) { }
        public void PartCompleted(EpochCompleted completed) => Completed++;
        public void MinibatchesLeft(MinibatchesLeft left) { }
        public void Warning(string message) { }
    }

    /// <summary>
    /// The applied rounds in the order of the parameter server's steps, each with every minibatch the workers traced for
    /// that (epoch, round): with no worker lost each minibatch is computed once, so the pair is a key. Its shard is the one
    /// whose slice for that round holds exactly its samples in the planner's shards.
    /// </summary>
    private static List<RecordedRound> ReadRounds(string directory, ShardPlanner planner, int batch = Batch)
    {
        static int Int(string s) => int.Parse(s, CultureInfo.InvariantCulture);
        static string[][] Rows(string path) => [.. File.ReadLines(path).Skip(1).Where(l => l.Length > 0).Select(line => line.Split(','))];
        var plans = new Dictionary<int, int[][]>();
        var byRound = new Dictionary<(int Epoch, int Round), List<RecordedGradient>>();
        foreach (var path in Directory.GetFiles(directory, "minibatches-*.csv"))
            foreach (var row in Rows(path))
            {
                var (epoch, round, worker) = (Int(row[0]), Int(row[1]), Int(row[3]));
                int[] samples = [.. row[4].Split(' ').Select(Int)];
                if (!plans.TryGetValue(epoch, out var shards)) plans[epoch] = shards = planner.Plan(epoch);
                var shard = Array.FindIndex(shards, s => s.Skip(round * batch).Take(batch).SequenceEqual(samples));
                Assert.True(shard >= 0, $"worker {worker}'s minibatch of epoch {epoch} round {round} is no shard's slice of that round");
                if (!byRound.TryGetValue((epoch, round), out var list)) byRound[(epoch, round)] = list = [];
                list.Add(new RecordedGradient(worker, shard, long.Parse(row[2], CultureInfo.InvariantCulture), samples));
            }
        var rounds = new List<RecordedRound>();
        foreach (var row in Rows(Assert.Single(Directory.GetFiles(directory, "steps-*.csv"))))
        {
            var (epoch, round) = (Int(row[0]), Int(row[1]));
            Assert.True(byRound.Remove((epoch, round), out var gradients), $"the step of epoch {epoch} round {round} has no traced minibatch");
            // The step names each contributing worker once, also one that computed two of the round's minibatches.
            Assert.Equal(row[3].Split(' ').Select(Int).Order(), gradients.Select(g => g.Worker).Distinct().Order());
            rounds.Add(new RecordedRound(epoch, round, long.Parse(row[2], CultureInfo.InvariantCulture), [.. gradients.OrderBy(g => g.Shard)]));
        }
        Assert.Empty(byRound); // no minibatch computed but never applied
        return rounds;
    }

    /// <summary>
    /// The run recomputed in one process with plain code: every version's weights kept; each round's gradients computed by
    /// the model's forward and backward pass on the version each was computed on; combined as <c>Σ cₖ gₖ</c> in shard order
    /// with <c>cₖ = nₖ / Σ n</c> (divided by staleness + 1 with the staleness-aware rate), L2 added on the weights, then
    /// <c>v ← μ v + g</c>, <c>w ← w − η v</c> (torch.optim.SGD); BatchNorm's running statistics become <c>Σ (nₖ / Σ n) sₖ</c>.
    /// Each element is computed with the same float operations in the same order as the parameter server's vectorized
    /// step (multiply, then multiply-and-add, none fused), so the result must be identical, not merely close.
    /// </summary>
    private static float[] Replay(TrainingOptions options, LabeledDataset train, List<RecordedRound> rounds)
    {
        var optimizer = options.Optimizer;
        Assert.True(optimizer is { Kind: Core.Optimization.OptimizerKind.Sgd, Nesterov: false, L1: 0, ScaleLearningRateByWorkers: false, GradientClipNorm: 0 });
        Assert.Equal(Core.Optimization.LearningRateScheduleKind.Constant, optimizer.Schedule.Kind);
        Assert.Equal(0, optimizer.Schedule.WarmupSteps);
        var (rate, momentum, l2) = ((float)optimizer.LearningRate, (float)optimizer.Momentum, (float)optimizer.L2);

        var replica = ModelFactory.Build(options.Model);
        var layout = replica.Layout;
        var trainer = new ReplicaTrainer(replica, ModelFactory.BuildLoss(options.Model.Loss), train, ReplicaSettings.Default, options.Training.Seed);
        var decayed = new bool[layout.TrainableLength];
        foreach (var segment in layout.Segments.Where(s => s.Trainable && (s.Role == ParameterRole.Weight || optimizer.DecayBiasAndNormParameters)))
            Array.Fill(decayed, true, segment.Offset, segment.Length);
        var weights = (float[])ModelFactory.StartingWeights(replica, options.Model, options.Training.Seed).Values.Clone();
        var velocity = new float[layout.TrainableLength];
        // The versions a later round may still have been computed on: those from its own minus the bound.
        var versions = new Dictionary<long, float[]> { [0] = (float[])weights.Clone() };
        var reports = new float[Workers][];
        for (var k = 0; k < Workers; k++) reports[k] = new float[layout.WorkerReportLength];
        foreach (var round in rounds)
        {
            var count = round.Gradients.Length;
            var total = round.Gradients.Sum(g => g.Samples.Length);
            var scales = new float[count];
            var statisticsScales = new float[count];
            for (var k = 0; k < count; k++)
            {
                var gradient = round.Gradients[k];
                replica.LoadParameters(versions[gradient.ComputedOn]);
                trainer.ComputeGradient(gradient.Samples, reports[k], round.Epoch);
                statisticsScales[k] = (float)gradient.Samples.Length / total;
                scales[k] = options.Training.StalenessAwareLearningRate
                    ? statisticsScales[k] / (round.AppliedTo - gradient.ComputedOn + 1)
                    : statisticsScales[k];
            }
            for (var i = 0; i < layout.TrainableLength; i++)
            {
                var g = reports[0][i] * scales[0];
                for (var k = 1; k < count; k++) g = reports[k][i] * scales[k] + g;
                if (decayed[i]) g = weights[i] * l2 + g;
                velocity[i] = velocity[i] * momentum + g;
                weights[i] = velocity[i] * -rate + weights[i];
            }
            for (var i = layout.TrainableLength; i < layout.WorkerReportLength; i++)
            {
                var s = reports[0][i] * statisticsScales[0];
                for (var k = 1; k < count; k++) s = reports[k][i] * statisticsScales[k] + s;
                weights[i] = s;
            }
            versions[round.AppliedTo + 1] = (float[])weights.Clone();
            versions.Remove(round.AppliedTo - options.Training.StalenessBound);
        }
        return weights;
    }
}
