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

    /// <summary>Largest tensor accepted: 256 M floats (1 GiB). Anything larger is treated as a corrupt header.</summary>
    public const int MaxCount = 256 << 20;

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

    /// <summary>Reads one header and checks magic, version and size.</summary>
    /// <exception cref="IOException">The peer closed the connection, or the header is not a DistTrain frame.</exception>
    public static Header ReadHeader(Stream stream)
    {
        Span<byte> bytes = stackalloc byte[HeaderSize];
        ReceiveAll(stream, bytes);
        var header = MemoryMarshal.Read<Header>(bytes);
        if (header.Magic != Magic)
            throw new IOException($"data plane: a frame starts with 0x{header.Magic:X8}, not DistTrain's 0x{Magic:X8}; something else is talking to this port.");
        if (header.Version != ProtocolVersion)
            throw new IOException($"data plane: the peer speaks protocol version {header.Version}, this node {ProtocolVersion}; run the same DistTrain version on every node.");
        if (header.Count < 0 || header.Count > MaxCount)
            throw new IOException($"data plane: a frame announces {header.Count} floats (allowed 0..{MaxCount}); the stream is corrupt.");
        return header;
    }

    /// <summary>
    /// Reads frames from <paramref name="stream"/> on a background thread until the connection fails:
    /// for each, <paramref name="bufferFor"/> checks the header and returns the array to read the floats
    /// into (throwing <see cref="IOException"/> to refuse the frame), then <paramref name="deliver"/> gets it.
    /// <paramref name="failed"/> receives the reason the loop ended.
    /// </summary>
    public static void StartReader(Stream stream, string threadName, Func<Header, float[]> bufferFor, Action<Header, float[]> deliver, Action<string> failed) =>
        new Thread(() =>
        {
            try
            {
                while (true)
                {
                    var header = ReadHeader(stream);
                    var buffer = bufferFor(header);
                    ReadValues(stream, buffer);
                    deliver(header, buffer);
                }
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
            {
                failed(e.Message);
            }
        }) { IsBackground = true, Name = threadName }.Start();

    /// <summary>Reads <paramref name="values"/>.Length floats.</summary>
    public static void ReadValues(Stream stream, Span<float> values) => ReceiveAll(stream, MemoryMarshal.AsBytes(values));

    private static void SendAll(Stream stream, ReadOnlySpan<byte> bytes)
    {
        Interlocked.Add(ref _bytesSent, bytes.Length);
        stream.Write(bytes);
    }

    private static void ReceiveAll(Stream stream, Span<byte> bytes)
    {
        Interlocked.Add(ref _bytesReceived, bytes.Length);
        try
        {
            stream.ReadExactly(bytes);
        }
        catch (EndOfStreamException)
        {
            throw new IOException("data plane: the peer closed the connection.");
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
