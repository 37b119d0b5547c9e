using DistTrain.Core.Initialization;

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

    /// <summary>All known names, for error messages.</summary>
    public static readonly string[] All = [Dense, ReLU, LeakyReLU, Sigmoid, Tanh];

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
}

/// <summary>The network: input size, the layer stack, the loss and the weight initializer.</summary>
public sealed class ModelOptions
{
    /// <summary>Input features per sample; 784 for 28x28 images. Must match the data.</summary>
    public int InputSize { get; set; } = 784;

    /// <summary>Layers in order. The last layer's width is the number of classes (logits).</summary>
    public List<LayerOptions> Layers { get; set; } = [];

    /// <summary>One of <see cref="LossTypes.All"/>: <c>SoftmaxCrossEntropy</c> (on logits) or <c>MeanSquaredError</c> (on one-hot targets).</summary>
    public string Loss { get; set; } = LossTypes.SoftmaxCrossEntropy;

    /// <summary>Initializer of the weights; biases start at zero (at the constant, for <see cref="InitializerKind.Constant"/>).</summary>
    public InitializerOptions Initializer { get; set; } = new();
}
