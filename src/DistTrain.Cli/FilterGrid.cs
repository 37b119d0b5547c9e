using System.Globalization;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Layers;
using SkiaSharp;

namespace DistTrain.Cli;

/// <summary>
/// The first layer's filters as small images: each convolution kernel <c>[in, k, k]</c>, or each Dense unit's incoming
/// weights reshaped to the input image. One- and three-channel filters are drawn in gray and in colour; filters over
/// other channel counts show each channel side by side.
/// </summary>
/// <param name="Tensor">The tensor drawn, such as <c>0.weight</c>.</param>
/// <param name="Channels">Channels of each filter image (1 or 3 are drawn as gray or RGB).</param>
/// <param name="Height">Rows of each filter image.</param>
/// <param name="Width">Columns of each filter image.</param>
/// <param name="Filters">One array per filter, <c>[Channels, Height, Width]</c> row-major.</param>
internal sealed record FilterGrid(string Tensor, int Channels, int Height, int Width, IReadOnlyList<float[]> Filters)
{
    /// <summary>
    /// The filters of the first tensor with a layer index whose name ends in <c>.weight</c> and that has two dimensions
    /// (Dense, <c>[out, in]</c>) or four (Conv2D, <c>[out, in, k, k]</c>). A Dense row is reshaped to
    /// <paramref name="inputShape"/> when it is an image, else to a square when its length is one, else to one row.
    /// </summary>
    /// <returns>The grid, or null when no tensor fits.</returns>
    public static FilterGrid? FirstLayer(IReadOnlyDictionary<string, NamedTensor> tensors, TensorShape? inputShape)
    {
        var first = tensors
            .Where(t => t.Key.EndsWith(".weight", StringComparison.Ordinal) && t.Value.Shape.Length is 2 or 4)
            .Select(t => (Index: int.TryParse(t.Key.Split('.')[0], CultureInfo.InvariantCulture, out var i) ? i : int.MaxValue, t.Key, t.Value))
            .OrderBy(t => t.Index)
            .FirstOrDefault();
        if (first.Key is null) return null;
        var shape = first.Value.Shape;
        int channels, height, width;
        if (shape.Length == 4)
            (channels, height, width) = (shape[1], shape[2], shape[3]);
        else if (inputShape is { IsFlat: false } image && image.Size == shape[1])
            (channels, height, width) = (image.Channels, image.Height, image.Width);
        else if ((int)Math.Round(Math.Sqrt(shape[1])) is var side && side * side == shape[1])
            (channels, height, width) = (1, side, side);
        else
            (channels, height, width) = (1, 1, shape[1]);
        var size = channels * height * width;
        var filters = Enumerable.Range(0, shape[0]).Select(o => first.Value.Data.AsSpan(o * size, size).ToArray()).ToArray();
        return new FilterGrid(first.Key, channels, height, width, filters);
    }

    /// <summary>
    /// Draws one panel per grid, stacked, each with its caption, as a PNG: filters in a square-ish grid, each pixel of a
    /// filter enlarged to a block. Gray filters map 0 to mid-gray and ±max|w| of that filter to white and black; colour
    /// filters are stretched from their minimum to their maximum.
    /// </summary>
    /// <exception cref="IOException">The file cannot be written.</exception>
    public static void Write(string path, IReadOnlyList<(FilterGrid Grid, string Caption)> panels)
    {
        const int gap = 4, captionHeight = 28, margin = 10;
        var layouts = panels.Select(p =>
        {
            var tileWidth = p.Grid.Channels is 1 or 3 ? p.Grid.Width : p.Grid.Width * p.Grid.Channels;
            var scale = Math.Max(1, 56 / Math.Max(p.Grid.Height, tileWidth));
            var columns = (int)Math.Ceiling(Math.Sqrt(p.Grid.Filters.Count));
            var rows = (p.Grid.Filters.Count + columns - 1) / columns;
            return (p.Grid, p.Caption, Scale: scale, Columns: columns, Rows: rows, TileWidth: tileWidth * scale, TileHeight: p.Grid.Height * scale);
        }).ToArray();
        using var typeface = SKTypeface.FromFamilyName(ScottPlot.Fonts.Default);
        using var font = new SKFont(typeface, 15);
        var width = (int)Math.Ceiling(Math.Max(layouts.Max(l => l.Columns * (l.TileWidth + gap)), layouts.Max(l => font.MeasureText(l.Caption)))) + 2 * margin;
        var height = layouts.Sum(l => captionHeight + l.Rows * (l.TileHeight + gap) + margin) + margin;
        using var bitmap = new SKBitmap(width, height);
        using var canvas = new SKCanvas(bitmap);
        canvas.Clear(SKColors.White);
        using var ink = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        using var fill = new SKPaint();
        var top = margin;
        foreach (var layout in layouts)
        {
            canvas.DrawText(layout.Caption, margin, top + 18, font, ink);
            top += captionHeight;
            for (var f = 0; f < layout.Grid.Filters.Count; f++)
            {
                var x0 = margin + f % layout.Columns * (layout.TileWidth + gap);
                var y0 = top + f / layout.Columns * (layout.TileHeight + gap);
                DrawFilter(canvas, fill, layout.Grid, layout.Grid.Filters[f], x0, y0, layout.Scale);
            }
            top += layout.Rows * (layout.TileHeight + gap) + margin;
        }
        using var image = SKImage.FromBitmap(bitmap);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        using var stream = File.Create(path);
        data.SaveTo(stream);
    }

    private static void DrawFilter(SKCanvas canvas, SKPaint fill, FilterGrid grid, float[] filter, int x0, int y0, int scale)
    {
        var positions = grid.Height * grid.Width;
        if (grid.Channels == 3)
        {
            var min = filter.Min();
            var range = Math.Max(filter.Max() - min, 1e-12f);
            byte Level(float v) => (byte)Math.Clamp((int)Math.Round(255 * (v - min) / range), 0, 255);
            for (var p = 0; p < positions; p++)
            {
                fill.Color = new SKColor(Level(filter[p]), Level(filter[positions + p]), Level(filter[2 * positions + p]));
                canvas.DrawRect(x0 + p % grid.Width * scale, y0 + p / grid.Width * scale, scale, scale, fill);
            }
            return;
        }
        var largest = Math.Max(filter.Max(Math.Abs), 1e-12f);
        for (var c = 0; c < grid.Channels; c++)
            for (var p = 0; p < positions; p++)
            {
                var level = (byte)Math.Clamp((int)Math.Round(127.5 + 127.5 * filter[c * positions + p] / largest), 0, 255);
                fill.Color = new SKColor(level, level, level);
                canvas.DrawRect(x0 + (c * grid.Width + p % grid.Width) * scale, y0 + p / grid.Width * scale, scale, scale, fill);
            }
    }
}
