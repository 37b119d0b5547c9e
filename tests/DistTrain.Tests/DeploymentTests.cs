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

    /// <summary>
    /// The shard-nodes profile's shard containers join the job's cluster through both parameter-server seeds and serve their data
    /// plane on the port they advertise; the parameter-server nodes take Cluster:ShardNodes and Cluster:ParameterServerShards from
    /// the caller's shell when set there (else from the config file), and the checkpoint interval the caller sets (0 for shard
    /// nodes), 200 steps by default.
    /// </summary>
    [Fact]
    public void Shard_nodes_start_with_their_profile_join_the_job_and_are_used_only_when_asked()
    {
        var ps = ClusterProcessTests.ComposeEnvironment("ps");
        var standby = ClusterProcessTests.ComposeEnvironment("ps-standby");
        var shard = ClusterProcessTests.ComposeEnvironment("shard");
        var worker = ClusterProcessTests.ComposeEnvironment("worker");
        Assert.Equal(worker["DISTTRAIN_Cluster__SeedNodes__0"], shard["DISTTRAIN_Cluster__SeedNodes__0"]);
        Assert.Equal(worker["DISTTRAIN_Cluster__SeedNodes__1"], shard["DISTTRAIN_Cluster__SeedNodes__1"]);
        Assert.False(shard.ContainsKey("DISTTRAIN_Cluster__PublicHostname")); // the entrypoint sets the container IP
        Assert.Equal("4054", shard["DISTTRAIN_Cluster__DataPort"]);
        foreach (var node in new[] { ps, standby }) Assert.Equal("200", node["DISTTRAIN_Checkpoint__EverySteps"]);
        var compose = File.ReadAllText(Path.Combine(Repository, "deploy", "docker-compose.yml"));
        // Passed on from the shell only when set there: a compose file that set them would override a config file's values.
        foreach (var name in new[] { "DISTTRAIN_Cluster__ShardNodes", "DISTTRAIN_Cluster__ParameterServerShards", "DISTTRAIN_Checkpoint__Resume" })
            Assert.Equal(2, System.Text.RegularExpressions.Regex.Matches(compose, $@"^      - {name}$", System.Text.RegularExpressions.RegexOptions.Multiline).Count);
        Assert.Equal(2, System.Text.RegularExpressions.Regex.Matches(compose, @"- DISTTRAIN_Checkpoint__EverySteps=\$\{CHECKPOINT_EVERY_STEPS:-200\}").Count);
        Assert.Contains("--role\", \"parameter-shard\"", compose);
        Assert.Contains("names: [\"shard\"]", File.ReadAllText(Path.Combine(Repository, "deploy", "prometheus", "prometheus.yml")));
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
        Assert.Contains("chown app:app /app/runs /app/checkpoints", File.ReadAllText(Path.Combine(Repository, "Dockerfile")));
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
        // Debian bookworm packages oneDNN 2.x (libdnnl2), whose C API DistTrain calls; .NET's runtime images do not.
        Assert.Matches(@"\nFROM debian:bookworm-slim\n", dockerfile);
        Assert.Contains("-r linux-x64 --self-contained", dockerfile);
    }

    [Fact]
    public void The_image_carries_Fashion_MNIST_and_compose_mounts_no_data_from_the_host_unless_asked()
    {
        var dockerfile = File.ReadAllText(Path.Combine(Repository, "Dockerfile"));
        Assert.Contains("dataset-fashion-mnist", dockerfile);
        Assert.Contains("ln -s /usr/share/datasets/fashion-mnist/* /data/", dockerfile);
        Assert.DoesNotContain("VOLUME [\"/data\"", dockerfile); // an anonymous volume would hide the image's copy
        var compose = File.ReadAllText(Path.Combine(Repository, "deploy", "docker-compose.yml"));
        Assert.DoesNotContain(":/data", compose);

        // docker-compose.data.yml mounts DATA_DIR on every DistTrain node, and says what is missing without it.
        var withData = ComposeConfig(new() { ["DATA_DIR"] = "/srv/idx" }, "docker-compose.yml", "docker-compose.data.yml");
        Assert.Equal(0, withData.ExitCode);
        Assert.Equal(3, System.Text.RegularExpressions.Regex.Matches(withData.Output, @"- /srv/idx:/data:ro").Count);
        var withoutData = ComposeConfig(new() { ["DATA_DIR"] = null }, "docker-compose.yml", "docker-compose.data.yml");
        Assert.NotEqual(0, withoutData.ExitCode);
        Assert.Contains("set DATA_DIR to the folder with the IDX files", withoutData.Errors);
    }

    [Fact]
    public void Worker_containers_share_the_machine_s_cores_and_every_node_gets_the_caller_s_OpenBLAS_kernel()
    {
        var compose = File.ReadAllText(Path.Combine(Repository, "deploy", "docker-compose.yml"));
        Assert.Contains("- WORKERS_PER_MACHINE=${WORKERS:-2}", compose);
        Assert.Equal(4, System.Text.RegularExpressions.Regex.Matches(compose, @"^      - OPENBLAS_CORETYPE$", System.Text.RegularExpressions.RegexOptions.Multiline).Count);
        Assert.Equal(4, System.Text.RegularExpressions.Regex.Matches(compose, @"^      - OPENBLAS_L2_SIZE$", System.Text.RegularExpressions.RegexOptions.Multiline).Count);
        var entrypoint = File.ReadAllText(Path.Combine(Repository, "deploy", "docker-entrypoint.sh"));
        Assert.Contains("threads=$(( $(nproc) / WORKERS_PER_MACHINE ))", entrypoint);
    }

    [Fact]
    public void Each_node_mounts_only_its_own_key_and_no_container_gets_the_CA_key()
    {
        var compose = File.ReadAllText(Path.Combine(Repository, "deploy", "docker-compose.yml"));
        Assert.DoesNotContain("./certs/out:/certs", compose); // the whole folder would bring ca.key and every node's key
        Assert.DoesNotMatch(@"- \./certs/out/ca\.key", compose);
        foreach (var (service, name) in new[] { ("ps", "ps"), ("ps-standby", "ps-standby"), ("worker", "worker"), ("shard", "shard") })
        {
            var environment = ClusterProcessTests.ComposeEnvironment(service);
            var block = System.Text.RegularExpressions.Regex.Match(compose, $@"^  {service}:\n(.*?)(?=^  \S|\z)",
                System.Text.RegularExpressions.RegexOptions.Multiline | System.Text.RegularExpressions.RegexOptions.Singleline).Groups[1].Value;
            var mounts = System.Text.RegularExpressions.Regex.Matches(block, @"^      - \./certs/out/(\S+):(/certs/\S+):ro$", System.Text.RegularExpressions.RegexOptions.Multiline)
                .ToDictionary(m => m.Groups[2].Value, m => m.Groups[1].Value);
            // Exactly the files the node's settings name, and only its own key.
            Assert.Equal(new[] { "/certs/ca.crt", $"/certs/{name}.crt", $"/certs/{name}.key", "/certs/job-secret" }.Order(), mounts.Keys.Order());
            foreach (var key in new[] { "DISTTRAIN_Cluster__CertificateAuthorityFile", "DISTTRAIN_Cluster__CertificateFile", "DISTTRAIN_Cluster__CertificateKeyFile", "DISTTRAIN_Cluster__SecretFile" })
                Assert.Contains(environment[key], mounts.Keys);
            Assert.Equal(Path.GetFileName(environment["DISTTRAIN_Cluster__CertificateKeyFile"]), mounts[environment["DISTTRAIN_Cluster__CertificateKeyFile"]]);
        }
    }

    [Fact]
    public void Nodes_get_time_for_a_graceful_stop_and_Grafana_starts_only_with_the_dashboards_profile()
    {
        var compose = File.ReadAllText(Path.Combine(Repository, "deploy", "docker-compose.yml"));
        var config = ComposeConfig([], "docker-compose.yml");
        Assert.Equal(0, config.ExitCode);
        // ps, ps-standby, worker and shard take it from x-node; docker-compose 1.29 on podman gives 0 s (SIGKILL at once) without it.
        Assert.Equal(4, System.Text.RegularExpressions.Regex.Matches(config.Output, @"^    stop_grace_period: 40s$", System.Text.RegularExpressions.RegexOptions.Multiline).Count);
        var grafana = System.Text.RegularExpressions.Regex.Match(compose, @"^  grafana:\n(.*?)(?=^  \S|^\S|\z)",
            System.Text.RegularExpressions.RegexOptions.Multiline | System.Text.RegularExpressions.RegexOptions.Singleline).Groups[1].Value;
        Assert.Contains("profiles: [\"dashboards\"]", grafana);
        var shard = System.Text.RegularExpressions.Regex.Match(compose, @"^  shard:\n(.*?)(?=^  \S|^\S|\z)",
            System.Text.RegularExpressions.RegexOptions.Multiline | System.Text.RegularExpressions.RegexOptions.Singleline).Groups[1].Value;
        Assert.Contains("profiles: [\"shard-nodes\"]", shard); // shard nodes start only with their profile
        Assert.Equal(2, System.Text.RegularExpressions.Regex.Matches(compose, @"^    profiles:", System.Text.RegularExpressions.RegexOptions.Multiline).Count);
    }

    [Fact]
    public void The_offline_base_images_keep_no_apt_settings_of_the_build_machine_and_the_container_test_uses_the_same_script()
    {
        var script = File.ReadAllText(Path.Combine(Repository, "deploy", "offline-base-images.sh"));
        // mmdebstrap copies --aptopt files (proxies, maybe credentials) into the root file system's 99mmdebstrap.
        Assert.Contains("--customize-hook='rm -f \"$1\"/etc/apt/apt.conf.d/99mmdebstrap'", script);
        Assert.Contains("grep -q 'etc/apt/apt\\.conf\\.d/99mmdebstrap$'", script);
        foreach (var containerfile in new[] { "sdk.Containerfile", "prometheus.Containerfile" })
            Assert.True(File.Exists(Path.Combine(Repository, "deploy", "offline-base-images", containerfile)), containerfile);
        var containerTest = File.ReadAllText(Path.Combine(Repository, "tests", "containers", "run.sh"));
        Assert.Contains("bash deploy/offline-base-images.sh", containerTest);
        Assert.DoesNotContain("mmdebstrap --", containerTest); // one copy of the stand-in code, the user's
        Assert.Contains("! test -e /etc/apt/apt.conf.d/99mmdebstrap", containerTest);
    }

    private static (int ExitCode, string Output, string Errors) ComposeConfig(Dictionary<string, string?> environment, params string[] files)
    {
        var start = new ProcessStartInfo("docker-compose") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var file in files)
        {
            start.ArgumentList.Add("-f");
            start.ArgumentList.Add(Path.Combine(Repository, "deploy", file));
        }
        start.ArgumentList.Add("config");
        foreach (var (key, value) in environment)
        {
            if (value is null) start.Environment.Remove(key);
            else start.Environment[key] = value;
        }
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEnd();
        Assert.True(process.WaitForExit(60_000), "docker-compose config did not finish");
        return (process.ExitCode, output.Result, errors);
    }
}
