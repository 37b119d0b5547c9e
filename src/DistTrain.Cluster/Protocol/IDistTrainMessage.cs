namespace DistTrain.Cluster.Protocol;

/// <summary>
/// Marker of every message DistTrain actors exchange. Akka binds it to
/// <see cref="Serialization.MessagePackMessageSerializer"/>, so every such message must round-trip
/// through MessagePack (checked by a training run with <c>serialize-messages = on</c>).
/// </summary>
public interface IDistTrainMessage;

/// <summary>
/// A message that carries one large tensor. The serializer writes the tensor's raw little-endian bytes
/// after the MessagePack-encoded rest of the message, so a 4 MB gradient costs one allocation and one
/// memory copy in each direction.
/// </summary>
public interface ITensorMessage : IDistTrainMessage
{
    /// <summary>The tensor, flat.</summary>
    float[] Tensor { get; }

    /// <summary>The same message with another tensor.</summary>
    ITensorMessage WithTensor(float[] tensor);
}

/// <summary>
/// A message whose fields have ranges narrower than their types (a shard index, a worker slot, a round). The serializer
/// refuses a decoded one that is out of range with a <see cref="System.Runtime.Serialization.SerializationException"/>
/// naming the field, so a corrupt or forged message never reaches an actor.
/// </summary>
public interface IRangeCheckedMessage : IDistTrainMessage
{
    /// <summary>The first field out of its range, with its value and the range (<c>Shard 17 is outside 0 to 15</c>); null when every field is in range.</summary>
    string? OutOfRange();
}
