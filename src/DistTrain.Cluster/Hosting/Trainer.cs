using DistTrain.Cluster.Actors;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Security;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Models;

namespace DistTrain.Cluster.Hosting;

/// <summary>A finished run: the trained model (weights, layers, input standardization, metadata) and its history.</summary>
/// <param name="Model">The trained weights, ready to save (<see cref="TrainedModel.Save"/>), predict with or export.</param>
/// <param name="Result">The run as the parameter server reported it: final weights in the training layout, version, epochs.</param>
public sealed record TrainingOutcome(TrainedModel Model, TrainingResult Result)
{
    /// <summary>One summary per epoch trained (losses, test and validation accuracy, samples/s, seconds).</summary>
    public IReadOnlyList<EpochSummary> History => Result.Epochs;
}

/// <summary>
/// Trains a model from code: the same engine, options and checks as <c>disttrain train</c> and <c>disttrain node</c>, with
/// data from memory or any loader (<see cref="TrainingData"/>), progress through <see cref="IProgress{T}"/> and cancellation
/// through a <see cref="CancellationToken"/>.
/// </summary>
/// <remarks>
/// <para>Single-node mode (<see cref="TrainAsync"/>): one coordinator, one parameter server and Training:Workers worker
/// actors in this process. Cluster mode: every node runs the same program with the same options; the parameter-server
/// node calls <see cref="RunParameterServerAsync"/> (which returns the model) and each worker node
/// <see cref="RunWorkerAsync"/>, or runs <c>disttrain node --role worker</c> with the same settings as a config file.
/// Cluster settings are in <see cref="TrainingOptions.Cluster"/>; the job secret and TLS certificates come from there or
/// from <see cref="Security"/>.</para>
/// <para>Native libraries: matrix products use OpenBLAS and convolutions oneDNN when the operating system has them
/// (Debian's <c>libopenblas0-pthread</c> and <c>libdnnl2</c>); otherwise managed code, much slower.</para>
/// </remarks>
/// <example>
/// <code>
/// var options = new TrainingOptions
/// {
///     Model = new ModelBuilder(features: 64).Dense(32).ReLU().Dense(10).Build(),
///     Training = { Workers = 2, Epochs = 5, BatchSizePerWorker = 32 },
///     Optimizer = { LearningRate = 0.05, Momentum = 0.9 },
/// };
/// var data = TrainingData.FromArrays(trainX, trainY, testX, testY, featureCount: 64, classCount: 10);
/// var outcome = await new Trainer(options).TrainAsync(data, new Progress&lt;TrainingProgress&gt;(p => Console.WriteLine(p)));
/// outcome.Model.Save("model.safetensors");
/// </code>
/// </example>
public sealed class Trainer
{
    /// <summary>Checks the options as a config file's are checked (every problem at once).</summary>
    /// <param name="options">Model, optimizer, training loop, checkpoint and cluster settings. The data section's
    /// Directory is not used; its limits, classes, validation fraction and normalization are applied by
    /// <see cref="TrainingData.Prepare"/> before the data reaches the trainer.</param>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    /// <exception cref="ConfigurationException">A value is out of range, a layer is not valid, or a section or list is
    /// null (<c>Model = null</c>); one line per problem, naming the key.</exception>
    public Trainer(TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = TrainingOptionsValidator.Validate(options, checkDataDirectory: false);
        if (problems.Count > 0) throw new ConfigurationException("Trainer options", problems);
        Options = options;
    }

    /// <summary>The options the trainer runs with.</summary>
    public TrainingOptions Options { get; }

    /// <summary>
    /// Optional observer of every report (steps, per-worker figures, checkpoints), called on actor threads after the
    /// <see cref="IProgress{T}"/>; it must return quickly.
    /// </summary>
    public ITrainingObserver? Observer { get; init; }

    /// <summary>Trains in single-node mode: Training:Workers worker actors and one parameter server in this process.</summary>
    /// <param name="data">Prepared splits (<see cref="TrainingData.Prepare"/>, <see cref="TrainingData.FromArrays"/> or a loader).</param>
    /// <param name="progress">Receives a report when each epoch starts, after every step and when each epoch is evaluated; null for none.</param>
    /// <param name="cancellationToken">Stops the run at the next step; the task then fails with a
    /// <see cref="TrainingCancelledException"/> (an <see cref="OperationCanceledException"/>) holding the weights at that step.
    /// After the last epoch's last step it lets that epoch's evaluation finish, and the task returns the completed run (a
    /// stop during an earlier epoch's evaluation cancels it, also when early stopping would have ended the run there).</param>
    /// <returns>The trained model and the per-epoch history.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="data"/> or one of its splits is null.</exception>
    /// <exception cref="ConfigurationException">The model does not fit the data (input features or number of classes).</exception>
    /// <exception cref="InvalidDataException">Model:Pretrained cannot be read or does not fit the model.</exception>
    /// <exception cref="CheckpointResumeException">Checkpoint:Resume is set and no checkpoint fits.</exception>
    /// <exception cref="Core.Checkpoints.CheckpointDirectoryException">Another running job holds Checkpoint:Directory, or it cannot be created.</exception>
    /// <exception cref="TrainingDivergedException">A loss or gradient became NaN or infinite; it holds the last good weights.</exception>
    /// <exception cref="TrainingStalledException">No progress within Training:StallTimeoutSeconds.</exception>
    /// <exception cref="InvalidOperationException">An actor failed; the message says which and why.</exception>
    public async Task<TrainingOutcome> TrainAsync(TrainingData data, IProgress<TrainingProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        CheckFits(data, startingWeights: false);
        var result = await SingleNodeTrainer.RunAsync(Options, data.Train, data.Test, Observe(progress),
            cancellationToken: cancellationToken, validation: data.Validation).ConfigureAwait(false);
        return Outcome(data, result);
    }

    /// <summary>
    /// The job's identity and this node's TLS certificates for cluster mode, given in code (for example a certificate
    /// from the operating system's store: <c>new ClusterSecurity(new JobIdentity(name, secretBytes), new
    /// ClusterCertificates(certificate, authority))</c>); the identity's name is the job name, and the certificate is checked
    /// as the PEM files are (its private key, the CA's signature, its validity). Null (the default): they are loaded from
    /// <see cref="TrainingOptions.Cluster"/> as <c>disttrain node</c> loads them: the secret from Cluster:SecretFile or
    /// Cluster:Secret, and with Cluster:Tls (the default) the PEM files Cluster:CertificateFile, Cluster:CertificateKeyFile
    /// and Cluster:CertificateAuthorityFile. The caller keeps ownership of an instance given here. Not used in single-node mode.
    /// </summary>
    public ClusterSecurity? Security { get; init; }

    /// <summary>
    /// Runs the parameter-server node of cluster mode until the job ends: checks Cluster:Port is free, binds the data
    /// plane on Cluster:DataPort (workers learn it when they register), joins the Akka.Cluster at
    /// Cluster:Hostname/Port with Cluster:SeedNodes, waits for Cluster:MinWorkers worker nodes
    /// (<see cref="RunWorkerAsync"/> or <c>disttrain node --role worker</c>, with the same job, model and data settings)
    /// and trains. A second parameter-server node started the same way is a standby that takes over from the newest
    /// checkpoint if this one dies. Every node needs the same job name and secret, and with Cluster:Tls a certificate
    /// signed by the cluster's CA (<see cref="Security"/>).
    /// </summary>
    /// <param name="data">Prepared splits; the parameter server uses their sizes, the workers their own copies.</param>
    /// <param name="progress">Receives the reports as in <see cref="TrainAsync"/>; null for none.</param>
    /// <param name="cancellationToken">Leaves the cluster and stops; the task then fails with <see cref="OperationCanceledException"/>,
    /// unless the last epoch's training had ended: its evaluation then finishes and the task returns the finished job.</param>
    /// <returns>The trained model and the per-epoch history.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="data"/> or one of its splits is null.</exception>
    /// <exception cref="ConfigurationException">The model does not fit the data, Cluster:Port equals Cluster:DataPort, Cluster:ShardNodes
    /// is set with a Training:Mode other than Sync, or the job secret or a certificate is missing or not valid (the message names the
    /// key, or <see cref="Security"/>, and the fix).</exception>
    /// <exception cref="PortInUseException">Cluster:Port or Cluster:DataPort is taken (also when another process takes
    /// Cluster:Port in the moment between the check and Akka.Remote's bind).</exception>
    /// <exception cref="UnresolvableHostException">Cluster:Hostname does not resolve to an address.</exception>
    /// <exception cref="AddressNotLocalException">Cluster:Hostname resolves, but not to an address of this machine.</exception>
    /// <exception cref="InvalidDataException">Model:Pretrained cannot be read or does not fit the model.</exception>
    /// <exception cref="JobFinishedOnAnotherNodeException">This node stood by until the job ended on another parameter-server node.</exception>
    /// <exception cref="NodeRefusedException">This node's TLS handshake failed (the peers' certificates are of another CA, or its
    /// seed is no DistTrain node's Cluster:Port), or the active parameter server refused this node as its standby (another job,
    /// version or settings).</exception>
    /// <exception cref="DistTrain.Core.Checkpoints.UnreadableFileException">Model:Pretrained may not be read by this process.</exception>
    /// <exception cref="TrainingDivergedException">A loss or gradient became NaN or infinite.</exception>
    /// <exception cref="InvalidOperationException">The job failed or this node was downed; the message says why.</exception>
    public async Task<TrainingOutcome> RunParameterServerAsync(TrainingData data, IProgress<TrainingProgress>? progress = null,
        CancellationToken cancellationToken = default)
    {
        CheckFits(data, startingWeights: true);
        if (TrainingOptionsValidator.NodePortProblems(Options, parameterServer: true, metricsEndpoint: false)
                .Concat(TrainingOptionsValidator.ParameterServerNodeProblems(Options)).ToList() is { Count: > 0 } ports)
            throw new ConfigurationException("Trainer options", ports);
        using var owned = Security is null ? ClusterSecurity.Load(Options.Cluster) : null;
        var security = Checked(Security) ?? owned!;
        PortProbe.EnsureFree("Cluster:Port", Options.Cluster.Hostname, Options.Cluster.Port);
        using var listener = DataPlaneListener.Start(Options.Cluster.Hostname, Options.Cluster.DataPort, security.Certificates);
        var result = await ClusterNode.RunParameterServerAsync(Options, security, listener, data, Observe(progress), cancellationToken).ConfigureAwait(false);
        return Outcome(data, result);
    }

    /// <summary>
    /// Runs a worker node of cluster mode until the parameter server reports the end of the job: joins the cluster through
    /// Cluster:SeedNodes, registers with the parameter server (same job, protocol version and model, else refused) and
    /// computes gradients on its shards of <paramref name="data"/>. Security as in <see cref="RunParameterServerAsync"/>.
    /// </summary>
    /// <param name="data">Prepared splits, the same samples in the same order as on every other node.</param>
    /// <param name="cancellationToken">Leaves the cluster and stops; the task then fails with <see cref="OperationCanceledException"/>.</param>
    /// <returns>The end of the job as the parameter server reported it; the weights are on the parameter-server node. A
    /// parameter-server node stopped with nothing to continue the job (no other parameter-server node, no Checkpoint:Directory)
    /// reports it <see cref="JobFinished.Cancelled"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="data"/> or one of its splits is null.</exception>
    /// <exception cref="ConfigurationException">The model does not fit the data, the job secret or a certificate is missing or not valid, or the
    /// first of Cluster:SeedNodes is this node's own address (<see cref="TrainingOptionsValidator.WorkerSeedProblems"/>).</exception>
    /// <exception cref="PortInUseException">Cluster:Port is taken (0, any free port, never is), also when another process
    /// takes it in the moment between the check and Akka.Remote's bind.</exception>
    /// <exception cref="UnresolvableHostException">Cluster:Hostname does not resolve to an address.</exception>
    /// <exception cref="AddressNotLocalException">Cluster:Hostname resolves, but not to an address of this machine.</exception>
    /// <exception cref="NodeRefusedException">The job host refused the node (another job, model or version), or the TLS handshake failed.</exception>
    /// <exception cref="InvalidOperationException">The node's worker failed or the node lost the cluster.</exception>
    /// <exception cref="TimeoutException">No parameter server accepted the node within Cluster:JoinTimeoutSeconds.</exception>
    public async Task<JobFinished> RunWorkerAsync(TrainingData data, CancellationToken cancellationToken = default)
    {
        CheckFits(data, startingWeights: false);
        using var owned = Security is null ? ClusterSecurity.Load(Options.Cluster) : null;
        PortProbe.EnsureFree("Cluster:Port", Options.Cluster.Hostname, Options.Cluster.Port);
        return await ClusterNode.RunWorkerAsync(Options, Checked(Security) ?? owned!, data, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The check <see cref="ClusterCertificates.Load"/> makes on certificate files, made on certificates given in code: a
    /// node whose own certificate its peers would refuse stops here instead of failing every connection later.
    /// </summary>
    private static ClusterSecurity? Checked(ClusterSecurity? security)
    {
        if (security?.Certificates is not { } certificates) return security;
        if (!certificates.Certificate.HasPrivateKey)
            throw new ConfigurationException("Trainer.Security", ["the node certificate has no private key: give an X509Certificate2 with its key (X509Certificate2.CreateFromPemFile(certificate, key))."]);
        if (certificates.Refusal(certificates.Certificate) is { } refusal)
            throw new ConfigurationException("Trainer.Security", [$"the node certificate '{certificates.Certificate.Subject}' would be refused by the other nodes: {refusal}."]);
        return security;
    }

    private ITrainingObserver Observe(IProgress<TrainingProgress>? progress) =>
        new ProgressObserver(progress, Options.Training.Epochs, Observer ?? NullTrainingObserver.Instance);

    /// <summary>What the CLI's node command checks before starting, so a misfit fails here and not inside an actor.</summary>
    private void CheckFits(TrainingData data, bool startingWeights)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (data.Train is null || data.Test is null || data.Normalizer is null)
            throw new ArgumentNullException(nameof(data), $"data.{(data.Train is null ? "Train" : data.Test is null ? "Test" : "Normalizer")} is null: give " +
                "TrainingData from TrainingData.FromArrays, TrainingData.Prepare or TrainingData.Load, which set every split.");
        ModelFactory.CheckFitsData(Options.Model, data);
        Sequential model;
        try
        {
            model = ModelFactory.Build(Options.Model);
        }
        catch (ArgumentException e)
        {
            throw new ConfigurationException("Trainer options", [e.Message]);
        }
        if (startingWeights) ModelFactory.StartingWeights(model, Options.Model, Options.Training.Seed);
    }

    private TrainingOutcome Outcome(TrainingData data, TrainingResult result)
    {
        var metadata = ModelMetadata.Create(Options.Model, data.Normalizer, DataMetadata.Of(data, Options.Data), result.Version,
            result.FinalEpoch.Epoch, result.FinalEpoch.TestAccuracy, Options.Training.Seed); // with early stopping, the kept epoch
        if (result.FinalEpoch.Epoch != result.Epochs[^1].Epoch)
            metadata[ModelMetadata.EpochsTrained] = result.Epochs[^1].Epoch.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return new TrainingOutcome(new TrainedModel(Options.Model, result.FinalWeights, data.Normalizer, metadata), result);
    }
}
