using System.Net;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Metrics;
using DistTrain.Core.Configuration;

namespace DistTrain.Cli;

/// <summary>Starts the Prometheus endpoint when Metrics:Port is set, and wraps the progress observer so training figures become metrics.</summary>
internal static class MetricsSetup
{
    /// <summary>
    /// The exporter, or null when metrics are off. Any other failure of the endpoint is a warning and the run goes on
    /// (see <see cref="MetricsExporter"/>).
    /// </summary>
    /// <exception cref="MetricsPortException">The port is taken or may not be bound.</exception>
    public static MetricsExporter? Start(TrainingOptions options, string node)
    {
        DistTrainMetrics.Node = node;
        if (options.Metrics.Port == 0) return null;
        try
        {
            var exporter = MetricsExporter.Start(options.Metrics.Hostname, options.Metrics.Port, line => CliConsole.Fail("warning", line));
            if (exporter.IsServing)
                Spectre.Console.AnsiConsole.MarkupLineInterpolated($"Metrics: http://{(options.Metrics.Hostname == "+" ? "localhost" : options.Metrics.Hostname)}:{options.Metrics.Port}/metrics");
            return exporter;
        }
        catch (HttpListenerException e)
        {
            throw new MetricsPortException($"Metrics:Port = {options.Metrics.Port}: cannot listen ({e.Message}). Pick a free port or set Metrics:Port to 0.");
        }
    }

    /// <summary>
    /// The <c>node</c> label of this node's series: <c>worker@HOST:PORT</c> (Cluster:PublicHostname, or the machine's name,
    /// and Cluster:Port). A node on Cluster:Port 0 (local workers: the system picks the port when the actor system binds,
    /// after the metrics endpoint has already served its first series, which keep their label) is
    /// <c>worker@HOST/pid PID</c> instead, so that two such nodes on one machine never share a label.
    /// </summary>
    public static string NodeLabel(string role, ClusterOptions cluster, int processId)
    {
        var host = string.IsNullOrWhiteSpace(cluster.PublicHostname) ? Dns.GetHostName() : cluster.PublicHostname;
        return cluster.Port == 0
            ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{role}@{host}/pid {processId}")
            : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{role}@{host}:{cluster.Port}");
    }

    /// <summary>The observer to give the trainer: metrics first, then the console.</summary>
    public static ITrainingObserver Wrap(ITrainingObserver console, TrainingOptions options) =>
        options.Metrics.Port == 0 ? console : new MetricsObserver(console);
}

/// <summary>The metrics endpoint cannot be opened.</summary>
internal sealed class MetricsPortException(string message) : Exception(message);
