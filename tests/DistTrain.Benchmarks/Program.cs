using BenchmarkDotNet.Running;
using DistTrain.Benchmarks;

// BenchmarkDotNet: dotnet run -c Release --project tests/DistTrain.Benchmarks -- --filter '*'
// Transport probe: dotnet run -c Release --project tests/DistTrain.Benchmarks -- transport [CERT_DIR]
// Shared-memory round trips: dotnet run -c Release --project tests/DistTrain.Benchmarks -- transport shm [ROUNDS]
// (docs/benchmarks.md and docs/architecture.md list the commands and the recorded figures).
if (args is ["transport", "shm", ..] && args.Length <= 3)
{
    var rounds = args.Length == 3 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 1000;
    TransportProbe.SharedMemoryPingPong(rounds, cold: false);
    TransportProbe.SharedMemoryPingPong(rounds, cold: true);
    return;
}
if (args is ["transport", ..] && args.Length <= 2)
{
    await TransportProbe.RunAsync(args.Length == 2 ? args[1] : null);
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
