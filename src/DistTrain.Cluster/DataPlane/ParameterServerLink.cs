using System.Diagnostics;
using System.Security.Authentication;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Security;
using DistTrain.Core.Compression;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// A worker node's stand-in for the remote parameter server: it connects to the parameter server's
/// data plane (mutual TLS with the cluster's certificates unless Cluster:Tls is false), proves its registration with
/// the hello's token, hands every weights frame to the local worker with itself as the sender, and writes
/// the worker's gradient replies back to the socket. If the connection fails, the link stops and its
/// parent (the worker node's agent) ends the node.
/// </summary>
public sealed class ParameterServerLink : ReceiveActor
{
    private sealed record ReaderFailed(string Reason);

    private readonly string _host;
    private readonly int _port;
    private readonly int _workerIndex;
    private readonly IActorRef _worker;
    private readonly int _parameterCount;
    private readonly byte[] _token;
    private readonly ClusterCertificates? _certificates;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly float[][] _weightBuffers;
    private DataPlaneConnection? _connection;

    /// <summary>Creates the link; see <see cref="Props"/>.</summary>
    public ParameterServerLink(string host, int port, int workerIndex, IActorRef worker, int parameterCount, byte[] token, ClusterCertificates? certificates)
    {
        _token = token;
        _certificates = certificates;
        _host = host;
        _port = port;
        _workerIndex = workerIndex;
        _worker = worker;
        _parameterCount = parameterCount;
        // Three buffers in turn, as the parameter server's own broadcast ring: a version is copied by the
        // worker before it answers, and the next one is only sent after every answer arrived.
        _weightBuffers = [new float[parameterCount], new float[parameterCount], new float[parameterCount]];
        Receive<GradientComputed>(OnGradient);
        Receive<ReaderFailed>(failed =>
        {
            // At the end of a job the parameter server closes first; the agent decides whether that was a failure.
            _log.Info("Worker {0}: data plane to the parameter server closed: {1}", _workerIndex, failed.Reason);
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
    public static Props Props(string host, int port, int workerIndex, IActorRef worker, int parameterCount, byte[] token, ClusterCertificates? certificates) =>
        Akka.Actor.Props.Create(() => new ParameterServerLink(host, port, workerIndex, worker, parameterCount, token, certificates));

    /// <inheritdoc />
    protected override void PreStart()
    {
        try
        {
            _connection = DataPlaneConnection.Connect(_host, _port, _certificates, new DataPlaneHello(_workerIndex, _parameterCount, _token));
        }
        catch (Exception e) when (e is SocketException or IOException or AuthenticationException)
        {
            // The agent sees the link stop and registers again (a parameter server that is not there, or not this cluster's).
            _log.Warning("Worker {0}: cannot open the data plane to {1}:{2}: {3}", _workerIndex, _host, _port, e.Message);
            Context.Stop(Self);
            return;
        }
        var self = Self;
        var next = 0;
        TensorFrame.StartReader(_connection, $"dataplane-ps-{_workerIndex}", TensorFrame.WeightsType, _parameterCount,
            _ =>
            {
                var buffer = _weightBuffers[next];
                next = (next + 1) % _weightBuffers.Length;
                return buffer;
            },
            // Stamped on arrival: the worker's queueing delay then covers its own process (mailbox and dispatcher),
            // as in single-node mode; the network's part is in the step's messaging time.
            (header, buffer) => _worker.Tell(new WeightsUpdated(header.Epoch, header.Round, header.WeightsVersion, buffer, Stopwatch.GetTimestamp(), header.WorkerIndex), self),
            reason => self.Tell(new ReaderFailed(reason)));
        _log.Info("Worker {0}: data plane connected to {1}:{2} ({3})", _workerIndex, _host, _port, _connection.Security);
    }

    /// <inheritdoc />
    protected override void PostStop() => _connection?.Dispose();

    private void OnGradient(GradientComputed gradient)
    {
        // Compressed: the encoded gradient part, then the report's floats after it (running statistics) as they are.
        var failure = gradient.Encoded is { } encoded
            ? TensorFrame.TryWrite(_connection, TensorFrame.For(gradient), encoded, gradient.Gradient.AsSpan(GradientDecoder.DenseLength(encoded)))
            : TensorFrame.TryWrite(_connection, TensorFrame.For(gradient), gradient.Gradient);
        if (failure is not null)
        {
            _log.Error("Worker {0}: sending a gradient failed: {1}", _workerIndex, failure);
            Context.Stop(Self);
        }
    }
}
