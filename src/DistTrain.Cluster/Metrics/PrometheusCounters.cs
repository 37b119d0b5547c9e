using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Text.RegularExpressions;
using Prometheus;

namespace DistTrain.Cluster.Metrics;

/// <summary>
/// Exports the DistTrain meter's counters (<see cref="Counter{T}"/> and <see cref="ObservableCounter{T}"/>) as Prometheus
/// counters, named with the <c>_total</c> suffix of the Prometheus and OpenMetrics conventions
/// (<c>disttrain_actor_messages_total</c>); the other instruments go through prometheus-net's meter adapter.
/// </summary>
/// <remarks>
/// prometheus-net's <see cref="MeterAdapter"/> publishes every .NET counter as a gauge, by design ("they may be re-created
/// on the .NET Meters side at any time, decrementing the value"), with no option to do otherwise, and names it without
/// <c>_total</c>. DistTrain's counters live as long as the process, so each is a prometheus-net <see cref="Prometheus.Counter"/>
/// here: a <see cref="Counter{T}"/> measurement is an increment (<see cref="ICounter.Inc(double)"/>), an
/// <see cref="ObservableCounter{T}"/> measurement the running total, read before each collection
/// (<see cref="CollectorRegistry.AddBeforeCollectCallback(Action)"/>) and set with <see cref="ICounter.IncTo(double)"/>.
/// </remarks>
internal static partial class PrometheusCounters
{
    private static readonly object StartLock = new();
    private static MeterListener? _listener;
    private static CollectorRegistry? _registry;
    private static readonly ConcurrentDictionary<(Instrument Instrument, string LabelNames), Prometheus.Counter> Counters = new();

    /// <summary>True for the instruments exported here: the DistTrain meter's counters.</summary>
    public static bool Exports(Instrument instrument) =>
        instrument.Meter.Name == DistTrainMetrics.MeterName && instrument.GetType().IsGenericType
        && (instrument.GetType().GetGenericTypeDefinition() == typeof(Counter<>) || instrument.GetType().GetGenericTypeDefinition() == typeof(ObservableCounter<>));

    /// <summary>
    /// The Prometheus name of a counter: meter and instrument name in lower case, anything but letters, digits and
    /// underscores as underscores, and <c>_total</c> (<c>DistTrain</c> and <c>actor.messages</c>: <c>disttrain_actor_messages_total</c>).
    /// </summary>
    public static string PrometheusName(Instrument instrument)
    {
        var name = NotNameCharacter().Replace($"{instrument.Meter.Name}_{instrument.Name}".ToLowerInvariant(), "_");
        return name.EndsWith("_total", StringComparison.Ordinal) ? name : name + "_total";
    }

    /// <summary>
    /// Starts counting into <paramref name="registry"/>, once per process (later calls do nothing): from here on, so a
    /// counter includes what happened before the first scrape.
    /// </summary>
    public static void Start(CollectorRegistry registry)
    {
        lock (StartLock)
        {
            if (_listener is not null) return;
            _registry = registry;
            _listener = new MeterListener
            {
                InstrumentPublished = (instrument, listener) =>
                {
                    if (Exports(instrument)) listener.EnableMeasurementEvents(instrument);
                },
            };
            _listener.SetMeasurementEventCallback<byte>((i, v, t, _) => Record(i, v, t));
            _listener.SetMeasurementEventCallback<short>((i, v, t, _) => Record(i, v, t));
            _listener.SetMeasurementEventCallback<int>((i, v, t, _) => Record(i, v, t));
            _listener.SetMeasurementEventCallback<long>((i, v, t, _) => Record(i, v, t));
            _listener.SetMeasurementEventCallback<float>((i, v, t, _) => Record(i, v, t));
            _listener.SetMeasurementEventCallback<double>((i, v, t, _) => Record(i, v, t));
            _listener.SetMeasurementEventCallback<decimal>((i, v, t, _) => Record(i, (double)v, t));
            _listener.Start();
            var listener = _listener;
            registry.AddBeforeCollectCallback(listener.RecordObservableInstruments);
        }
    }

    /// <summary>A counter's label names in the order of an instrument's tags, and where each tag's value goes.</summary>
    private sealed class Layout(string[] tagKeys, int[] labelIndex, Prometheus.Counter counter, bool increments)
    {
        public string[] TagKeys { get; } = tagKeys;
        public int[] LabelIndex { get; } = labelIndex;
        public Prometheus.Counter Counter { get; } = counter;
        /// <summary>True for a <see cref="Counter{T}"/>, whose measurements are increments.</summary>
        public bool Increments { get; } = increments;

        public bool Fits(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            if (tags.Length != TagKeys.Length) return false;
            for (var i = 0; i < tags.Length; i++)
                if (!string.Equals(tags[i].Key, TagKeys[i], StringComparison.Ordinal)) return false;
            return true;
        }
    }

    // The layout of each instrument's last measurement: DistTrain's instruments always pass the same tags in the same order,
    // so a measurement finds its layout without allocating.
    private static readonly ConcurrentDictionary<Instrument, Layout> LastLayout = new();

    private static Layout LayoutFor(Instrument instrument, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var keys = new string[tags.Length];
        for (var i = 0; i < tags.Length; i++) keys[i] = tags[i].Key;
        // prometheus-net wants the label values in the order of the label names it was given: the names sorted.
        var names = keys.Select(k => NotNameCharacter().Replace(k, "_")).ToArray();
        var sorted = names.Order(StringComparer.Ordinal).ToArray();
        var labelIndex = names.Select(n => Array.IndexOf(sorted, n)).ToArray();
        var counter = Counters.GetOrAdd((instrument, string.Join(',', sorted)), _ => Prometheus.Metrics.WithCustomRegistry(_registry!).CreateCounter(
            PrometheusName(instrument),
            string.IsNullOrWhiteSpace(instrument.Unit) ? instrument.Description ?? "" : $"({instrument.Unit}) {instrument.Description}",
            new CounterConfiguration { LabelNames = sorted }));
        return new Layout(keys, labelIndex, counter, instrument.GetType().GetGenericTypeDefinition() == typeof(Counter<>));
    }

    private static void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var values = System.Buffers.ArrayPool<string>.Shared.Rent(tags.Length);
        try
        {
            if (!LastLayout.TryGetValue(instrument, out var layout) || !layout.Fits(tags))
                LastLayout[instrument] = layout = LayoutFor(instrument, tags);
            for (var i = 0; i < tags.Length; i++)
                values[layout.LabelIndex[i]] = tags[i].Value?.ToString() ?? "";
            var child = layout.Counter.WithLabels(values.AsSpan(0, tags.Length));
            // A Counter measurement is an increment; an ObservableCounter's is the total so far.
            if (layout.Increments) child.Inc(value);
            else child.IncTo(value);
        }
        catch (Exception e)
        {
            // An exception here would make the listener drop the instrument: report and go on.
            System.Diagnostics.Trace.WriteLine($"{instrument.Name}: exporting a measurement failed ({e.GetType().Name}: {e.Message}).");
        }
        finally
        {
            System.Buffers.ArrayPool<string>.Shared.Return(values);
        }
    }

    [GeneratedRegex("[^a-z0-9_]", RegexOptions.IgnoreCase)]
    private static partial Regex NotNameCharacter();
}
