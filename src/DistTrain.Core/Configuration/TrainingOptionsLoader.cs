using System.Buffers;
using System.Text.Json;
using DistTrain.Core.Data;
using Microsoft.Extensions.Configuration;

namespace DistTrain.Core.Configuration;

/// <summary>
/// Binds <see cref="TrainingOptions"/> from a JSON file, environment variables and overrides, and
/// validates the result.
/// </summary>
public static partial class TrainingOptionsLoader
{
    /// <summary>Prefix of environment variables that override keys: <c>DISTTRAIN_Optimizer__LearningRate=0.1</c>.</summary>
    public const string EnvironmentPrefix = "DISTTRAIN_";

    /// <summary>
    /// Variables of the <see cref="EnvironmentPrefix"/> that are not config keys: the switches of DistTrain's own test
    /// suite and scripts (<c>DISTTRAIN_NETNS_TESTS=1</c> and the like), named without it. Every other variable of the prefix
    /// must name a key, or loading fails naming the variable.
    /// </summary>
    public static readonly IReadOnlySet<string> NonConfigVariables =
        new HashSet<string>(["NETNS_TESTS", "MAIN_JOB_REPLAY", "CONTAINER_TESTS"], StringComparer.OrdinalIgnoreCase);

    /// <summary>Largest config file read, bytes (1 MiB; the committed configs are under 2 KB).</summary>
    public const long MaxFileBytes = 1 << 20;

    /// <summary>Loads, binds and validates.</summary>
    /// <param name="jsonPath">Config file; null binds defaults, environment and overrides only.</param>
    /// <param name="overrides">Keys such as <c>Training:Workers</c> with their values; applied last.</param>
    /// <param name="checkDataDirectory">Require that the data directory exists.</param>
    /// <param name="environment">Environment variables to read; null reads the process environment.</param>
    /// <exception cref="ConfigurationException">The file is missing, larger than <see cref="MaxFileBytes"/> or not valid JSON,
    /// a key is unknown, a value has the wrong type, or a value is out of range.</exception>
    public static TrainingOptions Load(string? jsonPath, IReadOnlyDictionary<string, string?>? overrides = null,
        bool checkDataDirectory = true, IReadOnlyDictionary<string, string?>? environment = null) =>
        Load(jsonPath, overrides, optionNames: null, checkDataDirectory, environment);

    /// <summary>
    /// The fix for a config file that is not there: the config of that name shipped beside the executable (the CLI's build output
    /// and the installed tool carry configs/), when there is one, else that folder, else the repository's configs/. A user of the
    /// installed tool, in a folder of their own, has no configs/ there.
    /// </summary>
    /// <param name="jsonPath">The path as given.</param>
    /// <param name="baseDirectory">The executable's folder; null for <see cref="AppContext.BaseDirectory"/>.</param>
    internal static string ShippedConfigHint(string jsonPath, string? baseDirectory = null)
    {
        var shipped = Path.Combine(baseDirectory ?? AppContext.BaseDirectory, "configs");
        var sameName = Path.Combine(shipped, Path.GetFileName(jsonPath));
        return File.Exists(sameName) ? $"Pass --config with an existing file; the {Path.GetFileName(jsonPath)} shipped with disttrain is {sameName}."
            : Directory.Exists(shipped) ? $"Pass --config with an existing file, such as one of the configs shipped with disttrain in {shipped}."
            : "Pass --config with a file from configs/.";
    }

    /// <summary>
    /// Loads, binds and validates, as <see cref="Load(string?, IReadOnlyDictionary{string, string?}?, bool, IReadOnlyDictionary{string, string?}?)"/>,
    /// naming the command-line option that set an override in its problems: <c>Training:BatchSizePerWorker = 0 (from a
    /// command-line option, --batch-size) is out of range</c>.
    /// </summary>
    /// <param name="jsonPath">Config file; null binds defaults, environment and overrides only.</param>
    /// <param name="overrides">Keys such as <c>Training:Workers</c> with their values; applied last.</param>
    /// <param name="optionNames">The option that sets each key of <paramref name="overrides"/> (<c>Training:BatchSizePerWorker</c>
    /// → <c>--batch-size</c>); an override whose key it lacks is named only as a command-line option. Null names none.</param>
    /// <param name="checkDataDirectory">Require that the data directory exists.</param>
    /// <param name="environment">Environment variables to read; null reads the process environment.</param>
    /// <exception cref="ConfigurationException">As the overload without <paramref name="optionNames"/>.</exception>
    public static TrainingOptions Load(string? jsonPath, IReadOnlyDictionary<string, string?>? overrides, IReadOnlyDictionary<string, string>? optionNames,
        bool checkDataDirectory = true, IReadOnlyDictionary<string, string?>? environment = null)
    {
        if (jsonPath is null) return Load("defaults", null, overrides, checkDataDirectory, environment, optionNames);
        var full = Path.GetFullPath(jsonPath);
        if (Directory.Exists(full))
            throw new ConfigurationException(jsonPath, [$"config file '{jsonPath}' is a folder ({full}), not a file. {ShippedConfigHint(jsonPath)}"]);
        if (!File.Exists(full))
            throw new ConfigurationException(jsonPath, [$"config file '{jsonPath}' not found (looked at {full}). {ShippedConfigHint(jsonPath)}"]);
        if (InputFile.PipeProblem(jsonPath, "config file") is { } pipe) throw new ConfigurationException(jsonPath, [pipe]);
        byte[] json;
        try
        {
            // Read here rather than through AddJsonFile, whose default file provider hides dot-files (configs/.local.json
            // would be "not found"); an unreadable file is one problem line below, not a crash.
            using var file = File.OpenRead(full);
            if (file.Length > MaxFileBytes)
                throw new ConfigurationException(jsonPath, [$"config file '{jsonPath}' has {file.Length:N0} bytes, more than the {MaxFileBytes:N0} a config may have. Is this the right file?"]);
            json = new byte[file.Length];
            file.ReadExactly(json);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigurationException(jsonPath, [$"config file '{jsonPath}' cannot be read ({e.Message}). Check its permissions."]);
        }
        return Load(jsonPath, json, overrides, checkDataDirectory, environment, optionNames);
    }

    /// <summary>Loads, binds and validates config JSON already in memory; <paramref name="source"/> names it in messages.</summary>
    /// <param name="source">The file's name as the user gave it (or "defaults").</param>
    /// <param name="json">The file's bytes; null binds defaults, environment and overrides only.</param>
    /// <param name="overrides">As <see cref="Load(string?, IReadOnlyDictionary{string, string?}?, bool, IReadOnlyDictionary{string, string?}?)"/>.</param>
    /// <param name="checkDataDirectory">Require that the data directory exists.</param>
    /// <param name="environment">Environment variables to read; null reads the process environment.</param>
    /// <param name="optionNames">The command-line option that sets each override's key, for messages; null names none.</param>
    /// <exception cref="ConfigurationException">As the file overload.</exception>
    internal static TrainingOptions Load(string source, byte[]? json, IReadOnlyDictionary<string, string?>? overrides,
        bool checkDataDirectory, IReadOnlyDictionary<string, string?>? environment, IReadOnlyDictionary<string, string>? optionNames = null)
    {
        // Bytes that are not UTF-8 (an image, a UTF-16 file) reached the parser as replacement characters, which it named as
        // byte 0xEF whatever the file held: named here by their own offset and value.
        if (json is not null && NotUtf8(json) is { } notText) throw new ConfigurationException(source, [notText]);
        // A setting given twice fails the JSON provider: the repeats are named, and the file is read without them, so the
        // rest of its problems are reported in the same go.
        var duplicates = json is not null ? DuplicateKeys(json, source) : [];
        if (duplicates.Count > 0) json = WithoutRepeatedSettings(json!);
        var builder = new ConfigurationBuilder();
        if (json is not null)
            builder.AddJsonStream(new MemoryStream(json, writable: false));
        var environmentKeys = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        IEnumerable<KeyValuePair<string, string?>> variables = environment
            ?? Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
                .Select(e => new KeyValuePair<string, string?>((string)e.Key, (string?)e.Value));
        var fromEnvironment = new List<KeyValuePair<string, string?>>();
        var keyless = new List<string>(); // variables whose key is empty or has an empty part: reported with the other problems
        foreach (var (name, value) in variables)
        {
            if (!name.StartsWith(EnvironmentPrefix, StringComparison.OrdinalIgnoreCase) || NonConfigVariables.Contains(name[EnvironmentPrefix.Length..])) continue;
            var key = name[EnvironmentPrefix.Length..].Replace("__", ":");
            // DISTTRAIN_ alone (DISTTRAIN_$KEY with KEY unset) or DISTTRAIN_Training__ names no key; it was reported as " is not a
            // known key" or "Training: is not a known key". Refused as every other variable of the prefix that names no key is.
            if (key.Split(':').Any(part => part.Length == 0))
            {
                keyless.Add($"environment variable {name} names no setting: " +
                    (key.Length == 0 ? $"nothing follows {EnvironmentPrefix}" : $"its key '{key}' has an empty part (__ at its start or end, or twice in a row)") +
                    $". Name the key after {EnvironmentPrefix}, with __ between its parts ({EnvironmentPrefix}Training__Epochs=5), or unset {name}.");
                continue;
            }
            // Keys match ignoring case, so two variables that differ only in case set one setting: which would win is up
            // to the order the environment lists them in (the in-memory source refused the second, a crash before).
            if (environmentKeys.TryGetValue(key, out var first))
                throw new ConfigurationException(source, [$"{string.Join(" and ", new[] { first, name }.Order(StringComparer.Ordinal))} both set " +
                    $"{key.Replace("__", ":")}: configuration keys are matched ignoring case, so these are one setting given twice. Unset one of them."]);
            environmentKeys[key] = name;
            fromEnvironment.Add(new(key, value));
        }
        builder.AddInMemoryCollection(fromEnvironment);
        if (overrides is not null)
            builder.AddInMemoryCollection(overrides);

        IConfiguration? file = null;
        if (json is not null)
        {
            try
            {
                file = new ConfigurationBuilder().AddJsonStream(new MemoryStream(json, writable: false)).Build();
            }
            catch (Exception e) when (e is InvalidDataException or FormatException or System.Text.Json.JsonException)
            {
                // Reported below, as the merged configuration fails the same way.
            }
        }

        // Where a key's value came from, for the error messages: the last layer that sets it wins. A key no layer sets
        // has its default; when a variable or option added the entry it belongs to (DISTTRAIN_Model__Layers__5__Type
        // appends a layer whose Units no one set), that entry is named, not the file.
        string Origin(string key)
        {
            if (overrides?.ContainsKey(key) == true)
                return optionNames?.TryGetValue(key, out var option) == true ? $"from a command-line option, {option}" : "from a command-line option";
            if (environmentKeys.TryGetValue(key, out var variable)) return $"from environment variable {variable}";
            if (EntriesOrigin(key) is { } entries) return entries;
            if (file is not null && (file[key] is not null || file.GetSection(key).GetChildren().Any())) return $"in {source}";
            var parts = key.Split(':');
            for (var length = parts.Length - 1; length > 0; length--)
            {
                if (!int.TryParse(parts[length - 1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _)) continue; // list entries only
                var entry = string.Join(':', parts[..length]);
                if (file is not null && file.GetSection(entry).GetChildren().Any()) break; // the entry is the file's: the key is its default
                var adding = environmentKeys.Where(kv => kv.Key.StartsWith(entry + ":", StringComparison.OrdinalIgnoreCase)).Select(kv => kv.Value)
                    .Order(StringComparer.Ordinal).ToList();
                if (overrides?.Keys.Any(k => k.StartsWith(entry + ":", StringComparison.OrdinalIgnoreCase)) == true)
                    return $"not set: the default of {entry}, which a command-line option adds";
                if (adding.Count > 0)
                    return $"not set: the default of {entry}, which environment variable{(adding.Count == 1 ? "" : "s")} {string.Join(", ", adding)} add{(adding.Count == 1 ? "s" : "")}";
            }
            return json is not null ? $"in {source}" : "default";
        }

        // A list (Model:InputShape) or section whose entries variables or options set, in part or whole: they are named,
        // with the file when it gives the other entries; null when none of its entries is set that way.
        string? EntriesOrigin(string key)
        {
            var prefix = key + ":";
            var options = overrides?.Keys.Where(k => k.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)).ToList() ?? [];
            var variables = environmentKeys.Where(kv => kv.Key.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)).Select(kv => kv.Value)
                .Order(StringComparer.Ordinal).ToList();
            if (options.Count == 0 && variables.Count == 0) return null;
            var from = new List<string>();
            if (options.Count > 0)
                from.Add(options.Select(k => optionNames?.GetValueOrDefault(k)).FirstOrDefault(o => o is not null) is { } option
                    ? $"from a command-line option, {option}" : "from a command-line option");
            if (variables.Count > 0) from.Add($"from environment variable{(variables.Count == 1 ? "" : "s")} {string.Join(", ", variables)}");
            // The file's entries that no variable or option replaces.
            var rest = file?.GetSection(key).AsEnumerable().Any(kv => kv.Value is not null
                && !environmentKeys.ContainsKey(kv.Key) && overrides?.ContainsKey(kv.Key) != true) == true;
            return string.Join(" and ", from) + (rest ? $"; the other entries in {source}" : "");
        }

        IConfigurationRoot configuration;
        try
        {
            configuration = builder.Build();
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or System.Text.Json.JsonException)
        {
            // The JSON provider refuses a key given twice, matched ignoring case ("LearningRate" and "learningrate") as "not valid
            // JSON: A duplicate key": the file is valid JSON, so the problem is named as what it is.
            throw new ConfigurationException(source, [.. duplicates, NotJson(e)]);
        }
        // A layer list longer than any model's is refused alone, before the checks below: their walks over the configuration's
        // keys grow with the square of its length (a config of 10,000 layers took minutes before its first problem).
        var layerCount = configuration.GetSection("Model:Layers").GetChildren().Count();
        if (layerCount > TrainingOptionsValidator.MaxLayers)
            throw new ConfigurationException(source, [AppendOrigin(TrainingOptionsValidator.TooManyLayers(layerCount), Origin)]);
        // Every category of problem is reported together: nulls, list gaps, unknown keys, values of the wrong type, then
        // out-of-range values. A key found wrong in one category is left out of the later ones (bound as its default, and
        // the validator's lines that name it dropped), so it is reported once, by its own problem, never as "= 0".
        var problems = new List<string>([.. duplicates, .. keyless]);
        var skipped = new List<string>();
        // A JSON null binds as zero or empty, not as the default, and would be reported as "= 0": refuse it by name.
        List<(string Key, bool List)> empties = [];
        var nulls = json is not null ? NullValues(json, out empties) : [];
        problems.AddRange(nulls.Select(key =>
            $"{key} is null in {source}: leave the key out to keep its default, or give it a value (null is not a setting)."));
        skipped.AddRange(nulls);
        // An empty object or list where one value belongs bound as zero or empty ("Training:Epochs = 0 is out of range" for {}):
        // say what is there.
        foreach (var (key, list) in empties.Where(empty => TakesOneValue(empty.Key)))
        {
            problems.Add($"{key} is an empty {(list ? "list ([])" : "object ({})")} in {source}, but it takes one value: give it a value, or leave the key " +
                "out to keep its default.");
            skipped.Add(key);
        }
        // A list index past the end (DISTTRAIN_Model__Layers__7__Type on a file of 5 layers) would be compacted by the binder
        // into the next free index, and reported, if at all, under that index and the file's name: refuse it by its own.
        var gapLists = new List<string>();
        problems.AddRange(ListGaps(configuration, file, json is not null, source, Origin, environmentKeys, overrides, gapLists));
        skipped.AddRange(gapLists);
        // An unknown key set by a variable names the variable: the file may not hold it at all.
        foreach (var found in UnknownKeys.Find(configuration, typeof(TrainingOptions)))
        {
            if (IsUnder(found.Path, nulls)) continue; // reported as null
            // A variable of the key itself is replaced by an option that sets the key; one of an entry inside it is not
            // (DISTTRAIN_Training__Epochs__0 under --epochs 3 makes Training:Epochs a list all the same), and is named.
            var overridden = overrides?.ContainsKey(found.Path) == true;
            var setBy = environmentKeys.Where(kv => (!overridden && kv.Key.Equals(found.Path, StringComparison.OrdinalIgnoreCase))
                || kv.Key.StartsWith(found.Path + ":", StringComparison.OrdinalIgnoreCase)).Select(kv => kv.Value).Order(StringComparer.Ordinal).ToList();
            problems.Add(setBy.Count == 0 ? found.Problem
                : $"{found.Problem} (from environment variable{(setBy.Count == 1 ? "" : "s")} {string.Join(", ", setBy)})");
            skipped.Add(found.Path);
            // A misspelt key (Model:Layerz) leaves the key it stands for at its default: its checks would blame that default.
            // Unless that key is set too (lr beside LearningRate): then its own value is checked as usual.
            if (System.Text.RegularExpressions.Regex.Match(found.Problem, "Did you mean '([^']+)'") is { Success: true } meant
                && configuration.GetSection(meant.Groups[1].Value) is var section && section.Value is null && !section.GetChildren().Any())
                skipped.Add(meant.Groups[1].Value);
        }

        // An enum key takes one of its names (ignoring case). The binder would also take a number, as a position in the list
        // of names (Training:Mode 3 is LocalSgd), and names joined by commas, their positions or-ed together ("Async,
        // BoundedStaleness" is LocalSgd too): every enum key is checked here, before the binder reads it.
        foreach (var (key, value) in configuration.AsEnumerable().Where(kv => kv.Value is not null).OrderBy(kv => kv.Key, StringComparer.Ordinal).ToList())
        {
            if (IsUnder(key, skipped) || EnumProblem(key, value!, Origin(key)) is not { } problem) continue;
            problems.Add(problem);
            skipped.Add(key);
        }
        // A file value that a variable or an option overrides is not bound, but the file is used again without the override (on
        // another node, in another shell): its type is checked all the same, as the file's nulls and unknown keys are.
        if (file is not null) problems.AddRange(OverriddenFileValues(file, source, Origin, skipped));
        // Likewise a variable's value that a command-line option overrides: the variable stays set in the shell for later runs.
        if (overrides is not null) problems.AddRange(OverriddenVariableValues(fromEnvironment, environmentKeys, overrides, Origin, skipped));

        var options = BindEachKey(configuration, problems, Origin, skipped);
        // A Dropout's Rate of 0 given is told from none given (the bound value is 0 either way) by its key.
        for (var i = 0; i < options.Model.Layers.Count; i++)
            options.Model.Layers[i].RateGiven = configuration[$"Model:Layers:{i}:Rate"] is not null;
        if (!IsUnder("Model:Layers", skipped)) problems.AddRange(ZeroStrides(configuration, options.Model, Origin));
        // A run folder stands for its model, as for 'finetune --from' (RunFiles.ModelIn): every user of the setting then reads the file.
        if (!IsUnder("Model:Pretrained", skipped) && options.Model.Pretrained is { Length: > 0 } pretrained && Directory.Exists(pretrained))
        {
            if (File.Exists(Path.Combine(pretrained, Checkpoints.RunFiles.Model))) options.Model.Pretrained = Checkpoints.RunFiles.ModelIn(pretrained);
            else problems.Add($"Model:Pretrained = '{Shown(pretrained)}' ({Origin("Model:Pretrained")}) {Checkpoints.RunFiles.FolderWithoutModel(pretrained)}");
        }
        // The file's own secret, whatever overrides it: the file travels (version control, images), and the secret with it.
        if (!string.IsNullOrEmpty(file?["Cluster:Secret"]))
            problems.Add(Origin("Cluster:Secret") is var secretFrom && secretFrom.StartsWith("in ", StringComparison.Ordinal)
                ? $"Cluster:Secret is set in {source}: a secret in a config file travels with it (version control, images). " +
                  "Put it in a file named by Cluster:SecretFile, or in the environment variable DISTTRAIN_Cluster__Secret."
                : $"Cluster:Secret is set in {source}, although it is also set {secretFrom}: a secret in a config file travels with it " +
                  $"(version control, images), overridden or not. Remove it from {source}; the one {secretFrom} is enough.");
        if (!IsUnder("Data:Format", skipped) && overrides?.ContainsKey("Data:Directory") == true && options.Data.Format != DataFormat.Idx)
            problems.Add(DirectoryOfOtherFormat(options.Data, source));
        problems.AddRange(TrainingOptionsValidator.Validate(options, checkDataDirectory)
            .Where(problem => !skipped.Any(key => Names(problem, key)))
            .Select(problem => MissingLayerSetting(problem, configuration, options.Model, Origin) ?? AppendOrigin(problem, Origin)));
        if (problems.Count > 0)
            throw new ConfigurationException(source, problems);
        return options;
    }

    /// <summary>
    /// One problem per list (a section whose children are all whole-number indices, such as Model:Layers or
    /// Model:InputShape) whose indices are not 0, 1, 2, ... without a gap: the configuration binder would compact them,
    /// so an entry set at index 7 of a 5-entry list would become entry 5 and be reported, if at all, under the wrong index
    /// and source. Names the first index past the gap, where it was set (the environment variable or variables, a
    /// command-line option, or the file) and how many consecutive entries the list has, and in the file alone.
    /// </summary>
    /// <param name="configuration">The merged configuration.</param>
    /// <param name="file">The config file alone, to count a list's entries in it; null when there is none.</param>
    /// <param name="hasFile">True when a config file was read.</param>
    /// <param name="source">The file's name as the user gave it.</param>
    /// <param name="origin">Where a key's value came from (as in the other problems).</param>
    /// <param name="environmentKeys">Config keys set by environment variables, with the variables' names.</param>
    /// <param name="overrides">Keys set on the command line.</param>
    /// <param name="lists">When given, receives the path of each list with a gap.</param>
    internal static List<string> ListGaps(IConfiguration configuration, IConfiguration? file, bool hasFile, string source, Func<string, string> origin,
        IReadOnlyDictionary<string, string> environmentKeys, IReadOnlyDictionary<string, string?>? overrides, List<string>? lists = null)
    {
        var problems = new List<string>();
        Visit(configuration);
        return problems;

        void Visit(IConfiguration section)
        {
            foreach (var child in section.GetChildren())
            {
                var items = child.GetChildren().ToList();
                var indices = items.Select(item => int.TryParse(item.Key, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var i) ? i : -1).ToList();
                if (items.Count > 0 && indices.All(i => i >= 0))
                {
                    var present = indices.ToHashSet();
                    var consecutive = 0;
                    while (present.Contains(consecutive)) consecutive++;
                    if (consecutive < items.Count)
                    {
                        var list = child.Path;
                        lists?.Add(list);
                        var stray = indices.Where(i => i > consecutive).Min();
                        var key = $"{list}:{stray.ToString(System.Globalization.CultureInfo.InvariantCulture)}";
                        var inFile = file?.GetSection(list).GetChildren().Count() ?? 0;
                        var fileCount = !hasFile ? "" : $"; the list in {source} has {inFile} entr{(inFile == 1 ? "y" : "ies")}";
                        problems.Add($"{key} ({Where(key)}) leaves a gap in {list}: list indices must be consecutive from 0, and {list} has " +
                            $"{consecutive} entr{(consecutive == 1 ? "y" : "ies")} before it ({(consecutive == 0 ? "none" : $"0 to {consecutive - 1}")}){fileCount}. " +
                            $"Set {list}:{consecutive.ToString(System.Globalization.CultureInfo.InvariantCulture)} instead, or give the entries in between too.");
                    }
                    if (items.Count > 0) foreach (var item in items) Visit(item);
                    continue;
                }
                Visit(child);
            }
        }

        // Every variable or option that sets the entry or a key inside it; else the file.
        string Where(string key)
        {
            var variables = environmentKeys.Where(kv => kv.Key.Equals(key, StringComparison.OrdinalIgnoreCase)
                || kv.Key.StartsWith(key + ":", StringComparison.OrdinalIgnoreCase)).Select(kv => kv.Value).Order(StringComparer.Ordinal).ToList();
            if (overrides?.Keys.Any(k => k.Equals(key, StringComparison.OrdinalIgnoreCase) || k.StartsWith(key + ":", StringComparison.OrdinalIgnoreCase)) == true)
                return "from a command-line option";
            if (variables.Count > 0)
                return $"from environment variable{(variables.Count == 1 ? "" : "s")} {string.Join(", ", variables)}";
            return origin(key);
        }
    }

    /// <summary>
    /// The keys (<c>Training:Epochs</c>, <c>Model:Layers:0</c>) whose value in <paramref name="json"/> is a JSON null, in
    /// file order; <paramref name="empties"/> gets the keys whose value is an empty object or list (<c>{}</c>, <c>[]</c>), with
    /// which of the two, in file order. Read with the JSON configuration provider's leniency (comments, trailing commas);
    /// called only on a file that provider has read.
    /// </summary>
    internal static List<string> NullValues(byte[] json, out List<(string Key, bool List)> empties)
    {
        var keys = new List<string>();
        var found = empties = [];
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException)
        {
            return keys; // what the provider read, this reader refuses: the provider's own checks stand
        }
        using var _ = document;
        try
        {
            Visit(document.RootElement, "");
        }
        catch (InvalidOperationException)
        {
            // A property name that is not valid UTF-8: the provider reports the file as it reads it.
        }
        return keys;
        void Visit(JsonElement element, string key)
        {
            switch (element.ValueKind)
            {
                case JsonValueKind.Null:
                    keys.Add(key);
                    break;
                case JsonValueKind.Object:
                    if (key.Length > 0 && !element.EnumerateObject().Any()) found.Add((key, false));
                    foreach (var property in element.EnumerateObject())
                        Visit(property.Value, key.Length == 0 ? property.Name : $"{key}:{property.Name}");
                    break;
                case JsonValueKind.Array:
                    if (element.GetArrayLength() == 0) found.Add((key, true));
                    var index = 0;
                    foreach (var item in element.EnumerateArray())
                        Visit(item, $"{key}:{index++}");
                    break;
            }
        }
    }

    /// <summary>True when <paramref name="key"/> binds to one value (a number, true or false, a name, a text), not to a section or a list.</summary>
    private static bool TakesOneValue(string key) =>
        KeyType(key) is { } type && (Nullable.GetUnderlyingType(type) ?? type) is var core && (core.IsPrimitive || core.IsEnum || core == typeof(string) || core == typeof(decimal));

    /// <summary>
    /// One problem per setting that <paramref name="json"/> gives more than once, as the JSON configuration provider matches keys,
    /// ignoring case: <c>"LearningRate"</c> and <c>"learningrate"</c> in one object, or in two objects of the same section
    /// (<c>"Optimizer"</c> and <c>"optimizer"</c>, which merge), or the same key twice. Each names the setting, every spelling
    /// with its line and the fix, keeping one. A list given twice (<c>"InputShape"</c> and <c>"inputshape"</c>) is named once,
    /// not per entry. Empty when there is none, or when <paramref name="json"/> is not JSON (read with the provider's leniency:
    /// comments, trailing commas), which is reported as such.
    /// </summary>
    /// <param name="json">The config file's bytes.</param>
    /// <param name="source">The file's name as the user gave it.</param>
    internal static List<string> DuplicateKeys(byte[] json, string source)
    {
        // Every value that is not an object or a list (the provider's keys), with the path to it: each step's name as written,
        // where its token starts (a property's name, a list entry's value) and whether its value is a list.
        var leaves = new List<List<(string Name, int Offset, bool List)>>();
        // A byte-order mark, which the JSON provider accepts, would stop the reader at its first byte.
        var start = json.AsSpan().StartsWith(System.Text.Encoding.UTF8.Preamble) ? System.Text.Encoding.UTF8.Preamble.Length : 0;
        var reader = new Utf8JsonReader(json.AsSpan(start), new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        try
        {
            if (!reader.Read()) return [];
            Visit(ref reader, []);
            // Bytes after the value make the file no JSON at all (the reader throws on them): the provider's error says so, and
            // the rewrite without repeats, which parses the whole file, is never asked for.
            if (reader.Read()) return [];
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException) // not JSON, or a name that is not UTF-8: the provider's error says so
        {
            return [];
        }
        var problems = new List<string>();
        var reported = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var group in leaves.GroupBy(path => string.Join(':', path.Select(step => step.Name)), StringComparer.OrdinalIgnoreCase).Where(g => g.Count() > 1))
        {
            var first = group.First();
            // Each repeat, reduced to the setting it repeats: a list given twice is one setting, however many entries collide.
            var givings = new List<(string Key, int Offset)>();
            foreach (var other in group.Skip(1))
            {
                var split = Enumerable.Range(0, first.Count).First(i => i == first.Count - 1 || first[i].Offset != other[i].Offset);
                foreach (var path in new[] { first, other })
                {
                    var end = first[split].List && other[split].List ? split
                        : path.FindLastIndex(step => !int.TryParse(step.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _));
                    givings.Add((string.Join(':', path.Take(end + 1).Select(step => step.Name)), path[end].Offset));
                }
            }
            var distinct = givings.DistinctBy(g => g.Offset).OrderBy(g => g.Offset).ToList();
            var key = distinct[0].Key;
            if (distinct.Count < 2 || !reported.Add(key)) continue;
            var times = distinct.Count == 2 ? "twice" : $"{distinct.Count} times";
            var spellings = distinct.Select(g => g.Key).Distinct(StringComparer.Ordinal).Count();
            // The spelling of the last step alone when the steps before it are spelt alike.
            var parentsAlike = distinct.Select(g => g.Key[..Math.Max(0, g.Key.LastIndexOf(':'))]).Distinct(StringComparer.Ordinal).Count() == 1;
            // Givings that share a line (a one-line file, or a section given twice on one line) are told apart by their columns.
            var lines = distinct.Select(g => Line(g.Offset)).ToList();
            var shown = distinct.Select((g, i) => $"\"{(parentsAlike ? g.Key[(g.Key.LastIndexOf(':') + 1)..] : g.Key)}\" on line {lines[i]}" +
                (lines.Count(line => line == lines[i]) > 1 ? $", column {Column(g.Offset)}" : "")).ToList();
            var list = string.Join(", ", shown[..^1]) + " and " + shown[^1];
            problems.Add(spellings > 1
                ? $"{key} is given {times} in {source}, as {list}: keys are matched ignoring case, so these are one setting, and the file is refused " +
                  "(it is valid JSON, but a setting takes one value). Keep one of them."
                : $"{key} is given {times} in {source}, as {list}: a setting takes one value, and the file is refused. Keep one of them.");
        }
        return problems;

        int Line(int offset) => json.AsSpan(0, start + offset).Count((byte)'\n') + 1;

        // In characters from 1, as an editor counts them.
        int Column(int offset)
        {
            var before = json.AsSpan(0, start + offset);
            return System.Text.Encoding.UTF8.GetCharCount(before[Math.Max(start, before.LastIndexOf((byte)'\n') + 1)..]) + 1; // a byte-order mark is no column
        }

        void Visit(ref Utf8JsonReader reader, List<(string Name, int Offset, bool List)> path)
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.StartObject:
                    while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                    {
                        var name = reader.GetString()!;
                        var offset = (int)reader.TokenStartIndex;
                        reader.Read();
                        Visit(ref reader, [.. path, (name, offset, reader.TokenType == JsonTokenType.StartArray)]);
                    }
                    break;
                case JsonTokenType.StartArray:
                    var index = 0;
                    while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                        Visit(ref reader, [.. path, ((index++).ToString(System.Globalization.CultureInfo.InvariantCulture), (int)reader.TokenStartIndex, reader.TokenType == JsonTokenType.StartArray)]);
                    break;
                default:
                    if (path.Count > 0) leaves.Add(path);
                    break;
            }
        }
    }

    /// <summary>
    /// <paramref name="json"/> as the JSON configuration provider would read it if each setting were given once: the first
    /// value of every setting that <see cref="DuplicateKeys"/> finds repeated is kept (a scalar or a whole list, matched by its
    /// path ignoring case), later ones are left out (also a value and an object under one key, whichever came first), and
    /// objects of one section still merge. Comments and trailing commas are
    /// dropped. Called only on a file that has repeats; the file is refused for them all the same.
    /// </summary>
    /// <param name="json">A config file's bytes that <see cref="DuplicateKeys"/> read as JSON.</param>
    internal static byte[] WithoutRepeatedSettings(byte[] json)
    {
        var start = json.AsSpan().StartsWith(System.Text.Encoding.UTF8.Preamble) ? System.Text.Encoding.UTF8.Preamble.Length : 0;
        using var document = JsonDocument.Parse(json.AsMemory(start), new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        var given = new Dictionary<string, bool>(StringComparer.OrdinalIgnoreCase); // each key given, and whether as an object
        var output = new ArrayBufferWriter<byte>(json.Length);
        using (var writer = new Utf8JsonWriter(output))
            Write(document.RootElement, "", writer);
        return output.WrittenSpan.ToArray();

        void Write(JsonElement element, string path, Utf8JsonWriter writer)
        {
            switch (element.ValueKind)
            {
                case JsonValueKind.Object:
                    writer.WriteStartObject();
                    foreach (var property in element.EnumerateObject())
                    {
                        var key = path.Length == 0 ? property.Name : $"{path}:{property.Name}";
                        // A repeat: the first stands. Two objects of one section merge; any other repeat (a value, a list, or a
                        // value and an object) is left out, so the provider reads the rest without a conflict.
                        var isObject = property.Value.ValueKind == JsonValueKind.Object;
                        if (given.TryGetValue(key, out var wasObject) && !(isObject && wasObject)) continue;
                        given[key] = isObject;
                        writer.WritePropertyName(property.Name);
                        Write(property.Value, key, writer);
                    }
                    writer.WriteEndObject();
                    break;
                case JsonValueKind.Array:
                    writer.WriteStartArray();
                    var index = 0;
                    foreach (var item in element.EnumerateArray())
                        Write(item, $"{path}:{(index++).ToString(System.Globalization.CultureInfo.InvariantCulture)}", writer);
                    writer.WriteEndArray();
                    break;
                default:
                    element.WriteTo(writer);
                    break;
            }
        }
    }

    /// <summary>
    /// The validator's <paramref name="problem"/> about a layer's Type (<c>Model:Layers:0:Type = '' is unknown</c>) or a setting
    /// its type needs (<c>Model:Layers:0:Units = 0 is out of range</c>), told as what it is when no source gives the key: the
    /// key is missing, with what it is, its range and an entry that has it. Null for any other problem, and when the key is
    /// given (a Units of 0 written as such is out of range).
    /// </summary>
    /// <param name="problem">One of the validator's problems, before its origin is added.</param>
    /// <param name="configuration">The merged configuration, to tell a key left out from one given.</param>
    /// <param name="model">The bound model section.</param>
    /// <param name="origin">Where a key's value came from (as in the other problems).</param>
    private static string? MissingLayerSetting(string problem, IConfiguration configuration, Models.ModelOptions model, Func<string, string> origin)
    {
        var match = System.Text.RegularExpressions.Regex.Match(problem, @"^Model:Layers:(\d+):(\w+) = ");
        if (!match.Success || !int.TryParse(match.Groups[1].Value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var i)
            || i >= model.Layers.Count) return null;
        var setting = match.Groups[2].Value;
        var entry = $"Model:Layers:{i.ToString(System.Globalization.CultureInfo.InvariantCulture)}";
        var key = $"{entry}:{setting}";
        if (configuration[key] is not null) return null;
        // The entry's origin: the file, or the variables or options that add it (named by where its Type, or its first key, came from).
        var from = origin(key);
        var where = from.StartsWith("in ", StringComparison.Ordinal) ? from
            : configuration.GetSection(entry).AsEnumerable().Where(kv => kv.Value is not null).Select(kv => kv.Key).Order(StringComparer.Ordinal).FirstOrDefault() is { } given
                ? $"layer {i} comes {origin(given)}" : from;
        if (setting.Equals(nameof(Models.LayerOptions.Type), StringComparison.OrdinalIgnoreCase) && problem.Contains(" is unknown", StringComparison.Ordinal))
            return $"{key} is missing ({where}): every layer needs a Type, one of {string.Join(", ", Models.LayerTypes.All)}. " +
                $"Add \"Type\" to layer {i}, such as \"Type\": \"Dense\".";
        if (Models.LayerTypes.Canonical(model.Layers[i].Type) is not { } type || !problem.Contains(" is out of range", StringComparison.Ordinal)
            || TrainingOptionsValidator.RequiredLayerSettings(type).FirstOrDefault(r => r.Key.Equals(setting, StringComparison.OrdinalIgnoreCase)) is not { Key: not null } required)
            return null;
        var example = string.Join(", ", TrainingOptionsValidator.RequiredLayerSettings(type).Select(r => $"\"{r.Key}\": {(r.Key == nameof(Models.LayerOptions.Units) ? 10 : r.Key == nameof(Models.LayerOptions.Channels) ? 32 : type == Models.LayerTypes.Conv2D ? 3 : 2)}"));
        return $"{key} is missing ({where}): a{(type.StartsWith('A') ? "n" : "")} {type} layer needs {required.Key}, {required.What}, 1 to {required.Max.ToString(System.Globalization.CultureInfo.InvariantCulture)}" +
            $"{(type == Models.LayerTypes.Dense ? " (the last Dense layer's Units are the number of classes)" : "")}. Add it to layer {i}, such as {{\"Type\": \"{type}\", {example}}}.";
    }

    /// <summary>
    /// A Stride of 0 set for a Conv2D or pooling layer: bound, 0 stands for the key left out (the default), so only the
    /// configuration tells the two apart. PyTorch refuses a stride of 0; so does DistTrain, naming the default to get by
    /// leaving the key out.
    /// </summary>
    private static IEnumerable<string> ZeroStrides(IConfiguration configuration, Models.ModelOptions model, Func<string, string> origin)
    {
        for (var i = 0; i < model.Layers.Count; i++)
        {
            var key = $"Model:Layers:{i.ToString(System.Globalization.CultureInfo.InvariantCulture)}:Stride";
            var type = Models.LayerTypes.Canonical(model.Layers[i]?.Type);
            if (configuration[key] is null || model.Layers[i].Stride != 0
                || type is not (Models.LayerTypes.Conv2D or Models.LayerTypes.MaxPool2D or Models.LayerTypes.AvgPool2D)) continue;
            var fallback = type == Models.LayerTypes.Conv2D ? "1" : $"the kernel size ({model.Layers[i].KernelSize.ToString(System.Globalization.CultureInfo.InvariantCulture)})";
            yield return $"{key} = 0 ({origin(key)}) is out of range: strides are at least 1, as in PyTorch. " +
                $"Leave out Stride for the {type} default, {fallback}, or set 1 to 1024.";
        }
    }

    /// <summary>
    /// The refusal of Data:Directory given on the command line (<c>--data</c>) for a format that does not read it, rather
    /// than training on the configured files as if it had been used: names the format's own path settings.
    /// </summary>
    private static string DirectoryOfOtherFormat(DataOptions data, string source)
    {
        var (train, test) = data.Format == DataFormat.Csv
            ? ("Data:Csv:TrainFile", "Data:Csv:TestFile")
            : ("Data:ImageFolder:TrainDirectory", "Data:ImageFolder:TestDirectory");
        return $"Data:Directory = '{data.Directory}' (from a command-line option, --data) is the folder of IDX files, but Data:Format is {data.Format}, " +
            $"which reads {train} (and {test}) instead. Set those in {source}, or in the environment ({EnvironmentPrefix}{train.Replace(":", "__", StringComparison.Ordinal)}), and leave out --data.";
    }

    /// <summary>
    /// Binds the configuration, less the keys of <paramref name="skipped"/> (reported already; they keep their defaults);
    /// if that fails, binds key by key so that every value of the wrong type is reported, not just the first, adds those
    /// keys to <paramref name="skipped"/> and binds the rest.
    /// </summary>
    private static TrainingOptions BindEachKey(IConfiguration configuration, List<string> problems, Func<string, string> origin, List<string> skipped)
    {
        // A key inside a list entry is skipped with its whole list: leaving out one entry would renumber the ones after it.
        for (var i = 0; i < skipped.Count; i++) skipped[i] = ListOf(skipped[i]);
        IConfiguration Without(List<string> keys) => keys.Count == 0 ? configuration
            : new ConfigurationBuilder().AddInMemoryCollection(configuration.AsEnumerable()
                .Where(kv => kv.Value is not null && !IsUnder(kv.Key, keys))).Build();
        // The binder reads a whole number through Int32Converter, which also takes hexadecimal (0x10, #10, &H10 are all 16): a
        // whole-number key takes digits only, as JSON writes it, so that a typo or a stray '#' is never read as another number.
        foreach (var (key, value) in Without(skipped).AsEnumerable().Where(kv => kv.Value is not null).OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (KeyType(key) is not { } type || (Nullable.GetUnderlyingType(type) ?? type) is var core && core != typeof(int) && core != typeof(long)) continue;
            var text = value!.Trim();
            if (HasOnlyDigits(text.StartsWith('-') || text.StartsWith('+') ? text[1..] : text) || !BindsAsWholeNumber(core, value)) continue; // the rest the binder refuses
            problems.Add($"{key} = '{Shown(value, origin(key))}' ({origin(key)}) is not valid: expected a whole number written in digits (it is not read as " +
                "hexadecimal, nor with a '#' or '&H' in front).");
            skipped.Add(ListOf(key));
        }
        var bindable = Without(skipped);
        try
        {
            var options = new TrainingOptions();
            bindable.Bind(options, o => o.ErrorOnUnknownConfiguration = true);
            return options;
        }
        catch (InvalidOperationException)
        {
            // Found below, key by key.
        }
        var before = problems.Count;
        var failed = new List<string>();
        foreach (var leaf in bindable.AsEnumerable().Where(kv => kv.Value is not null).OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            var single = new ConfigurationBuilder().AddInMemoryCollection([leaf]).Build();
            try
            {
                // As the whole bind: a list element of the wrong type is an error, not silently dropped.
                single.Bind(new TrainingOptions(), o => o.ErrorOnUnknownConfiguration = true);
            }
            catch (InvalidOperationException e)
            {
                failed.Add(ListOf(leaf.Key));
                problems.Add(TypeProblem(bindable, leaf.Key, leaf.Value!, origin(leaf.Key), e));
            }
        }
        skipped.AddRange(failed);
        // Into fresh options: the failed bind above set what it reached before the bad key, and binding again into those
        // would append every list a second time (Model:InputShape [1, 28, 28, 1, 28, 28], ClassNames repeated).
        var rest = new TrainingOptions();
        try
        {
            Without(skipped).Bind(rest, o => o.ErrorOnUnknownConfiguration = true);
            if (problems.Count > before) return rest;
        }
        catch (InvalidOperationException)
        {
            // Below.
        }
        problems.Add("the configuration does not bind to the options, although every key binds on its own. Check the lists (Model:Layers, Model:InputShape) for mixed entries.");
        skipped.Add(""); // nothing bound: no range check can be trusted
        return rest;
    }

    /// <summary>
    /// One problem per value of the config file that a variable or a command-line option overrides and that is not of its
    /// key's type (<c>"Epochs": "two"</c> under <c>--epochs 1</c>), or not a name for an enum key: the override is bound, not
    /// the file's value, but the file is used again without it. Keys reported already (<paramref name="skipped"/>: nulls, list
    /// gaps, unknown keys) are left out; the range of a value is not checked, as only the override is bound.
    /// </summary>
    /// <param name="file">The config file alone.</param>
    /// <param name="source">The file's name as the user gave it.</param>
    /// <param name="origin">Where a key's value came from (as in the other problems).</param>
    /// <param name="skipped">Keys reported already.</param>
    private static List<string> OverriddenFileValues(IConfiguration file, string source, Func<string, string> origin, List<string> skipped)
    {
        var problems = new List<string>();
        foreach (var (key, value) in file.AsEnumerable().Where(kv => kv.Value is not null).OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            var from = origin(key);
            if (from.StartsWith("in ", StringComparison.Ordinal) || IsUnder(key, skipped)) continue;
            var where = $"in {source}; the value this run uses comes {from}";
            if ((EnumProblem(key, value!, where) ?? TypeProblem(file, key, value!, where)) is { } problem)
                problems.Add($"{problem} Correct it in {source} too: the file's value applies wherever the file is used without the override.");
        }
        return problems;
    }

    /// <summary>
    /// One problem per environment variable that a command-line option overrides and whose value is not of its key's type
    /// (<c>DISTTRAIN_Training__Epochs=abc</c> under <c>--epochs 1</c>), or not a name for an enum key: the option is bound,
    /// not the variable, but the variable stays set for the runs without the option. As <see cref="OverriddenFileValues"/>.
    /// </summary>
    /// <param name="variables">The variables' keys (<c>Training:Epochs</c>) and values.</param>
    /// <param name="names">Each key's variable name.</param>
    /// <param name="overrides">The command-line options' keys and values.</param>
    /// <param name="origin">Where a key's value came from (as in the other problems).</param>
    /// <param name="skipped">Keys reported already.</param>
    private static List<string> OverriddenVariableValues(List<KeyValuePair<string, string?>> variables, Dictionary<string, string> names,
        IReadOnlyDictionary<string, string?> overrides, Func<string, string> origin, List<string> skipped)
    {
        var problems = new List<string>();
        var context = new ConfigurationBuilder().AddInMemoryCollection(variables).Build();
        foreach (var (key, value) in variables.Where(kv => kv.Value is not null && overrides.Keys.Any(k => k.Equals(kv.Key, StringComparison.OrdinalIgnoreCase))).OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (IsUnder(key, skipped)) continue;
            var where = $"from environment variable {names[key]}; the value this run uses comes {origin(key)}";
            if ((EnumProblem(key, value!, where) ?? TypeProblem(context, key, value!, where)) is { } problem)
                problems.Add($"{problem} Correct or unset {names[key]} too: it applies to every run in this shell without the option.");
        }
        return problems;
    }

    /// <summary>
    /// The problem of <paramref name="value"/>, which the binder refused for <paramref name="key"/> with <paramref name="e"/>:
    /// what the key takes (a whole number, a number, true or false, an enum's names, with the closest to a misspelt one), or,
    /// for a whole number too large for its key, the key's range.
    /// </summary>
    /// <param name="context">The configuration the key is in, for the key's range when it depends on its list entry.</param>
    /// <param name="key">The key.</param>
    /// <param name="value">Its value.</param>
    /// <param name="origin">Where the value came from, as the other problems name it (<c>in test.json</c>).</param>
    /// <param name="e">The binder's exception.</param>
    private static string TypeProblem(IConfiguration context, string key, string value, string origin, InvalidOperationException e)
    {
        // The key's type from the options' own properties: the binder names it only for a property, not for a list
        // element (Data:Classes:0, Model:Layers:0:Units), whose message it wraps.
        var type = KeyType(key);
        var expected = type?.FullName ?? (e.Message.Contains("to type '", StringComparison.Ordinal)
            ? e.Message[(e.Message.IndexOf("to type '", StringComparison.Ordinal) + 9)..].Split('\'')[0]
            : null);
        var names = type is { IsEnum: true } ? Enum.GetNames(type)
            : expected is not null && expected.StartsWith("DistTrain", StringComparison.Ordinal) && Type.GetType(expected + ", DistTrain.Core") is { IsEnum: true } enumType
            ? Enum.GetNames(enumType)
            : null;
        var allowed = names is not null
            ? $"one of {string.Join(", ", names)}"
            : expected switch
            {
                "System.Int32" or "System.Int64" => "a whole number",
                "System.Double" or "System.Single" or "System.Decimal" => "a number",
                "System.Boolean" => "true or false",
                null => "a value of the key's documented type (see the Configuration table of README.md)",
                _ => expected,
            };
        // A misspelt name (Asynch, PerTensr) gets the closest allowed one; two edits at most, so "Lion" suggests no optimizer.
        var hint = names is not null && NameSuggestions.Closest(value, names, maxDistance: 2) is { } closest ? $" Did you mean '{closest}'?" : "";
        // A whole number too large for the key (99999999999, or 1e10 or 1e400 as JSON may write it, for an Int32) is one, but out
        // of range: say so, with the key's own range when it has one (Training:Epochs: [1, 10000]), else Int32's.
        // A whole number in range written with an exponent (1e3) is not read: say how to write it.
        var whole = WholeNumber(value);
        if (expected == "System.Int32" && whole is { } big && (big > int.MaxValue || big < int.MinValue))
            return $"{key} = '{Shown(value)}' ({origin}) is out of range: " +
                // A key whose range reaches Int32's bound on the value's side (Data:TrainLimit: [0, 2147483647]) is probed at the
                // other bound, so the message gives its own range rather than Int32's (which said -2147483648 was allowed).
                ((KeyRange(context, key, big > 0 ? int.MaxValue : int.MinValue) ?? KeyRange(context, key, big > 0 ? int.MinValue : int.MaxValue)) is { } range
                    ? $"{range}." : $"expected a whole number from {int.MinValue:D} to {int.MaxValue:D}.");
        if (expected == "System.Int32" && whole is { } inRange)
            return $"{key} = '{Shown(value)}' ({origin}) is not valid: expected a whole number written in digits, such as {inRange.ToString("F0", System.Globalization.CultureInfo.InvariantCulture)}.";
        return $"{key} = '{Shown(value, origin)}' ({origin}) is not valid: expected {allowed}.{hint}{ClassNameHint(key, value)}";
    }

    /// <summary>
    /// For a Data:Classes entry that is not a number (<c>virginica</c>), what the list takes: class indices, a name's being its
    /// place among the data's class names in ordinal order (as CSV labels and image sub-folders are numbered), which the data's
    /// own check lists for an index out of range. The data is not read while the config is checked, so its names are not
    /// given here. Empty for any other key or value.
    /// </summary>
    private static string ClassNameHint(string key, string value)
    {
        var parts = key.Split(':');
        if (parts.Length != 3 || !parts[0].Equals("Data", StringComparison.OrdinalIgnoreCase) || !parts[1].Equals("Classes", StringComparison.OrdinalIgnoreCase)
            || double.TryParse(value, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out _))
            return "";
        return " Data:Classes lists class indices, not names: for classes that are names (CSV labels that are not whole numbers, image sub-folders), " +
            "write a name's place among the data's class names sorted in ordinal order (capitals first), counting from 0. " +
            "An index the data does not have is refused with its class names and their places.";
    }

    /// <summary>The problem of <paramref name="value"/> for <paramref name="key"/> when the binder refuses it on its own; null when it binds.</summary>
    private static string? TypeProblem(IConfiguration context, string key, string value, string origin)
    {
        try
        {
            new ConfigurationBuilder().AddInMemoryCollection([new(key, value)]).Build().Bind(new TrainingOptions(), o => o.ErrorOnUnknownConfiguration = true);
            return null;
        }
        catch (InvalidOperationException e)
        {
            return TypeProblem(context, key, value, origin, e);
        }
    }

    /// <summary>
    /// Other frameworks' names for DistTrain's initializers (PyTorch's <c>torch.nn.init.kaiming_normal_</c>,
    /// <c>xavier_uniform_</c>; Keras's <c>glorot_uniform</c>, <c>he_normal</c>), underscores and dashes removed, with what
    /// to write instead. Matched ignoring case, only for a key whose names include the suggestion.
    /// </summary>
    private static readonly Dictionary<string, (string Name, string Hint)> EnumAliases = new(StringComparer.OrdinalIgnoreCase)
    {
        ["kaiming"] = ("HeNormal", "Kaiming initialization is HeNormal here (HeUniform for its uniform form)."),
        ["kaimingnormal"] = ("HeNormal", "PyTorch's kaiming_normal_ is HeNormal here."),
        ["kaiminguniform"] = ("HeUniform", "PyTorch's kaiming_uniform_ is HeUniform here."),
        ["he"] = ("HeNormal", "He initialization is HeNormal (or HeUniform) here."),
        ["glorot"] = ("XavierNormal", "Glorot initialization is XavierNormal (or XavierUniform) here."),
        ["glorotnormal"] = ("XavierNormal", "Keras's glorot_normal is XavierNormal here."),
        ["glorotuniform"] = ("XavierUniform", "Keras's glorot_uniform is XavierUniform here."),
        ["xavier"] = ("XavierNormal", "Xavier initialization is XavierNormal (or XavierUniform) here."),
    };

    /// <summary>
    /// The problem of <paramref name="value"/> for a key of an enum type (<c>Training:Mode</c>) when it is not one of the
    /// enum's names, ignoring case and surrounding white space: the allowed names, and why a number or a list of names is
    /// not read, or the closest name to a misspelt one. Null when it is a name, or the key is not of an enum type.
    /// </summary>
    /// <param name="key">The key, as in the configuration.</param>
    /// <param name="value">Its value.</param>
    /// <param name="origin">Where the value came from, as the other problems name it (<c>in test.json</c>).</param>
    internal static string? EnumProblem(string key, string value, string origin)
    {
        if (KeyType(key) is not { } type || (Nullable.GetUnderlyingType(type) ?? type) is not { IsEnum: true } enumType) return null;
        var names = Enum.GetNames(enumType);
        var text = value.Trim();
        if (names.Any(name => name.Equals(text, StringComparison.OrdinalIgnoreCase))) return null;
        var why = text.Any(char.IsAsciiDigit) && double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out _)
            ? " Write the name: a number is not read as a position in that list."
            : text.Contains(',', StringComparison.Ordinal) ? " Write one name: a list of names is not read."
            : EnumAliases.TryGetValue(text.Replace("_", "", StringComparison.Ordinal).Replace("-", "", StringComparison.Ordinal), out var alias)
                && names.Contains(alias.Name, StringComparer.Ordinal) ? $" {alias.Hint}"
            : NameSuggestions.Closest(text, names, maxDistance: 2) is { } closest ? $" Did you mean '{closest}'?" : "";
        return $"{key} = '{Shown(value, origin)}' ({origin}) is not valid: expected one of {string.Join(", ", names)}.{why}";
    }

    /// <summary>
    /// The whole number <paramref name="value"/> stands for, written in digits (<c>99999999999</c>) or as JSON may write
    /// it, with an exponent or a fraction of zero (<c>1e10</c>, <c>3.0</c>); infinity for one past a double (<c>1e400</c>);
    /// null when it is not a whole number. Exact within Int32, the only range it is shown in.
    /// </summary>
    private static double? WholeNumber(string value)
    {
        var text = value.Trim();
        return text.Any(char.IsAsciiDigit)
            && double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var number)
            && (double.IsInfinity(number) || Math.Floor(number) == number)
            ? number
            : null;
    }

    /// <summary>
    /// The validator's range for the whole-number <paramref name="key"/> (<c>allowed [1, 10000]</c>), found by validating
    /// <paramref name="limit"/> (Int32's bound on the side the value is past) in its place, with the rest of its list when
    /// it is inside one (a layer's Units depend on its Type); null when the key takes every Int32 (Training:Seed) or its
    /// range cannot be found.
    /// </summary>
    private static string? KeyRange(IConfiguration configuration, string key, int limit)
    {
        // A key inside a list entry is validated with its whole list: the entry alone would be bound as entry 0.
        var list = ListOf(key);
        var values = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        if (list != key)
            foreach (var kv in configuration.AsEnumerable().Where(kv => kv.Value is not null && IsUnder(kv.Key, [list])))
                values[kv.Key] = kv.Value;
        values[key] = limit.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var options = new TrainingOptions();
        try
        {
            new ConfigurationBuilder().AddInMemoryCollection(values).Build().Bind(options, o => o.ErrorOnUnknownConfiguration = true);
        }
        catch (InvalidOperationException)
        {
            return null; // another key of the entry is of the wrong type: reported on its own
        }
        var prefix = $"{key} = ";
        var problem = TrainingOptionsValidator.Validate(options, checkDataDirectory: false)
            .FirstOrDefault(p => p.StartsWith(prefix, StringComparison.OrdinalIgnoreCase) && p.Contains(" is out of range: allowed ", StringComparison.Ordinal));
        return problem is null ? null : problem[(problem.IndexOf(" is out of range: ", StringComparison.Ordinal) + " is out of range: ".Length)..].TrimEnd('.');
    }

    /// <summary>True when <paramref name="key"/> is one of <paramref name="keys"/> or inside one (ignoring case); "" holds every key.</summary>
    private static bool IsUnder(string key, IEnumerable<string> keys) => keys.Any(k => k.Length == 0 || key.Equals(k, StringComparison.OrdinalIgnoreCase)
        || key.StartsWith(k + ":", StringComparison.OrdinalIgnoreCase));

    /// <summary>The list a key inside a list entry belongs to (<c>Model:Layers</c> for <c>Model:Layers:2:Units</c>); other keys as they are.</summary>
    private static string ListOf(string key)
    {
        var parts = key.Split(':');
        var index = Array.FindIndex(parts, part => int.TryParse(part, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _));
        return index > 0 ? string.Join(':', parts[..index]) : key;
    }

    /// <summary>True when <paramref name="problem"/> names <paramref name="key"/> or a key inside it (ignoring case); "" names every key.</summary>
    private static bool Names(string problem, string key)
    {
        if (key.Length == 0) return true;
        for (var at = problem.IndexOf(key, StringComparison.OrdinalIgnoreCase); at >= 0; at = problem.IndexOf(key, at + 1, StringComparison.OrdinalIgnoreCase))
        {
            var end = at + key.Length;
            var startsWord = at == 0 || !(char.IsLetterOrDigit(problem[at - 1]) || problem[at - 1] == ':');
            if (startsWord && (end == problem.Length || !char.IsLetterOrDigit(problem[end]))) return true;
        }
        return false;
    }

    /// <summary>
    /// The type a key such as <c>Model:Layers:0:Units</c> or <c>Data:Classes:0</c> binds to in <see cref="TrainingOptions"/>,
    /// following properties by name (ignoring case) and list indices to the element type; null when the path names no property.
    /// </summary>
    internal static Type? KeyType(string key)
    {
        Type? type = typeof(TrainingOptions);
        foreach (var part in key.Split(':'))
        {
            if (type is null) return null;
            if (type != typeof(string) && type.IsGenericType && typeof(System.Collections.IEnumerable).IsAssignableFrom(type))
            {
                if (!int.TryParse(part, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _)) return null;
                type = type.GetGenericArguments()[0];
                continue;
            }
            type = type.GetProperty(part, System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.IgnoreCase)?.PropertyType;
        }
        return type;
    }

    /// <summary>True when the binder reads <paramref name="value"/> as a whole number of <paramref name="type"/> (Int32 or Int64), as its
    /// type converter does: digits, or hexadecimal with 0x, # or &amp;H.</summary>
    private static bool BindsAsWholeNumber(Type type, string value)
    {
        try
        {
            return System.ComponentModel.TypeDescriptor.GetConverter(type).ConvertFromInvariantString(value) is not null;
        }
        catch (Exception e) when (e is FormatException or ArgumentException or OverflowException || e.InnerException is FormatException or OverflowException)
        {
            return false;
        }
    }

    /// <summary>True when <paramref name="text"/> is one or more ASCII digits and nothing else.</summary>
    private static bool HasOnlyDigits(string text) => text.Length > 0 && text.All(char.IsAsciiDigit);

    /// <summary>A value as echoed in a problem line: one line, at most 80 characters.</summary>
    internal static string Shown(string value) => ConfigurationException.OneLine(value, 80);

    /// <summary>
    /// As <see cref="Shown(string)"/>, for a value from <paramref name="origin"/>: .NET's JSON configuration stores a JSON
    /// <c>true</c> or <c>false</c> as "True" or "False", which a file's value is shown as written again; a variable's or
    /// option's value is shown as it is.
    /// </summary>
    internal static string Shown(string value, string origin) =>
        value is "True" or "False" && origin.StartsWith("in ", StringComparison.Ordinal) ? value.ToLowerInvariant() : Shown(value);

    /// <summary>
    /// Why <paramref name="json"/> is not UTF-8 text (a config is read as UTF-8, with or without a byte-order mark): the offset and
    /// value of its first byte that is not, or a UTF-16 byte-order mark; null when it is UTF-8.
    /// </summary>
    internal static string? NotUtf8(byte[] json)
    {
        if (json.Length >= 2 && ((json[0] == 0xFF && json[1] == 0xFE) || (json[0] == 0xFE && json[1] == 0xFF)))
            return $"the file is UTF-16 text (it starts with a UTF-16 byte-order mark, 0x{json[0]:X2} 0x{json[1]:X2}), and a config is read as UTF-8: save it as UTF-8.";
        if (System.Text.Unicode.Utf8.IsValid(json)) return null; // the common case, in one pass
        var at = 0;
        while (at < json.Length)
        {
            if (System.Text.Rune.DecodeFromUtf8(json.AsSpan(at), out _, out var consumed) != System.Buffers.OperationStatus.Done)
                return $"the file is not UTF-8 text: the bytes from {at:N0} (0x{json[at]:X2}{(at + 1 < json.Length ? $" 0x{json[at + 1]:X2}" : "")}) are no UTF-8 " +
                    "character, and a config is JSON text in UTF-8. Is this the right file? If it is, it was saved in another encoding (Latin-1 or " +
                    "Windows-1252, say): save it as UTF-8.";
            at += consumed;
        }
        return null;
    }

    /// <summary>
    /// The problem of a config file that is not JSON: System.Text.Json's message with its position as a 1-based line and
    /// byte of that line (the parser counts both from 0, in a suffix <c>LineNumber: 0 | BytePositionInLine: 32.</c>).
    /// </summary>
    internal static string NotJson(Exception e)
    {
        var json = e as System.Text.Json.JsonException ?? e.InnerException as System.Text.Json.JsonException;
        var message = (json ?? e.InnerException ?? e).Message;
        if (json is { LineNumber: { } line, BytePositionInLine: { } column })
        {
            message = System.Text.RegularExpressions.Regex.Replace(message, @"\s*(Path: \S*\s*\|\s*)?LineNumber: \d+ \| BytePositionInLine: \d+\.?\s*$", "");
            return $"the file is not valid JSON at line {line + 1}, byte {column + 1} of that line: {ConfigurationException.OneLine(message, 300)}";
        }
        return $"the file is not valid JSON: {ConfigurationException.OneLine(message, 300)}";
    }

    /// <summary>A configuration key such as <c>Training:Mode</c>.</summary>
    [System.Text.RegularExpressions.GeneratedRegex(@"\b[A-Z][A-Za-z]*:[A-Z]")]
    private static partial System.Text.RegularExpressions.Regex OtherKey();

    private static string AppendOrigin(string problem, Func<string, string> origin)
    {
        var separator = problem.IndexOf(" = ", StringComparison.Ordinal);
        if (separator <= 0 || problem[..separator].Contains(' ')) return problem;
        var key = problem[..separator];
        // The first verb after the value: "KEY = VALUE is ...", "... must be ...", "... needs ...".
        var verbs = new[] { " is ", " must ", " needs " }.Select(v => problem.IndexOf(v, separator, StringComparison.Ordinal)).Where(i => i >= 0).ToList();
        if (verbs.Count == 0) return problem;
        var verb = verbs.Min();
        // A verb after another key belongs to that key's clause ("A:B = true takes ..., and C:D is Async"): the origin then
        // follows the value's first word, so it never lands after the other key as if it were that key's.
        var valueEnd = problem.IndexOf(' ', separator + 3);
        if (valueEnd > 0 && valueEnd < verb && OtherKey().IsMatch(problem[valueEnd..verb])) verb = valueEnd;
        return $"{problem[..verb]} ({origin(key)}){problem[verb..]}";
    }
}
