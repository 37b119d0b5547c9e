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
    private MatrixBuffer? _lossGradient;

    /// <summary>Builds the model and checks that consecutive layer sizes fit.</summary>
    /// <param name="inputSize">Input features per sample.</param>
    /// <param name="layers">Layers in order.</param>
    /// <exception cref="ArgumentException">A layer does not accept its predecessor's output size.</exception>
    public Sequential(int inputSize, IReadOnlyList<ILayer> layers)
    {
        InputSize = inputSize;
        _layers = [.. layers];
        Layers = _layers;
        var size = inputSize;
        foreach (var layer in layers)
            size = layer.OutputSize(size);
        OutputSize = size;
        var named = layers
            .SelectMany((layer, index) => layer.Parameters.Select(p => (Name: $"{index}.{p.Name}", Parameter: p)))
            .ToArray();
        Layout = new ParameterLayout(named.Select(n => (n.Name, n.Parameter.Shape)));
        _parameters = named.Select(n => (n.Parameter, Layout[n.Name])).ToArray();
    }

    /// <summary>Input features per sample.</summary>
    public int InputSize { get; }

    /// <summary>Output features per sample (classes, for a classifier).</summary>
    public int OutputSize { get; }

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
            activation = _layers[i].Forward(activation);
        return activation;
    }

    /// <summary>Back-propagates dLoss/dOutput <c>[OutputSize, batch]</c> through every layer, filling the parameter gradients.</summary>
    public void Backward(Matrix<float> outputGradient)
    {
        var gradient = outputGradient;
        for (var i = _layers.Length - 1; i >= 0; i--)
            gradient = _layers[i].Backward(gradient!, needInputGradient: i > 0);
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

    /// <summary>Copies the gradients of the last backward pass into a flat vector.</summary>
    /// <exception cref="ArgumentException">The length differs from <see cref="ParameterLayout.TotalLength"/>.</exception>
    public void CopyGradientsTo(Span<float> flat)
    {
        CheckLength(flat.Length);
        foreach (var (parameter, segment) in _parameters)
            parameter.Gradient.CopyTo(flat.Slice(segment.Offset, segment.Length));
    }

    private void CheckLength(int length)
    {
        if (length != Layout.TotalLength)
            throw new ArgumentException($"The flat vector has {length} elements but the model has {Layout.TotalLength} parameters.");
    }
}
