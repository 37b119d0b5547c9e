namespace DistTrain.Core.Layers;

/// <summary>What a tensor of a layer is for; decides its initialization, its weight decay and whether it trains.</summary>
public enum ParameterRole
{
    /// <summary>A weight matrix or kernel: initialized by the configured initializer, decayed by L1/L2.</summary>
    Weight,
    /// <summary>A bias: zero at start, no weight decay by default.</summary>
    Bias,
    /// <summary>The scale γ of a normalization layer: one at start, no weight decay by default.</summary>
    NormScale,
    /// <summary>The shift β of a normalization layer: zero at start, no weight decay by default.</summary>
    NormShift,
    /// <summary>
    /// A running statistic (BatchNorm's <c>running_mean</c>, <c>running_var</c>): updated by the forward pass in
    /// training mode, never by gradients. PyTorch calls these buffers.
    /// </summary>
    RunningStatistic,
}

/// <summary>
/// One tensor owned by a layer: its value and the gradient of the loss with respect to it, both stored
/// row-major with <see cref="Shape"/>.
/// </summary>
public sealed class LayerParameter
{
    /// <summary>Creates a zero-filled parameter and gradient.</summary>
    /// <param name="name">Name within the layer, as in PyTorch: <c>weight</c>, <c>bias</c>, <c>running_mean</c>.</param>
    /// <param name="shape">Row-major shape.</param>
    /// <param name="fanIn">Inputs that feed one output unit (for initializers), PyTorch's fan_in.</param>
    /// <param name="fanOut">Outputs that one input unit feeds (for initializers), PyTorch's fan_out.</param>
    /// <param name="role">What the tensor is for; a bias unless named otherwise is <see cref="ParameterRole.Weight"/>.</param>
    /// <exception cref="ArgumentException">The shape has more elements than one array holds (<see cref="Array.MaxLength"/>);
    /// nothing is allocated.</exception>
    public LayerParameter(string name, int[] shape, int fanIn, int fanOut, ParameterRole? role = null)
    {
        Name = name;
        Shape = shape;
        FanIn = fanIn;
        FanOut = fanOut;
        Role = role ?? (name == "bias" ? ParameterRole.Bias : ParameterRole.Weight);
        // In 64 bits: an int product wraps (65,537 x 65,536 is 65,536) and would allocate a wrongly sized array.
        var elements = shape.Aggregate(1L, (p, d) => p * d);
        if (elements > Array.MaxLength)
            throw new ArgumentException($"tensor '{name}' of shape [{string.Join(", ", shape)}] has {elements:N0} elements, more than one array holds ({Array.MaxLength:N0}). Use fewer units or channels.");
        var length = (int)elements;
        Value = new float[length];
        Gradient = Role == ParameterRole.RunningStatistic ? [] : new float[length];
    }

    /// <summary>Name within the layer (<c>weight</c>, <c>bias</c>, <c>running_var</c>).</summary>
    public string Name { get; }

    /// <summary>Row-major shape.</summary>
    public int[] Shape { get; }

    /// <summary>Inputs per output unit; for a dense weight, <c>in_features</c>; for a convolution, <c>in_channels · kH · kW</c>.</summary>
    public int FanIn { get; }

    /// <summary>Outputs per input unit; for a dense weight, <c>out_features</c>; for a convolution, <c>out_channels · kH · kW</c>.</summary>
    public int FanOut { get; }

    /// <summary>What the tensor is for.</summary>
    public ParameterRole Role { get; }

    /// <summary>
    /// True when the tensor is frozen (transfer learning): the backward pass computes no gradient for it, it is
    /// not sent to the parameter server and never changes. Set by <see cref="Models.Sequential"/>.
    /// </summary>
    public bool Frozen { get; internal set; }

    /// <summary>True when gradient descent updates this tensor: not frozen and not a running statistic.</summary>
    public bool Trainable => !Frozen && Role != ParameterRole.RunningStatistic;

    /// <summary>Current values.</summary>
    public float[] Value { get; }

    /// <summary>
    /// Gradient of the loss with respect to <see cref="Value"/>, written by the last backward pass; empty for a
    /// running statistic.
    /// </summary>
    public float[] Gradient { get; }

    /// <summary>True for a bias (initialized to zeros by default).</summary>
    public bool IsBias => Role == ParameterRole.Bias;

    /// <summary>
    /// The constant this tensor starts at regardless of the initializer (1 for a normalization scale and a running
    /// variance, 0 for a shift and a running mean), or null when the initializer fills it.
    /// </summary>
    public float? FixedInitialValue => Role switch
    {
        ParameterRole.NormScale => 1f,
        ParameterRole.NormShift => 0f,
        ParameterRole.RunningStatistic => Name == "running_var" ? 1f : 0f,
        _ => null,
    };
}
