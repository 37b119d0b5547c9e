using System.Text;
using DistTrain.Core.Configuration;

namespace DistTrain.Tests;

/// <summary>
/// Config problems name the real fix: a list element's type, an object where a list belongs, a whole number out of range,
/// every category of problem together.
/// </summary>
public class ConfigurationMessageTests
{
    private const string Mlp = """{ "Model": { "Layers": [{ "Type": "Dense", "Units": 32 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 }] } }""";

    private static IReadOnlyList<string> Problems(string json, Dictionary<string, string?>? environment = null, Dictionary<string, string?>? overrides = null)
    {
        var error = Assert.Throws<ConfigurationException>(() =>
            TrainingOptionsLoader.Load("test.json", Encoding.UTF8.GetBytes(json), overrides, checkDataDirectory: false, environment ?? []));
        Assert.All(error.Problems, p => Assert.DoesNotContain('\n', p));
        return error.Problems;
    }

    /// <summary>The problems about settings given more than once, without the others the file has (a model left out).</summary>
    private static IReadOnlyList<string> Repeats(string json) => [.. Problems(json).Where(p => p.Contains(" is given ", StringComparison.Ordinal))];

    /// <summary>
    /// Data:Augmentation:CropPadding on images of a known size is reported once, with the range those images allow: 1025 on
    /// 28x28 images was reported twice (out of [0, 1024], then too large for 28x28), and -1 said 1024 was allowed where 14 is
    /// the most. Without an image shape, the general range applies.
    /// </summary>
    [Theory]
    [InlineData("1025", "Data:Augmentation:CropPadding = 1025 (from environment variable DISTTRAIN_Data__Augmentation__CropPadding) is too large for 28x28 images: allowed 0 to 14 (half the smaller side).")]
    [InlineData("-1", "Data:Augmentation:CropPadding = -1 (from environment variable DISTTRAIN_Data__Augmentation__CropPadding) is negative for 28x28 images: allowed 0 to 14 (half the smaller side).")]
    [InlineData("15", "Data:Augmentation:CropPadding = 15 (from environment variable DISTTRAIN_Data__Augmentation__CropPadding) is too large for 28x28 images: allowed 0 to 14 (half the smaller side).")]
    public void CropPadding_on_images_of_a_known_size_is_reported_once_with_their_range(string padding, string expected)
    {
        const string cnn = """{ "Model": { "InputShape": [1, 28, 28], "Layers": [{ "Type": "Flatten" }, { "Type": "Dense", "Units": 10 }] } }""";
        Assert.Equal([expected], Problems(cnn, new() { ["DISTTRAIN_Data__Augmentation__CropPadding"] = padding }));
        // Images larger than twice the general limit are held to that limit.
        const string large = """{ "Model": { "InputShape": [1, 4096, 3000], "Layers": [{ "Type": "Flatten" }, { "Type": "Dense", "Units": 10 }] } }""";
        Assert.Equal(["Data:Augmentation:CropPadding = 1025 (from environment variable DISTTRAIN_Data__Augmentation__CropPadding) is too large for " +
            "4096x3000 images: allowed 0 to 1024 (the largest padding allowed)."],
            Problems(large, new() { ["DISTTRAIN_Data__Augmentation__CropPadding"] = "1025" }));
        // A flat input has no image size: the general range, and the augmentation needs image samples.
        var flat = Problems(Mlp, new() { ["DISTTRAIN_Data__Augmentation__CropPadding"] = "1025" });
        Assert.Equal(2, flat.Count);
        Assert.StartsWith("Data:Augmentation:CropPadding = 1025 (from environment variable DISTTRAIN_Data__Augmentation__CropPadding) is out of range: allowed [0, 1024].", flat[0]);
        Assert.Contains("needs image samples", flat[1]);
    }

    /// <summary>
    /// A config file that is not there: a user of the installed tool, in a folder of their own, was told to pass "a file from
    /// configs/", which their folder lacks. The fix names the config of that name shipped beside the executable, else the
    /// shipped folder; without either, the repository's configs/.
    /// </summary>
    [Fact]
    public void A_missing_config_file_names_the_config_of_that_name_shipped_with_disttrain()
    {
        var executable = Directory.CreateTempSubdirectory("disttrain-shipped-").FullName;
        try
        {
            Assert.Equal("Pass --config with a file from configs/.", TrainingOptionsLoader.ShippedConfigHint("configs/sklearn-digits.json", executable));
            var shipped = Directory.CreateDirectory(Path.Combine(executable, "configs")).FullName;
            Assert.Equal($"Pass --config with an existing file, such as one of the configs shipped with disttrain in {shipped}.",
                TrainingOptionsLoader.ShippedConfigHint("configs/sklearn-digits.json", executable));
            File.WriteAllText(Path.Combine(shipped, "sklearn-digits.json"), "{}");
            Assert.Equal($"Pass --config with an existing file; the sklearn-digits.json shipped with disttrain is {Path.Combine(shipped, "sklearn-digits.json")}.",
                TrainingOptionsLoader.ShippedConfigHint("configs/sklearn-digits.json", executable));
            // Through Load, beside the suite's own copy of disttrain (its build output carries configs/).
            var missing = Path.Combine(executable, "elsewhere", "fashion-mnist-mlp.json");
            var error = Assert.Throws<ConfigurationException>(() => TrainingOptionsLoader.Load(missing));
            Assert.Contains($"config file '{missing}' not found (looked at {missing}). Pass --config with an existing file; the fashion-mnist-mlp.json " +
                $"shipped with disttrain is {Path.Combine(AppContext.BaseDirectory, "configs", "fashion-mnist-mlp.json")}.", error.Message);
        }
        finally
        {
            Directory.Delete(executable, recursive: true);
        }
    }

    [Fact]
    public void A_list_element_of_the_wrong_type_names_the_type_it_takes()
    {
        Assert.Equal(["Data:Classes:0 = '1.5' (from environment variable DISTTRAIN_Data__Classes__0) is not valid: expected a whole number."],
            Problems(Mlp, new() { ["DISTTRAIN_Data__Classes__0"] = "1.5" }));
        Assert.Equal(["Model:Layers:0:Units = 'abc' (from environment variable DISTTRAIN_Model__Layers__0__Units) is not valid: expected a whole number."],
            Problems(Mlp, new() { ["DISTTRAIN_Model__Layers__0__Units"] = "abc" }));
        Assert.Equal(["Model:Layers:0:Rate = 'half' (in test.json) is not valid: expected a number."],
            Problems("""{ "Model": { "Layers": [{ "Type": "Dropout", "Rate": "half" }, { "Type": "Dense", "Units": 10 }] } }"""));
        Assert.Equal(["Model:Layers:0:Bias = 'yes' (in test.json) is not valid: expected true or false."],
            Problems("""{ "Model": { "Layers": [{ "Type": "Dense", "Units": 10, "Bias": "yes" }] } }"""));
        Assert.Equal(typeof(int), TrainingOptionsLoader.KeyType("Model:Layers:3:Units"));
        Assert.Equal(typeof(int), TrainingOptionsLoader.KeyType("data:classes:0"));
        Assert.Null(TrainingOptionsLoader.KeyType("Model:Layers:x:Units"));
    }

    /// <summary>
    /// A class name in Data:Classes says what the list takes: only "expected a whole number" was said, where the docs
    /// promise the names' places. The data is not read while the config is checked, so the rule is given, not the names.
    /// </summary>
    [Fact]
    public void A_class_name_in_Data_Classes_says_that_it_takes_the_names_places()
    {
        const string takes = " Data:Classes lists class indices, not names: for classes that are names (CSV labels that are not whole numbers, image sub-folders), " +
            "write a name's place among the data's class names sorted in ordinal order (capitals first), counting from 0. " +
            "An index the data does not have is refused with its class names and their places.";
        Assert.Equal(["Data:Classes:0 = 'virginica' (from environment variable DISTTRAIN_Data__Classes__0) is not valid: expected a whole number." + takes],
            Problems(Mlp, new() { ["DISTTRAIN_Data__Classes__0"] = "virginica" }));
        Assert.Equal(["Data:Classes:1 = 'Bag' (in test.json) is not valid: expected a whole number." + takes],
            Problems("""{ "Data": { "Classes": [0, "Bag"] }, "Model": { "Layers": [{ "Type": "Dense", "Units": 2 }] } }"""));
    }

    /// <summary>
    /// A value of the wrong type is the only problem reported: its config's lists bind once. The whole bind failed part-way
    /// and the binding without the bad key went into the same options, so every list read before it held its entries twice
    /// (Model:InputShape [1, 28, 28, 1, 28, 28], ClassNames repeated) and was reported as wrong.
    /// </summary>
    [Fact]
    public void A_value_of_the_wrong_type_leaves_the_lists_as_written()
    {
        const string cnn = """
            { "Data": { "ClassNames": ["a", "b", "c"] },
              "Model": { "InputShape": [1, 28, 28], "Layers": [{ "Type": "Conv2D", "Channels": 4, "KernelSize": 3 }, { "Type": "Flatten" }, { "Type": "Dense", "Units": 3 }] },
              "Training": { "Epochs": "two" } }
            """;
        Assert.Equal(["Training:Epochs = 'two' (in test.json) is not valid: expected a whole number."], Problems(cnn));
        Assert.Equal(["Training:Epochs = 'x' (from environment variable DISTTRAIN_Training__Epochs) is not valid: expected a whole number."],
            Problems(cnn.Replace("\"two\"", "2", StringComparison.Ordinal), new() { ["DISTTRAIN_Training__Epochs"] = "x" }));
    }

    /// <summary>
    /// A list key's problem names where its entries came from: <c>DISTTRAIN_Model__InputShape__0=2</c> on a file's
    /// [1, 28, 28] was reported as "(in config.json)", and with Data:Format ImageFolder the shape's problem named
    /// Data:Format's origin.
    /// </summary>
    [Fact]
    public void A_list_set_by_environment_variables_or_options_names_them_not_the_file()
    {
        const string folders = """
            { "Data": { "Format": "ImageFolder", "ImageFolder": { "TrainDirectory": "train", "TestDirectory": "test" } },
              "Model": { "InputShape": [1, 28, 28], "Layers": [{ "Type": "Flatten" }, { "Type": "Dense", "Units": 10 }] } }
            """;
        const string needs = "is not what Data:Format = ImageFolder needs: [channels, height, width] with 1 (grayscale) or 3 (RGB) channels, such as [1, 28, 28].";
        Assert.Equal([$"Model:InputShape = [2, 28, 28] (from environment variable DISTTRAIN_Model__InputShape__0; the other entries in test.json) {needs}"],
            Problems(folders, new() { ["DISTTRAIN_Model__InputShape__0"] = "2" }));
        Assert.Equal([$"Model:InputShape = [2, 28, 28] (from a command-line option; the other entries in test.json) {needs}"],
            Problems(folders, overrides: new() { ["Model:InputShape:0"] = "2" }));
        Assert.Equal([$"Model:InputShape = [2, 28, 28] (in test.json) {needs}"], Problems(folders.Replace("[1, 28, 28]", "[2, 28, 28]")));
        // Every entry from variables, the file having none: the variables alone, also where the problem says "must".
        Assert.Contains("Model:InputShape = [0, 28, 28] (from environment variables DISTTRAIN_Model__InputShape__0, DISTTRAIN_Model__InputShape__1, " +
            "DISTTRAIN_Model__InputShape__2) must be [channels, height, width] with positive values, such as [1, 28, 28], or left out for a flat input.",
            Problems(Mlp, new() { ["DISTTRAIN_Model__InputShape__0"] = "0", ["DISTTRAIN_Model__InputShape__1"] = "28", ["DISTTRAIN_Model__InputShape__2"] = "28" }));
        // Without a shape, the problem is Data:Format's, from where Data:Format came.
        Assert.Equal(["Data:Format = ImageFolder (from environment variable DISTTRAIN_Data__Format) needs Model:InputShape, [channels, height, width] " +
            "with 1 (grayscale) or 3 (RGB) channels, such as [1, 28, 28]: set it."],
            Problems("""{ "Data": { "ImageFolder": { "TrainDirectory": "train", "TestDirectory": "test" } }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }""",
                new() { ["DISTTRAIN_Data__Format"] = "ImageFolder" }));
        // A list entry's own problem names its variable.
        Assert.Equal(["Cluster:SeedNodes:1 = 'localhost:4053' (from environment variable DISTTRAIN_Cluster__SeedNodes__1) is not a DistTrain node address: expected akka.tcp://disttrain@HOST:PORT."],
            Problems("""{ "Cluster": { "SeedNodes": ["akka.tcp://disttrain@ps:4053"] }, """ + Mlp[1..], new() { ["DISTTRAIN_Cluster__SeedNodes__1"] = "localhost:4053" }));
    }

    /// <summary>
    /// A seed whose port is empty, missing, out of 1 to 65535 or not a number, or whose host is empty, is refused with the
    /// key, the value and the fix: an empty port (<c>akka.tcp://disttrain@127.0.0.1:</c>, what a script writes from an unset
    /// port variable) or none passed the check, and Akka.Remote dialled port -1 until the join timed out (exit code 1, no
    /// word of the seed); a port out of range, not a number, or no host stopped the node with an internal error.
    /// </summary>
    [Theory]
    [InlineData("akka.tcp://disttrain@127.0.0.1:", "is not a DistTrain node address: its port after '127.0.0.1:' is empty; expected akka.tcp://disttrain@HOST:PORT, PORT being the parameter server's Cluster:Port (4053 by default).")]
    [InlineData("akka.tcp://disttrain@127.0.0.1", "is not a DistTrain node address: it has no port; expected akka.tcp://disttrain@HOST:PORT, PORT being the parameter server's Cluster:Port (4053 by default).")]
    [InlineData("akka.ssl.tcp://disttrain@ps", "is not a DistTrain node address: it has no port; expected akka.tcp://disttrain@HOST:PORT, PORT being the parameter server's Cluster:Port (4053 by default).")]
    [InlineData("akka.tcp://disttrain@127.0.0.1:70000", "is not a DistTrain node address: its port 70000 is out of range (allowed 1 to 65535); expected akka.tcp://disttrain@HOST:PORT, PORT being the parameter server's Cluster:Port (4053 by default).")]
    [InlineData("akka.tcp://disttrain@127.0.0.1:0", "is not a DistTrain node address: its port 0 is out of range (allowed 1 to 65535); expected akka.tcp://disttrain@HOST:PORT, PORT being the parameter server's Cluster:Port (4053 by default).")]
    [InlineData("akka.tcp://disttrain@127.0.0.1:99999999999", "is not a DistTrain node address: its port 99999999999 is out of range (allowed 1 to 65535); expected akka.tcp://disttrain@HOST:PORT, PORT being the parameter server's Cluster:Port (4053 by default).")]
    [InlineData("akka.tcp://disttrain@127.0.0.1:-1", "is not a DistTrain node address: its port '-1' is not a whole number; expected akka.tcp://disttrain@HOST:PORT, PORT being the parameter server's Cluster:Port (4053 by default).")]
    [InlineData("akka.tcp://disttrain@ps:abc", "is not a DistTrain node address: its port 'abc' is not a whole number; expected akka.tcp://disttrain@HOST:PORT, PORT being the parameter server's Cluster:Port (4053 by default).")]
    [InlineData("akka.tcp://disttrain@:4053", "is not a DistTrain node address: it has no host before the port; expected akka.tcp://disttrain@HOST:PORT, HOST being the parameter server's address (its Cluster:PublicHostname).")]
    [InlineData("akka.tcp://disttrain@[::1", "is not a DistTrain node address: its IPv6 host has no closing ']'; expected akka.tcp://disttrain@HOST:PORT, such as akka.tcp://disttrain@[::1]:4053.")]
    [InlineData("akka.tcp://disttrain@::1:4053", "is not a DistTrain node address: its IPv6 host '::1' needs brackets; expected akka.tcp://disttrain@HOST:PORT, such as akka.tcp://disttrain@[::1]:4053.")]
    [InlineData("akka.tcp://disttrain@[::1]", "is not a DistTrain node address: it has no port; expected akka.tcp://disttrain@HOST:PORT, PORT being the parameter server's Cluster:Port (4053 by default).")]
    public void A_seed_without_a_valid_port_or_host_is_refused_naming_the_setting_the_value_and_the_fix(string seed, string problem)
    {
        Assert.Equal($"Cluster:SeedNodes:0 = '{seed}' (from environment variable DISTTRAIN_Cluster__SeedNodes__0) {problem}",
            Assert.Single(Problems(Mlp, new() { ["DISTTRAIN_Cluster__SeedNodes__0"] = seed })));
        Assert.Equal($"Cluster:SeedNodes:1 = '{seed}' (in test.json) {problem}",
            Assert.Single(Problems($$"""{ "Cluster": { "SeedNodes": ["akka.tcp://disttrain@ps:4053", "{{seed}}"] }, """ + Mlp[1..])));
    }

    /// <summary>The seed addresses a node dials: a name, an IPv4 or bracketed IPv6 host, ports 1 and 65535, TLS's scheme, a trailing '/'.</summary>
    [Theory]
    [InlineData("akka.tcp://disttrain@ps:4053")]
    [InlineData("akka.ssl.tcp://disttrain@10.0.0.2:1")]
    [InlineData("akka.tcp://disttrain@[::1]:65535")]
    [InlineData("akka.tcp://disttrain@ps.example:4053/")]
    public void A_seed_with_a_host_and_a_port_from_1_to_65535_is_accepted(string seed)
    {
        var options = TrainingOptionsLoader.Load("test.json", Encoding.UTF8.GetBytes(Mlp), null, checkDataDirectory: false,
            new Dictionary<string, string?> { ["DISTTRAIN_Cluster__SeedNodes__0"] = seed });
        Assert.Equal([seed], options.Cluster.SeedNodes);
    }

    [Fact]
    public void An_object_where_a_list_belongs_names_the_list()
    {
        Assert.Equal(["Model:Layers is an object (it has the key Model:Layers:Type), but it takes a list (JSON array) of layer objects, " +
            "such as [{\"Type\": \"Dense\", \"Units\": 10}]: put the entries in [ ], one { } object per entry."],
            Problems("""{ "Model": { "Layers": { "Type": "Dense" } } }"""));
        Assert.Equal(["Model:InputShape is an object (it has the key Model:InputShape:c), but it takes a list (JSON array) of whole numbers, such as [1, 28, 28]: put the entries in [ ]."],
            Problems("""{ "Model": { "InputShape": { "c": 1 }, "Layers": [{ "Type": "Dense", "Units": 10 }] } }"""));
    }

    [Fact]
    public void A_whole_number_too_large_for_its_key_is_out_of_range_with_the_range()
    {
        Assert.Equal(["Training:Seed = '99999999999' (from environment variable DISTTRAIN_Training__Seed) is out of range: expected a whole number from -2147483648 to 2147483647."],
            Problems(Mlp, new() { ["DISTTRAIN_Training__Seed"] = "99999999999" }));
        // Written with an exponent, as JSON allows: a whole number still, out of range for the key, with the key's own range.
        Assert.Equal(["Training:Epochs = '1e10' (in test.json) is out of range: allowed [1, 10000]."],
            Problems("""{ "Training": { "Epochs": 1e10 }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }"""));
        Assert.Equal(["Model:Layers:2:Units = '-3E10' (in test.json) is out of range: allowed [1, 1048576]."],
            Problems("""{ "Model": { "Layers": [{ "Type": "Dense", "Units": 32 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": -3E10 }] } }"""));
        Assert.Equal(["Training:Seed = '1e10' (in test.json) is out of range: expected a whole number from -2147483648 to 2147483647."],
            Problems("""{ "Training": { "Seed": 1e10 }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }"""));
        // A key whose range reaches Int32's maximum: its own range, not Int32's, which named negative values it refuses.
        Assert.Equal(["Data:TrainLimit = '99999999999' (from environment variable DISTTRAIN_Data__TrainLimit) is out of range: allowed [0, 2147483647]."],
            Problems(Mlp, new() { ["DISTTRAIN_Data__TrainLimit"] = "99999999999" }));
        // In range but with an exponent: the binder does not read it, so say how to write it.
        Assert.Equal(["Training:Epochs = '1e3' (in test.json) is not valid: expected a whole number written in digits, such as 1000."],
            Problems("""{ "Training": { "Epochs": 1e3 }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }"""));
    }

    /// <summary>
    /// The binder reads whole numbers with .NET's Int32Converter, which also takes hexadecimal: "#10", "0x10" and "&amp;H10" were
    /// all read as 16, silently, where 1e3 and 2.0 are refused. A whole-number key now takes digits only, in a file, a
    /// variable or a list entry; a value that is no number at all keeps its own message.
    /// </summary>
    [Fact]
    public void A_whole_number_written_in_hexadecimal_is_refused_not_read_as_another_number()
    {
        const string why = "is not valid: expected a whole number written in digits (it is not read as hexadecimal, nor with a '#' or '&H' in front).";
        Assert.Equal([$"Training:Seed = '#ff' (in test.json) {why}"],
            Problems("""{ "Training": { "Seed": "#ff" }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }"""));
        Assert.Equal([$"Training:Epochs = '0x10' (from environment variable DISTTRAIN_Training__Epochs) {why}"],
            Problems(Mlp, new() { ["DISTTRAIN_Training__Epochs"] = "0x10" }));
        Assert.Equal([$"Training:Workers = '&H2' (from environment variable DISTTRAIN_Training__Workers) {why}"],
            Problems(Mlp, new() { ["DISTTRAIN_Training__Workers"] = "&H2" }));
        Assert.Equal([$"Model:Layers:0:Units = '0X20' (in test.json) {why}"],
            Problems("""{ "Model": { "Layers": [{ "Type": "Dense", "Units": "0X20" }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 }] } }"""));
        // Digits, with a sign or spaces around them, are read as before; a word keeps the binder's message.
        var loaded = TrainingOptionsLoader.Load("test.json", Encoding.UTF8.GetBytes(Mlp), null, checkDataDirectory: false,
            new Dictionary<string, string?> { ["DISTTRAIN_Training__Epochs"] = " 12 ", ["DISTTRAIN_Training__Seed"] = "-7" });
        Assert.Equal((12, -7), (loaded.Training.Epochs, loaded.Training.Seed));
        Assert.Equal(["Training:Epochs = 'two' (from environment variable DISTTRAIN_Training__Epochs) is not valid: expected a whole number."],
            Problems(Mlp, new() { ["DISTTRAIN_Training__Epochs"] = "two" }));
    }

    /// <summary>An empty object or list where one value belongs was bound as zero or empty and reported as "Training:Epochs = 0
    /// is out of range" or "= ''"; it is named for what it is. An empty list where a list belongs is left to its own checks.</summary>
    [Fact]
    public void An_empty_object_or_list_where_one_value_belongs_is_named_as_such()
    {
        Assert.Equal(["Training:Epochs is an empty object ({}) in test.json, but it takes one value: give it a value, or leave the key out to keep its default."],
            Problems("""{ "Training": { "Epochs": {} }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }"""));
        Assert.Equal(["Optimizer:LearningRate is an empty list ([]) in test.json, but it takes one value: give it a value, or leave the key out to keep its default."],
            Problems("""{ "Optimizer": { "LearningRate": [] }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }"""));
        Assert.DoesNotContain(Problems("""{ "Training": { "Epochs": 0 }, "Model": { "InputShape": [], "Layers": [{ "Type": "Dense", "Units": 10 }] } }"""),
            p => p.Contains("empty list", StringComparison.Ordinal));
    }

    [Fact]
    public void A_stride_of_0_is_refused_naming_the_default_to_get_by_leaving_it_out()
    {
        static string Cnn(string convStride, string poolStride) => $$"""
            { "Model": { "InputShape": [1, 28, 28], "Layers": [
                { "Type": "Conv2D", "Channels": 4, "KernelSize": 3{{convStride}} }, { "Type": "MaxPool2D", "KernelSize": 2{{poolStride}} },
                { "Type": "Flatten" }, { "Type": "Dense", "Units": 10 }] } }
            """;
        Assert.Equal([
            "Model:Layers:0:Stride = 0 (in test.json) is out of range: strides are at least 1, as in PyTorch. Leave out Stride for the Conv2D default, 1, or set 1 to 1024.",
            "Model:Layers:1:Stride = 0 (from environment variable DISTTRAIN_Model__Layers__1__Stride) is out of range: strides are at least 1, as in PyTorch. " +
                "Leave out Stride for the MaxPool2D default, the kernel size (2), or set 1 to 1024.",
        ], Problems(Cnn(", \"Stride\": 0", ""), new() { ["DISTTRAIN_Model__Layers__1__Stride"] = "0" }));
        Assert.Equal(["Model:Layers:0:Stride = -1 (in test.json) is out of range: allowed [1, 1024]."], Problems(Cnn(", \"Stride\": -1", "")));
        // Left out, the defaults: 1 for the convolution, the kernel size for the pooling.
        var options = TrainingOptionsLoader.Load("test.json", Encoding.UTF8.GetBytes(Cnn("", "")), null, checkDataDirectory: false, new Dictionary<string, string?>());
        Assert.Equal(4 * 13 * 13, ((DistTrain.Core.Layers.Dense)DistTrain.Core.Models.ModelFactory.Build(options.Model).Layers[^1]).InFeatures);
    }

    [Fact]
    public void Every_category_of_problem_is_reported_together_and_a_bad_key_once()
    {
        // An unknown key, a value of the wrong type, a null and a value out of range: all four, each once.
        Assert.Equal([
            "Training:Epochs is null in test.json: leave the key out to keep its default, or give it a value (null is not a setting).",
            "Optimizer:LearnRate is not a known key. Did you mean 'Optimizer:LearningRate'?",
            "Model:Layers:0:Units = 'many' (in test.json) is not valid: expected a whole number.",
            "Training:Workers = 0 (from a command-line option) is out of range: allowed [1, 256].",
        ], Problems("""
            { "Training": { "Epochs": null }, "Optimizer": { "LearnRate": 0.1 },
              "Model": { "Layers": [{ "Type": "Dense", "Units": "many" }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 0 }] } }
            """, overrides: new() { ["Training:Workers"] = "0" }));
        // The README's example: an unknown key and -w 0 report both.
        Assert.Equal(["Bogus is not a known key. Known keys here: Data, Model, Optimizer, Training, Output, Compute, Monitoring, Metrics, Cluster, Checkpoint. (from environment variable DISTTRAIN_Bogus)",
            "Training:Workers = 0 (from a command-line option) is out of range: allowed [1, 256]."],
            Problems(Mlp, new() { ["DISTTRAIN_Bogus"] = "1" }, new() { ["Training:Workers"] = "0" }));
    }

    [Fact]
    public void A_misspelt_key_beside_the_key_it_stands_for_leaves_that_keys_own_value_checked_and_other_frameworks_initializers_are_named()
    {
        // Before, "lr" hid LearningRate's -0.1, which showed only on the next run, once lr was removed.
        Assert.Equal([
            "Optimizer:lr is not a known key. Did you mean 'Optimizer:LearningRate'?",
            "Optimizer:LearningRate = -0.1 (in test.json) is out of range: allowed (0, 10].",
        ], Problems(Mlp.Replace("\"Model\"", "\"Optimizer\": { \"lr\": 0.1, \"LearningRate\": -0.1 }, \"Model\"", StringComparison.Ordinal)));
        // Alone, the misspelt key still keeps its default's checks quiet.
        Assert.Equal(["Optimizer:LearnRate is not a known key. Did you mean 'Optimizer:LearningRate'?"], Problems(Mlp.Replace("\"Model\"", "\"Optimizer\": { \"LearnRate\": -0.1 }, \"Model\"", StringComparison.Ordinal)));
        const string kinds = "expected one of Uniform, Normal, Zeros, Constant, HeNormal, HeUniform, XavierNormal, XavierUniform.";
        Assert.Equal([$"Model:Initializer:Kind = 'Kaiming' (in test.json) is not valid: {kinds} Kaiming initialization is HeNormal here (HeUniform for its uniform form)."],
            Problems(Mlp.Replace("\"Layers\"", "\"Initializer\": { \"Kind\": \"Kaiming\" }, \"Layers\"", StringComparison.Ordinal)));
        Assert.Equal([$"Model:Initializer:Kind = 'glorot_uniform' (in test.json) is not valid: {kinds} Keras's glorot_uniform is XavierUniform here."],
            Problems(Mlp.Replace("\"Layers\"", "\"Initializer\": { \"Kind\": \"glorot_uniform\" }, \"Layers\"", StringComparison.Ordinal)));
    }

    [Fact]
    public void A_number_for_an_enum_key_is_refused_with_the_names_not_taken_as_a_position()
    {
        const string number = "Write the name: a number is not read as a position in that list.";
        // The binder took a number as the enum's position: 3 trained as LocalSgd, 2 as BoundedStaleness, 1 as Float16.
        Assert.Equal([$"Training:Mode = '3' (in test.json) is not valid: expected one of Sync, Async, BoundedStaleness, LocalSgd. {number}"],
            Problems("""{ "Training": { "Mode": 3 }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }"""));
        Assert.Equal([
            $"Cluster:Compression = '1' (from environment variable DISTTRAIN_Cluster__Compression) is not valid: expected one of None, Float16, BFloat16, TopK. {number}",
            $"Training:Mode = '2' (from environment variable DISTTRAIN_Training__Mode) is not valid: expected one of Sync, Async, BoundedStaleness, LocalSgd. {number}",
        ], Problems(Mlp, new() { ["DISTTRAIN_Training__Mode"] = "2", ["DISTTRAIN_Cluster__Compression"] = "1" }));
        // Out of the enum's range, signed, or written as JSON may write a number: the same problem, not "unknown".
        foreach (var value in new[] { "-1", "7", "+1", "1.0", "1e0" })
            Assert.Equal([$"Training:Mode = '{value}' (from a command-line option) is not valid: expected one of Sync, Async, BoundedStaleness, LocalSgd. {number}"],
                Problems(Mlp, overrides: new() { ["Training:Mode"] = value }));
        // Names joined by commas were or-ed together: "Async, BoundedStaleness" (1 | 2) trained as LocalSgd.
        Assert.Equal(["Training:Mode = 'Async, BoundedStaleness' (from environment variable DISTTRAIN_Training__Mode) is not valid: " +
            "expected one of Sync, Async, BoundedStaleness, LocalSgd. Write one name: a list of names is not read."],
            Problems(Mlp, new() { ["DISTTRAIN_Training__Mode"] = "Async, BoundedStaleness" }));
        Assert.Equal(["Training:Mode = 'Asynch' (in test.json) is not valid: expected one of Sync, Async, BoundedStaleness, LocalSgd. Did you mean 'Async'?"],
            Problems("""{ "Training": { "Mode": "Asynch" }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }"""));
        // A name is still read ignoring case and surrounding white space.
        var named = TrainingOptionsLoader.Load("test.json", Encoding.UTF8.GetBytes(Mlp), null, checkDataDirectory: false,
            new Dictionary<string, string?> { ["DISTTRAIN_Training__Mode"] = " localsgd ", ["DISTTRAIN_Optimizer__Kind"] = "ADAM" });
        Assert.Equal((TrainingMode.LocalSgd, DistTrain.Core.Optimization.OptimizerKind.Adam), (named.Training.Mode, named.Optimizer.Kind));

        // Every enum key of the options, found by their types, refuses its first position, 0, naming its own names.
        var keys = EnumKeys(typeof(TrainingOptions), "").ToList();
        Assert.Equal(10, keys.Count);
        foreach (var (key, type) in keys)
            Assert.Equal([$"{key} = '0' (from a command-line option) is not valid: expected one of {string.Join(", ", Enum.GetNames(type))}. {number}"],
                Problems(Mlp, overrides: new() { [key] = "0" }));
    }

    [Fact]
    public void A_file_value_of_the_wrong_type_is_refused_although_an_override_replaces_it()
    {
        // The override was bound and the file's value never read: "Epochs": "two" trained under -e 1, and failed without it.
        const string file = """{ "Training": { "Epochs": "two", "Mode": 3 }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }""";
        const string fix = "Correct it in test.json too: the file's value applies wherever the file is used without the override.";
        Assert.Equal([
            "Training:Epochs = 'two' (in test.json; the value this run uses comes from a command-line option) is not valid: expected a whole number. " + fix,
            "Training:Mode = '3' (in test.json; the value this run uses comes from environment variable DISTTRAIN_Training__Mode) is not valid: " +
                "expected one of Sync, Async, BoundedStaleness, LocalSgd. Write the name: a number is not read as a position in that list. " + fix,
        ], Problems(file, new() { ["DISTTRAIN_Training__Mode"] = "Sync" }, new() { ["Training:Epochs"] = "1" }));
        // Only the type is checked: a value of the right type out of range is the override's to replace (only it is bound).
        var options = TrainingOptionsLoader.Load("test.json", Encoding.UTF8.GetBytes("""{ "Training": { "Epochs": 0 }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }"""),
            new Dictionary<string, string?> { ["Training:Epochs"] = "2" }, checkDataDirectory: false, new Dictionary<string, string?>());
        Assert.Equal(2, options.Training.Epochs);
    }

    /// <summary>
    /// A variable of the wrong type that a command-line option overrides is refused too: DISTTRAIN_Training__Epochs=abc trained
    /// under -e 1 without a word, and fails every later run in that shell without the option.
    /// </summary>
    [Fact]
    public void A_variable_of_the_wrong_type_is_refused_although_a_command_line_option_replaces_it()
    {
        const string file = """{ "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }""";
        const string fix = "Correct or unset DISTTRAIN_Training__Epochs too: it applies to every run in this shell without the option.";
        Assert.Equal(["Training:Epochs = 'abc' (from environment variable DISTTRAIN_Training__Epochs; the value this run uses comes from a command-line option) is not valid: expected a whole number. " + fix],
            Problems(file, new() { ["DISTTRAIN_Training__Epochs"] = "abc" }, new() { ["Training:Epochs"] = "1" }));
        // A value of the right type, even out of range, is the option's to replace.
        Assert.Equal(1, TrainingOptionsLoader.Load("test.json", Encoding.UTF8.GetBytes(file), new Dictionary<string, string?> { ["Training:Epochs"] = "1" },
            checkDataDirectory: false, new Dictionary<string, string?> { ["DISTTRAIN_Training__Epochs"] = "0" }).Training.Epochs);
    }

    /// <summary>
    /// A key given twice in one file, matched ignoring case ("LearningRate" and "learningrate"), was reported as "the file is
    /// not valid JSON: A duplicate key 'Optimizer:learningrate' was found", although the JSON is valid.
    /// </summary>
    [Fact]
    public void A_key_given_twice_ignoring_case_is_named_with_both_spellings_and_lines_not_as_invalid_JSON()
    {
        const string fix = ": keys are matched ignoring case, so these are one setting, and the file is refused (it is valid JSON, but a setting takes one value). Keep one of them.";
        Assert.Equal(["Optimizer:LearningRate is given twice in test.json, as \"LearningRate\" on line 3 and \"learningrate\" on line 4" + fix],
            Repeats("{\n  \"Optimizer\": {\n    \"LearningRate\": 0.05,\n    \"learningrate\": 0.2\n  }\n}"));
        // Two objects of one section merge: the key is named by its whole path, as each spells it.
        Assert.Equal(["Optimizer:LearningRate is given twice in test.json, as \"Optimizer:LearningRate\" on line 2 and \"optimizer:learningrate\" on line 3" + fix],
            Repeats("{\n\"Optimizer\": { \"LearningRate\": 0.05 },\n\"optimizer\": { \"learningrate\": 0.2 } }"));
        // A list given twice is one setting, not one per entry; three spellings of a layer's key are all named.
        Assert.Equal(["Model:InputShape is given twice in test.json, as \"InputShape\" on line 1 and \"inputshape\" on line 2" + fix],
            Repeats("{ \"Model\": { \"InputShape\": [1, 28, 28],\n \"inputshape\": [1, 28, 28] } }"));
        Assert.Equal(["Model:Layers:0:Units is given 3 times in test.json, as \"Units\" on line 1, \"units\" on line 2 and \"UNITS\" on line 3" + fix],
            Repeats("{ \"Model\": { \"Layers\": [{ \"Type\": \"Dense\", \"Units\": 10,\n \"units\": 4,\n \"UNITS\": 5 }] } }"));
        // The same spelling twice.
        Assert.Equal(["Training:Epochs is given twice in test.json, as \"Epochs\" on line 1 and \"Epochs\" on line 2: a setting takes one value, and the file is refused. Keep one of them."],
            Repeats("{ \"Training\": { \"Epochs\": 2,\n \"Epochs\": 3 } }"));
        // A section given twice on one line: the two givings are told apart by their columns.
        Assert.Equal(["Training:Epochs is given twice in test.json, as \"Epochs\" on line 1, column 14 and \"Epochs\" on line 1, column 38: a setting takes one value, and the file is refused. Keep one of them."],
            Repeats("{\"Training\":{\"Epochs\":1},\"Training\":{\"Epochs\":2}}"));
        // The file's other problems come in the same go, read with the first of each repeated setting (before, the repeat
        // alone was reported, and the rest only once it was fixed). The first value stands: 0.05 is in range, -1 would not be.
        Assert.Equal([
            "Optimizer:LearningRate is given twice in test.json, as \"LearningRate\" on line 1 and \"learningrate\" on line 2" + fix,
            "Model:Layers:0:Units is given twice in test.json, as \"Units\" on line 3, column 43 and \"units\" on line 3, column 56" + fix,
            "Training:Epochs = 0 (in test.json) is out of range: allowed [1, 10000].",
        ], Problems("{ \"Optimizer\": { \"LearningRate\": 0.05,\n \"learningrate\": -1 }, \"Training\": { \"Epochs\": 0 },\n" +
            " \"Model\": { \"Layers\": [{ \"Type\": \"Dense\", \"Units\": 10, \"units\": 3 }] } }"));
        // A value and an object under one key beside a repeat: the file read without the repeats is no JSON the provider refuses
        // (a line of the rewritten text would be named otherwise).
        Assert.DoesNotContain(Problems("{ \"Training\": { \"Epochs\": 2,\n \"Epochs\": 3, \"Seed\": 1, \"seed\": { \"x\": 1 } } }"),
            p => p.Contains("not valid JSON", StringComparison.Ordinal));
        // A file that is not JSON is still reported as such, and two sections that merge without a shared key are fine.
        Assert.StartsWith("the file is not valid JSON at line 1", Assert.Single(Problems("""{ "Training": { "Epochs": 2, "Epochs": 3 }""")));
        var merged = TrainingOptionsLoader.Load("test.json", Encoding.UTF8.GetBytes("""{ "Optimizer": { "LearningRate": 0.2 }, "optimizer": { "Momentum": 0.5 }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }"""),
            null, checkDataDirectory: false, new Dictionary<string, string?>());
        Assert.Equal((0.2, 0.5), (merged.Optimizer.LearningRate, merged.Optimizer.Momentum));
        // After a byte-order mark, on the lines the file has (before, the older "not valid JSON: A duplicate key" message).
        var withMark = Encoding.UTF8.Preamble.ToArray().Concat(Encoding.UTF8.GetBytes("{ \"Training\": { \"Epochs\": 2,\n \"epochs\": 3 } }")).ToArray();
        var marked = Assert.Throws<ConfigurationException>(() => TrainingOptionsLoader.Load("test.json", withMark, null, checkDataDirectory: false, new Dictionary<string, string?>()));
        Assert.Contains("Training:Epochs is given twice in test.json, as \"Epochs\" on line 1 and \"epochs\" on line 2" + fix, marked.Message);
        // A name that is not UTF-8 (found by the fuzz test: a crash in this check) is the provider's error, not an exception.
        byte[] notUtf8 = [0x7B, 0x22, 0x22, 0x3A, 0x7B, 0x22, 0xA6, 0x22, 0x3A];
        Assert.Throws<ConfigurationException>(() => TrainingOptionsLoader.Load("test.json", notUtf8, null, checkDataDirectory: false, new Dictionary<string, string?>()));
    }

    /// <summary>
    /// A layer without a setting its type needs was reported as that setting "= 0 is out of range", and one without a Type as
    /// "Type = '' is unknown", as if 0 or '' had been written.
    /// </summary>
    [Fact]
    public void A_layer_setting_its_type_needs_or_a_Type_left_out_is_named_as_missing()
    {
        Assert.Equal(["Model:Layers:0:Units is missing (in test.json): a Dense layer needs Units, its output features, 1 to 1048576 (the last Dense layer's Units are the number of classes). " +
            "Add it to layer 0, such as {\"Type\": \"Dense\", \"Units\": 10}."],
            Problems("""{ "Model": { "Layers": [{ "Type": "Dense" }] } }"""));
        Assert.Equal([
            "Model:Layers:0:Type is missing (in test.json): every layer needs a Type, one of Dense, ReLU, LeakyReLU, Sigmoid, Tanh, Conv2D, MaxPool2D, AvgPool2D, Flatten, BatchNorm, LayerNorm, Dropout. " +
                "Add \"Type\" to layer 0, such as \"Type\": \"Dense\".",
            "Model:Layers has no Dense layer: the last Dense layer's Units must equal the number of classes.",
        ], Problems("""{ "Model": { "Layers": [{ "Units": 10 }] } }"""));
        Assert.Equal([
            "Model:Layers:0:Channels is missing (in test.json): a Conv2D layer needs Channels, its output channels, 1 to 65536. Add it to layer 0, such as {\"Type\": \"Conv2D\", \"Channels\": 32, \"KernelSize\": 3}.",
            "Model:Layers:0:KernelSize is missing (in test.json): a Conv2D layer needs KernelSize, its kernel's height and width, 1 to 1024. Add it to layer 0, such as {\"Type\": \"Conv2D\", \"Channels\": 32, \"KernelSize\": 3}.",
            "Model:Layers:1:KernelSize is missing (in test.json): an AvgPool2D layer needs KernelSize, its window's height and width, 1 to 1024. Add it to layer 1, such as {\"Type\": \"AvgPool2D\", \"KernelSize\": 2}.",
        ], Problems("""{ "Model": { "InputShape": [1, 28, 28], "Layers": [{ "Type": "Conv2D" }, { "Type": "AvgPool2D" }, { "Type": "Flatten" }, { "Type": "Dense", "Units": 10 }] } }"""));
        // Written as 0 or '', the value is out of range or unknown, as before.
        Assert.Equal(["Model:Layers:0:Units = 0 (in test.json) is out of range: allowed [1, 1048576]."],
            Problems("""{ "Model": { "Layers": [{ "Type": "Dense", "Units": 0 }] } }"""));
        Assert.StartsWith("Model:Layers:0:Type = '' (in test.json) is unknown: allowed Dense,", Problems("""{ "Model": { "Layers": [{ "Type": "", "Units": 10 }] } }""")[0]);
        // An entry a variable adds names the variable.
        Assert.Equal(["Model:Layers:3:Units is missing (layer 3 comes from environment variable DISTTRAIN_Model__Layers__3__Type): a Dense layer needs Units, its output features, 1 to 1048576 " +
            "(the last Dense layer's Units are the number of classes). Add it to layer 3, such as {\"Type\": \"Dense\", \"Units\": 10}."],
            Problems(Mlp, new() { ["DISTTRAIN_Model__Layers__3__Type"] = "Dense" }));
    }

    /// <summary>
    /// PyTorch's and Keras' names of a key, and a key in the wrong section, get the key they stand for: the edit distance took
    /// <c>lr</c> for L1 and <c>Decay</c> for Beta1, and listed every key for <c>WeightDecay</c>.
    /// </summary>
    [Fact]
    public void PyTorch_and_Keras_names_and_keys_of_another_section_suggest_the_key_they_stand_for()
    {
        const string l2 = "Did you mean 'Optimizer:L2'? It is PyTorch's weight_decay: added to the gradient for Sgd, Adam and RMSProp, and the decoupled decay of Kind AdamW.";
        Assert.Equal([
            "Optimizer:Decay is not a known key. Did you mean 'Optimizer:L2'? It is weight decay (PyTorch's weight_decay; the decoupled decay of Kind AdamW). " +
                "For a learning rate that decays over the run (Keras' decay), set Optimizer:Schedule:Kind instead.",
            "Optimizer:lr is not a known key. Did you mean 'Optimizer:LearningRate'?",
            "Optimizer:WeightDecay is not a known key. " + l2,
            "Optimizer:weight_decay is not a known key. " + l2,
        ], Problems("""{ "Optimizer": { "lr": 0.1, "Decay": 0.1, "WeightDecay": 0.01, "weight_decay": 0.01 }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }"""));
        Assert.Equal([
            "Optimizer:betas is not a known key. PyTorch's betas are two keys here, Optimizer:Beta1 and Optimizer:Beta2: write them as \"Beta1\": 0.9, \"Beta2\": 0.999.",
            "Optimizer:eps is not a known key. Did you mean 'Optimizer:Epsilon'?",
            "Optimizer:learning_rate is not a known key. Did you mean 'Optimizer:LearningRate'?",
            "Optimizer:mu is not a known key. Did you mean 'Optimizer:Momentum'?",
            "Optimizer:rho is not a known key. Did you mean 'Optimizer:Alpha'? Keras' rho of RMSprop is Alpha here.",
        ], Problems("""{ "Optimizer": { "betas": [0.9, 0.99], "eps": 1e-6, "learning_rate": 0.1, "mu": 0.9, "rho": 0.9 }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }"""));
        // A key of another section, or its alias there, names the section it belongs in.
        Assert.Equal([
            "batch_size is not a known key. Did you mean 'Training:BatchSizePerWorker'? It belongs in the Training section. It is each worker's minibatch: a step uses up to Training:Workers times it.",
            "Optimizer:Epochs is not a known key. Did you mean 'Training:Epochs'? It belongs in the Training section.",
            "Training:lr is not a known key. Did you mean 'Optimizer:LearningRate'? It belongs in the Optimizer section.",
        ], Problems("""{ "batch_size": 32, "Optimizer": { "Epochs": 3 }, "Training": { "lr": 0.1 }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }"""));
        // Layer keys: PyTorch's out_features, and an activation given as a key.
        Assert.Equal([
            "Model:Layers:0:activation is not a known key. An activation is a layer of its own here: add one after this layer, such as {\"Type\": \"ReLU\"}, and remove the key.",
            "Model:Layers:0:out_features is not a known key. Did you mean 'Model:Layers:0:Units'?",
        ], Problems("""{ "Model": { "Layers": [{ "Type": "Dense", "Units": 10, "activation": "relu", "out_features": 10 }] } }"""));
        // A misspelling still gets the closest key, and a key of several sections (Port: Metrics, Cluster) no section.
        Assert.Equal(["Optimizer:Momentun is not a known key. Did you mean 'Optimizer:Momentum'?", "Training:Port is not a known key. Did you mean 'Training:Mode'?"],
            Problems("""{ "Optimizer": { "Momentun": 0.9 }, "Training": { "Port": 1 }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }"""));
    }

    /// <summary>The keys of the enum-typed settings of <paramref name="type"/> and its sections (lists left out), with their types.</summary>
    private static IEnumerable<(string Key, Type Type)> EnumKeys(Type type, string prefix)
    {
        foreach (var property in type.GetProperties(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance))
        {
            if (property.SetMethod is not { IsPublic: true }) continue;
            var key = prefix.Length == 0 ? property.Name : $"{prefix}:{property.Name}";
            if (property.PropertyType.IsEnum) yield return (key, property.PropertyType);
            else if (property.PropertyType.IsClass && property.PropertyType.Namespace?.StartsWith("DistTrain", StringComparison.Ordinal) == true)
                foreach (var inner in EnumKeys(property.PropertyType, key)) yield return inner;
        }
    }
    [Fact]
    public void Two_environment_variables_that_differ_only_in_case_are_refused_naming_both_not_a_crash()
    {
        // Before: "error: An item with the same key has already been added. Key: TRAINING:EPOCHS" from the configuration source.
        var environment = new Dictionary<string, string?> { ["DISTTRAIN_Training__Epochs"] = "1", ["DISTTRAIN_TRAINING__EPOCHS"] = "2" };
        var error = Assert.Throws<ConfigurationException>(() => TrainingOptionsLoader.Load(null, null, checkDataDirectory: false, environment));
        Assert.Contains("DISTTRAIN_TRAINING__EPOCHS and DISTTRAIN_Training__Epochs both set ", error.Message);
        Assert.Contains(": configuration keys are matched ignoring case, so these are one setting given twice. Unset one of them.", error.Message);
    }

    /// <summary>
    /// A variable that names no key (DISTTRAIN_ alone, as DISTTRAIN_$KEY with KEY unset gives, or one with an empty part) was
    /// reported as " is not a known key", with an empty name; it is refused naming the variable and how to spell a key.
    /// </summary>
    [Fact]
    public void A_variable_that_names_no_key_is_refused_naming_the_variable()
    {
        const string fix = "Name the key after DISTTRAIN_, with __ between its parts (DISTTRAIN_Training__Epochs=5), or unset ";
        Assert.Equal([$"environment variable DISTTRAIN_ names no setting: nothing follows DISTTRAIN_. {fix}DISTTRAIN_."],
            Problems(Mlp, new() { ["DISTTRAIN_"] = "1" }));
        Assert.Equal([$"environment variable DISTTRAIN_Training__ names no setting: its key 'Training:' has an empty part (__ at its start or end, or twice in a row). {fix}DISTTRAIN_Training__.",
                      $"environment variable DISTTRAIN___ names no setting: its key ':' has an empty part (__ at its start or end, or twice in a row). {fix}DISTTRAIN___."],
            Problems(Mlp, new() { ["DISTTRAIN_Training__"] = "1", ["DISTTRAIN___"] = "2" }));
        // Reported with the other problems, not instead of them.
        Assert.Equal([$"environment variable DISTTRAIN_ names no setting: nothing follows DISTTRAIN_. {fix}DISTTRAIN_.",
                      "Training:Epochs = 0 (from environment variable DISTTRAIN_Training__Epochs) is out of range: allowed [1, 10000]."],
            Problems(Mlp, new() { ["DISTTRAIN_"] = "1", ["DISTTRAIN_Training__Epochs"] = "0" }));
    }

    /// <summary>
    /// An entry variable on a scalar key (DISTTRAIN_Training__Epochs__0, which makes Training:Epochs a list) was not named when
    /// an option set the key too (--epochs 3): the option replaces the key's own value, not the entry the variable adds.
    /// </summary>
    [Fact]
    public void An_entry_variable_on_a_scalar_key_is_named_when_an_option_sets_the_key()
    {
        const string problem = "Training:Epochs is a list or object, but it takes a single value (a number). (from environment variable DISTTRAIN_Training__Epochs__0)";
        Assert.Equal([problem], Problems(Mlp, new() { ["DISTTRAIN_Training__Epochs__0"] = "5" }));
        Assert.Equal([problem], Problems(Mlp, new() { ["DISTTRAIN_Training__Epochs__0"] = "5" }, new() { ["Training:Epochs"] = "3" }));
        // A variable of the key itself, which the option replaces, is not blamed.
        Assert.Equal([problem], Problems(Mlp, new() { ["DISTTRAIN_Training__Epochs__0"] = "5", ["DISTTRAIN_Training__Epochs"] = "4" }, new() { ["Training:Epochs"] = "3" }));
    }
}
