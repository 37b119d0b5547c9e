using Akka.Actor;
using Akka.Dispatch;
using Akka.Event;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// Akka's logger for single-node mode (<see cref="SingleNodeTrainer"/>): the actors' warnings reach standard error as the
/// command line's own do, <c>warning: text</c>, instead of Akka's service-log prefix
/// (<c>[WARNING][12/02/2026 14:02:49.993Z][Thread 0005][akka://disttrain/user/coordinator] text</c>), which a cluster node
/// keeps. An error keeps its exception, stack trace included, after <c>error: text</c>: it is a fault to report.
/// </summary>
public sealed class CommandLineLogger : ReceiveActor, IRequiresMessageQueue<ILoggerMessageQueueSemantics>
{
    /// <summary>The configuration value that selects this logger (<c>akka.loggers</c>).</summary>
    public static readonly string ConfigName = $"{typeof(CommandLineLogger).FullName}, {typeof(CommandLineLogger).Assembly.GetName().Name}";

    /// <summary>Creates the logger; Akka does, from <c>akka.loggers</c>.</summary>
    public CommandLineLogger()
    {
        Receive<InitializeLogger>(_ => Sender.Tell(new LoggerInitialized()));
        Receive<Warning>(warning =>
        {
            Write($"warning: {warning.Message}");
            WarningLogged?.Invoke($"{warning.Message}");
        });
        Receive<Error>(error => Write(error.Cause is null ? $"error: {error.Message}" : $"error: {error.Message}{Environment.NewLine}{error.Cause}"));
        Receive<LogEvent>(_ => { }); // below the level set (WARNING): not printed
    }

    /// <summary>
    /// Where the lines go: standard error unless set. The command line sets it to its own notices' output, which writes
    /// above its live view while that owns the terminal, instead of through it, and to standard error otherwise.
    /// </summary>
    public static Action<string>? Output { get; set; }

    /// <summary>
    /// Receives the text of every warning this logger writes (without <c>warning: </c>), for a run's end-of-run diagnosis
    /// (the vanishing-gradient warnings). Handlers must not throw.
    /// </summary>
    public static event Action<string>? WarningLogged;

    /// <summary>One line to <see cref="Output"/>; a failed write (a closed descriptor, a full disk) stops nothing.</summary>
    internal static void Write(string line)
    {
        try
        {
            if (Output is { } output) output(line);
            else Console.Error.WriteLine(line);
        }
        catch (IOException)
        {
        }
    }
}
