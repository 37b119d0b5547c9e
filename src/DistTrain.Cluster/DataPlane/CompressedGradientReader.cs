using DistTrain.Core.Compression;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// The parameter server's side of Cluster:Compression for one worker connection: reads a
/// <see cref="TensorFrame.CompressedGradientType"/> frame's body (the encoded gradient, then the report's floats after
/// the trainable part) into a dense float32 report. One instance per reader thread; its byte buffer is reused.
/// </summary>
/// <remarks>
/// The parameter server's reader (<see cref="CompressedGradientReader(GradientCompressionSettings, ReadOnlySpan{int})"/>) takes
/// messages of exactly the size its settings give. A shard node's (<see cref="ForSlice"/>) takes a worker's cut of the message
/// for its slice (<see cref="GradientMessageSlice"/>) of its own kind only, whose size varies under TopK: at most
/// <see cref="MessageBytes"/> (<see cref="VariableSize"/>), each frame announcing its own, and the decoder checks that the cut
/// is whole and consistent.
/// </remarks>
public sealed class CompressedGradientReader
{
    private readonly byte[] _message;
    private readonly int _trainableLength;
    private readonly GradientCompression? _kind; // a shard node's: the one kind its cuts may have

    /// <summary>Creates the reader for gradients made of trainable tensors of <paramref name="trainableTensorLengths"/> floats.</summary>
    /// <param name="settings">This node's Cluster:Compression settings (with TopKRatio and TopKScope); every node must use the same.</param>
    /// <param name="trainableTensorLengths">Floats of each tensor of a report's gradient part, in order
    /// (<see cref="Core.Tensors.ParameterLayout.TrainableTensorLengths"/>); under TopK they set the count a message must carry.</param>
    /// <exception cref="ArgumentOutOfRangeException">There is no tensor, a length is not positive, or the settings are out of range.</exception>
    public CompressedGradientReader(GradientCompressionSettings settings, ReadOnlySpan<int> trainableTensorLengths)
    {
        ArgumentNullException.ThrowIfNull(settings);
        MessageBytes = GradientEncoder.EncodedBytes(settings, trainableTensorLengths);
        _message = new byte[MessageBytes];
        foreach (var length in trainableTensorLengths) _trainableLength += length;
    }

    private CompressedGradientReader(CompressedSlices slices, int trainableLength)
    {
        ArgumentNullException.ThrowIfNull(slices);
        _trainableLength = trainableLength;
        _kind = slices.Kind;
        MessageBytes = GradientMessageSlice.MostBytes(slices.Kind, trainableLength, slices.MostPicks);
        _message = new byte[MessageBytes];
        VariableSize = slices.Kind == GradientCompression.TopK;
    }

    /// <summary>The reader of a shard node for a worker's cuts (<see cref="GradientMessageSlice.Cut"/>) of its slice: cuts of
    /// <paramref name="slices"/>' kind only, of exactly their size for the dense kinds, and for TopK of any size up to
    /// <see cref="GradientMessageSlice.MostBytes"/> (<see cref="VariableSize"/>).</summary>
    /// <param name="slices">What the run's workers send (this node's Cluster:Compression).</param>
    /// <param name="trainableLength">Trainable elements of the shard's slice (<see cref="Training.ParameterShard.TrainableLength"/>):
    /// a cut's dense length; the slice's floats after them (the last shard's running statistics) follow as float32.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="trainableLength"/> is negative.</exception>
    public static CompressedGradientReader ForSlice(CompressedSlices slices, int trainableLength) => new(slices, trainableLength);

    /// <summary>Bytes of every encoded gradient a frame must announce (<see cref="TensorFrame.Header.PayloadBytes"/>); with
    /// <see cref="VariableSize"/>, the most a frame may announce.</summary>
    public int MessageBytes { get; }

    /// <summary>True for a shard node's reader of TopK cuts (<see cref="ForSlice"/>): each frame announces its encoding's size,
    /// up to <see cref="MessageBytes"/>.</summary>
    public bool VariableSize { get; }

    /// <summary>Reads one frame body from <paramref name="stream"/> into <paramref name="report"/>.</summary>
    /// <param name="stream">The connection, positioned after a header that <see cref="TensorFrame.ParseHeader"/> accepted.</param>
    /// <param name="report">The dense report, <c>[ReportLength]</c>: the decoded gradient (TopK's unsent elements zero), then the floats sent as they are.</param>
    /// <param name="peer">The remote address, for messages.</param>
    /// <exception cref="IOException">The peer closed the connection, or the encoding is malformed (the message names the
    /// peer and the problem); nothing is delivered then.</exception>
    /// <param name="messageBytes">The encoding's size the frame announced (<see cref="TensorFrame.Header.PayloadBytes"/>), which
    /// <see cref="TensorFrame.ParseHeader"/> checked against <see cref="MessageBytes"/>.</param>
    public void Read(Stream stream, float[] report, string peer, int messageBytes)
    {
        if (messageBytes < 0 || messageBytes > MessageBytes)
            throw new IOException($"data plane: {peer} announced a compressed gradient of {messageBytes} bytes; at most {MessageBytes} belong. The connection is closed.");
        var message = _message.AsSpan(0, messageBytes);
        TensorFrame.ReadBytes(stream, message, peer);
        if (_kind is { } kind && message.Length > 0 && message[0] != (byte)kind)
            throw new IOException($"data plane: {peer} sent a gradient slice encoded as {KindName(message[0])}, and this shard node's Cluster:Compression is {kind}: " +
                "every node must use the same Cluster:Compression. The connection is closed.");
        try
        {
            GradientDecoder.Decode(message, report.AsSpan(0, _trainableLength));
        }
        catch (InvalidDataException e)
        {
            throw new IOException($"data plane: {peer}: {e.Message} The connection is closed.", e);
        }
        TensorFrame.ReadValues(stream, report.AsSpan(_trainableLength), peer);
    }

    private static string KindName(byte kind) => kind <= (byte)GradientCompression.TopK ? ((GradientCompression)kind).ToString() : $"kind {kind} (unknown)";

    /// <summary>Reads one frame body from a shared-memory slot into <paramref name="report"/>: the encoding is copied out
    /// before it is decoded, so a peer that rewrites the slot meanwhile cannot make the decoder see two versions.</summary>
    /// <param name="body">The slot's bytes (at least the body's).</param>
    /// <param name="report">The dense report, <c>[ReportLength]</c>, as in <see cref="Read(Stream, float[], string, int)"/>.</param>
    /// <param name="peer">The remote address, for messages.</param>
    /// <returns>Bytes of the body: the encoding and the floats after it.</returns>
    /// <exception cref="IOException">The body does not fit the slot, or the encoding is malformed.</exception>
    /// <exception cref="InvalidOperationException">The reader is a shard node's (<see cref="ForSlice"/>): its connections
    /// negotiate no shared memory.</exception>
    public int Read(ReadOnlySpan<byte> body, float[] report, string peer)
    {
        if (_kind is not null) throw new InvalidOperationException("A shard node's connections carry no shared memory; its compressed slices come on the stream.");
        var rest = System.Runtime.InteropServices.MemoryMarshal.AsBytes(report.AsSpan(_trainableLength));
        var bodyBytes = MessageBytes + rest.Length;
        if (bodyBytes > body.Length)
            throw new IOException($"data plane: {peer} announced a compressed body of {bodyBytes} bytes in a shared-memory slot of {body.Length}; the connection is closed.");
        body[..MessageBytes].CopyTo(_message);
        try
        {
            GradientDecoder.Decode(_message, report.AsSpan(0, _trainableLength));
        }
        catch (InvalidDataException e)
        {
            throw new IOException($"data plane: {peer}: {e.Message} The connection is closed.", e);
        }
        body.Slice(MessageBytes, rest.Length).CopyTo(rest);
        return bodyBytes;
    }
}
