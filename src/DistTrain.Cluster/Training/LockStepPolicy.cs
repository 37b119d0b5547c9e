using System.Diagnostics;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Checkpoints;

namespace DistTrain.Cluster.Training;

/// <summary>
/// Lock-step rounds (<see cref="SyncPolicy"/>, <see cref="LocalSgdPolicy"/>): each round the same weights go to every
/// worker; the round waits for one report from every worker that has a minibatch in it, combines them in worker order
/// (so the result does not depend on arrival order), and the next round's weights go out. A lost worker is no longer
/// waited for; its untrained rounds go back to the coordinator, which gives their samples to the others. With
/// Training:KeepGlobalBatch (<see cref="EpochPart.KeepGlobalBatch"/>) the part ends for every worker after the open round,
/// and the coordinator plans all the samples left at the global minibatch over the workers alive.
/// </summary>
public abstract class LockStepPolicy : UpdatePolicy
{
    private readonly GradientRound _round = new();
    private readonly float[][] _reports = new float[MaxWorkers][];
    private readonly float[] _scales = new float[MaxWorkers];
    private (RoundTotals Totals, int Contributors, long UpdateStarted)? _awaitingNorm; // a clipping shard's step, until the whole norm comes

    /// <inheritdoc />
    protected LockStepPolicy(ServerModel model, WeightsOutbox outbox, IServerOutput output, WireLayout wire, int checkpointEverySteps,
        TrainingCheckpoint? resumeFrom)
        : base(model, outbox, output, wire, checkpointEverySteps, resumeFrom)
    {
    }

    /// <summary>The open round.</summary>
    protected GradientRound Round => _round;

    /// <summary>Rounds one report covers from <paramref name="round"/> (local SGD's period; 1 for synchronous SGD).</summary>
    protected abstract int Span(int round);

    /// <summary>Writes the whole current state a broadcast carries into <paramref name="message"/> (at a part's start).</summary>
    protected abstract void FillBroadcast(float[] message);

    /// <summary>
    /// Combines the round's <paramref name="reports"/> (in worker order, with <paramref name="scales"/> <c>nᵢ / Σ n</c>) into the
    /// master weights and into <see cref="WeightsOutbox.NextShared"/>, the next broadcast; <paramref name="steps"/> optimizer
    /// steps of the run at <paramref name="learningRate"/> (the first one's rate).
    /// </summary>
    /// <param name="reports">The reports, in worker order.</param>
    /// <param name="scales">Their weights, <c>nᵢ / Σ n</c>.</param>
    /// <param name="learningRate">The first step's rate.</param>
    /// <param name="steps">Optimizer steps the reports cover.</param>
    /// <param name="globalNorm">A clipping shard's whole-model gradient norm (<see cref="ServerModel.ClipsByShardedNorm"/>); else null.</param>
    /// <returns>False when the result is not finite.</returns>
    protected abstract bool Combine(ReadOnlySpan<float[]> reports, ReadOnlySpan<float> scales, float learningRate, int steps, double? globalNorm);

    /// <summary>What the divergence message calls a bad combined result.</summary>
    protected abstract string NonFiniteResult { get; }

    /// <inheritdoc />
    protected override void OnStart(EpochPart part)
    {
        _round.StartPart(part.BatchesPerWorker);
        FillBroadcast(Outbox.NextShared);
        BeginRound(part.FirstRound);
    }

    /// <summary>Sends the weights in <see cref="WeightsOutbox.NextShared"/> (already filled) to every worker; ends the part when nobody has a minibatch left.</summary>
    private void BeginRound(int round)
    {
        _round.Open(round);
        // Every replica receives every version, so evaluation can run on any of them.
        Output.Broadcast(Outbox.PublishShared(Part!, round, Model.Version, _round.EndRound));
        if (_round.Expected == 0) CompletePart();
    }

    /// <inheritdoc />
    protected override string? Problem(GradientComputed g)
    {
        var part = Part!;
        if (g.Epoch != part.Epoch || g.Round != _round.Round)
            return $"it answers epoch {g.Epoch} round {g.Round}, but epoch {part.Epoch} round {_round.Round} is open";
        if (g.Version != Model.Version) return $"it was computed on version {g.Version}, the current version is {Model.Version}";
        return _round.Problem(g);
    }

    /// <inheritdoc />
    protected override void Apply(GradientComputed report)
    {
        _round.Add(report);
        if (_round.IsComplete) CompleteRound();
    }

    /// <inheritdoc />
    protected override void OnRemoveWorker(int index)
    {
        // The rounds the open round's reports cover: the other workers' reports in flight were computed on them.
        var span = Span(_round.Round);
        var end = _round.EndOf(index);
        var (awaited, firstUnused) = _round.Remove(index, span);
        var part = Part!;
        // Training:KeepGlobalBatch: when the lost worker left minibatches of this part untrained, everybody's minibatches
        // after the open round go to a further part, planned at the global minibatch over the workers alive; the broadcasts
        // carry the new end, so no survivor computes past it. A worker that had nothing left (its shard done, or a worker
        // that joined after the part began) cuts nothing.
        var cutFrom = part.KeepGlobalBatch && firstUnused < end && _round.Cut(_round.Round + span) ? _round.Round + span : -1;
        Output.WorkerRemoved(new WorkerRemoved(index, firstUnused, cutFrom));
        Output.Warning(LossMessage(index, awaited, firstUnused, end, cutFrom, span));
        if (!awaited) return;
        if (_round.Expected == 0 && _round.Arrived == 0)
        {
            // Nobody is left in this round (and so in any later one): this part of the epoch ends here.
            CompletePart();
            _round.ClearBatches();
        }
        else if (_round.IsComplete) CompleteRound();
    }

    /// <summary>
    /// What a loss means for the part, in words that fit the case: the lost worker had nothing left in it; or the part
    /// was cut for everybody (Training:KeepGlobalBatch); or its rounds wait for a further part while the others go on
    /// (with smaller steps only if they have rounds left after this one).
    /// </summary>
    private string LossMessage(int index, bool awaited, int firstUnused, int end, int cutFrom, int span)
    {
        var lost = $"Worker {index} lost in epoch {Part!.Epoch} round {_round.Round}";
        if (firstUnused >= end)
            return $"{lost}: it had no minibatch left in this part of the epoch, so nothing of it is planned again; the others go on as planned.";
        var round = !awaited ? "its report of this round arrived"
            : _round.Expected == 0 && _round.Arrived == 0 ? "no other worker has a minibatch in this round, so this part of the epoch ends here"
            : "the round continues without it, a smaller global minibatch for this step";
        if (cutFrom >= 0)
            return $"{lost}: {round}. Training:KeepGlobalBatch: this part of the epoch ends at round {cutFrom}; its rounds from {firstUnused} and the " +
                $"other workers' from {cutFrom} are planned again over the workers alive, at the global minibatch.";
        var later = _round.EndRound > _round.Round + span
            ? " Until then each step carries only the other workers' minibatches, a smaller global minibatch."
            : "";
        return $"{lost}: {round}; its rounds from {firstUnused} go to the workers alive in a further part of the epoch, after round {Math.Max(_round.EndRound, _round.Round + span)}.{later}";
    }

    /// <summary>
    /// Every expected report of the round is in: combine, report, start the next round. A shard that clips by the whole
    /// model's norm first gives its part of it and finishes the round when <see cref="ApplyGlobalNorm"/> brings the whole.
    /// </summary>
    private void CompleteRound()
    {
        var updateStarted = Stopwatch.GetTimestamp();
        var totals = _round.Totals();
        var contributors = _round.Contributors(_reports, _scales, totals.Samples);
        if (!double.IsFinite(totals.LossSum)) Diverged("a NaN or infinite loss", _round.Round, Model.Version, Reports());
        if (Model.ClipsByShardedNorm)
        {
            _awaitingNorm = (totals, contributors, updateStarted);
            Output.ShardSquaredNorm(Model.AverageSquaredNorm(_reports.AsSpan(0, contributors), _scales.AsSpan(0, contributors)));
            return;
        }
        FinishRound(totals, contributors, updateStarted, null);
    }

    /// <inheritdoc />
    public override void ApplyGlobalNorm(double norm)
    {
        if (_awaitingNorm is not { } waiting) throw new InvalidOperationException("No round waits for the gradient norm.");
        _awaitingNorm = null;
        FinishRound(waiting.Totals, waiting.Contributors, waiting.UpdateStarted, norm);
    }

    private void FinishRound(RoundTotals totals, int contributors, long updateStarted, double? globalNorm)
    {
        var part = Part!;
        var round = _round.Round;
        var learningRate = Model.LearningRate(part.Epoch, round, part.PlannedSteps, part.ActiveWorkers);
        var steps = Span(round);
        var finite = Combine(_reports.AsSpan(0, contributors), _scales.AsSpan(0, contributors), (float)learningRate, steps, globalNorm);
        Array.Clear(_reports);
        if (!finite) Diverged(NonFiniteResult, round, Model.Version, Reports(), lossFiniteOnIt: true);
        var previousVersion = Model.Version;
        Model.Version += steps;
        EpochSamples += totals.Samples;
        EpochLossSum += totals.LossSum;
        var finished = Stopwatch.GetTimestamp();
        var timing = new RoundTiming(
            RoundSeconds: Stopwatch.GetElapsedTime(_round.StartedTimestamp, finished).TotalSeconds,
            MaxComputeSeconds: totals.MaxComputeSeconds,
            MeanComputeSeconds: totals.SumComputeSeconds / _round.Expected,
            UpdateSeconds: Stopwatch.GetElapsedTime(updateStarted, finished).TotalSeconds,
            WorkerAllocatedBytes: totals.WorkerAllocatedBytes);
        // A report covering several rounds (local SGD) is reported as its last round, so the next position follows it.
        var report = Output.TakeReport(_round.Workers)
            .Reuse(part.Epoch, round + steps - 1, Model.Version, totals.Samples, totals.LossSum, timing, learningRate);
        for (var i = 0; i < _round.Workers; i++)
        {
            var g = _round[i];
            report.WorkerLosses[i] = g is null ? double.NaN : g.LossSum / Math.Max(1, g.SampleCount);
            report.WorkerComputeSeconds[i] = g?.ComputeSeconds ?? 0;
            report.WorkerQueueingSeconds[i] = g?.QueueingSeconds ?? 0;
            report.WorkerStaleness[i] = g is null ? double.NaN : 0; // every report of a round was computed on its weights
        }
        Output.StepApplied(report);
        var next = round + steps;
        AfterStep(previousVersion, next, _round.EpochDoneAt(next));
        BeginRound(next);
    }

    private IEnumerable<(int, GradientComputed)> Reports()
    {
        for (var i = 0; i < _round.Workers; i++)
            if (_round[i] is { } g) yield return (i, g);
    }
}
