using System.Numerics.Tensors;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Diagnostics;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Training;

/// <summary>
/// The parameter server's model: the master weights, the optimizer and its state, the learning-rate schedule, gradient
/// clipping and the gradient diagnostics. The update policies decide which reports a step combines; this class does the
/// arithmetic, the same for every policy.
/// </summary>
/// <remarks>
/// The flat vector holds the trainable tensors <c>[0, TrainableLength)</c>, the running statistics
/// <c>[TrainableLength, WorkerReportLength)</c> and the frozen tensors after them (docs/architecture.md). A worker's report
/// is the prefix <c>[0, WorkerReportLength)</c>: gradients (or, in local SGD, weights), then its running statistics.
/// It covers the whole vector; a parameter-server shard would own one for its contiguous slice (docs/architecture.md).
/// </remarks>
public sealed class ServerModel
{
    private readonly ParameterVector _weights;
    private readonly OptimizerOptions _options;
    private readonly OptimizerOptions _penalties; // whose L1 and L2 the epoch summary reports
    private readonly IReadOnlyList<ParameterGroupRange> _groups;
    private readonly LearningRateSchedule _schedule;
    private readonly int _totalEpochs;
    private readonly int _scalingWorkers;
    private readonly double _clipNorm;
    private readonly MonitoringOptions _monitoring;
    private readonly GradientHealthMonitor _health;
    private readonly float[] _average;       // the averaged gradient, when it must exist whole (clipping, diagnostics)
    private readonly float[][] _averageList;
    private readonly float[] _clipScale = [1f];
    private float[] _before;                 // the weights before a measured step (diagnostics only; made at the first)
    private int _measureEvery;               // MeasureEverySteps

    /// <summary>Creates the model from a copy of the version-0 weights, or of a checkpoint's.</summary>
    /// <param name="initialWeights">Version-0 weights (copied); their layout names the model.</param>
    /// <param name="optimizer">Update rule, regularization and learning-rate schedule.</param>
    /// <param name="totalEpochs">Epochs of the run, which the schedule spans.</param>
    /// <param name="monitoring">Gradient diagnostics; null turns them off.</param>
    /// <param name="resumeFrom">A verified checkpoint whose weights, optimizer state and version replace version 0; null starts fresh.</param>
    /// <param name="scalingWorkers">Workers of the linear scaling rule when the global minibatch is kept; 0 scales by the workers taking part.</param>
    /// <param name="configuredOptimizer">The run's optimizer settings as configured, when <paramref name="optimizer"/> is the parameter
    /// server's share of them (<see cref="Core.Configuration.TrainingOptions.ParameterServerOptimizer"/>): its L1 and L2 are the
    /// penalties <see cref="RegularizationPenalties"/> reports, also when the workers add those terms to their gradients. Null:
    /// <paramref name="optimizer"/>'s.</param>
    /// <param name="offset">Where this model's vector starts in the whole model's (a parameter-server shard's slice,
    /// <see cref="ParameterShard.Start"/>): reports are read, and broadcasts written, from there. 0 for the whole model.</param>
    /// <exception cref="InvalidDataException"><paramref name="resumeFrom"/> does not fit the layout or the optimizer.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="totalEpochs"/> is below 1, an optimizer setting is out of range, or <paramref name="offset"/> is negative.</exception>
    public ServerModel(ParameterVector initialWeights, OptimizerOptions optimizer, int totalEpochs, MonitoringOptions? monitoring = null,
        TrainingCheckpoint? resumeFrom = null, int scalingWorkers = 0, OptimizerOptions? configuredOptimizer = null, int offset = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        Offset = offset;
        CountsClippedSteps = offset == 0;
        ArgumentNullException.ThrowIfNull(initialWeights);
        ArgumentNullException.ThrowIfNull(optimizer);
        if (resumeFrom is not null)
        {
            if (resumeFrom.Weights.Layout.TotalLength != initialWeights.Layout.TotalLength)
                throw new InvalidDataException($"The checkpoint holds {resumeFrom.Weights.Layout.TotalLength} weights, the model has {initialWeights.Layout.TotalLength}.");
            initialWeights = new ParameterVector(initialWeights.Layout, resumeFrom.Weights.Values);
        }
        ArgumentOutOfRangeException.ThrowIfLessThan(totalEpochs, 1);
        _options = optimizer;
        _penalties = configuredOptimizer ?? optimizer;
        _totalEpochs = totalEpochs;
        _scalingWorkers = scalingWorkers;
        _schedule = new LearningRateSchedule(optimizer.Schedule);
        _clipNorm = optimizer.GradientClipNorm;
        _monitoring = monitoring ?? new MonitoringOptions { GradientNormEverySteps = 0 };
        _health = new GradientHealthMonitor(initialWeights.Layout, _monitoring, _clipNorm);
        _average = new float[initialWeights.Layout.TrainableLength];
        _averageList = [_average];
        _measureEvery = Math.Max(0, _monitoring.GradientNormEverySteps);
        _before = _measureEvery > 0 ? new float[initialWeights.Layout.TotalLength] : [];
        _weights = new ParameterVector(initialWeights.Layout, (float[])initialWeights.Values.Clone());
        Whole = (initialWeights.Layout.TotalLength, initialWeights.Layout.WorkerReportLength, initialWeights.Layout.TrainableLength);
        var trainable = initialWeights.Layout.TrainableLength;
        _groups = ParameterGroups.Ranges(initialWeights.Layout, trainable, optimizer.DecayBiasAndNormParameters);
        Optimizer = Optimizer.Create(optimizer, trainable, _groups);
        if (resumeFrom is not null)
        {
            resumeFrom.RestoreOptimizer(Optimizer);
            Version = resumeFrom.Version;
        }
    }

    /// <summary>Where this model's vector starts in the whole model's: reports are read, and broadcasts written, from there (0 unless sharded).</summary>
    public int Offset { get; }

    /// <summary>
    /// Steps between two measurements of the per-tensor gradient, weight and update norms: a step is measured when its new
    /// version is a multiple of it; 0 measures none. Monitoring:GradientNormEverySteps at first; a shard on a node of its own
    /// takes its owner's value with each part (<see cref="Actors.ParameterShardActor"/>), so every shard measures the same steps.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is negative.</exception>
    public int MeasureEverySteps
    {
        get => _measureEvery;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            _measureEvery = value;
        }
    }

    /// <summary>
    /// True when a clipped step counts in <see cref="Metrics.DistTrainMetrics.ClippedSteps"/>. Each step of the run must
    /// count once, so of K shards that clip by the whole model's norm only one counts: by default the model at
    /// <see cref="Offset"/> 0 (the whole model, or the first in-process shard); a shard whose reports start at 0 on its
    /// own (<see cref="Actors.ParameterShardActor"/>) sets it for shard 0 alone.
    /// </summary>
    public bool CountsClippedSteps { get; init; }

    /// <summary>
    /// True for a parameter-server shard with Optimizer:GradientClipNorm: the clipping norm is the whole model's, so each step
    /// first gives its part (<see cref="AverageSquaredNorm"/>) and then steps with the norm of all parts
    /// (<see cref="Step"/>'s <c>globalNorm</c>).
    /// </summary>
    public bool ClipsByShardedNorm { get; init; }

    /// <summary>
    /// The whole model's lengths, where a shard's messages place the optimizer state after the weights (local SGD,
    /// <see cref="WireLayout"/>): the whole vector's <see cref="ParameterLayout.TotalLength"/>, its report prefix
    /// <see cref="ParameterLayout.WorkerReportLength"/> and its <see cref="ParameterLayout.TrainableLength"/>. This model's own
    /// layout's unless sharded.
    /// </summary>
    public (int TotalLength, int ReportLength, int TrainableLength) Whole { get; init; }

    /// <summary>Where state buffer <paramref name="buffer"/> of this model's slice starts in a message whose state follows <paramref name="prefix"/> floats.</summary>
    public int StateOffset(int prefix, int buffer) => prefix + buffer * Whole.TrainableLength + Offset;

    /// <summary>
    /// For a parameter-server shard: receives each measured step's per-tensor sums of squares of its slices of tensors
    /// (<see cref="GradientHealthMonitor.Squares"/>) with the step's number, instead of this model judging them; the
    /// sharded server judges the whole tensors. Null (the default) judges here and warns through <see cref="Step"/>.
    /// </summary>
    public Action<long, TensorSquares[]>? HealthSink { get; init; }

    /// <summary>
    /// Forms the weighted average of this model's part of <paramref name="reports"/> (kept for the following
    /// <see cref="Step"/>) and returns its squared L2 norm, this shard's share of the whole gradient's.
    /// </summary>
    public double AverageSquaredNorm(ReadOnlySpan<float[]> reports, ReadOnlySpan<float> scales)
    {
        WeightedSum(reports, scales, Offset, _average);
        return TensorPrimitives.SumOfSquares<float>(_average);
    }

    /// <summary>The master weights (all regions), live.</summary>
    public ParameterVector Weights => _weights;

    /// <summary>The weights' layout.</summary>
    public ParameterLayout Layout => _weights.Layout;

    /// <summary>The update rule and its state.</summary>
    public Optimizer Optimizer { get; }

    /// <summary>The optimizer settings.</summary>
    public OptimizerOptions Options => _options;

    /// <summary>The per-tensor norms the diagnostics measure (updated in place).</summary>
    public LayerHealth[] Health => _health.Latest;

    /// <summary>Weights version: optimizer steps applied since the start of the run.</summary>
    public long Version { get; set; }

    /// <summary>
    /// The learning rate of the step at (<paramref name="epoch"/>, <paramref name="step"/>): the schedule at this optimizer
    /// step (the version it updates; warmup counts these) and at that position over <paramref name="stepsPerEpoch"/>, from
    /// the base rate, times the workers under the linear scaling rule (the job's starting workers when the global minibatch
    /// is kept, else <paramref name="activeWorkers"/>).
    /// </summary>
    /// <param name="epoch">1-based epoch.</param>
    /// <param name="step">0-based step within the epoch.</param>
    /// <param name="stepsPerEpoch">Steps the epoch was planned with, ≥ 1.</param>
    /// <param name="activeWorkers">Workers taking part in the epoch.</param>
    /// <param name="version">The optimizer step; defaults to <see cref="Version"/>.</param>
    /// <param name="oneWorkerPerStep">True when a step applies one worker's gradient alone (Async): its minibatch is one
    /// worker's, so the linear scaling rule multiplies by 1.</param>
    public double LearningRate(int epoch, int step, int stepsPerEpoch, int activeWorkers, long? version = null, bool oneWorkerPerStep = false)
    {
        var workers = oneWorkerPerStep ? 1 : _scalingWorkers > 0 ? _scalingWorkers : activeWorkers;
        var baseRate = _options.LearningRate * (_options.ScaleLearningRateByWorkers ? workers : 1);
        return _schedule.At(new SchedulePosition(version ?? Version, Math.Max(0, epoch - 1), step, stepsPerEpoch), _totalEpochs, baseRate);
    }

    private Span<float> Trainable(float[] values) => values.AsSpan(0, _weights.Layout.TrainableLength);

    /// <summary>
    /// One optimizer step from the weighted average <c>Σₖ scalesₖ · reportsₖ</c> of the reports' trainable prefixes, written
    /// into the master weights and, when given, into <paramref name="copyTo"/>'s trainable prefix. Usually a single
    /// cache-blocked pass that averages, regularizes and steps. When clipping is on, or on a diagnostics step, the average
    /// is first formed whole, its global norm clips it, and the per-tensor norms are measured around the update.
    /// </summary>
    /// <param name="reports">Reports of at least <see cref="Offset"/> plus the trainable length, in the order they are summed.</param>
    /// <param name="scales">One weight per report (<c>nₖ / Σ n</c>).</param>
    /// <param name="learningRate">The step's rate.</param>
    /// <param name="copyTo">A full-length vector that receives the new trainable weights from <see cref="Offset"/> on, or null.</param>
    /// <param name="warnings">Receives the diagnostics' warnings, if any.</param>
    /// <param name="globalNorm">With <see cref="ClipsByShardedNorm"/>: the whole averaged gradient's L2 norm, from every
    /// shard's <see cref="AverageSquaredNorm"/> (which formed this shard's average); null otherwise.</param>
    /// <param name="written">With <paramref name="copyTo"/>: called as the optimizer's blocks land in it, with the floats written
    /// so far from <see cref="Offset"/> on (<see cref="Optimizer.StepWeightedAverage"/>); null: no calls.</param>
    /// <returns>False when the averaged gradient is not finite; the weights are then partly updated.</returns>
    public bool Step(ReadOnlySpan<float[]> reports, ReadOnlySpan<float> scales, float learningRate, float[]? copyTo, Action<string> warnings,
        double? globalNorm = null, Action<int>? written = null)
    {
        var every = _measureEvery;
        var measure = every > 0 && (Version + 1) % every == 0;
        if (measure && _before.Length == 0) _before = new float[_weights.Layout.TotalLength];
        var target = copyTo is null ? [] : copyTo.AsSpan(Offset, _weights.Layout.TrainableLength);
        if (!measure && _clipNorm <= 0)
            return Optimizer.StepWeightedAverage(Trainable(_weights.Values), reports, scales, learningRate, target, Offset, written);

        if (globalNorm is null) WeightedSum(reports, scales, Offset, _average);
        var norm = globalNorm ?? GradientHealthMonitor.GlobalNorm(_average);
        _clipScale[0] = GradientHealthMonitor.ClipScale(norm, _clipNorm);
        if (_clipScale[0] < 1f && CountsClippedSteps) Metrics.DistTrainMetrics.RecordClippedStep(); // once per step, also when sharded
        if (measure) _weights.Values.CopyTo(_before, 0);
        var finite = Optimizer.StepWeightedAverage(Trainable(_weights.Values), _averageList, _clipScale, learningRate, target, written: written);
        if (measure && finite && HealthSink is { } sink) sink(Version + 1, _health.Squares(_average, _before, _weights.Values));
        else if (measure && finite)
            foreach (var warning in _health.Measure(Version + 1, _average, _before, _weights.Values))
                warnings(warning);
        return finite;
    }

    /// <summary>
    /// The running statistics (BatchNorm's running mean and variance) that follow the trainable prefix in each report
    /// become the sample-weighted average of the replicas' values, in the master weights and, when given, in
    /// <paramref name="copyTo"/>, so every replica continues from the same statistics (docs/architecture.md).
    /// </summary>
    /// <returns>False when a merged statistic is NaN or infinite.</returns>
    public bool MergeRunningStatistics(ReadOnlySpan<float[]> reports, ReadOnlySpan<float> scales, float[]? copyTo)
    {
        var layout = _weights.Layout;
        if (!layout.HasRunningStatistics) return true;
        var statistics = _weights.Values.AsSpan(layout.TrainableLength, layout.WorkerReportLength - layout.TrainableLength);
        WeightedSum(reports, scales, Offset + layout.TrainableLength, statistics);
        if (copyTo is not null) statistics.CopyTo(copyTo.AsSpan(Offset + layout.TrainableLength));
        return float.IsFinite(TensorPrimitives.Sum(statistics));
    }

    /// <summary>
    /// Local SGD's step: the master weights' report prefix (trainable weights and running statistics) and the optimizer
    /// state become the weighted averages of the workers' models, read from each report as
    /// <c>[weights prefix | state buffer 0 | state buffer 1 ...]</c> (see <see cref="WireLayout"/>). The optimizer's step
    /// count advances by <paramref name="steps"/>.
    /// </summary>
    /// <returns>False when an averaged value is NaN or infinite.</returns>
    public bool AverageModels(ReadOnlySpan<float[]> reports, ReadOnlySpan<float> scales, int steps)
    {
        var layout = _weights.Layout;
        var prefix = _weights.Values.AsSpan(0, layout.WorkerReportLength);
        WeightedSum(reports, scales, Offset, prefix);
        var finite = float.IsFinite(TensorPrimitives.Sum(prefix));
        var buffer = 0;
        foreach (var (_, values) in Optimizer.State)
        {
            WeightedSum(reports, scales, StateOffset(Whole.ReportLength, buffer++), values);
            finite &= float.IsFinite(TensorPrimitives.Sum(values));
        }
        Optimizer.StepCount += steps;
        return finite;
    }

    /// <summary><c>target = Σₖ scaleₖ · reportₖ[offset, offset + target.Length)</c>, in report order.</summary>
    private static void WeightedSum(ReadOnlySpan<float[]> reports, ReadOnlySpan<float> scales, int offset, Span<float> target)
    {
        TensorPrimitives.Multiply(reports[0].AsSpan(offset, target.Length), scales[0], target);
        for (var k = 1; k < reports.Length; k++)
            TensorPrimitives.MultiplyAdd(reports[k].AsSpan(offset, target.Length), scales[k], target, target);
    }

    /// <summary>
    /// The regularization terms of the objective, reported apart from the data loss: <c>λ₁ Σ|w|</c> and
    /// <c>λ₂/2 Σw²</c> over the decayed groups of the current weights, with the configured λ₁ and λ₂ (also when the workers,
    /// not this optimizer, add their gradients).
    /// </summary>
    public (double L1, double L2) RegularizationPenalties()
    {
        double absolute = 0, squares = 0;
        foreach (var group in _groups)
        {
            if (!group.Decay) continue;
            var w = _weights.Values.AsSpan(group.Offset, group.Length);
            absolute += TensorPrimitives.SumOfMagnitudes(w);
            squares += TensorPrimitives.SumOfSquares(w);
        }
        return (_penalties.L1 * absolute, _penalties.L2 / 2 * squares);
    }

    /// <summary>
    /// The first tensor whose values in <paramref name="report"/> are not all finite, by <c>state_dict</c> name; null when
    /// every tensor the report covers is finite.
    /// </summary>
    public string? FirstNonFiniteTensor(float[] report) =>
        _weights.Layout.Segments.FirstOrDefault(s => Offset + s.Offset + s.Length <= report.Length && !AllFinite(report.AsSpan(Offset + s.Offset, s.Length)))?.Name;

    private static bool AllFinite(ReadOnlySpan<float> values)
    {
        foreach (var v in values)
            if (!float.IsFinite(v)) return false;
        return true;
    }
}
