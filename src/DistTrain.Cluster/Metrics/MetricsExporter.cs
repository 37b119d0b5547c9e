using Prometheus;

namespace DistTrain.Cluster.Metrics;

/// <summary>
/// Serves every <see cref="System.Diagnostics.Metrics.Meter"/> instrument of the process, DistTrain's among
/// them, as Prometheus text at <c>http://HOST:PORT/metrics</c>, through prometheus-net's meter adapter and
/// HTTP listener.
/// </summary>
public sealed class MetricsExporter : IDisposable
{
    private readonly MetricServer _server;

    private MetricsExporter(MetricServer server) => _server = server;

    /// <summary>Starts serving on <paramref name="port"/>.</summary>
    /// <param name="hostname"><c>+</c> for every interface (containers), <c>localhost</c> for this machine only.</param>
    /// <param name="port">TCP port (Metrics:Port).</param>
    /// <exception cref="System.Net.HttpListenerException">The port is taken or may not be bound.</exception>
    public static MetricsExporter Start(string hostname, int port)
    {
        Prometheus.Metrics.ConfigureMeterAdapter(options =>
        {
            options.InstrumentFilterPredicate = instrument => instrument.Meter.Name == DistTrainMetrics.MeterName;
            // Actor handlers and step phases take 10 µs to seconds: 20 buckets from 10 µs, doubling (to about 5 s).
            options.ResolveHistogramBuckets = _ => Histogram.ExponentialBuckets(0.00001, 2, 20);
        });
        var server = new MetricServer(hostname, port);
        server.Start();
        // prometheus-net starts its meter adapter (the listener that counts) at the registry's first collection, so
        // counters and histograms would miss everything before the first scrape: collect once now.
        Prometheus.Metrics.DefaultRegistry.CollectAndExportAsTextAsync(Stream.Null).GetAwaiter().GetResult();
        return new MetricsExporter(server);
    }

    /// <inheritdoc />
    public void Dispose() => _server.Dispose();
}
