namespace DistTrain.Core.Data;

/// <summary>
/// How label cells map to class indices: whole numbers are the indices themselves (<see cref="IntegerLabels"/>), or names
/// are looked up in <see cref="Names"/> (sorted when they came from the data). A test file, and the files a trained model
/// scores, are read with the training data's vocabulary, so the same label means the same class.
/// </summary>
/// <param name="Names">Class names in index order, or null when the classes have none.</param>
/// <param name="ClassCount">Number of classes; a label index must be below it.</param>
/// <param name="IntegerLabels">Labels are written as class indices (names, when known, are only for display).</param>
public sealed record LabelVocabulary(IReadOnlyList<string>? Names, int ClassCount, bool IntegerLabels)
{
    /// <summary>Most classes a data set may have: labels are stored as bytes.</summary>
    public const int MaxClasses = 256;

    /// <summary>The class index of label <paramref name="cell"/>, or −1 when it is none of this vocabulary's labels.</summary>
    public int IndexOf(string cell)
    {
        if (IntegerLabels)
            return TryParseWhole(cell, out var index) && index >= 0 && index < ClassCount ? index : -1;
        if (Names is null) return -1;
        for (var i = 0; i < Names.Count; i++)
            if (string.Equals(Names[i], cell, StringComparison.Ordinal)) return i;
        return -1;
    }

    /// <summary>
    /// Reads a label that is a whole number: written as one (<c>3</c>), or as a float with no fraction (<c>3.0</c>, as pandas
    /// writes an integer column that held a missing value, or NumPy's <c>savetxt</c> any number).
    /// </summary>
    /// <param name="cell">The label cell, trimmed.</param>
    /// <param name="value">The whole number; 0 when the cell is not one.</param>
    /// <returns>False for anything else: a name, a fraction (<c>1.5</c>), a number outside the range of an int.</returns>
    public static bool TryParseWhole(string cell, out int value)
    {
        var invariant = System.Globalization.CultureInfo.InvariantCulture;
        if (int.TryParse(cell, System.Globalization.NumberStyles.Integer, invariant, out value)) return true;
        if (double.TryParse(cell, System.Globalization.NumberStyles.Float, invariant, out var number) && number == Math.Floor(number)
            && number is >= int.MinValue and <= int.MaxValue)
        {
            value = (int)number;
            return true;
        }
        value = 0;
        return false;
    }

    /// <summary>True for a cell that is a whole number of any size (<c>3</c>, <c>3.0</c>, <c>3000000000</c>), finite.</summary>
    public static bool IsWholeNumber(string cell) =>
        double.TryParse(cell, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var number)
        && double.IsFinite(number) && number == Math.Floor(number);

    /// <summary>What a label may be, for error messages.</summary>
    public string Describe() => IntegerLabels
        ? $"a class index 0 to {ClassCount - 1}"
        : $"one of the class names {string.Join(", ", (Names ?? []).Take(20).Select(n => $"'{n}'"))}{((Names?.Count ?? 0) > 20 ? ", ..." : "")}";
}
