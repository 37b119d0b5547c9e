using DistTrain.Cluster.Hosting;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Export;
using DistTrain.Core.Models;

namespace DistTrain.Tests;

/// <summary>
/// The C# API refuses what it is given at its own entry points, naming the public parameter or the options key, instead of
/// failing deep inside with a NullReferenceException or an error about an internal name (a temporary file, 'destFileName').
/// </summary>
public sealed class PublicApiArgumentTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-api-args-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>A small untrained model: 4 features, 3 classes.</summary>
    private static TrainedModel SmallModel()
    {
        var options = new ModelBuilder(4).Dense(3).Build();
        return new TrainedModel(options, ModelFactory.InitialWeights(ModelFactory.Build(options), options.Initializer, seed: 1),
            Normalizer.FromStatistics(NormalizationKind.Global, [0f], [1f]));
    }

    private static TrainingData SmallData() => TrainingData.FromArrays(new float[8], [0, 1], new float[4], [2], featureCount: 4, classCount: 3);

    [Fact]
    public async Task Null_arguments_of_the_trainer_name_the_parameter()
    {
        Assert.Equal("options", Assert.Throws<ArgumentNullException>(() => new Trainer(null!)).ParamName);
        var trainer = new Trainer(new TrainingOptions { Model = new ModelBuilder(4).Dense(3).Build() });
        Assert.Equal("data", (await Assert.ThrowsAsync<ArgumentNullException>(() => trainer.TrainAsync(null!))).ParamName);
        Assert.Equal("data", (await Assert.ThrowsAsync<ArgumentNullException>(() => trainer.RunWorkerAsync(null!))).ParamName);
        Assert.Equal("data", (await Assert.ThrowsAsync<ArgumentNullException>(() => trainer.RunParameterServerAsync(null!))).ParamName);
        var noTest = SmallData() with { Test = null! };
        var split = await Assert.ThrowsAsync<ArgumentNullException>(() => trainer.TrainAsync(noTest));
        Assert.StartsWith("data.Test is null: give TrainingData from TrainingData.FromArrays", split.Message);
    }

    [Fact]
    public void A_null_section_list_or_entry_of_the_options_is_a_problem_naming_its_key()
    {
        var sections = Assert.Throws<ConfigurationException>(() => new Trainer(new TrainingOptions { Model = null!, Optimizer = null!, Training = null! }));
        Assert.Contains("Model is null: leave it at its default (new ModelOptions()), or give it a value (null is not a setting).", sections.Message);
        Assert.Contains("Optimizer is null: leave it at its default (new OptimizerOptions())", sections.Message);
        Assert.Contains("Training is null: leave it at its default (new TrainingLoopOptions())", sections.Message);

        var inner = new TrainingOptions { Model = new ModelBuilder(4).Dense(3).Build() };
        inner.Model.Layers.Insert(0, null!);
        inner.Output.Directory = null!;
        inner.Cluster.SeedNodes = null!;
        inner.Data.Csv = null!;
        Assert.Equal(
        [
            "Data:Csv is null: leave it at its default (new CsvOptions()), or give it a value (null is not a setting).",
            "Model:Layers:0 is null: give the entry a value, or remove it (null is not a setting).",
            "Output:Directory is null: leave it at its default ('runs'), or give it a value (null is not a setting).",
            "Cluster:SeedNodes is null: leave it at its default (an empty list), or give it a value (null is not a setting).",
        ], TrainingOptionsValidator.Validate(inner, checkDataDirectory: false));
        Assert.Equal("options", Assert.Throws<ArgumentNullException>(() => TrainingOptionsValidator.Validate(null!)).ParamName);
    }

    [Fact]
    public void Null_or_empty_arguments_of_the_model_api_name_the_parameter()
    {
        var model = SmallModel();
        var path = Path.Combine(_directory, "m.onnx");
        Assert.Equal("model", Assert.Throws<ArgumentNullException>(() => OnnxExporter.Export(null!, path)).ParamName);
        Assert.Equal("path", Assert.Throws<ArgumentNullException>(() => OnnxExporter.Export(model, null!)).ParamName);
        Assert.Equal("model", Assert.Throws<ArgumentNullException>(() => OnnxExporter.ToBytes(null!)).ParamName);
        Assert.Equal("data", Assert.Throws<ArgumentNullException>(() => model.Accuracy(null!, standardized: false)).ParamName);
        Assert.Equal("path", Assert.Throws<ArgumentNullException>(() => model.Save(null!)).ParamName);
        Assert.Equal("path", Assert.Throws<ArgumentException>(() => model.Save("")).ParamName);
        Assert.Equal("path", Assert.Throws<ArgumentException>(() => model.Save("  ")).ParamName);
        Assert.Equal("path", Assert.Throws<ArgumentNullException>(() => TrainedModel.Load(null!)).ParamName);
        Assert.Equal("path", Assert.Throws<ArgumentException>(() => TrainedModel.Load("")).ParamName);
        Assert.Equal("path", Assert.Throws<ArgumentNullException>(() => ModelInputs.Read(null!, model, resize: false)).ParamName);
        Assert.Equal("model", Assert.Throws<ArgumentNullException>(() => ModelInputs.Read(path, null!, resize: false)).ParamName);
        Assert.Equal("path", Assert.Throws<ArgumentException>(() => ModelInputs.ReadLabeled("", model, resize: false)).ParamName);
        Assert.Equal("model", Assert.Throws<ArgumentNullException>(() => new TrainedModel(null!, model.Weights, model.Normalizer)).ParamName);
        Assert.Equal("options", Assert.Throws<ArgumentNullException>(() => ModelFactory.CheckFitsData(null!, SmallData())).ParamName);
    }

    [Fact]
    public void Saving_into_a_missing_folder_or_onto_a_folder_names_the_path_given_not_the_temporary_file()
    {
        var model = SmallModel();
        var missing = Path.Combine(_directory, "no-such-folder", "m.safetensors");
        var error = Assert.Throws<DirectoryNotFoundException>(() => model.Save(missing));
        Assert.Equal($"{missing}: the folder {Path.Combine(_directory, "no-such-folder")} does not exist. Create it first, or give a path in an existing folder.", error.Message);

        var folder = Assert.Throws<IOException>(() => model.Save(_directory));
        Assert.Equal($"{_directory} is a folder, not a file: give the path of the file to write, with a file name inside that folder.", folder.Message);
        var onnx = Assert.Throws<IOException>(() => OnnxExporter.Export(model, _directory));
        Assert.Equal(folder.Message, onnx.Message);

        var file = Path.Combine(_directory, "file");
        File.WriteAllText(file, "");
        var underFile = Assert.Throws<DirectoryNotFoundException>(() => model.Save(Path.Combine(file, "m.safetensors")));
        Assert.Equal($"{Path.Combine(file, "m.safetensors")}: {file} is a file, not a folder. Give a path in an existing folder.", underFile.Message);
        Assert.Equal(["file"], Directory.GetFileSystemEntries(_directory).Select(Path.GetFileName)); // no temporary file left

        // A folder that exists but takes no new files: the target and its folder are named, not the temporary file the
        // write goes through (it was "Could not find file '/proc/m.safetensors.4711-0c1d2e3f.tmp'").
        if (!OperatingSystem.IsLinux()) return;
        var proc = Assert.Throws<IOException>(() => model.Save("/proc/m.safetensors"));
        Assert.Equal("Could not create '/proc/m.safetensors': the folder /proc takes no new files.", proc.Message);
        Assert.Equal(proc.Message.Replace("m.safetensors", "m.onnx", StringComparison.Ordinal),
            Assert.Throws<IOException>(() => OnnxExporter.Export(model, "/proc/m.onnx")).Message);
    }

    [Theory]
    [InlineData(double.NaN, 0, "Data:ValidationFraction = NaN is out of range: allowed [0, 0.5].")]
    [InlineData(-1.0, 0, "Data:ValidationFraction = -1 is out of range: allowed [0, 0.5].")]
    [InlineData(0.9, 0, "Data:ValidationFraction = 0.9 is out of range: allowed [0, 0.5].")]
    [InlineData(0.0, -5, "Data:TrainLimit = -5 is out of range: allowed [0, 2147483647].")]
    public void Data_options_given_in_code_meet_the_config_files_limits_with_its_wording(double validationFraction, int trainLimit, string problem)
    {
        var options = new DataOptions { ValidationFraction = validationFraction, TrainLimit = trainLimit };
        var error = Assert.Throws<ArgumentException>(() => TrainingData.FromArrays(new float[8], [0, 1], new float[4], [2], 4, 3, options));
        Assert.Equal($"{problem} (Parameter 'options')", error.Message);

        // The config file says the same (and Prepare and Load, for data from any source, too).
        var config = new TrainingOptions { Data = options };
        Assert.Contains(problem, TrainingOptionsValidator.Validate(config, checkDataDirectory: false));
        var raw = new LabeledDataset(new float[8], [0, 1], 4, 3);
        Assert.Equal(error.Message, Assert.Throws<ArgumentException>(() => TrainingData.Prepare(raw, raw, options)).Message);
        Assert.Equal(error.Message, Assert.Throws<ArgumentException>(() => TrainingData.Load(options)).Message);
    }

    [Fact]
    public void Class_names_given_in_code_are_checked_as_a_config_files_are()
    {
        var repeated = new DataOptions { ClassNames = ["cat", "dog", "cat"] };
        Assert.Equal("Data:ClassNames:2 = 'cat' is repeated: give each class a distinct name, in label order. (Parameter 'options')",
            Assert.Throws<ArgumentException>(() => TrainingData.FromArrays(new float[8], [0, 1], new float[4], [2], 4, 3, repeated)).Message);
        var withNull = new DataOptions { ClassNames = ["cat", null!, "bird"] };
        Assert.Equal("Data:ClassNames:1 is null: give the entry a value, or remove it (null is not a setting). (Parameter 'options')",
            Assert.Throws<ArgumentException>(() => TrainingData.FromArrays(new float[8], [0, 1], new float[4], [2], 4, 3, withNull)).Message);
        var nullList = new DataOptions { ClassNames = null! };
        Assert.StartsWith("Data:ClassNames is null: leave it at its default (an empty list)",
            Assert.Throws<ArgumentException>(() => TrainingData.FromArrays(new float[8], [0, 1], new float[4], [2], 4, 3, nullList)).Message);
        var unknown = new DataOptions { Normalization = (NormalizationKind)7 };
        Assert.StartsWith("Data:Normalization = 7 is unknown: allowed None, Global, PerFeature.",
            Assert.Throws<ArgumentException>(() => TrainingData.FromArrays(new float[8], [0, 1], new float[4], [2], 4, 3, unknown)).Message);

        var named = TrainingData.FromArrays(new float[8], [0, 1], new float[4], [2], 4, 3, new DataOptions { ClassNames = ["cat", "dog", "bird"] });
        Assert.Equal(["cat", "dog", "bird"], named.ClassNames);
        Assert.Equal("options", Assert.Throws<ArgumentNullException>(() => TrainingData.Prepare(named.Train, named.Test, null!)).ParamName);
    }

    [Fact]
    public void The_model_builder_refuses_numbers_that_are_not_finite_and_unknown_initializers_at_the_call()
    {
        var builder = new ModelBuilder(4).Dense(8);
        var rate = Assert.Throws<ArgumentOutOfRangeException>(() => builder.Dropout(double.NaN));
        Assert.Equal(("rate", "Model:Layers:1:Rate = NaN is out of range: allowed [0, 1). (Parameter 'rate')"), (rate.ParamName, rate.Message));
        var momentum = Assert.Throws<ArgumentOutOfRangeException>(() => builder.BatchNorm(momentum: double.NaN));
        Assert.Equal(("momentum", "Model:Layers:1:Momentum = NaN is out of range: allowed (0, 1]. (Parameter 'momentum')"), (momentum.ParamName, momentum.Message));
        var epsilon = Assert.Throws<ArgumentOutOfRangeException>(() => builder.LayerNorm(double.PositiveInfinity));
        Assert.Equal("Model:Layers:1:Epsilon = Infinity is out of range: allowed (0, 1]. (Parameter 'epsilon')", epsilon.Message);
        var slope = Assert.Throws<ArgumentOutOfRangeException>(() => builder.LeakyReLU(double.NaN));
        Assert.Equal("Model:Layers:1:NegativeSlope = NaN is out of range: allowed [0, 1]. (Parameter 'negativeSlope')", slope.Message);
        var gain = Assert.Throws<ArgumentOutOfRangeException>(() => builder.Initializer(Core.Initialization.InitializerKind.HeNormal, double.NaN));
        Assert.Equal("Model:Initializer:Gain = NaN is out of range: allowed [0, 100]. (Parameter 'gain')", gain.Message);
        var kind = Assert.Throws<ArgumentOutOfRangeException>(() => builder.Initializer((Core.Initialization.InitializerKind)99));
        Assert.Equal("Model:Initializer:Kind = 99 is unknown: allowed Uniform, Normal, Zeros, Constant, HeNormal, HeUniform, XavierNormal, " +
            "XavierUniform. (Parameter 'kind')", kind.Message);
        Assert.Equal("loss", Assert.Throws<ArgumentNullException>(() => builder.Loss(null!)).ParamName);

        // Nothing refused was kept: the builder still builds what was given before.
        var model = builder.ReLU().Dense(3).Build();
        Assert.Equal(["Dense", "ReLU", "Dense"], model.Layers.Select(l => l.Type));
        Assert.Equal(Core.Initialization.InitializerKind.HeNormal, model.Initializer.Kind);
        // A finite value out of range is still one of Build's problems, as in a config file.
        Assert.Contains("Model:Layers:1:Rate = 1.5 is out of range: allowed [0, 1).",
            Assert.Throws<ConfigurationException>(() => new ModelBuilder(4).Dense(8).Dropout(1.5).Dense(3).Build()).Message);
    }

    [Fact]
    public void An_initializer_kind_that_does_not_exist_is_a_config_problem()
    {
        var options = new TrainingOptions();
        options.Model.Layers.Add(new LayerOptions { Type = "Dense", Units = 10 });
        options.Model.Initializer.Kind = (Core.Initialization.InitializerKind)99;
        Assert.Equal(["Model:Initializer:Kind = 99 is unknown: allowed Uniform, Normal, Zeros, Constant, HeNormal, HeUniform, XavierNormal, XavierUniform."],
            TrainingOptionsValidator.Validate(options, checkDataDirectory: false));
        var json = """{ "Model": { "Initializer": { "Kind": "99" }, "Layers": [ { "Type": "Dense", "Units": 10 } ] } }""";
        var loaded = Assert.Throws<ConfigurationException>(() => TrainingOptionsLoader.Load("k.json", System.Text.Encoding.UTF8.GetBytes(json), null,
            checkDataDirectory: false, new Dictionary<string, string?>()));
        // From a config, a number is refused before it is bound, as not a name (ConfigurationMessageTests).
        Assert.Contains("Model:Initializer:Kind = '99' (in k.json) is not valid: expected one of Uniform, Normal, Zeros, Constant, HeNormal, HeUniform, XavierNormal, XavierUniform. " +
            "Write the name: a number is not read as a position in that list.", loaded.Message);
    }
}
