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
                var hint = suggestion is not null
                    ? $" Did you mean '{(prefix.Length == 0 ? suggestion : $"{prefix}:{suggestion}")}'?"
                    : $" Known keys here: {string.Join(", ", properties.Keys)}.";
                yield return (path, $"{path} is not a known key.{hint}");
                continue;
            }
            foreach (var problem in FindInValue(child, property.PropertyType, path))
                yield return problem;
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
