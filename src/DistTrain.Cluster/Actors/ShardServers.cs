using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Security;
using DistTrain.Cluster.Training;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Actors;

/// <summary>One shard node's data plane (<see cref="ShardDataPlane"/>), as a worker connects to it.</summary>
/// <param name="Host">The shard node's data-plane host name or address.</param>
/// <param name="Port">Its data port, 1 to 65535.</param>
public sealed record ShardEndpoint(string Host, int Port)
{
    /// <summary><c>host:port</c>, as log lines and errors name the endpoint.</summary>
    public override string ToString() => $"{Host}:{Port}";
}

/// <summary>
/// The parameter-server shards a <see cref="Worker"/> trains against in its shard mode (docs/architecture.md, "Where the
/// shards run"): one data-plane endpoint per shard, by shard index, this worker's own data-plane token (its slot's, which every
/// shard node checks) and the whole model's starting weights. The shard count K is the number of endpoints; the slices are <see cref="ParameterShards.Plan"/>'s for the
/// starting weights' layout and K, the plan the shards use.
/// </summary>
public sealed record ShardServers
{
    /// <summary>Checks and keeps the shards' endpoints, the worker's token and the starting weights.</summary>
    /// <param name="endpoints">Shard k's data plane at index k; 1 to <see cref="ParameterShards.MaxShards"/> of them.</param>
    /// <param name="workerToken">This worker's own data-plane token (<see cref="DataPlaneHello.TokenBytes"/> bytes): the token of its
    /// worker slot, which every shard node checks against the slot the worker claims (<see cref="ShardDataPlane"/>); copied.</param>
    /// <param name="startingWeights">The whole model's starting weights (version 0): the frozen tensors, which no shard holds,
    /// are taken from them, and their layout is the one the slices are cut from.</param>
    /// <param name="certificates">The worker node's TLS identity; null for plain TCP.</param>
    /// <exception cref="ArgumentNullException">An argument but <paramref name="certificates"/> is null, or an endpoint is.</exception>
    /// <exception cref="ArgumentException">No endpoint or more than <see cref="ParameterShards.MaxShards"/>, an endpoint without a host or
    /// with a port outside 1 to 65535, a token that is not <see cref="DataPlaneHello.TokenBytes"/> bytes; the message names the problem.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The model has too few trainable parameters for K shards (<see cref="ParameterShards.Plan"/>).</exception>
    public ShardServers(IReadOnlyList<ShardEndpoint> endpoints, byte[] workerToken, ParameterVector startingWeights, ClusterCertificates? certificates)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(workerToken);
        ArgumentNullException.ThrowIfNull(startingWeights);
        if (endpoints.Count is 0 or > ParameterShards.MaxShards)
            throw new ArgumentException($"A worker's shard mode takes 1 to {ParameterShards.MaxShards} shard endpoints, one per shard; {endpoints.Count} were given.",
                nameof(endpoints));
        for (var k = 0; k < endpoints.Count; k++)
        {
            var endpoint = endpoints[k] ?? throw new ArgumentNullException(nameof(endpoints), $"Shard {k}'s endpoint is null.");
            if (string.IsNullOrWhiteSpace(endpoint.Host) || endpoint.Port is < 1 or > 65535)
                throw new ArgumentException($"Shard {k}'s endpoint '{endpoint}' needs a host and a port of 1 to 65535.", nameof(endpoints));
        }
        if (workerToken.Length != DataPlaneHello.TokenBytes)
            throw new ArgumentException($"A worker's data-plane token has {DataPlaneHello.TokenBytes} bytes, not {workerToken.Length}.", nameof(workerToken));
        Plan = ParameterShards.Plan(startingWeights.Layout, endpoints.Count);
        Endpoints = [.. endpoints];
        _workerToken = (byte[])workerToken.Clone();
        StartingWeights = startingWeights;
        Certificates = certificates;
    }

    /// <summary>Shard k's data plane at index k.</summary>
    public IReadOnlyList<ShardEndpoint> Endpoints { get; }

    /// <summary>The shard count K: the number of endpoints.</summary>
    public int Count => Endpoints.Count;

    /// <summary>The shards' slices, by shard index (<see cref="ParameterShards.Plan"/> of the starting weights' layout and K).</summary>
    public IReadOnlyList<ParameterShard> Plan { get; }

    private readonly byte[] _workerToken;

    /// <summary>This worker's own data-plane token, its slot's (<see cref="DataPlaneHello.TokenBytes"/> bytes); a copy at each read.</summary>
    public byte[] WorkerToken => (byte[])_workerToken.Clone();

    /// <summary>The whole model's starting weights (version 0).</summary>
    public ParameterVector StartingWeights { get; }

    /// <summary>The worker node's TLS identity; null for plain TCP.</summary>
    public ClusterCertificates? Certificates { get; }

    /// <summary>The time each shard connection's TCP connect, TLS handshake and hello have together, positive; null (the default):
    /// <see cref="DataPlaneListener.HandshakeTimeoutSeconds"/>. Tests set a shorter one.</summary>
    internal TimeSpan? ConnectTimeout { get; init; }
}

/// <summary>
/// What a cluster worker needs to take the shard nodes its run places (<see cref="Protocol.ShardServersAssigned"/>) and switch to
/// its shard mode: the job's identity and the run's id, which the message's proof must be for, and the node's TLS identity for
/// the shard connections.
/// </summary>
/// <param name="Identity">The job's identity.</param>
/// <param name="JobId">The run's job id, as the job host accepted the worker with it.</param>
/// <param name="Certificates">The worker node's TLS identity; null for plain TCP.</param>
public sealed record ShardDialing(JobIdentity Identity, string JobId, ClusterCertificates? Certificates);
