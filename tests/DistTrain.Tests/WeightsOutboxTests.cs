using DistTrain.Cluster.Training;

namespace DistTrain.Tests;

/// <summary>The parameter server's ring of broadcast arrays, as a divergence reads it for the last good weights.</summary>
public sealed class WeightsOutboxTests
{
    private static readonly EpochPart Part = new(1, [true], [4], 0, 4, MidEpochResumable: true);

    /// <summary>Writes <paramref name="version"/> as every element of the next broadcast, as a step would, and publishes it.</summary>
    private static void Broadcast(WeightsOutbox outbox, long version)
    {
        Array.Fill(outbox.NextShared, version);
        outbox.PublishShared(Part, 0, version, 4);
    }

    [Fact]
    public void After_a_version_is_broadcast_again_a_failure_on_it_gets_the_version_before_not_its_own()
    {
        // A divergence at the first step of an epoch: the part's start broadcast the last version again, so the ring held it
        // twice and the version before only in the next broadcast's array, which the failed step had not written. That array
        // was never read, and the "last good" weights saved were the very weights whose loss was NaN.
        var outbox = new WeightsOutbox(new float[4], 4);
        Broadcast(outbox, 1);
        Broadcast(outbox, 2);
        Broadcast(outbox, 3);
        Broadcast(outbox, 3); // the next part starts with the same weights
        var (weights, version, older) = outbox.LastGood(failedVersion: 3);
        Assert.Equal((2L, true), (version, older));
        Assert.Equal([2f, 2f, 2f, 2f], weights!);

        // Once a step has begun writing that array (its combined result was not finite), it is no longer read: the failed
        // version's own weights, on which the loss was still finite, come back instead.
        Array.Fill(outbox.NextShared, float.NaN);
        (weights, version, older) = outbox.LastGood(failedVersion: 3);
        Assert.Equal((3L, false), (version, older));
        Assert.Equal([3f, 3f, 3f, 3f], weights!);
        Assert.Null(outbox.Published(2));
    }

    [Fact]
    public void In_steady_steps_the_last_good_weights_are_the_version_before_the_failed_one()
    {
        var outbox = new WeightsOutbox(new float[4], 4);
        for (var v = 1; v <= 5; v++) Broadcast(outbox, v);
        var (weights, version, older) = outbox.LastGood(failedVersion: 5);
        Assert.Equal((4L, true), (version, older));
        Assert.Equal([4f, 4f, 4f, 4f], weights!);
    }
}
