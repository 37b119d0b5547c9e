using System.Diagnostics;
using CsCheck;

namespace DistTrain.Fuzz;

/// <summary>What one fuzzing run measured.</summary>
/// <param name="Target">The reader's name.</param>
/// <param name="Inputs">Inputs run.</param>
/// <param name="Accepted">Inputs the reader accepted.</param>
/// <param name="Refused">Inputs refused with the documented exception.</param>
/// <param name="Elapsed">Wall time of the whole run.</param>
/// <param name="LargestAllocation">Most bytes allocated while reading one input (this thread's managed allocations).</param>
/// <param name="LargestAllocationInputLength">Size of that input, bytes.</param>
/// <param name="SlowestInput">Longest time one input took.</param>
public sealed record FuzzReport(string Target, long Inputs, long Accepted, long Refused, TimeSpan Elapsed, long LargestAllocation,
    int LargestAllocationInputLength, TimeSpan SlowestInput)
{
    /// <inheritdoc />
    public override string ToString() =>
        $"{Target}: {Inputs:N0} inputs ({Accepted:N0} accepted, {Refused:N0} refused) in {Elapsed.TotalSeconds:F1} s; " +
        $"largest allocation {LargestAllocation:N0} bytes (for a {LargestAllocationInputLength:N0}-byte input); slowest input {SlowestInput.TotalMilliseconds:F1} ms; no findings";
}

/// <summary>Runs a <see cref="FuzzTarget"/> through CsCheck and minimizes any finding to its smallest input.</summary>
public static class FuzzRunner
{
    /// <summary>
    /// Feeds <paramref name="inputs"/> generated inputs to the reader on one thread. Every input must be accepted or refused
    /// with the documented exception, allocate at most the target's limit, and take at most <paramref name="hangLimit"/>.
    /// </summary>
    /// <param name="target">The reader.</param>
    /// <param name="inputs">Inputs to run.</param>
    /// <param name="seed">CsCheck seed (as CsCheck prints it), to repeat a run; null for a random one.</param>
    /// <param name="hangLimit">Most processor time one input may take (processor time, not wall time, so a fuzzer starved by
    /// other work on a shared machine does not report hangs); null checks no time (the suite's smoke runs).</param>
    /// <param name="progress">Receives a line with the counts so far every 100,000 inputs; null for none.</param>
    /// <exception cref="FuzzFailure">A finding, with its smallest input and the seed that repeats the run.</exception>
    public static FuzzReport Run(FuzzTarget target, long inputs, string? seed, TimeSpan? hangLimit, Action<string>? progress = null)
    {
        long accepted = 0, refused = 0, largest = 0;
        var largestLength = 0;
        var slowest = TimeSpan.Zero;
        (byte[] Input, FuzzFinding Finding)? smallest = null;
        var clock = Stopwatch.StartNew();
        try
        {
            target.Inputs.Sample(input =>
            {
                var (outcome, allocated, elapsed) = Measure(target, input, hangLimit, out var finding);
                if (finding is not null)
                {
                    if (smallest is null || input.Length < smallest.Value.Input.Length) smallest = (input, finding);
                    throw finding;
                }
                if (outcome) accepted++; else refused++;
                if (allocated > largest) (largest, largestLength) = (allocated, input.Length);
                if (elapsed > slowest) slowest = elapsed;
                if (progress is not null && (accepted + refused) % 100_000 == 0)
                    progress(new FuzzReport(target.Name, accepted + refused, accepted, refused, clock.Elapsed, largest, largestLength, slowest).ToString().Replace("; no findings", "; so far"));
            }, seed: seed, iter: inputs, threads: 1, print: Convert.ToHexString);
        }
        catch (CsCheckException e) when (smallest is { } found)
        {
            var seedLine = e.Message.Split('\n')[0].Trim();
            var minimal = found.Finding.Kind == "hang" ? found.Input : Minimize(target, found.Input, found.Finding.Kind, hangLimit);
            Measure(target, minimal, hangLimit, out var finding);
            throw new FuzzFailure(target.Name, finding ?? found.Finding, minimal, seedLine);
        }
        return new FuzzReport(target.Name, accepted + refused, accepted, refused, clock.Elapsed, largest, largestLength, slowest);
    }

    /// <summary>Reads one input; returns whether it was accepted, the bytes allocated and the time, and any finding.</summary>
    private static (bool Accepted, long Allocated, TimeSpan Elapsed) Measure(FuzzTarget target, byte[] input, TimeSpan? hangLimit, out FuzzFinding? finding)
    {
        finding = null;
        var processor = Environment.CpuUsage.TotalTime;
        var started = Stopwatch.GetTimestamp();
        var before = GC.GetAllocatedBytesForCurrentThread();
        var accepted = true;
        try
        {
            target.Read(input);
        }
        catch (FuzzFinding f)
        {
            finding = f;
        }
        catch (Exception e) when (target.IsRefusal(e))
        {
            accepted = false;
            try
            {
                target.CheckRefusal?.Invoke(input, e);
            }
            catch (FuzzFinding f)
            {
                finding = f;
            }
        }
        catch (Exception e)
        {
            finding = new FuzzFinding($"crash: {e.GetType().FullName}", $"{e.Message}{Environment.NewLine}{e.StackTrace}", e);
        }
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        var elapsed = Stopwatch.GetElapsedTime(started);
        var busy = Environment.CpuUsage.TotalTime - processor;
        var limit = target.AllocationLimit(input);
        if (finding is null && allocated > limit)
            finding = new FuzzFinding("memory", $"{allocated:N0} bytes allocated for a {input.Length:N0}-byte input (limit {limit:N0}); {(accepted ? "accepted" : "refused")}");
        if (finding is null && hangLimit is { } most && busy > most)
            finding = new FuzzFinding("hang", $"{busy.TotalSeconds:F1} s of processor time ({elapsed.TotalSeconds:F1} s wall) for one {input.Length:N0}-byte input (limit {most.TotalSeconds} s)");
        return (accepted, allocated, elapsed);
    }

    /// <summary>Delta debugging over bytes: removes ever smaller ranges while the input still shows a finding of the same kind.</summary>
    private static byte[] Minimize(FuzzTarget target, byte[] input, string kind, TimeSpan? hangLimit)
    {
        var current = input;
        var budget = 20_000;
        for (var chunk = Math.Max(1, current.Length / 2); chunk >= 1 && budget > 0; chunk = chunk == 1 ? 0 : chunk / 2)
        {
            for (var start = 0; start < current.Length && budget-- > 0;)
            {
                var candidate = current[..start].Concat(current[Math.Min(current.Length, start + chunk)..]).ToArray();
                Measure(target, candidate, hangLimit, out var finding);
                if (finding?.Kind == kind) current = candidate;
                else start += chunk;
            }
        }
        return current;
    }
}
