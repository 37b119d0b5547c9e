using System.Diagnostics;
using System.Numerics.Tensors;
using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Core.Data;
using DistTrain.Core.Layers;
using DistTrain.Core.Losses;
using DistTrain.Core.Models;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// One data-parallel replica. Holds a copy of the model; on every <see cref="WeightsUpdated"/> it loads
/// the weights and, if it has minibatch <c>Round</c> of its shard, answers with the gradient of that
/// minibatch. It also scores a range of the test set on request.
/// </summary>
/// <remarks>
/// Replicas never initialize their own weights: they start from version 0 sent by the parameter server.
/// Messages that arrive ahead of what they depend on (weights of an epoch whose shard has not come yet,
/// an evaluation of a version not yet received) are stashed, so no ordering between senders is assumed.
/// </remarks>
public sealed class Worker : ReceiveActor, IWithStash
{
    private readonly int _workerIndex;
    private readonly LabeledDataset _test;
    private readonly LabeledDataset? _validation;
    private readonly int _evaluationBatchSize; // samples per evaluation pass: Training:EvaluationBatchSize within the memory budget
    private readonly Sequential _model;
    private readonly ILoss _loss;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly System.Diagnostics.TagList _metricTags = Metrics.DistTrainMetrics.Tags(NodeRoles.Worker);
    private readonly ReplicaTrainer _trainer;
    private readonly ReplicaSettings _settings;
    // Gradients are sent in loaned messages and arrays (see TrainingProtocol.cs): two, used in turn, so a
    // message is rewritten two rounds later, long after the parameter server has averaged it.
    private readonly GradientComputed[] _gradientMessages;
    private readonly GradientWireCodec? _codec; // Cluster:Compression
    private int _stashed;
    private int _nextGradientBuffer;
    // Evaluation has its own replica and buffers (batch Training:EvaluationBatchSize), so switching between
    // training and evaluation never reallocates: in steady state a worker allocates no large arrays.
    private readonly Lazy<(Sequential Model, MatrixBuffer Inputs, MatrixBuffer Targets, MatrixBuffer Sink, int[] Indices)> _evaluation;
    private AssignShard? _shard;
    private long _version = -1;
    private readonly float[] _weightsForEvaluation; // staging for copying the training replica into the evaluation replica
    private readonly string _sampleTraceDirectory;
    private Metrics.SampleTrace? _sampleTrace;

    /// <summary>Creates the worker; see <see cref="Props"/>.</summary>
    public Worker(int workerIndex, ModelOptions model, LabeledDataset train, LabeledDataset test, int evaluationBatchSize,
        LabeledDataset? validation = null, int seed = 0, ReplicaSettings? settings = null)
    {
        _settings = settings ?? ReplicaSettings.Default;
        _workerIndex = workerIndex;
        _sampleTraceDirectory = _settings.SampleTraceDirectory;
        _test = test;
        _validation = validation;
        _model = ModelFactory.Build(model, dropoutSeed: workerIndex + 1);
        _evaluationBatchSize = EvaluationPassSize(evaluationBatchSize, _model.ForwardBytesPerSample);
        if (_evaluationBatchSize < evaluationBatchSize && workerIndex == 0)
            _log.Warning("Training:EvaluationBatchSize = {0} would hold {1:N0} MB of buffers ({2:N0} bytes per sample); evaluation runs in passes of {3} samples ({4} MiB).",
                evaluationBatchSize, evaluationBatchSize * _model.ForwardBytesPerSample / 1_000_000, _model.ForwardBytesPerSample, _evaluationBatchSize,
                EvaluationMemoryBytes / (1024 * 1024));
        _loss = ModelFactory.BuildLoss(model.Loss);
        var augmenter = _settings.Augmentation is { Enabled: true } augmentation
            ? new ImageAugmenter(augmentation, _model.InputShape, train.Normalization, seed)
            : null;
        _trainer = new ReplicaTrainer(_model, _loss, train, _settings, seed, augmenter);
        _gradientMessages = [.. Enumerable.Range(0, 2).Select(_ => new GradientComputed(0, 0, 0, workerIndex, 0, 0, new float[_trainer.Wire.ReportLength]))];
        _codec = _settings.Compression is { } compression && !_trainer.IsLocalSgd
            ? new GradientWireCodec(compression, _model.Layout, _settings.LocalGradient, workerIndex == 0 ? _settings.ClippedPushesToWarn : 0)
            : null;
        _evaluation = new(() => (EvaluationReplica(model), new MatrixBuffer(test.FeatureCount), new MatrixBuffer(test.ClassCount),
            new MatrixBuffer(test.ClassCount), new int[_evaluationBatchSize]));
        _weightsForEvaluation = new float[_model.Layout.TotalLength];
        Receive<AssignShard>(OnAssignShard);
        Receive<WeightsUpdated>(OnWeights);
        Receive<Evaluate>(OnEvaluate);
    }

    /// <inheritdoc />
    public IStash Stash { get; set; } = null!;

    /// <summary>Most bytes an evaluation pass's buffers may hold on one replica: 256 MiB (<see cref="Sequential.EvaluationMemoryBytes"/>).</summary>
    public const long EvaluationMemoryBytes = Sequential.EvaluationMemoryBytes;

    /// <summary>
    /// Samples per evaluation forward pass: <paramref name="evaluationBatchSize"/> (Training:EvaluationBatchSize), or fewer
    /// so that <paramref name="bytesPerSample"/> (<see cref="Sequential.ForwardBytesPerSample"/>) times it stays within
    /// <see cref="EvaluationMemoryBytes"/>; at least 1 (<see cref="Sequential.EvaluationPassSize"/>).
    /// </summary>
    public static int EvaluationPassSize(int evaluationBatchSize, long bytesPerSample) =>
        Sequential.EvaluationPassSize(evaluationBatchSize, bytesPerSample);

    /// <inheritdoc />
    protected override void PreStart() => _sampleTrace = Metrics.SampleTrace.ForWorker(_sampleTraceDirectory, _workerIndex);

    /// <inheritdoc />
    protected override void PostStop()
    {
        _sampleTrace?.Dispose();
        // Weights stashed in place in a data-plane slot (waiting for their shard) go back to the parameter server, and with
        // them the lease that keeps the region mapped: a worker stopped after a failover must not keep the old one.
        foreach (var envelope in Stash.ClearStash())
            (envelope.Message as WeightsUpdated)?.ReleaseShared();
    }

    private static Sequential EvaluationReplica(ModelOptions options)
    {
        var replica = ModelFactory.Build(options);
        replica.SetTraining(false); // dropout off, BatchNorm on running statistics
        return replica;
    }

    /// <inheritdoc />
    protected override bool AroundReceive(Receive receive, object message)
    {
        var started = Stopwatch.GetTimestamp();
        var handled = base.AroundReceive(receive, message);
        Metrics.DistTrainMetrics.Handled(_metricTags, started);
        return handled;
    }

    /// <summary>
    /// Props of worker <paramref name="workerIndex"/>; the data sets are shared read-only within the process.
    /// <paramref name="validation"/> holds the samples held out of training, when the run has any. <paramref name="seed"/>
    /// (Training:Seed) seeds each training sample's dropout masks, from (seed, layer, epoch, sample index), and its
    /// augmentation (<see cref="ReplicaSettings.Augmentation"/>), from (seed, epoch, sample index): neither depends on the
    /// worker that holds the sample, and a resumed run draws them as the uninterrupted one did.
    /// <paramref name="settings"/> says what the worker does with a minibatch in the run's mode, and where it traces its
    /// minibatches' samples (null: synchronous, in one pass, no augmentation, no trace).
    /// </summary>
    public static Props Props(int workerIndex, ModelOptions model, LabeledDataset train, LabeledDataset test, int evaluationBatchSize,
        LabeledDataset? validation = null, int seed = 0, ReplicaSettings? settings = null) =>
        Akka.Actor.Props.Create(() => new Worker(workerIndex, model, train, test, evaluationBatchSize, validation, seed, settings));

    private void OnAssignShard(AssignShard shard)
    {
        _shard = shard;
        UnstashAll();
    }

    private void StashCurrent()
    {
        Stash.Stash();
        _stashed++;
    }

    private void UnstashAll()
    {
        if (_stashed == 0) return;
        _stashed = 0;
        Stash.UnstashAll();
    }

    private void OnWeights(WeightsUpdated update)
    {
        // Weights of a later epoch, or of a later part of this one (a lost worker's samples), wait for their shard.
        if (_shard is null || update.IsAfter(_shard))
        {
            StashCurrent();
            return;
        }
        try
        {
            Train(update, _shard);
        }
        finally
        {
            update.ReleaseShared(); // weights read in place from a data-plane slot: the parameter server may write it again
        }
    }

    /// <summary>Loads the weights of <paramref name="update"/> and computes the report of its round of <paramref name="current"/>, if this worker has one.</summary>
    private void Train(WeightsUpdated update, AssignShard current)
    {
        if (update.Version < _version)
        {
            _log.Warning("Worker {0} ignored weights version {1}: it already holds version {2}.", _workerIndex, update.Version, _version);
            return;
        }
        var started = Stopwatch.GetTimestamp();
        var queueing = update.SentTimestamp > 0 ? Stopwatch.GetElapsedTime(update.SentTimestamp, started).TotalSeconds : 0;
        // Metrics are outside the measured step: with an exporter listening they may allocate, the step must not.
        if (update.SentTimestamp > 0 && Metrics.DistTrainMetrics.QueueingSeconds.Enabled)
            Metrics.DistTrainMetrics.QueueingSeconds.Record(queueing, _metricTags);
        var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        _model.LoadParameters(update.Values()[.._model.Layout.TotalLength]);
        _version = update.Version;
        var minibatch = update.Round - current.FirstRound;
        var shard = current.ShardIndices(update.Shard);
        var plan = current.MinibatchesOf(shard.Length);
        // Weights of an earlier part, or past the part's end (a part cut short when a worker was lost), are only loaded.
        if (update.IsTrainedWith(current) && minibatch >= 0 && minibatch < plan.Count)
        {
            var report = _trainer.IsLocalSgd ? LocalSteps(update, shard, plan, minibatch) : ComputeGradient(update, shard.AsSpan(plan.Start(minibatch), plan.Length(minibatch)));
            report.Measured(Stopwatch.GetElapsedTime(started).TotalSeconds, GC.GetAllocatedBytesForCurrentThread() - allocatedBefore, queueing);
            Sender.Tell(report);
        }
        UnstashAll();
    }

    /// <summary>The next loaned report message: reused two reports later, after the parameter server has combined it.</summary>
    private GradientComputed NextReport()
    {
        var message = _gradientMessages[_nextGradientBuffer];
        _nextGradientBuffer ^= 1;
        return message.InSlot(null);
    }

    private GradientComputed ComputeGradient(WeightsUpdated update, ReadOnlySpan<int> indices)
    {
        // A NaN or infinite loss is sent on like any other: the parameter server stops training, names every
        // worker and tensor affected, and keeps the last good weights, which only it holds.
        var message = NextReport();
        // Uncompressed through shared memory: the report is computed straight into the data-plane slot that carries it.
        var slot = _codec is null ? (Sender as DataPlane.IGradientSlotLender)?.TryLend(message.Gradient.Length) : null;
        try
        {
            var lossSum = _trainer.ComputeGradient(indices, slot is null ? message.Gradient : slot.Values, update.Epoch);
            message.WithEncoded(Encode(message.Gradient, update));
            Metrics.DistTrainMetrics.RecordSamplesComputed(indices.Length);
            Metrics.DistTrainMetrics.RecordGradientBytes(_codec?.WireBytes(message.Gradient.Length) ?? 4L * message.Gradient.Length);
            // Before sending: a gradient the parameter server applies always has its line, even if this node dies next.
            _sampleTrace?.Minibatch(update.Epoch, update.Round, update.Version, _workerIndex, indices);
            return message.InSlot(slot).Reuse(update.Epoch, update.Round, update.Version, indices.Length, lossSum);
        }
        catch
        {
            slot?.Abandon(); // never announced: the next report takes the slot again
            throw;
        }
    }

    /// <summary>Cluster:Compression's encoding of <paramref name="gradient"/>; null without compression.</summary>
    /// <exception cref="Core.Compression.GradientOverflowException">An element does not fit the encoding; the message names this worker's step.</exception>
    private byte[]? Encode(float[] gradient, WeightsUpdated update)
    {
        if (_codec is null) return null;
        // Gradients one step averages, for local clipping: the round's workers, or one in Async.
        var workersPerStep = _settings.Mode == Core.Configuration.TrainingMode.Async ? 1 : _shard!.ScalingWorkers;
        try
        {
            var encoded = _codec.Encode(gradient, update.Values(), workersPerStep);
            // Worker 0's alone (the others' codecs count nothing): the workers' gradients are alike, one line says it for all.
            if (_codec.TakeClippingWarning(_workerIndex) is { } clipping) _log.Warning("{0}", clipping);
            return encoded;
        }
        catch (Core.Compression.GradientOverflowException e)
        {
            // Fails this worker, and with it the job in single-node mode, with the cause instead of a divergence report.
            throw new Core.Compression.GradientOverflowException(
                $"Worker {_workerIndex}, epoch {update.Epoch}, round {update.Round} (weights version {update.Version}): {e.Message}", e.Index, e.Value, e);
        }
    }

    /// <summary>
    /// Local SGD: up to Training:LocalSteps optimizer steps on this replica from minibatch <paramref name="first"/> on (fewer
    /// where the shard ends), starting from the weights and optimizer state just received; the report is the model after them.
    /// </summary>
    private GradientComputed LocalSteps(WeightsUpdated update, int[] shard, MinibatchPlan plan, int first)
    {
        _trainer.LoadLocalState(update.Values(), update.Version);
        var steps = Math.Min(Math.Min(_settings.LocalSteps, plan.Count - first), update.EndRound - update.Round);
        var samples = 0;
        var lossSum = 0.0;
        for (var j = 0; j < steps; j++)
        {
            var indices = shard.AsSpan(plan.Start(first + j), plan.Length(first + j));
            var (loss, _) = _trainer.LocalStep(indices, update.Version + j, (update.Epoch, update.Round + j, _shard!.StepsPerEpoch), _shard.ScalingWorkers);
            _sampleTrace?.Minibatch(update.Epoch, update.Round + j, update.Version, _workerIndex, indices);
            lossSum += loss;
            samples += indices.Length;
        }
        var message = NextReport();
        _trainer.CopyLocalModel(message.Gradient);
        Metrics.DistTrainMetrics.RecordSamplesComputed(samples);
        return message.Reuse(update.Epoch, update.Round, update.Version, samples, lossSum);
    }

    private void OnEvaluate(Evaluate request)
    {
        if (_version < request.Version)
        {
            StashCurrent();
            return;
        }
        var data = request.Split == EvaluationSplit.Validation ? _validation : _test;
        if (data is null || request.Start < 0 || request.Count < 0 || (long)request.Start + request.Count > data.Count)
        {
            _log.Error("Worker {0} cannot score {1} samples [{2}, {3}): it holds {4}.", _workerIndex, request.Split, request.Start,
                (long)request.Start + request.Count, data is null ? "no such split" : $"{data.Count} samples");
            return;
        }
        var correct = 0;
        var scored = 0;
        var lossSum = 0.0;
        var (model, inputBuffer, targetBuffer, sinkBuffer, indexBuffer) = _evaluation.Value;
        // The training replica holds version _version (backward only writes gradients); copy it across.
        _model.CopyParametersTo(_weightsForEvaluation);
        model.LoadParameters(_weightsForEvaluation);
        // Balanced passes (sizes differing by at most one), so a range uses at most two batch sizes and their buffers.
        var passes = MinibatchPlan.Balanced(request.Count, Math.Max(1, (request.Count + _evaluationBatchSize - 1) / _evaluationBatchSize));
        for (var pass = 0; pass < passes.Count; pass++)
        {
            var start = request.Start + passes.Start(pass);
            var count = passes.Length(pass);
            var indices = indexBuffer.AsSpan(0, count);
            for (var i = 0; i < count; i++) indices[i] = start + i;
            var inputs = inputBuffer.Get(count);
            var targets = targetBuffer.Get(count);
            data.Gather(indices, inputs, targets);
            var output = model.Forward(inputs);
            lossSum += _loss.Compute(output, targets, sinkBuffer.Get(count)) * count;
            var logits = output.ColumnMajorValues();
            for (var column = 0; column < count; column++)
                if (TensorPrimitives.IndexOfMax(logits.AsSpan(column * output.RowCount, output.RowCount)) == data.Labels[start + column])
                    correct++;
            scored += count;
        }
        _log.Debug("Worker {0} scored {1} test samples at version {2}", _workerIndex, scored, _version);
        Sender.Tell(new EvaluationResult(_version, _workerIndex, request.Start, scored, correct, lossSum, request.Split));
    }
}
