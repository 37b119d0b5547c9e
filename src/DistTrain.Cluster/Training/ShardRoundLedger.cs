namespace DistTrain.Cluster.Training;

/// <summary>What a shard does after a <see cref="ShardRoundLedger{TReport}"/> call.</summary>
public enum LedgerActionKind
{
    /// <summary>Nothing: the round waits for more slices.</summary>
    None,

    /// <summary>Keep the step's inputs (the shard's slice of the weights and optimizer state), step on the reports, and
    /// broadcast the result stamped with <see cref="LedgerAction{TReport}.Stamp"/>.</summary>
    Close,

    /// <summary>Put the kept inputs back and step again on the remaining reports (none: the round makes no step), then
    /// broadcast the result with the new stamp.</summary>
    Redo,
}

/// <summary>
/// A shard's answer to the coordinator's question about a lost worker, given by <see cref="ShardRoundLedger{TReport}.Query"/>.
/// </summary>
/// <param name="Worker">The lost worker's slot.</param>
/// <param name="OpenRound">The round the shard collects slices for.</param>
/// <param name="HasOpen">True when the shard holds the worker's slice of <paramref name="OpenRound"/>, or does not expect one.</param>
[MessagePack.MessagePackObject]
public readonly record struct LossAnswer([property: MessagePack.Key(0)] int Worker, [property: MessagePack.Key(1)] int OpenRound,
    [property: MessagePack.Key(2)] bool HasOpen);

/// <summary>
/// What every shard applies for a lost worker (<see cref="ShardRoundLedger{TReport}.ApplyLoss"/>): whether its slice of
/// <paramref name="Round"/> counts.
/// </summary>
/// <param name="Worker">The lost worker's slot.</param>
/// <param name="Round">The round still open at some shard when the worker was lost.</param>
/// <param name="Keep">True when every shard holds the worker's slice of <paramref name="Round"/>, so the round keeps it;
/// false when it is closed without the worker's slice everywhere.</param>
[MessagePack.MessagePackObject]
public readonly record struct LossDecision([property: MessagePack.Key(0)] int Worker, [property: MessagePack.Key(1)] int Round,
    [property: MessagePack.Key(2)] bool Keep)
{
    /// <summary>
    /// The decision from every shard's answer: the round in question is the lowest open one, and it keeps the worker's
    /// slice when every shard still at that round holds it (a shard past it closed it with the slice, or without a slice it
    /// did not expect).
    /// </summary>
    /// <remarks>A shard more than one round past another closed rounds in which the lost worker had no minibatch (no worker
    /// computes a round before it holds every shard's result of the one before); the decision keeps then, since a shard
    /// still missing an expected slice would hold every other at most one round ahead.</remarks>
    /// <exception cref="ArgumentException">No answers, or answers about different workers.</exception>
    public static LossDecision From(IReadOnlyList<LossAnswer> answers)
    {
        ArgumentNullException.ThrowIfNull(answers);
        if (answers.Count == 0) throw new ArgumentException("A loss decision needs every shard's answer; there are none.", nameof(answers));
        var worker = answers[0].Worker;
        var round = int.MaxValue;
        foreach (var answer in answers)
        {
            if (answer.Worker != worker)
                throw new ArgumentException($"The answers are about workers {worker} and {answer.Worker}; a decision is about one lost worker.", nameof(answers));
            round = Math.Min(round, answer.OpenRound);
        }
        var keep = true;
        foreach (var answer in answers)
            if (answer.OpenRound == round && !answer.HasOpen) keep = false;
        return new LossDecision(worker, round, keep);
    }

    /// <summary>
    /// Applies the decision to a part's end rounds: the lost worker's end becomes its first minibatch that did not count, and
    /// with Training:KeepGlobalBatch, when that worker left minibatches untrained, every end after <see cref="Round"/> + 1 comes
    /// down to it, so the other workers' minibatches from there go to the further part too, planned at the global minibatch
    /// over the workers alive (as one parameter server cuts the part after its open round, <see cref="GradientRound.Cut"/>).
    /// Every shard and the shards' owner apply the same decisions in the same order to the same ends, so all reach the same cut.
    /// </summary>
    /// <remarks>The cut is the round after the decision's: every shard is at that round or one past it when the decision comes.
    /// A worker that holds a result of <see cref="Round"/> sent after the decision takes the cut from it and computes no round
    /// from there; but when every shard closed <see cref="Round"/> before the decision (a keeping decision, the shards' answers
    /// given at different times), the workers may already have computed the cut round on results that all came before it.
    /// Those slices are left out (<see cref="ShardRoundLedger{TReport}.LeftOutAtCut"/>), and their minibatches are trained in the
    /// further part.</remarks>
    /// <param name="ends">By worker slot: the round after the slot's last minibatch in the part (0: none); changed in place.</param>
    /// <param name="keepGlobalBatch">Training:KeepGlobalBatch (<see cref="Protocol.StartEpoch.KeepGlobalBatch"/>).</param>
    /// <returns>The lost worker's first minibatch that did not count (its end when it had none left), and the round from which
    /// every other worker's minibatches were cut, or -1 when none was.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="Worker"/> is not a slot of <paramref name="ends"/>.</exception>
    public (int FirstUnused, int CutFrom) ApplyTo(int[] ends, bool keepGlobalBatch)
    {
        ArgumentNullException.ThrowIfNull(ends);
        ArgumentOutOfRangeException.ThrowIfNegative(Worker);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(Worker, ends.Length);
        var end = ends[Worker];
        var firstUnused = Math.Min(end, Keep ? Round + 1 : Round);
        ends[Worker] = firstUnused;
        if (!keepGlobalBatch || firstUnused >= end) return (firstUnused, -1);
        var cutFrom = Round + 1;
        var cut = false;
        for (var w = 0; w < ends.Length; w++)
            if (ends[w] > cutFrom)
            {
                ends[w] = cutFrom;
                cut = true;
            }
        return (firstUnused, cut ? cutFrom : -1);
    }
}

/// <summary>What a shard does next: see <see cref="LedgerActionKind"/>.</summary>
/// <typeparam name="TReport">A worker's slice of its report.</typeparam>
/// <param name="Kind">The action.</param>
/// <param name="Round">The round it concerns.</param>
/// <param name="Stamp">The stamp its broadcast carries: the number of loss decisions the shard has applied.</param>
/// <param name="Reports">For <see cref="LedgerActionKind.Close"/> and <see cref="LedgerActionKind.Redo"/>: the reports to step on,
/// by worker slot in ascending order (the order a single server sums them in).</param>
public sealed record LedgerAction<TReport>(LedgerActionKind Kind, int Round, int Stamp, IReadOnlyList<(int Worker, TReport Report)> Reports)
{
    /// <summary>No action.</summary>
    public static readonly LedgerAction<TReport> None = new(LedgerActionKind.None, -1, 0, []);
}

/// <summary>
/// One parameter-server shard's lock-step rounds when the shards run on separate nodes and the workers write their slices
/// to each directly: which slices of the open round are in, when the round closes, and what a lost worker's decision
/// does. No Akka dependency; the shard actor calls it and acts on the <see cref="LedgerAction{TReport}"/> it returns.
/// </summary>
/// <remarks>
/// <para>With no single point that every report passes through, a worker that dies between its slices can leave one shard
/// with its slice of round r and another without. The rules (docs/architecture.md, "Where the shards run"):</para>
/// <list type="bullet">
/// <item>A shard closes a round as soon as it holds the slice of every live worker expected in it, and keeps the step's
/// inputs until the first slice of the next round arrives: a worker sends that only after it holds every shard's result,
/// so from then on no decision can undo the round.</item>
/// <item>For a lost worker the coordinator asks every shard (<see cref="Query"/>, which also stops taking that worker's
/// slices, so the answers cannot go stale) and tells every shard the <see cref="LossDecision"/>. When the round keeps the
/// worker's slice, nothing already stepped changes. When it drops the slice, a shard that stepped with it redoes the step
/// without it: that shard is exactly one round ahead, since another shard, missing the slice, could not close the round.</item>
/// <item>Every broadcast carries the shard's stamp, the number of dropping decisions it applied, and a worker takes a
/// round's weights only from one result of every shard, all with one stamp: a result that is redone and the others'
/// results of the round, which all come after the decision, never have the same stamp.</item>
/// </list>
/// <para>Decisions are made one at a time, and each shard applies them in one order. The common case (no loss) needs no
/// message beyond the slices and broadcasts.</para>
/// </remarks>
/// <typeparam name="TReport">A worker's slice of its report.</typeparam>
public sealed class ShardRoundLedger<TReport> where TReport : class
{
    private readonly int[] _roundsPerWorker;
    private readonly bool[] _alive;
    private readonly bool[] _frozen;
    private readonly TReport?[] _open;
    private readonly TReport?[] _held;

    /// <summary>Starts a part whose first round is <paramref name="firstRound"/>, in which worker i has its minibatches in the rounds
    /// from <paramref name="firstRound"/> up to <c>roundsPerWorker[i]</c> (exclusive; 0 for an empty slot).</summary>
    /// <param name="roundsPerWorker">By worker slot: the round after its last minibatch (copied). For a part that starts at round 0
    /// this is the worker's count of rounds.</param>
    /// <param name="firstRound">The part's first round: 0 for an epoch's first part; a further part of the epoch (the samples a lost
    /// worker left) starts later (<see cref="Protocol.StartEpoch.FirstRound"/>).</param>
    /// <exception cref="ArgumentException">A negative count, or a slot whose last round is set but not after <paramref name="firstRound"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="firstRound"/> is negative.</exception>
    public ShardRoundLedger(int[] roundsPerWorker, int firstRound = 0)
    {
        ArgumentNullException.ThrowIfNull(roundsPerWorker);
        ArgumentOutOfRangeException.ThrowIfNegative(firstRound);
        if (roundsPerWorker.Any(r => r < 0)) throw new ArgumentException("A worker's round count cannot be negative.", nameof(roundsPerWorker));
        if (roundsPerWorker.Any(r => r > 0 && r <= firstRound))
            throw new ArgumentException($"A part that starts at round {firstRound} has a worker whose minibatches end at or before it " +
                $"({string.Join(", ", roundsPerWorker)}): each slot's end round is 0 (no minibatch) or after the first round.", nameof(roundsPerWorker));
        _roundsPerWorker = (int[])roundsPerWorker.Clone();
        OpenRound = firstRound;
        _alive = [.. roundsPerWorker.Select(r => r > 0)];
        _frozen = new bool[roundsPerWorker.Length];
        _open = new TReport?[roundsPerWorker.Length];
        _held = new TReport?[roundsPerWorker.Length];
    }

    /// <summary>The round whose slices are being collected.</summary>
    public int OpenRound { get; private set; }

    /// <summary>The closed round whose inputs are still kept (it may yet be redone), or null.</summary>
    public int? HeldRound { get; private set; }

    /// <summary>The number of decisions applied that dropped a lost worker's slice; every broadcast carries it.</summary>
    public int Stamp { get; private set; }

    /// <summary>The round from which Training:KeepGlobalBatch cut the part for every worker after a loss
    /// (<see cref="ApplyLoss"/>), or -1 while it is not cut.</summary>
    public int CutFrom { get; private set; } = -1;

    /// <summary>The worker slots whose slices of the open round the last <see cref="ApplyLoss"/> left out because its cut ended the
    /// part before that round (slices computed on results sent before the decision; see <see cref="LossDecision.ApplyTo"/>);
    /// empty when it left out none.</summary>
    public IReadOnlyList<int> LeftOutAtCut { get; private set; } = [];

    /// <summary>The end round every broadcast carries (<see cref="Protocol.ShardWeightsHeader.EndRound"/>): <see cref="CutFrom"/> once
    /// the part is cut, so a worker that holds a result sent after the cut computes no round from it; <see cref="int.MaxValue"/>
    /// before (each worker's minibatches end it).</summary>
    public int EndRound => CutFrom < 0 ? int.MaxValue : CutFrom;

    /// <summary>True when no live worker has a slice to send in <see cref="OpenRound"/> or later: the part is over here.</summary>
    public bool PartFinished => !Enumerable.Range(0, _alive.Length).Any(w => Expected(w, OpenRound));

    private bool Expected(int worker, int round) => _alive[worker] && _roundsPerWorker[worker] > round;

    /// <summary>
    /// Takes worker <paramref name="worker"/>'s slice of <paramref name="round"/>; the action is a
    /// <see cref="LedgerActionKind.Close"/> when it completes the round.
    /// </summary>
    /// <param name="worker">The sender's slot.</param>
    /// <param name="round">The round the slice belongs to.</param>
    /// <param name="report">The slice.</param>
    /// <param name="problem">Why the slice is refused (it is then left out), or null.</param>
    public LedgerAction<TReport> Add(int worker, int round, TReport report, out string? problem)
    {
        ArgumentNullException.ThrowIfNull(report);
        problem = null;
        if (worker < 0 || worker >= _alive.Length) problem = $"worker slot {worker} is not in this part (0 to {_alive.Length - 1})";
        else if (_frozen[worker]) problem = $"worker {worker} is being removed as lost";
        else if (!_alive[worker]) problem = $"worker {worker} was removed as lost";
        else if (round != OpenRound) problem = $"it is for round {round}, and this shard collects round {OpenRound}";
        else if (CutFrom >= 0 && round >= CutFrom)
            problem = $"Training:KeepGlobalBatch ended this part at round {CutFrom} after a lost worker, and this minibatch is trained in the epoch's further part";
        else if (_roundsPerWorker[worker] <= round) problem = $"worker {worker} has no minibatch in round {round}";
        else if (_open[worker] is not null) problem = $"worker {worker}'s slice of round {round} already arrived";
        if (problem is not null) return LedgerAction<TReport>.None;
        // The sender holds every shard's result of the round before, so no decision can undo it any more.
        if (HeldRound == round - 1) Release();
        _open[worker] = report;
        return CloseIfComplete();
    }

    /// <summary>
    /// The shard's answer about lost worker <paramref name="worker"/>. From now on the worker's slices are refused, so the
    /// answer holds until the decision.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="worker"/> is not a slot of this part.</exception>
    public LossAnswer Query(int worker)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(worker);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(worker, _alive.Length);
        if (_alive[worker]) _frozen[worker] = true;
        return new LossAnswer(worker, OpenRound, !Expected(worker, OpenRound) || _open[worker] is not null);
    }

    /// <summary>
    /// Applies the coordinator's decision about a lost worker (every shard applies every decision, in one order). The worker
    /// is no longer waited for, so the action may also be the <see cref="LedgerActionKind.Close"/> of the open round.
    /// </summary>
    /// <param name="decision">The decision, as every shard gets it.</param>
    /// <param name="keepGlobalBatch">Training:KeepGlobalBatch: when the lost worker left minibatches untrained, the part ends for
    /// every worker after the decision's round (<see cref="LossDecision.ApplyTo"/>, <see cref="CutFrom"/>), and slices of later
    /// rounds already taken are left out.</param>
    /// <exception cref="InvalidOperationException">The decision drops a slice of a round this shard cannot redo: a round
    /// more than one behind its open round, or one whose result a worker has already taken (both impossible while a shard
    /// misses the slice), or a round this shard has not reached.</exception>
    public LedgerAction<TReport> ApplyLoss(LossDecision decision, bool keepGlobalBatch = false)
    {
        var worker = decision.Worker;
        ArgumentOutOfRangeException.ThrowIfNegative(worker);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(worker, _alive.Length);
        if (decision.Round > OpenRound)
            throw new InvalidOperationException($"A decision about round {decision.Round} reached a shard still at round {OpenRound}: the shards are out of step.");
        // Checked before anything changes, so a refused decision leaves the ledger as it was.
        if (!decision.Keep && decision.Round != OpenRound && (decision.Round != OpenRound - 1 || HeldRound != decision.Round))
            throw new InvalidOperationException($"Worker {worker}'s slice of round {decision.Round} is to be dropped, but this shard at round {OpenRound} can no longer redo that round: a worker already took its result, which is only possible once every shard holds the slice.");
        _alive[worker] = false;
        _frozen[worker] = false;
        var (_, cutFrom) = decision.ApplyTo(_roundsPerWorker, keepGlobalBatch);
        LeftOutAtCut = [];
        if (cutFrom >= 0)
        {
            CutFrom = CutFrom < 0 ? cutFrom : Math.Min(CutFrom, cutFrom);
            // Slices of the open round taken before the decision, now past their worker's end (a round all shards had closed
            // with the lost worker's slice, whose results the workers computed on): their minibatches go to the further part.
            List<int> leftOut = [];
            for (var w = 0; w < _open.Length; w++)
                if (_roundsPerWorker[w] <= OpenRound && _open[w] is not null)
                {
                    _open[w] = null;
                    if (w != worker) leftOut.Add(w);
                }
            LeftOutAtCut = leftOut;
        }
        if (decision.Keep) return CloseIfComplete(); // the open round may have waited only for the lost worker
        Stamp++;
        if (decision.Round == OpenRound)
        {
            _open[worker] = null;
            return CloseIfComplete();
        }
        _held[worker] = null;
        return new LedgerAction<TReport>(LedgerActionKind.Redo, decision.Round, Stamp, Reports(_held));
    }

    /// <summary>Closes the open round once every live worker expected in it has sent its slice.</summary>
    private LedgerAction<TReport> CloseIfComplete()
    {
        var any = false;
        for (var w = 0; w < _alive.Length; w++)
        {
            if (Expected(w, OpenRound) && _open[w] is null) return LedgerAction<TReport>.None;
            any |= _open[w] is not null;
        }
        if (!any) return LedgerAction<TReport>.None; // nobody left in this round: the part is over (PartFinished)
        var round = OpenRound;
        Array.Copy(_open, _held, _open.Length);
        Array.Clear(_open);
        HeldRound = round;
        OpenRound = round + 1;
        return new LedgerAction<TReport>(LedgerActionKind.Close, round, Stamp, Reports(_held));
    }

    private void Release()
    {
        HeldRound = null;
        Array.Clear(_held);
    }

    private static List<(int, TReport)> Reports(TReport?[] slots)
    {
        var reports = new List<(int, TReport)>();
        for (var w = 0; w < slots.Length; w++)
            if (slots[w] is { } report) reports.Add((w, report));
        return reports;
    }
}
