// Checks an ONNX model written by `disttrain export --onnx` against the model.safetensors it came from: runs both on the
// same inputs (the kinds `disttrain predict` takes: images, image folders, CSV files, IDX image files), DistTrain's
// network in DistTrain and the ONNX graph in ONNX Runtime, and prints the largest difference of their logits and how
// many predicted classes agree.
//
//   dotnet run -c Release -- MODEL.safetensors MODEL.onnx INPUT...
//     (after `dotnet pack -c Release -o artifacts/packages` at the repository root)
//
// Exit code 0 when every logit agrees within 1e-4 + 1e-5 x its size (numpy.allclose's rule, with atol 1e-4: a model
// whose logits reach hundreds differs by float32 rounding alone by more than 1e-4), 1 when one does not, 2 on bad
// arguments or files.
using System.Globalization;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Data;
using DistTrain.Core.Models;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

const double AbsoluteTolerance = 1e-4, RelativeTolerance = 1e-5;
if (args.Length < 3)
{
    Console.Error.WriteLine("usage: CheckOnnx MODEL.safetensors MODEL.onnx INPUT... (images, image folders, CSV or IDX image files)");
    return 2;
}
try
{
    var model = TrainedModel.Load(args[0]);
    using var session = new InferenceSession(args[1]);
    var (inputName, inputMetadata) = session.InputMetadata.Single();
    var largest = 0.0;
    int samples = 0, agree = 0, outside = 0;
    foreach (var path in args[2..])
    {
        var batch = ModelInputs.Read(path, model, resize: model.Data.ResizeImages);
        var features = batch.OnModelScale(model); // what Logits and the ONNX graph's input take
        var count = batch.Names.Count;
        // The graph's input shape with its batch dimension (-1) set: [count, features] or [count, channels, height, width].
        var shape = inputMetadata.Dimensions.Select(d => d < 0 ? count : d).ToArray();
        // A graph exported from another model takes inputs of another size: said as such, not as the tensor's exception. Its
        // first dimension is the batch; a graph with other symbolic dimensions is left to ONNX Runtime to judge.
        var perSample = inputMetadata.Dimensions.Skip(1).Aggregate(1L, (product, d) => product * d);
        if (perSample > 0 && features.Length != perSample * count)
        {
            Console.Error.WriteLine($"error: {args[1]} takes inputs of shape [{string.Join(", ", inputMetadata.Dimensions.Select(d => d < 0 ? "batch" : d.ToString(CultureInfo.InvariantCulture)))}], " +
                $"{perSample:N0} values per sample, but {args[0]} reads {path} as {features.Length / Math.Max(count, 1):N0} values per sample: give the ONNX file " +
                "exported from this model.safetensors (disttrain export MODEL --onnx FILE).");
            return 2;
        }
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(inputName, new DenseTensor<float>(features, shape))]);
        var onnxLogits = results.Single().AsEnumerable<float>().ToArray();
        var logits = model.Logits(features);
        if (onnxLogits.Length != logits.Length)
        {
            Console.Error.WriteLine($"error: {args[1]} gives {onnxLogits.Length / count} outputs per sample but {args[0]} has {model.ClassCount} classes: export this model.safetensors again.");
            return 2;
        }
        for (var i = 0; i < logits.Length; i++)
        {
            var difference = Math.Abs(logits[i] - onnxLogits[i]);
            largest = Math.Max(largest, difference);
            if (!(difference <= AbsoluteTolerance + RelativeTolerance * Math.Abs(logits[i]))) outside++; // NaN counts as outside
        }
        var classes = model.ClassCount;
        for (var s = 0; s < count; s++)
            if (ArgMax(logits.AsSpan(s * classes, classes)) == ArgMax(onnxLogits.AsSpan(s * classes, classes))) agree++;
        samples += count;
    }
    var shown = largest.ToString("G3", CultureInfo.InvariantCulture);
    Console.WriteLine($"ONNX Runtime ran {args[1]} against DistTrain's {args[0]} on {samples:N0} samples: largest logit difference {shown}, predicted classes agree on {agree:N0} of {samples:N0}" +
        (outside > 0 ? $"; {outside:N0} logit(s) differ by more than {AbsoluteTolerance} + {RelativeTolerance} x their size" : ""));
    return outside == 0 && agree == samples ? 0 : 1;
}
catch (Exception e) when (e is IOException or InvalidDataException or SafeTensorsFormatException or DataFormatException or OnnxRuntimeException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}

static int ArgMax(ReadOnlySpan<float> values)
{
    var best = 0;
    for (var i = 1; i < values.Length; i++)
        if (values[i] > values[best]) best = i;
    return best;
}
