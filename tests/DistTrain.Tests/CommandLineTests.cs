using DistTrain.Cli;

namespace DistTrain.Tests;

/// <summary>The command line: bad values, unknown options and missing arguments each give one line that says what to do.</summary>
public class CommandLineTests : IDisposable
{
    private readonly List<string> _folders = [];

    /// <summary>A fresh temporary folder named from <paramref name="prefix"/>, deleted with what it holds after the test.</summary>
    private string TemporaryFolder(string prefix)
    {
        var folder = Directory.CreateTempSubdirectory(prefix).FullName;
        _folders.Add(folder);
        return folder;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var folder in _folders) Directory.Delete(folder, recursive: true);
        GC.SuppressFinalize(this);
    }

    private static IReadOnlyList<string> Problems(params string[] args) =>
        ParseErrors.Describe(DistTrainCommandLine.Create().Parse(args));

    [Theory]
    [InlineData("train -c c.json --epochs abc", "--epochs 'abc' is not a whole number: --epochs takes a whole number of passes over the training set")]
    [InlineData("train -c c.json -w two", "--workers 'two' is not a whole number: --workers takes a whole number of worker replicas")]
    [InlineData("train -c c.json --seed 1.5", "--seed '1.5' is not a whole number")]
    [InlineData("train -c c.json --seed 99999999999", "--seed '99999999999' is out of range: it is larger than any whole number an option takes (-2147483648 to 2147483647). --seed takes a whole number, the seed of the initial weights and the shuffles (Training:Seed).")]
    [InlineData("train -c c.json -w -99999999999", "--workers '-99999999999' is out of range: it is smaller than any whole number an option takes (-2147483648 to 2147483647). --workers takes a whole number of worker replicas, 1 to 256")]
    [InlineData("train -c c.json --batch-size 64k", "--batch-size '64k' is not a whole number")]
    [InlineData("train -c c.json --train-limit x", "--train-limit 'x' is not a whole number")]
    [InlineData("train -c c.json --test-limit x", "--test-limit 'x' is not a whole number")]
    [InlineData("train -c c.json --epochs", "--epochs needs a value: it takes a whole number of passes over the training set")]
    [InlineData("train -c c.json --wrokers 2", "disttrain train has no option --wrokers (did you mean --workers?)")]
    [InlineData("train -c c.json --resume yes", "'yes' after --resume: --resume is a switch and takes no value")]
    [InlineData("train -c c.json extra", "disttrain train takes no argument 'extra'")]
    [InlineData("train", "disttrain train needs --config FILE: a JSON config file")]
    [InlineData("finetune -c c.json", "disttrain finetune needs --from FILE: a .safetensors checkpoint, such as a run's model.safetensors")]
    [InlineData("finetune -c c.json --from m.safetensors --replace-head ten", "--replace-head 'ten' is not a whole number")]
    [InlineData("finetune -c c.json --from m.safetensors -e x", "--epochs 'x' is not a whole number")]
    [InlineData("finetune -c c.json --from m.safetensors --replace-head 1", "--replace-head 1: a classifier needs 2 classes at least (with one, " +
        "the softmax of its only logit is always 1, so there is nothing to learn). Give the number of classes of the new head, 2 or more.")]
    [InlineData("finetune -c c.json --from m.safetensors --freeze ,,", "--freeze ',,' names no tensor: give names (0.weight), layer indices (0) or prefixes (0.*), comma-separated.")]
    [InlineData("inspect", "disttrain inspect needs CHECKPOINT: a .safetensors file")]
    [InlineData("predict -m m.safetensors", "disttrain predict needs INPUTS: Image files (PNG, JPEG) or folders of them")]
    [InlineData("predict a.png", "disttrain predict needs --model FILE: the model.safetensors a training run wrote")]
    [InlineData("predict -m m.safetensors --top-k two a.png", "--top-k 'two' is not a whole number: --top-k takes a whole number of classes")]
    [InlineData("evaluate -m m.safetensors", "disttrain evaluate needs --data PATH: A folder with IDX files")]
    [InlineData("predict --model --top-k a.png", "--model got '--top-k', which is an option, not a path: --model takes the model.safetensors a training run wrote")]
    [InlineData("predict -m -k a.png", "--model got '-k', which is an option, not a path")]
    [InlineData("bench --steps many", "--steps 'many' is not a whole number: --steps takes a whole number of measured steps")]
    [InlineData("bench --warmup x", "--warmup 'x' is not a whole number")]
    [InlineData("bench --metrics-port http", "--metrics-port 'http' is not a whole number: --metrics-port takes a TCP port")]
    [InlineData("bench -w x", "--workers 'x' is not a whole number")]
    [InlineData("node --role boss -c c.json", "--role 'boss' is not allowed: --role takes parameter-server, worker or parameter-shard.")]
    [InlineData("node -c c.json", "disttrain node needs --role parameter-server|worker|parameter-shard: parameter-server, worker or parameter-shard.")]
    [InlineData("trian -c c.json", "'trian' is not a command (did you mean train?)")]
    [InlineData("export --onnx m.onnx", "disttrain export needs CHECKPOINT: a .safetensors file written by DistTrain")]
    [InlineData("export m.safetensors", "disttrain export needs --onnx FILE: the ONNX file to write")]
    [InlineData("inspect m.safetensors --filters", "--filters needs a value: it takes the PNG file to write")]
    [InlineData("", "give a command: train, finetune, inspect, predict, evaluate, export, compare, bench, node, config")]
    [InlineData("compare", "disttrain compare needs RUNS: Run folders (each with the summary.json a training run wrote, or the epochs.csv of a run stopped before it).")]
    [InlineData("train -c c.json -o A --output B", "-o/--output is given 2 times ('A', 'B'); it takes one value: give it once.")]
    [InlineData("train -c a.json --config b.json", "-c/--config is given 2 times ('a.json', 'b.json'); it takes one value: give it once.")]
    // A second occurrence without a value was dropped without a word, the first value used.
    [InlineData("train -c a.json -o A -e 1 --config", "-c/--config is given 2 times ('a.json', once without a value); it takes one value: give it once.")]
    [InlineData("train -c a.json -o A -o", "-o/--output is given 2 times ('A', once without a value); it takes one value: give it once.")]
    [InlineData("predict -m m.safetensors a.png -m", "-m/--model is given 2 times ('m.safetensors', once without a value)")]
    [InlineData("predict -m m.safetensors a.png --top-k 2 -k", "-k/--top-k is given 2 times ('2', once without a value)")]
    [InlineData("train -c a.json -o A -o B -o", "-o/--output is given 3 times ('A', 'B', once without a value); it takes one value: give it once.")]
    [InlineData("train -c a.json -e -e", "--epochs '-e' is not a whole number")] // one line: not also "given 2 times"
    public void Each_problem_is_one_line_naming_the_option_the_value_and_what_it_takes(string line, string expected)
    {
        var problems = Problems(line.Split(' ', StringSplitOptions.RemoveEmptyEntries));
        var problem = Assert.Single(problems);
        Assert.Contains(expected, problem);
        Assert.DoesNotContain("System.", problem); // no .NET type names
        Assert.DoesNotContain('\n', problem);
    }

    /// <summary>A flag, which takes no value, may be given twice; an option of one value given once is no problem.</summary>
    [Fact]
    public void A_repeated_flag_is_no_problem()
    {
        Assert.Empty(Problems(["config", "-c", "a.json", "--check-node", "--check-node"]));
        Assert.Empty(Problems(["train", "-c", "a.json", "-o", "A", "-e", "1"]));
    }

    /// <summary>
    /// A command line that did not parse was reported alone: 'train --batch-size 99999999999 --epochs 0' named the batch size,
    /// and --epochs 0 only once that was fixed. The config's problems, with the options that parsed, now come with the line's;
    /// a problem of the key whose option did not parse (the file's batch size of 0 here) is left out, as the option replaces it.
    /// </summary>
    [Fact]
    public void The_configs_problems_come_with_the_lines_own_as_far_as_the_line_parsed()
    {
        var folder = TemporaryFolder("disttrain-cli-config-");
        var config = Path.Combine(folder, "c.json");
        File.WriteAllText(config, $$"""
            { "Data": { "Directory": "{{folder}}" }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] },
              "Training": { "BatchSizePerWorker": 0, "Workers": 0 } }
            """);
        Dictionary<string, string?> noEnvironment = [];
        var parse = DistTrainCommandLine.Create().Parse(["train", "-c", config, "--batch-size", "99999999999", "--epochs", "0", "-w", "2"]);

        Assert.Equal(["--batch-size '99999999999' is out of range: it is larger than any whole number an option takes (-2147483648 to 2147483647). " +
            "--batch-size takes a whole number of samples per worker minibatch, 1 to 65,536 (Training:BatchSizePerWorker)."], ParseErrors.Describe(parse));
        Assert.Equal($"Invalid configuration ({config}):{Environment.NewLine}  - Training:Epochs = 0 (from a command-line option, --epochs) is out of range: allowed [1, 10000].",
            ParseErrors.ConfigProblems(parse, noEnvironment));
        // An environment variable counts, as for the command.
        Assert.Contains("Optimizer:LearningRate = -1 (from environment variable DISTTRAIN_Optimizer__LearningRate) is out of range",
            ParseErrors.ConfigProblems(parse, new Dictionary<string, string?> { ["DISTTRAIN_Optimizer__LearningRate"] = "-1" }));
        // A config without problems, a missing --config or one that did not parse: nothing more.
        Assert.Null(ParseErrors.ConfigProblems(DistTrainCommandLine.Create().Parse(["train", "-c", config, "--batch-size", "x", "-w", "1", "-e", "1"]), noEnvironment));
        Assert.Null(ParseErrors.ConfigProblems(DistTrainCommandLine.Create().Parse(["train", "--epochs", "x"]), noEnvironment));
        Assert.Null(ParseErrors.ConfigProblems(DistTrainCommandLine.Create().Parse(["train", "-c", config, "-c", config, "-e", "0"]), noEnvironment));
        // A config file that is not there is a config problem as the command reports it.
        var missing = Path.Combine(folder, "none.json");
        Assert.Contains($"config file '{missing}' not found", ParseErrors.ConfigProblems(DistTrainCommandLine.Create().Parse(["train", "-c", missing, "-e", "x"]), noEnvironment));

        // On the command line: both, with the exit code of a bad command line.
        var (exit, _, error) = CliProcess.Run(["train", "-c", config, "--batch-size", "99999999999", "--epochs", "0", "-w", "2"]);
        Assert.Equal(1, exit);
        var lines = error.ReplaceLineEndings("\n");
        Assert.Contains("error: --batch-size '99999999999' is out of range", lines);
        Assert.Contains("Training:Epochs = 0 (from a command-line option, --epochs) is out of range: allowed [1, 10000].", lines);
        Assert.DoesNotContain("BatchSizePerWorker = 0", lines);
    }

    /// <summary>
    /// finetune's --replace-head below 2 and a --freeze that names no tensor were checked only once the command ran, so a line
    /// with another problem (here --workers two) or a config with one (Training:Epochs 0) reported those first, and these
    /// one round later. They are known from the line alone, so they now come in the same first report.
    /// </summary>
    [Fact]
    public void Finetunes_replace_head_and_freeze_problems_come_with_the_lines_others_and_the_configs()
    {
        var folder = TemporaryFolder("disttrain-cli-finetune-");
        var config = Path.Combine(folder, "c.json");
        File.WriteAllText(config, $$"""
            { "Data": { "Directory": "{{folder}}" }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] }, "Training": { "Epochs": 0 } }
            """);
        var from = Path.Combine(folder, "m.safetensors"); // not there: a problem only the command finds, once the line is right
        Dictionary<string, string?> noEnvironment = [];
        const string replaceHead = "--replace-head 1: a classifier needs 2 classes at least (with one, the softmax of its only logit is always 1, " +
                                   "so there is nothing to learn). Give the number of classes of the new head, 2 or more.";
        const string freeze = "--freeze ',,' names no tensor: give names (0.weight), layer indices (0) or prefixes (0.*), comma-separated.";
        var epochs = $"Invalid configuration ({config}):{Environment.NewLine}  - Training:Epochs = 0 (in {config}) is out of range: allowed [1, 10000].";

        var parse = DistTrainCommandLine.Create().Parse(["finetune", "-c", config, "--from", from, "--workers", "two", "--replace-head", "1", "--freeze", ",,"]);
        Assert.Equal([freeze, replaceHead, "--workers 'two' is not a whole number: --workers takes a whole number of worker replicas, 1 to 256 (Training:Workers)."],
            ParseErrors.Describe(parse).Order(StringComparer.Ordinal));
        Assert.Equal(epochs, ParseErrors.ConfigProblems(parse, noEnvironment));

        // Without another problem on the line, each still comes with the config's.
        parse = DistTrainCommandLine.Create().Parse(["finetune", "-c", config, "--from", from, "--replace-head", "1"]);
        Assert.Equal([replaceHead], ParseErrors.Describe(parse));
        Assert.Equal(epochs, ParseErrors.ConfigProblems(parse, noEnvironment));
        parse = DistTrainCommandLine.Create().Parse(["finetune", "-c", config, "--from", from, "--freeze", "", "--replace-head", "0"]);
        Assert.Equal(["--freeze '' names no tensor: give names (0.weight), layer indices (0) or prefixes (0.*), comma-separated.",
            replaceHead.Replace("--replace-head 1", "--replace-head 0", StringComparison.Ordinal)], ParseErrors.Describe(parse).Order(StringComparer.Ordinal));
        // A --replace-head that is not a number was the parser's already, and is reported once.
        Assert.Equal(["--replace-head 'ten' is not a whole number: --replace-head takes the number of classes of the new head, a whole number from 2.",
            "--workers 'two' is not a whole number: --workers takes a whole number of worker replicas, 1 to 256 (Training:Workers)."],
            ParseErrors.Describe(DistTrainCommandLine.Create().Parse(["finetune", "-c", config, "--from", from, "-w", "two", "--replace-head", "ten"])).Order(StringComparer.Ordinal));
        // Values that are right: nothing.
        Assert.Empty(ParseErrors.Describe(DistTrainCommandLine.Create().Parse(["finetune", "-c", config, "--from", from, "--replace-head", "2", "--freeze", "0,1.*"])));

        // On the command line: all of them in one report, with the exit code of a bad command line.
        var (exit, output, error) = CliProcess.Run(["finetune", "-c", config, "--from", from, "--workers", "two", "--replace-head", "1", "--freeze", ",,"]);
        Assert.Equal(1, exit);
        Assert.Equal("", output);
        var lines = error.ReplaceLineEndings(" ").Replace("  ", " ", StringComparison.Ordinal);
        Assert.Contains("error: --workers 'two' is not a whole number", lines);
        Assert.Contains($"error: {replaceHead}", lines);
        Assert.Contains($"error: {freeze}", lines);
        Assert.Contains($"Training:Epochs = 0 (in {config}) is out of range", lines);
        Assert.DoesNotContain("m.safetensors", lines);
    }

    [Fact]
    public void A_mistyped_option_is_reported_once_and_its_value_is_not_offered_option_names()
    {
        var problem = Assert.Single(Problems("train", "-c", "c.json", "--wrokers", "2"));
        Assert.DoesNotContain("-c", problem.Replace("--wrokers", "").Replace("--workers", "").Replace("--help", ""));
        Assert.DoesNotContain("'2'", problem);
    }

    [Theory]
    [InlineData("train -c c.json -w 2 -e 3 --seed -4 --batch-size 8 --data d -o o --train-limit 10 --test-limit 5 --checkpoint-dir k --resume")]
    [InlineData("finetune -c c.json --from m.safetensors --freeze 0,1 --replace-head 5 -e 2 -w 1 --data d -o o --compare-scratch")]
    [InlineData("inspect m.safetensors")]
    [InlineData("predict -m m.safetensors -k 2 --json --resize a.png b.csv c-idx3-ubyte")]
    [InlineData("evaluate --model m.safetensors --data d --heatmap h.png --json --resize")]
    [InlineData("inspect m.safetensors --filters f.png --histograms h.png --compare-initialization")]
    [InlineData("inspect m.safetensors --filters f.png --compare i.safetensors")]
    [InlineData("export m.safetensors --onnx m.onnx")]
    [InlineData("bench -c c.json -w 2 --batch-size 32 --steps 10 --warmup 5 --json --data d --metrics-port 0")]
    [InlineData("bench")]
    [InlineData("node --role worker -c c.json --data d -o o")]
    [InlineData("node -r parameter-server -c c.json")]
    public void Every_documented_option_parses(string line) => Assert.Empty(Problems(line.Split(' ')));

    [Theory]
    [InlineData("configs/sklearn-iris.json", "Csv", "Data:Csv:TrainFile (and Data:Csv:TestFile)", "DISTTRAIN_Data__Csv__TrainFile")]
    [InlineData("configs/fashion-mnist-image-folder.json", "ImageFolder", "Data:ImageFolder:TrainDirectory (and Data:ImageFolder:TestDirectory)", "DISTTRAIN_Data__ImageFolder__TrainDirectory")]
    public async Task Data_for_a_format_that_does_not_read_Data_Directory_is_refused_with_exit_2_naming_its_settings(string config, string format, string settings, string variable)
    {
        using var process = new DistTrainProcess(["train", "--config", config, "--data", "/nonexistent", "--epochs", "1"]);
        await process.AssertExitAsync(2, TimeSpan.FromSeconds(60));
        Assert.Contains($"Data:Directory = '/nonexistent' (from a command-line option, --data) is the folder of IDX files, but Data:Format is {format}, " +
            $"which reads {settings} instead. Set those in ", process.Error);
        Assert.Contains($"{config}, or in the environment ({variable}), and leave out --data.", process.Error);
    }

    /// <summary>
    /// Iris with one Dense 3 layer has 15 trainable parameters, less than one 16-parameter slice, so it cannot be sharded. Before,
    /// the refusal ended in .NET's " (Parameter 'count')" and said neither the unit nor the count to use.
    /// </summary>
    [Theory]
    [InlineData("train")]
    [InlineData("parameter-server")]
    public async Task More_parameter_server_shards_than_a_small_model_has_slices_for_are_refused_with_exit_2_before_training(string command)
    {
        var folder = TemporaryFolder("disttrain-shards-");
        var config = Path.Combine(folder, "iris-linear.json");
        File.WriteAllText(config, File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "configs", "sklearn-iris.json")).Replace(
            """{ "Type": "Dense", "Units": 100 },""", "").Replace("""{ "Type": "ReLU" },""", ""));
        var output = Path.Combine(folder, "runs");
        var environment = new Dictionary<string, string> { ["DISTTRAIN_Cluster__ParameterServerShards"] = "2" };
        string[] arguments = ["train", "--config", config, "--workers", "2", "--output", output];
        if (command == "parameter-server")
        {
            arguments = ["node", "--role", "parameter-server", "--config", config, "--output", output];
            environment["DISTTRAIN_Cluster__Secret"] = "0123456789abcdef0123";
            environment["DISTTRAIN_Cluster__Tls"] = "false";
            environment["DISTTRAIN_Cluster__SeedNodes__0"] = "akka.tcp://disttrain@127.0.0.1:4053";
        }
        using var process = new DistTrainProcess(arguments, environment);
        await process.AssertExitAsync(2, TimeSpan.FromSeconds(60));
        Assert.Contains("error: Cluster:ParameterServerShards = 2 is too many for a model with 15 trainable parameters: each shard needs at least " +
            "16 parameters, since the slices are cut at 16-parameter (64-byte) boundaries. Set Cluster:ParameterServerShards to 1: this model is " +
            "too small to shard.", process.Error);
        Assert.DoesNotContain("(Parameter", process.Error);
        Assert.DoesNotContain("epoch", process.Output);
        Assert.False(Directory.Exists(output) && Directory.GetFileSystemEntries(output).Length > 0); // no run folder
    }

    [Theory]
    [InlineData("worker")]
    [InlineData("parameter-server")]
    public async Task A_cluster_node_without_seed_nodes_is_refused_with_exit_2_naming_the_setting_at_once(string role)
    {
        // Before, a parameter server waited for workers that could never join it, and a worker for Cluster:JoinTimeoutSeconds.
        var output = TemporaryFolder("disttrain-noseed-");
        using var process = new DistTrainProcess(["node", "--role", role, "--config", "configs/fashion-mnist-mlp.json", "--data", TestData.SubsetDirectory,
            "--output", output], new Dictionary<string, string> { ["DISTTRAIN_Cluster__Secret"] = "0123456789abcdef0123", ["DISTTRAIN_Cluster__Tls"] = "false" });
        await process.AssertExitAsync(2, TimeSpan.FromSeconds(60));
        Assert.Contains("error: Cluster:SeedNodes is empty, so this node has no address to join the cluster through.", process.Error);
        Assert.Contains("DISTTRAIN_Cluster__SeedNodes__0=akka.tcp://disttrain@HOST:PORT", process.Error);
        Assert.Empty(Directory.GetFileSystemEntries(output)); // no run folder
    }

    /// <summary>
    /// One port for two of a node's listeners used to bind the first (the data plane, the metrics endpoint) and fail on
    /// Akka.Remote's bind: "internal error: AggregateException ... This is a fault in DistTrain", a stack trace, exit 1. It is
    /// a configuration error naming both keys and the value, exit 2, before anything binds or any run folder is made.
    /// </summary>
    [Theory]
    [InlineData("parameter-server", "DISTTRAIN_Cluster__DataPort", "Cluster:Port = 25101 and Cluster:DataPort = 25101 are the same port, but a parameter-server node listens on each (Akka.Remote and the data plane)")]
    [InlineData("parameter-server", "DISTTRAIN_Metrics__Port", "Cluster:Port = 25101 and Metrics:Port = 25101 are the same port, but a parameter-server node listens on each (Akka.Remote and the metrics endpoint)")]
    [InlineData("worker", "DISTTRAIN_Metrics__Port", "Cluster:Port = 25101 and Metrics:Port = 25101 are the same port, but a worker node listens on each (Akka.Remote and the metrics endpoint)")]
    public async Task A_cluster_node_given_one_port_for_two_of_its_listeners_exits_2_naming_both_keys_before_anything_binds(string role, string sameAs, string message)
    {
        var output = TemporaryFolder("disttrain-sameport-");
        using var process = new DistTrainProcess(["node", "--role", role, "--config", "configs/fashion-mnist-mlp.json", "--data", TestData.SubsetDirectory,
            "--output", output], new Dictionary<string, string>
            {
                ["DISTTRAIN_Cluster__Secret"] = "0123456789abcdef0123", ["DISTTRAIN_Cluster__Tls"] = "false", ["DISTTRAIN_Cluster__Hostname"] = "127.0.0.1",
                ["DISTTRAIN_Cluster__Port"] = "25101", [sameAs] = "25101", ["DISTTRAIN_Cluster__SeedNodes__0"] = "akka.tcp://disttrain@127.0.0.1:25101",
            });
        await process.AssertExitAsync(2, TimeSpan.FromSeconds(60));
        Assert.Contains($"  - {message}, and two listeners cannot share a port. Give one of them another port (DISTTRAIN_Cluster__Port=... or {sameAs}=...).", process.Error);
        Assert.StartsWith("error: Invalid configuration (", process.Error);
        Assert.DoesNotContain("internal error", process.Error);
        Assert.DoesNotContain("Failed to bind", process.Output + process.Error); // nothing bound, so no bind failed
        Assert.DoesNotContain("DistTrain cluster node", process.Output); // stopped before the node's start-up line
        Assert.Empty(Directory.GetFileSystemEntries(output)); // no run folder
    }

    /// <summary>
    /// A Cluster:Hostname that does not resolve ended the node with "Unhandled exception: SocketException: Name or service
    /// not known", a stack trace and exit code 1 (the port check resolved it), or, with Cluster:Port 0 (no port check, as
    /// cluster.sh's workers), with Akka.Remote's bind failure: about 160 lines and "internal error", exit 1. It is one line
    /// naming the key, the value and the fix, exit code 2, before the data is read or a run folder made. (".invalid" never
    /// resolves: RFC 6761.)
    /// </summary>
    [Theory]
    [InlineData("worker", "25102")]
    [InlineData("worker", "0")]
    [InlineData("parameter-server", "25102")]
    public async Task A_cluster_node_whose_hostname_does_not_resolve_exits_2_with_one_line_naming_the_setting_and_the_fix(string role, string port)
    {
        var output = TemporaryFolder("disttrain-nohost-");
        using var process = new DistTrainProcess(["node", "--role", role, "--config", "configs/fashion-mnist-mlp.json", "--data", TestData.SubsetDirectory,
            "--output", output], new Dictionary<string, string>
            {
                ["DISTTRAIN_Cluster__Secret"] = "0123456789abcdef0123", ["DISTTRAIN_Cluster__Tls"] = "false", ["DISTTRAIN_Cluster__Hostname"] = "no-such-host.invalid",
                ["DISTTRAIN_Cluster__Port"] = port, ["DISTTRAIN_Cluster__SeedNodes__0"] = "akka.tcp://disttrain@127.0.0.1:25102",
            });
        await process.AssertExitAsync(2, TimeSpan.FromSeconds(60));
        var line = Assert.Single(process.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        Assert.Matches(@"^error: Cluster:Hostname = 'no-such-host\.invalid' does not resolve to an address \([^)]+\), so this node has no address to listen on\. " +
            @"Set Cluster:Hostname \(DISTTRAIN_Cluster__Hostname=\.\.\.\) to an address or host name of this machine: 0\.0\.0\.0 for every interface \(the default\), " +
            @"127\.0\.0\.1 for a cluster on one machine; the address other nodes reach it at, if different, goes in Cluster:PublicHostname\.$", line);
        Assert.DoesNotContain("DistTrain cluster node", process.Output); // stopped before the node's start-up line
        Assert.Empty(Directory.GetFileSystemEntries(output)); // no run folder
    }

    /// <summary>
    /// Likewise a node's Metrics:Hostname, resolved by the port check of Metrics:Port: it was an unhandled SocketException
    /// and exit code 1; now one line naming Metrics:Hostname and its fix, exit code 2, and the run folder made is removed.
    /// </summary>
    [Fact]
    public async Task A_cluster_node_whose_metrics_hostname_does_not_resolve_exits_2_naming_it()
    {
        var output = TemporaryFolder("disttrain-nometricshost-");
        using var process = new DistTrainProcess(["node", "--role", "parameter-server", "--config", "configs/fashion-mnist-mlp.json", "--data", TestData.SubsetDirectory,
            "--output", output], new Dictionary<string, string>
            {
                ["DISTTRAIN_Cluster__Secret"] = "0123456789abcdef0123", ["DISTTRAIN_Cluster__Tls"] = "false", ["DISTTRAIN_Cluster__Hostname"] = "127.0.0.1",
                ["DISTTRAIN_Cluster__Port"] = "0", ["DISTTRAIN_Cluster__SeedNodes__0"] = "akka.tcp://disttrain@127.0.0.1:25103",
                ["DISTTRAIN_Metrics__Hostname"] = "no-such-host.invalid", ["DISTTRAIN_Metrics__Port"] = "25104",
            });
        await process.AssertExitAsync(2, TimeSpan.FromSeconds(60));
        Assert.Matches(@"error: Metrics:Hostname = 'no-such-host\.invalid' does not resolve to an address \([^)]+\), so this node has no address to listen on\. " +
            @"Set Metrics:Hostname \(DISTTRAIN_Metrics__Hostname=\.\.\.\) to \+ for every interface, localhost for this machine only, or a name or address of this machine\.",
            process.Error);
        Assert.DoesNotContain("Unhandled exception", process.Error);
        Assert.DoesNotContain("   at ", process.Error);
        Assert.Empty(Directory.GetFileSystemEntries(output));
    }

    /// <summary>
    /// Cluster:ShardNodes with a Training:Mode shard nodes do not run (Async): a parameter-server node exits 2 naming both settings
    /// and the fix, before it reads data or makes a run folder; single-node train, which does not use ShardNodes, takes the same
    /// settings, warns that ShardNodes is unused and trains (it was refused there with the cluster's advice).
    /// </summary>
    [Fact]
    public async Task Shard_nodes_with_async_are_refused_by_a_parameter_server_node_and_only_warned_of_by_single_node_train()
    {
        var settings = new Dictionary<string, string>
        {
            ["DISTTRAIN_Cluster__ShardNodes"] = "true", ["DISTTRAIN_Training__Mode"] = "Async", ["DISTTRAIN_Optimizer__Momentum"] = "0",
            ["DISTTRAIN_Training__Workers"] = "2", ["DISTTRAIN_Training__Epochs"] = "1",
        };
        var nodeOutput = TemporaryFolder("disttrain-shardnodes-async-node-");
        using (var node = new DistTrainProcess(["node", "--role", "parameter-server", "--config", "configs/fashion-mnist-mlp.json", "--data", TestData.SubsetDirectory,
                   "--output", nodeOutput], new Dictionary<string, string>(settings)
                   {
                       ["DISTTRAIN_Cluster__Secret"] = "0123456789abcdef0123", ["DISTTRAIN_Cluster__Tls"] = "false", ["DISTTRAIN_Cluster__Hostname"] = "127.0.0.1",
                       ["DISTTRAIN_Cluster__Port"] = "0", ["DISTTRAIN_Cluster__SeedNodes__0"] = "akka.tcp://disttrain@127.0.0.1:25105",
                   }))
        {
            await node.AssertExitAsync(2, TimeSpan.FromSeconds(60));
            Assert.Contains("Cluster:ShardNodes = true takes synchronous training only, and Training:Mode is Async: set Training:Mode to Sync, or " +
                "Cluster:ShardNodes to false", node.Error.ReplaceLineEndings(" "));
            Assert.DoesNotContain("   at ", node.Error);
            Assert.Empty(Directory.GetFileSystemEntries(nodeOutput));
        }
        var trainOutput = TemporaryFolder("disttrain-shardnodes-async-train-");
        using var train = new DistTrainProcess(["train", "--config", "configs/fashion-mnist-mlp.json", "--data", TestData.SubsetDirectory, "--output", trainOutput], settings);
        await train.AssertExitAsync(0, TimeSpan.FromSeconds(120));
        var text = (train.Output + train.Error).ReplaceLineEndings(" ");
        Assert.Contains("warning: Cluster:ShardNodes = true is not used by single-node disttrain train", text);
        Assert.Contains("mode Async", text);
        Assert.Contains("Test accuracy after 1 epoch", text);
    }

    [Fact]
    public async Task A_parameter_server_node_states_the_mode_and_optimizer_and_gives_trains_warnings_before_it_waits_for_workers()
    {
        // Before, the node printed the unused-setting warnings only: not the mode, the optimizer, nor a warmup as long as the run.
        var output = TemporaryFolder("disttrain-psstart-");
        var port = TestPorts.Free();
        using var process = new DistTrainProcess(["node", "--role", "parameter-server", "--config", "configs/fashion-mnist-mlp.json", "--data", TestData.SubsetDirectory,
            "--output", output], new Dictionary<string, string>
            {
                ["DISTTRAIN_Cluster__Secret"] = "0123456789abcdef0123", ["DISTTRAIN_Cluster__Tls"] = "false", ["DISTTRAIN_Cluster__Hostname"] = "127.0.0.1",
                ["DISTTRAIN_Cluster__Port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["DISTTRAIN_Cluster__SeedNodes__0"] = $"akka.tcp://disttrain@127.0.0.1:{port}", ["DISTTRAIN_Cluster__DataPort"] = TestPorts.Free().ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["DISTTRAIN_Training__Mode"] = "LocalSgd", ["DISTTRAIN_Training__LocalSteps"] = "3", ["DISTTRAIN_Training__Epochs"] = "2",
                ["DISTTRAIN_Optimizer__Schedule__WarmupSteps"] = "1000000", ["DISTTRAIN_Optimizer__Beta1"] = "0.5",
                ["DISTTRAIN_Cluster__ParameterServerShards"] = "2", ["DISTTRAIN_Model__Freeze__0"] = "0",
            });
        await process.WaitForOutputAsync("Waiting for", TimeSpan.FromSeconds(60));
        process.Terminate();
        await process.WaitAsync(TimeSpan.FromSeconds(60));
        var text = process.Output.ReplaceLineEndings(" ");
        Assert.Contains("mode LocalSgd, LocalSteps 3", text);
        Assert.Contains("optimizer Sgd lr 0.05", text);
        Assert.Contains("momentum 0.9 L1 0 L2 0.0001", text);
        Assert.Contains("init HeNormal; normalization", text);
        Assert.Contains("warning: Optimizer:Beta1 = 0.5 is not used by Optimizer:Kind Sgd", text);
        Assert.Contains("warning: Optimizer:Schedule:WarmupSteps = 1,000,000 is not less than this run's", text);
        Assert.Contains("parameter server in 2 shards", text);
        Assert.Contains("warning: Model:Freeze = [0] without Model:Pretrained", text);
    }

    [Fact]
    public async Task A_parameter_server_whose_port_is_taken_exits_2_naming_it_and_removes_its_empty_run_folder()
    {
        // The run folder is made before the ports are checked (after the data and model are); a taken port removes it again.
        var output = TemporaryFolder("disttrain-taken-");
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;
        using var process = new DistTrainProcess(["node", "--role", "parameter-server", "--config", "configs/fashion-mnist-mlp.json", "--data", TestData.SubsetDirectory,
            "--output", output], new Dictionary<string, string>
            {
                ["DISTTRAIN_Cluster__Secret"] = "0123456789abcdef0123", ["DISTTRAIN_Cluster__Tls"] = "false", ["DISTTRAIN_Cluster__Hostname"] = "127.0.0.1",
                ["DISTTRAIN_Cluster__Port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["DISTTRAIN_Cluster__SeedNodes__0"] = $"akka.tcp://disttrain@127.0.0.1:{port}",
            });
        await process.AssertExitAsync(2, TimeSpan.FromSeconds(60));
        Assert.Contains($"error: Cluster:Port = {port}: the port is in use", process.Error);
        Assert.Contains($"removed: the empty run folder {output}", process.Error.ReplaceLineEndings(" ")); // made, then removed
        Assert.Empty(Directory.GetFileSystemEntries(output));
    }

    [Fact]
    public async Task A_value_out_of_range_for_its_config_key_names_the_option_that_set_it()
    {
        using var process = new DistTrainProcess(["train", "--config", "configs/fashion-mnist-mlp.json", "--batch-size", "0", "-w", "0", "--data", TestData.SubsetDirectory]);
        await process.AssertExitAsync(2, TimeSpan.FromSeconds(60));
        Assert.Contains("Training:BatchSizePerWorker = 0 (from a command-line option, --batch-size) is out of range: allowed [1, 65536].", process.Error);
        Assert.Contains("Training:Workers = 0 (from a command-line option, --workers) is out of range: allowed [1, 256].", process.Error);
    }

    [Fact]
    public async Task A_bad_value_prints_one_line_on_standard_error_and_no_help_and_exits_1()
    {
        using var process = new DistTrainProcess(["train", "--config", "configs/fashion-mnist-mlp.json", "--epochs", "abc"]);
        await process.AssertExitAsync(1, TimeSpan.FromSeconds(60));
        var lines = process.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal("error: --epochs 'abc' is not a whole number: --epochs takes a whole number of passes over the training set, 1 to 10,000 (Training:Epochs).",
            Assert.Single(lines));
        Assert.DoesNotContain("Usage", process.Output);
        Assert.DoesNotContain("Nullable", process.Output);
    }
}
