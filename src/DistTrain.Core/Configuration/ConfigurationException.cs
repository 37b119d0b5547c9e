namespace DistTrain.Core.Configuration;

/// <summary>
/// The configuration is invalid. <see cref="Problems"/> has one line per bad key, naming the key, the
/// value and the allowed range.
/// </summary>
public sealed class ConfigurationException : Exception
{
    /// <summary>Creates the exception from one or more problem descriptions.</summary>
    public ConfigurationException(string source, IReadOnlyList<string> problems)
        : base($"Invalid configuration ({source}):{Environment.NewLine}  - " + string.Join(Environment.NewLine + "  - ", problems))
    {
        Problems = problems;
    }

    /// <summary>One line per problem.</summary>
    public IReadOnlyList<string> Problems { get; }
}
