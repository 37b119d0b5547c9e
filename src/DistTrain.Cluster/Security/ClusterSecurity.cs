using DistTrain.Core.Configuration;

namespace DistTrain.Cluster.Security;

/// <summary>
/// What lets a node into a job: the job's identity (name and shared secret), and, with Cluster:Tls, the node's
/// certificate and the cluster's CA for mutual TLS on Akka.Remote and the data plane.
/// </summary>
/// <param name="Identity">The job's name and secret, checked at join.</param>
/// <param name="Certificates">The node's TLS identity; null when Cluster:Tls is false (plain TCP).</param>
public sealed record ClusterSecurity(JobIdentity Identity, ClusterCertificates? Certificates) : IDisposable
{
    /// <summary>The start-up warning printed when TLS is off.</summary>
    public const string PlainTcpWarning =
        "Cluster:Tls is false: Akka.Remote and the data plane run over plain TCP, unencrypted; any host that can reach these ports " +
        "can read the weights, and only the job secret keeps other nodes out. Use this only on a private network you trust.";

    /// <summary>Loads the job identity and, with Cluster:Tls, the certificates.</summary>
    /// <exception cref="ConfigurationException">The secret or a certificate file is missing or invalid; the message names the key and the fix.</exception>
    public static ClusterSecurity Load(ClusterOptions options)
    {
        var identity = JobIdentity.Load(options);
        return new ClusterSecurity(identity, options.Tls ? ClusterCertificates.Load(options) : null);
    }

    /// <summary>The Akka.Remote address scheme this node speaks: <c>akka.ssl.tcp</c> with TLS, <c>akka.tcp</c> without.</summary>
    public string Scheme => Certificates is null ? "akka.tcp" : "akka.ssl.tcp";

    /// <summary>A seed address with the scheme this node speaks, so configs may write either <c>akka.tcp://</c> or <c>akka.ssl.tcp://</c>.</summary>
    public string SeedAddress(string seed)
    {
        var separator = seed.IndexOf("://", StringComparison.Ordinal);
        return separator < 0 ? seed : Scheme + seed[separator..];
    }

    /// <inheritdoc />
    public void Dispose() => Certificates?.Dispose();
}
