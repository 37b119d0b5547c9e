using DistTrain.Cluster.Hosting;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Layers;
using DistTrain.Core.Models;

namespace DistTrain.Tests;

/// <summary>
/// Image augmentation against a plain reference on raw pixels (pad and crop, translate, flip, then normalize), its
/// per-sample seeding, and distributed training with it.
/// </summary>
public class AugmentationTests
{
    private static readonly TensorShape Image = new(1, 28, 28);

    /// <summary>The reference: the three torchvision steps one after another on a raw [C, H, W] image, black outside.</summary>
    private static float[] ReferenceAugment(ReadOnlySpan<float> raw, TensorShape shape, ImageAugmenter.Draw draw)
    {
        int h = shape.Height, w = shape.Width;
        var image = raw.ToArray();
        float[] Map(float[] source, Func<int, int, (int Y, int X)> from)
        {
            var result = new float[source.Length];
            for (var c = 0; c < shape.Channels; c++)
            for (var y = 0; y < h; y++)
            for (var x = 0; x < w; x++)
            {
                var (sy, sx) = from(y, x);
                result[(c * h + y) * w + x] = sy >= 0 && sy < h && sx >= 0 && sx < w ? source[(c * h + sy) * w + sx] : 0f;
            }
            return result;
        }
        // RandomCrop(size, padding=P) at offset (P + CropY, P + CropX) of the padded image.
        image = Map(image, (y, x) => (y + draw.CropY, x + draw.CropX));
        image = Map(image, (y, x) => (y - draw.TranslateY, x - draw.TranslateX));
        if (draw.Flip) image = Map(image, (y, x) => (y, w - 1 - x));
        return image;
    }

    [Theory]
    [InlineData(NormalizationKind.None)]
    [InlineData(NormalizationKind.Global)]
    [InlineData(NormalizationKind.PerFeature)]
    public void Augmenting_normalized_samples_equals_normalizing_the_augmented_raw_image(NormalizationKind kind)
    {
        var raw = TestData.RawTrain.Take(12);
        var normalizer = Normalizer.Fit(TestData.RawTrain, kind);
        var normalized = raw.Take(12);
        normalizer.Apply(normalized);
        var augmenter = new ImageAugmenter(new AugmentationOptions { CropPadding = 3, MaxTranslation = 0.2, HorizontalFlip = true }, Image, normalizer, seed: 5);
        ImageAugmenter.Draw[] draws =
        [
            new(0, 0, 0, 0, true), new(2, 0, 0, 0, false), new(0, -3, 0, 0, false), new(0, 0, 4, -2, false),
            new(-1, 2, 3, 1, true), new(3, 3, -5, 5, true), new(-3, -3, 0, 0, true),
        ];
        for (var sample = 0; sample < raw.Count; sample++)
        {
            // The listed draws, then the augmenter's own draws for this sample in two epochs.
            foreach (var draw in draws.Append(augmenter.DrawFor(1, sample)).Append(augmenter.DrawFor(2, sample)))
            {
                var expected = ReferenceAugment(raw.Sample(sample), Image, draw);
                normalizer.Standardize(expected, expected.Length);
                var actual = normalized.Sample(sample).ToArray();
                // Per-feature statistics recover a moved pixel's raw value and standardize it again; where a position's
                // std is tiny (the border, nearly always black) float rounding grows to about 1e-5.
                augmenter.Apply(actual, draw);
                Compare.Close(expected, actual, relative: 1e-5, absolute: 1e-4, $"{kind} sample {sample} draw {draw}");
            }
        }
    }

    [Fact]
    public void A_flip_mirrors_every_row_and_a_shift_fills_with_black()
    {
        var augmenter = new ImageAugmenter(new AugmentationOptions { HorizontalFlip = true, CropPadding = 1 }, new TensorShape(2, 3, 4), null, seed: 1);
        var sample = Enumerable.Range(1, 24).Select(v => (float)v).ToArray();
        var flipped = (float[])sample.Clone();
        augmenter.Apply(flipped, new ImageAugmenter.Draw(0, 0, 0, 0, true));
        Assert.Equal([4f, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17, 24, 23, 22, 21], flipped);
        var shifted = (float[])sample.Clone();
        augmenter.Apply(shifted, new ImageAugmenter.Draw(1, -1, 0, 0, false)); // crop one right and one up: content moves left and down
        Assert.Equal([0f, 0, 0, 0, 2, 3, 4, 0, 6, 7, 8, 0, 0, 0, 0, 0, 14, 15, 16, 0, 18, 19, 20, 0], shifted);
    }

    [Fact]
    public void Draws_depend_only_on_seed_epoch_and_sample_and_follow_torchvisions_distributions()
    {
        var options = new AugmentationOptions { CropPadding = 2, MaxTranslation = 0.1, HorizontalFlip = true };
        var first = new ImageAugmenter(options, Image, null, seed: 3);
        var second = new ImageAugmenter(options, Image, null, seed: 3);
        var otherSeed = new ImageAugmenter(options, Image, null, seed: 4);
        const int samples = 20_000;
        var draws = Enumerable.Range(0, samples).Select(i => first.DrawFor(1, i)).ToArray();
        Assert.Equal(draws, Enumerable.Range(0, samples).Select(i => second.DrawFor(1, i)));
        Assert.True(Enumerable.Range(0, samples).Count(i => first.DrawFor(2, i) != draws[i]) > samples * 0.9, "a new epoch draws anew");
        Assert.True(Enumerable.Range(0, samples).Count(i => otherSeed.DrawFor(1, i) != draws[i]) > samples * 0.9, "another seed draws anew");

        // Flip with probability 1/2; crop offsets uniform over the 5 values -2..2; translation round(U(-2.8, 2.8)):
        // -3 and 3 each with probability 0.3/5.6, -2..2 each with 1/5.6.
        Assert.InRange(draws.Count(d => d.Flip) / (double)samples, 0.48, 0.52);
        foreach (var offset in Enumerable.Range(-2, 5))
        {
            Assert.InRange(draws.Count(d => d.CropX == offset) / (double)samples, 0.18, 0.22);
            Assert.InRange(draws.Count(d => d.CropY == offset) / (double)samples, 0.18, 0.22);
        }
        Assert.All(draws, d => Assert.InRange(d.TranslateX, -3, 3));
        Assert.InRange(draws.Count(d => d.TranslateX == 3) / (double)samples, 0.3 / 5.6 - 0.01, 0.3 / 5.6 + 0.01);
        Assert.InRange(draws.Count(d => d.TranslateY == 0) / (double)samples, 1 / 5.6 - 0.015, 1 / 5.6 + 0.015);
    }

    [Fact]
    public void Settings_that_do_not_fit_the_image_are_refused()
    {
        Assert.Throws<ArgumentException>(() => new ImageAugmenter(new AugmentationOptions { HorizontalFlip = true }, TensorShape.Flat(784), null, 1));
        Assert.Throws<ArgumentException>(() => new ImageAugmenter(new AugmentationOptions { CropPadding = 15 }, Image, null, 1));
    }

    private static ModelOptions ImageMlp => new()
    {
        InputShape = [1, 28, 28],
        Layers = [new() { Type = LayerTypes.Dense, Units = 32 }, new() { Type = LayerTypes.ReLU }, new() { Type = LayerTypes.Dense, Units = 10 }],
    };

    [Fact]
    public async Task Augmented_training_on_four_workers_equals_one_worker_of_four_times_the_batch()
    {
        var data = TestData.Normalized();
        async Task<float[]> Train(int workers, int batch, bool augment)
        {
            var options = TestData.Options(ImageMlp, workers, batch, epochs: 2);
            if (augment) options.Data.Augmentation = new AugmentationOptions { CropPadding = 2, MaxTranslation = 0.1, HorizontalFlip = true };
            // The same order of samples both ways: each round takes the next 64, as one worker of 64 does.
            var order = Enumerable.Range(0, 256).ToArray();
            var shards = Enumerable.Range(0, workers).Select(w => order.Where((_, i) => i / batch % workers == w).ToArray()).ToArray();
            var result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, planner: new FixedShardPlan(256, shards)).WithTestTimeout();
            return result.FinalWeights.Values;
        }
        var four = await Train(4, 16, augment: true);
        var one = await Train(1, 64, augment: true);
        var plain = await Train(1, 64, augment: false);
        Compare.Close(one, four, relative: 1e-5, absolute: 1e-7, "augmented weights, 4 workers x 16 against 1 x 64");
        var changed = one.Zip(plain).Count(p => Math.Abs(p.First - p.Second) > 1e-4);
        Assert.True(changed > one.Length / 10, $"augmentation changed only {changed} of {one.Length} weights");
    }
}
