using CsCheck;

namespace DistTrain.Fuzz;

/// <summary>One reader of outside bytes under fuzzing. An input is bytes; a target whose reader also takes an expectation
/// (the message type, the frame's expected length) decodes it from the input's first bytes.</summary>
/// <param name="Name">The name <c>run.sh</c> and the report use.</param>
/// <param name="Inputs">The generator of inputs (mutated valid inputs and structured hostile ones).</param>
/// <param name="Read">Feeds one input to the reader; returns normally when the reader accepts it, throws
/// <see cref="FuzzFinding"/> when a property of the answer does not hold.</param>
/// <param name="IsRefusal">True for the exception the reader documents for bad input (anything else is a crash).</param>
/// <param name="AllocationLimit">Bytes the reader may allocate for an input: a small constant plus a multiple of the input's
/// size; more is reported as a finding (memory not bounded by what arrived).</param>
/// <param name="CheckRefusal">Optional property of a refusal, e.g. that the message names the file (throws <see cref="FuzzFinding"/>).</param>
public sealed record FuzzTarget(
    string Name,
    Gen<byte[]> Inputs,
    Action<byte[]> Read,
    Func<Exception, bool> IsRefusal,
    Func<byte[], long> AllocationLimit,
    Action<byte[], Exception>? CheckRefusal = null);

/// <summary>A property of a reader did not hold for an input: a crash, a hang, too much memory or a bad answer.</summary>
/// <param name="kind">The class of finding (<c>crash: type</c>, <c>memory</c>, <c>hang</c>, <c>accepted</c>, ...): minimizing keeps it.</param>
/// <param name="message">What happened.</param>
/// <param name="inner">The reader's exception, for a crash.</param>
public sealed class FuzzFinding(string kind, string message, Exception? inner = null) : Exception($"{kind}: {message}", inner)
{
    /// <summary>The class of finding; two inputs with the same kind show the same defect.</summary>
    public string Kind { get; } = kind;
}

/// <summary>A fuzzing run stopped on a finding.</summary>
/// <param name="target">The reader.</param>
/// <param name="finding">The finding for the smallest input.</param>
/// <param name="smallest">The smallest input that shows it (CsCheck's shrinking, then byte-level minimization).</param>
/// <param name="seedLine">CsCheck's line with the seed that repeats the run.</param>
public sealed class FuzzFailure(string target, FuzzFinding finding, byte[] smallest, string seedLine)
    : Exception($"{target}: {finding.Message}{Environment.NewLine}smallest input ({smallest.Length} bytes): {Convert.ToHexString(smallest)}{Environment.NewLine}{seedLine}", finding)
{
    /// <summary>The smallest input that shows the finding.</summary>
    public byte[] Smallest { get; } = smallest;
}
