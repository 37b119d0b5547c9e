using System.CommandLine;
using System.Globalization;
using System.Numerics.Tensors;
using DistTrain.Core.Checkpoints;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary>
/// <c>disttrain inspect</c>: lists a safetensors checkpoint's tensors with shapes, sizes and norms, and draws its first layer's
/// filters and per-layer weight histograms (<see cref="InspectFigures"/>).
/// </summary>
internal static class InspectCommand
{
    public static Command Create()
    {
        var path = CliOptions.FileArgument("checkpoint", $"A .safetensors file (DistTrain's {RunFiles.Model} or a PyTorch export), or a run folder (its {RunFiles.Model}).",
            $"a .safetensors file, such as a run's {RunFiles.Model}");
        var filters = CliOptions.File("--filters", "Also draw the first layer's filters (conv kernels, or Dense units reshaped to the input image) as a PNG grid.",
            "the PNG file to write, e.g. filters.png", required: false);
        var histograms = CliOptions.File("--histograms", "Also draw a histogram of every layer's weight tensor as a PNG.",
            "the PNG file to write, e.g. histograms.png", required: false);
        var compare = CliOptions.File("--compare", "Draw another checkpoint of the same model beside it in --filters and --histograms.",
            "a .safetensors file of the same model", required: false);
        var initialization = new Option<bool>("--compare-initialization") { Description = "Draw the initial weights the run started from (the model's initializer with the run's seed) beside it." };
        var command = new Command("inspect", "List a checkpoint's tensors: name, shape, elements, L2 norm, mean and range; draw its filters and weight histograms.")
        {
            path, filters, histograms, compare, initialization,
        };
        command.SetAction(CliConsole.Cancellable((parse, cancellationToken) =>
        {
            // Options that cannot go together are a bad command line: refused first (exit 1), before the tensor table.
            if (ConflictingOptions(parse.GetValue(compare) is not null, parse.GetValue(initialization),
                    parse.GetValue(filters) is not null || parse.GetValue(histograms) is not null) is { } conflict)
            {
                CliConsole.Fail("error", conflict);
                return 1;
            }
            FileInfo file;
            IReadOnlyDictionary<string, NamedTensor> tensors;
            IReadOnlyDictionary<string, string> metadata;
            InspectFigures.Comparison? comparison;
            try
            {
                file = new FileInfo(RunFiles.ModelIn(parse.GetValue(path)!.FullName)); // a run folder stands for its model
                DistTrain.Core.Models.PretrainedWeights.RequireFile(file.FullName, "checkpoint");
                var compared = parse.GetValue(compare)?.FullName;
                if (parse.GetValue(filters) is { } filtersFile && parse.GetValue(histograms) is { } histogramsFile
                    && CliOptions.SameFile(histogramsFile.FullName, filtersFile.FullName))
                {
                    CliConsole.Fail("error", $"--filters and --histograms name the same file ({filtersFile.FullName}): the second picture would replace the first. Give each its own path.");
                    return 2;
                }
                foreach (var (option, output) in new[] { ("--filters", parse.GetValue(filters)), ("--histograms", parse.GetValue(histograms)) })
                    if (output is not null && (CliOptions.OverwritesInput(option, output.FullName, file.FullName, compared)
                        ?? CliOptions.BadPngOutput(option, output.FullName)
                        ?? CliOptions.OverwritesRunFile(option, output.FullName, "reads", [file.FullName, compared])) is { } overwrite)
                    {
                        CliConsole.Fail("error", overwrite);
                        return 2;
                    }
                tensors = SafeTensors.Read(file.FullName);
                metadata = SafeTensors.ReadMetadata(file.FullName);
                // Before the table: a checkpoint of another model (or initial weights that cannot be drawn again) is the only
                // output, not an error after a table that looked like success.
                comparison = parse.GetValue(initialization) ? InspectFigures.Initialization(file.FullName, metadata)
                    : compared is not null ? Compared(file.FullName, tensors, RunFiles.ModelIn(compared))
                    : null;
            }
            catch (Exception e) when (e is IOException or InvalidDataException or SafeTensorsFormatException or UnauthorizedAccessException)
            {
                CliConsole.Fail("error", Message(e));
                return 2;
            }
            cancellationToken.ThrowIfCancellationRequested(); // nothing printed or drawn after a Ctrl-C
            var table = new Table().AddColumns("tensor", "shape", "elements", "L2 norm", "mean", "min", "max");
            foreach (var (name, tensor) in tensors.OrderBy(t => t.Key, Comparer<string>.Create(CompareNames)))
            {
                var data = tensor.Data;
                table.AddLiteralRow(name, $"[{string.Join(", ", tensor.Shape)}]", data.Length.ToString("N0", CultureInfo.InvariantCulture),
                    Format(TensorPrimitives.Norm(data)), Format(data.Length == 0 ? 0 : TensorPrimitives.Sum(data) / data.Length),
                    Format(data.Length == 0 ? 0 : TensorPrimitives.Min(data)), Format(data.Length == 0 ? 0 : TensorPrimitives.Max(data)));
            }
            AnsiConsole.Write(table);
            CliConsole.Out.WriteLiteralLine($"{tensors.Count} tensors, {tensors.Values.Sum(t => (long)t.Data.Length):N0} elements, {file.Length:N0} bytes: {file.FullName}");
            foreach (var (key, value) in metadata.Where(m => m.Key is "producer" or "epochs" or DistTrain.Core.Models.ModelMetadata.EpochsTrained or "version" or "test_accuracy" or "input_normalization" or "stopped"))
                CliConsole.Out.WriteLiteralLine($"  {key}: {value}");
            if (metadata.TryGetValue("format", out var format) && format == TrainingCheckpoint.Format)
            {
                // A training checkpoint: where a resume continues, and the settings a resume must match.
                string Get(string key) => metadata.TryGetValue(key, out var value) && value.Length > 0 ? value : "?";
                AnsiConsole.WriteLine($"  training checkpoint: a resume continues at epoch {Get("epoch")} round {Get("round")}; Training:Mode {Get("training_mode")}, " +
                    $"{Get("workers")} workers x {Get("batch_size_per_worker")} samples per minibatch, seed {Get("shard_seed")}, {Get("train_samples")} training samples, " +
                    $"optimizer {Get("optimizer_kind")} after {Get("optimizer_steps")} steps{(metadata.TryGetValue("job_id", out var job) && job.Length > 0 ? $", job {job} (a cluster job or single-node run)" : "")}");
            }
            cancellationToken.ThrowIfCancellationRequested();
            return Figures(file.FullName, tensors, metadata, parse.GetValue(filters), parse.GetValue(histograms), comparison);
        }));
        return command;
    }

    /// <summary>Runs <paramref name="draw"/>, which writes the PNG at <paramref name="path"/> for <paramref name="option"/>;
    /// a write that fails (a read-only or full disk) is one <c>error:</c> line naming the file, the cause and the option, and false.</summary>
    private static bool Drawn(string option, string path, Func<bool> draw)
    {
        try
        {
            return draw();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            CliConsole.Fail("error", $"{path}: the picture could not be written ({e.Message.TrimEnd('.')}). Pass {option} with a writable path.");
            return false;
        }
    }

    /// <summary>The optional pictures, with <paramref name="comparison"/> beside the checkpoint's weights; 0 when every one asked
    /// for was written, 2 for a bad output or checkpoint (the options' combination, the output folders and the comparison are
    /// checked before the table, so that a bad one is the only output).</summary>
    private static int Figures(string checkpoint, IReadOnlyDictionary<string, NamedTensor> tensors, IReadOnlyDictionary<string, string> metadata,
        FileInfo? filters, FileInfo? histograms, InspectFigures.Comparison? comparison)
    {
        try
        {
            var ok = filters is null || Drawn("--filters", filters.FullName, () => InspectFigures.DrawFilters(filters.FullName, checkpoint, tensors, metadata, comparison));
            ok &= histograms is null || Drawn("--histograms", histograms.FullName, () => InspectFigures.DrawHistograms(histograms.FullName, checkpoint, tensors, comparison));
            return ok ? 0 : 2;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or SafeTensorsFormatException or UnauthorizedAccessException)
        {
            CliConsole.Fail("error", Message(e));
            return 2;
        }
        catch (Exception e) when (e is TypeInitializationException or DllNotFoundException)
        {
            CliConsole.Fail("error", $"drawing needs SkiaSharp's native library, which did not load on this platform ({e.GetBaseException().Message}); the tensor table above is complete.");
            return 1;
        }
    }

    /// <summary>The message of a failed read: a missing file as "PATH: no such file." when .NET's message does not start with its path.</summary>
    private static string Message(Exception e) =>
        e is FileNotFoundException { FileName: { } name } f && !f.Message.StartsWith(name, StringComparison.Ordinal) ? $"{name}: no such file." : e.Message;

    /// <summary>
    /// The error for options of <c>inspect</c> that cannot be used together, or null: --compare and --compare-initialization
    /// both (one picture beside the checkpoint's), or either without --filters or --histograms (nothing to draw them in).
    /// </summary>
    internal static string? ConflictingOptions(bool compare, bool initialization, bool drawing) =>
        compare && initialization
            ? "--compare and --compare-initialization cannot be used together: the figures draw one set of weights beside the checkpoint's. Give either --compare CHECKPOINT or --compare-initialization."
            : (compare || initialization) && !drawing
            ? $"{(compare ? "--compare" : "--compare-initialization")} draws beside --filters or --histograms, and neither is given: add --filters FILE or --histograms FILE, or leave it out."
            : null;

    private static string Format(float value) => value.ToString("G5", CultureInfo.InvariantCulture);

    /// <summary>Orders <c>state_dict</c> names by layer index, then name (<c>2.weight</c> before <c>10.bias</c>).</summary>
    private static int CompareNames(string? a, string? b)
    {
        static (int, string) Key(string? name)
        {
            var dot = name?.IndexOf('.') ?? -1;
            return dot > 0 && int.TryParse(name![..dot], CultureInfo.InvariantCulture, out var index) ? (index, name) : (int.MaxValue, name ?? "");
        }
        var (ia, na) = Key(a);
        var (ib, nb) = Key(b);
        return ia != ib ? ia.CompareTo(ib) : string.CompareOrdinal(na, nb);
    }

    /// <summary>
    /// The checkpoint <paramref name="otherPath"/> drawn beside <paramref name="checkpoint"/>: it must hold every tensor
    /// of it with the same shape (another checkpoint of the same model); its label names its folder when both files have
    /// the same name (two runs' model.safetensors).
    /// </summary>
    /// <exception cref="InvalidDataException">A tensor is missing from the other checkpoint or has another shape there.</exception>
    internal static InspectFigures.Comparison Compared(string checkpoint, IReadOnlyDictionary<string, NamedTensor> tensors, string otherPath)
    {
        var other = SafeTensors.Read(otherPath);
        var differing = tensors.Where(t => !other.TryGetValue(t.Key, out var o) || !o.Shape.SequenceEqual(t.Value.Shape))
            .Select(t => other.TryGetValue(t.Key, out var o)
                ? $"'{t.Key}' is [{string.Join(", ", t.Value.Shape)}] here but [{string.Join(", ", o.Shape)}] there"
                : $"'{t.Key}' is missing there")
            .ToList();
        if (differing.Count > 0)
            throw new InvalidDataException($"--compare {otherPath} is not a checkpoint of the same model: {string.Join("; ", differing.Take(5))}" +
                $"{(differing.Count > 5 ? $"; and {differing.Count - 5} more" : "")}. Compare checkpoints of one model (two runs of one config, or a run and its resume).");
        var label = Path.GetFileName(otherPath) == Path.GetFileName(checkpoint)
            ? Path.Combine(Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(otherPath))) ?? "", Path.GetFileName(otherPath))
            : Path.GetFileName(otherPath);
        return new InspectFigures.Comparison(other, label);
    }
}
