using DistTrain.Core.Evaluation;

namespace DistTrain.Cli;

/// <summary>
/// Draws a confusion matrix as a PNG heatmap (ScottPlot): rows are the true classes (top to bottom), columns the predicted
/// ones, each cell coloured by the fraction of its row (the recall for the diagonal; the x-axis label says so) and
/// labelled with its count.
/// </summary>
internal static class ConfusionMatrixPlot
{
    /// <summary>Writes the heatmap to <paramref name="path"/>: about 60 pixels per class, 720 to 2,520 pixels wide.</summary>
    /// <param name="matrix">The counts.</param>
    /// <param name="names">A label per class.</param>
    /// <param name="title">The plot's title.</param>
    /// <param name="path">The PNG file written.</param>
    public static void Write(ConfusionMatrix matrix, IReadOnlyList<string> names, string title, string path)
    {
        var size = Math.Clamp(60 * matrix.ClassCount + 300, 600, 2400);
        Create(matrix, names, title).SavePng(path, size + 120, size);
    }

    /// <summary>The heatmap as a ScottPlot plot (see <see cref="Write"/>).</summary>
    internal static ScottPlot.Plot Create(ConfusionMatrix matrix, IReadOnlyList<string> names, string title)
    {
        var n = matrix.ClassCount;
        var fractions = new double[n, n];
        for (var actual = 0; actual < n; actual++)
        {
            var support = Math.Max(1, matrix.Support(actual));
            for (var predicted = 0; predicted < n; predicted++) fractions[actual, predicted] = matrix[actual, predicted] / (double)support;
        }
        var plot = new ScottPlot.Plot();
        var heatmap = plot.Add.Heatmap(fractions);
        heatmap.Colormap = new ScottPlot.Colormaps.Viridis();
        heatmap.ManualRange = new ScottPlot.Range(0, 1);
        heatmap.Position = new ScottPlot.CoordinateRect(0, n - 1, 0, n - 1); // cell (row r, column c) centred on (c, n-1-r)
        // The colour bar's own label would be drawn over its tick labels (ScottPlot 5.1 does not leave room for both), so
        // the x-axis label says what the colour means.
        plot.Add.ColorBar(heatmap);
        if (n <= 30)
            for (var actual = 0; actual < n; actual++)
            for (var predicted = 0; predicted < n; predicted++)
            {
                var text = plot.Add.Text(matrix[actual, predicted].ToString(System.Globalization.CultureInfo.InvariantCulture), predicted, n - 1 - actual);
                text.LabelAlignment = ScottPlot.Alignment.MiddleCenter;
                text.LabelFontSize = n <= 12 ? 14 : 9;
                text.LabelFontColor = fractions[actual, predicted] > 0.5 ? ScottPlot.Colors.Black : ScottPlot.Colors.White;
            }
        var positions = Enumerable.Range(0, n).Select(i => (double)i).ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(positions, [.. names]);
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual([.. positions.Select(p => n - 1 - p)], [.. names]);
        if (names.Sum(name => name.Length) > 100)
        {
            // Many or long names: slanted, with room below for them.
            plot.Axes.Bottom.TickLabelStyle.Rotation = 45;
            plot.Axes.Bottom.TickLabelStyle.Alignment = ScottPlot.Alignment.MiddleLeft;
            plot.Axes.Bottom.MinimumSize = 8 * names.Max(name => name.Length) + 40;
        }
        plot.XLabel("predicted class (colour: fraction of the true class)");
        plot.YLabel("true class");
        plot.Title(title);
        plot.Axes.SetLimits(-0.5, n - 0.5, -0.5, n - 0.5);
        return plot;
    }
}
