using System.CommandLine;

namespace DistTrain.Cli;

/// <summary>The <c>disttrain</c> command line: its commands, its parse-error report, and Ctrl-C handling.</summary>
internal static class DistTrainCommandLine
{
    /// <summary>The root command with every <c>disttrain</c> command.</summary>
    public static RootCommand Create()
    {
        return new RootCommand("DistTrain: data-parallel neural-network training on Akka.NET actors.")
        {
            TrainCommand.Create(),
            FinetuneCommand.Create(),
            InspectCommand.Create(),
            PredictCommand.Create(),
            EvaluateCommand.Create(),
            ExportCommand.Create(),
            CompareCommand.Create(),
            BenchCommand.Create(),
            NodeCommand.Create(),
            ConfigCommand.Create(),
        };
    }

    /// <summary>
    /// Parses <paramref name="args"/> and runs the command. A command line that does not parse prints one line per
    /// problem on standard error (<see cref="ParseErrors"/>), then the config's problems as far as the line parsed
    /// (<see cref="ParseErrors.ConfigProblems"/>), and returns 1. While the command runs, a first Ctrl-C or
    /// SIGTERM cancels it through its <see cref="CancellationToken"/> (<see cref="GracefulCancellation"/>).
    /// </summary>
    /// <returns>The process exit code.</returns>
    public static async Task<int> RunAsync(string[] args)
    {
        var parse = Create().Parse(args);
        // --help and --version run their own action, whatever else the line holds.
        var ownAction = parse.Action is not System.CommandLine.Invocation.ParseErrorAction && parse.Action != parse.CommandResult.Command.Action;
        var problems = ownAction ? [] : ParseErrors.Describe(parse);
        if (problems.Count > 0)
        {
            foreach (var problem in problems) CliConsole.Fail("error", problem);
            // With the config's problems, as far as the line parsed: every problem at once, not the config's after the line is fixed.
            if (ParseErrors.ConfigProblems(parse) is { } config) CliConsole.Fail("error", config);
            return 1;
        }
        using var cancellation = new GracefulCancellation();
        // System.CommandLine's own termination handling stays off: it gives up on the command after a timeout.
        return await parse.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null }, cancellation.Token);
    }
}
