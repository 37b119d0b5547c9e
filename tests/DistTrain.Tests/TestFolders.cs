using System.Diagnostics;
using System.Globalization;

namespace DistTrain.Tests;

/// <summary>
/// Temporary folders whose names carry the id of the test process that made them
/// (<c>PREFIX{pid}-{random}</c>), so that a folder a killed test process left behind (its <c>finally</c> never ran: the
/// run was stopped or timed out mid-test) is removed by the next process that makes one with the same prefix.
/// </summary>
internal static class TestFolders
{
    /// <summary>
    /// Removes the folders with <paramref name="prefix"/> in the temporary directory whose process has ended, then creates
    /// a new one for this process.
    /// </summary>
    /// <param name="prefix">The folder name's start, such as <c>disttrain-trainer-</c>.</param>
    /// <returns>The new folder's full path.</returns>
    public static string Create(string prefix)
    {
        RemoveLeftovers(Path.GetTempPath(), prefix);
        return Directory.CreateTempSubdirectory($"{prefix}{Environment.ProcessId.ToString(CultureInfo.InvariantCulture)}-").FullName;
    }

    /// <summary>
    /// Deletes the folders in <paramref name="parent"/> named <c>PREFIX{pid}-...</c> whose process is not running, or runs
    /// but started after the folder was last written (its id was taken again). Folders of running processes, and folders
    /// named otherwise, are kept; one that cannot be deleted (another user's) is left.
    /// </summary>
    /// <returns>The folders deleted.</returns>
    internal static IReadOnlyList<string> RemoveLeftovers(string parent, string prefix)
    {
        var removed = new List<string>();
        foreach (var folder in Directory.EnumerateDirectories(parent, prefix + "*"))
        {
            var rest = Path.GetFileName(folder)[prefix.Length..];
            var dash = rest.IndexOf('-');
            if (dash <= 0 || !int.TryParse(rest.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) continue;
            if (Running(pid, Directory.GetLastWriteTimeUtc(folder))) continue;
            try
            {
                Directory.Delete(folder, recursive: true);
                removed.Add(folder);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
            }
        }
        return removed;
    }

    /// <summary>Whether process <paramref name="pid"/> runs and started before <paramref name="folderWritten"/> (UTC).</summary>
    private static bool Running(int pid, DateTime folderWritten)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return process.StartTime.ToUniversalTime() <= folderWritten;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            return false; // not running (or ended while being looked at)
        }
    }
}
