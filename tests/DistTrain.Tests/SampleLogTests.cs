using DistTrain.Cluster.Hosting;

namespace DistTrain.Tests;

public sealed class SampleLogTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-samples-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task The_sample_log_shows_every_sample_trained_once_per_epoch_and_each_step_matches_the_reported_samples()
    {
        // 3 workers of batch 7 over 1,000 samples: uneven shards, short last minibatches.
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 3, batch: 7, epochs: 2);
        var path = Path.Combine(_directory, "samples.jsonl");
        var observer = new RecordingObserver();
        using (var log = SampleLog.Open(path))
            await SingleNodeTrainer.RunAsync(options, data.Train, data.Test, observer, sampleLog: log).WithTestTimeout();

        // In single-node mode one file holds the workers' computed lines and the parameter server's applied lines.
        var trained = SampleAudit.TrainedSamplesByEpoch(path, [path]);
        SampleAudit.AssertEverySampleOncePerEpoch(trained, sampleCount: 1000, firstEpoch: 1, lastEpoch: 2);
        Assert.Equal([1, 2], trained.Keys);
        // One applied line per step the coordinator reported.
        Assert.Equal(observer.StepLosses.Count, SampleAudit.AppliedTimes(path).Count);
    }

    [Fact]
    public void An_unwritable_sample_log_names_the_key_and_the_fix()
    {
        var error = Assert.Throws<IOException>(() => SampleLog.Open(Path.Combine(_directory, "no-such-folder", "samples.jsonl")));
        Assert.Contains("Output:SampleLogFile = ", error.Message);
        Assert.Contains("Set a writable file, or leave the key empty.", error.Message);
        Assert.Null(SampleLog.Open(""));
    }
}
