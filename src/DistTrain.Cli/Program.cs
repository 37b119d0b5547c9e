using DistTrain.Cli;

FailSafeConsole.Install();
CliConsole.Configure();
return FailSafeConsole.Finish(await DistTrainCommandLine.RunAsync(args), args.FirstOrDefault());
