using System.Collections.Concurrent;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Akka.Event;
using DistTrain.Core.Configuration;

namespace DistTrain.Cluster.Security;

/// <summary>
/// A node's TLS identity in cluster mode: its certificate and key, and the cluster's own CA, the only issuer it trusts.
/// Both Akka.Remote and the data plane use it for mutual TLS: each side presents its certificate and checks the
/// other's with <see cref="Refusal"/>, a chain built against that CA alone (<see cref="X509ChainTrustMode.CustomRootTrust"/>),
/// so a certificate from another CA, an expired one, or none at all is refused. Host names are not checked: nodes
/// reach each other by container name or IP, and the CA is what decides membership (docs/security.md).
/// </summary>
public sealed class ClusterCertificates : IDisposable
{
    private readonly ConcurrentDictionary<string, byte> _logged = new();

    /// <summary>Creates the identity from a node certificate with its private key and the cluster's CA certificate.</summary>
    /// <param name="certificate">This node's certificate; must have its private key.</param>
    /// <param name="authority">The cluster's CA certificate.</param>
    public ClusterCertificates(X509Certificate2 certificate, X509Certificate2 authority)
    {
        Certificate = certificate;
        Authority = authority;
    }

    /// <summary>This node's certificate, with its private key.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>The cluster's CA certificate.</summary>
    public X509Certificate2 Authority { get; }

    /// <summary>
    /// Loads Cluster:CertificateFile, Cluster:CertificateKeyFile and Cluster:CertificateAuthorityFile (PEM) and checks
    /// that the node's own certificate passes <see cref="Refusal"/>, so a wrong or expired certificate stops the node at
    /// start-up instead of failing every connection later.
    /// </summary>
    /// <exception cref="ConfigurationException">A file is not set, missing or not PEM, or the certificate does not pass the CA's check.</exception>
    public static ClusterCertificates Load(ClusterOptions options)
    {
        const string fix = "Make a CA and node certificates with deploy/certs/make-certs.sh, or set Cluster:Tls to false on every node for plain TCP.";
        foreach (var (key, value) in new[] { ("Cluster:CertificateFile", options.CertificateFile), ("Cluster:CertificateKeyFile", options.CertificateKeyFile),
                     ("Cluster:CertificateAuthorityFile", options.CertificateAuthorityFile) })
        {
            if (string.IsNullOrWhiteSpace(value))
                throw Problem($"{key} is not set: with Cluster:Tls = true every node needs its certificate, its key and the cluster's CA certificate. {fix}");
            if (FileAccessHint.FolderInsteadOfFile(key, value) is { } folder)
                throw Problem(folder);
            if (!File.Exists(value))
                throw Problem($"{key} = '{value}' does not exist. {fix}");
        }
        X509Certificate2 authority, certificate;
        try
        {
            authority = X509CertificateLoader.LoadCertificateFromFile(options.CertificateAuthorityFile);
        }
        catch (UnauthorizedAccessException e)
        {
            throw Problem($"Cluster:CertificateAuthorityFile = '{options.CertificateAuthorityFile}' cannot be read: {e.Message}" +
                          FileAccessHint.For(options.CertificateAuthorityFile, e));
        }
        catch (CryptographicException e)
        {
            throw Problem($"Cluster:CertificateAuthorityFile = '{options.CertificateAuthorityFile}' is not a PEM or DER certificate: {e.Message} {fix}");
        }
        try
        {
            certificate = X509Certificate2.CreateFromPemFile(options.CertificateFile, options.CertificateKeyFile);
        }
        catch (UnauthorizedAccessException e)
        {
            var denied = new[] { options.CertificateKeyFile, options.CertificateFile }.FirstOrDefault(path => !Readable(path)) ?? options.CertificateKeyFile;
            throw Problem($"{(denied == options.CertificateFile ? "Cluster:CertificateFile" : "Cluster:CertificateKeyFile")} = '{denied}' cannot be read: " +
                          $"{e.Message}{FileAccessHint.For(denied, e)}");
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            throw Problem($"Cluster:CertificateFile = '{options.CertificateFile}' with Cluster:CertificateKeyFile = '{options.CertificateKeyFile}' " +
                          $"is not a PEM certificate and its unencrypted private key: {e.Message} {fix}");
        }
        var certificates = new ClusterCertificates(certificate, authority);
        if (certificates.Refusal(certificate) is { } refusal)
            throw Problem($"Cluster:CertificateFile = '{options.CertificateFile}' would be refused by the other nodes: {refusal}. {fix}");
        return certificates;
    }

    /// <summary>
    /// Why a peer's certificate is refused, or null when it is accepted: the chain must build to <see cref="Authority"/>
    /// and nothing else, and every certificate in it must be within its validity period.
    /// </summary>
    public string? Refusal(X509Certificate? peer)
    {
        if (peer is null) return "it presented no certificate (mutual TLS requires one signed by the cluster's CA)";
        var certificate = peer as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(peer.GetRawCertData());
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(Authority);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.DisableCertificateDownloads = true;
        var built = chain.Build(certificate);
        var subject = certificate.Subject;
        if (built && chain.ChainElements.Count > 1 && chain.ChainElements[^1].Certificate.RawDataMemory.Span.SequenceEqual(Authority.RawDataMemory.Span))
            return null;
        var flags = chain.ChainStatus.Aggregate(X509ChainStatusFlags.NoError, (all, status) => all | status.Status);
        if (flags.HasFlag(X509ChainStatusFlags.NotTimeValid))
            return $"its certificate '{subject}' is outside its validity period ({certificate.NotBefore:u} to {certificate.NotAfter:u})";
        if (flags.HasFlag(X509ChainStatusFlags.UntrustedRoot) || flags.HasFlag(X509ChainStatusFlags.PartialChain) || built)
            return $"its certificate '{subject}' (issuer '{certificate.Issuer}') is not signed by this cluster's CA '{Authority.Subject}'";
        return $"its certificate '{subject}' does not verify: {string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation.Trim()))}";
    }

    /// <summary>
    /// The validation callback for Akka.Remote's DotNetty transport (both directions): accepts exactly what
    /// <see cref="Refusal"/> accepts, and logs each refusal once per peer host and reason.
    /// </summary>
    public bool ValidateAkkaPeer(X509Certificate2? certificate, X509Chain? chain, string remotePeer, SslPolicyErrors errors, ILoggingAdapter log)
    {
        var refusal = Refusal(certificate);
        if (refusal is null) return true;
        Interlocked.Increment(ref _akkaPeersRefused);
        if (FirstTime(remotePeer, refusal))
            log.Warning("Akka.Remote: refused a TLS connection with {0}: {1}.", remotePeer, refusal);
        return false;
    }

    /// <summary>
    /// How many Akka.Remote peer certificates <see cref="ValidateAkkaPeer"/> has refused in this process. Zero after a failed
    /// outbound TLS handshake means no certificate was at fault on this side: the peer closed the connection mid-handshake
    /// (and since every node checks at start-up that its own certificate passes its CA, a peer of another CA is always
    /// refused on this side too).
    /// </summary>
    public int AkkaPeersRefused => Volatile.Read(ref _akkaPeersRefused);

    private int _akkaPeersRefused;

    /// <summary>True the first time a refusal of this peer host (port ignored: each attempt comes from a new one) and reason is seen.</summary>
    public bool FirstTime(string remotePeer, string refusal)
    {
        var host = remotePeer.LastIndexOf(':') is var colon and > 0 && !remotePeer.EndsWith(']') ? remotePeer[..colon] : remotePeer;
        return _logged.TryAdd(host + "\n" + refusal, 0);
    }

    /// <summary>
    /// TLS 1.3 suites of the data plane, AES-128-GCM first: it moves about 2 MB per worker and step, and on a CPU with
    /// AES-NI AES-128-GCM is the cheapest of the three (docs/benchmarks.md); all three are TLS 1.3's standard AEADs.
    /// </summary>
    private static readonly CipherSuitesPolicy? DataPlaneCipherSuites = OperatingSystem.IsLinux()
        ? new CipherSuitesPolicy([TlsCipherSuite.TLS_AES_128_GCM_SHA256, TlsCipherSuite.TLS_AES_256_GCM_SHA384, TlsCipherSuite.TLS_CHACHA20_POLY1305_SHA256])
        : null;

    /// <summary>
    /// Server side of a data-plane TLS handshake, blocking: requires the client's certificate and checks it with
    /// <see cref="Refusal"/>. Closing the socket under <paramref name="stream"/> ends a handshake that waits (with an
    /// <see cref="AuthenticationException"/>); the listener's deadline does that.
    /// </summary>
    /// <exception cref="AuthenticationException">The handshake failed; the message names the reason when the certificate was refused.</exception>
    public SslStream AuthenticateAsServer(Stream stream)
    {
        string? refusal = null;
        var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
        try
        {
            ssl.AuthenticateAsServer(new SslServerAuthenticationOptions
            {
                ServerCertificate = Certificate,
                ClientCertificateRequired = true,
                EnabledSslProtocols = SslProtocols.Tls13,
                CipherSuitesPolicy = DataPlaneCipherSuites,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = (_, certificate, _, _) => (refusal = Refusal(certificate)) is null,
            });
            return ssl;
        }
        catch (Exception e) when (e is AuthenticationException or IOException or ObjectDisposedException)
        {
            ssl.Dispose();
            throw new AuthenticationException(refusal is null ? $"TLS handshake failed: {e.Message}" : $"TLS: {refusal}", e);
        }
    }

    /// <summary>
    /// Client side of a data-plane TLS handshake, blocking: presents this node's certificate and checks the server's with
    /// <see cref="Refusal"/>. Closing the socket under <paramref name="stream"/> ends a handshake that waits (with an
    /// <see cref="AuthenticationException"/>); the caller's deadline does that (<see cref="DataPlane.DataPlaneConnection.ConnectAsync"/>).
    /// </summary>
    /// <exception cref="AuthenticationException">The handshake failed; the message names the reason when the server's certificate was refused.</exception>
    public SslStream AuthenticateAsClient(Stream stream, string host)
    {
        string? refusal = null;
        var ssl = new SslStream(stream, leaveInnerStreamOpen: false);
        try
        {
            ssl.AuthenticateAsClient(new SslClientAuthenticationOptions
            {
                TargetHost = host,
                ClientCertificates = [Certificate],
                EnabledSslProtocols = SslProtocols.Tls13,
                CipherSuitesPolicy = DataPlaneCipherSuites,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                RemoteCertificateValidationCallback = (_, certificate, _, _) => (refusal = Refusal(certificate)) is null,
            });
            return ssl;
        }
        catch (Exception e) when (e is AuthenticationException or IOException or ObjectDisposedException)
        {
            ssl.Dispose();
            throw new AuthenticationException(refusal is null ? $"TLS handshake failed: {e.Message}" : $"TLS: the parameter server's {refusal}", e);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Certificate.Dispose();
        Authority.Dispose();
    }

    private static bool Readable(string path)
    {
        try
        {
            using var stream = File.OpenRead(path);
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static ConfigurationException Problem(string problem) => new("cluster TLS", [problem]);
}
