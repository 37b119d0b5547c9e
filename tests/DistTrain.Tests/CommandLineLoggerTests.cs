using System.Collections.Concurrent;
using Akka.Actor;
using Akka.Event;
using DistTrain.Cluster.Hosting;

namespace DistTrain.Tests;

/// <summary>Single-node mode's logger: the actors' warnings as the command line's own lines, through the output it is given.</summary>
public sealed class CommandLineLoggerTests
{
    [Fact]
    public void Warnings_reach_the_output_the_command_line_set_as_warning_lines_and_infos_do_not()
    {
        // The command line sets the output so that, on a terminal, a warning is written above the live view; a write of the
        // logger's own went through the view and tore it.
        var lines = new ConcurrentQueue<string>();
        var before = CommandLineLogger.Output;
        CommandLineLogger.Output = lines.Enqueue;
        try
        {
            var config = Akka.Configuration.ConfigurationFactory.ParseString($"akka.loggers = [\"{CommandLineLogger.ConfigName}\"]")
                .WithFallback(AkkaSettings.Logging("WARNING"));
            using (var system = ActorSystem.Create("command-line-logger", config))
            {
                var log = Logging.GetLogger(system, "probe");
                log.Info("an info line, below the level");
                log.Warning("Vanishing gradient: probe.weight");
                SpinWait.SpinUntil(() => lines.Any(l => l.Contains("probe.weight", StringComparison.Ordinal)), TimeSpan.FromSeconds(10));
            }
            Assert.Contains("warning: Vanishing gradient: probe.weight", lines);
            Assert.DoesNotContain(lines, l => l.Contains("an info line", StringComparison.Ordinal) || l.StartsWith('['));
        }
        finally
        {
            CommandLineLogger.Output = before;
        }
    }
}
