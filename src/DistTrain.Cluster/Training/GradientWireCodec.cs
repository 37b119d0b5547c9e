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
    /// <exception cref="ArgumentOutOfRangeException">The model has no trainable parameters, or the settings are out of range.</exception>
    public GradientWireCodec(GradientCompressionSettings settings, ParameterLayout layout, LocalGradientSettings? local = null)
        : this(settings, (layout ?? throw new ArgumentNullException(nameof(layout))).TrainableTensorLengths)
    {
        _layout = layout;
        _local = local;
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
            var scale = GradientHealthMonitor.ClipScale(GradientHealthMonitor.GlobalNorm(gradient), local.LocalClipNorm(workersPerStep));
            if (scale < 1f)
            {
                TensorPrimitives.Multiply(gradient, scale, gradient);
                Metrics.DistTrainMetrics.RecordClippedStep();
            }
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

    /// <summary>"element 12 of tensor '0.weight'" for a flat index into the trainable prefix.</summary>
    private string Element(int index)
    {
        var segment = _layout!.Segments.First(s => index >= s.Offset && index < s.Offset + s.Length);
        return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"element {index - segment.Offset:N0} of tensor '{segment.Name}'");
    }
}
