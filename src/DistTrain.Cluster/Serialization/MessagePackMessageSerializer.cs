using System.Collections.Frozen;
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
    public override byte[] ToBinary(object obj) => MessagePackSerializer.Serialize(obj.GetType(), obj, _options);

    /// <inheritdoc />
    /// <exception cref="SerializationException">The manifest names no known message, or the bytes do not decode as that message.</exception>
    public override object FromBinary(byte[] bytes, string manifest)
    {
        if (!TypesByManifest.TryGetValue(manifest, out var type))
            throw new SerializationException($"Unknown DistTrain message type '{manifest}'. Both nodes must run the same DistTrain version.");
        try
        {
            return MessagePackSerializer.Deserialize(type, bytes, _options)
                   ?? throw new SerializationException($"A {manifest} message decoded to null.");
        }
        catch (MessagePackSerializationException e)
        {
            throw new SerializationException($"A {manifest} message of {bytes.Length} bytes could not be decoded: {e.Message}", e);
        }
    }
}
