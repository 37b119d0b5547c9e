using System.Globalization;
using System.IO.Compression;
using DistTrain.Core.Configuration;
using nietras.SeparatedValues;

namespace DistTrain.Core.Data;

/// <summary>
/// Reads CSV data sets (<see cref="CsvOptions"/>) with the Sep parser: every column but the label and the ignored ones
/// is a numeric feature, read as a float as it is written (no scaling; standardize with Data:Normalization). A value that
/// is not a finite number, an empty feature cell, or a row with another number of columns, is an error naming the file,
/// line and column.
/// </summary>
public static partial class CsvDataset
{
    /// <summary>
    /// Why a feature cell that did not read as a finite float32 is refused, and the fix: the end of its error message. An
    /// infinity (<c>inf</c>, as NumPy and pandas write it, or <c>Infinity</c>) and text on a row after rows of numbers (a
    /// stray value) are told to be corrected in the file, Data:Csv:IgnoreColumns only if the column is not a feature the
    /// model should read (it drops the column from every row); text on the first row of data may be a text column, so both
    /// fixes are given.
    /// </summary>
    /// <param name="cell">The cell, trimmed.</param>
    /// <param name="name">The column as the message names it.</param>
    /// <param name="setting">The column as Data:Csv:IgnoreColumns would name it (its header name, else its index).</param>
    /// <param name="line">The cell's line in the file.</param>
    /// <param name="rowsBefore">Rows of data read before this one, all of whose cells in the column were numbers.</param>
    /// <param name="forModel">The file is read for a trained model (<c>predict</c>, <c>evaluate</c>), which reads every
    /// feature column it was trained with and takes no config keys: the value is to be corrected, and IgnoreColumns is not
    /// offered.</param>
    private static string NotAFeature(ReadOnlySpan<char> cell, string name, string setting, int line, int rowsBefore, bool forModel)
    {
        if (double.TryParse(cell, NumberStyles.Float, CultureInfo.InvariantCulture, out var wide) && double.IsFinite(wide))
            return $"is outside the range of float32 (±{float.MaxValue.ToString("G3", CultureInfo.InvariantCulture)}), in which features are held. Rescale the column.";
        var onlyIfUnwanted = forModel
            ? $"the model reads '{name}' as one of its features."
            : $"list '{setting}' in Data:Csv:IgnoreColumns only if it is not a feature the model should read (that leaves the whole column out).";
        if (IsInfinity(cell))
            return $"is an infinite value, and features must be finite numbers. Replace it in a copy of the file (for example with the column's largest " +
                $"finite value), or drop line {line}; {onlyIfUnwanted}";
        if (DecimalComma(cell) is not { } point)
            return rowsBefore > 0
                ? $"is not a number, in a column that held numbers on the {rowsBefore:N0} row{(rowsBefore == 1 ? "" : "s")} before it: a stray value. " +
                  $"Correct it in a copy of the file, or drop line {line}; {onlyIfUnwanted}"
                : forModel
                    ? $"is not a number, and the model reads '{name}' as one of its features. If the column holds text throughout, the file is not " +
                      $"laid out as the model's training file was (its Data:Csv:Separator, HasHeader and LabelColumn, below); if not, correct the value in a copy of the file, or drop line {line}."
                    : $"is not a number, and features must be numbers. If '{name}' holds text rather than a feature, list it in Data:Csv:IgnoreColumns ('{setting}'); " +
                      "if it holds numbers and this cell is a stray value, correct it in a copy of the file.";
        var fix = forModel ? "write them so (pandas: to_csv(decimal='.'))." : "write them so (pandas: to_csv(decimal='.')), or list the column in Data:Csv:IgnoreColumns.";
        return System.Text.RegularExpressions.Regex.IsMatch(cell, @"^\s*[-+]?\d{1,3},\d{3}\s*$") // "1,000": either reading
            ? $"is not a number: a decimal comma ('{point}') or a thousands separator ('{cell.ToString().Replace(",", "").Trim()}')? Numbers are read with a decimal point and no separators; {fix}"
            : $"is not a number: a decimal comma? Numbers are read with a decimal point ('{point}'); {fix}";
    }

    /// <summary>
    /// True for a cell that writes an infinity: <c>inf</c>, <c>infinity</c> (any case, with a sign or none), as NumPy,
    /// pandas and C's <c>printf</c> write them, and what .NET reads as one (<c>Infinity</c>, <c>∞</c>).
    /// </summary>
    private static bool IsInfinity(ReadOnlySpan<char> cell)
    {
        if (double.TryParse(cell, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && double.IsInfinity(value)) return true;
        var unsigned = cell.Trim();
        if (unsigned.Length > 0 && unsigned[0] is '+' or '-') unsigned = unsigned[1..];
        return unsigned.Equals("inf", StringComparison.OrdinalIgnoreCase) || unsigned.Equals("infinity", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// The end of the error for a feature cell of the first row of data that is not a number at all (<c>setosa</c>) in a
    /// file read with a label column: such a column is most often the labels, read from another column when
    /// Data:Csv:LabelColumn names the wrong one. Names the column the labels are read from and what chose it, and suggests
    /// the text column as the label column: as the likely fix when the row's label cell is a number and the text column is
    /// the only column read on the row that is not, else besides Data:Csv:IgnoreColumns. Null, for
    /// <see cref="NotAFeature"/>'s message, for a later row (the column held numbers before it, so the cell is a stray
    /// value), a missing-value marker as pandas' <c>read_csv</c> knows them (<c>n/a</c>, <c>NA</c>, <c>null</c>) or
    /// <c>?</c>, a cell that reads as a number (NaN, infinity, out of float32's range) or with a decimal comma, or a file
    /// read without a label, or for a trained model (<paramref name="forModel"/>: <c>predict</c> and <c>evaluate</c> take the
    /// model's label column, and no config keys).
    /// </summary>
    private static string? NotAFeatureMaybeTheLabel(SepReader.Row record, Layout layout, int column, CsvOptions options, int rowsBefore, bool forModel)
    {
        var cell = record[column].Span;
        if (forModel || rowsBefore > 0 || layout.LabelIndex < 0 || IsNumber(cell) || IsInfinity(cell) || DecimalComma(cell) is not null || MissingValueMarkers.Contains(cell.ToString())) return null;
        var name = ColumnName(layout, column, options);
        var labelCell = record[layout.LabelIndex].ToString();
        var labels = $"The labels are read from column '{ColumnName(layout, layout.LabelIndex, options)}' (index {layout.LabelIndex}; " +
            (options.LabelColumn.Length > 0 ? $"Data:Csv:LabelColumn = '{options.LabelColumn}'" : "Data:Csv:LabelColumn is not set: the column headed 'label', else the last") + ")";
        var setting = ColumnSetting(layout, column);
        var onlyText = IsNumber(labelCell);
        foreach (var feature in layout.FeatureIndices)
            onlyText &= feature == column || IsNumber(record[feature].Span);
        return onlyText
            ? $"is not a finite number. Features must be numbers. {labels}, whose cell on this line, '{labelCell}', is a number, and '{name}' is the only column read " +
              $"on this line that is not: if '{name}' holds the labels, set Data:Csv:LabelColumn to '{setting}'; otherwise list it in Data:Csv:IgnoreColumns."
            : $"is not a finite number. Features must be numbers: list non-numeric columns in Data:Csv:IgnoreColumns, or, if '{name}' holds the labels, " +
              $"set Data:Csv:LabelColumn to '{setting}'. {labels}.";
    }

    /// <summary>Another common separator (';', tab, '|', ',') that <paramref name="cell"/> holds, as Data:Csv:Separator would
    /// show it ("\t" for a tab), when it is not the file's separator and every piece between its occurrences is a number (with a
    /// decimal point or comma) or blank: cells of a file split by the wrong one, as '1;3' or '5,1;3,5'; else null. A text cell
    /// ("Smith; John") or a number with thousands separators gets no such hint.</summary>
    private static string? OtherSeparatorIn(ReadOnlySpan<char> cell, CsvOptions options)
    {
        foreach (var c in (ReadOnlySpan<char>)[';', '\t', '|', ','])
        {
            if (c.ToString() == options.Separator || !cell.Contains(c)) continue;
            if (c == ',' && ThousandsGrouped(cell)) continue; // 1,000,000: one number, not cells
            var numbers = true;
            foreach (var range in cell.Split(c))
            {
                var piece = cell[range].Trim();
                numbers &= piece.IsEmpty || IsNumber(piece) || DecimalComma(piece) is not null;
            }
            if (numbers) return c == '\t' ? "\\t" : c.ToString();
        }
        return null;
    }

    /// <summary>True for a whole number grouped in thousands by commas (<c>1,000,000</c>, <c>-12,345</c>).</summary>
    private static bool ThousandsGrouped(ReadOnlySpan<char> cell)
    {
        var digits = cell.Trim().TrimStart('-');
        var first = true;
        foreach (var range in digits.Split(','))
        {
            var group = digits[range];
            if (group.IsEmpty || group.Length > 3 || (!first && group.Length != 3) || group.ContainsAnyExceptInRange('0', '9')) return false;
            first = false;
        }
        return !first;
    }

    /// <summary>Cells that mark a missing value: pandas' <c>read_csv</c> default <c>na_values</c> that do not read as numbers, and
    /// <c>?</c> (the UCI data sets' marker). <c>NaN</c> in any case reads as a number, NaN, which marks a missing value too.</summary>
    private static readonly HashSet<string> MissingValueMarkers = new(StringComparer.Ordinal)
    {
        "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "None", "n/a", "null", "?",
    };

    /// <summary>pandas' <c>read_csv</c> default <c>na_values</c> (pandas 1.x and 2.x): the cells it reads as missing without being told.</summary>
    private static readonly HashSet<string> PandasMissingValues = new(StringComparer.Ordinal)
    {
        "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None",
        "n/a", "nan", "null",
    };

    /// <summary>
    /// The end of the error for a feature cell that holds a missing value (empty, or a marker such as <c>NA</c>, <c>?</c> or
    /// <c>NaN</c>): every feature needs a value and no setting drops or fills rows, so the fix is to drop those rows or fill
    /// the cells in a copy of the file, shown as the pandas lines that do it for this file (its separator, header row and
    /// lines skipped at the top; <c>na_values</c> for a marker pandas does not read as missing by default, such as <c>?</c>).
    /// </summary>
    /// <param name="path">The file, as named in the message.</param>
    /// <param name="options">The settings the file is read with.</param>
    /// <param name="cell">The cell as read (trimmed).</param>
    /// <param name="spaced">True when the cell as written has spaces before its text (or is spaces alone).</param>
    /// <param name="forModel">The file is read for a trained model (<c>predict</c>, <c>evaluate</c>): a copy without the
    /// lines skipped at the top is read with their option <c>--skip-rows 0</c>, not Data:Csv:SkipRows, a key they do not take.</param>
    private static string MissingValueFix(string path, CsvOptions options, string cell, bool spaced, bool forModel)
    {
        static string Literal(string text) => "'" + text.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "\\'", StringComparison.Ordinal)
            .Replace("\t", "\\t", StringComparison.Ordinal) + "'";
        var name = Path.GetFileName(path);
        if (name.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)) name = name[..^3];
        var copy = Path.Combine(Path.GetDirectoryName(path) ?? "", Path.GetFileNameWithoutExtension(name) + "-complete.csv");
        var separator = options.Separator == "," ? "" : $", sep={Literal(options.Separator)}";
        var read = $"pandas.read_csv({Literal(path)}{separator}{(options.HasHeader ? "" : ", header=None")}" +
            (options.SkipRows > 0 ? FormattableString.Invariant($", skiprows={options.SkipRows}") : "") +
            (PandasMissingValues.Contains(cell) ? "" : $", na_values=[{Literal(cell)}]") +
            // Cells are read trimmed ('  NA' is NA, spaces alone are empty); pandas reads them so with skipinitialspace.
            (spaced ? ", skipinitialspace=True" : "") + ")";
        var write = $".to_csv({Literal(copy)}, index=False{(options.HasHeader ? "" : ", header=False")}{separator})";
        return "every feature needs a value, and DistTrain has no setting that drops or fills rows with missing values. Drop those rows, or fill " +
            $"the missing cells (for example with the column's mean), in a copy of the file; with pandas: df = {read}, then df.dropna(){write} " +
            $"drops them, or df.fillna(df.mean(numeric_only=True)){write} fills them" +
            (options.SkipRows <= 0 ? "." : forModel
                ? ", and the copy has no lines to skip at its top: read it with --skip-rows 0."
                : ", and the copy has no lines to skip at its top (Data:Csv:SkipRows 0).");
    }

    /// <summary>
    /// <paramref name="cell"/> written with a point instead of its one comma (<c>5,1</c> → <c>5.1</c>), when that reads as a
    /// finite number; null otherwise. For the hint on files written with a decimal comma (a European locale's separator ';').
    /// </summary>
    internal static string? DecimalComma(ReadOnlySpan<char> cell)
    {
        if (cell.Count(',') != 1 || cell.Contains('.')) return null;
        var point = cell.ToString().Replace(',', '.');
        return float.TryParse(point, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && float.IsFinite(value) ? point.Trim() : null;
    }

    /// <summary>Sep's refusal of a header that repeats a name: <c>Col name '0' found 30 times at ...</c>.</summary>
    [System.Text.RegularExpressions.GeneratedRegex(@"^Col name '([^']*)' found (\d+) times", System.Text.RegularExpressions.RegexOptions.CultureInvariant)]
    private static partial System.Text.RegularExpressions.Regex DuplicateColumnName();

    /// <summary>A file's column layout: which columns are features, which is the label.</summary>
    /// <param name="FeatureColumns">Names of the feature columns, in order (the header's, or <c>column N</c>, 0-based, without one).</param>
    /// <param name="FeatureIndices">Their 0-based positions.</param>
    /// <param name="LabelIndex">Position of the label column, or −1 when the file has none (prediction inputs).</param>
    /// <param name="ColumnCount">Columns per row.</param>
    public sealed record Layout(IReadOnlyList<string> FeatureColumns, int[] FeatureIndices, int LabelIndex, int ColumnCount)
    {
        /// <summary>The label column's header name; null without a header row or a label column.</summary>
        public string? LabelName { get; init; }

        /// <summary>The header row's cells, every column's, ignored ones included; null without a header row.</summary>
        public IReadOnlyList<string>? Header { get; init; }
    }

    /// <summary>Reads a labeled file.</summary>
    /// <param name="path">A <c>.csv</c> file, or <c>.csv.gz</c>.</param>
    /// <param name="options">Columns, header and separator.</param>
    /// <param name="vocabulary">How labels map to classes (the training data's, for a test file); null works it out from
    /// this file: whole numbers are class indices (classes = the largest + 1), anything else names, numbered in sorted order.</param>
    /// <returns>The raw samples; their <see cref="LabeledDataset.ClassNames"/> are the label names when labels are names.</returns>
    /// <exception cref="DataFormatException">The file is missing, empty or malformed, a column is not found, a value is not a
    /// number, a label is unknown, there are more than 256 classes or more feature values than one array holds; the message
    /// names the file, line and column.</exception>
    public static (LabeledDataset Data, Layout Layout, LabelVocabulary Vocabulary) Read(string path, CsvOptions options, LabelVocabulary? vocabulary = null) =>
        Read(path, options, vocabulary, Array.MaxLength);

    /// <summary>
    /// Reads a labeled file with another file's feature columns: a test file with the training file's, or the file
    /// <c>disttrain evaluate</c> scores with the model's. With a header row the columns are matched by name, in any order,
    /// and the features come in <paramref name="featureColumns"/>' order; without one they are read by position.
    /// </summary>
    /// <param name="path">A <c>.csv</c> file, or <c>.csv.gz</c>.</param>
    /// <param name="options">Columns, header and separator (the training file's).</param>
    /// <param name="vocabulary">How labels map to classes, as in <see cref="Read(string, CsvOptions, LabelVocabulary?)"/>.</param>
    /// <param name="featureColumns">The training file's feature columns (<see cref="Layout.FeatureColumns"/>), in order;
    /// null reads the file as a training file.</param>
    /// <exception cref="DataFormatException">As <see cref="Read(string, CsvOptions, LabelVocabulary?)"/>, and when a header
    /// lacks one of <paramref name="featureColumns"/> or has a column that is none of them, the label or an ignored one.</exception>
    public static (LabeledDataset Data, Layout Layout, LabelVocabulary Vocabulary) Read(string path, CsvOptions options, LabelVocabulary? vocabulary,
        IReadOnlyList<string>? featureColumns)
    {
        var file = ReadFile(path, options, vocabulary, featureColumns, Array.MaxLength);
        return (file.Data, file.Layout, file.Vocabulary);
    }

    /// <summary>As <see cref="Read(string, CsvOptions, LabelVocabulary?)"/>, refusing files of more than <paramref name="maxValues"/> feature values.</summary>
    internal static (LabeledDataset Data, Layout Layout, LabelVocabulary Vocabulary) Read(string path, CsvOptions options, LabelVocabulary? vocabulary, long maxValues)
    {
        var file = ReadFile(path, options, vocabulary, null, maxValues);
        return (file.Data, file.Layout, file.Vocabulary);
    }

    /// <summary>A labeled file as read, with what its label column held (for messages about its classes), each sample's
    /// line in the file (for messages about a sample), and the label cells of the rows left out (see
    /// <see cref="ReadFile"/>'s <c>leaveOutUnknownLabels</c>; empty otherwise), in file order.</summary>
    internal sealed record LabeledFile(LabeledDataset Data, Layout Layout, LabelVocabulary Vocabulary, LabelSummary Labels, IReadOnlyList<int> Lines)
    {
        /// <summary>The label cells of the rows left out because their labels are not in the vocabulary, in file order.</summary>
        public IReadOnlyList<string> LeftOutLabels { get; init; } = [];
    }

    /// <summary>Reads a labeled file; <paramref name="featureColumns"/> as in <see cref="Read(string, CsvOptions, LabelVocabulary?, IReadOnlyList{string}?)"/>.</summary>
    /// <param name="path">A <c>.csv</c> file, or <c>.csv.gz</c>.</param>
    /// <param name="options">Columns, header and separator.</param>
    /// <param name="vocabulary">How labels map to classes; null works it out from this file.</param>
    /// <param name="featureColumns">The training file's feature columns, or null.</param>
    /// <param name="maxValues">The most feature values the file may hold.</param>
    /// <param name="leaveOutUnknownLabels">Leave out the rows whose label is not in <paramref name="vocabulary"/> (listed in
    /// <see cref="LabeledFile.LeftOutLabels"/>) instead of refusing the file: for a model trained on some classes only
    /// (Data:Classes), whose other classes are left out as training leaves them out.</param>
    /// <param name="forModel">The file is read for a trained model (<c>evaluate</c>), with its settings: the errors give the
    /// fixes that apply to it (no config keys).</param>
    internal static LabeledFile ReadFile(string path, CsvOptions options, LabelVocabulary? vocabulary, IReadOnlyList<string>? featureColumns, long maxValues,
        bool leaveOutUnknownLabels = false, bool forModel = false)
    {
        var labelCells = new List<string>();
        var (features, layout, lines) = ReadRows(path, options, requireLabel: true, featureColumns, byName: featureColumns is not null, labelCells, maxValues, forModel);
        if (labelCells.Count == 0)
            throw new DataFormatException($"{path}: no data rows. The file needs at least one row of features and a label.");
        var column = ColumnName(layout, layout.LabelIndex, options);
        var summary = LabelSummary.Of(path, column, options.LabelColumn.Length == 0, labelCells, lines) with { HeaderWarning = NumericHeaderWarning(path, layout) };
        vocabulary ??= VocabularyOf(path, labelCells, lines, column, summary.ChosenByDefault);
        var labels = new List<byte>(labelCells.Count);
        var kept = new List<int>(labelCells.Count);
        var leftOut = new List<string>();
        for (var i = 0; i < labelCells.Count; i++)
        {
            var index = vocabulary.IndexOf(labelCells[i]);
            if (index < 0 && leaveOutUnknownLabels)
            {
                leftOut.Add(labelCells[i]);
                continue;
            }
            if (index < 0)
                throw new DataFormatException($"{path}: line {lines[i]}, column '{column}': label '{labelCells[i]}' is not {vocabulary.Describe()}, the training data's classes.");
            labels.Add((byte)index);
            kept.Add(i);
        }
        var names = vocabulary.IntegerLabels ? null : vocabulary.Names;
        var featureCount = layout.FeatureIndices.Length;
        if (leftOut.Count > 0)
        {
            var keptFeatures = new float[kept.Count * featureCount];
            for (var i = 0; i < kept.Count; i++) features.AsSpan(kept[i] * featureCount, featureCount).CopyTo(keptFeatures.AsSpan(i * featureCount));
            (features, lines) = (keptFeatures, [.. kept.Select(i => lines[i])]);
        }
        return new LabeledFile(new LabeledDataset(features, [.. labels], featureCount, vocabulary.ClassCount, names), layout, vocabulary, summary, lines)
        {
            LeftOutLabels = leftOut,
        };
    }

    /// <summary>
    /// Reads the feature columns of a file to score (<c>disttrain predict</c>): by the header's names when the file has a
    /// header row, else by position, with or without the label column.
    /// </summary>
    /// <param name="path">A <c>.csv</c> file, or <c>.csv.gz</c>.</param>
    /// <param name="options">The settings the model was trained with.</param>
    /// <param name="featureColumns">The training file's feature column names, in order.</param>
    /// <returns>Sample-major features, <c>rows · featureColumns.Count</c> values.</returns>
    /// <exception cref="DataFormatException">The file is missing or malformed, has no data rows (a header row alone), a column
    /// is missing or unknown or a value is not a number.</exception>
    public static float[] ReadFeatures(string path, CsvOptions options, IReadOnlyList<string> featureColumns) =>
        ReadFeatures(path, options, featureColumns, byName: true).Features;

    /// <summary>
    /// As <see cref="ReadFeatures(string, CsvOptions, IReadOnlyList{string})"/>, with each row's line number;
    /// <paramref name="byName"/> false reads by position even with a header (a model that knows no column names);
    /// <paramref name="forModel"/> true when the file is read for a trained model (<c>predict</c>), whose errors give the
    /// fixes that apply to it (no config keys).
    /// </summary>
    internal static (float[] Features, IReadOnlyList<int> Lines) ReadFeatures(string path, CsvOptions options, IReadOnlyList<string> featureColumns, bool byName,
        bool forModel = false)
    {
        var (features, _, lines) = ReadRows(path, options, requireLabel: false, featureColumns, byName, labelCells: null, Array.MaxLength, forModel);
        // A header row alone: nothing to score, said as evaluate says it (an empty table and exit code 0 said nothing).
        if (lines.Count == 0)
            throw new DataFormatException($"{path}: no data rows. The file needs at least one row of features.");
        return (features, lines);
    }

    /// <summary>
    /// A warning when every cell of the header row is a number: most often a data row read as the header (Data:Csv:HasHeader
    /// is true by default), which is then not trained on and names the columns; null otherwise.
    /// </summary>
    private static string? NumericHeaderWarning(string path, Layout layout)
    {
        if (layout.Header is not { Count: > 0 } cells) return null; // no header row
        if (!cells.All(IsNumber) || CountsColumns(cells)) return null;
        return $"{path}: every cell of the header row is a number ({string.Join(", ", cells.Take(5).Select(c => $"'{c}'"))}{(cells.Count > 5 ? ", ..." : "")}), " +
            "so it is probably a data row, which is then not trained on. If the file has no header row, set Data:Csv:HasHeader to false.";
    }

    private static bool IsNumber(string cell) => IsNumber(cell.AsSpan());

    private static bool IsNumber(ReadOnlySpan<char> cell) => double.TryParse(cell, NumberStyles.Float, CultureInfo.InvariantCulture, out _);

    /// <summary>
    /// True when the header cells that are numbers count the columns: each is its 0-based position plus one offset, −1, 0 or
    /// 1 (pandas' <c>to_csv</c> writes its index column's empty cell, then <c>0,1,2,...</c>; other tools count from 0 or 1).
    /// Such a header is a header, and its numbers are names; a header with no numbers counts trivially.
    /// </summary>
    internal static bool CountsColumns(IReadOnlyList<string> cells)
    {
        foreach (var offset in new[] { -1, 0, 1 })
            if (Enumerable.Range(0, cells.Count).All(i => !IsNumber(cells[i]) || cells[i].Trim() == (i + offset).ToString(CultureInfo.InvariantCulture)))
                return true;
        return false;
    }

    private static LabelVocabulary VocabularyOf(string path, List<string> cells, List<int> lines, string column, bool chosenByDefault)
    {
        // When the default chose the last column, the "labels" out of range are most often a feature's values: say so.
        var hint = chosenByDefault && !string.Equals(column.Trim(), "label", StringComparison.OrdinalIgnoreCase)
            ? $" The labels were read from the last column, '{column}', as Data:Csv:LabelColumn is not set and no column is headed 'label': " +
              "if they are in another column, set Data:Csv:LabelColumn to its header name or 0-based index."
            : "";
        string OutOfRange(string label, int line) =>
            $"{path}: label {label} (line {line}, column '{column}') is not a class index 0 to {LabelVocabulary.MaxClasses - 1}. Write labels as 0-based class indices, or as names.{hint}";
        var integers = new int[cells.Count];
        var allIntegers = true;
        for (var i = 0; i < cells.Count && allIntegers; i++)
            allIntegers = LabelVocabulary.TryParseWhole(cells[i], out integers[i]);
        // Whole numbers too large for a class index (3000000000) are labels written as indices all the same, not names.
        if (!allIntegers && cells.All(LabelVocabulary.IsWholeNumber))
        {
            var large = cells.FindIndex(c => !LabelVocabulary.TryParseWhole(c, out _));
            throw new DataFormatException(OutOfRange(cells[large], lines[large]));
        }
        if (allIntegers)
        {
            var bad = Array.FindIndex(integers, l => l < 0 || l >= LabelVocabulary.MaxClasses);
            if (bad >= 0)
                throw new DataFormatException(OutOfRange(integers[bad].ToString(CultureInfo.InvariantCulture), lines[bad]));
            return new LabelVocabulary(null, integers.Max() + 1, IntegerLabels: true);
        }
        var names = cells.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        if (names.Length > LabelVocabulary.MaxClasses)
            throw new DataFormatException($"{path}: {names.Length} distinct labels in column '{column}'; at most {LabelVocabulary.MaxClasses} classes are supported. Is Data:Csv:LabelColumn the label column?{hint}");
        return new LabelVocabulary(names, names.Length, IntegerLabels: false);
    }

    private static (float[] Features, Layout Layout, List<int> Lines) ReadRows(string path, CsvOptions options, bool requireLabel,
        IReadOnlyList<string>? expectedFeatures, bool byName, List<string>? labelCells, long maxValues, bool forModel)
    {
        if (!File.Exists(path))
            throw new DataFormatException($"{path}: CSV file not found. Check Data:Csv:TrainFile / TestFile (or the path given).");
        if (!CsvOptions.IsValidSeparator(options.Separator))
            throw new DataFormatException($"Data:Csv:Separator = '{CsvOptions.Shown(options.Separator)}' cannot separate CSV columns: use {CsvOptions.SeparatorTakes}.");
        var before = options.SkipRows; // lines before the header (or the first row), blank ones included
        try
        {
            if (path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase))
                using (var file = OpenFile(path)) GzipFile.CheckComplete(path, file);
            CheckText(path);
            before = LinesBefore(path, options);
            using var text = OpenText(path);
            for (var skipped = 0; skipped < before; skipped++) text.ReadLine();
            using var reader = Sep.New(options.Separator[0]).Reader(o => o with
            {
                HasHeader = options.HasHeader,
                Unescape = true,
                Trim = SepTrim.All,
                DisableColCountCheck = true,
                CultureInfo = CultureInfo.InvariantCulture,
            }).From(text);
            var header = options.HasHeader ? reader.Header.ColNames : null;
            if (options.HasHeader && (header is null || header.Count == 0))
                throw new DataFormatException($"{path}: no header row (Data:Csv:HasHeader is true). Set HasHeader to false if the file has none.");
            Layout? layout = header is null ? null : MakeLayout(path, options, header, header.Count, requireLabel, expectedFeatures, byName) with { Header = header };
            var values = new List<float>();
            var lines = new List<int>();
            foreach (var record in reader)
            {
                // Blank lines are skipped, as pandas' read_csv does (skip_blank_lines=True).
                if (record.ColCount == 1 && record[0].Span.IsWhiteSpace()) continue;
                // Sep 0.17 numbers the first row of a file without a header from line 2 (to line 2, exclusive); the smaller is right.
                var line = before + Math.Min(record.LineNumberFrom, record.LineNumberToExcl - 1);
                layout ??= MakeLayout(path, options, null, record.ColCount, requireLabel, expectedFeatures, byName);
                if (values.Count + layout.FeatureIndices.Length > maxValues)
                    throw new DataFormatException($"{path}: line {line}: the file holds more than {maxValues:N0} feature values, the most one data set holds in memory. Split the file, or list unused columns in Data:Csv:IgnoreColumns.");
                if (record.ColCount == layout.ColumnCount + 1 && LineEndsWithSeparator(record, options))
                    throw new DataFormatException($"{path}: line {line} has {record.ColCount} columns but {(header is null ? "the first row" : "the header")} has {layout.ColumnCount}: " +
                        $"it ends with the separator ('{CsvOptions.Shown(options.Separator)}'), which makes an empty last column. Remove the separators at the ends of the lines.");
                if (record.ColCount != layout.ColumnCount)
                    throw new DataFormatException($"{path}: line {line} has {record.ColCount} columns but {(header is null ? "the first row" : "the header")} has {layout.ColumnCount}. Every row needs the same columns (check the separator, Data:Csv:Separator = '{options.Separator}')" +
                        (lines.Count == (header is null ? 1 : 0) && record.ColCount > layout.ColumnCount
                            ? $". If line {before + 1} is not {(header is null ? "a data row" : "the header")} (a title, or a line of counts as scikit-learn's data files start with), skip it with Data:Csv:SkipRows = {before + 1}{(header is null ? "" : ", and set Data:Csv:HasHeader to false if no header row follows it")}."
                            : "."));
                // An empty last column read as a feature or the label, from lines that end with the separator: said before any
                // other cell is checked, as it is what the other columns' errors would come from (the label read from it).
                if (((record.ColCount - 1 == layout.LabelIndex && labelCells is not null) || Array.IndexOf(layout.FeatureIndices, record.ColCount - 1) >= 0)
                    && EndsWithSeparator(record, layout, options, lines.Count))
                    throw new DataFormatException(TrailingSeparator(path, line, layout, record.ColCount - 1, options));
                foreach (var column in layout.FeatureIndices)
                {
                    var cell = record[column].Span;
                    if (cell.IsWhiteSpace())
                        throw new DataFormatException($"{path}: line {line}, column '{ColumnName(layout, column, options)}' (index {column}) is empty, a missing value: " +
                            MissingValueFix(path, options, cell.ToString(), SpacedCell(record, column, options), forModel));
                    if (!float.TryParse(cell, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !float.IsFinite(value))
                        throw new DataFormatException($"{path}: line {line}, column '{ColumnName(layout, column, options)}' (index {column}): '{cell.ToString()}' " +
                            (float.IsNaN(value) || MissingValueMarkers.Contains(cell.ToString())
                                ? "marks a missing value: " + MissingValueFix(path, options, cell.ToString(), SpacedCell(record, column, options), forModel)
                                : lines.Count == 0 && DecimalComma(cell) is null && OtherSeparatorIn(cell, options) is { } other
                                ? (forModel
                                    ? $"is not a number, and it holds '{other}': is that the file's separator? The model reads files separated by " +
                                      $"'{CsvOptions.Shown(options.Separator)}', as its training file was: write the file with that separator."
                                    : $"is not a number, and it holds '{other}': is that the file's separator? Set Data:Csv:Separator to \"{other}\" (it is " +
                                      $"'{CsvOptions.Shown(options.Separator)}'); if this column is text, list it in Data:Csv:IgnoreColumns.")
                                : NotAFeatureMaybeTheLabel(record, layout, column, options, lines.Count, forModel)
                                  ?? NotAFeature(cell, ColumnName(layout, column, options), ColumnSetting(layout, column), line, lines.Count, forModel)));
                    values.Add(value);
                }
                if (layout.LabelIndex >= 0 && labelCells is not null)
                {
                    if (record[layout.LabelIndex].Span.IsWhiteSpace())
                        throw new DataFormatException($"{path}: line {line}, column '{ColumnName(layout, layout.LabelIndex, options)}' (index {layout.LabelIndex}), the label, is empty: every row needs a label. " +
                            "Fill it in, or drop the row.");
                    labelCells.Add(record[layout.LabelIndex].ToString());
                }
                lines.Add(line);
            }
            if (layout is null)
                throw new DataFormatException($"{path}: the file is empty.");
            return ([.. values], layout, lines);
        }
        catch (ArgumentException e) when (options.HasHeader && DuplicateColumnName().Match(e.Message) is { Success: true } duplicate)
        {
            // Sep refuses a header that repeats a name; most often the "header" is a first row of numbers.
            throw new DataFormatException($"{path}: the header row (line {before + 1}) names column '{duplicate.Groups[1].Value}' " +
                $"{duplicate.Groups[2].Value} times, and column names must be unique. If that row is data, the file has no header row: set " +
                "Data:Csv:HasHeader to false (a model trained on such a file reads its CSV files that way).");
        }
        catch (Exception e) when (e is InvalidDataException or ArgumentException or NotSupportedException)
        {
            throw new DataFormatException($"{path}: not readable as CSV ({e.Message}).");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException($"{path}: the file could not be read ({e.Message}). Check that it is readable.");
        }
    }

    /// <summary>
    /// True when <paramref name="record"/> is the first row of data (<paramref name="rowsBefore"/> 0), its last cell is empty
    /// and its text ends with the separator, spaces after it aside (<c>5.1,3.5,0,</c>), while the header row, when there is
    /// one, leaves that column unnamed: the lines then most likely all end with a separator that begins no column. A later
    /// row follows rows with a value there, and a named column's empty cell is a missing value; neither is this case.
    /// </summary>
    private static bool EndsWithSeparator(SepReader.Row record, Layout layout, CsvOptions options, int rowsBefore)
    {
        if (rowsBefore > 0 || (layout.Header is { } header && (header.Count != record.ColCount || header[^1].Length > 0))) return false;
        return LineEndsWithSeparator(record, options);
    }

    /// <summary>True when cell <paramref name="column"/> of <paramref name="record"/>, as written (before Sep trims it), starts
    /// with a space or tab: found in the row's text as the separator followed by white space (or the row starting with it).</summary>
    private static bool SpacedCell(SepReader.Row record, int column, CsvOptions options)
    {
        var text = record.Span;
        // A quoted cell may hold the separator, so the cell's place is not known: said to be spaced (the hint does no harm).
        if (text.Contains('"')) return true;
        var start = 0;
        for (var i = 0; i < column; i++)
        {
            var next = text[start..].IndexOf(options.Separator[0]);
            if (next < 0) return false;
            start += next + 1;
        }
        return start < text.Length && text[start] is ' ' or '\t';
    }

    /// <summary>True when the row's last cell is empty and its text ends with the separator, spaces after it aside
    /// (<c>5.1,3.5,0,</c>, not a quoted empty cell <c>""</c>).</summary>
    private static bool LineEndsWithSeparator(SepReader.Row record, CsvOptions options)
    {
        if (record.ColCount < 2 || !record[record.ColCount - 1].Span.IsWhiteSpace()) return false;
        var text = record.Span.TrimEnd(" \r");
        return text.Length > 0 && text[^1] == options.Separator[0];
    }

    /// <summary>
    /// The error for the first row's last cell, a feature's or the label's, when it is empty because the row ends with the
    /// separator (<see cref="EndsWithSeparator"/>): the fix is to remove the separators at the ends of the lines, or to ignore
    /// that column (Data:Csv:IgnoreColumns, by its index, as a header row ending with a separator too leaves it unnamed:
    /// pandas' <c>Unnamed: 5</c>); for the label column, also to say which column holds the labels, as the last one is then
    /// ignored. With a header row ending so the case is plain; without one, a missing value is the other reading, whose fix
    /// is given too.
    /// </summary>
    private static string TrailingSeparator(string path, int line, Layout layout, int column, CsvOptions options)
    {
        var isLabel = column == layout.LabelIndex;
        var what = isLabel
            ? $", read as the label ({(options.LabelColumn.Length > 0 ? $"Data:Csv:LabelColumn = '{options.LabelColumn}'" : "Data:Csv:LabelColumn is not set: the column headed 'label', else the last")}),"
            : ",";
        var ignore = FormattableString.Invariant($"list the column in Data:Csv:IgnoreColumns ('{column}')") +
            (isLabel ? " and set Data:Csv:LabelColumn to the column that holds the labels" : "");
        var start = $"{path}: line {line} ends with the separator ('{CsvOptions.Shown(options.Separator)}'), so its last column, '{ColumnName(layout, column, options)}' " +
            $"(index {column}){what} is empty";
        return layout.Header is not null
            ? $"{start}, and the header row ends with the separator too, so the column has no name (pandas reads it as " +
              FormattableString.Invariant($"'Unnamed: {column}', of missing values). Remove the separators at the ends of the lines, or {ignore}.")
            : $"{start}: every {(isLabel ? "row needs a label" : "feature needs a value")}. If the lines end with a separator that begins no column, " +
              $"remove those separators, or {ignore}; otherwise fill the cell{(isLabel ? "" : " (for example with the column's mean)")}, or drop the row.";
    }

    /// <summary>The lines before the header (or the first row): Data:Csv:SkipRows, then any blank lines.</summary>
    private static int LinesBefore(string path, CsvOptions options)
    {
        using var text = OpenText(path);
        for (var skipped = 0; skipped < options.SkipRows; skipped++)
            if (text.ReadLine() is null)
                throw new DataFormatException($"{path}: the file has fewer than Data:Csv:SkipRows = {options.SkipRows} lines.");
        var lines = options.SkipRows;
        string? line;
        while ((line = text.ReadLine()) is not null && string.IsNullOrWhiteSpace(line)) lines++;
        // Nothing but blank lines (or nothing at all): said as such, not as a missing header row.
        if (line is null)
            throw new DataFormatException($"{path}: the file is empty" + (lines > options.SkipRows ? " (it holds blank lines only)" : "") +
                (options.SkipRows > 0 ? $" after the Data:Csv:SkipRows = {options.SkipRows} lines skipped" : "") + ".");
        return lines;
    }

    /// <summary>
    /// True when the first line that is not blank splits at <paramref name="separator"/> into numbers only: a row of data,
    /// which no header row is, except column numbers counted from 0 or 1 (pandas writes <c>0,1,...,783</c> as the header
    /// of an unnamed frame). False for an empty or unreadable file (the read that follows reports it).
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="separator">The column separator.</param>
    /// <param name="skipRows">Lines skipped at the top before the first row is looked for.</param>
    internal static bool FirstRowIsNumbers(string path, char separator, int skipRows = 0) => FirstRowCells(path, separator, skipRows) is { } cells && IsDataRow(cells);

    /// <summary>True when <paramref name="cells"/> are numbers only and do not count the columns: a row of data, not a header row.</summary>
    internal static bool IsDataRow(IReadOnlyList<string> cells) => cells.All(IsNumber) && (cells.Count < 2 || !CountsColumns(cells));

    /// <summary>True when no cell of <paramref name="cells"/> is a number: a header row of names, not a row of data (whose
    /// features are numbers).</summary>
    internal static bool IsNamesRow(IReadOnlyList<string> cells) => !cells.Any(IsNumber);

    /// <summary>
    /// True when <paramref name="cells"/>, a line that is not read (one of Data:Csv:SkipRows), look like a row of data: numbers
    /// only that do not count the columns (<see cref="IsDataRow"/>, the check <c>train</c> makes of a header row), or
    /// numbers exactly where <paramref name="dataRow"/>, the file's first data row, has them (a row whose label is a name).
    /// With a <paramref name="dataRow"/>, the cells must also be as many as its. A title or scikit-learn's line of counts
    /// (<c>150,4,setosa,versicolor,virginica</c> over rows of 5 numbers) is not a data row.
    /// </summary>
    /// <param name="cells">The line's cells.</param>
    /// <param name="dataRow">The cells of the file's first row that is read as data; null when there is none.</param>
    internal static bool LooksLikeDataRow(IReadOnlyList<string> cells, IReadOnlyList<string>? dataRow)
    {
        if (dataRow is not null && dataRow.Count != cells.Count) return false;
        if (cells.All(IsNumber)) return IsDataRow(cells);
        return dataRow is not null && cells.Any(IsNumber) && Enumerable.Range(0, cells.Count).All(i => IsNumber(cells[i]) == IsNumber(dataRow[i]));
    }

    /// <summary>
    /// The lines among the first <see cref="CsvOptions.SkipRows"/> of <paramref name="path"/> that look like data rows
    /// (<see cref="LooksLikeDataRow"/>, against the first row read as data: past blank lines and, with
    /// <see cref="CsvOptions.HasHeader"/>, the header row), each with its 1-based line number and cells; those lines are
    /// skipped, not read. Empty when nothing is skipped, or for a file that cannot be read (the read that follows reports it).
    /// </summary>
    /// <param name="path">A <c>.csv</c> file, or <c>.csv.gz</c>.</param>
    /// <param name="options">The settings the file is read with.</param>
    internal static IReadOnlyList<(int Line, string[] Cells)> SkippedDataRows(string path, CsvOptions options)
    {
        var (skipped, dataRow) = SkippedLines(path, options);
        return [.. skipped.Where(s => LooksLikeDataRow(s.Cells, dataRow))];
    }

    /// <summary>
    /// The lines among the first <see cref="CsvOptions.SkipRows"/> of <paramref name="path"/> that are not blank, each with
    /// its 1-based line number and cells (split at the separator, trimmed of spaces and quotes), and the cells of the first
    /// row read as data after them (past blank lines and, with <see cref="CsvOptions.HasHeader"/>, the header row), null
    /// when there is none. Nothing for a file that cannot be read (the read that follows reports it).
    /// </summary>
    /// <param name="path">A <c>.csv</c> file, or <c>.csv.gz</c>.</param>
    /// <param name="options">The settings the file is read with.</param>
    internal static (IReadOnlyList<(int Line, string[] Cells)> Skipped, string[]? DataRow) SkippedLines(string path, CsvOptions options)
    {
        if (options.SkipRows <= 0 || !CsvOptions.IsValidSeparator(options.Separator)) return ([], null);
        var separator = options.Separator[0];
        string[] Split(string line) => line.Split(separator).Select(cell => cell.Trim().Trim('"')).ToArray();
        try
        {
            using var text = OpenText(path);
            var skipped = new List<(int Line, string[] Cells)>();
            for (var line = 1; line <= options.SkipRows && text.ReadLine() is { } row; line++)
                if (!string.IsNullOrWhiteSpace(row)) skipped.Add((line, Split(row)));
            string[]? dataRow = null;
            var headerPassed = !options.HasHeader;
            while (text.ReadLine() is { } row)
            {
                if (string.IsNullOrWhiteSpace(row)) continue;
                if (!headerPassed)
                {
                    headerPassed = true;
                    continue;
                }
                dataRow = Split(row);
                break;
            }
            return (skipped, dataRow);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            return ([], null);
        }
    }

    /// <summary>
    /// The cells of the first line that is not blank after the first <paramref name="skipRows"/> lines, split at
    /// <paramref name="separator"/>, trimmed of spaces and quotes; null for a file without one, or one that cannot be read
    /// (the read that follows reports it).
    /// </summary>
    internal static string[]? FirstRowCells(string path, char separator, int skipRows = 0)
    {
        try
        {
            using var text = OpenText(path);
            for (var skipped = 0; skipped < skipRows; skipped++)
                if (text.ReadLine() is null) return null;
            while (text.ReadLine() is { } line)
                if (!string.IsNullOrWhiteSpace(line)) return line.Split(separator).Select(cell => cell.Trim().Trim('"')).ToArray();
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            return null;
        }
    }

    /// <summary>Bytes at the start of a CSV file that <see cref="CheckText"/> reads.</summary>
    private const int TextCheckBytes = 64 * 1024;

    /// <summary>
    /// Refuses a file that is not text: a NUL or another C0 control byte (not tab, line feed, form feed or carriage return)
    /// in its first <see cref="TextCheckBytes"/> bytes (after decompression for <c>.gz</c>). A binary file given as CSV (a
    /// model, an image, a gzip file without its <c>.gz</c> name) used to reach the header's checks, which echoed its bytes to the
    /// terminal as a column name.
    /// </summary>
    /// <exception cref="DataFormatException">The file holds such a byte; the message names its offset and value.</exception>
    private static void CheckText(string path)
    {
        using var stream = OpenBytes(path);
        var buffer = new byte[TextCheckBytes];
        var read = 0;
        for (int n; read < buffer.Length && (n = stream.Read(buffer, read, buffer.Length - read)) > 0;) read += n;
        // UTF-16 (Excel's "Unicode Text", PowerShell's default): a byte-order mark, then a zero byte in every other place.
        if (read >= 2 && ((buffer[0] == 0xFF && buffer[1] == 0xFE) || (buffer[0] == 0xFE && buffer[1] == 0xFF)))
            throw new DataFormatException($"{path}: the file is UTF-16 text (it starts with a UTF-16 byte-order mark, 0x{buffer[0]:X2} 0x{buffer[1]:X2}), and a CSV " +
                "file is read as UTF-8. Save it as UTF-8 (Excel: \"CSV UTF-8\"; or iconv -f UTF-16 -t UTF-8 FILE > NEW).");
        for (var i = 0; i < read; i++)
        {
            var b = buffer[i];
            if (b >= 0x20 || b is (byte)'\t' or (byte)'\n' or (byte)'\r' or 0x0C) continue;
            var gzip = read >= 2 && buffer[0] == 0x1F && buffer[1] == 0x8B ? " It starts as a gzip file does: name it *.gz, and it is decompressed." : "";
            throw new DataFormatException($"{path}: not a text file: byte {i:N0} is 0x{b:X2}, a control character, and a CSV file is text. " +
                $"Is this the right file (Data:Csv:TrainFile / TestFile, or the path given)?{gzip}");
        }
    }

    private static TextReader OpenText(string path) => new StreamReader(OpenBytes(path));

    /// <summary>The file as it is on disk; a pipe (which cannot be read twice, nor by size) is refused by name.</summary>
    /// <exception cref="DataFormatException"><paramref name="path"/> is a pipe, FIFO or terminal.</exception>
    private static FileStream OpenFile(string path) =>
        InputFile.PipeProblem(path, "data file") is { } pipe ? throw new DataFormatException(pipe) : File.OpenRead(path);

    /// <summary>The file's bytes, decompressed for a <c>.gz</c> name.</summary>
    private static Stream OpenBytes(string path)
    {
        var stream = OpenFile(path);
        return path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? new GZipStream(stream, CompressionMode.Decompress) : stream;
    }

    /// <summary>How Data:Csv:IgnoreColumns or Data:Csv:LabelColumn names a column: its header name, else its 0-based index.</summary>
    private static string ColumnSetting(Layout layout, int column) =>
        layout.Header is { } header && column < header.Count && header[column].Length > 0 ? header[column] : column.ToString(CultureInfo.InvariantCulture);

    private static string ColumnName(Layout layout, int column, CsvOptions options)
    {
        var feature = Array.IndexOf(layout.FeatureIndices, column);
        return feature >= 0 ? layout.FeatureColumns[feature] : column == layout.LabelIndex && layout.LabelName is { Length: > 0 } label ? label : $"column {column}";
    }

    /// <summary>
    /// The label column when Data:Csv:LabelColumn is not set: the one header column named <c>label</c> (any case) that is
    /// not in Data:Csv:IgnoreColumns, as Kaggle's Fashion-MNIST and MNIST CSVs put first; otherwise the last column.
    /// </summary>
    private static int DefaultLabelColumn(IReadOnlyList<string>? header, int columnCount, HashSet<int> ignored)
    {
        if (header is null) return columnCount - 1;
        var named = Enumerable.Range(0, header.Count)
            .Where(i => !ignored.Contains(i) && string.Equals(header[i].Trim(), "label", StringComparison.OrdinalIgnoreCase)).ToList();
        return named.Count == 1 ? named[0] : columnCount - 1;
    }

    /// <summary>
    /// As <see cref="FindColumn"/>, for a column a setting names: a number that is a header cell's name at another position
    /// than its own index is refused, as it could mean either, unless the header's numbers count the columns
    /// (<see cref="CountsColumns"/>: pandas' <c>,0,1,2</c>, or <c>1,2,3</c>), whose numbers are names, as they always were.
    /// Other numbers in a header, such as scikit-learn's first line <c>150,4,setosa,...</c>, are most often a data row or a
    /// title read as the header.
    /// </summary>
    /// <exception cref="DataFormatException"><paramref name="name"/> names one column by header name and another by position.</exception>
    private static int FindSettingColumn(string path, string setting, string name, IReadOnlyList<string>? header, int columnCount)
    {
        var index = FindColumn(name, header, columnCount);
        if (header is not null && index >= 0 && int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var position)
            && position < columnCount && position != index && !CountsColumns(header))
            throw new DataFormatException($"{path}: {setting} names '{name}', which is both the header's column {index} (headed '{name}') and column {position} by 0-based position. " +
                "Numbers in a header row are most often a data row or a line of counts: if the file has no header row, set Data:Csv:HasHeader to false " +
                "(and Data:Csv:SkipRows to skip any lines before the data); if that row is its header, rename the cell headed " +
                $"'{name}', or name the column by a header cell that is not a number.");
        return index;
    }

    /// <summary>Finds a column by header name, else by 0-based index; −1 when it is neither.</summary>
    private static int FindColumn(string name, IReadOnlyList<string>? header, int columnCount)
    {
        if (header is not null)
            for (var i = 0; i < header.Count; i++)
                if (string.Equals(header[i], name, StringComparison.Ordinal)) return i;
        return int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var index) && index < columnCount ? index : -1;
    }

    private static Layout MakeLayout(string path, CsvOptions options, IReadOnlyList<string>? header, int columnCount, bool requireLabel,
        IReadOnlyList<string>? expectedFeatures, bool byName)
    {
        string Known() => header is null ? $"the file has {columnCount} columns (0 to {columnCount - 1})" : $"the header has {string.Join(", ", header.Select(h => $"'{h}'"))}";
        // A name that is a number: read as a 0-based index, which is past the last column.
        string IndexNote(string name) =>
            header is null ? "" // Known() gives the range
            : int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var i) && i >= columnCount ? $"; as a 0-based index, {i} is outside 0 to {columnCount - 1}"
            : int.TryParse(name, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _) ? $"; a 0-based index is written without a sign, 0 to {columnCount - 1}"
            : "";
        // One column holding another common separator: the file is split by that one (a semicolon file read with commas, say).
        var firstCell = header?[0] ?? "";
        if (columnCount == 1 && new[] { ';', '\t', '|', ',' }.FirstOrDefault(c => c.ToString() != options.Separator && firstCell.Contains(c)) is var other and not '\0')
            throw new DataFormatException($"{path}: the {(header is null ? "first row" : "header")} reads as one column, '{firstCell}', which holds '{(other == '\t' ? "\\t" : other.ToString())}'. " +
                $"Is that the separator? Set Data:Csv:Separator to \"{(other == '\t' ? "\\t" : other.ToString())}\" (it is '{options.Separator}').");
        var ignored = new HashSet<int>();
        foreach (var name in options.IgnoreColumns)
        {
            var index = FindSettingColumn(path, "Data:Csv:IgnoreColumns", name, header, columnCount);
            // A file scored with a model's columns, found by the header's names: an ignored column it lacks is not needed.
            if (index < 0 && expectedFeatures is not null && byName && header is not null) continue;
            if (index < 0) throw new DataFormatException($"{path}: Data:Csv:IgnoreColumns names '{name}', which is no column: {Known()}{IndexNote(name)}.");
            ignored.Add(index);
        }
        var label = options.LabelColumn.Length == 0 ? DefaultLabelColumn(header, columnCount, ignored) : FindSettingColumn(path, "Data:Csv:LabelColumn", options.LabelColumn, header, columnCount);
        if (label < 0 && requireLabel)
            throw new DataFormatException($"{path}: Data:Csv:LabelColumn = '{options.LabelColumn}' is no column: {Known()}{IndexNote(options.LabelColumn)}. Give the label column's name or 0-based index.");
        if (label >= 0 && ignored.Contains(label) && (requireLabel || options.LabelColumn.Length > 0))
            throw new DataFormatException($"{path}: Data:Csv:IgnoreColumns names the label column ({(header is null ? $"column {label}" : $"'{header[label]}'")}). " +
                "Remove it from IgnoreColumns, or set Data:Csv:LabelColumn to the column that holds the labels.");
        string Name(int i) => header?[i] is { Length: > 0 } h ? h : $"column {i}";

        if (expectedFeatures is not null && byName && header is not null)
            return ByName(path, options, header, label, ignored, requireLabel, expectedFeatures);
        if (expectedFeatures is null || requireLabel)
        {
            var features = Enumerable.Range(0, columnCount).Where(i => i != label && !ignored.Contains(i)).ToArray();
            // A file to score with labels (evaluate), read by position: one column short is a file without its label column,
            // whose last feature would be read as the label.
            if (expectedFeatures is not null && features.Length != expectedFeatures.Count)
                throw new DataFormatException($"{path}: the model reads {expectedFeatures.Count} feature columns and a label, but {Known()}{(options.IgnoreColumns.Count > 0 ? $", {ignored.Count} ignored" : "")}" +
                    (features.Length + 1 == expectedFeatures.Count ? ": no label column? Add each row's label as the last column." : ". Give a file with the training file's columns and the label."));
            if (features.Length == 0)
                throw new DataFormatException($"{path}: no feature columns are left besides the label and the ignored columns ({Known()}; Data:Csv:Separator is '{options.Separator}').");
            return new Layout([.. features.Select(Name)], features, label, columnCount) { LabelName = label >= 0 ? header?[label] : null };
        }
        // A file to score without a header row (or for a model that knows no column names): by position, with or without the label column.
        var positional = Enumerable.Range(0, columnCount).Where(i => !ignored.Contains(i)).ToArray();
        if (positional.Length == expectedFeatures.Count)
            return new Layout(expectedFeatures, positional, -1, columnCount);
        var withoutLabel = positional.Where(i => i != label).ToArray();
        if (label >= 0 && withoutLabel.Length == expectedFeatures.Count)
            return new Layout(expectedFeatures, withoutLabel, label, columnCount);
        throw new DataFormatException($"{path}: the model reads {expectedFeatures.Count} feature columns ({string.Join(", ", expectedFeatures.Take(8))}{(expectedFeatures.Count > 8 ? ", ..." : "")}) but {Known()}{(options.IgnoreColumns.Count > 0 ? $", {ignored.Count} ignored" : "")}. Give a file with the training file's columns, with or without the label.");
    }

    /// <summary>
    /// The layout of a file with a header read with the training file's feature columns: each found by name, in the
    /// training file's order. A feature column the header lacks, or a header column that is none of the features, the
    /// label or an ignored column, is an error naming them.
    /// </summary>
    private static Layout ByName(string path, CsvOptions options, IReadOnlyList<string> header, int label, HashSet<int> ignored, bool requireLabel,
        IReadOnlyList<string> expectedFeatures)
    {
        // A training column with an empty header cell is named "column i" (as pandas' to_csv writes its index column): it is
        // found as the empty cell at that position.
        int Find(string feature)
        {
            var index = FindColumn(feature, header, 0);
            if (index >= 0) return index;
            return feature.StartsWith("column ", StringComparison.Ordinal)
                   && int.TryParse(feature.AsSpan(7), NumberStyles.None, CultureInfo.InvariantCulture, out var position)
                   && position < header.Count && header[position].Length == 0 ? position : -1;
        }
        var indices = expectedFeatures.Select(Find).ToArray();
        // Without Data:Csv:LabelColumn the label is the column headed 'label', else the last column, unless that is a feature: then, in a file that must have
        // a label, it is the one column that is neither a feature nor ignored, wherever it stands; in a file to score, none.
        if (options.LabelColumn.Length == 0 && indices.Contains(label))
        {
            var others = Enumerable.Range(0, header.Count).Where(i => !ignored.Contains(i) && !indices.Contains(i)).ToArray();
            label = requireLabel && others.Length == 1 ? others[0] : -1;
        }
        var missing = expectedFeatures.Where((_, i) => indices[i] < 0).ToList();
        var unknown = header.Where((_, i) => i != label && !ignored.Contains(i) && !indices.Contains(i)).ToList();
        static string List(IEnumerable<string> names) => string.Join(", ", names.Take(8).Select(n => $"'{n}'")) + (names.Count() > 8 ? ", ..." : "");
        if (missing.Count > 0 || unknown.Count > 0)
            throw new DataFormatException($"{path}: columns are matched by name with the training file's, and " +
                (missing.Count > 0 ? $"the header lacks {List(missing)}" : "") + (missing.Count > 0 && unknown.Count > 0 ? "; " : "") +
                (unknown.Count > 0 ? $"{List(unknown)} {(unknown.Count == 1 ? "is" : "are")} not among its columns" : "") +
                $". Name the columns as the training file does ({List(expectedFeatures)}" +
                (!requireLabel ? "" : options.LabelColumn.Length > 0 ? $", label '{options.LabelColumn}'" : ", then the label") +
                $"; in any order){(unknown.Count > 0 ? " and remove the others" : "")}.");
        if (requireLabel && label < 0)
            throw new DataFormatException($"{path}: no label column: the last column, '{header[^1]}', is one of the training file's features. Add the label column, last.");
        return new Layout(expectedFeatures, indices, label, header.Count) { LabelName = label >= 0 ? header[label] : null };
    }
}
