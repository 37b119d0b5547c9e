using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Core.Compression;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// The parameter server node's stand-in for one remote worker. The coordinator and the parameter
/// server talk to it as if it were the worker: weights it writes to the worker's data-plane socket;
/// control messages (shards, evaluations) it forwards over Akka.Remote, keeping the original sender so
/// replies go straight back. A reader thread delivers the worker's gradients to the parameter server
/// with this actor as the sender. If the socket or the remote worker goes away, the link stops, and the
/// coordinator, which watches it, fails the job with the reason logged here.
/// <para>With Cluster:SharedMemory and a worker connecting from this host, the link's first frame offers the worker a
/// <see cref="SharedMemoryRegion"/>; weights
/// wait (stashed) until the worker's answer, and if it mapped the region, bodies go both ways through its slots while
/// the socket carries the headers. A worker that does not answer within <see cref="NegotiationTimeout"/> loses
/// its link.</para>
/// <para>On a shard node (<see cref="ShardDataPlane"/>, made with <see cref="ForShard"/>) the link stands for one worker at
/// one <see cref="ParameterShardActor"/>: it writes the shard's <see cref="ShardWeights"/> as
/// <see cref="TensorFrame.ShardWeightsType"/> frames, its reader delivers the worker's slices (gradient frames of the
/// slice's length) to the shard with this actor as the sender, there is no shared memory and no compression, and when the
/// reader refuses a frame the worker is sent the reason (<see cref="DataPlaneConnection.Refuse"/>) before the connection
/// closes.</para>
/// </summary>
public sealed class WorkerLink : ReceiveActor, IWithStash, IWithTimers
{
    /// <summary>The accepted data-plane connection of this worker.</summary>
    internal sealed record Attach(DataPlaneConnection Connection);

    /// <summary>The job is stopping (its parameter-server node was stopped): a worker whose node leaves now leaves with the stop, which is
    /// logged as such, not as a lost worker. From the job host only (a local actor).</summary>
    internal sealed record JobStopping
    {
        /// <summary>The one instance.</summary>
        public static readonly JobStopping Instance = new();
    }

    private sealed record ReaderFailed(string Reason);

    private sealed record Negotiated(SharedMemoryAnswer Answer);

    private sealed record NegotiationTimedOut;

    /// <summary>
    /// Weight slots offered: the worker loads its model straight from a slot and releases it only after its step, and may
    /// hold two sets of weights unhandled (an epoch's last and the next part's first go out without a report between
    /// them), so a third slot keeps the parameter server from waiting on either.
    /// </summary>
    internal const int WeightSlots = 3;

    /// <summary>Time a worker has to answer the shared-memory offer (tests shorten it through <see cref="Props"/>).</summary>
    public static readonly TimeSpan NegotiationTimeout = TimeSpan.FromSeconds(10);

    private readonly TimeSpan _negotiationTimeout;

    private readonly int _workerIndex;
    private readonly IActorRef _remoteWorker;
    private readonly int _reportLength;
    private readonly GradientCompressionSettings? _compression;
    private readonly int[] _trainableTensorLengths;
    private readonly int _trainableLength;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private float[][] _gradientBuffers = []; // two, allocated once a connection attaches (a shard node's spare slots have none)
    private DataPlaneConnection? _connection;
    private volatile IActorRef _parameterServer = ActorRefs.Nobody;
    private readonly int _weightsLength;
    private SharedMemoryRegion? _region;
    private SharedSlots? _weightSlots;
    private bool _negotiated;
    // A weight slot filled during the parameter server's update (WeightsInProgress), with the array and version it holds
    // a copy of, until the broadcast of that version comes and only its header goes out.
    private (float[] Weights, long Version, SharedSlotWrite Slot)? _filledEarly;
    private readonly ParameterShard? _shard;
    private readonly CompressedSlices? _compressedSlices; // a shard node's link under Cluster:Compression
    private bool _jobStopping;                            // JobStopping came: a worker that leaves now leaves with the stop

    /// <summary>Creates the link; see <see cref="Props"/> and <see cref="ForShard"/>.</summary>
    public WorkerLink(int workerIndex, IActorRef remoteWorker, int reportLength, GradientCompressionSettings? compression = null,
        int[]? trainableTensorLengths = null, int sharedMemoryWeightsLength = 0, TimeSpan? negotiationTimeout = null, ParameterShard? shard = null,
        CompressedSlices? compressedSlices = null)
    {
        _shard = shard;
        _compressedSlices = compressedSlices;
        _weightsLength = sharedMemoryWeightsLength;
        _negotiationTimeout = negotiationTimeout ?? NegotiationTimeout;
        _compression = compression;
        _trainableTensorLengths = trainableTensorLengths ?? [];
        _trainableLength = _trainableTensorLengths.Sum();
        _workerIndex = workerIndex;
        _remoteWorker = remoteWorker;
        _reportLength = reportLength;
        Receive<Attach>(OnAttach);
        Receive<WeightsUpdated>(OnWeights);
        Receive<ShardWeights>(OnShardWeights);
        Receive<WeightsInProgress>(OnWeightsInProgress);
        Receive<Negotiated>(OnNegotiated);
        Receive<NegotiationTimedOut>(_ =>
        {
            if (_negotiated) return;
            _log.Warning("Worker {0}: no answer to the shared-memory offer within {1} s; its link closes and the worker counts as lost.",
                _workerIndex, _negotiationTimeout.TotalSeconds);
            Context.Stop(Self);
        });
        Receive<ReaderFailed>(failed =>
        {
            if (_shard is not null)
            {
                // The worker is told why (a slice of another length, a frame that is not a slice), then the connection closes.
                _log.Warning("Shard {0}: worker {1}'s data plane closed: {2}", _shard.Index, _workerIndex, failed.Reason);
                _connection?.Refuse(failed.Reason);
                _connection = null;
            }
            else _log.Warning("Worker {0}: data plane closed: {1}", _workerIndex, failed.Reason);
            Context.Stop(Self);
        });
        // Partitioned rather than crashed, a worker's socket stays open, so its link ends here when the node is downed.
        Receive<JobStopping>(_ => _jobStopping = true);
        Receive<Terminated>(t =>
        {
            if (_jobStopping) _log.Info("Worker {0} ({1}) left as the job stops.", _workerIndex, t.ActorRef.Path);
            else _log.Warning("Worker {0} ({1}) is gone (node left, crashed or was downed); the worker counts as lost.", _workerIndex, t.ActorRef.Path);
            Context.Stop(Self);
        });
        Receive<IDistTrainMessage>(message => _remoteWorker.Forward(message));
    }

    /// <inheritdoc />
    public IStash Stash { get; set; } = null!;

    /// <inheritdoc />
    public ITimerScheduler Timers { get; set; } = null!;

    /// <summary>Props of the link to worker <paramref name="workerIndex"/>.</summary>
    /// <param name="workerIndex">The worker's index.</param>
    /// <param name="remoteWorker">The worker actor on its node, for control messages.</param>
    /// <param name="reportLength">Floats of one gradient report.</param>
    /// <param name="compression">Cluster:Compression: the worker sends its reports' gradient part (the first
    /// <paramref name="trainableTensorLengths"/> floats) encoded with these settings (null: float32 frames).</param>
    /// <param name="trainableTensorLengths">Floats of each tensor of a report's gradient part, in order
    /// (<see cref="Core.Tensors.ParameterLayout.TrainableTensorLengths"/>), with <paramref name="compression"/>.</param>
    /// <param name="sharedMemoryWeightsLength">Cluster:SharedMemory: floats of a weights message, to offer the worker a
    /// <see cref="SharedMemoryRegion"/> sized for them and for the reports; 0 (the default) offers none.</param>
    /// <param name="negotiationTimeout">Time the worker has to answer an offer; null: <see cref="NegotiationTimeout"/>.</param>
    public static Props Props(int workerIndex, IActorRef remoteWorker, int reportLength, GradientCompressionSettings? compression = null,
        int[]? trainableTensorLengths = null, int sharedMemoryWeightsLength = 0, TimeSpan? negotiationTimeout = null) =>
        Akka.Actor.Props.Create(() => new WorkerLink(workerIndex, remoteWorker, reportLength, compression, trainableTensorLengths, sharedMemoryWeightsLength,
            negotiationTimeout, null));

    /// <summary>
    /// Props of the link to worker <paramref name="workerIndex"/> on the node of shard <paramref name="shard"/>: it takes
    /// the worker's slices of <paramref name="shard"/>'s length and writes the shard's <see cref="ShardWeights"/>.
    /// </summary>
    /// <param name="workerIndex">The worker's slot.</param>
    /// <param name="shard">The shard's slice of the flat vector (<see cref="ParameterShards.Plan"/>).</param>
    /// <param name="compressed">Under Cluster:Compression, what the worker sends: the trainable part of each slice as its cut of
    /// the encoded gradient (<see cref="Core.Compression.GradientMessageSlice"/>), read with <see cref="CompressedGradientReader.ForSlice"/>;
    /// null: float32 slices.</param>
    /// <exception cref="ArgumentNullException"><paramref name="shard"/> is null.</exception>
    public static Props ForShard(int workerIndex, ParameterShard shard, CompressedSlices? compressed = null)
    {
        ArgumentNullException.ThrowIfNull(shard);
        return Akka.Actor.Props.Create(() => new WorkerLink(workerIndex, ActorRefs.Nobody, shard.Length, null, null, 0, null, shard, compressed));
    }

    /// <inheritdoc />
    protected override void PreStart()
    {
        if (!_remoteWorker.IsNobody()) Context.Watch(_remoteWorker); // a shard node's link has no worker actor to watch, only its connection
    }

    /// <inheritdoc />
    protected override void PostStop()
    {
        DropFilledEarly();
        _connection?.Dispose();
        _region?.Dispose();
    }

    private void OnAttach(Attach attach)
    {
        _connection = attach.Connection;
        // Two buffers in turn: a gradient is averaged before the worker can send its next one.
        if (_gradientBuffers.Length == 0) _gradientBuffers = [new float[_reportLength], new float[_reportLength]];
        var buffers = _gradientBuffers;
        var self = Self;
        var next = 0;
        var compressed = _compressedSlices is { } slices && _shard is { } sliced ? CompressedGradientReader.ForSlice(slices, sliced.TrainableLength)
            : _compression is null ? null : new CompressedGradientReader(_compression, _trainableTensorLengths);
        var region = _weightsLength > 0 && attach.Connection.PeerIsOnThisHost ? Offer(attach.Connection, compressed) : null;
        if (region is null && _connection is null) return; // writing the offer failed: the link is stopping
        // A frame of another length is refused by its header, before anything is allocated (the connection closes).
        TensorFrame.StartReader(attach.Connection, $"dataplane-worker-{_workerIndex}", TensorFrame.GradientType, _reportLength,
            _ =>
            {
                var buffer = buffers[next];
                next ^= 1;
                return buffer;
            },
            (header, buffer) => _parameterServer.Tell(new GradientComputed(header.Epoch, header.Round, header.WeightsVersion, header.WorkerIndex,
                header.SampleCount, header.LossSum, buffer, header.ComputeSeconds), self),
            reason =>
            {
                region?.Close(); // a write waiting for a slot gives up
                self.Tell(new ReaderFailed(reason));
            },
            compressed,
            negotiate: region is null ? null : () => ReadAnswer(attach.Connection, region, self),
            expectedCountIs: _shard is { } shard ? $"shard {shard.Index}'s slice [{shard.Start}, {shard.End})" : null);
        if (region is not null)
        {
            Timers.StartSingleTimer("negotiation", new NegotiationTimedOut(), _negotiationTimeout);
            return;
        }
        _negotiated = true;
        Stash.UnstashAll();
    }

    /// <summary>Creates a region for this worker and writes the offer; null if shared memory is not available here (or the
    /// write failed, and the link stops).</summary>
    private SharedMemoryRegion? Offer(DataPlaneConnection connection, CompressedGradientReader? compressed)
    {
        var gradientBytes = compressed is null ? (long)_reportLength * sizeof(float) : compressed.MessageBytes + (long)(_reportLength - _trainableLength) * sizeof(float);
        SharedMemoryRegion region;
        try
        {
            region = SharedMemoryRegion.Create(WeightSlots, (long)_weightsLength * sizeof(float), 2, gradientBytes);
        }
        catch (IOException e)
        {
            // SharedMemoryRegion.Create reports every failure as an IOException (no memfd, no memory, a mapping refused).
            _log.Info("Worker {0}: no shared memory offered ({1}); its tensors go over the data-plane connection.", _workerIndex, e.Message);
            return null;
        }
        try
        {
            TensorFrame.WriteNegotiation(connection.Stream, TensorFrame.SharedMemoryOfferType, _weightsLength, SharedMemoryOffer.Of(region).ToBytes());
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or System.Net.Sockets.SocketException)
        {
            region.Dispose();
            _log.Warning("Worker {0}: sending the shared-memory offer failed, so its link closes and the worker counts as lost: {1}", _workerIndex, e.Message);
            _connection = null;
            connection.Dispose();
            Context.Stop(Self);
            return null;
        }
        return _region = region;
    }

    /// <summary>On the reader thread: the worker's answer, the first frame it sends after an offer.</summary>
    private static SharedSlots? ReadAnswer(DataPlaneConnection connection, SharedMemoryRegion region, IActorRef self)
    {
        var answer = SharedMemoryAnswer.ReadFrame(connection.Stream, connection.Peer);
        self.Tell(new Negotiated(answer));
        return answer.Accepted ? region.Gradients : null;
    }

    private void OnNegotiated(Negotiated negotiated)
    {
        if (_negotiated || _region is null) return;
        _negotiated = true;
        Timers.Cancel("negotiation");
        if (negotiated.Answer.Accepted)
        {
            _weightSlots = _region.Weights;
            _log.Info("Worker {0}: weights and gradients go through shared memory ({1}; {2} + {3} slots of {4:N0} and {5:N0} bytes); the connection carries the frame headers.",
                _workerIndex, _region.Path, _region.Weights.Count, _region.Gradients.Count, _region.Weights.SlotBytes, _region.Gradients.SlotBytes);
        }
        else
        {
            _log.Info("Worker {0}: declined shared memory ({1}); its tensors go over the data-plane connection.", _workerIndex, negotiated.Answer.Reason);
            _region.Dispose();
            _region = null;
        }
        Stash.UnstashAll();
    }

    /// <summary>
    /// The parameter server is writing its next broadcast: with shared memory, take the next weight slot and copy the
    /// weights into it as the optimizer writes them, on this link's thread while the update runs on the server's. The
    /// broadcast that follows then sends only its header (<see cref="OnWeights"/>). Without shared memory, or before the
    /// negotiation ended, nothing happens here and the broadcast is written as usual.
    /// </summary>
    private void OnWeightsInProgress(WeightsInProgress progress)
    {
        DropFilledEarly();
        if (_connection is null || !_negotiated || _weightSlots is null) return;
        if (SharedSlotWrite.TryStart(_weightSlots, progress.Weights.Length) is not { } slot) return;
        try
        {
            if (progress.CopyTo(slot.Values, out var weights, out var version)) _filledEarly = (weights, version, slot);
            else slot.Abandon();
        }
        catch
        {
            slot.Abandon();
            throw;
        }
    }

    /// <summary>Gives back a slot filled early whose broadcast did not come (another array came, or the link stops).</summary>
    private void DropFilledEarly()
    {
        _filledEarly?.Slot.Abandon();
        _filledEarly = null;
    }

    /// <summary>A shard's result, to this link's worker: written as a <see cref="TensorFrame.ShardWeightsType"/> frame; the
    /// shard is where the worker's slices go from then on.</summary>
    private void OnShardWeights(ShardWeights result)
    {
        if (_connection is null || !_negotiated)
        {
            Stash.Stash();
            return;
        }
        _parameterServer = Sender;
        if (TensorFrame.TryWrite(_connection, TensorFrame.For(result), result.Weights) is { } failure)
        {
            _log.Warning("Shard {0}: sending worker {1} its weights failed, so its link closes: {2}", result.Shard, _workerIndex, failure);
            Context.Stop(Self);
        }
    }

    private void OnWeights(WeightsUpdated update)
    {
        if (_connection is null || !_negotiated)
        {
            Stash.Stash();
            return;
        }
        _parameterServer = Sender;
        // The same array and version: a link that fell behind may have copied a later write of the same ring array.
        if (_filledEarly is { } early && !(ReferenceEquals(early.Weights, update.Weights) && early.Version == update.Version)) DropFilledEarly();
        var failure = _filledEarly is { } filled
            ? TensorFrame.TryAnnounce(_connection, TensorFrame.For(update), filled.Slot)
            : TensorFrame.TryWrite(_connection, TensorFrame.For(update), update.Weights, _weightSlots);
        _filledEarly = null;
        if (failure is not null)
        {
            // The worker's connection is gone (a killed process, a reset): the link stops, and its stop is how the
            // coordinator learns the worker is lost. Not an ERROR: that would fail a job that tolerates losing workers.
            _log.Warning("Worker {0}: sending weights failed, so its link closes and the worker counts as lost: {1}", _workerIndex, failure);
            Context.Stop(Self);
        }
    }
}
