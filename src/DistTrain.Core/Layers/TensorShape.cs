namespace DistTrain.Core.Layers;

/// <summary>
/// The shape of one sample's activations, <c>[channels, height, width]</c>, stored channel-major
/// (<c>c·H·W + h·W + w</c>) inside one column of a <c>[features, batch]</c> matrix: the memory order of
/// one sample of PyTorch's contiguous NCHW tensors, so <c>Flatten</c> needs no copy and a
/// <c>Dense</c> layer after it sees the features in PyTorch's order. A flat vector of <c>n</c>
/// features is <c>[n, 1, 1]</c>.
/// </summary>
/// <param name="Channels">Channels (feature maps), or features of a flat vector.</param>
/// <param name="Height">Rows of each feature map; 1 for a flat vector.</param>
/// <param name="Width">Columns of each feature map; 1 for a flat vector.</param>
public readonly record struct TensorShape(int Channels, int Height, int Width)
{
    /// <summary>A flat vector of <paramref name="features"/> elements.</summary>
    public static TensorShape Flat(int features) => new(features, 1, 1);

    /// <summary>Elements per sample: <c>Channels · Height · Width</c>.</summary>
    public int Size => Channels * Height * Width;

    /// <summary>Elements of one feature map: <c>Height · Width</c>.</summary>
    public int Positions => Height * Width;

    /// <summary>True for a flat vector (<c>Height = Width = 1</c>).</summary>
    public bool IsFlat => Height == 1 && Width == 1;

    /// <summary>The dimensions as PyTorch would list them for one sample: <c>[C, H, W]</c>, or <c>[n]</c> when flat.</summary>
    public int[] Dimensions => IsFlat ? [Channels] : [Channels, Height, Width];

    /// <inheritdoc />
    public override string ToString() => IsFlat ? $"[{Channels}]" : $"[{Channels}, {Height}, {Width}]";
}
