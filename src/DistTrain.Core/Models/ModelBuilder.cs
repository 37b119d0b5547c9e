using DistTrain.Core.Configuration;
using DistTrain.Core.Initialization;

namespace DistTrain.Core.Models;

/// <summary>
/// Builds a <see cref="ModelOptions"/> in code, layer by layer, with the same layers, keys and defaults as a config
/// file's <c>Model</c> section (and PyTorch's modules of the same names), and checks it as a config is checked.
/// </summary>
/// <remarks>A value a model section cannot hold is refused at the call that gives it, with the config's rule for its key:
/// a NaN or infinite number (<c>Dropout(double.NaN)</c>) or an initializer kind that does not exist. Other values out of
/// range (<c>Dense(0)</c>, <c>Dropout(1.5)</c>) are reported by <see cref="Build"/>, all at once.</remarks>
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

    /// <summary>Batch normalization per channel on images, 1x1 feature maps included, or per feature on flat inputs
    /// (<c>nn.BatchNorm2d</c> / <c>nn.BatchNorm1d</c>).</summary>
    /// <param name="momentum">Weight of the newest batch in the running statistics, in (0, 1].</param>
    /// <param name="epsilon">Added to the variance, in (0, 1].</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="momentum"/> or <paramref name="epsilon"/> is NaN or infinite.</exception>
    public ModelBuilder BatchNorm(double momentum = 0.1, double epsilon = 1e-5) =>
        Add(new LayerOptions { Type = LayerTypes.BatchNorm, Momentum = momentum, Epsilon = epsilon },
            (nameof(momentum), "Momentum", momentum), (nameof(epsilon), "Epsilon", epsilon));

    /// <summary>Layer normalization over each whole sample (<c>nn.LayerNorm(sample shape)</c>).</summary>
    /// <param name="epsilon">Added to the variance, in (0, 1].</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="epsilon"/> is NaN or infinite.</exception>
    public ModelBuilder LayerNorm(double epsilon = 1e-5) =>
        Add(new LayerOptions { Type = LayerTypes.LayerNorm, Epsilon = epsilon }, (nameof(epsilon), "Epsilon", epsilon));

    /// <summary>Inverted dropout zeroing each value with probability <paramref name="rate"/> in [0, 1) while training (<c>nn.Dropout</c>).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="rate"/> is NaN or infinite.</exception>
    public ModelBuilder Dropout(double rate) => Add(new LayerOptions { Type = LayerTypes.Dropout, Rate = rate }, (nameof(rate), "Rate", rate));

    /// <summary><c>max(0, x)</c>.</summary>
    public ModelBuilder ReLU() => Add(new LayerOptions { Type = LayerTypes.ReLU });

    /// <summary><c>x</c> for x ≥ 0, else <c>negativeSlope · x</c>, with <paramref name="negativeSlope"/> in [0, 1].</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="negativeSlope"/> is NaN or infinite.</exception>
    public ModelBuilder LeakyReLU(double negativeSlope = 0.01) =>
        Add(new LayerOptions { Type = LayerTypes.LeakyReLU, NegativeSlope = negativeSlope }, (nameof(negativeSlope), "NegativeSlope", negativeSlope));

    /// <summary>The logistic sigmoid <c>1 / (1 + e^−x)</c>.</summary>
    public ModelBuilder Sigmoid() => Add(new LayerOptions { Type = LayerTypes.Sigmoid });

    /// <summary>The hyperbolic tangent.</summary>
    public ModelBuilder Tanh() => Add(new LayerOptions { Type = LayerTypes.Tanh });

    /// <summary>Sets the weight initializer (default He normal); see <see cref="InitializerOptions"/> for the other keys.</summary>
    /// <param name="kind">One of the <see cref="InitializerKind"/> values.</param>
    /// <param name="gain">Gain in [0, 100]; 0 for the kind's default.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="kind"/> is not an <see cref="InitializerKind"/>, or
    /// <paramref name="gain"/> is NaN or infinite.</exception>
    public ModelBuilder Initializer(InitializerKind kind, double gain = 0)
    {
        var previous = _options.Initializer;
        _options.Initializer = new InitializerOptions { Kind = kind, Gain = gain };
        var refused = !Enum.IsDefined(kind) ? Refusal(nameof(kind), "Model:Initializer:Kind")
            : !double.IsFinite(gain) ? Refusal(nameof(gain), "Model:Initializer:Gain")
            : null;
        if (refused is null) return this;
        _options.Initializer = previous;
        throw refused;
    }

    /// <summary>Sets the loss: <see cref="LossTypes.SoftmaxCrossEntropy"/> (the default, on logits) or <see cref="LossTypes.MeanSquaredError"/>.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="loss"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="loss"/> is empty or white space.</exception>
    public ModelBuilder Loss(string loss)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(loss);
        _options.Loss = loss;
        return this;
    }

    /// <summary>Checks the model as a config's <c>Model</c> section is checked and returns it.</summary>
    /// <returns>A new <see cref="ModelOptions"/>; later calls on this builder do not change it.</returns>
    /// <exception cref="ConfigurationException">A value is out of range, a layer does not fit its input, or there is no Dense
    /// layer; every problem is listed with its key (<c>Model:Layers:2:Units</c>).</exception>
    public ModelOptions Build()
    {
        // Checked before the copy through JSON, which cannot write a NaN: every value is reported by its key.
        var problems = TrainingOptionsValidator.Validate(new TrainingOptions { Model = _options }, checkDataDirectory: false);
        if (problems.Count > 0) throw new ConfigurationException("ModelBuilder", problems);
        var model = System.Text.Json.JsonSerializer.Deserialize<ModelOptions>(System.Text.Json.JsonSerializer.Serialize(_options))!;
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

    /// <summary>Adds <paramref name="layer"/>, unless one of its <paramref name="numbers"/> is NaN or infinite.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A number is NaN or infinite; the message is the config's problem for its key.</exception>
    private ModelBuilder Add(LayerOptions layer, params (string Parameter, string Key, double Value)[] numbers)
    {
        _options.Layers.Add(layer);
        foreach (var (parameter, key, value) in numbers)
        {
            if (double.IsFinite(value)) continue;
            var refused = Refusal(parameter, $"Model:Layers:{_options.Layers.Count - 1}:{key}");
            _options.Layers.RemoveAt(_options.Layers.Count - 1);
            throw refused;
        }
        return this;
    }

    /// <summary>
    /// The refusal of the value just given for <paramref name="key"/>: the config's own problem for that key (its range and
    /// wording, <c>Model:Layers:3:Rate = NaN is out of range: allowed [0, 1).</c>), naming <paramref name="parameter"/>.
    /// </summary>
    private ArgumentOutOfRangeException Refusal(string parameter, string key)
    {
        var problem = TrainingOptionsValidator.Validate(new TrainingOptions { Model = _options }, checkDataDirectory: false)
            .First(p => p.StartsWith(key + " = ", StringComparison.Ordinal));
        return new ArgumentOutOfRangeException(parameter, problem);
    }
}
