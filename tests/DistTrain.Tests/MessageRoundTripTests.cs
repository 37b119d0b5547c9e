using System.Collections;
using System.Reflection;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Serialization;
using DistTrain.Cluster.Training;
using MessagePack;

namespace DistTrain.Tests;

/// <summary>
/// Every <see cref="IDistTrainMessage"/> type, found by reflection, through the Akka serializer and back, with every property set
/// to a value other than its default, so a field that is not carried (a missing key, a setter MessagePack cannot reach) shows.
/// </summary>
public class MessageRoundTripTests() : TestKit(TestTimeouts.TestKitConfig)
{
    /// <summary>Every concrete message type in the protocol assembly.</summary>
    private static readonly Type[] MessageTypes = typeof(IDistTrainMessage).Assembly.GetTypes()
        .Where(t => !t.IsAbstract && !t.IsInterface && typeof(IDistTrainMessage).IsAssignableFrom(t))
        .OrderBy(t => t.Name, StringComparer.Ordinal)
        .ToArray();

    public static TheoryData<string> MessageTypeNames => [.. MessageTypes.Select(t => t.Name)];

    /// <summary>A message of <paramref name="type"/> with no property at its default value; fails for a type it does not know.</summary>
    private object Sample(Type type)
    {
        var probe = CreateTestProbe().Ref;
        var tensor = new[] { 1.5f, -2f, float.Epsilon, 3e38f, -0f };
        object? sample = type.Name switch
        {
            nameof(RegisterWorker) => new RegisterWorker(ClusterProtocolInfo.Version + 6, "{\"Model\":1}", "akka.tcp://disttrain@10.0.0.7:4053",
                LostParameterServer: true, JobId: "0123456789ab", JobName: "fashion-mnist", Proof: [7, 0, 255, 42],
                ServerSettings: "{\"Optimizer\":{\"LearningRate\":0.05}}", Round: 3),
            nameof(WorkerAccepted) => new WorkerAccepted(3, "ps.example", 4054, 235_146, "0123456789ab", DataToken: [1, 2, 3, 250], Proof: [9, 8, 7],
                IgnoredSettings: "Training:BatchSizePerWorker = 32 on the worker, 64 here", Round: 3),
            nameof(RegistrationRefused) => new RegistrationRefused("model settings differ"),
            nameof(RegisterStandby) => new RegisterStandby(ClusterProtocolInfo.Version + 6, "{\"Model\":1}", "akka.tcp://disttrain@10.0.0.8:4053",
                "fashion-mnist", [7, 0, 255, 42], "{\"Optimizer\":{\"LearningRate\":0.05}}"),
            nameof(StandbyAccepted) => new StandbyAccepted("akka.tcp://disttrain@10.0.0.8:4053"),
            nameof(WorkerReady) => new WorkerReady(2, probe, Round: 3),
            nameof(JobFinished) => new JobFinished(true, "Test accuracy 88.40%", Cancelled: true), // every field set, as the round trip needs
            nameof(WorkerFailed) => new WorkerFailed(2, "Worker 2: the data plane to shard 1 of 2 at 10.0.0.9:4054 closed", LostShard: 1),
            nameof(AssignShard) => new AssignShard(2, [5, 1, 9], 16, FirstRound: 4, Rounds: 7, Steps: 2,
                Shards: [[5, 1, 9], [2, 8]], StepsPerEpoch: 12, ScalingWorkers: 3, Part: 1,
                // Slots null: a record compares an array by reference (ShardRecipeTests round-trips one with slots).
                Recipe: new ShardRecipe(60_000, 3, 2, 7, null, 0, 0xfedcba9876543210), Epochs: 30),
            nameof(StartEpoch) => new StartEpoch(3, [probe, TestActor], [3, 2], FirstRound: 5, StepsPerEpoch: 12, MidEpochResumable: false,
                Part: 2, KeepGlobalBatch: true),
            nameof(WeightsUpdated) => new WeightsUpdated(3, 4, 17, tensor, sentTimestamp: 123_456_789, shard: 2, part: 1, endRound: 9),
            nameof(GradientComputed) => Measured(new GradientComputed(3, 4, 17, 1, 16, 35.25, tensor, 0.0031, 4096)),
            nameof(RoundApplied) => PerWorker(new RoundApplied(3, 4, 18, 64, 140.5, new RoundTiming(0.004, 0.003, 0.0025, 0.0004, 8, 16), 0.0125)),
            nameof(EpochCompleted) => new EpochCompleted(3, 18, 1000, 400.5, L1Penalty: 0.25, L2Penalty: 0.125),
            nameof(Evaluate) => new Evaluate(18, 100, 50, EvaluationSplit.Validation),
            nameof(EvaluationResult) => new EvaluationResult(18, 2, 100, 50, 41, 20.75, EvaluationSplit.Validation),
            nameof(GetWeights) => GetWeights.Instance,
            nameof(WeightsSnapshot) => new WeightsSnapshot(18, tensor),
            nameof(CheckpointSaved) => new CheckpointSaved("/checkpoints/checkpoint-v0000000018-e0003-r000004.safetensors", 18, 3, 4, 1_882_128, 0.0125),
            nameof(WorkerLost) => new WorkerLost(2),
            nameof(MinibatchesLeft) => new MinibatchesLeft(3, [0, 2], [4, 5]),
            nameof(WorkerRemoved) => new WorkerRemoved(2, 5, OthersCutFrom: 6),
            nameof(AddWorker) => new AddWorker(probe, 4),
            nameof(ShardWeightsHeader) => new ShardWeightsHeader(2, 3, 41, 1, 118, 78_401, Part: 2, EndRound: 42),
            nameof(ShardLossQuery) => new ShardLossQuery(5, 3, 2),
            nameof(ShardLossAnswer) => new ShardLossAnswer(2, new LossAnswer(5, 41, HasOpen: true)),
            nameof(ShardLossDecision) => new ShardLossDecision(new LossDecision(5, 41, Keep: true), 3, 2),
            nameof(ShardNormShare) => new ShardNormShare(2, 41, 1, 0.012345678901234567),
            nameof(ShardHealthSquares) => new ShardHealthSquares(2, 40, [0.5, 1e-30], [3.25, 7.0], [1e-6, 0.125]),
            nameof(ShardPartStart) => new ShardPartStart(3, [probe, TestActor], [17, 16], 12, [TestActor, probe], probe, Part: 2, FirstRound: 9,
                CheckpointEverySteps: 50, CheckpointRequestId: 4, GradientNormEverySteps: 10, ScalingWorkers: 3, KeepGlobalBatch: true),
            nameof(ShardLossDecided) => new ShardLossDecided(new LossDecision(5, 41, Keep: true)),
            nameof(HostShard) => new HostShard("0123456789ab", 2, 3, [.. Enumerable.Range(0, 64).Select(i => (byte)(i * 7 + 1))],
                [.. Enumerable.Range(0, 32).Select(i => (byte)(255 - i))], "{\"Optimizer\":{\"LearningRate\":0.05}}", [.. Enumerable.Range(0, 32).Select(i => (byte)(i + 9))],
                ClusterProtocolInfo.Version),
            nameof(ShardHosted) => new ShardHosted("0123456789ab", 2, probe, "10.0.0.9", 4055, [probe, TestActor], [.. Enumerable.Range(0, 32).Select(i => (byte)(i + 3))],
                ClusterProtocolInfo.Version),
            nameof(ShardRoundApplied) => new ShardRoundApplied(2, 3, 1, 41, 1, 118, 96, 140.5, 0.0125, 0.0004, PartFinished: true, 0.0375, 1.25, 0.0031),
            nameof(ShardSliceRequest) => new ShardSliceRequest(7, WithOptimizerState: true, Version: 12),
            nameof(ShardServersAssigned) => new ShardServersAssigned("0123456789ab", 3, ["10.0.0.7", "shard-1.example"], [4055, 4056],
                [.. Enumerable.Range(0, 32).Select(i => (byte)(i * 3 + 1))], [.. Enumerable.Range(0, 32).Select(i => (byte)(i + 17))],
                [.. Enumerable.Range(0, 32).Select(i => (byte)(i + 11))]),
            nameof(ShardSliceChunk) => new ShardSliceChunk(7, 2, 118, 16_384, 40_000, tensor, Buffer: 2, OptimizerSteps: 117, StateBuffers: 2),
            nameof(ShardHostRefused) => new ShardHostRefused(2, "this node already hosts shard 0 of 2 of job 0123456789ab",
                [.. Enumerable.Range(0, 32).Select(i => (byte)(i + 5))]),
            nameof(ShardFailed) => new ShardFailed("0123456789ab", 2, "Shard 2: Training diverged at epoch 1, step 3",
                [.. Enumerable.Range(0, 32).Select(i => (byte)(i + 6))], DivergedEpoch: 1, DivergedStep: 3, LossFinite: false, LastGoodVersion: 1),
            _ => null,
        };
        Assert.True(sample is not null, $"{type.Name} is an IDistTrainMessage without a sample here: add one, with every property set.");
        return sample!;

        static GradientComputed Measured(GradientComputed message)
        {
            message.Measured(computeSeconds: 0.0031, allocatedBytes: 4096, queueingSeconds: 0.0007);
            return message;
        }

        static RoundApplied PerWorker(RoundApplied message)
        {
            message.ForWorkers(3);
            message.WorkerLosses[0] = 0.5;
            message.WorkerLosses[1] = double.NaN; // a worker without a minibatch this round
            message.WorkerLosses[2] = 2.25;
            message.WorkerComputeSeconds[0] = 0.003;
            message.WorkerComputeSeconds[2] = 0.004;
            message.WorkerQueueingSeconds[2] = 0.0001;
            message.WorkerStaleness[0] = 0;
            message.WorkerStaleness[1] = double.NaN;
            message.WorkerStaleness[2] = 3;
            return message;
        }
    }

    /// <summary>The public, serialized properties of a message (not MessagePack-ignored, not the record's EqualityContract).</summary>
    private static IEnumerable<PropertyInfo> SerializedProperties(Type type) => type
        .GetProperties(BindingFlags.Public | BindingFlags.Instance)
        .Where(p => p.Name != "EqualityContract" && p.GetCustomAttribute<IgnoreMemberAttribute>() is null);

    private object RoundTrip(object message)
    {
        var serializer = Sys.Serialization.FindSerializerFor(message);
        Assert.IsType<MessagePackMessageSerializer>(serializer);
        var bytes = serializer.ToBinary(message);
        var manifest = Akka.Serialization.Serialization.ManifestFor(serializer, message);
        Assert.Equal(message.GetType().Name, manifest);
        return Sys.Serialization.Deserialize(bytes, serializer.Identifier, manifest);
    }

    /// <summary>
    /// The coordinator refuses a shard message Akka.Remote's frame cannot carry by <see cref="AssignShard.EncodedBytesAtMost"/>:
    /// it must hold the serializer's real encoding, whatever the indices' widths, and not overstate it by more than the
    /// allowance for the message's other fields (else it would refuse shards that fit).
    /// </summary>
    [Theory]
    [InlineData(0, 100)]
    [InlineData(120, 200)]
    [InlineData(60_000, 70_000)]
    [InlineData(900_000, 1_000_000)]
    public void A_shard_messages_size_bound_holds_its_encoding_and_is_close_to_it(int lowestIndex, int highestIndex)
    {
        var random = new Random(7);
        int[] Indices(int count) => [.. Enumerable.Range(0, count).Select(_ => random.Next(lowestIndex, highestIndex))];
        foreach (var message in new[]
        {
            new AssignShard(3, Indices(5_000), 64, FirstRound: 12, Rounds: 79, Part: 1),
            new AssignShard(3, Indices(2_000), 64, Shards: [Indices(2_000), Indices(1_999), []], StepsPerEpoch: 40, ScalingWorkers: 3),
            new AssignShard(3, [], 64, Rounds: 79, Recipe: new ShardRecipe(int.MaxValue, 200, 199, int.MinValue, [.. Enumerable.Range(56, 200)], 256, ulong.MaxValue)),
            new AssignShard(3, [], 64, Rounds: 79, Part: 2, Recipe: new ShardRecipe(int.MaxValue, 200, 2, int.MinValue, null, 3, ulong.MaxValue,
                [Indices(3 * 40), [], Indices(3 * 500)])),
        })
        {
            var encoded = Sys.Serialization.FindSerializerFor(message).ToBinary(message).LongLength;
            var bound = message.EncodedBytesAtMost();
            Assert.InRange(bound, encoded, encoded + 64 + 5 * (2 + (message.Shards?.Length ?? 0) + (message.Recipe?.Pieces?.Length ?? 0)));
        }
    }

    [Fact]
    public void The_protocol_has_the_messages_this_test_knows_and_every_one_is_a_MessagePack_object()
    {
        Assert.True(MessageTypes.Length >= 19, $"only {MessageTypes.Length} message types found");
        foreach (var type in MessageTypes)
        {
            Assert.True(type.GetCustomAttribute<MessagePackObjectAttribute>() is not null, $"{type.Name} has no [MessagePackObject]");
            Assert.True(type.IsClass, $"{type.Name} is a struct: the serializer's manifest table only registers classes");
        }
    }

    [Theory]
    [MemberData(nameof(MessageTypeNames))]
    public void Every_message_type_round_trips_with_every_property(string typeName)
    {
        var type = MessageTypes.Single(t => t.Name == typeName);
        var message = Sample(type);
        var properties = SerializedProperties(type).ToList();
        foreach (var property in properties)
            Assert.False(IsDefault(property.GetValue(message), ConstructorDefault(type, property)),
                $"{type.Name}.{property.Name} is at its default value in the sample, so its round trip would prove nothing");

        var back = RoundTrip(message);
        Assert.IsType(type, back);
        foreach (var property in properties)
            AssertSameValue(property.GetValue(message), property.GetValue(back), $"{type.Name}.{property.Name}");
        if (message is ITensorMessage tensor)
            AssertSameValue(tensor.Tensor, ((ITensorMessage)back).Tensor, $"{type.Name}.Tensor");
    }

    /// <summary>
    /// True when <paramref name="value"/> is what the receiver would also get if the property were not carried: the
    /// constructor's default for that parameter when it has one, else the type's default (null, empty, 0, false).
    /// </summary>
    private static bool IsDefault(object? value, object? constructorDefault) => value switch
    {
        _ when constructorDefault is not null => Equals(value, constructorDefault),
        null => true,
        Array array => array.Length == 0,
        string text => text.Length == 0,
        IActorRef actor => actor.IsNobody(),
        _ when value.GetType().IsValueType => value.Equals(Activator.CreateInstance(value.GetType())),
        _ => false,
    };

    /// <summary>The default value of the serialization constructor's parameter for <paramref name="property"/>, if it has one.</summary>
    private static object? ConstructorDefault(Type type, PropertyInfo property)
    {
        var constructors = type.GetConstructors();
        var constructor = constructors.FirstOrDefault(c => c.GetCustomAttribute<SerializationConstructorAttribute>() is not null)
                          ?? constructors.OrderByDescending(c => c.GetParameters().Length).FirstOrDefault();
        var parameter = constructor?.GetParameters().FirstOrDefault(p => string.Equals(p.Name, property.Name, StringComparison.OrdinalIgnoreCase));
        return parameter is { HasDefaultValue: true } ? parameter.DefaultValue : null;
    }

    /// <summary>Equal values; arrays element by element, floats and doubles by their bits (NaN and −0 included).</summary>
    private static void AssertSameValue(object? expected, object? actual, string what)
    {
        var (sent, received) = expected switch
        {
            float[] floats => (Bits(floats.Select(BitConverter.SingleToInt32Bits)), Bits(Assert.IsType<float[]>(actual).Select(BitConverter.SingleToInt32Bits))),
            double[] doubles => (Bits(doubles.Select(BitConverter.DoubleToInt64Bits)), Bits(Assert.IsType<double[]>(actual).Select(BitConverter.DoubleToInt64Bits))),
            IEnumerable sequence and not string => (Bits(sequence.Cast<object>()), Bits(Assert.IsAssignableFrom<IEnumerable>(actual).Cast<object>())),
            _ => (expected?.ToString(), actual?.ToString()),
        };
        var same = expected is IEnumerable and not string ? sent == received : Equals(expected, actual);
        Assert.True(same, $"{what}: sent {sent}, received {received}");

        static string Bits<T>(IEnumerable<T> values) => $"[{string.Join(", ", values)}]";
    }
}
