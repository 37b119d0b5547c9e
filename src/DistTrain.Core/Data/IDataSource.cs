namespace DistTrain.Core.Data;

/// <summary>
/// Where a run's samples come from, in any <see cref="DataFormat"/>. A source only reads: <see cref="TrainingData.Load(IDataSource, Configuration.DataOptions, int)"/>
/// then applies the same limits, class filter, validation split and normalization to every format.
/// </summary>
public interface IDataSource
{
    /// <summary>What is read, for the start-up line: a folder or file names.</summary>
    string Description { get; }

    /// <summary>How pixel or feature values were scaled when read: 255 for images (bytes / 255), 1 for CSV values.</summary>
    float InputDivisor { get; }

    /// <summary>The feature columns' names (CSV), known once <see cref="Load"/> has run; null for images.</summary>
    IReadOnlyList<string>? FeatureNames { get; }

    /// <summary>What the training file's label column held (CSV), known once <see cref="Load"/> has run; null when the
    /// source does not say. Messages about the data's classes name its values.</summary>
    LabelSummary? Labels => null;

    /// <summary>Reads the raw (not normalized) training and test splits, with the same classes and features.</summary>
    /// <param name="trainLimit">Keep only the first N training samples (0 = all); a source may stop reading early.</param>
    /// <param name="testLimit">Keep only the first N test samples (0 = all).</param>
    /// <exception cref="DataFormatException">A file is missing or malformed; the message names it and the fix.</exception>
    (LabeledDataset Train, LabeledDataset Test) Load(int trainLimit, int testLimit);
}
