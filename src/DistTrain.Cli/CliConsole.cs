using Spectre.Console;

namespace DistTrain.Cli;

/// <summary>Console set-up shared by the commands: errors on standard error, no wrapping in logs.</summary>
internal static class CliConsole
{
    /// <summary>Standard error, for problems; standard output stays for progress and results.</summary>
    public static readonly IAnsiConsole Error = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

    /// <summary>Called once at start-up: when output is redirected (CI, docker logs, files), do not wrap at Spectre's default of 80 columns.</summary>
    public static void Configure()
    {
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 240;
        if (Console.IsErrorRedirected) Error.Profile.Width = 240;
    }

    /// <summary>
    /// Runs a training (either mode) and maps its failures to the documented exit codes: 3 diverged,
    /// 130 cancelled, 1 failed (stall, lost actor, refused or lost node, no checkpoint to resume fits, a checkpoint or other
    /// file that could not be written or read); null when it completed.
    /// </summary>
    public static async Task<int?> RunTrainingAsync(Func<Task> training, Action<DistTrain.Cluster.Actors.TrainingDivergedException>? onDiverged = null)
    {
        try
        {
            await training();
            return null;
        }
        catch (DistTrain.Cluster.Actors.TrainingDivergedException e)
        {
            Fail("training diverged", e.Message);
            onDiverged?.Invoke(e);
            return 3;
        }
        catch (OperationCanceledException)
        {
            Fail("cancelled", "no weights were saved.");
            return 130;
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException or DistTrain.Cluster.Actors.TrainingStalledException
                                       or DistTrain.Cluster.Hosting.CheckpointResumeException or IOException)
        {
            Fail("training failed", e.Message);
            return 1;
        }
    }

    /// <summary>Prints "error: message" in red on standard error.</summary>
    public static void Fail(string label, string message) => Error.MarkupLineInterpolated($"[red]{label}:[/] {message}");
}
