using DistTrain.Cluster.Security;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// The data-plane tokens of a data plane's worker slots: each slot's <see cref="DataPlaneHello"/> must carry that slot's own
/// token (<see cref="DataPlaneHello.TokenBytes"/> random bytes, compared in constant time), so a peer that holds one worker's
/// token cannot take another worker's slot. The parameter server's job host draws a slot's token when a worker registers
/// (<see cref="Issue"/>) and spends it on the slot's first accepted connection (<see cref="Spend"/>); a shard node's
/// <see cref="ShardDataPlane"/> is given every slot's token when it starts (<see cref="Of"/>). Not thread-safe: one actor owns it.
/// </summary>
internal sealed class WorkerTokens
{
    private readonly Dictionary<int, byte[]> _bySlot = [];

    /// <summary>Slot <paramref name="slot"/>'s token, drawn (<see cref="DataPlaneHello.NewToken"/>) if the slot has none yet.</summary>
    public byte[] Issue(int slot)
    {
        if (!_bySlot.TryGetValue(slot, out var token)) _bySlot[slot] = token = DataPlaneHello.NewToken();
        return token;
    }

    /// <summary>The tokens of slots 0 to <c>tokens.Count</c> - 1, slot w's at index w (copied).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="tokens"/> or one of its tokens is null.</exception>
    /// <exception cref="ArgumentException">A token is not <see cref="DataPlaneHello.TokenBytes"/> bytes, or two slots have the same
    /// token (each slot needs its own, or either worker could take the other's slot); the message names the slots.</exception>
    public static WorkerTokens Of(IReadOnlyList<byte[]> tokens)
    {
        ArgumentNullException.ThrowIfNull(tokens);
        var result = new WorkerTokens();
        for (var w = 0; w < tokens.Count; w++)
        {
            var token = tokens[w] ?? throw new ArgumentNullException(nameof(tokens), $"Worker slot {w}'s data-plane token is null.");
            if (token.Length != DataPlaneHello.TokenBytes)
                throw new ArgumentException($"Worker slot {w}'s data-plane token has {token.Length} bytes, not {DataPlaneHello.TokenBytes}.", nameof(tokens));
            for (var other = 0; other < w; other++)
                if (JobIdentity.Matches(token, result._bySlot[other]))
                    throw new ArgumentException($"Worker slots {other} and {w} were given the same data-plane token: each slot needs its own " +
                        "(DataPlaneHello.NewToken), or either worker could take the other's slot.", nameof(tokens));
            result._bySlot[w] = (byte[])token.Clone();
        }
        return result;
    }

    /// <summary>True if slot <paramref name="slot"/> has a token (issued and not spent).</summary>
    public bool Has(int slot) => _bySlot.ContainsKey(slot);

    /// <summary>True if <paramref name="hello"/> carries the token of the slot it claims (<see cref="DataPlaneHello.WorkerIndex"/>).</summary>
    public bool Carries(DataPlaneHello hello) =>
        _bySlot.TryGetValue(hello.WorkerIndex, out var token) && JobIdentity.Matches(hello.Token, token);

    /// <summary>True if <paramref name="token"/> is some slot's token. Every slot's is compared, whichever matches, so the time
    /// taken does not tell which.</summary>
    public bool IsAny(ReadOnlySpan<byte> token)
    {
        var found = false;
        foreach (var known in _bySlot.Values) found |= JobIdentity.Matches(token, known);
        return found;
    }

    /// <summary>Spends slot <paramref name="slot"/>'s token: no later hello carries it (one connection per registration).</summary>
    public void Spend(int slot) => _bySlot.Remove(slot);
}
