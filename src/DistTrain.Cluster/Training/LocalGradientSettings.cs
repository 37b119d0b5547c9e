using DistTrain.Core.Configuration;

namespace DistTrain.Cluster.Training;

/// <summary>
/// What each worker does to its gradient before Cluster:Compression TopK encodes it, Deep Gradient Compression's worker side
/// (Lin et al., "Deep Gradient Compression", ICLR 2018): local gradient clipping (section 3.3) and, under momentum correction
/// (section 3.2), the L1 and L2 terms, so that they pass through the workers' momentum as they pass through the parameter
/// server's without compression. The parameter server then neither clips nor regularizes
/// (<see cref="TrainingOptions.ParameterServerOptimizer"/>).
/// </summary>
/// <param name="ClipNorm">Optimizer:GradientClipNorm, the global threshold; 0: no clipping. Each push is clipped by its global
/// L2 norm to <see cref="LocalClipNorm"/>.</param>
/// <param name="L1">λ₁ the worker adds as <c>λ₁ sign(w)</c> (Optimizer:L1); 0 under no momentum correction.</param>
/// <param name="L2">λ₂ the worker adds as <c>λ₂ w</c> (Optimizer:L2); 0 under no momentum correction.</param>
/// <param name="DecayBiasAndNormParameters">Optimizer:DecayBiasAndNormParameters: whether L1 and L2 cover biases and
/// normalization parameters too, as at the parameter server.</param>
public sealed record LocalGradientSettings(double ClipNorm, double L1, double L2, bool DecayBiasAndNormParameters)
{
    /// <summary>The settings of a run, or null when its workers clip and regularize nothing (no TopK, or neither
    /// <see cref="TrainingOptions.ClipsOnWorkers"/> nor <see cref="TrainingOptions.RegularizesOnWorkers"/>).</summary>
    public static LocalGradientSettings? Of(TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!options.ClipsOnWorkers && !options.RegularizesOnWorkers) return null;
        var optimizer = options.Optimizer;
        return options.RegularizesOnWorkers
            ? new LocalGradientSettings(options.ClipsOnWorkers ? optimizer.GradientClipNorm : 0, optimizer.L1, optimizer.L2, optimizer.DecayBiasAndNormParameters)
            : new LocalGradientSettings(optimizer.GradientClipNorm, 0, 0, false);
    }

    /// <summary>True when the worker adds L1 or L2.</summary>
    public bool Regularizes => L1 > 0 || L2 > 0;

    /// <summary>
    /// The norm one worker's gradient is clipped to: <c>ClipNorm · N^(−1/2)</c> for <paramref name="workersPerStep"/> = N
    /// gradients averaged into one step, DGC's scaling (section 3.3 and appendix: each worker's share of the global threshold if
    /// the N gradients had identical Gaussian distributions). 0 when clipping is off.
    /// </summary>
    /// <param name="workersPerStep">Gradients one step combines: the workers of a Sync or BoundedStaleness round, 1 in Async;
    /// values below 1 count as 1.</param>
    public double LocalClipNorm(int workersPerStep) => ClipNorm <= 0 ? 0 : ClipNorm / Math.Sqrt(Math.Max(1, workersPerStep));
}
