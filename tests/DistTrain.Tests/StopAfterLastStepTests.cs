using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Configuration;

namespace DistTrain.Tests;

/// <summary>
/// A stop (the cancellation token, as Ctrl-C or SIGTERM cancels it) after the last epoch's last training step used to cut
/// off that epoch's evaluation and report a finished training as cancelled ("stopped at epoch 1, step 157 of 157", a
/// model without its test accuracy). The coordinator now lets the evaluation finish and the run completes; a stop while
/// anything is left to train still cancels. The stops come from the observer, at a chosen step, not from a timer.
/// </summary>
public class StopAfterLastStepTests
{
    /// <summary>2 workers x batch 50 over 1,000 samples, 2 epochs: 10 steps per epoch.</summary>
    private static TrainingOptions Options() => TestData.Options(TestData.Mlp(32, 10), workers: 2, batch: 50, epochs: 2);

    /// <summary>Cancels its source when step <paramref name="step"/> (0-based) of <paramref name="epoch"/> has been applied.</summary>
    private sealed class CancelAtStep(int epoch, int step, CancellationTokenSource source) : ITrainingObserver
    {
        public List<EpochSummary> Epochs { get; } = [];
        public void EpochStarted(int epoch, int steps, int samples) { }
        public void StepApplied(int e, int s, long version, int samples, double meanLoss, double learningRate, RoundTiming timing)
        {
            if (e == epoch && s == step) source.Cancel();
        }
        public void EpochCompleted(EpochSummary summary) => Epochs.Add(summary);
    }

    [Fact]
    public async Task A_stop_after_the_last_training_step_lets_the_final_evaluation_finish_and_the_run_completes()
    {
        var data = TestData.Normalized();
        var uninterrupted = await SingleNodeTrainer.RunAsync(Options(), data.Train, data.Test).WithTestTimeout();

        using var stop = new CancellationTokenSource();
        var observer = new CancelAtStep(epoch: 2, step: 9, stop);
        var result = await SingleNodeTrainer.RunAsync(Options(), data.Train, data.Test, observer, cancellationToken: stop.Token).WithTestTimeout();

        Assert.True(stop.IsCancellationRequested);
        Assert.Equal(20, result.Version);
        Assert.Equal([1, 2], result.Epochs.Select(e => e.Epoch));
        Assert.Equal(250, result.FinalEpoch.TestSamples);
        Assert.Equal(uninterrupted.FinalEpoch.TestAccuracy, result.FinalEpoch.TestAccuracy);
        Assert.Equal(uninterrupted.FinalEpoch.TestLoss, result.FinalEpoch.TestLoss);
        Compare.Identical(uninterrupted.FinalWeights.Values, result.FinalWeights.Values, "weights of the run stopped after its last step");
        Assert.Equal(2, observer.Epochs.Count);
    }

    [Fact]
    public async Task A_stop_after_the_last_step_of_an_epoch_that_is_not_the_last_still_cancels_with_that_epochs_weights()
    {
        var data = TestData.Normalized();
        using var stop = new CancellationTokenSource();
        var observer = new CancelAtStep(epoch: 1, step: 9, stop);
        var cancelled = await Assert.ThrowsAsync<TrainingCancelledException>(() =>
            SingleNodeTrainer.RunAsync(Options(), data.Train, data.Test, observer, cancellationToken: stop.Token).WithTestTimeout());

        // The coordinator asked for the weights before it could start epoch 2: they are epoch 1's last.
        Assert.Equal(stop.Token, cancelled.CancellationToken);
        Assert.NotNull(cancelled.Weights);
        Assert.Equal(10, cancelled.Weights.Version);
        // The epoch those weights end was scored before the run stopped: before, a stop that landed between its last step
        // and its evaluation left epoch 1's test accuracy out of every record, and a resume started at epoch 2.
        Assert.Equal([1], observer.Epochs.Select(e => e.Epoch));
        Assert.Equal(250, observer.Epochs[0].TestSamples);
    }

    /// <summary>
    /// The parameter server used to go on stepping between the stop's snapshot and its own stop, and to write checkpoints
    /// past the weights the run kept (a Ctrl-C kept version 5162 while the newest checkpoint was 5250). With a checkpoint
    /// after every step, the newest checkpoint must now be the stop's weights exactly, with one shard and with two. Three
    /// stops per case: the extra step came in about two runs of three before.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task A_stop_mid_epoch_writes_no_checkpoint_past_the_weights_it_keeps(int shards)
    {
        var data = TestData.Normalized();
        foreach (var step in new[] { 2, 5, 7 })
        {
            var directory = Directory.CreateTempSubdirectory("disttrain-stop-").FullName;
            try
            {
                var options = Options();
                options.Cluster.ParameterServerShards = shards;
                options.Checkpoint = new CheckpointOptions { Directory = directory, EverySteps = 1, Keep = 100 };
                using var stop = new CancellationTokenSource();
                var observer = new CancelAtStep(epoch: 1, step: step, stop);
                var cancelled = await Assert.ThrowsAsync<TrainingCancelledException>(() =>
                    SingleNodeTrainer.RunAsync(options, data.Train, data.Test, observer, cancellationToken: stop.Token).WithTestTimeout());

                Assert.NotNull(cancelled.Weights);
                var stoppedAt = cancelled.Weights.Version;
                Assert.InRange(stoppedAt, step + 1, 19); // the step the stop came at or a later one, before the run's end
                var layout = Core.Models.ModelFactory.Build(options.Model).Layout;
                var checkpoints = new Core.Checkpoints.CheckpointStore(directory, 100).List()
                    .Select(path => Core.Checkpoints.TrainingCheckpoint.Read(path, layout)).OrderBy(c => c.Version).ToList();
                Assert.Equal(Enumerable.Range(1, (int)stoppedAt).Select(v => (long)v), checkpoints.Select(c => c.Version));
                Compare.Identical(cancelled.Weights.Weights, checkpoints[^1].Weights.Values, $"the newest checkpoint against the weights of the stop at step {step}");
            }
            finally
            {
                Directory.Delete(directory, recursive: true);
            }
        }
    }
}
