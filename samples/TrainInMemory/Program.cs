// Trains a small convolutional network on images made in memory with the DistTrain packages, then saves it, loads it
// back, predicts, exports it to ONNX and checks the ONNX model in ONNX Runtime against DistTrain's own logits.
//
//   dotnet run -c Release            (after `dotnet pack -c Release -o artifacts/packages` at the repository root)
using DistTrain.Cluster.Hosting;
using DistTrain.Core.Configuration;
using DistTrain.Core.Data;
using DistTrain.Core.Export;
using DistTrain.Core.Models;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

const int Side = 8, Features = Side * Side;
string[] classNames = ["horizontal bar", "vertical bar", "diagonal", "square"];
// The folder given, or a new one of this run's own under the temporary folder (so two users or runs never share one).
var output = args.Length > 0 ? Directory.CreateDirectory(args[0]).FullName : Directory.CreateTempSubdirectory("disttrain-sample-").FullName;

// 1. Data: arrays in memory, [samples, 1, 8, 8] flattened, labels 0..3.
var (trainX, trainY) = Shapes.Make(2000, seed: 1);
var (testX, testY) = Shapes.Make(500, seed: 2);
var data = TrainingData.FromArrays(trainX, trainY, testX, testY, Features, classNames.Length,
    new DataOptions { Normalization = NormalizationKind.Global, ClassNames = [.. classNames] });

// 2. Model and options: the same layers and keys as a config file's.
var options = new TrainingOptions
{
    Model = new ModelBuilder(channels: 1, height: Side, width: Side)
        .Conv2D(8, kernelSize: 3, padding: 1).ReLU().MaxPool2D(2)
        .Flatten().Dense(32).ReLU().Dense(classNames.Length)
        .Build(),
    Optimizer = { LearningRate = 0.05, Momentum = 0.9 },
    Training = { Workers = 2, BatchSizePerWorker = 32, Epochs = 4, Seed = 1 },
};

// 3. Train, with progress and Ctrl+C.
using var cancellation = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancellation.Cancel(); };
var progress = new EpochPrinter();
var outcome = await new Trainer(options).TrainAsync(data, progress, cancellation.Token);
var model = outcome.Model;

// 4. Save, load back and predict three test images.
var weightsPath = Path.Combine(output, "model.safetensors");
model.Save(weightsPath);
var loaded = TrainedModel.Load(weightsPath);
var three = testX.AsSpan(0, 3 * Features);
var predicted = loaded.Predict(three);
var probabilities = loaded.Probabilities(three);
for (var i = 0; i < 3; i++)
    Console.WriteLine($"test image {i}: {loaded.ClassNames![predicted[i]]} ({100 * probabilities[i * classNames.Length + predicted[i]]:F1}%), label {classNames[testY[i]]}");

// 5. Export to ONNX and run it in ONNX Runtime on the test images.
var onnxPath = Path.Combine(output, "model.onnx");
var summary = OnnxExporter.Export(loaded, onnxPath);
using var session = new InferenceSession(onnxPath);
var input = new DenseTensor<float>(testX, [testY.Length, 1, Side, Side]);
using var results = session.Run([NamedOnnxValue.CreateFromTensor(summary.InputName, input)]);
var onnxLogits = results.Single().AsEnumerable<float>().ToArray();
var logits = loaded.Logits(testX);
var largest = logits.Zip(onnxLogits).Max(p => Math.Abs(p.First - p.Second));
Console.WriteLine($"ONNX model {onnxPath} ({string.Join(" -> ", summary.Operators)}): largest logit difference from DistTrain over {testY.Length} test images {largest:G3}");
Console.WriteLine($"weights {weightsPath}; test accuracy {100 * outcome.History[^1].TestAccuracy:F2}%");
return largest <= 1e-4 && outcome.History[^1].TestAccuracy > 0.9 ? 0 : 1;

/// <summary>Prints one line per epoch, on the reporting thread (so lines come in order).</summary>
internal sealed class EpochPrinter : IProgress<TrainingProgress>
{
    public void Report(TrainingProgress p)
    {
        if (p.Kind == TrainingProgressKind.EpochCompleted)
            Console.WriteLine($"epoch {p.Epoch}/{p.Epochs}: train loss {p.Summary!.TrainLoss:F4}, test accuracy {100 * p.Summary.TestAccuracy:F2}%, {p.Summary.SamplesPerSecond:N0} samples/s");
    }
}

/// <summary>8x8 grayscale images of four shapes at random places, with noise: pixel values in [0, 1].</summary>
internal static class Shapes
{
    public static (float[] Features, int[] Labels) Make(int count, int seed)
    {
        var random = new Random(seed);
        var features = new float[count * Features];
        var labels = new int[count];
        for (var n = 0; n < count; n++)
        {
            var image = features.AsSpan(n * Features, Features);
            for (var p = 0; p < Features; p++) image[p] = 0.2f * random.NextSingle();
            var label = labels[n] = random.Next(4);
            var at = random.Next(Side);
            for (var k = 0; k < Side; k++)
            {
                switch (label)
                {
                    case 0: image[at * Side + k] = 1; break;                                   // row `at`
                    case 1: image[k * Side + at] = 1; break;                                   // column `at`
                    case 2: image[k * Side + (at % 2 == 0 ? k : Side - 1 - k)] = 1; break;     // one of the diagonals
                }
            }
            if (label == 3)
            {
                var (row, column) = (random.Next(Side - 2), random.Next(Side - 2));
                for (var r = 0; r < 3; r++)
                    for (var c = 0; c < 3; c++)
                        image[(row + r) * Side + column + c] = 1;
            }
        }
        return (features, labels);
    }

    private const int Side = 8, Features = Side * Side;
}
