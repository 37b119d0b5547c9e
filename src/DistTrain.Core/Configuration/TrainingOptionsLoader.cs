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
            builder.AddJsonFile(full, optional: false, reloadOnChange: false);
        }
        if (environment is null)
            builder.AddEnvironmentVariables(EnvironmentPrefix);
        else
            builder.AddInMemoryCollection(environment
                .Where(kv => kv.Key.StartsWith(EnvironmentPrefix, StringComparison.OrdinalIgnoreCase))
                .Select(kv => new KeyValuePair<string, string?>(kv.Key[EnvironmentPrefix.Length..].Replace("__", ":"), kv.Value)));
        if (overrides is not null)
            builder.AddInMemoryCollection(overrides);

        var options = new TrainingOptions();
        try
        {
            var configuration = builder.Build();
            configuration.Bind(options, o => o.ErrorOnUnknownConfiguration = true);
        }
        catch (InvalidDataException e)
        {
            throw new ConfigurationException(source, [$"the file is not valid JSON: {e.Message}"]);
        }
        catch (FormatException e)
        {
            throw new ConfigurationException(source, [$"the file is not valid JSON: {e.Message}"]);
        }
        catch (InvalidOperationException e)
        {
            var detail = e.InnerException is null ? e.Message : $"{e.Message} {e.InnerException.Message}";
            throw new ConfigurationException(source, [$"{detail} Check the key's spelling and value type against configs/fashion-mnist-mlp.json; enum values are listed in the README."]);
        }
        var problems = TrainingOptionsValidator.Validate(options, checkDataDirectory);
        if (problems.Count > 0)
            throw new ConfigurationException(source, problems);
        return options;
    }
}
