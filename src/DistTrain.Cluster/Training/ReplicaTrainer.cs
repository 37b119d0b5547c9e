using System.Numerics.Tensors;
using DistTrain.Core.Compression;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Diagnostics;
using DistTrain.Core.Layers;
using DistTrain.Core.Losses;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;

namespace DistTrain.Cluster.Training;

/// <summary>What a worker does with a minibatch, by mode (the worker actor's settings).</summary>
/// <param name="Mode">The training mode.</param>
/// <param name="MicroBatchSize">Samples per forward and backward pass (Training:BatchSizePerWorker); a minibatch larger
/// than this is computed in micro-batches of this size whose gradients are accumulated (Training:AccumulationSteps).
/// 0: the whole minibatch in one pass.</param>
/// <param name="LocalSteps">Local SGD: optimizer steps between averagings (Training:LocalSteps).</param>
/// <param name="Optimizer">Local SGD: the update rule each worker steps (the same as the parameter server's).</param>
/// <param name="TotalEpochs">Local SGD: epochs of the run, which the learning-rate schedule spans.</param>
/// <param name="Augmentation">Data:Augmentation, applied to training minibatches after they are gathered; null or
/// disabled: none. Evaluation never augments.</param>
/// <param name="SampleTraceDirectory">Monitoring:SampleTraceDirectory, where each minibatch's samples are recorded
/// (<see cref="Metrics.SampleTrace"/>); empty: off.</param>
/// <param name="Compression">Cluster:Compression and its settings: how the worker encodes each gradient's trainable
/// part for the parameter server (null: float32, no encoding).</param>
/// <param name="LocalGradient">With <paramref name="Compression"/> TopK: the clipping and the L1 and L2 terms the worker applies to
/// each gradient before encoding it (null: none).</param>
/// <param name="ClippedPushesToWarn">With <paramref name="LocalGradient"/> clipping: consecutive clipped pushes after which
/// worker 0 warns that the clip sets every step's size, as the parameter server does without TopK after
/// <see cref="GradientHealthMonitor.ClippedMeasurementsToWarn"/> measurements every Monitoring:GradientNormEverySteps steps:
/// their product; 0 (the measurements off, or no local clipping): never.</param>
public sealed record ReplicaSettings(TrainingMode Mode = TrainingMode.Sync, int MicroBatchSize = 0, int LocalSteps = 1,
    OptimizerOptions? Optimizer = null, int TotalEpochs = 1, AugmentationOptions? Augmentation = null, string SampleTraceDirectory = "",
    GradientCompressionSettings? Compression = null, LocalGradientSettings? LocalGradient = null, int ClippedPushesToWarn = 0)
{
    /// <summary>Synchronous training, each minibatch in one pass.</summary>
    public static readonly ReplicaSettings Default = new();

    /// <summary>The settings of a run configured by <paramref name="options"/>.</summary>
    public static ReplicaSettings From(TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var loop = options.Training;
        var local = LocalGradientSettings.Of(options);
        return new ReplicaSettings(loop.Mode, loop.AccumulationSteps > 1 ? loop.BatchSizePerWorker : 0, loop.LocalSteps, options.Optimizer, loop.Epochs,
            options.Data.Augmentation, options.Monitoring.SampleTraceDirectory, CompressionOf(options), local,
            local is { ClipNorm: > 0 } ? GradientHealthMonitor.ClippedMeasurementsToWarn * Math.Max(0, options.Monitoring.GradientNormEverySteps) : 0);
    }

    /// <summary>The encoder settings of Cluster:Compression, Cluster:TopKRatio, Cluster:TopKScope (Global for the encodings
    /// other than TopK, which ignore it, so that it cannot set two such nodes apart), Cluster:ErrorFeedback and
    /// Cluster:MomentumCorrection (the optimizer's momentum when <see cref="TrainingOptions.UsesMomentumCorrection"/>);
    /// null for None.</summary>
    public static GradientCompressionSettings? CompressionOf(TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var cluster = options.Cluster;
        return cluster.Compression == GradientCompression.None ? null : new GradientCompressionSettings(cluster.Compression, cluster.TopKRatio,
            cluster.ErrorFeedback, options.UsesMomentumCorrection ? options.Optimizer.Momentum : 0,
            cluster.Compression == GradientCompression.TopK ? cluster.TopKScope : TopKScope.Global);
    }
}

/// <summary>
/// One replica's computation, without the actor around it: the gradient of a minibatch, in micro-batches when gradient
/// accumulation is on, and local SGD's optimizer steps on the replica's own weights. A step allocates nothing once its
/// batch sizes have been seen.
/// </summary>
public sealed class ReplicaTrainer
{
    private readonly Sequential _model;
    private readonly ILoss _loss;
    private readonly LabeledDataset _train;
    private readonly ReplicaSettings _settings;
    private readonly MatrixBuffer _inputs;
    private readonly MatrixBuffer _targets;
    private readonly ImageAugmenter? _augmenter;
    private readonly float[] _micro;     // one micro-batch's report, when accumulating
    private readonly Optimizer? _local;  // local SGD
    private readonly LearningRateSchedule? _schedule;
    private readonly float[] _weights;   // local SGD: the replica's flat vector between steps
    private readonly float[] _gradient;  // local SGD: one step's gradient
    private readonly float[][] _single = new float[1][];
    private readonly float[] _clip = [1f];
    private readonly int _seed;

    /// <summary>Creates the trainer over <paramref name="model"/>.</summary>
    /// <param name="model">The replica.</param>
    /// <param name="loss">The loss on its output.</param>
    /// <param name="train">The training split; minibatches are index lists into it.</param>
    /// <param name="settings">The mode's settings.</param>
    /// <param name="seed">The run's seed (Training:Seed), which keys every sample's dropout masks with the epoch
    /// (<see cref="Sequential.SetDropoutKeys"/>), so they do not depend on the worker or on where a run resumed.</param>
    /// <param name="augmenter">Augments each gathered training minibatch (from <see cref="ReplicaSettings.Augmentation"/>); null: none.</param>
    /// <exception cref="ArgumentException">Local SGD without optimizer settings.</exception>
    public ReplicaTrainer(Sequential model, ILoss loss, LabeledDataset train, ReplicaSettings settings, int seed, ImageAugmenter? augmenter = null)
    {
        _augmenter = augmenter;
        _seed = seed;
        _model = model;
        _loss = loss;
        _train = train;
        _settings = settings;
        _inputs = new MatrixBuffer(train.FeatureCount);
        _targets = new MatrixBuffer(train.ClassCount);
        var layout = model.Layout;
        _micro = settings.MicroBatchSize > 0 ? new float[layout.WorkerReportLength] : [];
        if (settings.Mode == TrainingMode.LocalSgd)
        {
            var options = settings.Optimizer ?? throw new ArgumentException("Local SGD needs the optimizer settings.", nameof(settings));
            _local = Optimizer.Create(options, layout.TrainableLength,
                ParameterGroups.Ranges(layout, layout.TrainableLength, options.DecayBiasAndNormParameters));
            _schedule = new LearningRateSchedule(options.Schedule);
            _weights = new float[layout.TotalLength];
            _gradient = new float[layout.WorkerReportLength];
        }
        else
        {
            _weights = [];
            _gradient = [];
        }
        Wire = WireLayout.For(layout, settings.Mode, settings.Optimizer ?? new OptimizerOptions());
    }

    /// <summary>Message lengths of the mode.</summary>
    public WireLayout Wire { get; }

    /// <summary>True for local SGD: a report carries the model after local steps, not a gradient.</summary>
    public bool IsLocalSgd => _local is not null;

    /// <summary>
    /// The report of one minibatch into <paramref name="report"/>'s prefix: the gradient of the mean loss over
    /// <paramref name="indices"/> (the sample-weighted mean of its micro-batches' gradients when accumulating), then the
    /// replica's running statistics after it.
    /// </summary>
    /// <param name="indices">The minibatch's sample indices into the training split.</param>
    /// <param name="report">Receives the report; at least <see cref="Core.Tensors.ParameterLayout.WorkerReportLength"/> floats (an array, or a
    /// shared-memory slot of the data plane).</param>
    /// <param name="epoch">The epoch (1-based), which seeds each sample's augmentation and dropout masks.</param>
    /// <returns>The summed loss over the samples.</returns>
    public double ComputeGradient(ReadOnlySpan<int> indices, Span<float> report, int epoch)
    {
        var micro = _settings.MicroBatchSize;
        if (micro <= 0 || indices.Length <= micro)
        {
            var meanLoss = Pass(indices, epoch);
            _model.CopyGradientsTo(report);
            return meanLoss * indices.Length;
        }
        // Σⱼ (nⱼ / n) gⱼ is the gradient of the mean loss over all n samples; the running statistics are the last pass's.
        var trainable = _model.Layout.TrainableLength;
        var plan = MinibatchPlan.Fixed(indices.Length, micro);
        var lossSum = 0.0;
        for (var j = 0; j < plan.Count; j++)
        {
            var part = indices.Slice(plan.Start(j), plan.Length(j));
            lossSum += Pass(part, epoch) * part.Length;
            _model.CopyGradientsTo(_micro);
            var scale = (float)part.Length / indices.Length;
            if (j == 0) TensorPrimitives.Multiply(_micro.AsSpan(0, trainable), scale, report[..trainable]);
            else TensorPrimitives.MultiplyAdd(_micro.AsSpan(0, trainable), scale, report[..trainable], report[..trainable]);
        }
        _micro.AsSpan(trainable, _model.Layout.WorkerReportLength - trainable).CopyTo(report[trainable..]);
        return lossSum;
    }

    private double Pass(ReadOnlySpan<int> indices, int epoch)
    {
        var inputs = _inputs.Get(indices.Length);
        var targets = _targets.Get(indices.Length);
        _train.Gather(indices, inputs, targets);
        _augmenter?.Apply(inputs, indices, epoch);
        _model.SetDropoutKeys(_seed, epoch, indices);
        return _model.ComputeGradients(inputs, targets, _loss);
    }

    /// <summary>
    /// Local SGD: loads the optimizer state a weights message carries after the weights
    /// (<see cref="WireLayout"/>), and the step count of its version.
    /// </summary>
    public void LoadLocalState(ReadOnlySpan<float> message, long version)
    {
        var local = _local!;
        var offset = _model.Layout.TotalLength;
        foreach (var (_, values) in local.State)
        {
            message.Slice(offset, values.Length).CopyTo(values);
            offset += values.Length;
        }
        local.StepCount = version;
    }

    /// <summary>
    /// Local SGD: one optimizer step on the replica's own weights from the minibatch <paramref name="indices"/>, at the
    /// schedule's rate for optimizer step <paramref name="step"/>.
    /// </summary>
    /// <param name="indices">The minibatch.</param>
    /// <param name="step">The run's optimizer step this local step stands for.</param>
    /// <param name="position">The epoch (1-based), the step within it and the epoch's planned steps.</param>
    /// <param name="scalingWorkers">Workers of the linear scaling rule.</param>
    /// <returns>The summed loss over the samples, and false when the gradient or the new weights are not finite.</returns>
    public (double LossSum, bool Finite) LocalStep(ReadOnlySpan<int> indices, long step, (int Epoch, int Step, int StepsPerEpoch) position, int scalingWorkers)
    {
        var local = _local!;
        var options = _settings.Optimizer!;
        var lossSum = ComputeGradient(indices, _gradient, position.Epoch);
        var trainable = _model.Layout.TrainableLength;
        _clip[0] = options.GradientClipNorm > 0
            ? GradientHealthMonitor.ClipScale(GradientHealthMonitor.GlobalNorm(_gradient.AsSpan(0, trainable)), options.GradientClipNorm)
            : 1f;
        var baseRate = options.LearningRate * (options.ScaleLearningRateByWorkers ? Math.Max(1, scalingWorkers) : 1);
        var rate = _schedule!.At(new SchedulePosition(step, Math.Max(0, position.Epoch - 1), position.Step, Math.Max(1, position.StepsPerEpoch)),
            _settings.TotalEpochs, baseRate);
        // The flat vector holds the running statistics this pass updated; only the trainable prefix steps.
        _model.CopyParametersTo(_weights);
        _single[0] = _gradient;
        var finite = local.StepWeightedAverage(_weights.AsSpan(0, trainable), _single, _clip, (float)rate, []);
        _single[0] = null!;
        _model.LoadParameters(_weights);
        return (lossSum, finite && double.IsFinite(lossSum));
    }

    /// <summary>
    /// Local SGD's report into <paramref name="report"/>: the replica's trainable weights and running statistics, then
    /// its optimizer state (<see cref="WireLayout"/>).
    /// </summary>
    public void CopyLocalModel(float[] report)
    {
        _model.CopyParametersTo(_weights);
        var prefix = _model.Layout.WorkerReportLength;
        _weights.AsSpan(0, prefix).CopyTo(report);
        var offset = prefix;
        foreach (var (_, values) in _local!.State)
        {
            values.CopyTo(report, offset);
            offset += values.Length;
        }
    }
}
