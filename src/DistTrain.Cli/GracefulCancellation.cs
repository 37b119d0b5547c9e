using System.Runtime.InteropServices;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary>
/// Ctrl-C and SIGTERM while a command runs. The first one cancels <see cref="Token"/>, which the commands pass to
/// training: it stops at the next step, saves what the command documents and exits with code 130. A second one ends
/// the process at once, by the signal's default action (exit status 130 for SIGINT, 143 for SIGTERM), without writing
/// the run's files: it removes the run folder if nothing was written into it yet, names the <c>epochs.csv</c> written
/// after each finished epoch if there is one, and names the checkpoints that survive and how to resume from them
/// (<see cref="ResumeHint"/>). A second one that comes after the graceful stop wrote the run's weights and summary (its
/// <c>summary.json</c> exists) ends the process without a line: the run's records are on disk.
/// </summary>
internal sealed class GracefulCancellation : IDisposable
{
    private readonly CancellationTokenSource _source = new();
    private readonly PosixSignalRegistration[] _registrations;
    private int _signals;

    /// <summary>Registers for SIGINT and SIGTERM until disposed.</summary>
    public GracefulCancellation() =>
        _registrations = [PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal), PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal)];

    /// <summary>
    /// What a second signal leaves to go on from: the run's checkpoint folder and the command that resumes from it, as
    /// <see cref="RunOutputs.ResumeHint"/> says it (a sentence that begins with a space; empty without Checkpoint:Directory).
    /// Set by the commands that train once their run folder exists; null for none.
    /// </summary>
    internal static Func<string>? ResumeHint { get; set; }

    /// <summary>Cancelled by the first signal.</summary>
    public CancellationToken Token => _source.Token;

    private void OnSignal(PosixSignalContext context)
    {
        if (Interlocked.Increment(ref _signals) > 1)
        {
            context.Cancel = false; // the runtime's default: terminate now
            // The graceful stop already wrote the run's weights and summary (then the report, then its `cancelled:` line): a
            // second signal in the moments the process takes to exit after that loses at most the plot, and "exited at once,
            // without writing this run's files" would be wrong.
            if (RunDirectory.Created is { } written && File.Exists(Path.Combine(written, DistTrain.Core.Checkpoints.RunFiles.Summary))) return;
            var resume = CheckpointsLeft();
            if (RunDirectory.RemoveCreatedIfEmpty() is { } removed)
                CliConsole.Fail("removed", $"the empty run folder {removed}: exited at once, without writing this run's files (the finished epochs' records and weights).{resume}");
            else if (RunDirectory.Created is { } folder && File.Exists(Path.Combine(folder, DistTrain.Core.Checkpoints.RunFiles.Epochs)))
                CliConsole.Fail("exited", ExitedWithRecords(folder, resume));
            else if (resume.Length > 0) CliConsole.Fail("exited", $"at once, without writing this run's files.{resume}");
            return;
        }
        context.Cancel = true;
        // Once a run folder exists, a second signal loses what the graceful stop would write into it.
        var discards = RunDirectory.AnyCreated ? ", without writing this run's files" : "";
        var again = context.Signal == PosixSignal.SIGINT ? "press Ctrl-C again" : "send SIGTERM again, or press Ctrl-C,";
        var notice = $"{(context.Signal == PosixSignal.SIGINT ? "Ctrl-C" : "SIGTERM")}: stopping at the next step ({again} to exit at once{discards}).";
        CliConsole.Notice(notice);
        _source.Cancel();
    }

    /// <summary>
    /// The <c>exited:</c> line of a second signal once the run folder holds the finished epochs' records (<paramref name="folder"/>),
    /// with the checkpoints' <paramref name="resume"/> sentence after it. The graceful stop may have written the weights already
    /// (atomically: the file is whole if it is there) and not the rest: the line then names them.
    /// </summary>
    internal static string ExitedWithRecords(string folder, string resume)
    {
        var model = Path.Combine(folder, DistTrain.Core.Checkpoints.RunFiles.Model);
        var written = File.Exists(model) ? $" the rest of this run's files; {model} holds the weights at the stop, written before the exit, and" : " this run's files;";
        return $"at once, without writing{written} {Path.Combine(folder, DistTrain.Core.Checkpoints.RunFiles.Epochs)} holds the epochs finished and " +
            $"{DistTrain.Core.Checkpoints.RunFiles.Steps} their steps, written after each.{resume}";
    }

    /// <summary><see cref="ResumeHint"/>'s sentence; empty when there is none or the checkpoint folder cannot be read.</summary>
    private static string CheckpointsLeft()
    {
        try
        {
            return ResumeHint?.Invoke() ?? "";
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "";
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var registration in _registrations) registration.Dispose();
        _source.Dispose();
    }
}
