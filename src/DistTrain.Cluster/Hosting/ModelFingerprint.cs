using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// The settings every node of a job must share, as canonical JSON: the whole model section (shapes, layers
/// and their settings, loss, initializer, pretrained checkpoint, frozen tensors) and what decides which
/// samples a shard index means and how they are fed (data format, test split, normalization, class filter,
/// training limit, validation split and the seed that draws it, augmentation), and how the workers encode gradients
/// (Cluster:Compression, TopKRatio, TopKScope, ErrorFeedback, and the momentum, L1, L2 and clipping the workers apply under TopK and
/// MomentumCorrection, which the parameter server then leaves out of its own step). File and folder paths are left out: each node reads the data at
/// its own paths. Two nodes whose fingerprints differ would compute gradients of different models or on different
/// samples, or would apply momentum twice or not at all, so the parameter server refuses such a worker. The worker's own
/// step settings are compared too: Training:Mode and the micro-batches of AccumulationSteps, and under LocalSgd the
/// LocalSteps, optimizer and epochs a worker applies itself (a worker with another learning rate would train silently apart).
/// Then the samples each node read (<see cref="SamplesOf"/>): the same settings over other files are other samples. Last, how the
/// node shuffles (<see cref="ShardPlanner.ReferenceDigest"/>), since each worker plans its own shards.
/// </summary>
public static class ModelFingerprint
{
    private static readonly JsonSerializerOptions Json = new() { Converters = { new JsonStringEnumConverter() } };

    /// <summary>The fingerprint of <paramref name="options"/>, and of the samples a node read (<see cref="SamplesOf"/>).</summary>
    /// <param name="options">The node's validated options.</param>
    /// <param name="samples">The node's <see cref="SamplesOf"/>; empty where the data is not at hand (as in tests of the settings alone).</param>
    public static string Of(TrainingOptions options, string samples = "") => JsonSerializer.Serialize(new
    {
        options.Model,
        options.Data.Format,
        options.Data.TestFraction,
        options.Data.TestSplitSeed,
        options.Data.Normalization,
        options.Data.Classes,
        options.Data.TrainLimit,
        options.Data.ValidationFraction,
        options.Data.Augmentation,
        options.Training.Seed,
        GradientEncoding = Training.ReplicaSettings.CompressionOf(options),
        LocalGradient = Training.LocalGradientSettings.Of(options),
        WorkerSteps = WorkerStepsOf(options),
        Samples = samples,
        // Workers plan their shards from the coordinator's recipe (AssignShard.Recipe): a node that shuffled otherwise would
        // train on other samples, so it is refused here rather than at its first epoch.
        ShardShuffle = $"{ShardPlanner.ReferenceDigest} (the order this node's DistTrain build and .NET runtime shuffle samples in)",
    }, Json);

    /// <summary>
    /// What a node read, for the fingerprint: each split's sample count and <see cref="LabeledDataset.ContentDigest"/>, as
    /// <c>train 60000 (1a2b3c4d5e6f7a8b), validation 0, test 10000 (...)</c>. Settings alone do not show that two nodes read
    /// the same samples: a worker given another file (another order, other labels, fewer rows) under the same settings
    /// would compute gradients on other samples than the shard indices mean, train the model apart without a word, or fail
    /// at its first step. About 0.1 s for Fashion-MNIST (70,000 images, 220 MB).
    /// </summary>
    /// <param name="data">The node's data, as loaded and normalized for training.</param>
    /// <param name="check">Cluster:CheckSamples: false gives a fixed text instead, which matches only nodes where it is false too.</param>
    /// <param name="trainDigest">The training split's <see cref="LabeledDataset.ContentDigest"/> when the caller has it already
    /// (the parameter server's, for its checkpoints); null computes it.</param>
    public static string SamplesOf(TrainingData data, bool check = true, string? trainDigest = null)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (!check) return "not compared (Cluster:CheckSamples false)";
        static string Split(string name, LabeledDataset? split, string? digest = null) =>
            split is null || split.Count == 0 ? $"{name} 0" : $"{name} {split.Count} ({digest ?? split.ContentDigest()})";
        return $"{Split("train", data.Train, trainDigest)}, {Split("validation", data.Validation)}, {Split("test", data.Test)}";
    }

    /// <summary>
    /// What a worker's own config decides about its steps (<see cref="Training.ReplicaSettings.From"/>): Training:Mode, the
    /// micro-batches of Training:AccumulationSteps, and under LocalSgd the Training:LocalSteps, the optimizer (learning rate,
    /// schedule, momentum, ...) and the epochs its schedule spans, which the workers apply themselves. Outside LocalSgd the
    /// parameter server alone steps the optimizer, so its settings stay the server's.
    /// </summary>
    private static object WorkerStepsOf(TrainingOptions options)
    {
        var replica = Training.ReplicaSettings.From(options);
        var local = replica.Mode == TrainingMode.LocalSgd;
        return new
        {
            replica.Mode,
            // Named as the config keys, for the refusal's message: the micro-batch is Training:BatchSizePerWorker when accumulating.
            options.Training.AccumulationSteps,
            BatchSizePerWorker = replica.MicroBatchSize > 0 ? replica.MicroBatchSize : (int?)null,
            LocalSteps = local ? replica.LocalSteps : (int?)null,
            Optimizer = local ? replica.Optimizer : null,
            Epochs = local ? replica.TotalEpochs : (int?)null,
        };
    }

    /// <summary>
    /// The settings the parameter server decides for the whole job, as canonical JSON: the optimizer (learning rate and its
    /// schedule, momentum, L1, L2, clipping, ...), the training loop's epochs, minibatch, staleness bound, stall timeout
    /// and early stopping, and Cluster:Compression with the settings that decide what the server's share of the optimizer is
    /// (a shard node decodes the workers' slices and steps with that share, so its must equal the parameter server's; for a worker
    /// they are compared by <see cref="Of"/> too, which refuses it). A worker node's own values of these are not used (outside what <see cref="Of"/> compares, as under
    /// LocalSgd), so a worker given another value has it ignored: the parameter server compares them when the worker joins
    /// and warns of each that differs (<see cref="ServerSettingDifferences"/>).
    /// </summary>
    /// <param name="options">The node's validated options.</param>
    public static string ServerSettingsOf(TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var loop = options.Training;
        var compressed = options.Cluster.Compression != Core.Compression.GradientCompression.None;
        var topK = options.Cluster.Compression == Core.Compression.GradientCompression.TopK;
        return JsonSerializer.Serialize(new
        {
            options.Optimizer,
            Training = new
            {
                loop.Epochs,
                loop.BatchSizePerWorker,
                loop.KeepGlobalBatch,
                loop.StalenessBound,
                loop.StalenessAwareLearningRate,
                loop.StallTimeoutSeconds,
                loop.EarlyStopping,
            },
            // How the workers' gradients come (shard nodes decode them), with only the settings the compression uses: one that
            // does not apply (TopKRatio under Float16) sets no two nodes apart.
            Cluster = new
            {
                options.Cluster.Compression,
                ErrorFeedback = compressed ? options.Cluster.ErrorFeedback : (bool?)null,
                TopKRatio = topK ? options.Cluster.TopKRatio : (double?)null,
                TopKScope = topK ? options.Cluster.TopKScope : (Core.Compression.TopKScope?)null,
                MomentumCorrection = topK ? options.Cluster.MomentumCorrection : (bool?)null,
            },
        }, Json);
    }

    /// <summary>
    /// The settings of <see cref="ServerSettingsOf"/> in which a worker's values differ from the parameter server's, as
    /// <c>Optimizer:LearningRate = 0.5 on the worker, 0.05 here</c>, in document order; at most <paramref name="limit"/>.
    /// </summary>
    /// <param name="worker">The worker's <see cref="ServerSettingsOf"/> (or another node's: <paramref name="workerIs"/>).</param>
    /// <param name="server">The parameter server's (or this node's: <paramref name="serverIs"/>).</param>
    /// <param name="limit">Most entries returned, at least 1.</param>
    /// <param name="workerIs">Where <paramref name="worker"/>'s values are, as the entries say it: "on the worker".</param>
    /// <param name="serverIs">Where <paramref name="server"/>'s values are: "here".</param>
    /// <exception cref="JsonException">A text is not JSON (a node of another version sent something else).</exception>
    public static IReadOnlyList<string> ServerSettingDifferences(string worker, string server, int limit = 10, string workerIs = "on the worker",
        string serverIs = "here") =>
        [.. Differences(worker, server, limit).Select(difference =>
        {
            var colon = difference.IndexOf(": ", StringComparison.Ordinal);
            var values = difference[(colon + 2)..];
            var vs = values.IndexOf(" vs ", StringComparison.Ordinal);
            var key = difference[..colon].Replace('.', ':');
            return vs < 0 ? $"{key} ({values})" : $"{key} = {Shown(values[..vs])} {workerIs}, {Shown(values[(vs + 4)..])} {serverIs}";
        })];

    /// <summary>A value as a difference shows it: a setting the node's compression does not use is null in the JSON.</summary>
    private static string Shown(string value) => value == "null" ? "not used" : value;

    /// <summary>
    /// The settings in which two fingerprints differ, one entry per differing value, as
    /// <c>path: first value vs second value</c> (the path in the fingerprint's JSON, e.g. <c>GradientEncoding.Kind</c> for
    /// Cluster:Compression; a list of another length is one entry), in document order; at most <paramref name="limit"/>.
    /// </summary>
    /// <param name="first">A fingerprint from <see cref="Of"/> (for a refusal, the worker's).</param>
    /// <param name="second">Another fingerprint (the parameter server's).</param>
    /// <param name="limit">Most entries returned, at least 1.</param>
    /// <returns>The differences; empty when the fingerprints are equal as JSON.</returns>
    /// <exception cref="JsonException">A fingerprint is not JSON (a node of another version sent something else).</exception>
    public static IReadOnlyList<string> Differences(string first, string second, int limit = 5)
    {
        var differences = new List<string>();
        Compare(JsonNode.Parse(first), JsonNode.Parse(second), "", differences, Math.Max(1, limit));
        return differences;
    }

    /// <summary>
    /// The differences of <see cref="Differences"/> as one line for a refusal: the first <paramref name="shown"/> joined by
    /// "; ", then how many more there are ("and 7 more"; "and at least 95 more" past 100 in all), or a note when the two
    /// differ as text only.
    /// </summary>
    /// <param name="first">A fingerprint from <see cref="Of"/> (the worker's).</param>
    /// <param name="second">Another fingerprint (the parameter server's).</param>
    /// <param name="shown">Most differences spelt out, at least 1.</param>
    /// <exception cref="JsonException">A fingerprint is not JSON.</exception>
    public static string DescribeDifferences(string first, string second, int shown = 5)
    {
        const int most = 100;
        shown = Math.Clamp(shown, 1, most);
        var differences = Differences(first, second, most);
        if (differences.Count == 0) return "the fingerprints differ in form only";
        var more = differences.Count - shown;
        return string.Join("; ", differences.Take(shown)) + (more > 0 ? $"; and {(differences.Count == most ? "at least " : "")}{more} more" : "");
    }

    private static void Compare(JsonNode? first, JsonNode? second, string path, List<string> differences, int limit)
    {
        if (differences.Count >= limit) return;
        switch (first, second)
        {
            case (JsonObject a, JsonObject b):
                foreach (var key in a.Select(p => p.Key).Concat(b.Select(p => p.Key)).Distinct())
                    Compare(a[key], b[key], path.Length == 0 ? key : $"{path}.{key}", differences, limit);
                return;
            case (JsonArray a, JsonArray b) when a.Count == b.Count:
                for (var i = 0; i < a.Count; i++) Compare(a[i], b[i], $"{path}[{i}]", differences, limit);
                return;
            case (JsonArray a, JsonArray b):
                differences.Add($"{path}: {a.Count} entries vs {b.Count}");
                return;
            default:
                var (textA, textB) = (first?.ToJsonString() ?? "null", second?.ToJsonString() ?? "null");
                if (textA != textB) differences.Add($"{path}: {textA} vs {textB}");
                return;
        }
    }
}
