using System.Net.Sockets;
using System.Runtime.InteropServices;
using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// The data plane's wire format: one fixed 56-byte little-endian header, then <see cref="Header.Count"/>
/// raw little-endian floats; or, for a compressed gradient (Cluster:Compression), <see cref="Header.PayloadBytes"/> bytes
/// of the encoded gradient (<see cref="Core.Compression.GradientEncoder"/>) followed by the floats after the trainable
/// part (BatchNorm running statistics). Weights go parameter server → worker, gradients worker → parameter server,
/// on a connection opened by <see cref="DataPlaneHello"/> (over TLS unless Cluster:Tls is false). The floats are
/// read straight into the receiver's buffer and written straight from the sender's, so a 1 MB tensor costs one
/// copy into and out of the kernel (and with TLS one encryption) on each side.
/// </summary>
internal static class TensorFrame
{
    /// <summary>"DTDP" in little-endian bytes: guards against a stranger on the port.</summary>
    public const uint Magic = 0x50445444;

    /// <summary>Bumped when the layout changes; both ends must agree.</summary>
    public const byte ProtocolVersion = 3;

    /// <summary>Frame types: float32 weights, float32 gradient, and a gradient encoded by Cluster:Compression.</summary>
    public const byte WeightsType = 1, GradientType = 2, CompressedGradientType = 3;

    /// <summary>Largest tensor a frame may carry: 2^28 - 1 floats (just under 1 GiB). A header announcing more is refused
    /// before anything is allocated, whatever the model; so is one announcing any count other than the model's.</summary>
    public const int MaxCount = (1 << 28) - 1;

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    public struct Header
    {
        public uint Magic;
        public byte Type;
        public byte Version;
        public ushort Reserved;
        public int Epoch;
        public int Round;
        public long WeightsVersion;
        public int WorkerIndex;
        public int SampleCount;
        public double LossSum;
        public double ComputeSeconds;
        public int Count;
        /// <summary>A compressed gradient's encoded bytes (the floats after the trainable part follow them); 0 otherwise.</summary>
        public int PayloadBytes;
    }

    public static readonly int HeaderSize = Marshal.SizeOf<Header>();

    private static long _bytesSent;
    private static long _bytesReceived;

    /// <summary>Bytes this process wrote to data-plane sockets (headers and tensors), since start.</summary>
    public static long BytesSent => Interlocked.Read(ref _bytesSent);

    /// <summary>Bytes this process read from data-plane sockets, since start.</summary>
    public static long BytesReceived => Interlocked.Read(ref _bytesReceived);

    /// <summary>A weights frame's header; its worker field carries the shard whose minibatch the receiver computes (-1: its own).</summary>
    public static Header For(WeightsUpdated m) => new()
    {
        Magic = Magic, Type = WeightsType, Version = ProtocolVersion, Epoch = m.Epoch, Round = m.Round, WeightsVersion = m.Version,
        WorkerIndex = m.Shard, Count = m.Weights.Length,
    };

    /// <summary>A gradient frame's header: <see cref="CompressedGradientType"/> with the encoded length when the message
    /// carries <see cref="GradientComputed.Encoded"/>; its count is always the whole report's float count.</summary>
    public static Header For(GradientComputed m) => new()
    {
        Magic = Magic, Type = m.Encoded is null ? GradientType : CompressedGradientType, Version = ProtocolVersion, Epoch = m.Epoch, Round = m.Round,
        WeightsVersion = m.Version, WorkerIndex = m.WorkerIndex, SampleCount = m.SampleCount, LossSum = m.LossSum, ComputeSeconds = m.ComputeSeconds,
        Count = m.Gradient.Length, PayloadBytes = m.Encoded?.Length ?? 0,
    };

    /// <summary>Writes the header and the floats; blocks until the kernel took them.</summary>
    public static void Write(Stream stream, Header header, ReadOnlySpan<float> values) => Write(stream, header, [], values);

    /// <summary>Writes the header, then <paramref name="payload"/> (a compressed gradient's encoded bytes), then the floats.</summary>
    public static void Write(Stream stream, Header header, ReadOnlySpan<byte> payload, ReadOnlySpan<float> values)
    {
        Span<byte> bytes = stackalloc byte[HeaderSize];
        MemoryMarshal.Write(bytes, in header);
        SendAll(stream, bytes);
        if (!payload.IsEmpty) SendAll(stream, payload);
        SendAll(stream, MemoryMarshal.AsBytes(values));
    }

    /// <summary>Reads one header (<see cref="HeaderSize"/> bytes into the stack) and checks it with <see cref="ParseHeader"/>.</summary>
    /// <param name="stream">The connection's stream (TLS, or the socket's own).</param>
    /// <param name="expectedType">The frame type the reader accepts (<see cref="WeightsType"/> or <see cref="GradientType"/>).</param>
    /// <param name="expectedCount">The float count the reader accepts: the model's length.</param>
    /// <param name="peer">The remote address, for messages.</param>
    /// <exception cref="IOException">The peer closed the connection, or the header is refused; the message names the peer.</exception>
    /// <param name="expectedPayloadBytes">For <see cref="CompressedGradientType"/>: the encoded bytes the reader's
    /// Cluster:Compression gives (<see cref="Core.Compression.GradientEncoder.EncodedBytes"/>); 0 otherwise.</param>
    public static Header ReadHeader(Stream stream, byte expectedType, int expectedCount, string peer, int expectedPayloadBytes = 0)
    {
        Span<byte> bytes = stackalloc byte[HeaderSize];
        ReceiveAll(stream, bytes, peer);
        return ParseHeader(bytes, expectedType, expectedCount, peer, expectedPayloadBytes);
    }

    /// <summary>
    /// Decodes a frame header and checks it before anything is allocated for its floats: DistTrain's magic number, this
    /// protocol version, the frame type the reader expects, a float count of exactly <paramref name="expectedCount"/>
    /// (the model's length) and at most <see cref="MaxCount"/>, no negative sample count, and for a compressed gradient
    /// exactly <paramref name="expectedPayloadBytes"/> encoded bytes (0 for the other types).
    /// </summary>
    /// <param name="bytes">At least <see cref="HeaderSize"/> bytes, as received.</param>
    /// <param name="expectedType">The frame type the reader accepts (<see cref="WeightsType"/>, <see cref="GradientType"/>).</param>
    /// <param name="expectedCount">The float count the reader accepts: the model's length.</param>
    /// <param name="peer">The remote address, for the message.</param>
    /// <param name="expectedPayloadBytes">For <see cref="CompressedGradientType"/>: the encoded bytes this node's
    /// Cluster:Compression gives; 0 otherwise.</param>
    /// <exception cref="IOException">The header is refused; the message names the peer, what it sent and what was expected.</exception>
    public static Header ParseHeader(ReadOnlySpan<byte> bytes, byte expectedType, int expectedCount, string peer, int expectedPayloadBytes = 0)
    {
        if (bytes.Length < HeaderSize)
            throw new IOException($"data plane: {peer} sent a {bytes.Length}-byte frame header; a header has {HeaderSize} bytes.");
        var header = MemoryMarshal.Read<Header>(bytes);
        if (header.Magic != Magic)
            throw new IOException($"data plane: {peer} sent a frame starting with 0x{header.Magic:X8}, not DistTrain's 0x{Magic:X8}; something else is talking to this port.");
        if (header.Version != ProtocolVersion)
            throw new IOException($"data plane: {peer} speaks protocol version {header.Version}, this node {ProtocolVersion}; run the same DistTrain version on every node.");
        if (header.Type != expectedType)
            throw new IOException($"data plane: {peer} sent a {TypeName(header.Type)} frame where a {TypeName(expectedType)} frame belongs; the connection is closed."
                + (IsGradient(header.Type) && IsGradient(expectedType) ? " Every node must use the same Cluster:Compression." : ""));
        if (header.Count < 0 || header.Count > MaxCount)
            throw new IOException($"data plane: {peer} announced a {TypeName(header.Type)} of {header.Count} floats (allowed 0 to {MaxCount}); refused before allocating, the connection is closed.");
        if (header.Count != expectedCount)
            throw new IOException($"data plane: {peer} announced a {TypeName(header.Type)} of {header.Count} floats; this model's tensors have {expectedCount}. Refused before allocating, the connection is closed: the peer runs another model or is not a DistTrain node.");
        if (header.SampleCount < 0)
            throw new IOException($"data plane: {peer} sent a {TypeName(header.Type)} with sample count {header.SampleCount}; counts are never negative.");
        var payloadBytes = header.Type == CompressedGradientType ? expectedPayloadBytes : 0;
        if (header.PayloadBytes != payloadBytes)
            throw new IOException($"data plane: {peer} announced a {TypeName(header.Type)} with {header.PayloadBytes} encoded bytes where {payloadBytes} belong"
                + (header.Type == CompressedGradientType ? " with this node's Cluster:Compression; every node must use the same Cluster:Compression and Cluster:TopKRatio" : "")
                + ". Refused before allocating, the connection is closed.");
        return header;
    }

    private static string TypeName(byte type) => type switch
    {
        WeightsType => "weights",
        GradientType => "gradient",
        CompressedGradientType => "compressed gradient",
        _ => $"type-{type}",
    };

    private static bool IsGradient(byte type) => type is GradientType or CompressedGradientType;

    /// <summary>
    /// Reads frames from <paramref name="connection"/> on a background thread until the connection fails: each header is
    /// checked with <see cref="ParseHeader"/> against <paramref name="expectedType"/> and <paramref name="expectedCount"/>,
    /// then <paramref name="bufferFor"/> returns the array of that length to read the floats into, then
    /// <paramref name="deliver"/> gets it. <paramref name="failed"/> receives the reason the loop ended (naming the peer).
    /// With <paramref name="compressed"/>, the reader expects <see cref="CompressedGradientType"/> frames and decodes each
    /// into the buffer (<see cref="CompressedGradientReader"/>); a malformed encoding ends the loop like a bad header.
    /// </summary>
    public static void StartReader(DataPlaneConnection connection, string threadName, byte expectedType, int expectedCount,
        Func<Header, float[]> bufferFor, Action<Header, float[]> deliver, Action<string> failed, CompressedGradientReader? compressed = null) =>
        new Thread(() =>
        {
            try
            {
                var type = compressed is null ? expectedType : CompressedGradientType;
                var payloadBytes = compressed?.MessageBytes ?? 0;
                while (true)
                {
                    var header = ReadHeader(connection.Stream, type, expectedCount, connection.Peer, payloadBytes);
                    var buffer = bufferFor(header);
                    if (compressed is null) ReadValues(connection.Stream, buffer, connection.Peer);
                    else compressed.Read(connection.Stream, buffer, connection.Peer);
                    deliver(header, buffer);
                }
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
            {
                failed(e.Message);
            }
            catch (Exception e)
            {
                // Anything else would end the process from this background thread: the connection closes instead.
                failed($"data plane: reading from {connection.Peer} failed unexpectedly ({e.GetType().Name}: {e.Message}); the connection is closed.");
            }
        }) { IsBackground = true, Name = threadName }.Start();

    /// <summary>Reads <paramref name="bytes"/>.Length bytes.</summary>
    /// <exception cref="IOException">The peer (<paramref name="peer"/>, for the message) closed the connection first.</exception>
    public static void ReadBytes(Stream stream, Span<byte> bytes, string peer) => ReceiveAll(stream, bytes, peer);

    /// <summary>Reads <paramref name="values"/>.Length floats.</summary>
    /// <exception cref="IOException">The peer (<paramref name="peer"/>, for the message) closed the connection first.</exception>
    public static void ReadValues(Stream stream, Span<float> values, string peer) => ReceiveAll(stream, MemoryMarshal.AsBytes(values), peer);

    private static void SendAll(Stream stream, ReadOnlySpan<byte> bytes)
    {
        Interlocked.Add(ref _bytesSent, bytes.Length);
        stream.Write(bytes);
    }

    private static void ReceiveAll(Stream stream, Span<byte> bytes, string peer)
    {
        Interlocked.Add(ref _bytesReceived, bytes.Length);
        try
        {
            stream.ReadExactly(bytes);
        }
        catch (EndOfStreamException)
        {
            throw new IOException($"data plane: {peer} closed the connection.");
        }
    }

    /// <summary>Writes a frame; on a broken connection returns the reason instead of throwing.</summary>
    public static string? TryWrite(DataPlaneConnection? connection, Header header, ReadOnlySpan<float> values) => TryWrite(connection, header, [], values);

    /// <summary>Writes a frame with a payload before its floats (<see cref="Write(Stream, Header, ReadOnlySpan{byte}, ReadOnlySpan{float})"/>);
    /// on a broken connection returns the reason instead of throwing.</summary>
    public static string? TryWrite(DataPlaneConnection? connection, Header header, ReadOnlySpan<byte> payload, ReadOnlySpan<float> values)
    {
        try
        {
            Write((connection ?? throw new ObjectDisposedException("data plane connection")).Stream, header, payload, values);
            return null;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
        {
            return e.Message;
        }
    }

    /// <summary>TCP settings for 1 MB tensors: no Nagle delay, buffers that hold a whole tensor (Linux caps them at net.core.wmem_max).</summary>
    public static void Tune(Socket socket)
    {
        socket.NoDelay = true;
        socket.SendBufferSize = 4 << 20;
        socket.ReceiveBufferSize = 4 << 20;
    }
}
