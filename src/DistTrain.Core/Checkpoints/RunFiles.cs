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
