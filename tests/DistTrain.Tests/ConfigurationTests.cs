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
        Assert.Contains("Optimizer:LearningRate = -0.1 (from a command-line option) is out of range: allowed (0, 10]", error.Message);
    }

    [Fact]
    public void Zero_workers_is_rejected()
    {
        var error = Invalid(RepositoryConfig, new(ValidData) { ["Training:Workers"] = "0" });
        Assert.Contains("Training:Workers = 0 (from a command-line option) is out of range: allowed [1, 256]", error.Message);
    }

    [Fact]
    public void An_unknown_activation_lists_the_allowed_layer_types()
    {
        var error = Invalid(RepositoryConfig, new(ValidData) { ["Model:Layers:1:Type"] = "Swish" });
        Assert.Contains("Model:Layers:1:Type = 'Swish' (from a command-line option) is unknown: allowed Dense, ReLU, LeakyReLU, Sigmoid, Tanh", error.Message);
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
    public void A_misspelled_key_is_rejected_with_its_full_path_and_the_closest_known_key()
    {
        var error = Invalid(Config("""{ "Optimizer": { "LearnRate": 0.1 }, "Model": { "Layers": [ { "Type": "Dense", "Unit": 10 } ] } }"""), ValidData);
        Assert.Contains("Optimizer:LearnRate is not a known key. Did you mean 'Optimizer:LearningRate'?", error.Message);
        Assert.Contains("Model:Layers:0:Unit is not a known key. Did you mean 'Model:Layers:0:Units'?", error.Message);
        Assert.Equal(2, error.Problems.Count);
    }

    [Fact]
    public void Values_of_the_wrong_type_are_all_reported_with_the_allowed_values()
    {
        var error = Invalid(RepositoryConfig, new(ValidData) { ["Model:Initializer:Kind"] = "Glorious", ["Training:Workers"] = "four" });
        Assert.Contains("Model:Initializer:Kind = 'Glorious' (from a command-line option) is not valid: expected one of Uniform, Normal, Zeros, Constant, HeNormal, HeUniform, XavierNormal, XavierUniform.", error.Message);
        Assert.Contains("Training:Workers = 'four' (from a command-line option) is not valid: expected a whole number.", error.Message);
    }

    /// <summary>A misspelt name of an allowed value gets the closest one (at most two edits, ignoring case); a name far from
    /// every allowed one gets none.</summary>
    [Theory]
    [InlineData("Training:Mode", "Asynch", " Did you mean 'Async'?")]
    [InlineData("Training:Mode", "LocalSdg", " Did you mean 'LocalSgd'?")]
    [InlineData("Cluster:TopKScope", "PerTensr", " Did you mean 'PerTensor'?")]
    [InlineData("Cluster:Compression", "Float61", " Did you mean 'Float16'?")]
    [InlineData("Optimizer:Kind", "Lion", "")]
    public void A_misspelt_value_gets_the_closest_allowed_name(string key, string value, string hint)
    {
        var error = Invalid(RepositoryConfig, new(ValidData) { [key] = value });
        var line = Assert.Single(error.Problems, p => p.StartsWith($"{key} = '{value}'", StringComparison.Ordinal));
        Assert.EndsWith("." + hint, line);
    }

    [Fact]
    public void A_bad_value_names_the_environment_variable_or_file_it_came_from()
    {
        var fromEnvironment = Invalid(RepositoryConfig, ValidData, new() { ["DISTTRAIN_Optimizer__Momentum"] = "2" });
        Assert.Contains("Optimizer:Momentum = 2 (from environment variable DISTTRAIN_Optimizer__Momentum)", fromEnvironment.Message);
        var file = Config("""{ "Training": { "Epochs": 0 } }""");
        Assert.Contains($"Training:Epochs = 0 (in {file})", Invalid(file, ValidData).Message);
        // A problem of two keys names the first key's origin beside its own value, not after the second key.
        var twoKeys = Invalid(RepositoryConfig, ValidData, new()
        {
            ["DISTTRAIN_Cluster__ParameterServerShards"] = "2", ["DISTTRAIN_Optimizer__GradientClipNorm"] = "1", ["DISTTRAIN_Training__Mode"] = "Async",
            ["DISTTRAIN_Cluster__Compression"] = "None",
        });
        Assert.Contains("Cluster:ParameterServerShards = 2 (from environment variable DISTTRAIN_Cluster__ParameterServerShards) is not possible with " +
            "Optimizer:GradientClipNorm = 1 in Training:Mode Async: ", twoKeys.Message);
    }

    /// <summary>
    /// A file that is not UTF-8 text (a PNG given as the config, a UTF-16 file) is named by its own first bad byte, or as UTF-16;
    /// the JSON parser had named byte 0xEF whatever the file held (the replacement character it saw). UTF-8 text, with or
    /// without a byte-order mark and with characters beyond ASCII, loads.
    /// </summary>
    [Fact]
    public void A_config_that_is_not_utf8_text_names_its_first_bad_byte_or_utf16()
    {
        var png = Path.Combine(_directory, "image.json");
        File.WriteAllBytes(png, [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        Assert.Equal("the file is not UTF-8 text: the bytes from 0 (0x89 0x50) are no UTF-8 character, and a config is JSON text in UTF-8. Is this the " +
            "right file? If it is, it was saved in another encoding (Latin-1 or Windows-1252, say): save it as UTF-8.", Assert.Single(Invalid(png).Problems));
        var latin1 = Path.Combine(_directory, "latin1.json");
        File.WriteAllBytes(latin1, [.. "{ \"Output\": { \"Directory\": \"caf"u8.ToArray(), 0xE9, .. "\" } }"u8.ToArray()]);
        Assert.StartsWith("the file is not UTF-8 text: the bytes from 31 (0xE9 0x22) are no UTF-8 character", Assert.Single(Invalid(latin1).Problems));
        var utf16 = Path.Combine(_directory, "utf16.json");
        File.WriteAllBytes(utf16, [.. System.Text.Encoding.Unicode.GetPreamble(), .. System.Text.Encoding.Unicode.GetBytes("{ \"Training\": { \"Epochs\": 2 } }")]);
        Assert.Equal("the file is UTF-16 text (it starts with a UTF-16 byte-order mark, 0xFF 0xFE), and a config is read as UTF-8: save it as UTF-8.",
            Assert.Single(Invalid(utf16).Problems));
        var utf8 = Path.Combine(_directory, "utf8.json");
        File.WriteAllBytes(utf8, [0xEF, 0xBB, 0xBF, .. "{ \"Training\": { \"Epochs\": 2 }, \"Output\": { \"Directory\": \"café\" }, \"Model\": { \"Layers\": [{ \"Type\": \"Dense\", \"Units\": 10 }] } }"u8.ToArray()]);
        var options = TrainingOptionsLoader.Load(utf8, ValidData, environment: NoEnvironment);
        Assert.Equal((2, "café"), (options.Training.Epochs, options.Output.Directory));
    }

    [Fact]
    public void Broken_json_and_a_missing_file_are_reported()
    {
        Assert.Contains("not valid JSON", Invalid(Config("{ \"Training\": { ")).Message);
        Assert.Contains("not found", Invalid(Path.Combine(_directory, "missing.json")).Message);
    }

    [Fact]
    public void A_config_file_whose_name_starts_with_a_dot_loads()
    {
        // Microsoft.Extensions.Configuration's default file provider hides dot-files: this was "not found", and a crash.
        var path = Path.Combine(_directory, ".local.json");
        File.Copy(RepositoryConfig, path);
        Assert.Equal(4, TrainingOptionsLoader.Load(path, ValidData, checkDataDirectory: true, NoEnvironment).Training.Workers);
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

    [Fact]
    public void An_unknown_key_from_the_environment_names_its_variable_and_the_suites_own_switches_are_not_keys()
    {
        var error = Invalid(RepositoryConfig, ValidData, new()
        {
            ["DISTTRAIN_Optimizer__LearningRat"] = "0.1",
            ["DISTTRAIN_Bogus__A"] = "1",
            ["DISTTRAIN_Bogus__B"] = "2",
            ["DISTTRAIN_NETNS_TESTS"] = "1",
            ["DISTTRAIN_MAIN_JOB_REPLAY"] = "1",
            ["DISTTRAIN_CONTAINER_TESTS"] = "1",
        });
        Assert.Contains("Optimizer:LearningRat is not a known key. Did you mean 'Optimizer:LearningRate'? (from environment variable DISTTRAIN_Optimizer__LearningRat)",
            error.Problems);
        Assert.Contains(error.Problems, p => p.StartsWith("Bogus is not a known key.", StringComparison.Ordinal)
            && p.EndsWith("(from environment variables DISTTRAIN_Bogus__A, DISTTRAIN_Bogus__B)", StringComparison.Ordinal));
        Assert.Equal(2, error.Problems.Count);
        // The switches alone bind nothing and break nothing; a misspelt key in the file still names no variable.
        TrainingOptionsLoader.Load(RepositoryConfig, ValidData, environment: new Dictionary<string, string?> { ["DISTTRAIN_NETNS_TESTS"] = "1" });
        var inFile = Invalid(Config("""{ "Optimizer": { "LearnRate": 0.1 } }"""), ValidData, new() { ["DISTTRAIN_Training__Epochs"] = "2" });
        // Reported with the file's other problem (it lists no layers), not instead of it.
        Assert.Equal(["Optimizer:LearnRate is not a known key. Did you mean 'Optimizer:LearningRate'?",
            "Model:Layers is empty: list at least one Dense layer, e.g. [{\"Type\": \"Dense\", \"Units\": 10}]."], inFile.Problems);
    }

    [Fact]
    public void Optimizer_kind_and_schedule_bind_case_insensitively_with_their_defaults()
    {
        var options = TrainingOptionsLoader.Load(RepositoryConfig, new Dictionary<string, string?>(ValidData)
        {
            ["Optimizer:Kind"] = "adamw", ["Optimizer:Schedule:Kind"] = "cosine", ["Optimizer:Schedule:WarmupSteps"] = "100",
            ["Optimizer:ScaleLearningRateByWorkers"] = "true",
        }, environment: NoEnvironment);
        Assert.Equal(Core.Optimization.OptimizerKind.AdamW, options.Optimizer.Kind);
        Assert.Equal(Core.Optimization.LearningRateScheduleKind.Cosine, options.Optimizer.Schedule.Kind);
        Assert.Equal(100, options.Optimizer.Schedule.WarmupSteps);
        Assert.Equal(0.1, options.Optimizer.Schedule.WarmupStartFactor);
        Assert.True(options.Optimizer.ScaleLearningRateByWorkers);
        Assert.True(options.Optimizer.DecayBiasAndNormParameters); // the MLP config keeps decaying biases
        Assert.False(new Core.Optimization.OptimizerOptions().DecayBiasAndNormParameters); // the default does not
        Assert.Equal((0.9, 0.999, 1e-8, 0.99), (options.Optimizer.Beta1, options.Optimizer.Beta2, options.Optimizer.Epsilon, options.Optimizer.Alpha));
    }

    [Fact]
    public void Bad_optimizer_and_schedule_values_name_the_key_the_value_and_the_range()
    {
        var error = Invalid(RepositoryConfig, new(ValidData)
        {
            ["Optimizer:Beta2"] = "1", ["Optimizer:Schedule:Gamma"] = "2", ["Optimizer:Nesterov"] = "true", ["Optimizer:Kind"] = "Adam",
        });
        Assert.Contains("Optimizer:Beta2 = 1 (from a command-line option) is out of range: allowed [0, 1)", error.Message);
        Assert.Contains("Optimizer:Schedule:Gamma = 2 (from a command-line option) is out of range: allowed (0, 1]", error.Message);
        Assert.Contains("Optimizer:Nesterov = true (from a command-line option) is not allowed here", error.Message);
        Assert.Equal(3, error.Problems.Count);
        var kind = Invalid(RepositoryConfig, new(ValidData) { ["Optimizer:Kind"] = "Lion" });
        Assert.Contains("Optimizer:Kind = 'Lion' (from a command-line option) is not valid: expected one of Sgd, Adam, AdamW, RMSProp.", kind.Message);
        var number = Invalid(RepositoryConfig, new(ValidData) { ["Optimizer:Schedule:Kind"] = "9" });
        Assert.Contains("Optimizer:Schedule:Kind = '9' (from a command-line option) is not valid: expected one of Constant, Step, Exponential, Cosine. Write the name", number.Message);
        var typo = Invalid(Config("""{ "Optimizer": { "Schedule": { "Gama": 0.5 } } }"""), ValidData);
        Assert.Contains("Optimizer:Schedule:Gama is not a known key. Did you mean 'Optimizer:Schedule:Gamma'?", typo.Message);
    }

    [Fact]
    public void Failure_detector_and_downing_keys_reach_akka_and_bad_values_name_the_key_and_the_range()
    {
        var options = TrainingOptionsLoader.Load(RepositoryConfig, new Dictionary<string, string?>(ValidData)
        {
            ["Cluster:HeartbeatIntervalSeconds"] = "0.25", ["Cluster:AcceptableHeartbeatPauseSeconds"] = "1.5",
            ["Cluster:StableAfterSeconds"] = "4", ["Cluster:RemovalMarginSeconds"] = "0",
        }, environment: NoEnvironment);
        var akka = Cluster.Hosting.AkkaSettings.Membership(options.Cluster);
        Assert.Equal(TimeSpan.FromMilliseconds(250), akka.GetTimeSpan("akka.cluster.failure-detector.heartbeat-interval"));
        Assert.Equal(TimeSpan.FromMilliseconds(1500), akka.GetTimeSpan("akka.cluster.failure-detector.acceptable-heartbeat-pause"));
        Assert.Equal(TimeSpan.FromSeconds(4), akka.GetTimeSpan("akka.cluster.split-brain-resolver.stable-after"));
        Assert.Equal(TimeSpan.Zero, akka.GetTimeSpan("akka.cluster.down-removal-margin"));

        var error = Invalid(RepositoryConfig, new(ValidData)
        {
            ["Cluster:HeartbeatIntervalSeconds"] = "0", ["Cluster:AcceptableHeartbeatPauseSeconds"] = "0.1", ["Cluster:RemovalMarginSeconds"] = "-1",
            ["Cluster:StartDelaySeconds"] = "601", ["Cluster:ResumeWaitSeconds"] = "-1",
        });
        Assert.Contains("Cluster:HeartbeatIntervalSeconds = 0 (from a command-line option) is out of range: allowed [0.1, 60]", error.Message);
        Assert.Contains("Cluster:AcceptableHeartbeatPauseSeconds = 0.1 (from a command-line option) is out of range: allowed [0.5, 300]", error.Message);
        Assert.Contains("Cluster:RemovalMarginSeconds = -1 (from a command-line option) is out of range: allowed [0, 300]", error.Message);
        Assert.Contains("Cluster:StartDelaySeconds = 601 (from a command-line option) is out of range: allowed [0, 600]", error.Message);
        Assert.Contains("Cluster:ResumeWaitSeconds = -1 (from a command-line option) is out of range: allowed [0, 604800]", error.Message);
    }

    /// <summary>
    /// A node that shuts down must close its remoting port before the others' gate on its address opens: a connection
    /// opened after the gate, while the port still accepts, is dropped mid-handshake, and Akka.Remote 1.5.74 shuts down a
    /// node whose outbound TLS handshake fails (a refused worker stopped the parameter server this way). Akka's defaults
    /// (flush up to 2 s, gate 5 s) keep that order; DistTrain's 1 s gate needs a shorter flush.
    /// </summary>
    [Fact]
    public void A_closing_node_shuts_its_remoting_port_well_before_the_others_gate_on_its_address_opens()
    {
        var akka = Cluster.Hosting.AkkaSettings.Membership(new ClusterOptions());
        var flush = akka.GetTimeSpan("akka.remote.flush-wait-on-shutdown");
        var gate = akka.GetTimeSpan("akka.remote.retry-gate-closed-for");
        Assert.Equal(TimeSpan.FromSeconds(1), gate);
        Assert.True(flush > TimeSpan.Zero && flush <= gate / 2, $"flush-wait-on-shutdown {flush} against a gate of {gate}");
    }

    /// <summary>
    /// Membership moves at the leader's pace, five rounds of gossip and leader actions a second, as in Akka.NET's own
    /// multi-node cluster tests. The singleton manager's hand-over retry is as short, and Akka counts its limits in retries
    /// (ClusterSingletonManager's constructor: hand-over max(min-number-of-hand-over-retries, margin / interval + 3),
    /// take-over 3 fewer), so with the default Cluster:RemovalMarginSeconds a hand-over to a standby on a loaded machine is
    /// given up no sooner than with Akka's defaults (1 s retries, at least 15; akka.cluster.singleton in Akka's reference.conf).
    /// </summary>
    [Fact]
    public void Membership_moves_five_times_a_second_and_the_singleton_hand_over_is_given_up_no_sooner_than_with_akkas_defaults()
    {
        var akka = Cluster.Hosting.AkkaSettings.Membership(new ClusterOptions());
        Assert.Equal(TimeSpan.FromMilliseconds(200), akka.GetTimeSpan("akka.cluster.gossip-interval"));
        Assert.Equal(TimeSpan.FromMilliseconds(200), akka.GetTimeSpan("akka.cluster.leader-actions-interval"));
        var margin = akka.GetTimeSpan("akka.cluster.down-removal-margin");
        // How long the new oldest asks for the singleton (retries + 1 intervals) and a leaving oldest offers it (retries intervals).
        static (TimeSpan HandOver, TimeSpan TakeOver) Limits(TimeSpan interval, int minimumRetries, TimeSpan margin)
        {
            var handOver = Math.Max(minimumRetries, (int)(margin.TotalMilliseconds / interval.TotalMilliseconds) + 3);
            return ((handOver + 1) * interval, Math.Max(1, handOver - 3) * interval);
        }
        var ours = Limits(akka.GetTimeSpan("akka.cluster.singleton.hand-over-retry-interval"),
            akka.GetInt("akka.cluster.singleton.min-number-of-hand-over-retries"), margin);
        var akkas = Limits(TimeSpan.FromSeconds(1), 15, margin);
        Assert.True(ours.HandOver >= akkas.HandOver, $"hand-over given up after {ours.HandOver}, against {akkas.HandOver} with Akka's defaults");
        Assert.True(ours.TakeOver >= akkas.TakeOver, $"take-over given up after {ours.TakeOver}, against {akkas.TakeOver} with Akka's defaults");
    }

    [Fact]
    public void Compression_keys_bind_into_the_workers_encoder_settings_and_bad_values_name_the_key_and_the_fix()
    {
        var options = TrainingOptionsLoader.Load(RepositoryConfig, new Dictionary<string, string?>(ValidData)
        {
            ["Cluster:Compression"] = "TopK", ["Cluster:TopKRatio"] = "0.02", ["Cluster:ErrorFeedback"] = "false",
        }, environment: NoEnvironment);
        Assert.Equal(new Core.Compression.GradientCompressionSettings(Core.Compression.GradientCompression.TopK, 0.02, ErrorFeedback: false),
            Cluster.Training.ReplicaSettings.From(options).Compression);
        Assert.Same(options.Optimizer, options.ParameterServerOptimizer()); // no error feedback: no momentum correction

        // The main job's momentum SGD with TopK and error feedback: the workers take the momentum, the parameter server none.
        options.Cluster.ErrorFeedback = true;
        Assert.Equal(0.9, Cluster.Training.ReplicaSettings.From(options).Compression!.Momentum);
        Assert.Equal((0.0, 0.9), (options.ParameterServerOptimizer().Momentum, options.Optimizer.Momentum));
        // The main job's L2 goes through the workers' momentum too: the parameter server adds none, yet reports the configured λ.
        Assert.Equal((0.0, 1e-4), (options.ParameterServerOptimizer().L2, options.Optimizer.L2));
        Assert.Equal(new Cluster.Training.LocalGradientSettings(0, 0, 1e-4, true), Cluster.Training.ReplicaSettings.From(options).LocalGradient);
        Assert.Equal("gradients sent as TopK 2% with error feedback and momentum correction (momentum 0.9 and L1/L2 on the workers, none at the parameter server)",
            options.DescribeCompression());
        // Clipping under TopK moves to the workers (DGC's local clipping); the parameter server clips nothing.
        options.Optimizer.GradientClipNorm = 5;
        Assert.Equal((0.0, 5.0), (options.ParameterServerOptimizer().GradientClipNorm, Cluster.Training.ReplicaSettings.From(options).LocalGradient!.ClipNorm));
        Assert.Equal(2.5, Cluster.Training.ReplicaSettings.From(options).LocalGradient!.LocalClipNorm(workersPerStep: 4));
        Assert.EndsWith("; each worker clips its gradient to Optimizer:GradientClipNorm 5 / sqrt(workers per step), the parameter server clips none",
            options.DescribeCompression());
        options.Cluster.Compression = Core.Compression.GradientCompression.Float16; // a dense encoding: the parameter server clips the average
        Assert.Equal((5.0, 1e-4), (options.ParameterServerOptimizer().GradientClipNorm, options.ParameterServerOptimizer().L2));
        Assert.Null(Cluster.Training.ReplicaSettings.From(options).LocalGradient);
        options.Cluster.Compression = Core.Compression.GradientCompression.TopK;
        options.Optimizer.GradientClipNorm = 0;
        options.Optimizer.Nesterov = true; // the correction does not cover Nesterov momentum, and the line says so
        Assert.Equal((0.0, 0.9), (Cluster.Training.ReplicaSettings.From(options).Compression!.Momentum, options.ParameterServerOptimizer().Momentum));
        Assert.Contains("momentum correction off: it does not support Optimizer:Nesterov", options.DescribeCompression());
        options.Optimizer.Nesterov = false;
        options.Cluster.MomentumCorrection = false;
        Assert.Equal((0.0, 0.9), (Cluster.Training.ReplicaSettings.From(options).Compression!.Momentum, options.ParameterServerOptimizer().Momentum));
        Assert.Null(Cluster.Training.ReplicaSettings.From(TrainingOptionsLoader.Load(RepositoryConfig, ValidData, environment: NoEnvironment)).Compression);

        var error = Invalid(RepositoryConfig, new(ValidData) { ["Cluster:Compression"] = "Float16", ["Cluster:TopKRatio"] = "0", ["Training:Mode"] = "LocalSgd" });
        Assert.Contains("Cluster:TopKRatio = 0 (from a command-line option) is out of range: allowed (0, 1]", error.Message);
        Assert.Contains("Cluster:Compression = Float16 does not apply to Training:Mode = LocalSgd", error.Message);
        var unknown = Invalid(RepositoryConfig, new(ValidData) { ["Cluster:Compression"] = "Gzip" });
        Assert.Contains("Gzip", unknown.Message);
        Assert.Contains("TopK", unknown.Message);
    }

    /// <summary>Cluster:TopKScope binds into the encoder settings under TopK (and is Global, which they ignore, for the other
    /// encodings); a value that is not a scope names the key and the allowed values.</summary>
    [Fact]
    public void TopK_scope_binds_into_the_encoder_settings_and_a_bad_value_names_the_key_and_the_allowed_values()
    {
        Assert.Equal(Core.Compression.TopKScope.Global, TrainingOptionsLoader.Load(RepositoryConfig, ValidData, environment: NoEnvironment).Cluster.TopKScope);
        var options = TrainingOptionsLoader.Load(RepositoryConfig, new Dictionary<string, string?>(ValidData)
        {
            ["Cluster:Compression"] = "TopK", ["Cluster:TopKScope"] = "PerTensor",
        }, environment: NoEnvironment);
        Assert.Equal(Core.Compression.TopKScope.PerTensor, Cluster.Training.ReplicaSettings.From(options).Compression!.Scope);
        Assert.StartsWith("gradients sent as TopK 1% per tensor with error feedback", options.DescribeCompression());
        options.Cluster.TopKRatio = 1e-9; // a tiny ratio as a plain percentage, not "1E-07%"
        Assert.StartsWith("gradients sent as TopK 0.0000001% per tensor", options.DescribeCompression());
        options.Cluster.TopKRatio = 1e-15; // far below a printable percentage: not "0%"
        Assert.StartsWith("gradients sent as TopK 1E-13% per tensor", options.DescribeCompression());
        options.Cluster.TopKRatio = 0.001;
        Assert.StartsWith("gradients sent as TopK 0.1% per tensor", options.DescribeCompression());
        options.Cluster.Compression = Core.Compression.GradientCompression.BFloat16;
        Assert.Equal(Core.Compression.TopKScope.Global, Cluster.Training.ReplicaSettings.From(options).Compression!.Scope);

        var error = Invalid(RepositoryConfig, new(ValidData) { ["Cluster:TopKScope"] = "PerLayer" });
        Assert.Contains("Cluster:TopKScope = 'PerLayer' (from a command-line option) is not valid: expected one of Global, PerTensor", error.Message);
        var number = Invalid(RepositoryConfig, new(ValidData) { ["Cluster:TopKScope"] = "7" });
        Assert.Contains("Cluster:TopKScope = '7' (from a command-line option) is not valid: expected one of Global, PerTensor. Write the name", number.Message);
    }

    /// <summary>
    /// A node given one port for two of its listeners bound the first and failed on the second with Akka.Remote's stack
    /// trace and "internal error" (exit 1). Each pair it listens on is now one problem naming both keys and the value;
    /// 0 (a free Cluster:Port, an endpoint off) never clashes, a worker does not listen on Cluster:DataPort, and
    /// the library's Trainer serves no metrics.
    /// </summary>
    [Fact]
    public void A_cluster_node_given_one_port_for_two_of_its_listeners_gets_one_problem_per_pair_naming_both_keys()
    {
        static TrainingOptions Ports(int port, int dataPort, int metricsPort) =>
            new() { Cluster = { Port = port, DataPort = dataPort }, Metrics = { Port = metricsPort } };

        Assert.Equal(["Cluster:Port = 25101 and Cluster:DataPort = 25101 are the same port, but a parameter-server node listens on each " +
            "(Akka.Remote and the data plane), and two listeners cannot share a port. Give one of them another port " +
            "(DISTTRAIN_Cluster__Port=... or DISTTRAIN_Cluster__DataPort=...)."],
            TrainingOptionsValidator.NodePortProblems(Ports(25101, 25101, 0), parameterServer: true));
        Assert.Equal(["Cluster:Port = 25101 and Metrics:Port = 25101 are the same port, but a worker node listens on each " +
            "(Akka.Remote and the metrics endpoint), and two listeners cannot share a port. Give one of them another port " +
            "(DISTTRAIN_Cluster__Port=... or DISTTRAIN_Metrics__Port=...)."],
            TrainingOptionsValidator.NodePortProblems(Ports(25101, 4054, 25101), parameterServer: false));
        var all = TrainingOptionsValidator.NodePortProblems(Ports(25101, 25101, 25101), parameterServer: true);
        Assert.Equal(3, all.Count);
        Assert.StartsWith("Cluster:DataPort = 25101 and Metrics:Port = 25101 are the same port, but a parameter-server node", all[2]);

        Assert.Empty(TrainingOptionsValidator.NodePortProblems(Ports(25101, 25101, 0), parameterServer: false)); // a worker has no data plane
        Assert.Empty(TrainingOptionsValidator.NodePortProblems(Ports(0, 4054, 0), parameterServer: false)); // a free port; metrics off
        Assert.Empty(TrainingOptionsValidator.NodePortProblems(Ports(4053, 4054, 4055), parameterServer: true));
        Assert.Empty(TrainingOptionsValidator.NodePortProblems(Ports(25101, 4054, 25101), parameterServer: true, metricsEndpoint: false));
        // Single-node mode listens on Metrics:Port alone: the default Cluster:Port there is no clash.
        var single = TrainingOptionsLoader.Load(RepositoryConfig, new Dictionary<string, string?>(ValidData) { ["Metrics:Port"] = "4053" }, checkDataDirectory: true, NoEnvironment);
        Assert.Equal((4053, 4053), (single.Metrics.Port, single.Cluster.Port));
    }

    /// <summary>
    /// A worker whose first seed was its own address started a cluster of one after a second (Akka.Cluster lets the first
    /// seed do so) and waited in it for Cluster:JoinTimeoutSeconds; it is refused before it starts. The same seed on the
    /// parameter server, and a seed that only looks alike, are not.
    /// </summary>
    [Fact]
    public void A_worker_whose_first_seed_is_its_own_address_is_refused_naming_the_fix()
    {
        static TrainingOptions Worker(string seed, string hostname, int port, string publicHostname = "") =>
            new() { Cluster = { SeedNodes = [seed, "akka.tcp://disttrain@ps2:4053"], Hostname = hostname, Port = port, PublicHostname = publicHostname } };

        Assert.Equal(["Cluster:SeedNodes:0 = 'akka.tcp://disttrain@10.0.0.7:4053' is this worker node's own address (10.0.0.7:4053, its Cluster:Hostname " +
            "and Cluster:Port). A worker joins the cluster through a parameter server; with its own address first it would start a cluster of its own and " +
            "wait there for a parameter server that never comes. List the parameter server's address first, the same first seed on every node " +
            "(DISTTRAIN_Cluster__SeedNodes__0=akka.tcp://disttrain@HOST:PORT, PORT being the parameter server's Cluster:Port). If the parameter server " +
            "is at this address, give this worker another port (Cluster:Port = 0 takes a free one)."],
            TrainingOptionsValidator.WorkerSeedProblems(Worker("akka.tcp://disttrain@10.0.0.7:4053", "10.0.0.7", 4053)));
        // As Akka compares it: the advertised host (Cluster:PublicHostname when set), any protocol, a trailing '/', a host's case, IPv6 brackets.
        var copied = Assert.Single(TrainingOptionsValidator.WorkerSeedProblems(Worker("akka.ssl.tcp://disttrain@worker-1:4060/", "0.0.0.0", 4060, "Worker-1")));
        Assert.Contains("(Worker-1:4060, its Cluster:PublicHostname and Cluster:Port)", copied);
        Assert.EndsWith("give this worker its own Cluster:PublicHostname (the address the other nodes reach it at).", copied);
        Assert.Single(TrainingOptionsValidator.WorkerSeedProblems(Worker("akka.tcp://disttrain@[::1]:4060", "::1", 4060)));
        // One IP address written two ways is one address to Akka.
        Assert.Single(TrainingOptionsValidator.WorkerSeedProblems(Worker("akka.tcp://disttrain@[fd00::5]:4060", "fd00:0:0::5", 4060)));
        Assert.Single(TrainingOptionsValidator.WorkerSeedProblems(Worker("akka.tcp://disttrain@127.0.0.1:4060", "127.1", 4060)));

        Assert.Empty(TrainingOptionsValidator.WorkerSeedProblems(Worker("akka.tcp://disttrain@10.0.0.7:4053", "10.0.0.7", 4054))); // another port
        Assert.Empty(TrainingOptionsValidator.WorkerSeedProblems(Worker("akka.tcp://disttrain@10.0.0.8:4053", "10.0.0.7", 4053))); // another host
        Assert.Empty(TrainingOptionsValidator.WorkerSeedProblems(Worker("akka.tcp://disttrain@10.0.0.7:4053", "0.0.0.0", 4053, "ps.example"))); // advertised as another
        Assert.Empty(TrainingOptionsValidator.WorkerSeedProblems(Worker("akka.tcp://disttrain@127.0.0.1:0", "127.0.0.1", 0))); // a free port: no seed names it
        Assert.Empty(TrainingOptionsValidator.WorkerSeedProblems(Worker("akka.tcp://disttrain@ps1:65536", "ps1", 4053))); // not an address: Validate says so
        Assert.Empty(TrainingOptionsValidator.WorkerSeedProblems(new TrainingOptions { Cluster = { Hostname = "ps1", Port = 4053, SeedNodes = ["akka.tcp://disttrain@ps0:4053", "akka.tcp://disttrain@ps1:4053"] } })); // only the first starts a cluster
    }
}
