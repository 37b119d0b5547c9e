using DistTrain.Cli;

namespace DistTrain.Tests;

/// <summary>How <see cref="CliConsole.RunTrainingAsync"/> maps a training's end to the documented exit codes.</summary>
public sealed class CliExitCodeTests
{
    [Fact]
    public async Task Each_kind_of_failure_gets_its_exit_code_and_a_fault_in_DistTrain_is_not_an_unhandled_crash()
    {
        Assert.Null(await CliConsole.RunTrainingAsync(() => Task.CompletedTask));
        Assert.Equal(130, await CliConsole.RunTrainingAsync(() => throw new OperationCanceledException()));
        Assert.Equal(1, await CliConsole.RunTrainingAsync(() => throw new TimeoutException("no progress")));
        // An input problem found only once training ran is a bad input (2), not a fault in DistTrain (1).
        Assert.Equal(2, await CliConsole.RunTrainingAsync(() => throw new ArgumentException("The training set is empty.")));
        Assert.Equal(2, await CliConsole.RunTrainingAsync(() => throw new InvalidDataException("checkpoint of another size")));
        // A checkpoint a cluster's parameter server refuses to resume from, found once its job starts: 2, as train's refusal
        // before training (it was 1, 'training failed', in cluster mode only).
        Assert.Equal(2, await CliConsole.RunTrainingAsync(() => throw new DistTrain.Cluster.Hosting.CheckpointResumeException("Checkpoint x does not fit the config")));
        // A bug (as a coordinator's bookkeeping fault once was): exit code 1 with an "internal error" line, not an
        // unhandled exception from the command line's pipeline.
        Assert.Equal(1, await CliConsole.RunTrainingAsync(() => throw new DivideByZeroException()));
        Assert.Equal(1, await CliConsole.RunTrainingAsync(() => throw new NullReferenceException()));
    }

    /// <summary>
    /// The internal-error line says how the failed command's run continues: train's --resume was advised to cluster nodes too,
    /// which have no --resume (a parameter-server node resumes with Checkpoint:Resume, a worker keeps no checkpoints and joins
    /// again as a new worker).
    /// </summary>
    [Fact]
    public void The_internal_error_line_advises_what_fits_the_command_that_failed()
    {
        var fault = new NullReferenceException("Object reference not set to an instance of an object.");
        const string start = "NullReferenceException: Object reference not set to an instance of an object. This is a fault in DistTrain, not in the config or data; ";
        const string end = ". The details for a report follow.";

        Assert.Equal(start + "with Checkpoint:Directory set, train --resume continues from the newest checkpoint" + end,
            CliConsole.InternalError(fault, CliConsole.ResumeAfterInternalError("train --resume")));
        Assert.Equal(start + "with Checkpoint:Directory set, starting the nodes again with Checkpoint:Resume = true (DISTTRAIN_Checkpoint__Resume=true) " +
            "continues the job from the newest checkpoint" + end,
            CliConsole.InternalError(fault, NodeCommand.AfterInternalError(DistTrain.Cluster.Actors.NodeRoles.ParameterServer)));
        Assert.Equal(start + "a worker keeps no checkpoints (the parameter server writes them): start this worker node again and it joins the job as a " +
            "new worker, while the job goes on with the other workers if its parameter server is still up (paused below Cluster:MinWorkers)" + end,
            CliConsole.InternalError(fault, NodeCommand.AfterInternalError(DistTrain.Cluster.Actors.NodeRoles.Worker)));
        foreach (var role in new[] { DistTrain.Cluster.Actors.NodeRoles.ParameterServer, DistTrain.Cluster.Actors.NodeRoles.Worker })
            Assert.DoesNotContain("--resume", NodeCommand.AfterInternalError(role));
    }

    /// <summary>
    /// Cluster:Port taken by another process in the moment between the start-up check and Akka.Remote's own bind (here:
    /// ClusterNode directly, which makes no check of its own) ended in "internal error: AggregateException ... This is a
    /// fault in DistTrain", a stack trace and exit code 1. Akka.Remote's bind failure is now the PortInUseException the
    /// check gives, which RunTrainingAsync reports as one error line with exit code 2.
    /// </summary>
    [Fact]
    public async Task A_cluster_port_taken_after_the_start_up_check_is_a_taken_port_with_exit_2_not_an_internal_error()
    {
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;
        var options = TestData.Options(new DistTrain.Core.Models.ModelBuilder(784).Dense(10).Build(), workers: 1, batch: 32, epochs: 1);
        options.Cluster = new DistTrain.Core.Configuration.ClusterOptions
        {
            Hostname = "127.0.0.1", PublicHostname = "127.0.0.1", Port = port, Tls = false, JobName = "test-job", JoinTimeoutSeconds = 30,
            SeedNodes = ["akka.tcp://disttrain@127.0.0.1:1"], // not its own address, which is refused before the node binds
        };
        using var security = new DistTrain.Cluster.Security.ClusterSecurity(
            new DistTrain.Cluster.Security.JobIdentity("test-job", "0123456789abcdef0123"u8), Certificates: null);
        var data = DistTrain.Core.Data.TrainingData.FromArrays(
            TestData.RawTrain.Features, TestData.RawTrain.Labels.Select(l => (int)l).ToArray(),
            TestData.RawTest.Features, TestData.RawTest.Labels.Select(l => (int)l).ToArray(), featureCount: 784, classCount: 10);

        var failure = await Assert.ThrowsAsync<DistTrain.Cluster.Hosting.PortInUseException>(() =>
            DistTrain.Cluster.Hosting.ClusterNode.RunWorkerAsync(options, security, data, CancellationToken.None).WithTestTimeout(60));
        Assert.Equal(("Cluster:Port", port), (failure.Key, failure.Port));
        Assert.StartsWith($"Cluster:Port = {port}: the port is in use (Address already in use), probably by another DistTrain cluster or node", failure.Message);
        Assert.Equal(System.Net.Sockets.SocketError.AddressAlreadyInUse, Assert.IsType<System.Net.Sockets.SocketException>(failure.InnerException).SocketErrorCode);

        Assert.Equal(2, await CliConsole.RunTrainingAsync(() => throw failure));
    }

    /// <summary>
    /// ClusterNode and Trainer (the API) with a Cluster:Hostname that does not resolve and Cluster:Port 0, which no port
    /// check resolves: Akka.Remote's bind failed under five AggregateExceptions, an internal error. Now the node stops before
    /// its actor system starts, with the one-line UnresolvableHostException, an input error (exit code 2).
    /// </summary>
    [Fact]
    public async Task A_cluster_hostname_that_does_not_resolve_is_one_line_and_exit_2_from_the_api_too()
    {
        var options = TestData.Options(new DistTrain.Core.Models.ModelBuilder(784).Dense(10).Build(), workers: 1, batch: 32, epochs: 1);
        options.Cluster = new DistTrain.Core.Configuration.ClusterOptions
        {
            Hostname = "no-such-host.invalid", Port = 0, Tls = false, JobName = "test-job", JoinTimeoutSeconds = 30,
            SeedNodes = ["akka.tcp://disttrain@127.0.0.1:25105"],
        };
        using var security = new DistTrain.Cluster.Security.ClusterSecurity(
            new DistTrain.Cluster.Security.JobIdentity("test-job", "0123456789abcdef0123"u8), Certificates: null);
        var data = DistTrain.Core.Data.TrainingData.FromArrays(
            TestData.RawTrain.Features, TestData.RawTrain.Labels.Select(l => (int)l).ToArray(),
            TestData.RawTest.Features, TestData.RawTest.Labels.Select(l => (int)l).ToArray(), featureCount: 784, classCount: 10);

        var failure = await Assert.ThrowsAsync<DistTrain.Cluster.Hosting.UnresolvableHostException>(() =>
            DistTrain.Cluster.Hosting.ClusterNode.RunWorkerAsync(options, security, data, CancellationToken.None).WithTestTimeout(60));
        Assert.Equal(("Cluster:Hostname", "no-such-host.invalid"), (failure.Key, failure.Host));
        Assert.StartsWith("Cluster:Hostname = 'no-such-host.invalid' does not resolve to an address (", failure.Message);
        Assert.EndsWith("Set Cluster:Hostname (DISTTRAIN_Cluster__Hostname=...) to an address or host name of this machine: 0.0.0.0 for every " +
            "interface (the default), 127.0.0.1 for a cluster on one machine; the address other nodes reach it at, if different, goes in " +
            "Cluster:PublicHostname.", failure.Message);
        Assert.DoesNotContain('\n', failure.Message);
        await Assert.ThrowsAsync<DistTrain.Cluster.Hosting.UnresolvableHostException>(() =>
            new DistTrain.Cluster.Hosting.Trainer(options) { Security = security }.RunWorkerAsync(data).WithTestTimeout(60));

        Assert.Equal(2, await CliConsole.RunTrainingAsync(() => throw failure));
    }

    /// <summary>The bind failure is found under any nesting of AggregateExceptions, as Akka.Hosting wraps it five deep; another
    /// socket error or a failure without one is not a taken port.</summary>
    [Fact]
    public void A_taken_port_is_found_under_nested_aggregate_exceptions_and_nothing_else_is_taken_for_one()
    {
        var inUse = new System.Net.Sockets.SocketException((int)System.Net.Sockets.SocketError.AddressAlreadyInUse);
        var bind = new Akka.Remote.RemoteTransportException("Failed to bind to [127.0.0.1:25101].", inUse);
        Exception nested = bind;
        for (var i = 0; i < 5; i++) nested = new AggregateException(new InvalidOperationException("another"), nested);
        Assert.Same(inUse, DistTrain.Cluster.Hosting.ClusterNode.AddressInUse(nested));
        Assert.Null(DistTrain.Cluster.Hosting.ClusterNode.AddressInUse(new AggregateException(new Akka.Remote.RemoteTransportException("refused",
            new System.Net.Sockets.SocketException((int)System.Net.Sockets.SocketError.ConnectionRefused)))));
        Assert.Null(DistTrain.Cluster.Hosting.ClusterNode.AddressInUse(new AggregateException(new InvalidOperationException("no socket"))));
    }
}
