namespace DistTrain.Core.Checkpoints;

/// <summary>
/// Names of the files a run writes into its run folder (<c>Output:Directory/&lt;UTC time&gt;</c>), kept in one place so
/// that every message naming one of them names what a run really writes.
/// </summary>
public static class RunFiles
{
    /// <summary>Final weights: safetensors, float32 tensors under PyTorch's <c>state_dict</c> names.</summary>
    public const string Model = "model.safetensors";

    /// <summary>After divergence: the last weights with a finite loss.</summary>
    public const string LastGood = "last-good.safetensors";

    /// <summary>
    /// The model a path stands for: a run folder stands for its <see cref="Model"/>, as users point at <c>runs/&lt;time&gt;/</c>
    /// as often as at the file in it; any other path is returned as it is (a missing file is the caller's to report).
    /// </summary>
    /// <param name="path">A checkpoint file or a run folder.</param>
    /// <exception cref="FileNotFoundException"><paramref name="path"/> is a folder without <see cref="Model"/>; the message
    /// names <see cref="LastGood"/> when the folder holds that instead (a run that diverged).</exception>
    public static string ModelIn(string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (!Directory.Exists(path)) return path;
        if (File.Exists(Path.Combine(path, Model))) return Path.Combine(path, Model);
        throw new FileNotFoundException($"{path} {FolderWithoutModel(path)}", path);
    }

    /// <summary>
    /// What is wrong with <paramref name="folder"/>, given for a model but without <see cref="Model"/> in it, and the fix:
    /// "is a folder without model.safetensors. Give ...", naming <see cref="LastGood"/> when the folder holds that instead.
    /// </summary>
    /// <param name="folder">The folder as given.</param>
    public static string FolderWithoutModel(string folder) => $"is a folder without {Model}" + (File.Exists(Path.Combine(folder, LastGood))
        ? $"; it holds {LastGood}, the last good weights of a run that diverged: give that file."
        : ". Give a run folder that finished, or the model file itself.");

    /// <summary>Options, input normalization and per-epoch figures (JSON).</summary>
    public const string Summary = "summary.json";

    /// <summary>One row per optimizer step (CSV).</summary>
    public const string Steps = "steps.csv";

    /// <summary>One row per epoch (CSV).</summary>
    public const string Epochs = "epochs.csv";

    /// <summary>Loss and accuracy curves (PNG, 1000 x 600 pixels).</summary>
    public const string Curves = "curves.png";

    /// <summary><c>finetune --compare-scratch</c>: both test accuracies (JSON).</summary>
    public const string Comparison = "comparison.json";
}
