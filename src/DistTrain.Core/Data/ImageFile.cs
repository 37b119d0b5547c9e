using DistTrain.Core.Layers;
using SkiaSharp;

namespace DistTrain.Core.Data;

/// <summary>
/// Decodes one PNG or JPEG file (SkiaSharp) into a sample <c>[channels, height, width]</c> of floats in [0, 1] (bytes / 255),
/// channel-major as PyTorch's <c>ToTensor</c>: 3 channels are R, G and B; 1 channel is the luma of PIL's RGB to L
/// conversion, <c>(19595 R + 38470 G + 7471 B + 2^15) >> 16</c> (ITU-R 601-2), which is what torchvision's
/// <c>Grayscale</c> gives. Transparency is ignored, as PIL's <c>convert("RGB")</c> does.
/// </summary>
public static class ImageFile
{
    /// <summary>File name extensions read as images (case-insensitive); others in an image folder are skipped.</summary>
    public static readonly string[] Extensions = [".png", ".jpg", ".jpeg"];

    /// <summary>
    /// Largest image decoded, in pixels (width · height): 2^26, about 67 megapixels, 256 MiB as RGBA. The size in a file's
    /// header is checked against it before anything is allocated for the pixels, so a header that claims, say,
    /// 100,000 x 100,000 pixels is refused instead of allocating 40 GB.
    /// </summary>
    public const long MaxPixels = 1L << 26;

    /// <summary>True when <paramref name="path"/> ends in one of <see cref="Extensions"/>.</summary>
    public static bool HasImageExtension(string path) => Extensions.Any(e => path.EndsWith(e, StringComparison.OrdinalIgnoreCase));

    /// <summary>Decodes <paramref name="path"/> into <paramref name="sample"/> (<c>shape.Size</c> values).</summary>
    /// <param name="path">A PNG or JPEG file.</param>
    /// <param name="shape">Channels (1 or 3), height and width wanted.</param>
    /// <param name="resize">Resample to height × width (bicubic, Mitchell) when the image has another size; false makes that an error.</param>
    /// <param name="sample">Receives the values.</param>
    /// <exception cref="DataFormatException">The file is missing or unreadable, is not a decodable PNG or JPEG, its header
    /// claims more than <see cref="MaxPixels"/> pixels, or it has another size and <paramref name="resize"/> is false.</exception>
    /// <exception cref="ArgumentException">The shape does not have 1 or 3 channels, or the span is not of its size.</exception>
    public static void Read(string path, TensorShape shape, bool resize, Span<float> sample)
    {
        if (shape.Channels is not (1 or 3))
            throw new ArgumentException($"Images have 1 (grayscale) or 3 (RGB) channels; the model's input is {shape}.");
        if (sample.Length != shape.Size)
            throw new ArgumentException($"The sample holds {sample.Length} values but {shape} needs {shape.Size}.");
        if (!File.Exists(path)) throw new DataFormatException($"{path}: no such image file.");
        try
        {
            Decode(path, shape, resize, sample);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataFormatException($"{path}: the image could not be read ({e.Message}). Check that the file is readable.");
        }
    }

    private static void Decode(string path, TensorShape shape, bool resize, Span<float> sample)
    {
        if (InputFile.PipeProblem(path, "PNG or JPEG file") is { } pipe) throw new DataFormatException(pipe);
        using var file = File.OpenRead(path);
        if (file.Length == 0) throw new DataFormatException($"{path}: the file is empty (0 bytes), not an image. Write or copy the image again.");
        using var codec = SKCodec.Create(file, out var status)
            ?? throw new DataFormatException($"{path}: not a PNG or JPEG image that can be decoded ({(status == SKCodecResult.Unimplemented
                ? "its first bytes are neither a PNG nor a JPEG signature" : status)}).");
        var (width, height) = (codec.Info.Width, codec.Info.Height);
        if (width <= 0 || height <= 0 || (long)width * height > MaxPixels)
            throw new DataFormatException($"{path}: the header claims {width}x{height} pixels (width x height); at most {MaxPixels:N0} pixels are decoded. Scale the image down before training or predicting.");
        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var decoded = new SKBitmap(info);
        var result = codec.GetPixels(info, decoded.GetPixels());
        if (result != SKCodecResult.Success)
            throw new DataFormatException($"{path}: the image could not be decoded ({(result == SKCodecResult.IncompleteInput ? "the file is truncated" : result)}).");
        var bitmap = decoded;
        SKBitmap? resized = null;
        try
        {
            if (info.Width != shape.Width || info.Height != shape.Height)
            {
                if (!resize)
                    throw new DataFormatException($"{path}: the image is {info.Width}x{info.Height} (width x height) but Model:InputShape {shape} needs {shape.Width}x{shape.Height}. Resize the images, or have DistTrain resize them: Data:ImageFolder:Resize true for training, --resize for predict and evaluate.");
                resized = decoded.Resize(new SKImageInfo(shape.Width, shape.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul), new SKSamplingOptions(SKCubicResampler.Mitchell))
                    ?? throw new DataFormatException($"{path}: the image could not be resized to {shape.Width}x{shape.Height}.");
                bitmap = resized;
            }
            var pixels = bitmap.GetPixelSpan();
            var plane = shape.Height * shape.Width;
            for (var p = 0; p < plane; p++)
            {
                int r = pixels[4 * p], g = pixels[4 * p + 1], b = pixels[4 * p + 2];
                if (shape.Channels == 1)
                {
                    sample[p] = ((19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16) / 255f;
                    continue;
                }
                sample[p] = r / 255f;
                sample[plane + p] = g / 255f;
                sample[2 * plane + p] = b / 255f;
            }
        }
        finally
        {
            resized?.Dispose();
        }
    }
}
