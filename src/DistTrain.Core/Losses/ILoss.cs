using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Core.Losses;

/// <summary>A loss over a minibatch, reduced by the mean over samples, as PyTorch's default <c>reduction='mean'</c>.</summary>
public interface ILoss
{
    /// <summary>Name for logs and configs.</summary>
    string Name { get; }

    /// <summary>
    /// Computes the mean loss of the batch and writes its gradient with respect to the output.
    /// </summary>
    /// <param name="output">Network output <c>[outputs, batch]</c> (logits for cross-entropy).</param>
    /// <param name="target">Targets <c>[outputs, batch]</c>: one-hot or soft class probabilities for cross-entropy, values for MSE.</param>
    /// <param name="outputGradient">Receives dLoss/dOutput <c>[outputs, batch]</c> of the mean loss.</param>
    /// <returns>The mean loss over the batch.</returns>
    /// <exception cref="ArgumentException">The three matrices differ in shape.</exception>
    double Compute(Matrix<float> output, Matrix<float> target, Matrix<float> outputGradient);
}
