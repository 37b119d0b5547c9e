using DistTrain.Cluster.Hosting;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary>The end of a run, in either mode: weights and summary into the run folder, and the final lines.</summary>
internal static class RunOutputs
{
    /// <summary>
    /// Returns the freed data set's memory to the operating system before the report's plot loads Skia and
    /// renders (about 20 MB of native memory), so the run's peak resident set stays at its training figure.
    /// </summary>
    public static void ReleaseMemory() => GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);

    /// <summary>After divergence: the last good weights go to <c>last-good.safetensors</c>, so the run is not lost.</summary>
    public static void SaveLastGood(string runDirectory, TrainingOptions options, DistTrain.Cluster.Actors.TrainingDivergedException diverged)
    {
        if (diverged.LastGoodWeights is null) return;
        var layout = DistTrain.Core.Models.ModelFactory.Build(options.Model).Layout;
        var path = Path.Combine(runDirectory, "last-good.safetensors");
        SafeTensors.Write(path, new DistTrain.Core.Tensors.ParameterVector(layout, diverged.LastGoodWeights),
            new Dictionary<string, string> { ["format"] = "pt", ["producer"] = "disttrain", ["version"] = diverged.LastGoodVersion.ToString(System.Globalization.CultureInfo.InvariantCulture), ["note"] = "last weights with a finite loss before training diverged" });
        CliConsole.Fail("saved", $"the last good weights (version {diverged.LastGoodVersion}) are in {path}");
    }

    public static void Save(string runDirectory, TrainingOptions options, Normalizer normalizer, DataMetadata data, TrainingResult result, RunReport? report = null)
    {
        if (report is not null)
        {
            try
            {
                var plot = report.Write(runDirectory);
                AnsiConsole.MarkupLineInterpolated($"Curves: {plot} (series in steps.csv and epochs.csv)");
            }
            catch (Exception e) when (e is IOException or TypeInitializationException or DllNotFoundException)
            {
                CliConsole.Fail("warning", $"the run report could not be written ({e.Message}); the weights are saved regardless.");
            }
        }
        var weightsPath = Path.Combine(runDirectory, "model.safetensors");
        var last = result.FinalEpoch;
        SafeTensors.Write(weightsPath, result.FinalWeights, RunSummaryFile.Metadata(options, normalizer, data, result));
        RunSummaryFile.Write(Path.Combine(runDirectory, "summary.json"), options, normalizer, result);
        if (result.BestEpoch is { } best)
            AnsiConsole.MarkupLineInterpolated($"Early stopping: {(result.StoppedEarly ? $"stopped after epoch {result.Epochs[^1].Epoch}" : "ran every epoch")}; kept epoch {best}'s weights (lowest validation loss {last.ValidationLoss:F4}).");
        AnsiConsole.MarkupLineInterpolated($"[bold green]Test accuracy after {last.Epoch} epoch{(last.Epoch == 1 ? "" : "s")}: {100 * last.TestAccuracy:F2}%[/] ({last.TestSamples:N0} test samples)");
        AnsiConsole.MarkupLineInterpolated($"Final weights (version {result.Version}, {result.FinalWeights.Layout.TotalLength:N0} parameters): {weightsPath}");
    }
}
