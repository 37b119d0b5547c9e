using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// A worker's side of a <see cref="ShardedParameterServer"/>: the shards take it for the worker. The shards write their
/// slices of each broadcast into arrays they share (<see cref="Training.SharedWeights"/>), so a version's
/// weights are whole once every shard has published it: the join then passes shard 0's message on to the worker. The
/// worker's report goes, as it is, to the sharded server, which hands it to every shard in the order it hands them
/// everything else; each reads its slice. Nothing is copied on the way, and the worker and the data plane are the same as
/// with one parameter server.
/// </summary>
/// <remarks>
/// Every shard sends every broadcast in the same order (they run the same rounds), so the n-th message from each shard
/// belongs to the n-th broadcast. Shard 0's messages wait in a ring of <see cref="Pending"/> until the slowest shard's
/// n-th has come; a shard is never more than two broadcasts ahead of another (an epoch's last weights and the next part's
/// first go out without a report between them).
/// </remarks>
public sealed class ShardJoin : ReceiveActor
{
    /// <summary>Broadcasts that may wait for the other shards: more than a shard ever runs ahead.</summary>
    public const int Pending = 4;

    private readonly int _workerIndex;
    private readonly IActorRef[] _shards;
    private readonly int _reportLength;
    private readonly WeightsUpdated?[] _pending = new WeightsUpdated?[Pending]; // shard 0's messages not yet complete
    private readonly int[] _received;            // messages received from each shard
    private readonly int[] _arrived = new int[Pending]; // shards whose n-th message has come, by n mod Pending
    private readonly (int Epoch, int Round, long Version)[] _keys = new (int, int, long)[Pending]; // the n-th message's position
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private IActorRef _worker = ActorRefs.Nobody;
    private int _sent;                           // broadcasts passed on to the worker

    /// <summary>Creates the join; see <see cref="Props"/>.</summary>
    public ShardJoin(int workerIndex, IActorRef[] shards, int reportLength)
    {
        _workerIndex = workerIndex;
        _shards = shards;
        _reportLength = reportLength;
        _received = new int[shards.Length];
        Receive<Worker>(worker => _worker = worker.Ref);
        Receive<WeightsUpdated>(OnSlice);
        Receive<GradientComputed>(OnReport);
    }

    /// <summary>The worker this join stands for from now on (a slot's worker changes when a worker joins a running job).</summary>
    internal sealed record Worker(IActorRef Ref) : INoSerializationVerificationNeeded;

    /// <summary>Props of the join of worker slot <paramref name="workerIndex"/>.</summary>
    /// <param name="workerIndex">The slot.</param>
    /// <param name="shards">The shard servers, in shard order.</param>
    /// <param name="reportLength">Floats of a worker's report.</param>
    public static Props Props(int workerIndex, IActorRef[] shards, int reportLength) =>
        Akka.Actor.Props.Create(() => new ShardJoin(workerIndex, shards, reportLength));

    private void OnSlice(WeightsUpdated slice)
    {
        var k = Array.IndexOf(_shards, Sender);
        if (k < 0)
        {
            _log.Warning("Worker {0}'s shard join ignored weights from {1}, which is not one of its shards.", _workerIndex, Sender.Path);
            return;
        }
        var n = _received[k]++;
        if (n - _sent >= Pending)
            throw new InvalidOperationException($"Parameter-server shard {k} sent {n - _sent + 1} weights messages that the other shards have not matched; the shards are out of step.");
        // Every shard's n-th message must be of the same position: else the shards are out of step, and the whole array
        // would hold slices of different versions. Fail with that rather than hand the worker torn weights.
        var key = (slice.Epoch, slice.Round, slice.Version);
        if (_arrived[n % Pending]++ == 0) _keys[n % Pending] = key;
        else if (_keys[n % Pending] != key)
            throw new InvalidOperationException($"Parameter-server shard {k} sent weights of epoch {slice.Epoch} round {slice.Round} version {slice.Version} where another shard sent epoch {_keys[n % Pending].Epoch} round {_keys[n % Pending].Round} version {_keys[n % Pending].Version}: the shards are out of step.");
        if (k == 0) _pending[n % Pending] = slice;
        while (EveryShardSent(_sent))
        {
            _worker.Tell(_pending[_sent % Pending], Self);
            _pending[_sent % Pending] = null;
            _arrived[_sent % Pending] = 0;
            _sent++;
        }
    }

    private bool EveryShardSent(int broadcast)
    {
        foreach (var received in _received)
            if (received <= broadcast) return false;
        return true;
    }

    private void OnReport(GradientComputed report)
    {
        if (!Sender.Equals(_worker))
        {
            _log.Warning("Worker {0}'s shard join ignored a report from {1}, which is not its worker.", _workerIndex, Sender.Path);
            return;
        }
        if (report.Gradient.Length != _reportLength)
        {
            // As the parameter server itself rejects it: never applied, and the round keeps waiting for a valid one.
            _log.Warning("Rejected gradient from worker {0}: it has {1} elements, the model reports {2}. The round still waits for a valid one.",
                report.WorkerIndex, report.Gradient.Length, _reportLength);
            return;
        }
        // Through the sharded server, which hands it to every shard: so every shard sees reports, lost workers and parts
        // in one order (sent straight to the shards, a report could reach one shard before a worker's loss and another after).
        Context.Parent.Tell(report, Self);
    }
}
