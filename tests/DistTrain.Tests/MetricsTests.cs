using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Metrics;
using DistTrain.Cluster.Protocol;

namespace DistTrain.Tests;

/// <summary>The Prometheus endpoint, scraped over HTTP while a training runs.</summary>
public class MetricsTests
{
    private static int FreePort() => TestPorts.Free();

    /// <summary>An exporter on a free loopback port and a client that scrapes it; disposing stops both.</summary>
    private sealed class Endpoint : IDisposable
    {
        private readonly IDisposable _exporter;
        private readonly HttpClient _http;

        public Endpoint(TimeSpan timeout)
        {
            var port = FreePort();
            _exporter = MetricsExporter.Start("localhost", port);
            _http = new HttpClient { BaseAddress = new Uri($"http://localhost:{port}/"), Timeout = timeout };
        }

        /// <summary>One scrape: the exposition text.</summary>
        public Task<string> ScrapeAsync() => _http.GetStringAsync("metrics");

        public void Dispose()
        {
            _http.Dispose();
            _exporter.Dispose();
        }
    }

    /// <summary>Sum of every sample of a metric family (all label sets), or null when absent.</summary>
    private static double? Value(string scrape, string name, string? labelFilter = null)
    {
        var matches = Regex.Matches(scrape, $@"^{Regex.Escape(name)}(\{{[^}}]*\}})? (\S+)$", RegexOptions.Multiline)
            .Where(m => labelFilter is null || m.Groups[1].Value.Contains(labelFilter, StringComparison.Ordinal))
            .ToList();
        return matches.Count == 0 ? null : matches.Sum(m => double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
    }

    /// <summary>A node's <c>node</c> label: its advertised host and Cluster:Port; on port 0 (local workers, whose port the
    /// system picks only after the endpoint served its first series) its process id instead of ":0", so two workers on
    /// one machine never share a label.</summary>
    [Fact]
    public void A_node_is_labelled_by_its_host_and_port_or_on_port_0_by_its_process()
    {
        var fixedPort = new DistTrain.Core.Configuration.ClusterOptions { PublicHostname = "ps", Port = 4053 };
        Assert.Equal("parameter-server@ps:4053", DistTrain.Cli.MetricsSetup.NodeLabel("parameter-server", fixedPort, 17));
        var anyPort = new DistTrain.Core.Configuration.ClusterOptions { PublicHostname = "127.0.0.1", Port = 0 };
        Assert.Equal("worker@127.0.0.1/pid 17", DistTrain.Cli.MetricsSetup.NodeLabel("worker", anyPort, 17));
        Assert.NotEqual(DistTrain.Cli.MetricsSetup.NodeLabel("worker", anyPort, 17), DistTrain.Cli.MetricsSetup.NodeLabel("worker", anyPort, 18));
        var unnamed = new DistTrain.Core.Configuration.ClusterOptions { Port = 4053 };
        Assert.Equal($"worker@{Dns.GetHostName()}:4053", DistTrain.Cli.MetricsSetup.NodeLabel("worker", unnamed, 17));
    }

    [Fact]
    public async Task Metrics_are_served_during_training_with_sane_values()
    {
        using var endpoint = new Endpoint(TimeSpan.FromSeconds(10));
        var data = TestData.Normalized();
        var options = TestData.Options(TestData.Mlp(1024, 10), workers: 2, batch: 16, epochs: 10);
        // Training holds at the end of epochs 2 and 8 until the test has scraped: the scrapes see a run in progress, at
        // known points, however fast or slow the machine is.
        var gate = new GateObserver(new RecordingObserver(), holdAfter: [2, 8]);
        var training = SingleNodeTrainer.RunAsync(options, data.Train, data.Test, new MetricsObserver(gate)).WithTestTimeout();

        var scrapes = new List<string>();
        foreach (var epoch in new[] { 2, 8 })
        {
            await gate.Reached(epoch).WaitAsync(TimeSpan.FromSeconds(120));
            scrapes.Add(await endpoint.ScrapeAsync());
            gate.Release(epoch);
        }
        var result = await training;
        var first = scrapes[0];
        var last = scrapes[^1];
        Assert.Equal(2, Value(first, "disttrain_training_epoch"));
        Assert.Equal(8, Value(last, "disttrain_training_epoch"));

        // Messages processed: above zero and increasing, for every role.
        foreach (var role in new[] { "coordinator", "parameter-server", "worker" })
        {
            var before = Value(first, "disttrain_actor_messages_total", $"role=\"{role}\"");
            var after = Value(last, "disttrain_actor_messages_total", $"role=\"{role}\"");
            Assert.True(before > 0, $"{role}: no messages counted");
            Assert.True(after > before, $"{role}: messages did not increase ({before} -> {after})");
        }
        Assert.True(Value(last, "disttrain_actor_processing_seconds_count", "role=\"worker\"") > 0);
        Assert.True(Value(last, "disttrain_actor_queueing_seconds_count", "role=\"worker\"") > 0);
        Assert.NotNull(Value(last, "disttrain_actor_mailbox_depth", "role=\"parameter-server\""));
        // Epochs 3 to 8 ran between the scrapes: 6 epochs of 32 steps (1,000 samples, 2 workers x 16) and 6,000 samples.
        Assert.Equal(6 * 32, Value(last, "disttrain_training_steps_total") - Value(first, "disttrain_training_steps_total"));
        // Training samples are counted where steps are applied and where gradients are computed: each role saw them all.
        foreach (var role in new[] { "parameter-server", "worker" })
            Assert.Equal(6 * 1000, Value(last, "disttrain_training_samples_total", $"role=\"{role}\"") - Value(first, "disttrain_training_samples_total", $"role=\"{role}\""));
        // Each of those 6 x 32 x 2 pushes is a float32 gradient of the 784-1024-10 MLP's 814,090 parameters.
        Assert.Equal(6 * 32 * 2 * 4.0 * 814_090, Value(last, "disttrain_training_gradient_bytes_total") - Value(first, "disttrain_training_gradient_bytes_total"));
        Assert.True(Value(last, "disttrain_training_step_seconds_count", "phase=\"compute\"") > 0);
        // 8 epochs on 1,000 samples overfit: the train loss is anywhere between about 1e-5 and 0.5, but is positive and finite.
        Assert.InRange(Value(last, "disttrain_training_train_loss")!.Value, 1e-9, 3);
        Assert.Equal(options.Optimizer.LearningRate, Value(last, "disttrain_training_learning_rate"));
        Assert.Equal(0, Value(last, "disttrain_training_staleness"));
        Assert.True(Value(last, "disttrain_training_gradient_norm", "layer=\"0.weight\"") > 0);
        Assert.True(Value(last, "disttrain_training_weight_norm", "layer=\"2.bias\"") > 0);
        Assert.InRange(Value(last, "disttrain_training_update_ratio", "layer=\"0.weight\"")!.Value, 1e-7, 1);
        var accuracy = Value(last, "disttrain_training_test_accuracy")!.Value;
        Assert.InRange(accuracy, 0.5, 1.0);

        // Every metric the Grafana dashboard (deploy/grafana/dashboards/disttrain.json) queries is exported, but the cluster's
        // membership, which single-node mode does not export (tests/containers/run.sh runs those queries on a compose cluster).
        var dashboard = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "deploy", "disttrain.json"));
        var queried = Regex.Matches(dashboard, @"disttrain_[a-z_]+").Select(m => Regex.Replace(m.Value, "_(bucket|sum|count)$", ""))
            .Where(name => !name.StartsWith("disttrain_cluster_", StringComparison.Ordinal)).Distinct().ToList();
        Assert.True(queried.Count >= 15, $"only {queried.Count} metric names found in the dashboard");
        var exportedNames = Regex.Matches(last, @"^(disttrain_[a-z_]+?)(_bucket|_sum|_count)?[{ ]", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToHashSet();
        Assert.All(queried, name => Assert.True(exportedNames.Contains(name), $"the dashboard queries {name}, which /metrics does not export"));

        // Samples/s is exported once steps ran, finite and positive; how it is computed is pinned, without timing, by
        // Samples_per_second_is_the_samples_of_each_window_over_its_training_time below.
        Assert.All(scrapes, s => Assert.True(Value(s, "disttrain_training_samples_per_second") is > 0 and < double.PositiveInfinity,
            $"samples/s exported as {Value(s, "disttrain_training_samples_per_second")}"));
        Assert.Equal(10, result.Epochs.Count);
    }

    /// <summary>Passes everything on; at the end of each epoch in <paramref name="holdAfter"/> it signals and waits to be released.</summary>
    private sealed class GateObserver(ITrainingObserver next, int[] holdAfter) : ITrainingObserver
    {
        private readonly Dictionary<int, (TaskCompletionSource Reached, TaskCompletionSource Released)> _gates =
            holdAfter.ToDictionary(e => e, _ => (new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously), new TaskCompletionSource()));

        public Task Reached(int epoch) => _gates[epoch].Reached.Task;
        public void Release(int epoch) => _gates[epoch].Released.SetResult();
        public void EpochStarted(int epoch, int steps, int samples) => next.EpochStarted(epoch, steps, samples);
        public void EpochStepsChanged(int epoch, int steps) => next.EpochStepsChanged(epoch, steps);
        public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing) =>
            next.StepApplied(epoch, step, version, samples, meanLoss, learningRate, timing);
        public void EpochCompleted(EpochSummary summary)
        {
            next.EpochCompleted(summary);
            if (!_gates.TryGetValue(summary.Epoch, out var gate)) return;
            gate.Reached.SetResult();
            gate.Released.Task.Wait(TimeSpan.FromSeconds(120)); // blocks the coordinator: nothing trains while the test scrapes
        }
    }

    [Fact]
    public async Task Counters_include_what_happened_before_the_first_scrape()
    {
        using var endpoint = new Endpoint(TimeSpan.FromSeconds(30));
        var tags = DistTrainMetrics.Tags("first-scrape-probe");
        for (var i = 0; i < 7; i++) DistTrainMetrics.Handled(tags, System.Diagnostics.Stopwatch.GetTimestamp());
        Assert.Equal(7, Value(await endpoint.ScrapeAsync(), "disttrain_actor_messages_total", "role=\"first-scrape-probe\""));
    }

    /// <summary>
    /// Counters are Prometheus counters named <c>..._total</c>, the observable ones (read from a field) as well as those
    /// incremented through the meter; gauges stay gauges. prometheus-net's meter adapter alone exported every counter as a
    /// gauge without the suffix (<c># TYPE disttrain_actor_dead_letters gauge</c>, HELP ending "(ObservableCounter`1)").
    /// </summary>
    [Fact]
    public async Task Counters_are_exported_as_counters_named_total_and_gauges_as_gauges()
    {
        using var endpoint = new Endpoint(TimeSpan.FromSeconds(30));
        var tags = DistTrainMetrics.Tags("exposition-probe");
        DistTrainMetrics.Steps.Add(0, DistTrainMetrics.NodeTag); // a counter incremented through the meter is exported from its first measurement
        DistTrainMetrics.Set("epoch", DistTrainMetrics.Get("epoch")); // the gauges below are published once set
        DistTrainMetrics.Set("samples_per_second", DistTrainMetrics.Get("samples_per_second"));
        // A watched mailbox of this test's own, so the depth gauge is exported whether or not another test watches one.
        using var system = Akka.Actor.ActorSystem.Create("metrics-exposition", AkkaSettings.Logging("WARNING"));
        var probe = system.ActorOf(Akka.Actor.Props.Empty, "probe");
        DistTrainMetrics.WatchMailbox("exposition-probe", probe);
        try
        {
            await Exposition(endpoint, tags);
        }
        finally
        {
            DistTrainMetrics.UnwatchMailbox("exposition-probe", probe);
        }
    }

    private static async Task Exposition(Endpoint endpoint, System.Diagnostics.TagList tags)
    {
        var before = await endpoint.ScrapeAsync();
        for (var i = 0; i < 3; i++) DistTrainMetrics.RecordDeadLetter();
        for (var i = 0; i < 4; i++) DistTrainMetrics.Handled(tags, System.Diagnostics.Stopwatch.GetTimestamp());
        var after = await endpoint.ScrapeAsync();

        string[] counters =
        [
            "disttrain_actor_messages_total", "disttrain_actor_failures_total", "disttrain_actor_dead_letters_total",
            "disttrain_training_steps_total", "disttrain_training_samples_total", "disttrain_training_gradient_bytes_total",
            "disttrain_training_clipped_steps_total", "disttrain_training_workers_lost_total",
            "disttrain_training_parameter_server_takeovers_total", "disttrain_training_shard_loss_restarts_total", "disttrain_dataplane_bytes_total",
        ];
        foreach (var name in counters)
            Assert.Matches($@"(?m)^# TYPE {name} counter$", after);
        Assert.Matches(@"(?m)^# HELP disttrain_actor_dead_letters_total \(\{message\}\) Messages published as dead letters\.$", after);
        // Under TopK the clipped gradients are the workers' pushes, several a step: the help says so (it said "Steps whose gradient was clipped").
        Assert.Matches(@"(?m)^# HELP disttrain_training_clipped_steps_total \(\{gradient\}\) Gradients clipped by global norm \(Optimizer:GradientClipNorm\): " +
            @"a step's averaged gradient, clipped at the parameter server, or under Cluster:Compression TopK a worker's push, clipped on its worker \(so up to one per push, more than the steps\)\.$", after);
        foreach (var name in new[] { "disttrain_training_epoch", "disttrain_training_samples_per_second", "disttrain_actor_mailbox_depth" })
            Assert.Matches($@"(?m)^# TYPE {name} gauge$", after);
        Assert.Matches(@"(?m)^# TYPE disttrain_actor_processing_seconds histogram$", after);
        // No counter is left as a gauge under its old name, nor typed after the .NET instrument.
        Assert.DoesNotMatch(@"(?m)^disttrain_(actor_messages|actor_dead_letters|training_steps|training_samples|dataplane_bytes|training_workers_lost)[{ ]", after);
        Assert.DoesNotContain("Counter`1)", after);

        // The values are the running totals.
        Assert.Equal(3, Value(after, "disttrain_actor_dead_letters_total") - Value(before, "disttrain_actor_dead_letters_total"));
        Assert.Equal(4, Value(after, "disttrain_actor_messages_total", "role=\"exposition-probe\""));
        Assert.Matches($@"(?m)^disttrain_actor_messages_total\{{node=""{Regex.Escape(DistTrainMetrics.Node)}"",role=""exposition-probe""\}} 4$", after);
        // (Workers lost is process-wide, and other tests in this process lose workers: only its type is checked above.)

        // Every DistTrain series names its node, counters on trouble and training gauges included, so that one query over
        // all nodes' scrapes can tell them apart.
        var series = Regex.Matches(after, @"^(disttrain_\w+)(\{[^}]*\})? \S+$", RegexOptions.Multiline);
        Assert.True(series.Count > 20, $"only {series.Count} DistTrain series scraped");
        var unlabelled = series.Where(m => !m.Groups[2].Value.Contains("node=\"", StringComparison.Ordinal)).Select(m => m.Groups[1].Value).Distinct().ToList();
        Assert.True(unlabelled.Count == 0, $"series without a node label: {string.Join(", ", unlabelled)}");
    }

    /// <summary>
    /// A training gauge reports a value from its first one on: a worker node, which never sets them (its coordinator runs on
    /// the parameter-server node), exports none of them instead of zeros that read as "epoch 0, loss 0". Read here at the
    /// instrument (the exporter's registry is process-wide and remembers series other tests created).
    /// </summary>
    [Fact]
    public void A_training_gauge_reports_nothing_until_it_is_set()
    {
        var measured = new List<double>();
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == DistTrainMetrics.Meter.Name && instrument.Name == "training.epoch") l.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<double>((_, value, _, _) => measured.Add(value));
        listener.Start();
        var before = DistTrainMetrics.ForgetGauges();
        try
        {
            listener.RecordObservableInstruments();
            Assert.Empty(measured);
            DistTrainMetrics.Set("epoch", 3);
            listener.RecordObservableInstruments();
            Assert.Equal([3.0], measured);
            // A second run in the process (finetune --compare-scratch's from scratch) starts with none of the first's values.
            DistTrainMetrics.StartAnotherRun();
            measured.Clear();
            listener.RecordObservableInstruments();
            Assert.Empty(measured);
        }
        finally
        {
            DistTrainMetrics.RestoreGauges(before);
        }
    }

    /// <summary>
    /// Staleness is a whole number of weights versions: its histogram has a bucket at each small count (a gradient 3 versions
    /// old lands between le="2" and le="3"), not the seconds buckets of the timing histograms (10 µs doubling, where every
    /// staleness of 2 or more fell between 1.31 and 2.62 or above 5.24).
    /// </summary>
    [Fact]
    public async Task The_staleness_histogram_has_a_bucket_per_version_count()
    {
        using var endpoint = new Endpoint(TimeSpan.FromSeconds(30));
        double Bucket(string scrape, string bound) => Value(scrape, "disttrain_training_staleness_versions_bucket", $"le=\"{bound}\"")
            ?? throw new Xunit.Sdk.XunitException($"no bucket le=\"{bound}\" in\n{string.Join('\n', scrape.Split('\n').Where(l => l.Contains("staleness_versions")))}");
        DistTrainMetrics.Staleness.Record(0, DistTrainMetrics.NodeTag); // the family appears once something was recorded
        var before = await endpoint.ScrapeAsync();
        for (var i = 0; i < 5; i++) DistTrainMetrics.Staleness.Record(3, DistTrainMetrics.NodeTag);
        var after = await endpoint.ScrapeAsync();
        var bounds = Regex.Matches(after, @"^disttrain_training_staleness_versions_bucket\{[^}]*le=""([^""]+)""", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(["0", "1", "2", "3", "4", "5", "6", "7", "8", "16", "32", "64", "128", "256", "512", "1024", "+Inf"], bounds);
        // Other tests may record staleness at the same time: what this one added shows as at least five more in (2, 3].
        Assert.True((Bucket(after, "3") - Bucket(after, "2")) - (Bucket(before, "3") - Bucket(before, "2")) >= 5);
    }

    /// <summary>
    /// Single-node mode (<c>disttrain train</c>) is no cluster: it exported <c>disttrain_cluster_members{status="up"} 1</c>
    /// and <c>disttrain_cluster_unreachable 0</c>, which dashboards summing members over nodes counted as a member. A process
    /// that never ran a cluster node exports neither; one whose node has left reports 0 members in every status.
    /// </summary>
    [Fact]
    public void Single_node_mode_exports_no_cluster_membership_and_a_node_that_left_reports_no_members()
    {
        Assert.Empty(DistTrainMetrics.MembersOf(null, clusterWatched: false));
        Assert.Empty(DistTrainMetrics.UnreachableOf(null, clusterWatched: false));

        var live = DistTrainMetrics.MembersOf([Akka.Cluster.MemberStatus.Up, Akka.Cluster.MemberStatus.Up], clusterWatched: true).ToList();
        Assert.Equal(Enum.GetValues<Akka.Cluster.MemberStatus>().Length, live.Count);
        Assert.Equal(2, live.Sum(m => m.Value));
        Assert.Equal(1, Assert.Single(DistTrainMetrics.UnreachableOf(1, clusterWatched: true)).Value);

        var left = DistTrainMetrics.MembersOf(null, clusterWatched: true).ToList();
        Assert.Equal(Enum.GetValues<Akka.Cluster.MemberStatus>().Length, left.Count);
        Assert.All(left, m => Assert.Equal(0, m.Value));
        Assert.Equal(0, Assert.Single(DistTrainMetrics.UnreachableOf(null, clusterWatched: true)).Value);
    }

    /// <summary>
    /// Every member status is reported with its current count, 0 when no member has it: when the last joining member is
    /// up, joining drops to 0 instead of keeping its last value (3 nodes all up read joining 2; at the end up 1, joining 2,
    /// leaving 2, exiting 2).
    /// </summary>
    [Fact]
    public void Cluster_members_report_every_status_with_0_for_a_status_no_member_has()
    {
        static Dictionary<string, int> Counts(params Akka.Cluster.MemberStatus[] statuses) =>
            DistTrainMetrics.MemberCounts(statuses).ToDictionary(m => (string)m.Tags.ToArray().Single(t => t.Key == "status").Value!, m => m.Value);
        var all = Enum.GetValues<Akka.Cluster.MemberStatus>().Select(s => s.ToString().ToLowerInvariant()).ToHashSet();

        var starting = Counts(Akka.Cluster.MemberStatus.Joining, Akka.Cluster.MemberStatus.Joining, Akka.Cluster.MemberStatus.Up);
        Assert.Equal(all, starting.Keys.ToHashSet());
        Assert.Equal(2, starting["joining"]);
        Assert.Equal(1, starting["up"]);

        var training = Counts(Akka.Cluster.MemberStatus.Up, Akka.Cluster.MemberStatus.Up, Akka.Cluster.MemberStatus.Up);
        Assert.Equal(all, training.Keys.ToHashSet());
        Assert.Equal(3, training["up"]);
        Assert.Equal(0, training["joining"]);
        Assert.Equal(3, training.Values.Sum());

        var ending = Counts(Akka.Cluster.MemberStatus.Up, Akka.Cluster.MemberStatus.Exiting);
        Assert.Equal(new Dictionary<string, int> { ["up"] = 1, ["exiting"] = 1 }, ending.Where(kv => kv.Value > 0).ToDictionary());
        Assert.Equal(0, ending["leaving"]);

        var alone = Counts();
        Assert.Equal(all, alone.Keys.ToHashSet());
        Assert.All(alone.Values, n => Assert.Equal(0, n));
    }

    /// <summary>A clock the test moves by hand.</summary>
    private sealed class ManualClock : TimeProvider
    {
        private long _ticks = 1;
        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public override long GetTimestamp() => _ticks;
        public void Advance(double seconds) => _ticks += (long)Math.Round(seconds * TimeSpan.TicksPerSecond);
    }

    [Fact]
    public void Samples_per_second_is_the_samples_of_each_window_over_its_training_time()
    {
        var clock = new ManualClock();
        var observer = new MetricsObserver(NullTrainingObserver.Instance, clock);
        double Gauge() => DistTrainMetrics.Get("samples_per_second");
        var step = 0;
        void Start(int epoch, int steps, int samples)
        {
            step = 0;
            observer.EpochStarted(epoch, steps, samples);
        }
        void Step(double afterSeconds, int samples)
        {
            clock.Advance(afterSeconds);
            observer.StepApplied(1, step++, 1, samples, 0.5, 0.05, default);
        }
        DistTrainMetrics.Set("samples_per_second", -1);

        Start(1, 4, 224);
        Step(0.4, 64);
        Step(0.4, 64);
        Assert.Equal(-1, Gauge()); // the window is still open after 0.8 s
        Step(0.4, 64);
        Assert.Equal(192 / 1.2, Gauge(), 9); // closed at the first step 1 s or more after it opened
        Step(0.5, 32);
        Assert.Equal(32 / 0.5, Gauge(), 9); // the epoch's last step closes the window, before the evaluation that follows
        clock.Advance(3); // evaluation: not training time
        observer.EpochCompleted(new EpochSummary(1, 4, 0.5, 0.5, 0.8, 250, 224, 2.2, 3));
        Assert.Equal(32 / 0.5, Gauge(), 9);

        clock.Advance(10); // between epochs
        Start(2, 2, 100);
        Step(0.25, 50);
        Step(0.5, 50);
        Assert.Equal(100 / 0.75, Gauge(), 9); // an epoch shorter than a second is measured at its last step, from its start
    }

    /// <summary>
    /// Bound to a loopback name, the endpoint answers whichever of localhost and 127.0.0.1 the request's Host header
    /// names: .NET's HttpListener answered 404 to a Prometheus target written as 127.0.0.1 when it listened on localhost.
    /// </summary>
    [Theory]
    [InlineData("localhost")]
    [InlineData("127.0.0.1")]
    [InlineData("LocalHost")]
    public async Task A_loopback_endpoint_answers_requests_to_localhost_and_to_127_0_0_1(string hostname)
    {
        var port = FreePort();
        using var exporter = MetricsExporter.Start(hostname, port);
        Assert.True(exporter.IsServing);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        foreach (var host in new[] { "127.0.0.1", "localhost" })
        {
            using var response = await http.GetAsync($"http://{host}:{port}/metrics");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var text = await response.Content.ReadAsStringAsync();
            Assert.Matches(@"(?m)^# TYPE disttrain_\w+ ", text);
        }
        Assert.Equal(["localhost", "127.0.0.1"], MetricListener.Hosts(hostname));
    }

    [Fact]
    public void Another_host_name_is_listened_on_as_given()
    {
        Assert.Equal(["+"], MetricListener.Hosts("+"));
        Assert.Equal(["ps.example"], MetricListener.Hosts("ps.example"));
    }

    /// <summary>The start-up line says what the endpoint listens on: before, <c>+</c> printed as <c>http://localhost:PORT/metrics</c> alone.</summary>
    [Fact]
    public void The_start_up_line_says_every_interface_for_the_wildcard_hosts_and_the_host_otherwise()
    {
        Assert.Equal("http://localhost:9187/metrics (all interfaces)", DistTrain.Cli.MetricsSetup.Endpoint("+", 9187));
        Assert.Equal("http://localhost:9187/metrics (all interfaces)", DistTrain.Cli.MetricsSetup.Endpoint("*", 9187));
        Assert.Equal("http://localhost:9187/metrics", DistTrain.Cli.MetricsSetup.Endpoint("localhost", 9187));
        Assert.Equal("http://ps.example:9187/metrics", DistTrain.Cli.MetricsSetup.Endpoint("ps.example", 9187));
    }

    /// <summary>A Metrics:Hostname that is not a host name is named as the problem, not the port.</summary>
    [Fact]
    public void A_bad_metrics_host_name_is_refused_naming_it_not_the_port()
    {
        var problems = Assert.Throws<DistTrain.Core.Configuration.ConfigurationException>(() => DistTrain.Core.Configuration.TrainingOptionsLoader.Load(null,
            checkDataDirectory: false, environment: new Dictionary<string, string?> { ["DISTTRAIN_Metrics__Hostname"] = "bad host!", ["DISTTRAIN_Metrics__Port"] = "9100" }));
        Assert.Contains("Metrics:Hostname = 'bad host!' (from environment variable DISTTRAIN_Metrics__Hostname) is not a host name: use + for every interface, " +
            "localhost for this machine only, or a name or address of this machine.", problems.Message);

        // Given to the endpoint anyway (the C# API), the listener's refusal names the host as well.
        var refused = new HttpListenerException(50, "Only Uri prefixes with a valid hostname are supported.");
        Assert.Equal("Metrics:Hostname = 'bad host!' is not a host name (Only Uri prefixes with a valid hostname are supported.): set Metrics:Hostname to + for " +
            "every interface, localhost for this machine only, or a name or address of this machine.", DistTrain.Cli.MetricsSetup.CannotListen("bad host!", 9100, refused));
    }

    /// <summary>Metrics:Hostname 0.0.0.0: before, the listener's refusal was followed by an unhandled ArgumentException from Dns.</summary>
    [Fact]
    public void The_unspecified_address_is_refused_with_plus_as_the_fix()
    {
        var refused = new HttpListenerException(50, "The request is not supported.");
        foreach (var host in new[] { "0.0.0.0", "::", "[::]" })
            Assert.Equal($"Metrics:Hostname = '{host}' is the unspecified address, which names no interface (The request is not supported.): set " +
                "Metrics:Hostname to + for every interface, localhost for this machine only, or a name or address of this machine.",
                DistTrain.Cli.MetricsSetup.CannotListen(host, 9100, refused));
    }

    [Fact]
    public void A_taken_port_is_still_named_as_the_problem()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var e = Assert.Throws<HttpListenerException>(() => MetricsExporter.Start("localhost", port));
        var message = DistTrain.Cli.MetricsSetup.CannotListen("localhost", port, e);
        Assert.StartsWith($"Metrics:Port = {port}: cannot listen on localhost (", message);
        Assert.EndsWith("). Pick a free port or set Metrics:Port to 0.", message);
    }
}
