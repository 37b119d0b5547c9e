using Akka.Actor;
using Akka.Event;

namespace DistTrain.Cluster.Metrics;

/// <summary>Counts the dead letters published on the event stream into the <c>disttrain_actor_dead_letters_total</c> counter.</summary>
public sealed class DeadLetterCounter : ReceiveActor
{
    /// <summary>Creates the counter; subscribe it to <see cref="DeadLetter"/>.</summary>
    public DeadLetterCounter() => Receive<DeadLetter>(_ => DistTrainMetrics.RecordDeadLetter());
}
