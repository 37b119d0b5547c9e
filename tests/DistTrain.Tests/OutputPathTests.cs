using System.Security.Cryptography;
using DistTrain.Core.Data;
using DistTrain.Core.Models;

namespace DistTrain.Tests;

/// <summary>
/// An output path that names a command's own input is refused before anything is written (a user's
/// <c>export model.safetensors --onnx model.safetensors</c> replaced the trained weights with the ONNX graph, exit 0), and an
/// empty output path is a one-line error naming the option instead of an unhandled ArgumentException or System.CommandLine's
/// type names. Each case runs the real executable.
/// </summary>
public sealed class OutputPathTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-output-paths-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>An untrained 784-10 model, saved as a run's model.safetensors.</summary>
    private string Model()
    {
        var options = new ModelBuilder(784).Dense(10).Build();
        var path = Path.Combine(_directory, "model.safetensors");
        new TrainedModel(options, ModelFactory.InitialWeights(ModelFactory.Build(options), options.Initializer, seed: 1),
            Normalizer.FromStatistics(NormalizationKind.Global, [0.5f], [0.25f])).Save(path);
        return path;
    }

    [Fact]
    public void Export_evaluate_and_inspect_refuse_to_write_over_the_model_they_read_and_leave_it_as_it_was()
    {
        var model = Model();
        var before = SHA256.HashData(File.ReadAllBytes(model));
        // The same file by another path: relative to a folder and through a symbolic link.
        var link = Path.Combine(_directory, "link.safetensors");
        File.CreateSymbolicLink(link, model);
        string[][] commands =
        [
            ["export", model, "--onnx", model],
            ["export", _directory, "--onnx", link], // a run folder stands for its model.safetensors
            ["evaluate", "-m", model, "-d", TestData.SubsetDirectory, "--heatmap", Path.Combine(_directory, ".", "model.safetensors")],
            ["inspect", model, "--filters", link],
            ["inspect", model, "--histograms", model],
        ];
        foreach (var command in commands)
        {
            var (exit, _, error) = CliProcess.Run(command);
            Assert.True(exit == 2, $"disttrain {string.Join(' ', command)}: exit {exit}\n{error}");
            Assert.Contains($"is a file this command reads ({model}): writing it would destroy it. Give --", error);
            Assert.Equal(before, SHA256.HashData(File.ReadAllBytes(model)));
        }
    }

    /// <summary>
    /// The pictures are PNG files, and neither a run's files nor a data folder the command reads are written into:
    /// <c>compare --plot RUN/model.safetensors</c> replaced a run's model with a PNG (and <c>--plot RUN/curves.png</c> its
    /// curves), and <c>evaluate --heatmap</c> into the scored image folder damaged the test set. Nothing is written in any of
    /// these cases.
    /// </summary>
    [Fact]
    public void Pictures_need_a_png_name_and_are_not_written_into_the_runs_or_data_folders_read()
    {
        var model = Model();
        var run = Path.Combine(_directory, "run");
        Directory.CreateDirectory(run);
        File.WriteAllText(Path.Combine(run, "summary.json"),
            """{ "epochs": [{ "Epoch": 1, "TrainSeconds": 1.5, "EvaluationSeconds": 0.5, "TrainSamples": 300, "TestAccuracy": 0.75 }] }""");
        var curves = Path.Combine(run, "curves.png");
        File.WriteAllText(curves, "the run's curves");
        var data = Path.Combine(_directory, "images");
        Directory.CreateDirectory(Path.Combine(data, "Bag"));
        var modelCurves = Path.Combine(_directory, "curves.png");
        File.WriteAllText(modelCurves, "the model's run's curves");
        // Without a run's summary or epochs file the model's folder is no run folder: a curves.png there is the user's to write.
        var notARun = CliProcess.Run(["evaluate", "-m", model, "-d", TestData.SubsetDirectory, "--heatmap", modelCurves]);
        Assert.True(notARun.ExitCode == 0, notARun.Error);
        File.WriteAllText(Path.Combine(_directory, "epochs.csv"), "epoch\n"); // now it is one
        File.WriteAllText(modelCurves, "the model's run's curves");
        (string[] Arguments, string Message)[] cases =
        [
            (["compare", run, "--plot", Path.Combine(run, "model.safetensors")], "the picture is written as PNG, so give a file name ending in .png."),
            (["compare", run, "--plot", curves], $"--plot {curves} is the curves.png of the run in {run}, which this command compares: writing it would replace that file."),
            (["evaluate", "-m", model, "-d", data, "--heatmap", Path.Combine(data, "Bag", "1.png")], $"is inside {data}, which this command reads"),
            (["evaluate", "-m", model, "-d", TestData.SubsetDirectory, "--heatmap", Path.Combine(_directory, "heatmap.jpg")], "give a file name ending in .png."),
            (["inspect", model, "--histograms", Path.Combine(_directory, "h.jpg")], "give a file name ending in .png."),
            (["evaluate", "-m", model, "-d", TestData.SubsetDirectory, "--heatmap", run], $"--heatmap {run} is a folder: give the path of a PNG file to write"),
            (["inspect", model, "--filters", Path.Combine(_directory, "x.png"), "--histograms", Path.Combine(_directory, "x.png")],
                "--filters and --histograms name the same file"),
            (["train", "-c", run], $"config file '{run}' is a folder ({run}), not a file."),
            // The model's own run folder: evaluate's heat map and inspect's pictures replaced the run's curves.
            (["evaluate", "-m", model, "-d", TestData.SubsetDirectory, "--heatmap", modelCurves],
                $"--heatmap {modelCurves} is the curves.png of the run in {_directory}, which this command reads: writing it would replace that file."),
            (["inspect", _directory, "--filters", modelCurves],
                $"--filters {modelCurves} is the curves.png of the run in {_directory}, which this command reads: writing it would replace that file."),
        ];
        foreach (var (arguments, message) in cases)
        {
            var (exit, _, error) = CliProcess.Run(arguments);
            Assert.True(exit == 2, $"disttrain {string.Join(' ', arguments)}: exit {exit}\n{error}");
            Assert.Contains(message, error);
        }
        Assert.Equal("the run's curves", File.ReadAllText(curves));
        Assert.Equal("the model's run's curves", File.ReadAllText(modelCurves));
        Assert.Empty(Directory.GetFiles(data, "*", SearchOption.AllDirectories));
        Assert.False(File.Exists(Path.Combine(_directory, "heatmap.jpg")) || File.Exists(Path.Combine(_directory, "h.jpg")) || File.Exists(Path.Combine(_directory, "x.png")));
    }

    /// <summary>
    /// <c>export --onnx</c> takes a name ending in .onnx, as the PNG outputs take .png (<c>--onnx x.txt</c> wrote an ONNX
    /// model as x.txt, exit 0); and a folder no file can be created in names the target, its folder and the fix, not the
    /// temporary file the write goes through ("Could not find file '/proc/x.onnx.13933-33a7bc51.tmp'").
    /// </summary>
    [Fact]
    public void Export_takes_an_onnx_name_and_a_write_failure_names_the_target_and_its_folder_not_a_temporary_file()
    {
        var model = Model();
        var text = Path.Combine(_directory, "x.txt");
        var (exit, output, error) = CliProcess.Run(["export", model, "--onnx", text]);
        Assert.True(exit == 2, $"exit {exit}\n{output}{error}");
        Assert.Equal($"error: --onnx {text}: the model is written as ONNX, so give a file name ending in .onnx.", Flat(error));
        Assert.False(File.Exists(text));
        (exit, _, error) = CliProcess.Run(["export", model, "--onnx", _directory]);
        Assert.Equal(2, exit);
        Assert.Equal($"error: --onnx {_directory} is a folder: give the path of an ONNX file to write, such as one inside that folder.", Flat(error));

        if (!OperatingSystem.IsLinux()) return; // /proc takes no new files
        (exit, _, error) = CliProcess.Run(["export", model, "--onnx", "/proc/x.onnx"]);
        Assert.Equal(2, exit);
        Assert.Equal("error: --onnx /proc/x.onnx: cannot write the file in the folder /proc (Could not create '/proc/x.onnx': the folder /proc " +
            "takes no new files). Give --onnx a path in a folder you can write to.", Flat(error));
        Assert.DoesNotContain(".tmp", error);
        Assert.True(File.Exists(Path.Combine(_directory, "model.safetensors")));
        (exit, _, error) = CliProcess.Run(["export", model, "--onnx", Path.Combine(_directory, "x.ONNX")]);
        Assert.True(exit == 0, error);
    }

    private static string Flat(string error) => error.ReplaceLineEndings(" ").Replace("  ", " ", StringComparison.Ordinal).Trim();

    [Theory]
    [InlineData("export", "--onnx", "--onnx is empty: it takes the ONNX file to write")]
    [InlineData("evaluate", "--heatmap", "--heatmap is empty: it takes a path of a file to write, where to draw the confusion matrix (png)")]
    [InlineData("compare", "--plot", "--plot is empty: it takes a path of a file to write, where to draw test accuracy against time (png)")]
    [InlineData("inspect", "--filters", "--filters is empty: it takes the PNG file to write")]
    public void An_empty_output_path_is_a_one_line_error_naming_the_option(string command, string option, string message)
    {
        var model = Model();
        string[] arguments = command switch
        {
            "evaluate" => ["evaluate", "-m", model, "-d", TestData.SubsetDirectory, option, ""],
            "compare" => ["compare", _directory, option, ""],
            _ => [command, model, option, ""],
        };
        var (exit, _, error) = CliProcess.Run(arguments);
        Assert.True(exit is 1 or 2, $"exit {exit}\n{error}");
        Assert.Contains(message, error);
        Assert.DoesNotContain("Exception", error);
        Assert.DoesNotContain("System.IO.FileInfo", error);
    }
}
