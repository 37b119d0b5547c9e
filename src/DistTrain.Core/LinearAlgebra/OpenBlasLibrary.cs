using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;

namespace DistTrain.Core.LinearAlgebra;

/// <summary>
/// Loads Debian's OpenBLAS (<c>libopenblas0-pthread</c>, <c>libopenblas.so.0</c>) at run time and binds
/// <c>cblas_sgemm</c> and the thread and kernel queries through function pointers, so a missing library
/// means a fallback, not a crash.
/// </summary>
/// <remarks>
/// OpenBLAS built with DYNAMIC_ARCH (Debian's is) picks its kernel once, when it is loaded, from
/// <c>OPENBLAS_CORETYPE</c> or from CPUID. Version 0.3.21 does not recognize some newer CPUs (for
/// example AMD Zen 4 under virtualization) and falls back to the Prescott (SSE3) kernel, about 5x
/// slower than its AVX-512 kernel. Before loading, this class therefore sets <c>OPENBLAS_CORETYPE</c>
/// in the native environment (libc <c>setenv</c>; .NET's own environment is not visible to native
/// code) to the best kernel the CPU supports, unless the variable already names a kernel that is not
/// older than the CPU.
/// </remarks>
internal static unsafe partial class OpenBlasLibrary
{
    internal const int ColumnMajor = 102, NoTranspose = 111, Transpose = 112;

    private static readonly string[] Candidates =
    [
        "libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "libopenblas.so",
    ];

    // Kernels that lack AVX2 (OpenBLAS core names, driver/others/dynamic.c).
    private static readonly string[] PreAvx2Kernels =
        ["PRESCOTT", "KATMAI", "COPPERMINE", "NORTHWOOD", "BANIAS", "ATOM", "CORE2", "PENRYN", "DUNNINGTON",
         "NEHALEM", "SANDYBRIDGE", "ATHLON", "OPTERON", "OPTERON_SSE3", "BARCELONA", "BOBCAT", "BULLDOZER", "PILEDRIVER", "STEAMROLLER", "EXCAVATOR"];

    internal static delegate* unmanaged[Cdecl]<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void> Sgemm;
    private static delegate* unmanaged[Cdecl]<int, void> _setNumThreads;
    private static delegate* unmanaged[Cdecl]<int> _getNumThreads;
    private static delegate* unmanaged[Cdecl]<byte*> _getCoreName;
    private static delegate* unmanaged[Cdecl]<byte*> _getConfig;

    /// <summary>Path or name of the loaded library.</summary>
    internal static string? LoadedFrom { get; private set; }

    /// <summary>What was done about <c>OPENBLAS_CORETYPE</c> before loading, for the start-up log line.</summary>
    internal static string KernelChoice { get; private set; } = "";

    /// <summary>Tries to load the library; returns false with the reason when it is missing or lacks a symbol.</summary>
    internal static bool TryLoad(out string failure)
    {
        ChooseKernel();
        foreach (var candidate in Candidates)
        {
            if (!NativeLibrary.TryLoad(candidate, out var handle)) continue;
            if (!NativeLibrary.TryGetExport(handle, "cblas_sgemm", out var sgemm)
                || !NativeLibrary.TryGetExport(handle, "openblas_set_num_threads", out var setThreads)
                || !NativeLibrary.TryGetExport(handle, "openblas_get_num_threads", out var getThreads)
                || !NativeLibrary.TryGetExport(handle, "openblas_get_corename", out var coreName)
                || !NativeLibrary.TryGetExport(handle, "openblas_get_config", out var config))
            {
                failure = $"{candidate} lacks cblas_sgemm or the openblas_* queries";
                return false;
            }
            Sgemm = (delegate* unmanaged[Cdecl]<int, int, int, int, int, int, float, float*, int, float*, int, float, float*, int, void>)sgemm;
            _setNumThreads = (delegate* unmanaged[Cdecl]<int, void>)setThreads;
            _getNumThreads = (delegate* unmanaged[Cdecl]<int>)getThreads;
            _getCoreName = (delegate* unmanaged[Cdecl]<byte*>)coreName;
            _getConfig = (delegate* unmanaged[Cdecl]<byte*>)config;
            LoadedFrom = candidate;
            failure = "";
            return true;
        }
        failure = "libopenblas.so.0 not found (install Debian's libopenblas0-pthread)";
        return false;
    }

    internal static void SetThreads(int threads) => _setNumThreads(threads);

    internal static int Threads => _getNumThreads();

    internal static string CoreName => Marshal.PtrToStringUTF8((nint)_getCoreName()) ?? "unknown";

    internal static string Config => Marshal.PtrToStringUTF8((nint)_getConfig()) ?? "unknown";

    /// <summary>The best OpenBLAS kernel for this CPU, or null when the CPU has no AVX2.</summary>
    internal static string? BestKernel() =>
        Avx512F.IsSupported && Avx512BW.IsSupported && Avx512DQ.IsSupported && Avx512F.VL.IsSupported ? "SkylakeX"
        : Avx2.IsSupported && Fma.IsSupported ? "Haswell"
        : null;

    private static void ChooseKernel()
    {
        var current = Marshal.PtrToStringUTF8(GetEnv("OPENBLAS_CORETYPE"));
        var best = BestKernel();
        if (best is null)
        {
            KernelChoice = current is null ? "CPU has no AVX2: OpenBLAS auto-detects" : $"OPENBLAS_CORETYPE={current} kept";
            return;
        }
        if (!string.IsNullOrWhiteSpace(current) && !PreAvx2Kernels.Contains(current.Trim().ToUpperInvariant()))
        {
            KernelChoice = $"OPENBLAS_CORETYPE={current} kept";
            return;
        }
        SetEnv("OPENBLAS_CORETYPE", best, 1);
        KernelChoice = string.IsNullOrWhiteSpace(current)
            ? $"OPENBLAS_CORETYPE set to {best} (auto-detection in 0.3.21 can fall back to Prescott on this CPU)"
            : $"OPENBLAS_CORETYPE={current} replaced by {best}: the CPU has AVX2{(best == "SkylakeX" ? " and AVX-512" : "")}";
    }

    [LibraryImport("libc", EntryPoint = "getenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint GetEnv(string name);

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);
}
