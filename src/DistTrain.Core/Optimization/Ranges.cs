using System.Globalization;

namespace DistTrain.Core.Optimization;

/// <summary>The one wording of a range check, so every error reads <c>Key = value is out of range: allowed [min, max)</c>.</summary>
internal static class Ranges
{
    public static string Format(double value) => value.ToString(CultureInfo.InvariantCulture);

    public static void Check(List<string> problems, string key, double value, double min, double max, bool minExclusive = false, bool maxExclusive = false)
    {
        var low = minExclusive ? value <= min : value < min;
        var high = maxExclusive ? value >= max : value > max;
        if (!double.IsFinite(value) || low || high)
            problems.Add($"{key} = {Format(value)} is out of range: allowed {(minExclusive ? "(" : "[")}{Format(min)}, {Format(max)}{(maxExclusive ? ")" : "]")}.");
    }
}
