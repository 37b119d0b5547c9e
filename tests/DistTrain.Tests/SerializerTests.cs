using Akka.Actor;
using Akka.Serialization;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Serialization;

namespace DistTrain.Tests;

public class SerializerTests() : TestKit(TestTimeouts.TestKitConfig)
{
    private object RoundTrip(object message)
    {
        var serializer = Sys.Serialization.FindSerializerFor(message);
        Assert.IsType<MessagePackMessageSerializer>(serializer);
        Assert.Equal(MessagePackMessageSerializer.SerializerId, serializer.Identifier);
        var bytes = serializer.ToBinary(message);
        var manifest = Akka.Serialization.Serialization.ManifestFor(serializer, message);
        return Sys.Serialization.Deserialize(bytes, serializer.Identifier, manifest);
    }

    [Fact]
    public void Tensors_travel_as_raw_bytes_not_element_by_element()
    {
        var gradient = Enumerable.Range(0, 1_000_000).Select(i => (float)Math.Sin(i)).ToArray();
        var message = new GradientComputed(1, 0, 0, 0, 64, 1.0, gradient);
        var bytes = Sys.Serialization.FindSerializerFor(message).ToBinary(message);
        // 4 bytes per float plus a header of a few dozen bytes (MessagePack would spend 5 per float).
        Assert.InRange(bytes.Length, 4_000_000, 4_000_100);
        var back = (GradientComputed)RoundTrip(message);
        Assert.Equal(gradient, back.Gradient);
    }

    [Fact]
    public void An_unknown_manifest_or_corrupt_bytes_give_a_clear_error()
    {
        var serializer = (SerializerWithStringManifest)Sys.Serialization.FindSerializerForType(typeof(WeightsUpdated));
        var unknown = Assert.Throws<System.Runtime.Serialization.SerializationException>(() => serializer.FromBinary([0x90], "LaunchMissiles"));
        Assert.Contains("Unknown DistTrain message type 'LaunchMissiles'", unknown.Message);
        var bytes = serializer.ToBinary(new WeightsUpdated(1, 0, 0, [1f, 2f]));
        var corrupt = Assert.Throws<System.Runtime.Serialization.SerializationException>(() => serializer.FromBinary(bytes[..^3], "WeightsUpdated"));
        Assert.Contains("WeightsUpdated", corrupt.Message);
    }
}
