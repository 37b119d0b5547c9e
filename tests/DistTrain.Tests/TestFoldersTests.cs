namespace DistTrain.Tests;

/// <summary>
/// <see cref="TestFolders"/>: a temporary folder a killed test process left (its <c>finally</c> never ran) is removed by the
/// next one; a running process's folder, and a folder named otherwise, are kept.
/// </summary>
public class TestFoldersTests
{
    [Fact]
    public void The_folders_of_ended_processes_are_removed_and_those_of_running_ones_kept()
    {
        var parent = Directory.CreateTempSubdirectory("disttrain-test-folders-").FullName;
        try
        {
            // The id of a process that has ended, as a test run killed mid-test leaves it.
            using var ended = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("true") { UseShellExecute = false })!;
            ended.WaitForExit();
            var leftover = Directory.CreateDirectory(Path.Combine(parent, $"disttrain-trainer-{ended.Id}-nxq8ks")).FullName;
            File.WriteAllText(Path.Combine(Directory.CreateDirectory(Path.Combine(leftover, "cluster-ca")).FullName, "ca.crt"), "certificate");
            var live = Directory.CreateDirectory(Path.Combine(parent, $"disttrain-trainer-{Environment.ProcessId}-abc123")).FullName;
            var unnamed = Directory.CreateDirectory(Path.Combine(parent, "disttrain-trainer-nxq8ks")).FullName;
            var other = Directory.CreateDirectory(Path.Combine(parent, $"disttrain-other-{ended.Id}-abc123")).FullName;

            Assert.Equal([leftover], TestFolders.RemoveLeftovers(parent, "disttrain-trainer-"));

            Assert.False(Directory.Exists(leftover));
            Assert.True(Directory.Exists(live));
            Assert.True(Directory.Exists(unnamed));
            Assert.True(Directory.Exists(other));
        }
        finally
        {
            Directory.Delete(parent, recursive: true);
        }
    }

    [Fact]
    public void A_new_folder_is_named_after_this_process_and_survives_the_sweep_of_the_next()
    {
        var first = TestFolders.Create("disttrain-test-folders-own-");
        try
        {
            Assert.StartsWith($"disttrain-test-folders-own-{Environment.ProcessId}-", Path.GetFileName(first));
            var second = TestFolders.Create("disttrain-test-folders-own-");
            Directory.Delete(second);
            Assert.True(Directory.Exists(first));
        }
        finally
        {
            Directory.Delete(first, recursive: true);
        }
    }
}
