using DistTrain.Core.Configuration;
using DistTrain.Core.Initialization;
using DistTrain.Core.Layers;
using DistTrain.Core.Losses;
using DistTrain.Core.Tensors;

namespace DistTrain.Core.Models;

/// <summary>Builds models, losses and the version-0 weights from <see cref="ModelOptions"/>.</summary>
public static class ModelFactory
{
    /// <summary>Builds a fresh replica with zero parameters.</summary>
    /// <exception cref="ArgumentException">A layer type is unknown or sizes do not fit.</exception>
    public static Sequential Build(ModelOptions options)
    {
        var layers = new List<ILayer>();
        var size = options.InputSize;
        foreach (var layer in options.Layers)
        {
            ILayer built = LayerTypes.Canonical(layer.Type) switch
            {
                LayerTypes.Dense => new Dense(size, layer.Units),
                LayerTypes.ReLU => new ReLU(),
                LayerTypes.LeakyReLU => new LeakyReLU((float)layer.NegativeSlope),
                LayerTypes.Sigmoid => new Sigmoid(),
                LayerTypes.Tanh => new Tanh(),
                _ => throw new ArgumentException($"Unknown layer type '{layer.Type}'. Use one of: {string.Join(", ", LayerTypes.All)}."),
            };
            size = built.OutputSize(size);
            layers.Add(built);
        }
        return new Sequential(options.InputSize, layers);
    }

    /// <summary>Checks that the model's input size and last Dense layer match the data.</summary>
    /// <exception cref="ConfigurationException">They do not; the message names the key and the value the data needs.</exception>
    public static void CheckFitsData(ModelOptions options, int featureCount, int classCount)
    {
        var problems = new List<string>();
        if (options.InputSize != featureCount)
            problems.Add($"Model:InputSize = {options.InputSize} does not match the data: its samples have {featureCount} features. Set Model:InputSize to {featureCount}.");
        var lastDense = options.Layers.FindLastIndex(l => LayerTypes.Canonical(l.Type) == LayerTypes.Dense);
        if (lastDense >= 0 && options.Layers[lastDense].Units != classCount)
            problems.Add($"Model:Layers:{lastDense}:Units = {options.Layers[lastDense].Units} does not match the data: the last Dense layer outputs one logit per class and the data has {classCount} classes. Set it to {classCount}.");
        if (problems.Count > 0)
            throw new ConfigurationException("model against data", problems);
    }

    /// <summary>The configured loss.</summary>
    /// <exception cref="ArgumentException">The name is unknown.</exception>
    public static ILoss BuildLoss(string name) => LossTypes.Canonical(name) switch
    {
        LossTypes.SoftmaxCrossEntropy => new SoftmaxCrossEntropy(),
        LossTypes.MeanSquaredError => new MeanSquaredError(),
        _ => throw new ArgumentException($"Unknown loss '{name}'. Use one of: {string.Join(", ", LossTypes.All)}."),
    };

    /// <summary>
    /// The parameter server's version-0 weights: every weight tensor filled by the configured
    /// initializer from one <see cref="Random"/> seeded with <paramref name="seed"/>, in layout order;
    /// biases zero (constant for <see cref="InitializerKind.Constant"/>).
    /// </summary>
    public static ParameterVector InitialWeights(Sequential model, InitializerOptions options, int seed)
    {
        var random = new Random(seed);
        var vector = new ParameterVector(model.Layout);
        foreach (var (parameter, segment) in model.NamedParameters)
        {
            var target = vector.Segment(segment);
            if (parameter.IsBias && options.Kind != InitializerKind.Constant)
                target.Clear();
            else
                Initializers.Fill(target, parameter.FanIn, parameter.FanOut, options, random);
        }
        model.LoadParameters(vector.Values);
        return vector;
    }
}
