using System.Net;
using System.Net.Sockets;
using Akka.Actor;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// The seeds of Cluster:SeedNodes whose host name does not resolve on this machine, for the message of a node that could
/// not join within Cluster:JoinTimeoutSeconds: Akka.Cluster retries such a seed for ever and logs only that it could not
/// associate with it, so without this the time-out named no cause.
/// </summary>
internal static class SeedHosts
{
    /// <summary>A seed whose host does not resolve: the seed as dialled, its host, and the resolver's answer.</summary>
    internal sealed record Unresolved(string Seed, string Host, string Reason);

    /// <summary>
    /// The seeds among <paramref name="seeds"/> whose host does not resolve, in their order. An IP address always resolves; a
    /// seed that is no Akka address is left out (the configuration check names it).
    /// </summary>
    /// <param name="seeds">Cluster:SeedNodes as the node dials them (<c>akka.tcp://disttrain@HOST:PORT</c>).</param>
    /// <param name="resolve">The lookup: a host's addresses, throwing <see cref="SocketException"/> when it has none
    /// (<see cref="Dns.GetHostAddresses(string)"/> when null).</param>
    internal static IReadOnlyList<Unresolved> Of(IEnumerable<string> seeds, Func<string, IPAddress[]>? resolve = null)
    {
        resolve ??= Dns.GetHostAddresses;
        var unresolved = new List<Unresolved>();
        foreach (var seed in seeds)
        {
            string host;
            try
            {
                host = Address.Parse(seed).Host ?? "";
            }
            catch (Exception e) when (e is UriFormatException or ArgumentException or FormatException)
            {
                continue;
            }
            if (host.Length == 0 || IPAddress.TryParse(host.Trim('[', ']'), out _)) continue;
            try
            {
                if (resolve(host).Length == 0) unresolved.Add(new Unresolved(seed, host, "no address"));
            }
            catch (Exception e) when (e is SocketException or ArgumentException) // ArgumentException: a host name longer than DNS allows
            {
                unresolved.Add(new Unresolved(seed, host, e.Message));
            }
        }
        return unresolved;
    }

    /// <summary>
    /// What a node whose join timed out found wrong with its seeds, for its join-timeout message (a worker's and a
    /// parameter-server node's alike): the seeds whose host does not resolve (<see cref="Sentence"/>), then the peers found
    /// not to be DistTrain nodes (<see cref="ForeignPeerLogFilter.Sentence"/>), then the seeds that accepted the connection and
    /// did not let it join (<see cref="SilentSeeds.Sentence"/>), each sentence followed by a space; empty when none was found.
    /// </summary>
    /// <param name="unresolved">From <see cref="Of"/>.</param>
    /// <param name="foreign">The peers found not to be DistTrain nodes (<see cref="ForeignPeerLogFilter.Named"/>); none when null.</param>
    /// <param name="silent">The seeds that accepted the node's connection and did not let it join (<see cref="SilentSeeds.Connected"/>),
    /// named last, those among <paramref name="foreign"/> left out (Akka.Remote's handshake timed out on them, and they are
    /// named there); none when null.</param>
    /// <param name="seconds">Cluster:JoinTimeoutSeconds, for <paramref name="silent"/>'s sentence.</param>
    internal static string JoinCauses(IReadOnlyList<Unresolved> unresolved, IReadOnlyList<string>? foreign, IReadOnlyList<string>? silent = null,
        double seconds = 0)
    {
        foreign ??= [];
        string? PeerOf(string seed)
        {
            try
            {
                return Address.Parse(seed) is { Host: { } host, Port: { } port } ? $"{host}:{port}" : null;
            }
            catch (Exception e) when (e is UriFormatException or ArgumentException or FormatException)
            {
                return null;
            }
        }
        var unnamed = (silent ?? []).Where(seed => PeerOf(seed) is not { } peer
            || !foreign.Any(named => named.StartsWith(peer + " ", StringComparison.OrdinalIgnoreCase))).ToList();
        return Sentence(unresolved) + ForeignPeerLogFilter.Sentence(foreign) + SilentSeeds.Sentence(unnamed, seconds);
    }

    /// <summary>
    /// A sentence naming <paramref name="unresolved"/> (each seed, its host and the resolver's answer) and the fix, followed
    /// by a space; empty when there are none.
    /// </summary>
    /// <param name="unresolved">From <see cref="Of"/>.</param>
    internal static string Sentence(IReadOnlyList<Unresolved> unresolved) => unresolved.Count switch
    {
        0 => "",
        1 => $"Its seed {unresolved[0].Seed} (Cluster:SeedNodes) does not resolve on this machine ('{unresolved[0].Host}': {unresolved[0].Reason}): " +
             "give the parameter server's address, or a host name this machine resolves. ",
        _ => $"Its seeds {string.Join(", ", unresolved.Select(u => $"{u.Seed} ('{u.Host}': {u.Reason})"))} (Cluster:SeedNodes) do not resolve on " +
             "this machine: give the parameter servers' addresses, or host names this machine resolves. ",
    };
}
