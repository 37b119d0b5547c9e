using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Diagnostics;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

public class GradientHealthTests() : TestKit(TestTimeouts.TestKitConfig)
{
    private static readonly ParameterLayout Layout = new([("0.weight", [2]), ("0.bias", [1])]);

    [Fact]
    public void Per_tensor_norms_and_the_update_ratio_are_measured()
    {
        var monitor = new GradientHealthMonitor(Layout, new MonitoringOptions());
        // gradient (3, 4 | 12); weights (1, 0 | 2) -> (0.4, 0 | 2) after the step.
        var warnings = monitor.Measure(1, [3f, 4f, 12f], [1f, 0f, 2f], [0.4f, 0f, 2f]);
        Assert.Empty(warnings);
        Assert.Equal(5, monitor.Latest[0].GradientNorm, 5);
        Assert.Equal(0.4, monitor.Latest[0].WeightNorm, 5);
        Assert.Equal(0.6 / 0.4, monitor.Latest[0].UpdateRatio, 5);
        Assert.Equal(12, monitor.Latest[1].GradientNorm, 5);
        Assert.Equal(0, monitor.Latest[1].UpdateRatio, 5);
    }

    /// <summary>
    /// Elements of 1e20 are finite, but their squares pass float's largest value: the norm summed in float was infinity,
    /// and "Exploding gradient: ... (now Infinity at step 10)" came a step before any element was non-finite. The norms are
    /// summed again in double then; an infinite element still gives infinity.
    /// </summary>
    [Fact]
    public void A_norm_of_finite_elements_whose_squares_overflow_float_is_finite()
    {
        float[] large = [1e20f, -1e20f, 0f];
        Assert.Equal(Math.Sqrt(2) * 1e20f, GradientHealthMonitor.Norm(large), 1e6);
        Assert.Equal(2.0 * (double)1e20f * 1e20f, GradientHealthMonitor.SumOfSquares(large), 1e27);
        // Clipping's norm stays float32's, as torch's and the sharded server's: infinite, so the step is scaled to 0, as before.
        Assert.Equal(double.PositiveInfinity, GradientHealthMonitor.GlobalNorm(large));
        Assert.Equal(double.PositiveInfinity, GradientHealthMonitor.Norm([1f, float.PositiveInfinity]));
        Assert.True(double.IsNaN(GradientHealthMonitor.Norm([1f, float.NaN])));
        Assert.Equal(5, GradientHealthMonitor.Norm([3f, 4f])); // in range: float's sum, as before
        var monitor = new GradientHealthMonitor(Layout, new MonitoringOptions { WarnAfterMeasurements = 1 });
        var warning = Assert.Single(monitor.Measure(10, [1e20f, 1e20f, 1f], [0f, 0f, 0f], [1e20f, 1e20f, 0f]));
        Assert.Contains("(now 1.41E+20 at step 10)", warning);
        Assert.Equal(Math.Sqrt(2) * 1e20f, monitor.Latest[0].WeightNorm, 1e6);
        Assert.Equal(1, monitor.Latest[0].UpdateRatio, 6);
    }

    /// <summary>A vanishing threshold at or above the exploding one reported every tensor as vanishing, without a word about the config.</summary>
    [Fact]
    public void A_vanishing_threshold_not_below_the_exploding_one_is_a_config_error_naming_both()
    {
        var options = new Core.Configuration.TrainingOptions();
        options.Monitoring.VanishingGradientNorm = 5000;
        Assert.Contains("Monitoring:VanishingGradientNorm = 5000 is not below Monitoring:ExplodingGradientNorm = 1000: every tensor would be reported as " +
            "vanishing (or exploding). Set the vanishing threshold below the exploding one (defaults 1e-7 and 1e3).",
            Core.Configuration.TrainingOptionsValidator.Validate(options, checkDataDirectory: false));
        options.Monitoring.VanishingGradientNorm = 999;
        Assert.DoesNotContain(Core.Configuration.TrainingOptionsValidator.Validate(options, checkDataDirectory: false), p => p.Contains("VanishingGradientNorm", StringComparison.Ordinal));
    }

    [Fact]
    public void Vanishing_and_exploding_gradients_warn_after_K_consecutive_measurements_naming_tensor_and_step()
    {
        var monitor = new GradientHealthMonitor(Layout, new MonitoringOptions { VanishingGradientNorm = 1e-6, ExplodingGradientNorm = 100, WarnAfterMeasurements = 3 });
        float[] w = [1f, 1f, 1f];
        Assert.Empty(monitor.Measure(10, [1e-9f, 0f, 500f], w, w));
        Assert.Empty(monitor.Measure(20, [1e-9f, 0f, 500f], w, w));
        var warnings = monitor.Measure(30, [1e-9f, 0f, 500f], w, w);
        Assert.Equal(2, warnings.Count);
        Assert.Contains(warnings, x => x.StartsWith("Vanishing gradient: 0.weight") && x.Contains("step 30"));
        Assert.Contains(warnings, x => x.StartsWith("Exploding gradient: 0.bias") && x.Contains("Optimizer:GradientClipNorm"));
        Assert.Empty(monitor.Measure(40, [1e-9f, 0f, 500f], w, w)); // once per run of K, not every step after
        Assert.Empty(monitor.Measure(50, [1f, 1f, 1f], w, w));       // a healthy measurement resets the run
    }

    /// <summary>
    /// Batch size 1 at a learning rate of 0.05 (HeNormal, ReLU): the loss blew up to 1.4E+25, the ReLUs died, and the
    /// vanishing-gradient warning came 24 times in one epoch for the same 3 tensors, between exploding ones, advising He
    /// initialization and sigmoid/tanh. It comes once per tensor, and after a measurement above the exploding threshold it
    /// names dead ReLUs after too large steps.
    /// </summary>
    [Fact]
    public void A_vanishing_gradient_is_told_once_per_tensor_and_after_exploding_norms_names_dead_relus()
    {
        var monitor = new GradientHealthMonitor(Layout, new MonitoringOptions { WarnAfterMeasurements = 2 });
        float[] w = [1f, 1f, 1f];
        Assert.Empty(monitor.Measure(10, [1f, 1f, 1f], w, w));
        Assert.Empty(monitor.Measure(20, [3.24e11f, 0f, 1f], w, w)); // 0.weight exploding once: no warning yet
        Assert.Empty(monitor.Measure(30, [0f, 0f, 1f], w, w));
        Assert.Equal("Vanishing gradient: 0.weight has had a gradient norm below 1E-07 for 2 measurements (now 0 at step 40). An earlier measurement had a " +
            "gradient norm above 1E+03 (0.weight: 3.24E+11 at step 20): steps that large can leave ReLU units outputting 0 for every input (dead ReLUs), " +
            "which pass no gradient back. Lower Optimizer:LearningRate or set Optimizer:GradientClipNorm.", Assert.Single(monitor.Measure(40, [0f, 0f, 1f], w, w)));
        // Spells of exploding and vanishing norms alternate: the exploding warning fires at the first spell, and neither
        // warning comes again (each is told once per tensor).
        for (var spell = 0; spell < 3; spell++)
        {
            var step = 100 * (spell + 1);
            Assert.Empty(monitor.Measure(step, [1e5f, 0f, 1f], w, w));
            var exploding = monitor.Measure(step + 10, [1e5f, 0f, 1f], w, w);
            if (spell == 0) Assert.Single(exploding, x => x.StartsWith("Exploding gradient: 0.weight", StringComparison.Ordinal));
            else Assert.Empty(exploding);
            Assert.Empty(monitor.Measure(step + 20, [0f, 0f, 1f], w, w));
            Assert.Empty(monitor.Measure(step + 30, [0f, 0f, 1f], w, w));
        }
        // Another tensor is told of once too; without any exploding norm the advice is the initialization's.
        var quiet = new GradientHealthMonitor(Layout, new MonitoringOptions { WarnAfterMeasurements = 1 });
        Assert.EndsWith("(now 0 at step 1). Check the initialization (He for ReLU), the activations (sigmoid/tanh saturate) and the learning rate.",
            Assert.Single(quiet.Measure(1, [1f, 1f, 0f], w, w)));
        Assert.Empty(quiet.Measure(2, [1f, 1f, 1f], w, w));
        Assert.Empty(quiet.Measure(3, [1f, 1f, 0f], w, w));
    }

    /// <summary>
    /// A model that fits its training data (loss about 0, as a small CNN reaching 100% on a tiny image folder) has every
    /// gradient vanish, its last layer's too: that is the loss's own gradient, which the initialization and activations
    /// before it cannot make small. The warning said to check the initialization and the activations; it now says the loss
    /// is about 0 and names overfitting. A vanishing gradient in an earlier layer alone keeps the initialization's advice.
    /// </summary>
    [Fact]
    public void Every_gradient_vanishing_with_the_last_layers_says_the_loss_is_about_0_not_the_initialization()
    {
        var twoLayers = new ParameterLayout([("0.weight", [2]), ("0.bias", [1]), ("2.weight", [2]), ("2.bias", [1])]);
        float[] w = [1f, 1f, 1f, 1f, 1f, 1f];
        var fitted = new GradientHealthMonitor(twoLayers, new MonitoringOptions { WarnAfterMeasurements = 1 });
        var warnings = fitted.Measure(30, [1e-12f, 0f, 1e-20f, 3e-21f, 0f, 4.6e-21f], w, w);
        Assert.Equal(4, warnings.Count);
        Assert.EndsWith("(now 1E-12 at step 30). The last layer's gradient is as small (2.weight: 3E-21), which is the loss's own gradient times that " +
            "layer's inputs: the loss is about 0, so the model fits its training minibatches (if the test accuracy is well below the training accuracy, " +
            "it overfits: use the overfitting controls, such as Training:EarlyStopping, L2 or Dropout). The " +
            "initialization and the activations before it are not the cause.", warnings[0]);
        Assert.Contains("(now 4.6E-21 at step 30). This is the last layer's gradient, which is the loss's own gradient", warnings[3]);

        // A last layer without a bias vanishes also when every input to it is 0 (dead ReLUs): the initialization's advice stays.
        var noHeadBias = new GradientHealthMonitor(new ParameterLayout([("0.weight", [2]), ("0.bias", [1]), ("2.weight", [2])]),
            new MonitoringOptions { WarnAfterMeasurements = 1 });
        Assert.All(noHeadBias.Measure(1, [1e-12f, 0f, 1e-20f, 0f, 0f], [1f, 1f, 1f, 1f, 1f], [1f, 1f, 1f, 1f, 1f]),
            warning => Assert.EndsWith("Check the initialization (He for ReLU), the activations (sigmoid/tanh saturate) and the learning rate.", warning));

        var early = new GradientHealthMonitor(twoLayers, new MonitoringOptions { WarnAfterMeasurements = 1 });
        Assert.EndsWith("Check the initialization (He for ReLU), the activations (sigmoid/tanh saturate) and the learning rate.",
            Assert.Single(early.Measure(1, [1e-12f, 0f, 0.5f, 0.5f, 0.5f, 0.1f], w, w)));
    }

    /// <summary>
    /// A run whose gradients stay large, with a measurement now and then just under the exploding threshold: each dip
    /// restarted the count, and the same exploding-gradient warning came again after every one. It comes once per tensor;
    /// another tensor that explodes later still gets its own.
    /// </summary>
    [Fact]
    public void An_exploding_gradient_is_told_once_per_tensor_when_the_norm_stays_large_with_dips()
    {
        var monitor = new GradientHealthMonitor(Layout, new MonitoringOptions { ExplodingGradientNorm = 100, WarnAfterMeasurements = 2 });
        float[] w = [1f, 1f, 1f];
        var told = new List<string>();
        // 0.bias: 500, 500, 90 (a dip), 500, 500, 90, ... for 30 measurements: 10 runs of 2 above the threshold.
        for (var m = 1; m <= 30; m++) told.AddRange(monitor.Measure(10 * m, [1f, 0f, m % 3 == 0 ? 90f : 500f], w, w));
        Assert.Equal(["Exploding gradient: 0.bias has had a gradient norm above 100 for 2 measurements (now 500 at step 20). " +
            "Lower Optimizer:LearningRate or set Optimizer:GradientClipNorm."], told);
        // 0.weight explodes later: its own warning, once.
        Assert.Empty(monitor.Measure(310, [300f, 400f, 500f], w, w));
        Assert.Equal(["Exploding gradient: 0.weight has had a gradient norm above 100 for 2 measurements (now 500 at step 320). " +
            "Lower Optimizer:LearningRate or set Optimizer:GradientClipNorm."], monitor.Measure(320, [300f, 400f, 500f], w, w));
        Assert.Empty(monitor.Measure(330, [3f, 4f, 5f], w, w));
        Assert.Empty(monitor.Measure(340, [300f, 400f, 500f], w, w));
        Assert.Empty(monitor.Measure(350, [300f, 400f, 500f], w, w));
    }

    [Fact]
    public void An_exploding_gradient_under_clipping_says_the_update_is_clipped_instead_of_advising_clipping()
    {
        // Before, it said "set Optimizer:GradientClipNorm" to a run that had it set: the norms measured are before clipping.
        var monitor = new GradientHealthMonitor(Layout, new MonitoringOptions { ExplodingGradientNorm = 100, WarnAfterMeasurements = 1 }, clipNorm: 0.1);
        float[] w = [1f, 1f, 1f];
        Assert.Equal(["Exploding gradient: 0.bias has had a gradient norm above 100 for 1 measurements (now 500 at step 10). Optimizer:GradientClipNorm = 0.1 " +
            "already clips the whole averaged gradient the update applies (this norm is measured before clipping); if the loss still rises, lower Optimizer:LearningRate."],
            monitor.Measure(10, [1f, 0f, 500f], w, w));
    }

    [Fact]
    public void A_clip_that_clips_every_measured_step_for_ten_measurements_is_warned_of_once_with_the_norm()
    {
        // Before, only Prometheus showed it: a run with GradientClipNorm 0.5 clipped 900 of its 901 steps without a word.
        var monitor = new GradientHealthMonitor(Layout, new MonitoringOptions { ExplodingGradientNorm = 1e6 }, clipNorm: 0.5);
        float[] w = [1f, 1f, 1f];
        // Global norm of (3, 0, 4) is 5, ten times the clip; one measurement under the clip resets the count.
        for (var m = 1; m < GradientHealthMonitor.ClippedMeasurementsToWarn; m++) Assert.Empty(monitor.Measure(10 * m, [3f, 0f, 4f], w, w));
        Assert.Empty(monitor.Measure(95, [0.3f, 0f, 0.1f], w, w));
        for (var m = 1; m < GradientHealthMonitor.ClippedMeasurementsToWarn; m++) Assert.Empty(monitor.Measure(100 + 10 * m, [3f, 0f, 4f], w, w));
        Assert.Equal(["Gradient clipping: Optimizer:GradientClipNorm = 0.5 clipped the averaged gradient at each of the last 10 measurements (global " +
            "norm now 5 at step 200, 10 times the clip), so the clip, not the gradient's size, sets every step: the update is LearningRate times a vector " +
            "of norm GradientClipNorm. If that is not meant, raise GradientClipNorm above the usual norm (disttrain_training_gradient_norm gives it per " +
            "tensor) or set it to 0, and tune Optimizer:LearningRate instead."], monitor.Measure(200, [3f, 0f, 4f], w, w));
        Assert.Empty(monitor.Measure(210, [3f, 0f, 4f], w, w)); // once per run of ten
        // Without a clip, nothing.
        var unclipped = new GradientHealthMonitor(Layout, new MonitoringOptions { ExplodingGradientNorm = 1e6 });
        for (var m = 1; m <= 20; m++) Assert.Empty(unclipped.Measure(10 * m, [3f, 0f, 4f], w, w));
    }

    [Fact]
    public void Clipping_by_global_norm_is_applied_once_at_the_parameter_server()
    {
        // Two workers send (3, 4) and (3, 4): the average has norm 5; clip to 1 -> (0.6, 0.8); lr 1 -> w = -(0.6, 0.8).
        var layout = new ParameterLayout([("w", [2])]);
        var server = Sys.ActorOf(ParameterServer.Props(new ParameterVector(layout, [0f, 0f]),
            new OptimizerOptions { LearningRate = 1, GradientClipNorm = 1 }, totalEpochs: 1, new MonitoringOptions { GradientNormEverySteps = 0 }));
        var workers = new[] { CreateTestProbe(), CreateTestProbe() };
        server.Tell(new StartEpoch(1, workers.Select(w => w.Ref).ToArray(), [1, 1]), CreateTestProbe().Ref);
        foreach (var worker in workers) worker.ExpectMsg<WeightsUpdated>();
        for (var i = 0; i < 2; i++)
            workers[i].Send(server, new GradientComputed(1, 0, 0, i, 8, 0, [3f, 4f]));
        var update = workers[0].ExpectMsg<WeightsUpdated>();
        Assert.Equal(-0.6f, update.Weights[0], 5);
        Assert.Equal(-0.8f, update.Weights[1], 5);
    }

    [Fact]
    public void Clipping_matches_torch_clip_grad_norm_scale()
    {
        Assert.Equal(1f, GradientHealthMonitor.ClipScale(0.5, 1));
        Assert.Equal(1f, GradientHealthMonitor.ClipScale(10, 0));
        Assert.Equal((float)(1 / (10 + 1e-6)), GradientHealthMonitor.ClipScale(10, 1));
    }

    /// <summary>
    /// Under Cluster:Compression TopK the parameter server measures sparse gradients: a tensor none of whose elements was
    /// sent reads exactly 0, which is no sign of a vanishing gradient. Such measurements neither count toward the warning nor
    /// interrupt a run of small non-zero ones.
    /// </summary>
    [Fact]
    public void A_bias_right_before_a_BatchNorm_is_reported_with_the_advice_to_drop_it()
    {
        // Conv2D (0) then BatchNorm (1): the convolution's bias gets a zero gradient by design; the Dense bias (5) does not
        // have a BatchNorm after it, so its warning keeps the general advice.
        var layout = Core.Models.ModelFactory.Build(TestData.SmallCnn(10)).Layout;
        var monitor = new GradientHealthMonitor(layout, new MonitoringOptions { WarnAfterMeasurements = 2 });
        var gradient = new float[layout.TotalLength];
        Array.Fill(gradient, 1f);
        var bias = layout.Segments.Single(s => s.Name == "0.bias");
        var head = layout.Segments.Single(s => s.Name == "5.bias");
        gradient.AsSpan(bias.Offset, bias.Length).Clear();
        gradient.AsSpan(head.Offset, head.Length).Clear();
        var weights = new float[layout.TotalLength];
        Assert.Empty(monitor.Measure(1, gradient, weights, weights));
        var warnings = monitor.Measure(2, gradient, weights, weights);
        Assert.Equal(2, warnings.Count);
        Assert.EndsWith("Layer 1 is a BatchNorm, which subtracts the batch mean and with it this bias, so its gradient is zero by design: " +
            "set \"Bias\": false on layer 0 (as PyTorch models do before BatchNorm).", Assert.Single(warnings, w => w.StartsWith("Vanishing gradient: 0.bias", StringComparison.Ordinal)));
        Assert.EndsWith("Check the initialization (He for ReLU), the activations (sigmoid/tanh saturate) and the learning rate.",
            Assert.Single(warnings, w => w.StartsWith("Vanishing gradient: 5.bias", StringComparison.Ordinal)));
    }

    [Fact]
    public void With_sparse_gradients_a_tensor_that_was_not_sent_is_not_reported_as_vanishing()
    {
        var options = new MonitoringOptions { VanishingGradientNorm = 1e-6, WarnAfterMeasurements = 3 };
        var sparse = new GradientHealthMonitor(Layout, options.ForSparseGradients());
        Assert.False(options.SparseGradients); // the copy is marked, not the run's settings
        float[] w = [1f, 1f, 1f];
        for (var step = 1; step <= 5; step++) Assert.Empty(sparse.Measure(step, [1f, 1f, 0f], w, w));
        // Small non-zero norms still warn, with unsent steps between them.
        Assert.Empty(sparse.Measure(6, [1f, 1f, 1e-9f], w, w));
        Assert.Empty(sparse.Measure(7, [1f, 1f, 0f], w, w));
        Assert.Empty(sparse.Measure(8, [1f, 1f, 1e-9f], w, w));
        Assert.Single(sparse.Measure(9, [1f, 1f, 1e-9f], w, w), x => x.StartsWith("Vanishing gradient: 0.bias", StringComparison.Ordinal));
        // Dense gradients: exactly 0 is a vanishing gradient (a dead ReLU layer's).
        var dense = new GradientHealthMonitor(Layout, options);
        for (var step = 1; step <= 2; step++) Assert.Empty(dense.Measure(step, [1f, 1f, 0f], w, w));
        Assert.Single(dense.Measure(3, [1f, 1f, 0f], w, w));
    }

    /// <summary>
    /// The main job's MLP with TopK at 1% (Global scope) on the test subset: the last layer's 10-element bias is rarely among
    /// the 2,352 largest elements, so with a measurement every step it read 0 three times by step 30 and was reported as
    /// vanishing although it trains. The run must end without that warning.
    /// </summary>
    [Fact]
    public void TopK_training_reports_no_vanishing_gradient_for_a_tensor_it_did_not_send()
    {
        var folder = Path.Combine(Path.GetTempPath(), $"disttrain-topk-health-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        try
        {
            var config = Path.Combine(folder, "config.json");
            File.WriteAllText(config, $$"""
                {
                  "Data": { "Directory": {{System.Text.Json.JsonSerializer.Serialize(TestData.SubsetDirectory)}} },
                  "Model": { "InputSize": 784, "Layers": [ { "Type": "Dense", "Units": 256 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 128 },
                    { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 } ] },
                  "Optimizer": { "LearningRate": 0.05, "Momentum": 0.9, "L2": 0.0001, "DecayBiasAndNormParameters": true },
                  "Training": { "Workers": 2, "Epochs": 5, "BatchSizePerWorker": 64, "Seed": 1 },
                  "Cluster": { "Compression": "TopK", "TopKScope": "Global" },
                  "Monitoring": { "GradientNormEverySteps": 1 },
                  "Output": { "Directory": {{System.Text.Json.JsonSerializer.Serialize(folder)}} }
                }
                """);
            var (exitCode, output, error) = CliProcess.Run(["train", "--config", config]);
            Assert.True(exitCode == 0, output + error);
            Assert.Contains("Test accuracy after 5 epochs", output);
            Assert.DoesNotContain("Vanishing gradient", output + error);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
