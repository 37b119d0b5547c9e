using System.Text.Json;

namespace DistTrain.Cli;

/// <summary>One run's test accuracy over its training, read from the <c>summary.json</c> a run folder holds.</summary>
/// <param name="Label">The run's name in tables and legends.</param>
/// <param name="Epochs">Per epoch: its number, test accuracy (fraction), and the run's cumulative seconds of training
/// and evaluation at its end (start-up and data loading not counted).</param>
/// <param name="SamplesPerSecond">The samples this run trained per second of its training time outside pauses (below
/// Cluster:MinWorkers), over all its epochs: for a run of one epoch the samples/s <c>train</c> printed for it, also when it
/// was resumed mid-way (the samples trained before the resume are not counted). Null when the run trained nothing (a resume
/// from the checkpoint of a finished run, which only scores its weights).</param>
/// <param name="KeptEpoch">With early stopping, the epoch whose weights the run kept (<c>best_epoch</c>); null otherwise.</param>
/// <param name="KeptAccuracy">With early stopping, that epoch's test accuracy (<c>best_epoch_test_accuracy</c>), which a run
/// resumed after its best epoch holds though the epoch is not among its own; null in older summaries.</param>
/// <param name="Stopped">For a run that stopped before its end, the summary's <c>stopped</c> ("diverged at epoch 4, step 1
/// of 32", "cancelled at ..."): its epochs are those it finished. Null for a run that finished.</param>
/// <param name="FromEpochsCsv">True for a run stopped before it could write its summary (killed, a second Ctrl-C): its
/// epochs are those of the <c>epochs.csv</c> written after each finished epoch, and nothing is known of how it ended.</param>
/// <param name="ResumedWithinFirstEpoch">True for a run resumed from a checkpoint within its first epoch (epoch 1 included), or
/// one that only scored it: that epoch's samples trained in this run are fewer than the epoch's, or it has none.</param>
internal sealed record RunHistory(string Label, IReadOnlyList<(int Epoch, double TestAccuracy, double Seconds)> Epochs, double? SamplesPerSecond,
    int? KeptEpoch = null, double? KeptAccuracy = null, string? Stopped = null, bool FromEpochsCsv = false, bool ResumedWithinFirstEpoch = false)
{
    /// <summary>The test accuracy of the weights the run kept: the kept epoch's with early stopping, else the last epoch's.</summary>
    public double FinalAccuracy => KeptEpoch is { } kept && Epochs.Any(e => e.Epoch == kept) ? Epochs.First(e => e.Epoch == kept).TestAccuracy
        : KeptEpoch is not null && KeptAccuracy is { } accuracy ? accuracy : Epochs[^1].TestAccuracy;

    /// <summary>True when early stopping kept the weights of an epoch before the last.</summary>
    public bool KeptEarlierEpoch => KeptEpoch is { } kept && kept != Epochs[^1].Epoch && (Epochs.Any(e => e.Epoch == kept) || KeptAccuracy is not null);

    /// <summary>True for a run resumed from a checkpoint: its first epoch is not epoch 1, and the epochs before it are another run's,
    /// or it began within its first epoch, whose earlier steps are another run's.</summary>
    public bool Resumed => Epochs[0].Epoch > 1 || ResumedWithinFirstEpoch;

    /// <summary>True for a run that trained no sample: a resume from the checkpoint of a finished run, which only scored its
    /// last epoch's weights (<see cref="SamplesPerSecond"/> is null).</summary>
    public bool TrainedNothing => SamplesPerSecond is null;

    /// <summary>The run's samples/s from the samples it trained and the seconds it trained them in (outside pauses); null
    /// when it trained none.</summary>
    private static double? Rate(double samples, double seconds) => samples > 0 && seconds > 0 ? samples / seconds : null;

    /// <summary>Cumulative seconds at the end of the first epoch whose test accuracy reached <paramref name="target"/>;
    /// null when no epoch did.</summary>
    public double? SecondsTo(double target) => Epochs.FirstOrDefault(e => e.TestAccuracy >= target) is { Epoch: > 0 } reached ? reached.Seconds : null;

    /// <summary>
    /// Reads <c>summary.json</c> from <paramref name="runDirectory"/> (or a <c>summary.json</c> path). A run folder without
    /// one but with the <c>epochs.csv</c> written after each finished epoch (a run killed before its end) is read from that
    /// file instead (<see cref="FromEpochsCsv"/>); so is that <c>epochs.csv</c> given as the path. The samples/s counts each
    /// epoch's <c>SamplesTrainedThisRun</c> over its <c>TrainSeconds</c> less its <c>PausedSeconds</c>; a summary written
    /// before it held these (whose epochs' <c>TrainSamples</c> are the whole epoch's, also in one resumed mid-way) is read
    /// from each epoch's <c>SamplesPerSecond</c> times its <c>TrainSeconds</c> (exact but for epochs that paused), or, in one
    /// without that either, from <c>TrainSamples</c>.
    /// </summary>
    /// <exception cref="UnfinishedRunException">A folder without summary.json or epochs.csv, or a summary or epochs.csv of no
    /// finished epoch (an interrupted run); the message names the file.</exception>
    /// <exception cref="InvalidDataException">No such folder or file, or the summary or epochs.csv is not a run's or holds
    /// values no run writes; the message names the file and the fix.</exception>
    public static RunHistory Read(string runDirectory, string? label = null)
    {
        if (!Directory.Exists(runDirectory) && !File.Exists(runDirectory))
            throw new InvalidDataException($"{runDirectory}: no such folder or file. Pass the folder a training run wrote (it holds model.safetensors and summary.json).");
        var path = Directory.Exists(runDirectory) ? Path.Combine(runDirectory, "summary.json") : runDirectory;
        // Another file of a run folder (its model.safetensors, say) stands for the folder's summary.
        if (File.Exists(path) && Path.GetFileName(path) != "summary.json" && Path.GetDirectoryName(Path.GetFullPath(path)) is { } folder
            && File.Exists(Path.Combine(folder, "summary.json")))
            path = Path.Combine(folder, "summary.json");
        // A run killed before its summary: its epochs.csv holds the epochs it finished (given as the folder, or as that file).
        var epochsCsv = Directory.Exists(runDirectory) ? Path.Combine(runDirectory, DistTrain.Core.Checkpoints.RunFiles.Epochs)
            : Path.GetFileName(path) == DistTrain.Core.Checkpoints.RunFiles.Epochs ? path : null;
        if ((!File.Exists(path) || path == epochsCsv) && epochsCsv is not null && File.Exists(epochsCsv))
            return ReadEpochsCsv(epochsCsv, label ?? DefaultLabel(epochsCsv));
        if (!File.Exists(path))
            throw new UnfinishedRunException($"{runDirectory}: no summary.json there. Pass the folder a training run wrote (it holds model.safetensors and summary.json).",
                $"{runDirectory}: no summary.json there (a run stopped before it wrote one, or not a run folder)");
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(path));
            if (!document.RootElement.TryGetProperty("epochs", out var epochs) || epochs.ValueKind != JsonValueKind.Array)
                throw new InvalidDataException($"{path}: not a DistTrain run summary (no \"epochs\" array).");
            var points = new List<(int, double, double)>();
            double seconds = 0, activeSeconds = 0, samples = 0;
            var resumedWithin = false;
            // A summary edited by hand (or by another tool) could hold any number: each is checked against what a run writes.
            double Checked(double value, string what, double max)
            {
                if (!double.IsFinite(value) || value < 0 || value > max)
                    throw new InvalidDataException($"{path}: {what} is {value.ToString(System.Globalization.CultureInfo.InvariantCulture)}, which no run writes " +
                        $"({(max == 1 ? "a fraction from 0 to 1" : "a number of at least 0")}). Pass the summary.json a training run wrote, unedited.");
                return value;
            }
            foreach (var epoch in epochs.EnumerateArray())
            {
                var number = epoch.GetProperty("Epoch").GetInt32();
                double Field(JsonElement e, string name, double max) => Checked(e.GetProperty(name).GetDouble(), $"epoch {number}'s {name}", max);
                bool Has(string name) => epoch.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number;
                var train = Field(epoch, "TrainSeconds", double.MaxValue);
                seconds += train + Field(epoch, "EvaluationSeconds", double.MaxValue);
                var trainSamples = Field(epoch, "TrainSamples", double.MaxValue);
                // A part of a whole (paused seconds of the training seconds, samples of the epoch's) is checked against it too.
                double Part(string name, double value, string whole, double wholeValue) => value <= wholeValue ? value
                    : throw new InvalidDataException($"{path}: epoch {number}'s {name} is {value.ToString(System.Globalization.CultureInfo.InvariantCulture)}, more than its " +
                        $"{whole} ({wholeValue.ToString(System.Globalization.CultureInfo.InvariantCulture)}), which no run writes. Pass the summary.json a training run wrote, unedited.");
                var paused = Has("PausedSeconds") ? Part("PausedSeconds", Field(epoch, "PausedSeconds", double.MaxValue), "TrainSeconds", train) : 0;
                // The samples this run trained (TrainSamples is the whole epoch's, also in one resumed mid-way). An older summary
                // has no SamplesTrainedThisRun: its SamplesPerSecond counted them (it has no PausedSeconds either, so is taken over
                // all of TrainSeconds), or, older still, TrainSamples it is.
                var trainedThisRun = Has("SamplesTrainedThisRun") ? Part("SamplesTrainedThisRun", Field(epoch, "SamplesTrainedThisRun", double.MaxValue), "TrainSamples", trainSamples)
                    : (double?)null;
                if (points.Count == 0 && (trainSamples == 0 || trainedThisRun < trainSamples)) resumedWithin = true; // resumed within it, or only scored it
                samples += trainedThisRun ?? (Has("SamplesPerSecond") ? Field(epoch, "SamplesPerSecond", double.MaxValue) * train : trainSamples);
                activeSeconds += train - paused;
                points.Add((number, Field(epoch, "TestAccuracy", 1), seconds));
            }
            if (points.Count == 0)
            {
                var stoppedFirst = document.RootElement.TryGetProperty("stopped", out var why) && why.ValueKind == JsonValueKind.String ? why.GetString() : null;
                throw new UnfinishedRunException($"{path}: the run finished no epoch{(stoppedFirst is { Length: > 0 } ? $" (it stopped: {stoppedFirst.TrimEnd('.')})" : "")}, so it has no test accuracy to compare.");
            }
            int? kept = document.RootElement.TryGetProperty("best_epoch", out var best) && best.ValueKind == JsonValueKind.Number ? best.GetInt32() : null;
            double? keptAccuracy = document.RootElement.TryGetProperty("best_epoch_test_accuracy", out var accuracy) && accuracy.ValueKind == JsonValueKind.Number
                ? Checked(accuracy.GetDouble(), "best_epoch_test_accuracy", 1) : null;
            var stopped = document.RootElement.TryGetProperty("stopped", out var reason) && reason.ValueKind == JsonValueKind.String ? reason.GetString() : null;
            return new RunHistory(label ?? DefaultLabel(path), points, Rate(samples, activeSeconds), kept, keptAccuracy, stopped,
                ResumedWithinFirstEpoch: resumedWithin);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{path}: not a readable DistTrain run summary ({e.Message}). Pass the summary.json a training run wrote.", e);
        }
    }

    /// <summary>
    /// A run's history from its <c>epochs.csv</c> alone (<see cref="RunReport.EpochsHeader"/>'s columns, found by name): each
    /// epoch's test accuracy, and its train plus evaluation seconds summed as in the summary. The samples/s is the epochs'
    /// <c>samples_per_second</c> (which counts the samples trained in this run) weighted by their train seconds outside
    /// pauses (<c>train_seconds</c> less <c>paused_seconds</c>), the summary's figure (the file does not keep the sample
    /// counts). An older file without <c>paused_seconds</c> weights them by all their train seconds, which is the same for
    /// epochs that never paused.
    /// </summary>
    /// <param name="path">The epochs.csv.</param>
    /// <param name="label">The run's name.</param>
    /// <exception cref="UnfinishedRunException">The file lists no epoch.</exception>
    /// <exception cref="InvalidDataException">Not a DistTrain epochs.csv, or a value no run writes.</exception>
    private static RunHistory ReadEpochsCsv(string path, string label)
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        var lines = File.ReadAllLines(path).Where(line => line.Length > 0).ToList();
        // An empty file is a run that wrote none (or a write a power loss cut short: the file is written unflushed), not another file.
        if (lines.Count == 0)
            throw new UnfinishedRunException($"{path}: no summary.json beside it, and its epochs.csv is empty, so it has no test accuracy to compare.");
        var columns = lines[0].Split(',');
        int Column(string name) => Array.IndexOf(columns, name) is var index and >= 0 ? index
            : throw new InvalidDataException($"{path}: not a DistTrain epochs.csv (no \"{name}\" column in its header). Pass the folder a training run wrote.");
        int epochColumn = Column("epoch"), accuracyColumn = Column("test_accuracy"), rateColumn = Column("samples_per_second"),
            trainColumn = Column("train_seconds"), evaluationColumn = Column("evaluation_seconds");
        var pausedColumn = Array.IndexOf(columns, "paused_seconds"); // -1 in a file written before it had the column
        var points = new List<(int, double, double)>();
        double seconds = 0, activeSeconds = 0, samples = 0;
        foreach (var line in lines.Skip(1))
        {
            var cells = line.Split(',');
            if (cells.Length != columns.Length || !int.TryParse(cells[epochColumn], System.Globalization.NumberStyles.None, inv, out var number))
                throw new InvalidDataException($"{path}: the row \"{line}\" is not one a run writes ({columns.Length} values, the epoch first). Pass the epochs.csv a training run wrote, unedited.");
            double Field(int column, double max)
            {
                if (!double.TryParse(cells[column], System.Globalization.NumberStyles.Float, inv, out var value) || !double.IsFinite(value) || value < 0 || value > max)
                    throw new InvalidDataException($"{path}: epoch {number}'s {columns[column]} is {cells[column]}, which no run writes " +
                        $"({(max == 1 ? "a fraction from 0 to 1" : "a number of at least 0")}). Pass the epochs.csv a training run wrote, unedited.");
                return value;
            }
            var train = Field(trainColumn, double.MaxValue);
            seconds += train + Field(evaluationColumn, double.MaxValue);
            var paused = pausedColumn >= 0 ? Field(pausedColumn, double.MaxValue) : 0;
            if (paused > train)
                throw new InvalidDataException($"{path}: epoch {number}'s paused_seconds is {cells[pausedColumn]}, more than its train_seconds ({cells[trainColumn]}), " +
                    "which no run writes. Pass the epochs.csv a training run wrote, unedited.");
            var active = train - paused;
            activeSeconds += active;
            samples += Field(rateColumn, double.MaxValue) * active;
            points.Add((number, Field(accuracyColumn, 1), seconds));
        }
        if (points.Count == 0)
            throw new UnfinishedRunException($"{path}: no summary.json beside it, and the run finished no epoch (its epochs.csv lists none), so it has no test accuracy to compare.");
        return new RunHistory(label, points, Rate(samples, activeSeconds), FromEpochsCsv: true);
    }

    private static string DefaultLabel(string summaryPath) =>
        Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(summaryPath))) is { Length: > 0 } folder ? folder : summaryPath;
}

/// <summary>A run folder that holds no finished run: no summary.json (a run interrupted before it wrote one), or a summary
/// of no finished epoch (a run cancelled in its first).</summary>
/// <param name="message">The folder or file, and what is missing.</param>
/// <param name="reason">The same said for a run that is skipped beside others (compare): without the advice to pass another
/// folder; null: <paramref name="message"/>.</param>
internal sealed class UnfinishedRunException(string message, string? reason = null) : IOException(message)
{
    /// <summary>Why the folder holds no finished run, for a warning that skips it.</summary>
    public string Reason { get; } = (reason ?? message).TrimEnd('.');
}
