using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// Linux anonymous memory files (memfd_create(2)) with file seals (fcntl(2), F_ADD_SEALS): the memory behind a
/// <see cref="SharedMemoryRegion"/>. .NET has no API for either, so they are called in the C library.
/// </summary>
internal static partial class MemoryFile
{
    private const uint CloseOnExec = 0x1, AllowSealing = 0x2, NoExecSeal = 0x8; // MFD_CLOEXEC, MFD_ALLOW_SEALING, MFD_NOEXEC_SEAL
    private const int InvalidArgument = 22; // EINVAL: a kernel before 6.3 does not know MFD_NOEXEC_SEAL
    private const int AddSeals = 1033, GetSeals = 1034; // F_ADD_SEALS, F_GET_SEALS
    private const int SealSeal = 0x1, SealShrink = 0x2, SealGrow = 0x4; // F_SEAL_SEAL, F_SEAL_SHRINK, F_SEAL_GROW

    [LibraryImport("libc", EntryPoint = "memfd_create", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int MemfdCreate(string name, uint flags);

    [LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    private static partial int Fallocate(int descriptor, int mode, long offset, long length);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(int descriptor, int command, int argument);

    /// <summary>
    /// A new memory file of <paramref name="bytes"/> bytes, all reserved now (fallocate), sealed so that its size can
    /// never change again and the seals themselves not be removed.
    /// </summary>
    /// <param name="name">The name shown in <c>/proc/&lt;pid&gt;/fd</c> links (<c>memfd:name</c>), for people reading them.</param>
    /// <param name="bytes">Size of the file.</param>
    /// <param name="seal">False only in tests: a file whose size may still change, which a worker must refuse.</param>
    /// <exception cref="IOException">Not Linux, no memfd_create in the C library, or a call failed (the message names it
    /// and the errno: out of memory is ENOSPC or ENOMEM).</exception>
    public static SafeFileHandle Create(string name, long bytes, bool seal = true)
    {
        if (!OperatingSystem.IsLinux()) throw new IOException("shared memory needs Linux's memory files (memfd_create)");
        int descriptor;
        try
        {
            // Not executable, ever (kernels from 6.3 log a notice for a memfd without it, and vm.memfd_noexec=2 requires it).
            descriptor = MemfdCreate(name, CloseOnExec | AllowSealing | NoExecSeal);
            if (descriptor < 0 && Marshal.GetLastPInvokeError() == InvalidArgument) descriptor = MemfdCreate(name, CloseOnExec | AllowSealing);
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            throw new IOException($"this C library has no memfd_create ({e.GetType().Name})", e);
        }
        if (descriptor < 0) throw Failure("memfd_create");
        var handle = new SafeFileHandle(descriptor, ownsHandle: true);
        try
        {
            if (Fallocate(descriptor, 0, 0, bytes) != 0) throw Failure($"reserving {bytes:N0} bytes (fallocate)");
            if (seal && Fcntl(descriptor, AddSeals, SealShrink | SealGrow | SealSeal) != 0) throw Failure("sealing (fcntl F_ADD_SEALS)");
            return handle;
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>True if <paramref name="handle"/> is a memory file whose size cannot change (F_SEAL_SHRINK and
    /// F_SEAL_GROW); false for any other file.</summary>
    public static bool IsSealedAgainstResizing(SafeFileHandle handle)
    {
        if (!OperatingSystem.IsLinux()) return false;
        var seals = Fcntl((int)handle.DangerousGetHandle(), GetSeals, 0);
        return seals >= 0 && (seals & (SealShrink | SealGrow)) == (SealShrink | SealGrow);
    }

    /// <summary>The failure of the last call, as an IOException; call it right after the call, before anything else
    /// that could set errno.</summary>
    private static IOException Failure(string call)
    {
        var errno = Marshal.GetLastPInvokeError();
        return new IOException($"{call} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
    }
}
