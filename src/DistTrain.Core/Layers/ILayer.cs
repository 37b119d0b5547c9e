using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Core.Layers;

/// <summary>
/// A differentiable layer over activations shaped <c>[features, batch]</c> (column-major: each
/// sample is one contiguous column).
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

    /// <summary>Trainable tensors, in a fixed order; empty for activations.</summary>
    IReadOnlyList<LayerParameter> Parameters { get; }

    /// <summary>Number of output features for a given number of input features.</summary>
    /// <exception cref="ArgumentException">The input size does not fit this layer.</exception>
    int OutputSize(int inputSize);

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
