using System.Diagnostics;
using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Data;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Actors;

/// <summary>What the coordinator needs to run a job.</summary>
/// <param name="Epochs">Epochs to train.</param>
/// <param name="BatchSizePerWorker">Samples per worker minibatch.</param>
/// <param name="Planner">Shard planner over the training set, one shard per worker.</param>
/// <param name="TestSampleCount">Size of the test set; evaluation must score exactly this many.</param>
/// <param name="Layout">Layout of the weights, for the result.</param>
public sealed record CoordinatorSettings(int Epochs, int BatchSizePerWorker, IShardPlanner Planner, int TestSampleCount, ParameterLayout Layout);

/// <summary>
/// Runs one job: starts the parameter server and the workers as its children, plans every epoch's
/// shards, evaluates after every epoch (each test sample scored exactly once, split across the
/// workers), reports progress to an <see cref="ITrainingObserver"/>, and completes a task with the
/// final weights.
/// </summary>
/// <remarks>
/// A child that throws is stopped, not restarted (a restarted replica would lose its place in the
/// round and the job would hang); the job then fails with that child's exception.
/// </remarks>
public sealed class Coordinator : ReceiveActor
{
    private readonly CoordinatorSettings _settings;
    private readonly ITrainingObserver _observer;
    private readonly TaskCompletionSource<TrainingResult> _completion;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly IActorRef _parameterServer;
    private readonly IActorRef[] _workers;
    private readonly List<EpochSummary> _summaries = [];
    private readonly Stopwatch _clock = new();
    private Exception? _childFailure;
    private int _epoch;
    private EpochCompleted? _trained;
    private double _trainSeconds;
    private int _evaluationsPending;
    private int _evaluatedSamples;
    private int _correct;
    private double _testLossSum;

    /// <summary>Creates the coordinator; see <see cref="Props"/>.</summary>
    public Coordinator(CoordinatorSettings settings, Props parameterServer, IReadOnlyList<Props> workers,
        ITrainingObserver observer, TaskCompletionSource<TrainingResult> completion)
    {
        _settings = settings;
        _observer = observer;
        _completion = completion;
        _parameterServer = Context.Watch(Context.ActorOf(parameterServer, "parameter-server"));
        _workers = workers.Select((props, i) => Context.Watch(Context.ActorOf(props, $"worker-{i}"))).ToArray();

        Receive<RoundApplied>(r =>
            _observer.StepApplied(r.Epoch, r.Round, r.Version, r.SampleCount, r.LossSum / Math.Max(1, r.SampleCount), r.Timing));
        Receive<EpochCompleted>(OnEpochTrained);
        Receive<EvaluationResult>(OnEvaluationResult);
        Receive<WeightsSnapshot>(OnFinalWeights);
        Receive<Terminated>(OnChildTerminated);
    }

    /// <summary>Props of a job. <paramref name="completion"/> receives the result or the failure.</summary>
    public static Props Props(CoordinatorSettings settings, Props parameterServer, IReadOnlyList<Props> workers,
        ITrainingObserver observer, TaskCompletionSource<TrainingResult> completion) =>
        Akka.Actor.Props.Create(() => new Coordinator(settings, parameterServer, workers, observer, completion));

    /// <inheritdoc />
    protected override SupervisorStrategy SupervisorStrategy() =>
        new OneForOneStrategy(exception =>
        {
            _childFailure ??= exception;
            return Directive.Stop;
        });

    /// <inheritdoc />
    protected override void PreStart() => StartNextEpoch();

    /// <inheritdoc />
    protected override void PostStop() =>
        _completion.TrySetException(new InvalidOperationException("The coordinator stopped before training completed."));

    private void StartNextEpoch()
    {
        _epoch++;
        var shards = _settings.Planner.Plan(_epoch);
        var batches = new int[_workers.Length];
        for (var i = 0; i < _workers.Length; i++)
        {
            _workers[i].Tell(new AssignShard(_epoch, shards[i], _settings.BatchSizePerWorker));
            batches[i] = (shards[i].Length + _settings.BatchSizePerWorker - 1) / _settings.BatchSizePerWorker;
        }
        _observer.EpochStarted(_epoch, batches.Max(), _settings.Planner.SampleCount);
        _clock.Restart();
        _parameterServer.Tell(new StartEpoch(_epoch, _workers, batches));
    }

    private void OnEpochTrained(EpochCompleted trained)
    {
        _trained = trained;
        _trainSeconds = _clock.Elapsed.TotalSeconds;
        _clock.Restart();
        _evaluationsPending = _workers.Length;
        _evaluatedSamples = 0;
        _correct = 0;
        _testLossSum = 0;
        var total = _settings.TestSampleCount;
        for (var i = 0; i < _workers.Length; i++)
        {
            var start = (int)((long)total * i / _workers.Length);
            var end = (int)((long)total * (i + 1) / _workers.Length);
            _workers[i].Tell(new Evaluate(trained.Version, start, end - start));
        }
    }

    private void OnEvaluationResult(EvaluationResult result)
    {
        _evaluatedSamples += result.SampleCount;
        _correct += result.Correct;
        _testLossSum += result.LossSum;
        if (--_evaluationsPending > 0) return;
        if (_evaluatedSamples != _settings.TestSampleCount)
        {
            Fail(new InvalidOperationException($"Evaluation scored {_evaluatedSamples} test samples, expected {_settings.TestSampleCount}."));
            return;
        }
        var trained = _trained!;
        var summary = new EpochSummary(_epoch, trained.Version,
            TrainLoss: trained.LossSum / Math.Max(1, trained.SampleCount),
            TestLoss: _testLossSum / Math.Max(1, _evaluatedSamples),
            TestAccuracy: (double)_correct / Math.Max(1, _evaluatedSamples),
            TestSamples: _evaluatedSamples,
            TrainSamples: trained.SampleCount,
            TrainSeconds: _trainSeconds,
            EvaluationSeconds: _clock.Elapsed.TotalSeconds);
        _summaries.Add(summary);
        _log.Info("Epoch {0}: train loss {1:F4}, test accuracy {2:P2}", summary.Epoch, summary.TrainLoss, summary.TestAccuracy);
        _observer.EpochCompleted(summary);
        if (_epoch < _settings.Epochs)
            StartNextEpoch();
        else
            _parameterServer.Tell(GetWeights.Instance);
    }

    private void OnFinalWeights(WeightsSnapshot snapshot)
    {
        _completion.TrySetResult(new TrainingResult(new ParameterVector(_settings.Layout, snapshot.Weights), snapshot.Version, _summaries));
        Context.Stop(Self);
    }

    private void OnChildTerminated(Terminated terminated)
    {
        var reason = _childFailure ?? new InvalidOperationException($"{terminated.ActorRef.Path.Name} stopped unexpectedly.");
        Fail(reason);
    }

    private void Fail(Exception reason)
    {
        _log.Error(reason, "Training failed: {0}", reason.Message);
        _completion.TrySetException(reason);
        Context.Stop(Self);
    }
}
