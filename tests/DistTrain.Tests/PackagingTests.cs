using System.Diagnostics;
using System.Text;

namespace DistTrain.Tests;

/// <summary>
/// The packages as a user gets them: <c>dotnet pack</c> of the solution, the DistTrain tool installed from the packed folder
/// into a temporary tool path (its <c>disttrain</c> shows help, trains and exports), samples/TrainInMemory built against
/// the packed DistTrain.Cluster from that folder (not project references) and run, and samples/CheckOnnx built against the
/// packed DistTrain.Core and run on the tool's export.
/// </summary>
/// <remarks>
/// The packages get a version of their own (<c>1.0.0-test.*</c>), so NuGet's global package folder never serves an older
/// pack of the same version; those entries are removed afterwards. Packing reuses the build the suite runs on (--no-build).
/// </remarks>
public sealed class PackagingTests : IDisposable
{
    private static readonly TimeSpan StepTimeout = TimeSpan.FromMinutes(5);
    private static string Repository => Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", ".."));
    // tests/DistTrain.Tests/bin/<Configuration>/net10.0: pack the configuration the suite was built in.
    private static string Configuration => new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name;

    private readonly string _directory = Directory.CreateTempSubdirectory("disttrain-packaging-").FullName;
    private readonly string _version = $"1.0.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";

    public void Dispose()
    {
        Directory.Delete(_directory, recursive: true);
        var globalPackages = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        foreach (var id in new[] { "disttrain", "disttrain.core", "disttrain.cluster" })
        {
            var cached = Path.Combine(globalPackages, id, _version);
            if (Directory.Exists(cached)) Directory.Delete(cached, recursive: true);
            if (Directory.Exists(Path.GetDirectoryName(cached)) && !Directory.EnumerateFileSystemEntries(Path.GetDirectoryName(cached)!).Any())
                Directory.Delete(Path.GetDirectoryName(cached)!);
        }
    }

    [Fact]
    public async Task The_packed_tool_installs_and_trains_and_the_sample_builds_and_runs_against_the_packed_libraries()
    {
        var feed = Path.Combine(_directory, "artifacts", "packages");
        await Run("dotnet", ["pack", Path.Combine(Repository, "DistTrain.sln"), "-c", Configuration, "--no-build", "-o", feed,
            $"-p:Version={_version}", "-p:IncludeSymbols=false", "--disable-build-servers", "-nologo"], Repository);
        Assert.Equal(["DistTrain", "DistTrain.Cluster", "DistTrain.Core"],
            Directory.GetFiles(feed, "*.nupkg").Select(p => Path.GetFileName(p)[..^$".{_version}.nupkg".Length]).Order(StringComparer.Ordinal));

        // The tool: installed from the folder into a tool path, as `dotnet tool install --global` does into ~/.dotnet/tools.
        var tools = Path.Combine(_directory, "tools");
        await Run("dotnet", ["tool", "install", "DistTrain", "--tool-path", tools, "--add-source", feed, "--version", _version], _directory);
        var disttrain = Path.Combine(tools, "disttrain");
        var help = await Run(disttrain, ["--help"], _directory);
        foreach (var command in new[] { "train", "finetune", "inspect", "export", "bench", "node" })
            Assert.Contains(command, help);
        var runs = Path.Combine(_directory, "runs");
        var train = await Run(disttrain, ["train", "--config", Path.Combine(Repository, "configs", "fashion-mnist-mlp.json"),
            "--data", TestData.SubsetDirectory, "--epochs", "1", "--workers", "2", "--output", runs], _directory);
        Assert.Contains("Test accuracy after 1 epoch", train);
        var weights = Directory.GetFiles(runs, "model.safetensors", SearchOption.AllDirectories).Single();
        var onnx = Path.Combine(_directory, "model.onnx");
        await Run(disttrain, ["export", weights, "--onnx", onnx], _directory);
        Assert.True(new FileInfo(onnx).Length > 900_000, "the MLP's ONNX file holds its 235,146 weights");

        // The sample: its nuget.config adds ../../artifacts/packages to the machine's sources, as in the repository.
        var sample = Path.Combine(_directory, "samples", "TrainInMemory");
        CopyFolder(Path.Combine(Repository, "samples"), Path.Combine(_directory, "samples"));
        await Run("dotnet", ["build", "-c", "Release", $"-p:DistTrainVersion={_version}", "--disable-build-servers", "-nologo"], sample);
        var output = await Run("dotnet", [Path.Combine(sample, "bin", "Release", "net10.0", "TrainInMemory.dll"), Path.Combine(_directory, "sample-output")], sample);
        Assert.Contains("epoch 4/4", output);
        Assert.Matches(@"largest logit difference from DistTrain over 500 test images \S+", output);

        // samples/CheckOnnx, as the README's first session runs it: the tool's export against its model.safetensors in ONNX
        // Runtime, on the 250 test images of the IDX file (it exits 1 when a logit differs by more than 1e-4).
        var check = Path.Combine(_directory, "samples", "CheckOnnx");
        await Run("dotnet", ["build", "-c", "Release", $"-p:DistTrainVersion={_version}", "--disable-build-servers", "-nologo"], check);
        var images = Directory.GetFiles(TestData.SubsetDirectory, "t10k-images-idx3-ubyte*").Single();
        var checkOutput = await Run("dotnet", [Path.Combine(check, "bin", "Release", "net10.0", "CheckOnnx.dll"), weights, onnx, images], _directory);
        var match = System.Text.RegularExpressions.Regex.Match(checkOutput, @"on 250 samples: largest logit difference (\S+), predicted classes agree on 250 of 250");
        Assert.True(match.Success, checkOutput);
        Assert.InRange(double.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), 0, 1e-4);
        // An ONNX file of another model (64 inputs) against this one's images: a one-line error and exit code 2, not the
        // tensor's unhandled exception (exit 134).
        var other = Path.Combine(_directory, "other", "model.safetensors");
        Directory.CreateDirectory(Path.GetDirectoryName(other)!);
        var otherOptions = new DistTrain.Core.Models.ModelBuilder(64).Dense(10).Build();
        new DistTrain.Core.Models.TrainedModel(otherOptions, DistTrain.Core.Models.ModelFactory.InitialWeights(DistTrain.Core.Models.ModelFactory.Build(otherOptions),
            otherOptions.Initializer, seed: 1), DistTrain.Core.Data.Normalizer.FromStatistics(DistTrain.Core.Data.NormalizationKind.Global, [0f], [1f])).Save(other);
        var otherOnnx = Path.Combine(_directory, "other.onnx");
        await Run(disttrain, ["export", other, "--onnx", otherOnnx], _directory);
        var mismatch = await Run("dotnet", [Path.Combine(check, "bin", "Release", "net10.0", "CheckOnnx.dll"), weights, otherOnnx, images], _directory, expectedExit: 2);
        Assert.Contains($"error: {otherOnnx} takes inputs of shape [batch, 64], 64 values per sample, but {weights} reads {images} as 784 values per sample: " +
            "give the ONNX file exported from this model.safetensors", mismatch);
        Assert.DoesNotContain("Unhandled exception", mismatch);
    }

    private static void CopyFolder(string from, string to)
    {
        foreach (var file in Directory.GetFiles(from, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(from, file);
            if (relative.Split(Path.DirectorySeparatorChar).Any(part => part is "bin" or "obj")) continue;
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(to, relative))!);
            File.Copy(file, Path.Combine(to, relative));
        }
    }

    /// <summary>Runs a command to its end (killing it after <see cref="StepTimeout"/>); asserts exit code <paramref name="expectedExit"/>
    /// (0 unless given) and returns its output.</summary>
    private static async Task<string> Run(string program, string[] arguments, string workingDirectory, int expectedExit = 0)
    {
        var start = new ProcessStartInfo(program)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("DISTTRAIN_", StringComparison.Ordinal)).ToList())
            start.Environment.Remove(key);
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["MSBUILDDISABLENODEREUSE"] = "1"; // no MSBuild nodes left running after the test
        var output = new StringBuilder();
        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (output) output.AppendLine(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await process.WaitForExitAsync().WaitAsync(StepTimeout);
        }
        catch (TimeoutException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{program} {string.Join(' ', arguments)} did not finish within {StepTimeout}:\n{output}");
        }
        process.WaitForExit(); // drain the output events
        var text = output.ToString();
        Assert.True(process.ExitCode == expectedExit, $"{program} {string.Join(' ', arguments)} exited with {process.ExitCode}:\n{text}");
        return text;
    }
}
