namespace DistTrain.Core.Compression;

/// <summary>Order statistics by selection (Hoare's FIND, median-of-three pivots), in expected linear time.</summary>
internal static class Selection
{
    /// <summary>The <paramref name="k"/>-th largest of <paramref name="values"/> (k = 1 is the maximum). Reorders
    /// <paramref name="values"/>; it must hold no NaN.</summary>
    /// <exception cref="ArgumentOutOfRangeException">k is not in [1, length].</exception>
    public static float KthLargest(Span<float> values, int k)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(k, values.Length);
        var target = values.Length - k; // its index in ascending order
        int low = 0, high = values.Length - 1;
        while (high > low)
        {
            var pivot = MedianOfThree(values[low], values[low + (high - low) / 2], values[high]);
            int i = low, j = high;
            while (i <= j)
            {
                while (values[i] < pivot) i++;
                while (values[j] > pivot) j--;
                if (i > j) break;
                (values[i], values[j]) = (values[j], values[i]);
                i++;
                j--;
            }
            // [low, j] <= pivot, [i, high] >= pivot, and anything strictly between equals the pivot.
            if (target <= j) high = j;
            else if (target >= i) low = i;
            else return pivot;
        }
        return values[target];
    }

    private static float MedianOfThree(float a, float b, float c) =>
        a < b ? (b < c ? b : Math.Max(a, c)) : (a < c ? a : Math.Max(b, c));
}
