using System.Reflection;
using System.Runtime.InteropServices;
using DistTrain.Core.Checkpoints;
using DistTrain.Core.Data;
using DistTrain.Core.Layers;
using DistTrain.Core.Models;
using Google.Protobuf;
using Onnx;

namespace DistTrain.Core.Export;

/// <summary>What <see cref="OnnxExporter"/> wrote.</summary>
/// <param name="InputName">Name of the graph's input.</param>
/// <param name="InputShape">Its shape, <c>-1</c> for the batch dimension: <c>[-1, C, H, W]</c> for image models, <c>[-1, features]</c> for flat ones.</param>
/// <param name="OutputName">Name of the graph's output, the logits <c>[-1, classes]</c>.</param>
/// <param name="Classes">Logits per sample.</param>
/// <param name="Operators">The graph's nodes in order, as ONNX operator types.</param>
/// <param name="Bytes">Size of the serialized model, bytes.</param>
public sealed record OnnxExportSummary(string InputName, int[] InputShape, string OutputName, int Classes, IReadOnlyList<string> Operators, long Bytes);

/// <summary>
/// Writes a <see cref="TrainedModel"/> as an ONNX model (IR version 8, default-domain opset 17) that computes the same logits
/// in evaluation mode, for ONNX Runtime, PyTorch's and other frameworks' ONNX importers.
/// </summary>
/// <remarks>
/// <para>Graph: input <c>input</c>, float32 <c>[batch, C, H, W]</c> for models with Model:InputShape (NCHW, as PyTorch), else
/// <c>[batch, features]</c>, holding the features as the data loader gives them (IDX images: pixels / 255); output
/// <c>logits</c> float32 <c>[batch, classes]</c>. The input standardization is folded in as its first two nodes,
/// <c>Sub(input_mean)</c> and <c>Mul(1 / input_std)</c> (none for normalization None), and also stated in
/// <c>metadata_props</c> with the checkpoint's other metadata.</para>
/// <para>Layers map to the operators of the same meaning (ONNX <c>docs/Operators.md</c>): Dense → Gemm (transB = 1, weights
/// <c>[out, in]</c> as stored), preceded by Flatten when its input is an image; Conv2D → Conv; MaxPool2D → MaxPool,
/// AvgPool2D → AveragePool (no padding, floor rounding); Flatten → Flatten (axis 1); BatchNorm → BatchNormalization with
/// the running statistics (inference); LayerNorm → LayerNormalization over the whole sample (axis 1); ReLU, LeakyReLU,
/// Sigmoid, Tanh → Relu, LeakyRelu, Sigmoid, Tanh. Dropout is the identity in evaluation and is left out. Tensors are
/// initializers named as the checkpoint's (<c>0.weight</c>).</para>
/// </remarks>
public static class OnnxExporter
{
    /// <summary>The default-domain operator set the graph uses (LayerNormalization needs 17).</summary>
    public const int OpsetVersion = 17;

    /// <summary>The ONNX IR version written (the one of ONNX 1.12 to 1.14, which introduced opset 17).</summary>
    public const long IrVersion = 8;

    /// <summary>Name of the graph's input.</summary>
    public const string InputName = "input";

    /// <summary>Name of the graph's output.</summary>
    public const string OutputName = "logits";

    /// <summary>Writes <paramref name="model"/> to <paramref name="path"/> (a temporary file first, then renamed).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="model"/> or <paramref name="path"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="path"/> is empty or white space.</exception>
    /// <exception cref="DirectoryNotFoundException">The folder of <paramref name="path"/> does not exist; the message names it.</exception>
    /// <exception cref="IOException"><paramref name="path"/> is a folder, or the file cannot be written.</exception>
    /// <exception cref="UnauthorizedAccessException">The folder is not writable.</exception>
    public static OnnxExportSummary Export(TrainedModel model, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var (proto, summary) = Build(model);
        AtomicFile.Write(path, stream => proto.WriteTo(stream));
        return summary with { Bytes = new FileInfo(path).Length };
    }

    /// <summary>The serialized ONNX model of <paramref name="model"/>.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="model"/> is null.</exception>
    public static byte[] ToBytes(TrainedModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Build(model).Proto.ToByteArray();
    }

    private static (ModelProto Proto, OnnxExportSummary Summary) Build(TrainedModel model)
    {
        var graph = new GraphBuilder(model);
        var layers = ModelFactory.Build(model.Model, isFrozen: _ => false).Layers;
        var imageInput = model.Model.InputShape.Count == 3;
        var shape = model.InputShape;
        var current = graph.Input(imageInput ? [-1, shape.Channels, shape.Height, shape.Width] : [-1, shape.Size]);
        var rank = imageInput ? 4 : 2;
        current = Standardize(graph, model.Normalizer, current, rank, shape);
        for (var index = 0; index < layers.Count; index++)
        {
            var layer = layers[index];
            var outputShape = layer.OutputShape(shape);
            (current, rank) = layer switch
            {
                Dense dense => (Gemm(graph, index, dense, rank == 4 ? graph.Node("Flatten", index, [current], ("axis", 1L)) : current), 2),
                Conv2D conv => (graph.Node("Conv", index, conv.HasBias ? [current, graph.Weight(index, "weight"), graph.Weight(index, "bias")] : [current, graph.Weight(index, "weight")],
                    ("kernel_shape", Pair(conv.KernelSize)), ("strides", Pair(conv.Stride)), ("pads", new long[] { conv.Padding, conv.Padding, conv.Padding, conv.Padding }),
                    ("dilations", Pair(1)), ("group", 1L)), 4),
                MaxPool2D pool => (graph.Node("MaxPool", index, [current], ("kernel_shape", Pair(pool.KernelSize)), ("strides", Pair(pool.Stride))), 4),
                AvgPool2D pool => (graph.Node("AveragePool", index, [current], ("kernel_shape", Pair(pool.KernelSize)), ("strides", Pair(pool.Stride))), 4),
                Flatten => (rank == 2 ? current : graph.Node("Flatten", index, [current], ("axis", 1L)), 2),
                BatchNorm norm => (graph.Node("BatchNormalization", index,
                    [current, graph.Weight(index, "weight"), graph.Weight(index, "bias"), graph.Weight(index, "running_mean"), graph.Weight(index, "running_var")],
                    ("epsilon", norm.Epsilon), ("momentum", 1f - norm.Momentum)), rank),
                LayerNorm norm => (graph.Node("LayerNormalization", index,
                    [current, graph.Weight(index, "weight", SampleDimensions(shape, rank)), graph.Weight(index, "bias", SampleDimensions(shape, rank))],
                    ("axis", 1L), ("epsilon", norm.Epsilon)), rank),
                ReLU => (graph.Node("Relu", index, [current]), rank),
                LeakyReLU leaky => (graph.Node("LeakyRelu", index, [current], ("alpha", leaky.NegativeSlope)), rank),
                Sigmoid => (graph.Node("Sigmoid", index, [current]), rank),
                Tanh => (graph.Node("Tanh", index, [current]), rank),
                Dropout => (current, rank),
                _ => throw new NotSupportedException($"Layer {index} ({layer.Description}) has no ONNX mapping."),
            };
            shape = outputShape;
        }
        if (rank != 2) current = graph.Node("Flatten", layers.Count, [current], ("axis", 1L));
        graph.Output(graph.Rename(current, OutputName), shape.Size);
        var proto = new ModelProto
        {
            IrVersion = IrVersion,
            ProducerName = "DistTrain",
            ProducerVersion = typeof(OnnxExporter).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "",
            DocString = $"DistTrain model {string.Join(" -> ", layers.Select(l => l.Description))}; input {InputName} is the features as the data loader gives them ({Metadata(model, ModelMetadata.InputScale)}), standardized inside the graph.",
            Graph = graph.Graph,
            OpsetImport = { new OperatorSetIdProto { Domain = "", Version = OpsetVersion } },
        };
        foreach (var (key, value) in model.Metadata.OrderBy(m => m.Key, StringComparer.Ordinal))
            proto.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        proto.MetadataProps.Add(new StringStringEntryProto
        {
            Key = "input_standardization",
            Value = model.Normalizer.Kind == NormalizationKind.None
                ? "none"
                : "folded into the graph: (input - input_mean) * (1 / input_std), the first nodes Sub and Mul; feed unstandardized features",
        });
        var inputShape = imageInput ? new[] { -1, model.InputShape.Channels, model.InputShape.Height, model.InputShape.Width } : [-1, model.InputShape.Size];
        return (proto, new OnnxExportSummary(InputName, inputShape, OutputName, shape.Size, graph.Graph.Node.Select(n => n.OpType).ToArray(), proto.CalculateSize()));
    }

    private static string Metadata(TrainedModel model, string key) => model.Metadata.TryGetValue(key, out var value) ? value : "unknown";

    private static long[] Pair(int value) => [value, value];

    /// <summary>A normalization layer's scale and shift shaped as one sample of the graph's tensor at that point.</summary>
    private static long[] SampleDimensions(TensorShape shape, int rank) =>
        rank == 4 ? [shape.Channels, shape.Height, shape.Width] : [shape.Size];

    private static string Gemm(GraphBuilder graph, int index, Dense dense, string input) =>
        graph.Node("Gemm", index, dense.HasBias ? [input, graph.Weight(index, "weight"), graph.Weight(index, "bias")] : [input, graph.Weight(index, "weight")],
            ("transB", 1L));

    /// <summary>
    /// <c>(x − mean) · (1 / std)</c>, as <see cref="Normalizer.Standardize"/> computes it (the same float
    /// reciprocal), so the graph's standardized input equals DistTrain's bit for bit.
    /// </summary>
    private static string Standardize(GraphBuilder graph, Normalizer normalizer, string input, int rank, TensorShape shape)
    {
        if (normalizer.Kind == NormalizationKind.None) return input;
        long[] dimensions = normalizer.Kind == NormalizationKind.Global ? [] : rank == 4 ? [shape.Channels, shape.Height, shape.Width] : [shape.Size];
        var mean = graph.Constant("input_mean", dimensions, normalizer.Mean);
        var inverseStd = graph.Constant("input_inverse_std", dimensions, normalizer.Std.Select(s => 1f / s).ToArray());
        var centred = graph.Node("Sub", -1, [input, mean]);
        return graph.Node("Mul", -1, [centred, inverseStd]);
    }

    /// <summary>Accumulates the graph's nodes and initializers, naming each node's output after the node.</summary>
    private sealed class GraphBuilder(TrainedModel model)
    {
        private readonly Dictionary<string, int> _nameCounts = [];

        public GraphProto Graph { get; } = new() { Name = "disttrain" };

        public string Input(int[] dimensions)
        {
            Graph.Input.Add(Value(InputName, dimensions));
            return InputName;
        }

        public void Output(string name, int classes) => Graph.Output.Add(Value(name, [-1, classes]));

        /// <summary>Renames the last node's output (the graph's output gets a fixed name).</summary>
        public string Rename(string output, string name)
        {
            var node = Graph.Node.Last(n => n.Output.Contains(output));
            node.Output[node.Output.IndexOf(output)] = name;
            return name;
        }

        /// <summary>A checkpoint tensor as an initializer named <c>{index}.{name}</c>, optionally reshaped.</summary>
        public string Weight(int index, string name, long[]? dimensions = null)
        {
            var full = $"{index}.{name}";
            if (Graph.Initializer.Any(t => t.Name == full)) return full;
            var segment = model.Weights.Layout[full];
            Graph.Initializer.Add(Tensor(full, dimensions ?? segment.Shape.Select(d => (long)d).ToArray(), model.Weights.Segment(segment)));
            return full;
        }

        public string Constant(string name, long[] dimensions, ReadOnlySpan<float> values)
        {
            Graph.Initializer.Add(Tensor(name, dimensions, values));
            return name;
        }

        public string Node(string operatorType, int layerIndex, string[] inputs, params (string Name, object Value)[] attributes)
        {
            var stem = layerIndex < 0 ? $"input_{operatorType}" : $"{layerIndex}_{operatorType}";
            var count = _nameCounts[stem] = _nameCounts.GetValueOrDefault(stem) + 1;
            var name = count == 1 ? stem : $"{stem}_{count}";
            var node = new NodeProto { Name = name, OpType = operatorType, Input = { inputs }, Output = { name } };
            foreach (var (key, value) in attributes)
                node.Attribute.Add(value switch
                {
                    long i => new AttributeProto { Name = key, Type = AttributeProto.Types.AttributeType.Int, I = i },
                    float f => new AttributeProto { Name = key, Type = AttributeProto.Types.AttributeType.Float, F = f },
                    long[] ints => new AttributeProto { Name = key, Type = AttributeProto.Types.AttributeType.Ints, Ints = { ints } },
                    _ => throw new ArgumentException($"Attribute {key} has an unsupported type {value.GetType()}."),
                });
            Graph.Node.Add(node);
            return name;
        }

        private static TensorProto Tensor(string name, long[] dimensions, ReadOnlySpan<float> values)
        {
            var expected = dimensions.Aggregate(1L, (p, d) => p * d);
            if (expected != values.Length)
                throw new ArgumentException($"Tensor {name}: {values.Length} values do not fill the shape [{string.Join(", ", dimensions)}].");
            if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("ONNX raw tensor data is little-endian.");
            return new TensorProto
            {
                Name = name,
                DataType = (int)TensorProto.Types.DataType.Float,
                Dims = { dimensions },
                RawData = ByteString.CopyFrom(MemoryMarshal.AsBytes(values)),
            };
        }

        private static ValueInfoProto Value(string name, int[] dimensions)
        {
            var shape = new TensorShapeProto();
            foreach (var dimension in dimensions)
                shape.Dim.Add(dimension < 0 ? new TensorShapeProto.Types.Dimension { DimParam = "batch" } : new TensorShapeProto.Types.Dimension { DimValue = dimension });
            return new ValueInfoProto
            {
                Name = name,
                Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)TensorProto.Types.DataType.Float, Shape = shape } },
            };
        }
    }
}
