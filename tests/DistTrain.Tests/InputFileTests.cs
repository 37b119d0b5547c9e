using System.Diagnostics;
using DistTrain.Core;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;

namespace DistTrain.Tests;

/// <summary>
/// Input files given as a pipe: a config file through <c>&lt;(...)</c> or <c>/dev/stdin</c> crashed with .NET's "Stream does
/// not support seeking" and its stack trace, so did a model file; a CSV file, read twice, lost its start and gave false
/// errors (a column count, an empty file); and a named FIFO that nothing wrote to blocked the command for ever, first
/// signal included. Each is now refused before it is read, by name, with the fix; a regular file is read as before.
/// </summary>
public sealed class InputFileTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-input-file-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>A named FIFO that nothing writes to: opening it for reading the usual way blocks until a writer comes.</summary>
    private string Fifo(string name)
    {
        var path = Path.Combine(_directory, name);
        using var mkfifo = Process.Start(new ProcessStartInfo("mkfifo", [path]) { UseShellExecute = false })!;
        mkfifo.WaitForExit();
        Assert.Equal(0, mkfifo.ExitCode);
        return path;
    }

    private static string Refusal(string path, string what) =>
        $"'{path}' is a pipe, FIFO or terminal (such as <(...) or /dev/stdin), not a file: DistTrain reads a {what} by its size and seeks in it. " +
        "Write it to a file first (for example cat ... > file) and give that file's path.";

    [Fact]
    public async Task A_fifo_given_as_a_config_model_or_data_file_is_refused_by_name_at_once()
    {
        var fifo = Fifo("input");
        // Each on a task of its own with a bound: a regression blocks in open(2), and the test then fails instead of hanging.
        var config = await Assert.ThrowsAsync<ConfigurationException>(() => Task.Run(() => TrainingOptionsLoader.Load(fifo)).WithTestTimeout(30));
        Assert.Equal([Refusal(fifo, "config file")], config.Problems);
        var model = await Assert.ThrowsAsync<UnreadableFileException>(() => Task.Run(() => SafeTensors.Read(fifo)).WithTestTimeout(30));
        Assert.Equal(Refusal(fifo, "model or checkpoint file"), model.Message);
        var csv = await Assert.ThrowsAsync<DataFormatException>(() => Task.Run(() => CsvDataset.Read(fifo, new CsvOptions())).WithTestTimeout(30));
        Assert.Equal(Refusal(fifo, "data file"), csv.Message);
        var idx = await Assert.ThrowsAsync<DataFormatException>(() => Task.Run(() => IdxFile.Read(fifo, 1)).WithTestTimeout(30));
        Assert.Equal(Refusal(fifo, "data file"), idx.Message);
        // A gzip-compressed CSV name: its completeness check opens the file first, through the same check.
        var gzip = Fifo("train.csv.gz");
        var compressed = await Assert.ThrowsAsync<DataFormatException>(() => Task.Run(() => CsvDataset.Read(gzip, new CsvOptions())).WithTestTimeout(30));
        Assert.Equal(Refusal(gzip, "data file"), compressed.Message);
    }

    [Fact]
    public void A_regular_file_or_a_path_that_cannot_be_opened_is_left_to_the_reader()
    {
        var file = Path.Combine(_directory, "config.json");
        File.WriteAllText(file, "{}");
        Assert.Null(InputFile.PipeProblem(file, "config file"));
        Assert.Null(InputFile.PipeProblem(Path.Combine(_directory, "missing.json"), "config file")); // "not found" is the reader's to say
        Assert.Null(InputFile.PipeProblem("/dev/null", "data file")); // seekable: read as an empty file, which the readers refuse
    }
}
