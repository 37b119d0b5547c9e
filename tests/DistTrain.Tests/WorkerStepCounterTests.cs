using DistTrain.Cluster.Hosting;

namespace DistTrain.Tests;

/// <summary>The data plane's least traffic per step, from the workers that computed each step.</summary>
public class WorkerStepCounterTests
{
    [Fact]
    public void The_minimum_bytes_per_step_follow_the_workers_of_each_step_and_every_report_is_passed_on()
    {
        var recorder = new RecordingObserver();
        var counter = new WorkerStepCounter(recorder);
        var noMinibatch = double.NaN;
        double[] times = [0.01, 0.01, 0.01];
        counter.WorkersReported([0.5, 0.6, 0.7], times, times);              // 3 workers
        counter.WorkersReported([0.5, 0.6, 0.7], times, times);              // 3
        counter.WorkersReported([0.5, noMinibatch, 0.7], times, times);      // 2: one was lost or had no minibatch
        counter.WorkersReported([noMinibatch, noMinibatch, 0.7], times, times); // 1
        counter.StepApplied(1, 0, 1, 64, 0.5, 0.1, default);

        Assert.Equal(4, counter.Steps);
        Assert.Equal(9, counter.WorkerSteps);
        // 2 directions x 4 bytes x 1,000 parameters x 9 worker-steps / 4 steps
        Assert.Equal(2L * 4 * 1000 * 9 / 4, counter.MinimumBytesPerStep(1000));
        Assert.Single(recorder.StepLosses);
        Assert.Equal(0, new WorkerStepCounter(recorder).MinimumBytesPerStep(1000));
    }
}
