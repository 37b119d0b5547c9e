namespace DistTrain.Cluster.Metrics;

/// <summary>
/// Each worker's gradient reports over a run and the compute time they took, from the per-worker figures of each applied
/// step (<see cref="Hosting.ITrainingObserver.WorkersReported"/>), so that a slow worker shows as a longer mean compute
/// time per report. Thread-safe.
/// </summary>
public sealed class WorkerComputeTally
{
    private readonly List<(long Reports, double Seconds)> _workers = [];
    private readonly object _gate = new();

    /// <summary>Adds one step: by worker index, its mean loss (NaN without a report in the step) and compute seconds.</summary>
    /// <param name="losses">Each worker's mean loss in the step; NaN for a worker that sent no gradient.</param>
    /// <param name="computeSeconds">Each worker's compute time in the step, seconds (0 without a gradient).</param>
    public void Add(ReadOnlySpan<double> losses, ReadOnlySpan<double> computeSeconds)
    {
        lock (_gate)
            for (var i = 0; i < computeSeconds.Length; i++)
            {
                var reported = (i < losses.Length && !double.IsNaN(losses[i])) || computeSeconds[i] > 0;
                if (!reported) continue;
                while (_workers.Count <= i) _workers.Add((0, 0));
                _workers[i] = (_workers[i].Reports + 1, _workers[i].Seconds + computeSeconds[i]);
            }
    }

    /// <summary>
    /// By worker index: the gradient reports applied (one minibatch each; in LocalSgd one report covers LocalSteps
    /// minibatches), their summed compute time and the mean per report, seconds. Workers without a report are absent.
    /// </summary>
    public IReadOnlyList<WorkerCompute> Summarize()
    {
        lock (_gate)
            return _workers.Select((w, i) => new WorkerCompute(i, w.Reports, w.Seconds, w.Reports > 0 ? w.Seconds / w.Reports : 0))
                .Where(w => w.Reports > 0).ToList();
    }
}

/// <summary>One worker's gradient reports over a run (see <see cref="WorkerComputeTally"/>).</summary>
/// <param name="Worker">The worker index (the job's, as the parameter server's and the worker's logs name it).</param>
/// <param name="Reports">Gradient reports of the worker applied in steps.</param>
/// <param name="ComputeSeconds">Their summed compute time (forward and backward passes on the worker), seconds.</param>
/// <param name="MeanComputeSeconds">Compute seconds per report.</param>
public sealed record WorkerCompute(int Worker, long Reports, double ComputeSeconds, double MeanComputeSeconds);
