using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using DistTrain.Cluster.Security;
using DistTrain.Core.Configuration;

namespace DistTrain.Tests;

/// <summary>
/// Throwaway CAs and node certificates made in-process (ECDSA P-256, as deploy/certs/make-certs.sh makes them), written
/// as PEM files into a folder the test owns. Nothing here is committed.
/// </summary>
internal sealed class TestCertificates
{
    private readonly string _directory;
    private readonly ECDsa _caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    /// <summary>A new CA named <paramref name="name"/>, writing its files under <paramref name="directory"/>.</summary>
    public TestCertificates(string directory, string name)
    {
        _directory = Directory.CreateDirectory(Path.Combine(directory, name)).FullName;
        var request = new CertificateRequest($"CN={name}", _caKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        Authority = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddYears(5));
        AuthorityFile = Path.Combine(_directory, "ca.crt");
        File.WriteAllText(AuthorityFile, Authority.ExportCertificatePem());
        SecretFile = Path.Combine(_directory, "job-secret");
        File.WriteAllText(SecretFile, Convert.ToHexString(RandomNumberGenerator.GetBytes(32)));
    }

    /// <summary>The CA certificate.</summary>
    public X509Certificate2 Authority { get; }

    /// <summary>PEM file of the CA certificate.</summary>
    public string AuthorityFile { get; }

    /// <summary>A job secret file made with this CA (each test CA is one job).</summary>
    public string SecretFile { get; }

    /// <summary>A node certificate signed by this CA, valid from <paramref name="notBefore"/> to <paramref name="notAfter"/> (default: a year around now).</summary>
    /// <returns>The certificate and key PEM files.</returns>
    public (string Certificate, string Key) Node(string name, DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(System.Net.IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Authority, true, false));
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        using var certificate = request.Create(Authority.SubjectName, X509SignatureGenerator.CreateForECDsa(_caKey),
            notBefore ?? DateTimeOffset.UtcNow.AddDays(-1), notAfter ?? DateTimeOffset.UtcNow.AddYears(1), serial);
        var certificateFile = Path.Combine(_directory, $"{name}.crt");
        var keyFile = Path.Combine(_directory, $"{name}.key");
        File.WriteAllText(certificateFile, certificate.ExportCertificatePem());
        File.WriteAllText(keyFile, key.ExportPkcs8PrivateKeyPem());
        return (certificateFile, keyFile);
    }

    /// <summary>Cluster options of a node of this CA's job: TLS with a new certificate <paramref name="name"/>, and the job's secret.</summary>
    public ClusterOptions Options(string name, string jobName = "test-job")
    {
        var (certificate, key) = Node(name);
        return new ClusterOptions
        {
            JobName = jobName, SecretFile = SecretFile, Tls = true,
            CertificateFile = certificate, CertificateKeyFile = key, CertificateAuthorityFile = AuthorityFile,
        };
    }

    /// <summary>The DISTTRAIN_* variables that give a node process this CA's job and a new certificate <paramref name="name"/>.</summary>
    public Dictionary<string, string> Environment(string name, string jobName = "test-job")
    {
        var options = Options(name, jobName);
        return new()
        {
            ["DISTTRAIN_Cluster__JobName"] = options.JobName,
            ["DISTTRAIN_Cluster__SecretFile"] = options.SecretFile,
            ["DISTTRAIN_Cluster__Tls"] = "true",
            ["DISTTRAIN_Cluster__CertificateFile"] = options.CertificateFile,
            ["DISTTRAIN_Cluster__CertificateKeyFile"] = options.CertificateKeyFile,
            ["DISTTRAIN_Cluster__CertificateAuthorityFile"] = options.CertificateAuthorityFile,
        };
    }

    /// <summary>Loaded certificates of a node of this CA, as <see cref="ClusterCertificates.Load"/> gives them.</summary>
    public ClusterCertificates Load(string name) => ClusterCertificates.Load(Options(name));
}
