using DistTrain.Core.Compression;
using DistTrain.Core.Data;
using DistTrain.Core.LinearAlgebra;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;

namespace DistTrain.Core.Configuration;

/// <summary>
/// Everything a training run needs, bound from a JSON file in <c>configs/</c>, then from environment
/// variables <c>DISTTRAIN_Section__Key</c>, then from command-line overrides (last wins).
/// </summary>
public sealed class TrainingOptions
{
    /// <summary>Where the data lives and how it is normalized.</summary>
    public DataOptions Data { get; set; } = new();

    /// <summary>The network.</summary>
    public ModelOptions Model { get; set; } = new();

    /// <summary>The parameter server's optimizer and learning-rate schedule.</summary>
    public OptimizerOptions Optimizer { get; set; } = new();

    /// <summary>Workers, epochs, minibatch and seed.</summary>
    public TrainingLoopOptions Training { get; set; } = new();

    /// <summary>True when the workers apply the momentum (<see cref="ClusterOptions.MomentumCorrection"/>): TopK with error
    /// feedback and plain momentum SGD.</summary>
    public bool UsesMomentumCorrection => WantsMomentumCorrection && !Optimizer.Nesterov;

    /// <summary>Cluster:MomentumCorrection would apply but for Nesterov momentum, which it does not cover.</summary>
    private bool WantsMomentumCorrection => Cluster.MomentumCorrection && Cluster.Compression == GradientCompression.TopK && Cluster.ErrorFeedback
        && Optimizer.Kind == OptimizerKind.Sgd && Optimizer.Momentum > 0;

    /// <summary>True when the workers add Optimizer:L1 and L2 to their own gradients, before the momentum they apply
    /// (<see cref="UsesMomentumCorrection"/> with a non-zero L1 or L2), so the terms get the momentum they get at the parameter
    /// server without compression; the parameter server then adds none.</summary>
    public bool RegularizesOnWorkers => UsesMomentumCorrection && (Optimizer.L1 > 0 || Optimizer.L2 > 0);

    /// <summary>True when each worker clips its own gradient before encoding it (Cluster:Compression TopK with
    /// Optimizer:GradientClipNorm &gt; 0: Deep Gradient Compression's local gradient clipping, Lin et al., ICLR 2018, section 3.3);
    /// the parameter server then clips nothing, since what it receives is a sum of sparse selections, not a gradient.</summary>
    public bool ClipsOnWorkers => Cluster.Compression == GradientCompression.TopK && Optimizer.GradientClipNorm > 0;

    /// <summary>The parameter server's optimizer settings: <see cref="Optimizer"/>, with momentum 0 when the workers apply it
    /// (<see cref="UsesMomentumCorrection"/>), L1 and L2 0 when the workers add them (<see cref="RegularizesOnWorkers"/>), and
    /// clipping off when the workers clip (<see cref="ClipsOnWorkers"/>); <see cref="Optimizer"/> itself when none applies.</summary>
    public OptimizerOptions ParameterServerOptimizer()
    {
        var server = UsesMomentumCorrection ? Optimizer.WithoutMomentum() : Optimizer;
        if (RegularizesOnWorkers) server = server.WithoutRegularization();
        if (ClipsOnWorkers) server = server.WithoutClipping();
        return server;
    }

    /// <summary>The parameter server's gradient diagnostics: <see cref="Monitoring"/>, marked
    /// <see cref="Diagnostics.MonitoringOptions.SparseGradients"/> under Cluster:Compression TopK, whose pushes leave most elements at zero.</summary>
    public Diagnostics.MonitoringOptions ParameterServerMonitoring() =>
        Cluster.Compression == GradientCompression.TopK ? Monitoring.ForSparseGradients() : Monitoring;

    /// <summary>One line on Cluster:Compression for the start-up output, e.g. <c>gradients sent as TopK 1% with error
    /// feedback and momentum correction (momentum 0.9 on the workers, none at the parameter server)</c>; null for None.</summary>
    public string? DescribeCompression()
    {
        var c = Cluster;
        if (c.Compression == GradientCompression.None) return null;
        // The ratio as a plain percentage (0.0000001%), in E notation only below what ten decimals show.
        var percent = 100 * c.TopKRatio;
        var shown = percent.ToString(percent >= 1e-9 ? "0.##########" : "0.###E+0", System.Globalization.CultureInfo.InvariantCulture);
        var kind = c.Compression == GradientCompression.TopK
            ? $"TopK {shown}%{(c.TopKScope == TopKScope.PerTensor ? " per tensor" : "")}"
            : c.Compression.ToString();
        var feedback = c.ErrorFeedback ? " with error feedback" : " without error feedback";
        var correction = UsesMomentumCorrection
            ? string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $" and momentum correction (momentum {Optimizer.Momentum}{(RegularizesOnWorkers ? " and L1/L2" : "")} on the workers, none at the parameter server)")
            : WantsMomentumCorrection
                ? "; momentum correction off: it does not support Optimizer:Nesterov"
                : "";
        var clipping = ClipsOnWorkers
            ? string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"; each worker clips its gradient to Optimizer:GradientClipNorm {Optimizer.GradientClipNorm} / sqrt(workers per step), the parameter server clips none")
            : "";
        return $"gradients sent as {kind}{feedback}{correction}{clipping}";
    }

    /// <summary>
    /// A warning, for the run's <c>warning:</c> lines, when Cluster:MomentumCorrection is on (its default) with
    /// Cluster:Compression TopK, error feedback and momentum SGD but does not apply because Optimizer:Nesterov is set: the
    /// parameter server then applies the (Nesterov) momentum to the sparse updates, which costs accuracy (in
    /// docs/benchmarks.md, TopK 1% without the correction ended 1.5 points below with it). Null otherwise.
    /// </summary>
    public string? MomentumCorrectionOff() => WantsMomentumCorrection && Optimizer.Nesterov
        ? string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"Cluster:MomentumCorrection is off in this run: it does not support Optimizer:Nesterov, so the parameter server applies Nesterov momentum {Optimizer.Momentum} ") +
          "to the sparse TopK updates, whose elements held back in the error-feedback residual it then keeps applying for many steps; this costs " +
          "accuracy (TopK 1% without the correction ended 1.5 points lower on the Fashion-MNIST MLP). Set Optimizer:Nesterov to false to use the " +
          "correction, or Cluster:Compression to None, Float16 or BFloat16."
        : null;

    /// <summary>
    /// Settings changed from their defaults that this run does not use, one line each naming the key, its value, the
    /// setting that leaves it unused and what would use it, as <c>warning:</c> lines before training: those of the
    /// optimizer's kind (<see cref="OptimizerOptions.UnusedSettings"/>) and of the schedule's
    /// (<see cref="LearningRateScheduleOptions.UnusedSettings"/>), the initializer's kind
    /// (<see cref="Initialization.InitializerOptions.UnusedSettings"/>), Training:EarlyStopping:MinDelta with early stopping off
    /// (<see cref="EarlyStoppingOptions.UnusedSettings"/>), the gradient-norm thresholds with the measurements off
    /// (<see cref="Diagnostics.MonitoringOptions.UnusedSettings"/>); Training:StalenessBound outside BoundedStaleness,
    /// Training:StalenessAwareLearningRate outside Async and BoundedStaleness, Training:LocalSteps outside LocalSgd,
    /// Optimizer:ScaleLearningRateByWorkers in Async (a step applies one worker's minibatch); Cluster:TopKRatio, TopKScope and
    /// MomentumCorrection without Cluster:Compression TopK, and Cluster:ErrorFeedback without compression. A value set to
    /// its default is not told from one left out, so it is not reported.
    /// </summary>
    public IEnumerable<string> UnusedSettings()
    {
        foreach (var unused in Optimizer.UnusedSettings()) yield return unused;
        foreach (var unused in Optimizer.Schedule.UnusedSettings()) yield return unused;
        foreach (var unused in Model.Initializer.UnusedSettings()) yield return unused;
        foreach (var unused in Training.EarlyStopping.UnusedSettings()) yield return unused;
        foreach (var unused in Monitoring.UnusedSettings()) yield return unused;
        var loop = Training;
        var defaults = new TrainingLoopOptions();
        if (loop.StalenessBound != defaults.StalenessBound && loop.Mode != TrainingMode.BoundedStaleness)
            yield return UnusedInMode("StalenessBound", Shown(loop.StalenessBound), "BoundedStaleness");
        if (loop.StalenessAwareLearningRate != defaults.StalenessAwareLearningRate && loop.Mode is not (TrainingMode.Async or TrainingMode.BoundedStaleness))
            yield return UnusedInMode("StalenessAwareLearningRate", Shown(loop.StalenessAwareLearningRate), "Async or BoundedStaleness");
        if (loop.LocalSteps != defaults.LocalSteps && loop.Mode != TrainingMode.LocalSgd)
            yield return UnusedInMode("LocalSteps", Shown(loop.LocalSteps), "LocalSgd");
        if (Optimizer.ScaleLearningRateByWorkers && loop.Mode == TrainingMode.Async)
            yield return "Optimizer:ScaleLearningRateByWorkers = true is not used by Training:Mode Async, whose steps each apply one worker's minibatch, " +
                "only by Sync, BoundedStaleness or LocalSgd. Set Training:Mode to one of those, or remove ScaleLearningRateByWorkers.";
        var cluster = Cluster;
        var clusterDefaults = new ClusterOptions();
        if (cluster.Compression != GradientCompression.TopK)
        {
            if (cluster.TopKRatio != clusterDefaults.TopKRatio) yield return UnusedByCompression("TopKRatio", Shown(cluster.TopKRatio), "TopK");
            if (cluster.TopKScope != clusterDefaults.TopKScope) yield return UnusedByCompression("TopKScope", cluster.TopKScope.ToString(), "TopK");
            if (cluster.MomentumCorrection != clusterDefaults.MomentumCorrection) yield return UnusedByCompression("MomentumCorrection", Shown(cluster.MomentumCorrection), "TopK");
        }
        if (cluster.ErrorFeedback != clusterDefaults.ErrorFeedback && cluster.Compression == GradientCompression.None)
            yield return UnusedByCompression("ErrorFeedback", Shown(cluster.ErrorFeedback), "Float16, BFloat16 or TopK");

        string UnusedInMode(string key, string value, string modes) =>
            $"Training:{key} = {value} is not used by Training:Mode {loop.Mode}, only by {modes}. Set Mode to {modes}, or remove {key}.";
        string UnusedByCompression(string key, string value, string kinds) =>
            $"Cluster:{key} = {value} is not used by Cluster:Compression {cluster.Compression}, only by {kinds}. Set Compression to {kinds}, or remove {key}.";
        static string Shown(IConvertible value) => value is bool flag ? (flag ? "true" : "false") : value.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>Where results are written.</summary>
    public OutputOptions Output { get; set; } = new();

    /// <summary>How the numerics run.</summary>
    public ComputeOptions Compute { get; set; } = new();

    /// <summary>Gradient diagnostics: per-tensor norms and vanishing/exploding warnings.</summary>
    public DistTrain.Core.Diagnostics.MonitoringOptions Monitoring { get; set; } = new();

    /// <summary>Prometheus metrics endpoint.</summary>
    public MetricsOptions Metrics { get; set; } = new();

    /// <summary>Cluster mode: how this node joins the Akka cluster and where tensors travel.</summary>
    public ClusterOptions Cluster { get; set; } = new();

    /// <summary>Checkpoints the parameter server writes, and resuming from them.</summary>
    public CheckpointOptions Checkpoint { get; set; } = new();
}

/// <summary>
/// Checkpoints (configuration section <c>Checkpoint</c>): the parameter server writes its weights, optimizer state and
/// position to <see cref="Directory"/> every <see cref="EverySteps"/> steps and at each epoch end, keeping the newest
/// <see cref="Keep"/>; <see cref="Resume"/> continues from the newest valid one (docs/reliability.md).
/// </summary>
public sealed class CheckpointOptions
{
    /// <summary>Folder of the checkpoints (a shared volume in docker). Empty (the default) turns checkpoints off.</summary>
    public string Directory { get; set; } = "";

    /// <summary>Optimizer steps between checkpoints, 0 to 1e9; 0 (the default) writes only at each epoch end.</summary>
    public int EverySteps { get; set; }

    /// <summary>Checkpoints kept; older ones are deleted after each write. 1 to 1,000. Default 3.</summary>
    public int Keep { get; set; } = 3;

    /// <summary>Continue from the newest valid checkpoint in <see cref="Directory"/> (<c>disttrain train --resume</c>). Default false.</summary>
    public bool Resume { get; set; }

    /// <summary>
    /// Refuse a resume (or a standby's takeover) whose training samples differ from those the checkpoint's run trained on,
    /// by their digest (a changed label or image). Default true; false lets a run go on with data changed on purpose
    /// (labels corrected mid-run), or with images decoded by another platform's image library into other pixels.
    /// </summary>
    public bool CheckTrainingData { get; set; } = true;

    /// <summary>True when a directory is set.</summary>
    public bool Enabled => !string.IsNullOrWhiteSpace(Directory);
}

/// <summary>
/// Cluster mode (<c>disttrain node</c>). Every key can come from the environment, as in docker:
/// <c>DISTTRAIN_Cluster__SeedNodes__0=akka.tcp://disttrain@ps:4053</c>.
/// </summary>
public sealed class ClusterOptions
{
    /// <summary>
    /// Address the node's Akka.Remote endpoint, and a parameter server's data plane, bind to: <c>0.0.0.0</c> (the default)
    /// every IPv4 interface, <c>::</c> every interface, else that one address (a host name: its first IPv4 address), as
    /// <c>127.0.0.1</c> keeps a cluster on one machine to loopback.
    /// </summary>
    public string Hostname { get; set; } = "0.0.0.0";

    /// <summary>
    /// Address other nodes use to reach this one, for Akka.Remote and the data plane (a container's IP or DNS name, or the
    /// outside address behind NAT). Empty: Akka.Remote advertises <see cref="Hostname"/> as written, <c>0.0.0.0</c> included
    /// (an address no other machine can reach); the data plane is advertised as <see cref="Hostname"/> when that is one
    /// address, else as the machine's host name.
    /// </summary>
    public string PublicHostname { get; set; } = "";

    /// <summary>Akka.Remote port; 0 picks a free one (fine for workers). Default 4053, the parameter server's seed port.</summary>
    public int Port { get; set; } = 4053;

    /// <summary>Seed node addresses, e.g. <c>akka.tcp://disttrain@ps:4053</c>; the parameter server is the usual seed.</summary>
    public List<string> SeedNodes { get; set; } = [];

    /// <summary>TCP port of the parameter server's tensor data plane (weights and gradients), on <see cref="Hostname"/>. Default 4054.</summary>
    public int DataPort { get; set; } = 4054;

    /// <summary>
    /// How each worker encodes its gradient for the parameter server: <c>None</c> (default; float32, lossless),
    /// <c>Float16</c>, <c>BFloat16</c> (2 bytes per element) or <c>TopK</c> (the <see cref="TopKRatio"/> largest
    /// elements, 8 bytes each). Only the trainable parameters' gradients are encoded; BatchNorm running statistics and
    /// the weights sent back stay float32. Single-node mode applies the same encoding in process, so a laptop run shows
    /// its effect on accuracy. Not with Training:Mode LocalSgd, whose workers send models, not gradients.
    /// </summary>
    public GradientCompression Compression { get; set; } = GradientCompression.None;

    /// <summary><see cref="GradientCompression.TopK"/>: the fraction of gradient elements each push sends, in (0, 1].
    /// Default 0.01 (1%).</summary>
    public double TopKRatio { get; set; } = 0.01;

    /// <summary>
    /// <see cref="GradientCompression.TopK"/>: <c>Global</c> (default) sends the <see cref="TopKRatio"/> largest elements of the
    /// whole gradient; <c>PerTensor</c> sends each trainable tensor's own <see cref="TopKRatio"/> largest (at least one per
    /// tensor), as Deep Gradient Compression selects layer by layer (Lin et al., ICLR 2018, section 3), so a tensor with small
    /// gradients (a first layer, a bias) is not starved by one with large gradients. Only gradients are selected: BatchNorm
    /// running statistics are not gradients, carry no residual and are sent float32 whole in either scope. Ignored by the other
    /// encodings. Part of the registration fingerprint: every node must agree.
    /// </summary>
    public TopKScope TopKScope { get; set; } = TopKScope.Global;

    /// <summary>
    /// With <see cref="Compression"/> other than None: keep what the encoding drops in a per-worker residual and add it to
    /// the next gradient (Karimireddy et al., ICML 2019). Default true; TopK without it loses the unsent elements.
    /// The residual lives in the worker's memory only: a worker that restarts, or a resume from a checkpoint, starts
    /// with a zero residual.
    /// </summary>
    public bool ErrorFeedback { get; set; } = true;

    /// <summary>
    /// With <see cref="Compression"/> TopK, <see cref="ErrorFeedback"/>, and Optimizer:Kind Sgd with Momentum &gt; 0 and
    /// Nesterov off: Deep Gradient Compression's momentum correction (Lin et al., ICLR 2018, section 3.2). Each worker
    /// applies Optimizer:Momentum to its own gradients before selecting the largest, and the parameter server steps
    /// without momentum. Optimizer:L1 and L2 are then added by each worker to its gradient before that momentum (the parameter
    /// server adds none), so at TopKRatio 1 (every element sent) in Sync the update is exactly momentum SGD's, regularization
    /// included. Default true; ignored in every other case. On the main job at 1% it was worth 1.5 points of test accuracy (docs/benchmarks.md). Like the
    /// residual, the workers' velocities are not checkpointed. Part of the registration fingerprint: every node must agree.
    /// </summary>
    public bool MomentumCorrection { get; set; } = true;

    /// <summary>
    /// Parameter-server shards: each owns a contiguous slice of the flat parameter vector (its weights, optimizer state and
    /// step), and the shards step in parallel, each reading its slice of the workers' reports and writing its slice of the
    /// weights they get. 1 to 16. Default 1. Above 1 in every Training:Mode (without Optimizer:GradientClipNorm in Async and BoundedStaleness); the weights are bit-identical to one
    /// shard's (with Optimizer:GradientClipNorm equal up to the summation order of the norm). The shards run in the active
    /// parameter server's process (docs/architecture.md).
    /// </summary>
    public int ParameterServerShards { get; set; } = 1;

    /// <summary>
    /// Run the Cluster:ParameterServerShards shards on shard nodes (<c>disttrain node --role parameter-shard</c>), one shard per
    /// node, instead of in the parameter server's process: the workers send each shard its slice of every gradient over the shard
    /// node's data plane and take each round's weights from the K nodes, and the parameter server only coordinates. Default
    /// false. The job waits for K shard nodes, and again for their answers, up to the smaller of Cluster:JoinTimeoutSeconds and a
    /// third of Training:StallTimeoutSeconds each. Synchronous training only; under Cluster:Compression each worker sends each shard
    /// node its cut of the encoded gradient (<see cref="Compression.GradientMessageSlice"/>). Checkpoint:EverySteps
    /// writes checkpoints within an epoch as with one server, gathered from the shards. A shard node lost ends the job with an error
    /// that says so and how to go on (Checkpoint:Resume from the newest checkpoint), or, with a standby parameter server up and a
    /// checkpoint of the run, leaves the job to the standby, whose takeover places the shards anew (on a spare shard node); a worker lost during a
    /// part of an epoch leaves its samples to a further part, as with one server, and workers may join (a lost one restarted joins
    /// as a new worker) while the spare worker slots placed with the shards last: as many as the job starts with, at least 8, at
    /// most 256 slots in all (docs/architecture.md, "Where the shards run"). Read on the
    /// parameter-server node only.
    /// </summary>
    public bool ShardNodes { get; set; }

    /// <summary>
    /// Workers on the parameter server's host (the same machine, user and process namespace, so not in a container of
    /// their own) exchange weights and gradients with it through a sealed shared-memory file instead of the TCP data
    /// plane: one copy in and one out, no kernel. The data-plane connection stays and carries every frame's header, so ordering,
    /// authentication (the registration token, TLS) and loss detection are unchanged. A worker elsewhere declines the
    /// offer and stays on TCP. Default true; false on either side keeps every byte on the connection (to measure a
    /// network, as the network-namespace benchmarks do). Not part of the fingerprint: nodes may differ.
    /// </summary>
    public bool SharedMemory { get; set; } = true;

    /// <summary>
    /// Compare the samples every node read at registration (each split's count and a SHA-256 digest of its labels and
    /// features as loaded), so that a worker reading other files under the same settings is refused. Default true. False,
    /// set on every node, compares settings only: for data that legitimately decodes differently on different machines
    /// (images resized by <c>Data:ImageFolder:Resize</c> on CPUs whose vector code rounds a pixel differently).
    /// </summary>
    public bool CheckSamples { get; set; } = true;

    /// <summary>Workers that must have joined before training starts. 1 to 256. Default 2.</summary>
    public int MinWorkers { get; set; } = 2;

    /// <summary>
    /// Seconds training waits, once <see cref="MinWorkers"/> workers are ready, for more of the workers launched with them: it
    /// starts with every worker ready by then. 0 to 600. Default 1. A worker ready later joins at the next epoch, or the next part of
    /// one (with <see cref="ShardNodes"/>, while the worker slots placed with the shards last).
    /// </summary>
    public double StartDelaySeconds { get; set; } = 1;

    /// <summary>
    /// Seconds a job resumed from a checkpoint written within an epoch (or taken over from one) waits for as many workers as
    /// that epoch was planned for, which resumes it exactly; then it goes on with the workers ready (at least
    /// <see cref="MinWorkers"/>), which train what the epoch's plan had left, each sample once, with or without
    /// <see cref="ShardNodes"/>. 0 to 604,800. Default 30.
    /// </summary>
    public double ResumeWaitSeconds { get; set; } = 30;

    /// <summary>
    /// Seconds a worker node waits for a parameter server to accept it before giving up: when it starts, and again
    /// after it lost the active parameter server and waits for a standby to take over. Default 120.
    /// </summary>
    public double JoinTimeoutSeconds { get; set; } = 120;

    /// <summary>
    /// Seconds training may stay paused below <see cref="MinWorkers"/> (workers lost, none joined) before the parameter
    /// server ends the job with an error that says so; 0 waits for ever. 0 to 604,800 (a week). Default 600, the default
    /// time PyTorch's elastic rendezvous waits for enough nodes (<c>join_timeout</c>). With Checkpoint:Directory set,
    /// <c>--resume</c> continues such a job later.
    /// </summary>
    public double PauseTimeoutSeconds { get; set; } = 600;

    /// <summary>
    /// Seconds an unreachable node must stay unreachable, with membership otherwise stable, before the split-brain
    /// resolver downs it (Akka's <c>split-brain-resolver.stable-after</c>). It bounds how fast a standby parameter
    /// server takes over from a dead one: about failure detection (3–5 s) + this + the removal margin + the restart.
    /// Lower is faster, higher tolerates longer pauses (GC, a saturated host) without downing a live node.
    /// 2 to 300. Default 3, chosen from ten-minute runs on shaped links (docs/reliability.md, "Failover speed against
    /// false alarms"): no false downing, and a takeover 14 s sooner than with 10 (Akka's own default is 20).
    /// </summary>
    public double StableAfterSeconds { get; set; } = 3;

    /// <summary>
    /// Seconds between the heartbeats each node sends the nodes it monitors (Akka.Cluster's
    /// <c>failure-detector.heartbeat-interval</c>). 0.1 to 60. Default 1.
    /// </summary>
    public double HeartbeatIntervalSeconds { get; set; } = 1;

    /// <summary>
    /// Seconds of missing heartbeats the failure detector accepts before it marks a node unreachable (Akka.Cluster's
    /// phi-accrual <c>failure-detector.acceptable-heartbeat-pause</c>; the mark comes about this plus one heartbeat interval
    /// after the last heartbeat). Lower detects a dead node sooner; higher tolerates longer pauses (GC, a saturated host,
    /// lost packets) without a false mark. 0.5 to 300. Default 3.
    /// </summary>
    public double AcceptableHeartbeatPauseSeconds { get; set; } = 3;

    /// <summary>
    /// Seconds between the removal of a downed active parameter server and the start of the job host on the standby
    /// (Akka's <c>down-removal-margin</c>): time for the downed node, if it is alive on the other side of a partition, to
    /// have shut itself down. DistTrain's one-parameter-server guarantee does not rest on it (docs/reliability.md).
    /// 0 to 300. Default 1.
    /// </summary>
    public double RemovalMarginSeconds { get; set; } = 1;

    /// <summary>
    /// Name of the job every node must share; a worker of another job is refused at join. Letters, digits, '.', '_' and
    /// '-', 1 to 64 characters. Default <c>disttrain</c>.
    /// </summary>
    public string JobName { get; set; } = "disttrain";

    /// <summary>
    /// File holding the job's shared secret (at least 16 bytes; surrounding white space ignored), from which each node
    /// proves it belongs to the job without sending the secret (HMAC-SHA256). Cluster mode needs this or
    /// <see cref="Secret"/>; <c>deploy/certs/make-certs.sh</c> writes one.
    /// </summary>
    public string SecretFile { get; set; } = "";

    /// <summary>
    /// The job's shared secret itself, for environments that inject secrets as variables
    /// (<c>DISTTRAIN_Cluster__Secret</c>); refused in a config file, and never written to a run's outputs.
    /// </summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public string Secret { get; set; } = "";

    /// <summary>
    /// Mutual TLS on Akka.Remote and on the data plane, with certificates signed by the cluster's own CA
    /// (<see cref="CertificateAuthorityFile"/>). Default true; false is plain TCP for a trusted private network and
    /// prints a warning at start-up.
    /// </summary>
    public bool Tls { get; set; } = true;

    /// <summary>This node's certificate (PEM), signed by the cluster's CA; with <see cref="Tls"/>.</summary>
    public string CertificateFile { get; set; } = "";

    /// <summary>The private key of <see cref="CertificateFile"/> (PEM, unencrypted PKCS#8 or PKCS#1/SEC1).</summary>
    public string CertificateKeyFile { get; set; } = "";

    /// <summary>The cluster's CA certificate (PEM): the only issuer whose certificates this node accepts from peers.</summary>
    public string CertificateAuthorityFile { get; set; } = "";
}

/// <summary>The Prometheus endpoint every node can expose.</summary>
public sealed class MetricsOptions
{
    /// <summary>Port of <c>http://HOST:PORT/metrics</c>; 0 (default) turns the endpoint off.</summary>
    public int Port { get; set; }

    /// <summary>Where the endpoint listens: <c>+</c> (default) for every interface, <c>localhost</c> for this machine only.</summary>
    public string Hostname { get; set; } = "+";
}

/// <summary>Numerics back end.</summary>
public sealed class ComputeOptions
{
    /// <summary>
    /// <c>Auto</c>: native OpenBLAS when installed (Debian's <c>libopenblas0-pthread</c>), else MathNet's
    /// managed provider; <c>Managed</c>: always the managed provider. Default <c>Auto</c>.
    /// </summary>
    public BlasProvider BlasProvider { get; set; } = BlasProvider.Auto;

    /// <summary>
    /// OpenBLAS threads per matrix product. 0 (default) = automatic: cores / workers in single-node mode,
    /// all cores on a worker node (one worker per node). Set it when several worker nodes share a
    /// machine, so that workers × threads stays within the cores (deploy/local/cluster.sh does).
    /// </summary>
    public int BlasThreads { get; set; }

    /// <summary>
    /// Backend of Conv2D layers: <c>Auto</c> (default) runs oneDNN (Debian's <c>libdnnl2</c>) when it loads, else
    /// im2col + sgemm; <c>Im2Col</c> always DistTrain's im2col; <c>OneDnn</c> requires oneDNN (start-up fails
    /// without it). oneDNN uses <see cref="BlasThreads"/> threads per call as well.
    /// </summary>
    public ConvolutionBackend ConvolutionBackend { get; set; } = ConvolutionBackend.Auto;
}

/// <summary>Data source and preprocessing.</summary>
public sealed class DataOptions
{
    /// <summary>How the data is stored: <see cref="DataFormat.Idx"/> (the default), <see cref="DataFormat.Csv"/> or <see cref="DataFormat.ImageFolder"/>.</summary>
    public DataFormat Format { get; set; } = DataFormat.Idx;

    /// <summary>Folder with the four MNIST-format IDX files (Format Idx). Default: Debian's <c>dataset-fashion-mnist</c> location.</summary>
    public string Directory { get; set; } = FashionMnist.DebianDirectory;

    /// <summary>The CSV files and their columns (Format Csv).</summary>
    public CsvOptions Csv { get; set; } = new();

    /// <summary>The image folders (Format ImageFolder).</summary>
    public ImageFolderOptions ImageFolder { get; set; } = new();

    /// <summary>
    /// Csv and ImageFolder without a test file or folder: the fraction of the training rows or images held out as the test
    /// split, per class (stratified), chosen by <see cref="TestSplitSeed"/>; in (0, 0.9]. 0 (the default) with a test file.
    /// </summary>
    public double TestFraction { get; set; }

    /// <summary>
    /// Seed of the <see cref="TestFraction"/> split, separate from Training:Seed so runs with different seeds are scored on
    /// the same test samples. The split is <see cref="Data.TestSplit"/>'s, reproducible outside DistTrain. Default 0.
    /// </summary>
    public int TestSplitSeed { get; set; }

    /// <summary>
    /// Names of the classes in label order, for data whose labels are numbers (IDX, CSV with integer labels): recorded in
    /// the saved model so <c>disttrain predict</c> prints names. Empty (the default): none, or the data's own names (CSV
    /// labels that are names, image sub-folders).
    /// </summary>
    public List<string> ClassNames { get; set; } = [];

    /// <summary>Input standardization fitted on the training split. Default <see cref="NormalizationKind.Global"/>.</summary>
    public NormalizationKind Normalization { get; set; } = NormalizationKind.Global;

    /// <summary>Use only the first N training samples (0 = all). For quick runs and tests.</summary>
    public int TrainLimit { get; set; }

    /// <summary>Use only the first N test samples (0 = all).</summary>
    public int TestLimit { get; set; }

    /// <summary>
    /// Keep only these classes, relabeled in the listed order (the first becomes class 0), in every split; empty (the
    /// default) keeps all. For transfer learning: pretrain on [0, 1, 2, 3, 4], fine-tune on [5, 6, 7, 8, 9].
    /// </summary>
    public List<int> Classes { get; set; } = [];

    /// <summary>
    /// Fraction of the training split held out for validation (early stopping), chosen at random with Training:Seed,
    /// in [0, 0.5]. 0 (the default) holds out nothing.
    /// </summary>
    public double ValidationFraction { get; set; }

    /// <summary>Random crops, translations and flips of the training images (off by default).</summary>
    public AugmentationOptions Augmentation { get; set; } = new();
}

/// <summary>The data-parallel loop.</summary>
public sealed class TrainingLoopOptions
{
    /// <summary>Worker replicas, each with its own shard. 1 to 256. Default 4.</summary>
    public int Workers { get; set; } = 4;

    /// <summary>Passes over the training set. 1 to 10,000. Default 10.</summary>
    public int Epochs { get; set; } = 10;

    /// <summary>Samples per minibatch on each worker; one synchronous step consumes up to <c>Workers ×</c> this. 1 to 65,536. Default 64.</summary>
    public int BatchSizePerWorker { get; set; } = 64;

    /// <summary>
    /// Cluster mode: when workers are lost or join, keep the global minibatch the job started with (its workers ×
    /// <see cref="BatchSizePerWorker"/>) by giving each worker alive ⌈global / alive⌉ samples per step, so the steps per
    /// epoch, the learning rate and its schedule (counted in steps) stay as they were. False: each worker keeps
    /// BatchSizePerWorker and the global minibatch shrinks or grows with the workers (pair it with
    /// Optimizer:ScaleLearningRateByWorkers). Default true.
    /// </summary>
    public bool KeepGlobalBatch { get; set; } = true;

    /// <summary>Seed of the weight initializer and of the per-epoch shuffles. Default 1.</summary>
    public int Seed { get; set; } = 1;

    /// <summary>How the parameter server combines the workers' work (<see cref="TrainingMode"/>). Default <see cref="TrainingMode.Sync"/>.</summary>
    public TrainingMode Mode { get; set; } = TrainingMode.Sync;

    /// <summary>
    /// <see cref="TrainingMode.BoundedStaleness"/>: how many rounds past the oldest round not yet applied a worker may
    /// compute, so no gradient is more than this many versions stale. 0 is synchronous training. 0 to 1,000. Default 2.
    /// </summary>
    public int StalenessBound { get; set; } = 2;

    /// <summary>
    /// <see cref="TrainingMode.Async"/> and <see cref="TrainingMode.BoundedStaleness"/>: divide each step's learning rate by
    /// the staleness of its gradient plus one (Zhang, Gupta, Lian and Liu, IJCAI 2016). Default false.
    /// </summary>
    public bool StalenessAwareLearningRate { get; set; }

    /// <summary>
    /// <see cref="TrainingMode.LocalSgd"/>: optimizer steps each worker takes on its own replica between two averagings of
    /// the models. 1 with plain SGD is synchronous training in exact arithmetic; in float32 the averaged models differ from
    /// the synchronous weights by rounding, which grows over training. 1 to 10,000. Default 4.
    /// </summary>
    public int LocalSteps { get; set; } = 4;

    /// <summary>
    /// Gradient accumulation, in every mode: each worker computes this many micro-batches of
    /// <see cref="BatchSizePerWorker"/> samples and pushes their sample-weighted mean gradient, as one minibatch of
    /// AccumulationSteps × BatchSizePerWorker samples computed with a micro-batch's memory. 1 to 1,024. Default 1.
    /// </summary>
    public int AccumulationSteps { get; set; } = 1;

    /// <summary>Samples per worker push (or local step): <see cref="BatchSizePerWorker"/> × <see cref="AccumulationSteps"/>.</summary>
    public int MinibatchPerWorker => BatchSizePerWorker * Math.Max(1, AccumulationSteps);

    /// <summary>Samples per forward pass during evaluation (memory only; results do not depend on it). Default 1000.</summary>
    public int EvaluationBatchSize { get; set; } = 1000;

    /// <summary>
    /// Seconds without any progress (a completed step or evaluation result) before the job fails with
    /// an error naming the epoch and step, instead of waiting forever for a lost message. Default 120.
    /// </summary>
    public double StallTimeoutSeconds { get; set; } = 120;

    /// <summary>Early stopping on the validation loss (needs Data:ValidationFraction &gt; 0). Off by default.</summary>
    public EarlyStoppingOptions EarlyStopping { get; set; } = new();
}

/// <summary>
/// Stop training when the validation loss has not improved by more than <see cref="MinDelta"/> for
/// <see cref="Patience"/> epochs, and keep the weights of the best epoch (as Keras' <c>EarlyStopping</c> with
/// <c>restore_best_weights=True</c>).
/// </summary>
public sealed class EarlyStoppingOptions
{
    /// <summary>Epochs without improvement before stopping; 0 (the default) turns early stopping off. 0 to 1,000.</summary>
    public int Patience { get; set; }

    /// <summary>Smallest decrease of the validation loss that counts as an improvement, ≥ 0. Default 0.</summary>
    public double MinDelta { get; set; }

    /// <summary>
    /// <see cref="MinDelta"/> changed from its default while <see cref="Patience"/> is 0, which turns early stopping off, as
    /// one line naming both keys and the fix, for the run's <c>warning:</c> lines; empty otherwise.
    /// </summary>
    public IEnumerable<string> UnusedSettings()
    {
        if (Patience == 0 && MinDelta != new EarlyStoppingOptions().MinDelta)
            yield return $"Training:EarlyStopping:MinDelta = {MinDelta.ToString(System.Globalization.CultureInfo.InvariantCulture)} is not used: " +
                "Training:EarlyStopping:Patience is 0, which turns early stopping off. Set Patience to the epochs to wait for an improvement " +
                "(such as 5, with Data:ValidationFraction such as 0.1), or remove MinDelta.";
    }
}

/// <summary>Run outputs.</summary>
public sealed class OutputOptions
{
    /// <summary>Folder that receives one sub-folder per run with <c>model.safetensors</c>. Default <c>runs</c>.</summary>
    public string Directory { get; set; } = "runs";

    /// <summary>
    /// A file the process touches every 5 seconds while it runs, for container health checks
    /// (the Dockerfile sets <c>/tmp/disttrain-alive</c>). Empty: none. Default empty.
    /// </summary>
    public string HealthFile { get; set; } = "";
}
