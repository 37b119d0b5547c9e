using System.Text;
using Akka.Hosting;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// Akka.Hosting's service that starts a node's actor system, whose failed start ends with its exception alone. Akka.Hosting
/// (1.5.74) writes every start failure to standard output, the whole exception with its stack traces (about 30 lines for
/// Akka.Remote's bind failure under its five <see cref="AggregateException"/>s), before it throws it again; a node's caller
/// reports the exception itself: the command line as one line for a taken port (<see cref="PortInUseException"/>), or with
/// the details of an internal error, and an API caller gets it thrown. So nothing is lost by leaving that copy out, and a
/// taken Cluster:Port is one line instead of pages.
/// </summary>
/// <remarks>
/// The start is Akka.Hosting's own (its configuration builder's start is internal to it); only its line on standard output,
/// the one that begins with <see cref="StartFailureLine"/>, is dropped, and only while this service starts (in that
/// asynchronous flow): every other write to standard output, from any thread, passes unchanged.
/// </remarks>
/// <param name="configurationBuilder">The node's Akka configuration (Akka.Hosting's, from the service collection).</param>
/// <param name="serviceProvider">The host's services, which create the actor system.</param>
/// <param name="logger">Akka.Hosting's logger (the node's host has no logging provider).</param>
/// <param name="applicationLifetime">The host's lifetime, stopped when the actor system terminates.</param>
public sealed class NodeHostedService(AkkaConfigurationBuilder configurationBuilder, IServiceProvider serviceProvider,
    ILogger<AkkaHostedService> logger, IHostApplicationLifetime? applicationLifetime)
    : AkkaHostedService(configurationBuilder, serviceProvider, logger, applicationLifetime)
{
    /// <summary>How Akka.Hosting's copy of a start failure on standard output begins.</summary>
    public const string StartFailureLine = "Unable to start AkkaHostedService";

    private static readonly AsyncLocal<bool> Starting = new();
    private static readonly Lock InstallLock = new();
    private static TextWriter? _front; // Console.Out once the filter was put in front of it (SetOut wraps it, synchronized)

    /// <summary>Starts the actor system as Akka.Hosting does, without its copy of a failure on standard output.</summary>
    /// <param name="cancellationToken">Passed to Akka.Hosting's start.</param>
    /// <exception cref="Exception">Whatever the actor system's start threw (Akka.Remote's bind failure, nested in
    /// <see cref="AggregateException"/>s), after Akka.Hosting shut the system down.</exception>
    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        Install();
        Starting.Value = true; // this flow only: the value is the caller's again once this method returns
        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Puts the filter in front of standard output, once (again if something has replaced standard output since).</summary>
    private static void Install()
    {
        lock (InstallLock)
        {
            if (_front is not null && ReferenceEquals(_front, Console.Out)) return;
            Console.SetOut(new StartFailureFilter(Console.Out));
            _front = Console.Out;
        }
    }

    /// <summary>Standard output that drops Akka.Hosting's start-failure line while a node's service starts.</summary>
    private sealed class StartFailureFilter(TextWriter inner) : TextWriter
    {
        private TextWriter Inner { get; } = inner;

        public override Encoding Encoding => Inner.Encoding;

        public override IFormatProvider FormatProvider => Inner.FormatProvider;

        public override string NewLine
        {
#pragma warning disable CS8765 // TextWriter.NewLine's setter takes null (the default); the getter never returns it
            get => Inner.NewLine;
            set => Inner.NewLine = value;
#pragma warning restore CS8765
        }

        public override void Write(char value) => Inner.Write(value);

        public override void Write(string? value) => Inner.Write(value);

        public override void Write(char[] buffer, int index, int count) => Inner.Write(buffer, index, count);

        public override void WriteLine(string? value)
        {
            if (Starting.Value && value is not null && value.StartsWith(StartFailureLine, StringComparison.Ordinal)) return;
            Inner.WriteLine(value);
        }

        public override void WriteLine() => Inner.WriteLine();

        public override void Flush() => Inner.Flush();

        public override Task FlushAsync() => Inner.FlushAsync();
    }
}
