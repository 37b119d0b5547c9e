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
    /// <exception cref="MetricsPortException">The port is taken or may not be bound. A port another socket listens on is
    /// named as the start-up check names it (<see cref="PortInUseException"/>'s message), also when it was taken after
    /// the check passed, as by a node started at the same moment with the same Metrics:Port.</exception>
    public static MetricsExporter? Start(TrainingOptions options, string node)
    {
        DistTrainMetrics.Node = node;
        if (options.Metrics.Port == 0) return null;
        try
        {
            var exporter = MetricsExporter.Start(options.Metrics.Hostname, options.Metrics.Port, line => CliConsole.Fail("warning", line));
            if (exporter.IsServing)
                CliConsole.Out.WriteLiteralLine($"Metrics: {Endpoint(options.Metrics.Hostname, options.Metrics.Port)}");
            return exporter;
        }
        catch (HttpListenerException e)
        {
            if (HostProblem(options.Metrics.Hostname) is null)
            {
                try
                {
                    PortProbe.EnsureFree("Metrics:Port", options.Metrics.Hostname, options.Metrics.Port);
                }
                catch (Exception taken) when (taken is PortInUseException or AddressNotLocalException)
                {
                    throw new MetricsPortException(taken.Message);
                }
            }
            throw new MetricsPortException(CannotListen(options.Metrics.Hostname, options.Metrics.Port, e));
        }
    }

    /// <summary>
    /// What the start-up line says the endpoint listens on: <c>http://localhost:PORT/metrics (all interfaces)</c> for
    /// <c>+</c> and <c>*</c> (a local URL to try, and that other machines can reach it too), else the host itself.
    /// </summary>
    internal static string Endpoint(string hostname, int port) =>
        hostname is "+" or "*" ? $"http://localhost:{port}/metrics (all interfaces)" : $"http://{hostname}:{port}/metrics";

    /// <summary>
    /// The problem when the endpoint cannot listen: a Metrics:Hostname that is not a host name or does not resolve
    /// (<see cref="HostProblem"/>) is named with its fix; otherwise the port is taken or may not be bound.
    /// </summary>
    internal static string CannotListen(string hostname, int port, HttpListenerException e) =>
        HostProblem(hostname) is { } host
            ? $"Metrics:Hostname = '{hostname}' {host} ({e.Message}): set Metrics:Hostname to + for every interface, localhost for this machine only, or a name or address of this machine."
            : $"Metrics:Port = {port}: cannot listen on {hostname} ({e.Message}). Pick a free port or set Metrics:Port to 0.";

    /// <summary>
    /// Why <paramref name="hostname"/> cannot be listened on, or null when it is <c>+</c>, <c>*</c> or a host name that
    /// resolves: "is not a host name" (<see cref="Uri.CheckHostName"/>), "is the unspecified address, which names no
    /// interface" (<c>0.0.0.0</c>, <c>::</c>: the listener cannot take them, and <see cref="Dns"/> refuses to resolve them),
    /// or "does not resolve to an address".
    /// </summary>
    internal static string? HostProblem(string hostname)
    {
        if (hostname is "+" or "*") return null;
        if (Uri.CheckHostName(hostname) == UriHostNameType.Unknown) return "is not a host name";
        if (IPAddress.TryParse(hostname.Trim('[', ']'), out var address) && (address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any)))
            return "is the unspecified address, which names no interface";
        try
        {
            return Dns.GetHostAddresses(hostname).Length == 0 ? "does not resolve to an address" : null;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return "does not resolve to an address";
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
