using Akka.Actor;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Security;

namespace DistTrain.Tests;

/// <summary>
/// A standby parameter server is checked against the active one's settings only once the active one answers its
/// registration (about 2 s after the standby starts). One that takes the job over before that answer used to refuse every
/// worker of the job whose settings differed from its own, as if the workers were the faulty nodes. A worker that trained
/// under the job's previous parameter server has the job's settings, so the unchecked node now refuses itself instead.
/// </summary>
public sealed class UncheckedTakeoverTests() : TestKit(TestTimeouts.TestKitConfig)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    /// <summary>A job host of a 784-10 model, job "0123456789ab" of a new identity, on a node in the state <paramref name="failover"/>.</summary>
    private (IActorRef Host, TaskCompletionSource<TrainingResult> Completion, JobIdentity Identity) StartHost(DataPlaneListener listener, FailoverState failover)
    {
        var options = TestData.Options(TestData.Mlp(10), workers: 2, batch: 8, epochs: 1);
        var identity = new JobIdentity(options.Cluster.JobName, System.Security.Cryptography.RandomNumberGenerator.GetBytes(32));
        var completion = new TaskCompletionSource<TrainingResult>();
        var host = Sys.ActorOf(JobHost.Props(options, new ClusterSecurity(identity, null), listener, 1000, 250, 0, "127.0.0.1",
            new NullTrainingObserver(), completion, failover));
        return (host, completion, identity);
    }

    /// <summary>The registration of worker node <paramref name="node"/> of that job, which lost its parameter server, with a
    /// model of <paramref name="units"/> units.</summary>
    private static RegisterWorker LostWorker(JobIdentity identity, string node, int units)
    {
        var fingerprint = ModelFingerprint.Of(TestData.Options(TestData.Mlp(units), workers: 2, batch: 8, epochs: 1));
        return new RegisterWorker(ClusterProtocolInfo.Version, fingerprint, node, LostParameterServer: true, JobId: "0123456789ab",
            JobName: identity.Name, Proof: identity.RegistrationProof(node, ClusterProtocolInfo.Version, fingerprint));
    }

    /// <summary>
    /// A job host that takes over a job of a 784-10 model on a node the active parameter server had
    /// (<paramref name="standbyChecked"/>) or had not compared; a worker node of the job that lost its parameter server
    /// registers with a model of <paramref name="workerUnits"/> units.
    /// </summary>
    [Theory]
    [InlineData(false, 12)]
    [InlineData(true, 12)]
    [InlineData(false, 10)]
    public async Task An_unchecked_takeover_whose_settings_differ_from_the_jobs_workers_refuses_itself_not_the_workers(bool standbyChecked, int workerUnits)
    {
        using var listener = DataPlaneListener.Start(0, certificates: null);
        var (host, completion, identity) = StartHost(listener, new FailoverState { WasStandby = true, StandbyChecked = standbyChecked });

        var agent = CreateTestProbe();
        const string node = "akka.tcp://disttrain@127.0.0.1:4100";
        agent.Send(host, LostWorker(identity, node, workerUnits));

        if (workerUnits == 10)
        {
            // The same settings: the takeover accepts the worker, as before.
            Assert.Equal(0, agent.ExpectMsg<WorkerAccepted>(Wait).WorkerIndex);
            Assert.False(completion.Task.IsCompleted);
            return;
        }
        if (standbyChecked)
        {
            // Checked: this node has the job's settings, so the worker is the odd one, and is refused as before.
            Assert.StartsWith("model settings differ from the parameter server's (Model.Layers[0].Units: 12 vs 10;",
                agent.ExpectMsg<RegistrationRefused>(Wait).Reason);
            Assert.False(completion.Task.IsCompleted);
            return;
        }
        var refused = await Assert.ThrowsAsync<NodeRefusedException>(() => completion.Task.WaitAsync(Wait));
        Assert.StartsWith("This node took the job over as its parameter server before the active one had compared its settings with the job's " +
            $"(it does so within about 2 s of a standby's start), and worker node {node}, which trained under that parameter server, has other " +
            "settings (Model.Layers[0].Units: 12 vs 10; the worker's value vs this node's). ", refused.Message);
        Assert.EndsWith("Start this node again within that time with the same config and DISTTRAIN_* variables as the workers (only its own addresses, " +
            "ports and folders may differ), and it takes the job over from the newest checkpoint.", refused.Message);
        // The worker is neither refused nor accepted, now or when it registers again: it waits for a parameter server of the job.
        agent.Send(host, LostWorker(identity, node, workerUnits));
        agent.ExpectNoMsg(TimeSpan.FromMilliseconds(500));
    }

    /// <summary>
    /// The self-refusal is for a node that stood by unchecked and has no other evidence. A parameter server that never stood
    /// by (started alone; a leftover worker of an earlier job registers with that job's settings), or one that already
    /// accepted a worker of the job with its own settings, refuses the differing worker as before, and its job goes on.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_parameter_server_that_never_stood_by_or_accepted_a_worker_of_the_job_refuses_a_differing_worker_not_itself(bool stoodBy)
    {
        using var listener = DataPlaneListener.Start(0, certificates: null);
        var (host, completion, identity) = StartHost(listener, new FailoverState { WasStandby = stoodBy, StandbyChecked = false });

        if (stoodBy)
        {
            // A worker of the job with this node's settings first: the node's settings are the job's.
            var first = CreateTestProbe();
            first.Send(host, LostWorker(identity, "akka.tcp://disttrain@127.0.0.1:4100", 10));
            Assert.Equal(0, first.ExpectMsg<WorkerAccepted>(Wait).WorkerIndex);
        }
        var other = CreateTestProbe();
        other.Send(host, LostWorker(identity, "akka.tcp://disttrain@127.0.0.1:4101", 12));
        Assert.StartsWith("model settings differ from the parameter server's (Model.Layers[0].Units: 12 vs 10;",
            other.ExpectMsg<RegistrationRefused>(Wait).Reason);
        Assert.False(completion.Task.IsCompleted);
    }
}
