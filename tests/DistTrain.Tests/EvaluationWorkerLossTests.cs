using Akka.Actor;
using Akka.Event;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Core.Data;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

/// <summary>
/// Cluster mode: every worker that held a finished epoch's weights is lost while that epoch is being evaluated, or right
/// after its last gradient, before the epoch's end reaches the coordinator. The workers that join afterwards must get
/// those weights and the ranges still unscored, so no epoch's accuracy is lost and the job does not stall.
/// </summary>
public class EvaluationWorkerLossTests() : TestKit(TestTimeouts.TestKitConfig)
{
    private static readonly ModelOptions Model = TestData.Mlp(8, 10);

    /// <summary>Hang guard for a training on a loaded 2-core machine; no assertion is about speed.</summary>
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(120);

    private readonly List<string> _directories = [];

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing)
            foreach (var directory in _directories) Directory.Delete(directory, recursive: true);
    }

    /// <summary>When a <see cref="DiesDuringEvaluation"/> worker node dies.</summary>
    public enum Death
    {
        /// <summary>When asked for its first evaluation, before scoring its range.</summary>
        BeforeScoring,

        /// <summary>Right after its first evaluation result went out.</summary>
        AfterScoring,

        /// <summary>Right after its last gradient of epoch 1 went out, before the epoch ends.</summary>
        AfterLastGradient,
    }

    /// <summary>
    /// A worker node that dies at <paramref name="death"/>. Until then it relays as cluster mode's link does: requests to
    /// the real worker inside, gradients to the parameter server and evaluation results to the coordinator.
    /// </summary>
    private sealed class DiesDuringEvaluation : ReceiveActor
    {
        private IActorRef _parameterServer = ActorRefs.Nobody;
        private IActorRef _coordinator = ActorRefs.Nobody;
        private int _lastRound = -1; // epoch 1's last round of this worker's shard

        public DiesDuringEvaluation(Props worker, Death death)
        {
            var replica = Context.ActorOf(worker, "replica");
            Receive<AssignShard>(shard =>
            {
                if (shard.Epoch == 1) _lastRound = shard.FirstRound + shard.Minibatches().Count - 1;
                replica.Forward(shard);
            });
            Receive<Evaluate>(request =>
            {
                if (death != Death.AfterScoring)
                {
                    Context.Stop(Self);
                    return;
                }
                _coordinator = Sender;
                replica.Tell(request);
            });
            Receive<EvaluationResult>(result =>
            {
                _coordinator.Tell(result);
                Context.Stop(Self);
            });
            Receive<WeightsUpdated>(weights =>
            {
                _parameterServer = Sender;
                replica.Tell(weights);
            });
            Receive<GradientComputed>(gradient =>
            {
                _parameterServer.Tell(gradient);
                if (death == Death.AfterLastGradient && gradient.Epoch == 1 && gradient.Round == _lastRound) Context.Stop(Self);
            });
            ReceiveAny(message => replica.Tell(message));
        }
    }

    /// <summary>
    /// The parameter server behind a relay that holds back epoch 1's end until every worker of that epoch has stopped and the
    /// coordinator has told the server of each loss (so it has handled each one): in cluster mode a worker node that dies
    /// right after its last gradient is noticed by the coordinator (its link stops) while the parameter server is still
    /// applying that gradient, so the coordinator learns of the loss first.
    /// </summary>
    private sealed class HoldsEpochEndUntilWorkersStop : ReceiveActor
    {
        private readonly HashSet<IActorRef> _running = [];
        private int _lost; // WorkerLost messages relayed from the coordinator
        private int _workers;
        private EpochCompleted? _held;

        public HoldsEpochEndUntilWorkersStop(Props parameterServer)
        {
            var server = Context.ActorOf(parameterServer, "server");
            Receive<StartEpoch>(start =>
            {
                if (start.Epoch == 1 && _workers == 0)
                {
                    foreach (var worker in start.Workers) _running.Add(Context.Watch(worker));
                    _workers = start.Workers.Length;
                }
                server.Tell(start, Self); // the server reports to its Sender: this relay
            });
            Receive<EpochCompleted>(completed => Sender.Equals(server) && completed.Epoch == 1 && (_running.Count > 0 || _lost < _workers), completed =>
            {
                _held = completed;
                Release();
            });
            Receive<Terminated>(stopped =>
            {
                _running.Remove(stopped.ActorRef);
                Release();
            });
            Receive<WorkerLost>(lost =>
            {
                server.Forward(lost);
                _lost++;
                Release();
            });
            ReceiveAny(message =>
            {
                if (Sender.Equals(server)) Context.Parent.Tell(message, Self);
                else server.Forward(message);
            });

            void Release()
            {
                if (_running.Count > 0 || _lost < _workers || _held is null) return;
                Context.Parent.Tell(_held, Self);
                _held = null;
            }
        }
    }

    private static CoordinatorSettings Settings(TrainingData data, ParameterLayout layout) =>
        new(3, 16, new ShardPlanner(data.Train.Count, 2, 1), data.Test.Count, layout, StallTimeout: TimeSpan.FromSeconds(20),
            PlannerFor: n => new ShardPlanner(data.Train.Count, n, 1), MinWorkers: 2, GlobalBatchSize: 32);

    private Props ParameterServerProps(ParameterVector weights, string trace) =>
        ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.05, Momentum = 0.9 }, totalEpochs: 3,
            new Core.Diagnostics.MonitoringOptions { GradientNormEverySteps = 0, SampleTraceDirectory = trace });

    private string TraceDirectory()
    {
        var directory = Directory.CreateTempSubdirectory("disttrain-trace-").FullName;
        _directories.Add(directory);
        return directory;
    }

    [Theory]
    [InlineData(Death.BeforeScoring)]
    [InlineData(Death.AfterScoring)]
    [InlineData(Death.AfterLastGradient)]
    public async Task Workers_that_join_after_every_evaluating_worker_was_lost_finish_the_evaluation_on_the_epochs_weights(Death death)
    {
        var data = TestData.Normalized();
        var model = ModelFactory.Build(Model);
        var weights = ModelFactory.InitialWeights(model, Model.Initializer, seed: 1);

        // The same job undisturbed: 2 workers, 3 epochs.
        var undisturbed = new TaskCompletionSource<TrainingResult>();
        Sys.ActorOf(Coordinator.Props(Settings(data, model.Layout), ParameterServerProps(weights, ""),
            [.. Enumerable.Range(0, 2).Select(i => Worker.Props(i, Model, data.Train, data.Test, 10))], NullTrainingObserver.Instance, undisturbed));
        var expected = await undisturbed.Task.WaitAsync(Guard);

        // Both workers die during epoch 1's evaluation (evaluation passes of 10 samples; AfterScoring: worker 0 scores its
        // range before it dies, so only worker 1's range is left), or both right after their last gradient of epoch 1, so
        // no worker alive holds its weights when the epoch ends. The job pauses below MinWorkers = 2.
        var trace = TraceDirectory();
        var log = CreateTestProbe();
        Sys.EventStream.Subscribe(log.Ref, typeof(Warning));
        var completion = new TaskCompletionSource<TrainingResult>();
        var dying = Enumerable.Range(0, 2).Select(i =>
        {
            var worker = Worker.Props(i, Model, data.Train, data.Test, 10, settings: new ReplicaSettings(SampleTraceDirectory: trace));
            var dies = death == Death.AfterScoring && i == 1 ? Death.BeforeScoring : death;
            return Props.Create(() => new DiesDuringEvaluation(worker, dies));
        }).ToArray();
        var server = ParameterServerProps(weights, trace);
        if (death == Death.AfterLastGradient) server = Props.Create(() => new HoldsEpochEndUntilWorkersStop(server));
        var coordinator = Sys.ActorOf(Coordinator.Props(Settings(data, model.Layout), server, dying, NullTrainingObserver.Instance, completion));
        log.FishForMessage<Warning>(w => w.Message.ToString()!.StartsWith("Training is paused at epoch 1: 0 of Cluster:MinWorkers = 2 workers; the evaluation of epoch 1 goes on", StringComparison.Ordinal),
            Guard, "the pause after both workers were lost");
        Assert.False(completion.Task.IsCompleted);

        // Two new workers join, as worker nodes registering with the job host do.
        for (var i = 2; i < 4; i++)
            coordinator.Tell(new AddWorker(Sys.ActorOf(Worker.Props(i, Model, data.Train, data.Test, 10, settings: new ReplicaSettings(SampleTraceDirectory: trace))), i));
        var result = await completion.Task.WaitAsync(Guard);

        // Every epoch's evaluation is on the same weights as undisturbed, so it scores the same: epoch 1's too.
        Assert.Equal(expected.Epochs.Select(e => e.Epoch), result.Epochs.Select(e => e.Epoch));
        for (var e = 0; e < expected.Epochs.Count; e++)
        {
            Assert.Equal(expected.Epochs[e].TestAccuracy, result.Epochs[e].TestAccuracy);
            Assert.Equal(data.Test.Count, result.Epochs[e].TestSamples);
            Compare.Close(expected.Epochs[e].TestLoss, result.Epochs[e].TestLoss, 1e-12, 0, $"epoch {e + 1}'s test loss");
            Assert.Equal(expected.Epochs[e].TrainLoss, result.Epochs[e].TrainLoss);
        }
        // No sample trained twice or skipped, and the run ends on the undisturbed run's weights.
        SampleTraceLog.AssertEverySampleOnceEachEpoch(trace, data.Train.Count, 3);
        Assert.Equal(expected.Version, result.Version);
        Compare.Identical(expected.FinalWeights.Values, result.FinalWeights.Values, "final weights");
    }
}
