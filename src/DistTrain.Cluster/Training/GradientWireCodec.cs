using System.Numerics.Tensors;
using DistTrain.Core.Compression;
using DistTrain.Core.Diagnostics;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Training;

/// <summary>
/// A worker's side of Cluster:Compression: prepares the trainable part of each report (<c>[0, trainable)</c>, the gradient) as
/// Deep Gradient Compression's worker does when <see cref="LocalGradientSettings"/> apply (local clipping, then L1 and L2 from
/// the weights the gradient was computed on), encodes it with the worker's <see cref="GradientEncoder"/> and its error-feedback
/// residual, then writes the decoded values back over that part, so the report holds exactly what the parameter server will
/// decode. In cluster mode the data plane sends the encoded message (<see cref="Protocol.GradientComputed.Encoded"/>) instead of
/// the floats; in single-node mode the report is delivered as it is, with the same values. BatchNorm running statistics after
/// the trainable part stay float32.
/// </summary>
/// <remarks>Two message buffers used in turn, as the worker's two loaned reports; nothing is allocated per push.</remarks>
public sealed class GradientWireCodec
{
    private readonly GradientEncoder _encoder;
    private readonly byte[][] _messages;
    private readonly LocalGradientSettings? _local;
    private readonly IReadOnlyList<ParameterGroupRange> _groups;
    private readonly ParameterLayout? _layout;
    private readonly int _clippedPushesToWarn;
    private int _clippedRun; // consecutive pushes clipped by the local clipping
    private (double Norm, double ClipNorm, double LocalClip, int Workers)? _clipped; // the push that completed the run, until its warning is taken
    private int _next;

    /// <summary>Creates the codec for reports whose first <paramref name="trainableLength"/> floats are the gradient, with no
    /// local clipping or regularization.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The length is not positive, or the settings are out of range
    /// (<see cref="GradientEncoder(GradientCompressionSettings, int)"/>).</exception>
    public GradientWireCodec(GradientCompressionSettings settings, int trainableLength) : this(settings, [trainableLength]) { }

    /// <summary>Creates the codec for reports whose gradient part is tensors of <paramref name="trainableTensorLengths"/> floats
    /// laid out back to back (<see cref="ParameterLayout.TrainableTensorLengths"/>), with no local clipping or regularization.</summary>
    /// <exception cref="ArgumentOutOfRangeException">There is no tensor, a length is not positive, or the settings are out of
    /// range (<see cref="GradientEncoder(GradientCompressionSettings, ReadOnlySpan{int})"/>).</exception>
    public GradientWireCodec(GradientCompressionSettings settings, ReadOnlySpan<int> trainableTensorLengths)
    {
        _encoder = new GradientEncoder(settings, trainableTensorLengths);
        _messages = [new byte[_encoder.MessageBytes], new byte[_encoder.MessageBytes]];
        _groups = [];
    }

    /// <summary>Creates the codec for a model's reports: their gradient part is <paramref name="layout"/>'s trainable prefix, whose
    /// tensor names an error message gives.</summary>
    /// <param name="settings">The encoding.</param>
    /// <param name="layout">The model's parameter layout.</param>
    /// <param name="local">What the worker does to each gradient before encoding it; null: nothing.</param>
    /// <param name="clippedPushesToWarn">Consecutive pushes the local clipping clipped before <see cref="TakeClippingWarning"/>
    /// gives its warning (<see cref="ReplicaSettings.ClippedPushesToWarn"/>); 0: never.</param>
    /// <exception cref="ArgumentOutOfRangeException">The model has no trainable parameters, the settings are out of range, or
    /// <paramref name="clippedPushesToWarn"/> is negative.</exception>
    public GradientWireCodec(GradientCompressionSettings settings, ParameterLayout layout, LocalGradientSettings? local = null, int clippedPushesToWarn = 0)
        : this(settings, (layout ?? throw new ArgumentNullException(nameof(layout))).TrainableTensorLengths)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(clippedPushesToWarn);
        _layout = layout;
        _local = local;
        _clippedPushesToWarn = clippedPushesToWarn;
        _groups = local is { Regularizes: true } ? ParameterGroups.Ranges(layout, layout.TrainableLength, local.DecayBiasAndNormParameters) : [];
    }

    /// <summary>The encoder's settings.</summary>
    public GradientCompressionSettings Settings => _encoder.Settings;

    /// <summary>Bytes of every encoded message: <see cref="GradientEncoder.EncodedBytes(GradientCompressionSettings, ReadOnlySpan{int})"/>
    /// of the trainable tensors.</summary>
    public int MessageBytes => _encoder.MessageBytes;

    /// <summary>Bytes a report of <paramref name="reportLength"/> floats takes on the wire: the encoded gradient part plus the
    /// float32 floats after it (frame header excluded).</summary>
    public long WireBytes(int reportLength) => MessageBytes + 4L * (reportLength - _encoder.Length);

    /// <summary>
    /// Prepares <paramref name="report"/>'s gradient part (clipping, L1 and L2, when the codec's <see cref="LocalGradientSettings"/>
    /// ask for them), encodes it and replaces it with its decoded value.
    /// </summary>
    /// <param name="report">The worker's report, <c>[ReportLength]</c>; its first <see cref="GradientEncoder.Length"/>
    /// floats are rewritten.</param>
    /// <param name="weights">The weights the gradient was computed on, at least the trainable length (only that prefix is read);
    /// needed when the codec adds L1 or L2, else ignored.</param>
    /// <param name="workersPerStep">Gradients the parameter server averages into one step (the workers of a round; 1 in Async),
    /// which sets the local clipping norm (<see cref="LocalGradientSettings.LocalClipNorm"/>).</param>
    /// <returns>The encoded message (<see cref="MessageBytes"/> bytes), valid until the call after next.</returns>
    /// <exception cref="ArgumentException">The report is shorter than the trainable length, or the codec adds L1 or L2 and the
    /// weights are shorter.</exception>
    /// <exception cref="GradientOverflowException">Float16: an element would become infinity; the message names its tensor.</exception>
    public byte[] Encode(float[] report, ReadOnlySpan<float> weights = default, int workersPerStep = 1)
    {
        ArgumentNullException.ThrowIfNull(report);
        var length = _encoder.Length;
        if (report.Length < length)
            throw new ArgumentException($"The report has {report.Length} floats; its gradient part alone has {length}.", nameof(report));
        var gradient = report.AsSpan(0, length);
        if (_local is { } local)
        {
            var norm = GradientHealthMonitor.GlobalNorm(gradient);
            var localClip = local.LocalClipNorm(workersPerStep);
            var scale = GradientHealthMonitor.ClipScale(norm, localClip);
            if (scale < 1f)
            {
                TensorPrimitives.Multiply(gradient, scale, gradient);
                Metrics.DistTrainMetrics.RecordClippedStep();
            }
            if (local.ClipNorm > 0) CountClipping(scale < 1f, norm, local.ClipNorm, localClip, workersPerStep);
            if (local.Regularizes)
            {
                if (weights.Length < length)
                    throw new ArgumentException($"The weights have {weights.Length} floats; adding L1 and L2 needs the {length} trainable ones.", nameof(weights));
                Regularization.AddToGradient(weights[..length], gradient, _groups, (float)local.L1, (float)local.L2);
            }
        }
        var message = _messages[_next];
        _next ^= 1;
        try
        {
            _encoder.Encode(gradient, message);
        }
        catch (GradientOverflowException e) when (_layout is not null)
        {
            throw new GradientOverflowException(GradientOverflowException.Describe(Element(e.Index), e.Value, Settings.ErrorFeedback), e.Index, e.Value, e);
        }
        GradientDecoder.Decode(message, gradient);
        return message;
    }

    /// <summary>
    /// The warning, once, when the local clipping clipped the gradient at each of the last <c>clippedPushesToWarn</c> pushes
    /// (the constructor's): the clip, not the gradient, then sets every step's size. It begins with
    /// <see cref="GradientHealthMonitor.ClippingWarningStart"/>, as the parameter server's clipping warning without TopK does
    /// (there the parameter server clips, and its measurements warn). Null before that, and after it was taken.
    /// </summary>
    /// <param name="worker">The worker the codec encodes for, named in the warning.</param>
    public string? TakeClippingWarning(int worker)
    {
        if (_clipped is not { } clipped) return null;
        _clipped = null;
        var (norm, clipNorm, clip, workers) = clipped;
        return string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{GradientHealthMonitor.ClippingWarningStart}Optimizer:GradientClipNorm = {clipNorm:G3} clipped worker {worker}'s gradient at each of its last " +
            $"{_clippedPushesToWarn:N0} pushes (under Cluster:Compression TopK each worker clips its own push, to GradientClipNorm / sqrt({workers} " +
            $"{(workers == 1 ? "gradient" : "gradients")} per step) = {clip:G3}; the norm is now {norm:G3}, {norm / clip:G3} times that), so the clip, not the " +
            $"gradient's size, sets every step: each push is a vector of that norm. If that is not meant, raise GradientClipNorm above " +
            $"{norm * Math.Sqrt(workers):G3} (this norm times the square root of the gradients per step) or set it to 0, and tune Optimizer:LearningRate instead.");
    }

    private void CountClipping(bool clipped, double norm, double clipNorm, double localClip, int workersPerStep)
    {
        if (!double.IsFinite(norm)) return; // a diverging run: its own error says so
        _clippedRun = clipped ? _clippedRun + 1 : 0;
        if (_clippedPushesToWarn > 0 && _clippedRun == _clippedPushesToWarn) _clipped = (norm, clipNorm, localClip, Math.Max(1, workersPerStep));
    }

    /// <summary>"element 12 of tensor '0.weight'" for a flat index into the trainable prefix.</summary>
    private string Element(int index)
    {
        var segment = _layout!.Segments.First(s => index >= s.Offset && index < s.Offset + s.Length);
        return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"element {index - segment.Offset:N0} of tensor '{segment.Name}'");
    }
}
