using System.Numerics.Tensors;
using DistTrain.Core.Tensors;

namespace DistTrain.Core.Diagnostics;

/// <summary>One tensor's sums of squares in one measured step: of its averaged gradient, of its weights after the update, and of the update.</summary>
/// <param name="Gradient">Σ g².</param>
/// <param name="Weight">Σ w² after the step.</param>
/// <param name="Update">Σ (w_after − w_before)².</param>
public readonly record struct TensorSquares(double Gradient, double Weight, double Update);

/// <summary>Norms of one parameter tensor at one step.</summary>
/// <param name="Name">Tensor name, e.g. <c>0.weight</c>.</param>
/// <param name="GradientNorm">L2 norm of the averaged gradient (before clipping).</param>
/// <param name="WeightNorm">L2 norm of the weights after the step.</param>
/// <param name="UpdateRatio">‖Δw‖ / ‖w‖ of the step: about 1e-3 is healthy for SGD (Karpathy, "CS231n: Neural Networks Part 3", ratio of updates to values).</param>
public readonly record struct LayerHealth(string Name, double GradientNorm, double WeightNorm, double UpdateRatio);

/// <summary>Settings of the gradient diagnostics and of the vanishing and exploding gradient warnings.</summary>
public sealed class MonitoringOptions
{
    /// <summary>Measure per-tensor norms every this many steps (an extra pass over the gradient; 0 turns it off). Default 10.</summary>
    public int GradientNormEverySteps { get; set; } = 10;

    /// <summary>A tensor's gradient norm below this is "vanishing". Default 1e-7.</summary>
    public double VanishingGradientNorm { get; set; } = 1e-7;

    /// <summary>A tensor's gradient norm above this is "exploding". Default 1e3.</summary>
    public double ExplodingGradientNorm { get; set; } = 1e3;

    /// <summary>Warn after this many consecutive measurements beyond a threshold (K). Default 3.</summary>
    public int WarnAfterMeasurements { get; set; } = 3;

    /// <summary>
    /// Folder for the sample trace: which training samples each minibatch held and which workers' gradients each step
    /// applied, one CSV line per minibatch and per step (DistTrain.Cluster's <c>SampleTrace</c>). Empty (the default) is off.
    /// </summary>
    public string SampleTraceDirectory { get; set; } = "";

    /// <summary>
    /// The measured gradients are sparse (Cluster:Compression TopK sends a fraction of the elements per push): a tensor
    /// whose gradient norm is exactly 0 had none of its elements sent in that step, which says nothing about its true
    /// gradient, so the measurement neither counts toward nor interrupts a vanishing-gradient run. Not a config key: set
    /// through <see cref="ForSparseGradients"/>.
    /// </summary>
    public bool SparseGradients { get; private set; }

    /// <summary>
    /// Settings changed from their defaults that are not used because <see cref="GradientNormEverySteps"/> is 0, which turns
    /// the measurements and their warnings off: <see cref="VanishingGradientNorm"/>, <see cref="ExplodingGradientNorm"/> and
    /// <see cref="WarnAfterMeasurements"/>, one line each naming the key, its value and the fix, for the run's <c>warning:</c>
    /// lines. A value set to its default is not told from one left out, so it is not reported.
    /// </summary>
    public IEnumerable<string> UnusedSettings()
    {
        if (GradientNormEverySteps != 0) yield break;
        var defaults = new MonitoringOptions();
        if (VanishingGradientNorm != defaults.VanishingGradientNorm) yield return Unused(nameof(VanishingGradientNorm), VanishingGradientNorm);
        if (ExplodingGradientNorm != defaults.ExplodingGradientNorm) yield return Unused(nameof(ExplodingGradientNorm), ExplodingGradientNorm);
        if (WarnAfterMeasurements != defaults.WarnAfterMeasurements) yield return Unused(nameof(WarnAfterMeasurements), WarnAfterMeasurements);

        string Unused(string key, double value) =>
            $"Monitoring:{key} = {value.ToString(System.Globalization.CultureInfo.InvariantCulture)} is not used: Monitoring:GradientNormEverySteps is 0, " +
            $"which turns the gradient norms and their vanishing and exploding warnings off. Set GradientNormEverySteps (default {defaults.GradientNormEverySteps}), or remove {key}.";
    }

    /// <summary>A copy of these settings with <see cref="SparseGradients"/> set.</summary>
    public MonitoringOptions ForSparseGradients()
    {
        var copy = (MonitoringOptions)MemberwiseClone();
        copy.SparseGradients = true;
        return copy;
    }
}

/// <summary>
/// Per-tensor gradient, weight and update norms, and the warnings for vanishing and exploding
/// gradients: a tensor whose gradient norm stays below or above its threshold for
/// <see cref="MonitoringOptions.WarnAfterMeasurements"/> consecutive measurements. Each tensor's vanishing-gradient and
/// exploding-gradient warnings are given once per run (a norm hovering about a threshold would otherwise restart the count
/// and repeat the warning); when an earlier measurement saw a norm above the exploding threshold, it names dead ReLUs after too large
/// steps rather than the initialization.
/// </summary>
public sealed class GradientHealthMonitor
{
    private readonly ParameterSegment[] _segments; // the trainable tensors: only they have gradients
    private readonly MonitoringOptions _options;
    private readonly int[] _vanishingRun;
    private readonly int[] _explodingRun;
    private readonly int?[] _batchNormAfter; // per trainable tensor: for a layer's bias that a BatchNorm follows, that layer's index
    private readonly int[] _headTensors;     // the trainable tensors of the model's last layer (indices into _segments)
    private readonly double _clipNorm;
    private int _clippedRun; // consecutive measurements whose global norm was above _clipNorm
    private readonly bool[] _vanishingWarned; // per trainable tensor: its vanishing-gradient warning was given (once per tensor)
    private readonly bool[] _explodingWarned; // per trainable tensor: its exploding-gradient warning was given (once per tensor)
    private (long Step, string Tensor, double Norm)? _firstExploding; // the first measurement of a norm above the exploding threshold

    /// <summary>
    /// Consecutive measurements (every Monitoring:GradientNormEverySteps steps) whose averaged gradient's global norm was
    /// above Optimizer:GradientClipNorm before the clipping warning: a few clipped steps early in a run are what clipping is
    /// for; every step clipped for this long means the clip, not the gradient, sets the step size.
    /// </summary>
    public const int ClippedMeasurementsToWarn = 10;

    /// <summary>Creates the monitor for a model's layout.</summary>
    /// <param name="layout">The model's layout.</param>
    /// <param name="options">The thresholds and how often to measure.</param>
    /// <param name="clipNorm">Optimizer:GradientClipNorm where the update is made, 0 for none: an exploding-gradient warning
    /// then says the update is already clipped (the norms measured are before clipping) instead of advising clipping.</param>
    public GradientHealthMonitor(ParameterLayout layout, MonitoringOptions options, double clipNorm = 0)
    {
        _clipNorm = clipNorm;
        _segments = [.. layout.Segments.Where(s => s.Trainable)];
        // A bias right before a BatchNorm (the only layer with running statistics) has a zero gradient by design: the
        // BatchNorm subtracts the batch mean, and with it any constant the bias adds.
        var names = layout.Segments.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
        _batchNormAfter = [.. _segments.Select(s => s.Name.EndsWith(".bias", StringComparison.Ordinal)
            && int.TryParse(s.Name[..^".bias".Length], System.Globalization.CultureInfo.InvariantCulture, out var layer)
            && names.Contains($"{layer + 1}.running_mean") ? layer : (int?)null)];
        var layers = _segments.Select(s => LayerIndex(s.Name)).ToArray();
        var lastLayer = layout.Segments.Select(s => LayerIndex(s.Name)).DefaultIfEmpty(-1).Max();
        // Only a head with a trainable bias: its bias's gradient is the loss's gradient summed over the minibatch, small only
        // when the loss's is; a head without one also vanishes when every input to it is 0 (dead ReLUs), a dying network.
        int[] head = lastLayer < 0 ? [] : [.. Enumerable.Range(0, _segments.Length).Where(i => layers[i] == lastLayer)];
        _headTensors = head.Any(i => _segments[i].Name.EndsWith(".bias", StringComparison.Ordinal)) ? head : [];
        _options = options;
        _vanishingRun = new int[_segments.Length];
        _explodingRun = new int[_segments.Length];
        _vanishingWarned = new bool[_segments.Length];
        _explodingWarned = new bool[_segments.Length];
        Latest = new LayerHealth[_segments.Length];
    }

    /// <summary>The layer index a tensor's name starts with (<c>3</c> of <c>3.weight</c>), or -1 for a name without one.</summary>
    private static int LayerIndex(string tensorName) =>
        int.TryParse(tensorName.AsSpan(0, Math.Max(0, tensorName.IndexOf('.'))), System.Globalization.NumberStyles.None,
            System.Globalization.CultureInfo.InvariantCulture, out var layer) ? layer : -1;

    /// <summary>How every warning that the gradient clipping set every step's size begins: this monitor's, and under
    /// Cluster:Compression TopK a worker's, which clips its own pushes.</summary>
    public const string ClippingWarningStart = "Gradient clipping: ";

    /// <summary>What a vanishing-gradient warning says when the last layer's gradient vanishes too: the loss, not the signal
    /// through the layers, is the cause.</summary>
    public const string LossAboutZero = "the loss is about 0";

    /// <summary>How every vanishing-gradient warning begins; the tensor's name follows, then a space.</summary>
    public const string VanishingWarningStart = "Vanishing gradient: ";

    /// <summary>The last measurement, one entry per trainable tensor in layout order.</summary>
    public LayerHealth[] Latest { get; }

    /// <summary>L2 norm of a whole flat gradient (torch.nn.utils.clip_grad_norm_'s total norm).</summary>
    /// <remarks>Summed in float, as clipping in float32 sums it: a gradient whose squares overflow float has an infinite norm,
    /// and clipping scales it to 0 (as does the sharded server's sum of its shards' float sums). The diagnostics use
    /// <see cref="Norm"/> instead.</remarks>
    public static double GlobalNorm(ReadOnlySpan<float> gradient) => TensorPrimitives.Norm(gradient);

    /// <summary>
    /// ‖x‖₂, summed in float as <c>TensorPrimitives.Norm</c>; when that overflows to infinity, summed again in double, so
    /// finite elements past about 1.8e19 (whose squares pass float's 3.4e38) give their finite norm rather than infinity,
    /// which would read as a non-finite gradient a step before any element is one.
    /// </summary>
    public static double Norm(ReadOnlySpan<float> x) => TensorPrimitives.Norm(x) is var norm && float.IsFinite(norm) ? norm : Math.Sqrt(SumOfSquares(x));

    /// <summary>Σ x², summed in float and, when that overflows, again in double (<see cref="Norm"/>).</summary>
    public static double SumOfSquares(ReadOnlySpan<float> x)
    {
        var sum = TensorPrimitives.SumOfSquares(x);
        if (float.IsFinite(sum)) return sum;
        var wide = 0.0;
        foreach (var v in x) wide += (double)v * v;
        return wide;
    }

    /// <summary>‖a − b‖₂, as <see cref="Norm"/>: in double when float overflows.</summary>
    private static double Distance(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        var distance = TensorPrimitives.Distance(a, b);
        if (float.IsFinite(distance)) return distance;
        var wide = 0.0;
        for (var i = 0; i < a.Length; i++) wide += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        return Math.Sqrt(wide);
    }

    /// <summary>
    /// The factor clipping by global norm multiplies the gradient with: <c>min(1, maxNorm / (norm + 1e-6))</c>,
    /// as <c>torch.nn.utils.clip_grad_norm_</c>; 1 when <paramref name="maxNorm"/> is 0 (off).
    /// </summary>
    public static float ClipScale(double norm, double maxNorm) =>
        maxNorm <= 0 || norm <= maxNorm ? 1f : (float)(maxNorm / (norm + 1e-6));

    /// <summary>
    /// Measures one step: <paramref name="gradient"/> is the averaged gradient, <paramref name="before"/> and
    /// <paramref name="after"/> the weights around the update. Returns the warnings this measurement triggers
    /// (empty in a healthy run); each names the tensor, the step, the norm and the threshold.
    /// </summary>
    public IReadOnlyList<string> Measure(long step, ReadOnlySpan<float> gradient, ReadOnlySpan<float> before, ReadOnlySpan<float> after)
    {
        List<string>? warnings = null;
        for (var i = 0; i < _segments.Length; i++)
        {
            var segment = _segments[i];
            var w = after.Slice(segment.Offset, segment.Length);
            Record(i, Norm(gradient.Slice(segment.Offset, segment.Length)), Norm(w), Distance(w, before.Slice(segment.Offset, segment.Length)));
        }
        Warn(step, ref warnings);
        RecordClipping(step, ref warnings);
        return (IReadOnlyList<string>?)warnings ?? [];
    }

    /// <summary>
    /// One step's sums of squares per trainable tensor, in layout order, without judging them: a parameter-server shard
    /// measures its slices of tensors this way, and the whole tensors' norms are the square roots of the shards' sums
    /// (<see cref="Judge"/>).
    /// </summary>
    public TensorSquares[] Squares(ReadOnlySpan<float> gradient, ReadOnlySpan<float> before, ReadOnlySpan<float> after)
    {
        var squares = new TensorSquares[_segments.Length];
        for (var i = 0; i < _segments.Length; i++)
        {
            var segment = _segments[i];
            var w = after.Slice(segment.Offset, segment.Length);
            var update = Distance(w, before.Slice(segment.Offset, segment.Length));
            squares[i] = new TensorSquares(SumOfSquares(gradient.Slice(segment.Offset, segment.Length)), SumOfSquares(w), update * update);
        }
        return squares;
    }

    /// <summary>
    /// Judges one step from each trainable tensor's sums of squares (in layout order, as <see cref="Squares"/>, summed over
    /// the shards that hold parts of it), as <see cref="Measure"/> does from the vectors.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="squares"/> does not have one entry per trainable tensor.</exception>
    public IReadOnlyList<string> Judge(long step, ReadOnlySpan<TensorSquares> squares)
    {
        if (squares.Length != _segments.Length)
            throw new ArgumentException($"{squares.Length} tensors measured; the model has {_segments.Length} trainable tensors.", nameof(squares));
        List<string>? warnings = null;
        for (var i = 0; i < squares.Length; i++)
            Record(i, Math.Sqrt(squares[i].Gradient), Math.Sqrt(squares[i].Weight), Math.Sqrt(squares[i].Update));
        Warn(step, ref warnings);
        RecordClipping(step, ref warnings);
        return (IReadOnlyList<string>?)warnings ?? [];
    }

    /// <summary>Names of the trainable tensors, in the order of <see cref="Latest"/>, <see cref="Squares"/> and <see cref="Judge"/>.</summary>
    public IEnumerable<string> TensorNames => _segments.Select(s => s.Name);

    /// <summary>
    /// After the tensors of a measurement are recorded in <see cref="Latest"/>: the global norm of the trainable gradient
    /// (the norm clipping compares with Optimizer:GradientClipNorm, from the tensors' norms), and one warning when it was
    /// above the clip for <see cref="ClippedMeasurementsToWarn"/> measurements in a row.
    /// </summary>
    private void RecordClipping(long step, ref List<string>? warnings)
    {
        if (_clipNorm <= 0) return;
        var norm = Math.Sqrt(Latest.Sum(l => l.GradientNorm * l.GradientNorm));
        if (!double.IsFinite(norm)) return; // a diverging run: its own warnings and error say so
        _clippedRun = norm > _clipNorm ? _clippedRun + 1 : 0;
        if (_clippedRun == ClippedMeasurementsToWarn)
            (warnings ??= []).Add($"{ClippingWarningStart}Optimizer:GradientClipNorm = {_clipNorm:G3} clipped the averaged gradient at each of the last " +
                $"{ClippedMeasurementsToWarn} measurements (global norm now {norm:G3} at step {step}, {norm / _clipNorm:G3} times the clip), so the clip, not " +
                "the gradient's size, sets every step: the update is LearningRate times a vector of norm GradientClipNorm. If that is not meant, " +
                "raise GradientClipNorm above the usual norm (disttrain_training_gradient_norm gives it per tensor) or set it to 0, and tune " +
                "Optimizer:LearningRate instead.");
    }

    /// <summary>Records tensor <paramref name="i"/>'s norms of this measurement and its runs beyond the thresholds.</summary>
    private void Record(int i, double gradientNorm, double weightNorm, double updateNorm)
    {
        var segment = _segments[i];
        Latest[i] = new LayerHealth(segment.Name, gradientNorm, weightNorm, weightNorm > 0 ? updateNorm / weightNorm : 0);
        if (!(_options.SparseGradients && gradientNorm == 0))
            _vanishingRun[i] = gradientNorm < _options.VanishingGradientNorm ? _vanishingRun[i] + 1 : 0;
        _explodingRun[i] = IsExploding(gradientNorm) ? _explodingRun[i] + 1 : 0;
    }

    private bool IsExploding(double gradientNorm) => gradientNorm > _options.ExplodingGradientNorm || !double.IsFinite(gradientNorm);

    /// <summary>
    /// The last layer's trainable tensor with the smallest gradient norm in this measurement, when every one of them is below
    /// the vanishing threshold and one is its bias; else null. The last layer's bias gradient is the loss's own gradient
    /// summed over the minibatch, so with it every one of the layer's tensors is that small only when the loss's gradient is
    /// about 0 (the model fits its minibatches: a loss near 0); the layers before it cannot cause that.
    /// </summary>
    private LayerHealth? VanishingHead()
    {
        if (_headTensors.Length == 0) return null;
        LayerHealth? smallest = null;
        foreach (var j in _headTensors)
        {
            var norm = Latest[j].GradientNorm;
            if (!(norm < _options.VanishingGradientNorm) || (_options.SparseGradients && norm == 0)) return null;
            if (smallest is null || norm < smallest.Value.GradientNorm) smallest = Latest[j];
        }
        return smallest;
    }

    /// <summary>The warnings this measurement triggers, tensor by tensor (<see cref="Record"/> has recorded every tensor).</summary>
    private void Warn(long step, ref List<string>? warnings)
    {
        var head = VanishingHead();
        for (var i = 0; i < _segments.Length; i++) Warn(i, step, head, ref warnings);
    }

    private void Warn(int i, long step, LayerHealth? vanishingHead, ref List<string>? warnings)
    {
        var segment = _segments[i];
        var gradientNorm = Latest[i].GradientNorm;
        var exploding = IsExploding(gradientNorm);
        if (_vanishingRun[i] == _options.WarnAfterMeasurements && !_vanishingWarned[i])
        {
            // Once per tensor: a tensor whose gradient keeps vanishing after spells of exploding ones (dead ReLUs after huge
            // steps) was warned of again after each spell, 24 times in an epoch.
            _vanishingWarned[i] = true;
            (warnings ??= []).Add($"{VanishingWarningStart}{segment.Name} has had a gradient norm below {_options.VanishingGradientNorm:G3} for {_options.WarnAfterMeasurements} measurements (now {gradientNorm:G3} at step {step}). " +
                (_batchNormAfter[i] is { } layer
                    ? $"Layer {layer + 1} is a BatchNorm, which subtracts the batch mean and with it this bias, so its gradient is zero by design: set \"Bias\": false on layer {layer} (as PyTorch models do before BatchNorm)."
                    : _firstExploding is { } before
                        ? $"An earlier measurement had a gradient norm above {_options.ExplodingGradientNorm:G3} ({before.Tensor}: {before.Norm:G3} at step {before.Step}): " +
                          "steps that large can leave ReLU units outputting 0 for every input (dead ReLUs), which pass no gradient back. " +
                          (_clipNorm > 0 ? "Lower Optimizer:LearningRate." : "Lower Optimizer:LearningRate or set Optimizer:GradientClipNorm.")
                        : vanishingHead is { } head
                            ? (Array.IndexOf(_headTensors, i) >= 0 ? "This is the last layer's gradient" : $"The last layer's gradient is as small ({head.Name}: {head.GradientNorm:G3})") +
                              $", which is the loss's own gradient times that layer's inputs: {LossAboutZero}, so the model fits its training minibatches " +
                              "(if the test accuracy is well below the training accuracy, it overfits: use the overfitting controls, such as Training:EarlyStopping, " +
                              "L2 or Dropout). The initialization and the activations before it are not the cause."
                            : "Check the initialization (He for ReLU), the activations (sigmoid/tanh saturate) and the learning rate."));
        }
        if (exploding && _firstExploding is null) _firstExploding = (step, segment.Name, gradientNorm);
        if (_explodingRun[i] == _options.WarnAfterMeasurements && !_explodingWarned[i])
        {
            // Once per tensor, as the vanishing one: in a run whose gradients stay large, a single measurement dipping under
            // the threshold restarted the count, and the same warning came again after every such dip.
            _explodingWarned[i] = true;
            (warnings ??= []).Add($"Exploding gradient: {segment.Name} has had a gradient norm above {_options.ExplodingGradientNorm:G3} for {_options.WarnAfterMeasurements} measurements (now {gradientNorm:G3} at step {step}). " +
                (_clipNorm > 0
                    ? $"Optimizer:GradientClipNorm = {_clipNorm:G3} already clips the whole averaged gradient the update applies (this norm is measured before clipping); if the loss still rises, lower Optimizer:LearningRate."
                    : "Lower Optimizer:LearningRate or set Optimizer:GradientClipNorm."));
        }
    }
}
