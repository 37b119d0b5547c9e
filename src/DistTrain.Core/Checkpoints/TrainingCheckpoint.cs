using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using DistTrain.Core.Configuration;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Core.Checkpoints;

/// <summary>
/// Everything the parameter server needs to continue a run exactly where it stopped, stored as one safetensors file
/// (see <see cref="SafeTensors"/>) that PyTorch's <c>safetensors.torch.load_file</c> also reads.
/// </summary>
/// <remarks>
/// <para>Tensors, in this order: every segment of the weights under its <c>state_dict</c> name and shape (as
/// <see cref="SafeTensors.Write"/>), then one tensor per optimizer state buffer, named <c>optimizer.</c> + its PyTorch
/// name (<c>optimizer.momentum_buffer</c>, <c>optimizer.exp_avg</c>, ...), shape <c>[trainable length]</c>.</para>
/// <para><c>__metadata__</c> (all strings): <c>format</c> = <c>disttrain-checkpoint</c>, <c>format_version</c>, the position
/// <c>epoch</c>/<c>round</c> (the next minibatch to run: after the last round of epoch e it is e + 1, round 0), <c>version</c>
/// (optimizer steps applied), <c>optimizer_kind</c>, <c>optimizer_steps</c>, the shard plan's <c>shard_seed</c>,
/// <c>workers</c> and <c>batch_size_per_worker</c> (together they fix the data order), the partial epoch's
/// <c>epoch_samples</c> and <c>epoch_loss_sum</c>, <c>model_fingerprint</c> (see <see cref="LayoutFingerprint"/>),
/// <c>optimizer_hyperparameters</c> (a JSON object of the settings the optimizer state depends on, by configuration key,
/// see <see cref="OptimizerOptions.StateHyperparameters"/>), <c>written_at</c> (when the file was written, see
/// <see cref="WrittenAtKey"/>), <c>training_mode</c> (Training:Mode), <c>trained_ahead</c>
/// (asynchronous mode: <c>round:shard;...</c> of minibatches after the position already trained), <c>data_sha256</c>,
/// the SHA-256 of every byte after the header, and <c>metadata_sha256</c>, that of the other metadata entries
/// (<see cref="SafeTensors.MetadataDigest"/>; optional when reading); <c>train_samples</c>, <c>data_settings</c>, <c>model_settings</c> and
/// <c>run_epochs</c> (Training:Epochs of the run), which a resume compares with its config; <c>update_settings</c> (the learning
/// rate, its schedule, L1, L2, clipping and the like, see <see cref="UpdateSettings"/>), which a resume may change and is told of when it does.</para>
/// <para>The learning-rate schedule is a pure function of the position (optimizer steps, epoch, round, steps per epoch),
/// so the position is its whole state.</para>
/// </remarks>
public sealed class TrainingCheckpoint
{
    /// <summary>Metadata key of <see cref="JobId"/>.</summary>
    public const string JobIdKey = "job_id";

    /// <summary>
    /// Metadata key of the time the file was written (<see cref="WrittenAt"/>): UTC, ISO-8601 with seven fractional digits
    /// of a second (<see cref="WrittenAtFormat"/>, for example <c>2026-12-03T14:05:09.1234567Z</c>). Covered by
    /// <c>metadata_sha256</c> like every other entry. <see cref="CheckpointStore"/> orders the runs of a folder and prunes
    /// by it rather than by the file's time, which a copy without times (<c>cp -r</c> without <c>-p</c>, rsync without
    /// <c>-t</c>, a restore from backup) resets.
    /// </summary>
    public const string WrittenAtKey = "written_at";

    /// <summary>Format of the <see cref="WrittenAtKey"/> value (<see cref="DateTime.ParseExact(string, string, IFormatProvider, DateTimeStyles)"/>
    /// pattern): UTC to the 100 ns tick, ISO-8601.</summary>
    public const string WrittenAtFormat = "yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'";

    /// <summary>Value of the <c>format</c> metadata key.</summary>
    public const string Format = "disttrain-checkpoint";

    /// <summary>Version of the layout described above; a file with another version is refused.</summary>
    public const int FormatVersion = 1;

    /// <summary>Prefix of the optimizer state tensors' names.</summary>
    public const string OptimizerPrefix = "optimizer.";

    /// <summary>Creates a checkpoint over the given arrays (not copied: write it before they change).</summary>
    /// <param name="weights">All weights: trainable, running statistics and frozen, in layout order.</param>
    /// <param name="optimizerState">The optimizer's <see cref="Optimizer.State"/>: each buffer <see cref="ParameterLayout.TrainableLength"/> floats.</param>
    /// <param name="optimizerKind">The optimizer the state belongs to.</param>
    /// <param name="optimizerSteps">The optimizer's <see cref="Optimizer.StepCount"/>.</param>
    /// <param name="version">Weights version: optimizer steps the parameter server has applied.</param>
    /// <param name="epoch">1-based epoch of the next minibatch to run.</param>
    /// <param name="round">0-based round of the next minibatch within <paramref name="epoch"/>.</param>
    /// <param name="shardSeed">Seed of the shard planner's shuffles (Training:Seed).</param>
    /// <param name="workers">Workers, i.e. shards per epoch.</param>
    /// <param name="batchSizePerWorker">Samples per worker minibatch.</param>
    /// <param name="epochSamples">Training samples already consumed in <paramref name="epoch"/> (0 at an epoch start).</param>
    /// <param name="epochLossSum">Sum of the per-sample losses over those samples.</param>
    /// <param name="jobId">The cluster job that writes it; empty when unknown (see <see cref="JobId"/>).</param>
    /// <param name="optimizerHyperparameters">The settings the optimizer state depends on (see
    /// <see cref="OptimizerOptions.StateHyperparameters"/>); null when unknown (a checkpoint written before they were recorded).</param>
    /// <param name="mode">The training mode that wrote it (Training:Mode).</param>
    /// <param name="trainedAhead">Asynchronous mode: minibatches (round, shard) of rounds at or after <paramref name="round"/>
    /// already trained, which a resume skips; null or empty for none.</param>
    /// <param name="trainSamples">The run's training samples (see <see cref="TrainSamples"/>); 0 when unknown.</param>
    /// <exception cref="ArgumentException">A state buffer does not have the trainable length, or a count is out of range.</exception>
    public TrainingCheckpoint(ParameterVector weights, IReadOnlyList<(string Name, float[] Values)> optimizerState, OptimizerKind optimizerKind,
        long optimizerSteps, long version, int epoch, int round, int shardSeed, int workers, int batchSizePerWorker,
        int epochSamples = 0, double epochLossSum = 0, string jobId = "", IReadOnlyList<(string Key, string Value)>? optimizerHyperparameters = null,
        TrainingMode mode = TrainingMode.Sync, IReadOnlyList<(int Round, int Shard)>? trainedAhead = null, int trainSamples = 0)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(optimizerState);
        foreach (var (name, values) in optimizerState)
            if (values.Length != weights.Layout.TrainableLength)
                throw new ArgumentException($"Optimizer state '{name}' has {values.Length} elements; the trainable prefix has {weights.Layout.TrainableLength}.", nameof(optimizerState));
        ArgumentOutOfRangeException.ThrowIfNegative(optimizerSteps);
        ArgumentOutOfRangeException.ThrowIfNegative(version);
        ArgumentOutOfRangeException.ThrowIfLessThan(epoch, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(round);
        ArgumentOutOfRangeException.ThrowIfLessThan(workers, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSizePerWorker, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(epochSamples);
        ArgumentOutOfRangeException.ThrowIfNegative(trainSamples);
        Weights = weights;
        OptimizerState = optimizerState;
        OptimizerKind = optimizerKind;
        OptimizerSteps = optimizerSteps;
        Version = version;
        Epoch = epoch;
        Round = round;
        ShardSeed = shardSeed;
        Workers = workers;
        BatchSizePerWorker = batchSizePerWorker;
        EpochSamples = epochSamples;
        EpochLossSum = epochLossSum;
        JobId = jobId ?? "";
        OptimizerHyperparameters = optimizerHyperparameters;
        Mode = mode;
        TrainSamples = trainSamples;
        TrainedAhead = trainedAhead ?? [];
        foreach (var (r, shard) in TrainedAhead)
            if (r < round || shard < 0 || shard >= workers)
                throw new ArgumentException($"A minibatch trained ahead, round {r} of shard {shard}, is not at or after round {round} of one of the {workers} shards.", nameof(trainedAhead));
    }

    /// <summary>The training mode that wrote the checkpoint (Training:Mode; <see cref="TrainingMode.Sync"/> for one that does not record it).</summary>
    public TrainingMode Mode { get; }

    /// <summary>
    /// Training samples of the run that wrote it (after Data:TrainLimit, the class filter and the validation split), which
    /// with the seed and the workers fix every epoch's shard plan; 0 for a checkpoint that does not record them.
    /// </summary>
    public int TrainSamples { get; }

    /// <summary>
    /// The data settings that decide what each training sample is (format, test split, normalization, class filter, limit,
    /// validation split) as canonical JSON, which a resume compares with its own; empty for a checkpoint that does not record
    /// them (written by an earlier version, or by code that gives none).
    /// </summary>
    public string DataSettings { get; init; } = "";

    /// <summary>
    /// The network's layers and loss as configured (Model:Layers, Model:Loss), as canonical JSON: a resume compares them
    /// with its own, since an activation or a dropout rate changes the network without changing its weights' shapes;
    /// empty for a checkpoint that does not record them.
    /// </summary>
    public string ModelSettings { get; init; } = "";

    /// <summary>
    /// Training:Epochs of the run that wrote it, which Optimizer:Schedule Cosine anneals over (a resume with another count
    /// follows another curve from its position on); 0 for a checkpoint that does not record it (written by an earlier version).
    /// </summary>
    public int RunEpochs { get; init; }

    /// <summary>
    /// The settings of the update the run applied, by configuration key (Optimizer:LearningRate, L1, L2, GradientClipNorm,
    /// Nesterov, DecayBiasAndNormParameters, ScaleLearningRateByWorkers and the Optimizer:Schedule settings its kind uses)
    /// as canonical JSON: a resume may change them, and says which it changed; empty for a checkpoint that does not record
    /// them (written by an earlier version).
    /// </summary>
    public string UpdateSettings { get; init; } = "";

    /// <summary>
    /// <see cref="Data.ShardPlanner.ReferenceDigest"/> of the build that wrote it (16 hex digits): how that build and its .NET
    /// runtime shuffle each epoch's shards. A checkpoint within an epoch (<see cref="Round"/> &gt; 0) resumes that epoch's
    /// plan, which only a build that shuffles alike can follow. Empty for a checkpoint that does not record it (written by an
    /// earlier version).
    /// </summary>
    public string ShardShuffle { get; init; } = Data.ShardPlanner.ReferenceDigest;

    /// <summary>Asynchronous mode: minibatches (round, shard) at or after <see cref="Round"/> already trained, which a resume skips.</summary>
    public IReadOnlyList<(int Round, int Shard)> TrainedAhead { get; }

    /// <summary>
    /// The settings the optimizer state was built with, by configuration key (for example <c>Optimizer:Beta2</c>), values
    /// in round-trip form; null for a checkpoint that does not record them.
    /// </summary>
    public IReadOnlyList<(string Key, string Value)>? OptimizerHyperparameters { get; }

    /// <summary>
    /// The settings of <paramref name="options"/> that differ from the ones this checkpoint's optimizer state was built
    /// with, one line each naming the key and both values; empty when they match or the checkpoint records none.
    /// </summary>
    public IReadOnlyList<string> HyperparameterChanges(OptimizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (OptimizerHyperparameters is null) return [];
        var recorded = OptimizerHyperparameters.ToDictionary(h => h.Key, h => h.Value, StringComparer.Ordinal);
        var changes = new List<string>();
        foreach (var (key, value) in options.StateHyperparameters())
        {
            if (!recorded.TryGetValue(key, out var written)) changes.Add($"{key} = {value}, the checkpoint does not record it");
            else if (!SameValue(written, value)) changes.Add($"{key} = {value}, the checkpoint's state was built with {written}");
        }
        return changes;

        static bool SameValue(string a, string b) =>
            double.TryParse(a, NumberStyles.Float, CultureInfo.InvariantCulture, out var x) && double.TryParse(b, NumberStyles.Float, CultureInfo.InvariantCulture, out var y)
                ? x.Equals(y)
                : string.Equals(a, b, StringComparison.Ordinal);
    }

    /// <summary>
    /// Identity of the cluster job that wrote it (empty when unknown, e.g. single-node mode). A standby parameter server
    /// that takes over resumes only from checkpoints of the job its workers were in, not from an earlier job's files
    /// left in a shared folder.
    /// </summary>
    public string JobId { get; }

    /// <summary>
    /// When the file this checkpoint was read from was written (its <see cref="WrittenAtKey"/>, UTC); null for a checkpoint
    /// not read from a file, or read from one written by an earlier version, which did not record it.
    /// </summary>
    public DateTimeOffset? WrittenAt { get; init; }

    /// <summary>All weights, layout order.</summary>
    public ParameterVector Weights { get; }

    /// <summary>Optimizer state buffers by PyTorch name (without the <see cref="OptimizerPrefix"/>), each of the trainable length.</summary>
    public IReadOnlyList<(string Name, float[] Values)> OptimizerState { get; }

    /// <summary>The optimizer the state belongs to.</summary>
    public OptimizerKind OptimizerKind { get; }

    /// <summary>The optimizer's step count (Adam's bias correction uses it).</summary>
    public long OptimizerSteps { get; }

    /// <summary>Weights version: optimizer steps the parameter server has applied.</summary>
    public long Version { get; }

    /// <summary>1-based epoch of the next minibatch to run.</summary>
    public int Epoch { get; }

    /// <summary>0-based round of the next minibatch within <see cref="Epoch"/>; 0 at an epoch boundary.</summary>
    public int Round { get; }

    /// <summary>Seed of the shard planner (Training:Seed).</summary>
    public int ShardSeed { get; }

    /// <summary>Workers (shards) of the run.</summary>
    public int Workers { get; }

    /// <summary>Samples per worker minibatch.</summary>
    public int BatchSizePerWorker { get; }

    /// <summary>Training samples already consumed in <see cref="Epoch"/>.</summary>
    public int EpochSamples { get; }

    /// <summary>Sum of the per-sample training losses over <see cref="EpochSamples"/>.</summary>
    public double EpochLossSum { get; }

    /// <summary>
    /// A fingerprint of a layout: the SHA-256 (hex) of every tensor's name, shape, role and frozen flag in flat order.
    /// Two models with the same fingerprint lay out their weights identically.
    /// </summary>
    public static string LayoutFingerprint(ParameterLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        var text = new StringBuilder();
        foreach (var s in layout.Segments)
            text.Append(s.Name).Append('[').AppendJoin(',', s.Shape).Append("]:").Append(s.Role).Append(s.Frozen ? ":frozen" : "").Append(';');
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
    }

    /// <summary>
    /// True when <paramref name="fingerprint"/> (a checkpoint's <c>model_fingerprint</c>) is that of <paramref name="layout"/>, or
    /// of the same model as an earlier version laid it out (<see cref="EarlierShapes.EarlierLayout"/>: a LayerNorm's tensors on
    /// 1x1 feature maps as <c>[C]</c>), whose weights load unchanged.
    /// </summary>
    /// <param name="fingerprint">The recorded fingerprint; null when there is none.</param>
    /// <param name="layout">The model's layout.</param>
    /// <exception cref="ArgumentNullException"><paramref name="layout"/> is null.</exception>
    public static bool FingerprintMatches(string? fingerprint, ParameterLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        return fingerprint == LayoutFingerprint(layout) || EarlierShapes.EarlierLayout(layout) is { } earlier && fingerprint == LayoutFingerprint(earlier);
    }

    /// <summary>
    /// How a checkpoint's tensors differ from <paramref name="layout"/>, and the fix, for the refusal of a checkpoint whose fingerprint is
    /// not the model's: the first tensors missing, extra or of another shape; or, when every tensor matches, the trainable
    /// lengths (the weights Model:Freeze leaves to train; the optimizer state, if any, holds one value per trainable weight
    /// per buffer).
    /// </summary>
    private static string ModelDifference(IReadOnlyDictionary<string, NamedTensor> tensors, ParameterLayout layout)
    {
        const int shown = 3;
        var weights = tensors.Where(t => !t.Key.StartsWith(OptimizerPrefix, StringComparison.Ordinal)).ToDictionary(t => t.Key, t => t.Value, StringComparer.Ordinal);
        static string Shape(int[] shape) => $"[{string.Join(", ", shape)}]";
        var differences = new List<string>();
        foreach (var segment in layout.Segments)
        {
            if (!weights.TryGetValue(segment.Name, out var tensor)) differences.Add($"{segment.Name} {Shape(segment.Shape)} is not in it");
            else if (!tensor.Shape.SequenceEqual(segment.Shape)) differences.Add($"{segment.Name} is {Shape(tensor.Shape)} in it and {Shape(segment.Shape)} here");
        }
        var names = layout.Segments.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
        differences.AddRange(weights.Where(t => !names.Contains(t.Key)).Select(t => $"it holds {t.Key} {Shape(t.Value.Shape)}, which this model has not"));
        if (differences.Count > 0)
            return string.Join("; ", differences.Take(shown)) + (differences.Count > shown ? $"; and {differences.Count - shown} more differences" : "") +
                ". Resume with the config that wrote it";
        // Same names and shapes: what the fingerprint still covers is which tensors are frozen, and their roles, which
        // follow from the layers' types and so from the names.
        var trainable = tensors.FirstOrDefault(t => t.Key.StartsWith(OptimizerPrefix, StringComparison.Ordinal)).Value?.Data.Length;
        var counts = trainable is { } length && length != layout.TrainableLength
            ? $": its run trained {length:N0} weights, this config trains {layout.TrainableLength:N0}"
            : "";
        return $"the same tensors, but another set of them is frozen (Model:Freeze){counts}. Resume with the checkpoint's Model:Freeze, or fine-tune " +
            "its run's model with this one (disttrain finetune)";
    }

    /// <summary>Copies the optimizer state and step count into <paramref name="optimizer"/>.</summary>
    /// <exception cref="InvalidDataException">The optimizer is of another kind, or its state buffers differ in name or length.</exception>
    public void RestoreOptimizer(Optimizer optimizer)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        if (optimizer.Options.Kind != OptimizerKind)
            throw new InvalidDataException($"The checkpoint holds {OptimizerKind} state, but Optimizer:Kind is {optimizer.Options.Kind}. Resume with the same optimizer, or start a new run.");
        var names = OptimizerState.Select(s => s.Name).Order(StringComparer.Ordinal).ToArray();
        var expected = optimizer.State.Select(s => s.Name).Order(StringComparer.Ordinal).ToArray();
        if (!names.SequenceEqual(expected, StringComparer.Ordinal))
            throw new InvalidDataException($"The checkpoint's {OptimizerKind} state has buffers [{string.Join(", ", names)}], the optimizer has [{string.Join(", ", expected)}] (for example Optimizer:Momentum changed between 0 and non-zero). Resume with the same optimizer settings.");
        foreach (var (name, target) in optimizer.State)
        {
            var source = OptimizerState.First(s => s.Name == name).Values;
            if (source.Length != target.Length)
                throw new InvalidDataException($"Optimizer state '{name}' has {source.Length} elements in the checkpoint and {target.Length} in the optimizer.");
            source.CopyTo(target, 0);
        }
        optimizer.StepCount = OptimizerSteps;
    }

    /// <summary>Writes the checkpoint to <paramref name="path"/> atomically (see <see cref="CheckpointStore"/>), recording the
    /// current UTC time as its <see cref="WrittenAtKey"/>.</summary>
    /// <exception cref="IOException">The file could not be written; the target is unchanged.</exception>
    public void Write(string path) => Write(path, DateTimeOffset.UtcNow);

    /// <summary>Writes the checkpoint to <paramref name="path"/> atomically (see <see cref="CheckpointStore"/>), recording
    /// <paramref name="writtenAt"/> (converted to UTC) as its <see cref="WrittenAtKey"/>.</summary>
    /// <param name="path">Target file; replaced atomically.</param>
    /// <param name="writtenAt">The write time to record; <see cref="CheckpointStore.Save"/> gives its clock's time.</param>
    /// <exception cref="IOException">The file could not be written; the target is unchanged.</exception>
    public void Write(string path, DateTimeOffset writtenAt)
    {
        var tensors = new List<(string Name, int[] Shape, float[] Values, int Offset, int Length)>();
        foreach (var segment in Weights.Layout.Segments)
            tensors.Add((segment.Name, segment.Shape, Weights.Values, segment.Offset, segment.Length));
        foreach (var (name, values) in OptimizerState)
            tensors.Add((OptimizerPrefix + name, [values.Length], values, 0, values.Length));

        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var t in tensors)
            hash.AppendData(MemoryMarshal.AsBytes(t.Values.AsSpan(t.Offset, t.Length)));
        var checksum = Convert.ToHexStringLower(hash.GetHashAndReset());

        var metadata = Metadata(checksum);
        metadata[WrittenAtKey] = writtenAt.UtcDateTime.ToString(WrittenAtFormat, CultureInfo.InvariantCulture);
        metadata[MetadataSha256Key] = MetadataDigest(metadata);
        var header = new Dictionary<string, object>(StringComparer.Ordinal) { ["__metadata__"] = metadata };
        long offset = 0;
        foreach (var t in tensors)
        {
            var bytes = (long)t.Length * sizeof(float);
            header[t.Name] = new { dtype = "F32", shape = t.Shape, data_offsets = new[] { offset, offset + bytes } };
            offset += bytes;
        }
        var json = JsonSerializer.SerializeToUtf8Bytes(header);
        var padded = (json.Length + 7) / 8 * 8; // data 8-byte aligned, as the reference writer does
        AtomicFile.Write(path, stream =>
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)padded);
            stream.Write(length);
            stream.Write(json);
            for (var i = json.Length; i < padded; i++) stream.WriteByte((byte)' ');
            foreach (var t in tensors)
                stream.Write(MemoryMarshal.AsBytes(t.Values.AsSpan(t.Offset, t.Length)));
        });
    }

    private Dictionary<string, string> Metadata(string checksum) => new(StringComparer.Ordinal)
    {
        ["format"] = Format,
        ["format_version"] = Invariant(FormatVersion),
        ["epoch"] = Invariant(Epoch),
        ["round"] = Invariant(Round),
        ["version"] = Invariant(Version),
        ["optimizer_kind"] = OptimizerKind.ToString(),
        ["optimizer_steps"] = Invariant(OptimizerSteps),
        ["shard_seed"] = Invariant(ShardSeed),
        ["workers"] = Invariant(Workers),
        ["batch_size_per_worker"] = Invariant(BatchSizePerWorker),
        ["epoch_samples"] = Invariant(EpochSamples),
        ["epoch_loss_sum"] = EpochLossSum.ToString("R", CultureInfo.InvariantCulture),
        ["model_fingerprint"] = LayoutFingerprint(Weights.Layout),
        ["data_sha256"] = checksum,
        [JobIdKey] = JobId,
        ["optimizer_hyperparameters"] = OptimizerHyperparameters is null
            ? ""
            : JsonSerializer.Serialize(OptimizerHyperparameters.ToDictionary(h => h.Key, h => h.Value, StringComparer.Ordinal)),
        ["training_mode"] = Mode.ToString(),
        ["trained_ahead"] = string.Join(';', TrainedAhead.Select(m => $"{Invariant(m.Round)}:{Invariant(m.Shard)}")),
        ["train_samples"] = Invariant(TrainSamples),
        ["data_settings"] = DataSettings,
        ["model_settings"] = ModelSettings,
        ["run_epochs"] = Invariant(RunEpochs),
        ["update_settings"] = UpdateSettings,
        ["shard_shuffle"] = ShardShuffle,
    };

    /// <summary>The trained-ahead list of the metadata (<c>round:shard;round:shard</c>); empty for none.</summary>
    private static List<(int Round, int Shard)> TrainedAheadFrom(string path, string text)
    {
        var list = new List<(int, int)>();
        foreach (var item in text.Split(';', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = item.Split(':');
            if (parts.Length != 2 || !int.TryParse(parts[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var round)
                || !int.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out var shard))
                throw new InvalidDataException($"{path}: metadata trained_ahead item '{item}' is not round:shard. The file is corrupt.");
            list.Add((round, shard));
        }
        return list;
    }

    private static string Invariant(long value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>
    /// The write time <paramref name="metadata"/> records under <see cref="WrittenAtKey"/> (UTC); null when it records none
    /// (a checkpoint written by an earlier version). Does not check the header checksum: the caller does.
    /// </summary>
    /// <param name="path">Names the file in the error.</param>
    /// <param name="metadata">A checkpoint's <c>__metadata__</c>.</param>
    /// <exception cref="InvalidDataException">The value is not a time in <see cref="WrittenAtFormat"/>; the message names the file and the value.</exception>
    internal static DateTimeOffset? WrittenAtOf(string path, IReadOnlyDictionary<string, string> metadata)
    {
        if (!metadata.TryGetValue(WrittenAtKey, out var text)) return null;
        return DateTime.TryParseExact(text, WrittenAtFormat, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out var time)
            ? new DateTimeOffset(time, TimeSpan.Zero)
            : throw new InvalidDataException($"{path}: metadata {WrittenAtKey} = '{text}' is not a UTC time such as 2026-12-03T14:05:09.1234567Z. The file is corrupt.");
    }

    /// <summary>
    /// False when <paramref name="metadata"/> records a header checksum (<c>metadata_sha256</c>) that its other entries do
    /// not match: an edited or damaged header. True when it matches, or when the header has none (written before it existed).
    /// </summary>
    internal static bool HeaderChecksumMatches(IReadOnlyDictionary<string, string> metadata) =>
        !metadata.TryGetValue(MetadataSha256Key, out var recorded) || string.Equals(MetadataDigest(metadata), recorded, StringComparison.Ordinal);

    /// <summary>Metadata key of the header's own checksum (<see cref="SafeTensors.MetadataDigest"/>, as model files record it):
    /// <c>data_sha256</c> covers the tensors, this the position and settings, which a resume trusts as much: a header edited
    /// to another round would otherwise train some minibatches twice or never.</summary>
    private const string MetadataSha256Key = SafeTensors.MetadataSha256Key;

    private static string MetadataDigest(IReadOnlyDictionary<string, string> metadata) => SafeTensors.MetadataDigest(metadata);

    /// <summary>The recorded optimizer hyperparameters; null when the checkpoint has none (written before they were recorded).</summary>
    private static List<(string Key, string Value)>? Hyperparameters(string path, string json)
    {
        if (json.Length == 0) return null;
        try
        {
            return JsonSerializer.Deserialize<Dictionary<string, string>>(json)?.Select(kv => (kv.Key, kv.Value)).ToList()
                ?? throw new JsonException("null");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: metadata optimizer_hyperparameters is not a JSON object of strings ({e.Message}). The file is corrupt.");
        }
    }

    /// <summary>
    /// Reads and verifies a checkpoint of a model laid out as <paramref name="layout"/>: the header, the format
    /// version, the SHA-256 of the data section, and every tensor's name and shape against the layout (a checkpoint of an
    /// earlier version whose LayerNorm on 1x1 feature maps holds <c>[C]</c> for <c>[C, 1, 1]</c> loads: <see cref="EarlierShapes"/>).
    /// </summary>
    /// <param name="path">The checkpoint file.</param>
    /// <param name="layout">The model's layout; the checkpoint must hold exactly its tensors with their shapes.</param>
    /// <exception cref="InvalidDataException">The file is corrupt (checksum mismatch), of another format or version, or holds
    /// another model; the message names the file and the problem.</exception>
    /// <exception cref="SafeTensorsFormatException">The file is not valid safetensors (truncated, overlapping or uncovered bytes, ...).</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="UnreadableFileException">This process may not read the file (<see cref="SafeTensors.Unreadable"/>).</exception>
    public static TrainingCheckpoint Read(string path, ParameterLayout layout)
    {
        ArgumentNullException.ThrowIfNull(layout);
        var bytes = SafeTensors.Readable(path, () => File.ReadAllBytes(path));
        var (tensors, metadata, dataStart) = SafeTensors.ReadWithMetadata(path, bytes);
        if (metadata.Count == 0)
            throw new InvalidDataException($"{path}: no __metadata__ in the header; this is not a DistTrain checkpoint (a model.safetensors cannot be resumed from).");
        string Get(string key) => metadata.TryGetValue(key, out var value)
            ? value
            : throw new InvalidDataException($"{path}: metadata key '{key}' is missing; the file is not a complete DistTrain checkpoint.");
        long GetLong(string key) => long.TryParse(Get(key), NumberStyles.Integer, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new InvalidDataException($"{path}: metadata {key} = '{Get(key)}' is not a whole number.");
        int GetInt(string key)
        {
            var value = GetLong(key);
            return value is >= int.MinValue and <= int.MaxValue
                ? (int)value
                : throw new InvalidDataException($"{path}: metadata {key} = {value} is out of range.");
        }

        if (Get("format") != Format)
            throw new InvalidDataException($"{path}: format '{Get("format")}' is not '{Format}'.");
        if (GetLong("format_version") != FormatVersion)
            throw new InvalidDataException($"{path}: checkpoint format version {Get("format_version")} is not supported (this build reads version {FormatVersion}).");
        var checksum = Convert.ToHexStringLower(SHA256.HashData(bytes.AsSpan(dataStart)));
        if (!string.Equals(checksum, Get("data_sha256"), StringComparison.Ordinal))
            throw new InvalidDataException($"{path}: checksum mismatch: the data section's SHA-256 is {checksum}, the header records {Get("data_sha256")}. The file is corrupt.");
        // Optional: checkpoints written before the header had its own checksum carry none.
        if (metadata.TryGetValue(MetadataSha256Key, out var recorded) && MetadataDigest(metadata) is var digest
            && !string.Equals(digest, recorded, StringComparison.Ordinal))
            throw new InvalidDataException($"{path}: checksum mismatch: the header's metadata has SHA-256 {digest}, the header records {recorded}. " +
                                           "The header was edited or is corrupt (a changed epoch or round would train minibatches twice or skip them).");
        if (!FingerprintMatches(Get("model_fingerprint"), layout))
            throw new InvalidDataException($"{path}: the checkpoint holds another model: {ModelDifference(tensors, layout)}.");
        if (!Enum.TryParse<OptimizerKind>(Get("optimizer_kind"), ignoreCase: false, out var kind))
            throw new InvalidDataException($"{path}: metadata optimizer_kind = '{Get("optimizer_kind")}' is unknown.");
        // Optional: checkpoints written before the training modes are synchronous.
        var modeText = metadata.GetValueOrDefault("training_mode", nameof(TrainingMode.Sync));
        if (!Enum.TryParse<TrainingMode>(modeText, ignoreCase: false, out var mode) || !Enum.IsDefined(mode))
            throw new InvalidDataException($"{path}: metadata training_mode = '{modeText}' is unknown.");

        var weights = new ParameterVector(layout);
        foreach (var segment in layout.Segments)
        {
            if (!tensors.TryGetValue(segment.Name, out var tensor))
                throw new InvalidDataException($"{path}: tensor '{segment.Name}' is missing.");
            if (!EarlierShapes.Fits(tensor.Shape, segment))
                throw new InvalidDataException($"{path}: tensor '{segment.Name}' has shape [{string.Join(", ", tensor.Shape)}], the model's is [{string.Join(", ", segment.Shape)}].");
            tensor.Data.CopyTo(weights.Segment(segment));
        }
        var state = new List<(string, float[])>();
        foreach (var (name, tensor) in tensors)
        {
            if (layout.Segments.Any(s => s.Name == name)) continue;
            if (!name.StartsWith(OptimizerPrefix, StringComparison.Ordinal))
                throw new InvalidDataException($"{path}: tensor '{name}' is neither a weight of the model nor optimizer state.");
            if (tensor.Shape is not [var length] || length != layout.TrainableLength)
                throw new InvalidDataException($"{path}: optimizer state '{name}' has shape [{string.Join(", ", tensor.Shape)}], expected [{layout.TrainableLength}] (the trainable length).");
            state.Add((name[OptimizerPrefix.Length..], tensor.Data));
        }
        try
        {
            return new TrainingCheckpoint(weights, state, kind, GetLong("optimizer_steps"), GetLong("version"), GetInt("epoch"), GetInt("round"),
                GetInt("shard_seed"), GetInt("workers"), GetInt("batch_size_per_worker"), GetInt("epoch_samples"),
                double.Parse(Get("epoch_loss_sum"), NumberStyles.Float, CultureInfo.InvariantCulture),
                metadata.GetValueOrDefault(JobIdKey, ""), // optional: checkpoints written before job ids have none
                Hyperparameters(path, metadata.GetValueOrDefault("optimizer_hyperparameters", "")),
                mode, TrainedAheadFrom(path, metadata.GetValueOrDefault("trained_ahead", "")),
                metadata.ContainsKey("train_samples") ? GetInt("train_samples") : 0) // optional: earlier checkpoints do not record it
            {
                DataSettings = metadata.GetValueOrDefault("data_settings", ""), // optional likewise
                ModelSettings = metadata.GetValueOrDefault("model_settings", ""),
                RunEpochs = metadata.ContainsKey("run_epochs") ? GetInt("run_epochs") : 0, // optional likewise
                UpdateSettings = metadata.GetValueOrDefault("update_settings", ""), // optional likewise
                WrittenAt = WrittenAtOf(path, metadata), // optional likewise
                ShardShuffle = metadata.GetValueOrDefault("shard_shuffle", ""), // optional likewise
            };
        }
        catch (Exception e) when (e is ArgumentException or FormatException)
        {
            throw new InvalidDataException($"{path}: the metadata is out of range ({e.Message}).");
        }
    }
}
