using DistTrain.Cluster.Training;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Actors;

/// <summary>What the coordinator needs to run a job.</summary>
/// <param name="Epochs">Epochs to train.</param>
/// <param name="BatchSizePerWorker">Samples per worker minibatch (per push: Training:BatchSizePerWorker × Training:AccumulationSteps).</param>
/// <param name="Planner">Shard planner over the training set, one shard per worker.</param>
/// <param name="TestSampleCount">Size of the test set; evaluation must score exactly this many.</param>
/// <param name="Layout">Layout of the weights, for the result.</param>
/// <param name="StallTimeout">Longest time without any progress message (a step, an evaluation result) before the job fails.</param>
/// <param name="ValidationSampleCount">Samples held out for validation, scored after every epoch; 0 for none.</param>
/// <param name="EarlyStopping">Stop when the validation loss has not improved for this many epochs (Patience 0 = off).</param>
/// <param name="FirstEpoch">1-based epoch to start at: 1, or a resumed checkpoint's epoch.</param>
/// <param name="FirstRound">Round to start <paramref name="FirstEpoch"/> at: 0, or a resumed checkpoint's round. Later epochs start at 0.</param>
/// <param name="PlannerFor">Cluster mode: a shard planner for a given number of workers, used when workers are lost or
/// join. Null (single-node mode): a worker that stops fails the job.</param>
/// <param name="MinWorkers">Cluster mode: with fewer workers, training pauses until enough join again.</param>
/// <param name="GlobalBatchSize">Cluster mode: samples per step to keep when the number of workers alive differs from
/// the planned one (Training:KeepGlobalBatch): each worker's shard is then cut into the plan's steps per epoch
/// (<see cref="EpochPlanSettings.PlannedStepsPerEpoch"/>) as balanced minibatches of about GlobalBatchSize / alive samples,
/// so steps per epoch stay and no step is a runt. 0: every worker keeps <paramref name="BatchSizePerWorker"/>, so the
/// global minibatch shrinks or grows with the workers.</param>
/// <param name="Mode">The training mode (Training:Mode): in the asynchronous modes every worker gets every shard of a part.</param>
/// <param name="PauseTimeout">Cluster mode: longest pause below <paramref name="MinWorkers"/> before the job fails
/// (Cluster:PauseTimeoutSeconds); null waits for ever.</param>
/// <param name="ResumedVersion">The weights version of the checkpoint the run resumes from; 0 for a new run. When the run
/// first scores the checkpoint's weights as the epoch before <paramref name="FirstEpoch"/> (a checkpoint past
/// <paramref name="Epochs"/>, written when the last epoch's training ended; one after the epoch at which early stopping
/// ended the run; one whose epoch the early-stopping record lacks), the version scored.</param>
/// <param name="EarlyStoppingDirectory">Checkpoint:Directory when checkpoints are on: with early stopping the coordinator keeps
/// its state there (<see cref="Training.EarlyStoppingRecord"/>) and a resumed run restores it; a new run (epoch 1, round 0, no
/// resumed version) removes an earlier run's record from it. Null keeps nothing.</param>
/// <param name="WorkerNodes">Cluster mode: the address of each worker's node, by worker index, as the job host accepted it
/// (filled as workers join, so it may be read while the job host adds to it), so that the coordinator's lines about a
/// worker name the node a user can find (its log names the same address). Null or a missing index: the number alone.</param>
/// <param name="ShardMessageLimitBytes">Cluster mode: the most bytes one <see cref="Protocol.AssignShard"/> may take, Akka.Remote's
/// frame (<see cref="Hosting.ClusterNode.MaximumFrameSizeBytes"/>) less room for its envelope. A part whose shard message would be
/// larger fails the job before any shard is sent, naming the fix, where Akka.Remote would drop the message and the job would
/// wait until Training:StallTimeoutSeconds. 0 (single-node mode, whose messages stay in the process): no limit.</param>
/// <param name="ShardRecipes">Cluster mode: the shards go as recipes (<see cref="Protocol.ShardRecipe"/>) from which each worker
/// plans them itself, instead of as sample indices (up to 5 bytes per sample): an epoch's first part in about 100 bytes per
/// worker, which the first step of each epoch waited for as indices, and a further part as pieces of the epoch's plan, whose
/// indices could exceed Akka.Remote's frame. False (single-node mode): the indices, which stay in the process.</param>
/// <param name="TrainedAhead">The resumed checkpoint's minibatches (round, shard) at or after <paramref name="FirstRound"/> already
/// trained (the asynchronous modes: <see cref="Core.Checkpoints.TrainingCheckpoint.TrainedAhead"/>); null or empty for none.</param>
public sealed record CoordinatorSettings(int Epochs, int BatchSizePerWorker, IShardPlanner Planner, int TestSampleCount,
    ParameterLayout Layout, TimeSpan StallTimeout, int ValidationSampleCount = 0, EarlyStoppingOptions? EarlyStopping = null,
    int FirstEpoch = 1, int FirstRound = 0, Func<int, IShardPlanner>? PlannerFor = null, int MinWorkers = 1, int GlobalBatchSize = 0,
    TrainingMode Mode = TrainingMode.Sync, TimeSpan? PauseTimeout = null, long ResumedVersion = 0, string? EarlyStoppingDirectory = null,
    IReadOnlyDictionary<int, string>? WorkerNodes = null, long ShardMessageLimitBytes = 0, bool ShardRecipes = false,
    IReadOnlyList<(int Round, int Shard)>? TrainedAhead = null)
{
    /// <summary>True when the job survives losing workers (cluster mode).</summary>
    public bool ToleratesWorkerLoss => PlannerFor is not null;

    /// <summary>True when early stopping is on (it needs validation samples).</summary>
    public bool StopsEarly => EarlyStopping is { Patience: > 0 } && ValidationSampleCount > 0;

    /// <summary>The settings of the epoch plan.</summary>
    public EpochPlanSettings PlanSettings => new(Planner, PlannerFor, BatchSizePerWorker, GlobalBatchSize, FirstEpoch, FirstRound,
        SharedShards: Mode is TrainingMode.Async or TrainingMode.BoundedStaleness, TrainedAhead: TrainedAhead);

    /// <summary>The workers the linear scaling rule multiplies the learning rate by in an epoch of <paramref name="aliveWorkers"/>.</summary>
    public int ScalingWorkersFor(int aliveWorkers) => GlobalBatchSize > 0 ? Planner.Workers : aliveWorkers;

    /// <summary>
    /// " (node akka.tcp://disttrain@10.0.0.5:41235)" after "Worker 1" in cluster mode, once the node's address is known, else
    /// "": the parameter server numbers workers in the order they registered, which need not be the order their nodes were
    /// started in (deploy/local/cluster.sh's worker-1.log may hold worker 0, 1 or 2), so a line about a lost worker names its
    /// node too.
    /// </summary>
    /// <param name="index">The worker's index.</param>
    public string NodeOfWorker(int index) =>
        WorkerNodes is not null && WorkerNodes.TryGetValue(index, out var node) ? $" (node {node})" : "";
}
