using System.Diagnostics;

namespace DistTrain.Tests;

/// <summary>Runs the built <c>disttrain</c> executable as a real process, for exit codes and messages.</summary>
internal static class CliProcess
{
    /// <summary>Runs <c>dotnet disttrain.dll ARGS</c>; fails the test if it takes more than <paramref name="timeoutSeconds"/>.
    /// With <paramref name="shellRedirect"/> (such as <c>&gt; /dev/full</c>) it runs through bash with that redirection, and
    /// the redirected stream reads empty here.</summary>
    public static (int ExitCode, string Output, string Error) Run(string[] arguments, int timeoutSeconds = 120, string? shellRedirect = null)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "disttrain.dll");
        var start = new ProcessStartInfo(shellRedirect is null ? "dotnet" : "bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (shellRedirect is not null)
        {
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add($"exec dotnet \"$0\" \"$@\" {shellRedirect}");
        }
        start.ArgumentList.Add(dll);
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeoutSeconds * 1000))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"disttrain {string.Join(' ', arguments)} did not exit within {timeoutSeconds} s.");
        }
        return (process.ExitCode, output.Result, error.Result);
    }
}
