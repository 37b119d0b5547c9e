using System.Net;
using System.Net.Sockets;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// Checks at start-up that a node's ports are free, so a taken port is one clear line and exit code 2 instead of an
/// actor system that fails later. .NET's <c>ReuseAddress</c> on Linux also sets <c>SO_REUSEPORT</c>, which lets a
/// second socket listen on a port already in use: the probe sets <c>SO_REUSEADDR</c> alone, which ignores connections
/// of an earlier run lingering in TIME_WAIT but conflicts with any listener. The probe only gives the message: two
/// nodes started at the same moment both pass it, and what keeps the port to one of them is that no listener of a node
/// sets <c>SO_REUSEPORT</c> (<see cref="AkkaSettings.ExclusivePort"/> for Akka.Remote's), so the second bind fails.
/// </summary>
public static class PortProbe
{
    private const int SolSocket = 1, SoReuseAddr = 2; // Linux <sys/socket.h>

    /// <summary>Lets <paramref name="socket"/> bind a port that only has connections in TIME_WAIT, without sharing it with a listener.</summary>
    public static void AllowTimeWait(Socket socket)
    {
        if (OperatingSystem.IsLinux()) socket.SetRawSocketOption(SolSocket, SoReuseAddr, BitConverter.GetBytes(1));
    }

    /// <summary>
    /// True when <paramref name="host"/> (Cluster:Hostname, Metrics:Hostname) names every interface: <c>0.0.0.0</c>,
    /// <c>::</c>, <c>+</c>, <c>*</c> or empty.
    /// </summary>
    public static bool IsEveryInterface(string host) =>
        host is "+" or "*" or "" || (IPAddress.TryParse(host.Trim('[', ']'), out var address) && (address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any)));

    /// <summary>
    /// The address a listener for <paramref name="host"/> binds, as Akka.Remote binds Cluster:Hostname:
    /// <see cref="IPAddress.Any"/> for every interface (<see cref="IsEveryInterface"/>; <see cref="IPAddress.IPv6Any"/>
    /// for <c>::</c>), an address as given, and a host name's first IPv4 address (Akka.Remote's <c>dns-use-ipv6</c> is
    /// off), or its first address when it has no IPv4 one.
    /// </summary>
    /// <param name="host">A host name or an IP address.</param>
    /// <param name="hostKey">The config key <paramref name="host"/> comes from, for the message (Cluster:Hostname, Metrics:Hostname).</param>
    /// <exception cref="UnresolvableHostException"><paramref name="host"/> does not resolve to an address.</exception>
    public static IPAddress BindAddress(string host, string hostKey = "Cluster:Hostname")
    {
        if (host is "+" or "*" or "") return IPAddress.Any;
        if (IPAddress.TryParse(host.Trim('[', ']'), out var parsed)) return parsed;
        IPAddress[] addresses;
        try
        {
            addresses = Dns.GetHostAddresses(host);
        }
        catch (SocketException e)
        {
            throw new UnresolvableHostException(hostKey, host, e.Message, e);
        }
        return addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? addresses.FirstOrDefault()
            ?? throw new UnresolvableHostException(hostKey, host, "no address", null);
    }

    /// <summary>Throws when nothing can listen on <paramref name="host"/>:<paramref name="port"/> because another socket does.</summary>
    /// <param name="key">The config key of the port, for the message (Cluster:Port, Metrics:Port); the host's key is the same
    /// section's <c>Hostname</c> (Cluster:Hostname, Metrics:Hostname).</param>
    /// <param name="host">Address to bind (Cluster:Hostname); <c>0.0.0.0</c>, <c>+</c> or <c>*</c> for every interface.</param>
    /// <param name="port">The port; 0 (any free port) always passes, without resolving <paramref name="host"/>.</param>
    /// <exception cref="PortInUseException">Another socket listens there.</exception>
    /// <exception cref="AddressNotLocalException"><paramref name="host"/> is not an address of this machine.</exception>
    /// <exception cref="UnresolvableHostException"><paramref name="host"/> does not resolve to an address.</exception>
    public static void EnsureFree(string key, string host, int port)
    {
        if (port == 0) return;
        var address = BindAddress(host, HostKeyOf(key));
        using var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        AllowTimeWait(socket);
        try
        {
            socket.Bind(new IPEndPoint(address, port));
            socket.Listen();
        }
        catch (SocketException e)
        {
            throw BindFailure(key, host, address, port, e);
        }
    }

    /// <summary>
    /// The exception for a listener of <paramref name="host"/> (bound as <paramref name="address"/>) that could not bind
    /// <paramref name="port"/>: an <see cref="AddressNotLocalException"/> when the address is not one of this machine's
    /// (<see cref="SocketError.AddressNotAvailable"/>, EADDRNOTAVAIL), else a <see cref="PortInUseException"/>.
    /// </summary>
    /// <param name="portKey">The config key of the port (Cluster:Port, Cluster:DataPort, Metrics:Port); the host's key is the
    /// same section's <c>Hostname</c>.</param>
    /// <param name="host">The host as configured (Cluster:Hostname, Metrics:Hostname).</param>
    /// <param name="address">The address the listener bound (<see cref="BindAddress"/>), or null when not known.</param>
    /// <param name="port">The port.</param>
    /// <param name="failure">The bind's error.</param>
    internal static Exception BindFailure(string portKey, string host, IPAddress? address, int port, SocketException failure) =>
        failure.SocketErrorCode == SocketError.AddressNotAvailable
            ? new AddressNotLocalException(HostKeyOf(portKey), host, address, failure)
            : new PortInUseException(portKey, port, failure);

    /// <summary>This machine's unicast addresses (IPv4 first, loopback included), for a message that asks for one of them;
    /// empty when the interfaces cannot be listed.</summary>
    internal static IReadOnlyList<IPAddress> LocalAddresses()
    {
        try
        {
            return [.. System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces()
                .Where(i => i.OperationalStatus is System.Net.NetworkInformation.OperationalStatus.Up or System.Net.NetworkInformation.OperationalStatus.Unknown)
                .SelectMany(i => i.GetIPProperties().UnicastAddresses.Select(u => u.Address))
                .Where(a => !a.IsIPv6LinkLocal)
                .Distinct()
                .OrderBy(a => a.AddressFamily == AddressFamily.InterNetwork ? 0 : 1)];
        }
        catch (Exception e) when (e is System.Net.NetworkInformation.NetworkInformationException or PlatformNotSupportedException)
        {
            return [];
        }
    }

    /// <summary>The host key of the section a port key belongs to: <c>Cluster:Port</c> gives <c>Cluster:Hostname</c>.</summary>
    private static string HostKeyOf(string portKey) =>
        portKey.Contains(':', StringComparison.Ordinal) ? portKey[..portKey.IndexOf(':', StringComparison.Ordinal)] + ":Hostname" : "Cluster:Hostname";
}

/// <summary>
/// The host a node is to listen on (Cluster:Hostname, Metrics:Hostname) does not resolve to an address, so no listener
/// can bind it. The message is one line naming the key, the value, the resolver's answer and the fix.
/// </summary>
/// <param name="key">The config key of the host (Cluster:Hostname, Metrics:Hostname).</param>
/// <param name="host">The host name as given.</param>
/// <param name="reason">The resolver's answer, such as "Name or service not known".</param>
/// <param name="inner">The resolver's error, if any.</param>
public sealed class UnresolvableHostException(string key, string host, string reason, Exception? inner)
    : Exception($"{key} = '{host}' does not resolve to an address ({reason}), so this node has no address to listen on. " + Fix(key), inner)
{
    /// <summary>The config key of the host.</summary>
    public string Key { get; } = key;

    /// <summary>The host name as given.</summary>
    public string Host { get; } = host;

    private static string Fix(string key)
    {
        var variable = $"DISTTRAIN_{key.Replace(":", "__", StringComparison.Ordinal)}";
        return key.StartsWith("Metrics:", StringComparison.Ordinal)
            ? $"Set {key} ({variable}=...) to + for every interface, localhost for this machine only, or a name or address of this machine."
            : $"Set {key} ({variable}=...) to an address or host name of this machine: 0.0.0.0 for every interface (the default), 127.0.0.1 " +
              "for a cluster on one machine; the address other nodes reach it at, if different, goes in Cluster:PublicHostname.";
    }
}

/// <summary>
/// The host a node is to listen on (Cluster:Hostname, Metrics:Hostname) resolves, but not to an address of this machine
/// (the bind failed with EADDRNOTAVAIL): typically the address other nodes dial, given where the node's own address belongs
/// (a machine behind NAT, a container's published address). The message is one line naming the key, the value, the
/// address it resolved to, this machine's addresses and the fix: the address to listen on, and for Cluster:Hostname the
/// address others dial in Cluster:PublicHostname.
/// </summary>
/// <param name="key">The config key of the host (Cluster:Hostname, Metrics:Hostname).</param>
/// <param name="host">The host as given.</param>
/// <param name="address">The address <paramref name="host"/> resolved to and the listener tried to bind; null when not known.</param>
/// <param name="inner">The bind failure.</param>
public sealed class AddressNotLocalException(string key, string host, IPAddress? address, Exception inner)
    : Exception(Describe(key, host, address, inner, PortProbe.LocalAddresses()), inner)
{
    /// <summary>The config key of the host.</summary>
    public string Key { get; } = key;

    /// <summary>The host as given.</summary>
    public string Host { get; } = host;

    /// <summary>The message for <paramref name="host"/> of <paramref name="key"/>, given this machine's addresses <paramref name="local"/>
    /// (none named when empty).</summary>
    internal static string Describe(string key, string host, IPAddress? address, Exception inner, IReadOnlyList<IPAddress> local)
    {
        var resolved = address is null || string.Equals(address.ToString(), host.Trim('[', ']'), StringComparison.OrdinalIgnoreCase) ? "" : $"it resolves to {address}; ";
        var own = local.Count == 0 ? "" : $" ({string.Join(", ", local.Take(6))})";
        var variable = $"DISTTRAIN_{key.Replace(":", "__", StringComparison.Ordinal)}";
        return key.StartsWith("Metrics:", StringComparison.Ordinal)
            ? $"{key} = '{host}' is not an address of this machine ({resolved}{inner.Message}), so the metrics endpoint cannot listen on it. Set {key} " +
              $"({variable}=...) to + for every interface, localhost for this machine only, or an address of this machine{own}."
            : $"{key} = '{host}' is not an address of this machine ({resolved}{inner.Message}), so this node cannot listen on it. Set {key} " +
              $"({variable}=...) to an address of this machine{own}, or 0.0.0.0 for every interface; the address the other nodes reach this " +
              "node at goes in Cluster:PublicHostname (DISTTRAIN_Cluster__PublicHostname=...).";
    }
}

/// <summary>A port a node needs is taken. The message is one line naming the key, the port and the fix.</summary>
/// <param name="key">The config key of the port.</param>
/// <param name="port">The port.</param>
/// <param name="inner">The bind failure.</param>
public sealed class PortInUseException(string key, int port, Exception inner)
    : Exception($"{key} = {port}: the port is in use ({inner.Message}), probably by another DistTrain cluster or node on this machine. " +
                $"Pick a free port (DISTTRAIN_{key.Replace(":", "__", StringComparison.Ordinal)}=...) or stop that process.", inner)
{
    /// <summary>The config key of the port.</summary>
    public string Key { get; } = key;

    /// <summary>The port.</summary>
    public int Port { get; } = port;
}
