using System.Globalization;
using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Models;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// Runs a job on the parameter server node in cluster mode: accepts worker nodes (same protocol version
/// and model fingerprint), gives each an index, opens the tensor data plane, and once
/// <see cref="ClusterOptions.MinWorkers"/> workers are ready starts a <see cref="Coordinator"/> whose
/// workers are <see cref="WorkerLink"/>s. When the job ends it tells the worker nodes and completes
/// the task it was given.
/// </summary>
public sealed class JobHost : ReceiveActor, IWithTimers
{
    private sealed record Done(TrainingResult? Result, Exception? Failure);

    private readonly TrainingOptions _options;
    private readonly int _trainCount;
    private readonly int _testCount;
    private readonly int _validationCount;
    private readonly string _dataHost;
    private readonly ITrainingObserver _observer;
    private readonly TaskCompletionSource<TrainingResult> _completion;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly string _fingerprint;
    private readonly Sequential _model;
    private readonly List<IActorRef> _agents = [];
    private readonly Dictionary<int, IActorRef> _links = [];
    private readonly HashSet<int> _attached = [];
    private DataPlaneListener? _listener;
    private bool _started;
    private IActorRef? _coordinator;
    private readonly HashSet<int> _joined = []; // workers handed to the coordinator

    /// <summary>Creates the host; see <see cref="Props"/>.</summary>
    public JobHost(TrainingOptions options, int trainCount, int testCount, int validationCount, string dataHost, ITrainingObserver observer,
        TaskCompletionSource<TrainingResult> completion)
    {
        _options = options;
        _trainCount = trainCount;
        _testCount = testCount;
        _validationCount = validationCount;
        _dataHost = dataHost;
        _observer = observer;
        _completion = completion;
        _fingerprint = ModelFingerprint.Of(options);
        _model = ModelFactory.Build(options.Model);

        Receive<RegisterWorker>(OnRegister);
        Receive<WorkerReady>(OnReady);
        Receive<DataPlaneListener.Accepted>(OnDataConnection);
        Receive<DataPlaneListener.Rejected>(r => _log.Warning("Data plane refused a connection: {0}", r.Reason));
        Receive<Done>(OnDone);
        Receive<StartNow>(_ => TryStart(waited: true));
    }

    /// <summary>Props of the job host. It is created as <c>/user/job</c>, where worker agents look for it.</summary>
    public static Props Props(TrainingOptions options, int trainCount, int testCount, int validationCount, string dataHost, ITrainingObserver observer,
        TaskCompletionSource<TrainingResult> completion) =>
        Akka.Actor.Props.Create(() => new JobHost(options, trainCount, testCount, validationCount, dataHost, observer, completion));

    /// <inheritdoc />
    public ITimerScheduler Timers { get; set; } = null!;

    /// <summary>Name under <c>/user</c>.</summary>
    public const string Name = "job";

    /// <inheritdoc />
    protected override void PreStart()
    {
        _listener = new DataPlaneListener(_options.Cluster.DataPort, Self);
        _listener.Start();
        _log.Info("Job host waiting for {0} worker(s); data plane on port {1}", _options.Cluster.MinWorkers, _options.Cluster.DataPort);
    }

    /// <inheritdoc />
    protected override void PostStop() => _listener?.Dispose();

    private void OnRegister(RegisterWorker register)
    {
        string? refusal = null;
        if (register.ProtocolVersion != ClusterProtocolInfo.Version)
            refusal = $"protocol version {register.ProtocolVersion} differs from the parameter server's {ClusterProtocolInfo.Version}: run the same DistTrain version on every node.";
        else if (register.ModelFingerprint != _fingerprint)
            refusal = $"model settings differ from the parameter server's. Worker: {register.ModelFingerprint}; parameter server: {_fingerprint}. Use the same config on every node.";
        if (refusal is not null)
        {
            _log.Warning("Refused worker node {0}: {1}", register.NodeName, refusal);
            Sender.Tell(new RegistrationRefused(refusal));
            return;
        }
        var existing = _agents.IndexOf(Sender);
        var index = existing >= 0 ? existing : _agents.Count;
        if (existing < 0) _agents.Add(Sender);
        _log.Info("Worker node {0} joins as worker {1}", register.NodeName, index);
        Sender.Tell(new WorkerAccepted(index, _dataHost, _options.Cluster.DataPort, _model.Layout.TotalLength));
    }

    private void OnReady(WorkerReady ready)
    {
        if (_links.ContainsKey(ready.WorkerIndex)) return;
        _links[ready.WorkerIndex] = Context.ActorOf(WorkerLink.Props(ready.WorkerIndex, ready.Worker, _model.Layout.WorkerReportLength), $"worker-link-{ready.WorkerIndex}");
        TryStart();
        JoinRunningJob(ready.WorkerIndex);
    }

    private void OnDataConnection(DataPlaneListener.Accepted accepted)
    {
        if (accepted.ParameterCount != _model.Layout.TotalLength)
        {
            _log.Warning("Data plane: worker {0} announced {1} parameters, this model has {2}; connection closed.",
                accepted.WorkerIndex, accepted.ParameterCount, _model.Layout.TotalLength);
            accepted.Socket.Dispose();
            return;
        }
        if (!_links.TryGetValue(accepted.WorkerIndex, out var link))
        {
            // The socket can arrive before WorkerReady; look again shortly.
            Timers.StartSingleTimer(("attach", accepted.WorkerIndex), accepted, TimeSpan.FromMilliseconds(50));
            return;
        }
        link.Tell(new WorkerLink.Attach(accepted.Socket));
        _attached.Add(accepted.WorkerIndex);
        TryStart();
        JoinRunningJob(accepted.WorkerIndex);
    }

    /// <summary>A worker that is ready and attached after training started joins the coordinator's job (next epoch).</summary>
    private void JoinRunningJob(int index)
    {
        if (!_started || _coordinator is null || !_attached.Contains(index) || !_links.TryGetValue(index, out var link) || !_joined.Add(index)) return;
        _coordinator.Tell(new AddWorker(link, index));
    }

    private sealed record StartNow;

    private bool Ready(int index) => _attached.Contains(index) && _links.ContainsKey(index);

    /// <summary>
    /// Starts one second after MinWorkers workers are ready, with every worker ready by then, so a cluster brought up
    /// together starts with all its workers; later ones join the running job at its next epoch.
    /// </summary>
    private void TryStart(bool waited = false)
    {
        var minimum = _options.Cluster.MinWorkers;
        if (_started || Enumerable.Range(0, minimum).Any(i => !Ready(i)))
            return;
        if (!waited)
        {
            if (!Timers.IsTimerActive("start-now")) Timers.StartSingleTimer("start-now", new StartNow(), TimeSpan.FromSeconds(1));
            return;
        }
        Timers.Cancel("start-now");
        _started = true;
        var loop = _options.Training;
        var count = minimum;
        while (Ready(count)) count++; // every ready worker in an unbroken run of indices
        var workers = Enumerable.Range(0, count).Select(i => _links[i]).ToArray();
        var weights = ModelFactory.StartingWeights(_model, _options.Model, loop.Seed);
        Core.Checkpoints.TrainingCheckpoint? resumeFrom = null;
        try
        {
            if (_options.Checkpoint.Resume) resumeFrom = CheckpointResume.Find(_options, _model.Layout, line => _log.Warning(line));
        }
        catch (CheckpointResumeException e)
        {
            _completion.TrySetException(e);
            return;
        }
        var settings = new CoordinatorSettings(loop.Epochs, loop.BatchSizePerWorker, new ShardPlanner(_trainCount, workers.Length, loop.Seed),
            _testCount, _model.Layout, TimeSpan.FromSeconds(loop.StallTimeoutSeconds), _validationCount, loop.EarlyStopping,
            FirstEpoch: resumeFrom?.Epoch ?? 1, FirstRound: resumeFrom?.Round ?? 0,
            PlannerFor: n => new ShardPlanner(_trainCount, n, loop.Seed), MinWorkers: minimum);
        var completion = new TaskCompletionSource<TrainingResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        _coordinator = Context.ActorOf(Coordinator.Props(settings, ParameterServer.Props(weights, _options.Optimizer, loop.Epochs, _options.Monitoring,
            CheckpointResume.Settings(_options), resumeFrom).WithDispatcher(AkkaSettings.ComputeDispatcher),
            workers, _observer, completion), "coordinator");
        _log.Info("Training starts with {0} workers", workers.Length);
        for (var i = 0; i < count; i++) _joined.Add(i);
        foreach (var index in _links.Keys.Where(i => i >= count).Order()) JoinRunningJob(index); // ready, but after a gap
        completion.Task.ContinueWith(t => new Done(t.IsCompletedSuccessfully ? t.Result : null, t.Exception?.GetBaseException()),
            TaskScheduler.Default).PipeTo(Self);
    }

    private void OnDone(Done done)
    {
        var summary = done.Result is { } result
            ? $"test accuracy {100 * result.FinalEpoch.TestAccuracy:F2}% after {result.Epochs.Count} epochs".ToString(CultureInfo.InvariantCulture)
            : $"failed: {done.Failure?.Message}";
        // Close the data plane from this side first, so the workers' goodbyes are not reported as failures.
        foreach (var link in _links.Values)
            Context.Stop(link);
        foreach (var agent in _agents)
            agent.Tell(new JobFinished(done.Result is not null, summary));
        if (done.Result is { Version: > 0 } finished)
            _log.Info("Data plane: {0:N0} bytes sent and {1:N0} received over {2} steps, {3:N0} bytes per step (the minimum, 2 x model x workers, is {4:N0})",
                TensorFrame.BytesSent, TensorFrame.BytesReceived, finished.Version,
                (TensorFrame.BytesSent + TensorFrame.BytesReceived) / finished.Version,
                2L * sizeof(float) * _model.Layout.TotalLength * _links.Count);
        if (done.Result is not null) _completion.TrySetResult(done.Result);
        else _completion.TrySetException(done.Failure ?? new InvalidOperationException("The job ended without a result."));
    }
}
