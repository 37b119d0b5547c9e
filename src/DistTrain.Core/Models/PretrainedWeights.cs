using DistTrain.Core.Checkpoints;
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
    /// Copies every tensor of <paramref name="model"/>'s layout from the checkpoint into <paramref name="weights"/>,
    /// except the head's when <paramref name="replaceHead"/> is true (those keep their fresh initialization).
    /// </summary>
    /// <returns>The names loaded, in layout order.</returns>
    /// <exception cref="InvalidDataException">The file does not exist, or tensors are missing, have other shapes or are not
    /// part of the model; the message lists every such tensor with both shapes and says how to fix it.</exception>
    /// <exception cref="SafeTensorsFormatException">The file is not valid safetensors of F32 tensors; the message names the tensor and bytes.</exception>
    public static IReadOnlyList<string> Load(string path, Sequential model, ParameterVector weights, bool replaceHead)
    {
        if (!File.Exists(path))
            throw new InvalidDataException($"Model:Pretrained = '{path}': no such file. Give the path of a .safetensors checkpoint (a run's weights.safetensors).");
        var tensors = SafeTensors.Read(path);
        var skipped = replaceHead ? HeadNames(model).ToHashSet() : [];
        var problems = new List<string>();
        var loaded = new List<string>();
        foreach (var segment in weights.Layout.Segments)
        {
            if (skipped.Contains(segment.Name)) continue;
            if (!tensors.TryGetValue(segment.Name, out var tensor))
            {
                problems.Add($"'{segment.Name}' [{string.Join(", ", segment.Shape)}] is missing from the checkpoint");
                continue;
            }
            if (!tensor.Shape.SequenceEqual(segment.Shape))
            {
                problems.Add($"'{segment.Name}' is [{string.Join(", ", tensor.Shape)}] in the checkpoint but [{string.Join(", ", segment.Shape)}] in the model");
                continue;
            }
            tensor.Data.CopyTo(weights.Segment(segment));
            loaded.Add(segment.Name);
        }
        var names = weights.Layout.Segments.Select(s => s.Name).ToHashSet();
        foreach (var name in tensors.Keys.Where(n => !names.Contains(n) && !skipped.Contains(n)).Order(StringComparer.Ordinal))
            problems.Add($"'{name}' [{string.Join(", ", tensors[name].Shape)}] is in the checkpoint but not in the model");
        if (problems.Count > 0)
            throw new InvalidDataException(
                $"{path} does not fit the model: {string.Join("; ", problems)}. " +
                "Make Model:Layers match the network that wrote the checkpoint" +
                (replaceHead ? "." : ", or set Model:ReplaceHead (finetune --replace-head) to train a new last Dense layer."));
        model.LoadParameters(weights.Values);
        return loaded;
    }
}
