using System.Globalization;
using System.Text.Json;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Layers;
using DistTrain.Core.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Core.Models;

/// <summary>
/// A model saved by a run (<c>model.safetensors</c>), ready to score new inputs: the network rebuilt from the
/// <c>model_config</c> metadata with the saved tensors, in evaluation mode (dropout off, BatchNorm on running statistics),
/// the input normalization it was trained with, and what it knows about its data (<see cref="DataMetadata"/>).
/// </summary>
public sealed class TrainedModel
{
    private const int BatchSize = 256;
    private readonly Sequential _network;
    private readonly bool _softmax;

    private TrainedModel(Sequential network, ModelOptions options, Normalizer normalizer, DataMetadata data)
    {
        _network = network;
        Options = options;
        Normalizer = normalizer;
        Data = data;
        _softmax = LossTypes.Canonical(options.Loss) == LossTypes.SoftmaxCrossEntropy;
    }

    /// <summary>The model section it was trained with.</summary>
    public ModelOptions Options { get; }

    /// <summary>The input standardization it expects, applied by <see cref="Score"/>.</summary>
    public Normalizer Normalizer { get; }

    /// <summary>Its data's format, scaling, class names and columns.</summary>
    public DataMetadata Data { get; }

    /// <summary>One input sample's shape.</summary>
    public TensorShape InputShape => _network.InputShape;

    /// <summary>Number of classes (outputs).</summary>
    public int ClassCount => _network.OutputSize;

    /// <summary>The name of class <paramref name="index"/>, or null when the model's classes have no names.</summary>
    public string? ClassName(int index) => Data.ClassNames is { } names && index < names.Count ? names[index] : null;

    /// <summary>Loads a model written by <c>disttrain train</c>.</summary>
    /// <param name="path">A <c>model.safetensors</c> with DistTrain's metadata.</param>
    /// <exception cref="InvalidDataException">The file is missing, lacks the metadata that describes the network or its
    /// normalization, that network is not valid (as a config's Model section would be refused) or larger than the file, or
    /// its tensors do not fit that network; the message names the file and the fix.</exception>
    /// <exception cref="SafeTensorsFormatException">The file is not well-formed safetensors.</exception>
    public static TrainedModel Load(string path)
    {
        if (!File.Exists(path))
            throw new InvalidDataException($"{path}: no such file. Give the model.safetensors a training run wrote (runs/<time>/model.safetensors).");
        var metadata = SafeTensors.ReadMetadata(path);
        string Entry(string key) => metadata.TryGetValue(key, out var value) ? value
            : throw new InvalidDataException($"{path}: the metadata has no '{key}' entry, so the network or its input scaling is unknown. Give a model.safetensors written by 'disttrain train' (a PyTorch export has no such metadata).");
        try
        {
            var options = JsonSerializer.Deserialize<ModelOptions>(Entry("model_config"))
                ?? throw new InvalidDataException($"{path}: the 'model_config' entry is empty.");
            options.Pretrained = "";
            options.ReplaceHead = false;
            var kind = Enum.Parse<NormalizationKind>(Entry("input_normalization"), ignoreCase: true);
            var normalizer = Normalizer.FromStatistics(kind,
                JsonSerializer.Deserialize<float[]>(Entry("input_mean")) ?? [], JsonSerializer.Deserialize<float[]>(Entry("input_std")) ?? []);
            var data = DataMetadata.FromMetadata(metadata);
            var problems = TrainingOptionsValidator.Validate(new TrainingOptions { Model = options }, checkDataDirectory: false)
                .Where(p => p.StartsWith("Model:", StringComparison.Ordinal)).ToList();
            if (problems.Count > 0)
                throw new InvalidDataException($"{path}: the network in the 'model_config' entry is not valid: {string.Join(" ", problems)}");
            // The tensors must be in the file: a network larger than the file is refused before its tensors are allocated.
            var weightCount = ModelFactory.WeightCountLowerBound(options);
            var fileBytes = new FileInfo(path).Length;
            if (weightCount > int.MaxValue)
                throw new InvalidDataException($"{path}: the network in the 'model_config' entry has {weightCount:N0} weights, more than one array holds ({int.MaxValue:N0}); no run writes such a model. Give the model.safetensors its training run wrote.");
            if (4 * weightCount > fileBytes)
                throw new InvalidDataException($"{path}: the 'model_config' entry describes at least {weightCount:N0} weights ({4 * weightCount:N0} bytes of float32) but the file has {fileBytes:N0} bytes. Give the model.safetensors its training run wrote.");
            Sequential network;
            try
            {
                network = ModelFactory.Build(options);
            }
            catch (OverflowException)
            {
                throw new InvalidDataException($"{path}: the network in the 'model_config' entry has more parameters than one array holds ({int.MaxValue:N0}); no run writes such a model. Give the model.safetensors its training run wrote.");
            }
            if (kind == NormalizationKind.PerFeature && normalizer.Mean.Length != network.InputSize)
                throw new InvalidDataException($"{path}: the per-feature normalization has {normalizer.Mean.Length} values but the network reads {network.InputSize} features.");
            if (data.ClassNames is { } names && names.Count != network.OutputSize)
                throw new InvalidDataException($"{path}: the metadata names {names.Count} classes but the network has {network.OutputSize} outputs.");
            PretrainedWeights.Load(path, network, new ParameterVector(network.Layout), replaceHead: false);
            network.SetTraining(false);
            return new TrainedModel(network, options, normalizer, data);
        }
        catch (Exception e) when (e is JsonException or ArgumentException or NotSupportedException)
        {
            throw new InvalidDataException($"{path}: the model's metadata is malformed ({e.Message}).");
        }
    }

    /// <summary>
    /// Scores samples: brings the values to the scale the model was trained on (raw / the data's input divisor),
    /// standardizes them as in training, runs the network and returns per sample the softmax probabilities (for a
    /// SoftmaxCrossEntropy model; a MeanSquaredError model's outputs as they are), sample-major <c>[count, classes]</c>.
    /// </summary>
    /// <param name="values">Sample-major values, <c>count · InputShape.Size</c>. Not modified.</param>
    /// <param name="dividedBy">What <paramref name="values"/> were divided by when read: 255 for images and IDX files
    /// (bytes / 255), 1 for CSV values as written.</param>
    /// <exception cref="ArgumentException">The length is not a multiple of the input size.</exception>
    public float[] Score(ReadOnlySpan<float> values, float dividedBy)
    {
        var size = InputShape.Size;
        if (values.Length % size != 0)
            throw new ArgumentException($"{values.Length} values are not whole samples of {size} features.");
        var count = values.Length / size;
        var scores = new float[count * ClassCount];
        for (var start = 0; start < count; start += BatchSize)
        {
            var batch = Math.Min(BatchSize, count - start);
            var input = Matrix<float>.Build.Dense(size, batch);
            var batchValues = input.ColumnMajorValues();
            values.Slice(start * size, batch * size).CopyTo(batchValues);
            if (dividedBy != Data.InputDivisor)
                System.Numerics.Tensors.TensorPrimitives.Multiply(batchValues, dividedBy / Data.InputDivisor, batchValues);
            Normalizer.Standardize(batchValues, size);
            var output = _network.Forward(input).ColumnMajorValues();
            for (var sample = 0; sample < batch; sample++)
            {
                var logits = output.AsSpan(sample * ClassCount, ClassCount);
                var target = scores.AsSpan((start + sample) * ClassCount, ClassCount);
                if (_softmax) System.Numerics.Tensors.TensorPrimitives.SoftMax(logits, target);
                else logits.CopyTo(target);
            }
        }
        return scores;
    }

    /// <summary>A description for the console: layers, classes and input.</summary>
    public override string ToString() =>
        $"{string.Join(" ", _network.Layers.Select(l => l.Description))}; input {InputShape}, {ClassCount} classes" +
        (Data.ClassNames is { } names ? $" ({string.Join(", ", names.Take(10))}{(names.Count > 10 ? ", ..." : "")})" : "") +
        $"; trained on {Data.Format.ToString().ToLower(CultureInfo.InvariantCulture)} data";
}
