using Akka.Actor;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Training;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.LinearAlgebra;
using DistTrain.Core.Models;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// Single-node mode: one actor system in this process with one coordinator, one parameter server and
/// <see cref="TrainingLoopOptions.Workers"/> workers. No network is involved.
/// </summary>
public static class SingleNodeTrainer
{
    /// <summary>Trains on the given data and returns the final weights and per-epoch summaries.</summary>
    /// <param name="options">Validated options.</param>
    /// <param name="train">Normalized training split.</param>
    /// <param name="test">Normalized test split.</param>
    /// <param name="observer">Progress sink (null for none).</param>
    /// <param name="verifySerialization">Serialize every message as if it crossed the network (tests).</param>
    /// <param name="planner">Shard planner; null plans even shards seeded by <see cref="TrainingLoopOptions.Seed"/>.</param>
    /// <param name="initialWeights">Version-0 weights; null draws them from the configured initializer and seed.</param>
    /// <param name="cancellationToken">Stops the run at the next step; the task then fails with a <see cref="TrainingCancelledException"/>
    /// that carries the weights at that point. A cancellation after the last epoch's last training step does not cut off
    /// that epoch's evaluation: the run finishes and the task returns its result as without the cancellation.</param>
    /// <param name="validation">Samples held out of training, scored after every epoch (early stopping); null for none.</param>
    /// <param name="resumeFrom">A verified checkpoint to continue from (see <see cref="CheckpointResume.Find"/>); null with
    /// Checkpoint:Resume set finds the newest valid one in Checkpoint:Directory, null without it starts fresh.</param>
    /// <param name="log">Receives the lines about skipped and chosen checkpoints when this method finds one; null drops them.</param>
    /// <param name="checkpointLock">The caller's hold on Checkpoint:Directory, taken before it searched for a checkpoint to
    /// resume from; null: with Checkpoint:Directory set, this method takes it for the run and releases it at the end.</param>
    /// <param name="trainDigest"><paramref name="train"/>'s <see cref="LabeledDataset.ContentDigest"/> when the caller has
    /// computed it already (for its own resume check); null computes it here when checkpoints are on.</param>
    /// <exception cref="CheckpointDirectoryException">Another running job holds Checkpoint:Directory, or it cannot be created (<see cref="CheckpointDirectoryLock"/>).</exception>
    /// <exception cref="CheckpointResumeException">Checkpoint:Resume is set and no checkpoint fits (see <see cref="CheckpointResume.Find"/>).</exception>
    /// <exception cref="ConfigurationException">The model does not fit the data (input size or number of classes).</exception>
    /// <exception cref="ArgumentException"><paramref name="train"/> or <paramref name="test"/> holds no sample.</exception>
    /// <exception cref="TrainingDivergedException">A loss or gradient became NaN or infinite.</exception>
    /// <exception cref="TrainingStalledException">No progress within <see cref="TrainingLoopOptions.StallTimeoutSeconds"/>.</exception>
    /// <exception cref="InvalidOperationException">An actor failed or Akka reported an error; the message says which.</exception>
    public static async Task<TrainingResult> RunAsync(TrainingOptions options, LabeledDataset train, LabeledDataset test,
        ITrainingObserver? observer = null, bool verifySerialization = false, IShardPlanner? planner = null,
        ParameterVector? initialWeights = null, CancellationToken cancellationToken = default, LabeledDataset? validation = null,
        TrainingCheckpoint? resumeFrom = null, Action<string>? log = null, CheckpointDirectoryLock? checkpointLock = null, string? trainDigest = null)
    {
        var loop = options.Training;
        if (train.Count == 0) throw new ArgumentException("The training set is empty: give at least one training sample.", nameof(train));
        if (test.Count == 0)
            throw new ArgumentException("The test set is empty, so no epoch could be scored: give at least one test sample (hold some out of the training data if there is no test set).", nameof(test));
        ModelFactory.CheckFitsData(options.Model, train.FeatureCount, train.ClassCount);
        using var ownLock = checkpointLock is null ? CheckpointDirectoryLock.For(options.Checkpoint) : null;
        // Given the weights, their layout is the model's: no replica is built here only to read it (for a large model, two
        // parameter-sized arrays more).
        var weights = initialWeights ?? ModelFactory.StartingWeights(ModelFactory.Build(options.Model), options.Model, loop.Seed);
        var layout = weights.Layout;
        // What the training samples were, recorded in each checkpoint for a resume to check (a changed label or image).
        trainDigest = options.Checkpoint.Enabled ? trainDigest ?? train.ContentDigest() : "";
        if (resumeFrom is null && options.Checkpoint.Resume)
            resumeFrom = CheckpointResume.Find(options, layout, log ?? (_ => { }), trainSamples: train.Count, trainDigest: trainDigest);
        planner ??= new ShardPlanner(train.Count, loop.Workers, loop.Seed);
        Blas.Configure(options.Compute, loop.Workers);

        var config = AkkaSettings.Serialization(verifySerialization)
            .WithFallback(AkkaSettings.Dispatchers(Math.Min(loop.Workers + 1, Environment.ProcessorCount)))
            .WithFallback(Akka.Configuration.ConfigurationFactory.ParseString($"akka.loggers = [\"{CommandLineLogger.ConfigName}\"]"))
            .WithFallback(AkkaSettings.Logging("WARNING"));
        using var system = ActorSystem.Create("disttrain", config);
        system.EventStream.Subscribe(system.ActorOf(Props.Create(() => new Metrics.DeadLetterCounter()), "dead-letter-counter"), typeof(Akka.Event.DeadLetter));
        var completion = new TaskCompletionSource<TrainingResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        var parameterServer = ParameterServer.Props(weights, options.ParameterServerOptimizer(), loop.Epochs, options.ParameterServerMonitoring(),
            CheckpointResume.Settings(options, CheckpointResume.RunIdOf(resumeFrom), train.Count, trainDigest), resumeFrom, update: UpdateSettings.From(loop), configuredOptimizer: options.Optimizer,
            shards: options.Cluster.ParameterServerShards).WithDispatcher(AkkaSettings.ComputeDispatcher);
        var replica = ReplicaSettings.From(options);
        var workers = Enumerable.Range(0, loop.Workers)
            .Select(i => Worker.Props(i, options.Model, train, test, loop.EvaluationBatchSize, validation, loop.Seed, replica).WithDispatcher(AkkaSettings.ComputeDispatcher))
            .ToArray();
        var settings = new CoordinatorSettings(loop.Epochs, loop.MinibatchPerWorker, planner, test.Count, layout,
            TimeSpan.FromSeconds(loop.StallTimeoutSeconds), validation?.Count ?? 0, loop.EarlyStopping,
            FirstEpoch: resumeFrom?.Epoch ?? 1, FirstRound: resumeFrom?.Round ?? 0, Mode: loop.Mode, ResumedVersion: resumeFrom?.Version ?? 0,
            EarlyStoppingDirectory: options.Checkpoint.Enabled ? options.Checkpoint.Directory : null);
        var coordinator = system.ActorOf(Coordinator.Props(settings, parameterServer, workers, observer ?? NullTrainingObserver.Instance, completion), "coordinator");
        // The coordinator decides: it ends the run as cancelled with the weights between two steps, or, when only the last
        // epoch's evaluation is left, lets the run finish (Coordinator.StopRequested).
        await using (cancellationToken.Register(() => coordinator.Tell(Coordinator.StopRequested.Instance)))
        {
            try
            {
                return await completion.Task.ConfigureAwait(false);
            }
            catch (TrainingCancelledException stopped) when (cancellationToken.IsCancellationRequested)
            {
                throw new TrainingCancelledException(stopped.Weights ?? await WeightsAtStopAsync(system).ConfigureAwait(false), cancellationToken);
            }
            finally
            {
                await system.Terminate().ConfigureAwait(false);
            }
        }
    }

    /// <summary>The parameter server's current weights (it answers between two steps); null if it is gone or silent for 10 s.</summary>
    private static async Task<Protocol.WeightsSnapshot?> WeightsAtStopAsync(ActorSystem system)
    {
        try
        {
            // The coordinator names its parameter-server child "parameter-server".
            var parameterServer = await system.ActorSelection("/user/coordinator/parameter-server").ResolveOne(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
            return await parameterServer.Ask<Protocol.WeightsSnapshot>(Protocol.GetWeights.Instance, TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        }
        catch (Exception e) when (e is ActorNotFoundException or AskTimeoutException or TaskCanceledException)
        {
            return null;
        }
    }
}
