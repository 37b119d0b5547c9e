using DistTrain.Core.Configuration;
using DistTrain.Core.Layers;
using DistTrain.Core.Models;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

/// <summary>
/// A model whose layer, or whole parameter vector, is larger than one float array holds is refused as a config problem
/// naming the layer, its parameter count and the limit, before anything is allocated; never an OverflowException from
/// int arithmetic (which also sized a wrong array first).
/// </summary>
public sealed class ModelSizeLimitTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-size-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>The user's model: 65,536 x 65,537 weights in its third layer, past int.MaxValue.</summary>
    private const string TooLarge = """
        {
          "Model": { "InputSize": 784, "Layers": [ { "Type": "Flatten" }, { "Type": "Dense", "Units": 65536 }, { "Type": "Dense", "Units": 65537 }, { "Type": "Dense", "Units": 10 } ] },
          "Training": { "Workers": 1, "Epochs": 1 }
        }
        """;

    private const string LayerProblem = "Model:Layers:2 (Dense, 65,537 units) has 4,295,098,369 parameters, more than one array holds (2,147,483,591): " +
        "give it fewer units or channels, or put a pooling layer or a smaller layer before it.";

    [Fact]
    public void A_layer_larger_than_one_array_is_a_config_problem_naming_the_layer_its_count_and_the_limit()
    {
        var before = GC.GetTotalAllocatedBytes(precise: true);
        var error = Assert.Throws<ConfigurationException>(() => TrainingOptionsLoader.Load("large.json", System.Text.Encoding.UTF8.GetBytes(TooLarge), null,
            checkDataDirectory: false, new Dictionary<string, string?>()));
        Assert.True(GC.GetTotalAllocatedBytes(precise: true) - before < 64 << 20, "allocated 64 MiB or more before refusing");
        Assert.Equal($"Invalid configuration (large.json):{Environment.NewLine}  - {LayerProblem}", error.Message);

        // The same model from the builder: refused by Build, before the 51 million weights of layer 1 are allocated.
        var built = Assert.Throws<ConfigurationException>(() => new ModelBuilder(784).Flatten().Dense(65536).Dense(65537).Dense(10).Build());
        Assert.Contains(LayerProblem, built.Message);
    }

    [Fact]
    public void Layers_that_fit_one_by_one_but_not_together_are_refused_with_the_total()
    {
        // 2^20 inputs x 1,024 units + 1,024 x 2^20 units: each about 2^30, together past Array.MaxLength.
        var model = new ModelOptions { InputSize = 1 << 20, Layers = [new() { Type = "Dense", Units = 1024 }, new() { Type = "Dense", Units = 1 << 20 }] };
        Assert.Equal([(1L << 30) + 1024, (1L << 30) + (1 << 20)], ModelFactory.ParameterCounts(model));
        var problems = TrainingOptionsValidator.Validate(new TrainingOptions { Model = model }, checkDataDirectory: false);
        Assert.Equal(["Model:Layers hold 2,148,533,248 parameters in all, more than the one array that holds a model's parameters can (2,147,483,591): " +
            "give the layers fewer units or channels."], problems);
    }

    [Fact]
    public void A_tensor_or_layout_larger_than_one_array_is_refused_before_it_is_allocated()
    {
        var before = GC.GetTotalAllocatedBytes(precise: true);
        var tensor = Assert.Throws<ArgumentException>(() => new LayerParameter("weight", [65537, 65536], 65536, 65537));
        Assert.Equal("tensor 'weight' of shape [65537, 65536] has 4,295,032,832 elements, more than one array holds (2,147,483,591). Use fewer units or channels.", tensor.Message);
        Assert.True(GC.GetTotalAllocatedBytes(precise: true) - before < 1 << 20, "allocated before refusing");

        var layout = Assert.Throws<ArgumentException>(() => new ParameterLayout([("0.weight", [1 << 30, 1]), ("1.weight", [1 << 30, 1])]));
        Assert.Equal("The model's tensors have 2,147,483,648 elements in all, more than one array holds (2,147,483,591). Use fewer units or channels.", layout.Message);
    }

    [Fact]
    public async Task Disttrain_train_refuses_the_model_with_exit_code_2_and_one_problem_line()
    {
        var config = Path.Combine(_directory, "large.json");
        File.WriteAllText(config, TooLarge);
        using var train = new DistTrainProcess(["train", "--config", config, "--data", TestData.SubsetDirectory, "--output", Path.Combine(_directory, "runs")]);
        await train.AssertExitAsync(2, TimeSpan.FromSeconds(60));
        Assert.Contains(LayerProblem, train.Error);
        Assert.DoesNotContain("OverflowException", train.Error + train.Output);
        Assert.False(Directory.Exists(Path.Combine(_directory, "runs")));
    }

    [Fact]
    public void Running_out_of_memory_for_a_model_is_one_line_with_its_parameters_and_bytes()
    {
        // 2^15 inputs x 2^15 units: fits int32 (1,073,774,592 parameters) but 4 GiB per copy. Counted, never allocated.
        var options = new TrainingOptions { Model = new ModelOptions { InputSize = 1 << 15, Layers = [new() { Type = "Dense", Units = 1 << 15 }] } };
        options.Training.Workers = 2;
        Assert.Equal("out of memory building the model: it has 1,073,774,592 parameters, 4,295,098,368 bytes (4.0 GiB) as float32, and training holds " +
            "several copies of them (weights and gradients in each of the 2 workers, weights, gradients and optimizer state at the parameter server). " +
            "Use a smaller model (fewer Units or Channels in Model:Layers), fewer Training:Workers, or a machine with more memory.",
            DistTrain.Cli.CliConsole.OutOfMemory(options));
        options.Training.Workers = 1;
        Assert.Contains("in each of the 1 worker, weights", DistTrain.Cli.CliConsole.OutOfMemory(options));
    }

    [Fact]
    public async Task An_out_of_memory_exception_in_training_ends_it_with_exit_code_1_not_a_crash()
    {
        var options = new TrainingOptions { Model = new ModelOptions { InputSize = 4, Layers = [new() { Type = "Dense", Units = 3 }] } };
        Assert.Equal(1, await DistTrain.Cli.CliConsole.RunTrainingAsync(() => throw new OutOfMemoryException(), model: options));
        // Without the model (other commands), it is not caught here.
        await Assert.ThrowsAsync<OutOfMemoryException>(() => DistTrain.Cli.CliConsole.RunTrainingAsync(() => throw new OutOfMemoryException()));
    }

    /// <summary>A config whose Model:Layers lists <paramref name="count"/> layers: Dense 8 and ReLU in turn, a Dense 3 last.</summary>
    private static string Deep(int count) => $$"""
        {
          "Model": { "InputSize": 4, "Layers": [ {{string.Join(", ", Enumerable.Range(0, count - 1).Select(i => i % 2 == 0 ? "{ \"Type\": \"Dense\", \"Units\": 8 }" : "{ \"Type\": \"ReLU\" }"))}}, { "Type": "Dense", "Units": 3 } ] },
          "Training": { "Workers": 1, "Epochs": 1 }
        }
        """;

    private static string TooManyLayers(int count) => $"Model:Layers = {DistTrain.Core.Counts.Number(count)} layers (in deep.json) is more than a model may have (1,000): no network trained " +
        "here comes near that many (VGG-19 with a BatchNorm and an activation after each convolution is 61 layers). Remove layers: a generated config may repeat a block too often.";

    [Fact]
    public void A_config_of_more_than_1000_layers_is_refused_alone_before_the_other_checks_naming_the_count_the_limit_and_the_fix()
    {
        // A 10,000-layer config took minutes to load and build before training, most of it in the loader's checks, whose walks
        // over the configuration grow with the square of the layers. It is now refused before them, with one problem, not
        // one per layer (a Training:Workers of 0 would otherwise be reported too: the count is the problem to fix first).
        static TrainingOptions Load(string json) => TrainingOptionsLoader.Load("deep.json", System.Text.Encoding.UTF8.GetBytes(json), null,
            checkDataDirectory: false, new Dictionary<string, string?>());
        var error = Assert.Throws<ConfigurationException>(() => Load(Deep(1_001).Replace("\"Workers\": 1", "\"Workers\": 0", StringComparison.Ordinal)));
        Assert.Equal($"Invalid configuration (deep.json):{Environment.NewLine}  - {TooManyLayers(1_001)}", error.Message);
        error = Assert.Throws<ConfigurationException>(() => Load(Deep(20_000)));
        Assert.Equal($"Invalid configuration (deep.json):{Environment.NewLine}  - {TooManyLayers(20_000)}", error.Message);
        // A layer appended by an environment variable counts too, and is named as where the list came from.
        error = Assert.Throws<ConfigurationException>(() => TrainingOptionsLoader.Load("deep.json", System.Text.Encoding.UTF8.GetBytes(Deep(1_000)), null,
            checkDataDirectory: false, new Dictionary<string, string?> { ["DISTTRAIN_Model__Layers__1000__Type"] = "ReLU" }));
        Assert.StartsWith("Invalid configuration (deep.json):" + Environment.NewLine + "  - Model:Layers = 1,001 layers (from environment variable " +
            "DISTTRAIN_Model__Layers__1000__Type; the other entries in deep.json) is more than a model may have (1,000)", error.Message);
    }

    [Fact]
    public void The_validator_takes_1000_layers_and_refuses_1001_for_configs_the_builder_and_model_files_alike()
    {
        static ModelOptions Model(int count) => new()
        {
            InputSize = 4,
            Layers = [.. Enumerable.Range(0, count - 1).Select(i => i % 2 == 0 ? new LayerOptions { Type = "Dense", Units = 8 } : new LayerOptions { Type = "ReLU" }),
                new LayerOptions { Type = "Dense", Units = 3 }],
        };
        Assert.Empty(TrainingOptionsValidator.Validate(new TrainingOptions { Model = Model(1_000) }, checkDataDirectory: false));
        // Refused with one line, not one per layer, even when every layer has a problem of its own.
        var model = Model(1_001);
        foreach (var layer in model.Layers.Where(l => l.Type == "Dense")) layer.Units = 0;
        Assert.Equal([TooManyLayers(1_001).Replace(" (in deep.json)", "", StringComparison.Ordinal)],
            TrainingOptionsValidator.Validate(new TrainingOptions { Model = model }, checkDataDirectory: false).Where(p => p.StartsWith("Model:", StringComparison.Ordinal)));
        // The builder of the C# API, which validates its model the same way.
        var builder = new ModelBuilder(4);
        for (var i = 0; i < 1_000; i++) builder.ReLU();
        Assert.Contains("Model:Layers = 1,001 layers is more than a model may have (1,000)", Assert.Throws<ConfigurationException>(() => builder.Dense(3).Build()).Message);
    }
}
