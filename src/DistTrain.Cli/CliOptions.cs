using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using System.Runtime.CompilerServices;

namespace DistTrain.Cli;

/// <summary>
/// Options and arguments of the <c>disttrain</c> commands, each made with what it takes, so a bad or missing value is
/// reported in one line naming the option, the value and what it takes (see <see cref="ParseErrors"/>), instead of
/// System.CommandLine's type names.
/// </summary>
internal static class CliOptions
{
    private static readonly ConditionalWeakTable<Symbol, string> TakesTable = new();

    /// <summary>What --config takes.</summary>
    public const string ConfigTakes = "a JSON config file, e.g. configs/fashion-mnist-mlp.json";

    /// <summary>
    /// The option that sets each config key the commands override (<c>Training:BatchSizePerWorker</c> → <c>--batch-size</c>),
    /// so a config problem with the value names the option the user typed (<see cref="TrainingOptionsLoader"/>).
    /// </summary>
    public static readonly IReadOnlyDictionary<string, string> OptionOfKey = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["Training:Workers"] = "--workers",
        ["Training:Epochs"] = "--epochs",
        ["Training:Seed"] = "--seed",
        ["Training:BatchSizePerWorker"] = "--batch-size",
        ["Data:TrainLimit"] = "--train-limit",
        ["Data:TestLimit"] = "--test-limit",
        ["Data:Directory"] = "--data",
        ["Output:Directory"] = "--output",
        ["Checkpoint:Directory"] = "--checkpoint-dir",
        ["Checkpoint:Resume"] = "--resume",
        ["Metrics:Port"] = "--metrics-port",
    };

    /// <summary>What --workers takes.</summary>
    public const string WorkersTakes = "a whole number of worker replicas, 1 to 256 (Training:Workers)";

    /// <summary>What --epochs takes.</summary>
    public const string EpochsTakes = "a whole number of passes over the training set, 1 to 10,000 (Training:Epochs)";

    /// <summary>What --batch-size takes.</summary>
    public const string BatchTakes = "a whole number of samples per worker minibatch, 1 to 65,536 (Training:BatchSizePerWorker)";

    /// <summary>What --data takes.</summary>
    public const string DataTakes = "the folder with the four Fashion-MNIST IDX files (Data:Directory; Data:Format Idx only)";

    /// <summary>The help text of <c>--data</c> (train, finetune, bench, node).</summary>
    public const string DataHelp = "Override Data:Directory (folder with the IDX files; refused for the Csv and ImageFolder formats, which read their own paths).";

    /// <summary>What --output takes.</summary>
    public const string OutputTakes = "a writable folder that run folders are created in (Output:Directory)";

    /// <summary>What <paramref name="symbol"/> takes, in words ("a whole number of epochs, ..."); null for one made elsewhere.</summary>
    public static string? Takes(Symbol symbol) => TakesTable.TryGetValue(symbol, out var takes) ? takes : null;

    /// <summary>An optional whole-number option (null when not given).</summary>
    public static Option<int?> WholeNumber(string name, string description, string takes, params string[] aliases) =>
        Register(new Option<int?>(name, aliases) { Description = description, HelpName = "N", CustomParser = r => ParseWholeNumber(r, name, takes) }, takes);

    /// <summary>A whole-number option with a default.</summary>
    public static Option<int> WholeNumber(string name, string description, string takes, int defaultValue, params string[] aliases) =>
        Register(new Option<int>(name, aliases)
        {
            Description = description,
            HelpName = "N",
            DefaultValueFactory = _ => defaultValue,
            CustomParser = r => ParseWholeNumber(r, name, takes) ?? defaultValue,
        }, takes);

    /// <summary>An optional text option (a folder, a path): any value is accepted here; the command checks it.</summary>
    public static Option<string?> Text(string name, string helpName, string description, string takes, params string[] aliases) =>
        Register(new Option<string?>(name, aliases) { Description = description, HelpName = helpName }, takes);

    /// <summary>A file option; <paramref name="required"/> ones are named in the usage line as such.</summary>
    public static Option<FileInfo> File(string name, string description, string takes, bool required, params string[] aliases) =>
        Register(new Option<FileInfo>(name, aliases) { Description = description, HelpName = "FILE", Required = required, CustomParser = result => ParseFile(result, name, takes) }, takes);

    /// <summary>A file option with a default path.</summary>
    public static Option<FileInfo> File(string name, string description, string takes, string defaultPath, params string[] aliases) =>
        Register(new Option<FileInfo>(name, aliases) { Description = description, HelpName = "FILE", DefaultValueFactory = _ => new FileInfo(defaultPath),
            CustomParser = result => ParseFile(result, name, takes) }, takes);

    /// <summary>A required option whose value is one of <paramref name="values"/>.</summary>
    public static Option<string> OneOf(string name, string description, string[] values, params string[] aliases)
    {
        var takes = values.Length <= 2 ? string.Join(" or ", values) : $"{string.Join(", ", values[..^1])} or {values[^1]}";
        var option = new Option<string>(name, aliases) { Description = description, HelpName = string.Join('|', values), Required = true };
        option.Validators.Add(result =>
        {
            var value = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
            if (!values.Contains(value, StringComparer.Ordinal))
                result.AddError($"{name} '{value}' is not allowed: {name} takes {takes}.");
        });
        option.CompletionSources.Add(values);
        return Register(option, takes);
    }

    /// <summary>A required file argument.</summary>
    public static Argument<FileInfo> FileArgument(string name, string description, string takes) =>
        Register(new Argument<FileInfo>(name) { Description = description, CustomParser = result => ParseFile(result, name.ToUpperInvariant(), takes) }, takes);

    /// <summary>
    /// A file path as given; an empty one is an error naming <paramref name="name"/> and what it takes, instead of
    /// System.CommandLine's "Cannot parse argument '' ... as expected type 'System.IO.FileInfo'".
    /// </summary>
    private static FileInfo? ParseFile(ArgumentResult result, string name, string takes)
    {
        var value = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
        // An option's value missing ("--model --data x.csv", "-m -c x.json", an empty $MODEL): the next option was taken as the path.
        if (name.StartsWith("--", StringComparison.Ordinal)
            && (value.StartsWith("--", StringComparison.Ordinal) || value is ['-', var letter] && char.IsAsciiLetter(letter)))
        {
            result.AddError($"{name} got '{value}', which is an option, not a path: {name} takes {takes}. Give it right after {name} " +
                $"(a file whose name starts with '-' is given as ./{value}).");
            return null;
        }
        if (!string.IsNullOrWhiteSpace(value)) return new FileInfo(value);
        result.AddError($"{name} is empty: it takes {takes}.");
        return null;
    }

    /// <summary>Refuses an empty value of a path option given as text (an empty path cannot be written).</summary>
    /// <returns><paramref name="option"/>.</returns>
    public static Option<string> NotEmptyPath(Option<string> option)
    {
        option.Validators.Add(result =>
        {
            if (result.Tokens.Count > 0 && string.IsNullOrWhiteSpace(result.Tokens[^1].Value))
                result.AddError($"{option.Name} is empty: it takes a path of a file to write, {option.Description?.TrimEnd('.').ToLowerInvariant()}.");
        });
        return option;
    }

    /// <summary>
    /// The error for an output path that names one of the command's input files (links resolved): writing it would destroy
    /// the input (a user's <c>export model.safetensors --onnx model.safetensors</c> replaced the trained weights with the
    /// ONNX file). Null when it names none of them.
    /// </summary>
    /// <param name="option">The output's option, for the message.</param>
    /// <param name="output">The output path as given.</param>
    /// <param name="inputs">The files the command reads; null entries are skipped.</param>
    public static string? OverwritesInput(string option, string output, params string?[] inputs)
    {
        foreach (var input in inputs)
            if (input is not null && SameFile(output, input))
                return $"{option} {output} is a file this command reads ({Path.GetFullPath(input)}): writing it would destroy it. Give {option} another path.";
        return null;
    }

    /// <summary>
    /// The files of a run folder that a picture the CLI writes must not replace: its summary, model and every other file the
    /// run wrote (a <c>--plot RUN/curves.png</c>, <c>--heatmap RUN/curves.png</c> or <c>--filters RUN/curves.png</c> replaced
    /// the run's training curves).
    /// </summary>
    private static readonly string[] RunFileNames =
        [RunFiles.Summary, RunFiles.Curves, RunFiles.Model, RunFiles.LastGood, RunFiles.Steps, RunFiles.Epochs, RunFiles.Comparison];

    /// <summary>
    /// The error for an output path that names one of the files of the runs' folders (<see cref="RunFileNames"/>, links
    /// resolved; a run folder holds the run's summary or epochs file); null otherwise, also for another file inside a run folder,
    /// which changes nothing the run wrote.
    /// </summary>
    /// <param name="option">The output's option, for the message.</param>
    /// <param name="output">The output's full path.</param>
    /// <param name="verb">What the command does with the runs, for the message ("compares", "reads").</param>
    /// <param name="runs">The runs as given: run folders, or a file of one (its summary.json or model.safetensors, say); null
    /// entries are skipped.</param>
    public static string? OverwritesRunFile(string option, string output, string verb, IEnumerable<string?> runs)
    {
        foreach (var run in runs)
        {
            if (run is null) continue;
            var folder = Directory.Exists(run) ? Path.GetFullPath(run) : Path.GetDirectoryName(Path.GetFullPath(run));
            // A folder without a run's summary or epochs file (a model copied elsewhere, a checkpoints folder) has no run files.
            if (folder is null || !(System.IO.File.Exists(Path.Combine(folder, RunFiles.Summary)) || System.IO.File.Exists(Path.Combine(folder, RunFiles.Epochs)))) continue;
            foreach (var name in RunFileNames)
                if (SameFile(output, Path.Combine(folder, name)))
                    return $"{option} {output} is the {name} of the run in {folder}, which this command {verb}: writing it would replace that file. " +
                        $"Give {option} another path (another name in that folder will do).";
        }
        return null;
    }

    /// <summary>
    /// The error for a PNG output whose path does not end in <c>.png</c> (the file would hold PNG data under another
    /// name), or one inside any of <paramref name="folders"/> the command reads (a data folder's images, a run folder's
    /// files); null when it is neither.
    /// </summary>
    /// <param name="option">The output's option, for the message.</param>
    /// <param name="output">The output path as given.</param>
    /// <param name="folders">Folders the command reads; null entries and paths that are not folders are skipped.</param>
    public static string? BadPngOutput(string option, string output, params string?[] folders)
    {
        if (Directory.Exists(output))
            return $"{option} {output} is a folder: give the path of a PNG file to write, such as one inside that folder.";
        if (!output.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
            return $"{option} {output}: the picture is written as PNG, so give a file name ending in .png.";
        // Checked before any work, as export's --onnx is: the write at the end failed only after the command's output.
        if (Path.GetDirectoryName(Path.GetFullPath(output)) is { } parent && !Directory.Exists(parent))
            return $"{option} {output}: the folder {parent} does not exist. Create it or choose another path.";
        var target = Resolved(output);
        foreach (var folder in folders)
        {
            if (folder is null || !Directory.Exists(folder)) continue;
            var inside = Path.GetFullPath(folder).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
            if (target.StartsWith(inside, StringComparison.Ordinal))
                return $"{option} {output} is inside {Path.GetFullPath(folder)}, which this command reads: writing there would change its input. Give {option} a path outside it.";
        }
        return null;
    }

    /// <summary>True when <paramref name="first"/> and <paramref name="second"/> name one file: the same full path, symbolic links resolved.</summary>
    public static bool SameFile(string first, string second) => string.Equals(Resolved(first), Resolved(second), StringComparison.Ordinal);

    /// <summary>The full path, through a symbolic link to the file it points at.</summary>
    private static string Resolved(string path)
    {
        var full = Path.GetFullPath(path);
        try
        {
            return new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? full;
        }
        catch (IOException)
        {
            return full; // a link loop: the path as given
        }
    }

    private static T Register<T>(T symbol, string takes) where T : Symbol
    {
        TakesTable.AddOrUpdate(symbol, takes);
        return symbol;
    }

    /// <summary>A fraction option in (0, 1] with a default, e.g. a target accuracy of 0.88.</summary>
    public static Option<double> Fraction(string name, string description, string takes, double defaultValue, params string[] aliases) =>
        Register(new Option<double>(name, aliases)
        {
            Description = description,
            HelpName = "FRACTION",
            DefaultValueFactory = _ => defaultValue,
            CustomParser = r =>
            {
                var token = r.Tokens.Count > 0 ? r.Tokens[^1].Value : "";
                if (double.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value > 0 && value <= 1) return value;
                r.AddError($"{name} '{token}' is not a fraction in (0, 1]: {name} takes {takes}.");
                return defaultValue;
            },
        }, takes);

    private static int? ParseWholeNumber(ArgumentResult result, string name, string takes)
    {
        var token = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
        if (int.TryParse(token, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value)) return value;
        // A whole number past Int32 (--seed 99999999999) is one: say it is out of range, and what the range is.
        if (System.Numerics.BigInteger.TryParse(token, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var big))
        {
            result.AddError($"{name} '{token}' is out of range: it is {(big.Sign > 0 ? "larger" : "smaller")} than any whole number an option takes " +
                $"({int.MinValue:D} to {int.MaxValue:D}). {name} takes {takes}.");
            return null;
        }
        result.AddError($"{name} '{token}' is not a whole number: {name} takes {takes}.");
        return null;
    }
}
