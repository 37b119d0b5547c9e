using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;

namespace DistTrain.Cluster.Actors;

/// <summary>
/// Runs on a worker node in cluster mode: finds the parameter server node through cluster membership,
/// registers with its <see cref="JobHost"/>, and once accepted starts the <see cref="Worker"/> and the
/// data-plane link. It completes the task it was given with the job's outcome, or fails it with the
/// refusal, a lost connection, or a join timeout.
/// </summary>
public sealed class WorkerAgent : ReceiveActor, IWithTimers
{
    private sealed record JoinTimeout;

    private sealed record Lost(string Name);

    private readonly TrainingOptions _options;
    private readonly TrainingData _data;
    private readonly TaskCompletionSource<JobFinished> _completion;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Akka.Cluster.Cluster _cluster = Akka.Cluster.Cluster.Get(Context.System);
    private bool _accepted;
    private bool _finished;

    /// <summary>Creates the agent; see <see cref="Props"/>.</summary>
    public WorkerAgent(TrainingOptions options, TrainingData data, TaskCompletionSource<JobFinished> completion)
    {
        _options = options;
        _data = data;
        _completion = completion;
        Receive<ClusterEvent.CurrentClusterState>(state =>
        {
            foreach (var member in state.Members.Where(m => m.Status == MemberStatus.Up)) Register(member);
        });
        Receive<ClusterEvent.MemberUp>(up => Register(up.Member));
        Receive<ClusterEvent.IMemberEvent>(_ => { });
        Receive<WorkerAccepted>(OnAccepted);
        Receive<RegistrationRefused>(refused =>
        {
            _log.Error("The parameter server refused this worker: {0}", refused.Reason);
            _completion.TrySetException(new InvalidOperationException("The parameter server refused this worker: " + refused.Reason));
        });
        Receive<JobFinished>(finished =>
        {
            _finished = true;
            _completion.TrySetResult(finished);
        });
        Receive<JoinTimeout>(_ =>
        {
            if (!_accepted)
                _completion.TrySetException(new TimeoutException(
                    $"No parameter server accepted this worker within {_options.Cluster.JoinTimeoutSeconds:F0} s. Check Cluster:SeedNodes and that the parameter server node runs."));
        });
        // At the end of a job the data plane closes while JobFinished is still on its way over Akka.Remote:
        // wait a moment before calling a stopped link or worker a failure.
        Receive<Terminated>(t => Timers.StartSingleTimer("lost", new Lost(t.ActorRef.Path.Name), TimeSpan.FromSeconds(5)));
        Receive<Lost>(lost =>
        {
            if (_finished) return;
            _log.Error("{0} stopped; this worker node leaves the job.", lost.Name);
            _completion.TrySetException(new InvalidOperationException($"{lost.Name} stopped: the data plane or the worker failed (see the log)."));
        });
    }

    /// <inheritdoc />
    public ITimerScheduler Timers { get; set; } = null!;

    /// <summary>Props of the agent of a worker node holding <paramref name="data"/>.</summary>
    public static Props Props(TrainingOptions options, TrainingData data, TaskCompletionSource<JobFinished> completion) =>
        Akka.Actor.Props.Create(() => new WorkerAgent(options, data, completion));

    /// <inheritdoc />
    protected override void PreStart()
    {
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsSnapshot, typeof(ClusterEvent.IMemberEvent));
        Timers.StartSingleTimer("join-timeout", new JoinTimeout(), TimeSpan.FromSeconds(_options.Cluster.JoinTimeoutSeconds));
    }

    /// <inheritdoc />
    protected override void PostStop() => _cluster.Unsubscribe(Self);

    /// <inheritdoc />
    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(e =>
    {
        _log.Error(e, "Worker node failure: {0}", e.Message);
        return Directive.Stop;
    });

    private void Register(Member member)
    {
        if (_accepted || !member.HasRole(NodeRoles.ParameterServer)) return;
        var host = new RootActorPath(member.Address) / "user" / JobHost.Name;
        Context.ActorSelection(host).Tell(new RegisterWorker(ClusterProtocolInfo.Version, ModelFingerprint.Of(_options), _cluster.SelfAddress.ToString()));
    }

    private void OnAccepted(WorkerAccepted accepted)
    {
        if (_accepted) return;
        _accepted = true;
        Timers.Cancel("join-timeout");
        var loop = _options.Training;
        var worker = Context.Watch(Context.ActorOf(Worker.Props(accepted.WorkerIndex, _options.Model, _data.Train, _data.Test, loop.EvaluationBatchSize, _data.Validation, loop.Seed)
            .WithDispatcher(AkkaSettings.ComputeDispatcher), "worker"));
        Context.Watch(Context.ActorOf(ParameterServerLink.Props(accepted.DataHost, accepted.DataPort, accepted.WorkerIndex, worker, accepted.ParameterCount),
            "parameter-server-link"));
        Sender.Tell(new WorkerReady(accepted.WorkerIndex, worker));
        _log.Info("Joined the job as worker {0}", accepted.WorkerIndex);
    }
}

/// <summary>Cluster roles of DistTrain nodes.</summary>
public static class NodeRoles
{
    /// <summary>Tag of the coordinator actor in metrics (not a cluster role: it runs on the parameter-server node).</summary>
    public const string Coordinator = "coordinator";

    /// <summary>The node that runs the parameter server, the coordinator and the job host.</summary>
    public const string ParameterServer = "parameter-server";

    /// <summary>A node that runs one worker replica.</summary>
    public const string Worker = "worker";
}
