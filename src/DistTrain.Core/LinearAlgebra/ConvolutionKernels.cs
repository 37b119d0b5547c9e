namespace DistTrain.Core.LinearAlgebra;

/// <summary>Which implementation runs a <see cref="Layers.Conv2D"/> layer's forward and backward passes.</summary>
public enum ConvolutionBackend
{
    /// <summary>
    /// The process-wide choice (<see cref="ConvolutionKernels.Select"/>): oneDNN when <c>libdnnl.so.2</c> loads, else
    /// im2col; a layer whose oneDNN primitives cannot be created falls back to im2col with a warning.
    /// </summary>
    Auto,
    /// <summary>im2col plus OpenBLAS sgemm, always available (DistTrain's own code).</summary>
    Im2Col,
    /// <summary>oneDNN's direct convolution kernels (Debian's <c>libdnnl2</c>); an error when oneDNN is missing.</summary>
    OneDnn,
}

/// <summary>
/// Chooses and describes the convolution backend of the process: oneDNN 2.x (Debian's <c>libdnnl2</c>, the library
/// PyTorch's CPU convolutions run in) through its C API when it loads, else DistTrain's im2col + sgemm. The library is
/// loaded once per process, on first use; <see cref="Description"/> names the outcome for the start-up log line.
/// </summary>
public static class ConvolutionKernels
{
    private static readonly Lazy<string> OneDnnLoad = new(() => OneDnnLibrary.TryLoad(out var failure) ? "" : failure,
        LazyThreadSafetyMode.ExecutionAndPublication);
    private static volatile int _selected = (int)ConvolutionBackend.Auto;

    /// <summary>True when oneDNN loaded (loading it on first call).</summary>
    public static bool IsOneDnnAvailable => OneDnnLoad.Value.Length == 0;

    /// <summary>Why oneDNN is not available, or empty when it is.</summary>
    public static string OneDnnFailure => OneDnnLoad.Value;

    /// <summary>The process-wide backend layers built with <see cref="ConvolutionBackend.Auto"/> use.</summary>
    public static ConvolutionBackend Selected => (ConvolutionBackend)_selected;

    /// <summary>
    /// True (default) to let oneDNN choose its preferred, blocked layouts and reorder the caller's NCHW/OIHW tensors
    /// in and out; false to run its primitives on the plain layouts. Read when a layer makes its primitives (for
    /// benchmarks; docs/benchmarks.md has the comparison).
    /// </summary>
    internal static bool OneDnnPreferredLayouts { get; set; } = true;

    /// <summary>
    /// Sets the process-wide backend. <see cref="ConvolutionBackend.Auto"/> and <see cref="ConvolutionBackend.Im2Col"/>
    /// always succeed; <see cref="ConvolutionBackend.OneDnn"/> requires the library. Layers resolve the choice on their
    /// first forward pass, so call this before training starts.
    /// </summary>
    /// <exception cref="InvalidOperationException"><see cref="ConvolutionBackend.OneDnn"/> was asked for and oneDNN does not load; the message says why.</exception>
    public static void Select(ConvolutionBackend backend)
    {
        if (backend == ConvolutionBackend.OneDnn && !IsOneDnnAvailable)
            throw new InvalidOperationException($"Compute:ConvolutionBackend is OneDnn but oneDNN is not available: {OneDnnFailure}. Install Debian's libdnnl2 or choose Auto or Im2Col.");
        _selected = (int)backend;
    }

    /// <summary>The backend a layer asking for <paramref name="requested"/> gets: never <see cref="ConvolutionBackend.Auto"/>.</summary>
    /// <exception cref="InvalidOperationException"><see cref="ConvolutionBackend.OneDnn"/> was asked for and oneDNN does not load.</exception>
    public static ConvolutionBackend Resolve(ConvolutionBackend requested) => Resolve(requested, () => IsOneDnnAvailable);

    /// <summary><see cref="Resolve(ConvolutionBackend)"/> with oneDNN's availability given (tests simulate a machine without it).</summary>
    internal static ConvolutionBackend Resolve(ConvolutionBackend requested, Func<bool> oneDnnAvailable)
    {
        var backend = requested == ConvolutionBackend.Auto ? Selected : requested;
        return backend switch
        {
            ConvolutionBackend.Im2Col => ConvolutionBackend.Im2Col,
            ConvolutionBackend.OneDnn when !oneDnnAvailable() =>
                throw new InvalidOperationException($"Conv2D asked for oneDNN, which is not available: {OneDnnFailure}."),
            ConvolutionBackend.OneDnn => ConvolutionBackend.OneDnn,
            _ => oneDnnAvailable() ? ConvolutionBackend.OneDnn : ConvolutionBackend.Im2Col,
        };
    }

    /// <summary>True when <paramref name="model"/> has a Conv2D layer (so the start-up log names the convolution backend).</summary>
    public static bool UsedBy(Models.ModelOptions model) =>
        model.Layers.Any(layer => string.Equals(layer.Type, Models.LayerTypes.Conv2D, StringComparison.OrdinalIgnoreCase));

    /// <summary>One line naming the backend of layers built with <see cref="ConvolutionBackend.Auto"/>, and why im2col when it is.</summary>
    public static string Description => Resolve(ConvolutionBackend.Auto) == ConvolutionBackend.OneDnn
        ? $"Convolutions: oneDNN {OneDnnLibrary.VersionText} ({OneDnnLibrary.LoadedFrom}), {(OneDnnPreferredLayouts ? "its preferred blocked layouts" : "plain layouts")}, OpenMP threads per call as BLAS"
        : $"Convolutions: im2col + sgemm ({(Selected == ConvolutionBackend.Im2Col ? "Compute:ConvolutionBackend is Im2Col" : OneDnnFailure)})";
}
