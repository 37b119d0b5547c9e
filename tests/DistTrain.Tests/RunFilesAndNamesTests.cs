using DistTrain.Cli;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Configuration;
using DistTrain.Core.Layers;
using DistTrain.Core.Models;
using DistTrain.Core.Tensors;

namespace DistTrain.Tests;

/// <summary>Names of tensors and files: pretrained checkpoints with another naming, run folders of runs started together.</summary>
public sealed class RunFilesAndNamesTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-names-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>Writes <paramref name="weights"/> with every name prefixed by <paramref name="prefix"/>, as a wrapped module's state_dict.</summary>
    private string WriteWithPrefix(ParameterVector weights, string prefix)
    {
        var renamed = new ParameterLayout(weights.Layout.Segments.Select(s => (prefix + s.Name, s.Shape)));
        var path = Path.Combine(_directory, $"{Guid.NewGuid():N}.safetensors");
        SafeTensors.Write(path, new ParameterVector(renamed, weights.Values));
        return path;
    }

    [Fact]
    public void A_state_dict_saved_from_DataParallel_loads_without_its_module_prefix_and_says_so()
    {
        var model = ModelFactory.Build(TestData.SmallCnn(10));
        var saved = ModelFactory.InitialWeights(model, new(), seed: 5);
        var path = WriteWithPrefix(saved, PretrainedWeights.DataParallelPrefix);
        var lines = new List<string>();
        var target = new ParameterVector(model.Layout);

        var loaded = PretrainedWeights.Load(path, model, target, replaceHead: false, lines.Add);

        Assert.Equal(model.Layout.Segments.Select(s => s.Name), loaded);
        Assert.Equal(saved.Values, target.Values);
        var line = Assert.Single(lines);
        Assert.Contains("'module.'", line);
        Assert.Contains("DataParallel", line);
    }

    [Fact]
    public void Names_that_differ_from_the_model_only_by_a_prefix_get_a_hint_naming_that_prefix_not_ReplaceHead()
    {
        var model = ModelFactory.Build(TestData.SmallCnn(10));
        var path = WriteWithPrefix(ModelFactory.InitialWeights(model, new(), seed: 5), "backbone.");

        var error = Assert.Throws<InvalidDataException>(() => PretrainedWeights.Load(path, model, new ParameterVector(model.Layout), replaceHead: false));

        Assert.Contains("'0.weight' [4, 1, 3, 3] is missing from the checkpoint", error.Message); // every tensor is still listed
        Assert.Contains("'backbone.0.weight' [4, 1, 3, 3] is in the checkpoint but not in the model", error.Message);
        Assert.Contains("only by the prefix 'backbone.'", error.Message);
        Assert.Contains("k.removeprefix('backbone.')", error.Message);
        Assert.DoesNotContain("ReplaceHead", error.Message);
    }

    [Fact]
    public void A_state_dict_with_the_models_shapes_under_other_names_is_told_to_rename_them_not_to_change_the_layers()
    {
        // A PyTorch module with named layers (fc1, fc2, fc3) for the MLP whose layers DistTrain numbers 0, 2, 4. Before: "Make
        // Model:Layers match the network ...; the head differs too: Model:ReplaceHead", neither of which helps.
        var model = ModelFactory.Build(TestData.Mlp(16, 10));
        var weights = ModelFactory.InitialWeights(model, new(), seed: 5);
        var names = new Dictionary<string, string>();
        var layer = 0;
        foreach (var segment in weights.Layout.Segments)
        {
            var index = segment.Name[..segment.Name.IndexOf('.')];
            if (!names.ContainsKey(index)) names[index] = $"fc{++layer}";
        }
        var renamed = new ParameterLayout(weights.Layout.Segments.Select(s => (names[s.Name[..s.Name.IndexOf('.')]] + s.Name[s.Name.IndexOf('.')..], s.Shape)));
        var path = Path.Combine(_directory, "fc.safetensors");
        SafeTensors.Write(path, new ParameterVector(renamed, weights.Values));

        var error = Assert.Throws<InvalidDataException>(() => PretrainedWeights.Load(path, model, new ParameterVector(model.Layout), replaceHead: false));

        Assert.Contains($"The checkpoint's {renamed.Segments.Count} other tensors have the shapes of the model's {renamed.Segments.Count} missing ones, under other names: " +
            "the model names each tensor by its layer's position in Model:Layers ('0.weight', '0.bias',", error.Message);
        Assert.DoesNotContain("ReplaceHead", error.Message);
        Assert.DoesNotContain("Make Model:Layers match", error.Message);
        // A network of other shapes still gets the advice to match the layers.
        var other = ModelFactory.Build(TestData.Mlp(32, 10));
        Assert.Contains("Make Model:Layers match", Assert.Throws<InvalidDataException>(() => PretrainedWeights.Load(path, other, new ParameterVector(other.Layout), replaceHead: false)).Message);
    }

    [Fact]
    public void Only_a_head_of_another_size_suggests_ReplaceHead_and_a_missing_file_names_what_runs_write()
    {
        var path = Path.Combine(_directory, "ten-classes.safetensors");
        SafeTensors.Write(path, ModelFactory.InitialWeights(ModelFactory.Build(TestData.SmallCnn(10)), new(), seed: 5));
        var fiveClasses = ModelFactory.Build(TestData.SmallCnn(5));

        var error = Assert.Throws<InvalidDataException>(() => PretrainedWeights.Load(path, fiveClasses, new ParameterVector(fiveClasses.Layout), replaceHead: false));
        Assert.Contains("Only the head (5.weight, 5.bias) differs: set Model:ReplaceHead", error.Message);

        var missing = Assert.Throws<InvalidDataException>(() => PretrainedWeights.RequireFile(Path.Combine(_directory, "nope.safetensors"), "--from"));
        Assert.Contains($"--from '{Path.Combine(_directory, "nope.safetensors")}': no such file", missing.Message);
        Assert.Contains("a run's model.safetensors", missing.Message);
        Assert.Equal("model.safetensors", RunFiles.Model);
    }

    [Fact]
    public void Runs_started_in_the_same_second_each_get_a_folder_of_their_own()
    {
        var output = Path.Combine(_directory, "runs");
        // Sixteen runs at once, as from sixteen processes: every folder is distinct and was created by its run.
        var folders = new string[16];
        Parallel.For(0, folders.Length, new ParallelOptions { MaxDegreeOfParallelism = 16 }, i => folders[i] = RunDirectory.Create(output));

        Assert.Equal(folders.Length, folders.Distinct().Count());
        Assert.All(folders, folder => Assert.True(Directory.Exists(folder) && !Directory.EnumerateFileSystemEntries(folder).Any(), folder));
        // A folder of the name a run would take, left by an earlier run (or a clock set back), is not reused either.
        var taken = folders.Select(Path.GetFileName).ToHashSet();
        var next = RunDirectory.Create(output);
        Assert.DoesNotContain(Path.GetFileName(next), taken);
    }

    /// <summary>
    /// --output naming an existing file (or a path below one) gave .NET's "The file '...' already exists." or "Could not find a
    /// part of the path" in the message; it names the file and the fix, and leaves the file as it was.
    /// </summary>
    [Fact]
    public void An_output_folder_that_is_a_file_or_below_one_is_named_as_such()
    {
        var file = Path.Combine(_directory, "notes.txt");
        File.WriteAllText(file, "keep");
        const string fix = ": each run is written to a new folder inside Output:Directory. Pass --output with a folder (it is created when missing), or move the file away.";

        var error = Assert.Throws<RunDirectoryException>(() => RunDirectory.Create(file));
        Assert.Equal($"Output:Directory = '{file}' is a file, not a folder{fix}", error.Message);
        error = Assert.Throws<RunDirectoryException>(() => RunDirectory.Create(file + "/"));
        Assert.Equal($"Output:Directory = '{file}/' is a file, not a folder{fix}", error.Message);
        var below = Path.Combine(file, "runs", "today");
        error = Assert.Throws<RunDirectoryException>(() => RunDirectory.Create(below));
        Assert.Equal($"Output:Directory = '{below}' is below {file}, which is a file, not a folder{fix}", error.Message);
        Assert.Equal("keep", File.ReadAllText(file));
        // A folder that does not exist yet is created, as before.
        Assert.True(Directory.Exists(RunDirectory.Create(Path.Combine(_directory, "new", "runs"))));
    }

    [Fact]
    public void A_new_run_removes_the_temporary_series_files_that_killed_runs_left_but_not_a_live_writers()
    {
        var output = Path.Combine(_directory, "runs");
        var killed = Path.Combine(output, "20240101-000000");
        var other = Path.Combine(output, "20240101-000001");
        Directory.CreateDirectory(killed);
        Directory.CreateDirectory(other);
        // The id of a process that has ended: as a run killed with kill -9 mid-write leaves it.
        using var ended = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("true") { UseShellExecute = false })!;
        ended.WaitForExit();
        var dead = ended.Id;
        var live = Environment.ProcessId;
        string Temporary(string folder, int pid, string random, TimeSpan age, string name = "epochs.csv")
        {
            var path = Path.Combine(folder, $"{name}.{pid}-{random}{AtomicFile.TemporarySuffix}");
            File.WriteAllText(path, "epoch,version\n1,");
            File.SetLastWriteTimeUtc(path, DateTime.UtcNow - age);
            return path;
        }
        var leftover = Temporary(killed, dead, "0c1d2e3f", TimeSpan.FromMinutes(5));
        var leftoverElsewhere = Temporary(other, dead, "00000001", TimeSpan.FromDays(3));
        var justWritten = Temporary(killed, dead, "00000002", TimeSpan.FromSeconds(5)); // may be a writer this machine cannot see
        var liveWriters = Temporary(killed, live, "00000003", TimeSpan.FromMinutes(5));
        var abandoned = Temporary(other, live, "00000004", TimeSpan.FromHours(2)); // an hour old: its id was taken again since
        var notEpochs = Temporary(killed, dead, "00000005", TimeSpan.FromMinutes(5), name: "model.safetensors");
        var leftoverSteps = Temporary(killed, dead, "00000006", TimeSpan.FromMinutes(5), name: RunFiles.Steps); // written after epochs.csv
        var liveSteps = Temporary(killed, live, "00000007", TimeSpan.FromMinutes(5), name: RunFiles.Steps);
        var epochs = Path.Combine(killed, RunFiles.Epochs);
        File.WriteAllText(epochs, "epoch,version\n");

        var created = RunDirectory.Create(output);

        Assert.False(File.Exists(leftover), leftover);
        Assert.False(File.Exists(leftoverElsewhere), leftoverElsewhere);
        Assert.False(File.Exists(abandoned), abandoned);
        Assert.True(File.Exists(justWritten), justWritten);
        Assert.True(File.Exists(liveWriters), liveWriters);
        Assert.True(File.Exists(notEpochs), notEpochs);
        Assert.False(File.Exists(leftoverSteps), leftoverSteps);
        Assert.True(File.Exists(liveSteps), liveSteps);
        Assert.Equal("epoch,version\n", File.ReadAllText(epochs));
        Assert.Empty(Directory.EnumerateFileSystemEntries(created));
        Assert.Equal(0, RunDirectory.RemoveLeftoverSeriesWrites(output)); // nothing more to remove
    }
}
