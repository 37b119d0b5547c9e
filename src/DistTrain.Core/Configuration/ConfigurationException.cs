namespace DistTrain.Core.Configuration;

/// <summary>
/// The configuration is invalid. <see cref="Problems"/> has one line per bad key, naming the key, the
/// value and the allowed range.
/// </summary>
public sealed class ConfigurationException : Exception
{
    /// <summary>Creates the exception from one or more problem descriptions.</summary>
    /// <param name="source">The config file (or "defaults").</param>
    /// <param name="problems">One description per problem; line breaks and other control characters in them (from values
    /// or key names in the file) become spaces, and each is cut at 1,000 characters, so every problem stays one line.</param>
    public ConfigurationException(string source, IReadOnlyList<string> problems)
        : this(source, problems.Select(p => OneLine(p)).ToArray())
    {
    }

    private ConfigurationException(string source, string[] problems)
        : base($"Invalid configuration ({OneLine(source, 300)}):{Environment.NewLine}  - " + string.Join(Environment.NewLine + "  - ", problems))
    {
        Problems = problems;
    }

    /// <summary>A text as one line of at most <paramref name="maxLength"/> characters (then "..."): control characters become spaces.</summary>
    internal static string OneLine(string text, int maxLength = 1000)
    {
        var line = string.Concat(text.Select(c => char.IsControl(c) ? ' ' : c));
        return line.Length <= maxLength ? line : line[..maxLength] + "...";
    }

    /// <summary>One line per problem.</summary>
    public IReadOnlyList<string> Problems { get; }
}
