using DistTrain.Fuzz.Targets;

namespace DistTrain.Fuzz;

/// <summary>The readers under fuzzing, by name.</summary>
public static class FuzzTargets
{
    /// <summary>Names accepted by <see cref="Create"/>.</summary>
    public static readonly string[] Names = ["messagepack", "frame-header", "safetensors", "idx", "config", "gzip"];

    /// <summary>The named target.</summary>
    /// <exception cref="ArgumentException">The name is not one of <see cref="Names"/>.</exception>
    public static FuzzTarget Create(string name) => name switch
    {
        "messagepack" => new MessagePackTarget().Create(),
        "frame-header" => FrameHeaderTarget.Create(),
        "safetensors" => SafeTensorsTarget.Create(),
        "idx" => IdxTarget.Create(),
        "config" => ConfigTarget.Create(),
        "gzip" => GzipTarget.Create(),
        _ => throw new ArgumentException($"unknown fuzz target '{name}'; known: {string.Join(", ", Names)}", nameof(name)),
    };
}
