using System.Text.Json;
using System.Text.RegularExpressions;

namespace DistTrain.Tests;

/// <summary>What a fresh clone needs to build cleanly: the pinned SDK and a restore without warnings.</summary>
public class BuildSetupTests
{
    private static string Repository => Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", ".."));

    [Fact]
    public void Global_json_pins_the_sdk_major_version_the_projects_target_and_rolls_forward_within_it()
    {
        var sdk = JsonDocument.Parse(File.ReadAllText(Path.Combine(Repository, "global.json"))).RootElement.GetProperty("sdk");
        var framework = Regex.Match(File.ReadAllText(Path.Combine(Repository, "Directory.Build.props")), @"<TargetFramework>net(\d+)\.0</TargetFramework>");
        Assert.True(framework.Success, "Directory.Build.props names no netN.0 target framework");
        Assert.Equal(framework.Groups[1].Value, sdk.GetProperty("version").GetString()!.Split('.')[0]);
        Assert.Equal("latestFeature", sdk.GetProperty("rollForward").GetString());
        Assert.Contains("COPY global.json ", File.ReadAllText(Path.Combine(Repository, "Dockerfile"))); // the image builds with the same pin
    }

    [Fact]
    public void Restoring_every_project_logs_no_NuGet_warning()
    {
        // NuGet records restore warnings (NU1603: a requested lower bound not served, a higher version taken) in
        // each project's assets file; the build that ran this test restored them.
        var assetFiles = Directory.GetFiles(Path.Combine(Repository, "src"), "project.assets.json", SearchOption.AllDirectories)
            .Concat(Directory.GetFiles(Path.Combine(Repository, "tests"), "project.assets.json", SearchOption.AllDirectories))
            .ToList();
        Assert.True(assetFiles.Count >= 4, $"found only {assetFiles.Count} project.assets.json files");
        var warnings = assetFiles
            .SelectMany(path => JsonDocument.Parse(File.ReadAllText(path)).RootElement.TryGetProperty("logs", out var logs)
                ? logs.EnumerateArray().Select(log => $"{Path.GetRelativePath(Repository, path)}: {log.GetProperty("code").GetString()} {log.GetProperty("message").GetString()}")
                : [])
            .ToList();
        Assert.True(warnings.Count == 0, string.Join("\n", warnings));
    }
}
