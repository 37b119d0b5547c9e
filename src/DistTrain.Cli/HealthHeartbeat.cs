namespace DistTrain.Cli;

/// <summary>Touches Output:HealthFile every 5 s while a command runs, so a container health check can tell a live process from a hung one.</summary>
internal sealed class HealthHeartbeat : IDisposable
{
    private readonly Timer? _timer;

    public HealthHeartbeat(string path)
    {
        if (string.IsNullOrWhiteSpace(path)) return;
        _timer = new Timer(_ =>
        {
            try { File.WriteAllText(path, DateTime.UtcNow.ToString("O")); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* the check then reports unhealthy */ }
        }, null, TimeSpan.Zero, TimeSpan.FromSeconds(5));
    }

    public void Dispose() => _timer?.Dispose();
}
