using Akka.Actor;
using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.DataPlane;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Models;

namespace DistTrain.Tests;

/// <summary>
/// Weights read in place from a shared-memory slot: the slot goes back to the parameter server exactly once per message,
/// after the worker is done with that message, on every path the message can take.
/// </summary>
public sealed class SharedSlotReleaseTests() : TestKit(TestTimeouts.TestKitConfig)
{
    private static readonly ModelOptions Model = TestData.Mlp(8, 10);

    /// <summary>Hang guard on a loaded machine, not a speed limit: a released slot is free at once.</summary>
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(5);

    /// <summary>The parameter server's next write to the region's only weight slot, run as its link does (inside a lease).</summary>
    private static Task<int> NextWrite(SharedMemoryRegion region) => Task.Run(() =>
    {
        using (region.Weights.Lease()) return region.Weights.Acquire();
    });

    /// <summary>
    /// <see cref="WeightsUpdated.ReleaseShared"/> is documented as safe to call twice. The slot's body object is shared by
    /// every message delivered from that slot, so a second release of an earlier message must not hand back the slot a
    /// later message holds: the parameter server would overwrite weights the worker has not read yet.
    /// </summary>
    [Fact]
    public async Task A_second_release_of_an_earlier_message_does_not_free_the_slot_a_later_message_holds()
    {
        using var region = SharedMemoryRegion.Create(1, 16, 1, 16);
        var bodies = SharedSlotBody.For(region.Weights);
        Assert.Equal(0, await NextWrite(region));
        var first = WeightsUpdated.InSharedSlot(1, 0, 0, bodies[0].Take(4, "parameter server"), 0, -1, 0, int.MaxValue);
        first.ReleaseShared();
        Assert.Equal(0, await NextWrite(region).WaitAsync(Wait));
        var second = WeightsUpdated.InSharedSlot(1, 1, 1, bodies[0].Take(4, "parameter server"), 0, -1, 0, int.MaxValue);

        first.ReleaseShared(); // "safe to call twice"
        var overwrite = NextWrite(region);
        await Task.Delay(300);
        Assert.False(overwrite.IsCompleted, "a second release of the first message handed back the slot the second message still holds");
        second.ReleaseShared();
        Assert.Equal(0, await overwrite.WaitAsync(Wait));
    }

    /// <summary>
    /// Weights that arrive before their shard are stashed with their slot held. A worker stopped meanwhile (the agent stops
    /// it when the parameter server is lost, a failure stops it) drops them: the slot, and the lease that keeps the region
    /// mapped, must still be given back, or every failover leaves the old region mapped in the worker's process.
    /// </summary>
    [Fact]
    public async Task A_worker_stopped_with_weights_stashed_in_a_slot_hands_the_slot_back()
    {
        var data = TestData.Normalized();
        var length = ModelFactory.Build(Model).Layout.TotalLength;
        using var region = SharedMemoryRegion.Create(1, (long)length * sizeof(float), 1, 16);
        var bodies = SharedSlotBody.For(region.Weights);
        Assert.Equal(0, await NextWrite(region));
        var worker = Sys.ActorOf(Worker.Props(0, Model, data.Train, data.Test, evaluationBatchSize: 100));
        Watch(worker);
        worker.Tell(WeightsUpdated.InSharedSlot(1, 0, 0, bodies[0].Take(length, "parameter server"), 0, -1, 0, int.MaxValue));
        ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // no shard yet: stashed, slot held

        Sys.Stop(worker);
        ExpectTerminated(worker);
        var next = NextWrite(region);
        var finished = await Task.WhenAny(next, Task.Delay(Wait));
        Assert.True(finished == next, "the stopped worker never handed back the slot of the weights it had stashed");
    }
}
