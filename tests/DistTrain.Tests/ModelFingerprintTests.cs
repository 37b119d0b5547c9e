using DistTrain.Core.Data;
using DistTrain.Cluster.Hosting;
using DistTrain.Core.Configuration;

namespace DistTrain.Tests;

/// <summary>What the registration fingerprint must cover so that a worker whose config would train differently is refused.</summary>
public sealed class ModelFingerprintTests
{
    private static TrainingOptions Options(params (string Key, string Value)[] overrides)
    {
        var values = new Dictionary<string, string?> { ["Data:Directory"] = TestData.SubsetDirectory };
        foreach (var (key, value) in overrides) values[key] = value;
        return TrainingOptionsLoader.Load(Path.Combine(AppContext.BaseDirectory, "configs", "fashion-mnist-mlp.json"), values, environment: new Dictionary<string, string?>());
    }

    /// <summary>
    /// The settings the parameter server decides for the whole job are compared when a worker joins, so that one given only
    /// to a worker (DISTTRAIN_Optimizer__LearningRate on its node) is named as ignored instead of ignored without a word; the
    /// node's own settings (its ports, paths, metrics) are left out. Cluster:Compression is in both (a shard node, which
    /// compares only these, decodes the workers' slices), with only the settings the compression uses.
    /// </summary>
    [Fact]
    public void The_settings_the_parameter_server_decides_are_compared_and_named_as_config_keys()
    {
        var server = ModelFingerprint.ServerSettingsOf(Options());
        Assert.Empty(ModelFingerprint.ServerSettingDifferences(server, server));
        Assert.Empty(ModelFingerprint.ServerSettingDifferences(ModelFingerprint.ServerSettingsOf(Options(("Cluster:Port", "4099"),
            ("Metrics:Port", "9109"), ("Output:Directory", "elsewhere"), ("Training:EvaluationBatchSize", "250"), ("Compute:BlasThreads", "1"))), server));

        var worker = ModelFingerprint.ServerSettingsOf(Options(("Optimizer:LearningRate", "0.5"), ("Training:BatchSizePerWorker", "32"),
            ("Training:Epochs", "3")));
        Assert.Equal(["Optimizer:LearningRate = 0.5 on the worker, 0.05 here", "Training:Epochs = 3 on the worker, 10 here",
            "Training:BatchSizePerWorker = 32 on the worker, 64 here"], ModelFingerprint.ServerSettingDifferences(worker, server));
        var schedule = ModelFingerprint.ServerSettingsOf(Options(("Optimizer:Schedule:Kind", "Cosine")));
        Assert.Single(ModelFingerprint.ServerSettingDifferences(schedule, server), d => d.StartsWith("Optimizer:Schedule:Kind = \"Cosine\" on the worker", StringComparison.Ordinal));

        // Compression: the kind and the settings it uses are compared; one it does not use sets no two nodes apart.
        Assert.Equal(["Cluster:Compression = \"Float16\" on the worker, \"None\" here", "Cluster:ErrorFeedback = true on the worker, not used here"],
            ModelFingerprint.ServerSettingDifferences(ModelFingerprint.ServerSettingsOf(Options(("Cluster:Compression", "Float16"))), server));
        Assert.Equal(server, ModelFingerprint.ServerSettingsOf(Options(("Cluster:TopKRatio", "0.05"), ("Cluster:MomentumCorrection", "false"))));
        var float16 = ModelFingerprint.ServerSettingsOf(Options(("Cluster:Compression", "Float16")));
        Assert.Equal(float16, ModelFingerprint.ServerSettingsOf(Options(("Cluster:Compression", "Float16"), ("Cluster:TopKRatio", "0.05"), ("Cluster:TopKScope", "PerTensor"))));
        var topK = ModelFingerprint.ServerSettingsOf(Options(("Cluster:Compression", "TopK")));
        Assert.Equal(["Cluster:TopKRatio = 0.05 on the worker, 0.01 here"],
            ModelFingerprint.ServerSettingDifferences(ModelFingerprint.ServerSettingsOf(Options(("Cluster:Compression", "TopK"), ("Cluster:TopKRatio", "0.05"))), topK));
        Assert.Equal(["Cluster:MomentumCorrection = false on the worker, true here"],
            ModelFingerprint.ServerSettingDifferences(ModelFingerprint.ServerSettingsOf(Options(("Cluster:Compression", "TopK"), ("Cluster:MomentumCorrection", "false"))), topK));
    }

    /// <summary>
    /// With TopK, error feedback and the main job's momentum SGD, the workers apply the momentum and the parameter server
    /// steps without it. A worker whose Cluster:MomentumCorrection, Optimizer:Momentum or Cluster:ErrorFeedback differs
    /// from the parameter server's would silently train with no momentum or with it twice, and the data plane cannot
    /// see it (the frames have the same size): the fingerprint must differ; so must L1, L2 and clipping, which the workers
    /// apply under TopK. Without compression the workers never use them, so they stay parameter-server settings and the
    /// fingerprint ignores them.
    /// </summary>
    [Fact]
    public void Gradient_compression_and_the_momentum_the_workers_apply_are_part_of_the_fingerprint()
    {
        (string, string) topK = ("Cluster:Compression", "TopK");
        var fingerprint = ModelFingerprint.Of(Options(topK));
        Assert.Equal(fingerprint, ModelFingerprint.Of(Options(topK)));
        Assert.NotEqual(fingerprint, ModelFingerprint.Of(Options(topK, ("Cluster:MomentumCorrection", "false"))));
        Assert.NotEqual(fingerprint, ModelFingerprint.Of(Options(topK, ("Optimizer:Momentum", "0.5"))));
        Assert.NotEqual(fingerprint, ModelFingerprint.Of(Options(topK, ("Cluster:ErrorFeedback", "false"))));
        Assert.NotEqual(fingerprint, ModelFingerprint.Of(Options(topK, ("Cluster:TopKRatio", "0.02"))));
        // A worker selecting per tensor sends other elements, and messages of another length: refused, the scope named in the
        // fingerprint the refusal prints. The other encodings ignore the scope, so it does not set such nodes apart.
        var perTensor = ModelFingerprint.Of(Options(topK, ("Cluster:TopKScope", "PerTensor")));
        Assert.NotEqual(fingerprint, perTensor);
        Assert.Contains("\"Scope\":\"PerTensor\"", perTensor);
        (string, string) float16 = ("Cluster:Compression", "Float16");
        Assert.Equal(ModelFingerprint.Of(Options(float16)), ModelFingerprint.Of(Options(float16, ("Cluster:TopKScope", "PerTensor"))));
        // Under TopK the workers add L1 and L2 (momentum correction) and clip: a worker with other values would train differently.
        Assert.NotEqual(fingerprint, ModelFingerprint.Of(Options(topK, ("Optimizer:L2", "0.001"))));
        Assert.NotEqual(fingerprint, ModelFingerprint.Of(Options(topK, ("Optimizer:L1", "0.001"))));
        Assert.NotEqual(fingerprint, ModelFingerprint.Of(Options(topK, ("Optimizer:DecayBiasAndNormParameters", "false"))));
        Assert.NotEqual(fingerprint, ModelFingerprint.Of(Options(topK, ("Optimizer:GradientClipNorm", "5"))));
        Assert.Equal(ModelFingerprint.Of(Options()), ModelFingerprint.Of(Options(("Optimizer:L2", "0.001"), ("Optimizer:GradientClipNorm", "5"))));
        Assert.NotEqual(fingerprint, ModelFingerprint.Of(Options()));
        Assert.Equal(ModelFingerprint.Of(Options()), ModelFingerprint.Of(Options(("Optimizer:Momentum", "0.5"))));
    }

    /// <summary>
    /// A worker refused for other settings is told which ones: a worker started with Cluster:Compression Float16 beside a
    /// parameter server without compression, or with another hidden width, gets the differing paths and both values
    /// rather than two 1,000-character fingerprints to compare by eye.
    /// </summary>
    [Fact]
    public void Differences_name_each_differing_setting_with_both_values()
    {
        var server = ModelFingerprint.Of(Options(("Cluster:Compression", "TopK")));
        var worker = ModelFingerprint.Of(Options(("Cluster:Compression", "TopK"), ("Cluster:TopKScope", "PerTensor"), ("Training:Seed", "7")));
        Assert.Equal(["Seed: 7 vs 1", "GradientEncoding.Scope: \"PerTensor\" vs \"Global\""], ModelFingerprint.Differences(worker, server));
        Assert.Empty(ModelFingerprint.Differences(server, server));

        var float16 = ModelFingerprint.Of(Options(("Cluster:Compression", "Float16")));
        var none = ModelFingerprint.Of(Options());
        var difference = Assert.Single(ModelFingerprint.Differences(float16, none));
        Assert.StartsWith("GradientEncoding: {\"Kind\":\"Float16\"", difference);
        Assert.EndsWith(" vs null", difference);

        var wider = ModelFingerprint.Of(Options(("Model:Layers:0:Units", "300")));
        Assert.Equal(["Model.Layers[0].Units: 300 vs 256"], ModelFingerprint.Differences(wider, none));
        Assert.Single(ModelFingerprint.Differences(worker, none, limit: 1));
    }

    /// <summary>
    /// The samples' part of the fingerprint tells apart data that differ in one label, and equal data agree; with
    /// Cluster:CheckSamples false it is a fixed text, equal on every node that sets it.
    /// </summary>
    [Fact]
    public void The_samples_differ_with_one_label_and_are_not_compared_with_CheckSamples_false()
    {
        var data = TestData.Normalized();
        var same = TestData.Normalized();
        var relabelled = TestData.Normalized();
        relabelled.Train.Labels[500] = (byte)((relabelled.Train.Labels[500] + 1) % 10);
        Assert.Matches(@"^train 1000 \([0-9a-f]{16}\), validation 0, test 250 \([0-9a-f]{16}\)$", ModelFingerprint.SamplesOf(data));
        Assert.Equal(ModelFingerprint.SamplesOf(data), ModelFingerprint.SamplesOf(same));
        Assert.NotEqual(ModelFingerprint.SamplesOf(data), ModelFingerprint.SamplesOf(relabelled));
        Assert.Equal(ModelFingerprint.SamplesOf(data, check: false), ModelFingerprint.SamplesOf(relabelled, check: false));
        var options = Options();
        Assert.NotEqual(ModelFingerprint.Of(options, ModelFingerprint.SamplesOf(data)), ModelFingerprint.Of(options, ModelFingerprint.SamplesOf(relabelled)));
    }

    /// <summary>
    /// Workers plan their shards from the coordinator's recipe, so the fingerprint holds how this node shuffles: the digest of
    /// a fixed plan (1,000 samples, 3 shards, seed 1, epoch 1), computed here by hand from a shuffle a node of another runtime
    /// might draw otherwise. A node whose digest differs is refused, and the refusal names it.
    /// </summary>
    [Fact]
    public void The_fingerprint_holds_how_the_node_shuffles_and_a_node_that_shuffles_otherwise_is_named()
    {
        var order = Enumerable.Range(0, 1_000).ToArray();
        new Random(1 * 1_000_003 + 1).Shuffle(order);
        Assert.Equal(ShardPlanner.Digest(order[..334], order[334..667], order[667..]).ToString("x16"), ShardPlanner.ReferenceDigest);
        var server = ModelFingerprint.Of(Options());
        Assert.Contains($"\"ShardShuffle\":\"{ShardPlanner.ReferenceDigest} (the order", server);
        var otherwise = server.Replace(ShardPlanner.ReferenceDigest, "0123456789abcdef", StringComparison.Ordinal);
        Assert.StartsWith("ShardShuffle: \"0123456789abcdef (the order", Assert.Single(ModelFingerprint.Differences(otherwise, server)));
    }

    /// <summary>
    /// The refusal's line spells out the first differences and counts the rest; it used to end with both whole fingerprints,
    /// about 1,000 characters each.
    /// </summary>
    [Fact]
    public void A_refusal_describes_the_first_differences_and_counts_the_rest()
    {
        var server = ModelFingerprint.Of(Options());
        var worker = ModelFingerprint.Of(Options(("Training:Seed", "7"), ("Model:Layers:0:Units", "300"), ("Training:AccumulationSteps", "2")));
        var all = ModelFingerprint.Differences(worker, server);
        Assert.Equal(4, all.Count); // AccumulationSteps 2 also sets the micro-batch
        Assert.Equal(string.Join("; ", all), ModelFingerprint.DescribeDifferences(worker, server));
        Assert.Equal($"{all[0]}; and 3 more", ModelFingerprint.DescribeDifferences(worker, server, shown: 1));
        Assert.Equal("the fingerprints differ in form only", ModelFingerprint.DescribeDifferences(server, " " + server));
    }

    /// <summary>
    /// A worker steps by its own Training:Mode and micro-batches, and under LocalSgd by its own optimizer for its own
    /// LocalSteps: a worker whose learning rate differs from the parameter server's would train its local steps with it and
    /// nothing would say so. Outside LocalSgd only the parameter server steps the optimizer: a worker's learning rate is unused
    /// and does not set it apart.
    /// </summary>
    [Fact]
    public void The_mode_and_under_local_SGD_the_optimizer_the_workers_step_by_are_part_of_the_fingerprint()
    {
        (string, string) localSgd = ("Training:Mode", "LocalSgd");
        var server = ModelFingerprint.Of(Options(localSgd, ("Training:LocalSteps", "4")));
        Assert.Equal(["WorkerSteps.Optimizer.LearningRate: 0.1 vs 0.05"],
            ModelFingerprint.Differences(ModelFingerprint.Of(Options(localSgd, ("Training:LocalSteps", "4"), ("Optimizer:LearningRate", "0.1"))), server));
        Assert.Equal(["WorkerSteps.LocalSteps: 8 vs 4"],
            ModelFingerprint.Differences(ModelFingerprint.Of(Options(localSgd, ("Training:LocalSteps", "8"))), server));
        Assert.Equal(["WorkerSteps.Epochs: 3 vs 10"],
            ModelFingerprint.Differences(ModelFingerprint.Of(Options(localSgd, ("Training:LocalSteps", "4"), ("Training:Epochs", "3"))), server));

        var sync = ModelFingerprint.Of(Options());
        Assert.Equal(["WorkerSteps.Mode: \"Async\" vs \"Sync\""], ModelFingerprint.Differences(ModelFingerprint.Of(Options(("Training:Mode", "Async"))), sync));
        Assert.Equal(["WorkerSteps.AccumulationSteps: 2 vs 1", "WorkerSteps.BatchSizePerWorker: 64 vs null"],
            ModelFingerprint.Differences(ModelFingerprint.Of(Options(("Training:AccumulationSteps", "2"))), sync));
        Assert.Equal(sync, ModelFingerprint.Of(Options(("Optimizer:LearningRate", "0.1"), ("Training:Epochs", "3"), ("Training:LocalSteps", "8"))));
    }
}
