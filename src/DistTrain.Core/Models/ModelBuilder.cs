using DistTrain.Core.Configuration;
using DistTrain.Core.Initialization;

namespace DistTrain.Core.Models;

/// <summary>
/// Builds a <see cref="ModelOptions"/> in code, layer by layer, with the same layers, keys and defaults as a config
/// file's <c>Model</c> section (and PyTorch's modules of the same names), and checks it as a config is checked.
/// </summary>
/// <example>
/// <code>
/// var cnn = new ModelBuilder(channels: 1, height: 28, width: 28)
///     .Conv2D(32, kernelSize: 5, bias: false).BatchNorm().ReLU().MaxPool2D(2)
///     .Flatten().Dense(128).ReLU().Dropout(0.3).Dense(10)
///     .Build();
/// </code>
/// </example>
public sealed class ModelBuilder
{
    private readonly ModelOptions _options;

    /// <summary>Starts a model over flat samples of <paramref name="features"/> values (an MLP's input).</summary>
    /// <param name="features">Features per sample, 1 to 16,777,216.</param>
    public ModelBuilder(int features) => _options = new ModelOptions { InputSize = features };

    /// <summary>Starts a model over image samples <c>[channels, height, width]</c> (needed by Conv2D and pooling).</summary>
    /// <param name="channels">Channels per sample: 1 for grayscale, 3 for RGB.</param>
    /// <param name="height">Rows of pixels.</param>
    /// <param name="width">Columns of pixels.</param>
    public ModelBuilder(int channels, int height, int width) =>
        _options = new ModelOptions { InputSize = channels * height * width, InputShape = [channels, height, width] };

    /// <summary>Fully connected layer <c>y = W x + b</c> with <paramref name="units"/> outputs (<c>nn.Linear</c>); a
    /// classifier's last Dense layer has one unit per class.</summary>
    public ModelBuilder Dense(int units, bool bias = true) => Add(new LayerOptions { Type = LayerTypes.Dense, Units = units, Bias = bias });

    /// <summary>2-D convolution with <paramref name="channels"/> output channels and square kernels (<c>nn.Conv2d</c>).</summary>
    /// <param name="channels">Output channels (kernels).</param>
    /// <param name="kernelSize">Kernel height and width, in pixels.</param>
    /// <param name="stride">Step between positions, in pixels.</param>
    /// <param name="padding">Zeros added on every side, in pixels.</param>
    /// <param name="bias">False before a BatchNorm, which cancels a bias.</param>
    public ModelBuilder Conv2D(int channels, int kernelSize, int stride = 1, int padding = 0, bool bias = true) =>
        Add(new LayerOptions { Type = LayerTypes.Conv2D, Channels = channels, KernelSize = kernelSize, Stride = stride, Padding = padding, Bias = bias });

    /// <summary>2-D max pooling over square windows (<c>nn.MaxPool2d</c>); <paramref name="stride"/> 0 means the window size.</summary>
    public ModelBuilder MaxPool2D(int kernelSize, int stride = 0) => Add(new LayerOptions { Type = LayerTypes.MaxPool2D, KernelSize = kernelSize, Stride = stride });

    /// <summary>2-D average pooling over square windows (<c>nn.AvgPool2d</c>); <paramref name="stride"/> 0 means the window size.</summary>
    public ModelBuilder AvgPool2D(int kernelSize, int stride = 0) => Add(new LayerOptions { Type = LayerTypes.AvgPool2D, KernelSize = kernelSize, Stride = stride });

    /// <summary>Flattens <c>[C, H, W]</c> to <c>[C·H·W]</c> (<c>nn.Flatten</c>); moves no data.</summary>
    public ModelBuilder Flatten() => Add(new LayerOptions { Type = LayerTypes.Flatten });

    /// <summary>Batch normalization per channel, or per feature on flat inputs (<c>nn.BatchNorm2d</c> / <c>nn.BatchNorm1d</c>).</summary>
    /// <param name="momentum">Weight of the newest batch in the running statistics, in (0, 1].</param>
    /// <param name="epsilon">Added to the variance, in (0, 1].</param>
    public ModelBuilder BatchNorm(double momentum = 0.1, double epsilon = 1e-5) =>
        Add(new LayerOptions { Type = LayerTypes.BatchNorm, Momentum = momentum, Epsilon = epsilon });

    /// <summary>Layer normalization over each whole sample (<c>nn.LayerNorm(sample shape)</c>).</summary>
    public ModelBuilder LayerNorm(double epsilon = 1e-5) => Add(new LayerOptions { Type = LayerTypes.LayerNorm, Epsilon = epsilon });

    /// <summary>Inverted dropout zeroing each value with probability <paramref name="rate"/> in [0, 1) while training (<c>nn.Dropout</c>).</summary>
    public ModelBuilder Dropout(double rate) => Add(new LayerOptions { Type = LayerTypes.Dropout, Rate = rate });

    /// <summary><c>max(0, x)</c>.</summary>
    public ModelBuilder ReLU() => Add(new LayerOptions { Type = LayerTypes.ReLU });

    /// <summary><c>x</c> for x ≥ 0, else <c>negativeSlope · x</c>.</summary>
    public ModelBuilder LeakyReLU(double negativeSlope = 0.01) => Add(new LayerOptions { Type = LayerTypes.LeakyReLU, NegativeSlope = negativeSlope });

    /// <summary>The logistic sigmoid <c>1 / (1 + e^−x)</c>.</summary>
    public ModelBuilder Sigmoid() => Add(new LayerOptions { Type = LayerTypes.Sigmoid });

    /// <summary>The hyperbolic tangent.</summary>
    public ModelBuilder Tanh() => Add(new LayerOptions { Type = LayerTypes.Tanh });

    /// <summary>Sets the weight initializer (default He normal); see <see cref="InitializerOptions"/> for the other keys.</summary>
    public ModelBuilder Initializer(InitializerKind kind, double gain = 0)
    {
        _options.Initializer = new InitializerOptions { Kind = kind, Gain = gain };
        return this;
    }

    /// <summary>Sets the loss: <see cref="LossTypes.SoftmaxCrossEntropy"/> (the default, on logits) or <see cref="LossTypes.MeanSquaredError"/>.</summary>
    public ModelBuilder Loss(string loss)
    {
        _options.Loss = loss;
        return this;
    }

    /// <summary>Checks the model as a config's <c>Model</c> section is checked and returns it.</summary>
    /// <returns>A new <see cref="ModelOptions"/>; later calls on this builder do not change it.</returns>
    /// <exception cref="ConfigurationException">A value is out of range, a layer does not fit its input, or there is no Dense
    /// layer; every problem is listed with its key (<c>Model:Layers:2:Units</c>).</exception>
    public ModelOptions Build()
    {
        var model = System.Text.Json.JsonSerializer.Deserialize<ModelOptions>(System.Text.Json.JsonSerializer.Serialize(_options))!;
        var problems = TrainingOptionsValidator.Validate(new TrainingOptions { Model = model }, checkDataDirectory: false);
        if (problems.Count > 0) throw new ConfigurationException("ModelBuilder", problems);
        try
        {
            ModelFactory.Build(model);
        }
        catch (ArgumentException e)
        {
            throw new ConfigurationException("ModelBuilder", [e.Message]);
        }
        return model;
    }

    private ModelBuilder Add(LayerOptions layer)
    {
        _options.Layers.Add(layer);
        return this;
    }
}
