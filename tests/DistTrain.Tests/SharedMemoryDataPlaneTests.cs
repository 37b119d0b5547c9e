using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Core.Compression;

namespace DistTrain.Tests;

/// <summary>
/// Cluster:SharedMemory: the region a parameter server offers a worker on its host, the offer and answer on the
/// data-plane connection, and tensors crossing through the region's slots while the socket carries only headers.
/// </summary>
public sealed class SharedMemoryDataPlaneTests() : TestKit(AkkaSettings.Serialization())
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20); // a hang guard on a loaded machine, not a speed limit
    private readonly OwnedResources _owned = new("disttrain-shared-memory-");

    protected override void Dispose(bool disposing)
    {
        if (disposing) _owned.Dispose();
        base.Dispose(disposing);
    }

    /// <summary>The worker maps the parameter server's memory file through /proc and both see the same slots; neither can
    /// resize the file (its seals), which would fault the other process's next access.</summary>
    [Fact]
    public void A_region_opened_from_its_offer_shares_its_slots_and_its_size_is_sealed_for_both_processes()
    {
        var server = _owned.Own(SharedMemoryRegion.Create(2, 12, 3, 20));
        Assert.Matches($"^/proc/{Environment.ProcessId}/fd/[0-9]+$", server.Path);
        var worker = _owned.Own(SharedMemoryRegion.Open(SharedMemoryOffer.Parse(SharedMemoryOffer.Of(server).ToBytes()), weightSlotBytes: 12));
        Assert.Equal((2, 12, 3, 20), (worker.Weights.Count, worker.Weights.SlotBytes, worker.Gradients.Count, worker.Gradients.SlotBytes));

        float[] weights = [1.5f, -2f, 3.25f];
        using (server.Lease()) MemoryMarshal.AsBytes(weights.AsSpan()).CopyTo(server.Weights.Slot(1));
        using (worker.Lease()) Assert.Equal(weights, MemoryMarshal.Cast<byte, float>(worker.Weights.Slot(1)).ToArray());
        using (worker.Lease()) "gradient"u8.CopyTo(worker.Gradients.Slot(2));
        using (server.Lease()) Assert.Equal("gradient"u8.ToArray(), server.Gradients.Slot(2)[..8].ToArray());

        using var other = new FileStream(server.Path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        var total = SharedMemoryRegion.TotalBytes(2, 12, 3, 20);
        Assert.Equal(total, other.Length);
        Assert.Throws<UnauthorizedAccessException>(() => other.SetLength(0)); // EPERM: F_SEAL_SHRINK
        Assert.Throws<UnauthorizedAccessException>(() => other.SetLength(2 * total)); // EPERM: F_SEAL_GROW
        using (worker.Lease()) Assert.Equal(weights, MemoryMarshal.Cast<byte, float>(worker.Weights.Slot(1)).ToArray());
    }

    /// <summary>A sender takes the lowest free slot, so in lock-step use (each frame released before the next is written)
    /// one slot carries every frame and stays in the caches; it takes another only while the receiver holds the first, and
    /// waits while the receiver holds them all.</summary>
    [Fact]
    public async Task A_sender_takes_the_lowest_free_slot_waits_for_the_receiver_to_release_one_and_gives_up_when_the_region_closes()
    {
        var server = _owned.Own(SharedMemoryRegion.Create(2, 8, 1, 8));
        var worker = _owned.Own(SharedMemoryRegion.Open(SharedMemoryOffer.Of(server), weightSlotBytes: 8));
        for (var frame = 0; frame < 3; frame++)
        {
            Assert.Equal(0, server.Weights.Acquire()); // released before the next frame: the same slot every time
            worker.Weights.Release(0);
        }
        Assert.Equal(0, server.Weights.Acquire());
        Assert.Equal(1, server.Weights.Acquire());
        worker.Weights.Release(1);
        Assert.Equal(1, server.Weights.Acquire()); // 0 is still held
        worker.Weights.Release(1);
        Assert.Equal(0, server.Weights.Waits);
        Assert.Equal(1, server.Weights.Acquire());

        var third = Task.Run(server.Weights.Acquire); // both slots held: it waits for a release
        await Task.Delay(200);
        Assert.False(third.IsCompleted);
        worker.Weights.Release(0);
        Assert.Equal(0, await third.WaitAsync(Wait));
        Assert.Equal(1, server.Weights.Waits);

        var fourth = Task.Run(server.Weights.Acquire); // both held again, and never released
        await Task.Delay(100);
        server.Close(); // what the reader does when the connection fails
        var error = await Assert.ThrowsAsync<IOException>(() => fourth.WaitAsync(Wait));
        Assert.Contains("closed while waiting for a shared-memory slot", error.Message);
    }

    public static TheoryData<string, string> RefusedOffers => new()
    {
        { "a path outside /proc", "the offered path is not a process's file descriptor under /proc" },
        { "a path with a line break after it", "the offered path is not a process's file descriptor under /proc" },
        { "a process that is not here", "the memory file is not visible here: the parameter server runs on another host or in another container" },
        { "a file that is not a DistTrain memory file", "the offered path does not name a DistTrain memory file here (another process namespace?)" },
        { "a memory file that is not sealed", "the offered file is not a memory file sealed against resizing" },
        { "another nonce", "the memory file is not the offered region: its nonce differs from the offer's" },
        { "other slots of the same total size", "the memory file is not the offered region: its slots differ from the offer's" },
        { "weights of another size", "the offer's weight slots hold 16 bytes, this worker's weights are 12" },
        { "more slots than the file has", "the memory file has 16384 bytes where the offered slots need 20480" },
        { "no slots", "the offer's slot counts or sizes are out of range" },
        { "too many slots", "the offer's slot counts or sizes are out of range" },
    };

    /// <summary>A worker maps only the parameter server's own region: each wrong offer is refused with its reason (which
    /// the worker sends back as its answer, so it fits the answer's 126 bytes) before anything is written.</summary>
    [Theory]
    [MemberData(nameof(RefusedOffers))]
    public void A_worker_refuses_an_offer_that_does_not_name_the_parameter_servers_own_region(string what, string reason)
    {
        var server = _owned.Own(SharedMemoryRegion.Create(2, 12, 1, 12));
        var offer = SharedMemoryOffer.Of(server);
        var plain = Path.GetTempFileName();
        try
        {
            using var plainFile = new FileStream(plain, FileMode.Open, FileAccess.ReadWrite);
            plainFile.SetLength(SharedMemoryRegion.TotalBytes(2, 12, 1, 12));
            using var unsealed = MemoryFile.Create(SharedMemoryRegion.MemoryFileName, SharedMemoryRegion.TotalBytes(2, 12, 1, 12), seal: false);
            var bad = what switch
            {
                "a path outside /proc" => offer with { Path = "/dev/shm/disttrain-region" },
                "a path with a line break after it" => offer with { Path = offer.Path + "\n" },
                "a process that is not here" => offer with { Path = "/proc/999999999/fd/3" },
                "a file that is not a DistTrain memory file" => offer with { Path = $"/proc/{Environment.ProcessId}/fd/{plainFile.SafeFileHandle.DangerousGetHandle()}" },
                "a memory file that is not sealed" => offer with { Path = $"/proc/{Environment.ProcessId}/fd/{unsealed.DangerousGetHandle()}" },
                "another nonce" => offer with { Nonce = new byte[SharedMemoryRegion.NonceBytes] },
                "other slots of the same total size" => offer with { WeightSlots = 1, GradientSlots = 2 },
                "weights of another size" => offer with { WeightSlotBytes = 16 },
                "more slots than the file has" => offer with { GradientSlots = 2 },
                "no slots" => offer with { WeightSlots = 0 },
                "too many slots" => offer with { GradientSlots = SharedMemoryRegion.MaxSlots + 1 },
                _ => throw new ArgumentOutOfRangeException(nameof(what)),
            };
            var error = Assert.Throws<IOException>(() => SharedMemoryRegion.Open(bad, weightSlotBytes: 12));
            Assert.Equal(reason, error.Message);
            Assert.True(new SharedMemoryAnswer(false, error.Message).ToBytes()[1] == error.Message.Length, "the reason is cut in the answer");
        }
        finally
        {
            File.Delete(plain);
        }
    }

    /// <summary>A gradient write waiting for a slot while its link stops: the region is disposed under the wait (it stays
    /// mapped until the writer's lease ends) and the writer returns the reason instead of faulting the process.</summary>
    [Fact]
    public async Task A_write_waiting_for_a_slot_returns_a_reason_when_the_region_is_disposed_under_it()
    {
        var (client, peer) = LoopbackSockets.Pair();
        using var clientScope = client;
        using var peerScope = peer;
        var connection = _owned.Own(new DataPlaneConnection(client, new NetworkStream(client), "peer"));
        var region = SharedMemoryRegion.Create(1, 8, 1, 8);
        var header = TensorFrame.For(new WeightsUpdated(1, 0, 1, [1f, 2f]));
        Assert.Null(TensorFrame.TryWrite(connection, header, [1f, 2f], region.Weights)); // slot 0, never released

        var waiting = Task.Run(() => TensorFrame.TryWrite(connection, header, [3f, 4f], region.Weights));
        await Task.Delay(200);
        Assert.False(waiting.IsCompleted);
        region.Dispose();
        Assert.Contains("closed while waiting for a shared-memory slot", await waiting.WaitAsync(Wait));
        Assert.Contains("Cannot access a", TensorFrame.TryWrite(connection, header, [5f, 6f], region.Weights)); // disposed: a reason, no fault
    }

    [Fact]
    public void Offers_and_answers_survive_their_encoding_and_malformed_bodies_are_refused_by_name()
    {
        var offer = new SharedMemoryOffer(2, 3, 940_584, 940_600, Enumerable.Range(0, 32).Select(i => (byte)i).ToArray(), "/dev/shm/disttrain-" + new string('a', 32));
        var parsed = SharedMemoryOffer.Parse(offer.ToBytes());
        Assert.Equal((offer.WeightSlots, offer.GradientSlots, offer.WeightSlotBytes, offer.GradientSlotBytes, offer.Path),
            (parsed.WeightSlots, parsed.GradientSlots, parsed.WeightSlotBytes, parsed.GradientSlotBytes, parsed.Path));
        Assert.Equal(offer.Nonce, parsed.Nonce);
        Assert.Equal(new SharedMemoryAnswer(false, "no /dev/shm here"), SharedMemoryAnswer.Parse(new SharedMemoryAnswer(false, "no /dev/shm here").ToBytes()));
        Assert.Equal(126, SharedMemoryAnswer.Parse(new SharedMemoryAnswer(false, new string('x', 500)).ToBytes()).Reason.Length); // cut to fit

        var body = offer.ToBytes();
        Assert.Contains("has 128 bytes, not 127", Assert.Throws<IOException>(() => SharedMemoryOffer.Parse(body.AsSpan(0, 127))).Message);
        BitConverter.TryWriteBytes(body.AsSpan(56), 69);
        Assert.Contains("a path of 69 bytes (1 to 68)", Assert.Throws<IOException>(() => SharedMemoryOffer.Parse(body)).Message);
        body = offer.ToBytes();
        body[70] = 0xC3;
        Assert.Contains("path is not ASCII", Assert.Throws<IOException>(() => SharedMemoryOffer.Parse(body)).Message);
        var answer = new SharedMemoryAnswer(true, "").ToBytes();
        answer[0] = 2;
        Assert.Contains("flag is 2", Assert.Throws<IOException>(() => SharedMemoryAnswer.Parse(answer)).Message);
        answer[0] = 0;
        answer[1] = 127;
        Assert.Contains("a reason of 127 bytes", Assert.Throws<IOException>(() => SharedMemoryAnswer.Parse(answer)).Message);
    }

    [Fact]
    public void A_frame_header_may_name_a_shared_slot_only_among_those_agreed_on_its_connection()
    {
        var header = new TensorFrame.Header
        {
            Magic = TensorFrame.Magic, Type = TensorFrame.WeightsType, Version = TensorFrame.ProtocolVersion, Count = 3, SharedSlot = 2,
        };
        var bytes = new byte[TensorFrame.HeaderSize];
        MemoryMarshal.Write(bytes, in header);
        Assert.Contains("whose body is in shared-memory slot 1, but no shared memory was agreed for it on this connection",
            Assert.Throws<IOException>(() => TensorFrame.ParseHeader(bytes, TensorFrame.WeightsType, 3, "peer")).Message);
        Assert.Contains("only 1 slots were agreed",
            Assert.Throws<IOException>(() => TensorFrame.ParseHeader(bytes, TensorFrame.WeightsType, 3, "peer", sharedSlots: 1)).Message);
        Assert.Equal(2, TensorFrame.ParseHeader(bytes, TensorFrame.WeightsType, 3, "peer", sharedSlots: 2).SharedSlot);

        var offer = header with { Type = TensorFrame.SharedMemoryOfferType, SharedSlot = 0, PayloadBytes = SharedMemoryOffer.Size };
        MemoryMarshal.Write(bytes, in offer);
        Assert.Contains("sent a shared-memory offer frame where a weights frame belongs",
            Assert.Throws<IOException>(() => TensorFrame.ParseHeader(bytes, TensorFrame.WeightsType, 3, "peer")).Message);
        Assert.Equal(TensorFrame.SharedMemoryOfferType,
            TensorFrame.ParseHeader(bytes, TensorFrame.WeightsType, 3, "peer", alsoAccepted: TensorFrame.SharedMemoryOfferType).Type);
        MemoryMarshal.Write(bytes, offer with { PayloadBytes = 4096 });
        Assert.Contains("with 4096 encoded bytes where 128 belong",
            Assert.Throws<IOException>(() => TensorFrame.ParseHeader(bytes, TensorFrame.WeightsType, 3, "peer", alsoAccepted: TensorFrame.SharedMemoryOfferType)).Message);
    }

    /// <summary>
    /// Both ends of one worker's data plane over a real loopback socket, each with Cluster:SharedMemory as given: the worker
    /// node's <see cref="ParameterServerLink"/> (10 floats, delivering weights to the returned worker probe) and the
    /// parameter server's <see cref="WorkerLink"/>; the parameter-server probe has sent one weights frame through.
    /// </summary>
    private async Task<(Akka.TestKit.TestProbe Worker, IActorRef ServerSide, Akka.TestKit.TestProbe ParameterServer)> LinkedPairAsync(
        bool serverOffers, bool workerAccepts, GradientCompressionSettings? compression = null, int trainableLength = 10)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var worker = CreateTestProbe();
        Sys.ActorOf(ParameterServerLink.Props("127.0.0.1", ((IPEndPoint)listener.LocalEndpoint).Port, 0, worker.Ref, parameterCount: 10,
            DataPlaneHello.NewToken(), certificates: null, sharedMemory: workerAccepts));
        var socket = listener.AcceptSocket();
        var stream = new NetworkStream(socket, ownsSocket: true);
        await Task.Run(() => DataPlaneHello.Read(stream)).WaitAsync(Wait);
        var parameterServer = CreateTestProbe();
        var serverSide = Sys.ActorOf(WorkerLink.Props(0, CreateTestProbe().Ref, reportLength: 10, compression, [trainableLength],
            sharedMemoryWeightsLength: serverOffers ? 10 : 0));
        serverSide.Tell(new WorkerLink.Attach(new DataPlaneConnection(socket, stream, "worker 0")), TestActor);
        parameterServer.Send(serverSide, new WeightsUpdated(1, 0, 5, new float[10]));
        worker.ExpectMsg<WeightsUpdated>(Wait).ReleaseShared(); // a worker releases weights read in place from a slot
        return (worker, serverSide, parameterServer);
    }

    /// <summary>Weights and gradients between two real links on one host: the bodies go through the region and the
    /// socket carries the 56-byte headers only, and the values arrive exactly.</summary>
    [Fact]
    public async Task Links_on_one_host_agree_on_shared_memory_and_tensors_cross_it_with_only_their_headers_on_the_socket()
    {
        var (worker, serverSide, parameterServer) = await EventFilter.Info(contains: "weights and gradients go through shared memory (/proc/")
            .ExpectOneAsync(() => LinkedPairAsync(serverOffers: true, workerAccepts: true));

        for (var version = 6L; version < 11; version++) // more steps than either direction has slots
        {
            var (sent, shared) = (TensorFrame.BytesSent, TensorFrame.SharedBytesSent);
            var weights = Enumerable.Range(0, 10).Select(i => i * 0.5f - version).ToArray();
            parameterServer.Send(serverSide, new WeightsUpdated(1, (int)version - 5, version, weights));
            var arrived = worker.ExpectMsg<WeightsUpdated>(Wait);
            Assert.Empty(arrived.Weights); // left in the slot, not copied out
            Assert.Equal(weights, arrived.Values().ToArray());
            arrived.ReleaseShared(); // as the worker does after its step
            Assert.Equal(40, TensorFrame.SharedBytesSent - shared);
            Assert.Equal(TensorFrame.HeaderSize + 40, TensorFrame.BytesSent - sent);

            float[] gradient = [.. weights.Select(w => -2 * w)];
            worker.Reply(new GradientComputed(1, (int)version - 5, version, 0, 32, 1.5, gradient));
            var report = parameterServer.ExpectMsg<GradientComputed>(Wait);
            Assert.Equal(gradient, report.Gradient);
            Assert.Equal((version, 32, 1.5), (report.Version, report.SampleCount, report.LossSum));
            Assert.Equal(serverSide, parameterServer.LastSender); // the parameter server's sender check is unchanged
        }
    }

    [Fact]
    public async Task A_compressed_gradient_crosses_shared_memory_as_its_encoding_and_arrives_decoded()
    {
        var settings = new GradientCompressionSettings(GradientCompression.TopK, TopKRatio: 0.25);
        var (worker, _, parameterServer) = await LinkedPairAsync(serverOffers: true, workerAccepts: true, settings, trainableLength: 8);
        var codec = new GradientWireCodec(settings, trainableLength: 8);
        float[] report = [0.1f, -3f, 0.2f, 0.3f, 2.5f, -0.4f, 0.05f, 1f, 7f, 8f];
        var shared = TensorFrame.SharedBytesSent;
        var encoded = codec.Encode(report);
        worker.Reply(new GradientComputed(1, 0, 5, 0, 16, 4.0, report).WithEncoded(encoded));

        Assert.Equal([0f, -3f, 0f, 0f, 2.5f, 0f, 0f, 0f, 7f, 8f], parameterServer.ExpectMsg<GradientComputed>(Wait).Gradient);
        Assert.Equal(25 + 8, TensorFrame.SharedBytesSent - shared); // the encoding and the two statistics
    }

    [Theory]
    [InlineData(true, false, "declined shared memory (Cluster:SharedMemory is false on this worker)")]
    [InlineData(false, true, null)]
    public async Task With_shared_memory_off_on_either_side_the_tensors_stay_on_the_socket(bool serverOffers, bool workerAccepts, string? logged)
    {
        var pair = logged is null
            ? LinkedPairAsync(serverOffers, workerAccepts)
            : EventFilter.Info(contains: logged).ExpectOneAsync(() => LinkedPairAsync(serverOffers, workerAccepts));
        var (worker, serverSide, parameterServer) = await pair;

        var (sent, shared) = (TensorFrame.BytesSent, TensorFrame.SharedBytesSent);
        float[] weights = [.. Enumerable.Range(0, 10).Select(i => (float)i)];
        parameterServer.Send(serverSide, new WeightsUpdated(1, 1, 6, weights));
        Assert.Equal(weights, worker.ExpectMsg<WeightsUpdated>(Wait).Weights);
        worker.Reply(new GradientComputed(1, 1, 6, 0, 32, 1.5, weights));
        Assert.Equal(weights, parameterServer.ExpectMsg<GradientComputed>(Wait).Gradient);
        Assert.Equal(0, TensorFrame.SharedBytesSent - shared);
        Assert.Equal(2 * (TensorFrame.HeaderSize + 40), TensorFrame.BytesSent - sent);
    }

    /// <summary>A worker node's <see cref="ParameterServerLink"/> with Cluster:SharedMemory on, connected to a socket that
    /// plays the parameter server, past the hello: the probe that gets its weights, the socket and its stream.</summary>
    private async Task<(Akka.TestKit.TestProbe Worker, Socket Socket, NetworkStream Stream)> WorkerSideLinkAsync(int workerIndex, int parameterCount)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var worker = CreateTestProbe();
        Sys.ActorOf(ParameterServerLink.Props("127.0.0.1", ((IPEndPoint)listener.LocalEndpoint).Port, workerIndex, worker.Ref, parameterCount,
            DataPlaneHello.NewToken(), certificates: null, sharedMemory: true));
        var socket = listener.AcceptSocket();
        var stream = new NetworkStream(socket, ownsSocket: true);
        await Task.Run(() => DataPlaneHello.Read(stream)).WaitAsync(Wait);
        return (worker, socket, stream);
    }

    /// <summary>Plays the parameter server's side of the negotiation with a 4-float model (2 + 2 slots of 16 bytes): offers a
    /// region on <paramref name="stream"/> and checks the worker's link took it.</summary>
    private async Task<SharedMemoryRegion> AcceptedRegionAsync(NetworkStream stream)
    {
        var region = _owned.Own(SharedMemoryRegion.Create(2, 16, 2, 16));
        TensorFrame.WriteNegotiation(stream, TensorFrame.SharedMemoryOfferType, 4, SharedMemoryOffer.Of(region).ToBytes());
        var answer = await Task.Run(() => SharedMemoryAnswer.ReadFrame(stream, "worker")).WaitAsync(Wait);
        Assert.True(answer.Accepted, answer.Reason);
        return region;
    }

    /// <summary>Writes <paramref name="update"/>'s weights into the region's next weight slot and the header naming it.</summary>
    private static void WriteWeightsInSlot(NetworkStream stream, SharedMemoryRegion region, WeightsUpdated update)
    {
        var slot = region.Weights.Acquire();
        MemoryMarshal.AsBytes(update.Weights.AsSpan()).CopyTo(region.Weights.Slot(slot));
        TensorFrame.Write(stream, TensorFrame.For(update) with { SharedSlot = (ushort)(slot + 1) }, []);
    }

    /// <summary>The worker's side against a socket that plays the parameter server, frame by frame: it answers the offer
    /// yes, reads a weights body from the slot the header names, and writes its gradient's body into a gradient slot with
    /// only the header on the socket.</summary>
    [Fact]
    public async Task A_worker_link_answers_an_offer_reads_weights_from_the_named_slot_and_writes_its_gradient_into_one()
    {
        var (worker, socket, stream) = await WorkerSideLinkAsync(workerIndex: 3, parameterCount: 4);
        using var ownedStream = stream;
        var region = await AcceptedRegionAsync(stream);

        float[] weights = [1f, 2f, -3f, 0.5f];
        WriteWeightsInSlot(stream, region, new WeightsUpdated(2, 7, 40, weights, part: 2, endRound: 8));
        var arrived = worker.ExpectMsg<WeightsUpdated>(Wait);
        Assert.Equal(weights, arrived.Values().ToArray()); // read in place from the slot the header named
        Assert.Equal((2, 7, 40L, 2, 8), (arrived.Epoch, arrived.Round, arrived.Version, arrived.Part, arrived.EndRound));
        Assert.Empty(arrived.Weights);
        Assert.Equal(1, region.Weights.Acquire());
        // Slot 0 stays the worker's until it is done with the weights: the parameter server's next write there waits.
        var third = Task.Run(region.Weights.Acquire);
        await Task.Delay(200);
        Assert.False(third.IsCompleted, "the parameter server could write a slot whose weights the worker had not released");
        arrived.ReleaseShared();
        Assert.Equal(0, await third.WaitAsync(Wait)); // free again: the worker released it
        arrived.ReleaseShared(); // a second release is harmless

        worker.Reply(new GradientComputed(2, 7, 40, 3, 8, 0.75, [0.5f, -0.25f, 4f, 8f]));
        var gradient = await Task.Run(() => TensorFrame.ReadHeader(stream, TensorFrame.GradientType, 4, "worker", sharedSlots: 2)).WaitAsync(Wait);
        Assert.Equal((2, 7, 40L, 3, 8, 1), (gradient.Epoch, gradient.Round, gradient.WeightsVersion, gradient.WorkerIndex, gradient.SampleCount, (int)gradient.SharedSlot));
        Assert.Equal([0.5f, -0.25f, 4f, 8f], MemoryMarshal.Cast<byte, float>(region.Gradients.Slot(0)).ToArray());
        Assert.Equal(0, socket.Available); // no body followed the header
    }

    /// <summary>
    /// The parameter server's link copies a broadcast into the worker's slot while the optimizer writes it
    /// (<see cref="WeightsInProgress"/>), and the broadcast that follows sends only its header: the worker gets the values
    /// as they stood when the write finished, not as the array holds them when the broadcast is handled (changed here in
    /// between to tell the two apart). A write abandoned, or followed by a broadcast of another array, gives its slot
    /// back: more rounds than the region has weight slots all arrive, with the broadcast's own values.
    /// </summary>
    [Fact]
    public async Task A_link_fills_the_slot_while_the_weights_are_written_and_the_broadcast_sends_only_its_header()
    {
        var (worker, serverSide, parameterServer) = await LinkedPairAsync(serverOffers: true, workerAccepts: true);
        var progress = new WeightsInProgress();
        for (var version = 6L; version < 10; version++) // more rounds than the region's three weight slots
        {
            var weights = new float[10];
            progress.Begin(weights, version);
            parameterServer.Send(serverSide, progress);
            for (var i = 0; i < 10; i++) weights[i] = version + i * 0.25f;
            progress.Advance(6);
            await Task.Delay(20);
            progress.Advance(10);
            progress.Finish();
            var written = (float[])weights.Clone();
            // The link answers only after it has handled the notice, that is, copied the finished weights.
            await serverSide.Ask<ActorIdentity>(new Identify(version), Wait);
            weights.AsSpan().Fill(-1f); // what the link sends must be its copy, not the array as it is now
            var (sent, shared) = (TensorFrame.BytesSent, TensorFrame.SharedBytesSent);
            parameterServer.Send(serverSide, new WeightsUpdated(1, (int)version - 5, version, weights));
            var arrived = worker.ExpectMsg<WeightsUpdated>(Wait);
            Assert.Equal(version, arrived.Version);
            Assert.Equal(written, arrived.Values().ToArray());
            arrived.ReleaseShared();
            Assert.Equal((TensorFrame.HeaderSize + 40L, 40L), (TensorFrame.BytesSent - sent, TensorFrame.SharedBytesSent - shared));
        }

        for (var version = 10L; version < 14; version++)
        {
            var weights = Enumerable.Range(0, 10).Select(i => version - i).Select(v => (float)v).ToArray();
            var abandoned = version % 2 == 0;
            var other = new float[10];
            progress.Begin(other, version);
            parameterServer.Send(serverSide, progress);
            progress.Advance(10);
            if (abandoned) progress.Abandon(); // the step was not finite
            else progress.Finish(); // finished, but the broadcast that comes carries another array
            parameterServer.Send(serverSide, new WeightsUpdated(1, (int)version - 5, version, weights));
            var arrived = worker.ExpectMsg<WeightsUpdated>(Wait);
            Assert.Equal(weights, arrived.Values().ToArray());
            arrived.ReleaseShared();
        }

        // A link that handles a notice only after the server began it again (the same ring array, a later version) copies
        // the later write; the broadcast of the earlier version must not go out with it, but be copied as it stands.
        var ring = new float[10];
        progress.Begin(ring, 14);
        ring.AsSpan().Fill(14f);
        progress.Advance(10);
        progress.Finish();
        progress.Begin(ring, 17);
        ring.AsSpan().Fill(17f);
        progress.Advance(10);
        progress.Finish();
        parameterServer.Send(serverSide, progress); // handled now: the link copies version 17's floats
        await serverSide.Ask<ActorIdentity>(new Identify(0), Wait);
        ring.AsSpan().Fill(15f);
        parameterServer.Send(serverSide, new WeightsUpdated(1, 9, 14, ring));
        var late = worker.ExpectMsg<WeightsUpdated>(Wait);
        Assert.All(late.Values().ToArray(), value => Assert.Equal(15f, value));
        late.ReleaseShared();
    }

    /// <summary>A worker computes its report straight into a gradient slot the writer lends it: the header that follows
    /// names that slot and nothing else crosses the socket; a report abandoned half-written gives its slot back, so the
    /// next report takes the same slot instead of waiting for a release the parameter server would never make.</summary>
    [Fact]
    public async Task A_report_written_in_a_lent_slot_crosses_as_its_header_alone_and_an_abandoned_one_gives_the_slot_back()
    {
        var (worker, socket, stream) = await WorkerSideLinkAsync(workerIndex: 1, parameterCount: 4);
        using var ownedStream = stream;
        var region = await AcceptedRegionAsync(stream);
        WriteWeightsInSlot(stream, region, new WeightsUpdated(1, 0, 5, new float[4]));
        worker.ExpectMsg<WeightsUpdated>(Wait).ReleaseShared();
        var lender = Assert.IsAssignableFrom<IGradientSlotLender>(worker.LastSender);
        Assert.Null(lender.TryLend(5)); // 20 bytes do not fit a 16-byte slot: the report goes the ordinary way

        var abandoned = lender.TryLend(4)!;
        Assert.Equal(0, abandoned.Slot);
        abandoned.Values.Fill(9f);
        abandoned.Abandon();
        Assert.Throws<ObjectDisposedException>(() => abandoned.Values.Length);

        var written = lender.TryLend(4)!;
        Assert.Equal(0, written.Slot); // the abandoned slot again, with no wait
        float[] values = [0.5f, -0.25f, 4f, 8f];
        values.CopyTo(written.Values);
        worker.Reply(new GradientComputed(1, 0, 5, 1, 8, 0.5, new float[4]).InSlot(written));
        var header = await Task.Run(() => TensorFrame.ReadHeader(stream, TensorFrame.GradientType, 4, "worker", sharedSlots: 2)).WaitAsync(Wait);
        Assert.Equal((1, 0, 5L, 4, 1), (header.Epoch, header.Round, header.WeightsVersion, header.Count, (int)header.SharedSlot));
        Assert.Equal(values, MemoryMarshal.Cast<byte, float>(region.Gradients.Slot(0)).ToArray());
        await Task.Delay(100);
        Assert.Equal(0, socket.Available); // no body followed the header

        // The next slot is 1; slot 0 is the parameter server's until it releases it.
        var next = lender.TryLend(4)!;
        Assert.Equal(1, next.Slot);
        next.Abandon();
    }

    /// <summary>A worker that takes the offer and never answers: its weights stay stashed (none reaches the socket) and
    /// its link stops after the negotiation time, with a warning, so the job counts the worker as lost instead of hanging.</summary>
    [Fact]
    public async Task A_worker_that_never_answers_the_offer_gets_no_weights_and_loses_its_link_after_the_negotiation_time()
    {
        var (workerSocket, linkSocket) = LoopbackSockets.Pair();
        using var workerScope = workerSocket;
        using var worker = new NetworkStream(workerSocket);
        var link = Sys.ActorOf(WorkerLink.Props(0, CreateTestProbe().Ref, reportLength: 4, sharedMemoryWeightsLength: 4,
            negotiationTimeout: TimeSpan.FromSeconds(1)));
        Watch(link);
        await EventFilter.Warning(contains: "Worker 0: no answer to the shared-memory offer within 1 s").ExpectOneAsync(async () =>
        {
            link.Tell(new WorkerLink.Attach(new DataPlaneConnection(linkSocket, new NetworkStream(linkSocket, ownsSocket: false), "worker 0")));
            CreateTestProbe().Send(link, new WeightsUpdated(1, 0, 1, [1f, 2f, 3f, 4f]));
            await ExpectTerminatedAsync(link, Wait);
        });

        var offer = TensorFrame.ReadHeader(worker, TensorFrame.WeightsType, 4, "link", alsoAccepted: TensorFrame.SharedMemoryOfferType);
        Assert.Equal(TensorFrame.SharedMemoryOfferType, offer.Type);
        TensorFrame.ReadBytes(worker, new byte[SharedMemoryOffer.Size], "link");
        Assert.Equal(0, worker.Read(new byte[1])); // closed, and the weights never went out
    }

    /// <summary>A worker that cannot open the offered file (here: a process that is not on its host) answers no with the
    /// reason, and the tensors go on the socket both ways.</summary>
    [Fact]
    public async Task A_worker_that_cannot_open_the_offered_file_answers_no_with_the_reason_and_uses_the_socket()
    {
        var (worker, _, stream) = await WorkerSideLinkAsync(workerIndex: 1, parameterCount: 2);
        using var ownedStream = stream;

        var elsewhere = new SharedMemoryOffer(2, 2, 8, 8, new byte[SharedMemoryRegion.NonceBytes], "/proc/999999999/fd/3");
        TensorFrame.WriteNegotiation(stream, TensorFrame.SharedMemoryOfferType, 2, elsewhere.ToBytes());
        var answer = await Task.Run(() => SharedMemoryAnswer.ReadFrame(stream, "worker")).WaitAsync(Wait);
        Assert.Equal(new SharedMemoryAnswer(false, "the memory file is not visible here: the parameter server runs on another host or in another container"), answer);

        TensorFrame.Write(stream, TensorFrame.For(new WeightsUpdated(1, 0, 3, [0.5f, -1f])), [0.5f, -1f]);
        Assert.Equal([0.5f, -1f], worker.ExpectMsg<WeightsUpdated>(Wait).Weights);
        worker.Reply(new GradientComputed(1, 0, 3, 1, 4, 2.0, [7f, 8f]));
        var (header, values) = await Task.Run(() =>
        {
            var header = TensorFrame.ReadHeader(stream, TensorFrame.GradientType, 2, "worker");
            var values = new float[2];
            TensorFrame.ReadValues(stream, values, "worker");
            return (header, values);
        }).WaitAsync(Wait);
        Assert.Equal((0, 3L), (header.SharedSlot, header.WeightsVersion));
        Assert.Equal([7f, 8f], values);
    }
}
