using DistTrain.Core.Checkpoints;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Training;

/// <summary>
/// One parameter-server shard's slice of the flat vector: <c>[Start, End)</c> of a worker's report prefix
/// <c>[0, WorkerReportLength)</c> (docs/architecture.md). The shard owns the master weights and the optimizer state of
/// its slice, averages its slice of every worker's report and steps it.
/// </summary>
/// <param name="Index">0-based shard index.</param>
/// <param name="Start">First element of the slice in the flat vector.</param>
/// <param name="End">One past the last element.</param>
/// <param name="TrainableEnd">One past the slice's last trainable element (<c>min(End, TrainableLength)</c>); the slice's
/// optimizer state covers <c>[Start, TrainableEnd)</c>.</param>
public sealed record ParameterShard(int Index, int Start, int End, int TrainableEnd)
{
    /// <summary>Elements of the slice.</summary>
    public int Length => End - Start;

    /// <summary>Trainable elements of the slice: the length of each optimizer state buffer of the shard.</summary>
    public int TrainableLength => TrainableEnd - Start;

    /// <summary>
    /// The slice's own layout: each tensor that overlaps the slice, clipped to it, as a 1-D tensor of the same name and
    /// role (trainable first, then running statistics, as in the model's layout). Optimizer groups (decayed or not) follow
    /// the roles, so the shard's optimizer treats every element as the whole model's would.
    /// </summary>
    public ParameterLayout SliceLayout(ParameterLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        var tensors = new List<(string, int[], Core.Layers.ParameterRole, bool)>();
        foreach (var segment in layout.Segments)
        {
            var from = Math.Max(segment.Offset, Start);
            var to = Math.Min(segment.Offset + segment.Length, End);
            if (to > from) tensors.Add((segment.Name, [to - from], segment.Role, false));
        }
        return new ParameterLayout(tensors);
    }

    /// <summary>A copy of the slice of <paramref name="weights"/>, laid out by <see cref="SliceLayout"/>.</summary>
    public ParameterVector Slice(ParameterVector weights)
    {
        ArgumentNullException.ThrowIfNull(weights);
        return new ParameterVector(SliceLayout(weights.Layout), weights.Values.AsSpan(Start, Length).ToArray());
    }

    /// <summary>
    /// The part of a whole-model checkpoint this shard resumes from: its slice of the weights and of every optimizer state
    /// buffer, with the checkpoint's position and settings unchanged.
    /// </summary>
    public TrainingCheckpoint Slice(TrainingCheckpoint checkpoint)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        var state = checkpoint.OptimizerState.Select(s => (s.Name, s.Values.AsSpan(Start, TrainableLength).ToArray())).ToArray();
        return WithContents(checkpoint, Slice(checkpoint.Weights), state);
    }

    /// <summary>A checkpoint with <paramref name="source"/>'s position and settings and the given weights and optimizer state.</summary>
    internal static TrainingCheckpoint WithContents(TrainingCheckpoint source, ParameterVector weights, IReadOnlyList<(string Name, float[] Values)> state) =>
        new(weights, state, source.OptimizerKind, source.OptimizerSteps, source.Version, source.Epoch, source.Round, source.ShardSeed,
            source.Workers, source.BatchSizePerWorker, source.EpochSamples, source.EpochLossSum, source.JobId, source.OptimizerHyperparameters,
            source.Mode, source.TrainedAhead, source.TrainSamples)
        {
            DataSettings = source.DataSettings, ModelSettings = source.ModelSettings, RunEpochs = source.RunEpochs, ShardShuffle = source.ShardShuffle,
            UpdateSettings = source.UpdateSettings,
        };
}

/// <summary>
/// How K parameter-server shards split the flat vector (Cluster:ParameterServerShards): contiguous slices of a worker's
/// report prefix, as equal as 16-element boundaries allow, in order. The trainable prefix is split; the running statistics
/// after it go with the last shard. Frozen tensors belong to no shard: they never change and are never reported.
/// </summary>
/// <remarks>
/// ps-lite assigns each server a contiguous key range the same way (Li et al., OSDI 2014, section 3.1). Every optimizer
/// DistTrain has is element-wise, so the shards' steps together equal the whole model's (the element-wise order of the
/// arithmetic is unchanged); what needs all shards at once is named where it is refused (gradient clipping by the global
/// norm) or measured per shard.
/// </remarks>
public static class ParameterShards
{
    /// <summary>Elements each slice boundary is a multiple of (64 bytes: one cache line, one AVX-512 vector).</summary>
    public const int Alignment = 16;

    /// <summary>Most shards a run may have (the validated range of Cluster:ParameterServerShards).</summary>
    public const int MaxShards = 16;

    /// <summary>The <paramref name="count"/> slices of <paramref name="layout"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="count"/> is outside 1..<see cref="MaxShards"/>, or the
    /// model has too few trainable parameters to give every shard at least <see cref="Alignment"/>.</exception>
    public static ParameterShard[] Plan(ParameterLayout layout, int count)
    {
        ArgumentNullException.ThrowIfNull(layout);
        // No parameter name: the message is shown to the user as it is, and " (Parameter 'count')" would name this method's argument.
        if (count < 1 || count > MaxShards)
            throw new ArgumentOutOfRangeException(null, $"Cluster:ParameterServerShards = {count}: allowed 1 to {MaxShards}.");
        var trainable = layout.TrainableLength;
        if (count > 1 && trainable < count * Alignment)
            throw new ArgumentOutOfRangeException(null, TooManyShards(count, trainable));
        var shards = new ParameterShard[count];
        var start = 0;
        for (var k = 0; k < count; k++)
        {
            var last = k == count - 1;
            var end = last ? trainable : (int)((long)trainable * (k + 1) / count / Alignment * Alignment);
            end = Math.Max(end, start + Alignment);
            shards[k] = new ParameterShard(k, start, last ? layout.WorkerReportLength : end, end);
            start = end;
        }
        return shards;
    }

    /// <summary>The most shards a model of <paramref name="trainable"/> trainable parameters can be split into: one slice of at
    /// least <see cref="Alignment"/> parameters each, and at most <see cref="MaxShards"/>; 1 (no sharding) for a smaller model.</summary>
    /// <param name="trainable">The model's trainable parameters (<see cref="ParameterLayout.TrainableLength"/>).</param>
    public static int MaxShardsFor(int trainable) => Math.Clamp(trainable / Alignment, 1, MaxShards);

    private static string TooManyShards(int count, int trainable)
    {
        var most = MaxShardsFor(trainable);
        return $"Cluster:ParameterServerShards = {count} is too many for a model with {trainable:N0} trainable parameters: each shard needs at least " +
            $"{Alignment} parameters, since the slices are cut at {Alignment}-parameter (64-byte) boundaries. " +
            (most == 1
                ? "Set Cluster:ParameterServerShards to 1: this model is too small to shard."
                : $"Set Cluster:ParameterServerShards to at most {most}, the largest count this model allows.");
    }

    /// <summary>
    /// The whole-model checkpoint of the shards' <paramref name="parts"/> (one per shard, in shard order, all of one step):
    /// their slices of the weights and optimizer state laid side by side, the frozen tensors from <paramref name="frozenSource"/>.
    /// </summary>
    /// <param name="parts">Each shard's checkpoint of its slice.</param>
    /// <param name="shards">The plan the parts follow.</param>
    /// <param name="frozenSource">Whole-model weights whose frozen tensors are copied (they never change).</param>
    /// <exception cref="ArgumentException">The parts do not match the plan, or are not all of one version.</exception>
    public static TrainingCheckpoint Assemble(IReadOnlyList<TrainingCheckpoint> parts, IReadOnlyList<ParameterShard> shards, ParameterVector frozenSource)
    {
        ArgumentNullException.ThrowIfNull(parts);
        ArgumentNullException.ThrowIfNull(shards);
        ArgumentNullException.ThrowIfNull(frozenSource);
        if (parts.Count != shards.Count || parts.Count == 0)
            throw new ArgumentException($"{parts.Count} shard checkpoints for {shards.Count} shards.", nameof(parts));
        var layout = frozenSource.Layout;
        var values = (float[])frozenSource.Values.Clone();
        var state = parts[0].OptimizerState.Select(s => (s.Name, new float[layout.TrainableLength])).ToArray();
        for (var k = 0; k < parts.Count; k++)
        {
            var part = parts[k];
            var shard = shards[k];
            if (part.Version != parts[0].Version || part.Epoch != parts[0].Epoch || part.Round != parts[0].Round)
                throw new ArgumentException($"Shard {k}'s checkpoint is of version {part.Version} (epoch {part.Epoch} round {part.Round}), shard 0's of version {parts[0].Version} (epoch {parts[0].Epoch} round {parts[0].Round}).", nameof(parts));
            if (part.Weights.Values.Length != shard.Length)
                throw new ArgumentException($"Shard {k}'s checkpoint holds {part.Weights.Values.Length} weights, its slice has {shard.Length}.", nameof(parts));
            part.Weights.Values.CopyTo(values, shard.Start);
            for (var b = 0; b < state.Length; b++)
                part.OptimizerState.First(s => s.Name == state[b].Name).Values.CopyTo(state[b].Item2, shard.Start);
        }
        return ParameterShard.WithContents(parts[0], new ParameterVector(layout, values), state);
    }
}
