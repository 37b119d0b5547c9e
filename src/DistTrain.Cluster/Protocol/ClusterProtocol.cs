using Akka.Actor;
using MessagePack;

namespace DistTrain.Cluster.Protocol;

// Joining a job in cluster mode:
//   WorkerAgent (worker node) -> JobHost (parameter server node)   RegisterWorker
//   JobHost -> WorkerAgent                                          WorkerAccepted | RegistrationRefused
//   WorkerAgent -> JobHost                                          WorkerReady (its worker actor, data plane connected)
//   WorkerAgent -> JobHost                                          WorkerFailed (a failure that ends the job)
//   JobHost -> WorkerAgent                                          JobFinished (the node may exit)
//
// Standing by for a job (a second parameter-server node):
//   ParameterServerNode (standby) -> JobHost (active)               RegisterStandby
//   JobHost -> ParameterServerNode                                  StandbyAccepted | RegistrationRefused

/// <summary>A worker node asks to join the job. WorkerAgent → JobHost.</summary>
/// <param name="ProtocolVersion">The sender's <see cref="ClusterProtocolInfo.Version"/>; must equal the host's.</param>
/// <param name="ModelFingerprint">Canonical text of the sender's model, data and gradient-encoding settings
/// (<see cref="Hosting.ModelFingerprint"/>); must equal the host's.</param>
/// <param name="NodeName">The worker node's address, for logs.</param>
/// <param name="LostParameterServer">True when the worker was training and lost its parameter server: the job host that
/// receives it continues that job from the newest checkpoint (a takeover).</param>
/// <param name="JobId">The job the worker was in (from <see cref="WorkerAccepted.JobId"/>); empty for a new worker.</param>
/// <param name="JobName">The worker's Cluster:JobName; must equal the host's.</param>
/// <param name="Proof">HMAC-SHA256 under the job secret over the job name, <paramref name="NodeName"/>, the protocol version and
/// the fingerprint (<see cref="Security.JobIdentity.RegistrationProof"/>): proves the worker holds the job's secret without sending it.</param>
/// <param name="ServerSettings">The worker's own values of the settings the parameter server decides for the whole job
/// (<see cref="Hosting.ModelFingerprint.ServerSettingsOf"/>), so the host can warn of the ones that differ, which the worker
/// would otherwise ignore without a word; empty from a sender that sends none.</param>
/// <param name="Round">The sender's registration round: 1 for its first, one more each time it registers again after losing its
/// data plane or parameter server (it has then stopped the worker actor and data-plane link of the round before); the repeated
/// sends of one round carry the same number. A job host that accepted another round of the same sender (a lower one: the agent
/// restarted) drops what that round left: its data-plane token and a connection waiting for its WorkerReady, and its link, which
/// before training starts is removed (the sender keeps its worker index) and after the start is stopped (the sender joins as a
/// new worker, and the coordinator counts the old one lost). 0 (a test's sender) is never a new round.</param>
[MessagePackObject]
public sealed record RegisterWorker(
    [property: Key(0)] int ProtocolVersion,
    [property: Key(1)] string ModelFingerprint,
    [property: Key(2)] string NodeName,
    [property: Key(3)] bool LostParameterServer = false,
    [property: Key(4)] string JobId = "",
    [property: Key(5)] string JobName = "",
    [property: Key(6)] byte[]? Proof = null,
    [property: Key(7)] string ServerSettings = "",
    [property: Key(8)] int Round = 0) : IDistTrainMessage;

/// <summary>The worker may join as <paramref name="WorkerIndex"/>. JobHost → WorkerAgent.</summary>
/// <param name="WorkerIndex">Its index in the job.</param>
/// <param name="DataHost">Host of the parameter server's tensor data plane.</param>
/// <param name="DataPort">Port of the data plane.</param>
/// <param name="ParameterCount">Floats per weights message (the model's parameters, and in local SGD the optimizer state after them).</param>
/// <param name="JobId">Identity of the job, written into its checkpoints; a takeover resumes only that job's checkpoints.</param>
/// <param name="DataToken">Random 32 bytes for this registration: the worker's data-plane hello must carry them, so no other
/// connection can take this worker's place on the data plane.</param>
/// <param name="Proof">HMAC-SHA256 under the job secret over the worker's node, index, data plane, token and round
/// (<see cref="Security.JobIdentity.AcceptanceProof"/>): proves the host belongs to the worker's job.</param>
/// <param name="IgnoredSettings">The settings the worker was given other values of than the parameter-server node, which
/// decides them for the whole job ("Training:BatchSizePerWorker = 32 on the worker, 64 here"; "; "-separated), for the
/// worker's own log; empty when they agree.</param>
/// <param name="Round">The <see cref="RegisterWorker.Round"/> this answers: the agent takes only an answer to its current round, so
/// a late answer to an earlier one (its repeated sends are answered too) does not start a worker with that round's spent token.</param>
[MessagePackObject]
public sealed record WorkerAccepted(
    [property: Key(0)] int WorkerIndex,
    [property: Key(1)] string DataHost,
    [property: Key(2)] int DataPort,
    [property: Key(3)] int ParameterCount,
    [property: Key(4)] string JobId = "",
    [property: Key(5)] byte[]? DataToken = null,
    [property: Key(6)] byte[]? Proof = null,
    [property: Key(7)] string IgnoredSettings = "",
    [property: Key(8)] int Round = 0) : IDistTrainMessage;

/// <summary>The worker (or standby parameter server) may not join; the reason names what differs and what to do.
/// JobHost → WorkerAgent, or JobHost → ParameterServerNode for a <see cref="RegisterStandby"/>.</summary>
/// <param name="Reason">Human-readable reason.</param>
[MessagePackObject]
public sealed record RegistrationRefused([property: Key(0)] string Reason) : IDistTrainMessage;

/// <summary>
/// A parameter-server node that found an older one up (the active parameter server, where the job host runs) asks
/// whether it may stand by for the job: the job host compares its job, version and settings as a worker's, and the
/// settings the parameter server decides for the whole job too, since a standby that takes over runs the job with its
/// own. Sent again every 2 s until answered. ParameterServerNode (standby) → JobHost.
/// </summary>
/// <param name="ProtocolVersion">The sender's <see cref="ClusterProtocolInfo.Version"/>; must equal the host's.</param>
/// <param name="ModelFingerprint">The sender's <see cref="Hosting.ModelFingerprint.Of"/>; must equal the host's.</param>
/// <param name="NodeName">The standby's address, for logs.</param>
/// <param name="JobName">The standby's Cluster:JobName; must equal the host's.</param>
/// <param name="Proof">HMAC-SHA256 under the job secret, as <see cref="RegisterWorker.Proof"/>.</param>
/// <param name="ServerSettings">The standby's <see cref="Hosting.ModelFingerprint.ServerSettingsOf"/>; must equal the host's.</param>
[MessagePackObject]
public sealed record RegisterStandby(
    [property: Key(0)] int ProtocolVersion,
    [property: Key(1)] string ModelFingerprint,
    [property: Key(2)] string NodeName,
    [property: Key(3)] string JobName,
    [property: Key(4)] byte[]? Proof,
    [property: Key(5)] string ServerSettings) : IDistTrainMessage;

/// <summary>The standby may stand by: its job and settings are the active parameter server's. JobHost → ParameterServerNode.</summary>
/// <param name="NodeName">The standby's address, as it sent it.</param>
[MessagePackObject]
public sealed record StandbyAccepted([property: Key(0)] string NodeName) : IDistTrainMessage;

/// <summary>The worker actor runs and its data plane is connected. WorkerAgent → JobHost.</summary>
/// <param name="WorkerIndex">Index from <see cref="WorkerAccepted"/>.</param>
/// <param name="Worker">The worker actor, which receives shards and evaluation requests over Akka.Remote.</param>
/// <param name="Round">The registration round of the <see cref="WorkerAccepted"/> it answers: the job host links only the sender's
/// latest round's worker actor, so a late WorkerReady of an earlier round (whose worker actor has stopped) is ignored.</param>
[MessagePackObject]
public sealed record WorkerReady(
    [property: Key(0)] int WorkerIndex,
    [property: Key(1)] IActorRef Worker,
    [property: Key(2)] int Round = 0) : IDistTrainMessage;

/// <summary>The job ended; worker nodes shut down. JobHost → WorkerAgent.</summary>
/// <param name="Succeeded">True when training completed.</param>
/// <param name="Summary">Final accuracy, or the failure.</param>
/// <param name="Cancelled">The parameter-server node was stopped (SIGTERM or Ctrl-C) and nothing can continue the job: no
/// other parameter-server node is in the cluster and Checkpoint:Directory is not set. Worker nodes then exit with code 130,
/// as the parameter server does.</param>
[MessagePackObject]
public sealed record JobFinished(
    [property: Key(0)] bool Succeeded,
    [property: Key(1)] string Summary,
    [property: Key(2)] bool Cancelled = false) : IDistTrainMessage;

/// <summary>
/// The worker failed in a way that every worker of the job would, since it comes from the job's settings, not from this
/// node: a gradient too large for Cluster:Compression's Float16 (<see cref="Core.Compression.GradientOverflowException"/>).
/// The job ends with <paramref name="Reason"/> instead of going on without the worker. WorkerAgent → JobHost.
/// </summary>
/// <param name="WorkerIndex">Index from <see cref="WorkerAccepted"/>.</param>
/// <param name="Reason">What failed and the fix, as the worker's exception says it.</param>
/// <param name="LostShard">Cluster:ShardNodes: the shard whose data-plane connection the worker lost (the failure is that loss), from
/// 0; -1 for any other failure. The job host passes it on only within Cluster:ParameterServerShards, and the parameter server
/// then ends the job with that shard's loss and how to go on, rather than with a worker's failure.</param>
[MessagePackObject]
public sealed record WorkerFailed(
    [property: Key(0)] int WorkerIndex,
    [property: Key(1)] string Reason,
    [property: Key(2)] int LostShard = -1) : IDistTrainMessage;

/// <summary>Versioning of the cluster protocol.</summary>
public static class ClusterProtocolInfo
{
    /// <summary>Bumped whenever a message, the data-plane frame or the registration's fingerprint changes incompatibly
    /// (6: the fingerprint holds the samples' digests; 7: a standby parameter server registers, RegisterStandby; 8: shards on shard
    /// nodes run further parts of an epoch, ShardPartStart.FirstRound and ShardWeights.Part; 9: RegisterWorker.Round, without which
    /// a job host takes a worker's registration again as a repeated one; 10: WorkerAccepted.Round and WorkerReady.Round, and the
    /// acceptance's proof covers the round; 11: shards on shard nodes send checkpoints within an epoch,
    /// ShardPartStart.CheckpointEverySteps, which a shard node of version 10 would ignore, leaving the run without them; 12: a shard
    /// that diverges sends its slice of the last good weights, ShardFailed's divergence fields and ShardSliceRequest.Version, so the
    /// job's last good weights are put together from the shard nodes; and shards measure the per-tensor norms,
    /// ShardPartStart.GradientNormEverySteps and ShardHealthSquares; 13: shard nodes take Cluster:Compression, the workers send them
    /// cuts of the encoded gradient, and the whole-job settings compared, ModelFingerprint.ServerSettingsOf, hold the compression; 14: a
    /// worker that loses a shard's connection names the shard, WorkerFailed.LostShard, so the job ends with the shard's loss; 15: a shard node reports its round's time,
    /// ShardRoundApplied.RoundSeconds, without which its parameter server would record 0 s rounds; 16: Akka.Remote's frame is
    /// 16 MiB, ClusterNode.MaximumFrameSizeBytes, so a worker's shard of up to about 3.3 million samples crosses in one message,
    /// which a node of version 15, at 4 MiB, would refuse as too long a frame; 17: the shards of an epoch's first part travel as
    /// a recipe, AssignShard.Recipe, from which each worker plans them itself, and which a worker of version 16 would read as an
    /// empty shard; 18: so do a further part's, as pieces of the epoch's plan, ShardRecipe.Pieces, which a worker of version 17 would
    /// plan as the first part's shard and stop at its digest, or refuse as out of range; and AssignShard.Epochs, the run's last epoch;
    /// 19: shard nodes scale the learning rate by the plan's workers with Training:KeepGlobalBatch, ShardPartStart.ScalingWorkers,
    /// which a shard node of version 18 would ignore, scaling by the workers in the part after a loss; 20: shard nodes cut a part for
    /// every worker after a loss with Training:KeepGlobalBatch, ShardPartStart.KeepGlobalBatch and ShardWeightsHeader.EndRound, which a
    /// node of version 19 would ignore, its workers training rounds the coordinator plans again in the further part).</summary>
    public const int Version = 20;

    /// <summary>
    /// Why two nodes of a job cannot work together: <paramref name="other"/> runs protocol <paramref name="otherVersion"/> (0: a
    /// version before 11, which did not say), <paramref name="self"/> <see cref="Version"/>; and the fix. As "the parameter server
    /// runs DistTrain's cluster protocol 0 (older than 11), and this shard node 11: run the same DistTrain version on every node of the job".
    /// </summary>
    /// <param name="other">The other node, as the sentence names it.</param>
    /// <param name="otherVersion">Its protocol version.</param>
    /// <param name="self">This node, as the sentence names it.</param>
    public static string Mismatch(string other, int otherVersion, string self)
    {
        var older = otherVersion == 0 ? " (older than 11)" : "";
        return string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{other} runs DistTrain's cluster protocol {otherVersion}{older}, and {self} {Version}: run the same DistTrain version on every node of the job");
    }
}
