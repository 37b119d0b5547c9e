using System.Buffers.Binary;
using System.Security.Cryptography;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// The first bytes a worker sends on a data-plane connection (after TLS, when on): which worker it is, the length of
/// its tensors, and the one-time token the job host gave that registration over Akka (<c>WorkerAccepted.DataToken</c>),
/// so only the node that registered as a worker can take its place on the data plane. Fixed 48 bytes, little-endian:
/// magic "DTHS", version, 3 reserved bytes, worker index, parameter count, 32-byte token.
/// </summary>
/// <param name="WorkerIndex">The worker index the job host gave.</param>
/// <param name="ParameterCount">Floats per weights tensor on the worker's side.</param>
/// <param name="Token">The registration's token, <see cref="TokenBytes"/> bytes.</param>
internal sealed record DataPlaneHello(int WorkerIndex, int ParameterCount, byte[] Token)
{
    /// <summary>"DTHS" in little-endian bytes.</summary>
    public const uint Magic = 0x53485444;

    /// <summary>Bumped when the hello's layout changes.</summary>
    public const byte Version = 1;

    /// <summary>Bytes of a registration token.</summary>
    public const int TokenBytes = 32;

    /// <summary>Bytes of a hello on the wire.</summary>
    public const int Size = 16 + TokenBytes;

    /// <summary>A fresh random token for one registration.</summary>
    public static byte[] NewToken() => RandomNumberGenerator.GetBytes(TokenBytes);

    /// <summary>Writes the hello.</summary>
    public void Write(Stream stream)
    {
        Span<byte> bytes = stackalloc byte[Size];
        bytes.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, Magic);
        bytes[4] = Version;
        BinaryPrimitives.WriteInt32LittleEndian(bytes[8..], WorkerIndex);
        BinaryPrimitives.WriteInt32LittleEndian(bytes[12..], ParameterCount);
        Token.CopyTo(bytes[16..]);
        stream.Write(bytes);
        stream.Flush();
    }

    /// <summary>Reads a hello: exactly <see cref="Size"/> bytes, whatever the peer sends.</summary>
    /// <exception cref="IOException">The peer closed early, or the bytes are not a DistTrain hello of this version.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired first (the peer was too slow).</exception>
    public static async Task<DataPlaneHello> ReadAsync(Stream stream, CancellationToken cancellationToken)
    {
        var bytes = new byte[Size];
        try
        {
            await stream.ReadExactlyAsync(bytes, cancellationToken).ConfigureAwait(false);
        }
        catch (EndOfStreamException)
        {
            throw new IOException("the peer closed the connection before its hello.");
        }
        var magic = BinaryPrimitives.ReadUInt32LittleEndian(bytes);
        if (magic != Magic)
            throw new IOException($"its first bytes (0x{magic:X8}) are not a DistTrain data-plane hello (an older DistTrain, or something else talking to this port).");
        if (bytes[4] != Version)
            throw new IOException($"it speaks data-plane hello version {bytes[4]}, this node {Version}: run the same DistTrain version on every node.");
        return new DataPlaneHello(BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(8)), BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(12)),
            bytes[16..]);
    }
}
