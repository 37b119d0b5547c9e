using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Akka.Actor;

namespace DistTrain.Cluster.Metrics;

/// <summary>
/// DistTrain's instruments, on one <see cref="System.Diagnostics.Metrics.Meter"/> named <c>DistTrain</c>, so
/// any listener can read them: the Prometheus exporter (<see cref="MetricsExporter"/>), OpenTelemetry,
/// or <c>dotnet-counters monitor --counters DistTrain</c>. With no listener an instrument call costs a
/// branch and allocates nothing.
/// </summary>
/// <remarks>
/// Every instrument carries the tag <c>node</c> (<see cref="Node"/>); actor instruments also <c>role</c> (coordinator,
/// parameter-server, worker).
/// Prometheus names are the meter's name and the instrument's, with dots as underscores, and for a counter (a
/// <see cref="Counter{T}"/> or <see cref="ObservableCounter{T}"/>, exported as a Prometheus counter) <c>_total</c>: for
/// example <c>disttrain_actor_messages_total</c> (counter), <c>disttrain_training_test_accuracy</c> (gauge).
/// </remarks>
public static class DistTrainMetrics
{
    /// <summary>The meter's name.</summary>
    public const string MeterName = "DistTrain";

    /// <summary>The meter.</summary>
    public static readonly Meter Meter = new(MeterName, "1.0");

    /// <summary>This process's node name, the <c>node</c> tag: set once at start-up (cluster address, or <c>local</c>).</summary>
    public static string Node { get; set; } = "local";

    /// <summary>Messages an actor processed. Tags: role, node.</summary>
    public static readonly Counter<long> MessagesProcessed = Meter.CreateCounter<long>("actor.messages", "{message}", "Messages processed by DistTrain actors.");

    /// <summary>Time an actor spent in one message's handler, seconds. Tags: role, node.</summary>
    public static readonly Histogram<double> ProcessingSeconds = Meter.CreateHistogram<double>("actor.processing.seconds", "s", "Time an actor spent handling one message, seconds.");

    /// <summary>
    /// Time from sending a round's weights to a worker starting on them, seconds (queueing in the mailbox
    /// and scheduling on the dispatcher; in cluster mode from the weights' arrival on the worker node's data
    /// plane). Tags: role=worker, node.
    /// </summary>
    public static readonly Histogram<double> QueueingSeconds = Meter.CreateHistogram<double>("actor.queueing.seconds", "s", "Delay from a weights message's sending by the parameter server (in cluster mode, its arrival from the data plane) to its worker starting on it, seconds.");

    // Counters that only move on trouble are observable (read from these fields), so they are exported
    // from the first scrape, at zero, and dashboards and alerts see them before anything goes wrong.
    private static readonly ConcurrentDictionary<string, long> FailureCounts = new();
    private static long _deadLetters;
    private static long _clippedSteps;

    /// <summary>Counts an actor failure (a child stopped by its supervisor; DistTrain restarts none), by role.</summary>
    public static void RecordFailure(string role) => FailureCounts.AddOrUpdate(role, 1, (_, n) => n + 1);

    /// <summary>Counts a message that reached no actor.</summary>
    public static void RecordDeadLetter() => Interlocked.Increment(ref _deadLetters);

    /// <summary>Counts a step whose averaged gradient was clipped by Optimizer:GradientClipNorm, or under Cluster:Compression TopK a
    /// worker's push whose own gradient was clipped.</summary>
    public static void RecordClippedStep() => Interlocked.Increment(ref _clippedSteps);

    /// <summary>The gradients clipped in this process so far (<see cref="RecordClippedStep"/>): one per clipped step at the
    /// parameter server, or under Cluster:Compression TopK one per clipped push of this process's workers.</summary>
    public static long ClippedSteps => Interlocked.Read(ref _clippedSteps);

    private static long _workersLost;

    /// <summary>Counts a worker lost during training (its node died or its connection closed); the job goes on without it.</summary>
    public static void RecordWorkerLost() => Interlocked.Increment(ref _workersLost);

    private static long _takeovers;

    /// <summary>Counts a takeover: this node's standby parameter server started the job after the active one failed.</summary>
    public static void RecordTakeover() => Interlocked.Increment(ref _takeovers);

    private static long _shardLossRestarts;

    /// <summary>Counts a restart of the job on this parameter-server node from its newest checkpoint after its run lost a shard node.</summary>
    public static void RecordShardLossRestart() => Interlocked.Increment(ref _shardLossRestarts);

    private static long _samplesApplied;
    private static long _samplesComputed;

    /// <summary>
    /// Counts <paramref name="samples"/> training samples in a step this process's parameter server applied
    /// (<c>disttrain_training_samples_total{role="parameter-server"}</c>: the job's progress).
    /// </summary>
    public static void RecordSamplesApplied(int samples) => Interlocked.Add(ref _samplesApplied, samples);

    /// <summary>
    /// Counts <paramref name="samples"/> training samples a worker of this process computed a gradient on
    /// (<c>disttrain_training_samples_total{role="worker"}</c>: per-node throughput, which shows a straggler).
    /// </summary>
    public static void RecordSamplesComputed(int samples) => Interlocked.Add(ref _samplesComputed, samples);

    private static long _gradientBytes;

    /// <summary>
    /// Counts the bytes of one gradient a worker of this process pushed, as encoded for the wire (Cluster:Compression;
    /// 4 per float uncompressed), without frame headers (<c>disttrain_training_gradient_bytes_total</c>). Single-node mode counts
    /// them too, though nothing crosses a network there.
    /// </summary>
    public static void RecordGradientBytes(long bytes) => Interlocked.Add(ref _gradientBytes, bytes);

    /// <summary>Optimizer steps applied.</summary>
    public static readonly Counter<long> Steps = Meter.CreateCounter<long>("training.steps", "{step}", "Optimizer steps the parameter server applied, in every Training:Mode.");

    /// <summary>Step phase durations, seconds. Tags: phase = round, compute, update, messaging, waiting; node.</summary>
    public static readonly Histogram<double> StepPhaseSeconds = Meter.CreateHistogram<double>("training.step.seconds", "s",
        "Time of each applied step by phase (round, compute, update, messaging, waiting), seconds.");

    /// <summary>
    /// With Cluster:ParameterServerShards above 1: each shard's round, from sending its slice of a round's weights to having
    /// stepped its slice, seconds. Tags: shard (0-based), node. The slowest shard sets the step's pace.
    /// </summary>
    public static readonly Histogram<double> ShardRoundSeconds = Meter.CreateHistogram<double>("parameter_server.shard.round.seconds", "s",
        "A parameter-server shard's round, from its slice of the weights going out to its slice's step, seconds.");

    /// <summary>
    /// Staleness of each applied gradient, in weights versions: how many optimizer steps were applied between the version
    /// it was computed on and the step that applied it (0 in synchronous training and local SGD).
    /// </summary>
    public static readonly Histogram<double> Staleness = Meter.CreateHistogram<double>("training.staleness.versions", "{version}",
        "Weights versions between the weights a gradient was computed on and the weights it updated (0 in Sync and LocalSgd).");

    private static readonly ConcurrentDictionary<string, double> Gauges = new();
    private static readonly ConcurrentDictionary<(string Role, string Path), IActorRef> Watched = new();

    /// <summary>
    /// Sets a last-value gauge published as <c>disttrain_training_{name}</c> (e.g. train_loss, test_accuracy,
    /// samples_per_second). A gauge is published from its first value on, so a node that never trains (a worker node,
    /// whose coordinator runs elsewhere) exports none of them rather than zeros.
    /// </summary>
    /// <exception cref="ArgumentException">The gauge is not one of <see cref="GaugeNames"/>.</exception>
    public static void Set(string name, double value)
    {
        if (Array.IndexOf(GaugeNames, name) < 0) throw new ArgumentException($"Unknown gauge '{name}'. Known: {string.Join(", ", GaugeNames)}.");
        Gauges[name] = value;
    }

    /// <summary>
    /// Unpublishes every training gauge before a second training in the same process (<c>finetune --compare-scratch</c>'s
    /// run from scratch), so its scrapes show none of the first run's values (its weights version, epoch, test accuracy)
    /// before its own first step.
    /// </summary>
    public static void StartAnotherRun() => Gauges.Clear();

    /// <summary>Unpublishes every training gauge, as in a process that never trained (tests, which share one process).</summary>
    /// <returns>The gauges set before, for <see cref="RestoreGauges"/>.</returns>
    internal static Dictionary<string, double> ForgetGauges()
    {
        var before = new Dictionary<string, double>(Gauges);
        Gauges.Clear();
        return before;
    }

    /// <summary>Publishes exactly <paramref name="gauges"/> again, as <see cref="ForgetGauges"/> returned them.</summary>
    internal static void RestoreGauges(IReadOnlyDictionary<string, double> gauges)
    {
        Gauges.Clear();
        foreach (var (name, value) in gauges) Gauges[name] = value;
    }

    /// <summary>The current value of a training gauge (tests read it without an exporter); 0 before its first value.</summary>
    internal static double Get(string name) => Gauges.TryGetValue(name, out var value) ? value : 0;

    /// <summary>The training gauges, published as <c>disttrain_training_{name}</c>.</summary>
    public static readonly string[] GaugeNames =
        ["train_loss", "test_loss", "test_accuracy", "learning_rate", "samples_per_second", "epoch", "weights_version", "staleness", "paused"];

    /// <summary>Unit and HELP text of each training gauge, as Prometheus shows them.</summary>
    private static readonly Dictionary<string, (string? Unit, string Description)> GaugeDescriptions = new(StringComparer.Ordinal)
    {
        ["train_loss"] = (null, "Mean training loss of the last step applied."),
        ["test_loss"] = (null, "Mean loss on the test set after the last evaluated epoch."),
        ["test_accuracy"] = (null, "Test accuracy after the last evaluated epoch, as a fraction from 0 to 1."),
        ["learning_rate"] = (null, "Learning rate of the last step applied."),
        ["samples_per_second"] = ("{sample}/s", "Training samples per second in the steps applied, measured over the steps of the last window of at least 1 second (a shorter one at an epoch's end)."),
        ["epoch"] = ("{epoch}", "The epoch in progress, from 1."),
        ["weights_version"] = ("{version}", "Version of the weights after the last step applied (one more per optimizer step)."),
        ["staleness"] = ("{version}", "Largest staleness of the gradients in the last step applied, in weights versions (0 in Sync and LocalSgd)."),
        ["paused"] = (null, "1 while training is paused waiting for workers, else 0."),
    };

    /// <summary>Publishes the mailbox depth of <paramref name="actor"/> (local actors only) under its role.</summary>
    public static void WatchMailbox(string role, IActorRef actor) => Watched[(role, actor.Path.ToString())] = actor;

    /// <summary>Stops publishing the mailbox depth of <paramref name="actor"/>.</summary>
    public static void UnwatchMailbox(string role, IActorRef actor) => Watched.TryRemove((role, actor.Path.ToString()), out _);

    static DistTrainMetrics()
    {
        foreach (var name in GaugeNames)
        {
            var key = name;
            var (unit, description) = GaugeDescriptions[key];
            Meter.CreateObservableGauge($"training.{key}",
                () => Gauges.TryGetValue(key, out var v) ? [new Measurement<double>(v, NodeTag)] : Array.Empty<Measurement<double>>(),
                unit, description);
        }
        Meter.CreateObservableGauge("actor.mailbox.depth", MailboxDepths, "{message}", "Messages waiting in an actor's mailbox.");
        Meter.CreateObservableGauge("training.gradient_norm", () => LayerValues(l => l.GradientNorm), description: "L2 norm of the averaged gradient, per tensor.");
        Meter.CreateObservableGauge("training.weight_norm", () => LayerValues(l => l.WeightNorm), description: "L2 norm of the weights, per tensor.");
        Meter.CreateObservableGauge("training.update_ratio", () => LayerValues(l => l.UpdateRatio), description: "L2 norm of the last update over L2 norm of the weights, per tensor (a ratio).");
        Meter.CreateObservableCounter("actor.failures", () => new[] { "coordinator", "parameter-server", "worker", "parameter-shard" }
            .Select(role => new Measurement<long>(FailureCounts.GetValueOrDefault(role), new("role", role), new("node", Node))), "{failure}", "Actors stopped after an exception (DistTrain restarts none).");
        Meter.CreateObservableCounter("actor.dead_letters", () => new Measurement<long>(Interlocked.Read(ref _deadLetters), new KeyValuePair<string, object?>("node", Node)), "{message}", "Messages published as dead letters.");
        // Both roles on every node, from the first scrape: a node that does not run a role reports 0 for it, so every
        // node (a standby parameter server too) has the series and rate() sees a node's first samples.
        Meter.CreateObservableCounter("training.samples", () => new[]
        {
            new Measurement<long>(Interlocked.Read(ref _samplesApplied), new("role", "parameter-server"), new("node", Node)),
            new Measurement<long>(Interlocked.Read(ref _samplesComputed), new("role", "worker"), new("node", Node)),
        }, "{sample}", "Training samples: in the steps this node's parameter server applied (role=parameter-server), and those this node's workers computed gradients on (role=worker).");
        Meter.CreateObservableCounter("training.gradient_bytes", () => new Measurement<long>(Interlocked.Read(ref _gradientBytes), new KeyValuePair<string, object?>("node", Node)), "By",
            "Bytes of the gradients this node's workers pushed, as encoded for the wire (Cluster:Compression), without frame headers.");
        Meter.CreateObservableCounter("training.clipped_steps", () => new Measurement<long>(Interlocked.Read(ref _clippedSteps), NodeTag), "{gradient}",
            "Gradients clipped by global norm (Optimizer:GradientClipNorm): a step's averaged gradient, clipped at the parameter server, or under Cluster:Compression TopK a worker's push, clipped on its worker (so up to one per push, more than the steps).");
        Meter.CreateObservableCounter("training.workers_lost", () => new Measurement<long>(Interlocked.Read(ref _workersLost), NodeTag), "{worker}", "Workers lost during training; the job continued without them.");
        Meter.CreateObservableCounter("training.parameter_server_takeovers", () => new Measurement<long>(Interlocked.Read(ref _takeovers), NodeTag), "{takeover}",
            "Times this node's standby parameter server took over the job from a failed active one.");
        Meter.CreateObservableCounter("training.shard_loss_restarts", () => new Measurement<long>(Interlocked.Read(ref _shardLossRestarts), NodeTag), "{restart}",
            "Times this parameter-server node started the job again from its newest checkpoint after its run lost a shard node (Cluster:ShardNodes, no standby up).");
        Meter.CreateObservableCounter("dataplane.bytes", () => new[]
        {
            new Measurement<long>(DataPlane.TensorFrame.BytesSent, new("direction", "sent"), new("node", Node)),
            new Measurement<long>(DataPlane.TensorFrame.BytesReceived, new("direction", "received"), new("node", Node)),
        }, "By", "Bytes of weights and gradients moved on the data plane (cluster mode; 0 in single-node mode, which has no network).");
        Meter.CreateObservableGauge("cluster.members", ClusterMembers, "{node}", "Cluster members by status, as this node sees them (cluster mode).");
        Meter.CreateObservableGauge("cluster.unreachable", ClusterUnreachable, "{node}", "Members this node sees as unreachable (cluster mode).");
    }

    private static Akka.Cluster.Cluster? _cluster;
    private static DistTrain.Core.Diagnostics.LayerHealth[] _layerHealth = [];


    /// <summary>Publishes the per-tensor norms the parameter server measures (the array is updated in place).</summary>
    public static void WatchLayerHealth(DistTrain.Core.Diagnostics.LayerHealth[] latest) => _layerHealth = latest;

    private static IEnumerable<Measurement<double>> LayerValues(Func<DistTrain.Core.Diagnostics.LayerHealth, double> value)
    {
        foreach (var layer in _layerHealth)
            if (layer.Name is not null)
                yield return new Measurement<double>(value(layer), new("layer", layer.Name), new("node", Node));
    }

    /// <summary>
    /// Publishes the membership of <paramref name="cluster"/> (cluster mode) until its actor system terminates; then the
    /// process reports no member in any status, rather than the membership the dead cluster last had (a program may run a
    /// cluster node through the Trainer API and train in single-node mode later). A process that never calls this exports
    /// no cluster series.
    /// </summary>
    public static void WatchCluster(Akka.Cluster.Cluster cluster)
    {
        _clusterWatched = true;
        _cluster = cluster;
        cluster.System.RegisterOnTermination(() => Interlocked.CompareExchange(ref _cluster, null, cluster));
    }

    private static volatile bool _clusterWatched;

    private static IEnumerable<Measurement<int>> ClusterMembers() =>
        MembersOf(_cluster is { } cluster ? cluster.State.Members.Select(m => m.Status) : null, _clusterWatched);

    private static IEnumerable<Measurement<int>> ClusterUnreachable() =>
        UnreachableOf(_cluster?.State.Unreachable.Count, _clusterWatched);

    /// <summary>
    /// <c>disttrain_cluster_members</c>: <paramref name="statuses"/>, the members of the cluster this process's node is in, by
    /// status (<see cref="MemberCounts"/>). A process that was never a cluster node (single-node mode) exports none: it has no
    /// cluster, and a cluster of one there read as a member on dashboards. Once its node has left (its actor system ended,
    /// <paramref name="statuses"/> null), every status is 0, so the exporter, which keeps a series' last value until it is
    /// measured again, does not go on reporting the dead cluster's members.
    /// </summary>
    internal static IEnumerable<Measurement<int>> MembersOf(IEnumerable<Akka.Cluster.MemberStatus>? statuses, bool clusterWatched) =>
        !clusterWatched ? [] : MemberCounts(statuses ?? []);

    /// <summary><c>disttrain_cluster_unreachable</c>: <paramref name="unreachable"/> members (0 once the node has left, null), and
    /// nothing in a process that was never a cluster node, as <see cref="MembersOf"/>.</summary>
    internal static IEnumerable<Measurement<int>> UnreachableOf(int? unreachable, bool clusterWatched) =>
        !clusterWatched ? [] : [new Measurement<int>(unreachable ?? 0, NodeTag)];

    /// <summary>
    /// One measurement per <see cref="Akka.Cluster.MemberStatus"/>, its count among <paramref name="statuses"/>: 0 for a
    /// status no member has. The Prometheus adapter keeps a label set's last value until it is measured again, so a status
    /// left out when its last member moved on (joining to up, leaving to exiting) went on reporting that member.
    /// </summary>
    internal static IEnumerable<Measurement<int>> MemberCounts(IEnumerable<Akka.Cluster.MemberStatus> statuses)
    {
        var counts = statuses.CountBy(s => s).ToDictionary();
        foreach (var status in Enum.GetValues<Akka.Cluster.MemberStatus>())
            yield return new Measurement<int>(counts.GetValueOrDefault(status), new("status", status.ToString().ToLowerInvariant()), new("node", Node));
    }

    private static IEnumerable<Measurement<long>> MailboxDepths()
    {
        foreach (var ((role, path), actor) in Watched)
            if (actor is ActorRefWithCell { Underlying: { } cell })
                yield return new Measurement<long>(cell.NumberOfMessages, new("role", role), new("node", Node), new("actor", path));
    }

    /// <summary>The <c>node</c> tag alone, which every DistTrain series carries, so that a Prometheus query can tell nodes apart
    /// without relying on the scrape's <c>instance</c> label.</summary>
    public static KeyValuePair<string, object?> NodeTag => new("node", Node);

    /// <summary>The role and node tags of an actor's measurements.</summary>
    public static TagList Tags(string role) => new() { { "role", role }, { "node", Node } };

    /// <summary>Records one handled message: the count and the time since <paramref name="startTimestamp"/> (a <see cref="Stopwatch"/> timestamp).</summary>
    public static void Handled(in TagList tags, long startTimestamp)
    {
        if (!MessagesProcessed.Enabled) return;
        MessagesProcessed.Add(1, tags);
        ProcessingSeconds.Record(Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds, tags);
    }
}
