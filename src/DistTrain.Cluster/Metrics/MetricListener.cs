using Prometheus;

namespace DistTrain.Cluster.Metrics;

/// <summary>
/// prometheus-net's <see cref="MetricServer"/> for one host name, or, for a loopback name (<c>localhost</c> or
/// <c>127.0.0.1</c>), one <see cref="MetricServer"/> per name on the same port. .NET's HttpListener answers only requests
/// whose Host header names its prefix's host (any other gets 404), so a server bound to <c>localhost</c> alone refused a
/// Prometheus target written as <c>127.0.0.1:PORT</c>. Both servers are prometheus-net's, serving the same registry.
/// </summary>
public sealed class MetricListener : MetricHandler
{
    private readonly MetricServer[] _servers;

    /// <summary>Creates the servers for <c>http://HOST:PORT/metrics</c>, one per host of <see cref="Hosts"/>; <see cref="MetricHandler.Start"/> binds them.</summary>
    /// <param name="hostname">Metrics:Hostname: <c>+</c> for every interface, a loopback name for this machine only, or a name or address of this machine.</param>
    /// <param name="port">Metrics:Port, 1 to 65,535.</param>
    public MetricListener(string hostname, int port) => _servers = [.. Hosts(hostname).Select(host => new MetricServer(host, port))];

    /// <summary>
    /// The hosts whose Host header the endpoint answers for <paramref name="hostname"/>: <c>localhost</c> and
    /// <c>127.0.0.1</c> for either of them (matched ignoring case), else <paramref name="hostname"/> alone.
    /// </summary>
    public static IReadOnlyList<string> Hosts(string hostname) =>
        string.Equals(hostname, "localhost", StringComparison.OrdinalIgnoreCase) || hostname == "127.0.0.1" ? ["localhost", "127.0.0.1"] : [hostname];

    /// <inheritdoc />
    /// <exception cref="System.Net.HttpListenerException">A server's port cannot be bound; the servers started before it are stopped.</exception>
    protected override Task StartServer(CancellationToken cancel)
    {
        var started = new List<MetricServer>();
        try
        {
            foreach (var server in _servers)
            {
                server.Start();
                started.Add(server);
            }
        }
        catch
        {
            foreach (var server in started) server.Dispose();
            throw;
        }
        return Task.Delay(Timeout.Infinite, cancel).ContinueWith(_ =>
        {
            foreach (var server in _servers) server.Dispose();
        }, CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
    }
}
