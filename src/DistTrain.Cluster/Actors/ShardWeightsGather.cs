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
/// A piece is taken only from the shard at the index it names (or from the actor <see cref="ExpectFrom"/> names for it: a
/// diverged shard's host), of this request, in order (each shard's pieces come in order, as Akka delivers one sender's
/// messages), within the shard's slice; anything else is ignored with a reason. The shards must all be at one version: ask
/// between parts (after an epoch's last round, or once a stop has stopped the stepping), when every shard has applied the same
/// rounds, or ask each for one version (<see cref="ShardSliceRequest.Version"/>); slices of different versions would be torn
/// weights, and the gathering fails naming the versions. A shard that never answers (its node gone) leaves the gathering incomplete: the owner bounds its wait.
/// <para>For a checkpoint the owner names the optimizer's state buffers (<c>stateNames</c>) and asks with
/// <see cref="ShardSliceRequest.WithOptimizerState"/>: each shard then sends, after its weights, its slice of each state buffer in
/// that order (buffer b + 1 of <see cref="ShardSliceChunk.Buffer"/> is state buffer b), each whole before the next, all with its
/// optimizer step count; the gathering lays the slices side by side in whole-model buffers of the trainable length, as the
/// in-process shards' checkpoints are put together (<see cref="ParameterShards.Assemble"/>). The shards must agree on the step
/// count as on the version, and every piece says how many state buffers its shard sends: a number other than the names
/// given fails the gathering at once.</para>
/// </remarks>
public sealed class ShardWeightsGather
{
    private readonly IActorRef[] _shards;
    private readonly IReadOnlyList<ParameterShard> _plan;
    private readonly float[] _whole;
    private readonly string[] _stateNames;
    private readonly float[][] _state;  // whole-model state buffers, by buffer
    private readonly int[] _buffer;     // the buffer each shard is sending: 0 the weights, b + 1 state buffer b
    private readonly int[] _received;   // values of that buffer received from each shard
    private readonly long[] _versions;
    private readonly long[] _steps;

    /// <summary>A gathering of request <paramref name="requestId"/> from <paramref name="shards"/>.</summary>
    /// <param name="startingWeights">The run's starting weights (whole model): the layout, and the frozen tensors.</param>
    /// <param name="shards">The shards' actors, by shard index: K of them, K as <see cref="ParameterShards.Plan"/> cuts the model.</param>
    /// <param name="requestId">The request's number, 0 or more: pieces of another request are ignored.</param>
    /// <param name="stateNames">The optimizer's state buffers, in its order (<c>Optimizer.State</c>'s names), for a checkpoint's
    /// gathering (ask with <see cref="ShardSliceRequest.WithOptimizerState"/>); null or empty: the weights alone.</param>
    /// <exception cref="ArgumentNullException">An argument but <paramref name="stateNames"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="requestId"/> is negative, more than <see cref="ShardSliceChunk.MaxBuffers"/>
    /// state buffers, or as <see cref="ParameterShards.Plan"/>.</exception>
    public ShardWeightsGather(ParameterVector startingWeights, IReadOnlyList<IActorRef> shards, int requestId, IReadOnlyList<string>? stateNames = null)
    {
        ArgumentNullException.ThrowIfNull(startingWeights);
        ArgumentNullException.ThrowIfNull(shards);
        ArgumentOutOfRangeException.ThrowIfNegative(requestId);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(stateNames?.Count ?? 0, ShardSliceChunk.MaxBuffers, nameof(stateNames));
        _plan = ParameterShards.Plan(startingWeights.Layout, shards.Count);
        _shards = [.. shards];
        _whole = (float[])startingWeights.Values.Clone();
        _stateNames = [.. stateNames ?? []];
        _state = [.. _stateNames.Select(_ => new float[startingWeights.Layout.TrainableLength])];
        _buffer = new int[_shards.Length];
        _received = new int[_shards.Length];
        _versions = new long[_shards.Length];
        _steps = new long[_shards.Length];
        RequestId = requestId;
    }

    /// <summary>The request's number: send every shard <c>new ShardSliceRequest(RequestId, WithOptimizerState)</c>.</summary>
    public int RequestId { get; }

    /// <summary>True when the gathering takes the optimizer state too: ask with <see cref="ShardSliceRequest.WithOptimizerState"/>.</summary>
    public bool WithOptimizerState => _stateNames.Length > 0;

    /// <summary>True once every shard's whole slice of every buffer has come, at one version and one step count.</summary>
    public bool Complete => Failure is null && Enumerable.Range(0, _shards.Length).All(Done);

    /// <summary>The shards, by index in ascending order, that have not sent every buffer yet: empty once every one has.</summary>
    public IReadOnlyList<int> Waiting => [.. Enumerable.Range(0, _shards.Length).Where(k => !Done(k))];

    /// <summary>True when the gathering failed only because the shards' slices are of different versions (asked mid-round: one shard
    /// had stepped and another not yet), which a gathering asked again between rounds does not find.</summary>
    public bool TornVersions { get; private set; }

    /// <summary>Why the gathering failed (shards at different versions, or with the optimizer state at different step counts or
    /// with another number of state buffers), or null.</summary>
    public string? Failure { get; private set; }

    /// <summary>The whole weights and their version, once <see cref="Complete"/>.</summary>
    /// <exception cref="InvalidOperationException">Not complete.</exception>
    public WeightsSnapshot Result => Complete ? new WeightsSnapshot(_versions[0], (float[])_whole.Clone())
        : throw new InvalidOperationException(Failure ?? "Not every shard's slice has come yet.");

    /// <summary>The whole model's optimizer state, each buffer <c>[TrainableLength]</c> in the optimizer's order, once <see cref="Complete"/>
    /// (empty without <c>stateNames</c>); copies.</summary>
    /// <exception cref="InvalidOperationException">Not complete.</exception>
    public IReadOnlyList<(string Name, float[] Values)> OptimizerState => Complete
        ? [.. _stateNames.Select((name, b) => (name, (float[])_state[b].Clone()))]
        : throw new InvalidOperationException(Failure ?? "Not every shard's slice has come yet.");

    /// <summary>The optimizer step count every shard reported, once <see cref="Complete"/>.</summary>
    /// <exception cref="InvalidOperationException">Not complete.</exception>
    public long OptimizerSteps => Complete ? _steps[0] : throw new InvalidOperationException(Failure ?? "Not every shard's slice has come yet.");

    /// <summary>
    /// Takes shard <paramref name="shard"/>'s pieces from <paramref name="sender"/> instead of the shard's actor: a diverged shard's
    /// host sends its slice of the last good weights, the shard itself being stopped. False, and nothing changes, once a piece of
    /// that shard has been taken.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="sender"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="shard"/> is not a shard of this gathering.</exception>
    public bool ExpectFrom(int shard, IActorRef sender)
    {
        ArgumentNullException.ThrowIfNull(sender);
        ArgumentOutOfRangeException.ThrowIfNegative(shard);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(shard, _shards.Length);
        if (_buffer[shard] > 0 || _received[shard] > 0) return false;
        _shards[shard] = sender;
        return true;
    }

    /// <summary>True once shard <paramref name="k"/> has sent every buffer.</summary>
    private bool Done(int k) => _buffer[k] > _stateNames.Length;

    /// <summary>Takes a piece from <paramref name="sender"/>: null when taken, else why it was ignored, for a warning.</summary>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    public string? Take(IActorRef sender, ShardSliceChunk chunk)
    {
        ArgumentNullException.ThrowIfNull(sender);
        ArgumentNullException.ThrowIfNull(chunk);
        var buffer = chunk.Buffer == 0 ? "weights" : $"optimizer state buffer {chunk.Buffer - 1}";
        var what = $"a piece of shard {chunk.Shard}'s {buffer} (request {chunk.RequestId}, values {chunk.Offset} to {(long)chunk.Offset + chunk.Values.Length})";
        if (chunk.RequestId != RequestId) return $"{what} is of another request than {RequestId}; ignored";
        if (chunk.Shard < 0 || chunk.Shard >= _shards.Length || !sender.Equals(_shards[chunk.Shard]))
            return $"{what} came from {sender.Path}, which is not that shard; ignored";
        var k = chunk.Shard;
        var shard = _plan[k];
        if (chunk.StateBuffers != _stateNames.Length && Failure is null)
        {
            Failure = $"Shard {k} sends {chunk.StateBuffers} optimizer state buffers, and this gathering expects {_stateNames.Length} " +
                $"({(_stateNames.Length == 0 ? "none" : string.Join(", ", _stateNames))}): the shard and its owner run other optimizers or DistTrain versions.";
            return null;
        }
        if (Failure is not null) return $"{what} came after the gathering failed; ignored";
        if (Done(k)) return $"{what} came after shard {k}'s last buffer; ignored";
        if (chunk.Buffer != _buffer[k])
            return $"{what} is not of the buffer shard {k} is sending ({(_buffer[k] == 0 ? "the weights" : $"optimizer state buffer {_buffer[k] - 1}")}); ignored";
        var length = chunk.Buffer == 0 ? shard.Length : shard.TrainableLength;
        if (chunk.Total != length) return $"{what} is of a slice of {chunk.Total} values, and shard {k}'s has {length}; ignored";
        if (chunk.Offset != _received[k]) return $"{what} is not the next piece: {_received[k]} values of shard {k} have come; ignored";
        if (chunk.Values.Length == 0 || (long)chunk.Offset + chunk.Values.Length > length)
            return $"{what} does not lie within shard {k}'s slice of {length} values; ignored";
        if (chunk.Buffer == 0 && _received[k] == 0) (_versions[k], _steps[k]) = (chunk.Version, chunk.OptimizerSteps);
        else if (chunk.Version != _versions[k] || chunk.OptimizerSteps != _steps[k])
            return $"{what} is of version {chunk.Version} after {chunk.OptimizerSteps} optimizer steps, and its first piece of {_versions[k]} after " +
                $"{_steps[k]}; ignored";
        chunk.Values.CopyTo(chunk.Buffer == 0 ? _whole : _state[chunk.Buffer - 1], shard.Start + chunk.Offset);
        _received[k] += chunk.Values.Length;
        if (_received[k] == length)
        {
            _buffer[k]++;
            _received[k] = 0;
        }
        if (Enumerable.Range(0, _shards.Length).All(Done) && (_versions.Distinct().Count() > 1 || (WithOptimizerState && _steps.Distinct().Count() > 1)))
            Failure = (TornVersions = _versions.Distinct().Count() > 1)
                ? $"The shards' slices are of different versions ({string.Join(", ", _versions.Select((v, s) => $"shard {s}: {v}"))}): gather " +
                  "between parts, when every shard has applied the same rounds, or the weights would be torn."
                : $"The shards' optimizer step counts differ ({string.Join(", ", _steps.Select((v, s) => $"shard {s}: {v}"))}) at one version: the shards are out of step.";
        return null;
    }
}
