using System.Globalization;
using DistTrain.Core.Checkpoints;
using ScottPlot; // the Multiplot extension methods (AddPlot, SavePng)

namespace DistTrain.Cli;

/// <summary>
/// One histogram per layer's <c>weight</c> tensor (Dense and Conv2D weights, normalization scales), in layer order, drawn
/// with ScottPlot in a grid of subplots; a second set of tensors (another checkpoint, or the initialization) is drawn over
/// it in the same bins.
/// </summary>
internal static class WeightHistograms
{
    private const int Bins = 60;

    /// <summary>Writes the PNG; returns the names of the tensors drawn (none when the checkpoint has no weight tensor).</summary>
    /// <exception cref="IOException">The file cannot be written.</exception>
    public static IReadOnlyList<string> Write(string path, IReadOnlyDictionary<string, NamedTensor> tensors, string label,
        IReadOnlyDictionary<string, NamedTensor>? comparison, string? comparisonLabel)
    {
        var names = tensors.Keys
            .Where(n => n.EndsWith(".weight", StringComparison.Ordinal))
            .OrderBy(n => int.TryParse(n.Split('.')[0], CultureInfo.InvariantCulture, out var i) ? i : int.MaxValue)
            .ThenBy(n => n, StringComparer.Ordinal)
            .ToArray();
        if (names.Length == 0) return names;
        var multiplot = new ScottPlot.Multiplot();
        var columns = Math.Min(3, names.Length);
        var rows = (names.Length + columns - 1) / columns;
        for (var index = 0; index < names.Length; index++)
        {
            var name = names[index];
            var plot = new ScottPlot.Plot();
            if (index == 0) multiplot.Reset(plot); // a new Multiplot starts with one empty plot of its own
            else multiplot.AddPlot(plot);
            var values = tensors[name].Data;
            var other = comparison is not null && comparison.TryGetValue(name, out var o) && o.Data.Length > 0 ? o.Data : null;
            var min = Math.Min(values.Min(), other?.Min() ?? float.MaxValue);
            var max = Math.Max(values.Max(), other?.Max() ?? float.MinValue);
            if (max <= min) (min, max) = (min - 0.5f, max + 0.5f); // a constant tensor (a fresh BatchNorm scale) gets a visible bin
            AddHistogram(plot, values, min, max, label, ScottPlot.Colors.SteelBlue.WithAlpha(0.75));
            if (other is not null) AddHistogram(plot, other, min, max, comparisonLabel ?? "comparison", ScottPlot.Colors.OrangeRed.WithAlpha(0.45));
            var shape = string.Join("x", tensors[name].Shape);
            plot.Title($"{name} [{shape}]  std {Std(values):G3}" + (other is null ? "" : $" (was {Std(other):G3})"), size: 13);
            plot.Axes.Margins(bottom: 0, top: other is null ? 0.1 : 0.45); // headroom for the legend above the bars
            plot.XLabel("weight value", size: 11);
            plot.YLabel("count", size: 11);
            if (other is not null)
            {
                plot.ShowLegend(ScottPlot.Alignment.UpperRight);
                plot.Legend.FontSize = 10;
            }
        }
        multiplot.Layout = new RowMajorGrid(columns);
        multiplot.SavePng(path, 440 * columns, 340 * rows);
        return names;
    }

    private static void AddHistogram(ScottPlot.Plot plot, float[] values, double min, double max, string label, ScottPlot.Color color)
    {
        var histogram = ScottPlot.Statistics.Histogram.WithBinCount(Bins, min, max);
        histogram.AddRange(values.Select(v => (double)v));
        var width = (max - min) / Bins;
        var bars = plot.Add.Bars(histogram.Bins.Select(b => b + width / 2).ToArray(), histogram.Counts.Select(c => (double)c).ToArray());
        foreach (var bar in bars.Bars)
        {
            bar.Size = width;
            bar.FillColor = color;
            bar.LineWidth = 0;
        }
        bars.LegendText = label;
    }

    /// <summary>Subplots filled row by row into <paramref name="columns"/> equal columns.</summary>
    private sealed class RowMajorGrid(int columns) : IMultiplotLayout
    {
        public PixelRect[] GetSubplotRectangles(SubplotCollection subplots, PixelRect figure)
        {
            var rows = (subplots.Count + columns - 1) / columns;
            var (width, height) = (figure.Width / columns, figure.Height / rows);
            return Enumerable.Range(0, subplots.Count).Select(i =>
            {
                var (row, column) = (i / columns, i % columns);
                return new PixelRect(figure.Left + column * width, figure.Left + (column + 1) * width, figure.Top + (row + 1) * height, figure.Top + row * height);
            }).ToArray();
        }
    }

    private static double Std(float[] values)
    {
        var mean = values.Average(v => (double)v);
        return Math.Sqrt(values.Average(v => (v - mean) * (v - mean)));
    }
}
