namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// A worker's connection to one shard's data plane could not be opened, was refused by the shard node, or closed
/// (<see cref="ParameterServerLink.ForShard"/> with <c>reportClosure</c>). ParameterServerLink → its worker, just before the
/// link stops; local only.
/// </summary>
/// <param name="Shard">The shard's index.</param>
/// <param name="Endpoint">The shard's data plane, <c>host:port</c>.</param>
/// <param name="Reason">Why, as the link's log line gives it (a refusal quotes the shard node's reason).</param>
public sealed record ShardConnectionClosed(int Shard, string Endpoint, string Reason);
