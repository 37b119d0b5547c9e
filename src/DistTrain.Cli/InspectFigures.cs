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
    /// The weights the run started from, as <c>disttrain train</c> and <c>finetune</c> built them
    /// (<see cref="ModelFactory.StartingWeights"/>): the model's initializer drawn with the run's seed (both from the
    /// checkpoint's metadata), and for a fine-tuned model (Model:Pretrained in its metadata) the pretrained tensors on top,
    /// all but a replaced head, read again from that file.
    /// </summary>
    /// <exception cref="InvalidDataException">The metadata lacks the model or the seed, or a fine-tuned model's pretrained
    /// file is gone or no longer fits it.</exception>
    public static Comparison Initialization(string path, IReadOnlyDictionary<string, string> metadata)
    {
        var model = ModelMetadata.ReadModel(metadata, path, keepTransferSettings: true);
        if (!metadata.TryGetValue(ModelMetadata.Seed, out var seedText) || !int.TryParse(seedText, CultureInfo.InvariantCulture, out var seed))
            throw new InvalidDataException($"{path}: the metadata has no '{ModelMetadata.Seed}' (the checkpoint was written before DistTrain recorded it), so the initialization cannot be drawn again. Use --compare with another checkpoint instead.");
        var network = ModelFactory.Build(model, isFrozen: _ => false);
        var label = $"initialization ({model.Initializer.Kind}, seed {seed})";
        if (!string.IsNullOrEmpty(model.Pretrained))
        {
            // A fine-tuned model started from its pretrained file, not from the initializer (but for a replaced head).
            if (!File.Exists(model.Pretrained))
                throw new InvalidDataException($"{path} was fine-tuned from {model.Pretrained}, which is gone, so the weights it started from cannot be read again. " +
                    "Put that file back, or give it as --compare FILE instead of --compare-initialization.");
            label = $"starting weights ({Path.GetFileName(model.Pretrained)}{(model.ReplaceHead ? $", new head: {model.Initializer.Kind}, seed {seed}" : "")})";
        }
        var weights = ModelFactory.StartingWeights(network, model, seed);
        var tensors = weights.Layout.Segments.ToDictionary(s => s.Name, s => new NamedTensor(s.Shape, weights.Segment(s).ToArray()), StringComparer.Ordinal);
        return new Comparison(tensors, label);
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
        CliConsole.Out.WriteLiteralLine($"Filters of {grid.Tensor} ({grid.Filters.Count} x {grid.Channels}x{grid.Height}x{grid.Width}{(comparison is null ? "" : $", beside the {comparison.Label}")}): {Path.GetFullPath(output)}");
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
        CliConsole.Out.WriteLiteralLine($"Weight histograms of {drawn.Count} tensors ({string.Join(", ", drawn)}){(comparison is null ? "" : $" over the {comparison.Label}")}: {Path.GetFullPath(output)}");
        return true;
    }

    private static string Describe(FilterGrid grid) =>
        $"{grid.Tensor}, {grid.Filters.Count} filters of {grid.Channels}x{grid.Height}x{grid.Width}" +
        (grid.Channels == 3 ? " (RGB, each stretched to its range)" : " (gray = 0, white/black = +/- each filter's largest |w|)");

    private static string Achieved(IReadOnlyDictionary<string, string> metadata) =>
        metadata.TryGetValue("epochs", out var epochs) && metadata.TryGetValue(ModelMetadata.TestAccuracy, out var accuracy)
        && double.TryParse(accuracy, CultureInfo.InvariantCulture, out var fraction) && double.IsFinite(fraction)
            ? $"; after {epochs} epoch{(epochs == "1" ? "" : "s")}, test accuracy {100 * fraction:F2}%"
            : "";
}
