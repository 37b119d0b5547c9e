using Akka.Actor;
using MessagePack;

namespace DistTrain.Cluster.Protocol;

// The synchronous data-parallel protocol. One epoch:
//   Coordinator -> Worker            AssignShard          (the worker's sample indices for the epoch)
//   Coordinator -> ParameterServer   StartEpoch           (who takes part, how many minibatches each)
//   repeat per round r:
//     ParameterServer -> Worker      WeightsUpdated(v, r) (the weights every replica computes on)
//     Worker -> ParameterServer      GradientComputed(v)  (only workers with a minibatch r)
//     ParameterServer -> Coordinator RoundApplied(v+1)    (after one averaged optimizer step)
//   ParameterServer -> Coordinator   EpochCompleted       (after the last round's weights went out)
//   Coordinator -> Worker            Evaluate(v, range)   (each test sample scored exactly once)
//   Worker -> Coordinator            EvaluationResult
// Tensors are float[] and travel as raw little-endian bytes (see RawFloatArrayFormatter).
//
// Loaned tensors: the float[] in WeightsUpdated and GradientComputed belongs to the sender, which
// reuses it a few rounds later instead of allocating 1 MB per message. A receiver reads (or copies)
// the array while it handles the message and keeps no reference past the round. The synchronous
// protocol makes this safe: the parameter server writes a new version only after every gradient of
// the round arrived, which each replica sends only after it copied the weights it computed on.

/// <summary>The worker's shard of one epoch. Coordinator → Worker.</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="SampleIndices">Training-set indices in the order the worker consumes them.</param>
/// <param name="BatchSize">Samples per minibatch; the last minibatch of the shard may be shorter.</param>
[MessagePackObject]
public sealed record AssignShard(
    [property: Key(0)] int Epoch,
    [property: Key(1)] int[] SampleIndices,
    [property: Key(2)] int BatchSize) : IDistTrainMessage;

/// <summary>Starts an epoch at the parameter server. Coordinator → ParameterServer.</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="Workers">Worker replicas; the index in this array is the worker index.</param>
/// <param name="BatchesPerWorker">Minibatches each worker has this epoch (its shard length divided by the batch size, rounded up).</param>
[MessagePackObject]
public sealed record StartEpoch(
    [property: Key(0)] int Epoch,
    [property: Key(1)] IActorRef[] Workers,
    [property: Key(2)] int[] BatchesPerWorker) : IDistTrainMessage;

/// <summary>
/// New weights. ParameterServer → Worker. A worker that has minibatch <paramref name="Round"/> of
/// <paramref name="Epoch"/> answers with <see cref="GradientComputed"/>; the others only store the weights.
/// </summary>
/// <param name="Epoch">Epoch the round belongs to.</param>
/// <param name="Round">0-based minibatch index within each worker's shard.</param>
/// <param name="Version">Weights version: the number of optimizer steps applied so far.</param>
/// <param name="Weights">The flat parameter vector, layout order.</param>
[MessagePackObject]
public sealed record WeightsUpdated(
    [property: Key(0)] int Epoch,
    [property: Key(1)] int Round,
    [property: Key(2)] long Version,
    [property: Key(3)] float[] Weights) : ITensorMessage
{
    /// <inheritdoc />
    [IgnoreMember] public float[] Tensor => Weights;

    /// <inheritdoc />
    public ITensorMessage WithTensor(float[] tensor) => this with { Weights = tensor };
}

/// <summary>A worker's gradient for one round. Worker → ParameterServer.</summary>
/// <param name="Epoch">Epoch of the round.</param>
/// <param name="Round">Round answered.</param>
/// <param name="Version">Weights version the gradient was computed on.</param>
/// <param name="WorkerIndex">Index of the sender in <see cref="StartEpoch.Workers"/>.</param>
/// <param name="SampleCount">Samples in the minibatch (the averaging weight).</param>
/// <param name="LossSum">Sum of the per-sample losses over the minibatch.</param>
/// <param name="Gradient">Gradient of the minibatch's mean loss, flat, layout order (loaned).</param>
/// <param name="ComputeSeconds">Worker time from receiving the weights to sending this gradient, seconds.</param>
[MessagePackObject]
public sealed record GradientComputed(
    [property: Key(0)] int Epoch,
    [property: Key(1)] int Round,
    [property: Key(2)] long Version,
    [property: Key(3)] int WorkerIndex,
    [property: Key(4)] int SampleCount,
    [property: Key(5)] double LossSum,
    [property: Key(6)] float[] Gradient,
    [property: Key(7)] double ComputeSeconds = 0) : ITensorMessage
{
    /// <inheritdoc />
    [IgnoreMember] public float[] Tensor => Gradient;

    /// <inheritdoc />
    public ITensorMessage WithTensor(float[] tensor) => this with { Gradient = tensor };
}

/// <summary>One optimizer step was applied. ParameterServer → Coordinator.</summary>
/// <param name="Epoch">Epoch of the round.</param>
/// <param name="Round">Round applied.</param>
/// <param name="Version">Version after the step.</param>
/// <param name="SampleCount">Samples that contributed.</param>
/// <param name="LossSum">Their summed loss, on the weights before the step.</param>
/// <param name="Timing">Where the round's wall time went.</param>
[MessagePackObject]
public sealed record RoundApplied(
    [property: Key(0)] int Epoch,
    [property: Key(1)] int Round,
    [property: Key(2)] long Version,
    [property: Key(3)] int SampleCount,
    [property: Key(4)] double LossSum,
    [property: Key(5)] RoundTiming Timing) : IDistTrainMessage;

/// <summary>Split of one synchronous round's wall time, all in seconds, as seen by the parameter server.</summary>
/// <param name="RoundSeconds">From sending the round's weights to having applied its update.</param>
/// <param name="MaxComputeSeconds">Slowest worker's compute time (the critical path).</param>
/// <param name="MeanComputeSeconds">Mean compute time over the workers of the round.</param>
/// <param name="UpdateSeconds">Averaging the gradients and the optimizer step.</param>
[MessagePackObject]
public sealed record RoundTiming(
    [property: Key(0)] double RoundSeconds,
    [property: Key(1)] double MaxComputeSeconds,
    [property: Key(2)] double MeanComputeSeconds,
    [property: Key(3)] double UpdateSeconds)
{
    /// <summary>Mean time a worker spent waiting for weights: the round minus its own compute.</summary>
    [IgnoreMember] public double WaitingForWeightsSeconds => Math.Max(0, RoundSeconds - MeanComputeSeconds);

    /// <summary>Time on the critical path that is neither compute nor update: messaging and scheduling.</summary>
    [IgnoreMember] public double MessagingSeconds => Math.Max(0, RoundSeconds - MaxComputeSeconds - UpdateSeconds);
}

/// <summary>Every minibatch of the epoch was applied and the final weights were sent. ParameterServer → Coordinator.</summary>
/// <param name="Epoch">Epoch finished.</param>
/// <param name="Version">Weights version at the end of the epoch.</param>
/// <param name="SampleCount">Training samples used (the training set size).</param>
/// <param name="LossSum">Summed training loss over the epoch.</param>
[MessagePackObject]
public sealed record EpochCompleted(
    [property: Key(0)] int Epoch,
    [property: Key(1)] long Version,
    [property: Key(2)] int SampleCount,
    [property: Key(3)] double LossSum) : IDistTrainMessage;

/// <summary>Score test samples <c>[Start, Start + Count)</c> with weights <paramref name="Version"/>. Coordinator → Worker.</summary>
/// <param name="Version">The worker waits until it holds this version.</param>
/// <param name="Start">First test-set index.</param>
/// <param name="Count">Number of samples (may be 0).</param>
[MessagePackObject]
public sealed record Evaluate(
    [property: Key(0)] long Version,
    [property: Key(1)] int Start,
    [property: Key(2)] int Count) : IDistTrainMessage;

/// <summary>Scores of one evaluation range. Worker → Coordinator.</summary>
/// <param name="Version">Weights version scored.</param>
/// <param name="WorkerIndex">Sender's index.</param>
/// <param name="Start">First test-set index scored.</param>
/// <param name="SampleCount">Samples actually scored, counted by the worker as it went.</param>
/// <param name="Correct">Samples whose arg-max logit is the label.</param>
/// <param name="LossSum">Summed loss.</param>
[MessagePackObject]
public sealed record EvaluationResult(
    [property: Key(0)] long Version,
    [property: Key(1)] int WorkerIndex,
    [property: Key(2)] int Start,
    [property: Key(3)] int SampleCount,
    [property: Key(4)] int Correct,
    [property: Key(5)] double LossSum) : IDistTrainMessage;

/// <summary>Asks the parameter server for its current weights. Coordinator → ParameterServer.</summary>
[MessagePackObject]
public sealed record GetWeights : IDistTrainMessage
{
    /// <summary>The only instance.</summary>
    public static readonly GetWeights Instance = new();
}

/// <summary>The parameter server's current weights. ParameterServer → requester.</summary>
/// <param name="Version">Version of the weights.</param>
/// <param name="Weights">Flat parameter vector.</param>
[MessagePackObject]
public sealed record WeightsSnapshot(
    [property: Key(0)] long Version,
    [property: Key(1)] float[] Weights) : ITensorMessage
{
    /// <inheritdoc />
    [IgnoreMember] public float[] Tensor => Weights;

    /// <inheritdoc />
    public ITensorMessage WithTensor(float[] tensor) => this with { Weights = tensor };
}
