using DistTrain.Core.Compression;

namespace DistTrain.Cluster.Training;

/// <summary>
/// A worker's side of Cluster:Compression: encodes the trainable part of each report (<c>[0, trainable)</c>, the
/// gradient) with the worker's <see cref="GradientEncoder"/> and its error-feedback residual, then writes the decoded
/// values back over that part, so the report holds exactly what the parameter server will decode. In cluster mode the
/// data plane sends the encoded message (<see cref="Protocol.GradientComputed.Encoded"/>) instead of the floats; in single-node mode the
/// report is delivered as it is, with the same values. BatchNorm running statistics after the trainable part stay float32.
/// </summary>
/// <remarks>Two message buffers used in turn, as the worker's two loaned reports; nothing is allocated per push.</remarks>
public sealed class GradientWireCodec
{
    private readonly GradientEncoder _encoder;
    private readonly byte[][] _messages;
    private int _next;

    /// <summary>Creates the codec for reports whose first <paramref name="trainableLength"/> floats are the gradient.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The length is not positive, or the settings are out of range
    /// (<see cref="GradientEncoder(GradientCompressionSettings, int)"/>).</exception>
    public GradientWireCodec(GradientCompressionSettings settings, int trainableLength)
    {
        _encoder = new GradientEncoder(settings, trainableLength);
        _messages = [new byte[_encoder.MessageBytes], new byte[_encoder.MessageBytes]];
    }

    /// <summary>The encoder's settings.</summary>
    public GradientCompressionSettings Settings => _encoder.Settings;

    /// <summary>Bytes of every encoded message: <see cref="GradientEncoder.EncodedBytes"/> of the trainable length.</summary>
    public int MessageBytes => _encoder.MessageBytes;

    /// <summary>Bytes a report of <paramref name="reportLength"/> floats takes on the wire: the encoded gradient part plus the
    /// float32 floats after it (frame header excluded).</summary>
    public long WireBytes(int reportLength) => MessageBytes + 4L * (reportLength - _encoder.Length);

    /// <summary>
    /// Encodes <paramref name="report"/>'s gradient part and replaces it with its decoded value.
    /// </summary>
    /// <param name="report">The worker's report, <c>[ReportLength]</c>; its first <see cref="GradientEncoder.Length"/>
    /// floats are rewritten.</param>
    /// <returns>The encoded message (<see cref="MessageBytes"/> bytes), valid until the call after next.</returns>
    /// <exception cref="ArgumentException">The report is shorter than the trainable length.</exception>
    public byte[] Encode(float[] report)
    {
        ArgumentNullException.ThrowIfNull(report);
        if (report.Length < _encoder.Length)
            throw new ArgumentException($"The report has {report.Length} floats; its gradient part alone has {_encoder.Length}.", nameof(report));
        var message = _messages[_next];
        _next ^= 1;
        var gradient = report.AsSpan(0, _encoder.Length);
        _encoder.Encode(gradient, message);
        GradientDecoder.Decode(message, gradient);
        return message;
    }
}
