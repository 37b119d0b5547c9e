using DistTrain.Cluster.Training;

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
    /// a float before it was announced would end up with a NaN or an old value.</summary>
    [Fact]
    public async Task A_reader_copying_during_the_write_gets_exactly_the_finished_array_tail_included()
    {
        var weights = new float[10_000];
        weights.AsSpan().Fill(float.NaN);
        var progress = new WeightsInProgress();
        progress.Begin(weights);
        var target = new float[10_000];
        var reader = Task.Run(() => (progress.CopyTo(target, out var copiedFrom), copiedFrom));
        for (var start = 0; start < 9_000; start += 1_000)
        {
            for (var i = start; i < start + 1_000; i++) weights[i] = i * 0.5f;
            progress.Advance(start + 1_000);
            Thread.Sleep(2);
        }
        for (var i = 9_000; i < 10_000; i++) weights[i] = -i; // written after the optimizer's blocks
        progress.Finish();
        var (copied, from) = await reader.WaitAsync(Wait);
        Assert.True(copied);
        Assert.Same(weights, from);
        Assert.Equal(weights, target);
    }

    [Fact]
    public async Task An_abandoned_write_or_one_begun_again_under_the_reader_gives_no_copy()
    {
        var progress = new WeightsInProgress();
        progress.Begin(new float[100]);
        var reader = Task.Run(() => progress.CopyTo(new float[100], out _));
        progress.Advance(50);
        progress.Abandon();
        Assert.False(await reader.WaitAsync(Wait));

        progress.Begin(new float[100]);
        progress.Advance(40);
        var second = Task.Run(() => progress.CopyTo(new float[100], out _));
        await Task.Delay(50);
        progress.Begin(new float[100]); // the server reused the notice: this reader fell behind
        progress.Finish();
        Assert.False(await second.WaitAsync(Wait));

        Assert.Throws<ArgumentException>(() => progress.CopyTo(new float[99], out _));
        Assert.False(new WeightsInProgress().CopyTo(new float[1], out _)); // never begun: nothing to copy
    }
}
