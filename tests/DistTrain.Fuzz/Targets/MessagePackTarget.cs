using System.Buffers.Binary;
using System.Reflection;
using Akka.Actor;
using Akka.Serialization;
using CsCheck;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Serialization;
using DistTrain.Cluster.Training;
using SerializationException = System.Runtime.Serialization.SerializationException;

namespace DistTrain.Fuzz.Targets;

/// <summary>
/// The Akka serializer's <see cref="MessagePackMessageSerializer.FromBinary"/> on every DistTrain message type: an input's
/// first byte picks the manifest, the rest is the message. Inputs are valid messages of every type with random fields,
/// streams of MessagePack tokens with boundary lengths (array32, map32, bin32, str32 headers up to 2^32-1, deep nesting),
/// and byte mutations of both.
/// </summary>
public sealed class MessagePackTarget : IDisposable
{
    private readonly ActorSystem _system = ActorSystem.Create("fuzz", AkkaSettings.Serialization().WithFallback(AkkaSettings.Logging("OFF")));
    private readonly SerializerWithStringManifest _serializer;
    private readonly string[] _manifests;
    private readonly Type[] _types;

    /// <summary>Creates an actor system (no remoting) that owns the serializer.</summary>
    public MessagePackTarget()
    {
        _serializer = (SerializerWithStringManifest)_system.Serialization.FindSerializerForType(typeof(AssignShard));
        _types = [.. typeof(IDistTrainMessage).Assembly.GetTypes()
            .Where(t => t is { IsClass: true, IsAbstract: false } && typeof(IDistTrainMessage).IsAssignableFrom(t)).OrderBy(t => t.Name, StringComparer.Ordinal)];
        _manifests = [.. _types.Select(t => t.Name)];
    }

    /// <summary>The target.</summary>
    public FuzzTarget Create()
    {
        var valid = ValidMessages();
        return new FuzzTarget(
            "messagepack",
            Gen.Frequency((4, ByteMutations.Of(valid)), (3, TokenStreams()), (1, valid), (1, Gen.Byte.Array[1, 64])),
            input =>
            {
                if (input.Length == 0) return;
                var message = _serializer.FromBinary(input[1..], _manifests[input[0] % _manifests.Length]);
                if (message.GetType() != _types[input[0] % _types.Length])
                    throw new FuzzFinding("accepted", $"a {_manifests[input[0] % _manifests.Length]} decoded as {message.GetType().Name}");
                if (NullMember(message) is { } member)
                    throw new FuzzFinding("accepted", $"a {message.GetType().Name} with {member} null, which its type does not allow");
            },
            e => e is SerializationException,
            input => (1 << 20) + 8L * input.Length,
            (input, e) =>
            {
                if (!e.Message.Contains(_manifests[input[0] % _manifests.Length], StringComparison.Ordinal))
                    throw new FuzzFinding("message", $"the refusal does not name the message type: {e.Message}");
            });
    }

    /// <summary>A member declared non-nullable that holds null (or an array element that does), or null.</summary>
    private static string? NullMember(object message)
    {
        var context = new NullabilityInfoContext();
        foreach (var property in message.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance))
        {
            if (property.PropertyType.IsValueType || property.GetIndexParameters().Length > 0) continue;
            var nullability = context.Create(property);
            var value = property.GetValue(message);
            if (value is null && nullability.ReadState == NullabilityState.NotNull) return property.Name;
            if (value is Array array && nullability.ElementType?.ReadState == NullabilityState.NotNull && !property.PropertyType.GetElementType()!.IsValueType)
                for (var i = 0; i < array.Length; i++)
                    if (array.GetValue(i) is null) return $"{property.Name}[{i}]";
        }
        return null;
    }

    /// <summary>Valid messages of every type with random fields, serialized, each behind its manifest's index.</summary>
    private Gen<byte[]> ValidMessages()
    {
        var actor = _system.DeadLetters;
        var text = Gen.String[Gen.Char.AlphaNumeric, 0, 24];
        var floats = Gen.Float.Array[0, 16];
        var ints = Gen.Int[-2, 100].Array[0, 16];
        return Gen.Select(Gen.Int[0, 1000], Gen.Long[0, 1L << 40], Gen.Double, Gen.Select(text, floats, ints), Gen.Int[0, 1 << 16],
            (a, b, c, abc, pick) =>
            {
                var (s, f, i) = abc;
                object[] messages =
                [
                    new AssignShard(a, i, a + 1), new StartEpoch(a, [actor, actor], i), new WeightsUpdated(a, a, b, f, b),
                    new AssignShard(a + 1, [], a + 1, Recipe: new ShardRecipe(a + 1, 2, a % 2, a, [1, 0], 2, (ulong)b), Epochs: a),
                    new AssignShard(a + 1, [], a + 1, Part: 1, Recipe: new ShardRecipe(a + 1, 2, 0, a, null, 0, (ulong)b, [[a % 2, 0, a / 2]])),
                    new GradientComputed(a, a, b, a, a, c, f, c, b), new RoundApplied(a, a, b, a, c, new RoundTiming(c, c, c, c), c),
                    new EpochCompleted(a, b, a, c), new Evaluate(b, a, a), new EvaluationResult(b, a, a, a, a, c), GetWeights.Instance,
                    new WeightsSnapshot(b, f), new RegisterWorker(a, s, s, a % 2 == 0, s), new WorkerAccepted(a, s, a, a, s, Round: a),
                    new RegistrationRefused(s), new WorkerReady(a, actor, a), new JobFinished(a % 2 == 0, s), new CheckpointSaved(s, b, a, a, b, c),
                    new WorkerLost(a), new WorkerRemoved(a, a), new AddWorker(actor, a),
                    new ShardWeightsHeader(a % 16, a + 1, a - 1, a % 257, b, a + 1), new ShardLossQuery(a % 256, a + 1, a % 3),
                    new ShardLossAnswer(a % 16, new LossAnswer(a % 256, a, a % 2 == 0)), new ShardLossDecision(new LossDecision(a % 256, a, a % 2 == 0), a + 1, a % 3),
                    new ShardNormShare(a % 16, a, a % 257, Math.Abs(c)),
                    new ShardPartStart(a + 1, [actor, actor], [a, a + 1], a, [actor], actor, a % 3), new ShardLossDecided(new LossDecision(a % 256, a, a % 2 == 0)),
                ];
                var message = messages[pick % messages.Length];
                var index = Array.IndexOf(_types, message.GetType());
                return (byte[])[(byte)index, .. _serializer.ToBinary(message)];
            });
    }

    /// <summary>Streams of MessagePack tokens whose length fields sit on boundaries, optionally behind a tensor message's head length.</summary>
    private static Gen<byte[]> TokenStreams()
    {
        var token = Gen.Select(Gen.Int[0, 13], Gen.OneOf(ByteMutations.BoundaryIntegers), Gen.Int[1, 2000], (kind, length, repeat) =>
        {
            var n = (uint)length;
            byte[] Header(byte marker8, byte marker16, byte marker32) => n <= byte.MaxValue ? [marker8, (byte)n]
                : n <= ushort.MaxValue ? [marker16, (byte)(n >> 8), (byte)n] : [marker32, (byte)(n >> 24), (byte)(n >> 16), (byte)(n >> 8), (byte)n];
            return kind switch
            {
                0 => [0xdd, (byte)(n >> 24), (byte)(n >> 16), (byte)(n >> 8), (byte)n],         // array32
                1 => [0xdf, (byte)(n >> 24), (byte)(n >> 16), (byte)(n >> 8), (byte)n],         // map32
                2 => Header(0xc4, 0xc5, 0xc6),                                                   // bin
                3 => Header(0xd9, 0xda, 0xdb),                                                   // str
                4 => Header(0xc7, 0xc8, 0xc9).Append((byte)1).ToArray(),                          // ext
                5 => Enumerable.Repeat((byte)0x91, repeat * 50).ToArray(),                       // nested one-element arrays
                6 => [0xc0],                                                                      // nil
                7 => [0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0],                                           // int64 min
                8 => [0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],                                        // float64 NaN
                9 => [(byte)(0x90 | (n & 0x0f))],                                                 // fixarray
                10 => [(byte)(0xa0 | (n & 0x1f)), .. Enumerable.Repeat((byte)'x', (int)(n & 0x1f))], // fixstr
                11 => [0xce, (byte)(n >> 24), (byte)(n >> 16), (byte)(n >> 8), (byte)n],        // uint32
                12 => [0xc1],                                                                     // never used
                _ => [(byte)(n & 0x7f)],                                                          // positive fixint
            };
        });
        return Gen.Select(Gen.Byte, token.Array[1, 12], Gen.Bool, Gen.Int[-4, 4], (index, tokens, tensorHead, slack) =>
        {
            var body = tokens.SelectMany(t => t).ToArray();
            if (!tensorHead) return (byte[])[index, .. body];
            var prefix = new byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(prefix, body.Length + slack);
            return (byte[])[index, .. prefix, .. body];
        });
    }

    /// <inheritdoc />
    public void Dispose() => _system.Terminate().Wait(TimeSpan.FromSeconds(10));
}
