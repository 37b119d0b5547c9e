using DistTrain.Core.Layers;

namespace DistTrain.Core.Tensors;

/// <summary>
/// One named tensor inside a <see cref="ParameterLayout"/>: <c>Length</c> floats starting at
/// <c>Offset</c> of the flat vector, read row-major with the given <c>Shape</c>.
/// </summary>
/// <param name="Name">PyTorch <c>state_dict</c>-style name, such as <c>0.weight</c> or <c>2.bias</c>.</param>
/// <param name="Offset">Index of the first element in the flat vector (elements, not bytes).</param>
/// <param name="Shape">Row-major shape; a dense weight is <c>[out_features, in_features]</c> as in PyTorch.</param>
/// <param name="Role">What the tensor is for (weight, bias, normalization scale or shift, running statistic).</param>
/// <param name="Frozen">True when transfer learning froze it: it gets no gradient and no update.</param>
public sealed record ParameterSegment(string Name, int Offset, int[] Shape, ParameterRole Role = ParameterRole.Weight, bool Frozen = false)
{
    /// <summary>True when gradient descent updates this tensor: not frozen and not a running statistic.</summary>
    public bool Trainable => !Frozen && Role != ParameterRole.RunningStatistic;

    /// <summary>Number of elements: the product of <see cref="Shape"/>.</summary>
    /// <exception cref="OverflowException">The shape has more than <see cref="int.MaxValue"/> elements.</exception>
    public int Length => Shape.Aggregate(1, (product, dimension) => checked(product * dimension));

}

/// <summary>
/// The fixed order of a model's tensors and their place in one flat <c>float[]</c>.
/// Weights, gradients, optimizer state and checkpoints all share one layout, so the parameter
/// server averages and updates without knowing the layers.
/// </summary>
/// <remarks>
/// Three regions, each in model order: the trainable tensors <c>[0, TrainableLength)</c>, then the running
/// statistics <c>[TrainableLength, WorkerReportLength)</c>, then the frozen tensors up to <see cref="TotalLength"/>.
/// A worker's report is the prefix <c>[0, WorkerReportLength)</c>: the gradients of the trainable tensors followed by
/// its running statistics, so frozen tensors travel no gradient. A model without frozen tensors or statistics (an
/// MLP) is all trainable and keeps plain model order.
/// </remarks>
public sealed class ParameterLayout
{
    private readonly Dictionary<string, ParameterSegment> _byName;
    private readonly int[] _trainableTensorLengths;

    /// <summary>
    /// Builds a layout of trainable tensors from (name, shape) pairs laid out back to back in the given order; a name
    /// ending in <c>.bias</c> is a bias, any other a weight.
    /// </summary>
    /// <exception cref="ArgumentException">A name repeats, or a dimension is not positive.</exception>
    public ParameterLayout(IEnumerable<(string Name, int[] Shape)> tensors)
        : this(tensors.Select(t => (t.Name, t.Shape, t.Name.EndsWith(".bias", StringComparison.Ordinal) ? ParameterRole.Bias : ParameterRole.Weight, false))) { }

    /// <summary>Builds a layout: trainable tensors first, then running statistics, then frozen tensors, each group in the given order.</summary>
    /// <exception cref="ArgumentException">A name repeats, a dimension is not positive, or the tensors have more elements in
    /// all than one array holds (<see cref="Array.MaxLength"/>).</exception>
    public ParameterLayout(IEnumerable<(string Name, int[] Shape, ParameterRole Role, bool Frozen)> tensors)
    {
        var all = tensors.ToArray();
        foreach (var (name, shape, _, _) in all)
            if (shape.Length == 0 || shape.Any(d => d <= 0))
                throw new ArgumentException($"Parameter '{name}' has shape [{string.Join(", ", shape)}]; every dimension must be positive.");
        var elements = all.Sum(t => t.Shape.Aggregate(1L, (p, d) => p * d));
        if (elements > Array.MaxLength)
            throw new ArgumentException($"The model's tensors have {elements:N0} elements in all, more than one array holds ({Array.MaxLength:N0}). Use fewer units or channels.");
        static int Region((string Name, int[] Shape, ParameterRole Role, bool Frozen) t) =>
            t.Frozen ? 2 : t.Role == ParameterRole.RunningStatistic ? 1 : 0;
        var segments = new List<ParameterSegment>();
        var offset = 0;
        var regionEnds = new int[3];
        for (var region = 0; region < 3; region++)
        {
            foreach (var tensor in all.Where(t => Region(t) == region))
            {
                var segment = new ParameterSegment(tensor.Name, offset, (int[])tensor.Shape.Clone(), tensor.Role, tensor.Frozen);
                segments.Add(segment);
                offset = checked(offset + segment.Length);
            }
            regionEnds[region] = offset;
        }
        Segments = segments;
        TrainableLength = regionEnds[0];
        _trainableTensorLengths = [.. segments.Where(s => s.Trainable).Select(s => s.Length)];
        WorkerReportLength = regionEnds[1];
        TotalLength = offset;
        _byName = new Dictionary<string, ParameterSegment>(StringComparer.Ordinal);
        foreach (var segment in segments)
            if (!_byName.TryAdd(segment.Name, segment))
                throw new ArgumentException($"Parameter name '{segment.Name}' appears twice in the layout.");
    }

    /// <summary>Segments in their flat order.</summary>
    public IReadOnlyList<ParameterSegment> Segments { get; }

    /// <summary>Total number of elements of the flat vector (trainable, statistics and frozen).</summary>
    public int TotalLength { get; }

    /// <summary>Elements of the trainable tensors, the prefix <c>[0, TrainableLength)</c> that the optimizer updates.</summary>
    public int TrainableLength { get; }

    /// <summary>Elements of each trainable tensor, in flat order; they sum to <see cref="TrainableLength"/> (the gradient's
    /// tensors, which <c>Cluster:TopKScope</c> PerTensor selects within).</summary>
    public ReadOnlySpan<int> TrainableTensorLengths => _trainableTensorLengths;

    /// <summary>
    /// Elements a worker reports each round: the gradients of the trainable tensors, then its running statistics
    /// (<c>[TrainableLength, WorkerReportLength)</c>). Equals <see cref="TotalLength"/> when nothing is frozen.
    /// </summary>
    public int WorkerReportLength { get; }

    /// <summary>True when some tensors are running statistics (the model has BatchNorm).</summary>
    public bool HasRunningStatistics => WorkerReportLength > TrainableLength;

    /// <summary>Looks up a segment by name.</summary>
    /// <exception cref="KeyNotFoundException">No segment has that name; the message lists the known names.</exception>
    public ParameterSegment this[string name] =>
        _byName.TryGetValue(name, out var segment)
            ? segment
            : throw new KeyNotFoundException($"No parameter named '{name}'. Known: {string.Join(", ", _byName.Keys)}.");

}

/// <summary>
/// A flat <c>float[]</c> of parameters (or gradients) together with its <see cref="ParameterLayout"/>.
/// </summary>
public sealed class ParameterVector
{
    /// <summary>Wraps <paramref name="values"/> without copying.</summary>
    /// <exception cref="ArgumentException">The length differs from <see cref="ParameterLayout.TotalLength"/>.</exception>
    public ParameterVector(ParameterLayout layout, float[] values)
    {
        if (values.Length != layout.TotalLength)
            throw new ArgumentException($"The vector has {values.Length} elements but the layout needs {layout.TotalLength}.");
        Layout = layout;
        Values = values;
    }

    /// <summary>A zero vector of the layout's length.</summary>
    public ParameterVector(ParameterLayout layout) : this(layout, new float[layout.TotalLength]) { }

    /// <summary>The layout that names the elements.</summary>
    public ParameterLayout Layout { get; }

    /// <summary>The flat storage, <see cref="ParameterLayout.TotalLength"/> elements.</summary>
    public float[] Values { get; }

    /// <summary>The elements of one named segment.</summary>
    /// <exception cref="KeyNotFoundException">No segment has that name.</exception>
    public Span<float> Segment(string name)
    {
        var segment = Layout[name];
        return Values.AsSpan(segment.Offset, segment.Length);
    }

    /// <summary>The elements of one segment.</summary>
    public Span<float> Segment(ParameterSegment segment) => Values.AsSpan(segment.Offset, segment.Length);
}
