namespace DistTrain.Core.Optimization;

/// <summary>The update rule the parameter server applies; see <see cref="Optimizer.Create"/>.</summary>
public enum OptimizerKind
{
    /// <summary>Stochastic gradient descent with optional (Nesterov) momentum, as <c>torch.optim.SGD</c>.</summary>
    Sgd,

    /// <summary>Adam (Kingma &amp; Ba 2015) with coupled L2, as <c>torch.optim.Adam</c>.</summary>
    Adam,

    /// <summary>Adam with decoupled weight decay (Loshchilov &amp; Hutter 2019), as <c>torch.optim.AdamW</c>.</summary>
    AdamW,

    /// <summary>RMSProp (Hinton, Neural Networks for Machine Learning, lecture 6e), as <c>torch.optim.RMSprop</c>, not centered.</summary>
    RMSProp,
}

/// <summary>
/// Settings of the parameter server's <see cref="Optimizer"/> (configuration section <c>Optimizer</c>).
/// Names follow ML.NET; each update rule follows its <c>torch.optim</c> class.
/// </summary>
public sealed class OptimizerOptions
{
    /// <summary>Update rule; bound case-insensitively from <c>Sgd</c>, <c>Adam</c>, <c>AdamW</c>, <c>RMSProp</c>. Default <see cref="OptimizerKind.Sgd"/>.</summary>
    public OptimizerKind Kind { get; set; } = OptimizerKind.Sgd;

    /// <summary>
    /// Base step size η, in (0, 10]. The step's learning rate is this, times the number of workers when
    /// <see cref="ScaleLearningRateByWorkers"/> is on, shaped by <see cref="Schedule"/>. Default 0.01.
    /// </summary>
    public double LearningRate { get; set; } = 0.01;

    /// <summary>Momentum μ in [0, 1) for <see cref="OptimizerKind.Sgd"/> and <see cref="OptimizerKind.RMSProp"/>; 0 turns it off. Default 0.</summary>
    public double Momentum { get; set; }

    /// <summary>
    /// Nesterov momentum for <see cref="OptimizerKind.Sgd"/> (Sutskever et al. 2013, in <c>torch.optim.SGD</c>'s form
    /// <c>w ← w − η (g + μ v)</c>); needs <see cref="Momentum"/> &gt; 0. Default false.
    /// </summary>
    public bool Nesterov { get; set; }

    /// <summary>L1 strength λ₁ in [0, 1]: adds <c>λ₁ · sign(w)</c> to the gradient of decayed parameters, for every kind. Default 0.</summary>
    public double L1 { get; set; }

    /// <summary>
    /// L2 strength λ₂ in [0, 1], PyTorch's <c>weight_decay</c>. Sgd, Adam and RMSProp add <c>λ₂ · w</c> to the
    /// gradient (coupled); AdamW decays the weights directly, <c>w ← w − η λ₂ w</c>, before the Adam step
    /// (decoupled, Loshchilov &amp; Hutter 2019). Applies to decayed parameters only. Default 0.
    /// </summary>
    public double L2 { get; set; }

    /// <summary>
    /// Clip the averaged gradient to this global L2 norm before the update, once, at the parameter server
    /// (as <c>torch.nn.utils.clip_grad_norm_</c>); 0 turns clipping off. Default 0. With Cluster:Compression TopK each
    /// worker clips its own gradient instead, to this norm times N^(−1/2) (Deep Gradient Compression's local clipping;
    /// <see cref="Configuration.TrainingOptions.ClipsOnWorkers"/>).
    /// </summary>
    public double GradientClipNorm { get; set; }

    /// <summary>Adam's and AdamW's first-moment decay β₁ in [0, 1). Default 0.9 (Kingma &amp; Ba 2015).</summary>
    public double Beta1 { get; set; } = 0.9;

    /// <summary>Adam's and AdamW's second-moment decay β₂ in [0, 1). Default 0.999 (Kingma &amp; Ba 2015).</summary>
    public double Beta2 { get; set; } = 0.999;

    /// <summary>Term ε in (0, 0.1] added to the denominator of Adam, AdamW and RMSProp for numerical stability. Default 1e-8.</summary>
    public double Epsilon { get; set; } = 1e-8;

    /// <summary>RMSProp's smoothing constant α in [0, 1): the decay of the running mean of squared gradients. Default 0.99, as PyTorch.</summary>
    public double Alpha { get; set; } = 0.99;

    /// <summary>
    /// Apply L1 and L2 to biases and normalization scales and shifts too. Default false: by common
    /// practice they get no weight decay, since they do not add capacity the way weight matrices do.
    /// </summary>
    public bool DecayBiasAndNormParameters { get; set; }

    /// <summary>
    /// Linear scaling rule (Goyal et al. 2017, "Accurate, Large Minibatch SGD"): multiply the learning rate by
    /// the number of workers taking part in the epoch, since the synchronous step averages that many
    /// minibatches. Pair it with <see cref="LearningRateScheduleOptions.WarmupSteps"/>. In <c>Training:Mode</c> Async a
    /// step applies one worker's minibatch, so the rate is not multiplied there. Default false.
    /// </summary>
    public bool ScaleLearningRateByWorkers { get; set; }

    /// <summary>How the learning rate changes over the run (configuration sub-section <c>Optimizer:Schedule</c>).</summary>
    public LearningRateScheduleOptions Schedule { get; set; } = new();

    /// <summary>
    /// The settings the optimizer's state depends on, by configuration key, with their values in round-trip form:
    /// Sgd's momentum buffer is a sum decayed by Momentum; Adam's and AdamW's moments are decayed by Beta1 and Beta2 and
    /// bias-corrected with them, and Epsilon is scaled against their square roots; RMSProp's square average is decayed by
    /// Alpha, its momentum buffer by Momentum, with Epsilon as Adam's. Checkpoints record these, and a resume refuses a
    /// change to any of them (<see cref="Checkpoints.TrainingCheckpoint.HyperparameterChanges"/>). The learning rate, its
    /// schedule, L1, L2, clipping, Nesterov and the linear scaling rule shape each step but not the state's meaning, so
    /// they may change on resume.
    /// </summary>
    public IReadOnlyList<(string Key, string Value)> StateHyperparameters()
    {
        static (string, string) Entry(string key, double value) => (key, value.ToString("R", System.Globalization.CultureInfo.InvariantCulture));
        return Kind switch
        {
            OptimizerKind.Adam or OptimizerKind.AdamW => [Entry("Optimizer:Beta1", Beta1), Entry("Optimizer:Beta2", Beta2), Entry("Optimizer:Epsilon", Epsilon)],
            OptimizerKind.RMSProp => [Entry("Optimizer:Alpha", Alpha), Entry("Optimizer:Epsilon", Epsilon), Entry("Optimizer:Momentum", Momentum)],
            _ => [Entry("Optimizer:Momentum", Momentum)],
        };
    }

    /// <summary>A copy of these settings with <see cref="Momentum"/> 0 (the parameter server's, when the workers apply
    /// momentum under gradient compression's momentum correction).</summary>
    public OptimizerOptions WithoutMomentum()
    {
        var copy = (OptimizerOptions)MemberwiseClone();
        copy.Momentum = 0;
        copy.Nesterov = false;
        return copy;
    }

    /// <summary>A copy of these settings with <see cref="L1"/> and <see cref="L2"/> 0 (the parameter server's, when the workers add
    /// them to their gradients under gradient compression's momentum correction).</summary>
    public OptimizerOptions WithoutRegularization()
    {
        var copy = (OptimizerOptions)MemberwiseClone();
        copy.L1 = 0;
        copy.L2 = 0;
        return copy;
    }

    /// <summary>A copy of these settings with <see cref="GradientClipNorm"/> 0 (the parameter server's, when the workers clip their
    /// own gradients under TopK compression).</summary>
    public OptimizerOptions WithoutClipping()
    {
        var copy = (OptimizerOptions)MemberwiseClone();
        copy.GradientClipNorm = 0;
        return copy;
    }

    /// <summary>
    /// Settings changed from their defaults that <see cref="Kind"/> does not use, one line each naming the key, its value and
    /// the kinds that use it: Momentum (Sgd and RMSProp; Adam's and AdamW's first moment decays by Beta1 instead), Beta1 and
    /// Beta2 (Adam and AdamW), Epsilon (Adam, AdamW and RMSProp), Alpha (RMSProp). A value set to its default is not told
    /// from one left out, so it is not reported. The schedule's own are <see cref="LearningRateScheduleOptions.UnusedSettings"/>.
    /// </summary>
    public IEnumerable<string> UnusedSettings()
    {
        var defaults = new OptimizerOptions();
        var adam = Kind is OptimizerKind.Adam or OptimizerKind.AdamW;
        if (adam && Momentum > 0)
            yield return $"Optimizer:Momentum = {Ranges.Format(Momentum)} is not used by Optimizer:Kind {Kind}, whose " +
                $"first moment decays by Optimizer:Beta1 ({Ranges.Format(Beta1)}) instead. Remove Momentum, or set Kind Sgd to use it.";
        if (Beta1 != defaults.Beta1 && !adam) yield return Unused("Beta1", Beta1, "Adam or AdamW");
        if (Beta2 != defaults.Beta2 && !adam) yield return Unused("Beta2", Beta2, "Adam or AdamW");
        if (Epsilon != defaults.Epsilon && Kind == OptimizerKind.Sgd) yield return Unused("Epsilon", Epsilon, "Adam, AdamW or RMSProp");
        if (Alpha != defaults.Alpha && Kind != OptimizerKind.RMSProp) yield return Unused("Alpha", Alpha, "RMSProp");
    }

    private string Unused(string key, double value, string kinds) =>
        $"Optimizer:{key} = {Ranges.Format(value)} is not used by Optimizer:Kind {Kind}, only by {kinds}. Set Kind to {kinds}, or remove {key}.";

    /// <summary>
    /// Every setting outside its range, one line each naming the key (<c>Optimizer:Name</c>), the value and the
    /// allowed range; empty when valid. The configuration validator and <see cref="Optimizer"/> share it.
    /// </summary>
    public IReadOnlyList<string> Problems()
    {
        var problems = new List<string>();
        Ranges.Check(problems, "Optimizer:LearningRate", LearningRate, 0, 10, minExclusive: true);
        Ranges.Check(problems, "Optimizer:Momentum", Momentum, 0, 1, maxExclusive: true);
        Ranges.Check(problems, "Optimizer:L1", L1, 0, 1);
        Ranges.Check(problems, "Optimizer:L2", L2, 0, 1);
        Ranges.Check(problems, "Optimizer:GradientClipNorm", GradientClipNorm, 0, 1e9);
        Ranges.Check(problems, "Optimizer:Beta1", Beta1, 0, 1, maxExclusive: true);
        Ranges.Check(problems, "Optimizer:Beta2", Beta2, 0, 1, maxExclusive: true);
        Ranges.Check(problems, "Optimizer:Epsilon", Epsilon, 0, 0.1, minExclusive: true);
        Ranges.Check(problems, "Optimizer:Alpha", Alpha, 0, 1, maxExclusive: true);
        if (!Enum.IsDefined(Kind))
            problems.Add($"Optimizer:Kind = {(int)Kind} is unknown: allowed {string.Join(", ", Enum.GetNames<OptimizerKind>())}.");
        if (Nesterov && (Kind != OptimizerKind.Sgd || !(Momentum > 0)))
            problems.Add($"Optimizer:Nesterov = true is not allowed here: it needs Optimizer:Kind Sgd and Optimizer:Momentum in (0, 1); got Kind {Kind} and Momentum {Ranges.Format(Momentum)}.");
        problems.AddRange(Schedule.Problems(LearningRate));
        return problems;
    }
}
