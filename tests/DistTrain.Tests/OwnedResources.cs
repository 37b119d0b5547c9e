using DistTrain.Cluster.Security;

namespace DistTrain.Tests;

/// <summary>
/// What a data-plane test class owns and disposes when it ends, in reverse order of taking (sockets, listeners,
/// connections, TLS identities), and the folder of throwaway certificates made for it, deleted with its files.
/// </summary>
/// <param name="certificatePrefix">Prefix of the temporary folder the certificates go in (made on the first call of
/// <see cref="Certificates"/>).</param>
internal sealed class OwnedResources(string certificatePrefix) : IDisposable
{
    private readonly List<IDisposable> _resources = [];
    private string? _certificateDirectory;

    /// <summary>Takes <paramref name="resource"/> to dispose at the end, and returns it.</summary>
    public T Own<T>(T resource) where T : IDisposable
    {
        _resources.Add(resource);
        return resource;
    }

    /// <summary>A new temporary folder, deleted with its files at the end.</summary>
    /// <param name="prefix">The folder name's prefix.</param>
    public string TemporaryDirectory(string prefix)
    {
        var path = Directory.CreateTempSubdirectory(prefix).FullName;
        Own(new DeletedAtDispose(path));
        return path;
    }

    private sealed class DeletedAtDispose(string path) : IDisposable
    {
        public void Dispose()
        {
            if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
        }
    }

    /// <summary>A server's and a worker's TLS identities from one new CA (both owned), or nulls for plain TCP.</summary>
    /// <param name="tls">False for plain TCP: no identities.</param>
    /// <param name="server">The server's certificate name (a parameter server's, a shard node's).</param>
    public (ClusterCertificates? Server, ClusterCertificates? Worker) Certificates(bool tls, string server)
    {
        if (!tls) return (null, null);
        _certificateDirectory ??= Directory.CreateTempSubdirectory(certificatePrefix).FullName;
        var cluster = new TestCertificates(_certificateDirectory, "cluster-ca");
        return (Own(cluster.Load(server)), Own(cluster.Load("worker")));
    }

    /// <summary>Disposes everything owned, the last taken first, then deletes the certificates' folder.</summary>
    public void Dispose()
    {
        foreach (var resource in Enumerable.Reverse(_resources)) resource.Dispose();
        _resources.Clear();
        if (_certificateDirectory is not null) Directory.Delete(_certificateDirectory, recursive: true);
        _certificateDirectory = null;
    }
}
