using System.Buffers.Binary;
using System.Diagnostics;
using Akka.Serialization;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Serialization;
using SerializationException = System.Runtime.Serialization.SerializationException;

namespace DistTrain.Tests;

/// <summary>Forged MessagePack messages fail fast, with little memory, and with a <see cref="SerializationException"/> naming the type.</summary>
public class HostileMessageTests() : TestKit(AkkaSettings.Serialization())
{
    private const long TenMegabytes = 10 << 20;

    private SerializerWithStringManifest Serializer =>
        (SerializerWithStringManifest)Sys.Serialization.FindSerializerForType(typeof(AssignShard));

    /// <summary>Runs FromBinary, which must throw a SerializationException; returns it with the bytes this thread allocated.</summary>
    private (SerializationException Error, long AllocatedBytes, TimeSpan Elapsed) Refuse(byte[] bytes, string manifest)
    {
        var serializer = Serializer;
        var clock = Stopwatch.StartNew();
        var before = GC.GetAllocatedBytesForCurrentThread();
        SerializationException? error = null;
        try
        {
            serializer.FromBinary(bytes, manifest);
        }
        catch (SerializationException e)
        {
            error = e;
        }
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.NotNull(error);
        Assert.Contains(manifest, error.Message);
        return (error, allocated, clock.Elapsed);
    }

    private static byte[] WithTensorHead(byte[] head)
    {
        var bytes = new byte[4 + head.Length];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, head.Length);
        head.CopyTo(bytes, 4);
        return bytes;
    }

    [Fact]
    public void A_forged_array32_header_of_int_max_elements_is_refused_with_little_memory()
    {
        // AssignShard: [epoch, sample indices, batch size, ...] with the indices' array32 header claiming 2^31-1 elements.
        byte[] bytes = [0x95, 0x01, 0xdd, 0x7f, 0xff, 0xff, 0xff, 0x01, 0x02];
        var (error, allocated, _) = Refuse(bytes, nameof(AssignShard));
        Assert.True(allocated < TenMegabytes, $"allocated {allocated:N0} bytes: {error.Message}");
    }

    [Fact]
    public void A_forged_bin32_header_of_int_max_bytes_is_refused_with_little_memory()
    {
        // GradientComputed's head (tensor part empty) whose Gradient field is a bin32 claiming 2^31-1 bytes.
        byte[] head = [0x9a, 0x01, 0x00, 0x00, 0x00, 0x10, 0x00, 0xc6, 0x7f, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00];
        var (error, allocated, _) = Refuse(WithTensorHead(head), nameof(GradientComputed));
        Assert.True(allocated < TenMegabytes, $"allocated {allocated:N0} bytes: {error.Message}");
    }

    [Fact]
    public void A_hundred_thousand_nested_arrays_are_refused_with_little_memory_for_every_message_type()
    {
        var nested = Enumerable.Repeat((byte)0x91, 100_000).Append((byte)0x01).ToArray();
        foreach (var type in typeof(IDistTrainMessage).Assembly.GetTypes()
                     .Where(t => t is { IsClass: true, IsAbstract: false } && typeof(IDistTrainMessage).IsAssignableFrom(t)))
        {
            var bytes = typeof(ITensorMessage).IsAssignableFrom(type) ? WithTensorHead(nested) : nested;
            var (error, allocated, _) = Refuse(bytes, type.Name);
            Assert.True(allocated < TenMegabytes, $"{type.Name}: allocated {allocated:N0} bytes: {error.Message}");
        }
    }

    [Fact]
    public void An_empty_array_is_not_a_message_of_defaults()
    {
        // Found by the fuzzer (smallest inputs, 1 byte each): [] decoded as AddWorker(null, 0) and CheckpointSaved(null, ...).
        foreach (var manifest in new[] { nameof(AddWorker), nameof(CheckpointSaved), nameof(Evaluate), nameof(AssignShard) })
        {
            var (error, _, _) = Refuse([0x90], manifest);
            Assert.Contains("has 0 fields; the type needs at least", error.Message);
        }
    }

    [Fact]
    public void A_nil_where_the_type_needs_a_value_is_refused_naming_the_member()
    {
        // RegisterWorker [1, nil, "node"] and StartEpoch [1, [nil], [1]].
        var (register, _, _) = Refuse([0x93, 0x01, 0xc0, 0xa4, (byte)'n', (byte)'o', (byte)'d', (byte)'e'], nameof(RegisterWorker));
        Assert.Contains("has no ModelFingerprint", register.Message);
        var (start, _, _) = Refuse([0x93, 0x01, 0x91, 0xc0, 0x91, 0x01], nameof(StartEpoch));
        Assert.Contains("has no Workers[0]", start.Message);
    }

    [Fact]
    public void Bytes_after_a_message_are_refused()
    {
        var bytes = Serializer.ToBinary(new Evaluate(3, 0, 10));
        var (error, _, _) = Refuse([.. bytes, 0x00], nameof(Evaluate));
        Assert.Contains("1 bytes after its end", error.Message);
    }

    [Fact]
    public void A_forged_length_says_what_was_wrong_not_only_that_decoding_failed()
    {
        var (error, _, _) = Refuse([0x95, 0x01, 0xdd, 0x7f, 0xff, 0xff, 0xff, 0x01, 0x02], nameof(AssignShard));
        Assert.DoesNotContain("Failed to deserialize", error.Message);
        Assert.Contains("9 bytes", error.Message);
    }

    [Fact]
    public void Lengths_of_up_to_2_to_the_32_in_fields_a_type_skips_are_refused_with_little_memory()
    {
        // GetWeights has no fields, so MessagePack skips whatever its array holds: here one bin32, str32 or ext32 claiming 2^32-1 bytes.
        foreach (var marker in new byte[] { 0xc6, 0xdb, 0xc9 })
        {
            var (error, allocated, _) = Refuse([0x91, marker, 0xff, 0xff, 0xff, 0xff, 0x01], nameof(GetWeights));
            Assert.True(allocated < TenMegabytes, $"allocated {allocated:N0} bytes: {error.Message}");
            Assert.Contains("truncated", error.Message);
        }
    }
}
