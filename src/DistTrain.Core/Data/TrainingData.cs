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
    /// <summary>What the data was read from (folder or files), for the start-up line.</summary>
    public string Description { get; init; } = "";

    /// <summary>How raw values were scaled when read, before normalization: 255 for images, 1 for CSV values.</summary>
    public float InputDivisor { get; init; } = 255f;

    /// <summary>The classes' names in label order, after the class filter; null when the data does not name them.</summary>
    public IReadOnlyList<string>? ClassNames => Train.ClassNames;

    /// <summary>True when the data's labels are class names (CSV labels that are not numbers, image sub-folders), false when they are class indices.</summary>
    public bool LabelsAreNames { get; init; }

    /// <summary>The CSV feature columns' names, in order; null for images.</summary>
    public IReadOnlyList<string>? FeatureNames { get; init; }

    /// <summary>Loads the data a run's options describe (the image shape comes from Model:InputShape).</summary>
    /// <exception cref="DataFormatException">A file is missing or malformed, or a setting leaves a split empty.</exception>
    public static TrainingData Load(TrainingOptions options) =>
        Load(options.Data, options.Training.Seed, options.Model.InputShape.Count == 3 ? options.Model.Input() : null);

    /// <summary>Loads the data <paramref name="options"/> describe, in any format.</summary>
    /// <param name="options">The data section.</param>
    /// <param name="seed">Seed of the validation split (the run's Training:Seed), so a run and its resumption agree.</param>
    /// <param name="inputShape">Model:InputShape, which image folders are read to; null for a flat input.</param>
    /// <exception cref="DataFormatException">A file is missing or malformed, or a setting leaves a split empty.</exception>
    public static TrainingData Load(DataOptions options, int seed = 1, TensorShape? inputShape = null) =>
        Load(DataSources.For(options, inputShape), options, seed);

    /// <summary>
    /// Reads <paramref name="source"/>, applies the limits, names the classes (Data:ClassNames), keeps the listed classes,
    /// holds out the validation samples (a seeded random choice) and fits the normalizer on what remains for training.
    /// </summary>
    /// <param name="source">Where the samples come from.</param>
    /// <param name="options">The data section: limits, classes, validation fraction and normalization.</param>
    /// <param name="seed">Seed of the validation split (the run's Training:Seed).</param>
    /// <exception cref="DataFormatException">A file is missing or malformed, or a setting leaves a split empty.</exception>
    public static TrainingData Load(IDataSource source, DataOptions options, int seed)
    {
        var (train, test) = source.Load(options.TrainLimit, options.TestLimit);
        var labelsAreNames = train.ClassNames is not null;
        if (options.ClassNames.Count > 0)
        {
            if (train.ClassNames is not null)
                throw new DataFormatException($"Data:ClassNames is set, but the data names its classes already ({string.Join(", ", train.ClassNames)}). Remove Data:ClassNames.");
            if (options.ClassNames.Count != train.ClassCount)
                throw new DataFormatException($"Data:ClassNames lists {options.ClassNames.Count} names but the data has {train.ClassCount} classes. Give one name per class, in label order.");
            (train, test) = (train.WithClassNames(options.ClassNames), test.WithClassNames(options.ClassNames));
        }
        if (options.Classes.Count > 0)
        {
            try
            {
                (train, test) = (train.KeepClasses(options.Classes), test.KeepClasses(options.Classes));
            }
            catch (ArgumentException e)
            {
                throw new DataFormatException($"Data:Classes: {e.Message}");
            }
        }
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
        return new TrainingData(train, test, normalizer, validation)
        {
            Description = source.Description,
            InputDivisor = source.InputDivisor,
            LabelsAreNames = labelsAreNames,
            FeatureNames = source.FeatureNames,
        };
    }
}
