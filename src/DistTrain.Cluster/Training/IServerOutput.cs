using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.Training;

/// <summary>
/// What an update policy asks the parameter server actor to do. The actor implements it by sending messages (to worker
/// slots by index, to the coordinator) and keeps the loaned-message pools and allocation counters around it, so the
/// policies decide and never send; tests implement it to record the decisions.
/// </summary>
public interface IServerOutput
{
    /// <summary>Sends <paramref name="weights"/> to every worker of the part.</summary>
    void Broadcast(WeightsUpdated weights);

    /// <summary>Sends <paramref name="weights"/> to worker <paramref name="worker"/> alone.</summary>
    void Send(int worker, WeightsUpdated weights);

    /// <summary>
    /// The policy's optimizer is about to write the next broadcast, of weights version <paramref name="version"/>, into
    /// <paramref name="weights"/>: returns the notice to advance, finish or abandon as it writes
    /// (<see cref="WeightsInProgress"/>), which the server has passed to every worker of the part so in-process receivers
    /// can copy the weights on during the update; or null when nobody copies early (the default, and every server but an
    /// unsharded one in a cluster with shared memory).
    /// </summary>
    WeightsInProgress? WritingBroadcast(float[] weights, long version) => null;

    /// <summary>A step report to fill (pooled), its per-worker arrays sized for <paramref name="workers"/> slots.</summary>
    RoundApplied TakeReport(int workers);

    /// <summary>One step was applied: <paramref name="report"/> (from <see cref="TakeReport"/>) goes to the coordinator.</summary>
    void StepApplied(RoundApplied report);

    /// <summary>
    /// The answer to a lost worker, to the coordinator before anything else the loss causes: the first round whose minibatch
    /// the worker did not contribute (its samples from there go to the others), or -1 when the part's other workers take
    /// its minibatches over themselves.
    /// </summary>
    void WorkerRemoved(WorkerRemoved removed);

    /// <summary>The part ended: its last weights went out; <paramref name="completed"/> goes to the coordinator.</summary>
    void PartCompleted(EpochCompleted completed);

    /// <summary>A part ended before all its minibatches were applied (every worker was lost); the coordinator plans them again.</summary>
    void MinibatchesLeft(MinibatchesLeft left);

    /// <summary>A warning for the log (gradient diagnostics).</summary>
    void Warning(string message);

    /// <summary>
    /// A parameter-server shard that clips by the global norm has formed its part of the round's average: its squared norm
    /// goes to the sharded server, which answers every shard with the whole norm (<see cref="UpdatePolicy.ApplyGlobalNorm"/>).
    /// </summary>
    /// <exception cref="NotSupportedException">The server is not a shard (the default).</exception>
    void ShardSquaredNorm(double squaredNorm) =>
        throw new NotSupportedException("Only a parameter-server shard sends its part of the gradient norm.");
}
