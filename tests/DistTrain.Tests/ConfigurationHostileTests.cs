using System.Text;
using DistTrain.Core.Configuration;

namespace DistTrain.Tests;

/// <summary>Malformed, deep, huge or wrongly typed config files give the documented one-line-per-problem error (exit 2), never a crash.</summary>
public class ConfigurationHostileTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-config-hostile-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private static IReadOnlyList<string> Problems(string json, Dictionary<string, string?>? environment = null)
    {
        var error = Assert.Throws<ConfigurationException>(() =>
            TrainingOptionsLoader.Load("hostile.json", Encoding.UTF8.GetBytes(json), null, checkDataDirectory: false, environment ?? new Dictionary<string, string?>()));
        Assert.All(error.Problems, p => Assert.DoesNotContain('\n', p));
        Assert.Equal(error.Problems.Count + 1, error.Message.Split(Environment.NewLine).Length);
        return error.Problems;
    }

    [Fact]
    public void A_list_where_a_value_belongs_is_a_problem_line_not_a_crash()
    {
        // Found by the fuzzer (smallest inputs): each threw InvalidOperationException out of the binder, an unhandled crash of the CLI.
        Assert.Contains("Data:ValidationFraction is a list or object, but it takes a single value (a number).", Problems("""{"Data":{"ValidationFraction":[2]}}"""));
        Assert.Contains("Model:InputShape = 'e' is a single value, but it takes a list: in JSON such as [1, 28, 28]; as environment variables one per entry, " +
            "DISTTRAIN_Model__InputShape__0 for the first, __1 for the second.", Problems("""{"Model":{"InputShape":"e"}}"""));
        Assert.Contains("Cluster:SeedNodes = 'akka.tcp://disttrain@127.0.0.1:1' is a single value, but it takes a list: in JSON such as " +
            "[\"akka.tcp://disttrain@HOST:PORT\"]; as environment variables one per entry, DISTTRAIN_Cluster__SeedNodes__0 for the first, __1 for the second.",
            Problems("""{"Cluster":{"SeedNodes":"akka.tcp://disttrain@127.0.0.1:1"}}"""));
        Assert.StartsWith("Model:Layers:0:Bias = '' (in hostile.json) is not valid", Assert.Single(Problems("""{"Model":{"Layers":[{"Bias":""}]}}""")));
        Assert.Contains("Model:Initializer = '1' is a single value, but it takes an object of keys.", Problems("""{"Model":{"Initializer":1}}"""));
    }

    /// <summary>
    /// A repeated setting in a file with bytes after its JSON value (found by the fuzzer, smallest input): the check for repeats
    /// read only the first value, found the repeat, and the rewrite without it parsed the whole file and threw out of the loader.
    /// </summary>
    [Fact]
    public void A_repeated_setting_followed_by_bytes_after_the_json_is_one_problem_line_not_a_crash()
    {
        Assert.StartsWith("the file is not valid JSON", Assert.Single(Problems("""{"Data":{"Seed":1,"Seed":2}}}""")));
    }

    [Fact]
    public void Empty_deep_or_malformed_JSON_is_one_problem_line()
    {
        Assert.StartsWith("the file is not valid JSON", Assert.Single(Problems("")));
        Assert.StartsWith("the file is not valid JSON", Assert.Single(Problems(new string('[', 100_000))));
        Assert.StartsWith("the file is not valid JSON", Assert.Single(Problems(string.Concat(Enumerable.Repeat("{\"a\":", 10_000)))));
        Assert.StartsWith("the file is not valid JSON", Assert.Single(Problems("""{"Training": {"Epochs": 3,}""")));
        // A key given twice is valid JSON: it is named as given twice, not as JSON that is not valid (the file has no model too).
        Assert.Equal("Training:Epochs is given twice in hostile.json, as \"Epochs\" on line 1, column 15 and \"Epochs\" on line 1, column 28: a setting takes one value, and the file is refused. Keep one of them.",
            Problems("""{"Training": {"Epochs": 3, "Epochs": 4}}""")[0]);
        Assert.StartsWith("Model:Layers is empty", Problems("""{"Training": {"Epochs": 3, "Epochs": 4}}""")[1]);
        // The position as an editor shows it, from 1 (System.Text.Json counts from 0: "LineNumber: 1 | BytePositionInLine: 15").
        Assert.Equal("the file is not valid JSON at line 2, byte 16 of that line: ',' is an invalid start of a property name. Expected a '\"'.",
            Assert.Single(Problems("{\n  \"Training\": {,, } }")));
    }

    [Fact]
    public void A_JSON_boolean_where_a_number_belongs_is_echoed_as_written()
    {
        // .NET's JSON configuration stores true as "True", which the message used to echo.
        Assert.StartsWith("Training:Workers = 'true' (in hostile.json) is not valid: expected a whole number.", Problems("""{"Training":{"Workers":true}}""")[0]);
        // A variable's value is shown as it is.
        Assert.Contains("Training:Workers = 'True' (from environment variable DISTTRAIN_Training__Workers) is not valid: expected a whole number.",
            Problems("""{"Model":{"Layers":[{"Type":"Dense","Units":10}]}}""", new() { ["DISTTRAIN_Training__Workers"] = "True" }));
    }

    [Fact]
    public void A_null_value_is_refused_by_its_key_instead_of_binding_as_zero()
    {
        // Bound, a null would be 0 or empty (Epochs 0, LearningRate 0, TestFraction 0), not the default, and reported as "= 0".
        Assert.Equal(["Training:Epochs is null in hostile.json: leave the key out to keep its default, or give it a value (null is not a setting).",
            "Model:Layers:1 is null in hostile.json: leave the key out to keep its default, or give it a value (null is not a setting)."],
            Problems("""{"Training": {"Epochs": null /* a comment */}, "Model": {"Layers": [{"Type": "Dense", "Units": 10}, null]}, "Data": {}}"""));
        // With the file's other problem (it lists no layers); the optimizer's own checks are skipped, so no "= 0" line.
        Assert.Equal(["Optimizer is null in hostile.json: leave the key out to keep its default, or give it a value (null is not a setting).",
            "Model:Layers is empty: list at least one Dense layer, e.g. [{\"Type\": \"Dense\", \"Units\": 10}]."],
            Problems("""{"Optimizer": null}"""));
    }

    [Fact]
    public void Huge_numbers_are_refused_as_out_of_range_or_not_finite()
    {
        Assert.Contains("Training:Epochs = '1e400' (in hostile.json) is out of range: allowed [1, 10000].", Problems("""{"Training":{"Epochs":1e400}}"""));
        Assert.Contains("Model:Initializer:Constant = Infinity (in hostile.json) is not a finite number: weights would start as infinities or NaN.",
            Problems("""{"Model":{"Initializer":{"Constant":1e400}}}"""));
        // Finite as a double, infinite as the float32 weights (before, the run started with weights of +Inf and "diverged").
        Assert.Contains("Model:Initializer:Constant = -1E+39 (in hostile.json) is beyond float32's range (±3.4E+38): the weights would start as infinities. " +
            "Give a value of that range; weights of a few units or less are what networks train from.", Problems("""{"Model":{"Initializer":{"Constant":-1e39}}}"""));
        Assert.DoesNotContain(Problems("""{"Model":{"Initializer":{"Constant":3e38}}}"""), p => p.Contains("Initializer:Constant", StringComparison.Ordinal));
        Assert.Contains("Optimizer:LearningRate = -Infinity (in hostile.json) is out of range: allowed (0, 10].", Problems("""{"Optimizer":{"LearningRate":-1e400}}"""));
    }

    [Fact]
    public void Values_with_line_breaks_or_of_any_length_stay_on_one_short_line()
    {
        var problem = Problems("{\"Model\":{\"Loss\":\"Soft\\nmax " + new string('x', 5000) + "\"}}")[0];
        Assert.StartsWith("Model:Loss = 'Soft max xxx", problem);
        Assert.True(problem.Length < 1100, $"{problem.Length} characters");
    }

    [Fact]
    public void A_file_over_one_mebibyte_is_refused_and_train_exits_with_code_2()
    {
        var big = Path.Combine(_directory, "big.json");
        File.WriteAllText(big, "{\"Training\": {}, \"x\": \"" + new string('x', 1 << 20) + "\"}");
        Assert.Contains("more than the 1,048,576 a config may have", Assert.Throws<ConfigurationException>(() => TrainingOptionsLoader.Load(big)).Message);
        var crash = Path.Combine(_directory, "list.json");
        File.WriteAllText(crash, """{"Data":{"ValidationFraction":[2]}}""");
        var (exit, _, error) = CliProcess.Run(["train", "--config", crash]);
        Assert.Equal(2, exit);
        Assert.Contains("Data:ValidationFraction is a list or object", error);
    }
}
