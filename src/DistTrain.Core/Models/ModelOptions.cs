using DistTrain.Core.Initialization;
using DistTrain.Core.Layers;

namespace DistTrain.Core.Models;

/// <summary>The layer types a config can name in <see cref="LayerOptions.Type"/>.</summary>
public static class LayerTypes
{
    /// <summary>Fully connected layer; needs <see cref="LayerOptions.Units"/>.</summary>
    public const string Dense = "Dense";
    /// <summary>max(0, x).</summary>
    public const string ReLU = "ReLU";
    /// <summary>Leaky ReLU; uses <see cref="LayerOptions.NegativeSlope"/>.</summary>
    public const string LeakyReLU = "LeakyReLU";
    /// <summary>Logistic sigmoid.</summary>
    public const string Sigmoid = "Sigmoid";
    /// <summary>Hyperbolic tangent.</summary>
    public const string Tanh = "Tanh";
    /// <summary>2-D convolution; needs <see cref="LayerOptions.Channels"/> and <see cref="LayerOptions.KernelSize"/>, uses Stride and Padding.</summary>
    public const string Conv2D = "Conv2D";
    /// <summary>2-D max pooling; needs <see cref="LayerOptions.KernelSize"/>, uses Stride (default: the kernel size).</summary>
    public const string MaxPool2D = "MaxPool2D";
    /// <summary>2-D average pooling; needs <see cref="LayerOptions.KernelSize"/>, uses Stride (default: the kernel size).</summary>
    public const string AvgPool2D = "AvgPool2D";
    /// <summary>Flattens <c>[C, H, W]</c> to <c>[C·H·W]</c>.</summary>
    public const string Flatten = "Flatten";
    /// <summary>Batch normalization per channel (per feature after a Dense layer); uses Momentum and Epsilon.</summary>
    public const string BatchNorm = "BatchNorm";
    /// <summary>Layer normalization over each sample; uses Epsilon.</summary>
    public const string LayerNorm = "LayerNorm";
    /// <summary>Inverted dropout; needs <see cref="LayerOptions.Rate"/>.</summary>
    public const string Dropout = "Dropout";

    /// <summary>All known names, for error messages.</summary>
    public static readonly string[] All = [Dense, ReLU, LeakyReLU, Sigmoid, Tanh, Conv2D, MaxPool2D, AvgPool2D, Flatten, BatchNorm, LayerNorm, Dropout];

    /// <summary>The canonical spelling of <paramref name="name"/> (matched ignoring case), or null when unknown.</summary>
    public static string? Canonical(string? name) => All.FirstOrDefault(t => string.Equals(t, name, StringComparison.OrdinalIgnoreCase));
}

/// <summary>The losses a config can name in <see cref="ModelOptions.Loss"/>.</summary>
public static class LossTypes
{
    /// <summary>Softmax cross-entropy on logits, for classification.</summary>
    public const string SoftmaxCrossEntropy = "SoftmaxCrossEntropy";
    /// <summary>Mean squared error against one-hot targets.</summary>
    public const string MeanSquaredError = "MeanSquaredError";

    /// <summary>All known names, for error messages.</summary>
    public static readonly string[] All = [SoftmaxCrossEntropy, MeanSquaredError];

    /// <summary>The canonical spelling of <paramref name="name"/> (matched ignoring case), or null when unknown.</summary>
    public static string? Canonical(string? name) => All.FirstOrDefault(t => string.Equals(t, name, StringComparison.OrdinalIgnoreCase));
}

/// <summary>One entry of <see cref="ModelOptions.Layers"/>.</summary>
public sealed class LayerOptions
{
    /// <summary>One of <see cref="LayerTypes.All"/> (case does not matter).</summary>
    public string Type { get; set; } = "";

    /// <summary>Output features of a Dense layer.</summary>
    public int Units { get; set; }

    /// <summary>Slope for negative inputs of LeakyReLU. Default 0.01, as PyTorch.</summary>
    public double NegativeSlope { get; set; } = 0.01;

    /// <summary>Whether a Dense or Conv2D layer has a bias. Default true; false before a BatchNorm, which cancels it.</summary>
    public bool Bias { get; set; } = true;

    /// <summary>Output channels (kernels) of a Conv2D layer.</summary>
    public int Channels { get; set; }

    /// <summary>Kernel (window) height and width of Conv2D, MaxPool2D and AvgPool2D.</summary>
    public int KernelSize { get; set; }

    /// <summary>
    /// Step between positions, at least 1; 0 stands for not set, the default: 1 for Conv2D, the kernel size for pooling (as
    /// PyTorch). A config file, variable or option that sets 0 is refused, as PyTorch refuses a stride of 0: leave the key out.
    /// </summary>
    public int Stride { get; set; }

    /// <summary>Zeros added on every side of a Conv2D input. Default 0.</summary>
    public int Padding { get; set; }

    /// <summary>Probability of zeroing an element in a Dropout layer, in [0, 1).</summary>
    public double Rate { get; set; }

    /// <summary>
    /// Whether the configuration gave <see cref="Rate"/> (set by <see cref="Configuration.TrainingOptionsLoader"/>), so that a
    /// Rate of 0 given is told from none given; not a config key (internal, so neither bound nor serialized).
    /// </summary>
    internal bool RateGiven { get; set; }

    /// <summary>BatchNorm's weight of the newest batch in the running statistics, in (0, 1]. Default 0.1, as PyTorch.</summary>
    public double Momentum { get; set; } = 0.1;

    /// <summary>ε added to the variance by BatchNorm and LayerNorm. Default 1e-5, as PyTorch.</summary>
    public double Epsilon { get; set; } = 1e-5;
}

/// <summary>The network: input size, the layer stack, the loss and the weight initializer.</summary>
public sealed class ModelOptions
{
    /// <summary>Input features per sample; 784 for 28x28 images. Must match the data. Not used when <see cref="InputShape"/> is set.</summary>
    public int InputSize { get; set; } = 784;

    /// <summary>
    /// Shape of one input sample <c>[channels, height, width]</c>, such as <c>[1, 28, 28]</c>; needed by Conv2D and
    /// pooling layers. Empty (the default) means a flat vector of <see cref="InputSize"/> features.
    /// </summary>
    public List<int> InputShape { get; set; } = [];

    /// <summary>The input as a <see cref="TensorShape"/>: <see cref="InputShape"/> when set, else flat <see cref="InputSize"/>.</summary>
    /// <exception cref="ArgumentException">InputShape is set but does not have three positive dimensions.</exception>
    public TensorShape Input() => InputShape.Count switch
    {
        0 => TensorShape.Flat(InputSize),
        3 when InputShape.All(d => d > 0) => new TensorShape(InputShape[0], InputShape[1], InputShape[2]),
        _ => throw new ArgumentException($"Model:InputShape = [{string.Join(", ", InputShape)}] must be [channels, height, width] with positive values, such as [1, 28, 28]."),
    };

    /// <summary>Layers in order. The last layer's width is the number of classes (logits).</summary>
    public List<LayerOptions> Layers { get; set; } = [];

    /// <summary>One of <see cref="LossTypes.All"/>: <c>SoftmaxCrossEntropy</c> (on logits) or <c>MeanSquaredError</c> (on one-hot targets).</summary>
    public string Loss { get; set; } = LossTypes.SoftmaxCrossEntropy;

    /// <summary>Initializer of the weights; biases start at zero (at the constant, for <see cref="InitializerKind.Constant"/>).</summary>
    public InitializerOptions Initializer { get; set; } = new();

    /// <summary>
    /// Transfer learning: a safetensors checkpoint (DistTrain's or PyTorch's <c>state_dict</c> names) to start from
    /// instead of the initializer, or a run folder, which stands for its <c>model.safetensors</c> (as for
    /// <c>finetune --from</c>; the config loader sets this to the file). Empty (the default) trains from scratch.
    /// </summary>
    public string Pretrained { get; set; } = "";

    /// <summary>
    /// With <see cref="Pretrained"/>: the last Dense layer (the head) is not loaded but initialized afresh, so it can
    /// have a different number of classes. Default false.
    /// </summary>
    public bool ReplaceHead { get; set; }

    /// <summary>
    /// Tensors that do not train: each entry is a tensor name (<c>0.weight</c>), a layer index (<c>0</c>, freezing every
    /// tensor of layer 0) or a prefix ending in <c>*</c> (<c>0.*</c>). Frozen tensors receive no update and travel
    /// no gradient; a frozen BatchNorm also keeps its running statistics.
    /// </summary>
    public List<string> Freeze { get; set; } = [];

    /// <summary>True when <paramref name="tensorName"/> is frozen by <see cref="Freeze"/>.</summary>
    public bool IsFrozen(string tensorName) => Freeze.Any(entry =>
        entry == tensorName
        || (entry.EndsWith('*') && tensorName.StartsWith(entry[..^1], StringComparison.Ordinal))
        || tensorName.StartsWith(entry + ".", StringComparison.Ordinal));
}
