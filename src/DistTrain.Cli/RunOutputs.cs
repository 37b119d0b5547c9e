using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary>
/// A run's outputs could not be written (a full disk, no permission): the message names the file, the cause, the fix and
/// where the newest checkpoint is, if any. The commands report it with exit code 1 instead of a stack trace.
/// </summary>
internal sealed class RunOutputsException(string message, Exception inner) : Exception(message, inner);

/// <summary>The end of a run, in either mode: weights and summary into the run folder, and the final lines.</summary>
internal static class RunOutputs
{
    /// <summary>
    /// Runs <paramref name="write"/>, which writes <paramref name="what"/> into <paramref name="runDirectory"/>; a failure
    /// to write becomes a <see cref="RunOutputsException"/> that says what was lost and, given the run's
    /// <paramref name="options"/>, which checkpoint is left.
    /// </summary>
    /// <exception cref="RunOutputsException">An <see cref="IOException"/> or <see cref="UnauthorizedAccessException"/> from
    /// <paramref name="write"/>.</exception>
    internal static void Writing(string runDirectory, string what, Action write, TrainingOptions? options = null)
    {
        try
        {
            write();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            var left = options is null ? ""
                : NewestCheckpoint(options) is { } newest
                    ? $" The newest checkpoint is {newest}; a resume (train --resume, or Checkpoint:Resume) continues from it, and from one written after the last epoch it only evaluates the weights and writes the model."
                    : " No checkpoint holds them (Checkpoint:Directory keeps some for the next run).";
            // Nothing written yet (the weights come first): the empty run folder goes, as after any failed run.
            var removed = RunDirectory.TryRemoveEmpty(runDirectory) ? " The run folder, left empty, was removed." : "";
            throw new RunOutputsException($"training ended, but {what} could not be written to {runDirectory}: {e.Message.TrimEnd('.')}. Free space on that " +
                $"disk, or check its permissions, or set Output:Directory to another folder.{removed}{left}", e);
        }
    }

    /// <summary>The newest checkpoint in Checkpoint:Directory; null when checkpoints are off or none was written.</summary>
    private static string? NewestCheckpoint(TrainingOptions options) =>
        options.Checkpoint.Enabled ? new CheckpointStore(options.Checkpoint.Directory, options.Checkpoint.Keep).List().FirstOrDefault() : null;

    /// <summary>
    /// Writes a run's outputs in the order that keeps the most on a nearly full disk: the weights (<c>model.safetensors</c>),
    /// then <c>summary.json</c>, then the report (curves and series, whose failure is only a warning).
    /// </summary>
    /// <param name="runDirectory">The run folder.</param>
    /// <param name="options">The run's options (and its checkpoint folder, named if a write fails).</param>
    /// <param name="normalizer">The input standardization fitted on the training split.</param>
    /// <param name="data">The data description.</param>
    /// <param name="result">The weights and the epochs to record.</param>
    /// <param name="report">The run's report; null writes none.</param>
    /// <param name="stopped">Why the run stopped early (a cancellation), recorded in both files; null for a finished run.</param>
    /// <param name="weightsWhat">The weights, as the error names them.</param>
    /// <exception cref="RunOutputsException">The weights or the summary could not be written.</exception>
    private static void WriteRun(string runDirectory, TrainingOptions options, Normalizer normalizer, DataMetadata data, TrainingResult result,
        RunReport? report, string? stopped, string weightsWhat)
    {
        WriteWeightsAndSummary(runDirectory, options, normalizer, data, result, report, stopped, weightsWhat);
        WriteReport(runDirectory, report, options, result, stopped);
    }

    /// <summary>The first two files of <see cref="WriteRun"/>: the weights, then <c>summary.json</c>.</summary>
    /// <exception cref="RunOutputsException">Either could not be written.</exception>
    private static void WriteWeightsAndSummary(string runDirectory, TrainingOptions options, Normalizer normalizer, DataMetadata data, TrainingResult result,
        RunReport? report, string? stopped, string weightsWhat)
    {
        Writing(runDirectory, $"{weightsWhat} ({RunFiles.Model})",
            () => SafeTensors.Write(Path.Combine(runDirectory, RunFiles.Model), result.FinalWeights, RunSummaryFile.Metadata(options, normalizer, data, result, stopped)), options);
        Writing(runDirectory, $"the run's summary ({RunFiles.Summary}; {RunFiles.Model} was written)",
            () => RunSummaryFile.Write(Path.Combine(runDirectory, RunFiles.Summary), options, normalizer, result, stopped, report), options);
    }

    /// <summary>
    /// A finished run's weights (<c>model.safetensors</c>) and <c>summary.json</c>, the part of <see cref="Save"/> that a
    /// cluster's parameter server writes before it tells the other nodes the job is over; <see cref="Save"/> with
    /// <c>weightsAndSummaryWritten</c> then adds the report and the final lines. Prints nothing.
    /// </summary>
    /// <exception cref="RunOutputsException">The weights or the summary could not be written.</exception>
    public static void SaveWeightsAndSummary(string runDirectory, TrainingOptions options, Normalizer normalizer, DataMetadata data, TrainingResult result,
        RunReport? report) =>
        WriteWeightsAndSummary(runDirectory, options, normalizer, data, result, report, stopped: null, "the final weights");

    /// <summary>
    /// After a failed run (exit code 1): removes the run folder if nothing was written into it, so that listings of the
    /// output folder (and <c>compare</c>) see only runs with results, and says so.
    /// </summary>
    public static void RemoveIfEmptyAfterFailure(string runDirectory)
    {
        if (RunDirectory.TryRemoveEmpty(runDirectory)) CliConsole.Fail("removed", $"the empty run folder {runDirectory}");
    }

    /// <summary>
    /// Returns the freed data set's memory to the operating system before the report's plot loads Skia and
    /// renders (about 20 MB of native memory), so the run's peak resident set stays at its training figure.
    /// </summary>
    public static void ReleaseMemory() => GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);

    /// <summary>
    /// After divergence: the last good weights go to <c>last-good.safetensors</c>, so the run is not lost. The file carries
    /// the model's metadata as <c>model.safetensors</c> does (model section, normalization, data description), so
    /// <c>evaluate</c>, <c>predict</c>, <c>export</c> and <c>Model:Pretrained</c> load it; no test accuracy describes it.
    /// </summary>
    /// <param name="runDirectory">The run folder.</param>
    /// <param name="options">The run's options (the model section, the seed).</param>
    /// <param name="normalizer">The input standardization fitted on the training split.</param>
    /// <param name="data">The data description, as in <c>model.safetensors</c>.</param>
    /// <param name="diverged">The divergence, with the last good weights and their version.</param>
    /// <param name="report">The run's report: the epochs those weights have been through; null when there is none.</param>
    /// <param name="epochsBefore">Epochs finished before this run started (a resumed run's checkpoint epoch − 1), recorded
    /// when the run diverged before finishing an epoch of its own.</param>
    public static void SaveLastGood(string runDirectory, TrainingOptions options, Normalizer normalizer, DataMetadata data,
        DistTrain.Cluster.Actors.TrainingDivergedException diverged, RunReport? report, int epochsBefore = 0) =>
        WriteLastGood(runDirectory, options, normalizer, data, diverged, report, epochsBefore, DistTrain.Core.Models.ModelFactory.Build(options.Model).Layout);

    /// <summary><see cref="SaveLastGood"/> with the model's layout already known.</summary>
    private static void WriteLastGood(string runDirectory, TrainingOptions options, Normalizer normalizer, DataMetadata data,
        DistTrain.Cluster.Actors.TrainingDivergedException diverged, RunReport? report, int epochsBefore, DistTrain.Core.Tensors.ParameterLayout layout)
    {
        if (diverged.LastGoodWeights is null) return;
        var path = Path.Combine(runDirectory, RunFiles.LastGood);
        var version = diverged.LastGoodVersion;
        var epochs = report?.Epochs.LastOrDefault(e => e.Version <= version)?.Epoch ?? epochsBefore; // the epochs these weights have been through
        var metadata = DistTrain.Core.Models.ModelMetadata.Create(options.Model, normalizer, data, version, epochs, testAccuracy: null, options.Training.Seed);
        metadata["stopped"] = diverged.LossFinite
            ? "training diverged; these are the last weights with a finite loss"
            : "training diverged at its first step; these are the weights it started from, whose loss was not finite either";
        Writing(runDirectory, $"the last good weights ({RunFiles.LastGood})",
            () => SafeTensors.Write(path, new DistTrain.Core.Tensors.ParameterVector(layout, diverged.LastGoodWeights), metadata), options);
        CliConsole.Fail("saved", diverged.LossFinite
            ? $"the last good weights (version {diverged.LastGoodVersion}) are in {path}"
            : $"the weights the run started from (version {diverged.LastGoodVersion}; their loss was not finite either) are in {path}");
    }

    /// <summary>
    /// After divergence (exit code 3), the run folder keeps what the run finished, as a cancelled run's does: the last good
    /// weights in <c>last-good.safetensors</c> (<see cref="SaveLastGood"/>; no <c>model.safetensors</c>), then
    /// <c>summary.json</c> marked <c>stopped: diverged at epoch E, step S of N</c> (<see cref="RunReport.DivergedAt"/>) with
    /// the epochs that finished and the last good weights' version, then, when at least one step was applied, the report
    /// (<c>steps.csv</c>, <c>epochs.csv</c>, <c>curves.png</c>); a line says so.
    /// </summary>
    /// <param name="runDirectory">The run folder.</param>
    /// <param name="options">The run's options.</param>
    /// <param name="normalizer">The input standardization fitted on the training split.</param>
    /// <param name="data">The data description, as in <c>model.safetensors</c>.</param>
    /// <param name="diverged">The divergence, with the last good weights and their version (-1, recorded as such, when unknown).</param>
    /// <param name="report">The run's report; null (training never started) writes only the last good weights.</param>
    /// <param name="epochsBefore">As in <see cref="SaveLastGood"/>.</param>
    /// <exception cref="RunOutputsException">The last good weights or the summary could not be written.</exception>
    public static void KeepDiverged(string runDirectory, TrainingOptions options, Normalizer normalizer, DataMetadata data,
        DistTrain.Cluster.Actors.TrainingDivergedException diverged, RunReport? report, int epochsBefore = 0)
    {
        var layout = DistTrain.Core.Models.ModelFactory.Build(options.Model).Layout; // built once, for both files
        WriteLastGood(runDirectory, options, normalizer, data, diverged, report, epochsBefore, layout);
        if (report is null) return;
        var stopped = report.DivergedAt(diverged.Epoch, diverged.Step);
        // The summary's tensors and version are those of last-good.safetensors; without last good weights, only their layout.
        var weights = diverged.LastGoodWeights is { } good ? new DistTrain.Core.Tensors.ParameterVector(layout, good) : new DistTrain.Core.Tensors.ParameterVector(layout);
        var result = new TrainingResult(weights, diverged.LastGoodVersion, report.Epochs);
        Writing(runDirectory, $"the run's summary ({RunFiles.Summary}{(diverged.LastGoodWeights is null ? "" : $"; {RunFiles.LastGood} was written")})",
            () => RunSummaryFile.Write(Path.Combine(runDirectory, RunFiles.Summary), options, normalizer, result, stopped, report), options);
        var epochs = result.Epochs.Count;
        var finished = FinishedEpochs(epochs);
        if (!report.AnyStep)
            CliConsole.Fail("kept", $"the run folder {runDirectory}: {RunFiles.Summary} records the divergence ({stopped}); no step was applied, so there are no curves.");
        else if (WriteReport(runDirectory, report, options, result, stopped))
            CliConsole.Fail("kept", $"the run folder {runDirectory}: {RunFiles.Summary} records the divergence ({stopped}) and, with {RunFiles.Epochs} and {RunFiles.Curves}, {finished}.");
        else
            CliConsole.Fail("kept", $"the run folder {runDirectory}: {RunFiles.Summary} records the divergence ({stopped}) and {finished}.");
    }

    /// <summary>
    /// At the end of a run: the weights (<c>model.safetensors</c>) first, then <c>summary.json</c>, then the report (curves
    /// and series), so that on a nearly full disk the weights are the part that is written; then the final lines.
    /// </summary>
    /// <exception cref="RunOutputsException">The weights or the summary could not be written.</exception>
    /// <param name="runDirectory">The run folder.</param>
    /// <param name="options">The run's options.</param>
    /// <param name="normalizer">The input standardization fitted on the training split.</param>
    /// <param name="data">The data description.</param>
    /// <param name="result">The weights and the epochs to record.</param>
    /// <param name="report">The run's report; null writes none.</param>
    /// <param name="weightsAndSummaryWritten">True when <see cref="SaveWeightsAndSummary"/> already wrote those two: only the
    /// report is written.</param>
    /// <param name="classCount">The model's classes, for the warning of a run that learned nothing (<see cref="RunReport.NotLearning"/>); 0 gives none.</param>
    public static void Save(string runDirectory, TrainingOptions options, Normalizer normalizer, DataMetadata data, TrainingResult result, RunReport? report = null,
        bool weightsAndSummaryWritten = false, int classCount = 0)
    {
        var weightsPath = Path.Combine(runDirectory, RunFiles.Model);
        var last = result.FinalEpoch;
        if (weightsAndSummaryWritten) WriteReport(runDirectory, report, options, result, stopped: null);
        else WriteRun(runDirectory, options, normalizer, data, result, report, stopped: null, "the final weights");
        if (result.BestEpoch is { } best)
            CliConsole.Out.WriteLiteralLine($"Early stopping: {(result.StoppedEarly ? $"stopped after epoch {result.Epochs[^1].Epoch}" : "ran every epoch")}; kept epoch {best}'s weights ({(options.Training.EarlyStopping.MinDelta > 0 ? "the last that lowered the validation loss by Training:EarlyStopping:MinDelta or more; its loss" : "lowest validation loss")} {last.ValidationLoss:F4}).");
        CliConsole.Out.WriteLiteralLine($"Test accuracy after {last.Epoch} epoch{(last.Epoch == 1 ? "" : "s")}: {100 * last.TestAccuracy:F2}%",
            new Style(Color.Green, decoration: Decoration.Bold), $" ({Counts.Of(last.TestSamples, "test sample")})");
        if (report?.BlewUp(options) is { } blewUp) CliConsole.Fail("warning", blewUp); // says what a rise in NotLearning would, and more
        else if (report?.NotLearning(options, classCount, last.TestAccuracy) is { } notLearning) CliConsole.Fail("warning", notLearning);
        CliConsole.Out.WriteLiteralLine($"Final weights (version {result.Version}, {result.FinalWeights.Layout.TotalLength:N0} parameters): {weightsPath}");
    }

    /// <summary>
    /// After a cancellation (Ctrl-C): when training applied at least one step and the weights at the stop came back, the
    /// run folder is kept with them in <c>model.safetensors</c>, the finished epochs in <c>summary.json</c> and the
    /// report; otherwise nothing is worth keeping and the (empty) run folder is removed. Either way a line says which, and
    /// how to resume from the newest checkpoint: <paramref name="resumeWith"/> (the command or setting, by mode).
    /// </summary>
    public static void KeepOrRemoveCancelled(string runDirectory, TrainingOptions options, Normalizer normalizer, DataMetadata data, OperationCanceledException cancelled, RunReport? report,
        string resumeWith = "train --resume")
    {
        var weights = (cancelled as TrainingCancelledException)?.Weights;
        var last = weights is null ? null : report?.StepOf(weights.Version);
        var resume = ResumeHint(options, resumeWith);
        if (weights is null || last is not { } stop || report is null)
        {
            var removed = RunDirectory.TryRemoveEmpty(runDirectory) ? $"the empty run folder {runDirectory} was removed"
                : File.Exists(Path.Combine(runDirectory, RunFiles.Epochs)) ? $"the run folder {runDirectory} is left as it was, with the {RunFiles.Epochs} of the epochs it finished"
                : $"the run folder {runDirectory} is left as it was";
            CliConsole.Fail("cancelled", (weights is null ? "stopped; no weights to save here, so " : "stopped before the first step: nothing to keep, so ") + removed + "." + resume);
            return;
        }
        var epochs = WriteAtStep(runDirectory, options, normalizer, data, weights, report, $"cancelled at epoch {stop.Epoch}, step {stop.Step} of {stop.Steps}", "the weights at the stop");
        CliConsole.Fail("cancelled", $"stopped at epoch {stop.Epoch}, step {stop.Step} of {stop.Steps}. Kept the run folder {runDirectory}: " +
            $"{RunFiles.Model} holds the weights of that step (version {weights.Version}); {RunFiles.Summary} and {RunFiles.Epochs} hold " +
            $"{FinishedEpochs(epochs)}.{resume}");
    }

    /// <summary>
    /// After a run that failed in training (exit code 1): when the parameter server still held the weights
    /// (<see cref="DistTrain.Cluster.Actors.TrainingStalledException.Weights"/>: Cluster:PauseTimeoutSeconds ran out with too
    /// few workers alive) and training applied at least one step, the run folder keeps them in <c>model.safetensors</c>
    /// (marked <c>stopped</c>, as a cancelled run's), the finished epochs in <c>summary.json</c> and the report. Without
    /// those weights (any other failure: a worker's error, a lost node) but with at least one step applied, it keeps
    /// <c>summary.json</c> marked <c>stopped: failed at epoch E, step S of N</c> with the finished epochs, and the report
    /// (<c>steps.csv</c>, <c>epochs.csv</c>, <c>curves.png</c>). A line says which. With no step applied nothing is written,
    /// and the caller removes the empty folder.
    /// </summary>
    /// <exception cref="RunOutputsException">The weights or the summary could not be written.</exception>
    public static void KeepAfterFailure(string runDirectory, TrainingOptions options, Normalizer normalizer, DataMetadata data, WeightsSnapshot? weights,
        RunReport? report, string resumeWith)
    {
        if (report is null || !report.AnyStep) return;
        if (weights is null || report.StepOf(weights.Version) is not { } stop)
        {
            KeepFailedWithoutWeights(runDirectory, options, normalizer, report, resumeWith);
            return;
        }
        var epochs = WriteAtStep(runDirectory, options, normalizer, data, weights, report, $"failed at epoch {stop.Epoch}, step {stop.Step} of {stop.Steps}", "the weights at the failure");
        CliConsole.Fail("kept", $"the run folder {runDirectory}: {RunFiles.Model} holds the weights of the last step, epoch {stop.Epoch} step {stop.Step} of " +
            $"{stop.Steps} (version {weights.Version}); {RunFiles.Summary} and {RunFiles.Epochs} hold {FinishedEpochs(epochs)}." +
            ResumeHint(options, resumeWith));
    }

    /// <summary>"no finished epoch", "the 1 finished epoch", "the 2 finished epochs": what a kept run folder holds.</summary>
    private static string FinishedEpochs(int epochs) => epochs == 0 ? "no finished epoch" : $"the {Counts.Of(epochs, "finished epoch")}";

    /// <summary>The summary and report of a failed run whose weights did not come back; see <see cref="KeepAfterFailure"/>.</summary>
    private static void KeepFailedWithoutWeights(string runDirectory, TrainingOptions options, Normalizer normalizer, RunReport report, string resumeWith)
    {
        var stopped = report.FailedAt();
        // No weights describe this summary: its tensors are the layout's, its version -1 (unknown), as a divergence without last good weights.
        var result = new TrainingResult(new DistTrain.Core.Tensors.ParameterVector(DistTrain.Core.Models.ModelFactory.Build(options.Model).Layout), -1, report.Epochs);
        Writing(runDirectory, $"the run's summary ({RunFiles.Summary})",
            () => RunSummaryFile.Write(Path.Combine(runDirectory, RunFiles.Summary), options, normalizer, result, stopped, report), options);
        var epochs = result.Epochs.Count;
        var finished = FinishedEpochs(epochs);
        var what = WriteReport(runDirectory, report, options, result, stopped) ? $"and, with {RunFiles.Epochs} and {RunFiles.Curves}, {finished}" : $"and {finished}";
        CliConsole.Fail("kept", $"the run folder {runDirectory}: {RunFiles.Summary} records the failure ({stopped}) {what}; no weights came back to keep." +
            ResumeHint(options, resumeWith));
    }

    /// <summary>Writes the run with <paramref name="weights"/> of a step, not an epoch's end, and the epochs they went through; returns how many.</summary>
    private static int WriteAtStep(string runDirectory, TrainingOptions options, Normalizer normalizer, DataMetadata data, WeightsSnapshot weights, RunReport report,
        string stopped, string weightsWhat)
    {
        var epochs = report.Epochs.Where(e => e.Version <= weights.Version).ToList(); // the epochs these weights have been through
        var result = new TrainingResult(new DistTrain.Core.Tensors.ParameterVector(DistTrain.Core.Models.ModelFactory.Build(options.Model).Layout, weights.Weights),
            weights.Version, epochs);
        WriteRun(runDirectory, options, normalizer, data, result, report, stopped, weightsWhat);
        return epochs.Count;
    }

    /// <summary>" Checkpoints are in ...: <paramref name="resumeWith"/> continues from the newest, at ..." or that none was written; empty without checkpoints.</summary>
    internal static string ResumeHint(TrainingOptions options, string resumeWith) =>
        string.IsNullOrWhiteSpace(options.Checkpoint.Directory)
            ? ""
            : NewestCheckpoint(options) is { } newest
                ? $" Checkpoints are in {options.Checkpoint.Directory}: {resumeWith} continues from the newest" +
                  (CheckpointStore.PositionOf(newest) is { } at ? $", at epoch {at.Epoch} round {at.Round} (weights version {at.Version})." : ".")
                : $" No checkpoint was written to {options.Checkpoint.Directory} yet, so a new run starts from the beginning.";

    /// <summary>
    /// Writes <paramref name="report"/> (series and curves) into the run folder and names the plot; a failure is a warning,
    /// as the weights are written before it. Nothing without a report. True when the report was written.
    /// </summary>
    /// <param name="runDirectory">The run folder.</param>
    /// <param name="report">The run's report; null writes nothing.</param>
    /// <param name="options">The run's options (its Model:Loss names the plot's loss axis).</param>
    /// <param name="result">The weights saved and their epochs (the kept one, with early stopping, is what the plot's title describes).</param>
    /// <param name="stopped">Why the run stopped before its end, for the plot's title; null for a finished run.</param>
    private static bool WriteReport(string runDirectory, RunReport? report, TrainingOptions options, TrainingResult result, string? stopped)
    {
        if (report is null) return false;
        try
        {
            var plot = report.Write(runDirectory, options.Model.Loss, result, stopped);
            CliConsole.Out.WriteLiteralLine($"Curves: {plot} (series in {RunFiles.Steps} and {RunFiles.Epochs})");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or TypeInitializationException or DllNotFoundException)
        {
            CliConsole.Fail("warning", $"the run report could not be written ({e.Message}); the weights are saved regardless.");
            return false;
        }
    }
}
