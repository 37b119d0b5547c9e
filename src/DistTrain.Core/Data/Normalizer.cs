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

    /// <summary>Standardizes the features of <paramref name="data"/> in place.</summary>
    public void Apply(LabeledDataset data)
    {
        if (Kind == NormalizationKind.None) return;
        if (Kind == NormalizationKind.Global)
        {
            TensorPrimitives.Subtract(data.Features, Mean[0], data.Features);
            TensorPrimitives.Multiply(data.Features, 1f / Std[0], data.Features);
            return;
        }
        if (Mean.Length != data.FeatureCount)
            throw new ArgumentException($"The normalizer was fitted on {Mean.Length} features but the data has {data.FeatureCount}.");
        var inverseStd = Std.Select(s => 1f / s).ToArray();
        for (var sample = 0; sample < data.Count; sample++)
        {
            var span = data.Features.AsSpan(sample * data.FeatureCount, data.FeatureCount);
            TensorPrimitives.Subtract(span, Mean, span);
            TensorPrimitives.Multiply(span, inverseStd, span);
        }
    }
}
