namespace DistTrain.Core.Configuration;

/// <summary>
/// An image-folder data set (configuration section <c>Data:ImageFolder</c>, used when <c>Data:Format</c> is
/// <c>ImageFolder</c>), laid out as torchvision's <c>ImageFolder</c>: one sub-folder per class, named after the class,
/// holding PNG or JPEG files. Images are read as Model:InputShape says: 1 channel (grayscale) or 3 (RGB), height × width.
/// See <see cref="Data.ImageFolderDataset"/>.
/// </summary>
public sealed class ImageFolderOptions
{
    /// <summary>The training folder (one sub-folder per class). Required.</summary>
    public string TrainDirectory { get; set; } = "";

    /// <summary>The test folder, with the same class sub-folders (some may be missing). Empty (the default): <see cref="DataOptions.TestFraction"/> of the training images.</summary>
    public string TestDirectory { get; set; } = "";

    /// <summary>
    /// Resize every image to Model:InputShape's height × width (bicubic). False (the default): an image of another size is
    /// an error naming the file.
    /// </summary>
    public bool Resize { get; set; }
}
