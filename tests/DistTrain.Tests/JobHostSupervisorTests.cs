using Akka.Actor;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;

namespace DistTrain.Tests;

/// <summary>
/// The job host's supervisor, the cluster singleton of the parameter-server nodes: it forwards every message to the current
/// host with its sender, starts a new host with the restart when the current one asks (<see cref="JobHost.RestartHere"/>), keeps
/// what comes while the old one stops and hands it to the new one in order, and stops when its host stops for another reason.
/// The hosts here are stand-ins that report what they receive; the whole path, with real nodes, is in <c>ClusterProcessTests</c>.
/// </summary>
public sealed class JobHostSupervisorTests() : TestKit(TestTimeouts.TestKitConfig)
{
    /// <summary>What a stand-in host received, and from whom, and which restart it was started with.</summary>
    private sealed record Got(int Host, object Message, IActorRef Sender, JobHost.ShardLossRestart? Restart);

    /// <summary>Tells the stand-in host to ask its parent for a restart; given <paramref name="HoldStop"/>, it says "stopping" on
    /// <see cref="JobHostSupervisor.StopAfterQueued"/> and stops only once that is set.</summary>
    private sealed record AskRestart(JobHost.ShardLossRestart Restart, ManualResetEventSlim? HoldStop = null);

    /// <summary>Holds the stand-in host in its message handler until released, so messages queue behind it.</summary>
    private sealed record Block(ManualResetEventSlim Release);

    /// <summary>
    /// A stand-in for <see cref="JobHost"/>: reports each message to the probe; asks for a restart when told, and then, as the
    /// job host does, passes what comes back up until <see cref="JobHostSupervisor.StopAfterQueued"/>, on which it stops.
    /// </summary>
    private sealed class StandInHost : ReceiveActor
    {
        public StandInHost(int number, JobHost.ShardLossRestart? restart, IActorRef probe)
        {
            Receive<AskRestart>(ask =>
            {
                Context.Parent.Tell(new JobHost.RestartHere(ask.Restart));
                Become(() =>
                {
                    Receive<JobHostSupervisor.StopAfterQueued>(_ =>
                    {
                        if (ask.HoldStop is { } hold)
                        {
                            probe.Tell("stopping");
                            hold.Wait(TimeSpan.FromSeconds(10));
                        }
                        Context.Stop(Self);
                    });
                    ReceiveAny(message => Context.Parent.Forward(message));
                });
            });
            Receive<Block>(block => block.Release.Wait(TimeSpan.FromSeconds(10)));
            ReceiveAny(message => probe.Tell(new Got(number, message, Sender, restart)));
        }
    }

    private IActorRef Supervisor(List<JobHost.ShardLossRestart?> started)
    {
        var probe = TestActor;
        return Sys.ActorOf(JobHostSupervisor.Props(restart =>
        {
            lock (started) started.Add(restart);
            var number = started.Count;
            return Props.Create(() => new StandInHost(number, restart, probe));
        }), "host");
    }

    [Fact]
    public void Messages_reach_the_host_with_their_sender_and_after_a_restart_the_new_host_with_the_restart()
    {
        var started = new List<JobHost.ShardLossRestart?>();
        var supervisor = Supervisor(started);
        var sender = CreateTestProbe();
        supervisor.Tell("register", sender.Ref);
        var first = ExpectMsg<Got>();
        Assert.Equal((1, "register", sender.Ref, (JobHost.ShardLossRestart?)null), (first.Host, first.Message, first.Sender, first.Restart));

        var restart = new JobHost.ShardLossRestart("job-1", "epoch 1's end", 1);
        // The first host is held while messages queue behind its request, forwarded to it: they reach the second host, in order,
        // with their sender, none lost to the first one's stop.
        using var release = new ManualResetEventSlim();
        supervisor.Tell(new Block(release));
        supervisor.Tell(new AskRestart(restart));
        foreach (var text in new[] { "a", "b", "c" }) supervisor.Tell(text, sender.Ref);
        release.Set();
        var after = ExpectMsg<Got>();
        Assert.Equal((2, "a", sender.Ref, restart), (after.Host, after.Message, after.Sender, after.Restart));
        Assert.Equal(["b", "c"], new[] { ExpectMsg<Got>(), ExpectMsg<Got>() }.Select(g => (string)g.Message));
        Assert.Equal([null, restart], started);
    }

    /// <summary>
    /// The count of restarts in a row from one checkpoint: a restart whose newest checkpoint is the one of the restart before
    /// counts on, a newer one starts again at 1, and the fourth in a row from one checkpoint is refused (the job ends).
    /// </summary>
    [Fact]
    public void Restarts_in_a_row_from_one_checkpoint_are_counted_and_the_fourth_is_refused()
    {
        JobHost.ShardLossRestart Restart(string checkpoint, int inARow) => new("job-1", checkpoint, inARow);
        Assert.Equal(1, JobHost.ShardLossRestart.After(null, "epoch 2's end"));
        Assert.Equal(2, JobHost.ShardLossRestart.After(Restart("epoch 2's end", 1), "epoch 2's end"));
        Assert.Equal(3, JobHost.ShardLossRestart.After(Restart("epoch 2's end", 2), "epoch 2's end"));
        Assert.Null(JobHost.ShardLossRestart.After(Restart("epoch 2's end", JobHost.MaxRestartsFromOneCheckpoint), "epoch 2's end"));
        Assert.Equal(1, JobHost.ShardLossRestart.After(Restart("epoch 2's end", JobHost.MaxRestartsFromOneCheckpoint), "epoch 3 round 100"));
    }

    /// <summary>The singleton manager's hand-over message reaches the host as a PoisonPill behind what was forwarded before it.</summary>
    [Fact]
    public void A_hand_over_stops_the_host_after_the_messages_before_it_and_then_the_supervisor()
    {
        var started = new List<JobHost.ShardLossRestart?>();
        var supervisor = Supervisor(started);
        Watch(supervisor);
        using var release = new ManualResetEventSlim();
        supervisor.Tell(new Block(release));
        supervisor.Tell("before");
        supervisor.Tell(JobHostSupervisor.HandOver.Instance);
        release.Set();
        Assert.Equal("before", ExpectMsg<Got>().Message);
        ExpectTerminated(supervisor);
    }

    /// <summary>
    /// A hand-over that meets a restart starts no new host, in either order: before the host's request (the request is then
    /// ignored) or while the old host stops; the supervisor stops once the host has, as the singleton manager expects.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_hand_over_during_a_restart_starts_no_new_host_and_stops_the_supervisor(bool handOverFirst)
    {
        var started = new List<JobHost.ShardLossRestart?>();
        var supervisor = Supervisor(started);
        Watch(supervisor);
        var restart = new JobHost.ShardLossRestart("job-1", "epoch 1's end", 1);
        using var release = new ManualResetEventSlim();
        if (handOverFirst)
        {
            // The host is held: the supervisor takes the hand-over (a PoisonPill queued at the host) before the host asks.
            supervisor.Tell(new Block(release));
            supervisor.Tell(new AskRestart(restart));
            supervisor.Tell(JobHostSupervisor.HandOver.Instance);
            release.Set();
        }
        else
        {
            // The supervisor is restarting (the old host has its StopAfterQueued and holds it) when the hand-over comes.
            supervisor.Tell(new AskRestart(restart, release));
            ExpectMsg("stopping");
            supervisor.Tell("kept");
            supervisor.Tell(JobHostSupervisor.HandOver.Instance);
            release.Set();
        }
        ExpectTerminated(supervisor);
        ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        Assert.Equal([null], started);
    }

    [Fact]
    public void A_restart_asked_by_anyone_but_the_host_is_passed_to_the_host_not_acted_on()
    {
        var started = new List<JobHost.ShardLossRestart?>();
        var supervisor = Supervisor(started);
        var restart = new JobHost.ShardLossRestart("job-1", "epoch 1's end", 1);
        supervisor.Tell(new JobHost.RestartHere(restart), CreateTestProbe().Ref);
        var got = ExpectMsg<Got>();
        Assert.Equal(1, got.Host);
        Assert.IsType<JobHost.RestartHere>(got.Message);
        Assert.Single(started);
    }

    [Fact]
    public async Task A_host_that_stops_for_another_reason_stops_the_supervisor()
    {
        var started = new List<JobHost.ShardLossRestart?>();
        var supervisor = Supervisor(started);
        Watch(supervisor);
        supervisor.Tell("hello");
        Assert.Equal(1, ExpectMsg<Got>().Host);
        Sys.Stop(await Sys.ActorSelection(supervisor.Path / "run-1").ResolveOne(TimeSpan.FromSeconds(5)));
        ExpectTerminated(supervisor);
        Assert.Single(started);
    }
}
