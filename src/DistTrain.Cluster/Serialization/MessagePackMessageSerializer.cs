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

    /// <summary>
    /// Deepest nesting a message may have. DistTrain's messages nest at most three deep (a message, an array or a
    /// <see cref="RoundTiming"/>, its values); MessagePack's untrusted-data default of 500 would let a hostile message
    /// recurse further than any real one.
    /// </summary>
    public const int MaxObjectGraphDepth = 16;

    private readonly MessagePackSerializerOptions _options;

    /// <summary>Created by Akka with the system that owns it.</summary>
    public MessagePackMessageSerializer(ExtendedActorSystem system) : base(system)
    {
        var resolver = CompositeResolver.Create(
            new IMessagePackFormatter[] { RawFloatArrayFormatter.Instance, new ActorRefFormatter(system) },
            new IFormatterResolver[] { StandardResolver.Instance });
        _options = MessagePackSerializerOptions.Standard
            .WithResolver(resolver)
            .WithSecurity(MessagePackSecurity.UntrustedData.WithMaximumObjectGraphDepth(MaxObjectGraphDepth));
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
    /// <remarks>
    /// Bytes from the network are untrusted: MessagePack's untrusted-data mode (hash-collision-resistant maps), at most
    /// <see cref="MaxObjectGraphDepth"/> levels of nesting, and every length prefix (arrays, maps, strings, bins, the
    /// tensor block's head length) checked against the bytes that remain before anything is allocated, so a forged
    /// 2^31-element header costs nothing. A message must have the fields its type requires, no null where its type allows
    /// none, every field in its range (<see cref="IRangeCheckedMessage"/>), and no bytes after it.
    /// </remarks>
    /// <exception cref="SerializationException">The manifest names no known message, or the bytes do not decode as that
    /// message; the message names the type, the size and the problem.</exception>
    public override object FromBinary(byte[] bytes, string manifest)
    {
        if (!TypesByManifest.TryGetValue(manifest, out var type))
            throw new SerializationException($"Unknown DistTrain message type '{manifest}'. Both nodes must run the same DistTrain version.");
        try
        {
            if (!typeof(ITensorMessage).IsAssignableFrom(type))
                return Decode(type, bytes, manifest, bytes.Length);
            if (bytes.Length < sizeof(int))
                throw new SerializationException($"A {manifest} message of {bytes.Length} bytes is too short for its header.");
            var headLength = BinaryPrimitives.ReadInt32LittleEndian(bytes);
            var tensorBytes = bytes.Length - sizeof(int) - (long)headLength;
            if (headLength < 0 || tensorBytes < 0 || tensorBytes % sizeof(float) != 0)
                throw new SerializationException($"A {manifest} message of {bytes.Length} bytes declares a {headLength}-byte header; the tensor part is not whole floats. The message is corrupt.");
            var head = (ITensorMessage)Decode(type, bytes.AsMemory(sizeof(int), headLength), manifest, bytes.Length);
            var tensor = GC.AllocateUninitializedArray<float>((int)(tensorBytes / sizeof(float)));
            bytes.AsSpan(sizeof(int) + headLength).CopyTo(MemoryMarshal.AsBytes(tensor.AsSpan()));
            return head.WithTensor(tensor);
        }
        catch (EndOfStreamException e)
        {
            throw new SerializationException($"A {manifest} message of {bytes.Length} bytes ends in the middle of a value. The message is truncated.", e);
        }
        catch (MessagePackSerializationException e)
        {
            // MessagePack wraps the reader's own error ("Failed to deserialize ... value."); the innermost one says what was wrong.
            Exception cause = e;
            while (cause.InnerException is { } inner) cause = inner;
            throw new SerializationException($"A {manifest} message of {bytes.Length} bytes could not be decoded: {cause.Message} The message is corrupt or from another DistTrain version.", e);
        }
    }

    /// <summary>Decodes one MessagePack value of <paramref name="type"/> that must fill <paramref name="bytes"/> exactly.</summary>
    private object Decode(Type type, ReadOnlyMemory<byte> bytes, string manifest, int messageLength)
    {
        var length = MessagePackStructure.ValueLength(bytes, MaxObjectGraphDepth);
        if (length != bytes.Length)
            throw new SerializationException($"A {manifest} message of {messageLength} bytes has {bytes.Length - length} bytes after its end. The message is corrupt.");
        var shape = MessageShape.Of(type);
        var reader = new MessagePackReader(bytes);
        var peek = reader.CreatePeekReader();
        if (peek.NextMessagePackType == MessagePackType.Array && peek.ReadArrayHeader() is var fields && fields < shape.RequiredFields)
            throw new SerializationException($"A {manifest} message of {messageLength} bytes has {fields} fields; the type needs at least {shape.RequiredFields}. The message is truncated or from another DistTrain version.");
        var message = MessagePackSerializer.Deserialize(type, ref reader, _options)
                      ?? throw new SerializationException($"A {manifest} message decoded to null.");
        if (shape.NullMember(message) is { } member)
            throw new SerializationException($"A {manifest} message of {messageLength} bytes has no {member} (nil where the type needs a value). The message is corrupt.");
        if (message is IRangeCheckedMessage ranged && ranged.OutOfRange() is { } problem)
            throw new SerializationException($"A {manifest} message of {messageLength} bytes is out of range: {problem}. The message is corrupt or from another DistTrain version.");
        return message;
    }
}
