using System.Runtime.InteropServices;

namespace DistTrain.Core.LinearAlgebra;

/// <summary>
/// Loads Debian's oneDNN 2.x (<c>libdnnl2</c>, <c>libdnnl.so.2</c>, built with the OpenMP runtime) at run time and
/// binds the C API calls the convolutions use through function pointers, so a missing library means a fallback to
/// im2col, not a crash. Also binds <c>omp_set_num_threads</c> from the <c>libgomp.so.1</c> oneDNN links against.
/// </summary>
/// <remarks>
/// Signatures, enum values and struct sizes are those of oneDNN 2.6's <c>dnnl.h</c> / <c>dnnl_types.h</c>
/// (checked with <c>sizeof</c> in a C program against Debian's <c>libdnnl-dev</c> 2.6.3): a memory descriptor is
/// 696 bytes, a convolution descriptor 5,976, <c>dnnl_dims_t</c> is 12 <c>int64_t</c>, <c>dnnl_exec_arg_t</c> is
/// 16 bytes. oneDNN 3.x replaced these C structs by opaque handles, so only major version 2 is accepted.
/// </remarks>
internal static unsafe class OneDnnLibrary
{
    internal const int MemoryDescBytes = 696, ConvolutionDescBytes = 5976, MaxDims = 12;

    // dnnl_types.h values.
    internal const int Float32 = 3;                                   // dnnl_f32
    internal const int FormatAny = 1, FormatA = 2, FormatAbcd = 5;     // dnnl_format_tag_any, dnnl_a (x), dnnl_abcd (nchw, oihw)
    internal const int ForwardTraining = 64, BackwardData = 160, BackwardWeights = 192; // dnnl_prop_kind_t
    internal const int ConvolutionDirect = 1;                          // dnnl_convolution_direct
    internal const int CpuEngine = 1;                                  // dnnl_cpu
    internal const int StreamDefault = 1;                              // dnnl_stream_default_flags
    internal const int ScratchpadUser = 1;                             // dnnl_scratchpad_mode_user
    internal const int QuerySrc = 129, QueryDiffSrc = 130, QueryWeights = 131, QueryDiffWeights = 132,
        QueryDst = 133, QueryDiffDst = 134, QueryScratchpad = 136;   // dnnl_query_*_md
    internal const int ArgSrc = 1, ArgDst = 17, ArgWeights = 33, ArgBias = 41, ArgDiffSrc = 129, ArgDiffDst = 145,
        ArgDiffWeights = 161, ArgDiffBias = 169, ArgScratchpad = 80; // DNNL_ARG_*; reorders use ArgSrc (FROM) and ArgDst (TO)
    private const uint RuntimeOpenMp = 2;                              // DNNL_RUNTIME_OMP

    private static readonly string[] Candidates = ["libdnnl.so.2", "/usr/lib/x86_64-linux-gnu/libdnnl.so.2"];

    internal static delegate* unmanaged[Cdecl]<nint*, int, nuint, int> EngineCreate;
    internal static delegate* unmanaged[Cdecl]<nint*, nint, uint, int> StreamCreate;
    internal static delegate* unmanaged[Cdecl]<byte*, int, long*, int, int, int> MemoryDescInitByTag;
    internal static delegate* unmanaged[Cdecl]<byte*, int, int, byte*, byte*, byte*, byte*, long*, long*, long*, int> ConvolutionForwardDescInit;
    internal static delegate* unmanaged[Cdecl]<byte*, int, byte*, byte*, byte*, long*, long*, long*, int> ConvolutionBackwardDataDescInit;
    internal static delegate* unmanaged[Cdecl]<byte*, int, byte*, byte*, byte*, byte*, long*, long*, long*, int> ConvolutionBackwardWeightsDescInit;
    internal static delegate* unmanaged[Cdecl]<nint*, int> AttrCreate;
    internal static delegate* unmanaged[Cdecl]<nint, int, int> AttrSetScratchpadMode;
    internal static delegate* unmanaged[Cdecl]<nint, int> AttrDestroy;
    internal static delegate* unmanaged[Cdecl]<nint*, byte*, nint, nint, nint, int> PrimitiveDescCreate;
    internal static delegate* unmanaged[Cdecl]<nint, int, int, byte*> PrimitiveDescQueryMd;
    internal static delegate* unmanaged[Cdecl]<nint, int> PrimitiveDescDestroy;
    internal static delegate* unmanaged[Cdecl]<nint*, byte*, nint, byte*, nint, nint, int> ReorderPrimitiveDescCreate;
    internal static delegate* unmanaged[Cdecl]<byte*, byte*, int> MemoryDescEqual;
    internal static delegate* unmanaged[Cdecl]<byte*, nuint> MemoryDescGetSize;
    internal static delegate* unmanaged[Cdecl]<nint*, byte*, nint, void*, int> MemoryCreate;
    internal static delegate* unmanaged[Cdecl]<nint, void*, int> MemorySetDataHandle;
    internal static delegate* unmanaged[Cdecl]<nint, int> MemoryDestroy;
    internal static delegate* unmanaged[Cdecl]<nint*, nint, int> PrimitiveCreate;
    internal static delegate* unmanaged[Cdecl]<nint, nint, int, ExecArg*, int> PrimitiveExecute;
    internal static delegate* unmanaged[Cdecl]<nint, int> PrimitiveDestroy;
    internal static delegate* unmanaged[Cdecl]<nint, int> StreamWait;
    internal static delegate* unmanaged[Cdecl]<nint, int> StreamDestroy;
    private static delegate* unmanaged[Cdecl]<Version*> _version;
    private static delegate* unmanaged[Cdecl]<int, void> _ompSetNumThreads;
    private static delegate* unmanaged[Cdecl]<int> _ompGetMaxThreads;

    /// <summary>One argument of <c>dnnl_primitive_execute</c> (<c>dnnl_exec_arg_t</c>).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct ExecArg
    {
        public int Arg;
        public nint Memory;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Version
    {
        public int Major, Minor, Patch;
        public byte* Hash;
        public uint CpuRuntime, GpuRuntime;
    }

    /// <summary>The CPU engine all primitives of the process are created on (engines are thread-safe).</summary>
    internal static nint Engine { get; private set; }

    /// <summary>Path or name of the loaded library.</summary>
    internal static string? LoadedFrom { get; private set; }

    /// <summary>Version such as <c>2.6.3</c>.</summary>
    internal static string VersionText { get; private set; } = "";

    /// <summary>
    /// Tries to load oneDNN from <paramref name="candidates"/> (default: <c>libdnnl.so.2</c>), bind every call,
    /// check the version and create the CPU engine; returns false with the reason otherwise.
    /// </summary>
    internal static bool TryLoad(out string failure, IReadOnlyList<string>? candidates = null)
    {
        failure = "libdnnl.so.2 not found (install Debian's libdnnl2)";
        foreach (var candidate in candidates ?? Candidates)
        {
            if (!NativeLibrary.TryLoad(candidate, out var handle)) continue;
            if (!TryBind(handle, out var missing))
            {
                failure = $"{candidate} lacks {missing}";
                continue;
            }
            var version = _version();
            if (version->Major != 2)
            {
                failure = $"{candidate} is oneDNN {version->Major}.{version->Minor}; DistTrain binds the 2.x C API";
                continue;
            }
            if (version->CpuRuntime != RuntimeOpenMp)
            {
                failure = $"{candidate} uses CPU runtime {version->CpuRuntime}, not OpenMP; DistTrain can only set its threads per call through OpenMP";
                continue;
            }
            if (!NativeLibrary.TryLoad("libgomp.so.1", out var gomp)
                || !NativeLibrary.TryGetExport(gomp, "omp_set_num_threads", out var setThreads)
                || !NativeLibrary.TryGetExport(gomp, "omp_get_max_threads", out var getThreads))
            {
                failure = "libgomp.so.1 (oneDNN's OpenMP runtime) lacks omp_set_num_threads";
                continue;
            }
            _ompSetNumThreads = (delegate* unmanaged[Cdecl]<int, void>)setThreads;
            _ompGetMaxThreads = (delegate* unmanaged[Cdecl]<int>)getThreads;
            nint engine;
            var status = EngineCreate(&engine, CpuEngine, 0);
            if (status != 0)
            {
                failure = $"dnnl_engine_create failed: {StatusName(status)}";
                continue;
            }
            Engine = engine;
            LoadedFrom = candidate;
            VersionText = $"{version->Major}.{version->Minor}.{version->Patch}";
            failure = "";
            return true;
        }
        return false;
    }

    private static bool TryBind(nint library, out string missing)
    {
        missing = "";
        nint Get(string name, ref string missingName)
        {
            if (NativeLibrary.TryGetExport(library, name, out var address)) return address;
            if (missingName.Length == 0) missingName = name;
            return 0;
        }
        EngineCreate = (delegate* unmanaged[Cdecl]<nint*, int, nuint, int>)Get("dnnl_engine_create", ref missing);
        StreamCreate = (delegate* unmanaged[Cdecl]<nint*, nint, uint, int>)Get("dnnl_stream_create", ref missing);
        MemoryDescInitByTag = (delegate* unmanaged[Cdecl]<byte*, int, long*, int, int, int>)Get("dnnl_memory_desc_init_by_tag", ref missing);
        ConvolutionForwardDescInit = (delegate* unmanaged[Cdecl]<byte*, int, int, byte*, byte*, byte*, byte*, long*, long*, long*, int>)
            Get("dnnl_convolution_forward_desc_init", ref missing);
        ConvolutionBackwardDataDescInit = (delegate* unmanaged[Cdecl]<byte*, int, byte*, byte*, byte*, long*, long*, long*, int>)
            Get("dnnl_convolution_backward_data_desc_init", ref missing);
        ConvolutionBackwardWeightsDescInit = (delegate* unmanaged[Cdecl]<byte*, int, byte*, byte*, byte*, byte*, long*, long*, long*, int>)
            Get("dnnl_convolution_backward_weights_desc_init", ref missing);
        AttrCreate = (delegate* unmanaged[Cdecl]<nint*, int>)Get("dnnl_primitive_attr_create", ref missing);
        AttrSetScratchpadMode = (delegate* unmanaged[Cdecl]<nint, int, int>)Get("dnnl_primitive_attr_set_scratchpad_mode", ref missing);
        AttrDestroy = (delegate* unmanaged[Cdecl]<nint, int>)Get("dnnl_primitive_attr_destroy", ref missing);
        PrimitiveDescCreate = (delegate* unmanaged[Cdecl]<nint*, byte*, nint, nint, nint, int>)Get("dnnl_primitive_desc_create", ref missing);
        PrimitiveDescQueryMd = (delegate* unmanaged[Cdecl]<nint, int, int, byte*>)Get("dnnl_primitive_desc_query_md", ref missing);
        PrimitiveDescDestroy = (delegate* unmanaged[Cdecl]<nint, int>)Get("dnnl_primitive_desc_destroy", ref missing);
        ReorderPrimitiveDescCreate = (delegate* unmanaged[Cdecl]<nint*, byte*, nint, byte*, nint, nint, int>)
            Get("dnnl_reorder_primitive_desc_create", ref missing);
        MemoryDescEqual = (delegate* unmanaged[Cdecl]<byte*, byte*, int>)Get("dnnl_memory_desc_equal", ref missing);
        MemoryDescGetSize = (delegate* unmanaged[Cdecl]<byte*, nuint>)Get("dnnl_memory_desc_get_size", ref missing);
        MemoryCreate = (delegate* unmanaged[Cdecl]<nint*, byte*, nint, void*, int>)Get("dnnl_memory_create", ref missing);
        MemorySetDataHandle = (delegate* unmanaged[Cdecl]<nint, void*, int>)Get("dnnl_memory_set_data_handle", ref missing);
        MemoryDestroy = (delegate* unmanaged[Cdecl]<nint, int>)Get("dnnl_memory_destroy", ref missing);
        PrimitiveCreate = (delegate* unmanaged[Cdecl]<nint*, nint, int>)Get("dnnl_primitive_create", ref missing);
        PrimitiveExecute = (delegate* unmanaged[Cdecl]<nint, nint, int, ExecArg*, int>)Get("dnnl_primitive_execute", ref missing);
        PrimitiveDestroy = (delegate* unmanaged[Cdecl]<nint, int>)Get("dnnl_primitive_destroy", ref missing);
        StreamWait = (delegate* unmanaged[Cdecl]<nint, int>)Get("dnnl_stream_wait", ref missing);
        StreamDestroy = (delegate* unmanaged[Cdecl]<nint, int>)Get("dnnl_stream_destroy", ref missing);
        _version = (delegate* unmanaged[Cdecl]<Version*>)Get("dnnl_version", ref missing);
        return missing.Length == 0;
    }

    /// <summary>
    /// Makes oneDNN calls from the current thread use <paramref name="threads"/> OpenMP threads. The setting
    /// (OpenMP's nthreads-var) belongs to the calling thread, so it is checked before every call: an actor may
    /// run on another thread of its dispatcher from one message to the next.
    /// </summary>
    internal static void UseThreads(int threads)
    {
        if (_ompGetMaxThreads() != threads) _ompSetNumThreads(threads);
    }

    /// <summary>OpenMP's <c>omp_get_max_threads</c> on the calling thread: the threads a oneDNN call made now would use.</summary>
    internal static int MaxThreads => _ompGetMaxThreads();

    /// <summary>Throws when a oneDNN call did not return <c>dnnl_success</c>, naming the call and the status.</summary>
    /// <exception cref="OneDnnException">The status is not success.</exception>
    internal static void Check(int status, string call)
    {
        if (status != 0) throw new OneDnnException(call, status);
    }

    /// <summary>The <c>dnnl_status_t</c> name of a status code.</summary>
    internal static string StatusName(int status) => status switch
    {
        0 => "dnnl_success",
        1 => "dnnl_out_of_memory",
        2 => "dnnl_invalid_arguments",
        3 => "dnnl_unimplemented",
        4 => "dnnl_iterator_ends",
        5 => "dnnl_runtime_error",
        6 => "dnnl_not_required",
        _ => $"status {status}",
    };
}

/// <summary>A oneDNN C API call returned an error status.</summary>
/// <param name="call">The C function, such as <c>dnnl_primitive_desc_create (convolution forward)</c>.</param>
/// <param name="status">Its <c>dnnl_status_t</c>.</param>
public sealed class OneDnnException(string call, int status)
    : Exception($"oneDNN call {call} failed with {OneDnnLibrary.StatusName(status)} ({status}).")
{
    /// <summary>The failed call.</summary>
    public string Call { get; } = call;

    /// <summary>The <c>dnnl_status_t</c> it returned (2 invalid arguments, 3 unimplemented, 1 out of memory, ...).</summary>
    public int Status { get; } = status;
}
