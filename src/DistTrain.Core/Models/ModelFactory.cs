using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Initialization;
using DistTrain.Core.Layers;
using DistTrain.Core.Losses;
using DistTrain.Core.Tensors;

namespace DistTrain.Core.Models;

/// <summary>Builds models, losses and the version-0 weights from <see cref="ModelOptions"/>.</summary>
public static class ModelFactory
{
    /// <summary>Builds a fresh replica with zero weights (normalization layers at their fixed start values).</summary>
    /// <param name="options">The model section.</param>
    /// <param name="dropoutSeed">Seed of the replica's dropout masks; give each replica its own.</param>
    /// <param name="isFrozen">Given a tensor name, true when it is frozen (transfer learning); null uses <see cref="ModelOptions.Freeze"/>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ArgumentException">A layer type is unknown or shapes do not fit; the message names the layer by its index.</exception>
    public static Sequential Build(ModelOptions options, int dropoutSeed = 0, Func<string, bool>? isFrozen = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var layers = new List<ILayer>();
        var shape = options.Input();
        for (var index = 0; index < options.Layers.Count; index++)
        {
            var layer = options.Layers[index];
            try
            {
                var built = BuildLayer(layer, shape, dropoutSeed * 7919 + index);
                shape = built.OutputShape(shape);
                layers.Add(built);
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"Model:Layers:{index} ({layer.Type}) on input {shape}: {e.Message}", e);
            }
        }
        var model = new Sequential(options.Input(), layers, isFrozen ?? (options.Freeze.Count > 0 ? options.IsFrozen : null));
        if (isFrozen is null) CheckFreeze(options, model);
        return model;
    }

    /// <summary>
    /// The elements of the Dense and Conv2D weight tensors <paramref name="options"/> describe, from the shapes alone (the
    /// output-size formulas of <see cref="Conv2D"/> and the pooling layers), without building anything: a lower bound of
    /// <c>Build(options).Layout.TotalLength</c> that allocates nothing, so a described network can be checked against the
    /// bytes that should hold it before <see cref="Build"/> allocates its tensors. Counting stops at the first layer whose
    /// input does not fit it (<see cref="Build"/> reports that layer).
    /// </summary>
    /// <returns>Weight elements (biases and normalization tensors left out), as a 64-bit count.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    public static long WeightCountLowerBound(ModelOptions options) => LayerSizes(options).Sum(layer => layer.Weights);

    /// <summary>
    /// The parameters of each layer <paramref name="options"/> describes (weights, biases, normalization scales and shifts,
    /// running statistics: the elements <see cref="Build"/> would allocate for it), from the shapes alone and in 64-bit
    /// arithmetic, so that a layer or model larger than one array can hold is refused before anything is allocated.
    /// Counting stops at the first layer whose input does not fit it (<see cref="Build"/> reports that layer), so the
    /// list may be shorter than the layers.
    /// </summary>
    /// <returns>One count per layer, in order, as far as the shapes fit.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    public static IReadOnlyList<long> ParameterCounts(ModelOptions options) => [.. LayerSizes(options).Select(layer => layer.Parameters)];

    /// <summary>
    /// The parameter elements of <see cref="ParameterCounts"/> that Model:Freeze freezes, from the shapes alone: each tensor
    /// (<c>0.weight</c>, <c>0.bias</c>, a BatchNorm's <c>running_mean</c> and <c>running_var</c>) that
    /// <see cref="ModelOptions.IsFrozen"/> names, and, as <see cref="Sequential"/> freezes them, every tensor of a
    /// normalization layer with running statistics of which one tensor is frozen. Frozen tensors get no gradient in the
    /// workers' reports and no optimizer state.
    /// </summary>
    /// <returns>The frozen elements; 0 without Model:Freeze.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    public static long FrozenParameterCount(ModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Freeze.Count == 0) return 0;
        long frozen = 0;
        var index = 0;
        foreach (var layer in LayerSizes(options))
        {
            (string Name, long Elements)[] tensors = layer.Type switch
            {
                LayerTypes.Dense or LayerTypes.Conv2D => [("weight", layer.Weights), ("bias", layer.Parameters - layer.Weights)],
                LayerTypes.BatchNorm => [("weight", layer.Parameters / 4), ("bias", layer.Parameters / 4), ("running_mean", layer.Parameters / 4), ("running_var", layer.Parameters / 4)],
                LayerTypes.LayerNorm => [("weight", layer.Parameters / 2), ("bias", layer.Parameters / 2)],
                _ => [],
            };
            var prefix = index.ToString(System.Globalization.CultureInfo.InvariantCulture);
            var named = tensors.Where(t => t.Elements > 0).Select(t => (t.Elements, Frozen: options.IsFrozen($"{prefix}.{t.Name}"))).ToList();
            frozen += layer.Type == LayerTypes.BatchNorm && named.Any(t => t.Frozen) ? layer.Parameters : named.Where(t => t.Frozen).Sum(t => t.Elements);
            index++;
        }
        return frozen;
    }

    /// <summary>
    /// <see cref="Sequential.ForwardBytesPerSample"/> of the model <paramref name="options"/> describes, from the shapes
    /// alone (nothing is built or allocated): per layer the bytes its <see cref="ILayer.ForwardBytesPerSample"/> gives (4 per
    /// output element; 8 for BatchNorm, LayerNorm and MaxPool2D; 4 × (2 × output + input) for Conv2D; none for Flatten and
    /// for a ReLU that rectifies the output of a Dense, Conv2D, BatchNorm or LayerNorm in place). Counting stops at the
    /// first layer whose input does not fit it, as <see cref="ParameterCounts"/> does.
    /// </summary>
    /// <returns>Bytes per sample of a forward pass, as a 64-bit count.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    public static long ForwardBytesPerSample(ModelOptions options)
    {
        long bytes = 0;
        string? previous = null;
        foreach (var (type, input, output) in LayerSizes(options).Select(layer => (layer.Type, layer.Input, layer.Output)))
        {
            bytes += type switch
            {
                LayerTypes.Flatten => 0,
                LayerTypes.ReLU when previous is LayerTypes.Dense or LayerTypes.Conv2D or LayerTypes.BatchNorm or LayerTypes.LayerNorm => 0,
                LayerTypes.Conv2D => sizeof(float) * (2 * output + input),
                LayerTypes.BatchNorm or LayerTypes.LayerNorm => 2L * sizeof(float) * output,
                LayerTypes.MaxPool2D => (sizeof(float) + sizeof(int)) * output,
                _ => sizeof(float) * output,
            };
            previous = type;
        }
        return bytes;
    }

    /// <summary>
    /// Each layer's weight elements (Dense and Conv2D weights), all its parameter elements, its canonical type and the
    /// elements of one sample's input and output, walking the shapes with the layers' output-size formulas in 64-bit
    /// arithmetic; stops after the first layer whose output is empty.
    /// </summary>
    private static IEnumerable<(long Weights, long Parameters, string? Type, long Input, long Output)> LayerSizes(ModelOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var shape = options.Input();
        long channels = shape.Channels, height = shape.Height, width = shape.Width;
        foreach (var layer in options.Layers)
        {
            var stride = layer.Stride > 0 ? layer.Stride : 1;
            long weights = 0, parameters = 0;
            var input = channels * height * width;
            var type = LayerTypes.Canonical(layer.Type);
            switch (type)
            {
                case LayerTypes.Dense:
                    weights = channels * height * width * layer.Units;
                    parameters = weights + (layer.Bias ? layer.Units : 0);
                    (channels, height, width) = (layer.Units, 1, 1);
                    break;
                case LayerTypes.Conv2D:
                    weights = (long)layer.Channels * channels * layer.KernelSize * layer.KernelSize;
                    parameters = weights + (layer.Bias ? layer.Channels : 0);
                    (channels, height, width) = (layer.Channels, WindowPositions(height + 2L * layer.Padding, layer.KernelSize, stride),
                        WindowPositions(width + 2L * layer.Padding, layer.KernelSize, stride));
                    break;
                case LayerTypes.MaxPool2D or LayerTypes.AvgPool2D:
                    stride = layer.Stride > 0 ? layer.Stride : layer.KernelSize;
                    if (stride > 0) (height, width) = (WindowPositions(height, layer.KernelSize, stride), WindowPositions(width, layer.KernelSize, stride));
                    break;
                case LayerTypes.Flatten:
                    (channels, height, width) = (channels * height * width, 1, 1);
                    break;
                case LayerTypes.BatchNorm:
                    parameters = 4 * channels; // weight, bias, running_mean, running_var per channel (per feature when flat)
                    break;
                case LayerTypes.LayerNorm:
                    parameters = 2 * channels * height * width; // weight and bias over the whole sample
                    break;
            }
            yield return (weights, parameters, type, input, channels * height * width);
            if (channels <= 0 || height <= 0 || width <= 0 || stride <= 0) yield break;
        }
    }

    /// <summary>
    /// The positions of a <paramref name="kernel"/>-wide window in <paramref name="size"/> elements at
    /// <paramref name="stride"/>: <c>⌊(size − kernel) / stride⌋ + 1</c>, or 0 when the window does not fit (C#'s division
    /// truncates toward zero, so the formula alone gives 1 for a window up to <paramref name="stride"/> − 1 elements too wide).
    /// </summary>
    private static long WindowPositions(long size, long kernel, long stride) => size < kernel ? 0 : (size - kernel) / stride + 1;

    /// <summary>
    /// Every Model:Freeze entry must name at least one tensor, something must stay trainable, and a new head
    /// (Model:ReplaceHead) must not be frozen: it would keep its random initialization.
    /// </summary>
    private static void CheckFreeze(ModelOptions options, Sequential model)
    {
        var names = model.Layout.Segments.Select(s => s.Name).ToArray();
        var problems = new List<string>();
        for (var i = 0; i < options.Freeze.Count; i++)
        {
            var entry = options.Freeze[i];
            var single = new ModelOptions { Freeze = [entry] };
            if (names.Any(single.IsFrozen)) continue;
            // A layer index: say whether that layer exists and, if so, that it holds no parameters (an activation, a pooling).
            var why = int.TryParse(entry.Trim().TrimEnd('*').TrimEnd('.'), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var layer)
                ? layer < options.Layers.Count
                    ? $" (layer {layer} is a {LayerTypes.Canonical(options.Layers[layer].Type)}, which has no parameters)"
                    : $" (the model's layers are 0 to {options.Layers.Count - 1})"
                : "";
            problems.Add($"Model:Freeze:{i} = '{entry}' matches no tensor{why}");
        }
        if (options.Freeze.Count > 0 && model.Layout.TrainableLength == 0)
            problems.Add("Model:Freeze freezes every tensor, so nothing would train");
        else if (options.ReplaceHead && model.Layers.Any(l => l is Dense) && PretrainedWeights.HeadNames(model).Where(options.IsFrozen).ToList() is { Count: > 0 } frozenHead)
            problems.Add($"Model:Freeze freezes {string.Join(", ", frozenHead)}, the new head that Model:ReplaceHead (finetune --replace-head) initializes afresh, " +
                "so it would never learn: leave the head's layer out of Model:Freeze");
        if (problems.Count > 0)
            throw new ArgumentException($"{string.Join("; ", problems)}. Tensors: {string.Join(", ", names)}. Give names (0.weight), layer indices (0) or prefixes (0.*).");
    }

    private static ILayer BuildLayer(LayerOptions layer, TensorShape input, int seed)
    {
        var type = LayerTypes.Canonical(layer.Type);
        if (type is LayerTypes.Conv2D or LayerTypes.MaxPool2D or LayerTypes.AvgPool2D && input.IsFlat)
            throw new ArgumentException($"{type} needs an image input [channels, height, width]. Set Model:InputShape (for example [1, 28, 28]) and put {type} before any Dense or Flatten layer.");
        var poolStride = layer.Stride > 0 ? layer.Stride : layer.KernelSize;
        return type switch
        {
            LayerTypes.Dense => new Dense(input.Size, layer.Units, layer.Bias),
            LayerTypes.ReLU => new ReLU(),
            LayerTypes.LeakyReLU => new LeakyReLU((float)layer.NegativeSlope),
            LayerTypes.Sigmoid => new Sigmoid(),
            LayerTypes.Tanh => new Tanh(),
            LayerTypes.Conv2D => new Conv2D(input, layer.Channels, layer.KernelSize, layer.Stride > 0 ? layer.Stride : 1, layer.Padding, bias: layer.Bias),
            LayerTypes.MaxPool2D => new MaxPool2D(input, layer.KernelSize, poolStride),
            LayerTypes.AvgPool2D => new AvgPool2D(input, layer.KernelSize, poolStride),
            LayerTypes.Flatten => new Flatten(),
            LayerTypes.BatchNorm => new BatchNorm(input, layer.Momentum, layer.Epsilon),
            LayerTypes.LayerNorm => new LayerNorm(input, layer.Epsilon),
            LayerTypes.Dropout => new Dropout(layer.Rate, seed),
            _ => throw new ArgumentException($"Unknown layer type '{layer.Type}'. Use one of: {string.Join(", ", LayerTypes.All)}."),
        };
    }

    /// <summary>Checks that the model's input size and last Dense layer match the data.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ConfigurationException">They do not; the message names the key and the value the data needs.</exception>
    public static void CheckFitsData(ModelOptions options, int featureCount, int classCount)
    {
        ArgumentNullException.ThrowIfNull(options);
        CheckFitsData(options, featureCount, classCount, null);
    }

    /// <summary>
    /// Checks that the model's input size and last Dense layer match a run's data; when the classes do not, and the data
    /// says what its label column held (<see cref="TrainingData.Labels"/>), the message names those labels (the stray ones
    /// with their lines) and offers the data's fix as well as the model's. A pretrained head that is kept must have the data's
    /// classes (<see cref="PretrainedWeights.CheckClasses"/>).
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> or <paramref name="data"/> is null.</exception>
    /// <exception cref="ConfigurationException">They do not; the message names the key and the value the data needs.</exception>
    public static void CheckFitsData(ModelOptions options, TrainingData data)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(data);
        CheckFitsData(options, data.Train.FeatureCount, data.Train.ClassCount, data.Labels);
        PretrainedWeights.CheckClasses(options, data);
    }

    private static void CheckFitsData(ModelOptions options, int featureCount, int classCount, LabelSummary? labels)
    {
        var problems = new List<string>();
        var input = options.Input();
        if (input.Size != featureCount)
            problems.Add(options.InputShape.Count > 0
                ? $"Model:InputShape = {input} ({input.Size} values) does not match the data: its samples have {featureCount} features. Set Model:InputShape so that channels x height x width = {featureCount}."
                : $"Model:InputSize = {options.InputSize} does not match the data: its samples have {featureCount} features. Set Model:InputSize to {featureCount}.");
        if (classCount < 2)
            problems.Add($"The data has {classCount} class{(classCount == 1 ? "" : "es")}{(labels is null ? "" : $" ({labels.File}, column '{labels.Column}')")}: a classifier " +
                "needs 2 at least; with one, the softmax of its only logit is always 1, so there is nothing to learn and every prediction is right. " +
                (labels is { ChosenByDefault: true } ? "Set Data:Csv:LabelColumn to the column that holds the classes, or give data of 2 classes or more." : "Give data of 2 classes or more."));
        var lastDense = options.Layers.FindLastIndex(l => LayerTypes.Canonical(l.Type) == LayerTypes.Dense);
        if (lastDense >= 0 && classCount >= 2 && options.Layers[lastDense].Units != classCount)
            problems.Add($"Model:Layers:{lastDense}:Units = {options.Layers[lastDense].Units} does not match the data: the last Dense layer outputs one logit per class and the data has {classCount} classes" +
                (labels is null ? $". Set it to {classCount}." : $": {labels.Describe(classCount, options.Layers[lastDense].Units, $"set Units to {classCount}")}"));
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
    /// The version-0 weights of a run: <see cref="InitialWeights"/>, then, when <see cref="ModelOptions.Pretrained"/>
    /// is set, the pretrained tensors on top (all but the head when <see cref="ModelOptions.ReplaceHead"/>).
    /// </summary>
    /// <param name="model">The model the weights are for.</param>
    /// <param name="options">Its options (initializer, pretrained checkpoint, new head).</param>
    /// <param name="seed">Seed of the initializer.</param>
    /// <param name="log">Receives what loading the checkpoint reports (a removed <c>module.</c> prefix); null drops it.</param>
    /// <exception cref="InvalidDataException">The checkpoint is missing or does not fit the model (see <see cref="PretrainedWeights.Load"/>).</exception>
    /// <exception cref="Checkpoints.SafeTensorsFormatException">The checkpoint is not valid safetensors of F32 tensors.</exception>
    /// <exception cref="Checkpoints.UnreadableFileException">This process may not read the checkpoint.</exception>
    public static ParameterVector StartingWeights(Sequential model, ModelOptions options, int seed, Action<string>? log = null)
    {
        var weights = InitialWeights(model, options.Initializer, seed);
        if (!string.IsNullOrEmpty(options.Pretrained))
            PretrainedWeights.Load(options.Pretrained, model, weights, options.ReplaceHead, log);
        return weights;
    }

    /// <summary>
    /// The parameter server's version-0 weights: every weight tensor filled by the configured
    /// initializer from one <see cref="Random"/> seeded with <paramref name="seed"/>, in layout order;
    /// biases zero (constant for <see cref="InitializerKind.Constant"/>); normalization scales and running
    /// variances one, shifts and running means zero (<see cref="LayerParameter.FixedInitialValue"/>).
    /// </summary>
    public static ParameterVector InitialWeights(Sequential model, InitializerOptions options, int seed)
    {
        var random = new Random(seed);
        var vector = new ParameterVector(model.Layout);
        foreach (var (parameter, segment) in model.NamedParameters)
        {
            var target = vector.Segment(segment);
            if (parameter.FixedInitialValue is { } fixedValue)
                target.Fill(fixedValue);
            else if (parameter.IsBias && options.Kind != InitializerKind.Constant)
                target.Clear();
            else
                Initializers.Fill(target, parameter.FanIn, parameter.FanOut, options, random);
        }
        model.LoadParameters(vector.Values);
        return vector;
    }
}
