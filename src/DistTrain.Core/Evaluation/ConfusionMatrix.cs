namespace DistTrain.Core.Evaluation;

/// <summary>
/// Counts of (true class, predicted class) pairs over a labeled set, and the figures derived from them: accuracy, and
/// per class precision <c>TP / (TP + FP)</c> and recall <c>TP / (TP + FN)</c> (0 when the denominator is 0, as
/// scikit-learn's <c>zero_division=0</c>).
/// </summary>
public sealed class ConfusionMatrix
{
    private readonly long[,] _counts;

    /// <summary>An empty matrix of <paramref name="classes"/> × <paramref name="classes"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">Fewer than one class.</exception>
    public ConfusionMatrix(int classes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(classes);
        ClassCount = classes;
        _counts = new long[classes, classes];
    }

    /// <summary>Number of classes.</summary>
    public int ClassCount { get; }

    /// <summary>Samples counted.</summary>
    public long Total { get; private set; }

    /// <summary>Samples of class <paramref name="actual"/> predicted as <paramref name="predicted"/> (row = true class).</summary>
    public long this[int actual, int predicted] => _counts[actual, predicted];

    /// <summary>Counts one sample.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A class is outside <c>[0, ClassCount)</c>.</exception>
    public void Add(int actual, int predicted)
    {
        if ((uint)actual >= (uint)ClassCount) throw new ArgumentOutOfRangeException(nameof(actual), actual, $"Classes are 0 to {ClassCount - 1}.");
        if ((uint)predicted >= (uint)ClassCount) throw new ArgumentOutOfRangeException(nameof(predicted), predicted, $"Classes are 0 to {ClassCount - 1}.");
        _counts[actual, predicted]++;
        Total++;
    }

    /// <summary>Fraction of samples on the diagonal; 0 for an empty matrix.</summary>
    public double Accuracy => Total == 0 ? 0 : Enumerable.Range(0, ClassCount).Sum(c => _counts[c, c]) / (double)Total;

    /// <summary>Samples whose true class is <paramref name="c"/> (the row sum).</summary>
    public long Support(int c) => Enumerable.Range(0, ClassCount).Sum(p => _counts[c, p]);

    /// <summary>Samples predicted as <paramref name="c"/> (the column sum).</summary>
    public long Predicted(int c) => Enumerable.Range(0, ClassCount).Sum(a => _counts[a, c]);

    /// <summary>Of the samples predicted as <paramref name="c"/>, the fraction that are <paramref name="c"/>; 0 when none is predicted so.</summary>
    public double Precision(int c) => Predicted(c) == 0 ? 0 : _counts[c, c] / (double)Predicted(c);

    /// <summary>Of the samples of class <paramref name="c"/>, the fraction predicted as <paramref name="c"/>; 0 when there are none.</summary>
    public double Recall(int c) => Support(c) == 0 ? 0 : _counts[c, c] / (double)Support(c);

    /// <summary>The counts as rows (true class) of columns (predicted class).</summary>
    public long[][] ToRows() => [.. Enumerable.Range(0, ClassCount).Select(a => Enumerable.Range(0, ClassCount).Select(p => _counts[a, p]).ToArray())];
}
