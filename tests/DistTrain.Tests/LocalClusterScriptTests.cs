using System.Diagnostics;

namespace DistTrain.Tests;

/// <summary>deploy/local/cluster.sh run as a user runs it: real nodes on loopback, the suite's disttrain.dll, the test subset.</summary>
public class LocalClusterScriptTests
{
    private static string Repository => Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", ".."));

    /// <summary>The CPUs this process may run on (<c>Cpus_allowed_list</c> of /proc/self/status: <c>0-3,6</c>), in order.</summary>
    private static List<int> AllowedCpus()
    {
        var list = File.ReadLines("/proc/self/status").Single(l => l.StartsWith("Cpus_allowed_list:", StringComparison.Ordinal)).Split(':')[1].Trim();
        var cpus = new List<int>();
        foreach (var range in list.Split(','))
        {
            var ends = range.Split('-').Select(int.Parse).ToArray();
            for (var cpu = ends[0]; cpu <= ends[^1]; cpu++) cpus.Add(cpu);
        }
        return cpus;
    }

    /// <summary>A first argument that is not a worker count used to end in a shell error ("abc: unbound variable", "division by 0").</summary>
    [Theory]
    [InlineData("abc", "cluster.sh: 'abc' is not a number of workers. Usage: deploy/local/cluster.sh [WORKERS] [disttrain node options...]")]
    [InlineData("0", "cluster.sh: WORKERS = 0; give 1 to 256 worker nodes.")]
    [InlineData("300", "cluster.sh: WORKERS = 300; give 1 to 256 worker nodes.")]
    public async Task A_first_argument_that_is_not_a_worker_count_exits_2_with_the_usage_before_anything_starts(string argument, string message)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = Repository };
        start.ArgumentList.Add(Path.Combine(Repository, "deploy", "local", "cluster.sh"));
        start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var errors = process.StandardError.ReadToEndAsync();
        var output = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal(2, process.ExitCode);
        Assert.StartsWith(message, await errors);
        Assert.Equal("", output); // nothing built, installed or started
    }

    [Fact]
    public async Task A_worker_killed_by_a_signal_does_not_end_the_run_and_a_preset_MinWorkers_is_kept()
    {
        // Worker 1's wrapper kills itself with SIGKILL before the node starts (exit 137, as kill -9 mid-run gives); with
        // Cluster:MinWorkers 1 the job trains on worker 2 and must end with its result and exit code 0. PIN_WORKERS=1 puts
        // taskset before each node's command, which the wrapper records: worker 2 trains pinned to its core.
        var folder = Path.Combine(Path.GetTempPath(), $"disttrain-cluster-script-{Guid.NewGuid():N}");
        Directory.CreateDirectory(folder);
        var wrapper = Path.Combine(folder, "wrapper.sh");
        File.WriteAllText(wrapper, "#!/usr/bin/env bash\necho \"${@:2:3}\" > \"$(dirname \"$0\")/worker-$1.command\"\n[ \"$1\" != 1 ] || kill -9 $$\nshift\nexec \"$@\"\n");
        string? runFolder = null;
        try
        {
            var start = new ProcessStartInfo("bash")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
                WorkingDirectory = Repository,
            };
            foreach (var argument in new[] { Path.Combine(Repository, "deploy", "local", "cluster.sh"), "2", "--config", "configs/fashion-mnist-mlp.json" })
                start.ArgumentList.Add(argument);
            foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("DISTTRAIN_", StringComparison.Ordinal)).ToList())
                start.Environment.Remove(key);
            start.Environment["CLI_DLL"] = Path.Combine(AppContext.BaseDirectory, "disttrain.dll");
            start.Environment["WORKER_WRAPPER"] = wrapper;
            start.Environment["PIN_WORKERS"] = "1";
            start.Environment["DISTTRAIN_Compute__BlasThreads"] = "1";
            start.Environment["DISTTRAIN_Cluster__MinWorkers"] = "1";
            start.Environment["DISTTRAIN_Cluster__Tls"] = "false";
            start.Environment["DISTTRAIN_Data__Directory"] = Path.Combine(Repository, "tests", "data", "fashion-mnist-subset");
            start.Environment["DISTTRAIN_Data__TrainLimit"] = "512";
            start.Environment["DISTTRAIN_Data__TestLimit"] = "200";
            start.Environment["DISTTRAIN_Training__Epochs"] = "1";
            start.Environment["DISTTRAIN_Output__Directory"] = folder;
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(wrapper, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            using var process = Process.Start(start)!;
            var standardError = process.StandardError.ReadToEndAsync();
            var standardOutput = process.StandardOutput.ReadToEndAsync();
            using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(180)))
            {
                try { await process.WaitForExitAsync(timeout.Token); }
                catch (OperationCanceledException) { process.Kill(entireProcessTree: true); throw; }
            }
            var (output, errors) = (await standardOutput, await standardError);
            // The script's run folder (logs, CA, secret) goes with the test's own: "logs in runs/cluster/<run>/logs/".
            var run = System.Text.RegularExpressions.Regex.Match(output, @"logs in (runs/cluster/[^/\s]+)/logs/");
            if (run.Success) runFolder = Path.Combine(Repository, run.Groups[1].Value);
            Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}\n{output}\n{errors}");
            Assert.Contains("worker-1 was killed (signal 9); the job goes on without it", errors);
            Assert.Contains("add-worker.sh starts a replacement", errors);
            Assert.Contains("Test accuracy after 1 epoch", output);
            // One BLAS thread each: worker i gets the i-th CPU this process may run on, in turn.
            var cpus = AllowedCpus();
            Assert.Equal($"taskset -c {cpus[0]}", File.ReadAllText(Path.Combine(folder, "worker-1.command")).Trim());
            Assert.Equal($"taskset -c {cpus[1 % cpus.Count]}", File.ReadAllText(Path.Combine(folder, "worker-2.command")).Trim());
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
            if (runFolder is not null && Directory.Exists(runFolder)) Directory.Delete(runFolder, recursive: true);
        }
    }
}
