using System.CommandLine;
using DistTrain.Cli;

CliConsole.Configure();
var root = new RootCommand("DistTrain: data-parallel neural-network training on Akka.NET actors.")
{
    TrainCommand.Create(),
    FinetuneCommand.Create(),
    InspectCommand.Create(),
    ExportCommand.Create(),
    BenchCommand.Create(),
    NodeCommand.Create(),
};
return await root.Parse(args).InvokeAsync();
