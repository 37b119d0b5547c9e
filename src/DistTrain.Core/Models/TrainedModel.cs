using System.Numerics.Tensors;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Data;
using DistTrain.Core.Layers;
using DistTrain.Core.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Core.Models;

/// <summary>
/// Trained weights with what is needed to use them: the layer stack, the input standardization and the checkpoint
/// metadata. Loads from and saves to DistTrain's <c>model.safetensors</c>, and computes logits and classes in
/// evaluation mode (dropout off, BatchNorm on its running statistics).
/// </summary>
/// <remarks>Not thread-safe: <see cref="Logits"/> reuses one replica's buffers. Use one instance per thread.</remarks>
public sealed class TrainedModel
{
    private Sequential? _replica;

    /// <summary>Wraps trained weights.</summary>
    /// <param name="model">The model section the weights belong to.</param>
    /// <param name="weights">The weights: a tensor for every tensor of <paramref name="model"/>, matched by name and shape
    /// (a training run's layout, with frozen tensors placed last, is accepted); they are copied.</param>
    /// <param name="normalizer">The input standardization fitted on the training split.</param>
    /// <param name="metadata">Checkpoint metadata (<see cref="ModelMetadata"/>); null for the model and normalization only.</param>
    /// <exception cref="ArgumentException">The model cannot be built, or the weights' tensors differ from the model's in names or shapes.</exception>
    public TrainedModel(ModelOptions model, ParameterVector weights, Normalizer normalizer, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var layout = ModelFactory.Build(model, isFrozen: _ => false).Layout;
        var given = weights.Layout.Segments.ToDictionary(s => s.Name, StringComparer.Ordinal);
        var problems = layout.Segments
            .Where(s => !given.TryGetValue(s.Name, out var g) || !g.Shape.SequenceEqual(s.Shape))
            .Select(s => $"{s.Name} [{string.Join(", ", s.Shape)}]")
            .Concat(given.Keys.Where(name => !layout.Segments.Any(s => s.Name == name)).Select(name => $"{name} (not in the model)"))
            .ToList();
        if (problems.Count > 0)
            throw new ArgumentException($"The weights do not fit the model: {string.Join(", ", problems)}.");
        Weights = new ParameterVector(layout);
        foreach (var segment in layout.Segments)
            weights.Segment(given[segment.Name]).CopyTo(Weights.Segment(segment));
        Model = model;
        Normalizer = normalizer;
        Metadata = metadata ?? ModelMetadata.Create(model, normalizer, version: 0, epochs: 0, testAccuracy: null, seed: 0, ModelMetadata.GivenScale);
    }

    /// <summary>The layer stack, input shape, loss and initializer.</summary>
    public ModelOptions Model { get; }

    /// <summary>The trained weights, named as PyTorch's <c>state_dict</c> of the same <c>nn.Sequential</c>.</summary>
    public ParameterVector Weights { get; }

    /// <summary>The input standardization the weights expect.</summary>
    public Normalizer Normalizer { get; }

    /// <summary>Checkpoint metadata (keys in <see cref="ModelMetadata"/>).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Shape of one input sample: <c>[channels, height, width]</c>, or flat <c>[features]</c>.</summary>
    public TensorShape InputShape => Model.Input();

    /// <summary>Features per input sample.</summary>
    public int FeatureCount => InputShape.Size;

    /// <summary>Outputs per sample: the number of classes of a classifier.</summary>
    public int ClassCount => Replica.OutputSize;

    /// <summary>Class names from the metadata (<see cref="ModelMetadata.ClassNames"/>), or null when the data had none.</summary>
    public IReadOnlyList<string>? ClassNames => ModelMetadata.ReadClassNames(Metadata);

    private Sequential Replica
    {
        get
        {
            if (_replica is not null) return _replica;
            var replica = ModelFactory.Build(Model, isFrozen: _ => false);
            replica.LoadParameters(Weights.Values);
            replica.SetTraining(false);
            return _replica = replica;
        }
    }

    /// <summary>Loads a <c>model.safetensors</c> written by <c>disttrain train</c> or <see cref="Save"/>.</summary>
    /// <param name="path">The checkpoint.</param>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    /// <exception cref="InvalidDataException">The file is not safetensors, its metadata lacks the model or normalization
    /// (a PyTorch export has only tensors), or its tensors do not fit the model; the message names the file and the fix.</exception>
    /// <exception cref="SafeTensorsFormatException">The file breaks the safetensors format; the message names the tensor and bytes.</exception>
    public static TrainedModel Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file.", path);
        var metadata = SafeTensors.ReadMetadata(path);
        var model = ModelMetadata.ReadModel(metadata, path);
        var normalizer = ModelMetadata.ReadNormalizer(metadata, path);
        Sequential replica;
        try
        {
            replica = ModelFactory.Build(model, isFrozen: _ => false);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{path}: the model in the metadata cannot be built ({e.Message}).");
        }
        var weights = new ParameterVector(replica.Layout);
        PretrainedWeights.Load(path, replica, weights, replaceHead: false);
        if (normalizer.Kind == NormalizationKind.PerFeature && normalizer.Mean.Length != replica.InputSize)
            throw new InvalidDataException($"{path}: the metadata's per-feature standardization has {normalizer.Mean.Length} values but the model takes {replica.InputSize} features.");
        return new TrainedModel(model, weights, normalizer, metadata);
    }

    /// <summary>Writes the weights and metadata as safetensors (loadable by <see cref="Load"/>, <c>disttrain</c> and PyTorch).</summary>
    /// <param name="path">Target file; written to a temporary file first, then renamed.</param>
    public void Save(string path) => SafeTensors.Write(path, Weights, Metadata);

    /// <summary>
    /// Logits of each sample, in evaluation mode. Samples pass through in batches whose buffers stay within 256 MiB.
    /// </summary>
    /// <param name="samples">Samples one after another, <c>[count, FeatureCount]</c> row-major, as the data loader gives
    /// them (IDX images: pixels / 255); <see cref="Normalizer"/> is applied to a copy unless <paramref name="standardized"/>.</param>
    /// <param name="standardized">True when the samples are already standardized (as <see cref="TrainingData"/>'s splits are).</param>
    /// <returns>Logits <c>[count, ClassCount]</c> row-major.</returns>
    /// <exception cref="ArgumentException">The length is not a multiple of <see cref="FeatureCount"/>.</exception>
    public float[] Logits(ReadOnlySpan<float> samples, bool standardized = false)
    {
        var features = FeatureCount;
        if (samples.Length % features != 0)
            throw new ArgumentException($"{samples.Length} values are not whole samples of {features} features ({InputShape}).");
        var count = samples.Length / features;
        var classes = ClassCount;
        var logits = new float[count * classes];
        var pass = Sequential.EvaluationPassSize(1024, Replica.ForwardBytesPerSample);
        for (var start = 0; start < count; start += pass)
        {
            var batch = Math.Min(pass, count - start);
            var input = Matrix<float>.Build.Dense(features, batch, samples.Slice(start * features, batch * features).ToArray());
            if (!standardized) Normalizer.Apply(input.ColumnMajorValues(), features);
            var output = Replica.Forward(input);
            output.ColumnMajorValues().AsSpan(0, batch * classes).CopyTo(logits.AsSpan(start * classes));
        }
        return logits;
    }

    /// <summary>Softmax probabilities of each sample, <c>[count, ClassCount]</c> row-major; see <see cref="Logits"/>.</summary>
    public float[] Probabilities(ReadOnlySpan<float> samples, bool standardized = false)
    {
        var values = Logits(samples, standardized);
        for (var start = 0; start < values.Length; start += ClassCount)
            TensorPrimitives.SoftMax(values.AsSpan(start, ClassCount), values.AsSpan(start, ClassCount));
        return values;
    }

    /// <summary>The most likely class of each sample (the largest logit); see <see cref="Logits"/>.</summary>
    public int[] Predict(ReadOnlySpan<float> samples, bool standardized = false)
    {
        var values = Logits(samples, standardized);
        var classes = new int[values.Length / ClassCount];
        for (var i = 0; i < classes.Length; i++)
            classes[i] = TensorPrimitives.IndexOfMax(values.AsSpan(i * ClassCount, ClassCount));
        return classes;
    }

    /// <summary>Fraction of <paramref name="data"/>'s samples whose predicted class is their label, 0 to 1.</summary>
    /// <param name="data">Samples with labels.</param>
    /// <param name="standardized">True when <paramref name="data"/> is already standardized (a <see cref="TrainingData"/> split).</param>
    public double Accuracy(LabeledDataset data, bool standardized)
    {
        if (data.Count == 0) return double.NaN;
        var predicted = Predict(data.Features, standardized);
        var correct = 0;
        for (var i = 0; i < predicted.Length; i++)
            if (predicted[i] == data.Labels[i]) correct++;
        return (double)correct / data.Count;
    }
}
