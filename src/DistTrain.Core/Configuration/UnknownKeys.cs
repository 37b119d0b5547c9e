using System.Collections;
using System.Reflection;
using Microsoft.Extensions.Configuration;

namespace DistTrain.Core.Configuration;

/// <summary>
/// Finds configuration keys that bind to nothing, with their full path and the closest known key, so
/// a typo such as <c>Optimizer:LearnRate</c> is reported as such instead of being ignored; and values of the wrong
/// shape: a list or object where one value belongs (<c>"Epochs": [3]</c>), or one value where a list or object belongs
/// (<c>"InputShape": "28"</c>), which the binder would otherwise throw on.
/// </summary>
internal static class UnknownKeys
{
    /// <summary>Every key of <paramref name="configuration"/> that binds to nothing in <paramref name="type"/>, or has the wrong
    /// shape: its full path (<c>Optimizer:LearnRate</c>) and the problem line that names it.</summary>
    public static IEnumerable<(string Path, string Problem)> Find(IConfiguration configuration, Type type, string prefix = "")
    {
        var properties = type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite)
            .ToDictionary(p => p.Name, StringComparer.OrdinalIgnoreCase);
        foreach (var child in configuration.GetChildren())
        {
            var path = prefix.Length == 0 ? child.Key : $"{prefix}:{child.Key}";
            if (!properties.TryGetValue(child.Key, out var property))
            {
                var suggestion = NameSuggestions.Closest(child.Key, properties.Keys);
                var hint = Alias(type, prefix, child.Key) is { } alias ? $" {alias}"
                    : suggestion is not null
                    ? $" Did you mean '{(prefix.Length == 0 ? suggestion : $"{prefix}:{suggestion}")}'?"
                    : $" Known keys here: {string.Join(", ", properties.Keys)}.";
                yield return (path, $"{path} is not a known key.{hint}");
                continue;
            }
            foreach (var problem in FindInValue(child, property.PropertyType, path))
                yield return problem;
        }
    }

    /// <summary>
    /// Other names of a section's keys, as PyTorch and Keras spell them, written in lower case without '_', '-' or '.'
    /// (<c>weight_decay</c> is <c>weightdecay</c>): the key each stands for, relative to the section (null for a name that stands
    /// for no one key, such as PyTorch's <c>betas</c>), and what to say about it (null for nothing more). Checked before the
    /// edit-distance suggestion, which would take <c>lr</c> for <c>L1</c>.
    /// </summary>
    private const string WeightDecayNote = "It is PyTorch's weight_decay: added to the gradient for Sgd, Adam and RMSProp, and the decoupled decay of Kind AdamW.";
    private const string BatchSizeNote = "It is each worker's minibatch: a step uses up to Training:Workers times it.";

    private static readonly Dictionary<Type, Dictionary<string, (string? Key, string? Note)>> Aliases = new()
    {
        [typeof(Optimization.OptimizerOptions)] = new()
        {
            ["lr"] = ("LearningRate", null),
            ["eta"] = ("LearningRate", null),
            ["weightdecay"] = ("L2", WeightDecayNote),
            ["wd"] = ("L2", WeightDecayNote),
            ["decay"] = ("L2", "It is weight decay (PyTorch's weight_decay; the decoupled decay of Kind AdamW). For a learning rate that decays over the run (Keras' decay), set Optimizer:Schedule:Kind instead."),
            ["mu"] = ("Momentum", null),
            ["usenesterov"] = ("Nesterov", null),
            ["betas"] = (null, "PyTorch's betas are two keys here, Optimizer:Beta1 and Optimizer:Beta2: write them as \"Beta1\": 0.9, \"Beta2\": 0.999."),
            ["eps"] = ("Epsilon", null),
            ["rho"] = ("Alpha", "Keras' rho of RMSprop is Alpha here."),
            ["clipnorm"] = ("GradientClipNorm", null),
            ["maxnorm"] = ("GradientClipNorm", null),
            ["maxgradnorm"] = ("GradientClipNorm", null),
            ["clipgradnorm"] = ("GradientClipNorm", null),
            ["type"] = ("Kind", null),
            ["name"] = ("Kind", null),
            ["optimizer"] = ("Kind", null),
            ["scheduler"] = ("Schedule", null),
            ["lrscheduler"] = ("Schedule", null),
        },
        [typeof(Optimization.LearningRateScheduleOptions)] = new()
        {
            ["type"] = ("Kind", null),
            ["name"] = ("Kind", null),
            ["stepsize"] = ("StepEpochs", null),
            ["etamin"] = ("MinLearningRate", null),
            ["minlr"] = ("MinLearningRate", null),
            ["warmup"] = ("WarmupSteps", null),
            ["startfactor"] = ("WarmupStartFactor", null),
        },
        [typeof(TrainingLoopOptions)] = new()
        {
            ["batchsize"] = ("BatchSizePerWorker", BatchSizeNote),
            ["batch"] = ("BatchSizePerWorker", BatchSizeNote),
            ["numepochs"] = ("Epochs", null),
            ["maxepochs"] = ("Epochs", null),
            ["numworkers"] = ("Workers", null),
            ["worldsize"] = ("Workers", null),
            ["patience"] = ("EarlyStopping:Patience", null),
            ["mindelta"] = ("EarlyStopping:MinDelta", null),
        },
        [typeof(Models.LayerOptions)] = new()
        {
            ["outfeatures"] = ("Units", null),
            ["outputdim"] = ("Units", null),
            ["filters"] = ("Channels", null),
            ["outchannels"] = ("Channels", null),
            ["kernel"] = ("KernelSize", null),
            ["p"] = ("Rate", null),
            ["eps"] = ("Epsilon", null),
            ["usebias"] = ("Bias", null),
            ["activation"] = (null, "An activation is a layer of its own here: add one after this layer, such as {\"Type\": \"ReLU\"}, and remove the key."),
        },
    };

    /// <summary>
    /// The suggestion for <paramref name="key"/>, unknown in the section of <paramref name="type"/> at <paramref name="prefix"/>,
    /// when it is another name of a known key: an alias of the section (<c>Optimizer:lr</c> is Optimizer:LearningRate), the
    /// section's key written with '_', '-' or '.' (<c>Optimizer:learning_rate</c>), or the key, or an alias, of exactly one other
    /// section (<c>Optimizer:Epochs</c> is Training:Epochs; <c>Training:lr</c> is Optimizer:LearningRate). Null otherwise.
    /// </summary>
    private static string? Alias(Type type, string prefix, string key)
    {
        var normalized = Normalize(key);
        string Full(string sectionPrefix, string relative) => sectionPrefix.Length == 0 ? relative : $"{sectionPrefix}:{relative}";
        if (Aliases.TryGetValue(type, out var own) && own.TryGetValue(normalized, out var alias))
            return alias.Key is null ? alias.Note : Hint(Full(prefix, alias.Key), alias.Note);
        if (Keys(type).FirstOrDefault(name => Normalize(name) == normalized) is { } written)
            return Hint(Full(prefix, written), null);
        // The key of another section: only sections (not list entries, such as a layer) and only one match.
        var elsewhere = Sections(typeof(TrainingOptions), "")
            .Where(section => section.Type != type)
            .SelectMany(section => Keys(section.Type).Where(name => Normalize(name) == normalized).Select(name => (Key: Full(section.Path, name), Note: (string?)null))
                .Concat(Aliases.TryGetValue(section.Type, out var theirs) && theirs.TryGetValue(normalized, out var other) && other.Key is not null
                    ? [(Key: Full(section.Path, other.Key), other.Note)] : []))
            .DistinctBy(found => found.Key)
            .ToList();
        if (elsewhere.Count != 1) return null;
        return $"Did you mean '{elsewhere[0].Key}'? It belongs in the {elsewhere[0].Key[..elsewhere[0].Key.LastIndexOf(':')]} section.{(elsewhere[0].Note is { } note ? $" {note}" : "")}";

        static string Hint(string full, string? note) => $"Did you mean '{full}'?{(note is null ? "" : $" {note}")}";
        static string Normalize(string name) => new(name.Where(c => c is not ('_' or '-' or '.')).Select(char.ToLowerInvariant).ToArray());
        static IEnumerable<string> Keys(Type section) => section.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite).Select(p => p.Name);
    }

    /// <summary>The sections (objects of keys, not lists) of <paramref name="type"/> and below, each with its path (<c>Optimizer:Schedule</c>).</summary>
    private static IEnumerable<(Type Type, string Path)> Sections(Type type, string path)
    {
        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite))
        {
            var inner = property.PropertyType;
            if (IsValue(inner) || (inner.IsGenericType && typeof(IEnumerable).IsAssignableFrom(inner))) continue;
            var innerPath = path.Length == 0 ? property.Name : $"{path}:{property.Name}";
            yield return (inner, innerPath);
            foreach (var deeper in Sections(inner, innerPath)) yield return deeper;
        }
    }

    /// <summary>A JSON list fit for the key at <paramref name="path"/>, whose entries are <paramref name="element"/>s.</summary>
    private static string ListExample(string path, Type element) =>
        path.Equals("Cluster:SeedNodes", StringComparison.OrdinalIgnoreCase) ? "[\"akka.tcp://disttrain@HOST:PORT\"]"
        : element == typeof(DistTrain.Core.Models.LayerOptions) ? "[{\"Type\": \"Dense\", \"Units\": 10}]"
        : element == typeof(string) ? "[\"a\", \"b\"]"
        : element.IsPrimitive && path.EndsWith("InputShape", StringComparison.OrdinalIgnoreCase) ? "[1, 28, 28]"
        : element.IsPrimitive ? "[0, 3, 7]"
        : "[{ ... }, { ... }]";

    /// <summary>True for a type set by one value (a number, a string, an enum), false for an object of keys.</summary>
    private static bool IsValue(Type type) => type == typeof(string) || type.IsPrimitive || type.IsEnum || type == typeof(decimal);

    private static IEnumerable<(string Path, string Problem)> FindInValue(IConfigurationSection section, Type type, string path)
    {
        if (IsValue(type))
            return section.GetChildren().Any()
                ? [(path, $"{path} is a list or object, but it takes a single value ({(type.IsEnum ? $"one of {string.Join(", ", Enum.GetNames(type))}" : type == typeof(string) ? "a string" : type == typeof(bool) ? "true or false" : "a number")}).")]
                : [];
        var element = type.IsGenericType && typeof(IEnumerable).IsAssignableFrom(type) ? type.GetGenericArguments()[0] : null;
        // An empty JSON list or object, or null, arrives as an empty value; anything else where a list or object belongs is a mistake.
        if (!string.IsNullOrEmpty(section.Value))
            return [(path, $"{path} = '{TrainingOptionsLoader.Shown(section.Value)}' is a single value, but it takes " +
                (element is null ? "an object of keys." : $"a list: in JSON such as {ListExample(path, element)}; as environment variables one per entry, " +
                    $"DISTTRAIN_{path.Replace(":", "__", StringComparison.Ordinal)}__0{(IsValue(element) ? "" : "__KEY")} for the first, __1 for the second."))];
        // An object where a list belongs ("Layers": {"Type": "Dense"}): its keys are not indices. Name the list, not its
        // first key (Model:Layers:Type), which would be blamed for being a single value.
        if (element is not null && section.GetChildren().FirstOrDefault(item => !int.TryParse(item.Key, System.Globalization.NumberStyles.None,
                System.Globalization.CultureInfo.InvariantCulture, out _)) is { } stray)
        {
            var objects = !(element == typeof(string) || element.IsPrimitive || element.IsEnum);
            var what = element == typeof(DistTrain.Core.Models.LayerOptions) ? "layer objects, such as [{\"Type\": \"Dense\", \"Units\": 10}]"
                : objects ? "objects"
                : element == typeof(string) ? "strings, such as [\"a\", \"b\"]"
                : "whole numbers, such as [1, 28, 28]";
            return [(path, $"{path} is an object (it has the key {path}:{stray.Key}), but it takes a list (JSON array) of {what}: " +
                $"put the entries in [ ]{(objects ? ", one { } object per entry" : "")}.")];
        }
        if (element is not null)
            return section.GetChildren().SelectMany(item => FindInValue(item, element, $"{path}:{item.Key}"));
        return Find(section, type, path);
    }
}
