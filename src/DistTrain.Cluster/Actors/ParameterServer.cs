using System.Diagnostics;
using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Protocol;
using System.Numerics.Tensors;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Diagnostics;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Actors;

/// <summary>Where and how often the parameter server writes checkpoints, and what fixes the data order they record.</summary>
/// <param name="Store">The checkpoint directory and its retention (Checkpoint:Directory, Checkpoint:Keep).</param>
/// <param name="EverySteps">Optimizer steps between checkpoints; 0 writes only at each epoch end (Checkpoint:EverySteps).</param>
/// <param name="JobId">The cluster job's identity, written into each checkpoint (<see cref="TrainingCheckpoint.JobId"/>); empty in single-node mode.</param>
/// <param name="ShardSeed">Seed of the shard planner (Training:Seed), recorded so a resume can check it.</param>
/// <param name="BatchSizePerWorker">Samples per worker minibatch, recorded likewise.</param>
public sealed record CheckpointSettings(CheckpointStore Store, int EverySteps, int ShardSeed, int BatchSizePerWorker, string JobId = "");

/// <summary>
/// Owns the master weights and the optimizer state. Each round it waits for the gradient of every
/// worker that has a minibatch in that round, averages them weighted by sample count, applies one
/// optimizer step (learning rate, momentum, L1 and L2 exactly once) and sends the new weights to
/// every worker.
/// </summary>
/// <remarks>
/// The average is <c>Σᵢ nᵢ gᵢ / Σᵢ nᵢ</c>, where <c>gᵢ</c> is worker i's mean gradient over <c>nᵢ</c> samples,
/// so N workers with batch b give the gradient of one batch of N·b samples, also for uneven shards.
/// Gradients are summed in worker-index order, so the result does not depend on arrival order.
/// A gradient for the wrong epoch, round or version, from an unexpected worker, twice, or of the wrong
/// length is logged, counted and never applied; the round keeps waiting for a valid gradient from
/// that worker, and the coordinator's stall timeout ends the job if none comes.
/// </remarks>
public sealed class ParameterServer : ReceiveActor
{
    private readonly ParameterVector _weights;
    private readonly Optimizer _optimizer;
    private readonly IReadOnlyList<ParameterGroupRange> _groups;
    private readonly LearningRateSchedule _schedule;
    private readonly OptimizerOptions _optimizerOptions;
    private readonly int _totalEpochs;
    private readonly float[][] _roundGradients;
    private readonly float[] _roundScales;
    // Weights go out in loaned arrays (see TrainingProtocol.cs), three used in turn: a round's array is
    // rewritten three versions later, and every replica copies it on receipt, before it can answer.
    private readonly WeightsUpdated[] _broadcasts;
    // Step reports are pooled: the coordinator sends each one back when it has handled it, so a slow
    // coordinator never sees a report rewritten under it; the pool only grows if it lags.
    private readonly Stack<RoundApplied> _freeReports = new(RoundApplied.PoolSize);
    // Managed bytes allocated by this actor's gradient handlers: the round in progress, and the whole of the
    // previous round (reported, since the current one is still running when its report goes out).
    private long _roundAllocatedBytes;
    private long _lastRoundAllocatedBytes;
    private bool _roundClosed;
    private long _dispatchAllocatedBytes; // inside Akka's Tell: left out of the step's count, as the worker's own send is
    private int _nextBroadcastBuffer;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly System.Diagnostics.TagList _metricTags = Metrics.DistTrainMetrics.Tags(NodeRoles.ParameterServer);
    private long _version;
    private StartEpoch? _epoch;
    private IActorRef _coordinator = ActorRefs.Nobody;
    private int _round;
    private GradientComputed?[] _received = [];
    private int[] _batches = [];
    private int _activeWorkers; // per worker: rounds of this epoch it has (absolute round numbers); shortened when it is lost
    private int _expected;
    private int _arrived;
    private long _roundStarted;
    private long _rejectedGradients;
    private readonly double _clipNorm;
    private readonly MonitoringOptions _monitoring;
    private Metrics.SampleTrace? _sampleTrace;
    private readonly int[] _traceWorkers = new int[MaxWorkers];
    private readonly GradientHealthMonitor _health;
    private readonly float[] _average;       // the averaged gradient, when it must exist whole (clipping, diagnostics)
    private readonly float[][] _averageList;
    private readonly float[] _clipScale = [1f];
    private int _epochSamples;
    private double _epochLossSum;
    private readonly CheckpointSettings? _checkpoints;
    private TrainingCheckpoint? _resumeFrom; // until the epoch it resumes starts
    private bool _checkpointDue;
    private bool _midEpochResumable;  // a mid-part checkpoint of this part resumes exactly (StartEpoch.MidEpochResumable, no loss since)
    private bool _partLeftSamples;    // a worker lost in this part left samples, so a further part of the epoch follows
    private readonly int _scalingWorkers;

    /// <summary>Creates the server with a copy of the version-0 weights, or of a checkpoint's; see <see cref="Props"/>.</summary>
    /// <exception cref="InvalidDataException"><paramref name="resumeFrom"/> does not fit the layout or the optimizer.</exception>
    public ParameterServer(ParameterVector initialWeights, OptimizerOptions optimizer, int totalEpochs, MonitoringOptions? monitoring = null,
        CheckpointSettings? checkpoints = null, TrainingCheckpoint? resumeFrom = null, int scalingWorkers = 0)
    {
        _scalingWorkers = scalingWorkers;
        if (resumeFrom is not null)
        {
            if (resumeFrom.Weights.Layout.TotalLength != initialWeights.Layout.TotalLength)
                throw new InvalidDataException($"The checkpoint holds {resumeFrom.Weights.Layout.TotalLength} weights, the model has {initialWeights.Layout.TotalLength}.");
            initialWeights = new ParameterVector(initialWeights.Layout, resumeFrom.Weights.Values);
        }
        _checkpoints = checkpoints;
        _resumeFrom = resumeFrom;
        ArgumentOutOfRangeException.ThrowIfLessThan(totalEpochs, 1);
        _optimizerOptions = optimizer;
        _totalEpochs = totalEpochs;
        _schedule = new LearningRateSchedule(optimizer.Schedule);
        _clipNorm = optimizer.GradientClipNorm;
        _monitoring = monitoring ?? new MonitoringOptions { GradientNormEverySteps = 0 };
        _health = new GradientHealthMonitor(initialWeights.Layout, _monitoring);
        _average = new float[initialWeights.Layout.TrainableLength];
        _averageList = [_average];
        if (_monitoring.GradientNormEverySteps > 0) Metrics.DistTrainMetrics.WatchLayerHealth(_health.Latest);
        _weights = new ParameterVector(initialWeights.Layout, (float[])initialWeights.Values.Clone());
        var trainable = initialWeights.Layout.TrainableLength;
        _groups = ParameterGroups.Ranges(initialWeights.Layout, trainable, optimizer.DecayBiasAndNormParameters);
        _optimizer = Optimizer.Create(optimizer, trainable, _groups);
        if (resumeFrom is not null)
        {
            resumeFrom.RestoreOptimizer(_optimizer);
            _version = resumeFrom.Version;
        }
        // Every slot starts as the full version-0 vector: frozen tensors are never rewritten after this.
        _broadcasts = [.. Enumerable.Range(0, 3).Select(_ => new WeightsUpdated(0, 0, 0, (float[])initialWeights.Values.Clone()))];
        for (var i = 0; i < RoundApplied.PoolSize; i++) _freeReports.Push(new RoundApplied(0, 0, 0, 0, 0, default, 0));
        _roundGradients = new float[MaxWorkers][];
        _roundScales = new float[MaxWorkers];
        Receive<StartEpoch>(OnStartEpoch);
        Receive<GradientComputed>(OnGradient);
        Receive<WorkerLost>(OnWorkerLost);
        Receive<RoundApplied>(returned => _freeReports.Push(returned));
        Receive<GetWeights>(_ => Sender.Tell(new WeightsSnapshot(_version, (float[])_weights.Values.Clone())));
    }

    /// <summary>Most workers one server accepts (the validated range of Training:Workers).</summary>
    public const int MaxWorkers = 256;

    /// <inheritdoc />
    protected override void PreStart() => _sampleTrace = Metrics.SampleTrace.ForParameterServer(_monitoring.SampleTraceDirectory);

    /// <inheritdoc />
    protected override void PostStop() => _sampleTrace?.Dispose();

    /// <inheritdoc />
    protected override bool AroundReceive(Receive receive, object message)
    {
        var started = Stopwatch.GetTimestamp();
        var handled = base.AroundReceive(receive, message);
        Metrics.DistTrainMetrics.Handled(_metricTags, started);
        return handled;
    }

    /// <summary>Props of a parameter server that starts from <paramref name="initialWeights"/> (version 0), or from a checkpoint.</summary>
    /// <param name="initialWeights">Version-0 weights (copied); their layout names the model.</param>
    /// <param name="optimizer">Update rule, regularization and learning-rate schedule.</param>
    /// <param name="totalEpochs">Epochs of the run, which the schedule spans (Cosine anneals over all of them).</param>
    /// <param name="monitoring">Gradient diagnostics; null turns them off.</param>
    /// <param name="checkpoints">Where to write checkpoints; null writes none (and the step path stays allocation-free).</param>
    /// <param name="resumeFrom">A verified checkpoint to start from: its weights, optimizer state and version replace
    /// version 0, and the first epoch started at its position takes over its partial epoch's loss. Null starts fresh.</param>
    /// <param name="scalingWorkers">The worker count of the linear scaling rule (Optimizer:ScaleLearningRateByWorkers) when
    /// the global minibatch is kept constant as workers come and go (Training:KeepGlobalBatch): the workers the job started with.
    /// 0 scales by the workers taking part in the epoch.</param>
    public static Props Props(ParameterVector initialWeights, OptimizerOptions optimizer, int totalEpochs, MonitoringOptions? monitoring = null,
        CheckpointSettings? checkpoints = null, TrainingCheckpoint? resumeFrom = null, int scalingWorkers = 0) =>
        Akka.Actor.Props.Create(() => new ParameterServer(initialWeights, optimizer, totalEpochs, monitoring, checkpoints, resumeFrom, scalingWorkers));

    private void OnStartEpoch(StartEpoch start)
    {
        if (start.Workers.Length != start.BatchesPerWorker.Length || start.Workers.Length is 0 or > MaxWorkers || start.FirstRound < 0)
        {
            _log.Error("StartEpoch {0} names {1} workers and {2} batch counts from round {3}; they must match and be 1..{4}, the round >= 0. Ignored.",
                start.Epoch, start.Workers.Length, start.BatchesPerWorker.Length, start.FirstRound, MaxWorkers);
            return;
        }
        _epoch = start;
        _coordinator = Sender;
        _round = start.FirstRound;
        _epochSamples = 0;
        _epochLossSum = 0;
        if (_resumeFrom is { } resumed && resumed.Epoch == start.Epoch && resumed.Round == start.FirstRound)
        {
            // The rounds before the checkpoint ran before the interruption: their samples and loss count in this epoch.
            _epochSamples = resumed.EpochSamples;
            _epochLossSum = resumed.EpochLossSum;
        }
        _resumeFrom = null;
        _received = new GradientComputed?[start.Workers.Length];
        _batches = (int[])start.BatchesPerWorker.Clone();
        _activeWorkers = start.Workers.Count(w => !w.IsNobody()); // lost workers' slots hold Nobody
        _midEpochResumable = start.MidEpochResumable;
        _partLeftSamples = false;
        // Size every pooled report for this worker count now, not in a round: a report the coordinator has not returned
        // yet makes a round take a fresh one from the pool, and sizing it there would allocate inside the step.
        foreach (var report in _freeReports) report.ForWorkers(start.Workers.Length);
        _weights.Values.CopyTo(NextBroadcastBuffer(), 0);
        BeginRound();
    }

    private float[] NextBroadcastBuffer() => _broadcasts[_nextBroadcastBuffer].Weights;

    /// <summary>Sends the weights in <see cref="NextBroadcastBuffer"/> (already filled) to every worker.</summary>
    private void BeginRound()
    {
        var epoch = _epoch!;
        Array.Clear(_received);
        _arrived = 0;
        _expected = 0;
        foreach (var batches in _batches)
            if (batches > _round) _expected++;
        // Every replica receives every version, so evaluation can run on any of them.
        var update = _broadcasts[_nextBroadcastBuffer].Reuse(epoch.Epoch, _round, _version, Stopwatch.GetTimestamp());
        _nextBroadcastBuffer = (_nextBroadcastBuffer + 1) % _broadcasts.Length;
        _roundStarted = Stopwatch.GetTimestamp();
        foreach (var worker in epoch.Workers)
            Send(worker, update);
        if (_expected == 0)
        {
            var (l1, l2) = RegularizationPenalties();
            Send(_coordinator, new EpochCompleted(epoch.Epoch, _version, _epochSamples, _epochLossSum, l1, l2));
        }
    }

    private void OnGradient(GradientComputed gradient)
    {
        var allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        try
        {
            Accept(gradient);
        }
        finally
        {
            _roundAllocatedBytes += GC.GetAllocatedBytesForCurrentThread() - allocatedBefore - _dispatchAllocatedBytes;
            _dispatchAllocatedBytes = 0;
            if (_roundClosed)
            {
                _lastRoundAllocatedBytes = _roundAllocatedBytes;
                _roundAllocatedBytes = 0;
                _roundClosed = false;
            }
        }
        // Outside the measured step: a checkpoint allocates (its header, the hash) and takes I/O time.
        if (_checkpointDue)
        {
            _checkpointDue = false;
            WriteCheckpoint();
        }
    }

    /// <summary>
    /// Writes a checkpoint of the weights and optimizer state after the step just applied. The next broadcast has
    /// already gone out, so the workers compute while the file is written; the weights change only in this actor.
    /// Position: the next round, or after an epoch's last round the next epoch's round 0.
    /// </summary>
    private void WriteCheckpoint()
    {
        var settings = _checkpoints!;
        var epoch = _epoch!;
        var epochDone = EpochDone();
        var checkpoint = new TrainingCheckpoint(_weights, _optimizer.State, _optimizerOptions.Kind, _optimizer.StepCount, _version,
            epochDone ? epoch.Epoch + 1 : epoch.Epoch, epochDone ? 0 : _round, settings.ShardSeed, epoch.Workers.Length,
            settings.BatchSizePerWorker, epochDone ? 0 : _epochSamples, epochDone ? 0 : _epochLossSum, settings.JobId,
            _optimizerOptions.StateHyperparameters());
        var started = Stopwatch.GetTimestamp();
        var path = settings.Store.Save(checkpoint);
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var bytes = new FileInfo(path).Length;
        _log.Info("Checkpoint {0}: version {1}, next epoch {2} round {3}, {4:N0} bytes in {5:F1} ms", path, _version,
            checkpoint.Epoch, checkpoint.Round, bytes, seconds * 1000);
        _coordinator.Tell(new CheckpointSaved(path, _version, checkpoint.Epoch, checkpoint.Round, bytes, seconds), Self);
    }

    /// <summary>
    /// The step just applied was the epoch's last: its part has no rounds left and no lost worker left samples for a
    /// further part. Only then is "next epoch, round 0" an exact position to resume from.
    /// </summary>
    private bool EpochDone()
    {
        if (_partLeftSamples) return false;
        foreach (var last in _batches)
            if (last > _round) return false;
        return true;
    }

    private static int StepsPerEpoch(StartEpoch epoch)
    {
        if (epoch.StepsPerEpoch > 0) return epoch.StepsPerEpoch;
        var steps = 1;
        foreach (var batches in epoch.BatchesPerWorker) steps = Math.Max(steps, batches);
        return steps;
    }

    private void Accept(GradientComputed gradient)
    {
        var problem = Validate(gradient);
        if (problem is not null)
        {
            _rejectedGradients++;
            _log.Warning("Rejected gradient from worker {0} ({1}): {2}. Rejected so far: {3}. The round still waits for a valid one.",
                gradient.WorkerIndex, Sender.Path, problem, _rejectedGradients);
            return;
        }
        _received[gradient.WorkerIndex] = gradient;
        if (++_arrived < _expected) return;
        CompleteRound();
    }

    /// <summary>
    /// A worker is gone (its node died). The round stops waiting for it; the rounds it had left are reported to the
    /// coordinator, which gives their samples to the remaining workers, so the epoch still uses every sample once.
    /// </summary>
    private void OnWorkerLost(WorkerLost lost)
    {
        var index = lost.WorkerIndex;
        if (_epoch is null || index < 0 || index >= _batches.Length)
        {
            Sender.Tell(new WorkerRemoved(index, 0));
            return;
        }
        // Only a worker the open round still waits for changes the round. After an epoch's last round (its closing
        // broadcast, when EpochCompleted has already gone out) nobody is waited for, and nothing must end twice.
        var awaited = _received[index] is null && _batches[index] > _round;
        var firstUnused = _received[index] is not null ? _round + 1 : Math.Min(_batches[index], _round);
        if (awaited) _expected--;
        _midEpochResumable = false;
        if (firstUnused < _batches[index]) _partLeftSamples = true;
        _batches[index] = Math.Min(_batches[index], firstUnused);
        Sender.Tell(new WorkerRemoved(index, firstUnused));
        _log.Warning("Worker {0} lost in epoch {1} round {2}: the round continues without it; its rounds from {3} go to the other workers.",
            index, _epoch.Epoch, _round, firstUnused);
        if (!awaited) return;
        if (_expected == 0 && _arrived == 0)
        {
            // Nobody is left in this round (and so in any later one): this part of the epoch ends here.
            var (l1, l2) = RegularizationPenalties();
            Send(_coordinator, new EpochCompleted(_epoch.Epoch, _version, _epochSamples, _epochLossSum, l1, l2));
            _batches = new int[_received.Length];
        }
        else if (_expected > 0 && _arrived >= _expected) CompleteRound();
    }

    /// <summary>Every expected gradient of the round is in: average, update, report, start the next round.</summary>
    private void CompleteRound()
    {

        var updateStarted = Stopwatch.GetTimestamp();
        var samples = 0;
        var lossSum = 0.0;
        var maxCompute = 0.0;
        var sumCompute = 0.0;
        var workerAllocated = 0L;
        foreach (var g in _received)
            if (g is not null)
            {
                samples += g.SampleCount;
                lossSum += g.LossSum;
                maxCompute = Math.Max(maxCompute, g.ComputeSeconds);
                sumCompute += g.ComputeSeconds;
                workerAllocated = Math.Max(workerAllocated, g.AllocatedBytes);
            }
        var contributors = 0;
        foreach (var g in _received)
            if (g is not null)
            {
                _roundGradients[contributors] = g.Gradient;
                _roundScales[contributors++] = (float)g.SampleCount / samples;
            }
        if (!double.IsFinite(lossSum)) Diverged("a NaN or infinite loss");
        var learningRate = LearningRate();
        var finite = Step(contributors, (float)learningRate);
        if (finite) finite = MergeRunningStatistics(contributors);
        Array.Clear(_roundGradients);
        if (!finite) Diverged("a NaN or infinite averaged gradient or BatchNorm running statistic");
        if (_sampleTrace is not null) TraceStep();
        _version++;
        _epochSamples += samples;
        _epochLossSum += lossSum;
        var finished = Stopwatch.GetTimestamp();
        var timing = new RoundTiming(
            RoundSeconds: Stopwatch.GetElapsedTime(_roundStarted, finished).TotalSeconds,
            MaxComputeSeconds: maxCompute,
            MeanComputeSeconds: sumCompute / _expected,
            UpdateSeconds: Stopwatch.GetElapsedTime(updateStarted, finished).TotalSeconds,
            WorkerAllocatedBytes: workerAllocated,
            ServerAllocatedBytes: _lastRoundAllocatedBytes);
        _roundClosed = true;
        var report = (_freeReports.Count > 0 ? _freeReports.Pop() : new RoundApplied(0, 0, 0, 0, 0, default, 0))
            .Reuse(_epoch!.Epoch, _round, _version, samples, lossSum, timing, learningRate).ForWorkers(_received.Length);
        for (var i = 0; i < _received.Length; i++)
        {
            var g = _received[i];
            report.WorkerLosses[i] = g is null ? double.NaN : g.LossSum / Math.Max(1, g.SampleCount);
            report.WorkerComputeSeconds[i] = g?.ComputeSeconds ?? 0;
            report.WorkerQueueingSeconds[i] = g?.QueueingSeconds ?? 0;
        }
        Send(_coordinator, report);
        _round++;
        if (_checkpoints is not null)
            _checkpointDue = EpochDone() || (_midEpochResumable && _checkpoints.EverySteps > 0 && _version % _checkpoints.EverySteps == 0);
        BeginRound();
    }

    /// <summary>Writes the step being applied, on weights <see cref="_version"/>, and the workers whose gradients it averaged.</summary>
    private void TraceStep()
    {
        var count = 0;
        for (var i = 0; i < _received.Length; i++)
            if (_received[i] is not null) _traceWorkers[count++] = i;
        _sampleTrace!.Step(_epoch!.Epoch, _round, _version, _traceWorkers.AsSpan(0, count));
    }

    /// <summary>
    /// The regularization terms the optimizer adds, reported apart from the data loss: <c>λ₁ Σ|w|</c> and
    /// <c>λ₂/2 Σw²</c> over the decayed groups of the current weights.
    /// </summary>
    private (double L1, double L2) RegularizationPenalties()
    {
        double absolute = 0, squares = 0;
        foreach (var group in _groups)
        {
            if (!group.Decay) continue;
            var w = _weights.Values.AsSpan(group.Offset, group.Length);
            absolute += TensorPrimitives.SumOfMagnitudes(w);
            squares += TensorPrimitives.SumOfSquares(w);
        }
        return (_optimizerOptions.L1 * absolute, _optimizerOptions.L2 / 2 * squares);
    }

    /// <summary><c>target = Σₖ scaleₖ · reportₖ[offset, offset + target.Length)</c> over this round's reports, in worker order.</summary>
    private void WeightedSum(int contributors, int offset, Span<float> target)
    {
        TensorPrimitives.Multiply(_roundGradients[0].AsSpan(offset, target.Length), _roundScales[0], target);
        for (var k = 1; k < contributors; k++)
            TensorPrimitives.MultiplyAdd(_roundGradients[k].AsSpan(offset, target.Length), _roundScales[k], target, target);
    }

    private Span<float> Trainable(float[] values) => values.AsSpan(0, _weights.Layout.TrainableLength);

    /// <summary>
    /// The running statistics (BatchNorm's running mean and variance) that follow the gradients in each report become
    /// the sample-weighted average of the replicas' values, in this server's weights and the next broadcast, so every
    /// replica continues from the same statistics and the saved model has one set (docs/architecture.md).
    /// </summary>
    /// <returns>False when a merged statistic is NaN or infinite (the run then stops as diverged).</returns>
    private bool MergeRunningStatistics(int contributors)
    {
        var layout = _weights.Layout;
        if (!layout.HasRunningStatistics) return true;
        var statistics = _weights.Values.AsSpan(layout.TrainableLength, layout.WorkerReportLength - layout.TrainableLength);
        WeightedSum(contributors, layout.TrainableLength, statistics);
        statistics.CopyTo(NextBroadcastBuffer().AsSpan(layout.TrainableLength));
        return float.IsFinite(TensorPrimitives.Sum(statistics));
    }

    /// <summary>
    /// One update. Usually a single cache-blocked pass that averages, regularizes, steps and writes the next
    /// broadcast copy. When clipping is on, or on a diagnostics step, the average is first formed whole,
    /// its global norm clips it (once, here), and the per-tensor norms are measured around the update.
    /// </summary>
    private bool Step(int contributors, float learningRate)
    {
        var every = _monitoring.GradientNormEverySteps;
        var measure = every > 0 && (_version + 1) % every == 0;
        if (!measure && _clipNorm <= 0)
            return _optimizer.StepWeightedAverage(Trainable(_weights.Values), _roundGradients.AsSpan(0, contributors),
                _roundScales.AsSpan(0, contributors), learningRate, Trainable(NextBroadcastBuffer()));

        WeightedSum(contributors, 0, _average);
        var norm = GradientHealthMonitor.GlobalNorm(_average);
        _clipScale[0] = GradientHealthMonitor.ClipScale(norm, _clipNorm);
        if (_clipScale[0] < 1f) Metrics.DistTrainMetrics.RecordClippedStep();
        // The weights before this step are the ones this round broadcast (the previous ring slot).
        var before = _broadcasts[(_nextBroadcastBuffer + _broadcasts.Length - 1) % _broadcasts.Length].Weights;
        var finite = _optimizer.StepWeightedAverage(Trainable(_weights.Values), _averageList, _clipScale, learningRate, Trainable(NextBroadcastBuffer()));
        if (measure && finite)
            foreach (var warning in _health.Measure(_version + 1, _average, before, _weights.Values))
                _log.Warning(warning);
        return finite;
    }

    /// <summary>
    /// This round's learning rate: the schedule at this optimizer step (the version it updates; warmup counts these) and
    /// at (epoch, round) over the epoch's planned steps (the main schedule), from the base rate, times the epoch's workers
    /// under the linear scaling rule.
    /// </summary>
    private double LearningRate()
    {
        var epoch = _epoch!;
        var stepsPerEpoch = StepsPerEpoch(epoch);
        var workers = _scalingWorkers > 0 ? _scalingWorkers : _activeWorkers;
        var baseRate = _optimizerOptions.LearningRate * (_optimizerOptions.ScaleLearningRateByWorkers ? workers : 1);
        return _schedule.At(new SchedulePosition(_version, Math.Max(0, epoch.Epoch - 1), _round, stepsPerEpoch), _totalEpochs, baseRate);
    }

    /// <summary>
    /// Sends a message. The bytes Akka's dispatch allocates (mailbox enqueue, scheduling the receiver; a few
    /// dozen bytes, rarely) are kept out of the step's allocation count, as for the worker's send.
    /// </summary>
    private void Send(IActorRef to, object message)
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        to.Tell(message, Self);
        _dispatchAllocatedBytes += GC.GetAllocatedBytesForCurrentThread() - before;
    }

    /// <summary>
    /// Stops training: names the epoch, the step, the workers whose loss or gradient is not finite and the
    /// first tensor whose gradient is not, and hands over the last good weights. The weights of this round
    /// produced the non-finite values, so the last good ones are the previous round's (still in the
    /// broadcast ring), or version 0's at the first step.
    /// </summary>
    private void Diverged(string what)
    {
        var workers = new List<string>();
        string? tensor = null;
        for (var i = 0; i < _received.Length; i++)
        {
            var g = _received[i];
            if (g is null) continue;
            var badLoss = !double.IsFinite(g.LossSum);
            var badSegment = _weights.Layout.Segments.FirstOrDefault(s => s.Offset + s.Length <= g.Gradient.Length && !AllFinite(g.Gradient.AsSpan(s.Offset, s.Length)));
            if (badLoss || badSegment is not null) workers.Add($"{i} (loss {g.LossSum / Math.Max(1, g.SampleCount):G4})");
            tensor ??= badSegment?.Name;
        }
        var ring = _broadcasts.Length;
        var current = _broadcasts[(_nextBroadcastBuffer + ring - 1) % ring];
        var previous = _broadcasts[(_nextBroadcastBuffer + ring - 2) % ring];
        var (good, goodVersion) = _version > 0 && previous.Version == _version - 1
            ? ((float[])previous.Weights.Clone(), _version - 1)
            : ((float[])current.Weights.Clone(), _version);
        throw new TrainingDivergedException(
            $"Training diverged at epoch {_epoch!.Epoch}, step {_round} (weights version {_version}): {what}. " +
            $"Workers affected: {(workers.Count > 0 ? string.Join(", ", workers) : "none alone; the average overflowed")}. " +
            $"First tensor with a non-finite gradient: {tensor ?? "none (the loss overflowed first)"}. " +
            "Lower Optimizer:LearningRate, set Optimizer:GradientClipNorm, or check the input normalization.", good, goodVersion);
    }

    private static bool AllFinite(ReadOnlySpan<float> values)
    {
        foreach (var v in values)
            if (!float.IsFinite(v)) return false;
        return true;
    }

    private string? Validate(GradientComputed g)
    {
        if (_epoch is null) return "no epoch is running";
        if (g.Epoch != _epoch.Epoch || g.Round != _round) return $"it answers epoch {g.Epoch} round {g.Round}, but epoch {_epoch.Epoch} round {_round} is open";
        if (g.Version != _version) return $"it was computed on version {g.Version}, the current version is {_version}";
        if (g.WorkerIndex < 0 || g.WorkerIndex >= _epoch.Workers.Length) return $"worker index {g.WorkerIndex} is outside 0..{_epoch.Workers.Length - 1}";
        if (!_epoch.Workers[g.WorkerIndex].Equals(Sender)) return $"the sender is not worker {g.WorkerIndex}";
        if (_batches[g.WorkerIndex] <= _round) return "that worker has no minibatch in this round";
        if (_received[g.WorkerIndex] is not null) return "a gradient from that worker already arrived this round";
        if (g.Gradient.Length != _weights.Layout.WorkerReportLength) return $"it has {g.Gradient.Length} elements, the model reports {_weights.Layout.WorkerReportLength} (trainable gradients, then running statistics)";
        if (g.SampleCount <= 0) return $"its sample count is {g.SampleCount}";
        return null;
    }
}
