using DistTrain.Cluster.Actors;

namespace DistTrain.Tests;

/// <summary>
/// A worker that lost its parameter server gives up after Cluster:JoinTimeoutSeconds. When every parameter-server node had
/// been stopped (the active one and its standby), it said only "To survive that, run a standby parameter-server node",
/// although one had run: the message now says no parameter-server node is left and how to continue from the checkpoints.
/// </summary>
public class TakeoverTimeoutMessageTests
{
    [Fact]
    public void With_no_parameter_server_left_the_message_says_so_and_how_to_resume()
    {
        var message = WorkerAgent.TakeoverTimedOut(120, []);

        Assert.StartsWith("No parameter server took over within 120 s of losing the active one, and no parameter-server node is left in the cluster", message);
        Assert.Contains("a standby, if one ran, was stopped or lost as well", message);
        Assert.Contains("Checkpoint:Resume = true (DISTTRAIN_Checkpoint__Resume=true)", message);
        Assert.Contains("run a standby parameter-server node", message);
    }

    [Fact]
    public void With_a_parameter_server_up_that_did_not_take_over_the_message_names_it()
    {
        var message = WorkerAgent.TakeoverTimedOut(30, ["akka.tcp://disttrain@127.0.0.1:4055"]);

        Assert.StartsWith("No parameter server took over within 30 s of losing the active one, although parameter-server node akka.tcp://disttrain@127.0.0.1:4055 is up: its log says why", message);
        Assert.DoesNotContain("Checkpoint:Resume", message);
        Assert.StartsWith("No parameter server took over within 30 s of losing the active one, although parameter-server nodes akka.tcp://disttrain@127.0.0.1:4055, " +
            "akka.tcp://disttrain@127.0.0.1:4056 are up: their logs say why", WorkerAgent.TakeoverTimedOut(30, ["akka.tcp://disttrain@127.0.0.1:4055", "akka.tcp://disttrain@127.0.0.1:4056"]));
    }
}
