using DistTrain.Core.Data;

namespace DistTrain.Cluster.Training;

/// <summary>How epochs are planned: the run's settings the <see cref="EpochPlan"/> reads.</summary>
/// <param name="Planner">Shard planner over the training set for the workers the job started with.</param>
/// <param name="PlannerFor">A planner for another number of workers (cluster mode, where workers come and go); null in single-node mode.</param>
/// <param name="BatchSizePerWorker">Samples per worker minibatch as configured.</param>
/// <param name="GlobalBatchSize">Samples per step to keep when the number of workers differs from the plan's
/// (Training:KeepGlobalBatch); 0 lets each worker keep <paramref name="BatchSizePerWorker"/>.</param>
/// <param name="FirstEpoch">1-based epoch the run starts at.</param>
/// <param name="FirstRound">Round the first epoch starts at (a resumed checkpoint's).</param>
/// <param name="SharedShards">True when any worker may compute any shard's minibatch (the asynchronous modes), so every
/// worker gets every shard of a part.</param>
/// <param name="TrainedAhead">The resumed checkpoint's minibatches (round, shard) at or after <paramref name="FirstRound"/>
/// already trained (the asynchronous modes); null or empty for none.</param>
public sealed record EpochPlanSettings(IShardPlanner Planner, Func<int, IShardPlanner>? PlannerFor, int BatchSizePerWorker, int GlobalBatchSize,
    int FirstEpoch, int FirstRound, bool SharedShards = false, IReadOnlyList<(int Round, int Shard)>? TrainedAhead = null)
{
    /// <summary>Each worker's (largest) minibatch when <paramref name="aliveWorkers"/> take part.</summary>
    public int BatchSizeFor(int aliveWorkers) =>
        GlobalBatchSize > 0 && aliveWorkers > 0 ? (GlobalBatchSize + aliveWorkers - 1) / aliveWorkers : BatchSizePerWorker;

    /// <summary>Optimizer steps of an epoch as planned: the largest of the planner's even shards in minibatches of <see cref="BatchSizePerWorker"/>.</summary>
    public int PlannedStepsPerEpoch => StepsPerEpoch(Planner.SampleCount, Planner.Workers, BatchSizePerWorker);

    /// <summary>
    /// Synchronous rounds of an epoch of <paramref name="samples"/> over <paramref name="workers"/> even shards in
    /// minibatches of <paramref name="batchSizePerWorker"/>: the largest shard, ⌈samples / workers⌉, in ⌈· / batch⌉ minibatches.
    /// </summary>
    public static int StepsPerEpoch(int samples, int workers, int batchSizePerWorker) =>
        ((samples + workers - 1) / workers + batchSizePerWorker - 1) / batchSizePerWorker;

    /// <summary>Balanced minibatches for an epoch of <paramref name="aliveWorkers"/>: the plan's steps per epoch when the global
    /// minibatch is kept and the worker count differs from the plan's; 0 (fixed minibatches) otherwise.</summary>
    public int BalancedStepsFor(int aliveWorkers) =>
        GlobalBatchSize > 0 && aliveWorkers != Planner.Workers ? PlannedStepsPerEpoch : 0;
}

/// <summary>One part of an epoch as planned: every worker's shard and how the parameter server runs it.</summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="Shards">By worker index: its sample indices in this part (empty for a lost or idle worker).</param>
/// <param name="Receivers">The worker indices that get the part's shards.</param>
/// <param name="BatchSize">Samples per minibatch (fixed plan).</param>
/// <param name="Steps">Balanced minibatches per shard; 0 for fixed minibatches of <paramref name="BatchSize"/>.</param>
/// <param name="FirstRound">Round of the part's first minibatch.</param>
/// <param name="Rounds">Rounds of the part: 0 for a part that only hands out the weights (<see cref="EpochPlan.ShareWeights"/>), whose
/// workers are done once they hold the weights before its first round.</param>
/// <param name="Batches">By worker index: the round after its last minibatch (0 for none).</param>
/// <param name="StartRound">The round the parameter server starts at (a resumed checkpoint's, or <paramref name="FirstRound"/>).</param>
/// <param name="StepsPerEpoch">Steps of the epoch as first planned (the schedule's unit).</param>
/// <param name="MidEpochResumable">A checkpoint inside this part resumes exactly.</param>
/// <param name="SharedShards">Every receiver gets every shard (the asynchronous modes).</param>
/// <param name="Part">Which part of the epoch: 0 for the first, counting up.</param>
/// <param name="KeepGlobalBatch">A lost worker ends this part for every worker (Training:KeepGlobalBatch in a lock-step mode).</param>
/// <param name="PlannedBy">The planner of the epoch's first part, from which a worker can plan its shard itself: in the first part
/// <c>Plan(Epoch)[j]</c> is the shard of <c>Receivers[j]</c>; a further part's shards are pieces of that plan
/// (<paramref name="Pieces"/>). Null for a part that only hands out the weights.</param>
/// <param name="Pieces">A further part: by worker index, its shard as pieces of <c>PlannedBy.Plan(Epoch)</c>, flat triples
/// (plan shard, from, to) each meaning <c>Plan(Epoch)[shard][from..to]</c>, in order; concatenated they are
/// <paramref name="Shards"/>' entry. Null for an epoch's first part (its shards are whole shards of the plan) and for a part that
/// only hands out the weights.</param>
public sealed record PlannedPart(int Epoch, int[][] Shards, int[] Receivers, int BatchSize, int Steps, int FirstRound, int Rounds,
    int[] Batches, int StartRound, int StepsPerEpoch, bool MidEpochResumable, bool SharedShards, int Part, bool KeepGlobalBatch,
    IShardPlanner? PlannedBy = null, int[][]? Pieces = null);

/// <summary>
/// The coordinator's epoch bookkeeping: which workers are alive and hold the epoch's weights, the shards of each part of
/// an epoch, the samples a lost worker left (trained by the others in a further part, so every sample is used once per
/// epoch), and the epoch's trained samples and loss.
/// </summary>
public sealed class EpochPlan(EpochPlanSettings settings)
{
    private readonly List<bool> _alive = [];
    private readonly List<bool> _inEpoch = []; // sent this epoch's weights (a worker that joined mid-epoch has none yet)
    private readonly List<int> _orphans = [];  // samples of lost workers not yet trained on this epoch
    private readonly List<int> _orphanPieces = []; // the same samples as pieces of the epoch's plan (PlannedPart.Pieces)
    private int[][] _shards = [];              // the current part's shards, by worker
    private int[][] _pieces = [];              // the same shards as pieces of the epoch's plan, by worker
    private IShardPlanner? _plannedBy;         // the planner of the epoch's first part
    private int[] _ends = [];                  // by worker: the round after its last minibatch still in the current part
    private int _part;                         // the current part's number within the epoch
    private int _firstRound;
    private int _batchSize = settings.BatchSizePerWorker;
    private int _steps;
    private int _nextRound;

    /// <summary>The run's settings.</summary>
    public EpochPlanSettings Settings => settings;

    /// <summary>The current (or last finished) 1-based epoch; <c>FirstEpoch − 1</c> before the first.</summary>
    public int Epoch { get; private set; } = settings.FirstEpoch - 1;

    /// <summary>Steps of the current epoch as planned.</summary>
    public int EpochSteps { get; private set; }

    /// <summary>Samples of the current epoch trained in its finished parts.</summary>
    public int EpochSamples { get; private set; }

    /// <summary>Their summed loss.</summary>
    public double EpochLossSum { get; private set; }

    /// <summary>Worker slots, alive or lost.</summary>
    public int Workers => _alive.Count;

    /// <summary>Workers alive.</summary>
    public int AliveCount => _alive.Count(a => a);

    /// <summary>The indices of the workers alive.</summary>
    public int[] AliveWorkers => [.. Enumerable.Range(0, _alive.Count).Where(i => _alive[i])];

    /// <summary>Workers alive that hold this epoch's weights: the ones evaluation can use.</summary>
    public int[] EvaluatingWorkers => [.. Enumerable.Range(0, _alive.Count).Where(i => _alive[i] && _inEpoch[i])];

    /// <summary>True when worker <paramref name="index"/> is alive.</summary>
    public bool IsAlive(int index) => index >= 0 && index < _alive.Count && _alive[index];

    /// <summary>Samples lost workers left untrained in this epoch.</summary>
    public int OrphanCount => _orphans.Count;

    /// <summary>Adds worker <paramref name="index"/> as alive (filling any gap with lost slots); it takes part from the next part.</summary>
    public void AddWorker(int index)
    {
        while (_alive.Count <= index)
        {
            _alive.Add(false);
            _inEpoch.Add(false);
        }
        _alive[index] = true;
    }

    /// <summary>Marks worker <paramref name="index"/> lost; false when it already was.</summary>
    public bool Lose(int index)
    {
        if (!IsAlive(index)) return false;
        _alive[index] = false;
        return true;
    }

    /// <summary>
    /// Plans the next epoch over the workers alive: shards from the planner for their count (same seed). The run's first
    /// epoch, resumed within it (<see cref="EpochPlanSettings.FirstRound"/> &gt; 0) with fewer workers alive than its plan's
    /// (<see cref="EpochPlanSettings.Planner"/>, the checkpoint's), goes on as <see cref="ResumeWithFewerWorkers"/> describes.
    /// </summary>
    public PlannedPart StartNextEpoch()
    {
        var startRound = Epoch == settings.FirstEpoch - 1 ? settings.FirstRound : 0;
        Epoch++;
        var alive = AliveWorkers;
        if (startRound > 0 && alive.Length < settings.Planner.Workers) return ResumeWithFewerWorkers(startRound);
        var planner = alive.Length == settings.Planner.Workers ? settings.Planner : settings.PlannerFor!(alive.Length);
        var planned = planner.Plan(Epoch);
        _batchSize = settings.BatchSizeFor(alive.Length);
        _steps = settings.BalancedStepsFor(alive.Length);
        _shards = [.. _alive.Select(_ => Array.Empty<int>())];
        _pieces = [.. _alive.Select(_ => Array.Empty<int>())];
        for (var j = 0; j < alive.Length; j++)
        {
            _shards[alive[j]] = planned[j];
            _pieces[alive[j]] = [j, 0, planned[j].Length];
        }
        _plannedBy = planner;
        var batches = Batches(0);
        EpochSteps = Math.Max(1, batches.Max());
        for (var i = 0; i < _alive.Count; i++) _inEpoch[i] = _alive[i];
        _firstRound = 0;
        _part = 0;
        _nextRound = startRound;
        _orphans.Clear();
        _orphanPieces.Clear();
        EpochSamples = 0;
        EpochLossSum = 0;
        var resumable = alive.Length == settings.Planner.Workers && alive.Length == _alive.Count && _batchSize == settings.BatchSizePerWorker;
        return new PlannedPart(Epoch, _shards, alive, _batchSize, _steps, 0, EpochSteps, batches, startRound, EpochSteps, resumable, settings.SharedShards,
            _part, KeepsGlobalBatch, planner);
    }

    /// <summary>
    /// An epoch resumed at round <paramref name="startRound"/> with fewer workers alive than its plan has shards: the plan is
    /// the checkpoint's (<see cref="EpochPlanSettings.Planner"/>, at <see cref="EpochPlanSettings.BatchSizePerWorker"/>), whose
    /// rounds before <paramref name="startRound"/> were trained before the interruption. Each shard's minibatches from that
    /// round on, in shard order, are kept as a lost worker's would be, and go to the workers alive in a further part (part 1)
    /// starting at <paramref name="startRound"/> itself, as after a loss with Training:KeepGlobalBatch (or at the workers'
    /// minibatch without it). Every sample of the epoch is still trained once; a checkpoint inside that part does not resume
    /// exactly (<see cref="PlannedPart.MidEpochResumable"/> false), so a second interruption resumes from the same checkpoint.
    /// In the asynchronous modes the checkpoint's minibatches of later rounds already trained
    /// (<see cref="EpochPlanSettings.TrainedAhead"/>) are left out, so they are not trained twice.
    /// </summary>
    private PlannedPart ResumeWithFewerWorkers(int startRound)
    {
        var ahead = (settings.TrainedAhead ?? []).ToHashSet();
        var planner = settings.Planner;
        var planned = planner.Plan(Epoch);
        _plannedBy = planner;
        _orphans.Clear();
        _orphanPieces.Clear();
        var steps = 1;
        for (var j = 0; j < planned.Length; j++)
        {
            var minibatches = MinibatchPlan.Fixed(planned[j].Length, settings.BatchSizePerWorker);
            steps = Math.Max(steps, minibatches.Count);
            // The minibatches from the checkpoint's round on, but those trained ahead, as runs of samples in the shard.
            var runStart = -1;
            for (var round = Math.Min(startRound, minibatches.Count); round <= minibatches.Count; round++)
            {
                var keep = round < minibatches.Count && !ahead.Contains((round, j));
                if (keep && runStart < 0) runStart = minibatches.Start(round);
                if (keep || runStart < 0) continue;
                var runEnd = minibatches.Start(round);
                _orphans.AddRange(planned[j].AsSpan(runStart, runEnd - runStart));
                _orphanPieces.AddRange([j, runStart, runEnd]);
                runStart = -1;
            }
        }
        EpochSteps = steps;
        for (var i = 0; i < _alive.Count; i++) _inEpoch[i] = _alive[i];
        _part = 0;
        _nextRound = startRound - 1; // the further part starts at the checkpoint's round, which the parameter server resumes at
        EpochSamples = 0;
        EpochLossSum = 0;
        return ContinueEpoch();
    }

    /// <summary>
    /// A further part of the epoch: the samples the lost workers did not train on (with Training:KeepGlobalBatch, also the
    /// others' after the loss), split evenly across the workers alive now, in the rounds after the last one applied, as
    /// balanced minibatches of up to the workers' minibatch (so the part has no runt step). One round number is skipped:
    /// the previous part's closing broadcast used the round after the last one applied. The part's number tells its
    /// weights from the previous part's (<c>WeightsUpdated.Part</c>).
    /// </summary>
    public PlannedPart ContinueEpoch()
    {
        var alive = AliveWorkers;
        var orphans = _orphans.ToArray();
        var orphanPieces = _orphanPieces.ToArray();
        _orphans.Clear();
        _orphanPieces.Clear();
        _batchSize = settings.BatchSizeFor(alive.Length);
        _shards = [.. _alive.Select(_ => Array.Empty<int>())];
        _pieces = [.. _alive.Select(_ => Array.Empty<int>())];
        for (var j = 0; j < alive.Length; j++)
        {
            var from = (int)((long)orphans.Length * j / alive.Length);
            var to = (int)((long)orphans.Length * (j + 1) / alive.Length);
            _shards[alive[j]] = orphans[from..to];
            var pieces = new List<int>();
            AddPieces(orphanPieces, from, to, pieces);
            _pieces[alive[j]] = [.. pieces];
        }
        var largest = (orphans.Length + alive.Length - 1) / alive.Length;
        _steps = Math.Max(1, (largest + _batchSize - 1) / _batchSize);
        _firstRound = _nextRound + 1;
        var batches = Batches(_firstRound);
        var rounds = Math.Max(1, batches.Max() - _firstRound);
        foreach (var i in alive) _inEpoch[i] = true;
        _part++;
        return new PlannedPart(Epoch, _shards, alive, _batchSize, _steps, _firstRound, rounds, batches, _firstRound, EpochSteps, false, settings.SharedShards,
            _part, KeepsGlobalBatch, _plannedBy, _pieces);
    }

    /// <summary>
    /// A part with no minibatches that only hands the finished epoch's weights to the workers alive, when every worker that
    /// held them was lost before it was scored (the workers alive joined later): an empty shard for each, one round after
    /// the last (as <see cref="ContinueEpoch"/> skips one), which the parameter server broadcasts and closes at once.
    /// Nothing is trained twice; the workers alive then hold the epoch's weights (<see cref="EvaluatingWorkers"/>).
    /// </summary>
    public PlannedPart ShareWeights()
    {
        var alive = AliveWorkers;
        _shards = [.. _alive.Select(_ => Array.Empty<int>())];
        _pieces = [.. _alive.Select(_ => Array.Empty<int>())];
        _steps = 0;
        _firstRound = _nextRound + 1;
        _nextRound = _firstRound;
        foreach (var i in alive) _inEpoch[i] = true;
        _part++;
        return new PlannedPart(Epoch, _shards, alive, _batchSize, 0, _firstRound, 0, Batches(_firstRound), _firstRound, EpochSteps, false,
            settings.SharedShards, _part, KeepsGlobalBatch);
    }

    /// <summary>A lost worker ends a part for every worker: Training:KeepGlobalBatch in a lock-step mode (the asynchronous modes hand out minibatches one by one).</summary>
    private bool KeepsGlobalBatch => settings.GlobalBatchSize > 0 && !settings.SharedShards;

    /// <summary>
    /// Each worker's last round + 1 (absolute) for the current part's shards, whose first minibatch runs in
    /// <paramref name="firstRound"/>; also where each worker's minibatches of the part end, until a loss cuts them.
    /// </summary>
    private int[] Batches(int firstRound)
    {
        int[] batches = [.. _shards.Select(s => s.Length == 0 ? 0 : firstRound + Minibatches(s).Count)];
        _ends = (int[])batches.Clone();
        return batches;
    }

    /// <summary>How the current part cuts a shard into minibatches (as <c>AssignShard.Minibatches</c>).</summary>
    private MinibatchPlan Minibatches(int[] shard) =>
        _steps > 0 ? MinibatchPlan.Balanced(shard.Length, _steps) : MinibatchPlan.Fixed(shard.Length, _batchSize);

    /// <summary>A step of <paramref name="round"/> was applied: the next part starts after it.</summary>
    public void RoundApplied(int round) => _nextRound = Math.Max(_nextRound, round + 1);

    /// <summary>
    /// The parameter server stopped waiting for lost worker <paramref name="index"/>: its samples from
    /// <paramref name="firstUnusedRound"/> on are kept for a further part. A negative round means the parameter server
    /// hands its minibatches to the other workers itself (the asynchronous modes): nothing is kept.
    /// </summary>
    public void WorkerRemoved(int index, int firstUnusedRound)
    {
        if (index < 0 || index >= _shards.Length || firstUnusedRound < 0) return;
        KeepMinibatches(index, firstUnusedRound);
        _shards[index] = [];
        _pieces[index] = [];
    }

    /// <summary>
    /// The parameter server ended the current part at <paramref name="round"/> for every worker (Training:KeepGlobalBatch
    /// after a loss): the minibatches of the workers alive from that round on are kept for a further part, with the lost
    /// workers' samples.
    /// </summary>
    public void PartCut(int round)
    {
        if (round < 0) return;
        for (var i = 0; i < _shards.Length; i++) KeepMinibatches(i, round);
    }

    /// <summary>Keeps worker <paramref name="index"/>'s minibatches of the current part from <paramref name="round"/> to where they end (<c>_ends</c>), which moves to that round.</summary>
    private void KeepMinibatches(int index, int round)
    {
        var shard = _shards[index];
        if (shard.Length == 0 || index >= _ends.Length || round >= _ends[index]) return;
        var plan = Minibatches(shard);
        var from = plan.Start(Math.Clamp(round - _firstRound, 0, plan.Count));
        var to = plan.Start(Math.Clamp(_ends[index] - _firstRound, 0, plan.Count));
        if (from < to) Keep(index, from, to);
        _ends[index] = round;
    }

    /// <summary>Minibatches (shard, round) of the current part that were never trained are kept for a further part.</summary>
    public void MinibatchesLeft(int[] shards, int[] rounds)
    {
        for (var k = 0; k < Math.Min(shards.Length, rounds.Length); k++)
        {
            if (shards[k] < 0 || shards[k] >= _shards.Length) continue;
            var shard = _shards[shards[k]];
            var plan = Minibatches(shard);
            var minibatch = rounds[k] - _firstRound;
            if (minibatch < 0 || minibatch >= plan.Count) continue;
            Keep(shards[k], plan.Start(minibatch), plan.Start(minibatch) + plan.Length(minibatch));
        }
    }

    /// <summary>Keeps samples <paramref name="from"/> to <paramref name="to"/> (exclusive) of worker <paramref name="index"/>'s shard in
    /// the current part for a further part, as indices and as pieces of the epoch's plan.</summary>
    private void Keep(int index, int from, int to)
    {
        _orphans.AddRange(_shards[index].AsSpan(from, to - from));
        AddPieces(_pieces[index], from, to, _orphanPieces);
    }

    /// <summary>
    /// Appends to <paramref name="into"/> the pieces (flat triples: plan shard, from, to) that cover samples
    /// <paramref name="from"/> to <paramref name="to"/> (exclusive) of the sequence that <paramref name="pieces"/> describe,
    /// joining a piece to the last one when it continues it.
    /// </summary>
    private static void AddPieces(ReadOnlySpan<int> pieces, int from, int to, List<int> into)
    {
        var offset = 0; // of the current piece in the sequence
        for (var p = 0; p + 2 < pieces.Length && offset < to; p += 3)
        {
            var (shard, start, end) = (pieces[p], pieces[p + 1], pieces[p + 2]);
            var first = Math.Max(from, offset) - offset + start;
            var last = Math.Min(to, offset + end - start) - offset + start;
            offset += end - start;
            if (first >= last) continue;
            var n = into.Count;
            if (n >= 3 && into[n - 3] == shard && into[n - 1] == first) into[n - 1] = last;
            else into.AddRange([shard, first, last]);
        }
    }

    /// <summary>A part was trained: adds its samples and loss; true when the epoch is done (no lost worker's samples are left).</summary>
    public bool PartTrained(int samples, double lossSum)
    {
        EpochSamples += samples;
        EpochLossSum += lossSum;
        return _orphans.Count == 0;
    }
}
