using BenchmarkDotNet.Running;
using DistTrain.Benchmarks;

// BenchmarkDotNet: dotnet run -c Release --project tests/DistTrain.Benchmarks -- --filter '*'
// Transport probe: dotnet run -c Release --project tests/DistTrain.Benchmarks -- transport
// (docs/benchmarks.md and docs/architecture.md list the commands and the recorded figures).
if (args is ["transport"])
{
    await TransportProbe.RunAsync();
    return;
}
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
