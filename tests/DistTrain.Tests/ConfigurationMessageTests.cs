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

    [Fact]
    public void A_list_element_of_the_wrong_type_names_the_type_it_takes()
    {
        Assert.Equal(["Data:Classes:0 = 'a' (from environment variable DISTTRAIN_Data__Classes__0) is not valid: expected a whole number."],
            Problems(Mlp, new() { ["DISTTRAIN_Data__Classes__0"] = "a" }));
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
        // In range but with an exponent: the binder does not read it, so say how to write it.
        Assert.Equal(["Training:Epochs = '1e3' (in test.json) is not valid: expected a whole number written in digits, such as 1000."],
            Problems("""{ "Training": { "Epochs": 1e3 }, "Model": { "Layers": [{ "Type": "Dense", "Units": 10 }] } }"""));
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
}
