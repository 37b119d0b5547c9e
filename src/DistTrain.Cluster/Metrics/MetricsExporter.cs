using System.Net;
using Prometheus;

namespace DistTrain.Cluster.Metrics;

/// <summary>
/// Serves the instruments of DistTrain's <see cref="System.Diagnostics.Metrics.Meter"/> as Prometheus text at
/// <c>http://HOST:PORT/metrics</c>, through prometheus-net's HTTP listener: counters as Prometheus counters named
/// <c>..._total</c> (<see cref="PrometheusCounters"/>), gauges and histograms through prometheus-net's meter adapter.
/// </summary>
/// <remarks>
/// A failure of the endpoint never ends training: only a port that cannot be bound at start (a configuration problem)
/// throws. .NET's managed <see cref="HttpListener"/> has a known race (dotnet/runtime#28658): a client that connects
/// while <c>Start</c> runs can make it throw <see cref="ArgumentNullException"/>, and stopping can throw the same; a
/// loop of 2,000 starts under a polling client hit it 7 times at start and 7 at stop. Such a start is retried once,
/// after a full garbage collection has closed the socket the failed listener left bound; if that fails too, or the
/// endpoint fails when stopped, a warning says so and the run goes on.
/// </remarks>
public sealed class MetricsExporter : IDisposable
{
    private readonly MetricHandler? _server;
    private readonly Action<string> _warn;

    private MetricsExporter(MetricHandler? server, Action<string> warn)
    {
        _server = server;
        _warn = warn;
    }

    /// <summary>
    /// Upper bounds of the staleness histogram's buckets, in weights versions: every count to 8, then doubling to 1,024
    /// (Training:StalenessBound allows 1,000 rounds ahead).
    /// </summary>
    public static readonly double[] StalenessBuckets = [0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64, 128, 256, 512, 1024];

    /// <summary>True when the endpoint is serving; false when it failed to start and the run goes on without it.</summary>
    public bool IsServing => _server is not null;

    /// <summary>
    /// Starts serving on <paramref name="port"/> (<see cref="MetricListener"/>: bound to <c>localhost</c> or
    /// <c>127.0.0.1</c>, it answers requests that name either host).
    /// </summary>
    /// <param name="hostname"><c>+</c> for every interface (containers), <c>localhost</c> for this machine only.</param>
    /// <param name="port">TCP port (Metrics:Port).</param>
    /// <param name="warn">Receives a line when the endpoint fails in a way that does not stop the run; null drops it.</param>
    /// <exception cref="HttpListenerException">The port is taken or may not be bound, or <paramref name="hostname"/> does not
    /// resolve to an address of this machine.</exception>
    public static MetricsExporter Start(string hostname, int port, Action<string>? warn = null) =>
        Start(() => new MetricListener(hostname, port), $"http://{hostname}:{port}/metrics", warn ?? (_ => { }));

    /// <summary>
    /// prometheus-net starts its meter adapter (the listener that counts) at the registry's first collection, so counters
    /// and histograms would miss everything before the first scrape: collect once right after start-up.
    /// </summary>
    private static void CollectOnce() =>
        Prometheus.Metrics.DefaultRegistry.CollectAndExportAsTextAsync(Stream.Null).GetAwaiter().GetResult();

    /// <summary>Starts the server <paramref name="create"/> makes (tests pass one that fails), with the retry described above.</summary>
    internal static MetricsExporter Start(Func<MetricHandler> create, string endpoint, Action<string> warn)
    {
        Prometheus.Metrics.ConfigureMeterAdapter(options =>
        {
            // The adapter would publish counters as gauges: PrometheusCounters exports those.
            options.InstrumentFilterPredicate = instrument => instrument.Meter.Name == DistTrainMetrics.MeterName && !PrometheusCounters.Exports(instrument);
            // Actor handlers and step phases take 10 µs to seconds: 20 buckets from 10 µs, doubling (to about 5 s). Staleness
            // counts weights versions, whole numbers up to Training:StalenessBound times the workers: buckets at each small count.
            options.ResolveHistogramBuckets = instrument => instrument == DistTrainMetrics.Staleness
                ? StalenessBuckets
                : Histogram.ExponentialBuckets(0.00001, 2, 20);
        });
        PrometheusCounters.Start(Prometheus.Metrics.DefaultRegistry);
        try
        {
            var server = create();
            server.Start();
            CollectOnce();
            return new MetricsExporter(server, warn);
        }
        catch (Exception e) when (e is not HttpListenerException)
        {
            warn($"The metrics endpoint {endpoint} failed to start ({e.GetType().Name}: {e.Message}); retrying once.");
        }
        // The failed listener's socket is still bound until its finalizer closes it.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        try
        {
            var server = create();
            server.Start();
            CollectOnce();
            return new MetricsExporter(server, warn);
        }
        catch (Exception e)
        {
            warn($"The metrics endpoint {endpoint} failed to start again ({e.GetType().Name}: {e.Message}); training goes on without it.");
            return new MetricsExporter(null, warn);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        try
        {
            ((IDisposable?)_server)?.Dispose();
        }
        catch (Exception e)
        {
            _warn($"The metrics endpoint failed while stopping ({e.GetType().Name}: {e.Message}); ignored, the run's results are unaffected.");
        }
    }
}
