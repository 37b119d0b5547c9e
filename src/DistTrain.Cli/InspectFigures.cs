using System.Globalization;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Layers;
using DistTrain.Core.Models;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary>
/// <c>disttrain inspect --filters / --histograms</c>: pictures of what the weights learned, optionally beside another
/// checkpoint's or beside the initialization the run started from.
/// </summary>
internal static class InspectFigures
{
    /// <summary>The tensors to draw beside the checkpoint's, and their label.</summary>
    public sealed record Comparison(IReadOnlyDictionary<string, NamedTensor> Tensors, string Label);

    /// <summary>
    /// The weights the run started from: the model's initializer drawn with the run's seed (both from the checkpoint's
    /// metadata), as <c>disttrain train</c> draws them.
    /// </summary>
    /// <exception cref="InvalidDataException">The metadata lacks the model or the seed.</exception>
    public static Comparison Initialization(string path, IReadOnlyDictionary<string, string> metadata)
    {
        var model = ModelMetadata.ReadModel(metadata, path);
        if (!metadata.TryGetValue(ModelMetadata.Seed, out var seedText) || !int.TryParse(seedText, CultureInfo.InvariantCulture, out var seed))
            throw new InvalidDataException($"{path}: the metadata has no '{ModelMetadata.Seed}' (the checkpoint was written before DistTrain recorded it), so the initialization cannot be drawn again. Use --compare with another checkpoint instead.");
        var weights = ModelFactory.InitialWeights(ModelFactory.Build(model, isFrozen: _ => false), model.Initializer, seed);
        var tensors = weights.Layout.Segments.ToDictionary(s => s.Name, s => new NamedTensor(s.Shape, weights.Segment(s).ToArray()), StringComparer.Ordinal);
        return new Comparison(tensors, $"initialization ({model.Initializer.Kind}, seed {seed})");
    }

    /// <summary>Draws the first layer's filters; returns false (with the reason on standard error) when nothing can be drawn.</summary>
    public static bool DrawFilters(string output, string checkpoint, IReadOnlyDictionary<string, NamedTensor> tensors,
        IReadOnlyDictionary<string, string> metadata, Comparison? comparison)
    {
        TensorShape? input = null;
        if (metadata.ContainsKey(ModelMetadata.ModelConfig)) input = ModelMetadata.ReadModel(metadata, checkpoint).Input();
        var grid = FilterGrid.FirstLayer(tensors, input);
        if (grid is null)
        {
            CliConsole.Fail("error", $"--filters: {checkpoint} has no Dense or Conv2D weight ('N.weight' with 2 or 4 dimensions) to draw.");
            return false;
        }
        var panels = new List<(FilterGrid, string)> { (grid, $"{Path.GetFileName(checkpoint)}: {Describe(grid)}{Achieved(metadata)}") };
        if (comparison is not null)
        {
            var other = FilterGrid.FirstLayer(comparison.Tensors, input);
            if (other is null || other.Tensor != grid.Tensor || other.Filters.Count != grid.Filters.Count || other.Filters[0].Length != grid.Filters[0].Length)
            {
                CliConsole.Fail("error", $"--filters: the comparison ({comparison.Label}) has no tensor '{grid.Tensor}' of the same shape to draw beside it.");
                return false;
            }
            panels.Add((other, $"{comparison.Label}: {Describe(other)}"));
        }
        FilterGrid.Write(output, panels);
        AnsiConsole.MarkupLineInterpolated($"Filters of {grid.Tensor} ({grid.Filters.Count} x {grid.Channels}x{grid.Height}x{grid.Width}{(comparison is null ? "" : $", beside the {comparison.Label}")}): {Path.GetFullPath(output)}");
        return true;
    }

    /// <summary>Draws the per-layer weight histograms; returns false (with the reason on standard error) when there is no weight tensor.</summary>
    public static bool DrawHistograms(string output, string checkpoint, IReadOnlyDictionary<string, NamedTensor> tensors, Comparison? comparison)
    {
        var drawn = WeightHistograms.Write(output, tensors, Path.GetFileName(checkpoint), comparison?.Tensors, comparison?.Label);
        if (drawn.Count == 0)
        {
            CliConsole.Fail("error", $"--histograms: {checkpoint} has no weight tensor ('N.weight') to draw.");
            return false;
        }
        AnsiConsole.MarkupLineInterpolated($"Weight histograms of {drawn.Count} tensors ({string.Join(", ", drawn)}){(comparison is null ? "" : $" over the {comparison.Label}")}: {Path.GetFullPath(output)}");
        return true;
    }

    private static string Describe(FilterGrid grid) =>
        $"{grid.Tensor}, {grid.Filters.Count} filters of {grid.Channels}x{grid.Height}x{grid.Width}" +
        (grid.Channels == 3 ? " (RGB, each stretched to its range)" : " (gray = 0, white/black = +/- each filter's largest |w|)");

    private static string Achieved(IReadOnlyDictionary<string, string> metadata) =>
        metadata.TryGetValue("epochs", out var epochs) && metadata.TryGetValue(ModelMetadata.TestAccuracy, out var accuracy)
        && double.TryParse(accuracy, CultureInfo.InvariantCulture, out var fraction) && double.IsFinite(fraction)
            ? $"; after {epochs} epochs, test accuracy {100 * fraction:F2}%"
            : "";
}
