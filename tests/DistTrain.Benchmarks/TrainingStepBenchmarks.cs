using BenchmarkDotNet.Attributes;
using DistTrain.Core.Layers;
using DistTrain.Core.LinearAlgebra;
using DistTrain.Core.Losses;
using DistTrain.Core.Models;
using DistTrain.Core.Optimization;
using MathNet.Numerics.LinearAlgebra;

namespace DistTrain.Benchmarks;

/// <summary>
/// The pieces of one synchronous step of the main job (MLP 784-256-128-10, minibatch 64, 235,146
/// parameters) on one thread: the first dense layer's forward and backward, a replica's whole
/// forward/backward, the parameter server's weighted average of 2 gradients, and its SGD step.
/// The memory diagnoser pins the zero-allocation claim.
/// </summary>
[MemoryDiagnoser]
public class TrainingStepBenchmarks
{
    private Dense _dense = null!;
    private Matrix<float> _input = null!, _denseGradient = null!, _target = null!;
    private Sequential _model = null!;
    private readonly ILoss _loss = new SoftmaxCrossEntropy();
    private float[] _weights = null!, _broadcast = null!;
    private float[][] _gradients = null!;
    private readonly float[] _scales = [0.5f, 0.5f];
    private Optimizer _optimizer = null!;

    [GlobalSetup]
    public void Setup()
    {
        Blas.Select(BlasProvider.Auto);
        Blas.SetThreadsPerCall(1);
        var random = new Random(1);
        _input = Matrix<float>.Build.Dense(784, 64, (_, _) => (float)random.NextDouble());
        _target = Matrix<float>.Build.Dense(10, 64, (i, j) => i == j % 10 ? 1f : 0f);
        _dense = new Dense(784, 256);
        _denseGradient = Matrix<float>.Build.Dense(256, 64, (_, _) => (float)random.NextDouble());
        var options = new ModelOptions
        {
            Layers = [new() { Type = "Dense", Units = 256 }, new() { Type = "ReLU" }, new() { Type = "Dense", Units = 128 },
                      new() { Type = "ReLU" }, new() { Type = "Dense", Units = 10 }],
        };
        _model = ModelFactory.Build(options);
        _weights = ModelFactory.InitialWeights(_model, options.Initializer, 1).Values;
        _broadcast = new float[_weights.Length];
        _gradients = [new float[_weights.Length], new float[_weights.Length]];
        _optimizer = Optimizer.Create(new OptimizerOptions { LearningRate = 0.05, Momentum = 0.9, L2 = 1e-4 }, _weights.Length);
    }

    [Benchmark]
    public void DenseForwardBackward784x256()
    {
        _dense.Forward(_input);
        _dense.Backward(_denseGradient, needInputGradient: false);
    }

    [Benchmark]
    public double ReplicaStep()
    {
        _model.LoadParameters(_weights);
        var loss = _model.ComputeGradients(_input, _target, _loss);
        _model.CopyGradientsTo(_gradients[0]);
        return loss;
    }

    [Benchmark]
    public bool AverageTwoGradientsAndSgdStep() => _optimizer.StepWeightedAverage(_weights, _gradients, _scales, 0.05f, _broadcast);

    [Benchmark]
    public bool SgdStepOnly() => _optimizer.Step(_weights, _gradients[0], 0.05f);
}
