using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace DistTrain.Tests;

/// <summary>A <c>disttrain</c> process (the built CLI) with its output captured; killed on dispose if still running.</summary>
internal sealed class DistTrainProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly StringBuilder _error = new();

    /// <summary>Starts <c>disttrain ARGUMENTS</c> with no DISTTRAIN_* variable of the test host, then <paramref name="environment"/>.</summary>
    public DistTrainProcess(IEnumerable<string> arguments, IReadOnlyDictionary<string, string>? environment = null, string? workingDirectory = null)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? AppContext.BaseDirectory,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "disttrain.dll"));
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("DISTTRAIN_", StringComparison.Ordinal)).ToList())
            start.Environment.Remove(key);
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;
        _process = new Process { StartInfo = start };
        _process.OutputDataReceived += (_, e) => { lock (_output) _output.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) =>
        {
            lock (_output) _output.AppendLine(e.Data);
            lock (_error) _error.AppendLine(e.Data);
        };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>A cluster node: <c>disttrain node --role ROLE --config FILE</c>.</summary>
    public static DistTrainProcess Node(string role, string configPath, IReadOnlyDictionary<string, string> environment) =>
        new(["node", "--role", role, "--config", configPath], environment);

    /// <summary>Standard output and standard error, interleaved as they arrived.</summary>
    public string Output { get { lock (_output) return _output.ToString(); } }

    /// <summary>Standard error alone.</summary>
    public string Error { get { lock (_error) return _error.ToString(); } }

    /// <summary>SIGKILL, as a crashed or OOM-killed process.</summary>
    public void Kill() => _process.Kill(entireProcessTree: true);

    /// <summary>True once the process has exited.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>Sends SIGINT, what Ctrl-C on a terminal sends.</summary>
    public void Interrupt() => Assert.Equal(0, kill(_process.Id, 2 /* SIGINT */));

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);

    /// <summary>Runs to the end: the exit code (the test fails if it takes longer than <paramref name="timeout"/>).</summary>
    public async Task<int> WaitAsync(TimeSpan timeout)
    {
        try
        {
            await _process.WaitForExitAsync().WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"disttrain did not exit within {timeout.TotalSeconds} s. Output:\n{Output}");
        }
        _process.WaitForExit(); // flushes the redirected output
        return _process.ExitCode;
    }

    public async Task WaitForOutputAsync(string text, TimeSpan timeout, int after = 0)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (Output.IndexOf(text, after, StringComparison.Ordinal) < 0)
        {
            if (_process.HasExited && Output.IndexOf(text, after, StringComparison.Ordinal) < 0)
                Assert.Fail($"disttrain exited ({_process.ExitCode}) before '{text}' appeared. Output:\n{Output}");
            if (DateTime.UtcNow > deadline) Assert.Fail($"'{text}' did not appear within {timeout.TotalSeconds} s. Output:\n{Output}");
            await Task.Delay(100);
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.Dispose();
    }
}
