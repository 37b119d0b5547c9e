using DistTrain.Cluster.Hosting;
using DistTrain.Core.Compression;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Models;
using DistTrain.Core.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Tests;

/// <summary>
/// Cluster:Compression in whole single-node trainings (real actors, the 1,000-sample subset): Deep Gradient Compression's
/// worker side (L1 and L2 under momentum correction, local clipping under TopK) against uncompressed training and a hand
/// computation, Float16's overflow named on the worker, and compression in the asynchronous modes.
/// </summary>
public sealed class CompressionTrainingTests
{
    private static readonly ModelOptions Model = TestData.Mlp(32, 10);

    private static async Task<TrainingResult> Run(TrainingOptions options, IShardPlanner? planner = null, ParameterVector? initialWeights = null)
    {
        options.Compute.BlasThreads = 1;
        var data = TestData.Normalized();
        return await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, planner: planner, initialWeights: initialWeights).WithTestTimeout();
    }

    /// <summary>The subset's options: 2 workers of 50, so an epoch is 10 steps of two equal minibatches.</summary>
    private static TrainingOptions Options(double l1, double l2, bool decayBiasAndNorm, GradientCompression compression, double ratio = 1,
        int workers = 2, int epochs = 1, double momentum = 0.9)
    {
        var options = TestData.Options(Model, workers: workers, batch: 50, epochs: epochs, momentum: momentum, l2: l2, l1: l1);
        options.Optimizer.DecayBiasAndNormParameters = decayBiasAndNorm;
        options.Cluster.Compression = compression;
        options.Cluster.TopKRatio = ratio;
        return options;
    }

    /// <summary>
    /// TopK at ratio 1 sends every element, so the error-feedback residual stays empty and, with momentum correction, each
    /// worker's message is its own momentum velocity: the average of the two workers' velocities is the velocity of their
    /// averaged gradients, since momentum is linear and the scales (1/2 each) are the same at every step. With L1 and L2
    /// added on the workers before that momentum, 10 steps must give uncompressed momentum SGD's weights. They differ only
    /// by float32 summation order (Σ sᵢ(μuᵢ + gᵢ) against μ·v + Σ sᵢgᵢ, a rounding or two per step): measured, at most
    /// 6e-8, one unit in the last place of the largest weights (0.75). The tolerance, 5e-7, is 8 such units. Before L1 and
    /// L2 moved to the workers, the parameter server added them without momentum, about 10 times weaker at μ = 0.9, and the
    /// weights differed by up to 1.2e-2 (the test checks that the regularization moves them by at least 50 times the
    /// tolerance, so it can tell). The penalty each epoch reports is the configured λ's, not the parameter server's zero.
    /// </summary>
    [Theory]
    [InlineData(0.0, 0.01, false)]
    [InlineData(0.001, 0.0, true)]
    [InlineData(0.001, 0.01, true)]
    public async Task Under_momentum_correction_L1_and_L2_get_the_momentum_they_get_without_compression(double l1, double l2, bool decayBiasAndNorm)
    {
        const double tolerance = 5e-7;
        var uncompressed = await Run(Options(l1, l2, decayBiasAndNorm, GradientCompression.None));
        var topK = await Run(Options(l1, l2, decayBiasAndNorm, GradientCompression.TopK));
        var unregularized = await Run(Options(0, 0, decayBiasAndNorm, GradientCompression.None));
        Assert.Equal(10, topK.Version);

        var regularizationEffect = MaxDifference(uncompressed.FinalWeights.Values, unregularized.FinalWeights.Values);
        Assert.True(regularizationEffect > 50 * tolerance, $"L1/L2 moved the weights by only {regularizationEffect:G3}: the test cannot tell");
        Compare.Close(uncompressed.FinalWeights.Values, topK.FinalWeights.Values, relative: 0, absolute: tolerance, "weights of TopK 100% with momentum correction");
        Compare.Close(uncompressed.Epochs[0].L1Penalty, topK.Epochs[0].L1Penalty, relative: 1e-4, absolute: 0, "L1 penalty");
        Compare.Close(uncompressed.Epochs[0].L2Penalty, topK.Epochs[0].L2Penalty, relative: 1e-4, absolute: 0, "L2 penalty");
        Assert.True(topK.Epochs[0].L1Penalty + topK.Epochs[0].L2Penalty > 0);
    }

    /// <summary>
    /// Local gradient clipping (Deep Gradient Compression, section 3.3) by hand: two workers of one minibatch each, TopK at
    /// ratio 1 without momentum (so the messages are the gradients), Optimizer:GradientClipNorm c. Each worker's gradient gᵢ
    /// (computed here with the model on its own 50 samples) is clipped to c/√2, and the one step is
    /// w − η (½ min(1, (c/√2)/(‖g₀‖ + 1e-6)) g₀ + ½ min(1, (c/√2)/(‖g₁‖ + 1e-6)) g₁). The parameter server must not clip the
    /// sum again; before, it clipped only the sum, to c.
    /// </summary>
    [Fact]
    public async Task Under_TopK_each_worker_clips_its_own_gradient_to_the_threshold_over_the_root_of_the_workers()
    {
        const double clip = 0.5, rate = 0.05;
        var data = TestData.Normalized();
        int[][] shards = [[.. Enumerable.Range(0, 50)], [.. Enumerable.Range(50, 50)]];
        var initial = ModelFactory.InitialWeights(ModelFactory.Build(Model), Model.Initializer, seed: 7);
        var options = Options(0, 0, false, GradientCompression.TopK, momentum: 0);
        options.Optimizer.GradientClipNorm = clip;
        var result = await Run(options, new FixedShardPlan(100, shards), initial);
        Assert.Equal(1, result.Version);

        var expected = initial.Values.Select(v => (double)v).ToArray();
        foreach (var shard in shards)
        {
            var gradient = Gradient(data.Train, shard, initial);
            var norm = Math.Sqrt(gradient.Sum(g => (double)g * g));
            var scale = Math.Min(1, clip / Math.Sqrt(2) / (norm + 1e-6));
            Assert.True(scale < 0.5, $"gradient norm {norm}: the local clip must bite for the test to mean something");
            for (var i = 0; i < gradient.Length; i++) expected[i] -= rate * 0.5 * scale * gradient[i];
        }
        Compare.Close(expected.Select(v => (float)v).ToArray(), result.FinalWeights.Values, relative: 1e-5, absolute: 1e-7, "weights after one locally clipped step");
    }

    private static float[] Gradient(LabeledDataset train, int[] indices, ParameterVector weights)
    {
        var model = ModelFactory.Build(Model);
        model.LoadParameters(weights.Values);
        var x = Matrix<float>.Build.Dense(train.FeatureCount, indices.Length);
        var t = Matrix<float>.Build.Dense(train.ClassCount, indices.Length);
        train.Gather(indices, x, t);
        model.ComputeGradients(x, t, ModelFactory.BuildLoss(Model.Loss));
        var gradient = new float[model.Layout.TrainableLength];
        model.CopyGradientsTo(gradient);
        return gradient;
    }

    /// <summary>
    /// A Float16 gradient element past ±65,504 would become infinity and the parameter server would report "diverged"
    /// with no cause. First-layer weights a million times their initial scale make hidden activations, and with them the
    /// output layer's weight gradients (hidden activation × softmax error), reach about 1e6: the worker must stop the job
    /// naming the tensor ('2.weight', the output layer), the value and the fixes.
    /// </summary>
    [Fact]
    public async Task A_Float16_overflow_stops_the_worker_naming_the_tensor_the_value_and_the_fixes()
    {
        var initial = ModelFactory.InitialWeights(ModelFactory.Build(Model), Model.Initializer, seed: 7);
        var firstLayer = initial.Layout.Segments[0];
        for (var i = firstLayer.Offset; i < firstLayer.Offset + firstLayer.Length; i++) initial.Values[i] *= 1e6f;
        var options = Options(0, 0, false, GradientCompression.Float16);
        // Clipping is on and the overflow still happens: Float16 workers send unclipped gradients (the parameter server clips
        // after decoding), so the message must not offer clipping, nor a lower learning rate as a fix for the first step.
        options.Optimizer.GradientClipNorm = 1;
        // The caller reports the failure, once: the actors' log does not print it again as a warning (it did, in single-node
        // mode, as `warning: Training failed: ...` above the command line's `training failed: ...`).
        var logged = new List<string>();
        var output = DistTrain.Cluster.Hosting.CommandLineLogger.Output;
        DistTrain.Cluster.Hosting.CommandLineLogger.Output = line => { lock (logged) logged.Add(line); };
        Exception error;
        try
        {
            error = await Assert.ThrowsAnyAsync<Exception>(() => Run(options, initialWeights: initial));
        }
        finally
        {
            DistTrain.Cluster.Hosting.CommandLineLogger.Output = output;
        }
        lock (logged) Assert.DoesNotContain(logged, line => line.Contains("Training failed", StringComparison.Ordinal));
        Assert.Contains("of tensor '2.weight'", error.Message);
        Assert.EndsWith("beyond Float16's range of ±65,504: it would reach the parameter server as infinity and stop training as diverged. " +
            "Set Cluster:Compression to BFloat16 (float32's range in 2 bytes) or None (float32). Optimizer:GradientClipNorm does not prevent " +
            "this: with Float16 the parameter server clips after decoding, past the overflow. A lower Optimizer:LearningRate does not change " +
            "the first step's gradient; it can help only when the gradients grew over earlier updates.", error.Message);
        Assert.DoesNotContain("set Optimizer:GradientClipNorm to clip the gradients", error.Message);
        // BFloat16 has float32's range: the same start trains on (or diverges later for its own reasons), no overflow.
        options.Cluster.Compression = GradientCompression.BFloat16;
        var bfloat16 = await Run(options, initialWeights: initial);
        Assert.Equal(10, bfloat16.Version);
    }

    /// <summary>
    /// Compression in the asynchronous modes, which the policies see only as dense reports. BoundedStaleness with bound 0
    /// runs step for step as Sync, so with TopK at ratio 1 and momentum correction it must give the uncompressed weights (to
    /// float32 summation order, as above); with bound 2 and TopK 10% it must still train. Async with one worker is Sync,
    /// and TopK at ratio 1 with momentum correction and L2 equals momentum SGD there bit for bit (one worker: the same
    /// operations in the same order); with three workers and TopK 10% it must train and use every sample once per epoch.
    /// </summary>
    [Theory]
    [InlineData(TrainingMode.BoundedStaleness)]
    [InlineData(TrainingMode.Async)]
    public async Task Compression_trains_in_the_asynchronous_modes_and_at_ratio_1_gives_the_uncompressed_weights(TrainingMode mode)
    {
        var workers = mode == TrainingMode.Async ? 1 : 2;
        var exactNone = Options(0, 0.01, false, GradientCompression.None, workers: workers);
        var exactTopK = Options(0, 0.01, false, GradientCompression.TopK, workers: workers);
        foreach (var options in new[] { exactNone, exactTopK })
        {
            options.Training.Mode = mode;
            options.Training.StalenessBound = 0;
        }
        var none = await Run(exactNone);
        var topK = await Run(exactTopK);
        Assert.Equal(none.Version, topK.Version);
        if (mode == TrainingMode.Async) Compare.Identical(none.FinalWeights.Values, topK.FinalWeights.Values, "Async, 1 worker");
        else Compare.Close(none.FinalWeights.Values, topK.FinalWeights.Values, relative: 0, absolute: 5e-7, "BoundedStaleness, bound 0");

        var sparse = Options(0, 1e-4, false, GradientCompression.TopK, ratio: 0.1, workers: 3, epochs: 3);
        sparse.Training.Mode = mode;
        sparse.Training.StalenessBound = 2;
        if (mode == TrainingMode.Async) sparse.Optimizer.Momentum = 0.23; // the momentum Async's warning names for 3 workers
        var trained = await Run(sparse);
        Assert.All(trained.Epochs, e => Assert.Equal(1000, e.TrainSamples));
        Assert.True(trained.Epochs[^1].TrainLoss < 0.8 * trained.Epochs[0].TrainLoss,
            $"train loss {trained.Epochs[0].TrainLoss:F3} after epoch 1, {trained.Epochs[^1].TrainLoss:F3} after epoch 3");
        // Above chance (10%) by a wide margin. Not tighter: in these modes the arrival order, which the machine's load
        // sets, changes the run; BoundedStaleness ended at 55.6% in one full-suite run on a loaded 2-core machine, above
        // 60% in the others.
        Assert.True(trained.Epochs[^1].TestAccuracy > 0.4, $"test accuracy {trained.Epochs[^1].TestAccuracy:P1}");
    }

    /// <summary>
    /// The codec's worker side by hand, on a layout of '0.weight' [2] and '0.bias' [1] with 4 workers per step: the gradient
    /// [3, 4, 12] has norm 13, clipped to 2/√4 = 1 it is [3, 4, 12] / (13 + 1e-6); then L2 0.5 and L1 0.25 add
    /// 0.5·w + 0.25·sign(w) to the weight only (biases are not decayed by default): w = [1, −2] adds [0.75, −1.25]. TopK at
    /// ratio 1 sends all of it, so the report holds exactly that. Float16 refuses 70,000 naming '0.bias' element 0.
    /// </summary>
    [Fact]
    public void The_worker_side_clips_to_the_local_norm_then_adds_L1_and_L2_on_the_decayed_tensors_by_hand()
    {
        var layout = new ParameterLayout([("0.weight", [2]), ("0.bias", [1])]);
        var codec = new Cluster.Training.GradientWireCodec(new GradientCompressionSettings(GradientCompression.TopK, TopKRatio: 1), layout,
            new Cluster.Training.LocalGradientSettings(ClipNorm: 2, L1: 0.25, L2: 0.5, DecayBiasAndNormParameters: false));
        float[] report = [3f, 4f, 12f];
        codec.Encode(report, [1f, -2f, 5f], workersPerStep: 4);
        var scale = 1.0 / (13 + 1e-6);
        Compare.Close([(float)(3 * scale + 0.75), (float)(4 * scale - 1.25), (float)(12 * scale)], report, relative: 1e-6, absolute: 0, "prepared gradient");

        var float16 = new Cluster.Training.GradientWireCodec(new GradientCompressionSettings(GradientCompression.Float16), layout);
        var error = Assert.Throws<GradientOverflowException>(() => float16.Encode([1f, 65_519f, 70_000f]));
        Assert.StartsWith("Gradient element 0 of tensor '0.bias' is 70000 (gradient plus error-feedback residual), beyond Float16's range", error.Message);
        Assert.Equal((2, 70_000f), (error.Index, error.Value));
        float16.Encode([1f, 65_519f, -65_519f]); // rounds to ±65,504: within range, the residual keeps the rest
    }

    /// <summary>
    /// Under TopK each worker clips its own push, and the parameter server clips nothing, so its measurements never warned
    /// that the clip sets every step (a run with every push clipped said nothing). The codec counts the clipped pushes in a
    /// row: by hand, clip 2 over 4 gradients per step is 1 per push, [3, 4, 12] (norm 13) is clipped, [0.3, 0.4, 0] (norm
    /// 0.5) is not and ends the run; the warning comes once, at the third clipped push in a row, with the clip and the norm
    /// it has seen. A codec told to count none never warns.
    /// </summary>
    [Fact]
    public void A_worker_whose_pushes_are_all_clipped_warns_once_that_the_clip_sets_every_step()
    {
        var layout = new ParameterLayout([("0.weight", [2]), ("0.bias", [1])]);
        var settings = new GradientCompressionSettings(GradientCompression.TopK, TopKRatio: 1);
        var local = new Cluster.Training.LocalGradientSettings(ClipNorm: 2, L1: 0, L2: 0, DecayBiasAndNormParameters: false);
        var codec = new Cluster.Training.GradientWireCodec(settings, layout, local, clippedPushesToWarn: 3);
        var quiet = new Cluster.Training.GradientWireCodec(settings, layout, local);
        string? Push(Cluster.Training.GradientWireCodec c, params float[] gradient)
        {
            c.Encode(gradient, workersPerStep: 4);
            return c.TakeClippingWarning(worker: 0);
        }
        Assert.Null(Push(codec, 3f, 4f, 12f));
        Assert.Null(Push(codec, 3f, 4f, 12f));
        Assert.Null(Push(codec, 0.3f, 0.4f, 0f)); // not clipped: the run starts again
        Assert.Null(Push(codec, 3f, 4f, 12f));
        Assert.Null(Push(codec, 3f, 4f, 12f));
        Assert.Equal("Gradient clipping: Optimizer:GradientClipNorm = 2 clipped worker 0's gradient at each of its last 3 pushes (under " +
            "Cluster:Compression TopK each worker clips its own push, to GradientClipNorm / sqrt(4 gradients per step) = 1; the norm is now 13, " +
            "13 times that), so the clip, not the gradient's size, sets every step: each push is a vector of that norm. If that is not meant, " +
            "raise GradientClipNorm above 26 (this norm times the square root of the gradients per step) or set it to 0, and tune " +
            "Optimizer:LearningRate instead.", Push(codec, 3f, 4f, 12f));
        for (var i = 0; i < 5; i++) Assert.Null(Push(codec, 3f, 4f, 12f)); // once
        for (var i = 0; i < 5; i++) Assert.Null(Push(quiet, 3f, 4f, 12f));
    }

    /// <summary>
    /// The same in a whole run: TopK with Optimizer:GradientClipNorm 1.25e-6 clips every push; with the gradient norms measured
    /// every step, worker 0 warns after 10 (<see cref="Core.Diagnostics.GradientHealthMonitor.ClippedMeasurementsToWarn"/>)
    /// clipped pushes in a row, as the parameter server does after 10 measurements without TopK. Only worker 0 warns.
    /// </summary>
    [Fact]
    public async Task A_TopK_run_whose_pushes_are_all_clipped_is_warned_of()
    {
        var options = Options(0, 0, decayBiasAndNorm: true, GradientCompression.TopK, ratio: 0.1, epochs: 2);
        options.Optimizer.GradientClipNorm = 1.25e-6;
        options.Monitoring.GradientNormEverySteps = 1;
        Assert.Equal(10, Cluster.Training.ReplicaSettings.From(options).ClippedPushesToWarn);
        var warnings = new System.Collections.Concurrent.ConcurrentQueue<string>();
        Action<string> warned = warnings.Enqueue;
        CommandLineLogger.WarningLogged += warned;
        try
        {
            await Run(options);
        }
        finally
        {
            CommandLineLogger.WarningLogged -= warned;
        }
        // The logger's event is process-wide: only this run's clip (1.25e-6) is looked for.
        var clipping = warnings.Where(w => w.StartsWith("Gradient clipping: Optimizer:GradientClipNorm = 1.25E-06 clipped worker ", StringComparison.Ordinal)).ToList();
        var warning = Assert.Single(clipping);
        Assert.StartsWith("Gradient clipping: Optimizer:GradientClipNorm = 1.25E-06 clipped worker 0's gradient at each of its last 10 pushes (under " +
            "Cluster:Compression TopK each worker clips its own push, to GradientClipNorm / sqrt(2 gradients per step) = 8.84E-07; the norm is now ", warning);
        // Off with the measurements, as the parameter server's warning is; and without TopK the parameter server clips and warns.
        options.Monitoring.GradientNormEverySteps = 0;
        Assert.Equal(0, Cluster.Training.ReplicaSettings.From(options).ClippedPushesToWarn);
        options.Monitoring.GradientNormEverySteps = 1;
        options.Cluster.Compression = GradientCompression.None;
        Assert.Equal(0, Cluster.Training.ReplicaSettings.From(options).ClippedPushesToWarn);
    }

    private static double MaxDifference(float[] a, float[] b) => a.Zip(b, (x, y) => Math.Abs((double)x - y)).Max();
}
