using System.Globalization;
using DistTrain.Core.Compression;
using DistTrain.Core.Configuration;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// The memory a single-node run (<see cref="SingleNodeTrainer"/>, as <c>disttrain train</c> and <c>bench</c> start it)
/// will hold for its model, counted from the config's shapes before anything is allocated, so that a model too large for
/// the process is refused at once instead of after minutes of allocating and initializing.
/// </summary>
/// <param name="Parameters">Elements of one copy of the model's parameters (<see cref="ModelFactory.ParameterCounts"/>).</param>
/// <param name="Copies">Parameter-sized float arrays the run holds (see <see cref="SingleNode"/> for what is counted).</param>
/// <param name="ActivationBytes">Bytes of the workers' training and evaluation buffers, all workers together.</param>
/// <param name="Workers">Training:Workers.</param>
public sealed record TrainingMemory(long Parameters, double Copies, long ActivationBytes, int Workers)
{
    /// <summary>Bytes of one copy of the parameters as float32.</summary>
    public long ParameterBytes => Parameters * sizeof(float);

    /// <summary>Bytes the run needs in all: <see cref="Copies"/> × <see cref="ParameterBytes"/> + <see cref="ActivationBytes"/>.</summary>
    public long TotalBytes => (long)Math.Ceiling(Copies * ParameterBytes) + ActivationBytes;

    /// <summary>Estimates above this (1 GiB) take long enough to allocate and initialize that a line says what is being built first.</summary>
    public const long AnnouncedBytes = 1L << 30;

    /// <summary>
    /// The memory of a single-node run of <paramref name="options"/>, with <c>P</c> the parameters and <c>T</c> ≤ <c>P</c>
    /// those not frozen by Model:Freeze (<see cref="ModelFactory.FrozenParameterCount"/>; running statistics are counted
    /// with them, an upper bound): frozen tensors get no gradient in the reports and no optimizer state. Counted, each as
    /// a float32 array, as the code allocates them:
    /// <list type="bullet">
    /// <item>the version-0 weights the command keeps for the run (P) and the final weights it receives (P);</item>
    /// <item>the parameter server (<see cref="Training.ServerModel"/>, <see cref="Training.WeightsOutbox"/>): master weights
    /// (P), averaged gradient (T), weights before a measured step when Monitoring:GradientNormEverySteps is on (P), optimizer
    /// state (T per buffer: 1 for Sgd with momentum, 2 for Adam and AdamW, 1 or 2 for RMSProp), and five weights messages
    /// (the first, its copy and a ring of three), plus two per worker in Async and BoundedStaleness; in LocalSgd each message
    /// also carries the optimizer state;</item>
    /// <item>each worker (<see cref="Actors.Worker"/>, <see cref="Training.ReplicaTrainer"/>): its replica's weights and
    /// gradients (2P), two gradient messages (2T), the staging array for evaluation (P), the evaluation replica (2P); with
    /// gradient accumulation a micro-batch gradient (T); in LocalSgd its own weights (P), gradient (T) and optimizer state;
    /// with Cluster:Compression the encoder's residual, accumulator, TopK magnitudes and momentum-correction velocity (T
    /// each as used);</item>
    /// <item>activations, per worker: the training pass, Training:BatchSizePerWorker × (2 × the forward bytes per sample of
    /// <see cref="ModelFactory.ForwardBytesPerSample"/>, forward outputs and backward input gradients, + the input and
    /// target columns), and the evaluation pass, Training:EvaluationBatchSize × forward bytes per sample, at most
    /// <see cref="Sequential.EvaluationMemoryBytes"/>, + its input columns.</item>
    /// </list>
    /// Left out: the data set (already loaded when this is asked: it is in the process's heap), the transient model the
    /// starting weights are drawn from, checkpoints, Akka and OpenBLAS. For the 784-256-128-10 MLP with 4 workers this is
    /// about 39 copies. Tested to be within a factor 1.5 of the bytes a short run of a large MLP allocates.
    /// </summary>
    /// <param name="options">Validated options (the model, Training:Workers, its mode and batch sizes, the optimizer, compression).</param>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    public static TrainingMemory SingleNode(TrainingOptions options)
    {
        var parts = Parts(options, Math.Max(1, options?.Training.Workers ?? 1));
        return new TrainingMemory(parts.Parameters, parts.Command + parts.Server + parts.Workers * parts.Worker, parts.Workers * parts.Activations, parts.Workers);
    }

    /// <summary>
    /// The memory of one node of cluster mode (<c>disttrain node</c>), counted as <see cref="SingleNode"/> counts it: a
    /// parameter-server node holds the command's and the parameter server's arrays and, for each of Cluster:MinWorkers
    /// workers, its data-plane slots (three weight and two gradient messages, in shared memory or socket buffers); a worker
    /// node holds one worker's arrays and activations and its five slots. More workers than Cluster:MinWorkers add five
    /// copies each at the parameter server.
    /// </summary>
    /// <param name="options">Validated options.</param>
    /// <param name="parameterServer">True for a parameter-server node, false for a worker node.</param>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    public static TrainingMemory Node(TrainingOptions options, bool parameterServer)
    {
        ArgumentNullException.ThrowIfNull(options);
        var workers = Math.Max(1, options.Cluster.MinWorkers); // cluster mode's workers: Training:Workers is single-node mode's
        var parts = Parts(options, workers);
        const int slots = 5;
        return parameterServer
            ? new TrainingMemory(parts.Parameters, parts.Command + parts.Server + workers * slots, 0, workers) { NodeName = "this parameter-server node" }
            : new TrainingMemory(parts.Parameters, parts.Worker + slots, parts.Activations, 1) { NodeName = "this worker node" };
    }

    /// <summary>
    /// The memory of a shard node (<c>disttrain node --role parameter-shard</c>): counted as a parameter-server node's
    /// (<see cref="Node"/>), an upper bound, since the node learns K only when a shard is placed, and with K = 1 its shard
    /// holds what one parameter server does (the starting weights, the slice's weights and optimizer state, and each worker's
    /// data-plane messages).
    /// </summary>
    /// <param name="options">Validated options.</param>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    public static TrainingMemory ShardNode(TrainingOptions options) => Node(options, parameterServer: true) with { NodeName = "this shard node" };

    /// <summary>Empty for a single-node run; else which node of cluster mode the estimate is for (<see cref="Node"/>), as
    /// its messages say.</summary>
    public string NodeName { get; init; } = "";

    /// <summary>Parameter-sized copies of each part of a run (see <see cref="SingleNode"/>), and one worker's activation bytes.</summary>
    private static (long Parameters, int Workers, double Command, double Server, double Worker, long Activations) Parts(TrainingOptions options, int workers)
    {
        ArgumentNullException.ThrowIfNull(options);
        var model = options.Model;
        long parameters = ModelFactory.ParameterCounts(model).Sum();
        // The share of the parameters that trains: gradients, reports and optimizer state cover only those tensors.
        var trainable = parameters == 0 ? 1 : (parameters - ModelFactory.FrozenParameterCount(model)) / (double)parameters;
        var loop = options.Training;
        var optimizer = options.Optimizer;
        double state = optimizer.Kind switch
        {
            OptimizerKind.Adam or OptimizerKind.AdamW => 2,
            OptimizerKind.RMSProp => optimizer.Momentum != 0 ? 2 : 1,
            _ => optimizer.Momentum != 0 ? 1 : 0,
        };
        var localSgd = loop.Mode == TrainingMode.LocalSgd;
        var message = 1 + (localSgd ? state * trainable : 0); // a weights message: the weights, and in local SGD the optimizer state
        var report = trainable * (1 + (localSgd ? state : 0)); // a worker's report: the gradient (in local SGD the weights) and optimizer state
        var perWorkerMessages = loop.Mode is TrainingMode.Async or TrainingMode.BoundedStaleness ? 2 : 0;

        var command = 2.0;
        var server = 1 + trainable + (options.Monitoring.GradientNormEverySteps > 0 ? 1 : 0) + state * trainable + (5 + perWorkerMessages * workers) * message;
        var worker = 2 + 2 * report + 1 + 2 + (loop.AccumulationSteps > 1 ? trainable : 0) + (localSgd ? 1 + trainable * (1 + state) : 0)
            + trainable * CompressionCopies(options);

        var forward = ModelFactory.ForwardBytesPerSample(model);
        var input = (long)model.Input().Size * sizeof(float);
        var output = (long)Math.Max(1, model.Layers.LastOrDefault(l => LayerTypes.Canonical(l.Type) == LayerTypes.Dense)?.Units ?? 1) * sizeof(float);
        long batch = loop.BatchSizePerWorker;
        var training = batch * (2 * forward + input + output);
        var evaluationSamples = Sequential.EvaluationPassSize(loop.EvaluationBatchSize, forward);
        var evaluation = Math.Min(loop.EvaluationBatchSize * forward, Sequential.EvaluationMemoryBytes) + evaluationSamples * (input + 2 * output);
        return (parameters, workers, command, server, worker, training + evaluation);
    }

    /// <summary>Parameter-sized arrays of a worker's gradient encoder (<see cref="GradientEncoder"/>): residual with error
    /// feedback, accumulator, TopK's two magnitude arrays, and the momentum-correction velocity.</summary>
    private static double CompressionCopies(TrainingOptions options)
    {
        var cluster = options.Cluster;
        if (cluster.Compression == GradientCompression.None) return 0;
        var topK = cluster.Compression == GradientCompression.TopK;
        return (cluster.ErrorFeedback ? 1 : 0) + (cluster.ErrorFeedback || topK ? 1 : 0) + (topK ? 2 : 0) + (options.UsesMomentumCorrection ? 1 : 0);
    }

    /// <summary>
    /// Bytes this process may still allocate: <see cref="GCMemoryInfo.TotalAvailableMemoryBytes"/> (the machine's memory,
    /// or less under a container's memory limit or <c>DOTNET_GCHeapHardLimit</c>) less the managed heap already in use
    /// (<see cref="GC.GetTotalMemory(bool)"/> after a full collection, so the garbage of loading is not counted: the loaded
    /// data set, mostly).
    /// </summary>
    public static long AvailableBytes() => Math.Max(0, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes - GC.GetTotalMemory(forceFullCollection: true));

    /// <summary>
    /// The <c>error:</c> line's text when the run needs more than <paramref name="availableBytes"/>, naming the model's
    /// parameters and bytes, the copies and activations, the total, the memory available and the fix; null when it fits.
    /// </summary>
    /// <param name="availableBytes">Bytes the process may use (<see cref="AvailableBytes"/>; tests pass a value).</param>
    public string? Refusal(long availableBytes)
    {
        if (TotalBytes <= availableBytes) return null;
        var culture = CultureInfo.InvariantCulture;
        if (NodeName.Length > 0)
            return $"not enough memory to build the model: it has {Size(Parameters, ParameterBytes)} as float32, and {NodeName} holds about " +
                $"{Copies.ToString("0", culture)} copies of them{(ActivationBytes > 0 ? $" and {Bytes(ActivationBytes)} of activations" : "")}: {Bytes(TotalBytes)} in all, " +
                $"more than the {Bytes(availableBytes)} this process may use. Use a smaller model (fewer Units or Channels in Model:Layers)" +
                $"{(ActivationBytes > 0 ? ", a smaller Training:BatchSizePerWorker" : "")}, or a machine (or container memory limit) with more memory.";
        return $"not enough memory to build the model: it has {Size(Parameters, ParameterBytes)} as float32, and training it with {Workers} worker" +
            $"{(Workers == 1 ? "" : "s")} holds about {Copies.ToString("0", culture)} copies of them (weights, gradients and evaluation replicas in each worker, " +
            $"weights, gradients, optimizer state and weights messages at the parameter server) and {Bytes(ActivationBytes)} of activations: " +
            $"{Bytes(TotalBytes)} in all, more than the {Bytes(availableBytes)} this process may use. Use a smaller model (fewer Units or Channels in " +
            "Model:Layers), fewer Training:Workers, a smaller Training:BatchSizePerWorker, or a machine with more memory.";
    }

    /// <summary>The line printed before a run of at least <see cref="AnnouncedBytes"/> allocates its model, which can take a while.</summary>
    public string Announcement() => NodeName.Length > 0
        ? $"building the model: {Size(Parameters, ParameterBytes)} as float32; {NodeName} holds about {Bytes(TotalBytes)}"
        : $"building the model: {Size(Parameters, ParameterBytes)} as float32; training with {Workers} worker{(Workers == 1 ? "" : "s")} holds about {Bytes(TotalBytes)}";

    private static string Size(long parameters, long bytes) =>
        $"{parameters.ToString("N0", CultureInfo.InvariantCulture)} parameters, {Bytes(bytes)}";

    /// <summary>"1,234,567,890 bytes (1.1 GiB)".</summary>
    private static string Bytes(long bytes) =>
        $"{bytes.ToString("N0", CultureInfo.InvariantCulture)} bytes ({(bytes / (double)(1L << 30)).ToString("0.0", CultureInfo.InvariantCulture)} GiB)";
}
