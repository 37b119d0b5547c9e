using System.Text;

namespace DistTrain.Cli;

/// <summary>
/// Standard output and standard error that a failed write cannot stop: a write that fails (a full disk under a redirected
/// log, a closed descriptor; .NET itself ignores a pipe whose reader went away) is dropped with every later write to that stream, the
/// command runs on (a training run keeps training and writes its files), and at the end <see cref="Finish"/> says what
/// was lost and turns a success into exit code 1. Without this, the first failed write threw out of whatever was
/// printing: a stack trace, or a training run ended as failed with its finished epochs thrown away.
/// </summary>
internal static class FailSafeConsole
{
    private static FailSafeWriter? _out;
    private static FailSafeWriter? _error;

    /// <summary>Replaces <see cref="Console.Out"/> and <see cref="Console.Error"/>; call first thing, before anything writes to
    /// or captures them (Spectre.Console, Akka's logger).</summary>
    public static void Install()
    {
        _out = new FailSafeWriter(Console.Out, "standard output");
        _error = new FailSafeWriter(Console.Error, "standard error");
        Console.SetOut(_out);
        Console.SetError(_error);
    }

    /// <summary>
    /// The exit code to return for a command that returned <paramref name="exitCode"/>: unchanged when every console
    /// write went through; otherwise 1 in place of 0, after one <c>error:</c> line on whichever stream still works naming
    /// the stream, the reason and what was lost.
    /// </summary>
    /// <param name="exitCode">The command's exit code.</param>
    /// <param name="command">The command line's first word (train, predict, ...), to say where a training run's files are.</param>
    public static int Finish(int exitCode, string? command = null)
    {
        var failed = _out?.Failure ?? _error?.Failure;
        if (failed is null) return exitCode;
        var stream = _out?.Failure is not null ? _out : _error!;
        var other = ReferenceEquals(stream, _out) ? _error : _out;
        other?.WriteLine($"error: writing to {stream.Name} failed ({failed}), so the command's output from then on is lost. " +
                         $"The command itself ran to its end{(exitCode == 0 ? "" : $" (exit code {exitCode})")}" +
                         (command is "train" or "finetune" or "node" ? "; the run's files are in its run folder. " : ". ") +
                         $"Free space where {stream.Name} goes, or send it elsewhere.");
        return exitCode == 0 ? 1 : exitCode;
    }

    /// <summary>Forwards to <c>inner</c> until a write fails, then drops everything; <see cref="Failure"/> holds the reason.</summary>
    internal sealed class FailSafeWriter(TextWriter inner, string name) : TextWriter
    {
        private volatile string? _failure;

        /// <summary>"standard output" or "standard error".</summary>
        public string Name { get; } = name;

        /// <summary>The first failed write's message; null while every write went through.</summary>
        public string? Failure => _failure;

        /// <inheritdoc />
        public override Encoding Encoding => inner.Encoding;

        /// <inheritdoc />
        public override IFormatProvider FormatProvider => inner.FormatProvider;

        /// <inheritdoc />
        public override string NewLine
        {
            get => inner.NewLine;
#pragma warning disable CS8765 // TextWriter.NewLine's setter takes null as the default; the inner writer handles it
            set => inner.NewLine = value;
#pragma warning restore CS8765
        }

        /// <inheritdoc />
        public override void Write(char value) => Guard(value, static (w, v) => w.Write(v));

        /// <inheritdoc />
        public override void Write(string? value) => Guard(value, static (w, v) => w.Write(v));

        /// <inheritdoc />
        public override void Write(char[] buffer, int index, int count) => Guard((buffer, index, count), static (w, v) => w.Write(v.buffer, v.index, v.count));

        /// <inheritdoc />
        public override void WriteLine() => Guard(0, static (w, _) => w.WriteLine());

        /// <inheritdoc />
        public override void WriteLine(string? value) => Guard(value, static (w, v) => w.WriteLine(v));

        /// <inheritdoc />
        public override void Flush() => Guard(0, static (w, _) => w.Flush());

        private void Guard<T>(T value, Action<TextWriter, T> write)
        {
            if (_failure is not null) return;
            try
            {
                write(inner, value);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException)
            {
                _failure ??= e.Message;
            }
        }
    }
}
