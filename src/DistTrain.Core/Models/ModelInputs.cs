using System.Globalization;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Layers;

namespace DistTrain.Core.Models;

/// <summary>Samples read from files for a trained model: the values, what they were divided by, and a name per sample.</summary>
/// <param name="Names">One name per sample: the file, <c>file:line N</c> for a CSV row, <c>file[i]</c> for an IDX image.</param>
/// <param name="Values">Sample-major values <c>[Names.Count, input size]</c>, each sample in the model's input shape
/// (<c>[channels, height, width]</c> for images).</param>
/// <param name="DividedBy">What the raw values were divided by: 255 for images and IDX files (bytes / 255), 1 for CSV values.</param>
public sealed record InputBatch(IReadOnlyList<string> Names, float[] Values, float DividedBy)
{
    /// <summary>
    /// The values on the scale <paramref name="model"/> was trained on (<see cref="DataMetadata.InputDivisor"/>), before its
    /// standardization: what <see cref="TrainedModel.Logits"/> and the input of the model's ONNX export take.
    /// <see cref="Values"/> itself when the scales are the same, else a scaled copy.
    /// </summary>
    /// <param name="model">The model the batch was read for.</param>
    /// <exception cref="ArgumentNullException"><paramref name="model"/> is null.</exception>
    public float[] OnModelScale(TrainedModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var factor = DividedBy / model.Data.InputDivisor;
        return factor == 1f ? Values : [.. Values.Select(v => v * factor)];
    }
}

/// <summary>
/// The labeled samples <c>disttrain evaluate</c> reads (<see cref="ModelInputs.ReadLabeled(string, TrainedModel, bool, int?)"/>).
/// </summary>
/// <param name="Data">The samples, with labels in the model's class numbering and <see cref="LabeledDataset.SampleNames"/> set.</param>
/// <param name="DividedBy">What the raw values were divided by: 255 for images and IDX files, 1 for CSV values.</param>
public sealed record LabeledInputs(LabeledDataset Data, float DividedBy)
{
    /// <summary>
    /// The samples read but left out because their labels are not among the model's classes, for a model trained on some
    /// classes only (Data:Classes), as training leaves them out; 0 otherwise.
    /// </summary>
    public int LeftOut { get; init; }

    /// <summary>The sentence that says how many samples were left out, of which labels and why, starting with the path; null when none were.</summary>
    public string? LeftOutNotice { get; init; }
}

/// <summary>
/// Reads what <c>disttrain predict</c> and <c>disttrain evaluate</c> are given, in a trained model's input shape: image
/// files and folders (PNG, JPEG), CSV files (with the model's columns, with or without the label), IDX image files and
/// folders with IDX files.
/// </summary>
public static class ModelInputs
{
    /// <summary>
    /// A file read as CSV: one named <c>.csv</c> or <c>.csv.gz</c>, or, for a model trained on CSV data, any file that is not
    /// an image (its training file may have been a <c>.tsv</c> or <c>.txt</c>; Data:Csv:Separator says how to split it).
    /// </summary>
    private static bool IsCsv(string path, TrainedModel model) =>
        path.EndsWith(".csv", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".csv.gz", StringComparison.OrdinalIgnoreCase)
        || (model.Data.Format == DataFormat.Csv && File.Exists(path) && !ImageFile.HasImageExtension(path) && !IdxFile.StartsWithMagic(path));

    /// <summary>
    /// The warning for values read as they are (a CSV file: <paramref name="dividedBy"/> 1) for a model trained on images,
    /// whose pixels of 0 to 255 were divided by 255 as they were read, when every value is within [-1, 1]: such a file holds
    /// pixels already divided, which the model would divide by 255 again (Kaggle's Fashion-MNIST CSVs hold 0 to 255, which
    /// is what the model expects). Null otherwise, or when every value is 0.
    /// </summary>
    /// <param name="path">The input as given, named in the warning.</param>
    /// <param name="values">The values read, before any scaling.</param>
    /// <param name="dividedBy">What they were divided by when read (<see cref="InputBatch.DividedBy"/>).</param>
    /// <param name="model">The model they are for.</param>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> or <paramref name="model"/> is null.</exception>
    public static string? AlreadyScaledWarning(string path, ReadOnlySpan<float> values, float dividedBy, TrainedModel model)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(model);
        if (dividedBy != 1f || model.Data.InputDivisor != 255f || values.IsEmpty) return null;
        var largest = MathF.Abs(System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(values)); // MaxMagnitude keeps the sign
        if (!(largest <= 1f) || largest == 0f) return null;
        return $"{path}: every value is within [-1, 1] (the largest in magnitude is {largest.ToString(CultureInfo.InvariantCulture)}), but the model was trained on pixels of 0 to 255 from its {model.Data.Format} files, " +
            "divided by 255 as they were read, and divides a CSV's values by 255 in the same way. These look divided already, so they would be divided twice " +
            "and the predictions would mean little. Write the pixels as 0 to 255 (multiply these values by 255).";
    }

    /// <summary>The unlabeled samples of one input of <c>predict</c>: an image, a folder of images, a CSV or an IDX image file.</summary>
    /// <param name="path">An image file, a folder searched recursively for images (in ordinal order of their paths; hidden
    /// entries skipped, symbolic links to folders followed unless they would read images again), a
    /// <c>.csv</c> or <c>.csv.gz</c> file (any file but an image for a model trained on CSV data), or an IDX image file.</param>
    /// <param name="model">The model whose input shape, CSV columns and options the samples are read with.</param>
    /// <param name="resize">Resize images of another size to the model's input (bicubic) instead of refusing them.</param>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> or <paramref name="model"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="path"/> is empty or white space.</exception>
    /// <exception cref="DataFormatException">The input is missing or malformed, does not fit the model's input, or is not a
    /// CSV file for a model trained on CSV data, or a symbolic link in a folder leads back into it.</exception>
    public static InputBatch Read(string path, TrainedModel model, bool resize) => Read(path, model, resize, skipRows: null);

    /// <summary>
    /// As <see cref="Read(string, TrainedModel, bool)"/>, with the lines skipped at the top of a CSV file set for this file
    /// (<c>predict --skip-rows</c>) instead of the model's Data:Csv:SkipRows.
    /// </summary>
    /// <param name="path">As <see cref="Read(string, TrainedModel, bool)"/>.</param>
    /// <param name="model">As <see cref="Read(string, TrainedModel, bool)"/>.</param>
    /// <param name="resize">As <see cref="Read(string, TrainedModel, bool)"/>.</param>
    /// <param name="skipRows">Lines skipped at the top of a CSV file, before the header or the first row (0 or more); null
    /// for the model's Data:Csv:SkipRows (0 for a model not trained on CSV files). Not used for other inputs.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="skipRows"/> is negative.</exception>
    /// <exception cref="ArgumentNullException">As <see cref="Read(string, TrainedModel, bool)"/>.</exception>
    /// <exception cref="ArgumentException">As <see cref="Read(string, TrainedModel, bool)"/>.</exception>
    /// <exception cref="DataFormatException">As <see cref="Read(string, TrainedModel, bool)"/>.</exception>
    public static InputBatch Read(string path, TrainedModel model, bool resize, int? skipRows)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(model);
        if (skipRows is { } skip) ArgumentOutOfRangeException.ThrowIfNegative(skip, nameof(skipRows));
        var shape = model.InputShape;
        if (!Directory.Exists(path) && !File.Exists(path)) throw new DataFormatException($"{path}: no such file or folder.");
        // A folder is never a CSV file, whatever its name (a folder named rows.csv): for a CSV-trained model, the same error as evaluate's.
        if (Directory.Exists(path) || !IsCsv(path, model)) CheckNotCsvModel(path, model);
        if (Directory.Exists(path))
        {
            var images = ImageFolderDataset.ListFiles(path, ImageFile.HasImageExtension);
            if (images.Count == 0) throw new DataFormatException($"{path}: the folder holds no {string.Join(", ", ImageFile.Extensions)} file.");
            var values = new float[images.Count * shape.Size];
            for (var i = 0; i < images.Count; i++) ImageFile.Read(images[i], ImageShape(model, images[i]), resize, values.AsSpan(i * shape.Size, shape.Size));
            return new InputBatch(images, values, 255f);
        }
        if (!File.Exists(path)) throw new DataFormatException($"{path}: no such file or folder.");
        if (ImageFile.HasImageExtension(path))
        {
            var values = new float[shape.Size];
            ImageFile.Read(path, ImageShape(model, path), resize, values);
            return new InputBatch([path], values, 255f);
        }
        if (IsCsv(path, model))
        {
            // By the header's names when the model knows them (as evaluate reads its file), else by position.
            var features = model.Data.FeatureNames ?? [.. Enumerable.Range(0, shape.Size).Select(i => $"column {i}")];
            var csv = CsvSettings(model, path, skipRows);
            var (values, lines) = WithTrainingCsvSettings(model, csv, path, () =>
                CsvDataset.ReadFeatures(path, csv, features, byName: model.Data.FeatureNames is not null, forModel: true));
            return new InputBatch(LineNames(path, lines), values, 1f);
        }
        // A file with an extension that is neither an image, a CSV nor an IDX file (photo.bmp, scan.tiff): name what is read,
        // rather than the IDX reader's "magic number ... this is not an IDX file". IDX files often have no extension.
        if (InputFile.PipeProblem(path, "data file") is { } pipe) throw new DataFormatException(pipe); // not "its content is not IDX"
        if (Path.GetExtension(path) is { Length: > 0 } extension && !IdxFile.StartsWithMagic(path))
            throw new DataFormatException($"{path}: predict reads PNG and JPEG images ({string.Join(", ", ImageFile.Extensions)}), CSV files (.csv, .csv.gz) " +
                $"and IDX image files (such as t10k-images-idx3-ubyte[.gz]); a '{extension.ToLowerInvariant()}' file is none of them, and its content is not IDX. " +
                "Convert it to PNG, or give one of those files.");
        var (dimensions, pixels) = IdxFile.ReadAsSingles(path, expectedDimensions: 3, divisor: 255f);
        CheckIdxShape(path, dimensions, model);
        return new InputBatch([.. Enumerable.Range(0, dimensions[0]).Select(i => $"{path}[{i}]")], pixels, 255f);
    }

    /// <summary>
    /// The CSV settings <paramref name="path"/> is read with: the model's own when it was trained on CSV; otherwise (a model
    /// trained on IDX files or image folders, which has none) the defaults, with the header row found from the file: a
    /// first row of numbers only is data, not column names.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="path">The CSV file.</param>
    /// <param name="skipRows">The lines to skip at the top instead of the model's Data:Csv:SkipRows; null keeps the model's.</param>
    private static CsvOptions CsvSettings(TrainedModel model, string path, int? skipRows)
    {
        var trained = model.Data.Csv;
        var skip = skipRows ?? trained?.SkipRows ?? 0;
        var csv = new CsvOptions
        {
            LabelColumn = trained?.LabelColumn ?? "",
            SkipRows = skip,
            Separator = trained?.Separator ?? ",",
            IgnoreColumns = [.. trained?.IgnoreColumns ?? []],
        };
        csv.HasHeader = trained?.HasHeader ?? !CsvDataset.FirstRowIsNumbers(path, ',', skip);
        return csv;
    }

    /// <summary>
    /// The warning <c>predict</c> and <c>evaluate</c> give for a CSV input whose skipped lines (the model's
    /// Data:Csv:SkipRows, or <paramref name="skipRows"/>) look like data rows (<see cref="CsvDataset.LooksLikeDataRow"/>):
    /// they are not read, so a file without the lines the training files had at the top (scikit-learn's line of counts)
    /// loses its first rows. It names those lines and how to keep them (<c>--skip-rows</c>). Null when no skipped line looks
    /// like data, nothing is skipped, or <paramref name="path"/> is not read as CSV.
    /// </summary>
    /// <param name="path">An input of predict, or evaluate's data.</param>
    /// <param name="model">The model it is read for.</param>
    /// <param name="skipRows">The <c>--skip-rows</c> given, or null for the model's Data:Csv:SkipRows.</param>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> or <paramref name="model"/> is null.</exception>
    public static string? SkippedDataRowsWarning(string path, TrainedModel model, int? skipRows)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(model);
        if (!File.Exists(path) || !IsCsv(path, model)) return null;
        var csv = CsvSettings(model, path, skipRows);
        var data = CsvDataset.SkippedDataRows(path, csv);
        if (data.Count == 0) return null;
        var first = data[0];
        var lines = data.Count == 1
            ? $"line {first.Line} ({string.Join(", ", first.Cells.Take(5).Select(c => $"'{c}'"))}{(first.Cells.Length > 5 ? ", ..." : "")}) looks like a data row, but it is"
            : $"lines {string.Join(", ", data.Take(data.Count - 1).Take(8).Select(d => d.Line))}{(data.Count > 9 ? ", ..." : "")} and {data[^1].Line} look like data rows, but they are";
        var top = csv.SkipRows == 1 ? "first line" : $"first {Counts.Of(csv.SkipRows, "line")}";
        var why = skipRows is null
            ? $"the model's training files had their {top} skipped (Data:Csv:SkipRows {csv.SkipRows}), and predict and evaluate skip the {top} of every CSV file alike"
            : $"--skip-rows {csv.SkipRows} skips the {top}";
        return $"{path}: {lines} not read: {why}. If {(data.Count == 1 ? "it is" : "they are")} data, keep {(data.Count == 1 ? "it" : "them")} with --skip-rows {first.Line - 1}.";
    }

    /// <summary>
    /// Runs a CSV read with the settings the model was trained with. The reader's messages name the Data:Csv keys to change,
    /// which is the fix for a training run; <c>predict</c> and <c>evaluate</c> take no config keys, so such a message gets
    /// the model's settings and the fix that applies: write the file to match them.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="csv">The settings the file is read with (<see cref="CsvSettings"/>).</param>
    /// <param name="path">The CSV file.</param>
    /// <param name="read">The read.</param>
    private static T WithTrainingCsvSettings<T>(TrainedModel model, CsvOptions csv, string path, Func<T> read)
    {
        try
        {
            return read();
        }
        catch (DataFormatException) when (model.Data.Csv is not null && HeaderMismatch(path, csv, model.Data.FeatureNames) is { } mismatch)
        {
            throw new DataFormatException(mismatch);
        }
        catch (DataFormatException e) when (e.Message.Contains("Data:Csv:", StringComparison.Ordinal))
        {
            if (model.Data.Csv is null)
                throw new DataFormatException($"{e.Message} The model was not trained on CSV files, so predict and evaluate read CSV files for it with " +
                    "the default Data:Csv settings: separated by commas, a header row or none (a first row of numbers is data), the label in the column " +
                    "headed 'label', else the last; they take no config keys, so write the file that way.");
            var settings = string.Join(", ", new[]
            {
                $"Separator '{(csv.Separator == "\t" ? "\\t" : csv.Separator)}'",
                $"HasHeader {(csv.HasHeader ? "true" : "false")}",
                csv.SkipRows > 0 ? $"SkipRows {csv.SkipRows}" : null,
                csv.LabelColumn.Length > 0 ? $"LabelColumn '{csv.LabelColumn}'" : "the label in the column headed 'label', else the last",
                csv.IgnoreColumns.Count > 0 ? $"IgnoreColumns {string.Join(", ", csv.IgnoreColumns)}" : null,
            }.Where(s => s is not null));
            throw new DataFormatException($"{e.Message} Here the Data:Csv settings are the model's, from its training run ({settings}): predict and evaluate " +
                "read every CSV file with them and take no config keys, so write the file to match them" +
                (csv.SkipRows > 0 || model.Data.Csv.SkipRows > 0 ? $" (only the lines skipped at the top can be set for the file, with --skip-rows)." : "."));
        }
    }

    /// <summary>
    /// For a CSV file that could not be read with the model's settings: the error when its first row disagrees with the
    /// training files' Data:Csv:HasHeader, a row of names where they had no header row or a row of numbers where they had one,
    /// naming the fix (remove the header row, or add one); null when the first row agrees, or the file has none. The reader's
    /// own message for such a file named a cell that is not a number, or header names that are numbers.
    /// </summary>
    /// <param name="path">The CSV file.</param>
    /// <param name="csv">The model's CSV settings, from its training run.</param>
    /// <param name="featureNames">The training file's feature column names, when it had a header row.</param>
    internal static string? HeaderMismatch(string path, CsvOptions csv, IReadOnlyList<string>? featureNames)
    {
        if (!CsvOptions.IsValidSeparator(csv.Separator) || CsvDataset.FirstRowCells(path, csv.Separator[0], csv.SkipRows) is not { Length: > 0 } cells)
            return null;
        var first = $"its first row{(csv.SkipRows > 0 ? $" after the {Counts.Of(csv.SkipRows, "line")} skipped (Data:Csv:SkipRows)" : "")} " +
            $"({string.Join(", ", cells.Take(5).Select(c => $"'{c}'"))}{(cells.Length > 5 ? ", ..." : "")})";
        const string howRead = "and predict and evaluate read every CSV file as the training files were read (they take no config keys)";
        if (!csv.HasHeader && CsvDataset.IsNamesRow(cells))
            return $"{path}: {first} is a header row of column names, but the model was trained on CSV files without one (Data:Csv:HasHeader false), " +
                $"{howRead}. Remove the header row from {path}.";
        if (csv.HasHeader && CsvDataset.IsDataRow(cells))
        {
            var label = csv.LabelColumn.Length > 0 && !int.TryParse(csv.LabelColumn, NumberStyles.None, CultureInfo.InvariantCulture, out _)
                ? csv.LabelColumn : "label";
            var names = featureNames is { Count: > 0 }
                ? $": {string.Join(", ", featureNames.Take(5).Select(n => $"'{n}'"))}{(featureNames.Count > 5 ? $" and {Counts.Number(featureNames.Count - 5)} more" : "")} " +
                  $"(in any order), and '{label}' over the labels when the file has them"
                : "";
            // The header row among the lines skipped: a file without the line(s) the training files had before their header.
            var skippedHeader = CsvDataset.SkippedLines(path, csv).Skipped is { Count: > 0 } skipped && CsvDataset.IsNamesRow(skipped[^1].Cells)
                ? $" If line {skipped[^1].Line} ({string.Join(", ", skipped[^1].Cells.Take(5).Select(c => $"'{c}'"))}{(skipped[^1].Cells.Length > 5 ? ", ..." : "")}), " +
                  $"which is skipped, is the header row, read it with --skip-rows {skipped[^1].Line - 1}."
                : "";
            return $"{path}: {first} is a row of numbers, not a header row, but the model was trained on CSV files with one (Data:Csv:HasHeader true), " +
                $"{howRead}, matching the columns by name. Add a header row at the top of {path} naming the columns as the training file did{names}.{skippedHeader}";
        }
        return null;
    }

    /// <summary>
    /// The labeled samples of <c>evaluate</c>'s data: a folder with IDX files (its <c>t10k</c> test split), a folder of class
    /// sub-folders of images, or a CSV file with the label column. Labels are mapped to the model's classes (by name when
    /// the model's labels are names, and through Data:Classes when the model was trained on some classes only: then the
    /// samples of other labels are left out, as training leaves them out, and
    /// <see cref="ReadLabeled(string, TrainedModel, bool, int?)"/> says how many). A CSV file's feature columns are matched by
    /// name with the model's when it has a header row, as <c>predict</c> does.
    /// </summary>
    /// <param name="path">A folder with IDX files, a folder of class sub-folders of images, or a CSV file.</param>
    /// <param name="model">The model whose input shape, classes and CSV options the samples are read with.</param>
    /// <param name="resize">Resize images of another size to the model's input (bicubic) instead of refusing them.</param>
    /// <returns>The samples with labels in the model's class numbering and <see cref="LabeledDataset.SampleNames"/> set, and
    /// what their raw values were divided by (255 for images and IDX files, 1 for CSV values).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> or <paramref name="model"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="path"/> is empty or white space.</exception>
    /// <exception cref="DataFormatException">The data is missing or malformed, its labels or features do not fit the model,
    /// or it is a folder for a model trained on CSV data.</exception>
    public static (LabeledDataset Data, float DividedBy) ReadLabeled(string path, TrainedModel model, bool resize)
    {
        var (data, dividedBy) = ReadLabeled(path, model, resize, skipRows: null);
        return (data, dividedBy);
    }

    /// <summary>
    /// As <see cref="ReadLabeled(string, TrainedModel, bool)"/>, with the lines skipped at the top of a CSV file set for this
    /// file (<c>evaluate --skip-rows</c>) instead of the model's Data:Csv:SkipRows.
    /// </summary>
    /// <param name="path">As <see cref="ReadLabeled(string, TrainedModel, bool)"/>.</param>
    /// <param name="model">As <see cref="ReadLabeled(string, TrainedModel, bool)"/>.</param>
    /// <param name="resize">As <see cref="ReadLabeled(string, TrainedModel, bool)"/>.</param>
    /// <param name="skipRows">Lines skipped at the top of a CSV file, before the header or the first row (0 or more); null
    /// for the model's Data:Csv:SkipRows (0 for a model not trained on CSV files). Not used for folders.</param>
    /// <returns>As <see cref="ReadLabeled(string, TrainedModel, bool)"/>, with the samples left out for labels not among
    /// the model's Data:Classes (<see cref="LabeledInputs.LeftOut"/>) and the sentence that says so.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="skipRows"/> is negative.</exception>
    /// <exception cref="ArgumentNullException">As <see cref="ReadLabeled(string, TrainedModel, bool)"/>.</exception>
    /// <exception cref="ArgumentException">As <see cref="ReadLabeled(string, TrainedModel, bool)"/>.</exception>
    /// <exception cref="DataFormatException">As <see cref="ReadLabeled(string, TrainedModel, bool)"/>.</exception>
    public static LabeledInputs ReadLabeled(string path, TrainedModel model, bool resize, int? skipRows)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(model);
        if (skipRows is { } skip) ArgumentOutOfRangeException.ThrowIfNegative(skip, nameof(skipRows));
        var classes = model.Data.Classes;
        LabeledDataset data;
        float dividedBy;
        string? leftOut = null; // why samples of other labels were left out (Data:Classes); null when none were
        var leftOutCount = 0;
        if (Directory.Exists(path)) CheckNotCsvModel(path, model);
        if (Directory.Exists(path) && Directory.EnumerateFiles(path, "t10k-images-idx3-ubyte*").Any())
        {
            CheckNumberedClasses(path, model);
            data = FashionMnist.LoadSplit(path, "t10k");
            // Named as predict names an IDX file's images; LoadSplit reads the .gz file when there is one.
            var images = Path.Combine(path, "t10k-images-idx3-ubyte");
            if (File.Exists(images + ".gz")) images += ".gz";
            data = data.WithSampleNames([.. Enumerable.Range(0, data.Count).Select(i => $"{images}[{i}]")]);
            CheckIdxShape(path, [data.Count, 28, 28], model);
            var read = data;
            (data, dividedBy) = (classes.Count > 0 ? data.KeepClasses(classes) : data, 255f);
            if (data.Count < read.Count)
            {
                leftOutCount = read.Count - data.Count;
                leftOut = LeftOutNotice(model, "image", read.Count, [.. read.Labels.Where(l => !classes.Contains(l)).Select(l => l.ToString(CultureInfo.InvariantCulture))],
                    model.Data.LabelsAreNames);
            }
        }
        else if (Directory.Exists(path) && Directory.EnumerateFiles(path, "*-idx?-ubyte*").Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList() is { Count: > 0 } idx)
        {
            // IDX files, but not the test split's (a folder of train-*-ubyte only): not "no class sub-folders".
            throw new DataFormatException($"{path}: evaluate reads the t10k test split of a folder of IDX files, t10k-images-idx3-ubyte[.gz] and " +
                $"t10k-labels-idx1-ubyte[.gz], and this folder has {(idx.Any(f => f!.StartsWith("t10k-", StringComparison.Ordinal)) ? "" : "none of them; it has ")}" +
                $"{string.Join(", ", idx)}{(idx.Any(f => f!.StartsWith("t10k-", StringComparison.Ordinal)) ? " but not t10k-images-idx3-ubyte[.gz]" : "")}. " +
                "Add the t10k files to the folder (the test split the model did not train on), or give a folder that has them.");
        }
        else if (Directory.Exists(path))
        {
            // Unnamed (IDX) classes are sub-folders named by class number: the data's label, as its IDX files number it, so with
            // Data:Classes [5, ..., 9] sub-folder '5' is output 0, as evaluating the IDX files keeps and relabels those classes.
            var names = FolderNames(model.Data.ClassNames) ?? [.. (classes.Count > 0 ? classes : Enumerable.Range(0, model.ClassCount)).Select(c => c.ToString(CultureInfo.InvariantCulture))];
            // A model trained on some classes only (Data:Classes): the sub-folders of other classes are left out, as training
            // leaves their images out, and counted, as CSV rows of other labels are. Its classes named, any other sub-folder is
            // such a class (the model knows only the names it kept); numbered, a sub-folder named by another number is, and a
            // named one is still refused (CheckFolderClasses): names cannot be matched to numbers.
            Func<string, bool>? leaveOut = classes.Count == 0 ? null : model.Data.ClassNames is not null ? _ => true : IsClassNumber;
            CheckFolderClasses(path, model, names, leaveOut);
            dividedBy = 255f;
            if (leaveOut is null)
                data = ImageFolderDataset.Read(path, ImageShape(model, path), resize, names);
            else
            {
                (data, var left) = ImageFolderDataset.ReadLeavingOut(path, ImageShape(model, path), resize, names, leaveOut);
                if (left.Count > 0)
                {
                    leftOutCount = left.Sum(f => f.Images);
                    leftOut = LeftOutNotice(model, "image", data.Count + leftOutCount, [.. left.SelectMany(f => Enumerable.Repeat(f.Folder, f.Images))],
                        byName: model.Data.ClassNames is not null);
                }
            }
        }
        else if (IsCsv(path, model))
        {
            var vocabulary = model.Data.LabelsAreNames
                ? new LabelVocabulary(model.Data.ClassNames, model.ClassCount, IntegerLabels: false)
                : new LabelVocabulary(null, classes.Count > 0 ? LabelVocabulary.MaxClasses : model.ClassCount, IntegerLabels: true);
            // The model's feature columns, by the header's names as predict reads them (by position without a header row).
            var csv = CsvSettings(model, path, skipRows);
            // A model trained on some classes only (Data:Classes): rows of other labels are left out, as training leaves them
            // out; named labels not among the model's names are such rows (the model knows only the names it kept).
            CsvDataset.LabeledFile file;
            try
            {
                file = WithTrainingCsvSettings(model, csv, path, () => CsvDataset.ReadFile(path, csv, vocabulary, model.Data.FeatureNames, Array.MaxLength,
                    leaveOutUnknownLabels: model.Data.LabelsAreNames && classes.Count > 0, forModel: true));
            }
            catch (DataFormatException) when (model.Data is { Csv: null, LabelsAreNames: true } && CsvDataset.FirstRowCells(path, ',', csv.SkipRows) is { Length: > 1 } cells &&
                cells.Length != model.InputShape.Size + 1 && cells.Length != model.InputShape.Size)
            {
                // A model trained on image folders has no CSV columns: a comma-separated file of another width was not written
                // for it, whatever its labels say (the model's class names would otherwise be the first complaint, as the
                // file's labels are not among them).
                throw new DataFormatException($"{path}: rows have {cells.Length} columns, but the model reads {model.InputShape.Size} features " +
                    $"({model.InputShape}), so evaluate needs {model.InputShape.Size + 1} columns: the features and the label. Give a file written for this model.");
            }
            data = file.Data.WithSampleNames(LineNames(path, file.Lines));
            List<string> otherLabels = [.. file.LeftOutLabels];
            if (!model.Data.LabelsAreNames && classes.Count > 0)
            {
                otherLabels.AddRange(data.Labels.Where(l => !classes.Contains(l)).Select(l => l.ToString(CultureInfo.InvariantCulture)));
                data = data.KeepClasses(classes);
            }
            if (otherLabels.Count > 0)
            {
                leftOutCount = otherLabels.Count;
                leftOut = LeftOutNotice(model, "row", data.Count + otherLabels.Count, otherLabels, model.Data.LabelsAreNames);
            }
            dividedBy = 1f;
        }
        else
            throw new DataFormatException($"{path}: give a folder with the IDX files (t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]), a folder of class sub-folders of images, or a CSV file with the label column.");
        // A CSV file whose rows are one column short of the features and the label: read without its label, the last feature
        // became the label. Say that the label column seems missing, rather than "samples have 63 features".
        if (dividedBy == 1f && data.FeatureCount == model.InputShape.Size - 1 && File.Exists(path))
        {
            var csv = CsvSettings(model, path, skipRows);
            throw new DataFormatException($"{path}: rows have {data.FeatureCount + 1} columns{(csv.IgnoreColumns.Count > 0 ? " besides Data:Csv:IgnoreColumns" : "")}, one fewer than " +
                $"the model's {model.InputShape.Size} features plus the label column, so the label column seems to be missing " +
                $"(the model's Data:Csv:LabelColumn is {(csv.LabelColumn.Length == 0 ? "not set: the column headed 'label', else the last" : $"'{csv.LabelColumn}'")}, Data:Csv:HasHeader {(csv.HasHeader ? "true" : "false")}). " +
                "evaluate needs each row's label in that column: add it, or score unlabeled rows with predict.");
        }
        if (data.FeatureCount != model.InputShape.Size)
            throw new DataFormatException($"{path}: samples have {data.FeatureCount} features but the model reads {model.InputShape.Size} ({model.InputShape}).");
        if (data.Count == 0)
            throw new DataFormatException($"{path}: no samples of the model's classes{(leftOut is null ? "." : $": {leftOut}")}");
        return new LabeledInputs(data, dividedBy) { LeftOut = leftOutCount, LeftOutNotice = leftOut is null ? null : $"{path}: {leftOut}" };
    }

    /// <summary>
    /// Why samples were left out of evaluate's data: "152 of 300 rows are left out, as training leaves them out: their
    /// labels, 5 (30 rows), 6 (31), ..., are not among the model's classes, the Data:Classes it was trained on (0, 1, 2, 3,
    /// 4). The figures count the other 148."
    /// </summary>
    /// <param name="model">The model, trained with Data:Classes.</param>
    /// <param name="unit">What a sample is: "row" or "image".</param>
    /// <param name="total">The samples read.</param>
    /// <param name="labels">The label of each sample left out, as written (for images, the name of their sub-folder).</param>
    /// <param name="byName">True when the labels are names, matched to the model's class names: they are quoted and the
    /// model's classes listed by name; false lists numbers.</param>
    private static string LeftOutNotice(TrainedModel model, string unit, int total, IReadOnlyList<string> labels, bool byName)
    {
        var groups = labels.GroupBy(l => l, StringComparer.Ordinal).Select(g => (Label: g.Key, Count: g.Count())).ToList();
        groups = groups.All(g => int.TryParse(g.Label, NumberStyles.Integer, CultureInfo.InvariantCulture, out _))
            ? [.. groups.OrderBy(g => int.Parse(g.Label, CultureInfo.InvariantCulture))]
            : [.. groups.OrderBy(g => g.Label, StringComparer.Ordinal)];
        const int Listed = 8;
        var shown = groups.Take(Listed).Select((g, i) => $"{(byName ? $"'{g.Label}'" : g.Label)} ({(i == 0 ? Counts.Of(g.Count, unit) : Counts.Number(g.Count))})").ToList();
        var list = groups.Count > Listed
            ? $"{string.Join(", ", shown)} and {Counts.Number(groups.Count - Listed)} more"
            : shown.Count == 1 ? shown[0] : $"{string.Join(", ", shown.Take(shown.Count - 1))} and {shown[^1]}";
        var kept = byName && model.Data.ClassNames is { } names
            ? string.Join(", ", names.Select(n => $"'{n}'"))
            : string.Join(", ", model.Data.Classes);
        return $"{Counts.Number(labels.Count)} of {Counts.Of(total, unit)} {(labels.Count == 1 ? "is" : "are")} left out, as training leaves them out: " +
            $"{(groups.Count == 1 ? "their label" : "their labels")}, {list}, {(groups.Count == 1 ? "is" : "are")} not among the model's classes, the " +
            $"Data:Classes it was trained on ({kept}). The figures count the other {Counts.Number(total - labels.Count)}.";
    }

    /// <summary>A sub-folder named by a class number as the model's numbered classes are written: digits, no sign or leading
    /// zero (<c>3</c>, not <c>03</c>), 0 to 255.</summary>
    private static bool IsClassNumber(string name) =>
        int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var number) && number <= 255 &&
        number.ToString(CultureInfo.InvariantCulture) == name;

    /// <summary>Each CSV row's name for messages: the file and the row's own line number (blank lines and the header counted).</summary>
    private static string[] LineNames(string path, IReadOnlyList<int> lines) => [.. lines.Select(line => $"{path}:line {line}")];

    /// <summary>
    /// IDX labels are class numbers without names. They mean the model's outputs only for a model whose labels were numbers
    /// too; a model whose classes come from names (image sub-folders, sorted by name) numbers them in its own order, so the
    /// IDX labels cannot be matched to its classes: refused, instead of a score against the wrong classes.
    /// </summary>
    private static void CheckNumberedClasses(string path, TrainedModel model)
    {
        if (!model.Data.LabelsAreNames) return;
        var names = model.Data.ClassNames is { } classNames ? $" ({string.Join(", ", classNames.Take(4))}{(classNames.Count > 4 ? ", ..." : "")})" : "";
        throw new DataFormatException($"{path}: IDX labels are class numbers without names, but the model's classes are names{names} from its " +
            $"{model.Data.Format} training data, numbered in its own order, so the IDX labels cannot be matched to them. Evaluate it on data " +
            "labelled by name: a folder of class sub-folders of images.");
    }

    /// <summary>
    /// The sub-folder names of Data:ClassNames: a name with a '/' (Fashion-MNIST's "T-shirt/top"), which no folder can
    /// have, is matched by the name with '_' in its place ("T-shirt_top"), unless that would give two classes one folder
    /// name; null for null.
    /// </summary>
    internal static IReadOnlyList<string>? FolderNames(IReadOnlyList<string>? classNames)
    {
        if (classNames is null || !classNames.Any(n => n.Contains('/'))) return classNames;
        string[] folders = [.. classNames.Select(n => n.Replace('/', '_'))];
        return folders.Distinct(StringComparer.Ordinal).Count() == folders.Length ? folders : classNames;
    }

    /// <summary>
    /// A folder of class sub-folders for a model not trained on an image folder (IDX data): its sub-folders must be the
    /// model's classes, <paramref name="names"/>, which are class numbers when the training data did not name them. Any other
    /// sub-folder is refused with that cause (rather than as "not a class of the training folder", which the model never had),
    /// except those <paramref name="leaveOut"/> picks (classes outside the model's Data:Classes, left out and counted).
    /// A folder that cannot be listed is left to <see cref="ImageFolderDataset.Read"/>, which reports it.
    /// </summary>
    /// <exception cref="DataFormatException">A sub-folder is not one of <paramref name="names"/>; the message names them and both fixes.</exception>
    private static void CheckFolderClasses(string path, TrainedModel model, IReadOnlyList<string> names, Func<string, bool>? leaveOut)
    {
        if (model.Data.Format == DataFormat.ImageFolder) return; // ImageFolderDataset.Read names the training folder's classes
        List<string> unknown;
        try
        {
            unknown = [.. Directory.GetDirectories(path).Select(d => Path.GetFileName(d))
                .Where(n => !n.StartsWith('.') && !names.Contains(n) && leaveOut?.Invoke(n) != true).Order(StringComparer.Ordinal)];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return;
        }
        if (unknown.Count == 0) return;
        static string List(IReadOnlyList<string> items) =>
            string.Join(", ", items.Take(8).Select(n => $"'{n}'")) + (items.Count > 8 ? $" and {Counts.Number(items.Count - 8)} more" : "");
        var folders = $"{Counts.Noun(unknown.Count, "sub-folder")} {List(unknown)} {(unknown.Count == 1 ? "is" : "are")}";
        var named = unknown.All(n => !int.TryParse(n, NumberStyles.None, CultureInfo.InvariantCulture, out _));
        var what = named ? $"{(unknown.Count == 1 ? "a name" : "names")}, not class numbers" : "not among those numbers";
        const string idx = "or evaluate it on a folder with the IDX test files (t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]).";
        var numbers = string.Join(", ", names);
        throw new DataFormatException(model.Data.ClassNames is null
            ? $"{path}: the model's classes are numbers without names ({numbers}{(model.Data.Classes.Count > 0 ? ": the Data:Classes it kept" : "")}), " +
              $"from its {model.Data.Format} training data, but {folders} {what}, so {(unknown.Count == 1 ? "its" : "their")} images cannot be " +
              $"matched to the model's classes. Name each class sub-folder by its class number ({numbers}), {idx}"
            : $"{path}: {folders} not among the model's classes ({string.Join(", ", names.Select(n => $"'{n}'"))}, the Data:ClassNames of its " +
              $"{model.Data.Format} training data). Name each class sub-folder by one of them, {idx}");
    }

    /// <summary>A model trained on CSV data reads CSV files only: its features are the training file's columns, not pixels.</summary>
    private static void CheckNotCsvModel(string path, TrainedModel model)
    {
        if (model.Data.Format != DataFormat.Csv) return;
        var columns = model.Data.FeatureNames is { } names ? $": {string.Join(", ", names.Take(5))}{(names.Count > 5 ? ", ..." : "")}" : "";
        throw new DataFormatException($"{path}: the model was trained on CSV data ({model.FeatureCount} feature columns{columns}) and reads " +
            "CSV files only, not images or IDX files. Give it a CSV file with the training file's columns.");
    }

    private static TensorShape ImageShape(TrainedModel model, string path)
    {
        var shape = model.InputShape;
        if (!shape.IsFlat && shape.Channels is 1 or 3) return shape;
        // A flat model trained on images (an MLP on 28x28 pixels) reads square grayscale images.
        var side = (int)Math.Round(Math.Sqrt(shape.Size));
        return side * side == shape.Size
            ? new TensorShape(1, side, side)
            : throw new DataFormatException($"{path}: the model reads {shape.Size} features, not images; give it a CSV file.");
    }

    private static void CheckIdxShape(string path, int[] dimensions, TrainedModel model)
    {
        if (dimensions[1] * dimensions[2] != model.InputShape.Size || (!model.InputShape.IsFlat && model.InputShape.Channels != 1))
            throw new DataFormatException($"{path}: the IDX images are {dimensions[1]}x{dimensions[2]} but the model reads {model.InputShape}.");
    }
}
