using DistTrain.Core.Configuration;
using DistTrain.Core.Layers;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Core.Data;

/// <summary>
/// Augments training images in place, per sample: a random crop of the zero-padded image, a random translation and a
/// random horizontal flip (<see cref="AugmentationOptions"/>). Each sample's draws come from
/// <see cref="SplitMix64.For"/>(seed, epoch, sample index), so a run is reproducible and a sample is augmented the same
/// way whichever worker holds it: N workers still equal one worker of N times the batch.
/// </summary>
/// <remarks>
/// <para>Samples are stored normalized (<see cref="Normalizer"/>). The result is the normalization of the augmented raw
/// image: pixels moved in from outside the image are raw 0 (black, as torchvision pads), which is
/// <c>−mean/std</c> after normalization, and with per-feature statistics a moved pixel is re-standardized with the
/// statistics of its new position.</para>
/// <para>One instance per worker: it keeps a one-sample scratch array and allocates nothing per step.</para>
/// </remarks>
public sealed class ImageAugmenter
{
    private readonly AugmentationOptions _options;
    private readonly TensorShape _shape;
    private readonly int _seed;
    private readonly float[] _scratch;
    private readonly float[] _mean;     // per feature, or one value
    private readonly float[] _std;
    private readonly float[] _fill;     // normalized raw 0: per feature, or one value
    private readonly bool _perFeature;

    /// <summary>Creates an augmenter for samples of <paramref name="shape"/> normalized by <paramref name="normalizer"/>.</summary>
    /// <param name="options">What to do; must be <see cref="AugmentationOptions.Enabled"/>.</param>
    /// <param name="shape">One sample, <c>[channels, height, width]</c>.</param>
    /// <param name="normalizer">The statistics the samples were standardized with; null when they were not.</param>
    /// <param name="seed">The run's seed (Training:Seed).</param>
    /// <exception cref="ArgumentException">The shape is flat, or the padding or translation does not fit the image.</exception>
    public ImageAugmenter(AugmentationOptions options, TensorShape shape, Normalizer? normalizer, int seed)
    {
        if (shape.IsFlat || shape.Height < 2 || shape.Width < 2)
            throw new ArgumentException($"Data:Augmentation needs image samples [channels, height, width]; the model's input is {shape}. Set Model:InputShape.");
        if (options.CropPadding < 0 || 2 * options.CropPadding > Math.Min(shape.Height, shape.Width))
            throw new ArgumentException($"Data:Augmentation:CropPadding = {options.CropPadding} does not fit a {shape.Height}x{shape.Width} image: allowed 0 to {Math.Min(shape.Height, shape.Width) / 2}.");
        if (!(options.MaxTranslation is >= 0 and <= 0.5))
            throw new ArgumentException($"Data:Augmentation:MaxTranslation = {options.MaxTranslation} is out of range: allowed [0, 0.5].");
        _options = options;
        _shape = shape;
        _seed = seed;
        _scratch = new float[shape.Size];
        _perFeature = normalizer is { Kind: NormalizationKind.PerFeature };
        if (_perFeature && normalizer!.Mean.Length != shape.Size)
            throw new ArgumentException($"The per-feature normalizer has {normalizer.Mean.Length} features but the images have {shape.Size}.");
        _mean = normalizer is null || normalizer.Kind == NormalizationKind.None ? [0f] : normalizer.Mean;
        _std = normalizer is null || normalizer.Kind == NormalizationKind.None ? [1f] : normalizer.Std;
        _fill = new float[_mean.Length];
        for (var i = 0; i < _fill.Length; i++) _fill[i] = -_mean[i] / _std[i];
    }

    /// <summary>What one sample gets in one epoch: the crop's and the translation's shifts (pixels, source minus target) and the flip.</summary>
    /// <param name="CropX">Crop offset minus the padding, in [−CropPadding, CropPadding].</param>
    /// <param name="CropY">The same vertically.</param>
    /// <param name="TranslateX">Rightward translation in pixels.</param>
    /// <param name="TranslateY">Downward translation in pixels.</param>
    /// <param name="Flip">Mirrored left to right after the shifts.</param>
    public readonly record struct Draw(int CropX, int CropY, int TranslateX, int TranslateY, bool Flip)
    {
        /// <summary>True when the draw leaves the image unchanged.</summary>
        public bool IsIdentity => CropX == 0 && CropY == 0 && TranslateX == 0 && TranslateY == 0 && !Flip;
    }

    /// <summary>The draw of sample <paramref name="sampleIndex"/> (its index in the training split) in <paramref name="epoch"/>.</summary>
    public Draw DrawFor(int epoch, int sampleIndex)
    {
        var random = SplitMix64.For(_seed, epoch, sampleIndex);
        var padding = _options.CropPadding;
        var cropX = padding > 0 ? random.NextInt(-padding, padding) : 0;
        var cropY = padding > 0 ? random.NextInt(-padding, padding) : 0;
        int translateX = 0, translateY = 0;
        if (_options.MaxTranslation > 0)
        {
            // As RandomAffine: round(uniform(-f·W, f·W)), horizontal first.
            var maxX = _options.MaxTranslation * _shape.Width;
            var maxY = _options.MaxTranslation * _shape.Height;
            translateX = (int)Math.Round(-maxX + 2 * maxX * random.NextDouble(), MidpointRounding.ToEven);
            translateY = (int)Math.Round(-maxY + 2 * maxY * random.NextDouble(), MidpointRounding.ToEven);
        }
        var flip = _options.HorizontalFlip && random.NextDouble() < 0.5;
        return new Draw(cropX, cropY, translateX, translateY, flip);
    }

    /// <summary>Augments every column of <paramref name="inputs"/> <c>[features, batch]</c>; column j holds training sample <c>sampleIndices[j]</c>.</summary>
    /// <exception cref="ArgumentException">The matrix does not hold one column per index of this augmenter's image size.</exception>
    public void Apply(Matrix<float> inputs, ReadOnlySpan<int> sampleIndices, int epoch)
    {
        if (inputs.RowCount != _shape.Size || inputs.ColumnCount != sampleIndices.Length)
            throw new ArgumentException($"Augmentation expects [{_shape.Size}, {sampleIndices.Length}] inputs but receives [{inputs.RowCount}, {inputs.ColumnCount}].");
        var values = inputs.ColumnMajorValues();
        for (var column = 0; column < sampleIndices.Length; column++)
            Apply(values.AsSpan(column * _shape.Size, _shape.Size), DrawFor(epoch, sampleIndices[column]));
    }

    /// <summary>Applies <paramref name="draw"/> to one normalized sample <c>[channels, height, width]</c> in place.</summary>
    /// <exception cref="ArgumentException">The sample is not of this augmenter's size.</exception>
    public void Apply(Span<float> sample, Draw draw)
    {
        if (sample.Length != _shape.Size)
            throw new ArgumentException($"Augmentation expects samples of {_shape.Size} values but receives {sample.Length}.");
        if (draw.IsIdentity) return;
        sample.CopyTo(_scratch);
        int height = _shape.Height, width = _shape.Width, plane = height * width;
        for (var channel = 0; channel < _shape.Channels; channel++)
        {
            var offset = channel * plane;
            for (var y = 0; y < height; y++)
            {
                // Target (y, x) of the flipped image comes from (y, x1) of the translated one, which comes from (y2, x2) of
                // the cropped one, which comes from (y3, x3) of the original; outside the image at either stage is black.
                var y2 = y - draw.TranslateY;
                var y3 = y2 + draw.CropY;
                var rowInside = (uint)y2 < (uint)height && (uint)y3 < (uint)height;
                for (var x = 0; x < width; x++)
                {
                    var target = offset + y * width + x;
                    var x1 = draw.Flip ? width - 1 - x : x;
                    var x2 = x1 - draw.TranslateX;
                    var x3 = x2 + draw.CropX;
                    var inside = rowInside && (uint)x2 < (uint)width && (uint)x3 < (uint)width;
                    if (!_perFeature)
                    {
                        sample[target] = inside ? _scratch[offset + y3 * width + x3] : _fill[0];
                        continue;
                    }
                    if (!inside)
                    {
                        sample[target] = _fill[target];
                        continue;
                    }
                    var source = offset + y3 * width + x3;
                    var raw = _scratch[source] * _std[source] + _mean[source];
                    sample[target] = (raw - _mean[target]) / _std[target];
                }
            }
        }
    }
}
