using System.Globalization;
using DistTrain.Fuzz;

// DistTrain.Fuzz TARGET [--inputs N] [--seed SEED] [--hang-seconds S]   (S: processor seconds one input may take, default 5)
// Runs one reader of outside bytes for N generated inputs (tests/fuzz/run.sh runs them all). Exit code 0: no finding;
// 1: a finding (the shrunk input, the seed to repeat it and the cause are printed); 2: bad command line.
var targets = FuzzTargets.Names;
if (args.Length == 0 || !targets.Contains(args[0]))
{
    Console.Error.WriteLine($"usage: DistTrain.Fuzz {string.Join("|", targets)} [--inputs N] [--seed SEED] [--hang-seconds S]");
    return 2;
}
long inputs = 1_000_000;
string? seed = null;
var hangSeconds = 5.0;
for (var i = 1; i < args.Length; i += 2)
{
    var value = i + 1 < args.Length ? args[i + 1] : null;
    switch (args[i])
    {
        case "--inputs" when long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n > 0:
            inputs = n;
            break;
        case "--seed" when value is not null:
            seed = value;
            break;
        case "--hang-seconds" when double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var s) && s > 0:
            hangSeconds = s;
            break;
        default:
            Console.Error.WriteLine($"bad option '{args[i]}' or value '{value}'.");
            return 2;
    }
}
try
{
    var report = FuzzRunner.Run(FuzzTargets.Create(args[0]), inputs, seed, TimeSpan.FromSeconds(hangSeconds), Console.WriteLine);
    Console.WriteLine(report);
    return 0;
}
catch (FuzzFailure e)
{
    Console.WriteLine($"FINDING {e.Message}");
    return 1;
}
