using DistTrain.Core.Configuration;
using DistTrain.Core.Optimization;
using DistTrain.Core.Tensors;

namespace DistTrain.Cluster.Training;

/// <summary>
/// What the parameter server sends and what a worker reports, in floats, for a training mode. In the gradient modes
/// (<see cref="TrainingMode.Sync"/>, <see cref="TrainingMode.Async"/>, <see cref="TrainingMode.BoundedStaleness"/>) the
/// weights are the whole flat vector and a report is <c>[gradients | running statistics]</c>, the prefix
/// <c>[0, WorkerReportLength)</c>. In <see cref="TrainingMode.LocalSgd"/> both also carry the optimizer state, one
/// trainable-length buffer after another in the optimizer's order: weights <c>[whole vector | state]</c>, report
/// <c>[trainable weights | running statistics | state]</c>.
/// </summary>
/// <param name="WeightsLength">Floats of one weights message.</param>
/// <param name="ReportLength">Floats of one worker report.</param>
/// <param name="StateBuffers">Optimizer state buffers carried (0 in the gradient modes).</param>
public sealed record WireLayout(int WeightsLength, int ReportLength, int StateBuffers)
{
    /// <summary>The lengths for <paramref name="layout"/> under <paramref name="mode"/> with <paramref name="optimizer"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An optimizer setting is out of range.</exception>
    public static WireLayout For(ParameterLayout layout, TrainingMode mode, OptimizerOptions optimizer)
    {
        ArgumentNullException.ThrowIfNull(layout);
        ArgumentNullException.ThrowIfNull(optimizer);
        if (mode != TrainingMode.LocalSgd) return new WireLayout(layout.TotalLength, layout.WorkerReportLength, 0);
        var buffers = Optimizer.Create(optimizer, 0).State.Count;
        var state = (long)buffers * layout.TrainableLength;
        if (layout.TotalLength + state > int.MaxValue)
            throw new ArgumentOutOfRangeException(nameof(layout), $"The model's {layout.TrainableLength} trainable parameters and {buffers} optimizer state buffers do not fit one message.");
        return new WireLayout(layout.TotalLength + (int)state, layout.WorkerReportLength + (int)state, buffers);
    }
}
