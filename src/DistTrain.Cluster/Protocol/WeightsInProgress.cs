using System.Diagnostics;
using Akka.Actor;

namespace DistTrain.Cluster.Protocol;

/// <summary>
/// The next broadcast's weights while the parameter server's optimizer writes them, for receivers in the server's own
/// process that copy them on as they are written: a worker's data-plane link fills its shared-memory slot during the
/// update instead of after it, so the copy (about 0.1 ms for the main job's 235,146 floats) runs on an otherwise idle core
/// and the broadcast that follows needs only its header (docs/architecture.md, "Frames").
/// </summary>
/// <remarks>
/// <para>One writer, the server's thread: <see cref="Begin"/>, then <see cref="Advance"/> after each block the optimizer
/// writes (in order, so the written part is a prefix of <see cref="Weights"/>), then exactly one of <see cref="Finish"/>
/// (the whole array is the broadcast's) or <see cref="Abandon"/> (the step failed; no broadcast follows). Any number of
/// readers call <see cref="CopyTo"/>. The count is published with a release write after the floats it covers, and read
/// with an acquire read before them (.NET's <see cref="Volatile"/>), so a reader never copies a float before it is written.</para>
/// <para>The server reuses a few of these in turn, and a reuse writes the same ring array again. A stamp (a generation
/// count and the state, in one word) guards a reader against it as a sequence lock does: <see cref="Begin"/> changes the
/// stamp with a full fence before the new write starts, and the reader checks the stamp again, behind a full fence, after
/// each copy, so a copy that may hold floats of a later write is given up. A reader that starts only after the reuse (it
/// fell that many broadcasts behind) copies the later broadcast whole; <see cref="CopyTo"/> returns that broadcast's
/// version, and the caller matches it against the broadcast it sends.</para>
/// <para>In-process only: not an <see cref="IDistTrainMessage"/>, never serialized, never forwarded to a worker.</para>
/// </remarks>
public sealed class WeightsInProgress : INoSerializationVerificationNeeded
{
    private const long Writing = 0, Finished = 1, Abandoned = 2, StateMask = 3;

    /// <summary>How long <see cref="CopyTo"/> waits for the writer before it gives up (a guard against a hang, not a limit a
    /// step comes near: the main job's update takes about 0.2 ms).</summary>
    public static readonly TimeSpan WaitLimit = TimeSpan.FromSeconds(30);

    private float[] _weights = [];
    private long _version;
    private int _written;
    private long _stamp = Abandoned; // generation << 2 | state

    /// <summary>Creates an idle notice (nothing is being written until <see cref="Begin"/>).</summary>
    public WeightsInProgress() => Advance = end => Volatile.Write(ref _written, end);

    /// <summary>The array being written: the whole message of the coming broadcast.</summary>
    public float[] Weights => Volatile.Read(ref _weights);

    /// <summary>The writer's callback for <see cref="Core.Optimization.Optimizer.StepWeightedAverage"/>'s <c>written</c>:
    /// floats of <see cref="Weights"/> written so far from its start (an unsharded server's copy target starts at 0). Made
    /// once, so a step allocates nothing.</summary>
    public Action<int> Advance { get; }

    /// <summary>Starts a new broadcast's write into <paramref name="weights"/>, the broadcast of weights version
    /// <paramref name="version"/>; nothing of it is written yet.</summary>
    public void Begin(float[] weights, long version)
    {
        ArgumentNullException.ThrowIfNull(weights);
        // The new generation first, as abandoned, behind a full fence: a reader that reads the array or the version after
        // this sees the stamp changed when it checks again, so it never pairs the new array or version with the old
        // generation's floats. Then the fields, then the state the readers wait for.
        var generation = (Volatile.Read(ref _stamp) >> 2) + 1;
        Interlocked.Exchange(ref _stamp, generation << 2 | Abandoned);
        Volatile.Write(ref _written, 0);
        Volatile.Write(ref _weights, weights);
        Volatile.Write(ref _version, version);
        Interlocked.Exchange(ref _stamp, generation << 2 | Writing); // a full fence: no write of the step passes it
    }

    /// <summary>The whole of <see cref="Weights"/> is the broadcast's (the trainable part from the optimizer and whatever
    /// follows it, such as merged running statistics).</summary>
    public void Finish() => Volatile.Write(ref _stamp, (Volatile.Read(ref _stamp) & ~StateMask) | Finished);

    /// <summary>The step failed: no broadcast of these weights follows; readers give up.</summary>
    public void Abandon() => Volatile.Write(ref _stamp, (Volatile.Read(ref _stamp) & ~StateMask) | Abandoned);

    /// <summary>
    /// Copies the weights into <paramref name="target"/> as they are written, waiting (spinning, then yielding the core
    /// to the writer) for the rest; the part after the optimizer's, written last, is copied once the write has finished.
    /// </summary>
    /// <param name="target">At least <see cref="Weights"/>.Length floats.</param>
    /// <param name="weights">The array the copy was of.</param>
    /// <param name="version">The weights version of the broadcast copied, to match against the broadcast that follows.</param>
    /// <returns>True when the whole array of one finished write was copied; false when the write was abandoned, begun again
    /// under the reader, or did not finish within <see cref="WaitLimit"/> (the target then holds a part, to be discarded).</returns>
    /// <exception cref="ArgumentException"><paramref name="target"/> is shorter than the weights.</exception>
    public bool CopyTo(Span<float> target, out float[] weights, out long version)
    {
        var stamp = Volatile.Read(ref _stamp);
        weights = Weights;
        version = Volatile.Read(ref _version);
        if (target.Length < weights.Length)
            throw new ArgumentException($"A target of {target.Length} floats cannot take weights of {weights.Length}.", nameof(target));
        var generation = stamp >> 2;
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref _stamp) >> 2 != generation) return false; // begun again while the array and version were read
        var copied = 0;
        var spin = new SpinWait();
        var started = Stopwatch.GetTimestamp();
        while (true)
        {
            stamp = Volatile.Read(ref _stamp);
            if (stamp >> 2 != generation || (stamp & StateMask) == Abandoned) return false;
            var finished = (stamp & StateMask) == Finished;
            // Once finished, the tail after the optimizer's part (merged running statistics) is the broadcast's too.
            var written = finished ? weights.Length : Math.Min(Volatile.Read(ref _written), weights.Length);
            if (written > copied)
            {
                weights.AsSpan(copied, written - copied).CopyTo(target[copied..]);
                copied = written;
                Interlocked.MemoryBarrier(); // the copy's reads before the stamp's
                if (Volatile.Read(ref _stamp) >> 2 != generation) return false;
                spin.Reset();
            }
            else if (!finished)
            {
                spin.SpinOnce(sleep1Threshold: -1); // never a 1 ms sleep: the update takes a fraction of that
                if (spin.Count % 1024 == 0 && Stopwatch.GetElapsedTime(started) > WaitLimit) return false;
            }
            if (finished) return true;
        }
    }
}
