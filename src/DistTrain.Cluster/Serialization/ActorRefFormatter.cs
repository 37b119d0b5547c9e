using Akka.Actor;
using MessagePack;
using MessagePack.Formatters;

namespace DistTrain.Cluster.Serialization;

/// <summary>
/// Writes an <see cref="IActorRef"/> as its serialized actor path (with the node address when remoting
/// is on) and resolves it back through the receiving system's provider, as Akka's own serializers do.
/// </summary>
/// <param name="system">The receiving system, which resolves paths.</param>
public sealed class ActorRefFormatter(ExtendedActorSystem system) : IMessagePackFormatter<IActorRef?>
{
    /// <inheritdoc />
    public void Serialize(ref MessagePackWriter writer, IActorRef? value, MessagePackSerializerOptions options)
    {
        if (value is null) { writer.WriteNil(); return; }
        writer.Write(Akka.Serialization.Serialization.SerializedActorPath(value));
    }

    /// <inheritdoc />
    public IActorRef? Deserialize(ref MessagePackReader reader, MessagePackSerializerOptions options)
    {
        if (reader.TryReadNil()) return null;
        var path = reader.ReadString() ?? throw new MessagePackSerializationException("An actor reference arrived without a path.");
        return system.Provider.ResolveActorRef(path);
    }
}
