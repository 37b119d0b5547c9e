using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Compression;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// The parameter server node's stand-in for one remote worker. The coordinator and the parameter
/// server talk to it as if it were the worker: weights it writes to the worker's data-plane socket;
/// control messages (shards, evaluations) it forwards over Akka.Remote, keeping the original sender so
/// replies go straight back. A reader thread delivers the worker's gradients to the parameter server
/// with this actor as the sender. If the socket or the remote worker goes away, the link stops, and the
/// coordinator, which watches it, fails the job with the reason logged here.
/// </summary>
public sealed class WorkerLink : ReceiveActor, IWithStash
{
    /// <summary>The accepted data-plane connection of this worker.</summary>
    internal sealed record Attach(DataPlaneConnection Connection);

    private sealed record ReaderFailed(string Reason);

    private readonly int _workerIndex;
    private readonly IActorRef _remoteWorker;
    private readonly int _reportLength;
    private readonly GradientCompressionSettings? _compression;
    private readonly int _trainableLength;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly float[][] _gradientBuffers;
    private DataPlaneConnection? _connection;
    private volatile IActorRef _parameterServer = ActorRefs.Nobody;

    /// <summary>Creates the link; see <see cref="Props"/>.</summary>
    public WorkerLink(int workerIndex, IActorRef remoteWorker, int reportLength, GradientCompressionSettings? compression = null, int trainableLength = 0)
    {
        _compression = compression;
        _trainableLength = trainableLength;
        _workerIndex = workerIndex;
        _remoteWorker = remoteWorker;
        _reportLength = reportLength;
        // Two buffers in turn: a gradient is averaged before the worker can send its next one.
        _gradientBuffers = [new float[reportLength], new float[reportLength]];
        Receive<Attach>(OnAttach);
        Receive<WeightsUpdated>(OnWeights);
        Receive<ReaderFailed>(failed =>
        {
            _log.Warning("Worker {0}: data plane closed: {1}", _workerIndex, failed.Reason);
            Context.Stop(Self);
        });
        // Partitioned rather than crashed, a worker's socket stays open, so its link ends here when the node is downed.
        Receive<Terminated>(t =>
        {
            _log.Warning("Worker {0} ({1}) is gone (node left, crashed or was downed); the worker counts as lost.", _workerIndex, t.ActorRef.Path);
            Context.Stop(Self);
        });
        Receive<IDistTrainMessage>(message => _remoteWorker.Forward(message));
    }

    /// <inheritdoc />
    public IStash Stash { get; set; } = null!;

    /// <summary>Props of the link to worker <paramref name="workerIndex"/>.</summary>
    /// <param name="workerIndex">The worker's index.</param>
    /// <param name="remoteWorker">The worker actor on its node, for control messages.</param>
    /// <param name="reportLength">Floats of one gradient report.</param>
    /// <param name="compression">Cluster:Compression: the worker sends its reports' first <paramref name="trainableLength"/>
    /// floats encoded with these settings (null: float32 frames).</param>
    /// <param name="trainableLength">Floats of a report's gradient part, with <paramref name="compression"/>.</param>
    public static Props Props(int workerIndex, IActorRef remoteWorker, int reportLength, GradientCompressionSettings? compression = null, int trainableLength = 0) =>
        Akka.Actor.Props.Create(() => new WorkerLink(workerIndex, remoteWorker, reportLength, compression, trainableLength));

    /// <inheritdoc />
    protected override void PreStart() => Context.Watch(_remoteWorker);

    /// <inheritdoc />
    protected override void PostStop() => _connection?.Dispose();

    private void OnAttach(Attach attach)
    {
        _connection = attach.Connection;
        var self = Self;
        var next = 0;
        // A frame of another length is refused by its header, before anything is allocated (the connection closes).
        TensorFrame.StartReader(attach.Connection, $"dataplane-worker-{_workerIndex}", TensorFrame.GradientType, _reportLength,
            _ =>
            {
                var buffer = _gradientBuffers[next];
                next ^= 1;
                return buffer;
            },
            (header, buffer) => _parameterServer.Tell(new GradientComputed(header.Epoch, header.Round, header.WeightsVersion, header.WorkerIndex,
                header.SampleCount, header.LossSum, buffer, header.ComputeSeconds), self),
            reason => self.Tell(new ReaderFailed(reason)),
            _compression is null ? null : new CompressedGradientReader(_compression, _trainableLength));
        Stash.UnstashAll();
    }

    private void OnWeights(WeightsUpdated update)
    {
        if (_connection is null)
        {
            Stash.Stash();
            return;
        }
        _parameterServer = Sender;
        if (TensorFrame.TryWrite(_connection, TensorFrame.For(update), update.Weights) is { } failure)
        {
            // The worker's connection is gone (a killed process, a reset): the link stops, and its stop is how the
            // coordinator learns the worker is lost. Not an ERROR: that would fail a job that tolerates losing workers.
            _log.Warning("Worker {0}: sending weights failed, so its link closes and the worker counts as lost: {1}", _workerIndex, failure);
            Context.Stop(Self);
        }
    }
}
