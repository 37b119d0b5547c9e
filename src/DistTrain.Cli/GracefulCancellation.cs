using System.Runtime.InteropServices;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary>
/// Ctrl-C and SIGTERM while a command runs. The first one cancels <see cref="Token"/>, which the commands pass to
/// training: it stops at the next step, saves what the command documents and exits with code 130. A second one ends
/// the process at once, by the signal's default action (exit status 130 for SIGINT, 143 for SIGTERM), after removing
/// the run folder if nothing was written into it yet.
/// </summary>
internal sealed class GracefulCancellation : IDisposable
{
    private readonly CancellationTokenSource _source = new();
    private readonly PosixSignalRegistration[] _registrations;
    private int _signals;

    /// <summary>Registers for SIGINT and SIGTERM until disposed.</summary>
    public GracefulCancellation() =>
        _registrations = [PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal), PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal)];

    /// <summary>Cancelled by the first signal.</summary>
    public CancellationToken Token => _source.Token;

    private void OnSignal(PosixSignalContext context)
    {
        if (Interlocked.Increment(ref _signals) > 1)
        {
            context.Cancel = false; // the runtime's default: terminate now
            if (RunDirectory.RemoveCreatedIfEmpty() is { } removed) CliConsole.Fail("removed", $"the empty run folder {removed}");
            return;
        }
        context.Cancel = true;
        var notice = $"{(context.Signal == PosixSignal.SIGINT ? "Ctrl-C" : "SIGTERM")}: stopping at the next step (press Ctrl-C again to exit at once).";
        CliConsole.Notice(notice);
        _source.Cancel();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var registration in _registrations) registration.Dispose();
        _source.Dispose();
    }
}
