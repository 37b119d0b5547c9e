using System.Diagnostics;

namespace DistTrain.Tests;

/// <summary>The deployment files, checked without a Docker engine.</summary>
public class DeploymentTests
{
    private static string Repository => Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", ".."));

    [Fact]
    public void The_compose_file_validates_with_docker_compose()
    {
        // Debian's docker-compose (installed by tests/run.sh) parses and validates without an engine.
        var start = new ProcessStartInfo("docker-compose") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var argument in new[] { "-f", Path.Combine(Repository, "deploy", "docker-compose.yml"), "config", "-q" })
            start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var errors = process.StandardError.ReadToEnd();
        Assert.True(process.WaitForExit(60_000), "docker-compose config did not finish");
        Assert.True(process.ExitCode == 0, errors);
    }

    [Fact]
    public void Both_services_are_configured_only_through_the_environment_with_the_same_seed()
    {
        var ps = ClusterProcessTests.ComposeEnvironment("ps");
        var worker = ClusterProcessTests.ComposeEnvironment("worker");
        Assert.Equal("akka.tcp://disttrain@ps:4053", ps["DISTTRAIN_Cluster__SeedNodes__0"]);
        Assert.Equal(ps["DISTTRAIN_Cluster__SeedNodes__0"], worker["DISTTRAIN_Cluster__SeedNodes__0"]);
        Assert.Equal("ps", ps["DISTTRAIN_Cluster__PublicHostname"]);
        Assert.False(worker.ContainsKey("DISTTRAIN_Cluster__PublicHostname")); // the entrypoint sets the container IP
        Assert.Equal("/data", worker["DISTTRAIN_Data__Directory"]);
    }

    [Fact]
    public void The_standby_parameter_server_shares_the_checkpoint_volume_and_joins_the_same_cluster()
    {
        var ps = ClusterProcessTests.ComposeEnvironment("ps");
        var standby = ClusterProcessTests.ComposeEnvironment("ps-standby");
        var worker = ClusterProcessTests.ComposeEnvironment("worker");
        Assert.Equal(ps["DISTTRAIN_Cluster__SeedNodes__0"], standby["DISTTRAIN_Cluster__SeedNodes__0"]);
        Assert.Equal("ps-standby", standby["DISTTRAIN_Cluster__PublicHostname"]);
        Assert.Equal("akka.tcp://disttrain@ps-standby:4053", worker["DISTTRAIN_Cluster__SeedNodes__1"]); // a worker started after a failover still joins
        Assert.Equal(ps["DISTTRAIN_Checkpoint__Directory"], standby["DISTTRAIN_Checkpoint__Directory"]);
        Assert.Equal(ps["DISTTRAIN_Cluster__MinWorkers"], standby["DISTTRAIN_Cluster__MinWorkers"]);
        var compose = File.ReadAllText(Path.Combine(Repository, "deploy", "docker-compose.yml"));
        Assert.Equal(2, System.Text.RegularExpressions.Regex.Matches(compose, @"- checkpoints:/app/checkpoints").Count);
        Assert.Contains("chown app /app/runs /app/checkpoints", File.ReadAllText(Path.Combine(Repository, "Dockerfile")));
    }

    [Fact]
    public void The_image_runs_as_a_non_root_user_with_a_health_check()
    {
        var dockerfile = File.ReadAllText(Path.Combine(Repository, "Dockerfile"));
        Assert.Contains("\nUSER app\n", dockerfile);
        Assert.Contains("HEALTHCHECK", dockerfile);
        Assert.Contains("libopenblas0-pthread", dockerfile);
        Assert.Contains("libdnnl2", dockerfile); // oneDNN runs the convolutions; without it they fall back to im2col
        Assert.Matches(@"FROM mcr\.microsoft\.com/dotnet/sdk:10\.0 AS build", dockerfile);
        Assert.Matches(@"FROM mcr\.microsoft\.com/dotnet/runtime:10\.0", dockerfile);
    }
}
