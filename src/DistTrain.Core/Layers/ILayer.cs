using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Core.Layers;

/// <summary>
/// A differentiable layer over activations shaped <c>[features, batch]</c> (column-major: each
/// sample is one contiguous column, laid out as <see cref="TensorShape"/> describes).
/// </summary>
/// <remarks>
/// Contract: <see cref="Forward"/> keeps what <see cref="Backward"/> needs, so calls alternate
/// forward, backward on the same batch. The returned matrices belong to the layer and are
/// overwritten by the next call; callers copy what they keep. The input passed to
/// <see cref="Forward"/> must not change before <see cref="Backward"/>.
/// </remarks>
public interface ILayer
{
    /// <summary>Short name for logs and errors, such as <c>Dense(784→256)</c>.</summary>
    string Description { get; }

    /// <summary>Tensors (trainable parameters and running statistics), in a fixed order; empty for activations.</summary>
    IReadOnlyList<LayerParameter> Parameters { get; }

    /// <summary>The shape of one output sample for the given input shape.</summary>
    /// <exception cref="ArgumentException">The input shape does not fit this layer; the message says what it expects.</exception>
    TensorShape OutputShape(TensorShape input);

    /// <summary>
    /// Switches between training mode (the default: dropout masks, batch statistics) and evaluation mode
    /// (dropout off, running statistics), as PyTorch's <c>module.train()</c> / <c>module.eval()</c>.
    /// </summary>
    void SetTraining(bool training) { }

    /// <summary>
    /// Bytes of buffers that a forward pass keeps for each sample of its batch, for an input of shape
    /// <paramref name="input"/>: the output, and workspaces that grow with the batch. Workspaces of fixed size are not
    /// counted. Used to size evaluation passes (<see cref="Models.Sequential.ForwardBytesPerSample"/>).
    /// </summary>
    long ForwardBytesPerSample(TensorShape input) => sizeof(float) * (long)OutputShape(input).Size;

    /// <summary>Computes the output <c>[out_features, batch]</c> for the input <c>[in_features, batch]</c>.</summary>
    Matrix<float> Forward(Matrix<float> input);

    /// <summary>
    /// Given dLoss/dOutput <c>[out_features, batch]</c>, writes the parameter gradients into
    /// <see cref="LayerParameter.Gradient"/> (overwriting them) and returns dLoss/dInput
    /// <c>[in_features, batch]</c>, or null when <paramref name="needInputGradient"/> is false (the first
    /// layer: nothing consumes it, and skipping it saves a third of a dense layer's backward work).
    /// </summary>
    Matrix<float>? Backward(Matrix<float> outputGradient, bool needInputGradient = true);
}
