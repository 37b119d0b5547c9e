using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Configuration;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Security;
using DistTrain.Core.Configuration;

namespace DistTrain.Benchmarks;

/// <summary>
/// `transport` mode: moves 1 MB payloads over loopback between two endpoints in this process and prints
/// MB/s for Akka.Remote (ping-pong and pipelined with 8 in flight) and for DistTrain's TCP data plane
/// (ping-pong), so the choice in docs/architecture.md rests on a measurement on this machine. With a folder of
/// certificates made by deploy/certs/make-certs.sh (<c>transport CERT_DIR</c>) the data plane also runs inside
/// TLS 1.3 with the cluster's check, as cluster mode does, side by side with plain TCP (docs/benchmarks.md).
/// </summary>
internal static class TransportProbe
{
    private const int PayloadBytes = 1 << 20;

    private sealed class Echo : ReceiveActor
    {
        public Echo() => Receive<byte[]>(bytes => Sender.Tell(bytes));
    }

    private sealed class Pipeline : ReceiveActor
    {
        public Pipeline(IActorRef echo, int total, int window, TaskCompletionSource done)
        {
            var payload = new byte[PayloadBytes];
            var sent = 0;
            var received = 0;
            Receive<string>(_ => { for (; sent < window; sent++) echo.Tell(payload); });
            Receive<byte[]>(_ =>
            {
                if (++received == total) { done.TrySetResult(); return; }
                if (sent < total) { echo.Tell(payload); sent++; }
            });
        }
    }

    private static Config Remote(int port) => ConfigurationFactory.ParseString($$"""
        akka.actor.provider = remote
        akka.loglevel = WARNING
        akka.remote.dot-netty.tcp {
          hostname = 127.0.0.1
          port = {{port}}
          maximum-frame-size = 2MiB
          send-buffer-size = 4MiB
          receive-buffer-size = 4MiB
        }
        """);

    /// <param name="certificates">A make-certs.sh folder with ca.crt, node.crt and node.key; null for plain TCP only.</param>
    public static async Task RunAsync(string? certificates)
    {
        using var a = ActorSystem.Create("a", Remote(0));
        using var b = ActorSystem.Create("b", Remote(0));
        b.ActorOf(Props.Create(() => new Echo()), "echo");
        var address = ((ExtendedActorSystem)b).Provider.DefaultAddress;
        var echo = await a.ActorSelection(new RootActorPath(address) / "user" / "echo").ResolveOne(TimeSpan.FromSeconds(10));
        var payload = new byte[PayloadBytes];

        for (var i = 0; i < 20; i++) await echo.Ask<byte[]>(payload, TimeSpan.FromSeconds(10));
        const int rounds = 200;
        var clock = Stopwatch.StartNew();
        for (var i = 0; i < rounds; i++) await echo.Ask<byte[]>(payload, TimeSpan.FromSeconds(10));
        Report("Akka.Remote, ping-pong", 2.0 * rounds, clock.Elapsed);

        const int total = 400;
        var done = new TaskCompletionSource();
        var pipeline = a.ActorOf(Props.Create(() => new Pipeline(echo, total, 8, done)));
        clock.Restart();
        pipeline.Tell("go");
        await done.Task.WaitAsync(TimeSpan.FromMinutes(2));
        Report("Akka.Remote, pipelined (8 in flight)", 2.0 * total, clock.Elapsed);

        if (certificates is null)
        {
            DataPlanePingPong(null);
            return;
        }
        using var tls = ClusterCertificates.Load(new ClusterOptions
        {
            CertificateAuthorityFile = Path.Combine(certificates, "ca.crt"),
            CertificateFile = Path.Combine(certificates, "node.crt"),
            CertificateKeyFile = Path.Combine(certificates, "node.key"),
        });
        for (var run = 0; run < 3; run++) // alternating, as the machine is shared
        {
            DataPlanePingPong(null);
            DataPlanePingPong(tls);
        }
    }

    private static void DataPlanePingPong(ClusterCertificates? tls)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var floats = new float[PayloadBytes / sizeof(float)];
        const int rounds = 500;
        var server = Task.Run(() =>
        {
            using var socket = listener.AcceptSocket();
            TensorFrame.Tune(socket);
            using Stream stream = tls is null ? new NetworkStream(socket) : tls.AuthenticateAsServer(new NetworkStream(socket));
            var buffer = new float[floats.Length];
            for (var i = 0; i < rounds + 20; i++)
            {
                var header = TensorFrame.ReadHeader(stream, TensorFrame.WeightsType, floats.Length, "the probe's client");
                TensorFrame.ReadValues(stream, buffer.AsSpan(0, header.Count), "the probe's client");
                TensorFrame.Write(stream, header, buffer.AsSpan(0, header.Count));
            }
        });
        using var client = new Socket(SocketType.Stream, ProtocolType.Tcp);
        TensorFrame.Tune(client);
        client.Connect(IPAddress.Loopback, port);
        using Stream clientStream = tls is null ? new NetworkStream(client) : tls.AuthenticateAsClient(new NetworkStream(client), "localhost");
        var header = new TensorFrame.Header { Magic = TensorFrame.Magic, Version = TensorFrame.ProtocolVersion, Type = TensorFrame.WeightsType, Count = floats.Length };
        var clock = new Stopwatch();
        for (var i = 0; i < rounds + 20; i++)
        {
            if (i == 20) clock.Start();
            TensorFrame.Write(clientStream, header, floats);
            var reply = TensorFrame.ReadHeader(clientStream, TensorFrame.WeightsType, floats.Length, "the probe's server");
            TensorFrame.ReadValues(clientStream, floats.AsSpan(0, reply.Count), "the probe's server");
        }
        Report(clientStream is System.Net.Security.SslStream ssl ? $"DistTrain data plane ({ssl.NegotiatedCipherSuite})" : "DistTrain data plane (TCP), ping-pong",
            2.0 * rounds, clock.Elapsed);
        server.Wait();
    }

    /// <summary>
    /// `transport shm`: the main job's round trip through the shared-memory data plane, in one process: a gradient of the
    /// MLP's 235,146 floats goes into the region's gradient slots with its header on a loopback socket, the other thread
    /// copies it out and sends it back as weights through the weight slots, as a parameter server answers. Prints the
    /// median and quartiles of the round trip (µs) over <paramref name="rounds"/> after 50 warm-up rounds. With
    /// <paramref name="cold"/>, 64 MB are written before each round, as a step's compute does, so the copies start cold.
    /// </summary>
    public static void SharedMemoryPingPong(int rounds, bool cold)
    {
        const int count = 235_146; // configs/fashion-mnist-mlp.json's parameters
        const int warmup = 50;
        using var region = SharedMemoryRegion.Create(2, count * sizeof(float), 2, count * sizeof(float));
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var server = Task.Run(() =>
        {
            using var socket = listener.AcceptSocket();
            TensorFrame.Tune(socket);
            using var connection = new DataPlaneConnection(socket, new NetworkStream(socket), "the probe's worker");
            var buffer = new float[count];
            for (var i = 0; i < rounds + warmup; i++)
            {
                var header = TensorFrame.ReadHeader(connection.Stream, TensorFrame.GradientType, count, connection.Peer, sharedSlots: region.Gradients.Count);
                TensorFrame.ReadShared(region.Gradients, header.SharedSlot - 1, buffer, null, connection.Peer);
                var failure = TensorFrame.TryWrite(connection, header with { Type = TensorFrame.WeightsType, SharedSlot = 0 }, buffer, region.Weights);
                if (failure is not null) throw new IOException(failure);
            }
        });
        using var client = new Socket(SocketType.Stream, ProtocolType.Tcp);
        TensorFrame.Tune(client);
        client.Connect(IPAddress.Loopback, port);
        using var worker = new DataPlaneConnection(client, new NetworkStream(client), "the probe's parameter server");
        var gradient = Enumerable.Range(0, count).Select(i => (float)i).ToArray();
        var weights = new float[count];
        var header = new TensorFrame.Header { Magic = TensorFrame.Magic, Version = TensorFrame.ProtocolVersion, Type = TensorFrame.GradientType, Count = count };
        var times = new List<double>(rounds);
        // Between rounds the worker computes, which takes the tensors out of the caches: 64 MB of other memory is
        // written first, so each round's copies start cold, as in training.
        var evict = new byte[64 << 20];
        for (var i = 0; i < rounds + warmup; i++)
        {
            if (cold) evict.AsSpan().Fill((byte)i);
            var started = Stopwatch.GetTimestamp();
            if (TensorFrame.TryWrite(worker, header, gradient, region.Gradients) is { } failure) throw new IOException(failure);
            var reply = TensorFrame.ReadHeader(worker.Stream, TensorFrame.WeightsType, count, worker.Peer, sharedSlots: region.Weights.Count);
            TensorFrame.ReadShared(region.Weights, reply.SharedSlot - 1, weights, null, worker.Peer);
            if (i >= warmup) times.Add(Stopwatch.GetElapsedTime(started).TotalMicroseconds);
        }
        server.Wait();
        if (!weights.AsSpan().SequenceEqual(gradient)) throw new InvalidOperationException("the round trip changed the tensor");
        times.Sort();
        Console.WriteLine($"shared-memory round trip ({(cold ? "cold" : "warm")} caches), {count:N0} floats each way: median {times[times.Count / 2]:F0} us "
            + $"(quartiles {times[times.Count / 4]:F0}-{times[3 * times.Count / 4]:F0} us) over {rounds} rounds");
    }

    private static void Report(string path, double megabytes, TimeSpan elapsed) =>
        Console.WriteLine($"{path,-45} {megabytes / elapsed.TotalSeconds,8:N0} MB/s  ({megabytes:N0} x 1 MB in {elapsed.TotalSeconds:F2} s)");
}
