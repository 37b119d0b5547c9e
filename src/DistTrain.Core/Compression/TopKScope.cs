namespace DistTrain.Core.Compression;

/// <summary>Over what <see cref="GradientCompression.TopK"/> picks its largest elements (<c>Cluster:TopKScope</c>).</summary>
public enum TopKScope
{
    /// <summary>The <c>⌈ratio·n⌉</c> largest magnitudes of the whole gradient of <c>n</c> elements: a tensor whose gradients
    /// are small next to another's may send nothing for many pushes (its elements wait in the residual).</summary>
    Global = 0,

    /// <summary>Each trainable tensor sends its own <c>⌈ratio·length⌉</c> largest magnitudes (at least 1), as Deep Gradient
    /// Compression selects layer by layer (Lin et al., ICLR 2018, section 3, Algorithm 1), so a tensor whose gradients are small
    /// (a first layer, a bias) is not starved by a layer with large ones. The message's count is the sum of the tensors'
    /// counts.</summary>
    PerTensor = 1,
}
