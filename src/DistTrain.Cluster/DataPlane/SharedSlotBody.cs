using System.Runtime.InteropServices;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// A received body left in its shared-memory slot instead of copied out: the receiver reads the floats in place and
/// calls <see cref="Release"/> when done, which hands the slot back to the sender. It holds a lease on the mapping
/// (<see cref="SharedMemoryRegion.Lease"/>), so the memory stays mapped until released even if the link closes first.
/// </summary>
/// <remarks>
/// One instance per slot, reused: the sender cannot write a slot again before it is released, so a slot never carries
/// two bodies at once.
/// </remarks>
internal sealed class SharedSlotBody
{
    private readonly SharedSlots _slots;
    private readonly int _slot;
    private SharedMemoryRegion.MappingLease _lease;
    private int _count;
    private int _held; // 1 from Take to Release

    private SharedSlotBody(SharedSlots slots, int slot)
    {
        _slots = slots;
        _slot = slot;
    }

    /// <summary>One body per slot of <paramref name="slots"/>, in slot order.</summary>
    public static SharedSlotBody[] For(SharedSlots slots) => [.. Enumerable.Range(0, slots.Count).Select(slot => new SharedSlotBody(slots, slot))];

    /// <summary>Takes the slot's body of <paramref name="count"/> floats for reading in place.</summary>
    /// <exception cref="IOException">The body does not fit the slot, or the slot was taken and not released.</exception>
    /// <exception cref="ObjectDisposedException">The region is closing.</exception>
    public SharedSlotBody Take(int count, string peer)
    {
        if ((long)count * sizeof(float) > _slots.SlotBytes)
            throw new IOException($"data plane: {peer} announced a body of {(long)count * sizeof(float)} bytes in a shared-memory slot of {_slots.SlotBytes}; the connection is closed.");
        if (Interlocked.Exchange(ref _held, 1) == 1)
            throw new IOException($"data plane: {peer} wrote shared-memory slot {_slot} again before this side released it; the connection is closed.");
        _lease = _slots.Lease();
        _count = count;
        return this;
    }

    /// <summary>The body's floats; valid until <see cref="Release"/>.</summary>
    public ReadOnlySpan<float> Values => MemoryMarshal.Cast<byte, float>(_slots.Slot(_slot))[.._count];

    /// <summary>Hands the slot back to the sender and ends the lease. Safe to call twice.</summary>
    public void Release()
    {
        if (Interlocked.Exchange(ref _held, 0) == 0) return;
        _slots.Release(_slot);
        _lease.Dispose();
    }
}
