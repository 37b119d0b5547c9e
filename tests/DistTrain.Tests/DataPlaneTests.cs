using Akka.Actor;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Training;
using DistTrain.Core.Compression;

namespace DistTrain.Tests;

/// <summary>A worker node's end of the data plane, against a socket that plays the parameter server.</summary>
public class DataPlaneTests() : TestKit(AkkaSettings.Serialization())
{
    [Fact]
    public async Task Weights_from_the_data_plane_reach_the_worker_stamped_on_arrival_for_the_queueing_delay()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var worker = CreateTestProbe();
        var token = DataPlaneHello.NewToken();
        Sys.ActorOf(ParameterServerLink.Props("127.0.0.1", port, workerIndex: 0, worker.Ref, parameterCount: 4, token, certificates: null));
        using var parameterServer = new NetworkStream(listener.AcceptSocket(), ownsSocket: true);
        var hello = await Task.Run(() => DataPlaneHello.Read(parameterServer)).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal((0, 4), (hello.WorkerIndex, hello.ParameterCount)); // the hello announces the parameter count
        Assert.Equal(token, hello.Token);

        var sent = new WeightsUpdated(epoch: 2, round: 5, version: 17, weights: [1f, -2f, 3.5f, 4f], part: 1, endRound: 6);
        var before = Stopwatch.GetTimestamp();
        TensorFrame.Write(parameterServer, TensorFrame.For(sent), sent.Weights);
        var received = worker.ExpectMsg<WeightsUpdated>();

        Assert.Equal((2, 5, 17L, 1, 6), (received.Epoch, received.Round, received.Version, received.Part, received.EndRound));
        Assert.Equal(sent.Weights, received.Weights);
        // The worker measures its queueing delay from this stamp (the dashboard's queueing panel): it was 0 in cluster
        // mode, so worker nodes recorded no queueing delay at all.
        Assert.InRange(received.SentTimestamp, before, Stopwatch.GetTimestamp());
    }

    /// <summary>
    /// Both ends of one worker's data plane over a real loopback socket: the worker node's <see cref="ParameterServerLink"/>
    /// (10 floats, delivering weights to the returned worker probe) and the parameter server's <see cref="WorkerLink"/>
    /// decoding with <paramref name="compression"/>; the parameter-server probe has sent one weights frame through, so the
    /// worker link delivers gradients to it.
    /// </summary>
    private async Task<(Akka.TestKit.TestProbe Worker, IActorRef WorkerSide, IActorRef ServerSide, Akka.TestKit.TestProbe ParameterServer)> LinkedPairAsync(
        int workerIndex, GradientCompressionSettings compression, int[] trainableTensorLengths)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var worker = CreateTestProbe();
        var workerSide = Sys.ActorOf(ParameterServerLink.Props("127.0.0.1", ((IPEndPoint)listener.LocalEndpoint).Port, workerIndex, worker.Ref,
            parameterCount: 10, DataPlaneHello.NewToken(), certificates: null));
        var socket = listener.AcceptSocket();
        var stream = new NetworkStream(socket, ownsSocket: true);
        await Task.Run(() => DataPlaneHello.Read(stream)).WaitAsync(TimeSpan.FromSeconds(30));
        var parameterServer = CreateTestProbe();
        var serverSide = Sys.ActorOf(WorkerLink.Props(workerIndex, CreateTestProbe().Ref, reportLength: 10, compression, trainableTensorLengths));
        serverSide.Tell(new WorkerLink.Attach(new DataPlaneConnection(socket, stream, $"worker {workerIndex}")), TestActor);
        parameterServer.Send(serverSide, new WeightsUpdated(1, 0, 5, new float[10]));
        worker.ExpectMsg<WeightsUpdated>();
        return (worker, workerSide, serverSide, parameterServer);
    }

    /// <summary>
    /// A worker's compressed gradient, end to end through both links: the worker's codec (TopK, 2 of 8 gradient elements,
    /// with error feedback) → its parameter-server link → a real socket → the parameter server's worker link → the
    /// parameter server. The frame carries the encoding (not 40 bytes of floats), and the parameter server gets exactly
    /// the report the worker holds after encoding: the two largest gradient elements, zeros, and the two running
    /// statistics as they were.
    /// </summary>
    [Fact]
    public async Task A_compressed_gradient_crosses_the_data_plane_as_its_encoding_and_arrives_as_the_workers_decoded_report()
    {
        var settings = new GradientCompressionSettings(GradientCompression.TopK, TopKRatio: 0.25);
        var (worker, workerSide, _, parameterServer) = await LinkedPairAsync(1, settings, trainableTensorLengths: [8]);

        var codec = new GradientWireCodec(settings, trainableLength: 8);
        float[] report = [0.1f, -3f, 0.2f, 0.3f, 2.5f, -0.4f, 0.05f, 1f, 7f, 8f];
        var received = TensorFrame.BytesReceived;
        var encoded = codec.Encode(report);
        Assert.Equal([0f, -3f, 0f, 0f, 2.5f, 0f, 0f, 0f, 7f, 8f], report); // TopK kept -3 and 2.5; statistics untouched
        worker.Send(workerSide, new GradientComputed(1, 0, 5, 1, 16, 4.0, report).WithEncoded(encoded));

        var arrived = parameterServer.ExpectMsg<GradientComputed>();
        Assert.Equal(report, arrived.Gradient);
        Assert.Equal((1, 0, 5L, 1, 16, 4.0), (arrived.Epoch, arrived.Round, arrived.Version, arrived.WorkerIndex, arrived.SampleCount, arrived.LossSum));
        // Header, the encoding (5 + 4 + 2 x 8 bytes), and the two statistics: 89 bytes where float32 takes 96.
        Assert.Equal(TensorFrame.HeaderSize + 25 + 8, TensorFrame.BytesReceived - received);
    }

    /// <summary>A node whose Cluster:Compression differs from the parameter server's is refused at its first gradient, and the
    /// refusal says to use the same setting everywhere.</summary>
    [Fact]
    public async Task A_worker_that_compresses_differently_from_the_parameter_server_is_refused_with_the_setting_named()
    {
        var (worker, workerSide, serverSide, _) = await LinkedPairAsync(0, new GradientCompressionSettings(GradientCompression.TopK, TopKRatio: 0.5), trainableTensorLengths: [10]);
        Watch(serverSide);

        var codec = new GradientWireCodec(new GradientCompressionSettings(GradientCompression.Float16), trainableLength: 10);
        var report = new float[10];
        await EventFilter.Warning(contains: "every node must use the same Cluster:Compression").ExpectOneAsync(async () =>
        {
            worker.Send(workerSide, new GradientComputed(1, 0, 5, 0, 16, 4.0, report).WithEncoded(codec.Encode(report)));
            await ExpectTerminatedAsync(serverSide, TimeSpan.FromSeconds(20));
        });
    }

    /// <summary>
    /// Cluster:TopKScope PerTensor end to end: a gradient of two tensors (6 and 2 elements) at ratio 0.25 sends ⌈1.5⌉ = 2 of the
    /// first and ⌈0.5⌉ = 1 of the second, 3 elements where Global sends 2, so the frame is 8 bytes longer than Global's. A
    /// parameter server with the same scope expects exactly that length and delivers the worker's decoded report; one with
    /// the Global scope refuses the frame and names the setting.
    /// </summary>
    [Fact]
    public async Task A_per_tensor_TopK_gradient_has_the_length_the_parameter_server_expects_and_a_Global_one_refuses_it()
    {
        var perTensor = new GradientCompressionSettings(GradientCompression.TopK, TopKRatio: 0.25, Scope: TopKScope.PerTensor);
        var (worker, workerSide, _, parameterServer) = await LinkedPairAsync(1, perTensor, trainableTensorLengths: [6, 2]);
        var codec = new GradientWireCodec(perTensor, trainableTensorLengths: [6, 2]);
        Assert.Equal(GradientEncoder.HeaderBytes + 4 + 8 * 3, codec.MessageBytes);
        float[] report = [0.1f, -3f, 0.2f, 0.3f, 2.5f, -0.4f, 0.05f, 0.01f, 7f, 8f];
        var received = TensorFrame.BytesReceived;
        worker.Send(workerSide, new GradientComputed(1, 0, 5, 1, 16, 4.0, report).WithEncoded(codec.Encode(report)));
        Assert.Equal([0f, -3f, 0f, 0f, 2.5f, 0f, 0.05f, 0f, 7f, 8f], report); // the second tensor sends its larger element
        Assert.Equal(report, parameterServer.ExpectMsg<GradientComputed>().Gradient);
        Assert.Equal(TensorFrame.HeaderSize + 33 + 8, TensorFrame.BytesReceived - received);

        var global = perTensor with { Scope = TopKScope.Global };
        var (otherWorker, otherWorkerSide, globalServerSide, _) = await LinkedPairAsync(0, global, trainableTensorLengths: [6, 2]);
        Watch(globalServerSide);
        await EventFilter.Warning(contains: "Cluster:TopKScope").ExpectOneAsync(async () =>
        {
            otherWorker.Send(otherWorkerSide, new GradientComputed(1, 0, 5, 0, 16, 4.0, report).WithEncoded(codec.Encode(report)));
            await ExpectTerminatedAsync(globalServerSide, TimeSpan.FromSeconds(20));
        });
    }
}
