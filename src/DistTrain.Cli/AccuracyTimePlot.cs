namespace DistTrain.Cli;

/// <summary>Draws runs' test accuracy (percent) against cumulative training and evaluation time (seconds), one line per
/// run, with the target accuracy as a dashed line (ScottPlot).</summary>
internal static class AccuracyTimePlot
{
    /// <summary>Writes the PNG to <paramref name="path"/>.</summary>
    /// <param name="runs">The runs, one line each.</param>
    /// <param name="target">The target accuracy, a fraction.</param>
    /// <param name="path">The PNG written, 1000 x 600 pixels.</param>
    public static void Write(IReadOnlyList<RunHistory> runs, double target, string path)
    {
        var plot = new ScottPlot.Plot();
        foreach (var run in runs)
        {
            var line = plot.Add.Scatter(run.Epochs.Select(e => e.Seconds).ToArray(), run.Epochs.Select(e => 100 * e.TestAccuracy).ToArray());
            line.LegendText = run.FromEpochsCsv ? $"{run.Label} (unfinished)" : run.Label;
            line.MarkerSize = 5;
        }
        var goal = plot.Add.HorizontalLine(100 * target);
        goal.LinePattern = ScottPlot.LinePattern.Dashed;
        goal.Color = ScottPlot.Colors.Gray;
        goal.LegendText = $"target {100 * target:0.##}%";
        plot.XLabel("training and evaluation time (s)");
        plot.YLabel("test accuracy (%)");
        plot.Title("Test accuracy against time");
        plot.ShowLegend(ScottPlot.Alignment.LowerRight);
        plot.SavePng(path, 1000, 600);
    }
}
