using BenchmarkDotNet.Attributes;
using DistTrain.Core.Compression;

namespace DistTrain.Benchmarks;

/// <summary>
/// Encoding and decoding one gradient of the main job's MLP (235,146 parameters, 940,584 bytes as float32) in each
/// wire format, with error feedback, on one thread: what compression costs a worker (encode) and the parameter server
/// (decode, per worker) per step, TopK over the whole vector or within each of the MLP's six tensors (Cluster:TopKScope).
/// Compare with the bytes saved at a link's bandwidth (docs/benchmarks.md).
/// </summary>
[MemoryDiagnoser]
public class CompressionBenchmarks
{
    private const int Parameters = 235_146;
    private static readonly int[] TensorLengths = [200_704, 256, 32_768, 128, 1_280, 10]; // 784-256-128-10: weights, biases
    private float[] _gradient = null!;
    private float[] _decoded = null!;
    private GradientEncoder _encoder = null!;
    private byte[] _message = null!;

    /// <summary>The wire format measured.</summary>
    [Params(GradientCompression.None, GradientCompression.Float16, GradientCompression.BFloat16, GradientCompression.TopK)]
    public GradientCompression Kind { get; set; }

    /// <summary>Where TopK selects (the other kinds ignore it).</summary>
    [Params(TopKScope.Global, TopKScope.PerTensor)]
    public TopKScope Scope { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(1);
        _gradient = Enumerable.Range(0, Parameters).Select(_ => (float)(random.NextDouble() * 2 - 1) * 1e-3f).ToArray();
        _decoded = new float[Parameters];
        _encoder = new GradientEncoder(new GradientCompressionSettings(Kind, TopKRatio: 0.01, ErrorFeedback: Kind != GradientCompression.None, Scope: Scope),
            TensorLengths);
        _message = new byte[_encoder.MessageBytes];
        _encoder.Encode(_gradient, _message);
    }

    [Benchmark]
    public int Encode() => _encoder.Encode(_gradient, _message);

    [Benchmark]
    public GradientCompression Decode() => GradientDecoder.Decode(_message, _decoded);
}
