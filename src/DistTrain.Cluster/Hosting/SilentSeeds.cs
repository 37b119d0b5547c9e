using System.Globalization;
using System.Net;
using Akka.Actor;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// The seeds of Cluster:SeedNodes that accepted this node's TCP connection and did not let it join, for the message of a node
/// whose join timed out: Akka.Remote reports such a seed only when its handshake times out (15 s), so with a
/// Cluster:JoinTimeoutSeconds below that the node stopped first, and its last line named no cause. What the node saw is read
/// from the kernel's socket table: a connection of this process to the seed's address that is established (the seed accepted
/// it), while this node is in no cluster (no seed answered its join). Linux only (<c>/proc</c>); elsewhere none is named.
/// </summary>
internal static class SilentSeeds
{
    /// <summary>
    /// The seeds among <paramref name="seeds"/> to which this process holds an established TCP connection, in their order;
    /// none when <c>/proc/self/net</c> cannot be read.
    /// </summary>
    /// <param name="seeds">Cluster:SeedNodes as the node dials them (<c>akka.tcp://disttrain@HOST:PORT</c>); a seed that is no
    /// Akka address, or whose host does not resolve, is left out.</param>
    /// <param name="resolve">The lookup of a seed's host (<see cref="Dns.GetHostAddresses(string)"/> when null).</param>
    internal static IReadOnlyList<string> Connected(IEnumerable<string> seeds, Func<string, IPAddress[]>? resolve = null)
    {
        resolve ??= Dns.GetHostAddresses;
        HashSet<IPEndPoint> established;
        try
        {
            established = EstablishedRemotes();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return [];
        }
        if (established.Count == 0) return [];
        var connected = new List<string>();
        foreach (var seed in seeds)
        {
            try
            {
                var address = Address.Parse(seed);
                if (address.Host is not { Length: > 0 } host || address.Port is not { } port) continue;
                var ips = IPAddress.TryParse(host.Trim('[', ']'), out var ip) ? [ip] : resolve(host);
                if (ips.Any(a => established.Contains(new IPEndPoint(a.IsIPv4MappedToIPv6 ? a.MapToIPv4() : a, port)))) connected.Add(seed);
            }
            catch (Exception e) when (e is UriFormatException or ArgumentException or FormatException or System.Net.Sockets.SocketException)
            {
            }
        }
        return connected;
    }

    /// <summary>
    /// The remote ends of this process's established TCP connections: the sockets among its open descriptors
    /// (<c>/proc/self/fd</c>) whose entry in <c>/proc/self/net/tcp</c> or <c>tcp6</c> has state 01 (ESTABLISHED).
    /// </summary>
    private static HashSet<IPEndPoint> EstablishedRemotes()
    {
        var inodes = new HashSet<string>(StringComparer.Ordinal);
        foreach (var fd in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            string? target;
            try
            {
                target = new FileInfo(fd).LinkTarget;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue; // closed meanwhile
            }
            if (target is not null && target.StartsWith("socket:[", StringComparison.Ordinal)) inodes.Add(target[8..^1]);
        }
        var remotes = new HashSet<IPEndPoint>();
        foreach (var table in new[] { "/proc/self/net/tcp", "/proc/self/net/tcp6" })
        {
            if (!File.Exists(table)) continue;
            foreach (var line in File.ReadLines(table).Skip(1))
                if (Established(line, inodes) is { } remote) remotes.Add(remote);
        }
        return remotes;
    }

    /// <summary>
    /// The remote end of one line of <c>/proc/net/tcp</c> or <c>tcp6</c> (<c>sl local_address rem_address st ... inode</c>,
    /// addresses as hexadecimal 32-bit words in the host's byte order and a hexadecimal port) when its state is 01
    /// (ESTABLISHED) and its inode is one of <paramref name="inodes"/>; null otherwise. An IPv4-mapped IPv6 address is
    /// returned as IPv4.
    /// </summary>
    internal static IPEndPoint? Established(string line, IReadOnlySet<string> inodes)
    {
        var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (fields.Length < 10 || fields[3] != "01" || !inodes.Contains(fields[9])) return null;
        var remote = fields[2].Split(':');
        if (remote.Length != 2 || remote[0].Length is not (8 or 32)) return null;
        var bytes = new byte[remote[0].Length / 2];
        for (var word = 0; word < bytes.Length / 4; word++)
        {
            var value = uint.Parse(remote[0].AsSpan(word * 8, 8), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            // The kernel printed the word's bytes, in network order in memory, as a host-order number: GetBytes lays them out
            // in memory again.
            BitConverter.GetBytes(value).CopyTo(bytes, word * 4);
        }
        var address = new IPAddress(bytes);
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        return new IPEndPoint(address, int.Parse(remote[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture));
    }

    /// <summary>
    /// A sentence naming <paramref name="silent"/> (seeds that accepted the connection and did not let the node join within
    /// <paramref name="seconds"/>) and the fix, followed by a space; empty when there are none.
    /// </summary>
    /// <param name="silent">From <see cref="Connected"/>, without the peers already named by <see cref="ForeignPeerLogFilter"/>.</param>
    /// <param name="seconds">Cluster:JoinTimeoutSeconds.</param>
    internal static string Sentence(IReadOnlyList<string> silent, double seconds) => silent.Count == 0 ? ""
        : $"{(silent.Count == 1 ? "Its seed" : "Its seeds")} {string.Join(", ", silent)} (Cluster:SeedNodes) accepted this node's connection and did not " +
          $"let it join in {seconds:F0} s: {(silent.Count == 1 ? "it is" : "they are")} not a DistTrain node, or one whose Cluster:Tls differs, or frozen, or a DistTrain " +
          "node that is itself in no cluster (a worker node, or a parameter server that has not joined). Give Cluster:SeedNodes the host and Cluster:Port of a " +
          "running parameter-server node. ";
}
