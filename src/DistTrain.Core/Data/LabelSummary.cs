using System.Globalization;

namespace DistTrain.Core.Data;

/// <summary>
/// What a CSV file's label column held: each distinct label with its number of rows and first lines, so that a message
/// about the data's classes names the values it found (a stray label, a feature column read as the label).
/// </summary>
/// <param name="File">The file read.</param>
/// <param name="Column">The label column's name (<c>column N</c>, 0-based, without a header row).</param>
/// <param name="ChosenByDefault">Data:Csv:LabelColumn is not set, so the label column is the default: the one headed
/// <c>label</c>, else the last.</param>
/// <param name="Values">The distinct labels: by value when all are whole numbers, else in ordinal order.</param>
public sealed record LabelSummary(string File, string Column, bool ChosenByDefault, IReadOnlyList<LabelSummary.Label> Values)
{
    /// <summary>One distinct label.</summary>
    /// <param name="Text">The label as written.</param>
    /// <param name="Rows">How many rows hold it.</param>
    /// <param name="Lines">The first lines that hold it, at most <see cref="MaxLines"/>.</param>
    public sealed record Label(string Text, int Rows, IReadOnlyList<int> Lines)
    {
        /// <summary>The label as a whole number, or null when it is not one.</summary>
        public int? Integer => LabelVocabulary.TryParseWhole(Text, out var value) ? value : null;

        /// <summary>"line 152", "lines 3, 9, 40, ...": where the label is.</summary>
        internal string Where => $"line{(Lines.Count == 1 ? "" : "s")} {string.Join(", ", Lines)}{(Rows > Lines.Count ? ", ..." : "")}";

        /// <summary>"7 (line 152)", "'1.5' (line 152)": the label, quoted when it is not a whole number, with where it is.</summary>
        internal string WithLines => $"{(Integer is null ? $"'{Text}'" : Text)} ({Where})";
    }

    /// <summary>A warning about the file's header row (every cell a number: likely a data row); null when there is none.</summary>
    public string? HeaderWarning { get; init; }

    /// <summary>Most lines kept per label.</summary>
    public const int MaxLines = 3;

    /// <summary>Most rows whose labels a message calls stray, with their lines, rather than describing every label.</summary>
    private const int FewRows = 5;

    /// <summary>The summary of the label cells of <paramref name="file"/>, read at <paramref name="lines"/>.</summary>
    internal static LabelSummary Of(string file, string column, bool chosenByDefault, IReadOnlyList<string> cells, IReadOnlyList<int> lines)
    {
        var found = new Dictionary<string, (int Rows, List<int> Lines)>(StringComparer.Ordinal);
        for (var i = 0; i < cells.Count; i++)
        {
            if (!found.TryGetValue(cells[i], out var label)) label = (0, []);
            if (label.Lines.Count < MaxLines) label.Lines.Add(lines[i]);
            found[cells[i]] = (label.Rows + 1, label.Lines);
        }
        var values = found.Select(kv => new Label(kv.Key, kv.Value.Rows, kv.Value.Lines)).ToList();
        return new LabelSummary(file, column, chosenByDefault, values.All(v => v.Integer is not null)
            ? [.. values.OrderBy(v => v.Integer)]
            : [.. values.OrderBy(v => v.Text, StringComparer.Ordinal)]);
    }

    /// <summary>
    /// What was found and the two fixes, for a setting that expects <paramref name="expected"/> classes where the data has
    /// <paramref name="classCount"/>: the few stray labels with their lines when only they are out of place, else the
    /// labels; then the data's fix (the stray rows, or Data:Csv:LabelColumn) and the setting's (<paramref name="settingFix"/>).
    /// </summary>
    /// <param name="classCount">The data's classes.</param>
    /// <param name="expected">The classes the setting expects (the model's outputs, the number of class names).</param>
    /// <param name="settingFix">The other fix, such as "set Units to 8".</param>
    public string Describe(int classCount, int expected, string settingFix)
    {
        var integers = Values.All(v => v.Integer is not null);
        // Stray labels: those that would not fit the model, when the others do (whole numbers 0 to expected - 1).
        var stray = Values.Where(v => v.Integer is not { } n || n >= expected).ToList();
        var fitting = Values.Except(stray).Select(v => v.Integer!.Value).ToList();
        var modelFix = $"if the data has {classCount} classes, {settingFix}.";
        if (stray.Count > 0 && fitting.Count > 0 && stray.Sum(v => v.Rows) <= FewRows)
        {
            var notWhole = stray.Where(v => v.Integer is null).Select(v => $"'{v.Text}'").ToList();
            var reason = notWhole.Count == 0 ? "" : $"; {string.Join(", ", notWhole)} {(notWhole.Count == 1 ? "is not a whole number" : "are not whole numbers")}, so every label was read as a name";
            var lines = stray.SelectMany(v => v.Lines).Order().ToList();
            var where = $"line{(lines.Count == 1 ? "" : "s")} {string.Join(", ", lines)}{(stray.Sum(v => v.Rows) > lines.Count ? ", ..." : "")}";
            return $"{File}, column '{Column}', holds the labels {Compact(fitting)} and {string.Join(", ", stray.Select(v => v.WithLines))}{reason}. " +
                $"If {(stray.Count == 1 ? "that label is" : "those labels are")} stray, correct or remove {where}; {modelFix}";
        }
        var labels = integers
            ? $"the labels {Compact([.. Values.Select(v => v.Integer!.Value)])}"
            : $"{Values.Count} distinct labels, read as names: {string.Join(", ", Values.Take(8).Select(v => $"'{v.Text}' ({(v.Rows <= MaxLines ? v.Where : $"{v.Rows:N0} rows")})"))}{(Values.Count > 8 ? ", ..." : "")}";
        return $"{File}, column '{Column}'{(ChosenByDefault ? " (chosen by default, Data:Csv:LabelColumn not being set: the column headed 'label', else the last)" : "")}, holds {labels}. " +
            $"If that is not the label column, set Data:Csv:LabelColumn to it; {modelFix}";
    }

    /// <summary>
    /// The start-up line that says which column the labels came from when Data:Csv:LabelColumn is not set (the default
    /// picks the column headed <c>label</c>, else the last, so a file's header decides it); null when the setting chose it.
    /// </summary>
    public string? DefaultColumnNote => !ChosenByDefault ? null
        : string.Equals(Column.Trim(), "label", StringComparison.OrdinalIgnoreCase)
            ? $"labels from {File}'s column '{Column}', the one headed 'label' (Data:Csv:LabelColumn not being set; set it to read another)"
            : $"labels from {File}'s last column, '{Column}', as none is headed 'label' (Data:Csv:LabelColumn not being set; set it to read another)";

    /// <summary>"0 to 7" for a run of whole numbers, else the numbers listed (the first 12).</summary>
    private static string Compact(List<int> values)
    {
        values = [.. values.Distinct().Order()];
        if (values.Count > 2 && values[^1] - values[0] == values.Count - 1) return $"{values[0]} to {values[^1]}";
        return string.Join(", ", values.Take(12)) + (values.Count > 12 ? ", ..." : "");
    }
}
