namespace DistTrain.Tests;

/// <summary>
/// Places a run writes to during training are checked before it starts: a file given as Monitoring:SampleTraceDirectory
/// failed inside an actor with 51 stack frames and exit code 1, and an Output:HealthFile in a missing folder was never
/// written without a word. Both are config errors now (exit code 2), reported together, with nothing trained or created.
/// </summary>
public sealed class OutputSettingsTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-output-settings-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>A one-epoch config on 64 training samples, writing runs to <c>runs</c> in the test's folder and touching
    /// <paramref name="healthFile"/>; <paramref name="sections"/> adds sections (each ending in a comma).</summary>
    private string Config(string healthFile, string sections = "")
    {
        var config = Path.Combine(_directory, "config.json");
        File.WriteAllText(config, $$"""
            {
              "Data": { "Directory": "{{TestData.SubsetDirectory}}", "TrainLimit": 64, "TestLimit": 20 },
              "Model": { "InputSize": 784, "Layers": [{ "Type": "Dense", "Units": 10 }] },
              "Training": { "Workers": 1, "Epochs": 1, "BatchSizePerWorker": 16 },
              {{sections}}
              "Output": { "Directory": "{{Path.Combine(_directory, "runs")}}", "HealthFile": "{{healthFile}}" }
            }
            """);
        return config;
    }

    [Fact]
    public void A_sample_trace_folder_that_is_a_file_and_a_health_file_in_a_missing_folder_are_config_errors_before_training()
    {
        var file = Path.Combine(_directory, "afile");
        File.WriteAllText(file, "");
        var health = Path.Combine(_directory, "missing", "alive");
        var runs = Path.Combine(_directory, "runs");
        var config = Config(health, $$"""
              "Monitoring": { "SampleTraceDirectory": "{{file}}" },
            """);
        var (exit, output, error) = CliProcess.Run(["train", "-c", config]);
        Assert.True(exit == 2, $"exit {exit}\n{output}\n{error}");
        Assert.Contains($"Monitoring:SampleTraceDirectory = '{file}' cannot be created or written (", error);
        Assert.Contains($"Output:HealthFile = '{health}': the folder {Path.GetDirectoryName(health)} does not exist", error);
        Assert.DoesNotContain("   at ", error); // no stack trace
        Assert.False(Directory.Exists(runs) && Directory.EnumerateFileSystemEntries(runs).Any(), "a run folder was created");

        // Both fixed: the run trains, and the health file and the trace are written.
        File.Delete(file);
        Directory.CreateDirectory(Path.GetDirectoryName(health)!);
        (exit, output, error) = CliProcess.Run(["train", "-c", config]);
        Assert.True(exit == 0, $"exit {exit}\n{output}\n{error}");
        Assert.True(File.Exists(health));
        Assert.NotEmpty(Directory.GetFiles(file, "minibatches-*.csv"));
    }

    [Fact]
    public void A_folder_given_as_the_health_file_is_refused_by_name()
    {
        var runs = Path.Combine(_directory, "runs");
        var config = Config(_directory);
        var (exit, output, error) = CliProcess.Run(["train", "-c", config]);
        Assert.True(exit == 2, $"exit {exit}\n{output}\n{error}");
        Assert.Contains($"Output:HealthFile = '{_directory}' is a folder, not a file. Give the path of a file to touch, such as " +
                        $"'{Path.Combine(_directory, "healthy")}', or leave Output:HealthFile empty.", error);
        Assert.DoesNotContain("Access to the path", error);
        Assert.False(Directory.Exists(runs), "a run folder was created");
    }
}
