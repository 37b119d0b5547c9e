using System.Globalization;
using System.Text;

namespace DistTrain.Cluster.Metrics;

/// <summary>
/// The sample trace (<c>Monitoring:SampleTraceDirectory</c>): which training samples each worker's minibatch held, and
/// whose gradients each optimizer step applied, as CSV lines written and handed to the operating system one at a time,
/// so a node that is killed leaves every line it wrote. Joined on (weights version, worker), the two kinds of file say
/// exactly which samples each epoch trained on, also across a lost worker.
/// </summary>
/// <remarks>
/// <para><c>minibatches-{process id}-worker{index}.csv</c>, one per worker, written before the gradient is sent:
/// <c>epoch,round,version,worker,samples</c>, where version is the weights version the gradient was computed on and
/// samples the training-set indices of the minibatch, separated by spaces.</para>
/// <para><c>steps-{process id}.csv</c>, by the parameter server, when it applies a step: <c>epoch,round,version,workers</c>,
/// where version is the weights version the step's gradients were computed on (the step makes version + 1) and workers
/// the indices of the workers whose gradients it averaged, separated by spaces.</para>
/// Files are appended to; use one directory per run. A step adds one line per worker and one for the server.
/// <para>In the modes other than Sync a step's version is the one it was applied to. In Async a worker has one minibatch
/// in flight, so its steps pair with its minibatch lines in order (a worker also takes other shards' minibatches, whose
/// rounds repeat); in BoundedStaleness each round is applied once, so a minibatch line pairs with the step of its (epoch,
/// round) (a worker may compute two minibatches on one version); in LocalSgd a worker writes one line per local step, with
/// the version it started from.</para>
/// </remarks>
public sealed class SampleTrace : IDisposable
{
    private readonly StreamWriter _writer;
    private readonly StringBuilder _line = new();

    private SampleTrace(string path, string header)
    {
        var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read);
        _writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true }; // every line reaches the OS at once
        if (stream.Length == 0) _writer.WriteLine(header);
    }

    /// <summary>Opens worker <paramref name="workerIndex"/>'s minibatch file in <paramref name="directory"/>; null when the directory is empty (off).</summary>
    /// <exception cref="IOException">The directory cannot be created or the file cannot be written; the message names it.</exception>
    public static SampleTrace? ForWorker(string? directory, int workerIndex) =>
        Open(directory, $"minibatches-{Environment.ProcessId}-worker{workerIndex}.csv", "epoch,round,version,worker,samples");

    /// <summary>Opens the parameter server's step file in <paramref name="directory"/>; null when the directory is empty (off).</summary>
    /// <exception cref="IOException">The directory cannot be created or the file cannot be written; the message names it.</exception>
    public static SampleTrace? ForParameterServer(string? directory) =>
        Open(directory, $"steps-{Environment.ProcessId}.csv", "epoch,round,version,workers");

    private static SampleTrace? Open(string? directory, string fileName, string header)
    {
        if (string.IsNullOrWhiteSpace(directory)) return null;
        var path = Path.Combine(directory, fileName);
        try
        {
            Directory.CreateDirectory(directory);
            return new SampleTrace(path, header);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"Monitoring:SampleTraceDirectory = '{directory}': cannot write {path} ({e.Message}). Set a writable folder, or leave it empty.", e);
        }
    }

    /// <summary>Records that worker <paramref name="worker"/> computed a gradient on <paramref name="samples"/> with weights <paramref name="version"/>.</summary>
    public void Minibatch(int epoch, int round, long version, int worker, ReadOnlySpan<int> samples)
    {
        Start(epoch, round, version).Append(worker.ToString(CultureInfo.InvariantCulture)).Append(',');
        WriteList(samples);
    }

    /// <summary>Records that the step on weights <paramref name="version"/> averaged the gradients of <paramref name="workers"/>.</summary>
    public void Step(int epoch, int round, long version, ReadOnlySpan<int> workers)
    {
        Start(epoch, round, version);
        WriteList(workers);
    }

    private StringBuilder Start(int epoch, int round, long version) => _line.Clear()
        .Append(epoch.ToString(CultureInfo.InvariantCulture)).Append(',')
        .Append(round.ToString(CultureInfo.InvariantCulture)).Append(',')
        .Append(version.ToString(CultureInfo.InvariantCulture)).Append(',');

    /// <summary>Ends the line with <paramref name="values"/>, separated by spaces, and writes it.</summary>
    private void WriteList(ReadOnlySpan<int> values)
    {
        for (var i = 0; i < values.Length; i++)
        {
            if (i > 0) _line.Append(' ');
            _line.Append(values[i].ToString(CultureInfo.InvariantCulture));
        }
        _writer.WriteLine(_line);
    }

    /// <inheritdoc />
    public void Dispose() => _writer.Dispose();
}
