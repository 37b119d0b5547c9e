using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// Memory that a parameter server and a worker on the same host both map, so that weights and gradients cross between
/// their processes as one copy in and one copy out instead of through the kernel's TCP stack. The data-plane connection
/// stays: it still carries every frame's header, in order, and a header whose <see cref="TensorFrame.Header.SharedSlot"/>
/// is set says the body is in that slot. The socket is also the memory barrier: a sender fills a slot before it writes
/// the header, a receiver copies the slot out after it read it.
/// <para>The memory is an anonymous Linux memory file (<c>memfd_create</c>), its size reserved up front (so a host out of
/// memory fails the offer, not a later write) and then sealed against shrinking and growing (<c>F_SEAL_SHRINK</c>,
/// <c>F_SEAL_GROW</c>), so neither process can cut it under the other's mapping (which would fault the other process
/// with SIGBUS). It has no name in any directory: the worker opens it as <c>/proc/&lt;parameter server pid&gt;/fd/&lt;n&gt;</c>,
/// which only a process of the same user (or root) in the same process namespace can do, and it vanishes with the last
/// mapping, also when a process dies. A worker in another container or on another machine cannot open it and declines;
/// the pair stays on TCP.</para>
/// <para>Layout: a 4,096-byte header (magic "DTSM", layout version, the 32-byte nonce, the slot counts and sizes, then one
/// 64-byte line per slot holding how many frames the receiver has released from it), then the weight slots (parameter
/// server → worker), then the gradient slots (worker → parameter server), each slot starting on a 4,096-byte page.</para>
/// </summary>
internal sealed unsafe partial class SharedMemoryRegion : IDisposable
{
    /// <summary>Slots per direction a region may have (an offer announcing more is declined).</summary>
    public const int MaxSlots = 8;

    /// <summary>Bytes of the nonce that proves the worker opened the parameter server's own file.</summary>
    public const int NonceBytes = 32;

    private const uint Magic = 0x4D535444; // "DTSM"
    private const int LayoutVersion = 1;
    private const int HeaderBytes = 4096;
    private const int CounterOffset = 64;
    private const int CounterStride = 64;
    private const int Page = 4096;

    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private readonly byte* _base;
    private volatile bool _closed;
    private int _disposed;

    private SharedMemoryRegion(string path, byte[] nonce, MemoryMappedFile file, MemoryMappedViewAccessor view, int weightSlots, long weightSlotBytes,
        int gradientSlots, long gradientSlotBytes)
    {
        Path = path;
        Nonce = nonce;
        _file = file;
        _view = view;
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        _base = pointer + view.PointerOffset;
        var weightsStart = (long)HeaderBytes;
        var gradientsStart = weightsStart + weightSlots * RoundToPage(weightSlotBytes);
        Weights = new SharedSlots(this, weightsStart, weightSlots, weightSlotBytes, firstCounter: 0);
        Gradients = new SharedSlots(this, gradientsStart, gradientSlots, gradientSlotBytes, firstCounter: weightSlots);
    }

    /// <summary>Where the worker opens the memory file: <c>/proc/&lt;parameter server pid&gt;/fd/&lt;descriptor&gt;</c>.</summary>
    public string Path { get; }

    /// <summary>The random nonce written in the file's header and sent in the offer.</summary>
    public byte[] Nonce { get; }

    /// <summary>The slots weights travel in, parameter server → worker.</summary>
    public SharedSlots Weights { get; }

    /// <summary>The slots gradient reports travel in, worker → parameter server.</summary>
    public SharedSlots Gradients { get; }

    /// <summary>True once <see cref="Close"/> was called: a sender waiting for a slot gives up.</summary>
    public bool IsClosed => _closed;

    /// <summary>Bytes of a region with these slots (header, then each slot rounded up to a page).</summary>
    public static long TotalBytes(int weightSlots, long weightSlotBytes, int gradientSlots, long gradientSlotBytes) =>
        HeaderBytes + weightSlots * RoundToPage(weightSlotBytes) + gradientSlots * RoundToPage(gradientSlotBytes);

    [GeneratedRegex(@"^/proc/[0-9]{1,10}/fd/[0-9]{1,10}\z")]
    private static partial Regex RegionPath();

    /// <summary>Creates a region in a new sealed memory file, with a fresh nonce.</summary>
    /// <param name="weightSlots">Weight slots, 1 to <see cref="MaxSlots"/>.</param>
    /// <param name="weightSlotBytes">Bytes of one weights body: the model's floats × 4.</param>
    /// <param name="gradientSlots">Gradient slots, 1 to <see cref="MaxSlots"/>.</param>
    /// <param name="gradientSlotBytes">Bytes of one gradient body (float32, or a compressed encoding and the floats after it).</param>
    /// <exception cref="IOException">The memory file cannot be made, reserved or sealed (not Linux, out of memory); the
    /// message says which.</exception>
    public static SharedMemoryRegion Create(int weightSlots, long weightSlotBytes, int gradientSlots, long gradientSlotBytes)
    {
        CheckLayout(weightSlots, weightSlotBytes, gradientSlots, gradientSlotBytes);
        var total = TotalBytes(weightSlots, weightSlotBytes, gradientSlots, gradientSlotBytes);
        var handle = MemoryFile.Create(MemoryFileName, total);
        var descriptor = (int)handle.DangerousGetHandle();
        FileStream? stream = null;
        MemoryMappedFile? file = null;
        try
        {
            stream = new FileStream(handle, FileAccess.ReadWrite);
            file = MemoryMappedFile.CreateFromFile(stream, null, total, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
            var region = new SharedMemoryRegion($"/proc/{Environment.ProcessId}/fd/{descriptor}", RandomNumberGenerator.GetBytes(NonceBytes), file,
                file.CreateViewAccessor(0, total, MemoryMappedFileAccess.ReadWrite), weightSlots, weightSlotBytes, gradientSlots, gradientSlotBytes);
            region.WriteHeader(weightSlots, weightSlotBytes, gradientSlots, gradientSlotBytes);
            return region;
        }
        catch (Exception e)
        {
            if (file is not null) file.Dispose();
            else if (stream is not null) stream.Dispose();
            else handle.Dispose();
            // Every failure is an IOException for the caller, which then stays on TCP (a mapping the kernel refuses is an
            // UnauthorizedAccessException here).
            if (e is IOException) throw;
            throw new IOException($"mapping the memory file failed ({e.GetType().Name}: {e.Message})", e);
        }
    }

    /// <summary>The name every region's memory file carries, which the worker checks before it opens one
    /// (<c>/proc/&lt;pid&gt;/fd/&lt;n&gt;</c> links to <c>/memfd:disttrain-region (deleted)</c>).</summary>
    internal const string MemoryFileName = "disttrain-region";

    /// <summary>
    /// Opens the region an offer names, on the worker's side, and checks it is the parameter server's own: the path is
    /// a descriptor under <c>/proc</c>, the file is a memory file sealed against shrinking and growing, its length is what
    /// the slots need, and its header holds the magic, layout, slots and the offer's nonce. Nothing is written before
    /// every check passed.
    /// </summary>
    /// <param name="offer">The offer, as received.</param>
    /// <param name="weightSlotBytes">The weights body this worker expects: its model's floats × 4.</param>
    /// <exception cref="IOException">Any check fails, or the file cannot be opened (the parameter server runs on another
    /// host or in another container); the message, at most a line, names the reason, which the worker sends back as its
    /// answer.</exception>
    public static SharedMemoryRegion Open(SharedMemoryOffer offer, long weightSlotBytes)
    {
        if (!RegionPath().IsMatch(offer.Path))
            throw new IOException("the offered path is not a process's file descriptor under /proc");
        try
        {
            CheckLayout(offer.WeightSlots, offer.WeightSlotBytes, offer.GradientSlots, offer.GradientSlotBytes);
        }
        catch (ArgumentOutOfRangeException)
        {
            throw new IOException("the offer's slot counts or sizes are out of range");
        }
        if (offer.WeightSlotBytes != weightSlotBytes)
            throw new IOException($"the offer's weight slots hold {offer.WeightSlotBytes} bytes, this worker's weights are {weightSlotBytes}");
        var total = TotalBytes(offer.WeightSlots, offer.WeightSlotBytes, offer.GradientSlots, offer.GradientSlotBytes);
        // Opening a file can have effects of its own (a terminal becomes the controlling one, a device blocks): the link
        // must name a DistTrain memory file before it is opened. A process in another pid namespace, or on another machine
        // behind a forwarded port, names something else at the same path.
        string? target;
        try
        {
            target = File.ResolveLinkTarget(offer.Path, returnFinalTarget: false)?.FullName;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            target = null;
        }
        if (target is null)
            throw new IOException("the memory file is not visible here: the parameter server runs on another host or in another container");
        if (target != $"/memfd:{MemoryFileName} (deleted)")
            throw new IOException("the offered path does not name a DistTrain memory file here (another process namespace?)");
        FileStream stream;
        try
        {
            stream = new FileStream(offer.Path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new IOException("the memory file is not visible here: the parameter server runs on another host or in another container");
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException or NotSupportedException)
        {
            throw new IOException($"the memory file cannot be opened ({e.GetType().Name}): another user's, or not a file");
        }
        try
        {
            if (!MemoryFile.IsSealedAgainstResizing(stream.SafeFileHandle))
                throw new IOException("the offered file is not a memory file sealed against resizing");
            if (stream.Length != total)
                throw new IOException($"the memory file has {stream.Length} bytes where the offered slots need {total}");
            var file = MemoryMappedFile.CreateFromFile(stream, null, total, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
            var region = new SharedMemoryRegion(offer.Path, offer.Nonce, file, file.CreateViewAccessor(0, total, MemoryMappedFileAccess.ReadWrite),
                offer.WeightSlots, offer.WeightSlotBytes, offer.GradientSlots, offer.GradientSlotBytes);
            if (region.HeaderMismatch(offer) is { } mismatch)
            {
                region.Dispose();
                throw new IOException($"the memory file is not the offered region: {mismatch}");
            }
            return region;
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Makes a sender waiting in <see cref="SharedSlots.Acquire"/> give up: the connection is gone.</summary>
    public void Close() => _closed = true;

    /// <summary>
    /// Closes the region and releases its mapping. A thread inside a <see cref="Lease"/> keeps the memory mapped until
    /// it ends the lease, so a reader copying a slot never touches unmapped memory. Safe to call twice.
    /// </summary>
    public void Dispose()
    {
        _closed = true;
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }

    /// <summary>Keeps the mapping alive while a slot is copied.</summary>
    /// <exception cref="ObjectDisposedException">The region was disposed (the connection is closing).</exception>
    public MappingLease Lease()
    {
        var handle = _view.SafeMemoryMappedViewHandle;
        var added = false;
        handle.DangerousAddRef(ref added);
        return new MappingLease(handle);
    }

    /// <summary>A reference on the mapping that <see cref="Dispose"/> waits for; see <see cref="Lease"/>.</summary>
    public readonly struct MappingLease(SafeHandle handle) : IDisposable
    {
        /// <inheritdoc />
        public void Dispose() => handle.DangerousRelease();
    }

    internal byte* At(long offset) => _base + offset;

    internal ref long Counter(int index) => ref *(long*)(_base + CounterOffset + (long)index * CounterStride);

    /// <summary><paramref name="bytes"/> rounded up to whole 4,096-byte pages: where each slot starts after the one before.</summary>
    internal static long RoundToPage(long bytes) => (bytes + Page - 1) / Page * Page;

    private static void CheckLayout(int weightSlots, long weightSlotBytes, int gradientSlots, long gradientSlotBytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(weightSlots);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(weightSlots, MaxSlots);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(gradientSlots);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(gradientSlots, MaxSlots);
        // A slot's body is read into a span: at most int.MaxValue bytes (a frame carries under 2^28 floats anyway).
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(weightSlotBytes);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(weightSlotBytes, int.MaxValue);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(gradientSlotBytes);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(gradientSlotBytes, int.MaxValue);
    }

    private void WriteHeader(int weightSlots, long weightSlotBytes, int gradientSlots, long gradientSlotBytes)
    {
        var header = new Span<byte>(_base, HeaderBytes);
        header.Clear();
        MemoryMarshal.Write(header, Magic);
        MemoryMarshal.Write(header[4..], LayoutVersion);
        Nonce.CopyTo(header[8..]);
        MemoryMarshal.Write(header[40..], weightSlots);
        MemoryMarshal.Write(header[44..], gradientSlots);
        MemoryMarshal.Write(header[48..], weightSlotBytes);
        MemoryMarshal.Write(header[56..], gradientSlotBytes);
    }

    private string? HeaderMismatch(SharedMemoryOffer offer)
    {
        var header = new ReadOnlySpan<byte>(_base, HeaderBytes);
        if (MemoryMarshal.Read<uint>(header) != Magic || MemoryMarshal.Read<int>(header[4..]) != LayoutVersion) return "no DistTrain region header";
        if (!CryptographicOperations.FixedTimeEquals(header.Slice(8, NonceBytes), offer.Nonce)) return "its nonce differs from the offer's";
        if (MemoryMarshal.Read<int>(header[40..]) != offer.WeightSlots || MemoryMarshal.Read<int>(header[44..]) != offer.GradientSlots
            || MemoryMarshal.Read<long>(header[48..]) != offer.WeightSlotBytes || MemoryMarshal.Read<long>(header[56..]) != offer.GradientSlotBytes)
            return "its slots differ from the offer's";
        return null;
    }
}

/// <summary>
/// The slots of one direction of a <see cref="SharedMemoryRegion"/>. The sender takes the lowest-numbered free slot with
/// <see cref="Acquire"/> (waiting while the receiver holds them all), fills it and writes the frame header naming it; the
/// receiver copies the body out, or reads it in place, and calls <see cref="Release"/>. Each side is used by one thread at
/// a time: the sender by the link actor that writes frames, the receiver by the reader thread.
/// <para>Lowest free first, not in turn: in lock-step training the receiver has released the slot before the next frame
/// is written, so one slot carries every frame and stays in the caches. Taken in turn, the three weight slots and two
/// gradient slots of each worker would all be touched every few steps: 9.4 MB for the main job's two workers, on a
/// shared last-level cache (docs/benchmarks.md, "Kept: shared-memory slots reused lowest first").</para>
/// </summary>
internal sealed unsafe class SharedSlots
{
    private readonly SharedMemoryRegion _region;
    private readonly long _start;
    private readonly int _firstCounter;
    private readonly long _stride;
    private readonly long[] _written;
    private int _last = -1; // the slot Acquire returned last, until it is given back

    internal SharedSlots(SharedMemoryRegion region, long start, int count, long slotBytes, int firstCounter)
    {
        _region = region;
        _start = start;
        Count = count;
        SlotBytes = (int)slotBytes;
        _stride = SharedMemoryRegion.RoundToPage(slotBytes);
        _firstCounter = firstCounter;
        _written = new long[count];
    }

    /// <summary>Slots in this direction.</summary>
    public int Count { get; }

    /// <summary>Bytes a slot holds.</summary>
    public int SlotBytes { get; }

    /// <summary>Times the sender found every slot unreleased and had to wait.</summary>
    public long Waits { get; private set; }

    /// <summary>
    /// The lowest-numbered slot whose last frame the receiver has released, waiting while there is none (normally there
    /// is: the receiver's reader copies a gradient out as soon as its header arrives, and a worker releases its weights
    /// after its step). Call inside a <see cref="Lease"/>: the search reads the region.
    /// </summary>
    /// <exception cref="IOException">The region was closed while waiting (the connection failed).</exception>
    public int Acquire()
    {
        var slot = FirstFree();
        if (slot < 0)
        {
            Waits++;
            var spin = new SpinWait();
            while ((slot = FirstFree()) < 0)
            {
                if (_region.IsClosed) throw new IOException("data plane: the connection closed while waiting for a shared-memory slot.");
                spin.SpinOnce();
            }
        }
        _written[slot]++;
        _last = slot;
        return slot;
    }

    /// <summary>The lowest-numbered slot the receiver has released everything written to, or -1.</summary>
    private int FirstFree()
    {
        for (var slot = 0; slot < Count; slot++)
            if (Volatile.Read(ref _region.Counter(_firstCounter + slot)) >= _written[slot]) return slot;
        return -1;
    }

    /// <summary>
    /// Gives back the slot <see cref="Acquire"/> returned last, never announced to the receiver (a report abandoned while
    /// it was being written in place): it is free again at once, without waiting for a release that would never come.
    /// </summary>
    /// <exception cref="InvalidOperationException"><paramref name="slot"/> is not the slot acquired last.</exception>
    public void Unacquire(int slot)
    {
        if (slot != _last || _written[slot] == 0)
            throw new InvalidOperationException($"Shared-memory slot {slot} is not the one acquired last; only that one can be given back.");
        _written[slot]--;
        _last = -1;
    }

    /// <summary>Keeps the region mapped while a slot is copied (<see cref="SharedMemoryRegion.Lease"/>).</summary>
    /// <exception cref="ObjectDisposedException">The region was disposed.</exception>
    public SharedMemoryRegion.MappingLease Lease() => _region.Lease();

    /// <summary>The bytes of slot <paramref name="slot"/>; use inside a <see cref="Lease"/>.</summary>
    public Span<byte> Slot(int slot) => new(_region.At(_start + slot * _stride), SlotBytes);

    /// <summary>The receiver is done with slot <paramref name="slot"/>: the sender may write it again.</summary>
    public void Release(int slot)
    {
        ref var released = ref _region.Counter(_firstCounter + slot);
        Volatile.Write(ref released, Volatile.Read(ref released) + 1);
    }
}
