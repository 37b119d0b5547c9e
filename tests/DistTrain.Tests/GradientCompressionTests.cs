using System.Buffers.Binary;
using DistTrain.Core.Compression;

namespace DistTrain.Tests;

/// <summary>The wire encodings of a gradient: PyTorch's rounding for the 16-bit formats, exact TopK selection, error
/// feedback that loses nothing, and refusal of malformed messages.</summary>
public sealed class GradientCompressionTests
{
    // float32 bits, then PyTorch 1.13's tensor.bfloat16() and tensor.half() bits of the same value: 20 random values
    // (scales 1e-3 and 300) and 15 edge cases (ties to even both ways, just off a tie, the largest float32, the
    // smallest subnormal, -0, ±infinity, binary16's overflow edge, its smallest subnormal, float32's smallest normal).
    private static readonly (uint Float, ushort BFloat16, ushort Float16)[] TorchRounding =
    [
        (0x35A51BC0u, 0x35A5, 0x0015), (0x399CA0F3u, 0x399D, 0x0CE5), (0xB98FBA29u, 0xB990, 0x8C7E), (0xBA69769Cu, 0xBA69, 0x934C),
        (0xB9EE60E2u, 0xB9EE, 0x8F73), (0xBA81FA23u, 0xBA82, 0x9410), (0x387C42B4u, 0x387C, 0x03F1), (0x3AAFAA2Au, 0x3AB0, 0x157D),
        (0xBA01076Cu, 0xBA01, 0x9008), (0xBA22A75Eu, 0xBA23, 0x9115), (0x3A0068BFu, 0x3A00, 0x1003), (0x39BB1C91u, 0x39BB, 0x0DD9),
        (0x41FCFE84u, 0x41FD, 0x4FE8), (0xC38B91F9u, 0xC38C, 0xDC5D), (0xC10C68A4u, 0xC10C, 0xC863), (0x43509749u, 0x4351, 0x5A85),
        (0xC3C9A1D7u, 0xC3CA, 0xDE4D), (0xC30948E4u, 0xC309, 0xD84A), (0xC40E977Au, 0xC40F, 0xE075), (0xC3C16E40u, 0xC3C1, 0xDE0B),
        (0x3F808000u, 0x3F80, 0x3C04), (0x3F818000u, 0x3F82, 0x3C0C), (0x3F807FFFu, 0x3F80, 0x3C04), (0x3F808001u, 0x3F81, 0x3C04),
        (0x7F7FFFFFu, 0x7F80, 0x7C00), (0x00000001u, 0x0000, 0x0000), (0x80000000u, 0x8000, 0x8000), (0x7F800000u, 0x7F80, 0x7C00),
        (0xFF800000u, 0xFF80, 0xFC00), (0x477FE000u, 0x4780, 0x7BFF), (0x477FF000u, 0x4780, 0x7C00), (0x33800000u, 0x3380, 0x0001),
        (0x387FC000u, 0x3880, 0x03FF), (0xC2F6E979u, 0xC2F7, 0xD7B7), (0x00800000u, 0x0080, 0x0000),
    ];

    private static float[] TorchInputs() => TorchRounding.Select(r => BitConverter.UInt32BitsToSingle(r.Float)).ToArray();

    [Fact]
    public void BFloat16_and_Float16_round_as_PyTorch_does_in_the_vectorized_and_the_scalar_path()
    {
        var inputs = TorchInputs();
        var bfloat16 = new ushort[inputs.Length];
        var float16 = new Half[inputs.Length];
        HalfPrecision.ToBFloat16(inputs, bfloat16); // 35 elements: vector blocks, then a scalar tail
        HalfPrecision.ToFloat16(inputs, float16);
        for (var i = 0; i < inputs.Length; i++)
        {
            Assert.True(TorchRounding[i].BFloat16 == bfloat16[i], $"bfloat16 of 0x{TorchRounding[i].Float:X8}: 0x{bfloat16[i]:X4}, PyTorch 0x{TorchRounding[i].BFloat16:X4}");
            Assert.Equal(TorchRounding[i].BFloat16, HalfPrecision.ToBFloat16(TorchRounding[i].Float));
            Assert.True(TorchRounding[i].Float16 == BitConverter.HalfToUInt16Bits(float16[i]), $"binary16 of 0x{TorchRounding[i].Float:X8}");
        }
        // Shifted by one element, every value also takes the other path.
        var shifted = new ushort[inputs.Length - 1];
        HalfPrecision.ToBFloat16(inputs.AsSpan(1), shifted);
        Assert.Equal(bfloat16[1..], shifted);
    }

    [Fact]
    public void Widening_is_exact_and_a_NaN_stays_a_NaN_with_its_sign()
    {
        var bits = TorchRounding.Select(r => r.BFloat16).ToArray();
        var widened = new float[bits.Length];
        HalfPrecision.FromBFloat16(bits, widened);
        for (var i = 0; i < bits.Length; i++) Assert.Equal((uint)bits[i] << 16, BitConverter.SingleToUInt32Bits(widened[i]));

        var nans = new[] { float.NaN, -float.NaN, BitConverter.UInt32BitsToSingle(0x7F800001) }; // the last a signalling NaN
        var rounded = new ushort[nans.Length];
        HalfPrecision.ToBFloat16(nans, rounded);
        var back = new float[nans.Length];
        HalfPrecision.FromBFloat16(rounded, back);
        Assert.All(back, value => Assert.True(float.IsNaN(value)));
        Assert.Equal(nans.Select(float.IsNegative), back.Select(float.IsNegative));
    }

    [Theory]
    [InlineData(GradientCompression.None)]
    [InlineData(GradientCompression.Float16)]
    [InlineData(GradientCompression.BFloat16)]
    public void A_dense_message_decodes_to_the_rounded_gradient_and_None_is_bit_identical(GradientCompression kind)
    {
        var gradient = RandomGradient(1_003, seed: 1, scale: 0.01f);
        var encoder = new GradientEncoder(new GradientCompressionSettings(kind, ErrorFeedback: false), gradient.Length);
        var message = new byte[encoder.MessageBytes];
        Assert.Equal(GradientEncoder.HeaderBytes + (kind == GradientCompression.None ? 4 : 2) * gradient.Length, encoder.Encode(gradient, message));
        var decoded = new float[gradient.Length];
        Assert.Equal(kind, GradientDecoder.Decode(message, decoded));
        for (var i = 0; i < gradient.Length; i++)
        {
            var expected = kind switch
            {
                GradientCompression.None => gradient[i],
                GradientCompression.Float16 => (float)(Half)gradient[i],
                _ => BitConverter.UInt32BitsToSingle((uint)HalfPrecision.ToBFloat16(BitConverter.SingleToUInt32Bits(gradient[i])) << 16),
            };
            Assert.Equal(BitConverter.SingleToUInt32Bits(expected), BitConverter.SingleToUInt32Bits(decoded[i]));
        }
        Assert.True(encoder.Residual.IsEmpty);
    }

    [Fact]
    public void TopK_sends_exactly_the_k_largest_magnitudes_ties_in_index_order_and_keeps_the_rest_as_residual()
    {
        var gradient = RandomGradient(10_000, seed: 2, scale: 1f);
        for (var i = 0; i < 40; i++) gradient[100 * i + 7] = i % 2 == 0 ? 3.5f : -3.5f; // 40 equal magnitudes, the largest
        var settings = new GradientCompressionSettings(GradientCompression.TopK, TopKRatio: 0.003); // k = 30 of them
        var encoder = new GradientEncoder(settings, gradient.Length);
        Assert.Equal(30, encoder.TopKCount);
        var decoded = Decode(encoder, gradient);

        var sent = Enumerable.Range(0, decoded.Length).Where(i => decoded[i] != 0).ToArray();
        Assert.Equal(Enumerable.Range(0, 30).Select(i => 100 * i + 7), sent); // the first 30 of the tie, by index
        foreach (var i in sent) Assert.Equal(gradient[i], decoded[i]);
        for (var i = 0; i < gradient.Length; i++) Assert.Equal(sent.Contains(i) ? 0f : gradient[i], encoder.Residual[i]);

        // Without ties: the same set as a full sort by magnitude.
        var plain = RandomGradient(50_001, seed: 3, scale: 1f);
        var onePercent = new GradientEncoder(new GradientCompressionSettings(GradientCompression.TopK, 0.01), plain.Length);
        Assert.Equal(501, onePercent.TopKCount);
        var expected = Enumerable.Range(0, plain.Length).OrderByDescending(i => Math.Abs(plain[i])).Take(501).Order();
        var topK = Decode(onePercent, plain);
        Assert.Equal(expected, Enumerable.Range(0, plain.Length).Where(i => topK[i] != 0));
        Assert.Equal(GradientEncoder.HeaderBytes + 4 + 8 * 501, onePercent.MessageBytes);
    }

    [Theory]
    [InlineData(GradientCompression.TopK)]
    [InlineData(GradientCompression.Float16)]
    [InlineData(GradientCompression.BFloat16)]
    public void With_error_feedback_what_was_sent_plus_the_residual_is_what_was_computed(GradientCompression kind)
    {
        const int length = 4_096, pushes = 60;
        var encoder = new GradientEncoder(new GradientCompressionSettings(kind, TopKRatio: 0.01), length);
        var computed = new double[length];
        var sent = new double[length];
        for (var push = 0; push < pushes; push++)
        {
            var gradient = RandomGradient(length, seed: 10 + push, scale: 1e-3f);
            var decoded = Decode(encoder, gradient);
            for (var i = 0; i < length; i++) { computed[i] += gradient[i]; sent[i] += decoded[i]; }
        }
        // Each push splits g + r exactly into what is sent and the new residual, up to one float32 rounding of g + r.
        for (var i = 0; i < length; i++)
            Assert.True(Math.Abs(sent[i] + encoder.Residual[i] - computed[i]) <= 1e-8 * pushes + 1e-6 * Math.Abs(computed[i]),
                $"element {i}: sent {sent[i]} + residual {encoder.Residual[i]} against computed {computed[i]}");
        // Without error feedback, TopK loses most of what it does not send.
        if (kind != GradientCompression.TopK) return;
        var lossy = new GradientEncoder(new GradientCompressionSettings(kind, TopKRatio: 0.01, ErrorFeedback: false), length);
        var lossySent = new double[length];
        for (var push = 0; push < pushes; push++)
        {
            var decoded = Decode(lossy, RandomGradient(length, seed: 10 + push, scale: 1e-3f));
            for (var i = 0; i < length; i++) lossySent[i] += decoded[i];
        }
        Assert.True(lossy.Residual.IsEmpty);
        var lost = Enumerable.Range(0, length).Sum(i => Math.Abs(computed[i] - lossySent[i]));
        Assert.True(lost > 0.5 * computed.Sum(Math.Abs), $"lost {lost} of {computed.Sum(Math.Abs)}");
    }

    [Fact]
    public void TopK_sends_a_NaN_so_the_parameter_server_sees_a_non_finite_gradient()
    {
        var gradient = RandomGradient(1_000, seed: 4, scale: 1f);
        gradient[500] = float.NaN;
        var decoded = Decode(new GradientEncoder(new GradientCompressionSettings(GradientCompression.TopK, 0.001), gradient.Length), gradient);
        Assert.True(float.IsNaN(decoded[500]));
        Assert.Equal(1, decoded.Count(value => value != 0));
    }

    [Fact]
    public void Restoring_a_residual_continues_where_the_encoder_left_off()
    {
        var settings = new GradientCompressionSettings(GradientCompression.TopK, 0.05);
        var first = new GradientEncoder(settings, 2_000);
        Decode(first, RandomGradient(2_000, seed: 5, scale: 1f));
        var resumed = new GradientEncoder(settings, 2_000);
        resumed.RestoreResidual(first.Residual);
        var next = RandomGradient(2_000, seed: 6, scale: 1f);
        Assert.Equal(Decode(first, next), Decode(resumed, next));
        Assert.Throws<ArgumentException>(() => resumed.RestoreResidual(new float[1_999]));
    }

    public static TheoryData<string, Func<byte[], byte[]>> Malformed => new()
    {
        { "fewer than its 5-byte header", message => message[..3] },
        { "compression kind 9 is unknown", message => { message[0] = 9; return message; } },
        { "gradient of 101 elements, and this model has 100 parameters", message => { BinaryPrimitives.WriteInt32LittleEndian(message.AsSpan(1), 101); return message; } },
        { "TopK count 101 is outside [0, 100]", message => { BinaryPrimitives.WriteInt32LittleEndian(message.AsSpan(5), 101); return message; } },
        { "TopK count -1 is outside", message => { BinaryPrimitives.WriteInt32LittleEndian(message.AsSpan(5), -1); return message; } },
        { "payload has 83 bytes where 84 were expected", message => message[..^1] },
        { "payload has 85 bytes where 84 were expected", message => [.. message, 0] },
        { "index 100 is out of range or not ascending", message => { BinaryPrimitives.WriteInt32LittleEndian(message.AsSpan(9 + 4 * 9), 100); return message; } },
        { "index 0 is out of range or not ascending", message => { BinaryPrimitives.WriteInt32LittleEndian(message.AsSpan(9 + 4), 0); return message; } },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void A_malformed_message_is_refused_naming_the_field_and_nothing_is_written(string problem, Func<byte[], byte[]> corrupt)
    {
        var gradient = RandomGradient(100, seed: 8, scale: 1f);
        var encoder = new GradientEncoder(new GradientCompressionSettings(GradientCompression.TopK, 0.1), gradient.Length);
        var message = new byte[encoder.MessageBytes];
        encoder.Encode(gradient, message);
        var destination = Enumerable.Repeat(42f, gradient.Length).ToArray();
        var error = Assert.Throws<InvalidDataException>(() => GradientDecoder.Decode(corrupt(message), destination));
        Assert.Contains(problem, error.Message);
        Assert.StartsWith("A compressed gradient message was refused", error.Message);
        Assert.All(destination, value => Assert.Equal(42f, value));
    }

    /// <summary>TopK sends ⌈ratio·n⌉ of the ratio as written: 7 of 100 at 0.07, where binary floating point makes the product
    /// 7.000000000000001 (and its ceiling 8); the main MLP's 2,352 of 235,146 at 1% (2,351.46 rounded up); at least one.</summary>
    [Theory]
    [InlineData(0.07, 100, 7)]
    [InlineData(0.14, 100, 14)]
    [InlineData(0.28, 100, 28)]
    [InlineData(0.56, 100, 56)]
    [InlineData(0.07, 1000, 70)]
    [InlineData(0.01, 235_146, 2_352)]
    [InlineData(1e-9, 10, 1)]
    [InlineData(1.0, 10, 10)]
    public void TopK_sends_the_ceiling_of_the_ratio_as_written_times_the_length(double ratio, int length, int expected)
    {
        var settings = new GradientCompressionSettings(GradientCompression.TopK, ratio);
        Assert.Equal(expected, settings.TopKCount(length));
        Assert.Equal(expected, new GradientEncoder(settings, length).TopKCount);
        Assert.Equal(GradientEncoder.HeaderBytes + 4 + 8 * expected, GradientEncoder.EncodedBytes(settings, length));
    }

    [Fact]
    public void Settings_out_of_range_are_refused_when_the_encoder_is_made()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new GradientEncoder(new GradientCompressionSettings(GradientCompression.TopK, 0), 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GradientEncoder(new GradientCompressionSettings(GradientCompression.TopK, 1.5), 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GradientEncoder(new GradientCompressionSettings((GradientCompression)7), 10));
        Assert.Equal(10, new GradientEncoder(new GradientCompressionSettings(GradientCompression.TopK, 1), 10).TopKCount);
        Assert.Equal(1, new GradientEncoder(new GradientCompressionSettings(GradientCompression.TopK, 1e-9), 10).TopKCount);
    }

    /// <summary>
    /// Deep Gradient Compression's momentum correction (Lin et al., ICLR 2018, Algorithm in section 3.2, with momentum
    /// factor masking), by hand for three pushes with m = 0.5 and k = 1 of 4: the velocity u = m·u + g accumulates into the
    /// residual, the largest accumulated element is sent, and both u and the residual are cleared where it was sent.
    /// </summary>
    [Fact]
    public void Momentum_correction_sends_the_largest_accumulated_velocity_and_clears_what_it_sent_from_velocity_and_residual()
    {
        var encoder = new GradientEncoder(new GradientCompressionSettings(GradientCompression.TopK, TopKRatio: 0.25, Momentum: 0.5), 4);
        // u = [1, -4, 2, 0.5], a = u: sends -4 at 1; residual [1, 0, 2, 0.5], u [1, 0, 2, 0.5].
        Assert.Equal([0f, -4f, 0f, 0f], Decode(encoder, [1f, -4f, 2f, 0.5f]));
        Assert.Equal([1f, 0f, 2f, 0.5f], encoder.Residual.ToArray());
        // u = 0.5 [1, 0, 2, 0.5] + [1, 1, -1, 0] = [1.5, 1, 0, 0.25], a = u + residual = [2.5, 1, 2, 0.75]: sends 2.5 at 0.
        Assert.Equal([2.5f, 0f, 0f, 0f], Decode(encoder, [1f, 1f, -1f, 0f]));
        Assert.Equal([0f, 1f, 2f, 0.75f], encoder.Residual.ToArray());
        // u = 0.5 [0, 1, 0, 0.25] = [0, 0.5, 0, 0.125], a = [0, 1.5, 2, 0.875]: sends 2 at 2. Without the masking of u at 0
        // the velocity there would have been 0.75 and a[0] = 0.75.
        Assert.Equal([0f, 0f, 2f, 0f], Decode(encoder, [0f, 0f, 0f, 0f]));
        Assert.Equal([0f, 1.5f, 0f, 0.875f], encoder.Residual.ToArray());

        Assert.Throws<ArgumentOutOfRangeException>(() => new GradientEncoder(new GradientCompressionSettings(GradientCompression.Float16, Momentum: 0.9), 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GradientEncoder(new GradientCompressionSettings(GradientCompression.TopK, ErrorFeedback: false, Momentum: 0.9), 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GradientEncoder(new GradientCompressionSettings(GradientCompression.TopK, Momentum: 1), 4));
    }

    /// <summary>
    /// At TopKRatio 1 every element is sent at every push, so nothing waits in the residual and momentum factor masking
    /// has nothing to correct: with momentum correction the workers' messages must carry momentum SGD's velocity, and a
    /// parameter server stepping without momentum must move the weights exactly as momentum SGD on the raw gradients
    /// (as DGC's reference implementation does when it does not compress). Masking every sent element there would clear
    /// the velocity at every push and leave plain SGD.
    /// </summary>
    [Fact]
    public void Momentum_correction_at_ratio_1_steps_exactly_as_momentum_SGD()
    {
        const int n = 1_000;
        var encoder = new GradientEncoder(new GradientCompressionSettings(GradientCompression.TopK, TopKRatio: 1, Momentum: 0.9), n);
        var momentumSgd = Core.Optimization.Optimizer.Create(new Core.Optimization.OptimizerOptions { LearningRate = 0.1, Momentum = 0.9 }, n);
        var plainSgd = Core.Optimization.Optimizer.Create(new Core.Optimization.OptimizerOptions { LearningRate = 0.1 }, n);
        var reference = RandomGradient(n, seed: 11, scale: 1f);
        var corrected = reference.ToArray();
        for (var push = 0; push < 5; push++)
        {
            var gradient = RandomGradient(n, seed: 20 + push, scale: 0.1f);
            momentumSgd.Step(reference, gradient.ToArray(), 0.1f);
            plainSgd.Step(corrected, Decode(encoder, gradient), 0.1f);
        }
        Assert.Equal(reference, corrected);
        Assert.All(encoder.Residual.ToArray(), value => Assert.Equal(0f, value));
    }

    /// <summary>
    /// On vectors large enough for the encoder to narrow the selection to candidates above a sampled bound, TopK still
    /// sends exactly the k largest magnitudes with ties in index order, as sorting every element does: for smooth
    /// values, for values with many ties (a few distinct magnitudes), for a vector whose largest elements all sit between
    /// the samples (all sampled values are 0, so the bound admits everything), and for one whose largest elements are
    /// exactly the sampled ones (every 25th): the bound then admits about 400, fewer than k = 5,001, and the encoder falls
    /// back to every element.
    /// </summary>
    [Theory]
    [InlineData("smooth", 0.01)]
    [InlineData("smooth", 0.2)]
    [InlineData("ties", 0.01)]
    [InlineData("between the samples", 0.001)]
    [InlineData("the sampled ones", 0.05)]
    public void TopK_on_large_vectors_sends_what_sorting_every_element_picks(string shape, double ratio)
    {
        const int n = 100_003;
        var random = new Random(5);
        var gradient = shape switch
        {
            "smooth" => RandomGradient(n, 3, 1f),
            "ties" => Enumerable.Range(0, n).Select(_ => (float)random.Next(-6, 7)).ToArray(),
            "between the samples" => Enumerable.Range(0, n).Select(i => i % 25 == 7 ? 10f + i % 97 : 1e-3f * (i % 5)).ToArray(),
            _ => Enumerable.Range(0, n).Select(i => i % 25 == 0 ? 100f + 1e-3f * i : 1e-3f * (i % 1000)).ToArray(),
        };
        var encoder = new GradientEncoder(new GradientCompressionSettings(GradientCompression.TopK, ratio, ErrorFeedback: false), n);
        var k = encoder.TopKCount;
        var expected = new float[n];
        foreach (var i in Enumerable.Range(0, n).OrderByDescending(i => Math.Abs(gradient[i])).ThenBy(i => i).Take(k))
            expected[i] = gradient[i];
        Assert.Equal(expected, Decode(encoder, gradient));
    }

    /// <summary>
    /// A cut of a message for a shard's slice (<see cref="GradientMessageSlice"/>) decodes to exactly that slice of what the
    /// whole message decodes to, bit for bit, for every kind and for ranges that start and end anywhere (mid-tensor, empty,
    /// the whole gradient); the TopK cuts of a partition hold every pick once; a cut's size is at most
    /// <see cref="GradientMessageSlice.MaxBytes"/>, and exactly the range's share for the dense kinds.
    /// </summary>
    [Theory]
    [InlineData(GradientCompression.None, TopKScope.Global)]
    [InlineData(GradientCompression.Float16, TopKScope.Global)]
    [InlineData(GradientCompression.BFloat16, TopKScope.Global)]
    [InlineData(GradientCompression.TopK, TopKScope.Global)]
    [InlineData(GradientCompression.TopK, TopKScope.PerTensor)]
    public void A_cut_of_a_message_decodes_to_that_slice_of_the_whole_message_bit_for_bit(GradientCompression kind, TopKScope scope)
    {
        int[] tensors = [700, 13, 4_000, 1, 287];
        var n = tensors.Sum();
        var encoder = new GradientEncoder(new GradientCompressionSettings(kind, TopKRatio: 0.03, Scope: scope), tensors);
        var message = new byte[encoder.MessageBytes];
        var random = new Random(11);
        for (var push = 0; push < 3; push++)
        {
            var gradient = RandomGradient(n, push, 1f);
            gradient[random.Next(n)] = 40f; // a pick for TopK wherever it falls
            encoder.Encode(gradient, message);
            var whole = new float[n];
            GradientDecoder.Decode(message, whole);
            // A random partition into 1 to 6 ranges, one of them possibly empty, then the whole gradient as one range.
            var bounds = Enumerable.Range(0, random.Next(0, 6)).Select(_ => random.Next(0, n + 1)).Append(0).Append(n).Order().ToArray();
            var partition = bounds.Zip(bounds.Skip(1)).ToArray();
            var picks = 0;
            foreach (var (start, end) in partition.Append((0, n)))
            {
                var cut = GradientMessageSlice.Cut(message, start, end - start);
                var most = GradientMessageSlice.MostBytes(kind, end - start, encoder.TopKCount);
                if (kind == GradientCompression.TopK) Assert.InRange(cut.Length, GradientEncoder.HeaderBytes + 4, most);
                else
                {
                    var exact = GradientEncoder.HeaderBytes + (kind == GradientCompression.None ? 4 : 2) * (end - start);
                    Assert.Equal((exact, exact), (cut.Length, most));
                }
                var slice = new float[end - start];
                Assert.Equal(kind, GradientDecoder.Decode(cut, slice));
                for (var i = 0; i < slice.Length; i++)
                    Assert.True(BitConverter.SingleToInt32Bits(whole[start + i]) == BitConverter.SingleToInt32Bits(slice[i]),
                        $"{kind} push {push}, cut [{start}, {end}): element {i} is {slice[i]:R}, the whole message's {whole[start + i]:R}");
                if (kind == GradientCompression.TopK) picks += BinaryPrimitives.ReadInt32LittleEndian(cut.AsSpan(GradientEncoder.HeaderBytes));
            }
            // The partition's cuts hold every pick once, and the whole range's cut holds them all again.
            if (kind == GradientCompression.TopK) Assert.Equal(2 * encoder.TopKCount, picks);
        }
    }

    [Fact]
    public void A_cut_outside_the_message_or_of_a_malformed_message_is_refused_naming_the_problem()
    {
        var encoder = new GradientEncoder(new GradientCompressionSettings(GradientCompression.TopK, TopKRatio: 0.1), 100);
        var message = new byte[encoder.MessageBytes];
        encoder.Encode(RandomGradient(100, 1, 1f), message);
        Assert.Contains("[90, 101) is not inside the message's 100 elements", Assert.Throws<ArgumentOutOfRangeException>(() => GradientMessageSlice.Cut(message, 90, 11)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => GradientMessageSlice.Cut(message, -1, 5));
        Assert.Contains("its TopK count 10 does not fit its 80-byte payload and 100 elements", Assert.Throws<InvalidDataException>(() => GradientMessageSlice.Cut(message[..^4], 0, 10)).Message);
        var float16 = new byte[GradientEncoder.EncodedBytes(new GradientCompressionSettings(GradientCompression.Float16), 100)];
        new GradientEncoder(new GradientCompressionSettings(GradientCompression.Float16), 100).Encode(RandomGradient(100, 2, 1f), float16);
        Assert.Contains("its Float16 payload has 198 bytes where 200 were expected",
            Assert.Throws<InvalidDataException>(() => GradientMessageSlice.Cut(float16[..^2], 0, 10)).Message);
        float16[0] = 9;
        Assert.Contains("compression kind 9 is unknown", Assert.Throws<InvalidDataException>(() => GradientMessageSlice.Cut(float16, 0, 10)).Message);
    }

    [Fact]
    public void Selection_finds_the_kth_largest_as_a_sort_does_with_duplicates()
    {
        var random = new Random(9);
        for (var trial = 0; trial < 200; trial++)
        {
            var values = Enumerable.Range(0, random.Next(1, 300)).Select(_ => (float)random.Next(-20, 20)).ToArray();
            var k = random.Next(1, values.Length + 1);
            var expected = values.OrderByDescending(v => v).ElementAt(k - 1);
            Assert.Equal(expected, Selection.KthLargest(values.ToArray(), k));
        }
    }

    /// <summary>Encodes <paramref name="gradient"/> with <paramref name="encoder"/> and decodes the message: what the parameter server receives.</summary>
    internal static float[] Decode(GradientEncoder encoder, float[] gradient)
    {
        var message = new byte[encoder.MessageBytes];
        encoder.Encode(gradient, message);
        var decoded = new float[gradient.Length];
        GradientDecoder.Decode(message, decoded);
        return decoded;
    }

    private static float[] RandomGradient(int length, int seed, float scale)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, length).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
    }
}
