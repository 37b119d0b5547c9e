using System.CommandLine;
using System.CommandLine.Parsing;
using DistTrain.Core.Configuration;

namespace DistTrain.Cli;

/// <summary>
/// Turns a failed parse of the command line into one line per problem, each naming the option or argument, the value
/// given and what it takes. It replaces System.CommandLine's report, which printed .NET type names
/// (<c>System.Nullable`1[System.Int32]</c>), the whole help text, and "did you mean" lists for values (<c>2</c> after a
/// mistyped option was offered <c>-c -w -e -o</c>). Tokens that nothing took are reported here, with the token before
/// them for context, in place of the parser's "Unrecognized command or argument" errors.
/// </summary>
internal static class ParseErrors
{
    /// <summary>The problems of <paramref name="parse"/>, one line each; empty when it parsed.</summary>
    public static IReadOnlyList<string> Describe(ParseResult parse)
    {
        var command = parse.CommandResult.Command;
        var name = command is RootCommand ? "disttrain" : $"disttrain {command.Name}";
        var lines = new List<string>();
        var missingRequired = command.Options.Where(o => o.Required && parse.GetResult(o) is null or { Implicit: true }).ToList();
        foreach (var option in missingRequired)
            lines.Add($"{name} needs {option.Name} {option.HelpName}: {(CliOptions.Takes(option) ?? option.Description)?.TrimEnd('.')}.");
        foreach (var error in parse.Errors)
        {
            if (error.SymbolResult is CommandResult && parse.UnmatchedTokens.Any(t => error.Message.Contains($"'{t}'", StringComparison.Ordinal)))
                continue; // an unmatched token: reported below
            var line = Describe(error, name, command, missingRequired, parse.UnmatchedTokens.Count > 0, parse.Tokens);
            if (line is not null && !lines.Contains(line)) lines.Add(line);
        }
        foreach (var line in Repeated(parse, command))
            if (!lines.Contains(line)) lines.Add(line);
        lines.AddRange(Unmatched(parse, name, command));
        return lines;
    }

    /// <summary>
    /// An option of one value given more than once where the parser reports nothing: "-o A -o", the second without a value,
    /// parsed as "-o A" and the second occurrence was dropped without a word. (With two values the parser's error is
    /// reported as <c>GivenTwice</c>.) Flags, which take no value, may repeat.
    /// </summary>
    private static IEnumerable<string> Repeated(ParseResult parse, Command command)
    {
        foreach (var option in command.Options.Concat(parse.RootCommandResult.Command.Options).Distinct())
        {
            if (option.Arity.MaximumNumberOfValues != 1 || option.Arity.MinimumNumberOfValues < 1) continue;
            // With two values, or none at all (the parser's "needs a value"), the parser's error already says it.
            if (parse.GetResult(option) is not { Implicit: false } result || result.Tokens.Count is 0 or > 1 || HasError(parse, result)) continue;
            if (Occurrences(option, parse.Tokens) >= 2) yield return GivenMoreThanOnce(option, result, parse.Tokens);
        }
    }

    /// <summary>How many times <paramref name="option"/> is named on the line, by any of its spellings.</summary>
    private static int Occurrences(Option option, IReadOnlyList<Token> tokens)
    {
        var spellings = option.Aliases.Append(option.Name).ToHashSet(StringComparer.Ordinal);
        return tokens.Count(t => t.Type == TokenType.Option && spellings.Contains(t.Value));
    }

    /// <summary>
    /// An option of one value named more than once: each value given, and the occurrences without one ("-o A --output B" was
    /// the parser's "Option '-o' expects a single argument but 2 were provided", which named one spelling).
    /// </summary>
    private static string GivenMoreThanOnce(Option option, OptionResult result, IReadOnlyList<Token> tokens)
    {
        var values = result.Tokens.Select(t => $"'{t.Value}'").ToList();
        var times = Math.Max(values.Count, Occurrences(option, tokens));
        var withoutValue = times - values.Count;
        var given = string.Join(", ", values.Concat(withoutValue > 0 ? [withoutValue == 1 ? "once without a value" : $"{withoutValue} times without a value"] : []));
        return $"{string.Join("/", option.Aliases.Order(StringComparer.Ordinal).Append(option.Name))} is given {times} times ({given}); it takes one value: give it once.";
    }

    /// <summary>
    /// The config's problems on a command line that did not parse, as the command reports them once it does, so that every
    /// problem is reported in one go (a bad --batch-size and --epochs 0 were two rounds): for a command with a required
    /// --config that parsed (train, finetune, node), the config loaded with the overrides of the options of
    /// <see cref="CliOptions.OptionOfKey"/> that parsed. The problems of a key whose option did not parse are left out: the
    /// value on the command line is to replace it. Null when there is nothing to check or the config is valid.
    /// </summary>
    /// <param name="parse">A parse with errors.</param>
    /// <param name="environment">Environment variables to read; null reads the process environment, as the command does.</param>
    /// <returns>The message of the config's <see cref="ConfigurationException"/>: "Invalid configuration (FILE):" and a line per problem.</returns>
    public static string? ConfigProblems(ParseResult parse, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var command = parse.CommandResult.Command;
        if (command.Options.FirstOrDefault(o => o.Name == "--config") is not Option<FileInfo> { Required: true } config
            || parse.GetResult(config) is not { Implicit: false } given || HasError(parse, given) || parse.GetValue(config) is not { } file)
            return null;
        var overrides = new Dictionary<string, string?>();
        var unparsed = new List<string>();
        foreach (var option in command.Options)
        {
            var key = CliOptions.OptionOfKey.FirstOrDefault(kv => kv.Value == option.Name).Key;
            if (key is null || parse.GetResult(option) is not { Implicit: false } result) continue;
            if (HasError(parse, result)) unparsed.Add(key);
            else if (option is Option<bool> flag) { if (parse.GetValue(flag)) overrides[key] = "true"; }
            else if (result.Tokens.Count > 0) overrides[key] = result.Tokens[^1].Value;
        }
        try
        {
            TrainingOptionsLoader.Load(file.FullName, overrides, CliOptions.OptionOfKey, environment: environment);
            return null;
        }
        catch (ConfigurationException e)
        {
            var problems = e.Problems.Where(p => !unparsed.Any(key => p.StartsWith(key + " ", StringComparison.OrdinalIgnoreCase))).ToList();
            return problems.Count == 0 ? null : new ConfigurationException(file.FullName, problems).Message;
        }
    }

    /// <summary>True when a parse error belongs to <paramref name="result"/> or its argument.</summary>
    private static bool HasError(ParseResult parse, OptionResult result) =>
        parse.Errors.Any(e => e.SymbolResult == result || e.SymbolResult is ArgumentResult { Parent: var parent } && parent == result);

    private static string? Describe(ParseError error, string name, Command command, List<Option> missingRequired, bool unmatched, IReadOnlyList<Token> tokens)
    {
        switch (error.SymbolResult)
        {
            case OptionResult { Option: var option } when missingRequired.Contains(option):
            case ArgumentResult { Parent: OptionResult { Option: var parentOption } } when missingRequired.Contains(parentOption):
                return null; // reported above in DistTrain's words
            case OptionResult { Option: var option } result when result.Tokens.Count == 0:
                return NeedsValue(option);
            case ArgumentResult { Parent: OptionResult { Option: var option } parent } when parent.Tokens.Count == 0:
                return NeedsValue(option);
            case OptionResult { Option: var option } result when option.Arity.MaximumNumberOfValues == 1 && result.Tokens.Count > 1:
                return GivenMoreThanOnce(option, result, tokens);
            case ArgumentResult { Parent: OptionResult { Option: var option } parent } when option.Arity.MaximumNumberOfValues == 1 && parent.Tokens.Count > 1:
                return GivenMoreThanOnce(option, parent, tokens);
            case OptionResult or ArgumentResult { Parent: OptionResult }:
                return error.Message; // from CliOptions' parsers and validators: names the option, the value and what it takes
            case ArgumentResult { Argument: var argument } result when result.Tokens.Count == 0:
                return $"{name} needs {argument.Name.ToUpperInvariant()}: {(CliOptions.Takes(argument) ?? argument.Description)?.TrimEnd('.')}.";
            case CommandResult when command is RootCommand && unmatched:
                return null; // the unmatched token is reported as an unknown command
            case CommandResult when command is RootCommand && command.Subcommands.Count > 0:
                return $"give a command: {string.Join(", ", command.Subcommands.Select(c => c.Name))} ('disttrain --help' describes them).";
            case CommandResult when missingRequired.Any(o => error.Message.Contains($"'{o.Name}'", StringComparison.Ordinal)):
                return null; // reported above in DistTrain's words
            default:
                return $"{error.Message} ('{name} --help' lists what it takes).";
        }


        static string NeedsValue(Option option) =>
            $"{option.Name} needs a value: it takes {CliOptions.Takes(option) ?? option.HelpName ?? "one value"}.";
    }

    /// <summary>Tokens no option, argument or command took, in order, with the token before each for context.</summary>
    private static IEnumerable<string> Unmatched(ParseResult parse, string name, Command command)
    {
        var consumed = new HashSet<Token>(ReferenceEqualityComparer.Instance);
        Collect(parse.RootCommandResult, consumed);
        var options = command.Options.Concat(parse.RootCommandResult.Command.Options).ToList();
        var optionNames = options.SelectMany(o => o.Aliases.Prepend(o.Name)).Distinct().ToList();
        Token? previous = null;
        var afterUnknownOption = false;
        foreach (var token in parse.Tokens)
        {
            if (token.Type is TokenType.Argument && !consumed.Contains(token))
            {
                if (token.Value.StartsWith('-'))
                {
                    var suggestion = NameSuggestions.Closest(token.Value, optionNames, maxDistance: 2);
                    yield return $"{name} has no option {token.Value}{(suggestion is null ? "" : $" (did you mean {suggestion}?)")}; '{name} --help' lists its options.";
                    afterUnknownOption = true;
                }
                else if (afterUnknownOption)
                {
                    afterUnknownOption = false; // the unknown option's value: nothing more to say about it
                }
                else if (command is RootCommand)
                {
                    var suggestion = NameSuggestions.Closest(token.Value, command.Subcommands.Select(c => c.Name), maxDistance: 2);
                    yield return $"'{token.Value}' is not a command{(suggestion is null ? "" : $" (did you mean {suggestion}?)")}; " +
                                 $"commands: {string.Join(", ", command.Subcommands.Select(c => c.Name))}.";
                    yield break; // what follows belongs to a command that was not recognized
                }
                else if (previous is { Type: TokenType.Option } flag && options.FirstOrDefault(o => o.Name == flag.Value || o.Aliases.Contains(flag.Value)) is Option<bool>)
                {
                    yield return $"'{token.Value}' after {flag.Value}: {flag.Value} is a switch and takes no value.";
                }
                else
                {
                    yield return $"{name} takes no argument '{token.Value}'; '{name} --help' lists its options.";
                }
            }
            else
            {
                afterUnknownOption = false;
            }
            previous = token;
        }
    }

    private static void Collect(CommandResult result, HashSet<Token> consumed)
    {
        consumed.Add(result.IdentifierToken);
        foreach (var child in result.Children)
        {
            switch (child)
            {
                case OptionResult option:
                    consumed.UnionWith(option.Tokens);
                    if (option.IdentifierToken is { } identifier) consumed.Add(identifier);
                    break;
                case ArgumentResult argument:
                    consumed.UnionWith(argument.Tokens);
                    break;
                case CommandResult subcommand:
                    Collect(subcommand, consumed);
                    break;
            }
        }
    }
}
