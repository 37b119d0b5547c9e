using System.CommandLine;
using DistTrain.Cli;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Data;
using DistTrain.Core.Models;
using SkiaSharp;

namespace DistTrain.Tests;

/// <summary>
/// <c>disttrain inspect --filters / --histograms</c>: the filter grid shows each kernel's weights at the documented gray
/// levels (0 mid-gray, +max white, −max black), the comparison panels hold the initialization the run started from, and
/// bad requests exit with 2 and a reason.
/// </summary>
public sealed class InspectFiguresTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-inspect-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static int Run(params string[] args) => new RootCommand { InspectCommand.Create() }.Parse(args).Invoke();

    /// <summary>A checkpoint whose first kernel is +2 at (0, 0), −2 at (0, 1) and 0 elsewhere; the rest as initialized with seed 0.</summary>
    private string Checkpoint()
    {
        var options = new ModelBuilder(channels: 1, height: 8, width: 8).Conv2D(3, kernelSize: 5).ReLU().Flatten().Dense(4).Build();
        var weights = ModelFactory.InitialWeights(ModelFactory.Build(options), options.Initializer, seed: 0);
        var kernel = weights.Segment("0.weight")[..25];
        kernel.Clear();
        kernel[0] = 2;
        kernel[1] = -2;
        var path = Path.Combine(_directory, "model.safetensors");
        new TrainedModel(options, weights, Normalizer.FromStatistics(NormalizationKind.Global, [0.5f], [0.25f])).Save(path);
        return path;
    }

    [Fact]
    public void The_filter_grid_draws_each_kernel_weight_as_a_block_at_its_gray_level_beside_the_initialization()
    {
        var checkpoint = Checkpoint();
        var filters = Path.Combine(_directory, "filters.png");

        Assert.Equal(0, Run("inspect", checkpoint, "--filters", filters, "--compare-initialization"));

        using var image = SKBitmap.Decode(filters);
        // Layout: 10 px margin, 28 px caption, 5x5 kernels enlarged 11 times, 4 px gaps, 2 columns for 3 filters.
        byte Gray(int x, int y) => image.GetPixel(x, y).Red;
        const int left = 10, top = 10 + 28;
        Assert.Equal(255, Gray(left + 5, top + 5));        // +2, the kernel's largest |w|: white
        Assert.Equal(0, Gray(left + 11 + 5, top + 5));     // −2: black
        Assert.Equal(128, Gray(left + 22 + 5, top + 5));   // 0: mid-gray
        Assert.Equal(128, Gray(left + 44 + 5, top + 44 + 5));
        // The second panel starts below two rows of tiles and a margin: the initialization, whose first weight is not 0.
        var initialTop = top + 2 * (55 + 4) + 10 + 28;
        var initial = ModelFactory.InitialWeights(ModelFactory.Build(TrainedModel.Load(checkpoint).Model), new(), seed: 0).Segment("0.weight")[..25].ToArray();
        var largest = initial.Max(Math.Abs);
        Assert.Equal((int)Math.Round(127.5 + 127.5 * initial[0] / largest), Gray(left + 5, initialTop + 5));
        Assert.Equal((int)Math.Round(127.5 + 127.5 * initial[6] / largest), Gray(left + 11 + 5, initialTop + 11 + 5));
    }

    /// <summary>
    /// A fine-tuned model started from its pretrained file (all but the replaced head), not from the initializer: the
    /// comparison used to draw the initializer's weights for every layer, frozen ones included.
    /// </summary>
    [Fact]
    public void A_fine_tuned_models_starting_weights_are_the_pretrained_tensors_with_the_new_head_drawn_by_the_initializer()
    {
        var pretrained = Checkpoint();
        var options = new ModelBuilder(channels: 1, height: 8, width: 8).Conv2D(3, kernelSize: 5).ReLU().Flatten().Dense(4).Build();
        options.Pretrained = Path.GetRelativePath(Environment.CurrentDirectory, pretrained); // as a config may give it
        options.ReplaceHead = true;
        options.Freeze = ["0.*"];
        var tuned = ModelFactory.InitialWeights(ModelFactory.Build(options), options.Initializer, seed: 5); // stands for the fine-tuned weights
        var path = Path.Combine(_directory, "tuned.safetensors");
        var normalizer = Normalizer.FromStatistics(NormalizationKind.Global, [0.5f], [0.25f]);
        new TrainedModel(options, tuned, normalizer, ModelMetadata.Create(options, normalizer, DataMetadata.GivenValues(), version: 10, epochs: 1, testAccuracy: null, seed: 9)).Save(path);

        var comparison = InspectFigures.Initialization(path, SafeTensors.ReadMetadata(path));
        // Recorded as a full path, so that the model can be inspected from any folder.
        Assert.Equal(pretrained, ModelMetadata.ReadModel(SafeTensors.ReadMetadata(path), path, keepTransferSettings: true).Pretrained);

        var source = TrainedModel.Load(pretrained).Weights;
        Assert.Equal(source.Segment("0.weight").ToArray(), comparison.Tensors["0.weight"].Data);
        Assert.Equal([2f, -2f], comparison.Tensors["0.weight"].Data[..2]);
        var head = ModelFactory.InitialWeights(ModelFactory.Build(options), options.Initializer, seed: 9).Segment("3.weight").ToArray();
        Assert.Equal(head, comparison.Tensors["3.weight"].Data);
        Assert.NotEqual(source.Segment("3.weight").ToArray(), head);
        Assert.Equal("starting weights (model.safetensors, new head: HeNormal, seed 9)", comparison.Label);

        File.Delete(pretrained);
        var gone = Assert.Throws<InvalidDataException>(() => InspectFigures.Initialization(path, SafeTensors.ReadMetadata(path)));
        Assert.Equal($"{path} was fine-tuned from {pretrained}, which is gone, so the weights it started from cannot be read again. " +
            "Put that file back, or give it as --compare FILE instead of --compare-initialization.", gone.Message);
    }

    [Fact]
    public void The_histograms_are_drawn_for_every_weight_tensor_and_against_another_checkpoint()
    {
        var checkpoint = Checkpoint();
        var histograms = Path.Combine(_directory, "histograms.png");

        Assert.Equal(0, Run("inspect", checkpoint, "--histograms", histograms, "--compare", checkpoint));

        using var image = SKBitmap.Decode(histograms);
        Assert.Equal((2 * 440, 340), (image.Width, image.Height)); // 0.weight and 3.weight side by side
    }

    [Fact]
    public void A_picture_that_cannot_be_written_exits_2_naming_the_file_and_the_option()
    {
        var checkpoint = Checkpoint();

        // /sys refuses new files even to root: the write fails as on a read-only disk.
        var (exit, _, error) = CliProcess.Run(["inspect", checkpoint, "--histograms", "/sys/histograms.png"]);

        Assert.Equal(2, exit);
        Assert.Contains("error: /sys/histograms.png: the picture could not be written (", error);
        Assert.Contains("Pass --histograms with a writable path.", error);
    }

    /// <summary>
    /// A --compare checkpoint of another model, or a picture in a folder that does not exist, was found only after the tensor
    /// table was printed, which read as success before the error: now nothing but the error is printed, and nothing is drawn.
    /// </summary>
    [Fact]
    public void A_comparison_or_output_that_cannot_be_used_is_the_only_output_not_an_error_after_the_table()
    {
        var checkpoint = Checkpoint();
        var torch = TestData.GoldenPath("torch_cnn.safetensors");
        var png = Path.Combine(_directory, "h.png");

        var (exit, output, error) = CliProcess.Run(["inspect", checkpoint, "--histograms", png, "--compare", torch]);
        Assert.Equal(2, exit);
        Assert.Equal("", output);
        Assert.StartsWith($"error: --compare {torch} is not a checkpoint of the same model: '0.weight' is [3, 1, 5, 5] here but [", error);
        Assert.False(File.Exists(png));

        var missing = Path.Combine(_directory, "missing", "h.png");
        (exit, output, error) = CliProcess.Run(["inspect", checkpoint, "--histograms", missing]);
        Assert.Equal(2, exit);
        Assert.Equal("", output);
        Assert.Equal($"error: --histograms {missing}: the folder {Path.Combine(_directory, "missing")} does not exist. Create it or choose another path.", error.Trim());
    }

    [Fact]
    public void A_training_checkpoint_is_shown_with_where_a_resume_continues_and_the_settings_it_must_match()
    {
        var options = new ModelBuilder(channels: 1, height: 8, width: 8).Flatten().Dense(4).Build();
        var model = ModelFactory.Build(options);
        var weights = ModelFactory.InitialWeights(model, options.Initializer, seed: 0);
        var checkpoint = new TrainingCheckpoint(weights, [("momentum_buffer", new float[model.Layout.TrainableLength])], Core.Optimization.OptimizerKind.Sgd,
            optimizerSteps: 120, version: 120, epoch: 3, round: 40, shardSeed: 7, workers: 2, batchSizePerWorker: 64, jobId: "job-1");
        var path = new CheckpointStore(_directory, keep: 3).Save(checkpoint);
        var (code, output, error) = CliProcess.Run(["inspect", path]);
        Assert.True(code == 0, error);
        Assert.Contains("training checkpoint: a resume continues at epoch 3 round 40; Training:Mode Sync, 2 workers x 64 samples per minibatch, seed 7,", output);
        Assert.Contains("optimizer Sgd after 120 steps, job job-1 (a cluster job or single-node run)", output);
    }

    [Fact]
    public void Requests_that_cannot_be_drawn_exit_with_2()
    {
        var checkpoint = Checkpoint();
        var torch = TestData.GoldenPath("torch_cnn.safetensors");
        var png = Path.Combine(_directory, "out.png");

        Assert.Equal(2, Run("inspect", torch, "--filters", png, "--compare-initialization")); // no model or seed in its metadata
        Assert.Equal(1, Run("inspect", checkpoint, "--compare-initialization"));               // nothing to draw it beside: a bad command line
        Assert.Equal(2, Run("inspect", checkpoint, "--filters", png, "--compare", torch));     // another model's first layer
        Assert.Equal(2, Run("inspect", checkpoint, "--filters", Path.Combine(_directory, "missing", "out.png")));
        Assert.False(File.Exists(png));
        Assert.Equal(0, Run("inspect", torch, "--filters", png)); // a PyTorch export's kernels are drawn from their shapes alone
        Assert.True(SafeTensors.Read(torch).ContainsKey("0.weight"));

        // --compare with another model's checkpoint is refused by the tensors that differ; one of the same model is labeled
        // by its folder when both files have the same name; a run folder stands for its model.safetensors.
        var tensors = SafeTensors.Read(checkpoint);
        var error = Assert.Throws<InvalidDataException>(() => InspectCommand.Compared(checkpoint, tensors, torch));
        Assert.StartsWith($"--compare {torch} is not a checkpoint of the same model: '0.weight' is [3, 1, 5, 5] here but [", error.Message);
        var other = Directory.CreateDirectory(Path.Combine(_directory, "run-b")).FullName;
        File.Copy(checkpoint, Path.Combine(other, RunFiles.Model));
        Assert.Equal(Path.Combine("run-b", RunFiles.Model), InspectCommand.Compared(checkpoint, tensors, Path.Combine(other, RunFiles.Model)).Label);
        Assert.Equal(0, Run("inspect", _directory, "--histograms", Path.Combine(_directory, "h.png"), "--compare", other));
        Assert.Equal(2, Run("inspect", Directory.CreateDirectory(Path.Combine(_directory, "empty-run")).FullName));
    }
}
