using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace DistTrain.Tests;

/// <summary>
/// A <c>disttrain</c> process built with the suite (its <c>disttrain.dll</c> is copied beside the tests), with standard
/// output and error captured; killed on dispose if still running. Every wait has a timeout, a hang guard only.
/// </summary>
internal sealed class DistTrainProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly StringBuilder _standardOutput = new();
    private readonly StringBuilder _standardError = new();
    private readonly List<(DateTime Time, string Line)> _timedLines = [];

    /// <summary>Starts <c>dotnet disttrain.dll <paramref name="arguments"/></c>.</summary>
    /// <param name="arguments">The command line after the executable.</param>
    /// <param name="environment">DISTTRAIN_* variables for the process; the test process's own DISTTRAIN_* variables are not passed on.</param>
    /// <param name="workingDirectory">Its working directory; null for the test assembly's folder.</param>
    /// <param name="defaultInterrupt">
    /// Start it with SIGINT at its default action. A process started from a non-interactive shell's background job inherits
    /// SIGINT ignored, and .NET keeps an inherited ignore, so a test that sends SIGINT would depend on how the suite was
    /// launched; python3 (installed by tests/run.sh) resets it and then becomes the process (exec), so the pid is the same.
    /// </param>
    /// <param name="networkNamespace">
    /// A network namespace to run it in (<c>ip netns exec</c>, which execs dotnet, so the pid is the process's); null for this one.
    /// </param>
    public DistTrainProcess(IEnumerable<string> arguments, IReadOnlyDictionary<string, string>? environment = null,
        string? workingDirectory = null, bool defaultInterrupt = false, string? networkNamespace = null)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "disttrain.dll");
        var start = new ProcessStartInfo(defaultInterrupt ? "python3" : networkNamespace is null ? "dotnet" : "ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? AppContext.BaseDirectory,
        };
        if (defaultInterrupt)
            foreach (var argument in new[] { "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])", "dotnet" })
                start.ArgumentList.Add(argument);
        else if (networkNamespace is not null)
            foreach (var argument in new[] { "netns", "exec", networkNamespace, "dotnet" })
                start.ArgumentList.Add(argument);
        start.ArgumentList.Add(dll);
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("DISTTRAIN_", StringComparison.Ordinal)).ToList())
            start.Environment.Remove(key);
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;
        _process = new Process { StartInfo = start };
        _process.OutputDataReceived += (_, e) => Append(_standardOutput, e.Data);
        _process.ErrorDataReceived += (_, e) => Append(_standardError, e.Data);
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    private void Append(StringBuilder stream, string? line)
    {
        if (line is null) return;
        lock (_output)
        {
            stream.AppendLine(line);
            _output.AppendLine(line);
            _timedLines.Add((DateTime.UtcNow, line));
        }
    }

    /// <summary>A cluster node: <c>disttrain node --role ROLE --config FILE</c>.</summary>
    /// <param name="networkNamespace">A network namespace to run it in; null for this one.</param>
    /// <param name="defaultInterrupt">Start it with SIGINT at its default action, for a test that sends it (see the constructor).</param>
    public static DistTrainProcess Node(string role, string configPath, IReadOnlyDictionary<string, string> environment, string? networkNamespace = null,
        bool defaultInterrupt = false) =>
        new(["node", "--role", role, "--config", configPath], environment, defaultInterrupt: defaultInterrupt, networkNamespace: networkNamespace);

    /// <summary>
    /// A node of <paramref name="role"/> on the main job's config and the test subset, plain TCP on 127.0.0.1 with a free port,
    /// whose one seed is <c>127.0.0.1:<paramref name="seedPort"/></c> (a port where no DistTrain node listens, in the tests that
    /// use it) and which gives up its join after <paramref name="joinTimeoutSeconds"/>; <paramref name="overrides"/> replace or add
    /// variables.
    /// </summary>
    public static DistTrainProcess WithOneSeed(string role, int seedPort, int joinTimeoutSeconds, IReadOnlyDictionary<string, string>? overrides = null)
    {
        var environment = new Dictionary<string, string>
        {
            ["DISTTRAIN_Cluster__Secret"] = "0123456789abcdef0123", ["DISTTRAIN_Cluster__Tls"] = "false", ["DISTTRAIN_Cluster__Hostname"] = "127.0.0.1",
            ["DISTTRAIN_Cluster__Port"] = "0", ["DISTTRAIN_Cluster__JoinTimeoutSeconds"] = $"{joinTimeoutSeconds}",
            ["DISTTRAIN_Cluster__SeedNodes__0"] = $"akka.tcp://disttrain@127.0.0.1:{seedPort}",
        };
        foreach (var (key, value) in overrides ?? new Dictionary<string, string>()) environment[key] = value;
        return new(["node", "--role", role, "--config", "configs/fashion-mnist-mlp.json", "--data", TestData.SubsetDirectory], environment);
    }

    /// <summary>The process id.</summary>
    public int Id => _process.Id;

    /// <summary>Standard output and error, interleaved as they arrived.</summary>
    public string Output { get { lock (_output) return _output.ToString(); } }

    /// <summary>Every line of standard output and error with the UTC time this process read it (progress lines carry no time of their own; Akka's log lines carry the time they were logged).</summary>
    public IReadOnlyList<(DateTime Time, string Line)> TimedLines { get { lock (_output) return [.. _timedLines]; } }

    /// <summary>Standard output only.</summary>
    public string StandardOutput { get { lock (_output) return _standardOutput.ToString(); } }

    /// <summary>Standard error only.</summary>
    public string StandardError { get { lock (_output) return _standardError.ToString(); } }

    /// <summary>Standard error only (the same as <see cref="StandardError"/>).</summary>
    public string Error => StandardError;

    /// <summary>True once the process has exited.</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>SIGKILL, as a crashed or OOM-killed node.</summary>
    public void Kill() => _process.Kill(entireProcessTree: true);

    /// <summary>Sends SIGINT, as Ctrl-C in a terminal (start the process with <c>defaultInterrupt</c>, or it may ignore it).</summary>
    public void Interrupt()
    {
        const int sigint = 2;
        Assert.Equal(0, SendSignal(_process.Id, sigint));
    }

    /// <summary>Sends SIGTERM, as <c>docker stop</c> or a process manager.</summary>
    public void Terminate()
    {
        const int sigterm = 15;
        Assert.Equal(0, SendSignal(_process.Id, sigterm));
    }

    /// <summary>Sends SIGSTOP: the process and its sockets stay, but it answers nothing (a frozen machine, a partition).</summary>
    public void Suspend()
    {
        const int sigstop = 19;
        Assert.Equal(0, SendSignal(_process.Id, sigstop));
    }

    /// <summary>Sends SIGCONT to a process stopped with <see cref="Suspend"/>.</summary>
    public void Resume()
    {
        const int sigcont = 18;
        SendSignal(_process.Id, sigcont); // the process may have been killed meanwhile
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int SendSignal(int pid, int signal);

    /// <summary>
    /// Waits for the exit; fails the test with the output if it takes longer than <paramref name="timeout"/>, and with the
    /// end of each of <paramref name="alongside"/>'s (the nodes it waits for), whose failure is often the cause.
    /// </summary>
    /// <returns>The exit code; 128 + the signal number for a process ended by a signal (.NET's convention, as a shell's).</returns>
    public async Task<int> WaitAsync(TimeSpan timeout, IReadOnlyList<DistTrainProcess>? alongside = null)
    {
        try
        {
            await _process.WaitForExitAsync().WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"disttrain did not exit within {timeout.TotalSeconds} s. Output:\n{Output}{Others(alongside)}");
        }
        _process.WaitForExit(); // flushes the redirected output
        return _process.ExitCode;
    }

    /// <summary>
    /// Waits for the exit and asserts its code is <paramref name="expected"/>; a wrong code fails the test with the output,
    /// which says why (a bare exit code does not).
    /// </summary>
    public async Task AssertExitAsync(int expected, TimeSpan timeout, IReadOnlyList<DistTrainProcess>? alongside = null)
    {
        var code = await WaitAsync(timeout, alongside);
        if (code != expected) Assert.Fail($"disttrain exited with {code}, expected {expected}. Output:\n{Output}{Others(alongside)}");
    }

    /// <summary>The last 4,000 characters of each process's output, with its exit state, for a failure message.</summary>
    private static string Others(IReadOnlyList<DistTrainProcess>? processes)
    {
        if (processes is null) return "";
        var text = new System.Text.StringBuilder();
        for (var i = 0; i < processes.Count; i++)
        {
            var output = processes[i].Output;
            var state = processes[i]._process.HasExited ? $"exited with {processes[i]._process.ExitCode}" : "still running";
            text.Append($"\n--- node {i} alongside ({state}), last {Math.Min(4000, output.Length)} characters:\n").Append(output[Math.Max(0, output.Length - 4000)..]);
        }
        return text.ToString();
    }

    /// <summary>Waits until <paramref name="text"/> appears in the output at or after index <paramref name="after"/>; returns its index.</summary>
    public Task<int> WaitForOutputAsync(string text, TimeSpan timeout, int after = 0) =>
        WaitForAsync($"'{text}'", output => output.IndexOf(text, after, StringComparison.Ordinal), timeout);

    /// <summary>Waits until <paramref name="pattern"/> matches the output; returns the index of the match.</summary>
    public Task<int> WaitForMatchAsync(System.Text.RegularExpressions.Regex pattern, TimeSpan timeout) =>
        WaitForAsync($"a match of /{pattern}/", output => pattern.Match(output) is { Success: true } match ? match.Index : -1, timeout);

    private async Task<int> WaitForAsync(string what, Func<string, int> find, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        int index;
        while ((index = find(Output)) < 0)
        {
            if (DateTime.UtcNow > deadline) Assert.Fail($"{what} did not appear within {timeout.TotalSeconds} s. Output:\n{Output}");
            if (_process.HasExited)
            {
                _process.WaitForExit(); // flushes the redirected output
                if ((index = find(Output)) >= 0) return index;
                Assert.Fail($"{what} did not appear before the process exited with {_process.ExitCode}. Output:\n{Output}");
            }
            await Task.Delay(100);
        }
        return index;
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        _process.Dispose();
    }
}
