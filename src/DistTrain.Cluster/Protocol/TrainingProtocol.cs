using Akka.Actor;
using DistTrain.Core.Data;
using MessagePack;

namespace DistTrain.Cluster.Protocol;

// The synchronous data-parallel protocol. One epoch:
//   Coordinator -> Worker            AssignShard          (the worker's sample indices for the epoch, or how to plan them)
//   Coordinator -> ParameterServer   StartEpoch           (who takes part, how many minibatches each)
//   repeat per round r:
//     ParameterServer -> Worker      WeightsUpdated(v, r) (the weights every replica computes on)
//     Worker -> ParameterServer      GradientComputed(v)  (only workers with a minibatch r)
//     ParameterServer -> Coordinator RoundApplied(v+1)    (after one averaged optimizer step)
//   ParameterServer -> Coordinator   EpochCompleted       (after the last round's weights went out)
//   Coordinator -> Worker            Evaluate(v, range)   (each test sample scored exactly once)
//   Worker -> Coordinator            EvaluationResult
// The other modes (Training:Mode, src/DistTrain.Cluster/Training/) use the same messages: in Async and
// BoundedStaleness the parameter server sends WeightsUpdated to one worker at a time, naming the round and the
// shard whose minibatch it computes (every worker holds every shard of the part); in LocalSgd a round's
// GradientComputed carries the worker's model and optimizer state after up to Training:LocalSteps local steps.
// Tensors are float[] and travel as raw little-endian bytes (see RawFloatArrayFormatter).
//
// Loaned tensors: the float[] in WeightsUpdated and GradientComputed belongs to the sender, which
// reuses it a few rounds later instead of allocating 1 MB per message. A receiver reads (or copies)
// the array while it handles the message and keeps no reference past the round. The synchronous
// protocol makes this safe: the parameter server writes a new version only after every gradient of
// the round arrived, which each replica sends only after it copied the weights it computed on. Weights
// for one worker alone come from that worker's own two arrays (Training/WeightsOutbox.cs).

/// <summary>The worker's shard of one epoch. Coordinator → Worker.</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="SampleIndices">Training-set indices in the order the worker consumes them.</param>
/// <param name="BatchSize">Samples per minibatch; the last minibatch of the shard may be shorter. Ignored when
/// <paramref name="Steps"/> is set.</param>
/// <param name="FirstRound">The round of the shard's first minibatch: 0 for an epoch's shard; later for the part of an
/// epoch that takes over a lost worker's samples.</param>
/// <param name="Rounds">Rounds in this part of the epoch as planned (the most minibatches of any worker); 0 for a part that only
/// hands out the weights (every shard empty), which is over for a worker once it holds the weights before its first round.</param>
/// <param name="Steps">0: minibatches of <paramref name="BatchSize"/>. Otherwise the shard is cut into this many balanced
/// minibatches, sizes differing by at most one (<see cref="MinibatchPlan.Balanced"/>), as when a job's worker count changed.</param>
/// <param name="Shards">The asynchronous modes: every shard of the part, by shard index, cut the same way, because the
/// parameter server may hand this worker another shard's minibatch (<see cref="WeightsUpdated.Shard"/>); null otherwise.</param>
/// <param name="StepsPerEpoch">Local SGD: the epoch's planned steps, the learning-rate schedule's unit (0 when unused).</param>
/// <param name="ScalingWorkers">Local SGD: the workers the linear scaling rule multiplies the learning rate by (0 when unused).</param>
/// <param name="Part">The part of the epoch this shard belongs to: 0 for the epoch's first, counting up for each further
/// part (<see cref="StartEpoch.Part"/>). Weights of a later part wait for its shard; weights of an earlier part are never
/// trained on with this shard.</param>
/// <param name="Recipe">When set, the worker plans its sample indices (and, in the asynchronous modes, every shard) itself from
/// the recipe (<see cref="Resolve"/>), and <paramref name="SampleIndices"/> (empty) and <paramref name="Shards"/> (null) are not read. In
/// cluster mode the coordinator sends the parts that have samples this way: an epoch's first part in about 100 bytes instead of up to
/// 5 bytes per sample, and a further part (the samples a lost worker left) as pieces of the epoch's plan
/// (<see cref="ShardRecipe.Pieces"/>), a few bytes per piece, unless its indices take fewer bytes.</param>
/// <param name="Epochs">Training:Epochs of the run, the last epoch it plans (early stopping may end it sooner): a worker plans no
/// shards ahead past it (<see cref="Training.ShardsAhead"/>). 0 when not given.</param>
[MessagePackObject]
public sealed record AssignShard(
    [property: Key(0)] int Epoch,
    [property: Key(1)] int[] SampleIndices,
    [property: Key(2)] int BatchSize,
    [property: Key(3)] int FirstRound = 0,
    [property: Key(4)] int Rounds = int.MaxValue,
    [property: Key(5)] int Steps = 0,
    [property: Key(6)] int[][]? Shards = null,
    [property: Key(7)] int StepsPerEpoch = 0,
    [property: Key(8)] int ScalingWorkers = 0,
    [property: Key(9)] int Part = 0,
    [property: Key(10)] ShardRecipe? Recipe = null,
    [property: Key(11)] int Epochs = 0) : IRangeCheckedMessage
{
    /// <summary>How the shard is cut into minibatches; minibatch k runs in round <c>FirstRound + k</c>.</summary>
    public MinibatchPlan Minibatches() => MinibatchesOf(SampleIndices.Length);

    /// <summary>How a shard of <paramref name="samples"/> samples of this part is cut into minibatches.</summary>
    public MinibatchPlan MinibatchesOf(int samples) => Steps > 0
        ? MinibatchPlan.Balanced(samples, Steps)
        : MinibatchPlan.Fixed(samples, BatchSize);

    /// <summary>The sample indices of shard <paramref name="shard"/> (<see cref="Shards"/>), or this worker's own when the part has no others.</summary>
    public int[] ShardIndices(int shard) => shard >= 0 && Shards is { } all && shard < all.Length ? all[shard] : SampleIndices;

    /// <summary>Bytes an Akka.Remote message takes besides its payload (recipient and sender paths, manifest), with room to
    /// spare: a remote <see cref="AssignShard"/> may take Akka.Remote's frame less this.</summary>
    public const long EnvelopeAllowanceBytes = 4096;

    /// <summary>
    /// An upper bound on this message's MessagePack encoding, bytes: every index at its own width (1 byte up to 127, 2 up to
    /// 255, 3 up to 65,535, else 5; MessagePack's int encodings), 5 bytes of header per array, 64 for the other fields, and a
    /// recipe's (<see cref="ShardRecipe.FixedBytesAtMost"/>, its slots and its pieces as indices).
    /// </summary>
    public long EncodedBytesAtMost()
    {
        static long Bytes(int[] indices)
        {
            long total = 5;
            foreach (var index in indices) total += index is >= 0 and <= 127 ? 1 : index is >= 0 and <= 255 ? 2 : index is >= 0 and <= 65535 ? 3 : 5;
            return total;
        }
        var bytes = 64 + Bytes(SampleIndices);
        if (Shards is { } all) foreach (var shard in all) bytes += Bytes(shard);
        if (Recipe is { } recipe)
        {
            bytes += ShardRecipe.FixedBytesAtMost + (recipe.Slots is { } slots ? Bytes(slots) : 0);
            if (recipe.Pieces is { } pieces) foreach (var piece in pieces) bytes += Bytes(piece);
        }
        return bytes;
    }

    /// <inheritdoc />
    /// <remarks>Beside a recipe, <see cref="SampleIndices"/> and <see cref="Shards"/> are not read (<see cref="Resolve"/> replaces them).</remarks>
    public string? OutOfRange() =>
        Epoch < 1 ? $"Epoch {Epoch} is below 1"
        : BatchSize < 1 ? $"BatchSize {BatchSize} is below 1"
        : FirstRound < 0 ? $"FirstRound {FirstRound} is below 0"
        : Rounds < 0 ? $"Rounds {Rounds} is below 0"
        : Steps < 0 ? $"Steps {Steps} is below 0"
        : StepsPerEpoch < 0 ? $"StepsPerEpoch {StepsPerEpoch} is below 0"
        : ScalingWorkers < 0 ? $"ScalingWorkers {ScalingWorkers} is below 0"
        : Part < 0 ? $"Part {Part} is below 0"
        : Epochs < 0 ? $"Epochs {Epochs} is below 0"
        : Recipe?.OutOfRange();

    /// <summary>
    /// This shard with its sample indices in place: itself when it carries them, else the shards planned from
    /// <see cref="Recipe"/> (<see cref="ShardPlanner"/> over (samples, workers, seed) for <see cref="Epoch"/>, and for a further part
    /// the recipe's pieces of that plan), checked against the recipe's digest.
    /// </summary>
    /// <param name="trainingSamples">The worker's training samples (after any limit and validation split).</param>
    /// <param name="planned">The recipe's planner's <c>Plan(Epoch)</c> when the caller has it already (planned ahead, see
    /// <see cref="Training.ShardsAhead"/>): every shard when the recipe has slots or pieces, else at least the worker's own at its
    /// place. Null, or one that lacks them, plans here. Checked against the digest either way.</param>
    /// <exception cref="ShardRecipeException">The recipe is for another number of training samples, a piece reaches past the end of
    /// its shard, or the shards planned here differ from the coordinator's (its digest does not match). The message names both
    /// sides and the fix. The recipe's fields must be in range (<see cref="OutOfRange"/>, which the serializer checks as it decodes
    /// a message); out of range, they may throw other exceptions.</exception>
    public AssignShard Resolve(int trainingSamples, int[][]? planned = null)
    {
        if (Recipe is not { } recipe) return this;
        if (recipe.SampleCount != trainingSamples)
            throw new ShardRecipeException($"Epoch {Epoch}: the parameter server planned the shards over {recipe.SampleCount:N0} training samples, and " +
                $"this worker holds {trainingSamples:N0}. Give every node of the job the same training data and the same Data settings " +
                "(Data:TrainLimit, Data:ValidationFraction), and run the same DistTrain version on each.");
        var planner = recipe.Planner;
        if (planned is not null && planned.Length != recipe.Workers) planned = null; // not this planner's: plan here
        if (recipe.Pieces is { } pieces)
        {
            var whole = planned is not null && Array.TrueForAll(planned, shard => shard is not null) ? planned : planner.Plan(Epoch);
            var assembled = new int[pieces.Length][];
            for (var k = 0; k < pieces.Length; k++) assembled[k] = Assemble(whole, pieces[k], recipe);
            CheckDigest(recipe, recipe.SlotCount > 0 ? ShardPlanner.Digest(assembled) : ShardPlanner.Digest(assembled[recipe.Position]));
            return this with { SampleIndices = assembled[recipe.Position], Shards = recipe.SlotCount > 0 ? assembled : null, Recipe = null };
        }
        if (recipe.Slots is not { } slots)
        {
            var own = planned?[recipe.Position] ?? planner.PlanShard(Epoch, recipe.Position);
            CheckDigest(recipe, ShardPlanner.Digest(own));
            return this with { SampleIndices = own, Recipe = null };
        }
        var plan = planned is not null && Array.TrueForAll(planned, shard => shard is not null) ? planned : planner.Plan(Epoch);
        var shards = new int[recipe.SlotCount][];
        Array.Fill(shards, []);
        for (var j = 0; j < slots.Length; j++) shards[slots[j]] = plan[j];
        CheckDigest(recipe, ShardPlanner.Digest(shards));
        return this with { SampleIndices = plan[recipe.Position], Shards = shards, Recipe = null };
    }

    /// <summary>The sample indices that <paramref name="pieces"/> (flat triples: plan shard, from, to) cut from <paramref name="plan"/>, in order.</summary>
    private int[] Assemble(int[][] plan, int[] pieces, ShardRecipe recipe)
    {
        var length = 0;
        for (var p = 0; p + 2 < pieces.Length; p += 3)
        {
            var (shard, from, to) = (pieces[p], pieces[p + 1], pieces[p + 2]);
            if (to > plan[shard].Length)
                throw new ShardRecipeException($"Epoch {Epoch}: a piece of the parameter server's recipe (seed {recipe.Seed}, {recipe.SampleCount:N0} " +
                    $"samples, {recipe.Workers} workers) takes samples {from:N0} to {to:N0} of shard {shard}, which holds {plan[shard].Length:N0} here. " +
                    "The nodes plan shards differently: run the same DistTrain version, on the same .NET runtime, on every node of the job.");
            length += to - from;
        }
        var indices = new int[length];
        var at = 0;
        for (var p = 0; p + 2 < pieces.Length; p += 3)
        {
            var (shard, from, to) = (pieces[p], pieces[p + 1], pieces[p + 2]);
            plan[shard].AsSpan(from, to - from).CopyTo(indices.AsSpan(at));
            at += to - from;
        }
        return indices;
    }

    private void CheckDigest(ShardRecipe recipe, ulong planned)
    {
        if (planned != recipe.Digest)
            throw new ShardRecipeException($"Epoch {Epoch}: the shards this worker planned from the parameter server's recipe (seed {recipe.Seed}, " +
                $"{recipe.SampleCount:N0} samples, {recipe.Workers} workers) differ from the parameter server's (digest {planned:x16} here, " +
                $"{recipe.Digest:x16} there). The nodes shuffle differently: run the same DistTrain version, on the same .NET runtime, on every node of the job.");
    }
}

/// <summary>
/// How a worker plans its shards itself (<see cref="AssignShard.Recipe"/>): the coordinator's <see cref="ShardPlanner"/> for the
/// epoch's first part, even shares over <paramref name="SampleCount"/> samples for <paramref name="Workers"/> workers with
/// <paramref name="Seed"/>; where this worker's shard is in its plan; and for a further part of the epoch, which pieces of that
/// plan make up each shard (<paramref name="Pieces"/>).
/// </summary>
/// <param name="SampleCount">Training samples the plan covers: the worker's own training set must have as many.</param>
/// <param name="Workers">Shards in the plan: the workers of the epoch's first part.</param>
/// <param name="Position">This worker's shard: without <paramref name="Pieces"/> its place in the plan, 0 to
/// <paramref name="Workers"/> − 1 (the worker's rank among the part's workers, not its worker index); with them, the entry of
/// <paramref name="Pieces"/> that is its own shard.</param>
/// <param name="Seed">Training:Seed, which seeds each epoch's shuffle.</param>
/// <param name="Slots">The asynchronous modes, where every worker gets every shard: the worker index of each shard of the plan, in
/// plan order; null when the worker gets its own shard only.</param>
/// <param name="SlotCount">With <paramref name="Slots"/>: worker slots of the job, the length of <see cref="AssignShard.Shards"/>
/// (lost slots hold empty shards); 0 otherwise.</param>
/// <param name="Digest"><see cref="ShardPlanner.Digest"/> of what the worker must plan: its own shard, or with
/// <paramref name="Slots"/> (or pieces with a <paramref name="SlotCount"/>) every slot's shard in slot order. A worker whose plan
/// differs stops the job with <see cref="ShardRecipeException"/> instead of training on other samples than the plan's.</param>
/// <param name="Pieces">A further part of the epoch (the samples lost workers left): its shards as pieces of the plan, each a flat
/// array of triples (plan shard, from, to) meaning <c>Plan(epoch)[shard][from..to]</c>, concatenated in order. One entry, the
/// worker's own shard, when <paramref name="SlotCount"/> is 0; else one per worker slot (the asynchronous modes, where every worker
/// gets every shard), with <paramref name="Slots"/> null. Null for an epoch's first part.</param>
[MessagePackObject]
public sealed record ShardRecipe(
    [property: Key(0)] int SampleCount,
    [property: Key(1)] int Workers,
    [property: Key(2)] int Position,
    [property: Key(3)] int Seed,
    [property: Key(4)] int[]? Slots,
    [property: Key(5)] int SlotCount,
    [property: Key(6)] ulong Digest,
    [property: Key(7)] int[][]? Pieces = null)
{
    /// <summary>The coordinator's planner, as the recipe describes it.</summary>
    [IgnoreMember]
    public ShardPlanner Planner => new(SampleCount, Workers, Seed);

    /// <summary>Bytes the recipe takes at most besides the <see cref="Slots"/> and <see cref="Pieces"/> arrays: its header (1), four ints
    /// (5 each), the slot count (up to 3 bytes below 65,536), the digest (9), nil for no slots (1) and the pieces' array header (5).</summary>
    public const long FixedBytesAtMost = 39;

    /// <summary>The first field out of its range, as <see cref="IRangeCheckedMessage.OutOfRange"/> words it; null when all are in range.</summary>
    public string? OutOfRange()
    {
        const int most = Training.UpdatePolicy.MaxWorkers;
        if (SampleCount < 1) return $"Recipe.SampleCount {SampleCount} is below 1";
        if (Workers is < 1 or > most) return $"Recipe.Workers {Workers} is outside 1 to {most}";
        if (Pieces is not null) return PiecesOutOfRange(Pieces);
        if (Position < 0 || Position >= Workers) return $"Recipe.Position {Position} is outside 0 to {Workers - 1}";
        if (Slots is null) return SlotCount == 0 ? null : $"Recipe.SlotCount {SlotCount} is not 0 without Recipe.Slots";
        if (SlotCount < Workers || SlotCount > most) return $"Recipe.SlotCount {SlotCount} is outside {Workers} to {most}";
        if (Slots.Length != Workers) return $"Recipe.Slots holds {Slots.Length} worker indices for {Workers} workers";
        var seen = new bool[SlotCount];
        foreach (var slot in Slots)
        {
            if (slot < 0 || slot >= SlotCount) return $"Recipe.Slots holds worker index {slot}, outside 0 to {SlotCount - 1}";
            if (seen[slot]) return $"Recipe.Slots holds worker index {slot} twice";
            seen[slot] = true;
        }
        return null;
    }

    /// <summary>The first of <see cref="Pieces"/>' fields out of range: their count and <see cref="Position"/> among them, each
    /// piece's plan shard (0 to <see cref="Workers"/> − 1) and samples (within 0 to <see cref="SampleCount"/>; within the shard's
    /// length is checked as the worker cuts it, <see cref="AssignShard.Resolve"/>); together at most <see cref="SampleCount"/>
    /// samples (a plan's pieces never overlap), so a message cannot make a worker build more indices than its training set holds.</summary>
    private string? PiecesOutOfRange(int[][] pieces)
    {
        const int most = Training.UpdatePolicy.MaxWorkers;
        if (Slots is not null) return "Recipe.Slots is set beside Recipe.Pieces";
        if (SlotCount == 0 ? pieces.Length != 1 : SlotCount > most || pieces.Length != SlotCount)
            return $"Recipe.Pieces holds {pieces.Length} shards for Recipe.SlotCount {SlotCount} (1 when 0, else as many, at most {most})";
        if (Position < 0 || Position >= pieces.Length) return $"Recipe.Position {Position} is outside 0 to {pieces.Length - 1}";
        foreach (var piece in pieces)
        {
            if (piece is null || piece.Length % 3 != 0) return "Recipe.Pieces holds a shard that is not triples (plan shard, from, to)";
            for (var p = 0; p < piece.Length; p += 3)
            {
                var (shard, from, to) = (piece[p], piece[p + 1], piece[p + 2]);
                if (shard < 0 || shard >= Workers) return $"Recipe.Pieces names plan shard {shard}, outside 0 to {Workers - 1}";
                if (from < 0 || from > to || to > SampleCount) return $"Recipe.Pieces holds samples {from} to {to}, outside 0 to {SampleCount} or reversed";
            }
        }
        var samples = PieceSamples(pieces);
        return samples > SampleCount ? $"Recipe.Pieces hold {samples:N0} samples in all, more than Recipe.SampleCount {SampleCount:N0}" : null;
    }

    /// <summary>Samples that <paramref name="pieces"/> (each a flat array of triples: plan shard, from, to) cover in all: the sum of
    /// <c>to − from</c>. Trailing elements short of a triple are not counted.</summary>
    public static long PieceSamples(IEnumerable<int[]> pieces)
    {
        ArgumentNullException.ThrowIfNull(pieces);
        long samples = 0;
        foreach (var piece in pieces)
            for (var p = 0; p + 2 < piece.Length; p += 3) samples += (long)piece[p + 2] - piece[p + 1];
        return samples;
    }
}

/// <summary>A worker cannot plan its shard from the coordinator's <see cref="ShardRecipe"/>: it holds other training data, or it
/// shuffles differently. Every worker of the job would fail alike, so the job ends with the message.</summary>
/// <param name="message">What differs, and the fix.</param>
public sealed class ShardRecipeException(string message) : Exception(message);

/// <summary>Starts an epoch at the parameter server. Coordinator → ParameterServer.</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="Workers">Worker replicas; the index in this array is the worker index.</param>
/// <param name="BatchesPerWorker">Minibatches each worker has this epoch (its shard length divided by the batch size, rounded up).</param>
/// <param name="FirstRound">The round the epoch starts at: 0, or a resumed checkpoint's round (the rounds before it ran
/// before the interruption), or the first round of the part that takes over a lost worker's samples.</param>
/// <param name="StepsPerEpoch">Steps of the whole epoch as planned, for the learning-rate schedule; 0 means the most
/// minibatches of any worker.</param>
/// <param name="MidEpochResumable">True when a checkpoint in the middle of this part resumes exactly: the first part
/// of an epoch planned over all the job's workers at Training:BatchSizePerWorker, so the epoch's shards follow from
/// (seed, epoch, worker count) alone. False for a part that takes over a lost worker's samples and for an epoch planned
/// after workers were lost or joined; the parameter server then writes checkpoints only at the epoch's true end.</param>
/// <param name="Part">Which part of the epoch this is: 0 for the first, counting up for each further part. Every broadcast
/// of the part carries it (<see cref="WeightsUpdated.Part"/>), so a worker trains only on weights of the part its shard
/// (<see cref="AssignShard.Part"/>) belongs to, whichever of the two messages arrives first.</param>
/// <param name="KeepGlobalBatch">Training:KeepGlobalBatch in a lock-step mode: a worker lost in this part ends the part for
/// every worker after the open round, and the coordinator plans the samples left in a further part at the global
/// minibatch over the workers alive (<see cref="WorkerRemoved.OthersCutFrom"/>), instead of the survivors finishing their
/// shards with only their own minibatches per step.</param>
[MessagePackObject]
public sealed record StartEpoch(
    [property: Key(0)] int Epoch,
    [property: Key(1)] IActorRef[] Workers,
    [property: Key(2)] int[] BatchesPerWorker,
    [property: Key(3)] int FirstRound = 0,
    [property: Key(4)] int StepsPerEpoch = 0,
    [property: Key(5)] bool MidEpochResumable = true,
    [property: Key(6)] int Part = 0,
    [property: Key(7)] bool KeepGlobalBatch = false) : IDistTrainMessage;

/// <summary>
/// New weights. ParameterServer → Worker. A worker that has minibatch <see cref="Round"/> of
/// <see cref="Epoch"/> answers with <see cref="GradientComputed"/>; the others only store the weights.
/// </summary>
/// <remarks>
/// Loaned, with its <see cref="Weights"/> array: the parameter server reuses the same few instances
/// round after round (see the protocol notes above), so receivers read the fields while handling the
/// message and keep no reference. The fields change only through the owner's <c>Reuse</c>.
/// </remarks>
[MessagePackObject]
public sealed record WeightsUpdated : ITensorMessage
{
    /// <summary>Creates the message.</summary>
    /// <param name="epoch">Epoch the round belongs to.</param>
    /// <param name="round">0-based minibatch index within each worker's shard.</param>
    /// <param name="version">Weights version: the number of optimizer steps applied so far.</param>
    /// <param name="weights">The flat parameter vector, layout order.</param>
    /// <param name="sentTimestamp">Sender's <see cref="System.Diagnostics.Stopwatch"/> timestamp at sending, for the queueing-delay metric; 0 when unknown.</param>
    /// <param name="shard">The shard whose minibatch <paramref name="round"/> the receiver computes; -1 for its own.</param>
    /// <param name="part">The part of the epoch the weights belong to (<see cref="StartEpoch.Part"/>).</param>
    /// <param name="endRound">The round after the part's last minibatch, as the parameter server knows it when sending.</param>
    [SerializationConstructor]
    public WeightsUpdated(int epoch, int round, long version, float[] weights, long sentTimestamp = 0, int shard = -1, int part = 0,
        int endRound = int.MaxValue)
    {
        Epoch = epoch;
        Round = round;
        Version = version;
        Weights = weights;
        SentTimestamp = sentTimestamp;
        Shard = shard;
        Part = part;
        EndRound = endRound;
    }

    /// <summary>Epoch the round belongs to.</summary>
    [Key(0)] public int Epoch { get; private set; }

    /// <summary>0-based minibatch index within each worker's shard.</summary>
    [Key(1)] public int Round { get; private set; }

    /// <summary>Weights version: the number of optimizer steps applied so far.</summary>
    [Key(2)] public long Version { get; private set; }

    /// <summary>The flat parameter vector, layout order (loaned).</summary>
    [Key(3)] public float[] Weights { get; private set; }

    /// <summary>Sender's Stopwatch timestamp at sending (same machine only); 0 when unknown.</summary>
    [Key(4)] public long SentTimestamp { get; private set; }

    /// <summary>
    /// The shard whose minibatch <see cref="Round"/> the receiver computes (the asynchronous modes hand out any shard's
    /// minibatches, see <see cref="AssignShard.Shards"/>); -1 for the receiver's own shard.
    /// </summary>
    [Key(5)] public int Shard { get; private set; }

    /// <summary>The part of <see cref="Epoch"/> the weights belong to (<see cref="StartEpoch.Part"/>): a worker computes
    /// only with the shard of the same part (<see cref="AssignShard.Part"/>).</summary>
    [Key(6)] public int Part { get; private set; }

    /// <summary>
    /// The round after the part's last minibatch when the weights were sent: no worker computes a round at or after it.
    /// It moves earlier when a lost worker ends the part for everybody (Training:KeepGlobalBatch), so the part's closing
    /// broadcast is not mistaken for a minibatch a survivor still had in its shard; <see cref="int.MaxValue"/> when unknown.
    /// </summary>
    [Key(7)] public int EndRound { get; private set; }

    /// <summary>True when the receiver computes minibatch <see cref="Round"/> of <paramref name="shard"/>'s part: the same epoch and part, before the part's end.</summary>
    public bool IsTrainedWith(AssignShard shard) => shard.Epoch == Epoch && shard.Part == Part && Round < EndRound;

    /// <summary>True when the weights belong to a later part than <paramref name="shard"/> (a later epoch, or a further part of its epoch): they wait for their shard.</summary>
    public bool IsAfter(AssignShard shard) => Epoch > shard.Epoch || (Epoch == shard.Epoch && Part > shard.Part);

    /// <inheritdoc />
    [IgnoreMember] public float[] Tensor => Weights;

    /// <summary>
    /// Weights left in a shared-memory slot of the data plane (<see cref="DataPlane.SharedSlotLoan"/>), read in place
    /// instead of copied out; null when they are in <see cref="Weights"/>. Never serialized: such a message only goes from
    /// a worker node's data-plane reader to its worker, which calls <see cref="ReleaseShared"/> once done with them.
    /// </summary>
    [IgnoreMember] internal DataPlane.SharedSlotLoan? SharedBody { get; private init; }

    /// <summary>The weights, layout order: <see cref="Weights"/>, or the shared-memory slot they were left in.</summary>
    public ReadOnlySpan<float> Values() => SharedBody is { } body ? body.Values : Weights;

    /// <summary>Hands a shared-memory slot holding the weights back to the parameter server; nothing for weights in an array.</summary>
    public void ReleaseShared() => SharedBody?.Release();

    /// <summary>A message whose weights stay in a shared-memory slot (<see cref="SharedBody"/>).</summary>
    internal static WeightsUpdated InSharedSlot(int epoch, int round, long version, DataPlane.SharedSlotLoan body, long sentTimestamp, int shard,
        int part, int endRound) =>
        new(epoch, round, version, [], sentTimestamp, shard, part, endRound) { SharedBody = body };

    /// <inheritdoc />
    public ITensorMessage WithTensor(float[] tensor) => new WeightsUpdated(Epoch, Round, Version, tensor, SentTimestamp, Shard, Part, EndRound);

    /// <summary>Rewrites this loaned instance for the next message it carries (the weights array stays the same).</summary>
    internal WeightsUpdated Reuse(int epoch, int round, long version, long sentTimestamp, int shard, int part, int endRound)
    {
        Epoch = epoch;
        Round = round;
        Version = version;
        SentTimestamp = sentTimestamp;
        Shard = shard;
        Part = part;
        EndRound = endRound;
        return this;
    }
}

/// <summary>A worker's gradient for one round. Worker → ParameterServer.</summary>
/// <remarks>Loaned, like <see cref="WeightsUpdated"/>: each worker reuses two instances in turn.</remarks>
[MessagePackObject]
public sealed record GradientComputed : ITensorMessage
{
    /// <summary>Creates the message.</summary>
    /// <param name="epoch">Epoch of the round.</param>
    /// <param name="round">Round answered.</param>
    /// <param name="version">Weights version the gradient was computed on.</param>
    /// <param name="workerIndex">Index of the sender in <see cref="StartEpoch.Workers"/>.</param>
    /// <param name="sampleCount">Samples in the minibatch (the averaging weight).</param>
    /// <param name="lossSum">Sum of the per-sample losses over the minibatch.</param>
    /// <param name="gradient">Gradient of the minibatch's mean loss, flat, layout order.</param>
    /// <param name="computeSeconds">Worker time from receiving the weights to sending this gradient, seconds.</param>
    /// <param name="allocatedBytes">Managed bytes the worker's step allocated (a diagnostic; 0 in steady state).</param>
    /// <param name="queueingSeconds">Time from the parameter server sending the weights to the worker starting on them, seconds (0 when unknown).</param>
    [SerializationConstructor]
    public GradientComputed(int epoch, int round, long version, int workerIndex, int sampleCount, double lossSum, float[] gradient,
        double computeSeconds = 0, long allocatedBytes = 0, double queueingSeconds = 0)
    {
        Epoch = epoch;
        Round = round;
        Version = version;
        WorkerIndex = workerIndex;
        SampleCount = sampleCount;
        LossSum = lossSum;
        Gradient = gradient;
        ComputeSeconds = computeSeconds;
        AllocatedBytes = allocatedBytes;
        QueueingSeconds = queueingSeconds;
    }

    /// <summary>Epoch of the round.</summary>
    [Key(0)] public int Epoch { get; private set; }

    /// <summary>Round answered.</summary>
    [Key(1)] public int Round { get; private set; }

    /// <summary>Weights version the gradient was computed on.</summary>
    [Key(2)] public long Version { get; private set; }

    /// <summary>Index of the sender in <see cref="StartEpoch.Workers"/>.</summary>
    [Key(3)] public int WorkerIndex { get; private set; }

    /// <summary>Samples in the minibatch (the averaging weight).</summary>
    [Key(4)] public int SampleCount { get; private set; }

    /// <summary>Sum of the per-sample losses over the minibatch.</summary>
    [Key(5)] public double LossSum { get; private set; }

    /// <summary>Gradient of the minibatch's mean loss, flat, layout order (loaned).</summary>
    [Key(6)] public float[] Gradient { get; private set; }

    /// <summary>Worker time from receiving the weights to sending this gradient, seconds.</summary>
    [Key(7)] public double ComputeSeconds { get; private set; }

    /// <summary>Managed bytes the worker's step allocated on its thread.</summary>
    [Key(8)] public long AllocatedBytes { get; private set; }

    /// <summary>Time from the parameter server sending the weights to this worker starting on them, seconds (0 when unknown).</summary>
    [Key(9)] public double QueueingSeconds { get; private set; }

    /// <summary>
    /// With Cluster:Compression: the gradient part of <see cref="Gradient"/> as the worker encoded it
    /// (<see cref="Core.Compression.GradientEncoder"/>), which the data plane sends in its place; <see cref="Gradient"/>
    /// already holds the decoded values. Null when uncompressed. Loaned with the message; never serialized.
    /// </summary>
    [IgnoreMember] public byte[]? Encoded { get; private set; }

    /// <summary>
    /// The shared-memory slot of the data plane the worker wrote this report into in place (<see cref="DataPlane.SharedSlotWrite"/>);
    /// <see cref="Gradient"/> then does not hold it. Null when the report is in <see cref="Gradient"/>. Never serialized:
    /// such a report only goes from a worker to its data-plane writer, which sends the header that names the slot.
    /// </summary>
    [IgnoreMember] internal DataPlane.SharedSlotWrite? WrittenInSlot { get; private set; }

    /// <inheritdoc />
    [IgnoreMember] public float[] Tensor => Gradient;

    /// <inheritdoc />
    public ITensorMessage WithTensor(float[] tensor) =>
        new GradientComputed(Epoch, Round, Version, WorkerIndex, SampleCount, LossSum, tensor, ComputeSeconds, AllocatedBytes, QueueingSeconds);

    /// <summary>Rewrites this loaned instance for the next gradient it carries (the gradient array stays the same).</summary>
    internal GradientComputed Reuse(int epoch, int round, long version, int sampleCount, double lossSum)
    {
        Epoch = epoch;
        Round = round;
        Version = version;
        SampleCount = sampleCount;
        LossSum = lossSum;
        return this;
    }

    /// <summary>Sets <see cref="WrittenInSlot"/> for the report this loaned instance now carries (null: it is in <see cref="Gradient"/>).</summary>
    internal GradientComputed InSlot(DataPlane.SharedSlotWrite? written)
    {
        WrittenInSlot = written;
        return this;
    }

    /// <summary>Sets <see cref="Encoded"/> for the gradient this loaned instance now carries (null: uncompressed).</summary>
    internal GradientComputed WithEncoded(byte[]? encoded)
    {
        Encoded = encoded;
        return this;
    }

    /// <summary>Records the step's time, allocations and queueing delay just before sending.</summary>
    internal void Measured(double computeSeconds, long allocatedBytes, double queueingSeconds)
    {
        ComputeSeconds = computeSeconds;
        AllocatedBytes = allocatedBytes;
        QueueingSeconds = queueingSeconds;
    }
}

/// <summary>
/// One optimizer step was applied. ParameterServer → Coordinator, and back: the coordinator returns
/// the instance to the parameter server once handled, which reuses it for a later step.
/// </summary>
/// <remarks>Pooled: the parameter server starts with <see cref="PoolSize"/> instances and creates more only
/// if the coordinator holds them all.</remarks>
[MessagePackObject]
public sealed record RoundApplied : IDistTrainMessage
{
    /// <summary>Instances the parameter server starts with (about 25 KB): more steps than a coordinator that keeps up ever holds.</summary>
    public const int PoolSize = 256;

    /// <summary>Creates the message.</summary>
    /// <param name="epoch">Epoch of the round.</param>
    /// <param name="round">Round applied.</param>
    /// <param name="version">Version after the step.</param>
    /// <param name="sampleCount">Samples that contributed.</param>
    /// <param name="lossSum">Their summed loss, on the weights before the step.</param>
    /// <param name="timing">Where the round's wall time went.</param>
    /// <param name="learningRate">The step's learning rate, after the schedule and the worker scaling.</param>
    /// <param name="workerLosses">Each worker's mean loss this round, by worker index (NaN without a minibatch); null for none.</param>
    /// <param name="workerComputeSeconds">Each worker's compute time this round, seconds, by worker index; null for none.</param>
    /// <param name="workerQueueingSeconds">Each worker's queueing delay this round, seconds, by worker index; null for none.</param>
    /// <param name="workerStaleness">Each worker's staleness this step, versions, by worker index (NaN without a report); null for none.</param>
    [SerializationConstructor]
    public RoundApplied(int epoch, int round, long version, int sampleCount, double lossSum, RoundTiming timing, double learningRate,
        double[]? workerLosses = null, double[]? workerComputeSeconds = null, double[]? workerQueueingSeconds = null,
        double[]? workerStaleness = null)
    {
        Epoch = epoch;
        Round = round;
        Version = version;
        SampleCount = sampleCount;
        LossSum = lossSum;
        LearningRate = learningRate;
        Timing = timing;
        WorkerLosses = workerLosses ?? [];
        WorkerComputeSeconds = workerComputeSeconds ?? [];
        WorkerQueueingSeconds = workerQueueingSeconds ?? [];
        WorkerStaleness = workerStaleness ?? [];
    }

    /// <summary>Epoch of the round.</summary>
    [Key(0)] public int Epoch { get; private set; }

    /// <summary>Round applied.</summary>
    [Key(1)] public int Round { get; private set; }

    /// <summary>Version after the step.</summary>
    [Key(2)] public long Version { get; private set; }

    /// <summary>Samples that contributed.</summary>
    [Key(3)] public int SampleCount { get; private set; }

    /// <summary>Their summed loss, on the weights before the step.</summary>
    [Key(4)] public double LossSum { get; private set; }

    /// <summary>Where the round's wall time went.</summary>
    [Key(5)] public RoundTiming Timing { get; private set; }

    /// <summary>The step's learning rate, after the schedule and the worker scaling.</summary>
    [Key(6)] public double LearningRate { get; private set; }

    /// <summary>Each worker's mean loss this round, by worker index (NaN for a worker without a minibatch).</summary>
    [Key(7)] public double[] WorkerLosses { get; private set; }

    /// <summary>Each worker's compute time this round, seconds, by worker index (0 without a minibatch).</summary>
    [Key(8)] public double[] WorkerComputeSeconds { get; private set; }

    /// <summary>Each worker's queueing delay before it started this round, seconds, by worker index.</summary>
    [Key(9)] public double[] WorkerQueueingSeconds { get; private set; }

    /// <summary>
    /// Each worker's staleness this step, by worker index: how many versions older than the one it updated the weights
    /// its gradient was computed on were (0 in synchronous training; NaN for a worker without a gradient in the step).
    /// </summary>
    [Key(10)] public double[] WorkerStaleness { get; private set; }

    /// <summary>Sizes the per-worker arrays (reallocating only when the worker count changes).</summary>
    internal RoundApplied ForWorkers(int workers)
    {
        if (WorkerLosses.Length != workers)
        {
            WorkerLosses = new double[workers];
            WorkerComputeSeconds = new double[workers];
            WorkerQueueingSeconds = new double[workers];
            WorkerStaleness = new double[workers];
        }
        return this;
    }

    /// <summary>Fills the per-worker arrays with "no report" (NaN loss and staleness, zero times).</summary>
    internal RoundApplied ClearWorkers()
    {
        Array.Fill(WorkerLosses, double.NaN);
        Array.Clear(WorkerComputeSeconds);
        Array.Clear(WorkerQueueingSeconds);
        Array.Fill(WorkerStaleness, double.NaN);
        return this;
    }

    /// <summary>Records worker <paramref name="worker"/>'s report in this step.</summary>
    internal void SetWorker(int worker, double meanLoss, double computeSeconds, double queueingSeconds, double staleness)
    {
        WorkerLosses[worker] = meanLoss;
        WorkerComputeSeconds[worker] = computeSeconds;
        WorkerQueueingSeconds[worker] = queueingSeconds;
        WorkerStaleness[worker] = staleness;
    }

    /// <summary>Rewrites this loaned instance.</summary>
    internal RoundApplied Reuse(int epoch, int round, long version, int sampleCount, double lossSum, RoundTiming timing, double learningRate)
    {
        Epoch = epoch;
        Round = round;
        Version = version;
        SampleCount = sampleCount;
        LossSum = lossSum;
        LearningRate = learningRate;
        Timing = timing;
        return this;
    }
}

/// <summary>Split of one synchronous round's wall time in seconds, and its allocations in bytes, as seen by the parameter server.</summary>
/// <param name="RoundSeconds">From sending the round's weights to having applied its update.</param>
/// <param name="MaxComputeSeconds">Slowest worker's compute time (the critical path).</param>
/// <param name="MeanComputeSeconds">Mean compute time over the workers of the round.</param>
/// <param name="UpdateSeconds">Averaging the gradients and the optimizer step.</param>
/// <param name="WorkerAllocatedBytes">Most managed bytes any worker's step allocated this round (up to its send; Akka's dispatch is not counted).</param>
/// <param name="ServerAllocatedBytes">Managed bytes the parameter server's gradient handlers allocated in the previous round, outside Akka's own message dispatch.</param>
[MessagePackObject]
public readonly record struct RoundTiming(
    [property: Key(0)] double RoundSeconds,
    [property: Key(1)] double MaxComputeSeconds,
    [property: Key(2)] double MeanComputeSeconds,
    [property: Key(3)] double UpdateSeconds,
    [property: Key(4)] long WorkerAllocatedBytes = 0,
    [property: Key(5)] long ServerAllocatedBytes = 0)
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
/// <param name="LossSum">Summed training loss over the epoch (the data loss, without regularization).</param>
/// <param name="L1Penalty">The L1 term <c>λ₁ Σ|w|</c> over the decayed tensors at the end of the epoch.</param>
/// <param name="L2Penalty">The L2 term <c>λ₂/2 Σw²</c> over the decayed tensors at the end of the epoch (for AdamW: of its decoupled decay).</param>
[MessagePackObject]
public sealed record EpochCompleted(
    [property: Key(0)] int Epoch,
    [property: Key(1)] long Version,
    [property: Key(2)] int SampleCount,
    [property: Key(3)] double LossSum,
    [property: Key(4)] double L1Penalty = 0,
    [property: Key(5)] double L2Penalty = 0) : IDistTrainMessage;

/// <summary>Which held-out split an evaluation scores.</summary>
public enum EvaluationSplit : byte
{
    /// <summary>The test split.</summary>
    Test = 0,
    /// <summary>The validation samples held out of the training split (Data:ValidationFraction).</summary>
    Validation = 1,
}

/// <summary>Score test samples <c>[Start, Start + Count)</c> with weights <paramref name="Version"/>. Coordinator → Worker.</summary>
/// <param name="Version">The worker waits until it holds this version.</param>
/// <param name="Start">First test-set index.</param>
/// <param name="Count">Number of samples (may be 0).</param>
/// <param name="Split">The split the indices refer to.</param>
[MessagePackObject]
public sealed record Evaluate(
    [property: Key(0)] long Version,
    [property: Key(1)] int Start,
    [property: Key(2)] int Count,
    [property: Key(3)] EvaluationSplit Split = EvaluationSplit.Test) : IDistTrainMessage;

/// <summary>Scores of one evaluation range. Worker → Coordinator.</summary>
/// <param name="Version">Weights version scored.</param>
/// <param name="WorkerIndex">Sender's index.</param>
/// <param name="Start">First test-set index scored.</param>
/// <param name="SampleCount">Samples actually scored, counted by the worker as it went.</param>
/// <param name="Correct">Samples whose arg-max logit is the label.</param>
/// <param name="LossSum">Summed loss.</param>
/// <param name="Split">The split scored.</param>
[MessagePackObject]
public sealed record EvaluationResult(
    [property: Key(0)] long Version,
    [property: Key(1)] int WorkerIndex,
    [property: Key(2)] int Start,
    [property: Key(3)] int SampleCount,
    [property: Key(4)] int Correct,
    [property: Key(5)] double LossSum,
    [property: Key(6)] EvaluationSplit Split = EvaluationSplit.Test) : IDistTrainMessage;

/// <summary>Asks the parameter server for its current weights. Coordinator → ParameterServer. A <see cref="Actors.Worker"/> answers it
/// too, with its replica's weights.</summary>
[MessagePackObject]
public sealed record GetWeights : IDistTrainMessage
{
    /// <summary>The only instance.</summary>
    public static readonly GetWeights Instance = new();
}

/// <summary>The parameter server's current weights (or a worker's replica's). ParameterServer or Worker → requester.</summary>
/// <param name="Version">Version of the weights (a worker that has received none: -1).</param>
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

/// <summary>The parameter server wrote a checkpoint. ParameterServer → Coordinator.</summary>
/// <param name="Path">The checkpoint file.</param>
/// <param name="Version">Weights version it holds.</param>
/// <param name="Epoch">1-based epoch of the next minibatch (after an epoch's last round: the next epoch).</param>
/// <param name="Round">0-based round of the next minibatch within <paramref name="Epoch"/>.</param>
/// <param name="Bytes">File size, bytes.</param>
/// <param name="Seconds">Wall time of the write, including fsync and rename, seconds.</param>
[MessagePackObject]
public sealed record CheckpointSaved(
    [property: Key(0)] string Path,
    [property: Key(1)] long Version,
    [property: Key(2)] int Epoch,
    [property: Key(3)] int Round,
    [property: Key(4)] long Bytes,
    [property: Key(5)] double Seconds) : IDistTrainMessage;

/// <summary>A worker's node is gone. Coordinator → ParameterServer.</summary>
/// <param name="WorkerIndex">The lost worker's index.</param>
[MessagePackObject]
public sealed record WorkerLost([property: Key(0)] int WorkerIndex) : IDistTrainMessage;

/// <summary>
/// The parameter server stopped waiting for a lost worker. ParameterServer → Coordinator.
/// </summary>
/// <param name="WorkerIndex">The lost worker's index.</param>
/// <param name="FirstUnusedRound">The first round of the epoch whose minibatch the worker did not contribute: its samples
/// from there on must go to the remaining workers. -1 in the asynchronous modes, where the parameter server hands the
/// lost worker's minibatches to the others itself.</param>
/// <param name="OthersCutFrom">With <see cref="StartEpoch.KeepGlobalBatch"/>: the round from which the other workers'
/// minibatches of this part were cut off as well (the part ends there), so that a further part trains them with the lost
/// worker's at the global minibatch; -1 when nothing else was cut.</param>
[MessagePackObject]
public sealed record WorkerRemoved(
    [property: Key(0)] int WorkerIndex,
    [property: Key(1)] int FirstUnusedRound,
    [property: Key(2)] int OthersCutFrom = -1) : IDistTrainMessage;

/// <summary>
/// A part of an epoch ended before all its minibatches were trained: every worker of an asynchronous part was lost.
/// ParameterServer → Coordinator, before the part's <see cref="EpochCompleted"/>; the coordinator plans their samples again.
/// </summary>
/// <param name="Epoch">The epoch.</param>
/// <param name="Shards">Shard index of each untrained minibatch.</param>
/// <param name="Rounds">Its round, in the same order.</param>
[MessagePackObject]
public sealed record MinibatchesLeft(
    [property: Key(0)] int Epoch,
    [property: Key(1)] int[] Shards,
    [property: Key(2)] int[] Rounds) : IDistTrainMessage;

/// <summary>A worker joined a running job. JobHost → Coordinator.</summary>
/// <param name="Worker">The local link to the new worker; it takes part from the next epoch (or the next part of one).</param>
/// <param name="WorkerIndex">The index the job host gave it (the one in its gradients).</param>
[MessagePackObject]
public sealed record AddWorker([property: Key(0)] IActorRef Worker, [property: Key(1)] int WorkerIndex) : IDistTrainMessage;
