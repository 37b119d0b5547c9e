namespace DistTrain.Core.Checkpoints;

/// <summary>
/// A safetensors file (a model, pretrained weights or a checkpoint) that this process may not read: a file of mode 000, or
/// another user's of mode 600. The message names the file, the cause, its mode and the user this process runs as, and says
/// to check its permissions (<see cref="SafeTensors.Unreadable"/>); the CLI reports it and exits with code 2. An
/// <see cref="UnauthorizedAccessException"/>, so code that catches those catches it too.
/// </summary>
/// <param name="path">The file.</param>
/// <param name="message">The whole message.</param>
/// <param name="inner">The error reading the file gave.</param>
public sealed class UnreadableFileException(string path, string message, Exception inner) : UnauthorizedAccessException(message, inner)
{
    /// <summary>The file.</summary>
    public string Path { get; } = path;
}
