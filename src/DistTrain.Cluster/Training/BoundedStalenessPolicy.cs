using System.Diagnostics;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Checkpoints;

namespace DistTrain.Cluster.Training;

/// <summary>
/// Stale synchronous parallel training (<see cref="Core.Configuration.TrainingMode.BoundedStaleness"/>; Ho et al., NIPS
/// 2013) with bound s: the epoch's rounds are combined and applied one at a time, in order, exactly as in
/// <see cref="SyncPolicy"/> (sample-weighted average in shard order, one optimizer step), but a free worker does not wait for
/// the round to be applied: it gets the newest weights and a minibatch of any round up to s rounds after the oldest one
/// not yet applied (<see cref="MinibatchQueue"/>). So a gradient is at most s versions stale, and a slow worker delays the
/// others only once they are s rounds ahead of it. s = 0 is synchronous training, step for step.
/// </summary>
/// <remarks>
/// Reports of rounds not yet applied are copied (the workers' arrays are loaned), at most (s + 1) × shards of them. With
/// Training:StalenessAwareLearningRate each gradient's weight in the average is divided by its staleness + 1 (Zhang et
/// al., IJCAI 2016). A checkpoint's position is the oldest round not applied; gradients of later rounds already computed
/// are computed again after a resume.
/// </remarks>
public sealed class BoundedStalenessPolicy : UpdatePolicy
{
    private sealed class Entry
    {
        public float[]? Values;
        public int Samples;
        public double LossSum;
        public double ComputeSeconds;
        public double QueueingSeconds;
        public long AllocatedBytes;
        public int Worker;
        public long Version;
    }

    private sealed class PendingRound(int shards)
    {
        public int Round = -1;
        public int Expected;
        public int Arrived;
        public long StartedTimestamp;
        public readonly Entry?[] ByShard = new Entry?[shards];
    }

    private readonly int _bound;
    private readonly bool _stalenessAwareRate;
    private readonly MinibatchQueue _queue = new();
    private readonly Stack<float[]> _freeBuffers = new();
    private readonly float[][] _reports = new float[MaxWorkers][];
    private readonly float[] _scales = new float[MaxWorkers];
    private readonly float[] _statisticsScales = new float[MaxWorkers];
    private PendingRound[] _window = [];
    private bool[] _present = [];
    private long[] _sentVersion = [];
    private int _oldest;

    /// <summary>Creates the policy; see <see cref="UpdatePolicy"/> for the shared arguments.</summary>
    /// <param name="model">The master weights and optimizer.</param>
    /// <param name="outbox">The loaned weights messages.</param>
    /// <param name="output">Where decisions go.</param>
    /// <param name="wire">Message lengths.</param>
    /// <param name="stalenessBound">s = Training:StalenessBound, ≥ 0.</param>
    /// <param name="stalenessAwareRate">Divide each gradient's weight by its staleness + 1.</param>
    /// <param name="checkpointEverySteps">Checkpoint:EverySteps; -1 without checkpoints.</param>
    /// <param name="resumeFrom">The checkpoint the run resumes from, or null.</param>
    public BoundedStalenessPolicy(ServerModel model, WeightsOutbox outbox, IServerOutput output, WireLayout wire, int stalenessBound,
        bool stalenessAwareRate, int checkpointEverySteps = -1, TrainingCheckpoint? resumeFrom = null)
        : base(model, outbox, output, wire, checkpointEverySteps, resumeFrom)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(stalenessBound);
        _bound = stalenessBound;
        _stalenessAwareRate = stalenessAwareRate;
    }

    /// <summary>
    /// The warning for Optimizer:Momentum <paramref name="momentum"/> in BoundedStaleness with <paramref name="workers"/>
    /// workers and bound <paramref name="stalenessBound"/>, or null when none is due. With equal workers, every worker but
    /// the last to finish a round starts the next one before that round is applied, so a gradient is on average about
    /// τ = (N − 1)/N versions old (at most s), and stale gradients act as momentum of about τ/(τ + 1) added to the explicit
    /// one (Mitliagkas, Zhang, Hadjis and Ré, "Asynchrony begets momentum", 2016). The warning is due when the sum reaches 1,
    /// and names μ − τ/(τ + 1), at least 0, as the value to use. On the main job (3 workers, s = 2, 10 epochs, single-node
    /// mode; τ measured 0.69-0.99) μ = 0.9 ended with a train loss of 0.27-0.30 against Sync's 0.20, and μ = 0.5, what this
    /// names, with 0.236-0.238 (docs/architecture.md, "Training modes").
    /// </summary>
    /// <param name="momentum">Optimizer:Momentum, in [0, 1).</param>
    /// <param name="workers">Workers computing at once.</param>
    /// <param name="stalenessBound">s = Training:StalenessBound; 0 is synchronous training and never warns.</param>
    public static string? MomentumAdvice(double momentum, int workers, int stalenessBound)
    {
        if (workers < 2 || stalenessBound < 1 || momentum <= 0) return null;
        var staleness = Math.Min(stalenessBound, (workers - 1.0) / workers);
        var implicitMomentum = staleness / (staleness + 1);
        if (momentum + implicitMomentum < 1) return null;
        var suggested = Math.Max(0, momentum - implicitMomentum);
        return FormattableString.Invariant(
            $"Optimizer:Momentum = {momentum} in Training:Mode = BoundedStaleness with {workers} workers: its gradients are on average about (N - 1)/N = {staleness:0.##} versions old, which adds about {implicitMomentum:0.##} of momentum of its own (Mitliagkas et al. 2016), so training converges more slowly and less stably than in Sync. Use Optimizer:Momentum = {suggested:0.##} ({momentum} - {implicitMomentum:0.##}) or less, Training:StalenessAwareLearningRate, or Training:Mode = Sync.");
    }

    /// <summary>The part's minibatches and who computes which.</summary>
    public MinibatchQueue Queue => _queue;

    /// <summary>The oldest round not yet applied.</summary>
    public int OldestRound => _oldest;

    /// <inheritdoc />
    protected override void OnStart(EpochPart part)
    {
        AdviseOnMomentum(momentum => MomentumAdvice(momentum, part.ActiveWorkers, _bound));
        _queue.Start(part.BatchesPerWorker, part.FirstRound, part.Workers);
        _present = (bool[])part.Present.Clone();
        _sentVersion = new long[part.Workers];
        Outbox.ForWorkers(part.Workers);
        var slots = (int)Math.Min(_bound + 1L, Math.Max(1, part.EndRound - part.FirstRound));
        _window = [.. Enumerable.Range(0, slots).Select(_ => new PendingRound(part.Workers))];
        _oldest = part.FirstRound;
        if (_queue.AllDone)
        {
            Finish();
            return;
        }
        Dispatch();
    }

    private PendingRound Pending(int round)
    {
        var pending = _window[(round - _queue.FirstRound) % _window.Length];
        if (pending.Round != round)
        {
            pending.Round = round;
            pending.Expected = _queue.InRound(round);
            pending.Arrived = 0;
            pending.StartedTimestamp = Stopwatch.GetTimestamp();
        }
        return pending;
    }

    /// <summary>Every free worker, in index order, gets the newest weights and a minibatch within the bound, if one is left.</summary>
    private void Dispatch()
    {
        var last = (int)Math.Min(int.MaxValue, (long)_oldest + _bound);
        for (var worker = 0; worker < _present.Length; worker++)
        {
            if (!_present[worker] || _queue.InFlight(worker) is not null) continue;
            if (_queue.Assign(worker, last) is not { } minibatch) continue;
            Pending(minibatch.Round);
            _sentVersion[worker] = Model.Version;
            Output.Send(worker, Outbox.ForWorker(worker, Part!, minibatch.Round, Model.Version, minibatch.Shard,
                Model.Weights.Values.AsSpan(0, Model.Layout.WorkerReportLength)));
        }
    }

    /// <inheritdoc />
    protected override string? Problem(GradientComputed g)
    {
        var part = Part!;
        if (_queue.InFlight(g.WorkerIndex) is not { } minibatch) return "that worker has no minibatch in flight";
        if (g.Epoch != part.Epoch || g.Round != minibatch.Round)
            return $"it answers epoch {g.Epoch} round {g.Round}, but that worker computes epoch {part.Epoch} round {minibatch.Round}";
        if (g.Version != _sentVersion[g.WorkerIndex])
            return $"it was computed on version {g.Version}, that worker was sent version {_sentVersion[g.WorkerIndex]}";
        return null;
    }

    /// <inheritdoc />
    protected override void Apply(GradientComputed g)
    {
        var (round, shard) = _queue.Complete(g.WorkerIndex);
        var pending = Pending(round);
        var entry = pending.ByShard[shard] ??= new Entry();
        entry.Values = _freeBuffers.Count > 0 ? _freeBuffers.Pop() : new float[Wire.ReportLength];
        g.Gradient.CopyTo(entry.Values, 0);
        entry.Samples = g.SampleCount;
        entry.LossSum = g.LossSum;
        entry.ComputeSeconds = g.ComputeSeconds;
        entry.QueueingSeconds = g.QueueingSeconds;
        entry.AllocatedBytes = g.AllocatedBytes;
        entry.Worker = g.WorkerIndex;
        entry.Version = g.Version;
        pending.Arrived++;
        while (_oldest < _queue.EndRound && Pending(_oldest) is var oldest && oldest.Arrived >= oldest.Expected)
            ApplyRound(oldest);
        if (_oldest >= _queue.EndRound)
        {
            Finish();
            return;
        }
        Dispatch();
    }

    /// <summary>The oldest round is complete: average it in shard order, step, report, and move the window on.</summary>
    private void ApplyRound(PendingRound pending)
    {
        var part = Part!;
        var round = pending.Round;
        var updateStarted = Stopwatch.GetTimestamp();
        var totals = new RoundTotals();
        var contributors = 0;
        var oldestVersion = Model.Version;
        foreach (var entry in pending.ByShard)
            if (entry?.Values is not null)
            {
                totals.Samples += entry.Samples;
                totals.LossSum += entry.LossSum;
                totals.MaxComputeSeconds = Math.Max(totals.MaxComputeSeconds, entry.ComputeSeconds);
                totals.SumComputeSeconds += entry.ComputeSeconds;
                totals.WorkerAllocatedBytes = Math.Max(totals.WorkerAllocatedBytes, entry.AllocatedBytes);
                oldestVersion = Math.Min(oldestVersion, entry.Version);
            }
        foreach (var entry in pending.ByShard)
            if (entry?.Values is not null)
            {
                _reports[contributors] = entry.Values;
                _statisticsScales[contributors] = (float)entry.Samples / totals.Samples;
                _scales[contributors++] = _stalenessAwareRate
                    ? (float)entry.Samples / totals.Samples / (Model.Version - entry.Version + 1)
                    : (float)entry.Samples / totals.Samples;
            }
        if (!double.IsFinite(totals.LossSum)) Diverged("a NaN or infinite loss", round, oldestVersion, Reports(pending));
        var learningRate = Model.LearningRate(part.Epoch, round, part.PlannedSteps, part.ActiveWorkers);
        var reports = _reports.AsSpan(0, contributors);
        var finite = Model.Step(reports, _scales.AsSpan(0, contributors), (float)learningRate, null, Warn);
        if (finite) finite = Model.MergeRunningStatistics(reports, _statisticsScales.AsSpan(0, contributors), null);
        Array.Clear(_reports);
        if (!finite) Diverged("a NaN or infinite averaged gradient or BatchNorm running statistic", round, oldestVersion, Reports(pending), lossFiniteOnIt: true);
        var previousVersion = Model.Version;
        var report = Output.TakeReport(part.Workers).ClearWorkers();
        foreach (var entry in pending.ByShard)
            if (entry?.Values is { } values)
            {
                // A worker that computed two minibatches of the round shows the staler one.
                var staleness = previousVersion - entry.Version;
                if (!(report.WorkerStaleness[entry.Worker] >= staleness))
                    report.SetWorker(entry.Worker, entry.LossSum / Math.Max(1, entry.Samples), entry.ComputeSeconds, entry.QueueingSeconds, staleness);
                _freeBuffers.Push(values);
                entry.Values = null;
            }
        Model.Version++;
        EpochSamples += totals.Samples;
        EpochLossSum += totals.LossSum;
        var finished = Stopwatch.GetTimestamp();
        var timing = new RoundTiming(
            RoundSeconds: Stopwatch.GetElapsedTime(pending.StartedTimestamp, finished).TotalSeconds,
            MaxComputeSeconds: totals.MaxComputeSeconds,
            MeanComputeSeconds: totals.SumComputeSeconds / Math.Max(1, pending.Expected),
            UpdateSeconds: Stopwatch.GetElapsedTime(updateStarted, finished).TotalSeconds,
            WorkerAllocatedBytes: totals.WorkerAllocatedBytes);
        Output.StepApplied(report.Reuse(part.Epoch, round, Model.Version, totals.Samples, totals.LossSum, timing, learningRate));
        pending.Round = -1;
        _oldest = round + 1;
        AfterStep(previousVersion, _oldest, epochDone: _oldest >= _queue.EndRound);
    }

    private static IEnumerable<(int, GradientComputed)> Reports(PendingRound pending) =>
        pending.ByShard.Where(e => e?.Values is not null)
            .Select(e => (e!.Worker, new GradientComputed(0, pending.Round, e.Version, e.Worker, e.Samples, e.LossSum, e.Values!)));

    /// <summary>Every round is applied: the final weights go to every worker (for evaluation), and the part ends.</summary>
    private void Finish()
    {
        Model.Weights.Values.CopyTo(Outbox.NextShared, Model.Offset); // a shard writes its slice
        Output.Broadcast(Outbox.PublishShared(Part!, _queue.EndRound, Model.Version, _queue.EndRound));
        CompletePart();
    }

    /// <inheritdoc />
    protected override void OnRemoveWorker(int index)
    {
        var part = Part!;
        _present[index] = false;
        var released = _queue.Release(index);
        Output.WorkerRemoved(new WorkerRemoved(index, -1));
        Output.Warning($"Worker {index} lost in epoch {part.Epoch}: {(released is { } m ? $"its minibatch (round {m.Round}, shard {m.Shard}) goes" : "its shard's minibatches go")} to the other workers.");
        if (_oldest >= _queue.EndRound) return;
        if (_present.Contains(true))
        {
            Dispatch();
            return;
        }
        // Every worker is lost: the gradients of rounds not applied are dropped, and the coordinator plans those rounds'
        // minibatches again once workers return.
        foreach (var pending in _window)
        {
            if (pending.Round < 0) continue;
            for (var shard = 0; shard < pending.ByShard.Length; shard++)
                if (pending.ByShard[shard] is { Values: { } values } entry)
                {
                    _queue.Undo(pending.Round, shard);
                    _freeBuffers.Push(values);
                    entry.Values = null;
                }
            pending.Round = -1;
        }
        var left = _queue.NotDone();
        Output.MinibatchesLeft(new MinibatchesLeft(part.Epoch, [.. left.Select(m => m.Shard)], [.. left.Select(m => m.Round)]));
        CompletePart();
    }
}
