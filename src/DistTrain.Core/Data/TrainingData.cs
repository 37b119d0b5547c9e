using DistTrain.Core.Configuration;
using DistTrain.Core.Layers;

namespace DistTrain.Core.Data;

/// <summary>The splits as a run uses them: loaded, filtered by class, split for validation, limited and normalized.</summary>
/// <param name="Train">Normalized training split (without the validation samples).</param>
/// <param name="Test">Test split, normalized with the training statistics.</param>
/// <param name="Normalizer">The fitted statistics.</param>
/// <param name="Validation">Samples held out of the training split for early stopping, normalized with the training
/// statistics; null when <see cref="DataOptions.ValidationFraction"/> is 0.</param>
public sealed record TrainingData(LabeledDataset Train, LabeledDataset Test, Normalizer Normalizer, LabeledDataset? Validation = null)
{
    /// <summary>What the data was read from (folder or files), for the start-up line; empty for arrays given in memory.</summary>
    public string Description { get; init; } = "";

    /// <summary>
    /// What raw values were divided by when read, before standardization: 255 for IDX files and image folders, 1 for CSV
    /// values and arrays given in memory. Recorded in the trained weights' metadata (<see cref="DataMetadata"/>) so that
    /// users of the weights feed them values on the same scale.
    /// </summary>
    public float InputDivisor { get; init; } = 1f;

    /// <summary>The classes' names in label order, after the class filter (from the data or Data:ClassNames); null when nothing names them.</summary>
    public IReadOnlyList<string>? ClassNames => Train.ClassNames;

    /// <summary>
    /// Data:Classes: the data's original class labels kept, in output order (output 0 is the first listed); empty when every
    /// class was kept, in its own order. Set by <see cref="Prepare"/>; a kept pretrained head is checked against it
    /// (<see cref="Models.PretrainedWeights.CheckClasses"/>).
    /// </summary>
    public IReadOnlyList<int> Classes { get; init; } = [];

    /// <summary>True when the data's labels are class names (CSV labels that are not numbers, image sub-folders), false when they are class indices.</summary>
    public bool LabelsAreNames { get; init; }

    /// <summary>The CSV feature columns' names, in order; null for images and arrays.</summary>
    public IReadOnlyList<string>? FeatureNames { get; init; }

    /// <summary>What the training file's label column held (CSV; <see cref="IDataSource.Labels"/>), for messages when the
    /// classes do not fit the model; null for other sources and when Data:Classes picks the classes.</summary>
    public LabelSummary? Labels { get; init; }

    /// <summary>
    /// For a fine-tuning run (Model:Pretrained), the start-up line that says the input standardization was fitted on this
    /// data, and what the pretrained model's was; empty otherwise. Refitting is deliberate: on the README's transfer
    /// example it beat keeping the pretrained statistics with each of 4 seeds (by 0.36 to 0.72 points), but the
    /// pretrained layers did learn on inputs standardized the other way, so the run says it.
    /// </summary>
    public string NormalizationNote { get; init; } = "";

    /// <summary>Loads the data a run's options describe (the image shape comes from Model:InputShape).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentException">A data setting is out of range or null (<see cref="Prepare"/>).</exception>
    /// <exception cref="DataFormatException">A file is missing or malformed, or a setting leaves a split empty.</exception>
    public static TrainingData Load(TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.Data, "options.Data");
        ArgumentNullException.ThrowIfNull(options.Training, "options.Training");
        ArgumentNullException.ThrowIfNull(options.Model, "options.Model");
        var data = Load(options.Data, options.Training.Seed, options.Model.InputShape?.Count == 3 ? options.Model.Input() : null);
        return string.IsNullOrEmpty(options.Model.Pretrained) ? data : data with { NormalizationNote = FittedAgainstPretrained(data.Normalizer, options.Model.Pretrained) };
    }

    /// <summary>The <see cref="NormalizationNote"/> of data standardized with <paramref name="fitted"/> for a run that
    /// fine-tunes <paramref name="pretrained"/>.</summary>
    private static string FittedAgainstPretrained(Normalizer fitted, string pretrained)
    {
        static string Statistics(Normalizer n) => n.Kind switch
        {
            NormalizationKind.Global => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{n.Kind}, mean {n.Mean[0]:G4}, std {n.Std[0]:G4}"),
            NormalizationKind.PerFeature => $"{n.Kind}, {n.Mean.Length} features",
            _ => n.Kind.ToString(),
        };
        var name = Path.GetFileName(pretrained);
        string theirs;
        try
        {
            var metadata = Checkpoints.SafeTensors.ReadMetadata(pretrained);
            var recorded = metadata.ContainsKey(Models.ModelMetadata.InputNormalization) ? Models.ModelMetadata.ReadNormalizer(metadata, pretrained) : null;
            // Fine-tuned on the data it was trained on, the model's statistics are these: said so, not as "its own" beside the same figures.
            if (recorded is not null && recorded.Kind == fitted.Kind && recorded.Mean.SequenceEqual(fitted.Mean) && recorded.Std.SequenceEqual(fitted.Std))
                return $"input standardization fitted on this data ({Statistics(fitted)}), the same as {name} was trained with";
            theirs = recorded is not null
                ? $"{name} was trained on inputs standardized with its own ({Statistics(recorded)})"
                : $"{name} records none (a PyTorch export or a training checkpoint)";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException or Checkpoints.SafeTensorsFormatException)
        {
            theirs = $"{name}'s could not be read"; // loading its weights reports the file's problem, in its own words
        }
        return $"input standardization fitted on this data ({Statistics(fitted)}); {theirs}";
    }

    /// <summary>Loads the data <paramref name="options"/> describe, in any format.</summary>
    /// <param name="options">The data section.</param>
    /// <param name="seed">Seed of the validation split (the run's Training:Seed), so a run and its resumption agree.</param>
    /// <param name="inputShape">Model:InputShape, which image folders are read to; null for a flat input.</param>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentException">A data setting is out of range or null (<see cref="Prepare"/>).</exception>
    /// <exception cref="DataFormatException">A file is missing or malformed, or a setting leaves a split empty.</exception>
    public static TrainingData Load(DataOptions options, int seed = 1, TensorShape? inputShape = null)
    {
        CheckOptions(options);
        return Load(DataSources.For(options, inputShape), options, seed);
    }

    /// <summary>
    /// Reads <paramref name="source"/>, applies the limits, names the classes (Data:ClassNames), keeps the listed classes,
    /// holds out the validation samples (a seeded random choice) and fits the normalizer on what remains for training.
    /// </summary>
    /// <param name="source">Where the samples come from.</param>
    /// <param name="options">The data section: limits, classes, validation fraction and normalization.</param>
    /// <param name="seed">Seed of the validation split (the run's Training:Seed).</param>
    /// <exception cref="ArgumentNullException"><paramref name="source"/> or <paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentException">A data setting is out of range or null (<see cref="Prepare"/>).</exception>
    /// <exception cref="DataFormatException">A file is missing or malformed, or a setting leaves a split empty.</exception>
    public static TrainingData Load(IDataSource source, DataOptions options, int seed)
    {
        ArgumentNullException.ThrowIfNull(source);
        CheckOptions(options);
        var (train, test) = source.Load(options.TrainLimit, options.TestLimit);
        if (options.ClassNames.Count > 0 && train.ClassNames is null && options.ClassNames.Count != train.ClassCount && source.Labels is { } labels)
            throw new DataFormatException($"Data:ClassNames lists {Counts.Of(options.ClassNames.Count, "name")} but the data has {Counts.Of(train.ClassCount, "class", "classes")}: " +
                labels.Describe(train.ClassCount, options.ClassNames.Count, $"give Data:ClassNames {train.ClassCount} names, in label order"));
        return Prepare(train, test, options, seed) with
        {
            Description = source.Description,
            InputDivisor = source.InputDivisor,
            FeatureNames = source.FeatureNames,
            Labels = options.Classes.Count > 0 ? null : source.Labels,
        };
    }

    /// <summary>
    /// Turns raw splits from any source into what a run uses, exactly as <see cref="Load(IDataSource, DataOptions, int)"/>
    /// does for files: keeps the first <see cref="DataOptions.TrainLimit"/> / <see cref="DataOptions.TestLimit"/> samples,
    /// names the classes with <see cref="DataOptions.ClassNames"/> (when the data does not name them), keeps the
    /// <see cref="DataOptions.Classes"/> (relabeled in the listed order), holds out
    /// <see cref="DataOptions.ValidationFraction"/> of the training samples (chosen with <paramref name="seed"/>), fits
    /// <see cref="DataOptions.Normalization"/> on the remaining training samples and applies it to every split.
    /// The settings it uses are checked as a config file's are, with the same limits and wording
    /// (<c>Data:ValidationFraction = 0.9 is out of range: allowed [0, 0.5].</c>). The format settings (<see cref="DataOptions.Format"/>, <see cref="DataOptions.Directory"/>, CSV and image-folder
    /// settings) are not used; <see cref="InputDivisor"/> is 1, the values as given.
    /// </summary>
    /// <param name="train">Training samples with their labels, not yet standardized; its feature array is standardized in
    /// place when nothing above made a copy (pass a copy to keep the original values).</param>
    /// <param name="test">Test samples, with the same features per sample and classes as <paramref name="train"/>; standardized likewise.</param>
    /// <param name="options">The data section.</param>
    /// <param name="seed">Seed of the validation split (the run's Training:Seed).</param>
    /// <exception cref="ArgumentNullException"><paramref name="train"/>, <paramref name="test"/> or <paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentException">A setting of <paramref name="options"/> is out of range (Data:TrainLimit,
    /// Data:TestLimit, Data:ValidationFraction, Data:Normalization), a class name is empty, null or repeated, or a list is
    /// null; the message names every such key, as a config file's check does.</exception>
    /// <exception cref="DataFormatException">The splits disagree in features or classes, Data:ClassNames does not fit the
    /// classes, or a setting leaves a split empty.</exception>
    /// <exception cref="InvalidOperationException">A split was standardized already.</exception>
    public static TrainingData Prepare(LabeledDataset train, LabeledDataset test, DataOptions options, int seed = 1)
    {
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(test);
        CheckOptions(options);
        if (train.FeatureCount != test.FeatureCount || train.ClassCount != test.ClassCount)
            throw new DataFormatException($"The training samples have {train.FeatureCount} features and {train.ClassCount} classes but the test samples {test.FeatureCount} and {test.ClassCount}; both splits must come from the same data.");
        if (options.TrainLimit > 0 && options.TrainLimit < train.Count) train = train.Take(options.TrainLimit);
        if (options.TestLimit > 0 && options.TestLimit < test.Count) test = test.Take(options.TestLimit);
        var labelsAreNames = train.ClassNames is not null;
        if (options.ClassNames.Count > 0)
        {
            if (train.ClassNames is not null)
                throw new DataFormatException($"Data:ClassNames is set, but the data names its classes already ({string.Join(", ", train.ClassNames)}). Remove Data:ClassNames.");
            if (options.ClassNames.Count != train.ClassCount)
                throw new DataFormatException($"Data:ClassNames lists {Counts.Of(options.ClassNames.Count, "name")} but the data has {Counts.Of(train.ClassCount, "class", "classes")}. Give one name per class, in label order.");
            (train, test) = (train.WithClassNames(options.ClassNames), test.WithClassNames(options.ClassNames));
        }
        if (options.Classes.Count > 0)
        {
            try
            {
                (train, test) = (train.KeepClasses(options.Classes), test.KeepClasses(options.Classes));
            }
            catch (ArgumentException)
            {
                // The data's classes by index: with labels that are names, the index is the name's place in sorted order.
                var names = train.ClassNames is { } named
                    ? ": " + string.Join(", ", named.Take(12).Select((name, i) => $"{i} = '{name}'")) + (named.Count > 12 ? ", ..." : "")
                    : "";
                throw new DataFormatException($"Data:Classes = [{string.Join(", ", options.Classes)}] must list distinct class indices of this data, " +
                    $"0 to {train.ClassCount - 1}{(train.ClassNames is null ? "" : ", each a label's place in the sorted label names")}{names}.");
            }
        }
        if (train.Count == 0)
            throw new DataFormatException("The training split holds no samples (after Data:TrainLimit and Data:Classes); give it at least one.");
        if (test.Count == 0)
            throw new DataFormatException("The test split holds no samples (after Data:TestLimit and Data:Classes), so no epoch could be scored. Raise Data:TestLimit (0 takes every test sample), or check that Data:Classes names classes the test data has.");
        LabeledDataset? validation = null;
        if (options.ValidationFraction > 0)
        {
            var held = (int)Math.Round(train.Count * options.ValidationFraction);
            if (held < 1 || held >= train.Count)
                throw new DataFormatException($"Data:ValidationFraction = {options.ValidationFraction} holds out {held} of {train.Count} training samples; it must leave at least one on each side.");
            var order = Enumerable.Range(0, train.Count).ToArray();
            new Random(seed).Shuffle(order);
            validation = train.Subset(order[..held].Order().ToArray());
            train = train.Subset(order[held..].Order().ToArray());
        }
        var normalizer = Normalizer.Fit(train, options.Normalization);
        normalizer.Apply(train);
        normalizer.Apply(test);
        if (validation is not null) normalizer.Apply(validation);
        return new TrainingData(train, test, normalizer, validation) { LabelsAreNames = labelsAreNames, Classes = [.. options.Classes] };
    }

    /// <summary>
    /// Training data from arrays in memory, prepared as <see cref="Prepare"/> describes. The arrays are copied, so the
    /// caller's values stay as they were.
    /// </summary>
    /// <param name="trainFeatures">Training samples, sample-major: <c>[samples, featureCount]</c> flattened row by row
    /// (an image sample is <c>[channels, height, width]</c> in that order, as one sample of PyTorch's NCHW).</param>
    /// <param name="trainLabels">Class of each training sample, in <c>[0, classCount)</c>.</param>
    /// <param name="testFeatures">Test samples, laid out as <paramref name="trainFeatures"/>.</param>
    /// <param name="testLabels">Class of each test sample.</param>
    /// <param name="featureCount">Features per sample (<c>channels · height · width</c> for images).</param>
    /// <param name="classCount">Number of classes, 1 to 256.</param>
    /// <param name="options">Limits, classes, validation fraction and normalization; null for the defaults (Global normalization, no validation split).</param>
    /// <param name="seed">Seed of the validation split.</param>
    /// <exception cref="ArgumentException">A setting of <paramref name="options"/> is out of range or null, or a class name
    /// is empty or repeated (<see cref="Prepare"/>); checked before the arrays are copied.</exception>
    /// <exception cref="DataFormatException">Lengths disagree, a label is outside <c>[0, classCount)</c>, a feature is NaN or infinite, or a setting leaves a split empty.</exception>
    public static TrainingData FromArrays(ReadOnlySpan<float> trainFeatures, ReadOnlySpan<int> trainLabels, ReadOnlySpan<float> testFeatures,
        ReadOnlySpan<int> testLabels, int featureCount, int classCount, DataOptions? options = null, int seed = 1)
    {
        options ??= new DataOptions();
        CheckOptions(options);
        return Prepare(Dataset("training", trainFeatures, trainLabels, featureCount, classCount),
            Dataset("test", testFeatures, testLabels, featureCount, classCount), options, seed);
    }

    /// <summary>
    /// The config file's checks of the settings that apply to data from any source (<see cref="TrainingOptionsValidator"/>),
    /// so that options built in code meet the same limits: a NaN or negative validation fraction is refused, not read as 0.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentException">A setting is out of range or null; the message lists every problem by its key.</exception>
    private static void CheckOptions(DataOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (TrainingOptionsValidator.PreparationProblems(options) is { Count: > 0 } problems)
            throw new ArgumentException(string.Join(" ", problems), nameof(options));
    }

    private static LabeledDataset Dataset(string split, ReadOnlySpan<float> features, ReadOnlySpan<int> labels, int featureCount, int classCount)
    {
        if (classCount is < 1 or > 256)
            throw new DataFormatException($"{classCount} classes: DistTrain holds labels as bytes, so 1 to 256 classes are supported.");
        if (featureCount <= 0 || features.Length != (long)labels.Length * featureCount)
            throw new DataFormatException($"The {split} split has {features.Length} feature values and {labels.Length} labels, which is not {featureCount} features per sample.");
        var bytes = new byte[labels.Length];
        for (var i = 0; i < labels.Length; i++)
        {
            if ((uint)labels[i] >= (uint)classCount)
                throw new DataFormatException($"The {split} split's label {labels[i]} of sample {i} is outside [0, {classCount}).");
            bytes[i] = (byte)labels[i];
        }
        var copy = features.ToArray();
        var bad = Array.FindIndex(copy, v => !float.IsFinite(v));
        if (bad >= 0)
            throw new DataFormatException($"The {split} split's sample {bad / featureCount}, feature {bad % featureCount} is {copy[bad]}; every feature must be a finite number.");
        return new LabeledDataset(copy, bytes, featureCount, classCount);
    }
}
