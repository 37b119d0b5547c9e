using System.Diagnostics;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Checkpoints;

namespace DistTrain.Cluster.Training;

/// <summary>
/// Asynchronous SGD (<see cref="Core.Configuration.TrainingMode.Async"/>): every gradient is applied alone, as it arrives,
/// as one optimizer step; its worker then gets the new weights and the part's next minibatch (<see cref="MinibatchQueue"/>),
/// so a fast worker trains more minibatches than a slow one and nobody waits for anyone.
/// </summary>
/// <remarks>
/// A gradient computed on version v and applied when the master is at version V has staleness V − v (the number of
/// other workers' steps applied in between). With Training:StalenessAwareLearningRate the step's learning rate is divided
/// by staleness + 1 (Zhang, Gupta, Lian and Liu, IJCAI 2016). The running statistics become those of the worker that
/// reported last. The schedule counts minibatches: an epoch has as many steps as minibatches.
/// A checkpoint inside a part records the first round with a minibatch not trained and the minibatches of later rounds
/// already trained, which a resume skips, so every sample is still trained once.
/// </remarks>
public sealed class AsyncPolicy(ServerModel model, WeightsOutbox outbox, IServerOutput output, WireLayout wire, bool stalenessAwareRate,
    int checkpointEverySteps = -1, TrainingCheckpoint? resumeFrom = null)
    : UpdatePolicy(model, outbox, output, wire, checkpointEverySteps, resumeFrom)
{
    private readonly MinibatchQueue _queue = new();
    private readonly float[][] _single = new float[1][];
    private readonly float[] _one = [1f];
    private bool[] _present = [];
    private long[] _sentVersion = [];
    private long[] _sentTimestamp = [];
    private int _stepsPerEpoch;     // the schedule's steps in the epoch
    private int _partStartStep;     // the schedule's step at the part's start
    private int _partMinibatches;   // a further part's minibatches, spread over the epoch's steps left; 0: one step each
    private int _stepInPart;        // minibatches applied in this part
    private int _positionEpoch;     // the epoch the four above belong to (0: none yet)

    /// <summary>
    /// The warning for Optimizer:Momentum <paramref name="momentum"/> in Async with <paramref name="workers"/> workers, or
    /// null when none is due. Asynchrony adds momentum of its own, about <c>1 − 1/N</c> for N workers (Mitliagkas, Zhang,
    /// Hadjis and Ré, "Asynchrony begets momentum", 2016), so explicit momentum μ ≥ 1/N makes the sum reach 1 and training
    /// stalls: on the 1,000-sample subset (3 workers of 20, learning rate 0.05) μ = 0.9 ends at chance (loss 2.2, 11-16%
    /// test accuracy) where Sync reaches 75-77%, while μ = 0.9 − (1 − 1/3) ≈ 0.23 reaches 76-77% (docs/architecture.md).
    /// The warning names μ − (1 − 1/N), at least 0, as the value to use.
    /// </summary>
    /// <param name="momentum">Optimizer:Momentum, in [0, 1).</param>
    /// <param name="workers">Workers computing at once.</param>
    public static string? MomentumAdvice(double momentum, int workers)
    {
        if (workers < 2 || momentum <= 0 || momentum < 1.0 / workers) return null;
        var implicitMomentum = 1 - 1.0 / workers;
        var suggested = Math.Max(0, momentum - implicitMomentum);
        return FormattableString.Invariant(
            $"Optimizer:Momentum = {momentum} in Training:Mode = Async with {workers} workers: asynchrony adds about 1 - 1/{workers} = {implicitMomentum:0.##} of momentum of its own (Mitliagkas et al. 2016), so training may stall near chance. Use Optimizer:Momentum = {suggested:0.##} ({momentum} - {implicitMomentum:0.##}) or less, or Training:Mode = Sync or BoundedStaleness.");
    }

    /// <summary>The part's minibatches and who computes which.</summary>
    public MinibatchQueue Queue => _queue;

    /// <inheritdoc />
    protected override void OnStart(EpochPart part)
    {
        AdviseOnMomentum(momentum => MomentumAdvice(momentum, part.ActiveWorkers));
        _queue.Start(part.BatchesPerWorker, part.FirstRound, part.Workers, ResumedAhead);
        _present = (bool[])part.Present.Clone();
        _sentVersion = new long[part.Workers];
        _sentTimestamp = new long[part.Workers];
        Outbox.ForWorkers(part.Workers);
        StartSchedulePosition(part);
        for (var worker = 0; worker < part.Workers; worker++)
            if (_present[worker]) GiveWork(worker);
        if (_queue.AllDone) Finish();
    }

    /// <summary>
    /// Where the part's first step sits in the epoch's learning-rate schedule. The schedule's unit is a minibatch: an epoch
    /// has its planned rounds times its shards of steps, and a first part that starts later (a resumed checkpoint's) starts
    /// that far in, past the minibatches it already trained. A further part (after every worker was lost, or a resume with
    /// fewer workers) has other shards and minibatches: it starts where the epoch stood (the steps this policy applied in the
    /// epoch, or the part's first round's share of the epoch when it applied none) and spreads its minibatches evenly over
    /// the epoch's steps left, so its last minibatch ends the epoch as the first plan's last would have.
    /// </summary>
    private void StartSchedulePosition(EpochPart part)
    {
        var shards = Math.Max(1, part.BatchesPerWorker.Count(b => b > part.FirstRound));
        var reached = _positionEpoch == part.Epoch ? StepInEpoch : -1; // where this policy left the epoch
        _stepInPart = 0;
        _partMinibatches = 0;
        if (part.Part == 0)
        {
            _stepsPerEpoch = part.PlannedSteps * shards;
            _partStartStep = part.FirstRound * shards + (_queue.Count - _queue.Remaining);
        }
        else
        {
            if (reached < 0)
            {
                _stepsPerEpoch = part.PlannedSteps * shards;
                _partStartStep = Math.Min(_stepsPerEpoch, part.FirstRound * shards);
            }
            else _partStartStep = reached;
            _partMinibatches = _queue.Remaining;
            // Finer units when the part has more minibatches than the epoch has steps left, so each gets a step of its own.
            var left = _stepsPerEpoch - _partStartStep;
            if (left > 0 && _partMinibatches > left)
            {
                var scale = (int)Math.Min((_partMinibatches + left - 1) / left, int.MaxValue / _stepsPerEpoch);
                _stepsPerEpoch *= scale;
                _partStartStep *= scale;
            }
        }
        _positionEpoch = part.Epoch;
    }

    /// <summary>The schedule's step of the part's next minibatch: one step per minibatch in a first part; in a further part,
    /// its minibatches spread over the epoch's steps left (<see cref="StartSchedulePosition"/>).</summary>
    private int StepInEpoch => _partMinibatches == 0
        ? _partStartStep + _stepInPart
        : _partStartStep + (int)((long)Math.Max(0, _stepsPerEpoch - _partStartStep) * _stepInPart / _partMinibatches);

    /// <summary>Sends worker <paramref name="worker"/> the current weights and its next minibatch, if one is left.</summary>
    private void GiveWork(int worker)
    {
        if (_queue.Assign(worker, int.MaxValue) is not { } minibatch) return;
        _sentVersion[worker] = Model.Version;
        _sentTimestamp[worker] = Stopwatch.GetTimestamp();
        Output.Send(worker, Outbox.ForWorker(worker, Part!, minibatch.Round, Model.Version, minibatch.Shard,
            Model.Weights.Values.AsSpan(0, Model.Layout.WorkerReportLength)));
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
        var part = Part!;
        var worker = g.WorkerIndex;
        var updateStarted = Stopwatch.GetTimestamp();
        var minibatch = _queue.InFlight(worker)!.Value;
        if (!double.IsFinite(g.LossSum)) Diverged("a NaN or infinite loss", minibatch.Round, g.Version, [(worker, g)]);
        var staleness = Model.Version - g.Version;
        var rate = Model.LearningRate(part.Epoch, StepInEpoch, _stepsPerEpoch, part.ActiveWorkers, oneWorkerPerStep: true);
        if (stalenessAwareRate) rate /= staleness + 1;
        _single[0] = g.Gradient;
        var finite = Model.Step(_single, _one, (float)rate, null, Warn);
        if (finite) finite = Model.MergeRunningStatistics(_single, _one, null);
        _single[0] = null!;
        if (!finite) Diverged("a NaN or infinite gradient or BatchNorm running statistic", minibatch.Round, g.Version, [(worker, g)], lossFiniteOnIt: true);
        _queue.Complete(worker);
        var previousVersion = Model.Version;
        Model.Version++;
        _stepInPart++;
        EpochSamples += g.SampleCount;
        EpochLossSum += g.LossSum;
        var finished = Stopwatch.GetTimestamp();
        var timing = new RoundTiming(
            RoundSeconds: Stopwatch.GetElapsedTime(_sentTimestamp[worker], finished).TotalSeconds,
            MaxComputeSeconds: g.ComputeSeconds,
            MeanComputeSeconds: g.ComputeSeconds,
            UpdateSeconds: Stopwatch.GetElapsedTime(updateStarted, finished).TotalSeconds,
            WorkerAllocatedBytes: g.AllocatedBytes);
        var report = Output.TakeReport(part.Workers).ClearWorkers()
            .Reuse(part.Epoch, minibatch.Round, Model.Version, g.SampleCount, g.LossSum, timing, rate);
        report.SetWorker(worker, g.LossSum / g.SampleCount, g.ComputeSeconds, g.QueueingSeconds, staleness);
        Output.StepApplied(report);
        GiveWork(worker);
        var next = _queue.FirstRoundNotDone();
        if (_queue.AllDone)
        {
            AfterStep(previousVersion, next, epochDone: true);
            Finish();
            return;
        }
        // Not at round 0: a position there, with minibatches of the epoch already trained, would read as the epoch's start
        // (a resume then plans the epoch for whichever workers are there, and the minibatches done belong to another plan).
        AfterStep(previousVersion, next, epochDone: false, resumableHere: next > 0, trainedAhead: _queue.DoneFrom(next));
    }

    /// <summary>Every minibatch is trained: the final weights go to every worker (for evaluation), and the part ends.</summary>
    private void Finish()
    {
        var part = Part!;
        Model.Weights.Values.CopyTo(Outbox.NextShared, Model.Offset); // a shard writes its slice
        Output.Broadcast(Outbox.PublishShared(part, _queue.EndRound, Model.Version, _queue.EndRound));
        CompletePart();
    }

    /// <inheritdoc />
    protected override void OnRemoveWorker(int index)
    {
        var part = Part!;
        _present[index] = false;
        var released = _queue.Release(index);
        // Its minibatch in flight goes to another worker: nothing of its shard is left to the coordinator.
        Output.WorkerRemoved(new WorkerRemoved(index, -1));
        Output.Warning($"Worker {index} lost in epoch {part.Epoch}: {(released is { } m ? $"its minibatch (round {m.Round}, shard {m.Shard}) goes" : "its shard's minibatches go")} to the other workers.");
        if (_queue.AllDone) return;
        if (!_present.Contains(true))
        {
            EndWithoutWorkers();
            return;
        }
        // A free worker (one with nothing in flight) takes over what was released.
        for (var worker = 0; worker < part.Workers && released is not null; worker++)
            if (_present[worker] && _queue.InFlight(worker) is null)
            {
                GiveWork(worker);
                break;
            }
    }

    /// <summary>Every worker of the part is lost: the part ends, and the coordinator plans what is left once workers return.</summary>
    private void EndWithoutWorkers()
    {
        var left = _queue.NotDone();
        Output.MinibatchesLeft(new MinibatchesLeft(Part!.Epoch, [.. left.Select(m => m.Shard)], [.. left.Select(m => m.Round)]));
        CompletePart();
    }
}
