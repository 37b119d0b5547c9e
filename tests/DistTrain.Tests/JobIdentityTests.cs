using DistTrain.Cluster.Security;
using DistTrain.Core.Configuration;

namespace DistTrain.Tests;

/// <summary>The job identity checked at join: where the secret comes from, and what the proofs bind.</summary>
public sealed class JobIdentityTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-identity-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    private string SecretFile(string secret)
    {
        var path = Path.Combine(_directory, Guid.NewGuid().ToString("N"));
        File.WriteAllText(path, secret);
        return path;
    }

    [Fact]
    public void The_secret_comes_from_a_file_or_the_environment_is_required_and_must_be_long_enough()
    {
        Assert.Contains("cluster mode needs the job's shared secret",
            Assert.Throws<ConfigurationException>(() => JobIdentity.Load(new ClusterOptions())).Message);
        Assert.Contains("has 5 bytes; use at least 16",
            Assert.Throws<ConfigurationException>(() => JobIdentity.Load(new ClusterOptions { SecretFile = SecretFile("short\n") })).Message);
        Assert.Contains("both Cluster:SecretFile and Cluster:Secret are set", Assert.Throws<ConfigurationException>(() =>
            JobIdentity.Load(new ClusterOptions { SecretFile = SecretFile(new string('a', 32)), Secret = new string('b', 32) })).Message);
        var missing = Path.Combine(_directory, "none");
        Assert.Contains($"Cluster:SecretFile = '{missing}' cannot be read",
            Assert.Throws<ConfigurationException>(() => JobIdentity.Load(new ClusterOptions { SecretFile = missing })).Message);
        // The same secret from a file (trailing newline ignored) or the environment is the same identity.
        var fromFile = JobIdentity.Load(new ClusterOptions { JobName = "a", SecretFile = SecretFile(new string('s', 32) + "\n") });
        var fromVariable = JobIdentity.Load(new ClusterOptions { JobName = "a", Secret = new string('s', 32) });
        Assert.Equal(fromFile.RegistrationProof("node", 2, "{}"), fromVariable.RegistrationProof("node", 2, "{}"));
    }

    [Fact]
    public void A_denied_secret_or_key_file_is_explained_with_its_owner_its_mode_the_process_s_user_and_KEY_UID()
    {
        if (OperatingSystem.IsWindows()) return;
        var path = SecretFile(new string('s', 32));
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var hint = FileAccessHint.For(path, new UnauthorizedAccessException($"Access to the path '{path}' is denied."));
        Assert.Contains("The file belongs to uid ", hint);
        Assert.Contains("with mode 600", hint);
        Assert.Contains($"this process runs as uid ", hint);
        Assert.Contains($"({Environment.UserName})", hint);
        Assert.Contains("KEY_UID=1654 deploy/certs/make-certs.sh deploy/certs/out ps ps-standby worker", hint);
        // A folder where the file belongs (docker's, for a mounted file that did not exist): named as such.
        var folder = Directory.CreateDirectory(Path.Combine(_directory, "job-secret")).FullName;
        Assert.Contains($"Cluster:SecretFile = '{folder}' is a folder, not a file. Docker makes an empty folder",
            Assert.Throws<ConfigurationException>(() => JobIdentity.Load(new ClusterOptions { SecretFile = folder })).Message);
        // A missing file or another I/O problem has no such cause.
        Assert.Equal("", FileAccessHint.For(path, new FileNotFoundException()));
    }

    [Fact]
    public void A_proof_binds_the_secret_the_job_name_the_node_and_the_fingerprint()
    {
        var secret = new string('s', 32);
        var identity = new JobIdentity("job", System.Text.Encoding.UTF8.GetBytes(secret));
        var proof = identity.RegistrationProof("akka.ssl.tcp://disttrain@10.0.0.2:4053", 2, "{\"Model\":1}");
        Assert.Equal(32, proof.Length);
        Assert.True(JobIdentity.Matches(proof, identity.RegistrationProof("akka.ssl.tcp://disttrain@10.0.0.2:4053", 2, "{\"Model\":1}")));
        Assert.False(JobIdentity.Matches(proof, new JobIdentity("job", System.Text.Encoding.UTF8.GetBytes(secret + "x"))
            .RegistrationProof("akka.ssl.tcp://disttrain@10.0.0.2:4053", 2, "{\"Model\":1}")));
        Assert.False(JobIdentity.Matches(proof, new JobIdentity("other", System.Text.Encoding.UTF8.GetBytes(secret))
            .RegistrationProof("akka.ssl.tcp://disttrain@10.0.0.2:4053", 2, "{\"Model\":1}")));
        Assert.False(JobIdentity.Matches(proof, identity.RegistrationProof("akka.ssl.tcp://disttrain@10.0.0.3:4053", 2, "{\"Model\":1}")));
        Assert.False(JobIdentity.Matches(proof, identity.RegistrationProof("akka.ssl.tcp://disttrain@10.0.0.2:4053", 2, "{\"Model\":2}")));
        // The acceptance proof is another purpose: a registration proof never passes for it.
        var token = new byte[32];
        Assert.False(JobIdentity.Matches(proof, identity.AcceptanceProof("akka.ssl.tcp://disttrain@10.0.0.2:4053", 0, "ps", 4054, token, 1)));
        Assert.False(JobIdentity.Matches(identity.AcceptanceProof("n", 0, "ps", 4054, token, 1), identity.AcceptanceProof("n", 0, "ps", 4054, new byte[] { 1 }, 1)));
        // It covers the registration round: an acceptance of round 1 does not pass for round 2.
        Assert.True(JobIdentity.Matches(identity.AcceptanceProof("n", 0, "ps", 4054, token, 1), identity.AcceptanceProof("n", 0, "ps", 4054, token, 1)));
        Assert.False(JobIdentity.Matches(identity.AcceptanceProof("n", 0, "ps", 4054, token, 1), identity.AcceptanceProof("n", 0, "ps", 4054, token, 2)));
        // HMAC-SHA256 as RFC 4231 defines it (test case 2), through the same primitive the proofs use.
        Assert.Equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            Convert.ToHexStringLower(System.Security.Cryptography.HMACSHA256.HashData("Jefe"u8, "what do ya want for nothing?"u8)));
    }

    [Fact]
    public void A_secret_in_a_config_file_is_refused_and_the_secret_is_never_written_to_the_run_summary()
    {
        var config = Path.Combine(_directory, "config.json");
        File.WriteAllText(config, """{ "Cluster": { "Secret": "0123456789abcdef0123456789abcdef" } }""");
        var refused = Assert.Throws<ConfigurationException>(() => TrainingOptionsLoader.Load(config,
            new Dictionary<string, string?> { ["Data:Directory"] = TestData.SubsetDirectory }, environment: new Dictionary<string, string?>()));
        Assert.Contains("Cluster:Secret is set in", refused.Message);
        Assert.DoesNotContain("0123456789abcdef", refused.Message);

        File.WriteAllText(config, """{ "Model": { "Layers": [ { "Type": "Dense", "Units": 10 } ] } }""");
        var options = TrainingOptionsLoader.Load(config, new Dictionary<string, string?> { ["Data:Directory"] = TestData.SubsetDirectory },
            environment: new Dictionary<string, string?> { ["DISTTRAIN_Cluster__Secret"] = "fedcba9876543210fedcba9876543210" });
        Assert.Equal("fedcba9876543210fedcba9876543210", options.Cluster.Secret);
        Assert.DoesNotContain("fedcba98", System.Text.Json.JsonSerializer.Serialize(options));
    }

    [Fact]
    public void A_secret_in_a_config_file_is_refused_when_the_environment_sets_one_too()
    {
        // The file travels with its secret whatever overrides it: it was accepted when DISTTRAIN_Cluster__Secret was set as well.
        var config = Path.Combine(_directory, "config.json");
        File.WriteAllText(config, """{ "Cluster": { "Secret": "0123456789abcdef0123" }, "Model": { "Layers": [ { "Type": "Dense", "Units": 10 } ] } }""");
        var refused = Assert.Throws<ConfigurationException>(() => TrainingOptionsLoader.Load(config,
            new Dictionary<string, string?> { ["Data:Directory"] = TestData.SubsetDirectory },
            environment: new Dictionary<string, string?> { ["DISTTRAIN_Cluster__Secret"] = "fedcba9876543210fedcba9876543210" }));
        Assert.Equal([$"Cluster:Secret is set in {config}, although it is also set from environment variable DISTTRAIN_Cluster__Secret: a secret in a config file " +
            $"travels with it (version control, images), overridden or not. Remove it from {config}; the one from environment variable DISTTRAIN_Cluster__Secret is enough."],
            refused.Problems);
        Assert.DoesNotContain("0123456789abcdef", refused.Message);
        Assert.DoesNotContain("fedcba98", refused.Message);
    }

    [Fact]
    public void Seed_addresses_take_the_scheme_of_Cluster_Tls_and_bad_job_names_are_refused()
    {
        var identity = new JobIdentity("job", new byte[16]);
        using var withTls = new ClusterSecurity(identity, new TestCertificates(_directory, "ca").Load("ps"));
        Assert.Equal("akka.ssl.tcp://disttrain@ps:4053", withTls.SeedAddress("akka.tcp://disttrain@ps:4053"));
        Assert.Equal("akka.ssl.tcp://disttrain@ps:4053", withTls.SeedAddress("akka.ssl.tcp://disttrain@ps:4053"));
        Assert.Equal("akka.tcp://disttrain@ps:4053", new ClusterSecurity(identity, null).SeedAddress("akka.ssl.tcp://disttrain@ps:4053"));
        var problems = TrainingOptionsValidator.Validate(new TrainingOptions { Cluster = { JobName = "my job!" } }, checkDataDirectory: false);
        Assert.Contains(problems, p => p.StartsWith("Cluster:JobName = 'my job!' is not a job name", StringComparison.Ordinal));
    }
}
