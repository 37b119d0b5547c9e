using System.Diagnostics;
using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.Training;

/// <summary>
/// The parameter server's loaned weights messages (see TrainingProtocol.cs): a ring of three shared messages for
/// broadcasts to every worker, and two per worker for weights sent to one worker alone. Receivers copy the weights while
/// they handle the message and keep no reference, so the arrays are reused instead of allocating one per message.
/// </summary>
/// <remarks>
/// <para>Shared ring: a broadcast's array is rewritten three broadcasts later. In lock-step rounds every active worker
/// copies the weights before it answers, and the next broadcast needs every answer (docs/architecture.md).</para>
/// <para>A worker with no minibatch left in a part still gets the part's broadcasts and does not answer them, so nothing
/// stops the ring from passing it: a link to it three broadcasts behind would read an array already rewritten. Nothing
/// uses such weights. The worker only loads them (<c>Worker.Train</c> computes nothing past its shard's end) and loads later
/// broadcasts over them; the two reads that use weights read their own message safely: a minibatch is computed on a
/// broadcast the worker answers before the round after it can be broadcast, and the epoch's evaluation (which waits for
/// the epoch's last version) reads the epoch's closing broadcast, after which nothing is broadcast until every evaluation
/// has answered.</para>
/// <para>Per worker: a worker is sent new weights only after its previous report arrived, which it sent after copying
/// the weights it computed on; the two arrays alternate.</para>
/// <para>Every array starts as the whole version-0 vector, so the frozen tensors, which are never rewritten, are right
/// in each.</para>
/// </remarks>
public sealed class WeightsOutbox
{
    private readonly WeightsUpdated[] _shared;
    private readonly bool[] _sharedPublished = new bool[SharedSlots];
    private readonly float[] _initial;
    private readonly int _weightsLength;
    private readonly int _offset; // where this outbox's weights start in its arrays (a shard's slice of shared arrays)
    private readonly SharedWeights? _sharedWeights; // a shard's: the arrays all the shards write their slices into
    private WeightsUpdated?[][] _perWorker = [];
    private int[] _nextPerWorker = [];
    private int _nextShared;
    private bool _nextTouched;        // NextShared was handed out since the last broadcast: its array may be half rewritten

    /// <summary>Creates the outbox.</summary>
    /// <param name="initial">The first message's contents: the whole weights vector (and, for local SGD, the optimizer state after it).</param>
    /// <param name="weightsLength">Floats of the weights vector at the start of each message (the layout's total length).</param>
    public WeightsOutbox(float[] initial, int weightsLength)
    {
        ArgumentNullException.ThrowIfNull(initial);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(weightsLength, initial.Length);
        _initial = (float[])initial.Clone();
        _weightsLength = weightsLength;
        _shared = [.. Enumerable.Range(0, SharedSlots).Select(_ => new WeightsUpdated(0, 0, 0, (float[])_initial.Clone()))];
    }

    /// <summary>
    /// Creates a parameter-server shard's outbox over the arrays all the shards share (<see cref="SharedWeights"/>): its
    /// messages carry the whole arrays, of which this shard writes <c>[offset, offset + length)</c> (in local SGD, its slice
    /// of each state buffer too). The shards send the same sequence of messages, so the n-th array of every shard's ring
    /// (or of its two per worker) is the same array, whole once every shard has sent its n-th message; no shard writes it
    /// again before its worker has copied it, by the rules above.
    /// </summary>
    /// <param name="shared">The arrays the shards share.</param>
    /// <param name="offset">The shard's first element.</param>
    /// <param name="length">Its elements.</param>
    /// <exception cref="ArgumentException">The slice does not fit the arrays.</exception>
    public WeightsOutbox(SharedWeights shared, int offset, int length)
    {
        ArgumentNullException.ThrowIfNull(shared);
        if (offset < 0 || length < 0 || (long)offset + length > shared.Length)
            throw new ArgumentException($"Shared weights arrays of {shared.Length} floats do not hold [{offset}, {(long)offset + length}).", nameof(shared));
        _initial = [];
        _sharedWeights = shared;
        _weightsLength = length;
        _offset = offset;
        _shared = [.. shared.Ring.Select(array => new WeightsUpdated(0, 0, 0, array))];
    }

    /// <summary>Broadcast arrays in the ring: a broadcast's array is rewritten this many broadcasts later.</summary>
    public const int SharedSlots = 3;

    /// <summary>The array the next broadcast will carry; fill it, then call <see cref="PublishShared"/>.</summary>
    public float[] NextShared
    {
        get
        {
            _nextTouched = true;
            return _shared[_nextShared].Weights;
        }
    }

    /// <summary>The array of the broadcast before the newest one.</summary>
    public float[] PreviousShared => _shared[(_nextShared + SharedSlots - 1) % SharedSlots].Weights;

    /// <summary>
    /// Stamps the message whose array is <see cref="NextShared"/> and moves the ring on; returns the message to send to every
    /// worker: the weights of <paramref name="version"/> for <paramref name="round"/> of <paramref name="part"/>, whose
    /// minibatches end before <paramref name="endRound"/>.
    /// </summary>
    public WeightsUpdated PublishShared(EpochPart part, int round, long version, int endRound)
    {
        ArgumentNullException.ThrowIfNull(part);
        var message = _shared[_nextShared].Reuse(part.Epoch, round, version, Stopwatch.GetTimestamp(), shard: -1, part.Part, endRound);
        _sharedPublished[_nextShared] = true;
        _nextShared = (_nextShared + 1) % SharedSlots;
        _nextTouched = false;
        return message;
    }

    /// <summary>Sizes the per-worker messages for a part with <paramref name="workers"/> slots (the first use allocates them).</summary>
    public void ForWorkers(int workers)
    {
        if (_perWorker.Length >= workers) return;
        var grown = new WeightsUpdated?[workers][];
        Array.Copy(_perWorker, grown, _perWorker.Length);
        for (var i = _perWorker.Length; i < workers; i++) grown[i] = new WeightsUpdated?[2];
        _perWorker = grown;
        Array.Resize(ref _nextPerWorker, workers);
    }

    /// <summary>
    /// A message for worker <paramref name="worker"/> alone, with <paramref name="source"/> copied into its array (at this
    /// outbox's offset): the weights of <paramref name="version"/>, on which it computes minibatch <paramref name="round"/> of shard
    /// <paramref name="shard"/> in <paramref name="part"/>. Call <see cref="ForWorkers"/> first.
    /// </summary>
    public WeightsUpdated ForWorker(int worker, EpochPart part, int round, long version, int shard, ReadOnlySpan<float> source)
    {
        ArgumentNullException.ThrowIfNull(part);
        var slots = _perWorker[worker];
        var index = _nextPerWorker[worker];
        _nextPerWorker[worker] ^= 1;
        var message = slots[index] ??= new WeightsUpdated(0, 0, 0, _sharedWeights?.PerWorker(worker, index) ?? (float[])_initial.Clone());
        source.CopyTo(message.Weights.AsSpan(_offset));
        return message.Reuse(part.Epoch, round, version, Stopwatch.GetTimestamp(), shard, part.Part, int.MaxValue);
    }

    /// <summary>
    /// A copy of the weights vector of the newest published message of exactly <paramref name="version"/>, or null when
    /// none of the messages still held is of it (a parameter-server shard answers with it when another shard's step went
    /// bad, so the whole model's last good weights can be put together).
    /// </summary>
    public float[]? Published(long version)
    {
        for (var k = 1; k <= (_nextTouched ? SharedSlots - 1 : SharedSlots); k++)
        {
            var slot = (_nextShared + SharedSlots - k) % SharedSlots;
            if (_sharedPublished[slot] && _shared[slot].Version == version) return _shared[slot].Weights.AsSpan(_offset, _weightsLength).ToArray();
        }
        foreach (var slots in _perWorker)
            foreach (var message in slots)
                if (message is not null && message.Version == version) return message.Weights.AsSpan(_offset, _weightsLength).ToArray();
        return null;
    }

    /// <summary>
    /// The last weights known to be good before those of <paramref name="failedVersion"/> went bad: the newest published
    /// message older than that version, else that version's own message (the first step failed); null when none was
    /// published. The next broadcast's array counts unless it was handed out (<see cref="NextShared"/>) since the last
    /// broadcast: a step that failed on a non-finite loss never wrote it, and after a version is broadcast again (a part's
    /// start), it holds the version before.
    /// </summary>
    /// <param name="failedVersion">The version whose reports were not finite (their computation used it).</param>
    /// <returns>A copy of the weights vector, its version, and whether it is older than <paramref name="failedVersion"/>.</returns>
    public (float[]? Weights, long Version, bool Older) LastGood(long failedVersion)
    {
        WeightsUpdated? best = null;
        WeightsUpdated? same = null;
        void Consider(WeightsUpdated candidate)
        {
            if (candidate.Version < failedVersion && (best is null || candidate.Version > best.Version)) best = candidate;
            if (candidate.Version == failedVersion) same ??= candidate;
        }
        // The next shared slot may be half rewritten by a failed step: a candidate only if nothing was written into it.
        for (var k = 1; k <= (_nextTouched ? SharedSlots - 1 : SharedSlots); k++)
        {
            var slot = (_nextShared + SharedSlots - k) % SharedSlots;
            if (_sharedPublished[slot]) Consider(_shared[slot]);
        }
        foreach (var slots in _perWorker)
            foreach (var message in slots)
                if (message is not null) Consider(message);
        var chosen = best ?? same;
        return chosen is null ? (null, -1, false) : (chosen.Weights.AsSpan(_offset, _weightsLength).ToArray(), chosen.Version, best is not null);
    }
}

/// <summary>
/// The weights arrays that parameter-server shards share (<see cref="WeightsOutbox(SharedWeights, int, int)"/>): the
/// broadcast ring, and two arrays per worker for the messages to one worker alone, made on first use. Each starts as a
/// copy of the whole first message, so the frozen tensors, which no shard writes, are right in each.
/// </summary>
public sealed class SharedWeights
{
    private readonly float[] _initial;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(int Worker, int Slot), float[]> _perWorker = new();

    /// <summary>Creates the arrays from the whole first message (the weights, and in local SGD the optimizer state after them).</summary>
    public SharedWeights(float[] initial)
    {
        ArgumentNullException.ThrowIfNull(initial);
        _initial = (float[])initial.Clone();
        Ring = [.. Enumerable.Range(0, WeightsOutbox.SharedSlots).Select(_ => (float[])_initial.Clone())];
    }

    /// <summary>Floats of each array.</summary>
    public int Length => _initial.Length;

    /// <summary>The broadcast ring.</summary>
    public float[][] Ring { get; }

    /// <summary>Array <paramref name="slot"/> (0 or 1) of worker <paramref name="worker"/>'s messages, the same for every shard.</summary>
    public float[] PerWorker(int worker, int slot) => _perWorker.GetOrAdd((worker, slot), static (_, initial) => (float[])initial.Clone(), _initial);
}
