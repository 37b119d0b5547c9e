using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Layers;
using DistTrain.Core.Tensors;

namespace DistTrain.Core.Models;

/// <summary>
/// Loads pretrained tensors into a model's starting weights by <c>state_dict</c> name (transfer learning), so a
/// checkpoint written by DistTrain or a PyTorch <c>nn.Sequential</c> saved in the safetensors layout loads alike.
/// </summary>
public static class PretrainedWeights
{
    /// <summary>The tensor names of the model's head: the last Dense layer's <c>weight</c>, and its <c>bias</c> if it has one.</summary>
    /// <exception cref="ArgumentException">The model has no Dense layer.</exception>
    public static string[] HeadNames(Sequential model)
    {
        var index = -1;
        for (var i = 0; i < model.Layers.Count; i++)
            if (model.Layers[i] is Dense) index = i;
        return index < 0
            ? throw new ArgumentException("The model has no Dense layer, so it has no head to replace.")
            : [.. model.Layers[index].Parameters.Select(p => $"{index}.{p.Name}")];
    }

    /// <summary>
    /// The prefix <c>nn.DataParallel</c> and <c>DistributedDataParallel</c> put before every name of the module they wrap
    /// (<c>module.0.weight</c>): a <c>state_dict</c> saved from the wrapper instead of from <c>model.module</c> carries it.
    /// </summary>
    public const string DataParallelPrefix = "module.";

    /// <summary>
    /// Refuses to keep a pretrained head (<see cref="ModelOptions.Pretrained"/> without <see cref="ModelOptions.ReplaceHead"/>)
    /// whose classes are not the data's: the checkpoint's class names (its <c>class_names</c>) differ from the data's, in name
    /// or order (an image folder's classes are its sorted sub-folders, so one renamed folder shifts the others), or one side
    /// names its classes (labels written as names) and the other numbers them (IDX labels), or both number them and the
    /// checkpoint's <c>data_classes</c> (the Data:Classes it was trained with) are not the data's classes (its
    /// <see cref="TrainingData.Classes"/>, or all of them, 0 to N-1): a head trained on Fashion-MNIST's classes 0-4 kept for
    /// classes 5-9 would train its output 0 (T-shirt/top) as class 5 (Sandal). In each case the head's outputs would be
    /// trained as other classes; <c>evaluate</c> refuses such data likewise. A checkpoint of numbered classes without
    /// <c>data_classes</c> was trained on all of its data's classes in order, which is compared when Data:Classes lists
    /// exactly 0 to N-1 in another order (the same label space reordered; its class count is taken to be the data's, as a
    /// head of another size is refused by <see cref="Load"/>). Class names are compared whenever both sides have them
    /// (numbered classes with Data:ClassNames too). A checkpoint without DistTrain's data entries (a PyTorch <c>state_dict</c>, say),
    /// one of numbered classes without <c>data_classes</c> for data of other class numbers (another dataset's), or a missing
    /// or unreadable file is left to <see cref="Load"/>.
    /// </summary>
    /// <param name="options">The model section.</param>
    /// <param name="data">The run's data.</param>
    /// <exception cref="ArgumentNullException">An argument is null.</exception>
    /// <exception cref="ConfigurationException">The classes differ; the message names them, --replace-head and Model:ReplaceHead.</exception>
    public static void CheckClasses(ModelOptions options, TrainingData data)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(data);
        if (string.IsNullOrEmpty(options.Pretrained) || options.ReplaceHead || !File.Exists(options.Pretrained)) return;
        IReadOnlyDictionary<string, string> metadata;
        DataMetadata trained;
        try
        {
            metadata = SafeTensors.ReadMetadata(options.Pretrained);
            if (!metadata.ContainsKey("label_kind")) return; // not written by DistTrain's training: nothing says what its classes are
            trained = DataMetadata.FromMetadata(metadata);
        }
        catch (Exception e) when (e is InvalidDataException or SafeTensorsFormatException or IOException or UnauthorizedAccessException)
        {
            return; // Load reports an unreadable checkpoint
        }
        static string List(IReadOnlyList<string> names) =>
            string.Join(", ", names.Take(12).Select(n => $"'{n}'")) + (names.Count > 12 ? $" and {names.Count - 12} more" : "");
        var classes = data.Train.ClassCount;
        var head = options.Layers.FindLastIndex(l => LayerTypes.Canonical(l.Type) == LayerTypes.Dense);
        static string Numbers(IReadOnlyList<int> numbers) =>
            string.Join(", ", numbers.Take(12)) + (numbers.Count > 12 ? $" and {numbers.Count - 12} more" : "");
        static string Output(IReadOnlyList<int> numbers, int c) => c < numbers.Count ? $"class {numbers[c]}" : "not there";
        var dataClasses = data.Classes.Count > 0 ? data.Classes : [.. Enumerable.Range(0, classes)];
        // Without data_classes the checkpoint was trained on all of its data's classes, in their order; that they are the
        // data's own label space is known only when Data:Classes lists exactly 0 to N-1, in another order (another dataset's
        // numbers mean nothing here).
        int[] inOrder = [.. Enumerable.Range(0, data.Classes.Count)];
        IReadOnlyList<int>? trainedClasses = trained.Classes.Count > 0 ? trained.Classes
            : data.Classes.Count > 0 && data.Classes.Order().SequenceEqual(inOrder) ? inOrder
            : null;
        var numbered = !trained.LabelsAreNames && !data.LabelsAreNames && trainedClasses is not null && !trainedClasses.SequenceEqual(dataClasses);
        var namesDiffer = trained.LabelsAreNames == data.LabelsAreNames && trained.ClassNames is { } trainedNames && data.ClassNames is { } dataNames
            && !trainedNames.SequenceEqual(dataNames);
        var fix = $" Give --replace-head {classes} (Model:ReplaceHead true, with Model:Layers:{head}:Units {classes}) to train a new head for the data's classes, " +
            $"or fine-tune on data with the checkpoint's classes{(numbered ? $" (Data:Classes [{string.Join(", ", trainedClasses!)}])" : "")}" +
            (namesDiffer && !data.LabelsAreNames && !numbered ? "; if they are the same classes and only Data:ClassNames differs, give the checkpoint's names" : "") + ".";
        string? problem = null;
        if (namesDiffer && trained.ClassNames is { } before && data.ClassNames is { } now)
        {
            var differing = Enumerable.Range(0, Math.Max(before.Count, now.Count))
                .Where(c => c >= before.Count || c >= now.Count || before[c] != now[c])
                .Select(c => $"class {c} is {(c < before.Count ? $"'{before[c]}'" : "not there")} in the checkpoint and {(c < now.Count ? $"'{now[c]}'" : "not there")} in the data")
                .ToList();
            var missing = before.Except(now).ToList();
            var added = now.Except(before).ToList();
            problem = $"Model:Pretrained {options.Pretrained}: its head was trained on other classes than the data's ({string.Join("; ", differing.Take(5))}" +
                $"{(differing.Count > 5 ? $"; and {differing.Count - 5} more" : "")})" +
                (missing.Count > 0 ? $"; only in the checkpoint: {List(missing)}" : "") + (added.Count > 0 ? $"; only in the data: {List(added)}" : "") +
                (missing.Count == 0 && added.Count == 0 ? "; the same names in another order" : "") +
                ". Kept as it is, the head's outputs would be trained as other classes.";
        }
        else if (trained.LabelsAreNames != data.LabelsAreNames)
        {
            problem = trained.LabelsAreNames
                ? $"Model:Pretrained {options.Pretrained}: its head's classes are names ({List(trained.ClassNames ?? [])}) from its {trained.Format} training data, " +
                  "but the data's labels are class numbers without names, so they cannot be matched to them."
                : $"Model:Pretrained {options.Pretrained}: its head's classes are numbers without names (from its {trained.Format} training data), " +
                  $"but the data's classes are names ({List(data.ClassNames ?? [])}), numbered in their own order, so they cannot be matched to them.";
        }
        else if (numbered)
        {
            // IDX (or numbered CSV) labels on both sides: output c stands for the original class data_classes[c].
            var differing = Enumerable.Range(0, Math.Max(trainedClasses!.Count, dataClasses.Count))
                .Where(c => c >= trainedClasses.Count || c >= dataClasses.Count || trainedClasses[c] != dataClasses[c])
                .Select(c => $"output {c} is {Output(trainedClasses, c)} in the checkpoint and {Output(dataClasses, c)} in the data")
                .ToList();
            problem = $"Model:Pretrained {options.Pretrained}: its head was trained on other classes than the data's: the checkpoint's outputs are classes " +
                $"{Numbers(trainedClasses!)} of its {trained.Format} training data " +
                $"({(trained.Classes.Count > 0 ? "its data_classes, from Data:Classes" : "all of them, in order: it has no data_classes")}), the data's are classes " +
                $"{Numbers(dataClasses)} ({(data.Classes.Count > 0 ? "Data:Classes" : "all of its classes")}), so {string.Join("; ", differing.Take(3))}" +
                $"{(differing.Count > 3 ? $"; and {differing.Count - 3} more" : "")}. Kept as it is, the head's outputs would be trained as other classes.";
        }
        if (problem is not null) throw new ConfigurationException("pretrained head against data", [problem + fix]);
    }

    /// <summary>Throws when <paramref name="path"/> is not a file, naming <paramref name="setting"/> and what to give instead.</summary>
    /// <param name="path">The checkpoint path as given.</param>
    /// <param name="setting">Where it was given: <c>Model:Pretrained</c>, a command-line option such as <c>--from</c>, or an argument.</param>
    /// <exception cref="InvalidDataException">No such file, or a folder (without <see cref="RunFiles.Model"/>: a run folder
    /// is resolved to its model before, by <see cref="RunFiles.ModelIn"/>).</exception>
    public static void RequireFile(string path, string setting)
    {
        if (Directory.Exists(path))
            throw new InvalidDataException($"{setting} '{path}' {RunFiles.FolderWithoutModel(path)}");
        if (!File.Exists(path))
            throw new InvalidDataException(
                $"{setting} '{path}': no such file. Give the path of a .safetensors checkpoint: a run's {RunFiles.Model} " +
                $"(Output:Directory/<run>/{RunFiles.Model}, or the run folder Output:Directory/<run>) or a PyTorch state_dict saved with safetensors.");
    }

    /// <summary>
    /// Copies every tensor of <paramref name="model"/>'s layout from the checkpoint into <paramref name="weights"/>,
    /// except the head's when <paramref name="replaceHead"/> is true (those keep their fresh initialization). When every
    /// name in the checkpoint starts with <see cref="DataParallelPrefix"/>, that prefix is removed once first (as
    /// PyTorch's <c>consume_prefix_in_state_dict_if_present</c> does) and <paramref name="log"/> says so. A training
    /// checkpoint (<see cref="TrainingCheckpoint"/>) gives its weights; its optimizer state is left out.
    /// </summary>
    /// <param name="path">The safetensors checkpoint, or a run folder with its <see cref="RunFiles.Model"/>.</param>
    /// <param name="model">The model the weights are for.</param>
    /// <param name="weights">Receives the tensors; its layout is <paramref name="model"/>'s.</param>
    /// <param name="replaceHead">Leave the last Dense layer's tensors as they are (a new head).</param>
    /// <param name="log">Receives the line about a removed prefix; null drops it.</param>
    /// <returns>The names loaded, in layout order.</returns>
    /// <exception cref="InvalidDataException">The file does not exist, or tensors are missing, have other shapes or are not
    /// part of the model; the message lists every such tensor with both shapes and says how to fix it: with the prefix
    /// the names carry when they differ from the model's only by one, with Model:ReplaceHead when only the head differs. Also
    /// when a tensor loaded holds a NaN or an infinity (a diverged run's weights, or a damaged file; the message names the
    /// tensor, the count and the first such value), and when the file records the SHA-256 of its data section or of its
    /// metadata (<see cref="SafeTensors.DataSha256Key"/>, <see cref="SafeTensors.MetadataSha256Key"/>: DistTrain's model files
    /// and checkpoints) and the data or the metadata does not match it.</exception>
    /// <exception cref="SafeTensorsFormatException">The file is not valid safetensors of F32 tensors; the message names the tensor and bytes.</exception>
    /// <exception cref="UnreadableFileException">This process may not read the file; the message says to check its permissions.</exception>
    public static IReadOnlyList<string> Load(string path, Sequential model, ParameterVector weights, bool replaceHead, Action<string>? log = null)
    {
        // A run folder stands for its model, as the config loader and 'finetune --from' take it.
        if (Directory.Exists(path) && File.Exists(Path.Combine(path, RunFiles.Model))) path = RunFiles.ModelIn(path);
        RequireFile(path, "Model:Pretrained");
        IReadOnlyDictionary<string, NamedTensor> tensors = SafeTensors.Read(path);
        if (tensors.Count > 0 && tensors.Keys.All(name => name.StartsWith(DataParallelPrefix, StringComparison.Ordinal)))
        {
            tensors = tensors.ToDictionary(t => t.Key[DataParallelPrefix.Length..], t => t.Value, StringComparer.Ordinal);
            log?.Invoke($"{path}: every tensor name starts with '{DataParallelPrefix}' (a state_dict saved from nn.DataParallel or " +
                        "DistributedDataParallel); loading them without that prefix.");
        }
        if (SafeTensors.ReadMetadata(path).TryGetValue("format", out var format) && format == TrainingCheckpoint.Format)
        {
            // A training checkpoint: its weights are the model's tensors; its optimizer state is not part of the model.
            tensors = tensors.Where(t => !t.Key.StartsWith(TrainingCheckpoint.OptimizerPrefix, StringComparison.Ordinal))
                .ToDictionary(t => t.Key, t => t.Value, StringComparer.Ordinal);
        }
        var head = TryHeadNames(model);
        var skipped = replaceHead ? head.ToHashSet() : [];
        var problems = new List<string>();
        var differing = new List<string>(); // model tensors that are missing or have another shape
        var missing = new List<string>();
        var loaded = new List<string>();
        foreach (var segment in weights.Layout.Segments)
        {
            if (skipped.Contains(segment.Name)) continue;
            if (!tensors.TryGetValue(segment.Name, out var tensor))
            {
                problems.Add($"'{segment.Name}' [{string.Join(", ", segment.Shape)}] is missing from the checkpoint");
                differing.Add(segment.Name);
                missing.Add(segment.Name);
                continue;
            }
            // An earlier version's LayerNorm on 1x1 feature maps holds [C] for [C, 1, 1]: the same values, loaded as they are.
            if (!EarlierShapes.Fits(tensor.Shape, segment))
            {
                problems.Add($"'{segment.Name}' is [{string.Join(", ", tensor.Shape)}] in the checkpoint but [{string.Join(", ", segment.Shape)}] in the model");
                differing.Add(segment.Name);
                continue;
            }
            // A diverged run's weights load as any others but make every output NaN: refused, naming the tensor.
            var (bad, first) = (0, -1);
            for (var i = 0; i < tensor.Data.Length; i++)
                if (!float.IsFinite(tensor.Data[i]) && bad++ == 0) first = i;
            if (bad > 0)
                throw new InvalidDataException($"{path}: tensor '{segment.Name}' holds {Counts.Of(bad, "value")} that {(bad == 1 ? "is" : "are")} not finite ({(bad == 1 ? "" : "the first, ")}" +
                    $"{tensor.Data[first].ToString(System.Globalization.CultureInfo.InvariantCulture)}, at index {first:N0}), so every output would be NaN. The run " +
                    $"that wrote it diverged or the file is damaged; use an earlier checkpoint ({RunFiles.LastGood} after a divergence) or train again.");
            tensor.Data.CopyTo(weights.Segment(segment));
            loaded.Add(segment.Name);
        }
        var names = weights.Layout.Segments.Select(s => s.Name).ToHashSet();
        var extra = tensors.Keys.Where(n => !names.Contains(n) && !skipped.Contains(n)).Order(StringComparer.Ordinal).ToList();
        foreach (var name in extra)
            problems.Add($"'{name}' [{string.Join(", ", tensors[name].Shape)}] is in the checkpoint but not in the model");
        if (problems.Count > 0)
            throw new InvalidDataException($"{path} does not fit the model: {string.Join("; ", problems)}. {Hint(missing, extra, differing, head, replaceHead, path, ShapesMatchUnderOtherNames(weights.Layout, missing, extra, tensors))}");
        model.LoadParameters(weights.Values);
        return loaded;
    }

    /// <summary>What to do about a checkpoint that does not fit: the one fix that applies.</summary>
    private static string Hint(List<string> missing, List<string> extra, List<string> differing, string[] head, bool replaceHead, string path, bool renamed)
    {
        if (CommonPrefix(missing, extra) is { } prefix)
            return $"The checkpoint's names differ from the model's only by the prefix '{prefix}' ('{prefix}{missing[0]}' for '{missing[0]}'): " +
                   $"save the state_dict without it, e.g. in PyTorch {{k.removeprefix('{prefix}'): v for k, v in state_dict.items()}}.";
        // A PyTorch module with named layers (fc1, fc2) where the model numbers them by position (0, 2): same shapes, other names.
        if (renamed)
            return $"The checkpoint's {extra.Count} other tensors have the shapes of the model's {missing.Count} missing ones, under other names: the model names " +
                   $"each tensor by its layer's position in Model:Layers ({string.Join(", ", missing.Take(4).Select(m => $"'{m}'"))}{(missing.Count > 4 ? ", ..." : "")}). " +
                   "Save the state_dict with those names, e.g. in PyTorch dict(zip([the model's names in order], state_dict.values())) after checking the order.";
        const string replace = "Model:ReplaceHead (finetune --replace-head N) trains a new last Dense layer";
        var headOnly = !replaceHead && head.Length > 0 && extra.Count == 0 && differing.All(head.Contains);
        if (headOnly)
            return $"Only the head ({string.Join(", ", differing)}) differs: set {replace}, or make its Units match the checkpoint.";
        var match = $"Make Model:Layers match the network that wrote the checkpoint (`disttrain inspect {path}` lists its tensors)";
        return !replaceHead && differing.Any(head.Contains) ? $"{match}; the head differs too: {replace}." : $"{match}.";
    }

    /// <summary>
    /// True when the checkpoint's tensors the model lacks have exactly the shapes of the model's tensors the checkpoint lacks
    /// (as multisets): the same layers under other names.
    /// </summary>
    private static bool ShapesMatchUnderOtherNames(ParameterLayout layout, List<string> missing, List<string> extra, IReadOnlyDictionary<string, NamedTensor> tensors)
    {
        if (missing.Count == 0 || missing.Count != extra.Count) return false;
        static string Key(IEnumerable<int> shape) => string.Join("x", shape);
        var model = layout.Segments.Where(s => missing.Contains(s.Name)).Select(s => Key(s.Shape)).Order(StringComparer.Ordinal);
        var checkpoint = extra.Select(name => Key(tensors[name].Shape)).Order(StringComparer.Ordinal);
        return model.SequenceEqual(checkpoint);
    }

    /// <summary>
    /// The prefix <c>P</c> (ending in '.') for which every model tensor missing from the checkpoint is there as
    /// <c>P + name</c>; null when there is none.
    /// </summary>
    private static string? CommonPrefix(List<string> missing, List<string> extra)
    {
        if (missing.Count == 0 || extra.Count == 0) return null;
        var present = extra.ToHashSet(StringComparer.Ordinal);
        foreach (var candidate in extra.Where(e => e.Length > missing[0].Length && e.EndsWith(missing[0], StringComparison.Ordinal)))
        {
            var prefix = candidate[..^missing[0].Length];
            if (prefix.EndsWith('.') && missing.All(m => present.Contains(prefix + m))) return prefix;
        }
        return null;
    }

    /// <summary>The head's tensor names, or none when the model has no Dense layer.</summary>
    private static string[] TryHeadNames(Sequential model) => model.Layers.Any(l => l is Dense) ? HeadNames(model) : [];
}
