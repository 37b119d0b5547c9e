using MathNet.Numerics.Distributions;

namespace DistTrain.Core.Initialization;

/// <summary>The weight initializers a config can name.</summary>
public enum InitializerKind
{
    /// <summary>Uniform on <c>[-a, a]</c> with a small <c>a</c> (<see cref="InitializerOptions.UniformRange"/>).</summary>
    Uniform,
    /// <summary>Normal with mean 0 and a small standard deviation (<see cref="InitializerOptions.NormalStd"/>).</summary>
    Normal,
    /// <summary>All zeros.</summary>
    Zeros,
    /// <summary>All equal to <see cref="InitializerOptions.Constant"/>.</summary>
    Constant,
    /// <summary>He/Kaiming normal, fan_in mode: <c>N(0, gain²/fan_in)</c>.</summary>
    HeNormal,
    /// <summary>He/Kaiming uniform, fan_in mode: <c>U(-b, b)</c>, <c>b = gain·√(3/fan_in)</c>.</summary>
    HeUniform,
    /// <summary>Xavier/Glorot normal: <c>N(0, gain²·2/(fan_in+fan_out))</c>.</summary>
    XavierNormal,
    /// <summary>Xavier/Glorot uniform: <c>U(-b, b)</c>, <c>b = gain·√(6/(fan_in+fan_out))</c>.</summary>
    XavierUniform,
}

/// <summary>Settings of the weight initializer. Biases start at zero unless the kind is <see cref="InitializerKind.Constant"/>.</summary>
public sealed class InitializerOptions
{
    /// <summary>Which initializer fills the weights. Default <see cref="InitializerKind.HeNormal"/>.</summary>
    public InitializerKind Kind { get; set; } = InitializerKind.HeNormal;

    /// <summary>
    /// Gain multiplying the standard deviation. 0 means the default: √2 for He init (the ReLU gain,
    /// as <c>torch.nn.init.kaiming_normal_</c>'s default) and 1 for Xavier init.
    /// </summary>
    public double Gain { get; set; }

    /// <summary>Half-width <c>a</c> of <see cref="InitializerKind.Uniform"/>. Default 0.05.</summary>
    public double UniformRange { get; set; } = 0.05;

    /// <summary>Standard deviation of <see cref="InitializerKind.Normal"/>. Default 0.01.</summary>
    public double NormalStd { get; set; } = 0.01;

    /// <summary>Value of <see cref="InitializerKind.Constant"/>. Default 0.</summary>
    public double Constant { get; set; }

    /// <summary>True when <paramref name="kind"/> scales its spread by <see cref="Gain"/>: the He and Xavier kinds.</summary>
    public static bool UsesGain(InitializerKind kind) =>
        kind is InitializerKind.HeNormal or InitializerKind.HeUniform or InitializerKind.XavierNormal or InitializerKind.XavierUniform;

    /// <summary>
    /// The settings <see cref="Kind"/> reads besides itself, by name: <see cref="UniformRange"/> for Uniform,
    /// <see cref="NormalStd"/> for Normal, <see cref="Constant"/> for Constant, <see cref="Gain"/> for the He and Xavier
    /// kinds, none for Zeros (as <see cref="Initializers.Fill"/> reads them).
    /// </summary>
    public IReadOnlyList<string> UsedSettings() => Kind switch
    {
        InitializerKind.Uniform => [nameof(UniformRange)],
        InitializerKind.Normal => [nameof(NormalStd)],
        InitializerKind.Constant => [nameof(Constant)],
        _ when UsesGain(Kind) => [nameof(Gain)],
        _ => [],
    };

    /// <summary>
    /// Settings changed from their defaults that <see cref="Kind"/> does not read (<see cref="UsedSettings"/>), one line
    /// each naming the key (<c>Model:Initializer:NormalStd</c>), its value and the kinds that read it, for the run's
    /// <c>warning:</c> lines: a NormalStd under HeNormal, whose spread comes from the layer's fan-in and Gain, is ignored.
    /// A value set to its default is not told from one left out, so it is not reported.
    /// </summary>
    public IEnumerable<string> UnusedSettings()
    {
        var defaults = new InitializerOptions();
        var used = UsedSettings();
        // What sets the spread of the configured kind instead, for a spread setting it ignores.
        var instead = UsesGain(Kind) ? $"; {Kind} scales its spread by each layer's fans and Model:Initializer:Gain instead"
            : Kind == InitializerKind.Zeros ? "; Zeros sets every weight to 0" : "";
        if (Gain != defaults.Gain && !used.Contains(nameof(Gain)))
            yield return Unused(nameof(Gain), Gain, "HeNormal, HeUniform, XavierNormal or XavierUniform", Kind == InitializerKind.Zeros ? instead : "");
        if (NormalStd != defaults.NormalStd && !used.Contains(nameof(NormalStd)))
            yield return Unused(nameof(NormalStd), NormalStd, nameof(InitializerKind.Normal), instead);
        if (UniformRange != defaults.UniformRange && !used.Contains(nameof(UniformRange)))
            yield return Unused(nameof(UniformRange), UniformRange, nameof(InitializerKind.Uniform), instead);
        if (Constant != defaults.Constant && !used.Contains(nameof(Constant)))
            yield return Unused(nameof(Constant), Constant, nameof(InitializerKind.Constant), instead);
    }

    private string Unused(string key, double value, string kinds, string instead) =>
        $"Model:Initializer:{key} = {value.ToString(System.Globalization.CultureInfo.InvariantCulture)} is not used by Model:Initializer:Kind {Kind}, " +
        $"only by {kinds}{instead}. Set Kind to {kinds}, or remove {key}.";
}

/// <summary>
/// Weight initializers as small pure functions over a span, seeded through the <see cref="Random"/>
/// passed in, so the same seed gives the same weights on every node.
/// </summary>
/// <remarks>Formulas follow <c>torch.nn.init</c>; each method names its paper. Fans must be positive
/// (a dense layer's are its in and out features); the methods do not check them.</remarks>
public static class Initializers
{
    /// <summary>Fills with <c>U(-range, range)</c>.</summary>
    public static void Uniform(Span<float> target, double range, Random random)
    {
        for (var i = 0; i < target.Length; i++)
            target[i] = (float)ContinuousUniform.Sample(random, -range, range);
    }

    /// <summary>Fills with <c>N(0, std²)</c>.</summary>
    public static void Normal(Span<float> target, double std, Random random)
    {
        for (var i = 0; i < target.Length; i++)
            target[i] = (float)MathNet.Numerics.Distributions.Normal.Sample(random, 0.0, std);
    }

    /// <summary>Fills with zeros.</summary>
    public static void Zeros(Span<float> target) => target.Clear();

    /// <summary>Fills with one value.</summary>
    public static void Constant(Span<float> target, float value) => target.Fill(value);

    /// <summary>
    /// He/Kaiming normal in fan_in mode: <c>std = gain / √fan_in</c>; with the ReLU gain √2 the
    /// variance is <c>2 / fan_in</c>. He et al., 2015, "Delving Deep into Rectifiers", eq. 10.
    /// </summary>
    public static void HeNormal(Span<float> target, int fanIn, double gain, Random random) =>
        Normal(target, gain / Math.Sqrt(fanIn), random);

    /// <summary>
    /// He/Kaiming uniform in fan_in mode: <c>U(-b, b)</c> with <c>b = gain · √(3 / fan_in)</c>, so the
    /// variance is <c>gain² / fan_in</c>. He et al., 2015.
    /// </summary>
    public static void HeUniform(Span<float> target, int fanIn, double gain, Random random) =>
        Uniform(target, gain * Math.Sqrt(3.0 / fanIn), random);

    /// <summary>
    /// Xavier/Glorot normal: <c>std = gain · √(2 / (fan_in + fan_out))</c>. Glorot and Bengio, 2010,
    /// "Understanding the difficulty of training deep feedforward neural networks", eq. 12.
    /// </summary>
    public static void XavierNormal(Span<float> target, int fanIn, int fanOut, double gain, Random random) =>
        Normal(target, gain * Math.Sqrt(2.0 / (fanIn + fanOut)), random);

    /// <summary>
    /// Xavier/Glorot uniform: <c>U(-b, b)</c> with <c>b = gain · √(6 / (fan_in + fan_out))</c>, so the
    /// variance is <c>gain² · 2 / (fan_in + fan_out)</c>. Glorot and Bengio, 2010, eq. 16.
    /// </summary>
    public static void XavierUniform(Span<float> target, int fanIn, int fanOut, double gain, Random random) =>
        Uniform(target, gain * Math.Sqrt(6.0 / (fanIn + fanOut)), random);

    /// <summary>
    /// Fills one weight tensor with the configured initializer.
    /// </summary>
    /// <param name="target">The tensor's elements.</param>
    /// <param name="fanIn">Inputs per output unit.</param>
    /// <param name="fanOut">Outputs per input unit.</param>
    /// <param name="options">Kind and its settings.</param>
    /// <param name="random">Seeded source.</param>
    public static void Fill(Span<float> target, int fanIn, int fanOut, InitializerOptions options, Random random)
    {
        var heGain = options.Gain > 0 ? options.Gain : Math.Sqrt(2.0);
        var xavierGain = options.Gain > 0 ? options.Gain : 1.0;
        switch (options.Kind)
        {
            case InitializerKind.Uniform: Uniform(target, options.UniformRange, random); break;
            case InitializerKind.Normal: Normal(target, options.NormalStd, random); break;
            case InitializerKind.Zeros: Zeros(target); break;
            case InitializerKind.Constant: Constant(target, (float)options.Constant); break;
            case InitializerKind.HeNormal: HeNormal(target, fanIn, heGain, random); break;
            case InitializerKind.HeUniform: HeUniform(target, fanIn, heGain, random); break;
            case InitializerKind.XavierNormal: XavierNormal(target, fanIn, fanOut, xavierGain, random); break;
            case InitializerKind.XavierUniform: XavierUniform(target, fanIn, fanOut, xavierGain, random); break;
            default: throw new ArgumentOutOfRangeException(nameof(options), options.Kind, "Unknown initializer.");
        }
    }
}
