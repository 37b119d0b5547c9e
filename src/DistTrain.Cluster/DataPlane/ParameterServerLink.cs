using System.Net.Sockets;
using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// A worker node's stand-in for the remote parameter server: it connects to the parameter server's
/// data plane, hands every weights frame to the local worker with itself as the sender, and writes
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
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly float[][] _weightBuffers;
    private Socket? _socket;

    /// <summary>Creates the link; see <see cref="Props"/>.</summary>
    public ParameterServerLink(string host, int port, int workerIndex, IActorRef worker, int parameterCount)
    {
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
    public static Props Props(string host, int port, int workerIndex, IActorRef worker, int parameterCount) =>
        Akka.Actor.Props.Create(() => new ParameterServerLink(host, port, workerIndex, worker, parameterCount));

    /// <inheritdoc />
    protected override void PreStart()
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        TensorFrame.Tune(socket);
        socket.Connect(_host, _port);
        TensorFrame.Write(socket, TensorFrame.Hello(_workerIndex, _parameterCount), []);
        _socket = socket;
        var self = Self;
        var next = 0;
        TensorFrame.StartReader(socket, $"dataplane-ps-{_workerIndex}", TensorFrame.WeightsType, _parameterCount,
            _ =>
            {
                var buffer = _weightBuffers[next];
                next = (next + 1) % _weightBuffers.Length;
                return buffer;
            },
            (header, buffer) => _worker.Tell(new WeightsUpdated(header.Epoch, header.Round, header.WeightsVersion, buffer), self),
            reason => self.Tell(new ReaderFailed(reason)));
        _log.Info("Worker {0}: data plane connected to {1}:{2}", _workerIndex, _host, _port);
    }

    /// <inheritdoc />
    protected override void PostStop() => TensorFrame.Close(_socket);

    private void OnGradient(GradientComputed gradient)
    {
        if (TensorFrame.TryWrite(_socket, TensorFrame.For(gradient), gradient.Gradient) is { } failure)
        {
            _log.Error("Worker {0}: sending a gradient failed: {1}", _workerIndex, failure);
            Context.Stop(Self);
        }
    }
}
