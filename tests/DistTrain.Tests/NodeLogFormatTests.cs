using System.Text;
using System.Text.RegularExpressions;
using Akka.Actor;
using Akka.Event;
using Akka.Hosting;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Security;
using DistTrain.Core.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace DistTrain.Tests;

/// <summary>
/// A cluster node's log lines on standard output carry Akka's standard-out prefix, level, UTC time, thread and source
/// (<c>[WARNING][11/30/2026 05:00:00.123Z][Thread 0012][source] text</c>), and an error its exception, while
/// <see cref="DepartedNodesLogFilter"/> still drops Akka.Remote's reports about nodes that left in order.
/// </summary>
public sealed partial class NodeLogFormatTests
{
    /// <summary>Akka's standard-out prefix: level, then the event's time as MM/dd/yyyy HH:mm:ss.fffK in UTC, then the thread.</summary>
    [GeneratedRegex(@"^\[(?<level>DEBUG|INFO|WARNING|ERROR)\]\[\d\d/\d\d/\d{4} \d\d:\d\d:\d\d\.\d{3}Z\]\[Thread \d{4,}\]\[(?<source>[^\]]*)\] ")]
    private static partial Regex AkkaPrefix();

    [Fact]
    public async Task A_node_built_like_ClusterNode_prints_each_log_line_with_its_level_time_and_source_and_an_errors_exception()
    {
        var marker = Guid.NewGuid().ToString("N");
        var output = await CaptureStandardOutputAsync(async () =>
        {
            using var host = await StartNodeAsync();
            var system = host.Services.GetRequiredService<ActorSystem>();
            var log = Logging.GetLogger(system, "node-log-format-test");
            log.Info("info {0}", marker);
            log.Warning("warning {0}", marker);
            log.Error(new InvalidOperationException("the cause " + marker), "error {0}", marker);
            await WaitUntilAsync(() => Printed().Contains("error " + marker), TimeSpan.FromSeconds(30));
            await host.StopAsync();
        });

        string Line(string text) => output.Split('\n').Select(l => l.TrimEnd('\r')).Single(l => l.EndsWith(text, StringComparison.Ordinal));
        foreach (var (level, text) in new[] { ("INFO", "info " + marker), ("WARNING", "warning " + marker), ("ERROR", "error " + marker) })
        {
            var match = AkkaPrefix().Match(Line(text));
            Assert.True(match.Success, $"no level/time prefix on a node's {level} line: '{Line(text)}'");
            Assert.Equal(level, match.Groups["level"].Value);
            Assert.StartsWith("node-log-format-test", match.Groups["source"].Value); // Akka adds the system: "(akka://disttrain)"
        }
        // The error's exception follows its line, so the stack trace is not lost either.
        Assert.Contains($"error {marker}{Environment.NewLine}Cause: System.InvalidOperationException: the cause {marker}", output);
        // Akka's own lines (Akka.Remote starting, the cluster node) carry the prefix too.
        Assert.Contains(output.Split('\n'), l => l.Contains("Starting remoting") && AkkaPrefix().IsMatch(l));
    }

    [Fact]
    public void The_departed_nodes_filter_drops_only_endpoint_reports_about_departed_nodes_and_keeps_the_prefix_of_the_rest()
    {
        var filter = new DepartedNodesLogFilter();
        var evaluator = new LogFilterBuilder().Add(filter).Build().CreateEvaluator();
        var departed = new Address("akka.tcp", "disttrain", "worker-1", 4053);
        var stayed = new Address("akka.tcp", "disttrain", "worker-2", 4053);
        Warning EndpointReport(Address peer) => new(
            $"akka://disttrain/system/endpointManager/reliableEndpointWriter-{Uri.EscapeDataString(peer.ToString())}-1", typeof(object), "Association failed");
        filter.Departed(departed);

        Assert.False(evaluator.ShouldTryKeepMessage(EndpointReport(departed), out _));
        Assert.True(evaluator.ShouldTryKeepMessage(EndpointReport(stayed), out var kept));
        Assert.Matches(AkkaPrefix(), kept);
        Assert.EndsWith("] Association failed", kept);
        var error = new Error(new InvalidOperationException("boom"), "akka://disttrain/user/agent", typeof(object), "failed");
        Assert.True(evaluator.ShouldTryKeepMessage(error, out var errorLine));
        Assert.StartsWith("[ERROR][", errorLine);
        Assert.Contains("Cause: System.InvalidOperationException: boom", errorLine);

        filter.Leaving();
        Assert.False(evaluator.ShouldTryKeepMessage(EndpointReport(stayed), out _));
        Assert.True(evaluator.ShouldTryKeepMessage(error, out _));
    }

    [Fact]
    public void The_filter_drops_the_closed_connection_reports_of_a_lost_node_and_keeps_its_other_association_failures()
    {
        // A node killed mid-job: Akka.Remote's endpoint writer fails with EndpointDisassociatedException (an ERROR with the
        // stack trace) and its supervisor warns with the same exception; other failures of the same endpoint stay.
        var evaluator = new LogFilterBuilder().Add(new DepartedNodesLogFilter()).Build().CreateEvaluator();
        const string writer = "akka://disttrain/system/endpointManager/reliableEndpointWriter-akka.tcp%3A%2F%2Fdisttrain%40worker-1%3A4053-3";
        var closed = (Exception)Activator.CreateInstance(typeof(Akka.Remote.RemoteSettings).Assembly.GetType("Akka.Remote.EndpointDisassociatedException")!,
            "Disassociated")!;
        Assert.False(evaluator.ShouldTryKeepMessage(new Error(closed, writer + "/endpointWriter", typeof(object), "Disassociated"), out _));
        Assert.False(evaluator.ShouldTryKeepMessage(new Warning(writer, typeof(object),
            $"Association with remote system akka.tcp://disttrain@worker-1:4053 has failed; address is now gated for 1000 ms. Reason is: [{closed}]"), out _));

        Assert.True(evaluator.ShouldTryKeepMessage(new Error(new InvalidOperationException("refused"), writer + "/endpointWriter", typeof(object), "Association failed"),
            out _));
        Assert.True(evaluator.ShouldTryKeepMessage(new Warning(writer, typeof(object), "Association with remote system failed: connection refused"), out _));
        // The same exception type outside Akka.Remote's endpoints is not Akka.Remote's report: kept.
        Assert.True(evaluator.ShouldTryKeepMessage(new Error(closed, "akka://disttrain/user/agent", typeof(object), "failed"), out _));
    }

    [Fact]
    public void A_dead_nodes_unreachable_address_warning_is_kept_once_until_it_connects_again_and_none_once_this_node_leaves()
    {
        // Akka.Remote repeats this warning every second or two for a killed node until it is downed (5 times in a 10 s run).
        var filter = new DepartedNodesLogFilter();
        var evaluator = new LogFilterBuilder().Add(filter).Build().CreateEvaluator();
        var dead = new Address("akka.tcp", "disttrain", "127.0.0.1", 37593);
        Warning Unreachable(Address peer, string reason = "Connection refused") => new("remoting (akka://disttrain)", typeof(object),
            $"Tried to associate with unreachable remote address [{peer}]. Address is now gated for 1000 ms, all messages to this address will be delivered to dead letters. Reason: [{reason}]\n   at Some.Stack.Trace()");
        Assert.True(evaluator.ShouldTryKeepMessage(Unreachable(dead), out var first));
        Assert.Contains($"Tried to associate with unreachable remote address [{dead}]", first);
        Assert.False(evaluator.ShouldTryKeepMessage(Unreachable(dead), out _));
        Assert.False(evaluator.ShouldTryKeepMessage(Unreachable(dead), out _));
        // Another reason for the same address is news: kept once too.
        Assert.True(evaluator.ShouldTryKeepMessage(Unreachable(dead, "The remote certificate is invalid"), out _));
        Assert.False(evaluator.ShouldTryKeepMessage(Unreachable(dead, "The remote certificate is invalid"), out _));
        var other = new Address("akka.tcp", "disttrain", "127.0.0.1", 37594);
        Assert.True(evaluator.ShouldTryKeepMessage(Unreachable(other), out _));
        filter.Associated(dead); // it came back: a new failure is news
        Assert.True(evaluator.ShouldTryKeepMessage(Unreachable(dead), out _));

        var marking = new Warning("akka.tcp://disttrain@127.0.0.1:52510/system/cluster/core/daemon", typeof(object),
            "Cluster Node [akka.tcp://disttrain@127.0.0.1:52510] - Marking node(s) as UNREACHABLE [Member(address = akka.tcp://disttrain@127.0.0.1:37593)]");
        Assert.True(evaluator.ShouldTryKeepMessage(marking, out _));
        filter.Leaving();
        Assert.False(evaluator.ShouldTryKeepMessage(marking, out _));
        Assert.False(evaluator.ShouldTryKeepMessage(Unreachable(new Address("akka.tcp", "disttrain", "127.0.0.1", 1)), out _));
    }

    /// <summary>
    /// A worker started with its parameter server (deploy/local/cluster.sh, docker compose) dials the seed before it listens:
    /// Akka.Remote's "Connection refused" warning for the seed was printed in 2 of 4 normal runs. Before this node joins it is
    /// one INFO line per seed; once it is up, or for an address that is no seed, or for another reason, it is the warning.
    /// </summary>
    [Fact]
    public void A_seed_that_refuses_connections_before_this_node_joins_is_one_info_line_and_a_warning_once_it_has_joined()
    {
        var filter = new DepartedNodesLogFilter();
        var evaluator = new LogFilterBuilder().Add(filter).Build().CreateEvaluator();
        var notes = new List<string>();
        const string seed = "akka.ssl.tcp://disttrain@127.0.0.1:20228";
        filter.NoteRefusedSeedsThrough([seed], notes.Add);
        Warning Unreachable(string peer, string reason) => new("remoting (akka://disttrain)", typeof(object),
            $"Tried to associate with unreachable remote address [{peer}]. Address is now gated for 1000 ms, all messages to this address will be " +
            $"delivered to dead letters. Reason: [{reason}] ");

        Assert.False(evaluator.ShouldTryKeepMessage(Unreachable(seed, "Connection refused ssl.tcp://disttrain@127.0.0.1:20228"), out _));
        Assert.False(evaluator.ShouldTryKeepMessage(Unreachable(seed, "Connection refused ssl.tcp://disttrain@127.0.0.1:20228"), out _));
        var note = Assert.Single(notes);
        Assert.Equal(DepartedNodesLogFilter.JoiningNote(seed), note);
        Assert.StartsWith($"The seed node {seed} does not accept connections yet (connection refused", note);
        // Another cause at the seed (a refused certificate), or an address that is no seed, is the warning even while joining.
        Assert.True(evaluator.ShouldTryKeepMessage(Unreachable(seed, "The remote certificate is invalid"), out _));
        Assert.True(evaluator.ShouldTryKeepMessage(Unreachable("akka.ssl.tcp://disttrain@127.0.0.1:41000", "Connection refused"), out _));

        // Up in the cluster: the seed (the parameter server) refusing connections mid-run is the warning, as for any node.
        filter.Joined();
        Assert.True(evaluator.ShouldTryKeepMessage(Unreachable(seed, "Connection refused ssl.tcp://disttrain@127.0.0.1:20228"), out var kept));
        Assert.Contains($"Tried to associate with unreachable remote address [{seed}]", kept);
        Assert.Single(notes);
    }

    /// <summary>
    /// Akka.Remote's unreachable-address warning appends its cause's <c>ToString()</c>, stack trace included, for a socket or
    /// TLS failure. The watcher prints it in its place with the exception lines only; a node that left in order gets none.
    /// </summary>
    [Fact]
    public void An_unreachable_address_warning_is_printed_without_its_stack_trace_and_not_at_all_for_a_node_that_left_in_order()
    {
        var filter = new DepartedNodesLogFilter();
        var evaluator = new LogFilterBuilder().Add(filter).Build().CreateEvaluator();
        var printed = new List<string>();
        filter.LogShortenedThrough(printed.Add);
        var peer = new Address("akka.ssl.tcp", "disttrain", "127.0.0.1", 42293);
        var warning = $"Tried to associate with unreachable remote address [{peer}]. Address is now gated for 1000 ms, all messages to this " +
            $"address will be delivered to dead letters. Reason: [Association failed with {peer}] Caused by: [System.AggregateException: " +
            "One or more errors occurred. (Authentication failed because the remote party has closed the transport stream.)\n" +
            " ---> System.Security.Authentication.AuthenticationException: Authentication failed because the remote party has closed the transport stream.\n" +
            "   at System.Net.Security.SslStream.ReceiveHandshakeFrameAsync[TIOAdapter](CancellationToken cancellationToken)\n" +
            "   at DotNetty.Handlers.Tls.TlsHandler.Handshake()\n" +
            "   --- End of inner exception stack trace ---\n" +
            "   at Akka.Remote.Transport.DotNetty.DotNettyTransport.AssociateInternal(Address remoteAddress)]";

        Assert.False(evaluator.ShouldTryKeepMessage(new Warning("remoting (akka://disttrain)", typeof(object), warning), out _));
        var line = Assert.Single(printed);
        Assert.DoesNotContain("\n", line);
        Assert.DoesNotContain("   at ", line);
        Assert.DoesNotContain("End of inner exception", line);
        Assert.StartsWith($"Tried to associate with unreachable remote address [{peer}].", line);
        Assert.EndsWith("(Authentication failed because the remote party has closed the transport stream.) ---> " +
            "System.Security.Authentication.AuthenticationException: Authentication failed because the remote party has closed the transport stream.]", line);
        // The watcher's copy, logged from its own actor, is printed (with the prefix), and counted as the original was.
        Assert.True(evaluator.ShouldTryKeepMessage(new Warning("akka://disttrain/user/departed-nodes", typeof(object), line), out var copy));
        Assert.Matches(AkkaPrefix(), copy);
        Assert.False(evaluator.ShouldTryKeepMessage(new Warning("remoting (akka://disttrain)", typeof(object), warning), out _));
        Assert.Single(printed);

        // A worker that left in order (Ctrl-C to it alone): the others' attempts to reach its address are not news.
        var left = new Address("akka.ssl.tcp", "disttrain", "127.0.0.1", 46591);
        filter.Departed(left);
        Assert.False(evaluator.ShouldTryKeepMessage(new Warning("remoting (akka://disttrain)", typeof(object),
            $"Tried to associate with unreachable remote address [{left}]. Address is now gated for 1000 ms, all messages to this address " +
            $"will be delivered to dead letters. Reason: [Connection refused ssl.tcp://disttrain@127.0.0.1:46591] "), out _));
        Assert.Single(printed);

        // A node restarted at that address (docker compose start, a standby brought back) connects again: its failures are news again.
        filter.Associated(left);
        Assert.True(evaluator.ShouldTryKeepMessage(new Warning("remoting (akka://disttrain)", typeof(object),
            $"Tried to associate with unreachable remote address [{left}]. Address is now gated for 1000 ms, all messages to this address " +
            $"will be delivered to dead letters. Reason: [Connection refused ssl.tcp://disttrain@127.0.0.1:46591] "), out _));
    }

    [Fact]
    public async Task A_connection_that_closes_unexpectedly_gets_one_info_line_in_place_of_Akka_Remotes_stack_traces()
    {
        var peer = new Address("akka.tcp", "disttrain", "worker-" + Guid.NewGuid().ToString("N")[..8], 4053);
        var output = await CaptureStandardOutputAsync(async () =>
        {
            using var host = await StartNodeAsync();
            var system = host.Services.GetRequiredService<ActorSystem>();
            var self = Akka.Cluster.Cluster.Get(system).SelfAddress;
            // What Akka.Remote publishes when the peer's TCP connection closes (a node killed, or a dropped connection).
            // The watcher subscribes once it has started: publish until it reports.
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (!Printed().Contains($"The connection to {peer} closed") && DateTime.UtcNow < deadline)
            {
                system.EventStream.Publish(new Akka.Remote.DisassociatedEvent(self, peer, inbound: true));
                await Task.Delay(100);
            }
            // A dead node's address closes again on every reconnection attempt: reported once until it connects again.
            system.EventStream.Publish(new Akka.Remote.DisassociatedEvent(self, peer, inbound: false));
            system.EventStream.Publish(new Akka.Remote.AssociatedEvent(self, peer, inbound: false));
            system.EventStream.Publish(new Akka.Remote.DisassociatedEvent(self, peer, inbound: false));
            await WaitUntilAsync(() => Printed().Contains($"The connection to {peer} closed (this node"), TimeSpan.FromSeconds(30));
            await host.StopAsync();
        });
        var lines = output.Split('\n').Where(l => l.Contains($"The connection to {peer} closed", StringComparison.Ordinal)).Select(l => l.TrimEnd('\r')).ToList();
        Assert.Equal(2, lines.Count);
        Assert.Equal("INFO", AkkaPrefix().Match(lines[0]).Groups["level"].Value);
        Assert.EndsWith($"The connection to {peer} closed (it had connected to this node); messages sent to that node in the next 1 s are dropped.", lines[0]);
        Assert.EndsWith($"The connection to {peer} closed (this node had connected to it); messages sent to that node in the next 1 s are dropped.", lines[1]);

        // A node that left in order, or any node once this one is leaving: its connection's closing is expected.
        var filter = new DepartedNodesLogFilter();
        Assert.False(filter.IsExpectedClose(peer));
        filter.Departed(peer);
        Assert.True(filter.IsExpectedClose(peer));
        var other = new Address("akka.tcp", "disttrain", "worker-2", 4053);
        Assert.False(filter.IsExpectedClose(other));
        filter.Leaving();
        Assert.True(filter.IsExpectedClose(other));
    }

    /// <summary>A worker node on a free loopback port with no seed nodes, built by <see cref="ClusterNode.WithDistTrainNode"/> as the CLI builds it.</summary>
    private static async Task<IHost> StartNodeAsync()
    {
        var options = new TrainingOptions { Cluster = { Hostname = "127.0.0.1", PublicHostname = "127.0.0.1", Port = 0, Tls = false } };
        var security = new ClusterSecurity(new JobIdentity("log-format", Encoding.UTF8.GetBytes(new string('s', 64))), null);
        var host = new HostBuilder()
            .ConfigureServices(services => services.AddAkka("disttrain", (akka, _) => akka.WithDistTrainNode(options, security, NodeRoles.Worker, computeThreads: 1)))
            .Build();
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(60));
        return host;
    }

    private static readonly StringBuilder Captured = new();

    private static string Printed()
    {
        lock (Captured) return Captured.ToString();
    }

    /// <summary>
    /// Runs <paramref name="body"/> with standard output copied into a buffer (still written to the real standard output),
    /// and returns what was printed. The test assembly runs its test classes one at a time (xunit.runner.json).
    /// </summary>
    private static async Task<string> CaptureStandardOutputAsync(Func<Task> body)
    {
        var original = Console.Out;
        lock (Captured) Captured.Clear();
        Console.SetOut(TextWriter.Synchronized(new TeeWriter(original)));
        try
        {
            await body();
        }
        finally
        {
            Console.SetOut(original);
        }
        return Printed();
    }

    private static async Task WaitUntilAsync(Func<bool> condition, TimeSpan limit)
    {
        var deadline = DateTime.UtcNow + limit;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"not printed within {limit.TotalSeconds} s:\n{Printed()}");
            await Task.Delay(50);
        }
    }

    private sealed class TeeWriter(TextWriter inner) : TextWriter
    {
        public override Encoding Encoding => inner.Encoding;

        public override void Write(char value)
        {
            lock (Captured) Captured.Append(value);
            inner.Write(value);
        }

        public override void Write(string? value)
        {
            lock (Captured) Captured.Append(value);
            inner.Write(value);
        }

        public override void WriteLine(string? value) => Write(value + Environment.NewLine);
    }
}
