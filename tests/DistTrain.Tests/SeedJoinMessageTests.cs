using DistTrain.Cluster.Hosting;

namespace DistTrain.Tests;

/// <summary>
/// A parameter-server node that cannot join through Cluster:SeedNodes gives up after Cluster:JoinTimeoutSeconds with
/// <see cref="ClusterNode.NotJoined"/>: the seeds, its own address and the fix for an active node and for a standby. A first
/// seed that spells the node itself another way (its port, another host: 127.0.0.1 for a node whose address is 0.0.0.0
/// when Cluster:PublicHostname is unset) is not the node for Akka, and the message names the Cluster:PublicHostname to set.
/// </summary>
public class SeedJoinMessageTests
{
    [Fact]
    public void A_seed_elsewhere_is_named_with_the_fix_for_an_active_node_and_for_a_standby()
    {
        var message = ClusterNode.NotJoined(120, ["akka.tcp://disttrain@10.0.0.5:4053", "akka.tcp://disttrain@10.0.0.6:4053"],
            "akka.tcp://disttrain@10.0.0.7:4055", 4055);

        Assert.StartsWith("This parameter-server node could not join the cluster within 120 s (Cluster:JoinTimeoutSeconds): no node at its seeds " +
            "akka.tcp://disttrain@10.0.0.5:4053, akka.tcp://disttrain@10.0.0.6:4053 (Cluster:SeedNodes) let it in. Its own address, " +
            "akka.tcp://disttrain@10.0.0.7:4055, is not the first seed, so it starts no cluster of its own", message);
        Assert.Contains("list its own address first: DISTTRAIN_Cluster__SeedNodes__0=akka.tcp://disttrain@HOST:4055", message);
        Assert.Contains("If it is a standby, list the active parameter server's address first", message);
        Assert.DoesNotContain("is meant to be this node itself", message);
    }

    [Fact]
    public void A_first_seed_with_the_nodes_port_on_another_host_names_the_public_host_name_to_set()
    {
        var message = ClusterNode.NotJoined(5, ["akka.tcp://disttrain@127.0.0.1:30880"], "akka.tcp://disttrain@0.0.0.0:30880", 30880);

        Assert.Contains("no node at its seed akka.tcp://disttrain@127.0.0.1:30880 (Cluster:SeedNodes) let it in. Its own address, " +
            "akka.tcp://disttrain@0.0.0.0:30880, is not the first seed", message);
        Assert.Contains("If the first seed, akka.tcp://disttrain@127.0.0.1:30880, is meant to be this node itself, set its Cluster:PublicHostname " +
            "to 127.0.0.1: Akka takes a seed for the node itself only when it is the node's address as written.", message);
    }
}
