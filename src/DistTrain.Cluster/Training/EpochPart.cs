namespace DistTrain.Cluster.Training;

/// <summary>
/// One part of an epoch as the parameter server runs it: an epoch, or the further part that takes over a lost worker's
/// samples (the coordinator's <c>StartEpoch</c>, without the actor references).
/// </summary>
/// <param name="Epoch">1-based epoch.</param>
/// <param name="Present">By worker index: true for a worker that takes part, false for a lost worker's slot.</param>
/// <param name="BatchesPerWorker">By worker index: the absolute round after the worker's last minibatch (0 for none).</param>
/// <param name="FirstRound">The round the part starts at.</param>
/// <param name="StepsPerEpoch">Steps of the whole epoch as planned (the schedule's unit); 0 means the most minibatches of any worker.</param>
/// <param name="MidEpochResumable">True when a checkpoint inside this part resumes exactly (see <c>StartEpoch</c>).</param>
/// <param name="Part">Which part of the epoch: 0 for the first, counting up (<c>StartEpoch.Part</c>).</param>
/// <param name="KeepGlobalBatch">A lost worker ends the part for every worker after the open round (<c>StartEpoch.KeepGlobalBatch</c>).</param>
public sealed record EpochPart(int Epoch, bool[] Present, int[] BatchesPerWorker, int FirstRound, int StepsPerEpoch, bool MidEpochResumable,
    int Part = 0, bool KeepGlobalBatch = false)
{
    /// <summary>Worker slots, present or not.</summary>
    public int Workers => Present.Length;

    /// <summary>Workers taking part.</summary>
    public int ActiveWorkers => Present.Count(p => p);

    /// <summary>The epoch's planned steps: <see cref="StepsPerEpoch"/>, or the most minibatches of any worker (at least 1).</summary>
    public int PlannedSteps
    {
        get
        {
            if (StepsPerEpoch > 0) return StepsPerEpoch;
            var steps = 1;
            foreach (var batches in BatchesPerWorker) steps = Math.Max(steps, batches);
            return steps;
        }
    }

    /// <summary>The round after the part's last minibatch: the most of <see cref="BatchesPerWorker"/>, at least <see cref="FirstRound"/>.</summary>
    public int EndRound
    {
        get
        {
            var end = FirstRound;
            foreach (var batches in BatchesPerWorker) end = Math.Max(end, batches);
            return end;
        }
    }
}
