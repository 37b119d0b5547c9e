namespace DistTrain.Cluster.Training;

/// <summary>
/// The minibatches of one part of an epoch, handed to whichever worker is free (the asynchronous modes). Minibatch
/// (r, s) is round r of shard s, as the coordinator planned the shards; they are handed out in round order, a worker
/// taking its own shard's minibatch of the earliest round that has one left when it can, else that round's first one
/// left. A fast worker therefore does more minibatches than a slow one, and every minibatch is trained once.
/// </summary>
public sealed class MinibatchQueue
{
    private const byte Unassigned = 0, Assigned = 1, Done = 2;

    private byte[] _state = [];      // [(round - first) * shards + shard]
    private int[] _batches = [];     // per shard: the round after its last minibatch
    private int[] _unassigned = [];  // per round (relative): minibatches not handed out
    private (int Round, int Shard)[] _inFlight = [];
    private int _first;
    private int _rounds;
    private int _shards;
    private int _firstOpen;          // first relative round that may still have an unassigned minibatch

    /// <summary>Minibatches not yet done.</summary>
    public int Remaining { get; private set; }

    /// <summary>Minibatches in the part.</summary>
    public int Count { get; private set; }

    /// <summary>The round of the part's first minibatch.</summary>
    public int FirstRound => _first;

    /// <summary>The round after the part's last minibatch.</summary>
    public int EndRound => _first + _rounds;

    /// <summary>True when every minibatch is done.</summary>
    public bool AllDone => Remaining == 0;

    /// <summary>Starts a part.</summary>
    /// <param name="batchesPerShard">Per shard, the absolute round after its last minibatch (0 or ≤ <paramref name="firstRound"/> for none).</param>
    /// <param name="firstRound">The part's first round.</param>
    /// <param name="workers">Worker slots that may take minibatches.</param>
    /// <param name="done">Minibatches already trained before (a resumed checkpoint's), marked done from the start.</param>
    public void Start(int[] batchesPerShard, int firstRound, int workers, IEnumerable<(int Round, int Shard)>? done = null)
    {
        _batches = (int[])batchesPerShard.Clone();
        _shards = _batches.Length;
        _first = firstRound;
        _rounds = Math.Max(0, _batches.DefaultIfEmpty(0).Max() - firstRound);
        _state = new byte[_rounds * _shards];
        _unassigned = new int[_rounds];
        _inFlight = new (int, int)[workers];
        Array.Fill(_inFlight, (-1, -1));
        Remaining = 0;
        for (var r = 0; r < _rounds; r++)
            for (var s = 0; s < _shards; s++)
                if (Exists(_first + r, s))
                {
                    _unassigned[r]++;
                    Remaining++;
                }
        Count = Remaining;
        _firstOpen = 0;
        foreach (var (round, shard) in done ?? [])
            if (Exists(round, shard) && _state[Slot(round, shard)] == Unassigned)
            {
                _state[Slot(round, shard)] = Done;
                _unassigned[round - _first]--;
                Remaining--;
            }
    }

    /// <summary>True when shard <paramref name="shard"/> has a minibatch in <paramref name="round"/>.</summary>
    public bool Exists(int round, int shard) => shard >= 0 && shard < _shards && round >= _first && round < _batches[shard];

    /// <summary>True when minibatch (<paramref name="round"/>, <paramref name="shard"/>) is done.</summary>
    public bool IsDone(int round, int shard) => Exists(round, shard) && _state[Slot(round, shard)] == Done;

    /// <summary>Minibatches of <paramref name="round"/> in the part.</summary>
    public int InRound(int round)
    {
        var count = 0;
        for (var s = 0; s < _shards; s++)
            if (Exists(round, s)) count++;
        return count;
    }

    private int Slot(int round, int shard) => (round - _first) * _shards + shard;

    /// <summary>The minibatch worker <paramref name="worker"/> computes, or null when it has none.</summary>
    public (int Round, int Shard)? InFlight(int worker) =>
        worker < _inFlight.Length && _inFlight[worker].Round >= 0 ? _inFlight[worker] : null;

    /// <summary>
    /// Hands worker <paramref name="worker"/> (which has none in flight) the next minibatch of a round up to
    /// <paramref name="lastRound"/>: its own shard's in the earliest round with one left, else that round's first left.
    /// </summary>
    /// <returns>The minibatch, or null when none is left up to that round.</returns>
    public (int Round, int Shard)? Assign(int worker, int lastRound)
    {
        while (_firstOpen < _rounds && _unassigned[_firstOpen] == 0) _firstOpen++;
        var end = (int)Math.Min(_rounds, (long)lastRound - _first + 1); // long: int.MaxValue means no bound
        for (var r = _firstOpen; r < end; r++)
        {
            if (_unassigned[r] == 0) continue;
            var round = _first + r;
            var shard = worker < _shards && Exists(round, worker) && _state[Slot(round, worker)] == Unassigned ? worker : -1;
            for (var s = 0; shard < 0 && s < _shards; s++)
                if (Exists(round, s) && _state[Slot(round, s)] == Unassigned) shard = s;
            _state[Slot(round, shard)] = Assigned;
            _unassigned[r]--;
            _inFlight[worker] = (round, shard);
            return (round, shard);
        }
        return null;
    }

    /// <summary>Marks worker <paramref name="worker"/>'s minibatch done; returns it.</summary>
    /// <exception cref="InvalidOperationException">The worker has none in flight.</exception>
    public (int Round, int Shard) Complete(int worker)
    {
        var minibatch = InFlight(worker) ?? throw new InvalidOperationException($"Worker {worker} has no minibatch in flight.");
        _state[Slot(minibatch.Round, minibatch.Shard)] = Done;
        _inFlight[worker] = (-1, -1);
        Remaining--;
        return minibatch;
    }

    /// <summary>Puts worker <paramref name="worker"/>'s minibatch in flight back (the worker is lost); returns it, or null.</summary>
    public (int Round, int Shard)? Release(int worker)
    {
        if (InFlight(worker) is not { } minibatch) return null;
        _state[Slot(minibatch.Round, minibatch.Shard)] = Unassigned;
        _unassigned[minibatch.Round - _first]++;
        _firstOpen = Math.Min(_firstOpen, minibatch.Round - _first);
        _inFlight[worker] = (-1, -1);
        return minibatch;
    }

    /// <summary>Un-marks a done minibatch whose gradient will never be applied (a part that ends before its round did).</summary>
    public void Undo(int round, int shard)
    {
        if (!IsDone(round, shard)) return;
        _state[Slot(round, shard)] = Unassigned;
        _unassigned[round - _first]++;
        _firstOpen = Math.Min(_firstOpen, round - _first);
        Remaining++;
    }

    /// <summary>Every minibatch not done, in round order (for the coordinator to plan again).</summary>
    public List<(int Round, int Shard)> NotDone()
    {
        var left = new List<(int, int)>();
        for (var r = 0; r < _rounds; r++)
            for (var s = 0; s < _shards; s++)
                if (Exists(_first + r, s) && _state[r * _shards + s] != Done) left.Add((_first + r, s));
        return left;
    }

    /// <summary>The first round that has a minibatch not done; <see cref="EndRound"/> when all are.</summary>
    public int FirstRoundNotDone()
    {
        for (var r = 0; r < _rounds; r++)
            for (var s = 0; s < _shards; s++)
                if (Exists(_first + r, s) && _state[r * _shards + s] != Done) return _first + r;
        return EndRound;
    }

    /// <summary>The done minibatches of rounds at or after <paramref name="round"/>: trained ahead of that position.</summary>
    public List<(int Round, int Shard)> DoneFrom(int round)
    {
        var ahead = new List<(int, int)>();
        for (var r = Math.Max(0, round - _first); r < _rounds; r++)
            for (var s = 0; s < _shards; s++)
                if (Exists(_first + r, s) && _state[r * _shards + s] == Done) ahead.Add((_first + r, s));
        return ahead;
    }
}
