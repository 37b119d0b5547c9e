using DistTrain.Cli;

namespace DistTrain.Tests;

/// <summary>
/// A console write that fails (standard output or error redirected to a full disk, /dev/full here) neither crashes a
/// command nor ends a training run: the output is dropped, the command runs to its end, and it then says what was lost and
/// exits 1 instead of 0.
/// </summary>
public sealed class FailSafeConsoleTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-console-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>A stream that takes <paramref name="capacity"/> bytes and then fails every write as a full disk does.</summary>
    private sealed class FullDisk(int capacity) : MemoryStream
    {
        public override void Write(byte[] buffer, int offset, int count)
        {
            if (Length + count > capacity) throw new IOException("No space left on device");
            base.Write(buffer, offset, count);
        }

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            if (Length + buffer.Length > capacity) throw new IOException("No space left on device");
            base.Write(buffer);
        }
    }

    [Fact]
    public void A_write_that_fails_is_dropped_with_every_later_one_and_its_reason_kept()
    {
        var disk = new FullDisk(capacity: 16);
        var inner = new StreamWriter(disk) { AutoFlush = true };
        var writer = new FailSafeConsole.FailSafeWriter(inner, "standard output");

        writer.WriteLine("epoch 1/2"); // 10 bytes: fits
        Assert.Null(writer.Failure);
        writer.WriteLine("epoch 2/2 and more than fits");
        writer.Write('x');
        writer.Write("later".ToCharArray(), 0, 5);
        writer.Flush();

        Assert.Equal("No space left on device", writer.Failure);
        Assert.Equal("epoch 1/2" + Environment.NewLine, System.Text.Encoding.UTF8.GetString(disk.ToArray()));
    }

    [Fact]
    public void Help_written_to_a_full_disk_exits_1_with_one_error_line_and_no_stack_trace()
    {
        var (exit, _, error) = CliProcess.Run(["--help"], shellRedirect: "> /dev/full");

        Assert.Equal(1, exit);
        Assert.Contains("error: writing to standard output failed (No space left on device)", error);
        Assert.DoesNotContain("run folder", error); // no run: the line says nothing of one
        Assert.DoesNotContain("   at ", error);
        Assert.DoesNotContain("Unhandled exception", error);
    }

    [Fact]
    public void A_training_run_whose_log_cannot_be_written_trains_to_its_end_writes_its_model_and_exits_1()
    {
        var output = Path.Combine(_directory, "runs");
        var config = Path.Combine(_directory, "config.json");
        File.WriteAllText(config, $$"""
            {
              "Data": { "Directory": "{{TestData.SubsetDirectory}}", "TrainLimit": 300, "TestLimit": 100 },
              "Model": { "InputSize": 784, "Layers": [ { "Type": "Dense", "Units": 16 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 } ] },
              "Optimizer": { "LearningRate": 0.05 },
              "Training": { "Workers": 2, "Epochs": 2, "BatchSizePerWorker": 32, "Seed": 3, "EvaluationBatchSize": 50 }
            }
            """);

        var (exit, _, error) = CliProcess.Run(["train", "-c", config, "-o", output], shellRedirect: "> /dev/full");

        Assert.Equal(1, exit);
        Assert.Contains("error: writing to standard output failed", error);
        Assert.Contains("The command itself ran to its end; the run's files are in its run folder.", error);
        Assert.DoesNotContain("training failed", error);
        var run = Assert.Single(Directory.GetDirectories(output));
        Assert.True(File.Exists(Path.Combine(run, "model.safetensors")), "the run's model was not written");
        var summary = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "summary.json")));
        Assert.Equal(2, summary.RootElement.GetProperty("epochs").GetArrayLength());
    }
}
