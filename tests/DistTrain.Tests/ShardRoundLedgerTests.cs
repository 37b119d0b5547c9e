using DistTrain.Cluster.Training;
using Xunit;

namespace DistTrain.Tests;

/// <summary>
/// <see cref="ShardRoundLedger{TReport}"/>: the lock-step rounds of shards on separate nodes, each written to by every worker
/// directly. Hand-made arrival orders first, then a simulation of K shards, N workers and a coordinator exchanging messages
/// in random orders (per link in order, as Akka and TCP deliver them) while workers die at random points, even between
/// their slices, checked against one server stepping on the rounds as decided.
/// </summary>
public class ShardRoundLedgerTests
{
    private sealed record Slice(long Value);

    [Fact]
    public void A_round_closes_when_every_expected_worker_is_in_and_is_held_until_the_next_rounds_first_slice()
    {
        var ledger = new ShardRoundLedger<Slice>([2, 2, 1]);
        Assert.Equal(LedgerActionKind.None, ledger.Add(1, 0, new Slice(10), out var problem).Kind);
        Assert.Null(problem);
        Assert.Equal(LedgerActionKind.None, ledger.Add(0, 0, new Slice(20), out _).Kind);
        var close = ledger.Add(2, 0, new Slice(30), out _);
        Assert.Equal(LedgerActionKind.Close, close.Kind);
        Assert.Equal(0, close.Round);
        Assert.Equal([0, 1, 2], close.Reports.Select(r => r.Worker));
        Assert.Equal([20L, 10L, 30L], close.Reports.Select(r => r.Report.Value));
        Assert.Equal(0, ledger.HeldRound);
        Assert.Equal(1, ledger.OpenRound);

        // Worker 2 has one round only: round 1 closes on workers 0 and 1, and the first of them releases round 0.
        Assert.Equal(LedgerActionKind.None, ledger.Add(0, 1, new Slice(1), out _).Kind);
        Assert.Null(ledger.HeldRound);
        Assert.Equal(LedgerActionKind.Close, ledger.Add(1, 1, new Slice(2), out _).Kind);
        Assert.True(ledger.PartFinished);
    }

    /// <summary>
    /// A further part of an epoch (the samples a lost worker left) opens at its first round: a slice of an earlier round is
    /// refused, the part's rounds close as in a part from round 0, and it is over after its workers' last round; a slot whose
    /// end round is not after the first round is refused at the start.
    /// </summary>
    [Fact]
    public void A_further_part_opens_at_its_first_round_and_ends_after_its_workers_last()
    {
        var ledger = new ShardRoundLedger<Slice>([7, 0, 6], firstRound: 5);
        Assert.Equal(5, ledger.OpenRound);
        Assert.False(ledger.PartFinished);
        Assert.Equal(LedgerActionKind.None, ledger.Add(0, 0, new Slice(1), out var problem).Kind);
        Assert.Equal("it is for round 0, and this shard collects round 5", problem);
        Assert.Equal(LedgerActionKind.None, ledger.Add(2, 5, new Slice(2), out _).Kind);
        var close = ledger.Add(0, 5, new Slice(3), out _);
        Assert.Equal((LedgerActionKind.Close, 5), (close.Kind, close.Round));
        Assert.Equal([0, 2], close.Reports.Select(r => r.Worker));
        Assert.Equal((LedgerActionKind.Close, 6), (ledger.Add(0, 6, new Slice(4), out _).Kind, ledger.HeldRound!.Value));
        Assert.True(ledger.PartFinished); // worker 2's minibatches end at round 6, worker 0's at 7
        Assert.Throws<ArgumentOutOfRangeException>(() => new ShardRoundLedger<Slice>([7], firstRound: -1));
        Assert.Contains("A part that starts at round 5 has a worker whose minibatches end at or before it (7, 5)",
            Assert.Throws<ArgumentException>(() => new ShardRoundLedger<Slice>([7, 5], firstRound: 5)).Message);
    }

    [Theory]
    [InlineData(0, 1, "round 1, and this shard collects round 0")]
    [InlineData(5, 0, "worker slot 5 is not in this part")]
    [InlineData(2, 1, "worker 2 has no minibatch in round 1")]
    public void A_slice_that_does_not_belong_is_refused_with_the_reason(int worker, int round, string reason)
    {
        var ledger = new ShardRoundLedger<Slice>([2, 2, 1]);
        if (round == 1)
        {
            // Into round 1 first, for the third case.
            ledger.Add(0, 0, new Slice(1), out _);
            ledger.Add(1, 0, new Slice(1), out _);
            ledger.Add(2, 0, new Slice(1), out _);
            if (worker == 0) ledger = new ShardRoundLedger<Slice>([2, 2, 1]);
        }
        Assert.Equal(LedgerActionKind.None, ledger.Add(worker, round, new Slice(1), out var problem).Kind);
        Assert.NotNull(problem);
        Assert.Contains(reason, problem);
    }

    [Fact]
    public void A_repeated_slice_is_refused()
    {
        var ledger = new ShardRoundLedger<Slice>([1, 1]);
        ledger.Add(0, 0, new Slice(1), out _);
        Assert.Equal(LedgerActionKind.None, ledger.Add(0, 0, new Slice(2), out var problem).Kind);
        Assert.Contains("already arrived", problem);
    }

    [Fact]
    public void A_worker_lost_between_its_slices_is_dropped_and_the_shard_that_stepped_with_it_redoes_the_step()
    {
        // Worker 1 wrote its slice of round 0 to shard A and died before writing to shard B.
        var a = new ShardRoundLedger<Slice>([2, 2]);
        var b = new ShardRoundLedger<Slice>([2, 2]);
        a.Add(0, 0, new Slice(1), out _);
        Assert.Equal(LedgerActionKind.Close, a.Add(1, 0, new Slice(2), out _).Kind);
        b.Add(0, 0, new Slice(3), out _);

        var decision = LossDecision.From([a.Query(1), b.Query(1)]);
        Assert.Equal(new LossDecision(1, 0, Keep: false), decision);
        // A slice of the lost worker that arrives after the question is refused.
        b.Add(1, 0, new Slice(4), out var late);
        Assert.Contains("being removed", late);

        var redo = a.ApplyLoss(decision);
        Assert.Equal(LedgerActionKind.Redo, redo.Kind);
        Assert.Equal(0, redo.Round);
        Assert.Equal(1, redo.Stamp);
        Assert.Equal([(0, 1L)], redo.Reports.Select(r => (r.Worker, r.Report.Value)));
        var close = b.ApplyLoss(decision);
        Assert.Equal(LedgerActionKind.Close, close.Kind);
        Assert.Equal(1, close.Stamp);
        Assert.Equal([(0, 3L)], close.Reports.Select(r => (r.Worker, r.Report.Value)));
    }

    [Fact]
    public void A_worker_lost_after_all_its_slices_arrived_is_kept_and_nothing_stepped_changes()
    {
        var a = new ShardRoundLedger<Slice>([2, 2]);
        var b = new ShardRoundLedger<Slice>([2, 2]);
        a.Add(0, 0, new Slice(1), out _);
        a.Add(1, 0, new Slice(2), out _);
        b.Add(1, 0, new Slice(4), out _);

        var decision = LossDecision.From([a.Query(1), b.Query(1)]);
        Assert.Equal(new LossDecision(1, 0, Keep: true), decision);
        Assert.Equal(LedgerActionKind.None, a.ApplyLoss(decision).Kind);
        Assert.Equal(0, a.Stamp);
        // Shard B still waits for worker 0, which is alive; the lost worker's slice stays in.
        Assert.Equal(LedgerActionKind.None, b.ApplyLoss(decision).Kind);
        var close = b.Add(0, 0, new Slice(3), out _);
        Assert.Equal(LedgerActionKind.Close, close.Kind);
        Assert.Equal(0, close.Stamp);
        Assert.Equal([0, 1], close.Reports.Select(r => r.Worker));
    }

    [Fact]
    public void A_round_that_waited_only_for_the_lost_worker_closes_on_the_decision_about_an_earlier_round()
    {
        // The worker wrote both slices of round 0 and died; round 0 closed everywhere and the other worker went on to round 1,
        // whose slice reached this shard before the decision: the decision (about round 0, asked while another shard was
        // still there) lets round 1 close here.
        var a = new ShardRoundLedger<Slice>([2, 2]);
        a.Add(0, 0, new Slice(1), out _);
        a.Add(1, 0, new Slice(2), out _);
        a.Add(0, 1, new Slice(3), out _);
        var decision = LossDecision.From([new LossAnswer(1, 0, true), a.Query(1)]);
        Assert.Equal(new LossDecision(1, 0, Keep: true), decision);
        var close = a.ApplyLoss(decision);
        Assert.Equal(LedgerActionKind.Close, close.Kind);
        Assert.Equal(1, close.Round);
        Assert.Equal([(0, 3L)], close.Reports.Select(r => (r.Worker, r.Report.Value)));
    }

    [Fact]
    public void Dropping_a_slice_of_a_round_a_worker_already_took_is_refused()
    {
        var a = new ShardRoundLedger<Slice>([2, 2]);
        a.Add(0, 0, new Slice(1), out _);
        a.Add(1, 0, new Slice(2), out _);
        a.Add(0, 1, new Slice(3), out _); // worker 0 took round 0's result: round 0 is final
        var error = Assert.Throws<InvalidOperationException>(() => a.ApplyLoss(new LossDecision(1, 0, Keep: false)));
        Assert.Contains("can no longer redo", error.Message);
        // Refused as a whole: the ledger still counts the worker (its slice closes round 1) and no decision.
        Assert.Equal(0, a.Stamp);
        var close = a.Add(1, 1, new Slice(4), out var problem);
        Assert.Null(problem);
        Assert.Equal((LedgerActionKind.Close, 1, 0), (close.Kind, close.Round, close.Stamp));
    }

    /// <summary>
    /// <see cref="LossDecision.ApplyTo"/> cuts where one parameter server's <see cref="GradientRound"/> cuts for the same loss: a
    /// worker lost in the open round with its report in (kept) or not (dropped), with Training:KeepGlobalBatch or without, over
    /// random end rounds (some slots with none, some workers already done): the same first unused minibatch, the same cut
    /// (-1 when none) and the same ends after it.
    /// </summary>
    [Fact]
    public void A_decision_cuts_the_ends_where_one_servers_round_cuts_them_for_the_same_loss()
    {
        var random = new Random(11);
        var cuts = 0;
        for (var trial = 0; trial < 2000; trial++)
        {
            var workers = random.Next(1, 6);
            var ends = Enumerable.Range(0, workers).Select(_ => random.Next(4) == 0 ? 0 : random.Next(1, 8)).ToArray();
            var round = random.Next(0, 8);
            var lost = random.Next(workers);
            var keep = random.Next(2) == 0 && ends[lost] > round; // a report in the open round needs a minibatch in it
            var keepGlobalBatch = random.Next(2) == 0;

            var server = new GradientRound();
            server.StartPart(ends);
            server.Open(round);
            if (keep) server.Add(new DistTrain.Cluster.Protocol.GradientComputed(1, round, 0, lost, 1, 0, [0f]));
            var end = server.EndOf(lost);
            var (_, firstUnused) = server.Remove(lost);
            var cutFrom = keepGlobalBatch && firstUnused < end && server.Cut(round + 1) ? round + 1 : -1; // as LockStepPolicy decides

            var shardEnds = (int[])ends.Clone();
            var decided = new LossDecision(lost, round, keep).ApplyTo(shardEnds, keepGlobalBatch);
            Assert.Equal((firstUnused, cutFrom), decided);
            Assert.Equal(Enumerable.Range(0, workers).Select(server.EndOf), shardEnds);
            if (cutFrom >= 0) cuts++;
        }
        Assert.True(cuts > 100, $"{cuts} trials cut the part");
        Assert.Throws<ArgumentOutOfRangeException>(() => new LossDecision(3, 0, false).ApplyTo([1, 1], true));
    }

    // ---- The simulation ----

    private const long Modulus = 1_000_000_007;

    /// <summary>A worker's slice for shard <paramref name="shard"/> in <paramref name="round"/>, from the whole weights it computed on.</summary>
    private static long Gradient(int worker, int round, int shard, long[] weights)
    {
        var h = 1469598103934665603UL ^ (ulong)(worker * 131 + round * 7919 + shard * 104729);
        foreach (var w in weights) h = (h ^ (ulong)w) * 1099511628211UL;
        return (long)(h % Modulus);
    }

    private static long Step(long before, IEnumerable<long> slices)
    {
        var value = before;
        foreach (var s in slices) value = (value + s) % Modulus;
        return value;
    }

    private abstract record Message;
    private sealed record SliceMessage(int Worker, int Round, long Value) : Message;
    private sealed record ResultMessage(int Shard, int Round, int Stamp, long Value, int EndRound) : Message;
    private sealed record QueryMessage(int Worker) : Message;
    private sealed record AnswerMessage(LossAnswer Answer) : Message;
    private sealed record DecisionMessage(LossDecision Decision) : Message;
    private sealed record LostMessage(int Worker) : Message;

    private sealed class Simulation
    {
        private readonly Random _random;
        private readonly int _shards;
        private readonly int[] _rounds;
        private readonly Dictionary<(string From, string To), Queue<Message>> _links = [];
        private readonly ShardRoundLedger<Slice>[] _ledgers;
        private readonly long[] _value;
        private readonly long[] _inputs;
        public readonly Dictionary<int, long>[] History;             // per shard: each closed round's (final) result
        public readonly Dictionary<int, int[]>[] Included;           // per shard: each closed round's workers
        private readonly bool[] _alive;
        private readonly Queue<(int Shard, SliceMessage Slice)>[] _outbox;
        private readonly int[] _waitRound;
        private readonly (int Stamp, long Value, int EndRound)?[][] _pending;
        public readonly Dictionary<int, long[]>[] Assembled;         // per worker: the whole weights it took after each round
        private readonly Queue<int> _losses = new();
        private List<LossAnswer>? _answers;
        public readonly long[] Initial;
        public int Kills, Kept, Dropped;
        public readonly Dictionary<LedgerActionKind, int> Actions = [];
        private readonly bool _keepGlobalBatch;
        private readonly int[] _coordinatorEnds;                       // the shards' owner's end rounds, as it applies the decisions
        public int CutFrom { get; private set; } = -1;                 // the owner's cut (Training:KeepGlobalBatch), the first one made
        public int FirstCutDecisionRound { get; private set; } = -1;   // the round of the decision that made it
        public int RefusedPastCut;                                     // live workers' slices refused as past the cut
        public int[] EndOf => [.. _waitEnd];
        private readonly int[] _waitEnd;                               // per worker: the end round the last weights it took carry

        public Simulation(int seed, bool keepGlobalBatch = false)
        {
            _random = new Random(seed);
            _keepGlobalBatch = keepGlobalBatch;
            _shards = _random.Next(2, 4);
            var workers = _random.Next(2, 5);
            var rounds = _random.Next(3, 7);
            _rounds = [.. Enumerable.Range(0, workers).Select(_ => _random.Next(4) == 0 ? rounds - 1 : rounds)];
            _ledgers = [.. Enumerable.Range(0, _shards).Select(_ => new ShardRoundLedger<Slice>(_rounds))];
            Initial = [.. Enumerable.Range(1, _shards).Select(k => (long)k)];
            _value = (long[])Initial.Clone();
            _inputs = new long[_shards];
            History = [.. Enumerable.Range(0, _shards).Select(_ => new Dictionary<int, long>())];
            Included = [.. Enumerable.Range(0, _shards).Select(_ => new Dictionary<int, int[]>())];
            _alive = [.. _rounds.Select(_ => true)];
            _outbox = [.. _rounds.Select(_ => new Queue<(int, SliceMessage)>())];
            _waitRound = new int[workers];
            _pending = [.. _rounds.Select(_ => new (int, long, int)?[_shards])];
            Assembled = [.. _rounds.Select(_ => new Dictionary<int, long[]>())];
            _coordinatorEnds = (int[])_rounds.Clone();
            _waitEnd = [.. _rounds.Select(_ => int.MaxValue)];
            for (var w = 0; w < workers; w++) Compute(w, 0, Initial);
        }

        public int Workers => _rounds.Length;

        public int RoundsOf(int worker) => _rounds[worker];

        public bool IsAlive(int worker) => _alive[worker];

        public int LedgerCutFrom(int shard) => _ledgers[shard].CutFrom;

        public bool LedgerFinished(int shard) => _ledgers[shard].PartFinished;

        private void Send(string from, string to, Message message)
        {
            if (!_links.TryGetValue((from, to), out var queue)) _links[(from, to)] = queue = new Queue<Message>();
            queue.Enqueue(message);
        }

        private void Compute(int worker, int round, long[] weights)
        {
            _waitRound[worker] = round;
            Array.Clear(_pending[worker]);
            if (round >= Math.Min(_rounds[worker], _waitEnd[worker])) return;
            foreach (var k in Enumerable.Range(0, _shards).OrderBy(_ => _random.Next()))
                _outbox[worker].Enqueue((k, new SliceMessage(worker, round, Gradient(worker, round, k, weights))));
        }

        /// <summary>Runs until nothing is left to deliver; false if it ran too long.</summary>
        public bool Run(int maxKills)
        {
            for (var steps = 0; steps < 100_000; steps++)
            {
                var choices = new List<Action>();
                foreach (var (link, queue) in _links)
                    if (queue.Count > 0) choices.Add(() => Deliver(link.From, link.To, queue.Dequeue()));
                for (var w = 0; w < Workers; w++)
                {
                    var worker = w;
                    if (_alive[w] && _outbox[w].Count > 0)
                        choices.Add(() =>
                        {
                            var (shard, slice) = _outbox[worker].Dequeue();
                            Send($"w{worker}", $"s{shard}", slice);
                        });
                }
                if (choices.Count == 0) return true;
                if (Kills < maxKills && _random.Next(25) == 0)
                {
                    var victims = Enumerable.Range(0, Workers).Where(w => _alive[w]).ToArray();
                    if (victims.Length > 0)
                    {
                        var victim = victims[_random.Next(victims.Length)];
                        _alive[victim] = false;
                        _outbox[victim].Clear(); // what it had not written yet is lost; what it wrote may still arrive
                        Kills++;
                        Send("membership", "coordinator", new LostMessage(victim));
                        continue;
                    }
                }
                choices[_random.Next(choices.Count)]();
            }
            return false;
        }

        private void Deliver(string from, string to, Message message)
        {
            switch (message)
            {
                case SliceMessage slice:
                {
                    var k = int.Parse(to[1..]);
                    var action = _ledgers[k].Add(slice.Worker, slice.Round, new Slice(slice.Value), out var problem);
                    // Only a lost worker's slices may be refused: a live worker never sends one that does not belong, but for one
                    // computed on results that came before a decision cut the part there.
                    if (problem is not null && _alive[slice.Worker] && !(problem.Contains("KeepGlobalBatch") && slice.Round >= CutFrom && CutFrom >= 0))
                        throw new InvalidOperationException($"Shard {k} refused live worker {slice.Worker}'s slice of round {slice.Round}: {problem}");
                    if (problem is not null && _alive[slice.Worker]) RefusedPastCut++;
                    Act(k, action);
                    break;
                }
                case QueryMessage query:
                {
                    var k = int.Parse(to[1..]);
                    Send(to, "coordinator", new AnswerMessage(_ledgers[k].Query(query.Worker)));
                    break;
                }
                case DecisionMessage decision:
                {
                    var k = int.Parse(to[1..]);
                    Act(k, _ledgers[k].ApplyLoss(decision.Decision, _keepGlobalBatch));
                    break;
                }
                case LostMessage lost:
                    _losses.Enqueue(lost.Worker);
                    NextQuestion();
                    break;
                case AnswerMessage answer:
                    _answers!.Add(answer.Answer);
                    if (_answers.Count < _shards) break;
                    var made = LossDecision.From(_answers);
                    if (made.Keep) Kept++;
                    else Dropped++;
                    var (_, cut) = made.ApplyTo(_coordinatorEnds, _keepGlobalBatch);
                    if (cut >= 0 && CutFrom < 0) (CutFrom, FirstCutDecisionRound) = (cut, made.Round);
                    _answers = null;
                    for (var k = 0; k < _shards; k++) Send("coordinator", $"s{k}", new DecisionMessage(made));
                    NextQuestion();
                    break;
                case ResultMessage result:
                {
                    var w = int.Parse(to[1..]);
                    if (!_alive[w] || result.Round != _waitRound[w]) break;
                    _pending[w][result.Shard] = (result.Stamp, result.Value, result.EndRound);
                    TryAssemble(w);
                    break;
                }
            }
        }

        private void NextQuestion()
        {
            if (_answers is not null || _losses.Count == 0) return;
            var worker = _losses.Dequeue();
            _answers = [];
            for (var k = 0; k < _shards; k++) Send("coordinator", $"s{k}", new QueryMessage(worker));
        }

        private void Act(int k, LedgerAction<Slice> action)
        {
            Actions[action.Kind] = Actions.GetValueOrDefault(action.Kind) + 1;
            switch (action.Kind)
            {
                case LedgerActionKind.Close:
                    _inputs[k] = _value[k];
                    goto case LedgerActionKind.Redo;
                case LedgerActionKind.Redo:
                    _value[k] = Step(_inputs[k], action.Reports.Select(r => r.Report.Value));
                    History[k][action.Round] = _value[k];
                    Included[k][action.Round] = [.. action.Reports.Select(r => r.Worker)];
                    for (var w = 0; w < Workers; w++) Send($"s{k}", $"w{w}", new ResultMessage(k, action.Round, action.Stamp, _value[k], _ledgers[k].EndRound));
                    break;
            }
        }

        private void TryAssemble(int w)
        {
            var pending = _pending[w];
            if (pending.Any(p => p is null) || pending.Select(p => p!.Value.Stamp).Distinct().Count() > 1) return;
            var weights = pending.Select(p => p!.Value.Value).ToArray();
            var round = _waitRound[w];
            _waitEnd[w] = pending.Min(p => p!.Value.EndRound); // as ShardedReplicaLink takes the lowest
            Assembled[w][round] = weights;
            Compute(w, round + 1, weights);
        }
    }

    /// <remarks>With Training:KeepGlobalBatch a decision about a worker with minibatches left also cuts the part for every
    /// worker after the decision's round: every shard and the owner reach the same cut, no shard closes a round from it, each
    /// ends its part, and the surviving workers take every round before it.</remarks>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Shards_with_workers_dying_anywhere_step_as_one_server_on_the_decided_rounds_and_no_worker_takes_an_undone_result(bool keepGlobalBatch)
    {
        var totals = new Dictionary<LedgerActionKind, int>();
        int runsWithLoss = 0, kept = 0, dropped = 0, cuts = 0, refusedPastCut = 0;
        for (var seed = 0; seed < 3000; seed++)
        {
            var sim = new Simulation(seed, keepGlobalBatch);
            var maxKills = seed % 4 == 0 ? 0 : seed % 7 == 0 ? sim.Workers : 1 + seed % (sim.Workers - 1);
            Assert.True(sim.Run(maxKills), $"seed {seed}: the simulation did not settle");
            foreach (var (kind, count) in sim.Actions) totals[kind] = totals.GetValueOrDefault(kind) + count;
            if (sim.Kills > 0) runsWithLoss++;
            kept += sim.Kept;
            dropped += sim.Dropped;

            // One server's replay of the rounds as the shards decided them: each round's slices from the weights after the
            // round before, summed onto them.
            var shards = sim.History.Length;
            var reference = sim.Initial;
            for (var round = 0; sim.History[0].ContainsKey(round) && sim.Included[0][round].Length > 0; round++)
            {
                var included = sim.Included[0][round];
                var next = new long[shards];
                for (var k = 0; k < shards; k++)
                {
                    Assert.True(sim.History[k].ContainsKey(round), $"seed {seed}: shard {k} never closed round {round}, which shard 0 did");
                    Assert.Equal(included, sim.Included[k][round]);
                    next[k] = Step(reference[k], included.Select(w => Gradient(w, round, k, reference)));
                    Assert.True(next[k] == sim.History[k][round], $"seed {seed}: shard {k}'s round {round} differs from one server's");
                }
                // Every worker that took this round's weights took these: none computed on a result that was undone.
                for (var w = 0; w < sim.Workers; w++)
                    if (sim.Assembled[w].TryGetValue(round, out var taken))
                        Assert.True(taken.SequenceEqual(next), $"seed {seed}: worker {w} took round {round}'s weights [{string.Join(", ", taken)}], not the decided [{string.Join(", ", next)}]");
                reference = next;
            }
            // Nothing stalls: every surviving worker took the result of each of its rounds (before the cut, if any).
            var end = sim.CutFrom >= 0 ? sim.CutFrom : int.MaxValue;
            for (var w = 0; w < sim.Workers; w++)
                if (sim.IsAlive(w))
                    for (var round = 0; round < Math.Min(sim.RoundsOf(w), end); round++)
                        Assert.True(sim.Assembled[w].ContainsKey(round), $"seed {seed}: surviving worker {w} never got round {round}'s weights");
            Assert.True(keepGlobalBatch || sim.CutFrom < 0, $"seed {seed}: a cut at round {sim.CutFrom} without Training:KeepGlobalBatch");
            if (sim.CutFrom >= 0)
            {
                cuts++;
                refusedPastCut += sim.RefusedPastCut;
                Assert.Equal(sim.FirstCutDecisionRound + 1, sim.CutFrom);
                for (var k = 0; k < shards; k++)
                {
                    Assert.True(sim.LedgerCutFrom(k) == sim.CutFrom, $"seed {seed}: shard {k} cut at {sim.LedgerCutFrom(k)}, the owner at {sim.CutFrom}");
                    Assert.True(sim.History[k].Keys.All(round => round < sim.CutFrom), $"seed {seed}: shard {k} closed a round from the cut at {sim.CutFrom}");
                    Assert.True(sim.LedgerFinished(k), $"seed {seed}: shard {k}'s part is not over after the cut at {sim.CutFrom}");
                }
            }
            // No worker's round is taken that no shard closed.
            for (var w = 0; w < sim.Workers; w++)
                foreach (var round in sim.Assembled[w].Keys)
                    Assert.True(sim.History[0].ContainsKey(round), $"seed {seed}: worker {w} took round {round}, which no shard closed");
        }
        // The paths the rules exist for were all taken, many times over.
        Assert.True(runsWithLoss > 1000, $"{runsWithLoss} runs lost a worker");
        Assert.True(totals.GetValueOrDefault(LedgerActionKind.Redo) > 50, $"{totals.GetValueOrDefault(LedgerActionKind.Redo)} redone steps");
        Assert.True(kept > 200 && dropped > 200, $"{kept} decisions kept a lost worker's slice, {dropped} dropped it");
        if (keepGlobalBatch) Assert.True(cuts > 1000 && refusedPastCut > 100, $"{cuts} runs cut a part; {refusedPastCut} slices past a cut were refused");
    }
}
