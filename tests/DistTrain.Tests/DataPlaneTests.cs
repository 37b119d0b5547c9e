using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;

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
        var hello = await DataPlaneHello.ReadAsync(parameterServer, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal((0, 4), (hello.WorkerIndex, hello.ParameterCount)); // the hello announces the parameter count
        Assert.Equal(token, hello.Token);

        var sent = new WeightsUpdated(epoch: 2, round: 5, version: 17, weights: [1f, -2f, 3.5f, 4f]);
        var before = Stopwatch.GetTimestamp();
        TensorFrame.Write(parameterServer, TensorFrame.For(sent), sent.Weights);
        var received = worker.ExpectMsg<WeightsUpdated>();

        Assert.Equal((2, 5, 17L), (received.Epoch, received.Round, received.Version));
        Assert.Equal(sent.Weights, received.Weights);
        // The worker measures its queueing delay from this stamp (the dashboard's queueing panel): it was 0 in cluster
        // mode, so worker nodes recorded no queueing delay at all.
        Assert.InRange(received.SentTimestamp, before, Stopwatch.GetTimestamp());
    }
}
