using System.Numerics.Tensors;
using MathNet.Numerics.LinearAlgebra;
using DistTrain.Core.Layers;
using DistTrain.Core.Losses;
using DistTrain.Core.Tensors;

namespace DistTrain.Core.Models;

/// <summary>
/// Layers applied in order, like PyTorch's <c>nn.Sequential</c>. Parameters are named
/// <c>{index}.{name}</c> (<c>0.weight</c>, <c>0.bias</c>, <c>2.weight</c>, ...), the names PyTorch's
/// <c>state_dict</c> gives the same stack, and laid out in a <see cref="ParameterLayout"/> in that order.
/// </summary>
public sealed class Sequential
{
    private readonly (LayerParameter Parameter, ParameterSegment Segment)[] _parameters;
    private readonly ILayer[] _layers; // indexed loops: foreach over IReadOnlyList boxes an enumerator per call
    private readonly int _firstTrainableLayer;
    // A ReLU right after a layer that owns its output (Dense, Conv2D, BatchNorm, LayerNorm) runs in place on that
    // output, and its backward masks the incoming gradient in place: one activation buffer fewer to write and read.
    private readonly bool[] _rectifiesInPlace;
    private readonly Matrix<float>?[] _rectifiedOutputs;
    private MatrixBuffer? _lossGradient;

    /// <summary>Builds a model over flat inputs of <paramref name="inputSize"/> features.</summary>
    /// <exception cref="ArgumentException">A layer does not accept its predecessor's output.</exception>
    public Sequential(int inputSize, IReadOnlyList<ILayer> layers) : this(TensorShape.Flat(inputSize), layers) { }

    /// <summary>Builds the model, checks that consecutive layer shapes fit and freezes the named tensors.</summary>
    /// <param name="input">Shape of one input sample.</param>
    /// <param name="layers">Layers in order.</param>
    /// <param name="isFrozen">Given a full tensor name (<c>0.weight</c>), true when it must not train (transfer learning); null freezes nothing.</param>
    /// <exception cref="ArgumentException">A layer does not accept its predecessor's output.</exception>
    public Sequential(TensorShape input, IReadOnlyList<ILayer> layers, Func<string, bool>? isFrozen = null)
    {
        InputShape = input;
        _layers = [.. layers];
        Layers = _layers;
        var shape = input;
        foreach (var layer in layers)
            shape = layer.OutputShape(shape);
        OutputShape = shape;
        var named = layers
            .SelectMany((layer, index) => layer.Parameters.Select(p => (Name: $"{index}.{p.Name}", Parameter: p)))
            .ToArray();
        foreach (var (name, parameter) in named)
            parameter.Frozen = isFrozen?.Invoke(name) ?? false;
        // A normalization layer with running statistics is frozen whole: training its scale on batch statistics
        // while its running statistics stay pretrained would evaluate differently from how it trained.
        foreach (var layer in layers)
            if (layer.Parameters.Any(p => p.Role == ParameterRole.RunningStatistic) && layer.Parameters.Any(p => p.Frozen))
                foreach (var parameter in layer.Parameters)
                    parameter.Frozen = true;
        Layout = new ParameterLayout(named.Select(n => (n.Name, n.Parameter.Shape, n.Parameter.Role, n.Parameter.Frozen)));
        _parameters = named.Select(n => (n.Parameter, Layout[n.Name])).ToArray();
        _rectifiesInPlace = new bool[_layers.Length];
        _rectifiedOutputs = new Matrix<float>?[_layers.Length];
        for (var i = 1; i < _layers.Length; i++)
            _rectifiesInPlace[i] = _layers[i] is ReLU && _layers[i - 1] is Dense or Conv2D or BatchNorm or LayerNorm;
        // Backward stops at the first layer with a trainable tensor: nothing before it needs a gradient.
        _firstTrainableLayer = Array.FindIndex(_layers, l => l.Parameters.Any(p => p.Trainable));
        var sampleShape = input;
        for (var i = 0; i < _layers.Length; i++)
        {
            if (!_rectifiesInPlace[i]) ForwardBytesPerSample += _layers[i].ForwardBytesPerSample(sampleShape);
            sampleShape = _layers[i].OutputShape(sampleShape);
        }
    }

    /// <summary>
    /// Bytes that a forward pass keeps per sample of its batch, summed over the layers (see
    /// <see cref="ILayer.ForwardBytesPerSample"/>; a ReLU that rectifies in place adds nothing). A forward pass over
    /// n samples holds about n times this, so evaluation passes are cut to a memory budget with it. For the MLP
    /// 784-256-128-10 it is 1,576 bytes; for the two-convolution CNN of configs/fashion-mnist-cnn.json, 707,688 bytes
    /// (the process's peak RSS grew by 704,600 bytes per sample of EvaluationBatchSize, from 1,000 to 2,000).
    /// </summary>
    public long ForwardBytesPerSample { get; }

    /// <summary>Most bytes the buffers of one evaluation (inference) pass may hold per replica: 256 MiB.</summary>
    public const long EvaluationMemoryBytes = 256L * 1024 * 1024;

    /// <summary>
    /// Samples per evaluation forward pass: <paramref name="maximumSamples"/>, or fewer so that
    /// <paramref name="bytesPerSample"/> (<see cref="ForwardBytesPerSample"/>) times it stays within
    /// <see cref="EvaluationMemoryBytes"/>; at least 1.
    /// </summary>
    public static int EvaluationPassSize(int maximumSamples, long bytesPerSample) =>
        (int)Math.Clamp(EvaluationMemoryBytes / Math.Max(1, bytesPerSample), 1, Math.Max(1, maximumSamples));

    /// <summary>Shape of one input sample.</summary>
    public TensorShape InputShape { get; }

    /// <summary>Shape of one output sample.</summary>
    public TensorShape OutputShape { get; }

    /// <summary>Input features per sample.</summary>
    public int InputSize => InputShape.Size;

    /// <summary>Output features per sample (classes, for a classifier).</summary>
    public int OutputSize => OutputShape.Size;

    /// <summary>The layers in order.</summary>
    public IReadOnlyList<ILayer> Layers { get; }

    /// <summary>Names, shapes and flat offsets of all parameters.</summary>
    public ParameterLayout Layout { get; }

    /// <summary>Each parameter with its place in <see cref="Layout"/>.</summary>
    public IEnumerable<(LayerParameter Parameter, ParameterSegment Segment)> NamedParameters => _parameters;

    /// <summary>Runs every layer: input <c>[InputSize, batch]</c>, output <c>[OutputSize, batch]</c> (owned by the last layer).</summary>
    public Matrix<float> Forward(Matrix<float> input)
    {
        var activation = input;
        for (var i = 0; i < _layers.Length; i++)
        {
            if (_rectifiesInPlace[i])
            {
                var values = activation.ColumnMajorValues();
                TensorPrimitives.Max(values, 0f, values);
                _rectifiedOutputs[i] = activation;
                continue;
            }
            activation = _layers[i].Forward(activation);
        }
        return activation;
    }

    /// <summary>
    /// Back-propagates dLoss/dOutput <c>[OutputSize, batch]</c> down to the first layer with a trainable tensor,
    /// filling the parameter gradients.
    /// </summary>
    public void Backward(Matrix<float> outputGradient)
    {
        if (_firstTrainableLayer < 0) return;
        var gradient = outputGradient;
        for (var i = _layers.Length - 1; i >= Math.Max(0, _firstTrainableLayer); i--)
        {
            if (_rectifiesInPlace[i])
            {
                var values = gradient!.ColumnMajorValues();
                ElementWise.RectifierDerivative(_rectifiedOutputs[i]!.ColumnMajorValues(), values, values, 0f);
                continue;
            }
            gradient = _layers[i].Backward(gradient!, needInputGradient: i > _firstTrainableLayer);
        }
    }

    /// <summary>Training mode (dropout on, batch statistics) or evaluation mode, for every layer; see <see cref="ILayer.SetTraining"/>.</summary>
    public void SetTraining(bool training)
    {
        foreach (var layer in _layers) layer.SetTraining(training);
    }

    /// <summary>
    /// Keys the masks of every <see cref="Dropout"/> layer for the following training passes: column j of their input
    /// <c>[InputSize, batch]</c> is training sample <paramref name="sampleIndices"/>[j] of <paramref name="epoch"/>, and its
    /// mask in the layer at index i is a function of (<paramref name="runSeed"/>, i, <paramref name="epoch"/>, that sample)
    /// only (<see cref="Dropout.SetMaskKeys"/>). Does nothing for a model without dropout; allocates only for a batch
    /// larger than any keyed before.
    /// </summary>
    /// <param name="runSeed">The run's seed (Training:Seed).</param>
    /// <param name="epoch">The epoch (1-based).</param>
    /// <param name="sampleIndices">The training-split index of each column of the next inputs.</param>
    public void SetDropoutKeys(int runSeed, int epoch, ReadOnlySpan<int> sampleIndices)
    {
        for (var i = 0; i < _layers.Length; i++)
            if (_layers[i] is Dropout dropout) dropout.SetMaskKeys(Dropout.LayerSeed(runSeed, i), epoch, sampleIndices);
    }

    /// <summary>
    /// One forward and backward pass on a minibatch: returns the mean loss and leaves the gradient of
    /// the mean loss in each layer (read it with <see cref="CopyGradientsTo"/>).
    /// </summary>
    /// <param name="input">Samples <c>[InputSize, batch]</c>.</param>
    /// <param name="target">Targets <c>[OutputSize, batch]</c>.</param>
    /// <param name="loss">The loss function.</param>
    public double ComputeGradients(Matrix<float> input, Matrix<float> target, ILoss loss)
    {
        var output = Forward(input);
        _lossGradient ??= new MatrixBuffer(OutputSize);
        var outputGradient = _lossGradient.Get(input.ColumnCount);
        var value = loss.Compute(output, target, outputGradient);
        Backward(outputGradient);
        return value;
    }

    /// <summary>Copies a flat parameter vector into the layers.</summary>
    /// <exception cref="ArgumentException">The length differs from <see cref="ParameterLayout.TotalLength"/>.</exception>
    public void LoadParameters(ReadOnlySpan<float> flat)
    {
        CheckLength(flat.Length);
        foreach (var (parameter, segment) in _parameters)
            flat.Slice(segment.Offset, segment.Length).CopyTo(parameter.Value);
    }

    /// <summary>Copies the layers' parameters into a flat vector.</summary>
    /// <exception cref="ArgumentException">The length differs from <see cref="ParameterLayout.TotalLength"/>.</exception>
    public void CopyParametersTo(Span<float> flat)
    {
        CheckLength(flat.Length);
        foreach (var (parameter, segment) in _parameters)
            parameter.Value.CopyTo(flat.Slice(segment.Offset, segment.Length));
    }

    /// <summary>
    /// Writes a worker's report into <c>flat[0, WorkerReportLength)</c>: the gradients of the last backward pass for
    /// the trainable tensors, then the current running statistics (see <see cref="ParameterLayout"/>).
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="flat"/> is shorter than <see cref="ParameterLayout.WorkerReportLength"/>.</exception>
    public void CopyGradientsTo(Span<float> flat)
    {
        if (flat.Length < Layout.WorkerReportLength)
            throw new ArgumentException($"The gradient vector has {flat.Length} elements but the model reports {Layout.WorkerReportLength}.");
        foreach (var (parameter, segment) in _parameters)
        {
            if (segment.Frozen) continue;
            (segment.Role == ParameterRole.RunningStatistic ? parameter.Value : parameter.Gradient)
                .CopyTo(flat.Slice(segment.Offset, segment.Length));
        }
    }

    private void CheckLength(int length)
    {
        if (length != Layout.TotalLength)
            throw new ArgumentException($"The flat vector has {length} elements but the model has {Layout.TotalLength} parameters.");
    }
}
