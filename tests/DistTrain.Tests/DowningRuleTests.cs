using DistTrain.Cluster.Membership;

namespace DistTrain.Tests;

/// <summary>
/// <see cref="ParameterServerSideRule"/> on the splits a training cluster meets. Each view is written as seen by a node
/// on one side: "A" is the active parameter server (the oldest parameter-server node), "S" a standby, "w" a worker;
/// lower case after the bar is unreachable. Both sides of a partition are checked to reach complementary decisions.
/// </summary>
public sealed class DowningRuleTests
{
    /// <summary>Members oldest first: letters before '|' are reachable, after it unreachable; A and S are parameter servers.</summary>
    private static List<MemberSide> View(string reachable, string unreachable)
    {
        // Age order: the active parameter server first, then standbys, then workers (as they start in compose and cluster.sh).
        static int Age(char c) => c switch { 'A' => 0, 'S' => 1, _ => 2 };
        var members = reachable.Select((c, i) => (c, i, reachable: true)).Concat(unreachable.Select((c, i) => (c, i: i + 100, reachable: false)));
        return [.. members.OrderBy(m => Age(m.c)).ThenBy(m => m.i)
            .Select(m => new MemberSide($"{m.c}{m.i}", IsParameterServer: m.c is 'A' or 'S', IsReachable: m.reachable))];
    }

    [Theory]
    // Workers die, any number, with or without a standby: the parameter server's side stays and pauses.
    [InlineData("A", "w", DowningDecision.DownUnreachable)]
    [InlineData("A", "ww", DowningDecision.DownUnreachable)]  // the fault: keep-oldest with down-if-alone downed A here
    [InlineData("A", "wwwww", DowningDecision.DownUnreachable)]
    [InlineData("Aw", "ww", DowningDecision.DownUnreachable)]
    [InlineData("AS", "ww", DowningDecision.DownUnreachable)]
    // The active parameter server dies or is isolated with a standby elsewhere: the standby's side takes over.
    [InlineData("Sww", "A", DowningDecision.DownUnreachable)]
    [InlineData("S", "A", DowningDecision.DownUnreachable)]
    [InlineData("A", "Sww", DowningDecision.DownReachable)]
    [InlineData("A", "S", DowningDecision.DownReachable)]
    // The active parameter server dies with no standby: the workers leave (nothing can train on their side).
    [InlineData("ww", "A", DowningDecision.DownReachable)]
    // A partition with the active parameter server and a worker on one side: that side stays, the standby's goes.
    [InlineData("Aw", "Sw", DowningDecision.DownUnreachable)]
    [InlineData("Sw", "Aw", DowningDecision.DownReachable)]
    // The standby is lost: the active side stays.
    [InlineData("Aww", "S", DowningDecision.DownUnreachable)]
    [InlineData("S", "Aww", DowningDecision.DownReachable)]
    // No parameter server at all: the workers stay and wait for one.
    [InlineData("w", "w", DowningDecision.DownUnreachable)]
    public void Keeps_the_side_of_the_active_parameter_server_unless_it_is_alone_against_a_standby(string reachable, string unreachable, DowningDecision expected)
    {
        Assert.Equal(expected, ParameterServerSideRule.Decide(View(reachable, unreachable)).Decision);
    }

    [Theory]
    [InlineData("A", "ww")]
    [InlineData("A", "Sww")]
    [InlineData("Aw", "Sw")]
    [InlineData("Aww", "S")]
    [InlineData("AS", "ww")]
    [InlineData("Sw", "Aw")]
    public void Both_sides_of_a_clean_partition_keep_exactly_one_of_them(string sideOne, string sideTwo)
    {
        // Seen from side one, side two is unreachable, and the other way round: exactly one side must stay.
        var one = ParameterServerSideRule.Decide(View(sideOne, sideTwo)).Decision;
        var two = ParameterServerSideRule.Decide(View(sideTwo, sideOne)).Decision;
        Assert.NotEqual(one, two);
    }

    [Fact]
    public void The_reason_names_the_active_parameter_server_and_what_happens_next()
    {
        var outcome = ParameterServerSideRule.Decide(View("A", "ww"));
        Assert.Equal("this side holds the active parameter server A0; the 2 unreachable nodes are downed and it waits for workers to join", outcome.Reason);
        var takeover = ParameterServerSideRule.Decide(View("Sww", "A"));
        Assert.Contains("the active parameter server A100 is unreachable and alone; a standby parameter server on this side takes over", takeover.Reason);
    }

    [Theory]
    [InlineData("A", "w", "this side holds the active parameter server A0; the 1 unreachable node is downed and it waits for workers to join")]
    [InlineData("Aw", "ww", "this side holds the active parameter server A0; the 2 unreachable nodes are downed")]
    [InlineData("A", "S", "the active parameter server A0 is alone, cut off from the 1 other node, which is a standby parameter server that takes over")]
    [InlineData("A", "Sw", "the active parameter server A0 is alone, cut off from the 2 other nodes, which include a standby parameter server that takes over")]
    [InlineData("w", "Aw", "the active parameter server A100 is on the other side with 1 other node; this side's 1 node leaves the cluster")]
    [InlineData("ww", "A", "the active parameter server A100 is on the other side with 0 other nodes; this side's 2 nodes leave the cluster")]
    [InlineData("w", "w", "no parameter-server node is left; the 1 reachable node stays and waits for one")]
    [InlineData("ww", "w", "no parameter-server node is left; the 2 reachable nodes stay and wait for one")]
    public void The_reason_counts_nodes_in_the_singular_for_one(string reachable, string unreachable, string reason) =>
        Assert.Equal(reason, ParameterServerSideRule.Decide(View(reachable, unreachable)).Reason);

    [Fact]
    public void A_view_without_the_deciding_node_is_refused()
    {
        Assert.Throws<ArgumentException>(() => ParameterServerSideRule.Decide(View("", "Aw")));
    }
}
