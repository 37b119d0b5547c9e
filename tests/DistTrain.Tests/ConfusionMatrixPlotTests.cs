using DistTrain.Cli;
using DistTrain.Core.Evaluation;

namespace DistTrain.Tests;

/// <summary>The confusion-matrix heatmap <c>disttrain evaluate</c> draws.</summary>
public class ConfusionMatrixPlotTests
{
    [Fact]
    public void The_colour_bar_has_no_label_drawn_over_its_ticks_and_the_x_axis_label_says_what_the_colour_is()
    {
        var matrix = new ConfusionMatrix(10);
        for (var c = 0; c < 10; c++)
        {
            for (var i = 0; i < 9; i++) matrix.Add(c, c);
            matrix.Add(c, (c + 1) % 10);
        }
        var plot = ConfusionMatrixPlot.Create(matrix, [.. Enumerable.Range(0, 10).Select(c => $"class {c}")], "test: accuracy 90.00%");
        // ScottPlot 5.1 draws a colour bar's label over its tick labels (0.3 to 0.75 on a 10-class matrix), so it has none.
        var colorBar = Assert.Single(plot.Axes.GetPanels().OfType<ScottPlot.Panels.ColorBar>());
        Assert.True(string.IsNullOrEmpty(colorBar.Label), $"the colour bar is labelled '{colorBar.Label}'");
        Assert.Equal("predicted class (colour: fraction of the true class)", plot.Axes.Bottom.Label.Text);
    }
}
