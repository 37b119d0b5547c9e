using System.Numerics.Tensors;

namespace DistTrain.Core.Data;

/// <summary>How inputs are standardized before training.</summary>
public enum NormalizationKind
{
    /// <summary>Leave the [0, 1] pixel values as they are.</summary>
    None,
    /// <summary>One mean and standard deviation over every pixel of the training set: <c>(x − μ) / σ</c>.</summary>
    Global,
    /// <summary>A mean and standard deviation per feature (pixel position); features with σ = 0 are only centred.</summary>
    PerFeature,
}

/// <summary>
/// Standardization fitted on the training split and applied unchanged to every split, so test data
/// never leaks into the statistics.
/// </summary>
public sealed class Normalizer
{
    private Normalizer(NormalizationKind kind, float[] mean, float[] std)
    {
        Kind = kind;
        Mean = mean;
        Std = std;
    }

    /// <summary>The kind fitted.</summary>
    public NormalizationKind Kind { get; }

    /// <summary>Means: one value (global) or one per feature.</summary>
    public float[] Mean { get; }

    /// <summary>Standard deviations (population), same length as <see cref="Mean"/>; zeros are replaced by 1.</summary>
    public float[] Std { get; }

    /// <summary>
    /// A normalizer with known statistics, such as those stored in a checkpoint's metadata (<c>input_mean</c>,
    /// <c>input_std</c>).
    /// </summary>
    /// <param name="kind">The kind the statistics were fitted as.</param>
    /// <param name="mean">Means: one value for <see cref="NormalizationKind.None"/> and <see cref="NormalizationKind.Global"/>, one per feature for <see cref="NormalizationKind.PerFeature"/>.</param>
    /// <param name="std">Standard deviations, the same length as <paramref name="mean"/>; each finite and positive.</param>
    /// <exception cref="ArgumentException">The lengths differ or do not fit <paramref name="kind"/>, or a value is not finite, or a standard deviation is not positive.</exception>
    public static Normalizer FromStatistics(NormalizationKind kind, float[] mean, float[] std)
    {
        if (mean.Length != std.Length || mean.Length == 0 || (kind != NormalizationKind.PerFeature && mean.Length != 1))
            throw new ArgumentException($"Normalization {kind} needs {(kind == NormalizationKind.PerFeature ? "one mean and standard deviation per feature" : "one mean and one standard deviation")}; got {mean.Length} means and {std.Length} standard deviations.");
        if (mean.Any(m => !float.IsFinite(m)) || std.Any(s => !float.IsFinite(s) || s <= 0))
            throw new ArgumentException("Normalization statistics must be finite, and standard deviations positive.");
        return new Normalizer(kind, mean, std);
    }

    /// <summary>Computes the statistics of <paramref name="train"/> in double precision.</summary>
    public static Normalizer Fit(LabeledDataset train, NormalizationKind kind)
    {
        var width = kind == NormalizationKind.PerFeature ? train.FeatureCount : 1;
        var sum = new double[width];
        var sumSquares = new double[width];
        if (kind != NormalizationKind.None)
        {
            var features = train.Features;
            for (var i = 0; i < features.Length; i++)
            {
                var slot = width == 1 ? 0 : i % width;
                sum[slot] += features[i];
                sumSquares[slot] += (double)features[i] * features[i];
            }
        }
        var perSlot = kind == NormalizationKind.PerFeature ? (double)train.Count : train.Features.Length;
        var mean = new float[width];
        var std = new float[width];
        for (var j = 0; j < width; j++)
        {
            if (kind == NormalizationKind.None) { std[j] = 1f; continue; }
            var m = sum[j] / perSlot;
            var variance = Math.Max(0, sumSquares[j] / perSlot - m * m);
            mean[j] = (float)m;
            std[j] = variance > 1e-12 ? (float)Math.Sqrt(variance) : 1f;
        }
        return new Normalizer(kind, mean, std);
    }

    /// <summary>Standardizes the features of <paramref name="data"/> in place and records it in <see cref="LabeledDataset.Normalization"/>.</summary>
    /// <exception cref="InvalidOperationException">The data was standardized already.</exception>
    /// <exception cref="ArgumentException">Per-feature statistics of another feature count.</exception>
    public void Apply(LabeledDataset data)
    {
        if (data.Normalization is not null)
            throw new InvalidOperationException("The data set is standardized already; apply a normalizer once.");
        Standardize(data.Features, data.FeatureCount);
        data.Normalization = this;
    }

    /// <summary>Standardizes sample-major features in place: <c>(x − mean) / std</c>.</summary>
    /// <param name="features">Samples one after another, <paramref name="featureCount"/> values each.</param>
    /// <param name="featureCount">Features per sample.</param>
    /// <exception cref="ArgumentException">The normalizer is per feature and was fitted on another number of features, or
    /// the length is not a multiple of <paramref name="featureCount"/>.</exception>
    public void Standardize(Span<float> features, int featureCount)
    {
        if (featureCount <= 0 || features.Length % featureCount != 0)
            throw new ArgumentException($"{features.Length} values are not whole samples of {featureCount} features.");
        if (Kind == NormalizationKind.None) return;
        if (Kind == NormalizationKind.Global)
        {
            TensorPrimitives.Subtract(features, Mean[0], features);
            TensorPrimitives.Multiply(features, 1f / Std[0], features);
            return;
        }
        if (Mean.Length != featureCount)
            throw new ArgumentException($"The normalizer was fitted on {Mean.Length} features but the data has {featureCount}.");
        var inverseStd = Std.Select(s => 1f / s).ToArray();
        for (var start = 0; start < features.Length; start += featureCount)
        {
            var span = features.Slice(start, featureCount);
            TensorPrimitives.Subtract(span, Mean, span);
            TensorPrimitives.Multiply(span, inverseStd, span);
        }
    }
}
