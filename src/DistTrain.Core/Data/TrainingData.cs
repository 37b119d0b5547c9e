using DistTrain.Core.Configuration;

namespace DistTrain.Core.Data;

/// <summary>The training and test splits as a run uses them: loaded, limited and normalized.</summary>
/// <param name="Train">Normalized training split.</param>
/// <param name="Test">Test split, normalized with the training statistics.</param>
/// <param name="Normalizer">The fitted statistics.</param>
public sealed record TrainingData(LabeledDataset Train, LabeledDataset Test, Normalizer Normalizer)
{
    /// <summary>Loads the splits named by <paramref name="options"/>, applies the limits and fits the normalizer on the training split.</summary>
    /// <exception cref="DataFormatException">A file is missing or malformed.</exception>
    public static TrainingData Load(DataOptions options)
    {
        var (train, test) = FashionMnist.Load(options.Directory, options.TrainLimit, options.TestLimit);
        var normalizer = Normalizer.Fit(train, options.Normalization);
        normalizer.Apply(train);
        normalizer.Apply(test);
        return new TrainingData(train, test, normalizer);
    }
}
