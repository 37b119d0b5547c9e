using Akka.Actor;
using Akka.Event;

namespace DistTrain.Cluster.Metrics;

/// <summary>Counts the dead letters published on the event stream into <see cref="DistTrainMetrics.DeadLetters"/>.</summary>
public sealed class DeadLetterCounter : ReceiveActor
{
    /// <summary>Creates the counter; subscribe it to <see cref="DeadLetter"/>.</summary>
    public DeadLetterCounter() => Receive<DeadLetter>(_ => DistTrainMetrics.DeadLetters.Add(1, new KeyValuePair<string, object?>("node", DistTrainMetrics.Node)));
}
