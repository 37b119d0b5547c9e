using System.Text.Json;
using System.Text.Json.Nodes;
using DistTrain.Cli;
using DistTrain.Core.Configuration;

namespace DistTrain.Tests;

/// <summary>
/// <c>disttrain config</c>: the settings a command would run with, printed as a config that loads back to the same
/// settings, or one key at a time for scripts (<c>deploy/local/cluster.sh</c> reads its shard nodes and metrics port so).
/// </summary>
public class ConfigCommandTests
{
    private static string Repository => Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", ".."));

    private static readonly Dictionary<string, string?> NoEnvironment = [];

    public static TheoryData<string> CommittedConfigs()
    {
        var configs = new TheoryData<string>();
        foreach (var path in Directory.GetFiles(Path.Combine(Repository, "configs"), "*.json", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            configs.Add(Path.GetRelativePath(Repository, path));
        return configs;
    }

    /// <summary>Every property, the derived ones too, at full precision: what the comparison of two loaded configs reads.</summary>
    private static readonly JsonSerializerOptions Everything = new()
    {
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter() },
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    /// <summary>Prints the settings of <paramref name="configPath"/> (with <paramref name="environment"/>), loads the printed
    /// text back, and asserts that the two loads bound the same settings, every property compared.</summary>
    private static JsonNode AssertPrintedLoadsBack(string configPath, Dictionary<string, string?> environment)
    {
        var options = TrainingOptionsLoader.Load(configPath, null, checkDataDirectory: false, environment: environment);
        var printed = JsonSerializer.Serialize(options, ConfigCommand.Json);
        var folder = Directory.CreateTempSubdirectory("disttrain-config-").FullName;
        try
        {
            var file = Path.Combine(folder, "printed.json");
            File.WriteAllText(file, printed);
            var reloaded = TrainingOptionsLoader.Load(file, null, checkDataDirectory: false, environment: NoEnvironment);
            Assert.Equal(JsonSerializer.Serialize(options, Everything), JsonSerializer.Serialize(reloaded, Everything));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
        return JsonNode.Parse(printed)!;
    }

    /// <summary>
    /// The printed settings of every committed config load back, through the same loader and checks, to the same settings
    /// (every property compared, at full precision); and they are the file's: a value the file sets is printed as set, a
    /// key it leaves out at its default.
    /// </summary>
    [Theory]
    [MemberData(nameof(CommittedConfigs))]
    public void The_printed_settings_of_every_committed_config_load_back_to_the_same_settings(string config)
    {
        var tree = AssertPrintedLoadsBack(Path.Combine(Repository, config), NoEnvironment);
        var source = JsonNode.Parse(File.ReadAllText(Path.Combine(Repository, config)), documentOptions: new() { CommentHandling = JsonCommentHandling.Skip })!;
        Assert.Equal(source["Training"]?["Epochs"]?.GetValue<int>() ?? new TrainingLoopOptions().Epochs, tree["Training"]!["Epochs"]!.GetValue<int>());
        Assert.Equal(source["Model"]!["Layers"]!.AsArray().Count, tree["Model"]!["Layers"]!.AsArray().Count);
        Assert.Equal(source["Optimizer"]?["LearningRate"]?.GetValue<double>() ?? new DistTrain.Core.Optimization.OptimizerOptions().LearningRate, tree["Optimizer"]!["LearningRate"]!.GetValue<double>());
    }

    /// <summary>
    /// A layer's setting at a value other than its default is printed, also 0 (a LeakyReLU's slope 0, which used to be left
    /// out as if it were an unused key, and load back as the default 0.01); one at its default is left out (a Conv2D's Stride,
    /// whose default 0 means "not given" and is refused when written out). A NaN in a key the layer does not use binds, and
    /// is printed and read back as "NaN".
    /// </summary>
    [Fact]
    public void Layer_settings_other_than_their_defaults_are_printed_and_those_at_their_defaults_left_out()
    {
        var folder = Directory.CreateTempSubdirectory("disttrain-config-layers-").FullName;
        try
        {
            var config = Path.Combine(folder, "layers.json");
            File.WriteAllText(config, """
                { "Model": { "InputShape": [1, 28, 28], "Layers": [
                    { "Type": "Conv2D", "Channels": 4, "KernelSize": 3, "Bias": false },
                    { "Type": "LeakyReLU", "NegativeSlope": 0 },
                    { "Type": "Flatten" },
                    { "Type": "Dropout", "Rate": 0 },
                    { "Type": "Dense", "Units": 10 } ] } }
                """);
            var tree = AssertPrintedLoadsBack(config, new() { ["DISTTRAIN_Model__Layers__4__Momentum"] = "NaN" });
            var layers = tree["Model"]!["Layers"]!.AsArray();
            Assert.Null(layers[0]!["Stride"]);
            Assert.False(layers[0]!["Bias"]!.GetValue<bool>());
            Assert.Equal(0, layers[1]!["NegativeSlope"]!.GetValue<double>());
            Assert.Equal("NaN", layers[4]!["Momentum"]!.GetValue<string>());
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void The_jobs_secret_is_never_printed()
    {
        const string secret = "a-secret-of-the-job-0123456789";
        var options = TrainingOptionsLoader.Load(Path.Combine(Repository, "configs", "fashion-mnist-mlp.json"), null, checkDataDirectory: false,
            environment: new Dictionary<string, string?> { ["DISTTRAIN_Cluster__Secret"] = secret });
        Assert.Equal(secret, options.Cluster.Secret);
        var printed = JsonSerializer.Serialize(options, ConfigCommand.Json);
        Assert.DoesNotContain(secret, printed);
        var value = ConfigCommand.Value(JsonNode.Parse(printed)!, "cluster:secret");
        Assert.Null(value.Text);
        Assert.StartsWith("Cluster:Secret is never printed", value.Error);
    }

    [Fact]
    public void Get_finds_keys_in_any_case_and_list_items_by_index_and_names_the_keys_there_are_for_one_that_is_not()
    {
        var tree = JsonNode.Parse("""{"Cluster": {"ShardNodes": true, "Port": 4053, "SeedNodes": ["akka.tcp://disttrain@ps:4053"], "Empty": []},""" +
            """ "Training": {"Mode": "Sync", "Rate": 0.05, "Name": null}}""")!;
        Assert.Equal(new ConfigCommand.KeyValue("true", null), ConfigCommand.Value(tree, "cluster:shardnodes"));
        Assert.Equal(new ConfigCommand.KeyValue("4053", null), ConfigCommand.Value(tree, "Cluster:Port"));
        Assert.Equal(new ConfigCommand.KeyValue("akka.tcp://disttrain@ps:4053", null), ConfigCommand.Value(tree, "Cluster:SeedNodes:0"));
        Assert.Equal(new ConfigCommand.KeyValue("[\"akka.tcp://disttrain@ps:4053\"]", null), ConfigCommand.Value(tree, "Cluster:SeedNodes"));
        Assert.Equal(new ConfigCommand.KeyValue("Sync", null), ConfigCommand.Value(tree, "Training:Mode"));
        Assert.Equal(new ConfigCommand.KeyValue("0.05", null), ConfigCommand.Value(tree, "Training:Rate"));
        Assert.Equal(new ConfigCommand.KeyValue("null", null), ConfigCommand.Value(tree, "Training:Name"));
        Assert.Equal("--get Cluster:Shards: Cluster has no key 'Shards'. Its keys: ShardNodes, Port, SeedNodes, Empty.",
            ConfigCommand.Value(tree, "Cluster:Shards").Error);
        Assert.Equal("--get Clusters: the configuration has no key 'Clusters'. Its keys: Cluster, Training.", ConfigCommand.Value(tree, "Clusters").Error);
        Assert.Equal("--get Cluster:SeedNodes:1: Cluster:SeedNodes is a list of 1 item; give an index from 0 to 0 after it, or ask for Cluster:SeedNodes itself.",
            ConfigCommand.Value(tree, "Cluster:SeedNodes:1").Error);
        Assert.Equal("--get Cluster:SeedNodes:x: Cluster:SeedNodes is a list of 1 item; give an index from 0 to 0 after it, or ask for Cluster:SeedNodes itself.",
            ConfigCommand.Value(tree, "Cluster:SeedNodes:x").Error);
        Assert.Equal("--get Cluster:Empty:0: Cluster:Empty is an empty list; ask for Cluster:Empty itself.", ConfigCommand.Value(tree, "Cluster:Empty:0").Error);
        Assert.Equal("--get Cluster:Port:1: Cluster:Port is a value, not a section; ask for Cluster:Port.", ConfigCommand.Value(tree, "Cluster:Port:1").Error);
        foreach (var empty in new[] { "", "Cluster:", ":Port", "Cluster::Port" })
            Assert.Equal($"--get '{empty}': a key is sections and a name joined by ':' with none of them empty, e.g. Cluster:ShardNodes.", ConfigCommand.Value(tree, empty).Error);
        Assert.Equal(new ConfigCommand.KeyValue("\"two\\nlines\"", null), ConfigCommand.Value(JsonNode.Parse("""{"Name": "two\nlines"}""")!, "name"));
    }

    /// <summary>The command itself: the file, then the DISTTRAIN_ variables, then the options, as train and node read them.</summary>
    [Fact]
    public async Task The_command_prints_the_settings_the_nodes_would_run_with_and_exits_2_naming_a_problem()
    {
        var config = Path.Combine(Repository, "configs", "fashion-mnist-mlp.json");
        using (var get = new DistTrainProcess(["config", "-c", config, "--get", "Cluster:ShardNodes", "--get", "training:epochs", "--get", "Optimizer:LearningRate",
                   "--get", "Output:Directory"], new Dictionary<string, string> { ["DISTTRAIN_Cluster__ShardNodes"] = "True", ["DISTTRAIN_Training__Epochs"] = "7" }))
        {
            Assert.True(await get.WaitAsync(TimeSpan.FromSeconds(60)) == 0, get.StandardError);
            var lines = get.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var file = JsonNode.Parse(File.ReadAllText(config))!;
            Assert.Equal(["true", "7", file["Optimizer"]!["LearningRate"]!.ToJsonString(), file["Output"]!["Directory"]!.GetValue<string>()], lines);
        }
        using (var all = new DistTrainProcess(["config", "--config", config, "--output", "elsewhere"]))
        {
            Assert.True(await all.WaitAsync(TimeSpan.FromSeconds(60)) == 0, all.StandardError);
            var printed = JsonNode.Parse(all.StandardOutput)!;
            Assert.Equal("elsewhere", printed["Output"]!["Directory"]!.GetValue<string>());
            Assert.Equal(JsonNode.Parse(File.ReadAllText(config))!["Training"]!["Epochs"]!.GetValue<int>(), printed["Training"]!["Epochs"]!.GetValue<int>());
        }
        using (var bad = new DistTrainProcess(["config", "-c", config, "--get", "Cluster:ShardNodes"], new Dictionary<string, string> { ["DISTTRAIN_Training__Epochs"] = "0" }))
        {
            Assert.Equal(2, await bad.WaitAsync(TimeSpan.FromSeconds(60)));
            Assert.Equal("", bad.StandardOutput);
            Assert.Contains("Training:Epochs = 0 (from environment variable DISTTRAIN_Training__Epochs) is out of range", bad.StandardError);
        }
        using (var unknown = new DistTrainProcess(["config", "-c", config, "--get", "Cluster:ShardNodes", "--get", "Cluster:Shards", "--get", "Training:Epoch"]))
        {
            Assert.Equal(2, await unknown.WaitAsync(TimeSpan.FromSeconds(60)));
            Assert.Equal("", unknown.StandardOutput);
            Assert.Contains("--get Cluster:Shards: Cluster has no key 'Shards'. Its keys: ", unknown.StandardError);
            Assert.Contains("--get Training:Epoch: Training has no key 'Epoch'.", unknown.StandardError); // every bad key, not only the first
        }
        // A key whose name is an emoji shortcode (":key:", ":fire:") comes out as given, not as an emoji.
        using (var emoji = new DistTrainProcess(["config", "-c", config, "--get", "Nope:Key", "--get", "Training:fire"]))
        {
            Assert.Equal(2, await emoji.WaitAsync(TimeSpan.FromSeconds(60)));
            Assert.Contains("--get Nope:Key: the configuration has no key 'Nope'.", emoji.StandardError);
            Assert.Contains("--get Training:fire: Training has no key 'fire'.", emoji.StandardError);
        }
    }

    /// <summary>
    /// What a node checks as it starts, and <c>config --check-node</c> can check without touching anything: an Output:Directory
    /// that is a file, a job secret that is set but unusable, and Cluster:ShardNodes with a mode shard nodes do not run. <c>config</c> printed the settings and exited 0, so deploy/local/cluster.sh
    /// started every node and the parameter server then exited 2 (on a 5-byte Cluster:Secret, or a Cluster:SecretFile that is
    /// not there). A usable secret passes, and is still not printed.
    /// </summary>
    [Fact]
    public async Task The_command_exits_2_on_a_run_folder_it_cannot_make_or_a_job_secret_set_but_unusable()
    {
        var config = Path.Combine(Repository, "configs", "fashion-mnist-mlp.json");
        var folder = Directory.CreateTempSubdirectory("disttrain-config-checks-").FullName;
        try
        {
            var file = Path.Combine(folder, "a-file");
            File.WriteAllText(file, "");
            async Task<string> Refusal(Dictionary<string, string> environment, params string[] options)
            {
                using var command = new DistTrainProcess(["config", "-c", config, "--get", "Training:Epochs", "--check-node", .. options], environment);
                Assert.Equal(2, await command.WaitAsync(TimeSpan.FromSeconds(60)));
                Assert.Equal("", command.StandardOutput);
                return command.StandardError;
            }
            Assert.Contains($"Output:Directory = '{file}' is a file, not a folder: each run is written to a new folder inside Output:Directory.",
                await Refusal([], "--output", file));
            Assert.Contains("the job secret (Cluster:Secret) has 5 bytes; use at least 16 random bytes", await Refusal(new() { ["DISTTRAIN_Cluster__Secret"] = "short" }));
            var missing = Path.Combine(folder, "no-secret");
            Assert.Contains($"Cluster:SecretFile = '{missing}' cannot be read", await Refusal(new() { ["DISTTRAIN_Cluster__SecretFile"] = missing }));
            // Settings a parameter-server node cannot run, which single-node train only warns of: refused here, before any node starts.
            Assert.Contains("Cluster:ShardNodes = true takes synchronous training only, and Training:Mode is Async: set Training:Mode to Sync",
                await Refusal(new() { ["DISTTRAIN_Cluster__ShardNodes"] = "true", ["DISTTRAIN_Training__Mode"] = "Async" }));
            using var usable = new DistTrainProcess(["config", "-c", config, "--get", "Training:Epochs", "--check-node"],
                new Dictionary<string, string> { ["DISTTRAIN_Cluster__Secret"] = new string('a', 64) });
            Assert.True(await usable.WaitAsync(TimeSpan.FromSeconds(60)) == 0, usable.StandardError);
            Assert.DoesNotContain("aaaa", usable.StandardOutput + usable.StandardError);
            // Without --check-node, a config meant for other machines (whose secret file is there) prints as it is.
            using var elsewhere = new DistTrainProcess(["config", "-c", config, "--get", "Training:Epochs"],
                new Dictionary<string, string> { ["DISTTRAIN_Cluster__SecretFile"] = missing });
            Assert.True(await elsewhere.WaitAsync(TimeSpan.FromSeconds(60)) == 0, elsewhere.StandardError);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
