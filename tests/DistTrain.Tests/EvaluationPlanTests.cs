using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;

namespace DistTrain.Tests;

/// <summary>
/// The evaluation plan with splits of fewer samples than workers: only non-empty ranges go out, so results are matched
/// to their ranges whatever order they arrive in.
/// </summary>
public class EvaluationPlanTests
{
    private static EvaluationResult Scored(Evaluate request, int worker) =>
        new(request.Version, worker, request.Start, request.Count, Correct: request.Count, LossSum: 0.5 * request.Count, request.Split);

    [Theory]
    [InlineData(1, 2, false)]
    [InlineData(1, 4, true)]
    [InlineData(3, 5, false)]
    [InlineData(3, 5, true)]
    [InlineData(7, 3, true)]
    public void Splits_of_fewer_samples_than_workers_send_only_non_empty_ranges_that_tile_the_split_in_any_arrival_order(int testCount, int workers,
        bool reversed)
    {
        var plan = new EvaluationPlan();
        var sends = plan.Begin(version: 9, testCount, validationCount: testCount, Enumerable.Range(0, workers).ToArray());

        var expectedRanges = Math.Min(testCount, workers);
        Assert.Equal(2 * expectedRanges, sends.Count);
        Assert.All(sends, s => Assert.True(s.Request.Count > 0, $"an empty range [{s.Request.Start}, {s.Request.Start}) was sent to worker {s.Worker}"));
        Assert.Equal(2 * expectedRanges, plan.Pending);
        var order = reversed ? sends.Reverse().ToList() : sends.ToList();
        for (var k = 0; k < order.Count; k++)
            Assert.Equal(k == order.Count - 1 ? EvaluationOutcome.Complete : EvaluationOutcome.Pending, plan.Record(Scored(order[k].Request, order[k].Worker)));
        Assert.Null(plan.Coverage(EvaluationSplit.Test, testCount));
        Assert.Null(plan.Coverage(EvaluationSplit.Validation, testCount));
        Assert.Equal(testCount, plan.Correct(EvaluationSplit.Test));
        Assert.Equal(0.5 * testCount, plan.LossSum(EvaluationSplit.Validation));
    }

    [Fact]
    public void Empty_splits_send_nothing_and_leave_nothing_pending()
    {
        var plan = new EvaluationPlan();
        Assert.Empty(plan.Begin(version: 1, testCount: 0, validationCount: 0, [0, 1, 2]));
        Assert.Equal(0, plan.Pending);
        Assert.Null(plan.Coverage(EvaluationSplit.Test, 0));
    }

    [Fact]
    public async Task One_test_sample_among_four_workers_scores_as_four_copies_of_it_do_every_epoch()
    {
        // Training does not depend on the test set, so both runs reach the same weights; one copy of a sample and four
        // copies (one per worker) must then score the same accuracy and mean loss, epoch by epoch.
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 4, batch: 16, epochs: 3);
        options.Compute.BlasThreads = 1;
        var one = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test.Subset([5])).WithTestTimeout();
        var four = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test.Subset([5, 5, 5, 5])).WithTestTimeout();

        Assert.Equal(3, one.Epochs.Count);
        Compare.Identical(four.FinalWeights.Values, one.FinalWeights.Values, "final weights");
        for (var e = 0; e < 3; e++)
        {
            Assert.Equal(1, one.Epochs[e].TestSamples);
            Assert.Equal(four.Epochs[e].TestAccuracy, one.Epochs[e].TestAccuracy);
            Compare.Close(four.Epochs[e].TestLoss, one.Epochs[e].TestLoss, relative: 1e-12, absolute: 0, $"epoch {e + 1}'s test loss");
        }
    }

    [Fact]
    public void A_test_split_that_Data_TestLimit_and_Data_Classes_leave_empty_is_refused_when_the_data_is_prepared()
    {
        // The first test sample only, and a class filter that does not keep its class.
        var firstLabel = TestData.RawTest.Labels[0];
        var data = new Core.Configuration.DataOptions { Directory = TestData.SubsetDirectory, TestLimit = 1, Classes = [firstLabel == 0 ? 1 : 0] };
        var error = Assert.Throws<Core.Data.DataFormatException>(() => Core.Data.TrainingData.Load(data));
        Assert.StartsWith("The test split holds no samples (after Data:TestLimit and Data:Classes), so no epoch could be scored.", error.Message);
    }

    [Fact]
    public async Task An_empty_test_set_is_refused_before_training()
    {
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 16, epochs: 1);
        var error = await Assert.ThrowsAsync<ArgumentException>(() => SingleNodeTrainer.RunAsync(options, data.Train, data.Test.Subset([])));
        Assert.Equal("test", error.ParamName);
        Assert.StartsWith("The test set is empty, so no epoch could be scored", error.Message);
    }
}
