using System.Globalization;

namespace DistTrain.Cli;

/// <summary>The output folder cannot be created or written.</summary>
internal sealed class RunDirectoryException(string message, Exception inner) : Exception(message, inner);

/// <summary>Creates <c>Output:Directory/&lt;UTC time&gt;</c> before training and proves it is writable, so a bad path fails in a second, not after the run.</summary>
internal static class RunDirectory
{
    public static string Create(string outputDirectory)
    {
        var path = Path.Combine(outputDirectory, DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture));
        try
        {
            Directory.CreateDirectory(path);
            var probe = Path.Combine(path, ".write-test");
            File.WriteAllText(probe, "");
            File.Delete(probe);
            return path;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new RunDirectoryException($"Output:Directory = '{outputDirectory}': cannot create or write '{path}' ({e.Message}). Pass --output with a writable folder.", e);
        }
    }
}
