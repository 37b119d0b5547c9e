using System.Globalization;
using System.Numerics.Tensors;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Layers;
using DistTrain.Core.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Core.Models;

/// <summary>
/// Trained weights with what is needed to use them: the layer stack, the input standardization, what the data was
/// (<see cref="DataMetadata"/>: format, input scaling, class names, CSV columns) and the checkpoint metadata. Loads from
/// and saves to DistTrain's <c>model.safetensors</c> (written by <c>disttrain train</c>, the <c>Trainer</c> API or
/// <see cref="Save"/>), and computes logits, probabilities and classes in evaluation mode (dropout off, BatchNorm on its
/// running statistics). <c>disttrain predict</c>, <c>evaluate</c> and <c>export</c> all load models through <see cref="Load"/>.
/// </summary>
/// <remarks>Not thread-safe: the forward pass reuses one replica's buffers. Use one instance per thread.</remarks>
public sealed class TrainedModel
{
    private Sequential? _replica;

    /// <summary>Wraps trained weights.</summary>
    /// <param name="model">The model section the weights belong to.</param>
    /// <param name="weights">The weights: a tensor for every tensor of <paramref name="model"/>, matched by name and shape
    /// (a training run's layout, with frozen tensors placed last, is accepted); they are copied.</param>
    /// <param name="normalizer">The input standardization fitted on the training split.</param>
    /// <param name="metadata">Checkpoint metadata (<see cref="ModelMetadata.Create"/>); null for the model and
    /// normalization only, with inputs taken as given (<see cref="DataMetadata.GivenValues"/>).</param>
    /// <exception cref="ArgumentNullException"><paramref name="model"/>, <paramref name="weights"/> or <paramref name="normalizer"/> is null.</exception>
    /// <exception cref="ArgumentException">The model cannot be built, or the weights' tensors differ from the model's in names or shapes.</exception>
    /// <exception cref="InvalidDataException">The metadata's data entries (<see cref="DataMetadata.FromMetadata"/>) are malformed.</exception>
    public TrainedModel(ModelOptions model, ParameterVector weights, Normalizer normalizer, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(normalizer);
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
        Metadata = metadata ?? ModelMetadata.Create(model, normalizer, DataMetadata.GivenValues(), version: 0, epochs: 0, testAccuracy: null, seed: 0);
        Data = DataMetadata.FromMetadata(Metadata);
    }

    /// <summary>The layer stack, input shape, loss and initializer.</summary>
    public ModelOptions Model { get; }

    /// <summary>The trained weights, named as PyTorch's <c>state_dict</c> of the same <c>nn.Sequential</c>.</summary>
    public ParameterVector Weights { get; }

    /// <summary>The input standardization the weights expect.</summary>
    public Normalizer Normalizer { get; }

    /// <summary>What the data was: format, input divisor, class names, label kind, CSV columns.</summary>
    public DataMetadata Data { get; }

    /// <summary>Checkpoint metadata (keys in <see cref="ModelMetadata"/> and <see cref="DataMetadata.ToMetadata"/>).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Shape of one input sample: <c>[channels, height, width]</c>, or flat <c>[features]</c>.</summary>
    public TensorShape InputShape => Model.Input();

    /// <summary>Features per input sample.</summary>
    public int FeatureCount => InputShape.Size;

    /// <summary>Outputs per sample: the number of classes of a classifier.</summary>
    public int ClassCount => Replica.OutputSize;

    /// <summary>Class names in output order (<see cref="DataMetadata.ClassNames"/>), or null when the data had none.</summary>
    public IReadOnlyList<string>? ClassNames => Data.ClassNames;

    /// <summary>
    /// The name of class <paramref name="index"/>; for a model trained on some classes only (Data:Classes) whose labels
    /// have no names, the original label it stands for (<c>label 5</c>, as output 0 of Data:Classes [5, 6, 7]); null when
    /// the model's classes have neither.
    /// </summary>
    public string? ClassName(int index) => ClassNames is { } names && index < names.Count ? names[index]
        : Data.Classes is { Count: > 0 } kept && index < kept.Count ? $"label {kept[index].ToString(System.Globalization.CultureInfo.InvariantCulture)}"
        : null;

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

    /// <summary>
    /// Loads a <c>model.safetensors</c> written by <c>disttrain train</c>, the Trainer API or <see cref="Save"/>. The file is
    /// read as outside input: the network in its metadata is validated as a config's Model section would be, and must fit
    /// in the file before any tensor is allocated.
    /// </summary>
    /// <param name="path">The checkpoint, or a run folder holding one as <c>model.safetensors</c>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="path"/> is empty or white space.</exception>
    /// <exception cref="FileNotFoundException">There is no such file.</exception>
    /// <exception cref="InvalidDataException">The metadata lacks the network or its normalization (a PyTorch export has
    /// only tensors), that network is not valid or larger than the file, a metadata entry is malformed, or the tensors do
    /// not fit the network, or a tensor holds NaN or infinity, or the data section or the metadata does not match the SHA-256
    /// the file records for it (<see cref="SafeTensors.DataSha256Key"/>, <see cref="SafeTensors.MetadataSha256Key"/>: a corrupt
    /// or edited file; one without them, written by an older build, loads unchecked); the message names the file, the tensor
    /// and the fix.</exception>
    /// <exception cref="SafeTensorsFormatException">The file breaks the safetensors format; the message names the tensor and bytes.</exception>
    /// <exception cref="UnreadableFileException">This process may not read the file; the message says to check its permissions.</exception>
    public static TrainedModel Load(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        path = RunFiles.ModelIn(path);
        if (!File.Exists(path))
            throw new FileNotFoundException($"{path}: no such file. Give the model.safetensors a training run wrote (runs/<time>/model.safetensors).", path);
        var metadata = SafeTensors.ReadMetadata(path);
        var model = ModelMetadata.ReadModel(metadata, path);
        var normalizer = ModelMetadata.ReadNormalizer(metadata, path);
        DataMetadata data;
        try
        {
            data = DataMetadata.FromMetadata(metadata);
        }
        catch (InvalidDataException e)
        {
            throw new InvalidDataException($"{path}: {e.Message} The file is corrupt; train again or use another checkpoint.");
        }
        var problems = TrainingOptionsValidator.Validate(new TrainingOptions { Model = model }, checkDataDirectory: false)
            .Where(p => p.StartsWith("Model:", StringComparison.Ordinal)).ToList();
        if (problems.Count > 0)
            throw new InvalidDataException($"{path}: the network in the '{ModelMetadata.ModelConfig}' entry is not valid: {string.Join(" ", problems)}");
        // The tensors must be in the file: a network larger than the file is refused before its tensors are allocated.
        var weightCount = ModelFactory.WeightCountLowerBound(model);
        var fileBytes = new FileInfo(path).Length;
        if (weightCount > int.MaxValue)
            throw new InvalidDataException($"{path}: the network in the '{ModelMetadata.ModelConfig}' entry has {weightCount:N0} weights, more than one array holds ({int.MaxValue:N0}); no run writes such a model. Give the model.safetensors its training run wrote.");
        if (4 * weightCount > fileBytes)
            throw new InvalidDataException($"{path}: the '{ModelMetadata.ModelConfig}' entry describes at least {weightCount:N0} weights ({4 * weightCount:N0} bytes of float32) but the file has {fileBytes:N0} bytes. Give the model.safetensors its training run wrote.");
        Sequential replica;
        try
        {
            replica = ModelFactory.Build(model, isFrozen: _ => false);
        }
        catch (OverflowException)
        {
            throw new InvalidDataException($"{path}: the network in the '{ModelMetadata.ModelConfig}' entry has more parameters than one array holds ({int.MaxValue:N0}); no run writes such a model. Give the model.safetensors its training run wrote.");
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{path}: the network in the '{ModelMetadata.ModelConfig}' entry cannot be built ({e.Message}).");
        }
        if (normalizer.Kind == NormalizationKind.PerFeature && normalizer.Mean.Length != replica.InputSize)
            throw new InvalidDataException($"{path}: the metadata's per-feature standardization has {normalizer.Mean.Length} values but the network reads {replica.InputSize} features.");
        if (data.ClassNames is { } names && names.Count != replica.OutputSize)
            throw new InvalidDataException($"{path}: the metadata names {names.Count} classes but the network has {replica.OutputSize} outputs.");
        var weights = new ParameterVector(replica.Layout);
        // Checks the data section against the recorded data_sha256 (a corrupt file is refused), and refuses weights that
        // are not finite, naming the tensor.
        PretrainedWeights.Load(path, replica, weights, replaceHead: false);
        // The checksums describe this file's bytes, not the model: Save records new ones, and an ONNX export leaves them out.
        var entries = metadata.Where(m => m.Key is not (SafeTensors.DataSha256Key or SafeTensors.MetadataSha256Key))
            .ToDictionary(m => m.Key, m => m.Value, StringComparer.Ordinal);
        return new TrainedModel(model, weights, normalizer, entries);
    }

    /// <summary>Writes the weights and metadata as safetensors (loadable by <see cref="Load"/>, <c>disttrain</c> and PyTorch), with
    /// the SHA-256 of the tensor data and that of the other metadata entries in the metadata (<see cref="SafeTensors.DataSha256Key"/>,
    /// <see cref="SafeTensors.MetadataSha256Key"/>), which <see cref="Load"/> checks.</summary>
    /// <param name="path">Target file; written to a temporary file first, then renamed.</param>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="path"/> is empty or white space.</exception>
    /// <exception cref="DirectoryNotFoundException">The folder of <paramref name="path"/> does not exist; the message names it.</exception>
    /// <exception cref="IOException"><paramref name="path"/> is a folder, or the file cannot be written.</exception>
    /// <exception cref="UnauthorizedAccessException">The folder is not writable.</exception>
    public void Save(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        SafeTensors.Write(path, Weights, Metadata);
    }

    /// <summary>
    /// Logits of each sample, in evaluation mode. Samples pass through in batches whose buffers stay within 256 MiB.
    /// </summary>
    /// <param name="samples">Samples one after another, <c>[count, FeatureCount]</c> row-major, on the scale training read
    /// them (<see cref="DataMetadata.InputDivisor"/>: IDX images pixels / 255, CSV values and arrays as given);
    /// <see cref="Normalizer"/> is applied to a copy unless <paramref name="standardized"/>.</param>
    /// <param name="standardized">True when the samples are already standardized (as <see cref="TrainingData"/>'s splits are).</param>
    /// <returns>Logits <c>[count, ClassCount]</c> row-major.</returns>
    /// <exception cref="ArgumentException">The length is not a multiple of <see cref="FeatureCount"/>.</exception>
    public float[] Logits(ReadOnlySpan<float> samples, bool standardized = false) => Forward(samples, standardized ? null : 1f);

    /// <summary>Softmax probabilities of each sample, <c>[count, ClassCount]</c> row-major; see <see cref="Logits"/>.</summary>
    public float[] Probabilities(ReadOnlySpan<float> samples, bool standardized = false) => SoftMaxRows(Logits(samples, standardized));

    /// <summary>
    /// The most likely class of each sample (the largest logit), or -1 for a sample whose logits are not all finite (values
    /// far outside the training data's range overflow them; <see cref="NonFiniteSamples"/>); see <see cref="Logits"/>.
    /// </summary>
    public int[] Predict(ReadOnlySpan<float> samples, bool standardized = false)
    {
        var values = Logits(samples, standardized);
        var classes = new int[values.Length / ClassCount];
        for (var i = 0; i < classes.Length; i++)
        {
            var logits = values.AsSpan(i * ClassCount, ClassCount);
            classes[i] = TensorPrimitives.IsFiniteAll(logits) ? TensorPrimitives.IndexOfMax(logits) : -1;
        }
        return classes;
    }

    /// <summary>
    /// Fraction of <paramref name="data"/>'s samples whose predicted class is their label, 0 to 1 (NaN for no samples); a
    /// sample without a prediction (<see cref="Predict"/>'s -1) counts as wrong.
    /// </summary>
    /// <param name="data">Samples with labels.</param>
    /// <param name="standardized">True when <paramref name="data"/> is already standardized (a <see cref="TrainingData"/> split).</param>
    /// <exception cref="ArgumentNullException"><paramref name="data"/> is null.</exception>
    /// <exception cref="ArgumentException">The samples do not have <see cref="FeatureCount"/> features.</exception>
    public double Accuracy(LabeledDataset data, bool standardized)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (data.Count == 0) return double.NaN;
        var predicted = Predict(data.Features, standardized);
        var correct = 0;
        for (var i = 0; i < predicted.Length; i++)
            if (predicted[i] == data.Labels[i]) correct++;
        return (double)correct / data.Count;
    }

    /// <summary>
    /// Scores raw samples as <c>disttrain predict</c> and <c>evaluate</c> do: brings the values to the scale the model was
    /// trained on (multiplied by <paramref name="dividedBy"/> / <see cref="DataMetadata.InputDivisor"/>), standardizes
    /// them, runs the network and returns per sample the softmax probabilities (for a SoftmaxCrossEntropy model; a
    /// MeanSquaredError model's outputs as they are), sample-major <c>[count, ClassCount]</c>. A sample whose outputs are
    /// not all finite (values far outside the training data's range, such as 3e38, overflow them) gets NaN in every
    /// column, never probabilities; <see cref="NonFiniteSamples"/> finds them.
    /// </summary>
    /// <param name="values">Sample-major values, <c>count · FeatureCount</c>. Not modified.</param>
    /// <param name="dividedBy">What <paramref name="values"/> were divided by when read: 255 for images and IDX files
    /// (bytes / 255), 1 for CSV values as written.</param>
    /// <param name="cancellationToken">Checked before each pass of samples through the network (Ctrl-C in predict and evaluate).</param>
    /// <exception cref="ArgumentException">The length is not a multiple of <see cref="FeatureCount"/>.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled before the last pass.</exception>
    public float[] Score(ReadOnlySpan<float> values, float dividedBy, CancellationToken cancellationToken = default)
    {
        var outputs = Forward(values, dividedBy / Data.InputDivisor, cancellationToken);
        foreach (var sample in NonFiniteSamples(outputs))
            outputs.AsSpan(sample * ClassCount, ClassCount).Fill(float.NaN);
        return LossTypes.Canonical(Model.Loss) == LossTypes.SoftmaxCrossEntropy ? SoftMaxRows(outputs) : outputs;
    }

    /// <summary>The samples whose outputs are not all finite (NaN or infinite), in order.</summary>
    /// <param name="outputs">Sample-major outputs <c>[count, ClassCount]</c>, from <see cref="Logits"/> or <see cref="Score"/>.</param>
    public IReadOnlyList<int> NonFiniteSamples(ReadOnlySpan<float> outputs)
    {
        var samples = new List<int>();
        for (var i = 0; i < outputs.Length / ClassCount; i++)
            if (!TensorPrimitives.IsFiniteAll(outputs.Slice(i * ClassCount, ClassCount))) samples.Add(i);
        return samples;
    }

    /// <summary>
    /// The tensors whose weights are large enough to overflow the network on inputs of any scale, with each one's largest
    /// |value|: those whose float32 L2 norm is infinite, that is whose sum of squares exceeds <see cref="float.MaxValue"/>
    /// (a single |value| above about 1.8e19, the square root of <see cref="float.MaxValue"/>, is enough). Trained weights
    /// are many orders of magnitude smaller; a tensor past that bound comes from a damaged or edited file, or a run that
    /// diverged. NaN and infinity are refused when the model is loaded (<see cref="Load"/>), so they are not listed here.
    /// </summary>
    /// <returns>The tensors past the bound, in layout order; empty when there are none.</returns>
    public IReadOnlyList<(string Name, float LargestMagnitude)> OverflowingTensors()
    {
        var tensors = new List<(string Name, float LargestMagnitude)>();
        foreach (var segment in Weights.Layout.Segments)
        {
            ReadOnlySpan<float> values = Weights.Segment(segment);
            if (values.Length > 0 && float.IsInfinity(TensorPrimitives.Norm(values)))
                tensors.Add((segment.Name, Math.Abs(TensorPrimitives.MaxMagnitude(values))));
        }
        return tensors;
    }

    /// <summary>A description for the console: layers, classes and input.</summary>
    public override string ToString() =>
        $"{string.Join(" ", Replica.Layers.Select(l => l.Description))}; input {InputShape}, {ClassCount} classes" +
        (ClassNames is { } names ? $" ({string.Join(", ", names.Take(10))}{(names.Count > 10 ? ", ..." : "")})" : "") +
        $"; trained on {Data.Format.ToString().ToLower(CultureInfo.InvariantCulture)} data";

    /// <summary>The network's outputs, batch by batch; <paramref name="scale"/> multiplies a copy of the values before
    /// standardization, and null leaves them as they are (already standardized). <paramref name="cancellationToken"/> is
    /// checked before each pass.</summary>
    private float[] Forward(ReadOnlySpan<float> samples, float? scale, CancellationToken cancellationToken = default)
    {
        var features = FeatureCount;
        if (samples.Length % features != 0)
            throw new ArgumentException($"{samples.Length} values are not whole samples of {features} features ({InputShape}).");
        var count = samples.Length / features;
        var classes = ClassCount;
        var outputs = new float[count * classes];
        var pass = Sequential.EvaluationPassSize(1024, Replica.ForwardBytesPerSample);
        for (var start = 0; start < count; start += pass)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var batch = Math.Min(pass, count - start);
            var input = Matrix<float>.Build.Dense(features, batch, samples.Slice(start * features, batch * features).ToArray());
            if (scale is { } factor)
            {
                var values = input.ColumnMajorValues();
                if (factor != 1f) TensorPrimitives.Multiply(values, factor, values);
                Normalizer.Standardize(values, features);
            }
            Replica.Forward(input).ColumnMajorValues().AsSpan(0, batch * classes).CopyTo(outputs.AsSpan(start * classes));
        }
        return outputs;
    }

    /// <summary>Softmax of each row, after subtracting the row's largest value: large finite logits (above 88, where
    /// e^x overflows a float) still give probabilities, not NaN.</summary>
    private float[] SoftMaxRows(float[] values)
    {
        for (var start = 0; start < values.Length; start += ClassCount)
        {
            var row = values.AsSpan(start, ClassCount);
            TensorPrimitives.Subtract(row, TensorPrimitives.Max(row), row);
            TensorPrimitives.SoftMax(row, row);
        }
        return values;
    }
}
