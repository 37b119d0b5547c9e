using System.Net;
using DistTrain.Cluster.Metrics;
using Prometheus;

namespace DistTrain.Tests;

/// <summary>
/// The metrics endpoint failing in the ways .NET's HttpListener does (an ArgumentNullException from Start or Stop when a
/// client connects at the wrong moment): logged, and never the end of the run.
/// </summary>
public class MetricsExporterFailureTests
{
    /// <summary>A server whose start throws <paramref name="startFailure"/> (when set) and whose serving task ends with <paramref name="stopFailure"/>.</summary>
    private sealed class FailingServer(Exception? startFailure, Exception? stopFailure) : MetricHandler
    {
        protected override Task StartServer(CancellationToken cancel) =>
            startFailure is not null ? throw startFailure : stopFailure is not null ? Task.FromException(stopFailure) : Task.Delay(Timeout.Infinite, cancel);
    }

    private static ArgumentNullException ListenerRace() => new("obj", "Value cannot be null.");

    [Fact]
    public void A_start_that_fails_with_the_listener_race_is_retried_once_and_the_retry_serves()
    {
        var warnings = new List<string>();
        var attempts = 0;
        using var exporter = MetricsExporter.Start(() => ++attempts == 1 ? new FailingServer(ListenerRace(), null) : new FailingServer(null, null), "http://localhost:1/metrics", warnings.Add);
        Assert.True(exporter.IsServing);
        Assert.Equal(2, attempts);
        Assert.Contains("ArgumentNullException", Assert.Single(warnings));
    }

    [Fact]
    public void A_start_that_fails_twice_leaves_the_run_without_metrics_and_says_so()
    {
        var warnings = new List<string>();
        using var exporter = MetricsExporter.Start(() => new FailingServer(ListenerRace(), null), "http://localhost:1/metrics", warnings.Add);
        Assert.False(exporter.IsServing);
        Assert.Equal(2, warnings.Count);
        Assert.Contains("training goes on without it", warnings[1]);
    }

    [Fact]
    public void A_failure_when_stopping_is_a_warning_not_an_exception()
    {
        var warnings = new List<string>();
        var exporter = MetricsExporter.Start(() => new FailingServer(null, ListenerRace()), "http://localhost:1/metrics", warnings.Add);
        exporter.Dispose();
        Assert.Contains("failed while stopping (ArgumentNullException", Assert.Single(warnings));
    }

    [Fact]
    public void A_port_that_cannot_be_bound_is_still_reported_to_the_caller()
    {
        Assert.Throws<HttpListenerException>(() =>
            MetricsExporter.Start(() => new FailingServer(new HttpListenerException(98, "Address already in use"), null), "http://localhost:1/metrics", _ => { }));
    }
}
