using System.Text;
using DistTrain.Core.Configuration;

namespace DistTrain.Tests;

/// <summary>
/// A list index past the end of a list (DISTTRAIN_Model__Layers__7__Type on the 5-layer MLP) is refused by its own key and
/// source: the configuration binder would compact it into index 5, which the validator then reported as
/// "Model:Layers:5:Units = 0 (in the file)", an index the user never set, from a source that never set it.
/// </summary>
public class ConfigurationListGapTests
{
    private const string Mlp = """
        {
          "Model": { "InputSize": 784, "Layers": [ { "Type": "Dense", "Units": 256 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 128 },
                                                   { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 } ] },
          "Training": { "Workers": 4, "Epochs": 1 }
        }
        """;

    private static ConfigurationException Refused(Dictionary<string, string?> environment, Dictionary<string, string?>? overrides = null) =>
        Assert.Throws<ConfigurationException>(() => TrainingOptionsLoader.Load("configs/mlp.json", Encoding.UTF8.GetBytes(Mlp), overrides, checkDataDirectory: false, environment));

    [Fact]
    public void An_environment_variable_past_the_end_of_a_list_is_named_with_the_fix()
    {
        var error = Refused(new() { ["DISTTRAIN_Model__Layers__7__Type"] = "Dense" });
        Assert.Equal($"Invalid configuration (configs/mlp.json):{Environment.NewLine}  - Model:Layers:7 (from environment variable DISTTRAIN_Model__Layers__7__Type) " +
            "leaves a gap in Model:Layers: list indices must be consecutive from 0, and Model:Layers has 5 entries before it (0 to 4); the list in " +
            "configs/mlp.json has 5 entries. Set Model:Layers:5 instead, or give the entries in between too.", error.Message);
        Assert.DoesNotContain("Model:Layers:5:Units", error.Message);
    }

    [Fact]
    public void Every_variable_of_the_stray_entry_is_named_and_a_command_line_key_too()
    {
        var error = Refused(new() { ["DISTTRAIN_Model__Layers__9__Units"] = "10", ["DISTTRAIN_Model__Layers__9__Type"] = "Dense" });
        Assert.Contains("Model:Layers:9 (from environment variables DISTTRAIN_Model__Layers__9__Type, DISTTRAIN_Model__Layers__9__Units) leaves a gap", error.Message);

        var option = Refused([], new() { ["Model:InputShape:2"] = "28" });
        Assert.Contains("Model:InputShape:2 (from a command-line option) leaves a gap in Model:InputShape: list indices must be consecutive from 0, and " +
            "Model:InputShape has 0 entries before it (none); the list in configs/mlp.json has 0 entries. Set Model:InputShape:0 instead", option.Message);
    }

    [Fact]
    public void An_entry_appended_without_a_gap_is_reported_under_its_index_as_added_by_its_variable()
    {
        var error = Refused(new() { ["DISTTRAIN_Model__Layers__5__Type"] = "Dense" });
        Assert.Contains("Model:Layers:5:Units is missing (layer 5 comes from environment variable DISTTRAIN_Model__Layers__5__Type): a Dense layer needs Units",
            error.Message);
    }

    [Fact]
    public void Overriding_entries_inside_the_list_or_appending_a_whole_one_still_loads()
    {
        var options = TrainingOptionsLoader.Load("configs/mlp.json", Encoding.UTF8.GetBytes(Mlp), null, checkDataDirectory: false, new Dictionary<string, string?>
        {
            ["DISTTRAIN_Model__Layers__0__Units"] = "64", ["DISTTRAIN_Model__Layers__5__Type"] = "ReLU", ["DISTTRAIN_Model__Layers__6__Type"] = "Dense",
            ["DISTTRAIN_Model__Layers__6__Units"] = "10",
        });
        Assert.Equal(7, options.Model.Layers.Count);
        Assert.Equal(64, options.Model.Layers[0].Units);
        Assert.Equal("Dense", options.Model.Layers[6].Type);
    }
}
