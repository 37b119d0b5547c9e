using System.Diagnostics;
using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.Training;

/// <summary>
/// One lock-step round: which workers the round waits for (those with a minibatch in it), which reports arrived, and
/// what they add up to. A worker is expected in round r when its part's minibatches reach past r.
/// </summary>
/// <remarks>Reports are kept by reference (they are loaned, see TrainingProtocol.cs) and read before the round ends.</remarks>
public sealed class GradientRound
{
    private GradientComputed?[] _received = [];
    private int[] _batches = [];

    /// <summary>The round's number within the epoch.</summary>
    public int Round { get; private set; }

    /// <summary>Reports the round waits for.</summary>
    public int Expected { get; private set; }

    /// <summary>Reports in.</summary>
    public int Arrived { get; private set; }

    /// <summary><see cref="Stopwatch"/> timestamp at which the round's weights went out.</summary>
    public long StartedTimestamp { get; private set; }

    /// <summary>Worker slots of the part.</summary>
    public int Workers => _received.Length;

    /// <summary>True when a lost worker left rounds of this part untrained, so a further part of the epoch follows.</summary>
    public bool PartLeftSamples { get; private set; }

    /// <summary>True once every expected report is in (and at least one was expected).</summary>
    public bool IsComplete => Expected > 0 && Arrived >= Expected;

    /// <summary>The report of worker <paramref name="index"/> this round, or null.</summary>
    public GradientComputed? this[int index] => _received[index];

    /// <summary>Starts a part: each worker's end round (copied). Sizes the round for the part's worker slots.</summary>
    public void StartPart(int[] batchesPerWorker)
    {
        _received = new GradientComputed?[batchesPerWorker.Length];
        _batches = (int[])batchesPerWorker.Clone();
        PartLeftSamples = false;
    }

    /// <summary>Opens round <paramref name="round"/>: clears the reports and counts the workers that have a minibatch in it.</summary>
    public void Open(int round)
    {
        Round = round;
        Array.Clear(_received);
        Arrived = 0;
        Expected = 0;
        foreach (var batches in _batches)
            if (batches > round) Expected++;
        StartedTimestamp = Stopwatch.GetTimestamp();
    }

    /// <summary>Why <paramref name="report"/> from worker <c>report.WorkerIndex</c> (already checked to be in range) does not belong to this round; null when it does.</summary>
    public string? Problem(GradientComputed report)
    {
        if (_batches[report.WorkerIndex] <= Round) return "that worker has no minibatch in this round";
        if (_received[report.WorkerIndex] is not null) return "a gradient from that worker already arrived this round";
        return null;
    }

    /// <summary>Records a report that passed <see cref="Problem"/>.</summary>
    public void Add(GradientComputed report)
    {
        _received[report.WorkerIndex] = report;
        Arrived++;
    }

    /// <summary>The round after the last minibatch any worker has in the part.</summary>
    public int EndRound
    {
        get
        {
            var end = 0;
            foreach (var batches in _batches) end = Math.Max(end, batches);
            return end;
        }
    }

    /// <summary>The round after worker <paramref name="index"/>'s last minibatch in the part (0 for none).</summary>
    public int EndOf(int index) => _batches[index];

    /// <summary>
    /// Worker <paramref name="index"/> is lost. The round stops waiting for it if its report was not in; its later rounds
    /// are cut off.
    /// </summary>
    /// <param name="index">The worker.</param>
    /// <param name="span">Rounds one report covers (local SGD's period; 1 otherwise).</param>
    /// <returns>Whether the round was waiting for it, and the first round it did not contribute.</returns>
    public (bool Awaited, int FirstUnused) Remove(int index, int span = 1)
    {
        var awaited = _received[index] is null && _batches[index] > Round;
        var firstUnused = _received[index] is not null ? Math.Min(_batches[index], Round + span) : Math.Min(_batches[index], Round);
        if (awaited) Expected--;
        if (firstUnused < _batches[index]) PartLeftSamples = true;
        _batches[index] = Math.Min(_batches[index], firstUnused);
        return (awaited, firstUnused);
    }

    /// <summary>
    /// Ends the part at <paramref name="round"/> for every worker (Training:KeepGlobalBatch after a loss): minibatches in it
    /// and later are left for a further part. Returns true when any worker had one.
    /// </summary>
    public bool Cut(int round)
    {
        var cut = false;
        for (var i = 0; i < _batches.Length; i++)
            if (_batches[i] > round)
            {
                _batches[i] = round;
                cut = true;
            }
        if (cut) PartLeftSamples = true;
        return cut;
    }

    /// <summary>Ends the part early: no worker has minibatches left.</summary>
    public void ClearBatches() => _batches = new int[_received.Length];

    /// <summary>True when no worker has a minibatch in <paramref name="round"/> or later, and none was left for a further part.</summary>
    public bool EpochDoneAt(int round)
    {
        if (PartLeftSamples) return false;
        foreach (var last in _batches)
            if (last > round) return false;
        return true;
    }

    /// <summary>
    /// The reports in worker order into <paramref name="reports"/>, with scales <c>nᵢ / Σ n</c>; returns how many. The sum
    /// in worker order makes the average independent of arrival order.
    /// </summary>
    public int Contributors(float[][] reports, float[] scales, int samples)
    {
        var contributors = 0;
        foreach (var g in _received)
            if (g is not null)
            {
                reports[contributors] = g.Gradient;
                scales[contributors++] = (float)g.SampleCount / samples;
            }
        return contributors;
    }

    /// <summary>Totals over the reports in: samples, summed loss, the slowest and the summed compute time, the most bytes a worker allocated.</summary>
    public RoundTotals Totals()
    {
        var totals = new RoundTotals();
        foreach (var g in _received)
            if (g is not null) totals.Add(g);
        return totals;
    }
}

/// <summary>What a step's reports add up to.</summary>
public struct RoundTotals
{
    /// <summary>Samples.</summary>
    public int Samples;

    /// <summary>Summed per-sample loss.</summary>
    public double LossSum;

    /// <summary>Slowest report's compute time, seconds.</summary>
    public double MaxComputeSeconds;

    /// <summary>Summed compute time, seconds.</summary>
    public double SumComputeSeconds;

    /// <summary>Most managed bytes any worker's step allocated.</summary>
    public long WorkerAllocatedBytes;

    /// <summary>Adds one report.</summary>
    public void Add(GradientComputed g)
    {
        Samples += g.SampleCount;
        LossSum += g.LossSum;
        MaxComputeSeconds = Math.Max(MaxComputeSeconds, g.ComputeSeconds);
        SumComputeSeconds += g.ComputeSeconds;
        WorkerAllocatedBytes = Math.Max(WorkerAllocatedBytes, g.AllocatedBytes);
    }
}
