using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// The data plane of one shard node: the owner a <see cref="DataPlaneListener"/> is attached to on a node that runs one
/// <see cref="ParameterShardActor"/>. It makes one <see cref="WorkerLink"/> per worker slot up front (<see cref="WorkerLink.ForShard"/>),
/// which the part's <see cref="ShardPartStart"/> names as the workers, so the shard takes each worker's slices from its link and
/// sends its <see cref="ShardWeights"/> to it. A connection whose hello passes every check is attached to its slot's link;
/// any other gets a refusal frame naming the problem (<see cref="DataPlaneConnection.Refuse"/>) and is closed, and the refusal is
/// logged as a warning here.
/// </summary>
/// <remarks>
/// Every worker slot has its own data-plane token (<see cref="WorkerTokens"/>, as the parameter server's data plane gives each
/// registration its own), so a worker of the run cannot take another worker's slot. A hello is refused when it is a hello to a
/// parameter server, carries no token of this run, names another shard count or another shard than this node's, claims a
/// worker slot outside the run's, carries another slot's token than the one it claims, claims a slot already connected (or
/// whose connection was lost), or announces a slice of another length than this shard's. No refusal quotes a token. A lost
/// slot is never taken again: a worker restarted after its loss joins the job as a new worker, in a slot of its own, which the
/// shards were placed with (<see cref="RemoteShardSettings.WorkerSlotsFor"/>); a slot's link holds no buffers until its worker
/// connects.
/// </remarks>
public sealed class ShardDataPlane : ReceiveActor
{
    /// <summary>Asks for the links by worker slot; answered with <see cref="Links"/>.</summary>
    public sealed record GetLinks;

    /// <summary>The links by worker slot: the actors a <see cref="ShardPartStart"/> names as the workers.</summary>
    /// <param name="ByWorker">One link per worker slot, 0 to the run's slots - 1.</param>
    public sealed record Links(IActorRef[] ByWorker);

    private readonly ParameterShard _shard;
    private readonly int _shardCount;
    private readonly CompressedSlices? _compressed;
    private readonly WorkerTokens _tokens;
    private readonly IActorRef[] _links;
    private readonly HashSet<int> _connected = [];
    private readonly HashSet<int> _lost = [];
    private readonly ILoggingAdapter _log = Context.GetLogger();

    /// <summary>Creates the node's data plane; see <see cref="Props"/>.</summary>
    public ShardDataPlane(ParameterShard shard, int shardCount, IReadOnlyList<byte[]> workerTokens, CompressedSlices? compressed = null)
    {
        _shard = shard;
        _compressed = compressed;
        _shardCount = shardCount;
        _tokens = WorkerTokens.Of(workerTokens);
        _links = new IActorRef[workerTokens.Count];
        Receive<DataPlaneListener.Accepted>(OnConnection);
        Receive<DataPlaneListener.Rejected>(r => _log.Warning("Shard {0}: data plane: refused a connection from {1}: {2}", _shard.Index, r.Peer, r.Reason));
        Receive<GetLinks>(_ => Sender.Tell(new Links((IActorRef[])_links.Clone())));
        Receive<Terminated>(t =>
        {
            var slot = Array.IndexOf(_links, t.ActorRef);
            if (slot >= 0) _lost.Add(slot);
        });
    }

    /// <summary>Props of the data plane of the node of shard <paramref name="shard"/>.</summary>
    /// <param name="shard">This node's shard (<see cref="ParameterShards.Plan"/> of the model's layout and <paramref name="shardCount"/>).</param>
    /// <param name="shardCount">The run's shard count K.</param>
    /// <param name="workerTokens">The data-plane token of each of the run's worker slots, slot w's at index w (each
    /// <see cref="DataPlaneHello.TokenBytes"/> bytes, all different, copied): a hello for slot w must carry slot w's token. Their
    /// count is the run's worker slots, 1 to <see cref="UpdatePolicy.MaxWorkers"/>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="shard"/>, <paramref name="workerTokens"/> or one of its tokens is null.</exception>
    /// <exception cref="ArgumentException">The shard's index is not 0 to <paramref name="shardCount"/> - 1, <paramref name="shardCount"/>
    /// is not 1 to <see cref="ParameterShards.MaxShards"/>, there are no worker slots or more than <see cref="UpdatePolicy.MaxWorkers"/>,
    /// or a token is not <see cref="DataPlaneHello.TokenBytes"/> bytes or is another slot's too.</exception>
    /// <param name="compressed">Under Cluster:Compression, what the workers send: the trainable part of their slices encoded
    /// (<see cref="WorkerLink.ForShard"/>); null: float32.</param>
    public static Props Props(ParameterShard shard, int shardCount, IReadOnlyList<byte[]> workerTokens, CompressedSlices? compressed = null)
    {
        ArgumentNullException.ThrowIfNull(workerTokens);
        if (workerTokens.Count < 1 || workerTokens.Count > UpdatePolicy.MaxWorkers)
            throw new ArgumentException($"A run has 1 to {UpdatePolicy.MaxWorkers} worker slots, one token each; {workerTokens.Count} tokens were given.",
                nameof(workerTokens));
        for (var w = 0; w < workerTokens.Count; w++) CheckShard(shard, shardCount, workerTokens[w]);
        WorkerTokens.Of(workerTokens); // refuses a token shared by two slots here rather than in the actor
        byte[][] tokens = [.. workerTokens.Select(t => (byte[])t.Clone())];
        return Akka.Actor.Props.Create(() => new ShardDataPlane(shard, shardCount, tokens, compressed));
    }

    /// <summary>Checks a shard, the run's shard count and a worker slot's token, as both ends of a shard's connection take them.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="shard"/> or <paramref name="workerToken"/> is null.</exception>
    /// <exception cref="ArgumentException">The shard's index is not 0 to <paramref name="shardCount"/> - 1, <paramref name="shardCount"/>
    /// is not 1 to <see cref="ParameterShards.MaxShards"/>, or the token is not <see cref="DataPlaneHello.TokenBytes"/> bytes.</exception>
    internal static void CheckShard(ParameterShard shard, int shardCount, byte[] workerToken)
    {
        ArgumentNullException.ThrowIfNull(shard);
        ArgumentNullException.ThrowIfNull(workerToken);
        if (shardCount < 1 || shardCount > ParameterShards.MaxShards || shard.Index < 0 || shard.Index >= shardCount)
            throw new ArgumentException($"Shard {shard.Index} of {shardCount}: a run has 1 to {ParameterShards.MaxShards} shards, numbered from 0.", nameof(shard));
        if (workerToken.Length != DataPlaneHello.TokenBytes)
            throw new ArgumentException($"A worker's data-plane token has {DataPlaneHello.TokenBytes} bytes, not {workerToken.Length}.", nameof(workerToken));
    }

    /// <inheritdoc />
    protected override void PreStart()
    {
        for (var w = 0; w < _links.Length; w++) _links[w] = Context.Watch(Context.ActorOf(WorkerLink.ForShard(w, _shard, _compressed), $"worker-{w}"));
    }

    private void OnConnection(DataPlaneListener.Accepted accepted)
    {
        var hello = accepted.Hello;
        if (Refusal(hello) is { } refusal)
        {
            _log.Warning("Shard {0}: data plane: refused a connection from {1}: {2}; closed.", _shard.Index, accepted.Connection.Peer, refusal);
            accepted.Connection.Refuse($"shard {_shard.Index} of {_shardCount}: {refusal}.");
            return;
        }
        _connected.Add(hello.WorkerIndex);
        _log.Info("Shard {0}: data plane: worker {1} connected from {2} ({3})", _shard.Index, hello.WorkerIndex, accepted.Connection.Peer,
            accepted.Connection.Security);
        _links[hello.WorkerIndex].Tell(new WorkerLink.Attach(accepted.Connection));
    }

    /// <summary>Why <paramref name="hello"/> is refused here, or null.</summary>
    private string? Refusal(DataPlaneHello hello)
    {
        if (!hello.ToShard)
            return $"the hello is a worker's to a parameter server, and this is the data plane of shard {_shard.Index} of {_shardCount}: " +
                "connect to the parameter server's data port";
        // A token first: a peer without any of the run's learns nothing of its shard layout or worker slots.
        if (!_tokens.IsAny(hello.Token))
            return "the hello does not carry a token of this run (a worker of another run, or of a run that has ended)";
        if (hello.ShardCount != _shardCount)
            return $"the worker cuts the model into {hello.ShardCount} shards, and this run has {_shardCount}: every worker and shard of a run must use the same shard count";
        if (hello.Shard != _shard.Index)
            return $"the hello is for shard {hello.Shard}, and this node serves shard {_shard.Index}: connect to shard {hello.Shard}'s data port";
        if (hello.WorkerIndex < 0 || hello.WorkerIndex >= _links.Length)
            return $"it claims worker slot {hello.WorkerIndex}, and this run's slots are 0 to {_links.Length - 1}";
        if (!_tokens.Carries(hello))
            return $"it claims worker slot {hello.WorkerIndex} with another worker slot's token: each worker's hello carries its own slot's token, " +
                "and only the worker of that slot was given it (check the worker's index)";
        if (_lost.Contains(hello.WorkerIndex))
            return $"worker {hello.WorkerIndex}'s connection to this shard was lost in this run, and a lost slot is not taken again (a worker restarted after its loss joins the job as a new worker, in a slot of its own)";
        if (_connected.Contains(hello.WorkerIndex))
            return $"worker {hello.WorkerIndex} is already connected to this shard; the existing connection is kept";
        if (hello.ParameterCount != _shard.Length)
            return $"the worker announces a slice of {hello.ParameterCount} values, and shard {_shard.Index}'s slice [{_shard.Start}, {_shard.End}) has {_shard.Length}: " +
                "the worker and the shard cut the model differently (another model or shard count)";
        return null;
    }
}
