using System.Globalization;

namespace DistTrain.Core.Compression;

/// <summary>
/// A gradient element is finite in float32 but beyond the range of the 16-bit format it is encoded in (binary16's ±65,504),
/// so it would reach the parameter server as ±infinity and stop training as diverged, naming no cause. The worker refuses to
/// send it instead; the message names the element, its value and the fixes.
/// </summary>
public sealed class GradientOverflowException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">The full message.</param>
    /// <param name="index">The element's index in the encoded vector (the flat trainable prefix).</param>
    /// <param name="value">The value that would overflow: the gradient element, plus its error-feedback residual when kept.</param>
    /// <param name="inner">The exception this one adds context to, or null.</param>
    public GradientOverflowException(string message, int index, float value, Exception? inner = null) : base(message, inner)
    {
        Index = index;
        Value = value;
    }

    /// <summary>The element's index in the encoded vector.</summary>
    public int Index { get; }

    /// <summary>The value that would overflow.</summary>
    public float Value { get; }

    /// <summary>
    /// The message for <paramref name="element"/> (e.g. <c>element 1,234 of tensor '0.weight'</c>) holding
    /// <paramref name="value"/>: the cause, and what to change. Only the encoding fixes an overflow: Float16 workers send
    /// their gradients unclipped (they clip before encoding only under TopK, <see cref="Configuration.TrainingOptions.ClipsOnWorkers"/>),
    /// and a learning rate does not change a gradient computed before any update.
    /// </summary>
    /// <param name="element">Which element, in words.</param>
    /// <param name="value">Its value.</param>
    /// <param name="withResidual">True when the value includes the error-feedback residual.</param>
    public static string Describe(string element, float value, bool withResidual) =>
        $"Gradient {element} is {value.ToString("G7", CultureInfo.InvariantCulture)}{(withResidual ? " (gradient plus error-feedback residual)" : "")}, " +
        "beyond Float16's range of ±65,504: it would reach the parameter server as infinity and stop training as diverged. Set Cluster:Compression " +
        "to BFloat16 (float32's range in 2 bytes) or None (float32). Optimizer:GradientClipNorm does not prevent this: with Float16 the parameter " +
        "server clips after decoding, past the overflow. A lower Optimizer:LearningRate does not change the first step's gradient; it can help only " +
        "when the gradients grew over earlier updates.";
}
