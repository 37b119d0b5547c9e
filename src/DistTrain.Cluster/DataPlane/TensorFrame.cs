using System.Net.Sockets;
using System.Runtime.InteropServices;
using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// The data plane's wire format: one fixed 56-byte little-endian header, then <see cref="Header.Count"/>
/// raw little-endian floats. Weights go parameter server → worker, gradients worker → parameter server,
/// on a connection opened by <see cref="DataPlaneHello"/> (over TLS unless Cluster:Tls is false). The floats are
/// read straight into the receiver's buffer and written straight from the sender's, so a 1 MB tensor costs one
/// copy into and out of the kernel (and with TLS one encryption) on each side.
/// </summary>
internal static class TensorFrame
{
    /// <summary>"DTDP" in little-endian bytes: guards against a stranger on the port.</summary>
    public const uint Magic = 0x50445444;

    /// <summary>Bumped when the layout changes; both ends must agree.</summary>
    public const byte ProtocolVersion = 2;

    public const byte WeightsType = 1, GradientType = 2;

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
        public int Reserved2;
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

    public static Header For(GradientComputed m) => new()
    {
        Magic = Magic, Type = GradientType, Version = ProtocolVersion, Epoch = m.Epoch, Round = m.Round, WeightsVersion = m.Version,
        WorkerIndex = m.WorkerIndex, SampleCount = m.SampleCount, LossSum = m.LossSum, ComputeSeconds = m.ComputeSeconds,
        Count = m.Gradient.Length,
    };

    /// <summary>Writes the header and the floats; blocks until the kernel took them.</summary>
    public static void Write(Stream stream, Header header, ReadOnlySpan<float> values)
    {
        Span<byte> bytes = stackalloc byte[HeaderSize];
        MemoryMarshal.Write(bytes, in header);
        SendAll(stream, bytes);
        SendAll(stream, MemoryMarshal.AsBytes(values));
    }

    /// <summary>Reads one header (<see cref="HeaderSize"/> bytes into the stack) and checks it with <see cref="ParseHeader"/>.</summary>
    /// <param name="stream">The connection's stream (TLS, or the socket's own).</param>
    /// <param name="expectedType">The frame type the reader accepts (<see cref="WeightsType"/> or <see cref="GradientType"/>).</param>
    /// <param name="expectedCount">The float count the reader accepts: the model's length.</param>
    /// <param name="peer">The remote address, for messages.</param>
    /// <exception cref="IOException">The peer closed the connection, or the header is refused; the message names the peer.</exception>
    public static Header ReadHeader(Stream stream, byte expectedType, int expectedCount, string peer)
    {
        Span<byte> bytes = stackalloc byte[HeaderSize];
        ReceiveAll(stream, bytes, peer);
        return ParseHeader(bytes, expectedType, expectedCount, peer);
    }

    /// <summary>
    /// Decodes a frame header and checks it before anything is allocated for its floats: DistTrain's magic number, this
    /// protocol version, the frame type the reader expects, a float count of exactly <paramref name="expectedCount"/>
    /// (the model's length) and at most <see cref="MaxCount"/>, and no negative sample count.
    /// </summary>
    /// <param name="bytes">At least <see cref="HeaderSize"/> bytes, as received.</param>
    /// <param name="expectedType">The frame type the reader accepts (<see cref="WeightsType"/>, <see cref="GradientType"/>).</param>
    /// <param name="expectedCount">The float count the reader accepts: the model's length.</param>
    /// <param name="peer">The remote address, for the message.</param>
    /// <exception cref="IOException">The header is refused; the message names the peer, what it sent and what was expected.</exception>
    public static Header ParseHeader(ReadOnlySpan<byte> bytes, byte expectedType, int expectedCount, string peer)
    {
        if (bytes.Length < HeaderSize)
            throw new IOException($"data plane: {peer} sent a {bytes.Length}-byte frame header; a header has {HeaderSize} bytes.");
        var header = MemoryMarshal.Read<Header>(bytes);
        if (header.Magic != Magic)
            throw new IOException($"data plane: {peer} sent a frame starting with 0x{header.Magic:X8}, not DistTrain's 0x{Magic:X8}; something else is talking to this port.");
        if (header.Version != ProtocolVersion)
            throw new IOException($"data plane: {peer} speaks protocol version {header.Version}, this node {ProtocolVersion}; run the same DistTrain version on every node.");
        if (header.Type != expectedType)
            throw new IOException($"data plane: {peer} sent a {TypeName(header.Type)} frame where a {TypeName(expectedType)} frame belongs; the connection is closed.");
        if (header.Count < 0 || header.Count > MaxCount)
            throw new IOException($"data plane: {peer} announced a {TypeName(header.Type)} of {header.Count} floats (allowed 0 to {MaxCount}); refused before allocating, the connection is closed.");
        if (header.Count != expectedCount)
            throw new IOException($"data plane: {peer} announced a {TypeName(header.Type)} of {header.Count} floats; this model's tensors have {expectedCount}. Refused before allocating, the connection is closed: the peer runs another model or is not a DistTrain node.");
        if (header.SampleCount < 0)
            throw new IOException($"data plane: {peer} sent a {TypeName(header.Type)} with sample count {header.SampleCount}; counts are never negative.");
        return header;
    }

    private static string TypeName(byte type) => type switch
    {
        WeightsType => "weights",
        GradientType => "gradient",
        _ => $"type-{type}",
    };

    /// <summary>
    /// Reads frames from <paramref name="connection"/> on a background thread until the connection fails: each header is
    /// checked with <see cref="ParseHeader"/> against <paramref name="expectedType"/> and <paramref name="expectedCount"/>,
    /// then <paramref name="bufferFor"/> returns the array of that length to read the floats into, then
    /// <paramref name="deliver"/> gets it. <paramref name="failed"/> receives the reason the loop ended (naming the peer).
    /// </summary>
    public static void StartReader(DataPlaneConnection connection, string threadName, byte expectedType, int expectedCount,
        Func<Header, float[]> bufferFor, Action<Header, float[]> deliver, Action<string> failed) =>
        new Thread(() =>
        {
            try
            {
                while (true)
                {
                    var header = ReadHeader(connection.Stream, expectedType, expectedCount, connection.Peer);
                    var buffer = bufferFor(header);
                    ReadValues(connection.Stream, buffer, connection.Peer);
                    deliver(header, buffer);
                }
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
            {
                failed(e.Message);
            }
        }) { IsBackground = true, Name = threadName }.Start();

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
    public static string? TryWrite(DataPlaneConnection? connection, Header header, ReadOnlySpan<float> values)
    {
        try
        {
            Write((connection ?? throw new ObjectDisposedException("data plane connection")).Stream, header, values);
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
