using Akka.Actor;
using Akka.Serialization;
using BenchmarkDotNet.Attributes;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;

namespace DistTrain.Benchmarks;

/// <summary>
/// Round trip of a 1M-float (4 MB) gradient through DistTrain's MessagePack Akka serializer.
/// GB/s = 0.004 / (mean in seconds) per direction; the target is 2 GB/s or more (near memcpy).
/// </summary>
[MemoryDiagnoser]
public class SerializerBenchmarks
{
    private ActorSystem _system = null!;
    private SerializerWithStringManifest _serializer = null!;
    private GradientComputed _message = null!;
    private byte[] _bytes = null!;

    [GlobalSetup]
    public void Setup()
    {
        _system = ActorSystem.Create("bench", AkkaSettings.Serialization());
        _message = new GradientComputed(1, 0, 0, 0, 64, 1.0, Enumerable.Range(0, 1 << 20).Select(i => (float)i).ToArray());
        _serializer = (SerializerWithStringManifest)_system.Serialization.FindSerializerFor(_message);
        _bytes = _serializer.ToBinary(_message);
    }

    [GlobalCleanup]
    public void Cleanup() => _system.Terminate().Wait();

    [Benchmark]
    public byte[] Serialize() => _serializer.ToBinary(_message);

    [Benchmark]
    public object Deserialize() => _serializer.FromBinary(_bytes, nameof(GradientComputed));

    [Benchmark]
    public object RoundTrip() => _serializer.FromBinary(_serializer.ToBinary(_message), nameof(GradientComputed));
}
