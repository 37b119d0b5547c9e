using DistTrain.Core.Compression;

namespace DistTrain.Tests;

/// <summary>
/// Cluster:TopKScope: TopK over the whole gradient (Global) or over each tensor on its own (PerTensor, Deep Gradient
/// Compression's layer-wise selection), checked against sorting every tensor's elements.
/// </summary>
public sealed class TopKScopeTests
{
    private static GradientCompressionSettings Settings(double ratio, TopKScope scope, bool errorFeedback = true) =>
        new(GradientCompression.TopK, ratio, errorFeedback, Scope: scope);

    /// <summary>
    /// Six tensors, as an MLP's weights and biases: one large enough for the encoder's sampled candidate bound (100,003), a
    /// 7-element and a 1-element tensor where ⌈ratio·length⌉ is 1, and one of a few distinct values (ties, broken in index
    /// order). Over three pushes with error feedback, each tensor must send exactly the ⌈ratio·length⌉ largest magnitudes of
    /// its gradient plus residual, as sorting that tensor's elements picks, and keep the rest in the residual.
    /// </summary>
    [Theory]
    [InlineData(0.01, 1)]
    [InlineData(0.05, 2)]
    [InlineData(0.3, 3)]
    public void PerTensor_sends_exactly_each_tensors_largest_as_sorting_each_tensor_does(double ratio, int seed)
    {
        int[] lengths = [3_000, 7, 100_003, 1, 400, 64];
        var n = lengths.Sum();
        var encoder = new GradientEncoder(Settings(ratio, TopKScope.PerTensor), lengths);
        var expectedCount = lengths.Sum(length => Math.Max(1, (int)Math.Ceiling(ratio * length)));
        Assert.Equal(expectedCount, encoder.TopKCount);
        Assert.Equal(GradientEncoder.HeaderBytes + 4 + 8 * expectedCount, encoder.MessageBytes);
        Assert.Equal(encoder.MessageBytes, GradientEncoder.EncodedBytes(encoder.Settings, lengths));
        var random = new Random(seed);
        var residual = new float[n];
        for (var push = 0; push < 3; push++)
        {
            var gradient = Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
            var tiesStart = n - 64 - 400;
            for (var i = tiesStart; i < tiesStart + 400; i++) gradient[i] = random.Next(-3, 4); // the 400-element tensor: ties
            var accumulated = gradient.Zip(residual, (g, r) => g + r).ToArray();
            var expected = new float[n];
            var offset = 0;
            foreach (var length in lengths)
            {
                var take = Math.Max(1, (int)Math.Ceiling(ratio * length));
                foreach (var i in Enumerable.Range(offset, length).OrderByDescending(i => Math.Abs(accumulated[i])).ThenBy(i => i).Take(take))
                    expected[i] = accumulated[i];
                offset += length;
            }
            Assert.Equal(expected, GradientCompressionTests.Decode(encoder, gradient));
            residual = accumulated.Zip(expected, (a, sent) => a - sent).ToArray();
            Assert.Equal(residual, encoder.Residual.ToArray());
        }
    }

    /// <summary>At TopKRatio 1 every tensor sends all its elements: the same message, byte for byte, as Global's, which
    /// decodes to the gradient itself.</summary>
    [Fact]
    public void At_ratio_1_PerTensor_sends_everything_byte_for_byte_as_Global()
    {
        int[] lengths = [500, 3, 1, 250];
        var gradient = Enumerable.Range(0, lengths.Sum()).Select(i => MathF.Sin(i * 0.7f) * (1 + i % 13)).ToArray();
        var perTensor = new GradientEncoder(Settings(1, TopKScope.PerTensor), lengths);
        var global = new GradientEncoder(Settings(1, TopKScope.Global), lengths);
        Assert.Equal(global.MessageBytes, perTensor.MessageBytes);
        var perTensorMessage = new byte[perTensor.MessageBytes];
        var globalMessage = new byte[global.MessageBytes];
        perTensor.Encode(gradient, perTensorMessage);
        global.Encode(gradient, globalMessage);
        Assert.Equal(globalMessage, perTensorMessage);
        var decoded = new float[gradient.Length];
        GradientDecoder.Decode(perTensorMessage, decoded);
        Assert.Equal(gradient, decoded);
    }

    /// <summary>
    /// The point of the option: two tensors of 1,000 elements, the second's gradients 1000x smaller. At 1%, Global sends the
    /// 20 largest of the whole gradient, all from the first tensor, and the second's gradient waits in the residual;
    /// PerTensor sends 10 of each, the second's being its own 10 largest.
    /// </summary>
    [Fact]
    public void A_tensor_with_1000x_smaller_gradients_sends_nothing_under_Global_and_its_share_under_PerTensor()
    {
        int[] lengths = [1_000, 1_000];
        var random = new Random(4);
        var gradient = Enumerable.Range(0, 2_000).Select(i => (float)(random.NextDouble() * 2 - 1) * (i < 1_000 ? 1f : 1e-3f)).ToArray();

        var global = new GradientEncoder(Settings(0.01, TopKScope.Global), lengths);
        var globalSent = GradientCompressionTests.Decode(global, gradient);
        Assert.Equal(20, globalSent.Take(1_000).Count(v => v != 0));
        Assert.All(globalSent.Skip(1_000), value => Assert.Equal(0f, value));
        Assert.Equal(gradient.Skip(1_000), global.Residual.ToArray().Skip(1_000));

        var perTensor = new GradientEncoder(Settings(0.01, TopKScope.PerTensor), lengths);
        var perTensorSent = GradientCompressionTests.Decode(perTensor, gradient);
        Assert.Equal(10, perTensorSent.Take(1_000).Count(v => v != 0));
        var smallest = Enumerable.Range(1_000, 1_000).OrderByDescending(i => Math.Abs(gradient[i])).Take(10).Order();
        Assert.Equal(smallest, Enumerable.Range(1_000, 1_000).Where(i => perTensorSent[i] != 0));
        Assert.Equal(smallest.Select(i => gradient[i]), smallest.Select(i => perTensorSent[i]));
    }

    /// <summary>
    /// Momentum correction under PerTensor, by hand (m = 0.5, ratio 0.25): a 4-element tensor sends its largest accumulated
    /// velocity, and its sent element is cleared from velocity and residual (momentum factor masking), exactly as
    /// GradientCompressionTests works out for one tensor; a 1-element tensor sends its only element at every push, so
    /// nothing of it ever waits in the residual and, as under Global when k is the whole length, its velocity is kept: it
    /// sends momentum SGD's velocity 1, 0.5·1 + 1 = 1.5, 0.5·1.5 + 1 = 1.75 for a constant gradient of 1. Masking it would
    /// send 1 at every push, plain SGD for that tensor while the parameter server steps without momentum.
    /// </summary>
    [Fact]
    public void Under_momentum_correction_a_tensor_that_sends_every_element_keeps_its_velocity()
    {
        var encoder = new GradientEncoder(new GradientCompressionSettings(GradientCompression.TopK, TopKRatio: 0.25, Momentum: 0.5,
            Scope: TopKScope.PerTensor), [4, 1]);
        Assert.Equal(2, encoder.TopKCount);
        Assert.Equal([0f, -4f, 0f, 0f, 1f], GradientCompressionTests.Decode(encoder, [1f, -4f, 2f, 0.5f, 1f]));
        Assert.Equal([1f, 0f, 2f, 0.5f, 0f], encoder.Residual.ToArray());
        Assert.Equal([2.5f, 0f, 0f, 0f, 1.5f], GradientCompressionTests.Decode(encoder, [1f, 1f, -1f, 0f, 1f]));
        Assert.Equal([0f, 1f, 2f, 0.75f, 0f], encoder.Residual.ToArray());
        Assert.Equal([0f, 0f, 2f, 0f, 1.75f], GradientCompressionTests.Decode(encoder, [0f, 0f, 0f, 0f, 1f]));
        Assert.Equal([0f, 1.5f, 0f, 0.875f, 0f], encoder.Residual.ToArray());
    }

    /// <summary>
    /// PerTensor encodes each tensor exactly as a Global encoder of that tensor alone, with the same settings, would: the same
    /// sent values, the same residual, over five pushes with error feedback and momentum correction (m = 0.9). The tensors
    /// include ones that send every element at the ratio (1 element at 0.1; 1 and 2 elements at 0.6), which keep their
    /// velocity as a whole gradient sent at k = n does, and ones that send part of theirs, whose sent elements are masked.
    /// </summary>
    [Theory]
    [InlineData(0.1, 7)]
    [InlineData(0.6, 8)]
    public void PerTensor_encodes_each_tensor_as_a_Global_encoder_of_that_tensor_alone_with_momentum_correction(double ratio, int seed)
    {
        int[] lengths = [3_000, 1, 2, 3, 64];
        var settings = new GradientCompressionSettings(GradientCompression.TopK, ratio, Momentum: 0.9);
        var perTensor = new GradientEncoder(settings with { Scope = TopKScope.PerTensor }, lengths);
        var alone = lengths.Select(length => new GradientEncoder(settings, length)).ToArray();
        var random = new Random(seed);
        for (var push = 0; push < 5; push++)
        {
            var gradient = Enumerable.Range(0, lengths.Sum()).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
            var sent = GradientCompressionTests.Decode(perTensor, gradient);
            for (int t = 0, offset = 0; t < lengths.Length; offset += lengths[t], t++)
            {
                Assert.Equal(GradientCompressionTests.Decode(alone[t], gradient[offset..(offset + lengths[t])]), sent[offset..(offset + lengths[t])]);
                Assert.Equal(alone[t].Residual.ToArray(), perTensor.Residual.Slice(offset, lengths[t]).ToArray());
            }
        }
    }

    /// <summary>
    /// Transfer learning and BatchNorm under PerTensor: a model of Dense 8→6, BatchNorm, ReLU, Dense 6→5 (frozen), ReLU,
    /// Dense 5→3. Its trainable tensors are 0.weight, 0.bias, 1.weight, 1.bias, 5.weight and 5.bias, back to back in the
    /// report (48 + 6 + 6 + 6 + 15 + 3 = 84); the frozen layer travels nothing and the running statistics (12) follow the
    /// gradient. The worker's codec must send, for each trainable tensor found by name in the layout, its own ⌈0.2·length⌉
    /// largest, leave the running statistics float32 as they are, and the parameter server's reader must decode the same
    /// report from the message and the floats after it.
    /// </summary>
    [Fact]
    public void With_frozen_tensors_and_running_statistics_each_trainable_tensor_sends_its_own_largest_and_the_statistics_stay_whole()
    {
        var options = new Core.Models.ModelOptions
        {
            InputSize = 8,
            Layers =
            [
                new() { Type = Core.Models.LayerTypes.Dense, Units = 6 }, new() { Type = Core.Models.LayerTypes.BatchNorm },
                new() { Type = Core.Models.LayerTypes.ReLU }, new() { Type = Core.Models.LayerTypes.Dense, Units = 5 },
                new() { Type = Core.Models.LayerTypes.ReLU }, new() { Type = Core.Models.LayerTypes.Dense, Units = 3 },
            ],
            Freeze = ["3"],
        };
        var layout = Core.Models.ModelFactory.Build(options).Layout;
        Assert.Equal([48, 6, 6, 6, 15, 3], layout.TrainableTensorLengths.ToArray());
        Assert.Equal((84, 96, 131), (layout.TrainableLength, layout.WorkerReportLength, layout.TotalLength));
        var settings = Settings(0.2, TopKScope.PerTensor);
        var codec = new Cluster.Training.GradientWireCodec(settings, layout);
        var random = new Random(12);
        var report = Enumerable.Range(0, layout.WorkerReportLength).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var expected = new float[report.Length];
        foreach (var segment in layout.Segments.Where(s => s.Trainable))
        {
            var take = (int)Math.Ceiling(0.2 * segment.Length);
            foreach (var i in Enumerable.Range(segment.Offset, segment.Length).OrderByDescending(i => Math.Abs(report[i])).Take(take))
                expected[i] = report[i];
        }
        Array.Copy(report, layout.TrainableLength, expected, layout.TrainableLength, layout.WorkerReportLength - layout.TrainableLength);
        Assert.Equal(10 + 2 + 2 + 2 + 3 + 1, expected.Take(layout.TrainableLength).Count(v => v != 0));

        var message = codec.Encode(report);
        Assert.Equal(expected, report);
        var body = message.Concat(System.Runtime.InteropServices.MemoryMarshal.AsBytes(report.AsSpan(layout.TrainableLength)).ToArray()).ToArray();
        var received = new float[layout.WorkerReportLength];
        var reader = new Cluster.DataPlane.CompressedGradientReader(settings, layout.TrainableTensorLengths);
        Assert.Equal(body.Length, reader.Read(body, received, "worker 0"));
        Assert.Equal(expected, received);
    }

    /// <summary>A NaN is sent as under Global (it counts as the largest): one in a 1,000-element tensor and one in a 3-element
    /// tensor both reach the parameter server, each taking its tensor's one slot at 0.1%.</summary>
    [Fact]
    public void PerTensor_sends_a_NaN_in_each_tensor_that_has_one()
    {
        int[] lengths = [1_000, 3, 500];
        var random = new Random(13);
        var gradient = Enumerable.Range(0, lengths.Sum()).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        gradient[400] = float.NaN;
        gradient[1_001] = float.NaN;
        var decoded = GradientCompressionTests.Decode(new GradientEncoder(Settings(0.001, TopKScope.PerTensor), lengths), gradient);
        Assert.True(float.IsNaN(decoded[400]));
        Assert.True(float.IsNaN(decoded[1_001]));
        var largestOfThird = Enumerable.Range(1_003, 500).MaxBy(i => Math.Abs(gradient[i]));
        Assert.Equal(gradient[largestOfThird], decoded[largestOfThird]);
        Assert.Equal(3, decoded.Count(value => value != 0));
    }

    /// <summary>The count a message carries, which the parameter server's length check uses too
    /// (<see cref="GradientEncoder.EncodedBytes(GradientCompressionSettings, ReadOnlySpan{int})"/>): the main job's MLP
    /// (784-256-128-10) at 1% sends 2,352 elements under Global and 2,008 + 3 + 328 + 2 + 13 + 1 = 2,355 under PerTensor.</summary>
    [Fact]
    public void The_count_is_the_sum_of_each_tensors_ceiling_and_matches_the_parameter_servers_expected_length()
    {
        var layout = Core.Models.ModelFactory.Build(TestData.Mlp(256, 128, 10)).Layout;
        Assert.Equal([200_704, 256, 32_768, 128, 1_280, 10], layout.TrainableTensorLengths.ToArray());
        Assert.Equal(2_352, Settings(0.01, TopKScope.Global).TopKCount(layout.TrainableTensorLengths));
        Assert.Equal(2_355, Settings(0.01, TopKScope.PerTensor).TopKCount(layout.TrainableTensorLengths));
        foreach (var scope in new[] { TopKScope.Global, TopKScope.PerTensor })
        {
            var settings = Settings(0.01, scope);
            var codec = new Cluster.Training.GradientWireCodec(settings, layout);
            var reader = new Cluster.DataPlane.CompressedGradientReader(settings, layout.TrainableTensorLengths);
            Assert.Equal(GradientEncoder.HeaderBytes + 4 + 8 * settings.TopKCount(layout.TrainableTensorLengths), codec.MessageBytes);
            Assert.Equal(codec.MessageBytes, reader.MessageBytes);
            Assert.Equal(codec.MessageBytes, codec.Encode(new float[layout.WorkerReportLength]).Length);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => Settings(0.01, (TopKScope)5).TopKCount([10, 10]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GradientEncoder(Settings(0.01, TopKScope.PerTensor), [10, 0]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GradientEncoder(Settings(0.01, TopKScope.PerTensor), ReadOnlySpan<int>.Empty));
    }
}
