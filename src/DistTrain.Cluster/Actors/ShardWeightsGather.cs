using Akka.Actor;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// Puts the whole model's weights together from K shards that run on their own (docs/architecture.md, "Where the shards
/// run"): the owner sends every shard a <see cref="ShardSliceRequest"/> (<see cref="RequestId"/>) and hands this the
/// <see cref="ShardSliceChunk"/>s that come back; the result is the starting weights with the report prefix
/// <c>[0, WorkerReportLength)</c> (trainable weights and running statistics) replaced by the shards' slices, so the frozen
/// tensors, which no shard holds, are the run's own. A plain class: the owner, the only actor the shards answer, drives it.
/// </summary>
/// <remarks>
/// A piece is taken only from the shard at the index it names, of this request, in order (each shard's pieces come in order,
/// as Akka delivers one sender's messages), within the shard's slice; anything else is ignored with a reason. The shards must
/// all be at one version: ask between parts (after an epoch's last round, or once a stop has stopped the stepping), when every
/// shard has applied the same rounds; slices of different versions would be torn weights, and the gathering fails naming the
/// versions. A shard that never answers (its node gone) leaves the gathering incomplete: the owner bounds its wait.
/// </remarks>
public sealed class ShardWeightsGather
{
    private readonly IActorRef[] _shards;
    private readonly IReadOnlyList<ParameterShard> _plan;
    private readonly float[] _whole;
    private readonly int[] _received; // values received from each shard
    private readonly long[] _versions;

    /// <summary>A gathering of request <paramref name="requestId"/> from <paramref name="shards"/>.</summary>
    /// <param name="startingWeights">The run's starting weights (whole model): the layout, and the frozen tensors.</param>
    /// <param name="shards">The shards' actors, by shard index: K of them, K as <see cref="ParameterShards.Plan"/> cuts the model.</param>
    /// <param name="requestId">The request's number, 0 or more: pieces of another request are ignored.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="requestId"/> is negative, or as <see cref="ParameterShards.Plan"/>.</exception>
    public ShardWeightsGather(ParameterVector startingWeights, IReadOnlyList<IActorRef> shards, int requestId)
    {
        ArgumentNullException.ThrowIfNull(startingWeights);
        ArgumentNullException.ThrowIfNull(shards);
        ArgumentOutOfRangeException.ThrowIfNegative(requestId);
        _plan = ParameterShards.Plan(startingWeights.Layout, shards.Count);
        _shards = [.. shards];
        _whole = (float[])startingWeights.Values.Clone();
        _received = new int[_shards.Length];
        _versions = new long[_shards.Length];
        RequestId = requestId;
    }

    /// <summary>The request's number: send every shard <c>new ShardSliceRequest(RequestId)</c>.</summary>
    public int RequestId { get; }

    /// <summary>True once every shard's whole slice has come, at one version.</summary>
    public bool Complete => Failure is null && Enumerable.Range(0, _shards.Length).All(k => _received[k] == _plan[k].Length);

    /// <summary>Why the gathering failed (shards at different versions), or null.</summary>
    public string? Failure { get; private set; }

    /// <summary>The whole weights and their version, once <see cref="Complete"/>.</summary>
    /// <exception cref="InvalidOperationException">Not complete.</exception>
    public WeightsSnapshot Result => Complete ? new WeightsSnapshot(_versions[0], (float[])_whole.Clone())
        : throw new InvalidOperationException(Failure ?? "Not every shard's slice has come yet.");

    /// <summary>Takes a piece from <paramref name="sender"/>: null when taken, else why it was ignored, for a warning.</summary>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    public string? Take(IActorRef sender, ShardSliceChunk chunk)
    {
        ArgumentNullException.ThrowIfNull(sender);
        ArgumentNullException.ThrowIfNull(chunk);
        var what = $"a piece of shard {chunk.Shard}'s weights (request {chunk.RequestId}, values {chunk.Offset} to {(long)chunk.Offset + chunk.Values.Length})";
        if (chunk.RequestId != RequestId) return $"{what} is of another request than {RequestId}; ignored";
        if (chunk.Shard < 0 || chunk.Shard >= _shards.Length || !sender.Equals(_shards[chunk.Shard]))
            return $"{what} came from {sender.Path}, which is not that shard; ignored";
        var k = chunk.Shard;
        var shard = _plan[k];
        if (chunk.Total != shard.Length) return $"{what} is of a slice of {chunk.Total} values, and shard {k}'s has {shard.Length}; ignored";
        if (chunk.Offset != _received[k]) return $"{what} is not the next piece: {_received[k]} values of shard {k} have come; ignored";
        if (chunk.Values.Length == 0 || (long)chunk.Offset + chunk.Values.Length > shard.Length)
            return $"{what} does not lie within shard {k}'s slice of {shard.Length} values; ignored";
        if (_received[k] == 0) _versions[k] = chunk.Version;
        else if (chunk.Version != _versions[k]) return $"{what} is of version {chunk.Version}, and its first piece of {_versions[k]}; ignored";
        chunk.Values.CopyTo(_whole, shard.Start + chunk.Offset);
        _received[k] += chunk.Values.Length;
        if (Enumerable.Range(0, _shards.Length).All(s => _received[s] == _plan[s].Length) && _versions.Distinct().Count() > 1)
            Failure = $"The shards' slices are of different versions ({string.Join(", ", _versions.Select((v, s) => $"shard {s}: {v}"))}): gather " +
                "between parts, when every shard has applied the same rounds, or the weights would be torn.";
        return null;
    }
}
