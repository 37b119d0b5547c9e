using DistTrain.Cluster.Actors;
using DistTrain.Core;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Hosting;

/// <summary>Resuming cannot start: no usable checkpoint, or the config no longer fits it. The message says what to do.</summary>
public sealed class CheckpointResumeException(string message) : Exception(message);

/// <summary>
/// How a run takes its settings, so that resume messages name the ones the user can change there: <c>disttrain train</c>
/// and <c>finetune</c> have <c>--resume</c> and <c>--epochs</c>; a cluster node (<c>disttrain node</c>, <c>cluster.sh</c>)
/// has neither and takes Checkpoint:Resume and Training:Epochs from its config or DISTTRAIN_* variables.
/// </summary>
public enum ResumeSettings
{
    /// <summary>The train and finetune commands (and the library's <see cref="Trainer"/>): <c>--resume</c> and <c>--epochs</c>.</summary>
    CommandLine,

    /// <summary>A cluster node: Checkpoint:Resume (DISTTRAIN_Checkpoint__Resume) and Training:Epochs (DISTTRAIN_Training__Epochs).</summary>
    ClusterNode,
}

/// <summary>Chooses the checkpoint a resumed run starts from (Checkpoint:Resume, <c>disttrain train --resume</c>).</summary>
public static class CheckpointResume
{
    /// <summary>"Drop --resume (Checkpoint:Resume) to start a new run.", or a cluster node's way to turn the resume off.</summary>
    private static string StartNewRun(ResumeSettings settings) => settings == ResumeSettings.ClusterNode
        ? "Set Checkpoint:Resume to false (DISTTRAIN_Checkpoint__Resume=false) to start a new run."
        : "Drop --resume (Checkpoint:Resume) to start a new run.";

    /// <summary>"without --resume (Checkpoint:Resume)", or a cluster node's way to say it.</summary>
    private static string WithoutResume(ResumeSettings settings) => settings == ResumeSettings.ClusterNode
        ? "with Checkpoint:Resume = false (DISTTRAIN_Checkpoint__Resume=false)"
        : "without --resume (Checkpoint:Resume)";

    /// <summary>"Training:Epochs (--epochs)", or a cluster node's variable for it.</summary>
    private static string EpochsSetting(ResumeSettings settings) => settings == ResumeSettings.ClusterNode
        ? "Training:Epochs (DISTTRAIN_Training__Epochs)"
        : "Training:Epochs (--epochs)";

    /// <summary>
    /// The newest checkpoint in Checkpoint:Directory that verifies against <paramref name="layout"/> and fits the
    /// options. Every newer checkpoint that does not verify (truncated, checksum mismatch, another model) is reported
    /// through <paramref name="log"/> with its path and reason, then skipped for the previous one.
    /// </summary>
    /// <param name="options">Validated options with a checkpoint directory.</param>
    /// <param name="layout">The model's layout.</param>
    /// <param name="log">Receives one line per skipped checkpoint and one for the chosen one.</param>
    /// <param name="matchWorkers">Require Training:Workers to equal the checkpoint's worker count (single-node mode). Cluster
    /// mode passes false: there the job host waits for as many worker nodes as the checkpoint's epoch was planned for (up to
    /// Cluster:ResumeWaitSeconds, then goes on with fewer).</param>
    /// <param name="jobId">Only checkpoints of this job (a takeover's); null or empty accepts any.</param>
    /// <param name="trainSamples">The run's training samples (after limits, class filter and validation split); 0 skips that check.</param>
    /// <param name="trainDigest">The training samples' <see cref="Core.Data.LabeledDataset.ContentDigest"/>; empty skips that check,
    /// as does a checkpoint written before checkpoints recorded it.</param>
    /// <exception cref="CheckpointResumeException">The directory holds no checkpoint, none is valid, the chosen one was
    /// written with other training samples (<paramref name="trainDigest"/>: a changed label or image, or another file),
    /// another Training:Seed, Workers (when <paramref name="matchWorkers"/>), BatchSizePerWorker × AccumulationSteps,
    /// number of training samples (<paramref name="trainSamples"/>; the data order would differ) or Mode, holds the state of another optimizer (Optimizer:Kind, or momentum turned on or
    /// off), was built with another optimizer hyperparameter that its state depends on (see
    /// <see cref="Core.Optimization.OptimizerOptions.StateHyperparameters"/>), or it is past the end of Training:Epochs. The
    /// checkpoint written when the last epoch's training ended (epoch Training:Epochs + 1, round 0) is accepted: the run then
    /// trains nothing, evaluates those weights as the last epoch's and writes the model (<see cref="CoordinatorSettings.ResumedVersion"/>),
    /// which is how a run whose final save failed, or whose parameter server died before it, gets its model.</exception>
    /// <param name="settings">How the run takes its settings, for the messages: <see cref="ResumeSettings.ClusterNode"/> names
    /// Checkpoint:Resume and DISTTRAIN_* variables instead of the train command's <c>--resume</c> and <c>--epochs</c>.</param>
    public static TrainingCheckpoint Find(TrainingOptions options, ParameterLayout layout, Action<string> log, bool matchWorkers = true, string? jobId = null,
        int trainSamples = 0, string trainDigest = "", ResumeSettings settings = ResumeSettings.CommandLine) =>
        Search(options, layout, log, matchWorkers, jobId, trainSamples, trainDigest, required: true, settings)!;

    /// <summary>
    /// The checkpoint a standby parameter server that takes over job <paramref name="jobId"/> resumes from: as
    /// <see cref="Find"/> (without the Training:Workers check), except that no Checkpoint:Directory, or no valid
    /// checkpoint of that job in it, is not an error: it says through <paramref name="log"/> that the job restarts from
    /// epoch 1, and returns null. The checkpoint written when the last epoch's training ended is accepted: the coordinator
    /// then only evaluates it (<see cref="CoordinatorSettings.ResumedVersion"/>).
    /// </summary>
    /// <param name="options">Validated options.</param>
    /// <param name="layout">The model's layout.</param>
    /// <param name="log">Receives one line per skipped checkpoint, and one for the chosen one or for the restart.</param>
    /// <param name="jobId">The job the workers were in; null or empty accepts any job's checkpoints.</param>
    /// <param name="trainSamples">As <see cref="Find"/>.</param>
    /// <param name="trainDigest">As <see cref="Find"/>.</param>
    /// <exception cref="CheckpointResumeException">The chosen checkpoint does not fit the config (seed, minibatch, training samples, optimizer state, epochs).</exception>
    public static TrainingCheckpoint? FindForTakeover(TrainingOptions options, ParameterLayout layout, Action<string> log, string? jobId, int trainSamples = 0,
        string trainDigest = "") =>
        Search(options, layout, log, matchWorkers: false, jobId, trainSamples, trainDigest, required: false, ResumeSettings.ClusterNode);

    private static TrainingCheckpoint? Search(TrainingOptions options, ParameterLayout layout, Action<string> log, bool matchWorkers, string? jobId,
        int trainSamples, string trainDigest, bool required, ResumeSettings settings)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(log);
        var directory = options.Checkpoint.Directory;
        if (!options.Checkpoint.Enabled)
        {
            if (required)
                throw new CheckpointResumeException("Resuming needs Checkpoint:Directory: set it to the folder the interrupted run wrote its checkpoints to.");
            log("Checkpoint:Directory is not set, so this takeover restarts the job from epoch 1. Set it to a folder shared by the parameter-server nodes.");
            return null;
        }
        var store = new CheckpointStore(directory, options.Checkpoint.Keep);
        // A user's resume continues the run written last (of this model): a folder reused by several runs holds other runs'
        // checkpoints, perhaps of higher versions, which are skipped. A takeover names its job instead, or accepts any.
        var lastRun = required && string.IsNullOrEmpty(jobId) ? store.LastWrittenJobId(layout) : "";
        var search = store.FindNewestValid(layout, lastRun.Length > 0 ? lastRun : jobId);
        if (lastRun.Length > 0 && search.Checkpoint is null)
            search = store.FindNewestValid(layout, jobId); // none of that run's verifies: the newest valid of any run, as before run ids
        foreach (var skipped in search.Skipped)
            log($"Skipping checkpoint {skipped.Path}: {skipped.Reason}");
        if (search.Checkpoint is not { } checkpoint)
        {
            if (required)
                throw new CheckpointResumeException(search.Skipped.Count == 0
                    ? $"No checkpoint to resume from in {Path.GetFullPath(directory)}{OtherSafetensors(directory)}. {StartNewRun(settings)}"
                    : $"None of the {search.Skipped.Count} checkpoints in {Path.GetFullPath(directory)} is valid (see above). {StartNewRun(settings)}");
            log($"No valid checkpoint in {Path.GetFullPath(directory)}, so this takeover restarts the job from epoch 1. Is Checkpoint:Directory shared by the parameter-server nodes?");
            return null;
        }
        var loop = options.Training;
        var problems = new List<string>();
        if (checkpoint.ShardSeed != loop.Seed) problems.Add($"Training:Seed = {loop.Seed}, the checkpoint's is {checkpoint.ShardSeed}");
        if (matchWorkers && checkpoint.Workers != loop.Workers) problems.Add($"Training:Workers = {loop.Workers}, the checkpoint's is {checkpoint.Workers}");
        if (checkpoint.BatchSizePerWorker != loop.MinibatchPerWorker)
            problems.Add(loop.AccumulationSteps == 1
                ? $"Training:BatchSizePerWorker = {loop.BatchSizePerWorker}, the checkpoint's is {checkpoint.BatchSizePerWorker}"
                : $"Training:BatchSizePerWorker × Training:AccumulationSteps = {loop.MinibatchPerWorker}, the checkpoint's minibatch per worker is {checkpoint.BatchSizePerWorker}");
        if (checkpoint.Mode != loop.Mode) problems.Add($"Training:Mode = {loop.Mode}, the checkpoint's is {checkpoint.Mode}");
        var otherCount = trainSamples > 0 && checkpoint.TrainSamples > 0 && checkpoint.TrainSamples != trainSamples;
        // Other counts are named as such, below; Checkpoint:CheckTrainingData = false accepts other samples.
        problems.AddRange(DataChanges(checkpoint, options, otherCount || !options.Checkpoint.CheckTrainingData ? "" : trainDigest));
        if (otherCount)
            problems.Add($"the data gives {trainSamples:N0} training samples (after Data:TrainLimit, Data:Classes and the validation split), the checkpoint's run had {checkpoint.TrainSamples:N0}");
        if (problems.Count > 0 && problems.All(p => p.StartsWith("Model:", StringComparison.Ordinal)))
            throw new CheckpointResumeException($"Checkpoint {search.Path} does not fit the config: {string.Join("; ", problems)}. " +
                "The checkpoint's weights were trained in its run's layers and loss, so resume with the checkpoint's values; to train other " +
                "layers from its weights, fine-tune its run's model instead (disttrain finetune, or Model:Pretrained).");
        if (problems.Count > 0)
            throw new CheckpointResumeException($"Checkpoint {search.Path} does not fit the config: {string.Join("; ", problems)}. " +
                "They fix the data order, the samples and what the checkpoint's position means, so resume with the checkpoint's values" +
                (problems.Any(p => p.StartsWith(TrainDigestKey, StringComparison.Ordinal))
                    ? " and the data files its run read. To train on other data, start a new run, or fine-tune the checkpoint's model (disttrain finetune); " +
                      "to go on with data changed on purpose, set Checkpoint:CheckTrainingData to false."
                    : "."));
        CheckShardShuffle(checkpoint, search.Path!, log);
        CheckOptimizer(checkpoint, search.Path!, options, layout);
        var changes = checkpoint.HyperparameterChanges(options.ParameterServerOptimizer());
        if (changes.Count > 0)
            throw new CheckpointResumeException($"Checkpoint {search.Path} does not fit the config: {string.Join("; ", changes)}. " +
                $"Its {checkpoint.OptimizerKind} state was built with the checkpoint's values, so resume with them, or start a new run " +
                $"{WithoutResume(settings)}. The learning rate, its schedule, L1, L2 and clipping may change on resume.");
        if (trainSamples > 0 && checkpoint.TrainSamples == 0)
            log($"Checkpoint {search.Path} does not record its run's number of training samples (written by an earlier version); resume with the same Data settings, as it cannot be checked.");
        if (checkpoint.OptimizerHyperparameters is null)
            log($"Checkpoint {search.Path} does not record the optimizer settings its state was built with (written by an earlier version); they cannot be checked.");
        var trained = checkpoint.Epoch == loop.Epochs + 1 && checkpoint.Round == 0; // every epoch trained: evaluated, not refused
        if (checkpoint.Epoch > loop.Epochs && !trained)
            throw new CheckpointResumeException($"Checkpoint {search.Path} has completed {AllEpochs(checkpoint.Epoch - 1)} and Training:Epochs = {loop.Epochs}. " +
                $"Raise {EpochsSetting(settings)} to train further.");
        if (!trained && CosineSpanChange(checkpoint, options, settings) is { } spanChange) log(spanChange); // a finished run's checkpoint trains no step
        if (!trained && UpdateChanges(checkpoint, search.Path!, options) is { } updateChanges) log(updateChanges);
        if (!trained && WorkerStateRestarts(options) is { } restarts) log(restarts);
        log(trained
            ? $"Resuming from checkpoint {search.Path}: weights version {checkpoint.Version}, {AllEpochs(loop.Epochs)} trained; epoch {loop.Epochs} is evaluated and the model written, then the run ends (raise Training:Epochs to train further)"
            : $"Resuming from checkpoint {search.Path}: weights version {checkpoint.Version}, epoch {checkpoint.Epoch} round {checkpoint.Round}");
        return checkpoint;
    }

    /// <summary>
    /// A checkpoint written by a build that shuffles each epoch's shards otherwise (<see cref="TrainingCheckpoint.ShardShuffle"/>,
    /// another DistTrain version or .NET runtime): within an epoch it is refused, since the rest of its epoch would be cut
    /// from another order, training some samples twice and others never; at an epoch's end the next epochs are planned anew,
    /// so it resumes, with a line that the run will not repeat an uninterrupted one sample for sample.
    /// </summary>
    /// <exception cref="CheckpointResumeException">Within an epoch, with another shuffle.</exception>
    private static void CheckShardShuffle(TrainingCheckpoint checkpoint, string path, Action<string> log)
    {
        var here = Core.Data.ShardPlanner.ReferenceDigest;
        if (checkpoint.ShardShuffle.Length == 0 || checkpoint.ShardShuffle == here) return;
        var differs = $"Checkpoint {path} was written by a build that shuffles each epoch's shards otherwise (ShardShuffle {checkpoint.ShardShuffle}, " +
            $"this build's {here}: another DistTrain version or .NET runtime)";
        if (checkpoint.Round > 0)
            throw new CheckpointResumeException($"{differs}, and it was written within epoch {checkpoint.Epoch} (round {checkpoint.Round}), whose " +
                "rest would be cut from another order: some samples trained twice, others never. Resume with the DistTrain version and .NET " +
                "runtime that wrote it, or move the checkpoints written within an epoch (names ending in -r and a round other than 000000) " +
                "out of the folder, so that the newest left is at an epoch's end.");
        log($"{differs}. It was written at an epoch's end, so it resumes, and the next epochs use this build's order: every sample " +
            "is still trained once per epoch, but the run will not repeat an uninterrupted one sample for sample.");
    }

    /// <summary>
    /// With Cluster:Compression and error feedback, the warning that each worker's residual (and, with momentum correction,
    /// its velocity) is not in the checkpoint and starts again from zero, so the resumed run does not continue exactly as an
    /// uninterrupted one (docs/reliability.md, "What a resume restores"). Null without such worker state.
    /// </summary>
    internal static string? WorkerStateRestarts(TrainingOptions options)
    {
        var cluster = options.Cluster;
        if (cluster.Compression == Core.Compression.GradientCompression.None || !cluster.ErrorFeedback) return null;
        var state = options.UsesMomentumCorrection
            ? "error-feedback residual and momentum (Cluster:MomentumCorrection) live"
            : "error-feedback residual lives";
        return $"Cluster:Compression {cluster.Compression}: each worker's {state} in the worker only, not in the checkpoint, and start" +
            (options.UsesMomentumCorrection ? "" : "s") + " again from zero, so the run does not go on exactly as it would have without the interruption " +
            "(docs/reliability.md, \"What a resume restores\").";
    }

    /// <summary>"all 2 epochs", "the 1 epoch": every epoch of a run.</summary>
    private static string AllEpochs(int epochs) => epochs == 1 ? "the 1 epoch" : $"all {Counts.Of(epochs, "epoch")}";

    /// <summary>
    /// For Optimizer:Schedule Cosine, which anneals over Training:Epochs, a resume with another count than the
    /// checkpoint's run: the warning that the learning rate now follows another curve from the checkpoint's epoch on, with
    /// the rate there under both (at the epoch's start, before warmup and worker scaling); null when nothing changes or
    /// the checkpoint does not record its count. PyTorch keeps the old curve here, since <c>CosineAnnealingLR</c>'s state
    /// holds its <c>T_max</c>; a resume that raises Training:Epochs usually wants the new one, so this warns and goes on.
    /// </summary>
    internal static string? CosineSpanChange(TrainingCheckpoint checkpoint, TrainingOptions options, ResumeSettings settings = ResumeSettings.CommandLine)
    {
        var epochs = options.Training.Epochs;
        if (options.Optimizer.Schedule.Kind != LearningRateScheduleKind.Cosine || checkpoint.RunEpochs <= 0 || checkpoint.RunEpochs == epochs)
            return null;
        var schedule = new LearningRateSchedule(new LearningRateScheduleOptions
        {
            Kind = LearningRateScheduleKind.Cosine, MinLearningRate = options.Optimizer.Schedule.MinLearningRate,
        });
        var epoch = Math.Min(checkpoint.Epoch, epochs); // a finished run's checkpoint sits at Training:Epochs + 1
        var position = new SchedulePosition(0, epoch - 1, 0, 1);
        var rate = options.Optimizer.LearningRate;
        string Format(double value) => value.ToString("G4", System.Globalization.CultureInfo.InvariantCulture);
        var scaled = options.Optimizer.ScaleLearningRateByWorkers && options.Training.Mode != TrainingMode.Async ? " × the workers" : "";
        return $"Optimizer:Schedule Cosine anneals over Training:Epochs, and the checkpoint's run had {Counts.Of(checkpoint.RunEpochs, "epoch")} where this one has {epochs}: " +
            $"from the checkpoint's position on, the learning rate follows the {epochs}-epoch curve ({Format(schedule.At(position, epochs, rate))}{scaled} at the start of epoch {epoch}, " +
            $"where the checkpoint's run had {Format(schedule.At(position, checkpoint.RunEpochs, rate))}{scaled}" +
            (checkpoint.Epoch > checkpoint.RunEpochs
                ? ", the end of its curve). Training on from a finished run starts the new curve part-way, as a new schedule would."
                : settings == ResumeSettings.ClusterNode
                    ? $"). To keep the checkpoint's curve, resume with Training:Epochs = {checkpoint.RunEpochs} (DISTTRAIN_Training__Epochs={checkpoint.RunEpochs})."
                    : $"). To keep the checkpoint's curve, resume with --epochs {checkpoint.RunEpochs} (Training:Epochs).");
    }

    /// <summary>
    /// Refuses, before training, a checkpoint whose optimizer state the configured optimizer cannot take (another
    /// Optimizer:Kind, or other state buffers), by restoring it into a scratch optimizer as the parameter server will.
    /// </summary>
    /// <exception cref="CheckpointResumeException">The optimizer does not fit the checkpoint.</exception>
    private static void CheckOptimizer(TrainingCheckpoint checkpoint, string path, TrainingOptions options, ParameterLayout layout)
    {
        var optimizer = Optimizer.Create(options.ParameterServerOptimizer(), layout.TrainableLength,
            ParameterGroups.Ranges(layout, layout.TrainableLength, options.Optimizer.DecayBiasAndNormParameters));
        try
        {
            checkpoint.RestoreOptimizer(optimizer);
        }
        catch (InvalidDataException e)
        {
            throw new CheckpointResumeException($"Checkpoint {path} does not fit the config: {e.Message}{MomentumCorrectionHint(checkpoint, options)}");
        }
    }

    /// <summary>
    /// For a momentum SGD config whose checkpoint's state does not fit: the likely cause when Optimizer:Momentum itself did
    /// not change, Cluster:MomentumCorrection (the workers hold the momentum, the parameter server keeps no buffer), and
    /// its fix; empty otherwise.
    /// </summary>
    private static string MomentumCorrectionHint(TrainingCheckpoint checkpoint, TrainingOptions options)
    {
        if (checkpoint.OptimizerKind != OptimizerKind.Sgd || options.Optimizer.Kind != OptimizerKind.Sgd || options.Optimizer.Momentum == 0) return "";
        return options.UsesMomentumCorrection
            ? " With Cluster:Compression TopK, Cluster:ErrorFeedback and Cluster:MomentumCorrection the workers apply Optimizer:Momentum and the parameter "
              + "server keeps no momentum buffer, but this checkpoint's run kept one: to continue it, set Cluster:MomentumCorrection to false."
            : " This checkpoint's parameter server kept no momentum buffer, as with Cluster:MomentumCorrection (Cluster:Compression TopK with error "
              + "feedback), where the workers apply the momentum: resume with that run's Cluster:Compression, Cluster:ErrorFeedback and Cluster:MomentumCorrection.";
    }

    /// <summary>
    /// The data settings a checkpoint records and a resume must keep (<see cref="TrainingCheckpoint.DataSettings"/>), as
    /// canonical JSON: Data:Format, Normalization, Classes, TrainLimit and ValidationFraction, and TestFraction and
    /// TestSplitSeed when the test split is held out of the training file (CSV or image folders without a test file).
    /// Each changes what a sample index means or the values the network was trained on (a resume with Data:Normalization
    /// None on a Global-normalized run trained on silently, its loss jumping from 0.56 to 0.92). Paths are left out, so a
    /// run may resume with its data in another folder; augmentation is left out, as a setting a resume may change.
    /// </summary>
    /// <param name="options">Validated options.</param>
    /// <param name="trainDigest">The training samples' <see cref="Core.Data.LabeledDataset.ContentDigest"/>, recorded under
    /// <see cref="TrainDigestKey"/> so that a resume on other data is refused (a changed label or inverted images resumed
    /// without a word before); empty records none.</param>
    public static string DataSettingsOf(TrainingOptions options, string trainDigest = "")
    {
        ArgumentNullException.ThrowIfNull(options);
        var data = options.Data;
        var settings = new Dictionary<string, object>
        {
            ["Data:Format"] = data.Format.ToString(),
            ["Data:Normalization"] = data.Normalization.ToString(),
            ["Data:Classes"] = data.Classes,
            ["Data:TrainLimit"] = data.TrainLimit,
            ["Data:ValidationFraction"] = data.ValidationFraction,
        };
        // The test split is drawn from the training file only without a test file or folder (DataSources.For).
        var heldOut = data.Format switch
        {
            DataFormat.Csv => data.Csv.TestFile.Length == 0,
            DataFormat.ImageFolder => data.ImageFolder.TestDirectory.Length == 0,
            _ => false,
        };
        if (heldOut)
        {
            settings["Data:TestFraction"] = data.TestFraction;
            settings["Data:TestSplitSeed"] = data.TestSplitSeed;
        }
        if (trainDigest.Length > 0) settings[TrainDigestKey] = trainDigest;
        return System.Text.Json.JsonSerializer.Serialize(settings);
    }

    /// <summary>
    /// The network settings a checkpoint records and a resume must keep (<see cref="TrainingCheckpoint.ModelSettings"/>), as
    /// canonical JSON: the number of layers, each layer as configured (Model:Layers:i), and Model:Loss. The weights' shapes
    /// are checked anyway (<c>model_fingerprint</c>); these catch what does not change them: an activation, a dropout rate,
    /// a layer's epsilon (a resume with Sigmoid for ReLU trained on silently, and its checkpoint then scored 74.01% in the
    /// ReLU config where the run had reported 76.13%).
    /// </summary>
    /// <param name="options">Validated options.</param>
    public static string ModelSettingsOf(TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var model = options.Model;
        var settings = new Dictionary<string, object>
        {
            ["Model:Layers (count)"] = model.Layers.Count,
            ["Model:Loss"] = model.Loss.ToLowerInvariant(), // names are matched ignoring case
        };
        for (var i = 0; i < model.Layers.Count; i++)
            settings[$"Model:Layers:{i}"] = System.Text.Json.JsonSerializer.Serialize(model.Layers[i]).ToLowerInvariant();
        return System.Text.Json.JsonSerializer.Serialize(settings);
    }

    /// <summary>
    /// The update settings a checkpoint records and a resume may change (<see cref="TrainingCheckpoint.UpdateSettings"/>), as
    /// canonical JSON: Optimizer:LearningRate, L1, L2, GradientClipNorm, Nesterov, DecayBiasAndNormParameters,
    /// ScaleLearningRateByWorkers (outside Async, which does not use it), Optimizer:Schedule:Kind and WarmupSteps, and the
    /// schedule settings its kind and warmup use. A resume that changes any of them is told which (<see cref="UpdateChanges"/>),
    /// since the run then goes on differently from the checkpoint's (a resume with another learning rate went on without a
    /// word before). Settings that one side does not use are not compared.
    /// </summary>
    /// <param name="options">Validated options.</param>
    public static string UpdateSettingsOf(TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var optimizer = options.Optimizer;
        var settings = new Dictionary<string, object>
        {
            ["Optimizer:LearningRate"] = optimizer.LearningRate,
            ["Optimizer:L1"] = optimizer.L1,
            ["Optimizer:L2"] = optimizer.L2,
            ["Optimizer:GradientClipNorm"] = optimizer.GradientClipNorm,
            ["Optimizer:Nesterov"] = optimizer.Nesterov,
            ["Optimizer:DecayBiasAndNormParameters"] = optimizer.DecayBiasAndNormParameters,
        };
        if (options.Training.Mode != TrainingMode.Async) settings["Optimizer:ScaleLearningRateByWorkers"] = optimizer.ScaleLearningRateByWorkers;
        var schedule = optimizer.Schedule;
        settings["Optimizer:Schedule:Kind"] = schedule.Kind.ToString();
        if (schedule.Kind == LearningRateScheduleKind.Step) settings["Optimizer:Schedule:StepEpochs"] = schedule.StepEpochs;
        if (schedule.Kind is LearningRateScheduleKind.Step or LearningRateScheduleKind.Exponential) settings["Optimizer:Schedule:Gamma"] = schedule.Gamma;
        if (schedule.Kind == LearningRateScheduleKind.Cosine) settings["Optimizer:Schedule:MinLearningRate"] = schedule.MinLearningRate;
        settings["Optimizer:Schedule:WarmupSteps"] = schedule.WarmupSteps;
        if (schedule.WarmupSteps > 0) settings["Optimizer:Schedule:WarmupStartFactor"] = schedule.WarmupStartFactor;
        return System.Text.Json.JsonSerializer.Serialize(settings);
    }

    /// <summary>
    /// The notice for a resume whose update settings differ from those <paramref name="checkpoint"/>'s run recorded: which
    /// changed, from what to what; null when none did or the checkpoint records none.
    /// </summary>
    /// <param name="checkpoint">The checkpoint resumed from.</param>
    /// <param name="path">Its file, named in the notice.</param>
    /// <param name="options">The resumed run's options.</param>
    internal static string? UpdateChanges(TrainingCheckpoint checkpoint, string path, TrainingOptions options)
    {
        var changes = Changes(checkpoint.UpdateSettings, UpdateSettingsOf(options)).ToList();
        return changes.Count == 0 ? null
            : $"Checkpoint {path} was written by a run with other update settings: {string.Join("; ", changes)}. A resume may change them: " +
              "this run goes on from the checkpoint's position with its own. To go on as the checkpoint's run did, resume with its values.";
    }

    /// <summary>The name under which <see cref="DataSettingsOf"/> records the training samples' digest, as a refusal shows it.</summary>
    public const string TrainDigestKey = "the training samples (SHA-256 of their labels and values)";

    /// <summary>The data settings in which <paramref name="checkpoint"/>'s run differs from <paramref name="options"/>, as
    /// "Key = this value, the checkpoint's is that value"; empty when they agree or the checkpoint records none.</summary>
    private static IEnumerable<string> DataChanges(TrainingCheckpoint checkpoint, TrainingOptions options, string trainDigest) =>
        Changes(checkpoint.DataSettings, DataSettingsOf(options, trainDigest)).Concat(Changes(checkpoint.ModelSettings, ModelSettingsOf(options)));

    /// <summary>The keys of <paramref name="currentSettings"/> whose values differ in <paramref name="recordedSettings"/>, as
    /// "Key = this value, the checkpoint's is that value"; none when nothing was recorded.</summary>
    private static IEnumerable<string> Changes(string recordedSettings, string currentSettings)
    {
        if (recordedSettings.Length == 0) yield break;
        Dictionary<string, System.Text.Json.JsonElement>? recorded;
        try
        {
            recorded = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, System.Text.Json.JsonElement>>(recordedSettings);
        }
        catch (System.Text.Json.JsonException)
        {
            yield break; // not written by this version: left unchecked, like a checkpoint without the entry
        }
        var current = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, System.Text.Json.JsonElement>>(currentSettings)!;
        foreach (var (key, value) in current)
            if (recorded is not null && recorded.TryGetValue(key, out var theirs) && theirs.GetRawText() != value.GetRawText())
            {
                // A layer is recorded whole, as JSON: name the settings of it that changed, not both objects.
                var settings = LayerSettings(value) is { } ours && LayerSettings(theirs) is { } recordedLayer
                    ? ours.Where(s => recordedLayer.TryGetValue(s.Key, out var other) && other.GetRawText() != s.Value.GetRawText())
                        .Select(s => $"{key}:{LayerKey(s.Key)} = {Shown(s.Value)}, the checkpoint's is {Shown(recordedLayer[s.Key])}").ToList()
                    : [];
                // No setting both record differs (one records a setting the other lacks, from another version): the whole layer.
                if (settings.Count == 0) settings.Add($"{key} = {Shown(value)}, the checkpoint's is {Shown(theirs)}");
                foreach (var change in settings) yield return change;
            }
    }

    /// <summary>A layer's settings from <see cref="ModelSettingsOf"/>'s JSON string; null for any other value.</summary>
    private static Dictionary<string, System.Text.Json.JsonElement>? LayerSettings(System.Text.Json.JsonElement value)
    {
        if (value.ValueKind != System.Text.Json.JsonValueKind.String || value.GetString() is not ['{', ..] json) return null;
        try
        {
            return System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, System.Text.Json.JsonElement>>(json);
        }
        catch (System.Text.Json.JsonException)
        {
            return null;
        }
    }

    /// <summary>A layer setting's configuration key (<c>NegativeSlope</c>) from its lower-cased record.</summary>
    private static string LayerKey(string recorded) =>
        typeof(Core.Models.LayerOptions).GetProperties().FirstOrDefault(p => string.Equals(p.Name, recorded, StringComparison.OrdinalIgnoreCase))?.Name ?? recorded;

    private static string Shown(System.Text.Json.JsonElement value) =>
        value.ValueKind == System.Text.Json.JsonValueKind.String ? value.GetString()! : value.GetRawText();

    /// <summary>
    /// The warning for a new run (no resume) whose Checkpoint:Directory already holds checkpoints: they are another run's,
    /// count toward Checkpoint:Keep, and go as this run writes its own. Null when the folder holds none or is not set.
    /// </summary>
    /// <param name="options">Validated options.</param>
    /// <param name="settings">How the run takes its settings: a cluster node names Checkpoint:Resume instead of <c>--resume</c>.</param>
    public static string? ReusedFolderWarning(TrainingOptions options, ResumeSettings settings = ResumeSettings.CommandLine)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!options.Checkpoint.Enabled || options.Checkpoint.Resume) return null;
        var (later, toContinue) = settings == ResumeSettings.ClusterNode
            ? ("a later resume (Checkpoint:Resume = true, DISTTRAIN_Checkpoint__Resume=true)", "Checkpoint:Resume = true")
            : ("a later --resume", "--resume");
        var existing = new CheckpointStore(options.Checkpoint.Directory, options.Checkpoint.Keep).List().Count;
        return existing == 0 ? null
            : $"Checkpoint:Directory {Path.GetFullPath(options.Checkpoint.Directory)} already holds {Counts.Of(existing, "checkpoint")} of an earlier run. This new run's " +
              $"checkpoints go beside them; the earlier ones count toward Checkpoint:Keep = {options.Checkpoint.Keep} and are removed as this run writes its own, " +
              $"and {later} continues the run written last (a checkpoint at the same step replaces the earlier run's file). Give each run its own " +
              $"folder to keep them, or {toContinue} to continue that run.";
    }

    /// <summary>
    /// The identity a single-node run writes into its checkpoints (<see cref="TrainingCheckpoint.JobId"/>), as a cluster job
    /// does: the resumed checkpoint's, so a resumed run stays one run, or a new one. It tells apart the runs that share a
    /// Checkpoint:Directory, so <see cref="Find"/> resumes the run written last rather than another run's newer version.
    /// </summary>
    /// <param name="resumeFrom">The checkpoint the run resumes from; null for a new run.</param>
    public static string RunIdOf(TrainingCheckpoint? resumeFrom) =>
        resumeFrom is { JobId.Length: > 0 } resumed ? resumed.JobId : Guid.NewGuid().ToString("N")[..12];

    /// <summary>The parameter server's checkpoint settings from the options; null when Checkpoint:Directory is empty.</summary>
    /// <param name="options">Validated options.</param>
    /// <param name="jobId">The job's or single-node run's identity (<see cref="RunIdOf"/>), written into each checkpoint.</param>
    /// <param name="trainSamples">The run's training samples, written into each checkpoint for a resume to check; 0 writes none.</param>
    /// <param name="trainDigest">Their <see cref="Core.Data.LabeledDataset.ContentDigest"/>, written likewise; empty writes none.</param>
    public static CheckpointSettings? Settings(TrainingOptions options, string jobId = "", int trainSamples = 0, string trainDigest = "")
    {
        ArgumentNullException.ThrowIfNull(options);
        var c = options.Checkpoint;
        return c.Enabled
            ? new CheckpointSettings(new CheckpointStore(c.Directory, c.Keep), c.EverySteps, options.Training.Seed, options.Training.MinibatchPerWorker, jobId,
                options.Training.Mode, trainSamples, DataSettingsOf(options, trainDigest), ModelSettingsOf(options), options.Training.Epochs,
                UpdateSettingsOf(options))
            : null;
    }

    /// <summary>
    /// ": it holds N other .safetensors file(s) (NAME, ...), but a resume reads only checkpoints named as training writes them"
    /// when the folder has safetensors files whose names are not checkpoint names (a copy renamed by hand); empty otherwise.
    /// </summary>
    private static string OtherSafetensors(string directory)
    {
        if (!Directory.Exists(directory)) return "";
        var others = Directory.EnumerateFiles(directory, "*.safetensors").Where(path => CheckpointStore.PositionOf(path) is null)
            .Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        return others.Count == 0 ? ""
            : $": it holds {others.Count} other .safetensors file{(others.Count == 1 ? "" : "s")} ({string.Join(", ", others.Take(3))}{(others.Count > 3 ? ", ..." : "")}), " +
              "but a resume reads only checkpoints named as training writes them, checkpoint-v<version>-e<epoch>-r<round>.safetensors";
    }
}
