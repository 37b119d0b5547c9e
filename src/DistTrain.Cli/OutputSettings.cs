using DistTrain.Core.Configuration;

namespace DistTrain.Cli;

/// <summary>
/// Checks, before training, the settings that name places a run writes to during training, so a bad one is a config error
/// (exit code 2) instead of a failure mid-run or a setting that silently does nothing: Monitoring:SampleTraceDirectory (a
/// file given as the folder failed inside an actor, with 51 stack frames and exit code 1) and Output:HealthFile (in a folder
/// that does not exist it was never written, so a container health check would call a live node dead; a folder given as the
/// file read 'Access to the path is denied').
/// </summary>
internal static class OutputSettings
{
    /// <summary>Creates Monitoring:SampleTraceDirectory and proves both places writable; touches Output:HealthFile.</summary>
    /// <exception cref="ConfigurationException">One of them cannot be written; one line each, with the fix.</exception>
    public static void Check(TrainingOptions options)
    {
        var problems = new List<string>();
        if (options.Monitoring.SampleTraceDirectory is { Length: > 0 } trace && !string.IsNullOrWhiteSpace(trace))
        {
            try
            {
                Directory.CreateDirectory(trace);
                var probe = Path.Combine(trace, $".disttrain-probe-{Environment.ProcessId}");
                File.WriteAllText(probe, "");
                File.Delete(probe);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
            {
                problems.Add($"Monitoring:SampleTraceDirectory = '{trace}' cannot be created or written ({e.Message}). Set a writable folder, or leave it empty.");
            }
        }
        if (options.Output.HealthFile is { Length: > 0 } health && !string.IsNullOrWhiteSpace(health))
        {
            try
            {
                var folder = Path.GetDirectoryName(Path.GetFullPath(health));
                if (Directory.Exists(health))
                    problems.Add($"Output:HealthFile = '{health}' is a folder, not a file. Give the path of a file to touch, such as " +
                                 $"'{Path.Combine(health, "healthy")}', or leave Output:HealthFile empty.");
                else if (folder is not null && !Directory.Exists(folder))
                    problems.Add($"Output:HealthFile = '{health}': the folder {folder} does not exist, so the file would never be written and a health check would " +
                                 "report this process dead. Create the folder, or leave Output:HealthFile empty.");
                else File.WriteAllText(health, DateTime.UtcNow.ToString("O"));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
            {
                problems.Add($"Output:HealthFile = '{health}' cannot be written ({e.Message}). Give a file in a writable folder, or leave it empty.");
            }
        }
        if (problems.Count > 0) throw new ConfigurationException("the output settings", problems);
    }
}
