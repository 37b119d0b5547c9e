using System.Globalization;

namespace DistTrain.Core;

/// <summary>
/// Counts in lines people read (console and log lines, error messages): the number with thousands separators
/// (invariant culture, <c>N0</c>) and the noun in the singular for exactly one, the plural otherwise, so that
/// "1 epoch", "0 workers" and "12,345 samples" read right. Not for anything a script parses (CSV, JSON, metrics).
/// </summary>
public static class Counts
{
    /// <summary>The count and its noun: <c>Of(1, "epoch")</c> is "1 epoch", <c>Of(12345, "sample")</c> "12,345 samples".</summary>
    /// <param name="count">How many.</param>
    /// <param name="singular">The noun (or noun phrase, "finished epoch") for one.</param>
    /// <param name="plural">The noun for any other count; null adds an "s" to <paramref name="singular"/>.</param>
    public static string Of(long count, string singular, string? plural = null) =>
        $"{Number(count)} {Noun(count, singular, plural)}";

    /// <summary>The noun alone, for a count printed elsewhere ("2 of 3 workers"): <paramref name="singular"/> for 1, the plural otherwise.</summary>
    /// <param name="count">How many.</param>
    /// <param name="singular">The noun for one.</param>
    /// <param name="plural">The noun for any other count; null adds an "s" to <paramref name="singular"/>.</param>
    public static string Noun(long count, string singular, string? plural = null) =>
        count == 1 ? singular : plural ?? singular + "s";

    /// <summary>The count with thousands separators in the invariant culture: "12,345".</summary>
    /// <param name="count">How many.</param>
    public static string Number(long count) => count.ToString("N0", CultureInfo.InvariantCulture);
}
