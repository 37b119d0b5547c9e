using DistTrain.Cli;

CliConsole.Configure();
return await DistTrainCommandLine.RunAsync(args);
