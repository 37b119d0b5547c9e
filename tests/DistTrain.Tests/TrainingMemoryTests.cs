using Xunit.Abstractions;
using DistTrain.Cluster.Hosting;
using DistTrain.Core.Configuration;
using DistTrain.Core.Models;

namespace DistTrain.Tests;

/// <summary>Runs alone: <see cref="GC.GetTotalAllocatedBytes"/> counts every thread of the process.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationMeasurements
{
    public const string Name = "Allocation measurements";
}

/// <summary>
/// The memory a single-node run needs is estimated from the config's shapes before anything is allocated
/// (<see cref="TrainingMemory"/>), and a run that does not fit is refused up front in one <c>error:</c> line with exit code
/// 2, instead of allocating and initializing for minutes (a 1,000,000-unit first layer grew the process by 90 MB/s, silently).
/// </summary>
[Collection(AllocationMeasurements.Name)]
public sealed class TrainingMemoryTests(ITestOutputHelper output) : IDisposable
{
    private readonly ITestOutputHelper _output = output;
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-memory-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void The_forward_bytes_per_sample_counted_from_the_shapes_are_those_of_the_built_model()
    {
        foreach (var model in new[] { TestData.Mlp(256, 128, 10), TestData.SmallCnn(10), DropoutAndNorms() })
            Assert.Equal(ModelFactory.Build(model).ForwardBytesPerSample, ModelFactory.ForwardBytesPerSample(model));
        Assert.Equal(1_576, ModelFactory.ForwardBytesPerSample(TestData.Mlp(256, 128, 10))); // as Sequential's documentation says
    }

    /// <summary>A small CNN with every layer type that holds parameters or activations.</summary>
    internal static ModelOptions DropoutAndNorms() => new()
    {
        InputShape = [1, 28, 28],
        Layers =
        [
            new() { Type = LayerTypes.Conv2D, Channels = 3, KernelSize = 5, Stride = 2 }, new() { Type = LayerTypes.ReLU },
            new() { Type = LayerTypes.AvgPool2D, KernelSize = 2 }, new() { Type = LayerTypes.Flatten }, new() { Type = LayerTypes.Dense, Units = 20 },
            new() { Type = LayerTypes.LayerNorm }, new() { Type = LayerTypes.Tanh }, new() { Type = LayerTypes.Dropout, Rate = 0.5 },
            new() { Type = LayerTypes.Dense, Units = 10 }, new() { Type = LayerTypes.BatchNorm }, new() { Type = LayerTypes.ReLU },
        ],
    };

    [Fact]
    public async Task The_estimate_is_within_a_factor_1_5_of_what_drawing_the_weights_and_a_short_run_allocate()
    {
        // 784-2048-10: 1,628,170 parameters, 6.5 MB a copy, so the copies dwarf the run's other allocations (Akka, buffers
        // of 100-sample evaluation passes). 2 workers of 500 samples, batch 100: 5 synchronous steps.
        var options = TestData.Options(TestData.Mlp(2048, 10), workers: 2, batch: 100, epochs: 1);
        var data = TestData.Normalized();
        var estimate = TrainingMemory.SingleNode(options);
        Assert.Equal(1_628_170, estimate.Parameters);
        // Command: weights kept + final weights; server: weights, average, weights before a measured step, momentum, 5
        // messages; each worker: replica (2), 2 gradient messages, evaluation staging, evaluation replica (2).
        Assert.Equal(2 + 9 + 2 * 7, estimate.Copies);

        GC.Collect();
        var before = GC.GetTotalAllocatedBytes(precise: true);
        var weights = ModelFactory.StartingWeights(ModelFactory.Build(options.Model), options.Model, options.Training.Seed);
        var result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, initialWeights: weights).WithTestTimeout();
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        Assert.Equal(5, result.Version);
        _output.WriteLine($"estimated {estimate.TotalBytes:N0} bytes, allocated {allocated:N0}");
        var ratio = estimate.TotalBytes / (double)allocated;
        Assert.True(ratio is > 1 / 1.5 and < 1.5, $"estimated {estimate.TotalBytes:N0} bytes, allocated {allocated:N0} (ratio {ratio:0.00})");
    }

    /// <summary>The user's model: the main config with a 1,000,000-unit first layer, 4 workers, batch 64.</summary>
    private static TrainingOptions Huge()
    {
        var options = TestData.Options(TestData.Mlp(1_000_000, 128, 10), workers: 4, batch: 64, epochs: 1);
        options.Training.EvaluationBatchSize = 1000;
        return options;
    }

    [Fact]
    public void A_run_that_does_not_fit_is_refused_naming_its_parameters_the_bytes_and_the_fix()
    {
        var estimate = TrainingMemory.SingleNode(Huge());
        Assert.Equal(913_001_418, estimate.Parameters); // 784 x 1,000,000 + 1,000,000 + 1,000,000 x 128 + 128 + 128 x 10 + 10
        Assert.Equal(2 + 9 + 4 * 7, estimate.Copies);
        // Per worker: 64 x (2 x 4,000,552 + 3,136 + 40) bytes to train, 256 MiB (67 samples) to evaluate.
        Assert.Equal(4 * (64L * (2 * 4_000_552 + 3_136 + 40) + 268_435_456 + 67 * (3_136 + 80)), estimate.ActivationBytes);
        Assert.Equal(39L * 3_652_005_672 + estimate.ActivationBytes, estimate.TotalBytes);

        const long available = 16L << 30;
        Assert.Equal("not enough memory to build the model: it has 913,001,418 parameters, 3,652,005,672 bytes (3.4 GiB) as float32, and training it with " +
            "4 workers holds about 39 copies of them (weights, gradients and evaluation replicas in each worker, weights, gradients, optimizer state and " +
            "weights messages at the parameter server) and 3,123,699,392 bytes (2.9 GiB) of activations: 145,551,920,600 bytes (135.6 GiB) in all, more " +
            "than the 17,179,869,184 bytes (16.0 GiB) this process may use. Use a smaller model (fewer Units or Channels in Model:Layers), fewer " +
            "Training:Workers, a smaller Training:BatchSizePerWorker, or a machine with more memory.", estimate.Refusal(available));
        Assert.Null(estimate.Refusal(estimate.TotalBytes));
        Assert.NotNull(estimate.Refusal(estimate.TotalBytes - 1));
        // Fewer workers need fewer copies: 2 + 9 + 1 x 7.
        var one = Huge();
        one.Training.Workers = 1;
        Assert.Equal(18, TrainingMemory.SingleNode(one).Copies);
        // A cluster's nodes split those copies, each side adding five data-plane slots per worker: 2 + 9 + 2 x 5 at the
        // parameter server (Cluster:MinWorkers, 2 by default) and 7 + 5 in a worker node.
        Assert.Equal(2, one.Cluster.MinWorkers);
        Assert.Equal((21, 0L), (TrainingMemory.Node(one, parameterServer: true).Copies, TrainingMemory.Node(one, parameterServer: true).ActivationBytes));
        Assert.Equal((12, estimate.ActivationBytes / 4), (TrainingMemory.Node(one, parameterServer: false).Copies, TrainingMemory.Node(one, parameterServer: false).ActivationBytes));
    }

    [Fact]
    public void The_command_refuses_before_allocating_and_announces_a_large_model_that_fits()
    {
        var before = GC.GetTotalAllocatedBytes(precise: true);
        Assert.False(DistTrain.Cli.CliConsole.FitsInMemory(Huge(), availableBytes: 16L << 30));
        Assert.True(GC.GetTotalAllocatedBytes(precise: true) - before < 1 << 20, "allocated 1 MiB or more before refusing");
        Assert.True(DistTrain.Cli.CliConsole.FitsInMemory(Huge(), availableBytes: long.MaxValue));
    }

    [Fact]
    public async Task Disttrain_train_refuses_a_model_larger_than_memory_at_once_with_exit_code_2_and_one_line()
    {
        // 238,500,010 parameters (954 MB a copy) under a 256 MiB GC heap limit: refused before the first tensor is allocated.
        var config = Path.Combine(_directory, "memory.json");
        File.WriteAllText(config, """
            { "Model": { "InputSize": 784, "Layers": [ { "Type": "Dense", "Units": 300000 }, { "Type": "Dense", "Units": 10 } ] }, "Training": { "Workers": 1, "Epochs": 1 } }
            """);
        using var train = new DistTrainProcess(["train", "--config", config, "--data", TestData.SubsetDirectory, "--output", Path.Combine(_directory, "runs")],
            new Dictionary<string, string> { ["DOTNET_GCHeapHardLimit"] = "0x10000000" });
        await train.AssertExitAsync(2, TimeSpan.FromSeconds(60));
        var error = train.Error.Trim();
        Assert.StartsWith("error: not enough memory to build the model: it has 238,500,010 parameters, 954,000,040 bytes (0.9 GiB) as float32, and " +
            "training it with 1 worker holds about 17 copies of them", error); // no momentum: 2 + 8 at the server + 7 in the worker
        Assert.Contains("GiB) this process may use. Use a smaller model (fewer Units or Channels in Model:Layers), fewer Training:Workers, " +
            "a smaller Training:BatchSizePerWorker, or a machine with more memory.", error);
        Assert.DoesNotContain(Environment.NewLine, error);
        Assert.False(Directory.Exists(Path.Combine(_directory, "runs")));
    }
}
