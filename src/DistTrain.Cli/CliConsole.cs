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

    /// <summary>Prints "error: message" in red on standard error.</summary>
    public static void Fail(string label, string message) => Error.MarkupLineInterpolated($"[red]{label}:[/] {message}");
}
