namespace DistTrain.Core.Layers;

/// <summary>
/// One trainable tensor owned by a layer: its value and the gradient of the loss with respect to it,
/// both stored row-major with <see cref="Shape"/>.
/// </summary>
public sealed class LayerParameter
{
    /// <summary>Creates a zero-filled parameter and gradient.</summary>
    /// <param name="name">Name within the layer: <c>weight</c> or <c>bias</c>, as in PyTorch.</param>
    /// <param name="shape">Row-major shape.</param>
    /// <param name="fanIn">Inputs that feed one output unit (for initializers).</param>
    /// <param name="fanOut">Outputs that one input unit feeds (for initializers).</param>
    public LayerParameter(string name, int[] shape, int fanIn, int fanOut)
    {
        Name = name;
        Shape = shape;
        FanIn = fanIn;
        FanOut = fanOut;
        var length = shape.Aggregate(1, (p, d) => p * d);
        Value = new float[length];
        Gradient = new float[length];
    }

    /// <summary>Name within the layer (<c>weight</c>, <c>bias</c>).</summary>
    public string Name { get; }

    /// <summary>Row-major shape.</summary>
    public int[] Shape { get; }

    /// <summary>Inputs per output unit; for a dense weight, <c>in_features</c>.</summary>
    public int FanIn { get; }

    /// <summary>Outputs per input unit; for a dense weight, <c>out_features</c>.</summary>
    public int FanOut { get; }

    /// <summary>Current values.</summary>
    public float[] Value { get; }

    /// <summary>Gradient of the loss with respect to <see cref="Value"/>, written by the last backward pass.</summary>
    public float[] Gradient { get; }

    /// <summary>True for a bias (initialized to zeros by default).</summary>
    public bool IsBias => Name == "bias";
}
