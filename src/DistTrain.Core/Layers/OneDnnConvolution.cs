using System.Runtime.InteropServices;
using DistTrain.Core.LinearAlgebra;
using static DistTrain.Core.LinearAlgebra.OneDnnLibrary;

namespace DistTrain.Core.Layers;

/// <summary>
/// One <see cref="Conv2D"/> layer's oneDNN primitives: forward (training), backward data and backward weights (with the
/// bias gradient), on the caller's NCHW activations, OIHW weights and <c>[OC]</c> bias. Primitives, memory objects,
/// reorders and their buffers are made once per batch size (up to <see cref="MatrixBuffer.Capacity"/> sizes) and
/// reused, so a steady-state step allocates nothing, managed or native.
/// </summary>
/// <remarks>
/// With <see cref="ConvolutionKernels.OneDnnPreferredLayouts"/> (the default) the primitives are created with format
/// <c>any</c> and oneDNN picks its blocked layouts (on AVX-512: <c>nChw16c</c> activations, <c>OIhw16i16o</c>
/// weights); the caller's tensors are reordered in and out, and a reordered input or weight is reused by the backward
/// primitives when their layout is the same. Otherwise the primitives run on the plain layouts directly.
/// Not thread-safe: one layer belongs to one worker.
/// </remarks>
internal sealed unsafe class OneDnnConvolution : IDisposable
{
    private readonly long[] _source, _weights, _bias, _destination; // dims: N C H W, O I kH kW, O, N OC OH OW (N set per plan)
    private readonly long _stride, _padding;
    private readonly bool _hasBias;
    private readonly bool _preferredLayouts;

    /// <summary>The layout asked of every primitive: oneDNN's choice (<c>any</c>, blocked) or plain NCHW/OIHW.</summary>
    private int PrimitiveLayout => _preferredLayouts ? FormatAny : FormatAbcd;
    private readonly Plan?[] _plans = new Plan?[MatrixBuffer.Capacity];
    private readonly long[] _lastUse = new long[MatrixBuffer.Capacity];
    private long _clock;
    private nint _stream;
    private int _threads; // OpenMP threads the plans were made for

    internal OneDnnConvolution(TensorShape input, TensorShape output, int kernelSize, int stride, int padding, bool hasBias, bool preferredLayouts)
    {
        _source = [0, input.Channels, input.Height, input.Width];
        _weights = [output.Channels, input.Channels, kernelSize, kernelSize];
        _bias = [output.Channels];
        _destination = [0, output.Channels, output.Height, output.Width];
        _stride = stride;
        _padding = padding;
        _hasBias = hasBias;
        _preferredLayouts = preferredLayouts;
        nint stream;
        Check(StreamCreate(&stream, Engine, StreamDefault), "dnnl_stream_create");
        _stream = stream;
    }

    /// <summary>
    /// Makes (or finds) the primitives for <paramref name="batch"/> samples: forward, and backward data and backward
    /// weights when asked for. The first call per batch size creates them, so primitive-creation errors surface here.
    /// </summary>
    /// <exception cref="OneDnnException">oneDNN refused to create a primitive or memory.</exception>
    /// <remarks>
    /// oneDNN splits a primitive's work among <c>omp_get_max_threads()</c> threads as of its creation and then asks
    /// OpenMP for exactly that many threads when it runs, whatever the calling thread's setting is at that point. So the
    /// thread count is set before any primitive is made, and a change of <paramref name="threads"/> remakes them all
    /// (made with the process default, 2 threads on this machine, two single-threaded workers would run 4 threads on
    /// 2 cores; the one-thread microbenchmark took about 200 ms instead of 30 on a busy machine).
    /// </remarks>
    internal void Prepare(int batch, bool backwardData, bool backwardWeights, int threads)
    {
        UseThreads(threads);
        if (threads != _threads)
        {
            DisposePlans();
            _threads = threads;
        }
        var plan = PlanFor(batch);
        if (backwardWeights) plan.EnsureBackwardWeights(this);
        if (backwardData) plan.EnsureBackwardData(this);
    }

    /// <summary><c>y ← conv(x, w) + b</c> on NCHW <paramref name="x"/> <c>[batch, C, H, W]</c> into NCHW <paramref name="y"/>.</summary>
    internal void Forward(float* x, float* w, float* b, float* y, int batch, int threads)
    {
        UseThreads(threads);
        var plan = PlanFor(batch);
        Span<ExecArg> args = stackalloc ExecArg[5];
        var count = 0;
        args[count++] = new ExecArg { Arg = ArgSrc, Memory = plan.Source.In(x, _stream) };
        args[count++] = new ExecArg { Arg = ArgWeights, Memory = plan.Weights.In(w, _stream) };
        args[count++] = new ExecArg { Arg = ArgDst, Memory = plan.Destination.Bind(y) };
        if (_hasBias) args[count++] = new ExecArg { Arg = ArgBias, Memory = Bind(plan.Bias, b) };
        if (plan.ForwardScratch.Memory != 0) args[count++] = new ExecArg { Arg = ArgScratchpad, Memory = plan.ForwardScratch.Memory };
        Execute(plan.Forward, args[..count], "convolution forward");
        plan.ForwardRan = true;
        plan.Destination.Out(_stream);
        Check(StreamWait(_stream), "dnnl_stream_wait");
    }

    /// <summary>
    /// Backward of the last <see cref="Forward"/> (same <paramref name="x"/> and <paramref name="w"/>): writes the
    /// input gradient into <paramref name="dx"/> when it is not null, the weight gradient (OIHW) into
    /// <paramref name="dw"/> and the bias gradient into <paramref name="db"/> when <paramref name="dw"/> is not null,
    /// overwriting them.
    /// </summary>
    internal void Backward(float* x, float* w, float* dy, float* dx, float* dw, float* db, int batch, int threads)
    {
        UseThreads(threads);
        var plan = PlanFor(batch);
        if (!plan.ForwardRan)
        {
            // The plan was made after the forward pass (the thread count changed, or the batch-size cache evicted it):
            // the backward operands that share the forward's reordered x and w would read memory nobody filled.
            plan.Source.In(x, _stream);
            plan.Weights.In(w, _stream);
            plan.ForwardRan = true;
        }
        Span<ExecArg> args = stackalloc ExecArg[6];
        nint weightsDiffDst = 0;
        if (dw != null)
        {
            plan.EnsureBackwardWeights(this);
            var count = 0;
            weightsDiffDst = plan.WeightsDiffDst!.In(dy, _stream);
            args[count++] = new ExecArg { Arg = ArgSrc, Memory = plan.WeightsSource!.In(x, _stream) };
            args[count++] = new ExecArg { Arg = ArgDiffDst, Memory = weightsDiffDst };
            args[count++] = new ExecArg { Arg = ArgDiffWeights, Memory = plan.DiffWeights!.Bind(dw) };
            if (_hasBias) args[count++] = new ExecArg { Arg = ArgDiffBias, Memory = Bind(plan.DiffBias, db) };
            if (plan.WeightsScratch.Memory != 0) args[count++] = new ExecArg { Arg = ArgScratchpad, Memory = plan.WeightsScratch.Memory };
            Execute(plan.BackwardWeights, args[..count], "convolution backward weights");
            plan.DiffWeights.Out(_stream);
        }
        if (dx != null)
        {
            plan.EnsureBackwardData(this);
            var count = 0;
            // The weights pass already reordered dy into the same layout: reuse it rather than reorder again.
            var diffDst = weightsDiffDst != 0 && plan.DataDiffDstSharesWeights ? weightsDiffDst : plan.DataDiffDst!.In(dy, _stream);
            args[count++] = new ExecArg { Arg = ArgDiffDst, Memory = diffDst };
            args[count++] = new ExecArg { Arg = ArgWeights, Memory = plan.DataWeights!.In(w, _stream) };
            args[count++] = new ExecArg { Arg = ArgDiffSrc, Memory = plan.DiffSource!.Bind(dx) };
            if (plan.DataScratch.Memory != 0) args[count++] = new ExecArg { Arg = ArgScratchpad, Memory = plan.DataScratch.Memory };
            Execute(plan.BackwardData, args[..count], "convolution backward data");
            plan.DiffSource.Out(_stream);
        }
        Check(StreamWait(_stream), "dnnl_stream_wait");
    }

    private static nint Bind(nint memory, float* data)
    {
        Check(MemorySetDataHandle(memory, data), "dnnl_memory_set_data_handle");
        return memory;
    }

    private void Execute(nint primitive, Span<ExecArg> args, string what)
    {
        fixed (ExecArg* pointer = args)
        {
            var status = PrimitiveExecute(primitive, _stream, args.Length, pointer);
            if (status != 0) throw new OneDnnException($"dnnl_primitive_execute ({what})", status);
        }
    }

    private Plan PlanFor(int batch)
    {
        _clock++;
        var victim = 0;
        for (var i = 0; i < _plans.Length; i++)
        {
            var plan = _plans[i];
            if (plan is not null && plan.Batch == batch)
            {
                _lastUse[i] = _clock;
                return plan;
            }
            if (plan is null || (_plans[victim] is not null && _lastUse[i] < _lastUse[victim])) victim = i;
        }
        _plans[victim]?.Dispose();
        _plans[victim] = null;
        var created = new Plan(this, batch);
        _lastUse[victim] = _clock;
        return _plans[victim] = created;
    }

    private void DisposePlans()
    {
        for (var i = 0; i < _plans.Length; i++)
        {
            _plans[i]?.Dispose();
            _plans[i] = null;
        }
    }

    public void Dispose()
    {
        DisposePlans();
        if (_stream != 0) StreamDestroy(_stream);
        _stream = 0;
        GC.SuppressFinalize(this);
    }

    ~OneDnnConvolution() => Dispose();

    /// <summary>
    /// Native blocks for the C structs passed by pointer while primitives are made (696-byte <c>dnnl_memory_desc_t</c>,
    /// 5,976-byte <c>dnnl_convolution_desc_t</c>, <c>dnnl_dims_t</c>), all filled by oneDNN's init functions and freed
    /// together once the primitives exist (oneDNN copies what it keeps).
    /// </summary>
    private sealed class Descriptors : IDisposable
    {
        private readonly List<nint> _blocks = [];

        public byte* MemoryDesc(long[] dims, int tag)
        {
            var md = New(MemoryDescBytes);
            fixed (long* d = dims)
                Check(MemoryDescInitByTag(md, dims.Length, d, Float32, tag), "dnnl_memory_desc_init_by_tag");
            return md;
        }

        public byte* MemoryDesc(long[] dims, int batch, int tag) => MemoryDesc(WithBatch(dims, batch), tag);

        /// <summary>A <c>dnnl_dims_t</c> (12 entries) starting with <paramref name="values"/>.</summary>
        public long* Dims(params long[] values)
        {
            var dims = (long*)New(MaxDims * sizeof(long));
            for (var i = 0; i < values.Length; i++) dims[i] = values[i];
            return dims;
        }

        public byte* New(int bytes)
        {
            var block = (byte*)NativeMemory.AllocZeroed((nuint)bytes);
            _blocks.Add((nint)block);
            return block;
        }

        public void Dispose()
        {
            foreach (var block in _blocks) NativeMemory.Free((void*)block);
            _blocks.Clear();
        }
    }

    /// <summary>A primitive's user scratchpad: its memory object over a buffer we own.</summary>
    private struct Scratch
    {
        public nint Memory;
        public void* Buffer;

        public static Scratch For(nint primitiveDesc)
        {
            var md = PrimitiveDescQueryMd(primitiveDesc, QueryScratchpad, 0);
            if (md == null || MemoryDescGetSize(md) == 0) return default;
            var scratch = new Scratch { Buffer = NativeMemory.AlignedAlloc(MemoryDescGetSize(md), 64) };
            nint memory;
            Check(MemoryCreate(&memory, md, Engine, scratch.Buffer), "dnnl_memory_create (scratchpad)");
            scratch.Memory = memory;
            return scratch;
        }

        public void Free()
        {
            if (Memory != 0) MemoryDestroy(Memory);
            if (Buffer != null) NativeMemory.AlignedFree(Buffer);
            this = default;
        }
    }

    /// <summary>
    /// One tensor argument of a primitive: a memory object in the caller's plain layout (its data handle set per
    /// call) and, when the primitive wants another layout, a memory of that layout over our own buffer plus the
    /// reorder between them (caller → primitive for inputs, primitive → caller for outputs). An operand can share
    /// another's reordered memory when the layouts match and the data is the same (<see cref="SharedWith"/>).
    /// </summary>
    private sealed class Operand : IDisposable
    {
        private nint _user, _inner, _reorder;
        private void* _buffer;
        private readonly bool _output;
        private readonly Operand? _shared;
        private readonly byte* _innerDesc;

        private Operand(Operand shared)
        {
            _shared = shared;
        }

        public Operand(byte* userMd, byte* innerMd, bool output)
        {
            _output = output;
            _innerDesc = innerMd;
            nint user;
            Check(MemoryCreate(&user, userMd, Engine, null), "dnnl_memory_create");
            _user = user;
            if (MemoryDescEqual(userMd, innerMd) != 0)
            {
                _inner = user;
                return;
            }
            try
            {
                var bytes = MemoryDescGetSize(innerMd);
                _buffer = NativeMemory.AlignedAlloc(bytes, 64);
                // NaN until a reorder or a primitive writes it: a pass that reads it unfilled shows up, not plausible numbers.
                new Span<float>(_buffer, checked((int)(bytes / sizeof(float)))).Fill(float.NaN);
                nint inner, reorderPd, reorder;
                Check(MemoryCreate(&inner, innerMd, Engine, _buffer), "dnnl_memory_create");
                _inner = inner;
                var status = output
                    ? ReorderPrimitiveDescCreate(&reorderPd, innerMd, Engine, userMd, Engine, 0)
                    : ReorderPrimitiveDescCreate(&reorderPd, userMd, Engine, innerMd, Engine, 0);
                Check(status, "dnnl_reorder_primitive_desc_create");
                status = PrimitiveCreate(&reorder, reorderPd);
                PrimitiveDescDestroy(reorderPd);
                Check(status, "dnnl_primitive_create (reorder)");
                _reorder = reorder;
            }
            catch
            {
                Dispose();
                throw;
            }
        }

        /// <summary>
        /// An input operand for <paramref name="innerMd"/> that reuses <paramref name="earlier"/>'s reordered memory
        /// when it has one of the same layout (the earlier pass already reordered the same data), else a new operand.
        /// </summary>
        public static Operand SharedWith(Operand earlier, byte* userMd, byte* innerMd) =>
            earlier._reorder != 0 && MemoryDescEqual(earlier.InnerDesc, innerMd) != 0 ? new Operand(earlier) : new Operand(userMd, innerMd, output: false);

        /// <summary>True when this operand reuses another's reordered memory.</summary>
        public bool IsShared => _shared is not null;

        /// <summary>The primitive-side descriptor, owned by the primitive descriptor (valid while the plan's forward one lives).</summary>
        private byte* InnerDesc => _innerDesc;

        /// <summary>Input: points the caller's memory at <paramref name="data"/>, reorders if needed; returns the memory to pass.</summary>
        public nint In(float* data, nint stream)
        {
            if (_shared is not null) return _shared._inner;
            Check(MemorySetDataHandle(_user, data), "dnnl_memory_set_data_handle");
            if (_reorder != 0) Reorder(_user, _inner, stream);
            return _inner;
        }

        /// <summary>Output: points the caller's memory at <paramref name="data"/>; returns the memory the primitive writes.</summary>
        public nint Bind(float* data)
        {
            Check(MemorySetDataHandle(_user, data), "dnnl_memory_set_data_handle");
            return _inner;
        }

        /// <summary>Output: reorders the primitive's result into the caller's memory, if the layouts differ.</summary>
        public void Out(nint stream)
        {
            if (_reorder != 0) Reorder(_inner, _user, stream);
        }

        private void Reorder(nint from, nint to, nint stream)
        {
            var args = stackalloc ExecArg[2];
            args[0] = new ExecArg { Arg = ArgSrc, Memory = from };
            args[1] = new ExecArg { Arg = ArgDst, Memory = to };
            Check(PrimitiveExecute(_reorder, stream, 2, args), _output ? "dnnl_primitive_execute (reorder out)" : "dnnl_primitive_execute (reorder in)");
        }

        public void Dispose()
        {
            if (_shared is not null) return;
            if (_reorder != 0) PrimitiveDestroy(_reorder);
            if (_inner != 0 && _inner != _user) MemoryDestroy(_inner);
            if (_user != 0) MemoryDestroy(_user);
            if (_buffer != null) NativeMemory.AlignedFree(_buffer);
            (_reorder, _inner, _user) = (0, 0, 0);
            _buffer = null;
        }
    }

    /// <summary>Everything for one batch size; the backward primitives are made on first use.</summary>
    private sealed class Plan : IDisposable
    {
        public readonly int Batch;
        private nint _forwardDesc;
        public nint Forward, BackwardData, BackwardWeights;
        public Operand Source = null!, Weights = null!, Destination = null!;
        public nint Bias, DiffBias;
        public Scratch ForwardScratch, DataScratch, WeightsScratch;
        public Operand? WeightsSource, WeightsDiffDst, DiffWeights, DataDiffDst, DataWeights, DiffSource;
        public bool DataDiffDstSharesWeights;
        /// <summary>A forward pass ran on this plan since it was made, so operands shared with it hold its x and w.</summary>
        public bool ForwardRan;
        private readonly nint _attributes;

        public Plan(OneDnnConvolution owner, int batch)
        {
            Batch = batch;
            nint attributes;
            Check(AttrCreate(&attributes), "dnnl_primitive_attr_create");
            _attributes = attributes;
            try
            {
                Check(AttrSetScratchpadMode(attributes, ScratchpadUser), "dnnl_primitive_attr_set_scratchpad_mode");
                using var descriptors = new Descriptors();
                owner.UserDescs(descriptors, batch, out var src, out var weights, out var bias, out var dst);
                var layout = owner.PrimitiveLayout;
                var op = descriptors.New(ConvolutionDescBytes);
                owner.Geometry(descriptors, out var strides, out var padding);
                Check(ConvolutionForwardDescInit(op, ForwardTraining, ConvolutionDirect,
                        descriptors.MemoryDesc(owner._source, batch, layout), descriptors.MemoryDesc(owner._weights, layout),
                        owner._hasBias ? bias : null, descriptors.MemoryDesc(owner._destination, batch, layout),
                        strides, padding, padding),
                    "dnnl_convolution_forward_desc_init");
                nint desc;
                Check(PrimitiveDescCreate(&desc, op, attributes, Engine, 0), "dnnl_primitive_desc_create (convolution forward)");
                _forwardDesc = desc;
                Source = new Operand(src, PrimitiveDescQueryMd(desc, QuerySrc, 0), output: false);
                Weights = new Operand(weights, PrimitiveDescQueryMd(desc, QueryWeights, 0), output: false);
                Destination = new Operand(dst, PrimitiveDescQueryMd(desc, QueryDst, 0), output: true);
                if (owner._hasBias) Bias = UserMemory(bias);
                ForwardScratch = Scratch.For(desc);
                Forward = CreatePrimitive(desc, "convolution forward");
            }
            catch
            {
                Dispose();
                throw;
            }
        }

        private static nint CreatePrimitive(nint desc, string what)
        {
            nint primitive;
            Check(PrimitiveCreate(&primitive, desc), $"dnnl_primitive_create ({what})");
            return primitive;
        }

        private static nint UserMemory(byte* md)
        {
            nint memory;
            Check(MemoryCreate(&memory, md, Engine, null), "dnnl_memory_create");
            return memory;
        }

        public void EnsureBackwardWeights(OneDnnConvolution owner)
        {
            if (BackwardWeights != 0) return;
            using var descriptors = new Descriptors();
            owner.UserDescs(descriptors, Batch, out var src, out var weights, out var bias, out var dst);
            var layout = owner.PrimitiveLayout;
            var op = descriptors.New(ConvolutionDescBytes);
            owner.Geometry(descriptors, out var strides, out var padding);
            Check(ConvolutionBackwardWeightsDescInit(op, ConvolutionDirect,
                    descriptors.MemoryDesc(owner._source, Batch, layout), descriptors.MemoryDesc(owner._weights, layout),
                    owner._hasBias ? bias : null, descriptors.MemoryDesc(owner._destination, Batch, layout),
                    strides, padding, padding),
                "dnnl_convolution_backward_weights_desc_init");
            nint desc;
            Check(PrimitiveDescCreate(&desc, op, _attributes, Engine, _forwardDesc), "dnnl_primitive_desc_create (convolution backward weights)");
            try
            {
                WeightsSource = Operand.SharedWith(Source, src, PrimitiveDescQueryMd(desc, QuerySrc, 0));
                WeightsDiffDst = new Operand(dst, PrimitiveDescQueryMd(desc, QueryDiffDst, 0), output: false);
                DiffWeights = new Operand(weights, PrimitiveDescQueryMd(desc, QueryDiffWeights, 0), output: true);
                if (owner._hasBias) DiffBias = UserMemory(bias);
                WeightsScratch = Scratch.For(desc);
                BackwardWeights = CreatePrimitive(desc, "convolution backward weights");
                // The data pass may reuse this dy reorder; decided when it is made (it needs the descriptor alive).
                _weightsDiffDstDesc = (byte*)NativeMemory.Alloc(MemoryDescBytes);
                Buffer.MemoryCopy(PrimitiveDescQueryMd(desc, QueryDiffDst, 0), _weightsDiffDstDesc, MemoryDescBytes, MemoryDescBytes);
            }
            finally
            {
                PrimitiveDescDestroy(desc);
            }
        }

        private byte* _weightsDiffDstDesc;

        public void EnsureBackwardData(OneDnnConvolution owner)
        {
            if (BackwardData != 0) return;
            using var descriptors = new Descriptors();
            owner.UserDescs(descriptors, Batch, out var src, out var weights, out _, out var dst);
            var layout = owner.PrimitiveLayout;
            var op = descriptors.New(ConvolutionDescBytes);
            owner.Geometry(descriptors, out var strides, out var padding);
            Check(ConvolutionBackwardDataDescInit(op, ConvolutionDirect,
                    descriptors.MemoryDesc(owner._source, Batch, layout), descriptors.MemoryDesc(owner._weights, layout),
                    descriptors.MemoryDesc(owner._destination, Batch, layout), strides, padding, padding),
                "dnnl_convolution_backward_data_desc_init");
            nint desc;
            Check(PrimitiveDescCreate(&desc, op, _attributes, Engine, _forwardDesc), "dnnl_primitive_desc_create (convolution backward data)");
            try
            {
                var diffDst = PrimitiveDescQueryMd(desc, QueryDiffDst, 0);
                // Reusing the weights pass's reordered dy needs the same layout, and that pass runs first (Backward's order).
                DataDiffDstSharesWeights = _weightsDiffDstDesc != null && MemoryDescEqual(_weightsDiffDstDesc, diffDst) != 0
                    && MemoryDescEqual(dst, diffDst) == 0;
                DataDiffDst = new Operand(dst, diffDst, output: false);
                DataWeights = Operand.SharedWith(Weights, weights, PrimitiveDescQueryMd(desc, QueryWeights, 0));
                DiffSource = new Operand(src, PrimitiveDescQueryMd(desc, QueryDiffSrc, 0), output: true);
                DataScratch = Scratch.For(desc);
                BackwardData = CreatePrimitive(desc, "convolution backward data");
            }
            finally
            {
                PrimitiveDescDestroy(desc);
            }
        }

        public void Dispose()
        {
            foreach (var primitive in new[] { Forward, BackwardData, BackwardWeights })
                if (primitive != 0) PrimitiveDestroy(primitive);
            (Forward, BackwardData, BackwardWeights) = (0, 0, 0);
            foreach (var operand in new[] { WeightsSource, DataWeights, Source, Weights, Destination, WeightsDiffDst, DiffWeights, DataDiffDst, DiffSource })
                operand?.Dispose();
            foreach (var memory in new[] { Bias, DiffBias })
                if (memory != 0) MemoryDestroy(memory);
            (Bias, DiffBias) = (0, 0);
            ForwardScratch.Free();
            DataScratch.Free();
            WeightsScratch.Free();
            if (_forwardDesc != 0) PrimitiveDescDestroy(_forwardDesc);
            _forwardDesc = 0;
            if (_attributes != 0) AttrDestroy(_attributes);
            if (_weightsDiffDstDesc != null) NativeMemory.Free(_weightsDiffDstDesc);
            _weightsDiffDstDesc = null;
        }
    }

    /// <summary>The caller's layouts: NCHW source, OIHW weights, <c>[OC]</c> bias, NCHW destination.</summary>
    private void UserDescs(Descriptors descriptors, int batch, out byte* src, out byte* weights, out byte* bias, out byte* dst)
    {
        src = descriptors.MemoryDesc(_source, batch, FormatAbcd);
        weights = descriptors.MemoryDesc(_weights, FormatAbcd);
        bias = descriptors.MemoryDesc(_bias, FormatA);
        dst = descriptors.MemoryDesc(_destination, batch, FormatAbcd);
    }

    /// <summary>Strides and (symmetric) padding as <c>dnnl_dims_t</c> arrays: height, width.</summary>
    private void Geometry(Descriptors descriptors, out long* strides, out long* padding)
    {
        strides = descriptors.Dims(_stride, _stride);
        padding = descriptors.Dims(_padding, _padding);
    }

    private static long[] WithBatch(long[] dims, int batch) => [batch, dims[1], dims[2], dims[3]];
}
