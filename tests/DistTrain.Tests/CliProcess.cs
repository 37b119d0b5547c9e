using System.Diagnostics;

namespace DistTrain.Tests;

/// <summary>Runs the built <c>disttrain</c> executable as a real process, for exit codes and messages.</summary>
internal static class CliProcess
{
    /// <summary>Runs <c>dotnet disttrain.dll ARGS</c>; fails the test if it takes more than <paramref name="timeoutSeconds"/>.</summary>
    public static (int ExitCode, string Output, string Error) Run(string[] arguments, int timeoutSeconds = 120)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "disttrain.dll"));
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
