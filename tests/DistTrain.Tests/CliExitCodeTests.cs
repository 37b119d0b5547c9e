using DistTrain.Cli;

namespace DistTrain.Tests;

/// <summary>How <see cref="CliConsole.RunTrainingAsync"/> maps a training's end to the documented exit codes.</summary>
public sealed class CliExitCodeTests
{
    [Fact]
    public async Task Each_kind_of_failure_gets_its_exit_code_and_a_fault_in_DistTrain_is_not_an_unhandled_crash()
    {
        Assert.Null(await CliConsole.RunTrainingAsync(() => Task.CompletedTask));
        Assert.Equal(130, await CliConsole.RunTrainingAsync(() => throw new OperationCanceledException()));
        Assert.Equal(1, await CliConsole.RunTrainingAsync(() => throw new TimeoutException("no progress")));
        // An input problem found only once training ran is a bad input (2), not a fault in DistTrain (1).
        Assert.Equal(2, await CliConsole.RunTrainingAsync(() => throw new ArgumentException("The training set is empty.")));
        Assert.Equal(2, await CliConsole.RunTrainingAsync(() => throw new InvalidDataException("checkpoint of another size")));
        // A checkpoint a cluster's parameter server refuses to resume from, found once its job starts: 2, as train's refusal
        // before training (it was 1, 'training failed', in cluster mode only).
        Assert.Equal(2, await CliConsole.RunTrainingAsync(() => throw new DistTrain.Cluster.Hosting.CheckpointResumeException("Checkpoint x does not fit the config")));
        // A bug (as a coordinator's bookkeeping fault once was): exit code 1 with an "internal error" line, not an
        // unhandled exception from the command line's pipeline.
        Assert.Equal(1, await CliConsole.RunTrainingAsync(() => throw new DivideByZeroException()));
        Assert.Equal(1, await CliConsole.RunTrainingAsync(() => throw new NullReferenceException()));
    }
}
