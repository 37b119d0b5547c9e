using System.Globalization;
using System.Security.Cryptography;
using Akka.Actor;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Security;
using DistTrain.Cluster.Training;
using DistTrain.Core.Diagnostics;
using MessagePack;

namespace DistTrain.Cluster.Protocol;

// The messages of parameter-server shards that run on nodes of their own (docs/architecture.md, "Where the shards run").
// Those that cross Akka.Remote do so as MessagePack (MessagePackMessageSerializer), and decoding refuses a field out of its
// range; a worker's slice (GradientComputed) and a shard's result (ShardWeights: its ShardWeightsHeader and the slice) go on
// the shard node's data plane instead.
//
// Parts and rounds:
//   owner (coordinator) -> ParameterShardActor        ShardPartStart
//   worker (its link) -> ParameterShardActor           GradientComputed (the worker's slice)
//   ParameterShardActor -> workers (their links)       ShardWeights (as ShardWeightsHeader and the slice on the data plane)
//   ParameterShardActor -> every shard                 ShardNormShare (with Optimizer:GradientClipNorm)
//   ParameterShardActor -> owner                       ShardRoundApplied, and ShardHealthSquares on measured steps
// A lost worker:
//   owner -> ShardLossArbiter                          WorkerLost
//   ShardLossArbiter -> every ParameterShardActor      ShardLossQuery, then ShardLossDecision
//   ParameterShardActor -> ShardLossArbiter            ShardLossAnswer
//   ShardLossArbiter -> the loss's reporter            ShardLossDecided
// Reading the weights back:
//   owner -> ParameterShardActor                       ShardSliceRequest
//   ParameterShardActor -> owner                       ShardSliceChunk
//
// Hosting one parameter-server shard on a shard node (docs/architecture.md, "Where the shards run"):
//   coordinator -> ShardHost (shard node)    HostShard
//   ShardHost -> coordinator                 ShardHosted | ShardHostRefused
//   ShardHost -> coordinator                 ShardFailed (the hosted shard stopped on a failure: a divergence, a fault), after
//                                            a divergence followed by ShardSliceChunks of the shard's last good weights
// The coordinator then starts parts at the shard (ShardPartStart) and gives its workers the data plane (ShardServers).

/// <summary>
/// A coordinator asks a shard node's <see cref="ShardHost"/> to host shard <see cref="Shard"/> of <see cref="ShardCount"/> for its
/// run; the sender is the shard's owner (<see cref="ParameterShardActor"/>'s, the only actor whose parts it starts). Build it with
/// <see cref="ShardHost.Request"/>. Crosses nodes as MessagePack; decoding refuses a field out of its range.
/// </summary>
/// <param name="JobId">The run's job id, for logs and the proofs.</param>
/// <param name="Shard">The shard's index, 0 to <see cref="ShardCount"/> - 1.</param>
/// <param name="ShardCount">The run's shard count K, 1 to <see cref="ParameterShards.MaxShards"/>.</param>
/// <param name="WorkerTokens">The worker slots' data-plane tokens, slot w's <see cref="DataPlaneHello.TokenBytes"/> bytes at
/// offset w × <see cref="DataPlaneHello.TokenBytes"/>: 1 to <see cref="UpdatePolicy.MaxWorkers"/> slots, each its own token.</param>
/// <param name="StartingDigest">SHA-256 of the shard's slice of the run's starting weights (<see cref="ShardHost.StartingDigest"/>):
/// the shard node builds its starting weights from its own settings and hosts the shard only if its slice has this digest.</param>
/// <param name="ServerSettings">The coordinator's <see cref="ModelFingerprint.ServerSettingsOf"/> (optimizer, epochs, Cluster:Compression):
/// the shard steps with the shard node's own and decodes the workers' slices by them, so they must be equal.</param>
/// <param name="Proof">HMAC-SHA256 under the job secret (<see cref="JobIdentity.ShardRequestProof"/>), over the sender's and the
/// shard host's paths too (with their nodes' addresses and the actors' uids).</param>
/// <param name="ProtocolVersion">The parameter server's <see cref="ClusterProtocolInfo.Version"/> (0 from a version before 11, which
/// did not send it): a shard node of another version refuses the request, naming both.</param>
[MessagePackObject]
public sealed record HostShard(
    [property: Key(0)] string JobId,
    [property: Key(1)] int Shard,
    [property: Key(2)] int ShardCount,
    [property: Key(3)] byte[] WorkerTokens,
    [property: Key(4)] byte[] StartingDigest,
    [property: Key(5)] string ServerSettings,
    [property: Key(6)] byte[] Proof,
    [property: Key(7)] int ProtocolVersion = 0) : IRangeCheckedMessage
{
    /// <summary>The worker slots the request names: <see cref="WorkerTokens"/>' length over <see cref="DataPlaneHello.TokenBytes"/>.</summary>
    [IgnoreMember]
    public int WorkerSlots => WorkerTokens.Length / DataPlaneHello.TokenBytes;

    /// <inheritdoc />
    public string? OutOfRange()
    {
        if (ShardWire.Within(nameof(ShardCount), ShardCount, 1, ParameterShards.MaxShards) is { } count) return count;
        if (ShardWire.Within(nameof(Shard), Shard, 0, ShardCount - 1) is { } shard) return shard;
        if (WorkerTokens.Length % DataPlaneHello.TokenBytes != 0 || WorkerSlots is 0 or > UpdatePolicy.MaxWorkers)
            return $"WorkerTokens holds {WorkerTokens.Length} bytes, not 1 to {UpdatePolicy.MaxWorkers} tokens of {DataPlaneHello.TokenBytes} bytes";
        if (StartingDigest.Length != SHA256.HashSizeInBytes) return $"StartingDigest holds {StartingDigest.Length} bytes, not {SHA256.HashSizeInBytes}";
        return Proof.Length != SHA256.HashSizeInBytes ? $"Proof holds {Proof.Length} bytes, not {SHA256.HashSizeInBytes}" : null;
    }
}

/// <summary>
/// A shard node hosts the requested shard: its actor, its data plane and the plane's links by worker slot (the actors a
/// <see cref="ShardPartStart"/> to this shard names as the workers). ShardHost → coordinator. Check it with
/// <see cref="ShardHost.IsGenuine(JobIdentity, ActorSystem, IActorRef, HostShard, ShardHosted)"/> before using it.
/// </summary>
/// <param name="JobId">The request's job id.</param>
/// <param name="Shard">The shard's index, 0 to <see cref="ParameterShards.MaxShards"/> - 1.</param>
/// <param name="ShardActor">The <see cref="ParameterShardActor"/>, owned by the request's sender.</param>
/// <param name="DataHost">The host name or address the workers connect the shard's data plane to.</param>
/// <param name="DataPort">The data plane's port, 1 to 65535.</param>
/// <param name="Links">The data plane's link of each worker slot, slot w's at index w: one per slot of the request.</param>
/// <param name="Proof">HMAC-SHA256 under the job secret (<see cref="JobIdentity.ShardHostedProof"/>), over the request's proof too, so
/// an answer is genuine only for the request it answers.</param>
/// <param name="ProtocolVersion">The shard node's <see cref="ClusterProtocolInfo.Version"/> (0 from a version before 11, which did not
/// send it): the placement fails on another version than the parameter server's, naming both, since such a node could host the
/// shard and still not do what the run needs of it (version 10 sends no checkpoint within an epoch).</param>
[MessagePackObject]
public sealed record ShardHosted(
    [property: Key(0)] string JobId,
    [property: Key(1)] int Shard,
    [property: Key(2)] IActorRef ShardActor,
    [property: Key(3)] string DataHost,
    [property: Key(4)] int DataPort,
    [property: Key(5)] IActorRef[] Links,
    [property: Key(6)] byte[] Proof,
    [property: Key(7)] int ProtocolVersion = 0) : IRangeCheckedMessage
{
    /// <summary>The endpoint a worker's <see cref="ShardServers"/> names for this shard.</summary>
    [IgnoreMember]
    public ShardEndpoint Endpoint => new(DataHost, DataPort);

    /// <inheritdoc />
    public string? OutOfRange() => ShardWire.Shard(Shard) ?? ShardWire.Within(nameof(DataPort), DataPort, 1, 65535)
        ?? (string.IsNullOrWhiteSpace(DataHost) ? "DataHost is empty" : null)
        ?? (Links.Length is 0 or > UpdatePolicy.MaxWorkers ? $"Links holds {Links.Length} links, outside 1 to {UpdatePolicy.MaxWorkers}" : null)
        ?? (Proof.Length != SHA256.HashSizeInBytes ? $"Proof holds {Proof.Length} bytes, not {SHA256.HashSizeInBytes}" : null);
}

/// <summary>A shard node does not host the requested shard; <paramref name="Reason"/> names the problem and the fix. ShardHost → coordinator.</summary>
/// <param name="Shard">The requested shard's index, 0 to <see cref="ParameterShards.MaxShards"/> - 1.</param>
/// <param name="Reason">Why, for the coordinator's log and error.</param>
/// <param name="Proof">For a request signed with the job's secret, HMAC-SHA256 over the request's proof, the shard and the reason
/// (<see cref="JobIdentity.ShardRefusalProof"/>), so only the host asked can fail a placement, and only for that request; empty for
/// a request that was not signed (<see cref="ShardHost.IsGenuine(JobIdentity, HostShard, ShardHostRefused)"/>).</param>
[MessagePackObject]
public sealed record ShardHostRefused([property: Key(0)] int Shard, [property: Key(1)] string Reason, [property: Key(2)] byte[] Proof) : IRangeCheckedMessage
{
    /// <inheritdoc />
    public string? OutOfRange() => ShardWire.Shard(Shard)
        ?? (Proof.Length is not (0 or SHA256.HashSizeInBytes) ? $"Proof holds {Proof.Length} bytes, not 0 or {SHA256.HashSizeInBytes}" : null);
}

/// <summary>The hosted shard stopped on a failure (its exception's message: a divergence names the epoch, step and advice); the
/// shard node has released it. ShardHost → the shard's owner. A shard that diverged (<see cref="TrainingDivergedException"/>) is
/// told with the divergence's epoch, step and last good version, and when it held the last good weights its host sends its
/// slice of them right after this, as <see cref="ShardSliceChunk"/>s of request <see cref="ShardSliceChunk.LastGoodRequestId"/>
/// (docs/architecture.md, "Where the shards run").</summary>
/// <param name="JobId">The job id of the request the shard was hosted for.</param>
/// <param name="Shard">The shard's index, 0 to <see cref="ParameterShards.MaxShards"/> - 1.</param>
/// <param name="Reason">The failure; for a divergence, the shard's <see cref="TrainingDivergedException"/> message as it is.</param>
/// <param name="Proof">HMAC-SHA256 over the hosting request's proof, the shard, the reason and the divergence's fields
/// (<see cref="JobIdentity.ShardFailureProof"/>): only the host can say its shard failed
/// (<see cref="ShardHost.IsGenuine(JobIdentity, HostShard, ShardFailed)"/>).</param>
/// <param name="DivergedEpoch">The epoch of the step that diverged, from 1; 0 when the failure is not a divergence.</param>
/// <param name="DivergedStep">That step within its epoch, from 1 (<see cref="TrainingDivergedException.Step"/>); 0 when not a divergence.</param>
/// <param name="LossFinite">Whether a finite loss was computed on the last good weights (<see cref="TrainingDivergedException.LossFinite"/>:
/// false when they are the weights the failed step itself computed on); true when the failure is not a divergence.</param>
/// <param name="LastGoodVersion">The version of the last good weights whose slice follows, 0 or more; -1 when none follows.</param>
[MessagePackObject]
public sealed record ShardFailed([property: Key(0)] string JobId, [property: Key(1)] int Shard, [property: Key(2)] string Reason,
    [property: Key(3)] byte[] Proof, [property: Key(4)] int DivergedEpoch = 0, [property: Key(5)] int DivergedStep = 0,
    [property: Key(6)] bool LossFinite = true, [property: Key(7)] long LastGoodVersion = -1) : IRangeCheckedMessage
{
    /// <summary>True when the shard stopped on a divergence.</summary>
    [IgnoreMember] public bool Diverged => DivergedEpoch > 0;

    /// <summary>The divergence's fields as one text, which the proof covers; empty when the failure is not a divergence.</summary>
    [IgnoreMember] public string DivergenceFields => Diverged
        ? string.Create(CultureInfo.InvariantCulture, $"epoch {DivergedEpoch}, step {DivergedStep}, loss finite {LossFinite}, last good version {LastGoodVersion}")
        : "";

    /// <inheritdoc />
    public string? OutOfRange() => ShardWire.Shard(Shard)
        ?? (Proof.Length != SHA256.HashSizeInBytes ? $"Proof holds {Proof.Length} bytes, not {SHA256.HashSizeInBytes}" : null)
        ?? ShardWire.AtLeast(nameof(DivergedEpoch), DivergedEpoch, 0) ?? ShardWire.AtLeast(nameof(DivergedStep), DivergedStep, 0)
        ?? ShardWire.AtLeast(nameof(LastGoodVersion), LastGoodVersion, -1)
        ?? (!Diverged && (DivergedStep != 0 || LastGoodVersion != -1 || !LossFinite) ? "DivergedStep, LossFinite and LastGoodVersion are set without a DivergedEpoch" : null)
        ?? (Diverged && DivergedStep == 0 ? "DivergedStep is 0 for a divergence; a step counts from 1" : null);
}

/// <summary>
/// Starts a part of an epoch at a <see cref="ParameterShardActor"/>: the workers whose slices it takes, their rounds, the
/// other shards it exchanges gradient norms with, and the loss arbiter whose questions and decisions it takes. A shard takes
/// it only from the run's owner it was made with (<see cref="ParameterShardActor.Props"/>). The shard
/// answers by sending every worker its slice of the current weights as round <see cref="FirstRound"/> - 1 (<see cref="ShardWeights"/>),
/// the weights the part's first round is computed on. Crosses nodes as MessagePack, its actors as their paths (with the node's address under
/// remoting); decoding refuses a field out of its range.
/// </summary>
/// <param name="Epoch">1-based epoch; the workers' slices must carry it.</param>
/// <param name="Workers">By worker slot, 1 to <see cref="UpdatePolicy.MaxWorkers"/> slots: the worker's actor, the only sender
/// whose slices the slot takes and a receiver of every result; <see cref="ActorRefs.Nobody"/> for an empty slot.</param>
/// <param name="RoundsPerWorker">By worker slot, one per entry of <paramref name="Workers"/>: the round after the worker's last
/// minibatch in the part (<see cref="StartEpoch.BatchesPerWorker"/>), 0 for an empty slot, else after <paramref name="FirstRound"/>.
/// In a part that starts at round 0 this is the worker's count of minibatches.</param>
/// <param name="StepsPerEpoch">Steps of the whole epoch as planned (the learning-rate schedule's unit), from 0; 0: the most rounds of any worker.</param>
/// <param name="Shards">Every shard of the run, by shard index (this one included), 1 to <see cref="ParameterShards.MaxShards"/>:
/// with Optimizer:GradientClipNorm each sends them its part of the gradient's squared norm, and takes a part only from the
/// actor at the index the part names.</param>
/// <param name="Arbiter">The part's <see cref="ShardLossArbiter"/>: the only sender whose <see cref="ShardLossQuery"/> the shard
/// answers and whose <see cref="ShardLossDecision"/> it applies; <see cref="ActorRefs.Nobody"/> for a part in which no lost
/// worker is decided (every question and decision is then refused).</param>
/// <param name="Part">Which part of <paramref name="Epoch"/> this is, from 0 (<see cref="StartEpoch.Part"/>). With the epoch it
/// identifies the part: every <see cref="ShardLossQuery"/> and <see cref="ShardLossDecision"/> names both, and the shard
/// refuses one of another part.</param>
/// <param name="FirstRound">The part's first round, from 0: 0 for an epoch's first part, later for a further part that trains the
/// samples a lost worker left (<see cref="StartEpoch.FirstRound"/>). The workers' minibatches run from it.</param>
/// <param name="CheckpointEverySteps">Checkpoint:EverySteps for this part, 0 or more; 0: no checkpoint within it. Otherwise the shard
/// sends the owner its slice of the weights and of every optimizer state buffer at each version that is a positive multiple of it,
/// above the version the part starts at (<see cref="ShardSliceChunk"/>s of request <paramref name="CheckpointRequestId"/>), once
/// that version is final: when the part's next round closes, since a lost worker's decision can redo only the newest step. So the
/// version of the part's last round is not sent (the epoch's end writes its checkpoint), and after a lost worker's decision the
/// shard sends none for the rest of the part (the owner writes none after a loss).</param>
/// <param name="CheckpointRequestId">The request number the slices of <paramref name="CheckpointEverySteps"/> carry, 0 or more.</param>
/// <param name="GradientNormEverySteps">Monitoring:GradientNormEverySteps of the run, 0 or more; 0: no measurement. Otherwise the
/// shard measures its slices of the per-tensor norms on every step whose new version is a multiple of it and sends them to the
/// owner (<see cref="ShardHealthSquares"/>).</param>
/// <param name="ScalingWorkers">The workers of Optimizer:ScaleLearningRateByWorkers' linear scaling rule, 0 to
/// <see cref="UpdatePolicy.MaxWorkers"/>: with Training:KeepGlobalBatch the workers the epoch's global minibatch was planned
/// for, as one parameter server scales by them (<see cref="ServerModel"/>'s scalingWorkers), also after a loss or in a resume
/// with fewer workers; 0 scales by the workers in the part.</param>
/// <param name="KeepGlobalBatch">Training:KeepGlobalBatch (<see cref="StartEpoch.KeepGlobalBatch"/>): a worker lost in this part with
/// minibatches left ends the part for every worker after the decision's round (<see cref="LossDecision.ApplyTo"/>); the shard's
/// results carry that end (<see cref="ShardWeights.EndRound"/>), and the owner hands it to the coordinator
/// (<see cref="WorkerRemoved.OthersCutFrom"/>), which plans the rest at the global minibatch.</param>
[MessagePackObject]
public sealed record ShardPartStart(
    [property: Key(0)] int Epoch,
    [property: Key(1)] IActorRef[] Workers,
    [property: Key(2)] int[] RoundsPerWorker,
    [property: Key(3)] int StepsPerEpoch,
    [property: Key(4)] IActorRef[] Shards,
    [property: Key(5)] IActorRef Arbiter,
    [property: Key(6)] int Part = 0,
    [property: Key(7)] int FirstRound = 0,
    [property: Key(8)] int CheckpointEverySteps = 0,
    [property: Key(9)] int CheckpointRequestId = 0,
    [property: Key(10)] int GradientNormEverySteps = 0,
    [property: Key(11)] int ScalingWorkers = 0,
    [property: Key(12)] bool KeepGlobalBatch = false) : IRangeCheckedMessage
{
    /// <inheritdoc />
    public string? OutOfRange()
    {
        if (ShardWire.AtLeast(nameof(Epoch), Epoch, 1) is { } epoch) return epoch;
        if (ShardWire.AtLeast(nameof(FirstRound), FirstRound, 0) is { } first) return first;
        if (Workers.Length is 0 or > UpdatePolicy.MaxWorkers) return $"Workers holds {Workers.Length} worker slots, outside 1 to {UpdatePolicy.MaxWorkers}";
        if (RoundsPerWorker.Length != Workers.Length)
            return $"RoundsPerWorker holds {RoundsPerWorker.Length} round counts for {Workers.Length} worker slots; it needs one per slot";
        for (var i = 0; i < RoundsPerWorker.Length; i++)
        {
            if (ShardWire.AtLeast($"RoundsPerWorker[{i}]", RoundsPerWorker[i], 0) is { } rounds) return rounds;
            if (RoundsPerWorker[i] > 0 && RoundsPerWorker[i] <= FirstRound)
                return $"RoundsPerWorker[{i}] is {RoundsPerWorker[i]}, which does not end after the part's FirstRound {FirstRound}: a slot's end round is 0 or after it";
        }
        if (ShardWire.AtLeast(nameof(StepsPerEpoch), StepsPerEpoch, 0) is { } steps) return steps;
        if (ShardWire.AtLeast(nameof(Part), Part, 0) is { } part) return part;
        if (ShardWire.AtLeast(nameof(CheckpointEverySteps), CheckpointEverySteps, 0) is { } every) return every;
        if (ShardWire.AtLeast(nameof(CheckpointRequestId), CheckpointRequestId, 0) is { } request) return request;
        if (ShardWire.AtLeast(nameof(GradientNormEverySteps), GradientNormEverySteps, 0) is { } norms) return norms;
        if (ScalingWorkers is < 0 or > UpdatePolicy.MaxWorkers) return $"ScalingWorkers is {ScalingWorkers}, outside 0 to {UpdatePolicy.MaxWorkers}";
        return Shards.Length is 0 or > ParameterShards.MaxShards ? $"Shards holds {Shards.Length} shards, outside 1 to {ParameterShards.MaxShards}" : null;
    }
}

/// <summary>
/// One shard's slice of the weights after a round, to every worker (<see cref="ParameterShardActor"/>). A worker takes a
/// round's whole weights only from one of these per shard, all of that round and one <see cref="Stamp"/>
/// (<see cref="ShardedReplicaLink"/>).
/// </summary>
/// <param name="Shard">The shard's index.</param>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="Round">The round the weights are the result of; the part's first round - 1 for the part's starting weights (-1 in an
/// epoch's first part).</param>
/// <param name="Stamp">The number of loss decisions that dropped a slice the shard has applied in this part (<see cref="ShardRoundLedger{TReport}.Stamp"/>).</param>
/// <param name="Version">Optimizer steps the shard has applied: the weights' version.</param>
/// <param name="Weights">The slice <c>[Start, End)</c> of the flat vector (<see cref="ParameterShard"/>): trainable weights,
/// and for the last shard the running statistics after them. A copy the receivers may keep but must not write: the shard
/// keeps its two newest as the last good weights should a step diverge.</param>
/// <param name="Part">The part of <paramref name="Epoch"/> the weights belong to, from 0 (<see cref="ShardPartStart.Part"/>): a worker
/// tells a further part's results (the samples a lost worker left) from the last part's by it.</param>
/// <param name="EndRound">The part's end as the shard knows it (<see cref="ShardRoundLedger{TReport}.EndRound"/>): a worker computes no
/// round from it. <see cref="int.MaxValue"/> until Training:KeepGlobalBatch cuts the part after a loss; a worker takes the lowest of
/// a round's K results, since a shard that closed the round before the decision sent the old end.</param>
public sealed record ShardWeights(int Shard, int Epoch, int Round, int Stamp, long Version, float[] Weights, int Part = 0, int EndRound = int.MaxValue)
    : INoSerializationVerificationNeeded
{
    /// <summary>The message without its slice, as it crosses nodes: the slice goes on the data plane.</summary>
    public ShardWeightsHeader Header => new(Shard, Epoch, Round, Stamp, Version, Weights.Length, Part, EndRound);

    /// <summary>The message of <paramref name="header"/> with the slice that came with it.</summary>
    /// <exception cref="ArgumentException"><paramref name="weights"/> does not hold the header's <see cref="ShardWeightsHeader.Length"/> values.</exception>
    public static ShardWeights Of(ShardWeightsHeader header, float[] weights)
    {
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(weights);
        if (weights.Length != header.Length)
            throw new ArgumentException($"Shard {header.Shard}'s result of epoch {header.Epoch} round {header.Round} announces {header.Length} values, " +
                $"and {weights.Length} came with it: the header and the slice are of different messages.", nameof(weights));
        return new ShardWeights(header.Shard, header.Epoch, header.Round, header.Stamp, header.Version, weights, header.Part, header.EndRound);
    }
}

/// <summary>
/// <see cref="ShardWeights"/> without its slice: what crosses nodes through Akka (the slice, a tensor, goes on the data plane,
/// docs/architecture.md "Why tensors travel on a data plane beside Akka.Remote"); <see cref="ShardWeights.Of"/> puts the two
/// back together.
/// </summary>
/// <param name="Shard">The shard's index, 0 to <see cref="ParameterShards.MaxShards"/> - 1.</param>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="Round">The round the weights are the result of, from -1 (the part's starting weights are its first round - 1).</param>
/// <param name="Stamp">The shard's stamp (<see cref="ShardRoundLedger{TReport}.Stamp"/>): 0 to <see cref="UpdatePolicy.MaxWorkers"/>, one per lost worker.</param>
/// <param name="Version">Optimizer steps the shard has applied, from 0.</param>
/// <param name="Length">Values of the slice: 1 to 2^28 - 1 (the data plane's largest tensor).</param>
/// <param name="Part">The part of the epoch, from 0 (<see cref="ShardWeights.Part"/>).</param>
/// <param name="EndRound">The part's end as the shard knows it, above <paramref name="Round"/> (<see cref="ShardWeights.EndRound"/>).</param>
[MessagePackObject]
public sealed record ShardWeightsHeader(
    [property: Key(0)] int Shard,
    [property: Key(1)] int Epoch,
    [property: Key(2)] int Round,
    [property: Key(3)] int Stamp,
    [property: Key(4)] long Version,
    [property: Key(5)] int Length,
    [property: Key(6)] int Part = 0,
    [property: Key(7)] int EndRound = int.MaxValue) : IRangeCheckedMessage
{
    /// <inheritdoc />
    public string? OutOfRange() => ShardWire.Shard(Shard) ?? ShardWire.AtLeast(nameof(Epoch), Epoch, 1) ?? ShardWire.AtLeast(nameof(Round), Round, -1)
        ?? ShardWire.Stamp(Stamp) ?? ShardWire.AtLeast(nameof(Version), Version, 0) ?? ShardWire.Within(nameof(Length), Length, 1, DataPlane.TensorFrame.MaxCount)
        ?? ShardWire.AtLeast(nameof(Part), Part, 0) ?? ShardWire.AtLeast(nameof(EndRound), EndRound, (long)Round + 1);
}

/// <summary>
/// The shard nodes a worker trains against, sent once their shards are placed, or to a worker that joins the running job with the
/// first part it is in (<see cref="Actors.RemoteShardedParameterServer"/>, through the worker's link, before the worker's first weights): every shard's data-plane endpoint, by shard index, the worker
/// slot's token, which every shard node checks, and the digest of the run's starting weights, which the worker's own must have
/// (the frozen tensors, which no shard holds, come from the worker's). The worker takes it only with the job's proof for its
/// job and slot, and only before it holds any weights; it then trains in its shard mode (<see cref="Actors.ShardServers"/>).
/// Parameter server → Worker. Crosses nodes as MessagePack; decoding refuses a field out of its range.
/// </summary>
/// <param name="JobId">The run's job id (the worker's <see cref="WorkerAccepted.JobId"/>).</param>
/// <param name="WorkerIndex">The worker slot, 0 to <see cref="UpdatePolicy.MaxWorkers"/> - 1.</param>
/// <param name="Hosts">Shard k's data-plane host at index k, 1 to <see cref="ParameterShards.MaxShards"/> of them.</param>
/// <param name="Ports">Shard k's data port at index k, 1 to 65535, one per host.</param>
/// <param name="Token">The slot's data-plane token, <see cref="DataPlaneHello.TokenBytes"/> bytes.</param>
/// <param name="StartingDigest">SHA-256 of the run's starting weights, the whole vector's floats as bytes (<see cref="DigestOf"/>).</param>
/// <param name="Proof">HMAC-SHA256 under the job secret (<see cref="JobIdentity.ShardServersProof"/>).</param>
[MessagePackObject]
public sealed record ShardServersAssigned(
    [property: Key(0)] string JobId,
    [property: Key(1)] int WorkerIndex,
    [property: Key(2)] string[] Hosts,
    [property: Key(3)] int[] Ports,
    [property: Key(4)] byte[] Token,
    [property: Key(5)] byte[] StartingDigest,
    [property: Key(6)] byte[] Proof) : IRangeCheckedMessage
{
    /// <summary>The endpoints, by shard index.</summary>
    [IgnoreMember]
    public IReadOnlyList<ShardEndpoint> Endpoints => [.. Hosts.Zip(Ports, (host, port) => new ShardEndpoint(host, port))];

    /// <summary>SHA-256 of <paramref name="weights"/>' values as bytes.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="weights"/> is null.</exception>
    public static byte[] DigestOf(Core.Tensors.ParameterVector weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        return SHA256.HashData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(weights.Values.AsSpan()));
    }

    /// <summary>The message for worker slot <paramref name="workerIndex"/> of run <paramref name="jobId"/>: the placement's endpoints and
    /// the slot's token, with the digest of <paramref name="startingWeights"/>, signed.</summary>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    public static ShardServersAssigned Signed(JobIdentity identity, string jobId, int workerIndex, IReadOnlyList<ShardEndpoint> endpoints, byte[] token,
        Core.Tensors.ParameterVector startingWeights)
    {
        ArgumentNullException.ThrowIfNull(identity);
        ArgumentNullException.ThrowIfNull(jobId);
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(token);
        string[] hosts = [.. endpoints.Select(e => e.Host)];
        int[] ports = [.. endpoints.Select(e => e.Port)];
        var digest = DigestOf(startingWeights);
        return new ShardServersAssigned(jobId, workerIndex, hosts, ports, token, digest, identity.ShardServersProof(jobId, workerIndex, hosts, ports, token, digest));
    }

    /// <summary>True when <see cref="Proof"/> is the job's for this run, slot, endpoints, token and digest.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="identity"/> is null.</exception>
    public bool IsGenuine(JobIdentity identity)
    {
        ArgumentNullException.ThrowIfNull(identity);
        return JobIdentity.Matches(Proof, identity.ShardServersProof(JobId, WorkerIndex, Hosts, Ports, Token, StartingDigest));
    }

    /// <inheritdoc />
    public string? OutOfRange()
    {
        if (ShardWire.Worker(WorkerIndex) is { } worker) return worker;
        if (Hosts.Length is 0 or > ParameterShards.MaxShards) return $"Hosts holds {Hosts.Length} shard endpoints, outside 1 to {ParameterShards.MaxShards}";
        if (Ports.Length != Hosts.Length) return $"Ports holds {Ports.Length} ports for {Hosts.Length} hosts; it needs one per host";
        for (var k = 0; k < Hosts.Length; k++)
        {
            if (string.IsNullOrWhiteSpace(Hosts[k])) return $"Hosts[{k}] is empty";
            if (ShardWire.Within($"Ports[{k}]", Ports[k], 1, 65535) is { } port) return port;
        }
        if (Token.Length != DataPlaneHello.TokenBytes) return $"Token holds {Token.Length} bytes, not {DataPlaneHello.TokenBytes}";
        if (StartingDigest.Length != SHA256.HashSizeInBytes) return $"StartingDigest holds {StartingDigest.Length} bytes, not {SHA256.HashSizeInBytes}";
        return Proof.Length != SHA256.HashSizeInBytes ? $"Proof holds {Proof.Length} bytes, not {SHA256.HashSizeInBytes}" : null;
    }
}

/// <summary>The ranges of the shards' messages that cross nodes (<see cref="IRangeCheckedMessage.OutOfRange"/>).</summary>
internal static class ShardWire
{
    /// <summary>A problem when <paramref name="value"/> is outside <c>[min, max]</c>, else null.</summary>
    public static string? Within(string field, long value, long min, long max) =>
        value < min || value > max ? $"{field} {value} is outside {min} to {max}" : null;

    /// <summary>A problem when <paramref name="value"/> is below <paramref name="min"/>, else null.</summary>
    public static string? AtLeast(string field, long value, long min) => value < min ? $"{field} {value} is below {min}" : null;

    /// <summary>A shard index outside 0 to <see cref="ParameterShards.MaxShards"/> - 1.</summary>
    public static string? Shard(int shard) => Within(nameof(Shard), shard, 0, ParameterShards.MaxShards - 1);

    /// <summary>A worker slot outside 0 to <see cref="UpdatePolicy.MaxWorkers"/> - 1.</summary>
    public static string? Worker(int worker) => Within(nameof(Worker), worker, 0, UpdatePolicy.MaxWorkers - 1);

    /// <summary>A loss decision's worker slot outside 0 to <see cref="UpdatePolicy.MaxWorkers"/> - 1, or its round below 0.</summary>
    public static string? Decision(LossDecision decision) => Worker(decision.Worker) ?? AtLeast(nameof(decision.Round), decision.Round, 0);

    /// <summary>A stamp outside 0 to <see cref="UpdatePolicy.MaxWorkers"/> (one per lost worker of a part).</summary>
    public static string? Stamp(int stamp) => Within(nameof(Stamp), stamp, 0, UpdatePolicy.MaxWorkers);

    /// <summary>A part's epoch below 1 or its index below 0.</summary>
    public static string? PartOf(int epoch, int part) => AtLeast("Epoch", epoch, 1) ?? AtLeast("Part", part, 0);
}

/// <summary>The coordinator's question to a shard about a lost worker (<see cref="ShardRoundLedger{TReport}.Query"/>); answered with
/// <see cref="ShardLossAnswer"/>. A shard answers it only from the part's <see cref="ShardPartStart.Arbiter"/>, and only about
/// the part it runs (<see cref="Epoch"/> and <see cref="Part"/>): a late question of an earlier part would make it refuse a
/// worker's slices in the next.</summary>
/// <param name="Worker">The lost worker's slot, 0 to <see cref="UpdatePolicy.MaxWorkers"/> - 1.</param>
/// <param name="Epoch">The 1-based epoch of the part the worker was lost in (<see cref="ShardPartStart.Epoch"/>).</param>
/// <param name="Part">The index of that part in its epoch, from 0 (<see cref="ShardPartStart.Part"/>).</param>
[MessagePackObject]
public sealed record ShardLossQuery([property: Key(0)] int Worker, [property: Key(1)] int Epoch, [property: Key(2)] int Part) : IRangeCheckedMessage
{
    /// <inheritdoc />
    public string? OutOfRange() => ShardWire.Worker(Worker) ?? ShardWire.PartOf(Epoch, Part);
}

/// <summary>A shard's answer to <see cref="ShardLossQuery"/>.</summary>
/// <param name="Shard">The answering shard's index, 0 to <see cref="ParameterShards.MaxShards"/> - 1.</param>
/// <param name="Answer">Its answer: a worker slot 0 to <see cref="UpdatePolicy.MaxWorkers"/> - 1, an open round from 0.</param>
[MessagePackObject]
public sealed record ShardLossAnswer([property: Key(0)] int Shard, [property: Key(1)] LossAnswer Answer) : IRangeCheckedMessage
{
    /// <inheritdoc />
    public string? OutOfRange() => ShardWire.Shard(Shard) ?? ShardWire.Worker(Answer.Worker) ?? ShardWire.AtLeast(nameof(Answer.OpenRound), Answer.OpenRound, 0);
}

/// <summary>The decision about a lost worker every shard applies (<see cref="ShardRoundLedger{TReport}.ApplyLoss"/>), from <see cref="ShardLossArbiter"/>;
/// a shard applies it only from the part's <see cref="ShardPartStart.Arbiter"/>, and only to the part it runs
/// (<see cref="Epoch"/> and <see cref="Part"/>): a late decision of an earlier part would close or redo a round of the next.</summary>
/// <param name="Decision">The decision: a worker slot 0 to <see cref="UpdatePolicy.MaxWorkers"/> - 1, a round from 0.</param>
/// <param name="Epoch">The 1-based epoch of the part the decision is about (<see cref="ShardPartStart.Epoch"/>).</param>
/// <param name="Part">The index of that part in its epoch, from 0 (<see cref="ShardPartStart.Part"/>).</param>
[MessagePackObject]
public sealed record ShardLossDecision([property: Key(0)] LossDecision Decision, [property: Key(1)] int Epoch, [property: Key(2)] int Part) : IRangeCheckedMessage
{
    /// <inheritdoc />
    public string? OutOfRange() => ShardWire.Decision(Decision) ?? ShardWire.PartOf(Epoch, Part);
}

/// <summary>
/// A shard's slices of the per-tensor diagnostics of one measured step (<see cref="ShardPartStart.GradientNormEverySteps"/>), to the
/// owner: for each trainable tensor that overlaps the shard's slice, in the slice's order, the sums of squares of its part of
/// the averaged gradient, of the weights after the step and of the step's update (<see cref="TensorSquares"/>). The owner adds
/// the K shards' parts of each tensor and judges the whole tensors as one parameter server does (<see cref="GradientHealthMonitor"/>).
/// </summary>
/// <param name="Shard">The sending shard's index, 0 to <see cref="ParameterShards.MaxShards"/> - 1.</param>
/// <param name="Step">The measured step's new version, 1 or more.</param>
/// <param name="Gradient">Per tensor: the sum of squares of the shard's part of its averaged gradient; finite, not negative.</param>
/// <param name="Weight">Per tensor: the same of its weights after the step.</param>
/// <param name="Update">Per tensor: the same of the step's update.</param>
[MessagePackObject]
public sealed record ShardHealthSquares([property: Key(0)] int Shard, [property: Key(1)] long Step, [property: Key(2)] double[] Gradient,
    [property: Key(3)] double[] Weight, [property: Key(4)] double[] Update) : IRangeCheckedMessage
{
    /// <summary>Most tensors one message may name: 65,536.</summary>
    public const int MaxTensors = 1 << 16;

    /// <summary>The message of shard <paramref name="shard"/>'s <paramref name="squares"/> of step <paramref name="step"/>.</summary>
    public static ShardHealthSquares Of(int shard, long step, IReadOnlyList<TensorSquares> squares) =>
        new(shard, step, [.. squares.Select(s => s.Gradient)], [.. squares.Select(s => s.Weight)], [.. squares.Select(s => s.Update)]);

    /// <summary>The squares per tensor, in the slice's order.</summary>
    [IgnoreMember] public IEnumerable<TensorSquares> Squares => Gradient.Select((g, i) => new TensorSquares(g, Weight[i], Update[i]));

    /// <inheritdoc />
    public string? OutOfRange()
    {
        if (ShardWire.Shard(Shard) is { } shard) return shard;
        if (ShardWire.AtLeast(nameof(Step), Step, 1) is { } step) return step;
        if (Gradient.Length > MaxTensors || Weight.Length != Gradient.Length || Update.Length != Gradient.Length)
            return $"Gradient, Weight and Update hold {Gradient.Length}, {Weight.Length} and {Update.Length} values; they need one per tensor, the same number, at most {MaxTensors}";
        foreach (var (name, values) in new[] { (nameof(Gradient), Gradient), (nameof(Weight), Weight), (nameof(Update), Update) })
            for (var i = 0; i < values.Length; i++)
                if (!double.IsFinite(values[i]) || values[i] < 0) return string.Create(CultureInfo.InvariantCulture, $"{name}[{i}] {values[i]:R} is not a finite sum of squares");
        return null;
    }
}

/// <summary>
/// A shard's part of a round's averaged gradient's squared L2 norm, to every shard (clipping by the global norm,
/// Optimizer:GradientClipNorm). Keyed by round and stamp, so a part of a step that is later redone is never summed with
/// parts of the redone step.
/// </summary>
/// <param name="Shard">The sending shard's index, 0 to <see cref="ParameterShards.MaxShards"/> - 1.</param>
/// <param name="Round">The round, from 0.</param>
/// <param name="Stamp">The stamp of the step the part belongs to, 0 to <see cref="UpdatePolicy.MaxWorkers"/>.</param>
/// <param name="SquaredNorm">The squared norm of the shard's slice of the averaged gradient: not negative. NaN and infinity
/// pass: a gradient that is not finite gives them, and every shard must step to find out and stop (divergence).</param>
[MessagePackObject]
public sealed record ShardNormShare([property: Key(0)] int Shard, [property: Key(1)] int Round, [property: Key(2)] int Stamp,
    [property: Key(3)] double SquaredNorm) : IRangeCheckedMessage
{
    /// <inheritdoc />
    public string? OutOfRange() => ShardWire.Shard(Shard) ?? ShardWire.AtLeast(nameof(Round), Round, 0) ?? ShardWire.Stamp(Stamp)
        ?? (SquaredNorm < 0 ? $"SquaredNorm {SquaredNorm:R} is negative" : null);
}

/// <summary>The owner asks a shard for its slice of the current weights (<see cref="ShardWeightsGather"/>), and for a checkpoint
/// its slice of every optimizer state buffer too; answered with <see cref="ShardSliceChunk"/>s. A shard answers only the run's
/// owner: the weights are the job's.</summary>
/// <param name="RequestId">The owner's number for this gathering, from 0; every chunk of the answer carries it.</param>
/// <param name="WithOptimizerState">True: after the weights, the shard sends its slice of each optimizer state buffer, in the
/// optimizer's order (buffer 1, 2, ... of <see cref="ShardSliceChunk.Buffer"/>).</param>
/// <param name="Version">-1: the current weights. 0 or more: the slice of that version among the newest the shard sent to the
/// workers (the last good weights, after another shard diverged), weights only (<paramref name="WithOptimizerState"/> is not
/// taken: the shard keeps its optimizer state for its current version alone), with optimizer step count 0; a shard that no
/// longer holds that version answers nothing and logs why.</param>
[MessagePackObject]
public sealed record ShardSliceRequest([property: Key(0)] int RequestId, [property: Key(1)] bool WithOptimizerState = false,
    [property: Key(2)] long Version = -1) : IRangeCheckedMessage
{
    /// <inheritdoc />
    public string? OutOfRange() => ShardWire.AtLeast(nameof(RequestId), RequestId, 0) ?? ShardWire.AtLeast(nameof(Version), Version, -1);
}

/// <summary>
/// One piece of a shard's slice of the weights, to the owner that asked (<see cref="ShardSliceRequest"/>). A slice crosses
/// Akka.Remote in pieces of at most <see cref="MaxValues"/> floats: below Akka's default 128,000-byte frame as well as the 16 MiB
/// DistTrain sets (<see cref="Hosting.ClusterNode.MaximumFrameSizeBytes"/>), so that no piece holds the connection's control
/// messages back for long. The data plane carries the per-step tensors; this is for the few whole-model reads of a run: the
/// final weights, a stop's, a checkpoint's, a divergence's last good ones.
/// </summary>
/// <param name="RequestId">The request's number.</param>
/// <param name="Shard">The shard's index, 0 to <see cref="ParameterShards.MaxShards"/> - 1.</param>
/// <param name="Version">Optimizer steps the shard has applied: the version of every piece of one answer.</param>
/// <param name="Offset">Where <paramref name="Values"/> start in the slice, from 0; the pieces come in order.</param>
/// <param name="Total">The length of the buffer's slice, 1 to 2^28 - 1: the shard's <see cref="ParameterShard.Length"/> for the
/// weights, its <see cref="ParameterShard.TrainableLength"/> for an optimizer state buffer.</param>
/// <param name="Values">At most <see cref="MaxValues"/> floats of the slice, from <paramref name="Offset"/>.</param>
/// <param name="Buffer">Which buffer the piece is of: 0 the weights; b from 1 to <see cref="MaxBuffers"/> the optimizer's state
/// buffer b - 1 (sent only when asked for, after the weights, each buffer whole before the next).</param>
/// <param name="OptimizerSteps">The shard's optimizer step count (Adam's bias correction counts it), 0 or more; on every piece.</param>
/// <param name="StateBuffers">How many optimizer state buffers the shard sends after its weights, 0 to <see cref="MaxBuffers"/>: 0 when
/// not asked for them; on every piece, so an owner that expects another number fails at once rather than waiting.</param>
[MessagePackObject]
public sealed record ShardSliceChunk(
    [property: Key(0)] int RequestId,
    [property: Key(1)] int Shard,
    [property: Key(2)] long Version,
    [property: Key(3)] int Offset,
    [property: Key(4)] int Total,
    [property: Key(5)] float[] Values,
    [property: Key(6)] int Buffer = 0,
    [property: Key(7)] long OptimizerSteps = 0,
    [property: Key(8)] int StateBuffers = 0) : ITensorMessage, IRangeCheckedMessage
{
    /// <summary>Most floats in one piece: 64 KiB of values.</summary>
    public const int MaxValues = 16_384;

    /// <summary>The request number of the pieces of the last good weights that a diverged shard's host sends unasked after its
    /// <see cref="ShardFailed"/>, and that the owner asks the other shards for (<see cref="ShardSliceRequest.Version"/>).</summary>
    public const int LastGoodRequestId = int.MaxValue;

    /// <summary>The highest <see cref="Buffer"/>: more optimizer state buffers than any optimizer has (Adam and RMSProp with
    /// momentum have two).</summary>
    public const int MaxBuffers = 4;

    /// <inheritdoc />
    [IgnoreMember] public float[] Tensor => Values;

    /// <inheritdoc />
    public ITensorMessage WithTensor(float[] tensor) => this with { Values = tensor };

    /// <summary>
    /// Buffer <paramref name="buffer"/> of shard <paramref name="shard"/>'s slice as pieces of at most <see cref="MaxValues"/> floats,
    /// in order (copies), each stamped with the request, version, step count and state-buffer count: how a shard answers a
    /// gathering, and how an owner sends a shard the slice of a checkpoint to resume from.
    /// </summary>
    /// <param name="requestId">The gathering's number; any number, 0 or more, for a checkpoint's slice.</param>
    /// <param name="shard">The shard's index.</param>
    /// <param name="version">The weights' version.</param>
    /// <param name="buffer">0 the weights, b + 1 optimizer state buffer b.</param>
    /// <param name="values">The buffer's slice, <c>[ParameterShard.Length]</c> for the weights, <c>[ParameterShard.TrainableLength]</c>
    /// for a state buffer; at least 1 value.</param>
    /// <param name="optimizerSteps">The optimizer's step count.</param>
    /// <param name="stateBuffers">How many state buffers follow the weights in this exchange.</param>
    public static IEnumerable<ShardSliceChunk> Pieces(int requestId, int shard, long version, int buffer, ReadOnlyMemory<float> values, long optimizerSteps,
        int stateBuffers)
    {
        for (var offset = 0; offset < values.Length; offset += MaxValues)
            yield return new ShardSliceChunk(requestId, shard, version, offset, values.Length,
                values.Span.Slice(offset, Math.Min(MaxValues, values.Length - offset)).ToArray(), buffer, optimizerSteps, stateBuffers);
    }

    /// <inheritdoc />
    public string? OutOfRange() => ShardWire.AtLeast(nameof(RequestId), RequestId, 0) ?? ShardWire.Shard(Shard) ?? ShardWire.AtLeast(nameof(Version), Version, 0)
        ?? ShardWire.Within(nameof(Total), Total, 1, DataPlane.TensorFrame.MaxCount) ?? ShardWire.Within(nameof(Offset), Offset, 0, Total - 1)
        ?? ShardWire.Within(nameof(Buffer), Buffer, 0, MaxBuffers) ?? ShardWire.AtLeast(nameof(OptimizerSteps), OptimizerSteps, 0)
        ?? ShardWire.Within(nameof(StateBuffers), StateBuffers, 0, MaxBuffers);
}

/// <summary>
/// A shard's report of one round it applied, to its owner, which merges the K shards' reports of a round into the run's step
/// report (<see cref="ShardRoundMerge"/>). A round that is redone (a lost worker's slice dropped) is reported again under the
/// new <see cref="Stamp"/>. Crosses nodes as MessagePack; decoding refuses a field out of its range.
/// </summary>
/// <param name="Shard">The shard's index, 0 to <see cref="ParameterShards.MaxShards"/> - 1.</param>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="Part">The part's index in its epoch, from 0.</param>
/// <param name="Round">The round, from 0.</param>
/// <param name="Stamp">The shard's stamp when it applied the round (<see cref="ShardRoundLedger{TReport}.Stamp"/>).</param>
/// <param name="Version">Optimizer steps the shard has applied after the round.</param>
/// <param name="SampleCount">Samples of the round's reports, 0 for a round redone without any report (no step).</param>
/// <param name="LossSum">Their summed loss.</param>
/// <param name="LearningRate">The step's learning rate (0 without a step).</param>
/// <param name="UpdateSeconds">The shard's averaging and update of its slice, seconds (with Optimizer:GradientClipNorm, without
/// the exchange of the norm's parts).</param>
/// <param name="PartFinished">True when no live worker, as far as the shard has applied the loss decisions, has a later round in
/// the part.</param>
/// <param name="L1Penalty">The L1 term <c>λ₁ Σ|w|</c> over the decayed elements of the shard's slice after the round, on every round
/// that can be its part's last (from the lowest last round of the part's workers on, and a round without a step); else 0. The
/// model's term, as <see cref="EpochCompleted.L1Penalty"/> reports it, is the K shards' sum.</param>
/// <param name="L2Penalty">The L2 term <c>λ₂/2 Σw²</c>, likewise.</param>
/// <param name="RoundSeconds">The shard's round, seconds: from its slice of the weights the round was computed on going out to the
/// workers to its step being applied (0 for a round without a step). What <c>disttrain_parameter_server_shard_round_seconds</c>
/// records, as it does for a shard in the parameter server's process.</param>
[MessagePackObject]
public sealed record ShardRoundApplied(
    [property: Key(0)] int Shard,
    [property: Key(1)] int Epoch,
    [property: Key(2)] int Part,
    [property: Key(3)] int Round,
    [property: Key(4)] int Stamp,
    [property: Key(5)] long Version,
    [property: Key(6)] int SampleCount,
    [property: Key(7)] double LossSum,
    [property: Key(8)] double LearningRate,
    [property: Key(9)] double UpdateSeconds,
    [property: Key(10)] bool PartFinished,
    [property: Key(11)] double L1Penalty = 0,
    [property: Key(12)] double L2Penalty = 0,
    [property: Key(13)] double RoundSeconds = 0) : IRangeCheckedMessage
{
    /// <inheritdoc />
    public string? OutOfRange() => ShardWire.Shard(Shard) ?? ShardWire.PartOf(Epoch, Part) ?? ShardWire.AtLeast(nameof(Round), Round, 0)
        ?? ShardWire.Stamp(Stamp) ?? ShardWire.AtLeast(nameof(Version), Version, 0) ?? ShardWire.AtLeast(nameof(SampleCount), SampleCount, 0)
        ?? (L1Penalty >= 0 && L2Penalty >= 0 ? null : $"L1Penalty {L1Penalty:R} or L2Penalty {L2Penalty:R} is not a sum of non-negative terms")
        ?? (UpdateSeconds >= 0 && RoundSeconds >= 0 && double.IsFinite(UpdateSeconds) && double.IsFinite(RoundSeconds) ? null
            : $"UpdateSeconds {UpdateSeconds:R} or RoundSeconds {RoundSeconds:R} is not a finite duration of at least 0");
}

/// <summary>A loss decision, made and sent to every shard; <see cref="ShardLossArbiter"/> tells it to whoever reported the loss.</summary>
/// <param name="Decision">The decision every shard applies: a worker slot 0 to <see cref="UpdatePolicy.MaxWorkers"/> - 1, a round from 0.</param>
[MessagePackObject]
public sealed record ShardLossDecided([property: Key(0)] LossDecision Decision) : IRangeCheckedMessage
{
    /// <inheritdoc />
    public string? OutOfRange() => ShardWire.Decision(Decision);
}
