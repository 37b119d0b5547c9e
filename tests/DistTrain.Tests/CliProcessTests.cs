using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Models;
using DistTrain.Core.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Tests;

/// <summary>
/// The built <c>disttrain</c> command as a user runs it, one real process per case: what it writes (model, summary.json,
/// last-good.safetensors, comparison.json) and its exit codes (0 done, 1 bad command line or training failed, 2 bad config,
/// data or checkpoint, 3 diverged, 130 interrupted). Jobs are tiny (300 training samples, 1 epoch of 5 steps).
/// </summary>
public sealed class CliProcessTests : IDisposable
{
    /// <summary>Hang guards for a loaded 2-core machine; no assertion is about speed.</summary>
    private static readonly TimeSpan Run = TimeSpan.FromSeconds(120), Quick = TimeSpan.FromSeconds(60);

    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-cli-").FullName;
    private readonly List<DistTrainProcess> _processes = [];

    public void Dispose()
    {
        foreach (var process in _processes) process.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    private string Folder(string name) => Path.Combine(_directory, name);

    /// <summary>784-16-10, 2 workers x batch 32 over the first 300 training and 100 test images: 5 steps per epoch.</summary>
    private string Config(int epochs = 1, string initializer = "", string extra = "")
    {
        var path = Path.Combine(_directory, $"{Guid.NewGuid():N}.json");
        File.WriteAllText(path, $$"""
            {
              "Data": { "Directory": "{{TestData.SubsetDirectory}}", "TrainLimit": 300, "TestLimit": 100 },
              "Model": { "InputSize": 784, "Layers": [ { "Type": "Dense", "Units": 16 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 } ]{{initializer}} },
              "Optimizer": { "LearningRate": 0.05, "Momentum": 0.9 },
              "Training": { "Workers": 2, "Epochs": {{epochs}}, "BatchSizePerWorker": 32, "Seed": 3, "EvaluationBatchSize": 50 }{{extra}}
            }
            """);
        return path;
    }

    /// <summary>Runs <c>disttrain <paramref name="arguments"/></c> to its end; returns the process (for its output) and the exit code.</summary>
    private Task<(DistTrainProcess Process, int Exit)> Disttrain(TimeSpan timeout, params string[] arguments) => Disttrain(null, timeout, arguments);

    /// <summary>As <see cref="Disttrain(TimeSpan, string[])"/>, with <paramref name="environment"/> (DISTTRAIN_ variables) set for the process.</summary>
    private async Task<(DistTrainProcess Process, int Exit)> Disttrain(IReadOnlyDictionary<string, string>? environment, TimeSpan timeout, params string[] arguments)
    {
        var process = Start(arguments, environment: environment);
        return (process, await process.WaitAsync(timeout));
    }

    private DistTrainProcess Start(string[] arguments, bool defaultInterrupt = false, IReadOnlyDictionary<string, string>? environment = null)
    {
        var process = new DistTrainProcess(arguments, environment, workingDirectory: _directory, defaultInterrupt: defaultInterrupt);
        _processes.Add(process);
        return process;
    }

    /// <summary>A TCP port free on the loopback interface when asked.</summary>
    private static int FreePort() => TestPorts.Free();

    /// <summary>The one run folder below <paramref name="output"/>.</summary>
    private static string RunFolder(string output) => Assert.Single(Directory.GetDirectories(output));

    /// <summary>The test accuracies the command printed, in order ("Test accuracy after N epochs: X%").</summary>
    private static double[] PrintedAccuracies(DistTrainProcess process) =>
        [.. Regex.Matches(process.StandardOutput, @"Test accuracy after \d+ epochs?: ([\d.]+)%").Select(m => double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) / 100)];

    [Fact]
    public async Task Train_exits_0_and_writes_weights_and_a_summary_whose_figures_the_weights_reproduce()
    {
        var output = Folder("runs");
        var (train, exit) = await Disttrain(Run, "train", "--config", Config(), "--output", output);
        Assert.True(exit == 0, train.Output);
        var run = RunFolder(output);
        foreach (var file in new[] { "model.safetensors", "summary.json", "steps.csv", "epochs.csv", "curves.png" })
            Assert.True(File.Exists(Path.Combine(run, file)), $"{file} is missing from {run}");

        using var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "summary.json")));
        var root = summary.RootElement;
        Assert.Equal(5, root.GetProperty("version").GetInt64()); // 300 samples / (2 workers x 32) = 5 steps
        var training = root.GetProperty("options").GetProperty("Training");
        Assert.Equal((2, 32, 3), (training.GetProperty("Workers").GetInt32(), training.GetProperty("BatchSizePerWorker").GetInt32(), training.GetProperty("Seed").GetInt32()));
        var epoch = Assert.Single(root.GetProperty("epochs").EnumerateArray());
        Assert.Equal((1, 5L, 300, 100), (epoch.GetProperty("Epoch").GetInt32(), epoch.GetProperty("Version").GetInt64(),
            epoch.GetProperty("TrainSamples").GetInt32(), epoch.GetProperty("TestSamples").GetInt32()));
        Assert.True(double.IsFinite(epoch.GetProperty("TrainLoss").GetDouble()) && epoch.GetProperty("TrainLoss").GetDouble() > 0);
        Assert.Equal(JsonValueKind.Null, epoch.GetProperty("ValidationLoss").ValueKind); // no validation split
        Assert.Equal(2, File.ReadAllLines(Path.Combine(run, "epochs.csv")).Length);
        Assert.Equal(6, File.ReadAllLines(Path.Combine(run, "steps.csv")).Length); // header and 5 steps

        // The tensors listed are the ones saved, and the saved weights, normalized as the summary says, score the
        // summary's test accuracy and loss on the same 100 test images.
        var weightsPath = Path.Combine(run, "model.safetensors");
        var tensors = SafeTensors.Read(weightsPath);
        var listed = root.GetProperty("tensors").EnumerateArray()
            .ToDictionary(t => t.GetProperty("Name").GetString()!, t => t.GetProperty("Shape").EnumerateArray().Select(d => d.GetInt32()).ToArray());
        Assert.Equal(["0.bias", "0.weight", "2.bias", "2.weight"], listed.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(listed.Keys.Order(StringComparer.Ordinal), tensors.Keys.Order(StringComparer.Ordinal));
        Assert.All(listed, t => Assert.Equal(t.Value, tensors[t.Key].Shape));
        var normalization = root.GetProperty("normalization");
        Assert.Equal("Global", normalization.GetProperty("Kind").GetString());
        var metadata = SafeTensors.ReadMetadata(weightsPath);
        Assert.Equal(normalization.GetProperty("Mean").Deserialize<float[]>(), JsonSerializer.Deserialize<float[]>(metadata["input_mean"]));
        Assert.Equal(normalization.GetProperty("Std").Deserialize<float[]>(), JsonSerializer.Deserialize<float[]>(metadata["input_std"]));
        var (accuracy, loss) = Score(weightsPath, (float)normalization.GetProperty("Mean")[0].GetDouble(), (float)normalization.GetProperty("Std")[0].GetDouble());
        Assert.Equal(accuracy, epoch.GetProperty("TestAccuracy").GetDouble());
        Compare.Close(loss, epoch.GetProperty("TestLoss").GetDouble(), relative: 1e-5, absolute: 1e-6, "test loss of the saved weights");
        Assert.Equal(accuracy.ToString("F4", CultureInfo.InvariantCulture), metadata["test_accuracy"]);
        Assert.Equal([accuracy], PrintedAccuracies(train));

        // inspect lists the saved tensors; a missing or corrupt file is a data error (2) that names it.
        var (inspect, inspected) = await Disttrain(Quick, "inspect", weightsPath);
        Assert.True(inspected == 0, inspect.Output);
        Assert.Matches(@"0\.weight\s+│\s+\[16, 784\]\s+│\s+12,544", inspect.StandardOutput);
        Assert.Contains("4 tensors, 12,730 elements", inspect.StandardOutput);
        var (missing, missingExit) = await Disttrain(Quick, "inspect", Path.Combine(_directory, "none.safetensors"));
        Assert.Equal(2, missingExit);
        Assert.Contains($"checkpoint '{Path.Combine(_directory, "none.safetensors")}': no such file.", missing.StandardError);
        var corrupt = Path.Combine(_directory, "corrupt.safetensors");
        File.WriteAllBytes(corrupt, File.ReadAllBytes(weightsPath)[..100]);
        var (truncated, truncatedExit) = await Disttrain(Quick, "inspect", corrupt);
        Assert.Equal(2, truncatedExit);
        Assert.Contains("truncated", truncated.StandardError);
    }

    /// <summary>Accuracy and mean loss of a saved model on the first 100 test images, pixels / 255 then (x − mean) / std.</summary>
    private static (double Accuracy, double Loss) Score(string weightsPath, float mean, float std)
    {
        var test = FashionMnist.Load(TestData.SubsetDirectory, trainLimit: 0, testLimit: 100).Test;
        var model = ModelFactory.Build(TestData.Mlp(16, 10));
        var weights = new ParameterVector(model.Layout);
        PretrainedWeights.Load(weightsPath, model, weights, replaceHead: false);
        model.LoadParameters(weights.Values);
        var x = Matrix<float>.Build.Dense(784, test.Count);
        var t = Matrix<float>.Build.Dense(10, test.Count);
        test.Gather([.. Enumerable.Range(0, test.Count)], x, t);
        x.MapInplace(v => (v - mean) / std);
        var output = model.Forward(x);
        var correct = Enumerable.Range(0, test.Count).Count(i => output.Column(i).MaximumIndex() == test.Labels[i]);
        var loss = ModelFactory.BuildLoss(LossTypes.SoftmaxCrossEntropy).Compute(output, t, Matrix<float>.Build.Dense(10, test.Count));
        return (correct / (double)test.Count, loss);
    }

    public static TheoryData<string[], string> BadCommandLines => new()
    {
        { ["train"], "--config" },
        { ["train", "--config", "CONFIG", "--workers", "two"], "--workers" },
        { ["train", "--config", "CONFIG", "--learning-rate", "0.1"], "--learning-rate" },
        { ["finetune", "--config", "CONFIG"], "--from" },
    };

    [Theory]
    [MemberData(nameof(BadCommandLines))]
    public async Task A_bad_command_line_exits_1_naming_the_option_and_trains_nothing(string[] arguments, string option)
    {
        var output = Folder("runs");
        var config = Config();
        var (process, exit) = await Disttrain(Quick, [.. arguments.Select(a => a == "CONFIG" ? config : a), "--output", output]);
        Assert.True(exit == 1, process.Output);
        Assert.Contains(option, process.StandardError);
        Assert.False(Directory.Exists(output), "a run folder was created for a command line that cannot run");
    }

    public static TheoryData<string, string, string> BadConfigs => new()
    {
        { "unknown key", """{ "Training": { "Epochz": 3 } }""", "Training:Epochz is not a known key. Did you mean 'Training:Epochs'?" },
        { "not JSON", """{ "Training": { "Epochs": 3, }""", "is not valid JSON" },
        { "missing data", """{ "Data": { "Directory": "DATA" } }""", "is not an existing folder" },
    };

    [Theory]
    [MemberData(nameof(BadConfigs))]
    public async Task A_bad_config_exits_2_naming_the_problem_and_trains_nothing(string what, string json, string message)
    {
        var path = Path.Combine(_directory, "bad.json");
        File.WriteAllText(path, json.Replace("DATA", Path.Combine(_directory, "no-such-folder"), StringComparison.Ordinal));
        var output = Folder("runs");
        var (process, exit) = await Disttrain(Quick, "train", "--config", path, "--output", output);
        Assert.True(exit == 2, $"{what}: {process.Output}");
        Assert.Contains(message, process.StandardError);
        Assert.False(Directory.Exists(output), $"{what}: a run folder was created");
    }

    [Fact]
    public async Task Divergence_exits_3_and_leaves_the_last_good_weights_in_a_loadable_file()
    {
        // Weights of 1e20 overflow in the second layer: the very first step's loss is NaN, so the last good weights are version 0.
        var output = Folder("runs");
        var config = Config(initializer: """, "Initializer": { "Kind": "Constant", "Constant": 1e20 }""");
        var (process, exit) = await Disttrain(Run, "train", "--config", config, "--output", output);
        Assert.True(exit == 3, process.Output);
        Assert.Contains("training diverged: at epoch 1, step 1", process.StandardError);
        // Said once, without a stack trace: a divergence is an outcome of training, not a crash.
        Assert.Single(Regex.Matches(process.Output, @"diverged: at epoch 1, step 1 \(weights version 0\)"));
        Assert.DoesNotContain("Training diverged", process.Output); // the label says it: "training diverged: Training diverged at" before
        Assert.DoesNotContain("[ERROR]", process.Output);
        Assert.DoesNotContain("   at ", process.Output);
        var run = RunFolder(output);
        var lastGood = Path.Combine(run, "last-good.safetensors");
        // No step had a finite loss: the file holds the starting weights, and says so (before, "the last good weights" and
        // "the last weights with a finite loss").
        Assert.Contains($"saved: the weights the run started from (version 0; their loss was not finite either) are in {lastGood}", process.StandardError);
        Assert.Equal("training diverged at its first step; these are the weights it started from, whose loss was not finite either",
            SafeTensors.ReadMetadata(lastGood)["stopped"]);
        Assert.False(File.Exists(Path.Combine(run, "model.safetensors")), "a diverged run must not leave model.safetensors");
        // summary.json says it diverged, and where (no step was applied, so there are no curves).
        using (var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "summary.json"))))
        {
            Assert.Equal("diverged at epoch 1, step 1 of 5", summary.RootElement.GetProperty("stopped").GetString());
            Assert.Equal(0, summary.RootElement.GetProperty("version").GetInt64());
            Assert.Empty(summary.RootElement.GetProperty("epochs").EnumerateArray());
        }
        Assert.Contains($"kept: the run folder {run}: summary.json records the divergence (diverged at epoch 1, step 1 of 5); no step was applied", process.StandardError);

        var model = ModelFactory.Build(TestData.Mlp(16, 10));
        var weights = new ParameterVector(model.Layout);
        var loaded = PretrainedWeights.Load(lastGood, model, weights, replaceHead: false);
        Assert.Equal(model.Layout.Segments.Select(s => s.Name).Order(), loaded.Order());
        Assert.All(weights.Values, w => Assert.Equal(1e20f, w)); // the Constant initializer sets weights and biases
        Assert.Equal("0", SafeTensors.ReadMetadata(lastGood)["version"]);
        // It carries the model's metadata, so evaluate, predict and export load it as they load model.safetensors.
        var trained = TrainedModel.Load(lastGood);
        Assert.Equal("0", trained.Metadata["version"]);
        Assert.Equal(16, trained.Model.Layers[0].Units);
        Assert.All(trained.Weights.Values, w => Assert.Equal(1e20f, w));
    }

    [Fact]
    public async Task A_Float16_overflow_fails_the_run_in_one_line_naming_the_tensor_without_stack_traces()
    {
        // Every weight 10,000 makes hidden activations, and the output layer's gradients, far beyond Float16's ±65,504 at the first step.
        var config = Config(initializer: """, "Initializer": { "Kind": "Constant", "Constant": 10000 }""", extra: """, "Cluster": { "Compression": "Float16" }""");
        var (run, exit) = await Disttrain(Run, "train", "--config", config, "--output", Folder("runs"));
        Assert.True(exit == 1, run.Output);
        Assert.Matches(@"training failed: Worker \d, epoch 1, its minibatch \d+ \(round \d+, weights version \d+\): Gradient element [\d,]+ of tensor '\d\.(weight|bias)' is", run.StandardError);
        Assert.Contains("Set Cluster:Compression to BFloat16", run.StandardError);
        // Before, the workers' failures were logged as four ERROR blocks with 65 stack-trace lines.
        Assert.DoesNotContain("   at ", run.Output);
        Assert.DoesNotContain("[ERROR]", run.Output);
    }

    [Fact]
    public async Task A_checkpoint_that_cannot_be_written_exits_1_with_a_message_naming_the_file()
    {
        // The first checkpoint's name is taken by a folder, so writing it fails as on a full disk.
        var checkpoints = Folder("checkpoints");
        var blocked = Path.Combine(checkpoints, CheckpointStore.FileName(5, 2, 0));
        Directory.CreateDirectory(blocked);
        var (process, exit) = await Disttrain(Run, "train", "--config", Config(), "--output", Folder("runs"), "--checkpoint-dir", checkpoints);
        Assert.True(exit == 1, process.Output);
        Assert.Contains($"training failed: Could not write checkpoint {blocked}", process.StandardError);
        Assert.DoesNotContain("Unhandled exception", process.Output);
    }

    [Fact]
    public async Task A_checkpoint_folder_another_process_holds_exits_2_naming_it_and_creates_no_run_folder()
    {
        // This test process stands for a running job: it holds the folder's lock as train does.
        var checkpoints = Folder("checkpoints");
        using (CheckpointDirectoryLock.Acquire(checkpoints))
        {
            var (refused, exit) = await Disttrain(Run, "train", "--config", Config(), "--output", Folder("runs"), "--checkpoint-dir", checkpoints);
            Assert.True(exit == 2, refused.Output);
            Assert.Contains($"error: Checkpoint:Directory '{checkpoints}' is in use by another running job", refused.StandardError);
            Assert.False(Directory.Exists(Folder("runs")));
            Assert.Empty(new CheckpointStore(checkpoints, 10).List());
        }
        var (released, releasedExit) = await Disttrain(Run, "train", "--config", Config(), "--output", Folder("runs"), "--checkpoint-dir", checkpoints);
        Assert.True(releasedExit == 0, released.Output);
        Assert.Single(new CheckpointStore(checkpoints, 10).List());
    }

    [Fact]
    public async Task A_resume_that_cannot_continue_the_run_exits_2_and_says_why()
    {
        var checkpoints = Folder("checkpoints");
        var (empty, emptyExit) = await Disttrain(Run, "train", "--config", Config(), "--output", Folder("runs"), "--checkpoint-dir", checkpoints, "--resume");
        Assert.True(emptyExit == 2, empty.Output);
        Assert.Contains("No checkpoint to resume from in", empty.StandardError);
        Assert.Contains("Drop --resume", empty.StandardError);
        Assert.DoesNotContain("other .safetensors", empty.StandardError);
        // A checkpoint copied under another name is not read: the message says why it was passed over.
        Directory.CreateDirectory(checkpoints);
        File.WriteAllBytes(Path.Combine(checkpoints, "mycopy.safetensors"), [0]);
        var (renamed, renamedExit) = await Disttrain(Run, "train", "--config", Config(), "--output", Folder("runs"), "--checkpoint-dir", checkpoints, "--resume");
        Assert.True(renamedExit == 2, renamed.Output);
        Assert.Contains("it holds 1 other .safetensors file (mycopy.safetensors), but a resume reads only checkpoints named as training writes them, " +
            "checkpoint-v<version>-e<epoch>-r<round>.safetensors. Drop --resume", renamed.StandardError.ReplaceLineEndings(" ").Replace("  ", " ", StringComparison.Ordinal));
        File.Delete(Path.Combine(checkpoints, "mycopy.safetensors"));

        var (first, firstExit) = await Disttrain(Run, "train", "--config", Config(), "--output", Folder("runs"), "--checkpoint-dir", checkpoints);
        Assert.True(firstExit == 0, first.Output);
        var (otherSeed, otherSeedExit) = await Disttrain(Run, "train", "--config", Config(epochs: 2), "--output", Folder("runs"), "--checkpoint-dir", checkpoints,
            "--resume", "--seed", "4");
        Assert.True(otherSeedExit == 2, otherSeed.Output);
        Assert.Contains("does not fit the config: Training:Seed = 4, the checkpoint's is 3", otherSeed.StandardError);
    }

    [Fact]
    public async Task Bench_exits_0_with_a_json_report_of_the_measured_steps_and_2_with_errors_on_standard_error()
    {
        // Gradient accumulation, compression and shards change what a step is: the report says so. With --json, standard output
        // is the JSON line alone (it held the BLAS line and the table before it, so a JSON parser of the output failed).
        var config = Config();
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"Seed\": 3", "\"Seed\": 3, \"AccumulationSteps\": 2", StringComparison.Ordinal)
            .Replace("\"Optimizer\":", "\"Cluster\": { \"Compression\": \"BFloat16\", \"ParameterServerShards\": 2 }, \"Optimizer\":", StringComparison.Ordinal));
        // Metrics:Port from the environment applies: --metrics-port, not given, overrides nothing (its default 0 used to turn metrics off).
        var metricsPort = FreePort();
        var (bench, exit) = await Disttrain(new Dictionary<string, string> { ["DISTTRAIN_Metrics__Port"] = metricsPort.ToString(CultureInfo.InvariantCulture) }, Run,
            "bench", "--config", config, "--workers", "2", "--warmup", "2", "--steps", "6", "--json");
        Assert.True(exit == 0, bench.Output);
        using var report = JsonDocument.Parse(bench.StandardOutput);
        Assert.Single(bench.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        var root = report.RootElement;
        Assert.Equal((2, 32, 6), (root.GetProperty("Workers").GetInt32(), root.GetProperty("BatchSizePerWorker").GetInt32(), root.GetProperty("Steps").GetInt32()));
        // The table's warm-up and metrics settings are in the JSON too.
        // 3 steps per epoch (300 samples, 128 a step): the warm-up runs on past the first epoch's end, to epoch 2's first step,
        // and then past the first gradient-norm measurement (step 10, Monitoring:GradientNormEverySteps' default), which the
        // measured steps 5 to 10 would take in; the measured steps (epoch 4's last two, epoch 5's three, epoch 6's first) have two
        // epoch ends among them.
        Assert.Equal((10, 2, metricsPort), (root.GetProperty("WarmupSteps").GetInt32(), root.GetProperty("RequestedWarmupSteps").GetInt32(), root.GetProperty("MetricsPort").GetInt32()));
        Assert.Equal(2, root.GetProperty("EpochEnds").GetInt32());
        Assert.Equal(1000 * root.GetProperty("MeanSamplesPerStep").GetDouble() / root.GetProperty("StepMilliseconds").GetDouble(), root.GetProperty("SamplesPerSecond").GetDouble(), 6);
        Assert.Equal(("Sync", 2, 2 * 32 * 2, "BFloat16 with error feedback", 2), (root.GetProperty("Mode").GetString(), root.GetProperty("AccumulationSteps").GetInt32(),
            root.GetProperty("SamplesPerStep").GetInt32(), root.GetProperty("Compression").GetString(), root.GetProperty("ParameterServerShards").GetInt32()));
        // The table went to standard error, with the batch figure samples/s counts.
        Assert.Matches(@"workers x batch x accumulation steps\W+2 x 32 x 2\W", bench.StandardError);
        Assert.Matches(@"gradient compression\W+BFloat16 with error feedback\W", bench.StandardError);
        Assert.Contains("BLAS: ", bench.StandardError);
        Assert.Contains($"Config: {Path.GetFullPath(config)}", bench.StandardError);
        Assert.Matches($@"metrics\W+on, port {metricsPort}\W", bench.StandardError);

        // Another mode's steps are not what bench measures: refused, not measured as if they were synchronous rounds.
        var async = Config();
        File.WriteAllText(async, File.ReadAllText(async).Replace("\"Seed\": 3", "\"Seed\": 3, \"Mode\": \"Async\"", StringComparison.Ordinal));
        var (refused, refusedExit) = await Disttrain(Quick, "bench", "--config", async, "--json");
        Assert.Equal(2, refusedExit);
        Assert.Equal("", refused.StandardOutput);
        Assert.Equal("error: Training:Mode is Async, and bench measures synchronous steps only (Training:Mode Sync): each step a round of every worker's minibatch, " +
            "whose time its table splits into compute, update and waiting. Set Training:Mode to Sync for bench (in the config, or DISTTRAIN_Training__Mode=Sync); " +
            "train's epoch lines give the samples/s of the other modes.", refused.StandardError.Trim());
        foreach (var figure in new[] { "SamplesPerSecond", "StepMilliseconds", "ComputeMilliseconds" })
            Assert.True(root.GetProperty(figure).GetDouble() is > 0 and < double.PositiveInfinity, $"{figure} = {root.GetProperty(figure)}");
        Assert.True(root.GetProperty("PeakRssBytes").GetInt64() > 10 << 20, "peak RSS below 10 MiB");

        var (noSteps, noStepsExit) = await Disttrain(Quick, "bench", "--config", Config(), "--steps", "0");
        Assert.Equal(1, noStepsExit); // a bad command line
        Assert.Contains("--steps 0: it takes a whole number of measured steps, at least 1.", noSteps.StandardError);
        Assert.DoesNotContain("--warmup", noSteps.StandardError); // not given, so not named
        var (badConfig, badConfigExit) = await Disttrain(Quick, "bench", "--config", Path.Combine(_directory, "missing.json"));
        Assert.Equal(2, badConfigExit);
        Assert.Contains("not found", badConfig.StandardError);
    }

    [Fact]
    public async Task Bench_without_config_run_from_another_folder_runs_the_config_shipped_with_the_executable()
    {
        // The working folder (_directory) has no configs/: the copy next to disttrain.dll is run, not "not found".
        Assert.False(Directory.Exists(Folder("configs")));
        var (bench, exit) = await Disttrain(Run, "bench", "--data", TestData.SubsetDirectory, "--warmup", "1", "--steps", "2", "--json");
        Assert.True(exit == 0, bench.Output);
        using var report = JsonDocument.Parse(bench.StandardOutput.Split('\n').Single(line => line.StartsWith('{')));
        Assert.Equal(64, report.RootElement.GetProperty("BatchSizePerWorker").GetInt32()); // configs/fashion-mnist-mlp.json's
        Assert.Contains($"Config: {Path.Combine(AppContext.BaseDirectory, "configs", "fashion-mnist-mlp.json")}", bench.StandardError); // which one, said

        Assert.Equal(Path.Combine(AppContext.BaseDirectory, "configs", "fashion-mnist-mlp.json"), DistTrain.Cli.BenchCommand.ShippedConfig(_directory, AppContext.BaseDirectory));
        var empty = Folder("empty");
        Directory.CreateDirectory(empty);
        Assert.Null(DistTrain.Cli.BenchCommand.ShippedConfig(_directory, empty));
        Assert.Equal($"no --config given, and the default configs/fashion-mnist-mlp.json is neither in the current folder ({_directory}) nor shipped with disttrain " +
                     $"({Path.Combine(empty, "configs")}). Pass --config with a JSON config file, such as configs/fashion-mnist-mlp.json of the repository.",
            DistTrain.Cli.BenchCommand.NoDefaultConfig(_directory, empty));
    }

    [Fact]
    public async Task Finetune_with_compare_scratch_writes_comparison_json_with_both_runs_accuracies()
    {
        var (pretrain, pretrainExit) = await Disttrain(Run, "train", "--config", Config(), "--output", Folder("pretrain"));
        Assert.True(pretrainExit == 0, pretrain.Output);
        var checkpoint = Path.Combine(RunFolder(Folder("pretrain")), "model.safetensors");

        var output = Folder("finetune");
        // A --freeze that names nothing is refused, not taken as "freeze nothing"; the run folder stands for its model.
        var (noFreeze, noFreezeExit) = await Disttrain(Quick, "finetune", "--config", Config(), "--from", checkpoint, "--freeze", ",,", "--output", output);
        Assert.Equal(1, noFreezeExit);
        Assert.Contains("--freeze ',,' names no tensor", noFreeze.StandardError);
        // With Checkpoint:Directory, the run from scratch keeps its checkpoints in a folder of its own: in the same one, its
        // files of the same steps replaced the fine-tuned run's.
        var checkpoints = Folder("checkpoints");
        var (finetune, exit) = await Disttrain(Run, "finetune", "--config", Config(extra: $$""", "Checkpoint": { "Directory": "{{checkpoints}}" }"""),
            "--from", Path.GetDirectoryName(checkpoint)!, "--freeze", "0", "--compare-scratch", "--output", output);
        Assert.True(exit == 0, finetune.Output);
        var layout = Core.Models.ModelFactory.Build(Core.Configuration.TrainingOptionsLoader.Load(Config(), checkDataDirectory: false, environment: new Dictionary<string, string?>()).Model).Layout;
        foreach (var (folder, frozen) in new[] { (checkpoints, true), (Path.Combine(checkpoints, "scratch"), false) })
        {
            var newest = new Core.Checkpoints.CheckpointStore(folder, 10).List();
            Assert.NotEmpty(newest);
            foreach (var file in newest) // the fine-tuned run's layout holds tensor 0 frozen; the run from scratch's does not
                Assert.Equal(frozen, Core.Checkpoints.SafeTensors.ReadMetadata(file)["model_fingerprint"] != Core.Checkpoints.TrainingCheckpoint.LayoutFingerprint(layout));
        }
        var printed = PrintedAccuracies(finetune);
        Assert.Equal(2, printed.Length); // the fine-tuned run, then the one from scratch
        var comparisonPath = Assert.Single(Directory.GetFiles(output, "comparison.json", SearchOption.AllDirectories));
        using var comparison = JsonDocument.Parse(File.ReadAllText(comparisonPath));
        var root = comparison.RootElement;
        Assert.Equal(checkpoint, root.GetProperty("pretrained").GetString());
        Assert.Equal(["0"], root.GetProperty("frozen").EnumerateArray().Select(f => f.GetString()));
        Assert.Equal(1, root.GetProperty("epochs").GetInt32());
        Assert.Equal(printed[0], Math.Round(root.GetProperty("fine_tuned_test_accuracy").GetDouble(), 4));
        Assert.Equal(printed[1], Math.Round(root.GetProperty("scratch_test_accuracy").GetDouble(), 4));
        var difference = 100 * (root.GetProperty("fine_tuned_test_accuracy").GetDouble() - root.GetProperty("scratch_test_accuracy").GetDouble());
        Assert.Contains($"{difference.ToString("+0.00;-0.00", CultureInfo.InvariantCulture)} points of test accuracy against training from scratch", finetune.StandardOutput);
    }
}
