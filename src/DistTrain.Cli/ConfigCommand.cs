using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using DistTrain.Core.Configuration;

namespace DistTrain.Cli;

/// <summary>
/// <c>disttrain config</c>: the configuration a command would run with, from the config file, the <c>DISTTRAIN_*</c>
/// environment variables and the options, checked by the loader <c>train</c> and <c>node</c> use (<see cref="TrainingOptionsLoader"/>; the
/// data, the model's fit and the node's ports, files and peers are checked as a command starts).
/// Without <c>--get</c> it prints every key as a config file (JSON) that loads back to the same settings; with
/// <c>--get Section:Key</c> (repeatable) it prints each value on a line of its own, for scripts (as <c>git config --get</c>
/// does). <c>deploy/local/cluster.sh</c> reads Cluster:ShardNodes, Cluster:ParameterServerShards and Metrics:Port this way.
/// </summary>
internal static class ConfigCommand
{
    /// <summary>
    /// The settings as JSON: enums by name, and only the properties a config can set (the derived ones, such as
    /// Checkpoint's <c>Enabled</c>, are left out, and so is Cluster:Secret, which is never printed).
    /// </summary>
    internal static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping, // for a terminal or a script, not a web page
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals, // a NaN a layer does not use binds, and is printed as "NaN"
        Converters = { new JsonStringEnumConverter() },
        TypeInfoResolver = new DefaultJsonTypeInfoResolver { Modifiers = { OnlySettable } },
    };

    /// <summary>What a node would refuse on this machine as it starts, found without touching anything: settings a parameter-server
    /// node cannot run (<see cref="TrainingOptionsValidator.ParameterServerNodeProblems"/>), a run folder that cannot be made in
    /// Output:Directory, or a job secret that is set but unusable; null when none.</summary>
    private static string? NodeProblem(TrainingOptions options)
    {
        if (TrainingOptionsValidator.ParameterServerNodeProblems(options) is [var notOnNodes, ..]) return notOnNodes;
        if (RunDirectory.FileInTheWayProblem(options.Output.Directory) is { } noRunFolder) return noRunFolder;
        if (string.IsNullOrEmpty(options.Cluster.Secret) && string.IsNullOrWhiteSpace(options.Cluster.SecretFile)) return null; // train needs none
        try
        {
            _ = DistTrain.Cluster.Security.JobIdentity.Load(options.Cluster);
            return null;
        }
        catch (ConfigurationException e)
        {
            return e.Message;
        }
    }

    public static Command Create()
    {
        var config = CliOptions.File("--config", "JSON config, e.g. configs/fashion-mnist-mlp.json.", CliOptions.ConfigTakes, required: true, "-c");
        var data = CliOptions.Text("--data", "DIR", CliOptions.DataHelp, CliOptions.DataTakes);
        var output = CliOptions.Text("--output", "DIR", "Override Output:Directory.", CliOptions.OutputTakes, "-o");
        var get = new Option<string[]>("--get")
        {
            Description = "Print only this key's value (Section:Key, e.g. Cluster:ShardNodes; a list's item as Cluster:SeedNodes:0), one line each; repeatable.",
            HelpName = "KEY",
        };
        var asNode = new Option<bool>("--check-node")
        {
            Description = "Also check, touching nothing, what a node checks on this machine as it starts: settings a parameter-server node cannot run " +
                "(Cluster:ShardNodes with a Training:Mode other than Sync), that a run folder can be made in Output:Directory, " +
                "and that a job secret that is set (Cluster:Secret, Cluster:SecretFile) is usable. deploy/local/cluster.sh passes it.",
        };
        var command = new Command("config", "Print the configuration a command would run with (config file, DISTTRAIN_ variables and options), checked; exit code 2 names its problems.")
        {
            config, data, output, get, asNode,
        };
        command.SetAction(parse =>
        {
            var overrides = new Dictionary<string, string?>();
            if (parse.GetValue(data) is { } d) overrides["Data:Directory"] = d;
            if (parse.GetValue(output) is { } o) overrides["Output:Directory"] = o;
            TrainingOptions options;
            try
            {
                options = TrainingOptionsLoader.Load(parse.GetValue(config)!.FullName, overrides, CliOptions.OptionOfKey);
            }
            catch (ConfigurationException e)
            {
                CliConsole.Fail("error", e.Message);
                return 2;
            }
            // --check-node: what a node checks on this machine as it starts, without touching anything, so that
            // deploy/local/cluster.sh hears of it before any node starts: settings a parameter-server node cannot run, a run folder
            // that cannot be made, and a job secret that is set but unusable (too short, a file that cannot be read). Without it, a config meant for other machines (whose
            // secret file is there, not here) prints as it is.
            if (parse.GetValue(asNode) && NodeProblem(options) is { } problem)
            {
                CliConsole.Fail("error", problem);
                return 2;
            }
            var keys = parse.GetValue(get) ?? [];
            if (keys.Length == 0)
            {
                Console.Out.WriteLine(JsonSerializer.Serialize(options, Json));
                return 0;
            }
            var tree = JsonSerializer.SerializeToNode(options, Json)!;
            var values = keys.Select(key => Value(tree, key)).ToList();
            // Every key that cannot be read, not only the first: a script fixes them in one go.
            var errors = values.Where(value => value.Error is not null).Select(value => value.Error!).ToList();
            if (errors.Count > 0)
            {
                foreach (var error in errors) CliConsole.Fail("error", error);
                return 2;
            }
            foreach (var value in values) Console.Out.WriteLine(value.Text);
            return 0;
        });
        return command;
    }

    /// <summary>One key's value as <c>--get</c> prints it, or why there is none.</summary>
    /// <param name="Text">The value: a string as it is (as JSON if it holds a line break), a number as JSON writes it
    /// (invariant, shortest round-trip form: <c>0.05</c>, <c>1E-05</c>), <c>true</c>/<c>false</c>, an enum by name,
    /// <c>null</c>, and a list or section as one line of JSON.</param>
    /// <param name="Error">The problem with the key, naming the keys there are.</param>
    internal sealed record KeyValue(string? Text, string? Error);

    /// <summary>
    /// The value of <paramref name="key"/> (<c>Section:Key</c>, any case, as configuration keys are; a list's item by its
    /// index, <c>Cluster:SeedNodes:0</c>) in the settings <paramref name="tree"/> (<see cref="Json"/>'s form).
    /// </summary>
    internal static KeyValue Value(JsonNode tree, string key)
    {
        if (string.Equals(key, "Cluster:Secret", StringComparison.OrdinalIgnoreCase))
            return new(null, "Cluster:Secret is never printed (it is the job's shared secret). Check that it is set with: test -n \"$DISTTRAIN_Cluster__Secret\".");
        if (key.Split(':').Any(part => part.Length == 0))
            return new(null, $"--get '{key}': a key is sections and a name joined by ':' with none of them empty, e.g. Cluster:ShardNodes.");
        var node = tree;
        var path = "";
        foreach (var part in key.Split(':'))
        {
            var here = path.Length == 0 ? "the configuration" : path;
            switch (node)
            {
                case JsonObject section:
                    var match = section.FirstOrDefault(entry => string.Equals(entry.Key, part, StringComparison.OrdinalIgnoreCase));
                    if (match.Key is null)
                        return new(null, $"--get {key}: {here} has no key '{part}'. Its keys: {string.Join(", ", section.Select(entry => entry.Key))}.");
                    node = match.Value;
                    path = path.Length == 0 ? match.Key : $"{path}:{match.Key}";
                    break;
                case JsonArray list:
                    if (!int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var index) || index >= list.Count)
                        return new(null, list.Count == 0
                            ? $"--get {key}: {here} is an empty list; ask for {here} itself."
                            : $"--get {key}: {here} is a list of {list.Count} item{(list.Count == 1 ? "" : "s")}; give an index from 0 to {list.Count - 1} after it, or ask for {here} itself.");
                    node = list[index];
                    path = $"{path}:{index}";
                    break;
                default:
                    return new(null, $"--get {key}: {here} is a value, not a section; ask for {here}.");
            }
        }
        return new(node switch
        {
            null => "null",
            // A string as it is, unless it holds a line break, which would end the line: then as JSON ("a\nb").
            JsonValue value when value.GetValueKind() == JsonValueKind.String && value.GetValue<string>().IndexOfAny(['\n', '\r']) < 0 => value.GetValue<string>(),
            JsonValue value => value.ToJsonString(),
            _ => node.ToJsonString(),
        }, null);
    }

    private static readonly DistTrain.Core.Models.LayerOptions LayerDefaults = new();

    private static void OnlySettable(JsonTypeInfo type)
    {
        if (type.Kind != JsonTypeInfoKind.Object) return;
        for (var i = type.Properties.Count - 1; i >= 0; i--)
        {
            if (type.Properties[i].Set is null) type.Properties.RemoveAt(i);
            // A layer's key at its default is left out: it binds to the default again, where some defaults, written out,
            // would be refused (a Conv2D's Stride 0 means "not given", and a given 0 is out of range) or warned about (a
            // key the layer's type does not use).
            else if (type.Type == typeof(DistTrain.Core.Models.LayerOptions) && type.Properties[i].Get is { } get)
            {
                var byDefault = get(LayerDefaults);
                type.Properties[i].ShouldSerialize = (_, value) => !Equals(value, byDefault);
            }
        }
    }
}
