using System.Globalization;
using System.Text.Json;
using DistTrain.Core.Data;

namespace DistTrain.Core.Models;

/// <summary>
/// The string metadata DistTrain stores in a checkpoint's safetensors header (<c>__metadata__</c>): what is needed to use
/// the weights again (the layer stack, the input standardization) and what they achieved.
/// </summary>
public static class ModelMetadata
{
    /// <summary>The model section as JSON (<see cref="ModelOptions"/>).</summary>
    public const string ModelConfig = "model_config";
    /// <summary>The input standardization's kind (<see cref="NormalizationKind"/>).</summary>
    public const string InputNormalization = "input_normalization";
    /// <summary>JSON array of the standardization's means: one value for Global, one per feature for PerFeature.</summary>
    public const string InputMean = "input_mean";
    /// <summary>JSON array of the standardization's standard deviations, as <see cref="InputMean"/>.</summary>
    public const string InputStd = "input_std";
    /// <summary>What the input values are before standardization, in words (IDX images: pixels / 255).</summary>
    public const string InputScale = "input_scale";
    /// <summary>The training seed (Training:Seed), from which the initial weights were drawn.</summary>
    public const string Seed = "seed";
    /// <summary>Test accuracy of the weights, a fraction from 0 to 1 with four decimals.</summary>
    public const string TestAccuracy = "test_accuracy";

    /// <summary>How IDX and image-folder data reaches the model: pixel bytes divided by 255, then standardized.</summary>
    public const string PixelScale = "pixels / 255, then (x - input_mean) / input_std";

    /// <summary>How CSV values and in-memory arrays reach the model: the values as given, then standardized.</summary>
    public const string GivenScale = "features as given, then (x - input_mean) / input_std";

    /// <summary>The <see cref="InputScale"/> text of data whose raw values were divided by <paramref name="inputDivisor"/> when read.</summary>
    /// <param name="inputDivisor"><see cref="DataMetadata.InputDivisor"/>: 255 for images, 1 for values used as given.</param>
    public static string DescribeScale(float inputDivisor) => inputDivisor switch
    {
        1f => GivenScale,
        255f => PixelScale,
        _ => $"values / {inputDivisor.ToString(CultureInfo.InvariantCulture)}, then (x - input_mean) / input_std",
    };

    /// <summary>The metadata key of the last epoch trained, when it is not the weights' <c>epochs</c>: early stopping kept
    /// an earlier epoch's weights (<c>epochs</c> is that epoch).</summary>
    public const string EpochsTrained = "epochs_trained";

    /// <summary>The metadata of trained weights.</summary>
    /// <param name="model">The model section the weights belong to.</param>
    /// <param name="normalizer">The input standardization fitted on the training split.</param>
    /// <param name="data">What the data was (format, input divisor, class names, CSV columns), so that predict reads new
    /// inputs as the training run did; its entries (<see cref="DataMetadata.ToMetadata"/>) are stored too.</param>
    /// <param name="version">Weights version (optimizer steps).</param>
    /// <param name="epochs">The epochs these weights have been through: the last epoch trained, or with early stopping the
    /// kept epoch (<see cref="EpochsTrained"/> then holds the last one trained).</param>
    /// <param name="testAccuracy">Test accuracy of these weights, 0 to 1; null when no evaluation describes them (weights
    /// built in code, or a run stopped between evaluations), and the key is left out.</param>
    /// <param name="seed">Training:Seed.</param>
    public static Dictionary<string, string> Create(ModelOptions model, Normalizer normalizer, DataMetadata data, long version, int epochs,
        double? testAccuracy, int seed)
    {
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["producer"] = "disttrain",
            ["version"] = version.ToString(CultureInfo.InvariantCulture),
            ["epochs"] = epochs.ToString(CultureInfo.InvariantCulture),
            [Seed] = seed.ToString(CultureInfo.InvariantCulture),
            [InputScale] = DescribeScale(data.InputDivisor),
            [InputNormalization] = normalizer.Kind.ToString(),
            [InputMean] = JsonSerializer.Serialize(normalizer.Mean),
            [InputStd] = JsonSerializer.Serialize(normalizer.Std),
            ["layers"] = JsonSerializer.Serialize(model.Layers.Select(l => l.Type == LayerTypes.Dense ? $"Dense({l.Units})" : l.Type)),
            // Model:Pretrained as a full path: a relative one would be read from wherever the model is inspected later.
            [ModelConfig] = JsonSerializer.Serialize(string.IsNullOrEmpty(model.Pretrained) ? model : WithFullPretrainedPath(model)),
        };
        if (testAccuracy is { } accuracy) metadata[TestAccuracy] = accuracy.ToString("F4", CultureInfo.InvariantCulture);
        foreach (var (key, value) in data.ToMetadata()) metadata[key] = value;
        return metadata;
    }

    /// <summary>A copy of <paramref name="model"/> with Model:Pretrained resolved against the current folder, as it was read.</summary>
    private static ModelOptions WithFullPretrainedPath(ModelOptions model)
    {
        var copy = JsonSerializer.Deserialize<ModelOptions>(JsonSerializer.Serialize(model))!;
        copy.Pretrained = Path.GetFullPath(model.Pretrained);
        return copy;
    }

    /// <summary>Reads the model section back from <see cref="ModelConfig"/>.</summary>
    /// <param name="metadata">A checkpoint's metadata.</param>
    /// <param name="path">The checkpoint, named in errors.</param>
    /// <param name="keepTransferSettings">Keep how a fine-tuned model was built (Model:Pretrained, ReplaceHead, Freeze), as
    /// its run recorded them; false (the default) clears them, for a model that is used rather than trained again.</param>
    /// <exception cref="InvalidDataException">The key is missing (a training checkpoint's message says how to use one) or not a
    /// model section.</exception>
    public static ModelOptions ReadModel(IReadOnlyDictionary<string, string> metadata, string path, bool keepTransferSettings = false)
    {
        if (!metadata.TryGetValue(ModelConfig, out var json) && metadata.TryGetValue("format", out var format) && format == Checkpoints.TrainingCheckpoint.Format)
            throw new InvalidDataException($"{path} is a training checkpoint (Checkpoint:Directory): it holds the weights and the optimizer's state but not the network's layers, " +
                "so it cannot be used as a model here. Let the run finish (train --resume) for a model.safetensors, or load its weights into the " +
                "run's network with Model:Pretrained or 'finetune --from' and its config.");
        if (json is null)
            throw new InvalidDataException($"{path}: the metadata has no '{ModelConfig}', so the layers are unknown. Use a model.safetensors written by 'disttrain train' or the Trainer API (a PyTorch export holds only tensors).");
        try
        {
            var model = JsonSerializer.Deserialize<ModelOptions>(json) ?? throw new JsonException("null");
            if (keepTransferSettings) return model;
            model.Pretrained = "";
            model.ReplaceHead = false;
            model.Freeze = [];
            return model;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: metadata '{ModelConfig}' is not a model section ({e.Message}). The file is corrupt; train again or use another checkpoint.");
        }
    }

    /// <summary>Reads the input standardization back from <see cref="InputNormalization"/>, <see cref="InputMean"/> and <see cref="InputStd"/>.</summary>
    /// <exception cref="InvalidDataException">A key is missing or its value is not valid.</exception>
    public static Normalizer ReadNormalizer(IReadOnlyDictionary<string, string> metadata, string path)
    {
        if (!metadata.TryGetValue(InputNormalization, out var kindText) || !Enum.TryParse<NormalizationKind>(kindText, out var kind)
            || !metadata.TryGetValue(InputMean, out var meanJson) || !metadata.TryGetValue(InputStd, out var stdJson))
            throw new InvalidDataException($"{path}: the metadata lacks a valid '{InputNormalization}', '{InputMean}' or '{InputStd}', so the input standardization the weights expect is unknown. Use a model.safetensors written by 'disttrain train' or the Trainer API.");
        try
        {
            return Normalizer.FromStatistics(kind, JsonSerializer.Deserialize<float[]>(meanJson) ?? [], JsonSerializer.Deserialize<float[]>(stdJson) ?? []);
        }
        catch (Exception e) when (e is JsonException or ArgumentException)
        {
            throw new InvalidDataException($"{path}: the input standardization in the metadata is not valid ({e.Message}). The file is corrupt; train again or use another checkpoint.");
        }
    }
}
