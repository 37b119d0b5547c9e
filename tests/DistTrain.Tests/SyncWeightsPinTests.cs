using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using DistTrain.Cluster.Hosting;
using DistTrain.Core.Configuration;
using DistTrain.Core.LinearAlgebra;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;

namespace DistTrain.Tests;

/// <summary>
/// Synchronous training pinned bit for bit: the SHA-256 of short runs' final weights against the values the code gave
/// before the parameter server's and coordinator's decisions moved into Training/. A change that alters synchronous
/// results in the last bit (summation order, a fused step, the running-statistics merge, the schedule's position, the
/// weighting of a short last minibatch) fails here.
/// </summary>
/// <remarks>
/// The bytes depend on the OpenBLAS kernel, its threads per product and the SIMD width TensorPrimitives uses, so the
/// hash is recorded per such environment; on another one the test is skipped and names the hash to record.
/// </remarks>
public partial class SyncWeightsPinTests
{
    /// <summary>SHA-256 of the final weights' little-endian float bytes, by environment (see <see cref="Environment"/>).</summary>
    private static readonly Dictionary<string, string> Pinned = new()
    {
        ["SkylakeX/1/Vector512"] = "3a049a8973720e22a2d8006b4c3a8c83fecd3b3beaccb9727b4c745dfea283bc",
        // OPENBLAS_CORETYPE=Haswell on the same AVX-512 machine; recorded from a commit that still gave the SkylakeX hash above.
        ["Haswell/1/Vector512"] = "e5e70bd70ca99cc17e67a65b260b57f5f2c56ff8581898082f41d803e7856efd",
        // An AVX2 machine (AMD EPYC without AVX-512), recorded from 979c8e0: the same bytes as with 512-bit vectors here.
        ["Haswell/1/Vector256"] = "e5e70bd70ca99cc17e67a65b260b57f5f2c56ff8581898082f41d803e7856efd",
    };

    /// <summary>As <see cref="Pinned"/>, for the run with uneven shards, a short last minibatch, Adam and a schedule.</summary>
    private static readonly Dictionary<string, string> PinnedUneven = new()
    {
        ["SkylakeX/1/Vector512"] = "a59efff899010d527d7d521340e8c30bd8acd1e83f4e1d78499d30a2dd1ef81b",
        ["Haswell/1/Vector512"] = "2f9941191e59a09ef9c22ebd6d8a9ff08c3800ba999f853bf4a3471a3d978935",
        ["Haswell/1/Vector256"] = "5d39072d0c96dae796ae1f01d3e91956b8207676653ece01e4d625b8743e0708", // from 979c8e0, as above
    };

    /// <summary>The OpenBLAS kernel (or Managed), the threads per product, and the widest accelerated vector.</summary>
    private static string Environment()
    {
        var match = KernelPattern().Match(Blas.Description);
        var blas = match.Success ? $"{match.Groups[1].Value}/{match.Groups[2].Value}" : $"Managed/{Blas.ThreadsPerCall}";
        var vector = Vector512.IsHardwareAccelerated ? "Vector512" : Vector256.IsHardwareAccelerated ? "Vector256" : "Vector128";
        return $"{blas}/{vector}";
    }

    [GeneratedRegex(@"kernel (\S+), (\d+) thread")]
    private static partial Regex KernelPattern();

    [SkippableFact]
    public async Task A_synchronous_run_ends_on_the_weights_the_code_gave_before_the_update_policies_were_factored_out()
    {
        // MLP with BatchNorm (its running statistics are merged by sample count), SGD with momentum and L2, 2 workers of
        // 50 samples, 2 epochs over the 1,000-sample subset: 20 synchronous steps.
        var model = new ModelOptions
        {
            InputSize = 784,
            Layers =
            [
                new() { Type = LayerTypes.Dense, Units = 32 }, new() { Type = LayerTypes.BatchNorm }, new() { Type = LayerTypes.ReLU },
                new() { Type = LayerTypes.Dense, Units = 10 },
            ],
        };
        var options = TestData.Options(model, workers: 2, batch: 50, epochs: 2);
        await AssertPinnedAsync(options, Pinned, expectedVersion: 20);
    }

    [SkippableFact]
    public async Task A_synchronous_run_with_uneven_shards_a_short_last_minibatch_Adam_and_a_schedule_ends_on_the_pinned_weights()
    {
        // 3 workers over 1,000 samples (shards of 333, 333 and 334), 40 samples each: 9 steps an epoch, the last one on
        // 13 or 14 samples per worker, so the average is weighted by sample count. Adam with L2, clipping, a warmup of 5
        // steps into a cosine schedule over 2 epochs: 18 synchronous steps.
        var model = new ModelOptions
        {
            InputSize = 784,
            Layers = [new() { Type = LayerTypes.Dense, Units = 24 }, new() { Type = LayerTypes.ReLU }, new() { Type = LayerTypes.Dense, Units = 10 }],
        };
        var options = TestData.Options(model, workers: 3, batch: 40, epochs: 2, learningRate: 0.01, momentum: 0);
        options.Optimizer.Kind = OptimizerKind.Adam;
        options.Optimizer.GradientClipNorm = 1;
        options.Optimizer.Schedule = new() { Kind = LearningRateScheduleKind.Cosine, WarmupSteps = 5 };
        await AssertPinnedAsync(options, PinnedUneven, expectedVersion: 18);
    }

    /// <summary>Trains <paramref name="options"/> in one process on 1 BLAS thread and compares its weights' hash.</summary>
    private static async Task AssertPinnedAsync(TrainingOptions options, Dictionary<string, string> pinned, long expectedVersion)
    {
        options.Compute.BlasThreads = 1;
        var data = TestData.Normalized();
        var result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout();
        var hash = Convert.ToHexStringLower(SHA256.HashData(MemoryMarshal.AsBytes(result.FinalWeights.Values.AsSpan())));
        var environment = Environment();
        Skip.IfNot(pinned.TryGetValue(environment, out var expected),
            $"No pinned hash for {environment}; this run gave {hash}. Record it from a commit whose synchronous results are trusted.");
        Assert.Equal(expectedVersion, result.Version);
        Assert.True(hash == expected, $"The final weights hash {hash}; pinned for {environment}: {expected}.");
    }
}
