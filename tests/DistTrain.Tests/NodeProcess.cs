using System.Diagnostics;
using System.Text;

namespace DistTrain.Tests;

/// <summary>
/// A <c>disttrain node</c> process with its output captured, started with exactly the given DISTTRAIN_* variables
/// (none inherited), optionally inside a network namespace (<c>ip netns exec</c>, which execs the node: the process
/// id is the node's). Killed on dispose if still running.
/// </summary>
internal sealed class NodeProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    /// <summary>Starts a node of <paramref name="role"/> with <paramref name="configPath"/>, in <paramref name="networkNamespace"/> when given.</summary>
    public NodeProcess(string role, string configPath, Dictionary<string, string> environment, string? networkNamespace = null)
    {
        var start = new ProcessStartInfo(networkNamespace is null ? "dotnet" : "ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (networkNamespace is not null)
            foreach (var argument in new[] { "netns", "exec", networkNamespace, "dotnet" })
                start.ArgumentList.Add(argument);
        foreach (var argument in new[] { Path.Combine(AppContext.BaseDirectory, "disttrain.dll"), "node", "--role", role, "--config", configPath })
            start.ArgumentList.Add(argument);
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("DISTTRAIN_", StringComparison.Ordinal)).ToList())
            start.Environment.Remove(key);
        foreach (var (key, value) in environment) start.Environment[key] = value;
        _process = new Process { StartInfo = start };
        _process.OutputDataReceived += (_, e) => { lock (_output) _output.AppendLine(e.Data); };
        _process.ErrorDataReceived += (_, e) => { lock (_output) _output.AppendLine(e.Data); };
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Output { get { lock (_output) return _output.ToString(); } }

    public bool HasExited => _process.HasExited;

    public int Id => _process.Id;

    /// <summary>SIGKILL, as a crashed or OOM-killed node.</summary>
    public void Kill() => _process.Kill(entireProcessTree: true);

    public async Task<int> WaitAsync(TimeSpan timeout)
    {
        try
        {
            await _process.WaitForExitAsync().WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"the node did not exit within {timeout.TotalSeconds} s. Output:\n{Output}");
        }
        _process.WaitForExit(); // flushes the redirected output
        return _process.ExitCode;
    }

    public async Task WaitForOutputAsync(string text, TimeSpan timeout, int after = 0)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (Output.IndexOf(text, after, StringComparison.Ordinal) < 0)
        {
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
