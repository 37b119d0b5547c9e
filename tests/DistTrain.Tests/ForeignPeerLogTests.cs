using System.Net;
using System.Net.Sockets;
using Akka.Event;
using DistTrain.Cluster.Hosting;

namespace DistTrain.Tests;

/// <summary>
/// A seed address where another program listens (an HTTP server, a plain TCP server that sends something else) made a
/// worker node log Akka.Remote's errors at every attempt, with the peer's first bytes as hex dumps ("not an SSL/TLS record:
/// 485454...", "Adjusted frame length exceeds 4194304", an undecodable PDU with its stack trace). Now it logs one warning
/// naming the peer and saying it is not a DistTrain node, with what to give in Cluster:SeedNodes.
/// </summary>
public class ForeignPeerLogTests
{
    /// <summary>
    /// Runs <paramref name="body"/> with the port of a loopback listener that answers every connection with an HTTP
    /// response, then stops the listener.
    /// </summary>
    private static async Task WithHttpSeedAsync(Func<int, Task> body)
    {
        using var server = new TcpListener(IPAddress.Loopback, 0);
        server.Start();
        var port = ((IPEndPoint)server.LocalEndpoint).Port;
        using var stop = new CancellationTokenSource();
        var serving = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                using var client = await server.AcceptTcpClientAsync(stop.Token);
                var stream = client.GetStream();
                await stream.WriteAsync("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"u8.ToArray(), stop.Token);
                await Task.Delay(200, stop.Token);
            }
        });
        try
        {
            await body(port);
        }
        finally
        {
            await stop.CancelAsync();
            server.Stop();
            await Task.WhenAny(serving, Task.Delay(5000));
        }
    }

    /// <summary>A worker whose seed is a loopback listener that answers every connection with an HTTP response.</summary>
    [Fact]
    public Task A_seed_where_an_http_server_listens_is_named_once_as_not_a_DistTrain_node_without_hex_dumps() => WithHttpSeedAsync(async port =>
    {
        using var process = DistTrainProcess.WithOneSeed("worker", port, joinTimeoutSeconds: 12);
        await process.AssertExitAsync(1, TimeSpan.FromSeconds(120));

        var line = $"The peer at 127.0.0.1:{port} is not a DistTrain node: it does not speak Akka.Remote's protocol (what it sent is not an Akka.Remote frame). " +
                   "If it is in Cluster:SeedNodes, give there the host and Cluster:Port of a parameter-server node (not its Cluster:DataPort or Metrics:Port, " +
                   "nor another program's port), and the same Cluster:Tls on every node.";
        Assert.Single(process.Output.Split('\n'), l => l.Contains(line, StringComparison.Ordinal));
        Assert.DoesNotContain("TooLongFrameException", process.Output);
        Assert.DoesNotContain("Error caught channel", process.Output);
        Assert.Contains("No parameter server accepted this worker within 12 s.", process.Output);
        // The last line alone says why: it names the peer (with TLS off it did not).
        Assert.Contains($"No parameter server accepted this worker within 12 s. The peer at 127.0.0.1:{port} (what it sent is not an Akka.Remote frame) " +
            "did not answer as a DistTrain node", process.Output);
    });

    /// <summary>
    /// A standby parameter-server node whose seed is where an HTTP server listens: its join-timeout line named the seed and
    /// the fix for a standby, but not what answered there, which only the warning before it said (a worker's line names it).
    /// It now names the peer as a worker's does.
    /// </summary>
    [Fact]
    public Task A_standby_parameter_servers_join_timeout_names_a_seed_that_is_not_a_DistTrain_node() => WithHttpSeedAsync(async port =>
    {
        var ports = TestPorts.Free(2);
        using var process = DistTrainProcess.WithOneSeed("parameter-server", port, joinTimeoutSeconds: 12,
            new Dictionary<string, string> { ["DISTTRAIN_Cluster__Port"] = $"{ports[0]}", ["DISTTRAIN_Cluster__DataPort"] = $"{ports[1]}" });
        await process.AssertExitAsync(1, TimeSpan.FromSeconds(120));

        var last = process.Output.Split('\n').Last(l => l.Contains("could not join the cluster within 12 s", StringComparison.Ordinal));
        Assert.Contains($"no node at its seed akka.tcp://disttrain@127.0.0.1:{port} (Cluster:SeedNodes) let it in. The peer at 127.0.0.1:{port} " +
            "(what it sent is not an Akka.Remote frame) did not answer as a DistTrain node: give Cluster:SeedNodes the host and Cluster:Port of a " +
            "parameter-server node. Its own address, ", last);
    });

    /// <summary>
    /// The output of a worker node, with TLS on and <paramref name="joinTimeoutSeconds"/>, whose seed is a loopback listener
    /// that accepts every connection, holds it open and never sends a byte; and the listener's port.
    /// </summary>
    private static async Task<(string Output, int Port)> WorkerWithASilentSeedAsync(int joinTimeoutSeconds)
    {
        var directory = Directory.CreateTempSubdirectory("disttrain-silent-seed-").FullName;
        using var server = new TcpListener(IPAddress.Loopback, 0);
        server.Start();
        var port = ((IPEndPoint)server.LocalEndpoint).Port;
        using var stop = new CancellationTokenSource();
        var accepted = new System.Collections.Concurrent.ConcurrentQueue<TcpClient>(); // the serving task may still add while the test ends
        var serving = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested) accepted.Enqueue(await server.AcceptTcpClientAsync(stop.Token)); // held open, silent
        });
        try
        {
            var environment = new TestCertificates(directory, "silent-seed-ca").Environment("worker");
            environment["DISTTRAIN_Cluster__Hostname"] = "127.0.0.1";
            environment["DISTTRAIN_Cluster__Port"] = "0";
            environment["DISTTRAIN_Cluster__JoinTimeoutSeconds"] = $"{joinTimeoutSeconds}";
            environment["DISTTRAIN_Cluster__SeedNodes__0"] = $"akka.tcp://disttrain@127.0.0.1:{port}";
            using var process = new DistTrainProcess(["node", "--role", "worker", "--config", "configs/fashion-mnist-mlp.json", "--data", TestData.SubsetDirectory],
                environment);
            await process.AssertExitAsync(1, TimeSpan.FromSeconds(120));
            return (process.Output, port);
        }
        finally
        {
            await stop.CancelAsync();
            server.Stop();
            await Task.WhenAny(serving, Task.Delay(5000));
            foreach (var client in accepted) client.Dispose();
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>
    /// A seed that accepts the TCP connection and never sends a byte (another program, or a node with Cluster:Tls off), dialled
    /// with TLS on: Akka.Remote's "No response from remote for outbound association" ERROR at every attempt, and at the stop
    /// DotNetty's "TLS handshake failed ... Channel is closed" and "Unable to REMOVE channel" for each connection. Now one
    /// warning names the seed, and the final line names it too (with TLS off it named the foreign peer only in the warning).
    /// The join timeout (22 s) is past Akka.Remote's 15 s handshake timeout, so that its attempts time out while the node still
    /// joins, also on a loaded machine: with 20 s, at load averages of 10 to 25 on 2 cores, the warning came 15.2 to 15.6 s
    /// after the node's remoting started and the time-out at 21 s.
    /// </summary>
    [Fact]
    public async Task A_seed_that_accepts_connections_but_stays_silent_with_tls_on_is_named_once_and_in_the_final_line()
    {
        var (output, port) = await WorkerWithASilentSeedAsync(22);

        Assert.Single(output.Split('\n'), l => l.Contains(ForeignPeerLogFilter.SilentWarning($"127.0.0.1:{port}", tls: true), StringComparison.Ordinal));
        Assert.Contains($"The peer at 127.0.0.1:{port} accepts connections but does not complete a TLS handshake", output);
        Assert.DoesNotContain("TLS handshake failed", output);
        Assert.DoesNotContain("Unable to REMOVE channel", output);
        Assert.DoesNotContain(ForeignPeerLogFilter.NoResponse, output);
        var last = output.Split('\n').Last(l => l.Contains("No parameter server accepted this worker within 22 s.", StringComparison.Ordinal));
        Assert.Contains($"The peer at 127.0.0.1:{port} (it accepts connections but does not complete a TLS handshake: not a DistTrain node, or " +
            "Cluster:Tls is off there) did not answer as a DistTrain node: give Cluster:SeedNodes the host and Cluster:Port of a parameter-server node.", last);
        // Named once: the socket check at the time-out leaves out a peer the warning named.
        Assert.DoesNotContain("accepted this node's connection", last);
    }

    /// <summary>
    /// The same seed with Cluster:JoinTimeoutSeconds under Akka.Remote's 15 s handshake timeout: the node stopped before
    /// Akka.Remote gave up on the seed, and its last line said only "No parameter server accepted this worker within 8 s.
    /// Check Cluster:SeedNodes, ...". It now says that the seed accepted the connection and never answered, which the node
    /// sees from its own established connection while it is in no cluster.
    /// </summary>
    [Fact]
    public async Task A_silent_seed_is_named_in_the_final_line_when_the_join_times_out_before_akkas_handshake_does()
    {
        var (output, port) = await WorkerWithASilentSeedAsync(8);

        var last = output.Split('\n').Last(l => l.Contains("No parameter server accepted this worker within 8 s.", StringComparison.Ordinal));
        Assert.Contains($"No parameter server accepted this worker within 8 s. Its seed akka.ssl.tcp://disttrain@127.0.0.1:{port} (Cluster:SeedNodes) " +
            "accepted this node's connection and did not let it join in 8 s: it is not a DistTrain node, or one whose Cluster:Tls differs, or frozen, " +
            "or a DistTrain node that is itself in no cluster (a worker node, or a parameter server that has not joined). Give Cluster:SeedNodes the host and " +
            "Cluster:Port of a running parameter-server node. Check Cluster:SeedNodes", last);
    }

    /// <summary>
    /// The socket check behind <see cref="A_silent_seed_is_named_in_the_final_line_when_the_join_times_out_before_akkas_handshake_does"/>:
    /// a seed this process holds an established connection to is named, one it does not is not; the kernel's table lines
    /// are read for state ESTABLISHED and this process's sockets only, IPv4 and IPv4-mapped IPv6 alike.
    /// </summary>
    [Fact]
    public void The_seeds_this_process_holds_an_established_connection_to_are_found_in_the_socket_table()
    {
        using var server = new TcpListener(IPAddress.Loopback, 0);
        server.Start();
        var port = ((IPEndPoint)server.LocalEndpoint).Port;
        using var idle = new TcpListener(IPAddress.Loopback, 0);
        idle.Start();
        var idlePort = ((IPEndPoint)idle.LocalEndpoint).Port;
        using var client = new TcpClient(AddressFamily.InterNetworkV6) { Client = { DualMode = true } };
        client.Connect(IPAddress.Loopback.MapToIPv6(), port);
        using var peer = server.AcceptTcpClient();

        Assert.Equal([$"akka.ssl.tcp://disttrain@127.0.0.1:{port}"], SilentSeeds.Connected(
            [$"akka.ssl.tcp://disttrain@127.0.0.1:{port}", $"akka.tcp://disttrain@127.0.0.1:{idlePort}", "not an address"]));

        HashSet<string> ours = ["4242"];
        // 127.0.0.1:4053 in /proc/net/tcp (host-order words, hexadecimal port), established (01), one of this process's sockets.
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 4053),
            SilentSeeds.Established("   3: 0100007F:A2F0 0100007F:0FD5 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 20 4 30 10 -1", ours));
        // ::ffff:10.0.0.5:4053 in /proc/net/tcp6.
        Assert.Equal(new IPEndPoint(IPAddress.Parse("10.0.0.5"), 4053),
            SilentSeeds.Established("   0: 0000000000000000FFFF00000100007F:A2F0 0000000000000000FFFF00000500000A:0FD5 01 00000000:00000000 00:00000000 00000000     0        0 4242 1", ours));
        // Another state (02, SYN_SENT: not accepted yet), or another process's socket.
        Assert.Null(SilentSeeds.Established("   3: 0100007F:A2F0 0100007F:0FD5 02 00000000:00000000 00:00000000 00000000     0        0 4242 1", ours));
        Assert.Null(SilentSeeds.Established("   3: 0100007F:A2F0 0100007F:0FD5 01 00000000:00000000 00:00000000 00000000     0        0 9999 1", ours));
    }

    /// <summary>
    /// The join-timeout message names a silent seed after the unresolved seeds and the foreign peers, in a worker's and a
    /// parameter-server node's alike, and leaves out a seed the warning already named.
    /// </summary>
    [Fact]
    public void A_silent_seed_is_named_last_in_both_join_timeout_messages_unless_already_named()
    {
        const string silent = "Its seed akka.ssl.tcp://disttrain@127.0.0.1:4100 (Cluster:SeedNodes) accepted this node's connection and did not let it " +
            "join in 8 s: it is not a DistTrain node, or one whose Cluster:Tls differs, or frozen, or a DistTrain node that is itself in no cluster (a worker " +
            "node, or a parameter server that has not joined). Give Cluster:SeedNodes the host and Cluster:Port of a running parameter-server node. ";
        Assert.Equal("No parameter server accepted this worker within 8 s. " + silent + "Check Cluster:SeedNodes, that the parameter server node runs, " +
            "and that Cluster:Tls is the same on every node.",
            DistTrain.Cluster.Actors.WorkerAgent.NotAccepted(8, [], [], ["akka.ssl.tcp://disttrain@127.0.0.1:4100"]));
        Assert.Contains("(Cluster:SeedNodes) let it in. " + silent + "Its own address, akka.ssl.tcp://disttrain@127.0.0.1:4101, is not the first seed",
            ClusterNode.NotJoined(8, ["akka.ssl.tcp://disttrain@127.0.0.1:4100"], "akka.ssl.tcp://disttrain@127.0.0.1:4101", 4101, [], [],
                ["akka.ssl.tcp://disttrain@127.0.0.1:4100"]));
        // Named by the warning (Akka.Remote's handshake timed out first): once, as a foreign peer.
        Assert.Equal(DistTrain.Cluster.Actors.WorkerAgent.NotAccepted(30, [], ["127.0.0.1:4100 (it accepts connections but does not complete a TLS handshake)"]),
            DistTrain.Cluster.Actors.WorkerAgent.NotAccepted(30, [], ["127.0.0.1:4100 (it accepts connections but does not complete a TLS handshake)"],
                ["akka.ssl.tcp://disttrain@127.0.0.1:4100"]));
    }

    /// <summary>DotNetty's warning, at a node's stop, for a connection on <paramref name="channel"/> still in its handshake.</summary>
    private static Warning RemoveChannelWarning(string channel) => new("TcpClientHandler (akka://disttrain)", typeof(object),
        $"Unable to REMOVE channel {channel} from connection group. May not shut down cleanly.");

    /// <summary>DotNetty's error for a TLS handshake on <paramref name="channel"/> whose connection closed before the peer sent anything.</summary>
    private static Error ChannelClosedError(string channel) => new(new IOException("Channel is closed"), "TcpClientHandler (akka://disttrain)",
        typeof(object), $"TLS handshake failed on channel {channel}");

    [Fact]
    public void A_silent_peers_reports_are_one_warning_and_its_channel_warnings_are_dropped_after_it_and_other_tls_failures_are_kept()
    {
        var filter = new ForeignPeerLogFilter();
        var logged = new List<string>();
        filter.LogThrough(logged.Add);
        const string protocol = "akka://disttrain/system/transports/akkaprotocolmanager.ssl.tcp.0/akkaProtocol-ssl.tcp%3A%2F%2Fdisttrain%40127.0.0.1%3A42991-1";
        const string channel = "[[::ffff:127.0.0.1]:34854->[::ffff:127.0.0.1]:42991](Id=6d095a4c)";
        // A REMOVE warning about a peer not (yet) reported is dropped too (it may come before the peer's other lines).
        Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(RemoveChannelWarning(channel)));

        Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(new Error(null, protocol, typeof(object),
            "No response from remote for outbound association. Associate timed out after [15000 ms].")));
        Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(new Error(null, protocol.Replace("-1", "-2"), typeof(object),
            "No response from remote for outbound association. Associate timed out after [15000 ms].")));
        Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(new Warning("akka://disttrain/user/departed-nodes", typeof(object),
            "Tried to associate with unreachable remote address [akka.ssl.tcp://disttrain@127.0.0.1:42991]. Address is now gated for 1000 ms. Reason: " +
            "[Association failed with akka.ssl.tcp://disttrain@127.0.0.1:42991] Caused by: [System.TimeoutException: No response from remote for outbound association. " +
            "Associate timed out after [15000 ms].]")));
        Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(ChannelClosedError(channel)));
        Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(RemoveChannelWarning(channel)));
        Assert.Equal([ForeignPeerLogFilter.SilentWarning("127.0.0.1:42991", tls: true)], logged);
        Assert.StartsWith("The peer at 127.0.0.1:42991 accepts connections but does not complete a TLS handshake (it sent nothing in 15 s): it is not a " +
            "DistTrain node, or Cluster:Tls is off there", logged[0]);
        Assert.Equal(["127.0.0.1:42991 (it accepts connections but does not complete a TLS handshake: not a DistTrain node, or Cluster:Tls is off there)"],
            filter.Named);

        // A TLS node that refuses this node's certificate fails the handshake with another cause: kept.
        Assert.Equal(LogFilterDecision.NoDecision, filter.ShouldKeepMessage(new Error(
            new AggregateException(new System.Security.Authentication.AuthenticationException("The remote certificate was rejected")),
            "TcpClientHandler (akka://disttrain)", typeof(object), "TLS handshake failed on channel [[::ffff:127.0.0.1]:1->[::ffff:127.0.0.1]:31745](Id=1)")));
        Assert.Single(logged);
    }

    /// <summary>
    /// Junk connections each come from a port of their own: the first <see cref="ForeignPeerLogFilter.MaxReportedPeers"/> peers
    /// are warned about one by one, then one line says that further ones are not, and no more are kept for the join timeout's
    /// message, but for a peer at one of the node's own seeds. Before, every connection added a warning and an entry.
    /// </summary>
    [Fact]
    public void Peers_beyond_the_cap_are_not_reported_one_by_one_and_not_kept()
    {
        var filter = new ForeignPeerLogFilter();
        var logged = new List<string>();
        filter.LogThrough(logged.Add);
        for (var port = 40000; port < 40000 + ForeignPeerLogFilter.MaxReportedPeers + 20; port++)
        {
            var channel = $"[[::ffff:127.0.0.1]:4053->[::ffff:10.0.0.9]:{port}](Id=6d09{port})";
            Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(ChannelClosedError(channel)));
            Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(ChannelClosedError(channel))); // the same peer again: nothing new
        }
        Assert.Equal(ForeignPeerLogFilter.MaxReportedPeers + 1, logged.Count);
        Assert.StartsWith("The peer at ", logged[0]);
        Assert.Equal(ForeignPeerLogFilter.TooManyPeers, logged[^1]);
        Assert.Equal(ForeignPeerLogFilter.MaxReportedPeers, filter.Named.Count);

        // A seed of the node's own is still reported when the cap is full, and named for the join timeout's message.
        var seeded = new ForeignPeerLogFilter(["akka.tcp://disttrain@10.0.0.5:4053", "not an address"]);
        var seededLogged = new List<string>();
        seeded.LogThrough(seededLogged.Add);
        for (var port = 40000; port < 40000 + ForeignPeerLogFilter.MaxReportedPeers + 1; port++)
            seeded.ShouldKeepMessage(ChannelClosedError($"[[::ffff:127.0.0.1]:4053->[::ffff:10.0.0.9]:{port}](Id=7{port})"));
        Assert.Equal(ForeignPeerLogFilter.TooManyPeers, seededLogged[^1]);
        Assert.Equal(LogFilterDecision.Drop, seeded.ShouldKeepMessage(ChannelClosedError("[[::ffff:127.0.0.1]:50000->[::ffff:10.0.0.5]:4053](Id=5eed)")));
        Assert.StartsWith("The peer at 10.0.0.5:4053 ", seededLogged[^1]);
        Assert.Contains(seeded.Named, named => named.StartsWith("10.0.0.5:4053 (", StringComparison.Ordinal));
        Assert.Equal(ForeignPeerLogFilter.MaxReportedPeers + 1, seeded.Named.Count);
    }

    /// <summary>
    /// A node that stops before Akka.Remote's 15 s handshake timeout (Cluster:JoinTimeoutSeconds 8) learns of a silent peer only
    /// from DotNetty's "TLS handshake failed ... Channel is closed" at the stop: its warning said "it sent nothing in 15 s",
    /// false after 8 s, and the connection's "Unable to REMOVE channel", when it came first, was kept. The warning now states
    /// the time only as Akka.Remote's timeout measured it, and the REMOVE line is dropped in either order.
    /// </summary>
    [Fact]
    public void A_silent_peer_seen_only_at_the_stop_is_warned_about_without_a_time_and_its_earlier_channel_warning_is_dropped()
    {
        var filter = new ForeignPeerLogFilter();
        var logged = new List<string>();
        filter.LogThrough(logged.Add);
        const string channel = "[[::ffff:127.0.0.1]:43534->[::ffff:127.0.0.1]:44095](Id=42fb057d)";

        Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(RemoveChannelWarning(channel)));
        Assert.Empty(logged);
        Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(ChannelClosedError(channel)));

        Assert.Equal(["The peer at 127.0.0.1:44095 accepts connections but does not complete a TLS handshake (it sent nothing before the connection " +
            "closed): it is not a DistTrain node, or Cluster:Tls is off there, or it is frozen. If it is in Cluster:SeedNodes, give there the host and " +
            "Cluster:Port of a parameter-server node (not another program's port), and the same Cluster:Tls on every node."], logged);

        // Akka.Remote's handshake timeout states its time, which the warning repeats (8 s here, as with akka.remote.handshake-timeout = 8s).
        var timed = new ForeignPeerLogFilter();
        var timedLogged = new List<string>();
        timed.LogThrough(timedLogged.Add);
        Assert.Equal(LogFilterDecision.Drop, timed.ShouldKeepMessage(new Error(null,
            "akka://disttrain/system/transports/akkaprotocolmanager.ssl.tcp.0/akkaProtocol-ssl.tcp%3A%2F%2Fdisttrain%40127.0.0.1%3A44095-1", typeof(object),
            "No response from remote for outbound association. Associate timed out after [8000 ms].")));
        Assert.Equal([ForeignPeerLogFilter.SilentWarning("127.0.0.1:44095", tls: true, seconds: 8)], timedLogged);
        Assert.Contains("(it sent nothing in 8 s)", timedLogged[0]);
        Assert.Equal(15, ForeignPeerLogFilter.TimedOutSeconds("Caused by: [System.TimeoutException: No response from remote for outbound association. " +
            "Associate timed out after [15000 ms].]"));
        // Akka.Remote's other form, for a connection made whose peer never answered Akka's handshake (plain TCP, or TLS done).
        Assert.Equal(15, ForeignPeerLogFilter.TimedOutSeconds("No response from remote for outbound association. Handshake timed out after [15000] ms"));
        var plain = new ForeignPeerLogFilter();
        var plainLogged = new List<string>();
        plain.LogThrough(plainLogged.Add);
        Assert.Equal(LogFilterDecision.Drop, plain.ShouldKeepMessage(new Error(null,
            "akka://disttrain/system/transports/akkaprotocolmanager.tcp.0/akkaProtocol-tcp%3A%2F%2Fdisttrain%40127.0.0.1%3A44096-1", typeof(object),
            "No response from remote for outbound association. Handshake timed out after [15000] ms")));
        Assert.Equal([ForeignPeerLogFilter.SilentWarning("127.0.0.1:44096", tls: false, seconds: 15)], plainLogged);
        Assert.Null(ForeignPeerLogFilter.TimedOutSeconds("TLS handshake failed on channel " + channel));
    }

    /// <summary>
    /// The same at the process level: a worker whose join times out after 8 s, before Akka.Remote's handshake timeout, with a
    /// silent seed. Its warning at the stop claimed 15 s of silence and was sometimes preceded by "Unable to REMOVE channel".
    /// </summary>
    [Fact]
    public async Task A_worker_stopping_before_akkas_handshake_timeout_claims_no_15_s_of_silence_and_logs_no_channel_warning()
    {
        var (output, port) = await WorkerWithASilentSeedAsync(8);

        Assert.DoesNotContain("sent nothing in 15 s", output);
        Assert.DoesNotContain("Unable to REMOVE channel", output);
        // The warning comes at the stop if DotNetty reports the closed handshake before the logger stops; then it states no time.
        Assert.All(output.Split('\n').Where(l => l.Contains($"The peer at 127.0.0.1:{port} accepts connections", StringComparison.Ordinal)),
            l => Assert.Contains(ForeignPeerLogFilter.SilentWarning($"127.0.0.1:{port}", tls: true, seconds: null), l, StringComparison.Ordinal));
    }

    /// <summary>
    /// With TLS off, a seed where an HTTP server listens was named in the warning only; the join timeout's last line said
    /// "Check Cluster:SeedNodes" without it. Now that line names it, with what it sent.
    /// </summary>
    [Fact]
    public void The_join_timeout_line_names_the_peers_found_not_to_be_DistTrain_nodes()
    {
        var filter = new ForeignPeerLogFilter();
        filter.LogThrough(_ => { });
        filter.ShouldKeepMessage(new Error(new DotNetty.Codecs.TooLongFrameException("Adjusted frame length exceeds 4194304"),
            "TcpClientHandler (akka://disttrain)", typeof(object), "Error caught channel [[::ffff:127.0.0.1]:55698->[::ffff:127.0.0.1]:25341](Id=099b1691)"));
        Assert.Equal("No parameter server accepted this worker within 12 s. The peer at 127.0.0.1:25341 (what it sent is not an Akka.Remote frame) did not " +
            "answer as a DistTrain node: give Cluster:SeedNodes the host and Cluster:Port of a parameter-server node. Check Cluster:SeedNodes, that the " +
            "parameter server node runs, and that Cluster:Tls is the same on every node.",
            DistTrain.Cluster.Actors.WorkerAgent.AfterSeedLookup(accepted: false, round: 1, currentRound: 1, 12, [], filter.Named));
        // No peer warned about: the line is as before.
        Assert.Equal(DistTrain.Cluster.Actors.WorkerAgent.NotAccepted(12, []),
            DistTrain.Cluster.Actors.WorkerAgent.AfterSeedLookup(accepted: false, round: 1, currentRound: 1, 12, [], new ForeignPeerLogFilter().Named));
        // A parameter-server node that could not join (a standby) names them in the same words, after the seeds that do not resolve.
        SeedHosts.Unresolved[] gone = [new("akka.tcp://disttrain@gone:4053", "gone", "Name or service not known")];
        Assert.Contains("(Cluster:SeedNodes) let it in. Its seed akka.tcp://disttrain@gone:4053 (Cluster:SeedNodes) does not resolve on this machine ('gone': " +
            "Name or service not known): give the parameter server's address, or a host name this machine resolves. The peer at 127.0.0.1:25341 (what it " +
            "sent is not an Akka.Remote frame) did not answer as a DistTrain node: give Cluster:SeedNodes the host and Cluster:Port of a parameter-server " +
            "node. Its own address, akka.tcp://disttrain@10.0.0.7:4053, is not the first seed",
            ClusterNode.NotJoined(12, ["akka.tcp://disttrain@gone:4053", "akka.tcp://disttrain@127.0.0.1:25341"], "akka.tcp://disttrain@10.0.0.7:4053", 4053,
                gone, filter.Named));
        Assert.Equal(ClusterNode.NotJoined(12, ["akka.tcp://disttrain@gone:4053"], "akka.tcp://disttrain@10.0.0.7:4053", 4053, gone),
            ClusterNode.NotJoined(12, ["akka.tcp://disttrain@gone:4053"], "akka.tcp://disttrain@10.0.0.7:4053", 4053, gone, new ForeignPeerLogFilter().Named));
    }

    /// <summary>Akka.Remote's PDU decoding failure (an internal type of Akka.Remote).</summary>
    private static Exception PduCodecException(string message, Exception inner) =>
        (Exception)Activator.CreateInstance(typeof(Akka.Remote.Transport.AkkaProtocolException).Assembly.GetType("Akka.Remote.Transport.PduCodecException", throwOnError: true)!,
            System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance, null, [message, inner], null)!;

    [Fact]
    public void Each_peer_is_reported_once_and_other_errors_are_kept()
    {
        var filter = new ForeignPeerLogFilter();
        var logged = new List<string>();
        var notTls = new DotNetty.Handlers.Tls.NotSslRecordException("not an SSL/TLS record: 485454502f312e31");
        Error Channel(Exception cause, int port) =>
            new(cause, "TcpClientHandler (akka://disttrain)", typeof(object), $"Error caught channel [[::ffff:127.0.0.1]:55698->[::ffff:127.0.0.1]:{port}](Id=099b1691)");

        // No actor system to log through yet: kept as Akka.Remote wrote it.
        Assert.Equal(LogFilterDecision.NoDecision, filter.ShouldKeepMessage(Channel(notTls, 25341)));
        filter.LogThrough(logged.Add);

        Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(Channel(notTls, 25341)));
        Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(Channel(new InvalidOperationException("wrapped", notTls), 25341)));
        Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(new Warning("remoting (akka://disttrain)", typeof(object),
            "Tried to associate with unreachable remote address [akka.ssl.tcp://disttrain@127.0.0.1:25341]. Address is now gated for 1000 ms. Reason: " +
            "[Association failed] Caused by: [DotNetty.Handlers.Tls.NotSslRecordException: not an SSL/TLS record: 4854]")));
        Assert.Equal(["The peer at 127.0.0.1:25341 is not a DistTrain node: it does not speak Akka.Remote's protocol (what it sent is not TLS). If it is " +
            "in Cluster:SeedNodes, give there the host and Cluster:Port of a parameter-server node (not its Cluster:DataPort or Metrics:Port, nor another " +
            "program's port), and the same Cluster:Tls on every node."], logged);

        // Another peer, named by Akka.Remote's protocol actor (URL-encoded), is reported once too.
        Assert.Equal(LogFilterDecision.Drop, filter.ShouldKeepMessage(new Error(
            new Akka.Remote.Transport.AkkaProtocolException("Error while decoding incoming Akka PDU of length 8",
                PduCodecException("Decoding PDU failed", new InvalidDataException("bad tag"))),
            "akka://disttrain/system/transports/akkaprotocolmanager.tcp.0/akkaProtocol-tcp%3A%2F%2Fdisttrain%40ps.example%3A4053-2", typeof(object),
            "Error while decoding incoming Akka PDU of length 8")));
        Assert.Equal(2, logged.Count);
        Assert.StartsWith("The peer at ps.example:4053 is not a DistTrain node: it does not speak Akka.Remote's protocol (what it sent is not an Akka.Remote message).", logged[1]);

        // Other failures are not a foreign peer's: kept, nothing logged.
        Assert.Equal(LogFilterDecision.NoDecision, filter.ShouldKeepMessage(Channel(new IOException("Channel is closed"), 25341)));
        Assert.Equal(LogFilterDecision.NoDecision, filter.ShouldKeepMessage(new Warning("remoting (akka://disttrain)", typeof(object),
            "Tried to associate with unreachable remote address [akka.tcp://disttrain@127.0.0.1:4053]. Reason: [Association failed] Caused by: [Connection refused]")));
        Assert.Equal(2, logged.Count);
    }
}
