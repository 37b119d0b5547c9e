using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// The data plane's wire format: one fixed 64-byte little-endian header, then <see cref="Header.Count"/>
/// raw little-endian floats; or, for a compressed gradient (Cluster:Compression), <see cref="Header.PayloadBytes"/> bytes
/// of the encoded gradient (<see cref="Core.Compression.GradientEncoder"/>) followed by the floats after the trainable
/// part (BatchNorm running statistics). Weights go parameter server → worker, gradients worker → parameter server,
/// on a connection opened by <see cref="DataPlaneHello"/> (over TLS unless Cluster:Tls is false). The floats are
/// read straight into the receiver's buffer and written straight from the sender's, so a 1 MB tensor costs one
/// copy into and out of the kernel (and with TLS one encryption) on each side. With a <see cref="SharedMemoryRegion"/>
/// negotiated (Cluster:SharedMemory, the two ends on one host), a header's <see cref="Header.SharedSlot"/> says the body
/// is in that slot of the region instead of after the header: one copy in and one copy out, no kernel.
/// </summary>
internal static class TensorFrame
{
    /// <summary>"DTDP" in little-endian bytes: guards against a stranger on the port.</summary>
    public const uint Magic = 0x50445444;

    /// <summary>Bumped when the layout or a field's meaning changes; both ends must agree (7: a shard's weights carry the part's end
    /// round in <see cref="Header.SampleCount"/>).</summary>
    public const byte ProtocolVersion = 7;

    /// <summary>Frame types: float32 weights, float32 gradient, and a gradient encoded by Cluster:Compression.</summary>
    public const byte WeightsType = 1, GradientType = 2, CompressedGradientType = 3;

    /// <summary>Frame types of the shared-memory negotiation: the parameter server's offer (<see cref="SharedMemoryOffer"/>,
    /// the first frame it sends, if any) and the worker's answer (<see cref="SharedMemoryAnswer"/>). Both carry no floats
    /// (a count of 0 for the answer, the model's for the offer) and a fixed-size body.</summary>
    public const byte SharedMemoryOfferType = 4, SharedMemoryAnswerType = 5;

    /// <summary>Frame types of a shard node's data plane (<see cref="ShardDataPlane"/>): a shard's slice of the weights
    /// (<see cref="ShardWeights"/>: the header's <see cref="Header.WorkerIndex"/> carries the shard index,
    /// <see cref="Header.Part"/> the part and <see cref="Header.EndRound"/> the stamp, then the slice's floats), and a refusal (its body is
    /// <see cref="Header.PayloadBytes"/> bytes of UTF-8 text naming the problem, no floats), which the shard node sends a
    /// worker before closing its connection. The workers' slices travel as <see cref="GradientType"/> frames of the slice's
    /// length.</summary>
    public const byte ShardWeightsType = 6, RefusalType = 7;

    /// <summary>Largest refusal text, in UTF-8 bytes; a longer reason is cut to it.</summary>
    public const int MaxRefusalBytes = 2048;

    /// <summary>Largest tensor a frame may carry: 2^28 - 1 floats (just under 1 GiB). A header announcing more is refused
    /// before anything is allocated, whatever the model; so is one announcing any count other than the model's.</summary>
    public const int MaxCount = (1 << 28) - 1;

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    public struct Header
    {
        public uint Magic;
        public byte Type;
        public byte Version;
        /// <summary>0: the body follows the header on the stream. n &gt; 0: the body is in slot n - 1 of the connection's
        /// <see cref="SharedMemoryRegion"/> (in the sender's direction), and nothing follows the header.</summary>
        public ushort SharedSlot;
        public int Epoch;
        public int Round;
        public long WeightsVersion;
        public int WorkerIndex;
        /// <summary>A gradient: the samples of its minibatch. A shard's weights: the part's end round as the shard knows it
        /// (<see cref="ShardWeights.EndRound"/>). 0 in weights.</summary>
        public int SampleCount;
        public double LossSum;
        public double ComputeSeconds;
        public int Count;
        /// <summary>A compressed gradient's encoded bytes (the floats after the trainable part follow them); 0 otherwise.</summary>
        public int PayloadBytes;
        /// <summary>Weights and a shard's weights: the part of the epoch they belong to (<see cref="WeightsUpdated.Part"/>,
        /// <see cref="ShardWeights.Part"/>); 0 in a gradient.</summary>
        public int Part;
        /// <summary>Weights: the round after the part's last minibatch (<see cref="WeightsUpdated.EndRound"/>); a shard's weights: its
        /// stamp (<see cref="ShardWeights.Stamp"/>); 0 in a gradient.</summary>
        public int EndRound;
    }

    public static readonly int HeaderSize = Marshal.SizeOf<Header>();

    private static long _bytesSent;
    private static long _bytesReceived;

    /// <summary>Bytes this process wrote to data-plane sockets (headers and tensors), since start.</summary>
    public static long BytesSent => Interlocked.Read(ref _bytesSent);

    /// <summary>Bytes this process read from data-plane sockets, since start.</summary>
    public static long BytesReceived => Interlocked.Read(ref _bytesReceived);

    private static long _sharedBytesSent;
    private static long _sharedBytesReceived;

    /// <summary>Of <see cref="BytesSent"/>, the bodies this process wrote to shared-memory slots instead of a socket.</summary>
    public static long SharedBytesSent => Interlocked.Read(ref _sharedBytesSent);

    /// <summary>Of <see cref="BytesReceived"/>, the bodies this process received in shared-memory slots (copied out, or read in place).</summary>
    public static long SharedBytesReceived => Interlocked.Read(ref _sharedBytesReceived);

    /// <summary>A weights frame's header; its worker field carries the shard whose minibatch the receiver computes (-1: its own).</summary>
    public static Header For(WeightsUpdated m) => new()
    {
        Magic = Magic, Type = WeightsType, Version = ProtocolVersion, Epoch = m.Epoch, Round = m.Round, WeightsVersion = m.Version,
        WorkerIndex = m.Shard, Count = m.Weights.Length, Part = m.Part, EndRound = m.EndRound,
    };

    /// <summary>A shard's result's header (<see cref="ShardWeightsType"/>): its worker field carries the shard index, its end-round field
    /// the stamp, its sample-count field the part's end round.</summary>
    public static Header For(ShardWeights m) => new()
    {
        Magic = Magic, Type = ShardWeightsType, Version = ProtocolVersion, Epoch = m.Epoch, Round = m.Round, WeightsVersion = m.Version,
        WorkerIndex = m.Shard, Part = m.Part, EndRound = m.Stamp, SampleCount = m.EndRound, Count = m.Weights.Length,
    };

    /// <summary>The <see cref="ShardWeightsHeader"/> a <see cref="ShardWeightsType"/> frame's header carries.</summary>
    public static ShardWeightsHeader ShardWeightsOf(Header header) =>
        new(header.WorkerIndex, header.Epoch, header.Round, header.EndRound, header.WeightsVersion, header.Count, header.Part, header.SampleCount);

    /// <summary>A gradient frame's header: <see cref="CompressedGradientType"/> with the encoded length when the message
    /// carries <see cref="GradientComputed.Encoded"/>; its count is always the whole report's float count.</summary>
    public static Header For(GradientComputed m) => new()
    {
        Magic = Magic, Type = m.Encoded is null ? GradientType : CompressedGradientType, Version = ProtocolVersion, Epoch = m.Epoch, Round = m.Round,
        WeightsVersion = m.Version, WorkerIndex = m.WorkerIndex, SampleCount = m.SampleCount, LossSum = m.LossSum, ComputeSeconds = m.ComputeSeconds,
        Count = m.Gradient.Length, PayloadBytes = m.Encoded?.Length ?? 0,
    };

    /// <summary>Writes the header and the floats; blocks until the kernel took them.</summary>
    public static void Write(Stream stream, Header header, ReadOnlySpan<float> values) => Write(stream, header, [], values);

    /// <summary>Writes the header, then <paramref name="payload"/> (a compressed gradient's encoded bytes), then the floats.</summary>
    public static void Write(Stream stream, Header header, ReadOnlySpan<byte> payload, ReadOnlySpan<float> values)
    {
        WriteHeader(stream, header);
        if (!payload.IsEmpty) SendAll(stream, payload);
        SendAll(stream, MemoryMarshal.AsBytes(values));
    }

    /// <summary>Reads one header (<see cref="HeaderSize"/> bytes into the stack) and checks it with <see cref="ParseHeader"/>.</summary>
    /// <param name="stream">The connection's stream (TLS, or the socket's own).</param>
    /// <param name="expectedType">The frame type the reader accepts (<see cref="WeightsType"/> or <see cref="GradientType"/>).</param>
    /// <param name="expectedCount">The float count the reader accepts: the model's length.</param>
    /// <param name="peer">The remote address, for messages.</param>
    /// <exception cref="IOException">The peer closed the connection, or the header is refused; the message names the peer.</exception>
    /// <param name="expectedPayloadBytes">For <see cref="CompressedGradientType"/>: the encoded bytes the reader's
    /// Cluster:Compression gives (<see cref="Core.Compression.GradientEncoder.EncodedBytes(Core.Compression.GradientCompressionSettings, ReadOnlySpan{int})"/>); 0 otherwise.</param>
    /// <param name="sharedSlots">Slots of the shared-memory region negotiated on this connection in the sender's direction; 0: none.</param>
    /// <param name="alsoAccepted">A second frame type the reader accepts here (the worker's first frame may be an offer, a
    /// shard's worker may get a refusal); 0: none.</param>
    /// <param name="expectedCountIs">What <paramref name="expectedCount"/> is, for the refusal of another count (a shard's
    /// <c>shard 1's slice [117568, 235146)</c>); null: the model's tensors.</param>
    /// <param name="payloadBytesAtMost">True: a compressed gradient may announce fewer encoded bytes than
    /// <paramref name="expectedPayloadBytes"/>, down to a message's header (a worker's cut of its slice, on a shard node).</param>
    public static Header ReadHeader(Stream stream, byte expectedType, int expectedCount, string peer, int expectedPayloadBytes = 0, int sharedSlots = 0,
        byte alsoAccepted = 0, string? expectedCountIs = null, bool payloadBytesAtMost = false)
    {
        Span<byte> bytes = stackalloc byte[HeaderSize];
        ReceiveAll(stream, bytes, peer);
        return ParseHeader(bytes, expectedType, expectedCount, peer, expectedPayloadBytes, sharedSlots, alsoAccepted, expectedCountIs, payloadBytesAtMost);
    }

    /// <summary>
    /// Decodes a frame header and checks it before anything is allocated for its floats: DistTrain's magic number, this
    /// protocol version, the frame type the reader expects, a float count of exactly <paramref name="expectedCount"/>
    /// (the model's length) and at most <see cref="MaxCount"/>, no negative sample count, for a compressed gradient
    /// exactly <paramref name="expectedPayloadBytes"/> encoded bytes, or at most that many with <paramref name="payloadBytesAtMost"/> (0 for the tensor types, the fixed body size for the
    /// negotiation's), and a shared-memory slot only among the <paramref name="sharedSlots"/> negotiated.
    /// </summary>
    /// <param name="bytes">At least <see cref="HeaderSize"/> bytes, as received.</param>
    /// <param name="expectedType">The frame type the reader accepts (<see cref="WeightsType"/>, <see cref="GradientType"/>).</param>
    /// <param name="expectedCount">The float count the reader accepts: the model's length.</param>
    /// <param name="peer">The remote address, for the message.</param>
    /// <param name="expectedPayloadBytes">For <see cref="CompressedGradientType"/>: the encoded bytes this node's
    /// Cluster:Compression gives; 0 otherwise.</param>
    /// <param name="sharedSlots">Slots of the shared-memory region negotiated on this connection in the sender's direction; 0: none.</param>
    /// <param name="alsoAccepted">A second frame type accepted here; 0: none. A <see cref="RefusalType"/> accepted here must
    /// carry no floats and 1 to <see cref="MaxRefusalBytes"/> bytes of text.</param>
    /// <param name="expectedCountIs">What <paramref name="expectedCount"/> is, for the refusal of another count (a shard's
    /// <c>shard 1's slice [117568, 235146)</c>); null: the model's tensors.</param>
    /// <param name="payloadBytesAtMost">True: a compressed gradient may announce from a message's header
    /// (<see cref="Core.Compression.GradientEncoder.HeaderBytes"/>) to <paramref name="expectedPayloadBytes"/> encoded bytes (a worker's
    /// cut of its slice, on a shard node, <see cref="Core.Compression.GradientMessageSlice"/>); false: exactly that many.</param>
    /// <exception cref="IOException">The header is refused; the message names the peer, what it sent and what was expected.</exception>
    public static Header ParseHeader(ReadOnlySpan<byte> bytes, byte expectedType, int expectedCount, string peer, int expectedPayloadBytes = 0,
        int sharedSlots = 0, byte alsoAccepted = 0, string? expectedCountIs = null, bool payloadBytesAtMost = false)
    {
        if (bytes.Length < HeaderSize)
            throw new IOException($"data plane: {peer} sent a {bytes.Length}-byte frame header; a header has {HeaderSize} bytes.");
        var header = MemoryMarshal.Read<Header>(bytes);
        if (header.Magic != Magic)
            throw new IOException($"data plane: {peer} sent a frame starting with 0x{header.Magic:X8}, not DistTrain's 0x{Magic:X8}; something else is talking to this port.");
        if (header.Version != ProtocolVersion)
            throw new IOException($"data plane: {peer} speaks protocol version {header.Version}, this node {ProtocolVersion}; run the same DistTrain version on every node.");
        if (header.Type != expectedType && (alsoAccepted == 0 || header.Type != alsoAccepted))
            throw new IOException($"data plane: {peer} sent a {TypeName(header.Type)} frame where a {TypeName(expectedType)} frame belongs; the connection is closed."
                + (IsGradient(header.Type) && IsGradient(expectedType) ? " Every node must use the same Cluster:Compression." : ""));
        if (header.Type == RefusalType)
        {
            if (header.Count != 0 || header.PayloadBytes < 1 || header.PayloadBytes > MaxRefusalBytes || header.SharedSlot != 0)
                throw new IOException($"data plane: {peer} sent a refusal of {header.Count} floats and {header.PayloadBytes} bytes of text in slot {header.SharedSlot}; " +
                    $"a refusal has no floats, 1 to {MaxRefusalBytes} bytes of text and no shared-memory slot. The connection is closed.");
            return header;
        }
        if (header.Count < 0 || header.Count > MaxCount)
            throw new IOException($"data plane: {peer} announced a {TypeName(header.Type)} of {header.Count} floats (allowed 0 to {MaxCount}); refused before allocating, the connection is closed.");
        if (header.Count != expectedCount)
            throw new IOException(expectedCountIs is null
                ? $"data plane: {peer} announced a {TypeName(header.Type)} of {header.Count} floats; this model's tensors have {expectedCount}. Refused before allocating, the connection is closed: the peer runs another model or is not a DistTrain node."
                : $"data plane: {peer} announced a {TypeName(header.Type)} of {header.Count} floats; {expectedCountIs} has {expectedCount}. Refused before allocating, the connection is closed: the worker and the shard cut the model differently (another model or shard count).");
        if (header.SampleCount < 0)
            throw new IOException($"data plane: {peer} sent a {TypeName(header.Type)} with sample count {header.SampleCount}; counts are never negative.");
        var payloadBytes = header.Type switch
        {
            CompressedGradientType => expectedPayloadBytes,
            SharedMemoryOfferType => SharedMemoryOffer.Size,
            SharedMemoryAnswerType => SharedMemoryAnswer.Size,
            _ => 0,
        };
        if (payloadBytesAtMost && header.Type == CompressedGradientType)
        {
            if (header.PayloadBytes < Core.Compression.GradientEncoder.HeaderBytes || header.PayloadBytes > payloadBytes)
                throw new IOException($"data plane: {peer} announced a {TypeName(header.Type)} with {header.PayloadBytes} encoded bytes where " +
                    $"{Core.Compression.GradientEncoder.HeaderBytes} to {payloadBytes} belong for {expectedCountIs ?? "this model"}. Refused before allocating, the connection is closed.");
        }
        else if (header.PayloadBytes != payloadBytes)
            throw new IOException($"data plane: {peer} announced a {TypeName(header.Type)} with {header.PayloadBytes} encoded bytes where {payloadBytes} belong"
                + (header.Type == CompressedGradientType ? " with this node's Cluster:Compression; every node must use the same Cluster:Compression, Cluster:TopKRatio and Cluster:TopKScope" : "")
                + ". Refused before allocating, the connection is closed.");
        var slots = header.Type is SharedMemoryOfferType or SharedMemoryAnswerType ? 0 : sharedSlots;
        if (header.SharedSlot > slots)
            throw new IOException($"data plane: {peer} sent a {TypeName(header.Type)} whose body is in shared-memory slot {header.SharedSlot - 1}, but "
                + (slots == 0 ? "no shared memory was agreed for it on this connection" : $"only {slots} slots were agreed") + "; the connection is closed.");
        return header;
    }

    private static string TypeName(byte type) => type switch
    {
        WeightsType => "weights",
        GradientType => "gradient",
        CompressedGradientType => "compressed gradient",
        SharedMemoryOfferType => "shared-memory offer",
        SharedMemoryAnswerType => "shared-memory answer",
        ShardWeightsType => "shard weights",
        RefusalType => "refusal",
        _ => $"type-{type}",
    };

    private static bool IsGradient(byte type) => type is GradientType or CompressedGradientType;

    /// <summary>
    /// Reads frames from <paramref name="connection"/> on a background thread until the connection fails: each header is
    /// checked with <see cref="ParseHeader"/> against <paramref name="expectedType"/> and <paramref name="expectedCount"/>,
    /// then <paramref name="bufferFor"/> returns the array of that length to read the floats into, then
    /// <paramref name="deliver"/> gets it. <paramref name="failed"/> receives the reason the loop ended (naming the peer).
    /// With <paramref name="compressed"/>, the reader expects <see cref="CompressedGradientType"/> frames and decodes each
    /// into the buffer (<see cref="CompressedGradientReader"/>); a malformed encoding ends the loop like a bad header. A shard
    /// node's reader (<see cref="CompressedGradientReader.VariableSize"/>) takes each frame's own encoded size, up to its most.
    /// <para><paramref name="negotiate"/>, if given, runs first on the reader thread and returns the shared-memory slots
    /// that bodies arrive in from then on, or null for none (the parameter server reads the worker's
    /// <see cref="SharedMemoryAnswer"/> there). With <paramref name="onOffer"/>, the first frame may be a
    /// <see cref="SharedMemoryOfferType"/>: it gets the decoded offer and returns the slots that bodies arrive in from then
    /// on, or null if the worker declined.</para>
    /// <para>With <paramref name="deliverInPlace"/>, a float32 body that arrives in a shared-memory slot is not copied out:
    /// it gets the header and the slot's index, takes the body in place (<see cref="SharedSlotBody"/>) and delivers it;
    /// the slot stays the receiver's until that body is released.</para>
    /// <para>With <paramref name="refusals"/> (a worker's connection to a shard node), any frame may be a
    /// <see cref="RefusalType"/>: the loop ends with the peer's text as the reason. <paramref name="expectedCountIs"/> names
    /// what the expected count is in the refusal of another count (<see cref="ParseHeader"/>).</para>
    /// </summary>
    public static void StartReader(DataPlaneConnection connection, string threadName, byte expectedType, int expectedCount,
        Func<Header, float[]> bufferFor, Action<Header, float[]> deliver, Action<string> failed, CompressedGradientReader? compressed = null,
        Func<SharedSlots?>? negotiate = null, Func<SharedMemoryOffer, SharedSlots?>? onOffer = null, Action<Header, int>? deliverInPlace = null,
        bool refusals = false, string? expectedCountIs = null) =>
        new Thread(() =>
        {
            try
            {
                var type = compressed is null ? expectedType : CompressedGradientType;
                var payloadBytes = compressed?.MessageBytes ?? 0;
                var slots = negotiate?.Invoke();
                var offerAllowed = onOffer is not null;
                while (true)
                {
                    var header = ReadHeader(connection.Stream, type, expectedCount, connection.Peer, payloadBytes, slots?.Count ?? 0,
                        offerAllowed ? SharedMemoryOfferType : refusals ? RefusalType : (byte)0, expectedCountIs, compressed?.VariableSize ?? false);
                    if (header.Type == RefusalType) throw new IOException(ReadRefusal(connection, header));
                    if (header.Type == SharedMemoryOfferType)
                    {
                        var offer = new byte[SharedMemoryOffer.Size];
                        ReadBytes(connection.Stream, offer, connection.Peer);
                        slots = onOffer!(SharedMemoryOffer.Parse(offer));
                        offerAllowed = false;
                        continue;
                    }
                    offerAllowed = false;
                    if (header.SharedSlot > 0 && compressed is null && deliverInPlace is not null)
                    {
                        CountSharedReceived((long)header.Count * sizeof(float));
                        deliverInPlace(header, header.SharedSlot - 1);
                        continue;
                    }
                    var buffer = bufferFor(header);
                    if (header.SharedSlot > 0) ReadShared(slots!, header.SharedSlot - 1, buffer, compressed, connection.Peer);
                    else if (compressed is null) ReadValues(connection.Stream, buffer, connection.Peer);
                    else compressed.Read(connection.Stream, buffer, connection.Peer, header.PayloadBytes);
                    deliver(header, buffer);
                }
            }
            catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
            {
                failed(e.Message);
            }
            catch (Exception e)
            {
                // Anything else would end the process from this background thread: the connection closes instead.
                failed($"data plane: reading from {connection.Peer} failed unexpectedly ({e.GetType().Name}: {e.Message}); the connection is closed.");
            }
        }) { IsBackground = true, Name = threadName }.Start();

    /// <summary>The text of a refusal whose header was read: <c>data plane: 10.0.0.5:4055 refused this connection: ...</c>.</summary>
    private static string ReadRefusal(DataPlaneConnection connection, Header header)
    {
        var text = new byte[header.PayloadBytes];
        ReadBytes(connection.Stream, text, connection.Peer);
        // Shown in a log line: control characters from the peer are replaced so they cannot forge lines.
        var reason = new string([.. Encoding.UTF8.GetString(text).Select(c => char.IsControl(c) ? '?' : c)]);
        return $"data plane: {connection.Peer} refused this connection: {reason}";
    }

    /// <summary>
    /// Writes a <see cref="RefusalType"/> frame carrying <paramref name="reason"/> (UTF-8, cut to <see cref="MaxRefusalBytes"/>);
    /// on a broken connection returns why instead of throwing.
    /// </summary>
    public static string? TryWriteRefusal(DataPlaneConnection connection, string reason)
    {
        var text = Encoding.UTF8.GetBytes(reason.Length == 0 ? "refused" : reason);
        if (text.Length > MaxRefusalBytes)
        {
            // Cut on a character boundary: a UTF-8 continuation byte (10xxxxxx) never starts the cut-off part.
            var end = MaxRefusalBytes;
            while ((text[end] & 0xC0) == 0x80) end--;
            text = text[..end];
        }
        try
        {
            Write(connection.Stream, new Header { Magic = Magic, Type = RefusalType, Version = ProtocolVersion, PayloadBytes = text.Length }, text, []);
            connection.Stream.Flush();
            return null;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
        {
            return e.Message;
        }
    }

    /// <summary>Copies a body out of shared-memory slot <paramref name="slot"/> into <paramref name="buffer"/> and releases the slot.</summary>
    /// <exception cref="IOException">The body does not fit the slot, or the encoding is malformed.</exception>
    /// <exception cref="ObjectDisposedException">The region is closing.</exception>
    internal static void ReadShared(SharedSlots slots, int slot, float[] buffer, CompressedGradientReader? compressed, string peer)
    {
        int bodyBytes;
        using (slots.Lease())
        {
            var body = slots.Slot(slot);
            if (compressed is null)
            {
                var bytes = MemoryMarshal.AsBytes(buffer.AsSpan());
                bodyBytes = bytes.Length;
                if (bodyBytes > body.Length)
                    throw new IOException($"data plane: {peer} announced a body of {bodyBytes} bytes in a shared-memory slot of {body.Length}; the connection is closed.");
                body[..bodyBytes].CopyTo(bytes);
            }
            else bodyBytes = compressed.Read(body, buffer, peer);
            slots.Release(slot);
        }
        CountSharedReceived(bodyBytes);
    }

    /// <summary>Counts a body received in a shared-memory slot, bytes, in <see cref="BytesReceived"/> and <see cref="SharedBytesReceived"/>.</summary>
    private static void CountSharedReceived(long bodyBytes)
    {
        Interlocked.Add(ref _bytesReceived, bodyBytes);
        Interlocked.Add(ref _sharedBytesReceived, bodyBytes);
    }

    /// <summary>Reads <paramref name="bytes"/>.Length bytes.</summary>
    /// <exception cref="IOException">The peer (<paramref name="peer"/>, for the message) closed the connection first.</exception>
    public static void ReadBytes(Stream stream, Span<byte> bytes, string peer) => ReceiveAll(stream, bytes, peer);

    /// <summary>Reads <paramref name="values"/>.Length floats.</summary>
    /// <exception cref="IOException">The peer (<paramref name="peer"/>, for the message) closed the connection first.</exception>
    public static void ReadValues(Stream stream, Span<float> values, string peer) => ReceiveAll(stream, MemoryMarshal.AsBytes(values), peer);

    private static void WriteHeader(Stream stream, in Header header)
    {
        Span<byte> bytes = stackalloc byte[HeaderSize];
        MemoryMarshal.Write(bytes, in header);
        SendAll(stream, bytes);
    }

    private static void SendAll(Stream stream, ReadOnlySpan<byte> bytes)
    {
        Interlocked.Add(ref _bytesSent, bytes.Length);
        stream.Write(bytes);
    }

    private static void ReceiveAll(Stream stream, Span<byte> bytes, string peer)
    {
        try
        {
            stream.ReadExactly(bytes);
            // Counted once read: a reader blocked waiting for the next header has not received it (counting it before the read
            // made a count taken meanwhile include a header that had not arrived).
            Interlocked.Add(ref _bytesReceived, bytes.Length);
        }
        catch (EndOfStreamException)
        {
            throw new IOException($"data plane: {peer} closed the connection.");
        }
        catch (Exception e) when (IsReset(e))
        {
            // A peer that closes its socket with bytes of ours unread (a frame we had sent) resets the connection instead of
            // ending it: the same event, which timing alone tells apart, so it reads the same.
            throw new IOException($"data plane: {peer} closed the connection (reset).", e);
        }
    }

    /// <summary>True for a connection reset by the peer, as a <see cref="SocketException"/> or wrapped in an <see cref="IOException"/>
    /// (the network stream wraps it; a TLS stream passes the network stream's on).</summary>
    private static bool IsReset(Exception e) =>
        (e as SocketException ?? e.InnerException as SocketException) is { SocketErrorCode: SocketError.ConnectionReset };

    /// <summary>Writes a frame (its body into the next of <paramref name="slots"/> when given); on a broken connection
    /// returns the reason instead of throwing.</summary>
    public static string? TryWrite(DataPlaneConnection? connection, Header header, ReadOnlySpan<float> values, SharedSlots? slots = null) =>
        TryWrite(connection, header, [], values, slots);

    /// <summary>Writes a frame with a payload before its floats (<see cref="Write(Stream, Header, ReadOnlySpan{byte}, ReadOnlySpan{float})"/>);
    /// on a broken connection returns the reason instead of throwing. With <paramref name="slots"/>, the payload and the
    /// floats go into the next slot (<see cref="SharedSlots.Acquire"/>, which may wait for the receiver to release it) and
    /// only the header, naming that slot, goes on the stream.</summary>
    public static string? TryWrite(DataPlaneConnection? connection, Header header, ReadOnlySpan<byte> payload, ReadOnlySpan<float> values,
        SharedSlots? slots = null)
    {
        try
        {
            var stream = (connection ?? throw new ObjectDisposedException("data plane connection")).Stream;
            if (slots is null) Write(stream, header, payload, values);
            else WriteShared(stream, header, payload, values, slots);
            return null;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
        {
            return e.Message;
        }
    }

    /// <summary>
    /// Sends the header of a body already written in place into a shared-memory slot (<see cref="SharedSlotWrite"/>):
    /// ends the write's lease and writes the header naming its slot. On a broken connection returns the reason instead of
    /// throwing, as <see cref="TryWrite(DataPlaneConnection?, Header, ReadOnlySpan{float}, SharedSlots?)"/> does.
    /// </summary>
    /// <exception cref="ArgumentException">The header's count is not the body's.</exception>
    public static string? TryAnnounce(DataPlaneConnection? connection, Header header, SharedSlotWrite written)
    {
        if (header.Count != written.Count || header.PayloadBytes != 0)
            throw new ArgumentException($"A header of {header.Count} floats and {header.PayloadBytes} payload bytes cannot announce a body of {written.Count} floats.", nameof(header));
        written.Announce();
        try
        {
            AnnounceShared((connection ?? throw new ObjectDisposedException("data plane connection")).Stream, header, written.Slot, written.Bytes);
            return null;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or IOException)
        {
            return e.Message;
        }
    }

    private static void WriteShared(Stream stream, Header header, ReadOnlySpan<byte> payload, ReadOnlySpan<float> values, SharedSlots slots)
    {
        var bodyBytes = payload.Length + values.Length * sizeof(float);
        if (bodyBytes > slots.SlotBytes)
            throw new IOException($"data plane: a {TypeName(header.Type)} body of {bodyBytes} bytes does not fit the agreed shared-memory slots of {slots.SlotBytes}.");
        int slot;
        // The lease spans the wait too: a region disposed meanwhile (the link stopping) stays mapped until this returns.
        using (slots.Lease())
        {
            slot = slots.Acquire();
            var body = slots.Slot(slot);
            payload.CopyTo(body);
            MemoryMarshal.AsBytes(values).CopyTo(body[payload.Length..]);
        }
        AnnounceShared(stream, header, slot, bodyBytes);
    }

    /// <summary>Counts a body of <paramref name="bodyBytes"/> written into shared-memory slot <paramref name="slot"/>, then
    /// writes the header naming it.</summary>
    private static void AnnounceShared(Stream stream, Header header, int slot, long bodyBytes)
    {
        // Counted before the header goes out, as on the socket path: once it is out, the receiver may act on the frame.
        Interlocked.Add(ref _bytesSent, bodyBytes);
        Interlocked.Add(ref _sharedBytesSent, bodyBytes);
        WriteHeader(stream, header with { SharedSlot = (ushort)(slot + 1) });
    }

    /// <summary>Writes a negotiation frame (<see cref="SharedMemoryOfferType"/> or <see cref="SharedMemoryAnswerType"/>) with its fixed-size body.</summary>
    /// <exception cref="IOException">The connection failed.</exception>
    public static void WriteNegotiation(Stream stream, byte type, int count, byte[] body)
    {
        Write(stream, new Header { Magic = Magic, Type = type, Version = ProtocolVersion, Count = count, PayloadBytes = body.Length }, body, []);
        stream.Flush();
    }

    /// <summary>TCP settings for 1 MB tensors: no Nagle delay, buffers that hold a whole tensor (Linux caps them at net.core.wmem_max).</summary>
    public static void Tune(Socket socket)
    {
        socket.NoDelay = true;
        socket.SendBufferSize = 4 << 20;
        socket.ReceiveBufferSize = 4 << 20;
    }
}
