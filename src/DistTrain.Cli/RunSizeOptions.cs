using System.CommandLine;
using System.Globalization;

namespace DistTrain.Cli;

/// <summary>
/// The options that set a run's seed, minibatch and data sizes, which <c>train</c> and <c>finetune</c> both take:
/// <c>--seed</c>, <c>--batch-size</c>, <c>--train-limit</c> and <c>--test-limit</c>, each overriding its config key.
/// </summary>
internal sealed class RunSizeOptions
{
    private readonly (Option<int?> Option, string Key)[] _options =
    [
        (CliOptions.WholeNumber("--seed", "Override Training:Seed (initial weights and shuffles).", "a whole number, the seed of the initial weights and the shuffles (Training:Seed)"), "Training:Seed"),
        (CliOptions.WholeNumber("--batch-size", "Override Training:BatchSizePerWorker.", CliOptions.BatchTakes), "Training:BatchSizePerWorker"),
        (CliOptions.WholeNumber("--train-limit", "Override Data:TrainLimit (use the first N training samples).", "a whole number of training samples to use, 0 for all (Data:TrainLimit)"), "Data:TrainLimit"),
        (CliOptions.WholeNumber("--test-limit", "Override Data:TestLimit (use the first N test samples).", "a whole number of test samples to use, 0 for all (Data:TestLimit)"), "Data:TestLimit"),
    ];

    /// <summary>Adds the options to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        foreach (var (option, _) in _options) command.Options.Add(option);
    }

    /// <summary>Puts each option given on the command line into <paramref name="overrides"/> under its config key.</summary>
    public void Read(ParseResult parse, Dictionary<string, string?> overrides)
    {
        foreach (var (option, key) in _options)
            if (parse.GetValue(option) is { } value) overrides[key] = value.ToString(CultureInfo.InvariantCulture);
    }
}
