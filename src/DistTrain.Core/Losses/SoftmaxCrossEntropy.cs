using MathNet.Numerics.LinearAlgebra;
using DistTrain.Core.Layers;

namespace DistTrain.Core.Losses;

/// <summary>
/// Softmax cross-entropy on logits: for each sample <c>-Σ_k t_k log softmax(z)_k</c>, averaged over
/// the batch. Equals PyTorch's <c>F.cross_entropy</c> with class-index targets when the targets are one-hot.
/// </summary>
/// <remarks>
/// The softmax is computed with the maximum logit subtracted, so large logits cannot overflow.
/// Gradient per sample: <c>(softmax(z) - t) · Σ_k t_k / batch</c>, which is <c>(p - t) / batch</c>
/// for targets that sum to one (Bishop, "Pattern Recognition and Machine Learning", eq. 4.109).
/// </remarks>
public sealed class SoftmaxCrossEntropy : ILoss
{
    /// <inheritdoc />
    public string Name => "SoftmaxCrossEntropy";

    /// <inheritdoc />
    public double Compute(Matrix<float> output, Matrix<float> target, Matrix<float> outputGradient)
    {
        LossShapes.Check(output, target, outputGradient);
        var classes = output.RowCount;
        var batch = output.ColumnCount;
        var logits = output.ColumnMajorValues();
        var targets = target.ColumnMajorValues();
        var gradient = outputGradient.ColumnMajorValues();
        var total = 0.0;
        for (var sample = 0; sample < batch; sample++)
        {
            var offset = sample * classes;
            var max = float.NegativeInfinity;
            for (var k = 0; k < classes; k++) max = MathF.Max(max, logits[offset + k]);
            var sumExp = 0.0;
            for (var k = 0; k < classes; k++) sumExp += Math.Exp(logits[offset + k] - max);
            var logSumExp = max + Math.Log(sumExp);
            var targetMass = 0.0;
            for (var k = 0; k < classes; k++)
            {
                var t = targets[offset + k];
                targetMass += t;
                if (t != 0f) total -= t * (logits[offset + k] - logSumExp);
            }
            for (var k = 0; k < classes; k++)
            {
                var probability = Math.Exp(logits[offset + k] - logSumExp);
                gradient[offset + k] = (float)((probability * targetMass - targets[offset + k]) / batch);
            }
        }
        return total / batch;
    }
}
