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
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
        "libopenblas.so",
    ];

    // OpenBLAS x86-64 core names (driver/others/dynamic.c) by the instruction set their kernels need.
    private static readonly string[] PreAvx2Kernels =
        ["PRESCOTT", "KATMAI", "COPPERMINE", "NORTHWOOD", "BANIAS", "ATOM", "CORE2", "PENRYN", "DUNNINGTON",
         "NEHALEM", "SANDYBRIDGE", "ATHLON", "OPTERON", "OPTERON_SSE3", "BARCELONA", "BOBCAT", "BULLDOZER", "PILEDRIVER", "STEAMROLLER", "EXCAVATOR"];
    private static readonly string[] Avx2Kernels = ["HASWELL", "ZEN"];
    private static readonly string[] Avx512Kernels = ["SKYLAKEX", "COOPERLAKE", "SAPPHIRERAPIDS"];

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
        failure = "libopenblas.so.0 not found (install Debian's libopenblas0-pthread)";
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
                continue;
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
        return false;
    }

    internal static void SetThreads(int threads) => _setNumThreads(threads);

    internal static int Threads => _getNumThreads();

    internal static string CoreName => Marshal.PtrToStringUTF8((nint)_getCoreName()) ?? "unknown";

    internal static string Config => Marshal.PtrToStringUTF8((nint)_getConfig()) ?? "unknown";

    /// <summary>True for an OpenBLAS core name whose kernels predate AVX2.</summary>
    internal static bool IsPreAvx2(string coreName) => PreAvx2Kernels.Contains(coreName.Trim().ToUpperInvariant());

    /// <summary>The best OpenBLAS kernel for this CPU, or null when the CPU has no AVX2.</summary>
    internal static string? BestKernel() =>
        Avx512F.IsSupported && Avx512BW.IsSupported && Avx512DQ.IsSupported && Avx512F.VL.IsSupported ? "SkylakeX"
        : Avx2.IsSupported && Fma.IsSupported ? "Haswell"
        : null;

    private static void ChooseKernel()
    {
        string? current;
        try
        {
            current = Marshal.PtrToStringUTF8(GetEnv("OPENBLAS_CORETYPE"));
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            KernelChoice = "libc getenv/setenv unavailable: OpenBLAS auto-detects its kernel";
            return;
        }
        var best = BestKernel();
        var name = current?.Trim().ToUpperInvariant() ?? "";
        if (best is null)
        {
            KernelChoice = current is null ? "CPU has no AVX2: OpenBLAS auto-detects" : $"OPENBLAS_CORETYPE={current} kept";
            return;
        }
        var runnable = Avx2Kernels.Contains(name) || (Avx512Kernels.Contains(name) && best == "SkylakeX");
        if (runnable)
        {
            KernelChoice = $"OPENBLAS_CORETYPE={current} kept";
            return;
        }
        try
        {
            SetEnv("OPENBLAS_CORETYPE", best, 1);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            KernelChoice = "libc setenv unavailable: OpenBLAS auto-detects its kernel";
            return;
        }
        KernelChoice = name.Length == 0
            ? $"OPENBLAS_CORETYPE set to {best}, the best kernel this CPU runs (OpenBLAS 0.3.21's auto-detection picks Prescott on some virtualized CPUs)"
            : PreAvx2Kernels.Contains(name)
                ? $"OPENBLAS_CORETYPE={current} replaced by {best}: the CPU has AVX2{(best == "SkylakeX" ? " and AVX-512" : "")}"
                : $"OPENBLAS_CORETYPE={current} replaced by {best}: {(Avx512Kernels.Contains(name) ? "this CPU lacks AVX-512" : "not a known x86-64 kernel name")}";
    }

    [LibraryImport("libc", EntryPoint = "getenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint GetEnv(string name);

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);
}
