namespace DistTrain.Core.Configuration;

/// <summary>The closest known name to a mistyped one, for "did you mean" hints (configuration keys, command-line options).</summary>
public static class NameSuggestions
{
    /// <summary>
    /// The candidate with the smallest edit distance to <paramref name="name"/> (Levenshtein: insertions, deletions and
    /// substitutions, ignoring case), or null when none is within <paramref name="maxDistance"/> edits.
    /// </summary>
    public static string? Closest(string name, IEnumerable<string> candidates, int maxDistance = 3)
    {
        var lower = name.ToLowerInvariant();
        return candidates
            .Select(candidate => (Candidate: candidate, Distance: Distance(candidate.ToLowerInvariant(), lower)))
            .Where(c => c.Distance <= maxDistance)
            .OrderBy(c => c.Distance)
            .Select(c => c.Candidate)
            .FirstOrDefault();
    }

    /// <summary>Levenshtein distance between <paramref name="a"/> and <paramref name="b"/>.</summary>
    public static int Distance(string a, string b)
    {
        var previous = Enumerable.Range(0, b.Length + 1).ToArray();
        for (var i = 1; i <= a.Length; i++)
        {
            var current = new int[b.Length + 1];
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            previous = current;
        }
        return previous[b.Length];
    }
}
