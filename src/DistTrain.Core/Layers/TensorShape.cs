namespace DistTrain.Core.Layers;

/// <summary>
/// The shape of one sample's activations, <c>[channels, height, width]</c>, stored channel-major
/// (<c>c·H·W + h·W + w</c>) inside one column of a <c>[features, batch]</c> matrix: the memory order of
/// one sample of PyTorch's contiguous NCHW tensors, so <c>Flatten</c> needs no copy and a
/// <c>Dense</c> layer after it sees the features in PyTorch's order. A flat vector of <c>n</c>
/// features (<see cref="Flat"/>) is stored as <c>[n, 1, 1]</c> but stays distinct from an image of <c>n</c> channels of
/// 1x1 feature maps (<c>new TensorShape(n, 1, 1)</c>, the output of a convolution or pooling that shrinks its maps to
/// one position, or of global pooling): the image still takes Conv2D and pooling layers and is normalized as PyTorch's
/// <c>BatchNorm2d</c>, as <c>[N, n, 1, 1]</c> is in PyTorch, until a Flatten or Dense layer makes it flat.
/// </summary>
/// <param name="Channels">Channels (feature maps), or features of a flat vector.</param>
/// <param name="Height">Rows of each feature map; 1 for a flat vector.</param>
/// <param name="Width">Columns of each feature map; 1 for a flat vector.</param>
public readonly record struct TensorShape(int Channels, int Height, int Width)
{
    // False for every shape made by the constructor (images, 1x1 maps included); true only for Flat's.
    private readonly bool _flat;

    private TensorShape(int features, bool flat) : this(features, 1, 1) => _flat = flat;

    /// <summary>A flat vector of <paramref name="features"/> elements (the output of Dense and Flatten, or a model without Model:InputShape).</summary>
    public static TensorShape Flat(int features) => new(features, flat: true);

    /// <summary>Elements per sample: <c>Channels · Height · Width</c>.</summary>
    public int Size => Channels * Height * Width;

    /// <summary>Elements of one feature map: <c>Height · Width</c>.</summary>
    public int Positions => Height * Width;

    /// <summary>
    /// True for a flat vector (made by <see cref="Flat"/>); false for an image <c>[C, H, W]</c>, also when its feature
    /// maps are 1x1. Two shapes of the same dimensions are equal only if both are flat or both are images.
    /// </summary>
    public bool IsFlat => _flat;

    /// <summary>The dimensions as PyTorch would list them for one sample: <c>[C, H, W]</c>, or <c>[n]</c> when flat.</summary>
    public int[] Dimensions => IsFlat ? [Channels] : [Channels, Height, Width];

    /// <inheritdoc />
    public override string ToString() => IsFlat ? $"[{Channels}]" : $"[{Channels}, {Height}, {Width}]";
}
