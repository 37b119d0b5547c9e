using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using MessagePack;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// The coordinator's part in the shards' lock-step rounds when the shards run on their own (docs/architecture.md, "Where
/// the shards run"): for each lost worker (<see cref="WorkerLost"/>) it asks every <see cref="ParameterShardActor"/>
/// (<see cref="ShardLossQuery"/>), forms <see cref="LossDecision.From"/> of the K answers, and sends the decision to every
/// shard (<see cref="ShardLossDecision"/>), then to the loss's reporter (<see cref="ShardLossDecided"/>). The part's start names
/// it to every shard (<see cref="ShardPartStart.Arbiter"/>), and a shard takes questions and decisions from no other actor.
/// It takes a <see cref="WorkerLost"/> only from the run's owner it is made with (the shards' owner, which starts the parts and
/// hands on the coordinator's lost workers: the <see cref="RemoteShardedParameterServer"/>, which makes one arbiter per part): a loss is a decision to drop a worker's slices, so one from any other actor is refused with
/// a warning naming the sender.
/// </summary>
/// <remarks>
/// Decisions are made one at a time, in the order the losses came, so every shard applies them in one order (the
/// ledger's rule). A worker reported again, while its decision is pending or after it, is not asked about twice. A shard
/// that never answers holds every later decision back: detecting a lost shard is the membership's job, not yet done.
/// </remarks>
public sealed class ShardLossArbiter : ReceiveActor
{
    private readonly IActorRef[] _shards;
    private readonly IActorRef _owner;
    private readonly int _workerSlots;
    private readonly int _epoch;
    private readonly int _part;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Queue<(int Worker, IActorRef ReportedBy)> _losses = new();
    private readonly HashSet<int> _reported = [];
    private (int Worker, IActorRef ReportedBy, LossAnswer?[] Answers)? _asking;

    /// <summary>Creates the arbiter; see <see cref="Props"/>.</summary>
    /// <exception cref="ArgumentException">No shards, a worker slot count outside 1..<see cref="UpdatePolicy.MaxWorkers"/>, an
    /// epoch below 1, a part below 0, or an owner that is <see cref="ActorRefs.Nobody"/>.</exception>
    public ShardLossArbiter(IActorRef[] shards, int workerSlots, int epoch, int part, IActorRef owner)
    {
        ArgumentNullException.ThrowIfNull(shards);
        ArgumentNullException.ThrowIfNull(owner);
        if (owner.IsNobody())
            throw new ArgumentException("The loss arbiter needs the actor that reports lost workers (the coordinator) as its owner; Nobody would leave " +
                "it refusing every loss.", nameof(owner));
        _owner = owner;
        if (shards.Length is 0 or > ParameterShards.MaxShards)
            throw new ArgumentException($"A loss decision needs 1 to {ParameterShards.MaxShards} shards' answers; {shards.Length} shards were given.", nameof(shards));
        if (workerSlots is < 1 or > UpdatePolicy.MaxWorkers)
            throw new ArgumentException($"{workerSlots} worker slots: allowed 1 to {UpdatePolicy.MaxWorkers}.", nameof(workerSlots));
        if (ShardWire.PartOf(epoch, part) is { } badPart)
            throw new ArgumentException($"A loss decision is about one part of an epoch: {badPart}.", epoch < 1 ? nameof(epoch) : nameof(part));
        _shards = (IActorRef[])shards.Clone();
        _workerSlots = workerSlots;
        _epoch = epoch;
        _part = part;
        Receive<WorkerLost>(OnLost);
        Receive<ShardLossAnswer>(OnAnswer);
    }

    /// <summary>Props of an arbiter over <paramref name="shards"/> (by shard index) for a part of <paramref name="workerSlots"/> worker slots.</summary>
    /// <param name="shards">Every shard, by shard index.</param>
    /// <param name="workerSlots">The worker slots of the part the shards run.</param>
    /// <param name="epoch">The part's 1-based epoch (<see cref="ShardPartStart.Epoch"/>): every question and decision names it.</param>
    /// <param name="part">The part's index in its epoch, from 0 (<see cref="ShardPartStart.Part"/>): every question and decision names it.</param>
    /// <param name="owner">The run's owner: the only actor whose <see cref="WorkerLost"/> the arbiter takes, and the one that gets
    /// each <see cref="ShardLossDecided"/>: the actor that starts the parts, the owner the shards are made with
    /// (<see cref="ParameterShardActor.Props"/>), which hands on the lost workers the coordinator learns of from the membership.</param>
    public static Props Props(IActorRef[] shards, int workerSlots, int epoch, int part, IActorRef owner) =>
        Akka.Actor.Props.Create(() => new ShardLossArbiter(shards, workerSlots, epoch, part, owner));

    private void OnLost(WorkerLost lost)
    {
        // Taken, a loss makes every shard refuse the worker's slices and may close a round without them.
        if (!Sender.Equals(_owner))
        {
            _log.Warning("Worker {0} reported lost by {1}, not by the run's owner {2}, which alone reports lost workers. Ignored.", lost.WorkerIndex,
                Sender.Path, _owner.Path);
            return;
        }
        if (lost.WorkerIndex < 0 || lost.WorkerIndex >= _workerSlots)
        {
            _log.Warning("Worker {0} reported lost, but the worker slots are 0 to {1}. Ignored.", lost.WorkerIndex, _workerSlots - 1);
            return;
        }
        if (!_reported.Add(lost.WorkerIndex))
        {
            _log.Debug("Worker {0} reported lost again; its decision is made once.", lost.WorkerIndex);
            return;
        }
        _losses.Enqueue((lost.WorkerIndex, Sender));
        AskNext();
    }

    private void AskNext()
    {
        if (_asking is not null || _losses.Count == 0) return;
        var (worker, reportedBy) = _losses.Dequeue();
        _asking = (worker, reportedBy, new LossAnswer?[_shards.Length]);
        foreach (var shard in _shards) shard.Tell(new ShardLossQuery(worker, _epoch, _part));
    }

    private void OnAnswer(ShardLossAnswer answer)
    {
        if (_asking is not { } asking || answer.Answer.Worker != asking.Worker || answer.Shard < 0 || answer.Shard >= _shards.Length
            || !Sender.Equals(_shards[answer.Shard]))
        {
            _log.Warning("An answer from shard {0} about worker {1} that no question waits for (from {2}). Ignored.", answer.Shard, answer.Answer.Worker, Sender.Path);
            return;
        }
        asking.Answers[answer.Shard] = answer.Answer;
        if (asking.Answers.Any(a => a is null)) return;
        var decision = LossDecision.From([.. asking.Answers.Select(a => a!.Value)]);
        _log.Info("Worker {0} lost: round {1} {2} its slice at every shard.", decision.Worker, decision.Round, decision.Keep ? "keeps" : "is closed without");
        foreach (var shard in _shards) shard.Tell(new ShardLossDecision(decision, _epoch, _part));
        asking.ReportedBy.Tell(new ShardLossDecided(decision));
        _asking = null;
        AskNext();
    }
}
