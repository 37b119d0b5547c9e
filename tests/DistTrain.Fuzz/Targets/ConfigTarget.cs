using System.Collections;
using System.Globalization;
using System.Reflection;
using System.Text;
using CsCheck;
using DistTrain.Core.Configuration;

namespace DistTrain.Fuzz.Targets;

/// <summary>
/// Config files through <see cref="TrainingOptionsLoader"/> (Microsoft.Extensions.Configuration's JSON provider, binding
/// and validation): the committed configs and their mutations, and JSON built from the real keys with values of every
/// JSON type: huge, tiny, negative and non-finite numbers, strings with line breaks, deep nesting, duplicate and unknown keys.
/// A refusal must be the documented one-line-per-problem error.
/// </summary>
public static class ConfigTarget
{
    private const string FileName = "fuzz.json";

    /// <summary>Longest problem line accepted: a line names a key, a value and what is allowed, not a whole file.</summary>
    private const int MaxProblemLength = 2_000;

    private static readonly IReadOnlyDictionary<string, string?> NoEnvironment = new Dictionary<string, string?>();

    private static readonly string[] Values =
    [
        "0", "1", "-1", "0.5", "1e400", "-1e400", "1e-400", "99999999999999999999", "2147483648", "-2147483649", "1.7976931348623157e308",
        "\"NaN\"", "\"Infinity\"", "\"-Infinity\"", "\"1e400\"", "true", "false", "null", "\"\"", "\"Dense\"", "\"ReLU\"", "\"Sgd\"", "\"Cosine\"",
        "\"line one\\nline two\"", "\"tab\\there\"", "\"\\u0000\"", "\"Ωmega\"", "[]", "{}", "[1, 2, 3]", "[1, 28, 28]", "{\"Type\": \"Dense\", \"Units\": 10}",
        "\"/nonexistent/folder\"", "\"akka.tcp://disttrain@h:1\"",
    ];

    private static readonly string[] Keys = KeyPaths(typeof(TrainingOptions)).ToArray();

    /// <summary>Every key path of the options, <c>Optimizer:Schedule:Kind</c>, with layers as <c>Model:Layers:0:Units</c>.</summary>
    private static IEnumerable<string> KeyPaths(Type type, string prefix = "")
    {
        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite))
        {
            var path = prefix.Length == 0 ? property.Name : $"{prefix}:{property.Name}";
            var t = property.PropertyType;
            if (t == typeof(string) || t.IsPrimitive || t.IsEnum) yield return path;
            else if (t.IsGenericType && typeof(IEnumerable).IsAssignableFrom(t))
            {
                var element = t.GetGenericArguments()[0];
                if (element == typeof(string) || element.IsPrimitive) yield return path;
                else foreach (var inner in KeyPaths(element, $"{path}:0")) yield return inner;
            }
            else foreach (var inner in KeyPaths(t, path)) yield return inner;
        }
    }

    /// <summary>A JSON object setting the given key paths (nested objects; index 0 of a list becomes a one-element array).</summary>
    private static string Json(IEnumerable<(string Key, string Value)> settings, bool duplicate)
    {
        var root = new SortedDictionary<string, object>(StringComparer.Ordinal);
        foreach (var (key, value) in settings)
        {
            var node = root;
            var parts = key.Split(':');
            for (var i = 0; i < parts.Length - 1; i++)
            {
                if (!node.TryGetValue(parts[i], out var child) || child is not SortedDictionary<string, object> next)
                    node[parts[i]] = next = new SortedDictionary<string, object>(StringComparer.Ordinal);
                node = next;
            }
            node[parts[^1]] = value;
        }
        var text = new StringBuilder();
        Write(text, root, duplicate);
        return text.ToString();
    }

    private static void Write(StringBuilder text, SortedDictionary<string, object> node, bool duplicate)
    {
        var isList = node.Count > 0 && node.Keys.All(k => k == "0");
        text.Append(isList ? '[' : '{');
        var first = true;
        foreach (var (key, value) in node)
        {
            if (!first) text.Append(',');
            first = false;
            if (!isList) text.Append('"').Append(key).Append("\":");
            if (value is SortedDictionary<string, object> child) Write(text, child, duplicate);
            else text.Append((string)value);
            if (duplicate && !isList) text.Append(",\"").Append(key).Append("\":").Append(value as string ?? "1");
        }
        text.Append(isList ? ']' : '}');
    }

    private static readonly Gen<string> Value = Gen.Frequency(
        (8, Gen.OneOf(Values)),
        (1, Gen.Int[1, 3000].Select(depth => new string('[', depth) + "1" + new string(']', depth))),
        (1, Gen.Int[1, 3000].Select(depth => string.Concat(Enumerable.Repeat("{\"a\":", depth)) + "1" + new string('}', depth))),
        (1, Gen.Double.Select(d => d.ToString("R", CultureInfo.InvariantCulture))),
        (1, Gen.String[Gen.Char.AlphaNumeric, 0, 3000].Select(s => $"\"{s}\"")));

    private static readonly Gen<(string, string)> Setting = Gen.Select(
        Gen.Frequency((9, Gen.OneOf(Keys)), (1, Gen.String[Gen.Char.AlphaNumeric, 1, 12].Select(s => $"Model:{s}"))), Value, (k, v) => (k, v));

    private static readonly Gen<byte[]> Structured = Gen.Select(Setting.Array[0, 12], Gen.Int[0, 9],
        (settings, duplicate) => Encoding.UTF8.GetBytes(Json(settings, duplicate == 0)));

    private static readonly byte[][] Committed = Directory.GetFiles(Path.Combine(AppContext.BaseDirectory, "configs"), "*.json")
        .Select(File.ReadAllBytes).ToArray();

    /// <summary>The first number option (a <c>double</c> anywhere in the options) that is infinite or NaN, or null.</summary>
    private static string? NonFinite(object options, string path)
    {
        foreach (var property in options.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.GetIndexParameters().Length == 0))
        {
            var value = property.GetValue(options);
            var key = path.Length == 0 ? property.Name : $"{path}:{property.Name}";
            if (value is double d && !double.IsFinite(d)) return key;
            if (value is IEnumerable list and not string)
            {
                var i = 0;
                foreach (var item in list)
                    if (item is not null && !item.GetType().IsPrimitive && NonFinite(item, $"{key}:{i++}") is { } inner) return inner;
            }
            else if (value is not null && property.PropertyType.IsClass && property.PropertyType != typeof(string) && NonFinite(value, key) is { } nested)
                return nested;
        }
        return null;
    }

    /// <summary>The target.</summary>
    public static FuzzTarget Create() => new(
        "config",
        Gen.Frequency((3, ByteMutations.Of(Gen.OneOf(Committed))), (3, Structured), (1, Gen.OneOf(Committed)), (1, Gen.Byte.Array[0, 64])),
        json =>
        {
            var options = TrainingOptionsLoader.Load(FileName, json, overrides: null, checkDataDirectory: false, NoEnvironment);
            if (NonFinite(options, "") is { } key)
                throw new FuzzFinding("accepted", $"a config whose {key} is not a finite number");
        },
        e => e is ConfigurationException,
        json => (64 << 20) + 512L * json.Length,
        (_, e) =>
        {
            var problems = ((ConfigurationException)e).Problems;
            if (problems.Count == 0) throw new FuzzFinding("message", "a refusal without a problem line");
            foreach (var problem in problems)
            {
                if (problem.Contains('\n') || problem.Contains('\r'))
                    throw new FuzzFinding("message", $"a problem that spans lines: {problem}");
                if (problem.Length > MaxProblemLength)
                    throw new FuzzFinding("message", $"a problem line of {problem.Length:N0} characters: {problem[..200]}...");
            }
        });
}
