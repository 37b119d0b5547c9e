namespace DistTrain.Core.Data;

/// <summary>A data file is missing, malformed or inconsistent. The message names the file, the problem and the fix.</summary>
public sealed class DataFormatException(string message) : Exception(message);
