using System.Globalization;
using System.Text;
using System.Text.Json;
using DistTrain.Cluster.Protocol;

namespace DistTrain.Cluster.Hosting;

/// <summary>
/// The sample log (<c>Output:SampleLogFile</c>): one JSON object per line saying which training samples went into the
/// weights. A worker writes a <c>computed</c> line for every gradient it sends, with the sample indices of its minibatch;
/// the parameter server writes an <c>applied</c> line for every optimizer step, with each contributing worker's sample
/// count and loss sum. Joined on (epoch, round, version, worker), with the loss sums equal to the bit, the lines say which
/// samples every applied step trained on, from what each side did rather than from a plan.
/// </summary>
/// <remarks>
/// <para>Lines:</para>
/// <code>
/// {"event":"computed","time":"2026-12-01T10:00:00.123Z","epoch":2,"round":5,"version":123,"worker":1,"lossSum":14.2,"samples":[17,4,...]}
/// {"event":"applied","time":"2026-12-01T10:00:00.125Z","epoch":2,"round":5,"version":123,"contributions":[{"worker":0,"samples":32,"lossSum":13.9},...]}
/// </code>
/// <para><c>version</c> is the weights version the gradients were computed on (the step makes version + 1); <c>time</c>
/// is UTC when the line was written. Each line is flushed as it is written, so a killed process loses none it wrote. A
/// join is unambiguous within one parameter server's run: a standby that takes over repeats versions after its checkpoint
/// and gives worker indices anew. Use one file per process (cluster nodes on one machine each need their own).</para>
/// <para>Off by default. When on, each step allocates its line (a worker's step otherwise allocates nothing).</para>
/// </remarks>
public sealed class SampleLog : IDisposable
{
    private readonly StreamWriter _writer;
    private readonly object _gate = new();
    private readonly StringBuilder _line = new();

    private SampleLog(string path)
    {
        var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite);
        _writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true };
    }

    /// <summary>Opens (appending) the file named by <paramref name="path"/>, or returns null when it is empty (the log is off).</summary>
    /// <param name="path">Output:SampleLogFile.</param>
    /// <exception cref="IOException">The file cannot be opened for appending; the message names it.</exception>
    public static SampleLog? Open(string path)
    {
        if (string.IsNullOrWhiteSpace(path)) return null;
        try
        {
            return new SampleLog(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"Output:SampleLogFile = '{path}' cannot be opened for appending: {e.Message}. Set a writable file, or leave the key empty.", e);
        }
    }

    /// <summary>A worker sends the gradient of <paramref name="samples"/> (indices into the training split).</summary>
    /// <param name="epoch">Epoch of the round.</param>
    /// <param name="round">Round (minibatch number within the epoch).</param>
    /// <param name="version">Weights version the gradient was computed on.</param>
    /// <param name="worker">The worker's index in the job.</param>
    /// <param name="lossSum">Summed loss of the minibatch, as sent to the parameter server.</param>
    /// <param name="samples">Indices of the minibatch's samples.</param>
    public void Computed(int epoch, int round, long version, int worker, double lossSum, ReadOnlySpan<int> samples)
    {
        lock (_gate)
        {
            Begin("computed", epoch, round, version);
            _line.Append(CultureInfo.InvariantCulture, $",\"worker\":{worker},\"lossSum\":{Number(lossSum)},\"samples\":[");
            for (var i = 0; i < samples.Length; i++)
            {
                if (i > 0) _line.Append(',');
                _line.Append(samples[i]);
            }
            _line.Append("]}");
            _writer.WriteLine(_line);
        }
    }

    /// <summary>The parameter server applies one optimizer step from <paramref name="gradients"/> (null entries: no gradient from that worker).</summary>
    /// <param name="epoch">Epoch of the round.</param>
    /// <param name="round">Round applied.</param>
    /// <param name="version">Weights version the gradients were computed on.</param>
    /// <param name="gradients">The round's gradients by worker index.</param>
    public void Applied(int epoch, int round, long version, IReadOnlyList<GradientComputed?> gradients)
    {
        lock (_gate)
        {
            Begin("applied", epoch, round, version);
            _line.Append(",\"contributions\":[");
            var first = true;
            foreach (var gradient in gradients)
            {
                if (gradient is null) continue;
                if (!first) _line.Append(',');
                first = false;
                _line.Append(CultureInfo.InvariantCulture,
                    $"{{\"worker\":{gradient.WorkerIndex},\"samples\":{gradient.SampleCount},\"lossSum\":{Number(gradient.LossSum)}}}");
            }
            _line.Append("]}");
            _writer.WriteLine(_line);
        }
    }

    private void Begin(string kind, int epoch, int round, long version) =>
        _line.Clear().Append(CultureInfo.InvariantCulture,
            $"{{\"event\":\"{kind}\",\"time\":\"{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ}\",\"epoch\":{epoch},\"round\":{round},\"version\":{version}");

    /// <summary>A double as JSON: round-trip digits, or null for NaN and infinities (which JSON cannot hold).</summary>
    private static string Number(double value) => double.IsFinite(value) ? JsonSerializer.Serialize(value) : "null";

    /// <inheritdoc />
    public void Dispose()
    {
        lock (_gate) _writer.Dispose();
    }
}
