using System.Buffers.Binary;
using System.Security.Cryptography;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// The first bytes a worker sends on a data-plane connection (after TLS, when on): which worker it is, the length of
/// its tensors, and the one-time token the job host gave that registration over Akka (<c>WorkerAccepted.DataToken</c>),
/// so only the node that registered as a worker can take its place on the data plane. Fixed 48 bytes, little-endian:
/// magic "DTHS", version, shard count, shard index, 1 reserved byte, worker index, parameter count, 32-byte token.
/// <para>A hello to one parameter server has shard count 0 and shard index 0 (the bytes were reserved and zero before
/// shards had a data plane, so that hello is unchanged). A hello to a shard node (<see cref="ShardDataPlane"/>) names the
/// shard (index and the run's shard count K, both at most <see cref="Training.ParameterShards.MaxShards"/>), carries the
/// shard's slice length as its parameter count and the worker slot's own data-plane token as its token.</para>
/// </summary>
/// <param name="WorkerIndex">The worker index the job host gave.</param>
/// <param name="ParameterCount">Floats per weights tensor on the worker's side (to a shard: the shard's slice length).</param>
/// <param name="Token">The registration's token, <see cref="TokenBytes"/> bytes (to a shard: the worker slot's token).</param>
/// <param name="Shard">The shard the worker connects to, 0 to <paramref name="ShardCount"/> - 1; -1 for a parameter server.</param>
/// <param name="ShardCount">The shards the worker cuts its reports for (K); 0 for a parameter server.</param>
internal sealed record DataPlaneHello(int WorkerIndex, int ParameterCount, byte[] Token, int Shard = -1, int ShardCount = 0)
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

    /// <summary>True for a hello to a shard node (<see cref="ShardCount"/> above 0).</summary>
    public bool ToShard => ShardCount > 0;

    /// <summary>Writes the hello.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="ShardCount"/> is not 0 to <see cref="Training.ParameterShards.MaxShards"/>,
    /// or <see cref="Shard"/> is not -1 without shards and 0 to <see cref="ShardCount"/> - 1 with them.</exception>
    public void Write(Stream stream)
    {
        if (ShardCount < 0 || ShardCount > Training.ParameterShards.MaxShards)
            throw new ArgumentOutOfRangeException(nameof(ShardCount), ShardCount, $"A hello names 0 (a parameter server) to {Training.ParameterShards.MaxShards} shards.");
        if (ShardCount == 0 ? Shard != -1 : Shard < 0 || Shard >= ShardCount)
            throw new ArgumentOutOfRangeException(nameof(Shard), Shard, ShardCount == 0
                ? "A hello to a parameter server names no shard (-1)."
                : $"A hello to one of {ShardCount} shards names shard 0 to {ShardCount - 1}.");
        Span<byte> bytes = stackalloc byte[Size];
        bytes.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, Magic);
        bytes[4] = Version;
        if (ShardCount > 0)
        {
            bytes[5] = (byte)ShardCount;
            bytes[6] = (byte)Shard;
        }
        BinaryPrimitives.WriteInt32LittleEndian(bytes[8..], WorkerIndex);
        BinaryPrimitives.WriteInt32LittleEndian(bytes[12..], ParameterCount);
        Token.CopyTo(bytes[16..]);
        stream.Write(bytes);
        stream.Flush();
    }

    /// <summary>Reads a hello, blocking: exactly <see cref="Size"/> bytes, whatever the peer sends.</summary>
    /// <exception cref="IOException">The peer closed early, the connection failed, or the bytes are not a DistTrain hello of this version.</exception>
    /// <exception cref="ObjectDisposedException">The connection was closed meanwhile (the listener's deadline).</exception>
    public static DataPlaneHello Read(Stream stream)
    {
        var bytes = new byte[Size];
        try
        {
            stream.ReadExactly(bytes);
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
        // Shard count 0: a hello to a parameter server, whose shard byte means nothing (as before shards had a data plane).
        var shardCount = bytes[5];
        return new DataPlaneHello(BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(8)), BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(12)),
            bytes[16..], shardCount == 0 ? -1 : bytes[6], shardCount);
    }
}
