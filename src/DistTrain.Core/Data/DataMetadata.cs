using System.Globalization;
using System.Text.Json;
using DistTrain.Core.Configuration;

namespace DistTrain.Core.Data;

/// <summary>
/// What a trained model needs to know about its data to score new inputs, stored in the saved weights' safetensors
/// metadata beside the normalization: the format and how values were scaled, the class names, whether labels are names
/// or indices, the CSV columns and the image settings, and the class filter.
/// </summary>
/// <param name="Format">The format trained on.</param>
/// <param name="InputDivisor">Raw values were divided by this when read: 255 for images, 1 for CSV.</param>
/// <param name="ClassNames">Class names in output order, or null.</param>
/// <param name="LabelsAreNames">Labels are written as names (CSV labels that are not numbers, image sub-folders).</param>
/// <param name="FeatureNames">The CSV feature columns, in order; null for images.</param>
/// <param name="Csv">The CSV reading settings (header, separator, label and ignored columns); null for other formats.</param>
/// <param name="ResizeImages">Images of another size were resized (Data:ImageFolder:Resize).</param>
/// <param name="Classes">Data:Classes: the original labels kept, in output order; empty when all were.</param>
public sealed record DataMetadata(DataFormat Format, float InputDivisor, IReadOnlyList<string>? ClassNames, bool LabelsAreNames,
    IReadOnlyList<string>? FeatureNames, CsvOptions? Csv, bool ResizeImages, IReadOnlyList<int> Classes)
{
    /// <summary>The description of a run's data.</summary>
    public static DataMetadata Of(TrainingData data, DataOptions options) => new(options.Format, data.InputDivisor, data.ClassNames,
        data.LabelsAreNames, data.FeatureNames, options.Format == DataFormat.Csv ? options.Csv : null, options.ImageFolder.Resize, options.Classes);

    /// <summary>
    /// Values given as they are, such as arrays in memory (<see cref="TrainingData.FromArrays"/>) or weights built in code:
    /// input divisor 1, class indices as labels. The format is recorded as <see cref="DataFormat.Idx"/>, the default, so
    /// <c>disttrain predict</c> scales an IDX file's bytes / 255 back to bytes before standardizing.
    /// </summary>
    /// <param name="classNames">Class names in output order, or null.</param>
    public static DataMetadata GivenValues(IReadOnlyList<string>? classNames = null) =>
        new(DataFormat.Idx, 1f, classNames, LabelsAreNames: false, FeatureNames: null, Csv: null, ResizeImages: false, Classes: []);

    /// <summary>The safetensors metadata entries (strings; lists as JSON arrays).</summary>
    public Dictionary<string, string> ToMetadata()
    {
        var entries = new Dictionary<string, string>
        {
            ["data_format"] = Format.ToString(),
            ["input_divisor"] = InputDivisor.ToString(CultureInfo.InvariantCulture),
            ["label_kind"] = LabelsAreNames ? "name" : "index",
        };
        if (ClassNames is not null) entries["class_names"] = JsonSerializer.Serialize(ClassNames);
        if (FeatureNames is not null) entries["feature_names"] = JsonSerializer.Serialize(FeatureNames);
        if (Csv is not null)
            entries["csv"] = JsonSerializer.Serialize(new { Csv.LabelColumn, Csv.HasHeader, Csv.SkipRows, Csv.Separator, Csv.IgnoreColumns });
        if (Format == DataFormat.ImageFolder) entries["image_resize"] = ResizeImages ? "true" : "false";
        if (Classes.Count > 0) entries["data_classes"] = JsonSerializer.Serialize(Classes);
        return entries;
    }

    /// <summary>
    /// Reads the entries back; a model saved before they existed (only <c>input_normalization</c> and friends) reads as
    /// IDX images scaled by 1/255 with unnamed classes.
    /// </summary>
    /// <exception cref="InvalidDataException">An entry is present but malformed; the message names it.</exception>
    public static DataMetadata FromMetadata(IReadOnlyDictionary<string, string> metadata)
    {
        T Parse<T>(string key, T fallback, Func<string, T> parse)
        {
            if (!metadata.TryGetValue(key, out var text)) return fallback;
            try
            {
                return parse(text);
            }
            catch (Exception e) when (e is JsonException or FormatException or ArgumentException or OverflowException)
            {
                throw new InvalidDataException($"the model's metadata entry '{key}' = '{text}' is malformed ({e.Message}).");
            }
        }
        var format = Parse("data_format", DataFormat.Idx, t => Enum.Parse<DataFormat>(t, ignoreCase: true));
        var divisor = Parse("input_divisor", 255f, t => float.Parse(t, CultureInfo.InvariantCulture));
        if (!(divisor > 0) || !float.IsFinite(divisor))
            throw new InvalidDataException($"the model's metadata entry 'input_divisor' = '{divisor}' must be a positive number.");
        var names = Parse<IReadOnlyList<string>?>("class_names", null, t => JsonSerializer.Deserialize<string[]>(t));
        var features = Parse<IReadOnlyList<string>?>("feature_names", null, t => JsonSerializer.Deserialize<string[]>(t));
        var csv = Parse<CsvOptions?>("csv", null, t => JsonSerializer.Deserialize<CsvOptions>(t));
        var resize = Parse("image_resize", false, bool.Parse);
        var classes = Parse<IReadOnlyList<int>>("data_classes", [], t => JsonSerializer.Deserialize<int[]>(t) ?? []);
        var labelsAreNames = Parse("label_kind", false, t => t switch
        {
            "name" => true,
            "index" => false,
            _ => throw new FormatException("it must be 'name' (labels written as class names) or 'index' (labels written as class indices)"),
        });
        return new DataMetadata(format, divisor, names, labelsAreNames, features, csv, resize, classes);
    }
}
