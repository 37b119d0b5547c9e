using Microsoft.Extensions.Configuration;

namespace DistTrain.Core.Configuration;

/// <summary>
/// Binds <see cref="TrainingOptions"/> from a JSON file, environment variables and overrides, and
/// validates the result.
/// </summary>
public static class TrainingOptionsLoader
{
    /// <summary>Prefix of environment variables that override keys: <c>DISTTRAIN_Optimizer__LearningRate=0.1</c>.</summary>
    public const string EnvironmentPrefix = "DISTTRAIN_";

    /// <summary>Loads, binds and validates.</summary>
    /// <param name="jsonPath">Config file; null binds defaults, environment and overrides only.</param>
    /// <param name="overrides">Keys such as <c>Training:Workers</c> with their values; applied last.</param>
    /// <param name="checkDataDirectory">Require that the data directory exists.</param>
    /// <param name="environment">Environment variables to read; null reads the process environment.</param>
    /// <exception cref="ConfigurationException">The file is missing or not valid JSON, a key is unknown, a value has the wrong type, or a value is out of range.</exception>
    public static TrainingOptions Load(string? jsonPath, IReadOnlyDictionary<string, string?>? overrides = null,
        bool checkDataDirectory = true, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var source = jsonPath ?? "defaults";
        var builder = new ConfigurationBuilder();
        if (jsonPath is not null)
        {
            var full = Path.GetFullPath(jsonPath);
            if (!File.Exists(full))
                throw new ConfigurationException(source, [$"config file '{jsonPath}' not found (looked at {full}). Pass --config with a file from configs/."]);
            // The default file provider hides dot-files (ExclusionFilters.Sensitive), so configs/.local.json would be "not found".
            builder.AddJsonFile(new Microsoft.Extensions.FileProviders.PhysicalFileProvider(Path.GetDirectoryName(full)!,
                Microsoft.Extensions.FileProviders.Physical.ExclusionFilters.None), Path.GetFileName(full), optional: false, reloadOnChange: false);
        }
        var environmentKeys = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        IEnumerable<KeyValuePair<string, string?>> variables = environment
            ?? Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
                .Select(e => new KeyValuePair<string, string?>((string)e.Key, (string?)e.Value));
        var fromEnvironment = new List<KeyValuePair<string, string?>>();
        foreach (var (name, value) in variables)
        {
            if (!name.StartsWith(EnvironmentPrefix, StringComparison.OrdinalIgnoreCase)) continue;
            var key = name[EnvironmentPrefix.Length..].Replace("__", ":");
            environmentKeys[key] = name;
            fromEnvironment.Add(new(key, value));
        }
        builder.AddInMemoryCollection(fromEnvironment);
        if (overrides is not null)
            builder.AddInMemoryCollection(overrides);

        // Where a key's value came from, for the error messages: the last layer that sets it wins.
        string Origin(string key) =>
            overrides?.ContainsKey(key) == true ? "from a command-line option"
            : environmentKeys.TryGetValue(key, out var variable) ? $"from environment variable {variable}"
            : jsonPath is not null ? $"in {jsonPath}" : "default";

        IConfigurationRoot configuration;
        try
        {
            configuration = builder.Build();
        }
        catch (InvalidDataException e)
        {
            throw new ConfigurationException(source, [$"the file is not valid JSON: {e.InnerException?.Message ?? e.Message}"]);
        }
        catch (FormatException e)
        {
            throw new ConfigurationException(source, [$"the file is not valid JSON: {e.InnerException?.Message ?? e.Message}"]);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigurationException(source, [$"the file cannot be read: {e.Message}"]);
        }
        var unknown = UnknownKeys.Find(configuration, typeof(TrainingOptions)).ToList();
        if (unknown.Count > 0)
            throw new ConfigurationException(source, unknown);

        var options = new TrainingOptions();
        var problems = new List<string>();
        BindEachKey(configuration, options, problems, Origin);
        if (!string.IsNullOrEmpty(configuration["Cluster:Secret"]) && Origin("Cluster:Secret").StartsWith("in ", StringComparison.Ordinal))
            problems.Add($"Cluster:Secret is set in {jsonPath}: a secret in a config file travels with it (version control, images). " +
                         "Put it in a file named by Cluster:SecretFile, or in the environment variable DISTTRAIN_Cluster__Secret.");
        if (problems.Count == 0)
            problems.AddRange(TrainingOptionsValidator.Validate(options, checkDataDirectory)
                .Select(problem => AppendOrigin(problem, Origin)));
        if (problems.Count > 0)
            throw new ConfigurationException(source, problems);
        return options;
    }

    /// <summary>Binds section by section so that every value of the wrong type is reported, not just the first.</summary>
    private static void BindEachKey(IConfiguration configuration, TrainingOptions options, List<string> problems, Func<string, string> origin)
    {
        foreach (var leaf in configuration.AsEnumerable().Where(kv => kv.Value is not null).OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            var single = new ConfigurationBuilder().AddInMemoryCollection([leaf]).Build();
            try
            {
                single.Bind(new TrainingOptions());
            }
            catch (InvalidOperationException e)
            {
                var expected = e.Message.Contains("to type '", StringComparison.Ordinal)
                    ? e.Message[(e.Message.IndexOf("to type '", StringComparison.Ordinal) + 9)..].Split('\'')[0]
                    : "the documented type";
                var allowed = expected.StartsWith("DistTrain", StringComparison.Ordinal) && Type.GetType(expected + ", DistTrain.Core") is { IsEnum: true } enumType
                    ? $"one of {string.Join(", ", Enum.GetNames(enumType))}"
                    : expected switch { "System.Int32" => "a whole number", "System.Double" => "a number", "System.Boolean" => "true or false", _ => expected };
                problems.Add($"{leaf.Key} = '{leaf.Value}' ({origin(leaf.Key)}) is not valid: expected {allowed}.");
            }
        }
        if (problems.Count == 0)
            configuration.Bind(options, o => o.ErrorOnUnknownConfiguration = true);
    }

    private static string AppendOrigin(string problem, Func<string, string> origin)
    {
        var separator = problem.IndexOf(" = ", StringComparison.Ordinal);
        if (separator <= 0 || problem[..separator].Contains(' ')) return problem;
        var key = problem[..separator];
        var verb = problem.IndexOf(" is ", separator, StringComparison.Ordinal);
        if (verb < 0) return problem;
        return $"{problem[..verb]} ({origin(key)}){problem[verb..]}";
    }
}
