using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using DistTrain.Core.Configuration;

namespace DistTrain.Cluster.Security;

/// <summary>
/// Who belongs to a job: its name (<c>Cluster:JobName</c>) and a secret shared by its nodes (<c>Cluster:SecretFile</c> or
/// <c>DISTTRAIN_Cluster__Secret</c>). Nodes never send the secret: a worker proves it knows it with an HMAC-SHA256
/// (RFC 2104) over its registration, and the job host proves the same over its answer, so a node of another job is
/// refused at join, and a worker never trains under a parameter server of another job.
/// </summary>
public sealed class JobIdentity
{
    /// <summary>Shortest secret accepted, in bytes (128 bits).</summary>
    public const int MinimumSecretBytes = 16;

    private readonly byte[] _key;

    /// <summary>Creates an identity from a job name and its secret.</summary>
    /// <param name="name">Cluster:JobName.</param>
    /// <param name="secret">The shared secret, at least <see cref="MinimumSecretBytes"/> bytes.</param>
    /// <exception cref="ArgumentException">The secret is shorter than <see cref="MinimumSecretBytes"/>.</exception>
    public JobIdentity(string name, ReadOnlySpan<byte> secret)
    {
        if (secret.Length < MinimumSecretBytes)
            throw new ArgumentException($"a job secret needs at least {MinimumSecretBytes} bytes, this one has {secret.Length}.", nameof(secret));
        Name = name;
        _key = secret.ToArray();
    }

    /// <summary>The job's name, sent in clear with every registration so a refusal can say which job a node belongs to.</summary>
    public string Name { get; }

    /// <summary>Reads the job's identity from the cluster options.</summary>
    /// <exception cref="ConfigurationException">No secret is set, both are set, the file cannot be read, or the secret is too short.</exception>
    public static JobIdentity Load(ClusterOptions options)
    {
        var fromFile = !string.IsNullOrWhiteSpace(options.SecretFile);
        var fromVariable = !string.IsNullOrEmpty(options.Secret);
        string secret;
        if (fromFile && fromVariable)
            throw Problem("both Cluster:SecretFile and Cluster:Secret are set: keep one.");
        if (!fromFile && !fromVariable)
            throw Problem("cluster mode needs the job's shared secret: set Cluster:SecretFile to a file holding it (deploy/certs/make-certs.sh writes " +
                          "job-secret), or the environment variable DISTTRAIN_Cluster__Secret. Every node of the job uses the same secret.");
        if (fromFile)
        {
            if (FileAccessHint.FolderInsteadOfFile("Cluster:SecretFile", options.SecretFile) is { } folder) throw Problem(folder);
            try
            {
                secret = File.ReadAllText(options.SecretFile).Trim();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                var hint = FileAccessHint.For(options.SecretFile, e);
                throw Problem($"Cluster:SecretFile = '{options.SecretFile}' cannot be read: {e.Message}" +
                              (hint.Length > 0 ? hint : " Make it with deploy/certs/make-certs.sh."));
            }
        }
        else
            secret = options.Secret.Trim();
        var bytes = Encoding.UTF8.GetBytes(secret);
        if (bytes.Length < MinimumSecretBytes)
            throw Problem($"the job secret ({(fromFile ? $"Cluster:SecretFile = '{options.SecretFile}'" : "Cluster:Secret")}) has {bytes.Length} bytes; " +
                          $"use at least {MinimumSecretBytes} random bytes, for example 'openssl rand -hex 32'.");
        return new JobIdentity(options.JobName, bytes);
    }

    /// <summary>A worker's proof over its registration: HMAC-SHA256 of the job name, the node's address and the model fingerprint.</summary>
    public byte[] RegistrationProof(string nodeAddress, int protocolVersion, string modelFingerprint) =>
        Mac("register", nodeAddress, protocolVersion.ToString(CultureInfo.InvariantCulture), modelFingerprint);

    /// <summary>The job host's proof over its acceptance of a worker: HMAC-SHA256 over the node, index, data plane, token and
    /// registration round (<see cref="Protocol.RegisterWorker.Round"/>).</summary>
    public byte[] AcceptanceProof(string nodeAddress, int workerIndex, string dataHost, int dataPort, ReadOnlySpan<byte> dataToken, int round) =>
        Mac("accept", nodeAddress, workerIndex.ToString(CultureInfo.InvariantCulture), dataHost, dataPort.ToString(CultureInfo.InvariantCulture),
            Convert.ToHexString(dataToken), round.ToString(CultureInfo.InvariantCulture));

    /// <summary>
    /// A coordinator's proof over its request that a shard node host a shard (<see cref="Protocol.HostShard"/>): HMAC-SHA256 over
    /// the coordinator's and the shard host's actor paths (with their nodes' addresses and uids), the job, the shard and shard
    /// count, the worker slots' tokens, the digest of the shard's starting slice and the settings the parameter server decides
    /// for the whole job. A shard node hosts a shard only for a request that carries it, so no actor without the job's secret can
    /// own a shard, and a request signed for one coordinator and host is not taken from another sender or by another host.
    /// </summary>
    public byte[] ShardRequestProof(string ownerPath, string hostPath, string jobId, int shard, int shardCount, ReadOnlySpan<byte> workerTokens,
        ReadOnlySpan<byte> startingDigest, string serverSettings) =>
        Mac("host-shard", ownerPath, hostPath, jobId, shard.ToString(CultureInfo.InvariantCulture), shardCount.ToString(CultureInfo.InvariantCulture),
            Convert.ToHexString(workerTokens), Convert.ToHexString(startingDigest), serverSettings);

    /// <summary>
    /// A shard node's proof over its answer (<see cref="Protocol.ShardHosted"/>): HMAC-SHA256 over the coordinator's path, the
    /// request's proof (so an answer is bound to the request it answers), the job, the shard, the shard actor's and its data-plane
    /// links' paths (with the node's address) and the data plane's host and port, so a coordinator sends its parts and its
    /// workers' slices only to a node of its own job.
    /// </summary>
    public byte[] ShardHostedProof(string ownerPath, ReadOnlySpan<byte> requestProof, string jobId, int shard, string shardPath, string dataHost, int dataPort,
        IEnumerable<string> linkPaths) =>
        Mac("shard-hosted", ownerPath, Convert.ToHexString(requestProof), jobId, shard.ToString(CultureInfo.InvariantCulture), shardPath, dataHost,
            dataPort.ToString(CultureInfo.InvariantCulture), string.Join('\n', linkPaths));

    /// <summary>A shard node's proof over its refusal of a signed request (<see cref="Protocol.ShardHostRefused"/>): HMAC-SHA256 over the
    /// request's proof, the shard and the reason, so a refusal fails only the placement it answers, and only from a node of the job.</summary>
    public byte[] ShardRefusalProof(ReadOnlySpan<byte> requestProof, int shard, string reason) => ShardNotice("shard-refused", requestProof, shard, reason);

    /// <summary>A shard node's proof over a hosted shard's failure (<see cref="Protocol.ShardFailed"/>): HMAC-SHA256 over the hosting
    /// request's proof, the shard, the reason and, for a divergence, its fields (<see cref="Protocol.ShardFailed.DivergenceFields"/>;
    /// empty otherwise, which leaves the proof of any other failure as it was).</summary>
    public byte[] ShardFailureProof(ReadOnlySpan<byte> requestProof, int shard, string reason, string divergence = "") => divergence.Length == 0
        ? ShardNotice("shard-failed", requestProof, shard, reason)
        : Mac("shard-diverged", Convert.ToHexString(requestProof), shard.ToString(CultureInfo.InvariantCulture), reason, divergence);

    /// <summary>
    /// The parameter server's proof over the shard nodes it gives a worker (<see cref="Protocol.ShardServersAssigned"/>): HMAC-SHA256
    /// over the run, the worker slot, the shard count, every shard's data-plane host and port (each a field of its own, in shard
    /// order), the slot's data-plane token and the starting weights' digest, so a worker sends its gradients only to the shard
    /// nodes its own run placed, and a message for another run or slot is not taken.
    /// </summary>
    public byte[] ShardServersProof(string jobId, int workerIndex, IReadOnlyList<string> hosts, IReadOnlyList<int> ports, ReadOnlySpan<byte> dataToken,
        ReadOnlySpan<byte> startingDigest)
    {
        ArgumentNullException.ThrowIfNull(hosts);
        ArgumentNullException.ThrowIfNull(ports);
        var fields = new List<string> { jobId, workerIndex.ToString(CultureInfo.InvariantCulture), hosts.Count.ToString(CultureInfo.InvariantCulture),
            ports.Count.ToString(CultureInfo.InvariantCulture) };
        fields.AddRange(hosts);
        fields.AddRange(ports.Select(port => port.ToString(CultureInfo.InvariantCulture)));
        fields.Add(Convert.ToHexString(dataToken));
        fields.Add(Convert.ToHexString(startingDigest));
        return Mac("shard-servers", [.. fields]);
    }

    private byte[] ShardNotice(string purpose, ReadOnlySpan<byte> requestProof, int shard, string reason) =>
        Mac(purpose, Convert.ToHexString(requestProof), shard.ToString(CultureInfo.InvariantCulture), reason);

    /// <summary>True when <paramref name="proof"/> equals <paramref name="expected"/> (compared in constant time).</summary>
    public static bool Matches(ReadOnlySpan<byte> proof, ReadOnlySpan<byte> expected) =>
        proof.Length == expected.Length && CryptographicOperations.FixedTimeEquals(proof, expected);

    /// <summary>HMAC-SHA256 under the secret of a purpose and fields, each length-prefixed so no two field lists collide.</summary>
    private byte[] Mac(string purpose, params string[] fields)
    {
        var text = new StringBuilder("disttrain-job-identity/1\n").Append(purpose).Append('\n').Append(Name.Length).Append(':').Append(Name);
        foreach (var field in fields) text.Append('\n').Append(field.Length).Append(':').Append(field);
        return HMACSHA256.HashData(_key, Encoding.UTF8.GetBytes(text.ToString()));
    }

    private static ConfigurationException Problem(string problem) => new("cluster security", [problem]);
}
