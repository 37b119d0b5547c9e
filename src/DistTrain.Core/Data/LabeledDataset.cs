using MathNet.Numerics.LinearAlgebra;
using DistTrain.Core.Layers;

namespace DistTrain.Core.Data;

/// <summary>
/// Samples with class labels, held in memory: features sample-major (sample <c>i</c> occupies
/// <c>[i·FeatureCount, (i+1)·FeatureCount)</c>), so a sample copies as one block into a column of a
/// <c>[features, batch]</c> matrix.
/// </summary>
public sealed class LabeledDataset
{
    /// <summary>Wraps the arrays without copying.</summary>
    /// <exception cref="ArgumentException">Lengths disagree, or a label is outside <c>[0, classCount)</c>.</exception>
    public LabeledDataset(float[] features, byte[] labels, int featureCount, int classCount)
    {
        if (featureCount <= 0 || features.Length != (long)labels.Length * featureCount)
            throw new ArgumentException($"{features.Length} feature values do not make {labels.Length} samples of {featureCount} features.");
        for (var i = 0; i < labels.Length; i++)
            if (labels[i] >= classCount)
                throw new ArgumentException($"Label {labels[i]} of sample {i} is outside [0, {classCount}).");
        Features = features;
        Labels = labels;
        FeatureCount = featureCount;
        ClassCount = classCount;
    }

    /// <summary>Sample-major feature values, <c>Count · FeatureCount</c> elements.</summary>
    public float[] Features { get; }

    /// <summary>Class of each sample.</summary>
    public byte[] Labels { get; }

    /// <summary>Features per sample.</summary>
    public int FeatureCount { get; }

    /// <summary>Number of classes; labels are in <c>[0, ClassCount)</c>.</summary>
    public int ClassCount { get; }

    /// <summary>Number of samples.</summary>
    public int Count => Labels.Length;

    /// <summary>The features of one sample.</summary>
    public ReadOnlySpan<float> Sample(int index) => Features.AsSpan(index * FeatureCount, FeatureCount);

    /// <summary>
    /// Copies the given samples into the columns of <paramref name="inputs"/> <c>[features, batch]</c> and their
    /// one-hot labels into <paramref name="oneHotTargets"/> <c>[classes, batch]</c>; batch = <c>indices.Length</c>.
    /// </summary>
    /// <exception cref="ArgumentException">A matrix has the wrong shape.</exception>
    public void Gather(ReadOnlySpan<int> indices, Matrix<float> inputs, Matrix<float> oneHotTargets)
    {
        if (inputs.RowCount != FeatureCount || inputs.ColumnCount != indices.Length)
            throw new ArgumentException($"Input buffer is [{inputs.RowCount}, {inputs.ColumnCount}] but [{FeatureCount}, {indices.Length}] is needed.");
        if (oneHotTargets.RowCount != ClassCount || oneHotTargets.ColumnCount != indices.Length)
            throw new ArgumentException($"Target buffer is [{oneHotTargets.RowCount}, {oneHotTargets.ColumnCount}] but [{ClassCount}, {indices.Length}] is needed.");
        var x = inputs.ColumnMajorValues();
        var t = oneHotTargets.ColumnMajorValues();
        Array.Clear(t);
        for (var column = 0; column < indices.Length; column++)
        {
            var sample = indices[column];
            Sample(sample).CopyTo(x.AsSpan(column * FeatureCount, FeatureCount));
            t[column * ClassCount + Labels[sample]] = 1f;
        }
    }

    /// <summary>A copy holding only the first <paramref name="count"/> samples.</summary>
    public LabeledDataset Take(int count)
    {
        count = Math.Min(count, Count);
        return new LabeledDataset(Features.AsSpan(0, count * FeatureCount).ToArray(), Labels.AsSpan(0, count).ToArray(), FeatureCount, ClassCount);
    }
}
