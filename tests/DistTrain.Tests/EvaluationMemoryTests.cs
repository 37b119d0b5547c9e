using Akka.Actor;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Configuration;
using DistTrain.Core.Models;

namespace DistTrain.Tests;

/// <summary>Evaluation passes are cut to a memory budget from the model's buffer bytes per sample.</summary>
public sealed class EvaluationMemoryTests() : TestKit(AkkaSettings.Serialization())
{
    private static ModelOptions RepositoryModel(string config) =>
        TrainingOptionsLoader.Load(Path.Combine(AppContext.BaseDirectory, "configs", config),
            new Dictionary<string, string?> { ["Data:Directory"] = TestData.SubsetDirectory }, environment: new Dictionary<string, string?>()).Model;

    [Fact]
    public void Buffer_bytes_per_sample_of_the_repository_models_add_up_layer_by_layer()
    {
        // MLP 784-256-128-10: the three Dense outputs (ReLUs rectify in place): (256 + 128 + 10) x 4 bytes.
        Assert.Equal(1_576, ModelFactory.Build(RepositoryModel("fashion-mnist-mlp.json")).ForwardBytesPerSample);
        // CNN, in floats: conv1 2·25088 + 784, BatchNorm 2·25088, max pool 2·6272 (output and winners), conv2 2·12544 + 6272,
        // BatchNorm 2·12544, max pool 2·3136, Dense 256, Dropout 256, Dense 10; times 4 bytes. The process's peak RSS grew
        // by 704,600 bytes per sample of EvaluationBatchSize between 1,000 and 2,000.
        Assert.Equal(4L * (50_960 + 50_176 + 12_544 + 31_360 + 25_088 + 6_272 + 256 + 256 + 10),
            ModelFactory.Build(RepositoryModel("fashion-mnist-cnn.json")).ForwardBytesPerSample);
    }

    [Theory]
    [InlineData(10_000, 707_688, 379)]  // the CNN: 10,000 samples would hold 7.1 GB; 379 fit in 256 MiB
    [InlineData(250, 707_688, 250)]     // the CNN config's 250 fit
    [InlineData(1_000, 1_576, 1_000)]   // the MLP: Training:EvaluationBatchSize as given
    [InlineData(100, 1L << 40, 1)]      // a model larger than the budget still evaluates, one sample at a time
    public void An_evaluation_pass_takes_the_configured_samples_or_as_many_as_fit_in_256_MiB(int configured, long bytesPerSample, int expected)
    {
        Assert.Equal(expected, Worker.EvaluationPassSize(configured, bytesPerSample));
    }

    [Fact]
    public void Scoring_in_short_passes_gives_the_same_result_as_one_pass()
    {
        var data = TestData.Normalized();
        var model = TestData.Mlp(16, 10);
        var weights = ModelFactory.InitialWeights(ModelFactory.Build(model), model.Initializer, seed: 3).Values;
        EvaluationResult Score(int passSize)
        {
            var worker = Sys.ActorOf(Worker.Props(0, model, data.Train, data.Test, passSize));
            worker.Tell(new AssignShard(1, [0], 1));
            worker.Tell(new WeightsUpdated(1, 0, 0, weights));
            ExpectMsg<GradientComputed>();
            worker.Tell(new Evaluate(0, 3, 247));
            return ExpectMsg<EvaluationResult>();
        }
        var whole = Score(250);
        var passes = Score(17); // 247 samples in 15 balanced passes of 16 or 17
        Assert.Equal((whole.Start, whole.SampleCount, whole.Correct), (passes.Start, passes.SampleCount, passes.Correct));
        Assert.Equal(247, passes.SampleCount);
        Assert.True(Math.Abs(whole.LossSum - passes.LossSum) <= 1e-6 * Math.Abs(whole.LossSum), $"{whole.LossSum:R} vs {passes.LossSum:R}"); // float32 means per pass
    }
}
