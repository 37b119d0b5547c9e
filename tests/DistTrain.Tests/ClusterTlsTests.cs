using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using Akka.Actor;
using Akka.Hosting;
using Akka.Remote.Hosting;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Security;
using DistTrain.Core.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace DistTrain.Tests;

/// <summary>
/// Mutual TLS pinned to the cluster's CA: the certificate check itself, and two Akka.NET 1.5.74 actor systems in this
/// process, the cluster's node configured as production configures it (<see cref="ClusterNode.Remoting"/>) and a peer
/// that tries to associate with a certificate from another CA, an expired one, or none at all (Akka.Remote up to 1.5.51
/// never asked for one: CVE-2025-61778). Each is refused; a node of the cluster's CA is let in.
/// </summary>
public sealed class ClusterTlsTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-tls-").FullName;
    private readonly TestCertificates _cluster;
    private readonly TestCertificates _otherCa;
    private readonly List<IHost> _hosts = [];

    public ClusterTlsTests()
    {
        _cluster = new TestCertificates(_directory, "cluster-ca");
        _otherCa = new TestCertificates(_directory, "other-ca");
    }

    public void Dispose()
    {
        foreach (var host in _hosts)
        {
            host.StopAsync().Wait(TimeSpan.FromSeconds(10));
            host.Dispose();
        }
        Directory.Delete(_directory, recursive: true);
    }

    private static X509Certificate2 LoadNode((string Certificate, string Key) files) => X509Certificate2.CreateFromPemFile(files.Certificate, files.Key);

    private ClusterCertificates Expired() =>
        new(LoadNode(_cluster.Node("expired", DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddDays(-1))), _cluster.Authority);

    [Fact]
    public void The_check_accepts_only_certificates_of_the_clusters_CA_within_their_validity()
    {
        using var node = _cluster.Load("ps");
        Assert.Null(node.Refusal(LoadNode(_cluster.Node("worker"))));
        Assert.Contains("is not signed by this cluster's CA 'CN=cluster-ca'", node.Refusal(LoadNode(_otherCa.Node("rogue"))));
        Assert.Contains("is outside its validity period", node.Refusal(Expired().Certificate));
        Assert.Contains("is outside its validity period",
            node.Refusal(LoadNode(_cluster.Node("future", DateTimeOffset.UtcNow.AddDays(1), DateTimeOffset.UtcNow.AddDays(30)))));
        Assert.Contains("presented no certificate", node.Refusal(null));
        // The CA itself is not a node certificate of the cluster: a chain of one (self-signed) is refused too.
        Assert.NotNull(node.Refusal(_otherCa.Authority));
    }

    [Fact]
    public void A_node_whose_own_certificate_would_be_refused_stops_at_start_up_naming_the_key()
    {
        var options = _cluster.Options("ps");
        var (certificate, key) = _cluster.Node("old", DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddDays(-1));
        options.CertificateFile = certificate;
        options.CertificateKeyFile = key;
        var expired = Assert.Throws<ConfigurationException>(() => ClusterCertificates.Load(options));
        Assert.Contains($"Cluster:CertificateFile = '{certificate}' would be refused by the other nodes: its certificate 'CN=old' is outside its validity period", expired.Message);

        options = _cluster.Options("ps");
        options.CertificateAuthorityFile = _otherCa.AuthorityFile;
        Assert.Contains("is not signed by this cluster's CA 'CN=other-ca'", Assert.Throws<ConfigurationException>(() => ClusterCertificates.Load(options)).Message);

        options = _cluster.Options("ps");
        options.CertificateKeyFile = "";
        Assert.Contains("Cluster:CertificateKeyFile is not set", Assert.Throws<ConfigurationException>(() => ClusterCertificates.Load(options)).Message);
        options.CertificateKeyFile = Path.Combine(_directory, "missing.key");
        Assert.Contains("does not exist. Make a CA and node certificates with deploy/certs/make-certs.sh",
            Assert.Throws<ConfigurationException>(() => ClusterCertificates.Load(options)).Message);
        // Docker's empty folder in place of a mounted file that did not exist: named as such, not "does not exist".
        options.CertificateKeyFile = Directory.CreateDirectory(Path.Combine(_directory, "ps-folder.key")).FullName;
        Assert.Contains($"Cluster:CertificateKeyFile = '{options.CertificateKeyFile}' is a folder, not a file. Docker makes an empty folder in place of a mounted file",
            Assert.Throws<ConfigurationException>(() => ClusterCertificates.Load(options)).Message);
    }

    /// <summary>An actor system on a free loopback port with an actor "echo", remoting configured by <paramref name="remoting"/>.</summary>
    private async Task<ActorSystem> StartSystemAsync(RemoteOptions remoting)
    {
        var started = new TaskCompletionSource<ActorSystem>(TaskCreationOptions.RunContinuationsAsynchronously);
        var builder = new HostBuilder().ConfigureServices(services => services.AddAkka("disttrain", (akka, _) => akka
            .AddHocon(AkkaSettings.Logging("WARNING"), HoconAddMode.Prepend)
            .WithRemoting(remoting)
            .WithActors((system, _) =>
            {
                system.ActorOf(Props.Create(() => new EchoActor()), "echo");
                started.TrySetResult(system);
            })));
        var host = builder.Build();
        _hosts.Add(host);
        await host.StartAsync().WaitAsync(TimeSpan.FromSeconds(60));
        return await started.Task.WithTestTimeout();
    }

    private sealed class EchoActor : ReceiveActor
    {
        public EchoActor() => ReceiveAny(message => Sender.Tell(message));
    }

    private static RemoteOptions Loopback(ClusterSecurity security) =>
        ClusterNode.Remoting(new ClusterOptions { Hostname = "127.0.0.1", PublicHostname = "127.0.0.1", Port = 0 }, security);

    /// <summary>A peer that trusts any server and presents <paramref name="certificate"/> as its client certificate (or none).</summary>
    private static RemoteOptions Rogue(X509Certificate2 certificate, bool presentsCertificate) => new()
    {
        HostName = "127.0.0.1", PublicHostName = "127.0.0.1", Port = 0, EnableSsl = true,
        Ssl = new SslOptions
        {
            X509Certificate = certificate, RequireMutualAuthentication = presentsCertificate, SuppressValidation = true,
            CustomValidator = (_, _, _, _, _) => true,
        },
    };

    private ClusterSecurity Node(ClusterCertificates certificates) =>
        new(JobIdentity.Load(new ClusterOptions { SecretFile = _cluster.SecretFile }), certificates);

    /// <summary>True when <paramref name="client"/> reaches the echo actor of <paramref name="server"/> within a few seconds.</summary>
    /// <summary>
    /// True when <paramref name="client"/> gets an answer from the server's echo actor within <paramref name="seconds"/>
    /// (default 30, a hang guard: a refused peer never answers, so a refusal costs that long; a loaded 2-core machine
    /// took more than 4 s to associate a node that is let in).
    /// </summary>
    private static async Task<bool> ReachesAsync(ActorSystem client, ActorSystem server, double seconds = 30)
    {
        var address = ((ExtendedActorSystem)server).Provider.DefaultAddress;
        try
        {
            var identity = await client.ActorSelection($"{address}/user/echo").Ask<ActorIdentity>(new Identify(1), TimeSpan.FromSeconds(seconds));
            return identity.Subject is not null;
        }
        catch (AskTimeoutException)
        {
            return false;
        }
    }

    [Fact]
    public async Task Akka_Remote_refuses_a_node_with_a_certificate_from_another_CA_an_expired_one_or_none_and_lets_in_the_clusters_own()
    {
        var server = await StartSystemAsync(Loopback(Node(_cluster.Load("ps"))));
        Assert.Equal("akka.ssl.tcp", ((ExtendedActorSystem)server).Provider.DefaultAddress.Protocol);

        var member = await StartSystemAsync(Loopback(Node(_cluster.Load("worker"))));
        Assert.True(await ReachesAsync(member, server), "a node with a certificate of the cluster's CA could not associate");

        // The rogue peers accept any server certificate, so it is the cluster's node that refuses them.
        var otherCa = await StartSystemAsync(Rogue(LoadNode(_otherCa.Node("rogue")), presentsCertificate: true));
        Assert.False(await ReachesAsync(otherCa, server, seconds: 10), "a certificate from another CA was let in");

        var expired = await StartSystemAsync(Rogue(Expired().Certificate, presentsCertificate: true));
        Assert.False(await ReachesAsync(expired, server, seconds: 10), "an expired certificate was let in");

        // No client certificate at all: TLS on, but the peer does not do mutual authentication.
        var anonymous = await StartSystemAsync(Rogue(LoadNode(_otherCa.Node("anonymous")), presentsCertificate: false));
        Assert.False(await ReachesAsync(anonymous, server, seconds: 10), "a node without a client certificate was let in");

        // The same rogue settings with the cluster's own certificate do get in: the refusals above are the certificates'.
        var control = await StartSystemAsync(Rogue(LoadNode(_cluster.Node("control")), presentsCertificate: true));
        Assert.True(await ReachesAsync(control, server), "the rogue settings fail even with a certificate of the cluster's CA");

        // The cluster's node still works after the refusals.
        Assert.True(await ReachesAsync(member, server));
    }

    [Fact]
    public async Task The_data_plane_refuses_a_TLS_client_without_a_certificate_with_another_CAs_or_an_expired_one_before_reading_a_hello()
    {
        using var server = _cluster.Load("ps");
        using var listener = DataPlaneListener.Start(0, server);
        var received = new Received();
        using var system = ActorSystem.Create("data-plane-test", AkkaSettings.Logging("WARNING"));
        listener.Attach(system.ActorOf(Props.Create(() => new ForwardActor(received))));

        async Task<string> RefusalOf(X509Certificate2? clientCertificate)
        {
            received.Next = new TaskCompletionSource<object>(TaskCreationOptions.RunContinuationsAsynchronously);
            using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(IPAddress.Loopback, listener.Port);
            await using var ssl = new SslStream(new NetworkStream(socket), false, (_, _, _, _) => true);
            try
            {
                await ssl.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
                {
                    TargetHost = "localhost",
                    ClientCertificates = clientCertificate is null ? null : new X509CertificateCollection { clientCertificate },
                });
                new DataPlaneHello(0, 10, DataPlaneHello.NewToken()).Write(ssl);
                // Whatever the handshake said on this side, the server closes without sending a byte.
                Assert.Equal(0, await ssl.ReadAsync(new byte[16]).AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
            }
            catch (Exception e) when (e is AuthenticationException or IOException)
            {
            }
            var message = await received.Next.Task.WaitAsync(TimeSpan.FromSeconds(15));
            return Assert.IsType<DataPlaneListener.Rejected>(message).Reason;
        }

        Assert.Contains("presented no certificate", await RefusalOf(null));
        Assert.Contains("not signed by this cluster's CA", await RefusalOf(LoadNode(_otherCa.Node("rogue"))));
        Assert.Contains("outside its validity period", await RefusalOf(Expired().Certificate));

        // A node of the cluster's CA gets through TLS, and its hello reaches the job host (which checks the token).
        received.Next = new TaskCompletionSource<object>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var worker = _cluster.Load("worker");
        using var connection = DataPlaneConnection.Connect("127.0.0.1", listener.Port, worker, new DataPlaneHello(3, 10, DataPlaneHello.NewToken()));
        var accepted = await received.Next.Task.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(3, Assert.IsType<DataPlaneListener.Accepted>(accepted).Hello.WorkerIndex);
        // Both ends describe the connection for their logs as TLS with the other end's certificate.
        using var serverSide = ((DataPlaneListener.Accepted)accepted).Connection;
        Assert.Matches(@"^TLS Tls1[23], TLS_\w+, peer 'CN=worker'$", serverSide.Security);
        Assert.Matches(@"^TLS Tls1[23], TLS_\w+, peer 'CN=ps'$", connection.Security);
    }

    /// <summary>The next message the listener sends to its owner.</summary>
    private sealed class Received
    {
        public volatile TaskCompletionSource<object> Next = new();
    }

    private sealed class ForwardActor : ReceiveActor
    {
        public ForwardActor(Received received) => ReceiveAny(message => received.Next.TrySetResult(message));
    }
}
