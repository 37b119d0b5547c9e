using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.Training;

/// <summary>What an evaluation result did to the plan.</summary>
public enum EvaluationOutcome
{
    /// <summary>Recorded; more results are awaited.</summary>
    Pending,

    /// <summary>Recorded; every range of every split is scored.</summary>
    Complete,

    /// <summary>A second result for a range already scored (or never asked for): ignored.</summary>
    Duplicate,
}

/// <summary>
/// One epoch's evaluation: the test split (and the validation split, when the run holds one out) cut into contiguous,
/// disjoint ranges, one per worker that holds the epoch's weights; ranges of a lost worker go to the others; the scores
/// add up, and the scored ranges must tile each split exactly once.
/// </summary>
/// <remarks>
/// A split of fewer samples than workers leaves some workers no range: only non-empty ranges are sent, so no two ranges
/// start at the same sample and a result is matched to its range by its start alone. A split of no samples sends nothing.
/// </remarks>
public sealed class EvaluationPlan
{
    /// <summary>One range sent to a worker; sent again to another worker if that one is lost first.</summary>
    private sealed class Request(int worker, Evaluate evaluate)
    {
        public int Worker { get; set; } = worker;
        public Evaluate Evaluate { get; } = evaluate;
        public bool Done { get; set; }
    }

    private readonly List<Request> _requests = [];
    private readonly List<(int Start, int Count)>[] _scored = [[], []]; // by EvaluationSplit
    private readonly int[] _correct = new int[2];
    private readonly double[] _loss = new double[2];

    /// <summary>The weights version being scored.</summary>
    public long Version { get; private set; } = -1;

    /// <summary>Ranges not scored yet.</summary>
    public int Pending { get; private set; }

    /// <summary>
    /// Starts the evaluation of <paramref name="version"/>: <c>[0, testCount)</c> and <c>[0, validationCount)</c> split evenly
    /// over <paramref name="workers"/> (workers whose share would be empty get none). Returns what to send to whom; nothing,
    /// and <see cref="Pending"/> 0, when both splits are empty (training refuses an empty test split before it starts).
    /// </summary>
    public IReadOnlyList<(int Worker, Evaluate Request)> Begin(long version, int testCount, int validationCount, int[] workers)
    {
        Version = version;
        Pending = 0;
        _requests.Clear();
        foreach (var ranges in _scored) ranges.Clear();
        Array.Clear(_correct);
        Array.Clear(_loss);
        var sends = new List<(int, Evaluate)>();
        Split(EvaluationSplit.Test, testCount, workers, sends);
        if (validationCount > 0) Split(EvaluationSplit.Validation, validationCount, workers, sends);
        return sends;
    }

    private void Split(EvaluationSplit split, int total, int[] workers, List<(int, Evaluate)> sends)
    {
        for (var j = 0; j < workers.Length; j++)
        {
            var start = (int)((long)total * j / workers.Length);
            var end = (int)((long)total * (j + 1) / workers.Length);
            if (end == start) continue; // more workers than samples: this one scores nothing
            var request = new Request(workers[j], new Evaluate(Version, start, end - start, split));
            _requests.Add(request);
            sends.Add((workers[j], request.Evaluate));
            Pending++;
        }
    }

    /// <summary>True when a worker that is not alive (<paramref name="isAlive"/> false) holds ranges not scored yet.</summary>
    public bool HasOrphaned(Func<int, bool> isAlive) => _requests.Any(r => !r.Done && !isAlive(r.Worker));

    /// <summary>
    /// The unanswered ranges of every worker not alive (<paramref name="isAlive"/> false), given round-robin to
    /// <paramref name="workers"/>; returns what to send to whom. Collected when called, so every worker lost before then
    /// (during a pause, say) is covered.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="workers"/> is empty.</exception>
    public IReadOnlyList<(int Worker, Evaluate Request)> Reassign(Func<int, bool> isAlive, int[] workers)
    {
        if (workers.Length == 0) throw new ArgumentException("No worker is left to score the lost workers' ranges.", nameof(workers));
        var orphaned = _requests.Where(r => !r.Done && !isAlive(r.Worker)).ToList();
        var sends = new List<(int, Evaluate)>();
        for (var k = 0; k < orphaned.Count; k++)
        {
            orphaned[k].Worker = workers[k % workers.Length];
            sends.Add((orphaned[k].Worker, orphaned[k].Evaluate));
        }
        return sends;
    }

    /// <summary>Records a result whose version and split were checked (<see cref="Problem"/>).</summary>
    public EvaluationOutcome Record(EvaluationResult result)
    {
        var split = (int)result.Split;
        var request = _requests.FirstOrDefault(e => !e.Done && (int)e.Evaluate.Split == split && e.Evaluate.Start == result.Start);
        if (request is null) return EvaluationOutcome.Duplicate;
        request.Done = true;
        _scored[split].Add((result.Start, result.SampleCount));
        _correct[split] += result.Correct;
        _loss[split] += result.LossSum;
        return --Pending > 0 ? EvaluationOutcome.Pending : EvaluationOutcome.Complete;
    }

    /// <summary>Why <paramref name="result"/> cannot be part of this evaluation (another version, an unknown split); null when it can.</summary>
    public string? Problem(EvaluationResult result)
    {
        if (Version < 0 || result.Version != Version)
            return $"Worker {result.WorkerIndex} scored weights version {result.Version}, but version {(Version < 0 ? "(none)" : Version)} was requested.";
        if ((int)result.Split >= _scored.Length) return $"Worker {result.WorkerIndex} scored an unknown split {(int)result.Split}.";
        return null;
    }

    /// <summary>The scored ranges of <paramref name="split"/> must tile <c>[0, total)</c> with no gap and no overlap; the problem, or null.</summary>
    public string? Coverage(EvaluationSplit split, int total)
    {
        var next = 0;
        foreach (var (start, count) in _scored[(int)split].OrderBy(r => r.Start))
        {
            if (start != next)
                return $"Evaluation scored {split} samples [{start}, {start + count}) after [0, {next}): {(start < next ? "an overlap" : "a gap")}.";
            next = start + count;
        }
        return next == total ? null : $"Evaluation scored {next} {split} samples, expected {total}.";
    }

    /// <summary>Samples of <paramref name="split"/> classified correctly.</summary>
    public int Correct(EvaluationSplit split) => _correct[(int)split];

    /// <summary>Summed loss over <paramref name="split"/>.</summary>
    public double LossSum(EvaluationSplit split) => _loss[(int)split];
}
