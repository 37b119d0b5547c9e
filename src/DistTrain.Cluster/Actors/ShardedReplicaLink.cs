using Akka.Actor;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Core.Compression;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// A worker's side of shards that run on their own (<see cref="ParameterShardActor"/>): it cuts each report into the K
/// shards' slices (<see cref="ParameterShards.Plan"/>'s layout), sends each shard its slice, and puts a round's whole
/// weights together from the shards' <see cref="ShardWeights"/> only when it holds one result of that round from every
/// shard, all with one stamp, one epoch and one version.
/// </summary>
/// <remarks>
/// The stamp rule is what keeps a worker from computing on a step that is later redone (docs/architecture.md, "Where the
/// shards run"): a shard that stepped with a lost worker's slice may send its result before the decision to drop it, and
/// the other shards' results of that round all come after it, with a higher stamp. Not thread-safe: one worker's actor
/// calls it.
/// </remarks>
public sealed class ShardedReplicaLink
{
    private readonly ParameterShard[] _plan;
    private readonly IActorRef[] _shards;
    private readonly ShardWeights?[] _pending;
    private readonly float[] _weights;
    private readonly float[][]?[] _loaned = new float[][]?[2]; // Send's two sets of slice arrays, made at the first push
    private int _nextLoaned;

    /// <summary>Creates the link of a worker that starts waiting for the starting weights of an epoch's first part (round -1);
    /// <see cref="StartPart"/> moves it to another part's.</summary>
    /// <param name="wholeWeights">The whole model's starting weights: the frozen tensors, which no shard holds, are taken from them (copied).</param>
    /// <param name="shards">The shards, by shard index; their count is the K of <see cref="ParameterShards.Plan"/>.</param>
    /// <param name="worker">The worker's slot, 0 to <see cref="UpdatePolicy.MaxWorkers"/> - 1: every error of the link names it
    /// (<see cref="Worker"/>), so a job that fails on shards out of step says which worker found them.</param>
    /// <exception cref="ArgumentOutOfRangeException">As <see cref="ParameterShards.Plan"/> for <c>shards.Length</c>; <paramref name="worker"/>
    /// outside 0 to <see cref="UpdatePolicy.MaxWorkers"/> - 1.</exception>
    public ShardedReplicaLink(ParameterVector wholeWeights, IActorRef[] shards, int worker)
    {
        ArgumentNullException.ThrowIfNull(wholeWeights);
        ArgumentNullException.ThrowIfNull(shards);
        if (worker is < 0 or >= UpdatePolicy.MaxWorkers)
            throw new ArgumentOutOfRangeException(nameof(worker), worker, $"A worker slot is 0 to {UpdatePolicy.MaxWorkers - 1}.");
        Worker = worker;
        _plan = ParameterShards.Plan(wholeWeights.Layout, shards.Length);
        _shards = (IActorRef[])shards.Clone();
        _pending = new ShardWeights?[shards.Length];
        _weights = (float[])wholeWeights.Values.Clone();
        AwaitedRound = -1;
    }

    /// <summary>The worker's slot, which the link's errors name.</summary>
    public int Worker { get; }

    /// <summary>The slices the reports are cut into, by shard index.</summary>
    public IReadOnlyList<ParameterShard> Plan => _plan;

    /// <summary>The round whose results the link waits for (the part's first round - 1: the part's starting weights).</summary>
    public int AwaitedRound { get; private set; }

    /// <summary>The stamp of the last weights put together.</summary>
    public int Stamp { get; private set; }

    /// <summary>The version (optimizer steps applied) of the last weights put together, which every shard's result of one
    /// round and stamp carries (<see cref="Offer"/> checks it): the version a report computed on them carries
    /// (<see cref="GradientComputed.Version"/>), which each shard checks.</summary>
    public long Version { get; private set; }

    /// <summary>The part's end as the last weights put together carry it: the lowest <see cref="ShardWeights.EndRound"/> of their K
    /// results (a shard that closed the round before a loss's decision sent the end it knew then). A worker computes no round from it.</summary>
    public int EndRound { get; private set; } = int.MaxValue;

    /// <summary>The whole flat vector of the last weights put together (live: it changes when the next round's are put together).</summary>
    public float[] Weights => _weights;

    /// <summary>Waits for the starting weights of a new part and forgets any results held.</summary>
    /// <param name="startingRound">The round of the part's starting weights, its first round - 1 (<see cref="ShardPartStart.FirstRound"/>):
    /// -1 for an epoch's first part.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="startingRound"/> is below -1.</exception>
    public void StartPart(int startingRound = -1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(startingRound, -1);
        AwaitedRound = startingRound;
        Array.Clear(_pending);
    }

    /// <summary>
    /// The K slices of <paramref name="report"/>: shard k's is a copy of <c>report[Start, End)</c> (trainable gradient, and
    /// for the last shard the running statistics after it).
    /// </summary>
    /// <param name="report">A worker's report: at least the model's report prefix (<see cref="ParameterLayout.WorkerReportLength"/>).</param>
    /// <exception cref="ArgumentException"><paramref name="report"/> is shorter than the last slice's end.</exception>
    public float[][] Split(float[] report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var end = _plan[^1].End;
        if (report.Length < end)
            throw new ArgumentException($"A report of {report.Length} values cannot be cut into the shards' slices, which reach to {end}: " +
                "send the whole report prefix (gradients, then running statistics).", nameof(report));
        return [.. _plan.Select(p => report.AsSpan(p.Start, p.Length).ToArray())];
    }

    /// <summary>
    /// <see cref="Split"/> into the link's own slice arrays, two sets used in turn (each slice is 0.47 MB on the main job with 2
    /// shards, which a new array per push would put on the large-object heap): a set is written again two pushes later, when
    /// its slices have gone out. Only the shard links' writers read them, in order, and the worker pushes round r + 2 only
    /// after it put round r + 1's weights together from every shard's result; a shard sends this worker no result once any
    /// shard was asked about its loss (<see cref="ParameterShardActor"/>), so a worker whose slices could still wait in a link
    /// never pushes again.
    /// </summary>
    private float[][] SplitIntoLoaned(float[] report)
    {
        ArgumentNullException.ThrowIfNull(report);
        if (report.Length < _plan[^1].End) return Split(report); // refused there, with the reason
        var slices = _loaned[_nextLoaned] ??= [.. _plan.Select(p => new float[p.Length])];
        _nextLoaned ^= 1;
        for (var k = 0; k < _plan.Length; k++) report.AsSpan(_plan[k].Start, _plan[k].Length).CopyTo(slices[k]);
        return slices;
    }

    /// <summary>
    /// Sends every shard its slice of <paramref name="report"/> as a <see cref="GradientComputed"/> of the given round from
    /// the link's worker slot (<see cref="Worker"/>), and from then on waits for that round's results.
    /// </summary>
    /// <param name="epoch">1-based epoch.</param>
    /// <param name="round">The round computed.</param>
    /// <param name="version">The version of the weights the report was computed on.</param>
    /// <param name="sampleCount">Samples in the minibatch, at least 1.</param>
    /// <param name="lossSum">Summed per-sample loss over the minibatch.</param>
    /// <param name="report">The report (see <see cref="Split"/>); under Cluster:Compression its gradient part holds what
    /// <paramref name="encoded"/> decodes to.</param>
    /// <param name="sender">The worker's actor: the sender the shards check.</param>
    /// <param name="encoded">Cluster:Compression: the report's encoded gradient part (<see cref="GradientWireCodec.Encode"/>);
    /// each shard is sent its cut of it (<see cref="GradientMessageSlice.Cut"/>, as <see cref="GradientComputed.Encoded"/>)
    /// and, for the last shard, the floats after the trainable part as they are. Null: float32 slices.</param>
    /// <returns>Bytes of the slices' bodies on the wire (frame headers excluded): 4 per float, and the cuts' sizes.</returns>
    /// <exception cref="ArgumentException">As <see cref="Split"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="encoded"/> holds fewer elements than the model's trainable part.</exception>
    /// <exception cref="InvalidDataException"><paramref name="encoded"/> is malformed.</exception>
    public long Send(int epoch, int round, long version, int sampleCount, double lossSum, float[] report, IActorRef sender, byte[]? encoded = null)
    {
        // The cuts first: a malformed message throws before a set of slice arrays is taken.
        var cuts = encoded is null ? null : _plan.Select(p => GradientMessageSlice.Cut(encoded, p.Start, p.TrainableLength)).ToArray();
        var slices = SplitIntoLoaned(report);
        AwaitedRound = round;
        Array.Clear(_pending);
        var bytes = 0L;
        for (var k = 0; k < slices.Length; k++)
        {
            var slice = new GradientComputed(epoch, round, version, Worker, sampleCount, lossSum, slices[k]);
            if (cuts is not null) slice.WithEncoded(cuts[k]);
            bytes += cuts is null ? 4L * slices[k].Length : cuts[k].Length + 4L * (_plan[k].Length - _plan[k].TrainableLength);
            _shards[k].Tell(slice, sender);
        }
        return bytes;
    }

    /// <summary>
    /// Takes one shard's result. When it completes the awaited round (every shard's result of it, all with one stamp),
    /// the whole weights are put together into <see cref="Weights"/> and the link waits for the next round.
    /// </summary>
    /// <returns>True when <see cref="Weights"/> now holds the awaited round's whole weights; false when the result is of
    /// another round (ignored) or the round is not complete yet.</returns>
    /// <exception cref="ArgumentException">The result's shard index is not one of the link's, or its slice is not that shard's
    /// length (the message names the worker's slot).</exception>
    /// <exception cref="InvalidOperationException">The result completes a round and stamp whose K results are of different
    /// epochs (the shards run different parts; the message names the worker's slot and every shard's epoch) or carry different
    /// versions (the shards are out of step; the message names the worker's slot and every shard's version). Nothing is put together: <see cref="Weights"/>,
    /// <see cref="Version"/> and <see cref="AwaitedRound"/> keep their values.</exception>
    public bool Offer(ShardWeights result)
    {
        ArgumentNullException.ThrowIfNull(result);
        if (result.Shard < 0 || result.Shard >= _plan.Length)
            throw new ArgumentException($"Worker {Worker}: a result from shard {result.Shard}; this worker's link has shards 0 to {_plan.Length - 1}.", nameof(result));
        if (result.Weights.Length != _plan[result.Shard].Length)
            throw new ArgumentException($"Worker {Worker}: shard {result.Shard}'s result holds {result.Weights.Length} values; its slice has {_plan[result.Shard].Length}: " +
                "the shards and the workers cut the model differently.", nameof(result));
        if (result.Round != AwaitedRound) return false;
        // A later result of a shard for the same round (a redone step, with a higher stamp) replaces its earlier one.
        _pending[result.Shard] = result;
        var stamp = _pending[0]?.Stamp;
        foreach (var p in _pending)
            if (p is null || p.Stamp != stamp) return false;
        // The shards run one part at a time: results of one round and stamp of different epochs or parts are of different parts
        // (a shard that missed a part's start, or a result left over from the last part), and their slices of different steps.
        if (_pending.Any(p => (p!.Epoch, p.Part) != (_pending[0]!.Epoch, _pending[0]!.Part)))
            throw new InvalidOperationException($"Worker {Worker}: the shards' results of round {result.Round} stamp {stamp} are of different parts " +
                $"({string.Join(", ", _pending.Select(p => $"shard {p!.Shard}: epoch {p.Epoch} part {p.Part}"))}): the shards are running different parts, and " +
                "their slices are of different steps, so no weights were put together from them. Every shard must get the same part's start " +
                "before the workers send it slices of that part.");
        // Every shard steps once per round, so one round and stamp is one version at every shard; results of one round and
        // stamp at different versions mean the shards are out of step, and their slices are of different steps.
        if (_pending.Any(p => p!.Version != _pending[0]!.Version))
            throw new InvalidOperationException($"Worker {Worker}: the shards' results of epoch {result.Epoch} round {result.Round} stamp {stamp} carry different " +
                $"versions ({string.Join(", ", _pending.Select(p => $"shard {p!.Shard}: version {p.Version}"))}): the shards are out of step, and " +
                "their slices are of different steps, so no weights were put together from them. The shards must start from the same weights " +
                "and version and get every part, slice and loss decision of the run.");
        for (var k = 0; k < _plan.Length; k++) _pending[k]!.Weights.CopyTo(_weights, _plan[k].Start);
        Stamp = stamp!.Value;
        Version = _pending[0]!.Version;
        EndRound = int.MaxValue;
        foreach (var p in _pending) EndRound = Math.Min(EndRound, p!.EndRound);
        AwaitedRound++;
        Array.Clear(_pending);
        return true;
    }
}
