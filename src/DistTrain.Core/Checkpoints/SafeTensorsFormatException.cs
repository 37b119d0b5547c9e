namespace DistTrain.Core.Checkpoints;

/// <summary>
/// A safetensors file (pretrained weights or a checkpoint) is malformed: its header length, JSON, dtypes, shapes or
/// <c>data_offsets</c> break the format's rules. The message names the file, the tensor and the bytes concerned; the CLI
/// reports it and exits with code 2.
/// </summary>
/// <param name="path">The file.</param>
/// <param name="tensor">The tensor concerned, or null when the problem is in the file as a whole.</param>
/// <param name="message">The whole message, starting with the file's path.</param>
public sealed class SafeTensorsFormatException(string path, string? tensor, string message) : Exception(message)
{
    /// <summary>The file.</summary>
    public string Path { get; } = path;

    /// <summary>The tensor concerned, or null when the problem is in the file as a whole.</summary>
    public string? Tensor { get; } = tensor;
}
