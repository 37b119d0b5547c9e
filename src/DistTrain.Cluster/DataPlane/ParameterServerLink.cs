using System.Diagnostics;
using System.Security.Authentication;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Security;
using DistTrain.Cluster.Training;
using DistTrain.Core.Compression;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// A worker node's stand-in for the remote parameter server: it connects to the parameter server's
/// data plane (mutual TLS with the cluster's certificates unless Cluster:Tls is false), proves its registration with
/// the hello's token, hands every weights frame to the local worker with a <see cref="GradientWriter"/> as the sender,
/// which writes the worker's gradient replies back to the socket on the worker's own thread. If the connection fails, the link stops and its
/// parent (the worker node's agent) ends the node. The link connects off its actor's thread, on a task, and the name lookup, TCP connect, TLS
/// handshake and hello have <see cref="DataPlaneListener.HandshakeTimeoutSeconds"/> together: an endpoint that does not accept the connection
/// (or, with TLS, does not answer the handshake) fails the link then (<c>did not answer within 10 s</c>) instead of holding a dispatcher thread and the worker forever,
/// and so does a name lookup that alone takes longer (<c>the name lookup of ... did not finish within 10 s</c>).
/// <para>If the parameter server's first frame offers a <see cref="SharedMemoryRegion"/> and this worker may use shared
/// memory (Cluster:SharedMemory) and can open the region (it is on the same host, outside any container of its own),
/// the link maps it and answers yes; from then on bodies go both ways through its slots. Otherwise it answers no, with
/// the reason, and everything stays on the connection.</para>
/// <para>Made with <see cref="ForShard"/>, the link connects to one shard node's data plane instead (<see cref="ShardDataPlane"/>):
/// its hello names the shard, the run's shard count and the slice's length; it hands the local worker each
/// <see cref="ShardWeights"/> frame (its shard index and fields checked) with the <see cref="GradientWriter"/> as the sender,
/// and writes the gradient slices sent to it or to the writer. A worker holds K of these, one per shard, and a
/// <see cref="ShardedReplicaLink"/> over them. A refusal from the shard node ends the link with the node's reason in its
/// log line (and, made with <c>reportClosure</c>, in a <see cref="ShardConnectionClosed"/> to the worker). No shared memory is
/// offered on a shard's connection.</para>
/// </summary>
public sealed class ParameterServerLink : ReceiveActor
{
    private sealed record ReaderFailed(string Reason);

    private sealed record Answered(SharedMemoryAnswer Answer, SharedMemoryRegion? Region);

    private sealed record WriteFailed(string Reason);

    /// <summary>The connection task set <see cref="_connection"/>.</summary>
    private sealed record Connected;

    private sealed record ConnectFailed(string Reason);

    private readonly string _host;
    private readonly int _port;
    private readonly int _workerIndex;
    private readonly IActorRef _worker;
    private readonly int _parameterCount;
    private readonly byte[] _token;
    private readonly ClusterCertificates? _certificates;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly float[]?[] _weightBuffers = new float[3][]; // allocated on first use: with shared memory weights never need them
    private DataPlaneConnection? _connection;
    private readonly bool _sharedMemory;
    private volatile SharedMemoryRegion? _region;
    private GradientWriter? _writer;
    private readonly ParameterShard? _shard;
    private readonly int _shardCount;
    private readonly bool _reportClosure;
    private readonly TimeSpan _connectTimeout;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _connectionLock = new(); // _connection and _stopped, between the connection task and PostStop
    private bool _stopped;

    /// <summary>Creates the link; see <see cref="Props"/> and <see cref="ForShard"/>.</summary>
    public ParameterServerLink(string host, int port, int workerIndex, IActorRef worker, int parameterCount, byte[] token, ClusterCertificates? certificates,
        bool sharedMemory = false, ParameterShard? shard = null, int shardCount = 0, bool reportClosure = false, TimeSpan? connectTimeout = null)
    {
        _connectTimeout = connectTimeout ?? TimeSpan.FromSeconds(DataPlaneListener.HandshakeTimeoutSeconds);
        _shard = shard;
        _reportClosure = reportClosure;
        _shardCount = shardCount;
        _sharedMemory = sharedMemory;
        _token = token;
        _certificates = certificates;
        _host = host;
        _port = port;
        _workerIndex = workerIndex;
        _worker = worker;
        _parameterCount = parameterCount;
        Receive<GradientComputed>(OnGradient);
        Receive<Connected>(_ => OnConnected());
        Receive<ConnectFailed>(failed =>
        {
            // The agent sees the link stop and registers again (a parameter server that is not there, or not this cluster's).
            _log.Warning("Worker {0}: cannot open the data plane to {1}:{2}: {3}", _workerIndex, _host, _port, failed.Reason);
            ReportClosure($"cannot open the connection: {failed.Reason}");
            Context.Stop(Self);
        });
        Receive<Answered>(OnAnswered);
        Receive<WriteFailed>(failed =>
        {
            _log.Error("Worker {0}: sending a gradient failed: {1}", _workerIndex, failed.Reason);
            ReportClosure(failed.Reason);
            Context.Stop(Self);
        });
        Receive<ReaderFailed>(failed =>
        {
            // At the end of a job the parameter server, and with it its shards, close first: the worker and its agent decide
            // whether that was a failure, and warn when it was.
            if (_shard is null) _log.Info("Worker {0}: data plane to the parameter server closed: {1}", _workerIndex, failed.Reason);
            else _log.Info("Worker {0}: data plane to shard {1} closed: {2}", _workerIndex, _shard.Index, failed.Reason);
            ReportClosure(failed.Reason);
            Context.Stop(Self);
        });
    }

    /// <summary>Props of the link from worker <paramref name="workerIndex"/> to the data plane at <paramref name="host"/>:<paramref name="port"/>.</summary>
    /// <param name="host">The parameter server's data-plane host.</param>
    /// <param name="port">Its data-plane port.</param>
    /// <param name="workerIndex">This worker's index.</param>
    /// <param name="worker">The local worker actor that gets the weights.</param>
    /// <param name="parameterCount">Floats per weights tensor.</param>
    /// <param name="token">The registration's data-plane token (<see cref="WorkerAccepted.DataToken"/>).</param>
    /// <param name="certificates">The node's TLS identity; null for plain TCP.</param>
    /// <param name="sharedMemory">Cluster:SharedMemory: accept the parameter server's shared-memory offer if it can be opened.</param>
    public static Props Props(string host, int port, int workerIndex, IActorRef worker, int parameterCount, byte[] token, ClusterCertificates? certificates,
        bool sharedMemory = false) =>
        Akka.Actor.Props.Create(() => new ParameterServerLink(host, port, workerIndex, worker, parameterCount, token, certificates, sharedMemory, null, 0, false));

    /// <summary>
    /// Props of the link from worker <paramref name="workerIndex"/> to shard <paramref name="shard"/>'s data plane at
    /// <paramref name="host"/>:<paramref name="port"/> (a shard node's <see cref="ShardDataPlane"/>).
    /// </summary>
    /// <param name="host">The shard node's data-plane host.</param>
    /// <param name="port">Its data-plane port.</param>
    /// <param name="workerIndex">This worker's slot.</param>
    /// <param name="worker">The local worker actor that gets the shard's <see cref="ShardWeights"/>.</param>
    /// <param name="shard">The shard's slice (<see cref="ParameterShards.Plan"/> of the model's layout and <paramref name="shardCount"/>).</param>
    /// <param name="shardCount">The run's shard count K.</param>
    /// <param name="workerToken">This worker's own data-plane token, its slot's (<see cref="DataPlaneHello.TokenBytes"/> bytes): the shard
    /// node refuses a hello for slot <paramref name="workerIndex"/> with any other.</param>
    /// <param name="certificates">The node's TLS identity; null for plain TCP.</param>
    /// <param name="reportClosure">True: when the connection cannot be opened, is refused or closes, or a write fails, the link
    /// tells <paramref name="worker"/> a <see cref="ShardConnectionClosed"/> (shard, endpoint, reason) before it stops, so that a
    /// worker that cannot go on without every shard stops with the reason (<see cref="Worker"/>'s shard mode). False: only its log says so.</param>
    /// <param name="connectTimeout">The time the TCP connect, TLS handshake and hello have together; null (the default):
    /// <see cref="DataPlaneListener.HandshakeTimeoutSeconds"/>.</param>
    /// <exception cref="ArgumentException"><paramref name="shard"/>'s index is not 0 to <paramref name="shardCount"/> - 1, or
    /// <paramref name="shardCount"/> is not 1 to <see cref="ParameterShards.MaxShards"/>, or the token is not <see cref="DataPlaneHello.TokenBytes"/> bytes.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="connectTimeout"/> is not positive.</exception>
    public static Props ForShard(string host, int port, int workerIndex, IActorRef worker, ParameterShard shard, int shardCount, byte[] workerToken,
        ClusterCertificates? certificates, bool reportClosure = false, TimeSpan? connectTimeout = null)
    {
        ShardDataPlane.CheckShard(shard, shardCount, workerToken);
        if (connectTimeout is { } timeout) ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero, nameof(connectTimeout));
        return Akka.Actor.Props.Create(() => new ParameterServerLink(host, port, workerIndex, worker, shard.Length, workerToken, certificates, false, shard, shardCount,
            reportClosure, connectTimeout));
    }

    /// <summary>Connects on a task, not on the actor's thread (a worker in the shard mode holds K links, and an endpoint that
    /// does not answer would hold a dispatcher thread for the whole timeout); the link hears <see cref="Connected"/> or
    /// <see cref="ConnectFailed"/>. A connection made after the link stopped is closed at once.</summary>
    protected override void PreStart()
    {
        var self = Self;
        var hello = new DataPlaneHello(_workerIndex, _parameterCount, _token, _shard?.Index ?? -1, _shardCount);
        var stopping = _stopping.Token;
        _ = Task.Run(async () =>
        {
            DataPlaneConnection? connection;
            try
            {
                connection = await DataPlaneConnection.ConnectAsync(_host, _port, _certificates, hello, _connectTimeout, stopping).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SocketException or IOException or AuthenticationException)
            {
                self.Tell(new ConnectFailed(e.Message));
                return;
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return; // the link stopped first
            }
            catch (Exception e)
            {
                // Any other failure ends the link as a refused connection does (the agent registers again, a shard-mode worker
                // stops naming it): left in this task, it would leave the link neither connected nor stopped, and the worker hung.
                self.Tell(new ConnectFailed($"{e.GetType().Name}: {e.Message}"));
                return;
            }
            lock (_connectionLock)
            {
                if (!_stopped) (_connection, connection) = (connection, null);
            }
            if (connection is null) self.Tell(new Connected());
            else connection.Dispose();
        }, CancellationToken.None);
    }

    private void OnConnected()
    {
        var self = Self;
        var next = 0;
        var connection = _connection!;
        var peer = connection.Peer;
        SharedSlotBody[]? bodies = null; // set on the reader thread when the offer is taken, before any weights arrive
        var writer = _writer = new GradientWriter(connection, self, ((IInternalActorRef)self).Provider);
        if (_shard is { } shard)
        {
            StartShardReader(shard, writer, self);
            return;
        }
        TensorFrame.StartReader(connection, $"dataplane-ps-{_workerIndex}", TensorFrame.WeightsType, _parameterCount,
            // Three buffers in turn, as the parameter server's own broadcast ring: a version is copied by the worker
            // before it answers, and the next one is only sent after every answer arrived.
            _ =>
            {
                var buffer = _weightBuffers[next] ??= new float[_parameterCount];
                next = (next + 1) % _weightBuffers.Length;
                return buffer;
            },
            // Stamped on arrival: the worker's queueing delay then covers its own process (mailbox and dispatcher),
            // as in single-node mode; the network's part is in the step's messaging time.
            // The worker replies to the writer, which writes its gradient on the worker's own thread.
            (header, buffer) => _worker.Tell(new WeightsUpdated(header.Epoch, header.Round, header.WeightsVersion, buffer, Stopwatch.GetTimestamp(), header.WorkerIndex,
                header.Part, header.EndRound), writer),
            reason =>
            {
                // A write waiting for a slot gives up; disposed here too, since the link may have stopped before the
                // reader set _region (the mapping outlives nobody: a lease still held keeps it until released).
                _region?.Dispose();
                self.Tell(new ReaderFailed(reason));
            },
            onOffer: offer =>
            {
                var slots = TakeOffer(offer, writer, self);
                if (slots is not null) bodies = SharedSlotBody.For(slots);
                return slots;
            },
            // Weights in a shared-memory slot are not copied out: the worker loads its model from the slot, then releases it.
            deliverInPlace: (header, slot) => _worker.Tell(WeightsUpdated.InSharedSlot(header.Epoch, header.Round, header.WeightsVersion,
                bodies![slot].Take(header.Count, peer), Stopwatch.GetTimestamp(), header.WorkerIndex, header.Part, header.EndRound), writer));
        _log.Info("Worker {0}: data plane connected to {1}:{2} ({3})", _workerIndex, _host, _port, connection.Security);
    }

    /// <summary>
    /// The reader of a shard's connection: each frame is a <see cref="TensorFrame.ShardWeightsType"/> of the slice's length (or
    /// the node's refusal), read into an array of its own, since a worker's <see cref="ShardedReplicaLink"/> may hold a
    /// shard's result (and a redone one after it) until every shard's has come.
    /// </summary>
    private void StartShardReader(ParameterShard shard, GradientWriter writer, IActorRef self)
    {
        var connection = _connection!;
        TensorFrame.StartReader(connection, $"dataplane-shard-{shard.Index}-{_workerIndex}", TensorFrame.ShardWeightsType, _parameterCount,
            header => new float[header.Count],
            (header, buffer) =>
            {
                var result = TensorFrame.ShardWeightsOf(header);
                if (result.OutOfRange() is { } problem)
                    throw new IOException($"data plane: {connection.Peer} sent shard weights whose {problem}; the connection is closed.");
                if (result.Shard != shard.Index)
                    throw new IOException($"data plane: {connection.Peer} sent shard {result.Shard}'s weights on the connection to shard {shard.Index}; the connection is closed.");
                _worker.Tell(ShardWeights.Of(result, buffer), writer);
            },
            reason => self.Tell(new ReaderFailed(reason)),
            refusals: true,
            expectedCountIs: $"shard {shard.Index}'s slice [{shard.Start}, {shard.End})");
        _log.Info("Worker {0}: data plane connected to shard {1} of {2} at {3}:{4} ({5})", _workerIndex, shard.Index, _shardCount, _host, _port, connection.Security);
    }

    /// <summary>With <c>reportClosure</c> (shard mode only): tells the worker why this shard's connection ends.</summary>
    private void ReportClosure(string reason)
    {
        if (_reportClosure && _shard is { } shard) _worker.Tell(new ShardConnectionClosed(shard.Index, $"{_host}:{_port}", reason));
    }

    /// <inheritdoc />
    protected override void PostStop()
    {
        DataPlaneConnection? connection;
        lock (_connectionLock)
        {
            _stopped = true;
            connection = _connection;
        }
        _stopping.Cancel(); // not disposed: the connection task may still read its token (a source without a timer holds nothing to free)
        connection?.Dispose();
        _region?.Dispose();
    }

    /// <summary>On the reader thread, before any weights are delivered: opens the offered region if this worker may and
    /// can, and writes the answer (no gradient can be written before it: the worker has no weights yet).</summary>
    /// <exception cref="IOException">Writing the answer failed (the reader then ends, and the link with it).</exception>
    private SharedSlots? TakeOffer(SharedMemoryOffer offer, GradientWriter writer, IActorRef self)
    {
        SharedMemoryRegion? region = null;
        var answer = new SharedMemoryAnswer(false, "Cluster:SharedMemory is false on this worker");
        if (_sharedMemory)
        {
            try
            {
                region = _region = SharedMemoryRegion.Open(offer, (long)_parameterCount * sizeof(float));
                answer = new SharedMemoryAnswer(true, "");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                answer = new SharedMemoryAnswer(false, e.Message);
            }
        }
        writer.WriteAnswer(answer, region?.Gradients);
        self.Tell(new Answered(answer, region));
        return region?.Weights;
    }

    private void OnAnswered(Answered answered)
    {
        if (answered.Region is { } region)
            _log.Info("Worker {0}: weights and gradients go through shared memory with the parameter server ({1}).", _workerIndex, region.Path);
        else
            _log.Info("Worker {0}: declined the parameter server's shared memory ({1}); tensors go over the data-plane connection.", _workerIndex, answered.Answer.Reason);
    }

    /// <summary>A gradient sent to the link itself (the worker replies to the <see cref="GradientWriter"/>): written the same way.</summary>
    private void OnGradient(GradientComputed gradient)
    {
        if (_writer is { } writer) writer.Tell(gradient, Sender);
        else _log.Warning("Worker {0}: dropped a gradient of epoch {1} round {2}: the data plane to {3}:{4} is not connected yet (no weights came from it, " +
            "so nothing can have been computed for it).", _workerIndex, gradient.Epoch, gradient.Round, _host, _port);
    }

    /// <summary>
    /// What the worker replies to with its gradients: it writes each gradient frame on the calling thread (the worker's
    /// own), which saves the hand-off through the link's mailbox on every step; any other message goes on to the link.
    /// Writes are serialized by a lock, which the reader thread's shared-memory answer takes too. A failed write is
    /// reported to the link, which stops.
    /// </summary>
    private sealed class GradientWriter(DataPlaneConnection connection, IActorRef link, IActorRefProvider provider) : MinimalActorRef, IGradientSlotLender
    {
        private readonly Lock _lock = new();
        private SharedSlots? _slots;

        /// <inheritdoc />
        public override ActorPath Path { get; } = link.Path / "gradient-writer";

        /// <inheritdoc />
        public override IActorRefProvider Provider => provider;

        /// <summary>Writes the answer to the parameter server's offer; with <paramref name="slots"/>, later gradients go through them.</summary>
        /// <exception cref="IOException">The connection failed.</exception>
        public void WriteAnswer(SharedMemoryAnswer answer, SharedSlots? slots)
        {
            lock (_lock)
            {
                try
                {
                    TensorFrame.WriteNegotiation(connection.Stream, TensorFrame.SharedMemoryAnswerType, 0, answer.ToBytes());
                }
                catch (Exception e) when (e is ObjectDisposedException or SocketException)
                {
                    throw new IOException($"data plane: sending the answer to the shared-memory offer failed: {e.Message}", e);
                }
                _slots = slots;
            }
        }

        /// <inheritdoc />
        public SharedSlotWrite? TryLend(int count)
        {
            lock (_lock)
            {
                return _slots is { } slots ? SharedSlotWrite.TryStart(slots, count) : null;
            }
        }

        /// <inheritdoc />
        protected override void TellInternal(object message, IActorRef sender)
        {
            if (message is not GradientComputed gradient)
            {
                link.Tell(message, sender);
                return;
            }
            string? failure;
            lock (_lock)
            {
                // Written in place into a lent slot: only the header goes out. Compressed: the encoded gradient part, then
                // the report's floats after it (running statistics) as they are.
                failure = gradient.WrittenInSlot is { } written
                    ? TensorFrame.TryAnnounce(connection, TensorFrame.For(gradient), written)
                    : gradient.Encoded is { } encoded
                    ? TensorFrame.TryWrite(connection, TensorFrame.For(gradient), encoded, gradient.Gradient.AsSpan(GradientDecoder.DenseLength(encoded)), _slots)
                    : TensorFrame.TryWrite(connection, TensorFrame.For(gradient), gradient.Gradient, _slots);
            }
            if (failure is not null) link.Tell(new WriteFailed(failure));
        }
    }
}
