using System.CommandLine;
using System.Globalization;
using System.Numerics.Tensors;
using DistTrain.Core.Checkpoints;
using Spectre.Console;

namespace DistTrain.Cli;

/// <summary><c>disttrain inspect</c>: lists a safetensors checkpoint's tensors with shapes, sizes and norms.</summary>
internal static class InspectCommand
{
    public static Command Create()
    {
        var path = CliOptions.FileArgument("checkpoint", $"A .safetensors file (DistTrain's {RunFiles.Model} or a PyTorch export).",
            $"a .safetensors file, such as a run's {RunFiles.Model}");
        var command = new Command("inspect", "List a checkpoint's tensors: name, shape, elements, L2 norm, mean and range.") { path };
        command.SetAction(parse =>
        {
            var file = parse.GetValue(path)!;
            IReadOnlyDictionary<string, NamedTensor> tensors;
            IReadOnlyDictionary<string, string> metadata;
            try
            {
                DistTrain.Core.Models.PretrainedWeights.RequireFile(file.FullName, "checkpoint");
                tensors = SafeTensors.Read(file.FullName);
                metadata = SafeTensors.ReadMetadata(file.FullName);
            }
            catch (Exception e) when (e is IOException or InvalidDataException or SafeTensorsFormatException or UnauthorizedAccessException)
            {
                CliConsole.Fail("error", e.Message);
                return 2;
            }
            var table = new Table().AddColumns("tensor", "shape", "elements", "L2 norm", "mean", "min", "max");
            foreach (var (name, tensor) in tensors.OrderBy(t => t.Key, Comparer<string>.Create(CompareNames)))
            {
                var data = tensor.Data;
                table.AddRow(Markup.Escape(name), Markup.Escape($"[{string.Join(", ", tensor.Shape)}]"), data.Length.ToString("N0", CultureInfo.InvariantCulture),
                    Format(TensorPrimitives.Norm(data)), Format(data.Length == 0 ? 0 : TensorPrimitives.Sum(data) / data.Length),
                    Format(data.Length == 0 ? 0 : TensorPrimitives.Min(data)), Format(data.Length == 0 ? 0 : TensorPrimitives.Max(data)));
            }
            AnsiConsole.Write(table);
            AnsiConsole.MarkupLineInterpolated($"{tensors.Count} tensors, {tensors.Values.Sum(t => (long)t.Data.Length):N0} elements, {file.Length:N0} bytes: {file.FullName}");
            foreach (var (key, value) in metadata.Where(m => m.Key is "producer" or "epochs" or "version" or "test_accuracy" or "input_normalization"))
                AnsiConsole.MarkupLineInterpolated($"  {key}: {value}");
            return 0;
        });
        return command;
    }

    private static string Format(float value) => value.ToString("G5", CultureInfo.InvariantCulture);

    /// <summary>Orders <c>state_dict</c> names by layer index, then name (<c>2.weight</c> before <c>10.bias</c>).</summary>
    private static int CompareNames(string? a, string? b)
    {
        static (int, string) Key(string? name)
        {
            var dot = name?.IndexOf('.') ?? -1;
            return dot > 0 && int.TryParse(name![..dot], CultureInfo.InvariantCulture, out var index) ? (index, name) : (int.MaxValue, name ?? "");
        }
        var (ia, na) = Key(a);
        var (ib, nb) = Key(b);
        return ia != ib ? ia.CompareTo(ib) : string.CompareOrdinal(na, nb);
    }
}
