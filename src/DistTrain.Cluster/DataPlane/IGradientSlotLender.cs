namespace DistTrain.Cluster.DataPlane;

/// <summary>
/// Where a worker sends its reports, when it can lend the worker a shared-memory slot to compute the next report into
/// (the worker node's data-plane writer, with shared memory negotiated). A report written there crosses to the parameter
/// server with no copy on the worker's side: the worker sends the report message with <see cref="Protocol.GradientComputed.InSlot"/>
/// set, and the writer sends only the header naming the slot.
/// </summary>
internal interface IGradientSlotLender
{
    /// <summary>
    /// The next gradient slot, acquired for a report of <paramref name="count"/> floats (waiting, as a write would, while
    /// the parameter server has not released it); null when reports do not go through shared memory on this connection,
    /// do not fit a slot, or the region is closing.
    /// </summary>
    SharedSlotWrite? TryLend(int count);
}
