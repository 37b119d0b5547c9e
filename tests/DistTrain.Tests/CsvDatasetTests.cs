using System.Diagnostics;
using System.IO.Compression;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;

namespace DistTrain.Tests;

/// <summary>CSV data sets: columns, labels, errors that name the file, line and column, and the reproducible test split.</summary>
public class CsvDatasetTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-csv-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string Write(string name, string text)
    {
        var path = Path.Combine(_directory, name);
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public void A_file_without_a_header_read_as_having_one_is_refused_saying_so()
    {
        var path = Write("no-header.csv", "0,0,5,0,1\n0,3,0,0,2\n");
        var error = Assert.Throws<DataFormatException>(() => CsvDataset.Read(path, new CsvOptions()));
        Assert.Equal($"{path}: the header row (line 1) names column '0' 3 times, and column names must be unique. If that row is data, the file has " +
            "no header row: set Data:Csv:HasHeader to false (a model trained on such a file reads its CSV files that way).", error.Message);
        Assert.Equal(2, CsvDataset.Read(path, new CsvOptions { HasHeader = false }).Data.Count);
    }

    /// <summary>
    /// A binary file given as CSV is refused as not text, naming the first control byte: random bytes used to reach the
    /// header's checks, which echoed them to the terminal as a column name. A gzip file without its .gz name is told so; text
    /// with tabs, CR-LF line ends and UTF-8 names still reads.
    /// </summary>
    [Fact]
    public void A_binary_file_given_as_CSV_is_refused_as_not_text_naming_the_byte()
    {
        var binary = Path.Combine(_directory, "weights.csv");
        File.WriteAllBytes(binary, [(byte)'a', (byte)',', (byte)'b', 0x0A, 0x31, 0x2C, 0x00, 0x32]);
        Assert.Equal($"{binary}: not a text file: byte 6 is 0x00, a control character, and a CSV file is text. " +
            "Is this the right file (Data:Csv:TrainFile / TestFile, or the path given)?", Assert.Throws<DataFormatException>(() => CsvDataset.Read(binary, new CsvOptions())).Message);
        var gzipped = Path.Combine(_directory, "gzipped.csv");
        using (var output = new GZipStream(File.Create(gzipped), CompressionLevel.Fastest))
            output.Write("x,label\n1,0\n2,1\n"u8);
        Assert.EndsWith("It starts as a gzip file does: name it *.gz, and it is decompressed.",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(gzipped, new CsvOptions())).Message);
        File.Move(gzipped, gzipped + ".gz");
        Assert.Equal(2, CsvDataset.Read(gzipped + ".gz", new CsvOptions()).Data.Count);
        var text = Write("tabs.csv", "größe\tlabel\r\n1.5\tcat\r\n2\tdog\r\n");
        Assert.Equal([1.5f, 2f], CsvDataset.Read(text, new CsvOptions { Separator = "\t" }).Data.Features);
    }

    [Fact]
    public void Name_labels_are_numbered_in_sorted_order_and_features_read_as_written()
    {
        var path = Write("animals.csv", "weight,height,label\n1.5,2,cat\n3,-4e-1,dog\n5,6,ant\n7,8,cat\n");
        var (data, layout, vocabulary) = CsvDataset.Read(path, new CsvOptions { LabelColumn = "label" });
        Assert.Equal(["ant", "cat", "dog"], data.ClassNames!);
        Assert.Equal([1, 2, 0, 1], data.Labels.Select(l => (int)l));
        Assert.Equal([1.5f, 2, 3, -0.4f, 5, 6, 7, 8], data.Features);
        Assert.Equal(["weight", "height"], layout.FeatureColumns);
        Assert.False(vocabulary.IntegerLabels);
    }

    [Fact]
    public void Integer_labels_are_class_indices_and_a_test_file_is_read_with_the_training_files_classes()
    {
        var train = Write("train.csv", "0.5,0.25,2\n1,1,0\n");
        var (data, _, vocabulary) = CsvDataset.Read(train, new CsvOptions { HasHeader = false });
        Assert.Null(data.ClassNames);
        Assert.Equal(3, data.ClassCount);
        Assert.Equal([2, 0], data.Labels.Select(l => (int)l));
        var test = CsvDataset.Read(Write("test.csv", "1,2,1\n"), new CsvOptions { HasHeader = false }, vocabulary).Data;
        Assert.Equal(3, test.ClassCount);
        var error = Assert.Throws<DataFormatException>(() => CsvDataset.Read(Write("bad.csv", "1,2,1\n3,4,7\n"), new CsvOptions { HasHeader = false }, vocabulary));
        Assert.Contains("bad.csv: line 2", error.Message);
        Assert.Contains("label '7' is not a class index 0 to 2", error.Message);
    }

    [Fact]
    public void Whole_number_labels_written_as_floats_are_class_indices_as_the_integers_are()
    {
        // pandas writes an integer column that held a missing value as floats, NumPy's savetxt every number.
        var options = new CsvOptions { HasHeader = false };
        var (floats, _, vocabulary) = CsvDataset.Read(Write("floats.csv", "0.5,0.25,2.0\n1,1,0.0\n3,3,1e0\n"), options);
        var integers = CsvDataset.Read(Write("integers.csv", "0.5,0.25,2\n1,1,0\n3,3,1\n"), options).Data;
        Assert.Null(floats.ClassNames);
        Assert.Equal(integers.ClassCount, floats.ClassCount);
        Assert.Equal(integers.Labels, floats.Labels);
        Assert.Equal([1], CsvDataset.Read(Write("test.csv", "1,2,1.0\n"), options, vocabulary).Data.Labels.Select(l => (int)l));
        // A fraction keeps them names, as before.
        Assert.Equal(["0.5", "2"], CsvDataset.Read(Write("fraction.csv", "1,1,0.5\n2,2,2\n"), options).Data.ClassNames!);
    }

    [Fact]
    public void The_label_column_is_found_by_name_or_index_and_ignored_columns_are_skipped()
    {
        var withHeader = Write("h.csv", "id,x1,y,x2\n10,1,a,2\n11,3,b,4\n");
        var (byName, layout, _) = CsvDataset.Read(withHeader, new CsvOptions { LabelColumn = "y", IgnoreColumns = ["id"] });
        Assert.Equal([1f, 2, 3, 4], byName.Features);
        Assert.Equal(["x1", "x2"], layout.FeatureColumns);
        var withoutHeader = Write("n.csv", "10,1,a,2\n11,3,b,4\n");
        var (byIndex, _, _) = CsvDataset.Read(withoutHeader, new CsvOptions { HasHeader = false, LabelColumn = "2", IgnoreColumns = ["0"] });
        Assert.Equal(byName.Features, byIndex.Features);
        Assert.Equal(byName.Labels, byIndex.Labels);
        var missing = Assert.Throws<DataFormatException>(() => CsvDataset.Read(withHeader, new CsvOptions { LabelColumn = "class" }));
        Assert.Contains("Data:Csv:LabelColumn = 'class' is no column: the header has 'id', 'x1', 'y', 'x2'", missing.Message);
    }

    [Fact]
    public void An_empty_label_is_refused_naming_its_line_not_read_as_a_class_named_empty()
    {
        // Before, the empty cell became a class named '' (sorted first), which shifted every class index by one, and trained.
        var path = Write("empty-label.csv", "x,y,label\n1,2,0\n3,4,\n5,6,1\n");
        var error = Assert.Throws<DataFormatException>(() => CsvDataset.Read(path, new CsvOptions()));
        Assert.Equal($"{path}: line 3, column 'label' (index 2), the label, is empty: every row needs a label. Fill it in, or drop the row.", error.Message);
        // A file to score has no label to check: its empty last cells are nobody's business when the label is not read.
        Assert.Equal([1f, 2, 3, 4, 5, 6], CsvDataset.ReadFeatures(Write("score.csv", "x,y\n1,2\n3,4\n5,6\n"), new CsvOptions(), ["x", "y"]));
    }

    /// <summary>
    /// An empty file, or one of blank lines, is called empty whatever Data:Csv:HasHeader says: with the default (true) it
    /// was "no header row ... Set HasHeader to false", after which it was "the file is empty".
    /// </summary>
    [Fact]
    public void An_empty_file_is_called_empty_with_or_without_a_header_row()
    {
        foreach (var hasHeader in new[] { true, false })
        {
            var empty = Write($"empty-{hasHeader}.csv", "");
            Assert.Equal($"{empty}: the file is empty.", Assert.Throws<DataFormatException>(() => CsvDataset.Read(empty, new CsvOptions { HasHeader = hasHeader })).Message);
            var blank = Write($"blank-{hasHeader}.csv", "\n  \n\n");
            Assert.Equal($"{blank}: the file is empty (it holds blank lines only).",
                Assert.Throws<DataFormatException>(() => CsvDataset.Read(blank, new CsvOptions { HasHeader = hasHeader })).Message);
        }
        var title = Write("title-only.csv", "Wine data\n");
        Assert.Equal($"{title}: the file is empty after the Data:Csv:SkipRows = 1 lines skipped.",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(title, new CsvOptions { SkipRows = 1 })).Message);
    }

    [Fact]
    public void A_whole_number_label_beyond_any_class_index_is_called_out_of_range_not_a_name()
    {
        // Before: "'3000000000' is not a whole number, so every label was read as a name".
        foreach (var big in new[] { "3000000000", "100000000000", "-3000000000", "1e12" })
        {
            var path = Write($"big-{big}.csv", $"x,label\n1,0\n2,{big}\n3,1\n");
            Assert.Equal($"{path}: label {big} (line 3, column 'label') is not a class index 0 to 255. Write labels as 0-based class indices, or as names.",
                Assert.Throws<DataFormatException>(() => CsvDataset.Read(path, new CsvOptions())).Message);
        }
        // The default took the last column (scikit-learn's wine CSV puts the class first, headed 'target'): the message says
        // so and names the setting; it used to tell the user to rewrite their labels.
        var wine = Write("wine.csv", "target,alcohol,proline\n0,14.23,1065\n1,12.37,520\n2,13.17,740\n");
        Assert.Equal($"{wine}: label 1065 (line 2, column 'proline') is not a class index 0 to 255. Write labels as 0-based class indices, or as names. " +
            "The labels were read from the last column, 'proline', as Data:Csv:LabelColumn is not set and no column is headed 'label': if they are in " +
            "another column, set Data:Csv:LabelColumn to its header name or 0-based index.",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(wine, new CsvOptions())).Message);
        Assert.Equal([0, 1, 2], CsvDataset.Read(wine, new CsvOptions { LabelColumn = "target" }).Data.Labels.Select(l => (int)l));
        // A fraction among them is a name, as before.
        Assert.Equal(["0", "1", "1.5"], CsvDataset.Read(Write("fraction.csv", "x,label\n1,0\n2,1.5\n3,1\n"), new CsvOptions()).Data.ClassNames!);
    }

    [Fact]
    public void A_column_setting_that_is_one_columns_header_name_and_another_columns_position_is_refused_as_ambiguous()
    {
        // scikit-learn's iris.csv starts with "150,4,setosa,versicolor,virginica": read as a header, '4' is column 1's name.
        var path = Write("counts.csv", "150,4,setosa,versicolor,virginica\n5.1,3.5,1.4,0.2,0\n4.9,3.0,1.4,0.2,1\n");
        var error = Assert.Throws<DataFormatException>(() => CsvDataset.Read(path, new CsvOptions { LabelColumn = "4" }));
        Assert.Equal($"{path}: Data:Csv:LabelColumn names '4', which is both the header's column 1 (headed '4') and column 4 by 0-based position. " +
            "Numbers in a header row are most often a data row or a line of counts: if the file has no header row, set Data:Csv:HasHeader to false (and " +
            "Data:Csv:SkipRows to skip any lines before the data); if that row is its header, rename the cell headed '4', or name the column by a header cell " +
            "that is not a number.", error.Message);
        Assert.Contains("Data:Csv:IgnoreColumns names '4'", Assert.Throws<DataFormatException>(() => CsvDataset.Read(path, new CsvOptions { IgnoreColumns = ["4"] })).Message);
        // As the README's sklearn configs read it: the first line skipped, no header.
        var (data, _, _) = CsvDataset.Read(path, new CsvOptions { LabelColumn = "4", HasHeader = false, SkipRows = 1 });
        Assert.Equal([0, 1], data.Labels.Select(l => (int)l));
        // A number that names its own position, or a header cell with no other column at that position, is not ambiguous.
        Assert.Equal(2, CsvDataset.Read(Write("own.csv", "a,1,label\n1,2,0\n3,4,1\n"), new CsvOptions { LabelColumn = "2" }).Data.Count);
        Assert.Equal(2, CsvDataset.Read(Write("named.csv", "7,b,label\n1,2,0\n3,4,1\n"), new CsvOptions { IgnoreColumns = ["7"] }).Data.Count);
        // A header whose numbers count the columns names them, as before: pandas' to_csv with its index column (",0,1,2"), and
        // a count from 1.
        var pandas = CsvDataset.Read(Write("pandas.csv", ",0,1,2\n0,5,6,1\n1,7,8,0\n"), new CsvOptions { LabelColumn = "2", IgnoreColumns = ["0"] });
        Assert.Equal([1, 0], pandas.Data.Labels.Select(l => (int)l));
        Assert.Equal([0f, 6, 1, 8], pandas.Data.Features); // '0' is the column headed 0 (ignored), not the index column at position 0
        var fromOne = CsvDataset.Read(Write("from-one.csv", "1,2,3\n5,6,1\n7,8,0\n"), new CsvOptions { IgnoreColumns = ["2"] });
        Assert.Equal([5f, 7], fromOne.Data.Features);
    }

    [Fact]
    public void A_labelled_file_without_a_header_that_lacks_the_label_column_says_so()
    {
        // evaluate on rows of features only: the last feature was read as the label ("label '4' is not a class index 0 to 2").
        var noHeader = new CsvOptions { HasHeader = false };
        var train = CsvDataset.Read(Write("train.csv", "1,2,0\n3,4,1\n5,6,2\n"), noHeader);
        var path = Write("features-only.csv", "1,2\n3,4\n");
        Assert.Equal($"{path}: the model reads 2 feature columns and a label, but the file has 2 columns (0 to 1): no label column? Add each row's label as the last column.",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(path, noHeader, train.Vocabulary, train.Layout.FeatureColumns)).Message);
        Assert.Equal([1, 2], CsvDataset.Read(Write("labelled.csv", "1,2,1\n3,4,2\n"), noHeader, train.Vocabulary, train.Layout.FeatureColumns).Data.Labels.Select(l => (int)l));
    }

    [Fact]
    public void A_header_row_of_numbers_is_warned_of_and_a_first_line_with_fewer_columns_hints_at_SkipRows()
    {
        var numbers = Write("numbers.csv", "5.1,3.5,0\n4.9,3.0,1\n4.7,3.2,1\n");
        var file = CsvDataset.ReadFile(numbers, new CsvOptions(), vocabulary: null, featureColumns: null, maxValues: long.MaxValue);
        Assert.Equal($"{numbers}: every cell of the header row is a number ('5.1', '3.5', '0'), so it is probably a data row, which is then not trained on. " +
            "If the file has no header row, set Data:Csv:HasHeader to false.", file.Labels.HeaderWarning);
        Assert.Null(CsvDataset.ReadFile(Write("named.csv", "x,y,label\n1,2,0\n3,4,1\n"), new CsvOptions(), null, null, long.MaxValue).Labels.HeaderWarning);
        // Numbers that count the columns are a header's names (pandas' to_csv, or a count from 1): no warning.
        Assert.Null(CsvDataset.ReadFile(Write("count.csv", "1,2,3\n5,6,1\n7,8,0\n"), new CsvOptions(), null, null, long.MaxValue).Labels.HeaderWarning);
        Assert.Null(CsvDataset.ReadFile(Write("pandas.csv", ",0,1\n0,5,1\n1,7,0\n"), new CsvOptions(), null, null, long.MaxValue).Labels.HeaderWarning);
        // scikit-learn's breast_cancer.csv: a line of counts, then 31 columns a row.
        var counts = Write("counts.csv", "3,5,malignant,benign\n1,2,3,4,5,0\n6,7,8,9,10,1\n");
        Assert.EndsWith("If line 1 is not the header (a title, or a line of counts as scikit-learn's data files start with), skip it with Data:Csv:SkipRows = 1, " +
            "and set Data:Csv:HasHeader to false if no header row follows it.", Assert.Throws<DataFormatException>(() => CsvDataset.Read(counts, new CsvOptions())).Message);
        Assert.Equal(2, CsvDataset.Read(counts, new CsvOptions { SkipRows = 1, HasHeader = false }).Data.Count);
        // Without a header row the first row sets the columns, and the hint comes at the second; a blank line before the title
        // counts in the SkipRows it gives.
        var titled = Write("titled.csv", "\n569,2\n1,2,3,4,5,0\n6,7,8,9,10,1\n");
        Assert.EndsWith("If line 2 is not a data row (a title, or a line of counts as scikit-learn's data files start with), skip it with Data:Csv:SkipRows = 2.",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(titled, new CsvOptions { HasHeader = false })).Message);
        Assert.Equal(2, CsvDataset.Read(titled, new CsvOptions { SkipRows = 2, HasHeader = false }).Data.Count);
    }

    [Fact]
    public void A_value_that_is_not_a_number_names_the_file_line_and_column()
    {
        var path = Write("bad.csv", "x1,x2,label\n1,2,0\n3,abc,1\n");
        var error = Assert.Throws<DataFormatException>(() => CsvDataset.Read(path, new CsvOptions()));
        Assert.Contains($"{path}: line 3, column 'x2' (index 1): 'abc' is not a number", error.Message);
        Assert.Contains("Data:Csv:IgnoreColumns", error.Message);
        var nan = Assert.Throws<DataFormatException>(() => CsvDataset.Read(Write("nan.csv", "x,label\nNaN,0\n"), new CsvOptions()));
        Assert.Contains("line 2, column 'x'", nan.Message);
        // An empty cell, as a missing value is written: said to be empty, not a non-numeric column to ignore.
        var emptyPath = Write("empty.csv", "x,y,label\n1,2,0\n3, ,1\n");
        var empty = Assert.Throws<DataFormatException>(() => CsvDataset.Read(emptyPath, new CsvOptions()));
        Assert.Equal($"{emptyPath}: line 3, column 'y' (index 1) is empty, a missing value: {Missing(emptyPath, ", skipinitialspace=True")}", empty.Message);
        var emptyNoHeader = Write("empty-no-header.csv", "1,2,0\n,4,1\n");
        Assert.Equal($"{emptyNoHeader}: line 2, column 'column 0' (index 0) is empty, a missing value: {Missing(emptyNoHeader, ", header=None", ", header=False")}",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(emptyNoHeader, new CsvOptions { HasHeader = false })).Message);
        // A decimal comma, as a European locale writes with ';' between columns: the hint gives the number with a point.
        var comma = Assert.Throws<DataFormatException>(() => CsvDataset.Read(Write("comma.csv", "a;b;label\n5,1;3,5;0\n"), new CsvOptions { Separator = ";" }));
        Assert.Contains("line 2, column 'a' (index 0): '5,1' is not a number: a decimal comma? Numbers are read with a decimal point ('5.1')", comma.Message);
        Assert.Null(CsvDataset.DecimalComma("1,2,3"));
        Assert.Null(CsvDataset.DecimalComma("a,b"));
        Assert.Null(CsvDataset.DecimalComma("1.5,2"));
        Assert.Equal("-0.25", CsvDataset.DecimalComma("-0,25"));
        var thousands = Assert.Throws<DataFormatException>(() => CsvDataset.Read(Write("thousands.csv", "a;label\n1,000;0\n"), new CsvOptions { Separator = ";" }));
        Assert.Contains("'1,000' is not a number: a decimal comma ('1.000') or a thousands separator ('1000')?", thousands.Message);
    }

    /// <summary>
    /// An infinity (<c>inf</c>, as NumPy and pandas write it) or stray text in a numeric feature column was told "list
    /// non-numeric columns in Data:Csv:IgnoreColumns", which drops a feature the model needs from every row. The message
    /// names the value, line and column, says what is wrong with it, and gives the fix: correct the value (or drop the line);
    /// IgnoreColumns only if the column is not a wanted feature. Text on the first row of data may be a text column: both.
    /// </summary>
    [Fact]
    public void An_infinity_or_a_stray_value_in_a_numeric_column_is_told_to_be_corrected_not_ignored()
    {
        const string ignoreOnly = "list 'b' in Data:Csv:IgnoreColumns only if it is not a feature the model should read (that leaves the whole column out).";
        foreach (var inf in new[] { "inf", "-inf", "+Inf", "INF", "infinity", "Infinity", "-Infinity" })
        {
            var path = Write("inf.csv", $"a,b,label\n1,2,0\n3,4,1\n5,{inf},0\n");
            Assert.Equal($"{path}: line 4, column 'b' (index 1): '{inf}' is an infinite value, and features must be finite numbers. Replace it in a copy of " +
                $"the file (for example with the column's largest finite value), or drop line 4; {ignoreOnly}",
                Assert.Throws<DataFormatException>(() => CsvDataset.Read(path, new CsvOptions())).Message);
        }
        // On the first row of data too: an infinity is not text, so it is not taken for a label column.
        var first = Write("inf-first.csv", "a,b,label\n1,inf,0\n3,4,1\n");
        Assert.Equal($"{first}: line 2, column 'b' (index 1): 'inf' is an infinite value, and features must be finite numbers. Replace it in a copy of " +
            $"the file (for example with the column's largest finite value), or drop line 2; {ignoreOnly}",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(first, new CsvOptions())).Message);
        // Stray text after rows of numbers, counted, without a header row (the column named by its index).
        var stray = Write("stray-rows.csv", "1,2,0\n3,4,1\n5,6,0\n7,x7,1\n");
        Assert.Equal($"{stray}: line 4, column 'column 1' (index 1): 'x7' is not a number, in a column that held numbers on the 3 rows before it: a stray " +
            "value. Correct it in a copy of the file, or drop line 4; list '1' in Data:Csv:IgnoreColumns only if it is not a feature the model should read " +
            "(that leaves the whole column out).", Assert.Throws<DataFormatException>(() => CsvDataset.Read(stray, new CsvOptions { HasHeader = false })).Message);
        // Text on the first row, read without a label (a file predict reads): a text column to ignore, or a stray value to correct.
        var text = Write("text-first.csv", "a,b\n1,abc\n3,4\n");
        Assert.Equal($"{text}: line 2, column 'b' (index 1): 'abc' is not a number, and features must be numbers. If 'b' holds text rather than a feature, " +
            "list it in Data:Csv:IgnoreColumns ('b'); if it holds numbers and this cell is a stray value, correct it in a copy of the file.",
            Assert.Throws<DataFormatException>(() => CsvDataset.ReadFeatures(text, new CsvOptions(), ["a", "b"])).Message);
        // A value beyond float32's range keeps its own advice.
        Assert.EndsWith("'1e39' is outside the range of float32 (±3.4E+38), in which features are held. Rescale the column.",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(Write("wide.csv", "a,b,label\n1,2,0\n3,1e39,1\n"), new CsvOptions())).Message);
    }

    /// <summary>
    /// The end of the error for a missing feature value in <paramref name="path"/>: no setting drops or fills rows, so it gives
    /// the pandas lines that do, for this file (<paramref name="read"/>: read_csv's arguments after the path;
    /// <paramref name="write"/>: to_csv's after index=False), writing the copy beside it as NAME-complete.csv.
    /// </summary>
    private static string Missing(string path, string read = "", string write = "", string end = ".")
    {
        var copy = Path.Combine(Path.GetDirectoryName(path)!, Path.GetFileNameWithoutExtension(path.EndsWith(".gz", StringComparison.Ordinal) ? path[..^3] : path) + "-complete.csv");
        var to = $".to_csv('{copy}', index=False{write})";
        return "every feature needs a value, and DistTrain has no setting that drops or fills rows with missing values. Drop those rows, or fill the " +
            $"missing cells (for example with the column's mean), in a copy of the file; with pandas: df = pandas.read_csv('{path}'{read}), then " +
            $"df.dropna(){to} drops them, or df.fillna(df.mean(numeric_only=True)){to} fills them{end}";
    }

    /// <summary>
    /// A missing value written as a marker (NA, ?, NaN, null, N/A) was refused as "'NA' is not a finite number. Features
    /// must be numbers; list non-numeric columns in Data:Csv:IgnoreColumns": the column holds numbers, and ignoring it would
    /// drop the feature from every row. An empty cell was told to be filled or its row dropped, without how. Both now say
    /// the cell is a missing value, that no setting drops or fills rows, and give the pandas lines that do for this file
    /// (na_values for a marker pandas does not know, its separator, header row and skipped lines). Other text keeps the
    /// IgnoreColumns advice.
    /// </summary>
    [Fact]
    public void A_missing_value_marker_or_empty_cell_is_named_as_missing_with_the_pandas_lines_that_drop_or_fill_it()
    {
        foreach (var (marker, read) in new[] { ("NA", ""), ("?", ", na_values=['?']"), ("NaN", ""), ("nan", ""), ("null", ""), ("N/A", ""), ("NAN", ", na_values=['NAN']") })
        {
            var path = Write("missing.csv", $"a,b,label\n1,2,0\n3,{marker},1\n");
            Assert.Equal($"{path}: line 3, column 'b' (index 1): '{marker}' marks a missing value: {Missing(path, read)}",
                Assert.Throws<DataFormatException>(() => CsvDataset.Read(path, new CsvOptions())).Message);
        }
        // Cells are read trimmed, so '  NA' is NA; pandas reads it so with skipinitialspace.
        var spaced = Write("spaced.csv", "a,b,label\n1,  NA,0\n");
        Assert.Equal($"{spaced}: line 2, column 'b' (index 1): 'NA' marks a missing value: {Missing(spaced, ", skipinitialspace=True")}",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(spaced, new CsvOptions())).Message);
        // A tab-separated file without a header row after a line of counts: the lines read and write it so, and the copy skips nothing.
        var tsv = Write("counts.tsv.gz", "");
        using (var gzip = new GZipStream(File.Create(tsv), CompressionLevel.Fastest))
            gzip.Write("2\t2\n1\t2\t0\n?\t4\t1\n"u8);
        Assert.Equal($"{tsv}: line 3, column 'column 0' (index 0): '?' marks a missing value: " +
            Missing(tsv, ", sep='\\t', header=None, skiprows=1, na_values=['?']", ", header=False, sep='\\t'", ", and the copy has no lines to skip at its top (Data:Csv:SkipRows 0)."),
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(tsv, new CsvOptions { Separator = "\t", HasHeader = false, SkipRows = 1 })).Message);
        Assert.EndsWith(Path.Combine(_directory, "counts-complete.csv") + "', index=False, header=False, sep='\\t') fills them, and the copy has no lines to skip at its top (Data:Csv:SkipRows 0).",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(tsv, new CsvOptions { Separator = "\t", HasHeader = false, SkipRows = 1 })).Message);
        // Text that marks no missing value, after a row of numbers, is a stray value to correct, not a missing one.
        var text = Write("text.csv", "a,b,label\n1,2,0\n3,-,1\n");
        Assert.EndsWith("'-' is not a number, in a column that held numbers on the 1 row before it: a stray value. Correct it in a copy of the file, " +
            "or drop line 3; list 'b' in Data:Csv:IgnoreColumns only if it is not a feature the model should read (that leaves the whole column out).",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(text, new CsvOptions())).Message);
    }

    /// <summary>
    /// A text column in the first row, with Data:Csv:LabelColumn on another column, is most often the labels: iris read with
    /// LabelColumn 0 was told only "'setosa' is not a finite number ... list non-numeric columns in Data:Csv:IgnoreColumns",
    /// blaming the species column. The message names the column the labels are read from and suggests the text column;
    /// a stray value on a later row, or a missing-value marker, keeps the plain message.
    /// </summary>
    [Fact]
    public void A_text_column_in_the_first_row_is_suggested_as_the_label_column_naming_the_one_read()
    {
        var iris = Write("iris.csv", "sepal_length,sepal_width,species\n5.1,3.5,setosa\n4.9,3.0,versicolor\n");
        var byIndex = Assert.Throws<DataFormatException>(() => CsvDataset.Read(iris, new CsvOptions { LabelColumn = "0" }));
        Assert.Equal($"{iris}: line 2, column 'species' (index 2): 'setosa' is not a finite number. Features must be numbers. The labels are read from column " +
            "'sepal_length' (index 0; Data:Csv:LabelColumn = '0'), whose cell on this line, '5.1', is a number, and 'species' is the only column read on this line " +
            "that is not: if 'species' holds the labels, set Data:Csv:LabelColumn to 'species'; otherwise list it in Data:Csv:IgnoreColumns.", byIndex.Message);
        // The column it suggests reads.
        var read = CsvDataset.Read(iris, new CsvOptions { LabelColumn = "species" }).Data;
        Assert.Equal(new[] { "setosa", "versicolor" }, read.ClassNames);
        Assert.Equal([5.1f, 3.5f, 4.9f, 3.0f], read.Features);

        // Without a header row and without LabelColumn, the last column is the label: the text column is suggested by index.
        var rows = Write("rows.csv", "5.1,setosa,0.2\n4.9,versicolor,0.3\n");
        Assert.Equal($"{rows}: line 1, column 'column 1' (index 1): 'setosa' is not a finite number. Features must be numbers. The labels are read from column " +
            "'column 2' (index 2; Data:Csv:LabelColumn is not set: the column headed 'label', else the last), whose cell on this line, '0.2', is a number, and " +
            "'column 1' is the only column read on this line that is not: if 'column 1' holds the labels, set Data:Csv:LabelColumn to '1'; otherwise list it in Data:Csv:IgnoreColumns.",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(rows, new CsvOptions { HasHeader = false })).Message);
        Assert.Equal(new[] { "setosa", "versicolor" }, CsvDataset.Read(rows, new CsvOptions { HasHeader = false, LabelColumn = "1" }).Data.ClassNames);

        // Another text column (an id) besides it: ignoring it is given first, the label column still named.
        var ids = Write("ids.csv", "id,name,x,label\nabc,foo,1,0\n");
        Assert.Equal($"{ids}: line 2, column 'id' (index 0): 'abc' is not a finite number. Features must be numbers: list non-numeric columns in " +
            "Data:Csv:IgnoreColumns, or, if 'id' holds the labels, set Data:Csv:LabelColumn to 'id'. The labels are read from column 'label' (index 3; " +
            "Data:Csv:LabelColumn is not set: the column headed 'label', else the last).",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(ids, new CsvOptions())).Message);

        // A stray value after rows of numbers, and a missing-value marker, are not the labels; the marker is a missing value.
        var stray = Write("stray.csv", "a,b,label\n1,2,0\n3,abc,1\n");
        Assert.Equal($"{stray}: line 3, column 'b' (index 1): 'abc' is not a number, in a column that held numbers on the 1 row before it: a stray value. " +
            "Correct it in a copy of the file, or drop line 3; list 'b' in Data:Csv:IgnoreColumns only if it is not a feature the model should read " +
            "(that leaves the whole column out).", Assert.Throws<DataFormatException>(() => CsvDataset.Read(stray, new CsvOptions())).Message);
        var marker = Write("marker.csv", "a,b,label\n1,NA,0\n");
        Assert.Equal($"{marker}: line 2, column 'b' (index 1): 'NA' marks a missing value: {Missing(marker)}", Assert.Throws<DataFormatException>(() => CsvDataset.Read(marker, new CsvOptions())).Message);
    }

    /// <summary>
    /// Lines that end with the separator (<c>a,b,c,</c>) make an empty last column: it was reported as a feature's missing
    /// value ("column 'column 5' (index 5) is empty: every feature needs a value"). The message says the line ends with the
    /// separator and gives the two fixes, and ignoring the column as it says reads the file. A header row ending so leaves
    /// the column unnamed (pandas' "Unnamed: 3"); rows ending so under a header that does not have one more column than it.
    /// </summary>
    [Fact]
    public void Lines_ending_with_the_separator_are_said_to_and_ignoring_the_column_reads_them()
    {
        var both = Write("trailing.csv", "a,b,label,\n1,2,0,\n3,4,1,\n");
        Assert.Equal($"{both}: line 2 ends with the separator (','), so its last column, 'column 3' (index 3), is empty, and the header row ends with the separator " +
            "too, so the column has no name (pandas reads it as 'Unnamed: 3', of missing values). Remove the separators at the ends of the lines, or list the column " +
            "in Data:Csv:IgnoreColumns ('3').", Assert.Throws<DataFormatException>(() => CsvDataset.Read(both, new CsvOptions())).Message);
        var ignored = CsvDataset.Read(both, new CsvOptions { IgnoreColumns = ["3"] }).Data;
        Assert.Equal([1f, 2, 3, 4], ignored.Features);
        Assert.Equal(new[] { 0, 1 }, ignored.Labels.Select(l => (int)l).ToArray());

        // Quoted and spaced cells, and a tab separator, are read the same way.
        var quoted = Write("quoted.tsv", "\"a\"\t\"b\"\t\"label\"\t\n\"1\"\t 2 \t\"0\"\t \n");
        Assert.StartsWith($"{quoted}: line 2 ends with the separator ('\\t'), so its last column, 'column 3' (index 3), is empty, and the header row ends",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(quoted, new CsvOptions { Separator = "\t" })).Message);

        // The last column as the label (no column headed 'label'): it must be named, as the last one is then ignored.
        var species = Write("species.csv", "a,b,species,\n1,2,x,\n3,4,y,\n");
        Assert.Equal($"{species}: line 2 ends with the separator (','), so its last column, 'column 3' (index 3), read as the label (Data:Csv:LabelColumn is not set: " +
            "the column headed 'label', else the last), is empty, and the header row ends with the separator too, so the column has no name (pandas reads it as " +
            "'Unnamed: 3', of missing values). Remove the separators at the ends of the lines, or list the column in Data:Csv:IgnoreColumns ('3') and set " +
            "Data:Csv:LabelColumn to the column that holds the labels.", Assert.Throws<DataFormatException>(() => CsvDataset.Read(species, new CsvOptions())).Message);
        Assert.Equal(new[] { "x", "y" }, CsvDataset.Read(species, new CsvOptions { IgnoreColumns = ["3"], LabelColumn = "species" }).Data.ClassNames);

        // Without a header row a missing value is the other reading, and its fix is given too.
        var rows = Write("rows.csv", "1,2,0,\n3,4,1,\n");
        Assert.Equal($"{rows}: line 1 ends with the separator (','), so its last column, 'column 3' (index 3), read as the label (Data:Csv:LabelColumn is not set: " +
            "the column headed 'label', else the last), is empty: every row needs a label. If the lines end with a separator that begins no column, remove those " +
            "separators, or list the column in Data:Csv:IgnoreColumns ('3') and set Data:Csv:LabelColumn to the column that holds the labels; otherwise fill the " +
            "cell, or drop the row.", Assert.Throws<DataFormatException>(() => CsvDataset.Read(rows, new CsvOptions { HasHeader = false })).Message);
        Assert.Equal(new[] { 0, 1 }, CsvDataset.Read(rows, new CsvOptions { HasHeader = false, IgnoreColumns = ["3"], LabelColumn = "2" }).Data.Labels.Select(l => (int)l).ToArray());
        Assert.Equal($"{rows}: line 1 ends with the separator (','), so its last column, 'column 3' (index 3), is empty: every feature needs a value. If the lines " +
            "end with a separator that begins no column, remove those separators, or list the column in Data:Csv:IgnoreColumns ('3'); otherwise fill the cell " +
            "(for example with the column's mean), or drop the row.",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(rows, new CsvOptions { HasHeader = false, LabelColumn = "2" })).Message);

        // Rows ending with the separator under a header that does not: one column more than the header, said so (not SkipRows).
        var rowsOnly = Write("rows-only.csv", "a,b,label\n1,2,0,\n");
        Assert.Equal($"{rowsOnly}: line 2 has 4 columns but the header has 3: it ends with the separator (','), which makes an empty last column. " +
            "Remove the separators at the ends of the lines.", Assert.Throws<DataFormatException>(() => CsvDataset.Read(rowsOnly, new CsvOptions())).Message);

        // An empty last cell of a named column, or of a later row, is a missing value, as before.
        var named = Write("named.csv", "label,a,b\n0,1,\n");
        Assert.Equal($"{named}: line 2, column 'b' (index 2) is empty, a missing value: {Missing(named)}",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(named, new CsvOptions())).Message);
        var later = Write("later.csv", "a,b,label,\n1,2,0,5\n3,4,1,\n");
        Assert.Equal($"{later}: line 3, column 'column 3' (index 3) is empty, a missing value: {Missing(later)}",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(later, new CsvOptions())).Message);
    }

    [Fact]
    public void A_row_with_another_number_of_columns_is_reported_with_its_line()
    {
        var path = Write("ragged.csv", "a,b,label\n1,2,0\n3,1\n");
        var error = Assert.Throws<DataFormatException>(() => CsvDataset.Read(path, new CsvOptions()));
        Assert.Contains("line 3 has 2 columns but the header has 3", error.Message);
        Assert.Contains("not found", Assert.Throws<DataFormatException>(() => CsvDataset.Read(Path.Combine(_directory, "none.csv"), new CsvOptions())).Message);
    }

    [Fact]
    public void Gzip_skipped_lines_another_separator_and_quoted_cells_are_read()
    {
        var path = Path.Combine(_directory, "data.csv.gz");
        using (var gzip = new GZipStream(File.Create(path), CompressionLevel.Fastest))
        using (var writer = new StreamWriter(gzip))
            writer.Write("summary line to skip\n\"a\";\"b\";\"kind\"\n\"1.25\";2;\"x;y\"\n3;4;z\n");
        var (data, layout, _) = CsvDataset.Read(path, new CsvOptions { SkipRows = 1, Separator = ";" });
        Assert.Equal([1.25f, 2, 3, 4], data.Features);
        Assert.Equal(["x;y", "z"], data.ClassNames!);
        Assert.Equal(["a", "b"], layout.FeatureColumns);
    }

    [Fact]
    public void Without_a_label_column_set_the_column_headed_label_is_the_label_wherever_it_stands()
    {
        // Kaggle's Fashion-MNIST layout: label first, then the pixels. Before, the last pixel was read as the label.
        var path = Write("kaggle.csv", "label,pixel1,pixel2\n3,0,0\n1,5,0\n");
        var (data, layout, _) = CsvDataset.Read(path, new CsvOptions());
        Assert.Equal(["pixel1", "pixel2"], layout.FeatureColumns);
        Assert.Equal([3, 1], data.Labels);
        Assert.Equal([0f, 0, 5, 0], data.Features);
        // Scored by a model that knows no column names (trained on IDX): by position, the label column left out.
        Assert.Equal([0f, 0, 5, 0], CsvDataset.ReadFeatures(path, new CsvOptions(), ["0", "1"], byName: false).Features);
        // Two columns headed label, or none, or the one ignored: the last column, as before.
        Assert.Equal([1, 2], CsvDataset.Read(Write("plain.csv", "a,b,kind\n1,2,1\n3,4,2\n"), new CsvOptions()).Data.Labels);
        Assert.Equal([1, 2], CsvDataset.Read(Write("two.csv", "label,Label,kind\n7,8,1\n7,8,2\n"), new CsvOptions()).Data.Labels);
        Assert.Equal([1, 2], CsvDataset.Read(Write("ignored.csv", "label,a,kind\n7,8,1\n7,8,2\n"), new CsvOptions { IgnoreColumns = ["label"] }).Data.Labels);
    }

    [Fact]
    public void A_truncated_gzip_file_is_refused_as_truncated_even_when_it_is_cut_at_the_end_of_a_row()
    {
        var rows = string.Concat(Enumerable.Range(0, 2000).Select(i => $"{i % 7},{i % 11},{(i % 2 == 0 ? "a" : "b")}\n"));
        var whole = Path.Combine(_directory, "whole.csv.gz");
        using (var gzip = new GZipStream(File.Create(whole), CompressionLevel.Optimal))
        using (var writer = new StreamWriter(gzip))
            writer.Write("x,y,kind\n" + rows);
        Assert.Equal(2000, CsvDataset.Read(whole, new CsvOptions()).Data.Count);
        var bytes = File.ReadAllBytes(whole);

        // Cut at every length from a header-only stub to one byte short: each is refused, none is read as fewer rows.
        foreach (var length in new[] { 5, 20, bytes.Length / 3, bytes.Length / 2, bytes.Length - 8, bytes.Length - 1 })
        {
            var cut = Path.Combine(_directory, $"cut-{length}.csv.gz");
            File.WriteAllBytes(cut, bytes[..length]);
            var error = Assert.Throws<DataFormatException>(() => CsvDataset.Read(cut, new CsvOptions()));
            Assert.Contains("truncated", error.Message);
        }
    }

    /// <summary>One gzip member of <paramref name="text"/>, as one `gzip` run writes it.</summary>
    private static byte[] GzipMember(string text)
    {
        var memory = new MemoryStream();
        using (var gzip = new GZipStream(memory, CompressionLevel.Optimal, leaveOpen: true))
            gzip.Write(System.Text.Encoding.ASCII.GetBytes(text));
        return memory.ToArray();
    }

    /// <summary>A header and 500 rows of kind a.</summary>
    private static readonly byte[] FirstMember = GzipMember("x,y,kind\n" + string.Concat(Enumerable.Range(0, 500).Select(i => $"{i % 7},{i % 11},a\n")));

    /// <summary>700 rows of kind b.</summary>
    private static readonly byte[] SecondMember = GzipMember(string.Concat(Enumerable.Range(0, 700).Select(i => $"{i % 5},{i % 3},b\n")));

    [Fact]
    public void A_gzip_file_of_several_members_is_read_whole_and_a_cut_or_a_bad_checksum_in_any_member_is_refused()
    {
        // What `cat a.csv.gz b.csv.gz`, pigz or bgzip give: one member per piece, each with its own trailer.
        var (first, second) = (FirstMember, SecondMember);
        var joined = Path.Combine(_directory, "joined.csv.gz");
        byte[] whole = [.. first, .. second];
        File.WriteAllBytes(joined, whole);
        var (data, _, _) = CsvDataset.Read(joined, new CsvOptions());
        Assert.Equal(1200, data.Count);
        Assert.Equal(700, data.Labels.Count(label => data.ClassNames![label] == "b"));

        // Cut inside the second member, or at its start: truncated. The first member's CRC-32 changed: corrupt.
        foreach (var length in new[] { first.Length + 5, first.Length + second.Length / 2, first.Length + second.Length - 3 })
        {
            File.WriteAllBytes(joined, whole[..length]);
            Assert.Contains("is truncated", Assert.Throws<DataFormatException>(() => CsvDataset.Read(joined, new CsvOptions())).Message);
        }
        var badChecksum = first.ToArray();
        badChecksum[^8] ^= 0x01; // the trailer's CRC-32 (RFC 1952: CRC32, then ISIZE)
        File.WriteAllBytes(joined, [.. badChecksum, .. second]);
        var corrupt = Assert.Throws<DataFormatException>(() => CsvDataset.Read(joined, new CsvOptions())).Message;
        Assert.Contains("the gzip data is corrupt", corrupt);
        Assert.Contains("crc", corrupt, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Data_after_the_last_gzip_member_is_refused_naming_its_offset_and_only_zero_padding_may_follow()
    {
        // .NET's GZipStream, which reads the rows, stops without an error at the first bytes after a member that do not
        // start another member: each file below would have been read as the first member's 500 rows alone.
        var (first, second) = (FirstMember, SecondMember);
        var path = Path.Combine(_directory, "tail.csv.gz");
        string Refusal(byte[] bytes)
        {
            File.WriteAllBytes(path, bytes);
            return Assert.Throws<DataFormatException>(() => CsvDataset.Read(path, new CsvOptions())).Message;
        }
        const string fix = "to the end of the file cannot be read as gzip: .NET's gzip reader would stop there without an error, and any data " +
            "after that point would be lost. Compress the original file again with gzip (gzip -c FILE > FILE.gz), rather than appending " +
            "to the .gz file or editing it.";

        var flipped = second.ToArray();
        flipped[0] ^= 0xff; // the second member's magic bytes, 0x1f 0x8b
        flipped[1] ^= 0xff;
        Assert.Equal($"{path}: the data at byte offset {first.Length} follows the file's first gzip member but does not start another member: " +
            $"its first byte is 0xe0, not gzip's 0x1f. The {second.Length} bytes from there {fix}", Refusal([.. first, .. flipped]));
        flipped = second.ToArray();
        flipped[1] ^= 0x01;
        Assert.StartsWith($"{path}: the data at byte offset {first.Length} follows the file's first gzip member but does not start another member: " +
            $"its first two bytes are 0x1f 0x8a, not gzip's 0x1f 0x8b. The {second.Length} bytes from there", Refusal([.. first, .. flipped]));

        // Trailing bytes after two whole members, down to one byte.
        byte[] whole = [.. first, .. second];
        Assert.Equal($"{path}: the data at byte offset {whole.Length} follows the file's 2 gzip members but does not start another member: " +
            $"its first byte is 0x67, not gzip's 0x1f. The 8 bytes from there {fix}", Refusal([.. whole, .. "garbage\n"u8]));
        Assert.StartsWith($"{path}: the data at byte offset {whole.Length} follows the file's 2 gzip members but does not start another member: " +
            $"its first byte is 0x0a, not gzip's 0x1f. The 1 byte from there {fix}", Refusal([.. whole, (byte)'\n']));

        // Found by the fuzz target's oracle (tests/DistTrain.Fuzz gzip) on the check before: one member, then "0".
        var found = Convert.FromHexString("1F8B080000000000040333D031D04936E032D4B1D44936E432D231D74936E232D63105099AE81883044D750C4182663A8660A5063A162051007A0172BC3900000030");
        Assert.StartsWith($"{path}: the data at byte offset 65 follows the file's first gzip member but does not start another member: " +
            $"its first byte is 0x30, not gzip's 0x1f. The 1 byte from there {fix}", Refusal(found));

        // Zero padding (tar's, tape tools') is read past, as gzip reads it; anything after the zeros is not.
        File.WriteAllBytes(path, [.. whole, .. new byte[1024]]);
        Assert.Equal(1200, CsvDataset.Read(path, new CsvOptions()).Data.Count);
        Assert.Equal($"{path}: the data at byte offset {whole.Length} follows the file's 2 gzip members but does not start another member: " +
            $"it is zero bytes up to byte {whole.Length + 1023}, then 0x1f at byte {whole.Length + 1024}, and only zero bytes (padding) may " +
            $"follow the last member. The 1044 bytes from there {fix}", Refusal([.. whole, .. new byte[1024], .. first[..20]]));

        // An empty member between two others is a member: all rows are read.
        File.WriteAllBytes(path, [.. first, .. GzipMember(""), .. second]);
        Assert.Equal(1200, CsvDataset.Read(path, new CsvOptions()).Data.Count);
    }

    /// <summary>
    /// A header with every optional field (RFC 1952: FEXTRA, FNAME, FCOMMENT and FHCRC) is read past, and its CRC-16 is
    /// checked least significant byte first, as the RFC stores it (SharpZipLib's GZipInputStream, which checked before,
    /// read it the other way round and refused this file, which gzip -t and .NET read).
    /// </summary>
    [Fact]
    public void A_gzip_header_with_every_optional_field_is_read_and_its_crc_checked()
    {
        // Flags 0x1e; a 5-byte extra field "abcde"; the name "name.csv"; the comment "a comment"; the header CRC-16 f7 1a.
        var bytes = Convert.FromHexString("1F8B081E000000000003050061626364656E616D652E637376006120636F6D6D656E7400F71A" +
            "ABD0A9D4C9494C4ACDE132D431D231E032D631D131E402009453DF3316000000");
        var path = Path.Combine(_directory, "fields.csv.gz");
        File.WriteAllBytes(path, bytes);
        var (data, layout, _) = CsvDataset.Read(path, new CsvOptions());
        Assert.Equal([1f, 2, 3, 4], data.Features);
        Assert.Equal(["x", "y"], layout.FeatureColumns);

        bytes[36] ^= 0x01; // the CRC-16's low byte
        File.WriteAllBytes(path, bytes);
        Assert.Equal($"{path}: the gzip data is corrupt (member 1, at byte 0: a bad header: its header's CRC-16 is 0x1af6 where the " +
            "header's bytes give 0x1af7). Download or write the file again.", Assert.Throws<DataFormatException>(() => CsvDataset.Read(path, new CsvOptions())).Message);
    }

    /// <summary>Found by fuzzing (tests/DistTrain.Fuzz gzip): SharpZipLib's inflater threw IndexOutOfRangeException on these 18 bytes.</summary>
    [Fact]
    public void Deflate_data_with_invalid_code_lengths_is_refused_as_corrupt()
    {
        var path = Path.Combine(_directory, "codes.csv.gz");
        File.WriteAllBytes(path, Convert.FromHexString("1F8B08000000000000031DCA20300C03B1DE"));
        var error = Assert.Throws<DataFormatException>(() => CsvDataset.Read(path, new CsvOptions())).Message;
        Assert.StartsWith($"{path}: the gzip data is corrupt (", error);
    }

    [Fact]
    public void Features_to_score_are_picked_by_name_or_by_position_with_or_without_the_label()
    {
        var options = new CsvOptions { LabelColumn = "label", IgnoreColumns = ["id"] };
        string[] features = ["x1", "x2"];
        Assert.Equal([2f, 1, 4, 3], CsvDataset.ReadFeatures(Write("named.csv", "x2,id,x1\n1,9,2\n3,9,4\n"), options, features));
        var positional = new CsvOptions { HasHeader = false, LabelColumn = "3", IgnoreColumns = ["0"] };
        Assert.Equal([1f, 2], CsvDataset.ReadFeatures(Write("with-label.csv", "9,1,2,a\n"), positional, features));
        Assert.Equal([1f, 2], CsvDataset.ReadFeatures(Write("without-label.csv", "9,1,2\n"), positional, features));
        var error = Assert.Throws<DataFormatException>(() => CsvDataset.ReadFeatures(Write("wide.csv", "1,2,3,4,5\n"), positional, features));
        Assert.Contains("the model reads 2 feature columns (x1, x2)", error.Message);
    }

    [Fact]
    public void Blank_lines_in_the_middle_and_at_the_end_are_skipped_and_lines_keep_their_numbers()
    {
        var options = new CsvOptions { SkipRows = 1 };
        const string rows = "1,2,0\n3,4,1\n5,6,2\n";
        var (plain, _, _) = CsvDataset.Read(Write("plain.csv", "summary\nx1,x2,label\n" + rows), options);
        var (blank, layout, _) = CsvDataset.Read(Write("blank.csv", "summary\n\nx1,x2,label\n1,2,0\n\n3,4,1\n  \t\n5,6,2\n\n"), options);
        Assert.Equal([1f, 2, 3, 4, 5, 6], blank.Features);
        Assert.Equal(plain.Features, blank.Features);
        Assert.Equal(plain.Labels, blank.Labels);
        Assert.Equal(["x1", "x2"], layout.FeatureColumns);
        var noHeader = new CsvOptions { HasHeader = false };
        Assert.Equal(plain.Features, CsvDataset.Read(Write("no-header.csv", "\r\n1,2,0\r\n\r\n3,4,1\r\n5,6,2\r\n\r\n"), noHeader).Data.Features);
        Assert.Equal([1f, 2, 3, 4, 5, 6], CsvDataset.ReadFeatures(Write("score.csv", "x1,x2\n1,2\n\n3,4\n5,6\n\n\n"), new CsvOptions(), ["x1", "x2"]));
        // A line number in a message counts the blank lines: 'abc' is on line 6 of the file.
        var error = Assert.Throws<DataFormatException>(() => CsvDataset.Read(Write("bad.csv", "x1,x2,label\n\n1,2,0\n\n\nabc,4,1\n"), new CsvOptions()));
        Assert.Contains("line 6, column 'x1' (index 0): 'abc'", error.Message);
    }

    [Fact]
    public void A_file_with_a_header_read_with_the_training_columns_matches_them_by_name_and_refuses_missing_ones()
    {
        var options = new CsvOptions();
        var (train, layout, vocabulary) = CsvDataset.Read(Write("train.csv", "x1,x2,x3,label\n1,2,3,a\n4,5,6,b\n"), options);
        var inOrder = CsvDataset.Read(Write("test.csv", "x1,x2,x3,label\n7,8,9,b\n10,11,12,a\n"), options, vocabulary, layout.FeatureColumns).Data;
        var swapped = CsvDataset.Read(Write("swapped.csv", "x2,x1,x3,label\n8,7,9,b\n11,10,12,a\n"), options, vocabulary, layout.FeatureColumns).Data;
        Assert.Equal([7f, 8, 9, 10, 11, 12], inOrder.Features);
        Assert.Equal(inOrder.Features, swapped.Features);
        Assert.Equal([1, 0], swapped.Labels.Select(l => (int)l));

        var renamed = Write("renamed.csv", "a,b,c,label\n7,8,9,b\n");
        var error = Assert.Throws<DataFormatException>(() => CsvDataset.Read(renamed, options, vocabulary, layout.FeatureColumns));
        Assert.Equal($"{renamed}: columns are matched by name with the training file's, and the header lacks 'x1', 'x2', 'x3'; 'a', 'b', 'c' are " +
            "not among its columns. Name the columns as the training file does ('x1', 'x2', 'x3', then the label; in any order) and remove the others.", error.Message);
        var missing = Assert.Throws<DataFormatException>(() => CsvDataset.ReadFeatures(Write("two.csv", "x3,x1\n1,2\n"), options, layout.FeatureColumns));
        Assert.Contains("the header lacks 'x2'. Name the columns", missing.Message);
        // Without a header row the columns are read by position, as before.
        var positional = new CsvOptions { HasHeader = false };
        Assert.Equal([7f, 8, 9], CsvDataset.Read(Write("rows.csv", "7,8,9,b\n"), positional, vocabulary, ["column 0", "column 1", "column 2"]).Data.Features);
    }

    [Fact]
    public void By_name_an_empty_header_cell_is_found_by_position_and_a_label_away_from_the_end_is_found_as_the_one_other_column()
    {
        // pandas' to_csv writes its index column with an empty header cell: training names it "column 0".
        var options = new CsvOptions();
        var (_, layout, vocabulary) = CsvDataset.Read(Write("train.csv", ",x1,x2,label\n0,1,2,a\n1,3,4,b\n"), options);
        Assert.Equal(["column 0", "x1", "x2"], layout.FeatureColumns);
        var test = CsvDataset.Read(Write("test.csv", ",x1,x2,label\n0,5,6,b\n1,7,8,a\n"), options, vocabulary, layout.FeatureColumns).Data;
        Assert.Equal([0f, 5, 6, 1, 7, 8], test.Features);
        Assert.Equal([1, 0], test.Labels.Select(l => (int)l));
        // The unnamed column where it was (it has only its position), then the label and the named features in another order:
        // the one column that is no feature is the label.
        var moved = CsvDataset.Read(Write("moved.csv", ",label,x2,x1\n0,b,6,5\n1,a,8,7\n"), options, vocabulary, layout.FeatureColumns).Data;
        Assert.Equal(test.Features, moved.Features);
        Assert.Equal(test.Labels, moved.Labels);
        // Two columns that are no feature: which is the label is not guessed.
        var two = Write("two-others.csv", ",label,x2,x1,note\n0,b,6,5,n\n");
        Assert.Throws<DataFormatException>(() => CsvDataset.Read(two, options, vocabulary, layout.FeatureColumns));
    }

    [Fact]
    public void A_file_of_another_separator_and_a_value_beyond_float32_are_named_as_such()
    {
        var semicolons = Write("semicolons.csv", "a;b;c;label\n1;2;3;x\n");
        var error = Assert.Throws<DataFormatException>(() => CsvDataset.Read(semicolons, new CsvOptions()));
        Assert.Equal($"{semicolons}: the header reads as one column, 'a;b;c;label', which holds ';'. Is that the separator? Set Data:Csv:Separator to \";\" (it is ',').", error.Message);
        Assert.Equal([1f, 2, 3], CsvDataset.Read(semicolons, new CsvOptions { Separator = ";" }).Data.Features);

        var huge = Write("huge.csv", "a,b,label\n1e39,2,x\n");
        error = Assert.Throws<DataFormatException>(() => CsvDataset.Read(huge, new CsvOptions()));
        Assert.Equal($"{huge}: line 2, column 'a' (index 0): '1e39' is outside the range of float32 (±3.4E+38), in which features are held. Rescale the column.", error.Message);
        var text = Write("text.csv", "a,b,label\nn/a,2,x\n");
        Assert.Contains("'n/a' marks a missing value: every feature needs a value", Assert.Throws<DataFormatException>(() => CsvDataset.Read(text, new CsvOptions())).Message);

        // Semicolons and decimal commas read with the default separator: the rows split at the commas, into cells that hold the
        // semicolons. The separator is named (it was a number error that suggested a cell as the label column); once it is set,
        // the decimal commas are named as such.
        var european = Write("european.csv", "5,1;3,5;1,4;0\n4,9;3,0;1,4;1\n");
        error = Assert.Throws<DataFormatException>(() => CsvDataset.Read(european, new CsvOptions { HasHeader = false }));
        Assert.Equal($"{european}: line 1, column 'column 1' (index 1): '1;3' is not a number, and it holds ';': is that the file's separator? Set " +
            "Data:Csv:Separator to \";\" (it is ','); if this column is text, list it in Data:Csv:IgnoreColumns.", error.Message);
        Assert.Contains("'5,1' is not a number: a decimal comma?",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(european, new CsvOptions { HasHeader = false, Separator = ";" })).Message);
        var tabbed = Write("tabbed.csv", "x1,x2\tlabel\n1,2\t0\n");
        Assert.Contains("'2\t0' is not a number, and it holds '\\t': is that the file's separator? Set Data:Csv:Separator to \"\\t\"",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(tabbed, new CsvOptions { LabelColumn = "x1" })).Message);
        // No such hint for a text cell in a file split right, a thousands separator, or a stray cell after rows that read well.
        var names = Write("names.csv", "x,who,label\n1,Smith; John,0\n");
        Assert.DoesNotContain("separator", Assert.Throws<DataFormatException>(() => CsvDataset.Read(names, new CsvOptions())).Message);
        var thousands = Write("thousands.csv", "x;y;label\n1,000,000;2;0\n");
        Assert.DoesNotContain("Set Data:Csv:Separator", Assert.Throws<DataFormatException>(() => CsvDataset.Read(thousands, new CsvOptions { Separator = ";" })).Message);
        var stray = Write("stray.csv", "x,y,label\n1,2,0\n3,4,1\n5,6;7,0\n");
        Assert.DoesNotContain("separator", Assert.Throws<DataFormatException>(() => CsvDataset.Read(stray, new CsvOptions())).Message);
    }

    /// <summary>
    /// A UTF-16 file (Excel's "Unicode Text", PowerShell's default encoding) is named as UTF-16, with the fix, not as a file of
    /// control characters; a label column given as an index past the last column says so.
    /// </summary>
    [Fact]
    public void A_utf16_file_and_a_label_index_past_the_last_column_are_named_as_such()
    {
        foreach (var encoding in new[] { System.Text.Encoding.Unicode, System.Text.Encoding.BigEndianUnicode })
        {
            var utf16 = Path.Combine(_directory, $"utf16-{encoding.WebName}.csv");
            File.WriteAllBytes(utf16, [.. encoding.GetPreamble(), .. encoding.GetBytes("a,b,label\n1,2,0\n")]);
            var bom = encoding.GetPreamble();
            Assert.Equal($"{utf16}: the file is UTF-16 text (it starts with a UTF-16 byte-order mark, 0x{bom[0]:X2} 0x{bom[1]:X2}), and a CSV file is read as UTF-8. " +
                "Save it as UTF-8 (Excel: \"CSV UTF-8\"; or iconv -f UTF-16 -t UTF-8 FILE > NEW).", Assert.Throws<DataFormatException>(() => CsvDataset.Read(utf16, new CsvOptions())).Message);
        }
        var file = Write("five.csv", "a,b,c,d,label\n1,2,3,4,0\n");
        Assert.Equal($"{file}: Data:Csv:LabelColumn = '9' is no column: the header has 'a', 'b', 'c', 'd', 'label'; as a 0-based index, 9 is outside 0 to 4. " +
            "Give the label column's name or 0-based index.", Assert.Throws<DataFormatException>(() => CsvDataset.Read(file, new CsvOptions { LabelColumn = "9" })).Message);
        Assert.EndsWith("which is no column: the header has 'a', 'b', 'c', 'd', 'label'; a 0-based index is written without a sign, 0 to 4.",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(file, new CsvOptions { IgnoreColumns = ["-1"] })).Message);
        Assert.EndsWith("which is no column: the header has 'a', 'b', 'c', 'd', 'label'; a 0-based index is written without a sign, 0 to 4.",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(file, new CsvOptions { IgnoreColumns = ["+3"] })).Message);
        Assert.EndsWith("which is no column: the header has 'a', 'b', 'c', 'd', 'label'.",
            Assert.Throws<DataFormatException>(() => CsvDataset.Read(file, new CsvOptions { IgnoreColumns = ["e"] })).Message);
    }

    [Fact]
    public void Ignoring_the_label_column_is_refused_naming_it()
    {
        var path = Write("ignored-label.csv", "id,x1,x2,label\n0,1,2,a\n1,3,4,b\n");
        var error = Assert.Throws<DataFormatException>(() => CsvDataset.Read(path, new CsvOptions { IgnoreColumns = ["id", "label"] }));
        Assert.Equal($"{path}: Data:Csv:IgnoreColumns names the label column ('label'). Remove it from IgnoreColumns, or set Data:Csv:LabelColumn to the column that holds the labels.", error.Message);
        Assert.Equal([1f, 2, 3, 4], CsvDataset.Read(path, new CsvOptions { IgnoreColumns = ["id"] }).Data.Features);
    }

    [Fact]
    public void A_csv_test_file_with_swapped_columns_loads_the_same_test_split()
    {
        var train = Write("train.csv", "x1,x2,label\n" + string.Concat(Enumerable.Range(0, 8).Select(i => $"{i},{i * 10},{i % 2}\n")));
        var test = Write("test.csv", "x1,x2,label\n1.5,-2,1\n3,4,0\n");
        var swapped = Write("swapped.csv", "label,x2,x1\n1,-2,1.5\n0,4,3\n");
        DataOptions Options(string testFile) => new() { Format = DataFormat.Csv, Normalization = NormalizationKind.None, Csv = new CsvOptions { TrainFile = train, TestFile = testFile, LabelColumn = "label" } };
        var original = TrainingData.Load(Options(test));
        var fromSwapped = TrainingData.Load(Options(swapped));
        Assert.Equal([1.5f, -2, 3, 4], original.Test.Features);
        Assert.Equal(original.Test.Features, fromSwapped.Test.Features);
        Assert.Equal(original.Test.Labels, fromSwapped.Test.Labels);
        var renamed = Write("renamed.csv", "x1,y2,label\n1.5,-2,1\n");
        var error = Assert.Throws<DataFormatException>(() => TrainingData.Load(Options(renamed)));
        Assert.Contains($"{renamed}: columns are matched by name with the training file's, and the header lacks 'x2'; 'y2' is not among its columns", error.Message);
    }

    /// <summary>
    /// A label column of measurements (every value distinct: here 40 rows, 40 "classes" of one sample each) left the held-out
    /// split empty, and the error blamed the amount of data. It now says that the share is held out of each class, that none
    /// is large enough, and points at Data:Csv:LabelColumn; a data set of a few real classes that is only small is told the same
    /// first part without that hint.
    /// </summary>
    [Fact]
    public void A_test_split_left_empty_by_classes_of_one_sample_names_the_classes_and_the_label_column()
    {
        var measurements = Write("measurements.csv", "x,y\n" + string.Concat(Enumerable.Range(0, 40).Select(i => $"{i % 7},{i * 0.37 + 0.01:R}\n")));
        DataOptions Options(string file, double fraction) =>
            new() { Format = DataFormat.Csv, Normalization = NormalizationKind.None, TestFraction = fraction, Csv = new CsvOptions { TrainFile = file } };
        var error = Assert.Throws<DataFormatException>(() => TrainingData.Load(Options(measurements, 0.25)));
        Assert.Equal($"Data:TestFraction = 0.25 of the 40 samples of {measurements} leaves no test samples (the share is held out of each class, and none " +
            "of its 40 classes is large enough for one: the largest has 1 sample; that many classes for so few samples suggests the labels were read from a " +
            "column that is not the label column: for a CSV file, check Data:Csv:LabelColumn): give more data, change the fraction or give a test file or folder.",
            error.Message);
        var small = Write("small.csv", "x,label\n1,0\n2,0\n3,1\n4,1\n5,2\n6,2\n");
        error = Assert.Throws<DataFormatException>(() => TrainingData.Load(Options(small, 0.2)));
        Assert.Equal($"Data:TestFraction = 0.2 of the 6 samples of {small} leaves no test samples (the share is held out of each class, and none of its 3 " +
            "classes is large enough for one: the largest has 2 samples): give more data, change the fraction or give a test file or folder.", error.Message);
        // A fraction of a half or more takes the one sample of each such class: the other side is empty, for the same cause.
        error = Assert.Throws<DataFormatException>(() => TrainingData.Load(Options(measurements, 0.5)));
        Assert.Equal($"Data:TestFraction = 0.5 of the 40 samples of {measurements} leaves no training samples (the share is held out of each class, " +
            "rounded, which takes every sample of its 40 classes of at most 1 sample; that many classes for so few samples suggests the labels were read " +
            "from a column that is not the label column: for a CSV file, check Data:Csv:LabelColumn): give more data, change the fraction or give a test " +
            "file or folder.", error.Message);
    }

    [Fact]
    public void The_test_split_is_stratified_seeded_and_the_same_as_the_python_baselines()
    {
        var labels = Enumerable.Range(0, 203).Select(i => (byte)(i % 7 == 0 ? 2 : i % 3)).ToArray();
        var test = TestSplit.TestIndices(labels, 0.25, seed: 5);
        foreach (var label in labels.Distinct())
        {
            var count = labels.Count(l => l == label);
            Assert.Equal((int)Math.Floor(0.25 * count + 0.5), test.Count(i => labels[i] == label));
        }
        Assert.Equal(test, TestSplit.TestIndices(labels, 0.25, seed: 5));
        Assert.NotEqual(test, TestSplit.TestIndices(labels, 0.25, seed: 6));

        var script = Path.Combine(AppContext.BaseDirectory, "baselines", "test_split.py");
        var start = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in new[] { script, "0.25", "5" }.Concat(labels.Select(l => l.ToString()))) start.ArgumentList.Add(argument);
        using var python = Process.Start(start)!;
        var output = python.StandardOutput.ReadToEnd();
        Assert.True(python.WaitForExit(60_000), "test_split.py did not finish");
        Assert.True(python.ExitCode == 0, python.StandardError.ReadToEnd());
        Assert.Equal(test, output.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse));
    }

    [Fact]
    public void Predict_and_evaluate_read_the_rows_training_reads_with_SkipRows_before_a_header()
    {
        // Data:Csv:SkipRows 2 before the header, a blank line after the skipped ones and one between rows: training reads
        // lines 5, 7 and 8. predict and evaluate take no config; they read the model file's recorded settings, SkipRows included.
        var path = Write("titled.csv", "Iris measurements\nsecond title, with a comma,and more\n\na,b,species\n1,2,x\n\n3,4,y\n5,6,x\n");
        var csv = new CsvOptions { HasHeader = true, SkipRows = 2, LabelColumn = "species" };
        var (training, _, _) = CsvDataset.Read(path, csv);
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 6 }, training.Features);

        var options = new DistTrain.Core.Models.ModelBuilder(2).Dense(2).Build();
        var weights = DistTrain.Core.Models.ModelFactory.InitialWeights(DistTrain.Core.Models.ModelFactory.Build(options), options.Initializer, seed: 1);
        var normalizer = Normalizer.FromStatistics(NormalizationKind.None, [0f], [1f]);
        var data = new DataMetadata(DataFormat.Csv, 1f, ["x", "y"], LabelsAreNames: true, ["a", "b"], csv, false, []);
        var modelPath = Path.Combine(_directory, "model.safetensors");
        new DistTrain.Core.Models.TrainedModel(options, weights, normalizer,
            DistTrain.Core.Models.ModelMetadata.Create(options, normalizer, data, version: 0, epochs: 0, testAccuracy: null, seed: 0)).Save(modelPath);
        var model = DistTrain.Core.Models.TrainedModel.Load(modelPath);
        Assert.Equal(2, model.Data.Csv!.SkipRows);

        var inputs = DistTrain.Core.Models.ModelInputs.Read(path, model, resize: false);
        Assert.Equal([$"{path}:line 5", $"{path}:line 7", $"{path}:line 8"], inputs.Names);
        Assert.Equal(training.Features, inputs.Values);
        var (labeled, _) = DistTrain.Core.Models.ModelInputs.ReadLabeled(path, model, resize: false);
        Assert.Equal(inputs.Names, labeled.SampleNames);
        Assert.Equal(training.Features, labeled.Features);
        Assert.Equal(new byte[] { 0, 1, 0 }, labeled.Labels);
    }
}
