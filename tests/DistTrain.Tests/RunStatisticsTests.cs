using System.Text.Json;
using DistTrain.Cli;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Metrics;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Models;

namespace DistTrain.Tests;

/// <summary>The staleness distribution and per-worker compute a run records in <c>summary.json</c>.</summary>
public sealed class RunStatisticsTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-statistics-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void Staleness_summary_counts_every_applied_gradient_and_takes_nearest_rank_percentiles()
    {
        var distribution = new StalenessDistribution();
        Assert.Null(distribution.Summarize());
        distribution.Add([0, double.NaN, 2]);
        distribution.Add([1, 1, double.NaN]);
        distribution.Add([3, 0, 0]);

        // Sorted: 0 0 0 1 1 2 3. Mean 7 / 7 = 1; median is the 4th (⌈3.5⌉) = 1; p90 the 7th (⌈6.3⌉) = 3.
        var summary = distribution.Summarize()!;
        Assert.Equal(7, summary.Count);
        Assert.Equal(1.0, summary.Mean, 12);
        Assert.Equal(1, summary.P50);
        Assert.Equal(3, summary.P90);
        Assert.Equal(3, summary.Max);
        Assert.Equal(new Dictionary<long, long> { [0] = 3, [1] = 2, [2] = 1, [3] = 1 }, summary.Counts);

        // Nine at 0 and one at 5: p90 is the 9th value, 0; the mean 0.5.
        var skewed = new StalenessDistribution();
        skewed.Add([0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
        Assert.Equal((10L, 0.5, 0L, 0L, 5L), (skewed.Summarize()!.Count, skewed.Summarize()!.Mean, skewed.Summarize()!.P50, skewed.Summarize()!.P90, skewed.Summarize()!.Max));
    }

    [Fact]
    public void Worker_compute_counts_only_the_workers_that_reported_in_each_step()
    {
        var tally = new WorkerComputeTally();
        tally.Add([0.5, double.NaN, 0.7], [0.2, 0, 0.5]);
        tally.Add([0.4, 0.3, double.NaN], [0.4, 0.6, 0]);

        var workers = tally.Summarize();
        Assert.Equal([0, 1, 2], workers.Select(w => w.Worker));
        Assert.Equal([2L, 1L, 1L], workers.Select(w => w.Reports));
        Assert.Equal(0.6, workers[0].ComputeSeconds, 12);
        Assert.Equal(0.3, workers[0].MeanComputeSeconds, 12);
        Assert.Equal(0.6, workers[1].MeanComputeSeconds, 12);
        Assert.Equal(0.5, workers[2].MeanComputeSeconds, 12);
    }

    /// <summary>A run that learns nothing (learning rate 1e-30) is told so, with the likely causes; a run that learns is not.</summary>
    [Theory]
    [InlineData(1e-30, true)]
    [InlineData(0.1, false)]
    public async Task A_run_that_learns_nothing_is_warned_of(double learningRate, bool warned)
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 1, batch: 50, epochs: 2);
        options.Optimizer.LearningRate = learningRate;
        options.Compute.BlasThreads = 1;
        var report = new RunReport(NullTrainingObserver.Instance);
        var result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, report).WithTestTimeout();
        var warning = report.NotLearning(options, data.Train.ClassCount, result.FinalEpoch.TestAccuracy);
        if (!warned)
        {
            Assert.True(result.FinalEpoch.TestAccuracy > 0.5, $"accuracy {result.FinalEpoch.TestAccuracy}");
            Assert.Null(warning);
            return;
        }
        Assert.True(warning is not null, $"accuracy {result.FinalEpoch.TestAccuracy}, epochs {result.Epochs.Count}, first epoch {result.Epochs[0].Epoch}");
        // The weights did not move: the two epochs' losses differ by the order of the sums at most, and print alike.
        Assert.StartsWith("the model learned nothing: the training loss did not change (epoch 1: ", warning);
        Assert.Contains($"(epoch 1: {ConsoleProgress.Loss(result.Epochs[0].TrainLoss)}, epoch 2: {ConsoleProgress.Loss(result.Epochs[0].TrainLoss)})", warning);
        Assert.Contains("(10.00% for 10 classes)", warning);
        Assert.Contains("Check Optimizer:LearningRate = 1E-30: for Sgd it is usually 0.01 to 0.1", warning);
        Assert.Null(report.NotLearning(options, 1, result.FinalEpoch.TestAccuracy)); // no chance level to compare with
    }

    /// <summary>
    /// Five Sigmoid layers started from Normal, std 0.001, with SGD at 0.01: the gradients vanish, and the vanishing-gradient
    /// warnings fire. The diagnosis blamed Optimizer:LearningRate, which is inside the range it printed; it names the
    /// vanishing gradients and the initializer instead, and says nothing of the learning rate.
    /// </summary>
    [Fact]
    public async Task A_run_whose_gradients_vanished_is_told_of_the_initializer_not_of_a_learning_rate_in_its_usual_range()
    {
        var data = TestData.Normalized();
        var layers = new List<LayerOptions>();
        for (var i = 0; i < 5; i++) layers.AddRange([new LayerOptions { Type = LayerTypes.Dense, Units = 16 }, new LayerOptions { Type = LayerTypes.Sigmoid }]);
        layers.Add(new LayerOptions { Type = LayerTypes.Dense, Units = 10 });
        var model = new ModelOptions { InputSize = 784, Layers = layers };
        model.Initializer.Kind = DistTrain.Core.Initialization.InitializerKind.Normal;
        model.Initializer.NormalStd = 0.001;
        var options = TestData.Options(model, workers: 1, batch: 50, epochs: 2, learningRate: 0.01, momentum: 0);
        options.Monitoring.GradientNormEverySteps = 1;
        options.Compute.BlasThreads = 1;
        var report = new RunReport(NullTrainingObserver.Instance);
        CommandLineLogger.WarningLogged += report.ActorWarned; // as train does
        TrainingResult result;
        try
        {
            result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, report).WithTestTimeout();
        }
        finally
        {
            CommandLineLogger.WarningLogged -= report.ActorWarned;
        }
        var warning = report.NotLearning(options, data.Train.ClassCount, result.FinalEpoch.TestAccuracy);
        Assert.True(warning is not null, $"accuracy {result.FinalEpoch.TestAccuracy}, losses {string.Join(", ", result.Epochs.Select(e => e.TrainLoss))}");
        Assert.StartsWith("the model learned nothing: the training loss fell by less than 1%", warning);
        // The logger's event is process-wide: another test's warnings may be named too, so only this run's first tensor is checked.
        Assert.Matches(@"The gradients vanished \(the vanishing-gradient warnings named [^)]*\b0\.weight\b", warning);
        Assert.Contains("with Model:Initializer:Kind = Normal, NormalStd 0.001 the signal dies out through the layers. Use HeNormal for ReLU or XavierUniform " +
            "for Tanh and Sigmoid (Model:Initializer:Kind), or fewer saturating activations (Sigmoid, Tanh) in a row. Otherwise check that the labels " +
            "belong to their inputs (the label column, the class folders).", warning);
        Assert.DoesNotContain("Check Optimizer:LearningRate", warning);

        // Without those warnings, a learning rate in its usual range is said not to be the likely cause.
        var quiet = new RunReport(NullTrainingObserver.Instance);
        foreach (var epoch in result.Epochs) quiet.EpochCompleted(epoch);
        var withoutWarnings = quiet.NotLearning(options, data.Train.ClassCount, result.FinalEpoch.TestAccuracy);
        Assert.Contains("Optimizer:LearningRate = 0.01 is within the usual range for Sgd (0.01 to 0.1), so it is an unlikely cause; check " +
            "Model:Initializer:Kind = Normal, NormalStd 0.001 and the layers. Check also that the labels belong to their inputs", withoutWarnings);
        Assert.DoesNotContain("vanished", withoutWarnings);

        // A bias before a BatchNorm has a zero gradient by design: its warning is not a dying signal.
        var batchNorm = new RunReport(NullTrainingObserver.Instance);
        foreach (var epoch in result.Epochs) batchNorm.EpochCompleted(epoch);
        batchNorm.ActorWarned("Vanishing gradient: 0.bias has had a gradient norm below 1E-07 for 3 measurements (now 0 at step 30). Layer 1 is a BatchNorm, " +
                              "which subtracts the batch mean and with it this bias, so its gradient is zero by design: set \"Bias\": false on layer 0.");
        Assert.DoesNotContain("vanished", batchNorm.NotLearning(options, data.Train.ClassCount, result.FinalEpoch.TestAccuracy));
        // With an initializer already scaled to the fans, it is not suggested again.
        var he = new RunReport(NullTrainingObserver.Instance);
        foreach (var epoch in result.Epochs) he.EpochCompleted(epoch);
        he.ActorWarned("Vanishing gradient: 2.weight has had a gradient norm below 1E-07 for 3 measurements (now 1E-09 at step 30). Check the initialization.");
        options.Model.Initializer = new() { Kind = DistTrain.Core.Initialization.InitializerKind.HeNormal };
        var scaled = he.NotLearning(options, data.Train.ClassCount, result.FinalEpoch.TestAccuracy);
        Assert.Contains("with Model:Initializer:Kind = HeNormal the signal dies out through the layers. The initializer is already scaled to fan_in/fan_out: " +
                        "use fewer saturating activations (Sigmoid, Tanh) in a row, or BatchNorm between the layers.", scaled);
        Assert.DoesNotContain("Use HeNormal", scaled);
    }


    /// <summary>
    /// A run fed to the report by hand: <paramref name="rates"/> the learning rate of each step (10 per epoch, 2 epochs),
    /// the training loss of the epochs <paramref name="firstLoss"/> and <paramref name="lastLoss"/> (flat at 2.3 unless given), each step's gradients from 2 workers, and <paramref name="clipped"/> gradients counted as
    /// clipped during it. Returns the report's diagnosis for 10 classes at 10% test accuracy.
    /// </summary>
    private static string? Diagnosis(TrainingOptions options, double[] rates, long clipped, double firstLoss = 2.3, double lastLoss = 2.3)
    {
        long count = 1_000; // the process's count before the run: only the difference is this run's
        var report = new RunReport(NullTrainingObserver.Instance, clippedCount: () => count);
        for (var epoch = 1; epoch <= 2; epoch++)
        {
            report.EpochStarted(epoch, 10, 1000);
            for (var step = 0; step < 10; step++)
            {
                report.StepApplied(epoch, step, 10 * (epoch - 1) + step + 1, 100, 2.3, rates[10 * (epoch - 1) + step], new(0.01, 0.005, 0.005, 0.001));
                report.WorkersReported([2.3, 2.3], [0.005, 0.005], [0, 0]);
            }
            report.EpochCompleted(new EpochSummary(epoch, 10 * epoch, epoch == 1 ? firstLoss : lastLoss, 2.3, 0.1, 1000, 1000, 1, 0.1));
        }
        count += clipped;
        return report.NotLearning(options, 10, 0.1);
    }

    /// <summary>
    /// Batch size 1 at a learning rate of 0.05: the run ended with a mean training loss of 1.4215E+25 (the first step's was
    /// 3.8416) and a test loss of 5.6556E+22, finite, so nothing stopped it, and it exited 0 without a word. It is warned of.
    /// </summary>
    [Fact]
    public void A_run_whose_loss_blew_up_without_reaching_nan_is_warned_of()
    {
        static RunReport Run(double firstStepLoss, double epochLoss)
        {
            var report = new RunReport(NullTrainingObserver.Instance);
            report.EpochStarted(1, 2, 4);
            report.StepApplied(1, 0, 1, 2, firstStepLoss, 0.05, new(0.01, 0.005, 0.005, 0.001));
            report.StepApplied(1, 1, 2, 2, epochLoss, 0.05, new(0.01, 0.005, 0.005, 0.001));
            report.EpochCompleted(new EpochSummary(1, 2, epochLoss, 5.655612353228592E+22, 0.132, 500, 2000, 1, 0.1));
            return report;
        }
        var options = TestData.Options(TestData.Mlp(64, 10), workers: 2, batch: 1, epochs: 1, learningRate: 0.05);
        Assert.Equal("the training loss rose to 1.4215E+025 (epoch 1's mean), 3.7E+24 times the first step's 3.8416, and the test loss is 5.6556E+022: " +
            "the run diverged without reaching NaN, and its final weights are of little use. Lower Optimizer:LearningRate = 0.05 or set " +
            "Optimizer:GradientClipNorm to bound each update.", Run(3.8416300737721767, 1.421540311480931E+25).BlewUp(options));
        options.Optimizer.GradientClipNorm = 5;
        Assert.EndsWith("Lower Optimizer:LearningRate = 0.05.", Run(3.8416300737721767, 1.421540311480931E+25).BlewUp(options));
        Assert.Null(Run(3.84, 3.84 * 999).BlewUp(options)); // below 1,000 times the first step's
        Assert.Null(Run(3.84, 0.4).BlewUp(options));
    }

    /// <summary>
    /// Optimizer:LearningRate 10 with clipping at 5,000: the training loss rose from 5.59E+008 (epoch 1) to 9.81E+009 (epoch 4),
    /// and the warning said it "fell by less than 1%". A rise is called a rise, and the cause named is a learning rate too
    /// large; a rise below 1% (2.3039 to 2.3042, a loss stuck at chance) is called one too, with the diagnosis of a stall.
    /// </summary>
    [Fact]
    public void A_run_whose_training_loss_rose_is_told_it_rose_and_that_the_learning_rate_is_too_large()
    {
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 2, learningRate: 10);
        options.Optimizer.GradientClipNorm = 5000;
        var rates = Enumerable.Repeat(10.0, 20).ToArray();
        Assert.Equal("the model learned nothing: the training loss rose (epoch 1: 5.5941E+008, epoch 2: 9.8111E+009) and the test accuracy (10.00%) is near " +
            "chance (10.00% for 10 classes). A rising training loss means the updates overshoot: lower Optimizer:LearningRate = 10 (for Sgd it is usually 0.01 to 0.1).",
            Diagnosis(options, rates, clipped: 0, firstLoss: 5.5941e8, lastLoss: 9.8111e9));

        // In the usual range, without clipping: still too large for this model, and clipping is offered.
        options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 2, learningRate: 0.1);
        Assert.Equal("the model learned nothing: the training loss rose (epoch 1: 2.3039, epoch 2: 2.4000) and the test accuracy (10.00%) is near " +
            "chance (10.00% for 10 classes). A rising training loss means the updates overshoot: lower Optimizer:LearningRate = 0.1 (within the usual range " +
            "for Sgd, 0.01 to 0.1, but too large for this model and data), or set Optimizer:GradientClipNorm to bound each update.",
            Diagnosis(options, Enumerable.Repeat(0.1, 20).ToArray(), clipped: 0, firstLoss: 2.3039, lastLoss: 2.4));

        var slightly = Diagnosis(options, Enumerable.Repeat(0.1, 20).ToArray(), clipped: 0, firstLoss: 2.3039, lastLoss: 2.3042);
        Assert.StartsWith("the model learned nothing: the training loss rose by less than 1% (epoch 1: 2.3039, epoch 2: 2.3042) and", slightly);
        Assert.Contains("Optimizer:LearningRate = 0.1 is within the usual range for Sgd (0.01 to 0.1), so it is an unlikely cause", slightly);
        Assert.StartsWith("the model learned nothing: the training loss fell by less than 1% (epoch 1: 2.3042, epoch 2: 2.3039) and",
            Diagnosis(options, Enumerable.Repeat(0.1, 20).ToArray(), clipped: 0, firstLoss: 2.3042, lastLoss: 2.3039));
    }

    /// <summary>
    /// Optimizer:GradientClipNorm 1e-6 clipped every step: each update was the learning rate times a vector of norm 1e-6, and
    /// the run learned nothing. The diagnosis said the learning rate, 0.05, was an unlikely cause and blamed the initializer;
    /// it names the clip, with the step's size, and says nothing of the initializer. A clip that left steps unclipped is not
    /// named. Under TopK the workers clip each push, and the pushes are compared with the pushes applied.
    /// </summary>
    [Fact]
    public void A_run_that_learned_nothing_with_every_step_clipped_is_told_of_the_clip()
    {
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 2, learningRate: 0.05);
        options.Optimizer.GradientClipNorm = 1e-6;
        var rates = Enumerable.Repeat(0.05, 20).ToArray();
        var warning = Diagnosis(options, rates, clipped: 20);
        Assert.NotNull(warning);
        Assert.Contains("(10.00% for 10 classes). Optimizer:GradientClipNorm = 1E-06 clipped every step's gradient (20 of 20 steps), so the clip, not the " +
            "gradient, set each update: the learning rate times a vector of norm 1E-06, at most 5E-08 a step at the steps' median learning rate 0.05 " +
            "(before momentum), likely too small to move the weights. Raise GradientClipNorm above the usual gradient norm (disttrain_training_gradient_norm " +
            "gives it per tensor) or set it to 0. Otherwise check that the labels belong to their inputs", warning);
        Assert.DoesNotContain("unlikely cause", warning);
        Assert.DoesNotContain("Initializer", warning);

        // Half the steps clipped: the clip did not set every update, and the diagnosis is as before.
        var half = Diagnosis(options, rates, clipped: 10);
        Assert.DoesNotContain("GradientClipNorm", half);
        Assert.Contains("Optimizer:LearningRate = 0.05 is within the usual range for Sgd (0.01 to 0.1), so it is an unlikely cause; check Model:Initializer:Kind", half);

        // TopK: 2 pushes a step, each clipped on its worker.
        options.Cluster.Compression = Core.Compression.GradientCompression.TopK;
        Assert.Contains("Optimizer:GradientClipNorm = 1E-06 clipped every worker's push (40 clipped, 40 pushes applied; under Cluster:Compression TopK each " +
            "worker clips its own to GradientClipNorm / sqrt(gradients per step)), so the clip, not the gradient, set each update: ", Diagnosis(options, rates, clipped: 40));
        Assert.DoesNotContain("GradientClipNorm", Diagnosis(options, rates, clipped: 20)); // one push in two: not every step
    }

    /// <summary>
    /// Optimizer:LearningRate 0.05 is in the usual range, but the schedule (Exponential, Gamma 1e-30) gave the second epoch's
    /// steps 5e-32: the diagnosis named 0.05 an unlikely cause. It names the rate the steps used, the median and the last,
    /// and the schedule. A warmup as long as the run does the same; a schedule that keeps the rate in range is not named.
    /// </summary>
    [Fact]
    public void A_run_that_learned_nothing_at_a_scheduled_learning_rate_below_the_usual_range_is_told_of_the_schedule()
    {
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: 2, learningRate: 0.05);
        options.Optimizer.Schedule = new() { Kind = Core.Optimization.LearningRateScheduleKind.Exponential, Gamma = 1e-30 };
        double[] exponential = [.. Enumerable.Repeat(0.05, 10), .. Enumerable.Repeat(5e-32, 10)];
        var warning = Diagnosis(options, exponential, clipped: 0);
        Assert.NotNull(warning);
        Assert.Contains("(10.00% for 10 classes). The steps used a learning rate below the usual range for Sgd (0.01 to 0.1): 5E-32 at the median of the " +
            "run's 20 steps and 5E-32 at the last, where Optimizer:LearningRate = 0.05; Optimizer:Schedule (Exponential ×1E-30 per epoch) lowered it, so " +
            "the weights barely moved. Check Optimizer:Schedule's Gamma, MinLearningRate, WarmupSteps and WarmupStartFactor against the run's length. " +
            "Otherwise check that the labels belong to their inputs", warning);
        Assert.DoesNotContain("unlikely cause", warning);

        // A warmup of 100,000 steps from 1e-6× over a run of 20: the rate never left the warmup's start.
        options.Optimizer.Schedule = new() { WarmupSteps = 100_000, WarmupStartFactor = 1e-6 };
        var warmup = Diagnosis(options, [.. Enumerable.Range(0, 20).Select(i => 0.05 * (1e-6 + (1 - 1e-6) * i / 100_000.0))], clipped: 0);
        Assert.Contains("4.55E-06 at the median of the run's 20 steps and 9.55E-06 at the last, where Optimizer:LearningRate = 0.05; Optimizer:Schedule " +
            "(Constant after 100,000 warmup steps from 1E-06×) lowered it", warmup);

        // Cosine from 0.05 down to 0.01 stays in range: the configured rate is still said to be an unlikely cause.
        options.Optimizer.Schedule = new() { Kind = Core.Optimization.LearningRateScheduleKind.Cosine, MinLearningRate = 0.01 };
        var cosine = Diagnosis(options, [.. Enumerable.Range(0, 20).Select(i => 0.01 + 0.04 * (1 + Math.Cos(Math.PI * i / 20)) / 2)], clipped: 0);
        Assert.DoesNotContain("The steps used", cosine);
        Assert.Contains("Optimizer:LearningRate = 0.05 is within the usual range for Sgd (0.01 to 0.1), so it is an unlikely cause", cosine);
    }

    /// <summary>
    /// The same in a whole run: the subset with Optimizer:GradientClipNorm 1e-6 at a learning rate of 0.05 learns nothing,
    /// and the diagnosis, from the run's own count of clipped steps, names the clip.
    /// </summary>
    [Fact]
    public async Task A_run_whose_every_step_was_clipped_to_nothing_is_told_of_the_clip()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 1, batch: 50, epochs: 2, learningRate: 0.05);
        options.Optimizer.GradientClipNorm = 1e-6;
        options.Compute.BlasThreads = 1;
        var report = new RunReport(NullTrainingObserver.Instance);
        var result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, report).WithTestTimeout();
        var warning = report.NotLearning(options, data.Train.ClassCount, result.FinalEpoch.TestAccuracy);
        Assert.True(warning is not null, $"accuracy {result.FinalEpoch.TestAccuracy}, losses {string.Join(", ", result.Epochs.Select(e => e.TrainLoss))}");
        // Other tests in this process may clip too (the count is process-wide): the steps shown are at most this run's 40.
        Assert.Contains("Optimizer:GradientClipNorm = 1E-06 clipped every step's gradient (40 of 40 steps), so the clip, not the gradient, set each update", warning);
        Assert.DoesNotContain("unlikely cause", warning);
    }

    [Theory]
    [InlineData(TrainingMode.Sync)]
    [InlineData(TrainingMode.Async)]
    public async Task Summary_json_records_the_staleness_of_the_applied_gradients_and_each_workers_compute(TrainingMode mode)
    {
        // 1,000 samples, 3 workers of batch 50: shards of 334, 333, 333, so 7 rounds of 3 minibatches per epoch.
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 3, batch: 50, epochs: 2, momentum: 0);
        options.Training.Mode = mode;
        options.Compute.BlasThreads = 1;
        var report = new RunReport(NullTrainingObserver.Instance);
        var result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, report).WithTestTimeout();
        var path = Path.Combine(_directory, "summary.json");
        RunSummaryFile.Write(path, options, data.Normalizer, result, report: report);

        var summary = JsonDocument.Parse(File.ReadAllText(path)).RootElement;
        var staleness = summary.GetProperty("staleness");
        var counts = staleness.GetProperty("counts").EnumerateObject().ToDictionary(c => long.Parse(c.Name), c => c.Value.GetInt64());
        var gradients = 2 * 7 * 3; // every minibatch of both epochs is applied once
        Assert.Equal(gradients, staleness.GetProperty("count").GetInt64());
        Assert.Equal(gradients, counts.Values.Sum());
        Assert.Equal(counts.Sum(c => (double)c.Key * c.Value) / gradients, staleness.GetProperty("mean").GetDouble(), 12);
        Assert.Equal(counts.Keys.Max(), staleness.GetProperty("max").GetInt64());
        var workers = summary.GetProperty("workers").EnumerateArray().ToList();
        Assert.Equal([0, 1, 2], workers.Select(w => w.GetProperty("worker").GetInt32()));
        Assert.Equal(gradients, workers.Sum(w => w.GetProperty("reports").GetInt64()));
        Assert.All(workers, w => Assert.Equal(w.GetProperty("compute_seconds").GetDouble() / w.GetProperty("reports").GetInt64(),
            w.GetProperty("mean_compute_seconds").GetDouble(), 12));
        Assert.All(workers, w => Assert.True(w.GetProperty("mean_compute_seconds").GetDouble() > 0));
        if (mode == TrainingMode.Sync)
        {
            Assert.Equal(gradients / 3, result.Version); // one step per round, all three gradients at staleness 0
            Assert.Equal([0L], counts.Keys);
            Assert.All(workers, w => Assert.Equal(14, w.GetProperty("reports").GetInt64()));
        }
        else
        {
            // One step per gradient. The first step's three minibatches all start from version 0, so the second and third
            // gradients applied are 1 and 2 versions behind: the distribution reaches at least 2.
            Assert.Equal(gradients, result.Version);
            Assert.True(staleness.GetProperty("max").GetInt64() >= 2, $"max staleness {staleness.GetProperty("max")}");
            Assert.True(staleness.GetProperty("p50").GetInt64() <= staleness.GetProperty("p90").GetInt64());
        }
    }
}
