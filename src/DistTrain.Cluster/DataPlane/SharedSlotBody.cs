using System.Runtime.InteropServices;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// One shared-memory slot whose bodies the receiver reads in place instead of copying them out. Each body it takes is a
/// <see cref="SharedSlotLoan"/>: the receiver reads the floats through it and releases it when done, which hands the slot
/// back to the sender. A loan holds a lease on the mapping (<see cref="SharedMemoryRegion.Lease"/>), so the memory stays
/// mapped until it is released even if the link closes first.
/// </summary>
/// <remarks>
/// Every take gets a new generation, and only the loan of the current one can hand the slot back: a loan released late
/// or twice never frees the slot a later body holds.
/// </remarks>
internal sealed class SharedSlotBody
{
    private readonly SharedSlots _slots;
    private readonly int _slot;
    private SharedMemoryRegion.MappingLease _lease;
    private int _count;
    private int _generation;       // of the newest take; never 0
    private int _heldGeneration;   // the generation holding the slot, 0 when the slot is the sender's

    private SharedSlotBody(SharedSlots slots, int slot)
    {
        _slots = slots;
        _slot = slot;
    }

    /// <summary>One per slot of <paramref name="slots"/>, in slot order.</summary>
    public static SharedSlotBody[] For(SharedSlots slots) => [.. Enumerable.Range(0, slots.Count).Select(slot => new SharedSlotBody(slots, slot))];

    /// <summary>Takes the slot's body of <paramref name="count"/> floats for reading in place.</summary>
    /// <exception cref="IOException">The body does not fit the slot, or the sender wrote the slot again before it was released.</exception>
    /// <exception cref="ObjectDisposedException">The region is closing.</exception>
    public SharedSlotLoan Take(int count, string peer)
    {
        if ((long)count * sizeof(float) > _slots.SlotBytes)
            throw new IOException($"data plane: {peer} announced a body of {(long)count * sizeof(float)} bytes in a shared-memory slot of {_slots.SlotBytes}; the connection is closed.");
        if (Volatile.Read(ref _heldGeneration) != 0)
            throw new IOException($"data plane: {peer} wrote shared-memory slot {_slot} again before this side released it; the connection is closed.");
        var generation = _generation == int.MaxValue ? 1 : _generation + 1;
        _generation = generation;
        _lease = _slots.Lease();
        _count = count;
        Volatile.Write(ref _heldGeneration, generation);
        return new SharedSlotLoan(this, generation);
    }

    /// <summary>The floats of the body taken last.</summary>
    internal ReadOnlySpan<float> Values => MemoryMarshal.Cast<byte, float>(_slots.Slot(_slot))[.._count];

    /// <summary>Hands the slot back to the sender if <paramref name="generation"/> still holds it; otherwise nothing.</summary>
    internal void Release(int generation)
    {
        if (Interlocked.CompareExchange(ref _heldGeneration, 0, generation) != generation) return;
        var lease = _lease; // read before the slot is handed back: the next take stores its own
        _slots.Release(_slot);
        lease.Dispose();
    }
}

/// <summary>A body taken from a shared-memory slot (<see cref="SharedSlotBody.Take"/>): read in place, then released once.</summary>
internal sealed class SharedSlotLoan
{
    private readonly SharedSlotBody _body;
    private readonly int _generation;

    internal SharedSlotLoan(SharedSlotBody body, int generation)
    {
        _body = body;
        _generation = generation;
    }

    /// <summary>The body's floats; valid until <see cref="Release"/>.</summary>
    public ReadOnlySpan<float> Values => _body.Values;

    /// <summary>Hands the slot back to the sender. Safe to call twice, and after the slot has gone on to a later body.</summary>
    public void Release() => _body.Release(_generation);
}
