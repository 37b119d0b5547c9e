namespace DistTrain.Core.Optimization;

/// <summary>The shape of the learning rate over the run; see <see cref="LearningRateSchedule"/>.</summary>
public enum LearningRateScheduleKind
{
    /// <summary>The base learning rate throughout.</summary>
    Constant,

    /// <summary>Multiplied by γ every <see cref="LearningRateScheduleOptions.StepEpochs"/> epochs, as <c>torch.optim.lr_scheduler.StepLR</c> stepped per epoch.</summary>
    Step,

    /// <summary>Multiplied by γ every epoch, as <c>torch.optim.lr_scheduler.ExponentialLR</c> stepped per epoch.</summary>
    Exponential,

    /// <summary>Cosine annealing to the minimum over the run's steps, as <c>torch.optim.lr_scheduler.CosineAnnealingLR</c>'s closed form stepped per step (Loshchilov &amp; Hutter 2017, SGDR, without restarts).</summary>
    Cosine,
}

/// <summary>Settings of the learning-rate schedule (configuration section <c>Optimizer:Schedule</c>).</summary>
public sealed class LearningRateScheduleOptions
{
    /// <summary>Shape of the main schedule; bound case-insensitively. Default <see cref="LearningRateScheduleKind.Constant"/>.</summary>
    public LearningRateScheduleKind Kind { get; set; } = LearningRateScheduleKind.Constant;

    /// <summary><see cref="LearningRateScheduleKind.Step"/>: epochs between decays (torch's <c>step_size</c>), 1 to 10,000. Default 30.</summary>
    public int StepEpochs { get; set; } = 30;

    /// <summary>Decay factor γ in (0, 1] per <see cref="StepEpochs"/> epochs (Step) or per epoch (Exponential). Default 0.1.</summary>
    public double Gamma { get; set; } = 0.1;

    /// <summary><see cref="LearningRateScheduleKind.Cosine"/>: the rate reached at the end of the run (torch's <c>eta_min</c>), in [0, base learning rate]. Default 0.</summary>
    public double MinLearningRate { get; set; }

    /// <summary>Optimizer steps of linear warmup from the start of the run, 0 to 1e9; 0 (default) turns warmup off.</summary>
    public int WarmupSteps { get; set; }

    /// <summary>Warmup's first factor (torch <c>LinearLR</c>'s <c>start_factor</c>) in (0, 1]: step 0 uses this times the scheduled rate. Default 0.1.</summary>
    public double WarmupStartFactor { get; set; } = 0.1;

    /// <summary>
    /// Settings changed from their defaults that <see cref="Kind"/> does not use, one line each naming the key, its value and
    /// the kinds that use it (Gamma: Step and Exponential; StepEpochs: Step; MinLearningRate: Cosine), and WarmupStartFactor
    /// with WarmupSteps 0, which turns warmup off. A value set to its default is not told from one left out, so it is not reported.
    /// </summary>
    public IEnumerable<string> UnusedSettings()
    {
        var defaults = new LearningRateScheduleOptions();
        if (Gamma != defaults.Gamma && Kind is not (LearningRateScheduleKind.Step or LearningRateScheduleKind.Exponential))
            yield return Unused("Gamma", Gamma, "Step or Exponential");
        if (StepEpochs != defaults.StepEpochs && Kind != LearningRateScheduleKind.Step)
            yield return Unused("StepEpochs", StepEpochs, "Step");
        if (MinLearningRate != defaults.MinLearningRate && Kind != LearningRateScheduleKind.Cosine)
            yield return Unused("MinLearningRate", MinLearningRate, "Cosine");
        if (WarmupStartFactor != defaults.WarmupStartFactor && WarmupSteps == 0)
            yield return $"Optimizer:Schedule:WarmupStartFactor = {WarmupStartFactor.ToString(System.Globalization.CultureInfo.InvariantCulture)} is not used: " +
                "Optimizer:Schedule:WarmupSteps is 0, which turns warmup off. Set WarmupSteps to the steps the warmup lasts (such as 100), or remove WarmupStartFactor.";
    }

    private string Unused(string key, double value, string kinds) =>
        $"Optimizer:Schedule:{key} = {value.ToString(System.Globalization.CultureInfo.InvariantCulture)} is not used by Optimizer:Schedule:Kind {Kind}, only by {kinds}. " +
        $"Set Kind to {kinds}, or remove {key}.";

    /// <summary>Every setting outside its range, one line each naming the key, the value and the allowed range.</summary>
    /// <param name="baseLearningRate">The optimizer's base learning rate, the upper bound of <see cref="MinLearningRate"/>.</param>
    public IReadOnlyList<string> Problems(double baseLearningRate)
    {
        var problems = new List<string>();
        if (!Enum.IsDefined(Kind))
            problems.Add($"Optimizer:Schedule:Kind = {(int)Kind} is unknown: allowed {string.Join(", ", Enum.GetNames<LearningRateScheduleKind>())}.");
        Ranges.Check(problems, "Optimizer:Schedule:StepEpochs", StepEpochs, 1, 10_000);
        Ranges.Check(problems, "Optimizer:Schedule:Gamma", Gamma, 0, 1, minExclusive: true);
        Ranges.Check(problems, "Optimizer:Schedule:MinLearningRate", MinLearningRate, 0, double.IsFinite(baseLearningRate) && baseLearningRate > 0 ? baseLearningRate : 0);
        Ranges.Check(problems, "Optimizer:Schedule:WarmupSteps", WarmupSteps, 0, 1e9);
        Ranges.Check(problems, "Optimizer:Schedule:WarmupStartFactor", WarmupStartFactor, 0, 1, minExclusive: true);
        return problems;
    }
}

/// <summary>Where an optimizer step sits in the run, as <see cref="LearningRateSchedule.At"/> reads it.</summary>
/// <param name="OptimizerStep">Optimizer steps applied before this one since the start of the run (the weights version
/// it updates), ≥ 0. Warmup counts these, so it is continuous across worker joins, losses and resumes.</param>
/// <param name="Epoch">0-based epoch, ≥ 0 (Step and Exponential decay by epoch).</param>
/// <param name="StepInEpoch">0-based step within the epoch, ≥ 0; steps past <paramref name="StepsPerEpoch"/> (a further
/// part of an epoch after a lost worker) count as the epoch's end.</param>
/// <param name="StepsPerEpoch">Optimizer steps this epoch was planned with (the most minibatches any worker has), ≥ 1.</param>
public readonly record struct SchedulePosition(long OptimizerStep, int Epoch, int StepInEpoch, int StepsPerEpoch)
{
    /// <summary>The position of global step <paramref name="step"/> in a run whose every epoch has <paramref name="stepsPerEpoch"/> steps.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="step"/> is negative or <paramref name="stepsPerEpoch"/> below 1.</exception>
    public static SchedulePosition Uniform(long step, int stepsPerEpoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        ArgumentOutOfRangeException.ThrowIfLessThan(stepsPerEpoch, 1);
        return new(step, (int)(step / stepsPerEpoch), (int)(step % stepsPerEpoch), stepsPerEpoch);
    }
}

/// <summary>
/// The learning rate of every optimizer step: a main schedule (<see cref="LearningRateScheduleKind"/>) times an
/// optional linear warmup, as <c>torch.optim.lr_scheduler.ChainedScheduler([LinearLR, main])</c>.
/// </summary>
/// <remarks>
/// A pure function of the step's position (<see cref="SchedulePosition"/>), so a resumed run gets the same rate as an
/// uninterrupted one. The rate is <c>warmup(t) · main(epoch, p)</c> where <c>t</c> is the optimizer step and
/// <c>p = (epoch + min(stepInEpoch, S) / S) / totalEpochs</c> the fraction of the run's epochs done (S = the epoch's
/// planned steps):
/// <list type="bullet">
/// <item><c>warmup(t) = f₀ + (1 − f₀) · min(t, W) / W</c> (<c>LinearLR(start_factor = f₀, total_iters = W)</c>; 1 when W = 0);</item>
/// <item>Constant: <c>η</c>; Step: <c>η · γ^⌊epoch / StepEpochs⌋</c> (<c>StepLR</c>); Exponential: <c>η · γ^epoch</c> (<c>ExponentialLR</c>);</item>
/// <item>Cosine: <c>η_min + (η − η_min)(1 + cos(π p)) / 2</c> (<c>CosineAnnealingLR</c>'s closed form, <c>T_max</c> = the run's steps).</item>
/// </list>
/// When every epoch has the same S, <c>t = epoch · S + stepInEpoch</c> and <c>p = t / (totalEpochs · S)</c>, exactly
/// torch's per-step schedule. When S changes (workers join or are lost with Training:KeepGlobalBatch off), warmup goes
/// on counting optimizer steps and the cosine follows the fraction of epochs done, so neither jumps back: at an epoch
/// boundary <c>p</c> is the same under the old and the new S.
/// torch's chained schedulers update recursively; for Constant, Step, Exponential, and Cosine with
/// <c>η_min = 0</c>, that recursion equals this product exactly; for Cosine with <c>η_min &gt; 0</c> and warmup,
/// torch's recursion drifts from its own closed form, and this class keeps the closed form.
/// </remarks>
public sealed class LearningRateSchedule
{
    private readonly LearningRateScheduleKind _kind;
    private readonly int _stepEpochs;
    private readonly double _gamma;
    private readonly double _minLearningRate;
    private readonly int _warmupSteps;
    private readonly double _warmupStartFactor;

    /// <summary>Creates the schedule.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A setting is outside its range; the message names it (see <see cref="LearningRateScheduleOptions.Problems"/>).</exception>
    public LearningRateSchedule(LearningRateScheduleOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = options.Problems(baseLearningRate: 10); // the largest Optimizer:LearningRate; the optimizer checks the real bound
        if (problems.Count > 0) throw new ArgumentOutOfRangeException(nameof(options), string.Join(" ", problems));
        _kind = options.Kind;
        _stepEpochs = options.StepEpochs;
        _gamma = options.Gamma;
        _minLearningRate = options.MinLearningRate;
        _warmupSteps = options.WarmupSteps;
        _warmupStartFactor = options.WarmupStartFactor;
    }

    /// <summary>The learning rate of one optimizer step.</summary>
    /// <param name="position">Where the step sits in the run.</param>
    /// <param name="totalEpochs">Epochs of the run, ≥ 1 (Cosine anneals over all of them).</param>
    /// <param name="baseLearningRate">η, the rate the schedule shapes (already scaled by the worker count when that is on).</param>
    /// <returns>The rate, same unit as <paramref name="baseLearningRate"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException">A position is negative, or a count is below 1.</exception>
    public double At(SchedulePosition position, int totalEpochs, double baseLearningRate)
    {
        var (optimizerStep, epoch, stepInEpoch, stepsPerEpoch) = position;
        ArgumentOutOfRangeException.ThrowIfNegative(optimizerStep);
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        ArgumentOutOfRangeException.ThrowIfNegative(stepInEpoch);
        ArgumentOutOfRangeException.ThrowIfLessThan(stepsPerEpoch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(totalEpochs, 1);
        var rate = _kind switch
        {
            LearningRateScheduleKind.Step => baseLearningRate * Math.Pow(_gamma, epoch / _stepEpochs),
            LearningRateScheduleKind.Exponential => baseLearningRate * Math.Pow(_gamma, epoch),
            // Written as t / T over this epoch's steps, so a run with equal epochs rounds as torch's per-step form does.
            LearningRateScheduleKind.Cosine => _minLearningRate + (baseLearningRate - _minLearningRate)
                * (1 + Math.Cos(Math.PI * ((long)epoch * stepsPerEpoch + Math.Min(stepInEpoch, stepsPerEpoch)) / ((double)totalEpochs * stepsPerEpoch))) / 2,
            _ => baseLearningRate,
        };
        if (_warmupSteps > 0)
            rate *= _warmupStartFactor + (1 - _warmupStartFactor) * Math.Min(optimizerStep, _warmupSteps) / _warmupSteps;
        return rate;
    }

    /// <summary>A short description for logs, such as <c>Cosine to 0.001 after 500 warmup steps from 0.1×</c>, <c>Step ×0.5 every
    /// epoch</c> or <c>Constant after 100,000 warmup steps from 0.1×</c> (counts with thousands separators, <see cref="Counts"/>).</summary>
    public static string Describe(LearningRateScheduleOptions options)
    {
        var main = options.Kind switch
        {
            LearningRateScheduleKind.Step => $"Step ×{Ranges.Format(options.Gamma)} every {(options.StepEpochs == 1 ? "epoch" : Counts.Of(options.StepEpochs, "epoch"))}",
            LearningRateScheduleKind.Exponential => $"Exponential ×{Ranges.Format(options.Gamma)} per epoch",
            LearningRateScheduleKind.Cosine => $"Cosine to {Ranges.Format(options.MinLearningRate)}",
            _ => "Constant",
        };
        return options.WarmupSteps > 0 ? $"{main} after {Counts.Of(options.WarmupSteps, "warmup step")} from {Ranges.Format(options.WarmupStartFactor)}×" : main;
    }
}
