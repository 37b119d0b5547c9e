namespace DistTrain.Core.Configuration;

/// <summary>How the parameter server combines the workers' work (configuration key <c>Training:Mode</c>).</summary>
public enum TrainingMode
{
    /// <summary>
    /// Lock-step data parallelism, as PyTorch DDP: every step waits for one minibatch from every worker, averages the
    /// gradients by sample count and applies one optimizer step; every worker then gets the same new weights.
    /// </summary>
    Sync,

    /// <summary>
    /// Asynchronous SGD on a parameter server (Downpour SGD, Dean et al. 2012; ps-lite's asynchronous mode): each
    /// minibatch's gradient is applied as it arrives, and its worker gets the new weights and the epoch's next minibatch
    /// at once. A gradient computed on version v and applied at version V has staleness V − v.
    /// </summary>
    Async,

    /// <summary>
    /// Stale synchronous parallel (SSP, Ho et al., NIPS 2013) with bound s = <c>Training:StalenessBound</c>: steps are
    /// synchronous rounds combined as in <see cref="Sync"/>, but a free worker may compute a minibatch of a round up to s
    /// rounds after the oldest one not yet applied, on the newest weights, so no gradient is more than s versions stale.
    /// s = 0 is <see cref="Sync"/>.
    /// </summary>
    BoundedStaleness,

    /// <summary>
    /// Local SGD (Stich, ICLR 2019; Lin et al., ICLR 2020): every worker steps its own optimizer for
    /// <c>Training:LocalSteps</c> minibatches, then the parameter server averages the models and the optimizer state by
    /// sample count and sends the average back.
    /// </summary>
    LocalSgd,
}
