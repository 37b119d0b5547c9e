using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Cluster.Security;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Models;

namespace DistTrain.Tests;

/// <summary>
/// The C# API: <see cref="Trainer"/> on in-memory arrays gives the engine's own result, reports progress, cancels, and
/// runs cluster mode; <see cref="TrainedModel"/> scores as the workers do and survives a save and load;
/// <see cref="ModelBuilder"/> builds what a config file describes.
/// </summary>
public class TrainerApiTests
{
    /// <summary>Reports synchronously, on the reporting thread (<see cref="Progress{T}"/> would post them later).</summary>
    private sealed class Recorder : IProgress<TrainingProgress>
    {
        public ConcurrentQueue<TrainingProgress> Reports { get; } = new();
        public Action<TrainingProgress>? OnReport { get; init; }
        public void Report(TrainingProgress value)
        {
            Reports.Enqueue(value);
            OnReport?.Invoke(value);
        }
    }

    /// <summary>The test subset as plain arrays, as a user's program would hold them (pixels / 255, labels as ints).</summary>
    private static TrainingData InMemory(DataOptions? options = null) => TrainingData.FromArrays(
        TestData.RawTrain.Features, TestData.RawTrain.Labels.Select(l => (int)l).ToArray(),
        TestData.RawTest.Features, TestData.RawTest.Labels.Select(l => (int)l).ToArray(),
        featureCount: 784, classCount: 10, options);

    private static TrainingOptions MlpOptions(int epochs = 2) =>
        TestData.Options(new ModelBuilder(784).Dense(32).ReLU().Dense(10).Build(), workers: 2, batch: 32, epochs: epochs);

    [Fact]
    public async Task Training_in_memory_arrays_gives_the_engines_weights_and_reports_every_step_and_epoch()
    {
        var options = MlpOptions();
        var recorder = new Recorder();

        var outcome = await new Trainer(options).TrainAsync(InMemory(), recorder).WithTestTimeout();

        // The same data through the loader and the engine directly: bit-identical weights and history.
        var loaded = TestData.Normalized();
        var direct = await SingleNodeTrainer.RunAsync(options, loaded.Train, loaded.Test).WithTestTimeout();
        Assert.Equal(direct.FinalWeights.Values, outcome.Result.FinalWeights.Values);
        Assert.Equal(direct.Epochs.Select(e => e.TestAccuracy), outcome.History.Select(e => e.TestAccuracy));

        var reports = recorder.Reports.ToArray();
        var stepsPerEpoch = (int)Math.Ceiling(1000 / 64.0); // 1,000 samples, 2 workers x 32
        Assert.Equal(2 * stepsPerEpoch, reports.Count(r => r.Kind == TrainingProgressKind.Step));
        Assert.Equal([1, 2], reports.Where(r => r.Kind == TrainingProgressKind.EpochStarted).Select(r => r.Epoch));
        var completed = reports.Where(r => r.Kind == TrainingProgressKind.EpochCompleted).Select(r => r.Summary!).ToArray();
        Assert.Equal(outcome.History, completed);
        var last = reports.Last(r => r.Kind == TrainingProgressKind.Step);
        Assert.Equal((stepsPerEpoch, stepsPerEpoch, 2L * stepsPerEpoch, 1.0), (last.Step, last.StepsInEpoch, last.Version, last.FractionDone));
        Assert.All(reports.Where(r => r.Kind == TrainingProgressKind.Step), r => Assert.True(double.IsFinite(r.Loss) && r.LearningRate == 0.05));
        Assert.True(outcome.History[^1].TestAccuracy > 0.7, $"test accuracy {outcome.History[^1].TestAccuracy}");
    }

    [Fact]
    public async Task A_trained_model_scores_as_the_workers_did_and_survives_save_and_load()
    {
        string[] names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];
        var data = InMemory(new DataOptions { Normalization = NormalizationKind.PerFeature, ClassNames = [.. names] });
        var outcome = await new Trainer(MlpOptions(epochs: 1)).TrainAsync(data).WithTestTimeout();
        var model = outcome.Model;

        // The test accuracy the workers measured, recomputed from the raw pixels through the model's own standardization.
        Assert.Equal(outcome.History[^1].TestAccuracy, model.Accuracy(TestData.RawTest, standardized: false), 10);
        Assert.Equal(outcome.History[^1].TestAccuracy, model.Accuracy(data.Test, standardized: true), 10);

        var path = Path.Combine(Directory.CreateTempSubdirectory("disttrain-api-").FullName, "model.safetensors");
        try
        {
            model.Save(path);
            var loaded = TrainedModel.Load(path);
            var sample = TestData.RawTest.Features.AsSpan(0, 20 * 784);
            Assert.Equal(model.Logits(sample), loaded.Logits(sample));
            Assert.Equal(NormalizationKind.PerFeature, loaded.Normalizer.Kind);
            Assert.Equal(ModelMetadata.GivenScale, loaded.Metadata[ModelMetadata.InputScale]);
            Assert.Equal("7", loaded.Metadata[ModelMetadata.Seed]);
            var probabilities = loaded.Probabilities(sample);
            for (var i = 0; i < 20; i++) Assert.Equal(1.0, probabilities.AsSpan(i * 10, 10).ToArray().Sum(), 5);

            // The one TrainedModel also serves predict and evaluate: the class names given as Data:ClassNames, and Score
            // (what those commands call) brings inputs to the training scale: arrays are taken as given (divisor 1), so
            // values read as x / 255 are multiplied back by 255 before the saved standardization.
            Assert.Equal(names, loaded.ClassNames!);
            Assert.Equal((1f, false), (loaded.Data.InputDivisor, loaded.Data.LabelsAreNames));
            Assert.Equal(probabilities, loaded.Score(sample, dividedBy: 1));
            var divided = sample.ToArray().Select(v => v / 255f).ToArray();
            var rescaled = loaded.Score(divided, dividedBy: 255);
            for (var i = 0; i < rescaled.Length; i++) Assert.Equal(probabilities[i], rescaled[i], 4);
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
    }

    [Fact]
    public async Task Cancelling_stops_the_run_with_the_weights_where_it_stopped()
    {
        const int epochs = 50, stepsPerEpoch = 1000 / (2 * 32) + 1;
        using var cancellation = new CancellationTokenSource();
        var recorder = new Recorder { OnReport = r => { if (r.Kind == TrainingProgressKind.Step && r.Step == 3) cancellation.Cancel(); } };

        var cancelled = await Assert.ThrowsAsync<TrainingCancelledException>(() =>
            new Trainer(MlpOptions(epochs)).TrainAsync(InMemory(), recorder, cancellation.Token).WithTestTimeout());

        // The parameter server answers with its weights between two steps, while the run winds down: at or after the
        // cancelling step, long before the 50 epochs' end. The actors are gone once the task has failed: no report follows.
        Assert.NotNull(cancelled.Weights);
        Assert.InRange(cancelled.Weights.Version, 3, epochs * stepsPerEpoch / 2);
        var reported = recorder.Reports.Count;
        await Task.Delay(500);
        Assert.Equal(reported, recorder.Reports.Count);
        Assert.True(recorder.Reports.Count(r => r.Kind == TrainingProgressKind.EpochCompleted) < epochs / 2);
    }

    /// <summary>
    /// Runs <paramref name="body"/> with the options of a parameter-server node and a worker node of one job on loopback,
    /// 1 worker, over mutual TLS. The parameter server loads its secret and certificate files from the options, as
    /// 'disttrain node' does; the worker is given them in code (the third argument).
    /// </summary>
    private static async Task WithClusterNodesAsync(int epochs, Func<TrainingOptions, TrainingOptions, ClusterSecurity, Task> body)
    {
        static int FreePort() => TestPorts.Free();
        var directory = TestFolders.Create("disttrain-trainer-");
        try
        {
            var authority = new TestCertificates(directory, "cluster-ca");
            var (remotePort, dataPort) = (FreePort(), FreePort());
            TrainingOptions Node(int port, ClusterOptions security)
            {
                var options = MlpOptions(epochs);
                options.Training.Workers = 1;
                security.Hostname = security.PublicHostname = "127.0.0.1";
                security.Port = port;
                security.DataPort = dataPort;
                security.MinWorkers = 1;
                security.SeedNodes = [$"akka.ssl.tcp://disttrain@127.0.0.1:{remotePort}"];
                options.Cluster = security;
                return options;
            }
            using var workerSecurity = new ClusterSecurity(
                new JobIdentity("test-job", System.Text.Encoding.UTF8.GetBytes(File.ReadAllText(authority.SecretFile).Trim())),
                authority.Load("worker"));
            await body(Node(remotePort, authority.Options("ps")), Node(0, new ClusterOptions { JobName = "test-job", Tls = true }), workerSecurity);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public Task Cluster_mode_from_the_same_API_trains_with_a_worker_node_over_mutual_TLS_and_returns_the_model() =>
        WithClusterNodesAsync(epochs: 1, async (parameterServer, worker, workerSecurity) =>
        {
            var recorder = new Recorder();

            var serving = new Trainer(parameterServer).RunParameterServerAsync(InMemory(), recorder);
            var working = new Trainer(worker) { Security = workerSecurity }.RunWorkerAsync(InMemory());
            var outcome = await serving.WithTestTimeout(180);
            var finished = await working.WithTestTimeout(60);

            AssertClusterOutcome(outcome, finished, recorder);
        });

    /// <summary>
    /// Stopping the parameter-server node (its cancellation token, as Ctrl-C cancels it in 'disttrain node') after the last
    /// epoch's last step used to cut off that epoch's evaluation: the job ended as a stop, without its model or score. The
    /// coordinator now lets the evaluation finish, as in single-node mode (<see cref="StopAfterLastStepTests"/>), and the
    /// node returns the finished job; the worker is told it succeeded.
    /// </summary>
    [Fact]
    public Task In_cluster_mode_a_stop_after_the_last_training_step_lets_the_final_evaluation_finish() =>
        WithClusterNodesAsync(epochs: 2, async (parameterServer, worker, workerSecurity) =>
        {
            var single = MlpOptions(epochs: 2);
            single.Training.Workers = 1;
            var uninterrupted = await new Trainer(single).TrainAsync(InMemory()).WithTestTimeout();
            using var stop = new CancellationTokenSource();
            var recorder = new Recorder
            {
                OnReport = r => { if (r is { Kind: TrainingProgressKind.Step, Epoch: 2 } && r.Step == r.StepsInEpoch) stop.Cancel(); },
            };

            var serving = new Trainer(parameterServer).RunParameterServerAsync(InMemory(), recorder, stop.Token);
            var working = new Trainer(worker) { Security = workerSecurity }.RunWorkerAsync(InMemory());
            var outcome = await serving.WithTestTimeout(180);
            var finished = await working.WithTestTimeout(60);

            Assert.True(stop.IsCancellationRequested);
            Assert.True(finished.Succeeded, finished.Summary);
            Assert.Equal([1, 2], outcome.History.Select(e => e.Epoch));
            Assert.Equal(uninterrupted.History[^1].TestAccuracy, outcome.History[^1].TestAccuracy);
            Assert.Equal(uninterrupted.Result.FinalWeights.Values, outcome.Result.FinalWeights.Values);
        });

    /// <summary>A stop while an epoch is left to train still stops the node: the job is not over (a standby or a resume
    /// goes on with it), so the call fails with <see cref="TrainingCancelledException"/>, which carries the weights at the
    /// stop (it carried none: a cluster's stopped parameter server kept only its checkpoints).</summary>
    [Fact]
    public Task In_cluster_mode_a_stop_before_the_last_epoch_still_stops_the_node() =>
        WithClusterNodesAsync(epochs: 2, async (parameterServer, worker, workerSecurity) =>
        {
            using var stop = new CancellationTokenSource();
            using var stopWorker = new CancellationTokenSource();
            var recorder = new Recorder
            {
                OnReport = r => { if (r is { Kind: TrainingProgressKind.Step, Epoch: 1 } && r.Step == r.StepsInEpoch) stop.Cancel(); },
            };

            var serving = new Trainer(parameterServer).RunParameterServerAsync(InMemory(), recorder, stop.Token);
            var working = new Trainer(worker) { Security = workerSecurity }.RunWorkerAsync(InMemory(), stopWorker.Token);
            // With the weights at the stop, epoch 1's last, for the node to keep (as train keeps a stopped run's).
            var cancelled = await Assert.ThrowsAsync<TrainingCancelledException>(() => serving.WithTestTimeout(180));
            Assert.Equal(recorder.Reports.First(r => r.Kind == TrainingProgressKind.EpochStarted).StepsInEpoch, cancelled.Weights!.Version);
            Assert.DoesNotContain(recorder.Reports, r => r is { Kind: TrainingProgressKind.EpochCompleted, Epoch: 2 });
            // Nothing can continue the job (no standby, no Checkpoint:Directory): the worker is told it ended, cancelled.
            var finished = await working.WithTestTimeout(60);
            Assert.True(finished is { Cancelled: true, Succeeded: false }, $"the worker was told {finished}");
        });

    [Fact]
    public async Task Cluster_mode_without_a_job_secret_is_refused_before_anything_starts()
    {
        var options = MlpOptions(epochs: 1);
        options.Cluster = new ClusterOptions { Port = 0, SeedNodes = ["akka.ssl.tcp://disttrain@127.0.0.1:1"] };

        var worker = await Assert.ThrowsAsync<ConfigurationException>(() => new Trainer(options).RunWorkerAsync(InMemory()));
        var server = await Assert.ThrowsAsync<ConfigurationException>(() => new Trainer(options).RunParameterServerAsync(InMemory()));

        Assert.Contains("Cluster:SecretFile", worker.Message);
        Assert.Contains("Cluster:SecretFile", server.Message);
    }

    /// <summary>A worker whose first seed is its own address is refused before it binds (it used to start a cluster of its own).</summary>
    [Fact]
    public async Task A_worker_whose_first_seed_is_itself_is_refused_before_it_binds()
    {
        var port = TestPorts.Free();
        var options = MlpOptions(epochs: 1);
        options.Cluster = new ClusterOptions
        {
            Hostname = "127.0.0.1", Port = port, Tls = false, Secret = "0123456789abcdef0123", SeedNodes = [$"akka.tcp://disttrain@127.0.0.1:{port}"],
        };

        var refused = await Assert.ThrowsAsync<ConfigurationException>(() => new Trainer(options).RunWorkerAsync(InMemory()).WithTestTimeout(60));

        Assert.StartsWith($"Cluster:SeedNodes:0 = 'akka.tcp://disttrain@127.0.0.1:{port}' is this worker node's own address", Assert.Single(refused.Problems));
        using var free = new TcpListener(IPAddress.Loopback, port);
        free.Start(); // nothing was left bound
    }

    /// <summary>A parameter server given one port for Akka.Remote and the data plane bound the data plane, then failed on
    /// Akka.Remote's bind with nested AggregateExceptions; it is a ConfigurationException naming both keys, before anything
    /// binds (the port stays free).</summary>
    [Fact]
    public async Task A_parameter_server_given_one_port_for_Akka_Remote_and_the_data_plane_is_refused_before_anything_binds()
    {
        var port = TestPorts.Free();
        var options = MlpOptions(epochs: 1);
        options.Cluster = new ClusterOptions
        {
            Hostname = "127.0.0.1", Port = port, DataPort = port, Tls = false, Secret = "0123456789abcdef0123",
            SeedNodes = [$"akka.tcp://disttrain@127.0.0.1:{port}"],
        };

        var refused = await Assert.ThrowsAsync<ConfigurationException>(() => new Trainer(options).RunParameterServerAsync(InMemory()).WithTestTimeout(60));

        Assert.Equal([$"Cluster:Port = {port} and Cluster:DataPort = {port} are the same port, but a parameter-server node listens on each (Akka.Remote " +
            "and the data plane), and two listeners cannot share a port. Give one of them another port (DISTTRAIN_Cluster__Port=... or DISTTRAIN_Cluster__DataPort=...)."],
            refused.Problems);
        using var free = new TcpListener(IPAddress.Loopback, port);
        free.Start(); // nothing was left bound
    }

    [Fact]
    public async Task A_certificate_given_in_code_is_checked_as_the_files_are()
    {
        var directory = TestFolders.Create("disttrain-trainer-");
        try
        {
            var authority = new TestCertificates(directory, "cluster-ca");
            var (certificateFile, keyFile) = authority.Node("expired", DateTimeOffset.UtcNow.AddDays(-30), DateTimeOffset.UtcNow.AddDays(-1));
            var options = MlpOptions(epochs: 1);
            options.Cluster = new ClusterOptions { Port = 0, SeedNodes = ["akka.ssl.tcp://disttrain@127.0.0.1:1"] };
            using var expired = new ClusterSecurity(new JobIdentity("test-job", new byte[32]),
                new ClusterCertificates(System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPemFile(certificateFile, keyFile),
                    authority.Authority));

            var refused = await Assert.ThrowsAsync<ConfigurationException>(() =>
                new Trainer(options) { Security = expired }.RunWorkerAsync(InMemory()));

            Assert.Contains("Trainer.Security", refused.Message);
            Assert.Contains("would be refused by the other nodes", refused.Message);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private static void AssertClusterOutcome(TrainingOutcome outcome, JobFinished finished, Recorder recorder)
    {
        Assert.True(finished.Succeeded, finished.Summary);
        Assert.Single(outcome.History);
        Assert.Equal(outcome.History[0], recorder.Reports.Single(r => r.Kind == TrainingProgressKind.EpochCompleted).Summary);
        Assert.Equal(outcome.History[0].TestAccuracy, outcome.Model.Accuracy(TestData.RawTest, standardized: false), 10);
        Assert.True(outcome.History[0].TestAccuracy > 0.6, $"test accuracy {outcome.History[0].TestAccuracy}");

        // Both nodes have left: the process reports no member in any status, not the dead cluster's membership.
        var members = new List<(int Count, string? Status)>();
        using var listener = new System.Diagnostics.Metrics.MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == "DistTrain" && instrument.Name == "cluster.members") l.EnableMeasurementEvents(instrument);
            },
        };
        listener.SetMeasurementEventCallback<int>((_, value, tags, _) =>
            members.Add((value, tags.ToArray().Single(t => t.Key == "status").Value as string)));
        listener.Start();
        listener.RecordObservableInstruments();
        // Every member status is reported, at 0.
        Assert.DoesNotContain(members, m => m.Item1 > 0);
        Assert.Contains((0, "joining"), members);
    }

    [Fact]
    public void The_builder_gives_the_model_section_of_the_CNN_config()
    {
        var config = TrainingOptionsLoader.Load(Path.Combine(AppContext.BaseDirectory, "configs", "fashion-mnist-cnn.json"),
            new Dictionary<string, string?> { ["Data:Directory"] = TestData.SubsetDirectory });

        var built = new ModelBuilder(channels: 1, height: 28, width: 28)
            .Conv2D(32, kernelSize: 5, padding: 2, bias: false).BatchNorm().ReLU().MaxPool2D(2)
            .Conv2D(64, kernelSize: 5, padding: 2, bias: false).BatchNorm().ReLU().MaxPool2D(2)
            .Flatten().Dense(256).ReLU().Dropout(0.3).Dense(10)
            .Build();

        static string[] Describe(ModelOptions model)
        {
            var sequential = ModelFactory.Build(model);
            return [.. sequential.Layers.Select(l => l.Description), .. sequential.Layout.Segments.Select(s => $"{s.Name} [{string.Join(", ", s.Shape)}]"),
                $"{model.Loss} {model.Initializer.Kind} {sequential.InputShape}"];
        }
        Assert.Equal(Describe(config.Model), Describe(built));
        Assert.Equal("Conv2D(1→32, 5x5, stride 1, padding 2)", Describe(built)[0]);
    }

    [Fact]
    public void Bad_models_options_and_arrays_are_refused_with_the_key_or_sample_named()
    {
        var layer = Assert.Throws<ConfigurationException>(() => new ModelBuilder(784).Dense(0).ReLU().Dense(10).Build());
        Assert.Contains("Model:Layers:0:Units = 0", layer.Message);
        var shape = Assert.Throws<ConfigurationException>(() => new ModelBuilder(1, 4, 4).Conv2D(8, kernelSize: 5).Flatten().Dense(10).Build());
        Assert.Contains("Model:Layers:0 (Conv2D)", shape.Message);

        var options = MlpOptions();
        options.Training.Workers = 0;
        Assert.Contains("Training:Workers = 0", Assert.Throws<ConfigurationException>(() => new Trainer(options)).Message);

        var label = Assert.Throws<DataFormatException>(() => TrainingData.FromArrays(new float[6], [0, 3, 1], new float[2], [0], 2, classCount: 3));
        Assert.Contains("label 3 of sample 1", label.Message);
        var nan = Assert.Throws<DataFormatException>(() => TrainingData.FromArrays([0, 0, 1, float.NaN], [0, 1], new float[2], [0], 2, classCount: 2));
        Assert.Contains("sample 1, feature 1 is NaN", nan.Message);
        var length = Assert.Throws<DataFormatException>(() => TrainingData.FromArrays(new float[5], [0, 1], new float[2], [0], 2, classCount: 2));
        Assert.Contains("5 feature values and 2 labels", length.Message);
    }

    [Fact]
    public async Task A_model_that_does_not_fit_the_data_is_refused_before_training()
    {
        var options = TestData.Options(new ModelBuilder(100).Dense(10).Build(), workers: 1, batch: 32, epochs: 1);
        var error = await Assert.ThrowsAsync<ConfigurationException>(() => new Trainer(options).TrainAsync(InMemory()));
        Assert.Contains("Model:InputSize = 100 does not match the data: its samples have 784 features", error.Message);
    }

    [Fact]
    public void Loading_a_checkpoint_without_DistTrain_metadata_names_the_missing_key()
    {
        var error = Assert.Throws<InvalidDataException>(() => TrainedModel.Load(TestData.GoldenPath("torch_cnn.safetensors")));
        Assert.Contains("has no 'model_config'", error.Message);
        Assert.Throws<FileNotFoundException>(() => TrainedModel.Load("/nonexistent/model.safetensors"));
    }
}
