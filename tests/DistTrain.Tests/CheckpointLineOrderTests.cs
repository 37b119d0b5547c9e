using Akka.Actor;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Data;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;

namespace DistTrain.Tests;

/// <summary>
/// The checkpoint of an epoch's end is written while the workers score that epoch, so it reaches the coordinator before or
/// after the evaluation's last result. Its console line came before or after the epoch's line, whichever was first; the
/// coordinator now reports it after the epoch's line in both cases. Both arrival orders are forced here by relays, not by timing.
/// </summary>
public sealed class CheckpointLineOrderTests() : TestKit(TestTimeouts.TestKitConfig)
{
    private static readonly ModelOptions Model = TestData.Mlp(8, 10);

    /// <summary>Hang guard for a training on a loaded 2-core machine; no assertion is about speed.</summary>
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(120);

    /// <summary>The lines the console would print, in order: epochs and checkpoints.</summary>
    private sealed class LineObserver : ITrainingObserver
    {
        private readonly List<string> _lines = [];

        /// <summary>Completed once epoch 2's line is out.</summary>
        public TaskCompletionSource Epoch2Reported { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public IReadOnlyList<string> Lines
        {
            get
            {
                lock (_lines) return [.. _lines];
            }
        }

        public void EpochStarted(int epoch, int steps, int samples) { }

        public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing) { }

        public void EpochCompleted(EpochSummary summary)
        {
            lock (_lines) _lines.Add($"epoch {summary.Epoch}");
            if (summary.Epoch == 2) Epoch2Reported.TrySetResult();
        }

        public void CheckpointSaved(CheckpointSaved checkpoint)
        {
            lock (_lines) _lines.Add($"checkpoint of next epoch {checkpoint.Epoch} round {checkpoint.Round}");
        }
    }

    /// <summary>
    /// The parameter server behind a relay. Epoch 1's end checkpoint is passed on at once, and <paramref name="epoch1Checkpoint"/>
    /// completed after it is in the coordinator's mailbox. From epoch 2's end checkpoint on, what the server sends is held, in
    /// order, until <paramref name="epoch2Reported"/>: as if that write ended after the epoch's evaluation.
    /// </summary>
    private sealed class ServerRelay : ReceiveActor
    {
        private readonly Queue<object> _held = new();
        private bool _holding;

        public ServerRelay(Props parameterServer, TaskCompletionSource epoch1Checkpoint, Task epoch2Reported)
        {
            var server = Context.ActorOf(parameterServer, "server");
            Receive<Release>(_ =>
            {
                _holding = false;
                while (_held.TryDequeue(out var message)) Context.Parent.Tell(message, Self);
            });
            ReceiveAny(message =>
            {
                if (!Sender.Equals(server))
                {
                    server.Tell(message, Self); // the server answers its Sender: this relay
                    return;
                }
                if (message is CheckpointSaved { Epoch: 3, Round: 0 })
                {
                    _holding = true;
                    epoch2Reported.ContinueWith(_ => Release.Instance, TaskScheduler.Default).PipeTo(Self);
                }
                if (_holding)
                {
                    _held.Enqueue(message);
                    return;
                }
                Context.Parent.Tell(message, Self);
                if (message is CheckpointSaved { Epoch: 2, Round: 0 }) epoch1Checkpoint.TrySetResult();
            });
        }

        private sealed class Release
        {
            public static readonly Release Instance = new();
        }
    }

    /// <summary>
    /// A worker behind a relay (as cluster mode's link): it scores epoch 1 only once that epoch's end checkpoint is in the
    /// coordinator's mailbox, so the checkpoint arrives while the epoch is being scored.
    /// </summary>
    private sealed class WorkerRelay : ReceiveActor
    {
        public WorkerRelay(Props worker, Task epoch1Checkpoint)
        {
            var replica = Context.ActorOf(worker, "replica");
            IActorRef parameterServer = ActorRefs.Nobody;
            Receive<Evaluate>(request =>
            {
                if (epoch1Checkpoint.IsCompleted) replica.Forward(request); // the result goes to the coordinator
                else epoch1Checkpoint.ContinueWith(_ => request, TaskScheduler.Default).PipeTo(Self, Sender);
            });
            Receive<GradientComputed>(gradient => parameterServer.Tell(gradient));
            ReceiveAny(message =>
            {
                if (!Sender.Equals(Context.Parent)) parameterServer = Sender; // weights from the parameter server
                replica.Tell(message);
            });
        }
    }

    [Fact]
    public async Task An_epochs_checkpoint_line_comes_after_the_epochs_line_whether_it_is_written_before_or_after_the_evaluation()
    {
        var directory = Directory.CreateTempSubdirectory("disttrain-checkpoint-order-").FullName;
        try
        {
            var data = TestData.Normalized();
            var model = ModelFactory.Build(Model);
            var weights = ModelFactory.InitialWeights(model, Model.Initializer, seed: 1);
            var checkpoints = new CheckpointSettings(new Core.Checkpoints.CheckpointStore(directory, 3), EverySteps: 0, ShardSeed: 1, BatchSizePerWorker: 16);
            var observer = new LineObserver();
            var epoch1Checkpoint = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var innerServer = ParameterServer.Props(weights, new OptimizerOptions { LearningRate = 0.05 }, totalEpochs: 2, checkpoints: checkpoints);
            var epoch2Reported = observer.Epoch2Reported.Task;
            var server = Props.Create(() => new ServerRelay(innerServer, epoch1Checkpoint, epoch2Reported));
            var innerWorker = Worker.Props(0, Model, data.Train, data.Test, 100);
            var scored = epoch1Checkpoint.Task;
            var worker = Props.Create(() => new WorkerRelay(innerWorker, scored));
            var settings = new CoordinatorSettings(2, 16, new ShardPlanner(data.Train.Count, 1, 1), data.Test.Count, model.Layout,
                StallTimeout: TimeSpan.FromSeconds(60));
            var completion = new TaskCompletionSource<TrainingResult>();
            Sys.ActorOf(Coordinator.Props(settings, server, [worker], observer, completion));

            var result = await completion.Task.WaitAsync(Guard);
            Assert.Equal([1, 2], result.Epochs.Select(e => e.Epoch));
            // Epoch 1's checkpoint reached the coordinator during the epoch's evaluation, epoch 2's after its line: the same order.
            Assert.Equal(["epoch 1", "checkpoint of next epoch 2 round 0", "epoch 2", "checkpoint of next epoch 3 round 0"], observer.Lines);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
