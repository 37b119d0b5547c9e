using DistTrain.Cli;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Compression;
using DistTrain.Core.Configuration;
using DistTrain.Core.Optimization;

namespace DistTrain.Tests;

/// <summary>
/// What <c>disttrain bench</c> measures, fed known steps on a fake clock: every figure is over the measured steps, the epoch
/// ends among them are reported apart, and the warm-up runs past the first epoch's end when the measured steps would take it
/// in. On a small data set (sklearn digits: 4 steps per epoch) samples/s used to count the epoch ends' wall time while the step
/// time did not (229,072 samples/s against the ~469,600 its step time implied), and the first epoch's one-time allocations
/// and the parameter server's epoch-close bytes showed as allocations per step.
/// </summary>
public sealed class BenchObserverTests
{
    [Theory]
    [InlineData(2, 200, 4, 5)]       // digits with --warmup 2: the first epoch's end (after step 4) is passed before measuring
    [InlineData(4, 1, 4, 5)]         // warm-up ending on the epoch's last step: its end would be measured
    [InlineData(2, 2, 4, 5)]         // the measured steps reach the epoch's short last step
    [InlineData(1, 1, 1, 2)]         // one step per epoch
    [InlineData(50, 400, 469, 50)]   // the default MLP: the measured steps end before the first epoch does
    [InlineData(50, 1500, 469, 470)] // ... unless there are more of them
    [InlineData(5, 100, 4, 5)]       // a warm-up past the first epoch's end already
    [InlineData(1, 2, 4, 1)]
    public void The_warm_up_runs_past_the_first_epochs_end_when_the_measured_steps_would_take_it_in(int warmup, int steps, int stepsPerEpoch, int expected) =>
        Assert.Equal(expected, BenchCommand.WarmupSteps(warmup, steps, stepsPerEpoch));

    [Theory]
    [InlineData(5, 40, 469, 10, 10)] // the default MLP with --warmup 5: the measurement at step 10 ran cold among the measured steps
    [InlineData(5, 40, 5, 10, 10)]   // past the first epoch's end (step 6), then past the measurement too
    [InlineData(5, 4, 12, 9, 13)]    // passing the measurement (step 9) brings the epoch's end (after step 12) among them: past it too
    [InlineData(5, 3, 469, 10, 5)]   // the measured steps (6 to 8) end before the measurement
    [InlineData(10, 40, 469, 10, 10)] // the measurement is the warm-up's last step already
    [InlineData(5, 40, 469, 0, 5)]   // no measurements (Monitoring:GradientNormEverySteps 0)
    public void The_warm_up_runs_past_the_first_gradient_norm_measurement_when_the_measured_steps_would_take_it_in(
        int warmup, int steps, int stepsPerEpoch, int gradientNormEverySteps, int expected) =>
        Assert.Equal(expected, BenchCommand.WarmupSteps(warmup, steps, stepsPerEpoch, gradientNormEverySteps));

    [Fact]
    public void The_warm_up_note_names_what_the_warm_up_ran_on_past()
    {
        // bench --steps 40 --warmup 5 on the default MLP: averaging + update measured 0.9-2.6 ms, against 0.4-0.5 ms without
        // gradient-norm measurements, because the first one ran cold among the measured steps.
        Assert.Equal("Warm-up: 10 steps, not 5: it runs on past the first gradient-norm measurement (step 10, Monitoring:GradientNormEverySteps), " +
            "which runs code and fills buffers for the first time and is not steady state.", BenchCommand.WarmupNote(5, 10, 469, 10, shortLastStep: true));
        Assert.Equal("Warm-up: 13 steps, not 5: it runs on past the first epoch's end (its short last step, the first evaluation, the next epoch's planning) and the first " +
            "gradient-norm measurement (step 9, Monitoring:GradientNormEverySteps), which run code and fill buffers for the first time and are not steady state.",
            BenchCommand.WarmupNote(5, 13, 12, 9, shortLastStep: true));
        Assert.Equal("Warm-up: 5 steps, not 2: it runs on past the first epoch's end (its short last step, the first evaluation, the next epoch's planning), " +
            "which runs code and fills buffers for the first time and is not steady state.", BenchCommand.WarmupNote(2, 5, 4, 0, shortLastStep: true));
        Assert.Null(BenchCommand.WarmupNote(5, 5, 469, 10, shortLastStep: true));
        // 2,000 samples, 2 workers of 200: 5 steps of 400, none short. The line said "its short last step" all the same.
        Assert.Equal("Warm-up: 6 steps, not 5: it runs on past the first epoch's end (the first evaluation, the next epoch's planning), " +
            "which runs code and fills buffers for the first time and is not steady state.", BenchCommand.WarmupNote(5, 6, 5, 0, shortLastStep: false));
    }

    /// <summary>
    /// bench on a small data set (iris with 4 workers: 1 step per epoch) printed 1.7 million samples/s with 20 epoch ends among
    /// the 20 measured steps, each 5 times a step's time, and no word that the figure leaves out most of the job's time. The
    /// note comes when the epoch ends took longer than the steps, and not otherwise.
    /// </summary>
    [Fact]
    public void A_note_says_when_the_epoch_ends_among_the_measured_steps_took_longer_than_the_steps()
    {
        Assert.Equal("Note: the 20 epoch ends among the measured steps took 7.0 ms (evaluation included), more than the 20 steps themselves (1.3 ms): " +
            "with 1 step per epoch, this job's time is mostly its epoch ends, which samples/s above leaves out. train's epoch lines give the samples/s of " +
            "whole epochs; for the speed of the steps of a larger job, bench one with more training data (or fewer workers, or a smaller " +
            "Training:BatchSizePerWorker).", BenchCommand.EpochEndNote(20, 0.064, 20, 0.348, 1));
        Assert.Null(BenchCommand.EpochEndNote(40, 1.2, 0, 0, 469));   // the main job: no epoch end among the steps
        Assert.Null(BenchCommand.EpochEndNote(6, 1.2, 2, 3.0, 3));    // epoch ends of 6 ms against 7.2 ms of steps
    }

    [Fact]
    public void The_compression_cell_keeps_the_table_narrow_and_leaves_the_details_to_a_line_under_it()
    {
        // Cluster:Compression TopK with SGD momentum and clipping: the whole description made the table about 240 columns wide.
        var options = new TrainingOptions
        {
            Cluster = { Compression = GradientCompression.TopK },
            Optimizer = { Kind = OptimizerKind.Sgd, Momentum = 0.9, GradientClipNorm = 5 },
        };
        var described = BenchCommand.CompressionOf(options);
        Assert.StartsWith("TopK 1% with error feedback and momentum correction (momentum 0.9", described);
        Assert.Contains("; each worker clips its gradient to Optimizer:GradientClipNorm 5", described);
        var (cell, detailsLeftOut) = BenchCommand.CompressionCell(described);
        Assert.Equal(("TopK 1%\nwith error feedback\nand momentum correction", true), (cell, detailsLeftOut));
        Assert.All(cell.Split('\n'), line => Assert.True(line.Length <= 28, line));

        Assert.Equal(("BFloat16 with error feedback", false), BenchCommand.CompressionCell("BFloat16 with error feedback"));
        Assert.Equal(("None", false), BenchCommand.CompressionCell("None"));
    }

    [Fact]
    public void Samples_per_second_and_the_allocations_per_step_are_over_the_measured_steps_with_the_epoch_ends_apart()
    {
        // 3 steps per epoch of 100, 100 and 50 samples; --warmup 2 --steps 5 measures from epoch 2's first step, with one epoch
        // end (2 to 3) among the measured steps, which takes 0.5 s on the clock and 1 MB of the process's allocations.
        const int stepsPerEpoch = 3;
        var warmup = BenchCommand.WarmupSteps(2, 5, stepsPerEpoch);
        Assert.Equal(4, warmup);
        var now = 0.0;
        using var stop = new CancellationTokenSource();
        var observer = new BenchCommand.BenchObserver(warmup, 5, stop, () => now);
        var epochEndBytes = 0;
        for (var epoch = 1; epoch <= 3 && !observer.Done; epoch++)
        {
            if (epoch > 1)
            {
                now += 0.5; // the epoch's close, its evaluation, the next one's planning
                var garbage = new byte[1_000_000];
                epochEndBytes = garbage.Length; // the last one is the measured one
                GC.KeepAlive(garbage);
            }
            observer.EpochStarted(epoch, stepsPerEpoch, 250);
            for (var step = 0; step < stepsPerEpoch && !observer.Done; step++)
            {
                now += 0.002; // each round 2 ms; the parameter server reports its epoch-close bytes with the next epoch's first step
                observer.StepApplied(epoch, step, 0, step == 2 ? 50 : 100, 0.5, 0.1,
                    new RoundTiming(0.002, 0.001, 0.001, 0.0005, WorkerAllocatedBytes: 0, ServerAllocatedBytes: step == 0 && epoch > 1 ? 104 : 0));
            }
        }
        Assert.True(observer.Done);
        Assert.True(stop.IsCancellationRequested);

        var report = observer.Report(new TrainingOptions { Training = { Workers = 2, BatchSizePerWorker = 50 } }, requestedWarmup: 2);
        // Measured: epoch 2's steps 1 and 2, epoch 3's steps 0 to 2: 100 + 50 + 100 + 100 + 50 samples in 5 rounds of 2 ms.
        Assert.Equal((5, 4, 2, 1), (report.Steps, report.WarmupSteps, report.RequestedWarmupSteps, report.EpochEnds));
        Assert.Equal(80, report.MeanSamplesPerStep, 9);
        Assert.Equal(2.0, report.StepMilliseconds, 9);
        Assert.Equal(100, report.SamplesPerStep);
        // Samples/s is the mean samples per step over the mean step time (the epoch end's 0.5 s made it 400 / 0.51 s = 784 before).
        Assert.Equal(40_000, report.SamplesPerSecond, 6);
        Assert.Equal(1000 * report.MeanSamplesPerStep / report.StepMilliseconds, report.SamplesPerSecond, 6);
        Assert.Equal(500, report.EpochEndMilliseconds, 6);
        // The parameter server's epoch-close bytes belong to the epoch end, not to a step (104 / 5 = 20.8 B per step before).
        Assert.Equal((0.0, 104.0), (report.ServerAllocatedBytesPerStep, report.EpochEndServerAllocatedBytes));
        Assert.True(report.EpochEndAllocatedBytes >= epochEndBytes, $"epoch end allocated {report.EpochEndAllocatedBytes} B, less than the {epochEndBytes} B allocated in it");
    }
}
