using DistTrain.Core.Layers;
using DistTrain.Core.Losses;
using DistTrain.Core.Models;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Tests;

/// <summary>Every layer and loss against central finite differences of a scalar function of its output.</summary>
public class GradientCheckTests
{
    private const double Epsilon = 1e-2;

    internal static Matrix<float> RandomMatrix(int rows, int columns, Random random, bool awayFromZero = false)
    {
        var m = Matrix<float>.Build.Dense(rows, columns);
        var values = m.ColumnMajorValues();
        for (var i = 0; i < values.Length; i++)
        {
            var v = (float)(random.NextDouble() * 2 - 1);
            // ReLU-type kinks at 0: keep inputs at least 0.1 away so ±ε never crosses them.
            values[i] = awayFromZero ? v + MathF.CopySign(0.1f, v) : v;
        }
        return m;
    }

    private static double Projection(Matrix<float> output, Matrix<float> upstream)
    {
        double sum = 0;
        var y = output.ColumnMajorValues();
        var g = upstream.ColumnMajorValues();
        for (var i = 0; i < y.Length; i++) sum += (double)y[i] * g[i];
        return sum;
    }

    /// <summary>
    /// L = Σ G ⊙ layer(X); checks dL/dX and dL/dθ for every element of every trainable tensor.
    /// <paramref name="input"/> replaces the random input (for layers with kinks, such as max pooling).
    /// </summary>
    internal static void CheckLayer(ILayer layer, int inFeatures, int batch, bool awayFromZero, double tolerance = 2e-3,
        Matrix<float>? input = null)
    {
        var random = new Random(11);
        var trainable = layer.Parameters.Where(p => p.Trainable).ToArray();
        foreach (var p in trainable)
            for (var i = 0; i < p.Value.Length; i++) p.Value[i] = (float)(random.NextDouble() - 0.5);
        var x = input ?? RandomMatrix(inFeatures, batch, random, awayFromZero);
        var output = layer.Forward(x);
        var upstream = RandomMatrix(output.RowCount, batch, random);
        var inputGradient = layer.Backward(upstream)!.Clone();
        var parameterGradients = trainable.Select(p => (float[])p.Gradient.Clone()).ToArray();

        double Loss() => Projection(layer.Forward(x), upstream);
        void CheckElement(float[] values, int index, double analytic, string name)
        {
            var original = values[index];
            values[index] = original + (float)Epsilon;
            var plus = Loss();
            values[index] = original - (float)Epsilon;
            var minus = Loss();
            values[index] = original;
            var numeric = (plus - minus) / (2 * Epsilon);
            Assert.True(Math.Abs(numeric - analytic) <= tolerance * Math.Max(1, Math.Abs(numeric)),
                $"{layer.Description} d/d{name}[{index}]: finite difference {numeric:G6}, backward {analytic:G6}");
        }

        var xValues = x.ColumnMajorValues();
        var dx = inputGradient.ColumnMajorValues();
        for (var i = 0; i < xValues.Length; i++) CheckElement(xValues, i, dx[i], "input");
        for (var p = 0; p < trainable.Length; p++)
            for (var i = 0; i < trainable[p].Value.Length; i++)
                CheckElement(trainable[p].Value, i, parameterGradients[p][i], trainable[p].Name);
    }

    [Fact] public void Dense_matches_finite_differences() => CheckLayer(new Dense(5, 4), 5, 3, awayFromZero: false);
    [Fact] public void ReLU_matches_finite_differences() => CheckLayer(new ReLU(), 6, 4, awayFromZero: true);
    [Fact] public void LeakyReLU_matches_finite_differences() => CheckLayer(new LeakyReLU(0.2f), 6, 4, awayFromZero: true);
    [Fact] public void Sigmoid_matches_finite_differences() => CheckLayer(new Sigmoid(), 6, 4, awayFromZero: false);
    [Fact] public void Tanh_matches_finite_differences() => CheckLayer(new Tanh(), 6, 4, awayFromZero: false);

    private static void CheckLoss(ILoss loss, Matrix<float> target)
    {
        var random = new Random(5);
        var output = RandomMatrix(target.RowCount, target.ColumnCount, random);
        output.MapInplace(v => 3 * v);
        var gradient = Matrix<float>.Build.Dense(target.RowCount, target.ColumnCount);
        var scratch = gradient.Clone();
        loss.Compute(output, target, gradient);
        var y = output.ColumnMajorValues();
        var g = gradient.ColumnMajorValues();
        for (var i = 0; i < y.Length; i++)
        {
            var original = y[i];
            y[i] = original + (float)Epsilon;
            var plus = loss.Compute(output, target, scratch);
            y[i] = original - (float)Epsilon;
            var minus = loss.Compute(output, target, scratch);
            y[i] = original;
            var numeric = (plus - minus) / (2 * Epsilon);
            Assert.True(Math.Abs(numeric - g[i]) <= 1e-4 + 2e-3 * Math.Abs(numeric),
                $"{loss.Name} d/doutput[{i}]: finite difference {numeric:G6}, analytic {g[i]:G6}");
        }
    }

    private static Matrix<float> OneHot(int classes, params int[] labels)
    {
        var m = Matrix<float>.Build.Dense(classes, labels.Length);
        for (var j = 0; j < labels.Length; j++) m[labels[j], j] = 1f;
        return m;
    }

    [Fact] public void SoftmaxCrossEntropy_matches_finite_differences_with_one_hot_targets() =>
        CheckLoss(new SoftmaxCrossEntropy(), OneHot(4, 0, 3, 1, 1, 2));

    [Fact]
    public void SoftmaxCrossEntropy_matches_finite_differences_with_soft_targets()
    {
        var target = Matrix<float>.Build.DenseOfArray(new float[,] { { 0.7f, 0.1f }, { 0.2f, 0.3f }, { 0.1f, 0.6f } });
        CheckLoss(new SoftmaxCrossEntropy(), target);
    }

    [Fact]
    public void MeanSquaredError_matches_finite_differences()
    {
        var random = new Random(3);
        CheckLoss(new MeanSquaredError(), RandomMatrix(3, 4, random));
    }

    [Fact]
    public void SoftmaxCrossEntropy_value_matches_the_closed_form_and_survives_huge_logits()
    {
        // logits (1, 2, 3), label 2: loss = log(e¹ + e² + e³) − 3 = 0.40760596
        var logits = Matrix<float>.Build.DenseOfColumnMajor(3, 2, [1f, 2f, 3f, 1000f, 0f, -1000f]);
        var loss = new SoftmaxCrossEntropy().Compute(logits, OneHot(3, 2, 0), Matrix<float>.Build.Dense(3, 2));
        Assert.Equal((0.40760596 + 0.0) / 2, loss, 6);
    }

    [Fact]
    public void Whole_model_gradient_matches_finite_differences_of_the_loss()
    {
        var options = new ModelOptions
        {
            InputSize = 6,
            Layers =
            [
                new() { Type = LayerTypes.Dense, Units = 5 }, new() { Type = LayerTypes.Tanh },
                new() { Type = LayerTypes.Dense, Units = 4 }, new() { Type = LayerTypes.Sigmoid },
                new() { Type = LayerTypes.Dense, Units = 3 },
            ],
        };
        var model = ModelFactory.Build(options);
        var weights = ModelFactory.InitialWeights(model, new() { Kind = Core.Initialization.InitializerKind.XavierNormal }, seed: 3);
        var random = new Random(9);
        var x = RandomMatrix(6, 4, random);
        var target = OneHot(3, 0, 2, 1, 2);
        var loss = new SoftmaxCrossEntropy();
        model.ComputeGradients(x, target, loss);
        var analytic = new float[model.Layout.TotalLength];
        model.CopyGradientsTo(analytic);
        var scratch = Matrix<float>.Build.Dense(3, 4);
        var w = weights.Values;
        for (var i = 0; i < w.Length; i++)
        {
            var original = w[i];
            w[i] = original + (float)Epsilon; model.LoadParameters(w);
            var plus = loss.Compute(model.Forward(x), target, scratch);
            w[i] = original - (float)Epsilon; model.LoadParameters(w);
            var minus = loss.Compute(model.Forward(x), target, scratch);
            w[i] = original;
            var numeric = (plus - minus) / (2 * Epsilon);
            Assert.True(Math.Abs(numeric - analytic[i]) <= 1e-4 + 5e-3 * Math.Abs(numeric), $"parameter {i}: {numeric:G6} vs {analytic[i]:G6}");
        }
    }
}
