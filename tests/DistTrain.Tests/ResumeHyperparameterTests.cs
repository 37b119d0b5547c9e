using DistTrain.Cluster.Hosting;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Optimization;

namespace DistTrain.Tests;

/// <summary>
/// A checkpoint records the optimizer settings its state was built with; a resume that changes one is refused with the
/// key, both values and the fix, while settings that only shape each step (the learning rate) may change.
/// </summary>
public sealed class ResumeHyperparameterTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-resume-hyper-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>Adam, 2 workers x batch 50 over 1,000 samples (10 steps per epoch), checkpoints in the test's folder.</summary>
    private TrainingOptions Adam(int epochs, bool resume, Action<OptimizerOptions>? change = null)
    {
        var options = TestData.Options(TestData.Mlp(16, 10), workers: 2, batch: 50, epochs: epochs);
        options.Optimizer.Kind = OptimizerKind.Adam;
        options.Optimizer.LearningRate = 0.003;
        change?.Invoke(options.Optimizer);
        options.Checkpoint = new CheckpointOptions { Directory = _directory, Keep = 10, Resume = resume };
        return options;
    }

    private static Task<TrainingResult> Run(TrainingOptions options)
    {
        var data = TestData.Normalized();
        return SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout();
    }

    [Fact]
    public async Task Checkpoints_record_the_betas_and_epsilon_of_Adam()
    {
        var run = await Run(Adam(epochs: 1, resume: false, o => o.Beta2 = 0.995));
        var path = new CheckpointStore(_directory, 10).List()[0];
        var checkpoint = TrainingCheckpoint.Read(path, run.FinalWeights.Layout);
        Assert.Equal([("Optimizer:Beta1", "0.9"), ("Optimizer:Beta2", "0.995"), ("Optimizer:Epsilon", "1E-08")], checkpoint.OptimizerHyperparameters);
        Assert.Equal("{\"Optimizer:Beta1\":\"0.9\",\"Optimizer:Beta2\":\"0.995\",\"Optimizer:Epsilon\":\"1E-08\"}",
            SafeTensors.ReadMetadata(path)["optimizer_hyperparameters"]);
    }

    [Fact]
    public async Task A_resume_that_changes_Beta2_is_refused_naming_the_key_both_values_and_the_fix()
    {
        await Run(Adam(epochs: 1, resume: false));
        var error = await Assert.ThrowsAsync<CheckpointResumeException>(() => Run(Adam(epochs: 2, resume: true, o => o.Beta2 = 0.99)));
        Assert.Contains("Optimizer:Beta2 = 0.99, the checkpoint's state was built with 0.999", error.Message);
        Assert.Contains("resume with them, or start a new run without --resume", error.Message);
        Assert.DoesNotContain("Beta1", error.Message);
    }

    [Theory]
    [InlineData(OptimizerKind.Sgd, "Optimizer:Momentum = 0.5, the checkpoint's state was built with 0.9")]
    [InlineData(OptimizerKind.RMSProp, "Optimizer:Alpha = 0.9, the checkpoint's state was built with 0.99")]
    [InlineData(OptimizerKind.AdamW, "Optimizer:Epsilon = 1E-06, the checkpoint's state was built with 1E-08")]
    public async Task Each_optimizer_refuses_a_change_to_what_its_state_depends_on(OptimizerKind kind, string expected)
    {
        await Run(Adam(epochs: 1, resume: false, o => { o.Kind = kind; o.Momentum = kind == OptimizerKind.AdamW ? 0 : 0.9; }));
        var error = await Assert.ThrowsAsync<CheckpointResumeException>(() => Run(Adam(epochs: 2, resume: true, o =>
        {
            o.Kind = kind;
            o.Momentum = kind == OptimizerKind.Sgd ? 0.5 : kind == OptimizerKind.AdamW ? 0 : 0.9;
            if (kind == OptimizerKind.RMSProp) o.Alpha = 0.9;
            if (kind == OptimizerKind.AdamW) o.Epsilon = 1e-6;
        })));
        Assert.Contains(expected, error.Message);
    }

    [Fact]
    public async Task A_resume_that_changes_the_epochs_of_a_cosine_schedule_says_the_curve_changes_with_both_rates_and_the_fix()
    {
        // Before, raising --epochs on resume restarted a finished cosine decay half-way up its new curve without a word.
        void Cosine(OptimizerOptions o) => o.Schedule.Kind = LearningRateScheduleKind.Cosine;
        var run = await Run(Adam(epochs: 2, resume: false, Cosine));
        Assert.Equal("2", SafeTensors.ReadMetadata(new CheckpointStore(_directory, 10).List()[0])["run_epochs"]);
        var layout = run.FinalWeights.Layout;

        var lines = new List<string>();
        var checkpoint = CheckpointResume.Find(Adam(epochs: 4, resume: true, Cosine), layout, lines.Add);
        Assert.Equal((3, 2), (checkpoint.Epoch, checkpoint.RunEpochs));
        // cos(π · 2/4) at the start of epoch 3 of 4 gives half of 0.003; the 2-epoch curve had reached its end, 0.
        Assert.Contains("Optimizer:Schedule Cosine anneals over Training:Epochs, and the checkpoint's run had 2 epochs where this one has 4: " +
            "from the checkpoint's position on, the learning rate follows the 4-epoch curve (0.0015 at the start of epoch 3, where the checkpoint's run had 0, " +
            "the end of its curve). Training on from a finished run starts the new curve part-way, as a new schedule would.", lines);
        // train prints it as a warning (it came without the "warning:" label), and the line naming the checkpoint as it is.
        Assert.Equal("warning", DistTrain.Cli.TrainCommand.ResumeLineLabel(lines.Single(l => l.Contains("anneals over", StringComparison.Ordinal))));
        Assert.Null(DistTrain.Cli.TrainCommand.ResumeLineLabel(lines.Single(l => l.StartsWith("Resuming from checkpoint ", StringComparison.Ordinal))));

        // Mid-run, the fix is the checkpoint's count: with 3 epochs from the epoch-1 checkpoint, cos(π/3) gives 0.00225, cos(π/2) 0.0015.
        var midRun = new CheckpointStore(_directory, 10).List().Select(p => TrainingCheckpoint.Read(p, layout)).Single(c => c.Epoch == 2);
        Assert.Equal("Optimizer:Schedule Cosine anneals over Training:Epochs, and the checkpoint's run had 2 epochs where this one has 3: from the checkpoint's " +
            "position on, the learning rate follows the 3-epoch curve (0.00225 at the start of epoch 2, where the checkpoint's run had 0.0015). To keep the " +
            "checkpoint's curve, resume with --epochs 2 (Training:Epochs).", CheckpointResume.CosineSpanChange(midRun, Adam(epochs: 3, resume: true, Cosine)));

        // The same count, or a schedule that does not span the run, changes nothing: no warning.
        lines.Clear();
        CheckpointResume.Find(Adam(epochs: 2, resume: true, Cosine), layout, lines.Add);
        CheckpointResume.Find(Adam(epochs: 4, resume: true, o => o.Schedule.Kind = LearningRateScheduleKind.Step), layout, lines.Add);
        Assert.DoesNotContain(lines, l => l.Contains("anneals", StringComparison.Ordinal));
    }

    /// <summary>The learning rate and L2 may change on resume, and the resume says which changed, from what (before, it went
    /// on without a word); the same settings give no such line.</summary>
    [Fact]
    public async Task The_learning_rate_may_change_on_resume_and_the_resume_names_the_change()
    {
        var run = await Run(Adam(epochs: 1, resume: false));
        var layout = run.FinalWeights.Layout;
        Assert.Contains("\"Optimizer:LearningRate\":0.003", SafeTensors.ReadMetadata(new CheckpointStore(_directory, 10).List()[0])["update_settings"]);
        var lines = new List<string>();
        CheckpointResume.Find(Adam(epochs: 2, resume: true, o => { o.LearningRate = 0.001; o.L2 = 0.002; }), layout, lines.Add);
        var notice = Assert.Single(lines, l => l.Contains("other update settings", StringComparison.Ordinal));
        Assert.EndsWith(" was written by a run with other update settings: Optimizer:LearningRate = 0.001, the checkpoint's is 0.003; Optimizer:L2 = 0.002, " +
            "the checkpoint's is 0.0001. A resume may change them: this run goes on from the checkpoint's position with its own. To go on as the checkpoint's " +
            "run did, resume with its values.", notice);
        Assert.Equal("warning", DistTrain.Cli.TrainCommand.ResumeLineLabel(notice));
        lines.Clear();
        CheckpointResume.Find(Adam(epochs: 2, resume: true), layout, lines.Add);
        // A schedule setting that neither side's kind uses (Gamma under Constant) is no change.
        CheckpointResume.Find(Adam(epochs: 2, resume: true, o => o.Schedule.Gamma = 0.5), layout, lines.Add);
        Assert.DoesNotContain(lines, l => l.Contains("update settings", StringComparison.Ordinal));
        CheckpointResume.Find(Adam(epochs: 2, resume: true, o => o.Schedule.Kind = LearningRateScheduleKind.Exponential), layout, lines.Add);
        Assert.Contains(": Optimizer:Schedule:Kind = Exponential, the checkpoint's is Constant. A resume may change them", Assert.Single(lines, l => l.Contains("update settings", StringComparison.Ordinal)));

        var resumed = await Run(Adam(epochs: 2, resume: true, o => o.LearningRate = 0.001));
        Assert.Equal(20, resumed.Version);
    }
}
