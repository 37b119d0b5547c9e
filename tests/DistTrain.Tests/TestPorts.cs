using System.Net;
using System.Net.Sockets;

namespace DistTrain.Tests;

/// <summary>
/// Free TCP ports for nodes a test starts and that bind later (a child process, a host started after the port is named).
/// A port the system picks (bind to port 0) comes from its ephemeral range, where any outgoing connection on the machine
/// may take it between the pick and the node's bind (a suite run lost a parameter server's Cluster:Port that way: "the
/// port is in use"). These ports come from below that range (10000 up to 20000, or up to the range's start if lower),
/// which the system never hands to outgoing connections and the local scripts' <c>free-port.sh</c> (20000 and up) does not
/// use, and each is handed out once per test process.
/// </summary>
internal static class TestPorts
{
    private const int Lowest = 10000;
    private const int Highest = 20000; // exclusive
    private static readonly object Gate = new();
    private static readonly HashSet<int> Given = [];
    private static int _next = Lowest + Random.Shared.Next(Highest - Lowest);

    /// <summary>One free port; see <see cref="Free(int)"/>.</summary>
    public static int Free() => Free(1)[0];

    /// <summary>
    /// <paramref name="count"/> distinct ports that nothing listens on, on any interface, when asked, none of them handed
    /// out before by this process.
    /// </summary>
    /// <exception cref="InvalidOperationException">No free port was found in the range.</exception>
    public static int[] Free(int count)
    {
        var top = Math.Min(Highest, EphemeralStart());
        if (top - Lowest < 1000) return SystemPicked(count); // an unusual range: fall back on the system's pick
        var ports = new List<int>(count);
        lock (Gate)
        {
            for (var tried = 0; ports.Count < count && tried < top - Lowest; tried++)
            {
                var port = _next;
                _next = _next + 1 >= top ? Lowest : _next + 1;
                if (Given.Contains(port) || !IsFree(port)) continue;
                Given.Add(port);
                ports.Add(port);
            }
        }
        return ports.Count == count ? [.. ports]
            : throw new InvalidOperationException($"No {count} free TCP ports between {Lowest} and {top}: free some, or widen the range below the ephemeral ports.");
    }

    /// <summary>The first port of the system's ephemeral range (net.ipv4.ip_local_port_range), 32768 when it cannot be read.</summary>
    private static int EphemeralStart()
    {
        try
        {
            var fields = File.ReadAllText("/proc/sys/net/ipv4/ip_local_port_range").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            return fields.Length > 0 && int.TryParse(fields[0], out var start) ? start : 32768;
        }
        catch (IOException) { return 32768; }
        catch (UnauthorizedAccessException) { return 32768; }
    }

    /// <summary>Whether a listener can bind <paramref name="port"/> on every interface (so on loopback too) right now.</summary>
    private static bool IsFree(int port)
    {
        try
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            socket.Bind(new IPEndPoint(IPAddress.Any, port));
            socket.Listen(1);
            return true;
        }
        catch (SocketException) { return false; }
    }

    /// <summary><paramref name="count"/> distinct ports the system picks, held open together while they are picked.</summary>
    private static int[] SystemPicked(int count)
    {
        var listeners = Enumerable.Range(0, count).Select(_ => new TcpListener(IPAddress.Loopback, 0)).ToList();
        try
        {
            foreach (var listener in listeners) listener.Start();
            return [.. listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port)];
        }
        finally
        {
            foreach (var listener in listeners) listener.Stop();
        }
    }
}
