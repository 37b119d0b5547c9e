using System.Buffers.Binary;
using System.Collections.Frozen;
using System.Runtime.InteropServices;
using Akka.Actor;
using Akka.Serialization;
using SerializationException = System.Runtime.Serialization.SerializationException;
using DistTrain.Cluster.Protocol;
using MessagePack;
using MessagePack.Formatters;
using MessagePack.Resolvers;

namespace DistTrain.Cluster.Serialization;

/// <summary>
/// Akka serializer for every <see cref="IDistTrainMessage"/>: MessagePack with tensors as raw bytes.
/// The manifest is the message type's short name, so the wire format does not depend on assembly
/// versions. Registered under the fixed id <see cref="SerializerId"/> by <see cref="Hosting.AkkaSettings"/>.
/// </summary>
public sealed class MessagePackMessageSerializer : SerializerWithStringManifest
{
    /// <summary>The serializer id both ends must agree on. Akka reserves 0–100 for itself.</summary>
    public const int SerializerId = 7341;

    private static readonly FrozenDictionary<string, Type> TypesByManifest = typeof(IDistTrainMessage).Assembly
        .GetTypes()
        .Where(t => t is { IsClass: true, IsAbstract: false } && typeof(IDistTrainMessage).IsAssignableFrom(t))
        .ToFrozenDictionary(t => t.Name, StringComparer.Ordinal);

    private readonly MessagePackSerializerOptions _options;

    /// <summary>Created by Akka with the system that owns it.</summary>
    public MessagePackMessageSerializer(ExtendedActorSystem system) : base(system)
    {
        var resolver = CompositeResolver.Create(
            new IMessagePackFormatter[] { RawFloatArrayFormatter.Instance, new ActorRefFormatter(system) },
            new IFormatterResolver[] { StandardResolver.Instance });
        _options = MessagePackSerializerOptions.Standard
            .WithResolver(resolver)
            .WithSecurity(MessagePackSecurity.UntrustedData);
    }

    /// <inheritdoc />
    public override int Identifier => SerializerId;

    /// <inheritdoc />
    public override string Manifest(object o) => o.GetType().Name;

    /// <inheritdoc />
    /// <remarks>
    /// A <see cref="ITensorMessage"/> is laid out as <c>[int32 length of the rest][rest of the message,
    /// MessagePack, tensor empty][tensor, raw little-endian floats]</c>; every other message is plain MessagePack.
    /// </remarks>
    public override byte[] ToBinary(object obj)
    {
        if (obj is not ITensorMessage tensorMessage)
            return MessagePackSerializer.Serialize(obj.GetType(), obj, _options);
        var tensor = tensorMessage.Tensor;
        var head = MessagePackSerializer.Serialize(obj.GetType(), tensorMessage.WithTensor([]), _options);
        // Every byte is written below, so skip the zeroing of a fresh large array.
        var bytes = GC.AllocateUninitializedArray<byte>(checked(sizeof(int) + head.Length + tensor.Length * sizeof(float)));
        BinaryPrimitives.WriteInt32LittleEndian(bytes, head.Length);
        head.CopyTo(bytes, sizeof(int));
        MemoryMarshal.AsBytes(tensor.AsSpan()).CopyTo(bytes.AsSpan(sizeof(int) + head.Length));
        return bytes;
    }

    /// <inheritdoc />
    /// <exception cref="SerializationException">The manifest names no known message, or the bytes do not decode as that message.</exception>
    public override object FromBinary(byte[] bytes, string manifest)
    {
        if (!TypesByManifest.TryGetValue(manifest, out var type))
            throw new SerializationException($"Unknown DistTrain message type '{manifest}'. Both nodes must run the same DistTrain version.");
        try
        {
            if (!typeof(ITensorMessage).IsAssignableFrom(type))
                return MessagePackSerializer.Deserialize(type, bytes, _options)
                       ?? throw new SerializationException($"A {manifest} message decoded to null.");
            if (bytes.Length < sizeof(int))
                throw new SerializationException($"A {manifest} message of {bytes.Length} bytes is too short for its header.");
            var headLength = BinaryPrimitives.ReadInt32LittleEndian(bytes);
            var tensorBytes = bytes.Length - sizeof(int) - (long)headLength;
            if (headLength < 0 || tensorBytes < 0 || tensorBytes % sizeof(float) != 0)
                throw new SerializationException($"A {manifest} message of {bytes.Length} bytes declares a {headLength}-byte header; the tensor part is not whole floats. The message is corrupt.");
            var head = (ITensorMessage)(MessagePackSerializer.Deserialize(type, bytes.AsMemory(sizeof(int), headLength), _options)
                ?? throw new SerializationException($"A {manifest} message decoded to null."));
            var tensor = GC.AllocateUninitializedArray<float>((int)(tensorBytes / sizeof(float)));
            bytes.AsSpan(sizeof(int) + headLength).CopyTo(MemoryMarshal.AsBytes(tensor.AsSpan()));
            return head.WithTensor(tensor);
        }
        catch (MessagePackSerializationException e)
        {
            throw new SerializationException($"A {manifest} message of {bytes.Length} bytes could not be decoded: {e.Message}", e);
        }
    }
}
