namespace DistTrain.Cluster.Protocol;

/// <summary>
/// Marker of every message DistTrain actors exchange. Akka binds it to
/// <see cref="Serialization.MessagePackMessageSerializer"/>, so every such message must round-trip
/// through MessagePack (checked by a training run with <c>serialize-messages = on</c>).
/// </summary>
public interface IDistTrainMessage;
