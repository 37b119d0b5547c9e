namespace DistTrain.Core.Configuration;

/// <summary>
/// A CSV data set (configuration section <c>Data:Csv</c>, used when <c>Data:Format</c> is <c>Csv</c>): numeric feature
/// columns and one label column per row. Labels that are all whole numbers are class indices (0 = first class); any other
/// labels are class names, numbered in sorted (ordinal) order. See <see cref="Data.CsvDataset"/>.
/// </summary>
public sealed class CsvOptions
{
    /// <summary>The training file (<c>.csv</c>, or <c>.csv.gz</c> gzip-compressed). Required.</summary>
    public string TrainFile { get; set; } = "";

    /// <summary>The test file, with the same columns. Empty (the default): <see cref="DataOptions.TestFraction"/> of the training file's rows.</summary>
    public string TestFile { get; set; } = "";

    /// <summary>The label column: its header name, or its 0-based index. Empty (the default): the column whose header is
    /// <c>label</c> (any case; Kaggle's MNIST-style CSVs put it first), else the last column.</summary>
    public string LabelColumn { get; set; } = "";

    /// <summary>The first row (after <see cref="SkipRows"/>) names the columns. Default true.</summary>
    public bool HasHeader { get; set; } = true;

    /// <summary>Lines skipped at the start of each file, before the header or the first row (0 to 1,000,000). Default 0.</summary>
    public int SkipRows { get; set; }

    /// <summary>The column separator, one character (<c>,</c> <c>;</c> <c>\t</c> <c>|</c> ...): a tab, or an ASCII character from space to
    /// <c>~</c> other than <c>"</c> and <c>#</c>, which the CSV reader refuses (<see cref="IsValidSeparator"/>). Default <c>,</c>.</summary>
    public string Separator { get; set; } = ",";

    /// <summary>What <see cref="Separator"/> takes, in words, for messages: exactly what <see cref="IsValidSeparator"/> accepts.</summary>
    internal const string SeparatorTakes = "one character: a tab (\"\\t\" in JSON) or an ASCII character from ' ' to '~' other than '\"' and '#', such as ',', ';' or '|'";

    /// <summary>True when <paramref name="separator"/> is one character the CSV reader splits columns at: a tab, or an ASCII
    /// character from space to <c>~</c> other than the quote and <c>#</c>, which the reader keeps for itself.</summary>
    internal static bool IsValidSeparator(string separator) => separator is [var c] && (c == '\t' || c is >= ' ' and <= '~' and not '"' and not '#');

    /// <summary><paramref name="separator"/> as a message shows it: a tab as <c>\t</c>, other control characters as <c>\uXXXX</c>.</summary>
    internal static string Shown(string separator) =>
        string.Concat(separator.Select(c => c == '\t' ? "\\t" : char.IsControl(c) ? $"\\u{(int)c:X4}" : c.ToString()));

    /// <summary>Columns that are neither features nor the label (an id, a date): header names or 0-based indices. Default none.</summary>
    public List<string> IgnoreColumns { get; set; } = [];
}
