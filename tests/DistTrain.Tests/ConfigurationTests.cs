using DistTrain.Core.Configuration;
using DistTrain.Core.Initialization;

namespace DistTrain.Tests;

public class ConfigurationTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-config-").FullName;
    private static readonly Dictionary<string, string?> NoEnvironment = [];

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string Config(string json)
    {
        var path = Path.Combine(_directory, $"{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        return path;
    }

    private static string RepositoryConfig => Path.Combine(AppContext.BaseDirectory, "configs", "fashion-mnist-mlp.json");

    private static ConfigurationException Invalid(string? path, Dictionary<string, string?>? overrides = null,
        Dictionary<string, string?>? environment = null) =>
        Assert.Throws<ConfigurationException>(() =>
            TrainingOptionsLoader.Load(path, overrides, checkDataDirectory: true, environment ?? NoEnvironment));

    private Dictionary<string, string?> ValidData => new() { ["Data:Directory"] = TestData.SubsetDirectory };

    [Fact]
    public void The_main_job_config_binds_to_the_documented_settings()
    {
        var options = TrainingOptionsLoader.Load(RepositoryConfig, ValidData, environment: NoEnvironment);
        Assert.Equal(4, options.Training.Workers);
        Assert.Equal(64, options.Training.BatchSizePerWorker);
        Assert.Equal(0.05, options.Optimizer.LearningRate);
        Assert.Equal(0.9, options.Optimizer.Momentum);
        Assert.Equal(1e-4, options.Optimizer.L2);
        Assert.Equal(InitializerKind.HeNormal, options.Model.Initializer.Kind);
        Assert.Equal(["Dense", "ReLU", "Dense", "ReLU", "Dense"], options.Model.Layers.Select(l => l.Type));
        Assert.Equal([256, 128, 10], options.Model.Layers.Where(l => l.Type == "Dense").Select(l => l.Units));
    }

    [Fact]
    public void A_negative_learning_rate_names_the_key_the_value_and_the_range()
    {
        var error = Invalid(RepositoryConfig, new(ValidData) { ["Optimizer:LearningRate"] = "-0.1" });
        Assert.Contains("Optimizer:LearningRate = -0.1 is out of range: allowed (0, 10]", error.Message);
    }

    [Fact]
    public void Zero_workers_is_rejected()
    {
        var error = Invalid(RepositoryConfig, new(ValidData) { ["Training:Workers"] = "0" });
        Assert.Contains("Training:Workers = 0 is out of range: allowed [1, 256]", error.Message);
    }

    [Fact]
    public void An_unknown_activation_lists_the_allowed_layer_types()
    {
        var error = Invalid(RepositoryConfig, new(ValidData) { ["Model:Layers:1:Type"] = "Swish" });
        Assert.Contains("Model:Layers:1:Type = 'Swish' is unknown: allowed Dense, ReLU, LeakyReLU, Sigmoid, Tanh", error.Message);
    }

    [Fact]
    public void A_missing_data_directory_says_how_to_get_the_data()
    {
        var error = Invalid(RepositoryConfig, new() { ["Data:Directory"] = Path.Combine(_directory, "absent") });
        Assert.Contains("Data:Directory", error.Message);
        Assert.Contains("apt-get install dataset-fashion-mnist", error.Message);
    }

    [Fact]
    public void Every_problem_is_reported_at_once()
    {
        var error = Invalid(RepositoryConfig, new(ValidData) { ["Training:Epochs"] = "0", ["Optimizer:Momentum"] = "1.5" });
        Assert.Equal(2, error.Problems.Count);
    }

    [Fact]
    public void A_misspelled_key_is_rejected_instead_of_ignored()
    {
        var error = Invalid(Config("""{ "Optimizer": { "LearnRate": 0.1 } }"""), ValidData);
        Assert.Contains("LearnRate", error.Message);
    }

    [Fact]
    public void An_unknown_enum_value_is_rejected()
    {
        var error = Invalid(RepositoryConfig, new(ValidData) { ["Model:Initializer:Kind"] = "Glorious" });
        Assert.Contains("Glorious", error.Message);
    }

    [Fact]
    public void A_value_of_the_wrong_type_is_rejected()
    {
        var error = Invalid(RepositoryConfig, new(ValidData) { ["Training:Workers"] = "four" });
        Assert.Contains("four", error.Message);
    }

    [Fact]
    public void Broken_json_and_a_missing_file_are_reported()
    {
        Assert.Contains("not valid JSON", Invalid(Config("{ \"Training\": { ")).Message);
        Assert.Contains("not found", Invalid(Path.Combine(_directory, "missing.json")).Message);
    }

    [Fact]
    public void Environment_variables_override_the_file_and_command_line_overrides_win()
    {
        var environment = new Dictionary<string, string?>
        {
            ["DISTTRAIN_Training__Workers"] = "3",
            ["DISTTRAIN_Optimizer__LearningRate"] = "0.2",
            ["UNRELATED"] = "x",
        };
        var options = TrainingOptionsLoader.Load(RepositoryConfig, new Dictionary<string, string?>(ValidData) { ["Training:Workers"] = "2" }, environment: environment);
        Assert.Equal(2, options.Training.Workers);
        Assert.Equal(0.2, options.Optimizer.LearningRate);
    }
}
