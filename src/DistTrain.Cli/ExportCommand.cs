using System.CommandLine;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Export;
using DistTrain.Core.Models;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary><c>disttrain export</c>: writes a trained model.safetensors as an ONNX model (<see cref="OnnxExporter"/>).</summary>
internal static class ExportCommand
{
    public static Command Create()
    {
        var checkpoint = CliOptions.FileArgument("checkpoint", $"A {RunFiles.Model} written by 'disttrain train' or the Trainer API (its metadata holds the layers and input normalization).",
            $"a .safetensors file written by DistTrain, such as a run's {RunFiles.Model}");
        var onnx = CliOptions.File("--onnx", "The ONNX file to write (opset 17; input normalization folded into the graph).",
            "the ONNX file to write, e.g. model.onnx", required: true);
        var command = new Command("export", "Export trained weights to another format: --onnx writes an ONNX model for ONNX Runtime and other frameworks.")
        {
            checkpoint, onnx,
        };
        command.SetAction(CliConsole.Cancellable((parse, cancellationToken) =>
        {
            var source = parse.GetValue(checkpoint)!;
            var target = parse.GetValue(onnx)!;
            TrainedModel model;
            try
            {
                if (CliOptions.OverwritesInput("--onnx", target.FullName, RunFiles.ModelIn(source.FullName)) is { } overwrite)
                {
                    CliConsole.Fail("error", overwrite);
                    return 2;
                }
                // As the PNG outputs of evaluate, inspect and compare are refused: a folder, or a name that would hold an ONNX model
                // under another format's name.
                if (Directory.Exists(target.FullName) || !target.Name.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
                {
                    CliConsole.Fail("error", Directory.Exists(target.FullName)
                        ? $"--onnx {target.FullName} is a folder: give the path of an ONNX file to write, such as one inside that folder."
                        : $"--onnx {target.FullName}: the model is written as ONNX, so give a file name ending in .onnx.");
                    return 2;
                }
                model = TrainedModel.Load(source.FullName);
            }
            catch (Exception e) when (e is IOException or InvalidDataException or SafeTensorsFormatException or UnauthorizedAccessException)
            {
                CliConsole.Fail("error", e.Message);
                return 2;
            }
            if (target.Directory is { Exists: false } folder)
            {
                CliConsole.Fail("error", $"--onnx {target.FullName}: the folder {folder.FullName} does not exist. Create it or choose another path.");
                return 2;
            }
            OnnxExportSummary summary;
            cancellationToken.ThrowIfCancellationRequested(); // no ONNX file after a Ctrl-C
            try
            {
                summary = OnnxExporter.Export(model, target.FullName);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                CliConsole.Fail("error", $"--onnx {target.FullName}: cannot write the file in the folder {target.DirectoryName} ({e.Message.TrimEnd('.')}). " +
                    "Give --onnx a path in a folder you can write to.");
                return 2;
            }
            CliConsole.Out.WriteLiteralLine($"ONNX model (IR {OnnxExporter.IrVersion}, opset {OnnxExporter.OpsetVersion}, {summary.Bytes:N0} bytes): {target.FullName}");
            CliConsole.Out.WriteLiteralLine($"  input  {summary.InputName} float32 [{Dimensions(summary.InputShape)}]: {model.Metadata.GetValueOrDefault(ModelMetadata.InputScale, "features as the data loader gives them")}; standardization {model.Normalizer.Kind} is folded into the graph");
            CliConsole.Out.WriteLiteralLine($"  output {summary.OutputName} float32 [batch, {summary.Classes}]");
            CliConsole.Out.WriteLiteralLine($"  nodes  {string.Join(" -> ", summary.Operators)}");
            return 0;
        }));
        return command;
    }

    private static string Dimensions(int[] shape) => string.Join(", ", shape.Select(d => d < 0 ? "batch" : d.ToString(System.Globalization.CultureInfo.InvariantCulture)));
}
