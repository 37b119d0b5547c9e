using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Checkpoints;

namespace DistTrain.Cluster.Training;

/// <summary>Where a checkpoint written now resumes, and what of its epoch it already trained.</summary>
/// <param name="Epoch">1-based epoch of the next minibatch (after an epoch's end: the next epoch).</param>
/// <param name="Round">Round of the next minibatch (0 after an epoch's end).</param>
/// <param name="EpochSamples">Samples of <paramref name="Epoch"/> already trained.</param>
/// <param name="EpochLossSum">Their summed loss.</param>
/// <param name="Workers">Worker slots the epoch was planned for.</param>
/// <param name="TrainedAhead">Minibatches (round, shard) at or after <paramref name="Round"/> already trained (asynchronous
/// mode), which a resume skips; empty otherwise.</param>
public sealed record CheckpointPosition(int Epoch, int Round, int EpochSamples, double EpochLossSum, int Workers,
    IReadOnlyList<(int Round, int Shard)> TrainedAhead);

/// <summary>
/// How the parameter server turns the workers' reports into steps: which reports a step waits for, how they are combined,
/// and when weights go out, to whom. One class per <see cref="Core.Configuration.TrainingMode"/>; no Akka in any of them.
/// The actor calls <see cref="Start"/>, <see cref="Accept"/> and <see cref="RemoveWorker"/> as messages arrive, and sends
/// what the policy asks for through <see cref="IServerOutput"/>.
/// </summary>
/// <remarks>
/// This base class keeps what every mode shares: the part of the epoch running, its trained samples and loss (a resumed
/// checkpoint's partial epoch included), the end of a part, the checkpoint rule and the divergence report.
/// </remarks>
public abstract class UpdatePolicy
{
    /// <summary>Most worker slots a part may have (the validated range of Training:Workers).</summary>
    public const int MaxWorkers = 256;

    private readonly int _checkpointEverySteps; // -1: no checkpoints
    private TrainingCheckpoint? _resumeFrom;     // until the epoch it resumes starts
    private CheckpointPosition? _dueCheckpoint;
    private bool _momentumAdviceGiven;

    /// <summary>Creates the policy.</summary>
    /// <param name="model">The master weights and optimizer.</param>
    /// <param name="outbox">The loaned weights messages.</param>
    /// <param name="output">Where decisions go.</param>
    /// <param name="wire">Message lengths of the mode.</param>
    /// <param name="checkpointEverySteps">Checkpoint:EverySteps; -1 when no checkpoints are written.</param>
    /// <param name="resumeFrom">The checkpoint the run resumes from, or null.</param>
    protected UpdatePolicy(ServerModel model, WeightsOutbox outbox, IServerOutput output, WireLayout wire, int checkpointEverySteps,
        TrainingCheckpoint? resumeFrom)
    {
        Model = model;
        Outbox = outbox;
        Output = output;
        Warn = output.Warning;
        Wire = wire;
        _checkpointEverySteps = checkpointEverySteps;
        _resumeFrom = resumeFrom;
    }

    /// <summary>The master weights and optimizer.</summary>
    public ServerModel Model { get; }

    /// <summary>The loaned weights messages.</summary>
    protected WeightsOutbox Outbox { get; }

    /// <summary>Where decisions go.</summary>
    protected IServerOutput Output { get; }

    /// <summary>Message lengths of the mode.</summary>
    protected WireLayout Wire { get; }

    /// <summary><see cref="IServerOutput.Warning"/> as a delegate made once (a method group converted per step would allocate).</summary>
    protected Action<string> Warn { get; }

    /// <summary>The part running, or null before the first.</summary>
    public EpochPart? Part { get; private set; }

    /// <summary>Samples of the epoch trained so far (a resumed checkpoint's included).</summary>
    public int EpochSamples { get; protected set; }

    /// <summary>Their summed loss.</summary>
    public double EpochLossSum { get; protected set; }

    /// <summary>True while a checkpoint inside this part resumes exactly: the part allows it and no worker was lost since.</summary>
    protected bool MidEpochResumable { get; private set; }

    /// <summary>The minibatches a resumed checkpoint had trained ahead of its round, for the part it resumes; else empty.</summary>
    protected IReadOnlyList<(int Round, int Shard)> ResumedAhead { get; private set; } = [];

    /// <summary>
    /// A first step's mean loss at or above this is astronomical: no usual loss starts there (cross-entropy at chance is ln C,
    /// a mean squared error of standardized targets about 1), only weights initialized far too large, so a divergence
    /// after such a first step names Model:Initializer.
    /// </summary>
    public const double AstronomicalLoss = 1e10;

    private double? _firstStepLoss; // this run's first step's mean loss, once it is applied
    private (int Samples, double LossSum)? _beforeFirstStep; // the epoch's totals before this run's first step (a resumed epoch's)

    /// <summary>Starts a part of an epoch: resets the epoch's totals (or takes over a resumed checkpoint's), then the mode starts it.</summary>
    public void Start(EpochPart part)
    {
        ArgumentNullException.ThrowIfNull(part);
        Part = part;
        EpochSamples = 0;
        EpochLossSum = 0;
        ResumedAhead = [];
        if (_resumeFrom is { } resumed && resumed.Epoch == part.Epoch && resumed.Round == part.FirstRound)
        {
            // The rounds before the checkpoint ran before the interruption: their samples and loss count in this epoch.
            EpochSamples = resumed.EpochSamples;
            EpochLossSum = resumed.EpochLossSum;
            // A further part (an epoch resumed with fewer workers than its plan) holds other minibatches: the coordinator
            // left the ones trained ahead out of it (EpochPlan.ResumeWithFewerWorkers).
            ResumedAhead = part.Part == 0 ? resumed.TrainedAhead : [];
        }
        _resumeFrom = null;
        if (_firstStepLoss is null) _beforeFirstStep = (EpochSamples, EpochLossSum);
        MidEpochResumable = part.MidEpochResumable;
        _dueCheckpoint = null;
        OnStart(part);
    }

    /// <summary>
    /// Warns once per run with the text <paramref name="advice"/> gives for Optimizer:Momentum, if any: for the optimizers
    /// whose momentum that is (SGD and RMSProp; Adam's and AdamW's first moment is Beta1's).
    /// </summary>
    /// <param name="advice">The mode's warning for a momentum, or null when none is due.</param>
    protected void AdviseOnMomentum(Func<double, string?> advice)
    {
        ArgumentNullException.ThrowIfNull(advice);
        if (_momentumAdviceGiven || Model.Options.Kind is not (Core.Optimization.OptimizerKind.Sgd or Core.Optimization.OptimizerKind.RMSProp)) return;
        if (advice(Model.Options.Momentum) is not { } text) return;
        _momentumAdviceGiven = true;
        Output.Warning(text);
    }

    /// <summary>Starts the part in the mode's way: the first weights go out.</summary>
    protected abstract void OnStart(EpochPart part);

    /// <summary>
    /// A report from worker <c>report.WorkerIndex</c> (the actor checked that index and the sender). Applies it when it is
    /// valid, or returns why it is rejected: a rejected report is never applied, and whatever waits for it keeps waiting.
    /// </summary>
    public string? Accept(GradientComputed report)
    {
        ArgumentNullException.ThrowIfNull(report);
        if (Part is null) return "no epoch is running";
        if (report.WorkerIndex < 0 || report.WorkerIndex >= Part.Workers) return $"worker index {report.WorkerIndex} is outside 0..{Part.Workers - 1}";
        var problem = Problem(report);
        if (problem is not null) return problem;
        if (report.Gradient.Length != Wire.ReportLength)
            return $"it has {report.Gradient.Length} elements, the model reports {Wire.ReportLength} ({ReportContents})";
        if (report.SampleCount <= 0) return $"its sample count is {report.SampleCount}";
        Apply(report);
        return null;
    }

    /// <summary>What a report holds, for the length message.</summary>
    protected virtual string ReportContents => "trainable gradients, then running statistics";

    /// <summary>Why <paramref name="report"/> does not fit what the mode expects now (epoch, round, version, duplicates); null when it does.</summary>
    protected abstract string? Problem(GradientComputed report);

    /// <summary>Applies a valid report.</summary>
    protected abstract void Apply(GradientComputed report);

    /// <summary>
    /// Worker <paramref name="index"/> is gone. The mode stops waiting for it and tells the coordinator (through
    /// <see cref="IServerOutput"/>) which of its work is left, before anything that ends the part.
    /// </summary>
    public void RemoveWorker(int index)
    {
        if (Part is null || index < 0 || index >= Part.Workers)
        {
            Output.WorkerRemoved(new WorkerRemoved(index, 0));
            return;
        }
        MidEpochResumable = false;
        OnRemoveWorker(index);
    }

    /// <summary>The mode's handling of a lost worker (see <see cref="RemoveWorker"/>).</summary>
    protected abstract void OnRemoveWorker(int index);

    /// <summary>The part is over: its last weights went out. Reports the epoch's totals and the regularization terms.</summary>
    protected void CompletePart()
    {
        var (l1, l2) = Model.RegularizationPenalties();
        Output.PartCompleted(new EpochCompleted(Part!.Epoch, Model.Version, EpochSamples, EpochLossSum, l1, l2));
    }

    /// <summary>
    /// After a step from <paramref name="previousVersion"/> to the current version: a checkpoint is due at the end of an
    /// epoch, or when the version crossed a multiple of Checkpoint:EverySteps inside a part where that resumes exactly.
    /// </summary>
    /// <param name="previousVersion">The version before the step.</param>
    /// <param name="nextRound">The position after the step.</param>
    /// <param name="epochDone">The step was the epoch's last (no further part follows).</param>
    /// <param name="resumableHere">The mode can resume exactly at <paramref name="nextRound"/> now.</param>
    /// <param name="trainedAhead">Minibatches at or after <paramref name="nextRound"/> already trained.</param>
    protected void AfterStep(long previousVersion, int nextRound, bool epochDone, bool resumableHere = true,
        IReadOnlyList<(int Round, int Shard)>? trainedAhead = null)
    {
        if (_firstStepLoss is null && _beforeFirstStep is { } before && EpochSamples > before.Samples)
            _firstStepLoss = (EpochLossSum - before.LossSum) / (EpochSamples - before.Samples);
        if (_checkpointEverySteps < 0) return;
        var every = _checkpointEverySteps;
        var crossed = every > 0 && Model.Version / every > previousVersion / every;
        // A checkpoint already due from an earlier step of the same message would be written after this step, of these
        // weights: its position must move on with them (one report can complete several rounds in BoundedStaleness).
        var earlierDue = _dueCheckpoint is not null;
        if (!epochDone && !(MidEpochResumable && resumableHere && (crossed || earlierDue)))
        {
            _dueCheckpoint = null; // not resumable exactly here: the next crossing writes one
            return;
        }
        var part = Part!;
        _dueCheckpoint = epochDone
            ? new CheckpointPosition(part.Epoch + 1, 0, 0, 0, part.Workers, [])
            : new CheckpointPosition(part.Epoch, nextRound, EpochSamples, EpochLossSum, part.Workers, trainedAhead ?? []);
    }

    /// <summary>
    /// The whole averaged gradient's norm, which a parameter-server shard that clips by it waits for after giving its part
    /// (<see cref="IServerOutput.ShardSquaredNorm"/>): the step it holds back is applied now.
    /// </summary>
    /// <exception cref="InvalidOperationException">No step waits for the norm.</exception>
    public virtual void ApplyGlobalNorm(double norm) =>
        throw new InvalidOperationException($"{GetType().Name} has no step waiting for the gradient norm.");

    /// <summary>A copy of the weights this policy sent out as <paramref name="version"/>, if it still holds them (<see cref="WeightsOutbox.Published"/>).</summary>
    public float[]? PublishedWeights(long version) => Outbox.Published(version);

    /// <summary>The checkpoint due after the message just handled, once; null when none is.</summary>
    public CheckpointPosition? TakeDueCheckpoint()
    {
        var due = _dueCheckpoint;
        _dueCheckpoint = null;
        return due;
    }

    /// <summary>
    /// Stops training: names the epoch, the step, the workers whose loss or report is not finite and the first tensor
    /// that is not, and hands over the last good weights (those before the version the bad reports were computed on). The
    /// advice names Model:Initializer when the reports were computed on the starting weights, or when this run's first step
    /// had a loss of <see cref="AstronomicalLoss"/> or more; the learning rate, clipping and input normalization otherwise.
    /// </summary>
    /// <param name="what">What was not finite.</param>
    /// <param name="step">The epoch's step (round), from 0; the message counts from 1.</param>
    /// <param name="computedOn">The version the reports were computed on.</param>
    /// <param name="reports">The reports, by worker.</param>
    /// <param name="lossFiniteOnIt">True when the loss computed on <paramref name="computedOn"/> was finite (the result of
    /// combining the reports was not): its weights are then good, should no earlier ones be held.</param>
    /// <exception cref="TrainingDivergedException">Always.</exception>
    protected void Diverged(string what, int step, long computedOn, IEnumerable<(int Worker, GradientComputed Report)> reports, bool lossFiniteOnIt = false) =>
        throw Divergence(what, Part!.Epoch, step, Model, computedOn, reports, Outbox.LastGood(computedOn), _firstStepLoss, lossFiniteOnIt);

    /// <summary>
    /// The <see cref="TrainingDivergedException"/> a parameter server (or one shard of it) stops with: the message names the
    /// epoch, the step, the weights version, the workers whose loss or report is not finite, the first such tensor and the
    /// advice (see <see cref="Diverged"/>); it carries the last good weights given.
    /// </summary>
    /// <param name="what">What was not finite.</param>
    /// <param name="epoch">The 1-based epoch.</param>
    /// <param name="step">The epoch's step (round), from 0; the message counts from 1.</param>
    /// <param name="model">The model that stepped (its version, and the tensor names of its reports).</param>
    /// <param name="computedOn">The version the reports were computed on.</param>
    /// <param name="reports">The reports, by worker.</param>
    /// <param name="good">The last good weights (whole, or the shard's slice), their version, and whether they are older than
    /// <paramref name="computedOn"/> (<see cref="WeightsOutbox.LastGood"/>); (null, -1, false) when none are held.</param>
    /// <param name="firstStepLoss">This run's first step's mean loss, when known; null otherwise.</param>
    /// <param name="lossFiniteOnIt">True when the loss computed on <paramref name="computedOn"/> was finite.</param>
    /// <param name="where">Put before the message (a shard's index), or empty.</param>
    internal static TrainingDivergedException Divergence(string what, int epoch, int step, ServerModel model, long computedOn,
        IEnumerable<(int Worker, GradientComputed Report)> reports, (float[]? Weights, long Version, bool Older) good, double? firstStepLoss,
        bool lossFiniteOnIt, string where = "")
    {
        var workers = new List<string>();
        string? tensor = null;
        foreach (var (i, g) in reports)
        {
            var badLoss = !double.IsFinite(g.LossSum);
            var badTensor = model.FirstNonFiniteTensor(g.Gradient);
            if (badLoss || badTensor is not null) workers.Add($"{i} (loss {g.LossSum / Math.Max(1, g.SampleCount):G4})");
            tensor ??= badTensor;
        }
        return new TrainingDivergedException(
            $"{where}Training diverged at epoch {epoch}, step {step + 1} (weights version {model.Version}): {what}. " + // counted from 1, as a stopped run's summary counts
            $"Workers affected: {(workers.Count > 0 ? string.Join(", ", workers) : "none alone; the average overflowed")}. " +
            $"First tensor with a non-finite gradient: {tensor ?? "none (the loss overflowed first)"}. " +
            (computedOn == 0 && !lossFiniteOnIt
                ? "It was computed on the starting weights, before any update, so the learning rate is not the cause: check Model:Initializer " +
                  "(weights that start too large overflow, as a large Constant does) and the input normalization."
                : firstStepLoss is { } first && first >= AstronomicalLoss
                    ? FormattableString.Invariant($"The first step's loss was already {first:G3}, before the learning rate could do harm: the weights ") +
                      "started far too large, so check Model:Initializer first (a large NormalStd, UniformRange, Gain or Constant; HeNormal for ReLU, XavierUniform for Tanh) " +
                      "and the input normalization, then Optimizer:LearningRate and Optimizer:GradientClipNorm."
                    : "Lower Optimizer:LearningRate, set Optimizer:GradientClipNorm, or check the input normalization."), good.Weights, good.Version,
            good.Older || lossFiniteOnIt, epoch, step + 1);
    }
}
