using System.Globalization;
using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Security;
using DistTrain.Cluster.Training;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Models;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// Runs a job on the parameter server node in cluster mode: accepts worker nodes (same protocol version, job identity
/// and model fingerprint), gives each an index and a one-time data-plane token, attaches each worker's data-plane
/// connection that proves its registration with that token, and once
/// <see cref="ClusterOptions.MinWorkers"/> workers are ready starts a <see cref="Coordinator"/> whose
/// workers are <see cref="WorkerLink"/>s. When the job ends it tells the worker nodes and the other
/// parameter-server nodes, and completes the task it was given.
/// </summary>
/// <remarks>
/// It runs under the cluster singleton of the parameter-server nodes (<see cref="ParameterServerNode"/>), a
/// <see cref="JobHostSupervisor"/>, which starts it again on its node after a lost shard node. Started on a
/// node that was a standby, or so restarted, it is a takeover: it resumes from the newest valid checkpoint in Checkpoint:Directory
/// (which must be shared between the parameter-server nodes), and the worker nodes, which lost their data plane to
/// the old node, register again and get the checkpoint's weights.
/// </remarks>
public sealed class JobHost : ReceiveActor, IWithTimers
{
    /// <summary>The job ended: with its result, or with the reason it failed (the coordinator's completion, or a refusal to start).</summary>
    internal sealed record Done(TrainingResult? Result, Exception? Failure);

    /// <summary>
    /// The node is stopping (Ctrl-C, SIGTERM): stop stepping now, rather than for the seconds the node takes to leave the
    /// cluster, and start nothing; unless only the last evaluation is left (below), end nothing. The job is not over: the
    /// newest checkpoint stays where it resumes, and a standby takes it over. Answered with a <see cref="bool"/>: true when
    /// the job is ending already (its outputs are being written, or only the last epoch's evaluation is left, which the
    /// coordinator lets finish), so the node should wait for that end before it leaves; otherwise false: once the node's
    /// result is set when the coordinator ran (the run ended unfinished, cancelled or failed), at once when the job had not
    /// started or this actor stops. The answer waits for the coordinator's decision (<see cref="Coordinator.StopRequested"/>),
    /// which waits for the parameter server's weights, up to <see cref="Coordinator.StopSnapshotTimeout"/>.
    /// </summary>
    internal sealed class StopTraining : INoSerializationVerificationNeeded
    {
        /// <summary>The only instance.</summary>
        public static readonly StopTraining Instance = new();

        private StopTraining() { }
    }

    /// <summary>
    /// Why a job host runs again on its node (<see cref="JobHostSupervisor"/>): its run on shard nodes lost a shard node, no standby
    /// was up to take the job over, and the run had a checkpoint. The new host takes the job over from the newest checkpoint, as a
    /// standby would.
    /// </summary>
    /// <param name="JobId">The job's id, by which the new host finds the job's checkpoints and the workers' registrations are matched.</param>
    /// <param name="Checkpoint">The position of the newest checkpoint when the shard was lost ("epoch 3's end", "epoch 4 round 200").</param>
    /// <param name="InARow">How many restarts in a row found that same checkpoint the newest: 1 for the first.</param>
    public sealed record ShardLossRestart(string JobId, string Checkpoint, int InARow)
    {
        /// <summary>
        /// The count in a row of a restart after <paramref name="earlier"/> (null: this is the job's first host) whose newest checkpoint is
        /// <paramref name="checkpoint"/>: 1 when it differs from the one the earlier restart had, else one more; null when that would pass
        /// <see cref="MaxRestartsFromOneCheckpoint"/> (the job ends instead).
        /// </summary>
        public static int? After(ShardLossRestart? earlier, string checkpoint)
        {
            var inARow = earlier is not null && earlier.Checkpoint == checkpoint ? earlier.InARow + 1 : 1;
            return inARow > MaxRestartsFromOneCheckpoint ? null : inARow;
        }
    }

    /// <summary>A job host asks its <see cref="JobHostSupervisor"/> to stop it and start a new one with <paramref name="Restart"/>. In process only.</summary>
    /// <param name="Restart">What the new host is told.</param>
    public sealed record RestartHere(ShardLossRestart Restart) : INoSerializationVerificationNeeded;

    /// <summary>
    /// Restarts in a row from one checkpoint after which a job ends instead: a shard node lost each time before the run wrote a
    /// newer checkpoint (a node that fails at every placement, say) would otherwise restart the job for ever.
    /// </summary>
    public const int MaxRestartsFromOneCheckpoint = 3;

    /// <summary>The node's outputs of a finished job are written (<see cref="Failure"/> null) or could not be.</summary>
    private sealed record OutputsSaved(Done Done, Exception? Failure);

    /// <summary>A valid data-plane connection whose worker's WorkerReady did not come in time.</summary>
    private sealed record ReadyTimeout(int WorkerIndex);

    /// <summary>A worker's failure held for <see cref="RemoteShardedParameterServer.LossGrace"/> (Cluster:ShardNodes), so that a stop
    /// of the whole cluster, whose shard nodes leave first, is not taken for the job's failure.</summary>
    private sealed record HeldWorkerFailure(WorkerFailed Failure, IActorRef Agent);

    /// <summary>
    /// True when <paramref name="held"/> is the failure of a worker that joined the running job on shard nodes, alone: its node
    /// cannot reach a shard node, or builds other starting weights. It is then a lost worker, not the job's end, and the others
    /// train on: the job host logs why, stops its link (the coordinator counts it lost), and refuses its node now and when it
    /// registers again (it would join in a new slot and fail alike). When another worker failed within the same grace, a shard
    /// node itself is the likely fault, and the failure ends the job as any worker's does; so does one of the workers the job
    /// started with.
    /// </summary>
    private bool IsJoinerOwnFailure(HeldWorkerFailure held)
    {
        var index = held.Failure.WorkerIndex;
        _failuresSeen.RemoveAll(f => System.Diagnostics.Stopwatch.GetElapsedTime(f.At) > 2 * RemoteShardedParameterServer.LossGrace);
        // No coordinator: training never started (the start timed out), so no worker joined it.
        if (_stopping || _coordinator is null || index < _startingWorkers || _failuresSeen.Any(f => f.Worker != index)) return false;
        var trimmed = held.Failure.Reason.TrimEnd();
        var reason = trimmed.EndsWith('.') ? trimmed : trimmed + ".";
        _log.Warning("Worker {0}, which joined the running job, failed: {1} It counts as lost; the job goes on without it.", index, reason);
        var refusal = $"worker {index} of this node joined the running job and failed: {reason} Fix that on this node and start it again; the " +
            "job goes on without it meanwhile.";
        _failedJoiners[held.Agent] = refusal;
        held.Agent.Tell(new RegistrationRefused(refusal));
        if (_links.TryGetValue(index, out var link)) Context.Stop(link); // OnLinkStopped counts it lost, as does the coordinator, which watches it too
        return true;
    }

    /// <summary>Tells the coordinator a worker's failure, which ends the job; while this node stops the job (its shard nodes stopping
    /// too, on a Ctrl-C of the whole cluster) it is part of the stop, and only logged.</summary>
    private void ReportWorkerFailure(WorkerFailed failed)
    {
        if (_stopping) _log.Info("Worker {0} failed while the job stops: {1}", failed.WorkerIndex, failed.Reason);
        // A lost shard connection is the shard's loss only in a job on shard nodes, and only for one of its shards.
        else _coordinator?.Tell(_options.Cluster.ShardNodes && failed.LostShard >= 0 && failed.LostShard < _options.Cluster.ParameterServerShards
            ? failed : failed with { LostShard = -1 });
    }

    /// <summary>Every 10 s until the job starts: says which workers it waits for.</summary>
    private sealed record StartStatus;

    /// <summary>Cluster:PauseTimeoutSeconds passed without Cluster:MinWorkers workers ready: the job ends.</summary>
    private sealed record StartTimedOut;

    /// <summary>How often a job that has not started says what it waits for.</summary>
    private static readonly TimeSpan StartStatusEvery = TimeSpan.FromSeconds(10);
    private readonly System.Diagnostics.Stopwatch _waitingToStart = new();

    /// <summary>A takeover that went on without the checkpoint directory's lock tries to take it again.</summary>
    private sealed record RetakeCheckpointDirectory
    {
        public static readonly RetakeCheckpointDirectory Instance = new();
    }

    /// <summary>How often a takeover without the checkpoint directory's lock tries to take it again, by default.</summary>
    public static readonly TimeSpan RetakeCheckpointDirectoryEvery = TimeSpan.FromSeconds(5);

    private readonly TimeSpan _retakeCheckpointDirectoryEvery;

    /// <summary>Seconds a valid data-plane connection may wait for its worker's WorkerReady.</summary>
    private const double ReadyTimeoutSeconds = 10;

    private readonly TrainingOptions _options;
    private readonly int _trainCount;
    private readonly string _trainDigest; // the training samples' ContentDigest, for the checkpoints; empty records none
    private readonly int _testCount;
    private readonly int _validationCount;
    private readonly string _dataHost;
    private readonly ITrainingObserver _observer;
    private readonly TaskCompletionSource<TrainingResult> _completion;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly string _fingerprint;
    private readonly string _serverSettings; // ModelFingerprint.ServerSettingsOf this node's options: the job's
    private readonly Sequential _model;
    private readonly WireLayout _wire; // floats of a weights message and of a worker's report in this job's mode
    private readonly List<IActorRef> _agentAt = [];                   // worker index -> the agent it was given to
    // worker index -> its node's address, for the coordinator's lines about a worker (read there while this actor adds to it)
    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, string> _nodeAt = new();
    private readonly Dictionary<IActorRef, int> _indexOf = [];         // agent -> its latest worker index
    private readonly HashSet<int> _lostLinks = [];                     // indices whose data plane closed
    private readonly Dictionary<IActorRef, int> _roundOf = [];        // agent -> its latest registration round (RegisterWorker.Round)
    private readonly HashSet<IActorRef> _refused = []; // agents already told why they were refused
    private readonly HashSet<string> _refusedStandbys = []; // standby nodes already warned of
    private bool _refusedThisNode; // an unchecked takeover whose settings are not the job's (RefuseThisNode)
    private readonly bool _stoodBy; // this host started on a node that stood by (FailoverState.WasStandby at its start)
    private bool _acceptedJobWorker; // a worker that trained under the job's previous parameter server was accepted
    private readonly Dictionary<IActorRef, Akka.Cluster.UniqueAddress> _memberOf = []; // agent -> its node's incarnation, at registration
    private readonly Dictionary<int, DataPlaneConnection> _waitingForReady = []; // valid connections whose WorkerReady is not in yet
    private int _linksCreated;
    private readonly Dictionary<int, IActorRef> _links = [];
    private readonly HashSet<int> _attached = [];
    private readonly WorkerTokens _dataTokens = new();                 // worker index -> the token its data-plane hello must carry
    private readonly ClusterSecurity _security;
    private readonly DataPlaneListener _listener;
    private bool _started;
    private int _shardWorkerSlots; // Cluster:ShardNodes: the worker slots the shards are placed for (RemoteShardSettings.WorkerSlotsFor)
    private int _startingWorkers;  // the workers training started with: a higher index joined the running job
    private readonly Dictionary<IActorRef, string> _failedJoiners = []; // agents whose worker joined on shard nodes and failed: refused, with why
    private readonly List<(int Worker, long At)> _failuresSeen = [];       // recent WorkerFailed reports on shard nodes: worker, Stopwatch timestamp
    private IActorRef? _coordinator;
    private Task<TrainingResult>? _coordinatorCompletion; // the coordinator's outcome, which reaches this actor as Done
    private readonly HashSet<int> _joined = []; // workers handed to the coordinator
    private readonly FailoverState? _failover;
    private bool _takeover;
    private JobFinished? _finished;
    private bool _resumeSearched;
    private Core.Checkpoints.CheckpointDirectoryLock? _checkpointLock; // this job's hold on Checkpoint:Directory, from its first search on
    private Core.Checkpoints.TrainingCheckpoint? _resumeFrom;
    private bool _waitingForCheckpointWorkers;
    private string _jobId = NewJobId(); // a takeover adopts its workers' job id
    private readonly WorkerStepCounter _workerSteps; // the observer given to the coordinator
    private readonly Func<TrainingResult, Task>? _saveOutputs;
    private bool _saving;
    private bool _stopping; // StopTraining came: the coordinator's end (it was stopped) is not the job's
    private readonly List<IActorRef> _stopCallers = []; // StopTraining's senders, answered once the coordinator decides (AnswerStop)
    private bool _endSeen; // the coordinator's Done was handled
    private readonly bool _restartable; // run by a JobHostSupervisor, which can start a new host in this one's place
    private readonly ShardLossRestart? _restartedAfter; // this host runs the job again after a lost shard node; null: the first host

    /// <summary>Creates the host; see <see cref="Props"/>.</summary>
    public JobHost(TrainingOptions options, ClusterSecurity security, DataPlaneListener listener, int trainCount, int testCount, int validationCount,
        string dataHost, ITrainingObserver observer, TaskCompletionSource<TrainingResult> completion, FailoverState? failover = null,
        TimeSpan? retakeCheckpointDirectoryEvery = null, Func<TrainingResult, Task>? saveOutputs = null, string trainDigest = "", string samples = "",
        bool restartable = false, ShardLossRestart? restartedAfter = null)
    {
        _restartable = restartable;
        _restartedAfter = restartedAfter;
        _trainDigest = trainDigest;
        _saveOutputs = saveOutputs;
        _retakeCheckpointDirectoryEvery = retakeCheckpointDirectoryEvery ?? RetakeCheckpointDirectoryEvery;
        _options = options;
        _security = security;
        _listener = listener;
        _failover = failover;
        _takeover = (failover?.WasStandby ?? false) || restartedAfter is not null;
        _stoodBy = (failover?.WasStandby ?? false) && restartedAfter is null; // a restart has the job's own settings
        if (restartedAfter is not null) _jobId = restartedAfter.JobId;
        _trainCount = trainCount;
        _testCount = testCount;
        _validationCount = validationCount;
        _dataHost = dataHost;
        _observer = observer;
        _completion = completion;
        _workerSteps = new WorkerStepCounter(observer);
        _fingerprint = ModelFingerprint.Of(options, samples);
        _serverSettings = ModelFingerprint.ServerSettingsOf(options);
        _model = ModelFactory.Build(options.Model);
        _wire = WireLayout.For(_model.Layout, options.Training.Mode, options.Optimizer);

        Receive<RegisterWorker>(OnRegister);
        Receive<RegisterStandby>(OnRegisterStandby);
        Receive<WorkerReady>(OnReady);
        Receive<WorkerFailed>(failed =>
        {
            // Only from the agent registered as that worker (a member, authenticated by the cluster). By its sender, not by the
            // worker's link, which the worker's death may have stopped first.
            if (!_indexOf.TryGetValue(Sender, out var index) || index != failed.WorkerIndex) return;
            if (_options.Cluster.ShardNodes && !_stopping)
            {
                _failuresSeen.Add((index, System.Diagnostics.Stopwatch.GetTimestamp()));
                Timers.StartSingleTimer($"worker-failed-{index}", new HeldWorkerFailure(failed, Sender), RemoteShardedParameterServer.LossGrace);
            }
            else ReportWorkerFailure(failed);
        });
        Receive<HeldWorkerFailure>(held =>
        {
            if (!IsJoinerOwnFailure(held)) ReportWorkerFailure(held.Failure);
        });
        Receive<DataPlaneListener.Accepted>(OnDataConnection);
        Receive<ReadyTimeout>(OnReadyTimeout);
        Receive<DataPlaneListener.Rejected>(r => _log.Warning("Data plane: refused a connection from {0}: {1}", r.Peer, r.Reason));
        Receive<Done>(OnDone);
        Receive<StopTraining>(_ =>
        {
            _stopping = true;
            foreach (var link in _links.Values) link.Tell(WorkerLink.JobStopping.Instance); // workers that leave now leave with the stop
            // True when the job is ending already: its outputs being written or written, or the coordinator completed (it is
            // stopping itself and its result is on its way here as Done), or only the last epoch's evaluation is left (the
            // coordinator lets it finish, as in single-node mode). The node then waits for that end. Otherwise the
            // coordinator ends the run cancelled; the job goes on on a standby, or on resume.
            if (_saving || _finished is not null || _coordinatorCompletion?.IsCompletedSuccessfully == true) Sender.Tell(true);
            else if (_endSeen) Sender.Tell(false); // the run ended unfinished, and the node's result is set
            else if (_coordinator is not null)
            {
                // Answered through this actor (AnswerStop), a false answer only with the run's end (OnDone), so that the node's
                // result is set when the node reads it; and a coordinator that ends as the request reaches it never reads it.
                // One that has ended already (unfinished: its Done is on its way) is not asked.
                _stopCallers.Add(Sender);
                if (_stopCallers.Count == 1 && _coordinatorCompletion?.IsCompleted != true) _coordinator.Tell(new Coordinator.StopRequested(Self));
            }
            else
            {
                EndWorkersIfNothingCanContinue(); // the job had not started: the workers waiting for it end too
                Sender.Tell(false);
            }
        });
        // The coordinator's answer to a stop (Coordinator.StopRequested): true, the run finishes; false, it ends unfinished.
        Receive<bool>(finishes => finishes && Sender.Equals(_coordinator), _ => AnswerStop(finishes: true));
        Receive<bool>(_ => { }); // answered with its end (OnDone), whose result is then the node's
        Receive<OutputsSaved>(saved =>
        {
            if (saved.Failure is null || !HandOverToStandby(saved.Done, saved.Failure)) Finish(saved.Done, saved.Failure);
        });
        Receive<StartNow>(_ => TryStart(waited: true));
        // Not while the start is due within its second (the line said "Start worker nodes" with every one needed ready).
        Receive<StartStatus>(_ => !_started && !Timers.IsTimerActive("start-now"), _ => _log.Warning("{0}", WaitingToStart()));
        Receive<StartStatus>(_ => { });
        Receive<StartTimedOut>(_ => !_started, _ =>
        {
            _started = true;
            var reason = string.Format(CultureInfo.InvariantCulture,
                "The job did not start: after {0:F0} s (Cluster:PauseTimeoutSeconds) {1}. Start worker nodes within Cluster:PauseTimeoutSeconds, " +
                "{2}or set Cluster:PauseTimeoutSeconds = 0 to wait for ever.", _waitingToStart.Elapsed.TotalSeconds, ReadyCount(),
                _waitingForCheckpointWorkers ? "" : "lower Cluster:MinWorkers, "); // a mid-epoch checkpoint needs its epoch's workers whatever MinWorkers is
            Self.Tell(new Done(null, new TrainingStalledException(reason))); // the node reports it, and tells the workers
        });
        Receive<StartTimedOut>(_ => { });
        Receive<Terminated>(OnLinkStopped);
        Receive<RetakeCheckpointDirectory>(_ => OnRetakeCheckpointDirectory());
    }

    /// <summary>Props of the job host, which a <see cref="JobHostSupervisor"/> runs as the child of the cluster singleton
    /// (<see cref="ParameterServerNode.SingletonManagerProps"/>); tests also run it alone.</summary>
    /// <param name="options">The job's validated options.</param>
    /// <param name="security">The job's identity (checked at registration) and the node's TLS certificates.</param>
    /// <param name="listener">The node's data-plane listener, bound at start-up; the host attaches to it while it runs.</param>
    /// <param name="trainCount">Training samples (after any limit and validation split).</param>
    /// <param name="testCount">Test samples.</param>
    /// <param name="validationCount">Validation samples; 0 for none.</param>
    /// <param name="dataHost">Host name workers connect to for the data plane.</param>
    /// <param name="observer">Receives progress.</param>
    /// <param name="completion">Completed with the result, or failed with the reason.</param>
    /// <param name="failover">The node's failover state; a host started after the node was a standby takes over from the newest checkpoint.</param>
    /// <param name="retakeCheckpointDirectoryEvery">How often a takeover that found Checkpoint:Directory still held tries to take
    /// it again; null: <see cref="RetakeCheckpointDirectoryEvery"/>.</param>
    /// <param name="saveOutputs">Writes the finished job's weights (and summary) where the node keeps them. The job's end goes
    /// out to the workers and the standbys only once it has completed, so that a node that dies before then leaves the job
    /// to a standby, which takes over from the newest checkpoint, instead of the trained weights being lost. Null: the end
    /// goes out at once.</param>
    /// <param name="trainDigest">The training samples' <see cref="Core.Data.LabeledDataset.ContentDigest"/>: written into the
    /// checkpoints, and checked on resume and takeover; empty for none.</param>
    /// <param name="samples">The node's <see cref="ModelFingerprint.SamplesOf"/>: a worker that read other samples is refused.
    /// Empty: samples are not compared (the workers must then send none either, as in tests).</param>
    /// <param name="restartable">True when a <see cref="JobHostSupervisor"/> runs the host: a run on shard nodes that loses a shard node
    /// with no standby up and a checkpoint written is then restarted on this node from the newest checkpoint instead of failing.</param>
    /// <param name="restartedAfter">Null for the job's first host on this node; a restart's reason for a host started in the place of one
    /// whose run lost a shard node: it takes the job over from the newest checkpoint.</param>
    public static Props Props(TrainingOptions options, ClusterSecurity security, DataPlaneListener listener, int trainCount, int testCount, int validationCount,
        string dataHost, ITrainingObserver observer, TaskCompletionSource<TrainingResult> completion, FailoverState? failover = null,
        TimeSpan? retakeCheckpointDirectoryEvery = null, Func<TrainingResult, Task>? saveOutputs = null, string trainDigest = "", string samples = "",
        bool restartable = false, ShardLossRestart? restartedAfter = null) =>
        Akka.Actor.Props.Create(() => new JobHost(options, security, listener, trainCount, testCount, validationCount, dataHost, observer, completion, failover,
            retakeCheckpointDirectoryEvery, saveOutputs, trainDigest, samples, restartable, restartedAfter));

    /// <inheritdoc />
    public ITimerScheduler Timers { get; set; } = null!;

    /// <inheritdoc />
    protected override void PreStart()
    {
        _listener.Attach(Self);
        if (_failover is not null) _failover.HostsJob = true;
        if (_failover?.Finished is true)
        {
            // Handed over at the normal end of the job (the active node left after JobFinished reached this node).
            _log.Info("The job already finished on another parameter-server node; this host starts nothing.");
            return;
        }
        if (_restartedAfter is { } restart)
        {
            Metrics.DistTrainMetrics.RecordShardLossRestart();
            _log.Info(string.Format(CultureInfo.InvariantCulture, "Restarting the job on this node from the newest checkpoint (of {0}; restart {1} of at most " +
                "{2} from that checkpoint) after the lost shard node; waiting for {3} worker(s) to register again; data plane on port {4}, {5}", restart.Checkpoint,
                restart.InARow, MaxRestartsFromOneCheckpoint, _options.Cluster.MinWorkers, _listener.Port, _listener.Interfaces));
        }
        else if (_takeover)
        {
            Metrics.DistTrainMetrics.RecordTakeover();
            _log.Warning("Taking over the job as the parameter server (the active one failed or was stopped); waiting for {0} worker(s) to register again; data plane on port {1}, {2}",
                _options.Cluster.MinWorkers, _listener.Port, _listener.Interfaces);
        }
        else
            _log.Info("Job host waiting for {0} worker(s); data plane on port {1}, {2}", _options.Cluster.MinWorkers, _listener.Port, _listener.Interfaces);
        // A job that cannot start (its workers never came, or died before it started) says so, and ends as a pause would.
        _waitingToStart.Start();
        Timers.StartPeriodicTimer(nameof(StartStatus), new StartStatus(), StartStatusEvery);
        if (_options.Cluster.PauseTimeoutSeconds > 0)
            Timers.StartSingleTimer(nameof(StartTimedOut), new StartTimedOut(), TimeSpan.FromSeconds(_options.Cluster.PauseTimeoutSeconds));
        if (_options.DescribeCompression() is { } compression) _log.Info("Cluster:Compression: {0}", compression);
    }

    /// <inheritdoc />
    protected override void PostStop()
    {
        AnswerStop(finishes: false);
        _checkpointLock?.Dispose();
        _listener.Detach(Self);
        foreach (var waiting in _waitingForReady.Values) waiting.Dispose();
    }

    /// <summary>The settings in which a worker's fingerprint differs from this host's, for its refusal.</summary>
    private string DescribeDifferences(string workerFingerprint)
    {
        try
        {
            return ModelFingerprint.DescribeDifferences(workerFingerprint, _fingerprint);
        }
        catch (System.Text.Json.JsonException)
        {
            return "the worker's fingerprint is not JSON";
        }
    }

    /// <summary>
    /// Warns of the settings a joining worker was given other values of than this node's (<see cref="ModelFingerprint.ServerSettingsOf"/>):
    /// the job uses this node's, and the worker's are ignored, which a user who set them on the worker alone would not know.
    /// </summary>
    /// <returns>The differences ("; "-separated), which the acceptance passes on to the worker's own log; empty when none.</returns>
    private string WarnOfIgnoredSettings(RegisterWorker register)
    {
        if (register.ServerSettings.Length == 0) return "";
        IReadOnlyList<string> differences;
        try
        {
            differences = ModelFingerprint.ServerSettingDifferences(register.ServerSettings, _serverSettings);
        }
        catch (System.Text.Json.JsonException)
        {
            _log.Warning("Worker node {0} sent settings that are not JSON; they are not compared.", register.NodeName);
            return "";
        }
        if (differences.Count == 0) return "";
        _log.Warning("Worker node {0} was given other values of settings that this parameter-server node decides for the whole job: {1}. " +
            "The job uses this node's; the worker's are ignored. Set them on the parameter-server node (or the same on every node).",
            register.NodeName, string.Join("; ", differences));
        return string.Join("; ", differences);
    }

    /// <summary>What <see cref="ModelFingerprint.Of"/> compares, for a refusal's reader: one sentence, ending in a space.</summary>
    private const string SettingsCompared =
        "The settings compared: the model, the data settings, Cluster:Compression, TopKRatio, TopKScope and ErrorFeedback with the momentum the workers apply, " +
        "and Training:Mode and AccumulationSteps (under LocalSgd also LocalSteps, Epochs and the Optimizer section, which the workers apply), " +
        "and the samples each node read (Samples: the count and digest of each split; every node must read the same files with the same contents, " +
        "or all set Cluster:CheckSamples to false where the same files decode differently on different machines), " +
        "and how the node shuffles samples (ShardShuffle: the workers plan their shards themselves; run the same DistTrain build and .NET runtime on every node). ";

    /// <summary>
    /// Why a node asking to join this job (a worker, or a standby parameter server) belongs to another one: another protocol
    /// version, job name or job secret; null when it belongs to this job. The settings are compared by the caller.
    /// </summary>
    private string? RefusalOf(int protocolVersion, string jobName, byte[]? proof, string nodeName, string fingerprint)
    {
        var identity = _security.Identity;
        if (protocolVersion != ClusterProtocolInfo.Version)
            return $"protocol version {protocolVersion} differs from the parameter server's {ClusterProtocolInfo.Version}: run the same DistTrain version on every node.";
        if (jobName != identity.Name)
            return $"it belongs to another job: job name '{jobName}', this job is '{identity.Name}' (Cluster:JobName). Start it with this job's name and secret, or join it to its own job.";
        if (proof is null || !JobIdentity.Matches(proof, identity.RegistrationProof(nodeName, protocolVersion, fingerprint)))
            return $"its job secret differs from the secret of job '{identity.Name}' (Cluster:SecretFile or DISTTRAIN_Cluster__Secret): it belongs to another job, or was given the wrong secret.";
        return null;
    }

    /// <summary>
    /// A parameter-server node that stands by for this job asks whether it may (<see cref="ParameterServerNode"/>): it is
    /// refused, with one WARNING here, when it belongs to another job or its settings differ from this node's, both the
    /// settings every node shares (<see cref="ModelFingerprint.Of"/>) and those the parameter server decides for the whole
    /// job (<see cref="ModelFingerprint.ServerSettingsOf"/>), since at a takeover it would run the job with its own and
    /// refuse every worker of it. Answered whatever the job's state, as a worker's checks are.
    /// </summary>
    private void OnRegisterStandby(RegisterStandby register)
    {
        var refusal = RefusalOf(register.ProtocolVersion, register.JobName, register.Proof, register.NodeName, register.ModelFingerprint);
        if (refusal is null)
        {
            var differences = new List<string>();
            try
            {
                if (register.ModelFingerprint != _fingerprint)
                    differences.Add(ModelFingerprint.DescribeDifferences(register.ModelFingerprint, _fingerprint));
                if (register.ServerSettings != _serverSettings)
                    differences.Add(ModelFingerprint.DescribeDifferences(register.ServerSettings, _serverSettings));
            }
            catch (System.Text.Json.JsonException)
            {
                differences.Add("the standby's settings are not JSON");
            }
            if (differences.Count > 0)
                refusal = $"its settings differ from the active parameter server's ({string.Join("; ", differences)}; the standby's value vs the active's), " +
                    "and a standby that took the job over would run it with its own and refuse the workers whose settings differ from them. Start the standby with the same config and DISTTRAIN_* " +
                    "variables as the active parameter-server node (only its own addresses, ports and folders may differ); both nodes' whole settings are " +
                    "logged at debug level on the active one.";
        }
        if (refusal is null)
        {
            _log.Debug("Standby parameter-server node {0} has this job's settings", register.NodeName);
            Sender.Tell(new StandbyAccepted(register.NodeName));
            return;
        }
        if (_refusedStandbys.Add(register.NodeName))
        {
            _log.Warning("Refused standby parameter-server node {0}: {1} The job goes on here; that node does not stand by for it.", register.NodeName, refusal);
            _log.Debug("Settings compared for standby node {0}: standby {1} {2}; this node {3} {4}", register.NodeName, register.ModelFingerprint,
                register.ServerSettings, _fingerprint, _serverSettings);
        }
        else _log.Debug("Refused standby parameter-server node {0} again: {1}", register.NodeName, refusal);
        Sender.Tell(new RegistrationRefused(refusal));
    }

    private void OnRegister(RegisterWorker register)
    {
        if (_refusedThisNode) return; // the workers wait for a parameter server with the job's settings
        if (_failedJoiners.TryGetValue(Sender, out var joinerFailure))
        {
            Sender.Tell(new RegistrationRefused(joinerFailure));
            return;
        }
        // The checks come first, also after the end: a node of another job, version or model is told why it does not
        // belong, not that this job is over (as if its own had run).
        var identity = _security.Identity;
        var foreign = RefusalOf(register.ProtocolVersion, register.JobName, register.Proof, register.NodeName, register.ModelFingerprint);
        // Only on a node that stood by unchecked, and before any worker of the job was accepted: a plain parameter server (no
        // standby) refuses a differing worker as before (a leftover worker of an earlier job must not end a new one).
        if (foreign is null && register.ModelFingerprint != _fingerprint && register.LostParameterServer && !_started && _stoodBy
            && !_acceptedJobWorker && _failover is { StandbyChecked: false })
        {
            RefuseThisNode(register);
            return;
        }
        var refusal = foreign ??
            (register.ModelFingerprint != _fingerprint
                ? $"model settings differ from the parameter server's ({DescribeDifferences(register.ModelFingerprint)}; worker's value vs the parameter server's). " +
                  SettingsCompared + "Use the same config and DISTTRAIN_* variables on every node (both nodes' whole settings are logged at debug level here)."
                : null);
        if (refusal is not null)
        {
            // A refused agent's retries, and the registrations the singleton proxy buffered for it, repeat the refusal:
            // one warning per agent, the repeats at debug level.
            if (_refused.Add(Sender))
            {
                _log.Warning("Refused worker node {0}: {1}", register.NodeName, refusal);
                if (register.ModelFingerprint != _fingerprint)
                    _log.Debug("Settings compared for worker node {0}: worker {1}; parameter server {2}", register.NodeName, register.ModelFingerprint, _fingerprint);
            }
            else _log.Debug("Refused worker node {0} again: {1}", register.NodeName, refusal);
            Sender.Tell(new RegistrationRefused(refusal));
            return;
        }
        if (_finished is not null || _failover?.Finished is true)
        {
            if (_finished is null) return; // the job ended on another parameter-server node, which told the workers
            Sender.Tell(_finished); // a worker that lost the data plane at the very end: the job is over
            return;
        }
        // (A restart knows its job's id already.)
        if (register.LostParameterServer && !_started && !_resumeSearched && register.JobId.Length > 0 && _restartedAfter is null) _jobId = register.JobId;
        if (register.LostParameterServer && !_started && !_takeover)
        {
            // A worker that was training under another parameter server: this host continues that job, whether or not
            // this node saw the old one as a standby (it may have started after that node died).
            _takeover = true;
            Metrics.DistTrainMetrics.RecordTakeover();
            _log.Warning("Worker node {0} lost its parameter server: this host takes over the job from the newest checkpoint", register.NodeName);
        }
        // A resume continues its checkpoint's job (FindResumeCheckpoint adopts the job id), so the checkpoint is found before the
        // first worker is accepted: every worker is told that id, by which a standby's takeover later finds the job's checkpoints,
        // and a run on shard nodes signs the workers' shard endpoints. A search that fails ends the job, and the worker is not accepted.
        if (_options.Checkpoint.Resume && !_takeover && !_started && !_stopping && !FindResumeCheckpoint()) return;
        // A repeated registration keeps its index. An agent whose data plane closed (or never opened) registers again, in a new
        // round: before training starts it keeps its index, and what its earlier round left here is dropped; afterwards it joins
        // as a new worker (the coordinator counts the old one lost, now or when its link stops).
        // Another round than the last one seen is a new one: a higher one, or a lower one from an agent that restarted (its
        // repeated sends within a round come in order, so an earlier round's never comes after a later one's).
        var newRound = register.Round > 0 && _roundOf.TryGetValue(Sender, out var lastRound) && register.Round != lastRound;
        // On shard nodes, a registration that needs a new worker slot once every placed one is given out is refused before it changes
        // anything here (its earlier round's link and token stay until the coordinator counts that worker lost, as they would).
        var known = _indexOf.TryGetValue(Sender, out var knownIndex);
        if (_started && _options.Cluster.ShardNodes && _shardWorkerSlots > 0 && _agentAt.Count >= _shardWorkerSlots
            && (!known || _lostLinks.Contains(knownIndex) || newRound))
        {
            RefuseBeyondShardSlots(register.NodeName);
            return;
        }
        if (register.Round > 0) _roundOf[Sender] = register.Round;
        var joins = false;
        if (_indexOf.TryGetValue(Sender, out var index) && newRound) DropEarlierRound(index);
        if (!_indexOf.TryGetValue(Sender, out index) || (_started && (_lostLinks.Contains(index) || newRound)))
        {
            index = _agentAt.Count;
            _agentAt.Add(Sender);
            _indexOf[Sender] = index;
            joins = true;
        }
        joins |= _lostLinks.Remove(index);
        var token = _dataTokens.Issue(index);
        // A worker registers every 2 s until accepted, and the singleton proxy delivers every registration it buffered
        // while the job host was not yet found: only the first of them (or one after a lost data plane) is a join.
        _nodeAt[index] = register.NodeName;
        var ignored = "";
        if (joins)
        {
            _log.Info("Worker node {0} joins as worker {1}", register.NodeName, index);
            ignored = WarnOfIgnoredSettings(register);
        }
        if (register.LostParameterServer) _acceptedJobWorker = true;
        if (MemberAt(Sender.Path.Address) is { } member) _memberOf[Sender] = member.UniqueAddress;
        Sender.Tell(new WorkerAccepted(index, _dataHost, _listener.Port, _wire.WeightsLength, _jobId, token,
            identity.AcceptanceProof(register.NodeName, index, _dataHost, _listener.Port, token, register.Round), ignored, register.Round));
        // A takeover knows its job once a worker reports it: the newest checkpoint is read and verified now, while the
        // workers open their data planes, instead of after they are all ready (0.3-0.4 s of a takeover, measured).
        if (_takeover && !_started && register.LostParameterServer && register.JobId.Length > 0) FindResumeCheckpoint();
    }

    /// <summary>
    /// A worker that would join the running job on shard nodes (Cluster:ShardNodes) when every worker slot the shards were placed for
    /// has been given out (each joining or restarted worker takes a new one): no shard holds a token for another slot, so it could not
    /// train. It is refused with the reason, which its node reports as it exits (exit code 2), rather than accepted to stay idle.
    /// </summary>
    private void RefuseBeyondShardSlots(string nodeName)
    {
        var refusal = $"the shards of this job (Cluster:ShardNodes) were placed for {_shardWorkerSlots} worker slots (0 to {_shardWorkerSlots - 1}: " +
            $"those of the workers the job started with, and as many more, at least {RemoteShardSettings.MinSpareWorkerSlots} and at most " +
            $"{UpdatePolicy.MaxWorkers} in all), and every one has been given out to a worker that joined or restarted; a shard takes no worker " +
            "beyond them. To train with more workers, or to restart more, restart the job (with Checkpoint:Directory set, Checkpoint:Resume " +
            "continues it from its newest checkpoint).";
        if (_refused.Add(Sender)) _log.Warning("Refused worker node {0}: {1}", nodeName, refusal);
        else _log.Debug("Refused worker node {0} again: {1}", nodeName, refusal);
        Sender.Tell(new RegistrationRefused(refusal));
    }

    /// <summary>
    /// A takeover by a node whose settings the active parameter server never compared (it died within about 2 s of this
    /// standby's start, before it answered <see cref="RegisterStandby"/>), and a worker
    /// that trained under that parameter server, so has the job's settings, registers with other ones: this node's settings
    /// are the wrong ones. It takes no part in the job, instead of refusing every worker of it as if they were the faulty
    /// nodes: its run fails with <see cref="NodeRefusedException"/> (the CLI's exit code 2), no worker is answered, and the
    /// workers wait Cluster:JoinTimeoutSeconds for a parameter server with the job's settings, which takes the job over.
    /// </summary>
    private void RefuseThisNode(RegisterWorker register)
    {
        _refusedThisNode = true;
        StopWaitingToStart();
        _checkpointLock?.Dispose();
        _checkpointLock = null;
        Timers.Cancel(nameof(RetakeCheckpointDirectory));
        _log.Info("Worker node {0}, which trained under the job's previous parameter server, has other settings than this node, whose settings " +
            "were never compared with that server's: this node does not take the job over.", register.NodeName);
        _completion.TrySetException(new NodeRefusedException(
            $"This node took the job over as its parameter server before the active one had compared its settings with the job's (it does so " +
            $"within about 2 s of a standby's start), and worker node {register.NodeName}, which trained under that parameter server, has other " +
            $"settings ({DescribeDifferences(register.ModelFingerprint)}; the worker's value vs this node's). {SettingsCompared}This node takes no part " +
            "in the job; its workers wait Cluster:JoinTimeoutSeconds for a parameter server. Start this node again within that time with the same " +
            "config and DISTTRAIN_* variables as the workers (only its own addresses, ports and folders may differ), and it takes the job over " +
            "from the newest checkpoint."));
    }

    /// <summary>
    /// A worker node that registers again in a new round (its data plane did not open, or closed) has stopped the worker actor
    /// and link of its earlier round: that round's link here is stale, and so are its token and a connection of it still waiting
    /// for its WorkerReady. Before training starts the node keeps its index, and they are dropped now, as the registration comes,
    /// so the new round's connection, which may reach this host before the new worker's <see cref="WorkerReady"/>, waits for the
    /// new link instead of being attached to the stale one (and closed with it). After the start the node joins as a new worker,
    /// and the stale link is stopped now, watched, so the coordinator counts its worker lost at once rather than when its socket
    /// times out.
    /// </summary>
    private void DropEarlierRound(int index)
    {
        _dataTokens.Spend(index); // before the start Issue draws the new round's token; after it, the index is not given again
        if (_waitingForReady.Remove(index, out var waiting))
        {
            Timers.Cancel(("ready", index));
            waiting.Dispose();
        }
        if (!_links.TryGetValue(index, out var link)) return;
        if (_started)
        {
            _log.Info("Worker {0}'s node registered again: the link of its earlier registration stops, and the node joins as a new worker.", index);
            Context.Stop(link); // OnLinkStopped counts it lost, as does the coordinator, which watches it too
            return;
        }
        // Stopped after what is in its mailbox: a connection attached to it meanwhile is then closed by its PostStop, not lost.
        _links.Remove(index);
        Context.Unwatch(link);
        link.Tell(PoisonPill.Instance);
        _attached.Remove(index);
        _log.Info("Worker {0}'s node registered again before the start: the link of its earlier registration is dropped.", index);
    }

    private void OnReady(WorkerReady ready)
    {
        if (_links.ContainsKey(ready.WorkerIndex)) return; // a repeated one
        if (!_indexOf.TryGetValue(Sender, out var index) || index != ready.WorkerIndex)
        {
            _log.Warning("A WorkerReady for worker {0} came from {1}, which is not the agent that registered as worker {0}; ignored.", ready.WorkerIndex,
                Sender.Path);
            return;
        }
        // A late one of an earlier round: its worker actor has stopped, and the round's token and connection were dropped.
        if (ready.Round != _roundOf.GetValueOrDefault(Sender))
        {
            _log.Info("Worker {0}'s WorkerReady of registration round {1} came after its round {2} registered; ignored.", ready.WorkerIndex, ready.Round,
                _roundOf.GetValueOrDefault(Sender));
            return;
        }
        _links[ready.WorkerIndex] = Context.Watch(Context.ActorOf(WorkerLink.Props(ready.WorkerIndex, ready.Worker, _wire.ReportLength,
            ReplicaSettings.CompressionOf(_options), _model.Layout.TrainableTensorLengths.ToArray(), _options.Cluster.SharedMemory ? _wire.WeightsLength : 0),
            $"worker-link-{ready.WorkerIndex}-{++_linksCreated}"));
        if (_waitingForReady.Remove(ready.WorkerIndex, out var connection))
        {
            Timers.Cancel(("ready", ready.WorkerIndex));
            Attach(ready.WorkerIndex, connection);
            return;
        }
        TryStart();
        JoinRunningJob(ready.WorkerIndex);
    }

    /// <summary>
    /// A data-plane connection that passed TLS and sent its hello: attached to its worker's link only if the hello carries
    /// that registration's token and the worker has no connection yet. Anything else is closed and logged once; the
    /// worker whose index it claimed is not disturbed.
    /// </summary>
    private void OnDataConnection(DataPlaneListener.Accepted accepted)
    {
        var hello = accepted.Hello;
        var index = hello.WorkerIndex;
        string? refusal = null;
        if (_attached.Contains(index) || _waitingForReady.ContainsKey(index))
            refusal = $"it claims worker {index}, which is already connected; the existing connection is kept";
        else if (!_dataTokens.Has(index))
            refusal = $"it claims worker index {index}, which no registered worker is waiting to connect as";
        else if (!_dataTokens.Carries(hello))
            refusal = $"it claims worker {index} without that registration's token (only the node that registered as worker {index} has it)";
        else if (hello.ParameterCount != _wire.WeightsLength)
            refusal = $"worker {index} announced {hello.ParameterCount} parameters, this model has {_wire.WeightsLength}" +
                (_wire.StateBuffers > 0 ? $" with its optimizer state ({_wire.StateBuffers} buffers, Training:Mode = LocalSgd)" : "");
        if (refusal is not null)
        {
            _log.Warning("Data plane: refused a connection from {0}: {1}; closed.", accepted.Connection.Peer, refusal);
            accepted.Connection.Dispose();
            return;
        }
        _dataTokens.Spend(index); // one connection per registration
        if (!_links.ContainsKey(index))
        {
            // A registered worker's connection can arrive before its WorkerReady: it waits, for a bounded time.
            _log.Info("Data plane: worker {0}'s connection from {1} came before its WorkerReady; it waits up to {2} s for it.",
                index, accepted.Connection.Peer, ReadyTimeoutSeconds);
            _waitingForReady[index] = accepted.Connection;
            Timers.StartSingleTimer(("ready", index), new ReadyTimeout(index), TimeSpan.FromSeconds(ReadyTimeoutSeconds));
            return;
        }
        Attach(index, accepted.Connection);
    }

    private void OnReadyTimeout(ReadyTimeout timeout)
    {
        if (!_waitingForReady.Remove(timeout.WorkerIndex, out var connection)) return;
        _log.Warning("Data plane: closed worker {0}'s connection from {1}: its WorkerReady did not arrive within {2} s.",
            timeout.WorkerIndex, connection.Peer, ReadyTimeoutSeconds);
        connection.Dispose();
    }

    private void Attach(int index, DataPlaneConnection connection)
    {
        _log.Info("Data plane: worker {0} connected from {1} ({2})", index, connection.Peer, connection.Security);
        _links[index].Tell(new WorkerLink.Attach(connection));
        _attached.Add(index);
        TryStart();
        JoinRunningJob(index);
    }

    /// <summary>A worker that is ready and attached after training started joins the coordinator's job (next epoch).</summary>
    private void JoinRunningJob(int index)
    {
        if (!_started || _coordinator is null || !_attached.Contains(index) || !_links.TryGetValue(index, out var link) || !_joined.Add(index)) return;
        if (_options.Cluster.ShardNodes && index >= _shardWorkerSlots)
        {
            // The shards hold a token for each of the slots they were placed for, and no other: its worker would get no shard nodes.
            // (A registration is refused once the slots are given out, RefuseBeyondShardSlots; this stays as a guard.)
            _log.Warning("Worker {0} is ready, but the shards of this job (Cluster:ShardNodes) were placed for {1} worker slots (0 to {2}: those of the " +
                "workers the job started with, and as many more, at least {3} and at most {4} in all, for workers that join or restart), all given out: it " +
                "stays idle until the job ends. To train with more workers, restart the job (with Checkpoint:Directory set, Checkpoint:Resume continues " +
                "it from its newest checkpoint).", index, _shardWorkerSlots, _shardWorkerSlots - 1, RemoteShardSettings.MinSpareWorkerSlots, UpdatePolicy.MaxWorkers);
            return;
        }
        _coordinator.Tell(new AddWorker(link, index));
    }

    private sealed record StartNow;

    private static string NewJobId() => Guid.NewGuid().ToString("N")[..12];

    /// <summary>A worker's data plane closed (the coordinator, which watches the link too, handles the loss).</summary>
    private void OnLinkStopped(Terminated terminated)
    {
        foreach (var (index, link) in _links)
        {
            if (!link.Equals(terminated.ActorRef)) continue;
            _links.Remove(index);
            _attached.Remove(index);
            _lostLinks.Add(index);
            return;
        }
    }

    private bool Ready(int index) => _attached.Contains(index) && _links.ContainsKey(index);

    /// <summary>
    /// "1 of Cluster:MinWorkers = 2 workers is ready (worker 0)", for the lines of a job that has not started; while a
    /// mid-epoch checkpoint waits for its epoch's workers, their count instead.
    /// </summary>
    private string ReadyCount()
    {
        var ready = _links.Keys.Where(Ready).Order().ToList();
        var needed = _waitingForCheckpointWorkers && _resumeFrom is { } checkpoint
            ? $"the {checkpoint.Workers} workers the checkpoint's epoch was planned for"
            : $"Cluster:MinWorkers = {_options.Cluster.MinWorkers} workers";
        return string.Format(CultureInfo.InvariantCulture, "{0} of {1} {2} ready{3}", ready.Count, needed,
            ready.Count == 1 ? "is" : "are", ready.Count == 0 ? "" : $" (worker{(ready.Count == 1 ? "" : "s")} {string.Join(", ", ready)})");
    }

    /// <summary>
    /// The warning of a resume from a mid-epoch checkpoint with fewer workers ready than its epoch was planned for: how long it
    /// waits for them (Cluster:ResumeWaitSeconds, <paramref name="waitSeconds"/>), which resumes the epoch exactly, and that it then
    /// goes on with the workers ready, which train what the epoch's plan had left.
    /// </summary>
    internal static string CheckpointWorkersWanted(int epoch, int round, int planned, int ready, double waitSeconds) =>
        string.Format(CultureInfo.InvariantCulture, "The checkpoint resumed from was written in the middle of epoch {0} (round {1}), whose minibatches " +
            "were planned for {2} workers: the job waits up to {5:F0} s (Cluster:ResumeWaitSeconds) until {2} are ready ({3} {4} now), which resumes the " +
            "epoch exactly, then goes on with the workers ready, which train what the epoch's plan had left. Start worker nodes until {2} are ready to " +
            "resume it exactly.",
            epoch, round, planned, ready, ready == 1 ? "is" : "are", waitSeconds);

    /// <summary>Stops the start's status line and its timeout: the job started, or ended before it did.</summary>
    private void StopWaitingToStart()
    {
        Timers.Cancel(nameof(StartStatus));
        Timers.Cancel(nameof(StartTimedOut));
    }

    /// <summary>The periodic line of a job that has not started yet.</summary>
    private string WaitingToStart() => string.Format(CultureInfo.InvariantCulture,
        "The job has not started after {0:F0} s: {1}. Start worker nodes{2}.", _waitingToStart.Elapsed.TotalSeconds, ReadyCount(),
        _options.Cluster.PauseTimeoutSeconds > 0
            ? string.Format(CultureInfo.InvariantCulture, "; the job ends if they are not ready {0:F0} s after it began waiting (Cluster:PauseTimeoutSeconds)", _options.Cluster.PauseTimeoutSeconds)
            : "");

    /// <summary>
    /// Starts Cluster:StartDelaySeconds (1 s by default) after MinWorkers workers are ready, with every worker ready by then, so a cluster brought up
    /// together starts with all its workers; later ones join the running job at its next epoch. Resuming from a
    /// mid-epoch checkpoint, or taking over from any checkpoint, it starts as soon as the checkpoint's workers are ready.
    /// </summary>
    private void TryStart(bool waited = false)
    {
        if (_failover?.Finished is true || _stopping) return; // a node that is stopping starts no training
        var minimum = _options.Cluster.MinWorkers;
        if (_started || Enumerable.Range(0, minimum).Any(i => !Ready(i)))
            return;
        if (!FindResumeCheckpoint()) return;
        var loop = _options.Training;
        var count = minimum;
        while (Ready(count)) count++; // every ready worker in an unbroken run of indices
        // A mid-epoch checkpoint starts with exactly its epoch's workers, so once they are ready nothing is gained by
        // waiting for more; nor in a takeover once the checkpoint's workers are back: it starts at once (Cluster:StartDelaySeconds sooner).
        if (!waited && !(_resumeFrom is { } checkpoint && (checkpoint.Round > 0 || _takeover) && count >= checkpoint.Workers))
        {
            if (!Timers.IsTimerActive("start-now"))
                Timers.StartSingleTimer("start-now", new StartNow(), TimeSpan.FromSeconds(_options.Cluster.StartDelaySeconds));
            return;
        }
        Timers.Cancel("start-now");
        var resumeFrom = _resumeFrom;
        var planned = count; // the workers of the first epoch's plan
        if (resumeFrom is { Round: > 0 })
        {
            // A mid-epoch checkpoint: that epoch's shards were planned for the checkpoint's workers (the parameter server
            // writes such checkpoints only in epochs planned over all the job's workers at the configured minibatch).
            // Start with exactly as many, or the data order differs; more join at the next epoch. An epoch-boundary
            // checkpoint (round 0) needs no such wait: the next epoch is planned for whoever is there. Once
            // Cluster:ResumeWaitSeconds have passed since the host began waiting, fewer go on: the epoch's plan stays the
            // checkpoint's, and what it had left from the checkpoint's round goes to the workers there (EpochPlan.StartNextEpoch).
            planned = resumeFrom.Workers;
            var wait = _options.Cluster.ResumeWaitSeconds;
            if (count < resumeFrom.Workers && _waitingToStart.Elapsed.TotalSeconds >= wait)
            {
                _log.Warning("The checkpoint resumed from was written in the middle of epoch {0} (round {1}), whose minibatches were planned for {2} " +
                    "workers, and {3} {4} ready after {5:F0} s (Cluster:ResumeWaitSeconds): the job goes on with {3}, which train the rest of that epoch's plan.",
                    resumeFrom.Epoch, resumeFrom.Round, resumeFrom.Workers, count, count == 1 ? "is" : "are", _waitingToStart.Elapsed.TotalSeconds);
            }
            else if (count < resumeFrom.Workers)
            {
                if (!_waitingForCheckpointWorkers)
                    _log.Warning(CheckpointWorkersWanted(resumeFrom.Epoch, resumeFrom.Round, resumeFrom.Workers, count, wait));
                _waitingForCheckpointWorkers = true;
                // Asked again when the wait is over (as when a worker becomes ready meanwhile).
                if (!Timers.IsTimerActive("resume-wait"))
                    Timers.StartSingleTimer("resume-wait", new StartNow(), TimeSpan.FromSeconds(Math.Max(0, wait - _waitingToStart.Elapsed.TotalSeconds)));
                return;
            }
            else count = resumeFrom.Workers;
        }
        _started = true;
        StopWaitingToStart();
        var workers = Enumerable.Range(0, count).Select(i => _links[i]).ToArray();
        _startingWorkers = workers.Length;
        // Indices given out already (a worker not ready yet, past a gap) count too: each may join later in a slot of its own.
        _shardWorkerSlots = RemoteShardSettings.WorkerSlotsFor(Math.Min(UpdatePolicy.MaxWorkers, Math.Max(workers.Length, _agentAt.Count)));
        var weights = ModelFactory.StartingWeights(_model, _options.Model, loop.Seed);
        var settings = new CoordinatorSettings(loop.Epochs, loop.MinibatchPerWorker, new ShardPlanner(_trainCount, planned, loop.Seed),
            _testCount, _model.Layout, TimeSpan.FromSeconds(loop.StallTimeoutSeconds), _validationCount, loop.EarlyStopping,
            FirstEpoch: resumeFrom?.Epoch ?? 1, FirstRound: resumeFrom?.Round ?? 0,
            PlannerFor: n => new ShardPlanner(_trainCount, n, loop.Seed), MinWorkers: minimum,
            GlobalBatchSize: loop.KeepGlobalBatch ? planned * loop.MinibatchPerWorker : 0, Mode: loop.Mode,
            PauseTimeout: _options.Cluster.PauseTimeoutSeconds > 0 ? TimeSpan.FromSeconds(_options.Cluster.PauseTimeoutSeconds) : null,
            ResumedVersion: resumeFrom?.Version ?? 0, EarlyStoppingDirectory: _options.Checkpoint.Enabled ? _options.Checkpoint.Directory : null,
            WorkerNodes: _nodeAt, ShardMessageLimitBytes: ClusterNode.MaximumFrameSizeBytes - AssignShard.EnvelopeAllowanceBytes, ShardRecipes: true,
            TrainedAhead: resumeFrom?.TrainedAhead);
        var completion = new TaskCompletionSource<TrainingResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        var parameterServer = _options.Cluster.ShardNodes
            // The shards run on shard nodes: this node only coordinates them. Finding and placing them must end within the
            // coordinator's stall time-out (it counts them as time without progress), so each gets a third of it at most.
            ? RemoteShardedParameterServer.Props(new RemoteShardSettings(_security.Identity, _jobId, _options.Cluster.ParameterServerShards, weights,
                _serverSettings, workers, TimeSpan.FromSeconds(Math.Min(_options.Cluster.JoinTimeoutSeconds, loop.StallTimeoutSeconds / 3)), minimum,
                CheckpointResume.Settings(_options, _jobId, _trainCount, _trainDigest), _options.ParameterServerOptimizer(), resumeFrom, _shardWorkerSlots,
                _options.ParameterServerMonitoring(), ScalingWorkers: loop.KeepGlobalBatch ? planned : 0))
            : ParameterServer.Props(weights, _options.ParameterServerOptimizer(), loop.Epochs, _options.ParameterServerMonitoring(),
                CheckpointResume.Settings(_options, _jobId, _trainCount, _trainDigest), resumeFrom, scalingWorkers: loop.KeepGlobalBatch ? planned : 0,
                update: UpdateSettings.From(loop) with { AnnounceBroadcastWrites = _options.Cluster.SharedMemory }, configuredOptimizer: _options.Optimizer,
                shards: _options.Cluster.ParameterServerShards).WithDispatcher(AkkaSettings.ComputeDispatcher);
        _coordinator = Context.ActorOf(Coordinator.Props(settings, parameterServer, workers, _workerSteps, completion), "coordinator");
        _log.Info("Training starts with {0} worker{1} (job {2})", workers.Length, workers.Length == 1 ? "" : "s", _jobId);
        for (var i = 0; i < count; i++) _joined.Add(i);
        foreach (var index in _links.Keys.Where(i => i >= count).Order()) JoinRunningJob(index); // ready, but after a gap
        _coordinatorCompletion = completion.Task;
        completion.Task.ContinueWith(t => new Done(t.IsCompletedSuccessfully ? t.Result : null, t.Exception?.GetBaseException()),
            TaskScheduler.Default).PipeTo(Self);
    }

    /// <summary>
    /// Finds the checkpoint to resume from, once: with Checkpoint:Resume the newest valid one, in a takeover the newest of
    /// this job. Returns false, after ending the job, when a resume was asked for and no checkpoint fits.
    /// </summary>
    private bool FindResumeCheckpoint()
    {
        if (_resumeSearched) return true;
        _resumeSearched = true;
        try
        {
            TakeCheckpointDirectory();
            if (_options.Checkpoint.Resume)
                _resumeFrom = CheckpointResume.Find(_options, _model.Layout, LogResumeLine, matchWorkers: false,
                    jobId: _takeover ? _jobId : null, trainSamples: _trainCount, trainDigest: _trainDigest, settings: ResumeSettings.ClusterNode);
            else if (_takeover)
                _resumeFrom = CheckpointResume.FindForTakeover(_options, _model.Layout, LogResumeLine, _jobId, _trainCount, _trainDigest);
            else if (CheckpointResume.ReusedFolderWarning(_options, ResumeSettings.ClusterNode) is { } reused)
                _log.Warning(reused);
            if (_resumeFrom is { JobId.Length: > 0 } resumed) _jobId = resumed.JobId; // --resume continues the checkpoint's job
            return true;
        }
        catch (Exception e) when (e is CheckpointResumeException or Core.Checkpoints.CheckpointDirectoryException)
        {
            // The node's run fails with it, and the node prints it once (an error: line); a log line here printed it twice.
            _log.Debug("The job ends before training: {0}", e.Message);
            _started = true;
            Self.Tell(new Done(null, e)); // tells the worker nodes too, so they do not wait for a job that will not start
            return false;
        }
    }

    /// <summary>The resume search's lines: the checkpoint chosen is news (INFO); a skipped one, or none, is a warning.</summary>
    private void LogResumeLine(string line)
    {
        if (line.StartsWith("Resuming from checkpoint ", StringComparison.Ordinal)) _log.Info(line);
        else _log.Warning(line);
    }

    /// <summary>
    /// Takes Checkpoint:Directory for this job (<see cref="Core.Checkpoints.CheckpointDirectoryLock"/>), so a second job given
    /// the same folder is refused instead of overwriting and pruning this one's checkpoints. A takeover goes on without the
    /// lock when it is held: the failed parameter server that holds it may still be shutting down, and refusing would end
    /// the job that the standby exists to continue. It then tries again every few seconds (<see cref="RetakeCheckpointDirectoryEvery"/>)
    /// and holds the lock from the moment the old server lets it go, so a second job given the folder is refused again.
    /// </summary>
    /// <exception cref="Core.Checkpoints.CheckpointDirectoryException">Not a takeover, and another running job holds the
    /// directory, or it cannot be created.</exception>
    private void TakeCheckpointDirectory()
    {
        try
        {
            _checkpointLock = Core.Checkpoints.CheckpointDirectoryLock.For(_options.Checkpoint);
        }
        catch (Core.Checkpoints.CheckpointDirectoryException e) when (_takeover && e.InUse)
        {
            _log.Warning("{0} This takeover goes on without the lock: the parameter server it replaces may still be shutting down. "
                + "It takes the lock once that server lets it go.", e.Message);
            Timers.StartPeriodicTimer(nameof(RetakeCheckpointDirectory), RetakeCheckpointDirectory.Instance, _retakeCheckpointDirectoryEvery);
        }
    }

    private void OnRetakeCheckpointDirectory()
    {
        if (_checkpointLock is not null || _finished is not null)
        {
            Timers.Cancel(nameof(RetakeCheckpointDirectory));
            return;
        }
        try
        {
            _checkpointLock = Core.Checkpoints.CheckpointDirectoryLock.TryAcquire(_options.Checkpoint.Directory);
            if (_checkpointLock is null) return;
            _log.Info("Checkpoint:Directory '{0}' is now held by this job: the parameter server it took over from let it go.", _options.Checkpoint.Directory);
        }
        catch (Core.Checkpoints.CheckpointDirectoryException e)
        {
            _log.Warning("{0} This takeover goes on without the lock.", e.Message);
        }
        Timers.Cancel(nameof(RetakeCheckpointDirectory));
    }

    /// <summary>Answers the stop's callers (<see cref="StopTraining"/>), once.</summary>
    private void AnswerStop(bool finishes)
    {
        foreach (var caller in _stopCallers) caller.Tell(finishes);
        _stopCallers.Clear();
    }

    private void OnDone(Done done)
    {
        try
        {
            EndJob(done);
        }
        finally
        {
            // After the node's result is set, or its outputs are being written (then the node waits for them): a stop the
            // coordinator answered false, or never read, ends here.
            _endSeen = true;
            AnswerStop(finishes: _saving);
        }
    }

    private void EndJob(Done done)
    {
        if (_saving || _finished is not null) return; // the job ends once
        // The coordinator stopped with the node: the job goes on elsewhere, or on resume. Any other failure is the job's.
        // So is a run whose shard nodes (Cluster:ShardNodes) left as the whole cluster was stopped.
        if (_stopping && done.Failure is CoordinatorStoppedException or TrainingCancelledException or ShardNodesException)
        {
            // Nothing ends for the other nodes; the stopping node, which may be waiting for a finishing run, stops waiting,
            // with the weights at the stop when the coordinator had them (the node keeps them, as train keeps a stopped run's).
            EndWorkersIfNothingCanContinue(); // first: the node's run ends with the next statement
            _completion.TrySetException(done.Failure as TrainingCancelledException
                ?? new OperationCanceledException(done.Failure is ShardNodesException
                    ? "The parameter-server node stopped, and the job's shard nodes and workers left with it."
                    : "The parameter-server node stopped; the job goes on on a standby or on resume."));
            return;
        }
        if (done.Failure is ShardNodesException { LostShard: >= 0 } lost && (HandOverLostShard(lost) || RestartAfterLostShard(lost))) return;
        // A restarted run that cannot go on (no shard node in the lost one's place, say) says how to continue from where it got.
        if (_restartedAfter is { } restart && done.Failure is ShardNodesException { LostShard: < 0 } failed)
            done = done with { Failure = new ShardNodesException($"{failed.Message.TrimEnd()} The job had started again on this node from the checkpoint of " +
                $"{restart.Checkpoint} after a lost shard node; to continue it, start the nodes again with Checkpoint:Resume = true " +
                $"(DISTTRAIN_Checkpoint__Resume=true), which resumes from the newest checkpoint in {_options.Checkpoint.Directory}.") };
        if (done.Result is { } trained && _saveOutputs is { } save)
        {
            // The workers and standbys learn of the end once the weights are on disk: until then a standby still takes over.
            // A save that does not end within Training:StallTimeoutSeconds (a hung network file system) fails the job
            // rather than leaving every node waiting.
            _saving = true;
            var limit = TimeSpan.FromSeconds(_options.Training.StallTimeoutSeconds);
            Task.Run(() => save(trained)).WaitAsync(limit).ContinueWith(t => new OutputsSaved(done, t switch
            {
                { IsFaulted: true } => t.Exception!.GetBaseException() is TimeoutException
                    ? new TimeoutException($"writing them took longer than Training:StallTimeoutSeconds = {limit.TotalSeconds:F0} s")
                    : t.Exception.GetBaseException(),
                { IsCanceled: true } => new OperationCanceledException("writing them was cancelled"),
                _ => null,
            }), TaskScheduler.Default).PipeTo(Self);
            return;
        }
        Finish(done, saveFailure: null);
    }

    /// <summary>
    /// The job trained to its end but its outputs could not be written on this node (a full or failing disk): when a standby
    /// parameter server is up, the job is left to it rather than ended without them. Nothing goes out to the other nodes;
    /// this node's run fails with <see cref="JobHandedOverException"/>, the node leaves the cluster, and the standby takes
    /// the job over from the newest checkpoint as after a crash: a checkpoint of the finished training is only scored again,
    /// and the standby writes the outputs on its node. Without Checkpoint:Directory the standby trains the job again from
    /// epoch 1, which is still better than losing it.
    /// </summary>
    /// <param name="done">The finished job.</param>
    /// <param name="saveFailure">Why the outputs could not be written.</param>
    /// <returns>False when no standby is up (then the job ends here, failed).</returns>
    private bool HandOverToStandby(Done done, Exception saveFailure)
    {
        if (done.Result is not { } result || StandbyUp() is not { } standby) return false;
        // The standby takes Checkpoint:Directory at once instead of at its next retry.
        _checkpointLock?.Dispose();
        _checkpointLock = null;
        Timers.Cancel(nameof(RetakeCheckpointDirectory));
        StopWaitingToStart();
        var from = string.IsNullOrWhiteSpace(_options.Checkpoint.Directory)
            ? "from epoch 1 (Checkpoint:Directory is not set, so no checkpoint holds the trained weights)"
            : $"from the newest checkpoint in {_options.Checkpoint.Directory}";
        var message = string.Create(CultureInfo.InvariantCulture,
            $"The parameter server could not write its outputs after training (test accuracy {100 * result.FinalEpoch.TestAccuracy:F2}%): {saveFailure.Message.TrimEnd('.')}. " +
            $"The job is left to the standby parameter server at {standby.Address}, which takes it over {from} and writes them on its node.");
        _log.Error(message);
        _completion.TrySetException(new JobHandedOverException(message, saveFailure));
        return true;
    }

    /// <summary>
    /// A run on shard nodes lost a shard (its node gone, cut off or stopped: <see cref="ShardNodesException.LostShard"/>), which it
    /// cannot go on without. With Checkpoint:Directory set and a standby parameter server up, the job is left to the standby
    /// rather than ended: nothing goes out to the other nodes, this node's run fails with <see cref="JobHandedOverException"/> and
    /// it leaves the cluster, and the standby takes the job over from the newest checkpoint as after this node's crash. That
    /// places the shards anew on the shard nodes up then (the lost one's survivors release theirs once this node's run is gone),
    /// so a spare shard node, or one started in place of the lost one, replaces it; and the workers, whose shard connections
    /// closed, register with the standby. Without a checkpoint of the run (no checkpoint folder, or none written yet) the standby
    /// would train the job again from epoch 1, so the job ends here instead, with the advice to restart it.
    /// </summary>
    /// <param name="lost">The run's failure.</param>
    /// <returns>False when the job ends here (no checkpoint, or no standby up).</returns>
    private bool HandOverLostShard(ShardNodesException lost)
    {
        if (string.IsNullOrWhiteSpace(_options.Checkpoint.Directory) || lost.NewestCheckpoint is not { } checkpoint || StandbyUp() is not { } standby) return false;
        _checkpointLock?.Dispose(); // the standby takes Checkpoint:Directory at once instead of at its next retry
        _checkpointLock = null;
        Timers.Cancel(nameof(RetakeCheckpointDirectory));
        StopWaitingToStart();
        var message =
            $"{lost.Loss} The job is left to the standby parameter server at {standby.Address}, which takes it over from the newest checkpoint " +
            $"(of {checkpoint}) in {_options.Checkpoint.Directory} and places the {_options.Cluster.ParameterServerShards} shards anew on the shard nodes up then: start a " +
            "shard node in place of the lost one, unless a spare one is up.";
        _log.Error(message);
        _completion.TrySetException(new JobHandedOverException(message, lost));
        return true;
    }

    /// <summary>
    /// A run on shard nodes lost a shard node, and no standby took the job over (<see cref="HandOverLostShard"/>): with
    /// Checkpoint:Directory set and a checkpoint of the run, the job starts again on this node rather than ending. This host asks
    /// its <see cref="JobHostSupervisor"/> for a new one, passes the other nodes' messages back up to it until the supervisor's
    /// <see cref="JobHostSupervisor.StopAfterQueued"/>, and stops on that; its children stop with it: the
    /// worker links (the workers, whose data planes close, register again) and the shards' owner (the surviving shard nodes
    /// release their shards). The new host takes the job over from the newest checkpoint as a standby would, placing the shards
    /// anew on the shard nodes up then: a spare one, or one started after the loss within the placement time-out, takes the lost
    /// one's place. Nothing goes out to the other nodes, and this node's run goes on.
    /// </summary>
    /// <param name="lost">The run's failure.</param>
    /// <returns>False when the job ends here: no supervisor, no checkpoint, or <see cref="MaxRestartsFromOneCheckpoint"/> restarts in a
    /// row found the same newest checkpoint.</returns>
    private bool RestartAfterLostShard(ShardNodesException lost)
    {
        if (!_restartable || string.IsNullOrWhiteSpace(_options.Checkpoint.Directory) || lost.NewestCheckpoint is not { } checkpoint) return false;
        if (ShardLossRestart.After(_restartedAfter, checkpoint) is not { } inARow)
        {
            _log.Warning("The job was restarted {0} times in a row from the checkpoint of {1} after a lost shard node, and lost one again before it wrote a " +
                "newer checkpoint: it ends here. Check the shard nodes' logs for why they leave.", MaxRestartsFromOneCheckpoint, checkpoint);
            return false;
        }
        _checkpointLock?.Dispose(); // the new host takes Checkpoint:Directory at once
        _checkpointLock = null;
        Timers.CancelAll();
        _listener.Detach(Self); // a worker's connection from now on is the new host's (refused until it attaches)
        _log.Warning("{0} The job starts again on this node from the newest checkpoint (of {1}) in {2}, placing the {3} shards anew on the shard nodes up " +
            "then: start a shard node in place of the lost one, unless a spare one is up.", lost.Loss.TrimEnd(), checkpoint, _options.Checkpoint.Directory,
            _options.Cluster.ParameterServerShards);
        Context.Parent.Tell(new RestartHere(new ShardLossRestart(_jobId, checkpoint, inARow)));
        // What the other nodes sent this host until the supervisor's StopAfterQueued, which comes behind it, goes back up to the new
        // host (the supervisor keeps it until that one runs); the rest was this run's own.
        Become(() =>
        {
            Receive<JobHostSupervisor.StopAfterQueued>(_ => Context.Stop(Self));
            Receive<DataPlaneListener.Accepted>(accepted => accepted.Connection.Dispose()); // accepted before the detach: its token is this run's
            Receive<RegisterWorker>(register => Context.Parent.Forward(register));
            Receive<RegisterStandby>(register => Context.Parent.Forward(register));
            Receive<StopTraining>(stop => Context.Parent.Forward(stop));
            ReceiveAny(_ => { });
        });
        return true;
    }

    /// <summary>
    /// This node stopped (SIGTERM or Ctrl-C) with no other parameter-server node in the cluster (in any state but leaving)
    /// and no Checkpoint:Directory: nothing can continue the job, so the workers end now, cancelled, rather than waiting
    /// Cluster:JoinTimeoutSeconds for a parameter server and then failing. A worker that registers later is told the same.
    /// </summary>
    private void EndWorkersIfNothingCanContinue()
    {
        if (!string.IsNullOrWhiteSpace(_options.Checkpoint.Directory) || _finished is not null) return;
        // Also a standby still joining, or unreachable for a moment: it may take the job over, which ending the workers
        // would leave with none.
        if (OtherParameterServers().Any(m => m.Status is Akka.Cluster.MemberStatus.Joining or Akka.Cluster.MemberStatus.WeaklyUp or Akka.Cluster.MemberStatus.Up))
            return;
        _finished = new JobFinished(false, "cancelled: the parameter-server node was stopped, and no other parameter-server node is in " +
            "the cluster and Checkpoint:Directory is not set, so nothing can continue the job", Cancelled: true);
        EndWorkers(_finished);
        EndShardNodes(_finished);
    }

    /// <summary>The cluster's other parameter-server members, in any state; none outside a cluster (as in tests).</summary>
    private IEnumerable<Akka.Cluster.Member> OtherParameterServers() => ClusterOrNull() is { } cluster
        ? cluster.State.Members.Where(m => m.HasRole(NodeRoles.ParameterServer) && m.Address != cluster.SelfAddress)
        : [];

    /// <summary>This node's cluster; null when the actor system is no cluster (as in tests).</summary>
    private Akka.Cluster.Cluster? ClusterOrNull() =>
        ((ExtendedActorSystem)Context.System).Provider is Akka.Cluster.ClusterActorRefProvider ? Akka.Cluster.Cluster.Get(Context.System) : null;

    /// <summary>A standby parameter-server node that is up and reachable, or null.</summary>
    private Akka.Cluster.Member? StandbyUp() => OtherParameterServers().FirstOrDefault(m =>
        m.Status == Akka.Cluster.MemberStatus.Up && !Akka.Cluster.Cluster.Get(Context.System).State.Unreachable.Contains(m));

    /// <summary>Tells the worker nodes that the job ended, closing their data planes from this side first so that their
    /// goodbyes are not reported as failures.</summary>
    private void EndWorkers(JobFinished finished)
    {
        foreach (var link in _links.Values)
            Context.Stop(link);
        foreach (var agent in _indexOf.Keys)
            agent.Tell(finished);
    }

    /// <summary>Tells the shard nodes (members of role <see cref="NodeRoles.ParameterShard"/>, in any state) that the job ended:
    /// their runs end with it, and they leave the cluster, so this node does not wait for them at its own leave.</summary>
    private void EndShardNodes(JobFinished finished)
    {
        if (ClusterOrNull() is not { } cluster) return;
        foreach (var member in cluster.State.Members.Where(m => m.HasRole(NodeRoles.ParameterShard)))
            Context.ActorSelection(new RootActorPath(member.Address) / "user" / ShardHost.Name).Tell(finished);
    }

    /// <summary>
    /// At the job's end, downs the nodes of workers that were lost and never came back (a worker killed late in the run):
    /// until such a node is downed no member can leave, as the leader moves members out only once every member is
    /// reachable, and the split-brain resolver downs it only after its failure detection and Cluster:StableAfterSeconds.
    /// Measured with a worker killed at 75% of the last epoch: the script ended 7.7 s after the kill, against 12.4-13.7 s.
    /// A node is downed only in the incarnation that registered (a node restarted on the same address is left alone), and a
    /// lost worker's node that is alive (its data plane cut) has been told the job ended first. Best effort: a failure is
    /// logged, and the job's end does not depend on it.
    /// </summary>
    private void DownLostWorkers()
    {
        if (ClusterOrNull() is not { } cluster) return;
        try
        {
            foreach (var (agent, _) in _indexOf.Where(kv => _lostLinks.Contains(kv.Value)))
            {
                // The member as it registered, still in the cluster: a node restarted on the address (a new incarnation, which
                // may have registered again) is not it.
                var address = agent.Path.Address;
                if (address.Equals(cluster.SelfAddress) || !_memberOf.TryGetValue(agent, out var registered)) continue;
                if (MemberAt(address) is not { Status: not (Akka.Cluster.MemberStatus.Down or Akka.Cluster.MemberStatus.Removed or Akka.Cluster.MemberStatus.Exiting) } member
                    || !member.UniqueAddress.Equals(registered))
                    continue;
                _log.Info("The job is over: downing node {0}, whose worker was lost, so that the other nodes can leave at once.", address);
                cluster.Down(address);
            }
        }
        catch (Exception e)
        {
            _log.Warning("Could not down the nodes of lost workers at the job's end ({0}); the split-brain resolver removes them.", e.Message);
        }
    }

    /// <summary>The cluster member at <paramref name="address"/>, or null (none, or no cluster).</summary>
    private Akka.Cluster.Member? MemberAt(Address address) => ClusterOrNull()?.State.Members.FirstOrDefault(m => m.Address.Equals(address));

    /// <summary>Ends the job: tells the workers, the shard nodes and the standby parameter servers, and completes the node's run.</summary>
    /// <param name="done">The job's result or failure.</param>
    /// <param name="saveFailure">Why the node's outputs could not be written; the job's end then says so, and it is not a success.</param>
    private void Finish(Done done, Exception? saveFailure)
    {
        if (_finished is not null) return;
        // The job is over: the folder is free for the next one now, not when this node has finished leaving the cluster.
        _checkpointLock?.Dispose();
        _checkpointLock = null;
        Timers.Cancel(nameof(RetakeCheckpointDirectory));
        StopWaitingToStart();
        var summary = done.Result is { } result
            ? saveFailure is null
                ? string.Create(CultureInfo.InvariantCulture, $"test accuracy {100 * result.FinalEpoch.TestAccuracy:F2}% after {result.Epochs[^1].Epoch} epoch{(result.Epochs[^1].Epoch == 1 ? "" : "s")}")
                : string.Create(CultureInfo.InvariantCulture, $"failed: the parameter server could not write its outputs after training (test accuracy {100 * result.FinalEpoch.TestAccuracy:F2}%): {saveFailure.Message}")
            : $"failed: {done.Failure?.Message}";
        _finished = new JobFinished(done.Result is not null && saveFailure is null, summary);
        EndWorkers(_finished);
        EndShardNodes(_finished);
        // Standby parameter-server nodes end too.
        foreach (var member in OtherParameterServers())
            Context.ActorSelection(new RootActorPath(member.Address) / "user" / ParameterServerNode.Name).Tell(_finished);
        if (done.Result is { Version: > 0 } finished)
            _log.Info(_options.Cluster.ShardNodes
                ? "Data plane: the workers exchanged every tensor with the shard nodes directly; each shard node's log gives its bytes."
                : string.Format(CultureInfo.InvariantCulture, "Data plane: {0:N0} bytes sent and {1:N0} received over {2} steps, {3:N0} bytes per step (the minimum, 2 x model x the workers of each step, is {4:N0}); "
                + "per step {5:N0} sent (weights) and {6:N0} received (gradients)",
                TensorFrame.BytesSent, TensorFrame.BytesReceived, finished.Version,
                (TensorFrame.BytesSent + TensorFrame.BytesReceived) / finished.Version,
                _workerSteps.MinimumBytesPerStep(_model.Layout.TotalLength),
                TensorFrame.BytesSent / finished.Version, TensorFrame.BytesReceived / finished.Version));
        if (done.Result is not null) _completion.TrySetResult(done.Result);
        else _completion.TrySetException(done.Failure ?? new InvalidOperationException("The job ended without a result."));
        DownLostWorkers();
    }
}
