using DistTrain.Core.Configuration;

namespace DistTrain.Core.Data;

/// <summary>The splits as a run uses them: loaded, filtered by class, split for validation, limited and normalized.</summary>
/// <param name="Train">Normalized training split (without the validation samples).</param>
/// <param name="Test">Test split, normalized with the training statistics.</param>
/// <param name="Normalizer">The fitted statistics.</param>
/// <param name="Validation">Samples held out of the training split for early stopping, normalized with the training
/// statistics; null when <see cref="DataOptions.ValidationFraction"/> is 0.</param>
public sealed record TrainingData(LabeledDataset Train, LabeledDataset Test, Normalizer Normalizer, LabeledDataset? Validation = null)
{
    /// <summary>
    /// Loads the splits named by <paramref name="options"/>, applies the limits, keeps the listed classes, holds out the
    /// validation samples (a seeded random choice) and fits the normalizer on what remains for training.
    /// </summary>
    /// <param name="options">The data section.</param>
    /// <param name="seed">Seed of the validation split (the run's Training:Seed), so a run and its resumption agree.</param>
    /// <exception cref="DataFormatException">A file is missing or malformed, or a setting leaves a split empty.</exception>
    public static TrainingData Load(DataOptions options, int seed = 1)
    {
        var (train, test) = FashionMnist.Load(options.Directory, options.TrainLimit, options.TestLimit);
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
        return new TrainingData(train, test, normalizer, validation);
    }
}
