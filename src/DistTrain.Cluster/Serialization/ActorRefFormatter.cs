using Akka.Actor;
using MessagePack;
using MessagePack.Formatters;

namespace DistTrain.Cluster.Serialization;

/// <summary>
/// Writes an <see cref="IActorRef"/> as its serialized actor path (with the node address when remoting
/// is on) and resolves it back through the receiving system's provider, as Akka's own serializers do.
/// <see cref="ActorRefs.Nobody"/> (an empty slot, an absent actor) is written as the empty string and read back as Nobody:
/// its path, written with the sending node's address as Akka.Remote writes paths, would resolve on the receiving node to
/// an actor on the sender's node, and what is sent to it would cross the network to nobody.
/// </summary>
/// <param name="system">The receiving system, which resolves paths.</param>
public sealed class ActorRefFormatter(ExtendedActorSystem system) : IMessagePackFormatter<IActorRef?>
{
    /// <inheritdoc />
    public void Serialize(ref MessagePackWriter writer, IActorRef? value, MessagePackSerializerOptions options)
    {
        if (value is null) { writer.WriteNil(); return; }
        writer.Write(value.IsNobody() ? "" : Akka.Serialization.Serialization.SerializedActorPath(value));
    }

    /// <inheritdoc />
    public IActorRef? Deserialize(ref MessagePackReader reader, MessagePackSerializerOptions options)
    {
        if (reader.TryReadNil()) return null;
        var path = reader.ReadString() ?? throw new MessagePackSerializationException("An actor reference arrived without a path.");
        return path.Length == 0 ? ActorRefs.Nobody : system.Provider.ResolveActorRef(path);
    }
}
