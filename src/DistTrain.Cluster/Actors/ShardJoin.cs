using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// A worker's side of a <see cref="ShardedParameterServer"/>: the shards take it for the worker. It puts each version's
/// weights together from the K shards' slices and sends them whole to the worker; it cuts the worker's report into the K
/// slices and sends each to its shard. The worker and the data plane are the same as with one parameter server.
/// </summary>
/// <remarks>
/// Every shard sends every message in the same order (they run the same rounds), so the n-th message from each shard
/// belongs to the n-th assembly; <see cref="Assemblies"/> of them can be in progress, in a ring of loaned messages that the
/// worker copies from while it handles them, as the parameter server's own outbox (<see cref="WeightsOutbox"/>).
/// </remarks>
public sealed class ShardJoin : ReceiveActor
{
    /// <summary>Weights messages in the ring: more than a worker ever holds unanswered (two: an epoch's last weights and the next epoch's first).</summary>
    public const int Assemblies = 4;

    private readonly int _workerIndex;
    private readonly IActorRef[] _shards;
    private readonly ParameterShard[] _plan;
    private readonly WeightsUpdated[] _assemblies;
    private readonly int[] _received;            // messages received from each shard
    private readonly GradientComputed[][] _slices; // per shard, two loaned report slices used in turn
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private IActorRef _worker = ActorRefs.Nobody;
    private int _sent;                           // assemblies sent to the worker
    private int _nextSlice;
    private readonly int _reportLength;

    /// <summary>Creates the join; see <see cref="Props"/>.</summary>
    public ShardJoin(int workerIndex, IActorRef[] shards, ParameterShard[] plan, float[] initialWeights, int reportLength)
    {
        _workerIndex = workerIndex;
        _reportLength = reportLength;
        _shards = shards;
        _plan = plan;
        // Each assembly starts as the whole version-0 vector: the frozen tensors after the report prefix are never rewritten.
        _assemblies = [.. Enumerable.Range(0, Assemblies).Select(_ => new WeightsUpdated(0, 0, 0, (float[])initialWeights.Clone()))];
        _received = new int[shards.Length];
        _slices = [.. plan.Select(shard => new[]
        {
            new GradientComputed(0, 0, 0, workerIndex, 0, 0, new float[shard.Length]),
            new GradientComputed(0, 0, 0, workerIndex, 0, 0, new float[shard.Length]),
        })];
        if (plan[^1].End != reportLength)
            throw new ArgumentException($"The shard plan ends at {plan[^1].End}, a report has {reportLength} elements.", nameof(plan));
        Receive<Worker>(worker => _worker = worker.Ref);
        Receive<WeightsUpdated>(OnSlice);
        Receive<GradientComputed>(OnReport);
    }

    /// <summary>The worker this join stands for from now on (a slot's worker changes when a worker joins a running job).</summary>
    internal sealed record Worker(IActorRef Ref) : INoSerializationVerificationNeeded;

    /// <summary>Props of the join of worker slot <paramref name="workerIndex"/>.</summary>
    /// <param name="workerIndex">The slot.</param>
    /// <param name="shards">The shard servers, in shard order.</param>
    /// <param name="plan">Their slices.</param>
    /// <param name="initialWeights">The whole version-0 vector (the frozen tensors in it are never sent).</param>
    /// <param name="reportLength">Floats of a worker's report.</param>
    public static Props Props(int workerIndex, IActorRef[] shards, ParameterShard[] plan, float[] initialWeights, int reportLength) =>
        Akka.Actor.Props.Create(() => new ShardJoin(workerIndex, shards, plan, initialWeights, reportLength));

    private void OnSlice(WeightsUpdated slice)
    {
        var k = Array.IndexOf(_shards, Sender);
        if (k < 0)
        {
            _log.Warning("Worker {0}'s shard join ignored weights from {1}, which is not one of its shards.", _workerIndex, Sender.Path);
            return;
        }
        var n = _received[k]++;
        if (n - _sent >= Assemblies)
        {
            // A shard ran a whole ring ahead of another: the shards no longer run the same rounds.
            throw new InvalidOperationException($"Parameter-server shard {k} sent {n - _sent + 1} weights messages that the other shards have not matched; the shards are out of step.");
        }
        var assembly = _assemblies[n % Assemblies];
        slice.Weights.AsSpan(0, _plan[k].Length).CopyTo(assembly.Weights.AsSpan(_plan[k].Start));
        if (k == 0 || slice.SentTimestamp > assembly.SentTimestamp)
            assembly.Reuse(slice.Epoch, slice.Round, slice.Version, slice.SentTimestamp, slice.Shard);
        while (EveryShardSent(_sent))
        {
            _worker.Tell(_assemblies[_sent % Assemblies], Self);
            _sent++;
        }
    }

    private bool EveryShardSent(int assembly)
    {
        foreach (var received in _received)
            if (received <= assembly) return false;
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
        var buffer = _nextSlice;
        _nextSlice ^= 1;
        for (var k = 0; k < _plan.Length; k++)
        {
            var slice = report.WorkerIndex == _workerIndex
                ? _slices[k][buffer]
                : new GradientComputed(0, 0, 0, report.WorkerIndex, 0, 0, new float[_plan[k].Length]); // the shard rejects it, naming the index
            report.Gradient.AsSpan(_plan[k].Start, _plan[k].Length).CopyTo(slice.Gradient);
            slice.Reuse(report.Epoch, report.Round, report.Version, report.SampleCount, report.LossSum)
                .Measured(report.ComputeSeconds, report.AllocatedBytes, report.QueueingSeconds);
            _shards[k].Tell(slice, Self);
        }
    }
}
