using System.CommandLine;
using System.Globalization;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Metrics;
using DistTrain.Cluster.Training;
using DistTrain.Core;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Initialization;
using DistTrain.Core.LinearAlgebra;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary><c>disttrain train</c>: single-node mode, N workers and one parameter server in this process.</summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var config = CliOptions.File("--config", "JSON config, e.g. configs/fashion-mnist-mlp.json.", CliOptions.ConfigTakes, required: true, "-c");
        var workers = CliOptions.WholeNumber("--workers", "Override Training:Workers (worker replicas).", CliOptions.WorkersTakes, "-w");
        var epochs = CliOptions.WholeNumber("--epochs", "Override Training:Epochs.", CliOptions.EpochsTakes, "-e");
        var data = CliOptions.Text("--data", "DIR", CliOptions.DataHelp, CliOptions.DataTakes);
        var output = CliOptions.Text("--output", "DIR", "Override Output:Directory (runs are written below it).", CliOptions.OutputTakes, "-o");
        var checkpoints = CliOptions.Text("--checkpoint-dir", "DIR", "Override Checkpoint:Directory (where the parameter server writes checkpoints).", "a folder for checkpoints (Checkpoint:Directory)");
        var resume = new Option<bool>("--resume") { Description = "Continue from the newest valid checkpoint in Checkpoint:Directory (sets Checkpoint:Resume)." };

        var command = new Command("train", "Train in single-node mode: N worker actors and one parameter-server actor in this process.")
        {
            config, workers, epochs, data, output, checkpoints, resume,
        };
        var sizes = new RunSizeOptions();
        sizes.AddTo(command);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var overrides = new Dictionary<string, string?>();
            void Set<T>(Option<T> option, string key)
            {
                var value = parse.GetValue(option);
                if (value is not null) overrides[key] = Convert.ToString(value, CultureInfo.InvariantCulture);
            }
            Set(workers, "Training:Workers");
            Set(epochs, "Training:Epochs");
            Set(data, "Data:Directory");
            Set(output, "Output:Directory");
            sizes.Read(parse, overrides);
            Set(checkpoints, "Checkpoint:Directory");
            if (parse.GetValue(resume)) overrides["Checkpoint:Resume"] = "true";
            return await RunAsync(parse.GetValue(config)!.FullName, overrides, cancellationToken);
        });
        return command;
    }

    private static async Task<int> RunAsync(string configPath, Dictionary<string, string?> overrides, CancellationToken cancellationToken) =>
        (await RunJobAsync(configPath, overrides, null, cancellationToken)).Exit;

    /// <summary>
    /// Loads the config (with <paramref name="overrides"/>, then <paramref name="adjust"/> for changes that are not
    /// plain keys), trains in single-node mode and saves the run. Exit codes as <see cref="CliConsole.RunTrainingAsync"/>,
    /// 2 for config, data, checkpoint or output errors and for a run whose estimated memory exceeds what the process may use
    /// (<see cref="TrainingMemory"/>), 1 when the model still runs out of memory while it is built (<see cref="CliConsole.OutOfMemory"/>).
    /// <paramref name="checkData"/>, when given, checks the options against the loaded data before the model's own check
    /// (<see cref="ModelFactory.CheckFitsData(ModelOptions, TrainingData)"/>), so a command can name its own option in a
    /// mismatch it caused (finetune's --replace-head); it throws <see cref="ConfigurationException"/> to refuse.
    /// <paramref name="resumeWith"/> is the command a stopped run's message names to continue from its newest checkpoint.
    /// </summary>
    internal static async Task<(int Exit, TrainingResult? Result, string? RunDirectory)> RunJobAsync(string configPath,
        Dictionary<string, string?> overrides, Action<TrainingOptions>? adjust, CancellationToken cancellationToken,
        Action<TrainingOptions, TrainingData>? checkData = null, string resumeWith = "train --resume")
    {
        TrainingOptions options;
        TrainingData data;
        string runDirectory;
        DistTrain.Core.Tensors.ParameterVector startingWeights;
        TrainingCheckpoint? resumeFrom = null;
        string? trainDigest = null; // computed once (0.1 s for Fashion-MNIST) for the resume's check and the new checkpoints
        CheckpointDirectoryLock? checkpointLock = null;
        var prepared = false; // until then, every way out releases the checkpoint folder
        string? shards = null;
        try
        {
            options = TrainingOptionsLoader.Load(configPath, overrides, CliOptions.OptionOfKey);
            if (adjust is not null)
            {
                adjust(options);
                var problems = TrainingOptionsValidator.Validate(options);
                if (problems.Count > 0) throw new ConfigurationException(configPath, problems);
            }
            data = TrainingData.Load(options);
            checkData?.Invoke(options, data);
            ModelFactory.CheckFitsData(options.Model, data);
            if (!CliConsole.FitsInMemory(options)) return (2, null, null);
            try
            {
                startingWeights = ModelFactory.StartingWeights(ModelFactory.Build(options.Model), options.Model, options.Training.Seed, line => AnsiConsole.WriteLine(line));
            }
            catch (OutOfMemoryException)
            {
                CliConsole.Fail("error", CliConsole.OutOfMemory(options));
                return (1, null, null);
            }
            // Before the search: a second job in the folder is refused before it reads, and before any run folder exists.
            checkpointLock = CheckpointDirectoryLock.For(options.Checkpoint);
            if (options.Checkpoint.Resume)
            {
                trainDigest = data.Train.ContentDigest();
                resumeFrom = CheckpointResume.Find(options, startingWeights.Layout,
                    line =>
                    {
                        if (ResumeLineLabel(line) is { } label) CliConsole.Fail(label, line);
                        else AnsiConsole.WriteLine(line);
                    }, trainSamples: data.Train.Count,
                    trainDigest: trainDigest);
            }
            else if (CheckpointResume.ReusedFolderWarning(options) is { } reused)
                CliConsole.Fail("warning", reused);
            if (resumeFrom is { Epoch: > 1 } && options.Training.EarlyStopping.Patience > 0)
            {
                // What the coordinator will restore from the checkpoint directory: its info lines are not shown in this mode (its
                // warning, when early stopping starts over, is).
                var restored = EarlyStoppingRecord.Restore(options.Checkpoint.Directory, resumeFrom.Epoch, resumeFrom.Round, resumeFrom.Version,
                    options.Training.EarlyStopping.MinDelta, startingWeights.Layout, data.Validation?.Count ?? 0, out _);
                if (restored is not null) AnsiConsole.WriteLine(EarlyStoppingRecord.GoesOn(restored, options.Training.EarlyStopping.Patience));
            }
            if (options.Cluster.ParameterServerShards > 1) // refuses, before training, more shards than the model has slices for
                shards = ShardedParameterServer.Describe(startingWeights.Layout, options.Cluster.ParameterServerShards);
            if (cancellationToken.IsCancellationRequested)
            {
                CliConsole.Fail("cancelled", "stopped before training started; nothing was written.");
                return (130, null, null);
            }
            OutputSettings.Check(options);
            runDirectory = RunDirectory.Create(options.Output.Directory);
            GracefulCancellation.ResumeHint = () => RunOutputs.ResumeHint(options, resumeWith);
            prepared = true;
        }
        catch (Exception e) when (CliConsole.IsInputError(e))
        {
            CliConsole.Fail("error", e.Message);
            return (2, null, null);
        }
        finally
        {
            if (!prepared) checkpointLock?.Dispose();
        }
        using var heldCheckpointDirectory = checkpointLock; // released when the run is saved, or failed
        MetricsExporter? exporter;
        try
        {
            exporter = MetricsSetup.Start(options, "local");
        }
        catch (MetricsPortException e)
        {
            CliConsole.Fail("error", e.Message);
            Directory.Delete(runDirectory); // still empty: nothing ran
            return (2, null, null);
        }
        using var metrics = exporter;
        using var heartbeat = new HealthHeartbeat(options.Output.HealthFile);
        var loop = options.Training;
        CliConsole.Out.WriteLiteralLine("DistTrain", new Style(decoration: Decoration.Bold),
            $" single-node: {loop.Workers} worker{(loop.Workers == 1 ? "" : "s")} x batch {loop.BatchSizePerWorker}{(loop.AccumulationSteps > 1 ? $" x {loop.AccumulationSteps} accumulation steps" : "")}, {loop.Epochs} epoch{(loop.Epochs == 1 ? "" : "s")}, {Counts.Number(data.Train.Count)} training / {Counts.Of(data.Test.Count, "test sample")} from {data.Description}");
        foreach (var line in SettingsLines(options, loop.Workers.ToString(CultureInfo.InvariantCulture), shards, data.Validation?.Count))
            CliConsole.Out.WriteLiteralLine($"{line}");
        if (data.NormalizationNote.Length > 0) CliConsole.Out.WriteLiteralLine($"{data.NormalizationNote}");
        if (data.Labels?.DefaultColumnNote is { } labelColumn) CliConsole.Out.WriteLiteralLine($"{labelColumn}");
        foreach (var warning in RunWarnings(options, data.Train, loop.Workers, data.Labels)) CliConsole.Fail("warning", warning);
        if (ShardNodesUnused(options.Cluster) is { } shardNodes) CliConsole.Fail("warning", shardNodes);
        Blas.Configure(options.Compute, loop.Workers); // as the trainer will, so the line below is true
        AnsiConsole.WriteLine(Blas.Description);
        if (ConvolutionKernels.UsedBy(options.Model)) AnsiConsole.WriteLine(ConvolutionKernels.Description);

        TrainingResult? result = null;
        RunReport? report = null;
        // The actors' vanishing-gradient warnings tell the end-of-run diagnosis what kept a run from learning (RunReport.NotLearning).
        Action<string> warned = warning => report?.ActorWarned(warning);
        CommandLineLogger.WarningLogged += warned;
        int? exit;
        try
        {
            exit = await CliConsole.RunTrainingAsync(async () => result = await ConsoleProgress.RunAsync(loop.Epochs,
                observer => SingleNodeTrainer.RunAsync(options, data.Train, data.Test, MetricsSetup.Wrap(report = new RunReport(observer, runDirectory), options),
                    initialWeights: startingWeights, cancellationToken: cancellationToken, validation: data.Validation, resumeFrom: resumeFrom,
                    checkpointLock: checkpointLock, trainDigest: trainDigest), options.Optimizer.Kind),
                diverged => RunOutputs.KeepDiverged(runDirectory, options, data.Normalizer, DataMetadata.Of(data, options.Data), diverged, report,
                    epochsBefore: resumeFrom is null ? 0 : resumeFrom.Epoch - 1),
                cancelled => RunOutputs.KeepOrRemoveCancelled(runDirectory, options, data.Normalizer, DataMetadata.Of(data, options.Data), cancelled, report, resumeWith),
                model: options,
                onFailed: _ => RunOutputs.KeepAfterFailure(runDirectory, options, data.Normalizer, DataMetadata.Of(data, options.Data), weights: null, report, resumeWith),
                afterInternalError: CliConsole.ResumeAfterInternalError(resumeWith));
        }
        finally
        {
            CommandLineLogger.WarningLogged -= warned;
        }
        if (exit == 1) RunOutputs.RemoveIfEmptyAfterFailure(runDirectory);
        if (exit is not null) return (exit.Value, null, runDirectory);
        if (cancellationToken.IsCancellationRequested) // the coordinator let the last epoch's evaluation finish (Coordinator.StopRequested)
            CliConsole.Out.WriteLiteralLine(
                $"The stop came after the last training step (epoch {result!.Epochs[^1].Epoch}), so that epoch's evaluation was allowed to finish: the run is complete and saved as such.");

        var normalizer = data.Normalizer;
        var description = DataMetadata.Of(data, options.Data);
        var classCount = data.Train.ClassCount;
        data = null!; // the 219 MB of training and test floats are done with: release them before plotting
        RunOutputs.ReleaseMemory();
        var saved = CliConsole.SavedOr1(() => RunOutputs.Save(runDirectory, options, normalizer, description, result!, report, classCount: classCount), 0);
        return (saved, saved == 0 ? result : null, runDirectory);
    }

    /// <summary>
    /// The start-up lines that say how the run trains, as <c>train</c> and the parameter-server node print them: the
    /// training mode (none for Sync), the optimizer and its schedule, the gradient compression, the parameter server's shards,
    /// the initialization, normalization and seed, and any pretrained weights and frozen tensors.
    /// </summary>
    /// <param name="options">The run's options.</param>
    /// <param name="workers">The workers the linear scaling rule multiplies the learning rate by, as shown: a count, or in
    /// cluster mode the words for the workers that join.</param>
    /// <param name="shards">The parameter server's shards as <see cref="ShardedParameterServer.Describe"/> gives them; null for one.</param>
    /// <param name="validationSamples">The samples held out for validation; null when none are.</param>
    internal static IEnumerable<string> SettingsLines(TrainingOptions options, string workers, string? shards, int? validationSamples)
    {
        var loop = options.Training;
        if (DescribeMode(loop) is { } mode) yield return mode;
        var o = options.Optimizer;
        var rule = o.Kind switch
        {
            OptimizerKind.Adam or OptimizerKind.AdamW => $"betas ({o.Beta1}, {o.Beta2}) eps {o.Epsilon}",
            OptimizerKind.RMSProp => $"alpha {o.Alpha} eps {o.Epsilon} momentum {o.Momentum}",
            _ => $"momentum {o.Momentum}{(o.Nesterov ? " Nesterov" : "")}",
        };
        yield return string.Create(CultureInfo.InvariantCulture,
            $"optimizer {o.Kind} lr {o.LearningRate}{(o.ScaleLearningRateByWorkers && loop.Mode != TrainingMode.Async ? $" x {workers} worker{(workers == "1" ? "" : "s")}" : "")} {rule} L1 {o.L1} {(o.Kind == OptimizerKind.AdamW ? "weight decay" : "L2")} {o.L2}{(o.DecayBiasAndNormParameters ? "" : " (not on biases)")}{(o.GradientClipNorm > 0 ? $"; gradient clip norm {o.GradientClipNorm}" : "")}; schedule {LearningRateSchedule.Describe(o.Schedule)}");
        if (options.DescribeCompression() is { } compression) yield return compression;
        if (shards is not null) yield return $"parameter server in {shards}";
        yield return string.Create(CultureInfo.InvariantCulture,
            $"init {DescribeInitializer(options.Model.Initializer)}; normalization {options.Data.Normalization}; seed {loop.Seed}{(validationSamples is { } held ? $"; {held:N0} validation samples held out" : "")}{(options.Data.Augmentation.Enabled ? $"; augmentation: {options.Data.Augmentation}" : "")}");
        if (!string.IsNullOrEmpty(options.Model.Pretrained))
            yield return $"pretrained weights from {options.Model.Pretrained}{(options.Model.ReplaceHead ? " (new head)" : "")}; frozen: {(options.Model.Freeze.Count == 0 ? "nothing" : string.Join(", ", options.Model.Freeze))}";
        else if (options.Model.Freeze.Count > 0)
            yield return options.Checkpoint.Resume
                ? $"frozen: {string.Join(", ", options.Model.Freeze)} (with the weights of the checkpoint resumed from, if one is found)"
                : $"no pretrained weights; frozen at their initial weights: {string.Join(", ", options.Model.Freeze)}";
    }

    /// <summary>
    /// The initializer as the start-up line names it: its kind, with the one setting the kind reads when it differs from its
    /// default (<c>HeNormal, Gain 2</c>, <c>Normal, NormalStd 0.1</c>, <c>Uniform, UniformRange 0.1</c>, <c>Constant, Constant 0.5</c>);
    /// the kind alone otherwise, and for Zeros. Constant's value is always given, 0 (its default) included.
    /// </summary>
    internal static string DescribeInitializer(InitializerOptions init)
    {
        var defaults = new InitializerOptions();
        var set = init.UsedSettings().Select(key => key switch
            {
                nameof(InitializerOptions.Gain) => (Key: key, Value: init.Gain, Default: defaults.Gain),
                nameof(InitializerOptions.NormalStd) => (Key: key, Value: init.NormalStd, Default: defaults.NormalStd),
                nameof(InitializerOptions.UniformRange) => (Key: key, Value: init.UniformRange, Default: defaults.UniformRange),
                _ => (Key: key, Value: init.Constant, Default: defaults.Constant),
            })
            .Where(setting => setting.Value != setting.Default || setting.Key == nameof(InitializerOptions.Constant)) // Constant 0 is named: every weight zero
            .Select(setting => string.Create(CultureInfo.InvariantCulture, $", {setting.Key} {setting.Value}"));
        return $"{init.Kind}{string.Concat(set)}";
    }

    /// <summary>
    /// The label a line of <see cref="CheckpointResume.Find"/> is printed with: none for the "Resuming from checkpoint ..."
    /// line, <c>warning</c> for the others (a checkpoint skipped, one that cannot be checked, a Cosine schedule whose curve
    /// changes with Training:Epochs), as the parameter-server node logs them.
    /// </summary>
    internal static string? ResumeLineLabel(string line) =>
        line.StartsWith("Resuming from checkpoint ", StringComparison.Ordinal) ? null : "warning";

    /// <summary>
    /// A warning when Model:Freeze is set without Model:Pretrained: the frozen tensors then keep the initializer's random
    /// weights for the whole run (a fine-tuning config run without its checkpoint). Null otherwise, and when resuming: the
    /// frozen tensors then come from the checkpoint.
    /// </summary>
    /// <param name="model">The run's model section.</param>
    /// <param name="resuming">Checkpoint:Resume is set.</param>
    internal static string? FrozenWithoutPretrained(ModelOptions model, bool resuming = false) =>
        model.Freeze.Count > 0 && string.IsNullOrEmpty(model.Pretrained) && !resuming
            ? $"Model:Freeze = [{string.Join(", ", model.Freeze)}] without Model:Pretrained: the frozen layers keep their random initial weights " +
              $"({model.Initializer.Kind}) for the whole run, and only the others train. Set Model:Pretrained to the checkpoint (or run folder) to start from, or remove Freeze."
            : null;

    /// <summary>
    /// A warning when Optimizer:L1 or Optimizer:L2 is set but Model:Freeze freezes every tensor they would decay: the weights
    /// of the Dense and Conv2D layers (<see cref="ParameterGroups.Ranges"/>), with Optimizer:DecayBiasAndNormParameters off, so
    /// that the tensors left to train (biases, normalization scales and shifts) are not decayed and the settings do nothing.
    /// Null otherwise: nothing set, a weight that trains, or DecayBiasAndNormParameters on (then every trainable tensor is decayed).
    /// </summary>
    /// <param name="options">The run's options.</param>
    internal static string? NothingToDecay(TrainingOptions options)
    {
        var o = options.Optimizer;
        var model = options.Model;
        if (o.L1 == 0 && o.L2 == 0 || o.DecayBiasAndNormParameters || model.Freeze.Count == 0) return null;
        var weights = model.Layers.Select((layer, i) => (Type: LayerTypes.Canonical(layer.Type), Name: $"{i}.weight"))
            .Where(l => l.Type is LayerTypes.Dense or LayerTypes.Conv2D).Select(l => l.Name).ToList();
        if (weights.Count == 0 || !weights.All(model.IsFrozen)) return null;
        var set = new[] { ("L1", o.L1), ("L2", o.L2) }.Where(s => s.Item2 != 0)
            .Select(s => string.Create(CultureInfo.InvariantCulture, $"Optimizer:{s.Item1} = {s.Item2}")).ToList();
        return $"{string.Join(" and ", set)} {(set.Count == 1 ? "is" : "are")} not used: Model:Freeze freezes every weight {(set.Count == 1 ? "it" : "they")} would decay " +
            $"({string.Join(", ", weights)}), and the tensors left to train (biases, normalization scales and shifts) are not decayed with " +
            "Optimizer:DecayBiasAndNormParameters false. Set DecayBiasAndNormParameters to true to decay them, leave a weight out of Freeze, or remove " +
            $"{string.Join(" and ", set.Select(s => s.Split(" = ")[0]["Optimizer:".Length..]))}.";
    }

    /// <summary>
    /// A warning when Model:Initializer gives every weight of a layer the same value (Zeros, Constant) and the network has
    /// hidden layers (two or more Dense or Conv2D layers): the units of a hidden layer then compute the same output and get
    /// the same gradient, so they stay identical for the whole run and the symmetry is never broken (Goodfellow et al., Deep
    /// Learning, section 8.4). A single layer (softmax regression) learns from zeros as well as from random weights, and
    /// nothing is said. Null otherwise, with Model:Pretrained (the weights come from the file; a replaced head is one layer)
    /// and when resuming (they come from the checkpoint).
    /// </summary>
    /// <param name="model">The run's model section.</param>
    /// <param name="resuming">Checkpoint:Resume is set.</param>
    internal static string? SymmetricInitializer(ModelOptions model, bool resuming = false)
    {
        if (model.Initializer.Kind is not (InitializerKind.Zeros or InitializerKind.Constant) || !string.IsNullOrEmpty(model.Pretrained) || resuming)
            return null;
        var weighted = model.Layers.Count(l => string.Equals(l.Type, LayerTypes.Dense, StringComparison.OrdinalIgnoreCase)
                                               || string.Equals(l.Type, LayerTypes.Conv2D, StringComparison.OrdinalIgnoreCase));
        if (weighted < 2) return null;
        var dropout = model.Layers.Any(l => string.Equals(l.Type, LayerTypes.Dropout, StringComparison.OrdinalIgnoreCase));
        return $"Model:Initializer:Kind = {DescribeInitializer(model.Initializer)} gives every weight of a layer the same value: the units of " +
               $"{(weighted == 2 ? "the hidden layer" : $"each of the {weighted - 1} hidden layers")} then compute the same output and get the same gradient, so " +
               (dropout
                   ? "they start identical and only Dropout's random masks set them apart, slowly and by chance. "
                   : "they stay identical for the whole run (the symmetry is never broken) and the network learns no more than one unit per layer could. ") +
               "Set Model:Initializer:Kind to HeNormal (the default) for ReLU, or XavierUniform for Tanh and Sigmoid.";
    }

    /// <summary>
    /// The start-up line on Training:Mode and its own settings, such as <c>mode BoundedStaleness, StalenessBound 5</c> or
    /// <c>mode LocalSgd, LocalSteps 4</c>; null for Sync, the default.
    /// </summary>
    internal static string? DescribeMode(TrainingLoopOptions loop)
    {
        var aware = loop.StalenessAwareLearningRate ? ", StalenessAwareLearningRate" : "";
        return loop.Mode switch
        {
            TrainingMode.Sync => null,
            TrainingMode.Async => $"mode Async{aware}",
            TrainingMode.BoundedStaleness => string.Create(CultureInfo.InvariantCulture, $"mode BoundedStaleness, StalenessBound {loop.StalenessBound}{aware}"),
            TrainingMode.LocalSgd => string.Create(CultureInfo.InvariantCulture, $"mode LocalSgd, LocalSteps {loop.LocalSteps}"),
            _ => $"mode {loop.Mode}",
        };
    }

    /// <summary>
    /// Settings and data that train without an error but not as meant: a warmup as long as the run (<see cref="WarmupOutlastsRun"/>),
    /// a patience as long as the run (<see cref="PatienceOutlastsRun"/>), a Step schedule that never decays in the run
    /// (<see cref="StepScheduleNeverDecays"/>), an accumulation that makes each epoch one step (<see cref="AccumulationCoversShard"/>),
    /// local SGD steps that outlast the epoch (<see cref="LocalStepsOutlastEpoch"/>), accumulation with BatchNorm
    /// (<see cref="AccumulationWithBatchNorm"/>), settings the optimizer's kind, the schedule's kind, the training mode or the gradient
    /// compression does not use (<see cref="TrainingOptions.UnusedSettings"/>), momentum correction left off by Optimizer:Nesterov
    /// (<see cref="TrainingOptions.MomentumCorrectionOff"/>), layer settings the layer's type does not use and a
    /// Dropout without a Rate (<see cref="TrainingOptionsValidator.LayerWarnings"/>), Model:Freeze without Model:Pretrained
    /// (<see cref="FrozenWithoutPretrained"/>), L1 or L2 with every weight they would decay frozen (<see cref="NothingToDecay"/>), an initializer that gives every weight of a layer the same value in a network
    /// with hidden layers (<see cref="SymmetricInitializer"/>), classes without a training sample, images
    /// in the image folders that are skipped because their format is not read (<see cref="ImageFolderDataset.UnreadImages"/>), raw
    /// IDX files ignored for the <c>.gz</c> files beside them (<see cref="FashionMnist.IgnoredRawFilesNotice"/>).
    /// </summary>
    /// <param name="options">The run's options.</param>
    /// <param name="train">The training split, after Data:TrainLimit, Data:Classes and the validation split.</param>
    /// <param name="workers">The workers that share each epoch; null for Training:Workers (in cluster mode, give
    /// Cluster:MinWorkers, those the job starts with).</param>
    /// <param name="labels">What the CSV training file's label column held, with its header's warning; null for other data.</param>
    internal static IEnumerable<string> RunWarnings(TrainingOptions options, LabeledDataset train, int? workers = null, LabelSummary? labels = null)
    {
        if (labels?.HeaderWarning is { } header) yield return header;
        if (WarmupOutlastsRun(options, train.Count, workers ?? options.Training.Workers) is { } warmup) yield return warmup;
        if (PatienceOutlastsRun(options.Training) is { } patience) yield return patience;
        if (StepScheduleNeverDecays(options) is { } neverDecays) yield return neverDecays;
        if (AccumulationCoversShard(options, train.Count, workers ?? options.Training.Workers) is { } accumulation) yield return accumulation;
        if (WorkersOutnumberSamples(train.Count, workers ?? options.Training.Workers) is { } idle) yield return idle;
        if (MinibatchCoversShard(options, train.Count, workers ?? options.Training.Workers) is { } wholeEpoch) yield return wholeEpoch;
        if (LocalStepsOutlastEpoch(options, train.Count, workers ?? options.Training.Workers) is { } localSteps) yield return localSteps;
        if (BatchNormWithOneSample(options, train.Count, workers ?? options.Training.Workers) is { } oneSample) yield return oneSample;
        if (AccumulationWithBatchNorm(options) is { } accumulatedBatchNorm) yield return accumulatedBatchNorm;
        foreach (var unused in options.UnusedSettings()) yield return unused;
        if (options.MomentumCorrectionOff() is { } correctionOff) yield return correctionOff;
        foreach (var layer in TrainingOptionsValidator.LayerWarnings(options.Model)) yield return layer;
        if (FrozenWithoutPretrained(options.Model, options.Checkpoint.Resume) is { } frozen) yield return frozen;
        if (NothingToDecay(options) is { } nothingToDecay) yield return nothingToDecay;
        if (SymmetricInitializer(options.Model, options.Checkpoint.Resume) is { } symmetric) yield return symmetric;
        var counts = new int[train.ClassCount];
        foreach (var label in train.Labels) counts[label]++;
        var empty = Enumerable.Range(0, counts.Length).Where(c => counts[c] == 0).ToList();
        if (empty.Count > 0)
        {
            var named = empty.Take(8).Select(c => train.ClassNames is { } names ? $"'{names[c]}'" : c.ToString(CultureInfo.InvariantCulture));
            // Only class 0 empty looks like labels written from 1; a small subset that misses other classes too does not.
            var oneBased = empty is [0] && train.ClassNames is null
                ? " Labels that start at 1 leave class 0 empty: write them from 0 (subtract 1), as class indices are 0-based."
                : "";
            yield return $"{empty.Count} of the {counts.Length} classes ha{(empty.Count == 1 ? "s" : "ve")} no training sample (class{(empty.Count == 1 ? "" : "es")} " +
                $"{string.Join(", ", named)}{(empty.Count > 8 ? ", ..." : "")}): the model keeps an output for each, which training only pushes down.{oneBased}";
        }
        if (options.Data.Format == DataFormat.Idx && FashionMnist.IgnoredRawFilesNotice(options.Data.Directory) is { } ignored) yield return ignored;
        if (options.Data.Format == DataFormat.ImageFolder)
            foreach (var folder in new[] { options.Data.ImageFolder.TrainDirectory, options.Data.ImageFolder.TestDirectory }.Where(f => f.Length > 0))
                if (SkippedImages(folder) is { } skipped) yield return skipped;
    }

    /// <summary>
    /// A warning for single-node <c>disttrain train</c> with Cluster:ShardNodes = true: shard nodes are separate processes of a
    /// cluster, and this run has none, so its Cluster:ParameterServerShards shards (if more than 1) run in this process. Null
    /// when ShardNodes is false. Not for the parameter-server node, which places its shards on shard nodes.
    /// </summary>
    internal static string? ShardNodesUnused(ClusterOptions cluster) =>
        !cluster.ShardNodes ? null
        : "Cluster:ShardNodes = true is not used by single-node disttrain train, which has no shard nodes: " +
          (cluster.ParameterServerShards > 1 ? $"its {cluster.ParameterServerShards} parameter-server shards run in this process. " : "its parameter server runs in this process. ") +
          "Shard nodes serve a cluster (deploy/local/cluster.sh starts them, or disttrain node --role parameter-shard); remove ShardNodes for this run.";

    /// <summary>
    /// Training:AccumulationSteps above 1 in a model with BatchNorm: each micro-batch is normalized with its own batch statistics,
    /// so the accumulated push is not the gradient of one minibatch of AccumulationSteps × BatchSizePerWorker, as it is in a model
    /// without batch statistics (within rounding). PyTorch's gradient accumulation behaves the same. Null without either.
    /// </summary>
    internal static string? AccumulationWithBatchNorm(TrainingOptions options)
    {
        var loop = options.Training;
        if (loop.AccumulationSteps <= 1) return null;
        var layers = options.Model.Layers.Select((layer, i) => (layer, i))
            .Where(l => string.Equals(l.layer.Type, LayerTypes.BatchNorm, StringComparison.OrdinalIgnoreCase)).Select(l => $"Model:Layers:{l.i}").ToList();
        if (layers.Count == 0) return null;
        return string.Create(CultureInfo.InvariantCulture, $"Training:AccumulationSteps = {loop.AccumulationSteps} with BatchNorm ({string.Join(", ", layers)}): " +
            $"each micro-batch of Training:BatchSizePerWorker = {loop.BatchSizePerWorker} samples is normalized with its own batch statistics, so a push " +
            $"is not the gradient of one minibatch of {loop.MinibatchPerWorker} samples, as it is without BatchNorm (PyTorch's accumulation behaves the " +
            $"same), and its weights differ from such a run's. For one minibatch of {loop.MinibatchPerWorker}, set BatchSizePerWorker to " +
            $"{loop.MinibatchPerWorker} and AccumulationSteps to 1, memory permitting, or use LayerNorm, which normalizes each sample on its own.");
    }

    /// <summary>
    /// A warning when a BatchNorm layer with one value per channel and sample (on flat features after a Dense layer, or on
    /// 1x1 feature maps) gets minibatches of one sample: every one (Training:BatchSizePerWorker = 1), or the last of a shard.
    /// One value has no batch variance, so such a minibatch is normalized with the running statistics, which it does not
    /// update (PyTorch raises there instead); with every minibatch of one sample the layer never learns its statistics.
    /// After a convolution whose maps keep more than one position, those positions give the statistics, and nothing is
    /// said. More workers than samples leave some shards empty and the others of one sample, so this is warned of beside
    /// <see cref="WorkersOutnumberSamples"/>. The fix named is the nearest Training:BatchSizePerWorker that leaves no shard
    /// a one-sample minibatch, else the most workers below <paramref name="workers"/> that do. Null otherwise.
    /// </summary>
    /// <param name="options">Validated options.</param>
    /// <param name="trainSamples">Training samples per epoch.</param>
    /// <param name="workers">Workers the epoch's samples are split among, in shards that differ by at most one (empty ones
    /// when there are more workers than samples).</param>
    internal static string? BatchNormWithOneSample(TrainingOptions options, int trainSamples, int workers)
    {
        var batch = options.Training.BatchSizePerWorker;
        if (!options.Model.Layers.Any(l => string.Equals(l.Type, LayerTypes.BatchNorm, StringComparison.OrdinalIgnoreCase))) return null;
        var oneValue = ModelFactory.Build(options.Model).Layers.OfType<Core.Layers.BatchNorm>().Where(b => b.Input.Positions == 1).ToList();
        if (oneValue.Count == 0) return null;
        var where = oneValue.All(b => b.Input.IsFlat) ? "on flat features (after a Dense layer)"
            : oneValue.All(b => !b.Input.IsFlat) ? "on 1x1 feature maps (one value per channel)"
            : "on flat features (after a Dense layer) or 1x1 feature maps";
        var effect = $"a minibatch of one sample has no batch statistics, so BatchNorm {where} normalizes it with its running statistics and does not update them (PyTorch raises an error there)";
        if (batch == 1)
            return $"Training:BatchSizePerWorker = 1: {effect}; with every minibatch of one sample they never change from their starting values. Use 2 or more samples per worker, or LayerNorm.";
        if (workers < 1 || trainSamples < 1) return null;
        // The shard sizes of `count` workers: all equal, or two sizes one apart (0 and 1 when there are more workers than samples).
        int[] Shards(int count) => trainSamples % count == 0 ? [trainSamples / count] : [trainSamples / count, trainSamples / count + 1];
        var shards = Shards(workers);
        if (shards.FirstOrDefault(s => s % batch == 1) is not (var shard and > 0)) return null;
        // The nearest batch sizes that leave no shard a one-sample minibatch, below and above; when none does (a shard of
        // one sample has one whatever the batch size), the most workers, fewer than now, whose shards leave none.
        var fits = new[] { -1, 1 }.Select(direction => Enumerable.Range(1, batch).Select(d => batch + direction * d)
            .FirstOrDefault(b => b >= 2 && shards.All(s => s % b != 1))).Where(b => b > 0).Distinct().ToList();
        var fewerWorkers = fits.Count > 0 ? 0 : Enumerable.Range(1, workers - 1).Reverse().FirstOrDefault(w => Shards(w).All(s => s % batch != 1));
        var fix = fits.Count > 0 ? $" Training:BatchSizePerWorker = {string.Join(" or ", fits)} avoids it."
            : fewerWorkers > 0 ? string.Create(CultureInfo.InvariantCulture, $" {Counts.Of(fewerWorkers, "worker")} (Training:Workers; in cluster mode, worker nodes) avoid{(fewerWorkers == 1 ? "s" : "")} it, or use LayerNorm.")
            : " Use LayerNorm, or more training data.";
        return string.Create(CultureInfo.InvariantCulture, $"{Counts.Of(trainSamples, "training sample")} over {Counts.Of(workers, "worker")} give{(trainSamples == 1 ? "s" : "")} a shard of {shard:N0}, whose last minibatch of Training:BatchSizePerWorker = {batch} holds one sample: {effect}, for that step of each epoch.") + fix;
    }

    /// <summary>
    /// A warning when Training:EarlyStopping:Patience is at least Training:Epochs: the run has fewer epochs after its first
    /// than the patience waits for, so early stopping cannot end it early. Null otherwise, and when early stopping is off.
    /// </summary>
    internal static string? PatienceOutlastsRun(TrainingLoopOptions loop)
    {
        var patience = loop.EarlyStopping.Patience;
        return patience > 0 && patience >= loop.Epochs
            ? string.Create(CultureInfo.InvariantCulture, $"Training:EarlyStopping:Patience = {patience} is not less than Training:Epochs = {loop.Epochs}: the earliest early stop comes after epoch {patience + 1}, so it cannot end this run early. Lower Patience, or train longer.")
            : null;
    }

    /// <summary>
    /// A warning when Optimizer:Schedule:Kind is Step and Optimizer:Schedule:StepEpochs is at least Training:Epochs: the rate
    /// of epoch e (from 0) is the base rate times γ^⌊e / StepEpochs⌋, as <c>torch.optim.lr_scheduler.StepLR</c> stepped per
    /// epoch, so the run's last epoch (Epochs − 1) still has the base rate. Null otherwise. A one-epoch run gets its own
    /// message: no StepEpochs (at least 1) decays within it, so the way out is more epochs or Cosine, the one schedule that
    /// changes the rate step by step (Exponential, like Step, changes it only at an epoch's start).
    /// </summary>
    internal static string? StepScheduleNeverDecays(TrainingOptions options)
    {
        var schedule = options.Optimizer.Schedule;
        var epochs = options.Training.Epochs;
        if (schedule.Kind != LearningRateScheduleKind.Step || schedule.StepEpochs < epochs) return null;
        if (epochs == 1)
            return string.Create(CultureInfo.InvariantCulture, $"Optimizer:Schedule:Kind = Step cannot decay within a single epoch (Training:Epochs = 1): it changes the rate only at the start of an epoch, the first time at the start of epoch {schedule.StepEpochs + 1}, so the run keeps Optimizer:LearningRate throughout. Train for more epochs than StepEpochs, or set Kind to Cosine, which decays step by step within the epoch (Exponential, like Step, changes the rate only from one epoch to the next).");
        return string.Create(CultureInfo.InvariantCulture, $"Optimizer:Schedule:StepEpochs = {schedule.StepEpochs} is not less than Training:Epochs = {epochs}: the first decay by Gamma would come at the start of epoch {schedule.StepEpochs + 1}, so the Step schedule keeps Optimizer:LearningRate for the whole run. Lower StepEpochs (such as {Math.Max(1, epochs / 3)}), or train longer.");
    }

    /// <summary>
    /// A warning when Training:AccumulationSteps above 1 makes each worker's minibatch (BatchSizePerWorker × AccumulationSteps)
    /// at least its shard of the epoch (⌈samples / workers⌉): every epoch is then one step (in Async one push per worker), the
    /// accumulation ends with the shard and its count above the shard's micro-batches does nothing. The fix names half the
    /// shard's micro-batches rounded up (⌈m / 2⌉; 1, no accumulation, for 2), the fewest that make 2 steps per epoch, with the
    /// minibatch that gives: rounded down, an odd count made 3 steps, the last of a few samples. Null otherwise.
    /// </summary>
    /// <param name="options">The run's options.</param>
    /// <param name="trainSamples">Training samples per epoch.</param>
    /// <param name="workers">The workers that share each epoch (in cluster mode, Cluster:MinWorkers: more workers make smaller
    /// shards, so the warning never errs towards a false alarm).</param>
    internal static string? AccumulationCoversShard(TrainingOptions options, int trainSamples, int workers)
    {
        var loop = options.Training;
        if (loop.AccumulationSteps <= 1 || workers < 1 || trainSamples < 1) return null;
        if (EpochPlanSettings.StepsPerEpoch(trainSamples, workers, loop.MinibatchPerWorker) > 1) return null;
        var shard = (trainSamples + workers - 1) / workers;
        var microBatches = (shard + loop.BatchSizePerWorker - 1) / loop.BatchSizePerWorker;
        var epoch = OneStepEpochs(loop, workers);
        // Half the shard's micro-batches, rounded up, is the fewest that make 2 steps: the shard holds more than m − 1 of them and
        // at most m, so minibatches of ⌈m / 2⌉ micro-batches split it in 2 (for m of 2, no accumulation, 1). Rounded down, 3
        // micro-batches gave 1 and 3 steps, the last a third of the others.
        var fewer = (microBatches + 1) / 2;
        var steps = fewer < 1 ? 0 : EpochPlanSettings.StepsPerEpoch(trainSamples, workers, loop.BatchSizePerWorker * fewer);
        var fix = microBatches < 2
            ? FormattableString.Invariant($"Set AccumulationSteps to 1 (one micro-batch already holds the shard), and lower Training:BatchSizePerWorker below {shard:N0} for more than one step per epoch.")
            : fewer == 1
                ? FormattableString.Invariant($"Set AccumulationSteps to 1 (no accumulation: minibatches of {loop.BatchSizePerWorker:N0} samples) for {steps:N0} steps per epoch.")
                : FormattableString.Invariant($"Lower AccumulationSteps to {fewer:N0} (minibatches of {loop.BatchSizePerWorker * fewer:N0} samples) for {steps:N0} steps per epoch, or lower still for more.");
        var minibatch = FormattableString.Invariant(
            $"Training:AccumulationSteps = {loop.AccumulationSteps:N0} makes each worker's minibatch {loop.MinibatchPerWorker:N0} samples (Training:BatchSizePerWorker {loop.BatchSizePerWorker:N0} × {loop.AccumulationSteps:N0})");
        var shards = FormattableString.Invariant(
            $"a worker's shard of the epoch has {(workers == 1 || trainSamples % workers == 0 ? "" : "at most ")}{shard:N0} samples ({microBatches:N0} micro-batch{(microBatches == 1 ? "" : "es")})");
        return $"{minibatch}, but {shards}: {epoch}. {fix}";
    }

    /// <summary>What a run whose every epoch is one round takes, for the warnings that find it so.</summary>
    private static string OneStepEpochs(TrainingLoopOptions loop, int workers) => loop.Mode == TrainingMode.Async
        ? FormattableString.Invariant($"each worker pushes once per epoch, its whole shard, so the run takes {Counts.Of((long)workers * loop.Epochs, "step")}")
        : FormattableString.Invariant($"every epoch is a single step over the whole training set, so the run takes {loop.Epochs:N0} step{(loop.Epochs == 1 ? "" : "s")}");

    /// <summary>
    /// A warning when there are more workers than training samples: each sample belongs to one worker's shard, so
    /// <c>workers − samples</c> workers get an empty shard and compute nothing in any epoch (they still take part in
    /// evaluation). Null otherwise.
    /// </summary>
    /// <param name="trainSamples">Training samples per epoch.</param>
    /// <param name="workers">The workers that share each epoch (in cluster mode, Cluster:MinWorkers).</param>
    internal static string? WorkersOutnumberSamples(int trainSamples, int workers)
    {
        if (trainSamples < 1 || workers <= trainSamples) return null;
        var idle = workers - trainSamples;
        return $"{Counts.Of(workers, "worker")} share {Counts.Of(trainSamples, "training sample")}: " +
            $"{(idle == 1 ? "1 of them gets no sample and computes" : $"{Counts.Number(idle)} of them get no sample and compute")} nothing in any epoch. Use at most {Counts.Of(trainSamples, "worker")} (Training:Workers; in cluster mode, fewer worker nodes), or more training data.";
    }

    /// <summary>
    /// A warning when, without accumulation and with more than one worker, each worker's minibatch (Training:BatchSizePerWorker)
    /// is at least its shard of the epoch (⌈samples / workers⌉) and the shard is more than one sample: every epoch is then one
    /// step (in Async one push per worker) whose minibatches are the workers' whole shards (smaller than configured where a
    /// shard is smaller than the minibatch; as configured where it is the same size), split over workers that each compute on
    /// a few samples. The fix it gives, a minibatch of half the shard rounded up (⌈shard / 2⌉), cuts the shard into 2 even
    /// steps per epoch, and names the two minibatches (rounded down, a shard of 15 was told 7, which cuts it into 7, 7 and 1:
    /// 3 steps, the last a runt). Null otherwise: one worker with a minibatch of the whole set is full-batch gradient descent, chosen as
    /// such (the scikit-learn configs do); a shard of one sample, which no minibatch splits, takes at least as many workers as
    /// samples (more workers than samples is <see cref="WorkersOutnumberSamples"/>'s case, which gives fewer workers or more
    /// data as the fix); the accumulation's own case is <see cref="AccumulationCoversShard"/>.
    /// </summary>
    /// <param name="options">The run's options.</param>
    /// <param name="trainSamples">Training samples per epoch.</param>
    /// <param name="workers">The workers that share each epoch (in cluster mode, Cluster:MinWorkers: more workers make smaller
    /// shards, so the warning never errs towards a false alarm).</param>
    internal static string? MinibatchCoversShard(TrainingOptions options, int trainSamples, int workers)
    {
        var loop = options.Training;
        if (loop.AccumulationSteps > 1 || workers < 2 || trainSamples < 1 || LocalStepsOutlastEpoch(options, trainSamples, workers) is not null) return null;
        var shard = (trainSamples + workers - 1) / workers;
        if (shard < 2 || EpochPlanSettings.StepsPerEpoch(trainSamples, workers, loop.BatchSizePerWorker) > 1) return null;
        var epoch = OneStepEpochs(loop, workers);
        var shardText = FormattableString.Invariant(
            $"Training:BatchSizePerWorker = {loop.BatchSizePerWorker:N0} is at least a worker's shard of the epoch ({(trainSamples % workers == 0 ? "" : "at most ")}{shard:N0} of the {trainSamples:N0} training samples, over {workers:N0} workers)");
        // Half the shard rounded up is the smallest minibatch that makes 2 steps, so they are even (shard ≥ 2, so it is below
        // the shard and at least 1); the largest shard is cut into it and the rest, the smaller shards into it and one sample fewer.
        var half = (shard + 1) / 2;
        var smaller = FormattableString.Invariant($"Set BatchSizePerWorker to {half:N0} for 2 steps per epoch (") +
            (shard % 2 == 0 ? $"minibatches of {Counts.Of(half, "sample")}" : FormattableString.Invariant($"minibatches of {half:N0} and {Counts.Of(shard - half, "sample")}")) +
            (trainSamples % workers == 0 ? ")" : " in the largest shard)") + (half > 1 ? ", or lower for more steps" : "");
        // Each minibatch is a worker's whole shard: smaller than configured only where the shard is smaller than the minibatch.
        // Shards are even (⌊samples / workers⌋ or one more), so with a minibatch of exactly the larger shard, only the workers
        // of the smaller shards get one sample fewer, and none when the samples divide evenly.
        var smallShards = trainSamples % workers == 0 ? workers : workers - trainSamples % workers;
        var minibatches = loop.BatchSizePerWorker > shard ? "each minibatch a worker's whole shard, smaller than configured"
            : smallShards == workers ? "each minibatch a worker's whole shard, as configured"
            : FormattableString.Invariant($"each minibatch a worker's whole shard: {shard:N0} samples as configured, or {shard - 1:N0} on {smallShards:N0} of the {workers:N0} workers");
        return $"{shardText}: {epoch}, {minibatches}. {smaller}, or use fewer workers (Training:Workers; in cluster mode, fewer worker nodes; 1 for full-batch gradient descent).";
    }

    /// <summary>
    /// A warning when Training:Mode is LocalSgd and Training:LocalSteps is more than an epoch's steps (a worker's shard in
    /// minibatches of BatchSizePerWorker × AccumulationSteps, as <see cref="EpochPlanSettings.StepsPerEpoch"/>): a worker's
    /// local steps end with its shard, so the models are averaged only at each epoch's end. Null otherwise.
    /// </summary>
    /// <param name="options">The run's options.</param>
    /// <param name="trainSamples">Training samples per epoch.</param>
    /// <param name="workers">The workers that share each epoch (in cluster mode, Cluster:MinWorkers: more workers make fewer
    /// steps, so the warning never errs towards a false alarm).</param>
    internal static string? LocalStepsOutlastEpoch(TrainingOptions options, int trainSamples, int workers)
    {
        var loop = options.Training;
        if (loop.Mode != TrainingMode.LocalSgd || workers < 1 || trainSamples < 1) return null;
        var rounds = EpochPlanSettings.StepsPerEpoch(trainSamples, workers, loop.MinibatchPerWorker);
        if (loop.LocalSteps <= rounds) return null;
        var shard = (trainSamples + workers - 1) / workers;
        var steps = FormattableString.Invariant(
            $"Training:LocalSteps = {loop.LocalSteps:N0} is more than the {rounds:N0} step{(rounds == 1 ? "" : "s")} of an epoch ({(workers == 1 || trainSamples % workers == 0 ? "" : "up to ")}{shard:N0} samples per worker in minibatches of {loop.MinibatchPerWorker:N0})");
        var effect = FormattableString.Invariant(
            $"a worker's local steps end with its shard, so the models are averaged only at each epoch's end, and LocalSteps above {rounds:N0} changes nothing");
        var fix = rounds > 1
            ? FormattableString.Invariant($"Set LocalSteps below {rounds:N0} to average within epochs too, or to {rounds:N0} to average once per epoch as now.")
            : "Set LocalSteps to 1: with one step per epoch, every step is averaged.";
        return $"{steps}: {effect}. {fix}";
    }

    /// <summary>A warning naming the images of <paramref name="folder"/> that are skipped for their format, or null when there are none.</summary>
    internal static string? SkippedImages(string folder)
    {
        var unread = ImageFolderDataset.UnreadImages(folder);
        if (unread.Count == 0) return null;
        var byFormat = unread.GroupBy(path => Path.GetExtension(path).ToLowerInvariant()).OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => $"{g.Count().ToString(CultureInfo.InvariantCulture)} {g.Key}");
        return $"{folder}: {Counts.Of(unread.Count, "image")} skipped, as only {string.Join(", ", ImageFile.Extensions)} files are read " +
            $"({string.Join(", ", byFormat)}; the first is {unread[0]}). Convert them to PNG to train on them, or remove them.";
    }

    /// <summary>
    /// A warning when Optimizer:Schedule:WarmupSteps is at least the run's optimizer steps (epochs × minibatch rounds per
    /// epoch, a minibatch being BatchSizePerWorker × AccumulationSteps samples, × workers in Async, which steps once per minibatch; an upper bound in the modes that step less often, such as
    /// LocalSgd): the learning rate then never reaches
    /// Optimizer:LearningRate. Null otherwise.
    /// </summary>
    /// <param name="options">The run's options.</param>
    /// <param name="trainSamples">Training samples per epoch.</param>
    /// <param name="workers">The workers that share each epoch; null for Training:Workers. In cluster mode, Cluster:MinWorkers:
    /// more workers make fewer steps, so the warning then errs towards silence, never a false alarm.</param>
    internal static string? WarmupOutlastsRun(TrainingOptions options, int trainSamples, int? workers = null)
    {
        var sharing = workers ?? options.Training.Workers;
        var warmup = options.Optimizer.Schedule.WarmupSteps;
        var loop = options.Training;
        // A step takes each worker's whole minibatch: AccumulationSteps micro-batches of BatchSizePerWorker, as the plan counts.
        long rounds = EpochPlanSettings.StepsPerEpoch(trainSamples, sharing, loop.MinibatchPerWorker);
        var stepsPerEpoch = loop.Mode == TrainingMode.Async ? rounds * sharing : rounds; // Async steps once per minibatch
        var steps = stepsPerEpoch * loop.Epochs;
        return warmup > 0 && warmup >= steps
            ? $"Optimizer:Schedule:WarmupSteps = {warmup:N0} is not less than this run's {steps:N0} steps ({loop.Epochs} epoch{(loop.Epochs == 1 ? "" : "s")} of {stepsPerEpoch:N0}), so the learning rate stays below Optimizer:LearningRate for the whole run. Lower WarmupSteps, or train longer."
            : null;
    }
}
