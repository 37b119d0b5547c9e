using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.LinearAlgebra;
using DistTrain.Core.Models;
using DistTrain.Cluster.Metrics;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary>
/// <c>disttrain bench</c>: trains the configured job in single-node mode for a fixed number of
/// synchronous steps after a warm-up and reports throughput, the split of step time, allocations
/// per step and peak resident memory, with the settings that change what a step is (its samples, with
/// gradient accumulation; the gradient compression; the parameter-server shards). Only Training:Mode Sync is
/// measured: the other modes' steps are not rounds of every worker, which the split of step time describes.
/// Every figure is over the measured steps alone: the epoch ends among them (evaluation included) are reported apart, and a
/// warm-up that would leave the first epoch's end or the first gradient-norm measurement among them runs on past it. With <c>--json</c>, standard output holds the JSON line alone.
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var config = CliOptions.File("--config", "JSON config (default: configs/fashion-mnist-mlp.json in the current folder, else the one shipped with disttrain).",
            CliOptions.ConfigTakes, DefaultConfig, "-c");
        var workers = CliOptions.WholeNumber("--workers", "Worker replicas.", CliOptions.WorkersTakes, 2, "-w");
        var batch = CliOptions.WholeNumber("--batch-size", "Override Training:BatchSizePerWorker.", CliOptions.BatchTakes);
        var steps = CliOptions.WholeNumber("--steps", "Measured synchronous steps.", "a whole number of measured steps, at least 1", 400);
        var warmup = CliOptions.WholeNumber("--warmup", "Steps run before measuring (JIT, caches); at least 1. It runs on past the first epoch's end and the first gradient-norm measurement when the measured steps would include them.", "a whole number of warm-up steps, at least 1", 50);
        var data = CliOptions.Text("--data", "DIR", CliOptions.DataHelp, CliOptions.DataTakes);
        var json = new Option<bool>("--json") { Description = "Print the result as one JSON line on standard output, alone: the table and the other lines go to standard error." };
        // No default here: without the option, Metrics:Port of the config or the environment applies (as for train's options).
        var metricsPort = CliOptions.WholeNumber("--metrics-port",
            "Override Metrics:Port: serve Prometheus metrics on this port while measuring (0 = off), to measure their overhead.",
            "a TCP port from 0 to 65,535 (0 = no metrics; Metrics:Port)");
        var command = new Command("bench", "Measure single-node training throughput, step-time split, allocations per step and peak RSS.")
        {
            config, workers, batch, steps, warmup, data, json, metricsPort,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var overrides = new Dictionary<string, string?>
            {
                ["Training:Workers"] = parse.GetValue(workers).ToString(CultureInfo.InvariantCulture),
            };
            if (parse.GetValue(batch) is { } b) overrides["Training:BatchSizePerWorker"] = b.ToString(CultureInfo.InvariantCulture);
            if (parse.GetValue(data) is { } d) overrides["Data:Directory"] = d;
            if (parse.GetValue(metricsPort) is { } port) overrides["Metrics:Port"] = port.ToString(CultureInfo.InvariantCulture);
            var configPath = parse.GetValue(config)!.FullName;
            if (parse.GetResult(config) is null or { Implicit: true })
            {
                if (ShippedConfig(Directory.GetCurrentDirectory(), AppContext.BaseDirectory) is not { } found)
                {
                    CliConsole.Fail("error", NoDefaultConfig(Directory.GetCurrentDirectory(), AppContext.BaseDirectory));
                    return 2;
                }
                configPath = found;
            }
            return await RunAsync(configPath, overrides, parse.GetValue(warmup), parse.GetValue(steps), parse.GetValue(json), cancellationToken);
        });
        return command;
    }

    /// <summary>The config <c>bench</c> runs without <c>--config</c>, relative to the current folder or to <see cref="ShippedConfig"/>'s.</summary>
    internal const string DefaultConfig = "configs/fashion-mnist-mlp.json";

    /// <summary>
    /// The full path of the config <c>bench</c> runs without <c>--config</c>: <see cref="DefaultConfig"/> in
    /// <paramref name="currentDirectory"/> when it is there (a clone of the repository), else the copy shipped next to the
    /// executable in <paramref name="baseDirectory"/> (the build output and the installed tool hold <c>configs/</c>); null
    /// when neither exists.
    /// </summary>
    internal static string? ShippedConfig(string currentDirectory, string baseDirectory) =>
        new[] { currentDirectory, baseDirectory }.Select(folder => Path.GetFullPath(Path.Combine(folder, DefaultConfig))).FirstOrDefault(File.Exists);

    /// <summary>The error when neither <see cref="ShippedConfig"/> place holds <see cref="DefaultConfig"/>: both places, and <c>--config</c> as the fix.</summary>
    internal static string NoDefaultConfig(string currentDirectory, string baseDirectory) =>
        $"no --config given, and the default {DefaultConfig} is neither in the current folder ({currentDirectory}) nor shipped with disttrain " +
        $"({Path.Combine(baseDirectory, "configs")}). Pass --config with a JSON config file, such as {DefaultConfig} of the repository.";

    private static async Task<int> RunAsync(string configPath, Dictionary<string, string?> overrides, int warmup, int steps, bool json, CancellationToken cancellationToken)
    {
        if (warmup < 1 || steps < 1)
        {
            CliConsole.Fail("error", steps < 1
                ? $"--steps {steps}: it takes a whole number of measured steps, at least 1."
                : $"--warmup {warmup}: it takes a whole number of unmeasured steps, at least 1.");
            return 1; // a bad command line
        }
        // With --json, standard output holds the JSON line alone, for a parser: every other line (the BLAS line, the table, a
        // metrics address, Akka's log lines) goes to standard error.
        var standardOutput = Console.Out;
        var console = AnsiConsole.Console;
        if (json)
        {
            AnsiConsole.Console = CliConsole.Error;
            Console.SetOut(Console.Error);
        }
        try
        {
            var exit = await MeasureAsync(configPath, overrides, warmup, steps, cancellationToken);
            if (exit.Report is { } report && json)
                standardOutput.WriteLine(JsonSerializer.Serialize(report));
            return exit.Code;
        }
        finally
        {
            if (json)
            {
                Console.SetOut(standardOutput);
                AnsiConsole.Console = console;
            }
        }
    }

    /// <summary>
    /// The error when Training:Mode is not Sync: bench measures synchronous steps, each a round of every worker's minibatch, and
    /// splits their time into the slowest worker's compute, the update and the waiting, which the other modes do not have.
    /// </summary>
    internal static string NotSync(TrainingMode mode) =>
        $"Training:Mode is {mode}, and bench measures synchronous steps only (Training:Mode Sync): each step a round of every worker's " +
        "minibatch, whose time its table splits into compute, update and waiting. Set Training:Mode to Sync for bench " +
        "(in the config, or DISTTRAIN_Training__Mode=Sync); train's epoch lines give the samples/s of the other modes.";

    /// <summary>Trains and measures; the exit code, and the report when the measured steps completed.</summary>
    private static async Task<(int Code, BenchReport? Report)> MeasureAsync(string configPath, Dictionary<string, string?> overrides, int warmup, int steps,
        CancellationToken cancellationToken)
    {
        TrainingOptions options;
        TrainingData trainingData;
        try
        {
            options = TrainingOptionsLoader.Load(configPath, overrides, CliOptions.OptionOfKey);
            if (options.Training.Mode != TrainingMode.Sync)
            {
                CliConsole.Fail("error", NotSync(options.Training.Mode));
                return (2, null);
            }
            trainingData = TrainingData.Load(options);
            ModelFactory.CheckFitsData(options.Model, trainingData);
            if (!CliConsole.FitsInMemory(options)) return (2, null);
            ModelFactory.StartingWeights(ModelFactory.Build(options.Model), options.Model, options.Training.Seed); // a pretrained checkpoint that does not fit fails here
        }
        catch (Exception e) when (CliConsole.IsInputError(e))
        {
            CliConsole.Fail("error", e.Message);
            return (2, null);
        }
        // A step takes each worker's minibatch: BatchSizePerWorker samples per micro-batch, AccumulationSteps micro-batches.
        var stepsPerEpoch = (int)Math.Ceiling(trainingData.Train.Count / (double)(options.Training.Workers * options.Training.MinibatchPerWorker));
        var warmupSteps = WarmupSteps(warmup, steps, Math.Max(1, stepsPerEpoch), options.Monitoring.GradientNormEverySteps);
        options.Training.Epochs = (warmupSteps + steps) / Math.Max(1, stepsPerEpoch) + 1;
        Blas.Configure(options.Compute, options.Training.Workers);
        CliConsole.Out.WriteLiteralLine($"Config: {configPath}");
        AnsiConsole.WriteLine(Blas.Description);
        if (ConvolutionKernels.UsedBy(options.Model)) AnsiConsole.WriteLine(ConvolutionKernels.Description);

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var probe = new BenchObserver(warmupSteps, steps, stop);
        MetricsExporter? exporter;
        try
        {
            exporter = MetricsSetup.Start(options, "local");
        }
        catch (MetricsPortException e)
        {
            CliConsole.Fail("error", e.Message);
            return (2, null);
        }
        using var metrics = exporter;
        var failed = await CliConsole.RunTrainingAsync(async () =>
            {
                try
                {
                    await SingleNodeTrainer.RunAsync(options, trainingData.Train, trainingData.Test, MetricsSetup.Wrap(probe, options), cancellationToken: stop.Token);
                }
                catch (OperationCanceledException) when (probe.Done)
                {
                    // The observer stops the run once the measured steps are in.
                }
            },
            onCancelled: _ => CliConsole.Fail("cancelled", "stopped before the measured steps completed; nothing to report."), model: options,
            afterInternalError: "bench measures a run from its start, so there is nothing to resume: run it again");
        if (failed is not null) return (failed.Value, null);
        if (!probe.Done)
        {
            CliConsole.Fail("error", "the run ended before the measured steps completed.");
            return (1, null);
        }
        var report = probe.Report(options, warmup);
        var table = new Table().AddColumn("measure").AddColumn(new TableColumn("value").RightAligned());
        table.AddRow("mode", $"{report.Mode} (synchronous steps)");
        if (report.AccumulationSteps > 1)
            table.AddRow("workers x batch x accumulation steps", $"{report.Workers} x {report.BatchSizePerWorker} x {report.AccumulationSteps}");
        else
            table.AddRow("workers x batch", $"{report.Workers} x {report.BatchSizePerWorker}");
        table.AddRow("samples per step, at most (mean of the measured)", string.Create(CultureInfo.InvariantCulture, $"{report.SamplesPerStep:N0} ({report.MeanSamplesPerStep:N1})"));
        var (compression, compressionDetails) = CompressionCell(report.Compression);
        table.AddRow("gradient compression", compression);
        table.AddRow("parameter-server shards", report.ParameterServerShards.ToString(CultureInfo.InvariantCulture));
        table.AddRow("metrics", report.MetricsPort == 0 ? "off" : $"on, port {report.MetricsPort}");
        table.AddRow("measured steps (after warm-up)", report.WarmupSteps == warmup ? $"{report.Steps} (after {warmup})" : $"{report.Steps} (after {report.WarmupSteps}, not {warmup})");
        table.AddRow("samples/s", report.SamplesPerSecond.ToString("N0", CultureInfo.InvariantCulture));
        table.AddRow("step time, mean", $"{report.StepMilliseconds:F3} ms");
        table.AddRow("  compute (slowest worker)", $"{report.ComputeMilliseconds:F3} ms");
        table.AddRow("  averaging + update", $"{report.UpdateMilliseconds:F3} ms");
        table.AddRow("  messaging + scheduling", $"{report.MessagingMilliseconds:F3} ms");
        table.AddRow("  worker waiting for weights", $"{report.WaitingMilliseconds:F3} ms");
        table.AddRow("allocated per step, workers (most of any worker)", $"{report.WorkerAllocatedBytesPerStep:N1} B");
        table.AddRow("allocated per step, parameter server", $"{report.ServerAllocatedBytesPerStep:N1} B");
        table.AddRow("allocated per step, whole process", $"{report.AllocatedBytesPerStep:N0} B");
        table.AddRow("epoch ends among them (not in the figures above)", report.EpochEnds.ToString("N0", CultureInfo.InvariantCulture));
        if (report.EpochEnds > 0)
        {
            table.AddRow("  time each (evaluation included)", $"{report.EpochEndMilliseconds:F3} ms");
            table.AddRow("  allocated each, whole process", $"{report.EpochEndAllocatedBytes:N0} B");
            table.AddRow("  allocated each, parameter server", $"{report.EpochEndServerAllocatedBytes:N1} B");
        }
        table.AddRow("GC collections gen0/1/2 (epoch ends included)", $"{report.Gen0}/{report.Gen1}/{report.Gen2}");
        table.AddRow("peak RSS", $"{report.PeakRssBytes / (1024.0 * 1024.0):F1} MiB");
        AnsiConsole.Write(table);
        if (compressionDetails) AnsiConsole.WriteLine($"Gradient compression: {report.Compression}.");
        var shortLastStep = trainingData.Train.Count % (options.Training.Workers * options.Training.MinibatchPerWorker) != 0;
        if (WarmupNote(warmup, report.WarmupSteps, Math.Max(1, stepsPerEpoch), options.Monitoring.GradientNormEverySteps, shortLastStep) is { } note)
            AnsiConsole.WriteLine(note);
        if (EpochEndNote(report.Steps, report.StepMilliseconds, report.EpochEnds, report.EpochEndMilliseconds, Math.Max(1, stepsPerEpoch)) is { } epochEnds)
            AnsiConsole.WriteLine(epochEnds);
        return (0, report);
    }

    /// <summary>
    /// Cluster:Compression as the report names it: <c>None</c>, or the start-up line's description without its
    /// "gradients sent as" (<c>TopK 1% with error feedback and momentum correction (...)</c>).
    /// </summary>
    internal static string CompressionOf(TrainingOptions options)
    {
        const string prefix = "gradients sent as ";
        var described = options.DescribeCompression();
        return described is null ? "None" : described.StartsWith(prefix, StringComparison.Ordinal) ? described[prefix.Length..] : described;
    }

    /// <summary>
    /// <see cref="CompressionOf"/> as the table's cell: its head, before the details in parentheses or after a semicolon (momentum
    /// correction's settings, worker-side clipping), broken into lines before " with", " without" and " and" when longer than
    /// the table's other values, so the table stays about 80 columns wide (the whole description ran to about 240); and whether
    /// details were left out, which then go on a line of their own under the table.
    /// </summary>
    internal static (string Cell, bool DetailsLeftOut) CompressionCell(string compression)
    {
        var cut = new[] { compression.IndexOf(" (", StringComparison.Ordinal), compression.IndexOf("; ", StringComparison.Ordinal) }
            .Where(i => i > 0).DefaultIfEmpty(compression.Length).Min();
        var head = compression[..cut];
        const int widestValue = 28; // "BFloat16 with error feedback" stays one line
        if (head.Length > widestValue)
            head = head.Replace(" with ", "\nwith ", StringComparison.Ordinal).Replace(" without ", "\nwithout ", StringComparison.Ordinal)
                .Replace(" and ", "\nand ", StringComparison.Ordinal);
        return (head, cut < compression.Length);
    }

    /// <summary>Bench figures; times are means per step. A step is one synchronous round (<see cref="Mode"/> is always Sync)
    /// of up to <see cref="SamplesPerStep"/> samples: <see cref="Workers"/> × <see cref="BatchSizePerWorker"/> × <see cref="AccumulationSteps"/>
    /// (the last step of an epoch takes the samples left; <see cref="MeanSamplesPerStep"/> is the measured steps' mean);
    /// <see cref="WarmupSteps"/> ran before them, unmeasured (more than <see cref="RequestedWarmupSteps"/>, --warmup, when that
    /// would have measured the first epoch's end or the first gradient-norm measurement, see <see cref="BenchCommand.WarmupSteps(int, int, int, int)"/>); <see cref="MetricsPort"/> is the port
    /// the Prometheus metrics were served on while measuring, 0 when off.
    /// Every figure is over the measured steps: <see cref="SamplesPerSecond"/> is their samples over their time, the sum of their
    /// rounds (<see cref="MeanSamplesPerStep"/> / <see cref="StepMilliseconds"/>; the rounds of an epoch run back to back, so
    /// within an epoch that is its wall time), which leaves out the <see cref="EpochEnds"/> epoch ends among them (the
    /// parameter server closing an epoch, its evaluation, the next one's planning).
    /// <see cref="AllocatedBytesPerStep"/> and <see cref="ServerAllocatedBytesPerStep"/> leave out the epoch ends' bytes, which are
    /// <see cref="EpochEndAllocatedBytes"/> and <see cref="EpochEndServerAllocatedBytes"/> per epoch end (0 without one);
    /// <see cref="EpochEndMilliseconds"/> is an epoch end's mean wall time, its evaluation included: the measured span's wall time
    /// outside the rounds, per epoch end. Gen0–Gen2 count the collections
    /// of the whole span, epoch ends included.</summary>
    internal sealed record BenchReport(
        string Blas, int Workers, int BatchSizePerWorker, int Steps, double SamplesPerSecond, double StepMilliseconds,
        double ComputeMilliseconds, double UpdateMilliseconds, double MessagingMilliseconds, double WaitingMilliseconds,
        double AllocatedBytesPerStep, double WorkerAllocatedBytesPerStep, double ServerAllocatedBytesPerStep,
        int Gen0, int Gen1, int Gen2, long PeakRssBytes,
        string Mode, int AccumulationSteps, int SamplesPerStep, string Compression, int ParameterServerShards, int WarmupSteps, int MetricsPort,
        double MeanSamplesPerStep, int RequestedWarmupSteps, int EpochEnds, double EpochEndMilliseconds, double EpochEndAllocatedBytes,
        double EpochEndServerAllocatedBytes);

    /// <summary>
    /// The steps run before measuring: <paramref name="warmup"/>, run on past whichever of two one-time events the measured
    /// steps would otherwise take in, each running code for the first time (JIT compilation, buffers allocated once): the
    /// first epoch's end (its short last step, the first evaluation and the planning of the next epoch), when it runs up to
    /// and including the second epoch's first step; and the first gradient-norm measurement (the parameter server's step
    /// <paramref name="gradientNormEverySteps"/>, counted from 1), when it runs up to and including that step. Passing one can
    /// bring the other among the measured steps, so both are applied until neither is.
    /// </summary>
    /// <param name="warmup">The warm-up asked for (--warmup), at least 1.</param>
    /// <param name="steps">The measured steps (--steps), at least 1.</param>
    /// <param name="stepsPerEpoch">Synchronous steps in an epoch, at least 1.</param>
    /// <param name="gradientNormEverySteps">Monitoring:GradientNormEverySteps; 0 (no measurement) leaves the epoch's end alone.</param>
    internal static int WarmupSteps(int warmup, int steps, int stepsPerEpoch, int gradientNormEverySteps = 0)
    {
        var run = warmup;
        for (var previous = -1; previous != run;)
        {
            previous = run;
            if (run <= stepsPerEpoch && stepsPerEpoch <= run + steps) run = stepsPerEpoch + 1;
            if (run < gradientNormEverySteps && gradientNormEverySteps <= run + steps) run = gradientNormEverySteps;
        }
        return run;
    }

    /// <summary>
    /// The line under the table when the epoch ends among the measured steps (evaluation included) took longer than the steps
    /// themselves: on a small data set (a few steps per epoch) the job's time is mostly its epoch ends, which the samples/s
    /// leaves out, so that figure says little of the job; null otherwise.
    /// </summary>
    /// <param name="steps">The measured steps.</param>
    /// <param name="stepMilliseconds">Their mean time, ms.</param>
    /// <param name="epochEnds">The epoch ends among them.</param>
    /// <param name="epochEndMilliseconds">The mean time of an epoch end, ms.</param>
    /// <param name="stepsPerEpoch">Synchronous steps in an epoch, at least 1.</param>
    internal static string? EpochEndNote(int steps, double stepMilliseconds, int epochEnds, double epochEndMilliseconds, int stepsPerEpoch)
    {
        var (stepsTotal, endsTotal) = (steps * stepMilliseconds, epochEnds * epochEndMilliseconds);
        if (epochEnds == 0 || !(endsTotal > stepsTotal)) return null;
        return string.Format(CultureInfo.InvariantCulture,
            "Note: the {0} among the measured steps took {1:F1} ms (evaluation included), more than the {2} steps themselves ({3:F1} ms): with {4} per " +
            "epoch, this job's time is mostly its epoch ends, which samples/s above leaves out. train's epoch lines give the samples/s of whole epochs; " +
            "for the speed of the steps of a larger job, bench one with more training data (or fewer workers, or a smaller Training:BatchSizePerWorker).",
            Counts.Of(epochEnds, "epoch end"), endsTotal, steps, stepsTotal, Counts.Of(stepsPerEpoch, "step"));
    }

    /// <summary>
    /// The line under the table when the warm-up run (<paramref name="run"/>, from <see cref="WarmupSteps"/>) is longer than the
    /// one asked for (<paramref name="requested"/>): what it ran on past, and why; null when they are equal.
    /// </summary>
    /// <param name="requested">--warmup.</param>
    /// <param name="run">The warm-up steps run.</param>
    /// <param name="stepsPerEpoch">Synchronous steps in an epoch, at least 1.</param>
    /// <param name="gradientNormEverySteps">Monitoring:GradientNormEverySteps (0: off).</param>
    /// <param name="shortLastStep">Whether an epoch's last step takes fewer samples than the others (the training samples are
    /// not a multiple of a step's); when they are, the epoch's end is named by its evaluation and the next epoch's planning alone.</param>
    internal static string? WarmupNote(int requested, int run, int stepsPerEpoch, int gradientNormEverySteps, bool shortLastStep)
    {
        if (run == requested) return null;
        var past = new List<string>();
        if (requested <= stepsPerEpoch && stepsPerEpoch < run)
            past.Add(shortLastStep
                ? "the first epoch's end (its short last step, the first evaluation, the next epoch's planning)"
                : "the first epoch's end (the first evaluation, the next epoch's planning)");
        if (gradientNormEverySteps > 0 && requested < gradientNormEverySteps && gradientNormEverySteps <= run)
            past.Add(string.Create(CultureInfo.InvariantCulture,
                $"the first gradient-norm measurement (step {gradientNormEverySteps:N0}, Monitoring:GradientNormEverySteps)"));
        return $"Warm-up: {Counts.Of(run, "step")}, not {requested}: it runs on past {string.Join(" and ", past)}, which " +
            (past.Count > 1 ? "run code and fill buffers for the first time and are not steady state." : "runs code and fills buffers for the first time and is not steady state.");
    }

    /// <summary>
    /// Measures <c>steps</c> synchronous steps after <c>warmup</c> ones and stops the run. Every figure is over the measured
    /// steps alone: samples/s counts their time as the step time does (their rounds), and the epoch ends among them (the
    /// parameter server closing the epoch, the evaluation, the next epoch's planning) are counted, timed and their allocations
    /// taken apart (<see cref="BenchReport.EpochEnds"/>), so that samples/s and the allocations per step describe the same
    /// steady-state steps as the step time.
    /// </summary>
    /// <param name="warmup">Steps before measuring (see <see cref="WarmupSteps"/>), at least 1.</param>
    /// <param name="steps">Steps measured, at least 1.</param>
    /// <param name="stop">Cancelled once the measured steps are in.</param>
    /// <param name="clock">Seconds on a monotonic clock (tests); null reads <see cref="Stopwatch"/>.</param>
    internal sealed class BenchObserver(int warmup, int steps, CancellationTokenSource stop, Func<double>? clock = null) : ITrainingObserver
    {
        private readonly Func<double> _clock = clock ?? (() => Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency);
        private int _seen;
        private int _measured;
        private long _samples;
        private double _start, _end;
        private long _startAllocated;
        private long _endAllocated;
        private int _gen0, _gen1, _gen2;
        private double _round, _compute, _update, _messaging, _waiting;
        private long _workerAllocated, _serverAllocated;
        private int _epoch, _epochSteps;
        private long _epochEndStartAllocated = -1; // whole-process bytes at an epoch's last measured step, until the next epoch's first
        private int _epochEnds;
        private long _epochEndAllocated, _epochEndServerAllocated;

        /// <summary>True once the measured steps are in.</summary>
        public bool Done { get; private set; }

        /// <inheritdoc />
        public void EpochStarted(int epoch, int steps, int samples) => _epochSteps = steps;

        /// <inheritdoc />
        public void StepApplied(int epoch, int step, long version, int samples, double meanLoss, double learningRate, RoundTiming timing)
        {
            if (Done) return;
            _seen++;
            if (_seen < warmup) return;
            var now = _clock();
            if (_seen == warmup)
            {
                _start = now;
                _startAllocated = GC.GetTotalAllocatedBytes(precise: true);
                (_gen0, _gen1, _gen2) = (GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2));
                _epoch = epoch;
                MarkIfLastOfEpoch(step);
                return;
            }
            if (epoch != _epoch)
            {
                // An epoch ended between the previous step and this one: not a step, so not allocated as one. Its bytes are the
                // process's since that step and the parameter server's of the round before this one (its handlers report the
                // previous round's, here the epoch's close). Its time is outside every round already.
                _epochEnds++;
                if (_epochEndStartAllocated >= 0) _epochEndAllocated += GC.GetTotalAllocatedBytes(precise: true) - _epochEndStartAllocated;
                _epochEndServerAllocated += timing.ServerAllocatedBytes;
                _epoch = epoch;
            }
            else
                _serverAllocated += timing.ServerAllocatedBytes;
            _epochEndStartAllocated = -1;
            _measured++;
            _samples += samples;
            _round += timing.RoundSeconds;
            _compute += timing.MaxComputeSeconds;
            _update += timing.UpdateSeconds;
            _messaging += timing.MessagingSeconds;
            _waiting += timing.WaitingForWeightsSeconds;
            _workerAllocated += timing.WorkerAllocatedBytes;
            if (_measured < steps)
            {
                MarkIfLastOfEpoch(step);
                return;
            }
            _end = now;
            _endAllocated = GC.GetTotalAllocatedBytes(precise: true);
            (_gen0, _gen1, _gen2) = (GC.CollectionCount(0) - _gen0, GC.CollectionCount(1) - _gen1, GC.CollectionCount(2) - _gen2);
            Done = true;
            stop.Cancel();
        }

        /// <summary>At an epoch's last step, the process's allocated bytes, from which the epoch's end is counted.</summary>
        private void MarkIfLastOfEpoch(int step)
        {
            if (step + 1 >= _epochSteps) _epochEndStartAllocated = GC.GetTotalAllocatedBytes(precise: true);
        }

        /// <inheritdoc />
        public void EpochCompleted(EpochSummary summary) { }

        /// <summary>The figures of the measured steps (call once <see cref="Done"/>).</summary>
        /// <param name="options">The run's options, for its settings.</param>
        /// <param name="requestedWarmup">The warm-up asked for (--warmup); the one run can be longer (<see cref="WarmupSteps"/>).</param>
        public BenchReport Report(TrainingOptions options, int requestedWarmup)
        {
            // The steps' time is their rounds', each from its weights going out to its update applied, as the parameter server
            // times them: they run back to back within an epoch, so the rest of the span (from the warm-up's last step to the
            // last measured one, on the coordinator's clock) is the epoch ends'.
            double PerStep(double total) => 1000 * total / _measured;
            double PerEpochEnd(double total) => _epochEnds == 0 ? 0 : total / _epochEnds;
            return new BenchReport(Blas.Description, options.Training.Workers, options.Training.BatchSizePerWorker, _measured,
                _samples / _round, PerStep(_round), PerStep(_compute), PerStep(_update), PerStep(_messaging), PerStep(_waiting),
                (_endAllocated - _startAllocated - _epochEndAllocated) / (double)_measured, _workerAllocated / (double)_measured, _serverAllocated / (double)_measured,
                _gen0, _gen1, _gen2, PeakResidentBytes(),
                options.Training.Mode.ToString(), options.Training.AccumulationSteps, options.Training.Workers * options.Training.MinibatchPerWorker,
                CompressionOf(options), options.Cluster.ParameterServerShards, warmup, options.Metrics.Port,
                MeanSamplesPerStep: _samples / (double)_measured, RequestedWarmupSteps: requestedWarmup, EpochEnds: _epochEnds,
                EpochEndMilliseconds: 1000 * PerEpochEnd(Math.Max(0, _end - _start - _round)), EpochEndAllocatedBytes: PerEpochEnd(_epochEndAllocated),
                EpochEndServerAllocatedBytes: PerEpochEnd(_epochEndServerAllocated));
        }

        private static long PeakResidentBytes()
        {
            // VmHWM in /proc/self/status: the peak resident set size, in kB.
            const string key = "VmHWM:";
            if (!File.Exists("/proc/self/status")) return Environment.WorkingSet;
            var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith(key, StringComparison.Ordinal));
            return line is null ? Environment.WorkingSet : long.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        }
    }
}
