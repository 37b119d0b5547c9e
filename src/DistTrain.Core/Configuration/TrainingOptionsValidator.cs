using System.Collections;
using System.Globalization;
using System.Reflection;
using DistTrain.Core.Data;
using DistTrain.Core.Models;

namespace DistTrain.Core.Configuration;

/// <summary>Checks <see cref="TrainingOptions"/> before anything starts; every problem names key, value and the allowed range.</summary>
public static class TrainingOptionsValidator
{
    /// <summary>
    /// Returns every problem found; empty when the options are valid. A section, list or text set to null in code
    /// (<c>Model = null</c>) is a problem naming its key; when there is one, only those are returned, as the other checks
    /// read inside the sections.
    /// </summary>
    /// <param name="options">Bound options.</param>
    /// <param name="checkDataDirectory">Also require that <see cref="DataOptions.Directory"/> exists.</param>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is null.</exception>
    public static IReadOnlyList<string> Validate(TrainingOptions options, bool checkDataDirectory = true)
    {
        ArgumentNullException.ThrowIfNull(options);
        var nulls = NullSettings(options, "");
        if (nulls.Count > 0) return nulls;
        var problems = new List<string>();
        void Range(string key, double value, double min, double max, bool minExclusive = false, bool maxExclusive = false)
        {
            var low = minExclusive ? value <= min : value < min;
            var high = maxExclusive ? value >= max : value > max;
            if (!double.IsFinite(value) || low || high)
                problems.Add($"{key} = {value.ToString(CultureInfo.InvariantCulture)} is out of range: allowed {(minExclusive ? "(" : "[")}{min.ToString(CultureInfo.InvariantCulture)}, {max.ToString(CultureInfo.InvariantCulture)}{(maxExclusive ? ")" : "]")}.");
        }

        Range("Training:Workers", options.Training.Workers, 1, 256);
        Range("Training:Epochs", options.Training.Epochs, 1, 10_000);
        Range("Training:BatchSizePerWorker", options.Training.BatchSizePerWorker, 1, 65_536);
        Range("Training:EvaluationBatchSize", options.Training.EvaluationBatchSize, 1, 65_536);
        Range("Training:StallTimeoutSeconds", options.Training.StallTimeoutSeconds, 1, 86_400);
        if (!Enum.IsDefined(options.Training.Mode))
            problems.Add($"Training:Mode = {(int)options.Training.Mode} is unknown: allowed {string.Join(", ", Enum.GetNames<TrainingMode>())}.");
        Range("Training:StalenessBound", options.Training.StalenessBound, 0, 1000);
        Range("Training:LocalSteps", options.Training.LocalSteps, 1, 10_000);
        Range("Training:AccumulationSteps", options.Training.AccumulationSteps, 1, 1024);
        if ((long)options.Training.BatchSizePerWorker * options.Training.AccumulationSteps > 1 << 24)
            problems.Add($"Training:BatchSizePerWorker × Training:AccumulationSteps = {(long)options.Training.BatchSizePerWorker * options.Training.AccumulationSteps} samples per push is too many: allowed up to {1 << 24}.");
        problems.AddRange(options.Optimizer.Problems());
        PreparationProblems(options.Data, problems);
        Range("Training:EarlyStopping:Patience", options.Training.EarlyStopping.Patience, 0, 1000);
        Range("Training:EarlyStopping:MinDelta", options.Training.EarlyStopping.MinDelta, 0, 1e9);
        if (options.Training.EarlyStopping.Patience > 0 && options.Data.ValidationFraction <= 0)
            problems.Add($"Training:EarlyStopping:Patience = {options.Training.EarlyStopping.Patience} needs validation samples: set Data:ValidationFraction (for example 0.1), or set Patience to 0.");
        Range("Model:InputSize", options.Model.InputSize, 1, 1 << 24);
        var shape = options.Model.InputShape;
        if (shape.Count != 0 && (shape.Count != 3 || shape.Any(d => d <= 0)))
            problems.Add($"Model:InputShape = [{string.Join(", ", shape)}] must be [channels, height, width] with positive values, such as [1, 28, 28], or left out for a flat input.");
        AugmentationProblems(options, problems, Range);
        if (options.Model.ReplaceHead && string.IsNullOrWhiteSpace(options.Model.Pretrained))
            problems.Add("Model:ReplaceHead = true needs Model:Pretrained (the checkpoint whose head it replaces).");

        var init = options.Model.Initializer;
        if (!Enum.IsDefined(init.Kind))
            problems.Add($"Model:Initializer:Kind = {(int)init.Kind} is unknown: allowed {string.Join(", ", Enum.GetNames<Initialization.InitializerKind>())}.");
        Range("Model:Initializer:Gain", init.Gain, 0, 100);
        Range("Model:Initializer:UniformRange", init.UniformRange, 0, 100, minExclusive: true);
        Range("Model:Initializer:NormalStd", init.NormalStd, 0, 100, minExclusive: true);
        if (!double.IsFinite(init.Constant))
            problems.Add($"Model:Initializer:Constant = {init.Constant.ToString(CultureInfo.InvariantCulture)} is not a finite number: weights would start as infinities or NaN.");
        else if (Math.Abs(init.Constant) > float.MaxValue)
            problems.Add($"Model:Initializer:Constant = {init.Constant.ToString(CultureInfo.InvariantCulture)} is beyond float32's range (±3.4E+38): the weights " +
                "would start as infinities. Give a value of that range; weights of a few units or less are what networks train from.");

        if (LossTypes.Canonical(options.Model.Loss) is null)
            problems.Add($"Model:Loss = '{options.Model.Loss}' is unknown: allowed {string.Join(", ", LossTypes.All)}.");

        var layers = options.Model.Layers;
        if (layers.Count == 0)
            problems.Add("Model:Layers is empty: list at least one Dense layer, e.g. [{\"Type\": \"Dense\", \"Units\": 10}].");
        if (layers.Count > MaxLayers)
            problems.Add(TooManyLayers(layers.Count)); // and no line per layer: the list itself is the problem
        for (var i = 0; i < layers.Count && layers.Count <= MaxLayers; i++)
        {
            var layer = layers[i];
            var type = LayerTypes.Canonical(layer.Type);
            if (type is null)
                problems.Add($"Model:Layers:{i}:Type = '{layer.Type}' is unknown: allowed {string.Join(", ", LayerTypes.All)}.");
            var key = $"Model:Layers:{i}";
            switch (type)
            {
                case LayerTypes.Dense:
                    Range($"{key}:Units", layer.Units, 1, MaxUnits);
                    break;
                case LayerTypes.LeakyReLU:
                    Range($"{key}:NegativeSlope", layer.NegativeSlope, 0, 1);
                    break;
                case LayerTypes.Conv2D:
                    Range($"{key}:Channels", layer.Channels, 1, MaxChannels);
                    Range($"{key}:KernelSize", layer.KernelSize, 1, MaxKernelSize);
                    if (layer.Stride != 0) Range($"{key}:Stride", layer.Stride, 1, 1024); // 0: not set (a config that sets it is refused by the loader)
                    Range($"{key}:Padding", layer.Padding, 0, 1024);
                    break;
                case LayerTypes.MaxPool2D or LayerTypes.AvgPool2D:
                    Range($"{key}:KernelSize", layer.KernelSize, 1, MaxKernelSize);
                    if (layer.Stride != 0) Range($"{key}:Stride", layer.Stride, 1, 1024);
                    break;
                case LayerTypes.Dropout:
                    Range($"{key}:Rate", layer.Rate, 0, 1, maxExclusive: true);
                    break;
                case LayerTypes.BatchNorm:
                    Range($"{key}:Momentum", layer.Momentum, 0, 1, minExclusive: true);
                    Range($"{key}:Epsilon", layer.Epsilon, 0, 1, minExclusive: true);
                    break;
                case LayerTypes.LayerNorm:
                    Range($"{key}:Epsilon", layer.Epsilon, 0, 1, minExclusive: true);
                    break;
            }
        }
        var lastDense = layers.LastOrDefault(l => LayerTypes.Canonical(l.Type) == LayerTypes.Dense);
        if (layers.Count > 0 && lastDense is null)
            problems.Add("Model:Layers has no Dense layer: the last Dense layer's Units must equal the number of classes.");
        if (!problems.Any(p => p.StartsWith("Model:", StringComparison.Ordinal)))
            SizeProblems(options.Model, problems);

        DataProblems(options, problems, checkDataDirectory, Range);
        Range("Metrics:Port", options.Metrics.Port, 0, 65_535);
        if (options.Metrics.Hostname is not ("+" or "*") && Uri.CheckHostName(options.Metrics.Hostname) == UriHostNameType.Unknown)
            problems.Add($"Metrics:Hostname = '{options.Metrics.Hostname}' is not a host name: use + for every interface, localhost for this machine only, or a name or address of this machine.");
        Range("Monitoring:GradientNormEverySteps", options.Monitoring.GradientNormEverySteps, 0, 1_000_000);
        Range("Monitoring:VanishingGradientNorm", options.Monitoring.VanishingGradientNorm, 0, 1e9);
        Range("Monitoring:ExplodingGradientNorm", options.Monitoring.ExplodingGradientNorm, 0, 1e30, minExclusive: true);
        if (options.Monitoring.VanishingGradientNorm >= options.Monitoring.ExplodingGradientNorm && options.Monitoring.ExplodingGradientNorm > 0)
            problems.Add(FormattableString.Invariant($"Monitoring:VanishingGradientNorm = {options.Monitoring.VanishingGradientNorm} is not below Monitoring:ExplodingGradientNorm = {options.Monitoring.ExplodingGradientNorm}: ") +
                "every tensor would be reported as vanishing (or exploding). Set the vanishing threshold below the exploding one (defaults 1e-7 and 1e3).");
        Range("Monitoring:WarnAfterMeasurements", options.Monitoring.WarnAfterMeasurements, 1, 1_000_000);
        Range("Compute:BlasThreads", options.Compute.BlasThreads, 0, 1024);
        Range("Cluster:Port", options.Cluster.Port, 0, 65_535);
        Range("Cluster:DataPort", options.Cluster.DataPort, 1, 65_535);
        Range("Cluster:MinWorkers", options.Cluster.MinWorkers, 1, 256);
        if (!Enum.IsDefined(options.Cluster.Compression))
            problems.Add($"Cluster:Compression = {(int)options.Cluster.Compression} is unknown: allowed {string.Join(", ", Enum.GetNames<Compression.GradientCompression>())}.");
        Range("Cluster:TopKRatio", options.Cluster.TopKRatio, 0, 1, minExclusive: true);
        if (!Enum.IsDefined(options.Cluster.TopKScope))
            problems.Add($"Cluster:TopKScope = {(int)options.Cluster.TopKScope} is unknown: allowed {string.Join(", ", Enum.GetNames<Compression.TopKScope>())}.");
        if (options.Cluster.Compression != Compression.GradientCompression.None && options.Training.Mode == TrainingMode.LocalSgd)
            problems.Add($"Cluster:Compression = {options.Cluster.Compression} does not apply to Training:Mode = LocalSgd, whose workers send their models rather than gradients: set Cluster:Compression to None, or choose another mode.");
        Range("Cluster:ParameterServerShards", options.Cluster.ParameterServerShards, 1, 16);
        // The parameter server clips by the global norm, which needs every shard's part of it; under TopK the workers clip
        // (ClipsOnWorkers) and the server clips nothing, and in LocalSgd each worker clips its own local steps.
        if (options.Cluster.ParameterServerShards > 1 && options.Optimizer.GradientClipNorm > 0 && !options.ClipsOnWorkers
            && options.Training.Mode is TrainingMode.Async or TrainingMode.BoundedStaleness)
            problems.Add($"Cluster:ParameterServerShards = {options.Cluster.ParameterServerShards} is not possible with Optimizer:GradientClipNorm = {options.Optimizer.GradientClipNorm} in Training:Mode {options.Training.Mode}: " +
                "the parameter server clips each gradient by its global norm, which needs every shard's part of that norm before any shard steps, and in " +
                $"{options.Training.Mode} each shard steps on a gradient as it arrives, without waiting for the others (Sync waits for them; in LocalSgd " +
                "each worker clips its own steps). Set Optimizer:GradientClipNorm to 0, Cluster:ParameterServerShards to 1, Training:Mode to Sync or " +
                "LocalSgd, or Cluster:Compression to TopK (each worker then clips its own gradient, and the parameter server clips none).");
        Range("Cluster:JoinTimeoutSeconds", options.Cluster.JoinTimeoutSeconds, 1, 86_400);
        Range("Cluster:PauseTimeoutSeconds", options.Cluster.PauseTimeoutSeconds, 0, 604_800);
        Range("Cluster:StableAfterSeconds", options.Cluster.StableAfterSeconds, 2, 300);
        Range("Cluster:StartDelaySeconds", options.Cluster.StartDelaySeconds, 0, 600);
        Range("Cluster:ResumeWaitSeconds", options.Cluster.ResumeWaitSeconds, 0, 604_800);
        Range("Cluster:HeartbeatIntervalSeconds", options.Cluster.HeartbeatIntervalSeconds, 0.1, 60);
        Range("Cluster:AcceptableHeartbeatPauseSeconds", options.Cluster.AcceptableHeartbeatPauseSeconds, 0.5, 300);
        Range("Cluster:RemovalMarginSeconds", options.Cluster.RemovalMarginSeconds, 0, 300);
        if (string.IsNullOrWhiteSpace(options.Cluster.Hostname))
            problems.Add("Cluster:Hostname is empty: use 0.0.0.0 to listen on every interface.");
        for (var i = 0; i < options.Cluster.SeedNodes.Count; i++)
            if (SeedNodeProblem(options.Cluster.SeedNodes[i]) is { } seedProblem)
                problems.Add($"Cluster:SeedNodes:{i} = '{options.Cluster.SeedNodes[i]}' {seedProblem}");
        if (!System.Text.RegularExpressions.Regex.IsMatch(options.Cluster.JobName, "^[A-Za-z0-9._-]{1,64}$"))
            problems.Add($"Cluster:JobName = '{options.Cluster.JobName}' is not a job name: use 1 to 64 letters, digits, '.', '_' or '-'.");
        Range("Checkpoint:EverySteps", options.Checkpoint.EverySteps, 0, 1_000_000_000);
        Range("Checkpoint:Keep", options.Checkpoint.Keep, 1, 1000);
        if (options.Checkpoint.Resume && !options.Checkpoint.Enabled)
            problems.Add("Checkpoint:Resume = true needs Checkpoint:Directory: set it to the folder the interrupted run wrote its checkpoints to.");
        if (options.Checkpoint.EverySteps > 0 && !options.Checkpoint.Enabled)
            problems.Add($"Checkpoint:EverySteps = {options.Checkpoint.EverySteps} has no effect without Checkpoint:Directory: set a folder, or set EverySteps to 0.");
        if (string.IsNullOrWhiteSpace(options.Output.Directory))
            problems.Add("Output:Directory is empty: set a folder for run outputs, e.g. 'runs'.");
        return problems;
    }

    /// <summary>
    /// What is wrong with one entry of Cluster:SeedNodes, as the rest of a problem that starts with the key and the value;
    /// null when it is a DistTrain node address, <c>akka.tcp://disttrain@HOST:PORT</c> or <c>akka.ssl.tcp://disttrain@HOST:PORT</c>
    /// (HOST a name, an IPv4 address or a bracketed IPv6 one; PORT a whole number from 1 to 65535; a trailing '/' is
    /// allowed). Akka.Remote took a seed
    /// with an empty port (<c>...@127.0.0.1:</c>) or none for port -1 and dialled it until the join timed out, and one
    /// with a port it could not parse (out of range, not a number) or no host stopped the node with an internal error.
    /// </summary>
    /// <param name="seed">The entry as written.</param>
    private static string? SeedNodeProblem(string seed)
    {
        const string expected = "expected akka.tcp://disttrain@HOST:PORT";
        const string port = "PORT being the parameter server's Cluster:Port (4053 by default).";
        var prefix = seed.StartsWith("akka.tcp://disttrain@", StringComparison.Ordinal) ? "akka.tcp://disttrain@".Length
            : seed.StartsWith("akka.ssl.tcp://disttrain@", StringComparison.Ordinal) ? "akka.ssl.tcp://disttrain@".Length
            : -1;
        const string not = "is not a DistTrain node address:";
        if (prefix < 0) return $"{not} {expected}.";
        var address = seed[prefix..];
        if (address.EndsWith('/')) address = address[..^1]; // Akka.Remote reads an address with an empty path as the same address
        // The port's colon: after the closing bracket of an IPv6 host, else the last one.
        var bracket = address.StartsWith('[') ? address.IndexOf(']', StringComparison.Ordinal) : -1;
        if (address.StartsWith('[') && bracket < 0)
            return $"{not} its IPv6 host has no closing ']'; {expected}, such as akka.tcp://disttrain@[::1]:4053.";
        var colon = bracket >= 0 ? (bracket + 1 < address.Length && address[bracket + 1] == ':' ? bracket + 1 : -1) : address.LastIndexOf(':');
        var host = colon < 0 ? address : address[..colon];
        if (host.Length == 0 || host == "[]")
            return $"{not} it has no host before the port; {expected}, HOST being the parameter server's address (its Cluster:PublicHostname).";
        if (bracket < 0 && host.Contains(':', StringComparison.Ordinal))
            return $"{not} its IPv6 host '{host}' needs brackets; {expected}, such as akka.tcp://disttrain@[::1]:4053.";
        if (colon < 0)
            return $"{not} it has no port; {expected}, {port}";
        var text = address[(colon + 1)..];
        if (text.Length == 0)
            return $"{not} its port after '{host}:' is empty; {expected}, {port}";
        if (!text.All(char.IsAsciiDigit))
            return $"{not} its port '{text}' is not a whole number; {expected}, {port}";
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var number) || number is < 1 or > 65_535)
            return $"{not} its port {text} is out of range (allowed 1 to 65535); {expected}, {port}";
        return null;
    }

    /// <summary>
    /// What a parameter-server node refuses that <see cref="Validate"/> leaves alone, since single-node <c>disttrain train</c>
    /// does not use it (it warns that Cluster:ShardNodes is unused): Cluster:ShardNodes = true with a Training:Mode other than
    /// Sync, which shard nodes do not run yet.
    /// </summary>
    /// <param name="options">The parameter-server node's options (active or standby).</param>
    /// <returns>The problems, naming the keys, their values and the fix; empty when there are none.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="options"/>, or its Cluster or Training section, is null.</exception>
    public static IReadOnlyList<string> ParameterServerNodeProblems(TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.Cluster);
        ArgumentNullException.ThrowIfNull(options.Training);
        if (!options.Cluster.ShardNodes || options.Training.Mode == TrainingMode.Sync) return [];
        return [$"Cluster:ShardNodes = true takes synchronous training only, and Training:Mode is {options.Training.Mode}: set Training:Mode to Sync, " +
            "or Cluster:ShardNodes to false (the shards then run in the parameter server's process, in every mode)."];
    }

    /// <summary>
    /// A worker node (or a shard node, which joins as a worker does) whose first entry of <c>Cluster:SeedNodes</c> is its own address (its <c>Cluster:PublicHostname</c>, else
    /// <c>Cluster:Hostname</c>, and its <c>Cluster:Port</c>, as Akka.Cluster compares them): Akka.Cluster lets a node whose own
    /// address is the first seed start a cluster by itself when no other seed answers, so such a worker formed a cluster of
    /// one after a second and waited in it for a parameter server that joins another cluster, until Cluster:JoinTimeoutSeconds
    /// ended it with a message about seeds that did not let it in. Not part of <see cref="Validate"/>: the same config is
    /// right on the parameter-server node, whose own address comes first. Compared as <see cref="FirstSeedIsOwnAddress"/> compares.
    /// </summary>
    /// <param name="options">The worker node's options.</param>
    /// <param name="node">The node's kind as the problem names it: <c>worker</c>, or <c>shard</c> for a shard node, which joins
    /// through the parameter server as a worker does.</param>
    /// <returns>The problem, naming the key, the value and the fix; empty when the first seed is another node's address, or
    /// when Cluster:Port is 0 (a free port, which no seed can name).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="options"/>, or its Cluster section, is null.</exception>
    public static IReadOnlyList<string> WorkerSeedProblems(TrainingOptions options, string node = "worker")
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.Cluster);
        var cluster = options.Cluster;
        if (!FirstSeedIsOwnAddress(cluster)) return [];
        var seed = cluster.SeedNodes[0];
        var advertised = Advertised(cluster);
        var viaPublic = !string.IsNullOrWhiteSpace(cluster.PublicHostname);
        var who = node == "worker" ? node : $"{node} node"; // "a worker", as before; "a shard node" (a shard is a slice, not a node)
        // The other way out: a worker that took the parameter server's PublicHostname (a copied environment) needs its own;
        // one on the parameter server's machine and port needs another port.
        var otherwise = viaPublic
            ? $"If the parameter server is at this address, give this {who} its own Cluster:PublicHostname (the address the other nodes reach it at)."
            : $"If the parameter server is at this address, give this {who} another port (Cluster:Port = 0 takes a free one).";
        return ["Cluster:SeedNodes:0 = '" + seed + $"' is this {node} node's own address (" + advertised + ":" + cluster.Port.ToString(CultureInfo.InvariantCulture) + ", its " +
            (viaPublic ? "Cluster:PublicHostname" : "Cluster:Hostname") + $" and Cluster:Port). A {who} joins the " +
            "cluster through a parameter server; with its own address first it would start a cluster of its own and wait there for a parameter " +
            "server that never comes. List the parameter server's address first, the same first seed on every node " +
            "(DISTTRAIN_Cluster__SeedNodes__0=akka.tcp://disttrain@HOST:PORT, PORT being the parameter server's Cluster:Port). " + otherwise];
    }

    /// <summary>
    /// True when the first entry of <c>Cluster:SeedNodes</c> is this node's own address, as Akka.Cluster would find: the host
    /// its <c>Cluster:PublicHostname</c>, else its <c>Cluster:Hostname</c>, and the port its <c>Cluster:Port</c>. Hosts are
    /// compared as Akka compares them (an IP address in one written form, a name without case), and the protocol not at all
    /// (the node dials every seed with its own), so this says "it is" in every case Akka.Cluster would, and in a few more. False when Cluster:Port is 0 (a free port, which no
    /// seed can name), and when there is no first seed or it is not a node address.
    /// </summary>
    /// <param name="cluster">The node's Cluster options.</param>
    /// <exception cref="ArgumentNullException"><paramref name="cluster"/> is null.</exception>
    public static bool FirstSeedIsOwnAddress(ClusterOptions cluster)
    {
        ArgumentNullException.ThrowIfNull(cluster);
        if (cluster.Port == 0 || cluster.SeedNodes is not { Count: > 0 } seeds || seeds[0] is not { } seed || SeedNodeProblem(seed) is not null) return false;
        var address = seed[(seed.IndexOf('@', StringComparison.Ordinal) + 1)..].TrimEnd('/');
        var colon = address.LastIndexOf(':');
        var seedPort = int.Parse(address[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture);
        return seedPort == cluster.Port && CanonicalHost(address[..colon]) == CanonicalHost(Advertised(cluster));
    }

    /// <summary>The host a node advertises: Cluster:PublicHostname, else Cluster:Hostname.</summary>
    private static string Advertised(ClusterOptions cluster) =>
        (string.IsNullOrWhiteSpace(cluster.PublicHostname) ? cluster.Hostname : cluster.PublicHostname).Trim();

    /// <summary>
    /// A host as Akka compares it: an IP address in its one written form (<c>127.1</c> and <c>127.0.0.1</c>, <c>fd00:0:0::5</c>
    /// and <c>[fd00::5]</c> are one each: Akka.Remote's own address comes from <see cref="System.Net.IPAddress.ToString"/>, a
    /// seed's from <see cref="Uri.Host"/>), any other name in lower case (Akka's addresses lower-case their host).
    /// </summary>
    private static string CanonicalHost(string host)
    {
        var bare = host.Trim('[', ']');
        return System.Net.IPAddress.TryParse(bare, out var ip) ? ip.ToString() : bare.ToLowerInvariant();
    }

    /// <summary>
    /// The listening ports of one cluster node (<c>disttrain node</c>) that are equal, one problem per pair naming both keys,
    /// the value and the fix: two listeners cannot share a port, so the second would fail to bind after the first had
    /// started. A node listens on <c>Cluster:Port</c> (Akka.Remote; 0 picks a free port, which never collides),
    /// <c>Cluster:DataPort</c> (the tensor data plane, parameter-server nodes only) and <c>Metrics:Port</c> (the Prometheus
    /// endpoint; 0 is off). Not part of <see cref="Validate"/>: single-node mode listens on Metrics:Port alone, and a worker
    /// node does not listen on Cluster:DataPort (its Cluster:Port may equal the parameter server's data port).
    /// </summary>
    /// <param name="options">The node's options.</param>
    /// <param name="parameterServer">True for a parameter-server node (active or standby), which also listens on Cluster:DataPort.</param>
    /// <param name="metricsEndpoint">True when the node serves Metrics:Port (<c>disttrain node</c> does; the library's
    /// <c>Trainer</c> does not).</param>
    /// <param name="shardNode">True for a shard node, which listens on Cluster:DataPort as a parameter server does; the problem names it.</param>
    /// <returns>The problems; empty when each port is the node's own.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="options"/>, or its Cluster or Metrics section, is null.</exception>
    public static IReadOnlyList<string> NodePortProblems(TrainingOptions options, bool parameterServer, bool metricsEndpoint = true, bool shardNode = false)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(options.Cluster);
        ArgumentNullException.ThrowIfNull(options.Metrics);
        var ports = new List<(string Key, int Port, string Listener)> { ("Cluster:Port", options.Cluster.Port, "Akka.Remote") };
        if (parameterServer || shardNode) ports.Add(("Cluster:DataPort", options.Cluster.DataPort, "the data plane"));
        if (metricsEndpoint) ports.Add(("Metrics:Port", options.Metrics.Port, "the metrics endpoint"));
        var node = shardNode ? "a shard node" : parameterServer ? "a parameter-server node" : "a worker node";
        var problems = new List<string>();
        for (var i = 0; i < ports.Count; i++)
            for (var j = i + 1; j < ports.Count; j++)
            {
                var (first, second) = (ports[i], ports[j]);
                if (first.Port == 0 || first.Port != second.Port) continue; // 0: a free port (Cluster:Port) or off (Metrics:Port)
                problems.Add(string.Create(CultureInfo.InvariantCulture,
                    $"{first.Key} = {first.Port} and {second.Key} = {second.Port} are the same port, but {node} listens on each ({first.Listener} and " +
                    $"{second.Listener}), and two listeners cannot share a port. Give one of them another port " +
                    $"(DISTTRAIN_{first.Key.Replace(":", "__", StringComparison.Ordinal)}=... or DISTTRAIN_{second.Key.Replace(":", "__", StringComparison.Ordinal)}=...)."));
            }
        return problems;
    }

    /// <summary>
    /// Most entries of Model:Layers. Far above any network this trainer is meant for: a plain stack (no skip connections)
    /// stops training well long before (VGG-19 written out here, with a BatchNorm and an activation after each of its 16
    /// convolutions, its 5 pooling layers, Flatten, and a ReLU and a Dropout after each of its first 2 Dense layers, is 61
    /// layers; ResNet-152's layers in a row, without the skip connections a list cannot express, about 460). A longer list
    /// is a generated config gone wrong: 10,000 layers took minutes (and up to gigabytes, with the layers' width) to load
    /// and build before the first step, most of it in the loader's checks, which grow with the square of the layers.
    /// </summary>
    internal const int MaxLayers = 1_000;

    /// <summary>The problem of a Model:Layers list of <paramref name="count"/> entries, more than <see cref="MaxLayers"/>.</summary>
    internal static string TooManyLayers(int count) =>
        $"Model:Layers = {Counts.Of(count, "layer")} is more than a model may have ({Counts.Number(MaxLayers)}): no network trained here comes near " +
        "that many (VGG-19 with a BatchNorm and an activation after each convolution is 61 layers). " +
        "Remove layers: a generated config may repeat a block too often.";

    /// <summary>Largest Units of a Dense layer.</summary>
    internal const int MaxUnits = 1 << 20;

    /// <summary>Largest Channels of a Conv2D layer.</summary>
    internal const int MaxChannels = 1 << 16;

    /// <summary>Largest KernelSize of a Conv2D or pooling layer.</summary>
    internal const int MaxKernelSize = 1024;

    /// <summary>
    /// The settings a layer of <paramref name="type"/> (a canonical <see cref="LayerTypes"/> name) cannot do without, as the
    /// validator's ranges require them (their default, 0, is out of range): each with what it is and its largest value.
    /// Dense needs Units; Conv2D Channels and KernelSize; MaxPool2D and AvgPool2D KernelSize; the other types none.
    /// </summary>
    internal static IReadOnlyList<(string Key, string What, int Max)> RequiredLayerSettings(string type) => type switch
    {
        LayerTypes.Dense => [(nameof(LayerOptions.Units), "its output features", MaxUnits)],
        LayerTypes.Conv2D => [(nameof(LayerOptions.Channels), "its output channels", MaxChannels), (nameof(LayerOptions.KernelSize), "its kernel's height and width", MaxKernelSize)],
        LayerTypes.MaxPool2D or LayerTypes.AvgPool2D => [(nameof(LayerOptions.KernelSize), "its window's height and width", MaxKernelSize)],
        _ => [],
    };

    /// <summary>
    /// Layer settings that are valid but do nothing, one line each: a key the layer's type does not use (<c>Units</c> on a
    /// ReLU, <c>KernelSize</c> on a Dropout), which is ignored, a Dropout without a Rate, which drops nothing, a Dense or
    /// Conv2D bias right before a BatchNorm, which the BatchNorm cancels (Ioffe and Szegedy, 2015, section 3.2), and an
    /// activation or Dropout after the last Dense layer under softmax cross-entropy, which changes the logits the loss
    /// applies softmax to. A key is taken as set when it differs from its default. Printed as warnings before a run; the
    /// run proceeds.
    /// </summary>
    /// <param name="model">The model section; layers of unknown type are left to <see cref="Validate"/>.</param>
    /// <returns>The warnings, in layer order; empty when every layer setting is used.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="model"/> is null.</exception>
    public static IReadOnlyList<string> LayerWarnings(ModelOptions model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var warnings = new List<string>();
        var defaults = new LayerOptions();
        for (var i = 0; i < (model.Layers?.Count ?? 0); i++)
        {
            var layer = model.Layers![i];
            if (layer is null || LayerTypes.Canonical(layer.Type) is not { } type) continue;
            string[] uses = type switch
            {
                LayerTypes.Dense => [nameof(LayerOptions.Units), nameof(LayerOptions.Bias)],
                LayerTypes.LeakyReLU => [nameof(LayerOptions.NegativeSlope)],
                LayerTypes.Conv2D => [nameof(LayerOptions.Channels), nameof(LayerOptions.KernelSize), nameof(LayerOptions.Stride), nameof(LayerOptions.Padding), nameof(LayerOptions.Bias)],
                LayerTypes.MaxPool2D or LayerTypes.AvgPool2D => [nameof(LayerOptions.KernelSize), nameof(LayerOptions.Stride)],
                LayerTypes.BatchNorm => [nameof(LayerOptions.Momentum), nameof(LayerOptions.Epsilon)],
                LayerTypes.LayerNorm => [nameof(LayerOptions.Epsilon)],
                LayerTypes.Dropout => [nameof(LayerOptions.Rate)],
                _ => [],
            };
            var set = new (string Key, object Value, bool IsSet)[]
            {
                (nameof(LayerOptions.Units), layer.Units, layer.Units != defaults.Units),
                (nameof(LayerOptions.NegativeSlope), layer.NegativeSlope, layer.NegativeSlope != defaults.NegativeSlope),
                (nameof(LayerOptions.Bias), layer.Bias ? "true" : "false", layer.Bias != defaults.Bias),
                (nameof(LayerOptions.Channels), layer.Channels, layer.Channels != defaults.Channels),
                (nameof(LayerOptions.KernelSize), layer.KernelSize, layer.KernelSize != defaults.KernelSize),
                (nameof(LayerOptions.Stride), layer.Stride, layer.Stride != defaults.Stride),
                (nameof(LayerOptions.Padding), layer.Padding, layer.Padding != defaults.Padding),
                (nameof(LayerOptions.Rate), layer.Rate, layer.Rate != defaults.Rate),
                (nameof(LayerOptions.Momentum), layer.Momentum, layer.Momentum != defaults.Momentum),
                (nameof(LayerOptions.Epsilon), layer.Epsilon, layer.Epsilon != defaults.Epsilon),
            };
            var usesText = uses.Length == 0 ? "uses no settings besides Type" : $"uses only {string.Join(", ", uses)}";
            foreach (var (key, value, isSet) in set)
                if (isSet && !uses.Contains(key))
                    warnings.Add($"Model:Layers:{i}:{key} = {Convert.ToString(value, CultureInfo.InvariantCulture)} is ignored: a {type} layer does not use {key} (it {usesText}). " +
                        $"Remove {key} from layer {i}, or change its Type.");
            if (type == LayerTypes.Dropout && layer.Rate == 0)
                warnings.Add($"Model:Layers:{i} (Dropout) has {(layer.RateGiven ? "Rate 0" : "no Rate")}, so it drops nothing: set Model:Layers:{i}:Rate in [0, 1), such as 0.5, or remove the layer.");
            if (type is LayerTypes.Dense or LayerTypes.Conv2D && layer.Bias && i + 1 < model.Layers.Count
                && LayerTypes.Canonical(model.Layers[i + 1]?.Type) == LayerTypes.BatchNorm)
                warnings.Add($"Model:Layers:{i} ({type}) has a bias, and layer {i + 1} is a BatchNorm, which subtracts the batch mean and with it any " +
                    $"constant the bias adds: the bias changes no output and its gradient is 0 (up to rounding). Set Model:Layers:{i}:Bias to false, as " +
                    "PyTorch models do before BatchNorm (the BatchNorm's own shift takes its place).");
        }
        warnings.AddRange(LogitWarnings(model));
        return warnings;
    }

    /// <summary>
    /// An activation or Dropout after the last Dense layer when the loss is softmax cross-entropy: the loss applies softmax to
    /// the last Dense layer's outputs (the logits) itself, so a layer between them only changes the logits (a ReLU clips
    /// them at 0, and the classes it zeroes all get the same probability).
    /// </summary>
    private static IEnumerable<string> LogitWarnings(ModelOptions model)
    {
        if (LossTypes.Canonical(model.Loss) != LossTypes.SoftmaxCrossEntropy) yield break;
        var types = (model.Layers ?? []).Select(l => LayerTypes.Canonical(l?.Type)).ToList();
        var lastDense = types.LastIndexOf(LayerTypes.Dense);
        if (lastDense < 0) yield break;
        for (var i = lastDense + 1; i < types.Count; i++)
        {
            var effect = types[i] switch
            {
                LayerTypes.ReLU => "clips them at 0",
                LayerTypes.LeakyReLU => "shrinks the negative ones",
                LayerTypes.Sigmoid => "squashes them into (0, 1)",
                LayerTypes.Tanh => "squashes them into (-1, 1)",
                LayerTypes.Dropout => "zeroes some of them at random",
                _ => null,
            };
            if (effect is not null)
                yield return $"Model:Layers:{i} ({types[i]}) comes after the last Dense layer (Model:Layers:{lastDense}), on the logits: Model:Loss " +
                    $"{LossTypes.SoftmaxCrossEntropy} applies softmax to the logits itself, so the {types[i]} only {effect}. Remove layer {i}.";
        }
    }

    /// <summary>
    /// A layer, or the whole model, with more parameters than one float array holds (<see cref="Array.MaxLength"/>):
    /// DistTrain keeps each tensor, and all of a model's parameters together, in one array, so such a model cannot be
    /// built. Counted from the shapes (<see cref="ModelFactory.ParameterCounts"/>), before anything is allocated.
    /// </summary>
    private static void SizeProblems(ModelOptions model, List<string> problems)
    {
        var counts = ModelFactory.ParameterCounts(model);
        for (var i = 0; i < counts.Count; i++)
        {
            var layer = model.Layers[i];
            if (counts[i] > Array.MaxLength)
                problems.Add($"Model:Layers:{i} ({LayerTypes.Canonical(layer.Type)}{Shape(layer)}) has {counts[i]:N0} parameters, more than one array holds ({Array.MaxLength:N0}): " +
                    "give it fewer units or channels, or put a pooling layer or a smaller layer before it.");
        }
        var total = counts.Sum();
        if (total > Array.MaxLength && counts.All(c => c <= Array.MaxLength))
            problems.Add($"Model:Layers hold {total:N0} parameters in all, more than the one array that holds a model's parameters can ({Array.MaxLength:N0}): " +
                "give the layers fewer units or channels.");
        string Shape(LayerOptions layer) => LayerTypes.Canonical(layer.Type) switch
        {
            LayerTypes.Dense => $", {layer.Units:N0} units",
            LayerTypes.Conv2D => $", {layer.Channels:N0} channels of {layer.KernelSize}x{layer.KernelSize}",
            _ => "",
        };
    }

    /// <summary>
    /// The problems of the data settings that apply to data from any source, arrays in memory included
    /// (<see cref="TrainingData.Prepare"/>): the limits, the validation fraction, the class names and the normalization. The
    /// config's own rules, with its wording: <see cref="Validate"/> reports them among the others.
    /// </summary>
    /// <param name="data">The data section.</param>
    /// <returns>Every problem found (a null section, list or name first, alone); empty when the settings are valid.</returns>
    internal static List<string> PreparationProblems(DataOptions data)
    {
        var nulls = NullSettings(data, "Data");
        if (nulls.Count > 0) return nulls;
        var problems = new List<string>();
        PreparationProblems(data, problems);
        return problems;
    }

    private static void PreparationProblems(DataOptions data, List<string> problems)
    {
        Optimization.Ranges.Check(problems, "Data:TrainLimit", data.TrainLimit, 0, int.MaxValue);
        Optimization.Ranges.Check(problems, "Data:TestLimit", data.TestLimit, 0, int.MaxValue);
        Optimization.Ranges.Check(problems, "Data:ValidationFraction", data.ValidationFraction, 0, 0.5);
        if (!Enum.IsDefined(data.Normalization))
            problems.Add($"Data:Normalization = {(int)data.Normalization} is unknown: allowed {string.Join(", ", Enum.GetNames<NormalizationKind>())}.");
        for (var i = 0; i < data.ClassNames.Count; i++)
            if (string.IsNullOrWhiteSpace(data.ClassNames[i]) || data.ClassNames.IndexOf(data.ClassNames[i]) != i)
                problems.Add($"Data:ClassNames:{i} = '{data.ClassNames[i]}' is {(string.IsNullOrWhiteSpace(data.ClassNames[i]) ? "empty" : "repeated")}: give each class a distinct name, in label order.");
    }

    /// <summary>Where Debian's <c>python3-sklearn</c> installs scikit-learn's bundled data sets (configs/sklearn-*.json read them).</summary>
    private const string DebianScikitLearnData = "/usr/lib/python3/dist-packages/sklearn/datasets/data/";

    private static void DataProblems(TrainingOptions options, List<string> problems, bool checkFiles, Action<string, double, double, double, bool, bool> range)
    {
        var data = options.Data;
        void NeedFile(string key, string path, bool required, string what)
        {
            if (string.IsNullOrWhiteSpace(path))
            {
                if (required) problems.Add($"{key} is empty: set it to the {what}.");
            }
            else if (checkFiles && !(what.Contains("folder", StringComparison.Ordinal) ? Directory.Exists(path) : File.Exists(path)))
                problems.Add($"{key} = '{path}' is not an existing {(what.Contains("folder", StringComparison.Ordinal) ? "folder" : "file")}: give the path of the {what}" +
                    (path.StartsWith(DebianScikitLearnData, StringComparison.Ordinal) ? ", or install scikit-learn's data sets with 'apt-get install python3-sklearn'." : "."));
        }
        range("Data:TestFraction", data.TestFraction, 0, 0.9, false, false);
        string? separateTest = null;
        switch (data.Format)
        {
            case DataFormat.Idx:
                if (string.IsNullOrWhiteSpace(data.Directory))
                    problems.Add("Data:Directory is empty: set it to the folder with the IDX files (Debian: /usr/share/datasets/fashion-mnist).");
                else if (checkFiles && !Directory.Exists(data.Directory))
                    problems.Add($"Data:Directory = '{data.Directory}' is not an existing folder: install the data with 'apt-get install dataset-fashion-mnist' or pass --data DIR.");
                if (data.TestFraction > 0)
                    problems.Add($"Data:TestFraction = {data.TestFraction} does not apply to Data:Format Idx, which has its own test files: set it to 0.");
                return;
            case DataFormat.Csv:
                NeedFile("Data:Csv:TrainFile", data.Csv.TrainFile, true, "training CSV file (.csv or .csv.gz)");
                NeedFile("Data:Csv:TestFile", data.Csv.TestFile, false, "test CSV file");
                if (!CsvOptions.IsValidSeparator(data.Csv.Separator))
                    problems.Add($"Data:Csv:Separator = '{CsvOptions.Shown(data.Csv.Separator)}' " +
                        $"{(data.Csv.Separator.Length != 1 ? "is not one character" : "is a character the CSV reader does not split at")}: use {CsvOptions.SeparatorTakes}.");
                range("Data:Csv:SkipRows", data.Csv.SkipRows, 0, 1_000_000, false, false);
                separateTest = string.IsNullOrWhiteSpace(data.Csv.TestFile) ? null : "Data:Csv:TestFile";
                break;
            case DataFormat.ImageFolder:
                NeedFile("Data:ImageFolder:TrainDirectory", data.ImageFolder.TrainDirectory, true, "training image folder (one sub-folder per class)");
                NeedFile("Data:ImageFolder:TestDirectory", data.ImageFolder.TestDirectory, false, "test image folder");
                var shape = options.Model.InputShape;
                // Led by the key whose value is wrong, so that where it came from is the shape's origin, not Data:Format's.
                if (shape.Count == 0)
                    problems.Add("Data:Format = ImageFolder needs Model:InputShape, [channels, height, width] with 1 (grayscale) or 3 (RGB) channels, such as [1, 28, 28]: set it.");
                else if (shape.Count != 3 || shape[0] is not (1 or 3))
                    problems.Add($"Model:InputShape = [{string.Join(", ", shape)}] is not what Data:Format = ImageFolder needs: [channels, height, width] with 1 (grayscale) or 3 (RGB) channels, such as [1, 28, 28].");
                separateTest = string.IsNullOrWhiteSpace(data.ImageFolder.TestDirectory) ? null : "Data:ImageFolder:TestDirectory";
                break;
        }
        if (separateTest is null && data.TestFraction <= 0)
            problems.Add($"Data:TestFraction = {data.TestFraction} leaves no test samples: give a test {(data.Format == DataFormat.Csv ? "file (Data:Csv:TestFile)" : "folder (Data:ImageFolder:TestDirectory)")}, or hold out a fraction of the training data (for example Data:TestFraction 0.2).");
        if (separateTest is not null && data.TestFraction > 0)
            problems.Add($"Data:TestFraction = {data.TestFraction} conflicts with {separateTest}: the test samples come from one or the other. Set TestFraction to 0 or remove {separateTest}.");
    }

    /// <summary>
    /// The settings of <paramref name="section"/>, and of the sections and lists below it, that are null although they are
    /// not nullable: a section (<c>Model</c>), a list (<c>Model:Layers</c>), a list entry (<c>Model:Layers:2</c>) or a text
    /// (<c>Output:Directory</c>). A config file cannot give such a null (the loader refuses it by its key); options built
    /// in code can, and every check after this one would stop at it with a NullReferenceException.
    /// </summary>
    /// <param name="section">An options object: <see cref="TrainingOptions"/> or one of its sections.</param>
    /// <param name="key">The key of <paramref name="section"/> (<c>Data</c>), or empty for <see cref="TrainingOptions"/>.</param>
    internal static List<string> NullSettings(object section, string key)
    {
        var problems = new List<string>();
        var nullability = new NullabilityInfoContext();
        void Visit(object value, string prefix)
        {
            object? defaults = null;
            foreach (var property in value.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance))
            {
                if (property.PropertyType.IsValueType || property.GetIndexParameters().Length > 0
                    || property.GetMethod is not { IsPublic: true } || property.SetMethod is not { IsPublic: true }) continue;
                var name = prefix.Length == 0 ? property.Name : $"{prefix}:{property.Name}";
                var info = nullability.Create(property);
                var current = property.GetValue(value);
                if (current is null)
                {
                    if (info.ReadState == NullabilityState.Nullable) continue;
                    defaults ??= Activator.CreateInstance(value.GetType());
                    problems.Add($"{name} is null: leave it at its default ({Shown(defaults is null ? null : property.GetValue(defaults), property.PropertyType)}), or give it a value (null is not a setting).");
                }
                else if (current is IList list && info.GenericTypeArguments is [{ } element] && !element.Type.IsValueType)
                {
                    for (var i = 0; i < list.Count; i++)
                        if (list[i] is { } entry)
                        {
                            if (IsSection(entry.GetType())) Visit(entry, $"{name}:{i}");
                        }
                        else if (element.ReadState != NullabilityState.Nullable)
                            problems.Add($"{name}:{i} is null: give the entry a value, or remove it (null is not a setting).");
                }
                else if (IsSection(property.PropertyType))
                    Visit(current, name);
            }
        }
        static bool IsSection(Type type) => type.IsClass && type != typeof(string) && type.Namespace?.StartsWith("DistTrain", StringComparison.Ordinal) == true;
        static string Shown(object? value, Type type) => value switch
        {
            string text => $"'{text}'",
            IList { Count: 0 } => "an empty list",
            IList list => $"[{string.Join(", ", list.Cast<object>())}]",
            null => "none",
            _ => $"new {type.Name}()",
        };
        Visit(section, key);
        return problems;
    }

    private static void AugmentationProblems(TrainingOptions options, List<string> problems, Action<string, double, double, double, bool, bool> range)
    {
        var augmentation = options.Data.Augmentation;
        var shape = options.Model.InputShape;
        var images = shape.Count == 3 && shape.All(d => d > 0) && shape[1] >= 2 && shape[2] >= 2;
        // With the image size known, CropPadding is checked against it alone, so the key is reported once, with the range
        // that applies to these images (half the smaller side, within the general limit).
        var padding = augmentation.CropPadding;
        if (images)
        {
            var half = Math.Min(shape[1], shape[2]) / 2;
            var most = Math.Min(half, MaxCropPadding);
            if (padding < 0 || padding > most)
                problems.Add($"Data:Augmentation:CropPadding = {padding} is {(padding < 0 ? "negative" : "too large")} for {shape[1]}x{shape[2]} images: " +
                    $"allowed 0 to {most} ({(half <= MaxCropPadding ? "half the smaller side" : "the largest padding allowed")}).");
        }
        else
            range("Data:Augmentation:CropPadding", padding, 0, MaxCropPadding, false, false);
        range("Data:Augmentation:MaxTranslation", augmentation.MaxTranslation, 0, 0.5, false, false);
        if (augmentation.Enabled && !images)
            problems.Add($"Data:Augmentation = {augmentation} needs image samples: set Model:InputShape to [channels, height, width] (for example [1, 28, 28]), or turn augmentation off.");
    }

    /// <summary>The largest Data:Augmentation:CropPadding whatever the image size, in pixels.</summary>
    private const int MaxCropPadding = 1024;
}
