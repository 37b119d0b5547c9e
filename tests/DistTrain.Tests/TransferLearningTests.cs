using Akka.TestKit.Xunit2;
using DistTrain.Cluster.Actors;
using DistTrain.Cluster.Hosting;
using DistTrain.Cluster.Protocol;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Layers;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Tests;

/// <summary>Class filters, the validation split, pretrained weights, frozen tensors, BatchNorm statistics across replicas, early stopping.</summary>
public class TransferLearningTests() : TestKit(TestTimeouts.TestKitConfig)
{
    /// <summary><see cref="TestData.SmallCnn"/> with He-normal weights.</summary>
    private static ModelOptions SmallCnn(int classes)
    {
        var model = TestData.SmallCnn(classes);
        model.Initializer = new() { Kind = Core.Initialization.InitializerKind.HeNormal };
        return model;
    }

    /// <summary>
    /// A pretrained head kept for fine-tuning (no --replace-head) must have the data's classes: an image folder with one class
    /// folder renamed (Trouser to Pants, which shifts the sorted classes after it), or IDX data whose labels have no names, is
    /// refused naming the classes and --replace-head; the same classes, or a replaced head, pass.
    /// </summary>
    [Fact]
    public void A_kept_pretrained_head_whose_classes_are_not_the_datas_is_refused_naming_them_and_replace_head()
    {
        string[] trained = ["Ankle boot", "Bag", "Coat", "Dress", "Pullover", "Sandal", "Shirt", "Sneaker", "T-shirt_top", "Trouser"];
        string[] renamed = ["Ankle boot", "Bag", "Coat", "Dress", "Pants", "Pullover", "Sandal", "Shirt", "Sneaker", "T-shirt_top"];
        var directory = Directory.CreateTempSubdirectory("disttrain-head-").FullName;
        try
        {
            var model = TestData.Mlp(16, 10);
            var path = Path.Combine(directory, "model.safetensors");
            var data = TestData.Normalized();
            var folderData = new DataMetadata(DataFormat.ImageFolder, 255f, trained, LabelsAreNames: true, FeatureNames: null, Csv: null, ResizeImages: false, Classes: []);
            SafeTensors.Write(path, ModelFactory.InitialWeights(ModelFactory.Build(model), model.Initializer, 1),
                ModelMetadata.Create(model, data.Normalizer, folderData, version: 10, epochs: 1, testAccuracy: 0.8, seed: 1));
            model.Pretrained = path;
            TrainingData Named(string[] names) => data with { Train = data.Train.WithClassNames(names), LabelsAreNames = true };

            var shifted = Assert.Throws<ConfigurationException>(() => ModelFactory.CheckFitsData(model, Named(renamed))).Message;
            Assert.Contains($"Model:Pretrained {path}: its head was trained on other classes than the data's (class 4 is 'Pullover' in the checkpoint and 'Pants' in the data; " +
                "class 5 is 'Sandal' in the checkpoint and 'Pullover' in the data;", shifted);
            Assert.Contains("; and 1 more); only in the checkpoint: 'Trouser'; only in the data: 'Pants'.", shifted);
            Assert.Contains("Give --replace-head 10 (Model:ReplaceHead true, with Model:Layers:2:Units 10) to train a new head for the data's classes", shifted);
            var reordered = Assert.Throws<ConfigurationException>(() => ModelFactory.CheckFitsData(model, Named([.. trained.Reverse()]))).Message;
            Assert.Contains("the same names in another order", reordered);
            // IDX data: labels are numbers, the head's classes names.
            var idx = Assert.Throws<ConfigurationException>(() => ModelFactory.CheckFitsData(model, data)).Message;
            Assert.Contains("its head's classes are names ('Ankle boot', 'Bag',", idx);
            Assert.Contains("but the data's labels are class numbers without names, so they cannot be matched to them. Give --replace-head 10", idx);

            ModelFactory.CheckFitsData(model, Named(trained)); // the same classes
            model.ReplaceHead = true;
            ModelFactory.CheckFitsData(model, Named(renamed)); // a new head

            // The other way round: a head of numbered classes (IDX) and data of named ones.
            model.ReplaceHead = false;
            SafeTensors.Write(path, ModelFactory.InitialWeights(ModelFactory.Build(model), model.Initializer, 1),
                ModelMetadata.Create(model, data.Normalizer, DataMetadata.GivenValues() with { Format = DataFormat.Idx, InputDivisor = 255f }, version: 10, epochs: 1, testAccuracy: 0.8, seed: 1));
            Assert.Contains("its head's classes are numbers without names (from its Idx training data), but the data's classes are names ('Ankle boot',",
                Assert.Throws<ConfigurationException>(() => ModelFactory.CheckFitsData(model, Named(trained))).Message);
            ModelFactory.CheckFitsData(model, data); // numbered classes both
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>
    /// With numbered classes on both sides (IDX labels), a kept head must have been trained on the data's classes: a
    /// checkpoint of Data:Classes [0..4] (its data_classes) fine-tuned on Data:Classes [5..9], on them in another order, or on
    /// all 10 classes is refused naming both lists and --replace-head; the same classes, a replaced head, or a checkpoint
    /// without data_classes (trained on all its classes) pass.
    /// </summary>
    [Fact]
    public void A_kept_pretrained_head_of_other_numbered_classes_is_refused_naming_both_lists_and_replace_head()
    {
        var directory = Directory.CreateTempSubdirectory("disttrain-head-").FullName;
        try
        {
            var model = TestData.Mlp(16, 5);
            var path = Path.Combine(directory, "model.safetensors");
            TrainingData Kept(params int[] classes) => TrainingData.Load(new DataOptions { Directory = TestData.SubsetDirectory, Classes = [.. classes] });
            var firstFive = Kept(0, 1, 2, 3, 4);
            void Write(IReadOnlyList<int> classes) => SafeTensors.Write(path, ModelFactory.InitialWeights(ModelFactory.Build(model), model.Initializer, 1),
                ModelMetadata.Create(model, firstFive.Normalizer, new DataMetadata(DataFormat.Idx, 255f, null, LabelsAreNames: false, FeatureNames: null,
                    Csv: null, ResizeImages: false, Classes: classes), version: 10, epochs: 1, testAccuracy: 0.8, seed: 1));
            Write([0, 1, 2, 3, 4]);
            model.Pretrained = path;

            var lastFive = Kept(5, 6, 7, 8, 9);
            Assert.Equal(new[] { 5, 6, 7, 8, 9 }, lastFive.Classes);
            Assert.Equal($"Model:Pretrained {path}: its head was trained on other classes than the data's: the checkpoint's outputs are classes 0, 1, 2, 3, 4 " +
                "of its Idx training data (its data_classes, from Data:Classes), the data's are classes 5, 6, 7, 8, 9 (Data:Classes), so output 0 is class 0 " +
                "in the checkpoint and class 5 in the data; output 1 is class 1 in the checkpoint and class 6 in the data; output 2 is class 2 in the " +
                "checkpoint and class 7 in the data; and 2 more. Kept as it is, the head's outputs would be trained as other classes. Give --replace-head 5 " +
                "(Model:ReplaceHead true, with Model:Layers:2:Units 5) to train a new head for the data's classes, or fine-tune on data with the " +
                "checkpoint's classes (Data:Classes [0, 1, 2, 3, 4]).",
                Assert.Single(Assert.Throws<ConfigurationException>(() => ModelFactory.CheckFitsData(model, lastFive)).Problems));
            Assert.Contains("so output 0 is class 0 in the checkpoint and class 4 in the data; output 1 is class 1 in the checkpoint and class 3 in the data; " +
                "output 3 is class 3 in the checkpoint and class 1 in the data; and 1 more.",
                Assert.Throws<ConfigurationException>(() => ModelFactory.CheckFitsData(model, Kept(4, 3, 2, 1, 0))).Message);
            // All 10 classes (no Data:Classes) for a 10-unit head: the checkpoint's 5 outputs are not the data's.
            var all = TestData.Normalized();
            var wide = TestData.Mlp(16, 10);
            wide.Pretrained = path;
            Assert.Contains("the data's are classes 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 (all of its classes), so output 5 is not there in the checkpoint and class 5 " +
                "in the data;", Assert.Throws<ConfigurationException>(() => ModelFactory.CheckFitsData(wide, all)).Message);

            ModelFactory.CheckFitsData(model, firstFive); // the same classes
            model.ReplaceHead = true;
            ModelFactory.CheckFitsData(model, lastFive); // a new head
            model.ReplaceHead = false;
            Write([]); // no data_classes (a run without Data:Classes, or a file of another tool): other class numbers are not compared
            ModelFactory.CheckFitsData(model, lastFive);
            ModelFactory.CheckFitsData(model, firstFive); // 0 to 4 in order: all of the checkpoint's classes
            // ... but the same classes 0 to 4 in another order are its label space reordered.
            Assert.Contains("the checkpoint's outputs are classes 0, 1, 2, 3, 4 of its Idx training data (all of them, in order: it has no data_classes), " +
                "the data's are classes 0, 1, 2, 4, 3 (Data:Classes), so output 3 is class 3 in the checkpoint and class 4 in the data; output 4 is class 4 " +
                "in the checkpoint and class 3 in the data.", Assert.Throws<ConfigurationException>(() => ModelFactory.CheckFitsData(model, Kept(0, 1, 2, 4, 3))).Message);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>
    /// Numbered classes (IDX labels) with Data:ClassNames on both sides: a checkpoint trained on all 10 Fashion-MNIST classes
    /// (no data_classes) kept for data whose Data:ClassNames swap two names, or rename one, is refused naming them; the same
    /// names pass. Before, names were compared only for classes written as names, so these trained the Bag output as
    /// Ankle boot without a word.
    /// </summary>
    [Fact]
    public void A_kept_pretrained_head_of_numbered_classes_whose_names_differ_from_the_datas_is_refused()
    {
        var directory = Directory.CreateTempSubdirectory("disttrain-head-").FullName;
        try
        {
            string[] names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];
            var model = TestData.Mlp(16, 10);
            var path = Path.Combine(directory, "model.safetensors");
            TrainingData Named(params string[] classNames) => TrainingData.Load(new DataOptions { Directory = TestData.SubsetDirectory, ClassNames = [.. classNames] });
            var same = Named(names);
            SafeTensors.Write(path, ModelFactory.InitialWeights(ModelFactory.Build(model), model.Initializer, 1),
                ModelMetadata.Create(model, same.Normalizer, new DataMetadata(DataFormat.Idx, 255f, names, LabelsAreNames: false, FeatureNames: null,
                    Csv: null, ResizeImages: false, Classes: []), version: 10, epochs: 1, testAccuracy: 0.8, seed: 1));
            model.Pretrained = path;
            ModelFactory.CheckFitsData(model, same);
            var swapped = Assert.Throws<ConfigurationException>(() => ModelFactory.CheckFitsData(model, Named([.. names[..8], "Ankle boot", "Bag"]))).Message;
            Assert.Contains("(class 8 is 'Bag' in the checkpoint and 'Ankle boot' in the data; class 9 is 'Ankle boot' in the checkpoint and 'Bag' in the data); " +
                "the same names in another order.", swapped);
            Assert.Contains("if they are the same classes and only Data:ClassNames differs, give the checkpoint's names.", swapped);
            Assert.Contains("class 9 is 'Ankle boot' in the checkpoint and 'Boot' in the data); only in the checkpoint: 'Ankle boot'; only in the data: 'Boot'.",
                Assert.Throws<ConfigurationException>(() => ModelFactory.CheckFitsData(model, Named([.. names[..9], "Boot"]))).Message);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void Frozen_tensors_are_left_out_of_the_gradients_and_optimizer_state_of_the_memory_estimate()
    {
        // Not among TrainingMemoryTests, which measure the process's allocations: building these models there disturbed them.
        // Counted from the shapes as the built model freezes them (a BatchNorm with one frozen tensor is frozen whole).
        foreach (var (model, freeze) in new[] { (TestData.Mlp(2048, 10), new List<string> { "0" }), (TrainingMemoryTests.DropoutAndNorms(), ["0.weight", "9.bias"]), (TrainingMemoryTests.DropoutAndNorms(), ["4.*", "5"]) })
        {
            model.Freeze = freeze;
            var layout = ModelFactory.Build(model).Layout;
            Assert.Equal(layout.TotalLength - layout.WorkerReportLength, ModelFactory.FrozenParameterCount(model));
        }

        // 784-2048-10 with its first layer frozen, as finetune --freeze 0 runs it: of the 1,628,170 parameters only the
        // head's 20,490 get an averaged gradient and momentum at the parameter server and a gradient in the workers' two
        // report messages, so 6 copies of the 25 shrink to the trainable share.
        var options = TestData.Options(TestData.Mlp(2048, 10), workers: 2, batch: 100, epochs: 1);
        var whole = TrainingMemory.SingleNode(options);
        options.Model.Freeze = ["0"];
        var frozen = TrainingMemory.SingleNode(options);
        var share = 20_490 / 1_628_170.0;
        Assert.Equal(2 + 9 + 2 * 7, whole.Copies);
        Assert.Equal(2 + 9 + 2 * 7 - 6 * (1 - share), frozen.Copies, precision: 9);
        Assert.Equal(whole.Parameters, frozen.Parameters);
        Assert.Equal(whole.ActivationBytes, frozen.ActivationBytes);
        Assert.True(frozen.TotalBytes < whole.TotalBytes - 5L * 1_607_680 * sizeof(float), $"{frozen.TotalBytes:N0} of {whole.TotalBytes:N0}");
    }

    [Fact]
    public void Keeping_classes_relabels_them_in_the_listed_order()
    {
        var train = TestData.RawTrain;
        var kept = train.KeepClasses([7, 2]);
        Assert.Equal(2, kept.ClassCount);
        Assert.Equal(train.Labels.Count(l => l is 7 or 2), kept.Count);
        var firstSeven = Array.FindIndex(train.Labels, l => l == 7);
        var keptIndex = train.Labels.Take(firstSeven).Count(l => l is 7 or 2);
        Assert.Equal(0, kept.Labels[keptIndex]);
        Assert.Equal(train.Sample(firstSeven).ToArray(), kept.Sample(keptIndex).ToArray());
        Assert.Throws<ArgumentException>(() => train.KeepClasses([3, 3]));
    }

    [Fact]
    public void The_validation_split_is_seeded_disjoint_and_normalized_with_training_statistics()
    {
        var options = new DataOptions { Directory = TestData.SubsetDirectory, ValidationFraction = 0.2, Normalization = NormalizationKind.None };
        var a = TrainingData.Load(options, seed: 3);
        var b = TrainingData.Load(options, seed: 3);
        var c = TrainingData.Load(options, seed: 4);
        Assert.Equal(200, a.Validation!.Count);
        Assert.Equal(800, a.Train.Count);
        Assert.Equal(a.Validation.Features, b.Validation!.Features);
        Assert.NotEqual(a.Validation.Features, c.Validation!.Features);
        var all = TestData.RawTrain;
        var samples = Enumerable.Range(0, all.Count).Select(i => Convert.ToBase64String(System.Runtime.InteropServices.MemoryMarshal.AsBytes(all.Sample(i)))).ToList();
        var trainSet = Enumerable.Range(0, a.Train.Count).Select(i => Convert.ToBase64String(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.Train.Sample(i)))).ToHashSet();
        Assert.All(Enumerable.Range(0, a.Validation.Count), i =>
            Assert.DoesNotContain(Convert.ToBase64String(System.Runtime.InteropServices.MemoryMarshal.AsBytes(a.Validation.Sample(i))), trainSet));
        Assert.Equal(samples.Count, trainSet.Count + a.Validation.Count);
    }

    [Fact]
    public void A_checkpoint_that_does_not_fit_names_every_tensor_that_differs()
    {
        var source = ModelFactory.Build(SmallCnn(10));
        var path = Path.Combine(Path.GetTempPath(), $"disttrain-pretrained-{Guid.NewGuid():N}.safetensors");
        SafeTensors.Write(path, ModelFactory.InitialWeights(source, new(), 1));
        try
        {
            var other = SmallCnn(5);
            other.Layers[0].Channels = 6;
            var target = ModelFactory.Build(other);
            var error = Assert.Throws<InvalidDataException>(() => PretrainedWeights.Load(path, target, new ParameterVector(target.Layout), replaceHead: false));
            Assert.Contains("'0.weight' is [4, 1, 3, 3] in the checkpoint but [6, 1, 3, 3] in the model", error.Message);
            Assert.Contains("'1.running_mean' is [4] in the checkpoint but [6] in the model", error.Message);
            Assert.Contains("'5.weight'", error.Message);
            Assert.Contains("Model:ReplaceHead", error.Message);
            var fitting = ModelFactory.Build(SmallCnn(5));
            var loaded = PretrainedWeights.Load(path, fitting, new ParameterVector(fitting.Layout), replaceHead: true);
            Assert.DoesNotContain("5.weight", loaded);
            Assert.Contains("1.running_var", loaded);

            // A NaN or infinity in a tensor that would be loaded (a diverged run's weights) is refused, naming it; in the
            // head that a new head replaces, it is not loaded, so it does not matter.
            var weights = ModelFactory.InitialWeights(source, new(), 1);
            weights.Segment("1.weight")[2] = float.PositiveInfinity;
            weights.Segment("1.weight")[3] = float.NaN;
            weights.Segment("5.weight")[0] = float.NaN;
            SafeTensors.Write(path, weights);
            var target10 = ModelFactory.Build(SmallCnn(10));
            var nan = Assert.Throws<InvalidDataException>(() => PretrainedWeights.Load(path, target10, new ParameterVector(target10.Layout), replaceHead: false));
            Assert.StartsWith($"{path}: tensor '1.weight' holds 2 values that are not finite (the first, Infinity, at index 2), so every output would be NaN.", nan.Message);
            weights.Segment("1.weight")[2] = weights.Segment("1.weight")[3] = 1f;
            SafeTensors.Write(path, weights);
            Assert.Contains("'5.weight'", Assert.Throws<InvalidDataException>(() => PretrainedWeights.Load(path, target10, new ParameterVector(target10.Layout), replaceHead: false)).Message);
            Assert.DoesNotContain("5.weight", PretrainedWeights.Load(path, fitting, new ParameterVector(fitting.Layout), replaceHead: true));
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// A training checkpoint gives its weights as pretrained weights (its optimizer state left out); where a model is needed
    /// (predict, evaluate, export) it is refused with a message that says what it is and how to use it.
    /// </summary>
    [Fact]
    public async Task A_training_checkpoint_loads_as_pretrained_weights_and_is_refused_as_a_model_with_the_way_to_use_it()
    {
        var directory = Directory.CreateTempSubdirectory("disttrain-checkpoint-pretrained-").FullName;
        try
        {
            var data = TestData.Normalized();
            var options = TestData.Options(TestData.Mlp(8, 10), workers: 2, batch: 50, epochs: 1); // momentum 0.9: an optimizer state
            options.Checkpoint = new CheckpointOptions { Directory = directory };
            var result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout();
            var checkpoint = Assert.Single(new CheckpointStore(directory, 3).List()); // the end of epoch 1: the final weights
            Assert.Contains(SafeTensors.Read(checkpoint).Keys, name => name.StartsWith(TrainingCheckpoint.OptimizerPrefix, StringComparison.Ordinal));

            var model = ModelFactory.Build(options.Model);
            var weights = new ParameterVector(model.Layout);
            var loaded = PretrainedWeights.Load(checkpoint, model, weights, replaceHead: false);
            Assert.Equal(model.Layout.Segments.Select(s => s.Name), loaded);
            Compare.Identical(result.FinalWeights.Values, weights.Values, "the checkpoint's weights");

            var error = Assert.Throws<InvalidDataException>(() => TrainedModel.Load(checkpoint));
            Assert.StartsWith($"{checkpoint} is a training checkpoint (Checkpoint:Directory): it holds the weights and the optimizer's state but not the network's layers", error.Message);
            Assert.Contains("Model:Pretrained or 'finetune --from'", error.Message);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>
    /// Model:Pretrained takes a run folder as 'finetune --from' does, for its model.safetensors; it was refused with
    /// "no such file." A folder without the model is named as such, with where the setting came from.
    /// </summary>
    [Fact]
    public void Model_Pretrained_takes_a_run_folder_for_its_model_as_finetune_from_does()
    {
        var directory = Directory.CreateTempSubdirectory("disttrain-pretrained-folder-").FullName;
        try
        {
            var modelOptions = TestData.Mlp(8, 10);
            var model = ModelFactory.Build(modelOptions);
            var saved = ModelFactory.InitialWeights(model, modelOptions.Initializer, 5);
            var run = Directory.CreateDirectory(Path.Combine(directory, "20261130-040901")).FullName;
            SafeTensors.Write(Path.Combine(run, RunFiles.Model), saved);
            var json = System.Text.Encoding.UTF8.GetBytes("""
                { "Model": { "InputSize": 784, "Layers": [{ "Type": "Dense", "Units": 8 }, { "Type": "ReLU" }, { "Type": "Dense", "Units": 10 }] } }
                """);
            TrainingOptions Load(string pretrained) =>
                TrainingOptionsLoader.Load("test.json", json, null, checkDataDirectory: false, new Dictionary<string, string?> { ["DISTTRAIN_Model__Pretrained"] = pretrained });

            var options = Load(run);
            Assert.Equal(Path.Combine(run, RunFiles.Model), options.Model.Pretrained);
            var weights = new ParameterVector(model.Layout);
            Assert.Equal(model.Layout.Segments.Select(s => s.Name), PretrainedWeights.Load(options.Model.Pretrained, model, weights, replaceHead: false));
            Compare.Identical(saved.Values, weights.Values, "the run folder's model");
            // Through the API, without the loader, the folder stands for its model too.
            var direct = new ParameterVector(model.Layout);
            PretrainedWeights.Load(run, model, direct, replaceHead: false);
            Compare.Identical(saved.Values, direct.Values, "the run folder's model, loaded directly");

            var empty = Directory.CreateDirectory(Path.Combine(directory, "empty")).FullName;
            var error = Assert.Throws<ConfigurationException>(() => Load(empty));
            Assert.Equal([$"Model:Pretrained = '{empty}' (from environment variable DISTTRAIN_Model__Pretrained) is a folder without model.safetensors. " +
                "Give a run folder that finished, or the model file itself."], error.Problems);
            Assert.Equal($"Model:Pretrained '{empty}' is a folder without model.safetensors. Give a run folder that finished, or the model file itself.",
                Assert.Throws<InvalidDataException>(() => PretrainedWeights.Load(empty, model, direct, replaceHead: false)).Message);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task Fine_tuning_leaves_frozen_tensors_and_their_statistics_bit_identical_and_trains_the_new_head()
    {
        var data = TestData.Normalized();
        var pretrainedModel = ModelFactory.Build(SmallCnn(10));
        var pretrained = ModelFactory.InitialWeights(pretrainedModel, SmallCnn(10).Initializer, 11);
        pretrained.Segment("1.running_mean").Fill(0.25f);
        pretrained.Segment("1.running_var").Fill(2f);
        var path = Path.Combine(Path.GetTempPath(), $"disttrain-finetune-{Guid.NewGuid():N}.safetensors");
        SafeTensors.Write(path, pretrained);
        try
        {
            var model = SmallCnn(10);
            model.Pretrained = path;
            model.ReplaceHead = true;
            model.Freeze = ["0", "1.*"];
            var options = TestData.Options(model, workers: 2, batch: 32, epochs: 1);
            var layout = ModelFactory.Build(model).Layout;
            Assert.Equal(layout["5.weight"].Length + layout["5.bias"].Length, layout.WorkerReportLength); // frozen tensors travel no gradient
            var result = await SingleNodeTrainer.RunAsync(options, data.Train, data.Test).WithTestTimeout();
            foreach (var name in new[] { "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var" })
                Assert.Equal(pretrained.Segment(name).ToArray(), result.FinalWeights.Segment(name).ToArray());
            Assert.True(result.FinalEpoch.TestAccuracy > 0.3, $"the head trained on frozen features reaches {result.FinalEpoch.TestAccuracy:P1}");
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// A fine-tuning run fits the input standardization on its own data (which beat keeping the pretrained statistics on
    /// the README's transfer example) and says so, with the pretrained model's statistics; it used to say nothing.
    /// </summary>
    [Fact]
    public void Fine_tuning_fits_the_standardization_on_its_data_and_names_the_pretrained_models_statistics()
    {
        var options = TestData.Options(TestData.Mlp(8, 10), workers: 1, batch: 50, epochs: 1);
        var fitted = TrainingData.Load(options);
        Assert.Equal("", fitted.NormalizationNote);
        var directory = Directory.CreateTempSubdirectory("disttrain-pretrained-").FullName;
        try
        {
            var path = Path.Combine(directory, "model.safetensors");
            var statistics = Normalizer.FromStatistics(NormalizationKind.Global, [0.3f], [0.4f]);
            var weights = ModelFactory.InitialWeights(ModelFactory.Build(options.Model), options.Model.Initializer, seed: 1);
            new TrainedModel(options.Model, weights, statistics, ModelMetadata.Create(options.Model, statistics, DataMetadata.Of(fitted, options.Data), 1, 1, null, 1)).Save(path);
            TrainingData FineTuning(string pretrained)
            {
                var tuning = TestData.Options(TestData.Mlp(8, 10), workers: 1, batch: 50, epochs: 1);
                tuning.Model.Pretrained = pretrained;
                return TrainingData.Load(tuning);
            }

            var tuned = FineTuning(path);
            Assert.Equal(fitted.Normalizer.Mean, tuned.Normalizer.Mean);
            Assert.Equal(fitted.Normalizer.Std, tuned.Normalizer.Std);
            var ours = string.Create(System.Globalization.CultureInfo.InvariantCulture, $"Global, mean {fitted.Normalizer.Mean[0]:G4}, std {fitted.Normalizer.Std[0]:G4}");
            Assert.Equal($"input standardization fitted on this data ({ours}); model.safetensors was trained on inputs standardized with its own (Global, mean 0.3, std 0.4)",
                tuned.NormalizationNote);
            Assert.Equal($"input standardization fitted on this data ({ours}); torch_cnn.safetensors records none (a PyTorch export or a training checkpoint)",
                FineTuning(TestData.GoldenPath("torch_cnn.safetensors")).NormalizationNote);
            // Fine-tuned on the data it was trained on: the same statistics, said so instead of "its own" beside the same figures.
            var same = Path.Combine(directory, "same.safetensors");
            new TrainedModel(options.Model, weights, fitted.Normalizer, ModelMetadata.Create(options.Model, fitted.Normalizer, DataMetadata.Of(fitted, options.Data), 1, 1, null, 1)).Save(same);
            Assert.Equal($"input standardization fitted on this data ({ours}), the same as same.safetensors was trained with", FineTuning(same).NormalizationNote);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void Freezing_part_of_a_BatchNorm_freezes_the_layer_and_unmatched_freeze_entries_are_errors()
    {
        var partial = SmallCnn(10);
        partial.Freeze = ["1.bias"];
        var model = ModelFactory.Build(partial);
        Assert.All(model.Layers[1].Parameters, p => Assert.True(p.Frozen, $"1.{p.Name} should be frozen with 1.bias"));
        Assert.False(model.Layers[0].Parameters[0].Frozen);

        var typo = SmallCnn(10);
        typo.Freeze = ["0.weights", "5"];
        var error = Assert.Throws<ArgumentException>(() => ModelFactory.Build(typo));
        Assert.Contains("Model:Freeze:0 = '0.weights' matches no tensor", error.Message);
        Assert.DoesNotContain("'0.weights' matches no tensor (", error.Message);
        Assert.DoesNotContain("Model:Freeze:1", error.Message);
        // A layer index of a layer without parameters, or past the last layer, says which.
        var noParameters = SmallCnn(10);
        noParameters.Freeze = ["2", "3.*", "9"];
        var layers = Assert.Throws<ArgumentException>(() => ModelFactory.Build(noParameters)).Message;
        Assert.Contains("Model:Freeze:0 = '2' matches no tensor (layer 2 is a ReLU, which has no parameters); " +
            "Model:Freeze:1 = '3.*' matches no tensor (layer 3 is a MaxPool2D, which has no parameters); " +
            "Model:Freeze:2 = '9' matches no tensor (the model's layers are 0 to 5)", layers);
        var everything = SmallCnn(10);
        everything.Freeze = ["*"];
        Assert.Contains("nothing would train", Assert.Throws<ArgumentException>(() => ModelFactory.Build(everything)).Message);

        // A new head that is frozen would keep its random weights: refused, naming its tensors. Frozen without a new head, it is fine.
        var frozenHead = SmallCnn(10);
        frozenHead.Freeze = ["0", "5"];
        frozenHead.ReplaceHead = true;
        Assert.Contains("Model:Freeze freezes 5.weight, 5.bias, the new head that Model:ReplaceHead (finetune --replace-head) initializes afresh, so it would never learn",
            Assert.Throws<ArgumentException>(() => ModelFactory.Build(frozenHead)).Message);
        frozenHead.ReplaceHead = false;
        Assert.True(ModelFactory.Build(frozenHead).Layers[5].Parameters.All(p => p.Frozen));
    }

    [Fact]
    public void A_training_minibatch_of_one_sample_through_a_flat_BatchNorm_uses_the_running_statistics()
    {
        var norm = new BatchNorm(TensorShape.Flat(3));
        norm.RunningMean.Value[0] = 1f;
        var y = norm.Forward(Matrix<float>.Build.DenseOfColumnMajor(3, 1, [3f, 0f, 0f]));
        Assert.Equal(2 / Math.Sqrt(1 + 1e-5), y[0, 0], 5);
        Assert.Equal(1f, norm.RunningMean.Value[0]); // unchanged: no batch statistics to move it
    }

    [Fact]
    public void The_parameter_server_averages_the_replicas_running_statistics_by_sample_count()
    {
        var layout = new ParameterLayout([("0.weight", [1], ParameterRole.Weight, false), ("0.running_mean", [2], ParameterRole.RunningStatistic, false)]);
        var server = Sys.ActorOf(ParameterServer.Props(new ParameterVector(layout, [1f, 0f, 0f]), new OptimizerOptions { LearningRate = 0.5 }, totalEpochs: 1));
        var workers = new[] { CreateTestProbe(), CreateTestProbe() };
        server.Tell(new StartEpoch(1, workers.Select(w => w.Ref).ToArray(), [2, 1]), CreateTestProbe().Ref);
        foreach (var worker in workers) worker.ExpectMsg<WeightsUpdated>();
        // Reports are [gradient of 0.weight, running_mean...]; 16 and 48 samples.
        workers[0].Send(server, new GradientComputed(1, 0, 0, 0, 16, 1, [2f, 1f, 4f]));
        workers[1].Send(server, new GradientComputed(1, 0, 0, 1, 48, 1, [2f, 5f, 0f]));
        var update = workers[0].ExpectMsg<WeightsUpdated>();
        Assert.Equal(0f, update.Weights[0], 6);                       // 1 − 0.5 · 2
        Assert.Equal((16 * 1f + 48 * 5f) / 64, update.Weights[1], 6);   // weighted, not a gradient step
        Assert.Equal(16 * 4f / 64, update.Weights[2], 6);
        workers[1].ExpectMsg<WeightsUpdated>();
        // Round 1: only worker 0 has a minibatch; the statistics become its values alone.
        workers[0].Send(server, new GradientComputed(1, 1, 1, 0, 8, 1, [0f, 7f, 3f]));
        var second = workers[0].ExpectMsg<WeightsUpdated>();
        Assert.Equal(7f, second.Weights[1], 6);
        Assert.Equal(3f, second.Weights[2], 6);
    }

    /// <summary>
    /// The epoch early stopping should stop after and the one whose weights it keeps, by the documented rule applied to a
    /// run's validation losses: an epoch improves when its loss is below the best so far minus MinDelta; training stops
    /// after Patience epochs without improvement.
    /// </summary>
    private static (int Stop, int Best) ExpectedEarlyStop(IReadOnlyList<double> losses, int patience, double minDelta)
    {
        var best = 0;
        for (var epoch = 1; epoch <= losses.Count; epoch++)
        {
            if (best == 0 || losses[epoch - 1] < losses[best - 1] - minDelta) best = epoch;
            else if (epoch - best >= patience) return (epoch, best);
        }
        return (losses.Count, best);
    }

    [Fact]
    public async Task Early_stopping_with_MinDelta_0_and_001_stops_where_the_validation_losses_say_and_keeps_the_best_epochs_weights()
    {
        var data = TrainingData.Load(new DataOptions { Directory = TestData.SubsetDirectory, ValidationFraction = 0.2 }, seed: 7);
        TrainingOptions Options(int patience, double minDelta)
        {
            var options = TestData.Options(TestData.Mlp(32, 10), workers: 2, batch: 32, epochs: 15);
            options.Data.ValidationFraction = 0.2;
            options.Training.EarlyStopping = new EarlyStoppingOptions { Patience = patience, MinDelta = minDelta };
            return options;
        }
        Task<TrainingResult> Run(TrainingOptions options) =>
            SingleNodeTrainer.RunAsync(options, data.Train, data.Test, validation: data.Validation).WithTestTimeout();

        // The same run without early stopping: its validation losses decide what early stopping must do. Here they fall to
        // a minimum at epoch 6, and epoch 9 beats it by about 0.002: an improvement with MinDelta 0, none with MinDelta 0.01.
        var reference = await Run(Options(patience: 0, minDelta: 0));
        var losses = reference.Epochs.Select(e => e.ValidationLoss).ToList();
        Assert.All(losses, l => Assert.True(double.IsFinite(l) && l > 0, $"validation loss {l}"));
        var withZero = ExpectedEarlyStop(losses, patience: 3, minDelta: 0);
        var withSmall = ExpectedEarlyStop(losses, patience: 3, minDelta: 0.01);
        Assert.True(withZero != withSmall && withZero.Stop < 15 && withSmall.Stop < 15,
            $"the validation losses [{string.Join(", ", losses.Select(l => l.ToString("F4")))}] no longer make MinDelta 0.01 matter within 15 epochs");

        foreach (var (minDelta, (stop, best)) in new[] { (0.0, withZero), (0.01, withSmall) })
        {
            var result = await Run(Options(patience: 3, minDelta));
            Assert.True(result.StoppedEarly, $"MinDelta {minDelta}: ran all epochs");
            Assert.Equal(stop, result.Epochs.Count);
            Assert.Equal(best, result.BestEpoch);
            // Early stopping only reads the losses: the epochs it ran are the reference's, bit for bit.
            Assert.Equal(losses.Take(stop), result.Epochs.Select(e => e.ValidationLoss));
            // The weights kept are the best epoch's: its version, and they score its validation loss, not the last epoch's.
            Assert.Equal(reference.Epochs[best - 1].Version, result.Version);
            var loss = ValidationLoss(result.FinalWeights, data.Validation!, Options(3, minDelta).Model);
            Compare.Close(losses[best - 1], loss, relative: 1e-5, absolute: 1e-6, $"MinDelta {minDelta}: validation loss of the weights kept");
            Assert.True(Math.Abs(losses[stop - 1] - loss) > 1e-3, $"MinDelta {minDelta}: the weights kept score the last epoch's loss");
        }
        Assert.All(reference.Epochs, e => Assert.True(e.L2Penalty > 0 && double.IsFinite(e.ValidationAccuracy)));
    }

    /// <summary>Mean cross-entropy of <paramref name="weights"/> on every validation sample, in one pass.</summary>
    private static double ValidationLoss(ParameterVector weights, LabeledDataset validation, ModelOptions options)
    {
        var model = ModelFactory.Build(options);
        model.LoadParameters(weights.Values);
        var inputs = Matrix<float>.Build.Dense(validation.FeatureCount, validation.Count);
        var targets = Matrix<float>.Build.Dense(validation.ClassCount, validation.Count);
        validation.Gather(Enumerable.Range(0, validation.Count).ToArray(), inputs, targets);
        return new Core.Losses.SoftmaxCrossEntropy().Compute(model.Forward(inputs), targets, Matrix<float>.Build.Dense(validation.ClassCount, validation.Count));
    }

    [Fact]
    public void Layer_settings_out_of_range_are_config_errors_naming_the_key()
    {
        var model = SmallCnn(10);
        model.InputShape = [28, 28];
        model.Layers[0].Channels = 0;
        model.Layers[0].Stride = -1;
        model.Layers.Insert(5, new LayerOptions { Type = LayerTypes.Dropout, Rate = 1 });
        var problems = TrainingOptionsValidator.Validate(TestData.Options(model, 1, 16, 1), checkDataDirectory: false);
        Assert.Contains(problems, p => p.StartsWith("Model:InputShape = [28, 28] must be [channels, height, width]"));
        Assert.Contains(problems, p => p.StartsWith("Model:Layers:0:Channels = 0 is out of range"));
        Assert.Contains(problems, p => p.StartsWith("Model:Layers:0:Stride = -1 is out of range"));
        Assert.Contains(problems, p => p.StartsWith("Model:Layers:5:Rate = 1 is out of range: allowed [0, 1)"));
    }

    [Fact]
    public void Early_stopping_without_validation_samples_is_a_config_error_that_says_what_to_set()
    {
        var options = TestData.Options(TestData.Mlp(10), 1, 16, 1);
        options.Training.EarlyStopping.Patience = 3;
        var problems = TrainingOptionsValidator.Validate(options, checkDataDirectory: false);
        Assert.Contains(problems, p => p.Contains("Training:EarlyStopping:Patience = 3") && p.Contains("Data:ValidationFraction"));
    }
}
