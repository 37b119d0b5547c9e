using DistTrain.Cluster.Protocol;

namespace DistTrain.Tests;

/// <summary>
/// <see cref="WeightsInProgress"/>: a reader on another thread copies a broadcast while the server writes it, and takes
/// exactly the finished array, or nothing when the write is abandoned or begun again under it.
/// </summary>
public class WeightsInProgressTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20); // a hang guard, not a speed limit

    /// <summary>The writer fills the array block by block with pauses, advancing after each block, then writes a tail past
    /// the last advance (as merged running statistics are) and finishes. Every float starts as NaN, so a reader that copied
    /// a float before it was announced would end up with a NaN.</summary>
    [Fact]
    public async Task A_reader_copying_during_the_write_gets_exactly_the_finished_array_tail_included()
    {
        var weights = new float[10_000];
        weights.AsSpan().Fill(float.NaN);
        var progress = new WeightsInProgress();
        progress.Begin(weights, version: 7);
        var target = new float[10_000];
        var reader = Task.Run(() => (progress.CopyTo(target, out var copiedFrom, out var version), copiedFrom, version));
        for (var start = 0; start < 9_000; start += 1_000)
        {
            for (var i = start; i < start + 1_000; i++) weights[i] = i * 0.5f;
            progress.Advance(start + 1_000);
            Thread.Sleep(2);
        }
        for (var i = 9_000; i < 10_000; i++) weights[i] = -i; // written after the optimizer's blocks
        progress.Finish();
        var (copied, from, copiedVersion) = await reader.WaitAsync(Wait);
        Assert.True(copied);
        Assert.Same(weights, from);
        Assert.Equal(7, copiedVersion);
        Assert.Equal(weights, target);
    }

    /// <summary>A reader that is copying when the server begins the notice again (the same ring array, rewritten for a later
    /// broadcast) gives up, so it never takes a mix of two broadcasts; one that starts only after the reuse copies the later
    /// broadcast whole and says which version it is, so its caller does not take it for the earlier one.</summary>
    [Fact]
    public async Task A_write_begun_again_under_a_reader_gives_no_copy_and_a_late_reader_names_the_later_version()
    {
        var ring = new float[100];
        var progress = new WeightsInProgress();
        progress.Begin(ring, version: 1);
        ring.AsSpan(0, 40).Fill(1f);
        progress.Advance(40);
        var target = new float[100];
        target.AsSpan().Fill(float.NaN);
        var reader = Task.Run(() => progress.CopyTo(target, out _, out _));
        var deadline = DateTime.UtcNow + Wait;
        while (target[39] != 1f && DateTime.UtcNow < deadline) await Task.Delay(1); // the reader has copied the first 40
        Assert.Equal(1f, target[39]);
        progress.Begin(ring, version: 4); // the server reused the notice: this reader fell behind
        ring.AsSpan().Fill(4f);
        progress.Advance(100);
        progress.Finish();
        Assert.False(await reader.WaitAsync(Wait));

        Assert.True(progress.CopyTo(target, out var late, out var version)); // started after the reuse
        Assert.Same(ring, late);
        Assert.Equal(4, version);
        Assert.All(target, value => Assert.Equal(4f, value));
    }

    [Fact]
    public async Task An_abandoned_write_gives_no_copy_and_a_short_target_is_refused()
    {
        var progress = new WeightsInProgress();
        Assert.False(progress.CopyTo(new float[1], out _, out _)); // never begun: nothing to copy
        progress.Begin(new float[100], version: 3);
        var reader = Task.Run(() => progress.CopyTo(new float[100], out _, out _));
        progress.Advance(50);
        progress.Abandon(); // the step was not finite
        Assert.False(await reader.WaitAsync(Wait));
        Assert.Throws<ArgumentException>(() => progress.CopyTo(new float[99], out _, out _));
    }
}
