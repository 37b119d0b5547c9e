using Akka.Actor;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Security;
using DistTrain.Cluster.Training;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// The coordinator's side of placing a run's K shards on K shard nodes (docs/architecture.md, "Where the shards run"): it draws
/// one data-plane token per worker slot, makes one signed <see cref="HostShard"/> per shard node (shard k to host k), takes the
/// hosts' answers and, once every shard is hosted, gives each worker its <see cref="ShardServers"/> (every shard's endpoint and
/// its own slot's token) and each shard its <see cref="ShardPartStart"/> (its own node's links as the workers). A plain class
/// with no actor of its own: the coordinator that owns the shards sends the requests and hands it the answers, so the hosts
/// take the coordinator as the shards' owner.
/// </summary>
/// <remarks>
/// An answer, a refusal or a shard's failure is taken only from the host it was asked of and only if it is signed for this
/// placement's request (<see cref="ShardHost.IsGenuine(JobIdentity, ActorSystem, IActorRef, HostShard, ShardHosted)"/> and its
/// overloads); anything else (an actor that is not one of the hosts, a forged or stale message, a second answer of a host, a
/// refusal of an unsigned request) is ignored with a reason and changes nothing. A signed refusal, or a hosted shard's failure
/// before the placement is done, fails the placement with that host's reason. The shards already hosted then stay hosted until
/// the owner stops: the hosts watch it. The coordinator decides how long to wait; <see cref="Missing"/> names the hosts that have
/// not answered, for its error.
/// </remarks>
public sealed class ShardPlacement
{
    private readonly JobIdentity _identity;
    private readonly ActorSystem _system;
    private readonly IActorRef _owner;
    private readonly IActorRef[] _hosts;
    private readonly byte[][] _tokens;
    private readonly ShardHosted?[] _answers;
    private readonly bool[] _settled; // answered: hosted, refused, or failed
    private readonly ParameterVector _startingWeights;

    /// <summary>Draws the worker slots' tokens and makes the K requests.</summary>
    /// <param name="identity">The job's identity, which signs the requests and checks the answers.</param>
    /// <param name="system">The coordinator's actor system (its address goes into the proofs).</param>
    /// <param name="owner">The coordinator: it sends every request and starts every part, so it owns the shards.</param>
    /// <param name="jobId">The run's job id.</param>
    /// <param name="hosts">The shard nodes' <see cref="ShardHost"/>s, one per shard: host k hosts shard k. 1 to
    /// <see cref="ParameterShards.MaxShards"/>, all different.</param>
    /// <param name="workerSlots">The run's worker slots, 1 to <see cref="UpdatePolicy.MaxWorkers"/>: one token each.</param>
    /// <param name="startingWeights">The run's starting weights (whole model), whose slices' digests the hosts check.</param>
    /// <param name="serverSettings">The coordinator's <see cref="Hosting.ModelFingerprint.ServerSettingsOf"/>.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException">No host, more than <see cref="ParameterShards.MaxShards"/>, a host null, Nobody or named twice, or no
    /// worker slot or more than <see cref="UpdatePolicy.MaxWorkers"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The model has too few trainable parameters for K shards (<see cref="ParameterShards.Plan"/>).</exception>
    public ShardPlacement(JobIdentity identity, ActorSystem system, IActorRef owner, string jobId, IReadOnlyList<IActorRef> hosts, int workerSlots,
        ParameterVector startingWeights, string serverSettings)
    {
        ArgumentNullException.ThrowIfNull(identity);
        ArgumentNullException.ThrowIfNull(system);
        ArgumentNullException.ThrowIfNull(owner);
        ArgumentNullException.ThrowIfNull(jobId);
        ArgumentNullException.ThrowIfNull(hosts);
        ArgumentNullException.ThrowIfNull(startingWeights);
        ArgumentNullException.ThrowIfNull(serverSettings);
        if (hosts.Count is 0 or > ParameterShards.MaxShards)
            throw new ArgumentException($"A run places 1 to {ParameterShards.MaxShards} shards, one per shard node; {hosts.Count} hosts were given.", nameof(hosts));
        if (hosts.Any(host => host is null || host.IsNobody()))
            throw new ArgumentException("Every shard needs the ShardHost of a shard node; a host is null or Nobody.", nameof(hosts));
        if (hosts.Distinct().Count() != hosts.Count)
            throw new ArgumentException("A shard node hosts one shard at a time: every shard needs a host of its own, and a host is named twice.", nameof(hosts));
        if (workerSlots < 1 || workerSlots > UpdatePolicy.MaxWorkers)
            throw new ArgumentException($"A run has 1 to {UpdatePolicy.MaxWorkers} worker slots; {workerSlots} were given.", nameof(workerSlots));
        ParameterShards.Plan(startingWeights.Layout, hosts.Count); // refuses too many shards for the model here
        _identity = identity;
        _system = system;
        _owner = owner;
        _hosts = [.. hosts];
        _startingWeights = startingWeights;
        _tokens = [.. Enumerable.Range(0, workerSlots).Select(_ => DataPlaneHello.NewToken())];
        _answers = new ShardHosted?[_hosts.Length];
        _settled = new bool[_hosts.Length];
        Requests = [.. _hosts.Select((host, k) => ShardHost.Request(identity, system, owner, host, jobId, k, _hosts.Length, _tokens, startingWeights, serverSettings))];
    }

    /// <summary>The request of shard k, for host k, at index k: the owner sends each to its host.</summary>
    public IReadOnlyList<HostShard> Requests { get; }

    /// <summary>The hosts, by shard index.</summary>
    public IReadOnlyList<IActorRef> Hosts => _hosts;

    /// <summary>The shard count K.</summary>
    public int ShardCount => _hosts.Length;

    /// <summary>The run's worker slots.</summary>
    public int WorkerSlots => _tokens.Length;

    /// <summary>True once every shard is hosted.</summary>
    public bool Placed => Array.TrueForAll(_answers, answer => answer is not null);

    /// <summary>Why the placement failed (a host's refusal, naming the host and its reason), or null.</summary>
    public string? Failure { get; private set; }

    /// <summary>The hosts that have not answered yet (neither hosted nor refused their shard), by shard index, as
    /// <c>shard 1 (akka.tcp://...)</c>; empty once placed.</summary>
    public IReadOnlyList<string> Missing =>
        [.. Enumerable.Range(0, _hosts.Length).Where(k => !_settled[k]).Select(k => $"shard {k} ({_hosts[k].Path})")];

    /// <summary>
    /// Takes a host's answer (<see cref="ShardHosted"/>, <see cref="ShardHostRefused"/>, or <see cref="ShardFailed"/> for a shard
    /// that failed before the placement was done) from <paramref name="sender"/>: null when taken (check <see cref="Placed"/> and
    /// <see cref="Failure"/>), else why it was ignored, for a warning.
    /// </summary>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="answer"/> is none of the three.</exception>
    public string? Take(IActorRef sender, object answer)
    {
        ArgumentNullException.ThrowIfNull(sender);
        ArgumentNullException.ThrowIfNull(answer);
        var k = Array.IndexOf(_hosts, sender);
        var what = answer switch
        {
            ShardHosted hosted => $"an answer for shard {hosted.Shard}",
            ShardHostRefused refused => $"a refusal of shard {refused.Shard}",
            ShardFailed failed => $"a failure of shard {failed.Shard}",
            _ => throw new ArgumentException($"{answer.GetType().Name} is not a shard host's answer.", nameof(answer)),
        };
        if (k < 0) return $"{what} came from {sender.Path}, which is not one of the run's shard hosts; ignored";
        if (Failure is not null) return $"{what} came from {sender.Path} after the placement failed; ignored";
        if (_answers[k] is not null && answer is not ShardFailed) return $"{what} came from {sender.Path}, which already hosts shard {k}; ignored";
        switch (answer)
        {
            case ShardHosted hosted when hosted.Shard != k:
                return $"{what} came from {sender.Path}, which was asked for shard {k}; ignored";
            case ShardHosted hosted when !ShardHost.IsGenuine(_identity, _system, _owner, Requests[k], hosted):
                return $"{what} came from {sender.Path} without the job's proof for this run's request (another job's node, or an earlier " +
                    "request's answer); ignored";
            case ShardHosted hosted when hosted.Links.Length != _tokens.Length:
                return $"{what} came from {sender.Path} with {hosted.Links.Length} worker links for {_tokens.Length} worker slots; ignored";
            case ShardHosted hosted when hosted.ProtocolVersion != ClusterProtocolInfo.Version:
                return Fail(k, sender, $"hosts it, but {ClusterProtocolInfo.Mismatch("it", hosted.ProtocolVersion, "this parameter server")}");
            case ShardHosted hosted:
                _answers[k] = hosted;
                _settled[k] = true;
                return null;
            case ShardHostRefused refused when refused.Shard != k:
                return $"{what} came from {sender.Path}, which was asked for shard {k}; ignored";
            case ShardHostRefused refused when !ShardHost.IsGenuine(_identity, Requests[k], refused):
                return $"{what} came from {sender.Path} without the job's proof for this run's request ({refused.Reason.TrimEnd('.')}); ignored";
            case ShardHostRefused refused:
                return Fail(k, sender, $"refused it: {refused.Reason}");
            case ShardFailed failed when Placed:
                return $"{what} came from {sender.Path} after the placement was done: the owner handles it; ignored";
            case ShardFailed failed when !ShardHost.IsGenuine(_identity, Requests[k], failed):
                return $"{what} came from {sender.Path} without the job's proof for this run's request; ignored";
            case ShardFailed failed:
                return Fail(k, sender, $"stopped it: {failed.Reason}");
        }
        return null;
    }

    /// <summary>Fails the placement: shard <paramref name="k"/>'s node (<paramref name="sender"/>) <paramref name="what"/> it did.</summary>
    private string? Fail(int k, IActorRef sender, string what)
    {
        _settled[k] = true;
        Failure = $"Shard {k} of {_hosts.Length} could not be placed: the shard node {sender.Path.Address} {what}";
        return null;
    }

    /// <summary>What worker slot <paramref name="worker"/> is given to train against the placed shards.</summary>
    /// <param name="worker">The slot, 0 to <see cref="WorkerSlots"/> - 1.</param>
    /// <param name="certificates">The worker node's TLS identity; null for plain TCP.</param>
    /// <exception cref="InvalidOperationException">Not every shard is hosted yet.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="worker"/> is outside the slots.</exception>
    public ShardServers ServersFor(int worker, ClusterCertificates? certificates)
    {
        var answers = PlacedAnswers();
        ArgumentOutOfRangeException.ThrowIfNegative(worker);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(worker, _tokens.Length);
        return new ShardServers([.. answers.Select(a => a.Endpoint)], _tokens[worker], _startingWeights, certificates);
    }

    /// <summary>The shards' actors, by shard index.</summary>
    /// <exception cref="InvalidOperationException">Not every shard is hosted yet.</exception>
    public IActorRef[] Shards => [.. PlacedAnswers().Select(a => a.ShardActor)];

    /// <summary>
    /// The start of a part at shard <paramref name="shard"/>: its own node's links as the workers (a slot without a worker in
    /// the part, by <paramref name="inPart"/>, as <see cref="ActorRefs.Nobody"/>), every shard, and the loss arbiter.
    /// </summary>
    /// <param name="shard">The shard, 0 to K - 1.</param>
    /// <param name="epoch">1-based epoch.</param>
    /// <param name="inPart">By worker slot: whether the slot has a worker in the part.</param>
    /// <param name="roundsPerWorker">By worker slot: the round after its last minibatch in the part (its rounds, in a part that starts
    /// at round 0); 0 for a slot not in it (the shard would wait for ever for a slice from <see cref="ActorRefs.Nobody"/>).</param>
    /// <param name="stepsPerEpoch">Steps of the whole epoch as planned; 0: the most rounds of any worker.</param>
    /// <param name="arbiter">The part's <see cref="ShardLossArbiter"/>, or <see cref="ActorRefs.Nobody"/>.</param>
    /// <param name="part">The part's index in its epoch.</param>
    /// <param name="firstRound">The part's first round: 0, or later for a further part of the epoch (<see cref="ShardPartStart.FirstRound"/>).</param>
    /// <exception cref="InvalidOperationException">Not every shard is hosted yet.</exception>
    /// <exception cref="ArgumentNullException">A list or <paramref name="arbiter"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="shard"/> is not 0 to K - 1.</exception>
    /// <exception cref="ArgumentException">A list is not one entry per worker slot, or a slot not in the part has rounds.</exception>
    public ShardPartStart PartStart(int shard, int epoch, IReadOnlyList<bool> inPart, IReadOnlyList<int> roundsPerWorker, int stepsPerEpoch,
        IActorRef arbiter, int part = 0, int firstRound = 0)
    {
        var answers = PlacedAnswers();
        ArgumentNullException.ThrowIfNull(inPart);
        ArgumentNullException.ThrowIfNull(roundsPerWorker);
        ArgumentNullException.ThrowIfNull(arbiter);
        ArgumentOutOfRangeException.ThrowIfNegative(shard);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(shard, _hosts.Length);
        if (inPart.Count != _tokens.Length || roundsPerWorker.Count != _tokens.Length)
            throw new ArgumentException($"A part names each of the run's {_tokens.Length} worker slots once; {inPart.Count} slots and {roundsPerWorker.Count} " +
                "round counts were given.", nameof(inPart));
        for (var w = 0; w < _tokens.Length; w++)
            if (!inPart[w] && roundsPerWorker[w] != 0)
                throw new ArgumentException($"Worker slot {w} is not in the part but has {roundsPerWorker[w]} rounds: its shard would wait for ever for its slices.",
                    nameof(roundsPerWorker));
        var links = answers[shard].Links;
        IActorRef[] workers = [.. Enumerable.Range(0, _tokens.Length).Select(w => inPart[w] ? links[w] : ActorRefs.Nobody)];
        return new ShardPartStart(epoch, workers, [.. roundsPerWorker], stepsPerEpoch, [.. answers.Select(a => a.ShardActor)], arbiter, part, firstRound);
    }

    private ShardHosted[] PlacedAnswers() =>
        Placed ? [.. _answers.Select(a => a!)] : throw new InvalidOperationException($"Not every shard is hosted yet: waiting for {string.Join(", ", Missing)}.");
}
