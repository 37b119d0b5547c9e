using Akka.Actor;
using Akka.Serialization;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Serialization;

namespace DistTrain.Tests;

public class SerializerTests() : TestKit(AkkaSettings.Serialization())
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
    public void Every_protocol_message_round_trips()
    {
        var probe = CreateTestProbe();
        var weights = new[] { 1.5f, -2f, float.Epsilon, 3e38f };
        object[] messages =
        [
            new AssignShard(2, [5, 1, 9], 16),
            new WeightsUpdated(3, 4, 17, weights),
            new GradientComputed(3, 4, 17, 1, 16, 35.25, weights, 0.0031),
            new RoundApplied(3, 4, 18, 64, 140.5, new RoundTiming(0.004, 0.003, 0.0025, 0.0004), 0.0125),
            new EpochCompleted(3, 18, 1000, 400.5),
            new Evaluate(18, 100, 50),
            new EvaluationResult(18, 2, 100, 50, 41, 20.75),
            GetWeights.Instance,
            new WeightsSnapshot(18, weights),
        ];
        foreach (var message in messages)
        {
            var back = RoundTrip(message);
            Assert.Equal(message.GetType(), back.GetType());
            foreach (var property in message.GetType().GetProperties().Where(p => p.Name != "EqualityContract"))
                Assert.Equal(property.GetValue(message), property.GetValue(back));
        }
        var start = (StartEpoch)RoundTrip(new StartEpoch(1, [probe.Ref, TestActor], [3, 2]));
        Assert.Equal(new[] { probe.Ref, TestActor }, start.Workers);
        Assert.Equal(new[] { 3, 2 }, start.BatchesPerWorker);
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
