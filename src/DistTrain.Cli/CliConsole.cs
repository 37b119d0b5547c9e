using DistTrain.Cluster.Hosting;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary>Console set-up shared by the commands: errors on standard error, no wrapping in logs.</summary>
internal static class CliConsole
{
    /// <summary>Standard error, for problems; standard output stays for progress and results.</summary>
    public static readonly IAnsiConsole Error = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

    /// <summary>
    /// Called once at start-up: when output is redirected (CI, docker logs, files, pipes) nothing is wrapped, since no
    /// terminal width applies (Spectre.Console would otherwise wrap at 80 columns): a line ends where its text does. The
    /// training actors' warnings in single-node mode (<see cref="DistTrain.Cluster.Hosting.CommandLineLogger"/>) go where the
    /// commands' notices go (<see cref="Notice"/>).
    /// </summary>
    public static void Configure()
    {
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = UnlimitedWidth;
        if (Console.IsErrorRedirected) Error.Profile.Width = UnlimitedWidth;
        DistTrain.Cluster.Hosting.CommandLineLogger.Output = Notice;
    }

    /// <summary>
    /// A line said while a command runs (a warning, a Ctrl-C notice): to standard error, except while the live view owns
    /// the terminal, where it goes above the view (a write of its own would tear the view).
    /// </summary>
    public static void Notice(string line)
    {
        if (ConsoleProgress.LiveViewActive) ConsoleProgress.WriteAbove(line);
        else Error.WriteLine(line);
    }

    /// <summary>The console width given to Spectre.Console for redirected output: no line is ever that long.</summary>
    private const int UnlimitedWidth = int.MaxValue;

    /// <summary>
    /// Runs a training (either mode) and maps its failures to the documented exit codes: 3 diverged,
    /// 130 cancelled, 1 failed (stall, lost actor, refused or lost node (a worker node that was downed exits 4 instead, in NodeCommand), no checkpoint to resume fits, a checkpoint or other
    /// file that could not be written or read); null when it completed.
    /// <paramref name="onCancelled"/> reports a cancellation (and keeps or removes the run folder); without it a line says nothing was saved.
    /// <paramref name="onFailed"/>, after the failure's line, keeps what a failed run has (the finished epochs, and the weights a
    /// <see cref="DistTrain.Cluster.Actors.TrainingStalledException"/> carries when a paused job ran out of time); exit code 1 either way.
    /// <paramref name="model"/>, when given, turns an <see cref="OutOfMemoryException"/> (building the replicas or the
    /// optimizer state of a model too large for this machine) into one <c>error:</c> line (<see cref="OutOfMemory"/>) and exit
    /// code 1, instead of an unhandled exception. An input problem found only during training (<see cref="IsInputError"/>),
    /// and a port taken once the start-up check had passed (<see cref="DistTrain.Cluster.Hosting.PortInUseException"/>), is an
    /// <c>error:</c> line and exit code 2; any other exception is a fault in DistTrain: an <c>internal error:</c> line,
    /// the exception for a report, and exit code 1. That line says how the run continues, which depends on the command:
    /// <paramref name="afterInternalError"/> (<see cref="InternalError"/>; by default <c>train</c>'s <c>--resume</c>).
    /// </summary>
    public static async Task<int?> RunTrainingAsync(Func<Task> training, Action<DistTrain.Cluster.Actors.TrainingDivergedException>? onDiverged = null,
        Action<OperationCanceledException>? onCancelled = null, DistTrain.Core.Configuration.TrainingOptions? model = null,
        Action<Exception>? onFailed = null, string? afterInternalError = null)
    {
        try
        {
            await training();
            return null;
        }
        catch (DistTrain.Cluster.Actors.TrainingDivergedException e)
        {
            Fail("training diverged", DivergedDetail(e.Message));
            return SavedOr1(() => onDiverged?.Invoke(e), 3);
        }
        catch (OperationCanceledException e)
        {
            if (onCancelled is null) Fail("cancelled", "stopped before the end; nothing was saved.");
            else return SavedOr1(() => onCancelled(e), 130);
            return 130;
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException or DistTrain.Cluster.Actors.TrainingStalledException
                                       or IOException or UnauthorizedAccessException)
        {
            Fail("training failed", e.Message);
            return onFailed is null ? 1 : SavedOr1(() => onFailed(e), 1);
        }
        catch (OutOfMemoryException) when (model is not null)
        {
            Fail("error", OutOfMemory(model));
            return 1;
        }
        catch (DistTrain.Cluster.Hosting.PortInUseException e)
        {
            // Cluster:Port taken by another process after the start-up check, before Akka.Remote bound it: the one line the
            // check gives, not a fault in DistTrain.
            Fail("error", e.Message);
            return 2;
        }
        catch (Exception e) when (IsInputError(e))
        {
            // A problem with the input found only once training ran (an empty training set, a checkpoint of another size).
            Fail("error", e.Message);
            return 2;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // A fault in DistTrain itself, not in the input: one line that says so, then the details to report.
            Fail("internal error", InternalError(e, afterInternalError ?? ResumeAfterInternalError("train --resume")));
            Error.WriteLine(e.ToString(), Style.Plain);
            return 1;
        }
    }

    /// <summary>
    /// The <c>internal error:</c> line's text for <paramref name="e"/>, a fault in DistTrain: the exception's type and message,
    /// that it is no fault of the config or data, <paramref name="continueWith"/>, and that the details follow.
    /// </summary>
    /// <param name="e">The unexpected exception.</param>
    /// <param name="continueWith">How the command's run continues after it, a clause without a final full stop
    /// (<see cref="ResumeAfterInternalError"/> for a single-node run; a cluster node says its own, in <c>NodeCommand</c>).</param>
    public static string InternalError(Exception e, string continueWith) =>
        $"{e.GetType().Name}: {e.Message} This is a fault in DistTrain, not in the config or data; {continueWith}. The details for a report follow.";

    /// <summary>
    /// <see cref="InternalError"/>'s clause for a single-node run that resumes with <paramref name="resumeWith"/> (<c>train --resume</c>,
    /// or a finetune command with Checkpoint:Resume).
    /// </summary>
    public static string ResumeAfterInternalError(string resumeWith) =>
        $"with Checkpoint:Directory set, {resumeWith} continues from the newest checkpoint";

    /// <summary>
    /// The one line for an <see cref="OutOfMemoryException"/> while the model, its replicas or its optimizer state were
    /// built: the model's parameters and their bytes as float32, counted from the shapes (nothing more is allocated), and
    /// what to change.
    /// </summary>
    /// <param name="options">The run's options: the model and the number of workers.</param>
    public static string OutOfMemory(DistTrain.Core.Configuration.TrainingOptions options)
    {
        var parameters = DistTrain.Core.Models.ModelFactory.ParameterCounts(options.Model).Sum();
        var bytes = parameters * sizeof(float);
        var workers = options.Training.Workers;
        var culture = System.Globalization.CultureInfo.InvariantCulture;
        var size = $"{parameters.ToString("N0", culture)} parameters, {bytes.ToString("N0", culture)} bytes ({(bytes / (double)(1L << 30)).ToString("0.0", culture)} GiB)";
        return $"out of memory building the model: it has {size} as float32, and training holds several copies of them (weights and gradients in " +
            $"each of the {workers} worker{(workers == 1 ? "" : "s")}, weights, gradients and optimizer state at the parameter server). Use a smaller " +
            "model (fewer Units or Channels in Model:Layers), fewer Training:Workers, or a machine with more memory.";
    }

    /// <summary>
    /// Before a single-node run allocates its model: false, after one <c>error:</c> line (<see cref="TrainingMemory.Refusal"/>:
    /// the parameters, the bytes needed and available, and the fix), when the run's estimated memory
    /// (<see cref="TrainingMemory.SingleNode"/>) exceeds what this process may use (<see cref="TrainingMemory.AvailableBytes"/>);
    /// the caller exits with code 2. True when it fits, after a line naming the model and its memory when that is at least
    /// <see cref="TrainingMemory.AnnouncedBytes"/>, so a long allocation is never silent.
    /// </summary>
    /// <param name="options">The run's validated options.</param>
    /// <param name="availableBytes">Bytes the process may use; null asks <see cref="TrainingMemory.AvailableBytes"/>.</param>
    public static bool FitsInMemory(DistTrain.Core.Configuration.TrainingOptions options, long? availableBytes = null) =>
        FitsInMemory(TrainingMemory.SingleNode(options), availableBytes);

    /// <summary>As <see cref="FitsInMemory(DistTrain.Core.Configuration.TrainingOptions, long?)"/>, for an estimate made
    /// already (a cluster node's, <see cref="TrainingMemory.Node"/>).</summary>
    public static bool FitsInMemory(TrainingMemory memory, long? availableBytes = null)
    {
        if (memory.Refusal(availableBytes ?? TrainingMemory.AvailableBytes()) is { } refusal)
        {
            Fail("error", refusal);
            return false;
        }
        if (memory.TotalBytes >= TrainingMemory.AnnouncedBytes) AnsiConsole.WriteLine(memory.Announcement());
        return true;
    }

    /// <summary>Runs <paramref name="save"/>, which writes a run's outputs (or what a stopped run keeps); returns
    /// <paramref name="exit"/>, or 1 after printing the reason when they could not be written (<see cref="RunOutputsException"/>).</summary>
    public static int SavedOr1(Action save, int exit)
    {
        try
        {
            save();
            return exit;
        }
        catch (RunOutputsException e)
        {
            Fail("error", e.Message);
            return 1;
        }
    }

    /// <summary>
    /// A problem with what the user gave (config, data file, checkpoint or model file, including one it may not read, output
    /// folder): reported with exit code 2, never as a crash.
    /// </summary>
    public static bool IsInputError(Exception e) =>
        e is DistTrain.Core.Configuration.ConfigurationException or DistTrain.Core.Data.DataFormatException or RunDirectoryException
            or InvalidDataException or DistTrain.Core.Checkpoints.SafeTensorsFormatException or ArgumentException
            or DistTrain.Cluster.Hosting.CheckpointResumeException or DistTrain.Cluster.Hosting.UnresolvableHostException
            or DistTrain.Cluster.Hosting.AddressNotLocalException or MetricsPortException or DistTrain.Core.Checkpoints.CheckpointDirectoryException
            or DistTrain.Core.Checkpoints.UnreadableFileException;

    /// <summary>
    /// A <see cref="DistTrain.Cluster.Actors.TrainingDivergedException"/>'s message for the <c>training diverged:</c> line: without
    /// its own leading "Training diverged ", which the label already says ("training diverged: at epoch 2, step 19 ...").
    /// </summary>
    internal static string DivergedDetail(string message)
    {
        const string start = "Training diverged ";
        return message.StartsWith(start, StringComparison.Ordinal) ? message[start.Length..] : message;
    }

    /// <summary>Prints "error: message" on standard error, the label in red, the message as it is (<see cref="WriteLiteralLine(IAnsiConsole, string, Style?)"/>).</summary>
    public static void Fail(string label, string message) => Error.WriteLiteralLine(label + ":", new Style(Color.Red), " " + message);

    /// <summary>
    /// Writes <paramref name="text"/> exactly as it is, in <paramref name="style"/>, then a line break. Spectre.Console's
    /// markup turns an emoji shortcode such as <c>:fire:</c> into the emoji, and <c>Markup.Escape</c> leaves shortcodes
    /// alone (spectre.console issue 408), so a config key (<c>Training:fire</c>), a path or a class name written through
    /// markup could come out changed; text written here is never parsed.
    /// </summary>
    /// <remarks>One write of one renderable, so lines written from two threads never interleave.</remarks>
    public static void WriteLiteralLine(this IAnsiConsole console, string text, Style? style = null) =>
        console.Write(new Paragraph(text + "\n", style ?? Style.Plain));

    /// <summary>As <see cref="WriteLiteralLine(IAnsiConsole, string, Style?)"/>: <paramref name="styled"/> in
    /// <paramref name="style"/>, then <paramref name="rest"/> plain, on one line, in one write.</summary>
    public static void WriteLiteralLine(this IAnsiConsole console, string styled, Style style, string rest) =>
        console.Write(new Paragraph().Append(styled, style).Append(rest + "\n", Style.Plain));

    /// <summary>Adds a row of cells written exactly as they are (<see cref="WriteLiteralLine(IAnsiConsole, string, Style?)"/>): a class name or path in a
    /// table is never read as markup or emoji.</summary>
    public static Table AddLiteralRow(this Table table, params IEnumerable<string> cells) =>
        table.AddRow(cells.Select(cell => (Spectre.Console.Rendering.IRenderable)new Text(cell)));

    /// <summary>Standard output, for <see cref="WriteLiteralLine(IAnsiConsole, string, Style?)"/>.</summary>
    public static IAnsiConsole Out => AnsiConsole.Console;

    /// <summary>
    /// The action of a command that does not train (predict, evaluate, export, inspect, compare): runs <paramref name="body"/>
    /// with the command's <see cref="CancellationToken"/> (<see cref="GracefulCancellation"/>). The body checks the token
    /// while it works and before it writes any output, so a first Ctrl-C or SIGTERM stops it there: one <c>cancelled:</c>
    /// line on standard error, nothing written, and exit code 130, as a cancelled training.
    /// </summary>
    /// <param name="body">The command's work; returns its exit code and throws <see cref="OperationCanceledException"/> once cancelled.</param>
    /// <returns>The action, for <c>Command.SetAction</c>.</returns>
    public static Func<System.CommandLine.ParseResult, CancellationToken, Task<int>> Cancellable(Func<System.CommandLine.ParseResult, CancellationToken, int> body) =>
        (parse, cancellationToken) =>
        {
            try
            {
                cancellationToken.ThrowIfCancellationRequested();
                return Task.FromResult(body(parse, cancellationToken));
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                Fail("cancelled", "stopped before the end; nothing was written.");
                return Task.FromResult(130);
            }
        };
}
