namespace DistTrain.Cluster.Actors;

/// <summary>A loss or gradient became NaN or infinite. The message names the worker, epoch and step.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);
