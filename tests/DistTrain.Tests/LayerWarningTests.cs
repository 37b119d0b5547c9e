using System.Text;
using DistTrain.Core.Configuration;
using DistTrain.Core.Models;

namespace DistTrain.Tests;

/// <summary>Layer settings a layer's type does not use, a Dropout without a Rate, and an activation on the logits are warned before a run, naming the key, the layer and the fix.</summary>
public class LayerWarningTests
{
    private const string Mlp = """{ "Model": { "Layers": [{ "Type": "Dense", "Units": 32 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 }] } }""";

    [Fact]
    public void Layer_settings_a_type_does_not_use_and_a_dropout_without_rate_are_warned()
    {
        var model = new ModelOptions
        {
            Layers =
            [
                new LayerOptions { Type = "Dense", Units = 32 },
                new LayerOptions { Type = "relu", Units = 64 },
                new LayerOptions { Type = "Dropout", KernelSize = 3 },
                new LayerOptions { Type = "Dropout", Rate = 0.5 },
                new LayerOptions { Type = "Dense", Units = 10, Bias = false },
            ],
        };
        Assert.Equal([
            "Model:Layers:1:Units = 64 is ignored: a ReLU layer does not use Units (it uses no settings besides Type). Remove Units from layer 1, or change its Type.",
            "Model:Layers:2:KernelSize = 3 is ignored: a Dropout layer does not use KernelSize (it uses only Rate). Remove KernelSize from layer 2, or change its Type.",
            "Model:Layers:2 (Dropout) has no Rate, so it drops nothing: set Model:Layers:2:Rate in [0, 1), such as 0.5, or remove the layer.",
        ], TrainingOptionsValidator.LayerWarnings(model));
        var options = TrainingOptionsLoader.Load("test.json", Encoding.UTF8.GetBytes(Mlp), null, checkDataDirectory: false, new Dictionary<string, string?>());
        Assert.Empty(TrainingOptionsValidator.LayerWarnings(options.Model));
    }

    /// <summary>
    /// A bias right before a BatchNorm is cancelled by the batch mean: said at start-up for each such layer (at run time
    /// only a tensor whose gradient fell below the vanishing threshold was named, and float rounding kept some above it).
    /// Without the bias, or with another layer between, nothing is said.
    /// </summary>
    [Fact]
    public void A_bias_right_before_a_BatchNorm_is_warned_of_at_start_up_for_each_layer()
    {
        var model = new ModelBuilder(1, 28, 28).Conv2D(4, kernelSize: 3).BatchNorm().ReLU().Conv2D(4, kernelSize: 3, bias: false).BatchNorm().ReLU()
            .Dense(16).BatchNorm().Dense(10).Build();
        Assert.Equal([
            "Model:Layers:0 (Conv2D) has a bias, and layer 1 is a BatchNorm, which subtracts the batch mean and with it any constant the bias adds: the " +
            "bias changes no output and its gradient is 0 (up to rounding). Set Model:Layers:0:Bias to false, as PyTorch models do before BatchNorm " +
            "(the BatchNorm's own shift takes its place).",
            "Model:Layers:6 (Dense) has a bias, and layer 7 is a BatchNorm, which subtracts the batch mean and with it any constant the bias adds: the " +
            "bias changes no output and its gradient is 0 (up to rounding). Set Model:Layers:6:Bias to false, as PyTorch models do before BatchNorm " +
            "(the BatchNorm's own shift takes its place).",
        ], TrainingOptionsValidator.LayerWarnings(model));
    }

    [Fact]
    public void L1_and_L2_with_every_weight_they_would_decay_frozen_are_warned()
    {
        // Every weight frozen, the biases left to train and not decayed: L1 0.001 and L2 0.01 did nothing, without a word.
        const string config = """
            { "Model": { "Layers": [{ "Type": "Dense", "Units": 256 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 300 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 }],
                         "Freeze": ["0.weight", "2.weight", "4.weight"] },
              "Optimizer": { "L1": 0.001, "L2": 0.01 } }
            """;
        var options = TrainingOptionsLoader.Load("test.json", Encoding.UTF8.GetBytes(config), null, checkDataDirectory: false, new Dictionary<string, string?>());
        Assert.Equal("Optimizer:L1 = 0.001 and Optimizer:L2 = 0.01 are not used: Model:Freeze freezes every weight they would decay (0.weight, 2.weight, 4.weight), " +
            "and the tensors left to train (biases, normalization scales and shifts) are not decayed with Optimizer:DecayBiasAndNormParameters false. Set " +
            "DecayBiasAndNormParameters to true to decay them, leave a weight out of Freeze, or remove L1 and L2.", DistTrain.Cli.TrainCommand.NothingToDecay(options));
        options.Optimizer.L1 = 0;
        Assert.StartsWith("Optimizer:L2 = 0.01 is not used: Model:Freeze freezes every weight it would decay (", DistTrain.Cli.TrainCommand.NothingToDecay(options));
        Assert.EndsWith(", or remove L2.", DistTrain.Cli.TrainCommand.NothingToDecay(options));
        options.Optimizer.DecayBiasAndNormParameters = true; // the biases are decayed then
        Assert.Null(DistTrain.Cli.TrainCommand.NothingToDecay(options));
        options.Optimizer.DecayBiasAndNormParameters = false;
        options.Model.Freeze = ["0.weight", "2.weight"]; // 4.weight trains and is decayed
        Assert.Null(DistTrain.Cli.TrainCommand.NothingToDecay(options));
        options.Model.Freeze = ["0", "2.*", "4.weight"]; // layer indices and prefixes freeze the weights too
        Assert.NotNull(DistTrain.Cli.TrainCommand.NothingToDecay(options));
    }

    [Fact]
    public void A_dropout_rate_of_0_that_was_set_is_called_rate_0_not_no_rate()
    {
        // DISTTRAIN_Model__Layers__1__Rate=0 was reported as "has no Rate".
        const string config = """{ "Model": { "Layers": [{ "Type": "Dense", "Units": 32 }, { "Type": "Dropout", "Rate": 0.5 }, { "Type": "Dense", "Units": 10 }] } }""";
        var options = TrainingOptionsLoader.Load("test.json", Encoding.UTF8.GetBytes(config), null, checkDataDirectory: false,
            new Dictionary<string, string?> { ["DISTTRAIN_Model__Layers__1__Rate"] = "0" });
        Assert.Equal(["Model:Layers:1 (Dropout) has Rate 0, so it drops nothing: set Model:Layers:1:Rate in [0, 1), such as 0.5, or remove the layer."],
            TrainingOptionsValidator.LayerWarnings(options.Model));
        var left = TrainingOptionsLoader.Load("test.json", Encoding.UTF8.GetBytes(config.Replace(@", ""Rate"": 0.5", "", StringComparison.Ordinal)), null,
            checkDataDirectory: false, new Dictionary<string, string?>());
        Assert.Equal(["Model:Layers:1 (Dropout) has no Rate, so it drops nothing: set Model:Layers:1:Rate in [0, 1), such as 0.5, or remove the layer."],
            TrainingOptionsValidator.LayerWarnings(left.Model));
    }

    [Fact]
    public void An_activation_or_dropout_after_the_last_dense_layer_is_warned_under_softmax_cross_entropy()
    {
        var model = new ModelOptions
        {
            Layers =
            [
                new LayerOptions { Type = "Dense", Units = 32 },
                new LayerOptions { Type = "ReLU" },
                new LayerOptions { Type = "Dense", Units = 10 },
                new LayerOptions { Type = "relu" },
                new LayerOptions { Type = "Dropout", Rate = 0.5 },
            ],
        };
        Assert.Equal([
            "Model:Layers:3 (ReLU) comes after the last Dense layer (Model:Layers:2), on the logits: Model:Loss SoftmaxCrossEntropy applies softmax to the logits itself, so the ReLU only clips them at 0. Remove layer 3.",
            "Model:Layers:4 (Dropout) comes after the last Dense layer (Model:Layers:2), on the logits: Model:Loss SoftmaxCrossEntropy applies softmax to the logits itself, so the Dropout only zeroes some of them at random. Remove layer 4.",
        ], TrainingOptionsValidator.LayerWarnings(model));
        // Mean squared error against one-hot targets takes the outputs as they are: a Sigmoid there is a choice.
        model.Loss = LossTypes.MeanSquaredError;
        Assert.Empty(TrainingOptionsValidator.LayerWarnings(model));
    }

    // The datasets below hold 2 samples: the warnings are those of 2 workers (Training:Workers' default of 4 would leave 2
    // workers without a sample, which is warned of too).

    [Fact]
    public void The_layer_warnings_are_among_the_warnings_printed_before_training()
    {
        var options = TrainingOptionsLoader.Load("test.json", Encoding.UTF8.GetBytes(
            """{ "Model": { "InputSize": 2, "Layers": [{ "Type": "Dense", "Units": 4 }, { "Type": "Dropout" }, { "Type": "Dense", "Units": 2 }] } }"""),
            null, checkDataDirectory: false, new Dictionary<string, string?>());
        var train = new DistTrain.Core.Data.LabeledDataset([0f, 1f, 1f, 0f], [0, 1], 2, 2, null);
        Assert.Equal(["Model:Layers:1 (Dropout) has no Rate, so it drops nothing: set Model:Layers:1:Rate in [0, 1), such as 0.5, or remove the layer."],
            DistTrain.Cli.TrainCommand.RunWarnings(options, train, workers: 2));
    }

    /// <summary>
    /// Zeros (or Constant) gives every weight of a layer the same value: with hidden layers their units stay identical for
    /// the whole run. That got no word; it is warned of at start-up, naming the fix. A network without hidden layers
    /// (softmax regression) learns from zeros, and is not.
    /// </summary>
    [Fact]
    public void An_initializer_that_gives_every_weight_the_same_value_is_warned_of_with_hidden_layers_only()
    {
        var options = TrainingOptionsLoader.Load("test.json", Encoding.UTF8.GetBytes(
            """{ "Model": { "InputSize": 2, "Initializer": { "Kind": "Zeros" }, "Layers": [{ "Type": "Dense", "Units": 4 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 2 }] } }"""),
            null, checkDataDirectory: false, new Dictionary<string, string?>());
        var train = new DistTrain.Core.Data.LabeledDataset([0f, 1f, 1f, 0f], [0, 1], 2, 2, null);
        Assert.Equal(["Model:Initializer:Kind = Zeros gives every weight of a layer the same value: the units of the hidden layer then compute the same " +
            "output and get the same gradient, so they stay identical for the whole run (the symmetry is never broken) and the network learns " +
            "no more than one unit per layer could. Set Model:Initializer:Kind to HeNormal (the default) for ReLU, or XavierUniform for Tanh and Sigmoid."],
            DistTrain.Cli.TrainCommand.RunWarnings(options, train, workers: 2));
        options.Model.Initializer.Kind = DistTrain.Core.Initialization.InitializerKind.Constant;
        options.Model.Initializer.Constant = 0.5;
        Assert.StartsWith("Model:Initializer:Kind = Constant, Constant 0.5 gives every weight of a layer the same value", Assert.Single(DistTrain.Cli.TrainCommand.RunWarnings(options, train, workers: 2)));
        // Random initializers, pretrained weights and a resumed run: nothing to say.
        options.Checkpoint.Resume = true;
        Assert.Empty(DistTrain.Cli.TrainCommand.RunWarnings(options, train, workers: 2));
        options.Checkpoint.Resume = false;
        options.Model.Initializer.Kind = DistTrain.Core.Initialization.InitializerKind.XavierUniform;
        options.Model.Initializer.Constant = 0;
        Assert.Empty(DistTrain.Cli.TrainCommand.RunWarnings(options, train, workers: 2));

        var regression = TrainingOptionsLoader.Load("test.json", Encoding.UTF8.GetBytes(
            """{ "Model": { "InputSize": 2, "Initializer": { "Kind": "Zeros" }, "Layers": [{ "Type": "Dense", "Units": 2 }] } }"""),
            null, checkDataDirectory: false, new Dictionary<string, string?>());
        Assert.Empty(DistTrain.Cli.TrainCommand.RunWarnings(regression, train, workers: 2));

        // Dropout's random masks do set the units apart, slowly: the warning says so rather than "identical for the whole run".
        var dropout = TrainingOptionsLoader.Load("test.json", Encoding.UTF8.GetBytes(
            """{ "Model": { "InputSize": 2, "Initializer": { "Kind": "Zeros" }, "Layers": [{ "Type": "Dense", "Units": 4 }, { "Type": "ReLU" }, { "Type": "Dropout", "Rate": 0.5 }, { "Type": "Dense", "Units": 2 }] } }"""),
            null, checkDataDirectory: false, new Dictionary<string, string?>());
        Assert.Equal(["Model:Initializer:Kind = Zeros gives every weight of a layer the same value: the units of the hidden layer then compute the same " +
            "output and get the same gradient, so they start identical and only Dropout's random masks set them apart, slowly and by chance. " +
            "Set Model:Initializer:Kind to HeNormal (the default) for ReLU, or XavierUniform for Tanh and Sigmoid."],
            DistTrain.Cli.TrainCommand.RunWarnings(dropout, train, workers: 2));
    }

    /// <summary>
    /// Model:Freeze without Model:Pretrained froze the initializer's random weights without a word, and the start-up lines
    /// named frozen tensors only with pretrained weights: both now say so.
    /// </summary>
    [Fact]
    public void Freezing_without_pretrained_weights_is_warned_of_and_named_at_start_up()
    {
        var options = TrainingOptionsLoader.Load("test.json", Encoding.UTF8.GetBytes(
            """{ "Model": { "InputSize": 2, "Layers": [{ "Type": "Dense", "Units": 4 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 2 }] } }"""),
            null, checkDataDirectory: false, new Dictionary<string, string?> { ["DISTTRAIN_Model__Freeze__0"] = "0" });
        var train = new DistTrain.Core.Data.LabeledDataset([0f, 1f, 1f, 0f], [0, 1], 2, 2, null);
        Assert.Equal(["Model:Freeze = [0] without Model:Pretrained: the frozen layers keep their random initial weights (HeNormal) for the whole run, " +
            "and only the others train. Set Model:Pretrained to the checkpoint (or run folder) to start from, or remove Freeze."],
            DistTrain.Cli.TrainCommand.RunWarnings(options, train, workers: 2));
        Assert.Equal("no pretrained weights; frozen at their initial weights: 0", DistTrain.Cli.TrainCommand.SettingsLines(options, "1", null, null).Last());
        // Resuming, the frozen tensors come from the checkpoint: no warning, and the line says so.
        options.Checkpoint.Resume = true;
        Assert.Empty(DistTrain.Cli.TrainCommand.RunWarnings(options, train, workers: 2));
        Assert.Equal("frozen: 0 (with the weights of the checkpoint resumed from, if one is found)", DistTrain.Cli.TrainCommand.SettingsLines(options, "1", null, null).Last());
        options.Checkpoint.Resume = false;

        options.Model.Pretrained = "pretrained.safetensors";
        Assert.Empty(DistTrain.Cli.TrainCommand.RunWarnings(options, train, workers: 2));
        Assert.Equal("pretrained weights from pretrained.safetensors; frozen: 0", DistTrain.Cli.TrainCommand.SettingsLines(options, "1", null, null).Last());
    }

    [Fact]
    public void BatchNorm_on_flat_features_with_minibatches_of_one_sample_is_warned_of_not_after_a_convolution()
    {
        // Before, a run with one sample per worker trained without a word while BatchNorm's running statistics stayed 0 and 1.
        static TrainingOptions WithBatchNorm(int batch)
        {
            var model = TestData.Mlp(16, 10);
            model.Layers.Insert(1, new LayerOptions { Type = LayerTypes.BatchNorm });
            return TestData.Options(model, workers: 2, batch: batch, epochs: 1);
        }
        var every = DistTrain.Cli.TrainCommand.BatchNormWithOneSample(WithBatchNorm(1), trainSamples: 200, workers: 2);
        Assert.Equal("Training:BatchSizePerWorker = 1: a minibatch of one sample has no batch statistics, so BatchNorm on flat features (after a Dense " +
            "layer) normalizes it with its running statistics and does not update them (PyTorch raises an error there); with every minibatch of one " +
            "sample they never change from their starting values. Use 2 or more samples per worker, or LayerNorm.", every);
        // 200 samples over 2 workers: shards of 100 = 3 x 33 + 1; the nearest sizes that avoid it are named.
        var last = DistTrain.Cli.TrainCommand.BatchNormWithOneSample(WithBatchNorm(33), trainSamples: 200, workers: 2);
        Assert.StartsWith("200 training samples over 2 workers give a shard of 100, whose last minibatch of Training:BatchSizePerWorker = 33 holds one sample:", last);
        Assert.EndsWith("for that step of each epoch. Training:BatchSizePerWorker = 32 or 34 avoids it.", last);
        // 201 samples: shards of 100 and 101; 101 = 3 x 33 + 2.
        Assert.StartsWith("201 training samples over 2 workers give a shard of 100,",
            DistTrain.Cli.TrainCommand.BatchNormWithOneSample(WithBatchNorm(33), trainSamples: 201, workers: 2));
        Assert.Null(DistTrain.Cli.TrainCommand.BatchNormWithOneSample(WithBatchNorm(32), trainSamples: 200, workers: 2));
        Assert.Null(DistTrain.Cli.TrainCommand.BatchNormWithOneSample(TestData.Options(TestData.Mlp(16, 10), 2, 1, 1), trainSamples: 200, workers: 2));

        // After a convolution each channel has its positions: one image gives statistics, as in PyTorch.
        var conv = TestData.Options(new ModelOptions
        {
            InputShape = [1, 28, 28],
            Layers = [new() { Type = LayerTypes.Conv2D, Channels = 4, KernelSize = 3 }, new() { Type = LayerTypes.BatchNorm }, new() { Type = LayerTypes.ReLU },
                new() { Type = LayerTypes.Flatten }, new() { Type = LayerTypes.Dense, Units = 10 }],
        }, workers: 2, batch: 1, epochs: 1);
        Assert.Null(DistTrain.Cli.TrainCommand.BatchNormWithOneSample(conv, trainSamples: 200, workers: 2));
    }

    [Fact]
    public void BatchNorm_on_one_sample_shards_is_warned_of_also_when_workers_outnumber_the_samples()
    {
        // Before, 3 samples over 8 workers were warned of only as 5 idle workers, while the other 3 had shards of one sample,
        // so BatchNorm ran on one-sample minibatches in every step; with 2 or 3 workers the BatchNorm warning came.
        var model = TestData.Mlp(16, 3);
        model.Layers[0].Bias = false; // the bias a BatchNorm cancels has a warning of its own
        model.Layers.Insert(1, new LayerOptions { Type = LayerTypes.BatchNorm });
        var options = TestData.Options(model, workers: 8, batch: 16, epochs: 2);
        var train = new DistTrain.Core.Data.LabeledDataset(new float[3 * 784], [0, 1, 2], 784, classCount: 3, null);
        const string Effect = "a minibatch of one sample has no batch statistics, so BatchNorm on flat features (after a Dense layer) normalizes it " +
            "with its running statistics and does not update them (PyTorch raises an error there), for that step of each epoch.";
        Assert.Equal([
            "8 workers share 3 training samples: 5 of them get no sample and compute nothing in any epoch. Use at most 3 workers " +
                "(Training:Workers; in cluster mode, fewer worker nodes), or more training data.",
            "3 training samples over 8 workers give a shard of 1, whose last minibatch of Training:BatchSizePerWorker = 16 holds one sample: " +
                Effect + " 1 worker (Training:Workers; in cluster mode, worker nodes) avoids it, or use LayerNorm.",
        ], DistTrain.Cli.TrainCommand.RunWarnings(options, train, workers: 8));

        // No batch size helps a shard of one sample: the most workers below the given ones whose shards all avoid it.
        Assert.Equal("10 training samples over 12 workers give a shard of 1, whose last minibatch of Training:BatchSizePerWorker = 16 holds one sample: " +
            Effect + " 5 workers (Training:Workers; in cluster mode, worker nodes) avoid it, or use LayerNorm.",
            DistTrain.Cli.TrainCommand.BatchNormWithOneSample(options, trainSamples: 10, workers: 12));
        Assert.EndsWith(Effect + " 1 worker (Training:Workers; in cluster mode, worker nodes) avoids it, or use LayerNorm.",
            DistTrain.Cli.TrainCommand.BatchNormWithOneSample(options, trainSamples: 3, workers: 3));
        // One sample is a one-sample minibatch with any number of workers.
        Assert.Equal("1 training sample over 4 workers gives a shard of 1, whose last minibatch of Training:BatchSizePerWorker = 16 holds one sample: " +
            Effect + " Use LayerNorm, or more training data.",
            DistTrain.Cli.TrainCommand.BatchNormWithOneSample(options, trainSamples: 1, workers: 4));
        // Shards of 2 leave no one-sample minibatch, however many workers idle.
        Assert.Null(DistTrain.Cli.TrainCommand.BatchNormWithOneSample(options, trainSamples: 4, workers: 2));
    }
}
