using System.Runtime.InteropServices;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// A shared-memory slot the sender writes a body into in place, instead of filling an array and copying it in: a
/// worker computes its gradient report straight into the slot its data plane will announce. The slot is acquired
/// (<see cref="SharedSlots.Acquire"/>) when this is created, and a lease (<see cref="SharedMemoryRegion.Lease"/>)
/// keeps the region mapped until the body is announced or abandoned, also if the link closes meanwhile.
/// </summary>
/// <remarks>Used by one thread, the writer's: created, filled, then exactly one of <see cref="Announce"/> or
/// <see cref="Abandon"/>; either ends the lease, and a second call does nothing.</remarks>
internal sealed class SharedSlotWrite
{
    private readonly SharedSlots _slots;
    private SharedMemoryRegion.MappingLease _lease;
    private bool _ended;

    private SharedSlotWrite(SharedSlots slots, int slot, int count, SharedMemoryRegion.MappingLease lease)
    {
        _slots = slots;
        Slot = slot;
        Count = count;
        _lease = lease;
    }

    /// <summary>
    /// Acquires the next slot of <paramref name="slots"/> for a body of <paramref name="count"/> floats; null when the
    /// body does not fit a slot or the region is closing (the caller then writes the body the ordinary way, which
    /// reports the closed connection).
    /// </summary>
    public static SharedSlotWrite? TryStart(SharedSlots slots, int count)
    {
        if (count < 0 || (long)count * sizeof(float) > slots.SlotBytes) return null;
        SharedMemoryRegion.MappingLease lease;
        try
        {
            lease = slots.Lease();
        }
        catch (ObjectDisposedException)
        {
            return null;
        }
        try
        {
            return new SharedSlotWrite(slots, slots.Acquire(), count, lease);
        }
        catch (IOException)
        {
            lease.Dispose();
            return null;
        }
    }

    /// <summary>The slot acquired.</summary>
    public int Slot { get; }

    /// <summary>Floats of the body.</summary>
    public int Count { get; }

    /// <summary>Bytes of the body.</summary>
    public int Bytes => Count * sizeof(float);

    /// <summary>The body's floats, to be written; valid until <see cref="Announce"/> or <see cref="Abandon"/>.</summary>
    /// <exception cref="ObjectDisposedException">The write has ended.</exception>
    public Span<float> Values
    {
        get
        {
            ObjectDisposedException.ThrowIf(_ended, this);
            return MemoryMarshal.Cast<byte, float>(_slots.Slot(Slot))[..Count];
        }
    }

    /// <summary>The body is written: ends the lease; the caller then sends the header that names <see cref="Slot"/>.</summary>
    public void Announce()
    {
        if (_ended) return;
        _ended = true;
        _lease.Dispose();
    }

    /// <summary>The body will never be announced (its computation failed): the slot goes back to the sender's turn, so the
    /// next body takes it again instead of waiting for a release the receiver will never make.</summary>
    public void Abandon()
    {
        if (_ended) return;
        _ended = true;
        _slots.Unacquire(Slot);
        _lease.Dispose();
    }
}
