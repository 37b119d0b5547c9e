namespace DistTrain.Core.Configuration;

/// <summary>
/// Random changes to each training image, drawn anew every epoch (configuration section <c>Data:Augmentation</c>), as
/// torchvision's <c>RandomCrop(size, padding)</c>, <c>RandomAffine(degrees=0, translate=(f, f))</c> and
/// <c>RandomHorizontalFlip()</c>, applied in that order. Needs an image input (Model:InputShape). Evaluation and
/// validation samples are never augmented. See <see cref="Data.ImageAugmenter"/>.
/// </summary>
public sealed class AugmentationOptions
{
    /// <summary>
    /// Pixels of black (raw pixel value 0) added on every side before a crop of the original size is taken at a random
    /// position: a shift of −P to P pixels on each axis. 0 (the default) turns it off; at most half the image's smaller side.
    /// </summary>
    public int CropPadding { get; set; }

    /// <summary>
    /// Largest translation as a fraction of the width (horizontally) and of the height (vertically), in [0, 0.5]: each
    /// shift is round(uniform(−f·size, f·size)) pixels, uncovered pixels black. 0 (the default) turns it off.
    /// </summary>
    public double MaxTranslation { get; set; }

    /// <summary>Mirror each image left to right with probability 0.5. Default false.</summary>
    public bool HorizontalFlip { get; set; }

    /// <summary>True when any augmentation is on.</summary>
    public bool Enabled => CropPadding > 0 || MaxTranslation > 0 || HorizontalFlip;

    /// <summary>A short description for the start-up line, such as <c>crop padding 2, horizontal flip</c>, or <c>none</c>.</summary>
    public override string ToString()
    {
        var parts = new List<string>();
        if (CropPadding > 0) parts.Add($"crop padding {CropPadding}");
        if (MaxTranslation > 0) parts.Add($"translation up to {MaxTranslation:0.###}");
        if (HorizontalFlip) parts.Add("horizontal flip");
        return parts.Count == 0 ? "none" : string.Join(", ", parts);
    }
}
