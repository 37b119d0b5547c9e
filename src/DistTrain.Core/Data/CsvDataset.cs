using System.Globalization;
using System.IO.Compression;
using DistTrain.Core.Configuration;
using nietras.SeparatedValues;

namespace DistTrain.Core.Data;

/// <summary>
/// Reads CSV data sets (<see cref="CsvOptions"/>) with the Sep parser: every column but the label and the ignored ones
/// is a numeric feature, read as a float as it is written (no scaling; standardize with Data:Normalization). A value that
/// is not a finite number, or a row with another number of columns, is an error naming the file, line and column.
/// </summary>
public static partial class CsvDataset
{
    /// <summary>Sep's refusal of a header that repeats a name: <c>Col name '0' found 30 times at ...</c>.</summary>
    [System.Text.RegularExpressions.GeneratedRegex(@"^Col name '([^']*)' found (\d+) times", System.Text.RegularExpressions.RegexOptions.CultureInvariant)]
    private static partial System.Text.RegularExpressions.Regex DuplicateColumnName();

    /// <summary>A file's column layout: which columns are features, which is the label.</summary>
    /// <param name="FeatureColumns">Names of the feature columns, in order (the header's, or <c>column N</c>, 0-based, without one).</param>
    /// <param name="FeatureIndices">Their 0-based positions.</param>
    /// <param name="LabelIndex">Position of the label column, or −1 when the file has none (prediction inputs).</param>
    /// <param name="ColumnCount">Columns per row.</param>
    public sealed record Layout(IReadOnlyList<string> FeatureColumns, int[] FeatureIndices, int LabelIndex, int ColumnCount);

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

    /// <summary>As <see cref="Read(string, CsvOptions, LabelVocabulary?)"/>, refusing files of more than <paramref name="maxValues"/> feature values.</summary>
    internal static (LabeledDataset Data, Layout Layout, LabelVocabulary Vocabulary) Read(string path, CsvOptions options, LabelVocabulary? vocabulary, long maxValues)
    {
        var labelCells = new List<string>();
        var (features, layout) = ReadRows(path, options, requireLabel: true, expectedFeatures: null, labelCells, maxValues);
        if (labelCells.Count == 0)
            throw new DataFormatException($"{path}: no data rows. The file needs at least one row of features and a label.");
        vocabulary ??= VocabularyOf(path, labelCells);
        var labels = new byte[labelCells.Count];
        var firstLine = options.SkipRows + (options.HasHeader ? 2 : 1);
        for (var i = 0; i < labels.Length; i++)
        {
            var index = vocabulary.IndexOf(labelCells[i]);
            if (index < 0)
                throw new DataFormatException($"{path}: line {firstLine + i}, column '{ColumnName(layout, layout.LabelIndex, options)}': label '{labelCells[i]}' is not {vocabulary.Describe()}, the training data's classes.");
            labels[i] = (byte)index;
        }
        var names = vocabulary.IntegerLabels ? null : vocabulary.Names;
        return (new LabeledDataset(features, labels, layout.FeatureIndices.Length, vocabulary.ClassCount, names), layout, vocabulary);
    }

    /// <summary>
    /// Reads the feature columns of a file to score (<c>disttrain predict</c>): by the header's names when the model knows
    /// them, else by position, with or without the label column.
    /// </summary>
    /// <param name="path">A <c>.csv</c> file, or <c>.csv.gz</c>.</param>
    /// <param name="options">The settings the model was trained with.</param>
    /// <param name="featureColumns">The training file's feature column names, in order.</param>
    /// <returns>Sample-major features, <c>rows · featureColumns.Count</c> values.</returns>
    /// <exception cref="DataFormatException">The file is missing or malformed, a column is missing or a value is not a number.</exception>
    public static float[] ReadFeatures(string path, CsvOptions options, IReadOnlyList<string> featureColumns) =>
        ReadRows(path, options, requireLabel: false, featureColumns, labelCells: null, Array.MaxLength).Features;

    private static LabelVocabulary VocabularyOf(string path, List<string> cells)
    {
        var integers = new int[cells.Count];
        var allIntegers = true;
        for (var i = 0; i < cells.Count && allIntegers; i++)
            allIntegers = int.TryParse(cells[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out integers[i]);
        if (allIntegers)
        {
            var bad = Array.FindIndex(integers, l => l < 0 || l >= LabelVocabulary.MaxClasses);
            if (bad >= 0)
                throw new DataFormatException($"{path}: label {integers[bad]} (data row {bad + 1}) is not a class index 0 to {LabelVocabulary.MaxClasses - 1}. Write labels as 0-based class indices, or as names.");
            return new LabelVocabulary(null, integers.Max() + 1, IntegerLabels: true);
        }
        var names = cells.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        if (names.Length > LabelVocabulary.MaxClasses)
            throw new DataFormatException($"{path}: {names.Length} distinct labels; at most {LabelVocabulary.MaxClasses} classes are supported. Is Data:Csv:LabelColumn the label column?");
        return new LabelVocabulary(names, names.Length, IntegerLabels: false);
    }

    private static (float[] Features, Layout Layout) ReadRows(string path, CsvOptions options, bool requireLabel,
        IReadOnlyList<string>? expectedFeatures, List<string>? labelCells, long maxValues)
    {
        if (!File.Exists(path))
            throw new DataFormatException($"{path}: CSV file not found. Check Data:Csv:TrainFile / TestFile (or the path given).");
        if (options.Separator.Length != 1)
            throw new DataFormatException($"Data:Csv:Separator = '{options.Separator}' must be one character, such as ',' or ';'.");
        try
        {
            using var text = OpenText(path);
            for (var skipped = 0; skipped < options.SkipRows; skipped++)
                if (text.ReadLine() is null)
                    throw new DataFormatException($"{path}: the file has fewer than Data:Csv:SkipRows = {options.SkipRows} lines.");
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
            Layout? layout = header is null ? null : MakeLayout(path, options, header, header.Count, requireLabel, expectedFeatures);
            var values = new List<float>();
            var firstLine = options.SkipRows + (options.HasHeader ? 2 : 1);
            var row = 0;
            foreach (var record in reader)
            {
                var line = firstLine + row;
                layout ??= MakeLayout(path, options, null, record.ColCount, requireLabel, expectedFeatures);
                if (values.Count + layout.FeatureIndices.Length > maxValues)
                    throw new DataFormatException($"{path}: line {line}: the file holds more than {maxValues:N0} feature values, the most one data set holds in memory. Split the file, or list unused columns in Data:Csv:IgnoreColumns.");
                if (record.ColCount != layout.ColumnCount)
                    throw new DataFormatException($"{path}: line {line} has {record.ColCount} columns but {(header is null ? "the first row" : "the header")} has {layout.ColumnCount}. Every row needs the same columns (check the separator, Data:Csv:Separator = '{options.Separator}').");
                foreach (var column in layout.FeatureIndices)
                {
                    var cell = record[column].Span;
                    if (!float.TryParse(cell, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !float.IsFinite(value))
                        throw new DataFormatException($"{path}: line {line}, column '{ColumnName(layout, column, options)}' (index {column}): '{cell.ToString()}' is not a finite number. Features must be numbers; list non-numeric columns in Data:Csv:IgnoreColumns.");
                    values.Add(value);
                }
                if (layout.LabelIndex >= 0) labelCells?.Add(record[layout.LabelIndex].ToString());
                row++;
            }
            if (layout is null)
                throw new DataFormatException($"{path}: the file is empty.");
            return ([.. values], layout);
        }
        catch (ArgumentException e) when (options.HasHeader && DuplicateColumnName().Match(e.Message) is { Success: true } duplicate)
        {
            // Sep refuses a header that repeats a name; most often the "header" is a first row of numbers.
            throw new DataFormatException($"{path}: the header row (line {options.SkipRows + 1}) names column '{duplicate.Groups[1].Value}' " +
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

    private static TextReader OpenText(string path)
    {
        Stream stream = File.OpenRead(path);
        if (path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase)) stream = new GZipStream(stream, CompressionMode.Decompress);
        return new StreamReader(stream);
    }

    private static string ColumnName(Layout layout, int column, CsvOptions options)
    {
        var feature = Array.IndexOf(layout.FeatureIndices, column);
        return feature >= 0 ? layout.FeatureColumns[feature] : options.HasHeader && column == layout.LabelIndex && options.LabelColumn.Length > 0 ? options.LabelColumn : $"column {column}";
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
        IReadOnlyList<string>? expectedFeatures)
    {
        string Known() => header is null ? $"the file has {columnCount} columns (0 to {columnCount - 1})" : $"the header has {string.Join(", ", header.Select(h => $"'{h}'"))}";
        var ignored = new HashSet<int>();
        foreach (var name in options.IgnoreColumns)
        {
            var index = FindColumn(name, header, columnCount);
            if (index < 0) throw new DataFormatException($"{path}: Data:Csv:IgnoreColumns names '{name}', which is no column: {Known()}.");
            ignored.Add(index);
        }
        var label = options.LabelColumn.Length == 0 ? columnCount - 1 : FindColumn(options.LabelColumn, header, columnCount);
        if (label < 0 && requireLabel)
            throw new DataFormatException($"{path}: Data:Csv:LabelColumn = '{options.LabelColumn}' is no column: {Known()}. Give the label column's name or 0-based index.");
        string Name(int i) => header?[i] is { Length: > 0 } h ? h : $"column {i}";

        if (expectedFeatures is null)
        {
            var features = Enumerable.Range(0, columnCount).Where(i => i != label && !ignored.Contains(i)).ToArray();
            if (features.Length == 0)
                throw new DataFormatException($"{path}: no feature columns are left besides the label and the ignored columns ({Known()}).");
            return new Layout([.. features.Select(Name)], features, label, columnCount);
        }
        // A file to score: the model's feature columns by name, or by position with or without the label column.
        if (header is not null && expectedFeatures.All(f => header.Contains(f)))
        {
            var indices = expectedFeatures.Select(f => header.ToList().IndexOf(f)).ToArray();
            return new Layout(expectedFeatures, indices, -1, columnCount);
        }
        var positional = Enumerable.Range(0, columnCount).Where(i => !ignored.Contains(i)).ToArray();
        if (positional.Length == expectedFeatures.Count)
            return new Layout(expectedFeatures, positional, -1, columnCount);
        var withoutLabel = positional.Where(i => i != label).ToArray();
        if (label >= 0 && withoutLabel.Length == expectedFeatures.Count)
            return new Layout(expectedFeatures, withoutLabel, label, columnCount);
        throw new DataFormatException($"{path}: the model reads {expectedFeatures.Count} feature columns ({string.Join(", ", expectedFeatures.Take(8))}{(expectedFeatures.Count > 8 ? ", ..." : "")}) but {Known()}{(options.IgnoreColumns.Count > 0 ? $", {ignored.Count} ignored" : "")}. Give a file with the training file's columns, with or without the label.");
    }
}
