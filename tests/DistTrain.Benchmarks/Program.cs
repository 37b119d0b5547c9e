using BenchmarkDotNet.Running;

// Run: dotnet run -c Release --project tests/DistTrain.Benchmarks -- --filter '*'
// (docs/benchmarks.md lists the exact commands and the recorded figures).
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
